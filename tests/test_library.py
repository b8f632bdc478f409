"""The library as a program that supervises containers itself meets it (a code runner, a
test suite's throw-away sandboxes), on real containers: what comes out of
``open_supervisor`` when its block fails, who may open a state directory, and what a
``run`` that does not return leaves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import boxd
from boxd import _logs, _run
from boxd._logs import read_entries
from boxd._supervisor import Supervisor

pytestmark = pytest.mark.root


def _config(root: Path, *command: str, **options: Any) -> boxd.ContainerConfig:
    return boxd.ContainerConfig(image=str(root), command=command, network="none", **options)


@pytest.mark.parametrize("error", [ValueError("the test failed"), KeyboardInterrupt()])
async def test_what_the_block_raises_comes_out_as_it_was_raised(
    tmp_path: Path, busybox_root: Path, error: BaseException
) -> None:
    """Not wrapped in an ExceptionGroup by the supervisor's nursery: ``except ValueError``
    and ``pytest.raises`` catch it, a Ctrl-C ends the program as a KeyboardInterrupt; the
    container it ran is stopped on the way out."""
    sleeper = _config(busybox_root, "sleep", "100", stop_signal="SIGKILL")
    with pytest.raises(type(error)) as raised:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            c = await sup.run(sleeper)
            raise error
    assert raised.value is error
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        assert sup.inspect(c.id).state.status is boxd.Status.STOPPED
        await sup.remove(c.id)


_HOLDER = """
import sys, boxd, trio

async def main():
    async with boxd.open_supervisor(sys.argv[1]) as sup:
        c = await sup.run(boxd.ContainerConfig(
            image=sys.argv[2], command=("sleep", "100"), network="none", stop_signal="SIGKILL"
        ))
        print("running", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the test closes it
        print(sup.inspect(c.id).state.status.value, flush=True)

trio.run(main)
"""


def test_a_state_directory_has_one_supervisor(tmp_path: Path, busybox_root: Path) -> None:
    """A second supervisor on a root, of another process or of this one, is refused by
    name: opened, it would take the first one's running containers for a dead daemon's
    leftovers and kill them."""
    root = tmp_path / "lib"

    async def opened() -> None:
        async with boxd.open_supervisor(root):
            pass

    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), str(busybox_root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline() == "running\n"
            with pytest.raises(boxd.RootInUse, match=f"pid {holder.pid}\\) is running on {root}"):
                trio.run(opened)
        finally:
            holder.stdin.close()
            remaining = holder.stdout.read()
            holder.wait(timeout=60)
    assert remaining == "running\n"  # the other process's container ran on
    assert holder.returncode == 0

    async def twice() -> None:
        async with boxd.open_supervisor(root) as sup:
            with pytest.raises(boxd.RootInUse, match=f"already open on {root}"):
                await opened()
            for c in sup.list(all=True):
                await sup.remove(c.id)

    trio.run(twice)
    trio.run(opened)  # free again


async def test_a_relative_root_stays_where_it_was_opened(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that changes the working directory after opening a supervisor on a relative
    root does not move the supervisor's records."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    async with boxd.open_supervisor("lib") as sup:
        monkeypatch.chdir(tmp_path / "elsewhere")
        c = await sup.run(_config(busybox_root, "true"))
        assert await sup.wait(c.id) == 0
        assert (tmp_path / "lib" / "containers" / c.id).is_dir()
        await sup.remove(c.id)
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_a_run_that_does_not_return_its_container_leaves_none(
    tmp_path: Path, busybox_root: Path
) -> None:
    """Its caller could not name the container to remove it: a start that fails, and a
    caller cancelled before the start, leave nothing.  ``create`` and ``start`` keep a
    container that cannot start, as Docker does."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        with pytest.raises(boxd.StartError, match="exec /bin/nope"):
            await sup.run(_config(busybox_root, "/bin/nope"))
        assert sup.list(all=True) == []
        with trio.CancelScope() as scope:
            scope.cancel()
            await sup.run(_config(busybox_root, "sleep", "100"))
        assert scope.cancelled_caught
        assert sup.list(all=True) == []
        c = await sup.create(_config(busybox_root, "/bin/nope"))
        with pytest.raises(boxd.StartError):
            await sup.start(c.id)
        assert [x.id for x in sup.list(all=True)] == [c.id]
        await sup.remove(c.id)


@pytest.mark.fuse
async def test_a_library_supervisor_serves_the_proc_view(
    tmp_path: Path, busybox_root: Path
) -> None:
    """``procview=True``: its containers read their own limits in /proc and /sys, as the
    daemon's do (``free``, ``nproc``, a runtime sizing itself), and from sysinfo(2)
    (busybox's ``free``), answered by the supervisor itself (no shim holds the listener);
    the view's mount goes with the supervisor."""
    limited = _config(
        busybox_root,
        "/bin/sh",
        "-c",
        "grep MemTotal /proc/meminfo; grep . /sys/devices/system/cpu/online; free -k",
        resources=boxd.Resources(memory=64 << 20, cpuset_cpus="0"),
    )
    async with boxd.open_supervisor(tmp_path / "lib", procview=True) as sup:
        c = await sup.create(limited)
        output, _ = await sup.start_attached(c.id)
        seen = b"".join([data async for _, data in output])
        assert await sup.wait(c.id) == 0
        await sup.remove(c.id)
    words = seen.split()
    assert words[:4] == [b"MemTotal:", b"65536", b"kB", b"0"]
    assert words[words.index(b"Mem:") + 1] == b"65536"
    assert str(tmp_path) not in await trio.Path("/proc/self/mountinfo").read_text()


async def test_a_stop_whose_caller_is_cancelled_still_ends_the_container(
    tmp_path: Path, busybox_root: Path
) -> None:
    """The SIGKILL after the grace period does not depend on the caller staying: a stop
    cancelled right after its stop signal (which ``sleep``, as PID 1, ignores) ends the
    container all the same, and the wait after it returns."""
    sleeper = _config(busybox_root, "sleep", "100", stop_timeout=0.5)
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.run(sleeper)
        with trio.CancelScope() as scope:
            scope.cancel()
            await sup.stop(c.id)
        assert scope.cancelled_caught
        with trio.fail_after(60):
            assert await sup.wait(c.id) == 137
        assert sup.inspect(c.id).state.status is boxd.Status.STOPPED
        await sup.remove(c.id)


async def test_a_supervisor_cancelled_from_outside_closes_as_at_its_end(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A scope cancelled around ``open_supervisor`` (a test's ``fail_after``) cancels the
    block, not the supervisor's own tasks: its containers are stopped and their ends
    recorded, as when the block ends."""
    sleeper = _config(busybox_root, "sleep", "100", stop_signal="SIGKILL")
    with trio.CancelScope() as outside:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            c = await sup.run(sleeper)
            outside.cancel()
            await sup.wait(c.id)
    assert outside.cancelled_caught
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        state = sup.inspect(c.id).state
        assert (state.status, state.exit_code, state.error) == (boxd.Status.STOPPED, 137, "")
        await sup.remove(c.id)


async def test_a_closed_supervisor_says_so(tmp_path: Path, busybox_root: Path) -> None:
    """Its records stay readable after the block; a create or start is refused by name,
    not with a Trio nursery's "closed to new arrivals", and leaves nothing."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "true"))
    assert sup.inspect(c.id).state.status is boxd.Status.CREATED
    with pytest.raises(RuntimeError, match=r"supervisor of .*/lib is closed"):
        await sup.start(c.id)
    with pytest.raises(RuntimeError, match="is closed"):
        await sup.run(_config(busybox_root, "true"))
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        assert [x.id for x in sup.list(all=True)] == [c.id]
        await sup.remove(c.id)


async def test_the_run_tells_a_signal_from_an_exit_of_the_same_code(
    tmp_path: Path, busybox_root: Path
) -> None:
    """Killed by SIGKILL and ``exit 137`` are both exit code 137, as in Docker; the run's
    outcome tells which (a code runner's "killed" from "exited with 137")."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        outcomes = []
        for command, kill in (("exit 137", False), ("sleep 100", True)):
            c = await sup.create(_config(busybox_root, "/bin/sh", "-c", command))
            _, run = await sup.start_attached(c.id)
            if kill:
                await sup.kill(c.id)
            assert await sup.wait(c.id) == 137
            assert run.outcome is not None
            outcomes.append(run.outcome.signal)
            await sup.remove(c.id)
        assert outcomes == [None, 9]


async def test_input_to_a_process_that_takes_none_is_refused(
    tmp_path: Path, busybox_root: Path
) -> None:
    """``write_stdin`` to a container (or exec) made without ``interactive=True`` raises,
    naming it: the input was dropped without a word, and a program waiting for an answer
    to it waited for ever.  Input after the end of it is dropped, as a pipe's reader
    gone drops it."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "/bin/sh", "-c", "sleep 100"), "quiet")
        _, run = await sup.start_attached(c.id)
        with pytest.raises(boxd.Conflict, match=rf"^container quiet \({c.id[:12]}\) takes no"):
            await run.write_stdin(b"lost")
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(sup.exec, c.id, ("/bin/cat",))
            with pytest.raises(boxd.Conflict, match=r"^this exec in container quiet .* takes no"):
                await proc.write_stdin(b"lost")
            reader = await nursery.start(partial(sup.exec, c.id, ("/bin/cat",), interactive=True))
            await reader.write_stdin(b"")
            await reader.write_stdin(b"after the end")  # dropped: no error
        assert reader.outcome is not None and reader.outcome.exit_code == 0
        await sup.remove(c.id, force=True)


async def test_a_kill_of_a_run_that_just_ended_leaves_its_exit(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A code runner kills what has not ended once its output is read (``if
    sup.run_of(c.id): await sup.kill(c.id)``): a run that ended by itself, its end not yet
    recorded, keeps its exit, not a stop (it was "stopped" in half of them)."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        seen = set()
        for _ in range(12):
            c = await sup.create(_config(busybox_root, "/bin/sh", "-c", "exit 3"))
            output, _ = await sup.start_attached(c.id)
            async for _ in output:
                pass
            if sup.run_of(c.id) is not None:
                await sup.kill(c.id)
            seen.add((await sup.wait(c.id), sup.inspect(c.id).state.status))
            await sup.remove(c.id)
        assert seen == {(3, boxd.Status.EXITED)}


async def test_an_exec_as_its_container_ends_is_refused_as_not_running(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A test suite's exec racing its container's stop (a fixture's teardown): the exec
    runs, is killed with its container, or is refused with :class:`boxd.Conflict` in
    check_exec's words, never the join's own failure in an ExceptionGroup ("the
    intermediate process ended (status 9)", "join: No such process"); it joins its
    container by a pidfd of its own, closed after its spawn (no fd is left behind); an
    exec that cannot start is a :class:`boxd.StartError`, not wrapped either."""
    fds = len(os.listdir("/proc/self/fd"))
    outcomes: set[int | str] = set()
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.run(_config(busybox_root, "sleep", "100"))
        with pytest.raises(boxd.StartError, match="exec /nope: No such file or directory"):
            await sup.exec(c.id, ("/nope",))
        await sup.remove(c.id, force=True)
        for i in range(30):
            c = await sup.run(_config(busybox_root, "sleep", "100"))

            async def exec_true(cid: str = c.id) -> None:
                try:
                    outcomes.add(await sup.exec(cid, ("true",)))
                except boxd.Conflict as exc:
                    assert "is not running: exec needs a running container" in str(exc)
                    outcomes.add("refused")

            async def stop(cid: str = c.id, after: int = i % 10) -> None:
                for _ in range(after):  # a different moment of the exec's start each time
                    await trio.lowlevel.checkpoint()
                await sup.stop(cid, 0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(exec_true)
                nursery.start_soon(stop)
            await sup.remove(c.id)
    assert outcomes <= {0, 137, "refused"}
    assert len(os.listdir("/proc/self/fd")) == fds


async def test_a_container_at_rest_holds_no_fd(tmp_path: Path, busybox_root: Path) -> None:
    """A test suite that leaves its exited containers (docker-py's ``run()`` without
    ``remove``, pruned at night): the supervisor holds no fd of each (it held its log's
    directory and file until the removal, two for each, and ran out of fds); the log
    reads back, and a second start appends to it."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        first = await sup.run(_config(busybox_root, "echo", "run 0"))
        assert await sup.wait(first.id) == 0
        fds = len(os.listdir("/proc/self/fd"))
        for i in range(1, 21):
            c = await sup.run(_config(busybox_root, "echo", f"run {i}"))
            assert await sup.wait(c.id) == 0
        assert len(os.listdir("/proc/self/fd")) == fds
        await sup.start(first.id)
        assert await sup.wait(first.id) == 0
        logged = [e.data for e in read_entries(sup.log_dir(first.id))]
        assert logged == [b"run 0", b"run 0"]
        assert len(os.listdir("/proc/self/fd")) == fds
        for c in sup.list(all=True):
            await sup.remove(c.id)


async def test_a_follow_of_a_containers_log_ends_with_it_not_at_its_poll(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor wakes the follows of a container's log when its phase changes: with
    an hour between polls, a follow of a container that prints and exits while it is
    followed still gets its output and ends."""
    monkeypatch.setattr(_logs, "_POLL_INTERVAL", 3600)
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        config = _config(busybox_root, "sh", "-c", "read x; echo got $x", interactive=True)
        c = await sup.create(config)
        _, run = await sup.start_attached(c.id)
        got: list[bytes] = []

        async def follow() -> None:
            ended = lambda: sup.run_of(c.id) is None  # noqa: E731
            async for batch in _logs.batches(sup.log_dir(c.id), until_closed=ended):
                got.extend(entry.data for entry in batch)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.testing.wait_all_tasks_blocked()  # it waits for its poll
                await run.write_stdin(b"it\n")
        assert got == [b"got it"]
        await sup.remove(c.id)


async def test_the_run_tells_whether_the_pids_limit_held_a_fork(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A fork bomb held at the pids limit ends as its shell chooses (busybox's: 2, "can't
    fork"): the run's outcome says the limit refused a fork; a run below it says not."""
    forks = "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done; true"
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        seen = []
        for limit in (4, 64):
            config = _config(
                busybox_root, "/bin/sh", "-c", forks, resources=boxd.Resources(pids_limit=limit)
            )
            c = await sup.create(config)
            _, run = await sup.start_attached(c.id)
            await sup.wait(c.id)
            assert run.outcome is not None
            seen.append(run.outcome.pids_limit_hit)
            await sup.remove(c.id)
        assert seen == [True, False]


async def test_a_run_past_its_timeout_is_killed_and_says_so(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A wall-clock limit the supervisor keeps (Podman's --timeout): a run that ignores its
    stop signal, with a child that left its session, whose caller waits without a limit of
    its own, is killed at its timeout, cgroup and all; its outcome says it timed out. A
    run that ends first, or is killed by its caller, says not."""
    runaway = "trap '' TERM; setsid sleep 100 & sleep 100"
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        seen = []
        for command, kill in ((runaway, False), ("exit 3", False), ("sleep 100", True)):
            config = _config(busybox_root, "/bin/sh", "-c", command, timeout=1.5)
            c = await sup.create(config)
            _, run = await sup.start_attached(c.id)
            start = trio.current_time()
            if kill:
                await sup.kill(c.id)
            with trio.fail_after(30):
                code = await sup.wait(c.id)
            slow = trio.current_time() - start > 1.2
            assert run.outcome is not None
            seen.append((code, run.outcome.timed_out, sup.inspect(c.id).state.status, slow))
            await sup.remove(c.id)
        assert seen == [
            (137, True, boxd.Status.EXITED, True),
            (3, False, boxd.Status.EXITED, False),
            (137, False, boxd.Status.STOPPED, False),
        ]


async def test_a_slow_reader_gets_every_byte_while_it_takes_them(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that takes each chunk well within DRAIN_TIMEOUT (a service that stores or
    sends on each) gets every byte, though what the process wrote last takes it longer
    than that after the process ended; one that stops taking is cut DRAIN_TIMEOUT after
    its last take, and the run still ends."""
    monkeypatch.setattr(_run, "DRAIN_TIMEOUT", 2.0)
    # 4 KiB reads: the 200 KiB the process leaves in its pipe as it exits at once are
    # ~50 chunks, ~5 s for this reader.
    monkeypatch.setattr(_run, "READ_SIZE", 4096)
    writer = "head -c 204800 /dev/zero; echo END"
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "/bin/sh", "-c", writer, log_driver="none"))
        output, _ = await sup.start_attached(c.id)
        got = bytearray()
        async for _, data in output:
            got += data
            await trio.sleep(0.1)
        assert await sup.wait(c.id) == 0
        assert (len(got), bytes(got[-4:])) == (204804, b"END\n")
        await sup.remove(c.id)
        # More chunks than the channel holds, and nobody takes one.
        chunks = "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done"
        c = await sup.create(_config(busybox_root, "/bin/sh", "-c", chunks, log_driver="none"))
        output, _ = await sup.start_attached(c.id)
        with trio.fail_after(30):
            assert await sup.wait(c.id) == 0
        taken = b"".join([data async for _, data in output])
        assert b"1\n2\n3\n4\n5\n6\n7\n8\n".startswith(taken)
        await sup.remove(c.id)


async def test_output_that_never_ends_is_cut_at_the_drain_limit(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer outside the container's cgroup that holds its stdout pipe (here this
    test, through /proc; a process of another container it passed the fd to) and writes
    on for ever, read as fast as it writes: the run still ends, at DRAIN_LIMIT."""
    monkeypatch.setattr(_run, "DRAIN_TIMEOUT", 1.0)
    monkeypatch.setattr(_run, "DRAIN_LIMIT", 3.0)
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "sleep", "1", log_driver="none"))
        output, run = await sup.start_attached(c.id)
        pipe = os.open(f"/proc/{run.pid}/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            async with trio.open_nursery() as nursery:

                async def write_on() -> None:  # until the run's end closes the pipe
                    while True:
                        try:
                            os.write(pipe, b"more\n")
                        except BlockingIOError:
                            pass
                        except BrokenPipeError:
                            return
                        await trio.sleep(0.01)

                nursery.start_soon(write_on)
                with trio.fail_after(30):
                    async for _ in output:
                        pass
                    assert await sup.wait(c.id) == 0
                nursery.cancel_scope.cancel()
        finally:
            os.close(pipe)
        await sup.remove(c.id)


async def test_the_end_is_the_processs_not_its_slow_readers(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that writes 200 KiB (all in its pipe at once) and exits: its wall time
    and finished_at are its own end, not the end of the slow reading of its output (here
    2 s and more after it, in ~50 chunks of 4 KiB), as Docker's FinishedAt is the exit."""
    monkeypatch.setattr(_run, "READ_SIZE", 4096)
    writer = "head -c 204800 /dev/zero"
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "/bin/sh", "-c", writer, log_driver="none"))
        output, _ = await sup.start_attached(c.id)
        takes = []
        async for _ in output:
            takes.append(time.time())
            await trio.sleep(1.0 if len(takes) <= 2 else 0.02)
        assert await sup.wait(c.id) == 0
        st = sup.inspect(c.id).state
        assert len(takes) > 40 and st.started_at is not None and st.finished_at is not None
        assert st.finished_at < takes[2]
        assert st.summary is not None
        assert st.summary.wall_seconds < takes[2] - st.started_at
        await sup.remove(c.id)


async def test_an_auto_removed_runs_exit_code_is_its_runs(
    tmp_path: Path, busybox_root: Path
) -> None:
    """As the README tells: the Run of ``start_attached`` has the outcome once the output
    has ended, and a ``wait`` after the removal finds no container, by name."""
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        config = _config(busybox_root, "/bin/sh", "-c", "echo bye; exit 5", auto_remove=True)
        c = await sup.create(config)
        output, run = await sup.start_attached(c.id)
        assert [data async for _, data in output] == [b"bye\n"]
        assert run.outcome is not None and run.outcome.exit_code == 5
        with trio.fail_after(30):
            await sup.removed(c.id)
        with pytest.raises(boxd.NoSuchContainer, match=f"no such container: {c.id}"):
            await sup.wait(c.id)


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan")])
def test_a_timeout_is_a_number_of_seconds_above_0(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"invalid --timeout '.*': use a number of seconds > 0"):
        boxd.ContainerConfig(image="default", command=("true",), timeout=timeout)


async def test_a_close_cut_short_still_ends_the_supervision(
    tmp_path: Path, busybox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while the supervisor closes (a second Ctrl-C during a stop's grace
    period) still ends its own tasks: the close does not wait for ever, and the container
    it did not stop is killed on the way out."""

    async def cut_short(self: Supervisor) -> None:
        raise RuntimeError("closing cut short")

    sleeper = _config(busybox_root, "sleep", "100")
    with pytest.raises(BaseExceptionGroup) as raised:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            c = await sup.run(sleeper)
            pid = sup.inspect(c.id).state.pid
            monkeypatch.setattr(Supervisor, "_shutdown", cut_short)
    assert raised.value.subgroup(RuntimeError) is not None
    assert not await trio.Path(f"/proc/{pid}").exists()
    monkeypatch.undo()
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        await sup.remove(c.id, force=True)


_FORKER = """
import os, sys, time, boxd, trio

async def main():
    async with boxd.open_supervisor(sys.argv[1]):
        child = os.fork()  # a copy of every descriptor, as a start's child has one
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def test_a_killed_holders_root_is_free_though_a_child_lives_on(tmp_path: Path) -> None:
    """The lock on a root ends with the process that held it, not with the last copy of
    its descriptor: a child cloned mid-start (here forked) of a program killed by SIGKILL
    kept a flock, and the next supervisor was refused for as long as it lived."""
    root = tmp_path / "lib"
    with subprocess.Popen(
        [sys.executable, "-c", _FORKER, str(root)], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        try:
            holder.kill()
            holder.wait()

            async def opened() -> None:
                async with boxd.open_supervisor(root):
                    pass

            trio.run(opened)
        finally:
            os.kill(child, signal.SIGKILL)


async def test_a_short_run_ends_after_it_starts(tmp_path: Path, busybox_root: Path) -> None:
    """With live restore a run's end is dated by its shim's reaping (its FinishedAt after a
    daemon's absence): a `true` the shim reaped before its start was reported ended before
    it started (FinishedAt before StartedAt, a negative wall time, now and then)."""
    config = _config(busybox_root, "/bin/true", resources=boxd.Resources(memory=64 << 20))
    async with boxd.open_supervisor(tmp_path / "lib", live_restore=True) as sup:
        for _ in range(20):
            c = await sup.run(config)
            assert await sup.wait(c.id) == 0
            state = sup.inspect(c.id).state
            assert state.started_at is not None and state.finished_at is not None
            assert state.finished_at >= state.started_at
            assert state.summary is not None and state.summary.wall_seconds >= 0
            await sup.remove(c.id)


async def test_a_programs_umask_is_not_its_containers(tmp_path: Path, busybox_root: Path) -> None:
    """A program under umask 077 (a service's) runs containers with Docker's 022: their
    processes and the working directory their start makes were private to their owner."""
    show = "umask; stat -c %a /made; touch /made/f; stat -c %a /made/f"
    caller = os.umask(0o077)
    try:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            c = await sup.run(_config(busybox_root, "sh", "-c", show, workdir="/made"))
            assert await sup.wait(c.id) == 0
            logged = [e.data for e in read_entries(sup.log_dir(c.id))]
            await sup.remove(c.id)
    finally:
        os.umask(caller)
    assert logged == [b"0022", b"755", b"644"]

"""The supervisor's lifecycle without root: FakeNative runs each container's command as a
plain host process (no namespaces), and a fake cgroup tree stands in for cgroupfs (this
test must not need root to make cgroups).  Transitions, restart and backoff, ``--rm``,
pause and recovery run in milliseconds; the same verbs on the real kernel are in
test_lifecycle.py."""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from fake_cgroup import FakeCgroupFs

from boxd import _lifecycle, _store, _supervisor
from boxd._cgroup import Cgroup, CgroupError, CgroupHost
from boxd._lifecycle import Conflict
from boxd._logs import read_entries
from boxd._native import FakeNative, SpawnPlan, Stage
from boxd._plan import Prepared
from boxd._records import Container, ContainerConfig, Resources, RestartPolicy, Status, Volume
from boxd._rootfs import Image, ImageError, resolve_image
from boxd._run import start_time_of
from boxd._store import read_record
from boxd._supervisor import StartError, Supervisor, open_supervisor


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    fs = FakeCgroupFs(tmp_path / "cgroupfs", monkeypatch)
    fs.mount_v2("/user.slice/test", controllers="cpu memory pids")
    return fs


@pytest.fixture
def host(fs: FakeCgroupFs) -> CgroupHost:
    return fs.detect()


@pytest.fixture
def image(tmp_path: Path) -> str:
    """A root filesystem that passes the image checks; FakeNative never enters it."""
    (tmp_path / "image/bin").mkdir(parents=True)
    (tmp_path / "image/bin/sh").write_text("")
    return str(tmp_path / "image")


@asynccontextmanager
async def supervisor(
    tmp_path: Path, host: CgroupHost, native: FakeNative | None = None
) -> AsyncIterator[Supervisor]:
    async with open_supervisor(tmp_path / "root", native=native or FakeNative(), cgroups=host) as s:
        yield s


def config(image: str, *command: str, **kw: object) -> ContainerConfig:
    """On no network: FakeNative makes no namespace, and no test here may touch the host's."""
    kw.setdefault("network", "none")
    return ContainerConfig(image=image, command=command, stop_timeout=5, **kw)  # type: ignore[arg-type]


def status(c: Container) -> Status:
    """The phase, read anew (mypy would narrow ``c.state.status`` across awaits)."""
    return c.state.status


async def phase_becomes(sup: Supervisor, cid: str, want: Status) -> None:
    """Wait (no clock) until the container reaches ``want``."""
    entry = sup._entries[cid]
    while entry.phase is not want:
        await entry.changed.wait()


def test_every_phase_has_its_transitions_and_rest_leads_somewhere() -> None:
    assert set(_lifecycle.TRANSITIONS) == set(Status)
    reachable = {t for targets in _lifecycle.TRANSITIONS.values() for t in targets}
    assert reachable == set(Status)  # no phase is unreachable
    assert _lifecycle.TRANSITIONS[Status.REMOVING] == frozenset()
    with pytest.raises(AssertionError, match="from created to running"):
        _lifecycle.check_transition(Status.CREATED, Status.RUNNING)
    for phase in Status:  # rm -f is allowed in every phase
        _lifecycle.check_remove("c", phase, force=True)
    with pytest.raises(Conflict, match="c is restarting: stop the container before removing"):
        _lifecycle.check_remove("c", Status.RESTARTING, force=False)
    with pytest.raises(Conflict, match="c is paused: unpause it instead"):
        _lifecycle.can_start("c", Status.PAUSED)
    with pytest.raises(
        Conflict, match=r"\Acontainer is marked for removal and cannot be started\Z"
    ):
        _lifecycle.can_start("c", Status.REMOVING)  # during an rm -f, in Docker's words
    with pytest.raises(Conflict, match="Container 1f is paused, unpause the container before"):
        _lifecycle.check_exec("1f", "c", Status.PAUSED)


async def test_a_running_container_keeps_no_spawn_plan(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    """The plan (mount table, environment, seccomp program) and what the start looked up
    in its root go once the process runs, not when it ends (bench/README.md, "Idle daemon
    memory (session 10)")."""
    native = FakeNative()
    async with supervisor(tmp_path, host, native) as sup:
        c = await sup.run(config(image, "sleep", "100"))
        assert status(c) is Status.RUNNING
        assert len(native.plans) == 1
        native.plans.clear()  # the fake's own record of what it spawned
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, SpawnPlan | Prepared)]
        assert kept == []
        await sup.remove(c.id, force=True)


async def test_start_stop_and_the_phases_on_the_way(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        c = await sup.create(config(image, "sleep", "100"), "s")
        assert status(c) is Status.CREATED and sup.list() == []
        await sup.start("s")
        assert status(c) is Status.RUNNING and sup.list() == [c]
        assert await sup.start("s") is c  # already running: nothing happens
        with pytest.raises(Conflict, match="s is running: stop the container before removing"):
            await sup.remove("s")
        await sup.stop("s")
        assert (c.state.status, c.state.exit_code) == (Status.STOPPED, 128 + signal.SIGTERM)
        assert sup.list() == [] and sup.list(all=True) == [c]
        await sup.stop("s")  # at rest: a no-op
        with pytest.raises(Conflict, match="s is not running: there is no process"):
            await sup.kill("s")
        record = json.loads((tmp_path / f"root/containers/{c.id}/container.json").read_text())
        assert record["state"]["status"] == "stopped"
        await sup.remove("s")
        assert sup.list(all=True) == []


async def test_run_resolves_its_image_once_and_a_later_start_again(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` starts with the image its create resolved, not resolved a second time; the
    container's next start resolves it afresh, so a change of the directory counts."""
    calls: list[str] = []
    resolve = resolve_image

    def counted(ref: str, images: Path) -> Image:
        calls.append(ref)
        return resolve(ref, images)

    monkeypatch.setattr(_supervisor, "resolve_image", counted)
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "true"))
        assert await sup.wait(c.id) == 0
        assert calls == [image]
        (Path(image) / "bin/sh").unlink()
        with pytest.raises(ImageError, match="has no /bin/sh"):
            await sup.start(c.id)
        assert calls == [image, image]


async def test_pause_freezes_and_verbs_follow_the_phase(
    tmp_path: Path, fs: FakeCgroupFs, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "sleep", "100"), "p")
        await sup.pause("p")
        freeze = Path(sup.cgroups.open(c.id).paths["unified"]) / "cgroup.freeze"
        assert status(c) is Status.PAUSED and freeze.read_text() == "1"
        assert sup.list() == [c]  # ps shows paused containers
        with pytest.raises(Conflict, match="already paused"):
            await sup.pause("p")
        with pytest.raises(Conflict, match=f"Container {c.id} is paused, unpause the"):
            await sup.exec("p", ("true",))
        with pytest.raises(Conflict, match="p is paused: unpause it instead"):
            await sup.start("p")
        assert sup.counts()[Status.PAUSED] == 1
        await sup.unpause("p")
        assert status(c) is Status.RUNNING and freeze.read_text() == "0"
        with pytest.raises(Conflict, match="p is not paused"):
            await sup.unpause("p")
        await sup.pause("p")
        await sup.stop("p")  # thawed to receive its stop signal
        freezes = [v for path, v in fs.writes if path.endswith(f"{c.id}/cgroup.freeze")]
        assert freezes == ["1", "0", "1", "0"]
        assert status(c) is Status.STOPPED


async def test_a_commits_pause_is_marked_before_the_freeze(
    tmp_path: Path, fs: FakeCgroupFs, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "sleep", "100"), "p")
        marker = sup.store.container_dir(c.id) / _supervisor.COMMIT_PAUSE
        seen: list[tuple[bool, str]] = []

        class Watched(list[tuple[str, str]]):
            def append(self, item: tuple[str, str]) -> None:
                if item[0].endswith(f"{c.id}/cgroup.freeze"):
                    seen.append((marker.exists(), item[1]))
                super().append(item)

        fs.writes = Watched(fs.writes)
        await sup.pause("p", for_commit=True)
        await sup.unpause("p")
        await sup.pause("p")  # the user's own: not marked
        await sup.unpause("p")
        assert seen == [(True, "1"), (True, "0"), (False, "1"), (False, "0")]
        assert not marker.exists()
        await sup.stop("p")


async def test_a_process_ending_as_it_freezes_is_not_paused(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exiting process never freezes (the freeze times out): if the container ended
    meanwhile, pause says it is not running (a commit then goes on unpaused), not the
    freezer's failure (a commit answered 500)."""
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "sleep", "100"), "p")

        async def ends_as_it_freezes(cgroup: Cgroup) -> None:
            os.kill(c.state.pid, signal.SIGKILL)
            await sup.wait(c.id)
            raise CgroupError(errno.EBUSY, "did not freeze in 1.0s")

        monkeypatch.setattr(Cgroup, "freeze", ends_as_it_freezes)
        with pytest.raises(Conflict, match="p is not running: only a running container"):
            await sup.pause("p")
        assert status(c) is Status.EXITED
        # A freeze that fails while the container runs on is the freezer's failure.
        q = await sup.run(config(image, "sleep", "100"), "q")

        async def stuck(cgroup: Cgroup) -> None:
            raise CgroupError(errno.EBUSY, "did not freeze in 1.0s")

        monkeypatch.setattr(Cgroup, "freeze", stuck)
        with pytest.raises(CgroupError, match="did not freeze"):
            await sup.pause("q")
        assert status(q) is Status.RUNNING
        await sup.remove("q", force=True)


def test_the_restart_backoff_is_dockers() -> None:
    """0.1 s doubled up to a minute (Docker's restart manager), 0.1 s again after a run of
    10 s or more."""
    waits: list[float] = []
    last = None
    for _ in range(12):
        last = _supervisor._backoff(last, ran=0.5)
        waits.append(last)
    expected = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 60.0, 60.0]
    assert waits == pytest.approx(expected)
    assert _supervisor._backoff(60.0, ran=9.9) == 60.0
    assert _supervisor._backoff(60.0, ran=10.0) == 0.1


async def test_restart_policy_backoff_and_rm_f_while_restarting(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_supervisor, "BACKOFF_START", 3600.0)  # stays in its backoff
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(
            config(image, "sh", "-c", "exit 3", restart=RestartPolicy.parse("always"))
        )
        await phase_becomes(sup, c.id, Status.RESTARTING)
        # The restart it waits for is counted (Docker's RestartCount in the backoff).
        assert (c.state.exit_code, c.state.restart_count, sup.list()) == (3, 1, [c])
        with pytest.raises(Conflict, match="is restarting: stop the container before removing"):
            await sup.remove(c.id)
        waited: list[int] = []
        async with trio.open_nursery() as nursery:

            async def wait() -> None:
                waited.append(await sup.wait(c.id))

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert waited == []  # not at rest: Docker's wait waits too
            await sup.remove(c.id, force=True)
        assert waited == [3] and sup.list(all=True) == []


async def test_on_failure_counts_its_retries(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_supervisor, "BACKOFF_START", 0.0)
    seen: list[str] = []
    check = _lifecycle.check_transition

    def record(current: Status, new: Status) -> None:
        check(current, new)
        seen.append(new.value)

    monkeypatch.setattr(_lifecycle, "check_transition", record)
    async with supervisor(tmp_path, host) as sup:
        policy = RestartPolicy.parse("on-failure:2")
        c = await sup.create(config(image, "sh", "-c", "exit 3", restart=policy))
        await sup.start(c.id)
        await sup._entries[c.id].idle.wait()
        assert (c.state.status, c.state.restart_count, c.state.exit_code) == (Status.EXITED, 2, 3)
    run = ["starting", "running", "restarting"]
    assert seen == [*run, *run, "starting", "running", "exited"]


async def test_stop_during_backoff_keeps_it_down(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_supervisor, "BACKOFF_START", 3600.0)
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "false", restart=RestartPolicy.parse("on-failure")))
        await phase_becomes(sup, c.id, Status.RESTARTING)
        await sup.stop(c.id)
        assert (c.state.status, c.state.exit_code, c.state.restart_count) == (Status.STOPPED, 1, 1)


async def test_a_kill_during_backoff_keeps_it_down(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal that would end it (SIGKILL, SIGTERM, SIGINT) ends its backoff, as a stop
    does; another has nothing to signal: answered with success, the restart going on, as
    moby's (it was refused as a conflict)."""
    monkeypatch.setattr(_supervisor, "BACKOFF_START", 3600.0)
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "false", restart=RestartPolicy.parse("always")))
        await phase_becomes(sup, c.id, Status.RESTARTING)
        await sup.kill(c.id, "SIGHUP")
        assert (c.state.status, c.state.manual_stop) == (Status.RESTARTING, False)
        await sup.kill(c.id)
        assert (c.state.status, c.state.manual_stop, c.state.exit_code) == (Status.STOPPED, True, 1)


async def test_a_kill_is_on_disk_before_its_signal(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: list[bool] = []
    async with supervisor(tmp_path, host) as sup:
        policy = RestartPolicy.parse("on-failure")
        c = await sup.run(config(image, "sleep", "300", restart=policy))
        send = sup._signal

        def look(container: Container, run: object, signum: int) -> None:
            record = read_record(sup.store.container_dir(c.id) / "container.json")
            recorded.append(record.state.manual_stop)
            send(container, run, signum)  # type: ignore[arg-type]

        monkeypatch.setattr(sup, "_signal", look)
        await sup.kill(c.id)
        assert (status(c), c.state.restart_count) == (Status.STOPPED, 0)
    assert recorded == [True]


async def test_a_creates_record_is_written_off_the_loop_and_what_follows_waits_for_it(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create writes its record (two fsyncs: after a container's large log they waited for
    the disk, 40-60 ms, with the whole daemon stopped) in a worker thread, and so does
    update.  A save made meanwhile (a rename) is written after it, and a removal waits for
    it: no directory is left, nor made again."""
    gate, entered = threading.Event(), threading.Event()
    async with supervisor(tmp_path, host) as sup:
        write = sup.store.write

        released: list[bool] = []

        def held(cid: str, data: bytes, *, durable: bool = True) -> None:
            entered.set()
            released.append(gate.wait(10))  # False: the loop never got to let it go
            write(cid, data, durable=durable)

        monkeypatch.setattr(sup.store, "write", held)
        for then_remove in (False, True):
            gate.clear()
            entered.clear()
            made: list[Container] = []

            async def create(name: str, made: list[Container]) -> None:
                made.append(await sup.create(config(image, "true"), name))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, f"first{then_remove}", made)
                await trio.to_thread.run_sync(entered.wait)  # the loop runs meanwhile
                if then_remove:
                    nursery.start_soon(sup.remove, f"first{then_remove}")
                else:
                    await sup.rename(f"first{then_remove}", "second")
                await trio.testing.wait_all_tasks_blocked()
                gate.set()
            (c,) = made
            record = sup.store.container_dir(c.id) / "container.json"
            if then_remove:
                assert not sup.store.container_dir(c.id).exists()
                assert [x.name for x in sup.list(all=True)] == ["second"]
            else:
                assert read_record(record).name == "second"
                second = record
        # update's record too (its configuration changed: written with its fsyncs)
        gate.clear()
        entered.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.update, "second", Resources(pids_limit=77))
            await trio.to_thread.run_sync(lambda: entered.wait(10))  # the loop runs meanwhile
            gate.set()
        assert read_record(second).config.resources.pids_limit == 77
        # the create's, the rename's after it, the second create's, the update's
        assert released == [True, True, True, True]


async def test_a_removal_or_prune_during_a_create_waits_for_it(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container is listed from the moment its create begins; a prune or an `rm -f` of
    it meanwhile (a test suite's clean-up beside its next create) waits for the create,
    which returns the container made, and then removes it (the create failed with a
    KeyError, a 500, once the removal had taken it away under it).  A container `run`
    made for its start is not pruned before that start."""
    async with supervisor(tmp_path, host) as sup:
        fill = sup._fill_volumes
        gate = trio.Event()

        async def held(c: Container, *args: object, **kw: object) -> None:
            await gate.wait()
            await fill(c, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(sup, "_fill_volumes", held)
        for removal in ("prune", "rm -f"):
            gate = trio.Event()
            made: list[Container] = []
            removed: list[object] = []

            async def create(made: list[Container]) -> None:
                made.append(await sup.create(config(image, "true"), "c"))

            async def remove(removed: list[object], removal: str) -> None:
                if removal == "prune":
                    removed.append((await sup.prune())[0])
                else:
                    await sup.remove("c", force=True)
                    removed.append("removed")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(create, made)
                await trio.testing.wait_all_tasks_blocked()
                assert [c.name for c in sup.list(all=True)] == ["c"]
                nursery.start_soon(remove, removed, removal)
                await trio.testing.wait_all_tasks_blocked()
                assert removed == []  # waits for the create
                gate.set()
            (c,) = made
            assert removed == ([[c.id]] if removal == "prune" else ["removed"])
            assert sup.list(all=True) == [] and not sup.store.container_dir(c.id).exists()
        gate = trio.Event()
        running: list[Container] = []

        async def run(running: list[Container]) -> None:
            running.append(await sup.run(config(image, "sleep", "100")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, running)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
            assert await sup.prune() == ([], 0)
        (c,) = running
        assert status(c) is Status.RUNNING
        await sup.remove(c.id, force=True)


async def test_links_that_follow_a_rename_are_written_off_the_loop_and_a_removal_wins(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename rewrites the records of the containers linking to it, and ``rm --link``
    its container's, with their fsyncs in a worker thread (as create's).  A linking
    container removed while another's record is written is not written after: no
    directory is made again for it."""
    gate, entered = threading.Event(), threading.Event()
    async with supervisor(tmp_path, host) as sup:
        await sup.create(config(image, "true"), "db")
        linking = [
            await sup.create(config(image, "true", network="bridge", links=("db:d",)), name)
            for name in ("web", "worker")
        ]
        write = sup.store.write
        written: list[str] = []

        def held(cid: str, data: bytes, *, durable: bool = True) -> None:
            if durable:  # the rename's own save of its new name is a state change's
                assert threading.current_thread() is not threading.main_thread()
                entered.set()
                assert gate.wait(10)  # else the loop never got to let it go
                written.append(cid)
            write(cid, data, durable=durable)

        monkeypatch.setattr(sup.store, "write", held)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.rename, "db", "db2")
            await trio.to_thread.run_sync(lambda: entered.wait(10))  # the loop runs meanwhile
            (first,) = [c for c in linking if sup._entries[c.id].record.under_way is not None]
            (second,) = [c for c in linking if c is not first]
            await sup.remove(second.id)
            gate.set()
        assert written == [first.id]
        assert not sup.store.container_dir(second.id).exists()
        assert read_record(sup.store.container_dir(first.id) / "container.json").config.links == (
            "db2:d",
        )
        gate.clear()
        entered.clear()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.remove_link, first.name, "d")
            await trio.to_thread.run_sync(lambda: entered.wait(10))
            gate.set()
        assert read_record(sup.store.container_dir(first.id) / "container.json").config.links == ()


async def test_an_adopted_run_a_kill_ended_is_not_restarted(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    """What the next daemon has after a kill cut short by the daemon's end: the record's
    manual stop, but a new entry (never told to stop) whose run then ends."""
    async with supervisor(tmp_path, host) as sup:
        policy = RestartPolicy.parse("on-failure")
        c = await sup.run(config(image, "sleep", "300", restart=policy))
        entry = sup._entries[c.id]
        assert entry.run is not None and not entry.stopping
        c.state.manual_stop = True
        os.kill(entry.run.pid, signal.SIGKILL)
        with trio.fail_after(30):  # a restarted one never rests
            await entry.idle.wait()
        assert (status(c), c.state.exit_code, c.state.restart_count) == (Status.STOPPED, 137, 0)


async def test_auto_remove_is_removed_by_the_supervisor(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "sh", "-c", "exit 4", auto_remove=True))
        assert await sup.wait(c.id) == 4
        await sup.removed(c.id)
        assert sup.list(all=True) == []
        assert not (tmp_path / "root/containers" / c.id).exists()


async def test_a_removed_container_is_freed_without_the_cycle_collector(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    """A finished run and its entry are freed when the container is removed, not left in
    a reference cycle for a full collection (the daemon's memory after busy spells:
    bench/README.md, session 8)."""
    gc.collect()  # what earlier tests left
    async with supervisor(tmp_path, host) as sup:
        c = await sup.run(config(image, "true"))
        assert await sup.wait(c.id) == 0
        await sup.remove(c.id)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            cyclic = {type(o).__name__ for o in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert not cyclic & {"_Entry", "Run", "Output", "LogWriter", "Container"}


async def test_auto_remove_that_cannot_start_is_removed(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    import errno

    native = FakeNative(failure=(Stage.EXEC, errno.ENOENT, 0))
    async with supervisor(tmp_path, host, native) as sup:
        with pytest.raises(StartError, match="No such file") as info:
            await sup.run(config(image, "/bin/nope", auto_remove=True))
        assert info.value.exit_code == 127
        assert sup.list(all=True) == []
        c = await sup.create(config(image, "/bin/nope"))
        with pytest.raises(StartError):
            await sup.start(c.id)
        assert (c.state.status, c.state.exit_code) == (Status.CREATED, 127)  # as Docker


async def test_rm_f_works_in_every_phase(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_supervisor, "BACKOFF_START", 3600.0)
    async with supervisor(tmp_path, host) as sup:
        created = await sup.create(config(image, "true"))
        running = await sup.run(config(image, "sleep", "100"))
        paused = await sup.run(config(image, "sleep", "100"))
        await sup.pause(paused.id)
        exited = await sup.run(config(image, "true"))
        await sup.wait(exited.id)
        restarting = await sup.run(config(image, "false", restart=RestartPolicy.parse("always")))
        await phase_becomes(sup, restarting.id, Status.RESTARTING)
        ignore_term = (
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(100)"
        )
        stubborn = await sup.run(config(image, sys.executable, "-c", ignore_term))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.stop, stubborn.id)
            await phase_becomes(sup, stubborn.id, Status.STOPPING)
            await sup.remove(stubborn.id, force=True)
        for c in (created, running, paused, exited, restarting):
            await sup.remove(c.id, force=True)
        assert sup.list(all=True) == []


def _live_record(root: Path, cid: str, **state: object) -> None:
    """A record as a killed daemon leaves it, for recovery to find."""
    record = json.loads((root / "containers" / cid / "container.json").read_text())
    record["state"].update(state)
    (root / "containers" / cid / "container.json").write_text(json.dumps(record))


@pytest.fixture
def sleepers() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """Two host processes (killed at the end)."""
    procs = (subprocess.Popen(["sleep", "100"]), subprocess.Popen(["sleep", "100"]))
    yield procs
    for p in procs:
        p.kill()
        p.wait()


async def test_recovery_kills_its_own_process_never_a_reused_pid(
    tmp_path: Path,
    host: CgroupHost,
    image: str,
    sleepers: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    async with supervisor(tmp_path, host) as sup:
        ours = await sup.create(config(image, "true"), "ours")
        reused = await sup.create(config(image, "true"), "reused")
        removing = await sup.create(config(image, "true"), "removing")
        # Long-running: recovery's start of it (awaited before the supervisor is open)
        # leaves it running, whatever the scheduling (a `true` could have ended already).
        always = RestartPolicy.parse("always")
        phoenix = await sup.create(config(image, "sleep", "100", restart=always))
    root = tmp_path / "root"
    left, unrelated = sleepers
    _live_record(
        root, ours.id, status="paused", pid=left.pid, pid_start_time=start_time_of(left.pid)
    )
    _live_record(
        root,
        reused.id,
        status="running",
        pid=unrelated.pid,
        pid_start_time=start_time_of(unrelated.pid) + 1,  # the pid was reused since
    )
    _live_record(root, removing.id, status="removing")
    _live_record(root, phoenix.id, status="restarting", exit_code=1, started_at=1.0)
    async with supervisor(tmp_path, host) as sup:
        assert await trio.to_thread.run_sync(left.wait) == -signal.SIGKILL
        assert unrelated.poll() is None
        c = sup.inspect("ours")
        assert (c.state.status, c.state.exit_code, c.state.pid) == (Status.EXITED, 255, 0)
        assert sup.inspect("reused").state.status is Status.EXITED
        with pytest.raises(_supervisor.NoSuchContainer):
            sup.inspect("removing")
        # Its policy re-applied by recovery: a new run, not the recorded one.
        again = sup.inspect(phoenix.id).state
        assert (again.status, again.pid > 0) == (Status.RUNNING, True)
        assert again.started_at is not None and again.started_at > 1.0


async def test_recovery_removes_every_auto_remove_container_it_does_not_adopt(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    """As Docker's daemon at its start: a --rm container not running is removed, whether
    it ended, never started (`create --rm`), or had its start cut by the last daemon's
    death (`run --rm`: recorded starting, never run); its anonymous volume goes with it.
    A container without --rm stays as it was."""
    async with supervisor(tmp_path, host) as sup:
        waiting = await sup.create(config(image, "true", auto_remove=True), "waiting")
        cut = await sup.create(
            config(image, "true", auto_remove=True, volumes=(Volume("", "/scratch"),)), "cut"
        )
        ended = await sup.create(config(image, "true", auto_remove=True), "ended")
        kept = await sup.create(config(image, "true"), "kept")
        volume = sup.volumes.list()[0].name
    root = tmp_path / "root"
    _live_record(root, cut.id, status="starting")
    _live_record(root, ended.id, status="exited", exit_code=0, started_at=1.0)
    async with supervisor(tmp_path, host) as sup:
        assert [c.name for c in sup.list(all=True)] == ["kept"]
        assert status(sup.inspect(kept.id)) is Status.CREATED
        for gone in (waiting, cut, ended):
            assert not (root / "containers" / gone.id).exists()
        assert volume not in {v.name for v in sup.volumes.list()}


async def test_shutdown_stops_every_live_phase(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        a = await sup.run(config(image, "sleep", "100"), "a")
        b = await sup.run(config(image, "sleep", "100"), "b")
        await sup.pause("b")
    assert [status(c) for c in (a, b)] == [Status.STOPPED, Status.STOPPED]
    assert not (a.state.manual_stop or b.state.manual_stop)  # unless-stopped comes back


def test_every_phase_has_a_docker_state_word() -> None:
    from boxd._dockerapi._shapes import status_text
    from boxd._listing import status_word
    from boxd._records import new_id

    c = Container(id=new_id(), name="c", created_at=0.0, config=config("/", "true"))
    c.state.started_at = c.state.finished_at = 100.0
    c.state.exit_code = 1
    words = {}
    for phase in Status:
        c.state.status = phase
        words[phase.value] = status_word(c)
        if phase is Status.PAUSED:
            assert status_text(c, 102.0) == "Up 2 seconds (Paused)"
        if phase is Status.RESTARTING:
            assert status_text(c, 103.0) == "Restarting (1) 3 seconds ago"
    assert words == {
        "created": "created",
        "starting": "exited",  # it ran before: started again by hand (shown_phase)
        "running": "running",
        "paused": "paused",
        "restarting": "restarting",
        "stopping": "running",
        "stopped": "exited",
        "exited": "exited",
        "removing": "removing",
    }


async def test_a_start_that_fails_before_spawning_goes_back_to_created(
    tmp_path: Path, fs: FakeCgroupFs, host: CgroupHost, image: str
) -> None:
    async with supervisor(tmp_path, host) as sup:
        c = await sup.create(config(image, "true"), "x")
        fs.refuse_device_programs = "Invalid argument"  # the kernel refuses: no cgroup
        with pytest.raises(StartError, match="Invalid argument"):
            await sup.start("x")
        assert status(c) is Status.CREATED and "Invalid argument" in c.state.error
        await sup.stop("x")  # nothing to stop
        fs.refuse_device_programs = None
        await sup.start("x")
        assert await sup.wait("x") == 0
        await sup.remove("x")


async def test_a_start_whose_caller_is_cancelled_still_ends_in_a_phase(
    tmp_path: Path, host: CgroupHost, image: str
) -> None:
    """A build's client that hangs up while its RUN step's container starts cancels the
    start: the start still ends (running), so the build's ``rm -f`` of the step's
    container, and any other, finishes instead of waiting on "starting" for ever."""
    async with supervisor(tmp_path, host) as sup:
        c = await sup.create(config(image, "sleep", "100"), "s")
        with trio.CancelScope() as scope:

            async def cancel_when_starting() -> None:
                await phase_becomes(sup, c.id, Status.STARTING)
                scope.cancel(reason="the client went away")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_starting)
                await sup.start("s")
                await trio.sleep_forever()  # the cancellation arrives here, after the start
        assert status(c) is Status.RUNNING
        with trio.fail_after(30):
            await sup.remove("s", force=True)
        assert sup.list(all=True) == []


def _trash_entries(root: Path) -> set[str]:
    return {p.name for p in (root / "trash").iterdir() if p.name != ".deleting"}


async def test_the_trash_waits_for_a_pause_in_starts_and_removals(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removed containers' directories are deleted once starts and removals pause (their
    deletion slowed the starts around it), and within TRASH_MAX_DELAY if they never do."""
    monkeypatch.setattr(_supervisor, "TRASH_QUIET", 0.4)
    monkeypatch.setattr(_supervisor, "TRASH_MAX_DELAY", 2.0)
    root = tmp_path / "root"

    async def one() -> str:
        c = await sup.run(config(image, "true"))
        await sup.wait(c.id)
        await sup.remove(c.id)
        await trio.sleep(0.05)
        return c.id

    async with supervisor(tmp_path, host) as sup:
        began = trio.current_time()
        removed = [await one() for _ in range(5)]
        assert trio.current_time() - began < 1.5  # a burst shorter than the longest delay
        assert _trash_entries(root) == set(removed)  # nothing deleted during it
        for _ in range(100):  # within 5 s
            if not _trash_entries(root):
                break
            await trio.sleep(0.05)
        assert _trash_entries(root) == set()
        # Never a pause: emptied all the same, TRASH_MAX_DELAY after the first removal.
        began = trio.current_time()
        removed = []
        with trio.fail_after(10):
            while not removed or set(removed) <= _trash_entries(root):
                removed.append(await one())
        assert trio.current_time() - began >= 1.5  # not at once either


def _spares(root: Path) -> list[Path]:
    spares = root / "spares"
    if not spares.exists():
        return []
    return sorted(p for p in spares.iterdir() if not p.name.startswith("."))


def _layout(directory: Path) -> list[tuple[str, int]]:
    """What a container's directory holds: each path below it and its mode."""
    return sorted((str(p.relative_to(directory)), p.lstat().st_mode) for p in directory.rglob("*"))


async def test_a_first_start_takes_a_spare_directory_made_at_the_pause(
    tmp_path: Path, host: CgroupHost, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the pause after starts (as the trash's), spare container directories are made,
    as many as started (at least SPARES_MIN); a container's first start (or its create)
    takes one by a rename (the same inode) instead of making a dozen inodes, and finds in
    it just what it would have made.  A container logging nowhere takes none.  The next
    supervisor on the root takes up the spares left and deletes one left half made."""
    monkeypatch.setattr(_supervisor, "TRASH_QUIET", 0.1)
    root = tmp_path / "root"

    async def spares_made(count: int) -> set[int]:
        for _ in range(250):  # within 5 s
            if len(_spares(root)) >= count:
                break
            await trio.sleep(0.02)
        assert len(_spares(root)) >= count
        return {p.stat().st_ino for p in _spares(root)}

    async with supervisor(tmp_path, host) as sup:
        first = await sup.run(config(image, "echo", "one"))
        assert await sup.wait(first.id) == 0
        made = await spares_made(_supervisor.SPARES_MIN)
        second = await sup.run(config(image, "echo", "two"))
        assert await sup.wait(second.id) == 0
        assert (root / "containers" / second.id).stat().st_ino in made
        assert _layout(root / "containers" / second.id) == _layout(root / "containers" / first.id)
        assert [e.data for e in read_entries(sup.log_dir(second.id))] == [b"two"]
        left = {p.stat().st_ino for p in _spares(root)}
        assert len(left) == len(made) - 1
        # A create takes one too (Docker's clients create, then start).
        created = await sup.create(config(image, "echo", "three"))
        assert (root / "containers" / created.id).stat().st_ino in left
        await sup.start(created.id)
        assert await sup.wait(created.id) == 0
        assert [e.data for e in read_entries(sup.log_dir(created.id))] == [b"three"]
        assert _layout(root / "containers" / created.id) == _layout(root / "containers" / first.id)
        silent = await sup.run(config(image, "true", log_driver="none"))
        await sup.wait(silent.id)
        assert (root / "containers" / silent.id).stat().st_ino not in made
        left = await spares_made(_supervisor.SPARES_MIN)
    (root / "spares" / f"{_store.SPARE_NEW}x").mkdir()
    async with supervisor(tmp_path, host) as sup:
        assert not (root / "spares" / f"{_store.SPARE_NEW}x").exists()
        third = await sup.run(config(image, "true"))
        await sup.wait(third.id)
        assert (root / "containers" / third.id).stat().st_ino in left


async def test_disk_use_skips_a_volume_removed_while_the_others_are_measured(
    tmp_path: Path, host: CgroupHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``system df`` measures volumes one by one in a thread: one removed meanwhile (a
    test suite's clean-up beside it) is left out, as Docker's df leaves it, not the whole
    answer a 404 naming it."""
    from boxd import _volserver

    async with supervisor(tmp_path, host) as sup:
        for name in ("first", "second"):
            sup.volumes.create(name)
        size = sup.volumes.size

        def measured(name: str) -> int:
            if name == "first":
                sup.remove_volume("second")
            return size(name)

        monkeypatch.setattr(sup.volumes, "size", measured)
        assert [v.name for v in await _volserver.sizes(sup)] == ["first"]

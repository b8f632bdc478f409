"""Live restore: containers outlive their daemon, and the next daemon adopts them.

Real daemons killed with SIGKILL or stopped with SIGTERM, real containers and their
boxd-shims; no shim or container process outlives a test (the harness checks).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.lowlevel
from daemon_harness import Daemon, leftover_cgroups, running_daemon, shims, until
from test_network import links, links_settle, netns, nft_tables
from test_terminal import Tmux, _boxctl, _until_prompt, tmux

import boxd
from boxd import _shim

pytestmark = pytest.mark.root

__all__ = ["netns", "tmux"]  # the fixtures: test_attach_after_a_crash's, live_net's


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path, "--procview", "off") as d:
        yield d


@pytest.fixture
def live_net(tmp_path: Path, netns: str) -> Iterator[Daemon]:
    """A daemon whose bridges and veth pairs are made in a network namespace of the test's
    own (deleted afterwards whatever happens); none of them is left when it stops."""
    with running_daemon(tmp_path, "--procview", "off", netns=netns) as d:
        yield d
    assert links_settle(netns, ("boxd", "bx"), []) == []
    assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# Its checks run boxctl: every 0.05 s.
_until = partial(until, interval=0.05)


def _numbers(daemon: Daemon, ref: str) -> list[int]:
    return [int(line) for line in daemon.ctl("logs", ref).stdout.split()]


def _logged_beyond(daemon: Daemon, ref: str, count: int) -> bool:
    return len(_numbers(daemon, ref)) > count


def _crash(daemon: Daemon) -> None:
    daemon.stop(signal.SIGKILL)


def test_output_written_while_no_daemon_runs_is_logged_once_and_in_order(live: Daemon) -> None:
    script = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.01; done"
    live.ctl("run", "-d", "--name", "count", "default", "sh", "-c", script)
    pid = live.inspect("count")["state"]["pid"]
    _until(lambda: len(_numbers(live, "count")) > 20, "the first lines")
    _crash(live)
    time.sleep(3)  # the container writes on with no daemon at all
    assert _alive(pid)
    live.start()
    c = live.inspect("count")
    assert (c["state"]["status"], c["state"]["pid"]) == ("running", pid)
    before = len(_numbers(live, "count"))
    _until(lambda: len(_numbers(live, "count")) > before + 20, "lines after the adoption")
    live.ctl("kill", "count")
    assert live.ctl("wait", "count").stdout.strip() == "137"
    numbers = _numbers(live, "count")
    assert numbers == list(range(len(numbers)))


def test_daemons_killed_while_they_log_lose_and_repeat_nothing(
    live: Daemon, tmp_path: Path
) -> None:
    """Each daemon is killed as it catches up on a pipe that filled while no daemon ran
    (1 MiB): its pump is busy logging chunks of ~37,000 lines for ~100 ms, and a death in
    that time lost a chunk, or the part of it not yet logged, before the output ledger
    (boxd/_ledger.py)."""
    rounds, size = 3, 300_000
    go = tmp_path / "go"
    go.mkdir()
    script = (
        f"for b in $(seq 0 {rounds - 1}); do while [ ! -e /go/$b ]; do sleep 0.01; done; "
        f"seq $((b*{size}+1)) $((b*{size}+{size})); done; sleep 300"
    )
    run = ("run", "-d", "--name", "flood", "--log-opt", "max-size=1g", "-v", f"{go}:/go")
    live.ctl(*run, "default", "sh", "-c", script)
    log = live.root / "containers" / live.inspect("flood")["id"] / "logs" / "container.log"
    for burst in range(rounds):
        _crash(live)
        (go / str(burst)).touch()
        time.sleep(0.2)  # the pipe fills (1 MiB), and seq waits
        before = log.stat().st_size
        live.start(ready=False)  # the adoption and catch-up come before it answers
        deadline = time.monotonic() + 60
        while log.stat().st_size == before:  # the catch-up has begun
            assert time.monotonic() < deadline, "no output logged"
            time.sleep(0.001)
        _crash(live)
        live.start()
    last = f"{rounds * size}\n"
    _until(lambda: live.ctl("logs", "--tail", "1", "flood").stdout == last, "the last line")
    assert live.ctl("logs", "flood").stdout == "".join(
        f"{n}\n" for n in range(1, rounds * size + 1)
    )
    live.ctl("rm", "-f", "flood")


def test_a_container_below_its_own_cgroup_parent_is_adopted(live: Daemon) -> None:
    """A relative --cgroup-parent is a directory below the daemon's own parent of
    containers' cgroups, which the next daemon's recovery took for a container's cgroup
    left behind: it killed and removed the adopted container's."""
    live.ctl("run", "-d", "--name", "held", "--cgroup-parent", "team/a", "default", "sleep", "300")
    pid = live.inspect("held")["state"]["pid"]
    _crash(live)
    live.start()
    c = live.inspect("held")
    assert (c["state"]["status"], c["state"]["pid"]) == ("running", pid)
    assert f"/team/a/{c['id']}" in Path(f"/proc/{pid}/cgroup").read_text()
    live.ctl("rm", "-f", "held")  # the harness then finds no cgroup nor parent of it left


def test_sigterm_leaves_containers_running_and_every_verb_works_on_them(live: Daemon) -> None:
    live.ctl("run", "-d", "--name", "s", "default", "sleep", "300")
    # `create -i`, Docker's StdinOnce: the end of an attached client's input ends its stdin.
    live.ctl("create", "-i", "--name", "cat", "default", "sh", "-c", "cat; echo eof")
    live.ctl("start", "cat")
    pid = live.inspect("s")["state"]["pid"]
    assert live.stop() == 0
    assert _alive(pid)
    live.start()
    c = live.inspect("s")
    assert (c["state"]["status"], c["state"]["pid"]) == ("running", pid)
    assert live.ctl("exec", "s", "echo", "inside").stdout == "inside\n"
    stats = json.loads(live.ctl("stats", "--no-stream", "--format", "json", "s").stdout)
    assert stats
    live.ctl("update", "--memory", "128m", "--memory-swap", "256m", "s")
    assert live.inspect("s")["config"]["resources"]["memory"] == 128 * 1024 * 1024
    # The adopted container's stdin: what is sent arrives, and closing it ends `cat`.
    sent = live.ctl("attach", "cat", input=b"hello\n", timeout=30)
    assert "hello" in sent.stdout
    assert live.ctl("wait", "cat").stdout.strip() == "0"
    assert live.ctl("logs", "cat").stdout == "hello\neof\n"
    live.ctl("stop", "-t", "1", "s")
    c = live.inspect("s")
    assert (c["state"]["status"], c["state"]["exit_code"]) == ("stopped", 137)
    assert not _alive(pid)


def test_an_adopted_container_has_no_start_event(live: Daemon) -> None:
    """The next daemon's adoption is no start (Docker reports none at a live restore);
    what it really does is reported: the end of one that ended meanwhile."""
    live.ctl("run", "-d", "--name", "s", "default", "sleep", "300")
    live.ctl("run", "-d", "--name", "once", "default", "sh", "-c", "sleep 1; exit 3")
    pid = live.inspect("once")["state"]["pid"]
    since = str(time.time())
    _crash(live)
    _until(lambda: not _alive(pid), "the container's end")
    live.start()
    live.wait_for("once", lambda c: c["state"]["status"] == "exited")
    events = live.ctl(
        "events", "--since", since, "--until", str(time.time() + 1), "--filter", "type=container",
        "--format", "{{.Action}} {{.Actor.Attributes.name}}",
    ).stdout.splitlines()  # fmt: skip
    assert events == ["die once"]


def test_exit_while_no_daemon_runs_gets_its_code_and_its_restart_policy(live: Daemon) -> None:
    live.ctl("run", "-d", "--name", "once", "default", "sh", "-c", "sleep 1; exit 3")
    again = "test -e /marker && exec sleep 300; touch /marker; sleep 1; exit 4"
    live.ctl(
        "run", "-d", "--name", "again", "--restart", "on-failure:1", "default", "sh", "-c", again
    )
    pids = [live.inspect(n)["state"]["pid"] for n in ("once", "again")]
    _crash(live)
    _until(lambda: not any(_alive(p) for p in pids), "both containers' end")
    live.start()
    once = live.wait_for("once", lambda c: c["state"]["status"] == "exited")
    assert (once["state"]["exit_code"], once["state"]["error"]) == (3, "")
    again_c = live.wait_for("again", lambda c: c["state"]["restart_count"] == 1)
    assert again_c["state"]["exit_code"] in (None, 4)
    live.wait_for("again", lambda c: c["state"]["status"] == "running")


def test_an_end_while_no_daemon_runs_is_dated_by_its_shim(live: Daemon) -> None:
    """FinishedAt and the run's wall time of a container that ended while no daemon ran are
    when its shim reaped it, not when the next daemon learned of its end; so is FinishedAt
    of one a stop under way ended (not adopted: its record says stopping)."""
    for name in ("brief", "stopped"):
        live.ctl("run", "-d", "--name", name, "default", "sh", "-c", "sleep 1; exit 3")
    cid = live.inspect("stopped")["id"]
    pids = [live.inspect(n)["state"]["pid"] for n in ("brief", "stopped")]
    _crash(live)
    _until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), "both reaped by shims")
    seen = time.time()
    _edit_record(live, cid, status="stopping")
    live.start()
    st = live.wait_for("brief", lambda c: c["state"]["status"] == "exited")["state"]
    assert st["exit_code"] == 3
    assert st["started_at"] < st["finished_at"] <= seen
    assert st["summary"]["wall_seconds"] <= seen - st["started_at"]
    st = live.inspect("stopped")["state"]
    assert (st["status"], st["exit_code"]) == ("stopped", 3)
    assert st["started_at"] < st["finished_at"] <= seen


async def test_an_older_shims_greeting_has_no_end_time(tmp_path: Path) -> None:
    """A shim of an older boxd build (left running across an upgrade) sends the bare
    message, without the time of its container's end: its status is read all the same
    (the daemon dates the end as it learns of it)."""
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dirfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        await listener.bind(f"/proc/self/fd/{dirfd}/{_shim.SOCKET_NAME}")
    finally:
        os.close(dirfd)
    listener.listen()
    pidfd = os.pidfd_open(os.getpid())
    hello = _shim.MESSAGE.pack(_shim.MAGIC, 1, 4242, os.CLD_EXITED, 3, 0)  # HELLO, no slots

    async def older_shim() -> None:
        peer, _ = await listener.accept()
        with peer:
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", pidfd))
            await peer.sendmsg([hello], [rights])
            await peer.recv(_shim.MESSAGE.size)  # until the daemon's side closes

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(older_shim)
            conn, greeting = await _shim.ShimConnection.connect(tmp_path)
            conn.close()
            os.close(greeting.pidfd)
    finally:
        listener.close()
        os.close(pidfd)
    assert (greeting.pid, greeting.exited) == (4242, _shim.ExitStatus(os.CLD_EXITED, 3, None))


def test_a_restart_the_last_daemon_waited_for_is_done_by_the_next(live: Daemon) -> None:
    """A daemon that died in a backoff (the record says restarting, the restart counted)
    leaves the restart to the next: on-failure:1's last try is not lost."""
    cid = live.ctl(
        "run", "-d", "--name", "again", "--restart", "on-failure:1", "--network", "none",
        "default", "sh", "-c", "echo ran; exit 3",
    ).stdout.strip()  # fmt: skip
    live.wait_for("again", lambda c: c["state"]["status"] == "exited")
    assert live.ctl("logs", "again").stdout == "ran\nran\n"
    assert live.stop() == 0
    _edit_record(live, cid, status="restarting")  # as a death in its first backoff left it
    live.start()
    _until(lambda: live.ctl("logs", "again").stdout.count("ran") == 4, "two runs more")
    c = live.wait_for("again", lambda c: c["state"]["status"] == "exited")
    assert (c["state"]["exit_code"], c["state"]["restart_count"]) == (3, 1)


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _veth(daemon: Daemon, ref: str) -> str:
    """The host's end of the container's eth0."""
    return f"bx{daemon.inspect(ref)['id'][:12]}"


def test_a_container_in_another_ones_namespaces_is_adopted(live_net: Daemon) -> None:
    """``--network container:web`` (compose's ``network_mode: service:web``) and ``--ipc
    container:web``: kept by its shim across a crash and a SIGTERM like any container, still
    in web's namespaces; once web ends, web's interface leaves the namespace they share."""
    d = live_net
    d.ctl("run", "-d", "--name", "web", "default", "sleep", "300")
    script = "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done"
    d.ctl("run", "-d", "--name", "side", "--network", "container:web", "--ipc", "container:web",
          "default", "sh", "-c", script)  # fmt: skip
    web, side = (d.inspect(n)["state"]["pid"] for n in ("web", "side"))
    shared = [_ns(web, kind) for kind in ("net", "ipc")]
    assert [_ns(side, kind) for kind in ("net", "ipc")] == shared
    for sig in (signal.SIGKILL, signal.SIGTERM):  # a crash, then a graceful restart
        seen = len(_numbers(d, "side"))
        assert d.stop(sig) == (0 if sig == signal.SIGTERM else -sig)
        assert _alive(side)
        d.start()
        c = d.inspect("side")
        assert (c["state"]["status"], c["state"]["pid"]) == ("running", side)
        assert [_ns(side, kind) for kind in ("net", "ipc")] == shared
        _until(partial(_logged_beyond, d, "side", seen + 10), "side's lines after adoption")
    assert "side" in d.ctl("ps").stdout
    numbers = _numbers(d, "side")
    assert numbers == list(range(len(numbers)))
    # Its peer's end takes the peer's interface out of the namespace it goes on holding.
    veth = _veth(d, "web")
    d.ctl("stop", "-t", "0", "web")
    assert links_settle(d.netns, (veth,), []) == []
    assert links(f"/proc/{side}/ns/net") == ["lo"]
    d.ctl("stop", "-t", "1", "side")
    c = d.inspect("side")
    assert (c["state"]["status"], c["state"]["exit_code"]) == ("stopped", 137)
    assert not _alive(side)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_a_peer_that_ends_while_no_daemon_runs(live_net: Daemon) -> None:
    """Its --network members run on in the namespace they hold, not restarted (a --pid
    member ends with it: the kernel ends a pid namespace with its init); the peer's
    interface leaves that namespace whether its shim kept its end or is gone too, and the
    peer starts again."""
    d = live_net
    for n in ("1", "2"):
        d.ctl("run", "-d", "--name", f"web{n}", "default", "sleep", "300")
        d.ctl("run", "-d", "--name", f"side{n}", "--restart", "always",
              "--network", f"container:web{n}", "default", "sleep", "300")  # fmt: skip
    d.ctl("run", "-d", "--name", "pidj", "--network", "none", "--pid", "container:web1",
          "default", "sleep", "300")  # fmt: skip
    pids = {n: d.inspect(n)["state"]["pid"] for n in ("web1", "web2", "side1", "side2", "pidj")}
    veths = sorted(_veth(d, n) for n in ("web1", "web2"))
    _crash(d)
    os.kill(pids["web1"], signal.SIGKILL)  # its shim keeps its exit status
    os.kill(_parent(pids["web2"]), signal.SIGKILL)  # its shim: the next daemon kills it
    _until(lambda: not _alive(pids["web1"]) and not _alive(pids["pidj"]), "web1's end")
    d.start()
    ended = {n: d.inspect(n)["state"] for n in ("web1", "web2", "pidj")}
    assert {n: (st["status"], st["exit_code"]) for n, st in ended.items()} == {
        "web1": ("exited", 137),
        "web2": ("exited", 255),
        "pidj": ("exited", 137),
    }
    for n in ("side1", "side2"):
        st = d.inspect(n)["state"]
        assert (st["status"], st["pid"], st["restart_count"]) == ("running", pids[n], 0)
        assert links(f"/proc/{pids[n]}/ns/net") == ["lo"]
    assert links_settle(d.netns, tuple(veths), []) == []
    for n in ("web1", "web2"):
        d.ctl("start", n)
    assert [n for n in links(d.netns) if n in veths] == veths
    d.ctl("kill", "side1")
    assert d.ctl("wait", "side1").stdout.strip() == "137"
    d.ctl("rm", "-f", "side2")
    d.wait_for_gone("side2")
    assert not _alive(pids["side1"]) and not _alive(pids["side2"])


def _reboot(daemon: Daemon) -> None:
    """What a reboot leaves: no daemon, no shim, no container process, no cgroup."""
    _crash(daemon)
    for shim in shims(daemon.root):
        children = Path(f"/proc/{shim}/task/{shim}/children").read_text().split()
        for pid in [shim, *map(int, children)]:
            os.kill(pid, signal.SIGKILL)
    _until(lambda: not shims(daemon.root), "the shims' end")
    for cgroup in leftover_cgroups(daemon.root):
        _until(partial(_rmdir, cgroup), f"the removal of {cgroup}")


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def test_after_a_reboot_nothing_runs_and_restart_always_applies(live: Daemon) -> None:
    live.ctl("run", "-d", "--name", "plain", "default", "sleep", "300")
    live.ctl("run", "-d", "--name", "always", "--restart", "always", "default", "sleep", "300")
    pids = [live.inspect(n)["state"]["pid"] for n in ("plain", "always")]
    _reboot(live)
    live.start()
    plain = live.inspect("plain")
    assert (plain["state"]["status"], plain["state"]["exit_code"]) == ("exited", 255)
    always = live.wait_for("always", lambda c: c["state"]["status"] == "running")
    assert always["state"]["pid"] not in pids


def _edit_record(daemon: Daemon, cid: str, **state: object) -> None:
    path = daemon.root / "containers" / cid / "container.json"
    record = json.loads(path.read_text())
    record["state"].update(state)
    path.write_text(json.dumps(record))


def test_a_reused_pid_is_never_adopted_nor_killed(live: Daemon) -> None:
    cid = live.ctl("run", "-d", "--name", "gone", "default", "sleep", "300").stdout.strip()
    _reboot(live)
    with subprocess.Popen(["sleep", "300"]) as stranger:
        try:
            # The record now names a live process that is not the container (pid reuse).
            _edit_record(live, cid, pid=stranger.pid)
            live.start()
            c = live.inspect("gone")
            assert (c["state"]["status"], c["state"]["exit_code"]) == ("exited", 255)
            assert stranger.poll() is None
        finally:
            stranger.kill()


def test_a_shim_that_disagrees_with_the_record_is_not_adopted(live: Daemon) -> None:
    cid = live.ctl("run", "-d", "--name", "odd", "default", "sleep", "300").stdout.strip()
    pid = live.inspect("odd")["state"]["pid"]
    _crash(live)
    _edit_record(live, cid, pid_start_time=1)  # as if the pid had been reused
    live.start()
    c = live.inspect("odd")
    assert (c["state"]["status"], c["state"]["exit_code"]) == ("exited", 255)
    _until(lambda: not _alive(pid) and not shims(live.root), "the end of the shim's container")


def test_an_orphan_shim_ends_its_container_and_itself(live: Daemon) -> None:
    """A shim whose socket is gone (its daemon's root deleted) can never be reached again:
    it kills its container and exits instead of keeping it alive unsupervised forever."""
    cid = live.ctl("run", "-d", "--name", "orphan", "default", "sleep", "300").stdout.strip()
    pid = live.inspect("orphan")["state"]["pid"]
    (shim,) = shims(live.root)
    _crash(live)
    (socket,) = live.root.rglob(f"{cid}/shim.sock")
    socket.unlink()
    _until(lambda: not _alive(pid) and not _alive(shim), "the orphan's end")
    live.start()  # the next daemon finds no shim: the record says so, the rest is repaired
    c = live.inspect("orphan")
    assert (c["state"]["status"], c["state"]["exit_code"]) == ("exited", 255)


def test_a_record_set_aside_ends_its_shim(live: Daemon) -> None:
    """A record the next daemon cannot read (a field of a newer boxd, a damaged file) is set
    aside with its directory: its shim, reached by no daemon again, ends with its container
    (it waited for ever, unsupervised)."""
    cid = live.ctl("run", "-d", "--name", "unread", "default", "sleep", "300").stdout.strip()
    pid = live.inspect("unread")["state"]["pid"]
    (shim,) = shims(live.root)
    _crash(live)
    (live.root / "containers" / cid / "container.json").write_text('{"id": "')  # cut short
    live.start()
    assert (live.root / "containers" / f"{cid}.corrupt" / "container.json").exists()
    _until(lambda: not _alive(pid) and not _alive(shim), "the set-aside shim's end")


def _blocked_on_output(cgroup_dirs: list[str]) -> bool:
    for d in cgroup_dirs:
        procs = Path(d, "cgroup.procs")
        if not procs.exists():
            continue
        for pid in procs.read_text().split():
            try:
                if Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_write"):
                    return True
            except OSError:
                continue
    return False


def _buffered(pid: int) -> list[int]:
    """Bytes waiting in each pipe process ``pid`` holds (read through /proc: nothing is
    consumed)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if os.readlink(fd).startswith("pipe:"):
            end = os.open(fd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                size = fcntl.ioctl(end, termios.FIONREAD, b"\0\0\0\0")
            finally:
                os.close(end)
            found.append(int.from_bytes(size, sys.byteorder))
    return found


def test_a_full_pipe_blocks_the_container_while_no_daemon_runs(live: Daemon) -> None:
    count = 400_000  # 2.6 MB of output: more than the pipe's 1 MiB
    script = f"while [ ! -e /go ]; do sleep 0.05; done; seq 1 {count}; echo end"
    live.ctl("run", "-d", "--name", "flood", "default", "sh", "-c", script)
    pid = live.inspect("flood")["state"]["pid"]
    _crash(live)
    subprocess.run(["nsenter", "-t", str(pid), "-m", "--", "touch", "/go"], check=True)
    _until(lambda: _blocked_on_output(leftover_cgroups(live.root)), "a writer blocked on the pipe")
    (shim,) = shims(live.root)
    assert max(_buffered(shim)) >= 1_000_000  # the pipe took a MiB before it blocked
    live.start()
    assert live.ctl("wait", "flood").stdout.strip() == "0"
    lines = live.ctl("logs", "flood").stdout.split("\n")
    assert lines == [str(n) for n in range(1, count + 1)] + ["end", ""]


def test_attach_after_a_crash(live: Daemon, tmux: Tmux) -> None:
    tmux.start(_boxctl(live, "run", "-it", "--name", "tty", "default", "sh"))
    _until_prompt(tmux)
    pid = live.inspect("tty")["state"]["pid"]
    _crash(live)
    tmux.wait_exit()  # the client lost its daemon
    live.start()
    tmux.start(_boxctl(live, "attach", "tty"))
    _until_prompt(tmux)
    tmux.keys("echo adopted-$((6*7))", "Enter")
    tmux.wait_for(lambda s: "adopted-42" in s)
    tmux.keys("C-p", "C-q")
    assert tmux.wait_exit() == 1  # "read escape sequence", as Docker's client
    c = live.inspect("tty")
    assert (c["state"]["status"], c["state"]["pid"]) == ("running", pid)


def _procs_running(daemon: Daemon, ref: str, text: str) -> list[int]:
    """The pids in container ``ref`` whose command line holds ``text``."""
    rows = daemon.ctl("top", ref, "-o", "pid,args").stdout.splitlines()[1:]
    return [
        int(pid) for pid, _, command in (r.strip().partition(" ") for r in rows) if text in command
    ]


def test_exec_d_processes_outlive_the_daemon(live: Daemon) -> None:
    """`exec -d` (boxctl's and the Engine API's) gets /dev/null for stdio, as Docker's, so
    a process that writes all the time lives through a daemon's kill -9 and a SIGTERM that
    leaves the containers running (its output pipes broke with the daemon before)."""
    docker = pytest.importorskip("docker")
    live.ctl("run", "-d", "--name", "s", "default", "sleep", "300")
    loop = "while :; do echo {0}; echo {0} >&2; sleep 0.05; done"
    live.ctl("exec", "-d", "s", "sh", "-c", loop.format("boxctl"))
    client = docker.DockerClient(base_url=f"unix://{live.docker_socket}")
    try:
        client.containers.get("s").exec_run(["sh", "-c", loop.format("engine")], detach=True)
    finally:
        client.close()
    _until(lambda: len(_procs_running(live, "s", "while :")) == 2, "both exec'd loops")
    pids = _procs_running(live, "s", "while :")
    for pid in pids:
        assert [os.readlink(f"/proc/{pid}/fd/{n}") for n in range(3)] == ["/dev/null"] * 3
    _crash(live)
    time.sleep(0.3)  # they would have written into broken pipes by now
    assert all(_alive(pid) for pid in pids)
    live.start()
    # Started by this daemon, then left by a SIGTERM with live restore (it killed them).
    live.ctl("exec", "-d", "s", "sh", "-c", loop.format("third"))
    _until(lambda: len(_procs_running(live, "s", "while :")) == 3, "the third loop")
    pids = _procs_running(live, "s", "while :")
    assert live.stop() == 0
    time.sleep(0.3)
    assert all(_alive(pid) for pid in pids)
    live.start()
    assert sorted(_procs_running(live, "s", "while :")) == sorted(pids)
    # They are the container's: they end with it.
    live.ctl("stop", "-t", "1", "s")
    assert not any(_alive(pid) for pid in pids)


def test_no_live_restore_stops_containers_with_the_daemon(tmp_path: Path) -> None:
    with running_daemon(tmp_path, "--procview", "off", "--no-live-restore") as daemon:
        daemon.ctl("run", "-d", "--name", "s", "default", "sleep", "300")
        pid = daemon.inspect("s")["state"]["pid"]
        assert not shims(daemon.root)
        assert daemon.stop() == 0
        assert not _alive(pid)


def test_restart_policies_after_the_daemons_own_stop(tmp_path: Path) -> None:
    """Containers a --no-live-restore daemon stopped as it ended come back with the next
    as their policies say, as Docker's: on-failure too when that stop left a code not 0
    (nobody asked for it: the daemon's stop is no user's)."""
    trap = "trap 'exit {}' TERM; sleep 300 & wait"
    with running_daemon(tmp_path, "--procview", "off", "--no-live-restore") as daemon:
        for name, policy, code in (
            ("failing", "on-failure:1", 3),
            ("zero", "on-failure", 0),
            ("plain", "no", 3),
            ("always", "always", 0),
            ("unless", "unless-stopped", 0),
            ("asked", "on-failure", 3),
            ("asked-unless", "unless-stopped", 0),
        ):
            daemon.ctl(
                "run", "-d", "--name", name, "--restart", policy, "--network", "none",
                "default", "sh", "-c", trap.format(code),
            )  # fmt: skip
        daemon.ctl("stop", "asked", "asked-unless")  # by a user: they stay down
        assert daemon.stop() == 0
        daemon.start()
        names = daemon.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split()
        phases = {name: daemon.inspect(name)["state"]["status"] for name in names}
        assert phases == {
            "failing": "running",
            "zero": "stopped",
            "plain": "stopped",
            "always": "running",
            "unless": "running",
            "asked": "stopped",
            "asked-unless": "stopped",
        }


async def test_the_library_keeps_containers_only_when_asked(tmp_path: Path) -> None:
    config = boxd.ContainerConfig(image="default", command=("sleep", "300"))
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        structured = await sup.run(config)
    assert structured.state.status.value == "stopped"
    async with boxd.open_supervisor(tmp_path / "lib", live_restore=True) as sup:
        kept = await sup.run(config)
    pid = kept.state.pid
    assert _alive(pid)
    async with boxd.open_supervisor(tmp_path / "lib", live_restore=True) as sup:
        adopted = sup.inspect(kept.id)
        assert (adopted.state.status.value, adopted.state.pid) == ("running", pid)
        await sup.remove(kept.id, force=True)
        await sup.remove(structured.id)
    await trio.lowlevel.checkpoint()
    assert not _alive(pid)
    assert not shims(tmp_path / "lib")


@pytest.mark.fuse
def test_the_proc_view_works_again_in_an_adopted_container(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        if "procview: on\n" not in daemon.ctl("info").stdout:
            pytest.skip("the daemon serves no /proc view here")
        daemon.ctl("run", "-d", "--name", "m", "--memory", "64m", "default", "sleep", "300")
        meminfo = ("exec", "m", "head", "-1", "/proc/meminfo")
        assert daemon.ctl(*meminfo).stdout.split()[1] == "65536"
        _crash(daemon)
        daemon.start()
        assert daemon.ctl(*meminfo).stdout.split()[1] == "65536"
        daemon.stop()
        daemon.start()
        assert daemon.ctl(*meminfo).stdout.split()[1] == "65536"

"""A daemon that always comes back: whatever a killed daemon leaves behind (a dead /proc
view, unreadable or unfinished records, a record of a newer boxd, a temporary socket,
trash), the next one repairs and serves.  Real daemons, real kernel."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import random
import shlex
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import trio
from daemon_harness import (
    Daemon,
    cgroup_parents,
    daemon_cli,
    leftover_cgroups,
    running_daemon,
    shims,
    until,
)

import boxd
from boxd._procview import available
from boxd._records import new_id
from boxd._run import start_time_of
from boxd._store import FORMAT
from boxd._supervisor import COMMIT_PAUSE

pytestmark = pytest.mark.root


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.fuse
@pytest.mark.skipif(available() is not None, reason=f"no FUSE here: {available()}")
def test_a_daemon_killed_while_serving_the_proc_view_is_replaced(tmp_path: Path) -> None:
    """The bug as reported: the next daemon died on ENOTCONN at <root>/procview."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "-d", "--name", "a", "--memory", "64m", "default", "sleep", "300")
        pid = daemon.inspect("a")["state"]["pid"]
        daemon.stop(signal.SIGKILL)
        with pytest.raises(OSError) as dead:
            os.statvfs(daemon.root / "procview")
        assert dead.value.errno == errno.ENOTCONN
        daemon.start()
        assert "procview: on" in daemon.ctl("info").stdout
        c = daemon.inspect("a")  # adopted (live restore): the same process runs on
        assert (c["state"]["status"], c["state"]["pid"]) == ("running", pid) and _alive(pid)
        r = daemon.ctl(
            "run", "--rm", "--memory", "64m", "default", "grep", "MemTotal", "/proc/meminfo"
        )
        assert r.stdout.split()[1] == str(64 << 10)


def _record(root: Path, cid: str) -> Path:
    return root / "containers" / cid / "container.json"


def test_leftovers_of_every_kind_never_stop_the_daemon(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        for name in ("good", "corrupt", "future"):
            daemon.ctl("create", "--name", name, "default", "true")
        ids = {n: daemon.inspect(n)["id"] for n in ("good", "corrupt", "future")}
        daemon.stop(signal.SIGKILL)
        root = daemon.root
        _record(root, ids["corrupt"]).write_text('{"id": "')  # cut short
        future = json.loads(_record(root, ids["future"]).read_text())
        future["format"] = FORMAT + 1
        future["state"]["status"] = "hibernating"
        _record(root, ids["future"]).write_text(json.dumps(future))
        future_bytes = _record(root, ids["future"]).read_bytes()
        unfinished = root / "containers" / new_id()  # kill -9 during create
        unfinished.mkdir()
        (unfinished / ".container.json.tmp").write_text("{")
        (_record(root, ids["good"]).parent / ".container.json.tmp").write_text("{")
        (root / "trash" / "x" / "deep").mkdir(parents=True, exist_ok=True)
        stale_socket = daemon.socket.with_name(f".{daemon.socket.name}.4194305")  # no such pid
        stale_socket.write_text("")
        daemon.start()
        listing = daemon.ctl("ps", "-a", "--format", "{{.Names}}").stdout
        assert listing.split() == ["good"]
        assert (root / "containers" / f"{ids['corrupt']}.corrupt" / "container.json").exists()
        assert _record(root, ids["future"]).read_bytes() == future_bytes  # left alone
        assert not unfinished.exists() and not stale_socket.exists()
        assert not list(_record(root, ids["good"]).parent.glob(".*.tmp"))
        deadline = time.monotonic() + 30
        while (root / "trash" / "x").exists():  # emptied in the background
            assert time.monotonic() < deadline, "the trash was not emptied"
            time.sleep(0.05)


def _cgroup_pids(root: Path) -> dict[str, set[int]]:
    """Container id -> pids in its cgroups (any hierarchy) of the daemon on ``root``."""
    found: dict[str, set[int]] = {}
    for path in leftover_cgroups(root):
        for dirpath, _, files in os.walk(path):
            if "cgroup.procs" in files:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids = {int(p) for p in f.read().split()}
                found.setdefault(os.path.basename(path), set()).update(pids)
    return found


def _check_truth(daemon: Daemon) -> None:
    """Every record parses; none is shown running whose process is dead; no process runs
    in a container's cgroup that no running record shows; no --rm container is at rest
    (the daemon's start removes those it does not adopt, as Docker's does)."""
    ids = daemon.ctl("ps", "-a", "-q", "--no-trunc").stdout.split()
    inspected = [daemon.inspect(i) for i in ids]
    assert [c["id"] for c in inspected] == ids
    live = {}
    for c in inspected:
        st = c["state"]
        if st["status"] in ("running", "paused", "stopping"):
            assert st["pid"] > 0 and _alive(st["pid"]), st
            assert start_time_of(st["pid"]) == st["pid_start_time"]
            live[c["id"]] = st["pid"]
        elif c["config"]["auto_remove"]:
            raise AssertionError(f"a --rm container left {st['status']}: {c['id']}")
    for cid, pids in _cgroup_pids(daemon.root).items():
        running = {p for p in pids if _alive(p)}
        assert not running or cid in live, (cid, running, live)


def test_kill_9_at_random_moments_always_comes_back(tmp_path: Path) -> None:
    """30 rounds of create/start/stop/rm, the daemon killed at a random moment in each;
    the next daemon starts every time and tells the truth (live restore on: what runs is
    adopted)."""
    rng = random.Random(13)
    with running_daemon(tmp_path) as daemon:
        for round_ in range(30):
            if daemon.process is None:
                daemon.start()
            _check_truth(daemon)
            assert daemon.process is not None
            killer = threading.Timer(rng.uniform(0.0, 0.8), daemon.process.send_signal, [9])
            killer.start()
            name = f"c{round_}"
            for args in (
                ("create", "--name", name, "default", "sleep", "300"),
                ("start", name),
                (
                    "run",
                    "-d",
                    "--name",
                    "phoenix",
                    "--restart",
                    "always",
                    "default",
                    "sleep",
                    "300",
                ),
                ("stop", "-t", "0", name),
                ("rm", name),
                ("run", "--rm", "default", "true"),
            ):
                daemon.ctl(*args, check=False, timeout=30)  # fails once the daemon is killed
            killer.join()
            daemon.process.wait(timeout=30)
            daemon.process = None
        daemon.start()
        _check_truth(daemon)


def test_a_simulated_reboot_shows_nothing_running_and_restarts_always(tmp_path: Path) -> None:
    """boxd killed, then every container process (as a reboot does): the next daemon shows
    none of them running, and starts the `--restart always` one again."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "-d", "--name", "plain", "default", "sleep", "300")
        daemon.ctl(
            "run", "-d", "--name", "always", "--restart", "always", "default", "sleep", "300"
        )
        daemon.ctl("run", "-d", "--name", "paused", "default", "sleep", "300")
        daemon.ctl("pause", "paused")
        pids = {n: daemon.inspect(n)["state"]["pid"] for n in ("plain", "always", "paused")}
        daemon.stop(signal.SIGKILL)
        for shim in shims(daemon.root):  # what keeps containers while no daemon runs
            os.kill(shim, signal.SIGKILL)
        for procs in _cgroup_pids(daemon.root).values():
            for pid in procs:
                os.kill(pid, signal.SIGKILL)  # frozen or not (cgroup v2 freezer)
        daemon.start()
        states = {n: daemon.inspect(n)["state"] for n in pids}
        assert (states["plain"]["status"], states["plain"]["exit_code"]) == ("exited", 255)
        assert states["paused"]["status"] == "exited"
        assert states["always"]["status"] == "running"
        assert states["always"]["pid"] not in pids.values()
        assert not any(_alive(p) for p in pids.values())
        _check_truth(daemon)


def test_a_rm_container_at_rest_is_removed_by_the_next_daemon(tmp_path: Path) -> None:
    """A `create --rm` not started when the daemon is killed (as a `docker run --rm` cut
    between its create and its start leaves it) is removed by the next daemon with its
    anonymous volume, as Docker's daemon does; a container without --rm is kept."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("create", "--rm", "--name", "waiting", "-v", "/scratch", "default", "true")
        daemon.ctl("create", "--name", "kept", "default", "true")
        assert daemon.ctl("volume", "ls", "-q").stdout.split()
        daemon.stop(signal.SIGKILL)
        daemon.start()
        assert daemon.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["kept"]
        assert daemon.ctl("volume", "ls", "-q").stdout.split() == []
        _check_truth(daemon)


_until = partial(until, timeout=60, interval=0.005)


def _container_of(shim: int) -> str:
    return os.path.basename(os.readlink(f"/proc/{shim}/cwd"))


@pytest.mark.parametrize("spawned", [1, 3, 6])
def test_kill_9_among_concurrent_starts_leaves_nothing_behind(tmp_path: Path, spawned: int) -> None:
    """Eight `run -d` at once (half of them --rm), the daemon killed once ``spawned`` of
    them have a process (some recorded, some not yet): the next daemon keeps only what its
    records show running (each shim's container is one of them, each cgroup holds only
    theirs; no --rm container at rest) and,
    once they are removed, nothing remains: no process, shim, cgroup or parent of
    cgroups (running_daemon checks), no mount below the root."""
    with running_daemon(tmp_path) as daemon:
        assert daemon.process is not None
        clients = [
            subprocess.Popen(
                [*shlex.split(daemon_cli(daemon)), "run", "-d", *rm, "default", "sleep", "300"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for rm in [(), ("--rm",)] * 4
        ]
        _until(lambda: len(shims(daemon.root)) >= spawned, f"{spawned} containers' processes")
        daemon.stop(signal.SIGKILL)
        for client in clients:
            client.wait(timeout=60)
        daemon.start()
        _check_truth(daemon)
        running = set(daemon.ctl("ps", "-q", "--no-trunc").stdout.split())
        assert {_container_of(s) for s in shims(daemon.root)} <= running
        assert {os.path.basename(c) for c in leftover_cgroups(daemon.root)} <= running
        ids = daemon.ctl("ps", "-a", "-q").stdout.split()
        if ids:
            daemon.ctl("rm", "-f", *ids)
        assert daemon.stop() == 0
        assert not shims(daemon.root) and not leftover_cgroups(daemon.root)
        assert not cgroup_parents(daemon.root)
        assert f" {daemon.root}/" not in Path("/proc/self/mountinfo").read_text()


LIBRARY_PROGRAM = """
import sys, trio, boxd

async def main():
    async with boxd.open_supervisor(sys.argv[1]) as sup, trio.open_nursery() as nursery:
        for _ in range(6):
            config = boxd.ContainerConfig(image="default", command=("sleep", "300"))
            nursery.start_soon(sup.run, config)

trio.run(main)
"""


def test_a_library_program_killed_among_starts_is_cleaned_by_the_next_supervisor(
    tmp_path: Path,
) -> None:
    """A program supervising containers through the library dies (SIGKILL) while it
    starts six: the next supervisor on its root shows none running, and once it closed
    no container process, cgroup, parent of cgroups or mount of the root remains."""
    root = tmp_path / "lib"
    program = subprocess.Popen([sys.executable, "-c", LIBRARY_PROGRAM, str(root)])
    try:
        _until(lambda: len(_cgroup_pids(root)) >= 3, "three containers' cgroups")
        _until(lambda: any(_cgroup_pids(root).values()), "a container's process")
    finally:
        program.kill()
        program.wait()
    pids = set().union(*_cgroup_pids(root).values())

    async def next_supervisor() -> None:
        async with boxd.open_supervisor(root) as sup:
            assert all(c.state.status.value != "running" for c in sup.list(all=True))
            assert not any(_alive(p) for p in pids)
            for c in sup.list(all=True):
                await sup.remove(c.id, force=True)

    trio.run(next_supervisor)
    assert not leftover_cgroups(root) and not cgroup_parents(root)
    assert f" {root}/" not in Path("/proc/self/mountinfo").read_text()


def _children(pid: int, comm: str) -> list[int]:
    """The children of ``pid`` named ``comm`` (alive: not zombies)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text() != f"{comm}\n":
                continue
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            if stat[0] != "Z" and int(stat[1]) == pid:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe ``fd`` (FIONREAD)."""
    (count,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))
    return int(count)


def test_a_daemon_killed_during_cp_from_a_stopped_container_leaves_no_holder(
    tmp_path: Path,
) -> None:
    """`cp` out of a stopped container mounts its layers in a holder process; the daemon
    is killed while it copies (held there by a client that reads nothing): the holder
    dies with it, so its mounts do not outlive the daemon, and the container starts on
    an overlay no one else has mounted."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "--name", "s", "default", "sh", "-c", "head -c 64000000 /dev/zero >/big")
        assert daemon.process is not None
        read_end, write_end = os.pipe()
        client = subprocess.Popen(
            [*shlex.split(daemon_cli(daemon)), "cp", "s:/big", "-"], stdout=write_end
        )
        os.close(write_end)
        holders: list[int] = []
        try:
            pid = daemon.process.pid
            _until(lambda: _unread(read_end) > 0, "the first bytes of the copy")
            holders = _children(pid, "boxd:[cp]")
            assert len(holders) == 1
            daemon.stop(signal.SIGKILL)
            _until(lambda: not _alive(holders[0]), "the holder's end", timeout=10)
        finally:
            client.kill()
            client.wait()
            os.close(read_end)
            for holder in filter(_alive, holders):  # the test failed: nothing outlives it
                os.kill(holder, signal.SIGKILL)
        daemon.start()
        daemon.ctl("start", "s")
        assert daemon.ctl("wait", "s").stdout.strip() == "0"


def _freezer(root: Path, cid: str) -> tuple[Path, str, str]:
    """The container's freezer file, with its frozen and thawed values (as boxd uses them:
    cgroup v2's cgroup.freeze where there is one, else the v1 freezer)."""
    dirs = [Path(d) for d in leftover_cgroups(root) if os.path.basename(d) == cid]
    for d in dirs:
        if (d / "cgroup.freeze").exists():
            return d / "cgroup.freeze", "1", "0"
    (state,) = [d / "freezer.state" for d in dirs if (d / "freezer.state").exists()]
    return state, "FROZEN", "THAWED"


@pytest.mark.parametrize("cut", ["pause", "unpause"])
def test_a_pause_cut_by_a_kill_is_recorded_as_the_cgroup_is(tmp_path: Path, cut: str) -> None:
    """The daemon killed between freezing (thawing) a container's cgroup and recording it
    paused (running) — that instant made here by doing the freeze (thaw) while no daemon
    runs: the next daemon records what the cgroup is, so exec, unpause and stop work.  A
    frozen container recorded as running took the next exec's process into the frozen
    cgroup, and the whole daemon waited for it."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "-d", "--name", "p", "default", "sleep", "300")
        if cut == "unpause":
            daemon.ctl("pause", "p")
        cid = daemon.inspect("p")["id"]
        daemon.stop(signal.SIGKILL)
        path, frozen, thawed = _freezer(daemon.root, cid)
        path.write_text(frozen if cut == "pause" else thawed)
        daemon.start()
        state = daemon.inspect("p")["state"]
        assert state["status"] == ("paused" if cut == "pause" else "running")
        if cut == "pause":
            daemon.ctl("unpause", "p", timeout=10)
        assert daemon.ctl("exec", "p", "echo", "in", timeout=10).stdout == "in\n"
        daemon.ctl("pause", "p", timeout=10)
        daemon.ctl("stop", "-t", "1", "p", timeout=10)
        assert daemon.inspect("p")["state"]["status"] == "stopped"
        assert not _alive(state["pid"])


def test_a_commit_cut_by_a_kill_leaves_its_container_running(tmp_path: Path) -> None:
    """The daemon killed while a commit holds its container paused (as Docker's commit
    pauses it), that instant made here from what the commit had written and frozen: the
    next daemon thaws it and records it running, where before it stayed paused, paused by
    nobody.  A pause of the user's own stays (the test above)."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "-d", "--name", "c", "default", "sleep", "300")
        cid = daemon.inspect("c")["id"]
        daemon.stop(signal.SIGKILL)
        record = _record(daemon.root, cid)
        data = json.loads(record.read_text())
        data["state"]["status"] = "paused"
        record.write_text(json.dumps(data))
        (record.parent / COMMIT_PAUSE).write_bytes(b"")
        path, frozen, _ = _freezer(daemon.root, cid)
        path.write_text(frozen)
        daemon.start()
        assert daemon.inspect("c")["state"]["status"] == "running"
        assert not (record.parent / COMMIT_PAUSE).exists()
        assert daemon.ctl("exec", "c", "echo", "in", timeout=10).stdout == "in\n"
        daemon.ctl("commit", "c", "committed", timeout=30)  # pauses and unpauses again
        assert daemon.inspect("c")["state"]["status"] == "running"
        daemon.ctl("rm", "-f", "c")
        daemon.ctl("rmi", "committed")


def test_a_stop_cut_by_a_kill_keeps_the_exit_code(tmp_path: Path) -> None:
    """The daemon killed while a stop waits for the container (its stop signal trapped),
    which then exits 3 by itself while no daemon runs: the next daemon records it
    stopped with that code, which its shim kept (not 255, "unknown")."""
    go = tmp_path / "go"
    go.mkdir()
    script = (
        "trap 'until [ -e /go/now ]; do sleep 0.05; done; exit 3' TERM; "
        "while :; do sleep 0.05; done"
    )
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("run", "-d", "--name", "t", "-v", f"{go}:/go", "default", "sh", "-c", script)
        pid = daemon.inspect("t")["state"]["pid"]
        stopper = subprocess.Popen([*shlex.split(daemon_cli(daemon)), "stop", "-t", "60", "t"])
        try:
            _until(lambda: daemon.inspect("t")["state"]["status"] == "stopping", "the stop")
            daemon.stop(signal.SIGKILL)
        finally:
            stopper.wait(timeout=60)
        (go / "now").touch()
        _until(lambda: not _alive(pid), "the container's end")
        daemon.start()
        state = daemon.inspect("t")["state"]
        assert (state["status"], state["exit_code"]) == ("stopped", 3)


def test_a_volume_fill_cut_by_a_kill_is_done_again(tmp_path: Path, busybox_root: Path) -> None:
    """A new volume is filled from the image at the container's create; the daemon is
    stopped (SIGSTOP) as soon as the first file lands in it, then killed: the next
    container on the volume empties the part and fills it whole (it stayed partial for
    good: a volume that holds anything is never filled)."""
    tarball = tmp_path / "image.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_root, arcname=".")
        for i in range(3000):
            member = tarfile.TarInfo(f"data/f{i:04}")
            member.size = 1024
            tar.addfile(member, io.BytesIO(b"x" * 1024))
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("import", str(tarball), "filled:1")
        assert daemon.process is not None
        data = daemon.root / "volumes" / "vol" / "_data"
        client = subprocess.Popen(
            [*shlex.split(daemon_cli(daemon)), "run", "-d", "-v", "vol:/data", "filled:1", "true"],
        )
        try:
            _until(lambda: data.is_dir() and any(data.iterdir()), "the volume's first file")
            daemon.process.send_signal(signal.SIGSTOP)
            assert len(list(data.iterdir())) < 3000  # caught in the middle of the fill
            daemon.stop(signal.SIGKILL)
        finally:
            client.wait(timeout=60)
        daemon.start()
        r = daemon.ctl("run", "--rm", "-v", "vol:/data", "filled:1", "sh", "-c", "ls /data | wc -l")
        assert r.stdout.strip() == "3000"
        assert not (data.parent / ".filling").exists()

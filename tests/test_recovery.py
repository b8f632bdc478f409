"""A daemon that always comes back: whatever a killed daemon leaves behind (a dead /proc
view, unreadable or unfinished records, a record of a newer boxd, a temporary socket,
trash), the next one repairs and serves.  Real daemons, real kernel."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon, leftover_cgroups, running_daemon, shims

from boxd._procview import available
from boxd._records import new_id
from boxd._run import start_time_of
from boxd._store import FORMAT

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
    in a container's cgroup that no running record shows."""
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

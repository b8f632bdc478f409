"""A short, seeded crash fuzz: a mixed workload (boxctl, the docker CLI and fast requests
in-process) on an imported busybox image, with user networks (an endpoint with a named
interface and a sysctl), a published port, volumes (one a tmpfs the daemon mounts, one
bound by a subpath), an image mount, a syslog driver in non-blocking mode, pause, exec, cp
and image tags; the daemon SIGKILLed 0-300 ms into a random operation,
sometimes again right after its next start; then every container must tell the truth and
obey (inspect, logs, exec, start, stop, rm), and once all is removed and the daemon
stopped nothing of it may be left.  The long version ran for hundreds of rounds; each bug
it found has a deterministic test in test_recovery.py."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, kill_among, leftover_cgroups, running_daemon, shims
from docker_clients import docker, needs_cli
from test_network import links_settle, netns, nft_tables

from boxctl._client import CliError, call
from boxd._run import start_time_of

pytestmark = [pytest.mark.root, pytest.mark.slow, needs_cli]

__all__ = ["netns"]  # the fixture

IMAGE = "fz:base"
LOOP = "while :; do echo tick; sleep 0.2; done"
SEED = 11
ROUNDS = 4


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# A named interface with a sysctl of its own (Docker 28's endpoint options): made anew
# at each start and restart, kept by an adopting daemon.
IFNAME = "com.docker.network.endpoint.ifname"
SYSCTL = '"driver-opt=com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1"'


class Workload:
    """The operations, each of which the kill may cut: their failures are expected, a
    client that hangs (past its timeout) is not."""

    def __init__(self, daemon: Daemon, rng: random.Random, work: Path) -> None:
        self.d, self.rng, self.work, self.n = daemon, rng, work, 0
        self.killed = threading.Event()

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.d.ctl(*args, check=False, timeout=30)

    def pick(self, running: bool = False) -> str | None:
        r = self.ctl("ps", *(() if running else ("-a",)), "-q", "--no-trunc")
        ids = r.stdout.split() if r.returncode == 0 else []
        return self.rng.choice(ids) if ids else None

    def name(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def run_d(self) -> None:
        kind = self.rng.randrange(7)
        log = f"syslog-address=unixgram://{self.work}/log.sock"
        extra = [
            ["--restart", "always"],
            ["-v", "fzvol:/data", "-v", "/anon"],
            ["--network", f"name=fznet,driver-opt={IFNAME}=fz0,{SYSCTL}", "-p",
             f"{18000 + self.n}:80"],
            [],
            ["-v", "fztmp:/scratch"],
            ["--log-driver", "syslog", "--log-opt", log, "--log-opt", "mode=non-blocking"],
            ["--mount", "type=volume,src=fzvol,dst=/sub,volume-subpath=sub",
             "--mount", f"type=image,src={IMAGE},dst=/img,image-subpath=bin"],
        ][kind]  # fmt: skip
        self.ctl("run", "-d", "--name", self.name(), *extra, IMAGE, "sh", "-c", LOOP)

    def run_rm(self) -> None:
        self.ctl("run", "--rm", IMAGE, "echo", "hi")

    def create_start(self) -> None:
        name = self.name()
        self.ctl("create", "--name", name, IMAGE, "sh", "-c", LOOP)
        self.ctl("start", name)

    def docker_run(self) -> None:
        docker(self.d, "run", "-d", "--name", self.name(), IMAGE, "sh", "-c", LOOP, timeout=30)

    def on_one(self, *verb: str, running: bool = False) -> None:
        cid = self.pick(running)
        if cid is not None:
            self.ctl(*verb, cid)

    def pause(self) -> None:
        cid = self.pick(running=True)
        if cid is not None:
            self.ctl("pause", cid)
            self.ctl("unpause", cid)

    def cp(self) -> None:
        cid = self.pick()
        if cid is not None:
            self.ctl("cp", f"{cid}:/bin/busybox", str(self.work / "copied"))

    def tag(self) -> None:
        self.n += 1
        self.ctl("tag", IMAGE, f"fz:t{self.n}")
        if self.rng.random() < 0.5:
            self.ctl("rmi", f"fz:t{self.n}")

    def ops(self) -> list[Callable[[], None]]:
        on = self.on_one
        return [
            self.run_d,
            self.run_d,
            self.run_rm,
            self.create_start,
            self.docker_run,
            self.pause,
            self.cp,
            self.tag,
            self.exec,
            lambda: on("stop", "-t", "1", running=True),
            lambda: on("kill", running=True),
            lambda: on("restart", "-t", "1"),
            lambda: on("rm", "-f"),
            lambda: on("logs", "--tail", "3"),
        ]

    def exec(self) -> None:
        cid = self.pick(running=True)
        if cid is not None:
            self.ctl("exec", cid, "echo", "in")

    def churn(self, seed: float) -> None:
        """Requests in this process (no client to start) until the daemon is killed: more
        of them are under way at the kill."""
        rng = random.Random(seed)
        sock = str(self.d.socket)
        mine: list[str] = []
        while not self.killed.is_set():
            try:
                k = rng.random()
                if k < 0.35 or not mine:
                    config: dict[str, Any] = {"image": IMAGE, "command": ["sh", "-c", LOOP]}
                    if rng.random() < 0.3:
                        config["network"] = "fznet"
                    mine.append(call(sock, {"type": "RunRequest", "config": config})["id"])
                elif k < 0.5:
                    cid = rng.choice(mine)
                    call(sock, {"type": "PauseRequest", "container": cid})
                    call(sock, {"type": "UnpauseRequest", "container": cid})
                elif k < 0.7:
                    cid = rng.choice(mine)
                    call(sock, {"type": "StopRequest", "container": cid, "timeout": 0.2})
                elif k < 0.85:
                    call(sock, {"type": "StartRequest", "container": rng.choice(mine)})
                else:
                    cid = mine.pop(rng.randrange(len(mine)))
                    call(sock, {"type": "RemoveRequest", "container": cid, "force": True})
            except (CliError, OSError):  # refused (a conflict), or the daemon is gone
                continue


def _check_truth(w: Workload) -> None:
    """Every container listed (boxctl and the Docker API agree) is inspected; a live one
    runs, as the pid and start time recorded, in its own cgroup, frozen exactly when
    paused, and answers logs and exec; a shim keeps only live containers, no cgroup
    holds a process of a container at rest; each at rest starts (it is whole); then each
    stops and is removed."""
    d = w.d
    ids = d.ctl("ps", "-a", "-q", "--no-trunc", timeout=30).stdout.split()
    api = docker(d, "ps", "-a", "-q", "--no-trunc", timeout=30)
    assert sorted(api.stdout.split()) == sorted(ids), api.stderr
    states = {cid: d.inspect(cid)["state"] for cid in ids}
    cgroups = leftover_cgroups(d.root)
    live = set()
    for cid, st in states.items():
        assert st["status"] in ("created", "running", "paused", "exited", "stopped"), st
        d.ctl("logs", "--tail", "1", cid, timeout=30)
        if st["status"] not in ("running", "paused"):
            continue
        live.add(cid)
        pid = st["pid"]
        assert _alive(pid) and start_time_of(pid) == st["pid_start_time"], st
        assert cid in Path(f"/proc/{pid}/cgroup").read_text()
        freeze = [Path(c, "cgroup.freeze") for c in cgroups if os.path.basename(c) == cid]
        frozen = any(f.exists() and f.read_text().strip() == "1" for f in freeze)
        assert frozen == (st["status"] == "paused"), (cid, st["status"])
        if st["status"] == "running":
            assert d.ctl("exec", cid, "true", timeout=30).returncode == 0
    for shim in shims(d.root):
        assert os.path.basename(os.readlink(f"/proc/{shim}/cwd")) in live
    for c in cgroups:
        if os.path.basename(c) not in live:
            procs = Path(c, "cgroup.procs")
            assert not procs.exists() or not any(map(_alive, map(int, procs.read_text().split())))
    for cid, st in states.items():
        if st["status"] in ("created", "exited", "stopped"):
            r = d.ctl("start", cid, timeout=30)
            assert r.returncode == 0, (cid, st, r.stderr)
        d.ctl("stop", "-t", "1", cid, timeout=30)
        assert d.inspect(cid)["state"]["status"] in ("stopped", "exited")
    if ids:
        d.ctl("rm", "-f", *ids, timeout=60)
    assert d.ctl("ps", "-a", "-q", timeout=30).stdout.split() == []


def _round(w: Workload) -> None:
    rng, d = w.rng, w.d
    d.start()
    w.killed.clear()
    d.ctl("network", "create", "fznet", check=False)
    d.ctl("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "fztmp", check=False)
    d.ctl("volume", "create", "fzvol", check=False)
    (d.root / "volumes" / "fzvol" / "_data" / "sub").mkdir(exist_ok=True)
    for _ in range(rng.randint(1, 3)):
        rng.choice([w.run_d, w.create_start, w.docker_run])()
    kill_among(d, rng, w.ops, w.killed, lambda: [
        threading.Thread(target=w.churn, args=(rng.random(),)),
        *[threading.Thread(target=rng.choice(w.ops())) for _ in range(rng.randint(0, 1))],
    ], 0.3)  # fmt: skip
    d.start()
    _check_truth(w)
    for volume in d.ctl("volume", "ls", "-q").stdout.split():
        d.ctl("volume", "rm", volume)
    d.ctl("network", "rm", "fznet")
    assert d.stop() == 0


def test_kill_9_during_a_mixed_workload(tmp_path: Path, busybox_root: Path, netns: str) -> None:
    tarball = tmp_path / "busybox.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_root, arcname=".")
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # the syslog, never read
    log.bind(str(tmp_path / "log.sock"))
    with log, running_daemon(tmp_path, netns=netns) as daemon:
        daemon.ctl("import", str(tarball), IMAGE)
        assert daemon.stop() == 0
        w = Workload(daemon, random.Random(SEED), tmp_path)
        for _ in range(ROUNDS):
            _round(w)
            # Nothing of the round's containers is left: no mount below the root, no
            # container cgroup (the harness checks shims and cgroups again at the end),
            # no link or rule of the daemon in its namespace.
            assert f" {daemon.root}/" not in Path("/proc/self/mountinfo").read_text()
            assert leftover_cgroups(daemon.root) == []
            assert links_settle(netns, ("boxd", "br-", "bx"), []) == []
            assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []
            assert list((daemon.root / "containers").iterdir()) == []
        daemon.start()

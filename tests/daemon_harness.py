"""A real boxd daemon in a temporary root, driven through the real boxctl."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from boxd._repair import detach_dead_mounts
from boxd._supervisor import cgroup_name

REPO = Path(__file__).resolve().parent.parent
# In the names of what this test session makes outside its temporary directory (network
# namespaces, cgroups of its own naming), so that its leak check (conftest.py) tells them
# from another session's running at the same time.
SESSION_TAG = f"boxd-test-{os.getpid()}"


UNIFIED = "/sys/fs/cgroup/unified"  # a hybrid host's unified hierarchy


def _in_mount_namespace(mount: str) -> tuple[str, ...]:
    """A wrap (:attr:`Daemon.wrap`) running the daemon after ``mount`` in a private mount
    namespace of its own."""
    return ("unshare", "-m", "--propagation", "private", "sh", "-c",
            f'{mount} && exec "$@"', "sh")  # fmt: skip


# Views of a hybrid host that show a daemon one kind of cgroup hierarchy (see
# test_cgroup_views.py): pure v1 (the unified hierarchy covered by an empty tmpfs) and pure
# v2 (/sys/fs/cgroup covered by the unified hierarchy, without the controllers the kernel
# keeps on v1).  BOXD_TEST_CGROUP_VIEW=v1 or v2 runs every daemon of the suite that has no
# wrap of its own in one of them; the tests that set limits of controllers the view lacks,
# or read its cgroups as the host's, then fail.
CGROUP_VIEWS = {
    "v1": _in_mount_namespace(f"mount -t tmpfs boxd-test-no-v2 {UNIFIED}"),
    "v2": _in_mount_namespace(f"mount --bind {UNIFIED} /sys/fs/cgroup"),
}
_VIEW = os.environ.get("BOXD_TEST_CGROUP_VIEW", "")
if _VIEW and _VIEW not in CGROUP_VIEWS:
    raise ValueError(f"BOXD_TEST_CGROUP_VIEW={_VIEW!r}: expected v1 or v2")


def session_name(random: str) -> str:
    """A name for something this session makes that another session may see."""
    return f"{SESSION_TAG}-{random}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@attrs.define
class Daemon:
    root: Path
    socket: Path
    process: subprocess.Popen[bytes] | None = None
    # A network namespace the test made (a path under /run/netns) to run the daemon in;
    # None: the test session's own (see conftest.py: never the host's).
    netns_path: str | None = None
    args: tuple[str, ...] = ()  # options every start of this daemon gets
    # A command (and its arguments) that runs the daemon's command line: a mount namespace
    # of the test's own (``unshare -m``), which ends with the daemon.
    wrap: tuple[str, ...] = ()

    @property
    def docker_socket(self) -> Path:
        """The daemon's Docker Engine API socket, beside its own."""
        return self.socket.with_name("docker.sock")

    def start(self, *extra: str, ready: bool = True) -> None:
        """Start the daemon and, with ``ready``, wait until it answers."""
        enter = () if self.netns_path is None else ("nsenter", f"--net={self.netns_path}", "--")
        self.process = subprocess.Popen(
            [
                *self.wrap,
                *enter,
                sys.executable,
                "-m",
                "boxd",
                "--root",
                str(self.root),
                "--socket",
                str(self.socket),
                "--docker-socket",
                str(self.docker_socket),
                "--log-level",
                "debug",
                *self.args,
                *extra,
            ],
            env=_env(),
        )
        if not ready:
            return
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"boxd exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                self.process = None
                raise RuntimeError("boxd did not create its socket in 30 s")
            time.sleep(0.02)

    @property
    def netns(self) -> str:
        """The daemon's network namespace (for clients: ``nsenter --net=...``)."""
        if self.netns_path is not None:
            return self.netns_path
        assert self.process is not None
        return f"/proc/{self.process.pid}/ns/net"

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process = None
        return code

    def ctl(
        self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "boxctl", "--socket", str(self.socket), *args],
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"boxctl {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def remove_containers(self) -> None:
        """Remove every container (a module's daemon, emptied after each test)."""
        for cid in self.ctl("ps", "-a", "-q").stdout.split():
            self.ctl("rm", "-f", cid, check=False)

    def inspect(self, ref: str) -> dict[str, Any]:
        """boxd's own record of the container (``boxctl inspect`` prints Docker's shape)."""
        from boxctl._client import call

        record: dict[str, Any] = call(
            str(self.socket), {"type": "InspectRequest", "container": ref}
        )["container"]
        return record

    def wait_for(self, ref: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            c = self.inspect(ref)
            if predicate(c):
                return c
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last state {c['state']}")
            time.sleep(0.05)

    def wait_for_gone(self, ref: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.ctl("inspect", ref, check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{ref} is still there after {timeout} s")
            time.sleep(0.05)


def daemon_cli(daemon: Daemon) -> str:
    """A shell command line that runs boxctl against ``daemon`` (for pipelines)."""
    return shlex.join(
        [
            "env",
            f"PYTHONPATH={REPO}",
            sys.executable,
            "-m",
            "boxctl",
            "--socket",
            str(daemon.socket),
        ]
    )


@contextmanager
def boxctl_process(daemon: Daemon, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """boxctl running, its stdin and stdout pipes of ours; killed at the end of the block
    if it still runs (a client gone, as one a closed window or a SIGKILL ends)."""
    client = subprocess.Popen(
        [sys.executable, "-m", "boxctl", "--socket", str(daemon.socket), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
    )
    try:
        yield client
    finally:
        client.kill()
        client.wait()
        for pipe in (client.stdin, client.stdout):
            assert pipe is not None
            pipe.close()


def until(
    check: Callable[[], bool], what: str, *, timeout: float = 30, interval: float = 0.01
) -> None:
    """Poll ``check`` every ``interval`` seconds until it is true; fail naming ``what`` once
    ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def pipe_held(path: str) -> int:
    """The bytes waiting in the pipe at ``path`` (a process's /proc/PID/fd/N), left
    unread: FIONREAD."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), "little")
    finally:
        os.close(fd)


def leftover_cgroups(root: Path) -> list[str]:
    """Container cgroups of the daemon on ``root`` still on disk, in any hierarchy.  Other
    daemons create and remove cgroups meanwhile: vanishing directories are skipped."""
    name = cgroup_name(root)
    found: list[str] = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(top) == name:
            found.extend(os.path.join(top, d) for d in dirs)
            dirs.clear()
    return sorted(found)


def cgroup_parents(root: Path) -> list[str]:
    """The directories the daemon on ``root`` makes its containers' cgroups in (one per
    hierarchy, below its own cgroup there): a daemon that ended removes them."""
    name = cgroup_name(root)
    found: list[str] = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            found.append(os.path.join(top, name))
            dirs.remove(name)
    return sorted(found)


def frozen(pid: int) -> bool:
    """Whether the kernel's freezer holds the process (v2 cgroup.events, else v1 state)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hier, controllers, path = line.split(":", 2)
        if hier == "0" and path != "/":  # (the root has no cgroup.events)
            events = Path(
                "/sys/fs/cgroup/unified"
                if Path("/sys/fs/cgroup/unified").is_dir()
                else "/sys/fs/cgroup"
            )
            text = (events / path.lstrip("/") / "cgroup.events").read_text()
            if "frozen 1" in text:
                return True
        if "freezer" in controllers.split(",") and path != "/":  # (not the v1 root's)
            state = Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
            if state.read_text().strip() == "FROZEN":
                return True
    return False


def shims(root: Path) -> list[int]:
    """Pids of the boxd-shims keeping containers of the daemon on ``root`` (a shim's working
    directory is its container's directory); zombies are not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text() != "boxd-shim\n":
                continue
            if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
            if Path(os.readlink(entry / "cwd")).is_relative_to(root):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


@contextmanager
def running_daemon(
    tmp_path: Path, *extra: str, netns: str | None = None, wrap: tuple[str, ...] = ()
) -> Iterator[Daemon]:
    """A daemon on a new root (in the network namespace ``netns``, else the session's; run
    under ``wrap``, see :attr:`Daemon.wrap`).
    On exit every container is removed (a daemon is started for that if the test left
    none running: live restore keeps containers across daemons), the daemon must exit 0
    on SIGTERM, and no cgroup (nor the daemon's parent of them) and no shim may be left."""
    daemon = Daemon(
        root=tmp_path / "root",
        socket=tmp_path / "boxd.sock",
        args=extra,
        netns_path=netns,
        wrap=wrap or CGROUP_VIEWS.get(_VIEW, ()),
    )
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            if daemon.process is None or daemon.process.poll() is not None:
                daemon.start()  # the test killed it, or it died: the next daemon cleans up
            ids = daemon.ctl("ps", "-a", "-q").stdout.split()
            if ids:  # live restore keeps containers across daemons: removed here
                daemon.ctl("rm", "-f", *ids)
            if daemon.stop() != 0:
                raise AssertionError("boxd did not exit 0 on SIGTERM")
        finally:
            left = _end_leftovers(daemon)
        assert left == ([], [], [])


@contextmanager
def logged_daemon(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[Daemon, Path]]:
    """A daemon with no containers, as an operator starts it (no ``--log-level``), its
    stderr in the file given with it (``tmp_path/boxd.log``, truncated if there); ``env``
    added to its environment; killed on exit if the test did not stop it, and the mount of
    its /proc view detached if it died."""
    daemon = Daemon(root=tmp_path / "root", socket=tmp_path / "boxd.sock")
    log = tmp_path / "boxd.log"
    argv = [sys.executable, "-m", "boxd", "--root", str(daemon.root),
            "--socket", str(daemon.socket), "--docker-socket", str(daemon.docker_socket),
            *extra]  # fmt: skip
    with log.open("w") as out:
        daemon.process = subprocess.Popen(argv, stderr=out, env={**_env(), **(env or {})})
    proc = daemon.process
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"boxd exited with {proc.returncode}: {log.read_text()}")
            return daemon.docker_socket.exists() and daemon._answers()

        until(serving, "the daemon")
        yield daemon, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        detach_dead_mounts(daemon.root)


def _end_leftovers(daemon: Daemon) -> tuple[list[int], list[str], list[str]]:
    """What the daemon failed to clean (it hung, or died): its process, the shims on its
    root and their containers are killed and the emptied cgroups and their parents
    removed, so that nothing outlives the test.  Returns the shims, cgroups and parents
    found."""
    if daemon.process is not None:
        daemon.process.kill()
        daemon.process.wait()
        daemon.process = None
    detach_dead_mounts(daemon.root)  # the /proc view's, of a daemon killed or dead
    found = shims(daemon.root)
    for shim in found:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{shim}/task/{shim}/children").read_text().split()
            for pid in (shim, *map(int, children)):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while shims(daemon.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    cgroups = leftover_cgroups(daemon.root)
    for cgroup in cgroups:  # emptied above: removable
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
    parents = cgroup_parents(daemon.root)
    for parent in parents:
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    return found, cgroups, parents


def kill_among(
    daemon: Daemon,
    rng: random.Random,
    ops: Callable[[], list[Callable[[], None]]],
    killed: threading.Event,
    beside: Callable[[], list[threading.Thread]],
    within: float,
) -> None:
    """A crash fuzz's kill: 2-5 operations chosen from ``ops()`` one after another, the
    daemon SIGKILLed 0-``within`` s into a random one of them (``killed`` set first) while
    the threads ``beside()`` gives run beside it; 30% of the time killed again 0-0.3 s
    after its next start, into another operation.  The daemon is left stopped."""
    chosen = [rng.choice(ops()) for _ in range(rng.randint(2, 5))]
    at = rng.randrange(len(chosen))
    for op in chosen[:at]:
        op()
    assert daemon.process is not None
    process = daemon.process

    def kill() -> None:
        killed.set()
        process.send_signal(signal.SIGKILL)

    threads = [*beside(), threading.Timer(rng.uniform(0, within), kill)]
    for t in threads:
        t.start()
    chosen[at]()
    for t in threads:
        t.join(120)
    process.wait(timeout=30)
    daemon.process = None
    if rng.random() < 0.3:  # killed again, just after its next start
        daemon.start()
        assert daemon.process is not None
        process = daemon.process
        timer = threading.Timer(rng.uniform(0, 0.3), kill)
        timer.start()
        rng.choice(ops())()
        timer.join()
        process.wait(timeout=30)
        daemon.process = None

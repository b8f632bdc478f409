"""One boxd daemon for the whole run, on a private root and socket, and the CLI against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable  # the venv's real interpreter, never a pyenv shim
# The command users run: the script installed beside the interpreter.  `python -m boxctl`
# also imports runpy (~4 ms) and, run from the repository, the working tree's sources.
BOXCTL = str(Path(PY).with_name("boxctl"))
# Likewise the daemon: `python -m boxd` from the repository imported the working tree's
# sources, compiled at every start where `__pycache__` is not written
# (PYTHONDONTWRITEBYTECODE), which left ~2 MB more in the idle daemon than users see.
BOXD = str(Path(PY).with_name("boxd"))


def wait_for_deletions(root: Path, timeout: float = 60.0) -> None:
    """Until nothing is left in the trash of the boxd state directory ``root``.  boxd
    deletes removed containers' directories once starts and removals pause
    (``boxd._supervisor.TRASH_QUIET``): right after a boxd entry, while the next one, often
    a peer's, would be timed.  The bench waits for them after each boxd entry, untimed."""
    from boxd._store import DELETING

    deadline = time.monotonic() + timeout
    while _pending(root / "trash", DELETING) and time.monotonic() < deadline:
        time.sleep(0.01)


def _pending(trash: Path, deleting: str) -> bool:
    try:
        with os.scandir(trash) as entries:
            names = [e.name for e in entries]
        if any(name != deleting for name in names):
            return True
        with os.scandir(trash / deleting) as entries:
            return any(True for _ in entries)
    except FileNotFoundError:
        return False


class Daemon:
    def __init__(self, work: Path) -> None:
        self.root = work / "boxd-root"
        self.socket = work / "boxd.sock"
        self.log = work / "boxd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""

    def boxctl(self, *args: str) -> list[str]:
        return [BOXCTL, "--socket", str(self.socket), *args]

    def start(self) -> None:
        """Start the daemon and wait until it answers; on failure, :attr:`error` says why."""
        with self.log.open("wb") as log:
            # In the bench's own network namespace (see bench/__main__.py).
            self.proc = subprocess.Popen(
                [
                    BOXD,
                    "--root",
                    str(self.root),
                    "--socket",
                    str(self.socket),
                    "--docker-socket",
                    str(self.socket.with_name("docker.sock")),
                    "--log-level",
                    "warning",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while True:
            # `version` succeeds without a daemon (it prints the client's); `ps` needs one.
            r = subprocess.run(self.boxctl("ps", "-q"), capture_output=True)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                self.error = f"boxd exited {self.proc.returncode} at start: {self.log_tail()}"
                return
            if time.monotonic() > deadline:
                self.error = f"boxd did not answer within 30 s: {self.log_tail()}"
                return
            time.sleep(0.05)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()[-400:] or "no output"
        except OSError as exc:
            return f"no log ({exc.strerror})"

    @property
    def pid(self) -> int:
        self.require()
        assert self.proc is not None
        return self.proc.pid

    def require(self) -> None:
        """Raise why the daemon cannot serve (it failed to start, or died since)."""
        if self.error:
            raise RuntimeError(self.error)
        if self.proc is None:
            raise RuntimeError("boxd was not started")
        if self.proc.poll() is not None:
            raise RuntimeError(f"boxd died (exit {self.proc.returncode}): {self.log_tail()}")

    def container_ids(self) -> list[str]:
        r = subprocess.run(self.boxctl("ps", "-a", "-q"), capture_output=True, text=True)
        return r.stdout.split() if r.returncode == 0 else []

    def remove_all(self) -> None:
        ids = self.container_ids()
        if ids:
            subprocess.run(self.boxctl("rm", "-f", *ids), capture_output=True, timeout=120)

    def stop(self) -> str:
        """Remove every container, then SIGTERM (SIGKILL after 60 s); a problem, or ""."""
        if self.proc is None or self.proc.poll() is not None:
            return ""
        problem = ""
        try:
            self.remove_all()
        except subprocess.TimeoutExpired:
            problem = "boxctl rm -f timed out; "
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            problem += "boxd ignored SIGTERM for 60 s and was killed"
        return problem

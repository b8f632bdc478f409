"""``nox -s demo``: start a private daemon, run real containers on ``default``, stop it.

Everything lives in a temporary root and socket, so the demo never touches a running
boxd; the daemon's SIGTERM path removes what it made.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = [
    [
        "run",
        "--rm",
        "default",
        "python3",
        "-c",
        "import os, socket; print(f'hello from {socket.gethostname()}, pid {os.getpid()}')",
    ],
    [
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "32",
        "default",
        "sh",
        "-c",
        "echo in a container: $(id -u)@$(hostname); ls /; cat /etc/hostname 2>/dev/null; true",
    ],
    # The /proc view: free reads the container's own 256 MiB, nproc its one CPU.
    [
        "run",
        "--rm",
        "--memory",
        "256m",
        "--cpuset-cpus",
        "0",
        "default",
        "sh",
        "-c",
        "free -m; nproc",
    ],
    ["run", "-d", "--name", "demo-sleeper", "default", "sleep", "300"],
    ["ps"],
    ["stop", "-t", "1", "demo-sleeper"],
    ["ps", "-a"],
    ["rm", "demo-sleeper"],
]


def main() -> int:
    if os.geteuid() != 0:
        print(
            "the demo needs root (namespaces, mounts, cgroups): run it with sudo", file=sys.stderr
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="boxd-demo-") as tmp:
        root, sock = Path(tmp) / "root", Path(tmp) / "boxd.sock"
        daemon = subprocess.Popen(
            [
                *(sys.executable, "-m", "boxd", "--root", str(root), "--socket", str(sock)),
                *("--docker-socket", str(Path(tmp) / "docker.sock")),
            ]
        )
        try:
            deadline = time.monotonic() + 30
            while not sock.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print("boxd did not start", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            for step in STEPS:
                print(f"\n$ boxctl {shlex.join(step)}", flush=True)
                code = subprocess.call(
                    [sys.executable, "-m", "boxctl", "--socket", str(sock), *step]
                )
                if code != 0:
                    print(f"(exit code {code})", file=sys.stderr)
                    return code
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())

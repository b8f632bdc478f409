"""Hostile actions from inside a default container, and the safe result (real daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemon_harness import Daemon

pytestmark = pytest.mark.root

DOCKER_DEFAULT_CAPS = "00000000a80425fb"

PROBE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def call(name, *args):
    r = getattr(libc, name)(*args)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print("unshare", call("unshare", 0x00020000))
print("mount", call("mount", b"none", b"/mnt", b"tmpfs", 0, None))
print("clone3", call("syscall", 435, None, 0))
print("keyctl", call("syscall", 250, 0, 0, 0, 0, 0))
print("bpf", call("syscall", 321, 0, 0, 0))
print("ptrace", call("ptrace", 16, 1, 0, 0))
print("setns", call("setns", os.open("/proc/1/ns/mnt", os.O_RDONLY), 0))
print("getrandom", len(os.getrandom(8)))
"""


def _status(text: str, field: str) -> str:
    return next(ln.split()[1] for ln in text.splitlines() if ln.startswith(field + ":"))


def test_capabilities_no_new_privs_and_seccomp(daemon: Daemon) -> None:
    status = daemon.ctl("run", "--rm", "default", "cat", "/proc/self/status").stdout
    assert _status(status, "CapEff") == _status(status, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert _status(status, "CapInh") == _status(status, "CapAmb") == "0000000000000000"
    assert _status(status, "NoNewPrivs") == "1" and _status(status, "Seccomp") == "2"
    user = daemon.ctl("run", "--rm", "-u", "1000", "default", "cat", "/proc/self/status").stdout
    assert _status(user, "CapEff") == _status(user, "CapPrm") == "0000000000000000"
    dropped = daemon.ctl(
        "run", "--rm", "--cap-drop", "ALL", "default", "cat", "/proc/self/status"
    ).stdout
    assert _status(dropped, "CapEff") == "0000000000000000"
    free = daemon.ctl(
        "run", "--rm", "--security-opt", "seccomp=unconfined", "default", "cat", "/proc/self/status"
    ).stdout
    assert _status(free, "Seccomp") == "0"


def test_seccomp_denials_and_ordinary_programs(daemon: Daemon) -> None:
    out = daemon.ctl("run", "--rm", "default", "python3", "-c", PROBE).stdout.split("\n")
    results = dict(line.split(" ", 1) for line in out if line)
    assert results == {
        "unshare": "EPERM",
        "mount": "EPERM",
        "clone3": "ENOSYS",
        "keyctl": "EPERM",
        "bpf": "EPERM",
        "ptrace": "EPERM",
        "setns": "EPERM",
        "getrandom": "8",
    }
    threads = daemon.ctl(
        "run",
        "--rm",
        "default",
        "python3",
        "-c",
        "import concurrent.futures as f, subprocess;"
        "print(sum(f.ThreadPoolExecutor(4).map(abs, range(-5, 0))),"
        " subprocess.run(['true']).returncode)",
    ).stdout
    assert threads.split() == ["15", "0"]


def test_namespaces_mounts_and_devices(daemon: Daemon) -> None:
    script = (
        "for n in mnt pid uts ipc cgroup; do readlink /proc/self/ns/$n; done; echo ---;"
        "cat /proc/self/mountinfo; echo ---; ls /dev"
    )
    ns, mounts, dev = daemon.ctl("run", "--rm", "default", "sh", "-c", script).stdout.split("---\n")
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "pid", "uts", "ipc", "cgroup")]
    assert not set(ns.split()) & set(host)
    # Mount points (field 5), not superblock options (overlay names its host layers there).
    points = [line.split()[4] for line in mounts.splitlines()]
    assert points[0] == "/" and not any(p.startswith(("/work", "/home", "/tmp/")) for p in points)
    assert set(dev.split()) <= {
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "ptmx",
        "pts",
        "shm",
        "mqueue",
        "fd",
        "stdin",
        "stdout",
        "stderr",
    }


def test_masked_and_read_only_proc_and_sys(daemon: Daemon) -> None:
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    script = (
        "for f in /proc/kcore /proc/keys /proc/timer_list; do"
        "  [ -e $f ] && echo $f=$(head -c 64 $f | wc -c); done;"
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>/dev/null || echo ro-sys;"
        "echo b > /proc/sysrq-trigger 2>/dev/null || echo ro-sysrq;"
        "echo /tmp/x > /sys/kernel/uevent_helper 2>/dev/null || echo ro-uevent;"
        "echo 1 > /sys/fs/cgroup/release_agent 2>/dev/null || echo ro-cgroup;"
        "mount -t cgroup -o memory none /mnt 2>/dev/null || echo no-cgroup-mount"
    )
    out = daemon.ctl("run", "--rm", "default", "sh", "-c", script).stdout.split()
    assert [o for o in out if "=" in o and not o.endswith("=0")] == []  # masked: empty
    assert [o for o in out if "=" not in o] == [
        "ro-sys",
        "ro-sysrq",
        "ro-uevent",
        "ro-cgroup",
        "no-cgroup-mount",
    ]
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_no_leaked_fds_env_or_daemon_socket(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "s", "-e", "MINE=1", "default", "sleep", "300")
    fds = daemon.ctl("exec", "s", "ls", "/proc/1/fd").stdout.split()
    assert fds == ["0", "1", "2"]
    env = daemon.ctl("exec", "s", "cat", "/proc/1/environ").stdout.split("\0")
    assert sorted(e.split("=")[0] for e in env if e) == ["HOME", "HOSTNAME", "MINE", "PATH"]
    r = daemon.ctl("exec", "s", "ls", str(daemon.socket), check=False)
    assert r.returncode != 0
    daemon.ctl("rm", "-f", "s")


def test_chroot_escape_stays_inside(daemon: Daemon) -> None:
    script = (
        "import os\nos.makedirs('/x', exist_ok=True)\nfd = os.open('/', os.O_RDONLY)\n"
        "os.chroot('/x')\nos.fchdir(fd)\n"
        "for _ in range(20): os.chdir('..')\nos.chroot('.')\n"
        "print(sorted(os.listdir('/')))\n"
    )
    out = daemon.ctl("run", "--rm", "default", "python3", "-c", script).stdout
    assert "'work'" not in out and "'home'" not in out and "'x'" in out


def test_tty_container_gets_a_fresh_terminal_and_session(daemon: Daemon) -> None:
    # boxctl runs here without a terminal: had the container got ours, isatty would fail.
    script = (
        "import fcntl, os, termios\n"
        "print(os.getsid(0) == os.getpid(), os.isatty(0))\n"
        "fcntl.ioctl(0, termios.TIOCSTI, b'x')\n"
    )
    r = daemon.ctl("run", "--rm", "-t", "default", "python3", "-c", script, check=False)
    assert "True True" in r.stdout

"""The daemon's /proc view inside real containers: each sees its own limits."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon

from boxd._procview import MAX_OPEN, available

pytestmark = [
    pytest.mark.root,
    pytest.mark.fuse,
    pytest.mark.skipif(available() is not None, reason=f"no FUSE here: {available()}"),
]


def _meminfo_total(text: str) -> int:
    line = next(ln for ln in text.splitlines() if ln.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_limits_visible_inside(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run",
        "--rm",
        "--memory",
        "256m",
        "--cpuset-cpus",
        "0",
        "default",
        "sh",
        "-c",
        "cat /proc/meminfo; echo ---; nproc; "
        "python3 -c 'import os; print(os.cpu_count())'; free -b",
    )
    meminfo, rest = r.stdout.split("---\n")
    assert _meminfo_total(meminfo) == 256 << 20
    lines = rest.splitlines()
    assert lines[0] == "1" and lines[1] == "1"
    assert any(ln.startswith("Mem:") and ln.split()[1] == str(256 << 20) for ln in lines)


def test_without_limits_the_host_values_show(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run",
        "--rm",
        "default",
        "sh",
        "-c",
        "cat /proc/meminfo; python3 -c 'import os; print(os.cpu_count())'",
    )
    host = _meminfo_total(Path("/proc/meminfo").read_text())
    assert _meminfo_total(r.stdout) == host
    assert r.stdout.splitlines()[-1] == str(os.cpu_count())


def test_two_containers_at_once_see_their_own(daemon: Daemon) -> None:
    for name, mem in (("a", "128m"), ("b", "300m")):
        daemon.ctl("run", "-d", "--name", name, "--memory", mem, "default", "sleep", "300")
    a = daemon.ctl("exec", "a", "cat", "/proc/meminfo").stdout
    b = daemon.ctl("exec", "b", "cat", "/proc/meminfo").stdout
    assert (_meminfo_total(a), _meminfo_total(b)) == (128 << 20, 300 << 20)
    daemon.ctl("rm", "-f", "a", "b")


def _cpuset_dir(pid: int) -> Path:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    path = next(ln.split(":", 2)[2] for ln in lines if "cpuset" in ln.split(":")[1].split(","))
    return Path(f"/sys/fs/cgroup/cpuset{path}")


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 or not Path("/sys/fs/cgroup/cpuset/cpuset.cpus").exists(),
    reason="needs a v1 cpuset hierarchy and two CPUs",
)
def test_a_parents_cpuset_narrows_the_cpus_shown(daemon: Daemon) -> None:
    """A container without --cpuset-cpus started below a --cgroup-parent given one CPU
    runs on that one (nproc, a JVM): the view shows one CPU too (os.cpu_count() reads
    /sys/devices/system/cpu/online), not the host's."""
    try:
        first = daemon.ctl(
            "run", "-d", "--cgroup-parent", "one-cpu", "default", "sleep", "60"
        ).stdout.strip()
        own = _cpuset_dir(daemon.inspect(first)["state"]["pid"])
        cpu = str(max(os.sched_getaffinity(0)))
        for d in (own, own.parent):  # v1: a child's CPUs stay within its parent's
            (d / "cpuset.cpus").write_text(cpu)
        second = daemon.ctl(
            "run", "-d", "--cgroup-parent", "one-cpu", "default", "sleep", "60"
        ).stdout.strip()
        script = (
            "nproc; cat /sys/devices/system/cpu/online; grep -c ^processor /proc/cpuinfo; "
            "grep -c ^cpu /proc/stat; python3 -c 'import os; print(os.cpu_count())'"
        )
        out = daemon.ctl("exec", second, "sh", "-c", script).stdout.split()
        assert out == ["1", "0", "1", "2", "1"]  # /proc/stat: the aggregate and cpu0
    finally:
        made = daemon.ctl("ps", "-aq").stdout.split()
        if made:
            daemon.ctl("rm", "-f", *made)


def test_process_ages_inside_are_right(daemon: Daemon) -> None:
    """ps takes a process's age (etime, and the %CPU of ps aux) as /proc/uptime less its
    start in /proc/PID/stat, which counts from the host's boot: the view's uptime is the
    host's, as procfs's (a container's own age made every age some 130 years)."""
    host_up = float(Path("/proc/uptime").read_text().split()[0])
    out = daemon.ctl(
        "run", "--rm", "default", "sh", "-c", "cat /proc/uptime; ps -o etimes= -p 1"
    ).stdout.split()
    assert float(out[0]) >= host_up
    assert 0 <= int(out[2]) < 3600, out


def test_procview_off_per_container(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run", "--rm", "--procview", "off", "--memory", "64m", "default", "cat", "/proc/meminfo"
    )
    assert _meminfo_total(r.stdout) == _meminfo_total(Path("/proc/meminfo").read_text())


# Keeps /proc/meminfo open and reads it again from the start, as procps's free -s,
# vmstat and top do, around an allocation of 64 MiB.
REREAD_AROUND_AN_ALLOCATION = """
import os
fd = os.open("/proc/meminfo", os.O_RDONLY)
def free_kb():
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode()
    return int(next(ln for ln in text.splitlines() if ln.startswith("MemFree:")).split()[1])
before = free_kb()
block = bytearray(64 << 20)
block[::4096] = b"x" * len(range(0, len(block), 4096))
print(before - free_kb())
"""


def test_a_file_kept_open_shows_the_usage_now(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run", "--rm", "--memory", "256m", "default", "python3", "-c", REREAD_AROUND_AN_ALLOCATION
    )
    assert int(r.stdout) >= 48 << 10  # kB


# Opens the view's /proc/cpuinfo until refused, says how often, then holds them.
OPEN_UNTIL_REFUSED = """
import os, resource, time
resource.setrlimit(resource.RLIMIT_NOFILE, (10000, 10000))
fds, refused = [], "none refused"
try:
    while len(fds) < 9000:
        fds.append(os.open("/proc/cpuinfo", os.O_RDONLY))
except OSError as exc:
    refused = os.strerror(exc.errno)
print(len(fds), refused, flush=True)
time.sleep(300)
"""


def test_a_container_cannot_hold_the_view_open_without_end(daemon: Daemon) -> None:
    """Each open file of the view is the daemon's memory, not the container's."""
    daemon.ctl("run", "-d", "--name", "hog", "default", "python3", "-c", OPEN_UNTIL_REFUSED)
    try:
        deadline = time.monotonic() + 60
        while not (out := daemon.ctl("logs", "hog").stdout) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out == f"{MAX_OPEN} Too many open files\n"
        # Another container's readers are not held back by it.
        r = daemon.ctl("run", "--rm", "--memory", "64m", "default", "head", "-1", "/proc/meminfo")
        assert r.stdout == "MemTotal:          65536 kB\n"
    finally:
        daemon.ctl("rm", "-f", "hog")


def test_busybox_cat_shows_the_view(daemon: Daemon, busybox_root: Path) -> None:
    """busybox's ``cat`` (Alpine's too) copies with sendfile(2), which reads the view's
    files through the page cache, up to the size the kernel has for them: it printed
    nothing while they had the size 0 of procfs."""
    r = daemon.ctl(
        "run", "--rm", "--memory", "64m", "--rootfs", str(busybox_root), "cat", "/proc/meminfo"
    )
    assert _meminfo_total(r.stdout) == 64 << 20
    host_keys = [ln.split(":")[0] for ln in Path("/proc/meminfo").read_text().splitlines()]
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == host_keys
    assert r.stdout.endswith(" kB\n")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_sendfile_readers_in_two_containers_each_get_their_own(
    daemon: Daemon, busybox_root: Path
) -> None:
    """Read in turns by busybox in a 1-CPU and an every-CPU container, /proc/stat and
    /proc/cpuinfo come whole and each container's own: its files are inodes of their own,
    with their own page cache (a shared one handed the 2-CPU container a /proc/stat cut to
    the length of the 1-CPU container's read before)."""
    cpus = len(os.sched_getaffinity(0))
    host_last = Path("/proc/stat").read_text().splitlines()[-1].split()
    for name, limit in (("one", ["--cpuset-cpus", "0"]), ("every", [])):
        daemon.ctl(
            "run", "-d", "--name", name, *limit, "--rootfs", str(busybox_root), "sleep", "300"
        )
    try:
        for _ in range(5):
            for name, count in (("one", 1), ("every", cpus)):
                stat = daemon.ctl("exec", name, "cat", "/proc/stat").stdout
                lines = stat.splitlines()
                assert [ln.split()[0] for ln in lines[: count + 1]] == [
                    "cpu",
                    *(f"cpu{n}" for n in range(count)),
                ]
                assert not lines[count + 1].startswith("cpu")
                # Whole, to its last line (the host's: softirq, its total and its kinds).
                assert lines[-1].split()[0] == host_last[0]
                assert len(lines[-1].split()) == len(host_last)
                assert stat.endswith("\n")
                cpuinfo = daemon.ctl("exec", name, "cat", "/proc/cpuinfo").stdout
                processors = [ln for ln in cpuinfo.splitlines() if ln.startswith("processor")]
                assert len(processors) == count and cpuinfo.endswith("\n\n")
                tail = daemon.ctl("exec", name, "tail", "-n1", "/proc/meminfo").stdout
                assert tail.endswith(" kB\n") and tail.count("\n") == 1
    finally:
        daemon.ctl("rm", "-f", "one", "every")


def test_copying_the_view_to_the_output_stops_nothing(daemon: Daemon, busybox_root: Path) -> None:
    """busybox's ``cat`` holds the lock of its output, a pipe the daemon reads, while
    sendfile waits for the view's pages; a read of that pipe waits for its lock: served
    from the event loop's thread, the view never answered and the daemon stopped."""
    script = "i=0; while [ $i -lt 200 ]; do cat /proc/cpuinfo /proc/meminfo; i=$((i+1)); done"
    r = daemon.ctl(
        "run", "--rm", "--memory", "64m", "--rootfs", str(busybox_root), "sh", "-c", script
    )
    assert r.stdout.count("MemTotal:          65536 kB\n") == 200

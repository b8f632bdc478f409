"""The daemon's /proc view inside real containers: each sees its own limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemon_harness import Daemon

from boxd._procview import available

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


def test_procview_off_per_container(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run", "--rm", "--procview", "off", "--memory", "64m", "default", "cat", "/proc/meminfo"
    )
    assert _meminfo_total(r.stdout) == _meminfo_total(Path("/proc/meminfo").read_text())

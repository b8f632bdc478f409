"""The cgroup v2 and v1 paths against FAKE trees.

This host is hybrid: its unified hierarchy holds no controller, so the pure-v2 code (the
files written, controllers enabled, counters read) cannot run against the real kernel
here; it is checked on a temporary directory laid out like /sys/fs/cgroup.  The real
kernel paths (v1 and hybrid) are tested in test_limits.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from boxd._cgroup import CgroupHost, Limits, shares_to_weight


def _v2_host(tmp_path: Path, own: str = "/system.slice/boxd.service") -> tuple[CgroupHost, Path]:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    cgroup = tmp_path / "cgroup"
    cgroup.write_text(f"0::{own}\n")
    own_dir = tmp_path / f"sys/fs/cgroup{own}"
    own_dir.mkdir(parents=True)
    (own_dir / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (own_dir / "cgroup.subtree_control").write_text("")
    host = CgroupHost.detect(
        mountinfo=str(mountinfo), own_cgroup=str(cgroup), prefix=str(tmp_path), name="boxd"
    )
    return host, own_dir


def test_v2_detection_and_limit_files(tmp_path: Path) -> None:
    host, own = _v2_host(tmp_path)
    assert host.mode == "v2"
    assert host.controllers() == {c: "v2" for c in ("cpuset", "cpu", "io", "memory", "pids")}
    cg = host.create(
        "c1",
        Limits(memory=64 << 20, memory_swap=96 << 20, cpus=0.5, cpu_shares=1024, pids_limit=10),
    )
    d = own / "boxd" / "c1"
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (own / "boxd" / "cgroup.subtree_control").read_text() == (
        "+cpu +cpuset +io +memory +pids"
    )
    assert (d / "cpu.max").read_text() == "50000 100000"
    assert (d / "cpu.weight").read_text() == "39"
    assert (d / "pids.max").read_text() == "10"
    cg.add(1234)
    assert (d / "cgroup.procs").read_text() == "1234"
    cg.update(Limits(pids_limit=-1, cpus=2))
    assert (d / "pids.max").read_text() == "max"
    assert (d / "cpu.max").read_text() == "200000 100000"
    assert host.list_children() == ["c1"]


def test_v2_counters_and_oom(tmp_path: Path) -> None:
    host, own = _v2_host(tmp_path)
    cg = host.create("c2", Limits(memory=32 << 20))
    d = own / "boxd" / "c2"
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("2097152\n")
    (d / "cpu.stat").write_text("usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n")
    (d / "pids.current").write_text("3\n")
    (d / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 0\n")
    s = cg.stats()
    assert (s.memory_usage, s.memory_limit, s.memory_peak) == (1 << 20, 32 << 20, 2 << 20)
    assert (s.cpu_user_ns, s.cpu_system_ns, s.cpu_total_ns) == (2_000_000, 1_000_000, 3_000_000)
    assert (s.pids, s.io_read_bytes, s.io_write_bytes) == (3, 4096, 8192)
    assert not cg.oom_killed()
    (d / "memory.events").write_text("oom 1\noom_kill 1\n")
    assert cg.oom_killed()


def test_v1_detection_on_a_fake_tree(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "25 24 0:22 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "26 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "27 24 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
    )
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("4:memory:/user\n3:cpu,cpuacct:/user\n2:pids:/user\n")
    host = CgroupHost.detect(mountinfo=str(mountinfo), own_cgroup=str(cgroup), prefix=str(tmp_path))
    assert host.mode == "v1"
    assert host.controllers() == {"memory": "v1", "cpu": "v1", "cpuacct": "v1", "pids": "v1"}
    bases = sorted(str(h.base.relative_to(tmp_path)) for h in host.hierarchies)
    assert bases == [
        "sys/fs/cgroup/cpu,cpuacct/user/boxd",
        "sys/fs/cgroup/memory/user/boxd",
        "sys/fs/cgroup/pids/user/boxd",
    ]


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight

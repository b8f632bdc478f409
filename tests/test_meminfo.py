"""A container's /proc/meminfo from its cgroup: memory.stat and swap read on fake v2 and
v1 trees (pure v2 cannot exist on this hybrid host), and ``free`` inside a real container
through boxctl and the daemon's /proc view."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from daemon_harness import Daemon
from fake_cgroup import FakeCgroupFs

from boxd._cgroup import Limits, MemoryDetail

M = 1 << 20

V2_STAT = """\
anon 31457280
file 20971520
kernel 1048576
kernel_stack 262144
pagetables 131072
shmem 2097152
file_mapped 4194304
file_dirty 1048576
file_writeback 0
anon_thp 0
inactive_anon 30408704
active_anon 1048576
inactive_file 15728640
active_file 5242880
unevictable 0
slab_reclaimable 3145728
slab_unreclaimable 1048576
slab 4194304
pgfault 1000
"""

V1_STAT = """\
cache 1
rss 2
total_cache 20971520
total_rss 31457280
total_rss_huge 0
total_shmem 2097152
total_mapped_file 4194304
total_dirty 1048576
total_writeback 0
total_swap 0
total_inactive_anon 30408704
total_active_anon 1048576
total_inactive_file 15728640
total_active_file 5242880
total_unevictable 0
"""


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    return FakeCgroupFs(tmp_path, monkeypatch)


def test_v2_memory_stat_and_swap(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits(memory=64 * M))
    d = own / "boxd" / "c"
    assert cg.memory_detail() == MemoryDetail({}, None, 0, 0, 64 * M)  # nothing counted yet
    (d / "memory.stat").write_text(V2_STAT)
    (d / "memory.swap.max").write_text("16777216\n")
    (d / "memory.swap.current").write_text("1048576\n")
    detail = cg.memory_detail()
    assert detail.stat["file"] == 20 * M and detail.stat["slab_reclaimable"] == 3 * M
    assert detail.stat["kernel_stack"] == 256 << 10
    assert (detail.swap_limit, detail.swap_usage) == (16 * M, M)


def test_v2_limits_are_the_lowest_up_to_the_mount(fs: FakeCgroupFs) -> None:
    """A cgroup is held to its ancestors' memory.max and memory.swap.max too (a limited
    --cgroup-parent or daemon cgroup): the view shows the lowest, as far up as the
    hierarchy is seen."""
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits(memory=64 * M))
    d = own / "boxd" / "c"
    (d / "memory.max").write_text(f"{64 * M}\n")
    assert cg.memory_detail().limit == 64 * M
    (own / "memory.max").write_text(f"{32 * M}\n")
    (own / "boxd" / "memory.swap.max").write_text(f"{8 * M}\n")
    (d / "memory.swap.max").write_text("max\n")
    detail = cg.memory_detail()
    assert (detail.limit, detail.swap_limit) == (32 * M, 8 * M)


async def test_v1_memory_stat_is_renamed_and_swap_is_memsw_minus_memory(
    fs: FakeCgroupFs,
) -> None:
    fs.mount_v1("memory", "/")
    cg = fs.detect().create("c", Limits(memory=64 * M, memory_swap=80 * M))
    mem = Path(cg.paths["memory"])
    (mem / "memory.stat").write_text(V1_STAT)
    (mem / "memory.usage_in_bytes").write_text(str(56 * M))
    (mem / "memory.memsw.usage_in_bytes").write_text(str(58 * M))
    detail = cg.memory_detail()
    # The hierarchical total_* counters, under v2's names; the local ones are not used.
    assert detail.stat == {
        "file": 20 * M,
        "anon": 30 * M,
        "anon_thp": 0,
        "shmem": 2 * M,
        "file_mapped": 4 * M,
        "file_dirty": M,
        "file_writeback": 0,
        "inactive_anon": 29 * M,
        "active_anon": M,
        "inactive_file": 15 * M,
        "active_file": 5 * M,
        "unevictable": 0,
    }
    assert (detail.swap_limit, detail.swap_usage) == (16 * M, 2 * M)
    # Unlimited memsw: swap is not limited by the cgroup.
    (mem / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    assert cg.memory_detail().swap_limit is None
    # The kernel's hierarchical limits (an ancestor's lower) are the ones held to.
    (mem / "memory.stat").write_text(
        f"{V1_STAT}hierarchical_memory_limit {48 * M}\nhierarchical_memsw_limit {56 * M}\n"
    )
    detail = cg.memory_detail()
    assert (detail.limit, detail.swap_limit) == (48 * M, 8 * M)
    await cg.remove()


def _free(daemon: Daemon, unit: str, *options: str) -> dict[str, int]:
    # Some page cache and shmem of the container's own first, so buff/cache is not 0.
    script = (
        "head -c 8388608 /dev/zero > /tmp/f && head -c 2097152 /dev/zero > /dev/shm/s && "
        f"cat /tmp/f > /dev/null && free {unit}"
    )
    out = daemon.ctl("run", "--rm", *options, "default", "/bin/sh", "-c", script).stdout
    header, mem = out.splitlines()[:2]
    names = header.split()
    assert mem.startswith("Mem:") and names[:6] == [
        "total", "used", "free", "shared", "buff/cache", "available",
    ]  # fmt: skip
    return dict(zip(names, map(int, mem.split()[1:]), strict=True))


@pytest.mark.root
@pytest.mark.fuse
def test_free_inside_a_64m_container_is_consistent(daemon: Daemon) -> None:
    kb = _free(daemon, "-k", "--memory", "64m")
    assert kb["total"] == 65536
    assert 0 < kb["buff/cache"] <= kb["total"]
    assert kb["used"] + kb["free"] + kb["buff/cache"] == kb["total"]
    assert 2048 <= kb["shared"] <= kb["total"]
    assert kb["free"] <= kb["available"] <= kb["total"]
    mb = _free(daemon, "-m", "--memory", "64m")
    assert mb["total"] == 64 and mb["buff/cache"] <= 64
    assert abs(mb["used"] + mb["free"] + mb["buff/cache"] - 64) <= 2  # free rounds each
    # Every line of the file is the container's or 0: none is the host's.
    meminfo = daemon.ctl(
        "run", "--rm", "--memory", "64m", "default", "cat", "/proc/meminfo"
    ).stdout.splitlines()
    for line in meminfo:
        name, _, rest = line.partition(":")
        if name not in ("Hugepagesize", "SwapTotal", "SwapFree"):  # swap: the host's, if any
            assert int(rest.split()[0]) <= 65536, line


@pytest.mark.root
@pytest.mark.fuse
def test_meminfo_shows_a_limited_cgroup_parent(daemon: Daemon) -> None:
    """A container without a limit of its own below a --cgroup-parent limited to 48 MiB
    is held to 48 MiB by the kernel, and a JVM sizes itself for it (v1's
    hierarchical_memory_limit): its /proc/meminfo shows that, not the host's memory.  The
    JVM takes its physical memory from sysinfo, answered with the same 48 MiB, and sizes
    its heap for that (half, below 200 MiB or so); its own container check then finds no
    limit below its physical memory ("Memory Limit: Unlimited")."""
    cid = daemon.ctl(
        "run", "-d", "--cgroup-parent", "meminfo-parent", "default", "sleep", "60"
    ).stdout.strip()
    try:
        pid = daemon.inspect(cid)["state"]["pid"]
        cgroups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        path = next(ln.split(":", 2)[2] for ln in cgroups if ln.split(":")[1] == "memory")
        parent = Path(f"/sys/fs/cgroup/memory{path}").parent
        (parent / "memory.limit_in_bytes").write_text(str(48 * M))
        meminfo = daemon.ctl("exec", cid, "head", "-1", "/proc/meminfo").stdout
        assert meminfo.split() == ["MemTotal:", "49152", "kB"]
        if shutil.which("java"):
            jvm = daemon.ctl("exec", cid, "java", "-XX:+PrintFlagsFinal", "-version").stdout
            heap = next(line.split() for line in jvm.splitlines() if " MaxHeapSize " in line)
            assert heap[3] == str(24 * M)
    finally:
        daemon.ctl("rm", "-f", cid)

"""The per-container /proc view: rendering rules, and a real FUSE mount read by processes."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from boxd import _procview
from boxd._mountinfo import mount_points
from boxd._procview import (
    _ONLINE,
    FILES,
    ProcView,
    ViewLimits,
    _detach_mounts,
    _Env,
    _render_cpuinfo,
    _render_meminfo,
    _render_online,
    _render_stat,
    _render_swaps,
    _render_uptime,
    available,
    parse_cpu_list,
    visible_cpus,
)

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def limits(**changes: object) -> ViewLimits:
    fields: dict[str, object] = {
        "memory_limit": None,
        "memory_usage": 0,
        "swap_limit": None,
        "swap_usage": 0,
        "cpus": None,
        "cpu_quota": None,
    }
    fields.update(changes)
    return ViewLimits(**fields)  # type: ignore[arg-type]


def env(visible: tuple[int, ...], host_cpus: tuple[int, ...] = (0, 1, 2, 3)) -> _Env:
    return _Env(host_cpus=host_cpus, visible=visible, user_hz=100)


def meminfo_kb(text: str) -> dict[str, int]:
    """What ``free -b`` and friends take from /proc/meminfo: name -> kB."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return values


# ---------------------------------------------------------------------------------------
# Rendering (no FUSE, no root)

HOST_MEMINFO = """\
MemTotal:       16000000 kB
MemFree:         9000000 kB
MemAvailable:   12000000 kB
Buffers:          100000 kB
Cached:          3000000 kB
SwapCached:         1000 kB
Active:          4000000 kB
SwapTotal:       2097152 kB
SwapFree:        2000000 kB
Dirty:               196 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

HOST_CPUINFO = "".join(
    f"processor\t: {n}\nvendor_id\t: Test\ncore id\t\t: {n}\nflags\t\t: fpu sse\n\n"
    for n in range(4)
)

HOST_STAT = """\
cpu  100 2 30 4000 5 0 6 0 0 0
cpu0 10 0 3 1000 1 0 1 0 0 0
cpu1 20 1 7 1000 2 0 2 0 0 0
cpu2 30 1 10 1000 1 0 2 0 0 0
cpu3 40 0 10 1000 1 0 1 0 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
processes 42
"""

HOST_SWAPS = (
    "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    "/dev/vda2                               partition\t2097148\t\t0\t\t-2\n"
)


def test_meminfo_shows_the_memory_limit_and_zeroes_the_rest() -> None:
    shown = _render_meminfo(
        HOST_MEMINFO, limits(memory_limit=256 * MiB, memory_usage=56 * MiB), env((0,))
    )
    kb = meminfo_kb(shown)
    assert kb["MemTotal"] * 1024 == 256 * MiB
    assert kb["MemFree"] == kb["MemAvailable"] == 200 * 1024
    # Nothing of the host's passes through: what the cgroup does not say is 0.
    assert kb["Buffers"] == kb["Cached"] == kb["SwapCached"] == kb["Active"] == 0
    assert kb["Dirty"] == kb["HugePages_Total"] == 0
    assert kb["Hugepagesize"] == 2048  # a constant of the machine
    assert kb["SwapTotal"] == kb["SwapFree"] == 2097152  # no swap limit: the host's swap
    assert shown.splitlines()[0] == "MemTotal:         262144 kB"  # the kernel's columns
    assert shown.splitlines()[-2] == "HugePages_Total:       0"
    assert len(shown.splitlines()) == len(HOST_MEMINFO.splitlines())


def free(kb: dict[str, int]) -> dict[str, int]:
    """What procps' ``free`` (4.x) shows (kB), computed as it does from /proc/meminfo."""
    buff_cache = kb["Buffers"] + kb["Cached"] + kb["SReclaimable"]
    # procps 3.3 showed MemTotal - MemFree - buff/cache: the same when the file agrees.
    assert kb["MemTotal"] - kb["MemAvailable"] == kb["MemTotal"] - kb["MemFree"] - buff_cache
    return {
        "total": kb["MemTotal"],
        "used": kb["MemTotal"] - kb["MemAvailable"],
        "free": kb["MemFree"],
        "shared": kb["Shmem"],
        "buff/cache": buff_cache,
        "available": kb["MemAvailable"],
    }


# A v2 memory.stat of a container using 56 MiB of its 64 MiB (bytes; v1's total_* counters
# arrive under these names too).
MEMORY_STAT = {
    "anon": 30 * MiB,
    "file": 20 * MiB,
    "shmem": 2 * MiB,
    "file_mapped": 4 * MiB,
    "file_dirty": MiB,
    "file_writeback": 0,
    "active_anon": MiB,
    "inactive_anon": 29 * MiB,
    "active_file": 5 * MiB,
    "inactive_file": 15 * MiB,
    "unevictable": 0,
    "slab_reclaimable": 3 * MiB,
    "slab_unreclaimable": MiB,
    "kernel_stack": MiB // 4,
}


def test_meminfo_lines_come_from_the_cgroup() -> None:
    host = Path("/proc/meminfo").read_text()  # the real thing: every line a tool may read
    seen = limits(memory_limit=64 * MiB, memory_usage=56 * MiB, memory_stat=MEMORY_STAT)
    kb = meminfo_kb(_render_meminfo(host, seen, env((0,))))
    assert kb["MemTotal"] == 65536 and kb["MemFree"] == 8192
    # Cached: the file pages that can be dropped (shmem has its own line).
    assert (kb["Cached"], kb["Buffers"], kb["Shmem"], kb["Mapped"]) == (18432, 0, 2048, 4096)
    assert (kb["SReclaimable"], kb["SUnreclaim"], kb["Slab"]) == (3072, 1024, 4096)
    assert (kb["Active"], kb["Inactive"], kb["Active(file)"]) == (6144, 45056, 5120)
    assert (kb["AnonPages"], kb["Dirty"], kb["KernelStack"]) == (30720, 1024, 256)
    assert kb["MemAvailable"] == 8192 + 18432 + 3072
    assert free(kb) == {
        "total": 65536,
        "used": 65536 - 8192 - 21504,
        "free": 8192,
        "shared": 2048,
        "buff/cache": 21504,
        "available": 29696,
    }
    # Every other amount is 0: nothing of the host's 24 GiB shows through.
    for name, value in kb.items():
        assert name == "Hugepagesize" or value <= 65536 + kb["SwapTotal"], (name, value)


def test_meminfo_stays_consistent_when_counters_disagree() -> None:
    # v1's usage is batched per CPU and may lag memory.stat: the page cache can seem
    # larger than the usage.  free's used + free + buff/cache must still be the total.
    seen = limits(
        memory_limit=64 * MiB,
        memory_usage=10 * MiB,
        memory_stat={"file": 30 * MiB, "slab_reclaimable": 5 * MiB, "active_file": 90 * MiB},
    )
    kb = meminfo_kb(
        _render_meminfo(HOST_MEMINFO + "SReclaimable: 1 kB\nShmem: 1 kB\n", seen, env((0,)))
    )
    shown = free(kb)
    assert shown["buff/cache"] <= shown["total"]
    assert shown["used"] + shown["free"] + shown["buff/cache"] == shown["total"] == 65536
    assert shown["available"] <= shown["total"]


def test_meminfo_never_exceeds_the_host() -> None:
    kb = meminfo_kb(
        _render_meminfo(
            HOST_MEMINFO,
            limits(memory_limit=1 << 50, memory_usage=1 << 49, swap_limit=1 << 40),
            env((0,)),
        )
    )
    assert kb["MemTotal"] == 16000000
    assert kb["MemFree"] == 0
    assert kb["SwapTotal"] == kb["SwapFree"] == 2097152


def test_meminfo_swap_limit() -> None:
    kb = meminfo_kb(
        _render_meminfo(HOST_MEMINFO, limits(swap_limit=64 * MiB, swap_usage=MiB), env((0,)))
    )
    assert (kb["SwapTotal"], kb["SwapFree"]) == (65536, 64512)
    assert kb["MemTotal"] == 16000000  # no memory limit: the host's


def test_cpuinfo_keeps_the_visible_cpus_renumbered() -> None:
    shown = _render_cpuinfo(HOST_CPUINFO, limits(cpus=(1, 3)), env((1, 3)))
    blocks = shown.strip("\n").split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["processor\t: 0", "processor\t: 1"]
    assert [block.splitlines()[2] for block in blocks] == ["core id\t\t: 1", "core id\t\t: 3"]
    assert shown.endswith("flags\t\t: fpu sse\n\n")


def test_online_lists_n_cpus_from_zero() -> None:
    assert _render_online("0-3\n", limits(), env((0, 1, 2, 3))) == "0-3\n"
    assert _render_online("0-3\n", limits(cpus=(2,)), env((2,))) == "0\n"


def test_cpu_count_policies() -> None:
    host = (0, 1, 2, 3)
    assert visible_cpus(limits(), host, "cpuset") == host
    assert visible_cpus(limits(cpus=(1, 2, 9)), host, "cpuset") == (1, 2)
    assert visible_cpus(limits(cpu_quota=1.5), host, "cpuset") == host
    assert visible_cpus(limits(cpu_quota=1.5), host, "quota") == (0, 1)
    assert visible_cpus(limits(cpus=(3,), cpu_quota=2.0), host, "quota") == (3,)
    assert visible_cpus(limits(cpu_quota=0.1), host, "quota") == (0,)
    with pytest.raises(ValueError, match=r"cpuset \(7,\) has no online CPU"):
        visible_cpus(limits(cpus=(7,)), host, "cpuset")


def test_parse_cpu_list() -> None:
    assert parse_cpu_list("0-2,5\n") == (0, 1, 2, 5)
    assert parse_cpu_list("0") == (0,)
    with pytest.raises(ValueError, match="bad CPU list 'x-1'"):
        parse_cpu_list("x-1")


def test_stat_shows_the_visible_cpus() -> None:
    lines = _render_stat(HOST_STAT, limits(cpus=(1, 2)), env((1, 2))).splitlines()
    assert lines[:3] == [
        "cpu  50 2 17 2000 3 0 4 0 0 0",
        "cpu0 20 1 7 1000 2 0 2 0 0 0",
        "cpu1 30 1 10 1000 1 0 2 0 0 0",
    ]
    assert lines[3:] == HOST_STAT.splitlines()[5:]


def test_stat_aggregate_shows_the_container_usage() -> None:
    usage = limits(cpus=(1, 2), cpu_usage_ns=(3 * 10**9, 2 * 10**9))
    aggregate = _render_stat(HOST_STAT, usage, env((1, 2))).splitlines()[0]
    # 100 Hz: 300 user ticks, 200 system; the visible CPUs ran 2076 ticks in all.
    assert aggregate == "cpu  300 0 200 1576 0 0 0 0 0 0"


def test_uptime_is_the_hosts_and_idle_the_visible_cpus() -> None:
    """The host's uptime (process start times in /proc/PID/stat count from its boot);
    idle over the visible CPUs, less what the container used."""
    host = "5000.00 16000.00\n"  # 4 CPUs, idle 80% of the time
    assert _render_uptime(host, limits(), env((0, 1))) == "5000.00 8000.00\n"
    used = limits(cpu_usage_ns=(30 * 10**9, 10 * 10**9))
    assert _render_uptime(host, used, env((0, 1))) == "5000.00 9960.00\n"
    assert _render_uptime("0.00 0.00\n", limits(), env((0,))) == "0.00 0.00\n"


def test_swaps() -> None:
    header = HOST_SWAPS.splitlines()[0]
    assert _render_swaps(HOST_SWAPS, limits(), env((0,))) == HOST_SWAPS
    assert _render_swaps(HOST_SWAPS, limits(swap_limit=0), env((0,))) == header + "\n"
    limited = _render_swaps(HOST_SWAPS, limits(swap_limit=64 * MiB, swap_usage=MiB), env((0,)))
    assert limited.splitlines()[1].split() == ["none", "virtual", "65536", "1024", "-1"]
    no_host_swap = header + "\n"
    assert _render_swaps(no_host_swap, limits(swap_limit=MiB), env((0,))) == no_host_swap


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"memory_limit": -1}, "memory_limit must be >= 0, not -1"),
        ({"swap_usage": -5}, "swap_usage must be >= 0, not -5"),
        ({"cpus": ()}, r"cpus must be a non-empty set of CPU numbers, not \(\)"),
        ({"cpus": (0, -1)}, r"not \(0, -1\)"),
        ({"cpu_quota": 0.0}, "cpu_quota must be > 0 cores, not 0.0"),
        ({"cpu_usage_ns": (1, -1)}, r"cpu_usage_ns must be >= 0, not \(1, -1\)"),
    ],
)
def test_limits_are_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limits(**change)


def test_view_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"cpu_policy must be one of .* not 'cores'"):
        ProcView(cpu_policy="cores")
    view = ProcView(Containers(c=limits()))
    with pytest.raises(ValueError, match="'/proc/vmstat' is not a file of the /proc view"):
        view.render("/proc/vmstat", "c")
    with pytest.raises(RuntimeError, match="not being served"):
        view.files("c")
    with pytest.raises(LookupError, match="serves no container yet"):
        ProcView().render(_ONLINE, "c")


def test_a_container_without_limits_sees_the_host_file() -> None:
    view = ProcView(Containers(c=limits()))
    assert view.render(_ONLINE, "c") == Path(_ONLINE).read_bytes()


# ---------------------------------------------------------------------------------------
# A real mount, its containers' files read by processes

fuse_test = pytest.mark.skipif(available() is not None, reason=f"no FUSE: {available()}")

# The reader waits for a line on stdin (so that the readers read at the same time), then
# reads.
READER = """
import json, os, sys
sys.stdin.readline()
files = {}
for path in sys.argv[1:]:
    try:
        with open(path) as file:
            files[path] = file.read()
    except OSError as exc:
        files[path] = exc.errno
print(json.dumps({"cpu_count": os.cpu_count(), "files": files}))
"""

Reading = dict[str, object]


class Containers:
    """The view's resolver here: containers by name, each with the limits it is shown
    (or what its resolver raises)."""

    def __init__(self, **table: ViewLimits | Exception) -> None:
        self.table = table

    def view_known(self, container: str) -> bool:
        return container in self.table

    def view_limits(self, container: str, path: str) -> ViewLimits:
        found = self.table[container]
        if isinstance(found, Exception):
            raise found
        return found


def run_readers(*argvs: list[str]) -> list[Reading]:
    """Start every reader, then let them read at the same time."""
    processes: list[subprocess.Popen[str]] = []
    try:
        for argv in argvs:
            processes.append(
                subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0, out
            results.append(json.loads(out))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def read(*paths: str) -> list[str]:
    return [sys.executable, "-c", READER, *paths]


def in_mount_namespace(files: dict[str, str], command: list[str]) -> list[str]:
    """``command`` in a private mount namespace with the view bound over the real files,
    as the spawn path binds them in a container."""
    targets = " ".join(files)
    script = f'for target in {targets}; do mount --bind "$1" "$target"; shift; done; exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *files.values(), *command]


def host_cpus() -> tuple[int, ...]:
    return parse_cpu_list(Path(_ONLINE).read_text())


def processors(cpuinfo: object) -> list[str]:
    assert isinstance(cpuinfo, str)
    return [line for line in cpuinfo.splitlines() if line.startswith("processor")]


def files_of(reading: Reading) -> dict[str, object]:
    files = reading["files"]
    assert isinstance(files, dict)
    return files


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "procview"
    yield path
    left = str(path) in mount_points()
    _detach_mounts(path)
    assert not left, f"the view stayed mounted at {path}"


async def with_view(view: ProcView, path: Path, check: Callable[[], None]) -> None:
    """Serve ``view`` at ``path`` and run ``check()`` in a thread (never read the mount
    from the Trio thread, which serves it)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(view.serve, path)
        try:
            await trio.to_thread.run_sync(check)
        finally:
            nursery.cancel_scope.cancel(reason="the checks are done")


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_each_container_sees_its_own_files(mountpoint: Path) -> None:
    host = host_cpus()
    small = limits(memory_limit=256 * MiB, memory_usage=16 * MiB, cpus=(host[-1],))
    large = limits(memory_limit=512 * MiB, memory_usage=0)
    view = ProcView(Containers(small=small, large=large))

    def check() -> None:
        files = view.files("small")
        assert files["/proc/meminfo"] == f"{mountpoint}/small/meminfo"
        assert set(files) == set(FILES)
        paths = ["/proc/meminfo", _ONLINE, "/proc/cpuinfo"]
        unknown = view.files("unknown")["/proc/meminfo"]
        seen_small, seen_large, seen_unknown = run_readers(
            read(*[files[path] for path in paths]),
            read(*[view.files("large")[path] for path in paths]),
            read(unknown),
        )
        mem, online, cpuinfo = files_of(seen_small).values()
        assert isinstance(mem, str)
        assert meminfo_kb(mem)["MemTotal"] * 1024 == 256 * MiB
        assert meminfo_kb(mem)["MemAvailable"] * 1024 == 240 * MiB
        assert online == "0\n"
        assert processors(cpuinfo) == ["processor\t: 0"]

        mem, online, cpuinfo = files_of(seen_large).values()
        assert isinstance(mem, str)
        assert meminfo_kb(mem)["MemTotal"] * 1024 == 512 * MiB
        assert online == Path(_ONLINE).read_text()
        assert len(processors(cpuinfo)) == len(host)
        assert files_of(seen_unknown) == {unknown: errno.ENOENT}

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_os_cpu_count_inside_a_mount_namespace(mountpoint: Path) -> None:
    """os.cpu_count() is sysconf(_SC_NPROCESSORS_ONLN): glibc reads the online file."""
    view = ProcView(Containers(c=limits(cpu_quota=1.0, memory_limit=256 * MiB)), cpu_policy="quota")

    def check() -> None:
        (seen,) = run_readers(in_mount_namespace(view.files("c"), read("/proc/meminfo")))
        assert seen["cpu_count"] == 1
        assert meminfo_kb(str(files_of(seen)["/proc/meminfo"]))["MemTotal"] * 1024 == 256 * MiB
        (outside,) = run_readers(read())
        assert outside["cpu_count"] == len(host_cpus())

    await with_view(view, mountpoint, check)


def busybox(files: dict[str, str], *command: str) -> str:
    """What busybox's ``command`` prints with the view's ``files`` bound over /proc."""
    return subprocess.run(
        in_mount_namespace(files, ["busybox", *command]),
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def first_words(text: str) -> list[str]:
    return [line.split()[0] if line.split() else "" for line in text.splitlines()]


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_sendfile_readers_each_get_their_own_whole_file(mountpoint: Path) -> None:
    """busybox's cat copies with sendfile(2), which reads a FUSE file through the page
    cache up to the size the kernel has for it, even when it is opened for direct reads:
    with the size 0 of procfs it printed nothing.  Each container's files are inodes of
    their own, so one container's reading never cuts another's short, nor shows it
    another's content (a 2-CPU container's /proc/stat was cut to the length of a 1-CPU
    container's read before it)."""
    host = host_cpus()
    containers = Containers(
        one=limits(memory_limit=256 * MiB, cpus=(host[0],)), every=limits(memory_limit=512 * MiB)
    )
    view = ProcView(containers)

    def check() -> None:
        for _ in range(5):
            for name, cpus, memory in (("one", 1, 256), ("every", len(host), 512)):
                files = view.files(name)
                stat_text = busybox(files, "cat", "/proc/stat")
                assert first_words(stat_text) == first_words(
                    view.render("/proc/stat", name).decode()
                )
                assert sum(w.startswith("cpu") for w in first_words(stat_text)) == cpus + 1
                cpuinfo = busybox(files, "cat", "/proc/cpuinfo")
                expected = view.render("/proc/cpuinfo", name).decode()
                assert [ln for ln in cpuinfo.splitlines() if "MHz" not in ln] == [
                    ln for ln in expected.splitlines() if "MHz" not in ln
                ]
                assert cpuinfo.endswith("\n\n") and len(processors(cpuinfo)) == cpus
                meminfo = busybox(files, "cat", "/proc/meminfo")
                assert list(meminfo_kb(meminfo)) == list(
                    meminfo_kb(view.render("/proc/meminfo", name).decode())
                )
                assert meminfo_kb(meminfo)["MemTotal"] == memory * 1024

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_tail_head_and_coreutils_cat_read_the_whole_file(mountpoint: Path) -> None:
    """``tail`` seeks to the size (GNU tail reads the file's size from its start, as one
    read), busybox's ``head -c`` copies with sendfile, coreutils' ``cat`` with
    copy_file_range (a splice through the page cache as well); plain reads are as
    before."""
    view = ProcView(Containers(c=limits(memory_limit=64 * MiB)))

    def check() -> None:
        files = view.files("c")
        last = view.render("/proc/meminfo", "c").decode().splitlines(keepends=True)[-1]
        assert busybox(files, "tail", "-n1", "/proc/meminfo") == last
        tail = subprocess.run(
            in_mount_namespace(files, ["tail", "-n1", "/proc/meminfo"]),
            check=True,
            capture_output=True,
            text=True,
        )
        assert tail.stdout == last
        assert busybox(files, "head", "-c", "27", "/proc/meminfo") == "MemTotal:          65536 kB"
        cat = subprocess.run(
            in_mount_namespace(files, ["cat", "/proc/meminfo"]),
            check=True,
            capture_output=True,
            text=True,
        )
        assert meminfo_kb(cat.stdout)["MemTotal"] == 65536
        assert cat.stdout.endswith(last)
        (plain,) = run_readers(read(files["/proc/meminfo"]))
        assert str(files_of(plain)[files["/proc/meminfo"]]).endswith(last)

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_a_containers_nodes_go_when_forgotten_or_removed(mountpoint: Path) -> None:
    """A container's directory is made when the kernel looks its name up and dropped when
    the kernel forgets it, or when the container is removed (the kernel keeps names it is
    not told to drop); a file open then reads to its end, and from its start no more."""
    import pyfuse3  # only where the view can be served

    containers = Containers(c=limits(memory_limit=64 * MiB))
    view = ProcView(containers)

    def nodes() -> int:
        return os.statvfs(mountpoint).f_files

    def only_the_root() -> None:
        deadline = time.monotonic() + 10
        while nodes() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert nodes() == 1

    def check() -> None:
        files = view.files("c")
        assert nodes() == 1  # the root
        os.stat(files["/proc/meminfo"])
        assert nodes() == 3  # c, c/meminfo
        assert sorted(os.listdir(mountpoint)) == ["c"]
        pyfuse3.invalidate_entry(pyfuse3.ROOT_INODE, b"c")  # the kernel forgets them
        only_the_root()
        fd = os.open(files["/proc/meminfo"], os.O_RDONLY)
        try:
            assert os.read(fd, 9) == b"MemTotal:"
            del containers.table["c"]
            view.drop("c")  # done in the view's thread, soon
            only_the_root()
            assert os.read(fd, 1 << 16).endswith(b" kB\n")
            with pytest.raises(ProcessLookupError):
                os.pread(fd, 10, 0)
        finally:
            os.close(fd)
        with pytest.raises(FileNotFoundError):
            os.stat(files["/proc/meminfo"])

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
@pytest.mark.timeout(30)
async def test_a_request_taken_back_before_it_is_read_stops_nothing(mountpoint: Path) -> None:
    """pyfuse3 reads the FUSE device, in the Trio thread and holding the GIL, once it is
    readable; a request whose reader got a fatal signal in between (a container killed
    while it reads /proc/meminfo, as ``top`` does) is taken back by the kernel while
    still pending, and a blocking read then waited for the next request: every task of
    the daemon, and every other thread, stopped with it.  Here the request pyfuse3 was
    woken for is taken by the test first, as the kernel takes it back."""
    view = ProcView(Containers(c=limits()))
    async with trio.open_nursery() as nursery:
        await nursery.start(view.serve, mountpoint)
        await trio.to_thread.run_sync(os.listdir, mountpoint)  # the kernel's INIT answered
        device = fuse_device()
        watched = os.dup(device)  # the same device, waited on beside pyfuse3's own wait
        try:
            for _ in range(40):  # who runs first after the wake is random: about half each
                await trio.sleep(0.01)  # pyfuse3, in the view's thread, waits: readable
                asker = threading.Thread(target=statfs_or_enosys, args=(mountpoint,))
                asker.start()
                with trio.move_on_after(1):  # pyfuse3 may have read it by then
                    await trio.lowlevel.wait_readable(watched)
                request = b""
                if select.select([device], [], [], 0)[0]:
                    # Before pyfuse3, which then reads with nothing there; EAGAIN:
                    # pyfuse3's thread read it in between.
                    with contextlib.suppress(BlockingIOError):
                        request = os.read(device, 1 << 21)
                taken = bool(request)
                if taken:
                    length, opcode, unique = struct.unpack_from("<IIQ", request)
                    assert (length, opcode) == (len(request), FUSE_STATFS)
                    os.write(device, struct.pack("<IiQ", 16, -errno.ENOSYS, unique))
                await trio.to_thread.run_sync(asker.join)
                if taken:
                    break
            else:
                pytest.fail("pyfuse3 read each request first")
            # Still served, and nothing else stopped.
            names = await trio.to_thread.run_sync(os.listdir, mountpoint / "c")
            assert "meminfo" in names
        finally:
            os.close(watched)
        nursery.cancel_scope.cancel(reason="served")


def statfs_or_enosys(mountpoint: Path) -> None:
    """A statfs of the mount, answered by pyfuse3 or refused by the test."""
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        assert exc.errno == errno.ENOSYS


FUSE_STATFS = 17  # the kernel's opcode (include/uapi/linux/fuse.h)


def fuse_device() -> int:
    """The process's one open FUSE device (the mount pyfuse3 serves)."""
    (device,) = _procview._fuse_devices()
    return device


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_a_failing_resolver_is_eio_and_the_mount_survives(
    mountpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A resolver's error is EIO (and logged); a container it no longer finds (removed,
    LookupError) is ENOENT, as a name it does not know."""
    view = ProcView(
        Containers(
            broken=RuntimeError("the resolver broke"),
            gone=LookupError("no such container"),
            fine=limits(memory_limit=64 * MiB),
        )
    )
    caplog.set_level(logging.ERROR, logger="boxd.procview")

    def check() -> None:
        broken, gone, fine = (view.files(c)["/proc/meminfo"] for c in ("broken", "gone", "fine"))
        (seen,) = run_readers(read(broken, gone, fine))
        assert files_of(seen)[broken] == errno.EIO
        assert files_of(seen)[gone] == errno.ENOENT
        assert meminfo_kb(str(files_of(seen)[fine]))["MemTotal"] == 65536

    await with_view(view, mountpoint, check)
    logged = [record.exc_text or "" for record in caplog.records]
    assert any("the resolver broke" in text for text in logged)
    assert not any("no such container" in text for text in logged)


# Keeps the file open and reads it again from the start at each line on stdin, as procps
# (free -s, vmstat, top) does; each time in 7-byte pieces to the end and past it.
REREADER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in sys.stdin:
    os.lseek(fd, 0, os.SEEK_SET)
    content = b"".join(iter(lambda: os.read(fd, 7), b""))
    assert os.read(fd, 7) == b"" and os.pread(fd, 7, len(content)) == b""
    print(content.decode().splitlines()[0], flush=True)
"""


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_a_file_read_again_from_the_start_shows_the_counters_now(mountpoint: Path) -> None:
    containers = Containers()
    view = ProcView(containers)

    def check() -> None:
        containers.table["c"] = limits(memory_limit=16 * MiB)
        with subprocess.Popen(
            [sys.executable, "-c", REREADER, view.files("c")["/proc/meminfo"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as reader:
            assert reader.stdin is not None and reader.stdout is not None
            try:
                seen = []
                for memory in (64, 128, 32):
                    containers.table["c"] = limits(memory_limit=memory * MiB)
                    reader.stdin.write("again\n")
                    reader.stdin.flush()
                    seen.append(reader.stdout.readline())
                assert seen == [f"MemTotal:{m * 1024:>15} kB\n" for m in (64, 128, 32)]
            finally:
                reader.kill()

    await with_view(view, mountpoint, check)


# At a line on stdin, opens FILE until refused (or N times), prints how many and the
# refusal's errno; at the next, closes them all and opens once more.
HOLDER = """
import os, sys
sys.stdin.readline()
fds, refused = [], 0
try:
    for _ in range(int(sys.argv[2])):
        fds.append(os.open(sys.argv[1], os.O_RDONLY))
except OSError as exc:
    refused = exc.errno
print(len(fds), refused, flush=True)
sys.stdin.readline()
for fd in fds:
    os.close(fd)
os.close(os.open(sys.argv[1], os.O_RDONLY))
print("reopened", flush=True)
"""


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_each_container_holds_a_bounded_number_of_open_files(
    mountpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The handles are the daemon's memory: a container cannot make it grow without end."""
    monkeypatch.setattr(_procview, "MAX_OPEN", 8)
    view = ProcView(Containers(a=limits(memory_limit=64 * MiB), b=limits(memory_limit=64 * MiB)))

    def hold(path: str, count: int) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, path, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        return holder

    def check() -> None:
        holders = [
            hold(view.files("a")["/proc/cpuinfo"], 20),
            hold(view.files("b")["/proc/stat"], 8),
        ]
        try:
            for holder, expected in zip(holders, ["8 24\n", "8 0\n"], strict=True):
                assert holder.stdout is not None
                assert holder.stdout.readline() == expected  # 24: EMFILE
            for holder in holders:
                out, _ = holder.communicate("done\n", timeout=30)
                assert out == "reopened\n"
        finally:
            for holder in holders:
                holder.kill()
                holder.wait()

    caplog.set_level(logging.WARNING, logger="boxd.procview")
    await with_view(view, mountpoint, check)
    refusals = [r.getMessage() for r in caplog.records if "EMFILE" in r.getMessage()]
    assert len(refusals) == 1 and "holds 8 of its files open" in refusals[0]


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_the_tree_is_read_only(mountpoint: Path) -> None:
    view = ProcView(Containers(c=limits()))

    def check() -> None:
        files = view.files("c")
        assert os.listdir(mountpoint) == []  # no container's directory looked up yet
        assert sorted(os.listdir(mountpoint / "c")) == sorted(Path(path).name for path in FILES)
        assert os.stat(files["/proc/stat"]).st_mode & 0o777 == 0o444
        with pytest.raises(OSError) as denied:
            open(files["/proc/stat"], "w").close()
        assert denied.value.errno in (errno.EROFS, errno.EACCES)
        for missing in ("c/vmstat", "c/proc", "unknown", "c/stat/x"):
            with pytest.raises(OSError) as absent:
                os.stat(mountpoint / missing)
            assert absent.value.errno in (errno.ENOENT, errno.ENOTDIR)
        with pytest.raises(ValueError, match="'a/b' cannot name a directory"):
            view.files("a/b")
        assert os.statvfs(mountpoint).f_namemax == 255
        # A container without a swap limit sees the host's file (read in pieces).
        with open(files["/proc/swaps"], "rb", buffering=0) as file:
            content = b"".join(iter(lambda: file.read(3), b""))
        assert content == Path("/proc/swaps").read_bytes()
        assert "/proc/loadavg" not in files  # procfs's own: see the module's docstring

    await with_view(view, mountpoint, check)
    assert str(mountpoint) not in mount_points()


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_one_view_per_process(mountpoint: Path, tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(ProcView().serve, mountpoint)
        with pytest.raises(RuntimeError, match="one mount per process"):
            await nursery.start(ProcView().serve, tmp_path / "second")
        nursery.cancel_scope.cancel(reason="refusal checked")
    assert str(mountpoint) not in mount_points()


SERVE_AND_HANG = """
import sys
from pathlib import Path
import trio
import trio.testing
from boxd._procview import ProcView

async def main() -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(ProcView().serve, Path(sys.argv[1]))
        print("ready", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_a_crashed_daemons_mount_is_replaced(mountpoint: Path) -> None:
    def crash_a_daemon() -> None:
        with subprocess.Popen(
            [sys.executable, "-c", SERVE_AND_HANG, str(mountpoint)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        ) as daemon:
            try:
                assert daemon.stdout is not None
                assert daemon.stdout.readline() == "ready\n"
            finally:
                daemon.send_signal(signal.SIGKILL)
        with pytest.raises(OSError) as dead:
            os.stat(mountpoint)
        assert dead.value.errno == errno.ENOTCONN

    await trio.to_thread.run_sync(crash_a_daemon)
    assert str(mountpoint) in mount_points()

    view = ProcView(Containers(c=limits()))

    def check() -> None:
        assert Path(view.files("c")["/proc/uptime"]).read_text().count(" ") == 1
        assert mount_points().count(str(mountpoint)) == 1

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_readers_of_other_users_are_served(mountpoint: Path) -> None:
    """Container processes run as other users: the mount allows them (allow_other)."""
    view = ProcView(Containers(c=limits(memory_limit=32 * MiB)))
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

    def check() -> None:
        # The mount point is in pytest's private temporary directory: read it, as a
        # container does, through a bind mount.
        command = in_mount_namespace(view.files("c"), [*nobody, *read("/proc/meminfo")])
        (seen,) = run_readers(command)
        assert meminfo_kb(str(files_of(seen)["/proc/meminfo"]))["MemTotal"] == 32768

    await with_view(view, mountpoint, check)


@fuse_test
@pytest.mark.fuse
@pytest.mark.root
async def test_serve_returns_when_unmounted_from_outside(
    mountpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(ProcView().serve, mountpoint)
        await trio.run_process(["umount", str(mountpoint)])
    assert str(mountpoint) not in mount_points()
    assert "unmounted from outside" in caplog.text


def test_importing_the_view_leaves_out_what_pyfuse3_imports_for_nothing() -> None:
    """pyfuse3's version lookup and its PicklingError get stand-ins while it is imported
    (bench/README.md, sessions 6 and 8); the real modules stay importable afterwards."""
    code = (
        "import sys, boxd._daemon, boxd._procview as v\n"
        "print(v._PYFUSE3_MISSING is None, 'pickle' in sys.modules,"
        " 'importlib.metadata' in sys.modules)\n"
        "import pickle, importlib.metadata\n"
        "print(pickle.loads(pickle.dumps([1])), callable(importlib.metadata.version))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    if out[0].startswith("True"):  # pyfuse3 importable: it was imported without them
        assert out[0] == "True False False"
    assert out[1] == "[1] True"

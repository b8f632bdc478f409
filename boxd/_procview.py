"""A per-container view of /proc, served with pyfuse3 (the idea of lxcfs, in Python).

Inside a container, ``free``, ``top``, JVMs and ``os.cpu_count()`` read the host's
/proc/meminfo, /proc/cpuinfo and /sys/devices/system/cpu/online and size themselves for
the whole machine.  The daemon serves ONE FUSE filesystem (pyfuse3 keeps one session per
process) with a directory per container, ``<mount>/<container id>/meminfo`` ..., and
the spawn path bind-mounts that container's files over its copies (see
:meth:`ProcView.files`).  A container's directory is made when the kernel looks its id
up and the view's :class:`Resolver` (the supervisor) knows it, and is dropped when the
kernel forgets it or the container is removed; its files render what the resolver's
:class:`ViewLimits` for that container give.

As in procfs, a read from offset 0 renders the file anew: ``free -s``, ``vmstat 1`` and
``top`` keep the file open and read it again from the start, and see the counters change.
Later reads slice that rendering, which is dropped once read to the end.  A container
holds at most :data:`MAX_OPEN` of the view's files open at once (EMFILE beyond): the
handles live in the daemon's memory, not in the container's cgroup.

Plain reads go to the view directly (``direct_io``), but ``sendfile`` and ``splice``
(busybox's ``cat`` and ``head``, coreutils' ``copy_file_range``) read through the page
cache, up to the size the kernel has for the file: with procfs's size 0 they read
nothing.  So a file reports the length of its rendering: each container's files are
inodes of their own (one page cache each: no container is ever served another's pages
or cut to another's length), a file's attributes are cached for no time, so the kernel asks
for them (GETATTR) at every open's permission check and the view renders the file
there, for the open that follows, and every open drops the cached pages.

What each file shows for a container (all other content is the host's):

- ``/proc/meminfo``: every amount is the container's cgroup's, or 0, never the host's
  (see :func:`meminfo_for`): MemTotal = min(memory limit, host), MemFree = MemTotal minus
  the cgroup's usage, MemAvailable = MemFree + Cached + SReclaimable; Cached,
  Active/Inactive, Dirty, Mapped, Shmem, Slab ... from its memory.stat; SwapTotal =
  min(swap limit, host swap), SwapFree = SwapTotal minus its swap usage.  Only
  Hugepagesize (a constant) is the host's line.
- ``/proc/cpuinfo``: the visible CPUs only, renumbered 0..n-1 (x86 and arm64 layout: one
  block per CPU, starting with ``processor``).  Sibling and core counts stay the host's.
- ``/sys/devices/system/cpu/online``: ``0-(n-1)``; glibc's ``sysconf(_SC_NPROCESSORS_ONLN)``
  and so ``os.cpu_count()`` read this file.  (``nproc`` asks ``sched_getaffinity``, which
  the cpuset already limits.)
- ``/proc/stat``: the ``cpu`` aggregate and the ``cpuN`` lines of the visible CPUs,
  renumbered.  The per-CPU lines are the host's counters of those CPUs.  When the
  container's CPU usage is known, the aggregate shows it as user and system time, and the
  rest of the visible CPUs' time as idle, so ``top``'s total is the container's share.
- ``/proc/uptime``: the host's time since boot, as procfs gives it (each process's start
  in /proc/PID/stat counts from the host's boot: ``ps``'s elapsed times and %CPU take the
  difference); idle is the visible CPUs' time the container did not use (or, without
  usage, the host's idle share scaled to them), as the ``cpu`` line of ``/proc/stat``.
- ``/proc/swaps``: with a swap limit, one ``none virtual`` line of the limited size, or the
  header only when the limit (or the host's swap) is 0.

``/proc/loadavg`` is left to procfs: its averages are the host's there too (a container's
own would need every task's state sampled), and its last field, the newest process id,
procfs gives in the reader's PID namespace, where a rendering of the daemon's copy gave
the host's.

The sysinfo system call of a container with the view is answered with the same amounts as
its ``meminfo`` (:func:`meminfo_now`; see boxd/_sysinfo.py).

The visible CPUs follow a policy: ``"cpuset"`` (the default) shows the container's cpuset
(the CPUs it runs on: a parent's may narrow it) only; ``"quota"`` shows at most
ceil(quota) of them.  The quota is a share of time, not a set of CPUs: a container
limited to 0.5 CPU still runs threads on every CPU of its cpuset, so deriving the count
from it is opt-in (lxcfs's maintainers argue the same).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import logging
import math
import os
import posixpath
import stat
import sys
import time
import types
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import attrs
import trio

from ._mountinfo import mount_points


@contextlib.contextmanager
def _stand_ins_for_pyfuse3() -> Iterator[None]:
    """While pyfuse3 is imported, stand-ins answer two imports it makes for things boxd
    never uses:

    - ``importlib.metadata``, to look its own version up (``pyfuse3.__version__`` is then
      "unknown"): that module brings email, zipfile, csv and importlib.resources, ~1 MB
      of the idle daemon's memory;
    - ``pickle``, for the ``PicklingError`` its handles raise when pickled: ``pickle``
      brings ``_pickle`` and its tables, ~0.4 MB.  Pickling them fails as before, with
      the stand-in's ``PicklingError`` (not a ``pickle.PicklingError``).

    Whoever imports either module later gets the real one; one already imported is used."""
    metadata = types.ModuleType("importlib.metadata")

    class PackageNotFoundError(ModuleNotFoundError):
        pass

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    metadata.__dict__.update(PackageNotFoundError=PackageNotFoundError, version=version)
    pickle = types.ModuleType("pickle")

    class PicklingError(Exception):
        pass

    pickle.__dict__.update(PicklingError=PicklingError)
    stand_ins = {m.__name__: m for m in (metadata, pickle) if m.__name__ not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


try:
    with _stand_ins_for_pyfuse3():
        import pyfuse3
except ImportError as exc:  # the daemon goes on without the view; see available()
    _PYFUSE3_MISSING: str | None = f"pyfuse3 is not importable ({exc})"
else:
    _PYFUSE3_MISSING = None

if TYPE_CHECKING:
    from pyfuse3 import Operations as _OperationsBase
else:
    _OperationsBase = object if _PYFUSE3_MISSING else pyfuse3.Operations

log = logging.getLogger("boxd.procview")

CPU_POLICIES = ("cpuset", "quota")

_ONLINE = "/sys/devices/system/cpu/online"
FILES: tuple[str, ...] = (
    "/proc/meminfo",
    "/proc/cpuinfo",
    "/proc/stat",
    "/proc/uptime",
    "/proc/swaps",
    _ONLINE,
)
_MNT_DETACH = 2
# Seconds the kernel may keep the view's names and its directories' attributes.
_ENTRY_TIMEOUT = 60.0


def _non_negative(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")


@attrs.frozen
class ViewLimits:
    """What one container may use and uses, at the moment a file is opened.

    Byte counts are plain bytes.  ``swap_limit``/``swap_usage`` are swap alone (on cgroup v1
    that is memsw minus memory).  ``cpus`` is the cpuset, ``cpu_quota`` the CPU limit in
    cores (cpu.max or cfs_quota/cfs_period), ``cpu_usage_ns`` the (user, system) time the
    container used so far.  ``None`` means unlimited or unknown: the host's value is shown.
    """

    memory_limit: int | None
    memory_usage: int
    swap_limit: int | None
    swap_usage: int
    cpus: tuple[int, ...] | None
    cpu_quota: float | None
    cpu_usage_ns: tuple[int, int] | None = None
    # memory.stat in bytes by v2 names (see boxd._cgroup.MemoryDetail); missing: 0.
    memory_stat: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for name in ("memory_limit", "memory_usage", "swap_limit", "swap_usage"):
            _non_negative(name, getattr(self, name))
        if self.cpus is not None and (not self.cpus or min(self.cpus) < 0):
            raise ValueError(f"cpus must be a non-empty set of CPU numbers, not {self.cpus!r}")
        if self.cpu_quota is not None and not self.cpu_quota > 0:
            raise ValueError(f"cpu_quota must be > 0 cores, not {self.cpu_quota!r}")
        if self.cpu_usage_ns is not None and min(self.cpu_usage_ns) < 0:
            raise ValueError(f"cpu_usage_ns must be >= 0, not {self.cpu_usage_ns!r}")


class Resolver(Protocol):
    """Whose files the view serves: the supervisor, which knows the containers.

    Both are called on the view's own thread (see :meth:`ProcView.serve`: at lookups, at
    each open and stat of a file and each read of it from offset 0), so they must be fast,
    must not block and must not wait for the caller's event loop.
    """

    def view_known(self, container: str) -> bool:
        """Whether ``container`` names a container whose files the view serves (a lookup
        of any other name in the view's root fails with ENOENT)."""
        ...

    def view_limits(self, container: str, path: str) -> ViewLimits:
        """What the file ``path`` (one of :data:`FILES`) shows ``container``'s readers now.

        The memory counters are needed only for :data:`MEMORY_FILES`, the CPU usage only
        for :data:`CPU_USAGE_FILES` and the CPUs only for :data:`CPU_FILES`; they may be
        left out for the others (each cgroup file read costs 20-40 us, v1's memory.stat
        more).  LookupError once the container is gone.
        """
        ...


MAX_OPEN = 4096
"""The view's files one container may hold open at once."""


MEMORY_FILES = frozenset({"/proc/meminfo", "/proc/swaps"})
CPU_USAGE_FILES = frozenset({"/proc/stat", "/proc/uptime"})
CPU_FILES = CPU_USAGE_FILES | {"/proc/cpuinfo", "/sys/devices/system/cpu/online"}


def available() -> str | None:
    """None if the view can be served here, else why not (for the daemon to log once)."""
    if _PYFUSE3_MISSING is not None:
        return _PYFUSE3_MISSING
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return f"cannot open /dev/fuse: {exc.strerror}"
    return None


# ---------------------------------------------------------------------------------------
# Rendering: host text + limits -> what the container sees.  Pure functions, no I/O.


@attrs.frozen
class _Env:
    host_cpus: tuple[int, ...]  # the host's online CPUs
    visible: tuple[int, ...]  # the CPUs the container is shown, in host numbering
    user_hz: int


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-2,5"`` (the kernel's cpu list format) -> ``(0, 1, 2, 5)``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        try:
            cpus.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}") from None
    return tuple(cpus)


def visible_cpus(limits: ViewLimits, host_cpus: Sequence[int], policy: str) -> tuple[int, ...]:
    """The host CPUs a container is shown, under the CPU count ``policy``."""
    cpus = tuple(host_cpus)
    if limits.cpus is not None:
        allowed = set(limits.cpus)
        cpus = tuple([cpu for cpu in cpus if cpu in allowed])
        if not cpus:
            raise ValueError(
                f"cpuset {limits.cpus!r} has no online CPU (online: {tuple(host_cpus)!r})"
            )
    if policy == "quota" and limits.cpu_quota is not None:
        cpus = cpus[: math.ceil(limits.cpu_quota)]
    return cpus


def _meminfo_values(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key] = int(words[0])
    return values


# Lines that are constants of the machine rather than amounts of memory in use.
_MEMINFO_CONSTANTS = frozenset({"Hugepagesize"})


def meminfo_for(host_kb: dict[str, int], limits: ViewLimits) -> dict[str, int]:
    """The container's /proc/meminfo values (kB; every line not here is 0), computed from its cgroup
    as lxcfs does: MemTotal is the limit (at most the host's), MemFree the limit minus
    the cgroup's usage, the page cache, slab and LRU lines are the cgroup's memory.stat
    counters, swap is the cgroup's.

    ``free`` shows used = MemTotal - MemAvailable (procps 4; older ones: MemTotal -
    MemFree - buff/cache), so used + free + buff/cache is MemTotal only if MemAvailable
    is MemFree + Cached + SReclaimable.  So Cached is the page cache that can be dropped
    (the cgroup's file pages without shmem, which stays in use until deleted; Shmem has a
    line of its own), and Cached and SReclaimable, being part of the usage, are capped by
    it."""
    stat = {name: value // 1024 for name, value in limits.memory_stat.items()}
    total = host_kb.get("MemTotal", 0)
    if limits.memory_limit is not None:
        total = min(limits.memory_limit // 1024, total)
    used = min(limits.memory_usage // 1024, total)
    free = total - used
    cached = min(max(stat.get("file", 0) - stat.get("shmem", 0), 0), used)
    slab_reclaimable = min(stat.get("slab_reclaimable", 0), used - cached)
    slab_unreclaimable = stat.get("slab_unreclaimable", 0)
    swap_total = host_kb.get("SwapTotal", 0)
    if limits.swap_limit is not None:
        swap_total = min(limits.swap_limit // 1024, swap_total)
    shown = {
        "MemTotal": total,
        "MemFree": free,
        "MemAvailable": free + cached + slab_reclaimable,
        "Cached": cached,
        "Active": stat.get("active_anon", 0) + stat.get("active_file", 0),
        "Inactive": stat.get("inactive_anon", 0) + stat.get("inactive_file", 0),
        "Active(anon)": stat.get("active_anon", 0),
        "Inactive(anon)": stat.get("inactive_anon", 0),
        "Active(file)": stat.get("active_file", 0),
        "Inactive(file)": stat.get("inactive_file", 0),
        "Unevictable": stat.get("unevictable", 0),
        "SwapTotal": swap_total,
        "SwapFree": swap_total - min(limits.swap_usage // 1024, swap_total),
        "Zswap": stat.get("zswap", 0),
        "Zswapped": stat.get("zswapped", 0),
        "Dirty": stat.get("file_dirty", 0),
        "Writeback": stat.get("file_writeback", 0),
        "AnonPages": stat.get("anon", 0),
        "Mapped": stat.get("file_mapped", 0),
        "Shmem": stat.get("shmem", 0),
        "KReclaimable": slab_reclaimable,
        "Slab": slab_reclaimable + slab_unreclaimable,
        "SReclaimable": slab_reclaimable,
        "SUnreclaim": slab_unreclaimable,
        "KernelStack": stat.get("kernel_stack", 0),
        "PageTables": stat.get("pagetables", 0),
        "SecPageTables": stat.get("sec_pagetables", 0),
        "Percpu": stat.get("percpu", 0),
        "AnonHugePages": stat.get("anon_thp", 0),
        "ShmemHugePages": stat.get("shmem_thp", 0),
        "FileHugePages": stat.get("file_thp", 0),
    }
    return shown


def meminfo_now(limits: ViewLimits) -> dict[str, int]:
    """:func:`meminfo_for` of the host's /proc/meminfo as it is now: what the container's
    /proc/meminfo would show (boxd/_sysinfo.py answers sysinfo(2) with it)."""
    return meminfo_for(_meminfo_values(_read_host("/proc/meminfo")), limits)


def _render_meminfo(host: str, limits: ViewLimits, env: _Env) -> str:
    shown = meminfo_for(_meminfo_values(host), limits)
    lines = []
    for line in host.splitlines():
        key, colon, rest = line.partition(":")
        words = rest.split()
        if key not in _MEMINFO_CONSTANTS and words and words[0].isdigit():
            # Every amount is the container's, or 0; the kernel's column layout is kept
            # (the number right-aligned where it was).
            unit = " kB" if rest.endswith(" kB") else ""
            width = len(rest) - len(unit)
            line = f"{key}{colon}{shown.get(key, 0):>{width}}{unit}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _render_cpuinfo(host: str, limits: ViewLimits, env: _Env) -> str:
    renumber = {cpu: index for index, cpu in enumerate(env.visible)}
    blocks = []
    for block in host.strip("\n").split("\n\n"):
        first, newline, body = block.partition("\n")
        key, colon, value = first.partition(":")
        if key.strip() == "processor" and value.strip().isdigit():
            cpu = int(value)
            if cpu not in renumber:
                continue
            block = f"{key}{colon} {renumber[cpu]}{newline}{body}"
        blocks.append(block)
    return "\n\n".join(blocks) + "\n\n"


def _render_online(host: str, limits: ViewLimits, env: _Env) -> str:
    count = len(env.visible)
    return "0\n" if count == 1 else f"0-{count - 1}\n"


def _stat_cpu_number(name: str) -> int | None:
    return int(name[3:]) if name.startswith("cpu") and name[3:].isdigit() else None


def _render_stat(host: str, limits: ViewLimits, env: _Env) -> str:
    per_cpu: dict[int, list[int]] = {}
    for line in host.splitlines():
        name, _, rest = line.partition(" ")
        cpu = _stat_cpu_number(name)
        if cpu is not None:
            per_cpu[cpu] = [int(word) for word in rest.split()]
    rows = [per_cpu[cpu] for cpu in env.visible if cpu in per_cpu]
    total = [sum(column) for column in zip(*rows, strict=True)]
    if limits.cpu_usage_ns is not None:
        user, system = (ns * env.user_hz // 1_000_000_000 for ns in limits.cpu_usage_ns)
        # user nice system idle iowait irq softirq steal: the visible CPUs' elapsed time
        # (guest time is already part of user).
        elapsed = sum(total[:8])
        total = [user, 0, system, max(elapsed - user - system, 0)] + [0] * (len(total) - 4)
    lines = []
    for line in host.splitlines():
        name = line.partition(" ")[0]
        if name == "cpu":
            lines.append("cpu  " + " ".join(map(str, total)))
            lines.extend(f"cpu{index} " + " ".join(map(str, row)) for index, row in enumerate(rows))
        elif _stat_cpu_number(name) is None:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _render_uptime(host: str, limits: ViewLimits, env: _Env) -> str:
    up, host_idle = (float(word) for word in host.split()[:2])
    cpu_seconds = up * len(env.visible)
    if limits.cpu_usage_ns is not None:
        idle = max(cpu_seconds - sum(limits.cpu_usage_ns) / 1e9, 0.0)
    else:
        idle_share = min(host_idle / (up * len(env.host_cpus)), 1.0) if up else 1.0
        idle = cpu_seconds * idle_share
    return f"{up:.2f} {idle:.2f}\n"


def _render_swaps(host: str, limits: ViewLimits, env: _Env) -> str:
    if limits.swap_limit is None:
        return host
    header, *devices = host.splitlines()
    host_kb = sum(int(device.split()[2]) for device in devices)
    total = min(limits.swap_limit // 1024, host_kb)
    if total == 0:
        return header + "\n"
    used = min(limits.swap_usage // 1024, total)
    return f"{header}\n{'none':<40}virtual\t\t{total}\t\t{used}\t\t-1\n"


_RENDERERS: dict[str, Callable[[str, ViewLimits, _Env], str]] = {
    "/proc/meminfo": _render_meminfo,
    "/proc/cpuinfo": _render_cpuinfo,
    "/proc/stat": _render_stat,
    "/proc/uptime": _render_uptime,
    "/proc/swaps": _render_swaps,
    _ONLINE: _render_online,
}


def _read_host(path: str) -> str:
    # procfs and sysfs are in memory: these reads do not block the Trio thread.
    with open(path, encoding="ascii") as file:
        return file.read()


# ---------------------------------------------------------------------------------------
# The filesystem.


class ProcView:
    """The per-container /proc files: a directory per container, its files rendered for
    it."""

    _serving: Path | None = None  # pyfuse3 has one session per process: who holds it

    def __init__(self, resolver: Resolver | None = None, *, cpu_policy: str = "cpuset") -> None:
        if cpu_policy not in CPU_POLICIES:
            raise ValueError(f"cpu_policy must be one of {CPU_POLICIES!r}, not {cpu_policy!r}")
        # Whose files it serves; until one is set (the daemon serves the view before its
        # supervisor opens) it serves none.
        self.resolver = resolver
        self._cpu_policy = cpu_policy
        self._mountpoint: Path | None = None
        self._operations: _Operations | None = None  # while serving
        self._loop: trio.lowlevel.TrioToken | None = None  # the serving thread's

    def knows(self, container: str) -> bool:
        """Whether the view serves files for ``container``."""
        return self.resolver is not None and self.resolver.view_known(container)

    def render(self, path: str, container: str) -> bytes:
        """What ``container``'s readers see at ``path`` (an in-container path of
        :data:`FILES`); LookupError for a container the view does not serve."""
        render = _RENDERERS.get(path)
        if render is None:
            raise ValueError(f"{path!r} is not a file of the /proc view")
        if self.resolver is None:
            raise LookupError(f"the /proc view serves no container yet, not {container}")
        limits = self.resolver.view_limits(container, path)
        host_cpus = parse_cpu_list(_read_host(_ONLINE))
        env = _Env(
            host_cpus=host_cpus,
            visible=visible_cpus(limits, host_cpus, self._cpu_policy),
            user_hz=os.sysconf("SC_CLK_TCK"),
        )
        return render(_read_host(path), limits, env).encode()

    def files(self, container: str) -> dict[str, str]:
        """In-container path -> the file in the mount to bind over it in ``container``
        (while serving; the file is found once the resolver knows the container)."""
        if self._mountpoint is None:
            raise RuntimeError("the /proc view is not being served")
        if not container or "/" in container or container in (".", ".."):
            raise ValueError(f"{container!r} cannot name a directory of the /proc view")
        return {path: f"{self._mountpoint}/{container}/{_NAMES[path]}" for path in FILES}

    def drop(self, container: str) -> None:
        """Forget ``container``'s files (it is removed): the kernel keeps names it is not
        told to drop (FUSE's entries stay cached), and a removed container's open files
        answer reads from their start with ESRCH anyway."""
        if self._operations is not None and self._loop is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._loop.run_sync_soon(self._operations.drop_container, container)

    async def serve(
        self, mountpoint: Path, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Mount the view at ``mountpoint`` and answer requests until cancelled.

        A mount left at ``mountpoint`` by a crashed daemon is detached first.  Ready is
        reported once the mount exists; on cancellation the filesystem is unmounted.  The
        requests are answered in a thread of their own (see :meth:`_serve_in_thread`).
        """
        reason = available()
        if reason is not None:
            raise RuntimeError(f"cannot serve the /proc view at {mountpoint}: {reason}")
        if ProcView._serving is not None:
            raise RuntimeError(
                f"cannot serve the /proc view at {mountpoint}: pyfuse3 serves one mount per "
                f"process and {ProcView._serving} is already served"
            )
        mountpoint = _prepare_mountpoint(mountpoint)
        options = {"fsname=boxd-procview", "subtype=boxd", "ro", "allow_other"}
        options |= {"default_permissions"}
        ProcView._serving = mountpoint
        try:
            fuses = _fuse_devices()
            operations = _Operations(self)
            try:
                pyfuse3.init(operations, str(mountpoint), options)
            except RuntimeError as exc:  # libfuse has printed why on stderr
                raise OSError(f"cannot mount the /proc view at {mountpoint}: {exc}") from None
            try:
                _read_without_waiting(fuses)
                await self._serve_in_thread(mountpoint, operations, task_status)
                log.warning("the /proc view at %s was unmounted from outside", mountpoint)
            finally:
                self._mountpoint = self._operations = self._loop = None
                pyfuse3.close(unmount=True)
        finally:
            ProcView._serving = None

    async def _serve_in_thread(
        self, mountpoint: Path, operations: _Operations, task_status: trio.TaskStatus[None]
    ) -> None:
        """Answer the view's requests in a thread of their own, with a Trio loop of its
        own, until the mount goes or this is cancelled.

        Not on the caller's thread: that thread must never wait for what a reader of the
        view holds while it waits for the view.  busybox's ``cat`` copies a file into its
        standard output (a pipe the daemon reads) with sendfile, which holds the pipe's
        lock while the kernel asks the view for the file's pages; a read of that pipe
        (even a non-blocking one) waits for its lock, uninterruptibly, and the view,
        served by the same thread, never answered: the daemon and the reader stopped for
        ever.  In its own thread the view answers while the event loop waits."""
        ready = trio.Event()
        caller = trio.lowlevel.current_trio_token()

        async def serve_here() -> None:
            self._loop = trio.lowlevel.current_trio_token()
            caller.run_sync_soon(ready.set)
            await _serve_requests()

        async def run_loop() -> None:
            await trio.to_thread.run_sync(trio.run, serve_here, thread_name="boxd-procview")
            nursery.cancel_scope.cancel(reason="the /proc view's mount is gone")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_loop)
            try:
                await ready.wait()
                self._mountpoint, self._operations = mountpoint, operations
                task_status.started()
                await trio.sleep_forever()
            finally:
                # Ends the view's loop (if the mount's end has not): its thread is waited for.
                loop = self._loop
                if loop is not None:
                    with contextlib.suppress(trio.RunFinishedError):
                        loop.run_sync_soon(pyfuse3.terminate)


def _fuse_devices() -> set[int]:
    """The process's open descriptors of the FUSE device."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                fds.add(int(name))
    return fds


def _read_without_waiting(before: set[int]) -> None:
    """Make the device pyfuse3 has just opened (the one not in ``before``) answer a read
    with nothing to read by EAGAIN, not by waiting.

    pyfuse3 reads the device, a blocking read in its Trio thread holding the GIL, once it
    is readable; a request whose reader got a fatal signal in between (a container killed
    while it reads /proc/meminfo, as ``top`` does) is taken back by the kernel while
    still pending, and the read then waited for the next request: every task and thread
    of the daemon stopped with it, until something read the view again."""
    (device,) = _fuse_devices() - before
    os.set_blocking(device, False)


async def _serve_requests() -> None:
    """pyfuse3's main loop, begun again when a read found nothing (the request it was
    woken for taken back): pyfuse3 ends on any error of its read but EINTR.

    Requests wait in the kernel meanwhile, and none is lost: the handlers of
    :class:`_Operations` never yield, so a request read is answered before anything is
    cancelled."""
    served = False
    while not served:
        try:
            await pyfuse3.main()
            served = True
        except* BlockingIOError:
            log.debug("/proc view: a request was taken back before it was read")


def _prepare_mountpoint(mountpoint: Path) -> Path:
    """The absolute mount point, with stale mounts detached and the directory created."""
    # Resolve the parent only: the mount point itself may be a dead FUSE mount that any
    # stat() would answer with ENOTCONN.
    mountpoint = Path(mountpoint).absolute()
    mountpoint = Path(os.path.realpath(mountpoint.parent)) / mountpoint.name
    _detach_mounts(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    return mountpoint


def _detach_mounts(mountpoint: Path) -> None:
    """Lazily unmount everything stacked at ``mountpoint`` (a crashed daemon's leftovers)."""
    umount2 = ctypes.CDLL(None, use_errno=True).umount2
    while str(mountpoint) in mount_points():
        log.warning("detaching a stale mount at %s", mountpoint)
        if umount2(os.fsencode(mountpoint), _MNT_DETACH) != 0:
            code = ctypes.get_errno()
            raise OSError(
                code, f"cannot detach the stale mount at {mountpoint}: {os.strerror(code)}"
            )


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _guarded(
    handler: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Turn an unexpected exception into EIO and a log line; pyfuse3 would let it escape
    its main loop and leave a dead mount."""

    @functools.wraps(handler)
    async def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception:
            log.exception("/proc view: %s failed", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return guarded


# The name of each file in a container's directory (a flat one: a start's binds look up
# each component of their paths, once per container, in the view's thread).
_NAMES = {path: posixpath.basename(path) for path in FILES}


class _Node:
    """An inode the kernel knows: the root, a container's directory, or one below it.

    ``shape`` is what the node is: None for the root, a dict (name -> file) for a
    directory, the in-container path for a file.  ``latest`` is a file's newest rendering
    for the next open and ``handles`` its open files: both give the size it reports."""

    __slots__ = (
        "children",
        "container",
        "handles",
        "inode",
        "latest",
        "lookups",
        "name",
        "parent",
        "shape",
    )

    def __init__(
        self, inode: int, parent: int, name: bytes, container: str | None, shape: Any
    ) -> None:
        self.inode = inode
        self.parent = parent
        self.name = name
        self.container = container
        self.shape: dict[bytes, Any] | str | None = shape
        self.children: dict[bytes, int] = {}  # the entries made so far
        self.lookups = 0  # the kernel's references (lookup and readdir replies)
        self.latest: bytes | None = None
        self.handles: set[_Handle] = set()

    @property
    def path(self) -> str | None:
        """The in-container path of the file served here; None for a directory."""
        return self.shape if isinstance(self.shape, str) else None

    def served(self) -> tuple[str, str]:
        """The in-container path of the file served here and whose it is."""
        assert isinstance(self.shape, str) and self.container is not None
        return self.shape, self.container

    def size(self) -> int:
        """At least the length of what any reader of this file reads from its start:
        of its newest rendering and of every open file's (see :class:`_Operations`)."""
        lengths = [handle.length for handle in self.handles]
        if self.latest is not None:
            lengths.append(len(self.latest))
        return max(lengths, default=0)


class _Handle:
    """An open file of the view: its node, and the rendering being read."""

    __slots__ = ("content", "fresh", "length", "node")

    def __init__(self, node: _Node, content: bytes) -> None:
        self.node = node
        self.content: bytes | None = content  # the rendering until read to its end
        self.length = len(content)
        self.fresh = True  # the rendering made for the open, not read from its start yet


class _Operations(_OperationsBase):
    """A directory per container (made on lookup of a container the resolver knows,
    dropped when the kernel forgets it), with the tree of :data:`FILES` rendered for it.

    A file's size (see the module's docstring) is at least the length of what any of its
    readers reads from its start (:meth:`_Node.size`): a page cache reader stops at a
    shorter reply, and the kernel takes its end for the size.  The rendering an open
    serves is the one made at the GETATTR the kernel sent just before, for the open's
    permission check (a file's attributes cached for no time, and
    ``default_permissions``), whose reply gave the kernel its length; ``keep_cache`` off
    drops older pages at the open.
    """

    def __init__(self, view: ProcView) -> None:
        super().__init__()
        self._view = view
        root = _Node(pyfuse3.ROOT_INODE, pyfuse3.ROOT_INODE, b"", None, None)
        root.lookups = 1  # the kernel never forgets the root
        self._nodes: dict[int, _Node] = {root.inode: root}
        self._next_inode = itertools.count(root.inode + 1)
        self._tree: dict[bytes, Any] = {name.encode(): path for path, name in _NAMES.items()}
        self._handles: dict[int, _Handle] = {}
        self._open: dict[str, int] = {}  # handles held, by container
        self._refused: set[str] = set()  # containers warned about MAX_OPEN
        self._next_handle = itertools.count(1)
        self._mounted_ns = time.time_ns()

    def _node(self, inode: int) -> _Node:
        node = self._nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _child(self, parent: _Node, name: bytes) -> _Node | None:
        """The entry ``name`` of the directory ``parent``, made if the kernel had none."""
        inode = parent.children.get(name)
        if inode is not None:
            return self._nodes[inode]
        container: str | None
        if parent.shape is None:  # the root: a container's directory
            container = name.decode("ascii", "replace")
            if not self._view.knows(container):
                return None
            shape: Any = self._tree
        elif isinstance(parent.shape, dict) and name in parent.shape:
            container, shape = parent.container, parent.shape[name]
        else:
            return None
        node = _Node(next(self._next_inode), parent.inode, name, container, shape)
        self._nodes[node.inode] = node
        parent.children[name] = node.inode
        return node

    def drop_container(self, container: str) -> None:
        """Drop the nodes of ``container``'s directory: requests for them get ENOENT (a
        FORGET, nothing), the container's files still open stay readable to their end."""
        inode = self._nodes[pyfuse3.ROOT_INODE].children.get(container.encode())
        pending = [] if inode is None else [inode]
        while pending:
            node = self._nodes[pending.pop()]
            pending.extend(node.children.values())
            self._drop(node)

    def _drop(self, node: _Node) -> None:
        del self._nodes[node.inode]
        parent = self._nodes.get(node.parent)
        if parent is not None and parent.children.get(node.name) == node.inode:
            del parent.children[node.name]

    def _render(self, node: _Node) -> bytes:
        """``node``'s file rendered now, kept as its newest rendering; ENOENT once its
        container is removed."""
        try:
            node.latest = self._view.render(*node.served())
        except LookupError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        return node.latest

    def _attributes(self, node: _Node) -> pyfuse3.EntryAttributes:
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = node.inode
        if node.path is None:
            attributes.st_mode = stat.S_IFDIR | 0o555
            attributes.st_nlink = 2
        else:
            attributes.st_mode = stat.S_IFREG | 0o444
            attributes.st_nlink = 1
            attributes.st_size = node.size()
        attributes.st_blksize = 4096
        attributes.st_atime_ns = attributes.st_mtime_ns = self._mounted_ns
        attributes.st_ctime_ns = self._mounted_ns
        # Names and a directory's attributes never change while its container is known:
        # the kernel keeps them (with nothing kept, a start's binds took 48 requests, ~1.8
        # ms of each `run --rm`; now 7 lookups).  A file's size changes (see the class's
        # docstring): its attributes are kept for no time.
        attributes.entry_timeout = _ENTRY_TIMEOUT
        attributes.attr_timeout = _ENTRY_TIMEOUT if node.path is None else 0
        return attributes

    @_guarded
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if node.path is not None:
            self._render(node)
        return self._attributes(node)

    @_guarded
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        if name == b".":
            node = parent
        elif name == b"..":
            node = self._node(parent.parent)
        else:
            found = self._child(parent, name)
            if found is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            node = found
        node.lookups += 1
        return self._attributes(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            node = self._nodes.get(inode)
            if node is not None and inode != pyfuse3.ROOT_INODE:
                node.lookups -= count
                if node.lookups <= 0:
                    self._drop(node)

    @_guarded
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if self._node(inode).path is not None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    @_guarded
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        directory = self._node(fh)
        if directory.shape is None:  # the root: the containers' directories made so far
            names = sorted(directory.children)
        else:
            assert isinstance(directory.shape, dict)
            names = sorted(directory.shape)
        for index, name in enumerate(names[start_id:], start=start_id + 1):
            node = self._child(directory, name)
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, name, self._attributes(node), index):
                if not node.lookups:
                    self._drop(node)
                return
            node.lookups += 1

    @_guarded
    async def releasedir(self, fh: int) -> None:
        return None

    @_guarded
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        # Opens for writing never get here: the mount is read-only ("ro"), the kernel
        # answers them with EROFS.
        node = self._node(inode)
        if node.path is None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        assert node.container is not None
        held = self._open.get(node.container, 0)
        if held >= MAX_OPEN:
            if node.container not in self._refused:
                self._refused.add(node.container)
                log.warning(
                    "/proc view: container %s holds %d of its files open, the most one "
                    "may; further opens fail with EMFILE until it closes some",
                    node.container,
                    held,
                )
            raise pyfuse3.FUSEError(errno.EMFILE)
        # The rendering of the GETATTR that came just before (the open's permission
        # check), the one the kernel was told the size of.
        content = node.latest if node.latest is not None else self._render(node)
        self._open[node.container] = held + 1
        fh = next(self._next_handle)
        handle = self._handles[fh] = _Handle(node, content)
        node.handles.add(handle)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @_guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handles[fh]
        content = handle.content
        # From the start (but the open's own rendering, which the kernel was told the
        # length of), or back before the end of a rendering dropped at its end: anew.
        if (off == 0 and not handle.fresh) or (content is None and off < handle.length):
            try:
                content = self._view.render(*handle.node.served())
            except LookupError:  # the container is removed
                raise pyfuse3.FUSEError(errno.ESRCH) from None
            handle.length = len(content)
        handle.fresh = False
        if content is None:  # past the end of what it read to the end
            return b""
        # Kept for the reads that follow; dropped with the last piece.
        handle.content = content if off + size < len(content) else None
        return content[off : off + size]

    @_guarded
    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if handle is None:
            return
        handle.node.handles.discard(handle)
        container = handle.node.container
        assert container is not None
        held = self._open[container] - 1
        if held:
            self._open[container] = held
        else:
            del self._open[container]
            self._refused.discard(container)

    @_guarded
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_files = len(self._nodes)
        data.f_namemax = 255
        return data


__all__ = [
    "CPU_POLICIES",
    "CPU_USAGE_FILES",
    "FILES",
    "MAX_OPEN",
    "MEMORY_FILES",
    "ProcView",
    "Resolver",
    "ViewLimits",
    "available",
    "meminfo_now",
    "parse_cpu_list",
    "visible_cpus",
]

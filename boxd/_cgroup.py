"""Containers' cgroups on pure v2, hybrid and pure v1 hosts.

Detection reads ``/proc/self/mountinfo`` (the cgroup and cgroup2 mounts no later mount
covers) and ``/proc/self/cgroup`` (our own cgroup in each hierarchy).  A controller listed in the v2
hierarchy's ``cgroup.controllers`` is used there, any other on its v1 hierarchy.  A
container's cgroup is made in every hierarchy we use, below our OWN cgroup there (or a
``--cgroup-parent``): ``<own>/boxd/<container-id>``.  No root cgroup's file is ever
written and no existing process is ever moved.  The unified hierarchy is used even when it
holds no controller (a hybrid host): its ``cgroup.kill`` and ``cgroup.freeze`` need none.

On v2 a controller must be enabled in ``cgroup.subtree_control`` of every cgroup from our
own down to the container's parent.  The no-internal-processes rule forbids that in a
cgroup that holds processes (EBUSY), and we never write a root cgroup's files: a
controller that cannot be enabled is listed in :attr:`CgroupHost.unavailable` with the
reason, and limits that need it are refused by :meth:`CgroupHost.validate`.

Device access (:data:`ALLOWED_DEVICES`) is restricted by the v1 devices controller where
it covers the container's cgroup, and otherwise (pure v2, or a hybrid host without it) by
a BPF device program attached to the container's v2 cgroup (:mod:`boxd._devices`).  A
cgroup is never made without one or the other when the host has either.

Sync file I/O on cgroupfs does not block for long, so it runs on the Trio thread.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
from collections.abc import Callable, Iterator, Sequence

from . import _devices
from ._mountinfo import unescape
from ._record import evolve, frozen
from ._syscalls import libc


def _warn(message: str, *args: object) -> None:
    import logging  # here: boxd-runtime create would pay ~2 ms to import it, never to warn

    logging.getLogger("boxd.cgroup").warning(message, *args)


def _debug(message: str, *args: object) -> None:
    import logging  # as _warn

    logging.getLogger("boxd.cgroup").debug(message, *args)


WANTED = ("memory", "cpu", "cpuacct", "pids", "cpuset", "freezer", "blkio", "io", "devices")
# The named v1 hierarchy of a v1 or hybrid host's systemd, with no controller: a container
# gets a cgroup of its own there too, as runc gives it, for a systemd inside to keep its
# services apart in (it will not boot without one).  Not on a pure v2 host, whose
# containers' systemd uses their cgroup2.
SYSTEMD = "name=systemd"
# The device nodes a container may make and open: null, zero, full, random, urandom, tty,
# ptmx and its pts; nothing else, even if CAP_MKNOD makes a node of a disk.
ALLOWED_DEVICES = tuple(
    [
        _devices.parse_rule(rule)
        for rule in (
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
        )
    ]
)
DEFAULT_PIDS_LIMIT = 4096
CPU_PERIOD = 100_000  # microseconds
MIN_MEMORY = 6 << 20  # as Docker: below this the container cannot even start
UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX
KILL_TIMEOUT = 10.0
FREEZE_TIMEOUT = 1.0
REMOVE_TIMEOUT = 2.0
# v1 tells of an OOM as it begins, before its kill is counted: how long the count is
# looked at after each such notice (a kill follows at once; none with --oom-kill-disable).
OOM_COUNT_WAIT = 1.0
_IN_MODIFY = 0x2  # linux/inotify.h
# Beside the containers' cgroups in a v1 cpu hierarchy: where a terminal's reader thread
# waits between its reads in a container's (Cgroup.reading_groups).  Not a container's
# name (_valid_name), so never taken for one.
READERS = ".readers"
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


# The most pids.max takes (the kernel's PID_MAX_LIMIT, 4M pids on 64-bit): above it the
# write fails (EINVAL), so a start or update failed with the kernel's words.
PID_MAX_LIMIT = 1 << 22


class CgroupError(OSError):
    pass


@frozen
class Limits:
    """Resource limits; None leaves a limit as it is (on creation: the kernel's default,
    except ``pids_limit``, which defaults to :data:`DEFAULT_PIDS_LIMIT`).  Values are
    checked by :meth:`CgroupHost.validate`."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # memory + swap (Docker); -1 unlimited swap
    cpus: float | None = None  # cores: quota = cpus * CPU_PERIOD
    cpu_shares: int | None = None  # v1 shares 1..262144 (1 is 2) (v2: shares_to_weight)
    pids_limit: int | None = None  # -1 or 0: unlimited
    cpuset_cpus: str | None = None  # "0-1,3"
    # Docker's other resource options (see :func:`_more_limits`).
    memory_reservation: int | None = None  # bytes: v1 soft limit, v2 memory.low
    memory_swappiness: int | None = None  # 0..100, v1 only
    oom_kill_disable: bool | None = None  # v1 only
    cpu_period: int | None = None  # microseconds, with cpu_quota (instead of cpus)
    cpu_quota: int | None = None  # microseconds per period; -1: no quota
    cpuset_mems: str | None = None  # memory nodes "0-1"
    cpu_rt_period: int | None = None  # microseconds, v1 real-time group scheduling
    cpu_rt_runtime: int | None = None
    blkio_weight: int | None = None  # 10..1000
    # ("MAJ:MIN", value) per block device: a weight, bytes or operations per second.
    blkio_weight_device: tuple[tuple[str, int], ...] | None = None
    device_read_bps: tuple[tuple[str, int], ...] | None = None
    device_write_bps: tuple[tuple[str, int], ...] | None = None
    device_read_iops: tuple[tuple[str, int], ...] | None = None
    device_write_iops: tuple[tuple[str, int], ...] | None = None


@frozen
class Stats:
    """Counters of one container's cgroup; 0 (None for the limit and peak) when the
    host lacks the controller or the kernel the file."""

    memory_usage: int
    memory_limit: int | None  # None: no limit
    memory_peak: int | None
    cpu_user_ns: int
    cpu_system_ns: int
    cpu_total_ns: int
    pids: int
    io_read_bytes: int
    io_write_bytes: int
    # memory.stat as the kernel gives it (v1's or v2's names), for what Docker reads in
    # it: the page cache it takes off the usage (see usage_without_cache).
    memory_stat: dict[str, int] | None = None
    # Its CPU time on each of the host's CPUs (v1's cpuacct.usage_percpu; none on v2),
    # which Docker's stats give as percpu_usage.
    cpu_percpu_ns: tuple[int, ...] = ()

    def usage_without_cache(self) -> int:
        """The memory usage as `docker stats` shows it: less the inactive file cache
        (v1's total_inactive_file, v2's inactive_file), which the kernel drops first."""
        stat = self.memory_stat or {}
        cache = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        return self.memory_usage - cache if cache < self.memory_usage else self.memory_usage


@frozen
class Usage:
    """What a run used (:meth:`Cgroup.usage`): the part of :class:`Stats` that a run's
    summary keeps."""

    cpu_user_ns: int
    cpu_system_ns: int
    memory_peak: int | None


@frozen
class MemoryDetail:
    """What the /proc view's meminfo needs beyond :class:`Stats`: the counters of
    memory.stat in bytes, by their v2 names (v1's hierarchical ``total_*`` counters are
    renamed: total_cache is ``file``, total_rss ``anon`` ...), and swap alone (v1: memsw
    minus memory).  ``limit`` and ``swap_limit`` are those the kernel holds the cgroup to:
    the lowest of its own and its ancestors' (a ``--cgroup-parent`` or the daemon's own
    cgroup limited; v1's ``hierarchical_*`` lines of memory.stat, v2 each memory.max and
    memory.swap.max up to the mount point); None: not limited (or no swap accounting).
    """

    stat: dict[str, int]
    swap_limit: int | None
    swap_usage: int
    usage: int = 0  # as Stats.memory_usage: read here, so that the view needs no stats()
    limit: int | None = None


# v1 memory.stat counter -> its v2 name (v1 has no slab, kernel stack or page table lines).
_V1_STAT = {
    "total_cache": "file",
    "total_rss": "anon",
    "total_rss_huge": "anon_thp",
    "total_shmem": "shmem",
    "total_mapped_file": "file_mapped",
    "total_dirty": "file_dirty",
    "total_writeback": "file_writeback",
    "total_active_anon": "active_anon",
    "total_inactive_anon": "inactive_anon",
    "total_active_file": "active_file",
    "total_inactive_file": "inactive_file",
    "total_unevictable": "unevictable",
}


def parse_cpu_list(text: str) -> set[int]:
    """``0-2,5`` -> {0, 1, 2, 5}; ValueError naming the text when malformed."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"invalid CPU list {text!r}: use e.g. 0-1,3")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ValueError(f"invalid CPU list {text!r}: {part} is backwards")
        cpus.update(range(first, last + 1))
    return cpus


def online_cpus(prefix: str = "") -> set[int]:
    return parse_cpu_list(_read(prefix + "/sys/devices/system/cpu/online"))


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000) with the linear formula of
    runc's ConvertCPUSharesToCgroupV2Value and crun up to their 2025 releases (runc 1.1,
    crun 1.8 on Debian 12): ``1 + (shares - 2) * 9999 // 262142``, so 2 -> 1, 1024 -> 39,
    262144 -> 10000; 1, which v1's kernel takes as 2, -> 1 too.  (Their newer releases use a
    log-scale curve that maps 1024 to 100.)"""
    return 1 + ((max(shares, 2) - 2) * 9999) // 262142


# Cgroup files are read and written with plain fd calls: open(), read_text() and a text
# file object cost three to four more system calls each (fstat, ioctl, lseek) and their
# objects, and a container's start and end read or write some thirty of them.


def _join(path: str, *parts: str) -> str:
    """``path`` with ``parts`` below it, normalized as a Path would be (``.`` adds nothing)."""
    return os.path.normpath(os.path.join(path, *parts))


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _read_opt(path: str) -> str:
    """The file's text, or "" when it does not exist (a controller or kernel without it)."""
    try:
        return _read(path)
    except FileNotFoundError:
        return ""


def _thaw(state: str, thawed: str) -> None:
    """Write a freezer's thawed value; a cgroup already gone (its last process ended and
    the run's end removed it) has nothing frozen left to let go."""
    try:
        _write(state, thawed)
    except CgroupError as exc:
        if exc.errno != errno.ENOENT:
            raise


def _write(path: str, value: str) -> None:
    """One write of ``value`` (the kernel takes a cgroup file's value in one write), with
    the flags of ``open(path, "w")``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _write_each(path: str, values: Sequence[str]) -> None:
    """:func:`_write` of each value in turn, through one open of the file: the kernel takes
    each write as a value of its own (v1 ``devices.allow``: one rule per write)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot open {path}: {exc.strerror}") from None
    try:
        for value in values:
            try:
                os.write(fd, value.encode())
            except OSError as exc:
                raise CgroupError(
                    exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}"
                ) from None
    finally:
        os.close(fd)


def _mkdir(path: str) -> None:
    """Make one cgroup (the kernel fills the directory with its interface files)."""
    try:
        os.mkdir(path)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot create cgroup {path}: {exc.strerror}") from None


def _rmdir(path: str) -> None:
    os.rmdir(path)


def _removed(path: str) -> bool:
    """Remove the cgroup directory ``path``: whether it is gone (False: busy, a process or
    a sub-cgroup still in it)."""
    try:
        _rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise CgroupError(exc.errno, f"cannot remove cgroup {path}: {exc.strerror}") from None
        return False
    return True


def _restrict_devices(path: str, allowed: Sequence[_devices.DeviceRule]) -> None:
    """Attach the program allowing only ``allowed`` to the v2 cgroup ``path``."""
    try:
        _devices.attach(path, _devices.compile_rules(allowed))
    except OSError as exc:
        raise CgroupError(exc.errno, exc.strerror) from None


def _v2_lowest(d: str, mount: str, name: str) -> int | None:
    """The lowest value of the v2 limit file ``name`` ("max": none) in the cgroup ``d`` and
    each one above it up to the mount point, where the hierarchy is seen no further; None
    where none is set.  The kernel holds a cgroup to every ancestor's limit."""
    lowest: int | None = None
    while True:
        raw = _read_opt(f"{d}/{name}").strip()
        if raw not in ("", "max"):
            lowest = int(raw) if lowest is None else min(lowest, int(raw))
        if not d.startswith(f"{mount}/"):
            return lowest
        d = os.path.dirname(d)


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError, IndexError):
            out[key] = int(value.split()[0])
    return out


def _valid_name(name: str) -> bool:
    """[A-Za-z0-9][A-Za-z0-9_.-]{0,254} (without re: boxd-runtime create imports none)."""
    return 0 < len(name) <= 255 and name[0] in _ALNUM and _NAME_CHARS.issuperset(name)


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise ValueError(f"invalid cgroup name {name!r}: use letters, digits, '_', '.', '-'")


def _visible_cgroup_mounts(mountinfo: str, prefix: str) -> list[tuple[str, str, str, str]]:
    """The cgroup and cgroup2 mounts of ``mountinfo`` that a path reaches, in its order:
    (mount point, root in the hierarchy, type, super options).  A mount made later on the
    same mount point, or on a directory above it, hides it, unless that later mount is
    one it sits on (its parents by id): a private mount namespace may cover a hierarchy
    with an empty tmpfs, or /sys/fs/cgroup with the unified hierarchy alone, whose v1
    mounts mountinfo still lists below it."""
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        mounts.append(
            (
                fields[0],  # its id
                fields[1],  # the id of the mount it sits on
                prefix + unescape(fields[4]),
                unescape(fields[3]),
                fields[sep + 1],
                fields[sep + 3],
            )
        )
    parent_of = {mount[0]: mount[1] for mount in mounts}
    found = []
    for i, (mount_id, _, point, root, fstype, superopts) in enumerate(mounts):
        if fstype not in ("cgroup", "cgroup2"):
            continue
        below: set[str] = set()  # the mounts it sits on
        at = parent_of.get(mount_id)
        while at is not None and at not in below and at != mount_id:
            below.add(at)
            at = parent_of.get(at)
        if not any(
            (point == later or point.startswith(later.rstrip("/") + "/")) and later_id not in below
            for later_id, _, later, *_ in mounts[i + 1 :]
        ):
            found.append((point, root, fstype, superopts))
    return found


def _parent_parts(parent: str) -> tuple[str, ...]:
    """The directories of a parent; ``/`` alone is each hierarchy's root (containers'
    cgroups are then made directly in it, and its own files are never written)."""
    parts = tuple([p for p in parent.split("/") if p])
    if (not parts and parent != "/") or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid --cgroup-parent {parent!r}: use a path such as boxd or /boxd")
    return parts


@frozen
class Hierarchy:
    """One mounted hierarchy we create container cgroups in."""

    version: int  # 1 or 2
    controllers: frozenset[str]  # the controllers we use there
    mount: str  # where the hierarchy is mounted here
    base: str  # containers' cgroups are made here: <mount>/<own path>/boxd (or the parent)
    start: str  # the existing cgroup base is made below: our own, or the mount point
    start_is_root: bool  # start is the hierarchy's root cgroup (its files are never written)
    mount_is_root: bool = False  # the mount point shows the hierarchy's root cgroup

    def chain(self) -> list[str]:
        """``start`` and each directory from it down to ``base``."""
        dirs = [self.start]
        below = os.path.relpath(self.base, self.start)
        for part in below.split("/") if below != "." else ():
            dirs.append(f"{dirs[-1]}/{part}")
        return dirs


def _v2_unavailable(h: Hierarchy, offered: set[str]) -> dict[str, str]:
    """Controllers that cannot be enabled down the chain to ``h.base``, with the reason.

    Directories that do not exist yet will be ours, empty, and writable."""
    missing: dict[str, str] = {}
    candidates = set(offered)
    for d in h.chain():
        if not os.path.isdir(d):
            break
        todo = candidates - set(_read_opt(f"{d}/cgroup.subtree_control").split())
        if not todo:
            continue
        if d == h.start and h.start_is_root:
            why = "it is the root cgroup, whose files boxd never writes"
        elif _read_opt(f"{d}/cgroup.procs").split():
            why = (
                "that cgroup has processes (the no-internal-processes rule); run boxd in a "
                "cgroup of its own whose parent enables it, or choose --cgroup-parent"
            )
        else:
            here = set(_read_opt(f"{d}/cgroup.controllers").split())
            why = "its parent does not enable it" if todo - here else ""
            todo -= here
        for c in todo:
            missing[c] = f"{c} is not enabled in {d}/cgroup.subtree_control: {why}"
        candidates -= todo
    return missing


class CgroupHost:
    """The cgroup hierarchies of this host, detected once; makes and finds containers'
    cgroups.  ``unavailable`` maps controllers that exist but cannot be used to why."""

    def __init__(
        self,
        hierarchies: list[Hierarchy],
        mode: str,
        *,
        unavailable: dict[str, str] | None = None,
        prefix: str = "",
        owns_base: bool = True,
        v2_mount: str | None = None,
    ) -> None:
        self.hierarchies = hierarchies
        self.mode = mode
        # Where the unified (v2) hierarchy is mounted here, if it is.
        self.v2_mount = v2_mount
        self.unavailable = unavailable or {}
        self._prefix = prefix
        # Directories this host made above containers' cgroups: removed once empty.
        self._made: set[str] = {h.base for h in hierarchies} if owns_base else set()
        # The readers' cgroup in a v1 cpu hierarchy (Cgroup.reading_groups makes it when a
        # terminal is first read), also one a killed daemon left.
        self._made |= {
            f"{h.base}/{READERS}" for h in hierarchies if h.version == 1 and "cpu" in h.controllers
        }
        # Hierarchies whose parent directories are made (and, on v2, their controllers
        # enabled): done once per host, not per container.
        self._prepared: set[Hierarchy] = set()
        # False: each Cgroup.remove also removes the empty parents (boxd-runtime: one
        # container per process).  True: they stay for the next container until
        # :meth:`remove_parents` (a supervisor, when it closes).
        self.keep_parents = False

    @classmethod
    def detect(
        cls,
        *,
        parent: str | None = None,
        mountinfo: str = "/proc/self/mountinfo",
        own_cgroup: str = "/proc/self/cgroup",
        prefix: str = "",
        name: str = "boxd",
    ) -> CgroupHost:
        """Find the hierarchies.  Containers' cgroups go below ``<own>/<name>``, or below
        ``parent``: relative to our own cgroup, or absolute from each hierarchy's root.
        ``mountinfo``, ``own_cgroup`` and ``prefix`` (the filesystem root, prepended to
        mount points and /sys paths) let tests describe a fake host."""
        below: tuple[str, ...] = _parent_parts(parent) if parent else (name,)
        absolute = bool(parent and parent.startswith("/"))
        own: dict[str, str] = {}
        for line in _read(own_cgroup).splitlines():
            hier_id, controllers, path = line.split(":", 2)
            if hier_id == "0":
                own["unified"] = path
            for c in controllers.split(","):
                own[c] = path
        v1: dict[str, tuple[str, str]] = {}
        v2: tuple[str, str] | None = None
        for mountpoint, mount_root, fstype, superopts in _visible_cgroup_mounts(
            _read(mountinfo), prefix
        ):
            if fstype == "cgroup2":
                v2 = (mountpoint, mount_root)
            else:
                for opt in superopts.split(","):
                    if opt in WANTED or opt == SYSTEMD:
                        v1[opt] = (mountpoint, mount_root)

        def hierarchy(version: int, names: set[str], mount: str, root: str, path: str) -> Hierarchy:
            if absolute:
                start, start_is_root = mount, root == "/"
            else:
                inside = path == root or path.startswith(root.rstrip("/") + "/")
                start = _join(mount, os.path.relpath(path, root)) if inside else mount
                start_is_root = root == "/" and (path == "/" or not inside)
            return Hierarchy(
                version,
                frozenset(names),
                mount,
                _join(start, *below),
                start,
                start_is_root,
                mount_is_root=root == "/",
            )

        hierarchies: list[Hierarchy] = []
        unavailable: dict[str, str] = {}
        used_v2: set[str] = set()
        if v2 is not None and "unified" in own:
            mount, root = v2
            h = hierarchy(2, set(), mount, root, own["unified"])
            # Every controller bound to v2 is listed at the mount point; ours is a subset.
            listed = _read_opt(f"{mount}/cgroup.controllers") + _read_opt(
                f"{h.start}/cgroup.controllers"
            )
            used_v2 = set(listed.split()) & set(WANTED)
            unavailable = _v2_unavailable(h, used_v2)
            hierarchies.append(evolve(h, controllers=frozenset(used_v2 - set(unavailable))))
        seen: dict[str, set[str]] = {}
        for controller, (mount, _root) in v1.items():
            if controller in used_v2 or controller not in own:
                continue
            seen.setdefault(mount, set()).add(controller)
        if all(names == {SYSTEMD} for names in seen.values()):
            seen = {}  # no v1 controller: the layout and the containers' systemd are v2's
        for mount, names in seen.items():
            any_c = next(iter(names))
            hierarchies.append(hierarchy(1, names, mount, v1[any_c][1], own[any_c]))
        if not hierarchies:
            why = "no cgroup hierarchy is mounted"
            if own:  # the kernel has them: this mount namespace hides them
                why += (
                    f" in this mount namespace, though {own_cgroup} lists hierarchies "
                    "(`ip netns exec` mounts a new /sys without them: enter a network "
                    "namespace with `nsenter --net=/run/netns/NAME`)"
                )
            raise CgroupError(errno.ENOENT, why)
        has_v1 = any(h.version == 1 for h in hierarchies)
        mode = "v2" if not has_v1 else ("hybrid" if v2 is not None else "v1")
        return cls(
            hierarchies,
            mode,
            unavailable=unavailable,
            prefix=prefix,
            owns_base=not parent,
            v2_mount=v2[0] if v2 is not None else None,
        )

    def below(self, parent: str) -> CgroupHost:
        """The host of the containers run with ``--cgroup-parent PARENT``: an absolute
        PARENT from each hierarchy's root, as Docker's cgroupfs driver takes it, a relative
        one below this host's base.  The directories it makes go with the last container
        in them; on v2 a controller that cannot be enabled down to PARENT is unavailable
        there (its limits are refused by name, as :meth:`detect` does)."""
        parts = _parent_parts(parent)
        hierarchies = []
        unavailable = dict(self.unavailable)
        ours: set[str] = set()  # below our own base: boxd's, whoever made them
        for h in self.hierarchies:
            if parent.startswith("/"):
                h = evolve(
                    h, start=h.mount, start_is_root=h.mount_is_root, base=_join(h.mount, *parts)
                )
            else:
                ours.update(_join(h.base, *parts[:n]) for n in range(1, len(parts) + 1))
                h = evolve(h, base=_join(h.base, *parts))
            if h.version == 2:
                lost = _v2_unavailable(h, set(h.controllers))
                unavailable.update(lost)
                h = evolve(h, controllers=h.controllers - set(lost))
            hierarchies.append(h)
        host = CgroupHost(
            hierarchies,
            self.mode,
            unavailable=unavailable,
            prefix=self._prefix,
            owns_base=False,
            v2_mount=self.v2_mount,
        )
        host._made |= ours  # also those an earlier daemon made (live restore)
        return host

    def controllers(self) -> dict[str, str]:
        """Usable controllers -> "v1" or "v2"."""
        return {c: f"v{h.version}" for h in self.hierarchies for c in h.controllers}

    def validate(self, limits: Limits) -> None:
        """Refuse bad values, and limits this host cannot enforce, before anything exists."""
        if limits.memory is not None and limits.memory < MIN_MEMORY:
            raise ValueError(f"invalid --memory {limits.memory}: the minimum is 6m ({MIN_MEMORY})")
        swap = limits.memory_swap
        if swap is not None and swap != -1:
            if swap <= 0:
                raise ValueError(f"invalid --memory-swap {swap}: use -1 or a positive size")
            if limits.memory is None:
                raise ValueError(f"invalid --memory-swap {swap}: it needs --memory")
            if swap < limits.memory:
                raise ValueError(
                    f"invalid --memory-swap {swap}: must be at least --memory {limits.memory}"
                )
        if limits.cpus is not None:
            n = len(online_cpus(self._prefix))
            if not math.isfinite(limits.cpus) or not 0.01 <= limits.cpus <= n:
                raise ValueError(f"invalid --cpus {limits.cpus}: the range is 0.01 to {n}")
        if limits.cpu_shares is not None and not 1 <= limits.cpu_shares <= 262144:
            raise ValueError(f"invalid --cpu-shares {limits.cpu_shares}: use 1 to 262144")
        if limits.pids_limit is not None and not -1 <= limits.pids_limit <= PID_MAX_LIMIT:
            raise ValueError(
                f"invalid --pids-limit {limits.pids_limit}: use 1 to {PID_MAX_LIMIT}, or 0 or -1 "
                "for no limit"
            )
        if limits.cpuset_cpus is not None:
            online = online_cpus(self._prefix)
            extra = parse_cpu_list(limits.cpuset_cpus) - online
            if extra:
                raise ValueError(
                    f"invalid --cpuset-cpus {limits.cpuset_cpus!r}: CPU {min(extra)} is not "
                    f"online (online: {_cpu_list(online)})"
                )
        _validate_more(limits, self._prefix)
        self._check_available(limits)
        self._check_rt(limits)

    def _check_available(self, limits: Limits) -> None:
        needs = {
            "memory": limits.memory is not None
            or limits.memory_swap is not None
            or limits.memory_reservation is not None,
            "cpu": limits.cpus is not None
            or limits.cpu_shares is not None
            or limits.cpu_quota is not None
            or limits.cpu_period is not None,
            "cpuset": limits.cpuset_cpus is not None or limits.cpuset_mems is not None,
            "pids": limits.pids_limit is not None and limits.pids_limit > 0,
            "blkio": any(getattr(limits, f) for f in _THROTTLES),
        }
        have = self.controllers()
        for controller, needed in needs.items():
            if controller == "blkio" and "io" in have:
                continue
            if needed and controller not in have:
                why = self.unavailable.get(controller, "no hierarchy of this host has it")
                raise ValueError(f"the {controller} controller is unavailable: {why}")

    def _cpu_v1_start(self) -> str | None:
        """Our own cgroup (or the mount point) in the v1 hierarchy of cpu, if cpu is there."""
        h = next((h for h in self.hierarchies if "cpu" in h.controllers), None)
        return h.start if h is not None and h.version == 1 else None

    def _check_rt(self, limits: Limits) -> None:
        """Real-time group scheduling exists only on v1, in a kernel built with it."""
        for option, value in (
            ("--cpu-rt-period", limits.cpu_rt_period),
            ("--cpu-rt-runtime", limits.cpu_rt_runtime),
        ):
            start = self._cpu_v1_start()
            if value is not None and (
                start is None or not os.path.exists(f"{start}/cpu.rt_runtime_us")
            ):
                raise ValueError(
                    f"invalid {option} {value}: this kernel has no real-time group scheduling "
                    "(no cpu.rt_runtime_us in the cpu cgroup; cgroup v2 has none)"
                )

    def ignored(self, limits: Limits) -> tuple[dict[str, str], list[str]]:
        """What Docker accepts but a host like this one cannot apply: {field of
        :class:`Limits`: why} (Docker drops those with a warning; an OCI runtime refuses
        them), and warnings about limits that do apply."""
        drop: dict[str, str] = {}
        notes: list[str] = []
        have = self.controllers()
        mem_v1 = have.get("memory") == "v1"
        if limits.memory_swappiness is not None and not mem_v1:
            drop["memory_swappiness"] = "this host's memory cgroup (v2) has no swappiness"
        if limits.oom_kill_disable and not mem_v1:
            drop["oom_kill_disable"] = (
                "this host's memory cgroup (v2) cannot turn the OOM killer off"
            )
        elif limits.oom_kill_disable and limits.memory is None:
            notes.append(
                "the OOM killer is disabled for the container but no --memory limit is set: "
                "it may exhaust the host's memory"
            )
        if limits.blkio_weight is not None or limits.blkio_weight_device is not None:
            where = self._blkio_start()
            if where is None or _weight_file(*where) is None:
                why = (
                    "this host's block I/O cgroup has no weight file (the disks' I/O "
                    "schedulers have no proportional weight: neither CFQ nor BFQ)"
                )
                if limits.blkio_weight is not None:
                    drop["blkio_weight"] = why
                if limits.blkio_weight_device is not None:
                    drop["blkio_weight_device"] = why
        return drop, notes

    def _blkio_start(self) -> tuple[str, int] | None:
        """A cgroup of the block I/O hierarchy that shows its interface files (our own
        v1 cgroup or mount point; on v2 the first non-root cgroup down to the base)."""
        for h in self.hierarchies:
            if h.version == 1 and "blkio" in h.controllers:
                return h.start, 1
            if h.version == 2 and "io" in h.controllers:
                dirs = h.chain()[1:] if h.start_is_root else h.chain()
                found = [d for d in dirs if os.path.isdir(d)]
                return (found[0], 2) if found else None
        return None

    def _prepare(self, h: Hierarchy) -> None:
        """Make the directories down to ``h.base``; on v2 enable our controllers in each
        (never in a root cgroup: :func:`_v2_unavailable` left out what that would need).
        A v1 cpuset ``base`` made here has cgroup.clone_children set: a container's cgroup
        is then born with its CPUs and memory nodes, where writing them takes ~0.4 ms (a
        v1 cpuset.cpus write rebuilds the scheduler's domains)."""
        for d in h.chain()[1:]:
            if not os.path.isdir(d):
                _mkdir(d)
                self._made.add(d)
            if h.version == 1 and "cpuset" in h.controllers:
                _copy_cpuset(d)
        if h.version == 1 and "cpuset" in h.controllers and h.base in self._made:
            _write(f"{h.base}/cgroup.clone_children", "1")
        if h.version == 2 and h.controllers:
            for d in h.chain():
                if d == h.start and h.start_is_root:
                    continue
                need = h.controllers - set(_read_opt(f"{d}/cgroup.subtree_control").split())
                if need:
                    _write(f"{d}/cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(need)))

    def joined(self, limits: Limits) -> list[Hierarchy]:
        """The hierarchies a container with ``limits`` needs: those that carry a limit or
        a counter boxd reads, the device allowlist, and the v2 one (cgroup.kill,
        cgroup.freeze); the v1 cpuset even without a cpuset limit (a JVM finds no container
        limit at all in a v1 /sys/fs/cgroup without one) and the v1 ``name=systemd``
        (:data:`SYSTEMD`), not the v1 freezer beside a v2 hierarchy (whose cgroup.freeze
        :meth:`Cgroup.freeze` uses)."""
        optional = set()
        if any(h.version == 2 for h in self.hierarchies):
            optional.add("freezer")
        return [h for h in self.hierarchies if h.version == 2 or not h.controllers <= optional]

    def view(self, name: str, limits: Limits) -> tuple[tuple[str, str], ...] | None:
        """:meth:`Cgroup.view` of the cgroup :meth:`create` makes for ``name`` and
        ``limits`` (for a mount table built before the cgroup is made)."""
        _check_name(name)
        return Cgroup(self, name, self.joined(limits)).view()

    def create(
        self, name: str, limits: Limits, devices: Sequence[_devices.DeviceRule] = ()
    ) -> Cgroup:
        """Make the container's cgroup in the hierarchies it needs (:meth:`joined`) and
        apply ``limits`` (call :meth:`validate` first for the values); its device access is
        :data:`ALLOWED_DEVICES` and ``devices``.  Nothing is left behind on failure."""
        return next(cg for cg in self.creation(name, limits, devices) if cg is not None)

    def creation(
        self, name: str, limits: Limits, devices: Sequence[_devices.DeviceRule] = ()
    ) -> Iterator[Cgroup | None]:
        """:meth:`create` in steps: None after each hierarchy's directory and files (an
        event loop runs other tasks in between: the system calls of one hierarchy take
        a tenth to a third of a millisecond), then the cgroup; closed before that, it
        removes what it made."""
        _check_name(name)
        allowed = ALLOWED_DEVICES + tuple(devices)
        self._check_available(limits)
        if limits.pids_limit is None and "pids" in self.controllers():
            limits = evolve(limits, pids_limit=DEFAULT_PIDS_LIMIT)
        joined = self.joined(limits)
        cg = Cgroup(self, name, joined)
        made: list[str] = []
        v1_devices = self.controllers().get("devices") == "v1"
        try:
            for h in joined:
                d = f"{h.base}/{name}"
                if h not in self._prepared:
                    self._prepare(h)
                    self._prepared.add(h)
                try:
                    _mkdir(d)
                except CgroupError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    self._prepare(h)  # a parent was removed since (remove_parents)
                    _mkdir(d)
                made.append(d)
                if h.version == 1 and "cpuset" in h.controllers:
                    _copy_cpuset(d)
                if h.version == 1 and "devices" in h.controllers:
                    _write(f"{d}/devices.deny", "a")
                    _write_each(f"{d}/devices.allow", [str(rule) for rule in allowed])
                if h.version == 2 and not v1_devices:
                    _restrict_devices(d, allowed)
                yield None
            cg.update(limits, new=True)
        except BaseException:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    _rmdir(d)
            self.remove_parents()
            raise
        yield cg

    def open(self, name: str) -> Cgroup:
        """The cgroup of container ``name``, in the hierarchies where it exists (it may be
        gone: reads then fail, and :meth:`Cgroup.remove` does nothing)."""
        _check_name(name)
        found = [h for h in self.hierarchies if os.path.isdir(f"{h.base}/{name}")]
        return Cgroup(self, name, found or self.hierarchies)

    def list_children(self) -> list[str]:
        """Names of the containers' cgroups on disk below our parent, in any hierarchy."""
        names: set[str] = set()
        for h in self.hierarchies:
            with contextlib.suppress(FileNotFoundError):
                names.update(e.name for e in os.scandir(h.base) if e.is_dir())
        return sorted(n for n in names if _valid_name(n))

    def remove_parents(self) -> None:
        """Remove the empty directories this host made above containers' cgroups (those
        still holding a container's cgroup stay)."""
        for d in sorted(self._made, key=lambda p: p.count("/"), reverse=True):
            try:
                _rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    _warn("cannot remove cgroup %s: %s", d, exc.strerror)


def _tree_procs(d: str) -> list[int]:
    """The pids of cgroup ``d`` and of its sub-cgroups (none unless a container made some).
    Never our own: a terminal's reader thread of ours reads in the container's v1 cpu
    cgroup (:meth:`Cgroup.reading_groups`), which lists our pid meanwhile."""
    own = str(os.getpid())
    pids = [int(p) for p in _read_opt(f"{d}/cgroup.procs").split() if p != own]
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(d):
            if entry.is_dir(follow_symlinks=False):
                pids += _tree_procs(entry.path)
    return pids


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _copy_cpuset(d: str) -> None:
    """v1: a new cpuset cgroup starts with no CPUs and no memory nodes (unless its parent
    has cgroup.clone_children set, which is written only in a directory boxd made: never
    a root cgroup), and no process can join it until it has some; copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _read(f"{d}/{name}").strip():
            _write(f"{d}/{name}", _read(f"{os.path.dirname(d)}/{name}").strip())


class Cgroup:
    """One container's cgroup, a directory in each hierarchy of its host."""

    def __init__(self, host: CgroupHost, name: str, hierarchies: list[Hierarchy]) -> None:
        self.name = name
        self._host = host
        self._dirs = {h: f"{h.base}/{name}" for h in hierarchies}

    @property
    def paths(self) -> dict[str, str]:
        """Hierarchy ("unified", or a v1 hierarchy's controllers) -> directory."""
        return {
            "unified" if h.version == 2 else ",".join(sorted(h.controllers)): str(d)
            for h, d in self._dirs.items()
        }

    def view(self) -> tuple[tuple[str, str], ...] | None:
        """What the container's /sys/fs/cgroup shows on a host with v1 hierarchies (see
        :func:`boxd._rootfs.cgroup_ops`): (the host's name of each hierarchy's directory,
        ``unified`` for the v2 one, and the container's own cgroup there), only for the
        hierarchies it has a cgroup of its own in.  None on a pure v2 host, where the
        container mounts its own cgroup2 in its cgroup namespace."""
        if self._host.mode == "v2":
            return None
        return tuple(
            [
                ("unified" if h.version == 2 else os.path.basename(h.mount), str(d))
                for h, d in self._dirs.items()
            ]
        )

    def _hierarchy(self, controller: str) -> tuple[Hierarchy, str] | None:
        """The hierarchy holding ``controller`` and this cgroup's directory in it."""
        return next(((h, d) for h, d in self._dirs.items() if controller in h.controllers), None)

    def _dir(self, controller: str) -> tuple[str, int] | None:
        found = self._hierarchy(controller)
        return None if found is None else (found[1], found[0].version)

    def _v2(self) -> str | None:
        return next((d for h, d in self._dirs.items() if h.version == 2), None)

    def add(self, pid: int) -> None:
        """Place ``pid`` (a new process, waiting before exec) in every hierarchy."""
        for d in self._dirs.values():
            _write(f"{d}/cgroup.procs", str(pid))

    def for_exec(self, init_pid: int) -> Cgroup:
        """Where a process exec'd in the container joins: this cgroup, but in the v2
        hierarchy the init's own cgroup where this one enables controllers for its
        children (a systemd inside moved its processes below it and did so, as it does on
        a pure v2 host with a writable cgroup: no process may join it then, EBUSY), as
        runc falls back to it."""
        v2 = self._v2()
        if v2 is None or not _read_opt(f"{v2}/cgroup.subtree_control").split():
            return self
        own = _read_opt(f"{self._host._prefix}/proc/{init_pid}/cgroup")
        path = next((line[3:] for line in own.splitlines() if line.startswith("0::")), "")
        _, found, below = path.partition(f"/{self.name}/")
        if not found or not os.path.isdir(f"{v2}/{below}"):
            return self
        moved = Cgroup(self._host, self.name, [])
        moved._dirs = {h: f"{v2}/{below}" if d == v2 else d for h, d in self._dirs.items()}
        return moved

    @contextlib.contextmanager
    def placement(self) -> Iterator[tuple[tuple[tuple[int, str], ...], int]]:
        """What a new process needs to place itself in this cgroup as it starts
        (``SpawnPlan.cgroup_tasks`` and ``cgroup_dir``): each v1 hierarchy's ``tasks``
        file opened for writing, with its path, and the v2 directory opened (-1: none).
        Closed on exit; the spawned process holds its own copies by then.

        Why not :meth:`add`: moving another process in v1 takes the kernel's global
        cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (1-20 ms
        here, on the event loop's thread); a process writing "0" to ``tasks`` moves itself
        without it, and clone3's CLONE_INTO_CGROUP creates it in the v2 cgroup."""
        opened: list[int] = []
        try:
            tasks: list[tuple[int, str]] = []
            v2 = -1
            for h, d in self._dirs.items():
                path = f"{d}/tasks" if h.version == 1 else d
                flags = os.O_WRONLY if h.version == 1 else os.O_RDONLY | os.O_DIRECTORY
                try:
                    fd = os.open(path, flags | os.O_CLOEXEC)
                except OSError as exc:
                    raise CgroupError(exc.errno, f"cannot open {path}: {exc.strerror}") from None
                opened.append(fd)
                if h.version == 1:
                    tasks.append((fd, str(path)))
                else:
                    v2 = fd
            yield tuple(tasks), v2
        finally:
            for fd in opened:
                os.close(fd)

    @contextlib.contextmanager
    def reading_groups(self) -> Iterator[tuple[int, int] | None]:
        """For the thread that reads the container's terminal (sandbox_native.gather_read):
        the ``tasks`` files of the container's v1 cpu cgroup and of the readers' own
        (:data:`READERS` in the host's cpu base, made here) open for writing, closed on exit.
        A terminal's every 4 KiB is a hand-off between the container's writer and that
        reader, and across two CPU groups the scheduler serves it ~30% later.  None where
        the container has no v1 cpu cgroup of its own (v2 places processes, not threads) or
        one that also holds other controllers, or when one cannot be opened."""
        h = next(
            (h for h in self._dirs if h.version == 1 and "cpu" in h.controllers),
            None,
        )
        if h is None or not h.controllers <= {"cpu", "cpuacct"}:
            yield None
            return
        home = f"{h.base}/{READERS}"
        opened: list[int] = []
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(home)  # removed with the host's other parents (see CgroupHost)
            for d in (self._dirs[h], home):
                opened.append(os.open(f"{d}/tasks", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in opened:
                os.close(fd)
            yield None
            return
        try:
            yield opened[0], opened[1]
        finally:
            for fd in opened:
                os.close(fd)

    def update(self, limits: Limits, *, new: bool = False) -> None:
        """Apply the limits that are not None, all or none: memory first (the write that
        fails when usage is above the new limit), and on any failure the files already
        written get their old values back (not for a ``new`` cgroup, which its creator
        removes then: no old value is read)."""
        undo: list[tuple[str, str]] = []

        def put(path: str, value: str) -> None:
            old = "" if new else _read_opt(path).strip()
            _write(path, value)
            if old:
                undo.append((path, old))

        try:
            if limits.cpuset_cpus is not None and self._dir("cpuset") is None:
                self._join_cpuset()
            mem = self._dir("memory")
            if mem is not None:
                if mem[1] == 1:
                    _v1_memory(mem[0], limits, put)
                else:
                    _v2_memory(mem[0], limits, put, new=new)
            cpu = self._dir("cpu")
            if cpu is not None:
                d, v = cpu
                if limits.cpus is not None:
                    quota = round(limits.cpus * CPU_PERIOD)
                    if v == 1:
                        put(f"{d}/cpu.cfs_period_us", str(CPU_PERIOD))
                        put(f"{d}/cpu.cfs_quota_us", str(quota))
                    else:
                        put(f"{d}/cpu.max", f"{quota} {CPU_PERIOD}")
                if limits.cpu_shares is not None:
                    if v == 1:
                        put(f"{d}/cpu.shares", str(limits.cpu_shares))
                    else:
                        put(f"{d}/cpu.weight", str(shares_to_weight(limits.cpu_shares)))
            pids = self._dir("pids")
            if pids is not None and limits.pids_limit is not None:
                n = limits.pids_limit
                put(f"{pids[0]}/pids.max", "max" if n <= 0 else str(n))
            cpuset = self._dir("cpuset")
            if cpuset is not None and limits.cpuset_cpus is not None:
                put(f"{cpuset[0]}/cpuset.cpus", limits.cpuset_cpus)
            _more_limits(self, limits, put)
        except BaseException:
            for path, old in reversed(undo):
                with contextlib.suppress(OSError):
                    _write(path, old)
            raise

    def _join_cpuset(self) -> None:
        """A cpuset limit for a container made without a v1 cpuset cgroup (by a boxd before
        :meth:`CgroupHost.joined` took the cpuset always, and still running): its cgroup
        in the v1 cpuset hierarchy, and its processes moved there."""
        h = next((h for h in self._host.hierarchies if "cpuset" in h.controllers), None)
        if h is None or h.version != 1:
            return
        d = f"{h.base}/{self.name}"
        if not os.path.isdir(d):
            self._host._prepare(h)
            _mkdir(d)
            _copy_cpuset(d)
        self._dirs[h] = d
        # Until none is left out: one forked meanwhile was born in its parent's old cpuset.
        for _ in range(10):
            inside = set(_read_opt(f"{d}/cgroup.procs").split())
            missing = [p for p in map(str, self.procs()) if p not in inside]
            if not missing:
                break
            for pid in missing:
                with contextlib.suppress(ProcessLookupError, CgroupError):
                    _write(f"{d}/cgroup.procs", pid)

    def procs(self) -> list[int]:
        """Pids (in our pid namespace) of every process in the cgroup and below it (a
        ``--privileged`` container may nest cgroups).  One hierarchy tells: a process is in
        all of them once it runs, and joins the v2 one first (it is born there), else the
        v1 ones in this order (Cgroup.placement, add)."""
        first = self._v2() or next(iter(self._dirs.values()), None)
        if first is None:
            return []
        return sorted(_tree_procs(first))

    async def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Every process in the cgroup gets ``sig``; for SIGKILL, again until none is left
        (at most KILL_TIMEOUT seconds).  v2 ``cgroup.kill`` where the kernel has it (5.14),
        else freeze, signal each pid, thaw, so nothing forks past the list."""
        import trio  # here: boxd-runtime's create and delete use this module without Trio

        v2 = self._v2()
        kill_file = f"{v2}/cgroup.kill" if v2 is not None else None
        with trio.move_on_after(KILL_TIMEOUT):
            while self.procs():
                # A lookup in a cgroup file system waits for no disk (nor does _write).
                if sig == signal.SIGKILL and kill_file and os.path.exists(kill_file):  # noqa: ASYNC240
                    _write(kill_file, "1")
                else:
                    await self._signal_frozen(sig)
                if sig != signal.SIGKILL:
                    return
                await trio.sleep(0.01)
            return
        _warn("cgroup %s: %s survived SIGKILL", self.name, self.procs())

    def _freezer(self) -> tuple[str, str, str, Callable[[], bool]] | None:
        """(state file, frozen value, thawed value, is-frozen test): v2 ``cgroup.freeze``
        where the unified hierarchy has it (it needs no controller), else the v1 freezer."""
        v2 = self._v2()
        if v2 is not None and os.path.exists(f"{v2}/cgroup.freeze"):
            events = f"{v2}/cgroup.events"
            return (
                f"{v2}/cgroup.freeze",
                "1",
                "0",
                lambda: _keyed(_read_opt(events)).get("frozen") == 1,
            )
        freezer = self._dir("freezer")
        if freezer is not None:
            state = f"{freezer[0]}/freezer.state"
            return state, "FROZEN", "THAWED", lambda: _read_opt(state).strip() == "FROZEN"
        return None

    async def freeze(self) -> None:
        """Freeze every process of the cgroup (``pause``); returns once the kernel says it
        is frozen.  CgroupError when the host has no freezer or the freeze does not
        complete within FREEZE_TIMEOUT (then it is thawed again)."""
        import trio  # here: boxd-runtime's create and delete use this module without Trio

        freezer = self._freezer()
        if freezer is None:
            raise CgroupError(
                errno.ENOTSUP,
                "cannot pause: this host has neither cgroup v2's cgroup.freeze nor the v1 "
                "freezer controller",
            )
        state, frozen, thawed, done = freezer
        _write(state, frozen)
        with trio.move_on_after(FREEZE_TIMEOUT):
            # The kernel tells of a finished freeze only by a change of a file: poll.
            while not done():  # noqa: ASYNC110
                await trio.sleep(0.005)
            return
        _thaw(state, thawed)
        raise CgroupError(errno.EBUSY, f"cgroup {self.name} did not freeze in {FREEZE_TIMEOUT}s")

    def thaw(self) -> None:
        """Let the processes of a frozen cgroup run again (``unpause``)."""
        freezer = self._freezer()
        if freezer is not None:
            _thaw(freezer[0], freezer[2])

    async def _signal_frozen(self, sig: int) -> None:
        import trio  # here: boxd-runtime's create and delete use this module without Trio

        freezer = self._freezer()
        if freezer is None:
            self._signal(sig)
            return
        state, frozen, thawed, done = freezer
        _write(state, frozen)
        try:
            with trio.move_on_after(FREEZE_TIMEOUT):
                while not done():  # noqa: ASYNC110
                    await trio.sleep(0.005)
            self._signal(sig)
        finally:
            _thaw(state, thawed)

    def freeze_state(self) -> tuple[str, str] | None:
        """(state file, its value while frozen) of the freezer :meth:`freeze` uses, or None
        without one: for a reader of the state without this class (boxd-runtime)."""
        freezer = self._freezer()
        return None if freezer is None else (str(freezer[0]), freezer[1])

    def frozen(self) -> bool:
        """Whether the cgroup is frozen or being frozen (:meth:`freeze`)."""
        freezer = self._freezer()
        return freezer is not None and _read_opt(freezer[0]).strip() in (freezer[1], "FREEZING")

    def _signal(self, sig: int) -> None:
        for pid in self.procs():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def remove(self) -> None:
        """Kill what is left, remove the directories (children first), then the host's
        parents if now empty.  Idempotent: nothing happens when it is already gone."""
        import trio  # here: boxd-runtime's create and delete use this module without Trio

        if self.procs():
            await self.kill_all()
        # A killed process leaves its cgroups a moment after it is gone from cgroup.procs.
        removed = False
        with trio.move_on_after(REMOVE_TIMEOUT):
            while not self._rmdir_all():  # noqa: ASYNC110
                await trio.sleep(0.01)
            removed = True
        left = [] if removed else [d for d in self._dirs.values() if os.path.exists(d)]  # noqa: ASYNC240
        if left:
            _warn("cgroup %s could not be removed: %s", self.name, left)
        if not self._host.keep_parents:
            self._host.remove_parents()

    def _rmdir_all(self) -> bool:
        """One pass over every directory (sub-cgroups first); False if one is busy."""
        done = True
        for top in self._dirs.values():
            if _removed(top):  # the usual case: no sub-cgroup, nothing left inside
                continue
            for sub, _, _ in os.walk(top, topdown=False):
                done = _removed(sub) and done
        return done

    def stats(self) -> Stats:
        """Counters, readable until :meth:`remove` (also after the processes are gone)."""
        usage = 0
        limit = peak = None
        user = system = total = 0
        pids = io_r = io_w = 0
        memory_stat = None
        mem = self._dir("memory")
        if mem is not None:
            d, v = mem
            pairs = (line.split() for line in _read_opt(f"{d}/memory.stat").splitlines())
            memory_stat = {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}
            if v == 1:
                usage = int(_read(f"{d}/memory.usage_in_bytes"))
                limit = int(_read(f"{d}/memory.limit_in_bytes"))
                peak = int(_read(f"{d}/memory.max_usage_in_bytes"))
            else:
                usage = int(_read(f"{d}/memory.current"))
                raw = _read(f"{d}/memory.max").strip()
                limit = None if raw == "max" else int(raw)
                peak = _v2_peak(d)
        user, system, total = self._cpu_times(total=True)
        acct = self._dir("cpuacct")
        percpu = _read_opt(f"{acct[0]}/cpuacct.usage_percpu").split() if acct else []
        pdir = self._dir("pids")
        pids = int(_read(f"{pdir[0]}/pids.current")) if pdir is not None else len(self.procs())
        blk = self._dir("blkio") or self._dir("io")
        if blk is not None:
            d, v = blk
            if v == 1:
                for line in _read_opt(
                    f"{d}/blkio.throttle.io_service_bytes_recursive"
                ).splitlines():
                    parts = line.split()
                    if len(parts) == 3 and parts[1] == "Read":
                        io_r += int(parts[2])
                    elif len(parts) == 3 and parts[1] == "Write":
                        io_w += int(parts[2])
            else:
                for line in _read_opt(f"{d}/io.stat").splitlines():
                    kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                    io_r += int(kv.get("rbytes", 0))
                    io_w += int(kv.get("wbytes", 0))
        if limit is not None and limit >= UNLIMITED:
            limit = None
        return Stats(
            memory_usage=usage,
            memory_limit=limit,
            memory_peak=peak,
            cpu_user_ns=user,
            cpu_system_ns=system,
            cpu_total_ns=total,
            pids=pids,
            io_read_bytes=io_r,
            io_write_bytes=io_w,
            memory_stat=memory_stat,
            cpu_percpu_ns=tuple([int(n) for n in percpu if n.isdigit()]),
        )

    def usage(self) -> Usage:
        """What a run's summary needs, in fewer reads than :meth:`stats` (two or three
        files instead of eight to ten: a cgroup file's open and read take 20-40 us)."""
        user, system, _ = self._cpu_times(total=False)
        peak = None
        mem = self._dir("memory")
        if mem is not None:
            d, v = mem
            peak = int(_read(f"{d}/memory.max_usage_in_bytes")) if v == 1 else _v2_peak(d)
        return Usage(cpu_user_ns=user, cpu_system_ns=system, memory_peak=peak)

    def cpu_times(self) -> tuple[int, int]:
        """CPU time used, user and system, in nanoseconds (two reads on v1, one on v2)."""
        user, system, _ = self._cpu_times(total=False)
        return user, system

    def _cpu_times(self, *, total: bool) -> tuple[int, int, int]:
        """CPU time used: user, system and (if ``total``, else 0) all, in nanoseconds."""
        acct = self._dir("cpuacct")
        if acct is not None:
            d = acct[0]
            every = int(_read(f"{d}/cpuacct.usage")) if total else 0
            try:  # kernel 4.7: nanoseconds
                return (
                    int(_read(f"{d}/cpuacct.usage_user")),
                    int(_read(f"{d}/cpuacct.usage_sys")),
                    every,
                )
            except FileNotFoundError:  # clock ticks
                ticks = _keyed(_read(f"{d}/cpuacct.stat"))
                hz = os.sysconf("SC_CLK_TCK")
                user = ticks.get("user", 0) * 1_000_000_000 // hz
                return user, ticks.get("system", 0) * 1_000_000_000 // hz, every
        v2 = self._v2()
        if v2 is None:
            return 0, 0, 0
        st = _keyed(_read_opt(f"{v2}/cpu.stat"))
        return (
            st.get("user_usec", 0) * 1000,
            st.get("system_usec", 0) * 1000,
            st.get("usage_usec", 0) * 1000,
        )

    def effective_cpus(self) -> set[int] | None:
        """The CPUs the cgroup's processes may run on, read now: its cpuset as its parents'
        narrow it too (a --cgroup-parent or the daemon's own cgroup given fewer CPUs);
        None without a cpuset cgroup.  On v2 a cgroup whose parent does not enable cpuset
        has no cpuset file and runs on the nearest one's above it that has."""
        found = self._hierarchy("cpuset")
        if found is None:
            return None
        h, d = found
        if h.version == 1:
            text = _read_opt(f"{d}/cpuset.effective_cpus").strip()
            return parse_cpu_list(text) if text else None
        while True:
            text = _read_opt(f"{d}/cpuset.cpus.effective").strip()
            if text:
                return parse_cpu_list(text)
            if not d.startswith(f"{h.mount}/"):
                return None
            d = os.path.dirname(d)

    def cpu_limit(self) -> float | None:
        """The CPU time the cgroup may take, in CPUs, read now: the lowest quota/period of
        its own and each cgroup above it up to the mount point (the kernel throttles it
        at each: a --cgroup-parent or the daemon's own cgroup with a quota); None where
        none has a quota."""
        found = self._hierarchy("cpu")
        if found is None:
            return None
        h, d = found
        lowest: float | None = None
        while True:
            if h.version == 1:
                quota = _read_opt(f"{d}/cpu.cfs_quota_us").strip()
                period = _read_opt(f"{d}/cpu.cfs_period_us").strip()
            else:
                quota, _, period = _read_opt(f"{d}/cpu.max").strip().partition(" ")
            if quota not in ("", "max", "-1") and period:
                cpus = int(quota) / int(period)
                lowest = cpus if lowest is None else min(lowest, cpus)
            if not d.startswith(f"{h.mount}/"):
                return lowest
            d = os.path.dirname(d)

    def memory_detail(self) -> MemoryDetail:
        """memory.stat, the limits and swap, read now (empty and unlimited without the
        controller)."""
        found = self._hierarchy("memory")
        if found is None:
            return MemoryDetail({}, None, 0)
        h, d = found
        stat = _keyed(_read_opt(f"{d}/memory.stat"))
        if h.version == 2:
            swap_usage = int(_read_opt(f"{d}/memory.swap.current").strip() or 0)
            current = int(_read_opt(f"{d}/memory.current").strip() or 0)
            return MemoryDetail(
                stat,
                _v2_lowest(d, h.mount, "memory.swap.max"),
                swap_usage,
                current,
                _v2_lowest(d, h.mount, "memory.max"),
            )
        renamed = {new: stat[old] for old, new in _V1_STAT.items() if old in stat}
        # hierarchical_* is the lowest limit from the cgroup up (the kernel's own walk);
        # its own file stands in where memory.stat lacks the line.
        limit = stat.get("hierarchical_memory_limit") or int(
            _read_opt(f"{d}/memory.limit_in_bytes").strip() or UNLIMITED
        )
        memsw_limit = stat.get("hierarchical_memsw_limit") or int(
            _read_opt(f"{d}/memory.memsw.limit_in_bytes").strip() or UNLIMITED
        )
        swap = None if memsw_limit >= UNLIMITED else max(memsw_limit - min(limit, memsw_limit), 0)
        memsw_usage = _read_opt(f"{d}/memory.memsw.usage_in_bytes").strip()
        usage = int(_read_opt(f"{d}/memory.usage_in_bytes").strip() or 0)
        swap_usage = max(int(memsw_usage) - usage, 0) if memsw_usage else stat.get("total_swap", 0)
        return MemoryDetail(renamed, swap, swap_usage, usage, None if limit >= UNLIMITED else limit)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup.

        v2: ``oom_kill`` of memory.events.  v1: ``oom_kill`` of memory.oom_control
        (kernel 4.13); older kernels lack that line, and then memory.failcnt > 0 (the
        limit was hit at least once) stands in for it: it can also count a squeeze that
        reclaim resolved without a kill."""
        mem = self._dir("memory")
        if mem is None:
            return False
        kills = _oom_kills(*mem)
        if kills is not None:
            return kills > 0
        return int(_read_opt(f"{mem[0]}/memory.failcnt") or 0) > 0

    async def watch_oom_kills(
        self, killed: Callable[[], None], *, reported: int | None = 0
    ) -> None:
        """Call ``killed`` each time the count of the OOM killer's kills in this cgroup
        rises above ``reported`` (None: the count as the watch begins), as it happens,
        until cancelled or the cgroup is gone; on v1 also as an OOM begins that its
        killer may not end (``--oom-kill-disable``: the container stalls, which dockerd
        reports as an OOM too).  v2: inotify of memory.events, which the
        kernel notifies of each change; v1: an eventfd that ``cgroup.event_control`` ties
        to memory.oom_control, signalled as an OOM begins (and as the cgroup goes), before
        the kill is counted: the count is read again for up to OOM_COUNT_WAIT seconds.
        Returns at once where nothing can tell (no memory cgroup, a kernel without the
        count or the notification)."""
        import trio  # here: boxd-runtime's create and delete use this module without Trio

        mem = self._dir("memory")
        if mem is None:
            return
        d, v = mem
        # An adopted run's count as the watch begins; a new run's from 0, read only once
        # the watch is set (its start's path: one read of the count, not two).
        seen = _oom_kills(d, v) if reported is None else reported
        if seen is None:
            return
        try:
            wake = _inotify_modify(f"{d}/memory.events") if v == 2 else _v1_oom_eventfd(d)
        except OSError as exc:
            _debug("cgroup %s: OOM kills are not watched: %s", self.name, exc)
            return
        try:
            now = _oom_kills(d, v)  # kills before the watch began count too
            while now is not None:  # None: no count in this kernel, or the cgroup is gone
                if now > seen:
                    seen = now
                    killed()
                await trio.lowlevel.wait_readable(wake)
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 4096)  # the eventfd's count, or inotify's events
                with trio.move_on_after(0 if v == 2 else OOM_COUNT_WAIT):
                    while (now := _oom_kills(d, v)) == seen:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                if v == 1 and now == seen and _stalled(d):
                    killed()
        finally:
            os.close(wake)

    def pids_limit_hit(self) -> bool:
        """Whether a fork or clone of this cgroup was refused at its pids limit
        (``max`` of pids.events, v1 and v2)."""
        pids = self._dir("pids")
        if pids is None:
            return False
        return _keyed(_read_opt(f"{pids[0]}/pids.events")).get("max", 0) > 0


def _oom_kills(d: str, version: int) -> int | None:
    """The OOM killer's count of kills in the memory cgroup ``d``: ``oom_kill`` of v2's
    memory.events or v1's memory.oom_control; None where the kernel has no such count
    (v1 before 4.13) or the cgroup is gone."""
    try:
        text = _read(f"{d}/memory.events" if version == 2 else f"{d}/memory.oom_control")
    except OSError:
        return None
    return _keyed(text).get("oom_kill")


def _stalled(d: str) -> bool:
    """Whether the v1 memory cgroup ``d`` is in an OOM its killer may not end."""
    control = _keyed(_read_opt(f"{d}/memory.oom_control"))
    return control.get("oom_kill_disable") == 1 and control.get("under_oom") == 1


def _inotify_modify(path: str) -> int:
    """A non-blocking inotify fd that becomes readable as ``path`` is modified."""
    import ctypes  # on first use: see _syscalls.libc

    lib = libc()
    fd: int = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"inotify_init1: {os.strerror(err)}")
    if lib.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"cannot watch {path}: {os.strerror(err)}")
    return fd


def _v1_oom_eventfd(d: str) -> int:
    """A non-blocking eventfd that the v1 memory cgroup ``d`` signals as an OOM begins in
    it (or a cgroup above it) and as it is removed."""
    wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        control = os.open(f"{d}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _write(f"{d}/cgroup.event_control", f"{wake} {control}")
        finally:
            os.close(control)
    except OSError:
        os.close(wake)
        raise
    return wake


def _v2_peak(d: str) -> int | None:
    raw = _read_opt(f"{d}/memory.peak").strip()  # kernel 5.19
    return int(raw) if raw else None


Put = Callable[[str, str], None]


def _v1_memory(d: str, limits: Limits, put: Put) -> None:
    """memory.memsw.limit_in_bytes (memory + swap, only if swap accounting is on) must
    never be below memory.limit_in_bytes: a rising memsw goes first, a falling one last."""
    steps: list[tuple[str, str]] = []
    if limits.memory is not None:
        steps.append((f"{d}/memory.limit_in_bytes", str(limits.memory)))
    memsw = f"{d}/memory.memsw.limit_in_bytes"
    if limits.memory_swap is not None and os.path.exists(memsw):
        new = limits.memory_swap
        rising = new == -1 or new >= int(_read_opt(memsw).strip() or 0)
        steps.insert(0 if rising else len(steps), (memsw, str(new)))
    for path, value in steps:
        try:
            put(path, value)
        except CgroupError as exc:
            if exc.errno != errno.EBUSY:
                raise
            usage = _read_opt(f"{d}/memory.usage_in_bytes").strip()
            raise CgroupError(
                errno.EBUSY,
                f"cannot lower {os.path.basename(path)} to {value}: the container uses "
                f"{usage} bytes that the kernel cannot reclaim",
            ) from None


def _v2_memory(d: str, limits: Limits, put: Put, *, new: bool = False) -> None:
    """memory.max, and memory.swap.max (swap alone: Docker's total minus memory).

    Lowering memory.max below usage makes the v2 kernel reclaim and then OOM-kill, never
    fail; so ask memory.reclaim (kernel 5.19) for the difference first, and refuse with
    EBUSY when usage stays above the new limit (a ``new`` cgroup uses nothing yet)."""
    if limits.memory is not None:
        current = "" if new else _read_opt(f"{d}/memory.current").strip()
        if current and int(current) > limits.memory:
            with contextlib.suppress(OSError):
                _write(f"{d}/memory.reclaim", str(int(current) - limits.memory))
            current = _read_opt(f"{d}/memory.current").strip()
            if int(current) > limits.memory:
                raise CgroupError(
                    errno.EBUSY,
                    f"cannot lower memory.max to {limits.memory}: the container "
                    f"uses {current} bytes that the kernel cannot reclaim",
                )
        put(f"{d}/memory.max", str(limits.memory))
    swap_max = f"{d}/memory.swap.max"
    if limits.memory_swap is not None and os.path.exists(swap_max):
        if limits.memory_swap == -1:
            put(swap_max, "max")
            return
        memory = limits.memory
        if memory is None:
            raw = _read(f"{d}/memory.max").strip()
            if raw == "max":
                raise ValueError(f"invalid --memory-swap {limits.memory_swap}: it needs --memory")
            memory = int(raw)
        put(swap_max, str(max(0, limits.memory_swap - memory)))


_THROTTLES = ("device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops")
_V1_THROTTLE = {
    "device_read_bps": "read_bps_device",
    "device_write_bps": "write_bps_device",
    "device_read_iops": "read_iops_device",
    "device_write_iops": "write_iops_device",
}
_V2_THROTTLE = {
    "device_read_bps": "rbps",
    "device_write_bps": "wbps",
    "device_read_iops": "riops",
    "device_write_iops": "wiops",
}


def _validate_more(limits: Limits, prefix: str) -> None:
    """The ranges of Docker's other resource options (:class:`Limits`)."""
    reservation = limits.memory_reservation
    if reservation is not None:
        if reservation < MIN_MEMORY:
            raise ValueError(
                f"invalid --memory-reservation {reservation}: the minimum is 6m ({MIN_MEMORY})"
            )
        if limits.memory is not None and reservation > limits.memory:
            raise ValueError(
                f"invalid --memory-reservation {reservation}: it must not exceed "
                f"--memory {limits.memory}"
            )
    swappiness = limits.memory_swappiness
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise ValueError(f"invalid --memory-swappiness {swappiness}: use 0 to 100 (-1: unset)")
    if limits.cpus is not None and (limits.cpu_quota is not None or limits.cpu_period is not None):
        raise ValueError(
            f"invalid --cpus {limits.cpus:g}: it cannot be combined with --cpu-period or "
            "--cpu-quota (it sets both)"
        )
    if limits.cpu_period is not None and not 1000 <= limits.cpu_period <= 1_000_000:
        raise ValueError(
            f"invalid --cpu-period {limits.cpu_period}: use 1000 to 1000000 microseconds"
        )
    quota = limits.cpu_quota
    if quota is not None and quota != -1 and quota < 1000:
        raise ValueError(
            f"invalid --cpu-quota {quota}: use at least 1000 microseconds (-1: no quota)"
        )
    if limits.cpuset_mems is not None:
        try:
            online = parse_cpu_list(_read(prefix + "/sys/devices/system/node/online"))
        except FileNotFoundError:  # a kernel without NUMA: node 0 alone
            online = {0}
        try:
            extra = parse_cpu_list(limits.cpuset_mems) - online
        except ValueError:
            raise ValueError(
                f"invalid --cpuset-mems {limits.cpuset_mems!r}: use e.g. 0-1,3"
            ) from None
        if extra:
            raise ValueError(
                f"invalid --cpuset-mems {limits.cpuset_mems!r}: memory node {min(extra)} is "
                f"not online (online: {_cpu_list(online)})"
            )
    period, runtime = limits.cpu_rt_period, limits.cpu_rt_runtime
    if period is not None and not 1 <= period <= 1_000_000:
        raise ValueError(f"invalid --cpu-rt-period {period}: use 1 to 1000000 microseconds")
    if runtime is not None:
        if runtime < 0 and runtime != -1:
            raise ValueError(f"invalid --cpu-rt-runtime {runtime}: use 0 or more microseconds")
        if period is not None and runtime > period:
            raise ValueError(
                f"invalid --cpu-rt-runtime {runtime}: it must not exceed --cpu-rt-period {period}"
            )
    weight = limits.blkio_weight
    if weight is not None and not 10 <= weight <= 1000:
        raise ValueError(f"invalid --blkio-weight {weight}: use 10 to 1000 (0: unset)")
    for device, w in limits.blkio_weight_device or ():
        if not 10 <= w <= 1000:
            raise ValueError(
                f"invalid --blkio-weight-device {device}:{w}: use a weight of 10 to 1000"
            )
    for field in _THROTTLES:
        for device, rate in getattr(limits, field) or ():
            if rate < 0:
                option = "--" + field.replace("_", "-")
                raise ValueError(f"invalid {option} {device}:{rate}: the rate must not be negative")


def _weight_file(d: str, version: int) -> str | None:
    """The proportional weight file of a block I/O cgroup: the BFQ one where BFQ is the
    kernel's (and CFQ's on old v1 kernels), else v2's io.weight; None: no weight here."""
    names = ("blkio.weight", "blkio.bfq.weight") if version == 1 else ("io.bfq.weight", "io.weight")
    return next((n for n in names if os.path.exists(f"{d}/{n}")), None)


def _v2_io_weight(name: str, weight: int) -> int:
    """Docker's 10..1000 weight as the file takes it: BFQ's 1..1000 as is, io.weight's
    1..10000 scaled linearly (10 -> 1, 1000 -> 10000), as runc and crun do."""
    return weight if "bfq" in name else 1 + (weight - 10) * 9999 // 990


def _more_limits(cg: Cgroup, limits: Limits, put: Put) -> None:
    """Write Docker's other resource options (after the basic ones of Cgroup.update)."""
    mem = cg._dir("memory")
    if mem is not None:
        d, v = mem
        if limits.memory_reservation is not None:
            file = "memory.soft_limit_in_bytes" if v == 1 else "memory.low"
            put(f"{d}/{file}", str(limits.memory_reservation))
        if v == 1 and limits.memory_swappiness is not None:
            put(f"{d}/memory.swappiness", str(limits.memory_swappiness))
        if v == 1 and limits.oom_kill_disable is not None:
            put(f"{d}/memory.oom_control", "1" if limits.oom_kill_disable else "0")
    cpu = cg._dir("cpu")
    if cpu is not None and (limits.cpu_period is not None or limits.cpu_quota is not None):
        d, v = cpu
        if v == 1:
            if limits.cpu_period is not None:
                put(f"{d}/cpu.cfs_period_us", str(limits.cpu_period))
            if limits.cpu_quota is not None:
                put(f"{d}/cpu.cfs_quota_us", str(limits.cpu_quota))
        else:
            old_quota, _, old_period = _read_opt(f"{d}/cpu.max").strip().partition(" ")
            quota = limits.cpu_quota
            period = limits.cpu_period or int(old_period or CPU_PERIOD)
            text = (old_quota or "max") if quota is None else ("max" if quota == -1 else str(quota))
            put(f"{d}/cpu.max", f"{text} {period}")
    if cpu is not None and cpu[1] == 1:
        try:
            if limits.cpu_rt_period is not None:
                put(f"{cpu[0]}/cpu.rt_period_us", str(limits.cpu_rt_period))
            if limits.cpu_rt_runtime is not None:
                if limits.cpu_rt_runtime > 0:
                    _rt_budget(cg, cpu[0], limits.cpu_rt_runtime, put)
                put(f"{cpu[0]}/cpu.rt_runtime_us", str(limits.cpu_rt_runtime))
        except CgroupError as exc:
            option, value = (
                ("--cpu-rt-runtime", limits.cpu_rt_runtime)
                if limits.cpu_rt_runtime is not None
                else ("--cpu-rt-period", limits.cpu_rt_period)
            )
            raise ValueError(
                f"invalid {option} {value}: the kernel refuses it ({exc.strerror}): more "
                "real-time runtime per period than the cgroups above the container can give"
            ) from None
    cpuset = cg._dir("cpuset")
    if cpuset is not None and limits.cpuset_mems is not None:
        put(f"{cpuset[0]}/cpuset.mems", limits.cpuset_mems)
    blk = cg._dir("blkio") or cg._dir("io")
    if blk is None:
        return
    d, v = blk
    weighted = limits.blkio_weight is not None or limits.blkio_weight_device is not None
    weight_file = _weight_file(d, v) if weighted else None  # a lookup only when asked
    if weight_file is not None:
        if limits.blkio_weight is not None:
            w = limits.blkio_weight
            put(f"{d}/{weight_file}", str(w if v == 1 else _v2_io_weight(weight_file, w)))
        for device, w in limits.blkio_weight_device or ():
            if v == 2:
                w = _v2_io_weight(weight_file, w)
            put(f"{d}/{weight_file}_device" if v == 1 else f"{d}/{weight_file}", f"{device} {w}")
    if v == 1:
        for field, name in _V1_THROTTLE.items():
            for device, rate in getattr(limits, field) or ():
                put(f"{d}/blkio.throttle.{name}", f"{device} {rate}")
        return
    per_device: dict[str, list[str]] = {}
    for field, key in _V2_THROTTLE.items():
        for device, rate in getattr(limits, field) or ():
            per_device.setdefault(device, []).append(f"{key}={rate or 'max'}")
    for device, keys in per_device.items():
        put(f"{d}/io.max", f"{device} {' '.join(keys)}")


def _rt_budget(cg: Cgroup, d: str, runtime: int, put: Put) -> None:
    """A v1 cgroup may take real-time runtime only out of its parent's (runtime per
    period, summed over the parent's children): raise that of the directories boxd made
    above ``d`` (never a root's, nor one it did not make) to hold what their other
    children take plus ``runtime``.  The kernel refuses (EINVAL) what the cgroups above
    cannot give."""

    def number(path: str) -> int:
        return int(_read_opt(path).strip() or 0)

    parent = os.path.dirname(d)
    made = cg._host._made
    chain = []
    while parent in made:
        chain.append(parent)
        parent = os.path.dirname(parent)
    needs = []
    # (runtime, period) the cgroup below the current one needs: first the container.
    need, period, below = runtime, number(f"{d}/cpu.rt_period_us") or 1_000_000, d
    for p in chain:
        own_period = number(f"{p}/cpu.rt_period_us") or 1_000_000
        share = need / period + sum(
            max(number(f"{e.path}/cpu.rt_runtime_us"), 0)
            / (number(f"{e.path}/cpu.rt_period_us") or 1_000_000)
            for e in os.scandir(p)
            if e.is_dir() and e.path != below
        )
        need, period, below = math.ceil(share * own_period), own_period, p
        needs.append((p, need))
    for p, need in reversed(needs):
        if number(f"{p}/cpu.rt_runtime_us") < need:
            put(f"{p}/cpu.rt_runtime_us", str(need))

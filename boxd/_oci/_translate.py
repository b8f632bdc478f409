"""From an OCI :class:`~boxd._oci._spec.Spec` to boxd's own pieces: one :class:`SpawnPlan`
(mount table, namespaces, identity, capabilities, rlimits, seccomp program) and the cgroup
:class:`~boxd._cgroup.Limits`.  This module translates; the policy (what a mount table
step may touch, how a filter is compiled, how limits are written) is boxd's.
"""

from __future__ import annotations

import os
import posixpath
import resource
import stat
from collections.abc import Iterable

from .. import _caps, _rootfs
from .._cgroup import CPU_PERIOD, CgroupHost, Limits
from .._devices import DeviceRule
from .._native import (
    JOINABLE,
    Capabilities,
    MountKind,
    MountOp,
    Namespace,
    Rlimit,
    SpawnPlan,
    check_console_size,
)
from .._tmpfs import PROPAGATION_FLAGS
from ._spec import IDMapping, Mount, Process, Resources, Spec, SpecError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: boxd-runtime create does without typing
if TYPE_CHECKING:
    from typing import Any

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

PROPAGATION = PROPAGATION_FLAGS  # a spec mount's options, as --tmpfs takes them

# Mount options as runc reads them: option -> (clear, set).  Anything else is mount data.
_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "nosuid": (0, MS_NOSUID),
    "suid": (MS_NOSUID, 0),
    "nodev": (0, MS_NODEV),
    "dev": (MS_NODEV, 0),
    "noexec": (0, MS_NOEXEC),
    "exec": (MS_NOEXEC, 0),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "dirsync": (0, MS_DIRSYNC),
    "remount": (0, MS_REMOUNT),
    "mand": (0, MS_MANDLOCK),
    "nomand": (MS_MANDLOCK, 0),
    "noatime": (0, MS_NOATIME),
    "atime": (MS_NOATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "diratime": (MS_NODIRATIME, 0),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "nostrictatime": (MS_STRICTATIME, 0),
    "lazytime": (0, MS_LAZYTIME),
    "nolazytime": (MS_LAZYTIME, 0),
    "nosymfollow": (0, MS_NOSYMFOLLOW),
    "symfollow": (MS_NOSYMFOLLOW, 0),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
}
# Options other runtimes know that change what a mount is: refused, never passed on as data.
_REFUSED_OPTIONS = {
    "idmap": "id-mapped mounts",
    "ridmap": "id-mapped mounts",
    "rro": "recursive read-only mounts",
    "rrw": "recursive read-write mounts",
    "copy-symlink": "copying symlinks",
}

NAMESPACES = {
    "pid": Namespace.PID,
    "network": Namespace.NET,
    "mount": Namespace.MOUNT,
    "ipc": Namespace.IPC,
    "uts": Namespace.UTS,
    "user": Namespace.USER,
    "cgroup": Namespace.CGROUP,
}

# The device nodes every container gets (runc's default devices), bound from the host.
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
)
_LINKED = frozenset(link for link, _ in _DEV_LINKS)
_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}

# Sysctls that belong to a namespace (so a container may set them): the prefix and the
# namespace it must have of its own.
_NAMESPACED_SYSCTLS = (
    ("kernel.msgmax", Namespace.IPC),
    ("kernel.msgmnb", Namespace.IPC),
    ("kernel.msgmni", Namespace.IPC),
    ("kernel.sem", Namespace.IPC),
    ("kernel.shmall", Namespace.IPC),
    ("kernel.shmmax", Namespace.IPC),
    ("kernel.shmmni", Namespace.IPC),
    ("kernel.shm_rmid_forced", Namespace.IPC),
    ("fs.mqueue.", Namespace.IPC),
    ("net.", Namespace.NET),
    ("kernel.hostname", Namespace.UTS),
    ("kernel.domainname", Namespace.UTS),
)


TMPCOPYUP = "tmpcopyup"


def parse_options(options: Iterable[str], where: str) -> tuple[int, int, str]:
    """(flags, propagation flags, data) of a mount's options, as runc parses them."""
    flags = propagation = 0
    data = []
    for option in options:
        if option == TMPCOPYUP:  # the runtime's to do (see copy_ups), not the mount's
            continue
        if option in _REFUSED_OPTIONS:
            raise SpecError(
                f"{where}: option {option!r} ({_REFUSED_OPTIONS[option]}) is not supported"
            )
        if option in _FLAGS:
            clear, set_ = _FLAGS[option]
            flags = (flags & ~clear) | set_
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def _container_path(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")) if path else "/"


class _Table:
    def __init__(self) -> None:
        self.ops: list[MountOp] = []

    def add(self, kind: MountKind, target: str, **fields: object) -> None:
        self.ops.append(MountOp(kind, target, **fields))  # type: ignore[arg-type]

    def mkdirs(self, path: str, mode: int = 0o755) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            self.add(MountKind.MKDIR, "/" + "/".join(parts[:i]), mode=mode)


def _mount(
    table: _Table,
    mount: Mount,
    index: int,
    bundle: str,
    host_cgroup2: str | None,
    cgroups: tuple[tuple[str, str], ...] | None,
) -> None:
    where = f"config.json: mounts[{index}] ({mount.destination})"
    target = _container_path(mount.destination)
    flags, propagation, data = parse_options(mount.options, where)
    if mount.type == "cgroup" and cgroups is not None:
        # A host with v1 hierarchies: their layout (as runc's), the container's own cgroups.
        table.mkdirs(target)
        table.ops.extend(_rootfs.cgroup_ops(target, cgroups, flags & ~(MS_BIND | MS_REC)))
    elif mount.type == "cgroup" and host_cgroup2 is not None:
        # Outside a cgroup namespace a new cgroup2 mount would set the hierarchy's options
        # (nsdelegate, memory_recursiveprot: they are the hierarchy's, not the mount's) to
        # the spec's, clearing the host's, and waits for an RCU grace period to do so
        # (10-20 ms here); the host's own mount, bound, shows the same tree.
        table.mkdirs(target)
        table.add(MountKind.MOUNT, target, source=host_cgroup2, flags=MS_BIND)
        rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if rest:
            table.add(MountKind.MOUNT, target, flags=MS_REMOUNT | MS_BIND | rest)
    elif mount.type == "bind" or flags & MS_BIND:
        source = (
            mount.source
            if mount.source.startswith("/")
            else os.path.normpath(os.path.join(bundle, mount.source))
        )
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as exc:
            raise SpecError(f"{where}: bind source {source}: {exc.strerror}") from None
        bind = MS_BIND | (flags & MS_REC)
        if is_dir:
            table.mkdirs(target)
            table.add(MountKind.MOUNT, target, source=source, flags=bind)
        else:
            table.mkdirs(posixpath.dirname(target))
            table.add(MountKind.MKFILE, target, mode=0o644)
            table.add(MountKind.MOUNT, target, source=source, flags=bind)
        rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if rest:
            table.add(MountKind.MOUNT, target, flags=MS_REMOUNT | MS_BIND | rest)
    else:
        fstype = mount.type
        if fstype == "cgroup":
            # In a cgroup namespace: the container's own cgroup (the namespace's root) on
            # the unified hierarchy, as boxd mounts it.
            fstype, source, data = "cgroup2", "cgroup2", ""
        elif not fstype:
            raise SpecError(f"{where}: a mount needs a type (or the bind option)")
        else:
            source = mount.source or fstype
        table.mkdirs(target)
        table.add(MountKind.MOUNT, target, source=source, fstype=fstype, flags=flags, data=data)
    if propagation:
        table.add(MountKind.MOUNT, target, flags=propagation)


def copy_ups(spec: Spec) -> tuple[str, ...]:
    """The container paths of the tmpfs mounts to fill with the image's files there
    (``tmpcopyup``, see :mod:`boxd._oci._copyup`)."""
    found: list[str] = []
    for i, mount in enumerate(spec.mounts):
        if TMPCOPYUP not in mount.options:
            continue
        where = f"config.json: mounts[{i}] ({mount.destination})"
        if mount.type != "tmpfs":
            raise SpecError(f"{where}: option 'tmpcopyup' is for tmpfs mounts only")
        if parse_options(mount.options, where)[0] & MS_RDONLY:
            raise SpecError(f"{where}: option 'tmpcopyup' cannot fill a read-only tmpfs")
        target = _container_path(mount.destination)
        # The nearest earlier mount above it decides what runc copies there: a tmpcopyup
        # tmpfs holds the image's files (Podman's /run/lock below /run with --systemd),
        # any other mount its own, which are not what the copy reads.
        nearest = max(
            (
                (len(path), j)
                for j, earlier in enumerate(spec.mounts[:i])
                if (path := _container_path(earlier.destination)) != "/"
                and target.startswith(path.rstrip("/") + "/")
            ),
            default=None,
        )
        if nearest is not None and TMPCOPYUP not in spec.mounts[nearest[1]].options:
            above = _container_path(spec.mounts[nearest[1]].destination)
            raise SpecError(
                f"{where}: option 'tmpcopyup' below the mount at {above} is not supported"
            )
        found.append(target)
    return tuple(found)


def _devices(table: _Table, spec: Spec, userns: bool) -> None:
    table.mkdirs("/dev")
    devices = spec.linux.devices if spec.linux else ()
    # runc's rule: the spec's devices first, its defaults where the spec has none (Podman's
    # --privileged lists every device of the host, /dev/null and /dev/ptmx among them).
    listed = {_container_path(device.path) for device in devices}
    for name in DEFAULT_DEVICES:
        if f"/dev/{name}" in listed:
            continue
        table.add(MountKind.MKFILE, f"/dev/{name}", mode=0o666)
        table.add(MountKind.MOUNT, f"/dev/{name}", source=f"/dev/{name}", flags=MS_BIND)
    for i, device in enumerate(devices):
        where = f"config.json: linux.devices[{i}] ({device.path})"
        kind = _DEVICE_TYPES.get(device.type)
        if kind is None:
            raise SpecError(f"{where}: unknown device type {device.type!r} (use c, b, u or p)")
        if userns:
            raise SpecError(f"{where}: device nodes cannot be made in a user namespace")
        path = _container_path(device.path)
        if path in _LINKED:
            continue  # a link to the container's own (its devpts instance's ptmx), as runc's
        table.mkdirs(posixpath.dirname(path))
        mode = device.file_mode if device.file_mode is not None else 0o666
        table.add(
            MountKind.MKNOD,
            path,
            mode=kind | (mode & 0o7777),
            dev=os.makedev(device.major, device.minor) if kind != stat.S_IFIFO else 0,
        )
    for link, target in _DEV_LINKS:
        table.add(MountKind.SYMLINK, link, source=target)


def mount_table(
    spec: Spec,
    bundle: str,
    rootfs: str,
    userns: bool,
    sysctls: dict[str, str],
    host_cgroup2: str | None = None,
    cgroups: tuple[tuple[str, str], ...] | None = None,
    *,
    make_cwd: str | None = None,
) -> tuple[MountOp, ...]:
    """The steps the child runs inside ``rootfs``: the root bound onto itself (pivot_root
    needs a mount point), its propagation, the spec's mounts in order, the devices, the
    working directory ``make_cwd`` (see :func:`missing_cwd`), the
    ``sysctls`` (written by the child, in its namespaces, to the /proc the spec mounted),
    the read-only and masked paths, and last a read-only root.  A ``cgroup`` mount is a
    new cgroup2 mount, or with ``host_cgroup2`` (a container outside any cgroup namespace
    of its own) that mount of the host bound; with ``cgroups`` (a host with v1
    hierarchies, :meth:`boxd._cgroup.Cgroup.view`) the v1 layout of
    :func:`boxd._rootfs.cgroup_ops`."""
    table = _Table()
    table.add(MountKind.MOUNT, "/", source=rootfs, flags=MS_BIND | MS_REC)
    linux = spec.linux
    if linux is not None and linux.rootfs_propagation:
        flags = PROPAGATION.get(linux.rootfs_propagation)
        if flags is None:
            raise SpecError(
                f"config.json: linux.rootfsPropagation {linux.rootfs_propagation!r}: use one "
                f"of {', '.join(PROPAGATION)}"
            )
        if flags & MS_SHARED:
            # pivot_root refuses a shared new root; making it shared after the pivot is a
            # step the spawn path does not have.
            raise SpecError(
                f"config.json: linux.rootfsPropagation {linux.rootfs_propagation!r} is not "
                "supported (private, slave and unbindable are)"
            )
        table.add(MountKind.MOUNT, "/", flags=flags)
    for i, mount in enumerate(spec.mounts):
        _mount(table, mount, i, bundle, host_cgroup2, cgroups)
    _devices(table, spec, userns)
    if make_cwd is not None:
        table.mkdirs(make_cwd)
    for key, value in sysctls.items():
        table.add(MountKind.SYSCTL, "/proc/sys/" + key.replace(".", "/"), data=value + "\n")
    if linux is not None:
        for path in linux.readonly_paths:
            table.add(MountKind.REMOUNT_RO, _container_path(path))
        for path in linux.masked_paths:
            table.add(MountKind.MASK, _container_path(path))
    if spec.root is not None and spec.root.readonly:
        table.add(MountKind.MOUNT, "/", flags=MS_REMOUNT | MS_BIND | MS_RDONLY)
    return tuple(table.ops)


def namespaces(spec: Spec) -> frozenset[Namespace]:
    """The namespaces the container makes (see :func:`joined` for those it joins)."""
    return frozenset(kind for kind, path in _namespaces(spec) if not path)


def joined(spec: Spec) -> tuple[tuple[Namespace, str], ...]:
    """The namespaces the container joins by path (a pod's network, IPC and UTS)."""
    return tuple([(kind, path) for kind, path in _namespaces(spec) if path])


def _namespaces(spec: Spec) -> list[tuple[Namespace, str]]:
    found: list[tuple[Namespace, str]] = []
    for i, ns in enumerate(spec.linux.namespaces if spec.linux else ()):
        where = f"config.json: linux.namespaces[{i}]"
        kind = NAMESPACES.get(ns.type)
        if kind is None:
            if ns.type == "time":
                raise SpecError(f"{where}: the time namespace is not supported")
            raise SpecError(f"{where}: unknown namespace type {ns.type!r}")
        if ns.path and kind not in JOINABLE and kind is not Namespace.PID:
            raise SpecError(
                f"{where}: joining the {ns.type} namespace at {ns.path} is not supported "
                "(only pid, network, ipc, uts and cgroup namespaces can be joined)"
            )
        if any(kind == k for k, _ in found):
            raise SpecError(f"{where}: the {ns.type} namespace is listed twice")
        found.append((kind, ns.path))
    if (Namespace.MOUNT, "") not in found:
        raise SpecError("config.json: a new mount namespace is required (linux.namespaces)")
    if any(path for _, path in found) and (Namespace.USER, "") in found:
        raise SpecError(
            "config.json: joining namespaces by path with a new user namespace is not supported"
        )
    return found


def _cap_mask(names: Iterable[str], where: str) -> int:
    try:
        return _caps.to_mask(names)
    except ValueError as exc:
        raise SpecError(f"config.json: {where}: {exc}") from None


def capabilities(process: Process) -> Capabilities:
    """The spec's sets as masks; absent sets are empty (nothing is granted by default)."""
    sets = process.capabilities
    if sets is None:
        return Capabilities(bounding=0, effective=0, permitted=0)
    permitted = _cap_mask(sets.permitted, "process.capabilities.permitted")
    inheritable = _cap_mask(sets.inheritable, "process.capabilities.inheritable")
    # The kernel raises an ambient capability only if it is permitted and inheritable;
    # runc skips the others (`runc spec` lists ambient capabilities, no inheritable ones).
    ambient = _cap_mask(sets.ambient, "process.capabilities.ambient") & permitted & inheritable
    return Capabilities(
        bounding=_cap_mask(sets.bounding, "process.capabilities.bounding"),
        effective=_cap_mask(sets.effective, "process.capabilities.effective"),
        permitted=permitted,
        inheritable=inheritable,
        ambient=ambient,
    )


def rlimits(process: Process) -> tuple[Rlimit, ...]:
    out = []
    for i, limit in enumerate(process.rlimits):
        number = getattr(resource, limit.type, None) if limit.type.startswith("RLIMIT_") else None
        if not isinstance(number, int):
            raise SpecError(f"config.json: process.rlimits[{i}]: unknown type {limit.type!r}")
        if limit.soft > limit.hard:
            raise SpecError(
                f"config.json: process.rlimits[{i}] ({limit.type}): soft {limit.soft} is above "
                f"hard {limit.hard}"
            )
        out.append(Rlimit(number, _rlim(limit.soft), _rlim(limit.hard)))
    return tuple(out)


def _rlim(value: int) -> int:
    return -1 if value >= (1 << 63) - 1 or value < 0 else value


def search_path(env: Iterable[str]) -> tuple[str, ...]:
    path = next(
        (e[5:] for e in env if e.startswith("PATH=")),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    return tuple([p for p in path.split(":") if p.startswith("/")])


def _skip_unknown(section: dict[str, Any]) -> dict[str, Any]:
    """Profiles written for libseccomp (Podman's, containerd's) name calls of other
    architectures that boxd's syscall tables do not list; libseccomp skips what it cannot
    resolve, and so does this where skipping cannot widen the filter: in allowing rules,
    and in any rule when the default action denies (boxd's compiler answers a number it
    does not know with ENOSYS unless the default allows)."""
    from .. import _seccomp

    rules = section.get("syscalls")
    if not isinstance(rules, list):
        return section
    default_allows = section.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    kept = []
    for rule in rules:
        names = rule.get("names") if isinstance(rule, dict) else None
        if isinstance(names, list) and (
            rule.get("action") == "SCMP_ACT_ALLOW" or not default_allows
        ):
            known = [n for n in names if not isinstance(n, str) or _seccomp.known_syscall(n)]
            if not known:
                continue
            rule = {**rule, "names": known}
        kept.append(rule)
    return {**section, "syscalls": _deny_wins(kept)}


def _deny_wins(rules: list[Any]) -> list[Any]:
    """Podman's profile allows some calls in its long allowlist and denies them again in a
    later rule (setns, sethostname without CAP_SYS_ADMIN); libseccomp keeps the first
    unconditional rule, boxd's compiler refuses a conflict.  Keep the denying rule."""
    denied = {
        name
        for rule in rules
        if isinstance(rule, dict)
        and rule.get("action") != "SCMP_ACT_ALLOW"
        and not rule.get("args")
        for name in rule.get("names") or ()
    }
    out = []
    for rule in rules:
        if (
            isinstance(rule, dict)
            and rule.get("action") == "SCMP_ACT_ALLOW"
            and not rule.get("args")
        ):
            names = [n for n in rule.get("names") or () if n not in denied]
            if not names:
                continue
            rule = {**rule, "names": names}
        out.append(rule)
    return out


def seccomp_program(spec: Spec, bounding: int, cache_dir: str | None = None) -> bytes | None:
    """The spec's seccomp profile compiled; with ``cache_dir`` (the state root) the
    program compiled by an earlier create for the same profile (see _seccomp_cache)."""
    section = spec.linux.seccomp if spec.linux else None
    if not section:
        return None

    def compile_() -> bytes:
        from .. import _seccomp  # only with a profile: its tables cost ~2 ms to import

        try:
            profile = _seccomp.profile_from_docker(_skip_unknown(section))
            return _seccomp.compile_profile(profile, caps=bounding)
        except ValueError as exc:
            raise SpecError(f"config.json: linux.seccomp: {exc}") from None

    if cache_dir is None:
        return compile_()
    from . import _seccomp_cache

    return _seccomp_cache.program(cache_dir, section, bounding, compile_)


def check_personality(spec: Spec) -> None:
    personality = spec.linux.personality if spec.linux else None
    if personality is None:
        return
    if personality.domain != "LINUX" or personality.flags:
        raise SpecError(
            f"config.json: linux.personality {personality.domain} {list(personality.flags)}: "
            "only LINUX without flags is supported"
        )


def process_plan(process: Process, *, console: bool) -> dict[str, object]:
    """The SpawnPlan fields of the process itself (its init, or an exec)."""
    if not process.args:
        raise SpecError("config.json: process.args must not be empty")
    if not process.cwd.startswith("/"):
        raise SpecError(f"config.json: process.cwd {process.cwd!r} must be absolute")
    caps = capabilities(process)
    return {
        "console_size": console_size(process) if console else None,
        "argv": process.args,
        "env": process.env,
        "search_path": search_path(process.env),
        "cwd": process.cwd,
        "uid": process.user.uid,
        "gid": process.user.gid,
        "groups": process.user.additional_gids,
        "console": console,
        "rlimits": rlimits(process),
        "caps": caps,
        "no_new_privs": process.no_new_privileges,
        # None: the runtime's (create sets runc's 0022); the kernel's 9 bits, as runc's.
        "umask": None if process.user.umask is None else process.user.umask & 0o777,
    }


def console_size(process: Process) -> tuple[int, int] | None:
    """``process.consoleSize`` as the console's (rows, columns) from the start; None (24x80)
    without one or with a 0 in it, as runc leaves the size alone then."""
    size = process.console_size
    if size is None or not size.height or not size.width:
        return None
    try:
        return check_console_size((size.height, size.width))
    except ValueError as exc:
        raise SpecError(f"config.json: process.consoleSize: {exc}") from None


def table_sysctls(spec: Spec, spaces: frozenset[Namespace]) -> bool:
    """Whether the init can set the sysctls itself (mount table steps): the spec mounts a
    writable proc at /proc, and there is no new user namespace (the sysctls are written
    as the host's root, as a process that joins the init's namespaces would)."""
    return Namespace.USER not in spaces and any(
        m.type == "proc" and _container_path(m.destination) == "/proc" and "ro" not in m.options
        for m in spec.mounts
    )


def build(
    spec: Spec,
    bundle: str,
    *,
    start_fd: int,
    keep_fds: int,
    no_pivot: bool,
    sysctls: dict[str, str],
    seccomp_cache: str | None = None,
    host_cgroup2: str | None = None,
    cgroups: tuple[tuple[str, str], ...] | None = None,
) -> SpawnPlan:
    """The plan of the container's init, waiting on ``start_fd`` for ``start``, setting
    ``sysctls`` (see :func:`table_sysctls`); compiled seccomp programs are kept in
    ``seccomp_cache`` (see :func:`seccomp_program`).  ``host_cgroup2``: where the host
    mounts the unified cgroup hierarchy (None: nowhere), bound for a ``cgroup`` mount when
    the container neither makes nor joins a cgroup namespace; ``cgroups``: the container's
    cgroups on a host with v1 hierarchies (see :func:`mount_table`)."""
    if spec.process is None:
        raise SpecError("config.json: process is required to create a container")
    if no_pivot:
        raise SpecError("--no-pivot is not supported: boxd-runtime always uses pivot_root")
    assert spec.root is not None  # checked by _spec.check_supported
    rootfs = os.path.realpath(os.path.join(bundle, spec.root.path))
    if not os.path.isdir(rootfs):
        raise SpecError(f"config.json: root.path {spec.root.path}: no such directory ({rootfs})")
    check_personality(spec)
    spaces = namespaces(spec)
    own_cgroupns = any(k is Namespace.CGROUP for k, _ in _namespaces(spec))
    userns = Namespace.USER in spaces
    if (spec.linux and (spec.linux.uid_mappings or spec.linux.gid_mappings)) and not userns:
        raise SpecError("config.json: linux.uidMappings need a user namespace")
    if userns and not (spec.linux and spec.linux.uid_mappings and spec.linux.gid_mappings):
        raise SpecError("config.json: a user namespace needs linux.uidMappings and gidMappings")
    if spec.hostname and Namespace.UTS not in spaces:
        raise SpecError(f"config.json: hostname {spec.hostname!r} needs a uts namespace")
    fields = process_plan(spec.process, console=spec.process.terminal)
    image = bundle_image(spec, bundle, rootfs)
    check_command(spec, image)
    caps = fields["caps"]
    assert isinstance(caps, Capabilities)
    return SpawnPlan(
        namespaces=spaces,
        ns_paths=joined(spec),
        hostname=(spec.hostname or None) if Namespace.UTS in spaces else None,
        rootfs=rootfs,
        mounts=mount_table(
            spec,
            bundle,
            rootfs,
            userns,
            sysctls,
            None if own_cgroupns else host_cgroup2,
            cgroups if own_cgroupns or cgroups is None else _v1_only(cgroups),
            make_cwd=missing_cwd(spec, image),
        ),
        seccomp=seccomp_program(spec, caps.bounding, seccomp_cache),
        process_name="boxd:[oci-init]",
        start_fd=start_fd,
        keep_fds=keep_fds,
        **fields,  # type: ignore[arg-type]
    )


def _v1_only(cgroups: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The v1 layout of a container in the host's cgroup namespace, as runc gives it: no
    ``unified``.  Its /proc/self/cgroup gives the full path there, which a bind of its own
    unified cgroup does not show: a systemd inside takes a hybrid host's unified hierarchy
    for its own and cannot find itself (Podman's --systemd binds the whole name=systemd
    hierarchy writable for it, with which it does without the unified one)."""
    return tuple([(name, source) for name, source in cgroups if name != "unified"])


def bundle_image(spec: Spec, bundle: str, rootfs: str) -> _rootfs.Image:
    """The container's files as create can see them: the root and the directories and
    files bound into it.  A bound file may be the program: Podman's ``--init`` binds
    catatonit on ``/run/podman-init`` and runs that.  A bind follows symlinks in its source
    on the host, and so does this (``/usr/libexec/podman/catatonit`` is a link to
    ``/usr/bin/catatonit``)."""
    layers = [_rootfs.Layer(rootfs, "/")]
    for mount in spec.mounts:
        source = (
            mount.source
            if mount.source.startswith("/")
            else os.path.normpath(os.path.join(bundle, mount.source))
        )
        if (mount.type == "bind" or "bind" in mount.options or "rbind" in mount.options) and (
            os.path.exists(source)
        ):
            layers.append(
                _rootfs.Layer(os.path.realpath(source), _container_path(mount.destination))
            )
    return _rootfs.Image("bundle", tuple(layers))


def check_command(spec: Spec, image: _rootfs.Image) -> None:
    """Fail at create, as runc does, when the process's program is not in ``image``
    (:func:`bundle_image`; SpawnError: ``exec /bin/nope: No such file or directory``, which
    Podman maps to 127)."""
    assert spec.process is not None
    process = spec.process
    _rootfs.check_command(image, process.args[0], search_path(process.env), process.cwd)


def missing_cwd(spec: Spec, image: _rootfs.Image) -> str | None:
    """The process's working directory when ``image`` lacks it, as the container resolves
    it (the image's symlinks followed): runc and crun make it (root's, 0755), so that a
    Kubernetes ``workingDir`` or ``ctr run --cwd`` the image does not have works."""
    assert spec.process is not None
    resolved, found = _rootfs.resolve_in_image(image, _container_path(spec.process.cwd))
    return None if found else resolved


def id_maps(spec: Spec) -> tuple[str, str] | None:
    """The uid_map and gid_map texts of a user-namespaced container."""
    if spec.linux is None or not spec.linux.uid_mappings:
        return None

    def text(mappings: tuple[IDMapping, ...]) -> str:
        return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)

    return text(spec.linux.uid_mappings), text(spec.linux.gid_mappings)


def host_uid(spec: Spec, uid: int) -> int | None:
    """The host uid that the container's ``uid`` is (None: its user namespace does not
    map it)."""
    if spec.linux is None or not spec.linux.uid_mappings:
        return uid
    for m in spec.linux.uid_mappings:
        if m.container_id <= uid < m.container_id + m.size:
            return m.host_id + uid - m.container_id
    return None


_PROC_NS = {Namespace.NET: "net", Namespace.IPC: "ipc", Namespace.UTS: "uts"}


def sysctl_namespaces(spec: Spec) -> frozenset[Namespace]:
    """The namespaces whose sysctls the container may set: those it makes, and those it
    joins by path (a pod's: Podman's network namespace is made apart and given by path)
    unless the path is this runtime's own namespace, the host's, as runc checks."""
    owned = set(namespaces(spec))
    for kind, path in joined(spec):
        if kind not in _PROC_NS:
            continue
        try:
            there = os.stat(path)
        except OSError:  # the join fails and names why (boxd._native), not a sysctl
            owned.add(kind)
            continue
        here = os.stat(f"/proc/self/ns/{_PROC_NS[kind]}")
        if (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
            owned.add(kind)
    return frozenset(owned)


def sysctls(spec: Spec, spaces: frozenset[Namespace]) -> dict[str, str]:
    """The spec's sysctls, each checked to belong to a namespace the container owns
    (``spaces``, see :func:`sysctl_namespaces`)."""
    values = spec.linux.sysctl if spec.linux else {}
    for key in values:
        owner = next((ns for prefix, ns in _NAMESPACED_SYSCTLS if key.startswith(prefix)), None)
        if owner is None:
            raise SpecError(
                f"config.json: linux.sysctl {key}: not a namespaced sysctl "
                "(it would change the host)"
            )
        if owner not in spaces:
            raise SpecError(
                f"config.json: linux.sysctl {key}: the container shares the host's "
                f"{owner.describe()} namespace"
            )
        if "/" in key or ".." in key:
            raise SpecError(f"config.json: linux.sysctl {key}: invalid name")
    return dict(values)


def _overlap(a: DeviceRule, b: DeviceRule) -> bool:
    """Whether some device and access is named by both rules."""
    return (
        (a.kind == "a" or b.kind == "a" or a.kind == b.kind)
        and (a.major is None or b.major is None or a.major == b.major)
        and (a.minor is None or b.minor is None or a.minor == b.minor)
        and bool(set(a.access) & set(b.access))
    )


# What runc and crun allow beside boxd's list whatever the spec says: making any device
# node (mknod, with CAP_MKNOD: Podman's default capabilities have it), not opening it.
MKNOD_ANY = (DeviceRule("c", None, None, "m"), DeviceRule("b", None, None, "m"))


def device_rules(spec: Spec) -> tuple[DeviceRule, ...]:
    """What the device cgroup allows beyond boxd's list (:data:`boxd._cgroup.ALLOWED_DEVICES`):
    :data:`MKNOD_ANY`, which with that list is what runc appends as its defaults (so the
    nodes of ``linux.devices``, which the container's process makes from inside its cgroup
    where runc makes them before it sets the rules, may be made), and the allow rules of
    ``linux.resources.devices``, in order (a deny of everything drops those before it; a
    deny before any allow is what the default is).  A deny of some devices after an allow
    that covers them is refused: an allowlist cannot say it."""
    rules: list[DeviceRule] = []
    linux = spec.linux
    resources = linux.resources if linux is not None else None
    for i, entry in enumerate(resources.devices if resources is not None else ()):
        where = f"config.json: linux.resources.devices[{i}]"
        try:
            rule = DeviceRule(entry.type or "a", entry.major, entry.minor, entry.access or "rwm")
        except ValueError as exc:
            raise SpecError(f"{where}: {exc}") from None
        if entry.allow:
            rules.append(rule)
        elif rule.kind == "a" and rule.major is None and rule.minor is None:
            rules.clear()
        elif any(_overlap(rule, earlier) for earlier in rules):
            raise SpecError(
                f"{where}: a deny rule ({rule}) after an allow rule that covers it is not "
                "supported (boxd keeps an allowlist)"
            )
    return (*MKNOD_ANY, *rules)


def limits(resources: Resources | None) -> Limits:
    """boxd's cgroup limits for the spec's resources; what boxd cannot enforce is refused."""
    if resources is None:
        return Limits()
    refused = []
    memory, cpu = resources.memory, resources.cpu
    if memory is not None and (memory.kernel is not None or memory.kernel_tcp is not None):
        refused.append("linux.resources.memory.kernel/kernelTCP")
    if cpu is not None:
        if cpu.idle:
            refused.append("linux.resources.cpu.idle")
        if cpu.burst:
            refused.append("linux.resources.cpu.burst")
    if any(h.get("limit") for h in resources.hugepage_limits):
        refused.append("linux.resources.hugepageLimits")
    if resources.rdma:
        refused.append("linux.resources.rdma")
    if resources.unified:
        refused.append("linux.resources.unified")
    if refused:
        raise SpecError(f"config.json: {', '.join(refused)}: not supported by boxd-runtime")
    out: dict[str, Any] = {}
    if memory is not None:
        if memory.limit is not None and memory.limit > 0:
            out["memory"] = memory.limit
        if memory.swap is not None and memory.swap != 0:
            out["memory_swap"] = memory.swap
        if memory.reservation is not None and memory.reservation > 0:
            out["memory_reservation"] = memory.reservation
        if memory.swappiness is not None and memory.swappiness != -1:
            out["memory_swappiness"] = memory.swappiness
        if memory.disable_oom_killer:
            out["oom_kill_disable"] = True
    if cpu is not None:
        if cpu.quota is not None and cpu.quota > 0:
            out["cpus"] = cpu.quota / (cpu.period or CPU_PERIOD)
        if cpu.shares:
            out["cpu_shares"] = cpu.shares
        if cpu.cpus:
            out["cpuset_cpus"] = cpu.cpus
        if cpu.mems:
            out["cpuset_mems"] = cpu.mems
        if cpu.realtime_period:
            out["cpu_rt_period"] = cpu.realtime_period
        if cpu.realtime_runtime:
            out["cpu_rt_runtime"] = cpu.realtime_runtime
    if resources.pids is not None and resources.pids.limit:  # 0 leaves it, as runc reads it
        out["pids_limit"] = resources.pids.limit
    if resources.block_io:
        out.update(_block_io(resources.block_io))
    return Limits(**out)


# linux.resources.blockIO's device lists -> the fields of Limits.
_BLOCK_IO_LISTS = {
    "weightDevice": ("blkio_weight_device", "weight"),
    "throttleReadBpsDevice": ("device_read_bps", "rate"),
    "throttleWriteBpsDevice": ("device_write_bps", "rate"),
    "throttleReadIOPSDevice": ("device_read_iops", "rate"),
    "throttleWriteIOPSDevice": ("device_write_iops", "rate"),
}
# A Limits field -> where the spec sets it (for a refusal in the spec's words).
SPEC_FIELDS = {
    "memory_swappiness": "linux.resources.memory.swappiness",
    "oom_kill_disable": "linux.resources.memory.disableOOMKiller",
    "blkio_weight": "linux.resources.blockIO.weight",
    "blkio_weight_device": "linux.resources.blockIO.weightDevice",
}


def check_applies(host: CgroupHost, limits: Limits, source: str) -> None:
    """A runtime cannot warn as Docker does: what this host would ignore is refused."""
    drop, _ = host.ignored(limits)
    if drop:
        field, why = next(iter(drop.items()))
        raise SpecError(f"{source}: {SPEC_FIELDS[field]}: cannot be applied here: {why}")


def _block_io(block_io: dict[str, Any]) -> dict[str, Any]:
    """linux.resources.blockIO as Limits fields (leafWeight, of CFQ alone, is refused)."""
    where = "config.json: linux.resources.blockIO"

    def number(value: object, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f"{where}.{what}: expected an integer, got {value!r}")
        return value

    unknown = set(block_io) - {"weight", "leafWeight", *_BLOCK_IO_LISTS}
    if unknown:
        raise SpecError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    if block_io.get("leafWeight"):
        raise SpecError(f"{where}.leafWeight: not supported by boxd-runtime")
    out: dict[str, Any] = {}
    if block_io.get("weight"):
        out["blkio_weight"] = number(block_io["weight"], "weight")
    for key, (field, value_key) in _BLOCK_IO_LISTS.items():
        rows = block_io.get(key) or []
        if not isinstance(rows, list):
            raise SpecError(f"{where}.{key}: expected a list, got {rows!r}")
        devices = []
        for i, row in enumerate(rows):
            what = f"{key}[{i}]"
            if not isinstance(row, dict):
                raise SpecError(f"{where}.{what}: expected an object, got {row!r}")
            if row.get("leafWeight"):
                raise SpecError(f"{where}.{what}.leafWeight: not supported by boxd-runtime")
            major = number(row.get("major"), f"{what}.major")
            minor = number(row.get("minor"), f"{what}.minor")
            devices.append((f"{major}:{minor}", number(row.get(value_key), f"{what}.{value_key}")))
        if devices:
            out[field] = tuple(devices)
    return out

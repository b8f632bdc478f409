"""Host devices in a container: Docker's ``--device`` and ``--device-cgroup-rule``.

``--device HOST[:CONTAINER][:PERMISSIONS]`` (the Engine API's ``HostConfig.Devices``:
``PathOnHost``, ``PathInContainer``, ``CgroupPermissions``) gives the container the host's
device node ``HOST`` at ``CONTAINER`` (default: the same path), and lets its device cgroup
allow ``PERMISSIONS`` (some of ``r``, ``w``, ``m``; default ``rwm``) on that node's type and
numbers.  A directory ``HOST`` gives every device node below it, at the same relative path
below ``CONTAINER``, as Docker does.  ``--device-cgroup-rule 'c 1:3 rwm'`` adds a rule to
the device cgroup alone (no node is made: the container may ``mknod`` it, given ``m``).
``--privileged`` gives, as Docker's, every device node of the host's /dev and allows all.

The node is made as runc makes it: ``mknod`` in the container's /dev with the host node's
type, numbers, permission bits, owner and group; in a user namespace, where ``mknod`` of a
device is not allowed, or without the ``m`` permission (the container's process makes its
mounts from inside its cgroup), the host's node is bound onto an empty file instead (its
owner then shows through the namespace's id map).  The device cgroup's rules
(v1 ``devices.allow``, or the v2 device program of :mod:`boxd._devices`) are boxd's
default allowlist plus these.

The mappings are checked without I/O when the configuration is made (:func:`check`), the
host paths at create (:func:`check_hosts`), and resolved again at each start
(:func:`resolve`): the node a path names may change between starts.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Sequence

import attrs

from . import _devicespecs
from ._devices import DeviceRule, parse_rule
from ._devicespecs import DEFAULT_PERMISSIONS
from ._native import MountKind, MountOp
from ._rootfs import _DEV_LINKS, _DEVICES, _mkdir_ops

# What boxd's own /dev holds in every container (see _rootfs): the standard nodes, by path,
# and the links and mounts that a host device cannot replace.
_STANDARD = {f"/dev/{name}": os.makedev(major, minor) for name, major, minor in _DEVICES}
_RESERVED = frozenset(f"/dev/{name}" for name, _ in _DEV_LINKS)
_MOUNTED = ("/dev/pts", "/dev/shm", "/dev/mqueue")


@attrs.frozen
class DeviceMapping:
    """One ``--device``: the host's path (a device node or a directory of them), the
    path in the container, and what the device cgroup allows on it."""

    host: str
    container: str
    permissions: str = DEFAULT_PERMISSIONS

    def __str__(self) -> str:
        """As ``--device`` takes it: ``/dev/fuse``, ``/dev/fuse:/dev/f:rw``."""
        text = self.host if self.container == self.host else f"{self.host}:{self.container}"
        return text if self.permissions == DEFAULT_PERMISSIONS else f"{text}:{self.permissions}"


@attrs.frozen
class HostDevice:
    """A device node to make: at ``container``, of ``kind`` (``c`` or ``b``) with the
    host node's numbers and permission bits; ``host`` is the node itself (bound in a user
    namespace)."""

    host: str
    container: str
    kind: str
    major: int
    minor: int
    mode: int
    permissions: str
    uid: int = 0  # the host node's owner and group, which a made node gets too
    gid: int = 0

    def rule(self) -> DeviceRule:
        return DeviceRule(self.kind, self.major, self.minor, self.permissions)


def parse(text: str) -> DeviceMapping:
    """Docker's ``HOST[:CONTAINER][:PERMISSIONS]`` (see :func:`boxd._devicespecs.parse`)."""
    return DeviceMapping(*_devicespecs.parse(text))


def check(mapping: DeviceMapping, typed: str | None = None) -> None:
    """What a mapping must be, whoever sent it (see :func:`boxd._devicespecs.check`)."""
    what = typed if typed is not None else mapping
    _devicespecs.check(mapping.host, mapping.container, mapping.permissions, what)


def parse_cgroup_rule(text: str) -> DeviceRule:
    """``--device-cgroup-rule 'c 1:3 rwm'`` (Docker's syntax, the v1 ``devices.allow``'s:
    type ``a``, ``b`` or ``c``, numbers or ``*``)."""
    try:
        return parse_rule(text)
    except ValueError as exc:
        reason = str(exc).partition(": ")[2] or str(exc)
        raise ValueError(f"invalid --device-cgroup-rule {text!r}: {reason}") from None


def check_all(
    mappings: Sequence[DeviceMapping], rules: Sequence[str], *, read_only_root: bool
) -> None:
    """:func:`check` for each mapping, no container path twice, rules that parse; with a
    read-only root a node can only be made in the container's /dev (a tmpfs)."""
    seen: set[str] = set()
    for mapping in mappings:
        check(mapping)
        path = posixpath.normpath(mapping.container)
        if path in seen:
            raise _devicespecs.invalid(mapping, f"{path} is given twice")
        seen.add(path)
        if read_only_root and not path.startswith("/dev/"):
            raise _devicespecs.invalid(
                mapping, f"with --read-only a device can only be placed below /dev, not {path}"
            )
    for rule in rules:
        parse_cgroup_rule(rule)


def _node(mapping: DeviceMapping, host: str, container: str) -> HostDevice | None:
    """The device at ``host`` (lstat: a link is not followed), None if it is none."""
    st = os.lstat(host)
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return HostDevice(
        host=host,
        container=container,
        kind=kind,
        major=os.major(st.st_rdev),
        minor=os.minor(st.st_rdev),
        mode=stat.S_IMODE(st.st_mode),
        permissions=mapping.permissions,
        uid=st.st_uid,
        gid=st.st_gid,
    )


def _below_mount(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in _MOUNTED)


def resolve(mapping: DeviceMapping) -> list[HostDevice]:
    """The nodes a mapping gives, read from the host now (its path resolved through
    symlinks first, as Docker does).  A directory gives every device node below it (links
    are not followed, the container's own /dev/pts, /dev/shm and /dev/mqueue are left
    out).  ValueError naming the mapping when the path is missing or holds no device."""
    try:
        real = os.path.realpath(mapping.host, strict=True)
        st = os.stat(real)
    except OSError as exc:
        raise _devicespecs.invalid(mapping, f"{mapping.host}: {exc.strerror}") from None
    target = posixpath.normpath(mapping.container)
    if not stat.S_ISDIR(st.st_mode):
        device = _node(mapping, real, target)
        if device is None:
            raise _devicespecs.invalid(
                mapping, f"{mapping.host} is not a device node (nor a directory)"
            )
        return [device]
    found = []
    for top, dirs, files in os.walk(real):
        for name in sorted(files):
            host = os.path.join(top, name)
            container = posixpath.join(target, os.path.relpath(host, real))
            if _below_mount(container) or container in _RESERVED:
                continue
            try:
                device = _node(mapping, host, container)
            except OSError:  # gone meanwhile
                continue
            if device is not None:
                found.append(device)
        dirs.sort()
    if not found:  # dockerd's words
        raise _devicespecs.invalid(mapping, f'"{mapping.host}": not a device node, nor a '
                                   "directory holding one")  # fmt: skip
    return found


def resolve_all(mappings: Iterable[DeviceMapping]) -> list[HostDevice]:
    """Every mapping's nodes; a single node on a path boxd's /dev reserves is refused
    (a directory's are left out), and one the container gets anyway (the same /dev/null)
    is not made twice."""
    devices = []
    for mapping in mappings:
        for device in resolve(mapping):
            if device.container in _RESERVED or _below_mount(device.container):
                raise _devicespecs.invalid(
                    mapping, f"{device.container} is boxd's own in every container"
                )
            standard = _STANDARD.get(device.container)
            if standard is not None and standard != os.makedev(device.major, device.minor):
                raise _devicespecs.invalid(
                    mapping,
                    f"{device.container} is boxd's own in every container "
                    f"({os.major(standard)}:{os.minor(standard)})",
                )
            devices.append(device)
    return devices


def check_hosts(mappings: Iterable[DeviceMapping]) -> None:
    """At create: every host path names a device node or a directory (a start reads them
    again)."""
    resolve_all(mappings)


def mount_ops(devices: Sequence[HostDevice], *, userns: bool) -> tuple[MountOp, ...]:
    """The steps that make ``devices`` in the container, after its /dev is mounted: the
    parent directories, then ``mknod`` (or, in a user namespace or without ``m``, the
    host's node bound on an empty file).  A node boxd's /dev already has is left as it is."""
    ops: list[MountOp] = []
    made: set[str] = set()
    for device in devices:
        if device.container in _STANDARD:
            continue
        for mkdir in _mkdir_ops(posixpath.dirname(device.container)):
            if mkdir.target not in made:
                made.add(mkdir.target)
                ops.append(mkdir)
        if userns or "m" not in device.permissions:
            # The container's process is in its cgroup from the start: without ``m`` its
            # mknod would be refused (runc makes the node before it sets the cgroup's
            # rules); a bound node is opened under the same rules.
            ops.append(MountOp(MountKind.BIND_DEV, device.container, source=device.host))
        else:
            kind = stat.S_IFCHR if device.kind == "c" else stat.S_IFBLK
            ops.append(
                MountOp(
                    MountKind.MKNOD,
                    device.container,
                    mode=kind | device.mode,
                    dev=os.makedev(device.major, device.minor),
                    flags=device.uid | device.gid << 32,
                )
            )
    return tuple(ops)


def cgroup_rules(devices: Sequence[HostDevice], rules: Sequence[str]) -> tuple[DeviceRule, ...]:
    """What the device cgroup allows beyond boxd's default list: each device with its
    permissions, then each ``--device-cgroup-rule``."""
    return tuple([d.rule() for d in devices]) + tuple([parse_cgroup_rule(r) for r in rules])


def for_start(
    mappings: Sequence[DeviceMapping], rules: Sequence[str], *, privileged: bool
) -> tuple[list[HostDevice], tuple[DeviceRule, ...]]:
    """The nodes a start makes and what its device cgroup allows beyond boxd's list.
    ``--privileged``, as Docker: every device node of the host's /dev (but its console
    and what boxd's /dev holds or mounts over) and every device allowed."""
    devices = resolve_all(mappings)
    if not privileged:
        return devices, cgroup_rules(devices, rules)
    given = {d.container for d in devices}
    for device in resolve(DeviceMapping("/dev", "/dev")):
        if device.container not in given and device.container != "/dev/console":
            devices.append(device)
    return devices, (DeviceRule("a", None, None, DEFAULT_PERMISSIONS),)

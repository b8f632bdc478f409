"""The bundle's ``config.json`` (OCI runtime-spec 1.0 to 1.2) as strict records.

Field names follow the spec (camelCase keys, snake_case attributes).  Types are checked
strictly (``"yes"`` is not ``true``, ``1`` is not ``true``, ``true`` is not ``1``), and
errors name the bad value's path (``expected bool, got str @ $.process.terminal``), as
boxd's cattrs converter words them.  Keys the records do not model are ignored when
structuring but kept: the state keeps the bundle's whole document, verbatim, and
:func:`check_supported` refuses the ones that would change isolation if ignored.

The records are plain classes read from a table of their fields, not attrs classes
structured by cattrs: ``create`` is a process of its own for every container, and
importing attrs and cattrs and generating the records' methods cost it more than all it
does with them.
"""

from __future__ import annotations

import os

from ._state import loads

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Self, TypeVar

    T = TypeVar("T", bound="_Record")
    Kind = Callable[[object, str], Any]


class SpecError(ValueError):
    """A config.json that cannot be run; the message names the bad value."""


class _Bad(Exception):
    """A value that does not fit; ``str()`` is ``what is wrong @ $.its.path``."""


_REQUIRED = object()


def _name(value: object) -> str:
    return type(value).__name__


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected str, got {_name(value)} @ {path}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise _Bad(f"expected int, got a boolean @ {path}")
    if not isinstance(value, int):
        raise _Bad(f"expected int, got {_name(value)} @ {path}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected bool, got {_name(value)} @ {path}")
    return value


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"expected an object, got {_name(value)} @ {path}")
    return value


def _strings(value: object, path: str) -> dict[str, str]:
    """An object of strings (annotations, sysctl, unified); null is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _Bad(f"expected an object of strings @ {path}")
    return dict(value)


def _optional(kind: Kind) -> Kind:
    def structure(value: object, path: str) -> Any:
        return None if value is None else kind(value, path)

    return structure


def _list(kind: Kind) -> Kind:
    """A list as a tuple; null is empty."""

    def structure(value: object, path: str) -> tuple[Any, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise _Bad(f"expected a list, got {_name(value)} @ {path}")
        return tuple([kind(v, f"{path}[{i}]") for i, v in enumerate(value)])

    return structure


def _record(cls: type[_Record]) -> Kind:
    return cls._structure


_STRS = _list(_str)


class _Record:
    """A frozen record of the spec; ``_FIELDS``: (attribute, JSON key, kind, default),
    in the spec's order; the default ``_REQUIRED`` makes the key required, ``dict`` is a
    new empty object."""

    _FIELDS: tuple[tuple[str, str, Kind, object], ...] = ()

    def __init__(self, **values: Any) -> None:
        for name, _, _, default in self._FIELDS:
            value = values.pop(name, default)
            if value is _REQUIRED:
                raise TypeError(f"{type(self).__name__}: {name} is required")
            object.__setattr__(self, name, {} if value is dict else value)
        if values:
            raise TypeError(f"{type(self).__name__}: no field {', '.join(values)}")

    @classmethod
    def _structure(cls, data: object, path: str) -> Any:
        if not isinstance(data, dict):
            raise _Bad(f"expected an object, got {_name(data)} @ {path}")
        record = cls.__new__(cls)
        for name, key, kind, default in cls._FIELDS:
            if key in data:
                value = kind(data[key], f"{path}.{key}")
            elif default is _REQUIRED:
                raise _Bad(f"required field missing @ {path}.{key}")
            else:
                value = {} if default is dict else default
            object.__setattr__(record, name, value)
        return record

    def evolve(self, **changes: Any) -> Self:
        """A copy with ``changes``."""
        values = {name: getattr(self, name) for name, _, _, _ in self._FIELDS}
        return type(self)(**{**values, **changes})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f[0]) == getattr(other, f[0]) for f in self._FIELDS)

    def __hash__(self) -> int:
        return hash(tuple([getattr(self, f[0]) for f in self._FIELDS]))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f[0]}={getattr(self, f[0])!r}" for f in self._FIELDS)
        return f"{type(self).__name__}({fields})"


def _fields(*fields: tuple[str, str, Kind, object]) -> tuple[tuple[str, str, Kind, object], ...]:
    return fields


class User(_Record):
    uid: int
    gid: int
    umask: int | None
    additional_gids: tuple[int, ...]
    username: str
    _FIELDS = _fields(
        ("uid", "uid", _int, 0),
        ("gid", "gid", _int, 0),
        ("umask", "umask", _optional(_int), None),
        ("additional_gids", "additionalGids", _list(_int), ()),
        ("username", "username", _str, ""),
    )


class CapabilitySets(_Record):
    bounding: tuple[str, ...]
    effective: tuple[str, ...]
    inheritable: tuple[str, ...]
    permitted: tuple[str, ...]
    ambient: tuple[str, ...]
    _FIELDS = _fields(
        ("bounding", "bounding", _STRS, ()),
        ("effective", "effective", _STRS, ()),
        ("inheritable", "inheritable", _STRS, ()),
        ("permitted", "permitted", _STRS, ()),
        ("ambient", "ambient", _STRS, ()),
    )


class Rlimit(_Record):
    type: str
    hard: int
    soft: int
    _FIELDS = _fields(
        ("type", "type", _str, _REQUIRED),
        ("hard", "hard", _int, _REQUIRED),
        ("soft", "soft", _int, _REQUIRED),
    )


class ConsoleSize(_Record):
    height: int
    width: int
    _FIELDS = _fields(("height", "height", _int, _REQUIRED), ("width", "width", _int, _REQUIRED))


class Process(_Record):
    cwd: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    user: User
    terminal: bool
    console_size: ConsoleSize | None
    capabilities: CapabilitySets | None
    rlimits: tuple[Rlimit, ...]
    no_new_privileges: bool
    oom_score_adj: int | None
    apparmor_profile: str
    selinux_label: str
    _FIELDS = _fields(
        ("cwd", "cwd", _str, _REQUIRED),
        ("args", "args", _STRS, ()),
        ("env", "env", _STRS, ()),
        ("user", "user", _record(User), User()),
        ("terminal", "terminal", _bool, False),
        ("console_size", "consoleSize", _optional(_record(ConsoleSize)), None),
        ("capabilities", "capabilities", _optional(_record(CapabilitySets)), None),
        ("rlimits", "rlimits", _list(_record(Rlimit)), ()),
        ("no_new_privileges", "noNewPrivileges", _bool, False),
        ("oom_score_adj", "oomScoreAdj", _optional(_int), None),
        ("apparmor_profile", "apparmorProfile", _str, ""),
        ("selinux_label", "selinuxLabel", _str, ""),
    )


class Root(_Record):
    path: str
    readonly: bool
    _FIELDS = _fields(("path", "path", _str, _REQUIRED), ("readonly", "readonly", _bool, False))


class IDMapping(_Record):
    container_id: int
    host_id: int
    size: int
    _FIELDS = _fields(
        ("container_id", "containerID", _int, _REQUIRED),
        ("host_id", "hostID", _int, _REQUIRED),
        ("size", "size", _int, _REQUIRED),
    )


_ID_MAPPINGS = _list(_record(IDMapping))


class Mount(_Record):
    destination: str
    type: str
    source: str
    options: tuple[str, ...]
    uid_mappings: tuple[IDMapping, ...]
    gid_mappings: tuple[IDMapping, ...]
    _FIELDS = _fields(
        ("destination", "destination", _str, _REQUIRED),
        ("type", "type", _str, ""),
        ("source", "source", _str, ""),
        ("options", "options", _STRS, ()),
        ("uid_mappings", "uidMappings", _ID_MAPPINGS, ()),
        ("gid_mappings", "gidMappings", _ID_MAPPINGS, ()),
    )


class Hook(_Record):
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None
    _FIELDS = _fields(
        ("path", "path", _str, _REQUIRED),
        ("args", "args", _STRS, ()),
        ("env", "env", _STRS, ()),
        ("timeout", "timeout", _optional(_int), None),
    )


_HOOKS = _list(_record(Hook))


class Hooks(_Record):
    prestart: tuple[Hook, ...]
    create_runtime: tuple[Hook, ...]
    create_container: tuple[Hook, ...]
    start_container: tuple[Hook, ...]
    poststart: tuple[Hook, ...]
    poststop: tuple[Hook, ...]
    _FIELDS = _fields(
        ("prestart", "prestart", _HOOKS, ()),
        ("create_runtime", "createRuntime", _HOOKS, ()),
        ("create_container", "createContainer", _HOOKS, ()),
        ("start_container", "startContainer", _HOOKS, ()),
        ("poststart", "poststart", _HOOKS, ()),
        ("poststop", "poststop", _HOOKS, ()),
    )


class LinuxNamespace(_Record):
    type: str
    path: str
    _FIELDS = _fields(("type", "type", _str, _REQUIRED), ("path", "path", _str, ""))


_OPT_INT = _optional(_int)
_OPT_BOOL = _optional(_bool)
_OPT_STR = _optional(_str)


class Device(_Record):
    path: str
    type: str
    major: int
    minor: int
    file_mode: int | None
    uid: int | None
    gid: int | None
    _FIELDS = _fields(
        ("path", "path", _str, _REQUIRED),
        ("type", "type", _str, _REQUIRED),
        ("major", "major", _int, 0),
        ("minor", "minor", _int, 0),
        ("file_mode", "fileMode", _OPT_INT, None),
        ("uid", "uid", _OPT_INT, None),
        ("gid", "gid", _OPT_INT, None),
    )


class DeviceRule(_Record):
    allow: bool
    type: str | None
    major: int | None
    minor: int | None
    access: str | None
    _FIELDS = _fields(
        ("allow", "allow", _bool, _REQUIRED),
        ("type", "type", _OPT_STR, None),
        ("major", "major", _OPT_INT, None),
        ("minor", "minor", _OPT_INT, None),
        ("access", "access", _OPT_STR, None),
    )


class Memory(_Record):
    limit: int | None
    reservation: int | None
    swap: int | None
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool | None
    use_hierarchy: bool | None
    check_before_update: bool | None
    _FIELDS = _fields(
        ("limit", "limit", _OPT_INT, None),
        ("reservation", "reservation", _OPT_INT, None),
        ("swap", "swap", _OPT_INT, None),
        ("kernel", "kernel", _OPT_INT, None),
        ("kernel_tcp", "kernelTCP", _OPT_INT, None),
        ("swappiness", "swappiness", _OPT_INT, None),
        ("disable_oom_killer", "disableOOMKiller", _OPT_BOOL, None),
        ("use_hierarchy", "useHierarchy", _OPT_BOOL, None),
        ("check_before_update", "checkBeforeUpdate", _OPT_BOOL, None),
    )


class CPU(_Record):
    shares: int | None
    quota: int | None
    burst: int | None
    period: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str
    mems: str
    idle: int | None
    _FIELDS = _fields(
        ("shares", "shares", _OPT_INT, None),
        ("quota", "quota", _OPT_INT, None),
        ("burst", "burst", _OPT_INT, None),
        ("period", "period", _OPT_INT, None),
        ("realtime_runtime", "realtimeRuntime", _OPT_INT, None),
        ("realtime_period", "realtimePeriod", _OPT_INT, None),
        ("cpus", "cpus", _str, ""),
        ("mems", "mems", _str, ""),
        ("idle", "idle", _OPT_INT, None),
    )


class Pids(_Record):
    limit: int | None
    _FIELDS = _fields(("limit", "limit", _OPT_INT, None))


_OPT_OBJECT = _optional(_object)


class Resources(_Record):
    devices: tuple[DeviceRule, ...]
    memory: Memory | None
    cpu: CPU | None
    pids: Pids | None
    block_io: dict[str, Any] | None
    hugepage_limits: tuple[dict[str, Any], ...]
    network: dict[str, Any] | None
    rdma: dict[str, Any] | None
    unified: dict[str, str]
    _FIELDS = _fields(
        ("devices", "devices", _list(_record(DeviceRule)), ()),
        ("memory", "memory", _optional(_record(Memory)), None),
        ("cpu", "cpu", _optional(_record(CPU)), None),
        ("pids", "pids", _optional(_record(Pids)), None),
        ("block_io", "blockIO", _OPT_OBJECT, None),
        ("hugepage_limits", "hugepageLimits", _list(_object), ()),
        ("network", "network", _OPT_OBJECT, None),
        ("rdma", "rdma", _OPT_OBJECT, None),
        ("unified", "unified", _strings, dict),
    )


class Personality(_Record):
    domain: str
    flags: tuple[str, ...]
    _FIELDS = _fields(("domain", "domain", _str, _REQUIRED), ("flags", "flags", _STRS, ()))


class Linux(_Record):
    namespaces: tuple[LinuxNamespace, ...]
    uid_mappings: tuple[IDMapping, ...]
    gid_mappings: tuple[IDMapping, ...]
    devices: tuple[Device, ...]
    cgroups_path: str
    resources: Resources | None
    sysctl: dict[str, str]
    # The spec's seccomp section, checked by boxd's compiler (boxd/_seccomp.py).
    seccomp: dict[str, Any] | None
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    rootfs_propagation: str
    mount_label: str
    personality: Personality | None
    _FIELDS = _fields(
        ("namespaces", "namespaces", _list(_record(LinuxNamespace)), ()),
        ("uid_mappings", "uidMappings", _ID_MAPPINGS, ()),
        ("gid_mappings", "gidMappings", _ID_MAPPINGS, ()),
        ("devices", "devices", _list(_record(Device)), ()),
        ("cgroups_path", "cgroupsPath", _str, ""),
        ("resources", "resources", _optional(_record(Resources)), None),
        ("sysctl", "sysctl", _strings, dict),
        ("seccomp", "seccomp", _OPT_OBJECT, None),
        ("masked_paths", "maskedPaths", _STRS, ()),
        ("readonly_paths", "readonlyPaths", _STRS, ()),
        ("rootfs_propagation", "rootfsPropagation", _str, ""),
        ("mount_label", "mountLabel", _str, ""),
        ("personality", "personality", _optional(_record(Personality)), None),
    )


class Spec(_Record):
    oci_version: str
    root: Root | None
    process: Process | None
    hostname: str
    domainname: str
    mounts: tuple[Mount, ...]
    hooks: Hooks | None
    annotations: dict[str, str]
    linux: Linux | None
    _FIELDS = _fields(
        ("oci_version", "ociVersion", _str, _REQUIRED),
        ("root", "root", _optional(_record(Root)), None),
        ("process", "process", _optional(_record(Process)), None),
        ("hostname", "hostname", _str, ""),
        ("domainname", "domainname", _str, ""),
        ("mounts", "mounts", _list(_record(Mount)), ()),
        ("hooks", "hooks", _optional(_record(Hooks)), None),
        ("annotations", "annotations", _strings, dict),
        ("linux", "linux", _optional(_record(Linux)), None),
    )


def parse(document: object) -> Spec:
    """The records of a parsed config.json; :class:`SpecError` names what is wrong."""
    spec = structure(document, Spec, "config.json")
    # 1.0 to 1.2 are what the records model; a later 1.x document is read the same way
    # (what it adds is kept and ignored, or refused by check_supported where it matters),
    # as runc and crun read it.
    version = spec.oci_version.split("-")[0].split(".")
    if len(version) < 2 or version[0] != "1" or not version[1].isdigit():
        raise SpecError(f"config.json: ociVersion {spec.oci_version!r} is not supported (1.x)")
    assert isinstance(document, dict)  # structure() checked it
    check_supported(document, spec)
    return spec


def structure(data: object, cls: type[T], what: str) -> T:
    """``data`` as a ``cls`` record; :class:`SpecError` (``what: ... @ $.path``) if it
    does not fit."""
    if not isinstance(data, dict):
        raise SpecError(f"{what}: expected a JSON object")
    try:
        record: T = cls._structure(data, "$")
    except _Bad as exc:
        raise SpecError(f"{what}: {exc}") from None
    return record


def load(bundle: str) -> tuple[dict[str, Any], Spec]:
    """The bundle's config.json: the document as written, and its records."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            document = loads(f.read())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file (is --bundle the bundle directory?)") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: {exc}") from None
    return document, parse(document)


# Keys of the document that name a feature boxd-runtime does not implement and that would
# weaken or change isolation if ignored: (path, what to say).
_REFUSED_KEYS = (
    (("linux", "intelRdt"), "Intel RDT"),
    (("linux", "timeOffsets"), "time namespace offsets"),
    (("linux", "netDevices"), "moving network devices into the container"),
    (("windows",), "Windows containers"),
    (("vm",), "virtual-machine containers"),
    (("solaris",), "Solaris containers"),
    (("zos",), "z/OS containers"),
)


def check_supported(document: dict[str, Any], spec: Spec) -> None:
    """Refuse what boxd-runtime would otherwise silently ignore at isolation's cost."""
    for path, what in _REFUSED_KEYS:
        node: Any = document
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node:
            raise SpecError(f"config.json: {'.'.join(path)} ({what}) is not supported")
    if spec.root is None:
        raise SpecError("config.json: root is required (the container's root filesystem)")
    process = spec.process
    if process is not None:
        if process.apparmor_profile:
            raise SpecError(
                f"config.json: process.apparmorProfile {process.apparmor_profile!r}: "
                "AppArmor is not supported by boxd-runtime"
            )
        if process.selinux_label:
            raise SpecError(
                f"config.json: process.selinuxLabel {process.selinux_label!r}: "
                "SELinux is not supported by boxd-runtime"
            )
    for i, mount in enumerate(spec.mounts):
        if mount.uid_mappings or mount.gid_mappings:
            raise SpecError(
                f"config.json: mounts[{i}] ({mount.destination}): id-mapped mounts are not "
                "supported"
            )
    linux = spec.linux
    if linux is None:
        return
    if linux.mount_label:
        raise SpecError(
            f"config.json: linux.mountLabel {linux.mount_label!r}: SELinux is not supported"
        )
    seccomp = linux.seccomp or {}
    if seccomp.get("listenerPath"):
        raise SpecError("config.json: linux.seccomp.listenerPath (seccomp notify) is not supported")

"""The bundle's ``config.json`` (OCI runtime-spec 1.0 to 1.2) as strict attrs records.

Field names follow the spec (camelCase keys through attrs aliases).  Types are checked
strictly (the primitive hooks of :mod:`boxd._convert`: ``"yes"`` is not ``true``), and
errors name the bad value's path.  Keys the records do not model are ignored when
structuring but kept: the state keeps the bundle's whole document, verbatim, and
:func:`check_supported` refuses the ones that would change isolation if ignored.
"""

import json
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from .. import _convert

T = TypeVar("T")

_converter = _convert.converter.copy(forbid_extra_keys=False, use_alias=True)


def _tuple_hook(cls: Any) -> Any:
    item_type = cls.__args__[0]

    def structure(value: object, _: Any) -> tuple[Any, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(_converter.structure(v, item_type) for v in value)

    return structure


_converter.register_structure_hook_factory(
    lambda t: getattr(t, "__origin__", None) is tuple, _tuple_hook
)


def _dict_hook(value: object, _: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("expected an object of strings")
    return dict(value)


_converter.register_structure_hook_func(lambda t: t == dict[str, str], _dict_hook)
_converter.register_structure_hook_func(
    lambda t: t == dict[str, Any], lambda v, _: _expect_object(v)
)


def _expect_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


class SpecError(ValueError):
    """A config.json that cannot be run; the message names the bad value."""


@attrs.frozen
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = attrs.field(default=(), alias="additionalGids")
    username: str = ""


@attrs.frozen
class CapabilitySets:
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


@attrs.frozen
class Rlimit:
    type: str
    hard: int
    soft: int


@attrs.frozen
class ConsoleSize:
    height: int
    width: int


@attrs.frozen
class Process:
    cwd: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: User = User()
    terminal: bool = False
    console_size: ConsoleSize | None = attrs.field(default=None, alias="consoleSize")
    capabilities: CapabilitySets | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = attrs.field(default=False, alias="noNewPrivileges")
    oom_score_adj: int | None = attrs.field(default=None, alias="oomScoreAdj")
    apparmor_profile: str = attrs.field(default="", alias="apparmorProfile")
    selinux_label: str = attrs.field(default="", alias="selinuxLabel")


@attrs.frozen
class Root:
    path: str
    readonly: bool = False


@attrs.frozen
class IDMapping:
    container_id: int = attrs.field(alias="containerID")
    host_id: int = attrs.field(alias="hostID")
    size: int


@attrs.frozen
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = attrs.field(default=(), alias="uidMappings")
    gid_mappings: tuple[IDMapping, ...] = attrs.field(default=(), alias="gidMappings")


@attrs.frozen
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@attrs.frozen
class Hooks:
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = attrs.field(default=(), alias="createRuntime")
    create_container: tuple[Hook, ...] = attrs.field(default=(), alias="createContainer")
    start_container: tuple[Hook, ...] = attrs.field(default=(), alias="startContainer")
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


@attrs.frozen
class LinuxNamespace:
    type: str
    path: str = ""


@attrs.frozen
class Device:
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = attrs.field(default=None, alias="fileMode")
    uid: int | None = None
    gid: int | None = None


@attrs.frozen
class DeviceRule:
    allow: bool
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None


@attrs.frozen
class Memory:
    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = attrs.field(default=None, alias="kernelTCP")
    swappiness: int | None = None
    disable_oom_killer: bool | None = attrs.field(default=None, alias="disableOOMKiller")
    use_hierarchy: bool | None = attrs.field(default=None, alias="useHierarchy")
    check_before_update: bool | None = attrs.field(default=None, alias="checkBeforeUpdate")


@attrs.frozen
class CPU:
    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = attrs.field(default=None, alias="realtimeRuntime")
    realtime_period: int | None = attrs.field(default=None, alias="realtimePeriod")
    cpus: str = ""
    mems: str = ""
    idle: int | None = None


@attrs.frozen
class Pids:
    limit: int | None = None


@attrs.frozen
class Resources:
    devices: tuple[DeviceRule, ...] = ()
    memory: Memory | None = None
    cpu: CPU | None = None
    pids: Pids | None = None
    block_io: dict[str, Any] | None = attrs.field(default=None, alias="blockIO")
    hugepage_limits: tuple[dict[str, Any], ...] = attrs.field(default=(), alias="hugepageLimits")
    network: dict[str, Any] | None = None
    rdma: dict[str, Any] | None = None
    unified: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class Personality:
    domain: str
    flags: tuple[str, ...] = ()


@attrs.frozen
class Linux:
    namespaces: tuple[LinuxNamespace, ...] = ()
    uid_mappings: tuple[IDMapping, ...] = attrs.field(default=(), alias="uidMappings")
    gid_mappings: tuple[IDMapping, ...] = attrs.field(default=(), alias="gidMappings")
    devices: tuple[Device, ...] = ()
    cgroups_path: str = attrs.field(default="", alias="cgroupsPath")
    resources: Resources | None = None
    sysctl: dict[str, str] = attrs.Factory(dict)
    # The spec's seccomp section, checked by boxd's compiler (boxd/_seccomp.py).
    seccomp: dict[str, Any] | None = None
    masked_paths: tuple[str, ...] = attrs.field(default=(), alias="maskedPaths")
    readonly_paths: tuple[str, ...] = attrs.field(default=(), alias="readonlyPaths")
    rootfs_propagation: str = attrs.field(default="", alias="rootfsPropagation")
    mount_label: str = attrs.field(default="", alias="mountLabel")
    personality: Personality | None = None


@attrs.frozen
class Spec:
    oci_version: str = attrs.field(alias="ociVersion")
    root: Root | None = None
    process: Process | None = None
    hostname: str = ""
    domainname: str = ""
    mounts: tuple[Mount, ...] = ()
    hooks: Hooks | None = None
    annotations: dict[str, str] = attrs.Factory(dict)
    linux: Linux | None = None


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
        return _converter.structure(data, cls)
    except Exception as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            lines = cattrs.transform_error(exc, format_exception=_describe)
            raise SpecError(f"{what}: " + "; ".join(lines)) from None
        raise SpecError(f"{what}: {exc}") from None


def _describe(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


def load(bundle: Path) -> tuple[dict[str, Any], Spec]:
    """The bundle's config.json: the document as written, and its records."""
    path = bundle / "config.json"
    try:
        document = json.loads(path.read_bytes())
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

"""From a container's configuration to the one prepared plan the native spawn path runs.

All policy lives here, in Python: which namespaces, which mounts, which capabilities,
which seccomp program, which environment.  Nothing here touches the system except reading
a seccomp profile file and creating the container's overlay directories.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from . import _caps, _devicemap, _inroot, _masks, _nsmodes, _seccomp
from ._devices import DeviceRule
from ._hosts import hosts_lines
from ._native import MountKind, MountOp, Namespace, Rlimit, SpawnPlan
from ._netconfig import EtcNetwork, container_interfaces, interface_sysctls
from ._records import Container, ContainerConfig, ImageMount
from ._rootfs import (
    MS_BIND,
    MS_NODEV,
    MS_NOSUID,
    Image,
    container_dirs,
    container_mounts,
    id_mapped_layers,
    image_mount_sources,
    look_up,
    read_container_file,
)
from ._sysctl import parse_sysctl, proc_path
from ._ulimits import NAMES as ULIMIT_NAMES
from ._ulimits import open_files
from ._users import ExecUser, resolve_in

log = logging.getLogger("boxd.plan")

# How a container's files are read while its plan is built (see prepare).
ReadFile = Callable[[str], bytes | None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASE_NAMESPACES = frozenset(
    {Namespace.MOUNT, Namespace.PID, Namespace.UTS, Namespace.IPC, Namespace.CGROUP}
)


@functools.cache
def _default_seccomp(caps: int) -> bytes:
    return _seccomp.compile_profile(_seccomp.default_profile(), caps=caps)


def seccomp_program(setting: str, caps: int) -> bytes | None:
    """The BPF program for ``--security-opt seccomp=...`` (None: unconfined); ``caps`` is
    the container's bounding set, which Docker profiles' ``includes.caps`` rules test."""
    if setting == "unconfined":
        return None
    if setting == "default":
        return _default_seccomp(caps)
    if setting.startswith("{"):  # the profile itself (the Engine API's, checked at create)
        profile = _seccomp.profile_from_docker(json.loads(setting))
        return _seccomp.compile_profile(profile, caps=caps)
    return _seccomp.compile_profile(_seccomp.load_docker_profile(Path(setting)), caps=caps)


@attrs.frozen
class ExecSpec:
    """A process to start inside a running container (``boxctl exec``)."""

    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""  # empty: the container's working directory
    user: str = ""  # empty: the container's user
    tty: bool = False
    # Every capability (Docker's exec --privileged); the container's seccomp filter and
    # no_new_privs still hold, as with Docker.
    privileged: bool = False
    # With tty: its size from the start, (rows, columns); None: 24x80.
    console_size: tuple[int, int] | None = None


def check_exec(spec: ExecSpec) -> None:
    """The same checks a container's own command, env, workdir and user get."""
    ContainerConfig(  # validates on construction
        image="default",
        command=spec.command,
        env=spec.env,
        workdir=spec.workdir or "/",
        user=spec.user,
    )


def environment(
    container: Container,
    user: ExecUser,
    *,
    tty: bool,
    extra: tuple[str, ...] = (),
    links: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """Only PATH, HOSTNAME, HOME (the user's, from the image's passwd), TERM (with a tty),
    its default-bridge links' variables (``links``, see boxd._links) and what the image
    and the user set; a bare ``KEY`` unsets KEY, as in Docker."""
    env = {
        "PATH": DEFAULT_PATH,
        "HOSTNAME": _nsmodes.hostname(container),
        "HOME": user.home,
    }
    if tty:
        env["TERM"] = "xterm"
    for item in (*links, *container.config.env, *extra):
        key, eq, value = item.partition("=")
        if eq:
            env[key] = value
        else:
            env.pop(key, None)
    if not env.get("HOME"):  # an empty one is the user's, as runc sets it
        env["HOME"] = user.home
    return tuple([f"{k}={v}" for k, v in env.items()])


def _search_path(env: tuple[str, ...]) -> tuple[str, ...]:
    path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    return tuple([p for p in path.split(":") if p.startswith("/")])


DEFAULT_ID_RANGE = (100_000, 65_536)


def id_range(path: str = "/etc/subuid", user: str = "boxd") -> tuple[int, int]:
    """The host ids a user-namespaced container's 0..n-1 map to: the ``boxd`` entry of
    /etc/subuid (and the same range is used for gids), else 100000:65536."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return DEFAULT_ID_RANGE
    for line in lines:
        name, _, rest = line.partition(":")
        start, _, count = rest.partition(":")
        if name == user and start.isdigit() and count.isdigit():
            return int(start), int(count)
    return DEFAULT_ID_RANGE


def namespaces(container: Container) -> frozenset[Namespace]:
    """The namespaces the container's init makes (``--network container:NAME`` joins that
    container's network namespace instead: see ``ns_paths`` of :func:`build`; ``--pid``,
    ``--ipc``, ``--uts`` host or container:NAME, see :mod:`boxd._nsmodes`)."""
    extra = set()
    if container.config.network != "host" and not shares_network(container):
        extra.add(Namespace.NET)
    if container.config.userns:
        extra.add(Namespace.USER)
    return (BASE_NAMESPACES | extra) - _nsmodes.shared(container.config)


def shares_network(container: Container) -> bool:
    return container.config.network.startswith("container:")


def etc_files(container: Container, net: EtcNetwork | None = None) -> dict[str, str]:
    """The container's own /etc/hostname and /etc/hosts (its hostname resolving to its
    address on its network, else to 127.0.1.1 as Debian does for a host's name, then the
    ``--add-host`` entries; the host's own with ``--network host`` and no ``--add-host``,
    as Docker's), and its /etc/resolv.conf when its network gives one, written over the
    image's at each start."""
    name = _nsmodes.hostname(container)
    hosts = net.hosts if net is not None else None
    if hosts is None:
        own = f"127.0.1.1\t{name}"
        if net is not None and net.address:
            addresses = (net.address, *net.others, *net.addresses6)
            own = "\n".join(f"{a}\t{' '.join(net.names)}" for a in addresses)
            own += "".join(f"\n{line}" for line in net.links)
        hosts = (
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\n"
            + hosts_lines(container.config.extra_hosts, net.host_gateway if net else "")
        )
    files = {"/etc/hostname": f"{name}\n", "/etc/hosts": hosts}
    if net is not None and net.resolv is not None:
        files["/etc/resolv.conf"] = net.resolv
    return files


# An empty file at the root of every container, as Docker's init layer has it: scripts and
# tools (Ansible's facts, is-docker, testcontainers) look for it to know they run in a
# container.  Written at each start like /etc/hosts, never part of diff, commit or export.
DOCKERENV = "/.dockerenv"


def refresh_etc(container: Container, pid: int, net: EtcNetwork) -> None:
    """A running container's /etc/hosts and /etc/resolv.conf written again (its networks
    changed: ``network connect``/``disconnect``), in its root as it sees it; a file the
    user bound there (``-v``) or a read-only root is left alone."""
    bound = {posixpath.normpath(v.container) for v in container.config.volumes}
    for path, text in etc_files(container, net).items():
        if path == "/etc/hostname" or path in bound:
            continue
        try:
            _inroot.rewrite_regular(f"/proc/{pid}/root", path, text.encode())
        except OSError as exc:
            log.warning("%s: %s not updated: %s", container.short_id, path, exc)


# Where ``--init`` shows boxd-init in the container: on its own /dev (a fresh tmpfs at each
# start), so nothing is written into the image or the container's layer.
INIT_PATH = "/dev/init"
INIT_PROGRAM = "boxd-init"


@functools.cache
def init_program() -> str:
    """The host path of boxd-init, installed beside the extension (see setup.py)."""
    spec = importlib.util.find_spec("sandbox_native")
    path = Path(spec.origin).with_name(INIT_PROGRAM) if spec and spec.origin else None
    if path is None or not os.access(path, os.X_OK):
        raise ValueError(
            f"--init: {INIT_PROGRAM} is not installed beside sandbox_native ({path}); "
            "reinstall boxd"
        )
    return str(path)


def init_mounts(program: str) -> tuple[MountOp, ...]:
    """boxd-init bound read-only (nosuid, nodev) at :data:`INIT_PATH`."""
    return (
        MountOp(MountKind.MKFILE, INIT_PATH, mode=0o755),
        MountOp(MountKind.MOUNT, INIT_PATH, source=program, flags=MS_BIND),
        MountOp(MountKind.REMOUNT_RO, INIT_PATH, flags=MS_NOSUID | MS_NODEV),
    )


# Docker's settings for a container with a network namespace of its own: every port
# bindable without CAP_NET_BIND_SERVICE (a ``-u`` user's server on port 80) and ICMP echo
# sockets for every group (ping without CAP_NET_RAW; not in a user namespace, whose groups
# beyond its map the range could not name).
_UNPRIVILEGED_PORTS = ("net.ipv4.ip_unprivileged_port_start", "0")
_PING_GROUPS = ("net.ipv4.ping_group_range", "0 2147483647")


@functools.cache  # the running kernel's
def _kernel_has(key: str) -> bool:
    return os.path.exists(proc_path(key))


def _network_defaults(container: Container) -> dict[str, str]:
    """The sysctls Docker sets in a container's own network namespace (none with
    ``--network host`` or ``container:NAME``), where the kernel has them."""
    if Namespace.NET not in namespaces(container):
        return {}
    defaults = [_UNPRIVILEGED_PORTS] + ([] if container.config.userns else [_PING_GROUPS])
    return {key: value for key, value in defaults if _kernel_has(key)}


def sysctl_ops(container: Container) -> tuple[MountOp, ...]:
    """``--sysctl`` settings, written to the container's /proc/sys (in its namespaces)
    before the masks make /proc/sys read-only; of a key given twice the last counts.
    ``--domainname`` is its UTS namespace's ``kernel.domainname`` (a sysctl of it wins),
    and a sysctl of :func:`_network_defaults` wins over Docker's value."""
    config = container.config
    domain = _nsmodes.domainname(container)
    settings = _network_defaults(container)
    if domain:
        settings["kernel.domainname"] = domain
    settings.update(parse_sysctl(text, network=config.network) for text in config.sysctls)
    # Those of its interfaces are the daemon's to write once each is there (see
    # boxd._netconfig.interface_sysctls).
    for name in container_interfaces(config) if config.sysctls else ():
        for key, _ in interface_sysctls(config.sysctls, name):
            settings.pop(key, None)
    return tuple(
        [
            MountOp(MountKind.SYSCTL, proc_path(key), data=value + "\n")
            for key, value in settings.items()
        ]
    )


def view_mounts(files: dict[str, str]) -> tuple[MountOp, ...]:
    """Bind the /proc view's files over the container's /proc/meminfo, ... (after /proc and
    /sys are mounted, before the masks)."""
    return tuple(
        [
            MountOp(MountKind.MOUNT, target=path, source=source, flags=MS_BIND)
            for path, source in files.items()
        ]
    )


class Prepared:
    """What :func:`prepare` did for :func:`build`: called with a container path, the file
    there (/etc/passwd and /etc/group read already); ``known``: what the lookups of the
    mount table's usual targets found (the table looks up any other itself); ``devices``
    and ``device_rules``: :func:`boxd._devicemap.for_start`'s (``--privileged`` walks the
    host's /dev: ~0.5 ms); ``image_mounts``: each image mount's target and what
    :func:`boxd._rootfs.image_sources` found for it."""

    def __init__(
        self,
        read: ReadFile,
        known: dict[str, os.stat_result | None],
        devices: Sequence[_devicemap.HostDevice] = (),
        device_rules: tuple[DeviceRule, ...] = (),
        image_mounts: Sequence[tuple[str, tuple[str, ...]]] = (),
    ) -> None:
        self._read = read
        self.known = known
        self.devices = devices
        self.device_rules = device_rules
        self.image_mounts = image_mounts

    def __call__(self, path: str) -> bytes | None:
        return self._read(path)


def prepare(
    container: Container,
    image: Image,
    container_dir: Path,
    mounted: Sequence[tuple[ImageMount, tuple[str, ...]]] = (),
) -> Prepared:
    """The file system work of a start, for a worker thread before :func:`build`: system
    calls with the GIL released (a new inode takes a quarter to a third of a millisecond
    on an ext4 without a journal, which skips recently freed ones).  Makes the
    container's directories (:func:`container_dirs`), reads its /etc/passwd and
    /etc/group (for its user and groups) and looks up where
    its mounts go (its layers, /proc, /sys, /dev, /etc/hostname, /etc/hosts, /.dockerenv,
    the working directory and the volumes: what the mount table resolves, so the event
    loop's step that builds it makes no system calls for them), and finds what its image
    mounts (``mounted``: each with its image's layers) show."""
    config = container.config
    known: dict[str, os.stat_result | None] = {}
    read = functools.cache(
        functools.partial(read_container_file, image, container_dir, known=known)
    )
    container_dirs(image, container_dir, id_map=id_range() if config.userns else None)
    for path in ("/etc/passwd", "/etc/group"):
        read(path)
    targets = [layer.target for layer in image.layers]
    targets += ("/proc", "/sys", "/dev", "/etc/hostname", "/etc/hosts", DOCKERENV, config.workdir)
    targets += (v.container for v in config.volumes)
    targets += (m.target for m, _ in mounted)
    look_up(image, container_dir, targets, known)
    images = image_mount_sources(mounted)
    devices, rules = _devicemap.for_start(
        config.devices, config.device_cgroup_rules, privileged=config.security.privileged
    )
    return Prepared(read, known, devices, rules, images)


async def build(
    container: Container,
    image: Image,
    container_dir: Path,
    *,
    read: Prepared,
    stdio: tuple[int, int, int],
    view_files: dict[str, str] | None = None,
    net: EtcNetwork | None = None,
    ns_paths: tuple[tuple[Namespace, str], ...] = (),
    cgroups: tuple[tuple[str, str], ...] | None = None,
    devices: Sequence[_devicemap.HostDevice] = (),
    link_env: tuple[str, ...] = (),
    console_size: tuple[int, int] | None = None,
) -> SpawnPlan:
    """``read``: what :func:`prepare` returned (its directories are made); ``view_files``:
    the /proc view to bind in (None: the plain /proc); ``net``: what /etc/hosts and
    /etc/resolv.conf say of its network; ``ns_paths``: namespaces it joins (another
    container's network); ``cgroups``: its cgroups as a v1 host's /sys/fs/cgroup shows
    them (:meth:`boxd._cgroup.Cgroup.view`; None: its own cgroup2); ``devices``: the host
    devices it gets (``--device``, :func:`boxd._devicemap.resolve_all`); ``link_env``: its
    links' variables (see boxd._links); ``console_size``: a TTY's size from the start
    (None: the one its config holds, else 24x80).  Three steps of the
    event loop of their own, each well under a millisecond: the mount table (lookups in
    its root), its user and groups, then the rest (environment, capabilities, seccomp)."""
    await trio.lowlevel.cancel_shielded_checkpoint()  # schedule points, not cancel ones
    config = container.config
    rootfs, mounts = container_mounts(
        image,
        container_dir,
        read_only_root=config.read_only,
        tmpfs=config.tmpfs,
        shm_size=config.shm_size,
        shm=_nsmodes.own_shm(config.ipc_mode),
        volumes=config.volumes,
        image_mounts=read.image_mounts,
        files={**etc_files(container, net), DOCKERENV: ""},
        workdir=config.workdir,
        id_map=id_range() if config.userns else None,
        private_network=Namespace.NET in namespaces(container),
        extra=(
            _devicemap.mount_ops(devices, userns=config.userns)
            + sysctl_ops(container)
            + _nsmodes.shm_ops(config.ipc_mode)
            + (init_mounts(init_program()) if config.init else ())
            + view_mounts(view_files or {})
            + (_masks.mask_ops(*paths) if (paths := _masks.applied(config.security)) else ())
        ),
        dirs_made=True,
        cgroups=cgroups,
        cgroups_writable=config.security.privileged,
        known=read.known,
    )
    await trio.lowlevel.cancel_shielded_checkpoint()
    user = identity(config.user, image, container_dir, config.group_add, read=read)
    if config.userns:
        _check_mapped(user)
    await trio.lowlevel.cancel_shielded_checkpoint()
    env = environment(container, user, tty=config.tty, links=link_env)
    return SpawnPlan(
        argv=(INIT_PATH, "--", *config.command) if config.init else config.command,
        env=env,
        search_path=_search_path(env),
        namespaces=namespaces(container),
        hostname=_nsmodes.hostname(container) if Namespace.UTS in namespaces(container) else None,
        rootfs=rootfs,
        mounts=mounts,
        cwd=config.workdir or "/",
        uid=user.uid,
        gid=user.gid,
        groups=user.groups,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        console=config.tty,
        console_size=(console_size or config.console_size) if config.tty else None,
        id_mapped=id_mapped_layers(image, container_dir) if config.userns else (),
        ns_paths=ns_paths,
        **_restrictions(container, user.uid, sysinfo=view_files is not None),
    )


def _restrictions(
    container: Container, uid: int, *, privileged: bool = False, sysinfo: bool = False
) -> dict[str, Any]:
    """What confines a container's processes: the same for its init and for exec (a
    ``privileged`` exec gets every capability); with ``sysinfo`` (it has the /proc view),
    its sysinfo calls answered by the daemon (boxd/_sysinfo.py) where a seccomp filter is
    loaded at all (not unconfined, not privileged)."""
    sec = container.config.security
    caps = _caps.compute(sec.cap_add, sec.cap_drop, uid=uid, privileged=sec.privileged)
    # Of a limit given twice the last counts, as in Docker.
    ulimits = {u.name: u for u in container.config.ulimits}
    rlimits = tuple([Rlimit(ULIMIT_NAMES[u.name], u.soft, u.hard) for u in ulimits.values()])
    if "nofile" not in ulimits:  # Docker's, not the daemon's raised one
        rlimits = (Rlimit(ULIMIT_NAMES["nofile"], *open_files()), *rlimits)
    # --privileged drops the default filter, not a profile of the user's own (Docker 26's).
    custom = sec.seccomp not in ("default", "unconfined")
    seccomp = seccomp_program(sec.seccomp, caps.bounding) if custom or not sec.privileged else None
    return {
        "rlimits": rlimits,
        # The filter stays the container's, made for its own capabilities.
        "caps": _caps.compute((), (), uid=uid, privileged=True) if privileged else caps,
        "no_new_privs": sec.no_new_privileges,
        # Docker's (runc's), whatever the caller's: a library program's 077 too.
        "umask": 0o022,
        "seccomp": seccomp,
        "sysinfo": sysinfo and seccomp is not None,
    }


def identity(
    user: str,
    image: Image,
    container_dir: Path,
    group_add: tuple[str, ...] = (),
    *,
    read: Callable[[str], bytes | None] | None = None,
) -> ExecUser:
    """``--user`` (and ``--group-add``) resolved in the container's own /etc/passwd and
    /etc/group (``read``: how its files are read, default :func:`read_container_file`)."""
    read_file = read or functools.partial(read_container_file, image, container_dir)

    def text(path: str) -> str | None:
        data = read_file(path)
        return None if data is None else data.decode("utf-8", "replace")

    return resolve_in(user, text, group_add)


def _check_mapped(user: ExecUser) -> None:
    """Refuse, naming it, an id that a user-namespaced container's map lacks (setuid
    said only "Invalid argument", and an unmapped supplementary group was blamed on the
    gid)."""
    start, count = id_range()
    ids = [("uid", user.uid), ("gid", user.gid), *[("group", g) for g in user.groups]]
    for what, n in ids:
        if n >= count:
            raise ValueError(
                f"{what} {n} is not in --isolate-user's ids 0-{count - 1} "
                f"(host {start}-{start + count - 1})"
            )


def build_exec(
    container: Container,
    spec: ExecSpec,
    init_pidfd: int,
    image: Image,
    container_dir: Path,
    *,
    stdio: tuple[int, int, int],
    link_env: tuple[str, ...] = (),
    sysinfo: bool = False,
) -> SpawnPlan:
    """A process that joins the namespaces of the container's init (``init_pidfd``);
    ``image`` and ``container_dir`` are the container's, for its users and groups;
    ``link_env``: the variables its init got from its links, which Docker gives its execs
    too; ``sysinfo``: its sysinfo calls answered as the init's (see :func:`_restrictions`)."""
    config = container.config
    user = identity(spec.user or config.user, image, container_dir, config.group_add)
    if config.userns:
        _check_mapped(user)
    env = environment(container, user, tty=spec.tty, extra=spec.env, links=link_env)
    return SpawnPlan(
        argv=spec.command,
        env=env,
        search_path=_search_path(env),
        cwd=spec.workdir or config.workdir or "/",
        uid=user.uid,
        gid=user.gid,
        groups=user.groups,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        console=spec.tty,
        console_size=spec.console_size if spec.tty else None,
        join_pidfd=init_pidfd,
        join_namespaces=namespaces(container)
        | ({Namespace.NET} if shares_network(container) else set())
        | frozenset(_nsmodes.joined(container.config)),
        process_name="boxd:[exec]",
        **_restrictions(container, user.uid, privileged=spec.privileged, sysinfo=sysinfo),
    )

"""Docker's namespace sharing modes: ``--pid``, ``--ipc``, ``--uts`` and ``--cgroupns``.

A container makes its own pid, ipc and uts namespaces unless told otherwise:

- ``--pid host`` / ``--ipc host`` / ``--uts host``: it makes none and stays in the host's
  (the daemon's).  Its /proc then shows every process of the host, its hostname is the
  host's; ``--ipc host`` binds the host's /dev/shm too.  A documented privilege, as in
  Docker: the container's root may signal the host's processes (its capabilities,
  seccomp filter and masked /proc paths still hold).
- ``--pid container:NAME`` / ``--ipc container:NAME``: it joins the namespace of NAME's
  running init, by ``/proc/PID/ns/pid`` (the spawn enters a pid namespace before its clone:
  setns(CLONE_NEWPID) only places the caller's later children in it) or ``/proc/PID/ns/ipc``.
  NAME must be running; an ipc donor must be ``shareable`` (boxd's default: a container
  without ``--ipc``), not ``private``.  NAME's /dev/shm is mounted at the joiner's, as
  Docker binds the donor's: POSIX shared memory (shm_open) is shared with System V IPC and
  POSIX message queues (:func:`peer_shm`).
- ``--ipc none``: an ipc namespace of its own (not shareable), and no /dev/shm mounted (an
  empty directory), as Docker's.
- ``--cgroupns host`` (Docker's default on cgroup v1 hosts, ``private`` boxd's everywhere):
  no cgroup namespace of its own.  Its /sys/fs/cgroup is the same view of its own
  cgroups (binds of them, as runc binds them without a cgroup namespace), but
  /proc/self/cgroup and mountinfo give their paths in the host's hierarchy, which is what
  a container that binds the host's /sys/fs/cgroup (systemd's older recipe) must match.

Modes are kept as given ("" for the default) in :class:`boxd._records.ContainerConfig`;
``inspect`` shows Docker's words (``PidMode`` "", ``IpcMode`` "shareable", ``UTSMode`` "",
``CgroupnsMode`` "private").
"""

from __future__ import annotations

import os
import socket

from ._native import MountKind, MountOp, Namespace
from ._record import evolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._native import Native, SpawnPlan
    from ._records import Container, ContainerConfig

# The modes each option takes besides "container:NAME" ("" is the default).
_PLAIN = {
    "pid": ("", "host"),
    "ipc": ("", "none", "private", "shareable", "host"),
    "uts": ("", "host"),
    "cgroupns": ("", "private", "host"),
}
_CONTAINER = frozenset({"pid", "ipc"})  # --uts container:NAME is not Docker's
KINDS = {
    "pid": Namespace.PID,
    "ipc": Namespace.IPC,
    "uts": Namespace.UTS,
    "cgroupns": Namespace.CGROUP,
}

_MS_BIND = 0x1000
_MS_REC = 0x4000


def check(option: str, mode: str) -> None:
    """Refuse a mode ``--pid``/``--ipc``/``--uts`` does not take, naming it."""
    if mode in _PLAIN[option]:
        return
    if option in _CONTAINER and mode.startswith("container:") and mode[len("container:") :]:
        return
    choices = ", ".join(m for m in _PLAIN[option] if m)
    if option in _CONTAINER:
        choices += " or container:NAME"
    raise ValueError(f"invalid --{option} {mode!r}: use {choices}")


def peer(mode: str) -> str | None:
    """NAME of a ``container:NAME`` mode, else None."""
    return mode[len("container:") :] if mode.startswith("container:") else None


def modes(config: ContainerConfig) -> dict[str, str]:
    """option -> mode of a container."""
    return {
        "pid": config.pid_mode,
        "ipc": config.ipc_mode,
        "uts": config.uts_mode,
        "cgroupns": config.cgroupns_mode,
    }


def shared(config: ContainerConfig) -> frozenset[Namespace]:
    """The namespaces the container does not make."""
    return frozenset(
        KINDS[o] for o, m in modes(config).items() if m == "host" or peer(m) is not None
    )


def joined(config: ContainerConfig) -> dict[Namespace, str]:
    """The namespaces it joins from another container (by path, at each start): kind ->
    that container's name."""
    return {KINDS[o]: name for o, m in modes(config).items() if (name := peer(m)) is not None}


def check_config(config: ContainerConfig) -> None:
    """Each mode, and what cannot go with it (Docker's words where Docker has them)."""
    for option, mode in modes(config).items():
        check(option, mode)
        if config.userns and mode and mode not in ("none", "private", "shareable"):
            raise ValueError(
                f"--{option} {mode} cannot go with --isolate-user: that namespace belongs "
                "to the host's user namespace"
            )
    if config.uts_mode == "host" and config.hostname:
        raise ValueError("conflicting options: hostname and the UTS mode")
    if config.uts_mode == "host" and config.domainname:
        raise ValueError("conflicting options: domainname and the UTS mode")
    for sysctl in config.sysctls:
        key = sysctl.partition("=")[0]
        option = "uts" if key == "kernel.domainname" else "ipc"
        if not key.startswith("net.") and modes(config)[option] == "host":
            raise ValueError(
                f"invalid --sysctl {sysctl!r}: with --{option} host it would change the host's"
            )


def host_hostname() -> str:
    """``--uts host``: the host's name, what the container's /etc/hostname then says."""
    return socket.gethostname()


def hostname(container: Container) -> str:
    """Its host name, as Docker gives it: the host's with ``--uts host``, and with
    ``--network host`` unless ``--hostname`` names one; a ``--network container:NAME``
    member's is NAME's (recorded at its start); else ``--hostname`` or its short id."""
    config = container.config
    if config.uts_mode == "host" or (config.network == "host" and not config.hostname):
        return host_hostname()
    return container.state.network.hostname or config.hostname or container.short_id


def domainname(container: Container) -> str:
    """Its domain name: ``--domainname``, a ``container:NAME`` member's NAME's."""
    if container.state.network.peer:
        return container.state.network.domainname
    return container.config.domainname


def own_shm(ipc_mode: str) -> bool:
    """Whether the container gets a /dev/shm tmpfs of its own: not with ``--ipc none``
    (none), ``host`` or ``container:NAME`` (theirs is mounted there instead, alone, as
    Docker mounts it)."""
    return ipc_mode != "none" and ipc_mode != "host" and peer(ipc_mode) is None


def shm_ops(ipc_mode: str) -> tuple[MountOp, ...]:
    """``--ipc host``: the host's /dev/shm bound there."""
    if ipc_mode != "host":
        return ()
    return (MountOp(MountKind.MOUNT, "/dev/shm", "/dev/shm", "", _MS_BIND | _MS_REC),)


def peer_shm(native: Native, plan: SpawnPlan, ipc: str) -> SpawnPlan:
    """``--ipc container:NAME``, whose plan joins the ipc namespace ``ipc`` (NAME's init's
    /proc/PID/ns/ipc): ``plan`` with NAME's /dev/shm mounted at /dev/shm, as Docker binds
    the donor's shm.  Another mount namespace's mount cannot be bound by path:
    a detached copy is made in NAME's (its init's /proc/PID/ns/mnt), which an ATTACH step
    moves on; the caller closes ``mount_fds`` once it has spawned it.  Not on the event
    loop's thread (it waits for a child)."""
    source = os.path.join(os.path.dirname(ipc), "root", "dev", "shm")  # as the host sees it
    try:
        mount_ns = os.open(os.path.join(os.path.dirname(ipc), "mnt"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = native.clone_tree("/dev/shm", mount_ns=mount_ns)
        finally:
            os.close(mount_ns)
    except OSError as exc:
        raise OSError(exc.errno, f"/dev/shm of the --ipc container: {exc.strerror}") from None
    op = MountOp(MountKind.ATTACH, "/dev/shm", source=source, dev=fd)
    return evolve(plan, mounts=(*plan.mounts, op), mount_fds=(*plan.mount_fds, fd))


def docker_mode(option: str, mode: str) -> str:
    """HostConfig.PidMode/IpcMode/UTSMode as ``docker inspect`` shows it."""
    return "shareable" if option == "ipc" and not mode else mode

"""The typed boundary to the C extension ``sandbox_native``.

Everything a container's first process needs is decided here, in Python, and handed to
C as one prepared :class:`SpawnPlan`.  The C side forks (clone3), and the child runs only
async-signal-safe system calls until it execs.  The parent gets ``(pid, pidfd, sync_fd)``
back at once; the child then waits on ``sync_fd`` until the parent has written uid/gid
maps and placed it in its cgroups, and :func:`finish_spawn` releases it and reports
either success (end of file: exec happened) or a :class:`SpawnError`.

:class:`Native` is the protocol the rest of boxd calls; :class:`RealNative` is the real
thing and tests may substitute a recording fake.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import struct
from collections.abc import Sequence
from typing import Protocol

import attrs


class Namespace(enum.Enum):
    """Namespaces a container may get; values are the CLONE_NEW* flags."""

    MOUNT = 0x00020000
    UTS = 0x04000000
    IPC = 0x08000000
    USER = 0x10000000
    PID = 0x20000000
    NET = 0x40000000
    CGROUP = 0x02000000


class MountKind(enum.IntEnum):
    """One step of the mount table, executed in order in the child before pivot_root.

    Paths in ``target`` are absolute host paths (the rootfs path already joined in), so the
    C side does no path arithmetic.  ``flags`` are MS_* flags, ``data`` the mount data string.
    """

    MOUNT = 0  # mount(source, target, fstype, flags, data)
    MKDIR = 1  # mkdir(target, mode); EEXIST is not an error
    SYMLINK = 2  # symlink(source, target); EEXIST is not an error
    MKNOD = 3  # mknod(target, mode, dev)
    BIND_DEV = 4  # create an empty file at target, then bind-mount source (a host device) on it
    REMOUNT_RO = 5  # bind-remount target read-only (MS_REMOUNT|MS_BIND|MS_RDONLY|flags)
    MASK = 6  # hide target: /dev/null bound over a file, an empty read-only tmpfs over a dir
    #          (a target that does not exist is skipped)


@attrs.frozen
class MountOp:
    kind: MountKind
    target: str
    source: str = ""
    fstype: str = ""
    flags: int = 0
    data: str = ""
    mode: int = 0
    dev: int = 0
    # The path as the container sees it (``/proc``), for error messages; defaults to target.
    name: str = ""

    def describe(self) -> str:
        """How an error message names this step: ``mount /proc``, ``mkdir /dev/pts``."""
        verb = {
            MountKind.MOUNT: "mount",
            MountKind.MKDIR: "mkdir",
            MountKind.SYMLINK: "symlink",
            MountKind.MKNOD: "mknod",
            MountKind.BIND_DEV: "bind",
            MountKind.REMOUNT_RO: "remount read-only",
            MountKind.MASK: "mask",
        }[self.kind]
        return f"{verb} {self.display_target}"

    @property
    def display_target(self) -> str:
        return self.name or self.target


@attrs.frozen
class Capabilities:
    """Capability sets as bit masks (bit n = capability number n)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int = 0
    ambient: int = 0


@attrs.frozen
class Rlimit:
    resource: int  # RLIMIT_* number
    soft: int  # -1 for RLIM_INFINITY
    hard: int


@attrs.frozen
class SpawnPlan:
    """Everything the child does between fork and exec, prepared in advance."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    # Directories searched for argv[0] when it holds no "/" (the container's PATH).
    search_path: tuple[str, ...] = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                    "/usr/bin", "/sbin", "/bin")
    namespaces: frozenset[Namespace] = frozenset()
    hostname: str | None = None
    # Directory that becomes "/" via pivot_root; None keeps the caller's root (no pivot).
    rootfs: str | None = None
    mounts: tuple[MountOp, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    # The fds given to the child as 0, 1, 2.  Each must be >= 3 in the caller.
    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    # Make stdin (a pty slave) the controlling terminal of the new session.
    controlling_tty: bool = False
    rlimits: tuple[Rlimit, ...] = ()
    caps: Capabilities | None = None  # None: keep the caller's capabilities
    no_new_privs: bool = False
    seccomp: bytes | None = None  # a classic BPF program (struct sock_filter[]), loaded last
    # Join the namespaces of the process behind this pidfd instead of creating new ones
    # (exec into a running container).  The spawned process is a child of the caller.
    join_pidfd: int = -1
    join_namespaces: frozenset[Namespace] = frozenset()
    # Name the child shows (comm) until exec.
    process_name: str = "boxd:[init]"


class Stage(enum.IntEnum):
    """Where a child failed before exec; mirrors enum stage in sandbox_native.c."""

    SYNC = 1
    SIGNALS = 2
    SETSID = 3
    STDIO = 4
    TTY = 5
    JOIN = 6
    HOSTNAME = 7
    MOUNT = 8  # index = the failing MountOp
    PIVOT = 9
    SETGROUPS = 10
    SETGID = 11
    SETUID = 12
    CAPS = 13
    RLIMIT = 14  # index = the failing Rlimit
    NO_NEW_PRIVS = 15
    CHDIR = 16
    SECCOMP = 17
    CLOSE_FDS = 18
    EXEC = 19
    FORK = 20


@attrs.frozen
class Spawned:
    pid: int
    pidfd: int
    sync_fd: int


class SpawnError(OSError):
    """A child that failed before exec.  ``str()`` reads like ``exec /bin/nope: No such file
    or directory``; ``errno``/``filename`` are set as for any OSError."""

    stage: Stage

    def __init__(self, stage: Stage, err: int, what: str, filename: str | None = None) -> None:
        super().__init__(err, os.strerror(err), filename)
        self.stage = stage
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"

    def __reduce__(self) -> tuple[type[SpawnError], tuple[Stage, int, str, str | None]]:
        return (SpawnError, (self.stage, self.errno or 0, self.what, self.filename))


# The failure record the child writes on sync_fd: stage, errno, index (native endian).
FAILURE_RECORD = struct.Struct("=iii")


def describe_failure(plan: SpawnPlan, stage: Stage, err: int, index: int) -> SpawnError:
    """Turn a child's (stage, errno, index) record into the error a user should read."""
    if stage == Stage.MOUNT and 0 <= index < len(plan.mounts):
        op = plan.mounts[index]
        return SpawnError(stage, err, op.describe(), op.display_target)
    if stage == Stage.EXEC:
        return SpawnError(stage, err, f"exec {plan.argv[0]}", plan.argv[0])
    if stage == Stage.CHDIR:
        return SpawnError(stage, err, f"chdir {plan.cwd}", plan.cwd)
    if stage == Stage.HOSTNAME:
        return SpawnError(stage, err, f"sethostname {plan.hostname}")
    if stage == Stage.RLIMIT and 0 <= index < len(plan.rlimits):
        return SpawnError(stage, err, f"setrlimit {plan.rlimits[index].resource}")
    if stage == Stage.SETUID:
        return SpawnError(stage, err, f"setuid {plan.uid}")
    if stage in (Stage.SETGID, Stage.SETGROUPS):
        return SpawnError(stage, err, f"setgid {plan.gid}")
    if stage == Stage.PIVOT:
        return SpawnError(stage, err, f"pivot_root {plan.rootfs}", plan.rootfs)
    return SpawnError(stage, err, stage.name.lower().replace("_", " "))


class Native(Protocol):
    """The native calls boxd makes; see :class:`RealNative`."""

    def spawn(self, plan: SpawnPlan) -> Spawned:
        """Fork the child described by ``plan``; return at once.  The child blocks until
        :meth:`release` is called on ``sync_fd``."""
        ...

    def release(self, spawned: Spawned) -> None:
        """Let the child go on (after maps and cgroups are in place)."""
        ...


def is_exec_failure(err: BaseException) -> int | None:
    """The CLI exit code a spawn failure maps to (127 not found, 126 not executable)."""
    if isinstance(err, SpawnError) and err.stage == Stage.EXEC:
        return 127 if err.errno in (_errno.ENOENT, _errno.ENOTDIR) else 126
    return None


def _check_stdio(fds: Sequence[int]) -> None:
    for fd in fds:
        if 0 <= fd < 3:
            raise ValueError(f"stdio fd {fd} must be >= 3 in the caller (dup it first)")

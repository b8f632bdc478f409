"""The typed boundary to the C extension ``sandbox_native``.

Everything a container's first process needs is decided here, in Python, and handed to
C as one prepared :class:`SpawnPlan`.  The C side forks (clone3), and the child runs only
async-signal-safe system calls until it execs.  The parent gets ``(pid, pidfd, sync_fd)``
back at once; the child then waits on ``sync_fd`` until the parent has written uid/gid
maps and placed it in its cgroups, and :func:`start` releases it and reports either
success (end of file: exec happened) or a :class:`SpawnError`.

:class:`Native` is the protocol the rest of boxd calls; :class:`RealNative` is the real
thing and :class:`FakeNative` a recording fake for tests that cannot be root.
"""

from __future__ import annotations

import _socket  # not socket.py: it imports selectors and array (~3 ms), see send_fds
import contextlib
import enum
import errno as _errno
import importlib
import os
import signal
import struct
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ._record import evolve, frozen

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: boxd-runtime create does without typing
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # Native is a structural type for the type checker, a plain class here


class Namespace(enum.Enum):
    """Namespaces a container may get; values are the CLONE_NEW* flags."""

    MOUNT = 0x00020000
    UTS = 0x04000000
    IPC = 0x08000000
    USER = 0x10000000
    PID = 0x20000000
    NET = 0x40000000
    CGROUP = 0x02000000

    def describe(self) -> str:
        """The name ``unshare`` and the OCI spec use: ``network``, ``mount``, ``pid``."""
        return {"NET": "network"}.get(self.name, self.name.lower())


# The most bind sources a plan passes as fds (SpawnPlan.mount_fds; MAX_MOUNT_FDS in
# sandbox_native/spawn.h).
MAX_MOUNT_FDS = 64
# The namespaces a process may join by path (SpawnPlan.ns_paths).
JOINABLE = frozenset({Namespace.NET, Namespace.IPC, Namespace.UTS, Namespace.CGROUP})


class MountKind(enum.IntEnum):
    """One step of the mount table, executed in order in the child before pivot_root
    (mirrors SPAWN_MOUNT_KINDS in sandbox_native/spawn.h; tests/test_native_abi.py checks).

    ``target`` is a path inside the container.  The child resolves it inside the plan's
    rootfs (openat2 with RESOLVE_IN_ROOT: ``..`` and absolute symlinks stop at that root,
    as they will for the container), so nothing in an untrusted root filesystem can make a
    step land outside it; the step then acts on the fd it got.  A creating step (MKDIR,
    SYMLINK, MKNOD, BIND_DEV, WRITE_FILE, MKFILE) resolves the parent directory and creates the
    last component in it.  ``source`` is a host path (a bind's source, a device to bind);
    ``flags`` are MS_* flags, ``data`` the mount data string (WRITE_FILE: the contents).
    """

    MOUNT = 0  # mount(source, target, fstype, flags, data)
    MKDIR = 1  # mkdir(target, mode); EEXIST is not an error
    SYMLINK = 2  # symlink(source, target); EEXIST is not an error
    MKNOD = 3  # mknod(target, mode, dev), then owned by flags' uid | gid << 32 (if not 0)
    BIND_DEV = 4  # create an empty file at target, then bind-mount source (a host device) on it
    REMOUNT_RO = 5  # bind target onto itself unless it is a mount (so a plain path like
    #                 /proc/sys becomes one), then bind-remount it read-only (MS_REMOUNT|
    #                 MS_BIND|MS_RDONLY|flags, keeping its nosuid/nodev/noexec; MS_REC in
    #                 flags: the mounts below it too, mount_setattr); a missing target is
    #                 skipped
    MASK = 6  # hide target: /dev/null bound over a file, an empty read-only tmpfs over a dir
    #          (a target that does not exist is skipped)
    WRITE_FILE = 7  # a new regular file at target (whatever was there is unlinked first)
    #                 holding ``data``, with permission bits ``mode``
    MKFILE = 8  # an empty regular file at target (a single-file bind's mount point), with
    #             permission bits ``mode``; anything already there is kept
    SYSCTL = 9  # write ``data`` into the existing file target (/proc/sys/..., in the
    #             container's own namespaces), opened for writing without O_CREAT
    CHDIR = 10  # chdir(source), a host directory (target unused: "/"): the overlays
    #            after it may name their lower directories relative to it (a deep
    #            image's lowerdir= then fits overlay's one page of options)
    ATTACH = 11  # move the detached tree ``dev`` (an fd of SpawnPlan.mount_fds, a bind the
    #              caller made with open_tree) onto target; ``source`` names what it binds


@frozen
class MountOp:
    kind: MountKind
    target: str
    source: str = ""
    fstype: str = ""
    flags: int = 0
    data: str = ""
    mode: int = 0
    dev: int = 0

    def describe(self) -> str:
        """How an error message names this step: ``mount /proc``, ``mkdir /dev/pts``,
        ``mount /srv/data on /data``."""
        verb = {
            MountKind.MOUNT: "mount",
            MountKind.MKDIR: "mkdir",
            MountKind.SYMLINK: "symlink",
            MountKind.MKNOD: "mknod",
            MountKind.BIND_DEV: "bind",
            MountKind.REMOUNT_RO: "remount read-only",
            MountKind.MASK: "mask",
            MountKind.WRITE_FILE: "write",
            MountKind.MKFILE: "create",
            MountKind.SYSCTL: "set",
            MountKind.CHDIR: "chdir",
            MountKind.ATTACH: "mount",
        }[self.kind]
        if self.kind is MountKind.CHDIR:
            return f"{verb} {self.source}"
        if self.kind in (MountKind.MOUNT, MountKind.ATTACH) and self.source.startswith("/"):
            return f"{verb} {self.source} on {self.target}"  # a bind: the host path matters
        return f"{verb} {self.target}"


@frozen
class Capabilities:
    """Capability sets as bit masks (bit n = capability number n)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int = 0
    ambient: int = 0


@frozen
class Rlimit:
    resource: int  # RLIMIT_* number
    soft: int  # -1 for RLIM_INFINITY
    hard: int

    def describe(self) -> str:
        """``RLIMIT_NOFILE 1024:4096`` (soft:hard), as a failure names it."""
        import resource  # only for a failure's message

        names: dict[int, str] = {}
        for n in dir(resource):  # sorted: RLIMIT_NOFILE before its alias RLIMIT_OFILE
            if n.startswith("RLIMIT_"):
                names.setdefault(getattr(resource, n), n)
        name = names.get(self.resource, f"resource {self.resource}")
        soft, hard = ("unlimited" if v == -1 else str(v) for v in (self.soft, self.hard))
        return f"{name} {soft}:{hard}"


@frozen
class LinkConfig:
    """One of the container's interfaces (a veth end put into its new network namespace
    while the child sets up its mounts), which the child waits for (LINKED), gives its
    address and brings up."""

    name: str  # eth0
    address: str  # an IPv4 address
    prefix_len: int


@frozen
class ShimSpec:
    """Spawn through boxd-shim (live restore): the container becomes the child of a small
    program that outlives the daemon (see boxd/_shim.py)."""

    program: str  # the boxd-shim executable
    directory: str  # where it listens (shim.sock): the container's directory
    argv: tuple[str, ...]  # its argv (argv[0] and the container's id, for ps)


@frozen
class SpawnPlan:
    """Everything the child does between fork and exec, prepared in advance."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    # Directories searched for argv[0] when it holds no "/" (the container's PATH).
    search_path: tuple[str, ...] = (
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    )
    namespaces: frozenset[Namespace] = frozenset()
    hostname: str | None = None
    # Directory that becomes "/" via pivot_root; None keeps the caller's root (no pivot).
    rootfs: str | None = None
    mounts: tuple[MountOp, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    # The fds given to the child as 0, 1, 2.  Each must be >= 3 in the caller; -1 leaves
    # the caller's own 0, 1 or 2 in place.
    stdin: int = -1
    stdout: int = -1
    stderr: int = -1
    # A terminal for the process: opened by the child in the container's own devpts once
    # "/" is the container's (after pivot_root, or the join), made its stdin, stdout,
    # stderr and the controlling terminal of its new session; :func:`start` returns the
    # master as ``Spawned.console``.  stdio then only covers the time before.
    console: bool = False
    # The console's size from the start, (rows, columns), each 1..65535: a program that
    # reads it once (stty size, ls) sees the client's terminal, not a later resize's
    # race.  None: 24x80.  Only with ``console``.
    console_size: tuple[int, int] | None = None
    rlimits: tuple[Rlimit, ...] = ()
    caps: Capabilities | None = None  # None: keep the caller's capabilities
    no_new_privs: bool = False
    # The umask from the mounts on (what they and the process create); None: the caller's.
    umask: int | None = None
    seccomp: bytes | None = None  # a classic BPF program (struct sock_filter[]), loaded last
    # Join the namespaces of the process behind this pidfd instead of creating new ones
    # (exec into a running container).  The spawned process is a child of the caller.
    join_pidfd: int = -1
    join_namespaces: frozenset[Namespace] = frozenset()
    # Name the child shows (comm) until exec.
    process_name: str = "boxd:[init]"
    # (host directory, host attach point): with a user namespace, :func:`start` makes an
    # id-mapped copy of each directory's mount (host ids seen as the namespace's: the
    # image's root-owned files are the container root's) and the child mounts it on the
    # attach point before the mount table, which uses the attach points as overlay lowers.
    id_mapped: tuple[tuple[str, str], ...] = ()
    # The create/start split of the OCI runtime: a listening Unix socket.  Once set up, the
    # child reports "waiting" (:func:`start` returns then) and blocks in accept() on it
    # until ``boxd-runtime start`` connects; failures after that, and the end of file
    # that means the exec happened, go to that connection.
    start_fd: int = -1
    # Keep the caller's fds 3 .. 3+keep_fds-1 open in the process (--preserve-fds).
    keep_fds: int = 0
    # SIGKILL once the caller's thread is gone (from the end of its set-up on): a process
    # that exists only for the caller (cp's holder of a stopped container's root) never
    # outlives a killed daemon.  Not with a shim.
    die_with_caller: bool = False
    # Existing namespaces to join (setns) instead of making new ones: (kind, path of a
    # namespace file such as /proc/PID/ns/net).  Network, IPC, UTS and cgroup only, never
    # a kind in ``namespaces``, and not with a new user namespace.
    ns_paths: tuple[tuple[Namespace, str], ...] = ()
    # Detached trees (:meth:`RealNative.clone_tree`) that ATTACH steps move onto their
    # targets: binds the caller made for a container in a new user namespace, whose root
    # may not reach a source by path.  The child keeps them until its mounts are made.
    mount_fds: tuple[int, ...] = ()
    # Not None: the container's parent is a boxd-shim, not the caller (no join_pidfd).
    shim: ShimSpec | None = None
    # The container's cgroups (:meth:`boxd._cgroup.Cgroup.placement`), which the process
    # places itself in: (fd, path) of each v1 hierarchy's ``tasks`` file, opened for
    # writing, to which it writes "0" before anything else; the v2 directory's fd, which
    # clone3 creates it in (CLONE_INTO_CGROUP).  With join_pidfd the intermediate does it.
    cgroup_tasks: tuple[tuple[int, str], ...] = ()
    cgroup_dir: int = -1
    # In a new network namespace, after its loopback: the interfaces the caller moved in
    # (its ``configure`` step of :func:`start`), configured with a few ioctls; then the
    # default route through ``gateway`` ("": none).
    links: tuple[LinkConfig, ...] = ()
    gateway: str = ""
    # sysinfo(2) answered by the caller (boxd/_sysinfo.py): just before ``seccomp`` (which
    # it needs) the child loads a filter that hands that call to a listener and sends the
    # listener back (:attr:`Spawned.sysinfo`).  Not with ``start_fd``.
    sysinfo: bool = False


class Stage(enum.IntEnum):
    """Where a child failed before exec; mirrors SPAWN_STAGES in sandbox_native/spawn.h."""

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
    CGROUP_NS = 21  # unshare(CLONE_NEWCGROUP), done once the parent placed the child
    LOOPBACK = 22  # bringing up "lo" in a new network namespace
    ATTACH = 23  # index = the failing id_mapped entry
    CONSOLE = 24  # the terminal: opened in the container's devpts, given to the user, sent
    START = 25  # waiting for the OCI runtime's `start` (start_fd)
    SHIM = 26  # making the shim's socket, or exec of boxd-shim
    CGROUP = 27  # index = the failing cgroup_tasks entry: writing "0" to it
    NETWORK = 28  # index = the failing link; len(links): the default route
    NET_NS = 29  # unshare(CLONE_NEWNET): a new network namespace without links, once released
    AFFINITY = 30  # every CPU of its cpuset again, after a set-up off the caller's CPU
    IPC_NS = 31  # unshare(CLONE_NEWIPC) by a new user namespace's root, once released


class Message(enum.IntEnum):
    """The kind of a message on the sync socket (SYNC_MESSAGE); mirrors SPAWN_MESSAGES in
    sandbox_native/spawn.h.  End of file means the exec happened."""

    RELEASE = 1  # parent -> child: go on (the id-mapped trees attached)
    FAILED = 2  # child -> parent: (stage, errno, index), then it exits
    CONSOLE = 3  # child -> parent: the terminal's master attached
    WAITING = 4  # child -> parent: set up, waiting for the OCI runtime's `start`
    STARTED = 5  # shim intermediate -> parent: the container's pid, its pidfd attached
    LINKED = 6  # parent -> child: the interfaces of its links are in its network namespace
    SYSINFO = 7  # child -> parent: its sysinfo listener attached (none: errno, the refusal)


@frozen
class Spawned:
    pid: int
    pidfd: int
    sync_fd: int
    console: int = -1  # the master of the plan's console, once start() returned
    # The listener of the plan's sysinfo filter, once start() returned (the caller owns
    # it); -1: none asked, or the kernel refused it (see SpawnPlan.sysinfo).
    sysinfo: int = -1
    # With a shim: a pidfd of boxd-shim, the container's parent and the caller's child
    # (the caller reaps it once it has said DONE); -1 without one.
    shim_pidfd: int = -1
    # Until start() has read it: with a shim, the socket on which the shim's intermediate
    # reports the container's pid and pidfd (``pid`` is the intermediate's and ``pidfd``
    # -1 until then); in join mode, the pipe on which the intermediate reports the final
    # pid (``pid`` and ``pidfd`` are the intermediate's until then).  -1 otherwise.
    report_fd: int = -1


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


# struct sync_msg of spawn.h (native endian): kind (Message), stage, errno, value.
SYNC_MESSAGE = struct.Struct("=iiii")


def parse_message(data: bytes) -> tuple[Message, int, int, int]:
    """One message from the child: (kind, stage, errno, value)."""
    if len(data) != SYNC_MESSAGE.size:
        raise RuntimeError(f"spawn: a message of {len(data)} bytes from the child: {data!r}")
    kind, stage, err, value = SYNC_MESSAGE.unpack(data)
    return Message(kind), stage, err, value


def describe_failure(plan: SpawnPlan, stage: Stage, err: int, index: int) -> SpawnError:
    """Turn a child's (stage, errno, index) record into the error a user should read."""
    if stage == Stage.MOUNT and index == -1:
        return SpawnError(stage, err, "make / a recursive slave mount", "/")
    if stage == Stage.MOUNT and 0 <= index < len(plan.mounts):
        op = plan.mounts[index]
        what = op.describe()
        if err == _errno.ENOTDIR and op.kind is MountKind.MOUNT and op.source.startswith("/"):
            what += " (a directory on a file, or a file on a directory?)"  # Docker's hint
        return SpawnError(stage, err, what, op.target)
    if stage == Stage.ATTACH and 0 <= index < len(plan.id_mapped):
        source, point = plan.id_mapped[index]
        return SpawnError(stage, err, f"attach the id-mapped {source} at {point}", source)
    if stage == Stage.EXEC:
        return SpawnError(stage, err, f"exec {plan.argv[0]}", plan.argv[0])
    if stage == Stage.JOIN and plan.ns_paths and 0 <= index < len(plan.ns_paths):
        kind, path = plan.ns_paths[index]
        return SpawnError(stage, err, f"join the {kind.describe()} namespace at {path}", path)
    if stage == Stage.CHDIR:
        return SpawnError(stage, err, f"chdir {plan.cwd}", plan.cwd)
    if stage == Stage.HOSTNAME:
        return SpawnError(stage, err, f"sethostname {plan.hostname}")
    if stage == Stage.RLIMIT and 0 <= index < len(plan.rlimits):
        return SpawnError(stage, err, f"setrlimit {plan.rlimits[index].describe()}")
    if stage == Stage.SETUID:
        return SpawnError(stage, err, f"setuid {plan.uid}")
    if stage in (Stage.SETGID, Stage.SETGROUPS):
        return SpawnError(stage, err, f"setgid {plan.gid}")
    if stage == Stage.SHIM and plan.shim is not None:
        return SpawnError(stage, err, f"start {plan.shim.program}", plan.shim.program)
    if stage == Stage.PIVOT:
        return SpawnError(stage, err, f"pivot_root {plan.rootfs}", plan.rootfs)
    if stage == Stage.NETWORK and 0 <= index < len(plan.links):
        link = plan.links[index]
        return SpawnError(stage, err, f"configure {link.name} as {link.address}/{link.prefix_len}")
    if stage == Stage.NETWORK:
        return SpawnError(stage, err, f"add the default route through {plan.gateway}")
    if stage == Stage.NET_NS:
        return SpawnError(stage, err, "create the network namespace")
    if stage == Stage.IPC_NS:
        return SpawnError(stage, err, "create the IPC namespace")
    if stage == Stage.CGROUP and 0 <= index < len(plan.cgroup_tasks):
        path = plan.cgroup_tasks[index][1]
        return SpawnError(stage, err, f"join the cgroup {os.path.dirname(path)}", path)
    if stage == Stage.AFFINITY:
        return SpawnError(stage, err, "reset the CPU affinity")
    return SpawnError(stage, err, stage.name.lower().replace("_", " "))


class Native(Protocol):
    """The native calls boxd makes; see :class:`RealNative`."""

    def spawn(self, plan: SpawnPlan) -> Spawned:
        """Fork the child described by ``plan``; return at once.  The child blocks until
        :meth:`release` is called on ``sync_fd``."""
        ...

    def id_mapped_tree(self, path: str, userns_fd: int) -> int:
        """A detached copy of the mount at ``path``, id-mapped through ``userns_fd``."""
        ...

    def clone_tree(self, path: str, *, recursive: bool = False, mount_ns: int = -1) -> int:
        """A detached copy of the mount at ``path`` (open_tree; close-on-exec), with the
        mounts below it if ``recursive``; with ``mount_ns`` (an fd of a mount namespace
        file or a pidfd), of the mount at ``path`` in that mount namespace."""
        ...

    def rebind(self, pidfd: int, binds: Mapping[str, str]) -> None:
        """In the mount namespace of the running process behind ``pidfd``, replace what is
        mounted at each container path of ``binds`` by a bind of its host file."""
        ...

    def release(self, spawned: Spawned, trees: Sequence[int] = ()) -> None:
        """Let the child go on (after maps and cgroups are in place), handing it ``trees``
        (one per ``id_mapped`` entry of its plan)."""
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


# os.fsencode's encoding, without its per-call checks (a plan has some 300 strings).
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _check_text(what: str, value: str) -> bytes:
    if "\0" in value:
        raise ValueError(f"{what} contains a NUL byte: {value!r}")
    return value.encode(_FS_ENCODING, _FS_ERRORS)


def _mount_args(ops: Sequence[MountOp]) -> tuple[tuple[object, ...], ...]:
    """The mount table as the extension takes it: each op checked (an absolute target, no
    NUL in its strings) in one pass, then encoded."""
    for op in ops:
        if not op.target.startswith("/"):
            raise ValueError(f"mount target {op.target!r} must be an absolute container path")
        if "\0" in op.target or "\0" in op.source or "\0" in op.fstype or "\0" in op.data:
            _check_text("mount target", op.target)
            _check_text("mount source", op.source)
            _check_text("mount fstype", op.fstype)
            _check_text("mount data", op.data)
    encoding, errors = _FS_ENCODING, _FS_ERRORS
    return tuple(
        [
            (
                int(op.kind),
                op.target.encode(encoding, errors),
                op.source.encode(encoding, errors),
                op.fstype.encode(encoding, errors),
                op.flags,
                op.data.encode(encoding, errors),
                op.mode,
                op.dev,
            )
            for op in ops
        ]
    )


def _flags(namespaces: frozenset[Namespace]) -> int:
    flags = 0
    for ns in namespaces:
        flags |= ns.value
    return flags


def native_arguments(plan: SpawnPlan) -> dict[str, Any]:
    """Validate ``plan`` and encode it as the keyword arguments of ``sandbox_native.spawn``."""
    if not plan.argv:
        raise ValueError("argv must not be empty")
    _check_stdio((plan.stdin, plan.stdout, plan.stderr))
    if plan.hostname is not None and Namespace.UTS not in plan.namespaces:
        raise ValueError(f"hostname {plan.hostname!r} needs a new UTS namespace")
    if plan.mounts and Namespace.MOUNT not in plan.namespaces:
        raise ValueError("mounts need a new mount namespace (they would land on the host)")
    if plan.rootfs is not None and Namespace.MOUNT not in plan.namespaces:
        raise ValueError(f"rootfs {plan.rootfs!r} needs a new mount namespace")
    if plan.join_pidfd >= 0:
        if not plan.join_namespaces:
            raise ValueError("join_pidfd is set but join_namespaces is empty")
        extra = [
            n
            for n, v in (
                ("namespaces", plan.namespaces),
                ("mounts", plan.mounts),
                ("rootfs", plan.rootfs),
                ("hostname", plan.hostname),
            )
            if v
        ]
        if extra:
            raise ValueError(f"a joining process takes no {', '.join(extra)}")
    elif plan.join_namespaces:
        raise ValueError("join_namespaces is set but join_pidfd is not")
    for kind, path in plan.ns_paths:
        # A pid namespace as well: the spawn enters it before its clone (the daemon's
        # --pid container:NAME; the OCI runtime refuses it before).
        if kind not in JOINABLE and kind is not Namespace.PID:
            raise ValueError(f"joining a {kind.describe()} namespace by path is not supported")
        if kind in plan.namespaces:
            raise ValueError(f"the {kind.describe()} namespace is both new and joined ({path})")
    if plan.ns_paths and (Namespace.USER in plan.namespaces or plan.join_pidfd >= 0):
        raise ValueError("namespaces joined by path cannot go with a new user namespace or exec")
    if plan.keep_fds < 0:
        raise ValueError(f"keep_fds {plan.keep_fds} must not be negative")
    attached = [op.dev for op in plan.mounts if op.kind is MountKind.ATTACH]
    if sorted(attached) != sorted(plan.mount_fds) or len(set(attached)) != len(attached):
        raise ValueError("each of mount_fds is attached by exactly one ATTACH step")
    if len(plan.mount_fds) > MAX_MOUNT_FDS:
        raise ValueError(f"at most {MAX_MOUNT_FDS} mount_fds, not {len(plan.mount_fds)}")
    if plan.shim is not None and (
        plan.join_pidfd >= 0
        or plan.start_fd >= 0
        or plan.keep_fds
        or plan.die_with_caller
        or not plan.shim.argv
    ):
        raise ValueError(
            "a shim needs its argv, and holds no joining, OCI-created or caller-bound process"
        )
    if plan.id_mapped and Namespace.USER not in plan.namespaces:
        raise ValueError("id_mapped needs a user namespace to map the ids into")
    if not plan.cwd.startswith("/"):
        raise ValueError(f"cwd {plan.cwd!r} must be absolute")
    if (plan.links or plan.gateway) and Namespace.NET not in plan.namespaces:
        raise ValueError("links and a gateway need a new network namespace")
    if plan.mounts and plan.rootfs is None:
        raise ValueError("a mount table needs a rootfs to resolve its targets in")
    if plan.sysinfo and (plan.seccomp is None or plan.start_fd >= 0):
        raise ValueError("sysinfo needs a seccomp program, and goes with no start_fd")
    if plan.console_size is not None:
        if not plan.console:
            raise ValueError(f"console_size {plan.console_size!r} needs a console")
        check_console_size(plan.console_size)
    mounts = _mount_args(plan.mounts)
    return {
        "argv": tuple([_check_text("argv item", a) for a in plan.argv]),
        "env": tuple([_check_text("env item", e) for e in plan.env]),
        "search_path": tuple([_check_text("search path entry", d) for d in plan.search_path]),
        "clone_flags": _flags(plan.namespaces),
        "hostname": None if plan.hostname is None else _check_text("hostname", plan.hostname),
        "rootfs": None if plan.rootfs is None else _check_text("rootfs", plan.rootfs),
        "mounts": mounts,
        "cwd": _check_text("cwd", plan.cwd),
        "uid": plan.uid,
        "gid": plan.gid,
        "groups": plan.groups,
        "stdio": (plan.stdin, plan.stdout, plan.stderr),
        "console": plan.console,
        "rlimits": tuple([(r.resource, r.soft, r.hard) for r in plan.rlimits]),
        "caps": None
        if plan.caps is None
        else (
            plan.caps.bounding,
            plan.caps.effective,
            plan.caps.permitted,
            plan.caps.inheritable,
            plan.caps.ambient,
        ),
        "no_new_privs": plan.no_new_privs,
        "umask": -1 if plan.umask is None else plan.umask,
        "seccomp": plan.seccomp,
        "join_pidfd": plan.join_pidfd,
        "join_flags": _flags(plan.join_namespaces),
        "process_name": _check_text("process_name", plan.process_name),
        "attach": tuple([_check_text("attach point", point) for _, point in plan.id_mapped]),
        "start_fd": plan.start_fd,
        "keep_fds": plan.keep_fds,
        "shim_path": None if plan.shim is None else _check_text("shim", plan.shim.program),
        "shim_dir": None if plan.shim is None else _check_text("shim dir", plan.shim.directory),
        "shim_argv": ()
        if plan.shim is None
        else tuple([_check_text("shim argv item", a) for a in plan.shim.argv]),
        "cgroup_tasks": tuple([fd for fd, _ in plan.cgroup_tasks]),
        "cgroup_dir": plan.cgroup_dir,
        "links": tuple([_link(link) for link in plan.links]),
        "gateway": _socket.inet_aton(plan.gateway) if plan.gateway else b"",
        "die_with_caller": plan.die_with_caller,
        "console_size": DEFAULT_CONSOLE_SIZE if plan.console_size is None else plan.console_size,
        "mount_fds": plan.mount_fds,
        "sysinfo": plan.sysinfo,
    }


DEFAULT_CONSOLE_SIZE = (24, 80)  # rows, columns of a console no one gave a size


def check_console_size(size: object) -> tuple[int, int]:
    """``size`` as a console's (rows, columns), or ValueError naming it: two integers,
    each 1..65535 (a struct winsize's unsigned short, never 0)."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in size)
    ):
        raise ValueError(f"console size {size!r} is not two integers (rows, columns)")
    rows, cols = size
    if not (1 <= rows <= 65535 and 1 <= cols <= 65535):
        raise ValueError(f"console size {rows}x{cols} (rows x columns) is out of range 1..65535")
    return rows, cols


def _link(link: LinkConfig) -> tuple[bytes, bytes, bytes]:
    """(name, address, netmask) as the extension takes them (an interface without an IPv4
    address, on an IPv6-only network: 0.0.0.0, only brought up)."""
    if not 0 <= link.prefix_len <= 32:
        raise ValueError(f"prefix length {link.prefix_len} of {link.name} is not 0 to 32")
    mask = (0xFFFFFFFF << (32 - link.prefix_len)) & 0xFFFFFFFF
    name = _check_text("interface name", link.name)
    return (name, _socket.inet_aton(link.address or "0.0.0.0"), mask.to_bytes(4, "big"))


class RealNative:
    """The real spawn path: ``sandbox_native.spawn`` (imported on first use, so modules that
    only need the types work without the compiled extension)."""

    def spawn(self, plan: SpawnPlan) -> Spawned:
        # By name: mypy would take the sandbox_native/ source directory for the module.
        extension = importlib.import_module("sandbox_native")
        arguments = native_arguments(plan)
        ns_fds: list[tuple[int, int]] = []
        try:
            for kind, path in plan.ns_paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"{kind.describe()} namespace {path}: {exc.strerror}"
                    ) from None
                ns_fds.append((fd, kind.value))
            pid, pidfd, sync_fd, shim_pidfd, report_fd = extension.spawn(
                **arguments, ns_fds=tuple(ns_fds)
            )
        finally:
            for fd, _ in ns_fds:
                os.close(fd)
        return Spawned(
            pid=pid, pidfd=pidfd, sync_fd=sync_fd, shim_pidfd=shim_pidfd, report_fd=report_fd
        )

    def id_mapped_tree(self, path: str, userns_fd: int) -> int:
        extension = importlib.import_module("sandbox_native")
        fd: int = extension.idmapped_tree(path, userns_fd)
        return fd

    def clone_tree(self, path: str, *, recursive: bool = False, mount_ns: int = -1) -> int:
        """A detached copy of the mount at ``path`` (open_tree; close-on-exec), with the
        mounts below it if ``recursive``; with ``mount_ns``, made by a child in that mount
        namespace (this process has threads: setns refuses it)."""
        extension = importlib.import_module("sandbox_native")
        fd: int = extension.clone_tree(path, recursive, mount_ns)
        return fd

    def rebind(self, pidfd: int, binds: Mapping[str, str]) -> None:
        extension = importlib.import_module("sandbox_native")
        trees: list[tuple[int, bytes]] = []
        try:
            for target, source in binds.items():
                trees.append((extension.clone_tree(source), _check_text("target", target)))
            extension.rebind(pidfd, tuple(trees))
        finally:
            for fd, _ in trees:
                os.close(fd)

    def release(self, spawned: Spawned, trees: Sequence[int] = ()) -> None:
        # A broken pipe: it failed before it waited (joining its cgroups), and its
        # message is next.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send_fds(spawned.sync_fd, SYNC_MESSAGE.pack(Message.RELEASE, 0, 0, 0), trees)


def send_fds(fd: int, data: bytes, fds: Sequence[int]) -> None:
    """socket.send_fds on the connected socket ``fd`` (not closed), by ``_socket`` itself:
    ``boxd-runtime create`` imports this module and would pay for socket.py otherwise."""
    sock = _socket.socket(fileno=fd)
    try:
        rights = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)] if fds else [])
    finally:
        sock.detach()


def recv_fds(fd: int, size: int, max_fds: int, flags: int = 0) -> tuple[bytes, list[int]]:
    """socket.recv_fds on the socket ``fd`` (not closed): the data and the fds that came."""
    sock = _socket.socket(fileno=fd)
    try:
        data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_LEN(max_fds * 4), flags)
    finally:
        sock.detach()
    return data, passed_fds(ancillary)


def passed_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds in a recvmsg's ancillary data (SCM_RIGHTS)."""
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += struct.unpack(f"{usable // 4}i", payload[:usable])
    return fds


class FakeNative:
    """A recording fake for tests without root: it runs ``plan.argv`` as a plain host
    process (no namespaces, mounts, identity or limits; stdio and env only, and no shim: the
    process is the caller's child), or, when ``failure`` is set, makes the spawn fail with
    that (stage, errno, index) record.  It places the process in the plan's cgroups as the
    kernel would, by writing its pid to ``cgroup.procs`` beside each ``tasks`` file and in
    the v2 directory (a fake cgroup tree's files)."""

    def __init__(self, failure: tuple[Stage, int, int] | None = None) -> None:
        self.plans: list[SpawnPlan] = []
        self.released: list[Spawned] = []
        self.failure = failure

    def spawn(self, plan: SpawnPlan) -> Spawned:
        native_arguments(plan)
        self.plans.append(plan)
        import socket  # a test double: the real path does without socket.py

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with parent, child:
            argv = list(plan.argv)
            actions = [
                (os.POSIX_SPAWN_DUP2, fd, target)
                for target, fd in enumerate((plan.stdin, plan.stdout, plan.stderr))
                if fd >= 0
            ]
            if self.failure is not None:
                child.send(SYNC_MESSAGE.pack(Message.FAILED, *self.failure))
                argv, actions = ["/bin/sh", "-c", "exit 127"], []
            pid = os.posix_spawnp(
                argv[0], argv, dict(_env_items(plan.env)), file_actions=actions, setsid=True
            )
            pidfd = os.pidfd_open(pid)
            dirs = [os.path.dirname(path) for _, path in plan.cgroup_tasks]
            if plan.cgroup_dir >= 0:
                dirs.append(os.readlink(f"/proc/self/fd/{plan.cgroup_dir}"))
            for d in dirs:
                with open(os.path.join(d, "cgroup.procs"), "a") as procs:
                    procs.write(f" {pid}")
            return Spawned(pid=pid, pidfd=pidfd, sync_fd=parent.detach())

    def id_mapped_tree(self, path: str, userns_fd: int) -> int:
        raise OSError(_errno.ENOSYS, "FakeNative makes no id-mapped mounts", path)

    def clone_tree(self, path: str, *, recursive: bool = False, mount_ns: int = -1) -> int:
        raise OSError(_errno.ENOSYS, "FakeNative makes no mount trees", path)

    def rebind(self, pidfd: int, binds: Mapping[str, str]) -> None:
        raise OSError(_errno.ENOSYS, "FakeNative makes no mounts")

    def release(self, spawned: Spawned, trees: Sequence[int] = ()) -> None:
        self.released.append(spawned)


def _env_items(env: Sequence[str]) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (e.partition("=") for e in env)]


async def start(
    native: Native,
    plan: SpawnPlan,
    prepare: Callable[[Spawned], None] | None = None,
    configure: Callable[[Spawned], Awaitable[None]] | None = None,
) -> Spawned:
    """Spawn ``plan``, run ``prepare`` (cgroup placement, id maps) while the child waits,
    release it, run ``configure`` (its network namespace's links: see :func:`_configure`)
    while it sets up its mounts, and wait until it has exec'd (with ``plan.start_fd``:
    until it waits for ``start``, set up but not yet exec'd).  Returns the
    :class:`Spawned` whose ``pidfd`` the caller now owns (``sync_fd`` is closed); raises
    :class:`SpawnError` if the child failed before exec.  On any error or cancellation the
    child is killed and reaped and both fds are closed."""
    import trio  # here: boxd-runtime's create uses this module without Trio (start_blocking)

    # What the caller did since its last await (the record, the cgroup, the plan) and the
    # spawn are two steps of the event loop, not one (a schedule point only: a cancelled
    # start still spawns, then kills and reaps its child, as below).
    await trio.lowlevel.cancel_shielded_checkpoint()
    spawned = native.spawn(plan)
    if spawned.report_fd >= 0:
        spawned = await (_shim_started if plan.shim is not None else _joined)(spawned, plan)
    held: list[int] = []  # closed whatever happens: the trees sent, fds that came unasked
    try:
        try:
            if prepare is not None:
                prepare(spawned)
            if plan.id_mapped:  # the maps are written now: they are what the trees take
                userns = os.open(f"/proc/{spawned.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    for source, _ in plan.id_mapped:
                        held.append(native.id_mapped_tree(source, userns))
                finally:
                    os.close(userns)
            native.release(spawned, held)
            message = await _configure(configure, spawned, plan)
            while message is None:
                await trio.lowlevel.wait_readable(spawned.sync_fd)
                spawned, received = _next_message(spawned, held)
                if received is None:
                    break  # end of file: it has exec'd
                if received[0] not in _HANDED_OVER:
                    message = received
        except BaseException:
            _close_handed_over(spawned)
            with trio.CancelScope(shield=True):
                await _kill_and_reap(spawned, plan)
            raise
    finally:
        for fd in held:
            os.close(fd)
    os.close(spawned.sync_fd)
    if message is None or message[0] is Message.WAITING:
        return spawned
    _close_handed_over(spawned)
    with trio.CancelScope(shield=True):
        await _reap(spawned, plan)
    raise _failure(plan, message)


async def _configure(
    configure: Callable[[Spawned], Awaitable[None]] | None, spawned: Spawned, plan: SpawnPlan
) -> tuple[Message, int, int, int] | None:
    """Run ``configure`` while the released child sets up its mounts, then tell a child
    with links that its interfaces are there (LINKED: it waits for that before it
    configures them, so it never runs without its network).  None, or the FAILED record of
    a child that failed meanwhile: such a child takes its network namespace with it, so
    that ``configure`` fails too, and its own failure is the one to report."""
    try:
        if configure is not None:
            await configure(spawned)
    except Exception:
        failure = await _failure_of_killed(spawned)
        if failure is None:
            raise
        return failure
    if plan.links:
        # A broken pipe: it failed meanwhile, and its record is next.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send_fds(spawned.sync_fd, SYNC_MESSAGE.pack(Message.LINKED, 0, 0, 0), ())
    return None


async def _shim_started(spawned: Spawned, plan: SpawnPlan) -> Spawned:
    """Shim mode: ``spawned`` with the container's pid and pidfd once the shim's
    intermediate has reported them (STARTED) and become boxd-shim (end of file on its
    report socket, which is close-on-exec).  Its clone of the container and its exec take
    a millisecond or more; the event loop goes on meanwhile.  Shielded, as the spawn
    itself: the intermediate reports or ends by itself.  If it fails, the container (if
    cloned) is killed, the intermediate reaped, every fd of ``spawned`` closed and the
    failure raised: the intermediate's record, else the container's own (on the sync
    socket), else that it ended without a report."""
    import trio  # see start()

    report = spawned.report_fd
    container = -1  # its pidfd, once reported
    message: tuple[Message, int, int, int] | None = None
    with trio.CancelScope(shield=True):
        try:
            await trio.lowlevel.wait_readable(report)
            message, container = _report(report, want_fd=True)
            if message is not None and message[0] is Message.STARTED and container >= 0:
                pid = message[3]
                await trio.lowlevel.wait_readable(report)
                message, _ = _report(report, want_fd=False)
                if message is None:
                    os.close(report)
                    return evolve(spawned, pid=pid, pidfd=container, report_fd=-1)
        except BaseException:
            await _shim_failed(spawned, container)
            os.close(spawned.sync_fd)
            raise
        await _shim_failed(spawned, container)
    if message is not None and message[0] is Message.FAILED:
        os.close(spawned.sync_fd)
    else:
        message = _failure_on_sync(spawned)
    if message is None:
        raise RuntimeError("shim: the intermediate process ended without a report")
    raise _failure(plan, message)


def _failure_on_sync(spawned: Spawned) -> tuple[Message, int, int, int] | None:
    """An intermediate that ended without its report: the FAILED record it (or the child
    it made) left on the sync socket, if any.  Closes the sync socket."""
    message = None
    with contextlib.suppress(BlockingIOError):
        data, fds = recv_fds(spawned.sync_fd, SYNC_MESSAGE.size, 1, _socket.MSG_DONTWAIT)
        for fd in fds:
            os.close(fd)
        message = parse_message(data) if data else None
    os.close(spawned.sync_fd)
    return message if message is not None and message[0] is Message.FAILED else None


def _report(report: int, *, want_fd: bool) -> tuple[tuple[Message, int, int, int] | None, int]:
    """The next record on a shim's report socket (None at end of file) and the fd that came
    with it (-1 if none, or if none was wanted: any that came is closed)."""
    data, fds = recv_fds(report, SYNC_MESSAGE.size, 1, _socket.MSG_CMSG_CLOEXEC)
    fd = fds.pop(0) if want_fd and fds else -1
    for extra in fds:
        os.close(extra)
    return (parse_message(data) if data else None), fd


async def _shim_failed(spawned: Spawned, container: int) -> None:
    """The intermediate failed: kill the container it reported (if any), close the report
    socket and reap the intermediate (closing its pidfd)."""
    from . import _shim  # Trio's: see start()

    if container >= 0:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(container, signal.SIGKILL)
        os.close(container)
    os.close(spawned.report_fd)
    await _shim.reap_child(spawned.shim_pidfd)


async def _joined(spawned: Spawned, plan: SpawnPlan) -> Spawned:
    """Join mode: :func:`_join_report` once the intermediate has ended (it enters the
    target's namespaces and clones the final process meanwhile, a millisecond or more,
    while the event loop goes on).  Shielded, as the spawn itself: it ends by itself."""
    import trio  # see start()

    with trio.CancelScope(shield=True):
        await trio.lowlevel.wait_readable(spawned.pidfd)
    return _join_report(spawned, plan)


def _join_report(spawned: Spawned, plan: SpawnPlan) -> Spawned:
    """Join mode: reap the intermediate (waiting for its end, where the caller has not)
    and return ``spawned`` with the final process's pid and a pidfd of it (our child:
    CLONE_PARENT).  Without a report, the intermediate's failure (on the sync socket) is
    raised, or that it ended without one; every fd of ``spawned`` is then closed."""
    try:
        status = os.waitid(os.P_PIDFD, spawned.pidfd, os.WEXITED)
        data = os.read(spawned.report_fd, _JOIN_REPORT.size)
    except BaseException:
        os.close(spawned.sync_fd)
        raise
    finally:
        os.close(spawned.pidfd)
        os.close(spawned.report_fd)
    if len(data) == _JOIN_REPORT.size:
        (pid,) = _JOIN_REPORT.unpack(data)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.close(spawned.sync_fd)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            raise
        return evolve(spawned, pid=pid, pidfd=pidfd, report_fd=-1)
    message = _failure_on_sync(spawned)
    if message is None:
        # An OSError, as every other failure to join is: it ended before it could report
        # (killed with its target's cgroup as that container ended, or by the OOM killer).
        raise ChildProcessError(
            f"join: the intermediate process ended (status {status.si_status if status else '?'})"
            " without a report"
        )
    raise _failure(plan, message)


# Join mode's report: the final process's pid, a native int (child.c).
_JOIN_REPORT = struct.Struct("=i")


async def _failure_of_killed(spawned: Spawned) -> tuple[Message, int, int, int] | None:
    """Kill the child (it may be waiting for LINKED) and read what it sent to the end:
    its FAILED record, if it failed before (a record it sent before it ended)."""
    import trio  # see start()

    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
    while True:
        await trio.lowlevel.wait_readable(spawned.sync_fd)
        data, fds = _receive(spawned.sync_fd)
        for fd in fds:
            os.close(fd)
        if not data:
            return None
        message = parse_message(data)
        if message[0] is Message.FAILED:
            return message


# The messages that hand the caller an fd as the child goes on (not its last message).
_HANDED_OVER = (Message.CONSOLE, Message.SYSINFO)


def _next_message(
    spawned: Spawned, held: list[int]
) -> tuple[Spawned, tuple[Message, int, int, int] | None]:
    """The child's next sync message (None at EOF); the fds that came with it go to
    ``held``, but a console message's terminal master and a sysinfo message's listener go
    into the returned Spawned."""
    data, fds = _receive(spawned.sync_fd)
    held.extend(fds)
    message = parse_message(data) if data else None
    if message is not None and message[0] is Message.CONSOLE:
        if len(fds) != 1 or spawned.console >= 0:
            raise RuntimeError("spawn: a console message without exactly one master")
        held.remove(fds[0])
        spawned = evolve(spawned, console=fds[0])
    elif message is not None and message[0] is Message.SYSINFO:
        refused = message[2]  # its errno: the kernel gave no listener
        if len(fds) != (0 if refused else 1) or spawned.sysinfo >= 0:
            raise RuntimeError("spawn: a sysinfo message without exactly one listener")
        if fds:
            held.remove(fds[0])
            spawned = evolve(spawned, sysinfo=fds[0])
        else:
            _listener_refused(refused)
    return spawned, message


_refusal_logged = False


def _listener_refused(err: int) -> None:
    """Log, once per process, that the kernel refused a sysinfo listener (the container
    runs on without: its sysinfo is the host's)."""
    global _refusal_logged
    if not _refusal_logged:
        _refusal_logged = True
        import logging  # only then: boxd-runtime's create does without it

        logging.getLogger("boxd.native").warning(
            "the kernel refuses a seccomp listener (%s): containers' sysinfo(2) shows the "
            "host's memory, not their limits",
            os.strerror(err),
        )


def _close_handed_over(spawned: Spawned) -> None:
    """Close the fds the child handed over (its start failed)."""
    for fd in (spawned.console, spawned.sysinfo):
        if fd >= 0:
            os.close(fd)


def _failure(plan: SpawnPlan, message: tuple[Message, int, int, int]) -> Exception:
    """The error of the last message of a child that did not exec (FAILED, described)."""
    kind, stage, err, index = message
    if kind is not Message.FAILED:
        return RuntimeError(f"spawn: an unexpected {kind.name} message from the child")
    return describe_failure(plan, Stage(stage), err, index)


def _receive(sync_fd: int) -> tuple[bytes, list[int]]:
    """One message from the child and the fds that came with it (b"": it has exec'd)."""
    while True:
        try:
            return recv_fds(sync_fd, SYNC_MESSAGE.size, 1, _socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:
            # It ended with a message of ours unread (RELEASE, LINKED): the kernel says
            # so once, then gives what it sent before it ended.
            continue


async def _kill_and_reap(spawned: Spawned, plan: SpawnPlan) -> None:
    os.close(spawned.sync_fd)
    with contextlib.suppress(ProcessLookupError):  # already gone: reap it below
        signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
    await _reap(spawned, plan)


async def _reap(spawned: Spawned, plan: SpawnPlan) -> None:
    """Wait for the child's end (it was killed or failed) and reap it, or have its shim
    reap it and end the shim."""
    from pathlib import Path

    from . import _shim  # Trio's: see start()

    if plan.shim is not None and spawned.shim_pidfd >= 0:
        await _shim.end_unheld(spawned.pidfd, spawned.shim_pidfd, Path(plan.shim.directory))
        return
    await _shim.reap_child(spawned.pidfd)


def start_blocking(
    native: Native, plan: SpawnPlan, prepare: Callable[[Spawned], None] | None = None
) -> Spawned:
    """:func:`start` for a program without an event loop (``boxd-runtime``, one short
    process per command, which would spend most of its time importing Trio): the same
    steps, waiting in blocking calls.  Plans with id-mapped trees or a shim need
    :func:`start`."""
    if plan.id_mapped or plan.shim is not None:
        raise ValueError("start_blocking: id-mapped trees and shims need start()")
    spawned = native.spawn(plan)
    if spawned.report_fd >= 0:
        spawned = _join_report(spawned, plan)
    held: list[int] = []
    try:
        try:
            if prepare is not None:
                prepare(spawned)
            native.release(spawned)
            while True:
                spawned, message = _next_message(spawned, held)  # a blocking socket: waits
                if message is None or message[0] not in _HANDED_OVER:
                    break
        except BaseException:
            _close_handed_over(spawned)
            os.close(spawned.sync_fd)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
            _reap_blocking(spawned.pidfd)
            raise
    finally:
        for fd in held:
            os.close(fd)
    os.close(spawned.sync_fd)
    if message is None or message[0] is Message.WAITING:
        return spawned
    _close_handed_over(spawned)
    _reap_blocking(spawned.pidfd)
    raise _failure(plan, message)


def _reap_blocking(pidfd: int) -> None:
    """Wait for the caller's child behind ``pidfd`` to end, reap it, close ``pidfd``."""
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    finally:
        os.close(pidfd)

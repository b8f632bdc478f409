"""The OCI runtime's operations that need the spec's records, the spawn path or the cgroup
code (create, exec, run, pause, update, a delete that must kill) on boxd's spawn path,
cgroups and seccomp compiler; :mod:`._quick` has the quick commands.  Nothing here runs on
Trio but what waits for a cgroup (pause, the removal of a cgroup that may hold processes).

``create`` spawns the container's init as a child of the calling process (conmon or the
containerd shim, which reap it, as they do with runc's), lets it set everything up to the
exec, and returns while it waits in ``accept()`` on ``<root>/<id>/start.sock``; ``start``
connects, and reads from that connection either a failure record or the end of file that
means the exec happened.  No process of the runtime stays behind.
"""

from __future__ import annotations

import _socket  # socket.py imports selectors and array: ~3 ms of every create
import contextlib
import os
import signal
import stat
import zlib

from .. import _caps, _native, _rootfs
from .._cgroup import Cgroup, CgroupHost
from .._native import Namespace, RealNative, SpawnPlan, Stage
from .._record import evolve
from . import _quick, _spec, _translate
from ._spec import Hook, Spec, SpecError
from ._state import (
    OCI_VERSION,
    OciError,
    Root,
    alive,
    now,
    start_time_of,
    state_document,
    status_of,
    write_pid_file,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: boxd-runtime create does without typing
if TYPE_CHECKING:
    from typing import Any

    from ._copyup import Sources
    from ._state import Saved

CGROUP_GROUP = "boxd-runtime"


def wait_exit(pidfd: int) -> os.waitid_result:
    """The exit status of our child behind ``pidfd`` (which the caller still owns)."""
    status = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    assert status is not None
    return status


# --- cgroups -------------------------------------------------------------------------------


def cgroup_location(
    root: Root, cgroups_path: str, cid: str, systemd: bool
) -> tuple[str | None, str, str]:
    """(parent, group, name) for CgroupHost.detect and create: ``/a/b/c`` is c below a/b
    from each hierarchy's root, ``a/b`` is b below our own cgroup's a; empty (or a bare
    name) is the id (name) below our own ``boxd-runtime-<digest of --root>``, so that two
    runtimes with different roots never share a cgroup for the same id."""
    if systemd:
        # What to change, in the words of the callers that pass it.
        use = (
            "use the cgroupfs manager (podman --cgroup-manager cgroupfs; containerd: "
            "SystemdCgroup = false)"
        )
        raise OciError(
            f"--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); {use}"
            if not os.path.isdir("/run/systemd/system")
            else f"--systemd-cgroup is not supported by boxd-runtime; {use}"
        )
    # 32 bits, as 8 hex digits of a SHA-256 would be; hashlib's OpenSSL costs ~2 ms to load.
    digest = f"{zlib.crc32(os.fsencode(root.path)):08x}"
    group = f"{CGROUP_GROUP}-{digest}"
    path = cgroups_path.rstrip("/")
    if not path:
        return None, group, cid
    parent, _, name = path.rpartition("/")
    if path.startswith("/") and not parent:
        return "/", CGROUP_GROUP, name  # directly below each hierarchy's root, as runc does
    if not parent:
        return None, group, name
    return parent, CGROUP_GROUP, name


def open_cgroup(saved: Saved) -> Cgroup:
    host = CgroupHost.detect(parent=saved["cgroup_parent"], name=saved["cgroup_group"])
    return host.open(saved["cgroup_name"])


def _remove_cgroup(cgroup: Cgroup) -> None:
    import trio  # only here: removing a cgroup that may hold processes waits for them

    trio.run(cgroup.remove)


# --- create --------------------------------------------------------------------------------


class CreateOptions:
    """``create``'s (and ``run``'s) options."""

    def __init__(
        self,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        no_pivot: bool = False,
        systemd_cgroup: bool = False,
    ) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.systemd_cgroup = systemd_cgroup


def _send_console(console_socket: str, master: int) -> None:
    with contextlib.closing(_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)) as sock:
        try:
            sock.connect(console_socket)
        except OSError as exc:
            raise OciError(f"--console-socket {console_socket}: {exc.strerror}") from None
        _native.send_fds(sock.fileno(), b"/dev/ptmx", [master])


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _placer(maps: tuple[str, str] | None, oom_score_adj: int | None) -> Any:
    """What is done to the new process while it waits (it places itself in its cgroup:
    see :func:`_spawn`)."""

    def place(spawned: _native.Spawned) -> None:
        if oom_score_adj is not None:
            _write_file(f"/proc/{spawned.pid}/oom_score_adj", str(oom_score_adj))
        if maps is not None:
            _write_file(f"/proc/{spawned.pid}/uid_map", maps[0])
            _write_file(f"/proc/{spawned.pid}/gid_map", maps[1])

    return place


def _give_stdio(plan: SpawnPlan, spec: Spec) -> None:
    """Make the process's user the owner of the pipes it gets as stdio (conmon's, a
    containerd shim's: root's, mode 0600), as runc's fixStdioPermissions does, so a
    non-root process may reopen /dev/stdout.  Only pipes: a caller's file or terminal
    stays its own (runc would give those away too)."""
    uid = _translate.host_uid(spec, plan.uid)
    if uid is None or plan.console:
        return
    for n, fd in enumerate((plan.stdin, plan.stdout, plan.stderr)):
        fd = n if fd < 0 else fd  # -1: the runtime's own, which the process inherits
        try:
            st = os.fstat(fd)
        except OSError:
            continue  # closed: the child's dup2 names it
        if stat.S_ISFIFO(st.st_mode) and st.st_uid != uid:
            os.fchown(fd, uid, -1)


def _spawn(plan: SpawnPlan, cgroup: Cgroup, place: Any) -> _native.Spawned:
    """Spawn ``plan`` in ``cgroup``: the process places itself (Cgroup.placement), which
    spares the kernel's wait for an RCU grace period that moving it from here costs."""
    with cgroup.placement() as (tasks, v2_dir):
        placed = evolve(plan, cgroup_tasks=tasks, cgroup_dir=v2_dir)
        return _native.start_blocking(RealNative(), placed, place)


def _copy_sources(rootfs: str | None, destinations: tuple[str, ...]) -> Sources:
    """What the tmpfs mounts with ``tmpcopyup`` are to hold (see _copyup.Sources)."""
    from ._copyup import CopyUpError, Sources  # a module of its own: few creates need it

    assert rootfs is not None  # build() always sets the bundle's
    try:
        return Sources(rootfs, destinations)
    except CopyUpError as exc:
        raise OciError(f"tmpcopyup: {exc}") from None


def _fill_tmpfs(sources: Sources, pidfd: int, userns: bool) -> None:
    from ._copyup import CopyUpError

    try:
        sources.fill(pidfd, userns=userns)
    except CopyUpError as exc:
        raise OciError(f"tmpcopyup: {exc}") from None


def _write_sysctls(values: dict[str, str], pidfd: int, spaces: frozenset[Namespace]) -> None:
    """Set namespaced sysctls from a process that joined the init's namespaces (a sysctl
    file shows the namespace of the process that writes it, not of the /proc mount), when
    the init cannot (see _translate.table_sysctls)."""
    if not values:
        return
    script = 'while [ $# -gt 0 ]; do printf %s "$2" > "/proc/sys/$1" || exit 1; shift 2; done'
    argv = ["/bin/sh", "-c", script, "sysctl"]
    for key, value in values.items():
        argv += [key.replace(".", "/"), value]
    plan = SpawnPlan(
        argv=tuple(argv),
        join_pidfd=pidfd,
        join_namespaces=spaces & {Namespace.IPC, Namespace.NET, Namespace.UTS},
        process_name="boxd:[sysctl]",
    )
    spawned = _native.start_blocking(RealNative(), plan)
    try:
        status = wait_exit(spawned.pidfd)
    finally:
        os.close(spawned.pidfd)
    if status.si_code != os.CLD_EXITED or status.si_status != 0:
        raise OciError(f"linux.sysctl: cannot set {', '.join(values)} in the container")


_HOOK_FIELDS = {
    "prestart": "prestart",
    "createRuntime": "create_runtime",
    "createContainer": "create_container",
    "startContainer": "start_container",
    "poststart": "poststart",
    "poststop": "poststop",
}


def _hooks(spec: Spec) -> dict[str, Any]:
    """The spec's hooks by kind (the spec's name: ``createRuntime``), as the state keeps
    them."""
    if spec.hooks is None:
        return {}
    found: dict[str, Any] = {}
    for kind, field in _HOOK_FIELDS.items():
        hooks: tuple[Hook, ...] = getattr(spec.hooks, field)
        if hooks:
            found[kind] = [
                {"path": h.path, "args": list(h.args), "env": list(h.env), "timeout": h.timeout}
                for h in hooks
            ]
    return found


def create(root: Root, cid: str, options: CreateOptions) -> _native.Spawned:
    """Create the container; return its init (the caller's child), waiting for start."""
    bundle = os.path.abspath(options.bundle)
    document, spec = _spec.load(bundle)
    if spec.process is not None and spec.process.terminal and not options.console_socket:
        raise OciError(
            "process.terminal is true: --console-socket is required to receive the terminal"
        )
    linux = spec.linux
    parent, group, name = cgroup_location(
        root, linux.cgroups_path if linux else "", cid, options.systemd_cgroup
    )
    limits = _translate.limits(linux.resources if linux else None)
    if limits.pids_limit is None:
        # No pids limit in the spec is none, as under runc and crun (containerd sets none;
        # Podman its own): boxd's default (DEFAULT_PIDS_LIMIT) is for its own containers.
        limits = evolve(limits, pids_limit=-1)
    host = CgroupHost.detect(parent=parent, name=group)
    try:
        host.validate(limits)
    except ValueError as exc:
        raise SpecError(f"config.json: linux.resources: {exc}") from None
    _translate.check_applies(host, limits, "config.json")
    devices = _translate.device_rules(spec)
    root.make(cid)
    cgroup: Cgroup | None = None
    sources: Sources | None = None
    try:
        with contextlib.closing(_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)) as listener:
            listener.bind(root.start_socket(cid))
            listener.listen(1)
            spaces = _translate.namespaces(spec)
            owned = _translate.sysctl_namespaces(spec)
            sysctls = _translate.sysctls(spec, owned)
            in_table = _translate.table_sysctls(spec, spaces)
            copy_ups = _translate.copy_ups(spec)
            plan = _translate.build(
                spec,
                bundle,
                start_fd=listener.fileno(),
                keep_fds=options.preserve_fds,
                no_pivot=options.no_pivot,
                sysctls=sysctls if in_table else {},
                seccomp_cache=root.path,
                host_cgroup2=str(host.v2_mount) if host.v2_mount is not None else None,
                cgroups=host.view(name, limits),
            )
            cgroup = host.create(name, limits, devices)
            assert spec.process is not None
            umask = spec.process.user.umask
            os.umask(0o022 if umask is None else umask)  # runc's default
            place = _placer(_translate.id_maps(spec), spec.process.oom_score_adj)
            if copy_ups:
                sources = _copy_sources(plan.rootfs, copy_ups)
            if Namespace.USER in spaces:
                try:
                    plan = _rootfs.bind_trees(RealNative(), plan)
                except (OSError, ValueError) as exc:
                    raise OciError(f"config.json: {exc}") from None
            _give_stdio(plan, spec)
            try:
                spawned = _spawn(plan, cgroup, place)
            finally:
                for fd in plan.mount_fds:
                    os.close(fd)
        try:
            if spawned.console >= 0:  # sized before the exec (SpawnPlan.console_size)
                try:
                    assert options.console_socket is not None
                    _send_console(options.console_socket, spawned.console)
                finally:
                    os.close(spawned.console)
            if not in_table:
                _write_sysctls(sysctls, spawned.pidfd, owned)
            if sources is not None:
                _fill_tmpfs(sources, spawned.pidfd, Namespace.USER in spaces)
            found = start_time_of(spawned.pid)
            saved: Saved = {
                "id": cid,
                "pid": spawned.pid,
                "start_time": found[0] if found else 0,
                "bundle": str(bundle),
                "created": now(),
                "config": document,
                "cgroup_parent": parent,
                "cgroup_group": group,
                "cgroup_name": name,
                "cgroup_dirs": list(cgroup.paths.values()),
                # A cgroupsPath's parents are the caller's; ours (boxd-runtime-<digest>)
                # are removed once empty, as Cgroup.remove does.
                "cgroup_made": []
                if parent
                else [os.path.dirname(d) for d in cgroup.paths.values()],
                "freezer": cgroup.freeze_state(),
                "hooks": _hooks(spec),
            }
            state = state_document(saved, "created")
            for kind in ("prestart", "createRuntime", "createContainer"):
                _quick.run_hooks(saved["hooks"].get(kind) or [], kind, state)
            root.save(saved)
            write_pid_file(options.pid_file, spawned.pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
            wait_exit(spawned.pidfd)
            os.close(spawned.pidfd)
            raise
    except BaseException:
        if cgroup is not None:
            _remove_cgroup(cgroup)
        root.remove(cid)
        raise
    finally:
        if sources is not None:
            sources.close()
    return spawned


def start_failure(saved: Saved, record: bytes) -> Exception:
    """What ``start`` reports when the init's exec failed: its FAILED message described
    (``exec /bin/nope: No such file or directory``)."""
    try:
        kind, stage, err, index = _native.parse_message(record)
    except (RuntimeError, ValueError):
        kind = None
    if kind is not _native.Message.FAILED:
        return OciError(f"start: a malformed failure message from the container: {record!r}")
    process = saved["config"].get("process") or {}
    plan = SpawnPlan(argv=tuple(process.get("args") or ["?"]), cwd=process.get("cwd") or "/")
    return _native.describe_failure(plan, Stage(stage), err, index)


# --- delete, pause, update -----------------------------------------------------------------


async def _wait_gone(saved: Saved) -> None:
    import trio

    try:
        pidfd = os.pidfd_open(saved["pid"])
    except ProcessLookupError:
        return
    try:
        if alive(saved):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def delete(root: Root, cid: str, force: bool) -> None:
    """Delete any container (``_quick.delete`` does the stopped ones with an empty
    cgroup): kill its init and what is left in its cgroup, remove cgroup and state."""
    import trio

    with root.locked(cid):
        saved = root.load(cid)
        status = status_of(root, saved)
        if status in ("running", "paused") and not force:
            raise OciError(f"cannot delete container {cid} that is not stopped: {status}")
        cgroup = open_cgroup(saved)
        if status == "paused":
            cgroup.thaw()
        if status != "stopped":
            _quick.signal_init(saved, signal.SIGKILL)
            with trio.move_on_after(10):
                await _wait_gone(saved)
        await cgroup.remove()
        root.remove(cid)
    with contextlib.suppress(OciError):
        _quick.run_hooks(saved["hooks"].get("poststop") or [], "poststop",
                  state_document(saved, "stopped"))  # fmt: skip


async def pause(root: Root, cid: str, frozen: bool) -> None:
    with root.locked(cid):
        saved = root.load(cid)
        status = status_of(root, saved)
        if frozen and status != "running":
            raise OciError(f"container not running: {status}")
        if not frozen and status != "paused":
            raise OciError(f"container not paused: {status}")
        cgroup = open_cgroup(saved)
        if frozen:
            await cgroup.freeze()
        else:
            cgroup.thaw()


def _merged(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The resources after runc's ``update``: each value given (not null) replaces the
    container's, within its section (``memory``, ``cpu``...); the others stay."""
    out = dict(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **{k: v for k, v in value.items() if v is not None}}
        elif value is not None:
            out[key] = value
    return out


def update(root: Root, cid: str, resources: dict[str, Any]) -> None:
    """Apply the limits ``resources`` gives; they are checked with the container's others
    (``podman update --memory-swap`` sends the swap alone: its memory limit is the
    container's), and kept in the state's config for the next update."""
    limits = _translate.limits(_spec.structure(resources, _spec.Resources, "--resources"))
    with root.locked(cid):
        saved = root.load(cid)
        if status_of(root, saved) == "stopped":
            raise OciError("container not running")
        linux = saved["config"].setdefault("linux", {})
        after = _merged(linux.get("resources") or {}, resources)
        merged = _translate.limits(_spec.structure(after, _spec.Resources, "--resources"))
        host = CgroupHost.detect(parent=saved["cgroup_parent"], name=saved["cgroup_group"])
        try:
            host.validate(merged)
        except ValueError as exc:
            raise SpecError(f"--resources: {exc}") from None
        _translate.check_applies(host, limits, "--resources")
        cgroup = host.open(saved["cgroup_name"])
        cgroup.update(limits)
        linux["resources"] = after
        dirs = list(cgroup.paths.values())
        if dirs != saved["cgroup_dirs"]:  # a cpuset limit joined the cpuset hierarchy
            saved["cgroup_dirs"] = dirs
            if not saved["cgroup_parent"]:  # its parent there is ours too: delete removes it
                made = {*saved["cgroup_made"], *(os.path.dirname(d) for d in dirs)}
                saved["cgroup_made"] = sorted(made)
        root.save(saved)


# --- exec ----------------------------------------------------------------------------------


class ExecOptions:
    """``exec``'s options."""

    def __init__(
        self,
        *,
        process: dict[str, Any] | None = None,  # --process FILE, parsed
        args: tuple[str, ...] = (),
        tty: bool = False,
        console_socket: str | None = None,
        detach: bool = False,
        pid_file: str | None = None,
        cwd: str | None = None,
        env: tuple[str, ...] = (),
        user: str | None = None,
        preserve_fds: int = 0,
    ) -> None:
        self.process = process
        self.args = args
        self.tty = tty
        self.console_socket = console_socket
        self.detach = detach
        self.pid_file = pid_file
        self.cwd = cwd
        self.env = env
        self.user = user
        self.preserve_fds = preserve_fds


def _exec_process(spec: Spec, options: ExecOptions) -> _spec.Process:
    if options.process is not None:
        process = _spec.structure(options.process, _spec.Process, "--process")
    else:
        if not options.args:
            raise OciError("exec: give the command (arguments) or --process FILE")
        assert spec.process is not None
        process = spec.process.evolve(args=options.args, terminal=options.tty)
    if options.cwd:
        process = process.evolve(cwd=options.cwd)
    if options.env:
        process = process.evolve(env=(*process.env, *options.env))
    if options.user:
        uid, _, gid = options.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise OciError(f"--user {options.user!r}: use UID[:GID] (numbers)")
        process = process.evolve(user=process.user.evolve(uid=int(uid), gid=int(gid or 0)))
    return process


def exec_(root: Root, cid: str, options: ExecOptions) -> int:
    saved = root.load(cid)
    status = status_of(root, saved)
    if status == "paused":
        raise OciError("cannot exec in a paused container: resume it first")
    if status not in ("running", "created"):
        raise OciError("cannot exec in a stopped container")
    spec = _spec.parse(saved["config"])
    process = _exec_process(spec, options)
    if process.terminal and not options.console_socket:
        raise OciError("exec with a terminal needs --console-socket to receive it")
    spaces = _translate.namespaces(spec)
    fields = _translate.process_plan(process, console=process.terminal)
    caps = fields["caps"]
    assert isinstance(caps, _native.Capabilities)
    pidfd = os.pidfd_open(saved["pid"])
    try:
        plan = SpawnPlan(
            join_pidfd=pidfd,
            join_namespaces=spaces | {kind for kind, _ in _translate.joined(spec)},
            seccomp=_translate.seccomp_program(spec, caps.bounding, root.path),
            process_name="boxd:[oci-exec]",
            keep_fds=options.preserve_fds,
            **fields,  # type: ignore[arg-type]
        )
        cgroup = open_cgroup(saved).for_exec(saved["pid"])
        _give_stdio(plan, spec)
        spawned = _spawn(plan, cgroup, _placer(None, process.oom_score_adj))
    finally:
        os.close(pidfd)
    try:
        if spawned.console >= 0:  # sized before the exec (SpawnPlan.console_size)
            try:
                assert options.console_socket is not None
                _send_console(options.console_socket, spawned.console)
            finally:
                os.close(spawned.console)
        write_pid_file(options.pid_file, spawned.pid)
        if options.detach:
            return 0
        return exit_code(wait_exit(spawned.pidfd))
    finally:
        os.close(spawned.pidfd)


def exit_code(status: os.waitid_result) -> int:
    if status.si_code == os.CLD_EXITED:
        return status.si_status
    return 128 + status.si_status


# --- run -----------------------------------------------------------------------------------


def remove(root: Root, cid: str, force: bool) -> None:
    """``delete``: the quick way when it can, else the thorough one."""
    if not _quick.delete(root, cid, force):
        import trio

        trio.run(delete, root, cid, force)


def run(root: Root, cid: str, options: CreateOptions, *, detach: bool, keep: bool) -> int:
    """create + start; in the foreground also wait for the exit and (unless ``keep``)
    delete."""
    spawned = create(root, cid, options)
    try:
        try:
            _quick.start(root, cid)
        except BaseException:
            remove(root, cid, force=True)
            raise
        if detach:
            return 0
        status = wait_exit(spawned.pidfd)
        if not keep:
            remove(root, cid, force=True)
        return exit_code(status)
    finally:
        os.close(spawned.pidfd)


# --- list, ps, features --------------------------------------------------------------------


def features() -> dict[str, Any]:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        ],
        "mountOptions": sorted({*_translate._FLAGS, *_translate.PROPAGATION, _translate.TMPCOPYUP}),
        "linux": {
            "namespaces": sorted(_translate.NAMESPACES),
            "capabilities": sorted(_capability_names()),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": sorted(
                    [
                        "SCMP_ACT_ALLOW",
                        "SCMP_ACT_ERRNO",
                        "SCMP_ACT_KILL",
                        "SCMP_ACT_KILL_PROCESS",
                        "SCMP_ACT_KILL_THREAD",
                        "SCMP_ACT_LOG",
                        "SCMP_ACT_TRAP",
                    ]
                ),
                "operators": [
                    "SCMP_CMP_EQ",
                    "SCMP_CMP_GE",
                    "SCMP_CMP_GT",
                    "SCMP_CMP_LE",
                    "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ",
                    "SCMP_CMP_NE",
                ],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"io.github.boxd.runtime": "boxd-runtime"},
    }


def _capability_names() -> list[str]:
    return [_caps.cap_name(n) for n in range(_caps.LAST_KNOWN_CAP + 1)]

"""The OCI runtime's operations (create, start, state, kill, delete, exec, ...) on boxd's
spawn path, cgroups and seccomp compiler.

``create`` spawns the container's init as a child of the calling process (conmon or the
containerd shim, which reap it, as they do with runc's), lets it set everything up to the
exec, and returns while it waits in ``accept()`` on ``<root>/<id>/start.sock``; ``start``
connects, and reads from that connection either a failure record or the end of file that
means the exec happened.  No process of the runtime stays behind.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from .. import _caps, _native, _records
from .._cgroup import Cgroup, CgroupHost
from .._native import SYNC_MESSAGE, Message, Namespace, RealNative, SpawnPlan, Stage
from .._store import atomic_write
from . import _spec, _translate
from ._spec import Hook, Spec, SpecError
from ._state import NotFound, Root, Saved, alive, start_time_of

OCI_VERSION = "1.2.0"
CGROUP_GROUP = "boxd-runtime"


class OciError(Exception):
    """An operation that cannot be done; the message is for the caller (conmon logs it)."""


async def wait_exit(pidfd: int) -> os.waitid_result:
    """The exit status of our child behind ``pidfd`` (which the caller still owns)."""
    await trio.lowlevel.wait_readable(pidfd)
    # Readable: the child has exited and waitid returns at once.
    status = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)  # noqa: ASYNC222
    assert status is not None
    return status


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


# --- cgroups -------------------------------------------------------------------------------


def cgroup_location(
    root: Root, cgroups_path: str, cid: str, systemd: bool
) -> tuple[str | None, str, str]:
    """(parent, group, name) for CgroupHost.detect and create: ``/a/b/c`` is c below a/b
    from each hierarchy's root, ``a/b`` is b below our own cgroup's a; empty (or a bare
    name) is the id (name) below our own ``boxd-runtime-<digest of --root>``, so that two
    runtimes with different roots never share a cgroup for the same id."""
    if systemd:
        raise OciError(
            "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); "
            "use the cgroupfs manager"
            if not os.path.isdir("/run/systemd/system")
            else "--systemd-cgroup is not supported by boxd-runtime; use the cgroupfs manager"
        )
    digest = hashlib.sha256(os.fsencode(root.path.absolute())).hexdigest()[:8]
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
    host = CgroupHost.detect(parent=saved.cgroup_parent, name=saved.cgroup_group)
    return host.open(saved.cgroup_name)


# --- hooks ---------------------------------------------------------------------------------


def state_document(saved: Saved, status: str) -> dict[str, Any]:
    return {
        "ociVersion": OCI_VERSION,
        "id": saved.id,
        "status": status,
        "pid": saved.pid if status != "stopped" else 0,
        "bundle": saved.bundle,
        "annotations": saved.config.get("annotations") or {},
    }


def run_hooks(hooks: Sequence[Hook], kind: str, state: dict[str, Any]) -> None:
    """Run each hook with the state on its stdin; a failure or timeout raises."""
    data = json.dumps(state).encode()
    for hook in hooks:
        argv = list(hook.args) or [hook.path]
        env = dict(e.split("=", 1) for e in hook.env if "=" in e)
        try:
            done = subprocess.run(
                argv,
                executable=hook.path,
                input=data,
                env=env,
                capture_output=True,
                timeout=hook.timeout if hook.timeout and hook.timeout > 0 else None,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OciError(f"{kind} hook {hook.path} timed out after {hook.timeout} s") from None
        except OSError as exc:
            raise OciError(f"{kind} hook {hook.path}: {exc.strerror}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise OciError(
                f"{kind} hook {hook.path} failed with exit code {done.returncode}"
                + (f": {detail}" if detail else "")
            )


_HOOK_FIELDS = {
    "prestart": "prestart",
    "createRuntime": "create_runtime",
    "createContainer": "create_container",
    "startContainer": "start_container",
    "poststart": "poststart",
    "poststop": "poststop",
}


def _hooks(spec: Spec, kind: str) -> tuple[Hook, ...]:
    """The spec's hooks of ``kind`` (the spec's name: ``createRuntime``)."""
    if spec.hooks is None:
        return ()
    value: tuple[Hook, ...] = getattr(spec.hooks, _HOOK_FIELDS[kind])
    return value


# --- status --------------------------------------------------------------------------------


def status_of(root: Root, saved: Saved) -> str:
    if not alive(saved):
        return "stopped"
    if root.start_socket(saved.id).exists():
        return "created"
    with contextlib.suppress(OSError):
        if open_cgroup(saved).frozen():
            return "paused"
    return "running"


# --- create / start ------------------------------------------------------------------------


@attrs.frozen
class CreateOptions:
    bundle: Path
    pid_file: str | None = None
    console_socket: str | None = None
    preserve_fds: int = 0
    no_pivot: bool = False
    systemd_cgroup: bool = False


def _send_console(console_socket: str, master: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(console_socket)
        except OSError as exc:
            raise OciError(f"--console-socket {console_socket}: {exc.strerror}") from None
        socket.send_fds(sock, [b"/dev/ptmx"], [master])


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        target = Path(path).absolute()
        atomic_write(target, str(pid).encode(), 0o644, durable=False)


def _placer(cgroup: Cgroup, maps: tuple[str, str] | None, oom_score_adj: int | None) -> Any:
    def place(spawned: _native.Spawned) -> None:
        cgroup.add(spawned.pid)
        if oom_score_adj is not None:
            Path(f"/proc/{spawned.pid}/oom_score_adj").write_text(str(oom_score_adj))
        if maps is not None:
            Path(f"/proc/{spawned.pid}/uid_map").write_text(maps[0])
            Path(f"/proc/{spawned.pid}/gid_map").write_text(maps[1])

    return place


async def _write_sysctls(values: dict[str, str], pidfd: int, spaces: frozenset[Namespace]) -> None:
    """Set namespaced sysctls from a process that joined the init's namespaces (a sysctl
    file shows the namespace of the process that writes it, not of the /proc mount)."""
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
    spawned = await _native.start(RealNative(), plan)
    try:
        status = await wait_exit(spawned.pidfd)
    finally:
        os.close(spawned.pidfd)
    if status.si_code != os.CLD_EXITED or status.si_status != 0:
        raise OciError(f"linux.sysctl: cannot set {', '.join(values)} in the container")


async def create(root: Root, cid: str, options: CreateOptions) -> _native.Spawned:
    """Create the container; return its init (the caller's child), waiting for start."""
    bundle = options.bundle.absolute()
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
    host = CgroupHost.detect(parent=parent, name=group)
    try:
        host.validate(limits)
    except ValueError as exc:
        raise SpecError(f"config.json: linux.resources: {exc}") from None
    root.make(cid)
    cgroup: Cgroup | None = None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(str(root.start_socket(cid)))
            listener.listen(1)
            plan = _translate.build(
                spec,
                bundle,
                start_fd=listener.fileno(),
                keep_fds=options.preserve_fds,
                no_pivot=options.no_pivot,
            )
            sysctls = _translate.sysctls(spec, plan.namespaces)
            cgroup = host.create(name, limits)
            assert spec.process is not None
            if spec.process.user.umask is not None:
                os.umask(spec.process.user.umask)
            place = _placer(cgroup, _translate.id_maps(spec), spec.process.oom_score_adj)
            spawned = await _native.start(RealNative(), plan, place)
        try:
            if spawned.console >= 0:
                try:
                    size = spec.process.console_size
                    if size is not None:
                        termios.tcsetwinsize(spawned.console, (size.height, size.width))
                    assert options.console_socket is not None
                    _send_console(options.console_socket, spawned.console)
                finally:
                    os.close(spawned.console)
            await _write_sysctls(sysctls, spawned.pidfd, plan.namespaces)
            found = start_time_of(spawned.pid)
            saved = Saved(
                id=cid,
                pid=spawned.pid,
                start_time=found[0] if found else 0,
                bundle=str(bundle),
                created=now(),
                config=document,
                cgroup_parent=parent,
                cgroup_group=group,
                cgroup_name=name,
            )
            state = state_document(saved, "created")
            for kind in ("prestart", "createRuntime", "createContainer"):
                run_hooks(_hooks(spec, kind), kind, state)
            root.save(saved)
            _write_pid_file(options.pid_file, spawned.pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await wait_exit(spawned.pidfd)
            os.close(spawned.pidfd)
            raise
    except BaseException:
        with trio.CancelScope(shield=True):
            if cgroup is not None:
                await cgroup.remove()
        root.remove(cid)
        raise
    return spawned


def _describe_plan(config: dict[str, Any]) -> SpawnPlan:
    process = config.get("process") or {}
    return SpawnPlan(argv=tuple(process.get("args") or ["?"]), cwd=process.get("cwd") or "/")


def start(root: Root, cid: str) -> None:
    with root.locked(cid):
        saved = root.load(cid)
        status = status_of(root, saved)
        if status == "stopped":
            raise OciError("cannot start a container that has stopped")
        if status != "created":
            raise OciError(f"cannot start an already {status} container")
        spec = _spec.parse(saved.config)
        state = state_document(saved, "created")
        run_hooks(_hooks(spec, "startContainer"), "startContainer", state)
        path = root.start_socket(cid)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(path))
            path.unlink()
            record = conn.recv(SYNC_MESSAGE.size)
        if record:
            kind, stage, err, index = _native.parse_message(record)
            if kind is not Message.FAILED:
                raise OciError(f"start: an unexpected {kind.name} message from the container")
            raise _native.describe_failure(_describe_plan(saved.config), Stage(stage), err, index)
    with contextlib.suppress(OciError):
        run_hooks(_hooks(spec, "poststart"), "poststart", state_document(saved, "running"))


# --- signals, delete -----------------------------------------------------------------------


def parse_signal(text: str) -> signal.Signals:
    try:
        return _records.parse_signal(text)
    except ValueError as exc:
        raise OciError(str(exc)) from None


def _signal_init(saved: Saved, sig: int) -> bool:
    """Send ``sig`` to the init through a pidfd (so a reused pid never gets it)."""
    try:
        pidfd = os.pidfd_open(saved.pid)
    except ProcessLookupError:
        return False
    try:
        if not alive(saved):
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def kill(root: Root, cid: str, sig: signal.Signals, all_processes: bool) -> None:
    saved = root.load(cid)
    if not alive(saved):
        raise OciError("container not running")
    if all_processes:
        cgroup = open_cgroup(saved)
        for pid in cgroup.procs():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return
    if not _signal_init(saved, sig):
        raise OciError("container not running")


async def _wait_gone(saved: Saved) -> None:
    try:
        pidfd = os.pidfd_open(saved.pid)
    except ProcessLookupError:
        return
    try:
        if alive(saved):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def delete(root: Root, cid: str, force: bool) -> None:
    with root.locked(cid):
        saved = root.load(cid)
        status = status_of(root, saved)
        if status in ("running", "paused") and not force:
            raise OciError(f"cannot delete container {cid} that is not stopped: {status}")
        cgroup = open_cgroup(saved)
        if status == "paused":
            cgroup.thaw()
        if status != "stopped":
            _signal_init(saved, signal.SIGKILL)
            with trio.move_on_after(10):
                await _wait_gone(saved)
        await cgroup.remove()
        root.remove(cid)
    with contextlib.suppress(SpecError, OciError):
        spec = _spec.parse(saved.config)
        run_hooks(_hooks(spec, "poststop"), "poststop", state_document(saved, "stopped"))


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


def update(root: Root, cid: str, resources: dict[str, Any]) -> None:
    parsed = _spec.structure(resources, _spec.Resources, "--resources")
    limits = _translate.limits(parsed)
    with root.locked(cid):
        saved = root.load(cid)
        if status_of(root, saved) == "stopped":
            raise OciError("container not running")
        host = CgroupHost.detect(parent=saved.cgroup_parent, name=saved.cgroup_group)
        try:
            host.validate(limits)
        except ValueError as exc:
            raise SpecError(f"--resources: {exc}") from None
        host.open(saved.cgroup_name).update(limits)


# --- exec ----------------------------------------------------------------------------------


@attrs.frozen
class ExecOptions:
    process: dict[str, Any] | None = None  # --process FILE, parsed
    args: tuple[str, ...] = ()
    tty: bool = False
    console_socket: str | None = None
    detach: bool = False
    pid_file: str | None = None
    cwd: str | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    preserve_fds: int = 0


def _exec_process(spec: Spec, options: ExecOptions) -> _spec.Process:
    if options.process is not None:
        process = _spec.structure(options.process, _spec.Process, "--process")
    else:
        if not options.args:
            raise OciError("exec: give the command (arguments) or --process FILE")
        assert spec.process is not None
        process = attrs.evolve(spec.process, args=options.args, terminal=options.tty)
    if options.cwd:
        process = attrs.evolve(process, cwd=options.cwd)
    if options.env:
        process = attrs.evolve(process, env=(*process.env, *options.env))
    if options.user:
        uid, _, gid = options.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise OciError(f"--user {options.user!r}: use UID[:GID] (numbers)")
        user = attrs.evolve(process.user, uid=int(uid), gid=int(gid or 0))
        process = attrs.evolve(process, user=user)
    return process


async def exec_(root: Root, cid: str, options: ExecOptions) -> int:
    saved = root.load(cid)
    if status_of(root, saved) not in ("running", "created"):
        raise OciError("cannot exec in a stopped container")
    spec = _spec.parse(saved.config)
    process = _exec_process(spec, options)
    if process.terminal and not options.console_socket:
        raise OciError("exec with a terminal needs --console-socket to receive it")
    spaces = _translate.namespaces(spec)
    fields = _translate.process_plan(process, console=process.terminal)
    caps = fields["caps"]
    assert isinstance(caps, _native.Capabilities)
    pidfd = os.pidfd_open(saved.pid)
    try:
        plan = SpawnPlan(
            join_pidfd=pidfd,
            join_namespaces=spaces | {kind for kind, _ in _translate.joined(spec)},
            seccomp=_translate.seccomp_program(spec, caps.bounding),
            process_name="boxd:[oci-exec]",
            keep_fds=options.preserve_fds,
            **fields,  # type: ignore[arg-type]
        )
        cgroup = open_cgroup(saved)
        spawned = await _native.start(
            RealNative(), plan, _placer(cgroup, None, process.oom_score_adj)
        )
    finally:
        os.close(pidfd)
    try:
        if spawned.console >= 0:
            try:
                if process.console_size is not None:
                    size = process.console_size
                    termios.tcsetwinsize(spawned.console, (size.height, size.width))
                assert options.console_socket is not None
                _send_console(options.console_socket, spawned.console)
            finally:
                os.close(spawned.console)
        _write_pid_file(options.pid_file, spawned.pid)
        if options.detach:
            return 0
        return exit_code(await wait_exit(spawned.pidfd))
    finally:
        os.close(spawned.pidfd)


def exit_code(status: os.waitid_result) -> int:
    if status.si_code == os.CLD_EXITED:
        return status.si_status
    return 128 + status.si_status


# --- run -----------------------------------------------------------------------------------


async def run(root: Root, cid: str, options: CreateOptions, *, detach: bool, keep: bool) -> int:
    """create + start; in the foreground also wait for the exit and (unless ``keep``)
    delete."""
    spawned = await create(root, cid, options)
    try:
        try:
            start(root, cid)
        except BaseException:
            with trio.CancelScope(shield=True):
                await delete(root, cid, force=True)
            raise
        if detach:
            return 0
        with trio.CancelScope(shield=True):
            status = await wait_exit(spawned.pidfd)
            if not keep:
                await delete(root, cid, force=True)
        return exit_code(status)
    finally:
        os.close(spawned.pidfd)


# --- list, ps, features --------------------------------------------------------------------


def list_states(root: Root) -> list[dict[str, Any]]:
    out = []
    for cid in root.ids():
        # One that is being deleted, or whose record cannot be read, is not listed.
        with contextlib.suppress(NotFound, OSError, ValueError):
            saved = root.load(cid)
            status = status_of(root, saved)
            out.append(
                {
                    "ociVersion": OCI_VERSION,
                    "id": cid,
                    "pid": saved.pid if status != "stopped" else 0,
                    "status": status,
                    "bundle": saved.bundle,
                    "rootfs": str(
                        Path(saved.bundle) / ((saved.config.get("root") or {}).get("path") or "")
                    ),
                    "created": saved.created,
                    "annotations": saved.config.get("annotations") or {},
                    "owner": "root",
                }
            )
    return out


def container_pids(root: Root, cid: str) -> list[int]:
    saved = root.load(cid)
    return open_cgroup(saved).procs()


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
        "mountOptions": sorted(set(_translate._FLAGS) | set(_translate.PROPAGATION)),
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

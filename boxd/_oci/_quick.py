"""The commands that act on an existing container and that conmon and containerd's shim
call for every container: ``start``, ``state``, ``kill``, ``delete`` (of a stopped one,
or with ``--force`` of one whose init ends when killed), ``list``, the pids for ``ps``, and
the hooks.  Plain os calls on the state :mod:`._state` reads: a process running one of
these imports no Trio, attrs or cattrs (see :mod:`._cli`), and each imports its own
modules (_socket, _signal): ``state`` needs neither.  What needs more (deleting a
container that still runs, describing a failed exec) is in :mod:`._runtime`, imported then.
"""

from __future__ import annotations

import errno
import os
import time

from ._state import (
    NotFound,
    OciError,
    Root,
    alive,
    dumps,
    rootfs_of,
    state_document,
    status_of,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

    from ._state import Hook, Saved

# How long a stopped container's cgroup may stay busy (its last processes leave their
# cgroups a moment after they are gone from cgroup.procs), as Cgroup.remove waits.
REMOVE_TIMEOUT = 2.0
KILL_TIMEOUT = 10.0
SIGKILL = 9  # the same number on every Linux architecture


def run_hooks(hooks: list[Hook], kind: str, state: dict[str, Any]) -> None:
    """Run each hook with the state on its stdin; a failure or timeout raises."""
    if not hooks:
        return
    import subprocess  # only with hooks: it costs milliseconds to import

    data = dumps(state).encode()
    for hook in hooks:
        argv = hook["args"] or [hook["path"]]
        env = dict(e.split("=", 1) for e in hook["env"] if "=" in e)
        timeout = hook["timeout"]
        try:
            done = subprocess.run(
                argv,
                executable=hook["path"],
                input=data,
                env=env,
                capture_output=True,
                timeout=timeout if timeout and timeout > 0 else None,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise OciError(f"{kind} hook {hook['path']} timed out after {timeout} s") from None
        except OSError as exc:
            raise OciError(f"{kind} hook {hook['path']}: {exc.strerror}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip()
            raise OciError(
                f"{kind} hook {hook['path']} failed with exit code {done.returncode}"
                + (f": {detail}" if detail else "")
            )


def hooks_of(saved: Saved, kind: str) -> list[Hook]:
    return saved["hooks"].get(kind) or []


# --- start -----------------------------------------------------------------------------------


def start(root: Root, cid: str) -> None:
    """Let the created container's init exec: connect to the socket it waits on; that
    connection brings a failure record, or the end of file that means the exec happened."""
    with root.locked(cid):
        saved = root.load(cid)
        status = status_of(root, saved)
        if status == "stopped":
            raise OciError("cannot start a container that has stopped")
        if status != "created":
            raise OciError(f"cannot start an already {status} container")
        run_hooks(hooks_of(saved, "startContainer"), "startContainer",
                  state_document(saved, "created"))  # fmt: skip
        # socket.py's own C module: socket.py itself imports enum and selectors (~4 ms).
        import _socket

        path = root.start_socket(cid)
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            conn.connect(path)
            os.unlink(path)
            record = conn.recv(64)
        finally:
            conn.close()
        if record:
            from . import _runtime  # the record is the spawn path's: it describes it

            raise _runtime.start_failure(saved, record)
    try:
        run_hooks(hooks_of(saved, "poststart"), "poststart", state_document(saved, "running"))
    except OciError:
        return  # the container runs: a failed poststart hook is not start's failure


# --- state -----------------------------------------------------------------------------------


def state(root: Root, cid: str) -> dict[str, Any]:
    """runc's ``state``: the spec's state and its own fields (rootfs, created, owner)."""
    saved = root.load(cid)
    document = state_document(saved, status_of(root, saved))
    document["rootfs"] = rootfs_of(saved)
    document["created"] = saved["created"]
    document["owner"] = ""
    return document


def list_states(root: Root) -> list[dict[str, Any]]:
    """``list``: each container's state as ``state`` shows it (owner: root)."""
    out = []
    for cid in root.ids():
        try:
            document = state(root, cid)
        except (NotFound, OSError, ValueError):
            continue  # being deleted, or its record cannot be read: not listed
        document["owner"] = "root"
        out.append(document)
    return out


# --- kill ------------------------------------------------------------------------------------


def procs(saved: Saved) -> list[int]:
    """Pids (in our pid namespace) of every process in the container's cgroup and below
    it (a container given a writable cgroup mount may nest cgroups and move into them)."""
    pids: set[int] = set()
    for top in saved["cgroup_dirs"]:
        for d, _, _ in os.walk(top):
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue  # that (sub-)cgroup is gone already
    return sorted(pids)


def _pidfd_send_signal(pidfd: int, sig: int) -> None:
    """signal.pidfd_send_signal from the C module itself: signal.py makes its constants
    enums, and enum (with functools and collections) costs ~3 ms to import here."""
    import _signal  # type: ignore[import-not-found]  # typeshed has no stub of it

    _signal.pidfd_send_signal(pidfd, sig)


def signal_init(saved: Saved, sig: int) -> bool:
    """Send ``sig`` to the init through a pidfd (so a reused pid never gets it)."""
    try:
        pidfd = os.pidfd_open(saved["pid"])
    except ProcessLookupError:
        return False
    try:
        if not alive(saved):
            return False
        _pidfd_send_signal(pidfd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def kill(root: Root, cid: str, signal_text: str, all_processes: bool) -> None:
    from .._signames import parse_signal

    try:
        sig = parse_signal(signal_text)
    except ValueError as exc:
        raise OciError(str(exc)) from None
    saved = root.load(cid)
    if not alive(saved):
        raise OciError("container not running")
    if all_processes:
        for pid in procs(saved):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
    elif not signal_init(saved, sig):
        raise OciError("container not running")
    if sig == SIGKILL:
        _thaw(saved)


def _thaw(saved: Saved) -> None:
    """Thaw a paused container after a SIGKILL, as runc does: a process frozen by the v1
    freezer dies only once thawed (``ctr task kill`` of a paused task would leave it
    paused).  Other signals leave it paused."""
    freezer = saved["freezer"]
    if freezer is None:
        return
    path, frozen = freezer
    try:
        with open(path) as f:
            if f.read().strip() not in (frozen, "FREEZING"):
                return
        with open(path, "w") as f:
            f.write("THAWED" if frozen == "FROZEN" else "0")
    except FileNotFoundError:
        return  # the cgroup is gone: nothing is frozen


# --- delete ----------------------------------------------------------------------------------


def delete(root: Root, cid: str, force: bool) -> bool:
    """Delete a stopped container whose cgroup is empty: remove its cgroup and state, run
    the poststop hooks; with ``force`` a created or running one is killed first (its init:
    the pid namespace ends with it).  False when it needs :func:`._runtime.delete`: it is
    paused, its init does not end, or processes are left in its cgroup."""
    try:
        with root.locked(cid):
            saved = root.load(cid)
            status = status_of(root, saved)
            if status in ("running", "paused") and not force:
                raise OciError(f"cannot delete container {cid} that is not stopped: {status}")
            if status == "paused" or (status != "stopped" and not _kill_init(saved)):
                return False
            if not _remove_cgroup(saved):
                return False
            root.remove(cid)
    except NotFound:
        if force:
            return True
        raise
    try:
        run_hooks(hooks_of(saved, "poststop"), "poststop", state_document(saved, "stopped"))
    except OciError:
        return True  # deleted: a failed poststop hook does not undo that
    return True


def _kill_init(saved: Saved) -> bool:
    """SIGKILL to the init; whether it ended within KILL_TIMEOUT."""
    import select

    try:
        pidfd = os.pidfd_open(saved["pid"])
    except ProcessLookupError:
        return True
    try:
        if alive(saved):
            _pidfd_send_signal(pidfd, SIGKILL)
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)  # readable once it has exited
            return bool(poller.poll(KILL_TIMEOUT * 1000))
        return True
    except ProcessLookupError:
        return True
    finally:
        os.close(pidfd)


def _remove_cgroup(saved: Saved) -> bool:
    """Remove the container's (empty) cgroup directories, then the parents this runtime
    made if they are empty; False if a process is in the cgroup or it stays busy."""
    deadline = time.monotonic() + REMOVE_TIMEOUT
    while not _rmdir_all(saved["cgroup_dirs"]):
        if procs(saved) or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    for d in saved["cgroup_made"]:
        try:
            os.rmdir(d)
        except OSError:
            continue  # still holding another container's cgroup: it stays
    return True


def _rmdir_all(dirs: list[str]) -> bool:
    """One pass over every directory (sub-cgroups first); False if one is busy."""
    done = True
    for top in dirs:
        for sub, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(sub)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise OciError(f"cannot remove cgroup {sub}: {exc.strerror}") from None
                done = False
    return done

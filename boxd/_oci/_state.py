"""The runtime's state under ``--root``: one directory per container, written atomically.

``<root>/<id>/state.json`` holds the :class:`Saved` record (the init's pid and start time,
the bundle, the config.json as it was at create, where the cgroup is, the hooks that run
after create); ``start.sock`` exists while the init waits for ``start`` (its listening
socket: see ``SpawnPlan.start_fd``).  No process of the runtime stays around, so the status
is read from the system each time: the init gone (or a zombie, or another process with its
pid) is ``stopped``; ``start.sock`` present is ``created``; a frozen cgroup is ``paused``;
otherwise ``running``.  Commands that change a container hold ``flock`` on its directory,
so concurrent invocations on one container are serialised and on different ones are not.

This module, :mod:`._quick` and :mod:`._cli` are what ``start``, ``state``, ``kill`` and
``delete`` import: the record is plain JSON (the config was checked by ``create``), read
and written with the os module, so that those commands cost little more than the
interpreter's start (no Trio, attrs, cattrs or pathlib).
"""

from __future__ import annotations

import fcntl
import os
import time

from .. import _wirejson
from .._atomic import atomic_write

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, TypedDict

    class Hook(TypedDict):
        path: str
        args: list[str]
        env: list[str]
        timeout: int | None

    class Saved(TypedDict):
        id: str
        pid: int
        start_time: int  # field 22 of /proc/<pid>/stat: tells the init from a reused pid
        bundle: str
        created: str  # RFC 3339
        config: dict[str, Any]  # the bundle's config.json as it was at create
        cgroup_parent: str | None  # CgroupHost.detect(parent=..., name=...)
        cgroup_group: str
        cgroup_name: str
        # The container's cgroup directory in each hierarchy, and the directories above
        # them that this runtime made (removed once empty, as Cgroup.remove does).
        cgroup_dirs: list[str]
        cgroup_made: list[str]
        # (state file, its value while frozen) of the freezer, or None without one.
        freezer: tuple[str, str] | None
        # The hooks that run after create, by the spec's kind ("poststop").
        hooks: dict[str, list[Hook]]


DEFAULT_ROOT = "/run/boxd-runtime"
OCI_VERSION = "1.2.0"
_FIELDS = frozenset(
    [
        "id",
        "pid",
        "start_time",
        "bundle",
        "created",
        "config",
        "cgroup_parent",
        "cgroup_group",
        "cgroup_name",
        "cgroup_dirs",
        "cgroup_made",
        "freezer",
        "hooks",
    ]
)
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")
_JSON_DUMPS = _wirejson.dumps


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_JSON_LOADS = _wirejson.scanner(_no_constant)


class NotFound(LookupError):
    """No container with that id (runc's words: ``container "x" does not exist``)."""


class OciError(Exception):
    """An operation that cannot be done; the message is for the caller (conmon logs it)."""


def check_id(cid: str) -> str:
    if not (
        0 < len(cid) <= 1024 and cid[0].isascii() and cid[0].isalnum() and set(cid) <= _ID_CHARS
    ):
        raise ValueError(
            f"invalid container id {cid!r}: use letters, digits, '_', '.', '+', '-' "
            "(not starting with a punctuation character)"
        )
    return cid


def now() -> str:
    """The time as RFC 3339 in UTC, with microseconds (runc's ``created``)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def dumps(value: object) -> str:
    return _JSON_DUMPS(value)


def loads(text: str) -> Any:
    return _JSON_LOADS(text)


def start_time_of(pid: int) -> tuple[int, str] | None:
    """(start time, state letter) of ``pid``, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rsplit(b")", 1)[1].split()
    return int(fields[19]), fields[0].decode()


def write_pid_file(path: str | None, pid: int) -> None:
    if path:
        atomic_write(os.path.abspath(path), str(pid).encode(), 0o644, durable=False)


class Root:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def dir(self, cid: str) -> str:
        return os.path.join(self.path, check_id(cid))

    def make(self, cid: str) -> str:
        """The new container's directory; an existing one is an error, as with runc."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise OciError(f"container with id exists: {cid}") from None
        return d

    def save(self, saved: Saved) -> None:
        # /run is a tmpfs: a crash of the machine takes the containers with it.
        atomic_write(os.path.join(self.dir(saved["id"]), "state.json"), dumps(saved).encode(),
                     durable=False)  # fmt: skip

    def load(self, cid: str) -> Saved:
        path = os.path.join(self.dir(cid), "state.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{cid}" does not exist') from None
        if not isinstance(data, dict) or data.keys() != _FIELDS:
            raise ValueError(f"{path}: not a state file of this boxd-runtime")
        saved: Saved = data  # type: ignore[assignment]  # ours, written by save()
        return saved

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(os.path.join(self.path, n, "state.json"))]

    def locked(self, cid: str) -> AbstractContextManager[None]:
        """Hold the container's lock; NotFound if it is gone (also once the lock is ours)."""
        return _Lock(self.dir(cid), cid)

    def remove(self, cid: str) -> None:
        """Remove the container's directory (its files: the state, the start socket)."""
        d = self.dir(cid)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                continue
        os.rmdir(d)

    def start_socket(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "start.sock")


class _Lock:
    def __init__(self, d: str, cid: str) -> None:
        self._dir = d
        self._cid = cid
        self._fd = -1

    def __enter__(self) -> None:
        try:
            self._fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{self._cid}" does not exist') from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            if not os.path.exists(os.path.join(self._dir, "state.json")):  # deleted meanwhile
                raise NotFound(f'container "{self._cid}" does not exist')
        except BaseException:
            os.close(self._fd)
            raise

    def __exit__(self, *_: object) -> None:
        os.close(self._fd)


def alive(saved: Saved) -> bool:
    """Whether the container's init still runs (not a zombie, not a reused pid)."""
    found = start_time_of(saved["pid"])
    return found is not None and found[0] == saved["start_time"] and found[1] not in "ZX"


def status_of(root: Root, saved: Saved) -> str:
    if not alive(saved):
        return "stopped"
    if os.path.exists(root.start_socket(saved["id"])):
        return "created"
    freezer = saved["freezer"]
    if freezer is not None:
        try:
            with open(freezer[0]) as f:
                if f.read().strip() in (freezer[1], "FREEZING"):
                    return "paused"
        except OSError:
            pass
    return "running"


def rootfs_of(saved: Saved) -> str:
    return os.path.join(saved["bundle"], (saved["config"].get("root") or {}).get("path") or "")


def state_document(saved: Saved, status: str) -> dict[str, Any]:
    """The spec's state of the container (what hooks get on stdin)."""
    return {
        "ociVersion": OCI_VERSION,
        "id": saved["id"],
        "status": status,
        "pid": saved["pid"] if status != "stopped" else 0,
        "bundle": saved["bundle"],
        "annotations": saved["config"].get("annotations") or {},
    }

"""The runtime's state under ``--root``: one directory per container, written atomically.

``<root>/<id>/state.json`` holds the :class:`Saved` record (the init's pid and start time,
the bundle, the config.json as it was at create, where the cgroup is); ``start.sock``
exists while the init waits for ``start`` (its listening socket: see
``SpawnPlan.start_fd``).  No process of the runtime stays around, so the status is read
from the system each time: the init gone (or a zombie, or another process with its pid)
is ``stopped``; ``start.sock`` present is ``created``; a frozen cgroup is ``paused``;
otherwise ``running``.  Commands that change a container hold ``flock`` on its directory,
so concurrent invocations on one container are serialised and on different ones are not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from .. import _convert
from .._store import atomic_write

DEFAULT_ROOT = "/run/boxd-runtime"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}")


class NotFound(LookupError):
    """No container with that id (runc's words: ``container "x" does not exist``)."""


@attrs.frozen
class Saved:
    id: str
    pid: int
    start_time: int  # field 22 of /proc/<pid>/stat: tells the init from a reused pid
    bundle: str
    created: str  # RFC 3339
    config: dict[str, Any]  # the bundle's config.json as it was at create
    cgroup_parent: str | None  # CgroupHost.detect(parent=..., name=...)
    cgroup_group: str
    cgroup_name: str


def check_id(cid: str) -> str:
    if not _ID.fullmatch(cid):
        raise ValueError(
            f"invalid container id {cid!r}: use letters, digits, '_', '.', '+', '-' "
            "(not starting with a punctuation character)"
        )
    return cid


def start_time_of(pid: int) -> tuple[int, str] | None:
    """(start time, state letter) of ``pid``, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[19]), fields[0]


class Root:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def dir(self, cid: str) -> Path:
        return self.path / check_id(cid)

    def make(self, cid: str) -> Path:
        """The new container's directory; an existing one is an error, as with runc."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        d = self.dir(cid)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, f"container with id exists: {cid}") from None
        return d

    def save(self, saved: Saved) -> None:
        data = _convert.converter.dumps(saved).encode()
        atomic_write(self.dir(saved.id) / "state.json", data)

    def load(self, cid: str) -> Saved:
        path = self.dir(cid) / "state.json"
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{cid}" does not exist') from None
        return _convert.structure(_convert.converter.loads(data, dict), Saved)

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return []
        return [n for n in names if _ID.fullmatch(n) and (self.path / n / "state.json").exists()]

    @contextlib.contextmanager
    def locked(self, cid: str) -> Iterator[None]:
        """Hold the container's lock; NotFound if it is gone (also once the lock is ours)."""
        d = self.dir(cid)
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'container "{cid}" does not exist') from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not (d / "state.json").exists():  # deleted while we waited
                raise NotFound(f'container "{cid}" does not exist')
            yield
        finally:
            os.close(fd)

    def remove(self, cid: str) -> None:
        shutil.rmtree(self.dir(cid), ignore_errors=True)

    def start_socket(self, cid: str) -> Path:
        return self.dir(cid) / "start.sock"


def alive(saved: Saved) -> bool:
    """Whether the container's init still runs (not a zombie, not a reused pid)."""
    found = start_time_of(saved.pid)
    return found is not None and found[0] == saved.start_time and found[1] not in "ZX"

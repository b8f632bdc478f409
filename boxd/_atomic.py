"""One atomic file write, in a module of its own: ``boxd-runtime``'s quick commands write
state without importing the store (attrs, cattrs) or pathlib."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from os import PathLike


def atomic_write(
    path: str | PathLike[str], data: bytes, mode: int = 0o600, *, durable: bool = True
) -> None:
    """Replace ``path`` by ``data`` through a rename: a reader (or a daemon killed midway)
    sees the old file or the new one.  ``durable`` also survives a crash of the machine
    (two fsyncs, milliseconds on a slow disk)."""
    path = os.fspath(path)
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if not durable:
        return
    dirfd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)

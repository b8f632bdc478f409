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
    write_file(tmp, data, mode, durable=durable)
    os.rename(tmp, path)
    if durable:
        sync_dir(parent)


def write_file(path: str, data: bytes, mode: int = 0o600, *, durable: bool) -> None:
    """Make ``path`` hold ``data``: written in place (the file made with ``mode`` if
    missing), then cut to its length, fsynced when ``durable``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))  # what is left of longer earlier contents
        if durable:
            os.fsync(fd)
    except OSError as exc:  # named: "No space left on device" alone does not say where
        raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(fd)


def sync_dir(path: str) -> None:
    """fsync the directory ``path`` (empty: the current one): its entries survive a crash."""
    dirfd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)

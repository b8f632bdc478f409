"""Records on disk: one directory per container, every write atomic.

Layout under the root (default ``/var/lib/boxd``, mode 0700)::

    containers/<id>/container.json   the Container record (config and state)
    containers/<id>/logs/            container.log and its rotations
    containers/<id>/fs/              overlay upper and work directories
    containers/<id>/rootfs/          mount point of the container's root (inside its mount ns)
    images/                          prepared image layers (the skeleton of ``default``)
    broken/                          records that could not be read, set aside

A write goes to a temporary file in the same directory, is fsynced, renamed over the old
file, and the directory is fsynced: a crash at any instant leaves the old or the new record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from ._convert import ConversionError, structure, unstructure
from ._records import ID_RE, Container

log = logging.getLogger("boxd.store")

RECORD = "container.json"


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace ``path`` by ``data`` through a rename: a reader (or a daemon killed midway)
    sees the old file or the new one.  ``durable`` also survives a crash of the machine
    (two fsyncs, milliseconds on a slow disk)."""
    tmp = path.with_name(f".{path.name}.tmp")
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
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.containers = root / "containers"
        self.images = root / "images"
        self.broken = root / "broken"
        self.trash = root / "trash"
        # Traversable, not listable or readable: the root of a user-namespaced container is
        # an unprivileged host uid that must reach its own layers (the records are 0600).
        for d in (root, self.containers, self.images):
            d.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(d, 0o711)

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def save(self, container: Container, *, durable: bool = True) -> None:
        """``durable=False`` for state changes: after a crash of the machine every container
        is dead anyway and the next daemon corrects what the record says (see recovery);
        a configuration must survive it."""
        d = self.container_dir(container.id)
        d.mkdir(mode=0o700, exist_ok=True)
        data = json.dumps(unstructure(container), indent=1, allow_nan=False).encode()
        atomic_write(d / RECORD, data, durable=durable)

    def load_all(self) -> list[Container]:
        """Every readable record; unreadable ones are moved to ``broken/`` with a log line."""
        found = []
        for d in sorted(self.containers.iterdir()):
            if not ID_RE.match(d.name):
                continue
            try:
                raw = json.loads((d / RECORD).read_bytes())
                container = structure(raw, Container)
                if container.id != d.name:
                    raise ConversionError(f"id {container.id!r} does not match its directory")
            except (OSError, ValueError) as exc:
                self._set_aside(d, exc)
                continue
            found.append(container)
        return found

    def _set_aside(self, d: Path, exc: Exception) -> None:
        self.broken.mkdir(mode=0o700, exist_ok=True)
        dest = self.broken / f"{d.name}.{int(time.time())}"
        log.error("container record %s cannot be read (%s); moved to %s", d.name, exc, dest)
        os.rename(d, dest)

    def discard(self, cid: str) -> None:
        """Take a container's directory out of the store at once (a rename into ``trash/``);
        :meth:`empty_trash` deletes it later, off the caller's path (its upper layer may
        hold any number of files)."""
        self.trash.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.container_dir(cid), self.trash / cid)

    def empty_trash(self) -> None:
        """Delete what :meth:`discard` set aside (also what a killed daemon left there)."""
        with contextlib.suppress(FileNotFoundError):
            for d in self.trash.iterdir():
                shutil.rmtree(d, ignore_errors=True)

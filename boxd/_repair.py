"""What a killed daemon can leave outside its records, repaired before the next one serves.

The records themselves (half-written, unreadable, of a create cut short) are the store's
business (:meth:`boxd._store.Store.load_all`), leftover processes and cgroups the
supervisor's (:meth:`boxd._supervisor.Supervisor._recover`).  Here: dead mounts below the
root (the /proc view of a daemon killed while serving it answers every access with
ENOTCONN) and the temporary socket of a daemon killed while binding.  Each repair is
logged; none of them ever stops the daemon from starting.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
from pathlib import Path

from . import _mountinfo

log = logging.getLogger("boxd.repair")

_MNT_DETACH = 2
# A mount whose server is gone: FUSE answers ENOTCONN, a dead network filesystem ESTALE
# or EIO.  A mount that answers is in use by someone and left alone.
_DEAD = {errno.ENOTCONN, errno.ESTALE, errno.EIO}


def mount_points() -> list[Path]:
    """Every mount point of our mount namespace, in mount order."""
    return [Path(p) for p in _mountinfo.mount_points()]


def _dead(path: Path) -> bool:
    # statfs asks the filesystem itself; a stat may be answered from cached attributes.
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno in _DEAD
    return False


def detach_dead_mounts(root: Path) -> None:
    """Lazily unmount every dead mount at or below ``root``, deepest first."""
    top = Path(os.path.realpath(root))
    below = [p for p in mount_points() if p == top or top in p.parents]
    umount2 = ctypes.CDLL(None, use_errno=True).umount2
    for point in sorted(set(below), key=lambda p: len(p.parts), reverse=True):
        if not _dead(point):
            continue
        log.warning("detaching the dead mount at %s (left by a daemon that was killed)", point)
        if umount2(os.fsencode(point), _MNT_DETACH) != 0:
            code = ctypes.get_errno()
            log.error("cannot detach the dead mount at %s: %s", point, os.strerror(code))


def remove_stale_socket_files(socket: Path) -> None:
    """The ``.<name>.<pid>`` files a daemon binds before renaming them into place, left by
    one killed in between (a live daemon's are kept)."""
    with contextlib.suppress(FileNotFoundError):
        for path in socket.parent.glob(f".{socket.name}.*"):
            pid = path.name.rsplit(".", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                log.info("removing %s, left by a daemon that was killed while binding", path)
                path.unlink(missing_ok=True)

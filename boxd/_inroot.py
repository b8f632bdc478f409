"""Reading a file of an untrusted root filesystem from the daemon, safely.

The daemon runs as root on the host; a container's files (its image, the upper layer it
wrote) are not to be trusted.  :func:`read_regular` opens a path below a directory with
openat2 and ``RESOLVE_IN_ROOT`` (so ``..`` and absolute symlinks stop at that directory,
as they do for the container), opens it only as ``O_PATH`` until it is known to be a
regular file (never a FIFO that would block or a device node of the host's disks), and
reads a bounded amount.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from . import _syscalls

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

_NR_OPENAT2 = _syscalls.BY_MACHINE.get(os.uname().machine, _syscalls.X86_64)["openat2"]


_OPEN_HOW = struct.Struct("=QQQ")  # struct open_how: flags, mode, resolve


# How often an open is tried again when the kernel could not tell whether a ".." in it
# stayed inside the root: it says EAGAIN when any rename or mount on the machine raced with
# the lookup (a busy host starting containers mounts all the time).  Bounded, so that a
# container renaming without pause fails the copy instead of stalling it.
OPEN_TRIES = 64


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """The openat2(2) system call (Linux 5.6); OSError on failure."""
    import ctypes  # see _syscalls.libc

    libc = _syscalls.libc()
    how = ctypes.create_string_buffer(
        _OPEN_HOW.pack(flags | os.O_CLOEXEC, 0, resolve), _OPEN_HOW.size
    )
    encoded = os.fsencode(path)
    for _ in range(OPEN_TRIES):
        fd = libc.syscall(
            ctypes.c_long(_NR_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(encoded),
            how,
            ctypes.c_size_t(_OPEN_HOW.size),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), path)


def open_below(dirfd: int, path: str, flags: int) -> int | None:
    """``path`` resolved inside the directory ``dirfd`` (``..`` and absolute symlinks stop
    there, magic links are refused) and opened with ``flags``; None when nothing is there
    (or a component is not a directory, or a link loops)."""
    try:
        return openat2(
            dirfd, path.lstrip("/") or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
        )
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise


def _open_regular(root: str, path: str, flags: int) -> int | None:
    """``path`` resolved inside directory ``root`` and opened with ``flags`` if it is a
    regular file (reopened through the O_PATH fd that was checked: exactly that file);
    None when nothing is there or it is something else (an overlay whiteout, a FIFO, a
    device, or a symlink at its last component)."""
    dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_below(dirfd, path, os.O_PATH | os.O_NOFOLLOW)
    finally:
        os.close(dirfd)
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)
    finally:
        os.close(fd)


def read_regular(root: str, path: str, *, limit: int = 4 << 20) -> bytes | None:
    """The contents of ``path`` resolved inside directory ``root``, or None when nothing
    is there or it is not a regular file (an overlay whiteout, a FIFO, a device, or a
    symlink at its last component: the caller resolves links itself, inside the image).
    ``limit``: the most bytes read."""
    file = _open_regular(root, path, os.O_RDONLY)
    if file is None:
        return None
    with os.fdopen(file, "rb") as f:
        return f.read(limit)


def rewrite_regular(root: str, path: str, data: bytes) -> bool:
    """Replace the contents of the regular file ``path`` resolved inside ``root`` (a
    running container's ``/proc/PID/root``); False when nothing is there or it is not a
    regular file (a symlink at its last component, a FIFO, a device: left alone)."""
    file = _open_regular(root, path, os.O_WRONLY | os.O_TRUNC)
    if file is None:
        return False
    with os.fdopen(file, "wb") as f:
        f.write(data)
    return True

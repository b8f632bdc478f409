"""``tmpcopyup``: a tmpfs mount filled with what the image holds where it is mounted.

runc and crun take this mount option (Podman adds it to each ``--tmpfs`` mount and to the
tmpfs mounts of ``--read-only``: /tmp, /var/tmp, /run).  The init mounts the tmpfs as any
other; once it waits for ``start``, a child of the runtime joins its mount namespace
(where ``/`` is the container's root; its user namespace too, as its root, when it has
one) and copies into the tmpfs what the bundle's root filesystem held at that path before
the init made its mount points: directories, regular files, symlinks, device nodes and
FIFOs, with their owners, modes and times (not hard links, sockets or extended
attributes).  The tmpfs's own mode becomes the image directory's, as runc sets it.

The copy is made after the mount table, so the mounts below a tmpfs made later (Podman's
/run/.containerenv, a secret) are already there: what a mount covers is not copied, as
it would be hidden.  The root filesystem is untrusted: its directory at the mount point
is found with openat2(RESOLVE_IN_ROOT), every entry is opened with O_NOFOLLOW below a
directory fd, and nothing but a regular file is read.  No process of the container runs
yet (its init is boxd's, blocked before its exec), so none can change the tmpfs meanwhile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence

from .. import _syscalls
from .._inroot import open_below

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CopyUpError(Exception):
    """A tmpfs could not be filled (its path and why)."""


class Sources:
    """The image's directories at the mount points of ``destinations`` (container
    paths), opened before the init makes its mount points (one it made is no image
    directory: its tmpfs keeps tmpfs's own mode, as runc leaves it)."""

    def __init__(self, rootfs: str, destinations: Sequence[str]) -> None:
        self.found: list[tuple[str, int]] = []
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for dest in destinations:
                try:
                    fd = open_below(root, dest, os.O_RDONLY | os.O_DIRECTORY)
                except OSError as exc:
                    self.close()
                    raise CopyUpError(f"{dest}: {exc.strerror}") from None
                if fd is not None:  # else nothing there in the image: an empty tmpfs
                    self.found.append((dest, fd))
        finally:
            os.close(root)

    def close(self) -> None:
        for _, fd in self.found:
            os.close(fd)
        self.found = []

    def fill(self, pidfd: int, *, userns: bool) -> None:
        """Copy each directory into the tmpfs the init of ``pidfd`` mounted there.
        ``userns``: the init has a user namespace of its own, which owns its mounts."""
        if self.found:
            spaces = _CLONE_NEWNS | (_CLONE_NEWUSER if userns else 0)
            _in_mount_namespace(pidfd, self.found, spaces)


def _in_mount_namespace(pidfd: int, sources: list[tuple[str, int]], spaces: int) -> None:
    """Run the copies in a child that joined the namespaces ``spaces`` of ``pidfd``'s
    process: this process stays where it is.  In the container's user namespace too when
    it has one: a tmpfs made there takes no file of an owner it does not map (the host's
    root), and the owners the copy reads and sets are then the container's view of them."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        code = 0
        try:
            if _syscalls.libc().setns(pidfd, spaces) != 0:
                raise CopyUpError("cannot enter the container's namespaces")
            if spaces & _CLONE_NEWUSER:  # its root, as nsenter --user becomes it
                os.setgid(0)
                os.setuid(0)
            for dest, source in sources:
                _fill_one(dest, source)
        except BaseException as exc:  # everything goes to the parent, which raises it
            why = str(exc) if isinstance(exc, CopyUpError) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError):
                os.write(write_end, why.encode(errors="replace")[:4096])
            code = 1
        os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if message or os.waitstatus_to_exitcode(status) != 0:
        raise CopyUpError(message.decode(errors="replace") or "the copy ended abnormally")


def _fill_one(dest: str, source: int) -> None:
    # Through a link at the mount point, as the init resolved it (/ is the container's).
    try:
        target = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyUpError(f"{dest}: {exc.strerror}") from None
    try:
        _copy_entries(source, target, os.fstat(target).st_dev, dest)
        os.chmod(target, stat.S_IMODE(os.fstat(source).st_mode))
    finally:
        os.close(target)


def _copy_entries(source: int, target: int, device: int, where: str) -> None:
    """What directory ``source`` holds, into directory ``target`` (``where`` in the
    container, on the tmpfs ``device``); what is already there and is not a directory
    of the tmpfs (a mount point, or the stub of one) is left as it is."""
    try:
        with os.scandir(source) as entries:
            names = [entry.name for entry in entries]
    except OSError as exc:
        raise CopyUpError(f"{where}: {exc.strerror}") from None
    for name in names:
        path = f"{where.rstrip('/')}/{name}"
        try:
            _copy_entry(name, source, target, device, path)
        except OSError as exc:
            raise CopyUpError(f"{path}: {exc.strerror}") from None


def _copy_entry(name: str, source: int, target: int, device: int, path: str) -> None:
    st = os.stat(name, dir_fd=source, follow_symlinks=False)
    mode = st.st_mode
    try:
        there = os.stat(name, dir_fd=target, follow_symlinks=False)
    except FileNotFoundError:
        there = None
    if there is not None and not (
        there.st_dev == device and stat.S_ISDIR(there.st_mode) and stat.S_ISDIR(mode)
    ):
        return
    if stat.S_ISDIR(mode):
        if there is None:
            os.mkdir(name, 0o700, dir_fd=target)
        inner_source = os.open(name, _DIRECTORY, dir_fd=source)
        try:
            inner_target = os.open(name, _DIRECTORY, dir_fd=target)
            try:
                _copy_entries(inner_source, inner_target, device, path)
            finally:
                os.close(inner_target)
        finally:
            os.close(inner_source)
    elif stat.S_ISREG(mode):
        _copy_file(name, source, target)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=target)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(name, mode, st.st_rdev, dir_fd=target)
    else:
        return  # a socket: nothing a copy could make of it
    os.chown(name, st.st_uid, st.st_gid, dir_fd=target, follow_symlinks=False)
    if not stat.S_ISLNK(mode):  # after the chown, which clears set-id bits
        os.chmod(name, stat.S_IMODE(mode), dir_fd=target)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=target, follow_symlinks=False)


def _copy_file(name: str, source: int, target: int) -> None:
    """The regular file ``name`` of ``source`` into ``target`` (opened O_NONBLOCK: a FIFO
    put in its place would not hold the open up; it is then refused as not regular)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    reading = os.open(name, flags, dir_fd=source)
    try:
        st = os.fstat(reading)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        writing = os.open(name, flags, 0o600, dir_fd=target)
        try:
            left = st.st_size
            while left > 0:  # in the kernel (copy_file_range does not cross file systems)
                sent = os.sendfile(writing, reading, None, left)
                if sent == 0:
                    break
                left -= sent
        finally:
            os.close(writing)
    finally:
        os.close(reading)

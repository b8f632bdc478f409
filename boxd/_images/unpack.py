"""Unpack one image layer (a tar, gzip, zstd or plain) into its own directory, safely.

A layer is hostile until proven otherwise.  Every member's parent directory is opened with
``openat2(RESOLVE_IN_ROOT)`` below the layer's directory, so ``..`` and absolute symlinks
stop at the layer's root: a symlink in the tar, followed by a write through it, lands
inside the layer.  The last component is never followed (``O_NOFOLLOW``, ``*at`` calls
with ``dir_fd``).  A name that climbs out with ``..`` is refused, naming the member; a hard
link is made only to a member already inside the layer.

Whiteouts become what overlayfs reads: ``.wh.NAME`` a 0/0 character device ``NAME``, and
``.wh..wh..opq`` the ``trusted.overlay.opaque`` xattr on its directory (and
``user.overlay.opaque``, read by user-namespaced containers' overlays).  Device nodes,
FIFOs, owners, modes (setuid included) and times are kept as a root Docker daemon keeps
them; xattrs in the ``user.`` and ``security.`` namespaces too (``trusted.`` ones could
forge overlay metadata and are dropped, as are ``user.overlay.`` ones, which userxattr
overlays read).  Sparse members (a few bytes of gzip declaring
gigabytes) are refused: image tools never write them.

The caller unpacks into a fresh temporary directory and renames it into place; the
uncompressed stream's sha256 (the layer's diff_id) is returned for it to check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from typing import BinaryIO

from .._inroot import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2
from .tarstream import (
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    LINK,
    REGULAR,
    SYMLINK,
    Decompressed,
    Member,
    Prefetch,
    TarError,
    TarReader,
)

__all__ = [
    "ArchiveError",
    "LayerError",
    "Unpacked",
    "open_layer",
    "own_ids",
    "unpack",
    "upper_opaque_xattr",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# What an overlay mounted with userxattr (a user-namespaced container's) reads instead.
OPAQUE_USER_XATTR = "user.overlay.opaque"
_KEPT_XATTRS = ("user.", "security.")
# What an overlay mounted with userxattr reads as its own metadata (opaque, whiteout,
# redirect ...): from a tar it would change what a user-namespaced container sees alone.
_OVERLAY_USER_XATTRS = "user.overlay."
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def kept_xattr(attr: str) -> bool:
    """Whether an untrusted layer's xattr is set on what it unpacks."""
    return attr.startswith(_KEPT_XATTRS) and not attr.startswith(_OVERLAY_USER_XATTRS)


def upper_opaque_xattr(userns: bool) -> str:
    """The xattr that marks an opaque directory in a container's overlay upper: the one its
    overlay reads and writes (``user.`` with userxattr, a user-namespaced container's).
    The other one is an ordinary xattr there: a directory copied up from a layer, which has
    both, carries it without being opaque in the upper."""
    return OPAQUE_USER_XATTR if userns else OPAQUE_XATTR


def own_ids(st: os.stat_result, id_map: tuple[int, int] | None) -> tuple[int, int]:
    """A file's owner (uid, gid) as its container sees it: a user-namespaced container's
    upper directory holds host ids, which ``id_map`` (the host start and count its ids
    map to) reads back as its own; without one, the ids as they are."""
    if id_map is None:
        return st.st_uid, st.st_gid
    start, count = id_map
    uid, gid = (i - start if start <= i < start + count else i for i in (st.st_uid, st.st_gid))
    return uid, gid


class LayerError(Exception):
    """A layer that cannot or must not be unpacked; the message names the member."""


class ArchiveError(Exception):
    """An archive that cannot be loaded (:mod:`boxd._images.archive`, imported by the first
    save, load, import, commit or export; this module is loaded at start); the message
    names what is wrong in it."""


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """``openat2(root_fd, path, flags, RESOLVE_IN_ROOT)``: ``..`` and symlinks never leave
    the directory ``root_fd``."""
    return openat2(root_fd, path or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def open_layer(blob: BinaryIO) -> Decompressed:
    """The uncompressed tar stream of a layer blob: gzip, zstd or plain (by magic bytes)."""
    return Decompressed(blob.read)


class Unpacked:
    """What :func:`unpack` found: the diff_id of the tar."""

    def __init__(self, diff_id: str) -> None:
        self.diff_id = diff_id


def _clean(name: str, member: str) -> list[str]:
    """The components of a member name inside the layer; ``..`` may not climb out."""
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LayerError(f"member {member!r} points outside the layer (..)")
            parts.pop()
            continue
        parts.append(part)
    return parts


class _Unpacker:
    """Members one by one below ``root_fd``.  ``whiteouts``: ``.wh.`` names are overlay
    whiteouts (a layer), else plain names (``cp``).  :meth:`owner` gives each member's
    host owner and ``made_owner`` that of the parents it creates."""

    def __init__(self, root_fd: int, *, whiteouts: bool = True) -> None:
        self.root_fd = root_fd
        self.whiteouts = whiteouts
        self.made_owner = (0, 0)
        self.dirs: dict[str, int] = {}  # open parent directories by relative path
        self.dir_meta: list[tuple[str, Member]] = []
        self.retired: list[int] = []  # closed before the next member (one may be in use)

    def close(self) -> None:
        self.forget_dirs()
        self.close_retired()

    def close_retired(self) -> None:
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()

    def forget_dirs(self) -> None:
        """A directory or symlink changed: the cached parents may no longer be the path."""
        self.retired.extend(self.dirs.values())
        self.dirs.clear()

    def parent(self, parts: list[str], member: str, hops: int = 0) -> int:
        """An fd of the directory ``parts`` (created as needed), resolved in the root."""
        key = "/".join(parts)
        fd = self.dirs.get(key)
        if fd is not None:
            return fd
        try:
            fd = open_in_root(self.root_fd, key, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if not parts:
                raise
            up = self.parent(parts[:-1], member, hops)
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=up)
                os.chown(parts[-1], *self.made_owner, dir_fd=up, follow_symlinks=False)
            except FileExistsError:  # a symbolic link to a directory not there yet
                self._link_target(parts, up, member, hops)
            try:
                fd = open_in_root(self.root_fd, key, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                raise LayerError(
                    f"member {member!r}: {key!r} is a symbolic link to a directory that "
                    "cannot be made in the layer"
                ) from None
            except NotADirectoryError:
                raise LayerError(
                    f"member {member!r}: {key!r} in the layer is not a directory"
                ) from None
        except NotADirectoryError:
            raise LayerError(
                f"member {member!r}: {key!r} in the layer is not a directory"
            ) from None
        self.dirs[key] = fd
        return fd

    def _link_target(self, parts: list[str], up: int, member: str, hops: int) -> None:
        """Make the directory the symbolic link ``parts`` leads to, inside the root (an
        absolute target from the root, ``..`` stopping there), as dockerd's unpacking,
        chrooted to the root, makes it; never anything outside the root."""
        if hops >= 40:
            raise LayerError(f"member {member!r}: too many levels of symbolic links")
        try:
            target = os.readlink(parts[-1], dir_fd=up)
        except OSError:  # not a link (a file was there): the open names it
            return
        where = posixpath.normpath("/" + posixpath.join(*parts[:-1], target))  # ".." stops at /
        self.parent([p for p in where.split("/") if p], member, hops + 1)

    def clear(self, dir_fd: int, name: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``name`` unless it is a directory and ``keep_dir``; whether
        a directory was kept."""
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(name, dir_fd=dir_fd)
            self.forget_dirs()
        else:
            os.unlink(name, dir_fd=dir_fd)
            if stat.S_ISLNK(st.st_mode):
                self.forget_dirs()
        return False

    def member(self, tar: TarReader, info: Member) -> None:
        """Make one member.  Each is made at once and what was there is removed only if
        that fails (EEXIST: a later member of the same name wins), so a layer's usual
        member costs no lookup.  A new name cannot change what a cached parent directory
        resolves to; removing a directory or a symbolic link can, and forgets them all."""
        self.close_retired()
        parts = _clean(info.name, info.name)
        if info.sparse:
            raise LayerError(f"member {info.name!r} is a sparse file, which layers never hold")
        if not parts:
            if info.type == DIRECTORY:
                self.dir_meta.append(("", info))
                return
            raise LayerError(f"member {info.name!r} has no name")
        name = parts[-1]
        dir_fd = self.parent(parts[:-1], info.name)
        kind = info.type
        if self.whiteouts and name.startswith(WHITEOUT_PREFIX):
            self.whiteout(dir_fd, name, info)
        elif kind in REGULAR:
            try:
                fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                self.clear(dir_fd, name, keep_dir=False)
                fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
            try:
                tar.copy_to(fd)
                os.fchown(fd, *self.owner(info))
                os.fchmod(fd, info.mode & 0o7777)  # after the chown, which clears setuid
                self.xattrs(fd, info)  # after it too: it clears security.capability
                os.utime(fd, ns=(info.mtime_ns, info.mtime_ns))
            finally:
                os.close(fd)
        elif kind == DIRECTORY:
            try:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                if not self.clear(dir_fd, name, keep_dir=True):
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
            self.dir_meta.append(("/".join(parts), info))
        elif kind == SYMLINK:
            try:
                os.symlink(info.linkname, name, dir_fd=dir_fd)
            except FileExistsError:
                self.clear(dir_fd, name, keep_dir=False)
                os.symlink(info.linkname, name, dir_fd=dir_fd)
            self.owner_and_times(dir_fd, name, info)
        elif kind == LINK:
            self.hard_link(dir_fd, name, info)
        elif kind in (CHAR, BLOCKDEV, FIFO):
            mode = {CHAR: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK}.get(kind, stat.S_IFIFO)
            device = os.makedev(info.devmajor, info.devminor) if kind != FIFO else 0
            try:
                os.mknod(name, mode | 0o600, device, dir_fd=dir_fd)
            except FileExistsError:
                self.clear(dir_fd, name, keep_dir=False)
                os.mknod(name, mode | 0o600, device, dir_fd=dir_fd)
            self.owner_and_times(dir_fd, name, info)
            os.chmod(name, info.mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
        else:
            raise LayerError(f"member {info.name!r} has an unsupported type {chr(kind)!r}")

    def whiteout(self, dir_fd: int, name: str, info: Member) -> None:
        if name == OPAQUE:
            os.setxattr(dir_fd, OPAQUE_XATTR, b"y")
            os.setxattr(dir_fd, OPAQUE_USER_XATTR, b"y")
            return
        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT_PREFIX):
            raise LayerError(f"member {info.name!r} is a whiteout of {hidden!r}")
        self.clear(dir_fd, hidden, keep_dir=False)
        os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)

    def hard_link(self, dir_fd: int, name: str, info: Member) -> None:
        target = _clean(info.linkname, info.name)
        if not target:
            raise LayerError(f"member {info.name!r} links to the layer's root")
        src_fd = self.parent(target[:-1], info.name)
        for attempt in range(2):
            try:
                os.link(
                    target[-1], name, src_dir_fd=src_fd, dst_dir_fd=dir_fd, follow_symlinks=False
                )
                return
            except FileNotFoundError:
                raise LayerError(
                    f"member {info.name!r} links to {info.linkname!r}, which is not in the layer"
                ) from None
            except FileExistsError:
                if attempt:
                    raise
                self.clear(dir_fd, name, keep_dir=False)
                src_fd = self.parent(target[:-1], info.name)  # the cache may be gone

    def owner(self, info: Member) -> tuple[int, int]:
        return info.uid, info.gid

    def owner_and_times(self, dir_fd: int, name: str, info: Member) -> None:
        os.chown(name, *self.owner(info), dir_fd=dir_fd, follow_symlinks=False)
        with contextlib.suppress(NotImplementedError):
            ns = (info.mtime_ns, info.mtime_ns)
            os.utime(name, ns=ns, dir_fd=dir_fd, follow_symlinks=False)

    def xattrs(self, fd: int, info: Member) -> None:
        for attr, value in info.xattrs.items():
            if kept_xattr(attr):
                os.setxattr(fd, attr, value)

    def finish(self) -> None:
        """Directories' owners, modes and times, once nothing more is created in them."""
        self.close()
        for path, info in reversed(self.dir_meta):
            try:
                fd = open_in_root(self.root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue  # replaced by a later member
            try:
                os.fchown(fd, *self.owner(info))
                os.fchmod(fd, info.mode & 0o7777)
                self.xattrs(fd, info)
                os.utime(fd, ns=(info.mtime_ns, info.mtime_ns))
            finally:
                os.close(fd)


def unpack(read: Callable[[int], bytes], dest: str) -> Unpacked:
    """Unpack the layer whose bytes ``read(n)`` gives (a file's, a pipe's; b"" at the
    end) into the empty directory ``dest``, as they come; its diff_id.

    Raises :class:`LayerError` for a hostile or broken layer (traversal, a truncated
    stream, a bad tar); what was written below ``dest`` is the caller's to delete.
    """
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    unpacker = _Unpacker(root_fd)
    tar: TarReader | None = None
    ahead: Prefetch | None = None
    try:
        stream = Decompressed(read)
        ahead = Prefetch(stream)
        tar = TarReader(ahead.piece)
        for info in tar:
            unpacker.member(tar, info)
        tar.member = None
        tar.drain()  # the rest (tar padding) belongs to the diff_id
        unpacker.finish()
    except LayerError:
        raise
    except TarError as exc:
        raise LayerError(f"the layer is not a valid tar: {exc}") from None
    except OSError as exc:
        if tar is None or tar.member is None:
            raise
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise LayerError(f"member {tar.member.name!r}: {exc.strerror}") from None
    finally:
        if ahead is not None:
            ahead.close()
        unpacker.close()
        os.close(root_fd)
    return Unpacked("sha256:" + stream.sha.hexdigest())

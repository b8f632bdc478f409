"""``cp``: a container's files as a tar, and a tar into a container, never outside its root.

Everything here works on an fd of the container's root directory as its processes see it
(:meth:`boxd._supervisor.Supervisor.open_root`).  Every path is opened with
``openat2(RESOLVE_IN_ROOT)`` below that fd, so ``..`` and absolute symlinks stop at the
container's root as they do for its processes; a directory's entries are then opened one
name at a time with ``O_NOFOLLOW``.  Symlinks are read with readlinkat, never followed by
the daemon itself: :func:`resolve` only spells the path the kernel would resolve (Docker
shows it as ``linkTarget``, and a tar is extracted below it), and the kernel's in-root
resolution is what confines every open.

Paths follow Docker's rules (``daemon/archive.go``): a path is absolute in the container;
its directory part is resolved through symlinks, its last component is not (a symlink is
copied as a symlink) unless the path ends in ``/`` or ``/.``; a tar names its top entry
by the path's last component, ``.`` for ``DIR/.`` (the directory's content).  A tar is
extracted into an existing directory, member by member through the image unpacker (no
member may climb out of it), owned by the container's root unless ``copy_uid_gid``.
Ownership goes through the container's user namespace (``--isolate-user``): host ids
``start..start+count-1`` are the container's ``0..count-1`` both ways.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import stat
import struct
import tarfile
from collections import deque
from collections.abc import Iterator
from typing import IO

import attrs

from ._copymessages import CopyError as CopyError
from ._copymessages import NoSuchPath as NoSuchPath
from ._copymessages import PathStat as PathStat
from ._images.archive import _keep_capability
from ._images.tarstream import DIRECTORY, LINK, Decompressed, Member, TarError, TarReader
from ._images.unpack import LayerError, _Unpacker, open_in_root

__all__ = [
    "CopyError",
    "IdMap",
    "NoSuchPath",
    "PathStat",
    "check_archive",
    "extract_archive",
    "resolve",
    "stat_path",
    "write_archive",
]

_MAX_SYMLINKS = 40
_CHUNK = 1 << 20
OVERFLOW_ID = 65534  # what a host id the container's namespace does not map shows as
# Filesystems whose files are the kernel's, not the container's: a tar keeps such a mount
# point as an empty directory (Docker reads a container's files where none is mounted).
_PSEUDO_FS = frozenset(
    {
        0x9FA0,  # proc
        0x62656572,  # sysfs
        0x63677270,  # cgroup2
        0x27E0EB,  # cgroup
        0x1CD1,  # devpts
        0x19800202,  # mqueue
        0x64626720,  # debugfs
        0x73636673,  # securityfs
        0x74726163,  # tracefs
        0xCAFE4A11,  # bpf
        0x65735546,  # fuse (the /proc view's files)
    }
)
_libc = ctypes.CDLL(None, use_errno=True)
_CAPS_V3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@attrs.frozen
class IdMap:
    """The container's ids ``0..count-1`` are host ids ``start..``; none: the host's own."""

    start: int = 0
    count: int = 1 << 32

    def to_container(self, host: int) -> int:
        inside = host - self.start
        return inside if 0 <= inside < self.count else OVERFLOW_ID

    def to_host(self, inside: int, what: str) -> int:
        if not 0 <= inside < self.count:
            raise CopyError(
                f"{what} {inside} is outside the container's user namespace (0-{self.count - 1})"
            )
        return self.start + inside


@contextlib.contextmanager
def _as_container_root(ids: IdMap) -> Iterator[None]:
    """This thread creates files as the container's root does.  A user-namespaced
    container's overlay takes no file from a uid its namespace does not map (EOVERFLOW), so
    the thread's filesystem ids become its root's host ids, and the capabilities that
    change drops from the effective set (chown, DAC override) are raised again from the
    permitted one; back to 0 at the end, which restores them by itself."""
    if ids.start == 0:
        yield
        return
    root = ids.to_host(0, "uid")
    _libc.setfsuid(root)
    _libc.setfsgid(root)
    try:
        header, data = _CapHeader(_CAPS_V3, 0), (_CapData * 2)()
        _check(_libc.capget(ctypes.byref(header), data))
        for half in data:
            half.effective = half.permitted
        _check(_libc.capset(ctypes.byref(header), data))
        yield
    finally:
        _libc.setfsgid(0)
        _libc.setfsuid(0)


def docker_path(path: str) -> str:
    """The path made absolute and clean, keeping a trailing ``/`` or ``/.`` (Docker's
    ``PreserveTrailingDotOrSeparator``)."""
    clean = posixpath.normpath("/" + path)
    if clean.startswith("//"):
        clean = clean[1:]
    if (path.endswith("/.") or path == ".") and not clean.endswith("/."):
        return clean.rstrip("/") + "/."
    if path.endswith("/") and not clean.endswith("/"):
        return clean + "/"
    return clean


def _split(path: str) -> tuple[str, str]:
    """(directory part, last component) of a :func:`docker_path`: ``("/a/", "b")``;
    ``""`` or ``"."`` as the last component stand for the directory itself."""
    head, _, base = path.rpartition("/")
    return head + "/", base


def _name(path: str) -> str:
    """A tar's top entry for ``path``: its last component (``.`` for ``/`` and ``DIR/.``)."""
    return posixpath.basename(path.rstrip("/")) or "."


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _lookup(root_fd: int, parts: list[str], name: str) -> os.stat_result | None:
    """lstat of ``name`` in the directory ``parts`` (in the root); None: nothing there."""
    try:
        fd = open_in_root(root_fd, "/".join(parts), os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(fd)


def _readlink(root_fd: int, parts: list[str], name: str) -> str:
    fd = open_in_root(root_fd, "/".join(parts), os.O_PATH | os.O_DIRECTORY)
    try:
        return os.readlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def resolve(root_fd: int, path: str) -> str:
    """The container path that ``path`` names once every symlink in it is followed as the
    kernel follows it inside the root (``..`` and absolute targets stop at the root); from
    the first missing component on, the rest is taken as written."""
    todo = deque(_parts(path))
    done: list[str] = []
    hops = 0
    missing = False
    while todo:
        name = todo.popleft()
        if name == ".":
            continue
        if name == "..":
            if done:
                done.pop()
            continue
        st = None if missing else _lookup(root_fd, done, name)
        if st is None or not stat.S_ISLNK(st.st_mode):
            missing = missing or st is None
            done.append(name)
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise CopyError(f"too many levels of symbolic links in {path}")
        target = _readlink(root_fd, done, name)
        if target.startswith("/"):
            done = []
        todo.extendleft(reversed(_parts(target)))
    return "/" + "/".join(done)


@attrs.frozen
class _Located:
    path: str  # the path as Docker shows it (docker_path)
    dir_fd: int  # the directory part, resolved in the root (O_RDONLY)
    base: str  # the last component in it; "" for the directory itself


def _locate(root_fd: int, path: str, container: str) -> _Located:
    abs_path = docker_path(path)
    head, base = _split(abs_path)
    try:
        dir_fd = open_in_root(root_fd, head, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise NoSuchPath(abs_path, container) from None
        if exc.errno == errno.ENOTDIR:  # /etc/passwd/: not missing, dockerd says so too
            raise _not_a_directory(abs_path, container) from None
        raise
    return _Located(abs_path, dir_fd, "" if base in ("", ".") else base)


def _lstat(found: _Located, container: str) -> os.stat_result:
    if not found.base:
        return os.fstat(found.dir_fd)
    try:
        return os.stat(found.base, dir_fd=found.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise NoSuchPath(found.path, container) from None
    except NotADirectoryError:
        raise _not_a_directory(found.path, container) from None


def _not_a_directory(path: str, container: str) -> CopyError:
    return CopyError(f"not a directory: {path} in container {container}")


def stat_path(root_fd: int, path: str, container: str) -> PathStat:
    """Docker's stat of a container path (``HEAD /containers/{id}/archive``)."""
    found = _locate(root_fd, path, container)
    try:
        st = _lstat(found, container)
    finally:
        os.close(found.dir_fd)
    target = resolve(root_fd, found.path) if stat.S_ISLNK(st.st_mode) else ""
    return PathStat(_name(found.path), st.st_size, st.st_mode, st.st_mtime, target)


def _fs_type(fd: int) -> int:
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type is its first word
    if _libc.fstatfs(fd, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(struct.unpack_from("l", buf)[0])


def _open_dir(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


class _Writer:
    def __init__(self, tar: tarfile.TarFile, ids: IdMap) -> None:
        self.tar = tar
        self.ids = ids
        # The first name each file with more than one link was archived under: its other
        # names are hard links to it, as Docker's archive writes them (not copies).
        self.linked: dict[tuple[int, int], str] = {}

    def info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.uid = self.ids.to_container(st.st_uid)
        info.gid = self.ids.to_container(st.st_gid)
        info.mode = stat.S_IMODE(st.st_mode)
        info.mtime = st.st_mtime
        return info

    def entry(self, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> None:
        """One entry; a directory's whole tree.  Sockets are left out, as Docker does."""
        info = self.info(arcname, st)
        mode = st.st_mode
        if not stat.S_ISDIR(mode) and not stat.S_ISSOCK(mode) and st.st_nlink > 1:
            first = self.linked.setdefault((st.st_dev, st.st_ino), arcname)
            if first != arcname:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self.tar.addfile(info)
                return
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
            fd = _open_dir(dir_fd, name) if name else os.dup(dir_fd)
            try:
                self.directory(fd, arcname)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dir_fd)
            self.tar.addfile(info)
        elif stat.S_ISREG(mode):
            # Opened for reading only once known to be that regular file: a FIFO or a
            # device put in its place meanwhile is never opened.
            path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                now = os.fstat(path_fd)
                if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                    raise CopyError(f"{arcname} changed while it was read")
                fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                os.close(path_fd)
            with os.fdopen(fd, "rb") as f:
                info.size = now.st_size
                _keep_capability(info, fd)  # setcap's, as Docker's archive keeps it
                self.tar.addfile(info, f)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            info.type = (
                tarfile.CHRTYPE if stat.S_ISCHR(mode)
                else tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE
            )  # fmt: skip
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)

    def directory(self, fd: int, prefix: str) -> None:
        if _fs_type(fd) in _PSEUDO_FS:
            return
        for name in sorted(os.listdir(fd)):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile
            self.entry(fd, name, f"{prefix}/{name}", st)


def write_archive(
    root_fd: int, path: str, out: IO[bytes], *, container: str, ids: IdMap
) -> PathStat:
    """Write the tar of ``path`` (Docker's ``GET /containers/{id}/archive``); its stat."""
    found = _locate(root_fd, path, container)
    try:
        st = _lstat(found, container)
        target = resolve(root_fd, found.path) if stat.S_ISLNK(st.st_mode) else ""
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _Writer(tar, ids).entry(found.dir_fd, found.base, _name(found.path), st)
    finally:
        os.close(found.dir_fd)
    return PathStat(_name(found.path), st.st_size, st.st_mode, st.st_mtime, target)


def _below(base: list[str], name: str, member: str) -> list[str]:
    """``name``'s components below the destination ``base`` (the container path's), as
    dockerd's untar joins and cleans a member's name onto it: ``..`` stops at the root
    (a build context's ``../foo`` is its ``foo``), and a name that then lands outside
    ``base`` is refused."""
    parts = list(base)
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    if parts[: len(base)] != base:
        raise CopyError(f"archive member {member!r} points outside the destination (..)")
    return parts[len(base) :]


def _members(tar_path: str, base: list[str]) -> Iterator[tuple[TarReader, Member, list[str]]]:
    """Each member of the tar with its name's components below ``base`` (see _below)."""
    try:
        with open(tar_path, "rb") as f:
            tar = TarReader(Decompressed(f.read).piece)
            for info in tar:
                yield tar, info, _below(base, info.name, info.name)
    except TarError as exc:
        raise CopyError(f"the archive is not a valid tar: {exc}") from None


def _destination(root_fd: int, path: str, container: str) -> tuple[str, int]:
    """The extraction point: its resolved container path and an fd (it must exist and be a
    directory)."""
    dest = resolve(root_fd, docker_path(path))
    try:
        fd = open_in_root(root_fd, dest, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NoSuchPath(docker_path(path), container) from None
    except NotADirectoryError:
        raise CopyError(f"extraction point is not a directory: {path}") from None
    return dest, fd


def check_archive(
    root_fd: int, path: str, tar_path: str, *, container: str, no_overwrite_dir_non_dir: bool
) -> None:
    """Refuse, before anything is written: a destination that is not a directory, an
    archive that is not a tar or whose members climb out, and (``no_overwrite_dir_non_dir``)
    a member that would replace a directory with a non-directory or the other way round."""
    dest, fd = _destination(root_fd, path, container)
    os.close(fd)
    base = _parts(dest)
    for _tar, info, parts in _members(tar_path, base):
        if not no_overwrite_dir_non_dir or not parts:
            continue
        st = _lookup(root_fd, base + parts[:-1], parts[-1])
        if st is None:
            continue
        where = "/" + "/".join(base + parts)
        if stat.S_ISDIR(st.st_mode) and info.type != DIRECTORY:
            raise CopyError(f"cannot overwrite directory {where!r} with non-directory")
        if not stat.S_ISDIR(st.st_mode) and info.type == DIRECTORY:
            raise CopyError(f"cannot overwrite non-directory {where!r} with directory")


class _CopyUnpacker(_Unpacker):
    def __init__(self, root_fd: int, owner: tuple[int, int] | None, ids: IdMap) -> None:
        super().__init__(root_fd, whiteouts=False)
        self.fixed = owner
        self.ids = ids
        self.made_owner = (ids.to_host(0, "uid"), ids.to_host(0, "gid"))

    def owner(self, info: Member) -> tuple[int, int]:
        if self.fixed is not None:
            return self.fixed
        return self.ids.to_host(info.uid, "uid"), self.ids.to_host(info.gid, "gid")


def extract_archive(
    root_fd: int,
    path: str,
    tar_path: str,
    *,
    container: str,
    ids: IdMap,
    copy_uid_gid: bool = False,
) -> None:
    """Extract the tar at ``tar_path`` into the container directory ``path`` (Docker's
    ``PUT /containers/{id}/archive``; :func:`check_archive` first).  Members are owned by
    the container's root, or with ``copy_uid_gid`` by the ids the tar gives them."""
    dest, dest_fd = _destination(root_fd, path, container)
    os.close(dest_fd)
    base = _parts(dest)
    prefix = "/".join(base)
    root_ids = None if copy_uid_gid else (ids.to_host(0, "uid"), ids.to_host(0, "gid"))
    unpacker = _CopyUnpacker(root_fd, root_ids, ids)
    name = ""
    try:
        with _as_container_root(ids):
            for tar, info, parts in _members(tar_path, base):
                name = info.name
                if not parts:
                    continue  # "." is the destination itself, which stays as it is
                info.name = f"{prefix}/{'/'.join(parts)}"
                if info.type == LINK:  # a hard link names a member of the same archive
                    target = _below(base, info.linkname, name)
                    info.linkname = f"{prefix}/{'/'.join(target)}"
                unpacker.member(tar, info)
            unpacker.finish()
    except LayerError as exc:
        raise CopyError(str(exc).replace("the layer", "the container")) from None
    except OSError as exc:
        if not name or exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        if exc.errno == errno.EROFS:
            raise CopyError(f"cannot write {name!r} into {path}: read-only file system") from None
        raise CopyError(f"archive member {name!r}: {exc.strerror}") from None
    finally:
        unpacker.close()

"""COPY and ADD's sources: found in a root (the build context, or another stage's or
image's files), hashed for the layer cache, and written as the tar that is extracted at
the destination.

Every path is resolved with ``openat2(RESOLVE_IN_ROOT)`` below the root, so a symlink in
the context (or in an image) cannot make the daemon read a host file; files are opened
with ``O_NOFOLLOW`` and checked to be what was listed.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs

from .._images.hardlinks import Links, add_hard_link, note_link
from .._images.tarstream import ZSTD_MAGIC
from .._images.unpack import open_in_root
from .ignore import Ignore

__all__ = [
    "CopyTarget",
    "Source",
    "SourceError",
    "digest",
    "find",
    "write_dirs",
    "write_tar",
]

_CHUNK = 1 << 20


class SourceError(ValueError):
    """A source that is not there (or is excluded); the message names it."""


@attrs.frozen
class Source:
    rel: str  # below the root, resolved and clean; "" for the root itself
    is_dir: bool
    name: str  # as the Dockerfile gave it (for messages)


@attrs.frozen
class CopyTarget:
    dest: str  # absolute, clean: where the sources go
    dest_is_dir: bool  # a file source goes into it (by its name), not onto it
    dest_exists: bool  # the directory is there already (its metadata is left as it is)
    owner: tuple[int, int] | None  # --chown's ids; None: 0:0 (or the sources', see next)
    mode: int | None  # --chmod
    extract: bool = False  # ADD: a local tar archive is unpacked at dest
    # COPY --from without --chown: what is copied keeps its owners, as Docker's builders
    # keep them (a directory made for the destination is still root's).
    keep_owners: bool = False
    # The directories to make first (absolute, top down, none there yet): with --chown,
    # those a file is copied into, owned by its user as Docker makes them.
    new_dirs: tuple[str, ...] = ()


def _clean(path: str) -> str:
    clean = posixpath.normpath("/" + path).lstrip("/")
    return "" if clean == "." else clean


def has_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _lstat_in(root_fd: int, rel: str) -> os.stat_result | None:
    head, _, name = rel.rpartition("/")
    try:
        fd = open_in_root(root_fd, head, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False) if name else os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_followed(root_fd: int, rel: str) -> os.stat_result | None:
    try:
        fd = open_in_root(root_fd, rel, os.O_PATH)
    except OSError:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _listdir(root_fd: int, rel: str) -> list[str]:
    try:
        fd = open_in_root(root_fd, rel, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def find(root_fd: int, pattern: str, ignore: Ignore | None) -> list[Source]:
    """The sources ``pattern`` names (wildcards as Go's filepath.Match, per component);
    :class:`SourceError` when none is there."""
    clean = _clean(pattern)
    if ignore is not None and clean and ignore.excluded(clean) and not has_glob(clean):
        raise SourceError(_missing(pattern))
    matches = [""]
    for part in clean.split("/") if clean else []:
        found = []
        for base in matches:
            if not has_glob(part):
                found.append(f"{base}/{part}" if base else part)
                continue
            for name in _listdir(root_fd, base):
                if fnmatch.fnmatchcase(name, part):
                    found.append(f"{base}/{name}" if base else name)
        matches = found
    sources = []
    for rel in matches:
        if ignore is not None and rel and ignore.excluded(rel):
            continue
        st = _stat_followed(root_fd, rel)
        if st is None:
            continue
        sources.append(Source(rel, stat.S_ISDIR(st.st_mode), pattern))
    if not sources:
        raise SourceError(_missing(pattern))
    return sources


def _missing(pattern: str) -> str:
    return (
        "file not found in build context or excluded by .dockerignore: "
        f"stat {pattern}: file does not exist"
    )


# ---- walking ---------------------------------------------------------------------------


@attrs.frozen
class _Entry:
    rel: str  # below the source ("" for a source itself)
    path: str  # below the root
    st: os.stat_result
    link: str = ""


def _walk(root_fd: int, source: Source, ignore: Ignore | None) -> Iterator[_Entry]:
    top = _stat_followed(root_fd, source.rel)
    if top is None:
        raise SourceError(_missing(source.name))
    yield _Entry("", source.rel, top)
    if stat.S_ISDIR(top.st_mode):
        yield from _walk_dir(root_fd, source.rel, "", ignore, [])


def _walk_dir(
    root_fd: int, path: str, rel: str, ignore: Ignore | None, pending: list[_Entry]
) -> Iterator[_Entry]:
    """``pending``: excluded directories above, walked for what a ``!`` line brings back;
    each is yielded before the first entry found below it, never if none is."""
    for name in _listdir(root_fd, path):
        child = f"{path}/{name}" if path else name
        hidden = ignore is not None and ignore.excluded(child)
        if hidden and not (ignore is not None and ignore.reincludes_below(child)):
            continue
        st = _lstat_in(root_fd, child)
        if st is None or stat.S_ISSOCK(st.st_mode):
            continue
        sub = f"{rel}/{name}" if rel else name
        if hidden:
            if stat.S_ISDIR(st.st_mode):
                entry = _Entry(sub, child, st)
                pending.append(entry)
                yield from _walk_dir(root_fd, child, sub, ignore, pending)
                if pending and pending[-1] is entry:
                    pending.pop()
            continue
        link = ""
        if stat.S_ISLNK(st.st_mode):
            link = _readlink(root_fd, child)
        yield from pending
        pending.clear()
        yield _Entry(sub, child, st, link)
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root_fd, child, sub, ignore, pending)


def _readlink(root_fd: int, rel: str) -> str:
    head, _, name = rel.rpartition("/")
    fd = open_in_root(root_fd, head, os.O_PATH | os.O_DIRECTORY)
    try:
        return os.readlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _open_file(root_fd: int, entry: _Entry) -> IO[bytes]:
    try:
        fd = open_in_root(root_fd, entry.path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP and entry.rel == "":  # a source that is a symlink
            fd = open_in_root(root_fd, entry.path, os.O_RDONLY)
        else:
            raise
    f = os.fdopen(fd, "rb")
    now = os.fstat(fd)
    if (now.st_ino, now.st_dev) != (entry.st.st_ino, entry.st.st_dev):
        f.close()
        raise SourceError(f"{entry.path} changed while it was read")
    return f


def digest(
    root_fd: int, sources: list[Source], ignore: Ignore | None, *, owners: bool = False
) -> str:
    """A digest of what the sources hold (names, types, modes, links, contents; not
    times, as Docker's classic builder's tarsum leaves them out; ``owners``: theirs
    too, for a stage's or an image's files, which COPY --from copies with them): the
    layer cache's key for a COPY or ADD."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"\0source\0{source.rel}\0".encode())
        for entry in _walk(root_fd, source, ignore):
            st = entry.st
            h.update(f"\0{entry.rel}\0{st.st_mode:o}\0{entry.link}\0".encode())
            if owners:
                h.update(f"{st.st_uid}:{st.st_gid}\0".encode())
            if stat.S_ISREG(st.st_mode):
                with _open_file(root_fd, entry) as f:
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
    return h.hexdigest()


def materialize(root_fd: int, source: Source, ignore: Ignore | None, dest: Path) -> None:
    """A copy of ``source`` (a directory's tree, or a file) at ``dest`` (which must not
    exist): modes, owners and symlinks kept, what ``ignore`` excludes left out, read
    through the root as a COPY reads it (no symlink leaves it)."""
    for entry in _walk(root_fd, source, ignore):
        path = dest / entry.rel if entry.rel else dest
        st = entry.st
        if entry.link:
            os.symlink(entry.link, path)
        elif stat.S_ISDIR(st.st_mode):
            path.mkdir()
        elif stat.S_ISREG(st.st_mode):
            with _open_file(root_fd, entry) as f, open(path, "xb") as out:
                shutil.copyfileobj(f, out, _CHUNK)
        else:
            continue  # devices, fifos: not a build's sources
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        if not entry.link:
            os.chmod(path, stat.S_IMODE(st.st_mode))


# ---- the tar ---------------------------------------------------------------------------


def _info(name: str, st: os.stat_result, target: CopyTarget) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if target.owner is None and target.keep_owners:
        info.uid, info.gid = st.st_uid, st.st_gid
    else:
        info.uid, info.gid = target.owner or (0, 0)
    info.mode = target.mode if target.mode is not None else stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


def write_tar(
    out: IO[bytes],
    root_fd: int,
    sources: list[Source],
    target: CopyTarget,
    ignore: Ignore | None,
) -> None:
    """The tar to extract at ``/`` of the image: each source at its place below
    ``target.dest`` (a directory's contents into it, as Docker copies them)."""
    dest = target.dest.strip("/")
    links: Links = {}  # (device, inode) of a file with links: its name
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dirs(tar, target.new_dirs, target.owner or (0, 0))
        for source in sources:
            for entry in _walk(root_fd, source, ignore):
                if entry.rel == "" and stat.S_ISDIR(entry.st.st_mode):
                    if not target.dest_exists and dest:
                        # Made as Docker makes it, 0755 (or --chmod's), root's unless
                        # --chown's: not with the source directory's mode (the context's
                        # root is the daemon's 0700 directory), which a USER after COPY .
                        # /app could not enter.
                        info = _info(dest, entry.st, target)
                        info.uid, info.gid = target.owner or (0, 0)
                        info.type = tarfile.DIRTYPE
                        info.mode = 0o755 if target.mode is None else target.mode
                        tar.addfile(info)
                    continue
                if entry.rel == "":
                    base = posixpath.basename(source.rel)
                    name = f"{dest}/{base}" if target.dest_is_dir else dest
                    if target.extract and stat.S_ISREG(entry.st.st_mode):
                        with _open_file(root_fd, entry) as f:
                            if _is_archive(f):
                                _add_archive(tar, f, dest, source.rel)
                                continue
                else:
                    name = f"{dest}/{entry.rel}" if dest else entry.rel
                _add(tar, root_fd, entry, name.lstrip("/"), target, links)


def write_dirs(out: IO[bytes], paths: tuple[str, ...]) -> None:
    """The tar that makes the directories ``paths`` (absolute, top down), root's, 0755:
    WORKDIR's."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dirs(tar, paths, (0, 0))


def _add_dirs(tar: tarfile.TarFile, paths: tuple[str, ...], owner: tuple[int, int]) -> None:
    for path in paths:
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        info.uid, info.gid = owner
        tar.addfile(info)


def _add(
    tar: tarfile.TarFile,
    root_fd: int,
    entry: _Entry,
    name: str,
    target: CopyTarget,
    links: Links,
) -> None:
    """One member; a file already copied under another name (a hard link) is linked to
    it, as Docker's COPY keeps hard links, not copied twice."""
    st = entry.st
    info = _info(name, st, target)
    if add_hard_link(tar, info, st, links):
        return
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link
        info.mode = 0o777
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        with _open_file(root_fd, entry) as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)
        note_link(st, name, links)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)


def _open_archive(f: IO[bytes]) -> tarfile.TarFile:
    """The tar in ``f``: plain, or gzip, bzip2, xz or zstd compressed (Docker's ADD takes
    those five); a zstd one is read as a stream, in order."""
    zstd = f.read(len(ZSTD_MAGIC)) == ZSTD_MAGIC
    f.seek(0)
    if not zstd:
        return tarfile.open(fileobj=f, mode="r:*")
    import zstandard  # its library is loaded by the first such ADD

    try:
        return tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(f), mode="r|")
    except zstandard.ZstdError as exc:
        raise tarfile.ReadError(f"zstd: {exc}") from None


def _is_archive(f: IO[bytes]) -> bool:
    """A tar, plain or compressed (what ADD unpacks)."""
    try:
        with _open_archive(f) as tar:
            tar.next()
        return True
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return False
    finally:
        f.seek(0)


def _add_archive(tar: tarfile.TarFile, f: IO[bytes], dest: str, what: str) -> None:
    """ADD of a local archive: its members below ``dest``, with their own owners and
    modes; a member whose name climbs out of it is refused, as Docker refuses it, and a
    damaged archive is named."""
    import zstandard  # as _open_archive: a build's, not the daemon's start's

    try:
        _add_members(tar, f, dest, what)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise SourceError(f"{what}: the archive is damaged: {exc}") from None


def _add_members(tar: tarfile.TarFile, f: IO[bytes], dest: str, what: str) -> None:
    prefix = f"{dest}/" if dest else ""
    with _open_archive(f) as archive:
        for member in archive:
            relative = posixpath.normpath(member.name.lstrip("/"))
            if relative == ".." or relative.startswith("../"):
                raise SourceError(f"{what}: member {member.name!r} points outside the archive")
            name = posixpath.normpath("/" + member.name).lstrip("/")
            if not name or name == ".":
                continue
            copy = tarfile.TarInfo(prefix + name)
            for field in ("mode", "uid", "gid", "mtime", "type", "devmajor", "devminor"):
                setattr(copy, field, getattr(member, field))
            if member.islnk():
                copy.linkname = prefix + posixpath.normpath("/" + member.linkname).lstrip("/")
            elif member.issym():
                copy.linkname = member.linkname
            if member.isreg():
                copy.size = member.size
                tar.addfile(copy, archive.extractfile(member))
            elif member.isdir() or member.islnk() or member.issym() or member.isfifo():
                tar.addfile(copy)
        _check_end(archive)


def _check_end(archive: tarfile.TarFile) -> None:
    """The archive's end, as Go's tar reader (dockerd's) reads it: nothing, one zero
    block or two; part of a block there is an archive cut short (tarfile stops at the
    first zero block, or at a header cut short, without a word)."""
    stream = archive.fileobj
    assert stream is not None
    read = stream.tell() - archive.offset  # of the block after the last member
    if read == tarfile.BLOCKSIZE:  # a zero block: the second one, whole or not at all
        read = len(stream.read(tarfile.BLOCKSIZE)) or tarfile.BLOCKSIZE
    if read != tarfile.BLOCKSIZE and read:
        raise tarfile.ReadError("unexpected end of data in its end-of-archive blocks")

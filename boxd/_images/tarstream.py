"""A layer's bytes as they arrive: decompressed (gzip, zstd or none), hashed, read as tar.

:class:`Decompressed` turns a source of compressed bytes (any ``read(n)``: a file, a
pipe fed by a download) into pieces of the uncompressed stream, at most :data:`CHUNK`
bytes each however much a piece of input expands (a gzip bomb is never held in memory),
and hashes them: the sha256 of the whole uncompressed stream is the layer's diff_id.

:class:`TarReader` reads the members of that stream one header at a time and hands each
member's data to a file descriptor straight from the decompressed pieces.  It reads what
image tools write: ustar, GNU (long names and links) and pax (``x`` and ``g`` records:
path, linkpath, size, uid, gid, mtime, ``SCHILY.xattr.*``); sparse members (GNU ``S`` or
pax ``GNU.sparse.*``) are reported as such for the caller to refuse.  A header with a bad
checksum, a number that is not one, or an end of data inside a member is a
:class:`TarError`.  Python's :mod:`tarfile` does the same work with several copies of
every buffer and much more Python per member; a layer of a few thousand files spends
most of its time here.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import zstandard

__all__ = ["CHUNK", "ZSTD_MAGIC", "Decompressed", "Member", "Prefetch", "TarError", "TarReader"]

CHUNK = 1 << 20
DEPTH = 8  # pieces decompressed ahead of the unpacking
BLOCK = 512

_GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame's first bytes
_ZERO_BLOCK = bytes(BLOCK)
# The fewest zeros copy_to seeks over rather than writes: a file system block (a shorter
# run would make no hole).
_HOLE = 4096

REGULAR = frozenset(b"0\x007")  # regular, old regular, contiguous
LINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO = b"123456"
_GNU_LONGNAME, _GNU_LONGLINK, _GNU_SPARSE = b"LKS"
_PAX, _PAX_GLOBAL = b"xg"
_NO_DATA = frozenset(b"123456")
_MAX_META = 1 << 20  # the most bytes a long name or pax header may take


class TarError(Exception):
    """The stream is not a (complete, valid) tar, or its compression is broken."""


class Decompressed:
    """The uncompressed pieces of a layer read with ``read(n)`` from ``raw``, hashed."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._raw = read
        self.sha = hashlib.sha256()
        first = read(CHUNK)
        while 0 < len(first) < len(ZSTD_MAGIC):  # a pipe may give less: enough to tell
            more = read(CHUNK)
            if not more:
                break
            first += more
        self._pending = first  # compressed input not yet given to the decompressor
        self._zstd: zstandard.ZstdDecompressionReader | None = None
        self._gzip: zlib._Decompress | None = None
        if first.startswith(_GZIP_MAGIC):
            self._gzip = zlib.decompressobj(wbits=31)
        elif first.startswith(ZSTD_MAGIC):
            import zstandard  # its library is loaded by the first zstd stream, not at start

            self._zstd = zstandard.ZstdDecompressor().stream_reader(
                io.BufferedReader(_Input(self._input), CHUNK),
                read_across_frames=True,
                read_size=CHUNK,
            )

    def __enter__(self) -> Decompressed:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def _input(self, size: int = CHUNK) -> bytes:
        """Compressed bytes: what is pending first, then the source's."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return self._raw(size)

    def read(self, _size: int = CHUNK) -> bytes:
        """The next piece (a file's ``read``, for those who want the stream whole)."""
        return self.piece()

    def piece(self) -> bytes:
        """The next piece of uncompressed data (at most ``CHUNK`` bytes); b"" at the end."""
        if self._gzip is not None:
            data = self._gunzip()
        elif self._zstd is not None:
            import zstandard  # imported when _zstd was made

            try:
                data = self._zstd.read(CHUNK)
            except zstandard.ZstdError as exc:
                raise TarError(f"the zstd stream is damaged: {exc}") from None
        else:
            data = self._input()
        if data:
            self.sha.update(data)
        return data

    def _gunzip(self) -> bytes:
        d = self._gzip
        assert d is not None
        while True:
            if d.eof:
                rest = d.unused_data or self._input()
                while rest and not rest.strip(b"\0"):  # zero padding after the last member
                    rest = self._input()
                if not rest:
                    return b""
                if len(rest) < 2:
                    rest += self._input(2)
                if not rest.startswith(_GZIP_MAGIC):
                    raise TarError("the gzip stream has trailing data that is not gzip")
                d = self._gzip = zlib.decompressobj(wbits=31)
                data = rest
            else:
                data = d.unconsumed_tail or self._input()
                if not data:
                    raise TarError("the gzip stream is truncated")
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise TarError(f"the gzip stream is damaged: {exc}") from None
            if out:
                return out


class Prefetch:
    """``piece()`` of a :class:`Decompressed` run ahead in a thread of its own, at most
    :data:`DEPTH` pieces ahead: zlib and sha256 release the GIL, so decompressing and
    hashing overlap with unpacking (as ``tar -xz`` runs gzip beside tar).  :meth:`close`
    stops and joins it; the source is then the caller's again."""

    def __init__(self, source: Decompressed) -> None:
        self._source = source
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="boxd-layer-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                piece = self._source.piece()
                if not self._put(piece) or not piece:
                    return
        except BaseException as exc:  # given to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def piece(self) -> bytes:
        if self._ended:  # asked again after the end (a drain after a tar cut short)
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        self._ended = not item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Input(io.RawIOBase):
    """The compressed input, as zstandard's stream reader reads it (a raw file)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        super().__init__()
        self._read = read
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._rest or self._read(len(buffer))
        n = min(len(data), len(buffer))
        buffer[:n] = data[:n]
        self._rest = data[n:]
        return n


class Member:
    """One tar member: what its header (and any long name or pax records) said."""

    __slots__ = (
        "devmajor",
        "devminor",
        "gid",
        "linkname",
        "mode",
        "mtime_ns",
        "name",
        "size",
        "sparse",
        "type",
        "uid",
        "xattrs",
    )

    def __init__(self, block: bytes) -> None:
        self.name = _text(block[0:100])
        self.mode = _number(block[100:108])
        self.uid = _number(block[108:116])
        self.gid = _number(block[116:124])
        self.size = _number(block[124:136])
        self.mtime_ns = _number(block[136:148]) * 1_000_000_000
        self.type = block[156]
        self.linkname = _text(block[157:257])
        self.devmajor = _number(block[329:337]) if self.type in (CHAR, BLOCKDEV) else 0
        self.devminor = _number(block[337:345]) if self.type in (CHAR, BLOCKDEV) else 0
        self.sparse = self.type == _GNU_SPARSE
        self.xattrs: dict[str, bytes] = {}
        if block[257:265] == b"ustar\x0000" and block[345] != 0:  # POSIX: a name prefix
            self.name = _text(block[345:500]) + "/" + self.name
        if self.type == 0 and self.name.endswith("/"):
            self.type = DIRECTORY  # old tars mark directories by their name alone

    def _pax(self, records: dict[bytes, bytes]) -> None:
        for key, value in records.items():
            try:
                if key == b"path":
                    self.name = value.decode("utf-8", "surrogateescape")
                elif key == b"linkpath":
                    self.linkname = value.decode("utf-8", "surrogateescape")
                elif key == b"size":
                    self.size = int(value)
                elif key == b"uid":
                    self.uid = int(value)
                elif key == b"gid":
                    self.gid = int(value)
                elif key == b"mtime":
                    seconds, _, fraction = value.partition(b".")
                    ns = int(seconds) * 1_000_000_000
                    ns += int((fraction + b"000000000")[:9]) * (-1 if ns < 0 else 1)
                    self.mtime_ns = ns
                elif key.startswith(b"SCHILY.xattr."):
                    self.xattrs[key[13:].decode("utf-8", "surrogateescape")] = value
                elif key.startswith(b"GNU.sparse."):
                    self.sparse = True
            except ValueError:
                raise TarError(f"member {self.name!r} has an invalid pax {key!r} record") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    if field[0] & 0x80:  # GNU base-256 (0x80: positive, 0xff: negative)
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarError(f"a tar header has an invalid number {field!r}") from None


def _checksum_ok(block: bytes) -> bool:
    stored = _number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    if stored == unsigned:
        return True
    signed: int = sum(struct.unpack_from("148b8x356b", block)) + 8 * 32  # old tars: signed
    return stored == signed


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    records = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        try:
            space = data.index(b" ", pos)
            length = int(data[pos:space])
        except ValueError:
            raise TarError("a pax header is malformed") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise TarError("a pax header is malformed")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarError("a pax header is malformed")
        records[key] = value
        pos = end
    return records


class TarReader:
    """Members of the tar whose pieces ``piece()`` gives (b"" at the end); each member's
    data is consumed (:meth:`copy_to`) or skipped by the next iteration."""

    def __init__(self, piece: Callable[[], bytes]) -> None:
        self._piece = piece
        self._buf = b""
        self._pos = 0
        self._left = 0  # data of the current member not consumed yet
        self._pad = 0  # and the padding after it
        self.member: Member | None = None

    def _take(self, n: int) -> bytes:
        """Exactly ``n`` bytes (fewer only at the end of the stream)."""
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end
            return data
        parts = [self._buf[self._pos :]]
        got = len(parts[0])
        while got < n:
            piece = self._piece()
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        data = b"".join(parts)
        self._buf, self._pos = data, n
        return data[:n]

    def _skip(self, n: int) -> None:
        if not self._skipped(n):
            raise self._truncated()

    def _skipped(self, n: int) -> bool:
        """Whether ``n`` bytes were there to skip (False: the stream ended first)."""
        while n:
            if self._pos == len(self._buf):
                self._buf, self._pos = self._piece(), 0
                if not self._buf:
                    return False
            k = min(n, len(self._buf) - self._pos)
            self._pos += k
            n -= k
        return True

    def _truncated(self) -> TarError:
        where = f" in member {self.member.name!r}" if self.member is not None else ""
        return TarError(f"the tar ends too early{where}")

    def copy_to(self, fd: int) -> None:
        """Write the current member's data to ``fd``, a new empty file (then its padding is
        skipped).  A piece of zeros is seeked over, not written: the file gets a hole
        there, as ``cp --sparse`` and ``tar -x`` of a sparse member make one, so a large
        sparse file (a disk image, a database's preallocated file), which a layer or a
        ``cp`` tar holds as zeros, does not take its whole size on disk."""
        assert self.member is not None
        size = self.member.size
        hole = False
        while size:
            if self._pos == len(self._buf):
                self._buf, self._pos = self._piece(), 0
                if not self._buf:
                    raise self._truncated()
            k = min(size, len(self._buf) - self._pos)
            end = self._pos + k
            # Most pieces hold data: their first or last byte tells at once.
            hole = k >= _HOLE and self._buf[self._pos] == 0 and self._buf[end - 1] == 0
            hole = hole and self._buf.count(0, self._pos, end) == k
            if hole:
                os.lseek(fd, k, os.SEEK_CUR)
            else:
                with memoryview(self._buf) as view:
                    part = view[self._pos : end]
                    while part:
                        part = part[os.write(fd, part) :]
            self._pos = end
            size -= k
            self._left -= k
        if hole:  # the file ends in one: its size
            os.ftruncate(fd, self.member.size)

    def _meta(self, member: Member) -> bytes:
        if member.size > _MAX_META:
            raise TarError(f"a tar header of {member.size} bytes is too large")
        data = self._take(member.size)
        if len(data) < member.size:
            raise self._truncated()
        self._skip(-member.size % BLOCK)
        return data

    def __iter__(self) -> Iterator[Member]:
        global_pax: dict[bytes, bytes] = {}
        pax: dict[bytes, bytes] = {}
        long_name = long_link = None
        while True:
            if self._left:
                self._skip(self._left)
                self._left = 0
            if self._pad:
                # A stream that ends in the last member's padding ends the archive, as Go's
                # tar reader takes it: the docker CLI sends a context so (`build -f` of a
                # Dockerfile outside it) with neither that padding nor the end blocks.
                if not self._skipped(self._pad):
                    return
                self._pad = 0
            block = self._take(BLOCK)
            if not block:
                return  # a tar cut at a member's end is taken, as Go's reader takes it
            if len(block) < BLOCK:
                raise self._truncated()
            if block == _ZERO_BLOCK:
                # The end: a second zero block, or nothing; part of one is a tar cut
                # short, which Go's reader (dockerd's) refuses too.
                if 0 < len(self._take(BLOCK)) < BLOCK:
                    raise TarError("the tar ends too early, in its end-of-archive blocks")
                return
            if not _checksum_ok(block):
                raise TarError("a tar header has a bad checksum: the layer is damaged")
            member = Member(block)
            if member.type in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                data = self._meta(member)
                if member.type == _PAX:
                    pax.update(_pax_records(data))
                elif member.type == _PAX_GLOBAL:
                    global_pax.update(_pax_records(data))
                elif member.type == _GNU_LONGNAME:
                    long_name = _text(data)
                else:
                    long_link = _text(data)
                continue
            if long_name is not None:
                member.name = long_name
            if long_link is not None:
                member.linkname = long_link
            if global_pax or pax:
                member._pax({**global_pax, **pax})
            pax, long_name, long_link = {}, None, None
            self.member = member
            has_data = member.type not in _NO_DATA  # regular, sparse, and unknown types
            self._left = member.size if has_data else 0
            self._pad = -member.size % BLOCK if has_data else 0
            yield member

    def drain(self) -> None:
        """Read the rest of the stream (after the end of the archive) into the hash."""
        while self._piece():
            pass

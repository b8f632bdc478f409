"""Container logs: a size-rotated writer and a reader with tail, since and follow.

The on-disk format is conmon's k8s-file format, one record per line::

    2024-05-01T12:00:00.123456789Z stdout F hello

The timestamp is RFC 3339 in UTC with nine fractional digits, the stream is ``stdout`` or
``stderr``, and the flag says whether the record ends a line (``F``: the original had a
newline, which is not stored) or is a partial piece (``P``) continued by the next record of
the same stream.  Content is raw bytes; a record never contains a newline because output is
split there, and long lines are cut into pieces of at most :data:`MAX_RECORD_DATA` bytes.

Files live in one directory: ``container.log`` is written, and rotation renames it to
``container.log.1`` (older ones move up, the one past ``max_files - 1`` is dropped).  The
writer takes an exclusive ``flock`` on the directory while it rotates and readers take a
shared one while they open the files, so a reader always sees a consistent set of files.
Readers then keep their file descriptors: a file rotated away (or even dropped) under a
reader is still read to its end.

With ``compress`` (Docker's log option) each file rotated out is then gzipped, in a thread
of Trio's cache, to ``container.log.N.gz``, which takes its place under the lock
(``.N.gz`` files move up as the others do).  Its gzip header names the file it was made
from (device and inode), so a follow that was reading that file knows the compressed one
for it, and the time of its last record, so a read since a later time skips it, as
Docker's reads do; readers decompress as they read (a tail's reach into one, all of it at
once).

Only :func:`batches` and a rotation (which closes the dropped file in a thread of Trio's
cache) need Trio, and import it when called: the output formatting can be used without
paying for Trio.  Sizes (``--log-max-size``) are parsed by
:func:`boxd._units.parse_size`, as every size option is.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import attrs

if TYPE_CHECKING:
    import trio

_T = TypeVar("_T")

LOG_NAME = "container.log"
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3
# --log-driver local's defaults, as Docker's local driver has them.
LOCAL_MAX_SIZE = 20 * 1024 * 1024
LOCAL_MAX_FILES = 5
MAX_RECORD_DATA = 16 * 1024
STREAMS = ("stdout", "stderr")
# The longest record line LogWriter writes, with room for a longer timestamp: anything
# longer is garbage and is skipped by the readers without being held in memory.
_MAX_LINE = MAX_RECORD_DATA + 128

_BLOCK = 64 * 1024
_COPY_BLOCK = 1024 * 1024
_READ = os.O_RDONLY | os.O_CLOEXEC
_IOV_RECORDS = 256  # records per writev: three buffers each, under IOV_MAX (1024)
_POLL_INTERVAL = 0.05
# Seconds of writes going in after the last one refused before a loss of output is over.
_LOSS_SETTLED = 5.0
_ROTATED = re.compile(re.escape(LOG_NAME) + r"\.([1-9][0-9]*)(\.gz)?")
_GZIP = ".gz"
# A compression under way: the temporary file's name, the source's inode after it.
_COMPRESSING = f".{LOG_NAME}{_GZIP}.part-"
# What a compressed file's gzip header names (FNAME): the file it was made from (device,
# inode) and the time of its last record, as Docker's header keeps it, to skip it unread.
_SOURCE = re.compile(re.escape(LOG_NAME).encode() + rb"@([0-9]+):([0-9]+)(?:@([0-9]+))?")
_GZIP_FLAGS, _FEXTRA, _FNAME = 3, 0x04, 0x08  # RFC 1952: the flags byte, two of its bits
_GZIP_BLOCK = 8 * 1024  # compressed bytes a reader takes at a time (~10x that of records)
_TIME = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _check_max_files(value: int) -> None:
    if value < 1:
        raise ValueError(f"invalid log file count {value!r}: must be at least 1")


def to_ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, fixed width: ``2024-05-01T12:00:00.000000001Z``."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


# The second of the last stamp parsed and its nanoseconds since the epoch: a log's records
# come many to a second, and parsing each stamp whole was 70% of reading a log.
_last_second: tuple[bytes, int | None] = (b"", None)


def _parse_time(stamp: bytes) -> int | None:
    """A record's stamp in nanoseconds since the epoch; None if it is not RFC 3339."""
    global _last_second
    # As LogWriter writes them (format_time): the second, a dot, 9 digits and Z.
    if len(stamp) == 30 and stamp[19:20] == b"." and stamp[29:] == b"Z":
        nanos = stamp[20:29]
        if nanos.isdigit():
            second, at = _last_second
            if stamp[:19] != second:
                second = stamp[:19]
                at = _parse_stamp(second + b"Z")
                _last_second = (second, at)
            return None if at is None else at + int(nanos)
    return _parse_stamp(stamp)


def _parse_stamp(stamp: bytes) -> int | None:
    match = _TIME.fullmatch(stamp)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    import calendar  # with datetime, ~0.3 MB the daemon needs only when logs are filtered

    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except ValueError:
        return None
    zone = match[8]
    if zone != b"Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[:1] == b"+" else -offset
    nanos = int(match[7].ljust(9, b"0")) if match[7] else 0
    return seconds * 1_000_000_000 + nanos


@attrs.frozen
class LogEntry:
    """One record.  ``time_ns`` keeps the stored nanoseconds exactly; ``time`` is seconds."""

    time_ns: int
    stream: str
    partial: bool
    data: bytes

    @property
    def time(self) -> float:
        return self.time_ns / 1_000_000_000


def _parse_record(line: bytes) -> LogEntry | None:
    """A record without its newline, or None for a malformed one (a torn write, garbage)."""
    parts = line.split(b" ", 3)
    if len(parts) != 4:
        return None
    stamp, stream, flag, data = parts
    time_ns = _parse_time(stamp)
    if time_ns is None or stream not in (b"stdout", b"stderr") or flag not in (b"P", b"F"):
        return None
    return LogEntry(time_ns, stream.decode(), flag == b"P", data)


def _pieces(data: bytes, start: int = 0, size: int = -1) -> Iterator[tuple[bool, int, int]]:
    """(partial, start, end) of each record that ``data`` (from ``start`` to ``size``, where
    a line ends) becomes: positions, so that the writer hands the kernel slices of ``data``
    rather than copies."""
    size = len(data) if size < 0 else size
    while start < size:
        newline = data.find(b"\n", start, size)
        end = size if newline < 0 else newline
        # A line's last piece (even an empty one) ends it; a piece of a full line of exactly
        # MAX_RECORD_DATA bytes is that last piece, not a partial followed by an empty one.
        while end - start > MAX_RECORD_DATA:
            yield True, start, start + MAX_RECORD_DATA
            start += MAX_RECORD_DATA
        if newline < 0:
            if start < end:
                yield True, start, end
            return
        yield False, start, end
        start = end + 1


Buffers = tuple[bytes | memoryview, ...]


def _records(
    data: bytes, heads: dict[bool, bytes], room: Callable[[], int]
) -> Iterator[tuple[Buffers, int]]:
    """The records ``data`` becomes, as buffers for writev and their length in bytes, under
    ``heads`` (partial or not).  Runs of whole lines of at most MAX_RECORD_DATA bytes each
    become their records in one ``replace``, as many as fit in ``room()`` (what the log
    file takes before it rotates); the record the log rotates before, and the pieces of a
    longer line, come one at a time.  A record made in Python costs ~1 us, and ``yes``
    writes half a million lines a MiB: 0.6 s of the event loop's thread for each MiB, while
    every other container waited."""
    view = memoryview(data)
    line = heads[False]
    position = 0
    while position < len(data):
        # A newline within reach: every line up to it is at most a record long.
        cut = data.rfind(b"\n", position, position + MAX_RECORD_DATA + 1) + 1
        if cut:
            fit = _fitting(data, position, cut, len(line), room())
            if fit > position:
                lines = data[position : fit - 1].replace(b"\n", b"\n" + line)
                yield (line, lines, b"\n"), len(line) + len(lines) + 1
                position = fit
                continue
            stop = data.find(b"\n", position) + 1  # one record, that the log rotates before
        else:  # a line longer than a record, or the unfinished last one
            newline = data.find(b"\n", position)
            stop = len(data) if newline < 0 else newline + 1
        for partial, start, end in _pieces(data, position, stop):
            yield (heads[partial], view[start:end], b"\n"), len(heads[partial]) + end - start + 1
        position = stop


def _fitting(data: bytes, start: int, end: int, head: int, room: int) -> int:
    """Where the longest run of whole lines of ``data`` from ``start`` (to ``end``, a line's
    end) ends whose records, with a head of ``head`` bytes each, take at most ``room``
    bytes; ``start`` if not even the first line's does."""

    def line_end(at: int) -> int:  # the end of the last whole line before ``at``
        return data.rfind(b"\n", start, at) + 1 or start

    def size(stop: int) -> int:
        return stop - start + head * data.count(b"\n", start, stop)

    if size(end) <= room:
        return end
    low, high = start, end  # the run to ``low``'s line end fits, to ``high``'s does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if size(line_end(middle)) <= room else (low, middle)
    return line_end(low)


def _whole_records(buffers: list[bytes | memoryview], written: int) -> int:
    """How many of the first ``written`` bytes of ``buffers`` (records, each ending in a
    newline) make whole records: up to the last newline among them."""
    offset, kept = 0, 0
    for buffer in buffers:
        if offset >= written:
            break
        part = bytes(buffer[: written - offset])
        newline = part.rfind(b"\n")
        if newline >= 0:
            kept = offset + newline + 1
        offset += len(buffer)
    return kept


def _open_dir(directory: Path) -> int:
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class LogWriter:
    """Appends records to ``container.log`` and rotates it by size.

    Every :meth:`write` goes to the kernel at once (``os.write``, no buffering), so the log
    is complete up to the last call even if the daemon dies right after it.

    A write the file system refuses (a full disk, a quota, an I/O error) loses that output
    from the log, not the container: the torn record is cut off, and each later write tries
    again, as Docker's log copier drops what its driver cannot take.  A warning names the
    log and the error at the first loss, and another one the span of output missing once
    writes have gone in for :data:`_LOSS_SETTLED` seconds after the last loss (a disk
    that is full again at every next write gives two lines, not two for each write).
    """

    _FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

    def __init__(
        self, dir_fd: int, max_size: int, max_files: int, where: str = "", compress: bool = False
    ) -> None:
        """Use :meth:`open`."""
        self._dir_fd = dir_fd
        # The rotated files to compress (None: they are kept as they are).
        self._compressions = _Compressions(where) if compress else None
        self._where = where  # the directory, for the warnings and its follows
        # When output began to be lost, and was last lost (0: none is being lost).
        self._lost_first = self._lost_last = 0.0
        self._fd = -1
        self._size = 0
        self._inode = 0
        self._max_size = max_size
        self._max_files = max_files
        # The buffers of the records gathered for the next writev, and their length.
        self._batch: list[bytes | memoryview] = []
        self._pending = 0

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_files: int = DEFAULT_MAX_FILES,
        compress: bool = False,
    ) -> LogWriter:
        """Open (creating it if needed) the log in ``directory`` for appending; with
        ``compress``, the files rotated out are gzipped (and any left uncompressed by a
        daemon that ended first)."""
        if max_size < 1:
            raise ValueError(f"invalid log size {max_size!r}: must be positive")
        _check_max_files(max_files)
        directory.mkdir(parents=True, exist_ok=True)
        writer = cls(_open_dir(directory), max_size, max_files, str(directory), compress)
        try:
            writer._open_file()
        except BaseException:
            writer.close()
            raise
        return writer

    def write(self, stream: str, data: bytes, now: float | None = None) -> None:
        """Log ``data`` read from ``stream`` at ``now`` (seconds since the epoch)."""
        if stream not in STREAMS:
            raise ValueError(f"invalid log stream {stream!r}: expected 'stdout' or 'stderr'")
        if self._dir_fd < 0:
            raise ValueError("write to a closed LogWriter")
        if not data:
            return
        try:
            if self._fd < 0:  # a rotation that could not open the new file
                self._open_file()
            self._write_records(stream, data, now)
        except OSError as exc:
            self._lost(exc)
            return
        if _following:
            wake_followers(self._where)
        if self._lost_first and time.time() - self._lost_last >= _LOSS_SETTLED:
            _warn(
                "%s: the log goes on; output from %s to %s is missing from it",
                self._where,
                format_time(to_ns(self._lost_first)),
                format_time(to_ns(self._lost_last)),
            )
            self._lost_first = self._lost_last = 0.0

    def _lost(self, exc: OSError) -> None:
        self._lost_last = time.time()
        if not self._lost_first:
            self._lost_first = self._lost_last
            _warn(
                "%s: output not logged: %s; dropped while the log cannot be written",
                self._where,
                exc.strerror or exc,
            )

    def _write_records(self, stream: str, data: bytes, now: float | None) -> None:
        time_ns = time.time_ns() if now is None else to_ns(now)
        prefix = f"{format_time(time_ns)} {stream} ".encode()
        heads = {True: prefix + b"P ", False: prefix + b"F "}
        # Written with writev in batches of slices of ``data`` (no copy of a long line in
        # user space) and runs of short lines (one copy), one system call for up to
        # _IOV_RECORDS of them.
        try:
            for buffers, length in _records(data, heads, self._room):
                if self._size + self._pending and self._room() < length:
                    self._flush()
                    self._rotate()
                self._batch += buffers
                self._pending += length
                if len(self._batch) >= 3 * _IOV_RECORDS:
                    self._flush()
            self._flush()
        finally:
            self._batch, self._pending = [], 0  # a refused write's: lost, not written later

    def _room(self) -> int:
        """What the log file takes, after the records gathered, before it rotates."""
        return self._max_size - self._size - self._pending

    def _flush(self) -> None:
        self._write_through(self._batch, self._pending)
        self._batch, self._pending = [], 0

    def position(self) -> tuple[int, int]:
        """Where the next record goes: the current file's inode and size (a write changes
        one or the other, a rotation both)."""
        return self._inode, self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write_through(self, buffers: list[bytes | memoryview], size: int) -> None:
        if not size:
            return
        written = 0
        try:
            written = os.writev(self._fd, buffers)
            if written < size:  # a short write (a full disk, a signal): the rest, one by one
                rest = memoryview(b"".join(buffers))[written:]
                while rest:
                    n = os.write(self._fd, rest)
                    written += n
                    rest = rest[n:]
        except OSError:
            # What of the batch went in ends in a torn record: cut back to the whole ones
            # (a batch is up to a chunk of output, half a MiB: a disk that has room for
            # some of it is filled with those, not left with up to a chunk unused).
            kept = _whole_records(buffers, written)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size + kept)
            self._size += kept
            raise
        self._size += size

    def _open_file(self) -> None:
        uncompressed = []
        fcntl.flock(self._dir_fd, fcntl.LOCK_EX)
        try:
            for name in os.listdir(self._dir_fd):
                match = _ROTATED.fullmatch(name)
                if match is not None and int(match[1]) >= self._max_files:
                    # A smaller max_files than last time: drop the files now out of range.
                    os.unlink(name, dir_fd=self._dir_fd)
                elif match is not None and not match[2] and self._compressions is not None:
                    uncompressed.append(os.open(name, _READ, dir_fd=self._dir_fd))
                elif name.startswith(_COMPRESSING):
                    _drop_abandoned(self._dir_fd, name)
            self._fd = os.open(LOG_NAME, self._FLAGS, 0o640, dir_fd=self._dir_fd)
        finally:
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
        if self._compressions is not None:  # a daemon's that ended before it compressed them
            for fd in uncompressed:
                self._compressions.add(self._dir_fd, fd)
        st = os.fstat(self._fd)
        self._size, self._inode = st.st_size, st.st_ino
        if self._size:
            self._drop_torn_record()

    def _drop_torn_record(self) -> None:
        """A daemon killed mid-write left a torn record at the end: cut it off (with live
        restore its bytes are still in the pipe and come again whole, see _ledger; without,
        the container ended with that daemon and a piece of a line is all there was)."""
        reach = min(self._size, _MAX_LINE + 1)
        tail = os.pread(self._fd, reach, self._size - reach)
        end = tail.rfind(b"\n") + 1
        if end == len(tail):
            return
        if end or reach == self._size:
            self._size -= len(tail) - end
            os.ftruncate(self._fd, self._size)
        else:  # no record of ours, garbage longer than any: ended, kept as one bad line
            self._write_through([b"\n"], 1)

    def written_since(self, inode: int, size: int, stream: str) -> bytes | None:
        """The output of ``stream`` logged since the log was at ``size`` in the file
        ``inode`` (see position), as it was read; None if that file is gone (rotated out)."""
        files = _snapshot(self._dir_fd, blocking=True) or []
        try:
            at = _last_of([file.ident[1] for file in files], inode)
            if at is None:
                return None
            since = _forward(files[at:], None, size)
            return b"".join(map(OutputFormatter().format, (e for e in since if e.stream == stream)))
        finally:
            for file in files:
                os.close(file.fd)

    def _rotate(self) -> None:
        # The file the rotation drops (the oldest; the current one when only one is kept)
        # is held open until it has left the directory, and its last close, which frees its
        # pages and blocks, is made in a worker thread: on ext4 mounted with ``discard``
        # freeing 10 MiB waits for the disk, ~10 ms measured, which a rename over the
        # oldest file made the event loop's thread wait every 10 MiB of a chatty
        # container's output.  It leaves by an unlink, so that no rename replaces a file:
        # ext4 (auto_da_alloc, its default) writes a file renamed over another one back to
        # disk at once, in the renaming thread, and so wrote every rotated 10 MiB of a log
        # that the rotations after it delete (see bench/README).
        # Compressed, the file rotated out is closed by its compression.
        _hold_for_followers(self._where)
        fcntl.flock(self._dir_fd, fcntl.LOCK_EX)
        rotated, held = self._fd, []
        self._fd = -1
        try:
            if self._max_files == 1:
                os.unlink(LOG_NAME, dir_fd=self._dir_fd)
            else:
                oldest = f"{LOG_NAME}.{self._max_files - 1}"
                for name in (oldest, oldest + _GZIP):
                    with contextlib.suppress(FileNotFoundError):
                        held.append(os.open(name, _READ, dir_fd=self._dir_fd))
                        os.unlink(name, dir_fd=self._dir_fd)
            for index in range(self._max_files - 1, 0, -1):
                source = LOG_NAME if index == 1 else f"{LOG_NAME}.{index - 1}"
                for suffix in ("", _GZIP) if index > 1 else ("",):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(
                            source + suffix,
                            f"{LOG_NAME}.{index}{suffix}",
                            src_dir_fd=self._dir_fd,
                            dst_dir_fd=self._dir_fd,
                        )
            self._fd = os.open(LOG_NAME, self._FLAGS, 0o640, dir_fd=self._dir_fd)
            # A new inode: the one dropped is still held open, so never the same number.
            self._size, self._inode = 0, os.fstat(self._fd).st_ino
        finally:
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            if self._compressions is None or self._max_files == 1:
                held.append(rotated)
            else:
                self._compressions.add(self._dir_fd, rotated)
            _close_in_thread(held)


def _warn(message: str, *args: object) -> None:
    import logging  # here: the CLI formats logs with this module and never warns

    logging.getLogger("boxd.logs").warning(message, *args)


class _Compressions:
    """The files rotated out of one log, gzipped in turn by one thread of Trio's cache at a
    time (a chatty container's rotations wait for none: a file rotated out of the log
    before its turn is skipped)."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, int]] = []  # (the log's directory, the file), owned
        self._running = False

    def add(self, dir_fd: int, fd: int) -> None:
        """Compress the log file ``fd`` of the directory ``dir_fd`` (``fd`` is taken: closed
        at once if it cannot be, left uncompressed for the log's next opening)."""
        from trio.lowlevel import start_thread_soon

        # The directory opened anew, not dup()ed: flock() locks are an open file's, and the
        # writer's rotations must wait for a compression's renames.
        try:
            own = os.open(".", _READ | os.O_DIRECTORY, dir_fd=dir_fd)
        except OSError as exc:
            os.close(fd)
            _warn("%s: a rotated log file was not compressed: %s", self._where, exc)
            return
        with self._lock:
            self._waiting.append((own, fd))
            if self._running:
                return
            self._running = True
        start_thread_soon(self._run, lambda result: None)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._running = False
                    return
                dir_fd, fd = self._waiting.pop(0)
            try:
                _compress(dir_fd, fd)
            except OSError as exc:
                if os.fstat(fd).st_nlink:  # (else rotated out, or its container removed)
                    _warn("%s: a rotated log file was not compressed: %s", self._where, exc)
            finally:
                os.close(fd)
                os.close(dir_fd)


def _compress(dir_fd: int, fd: int) -> None:
    """Gzip the rotated log file ``fd`` beside it and put that under the name the file has
    then with .gz (rotations may have moved it meanwhile) in its place; nothing if it has
    left the directory."""
    import gzip

    st = os.fstat(fd)
    if not st.st_nlink:
        return  # rotated out (or its container removed) before its turn
    last = _last_time(fd, st.st_size)
    source = f"{LOG_NAME}@{st.st_dev}:{st.st_ino}" + ("" if last is None else f"@{last}")
    part = f"{_COMPRESSING}{st.st_ino}"
    out = _new_part(dir_fd, part)
    if out is None:
        return  # another writer's compression of it (the container's run before) is under way
    try:
        with (
            open(out, "wb", closefd=False) as raw,
            gzip.GzipFile(source, "wb", 6, raw, st.st_mtime) as gz,
        ):
            pos = 0
            while chunk := os.pread(fd, _COPY_BLOCK, pos):
                gz.write(chunk)
                pos += len(chunk)
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        try:
            name = next((n for n in os.listdir(dir_fd) if _is_file(dir_fd, n, st)), None)
            if name is None:
                os.unlink(part, dir_fd=dir_fd)
                return
            os.rename(part, name + _GZIP, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.unlink(name, dir_fd=dir_fd)
        finally:
            fcntl.flock(dir_fd, fcntl.LOCK_UN)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part, dir_fd=dir_fd)
        raise
    finally:
        os.close(out)


def _last_time(fd: int, size: int) -> int | None:
    """The time of the last whole record of the log file ``fd`` of ``size`` bytes."""
    reach = min(size, _MAX_LINE + 1)
    lines = os.pread(fd, reach, size - reach).split(b"\n")[:-1]  # after the last: unended
    for raw in reversed(lines[1:] if reach < size else lines):  # the first may be cut
        entry = _parse_record(raw)
        if entry is not None:
            return entry.time_ns
    return None


def _is_file(dir_fd: int, name: str, st: os.stat_result) -> bool:
    """Whether ``name`` is an uncompressed rotated log file, the file ``st`` is of."""
    match = _ROTATED.fullmatch(name)
    if match is None or match[2]:
        return False
    try:
        return _ident(os.stat(name, dir_fd=dir_fd, follow_symlinks=False)) == _ident(st)
    except FileNotFoundError:
        return False


def _new_part(dir_fd: int, part: str) -> int | None:
    """The part file ``part`` made and locked (its compression's while it runs: see
    _drop_abandoned), under the directory's lock, which a writer opening the log holds as
    it drops abandoned ones; None if a compression under way has it."""
    fcntl.flock(dir_fd, fcntl.LOCK_EX)
    try:
        _drop_abandoned(dir_fd, part)
        try:
            out = os.open(
                part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640, dir_fd=dir_fd
            )
        except FileExistsError:
            return None
        fcntl.flock(out, fcntl.LOCK_EX)
        return out
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)


def _drop_abandoned(dir_fd: int, name: str) -> None:
    """Remove a compression's part file unless a compression holds it (its lock); with the
    directory's lock held."""
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # under way (the writer before this one's, of the same container)
    else:
        os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(fd)


def _close_in_thread(fds: list[int]) -> None:
    """Close ``fds`` in a thread of Trio's cache (no Trio run is needed for it)."""
    from trio.lowlevel import start_thread_soon

    def close_all() -> None:
        for fd in fds:
            os.close(fd)

    start_thread_soon(close_all, lambda result: None)


class _LogFile:
    """A log file opened by a snapshot: its descriptor, whether it is gzipped, the
    identity of the file it holds the records of (a compressed one's source's) and, for a
    compressed one, the time of its last record if its header says it."""

    __slots__ = ("compressed", "fd", "ident", "last_ns")

    def __init__(self, fd: int, compressed: bool) -> None:
        self.fd = fd
        self.compressed = compressed
        self.last_ns: int | None = None
        if compressed:
            self.ident, self.last_ns = _source(fd)
        else:
            self.ident = _ident(os.fstat(fd))


def _snapshot(dir_fd: int, *, blocking: bool) -> list[_LogFile] | None:
    """Open the log files, oldest first, under the shared lock; None if the lock is busy."""
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_SH | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return None
    files: list[_LogFile] = []
    try:
        rotated = (_ROTATED.fullmatch(name) for name in os.listdir(dir_fd))
        names = sorted(((int(m[1]), m[0]) for m in rotated if m), reverse=True)
        for name in [name for _, name in names] + [LOG_NAME]:
            try:
                fd = os.open(name, _READ, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            try:
                files.append(_LogFile(fd, name.endswith(_GZIP)))
            except BaseException:
                os.close(fd)
                raise
    except BaseException:
        for file in files:
            os.close(file.fd)
        raise
    finally:
        fcntl.flock(dir_fd, fcntl.LOCK_UN)
    return files


def _ident(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _source(fd: int) -> tuple[tuple[int, int], int | None]:
    """The identity of the file the compressed log file ``fd`` was made from and the time
    of its last record, as its gzip header names them (the compressed file's own identity
    and None if it names none of ours)."""
    head = os.pread(fd, 256, 0)
    if len(head) > 10 and head[:3] == b"\x1f\x8b\x08":
        flags = head[_GZIP_FLAGS]
        name, nul, _ = head[10:].partition(b"\0")
        match = _SOURCE.fullmatch(name)
        if flags & _FNAME and not flags & _FEXTRA and nul and match is not None:
            return (int(match[1]), int(match[2])), None if match[3] is None else int(match[3])
    return _ident(os.fstat(fd)), None


def _last_of(idents: list[_T], ident: _T) -> int | None:
    """Where ``ident`` is last in ``idents``, or None.  The last: a compressed file names
    the inode its source had, which the file system may have given a newer file since
    (the source gone), and a file still open (a follow's, the writer's) has no other."""
    for at in range(len(idents) - 1, -1, -1):
        if idents[at] == ident:
            return at
    return None


def _since(files: list[_LogFile], since_ns: int | None) -> list[_LogFile]:
    """The ``files`` (oldest first) but the compressed ones that end before ``since_ns``
    (closed), as Docker skips them; never the last."""
    ended = [
        f
        for f in files[:-1]
        if since_ns is not None and f.last_ns is not None and f.last_ns < since_ns
    ]
    for file in ended:
        os.close(file.fd)
    return [file for file in files if file not in ended]


def _inflated(fd: int) -> bytes:
    """All the records of the compressed log file ``fd`` (those before any damage)."""
    inflate = zlib.decompressobj(wbits=31)
    pieces, pos = [], 0
    while chunk := os.pread(fd, _COPY_BLOCK, pos):
        pos += len(chunk)
        try:
            pieces.append(inflate.decompress(chunk))
        except zlib.error:
            break
    return b"".join(pieces)


class _Cursor:
    """Reads one log file forward from ``pos``, in chunks of complete records.

    A line longer than any record can be (garbage, not written by :class:`LogWriter`) is
    skipped without being held in memory, so reading stays linear in the file size.  A
    compressed file is decompressed as it is read (``pos`` counts its records' bytes).
    """

    def __init__(self, file: _LogFile, pos: int = 0, end: int | None = None) -> None:
        self.file = file
        self.fd = file.fd
        self.pos = pos
        self.end = end  # where reading stops (None: the file's end, as it grows)
        self.ident = file.ident
        self._pending = b""
        self._skipping = False
        # Compressed: the decompressor, how far into the file it has read, what it gave.
        self._inflate = zlib.decompressobj(wbits=31) if file.compressed else None
        self._taken = self._given = 0

    def _inflated_chunk(self) -> bytes:
        """The compressed file's next records from ``pos`` (empty at its end); what it
        gave so far ends at ``pos`` or before."""
        assert self._inflate is not None
        while True:
            chunk = os.pread(self.fd, _GZIP_BLOCK, self._taken)
            if not chunk:
                return b""
            self._taken += len(chunk)
            try:
                data = self._inflate.decompress(chunk)
            except zlib.error:  # damaged: what came before it is all there is
                self._taken = os.fstat(self.fd).st_size
                return b""
            self._given += len(data)
            if self._given > self.pos:
                return data[len(data) - (self._given - self.pos) :]

    def read_lines(self) -> list[bytes] | None:
        """The complete records of the next chunk (maybe none), or None at end of file."""
        if self.end is not None and self.pos >= self.end:
            return None
        if self._inflate is not None:
            chunk = self._inflated_chunk()
        else:
            size = _BLOCK if self.end is None else min(_BLOCK, self.end - self.pos)
            chunk = os.pread(self.fd, size, self.pos)
        if not chunk:
            if self._inflate is None and os.fstat(self.fd).st_size < self.pos:
                # Truncated in place (copytruncate): start over from the beginning.
                self.pos, self._pending, self._skipping = 0, b"", False
                return []
            return None
        self.pos += len(chunk)
        complete, newline, rest = chunk.rpartition(b"\n")
        lines: list[bytes] = []
        if newline:
            lines = (self._pending + complete).split(b"\n")
            if self._skipping:
                del lines[0]
                self._skipping = False
            self._pending = rest
        elif not self._skipping:
            self._pending += rest
        if len(self._pending) > _MAX_LINE:
            self._pending, self._skipping = b"", True
        return lines

    def close(self) -> None:
        os.close(self.fd)


class _BackwardLines:
    """The complete records of a file, newest first, read in blocks from the end.

    Constructing it finds the last newline: ``end`` is the offset just after it (0 if there
    is none); anything after it is a record still being written, or torn by a crash.  Lines
    longer than any record can be are skipped without being held in memory.
    """

    def __init__(self, file: _LogFile) -> None:
        self._fd = file.fd
        # A compressed file's records, all of them (its end cannot be read first).
        self._records = _inflated(file.fd) if file.compressed else None
        self._pos = os.fstat(file.fd).st_size if self._records is None else len(self._records)
        self._head = b""
        self.end = 0
        while self._pos > 0:
            block = self._read_block()
            index = block.rfind(b"\n")
            if index >= 0:
                self.end = self._pos + index + 1
                self._head = block[:index]
                break

    def _read_block(self) -> bytes:
        size = min(_BLOCK, self._pos)
        self._pos -= size
        if self._records is not None:
            return self._records[self._pos : self._pos + size]
        return os.pread(self._fd, size, self._pos)

    def __iter__(self) -> Iterator[bytes]:
        if not self.end:
            return
        carry = self._head
        skip_last = False  # the last piece is the start of an over-long line
        while True:
            lines = carry.split(b"\n")
            if skip_last:
                lines.pop()
                skip_last = not lines
            carry = b""
            if self._pos > 0 and lines:
                # The first piece may continue before the blocks read so far.
                carry = lines.pop(0)
            yield from reversed(lines)
            if self._pos == 0:
                return
            if len(carry) > _MAX_LINE:
                carry, skip_last = b"", True
            carry = self._read_block() + carry


def _tail(files: list[_LogFile], lines: int, since_ns: int | None) -> tuple[list[LogEntry], int]:
    """The last ``lines`` lines of the files (oldest first) and the end of the last file.

    A line is a chain of P records of one stream and the F record that ends it (or a chain
    with no F yet at the very end).  Records of the two streams interleave, so the walk
    back goes on, after the count is reached, until every stream included so far has met
    the F record that ends its previous line.
    """
    newest = _BackwardLines(files[-1])
    readers = itertools.chain([newest], (_BackwardLines(f) for f in reversed(files[:-1])))
    picked: list[LogEntry] = []
    count = 0
    seen: set[str] = set()
    closed: set[str] = set()
    for raw in itertools.chain.from_iterable(readers):
        if seen <= closed and count == lines:
            break
        entry = _parse_record(raw)
        if entry is None or entry.stream in closed:
            continue
        if since_ns is not None and entry.time_ns < since_ns:
            break
        if not entry.partial or entry.stream not in seen:
            if count == lines:
                closed.add(entry.stream)
                continue
            count += 1
        seen.add(entry.stream)
        picked.append(entry)
    picked.reverse()
    return picked, newest.end


def _parse_lines(lines: Iterable[bytes], since_ns: int | None) -> Iterator[LogEntry]:
    for raw in lines:
        entry = _parse_record(raw)
        if entry is not None and (since_ns is None or entry.time_ns >= since_ns):
            yield entry


def _check_tail(tail: int | None) -> None:
    if tail is not None and tail < 0:
        raise ValueError(f"invalid tail {tail!r}: must be zero or more")


def read_entries(
    directory: Path, *, since: float | None = None, tail: int | None = None
) -> list[LogEntry]:
    """The log's records, oldest first: those at or after ``since``, the last ``tail`` lines.

    With ``tail`` the files are read backwards from the end, only as far as needed.
    """
    _check_tail(tail)
    since_ns = None if since is None else to_ns(since)
    try:
        dir_fd = _open_dir(directory)
    except FileNotFoundError:  # a container never started has no log yet
        return []
    try:
        files = _snapshot(dir_fd, blocking=True) or []
    finally:
        os.close(dir_fd)
    try:
        if not files:
            return []
        if tail is not None:
            return _tail(files, tail, since_ns)[0]
        files = _since(files, since_ns)
        return list(_forward(files, since_ns))
    finally:
        for file in files:
            os.close(file.fd)


def _forward(files: list[_LogFile], since_ns: int | None, start: int = 0) -> Iterator[LogEntry]:
    """The records of the ``files`` (oldest first) in order, the first read from offset
    ``start``."""
    for index, file in enumerate(files):
        cursor = _Cursor(file, start if index == 0 else 0)
        while (lines := cursor.read_lines()) is not None:
            yield from _parse_lines(lines, since_ns)


async def _snapshot_async(dir_fd: int) -> list[_LogFile]:
    import trio

    # The writer holds the lock only while it renames files: poll rather than block the
    # event loop (a stopped writer process would otherwise hang it).
    while True:
        files = _snapshot(dir_fd, blocking=False)
        if files is not None:
            return files
        await trio.sleep(_POLL_INTERVAL)


async def _newer_files(dir_fd: int, current: _Cursor | None) -> list[_Cursor]:
    """The files written after ``current`` if the log was rotated since it was opened."""
    try:
        ident: tuple[int, int] | None = _ident(os.stat(LOG_NAME, dir_fd=dir_fd))
    except FileNotFoundError:
        ident = None
    if ident is None and current is None:
        return []
    if current is not None and ident == current.ident:
        return []
    return _after(await _snapshot_async(dir_fd), current)


def _after(files: list[_LogFile], current: _Cursor | None) -> list[_Cursor]:
    """Cursors of the ``files`` of a snapshot (oldest first) newer than ``current``; the
    others closed."""
    at = None if current is None else _last_of([file.ident for file in files], current.ident)
    # Not found: ``current`` was dropped by rotation, so every file left is newer.
    start = 0 if at is None else at + 1
    for file in files[:start]:
        os.close(file.fd)
    return [_Cursor(file) for file in files[start:]]


@attrs.define(eq=False)
class _Follow:
    """A follow of a log under way (:func:`batches`): its directory and the files it will
    read, in order."""

    dir_fd: int
    queue: list[_Cursor]
    thread: int = attrs.field(factory=threading.get_ident)  # whose event loop runs it
    # Set by a write to the log or a change of its container's phase in that thread (see
    # wake_followers): the follow reads at once what came since it made this event, rather
    # than at its next poll.
    woken: trio.Event | None = None

    def open_unreached(self) -> None:
        """Open the files of the log it has not reached yet (the lock must be free)."""
        files = _snapshot(self.dir_fd, blocking=True)
        assert files is not None
        self.queue.extend(_after(files, self.queue[-1] if self.queue else None))


# The follows under way of each log directory (by path).
_following: dict[str, set[_Follow]] = {}

# What a follow may have left to read in the files it holds for a rotation to open the
# newer files it has not reached for it: a client that stopped reading holds no more
# disk than this (and the log) in files the rotations dropped.
_HELD_FOR_A_FOLLOW = 64 * 1024 * 1024


def followed() -> bool:
    """Whether any log is being followed."""
    return bool(_following)


def wake_followers(directory: str) -> None:
    """Wake the follows of the log ``directory`` that run in this thread: it was written
    to, or its container's phase changed (a follow ends once it has ended).  Follows in
    other threads (another event loop's) see it at their next poll, every 50 ms."""
    for follow in _following.get(directory, ()):
        if follow.woken is not None and follow.thread == threading.get_ident():
            follow.woken.set()


def keep_for_followers(directory: Path) -> None:
    """Before the log ``directory`` goes (its container removed): each follow of it opens
    the files it has not reached yet, so that it reads them to their end however late its
    client reads (``docker run --rm``'s, docker-py's ``run(remove=True)``: they lost what
    rotated after the file they were reading)."""
    for follow in _following.get(str(directory), ()):
        follow.open_unreached()  # its writer closed: the lock is free


def _hold_for_followers(directory: str) -> None:
    """Before a rotation (the lock free): each follow of the log in this thread opens the
    files it has not reached yet, so that none is dropped before it reads it (a follow
    looks for newer files every 50 ms, and a burst of output through a small max-size
    rotated several files out meanwhile: ``docker logs -f`` got 93 of 300 lines), unless
    it has _HELD_FOR_A_FOLLOW bytes or more left to read.  Another thread's follows (not
    the daemon's: its writers and follows share the event loop's) are left alone."""
    for follow in _following.get(directory, ()):
        if follow.thread != threading.get_ident():
            continue
        unread = sum(os.fstat(cursor.fd).st_size - cursor.pos for cursor in follow.queue)
        if unread < _HELD_FOR_A_FOLLOW:
            follow.open_unreached()


async def batches(
    directory: Path,
    *,
    since_ns: int | None = None,
    tail: int | None = None,
    until_ns: int | None = None,
    until_closed: Callable[[], bool] | trio.Event | None = None,
) -> AsyncIterator[list[LogEntry]]:
    """The log's records as :func:`read_entries` gives them, a block's at a time (never
    the whole log in memory: a chatty container's is gigabytes); with ``until_closed``
    then new ones as they come: from ``since_ns`` (nanoseconds since the epoch, exactly:
    a time copied from ``logs -t`` names its own line, which a float of seconds, good to
    ~256 ns, missed); with ``until_ns`` they end before the first record stamped after it.

    Reads what the log holds when called and ends, or with ``until_closed`` follows it
    across rotations (the file being read is finished through its own descriptor, then the
    newer ones are read in order) and ends once ``until_closed`` says the container has
    ended (an event that is set, or a callable that returns True) and everything written
    before that has been yielded.  Woken by the writes and the container's end in this
    thread (:func:`wake_followers`), and polls every 50 ms for the others.
    """
    import trio

    if until_closed is None:
        ended: Callable[[], bool] = lambda: True  # noqa: E731
    else:
        ended = until_closed if callable(until_closed) else until_closed.is_set
    _check_tail(tail)
    try:
        dir_fd = _open_dir(directory)
    except FileNotFoundError:  # a container never started: nothing, as from Docker
        return
    queue: list[_Cursor] = []
    follow = until_closed is not None
    this = _Follow(dir_fd, queue)
    if follow:
        _following.setdefault(str(directory), set()).add(this)
    try:
        # Without following, what the files hold now, as Docker reads them: a chatty
        # container wrote faster than a client read, and `docker logs` never ended.
        files = await _snapshot_async(dir_fd)
        queue.extend(
            _Cursor(file, end=None if follow or file.compressed else os.fstat(file.fd).st_size)
            for file in (files if tail is not None else _since(files, since_ns))
        )
        if tail is not None and queue:
            files = [cursor.file for cursor in queue]
            if any(file.compressed for file in files):  # decompressed at once: not here
                entries, end = await trio.to_thread.run_sync(_tail, files, tail, since_ns)
            else:
                entries, end = _tail(files, tail, since_ns)
            queue[-1].pos = end
            while len(queue) > 1:
                queue.pop(0).close()
            kept = _before(entries, until_ns)
            if kept:
                yield kept
            if len(kept) < len(entries):
                return
        while True:
            # The event first: what is written from here on ends the wait below at once.
            this.woken = trio.Event()
            # Then the flag: whatever was written before it was set is read below.
            finished = ended()
            while queue:
                while (lines := queue[0].read_lines()) is not None:
                    batch = list(_parse_lines(lines, since_ns))
                    kept = _before(batch, until_ns)
                    if kept:
                        yield kept
                    if len(kept) < len(batch):
                        return
                    await trio.lowlevel.checkpoint()
                if len(queue) == 1:
                    break
                queue.pop(0).close()
            if not follow:
                return
            newer = await _newer_files(dir_fd, queue[-1] if queue else None)
            # A removal meanwhile may have queued them already (keep_for_followers).
            held = {cursor.ident for cursor in queue}
            for cursor in [cursor for cursor in newer if cursor.ident in held]:
                cursor.close()
            newer = [cursor for cursor in newer if cursor.ident not in held]
            if newer:
                queue.extend(newer)
                continue
            if finished:
                return
            with trio.move_on_after(_POLL_INTERVAL):
                await this.woken.wait()
    finally:
        if follow:
            followers = _following[str(directory)]
            followers.discard(this)
            if not followers:
                del _following[str(directory)]
        for cursor in queue:
            cursor.close()
        os.close(dir_fd)


def _before(entries: list[LogEntry], until_ns: int | None) -> list[LogEntry]:
    """The records up to the first stamped after ``until_ns`` (all of them with None)."""
    if until_ns is None:
        return entries
    return list(itertools.takewhile(lambda entry: entry.time_ns <= until_ns, entries))


class OutputFormatter:
    """Turns records back into output, remembering per stream whether a line is open.

    F records get their newline back; P pieces are emitted as they are, so a line joins up
    on the terminal.  With ``timestamps`` every line starts with the time of its first
    piece and a space, as ``docker logs -t`` prints it.
    """

    def __init__(self, *, timestamps: bool = False, details: bytes = b"") -> None:
        self._timestamps = timestamps
        # docker logs --details: each line after the container's log attributes and a
        # space (see _logattrs.details); empty without --details.
        self._details = details
        self._line_open = dict.fromkeys(STREAMS, False)

    def format(self, entry: LogEntry) -> bytes:
        prefix = b""
        if not self._line_open[entry.stream]:
            if self._timestamps:
                prefix = format_time(entry.time_ns).encode() + b" "
            prefix += self._details
        self._line_open[entry.stream] = entry.partial
        return prefix + entry.data + (b"" if entry.partial else b"\n")

    def records(self, entries: Iterable[LogEntry]) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) for each record: Docker's API frames each log message on its
        own, and docker-py's ``logs(stream=True)`` yields one frame an item, so a client
        iterating it gets a line at a time."""
        for entry in entries:
            yield entry.stream, self.format(entry)

    def chunks(self, entries: Iterable[LogEntry]) -> Iterator[tuple[str, bytes]]:
        """(stream, bytes) in the logged order, consecutive records of a stream merged:
        one frame, one write, for a run of lines rather than one each."""
        for stream, group in itertools.groupby(entries, key=lambda entry: entry.stream):
            yield stream, b"".join(map(self.format, group))


def iter_output(
    entries: Iterable[LogEntry], *, timestamps: bool = False
) -> Iterator[tuple[str, bytes]]:
    """(stream, bytes) chunks in the logged order, consecutive chunks of a stream merged."""
    return OutputFormatter(timestamps=timestamps).chunks(entries)


def format_entries(entries: Iterable[LogEntry], *, timestamps: bool = False) -> bytes:
    """What ``boxctl logs`` prints: both streams together, in the logged order."""
    return b"".join(chunk for _, chunk in iter_output(entries, timestamps=timestamps))

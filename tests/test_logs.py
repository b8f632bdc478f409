"""Container logs: the k8s-file writer, rotation, tail/since and follow."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import itertools
import os
import resource
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import boxd._logs as logs_module
from boxd._logs import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_SIZE,
    LOG_NAME,
    MAX_RECORD_DATA,
    LogEntry,
    LogWriter,
    OutputFormatter,
    batches,
    format_entries,
    format_time,
    iter_output,
    keep_for_followers,
    read_entries,
    wake_followers,
)
from boxd._units import parse_size


def raw_records(directory: Path, name: str = LOG_NAME) -> list[bytes]:
    return (directory / name).read_bytes().split(b"\n")[:-1]


def log_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(LOG_NAME))


def datas(entries: list[LogEntry]) -> list[bytes]:
    return [entry.data for entry in entries]


def write_lines(writer: LogWriter, count: int, start: int = 0) -> list[bytes]:
    lines = [b"line %04d" % i for i in range(start, start + count)]
    for line in lines:
        writer.write("stdout", line + b"\n")
    return lines


def test_record_format(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"hello world\npart", now=1714564800.5)
        writer.write("stderr", b"oops\n", now=1714564801)
    assert raw_records(tmp_path) == [
        b"2024-05-01T12:00:00.500000000Z stdout F hello world",
        b"2024-05-01T12:00:00.500000000Z stdout P part",
        b"2024-05-01T12:00:01.000000000Z stderr F oops",
    ]
    entries = read_entries(tmp_path)
    assert entries[0] == LogEntry(1714564800_500000000, "stdout", False, b"hello world")
    assert entries[0].time == 1714564800.5
    assert format_time(entries[2].time_ns) == "2024-05-01T12:00:01.000000000Z"


def test_round_trip_binary(tmp_path: Path) -> None:
    chunks = [bytes(range(256)), b"\r\n", b"\n", b"\n\n", b"a\rb", b"\x00\xff", b"\n", b"end"]
    with LogWriter.open(tmp_path) as writer:
        for chunk in chunks:
            writer.write("stdout", chunk)
    assert format_entries(read_entries(tmp_path), timestamps=False) == b"".join(chunks)
    assert all(b"\n" not in entry.data for entry in read_entries(tmp_path))


def test_partial_lines_are_written_at_once_and_joined(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"Password: ", now=10)
        # The prompt is on disk before any newline comes.
        assert read_entries(tmp_path) == [LogEntry(10_000_000_000, "stdout", True, b"Password: ")]
        writer.write("stdout", b"ok\nnext", now=11)
        writer.write("stdout", b" line\n", now=12)
    entries = read_entries(tmp_path)
    assert [(e.partial, e.data) for e in entries] == [
        (True, b"Password: "),
        (False, b"ok"),
        (True, b"next"),
        (False, b" line"),
    ]
    assert format_entries(entries, timestamps=False) == b"Password: ok\nnext line\n"
    # A line's timestamp is that of its first piece.
    assert format_entries(entries, timestamps=True) == (
        b"1970-01-01T00:00:10.000000000Z Password: ok\n1970-01-01T00:00:11.000000000Z next line\n"
    )


def test_megabyte_line(tmp_path: Path) -> None:
    line = b"0123456789abcdef" * 65536
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", line + b"\n")
        writer.write("stderr", line)
    entries = read_entries(tmp_path)
    out = [e for e in entries if e.stream == "stdout"]
    err = [e for e in entries if e.stream == "stderr"]
    assert len(out) == len(err) == 64
    assert all(len(e.data) == MAX_RECORD_DATA for e in entries)
    assert [e.partial for e in out] == [True] * 63 + [False]
    assert all(e.partial for e in err)
    assert dict(iter_output(entries)) == {"stdout": line + b"\n", "stderr": line}


def test_line_of_exactly_one_record_and_one_more_byte(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"x" * MAX_RECORD_DATA + b"\n")
        writer.write("stdout", b"y" * (MAX_RECORD_DATA + 1) + b"\n")
    entries = read_entries(tmp_path)
    assert [(e.partial, len(e.data)) for e in entries] == [
        (False, MAX_RECORD_DATA),
        (True, MAX_RECORD_DATA),
        (False, 1),
    ]


def test_short_lines_are_logged_as_records_of_their_own_across_rotations(
    tmp_path: Path,
) -> None:
    """A chunk of many short lines (``yes``), empty ones, lines of a record and longer, and
    an unfinished last one: each line its record (or pieces), every file cut before the
    record that would take it past its size, and the output read back byte for byte."""
    chunk = b"y\n" * 5000 + b"\n\n" + b"x" * (MAX_RECORD_DATA + 5) + b"\n" + b"z" * 300
    chunk += b"\n" + b"w" * MAX_RECORD_DATA + b"\nend"
    max_size = 4000
    with LogWriter.open(tmp_path, max_size=max_size, max_files=100) as writer:
        writer.write("stdout", chunk, now=1)
        writer.write("stdout", b"\n" + b"q\n" * 3000, now=2)
    names = sorted(log_files(tmp_path), key=lambda name: -int(name.removeprefix(LOG_NAME)[1:] or 0))
    records = [raw_records(tmp_path, name) for name in names]
    for mine, after in itertools.pairwise(records):
        size = sum(len(record) + 1 for record in mine)
        assert size <= max_size or len(mine) == 1
        assert size + len(after[0]) + 1 > max_size
    entries = read_entries(tmp_path)
    assert sum(map(len, records)) == len(entries) == 5000 + 2 + 2 + 1 + 1 + 1 + 1 + 3000
    assert dict(iter_output(entries)) == {"stdout": chunk + b"\n" + b"q\n" * 3000}


def test_a_megabyte_of_short_lines_is_logged_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``yes`` writes half a million lines a MiB, which a record made in Python each took
    0.6 s to log, on the event loop's thread: every other container waited.  A run of
    short lines is made in one replace now: a few writevs (the 20 MB of records rotate the
    log twice), where there were 2,048 of 768 buffers (a record's head, line and newline
    each)."""
    writes: list[int] = []
    writev = os.writev

    def counted(fd: int, buffers: Any) -> int:
        writes.append(len(buffers))
        return writev(fd, buffers)

    monkeypatch.setattr("boxd._logs.os.writev", counted)
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"y\n" * (1 << 19))
    assert len(writes) <= 3 and sum(writes) < 300
    assert len(read_entries(tmp_path)) == 1 << 19


def test_interleaved_streams_keep_order(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"progress 1", now=1)
        writer.write("stderr", b"warning\n", now=2)
        writer.write("stdout", b"0%\n", now=3)
        writer.write("stderr", b"err 2\n", now=4)
        writer.write("stdout", b"out 3\nout 4\n", now=5)
    entries = read_entries(tmp_path)
    assert list(iter_output(entries)) == [
        ("stdout", b"progress 1"),
        ("stderr", b"warning\n"),
        ("stdout", b"0%\n"),
        ("stderr", b"err 2\n"),
        ("stdout", b"out 3\nout 4\n"),
    ]
    # The stdout line split by a stderr one is stamped once, at its start.
    assert list(iter_output(entries, timestamps=True)) == [
        ("stdout", b"1970-01-01T00:00:01.000000000Z progress 1"),
        ("stderr", b"1970-01-01T00:00:02.000000000Z warning\n"),
        ("stdout", b"0%\n"),
        ("stderr", b"1970-01-01T00:00:04.000000000Z err 2\n"),
        (
            "stdout",
            b"1970-01-01T00:00:05.000000000Z out 3\n1970-01-01T00:00:05.000000000Z out 4\n",
        ),
    ]


def test_rotation_keeps_max_files_and_newest_data(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=1000, max_files=3) as writer:
        lines = write_lines(writer, 200)
    assert log_files(tmp_path) == [LOG_NAME, LOG_NAME + ".1", LOG_NAME + ".2"]
    for name in log_files(tmp_path):
        assert 0 < (tmp_path / name).stat().st_size <= 1000
    kept = datas(read_entries(tmp_path))
    assert kept == lines[-len(kept) :]
    assert len(kept) > 2 * (1000 // 50)


def test_single_file_rotation(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=300, max_files=1) as writer:
        lines = write_lines(writer, 50)
    assert log_files(tmp_path) == [LOG_NAME]
    kept = datas(read_entries(tmp_path))
    assert kept and kept == lines[-len(kept) :]


@pytest.mark.parametrize("max_files", [1, 3])
def test_a_rotation_frees_the_dropped_file_in_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_files: int
) -> None:
    freed: list[str] = []  # the threads that closed a file no directory holds any more
    real_close = os.close

    def close(fd: int) -> None:
        if os.fstat(fd).st_nlink == 0:
            freed.append(threading.current_thread().name)
        real_close(fd)

    monkeypatch.setattr(os, "close", close)
    with LogWriter.open(tmp_path, max_size=300, max_files=max_files) as writer:
        write_lines(writer, 25 * max_files)  # at least max_files + 1 rotations
        deadline = time.monotonic() + 10
        while len(freed) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(freed) >= 2 and threading.current_thread().name not in freed


@pytest.mark.parametrize("max_files", [1, 2, 3])
def test_a_rotation_renames_onto_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_files: int
) -> None:
    """ext4 writes a file renamed over another one back to disk at once (auto_da_alloc):
    every rotation did so with the last 10 MiB of a chatty container's log."""
    replaced: list[str] = []
    real_rename = os.rename

    def rename(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.stat(dst, dir_fd=dst_dir_fd)
            replaced.append(dst)
        real_rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "rename", rename)
    with LogWriter.open(tmp_path, max_size=300, max_files=max_files) as writer:
        lines = write_lines(writer, 25 * max_files)
    assert replaced == []
    assert len(log_files(tmp_path)) == max_files
    kept = datas(read_entries(tmp_path))
    assert kept and kept == lines[-len(kept) :]


@contextlib.contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """The kernel refuses to grow a file of this process past ``size`` (EFBIG, as a full
    disk refuses with ENOSPC): RLIMIT_FSIZE, with its SIGXFSZ ignored."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_refused_write_loses_output_not_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the file system refuses loses that output, cut back to whole records, with
    one warning; the next writes that fit go in, and once they have for a while a warning
    names the span missing; rotation works on after it (a full disk must not end a
    container's supervision)."""
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    with LogWriter.open(tmp_path, max_size=4000, max_files=2) as writer:
        writer.write("stdout", b"before\n")
        size = (tmp_path / LOG_NAME).stat().st_size
        with files_limited_to(size + 200), caplog.at_level("WARNING", logger="boxd.logs"):
            writer.write("stdout", b"x" * 1000 + b"\n")  # refused midway
            writer.write("stderr", b"y" * 1000 + b"\n")  # refused: no second warning
            assert (tmp_path / LOG_NAME).stat().st_size == size
            writer.write("stdout", b"fits\n")  # in, but the loss is not over yet
            clock[0] += 5
            writer.write("stderr", b"z" * 1000 + b"\n")  # lost again: the same loss
            writer.write("stdout", b"in\n")
            assert len(caplog.records) == 1
            clock[0] += 5
            writer.write("stdout", b"over\n")
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2
        assert str(tmp_path) in warnings[0] and "File too large" in warnings[0]
        assert warnings[1].endswith(
            "the log goes on; output from 1970-01-01T00:16:40.000000000Z to"
            " 1970-01-01T00:16:45.000000000Z is missing from it"
        )
        assert datas(read_entries(tmp_path)) == [b"before", b"fits", b"in", b"over"]
        lines = write_lines(writer, 200)  # rotations (4000 bytes a file)
    assert len(log_files(tmp_path)) == 2
    kept = datas(read_entries(tmp_path))
    assert kept == lines[-len(kept) :]


def test_a_refused_batch_keeps_the_whole_records_that_went_in(tmp_path: Path) -> None:
    """A chunk of many lines refused midway keeps the records that went in whole (a disk
    with room for part of a chunk is filled with it: the daemon's chunks are half a MiB),
    the torn one cut off; the writer's size is the file's, and the next write follows."""
    with LogWriter.open(tmp_path, max_size=1 << 20) as writer:
        writer.write("stdout", b"before\n")
        size = (tmp_path / LOG_NAME).stat().st_size
        with files_limited_to(size + 200):
            writer.write("stdout", b"".join(b"line %02d\n" % n for n in range(20)))
        assert writer.position()[1] == (tmp_path / LOG_NAME).stat().st_size <= size + 200
        writer.write("stdout", b"after\n")
    kept = datas(read_entries(tmp_path))
    assert kept[0] == b"before" and kept[-1] == b"after"
    assert kept[1:-1] == [b"line %02d" % n for n in range(len(kept) - 2)] and len(kept) > 3


def test_reopen_appends_and_drops_files_beyond_a_smaller_max(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=500, max_files=5) as writer:
        write_lines(writer, 100)
    assert len(log_files(tmp_path)) == 5
    with LogWriter.open(tmp_path, max_size=500, max_files=2) as writer:
        assert log_files(tmp_path) == [LOG_NAME, LOG_NAME + ".1"]
        writer.write("stdout", b"after\n")
    assert datas(read_entries(tmp_path))[-2:] == [b"line 0099", b"after"]


def compressed_all(directory: Path, rotated: int) -> list[str]:
    """The log files once ``rotated`` of them are compressed (each rotation's is gzipped in
    the background, by a thread)."""
    expected = sorted([LOG_NAME] + [f"{LOG_NAME}.{n}.gz" for n in range(1, rotated + 1)])
    deadline = time.monotonic() + 30
    while log_files(directory) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return log_files(directory)


def test_compressed_rotation_keeps_every_record_in_order(tmp_path: Path) -> None:
    """Docker's ``compress``: each file rotated out is gzipped, in another thread, and
    every read takes the compressed files as the others: all, a tail reaching into them,
    since a time inside them."""
    with LogWriter.open(tmp_path, max_size=1000, max_files=4, compress=True) as writer:
        lines = [b"line %04d" % i for i in range(300)]
        for i, line in enumerate(lines):
            writer.write("stdout", line + b"\n", now=1000 + i)
    assert compressed_all(tmp_path, 3) == [LOG_NAME] + [f"{LOG_NAME}.{n}.gz" for n in (1, 2, 3)]
    oldest = gzip.decompress((tmp_path / f"{LOG_NAME}.3.gz").read_bytes())
    assert 900 < len(oldest) <= 1000 and b" stdout F line 0" in oldest
    kept = datas(read_entries(tmp_path))
    assert len(kept) > 3 * (1000 // 50) and kept == lines[-len(kept) :]
    assert datas(read_entries(tmp_path, tail=len(kept) - 3)) == kept[3:]  # into .3.gz
    entries = read_entries(tmp_path)
    assert read_entries(tmp_path, since=entries[5].time) == entries[5:]


async def test_a_read_since_skips_the_compressed_files_that_end_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compressed file's header keeps its last record's time (as Docker's does): a read
    since a later time does not decompress it."""
    with LogWriter.open(tmp_path, max_size=1000, max_files=4, compress=True) as writer:
        for i in range(100):
            writer.write("stdout", b"line %04d\n" % i, now=1000 + i)
    compressed_all(tmp_path, 3)
    entries = read_entries(tmp_path)
    newest = len(raw_records(tmp_path))  # the records of the file being written

    def unread(*args: object) -> None:
        raise AssertionError("a compressed file was read")

    monkeypatch.setattr("boxd._logs._Cursor._inflated_chunk", unread)
    since = entries[-newest].time_ns
    assert read_entries(tmp_path, since=since / 1e9) == entries[-newest:]
    assert [e async for batch in batches(tmp_path, since_ns=since) for e in batch] == entries[
        -newest:
    ]


def test_a_compressed_file_takes_the_name_its_source_has_when_done(tmp_path: Path) -> None:
    """A compression that ends after later rotations moved its file puts the compressed
    one where the file is then; one whose file left the directory meanwhile leaves
    nothing."""
    from boxd._logs import _compress

    with LogWriter.open(tmp_path, max_size=100, max_files=5) as writer:
        write_lines(writer, 10)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        moved = os.open(tmp_path / f"{LOG_NAME}.1", os.O_RDONLY)
        (tmp_path / f"{LOG_NAME}.1").rename(tmp_path / f"{LOG_NAME}.4")  # two rotations on
        dropped = os.open(tmp_path / f"{LOG_NAME}.2", os.O_RDONLY)
        (tmp_path / f"{LOG_NAME}.2").unlink()
        for fd in (moved, dropped):
            _compress(dir_fd, fd)
            os.close(fd)
    finally:
        os.close(dir_fd)
    names = log_files(tmp_path)
    assert f"{LOG_NAME}.4.gz" in names and f"{LOG_NAME}.4" not in names
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # no part left


def test_a_compressed_file_naming_the_inode_of_a_newer_file_is_not_taken_for_it(
    tmp_path: Path,
) -> None:
    """A compressed file names its source's inode, which the file system gives again once
    the source is gone: a follow of the newer file with that inode took the old compressed
    one for it and read the files between them again (``docker logs -f`` repeated 1,922
    lines of 300,000 through max-size=50k)."""
    from boxd._logs import _after, _Cursor, _LogFile, _snapshot

    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"newest\n")
    (tmp_path / f"{LOG_NAME}.1").write_bytes(raw_records(tmp_path)[0] + b"\n")
    current = _Cursor(_LogFile(os.open(tmp_path / LOG_NAME, os.O_RDONLY), False))
    dev, ino = current.ident
    with (
        (tmp_path / f"{LOG_NAME}.2.gz").open("wb") as out,
        gzip.GzipFile(f"{LOG_NAME}@{dev}:{ino}", "wb", fileobj=out) as gz,
    ):
        gz.write(raw_records(tmp_path)[0] + b"\n")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files = _snapshot(dir_fd, blocking=True)
        assert files is not None and [f.ident for f in files][::2] == [current.ident] * 2
        assert _after(files, current) == []
    finally:
        os.close(dir_fd)
        current.close()


def test_a_compression_under_way_elsewhere_is_left_to_finish(tmp_path: Path) -> None:
    """A container's restart opens its log again while the last run's writer still
    compresses a file, and the new writer queues that file too: its compression leaves
    the other's part file alone (it made its own with O_TRUNC, under the other's), and
    takes over one whose compression has ended (its lock gone)."""
    with LogWriter.open(tmp_path, max_size=100, max_files=5) as writer:
        write_lines(writer, 10)
    source = tmp_path / f"{LOG_NAME}.1"
    part = tmp_path / f".{LOG_NAME}.gz.part-{source.stat().st_ino}"
    part.write_bytes(b"being written")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open(source, os.O_RDONLY)
    try:
        with part.open("rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            logs_module._compress(dir_fd, fd)
            assert part.read_bytes() == b"being written" and source.exists()
        logs_module._compress(dir_fd, fd)
    finally:
        os.close(fd)
        os.close(dir_fd)
    assert not part.exists() and not source.exists()
    assert gzip.decompress((tmp_path / f"{LOG_NAME}.1.gz").read_bytes()).endswith(b"line 0007\n")


def test_out_of_descriptors_a_rotation_goes_on_uncompressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A compression that cannot open the log's directory (no descriptor left): the
    rotated file stays as it is (the log's next opening compresses it), the log goes on,
    nothing is left open."""
    real_open = os.open

    def no_directory(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if path == ".":
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args, **kwargs)

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "open", no_directory)
    with LogWriter.open(tmp_path, max_size=300, max_files=3, compress=True) as writer:
        lines = write_lines(writer, 20)
    monkeypatch.undo()
    assert log_files(tmp_path) == [LOG_NAME, f"{LOG_NAME}.1", f"{LOG_NAME}.2"]
    assert datas(read_entries(tmp_path))[-1] == lines[-1]
    assert any("not compressed: [Errno 24]" in r.getMessage() for r in caplog.records)
    deadline = time.monotonic() + 10  # (the rotations' closes are made in threads)
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_compression_of_a_removed_log_ends_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A container removed while its log's rotated file is compressed: nothing to warn
    about (its directory went with its files, the part file too)."""
    directory = tmp_path / "logs"
    looked = threading.Event()
    real = logs_module._is_file

    def removed_first(dir_fd: int, name: str, st: os.stat_result) -> bool:
        shutil.rmtree(directory, ignore_errors=True)
        looked.set()
        return real(dir_fd, name, st)

    monkeypatch.setattr(logs_module, "_is_file", removed_first)
    with LogWriter.open(directory, max_size=300, max_files=3, compress=True) as writer:
        write_lines(writer, 10)
    assert looked.wait(30)
    time.sleep(0.2)  # the thread's end
    assert not [r for r in caplog.records if "not compressed" in r.getMessage()]


def test_reopened_with_compress_the_files_left_uncompressed_are_compressed(
    tmp_path: Path,
) -> None:
    """A daemon that ended before it compressed the files rotated out (or the part file it
    was writing): the next writer compresses them and drops the part, but not one a
    compression under way holds."""
    with LogWriter.open(tmp_path, max_size=300, max_files=3) as writer:
        lines = write_lines(writer, 20)
    (tmp_path / f".{LOG_NAME}.gz.part-1").write_bytes(b"abandoned")
    held = tmp_path / f".{LOG_NAME}.gz.part-2"
    held.write_bytes(b"under way")
    with held.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with LogWriter.open(tmp_path, max_size=300, max_files=3, compress=True):
            assert compressed_all(tmp_path, 2)[-1] == f"{LOG_NAME}.2.gz"
        assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == [held.name]
    kept = datas(read_entries(tmp_path))
    assert kept == lines[-len(kept) :] and len(kept) > 10


def test_a_damaged_compressed_file_gives_what_it_holds_before_the_damage(
    tmp_path: Path,
) -> None:
    with LogWriter.open(tmp_path, max_size=4000, max_files=2, compress=True) as writer:
        lines = write_lines(writer, 120)
    compressed_all(tmp_path, 1)
    gz = tmp_path / f"{LOG_NAME}.1.gz"
    current = len(raw_records(tmp_path))
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])  # cut in the middle
    for kept in (datas(read_entries(tmp_path)), datas(read_entries(tmp_path, tail=1000))):
        saved = len(kept) - current
        assert 0 < saved < len(lines) - current
        assert kept == lines[:saved] + lines[-current:]


def test_torn_and_garbage_records_are_skipped(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"one\n", now=1)
    with open(tmp_path / LOG_NAME, "ab") as f:
        f.write(b"not a record\n")
        f.write(b"1970-01-01T00:00:01.000000000Z stdin F wrong stream\n")
        f.write(b"1970-13-01T00:00:01.000000000Z stdout F bad month\n")
        f.write(b"1970-01-01T00:00:01.000000000Z stdout X bad flag\n")
        f.write(b"1970-01-01T00:00:02+01:00 stdout F zone offset\n")
        f.write(b"1970-01-01T00:00:03.000000000Z stdout F torn by a cra")
    assert datas(read_entries(tmp_path)) == [b"one", b"zone offset"]
    assert read_entries(tmp_path)[1].time_ns == (2 - 3600) * 1_000_000_000
    # A writer reopened after the crash cuts the torn record off, so its first record
    # survives (with live restore the torn one's bytes are still in the pipe: _ledger).
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"two\n")
    assert datas(read_entries(tmp_path)) == [b"one", b"zone offset", b"two"]
    assert datas(read_entries(tmp_path, tail=1)) == [b"two"]


def test_overlong_garbage_lines_are_skipped(tmp_path: Path) -> None:
    garbage = b"g" * (5 * MAX_RECORD_DATA)
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"before\n")
    with open(tmp_path / LOG_NAME, "ab") as f:
        f.write(garbage + b"\n" + garbage * 3 + b"\n")
    with LogWriter.open(tmp_path) as writer:
        writer.write("stdout", b"after\n")
    assert datas(read_entries(tmp_path)) == [b"before", b"after"]
    assert datas(read_entries(tmp_path, tail=2)) == [b"before", b"after"]


def test_tail_counts_lines_across_rotated_files(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=400, max_files=4) as writer:
        lines = write_lines(writer, 60)
    kept = datas(read_entries(tmp_path))
    current = len(raw_records(tmp_path))
    assert current < 15 < len(kept)
    assert datas(read_entries(tmp_path, tail=15)) == lines[-15:]
    assert datas(read_entries(tmp_path, tail=1)) == lines[-1:]
    assert read_entries(tmp_path, tail=0) == []
    assert datas(read_entries(tmp_path, tail=10_000)) == kept


def test_tail_keeps_whole_partial_chains(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=150, max_files=10) as writer:
        writer.write("stdout", b"first\n")
        writer.write("stdout", b"a" * 40)
        writer.write("stderr", b"error line\n")
        writer.write("stdout", b"b" * 40)
        writer.write("stdout", b"c" * 40 + b"\n")
        writer.write("stdout", b"prompt> ")
    assert len(log_files(tmp_path)) > 2
    # The trailing prompt is a line; the stdout chain split by stderr is one line.
    assert format_entries(read_entries(tmp_path, tail=2), timestamps=False) == (
        b"a" * 40 + b"b" * 40 + b"c" * 40 + b"\nprompt> "
    )
    assert list(iter_output(read_entries(tmp_path, tail=3))) == [
        ("stdout", b"a" * 40),
        ("stderr", b"error line\n"),
        ("stdout", b"b" * 40 + b"c" * 40 + b"\nprompt> "),
    ]
    assert datas(read_entries(tmp_path, tail=1)) == [b"prompt> "]


def test_tail_of_a_huge_log_reads_only_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 200 MB of NUL bytes (a sparse hole: no disk used) ahead of the real records.
    with open(tmp_path / LOG_NAME, "wb") as f:
        f.truncate(200 * 1024 * 1024)
    with LogWriter.open(tmp_path, max_size=1 << 30) as writer:
        lines = write_lines(writer, 1000)
    bytes_read = 0
    real_pread = os.pread

    def counting_pread(fd: int, size: int, offset: int) -> bytes:
        nonlocal bytes_read
        data = real_pread(fd, size, offset)
        bytes_read += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    assert datas(read_entries(tmp_path, tail=20)) == lines[-20:]
    assert 0 < bytes_read < 256 * 1024


def test_since(tmp_path: Path) -> None:
    with LogWriter.open(tmp_path, max_size=100, max_files=10) as writer:
        for second in range(1, 11):
            writer.write("stdout", b"at %d\n" % second, now=second + 0.25)
    assert datas(read_entries(tmp_path, since=8.25)) == [b"at 8", b"at 9", b"at 10"]
    assert datas(read_entries(tmp_path, since=8.3)) == [b"at 9", b"at 10"]
    assert datas(read_entries(tmp_path, since=8.25, tail=2)) == [b"at 9", b"at 10"]
    assert datas(read_entries(tmp_path, since=9.25, tail=5)) == [b"at 9", b"at 10"]
    assert read_entries(tmp_path, since=100) == []


def test_empty_directory(tmp_path: Path) -> None:
    assert read_entries(tmp_path) == []
    assert read_entries(tmp_path, tail=5) == []


def test_size_and_count_validation(tmp_path: Path) -> None:
    """Log sizes are parsed as every size option is (boxd._units), errors naming the value."""
    assert parse_size("10m") == 10 * 1024 * 1024 == DEFAULT_MAX_SIZE
    assert parse_size("512K") == parse_size("512 KiB") == parse_size("512kb") == 512 * 1024
    assert parse_size("1G") == 1024**3
    assert parse_size("4096") == parse_size("4096b") == 4096
    assert parse_size("1.5m") == 3 * 512 * 1024
    assert DEFAULT_MAX_FILES == 3
    for bad, message in [
        ("0", "'0'.*positive"),
        ("-5m", "'-5m'.*positive"),
        ("10x", "'10x'.*unknown unit 'x'"),
        ("10 mibs", "'10 mibs'.*unknown unit 'mibs'"),
        ("m", "'m'.*use a number"),
        ("", "''"),
    ]:
        with pytest.raises(ValueError, match=f"invalid --log-max-size {message}"):
            parse_size(bad, what="--log-max-size")
    with pytest.raises(ValueError, match=r"-1.*at least 1"):
        LogWriter.open(tmp_path, max_files=-1)
    with pytest.raises(ValueError, match=r"0.*positive"):
        LogWriter.open(tmp_path, max_size=0)
    with pytest.raises(ValueError, match="invalid tail -1"):
        read_entries(tmp_path, tail=-1)
    with LogWriter.open(tmp_path) as writer, pytest.raises(ValueError, match="'stdin'"):
        writer.write("stdin", b"x\n")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write("stdout", b"x\n")


async def follow(directory: Path, **kwargs: Any) -> AsyncIterator[LogEntry]:
    """The records of :func:`batches`, one by one."""
    async for batch in batches(directory, **kwargs):
        for entry in batch:
            yield entry


class Collector:
    """Follows a log in the background; the test waits until it has seen enough."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self._changed = trio.Event()

    async def run(self, entries: AsyncIterator[LogEntry]) -> None:
        async for entry in entries:
            self.entries.append(entry)
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.entries) < count:
            await self._changed.wait()


async def test_without_following_a_read_ends_at_what_the_log_held(tmp_path: Path) -> None:
    """A container writing faster than its client read (a shell loop's echo, with `docker
    logs`' framing of each line) kept a read without ``follow`` going for ever: it read
    on into what was written after the request, and then into the files rotated since.
    It ends at what the files held when it began, as Docker's reads do."""
    writer = LogWriter.open(tmp_path, max_size=1 << 20, max_files=3)
    writer.write("stdout", b"before\n" * 20_000)  # more than one block of the reader's
    count = 0
    async for batch in batches(tmp_path):
        count += len(batch)
        writer.write("stdout", b"after\n" * 20_000)  # and a rotation, soon
    writer.close()
    assert count == 20_000


async def test_follow_across_rotation_delivers_every_record_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = LogWriter.open(tmp_path, max_size=200, max_files=3)
    expected = write_lines(writer, 3)
    done = trio.Event()
    collector = Collector()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run, follow(tmp_path, until_closed=done))
            for burst in range(30):
                # Bursts of 8 lines cross at most two rotations of ~5 records.
                expected += write_lines(writer, 8, start=100 + 8 * burst)
                await collector.wait_for(len(expected))
            expected += write_lines(writer, 4, start=1000)
            writer.write("stdout", b"no newline")
            expected.append(b"no newline")
            # Written just before the end: still delivered.
            done.set()
    writer.close()
    assert datas(collector.entries) == expected


Behind = tuple[LogWriter, AsyncIterator[list[LogEntry]], trio.Event, list[bytes], list[bytes]]


async def _a_follow_behind(directory: Path, lines: int) -> Behind:
    """A follow that read the log's first file (still open) and ``lines`` more written
    behind it, rotated (20 files of room): its writer, its batches, its end event, what
    was written and what it got."""
    writer = LogWriter.open(directory, max_size=200, max_files=20)
    expected = write_lines(writer, 2)
    done = trio.Event()
    read = batches(directory, until_closed=done)
    got = datas(await read.__anext__())
    expected += write_lines(writer, lines, start=2)
    return writer, read, done, expected, got


async def _the_rest(read: AsyncIterator[list[LogEntry]], done: trio.Event) -> list[bytes]:
    """What a follow yields once its container has ended."""
    done.set()
    return [data async for batch in read for data in datas(batch)]


async def test_a_follow_behind_gets_the_files_of_a_removed_log(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A follow whose client reads late (docker-py's ``run(remove=True)``) still had the
    first file open when the container was removed, and the files rotated after it went
    with the directory: the removal has it open them first (keep_for_followers)."""
    writer, read, done, expected, got = await _a_follow_behind(tmp_path, 40)
    writer.close()
    keep_for_followers(tmp_path)  # the removal, then its directory goes
    shutil.rmtree(tmp_path)
    assert got + await _the_rest(read, done) == expected


async def test_a_removal_during_a_follows_look_for_newer_files_repeats_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A follow waiting for the log's lock to see the files newer than its own when the
    removal queued them for it takes each once."""
    writer, read, done, expected, got = await _a_follow_behind(tmp_path, 20)
    got += datas(await read.__anext__())  # the rest of its file, rotated meanwhile
    lock = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a writer renaming files holds it
    async with trio.open_nursery() as nursery:
        batch: list[LogEntry] = []

        async def next_batch() -> None:
            batch.extend(await read.__anext__())

        nursery.start_soon(next_batch)
        await trio.testing.wait_all_tasks_blocked()  # polling for the lock
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        writer.close()
        keep_for_followers(tmp_path)
    assert got + datas(batch) + await _the_rest(read, done) == expected


async def test_follow_catches_up_after_many_rotations(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = LogWriter.open(tmp_path, max_size=200, max_files=20)
    expected = write_lines(writer, 2)
    done = trio.Event()
    collector = Collector()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run, follow(tmp_path, until_closed=done))
            await collector.wait_for(2)
            # Six or more rotations while the follower sleeps between polls.
            expected += write_lines(writer, 40, start=2)
            done.set()
    writer.close()
    assert len(log_files(tmp_path)) > 6
    assert datas(collector.entries) == expected


async def _a_burst_behind_a_follow(directory: Path) -> tuple[list[bytes], list[bytes]]:
    """A follow that read a log's first line, then 60 more lines written at once through
    max_size=200, max_files=2 (a dozen rotations, no await between): what was written and
    what it got."""
    writer = LogWriter.open(directory, max_size=200, max_files=2)
    done = trio.Event()
    collector = Collector()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run, follow(directory, until_closed=done))
            lines = write_lines(writer, 1)
            await collector.wait_for(1)
            lines += write_lines(writer, 60, start=1)
            done.set()
    writer.close()
    assert len(log_files(directory)) == 2
    return lines, datas(collector.entries)


async def test_a_follow_gets_the_files_a_burst_rotates_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A burst of output through a small max-size rotates files out between a follow's
    looks for newer ones: each rotation has the follow open them first (``docker logs
    -f`` of 300 lines through max-size=2k, max-file=2 got 93 of them)."""
    lines, got = await _a_burst_behind_a_follow(tmp_path)
    assert got == lines


async def test_follow_behind_dropped_files_never_repeats(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow that has more than _HELD_FOR_A_FOLLOW left to read (its client stopped
    reading) misses the files rotated out meanwhile, as Docker's does: the middle ones
    are gone before it looks."""
    monkeypatch.setattr("boxd._logs._HELD_FOR_A_FOLLOW", 1)
    lines, got = await _a_burst_behind_a_follow(tmp_path)
    retained = datas(read_entries(tmp_path))
    assert len(got) < len(lines)
    # The file being read is finished through its descriptor even though it was dropped,
    # then the files still there are read: in order, no repeats, newest included.
    assert got == sorted(set(got))
    assert got[:2] == lines[:2]
    assert got[-len(retained) :] == retained == lines[-len(retained) :]


async def test_a_follow_reads_the_files_compressed_behind_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow that was reading a file when it and the next ones were rotated out and
    compressed (not opened for it first: _HELD_FOR_A_FOLLOW) knows the compressed file of
    the one it finished by its header, and reads the rest from the compressed ones."""
    monkeypatch.setattr("boxd._logs._HELD_FOR_A_FOLLOW", 1)
    writer = LogWriter.open(tmp_path, max_size=500, max_files=50, compress=True)
    expected = write_lines(writer, 2)
    done = trio.Event()
    read = batches(tmp_path, until_closed=done)
    got = datas(await read.__anext__())
    expected += write_lines(writer, 200, start=2)
    rotated = len(log_files(tmp_path)) - 1
    names = compressed_all(tmp_path, rotated)  # the follow has opened none of them
    assert rotated > 15 and all(name.endswith(".gz") for name in names if name != LOG_NAME)
    assert got + await _the_rest(read, done) == expected
    writer.close()


async def test_follow_with_tail_since_and_a_callable(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer = LogWriter.open(tmp_path, max_size=120, max_files=5)
    for second in range(5):
        writer.write("stdout", b"old %d\n" % second, now=second)
    writer.write("stdout", b"half ", now=5)
    ended = False
    collector = Collector()

    def is_ended() -> bool:
        return ended

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            following = follow(tmp_path, tail=2, since_ns=1_000_000_000, until_closed=is_ended)
            nursery.start_soon(collector.run, following)
            await collector.wait_for(2)
            assert datas(collector.entries) == [b"old 4", b"half "]
            writer.write("stdout", b"done\n", now=6)
            writer.write("stdout", b"too early\n", now=0.5)
            await collector.wait_for(3)
            ended = True
    writer.close()
    assert format_entries(collector.entries, timestamps=False) == b"old 4\nhalf done\n"


async def test_follow_waits_for_the_log_and_ends_when_empty(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    done = trio.Event()
    collector = Collector()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run, follow(tmp_path, until_closed=done))
            await trio.sleep(1)
            with LogWriter.open(tmp_path) as writer:
                writer.write("stderr", b"late\n")
            await collector.wait_for(1)
            done.set()
        assert datas(collector.entries) == [b"late"]
        done = trio.Event()
        done.set()
        empty = tmp_path / "empty"
        empty.mkdir()
        assert [entry async for entry in follow(empty, until_closed=done)] == []


async def test_a_follow_is_woken_by_its_writer_and_its_end(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A follow in its writer's thread reads each write at once, and ends at once when
    woken after its container ended, not at its next poll: docker-py's ``run()`` follows
    the log until the container ends, and every fourth one took 50 ms more.  The clock
    stands still here: a follow that waited for its poll would get nothing."""
    writer = LogWriter.open(tmp_path)
    ended = False
    collector = Collector()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collector.run, follow(tmp_path, until_closed=lambda: ended))
        await trio.testing.wait_all_tasks_blocked()
        for line in (b"one", b"two"):
            writer.write("stdout", line + b"\n")
            await trio.testing.wait_all_tasks_blocked()
            assert datas(collector.entries)[-1] == line
        ended = True
        wake_followers(str(tmp_path))
        await trio.testing.wait_all_tasks_blocked()
        assert not nursery.child_tasks  # the follow has ended
    writer.close()
    assert datas(collector.entries) == [b"one", b"two"]


async def test_follow_a_writer_in_another_thread(tmp_path: Path) -> None:
    # Real concurrency: rotations race with the follower's polls and snapshots.
    writer = LogWriter.open(tmp_path, max_size=2000, max_files=200)
    done = trio.Event()
    collector = Collector()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector.run, follow(tmp_path, until_closed=done))
            expected = await trio.to_thread.run_sync(write_lines, writer, 5000)
            done.set()
    writer.close()
    assert len(log_files(tmp_path)) > 100
    assert datas(collector.entries) == expected


async def test_a_log_read_without_following_comes_in_blocks_and_ends(tmp_path: Path) -> None:
    """Not the whole log in memory at once (a chatty container's is gigabytes), and each
    block's run of one stream's lines formatted as one chunk (one frame, one write)."""
    lines = [b"line %06d" % n for n in range(20_000)]
    with LogWriter.open(tmp_path) as writer:
        for n in range(0, len(lines), 1000):
            writer.write("stdout", b"".join(line + b"\n" for line in lines[n : n + 1000]), now=1)
        writer.write("stderr", b"the end\n", now=2)
    got = [batch async for batch in batches(tmp_path)]
    assert len(got) > 5
    assert max(map(len, got)) < len(lines) / 5
    formatter = OutputFormatter()
    chunks = [chunk for batch in got for chunk in formatter.chunks(batch)]
    assert len(chunks) <= len(got) + 1
    assert b"".join(data for stream, data in chunks if stream == "stdout") == b"".join(
        line + b"\n" for line in lines
    )
    assert chunks[-1] == ("stderr", b"the end\n")
    last = LogEntry(2 * 10**9, "stderr", False, b"the end")
    assert [batch async for batch in batches(tmp_path, tail=1)] == [[last]]
    # --until: up to the first record stamped after it, then no more.
    until = 1_500_000_000
    before = [e for batch in [b async for b in batches(tmp_path, until_ns=until)] for e in batch]
    assert len(before) == len(lines) and last not in before
    assert [batch async for batch in batches(tmp_path, tail=1, until_ns=until)] == []

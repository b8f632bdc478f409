"""The output ledger (boxd/_ledger.py): a pump that dies at any step between copying a
chunk out of a pipe and clearing its note leaves the next pump a log with the chunk once.

Real pipes and a real LogWriter; a pump's death is an exception raised at the step (what
the next daemon sees is the same: the pipe, the log and the ledger as they were)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxd import _ledger, _logs
from boxd._ledger import Ledger, LoggedPipe

STDOUT = 1
SIZE = 1024 * 1024


class Died(Exception):
    """The pump's death at a step."""


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # the test closed it
            os.close(fd)


def _logged(directory: Path) -> bytes:
    """The output in the log, records joined (a partial one without its newline)."""
    entries = _logs.read_entries(directory / "logs")
    return b"".join(e.data + (b"" if e.partial else b"\n") for e in entries)


def _empty(fd: int) -> bool:
    try:
        data = os.read(fd, 100)
    except BlockingIOError:
        return True
    raise AssertionError(f"the pipe still held {data!r}")


def _pump_once(
    directory: Path, fd: int, *, create: bool = False, max_size: int = _logs.DEFAULT_MAX_SIZE
) -> None:
    """One daemon's pump: settle, then log what the pipe holds now."""
    ledger = (Ledger.create if create else Ledger.open)(directory)
    with _logs.LogWriter.open(directory / "logs", max_size=max_size, max_files=10) as logs:
        pipe = ledger.pipe(STDOUT, fd, logs, "stdout", SIZE)
        try:
            data, _ = pipe.read()
            if data:
                pipe.log(data)
        finally:
            pipe.close()
            ledger.close()


def _die_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    def die(*args: object, **kwargs: object) -> None:
        raise Died(step)

    if step == "log":
        monkeypatch.setattr(_logs.LogWriter, "write", die)
    elif step in ("mid-log", "torn"):  # one writev done, then death in the next
        monkeypatch.setattr(_logs, "_IOV_RECORDS", 1)  # a writev for each run of lines
        real_writev = os.writev
        writes = []

        def writev(fd: int, buffers: list[bytes]) -> int:
            writes.append(buffers)
            if len(writes) == 1:
                return real_writev(fd, buffers)
            if step == "torn":  # the kernel wrote some pages of it: a record cut short
                os.write(fd, b"".join(buffers)[:1000])
            raise Died(step)

        monkeypatch.setattr(os, "writev", writev)
    elif step == "take":
        monkeypatch.setattr(LoggedPipe, "_take", die)
    else:  # "clear": the chunk is out of the pipe, its note not yet cleared
        real = os.pwrite
        calls = []

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            calls.append(data)
            if len(calls) == 2:
                raise Died(step)
            return real(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)


@pytest.mark.parametrize("step", ["log", "mid-log", "torn", "take", "clear"])
def test_a_death_at_any_step_leaves_the_chunk_logged_once(
    tmp_path: Path, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    r, w = pipe
    os.write(w, b"first\n")
    _pump_once(tmp_path, r, create=True)
    second = b"".join(b"second %04d\n" % n for n in range(4000))  # runs of lines
    os.write(w, second)
    with monkeypatch.context() as patch:
        _die_at(patch, step)
        with pytest.raises(Died):
            _pump_once(tmp_path, r)
    os.write(w, b"third\n")
    _pump_once(tmp_path, r)  # the next daemon's
    assert _logged(tmp_path) == b"first\n" + second + b"third\n"
    assert _empty(r)


def test_a_death_in_a_write_that_rotated_the_log(
    tmp_path: Path, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    r, w = pipe
    lines = b"".join(b"line %04d\n" % n for n in range(1000))
    os.write(w, lines)
    with monkeypatch.context() as patch:
        _die_at(patch, "mid-log")
        with pytest.raises(Died):
            _pump_once(tmp_path, r, create=True, max_size=8000)
    _pump_once(tmp_path, r, max_size=8000)
    assert _logged(tmp_path) == lines
    assert _empty(r)


def test_a_death_after_taking_the_chunk_keeps_a_different_next_one(
    tmp_path: Path, pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note is still there but the pipe starts with other bytes: they are logged."""
    r, w = pipe
    os.write(w, b"one line\n")
    with monkeypatch.context() as patch:
        _die_at(patch, "clear")
        with pytest.raises(Died):
            _pump_once(tmp_path, r, create=True)
    os.write(w, b"another line, longer\n")
    _pump_once(tmp_path, r)
    assert _logged(tmp_path) == b"one line\nanother line, longer\n"
    assert _empty(r)


def test_the_end_of_the_output_and_binary_chunks(tmp_path: Path, pipe: tuple[int, int]) -> None:
    r, w = pipe
    chunk = bytes(range(256)) * 256  # no newline but byte 10's: partial records
    os.write(w, chunk)
    os.close(w)
    ledger = Ledger.create(tmp_path)
    with _logs.LogWriter.open(tmp_path / "logs") as logs:
        reader = ledger.pipe(STDOUT, r, logs, "stdout", SIZE)
        data, ended = reader.read()
        assert (len(data), ended) == (len(chunk), False)
        reader.log(data)
        assert reader.read() == (b"", True)
        reader.close()
    ledger.close()
    assert _logged(tmp_path) == chunk
    assert set((tmp_path / _ledger.LEDGER_NAME).read_bytes()) <= {0}  # no note left

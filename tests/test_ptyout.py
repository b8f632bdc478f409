"""The terminal output pump (boxd/_ptyout.py) on a real PTY: every byte in order, in chunks,
logged before it is sent, still logged when the pump is cancelled, and no reader thread left
once the output pauses or the pump ends."""

from __future__ import annotations

import errno
import importlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import trio

from boxd import _ptyout


class Pty:
    """A PTY: the master non-blocking, as the daemon's is; the slave raw, so bytes pass
    unchanged.  The master reads EIO (the end) once the slave is closed."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    try:
        yield p
    finally:
        p.close_slave()
        os.close(p.master)


def _pattern(size: int) -> bytes:
    return bytes(range(251)) * (size // 251) + bytes(range(size % 251))


def _write_and_close(
    pty: Pty, data: bytes, resume: threading.Event | None = None
) -> threading.Thread:
    """Write ``data`` to the slave from a thread (half, then the rest once ``resume`` is
    set, if given), then close it."""

    def run() -> None:
        view = memoryview(data)
        half = len(view) // 2
        for part in (view[:half], view[half:]):
            while part:
                part = part[os.write(pty.slave, part) :]
            if resume is not None:
                resume.wait()
        pty.close_slave()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == _ptyout.THREAD_NAME]


class Sink:
    def __init__(self, *, slow: float = 0.0) -> None:
        self.kept: list[bytes] = []
        self.published: list[bytes] = []
        self.slow = slow
        self._size = 0
        self._waiting: tuple[int, trio.Event] | None = None

    async def seen(self, size: int) -> None:
        """Wait until ``size`` bytes were published."""
        if self._size < size:
            self._waiting = (size, trio.Event())
            await self._waiting[1].wait()

    def keep(self, data: bytes) -> None:
        self.kept.append(data)

    async def publish(self, data: bytes) -> None:
        # Sent only after it was logged.
        assert b"".join(self.kept).endswith(data)
        if self.slow:
            await trio.sleep(self.slow)
        self.published.append(data)
        self._size += len(data)
        if self._waiting is not None and self._size >= self._waiting[0]:
            self._waiting[1].set()


async def test_every_byte_in_order_in_large_chunks(pty: Pty) -> None:
    data = _pattern(8 << 20)
    writer = _write_and_close(pty, data)
    sink = Sink()
    with trio.fail_after(60):
        await _ptyout.pump(pty.master, sink.keep, sink.publish)
    writer.join()
    assert b"".join(sink.kept) == data
    assert sink.published == sink.kept
    assert not _readers()


async def test_the_read_buffer_is_kept_for_the_next_terminal_until_released(pty: Pty) -> None:
    """A finished reader's 1 MiB buffer serves the next terminal, and goes once the
    daemon is idle (its trash emptied: Supervisor._empty_trash), not held for ever."""
    _ptyout.release_kept_buffers()
    writer = _write_and_close(pty, _pattern(2 << 20))
    sink = Sink()
    with trio.fail_after(60):
        await _ptyout.pump(pty.master, sink.keep, sink.publish)
    writer.join()
    (kept,) = _ptyout._buffers
    assert len(kept) == _ptyout.READ_SIZE
    assert _ptyout._kept_buffer() is kept and not _ptyout._buffers
    _ptyout._buffers.append(kept)
    _ptyout.release_kept_buffers()
    assert not _ptyout._buffers


async def _pump_scripted(
    pty: Pty,
    monkeypatch: pytest.MonkeyPatch,
    script: list[tuple[bytes, bool]],
    reaped: trio.Event | None = None,
    after: Callable[[], None] = lambda: None,
) -> bytes:
    """What the pump keeps of a terminal read by a stand-in for the C reader: each read
    gives ``script``'s next (data, EIO), then EIO for ever (``after`` called at each)."""

    def gather(
        fd: int, buffer: memoryview, gap: float, limit: float, group: int, home: int
    ) -> tuple[int, bool, bool]:
        if script:
            data, ended = script.pop(0)
        else:
            data, ended = b"", True
            after()
        buffer[: len(data)] = data
        return len(data), ended, False

    fake = SimpleNamespace(gather_read=gather)
    real = importlib.import_module
    monkeypatch.setattr(
        importlib,
        "import_module",
        lambda name: fake if name == "sandbox_native" else real(name),
    )
    sink = Sink()
    os.write(pty.slave, b"x")  # the master is readable: the pump starts its reader
    with trio.fail_after(60):
        await _ptyout.pump(pty.master, sink.keep, sink.publish, reaped=reaped)
    return b"".join(sink.kept)


async def test_output_that_comes_after_an_eio_is_read(
    pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master can read EIO before the last writes reach it (seen under load: 4,608
    bytes read after it; the kernel's race, made here by a stand-in for the C reader):
    the pump reads on until EIO has lasted END_SETTLE, and loses nothing."""
    script: list[tuple[bytes, bool]] = [(b"first", False), (b"", True), (b"", True)]
    script += [(b"late", False), (b"", True)]
    assert await _pump_scripted(pty, monkeypatch, script) == b"firstlate" and not script


async def test_an_eio_read_after_the_reap_ends_the_output_at_once(
    pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the process is reaped no writer is left: the first EIO read begun after the
    reap is the end (every `run -t` ended END_SETTLE, 10 ms, after its process).  Before
    it an EIO must still last (an hour here): what comes after one is read."""
    monkeypatch.setattr(_ptyout, "END_SETTLE", 3600)
    token = trio.lowlevel.current_trio_token()
    reaped = trio.Event()
    script: list[tuple[bytes, bool]] = [(b"first", False), (b"", True), (b"", True)]
    script += [(b"late", False)]
    # EIO for ever after the script; the reaper's news comes meanwhile.
    kept = await _pump_scripted(
        pty, monkeypatch, script, reaped, after=lambda: token.run_sync_soon(reaped.set)
    )
    assert kept == b"firstlate" and reaped.is_set()


async def test_a_hangup_while_the_process_runs_is_not_the_end(pty: Pty) -> None:
    """Every slave fd closed while the process runs (a getty's vhangup: systemd's
    console-getty) and the terminal opened again: what is written then is read too, and
    the EIO after the process has ended is the end."""
    name = os.ttyname(pty.slave)
    reaped = trio.Event()
    sink = Sink()
    os.write(pty.slave, b"before")
    pty.close_slave()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ptyout.pump, pty.master, sink.keep, sink.publish, None, reaped)
            await sink.seen(len(b"before"))
            # Hung up: the pump waits (no reader thread meanwhile) until it is opened.
            while _readers():  # noqa: ASYNC110  (a thread's end is no Trio event)
                await trio.sleep(0.01)
            again = os.open(name, os.O_RDWR | os.O_NOCTTY)
            try:
                os.write(again, b"after")
                await sink.seen(len(b"beforeafter"))
            finally:
                os.close(again)
            reaped.set()
    assert b"".join(sink.kept) == b"beforeafter"
    assert not _readers()


async def test_a_slow_client_slows_the_reader_and_loses_nothing(pty: Pty) -> None:
    data = _pattern(2 << 20)
    writer = _write_and_close(pty, data)
    sink = Sink(slow=0.02)
    with trio.fail_after(60):
        await _ptyout.pump(pty.master, sink.keep, sink.publish)
    writer.join()
    assert b"".join(sink.published) == data


async def test_a_pause_ends_the_reader_thread(pty: Pty) -> None:
    data = _pattern(64 << 10)
    resume = threading.Event()
    writer = _write_and_close(pty, data, resume)
    sink = Sink()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ptyout.pump, pty.master, sink.keep, sink.publish)
            with trio.fail_after(30):
                await sink.seen(len(data) // 2)
                # The writer waits: the reader thread goes, the pump waits in Trio.
                while _readers():  # noqa: ASYNC110  (a thread's end is no Trio event)
                    await trio.sleep(0.01)
            resume.set()
    finally:
        resume.set()
        writer.join()
    assert b"".join(sink.kept) == data


async def test_cancelled_while_output_flows_everything_read_is_logged(
    pty: Pty,
) -> None:
    stop = threading.Event()
    written = bytearray()

    def endless() -> None:
        piece = _pattern(64 << 10)
        while not stop.is_set():
            try:
                written.extend(piece[: os.write(pty.slave, piece)])
            except BlockingIOError:  # full while the pump does not read
                time.sleep(0.001)

    os.set_blocking(pty.slave, False)
    writer = threading.Thread(target=endless)
    writer.start()
    try:
        sink = Sink(slow=0.005)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ptyout.pump, pty.master, sink.keep, sink.publish)
            with trio.fail_after(30):
                await sink.seen(1 << 20)
            nursery.cancel_scope.cancel(reason="the test has seen output")
    finally:
        stop.set()
        writer.join()
    assert not _readers()
    kept = b"".join(sink.kept)
    rest = bytearray()
    while True:
        try:
            rest += os.read(pty.master, 1 << 20)
        except BlockingIOError:
            break
    # What the pump read is in the log, and what it did not is still in the terminal.
    assert kept + rest == written
    assert b"".join(sink.published) == kept[: len(b"".join(sink.published))]


Gather = Callable[..., tuple[int, bool, bool]]


def _gather_read() -> Gather:
    # By name, as boxd/_ptyout.py does (mypy would take the source directory).
    gather: Gather = importlib.import_module("sandbox_native").gather_read
    return gather


def test_gather_read_fills_the_buffer_across_reads(pty: Pty) -> None:
    """Several PTY reads (at most 4 KiB each) go into one call; a full buffer ends it."""
    data = _pattern(24 << 10)
    writer = _write_and_close(pty, data)
    buffer = memoryview(bytearray(16 << 10))
    try:
        select.select([pty.master], [], [], 60)
        # The writer never pauses for 60 s: the call returns with the buffer full.
        assert _gather_read()(pty.master, buffer, 60.0, 120.0) == (len(buffer), False, False)
        got = bytearray(buffer)
        # Until EIO has lasted 50 ms, as the pump's reader reads (an EIO can come before
        # the last writes reach the master: seen here under load).
        ended_since: float | None = None
        while ended_since is None or time.monotonic() - ended_since < 0.05:
            select.select([pty.master], [], [], 60)
            size, ended, _ = _gather_read()(pty.master, buffer, 0.001, 60.0)
            got += buffer[:size]
            if not ended or size:
                ended_since = None
            else:
                ended_since = ended_since or time.monotonic()
                time.sleep(0.001)
    finally:
        writer.join()
    assert got == data


def test_gather_read_returns_when_the_writer_pauses(pty: Pty) -> None:
    os.write(pty.slave, b"first")
    buffer = memoryview(bytearray(1 << 20))
    select.select([pty.master], [], [], 10)
    size, ended, _ = _gather_read()(pty.master, buffer, 0.001, 10.0)
    assert (bytes(buffer[:size]), ended) == (b"first", False)
    # Nothing there: at once, nothing read.
    assert _gather_read()(pty.master, buffer, 0.001, 10.0) == (0, False, False)
    pty.close_slave()
    assert _gather_read()(pty.master, buffer, 0.001, 10.0) == (0, True, False)  # EIO: the end


def test_gather_read_of_a_stream_waits_out_a_pause_longer_than_the_gap(pty: Pty) -> None:
    """Once a chunk holds 64 KiB the output is a stream: a pause longer than the gap does not
    end the call (it waits up to the limit), and what comes after it joins the chunk."""
    data = _pattern(80 << 10)
    pause = threading.Event()

    def run() -> None:
        os.write(pty.slave, data)  # blocks until the reader has taken most of it
        pause.wait(3.0)  # three gaps of the call below
        os.write(pty.slave, b"tail")
        time.sleep(0.2)  # the tail at the master before the end
        pty.close_slave()

    writer = threading.Thread(target=run)
    writer.start()
    buffer = memoryview(bytearray(1 << 20))
    try:
        select.select([pty.master], [], [], 60)
        size, ended, _ = _gather_read()(pty.master, buffer, 1.0, 60.0)
    finally:
        pause.set()
        writer.join()
    assert (bytes(buffer[:size]), ended) == (data + b"tail", True)


def test_gather_read_of_a_pipe_sees_its_end_and_names_errors() -> None:
    r, w = os.pipe2(os.O_NONBLOCK)
    buffer = memoryview(bytearray(16))
    try:
        os.write(w, b"x" * 20)
        assert _gather_read()(r, buffer, 0.001, 1.0) == (16, False, False)
        os.close(w)
        assert _gather_read()(r, buffer, 0.001, 1.0) == (4, True, False)
        assert bytes(buffer[:4]) == b"xxxx"
    finally:
        os.close(r)
    with pytest.raises(OSError) as info:
        _gather_read()(r, buffer, 0.001, 1.0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(TypeError):
        _gather_read()(0, b"read-only", 0.001, 1.0)

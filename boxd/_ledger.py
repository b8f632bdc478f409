"""Output logged exactly once across a daemon's crash (with live restore).

With live restore a container's output pipes outlive the daemon (its shim holds them) and
the next daemon pumps on where the last one stopped.  A pump that reads a chunk (taking it
out of the pipe) and then logs it loses the chunk if it is killed in between: delivery at
most once, as dockerd's log copier has it.  Here a pump copies the chunk out without taking
it (``tee`` into a scratch pipe), notes in the container's ledger that it is about to log
so many bytes and where the log stood, logs them, takes them out of the pipe (``splice``
to /dev/null) and clears the note.

A next daemon finds a note only if the last one died in between.  If the log is where the
note says, nothing was logged and the chunk is still in the pipe: the pump logs it as any
other.  If the log moved on, some of the chunk is in it (a log write is many ``writev``
calls, and a torn record at the end is cut off when the log is opened): if the pipe still
starts with the chunk (its length, its first and its last bytes), what the log holds of it
is taken out and the rest logged as any other output.  Left: a death right after taking
the chunk out and before clearing the note, with a next chunk of the same length and ends
(a program repeating itself), takes that one for logged; so does a death in a write that
rotated the log when the file the chunk began in has been dropped (``max-file=1``).

The ledger is ``output.ledger`` in the container's directory: one fixed-size entry per
output stream, written with ``pwrite`` (page cache only: it is there for a daemon's death,
not the machine's).
"""

from __future__ import annotations

import fcntl
import importlib
import os
import struct
from collections.abc import Callable
from pathlib import Path

from ._atomic import write_file
from ._logs import LogWriter

LEDGER_NAME = "output.ledger"
# A note: its state, the chunk's length, the log's inode and size before the chunk, the
# chunk's first and last bytes (NUL-padded).
_NOTE = struct.Struct("=IIQQ32s32s")
_SAMPLE = 32
_SLOT_SIZE = 128
_SLOTS = 3  # a note's slot is its stream's id: stdout 1, stderr 2 (protocol)
_PENDING = 1
_CLEAR = bytes(_NOTE.size)


def _note(data: bytes, position: tuple[int, int]) -> bytes:
    return _NOTE.pack(_PENDING, len(data), *position, data[:_SAMPLE], data[-_SAMPLE:])


class Ledger:
    """A container's ledger, open for one run of its process."""

    def __init__(self, fd: int) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self._fd = fd
        self._devnull = -1
        self._tee: Callable[[int, int, int], int] = importlib.import_module("sandbox_native").tee

    @classmethod
    def create(cls, directory: Path) -> Ledger:
        """A new process's: no notes.  Their space is taken now: a note written later
        overwrites it and never needs a block a full disk would refuse."""
        write_file(str(directory / LEDGER_NAME), bytes(_SLOTS * _SLOT_SIZE), durable=False)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: Path) -> Ledger:
        """An adopted process's: as the last daemon left it (none if it kept no ledger)."""
        return cls(os.open(directory / LEDGER_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))

    def pipe(self, slot: int, fd: int, logs: LogWriter, stream: str, size: int) -> LoggedPipe:
        """The pump's reader of the (non-blocking) pipe ``fd``, whose chunks go to ``logs``
        as ``stream`` with note ``slot``; up to ``size`` bytes a chunk.  What a crashed
        daemon left noted is settled first."""
        if self._devnull < 0:
            self._devnull = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        pipe = LoggedPipe(self, slot * _SLOT_SIZE, fd, logs, stream, size)
        try:
            pipe.settle()
        except BaseException:
            pipe.close()
            raise
        return pipe

    def close(self) -> None:
        for fd in (self._fd, self._devnull):
            if fd >= 0:
                os.close(fd)
        self._fd = self._devnull = -1


class LoggedPipe:
    """One output pipe of a run with a ledger (see the module's docstring)."""

    def __init__(
        self, ledger: Ledger, offset: int, fd: int, logs: LogWriter, stream: str, size: int
    ) -> None:
        self._ledger = ledger
        self._offset = offset
        self._fd = fd
        self._logs = logs
        self._stream = stream
        self._size = size
        self._scratch_r, self._scratch_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            fcntl.fcntl(self._scratch_w, fcntl.F_SETPIPE_SZ, size)
        except BaseException:
            self.close()
            raise

    def read(self) -> tuple[bytes, bool]:
        """What the pipe holds now (up to the chunk size), left in it; and whether the
        output has ended."""
        data = self._peek(self._size)
        return (b"", True) if data is None else (data, False)

    def log(self, data: bytes) -> None:
        """Log ``data``, the chunk :meth:`read` gave, and take it out of the pipe."""
        ledger = self._ledger
        os.pwrite(ledger._fd, _note(data, self._logs.position()), self._offset)
        self._logs.write(self._stream, data)
        self._take(len(data))
        os.pwrite(ledger._fd, _CLEAR, self._offset)

    def settle(self) -> None:
        """Finish what a daemon's death left noted: take out of the pipe what of the
        chunk reached the log."""
        ledger = self._ledger
        note = os.pread(ledger._fd, _NOTE.size, self._offset)
        if len(note) < _NOTE.size or note == _CLEAR:
            return
        _, length, inode, size, _, _ = _NOTE.unpack(note)
        if self._logs.position() != (inode, size):  # (some of) it was logged
            data = self._peek(length) or b""
            if _note(data, (inode, size)) == note:  # and it is still in the pipe
                logged = self._logs.written_since(inode, size, self._stream)
                if logged is None:  # its file rotated out: taken as logged whole
                    self._take(length)
                elif data.startswith(logged):
                    self._take(len(logged))
        os.pwrite(ledger._fd, _CLEAR, self._offset)

    def close(self) -> None:
        for fd in (self._scratch_r, self._scratch_w):
            if fd >= 0:
                os.close(fd)
        self._scratch_r = self._scratch_w = -1

    def _peek(self, size: int) -> bytes | None:
        """Up to ``size`` bytes from the start of the pipe, left in it (b"": none now);
        None at the end of the output."""
        try:
            copied = self._ledger._tee(self._fd, self._scratch_w, size)
        except BlockingIOError:
            return b""
        if not copied:
            return None
        return os.read(self._scratch_r, copied)

    def _take(self, size: int) -> None:
        while size > 0:
            size -= os.splice(self._fd, self._ledger._devnull, size, flags=os.SPLICE_F_NONBLOCK)

"""Holding a process's reads of a file with fanotify permission events (the kernel's, not
a mock): the reader blocks in read(2) until the test lets it go.  Used to catch the
daemon in the middle of unpacking a layer, without timing."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs

FAN_CLOEXEC = 0x1
FAN_CLASS_CONTENT = 0x4
FAN_MARK_ADD = 0x1
FAN_OPEN_PERM = 0x10000
FAN_ACCESS_PERM = 0x20000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ALLOW = 0x1
_METADATA = struct.Struct("IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]


@attrs.define(eq=False)
class Hold:
    """What was seen of the file: its opens and reads; ``held`` is set while a read waits."""

    name: str
    allow: int
    opens: int = 0
    reads: int = 0
    held: threading.Event = attrs.Factory(threading.Event)
    _waiting: list[int] = attrs.Factory(list)
    _released: bool = False
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def release(self) -> None:
        """Let the held read, and every later one, go."""
        with self._lock:
            self._released = True
            waiting, self._waiting = self._waiting, []
        for fd in waiting:
            _answer(self._group, fd)

    _group: int = -1


def _answer(group: int, fd: int) -> None:
    with contextlib.suppress(OSError):  # the reader may be gone (killed)
        os.write(group, struct.pack("iI", fd, FAN_ALLOW))
    os.close(fd)


@contextlib.contextmanager
def holding_reads(directory: Path, name: str, allow: int = 1) -> Iterator[Hold]:
    """Every open and read of the files in ``directory`` is allowed at once, except the
    reads of ``name`` after its first ``allow``: those wait until :meth:`Hold.release`
    (or the end of the context)."""
    group = _libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT, os.O_RDONLY | os.O_CLOEXEC)
    if group < 0:
        raise OSError(ctypes.get_errno(), "fanotify_init")
    mask = FAN_OPEN_PERM | FAN_ACCESS_PERM | FAN_EVENT_ON_CHILD
    if _libc.fanotify_mark(group, FAN_MARK_ADD, mask, -1, os.fsencode(directory)) < 0:
        os.close(group)
        raise OSError(ctypes.get_errno(), f"fanotify_mark {directory}")
    hold = Hold(name, allow, group=group)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if not select.select([group], [], [], 0.05)[0]:
                continue
            data = os.read(group, 4096)
            for offset in range(0, len(data), _METADATA.size):
                _, _, _, _, event, fd, _ = _METADATA.unpack_from(data, offset)
                try:
                    mine = os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == name
                except OSError:
                    mine = False
                with hold._lock:
                    if mine and event & FAN_OPEN_PERM:
                        hold.opens += 1
                    if mine and event & FAN_ACCESS_PERM:
                        hold.reads += 1
                        if hold.reads > allow and not hold._released:
                            hold._waiting.append(fd)
                            hold.held.set()
                            continue
                _answer(group, fd)

    thread = threading.Thread(target=serve, name="held-reads", daemon=True)
    thread.start()
    try:
        yield hold
    finally:
        stop.set()
        thread.join()
        hold.release()
        os.close(group)  # what is still pending is allowed by the kernel

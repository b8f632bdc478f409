"""A container's terminal output, read in a thread of its own while it flows.

A PTY master gives at most 4 KiB a read, and a read after the line discipline's buffer ran
dry waits for a kernel worker to refill it (even on a non-blocking fd): 256 MiB are some
65,000 reads with a sleep and a wakeup each, and whenever the master is not read the
container's writes wait.  So while output flows a thread does nothing but read it,
gathering it into chunks of up to :data:`READ_SIZE`, and the Trio thread logs and sends the
chunk before while the next one is read (each chunk costs one log write and one send, not
one per 4 KiB).  A chunk is gathered in one call of the C extension
(``sandbox_native.gather_read``) that holds no GIL: in Python the reader took the GIL back
for every read and poll, three hand-offs with the Trio thread per 4 KiB.  The thread ends
when the output pauses for :data:`IDLE`; the pump then waits for the master in Trio again,
so a quiet terminal holds no thread.

Where the container has a v1 cpu cgroup of its own, the reader reads in it and waits in the
readers' own between reads (``Cgroup.reading_groups``): every 4 KiB is a wakeup of the
reader by the container's writer or the other way round, and across two CPU groups the
scheduler serves those ~30% later (bench/README).  The reader is a thread of its own for
that, which ends with its burst of output: a thread of Trio's cache would go back to other
work in the readers' group.

Whatever was read is logged, even when the pump is cancelled (a daemon leaving with live
restore): chunks not handed on yet are written to the log before the pump returns.  The
output ends at an EIO that lasts :data:`END_SETTLE` (under load the master read EIO
before the last writes had reached it, and the tail of a `run -t` was lost), or at one
read after the process was reaped (no writer is left then): every `run -t` ended 10 ms
after its process.  Until the
process has ended that EIO is a hangup, not the end: no slave fd is open for a moment
(a getty's ``vhangup()``: systemd's console-getty on /dev/console), and the container
opens its terminal again.  The pump then looks every :data:`HANGUP_RETRY` whether it has,
as conmon does (containerd's shim waits for the master too): ended there, the rest of
the output was lost and the container's writes to its console blocked once the
terminal's buffer was full.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import select
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

import outcome
import trio

log = logging.getLogger(__name__)
# The reader's CPU groups (Cgroup.reading_groups): a context manager of two open `tasks`
# files, the container's v1 cpu cgroup's and the readers' own, or None.
Groups = Callable[[], AbstractContextManager[tuple[int, int] | None]]

# The most one chunk holds.
READ_SIZE = 1024 * 1024
# A chunk is handed on once the writer paused for COALESCE_GAP, or COALESCE_LIMIT after its
# first bytes (what a user sees is late by at most that).  A chunk of 64 KiB or more is a
# stream, not a screen being drawn: a pause in it hands it on after COALESCE_LIMIT, so that
# the reader's waits are not shorter than the scheduler's tick (sandbox_native/gather.c),
# and the end of a stream is late by at most twice COALESCE_LIMIT.
COALESCE_GAP = 0.001
COALESCE_LIMIT = 0.01
# The reader thread ends after this long without output.
IDLE = 0.05
# Chunks handed to the Trio thread and not yet sent: the reader waits above this (the client
# that started the container gets every byte, so a slow one slows the container).
IN_FLIGHT = 2
# How often a reader waiting for room checks whether it was told to stop.
STOP_CHECK = 0.05
# The end of output: EIO for this long, read again every END_RETRY (see _Reader.run).
END_SETTLE = 0.01
END_RETRY = 0.001
# While the process runs and no slave fd is open (hung up): how often to look again.
HANGUP_RETRY = 0.05

THREAD_NAME = "boxd pty reader"
# Read buffers of finished reader threads, for the next ones; at most KEPT_BUFFERS stay
# (terminals printing at once beyond that read into buffers of their own, freed after),
# until the daemon is idle again (release_kept_buffers).
KEPT_BUFFERS = 2
_buffers: list[memoryview] = []


def release_kept_buffers() -> None:
    """Free the kept read buffers (1 MiB each, resident once a terminal printed that much):
    a daemon whose terminals are done does not hold them."""
    _buffers.clear()


def _kept_buffer() -> memoryview:
    try:  # (another thread may take or release the last one meanwhile)
        return _buffers.pop()
    except IndexError:
        return memoryview(bytearray(READ_SIZE))


class _Reader:
    """The reader thread's side: reads chunks and hands them to ``deliver`` (called in the
    Trio thread, in order; it must not raise) until the output ends, pauses for IDLE, or
    :attr:`stop` is set."""

    def __init__(
        self, fd: int, deliver: Callable[[bytes], None], groups: tuple[int, int] | None = None
    ) -> None:
        self.fd = fd
        self.groups = groups
        self.stop = threading.Event()
        # Set once the process has been reaped (the pump's ``reaped``): see run().
        self.reaped = threading.Event()
        self.room = threading.Semaphore(IN_FLIGHT)  # released as chunks are sent
        self._deliver = deliver
        self._token = trio.lowlevel.current_trio_token()

    def run(self) -> bool:
        """Whether the output has ended (EIO: the last slave fd is closed)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        buffer = _kept_buffer()
        # By name: mypy would take the sandbox_native/ source directory for the module.
        gather = importlib.import_module("sandbox_native").gather_read
        ended_since: float | None = None
        try:
            group, home = self.groups or (-1, -1)
            while not self.stop.is_set():
                after_reap = self.reaped.is_set()
                size, ended, stayed = gather(
                    self.fd, buffer, COALESCE_GAP, COALESCE_LIMIT, group, home
                )
                if stayed:  # its cgroup gone under it: it reads where it is from now on
                    log.warning("a terminal's reader could not leave the container's CPU group")
                    group = home = -1
                if size:
                    while not self.room.acquire(timeout=STOP_CHECK) and not self.stop.is_set():
                        pass
                    # Delivered even when told to stop: it is logged then.
                    self._token.run_sync_soon(self._deliver, bytes(buffer[:size]))
                if ended:
                    # The master can read EIO before the last writes reach it (seen under
                    # load: 4,608 bytes read after one): the end is an EIO that lasts
                    # END_SETTLE with nothing read (the master polls ready meanwhile), or
                    # one with nothing read by a read begun after the process was reaped:
                    # its writers are gone then (a container's init is reaped after the
                    # rest of its PID namespace), and the kernel moves what they wrote to
                    # the master before a read of it fails with EIO.
                    now = time.monotonic()
                    if size or ended_since is None:
                        ended_since = now
                    if (after_reap and not size) or now - ended_since >= END_SETTLE:
                        return True
                    self.reaped.wait(END_RETRY)
                    continue
                ended_since = None
                if not size and not poller.poll(IDLE * 1000):
                    return False
            return False
        finally:
            if len(_buffers) < KEPT_BUFFERS:
                _buffers.append(buffer)


async def pump(
    fd: int,
    keep: Callable[[bytes], None],
    publish: Callable[[bytes], Awaitable[None]],
    groups: Groups | None = None,
    reaped: trio.Event | None = None,
) -> None:
    """Hand on the output of the non-blocking PTY master ``fd`` until it ends: each chunk
    to ``keep`` (the log: synchronous, at once) and then to ``publish``; the reader in the
    CPU groups of ``groups`` (see the module's docstring).  Until ``reaped`` is set (the
    process has ended) a hangup is waited out, not taken for the end."""
    while True:
        await trio.lowlevel.wait_readable(fd)
        with groups() if groups is not None else contextlib.nullcontext() as opened:
            ended = await _burst(fd, keep, publish, opened, reaped)
        if ended:
            if reaped is None or reaped.is_set():
                return
            await _hung_up(fd, reaped)


async def _hung_up(fd: int, reaped: trio.Event) -> None:
    """Return once a slave fd of the master ``fd`` is open again, output waits in it, or
    ``reaped`` is set.  The master polls ready (POLLHUP) all the while no slave is open,
    so the pump cannot wait for it to be readable meanwhile."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not reaped.is_set():
        ready = poller.poll(0)
        events = ready[0][1] if ready else 0
        if not events & select.POLLHUP or events & select.POLLIN:
            return
        with trio.move_on_after(HANGUP_RETRY):
            await reaped.wait()


async def _burst(
    fd: int,
    keep: Callable[[bytes], None],
    publish: Callable[[bytes], Awaitable[None]],
    groups: tuple[int, int] | None,
    reaped: trio.Event | None,
) -> bool:
    """Read in a thread of its own until the output pauses or ends (True)."""
    # Unbounded, but the reader waits for room (IN_FLIGHT) unless told to stop.  The thread
    # delivers its chunks before it says it has ended (both go through the Trio token, in
    # order), so once the nursery is done nothing more arrives.
    send, receive = trio.open_memory_channel[bytes](math.inf)
    reader = _Reader(fd, send.send_nowait, groups)
    watching = trio.CancelScope()

    async def watch() -> None:
        # The thread is not cancellable (run_sync waits for it): told to stop, it does
        # within STOP_CHECK, or twice COALESCE_LIMIT when reading.  It is told when the process
        # is reaped too.
        with watching:
            try:
                if reaped is not None:
                    await reaped.wait()
                    reader.reaped.set()
                await trio.sleep_forever()
            finally:
                reader.stop.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_all, receive, keep, publish, reader.room)
            nursery.start_soon(watch)
            try:
                ended = await _in_own_thread(reader.run)
            finally:
                send.close()
                watching.cancel(reason="the reader ended")
    finally:
        # Cancelled: what was read and not sent yet still goes to the log.
        while True:
            try:
                keep(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
    return ended


async def _in_own_thread(run: Callable[[], bool]) -> bool:
    """``run()`` in a new thread, which ends with it (see the module's docstring; a terminal
    printing without end must not hold one of the shared worker threads either, nor wait
    for one).  Not cancellable, as ``trio.to_thread.run_sync``: the reader is told to stop
    instead, and stops within STOP_CHECK or twice COALESCE_LIMIT."""
    token = trio.lowlevel.current_trio_token()
    finished = trio.Event()
    result: list[outcome.Outcome[bool]] = []

    def body() -> None:
        result.append(outcome.capture(run))
        token.run_sync_soon(finished.set)

    thread = threading.Thread(target=body, name=THREAD_NAME, daemon=True)
    with trio.CancelScope(shield=True):
        thread.start()
        await finished.wait()
        # Its last steps after the call above: joined in a worker, not on the loop.
        await trio.to_thread.run_sync(thread.join)
    return result[0].unwrap()


async def _send_all(
    receive: trio.MemoryReceiveChannel[bytes],
    keep: Callable[[bytes], None],
    publish: Callable[[bytes], Awaitable[None]],
    room: threading.Semaphore,
) -> None:
    async for chunk in receive:
        keep(chunk)
        await publish(chunk)
        room.release()

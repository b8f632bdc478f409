"""A container's output sent on line by line to a log server: the syslog, journald, gelf,
fluentd and splunk log drivers (boxd/_syslog.py, boxd/_journald.py, boxd/_gelf.py,
boxd/_fluentd.py, boxd/_splunk.py).

As Docker's log copier hands lines to its drivers: a chunk's whole lines go at once and its
rest waits for the next chunk of the stream, an empty line is not sent, a line longer than
:data:`MESSAGE_MAX` goes in pieces (each but the last a partial message), and an unfinished
last line goes when its stream ends.  A message whose send fails is sent again on a new
connection (once, or as a driver's options say: gelf's over TCP), then dropped, with a
warning in the daemon's log once per run of failures (srslog, go-systemd's journal and
go-gelf retry or fail the same way, and Docker's copier drops what its driver refused).

The sends happen in the output's pump (boxd/_run.py), before a chunk leaves the
container's pipe for its log: a server that does not take them holds the container's
output, as Docker's blocking mode does, and a daemon killed meanwhile leaves the chunk to
the next, which sends it again.  In Docker's non-blocking mode (``--log-opt
mode=non-blocking``) the pump only queues the messages (:class:`Ring`, at most
``max-buffer-size`` bytes of lines, 1 MB by default; a line that does not fit is dropped, as
Docker's ring buffer drops it) and a task of the run's sends them: a slow or absent server
never holds the container, and what is queued when the daemon stops or is killed is lost.
"""

from __future__ import annotations

import abc
import collections
import logging
import secrets
import socket
import ssl
from typing import Any

import trio

from . import protocol

log = logging.getLogger(__name__)

# Docker's log copier hands on at most this much of a line at once.
MESSAGE_MAX = 16 * 1024
CONNECT_TIMEOUT = 10.0  # seconds, for a server at a start or a reconnection
# Sends of a chunk's lines between two turns of the other tasks (~1 ms of them).
LINES_A_TURN = 256
# The severity of a stdout and of a stderr line: syslog's info and err, which journald's
# PRIORITY and GELF's level take too.
INFO, ERR = 6, 3


def severity(stream: int) -> int:
    return ERR if stream == protocol.STDERR else INFO


# Docker's ring buffer's size in non-blocking mode without a max-buffer-size.
RING_BYTES = 1_000_000


class Ring:
    """The messages a non-blocking sender has queued for its task (see :meth:`LineSender.
    drain`): at most ``max_bytes`` of lines (counted as Docker counts them, the line's own
    bytes) and, where the driver has a count too, ``max_messages``.  A message that does not
    fit is dropped, unless the queue is empty (Docker's ring takes one however large)."""

    def __init__(self, max_bytes: int, max_messages: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.queue: collections.deque[tuple[bytes, int]] = collections.deque()
        self.size = 0
        self.dropped = 0  # messages dropped in all
        self.changed = trio.lowlevel.ParkingLot()

    def put(self, data: bytes, size: int) -> bool:
        """Queue ``data`` (for a line of ``size`` bytes); False: dropped, the ring full."""
        if self.queue and (
            self.size + size > self.max_bytes
            or (self.max_messages is not None and len(self.queue) >= self.max_messages)
        ):
            self.dropped += 1
            return False
        self.queue.append((data, size))
        self.size += size
        self.changed.unpark_all()
        return True

    def taken(self) -> None:
        """The first message is sent (or given up on): it leaves the queue."""
        _, size = self.queue.popleft()
        self.size -= size
        self.changed.unpark_all()


class LineSender(abc.ABC):
    """One container's connection to its log server, and its lines not yet whole."""

    def __init__(self, what: str) -> None:
        self._what = what  # the container, for the daemon's log
        self._pending: dict[int, bytes] = {}
        self._failing = False
        self.retries = 1  # sends of a message again after a failed one, each reconnecting
        self.retry_delay = 0.0  # seconds before each of them
        self.connects_at_start = True  # False: at its first send (a failure fails no start)
        self.ring: Ring | None = None  # non-blocking: the queue that drain() sends from
        self._pieces: dict[int, tuple[str, int]] = {}  # a stream's line in pieces: id, count

    async def open(self) -> None:
        """Connect (OSError, naming the server, when none answers)."""
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                await self._connect()
        except trio.TooSlowError:
            raise OSError(f"{self.where()}: no answer in {CONNECT_TIMEOUT:g} s") from None

    @abc.abstractmethod
    def where(self) -> str:
        """The server, as a message names it."""

    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    def connected(self) -> bool: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        """What is sent for ``text``, a line of ``stream`` without its newline (``partial``:
        a piece of a longer line, or the unfinished last one)."""

    @abc.abstractmethod
    async def _deliver(self, data: bytes) -> None: ...

    def _retry_wait(self, attempt: int) -> float:
        """Seconds before ``attempt`` (1 for the first retry)."""
        return self.retry_delay

    def piece(self, stream: int, partial: bool) -> tuple[str, int, bool] | None:
        """Docker's metadata of a line in pieces (its copier's PartialLogMetaData) for the
        message :meth:`_message` makes: the line's id, the piece's ordinal from 1 and
        whether it is the last; None for a line sent whole."""
        if not partial and stream not in self._pieces:
            return None
        ident, count = self._pieces.pop(stream, ("", 0))
        ident = ident or secrets.token_hex(32)
        if partial:
            self._pieces[stream] = (ident, count + 1)
        return ident, count + 1, not partial

    async def send(self, stream: int, data: bytes) -> None:
        """Send the whole lines of a chunk of ``stream`` (its rest waits for the next)."""
        data = self._pending.pop(stream, b"") + data
        start = count = 0
        while (end := data.find(b"\n", start)) >= 0 or len(data) - start >= MESSAGE_MAX:
            stop = min(end + 1 if end >= 0 else len(data), start + MESSAGE_MAX)
            await self._line(stream, data[start:stop])
            start = stop
            count += 1
            if count % LINES_A_TURN == 0:  # a chunk of short lines: others have turns
                await trio.lowlevel.checkpoint()
        if start < len(data):
            self._pending[stream] = data[start:]

    async def flush(self, stream: int) -> None:
        """The end of ``stream``: its last line, without a newline, goes now."""
        if rest := self._pending.pop(stream, b""):
            await self._line(stream, rest)

    async def _line(self, stream: int, line: bytes) -> None:
        if line in (b"\n", b""):
            return  # Docker's copier hands on no empty message
        partial = not line.endswith(b"\n")
        text = line if partial else line[:-1]
        data = self._message(stream, text, partial)
        if self.ring is None:
            await self._deliver_trying(data)
        elif not self.ring.put(data, len(text)) and self.ring.dropped == 1:
            log.warning(
                "%s: log lines to %s dropped: the non-blocking mode's buffer is full (%d "
                "bytes; the count at the container's end)",
                self._what,
                self.where(),
                self.ring.max_bytes,
            )

    async def drain(self) -> None:
        """Non-blocking mode's task: send the ring's messages as they come (cancelled at
        the run's end, after :meth:`sent`)."""
        ring = self.ring
        assert ring is not None
        while True:
            while not ring.queue:
                await ring.changed.park()
            await self._deliver_trying(ring.queue[0][0])
            ring.taken()

    async def sent(self, stall: float, limit: float) -> None:
        """The run's end in non-blocking mode: wait for the ring's messages to be sent
        while one goes at least every ``stall`` seconds, at most ``limit`` seconds in all;
        what is left then is lost (said in the daemon's log)."""
        ring = self.ring
        if ring is None:
            return
        with trio.move_on_after(limit):
            while ring.queue:
                with trio.move_on_after(stall) as waited:
                    await ring.changed.park()
                if waited.cancelled_caught:
                    break
        if ring.queue or ring.dropped:
            log.warning(
                "%s: log lines not sent to %s: %d dropped (the buffer full), %d left unsent "
                "at the container's end",
                self._what,
                self.where(),
                ring.dropped,
                len(ring.queue),
            )

    async def _deliver_trying(self, data: bytes) -> None:
        for attempt in range(self.retries + 1):
            if attempt and (wait := self._retry_wait(attempt)):
                await trio.sleep(wait)
            try:
                if not self.connected():
                    await self.open()
                await self._deliver(data)
            except (OSError, trio.BrokenResourceError) as exc:
                self.close()
                if self._failing:
                    continue
                if attempt == self.retries:  # said once for a run of failures
                    log.warning(
                        "%s: a log line not sent to %s (dropped until a send works): %s",
                        self._what,
                        self.where(),
                        exc,
                    )
                    self._failing = True
                elif attempt == 1:  # a server away: its lines wait while it is tried again
                    log.warning(
                        "%s: log lines to %s wait: %s (tried again up to %d times, then dropped)",
                        self._what,
                        self.where(),
                        exc,
                        self.retries,
                    )
                    self._failing = True
            else:
                if self._failing:
                    log.info("%s: log lines go to %s again", self._what, self.where())
                self._failing = False
                return


class SocketSender(LineSender):
    """A sender whose connection is one socket: a connected datagram one, or a stream, or
    a TLS connection over TCP.  Its sends are the socket's own, non-blocking, waiting in
    Trio only when the socket is full (Trio's ``send`` costs two checkpoints a call: ~9 us
    of a line's ~12); a TLS connection's go through Trio's SSLStream."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self._sock: socket.socket | None = None
        self._tls: trio.SSLStream[trio.SocketStream] | None = None

    def connected(self) -> bool:
        return self._sock is not None or self._tls is not None

    def close(self) -> None:
        if self._sock is not None:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        self._sock = None
        if self._tls is not None:
            sock = self._tls.transport_stream.socket  # (a SocketStream's)
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self._tls = None

    async def _connect_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """A TLS connection to ``host``:``port``, its certificate checked as ``context``
        says (a failed handshake: OSError naming why)."""
        connected = await trio.open_tcp_stream(host, port)
        tls = trio.SSLStream(connected, context, server_hostname=host)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:  # the TLS handshake's failure, named
            await trio.aclose_forcefully(tls)
            raise OSError(f"TLS with {host}:{port}: {exc.__cause__ or exc}") from None
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        self._tls = tls

    async def _receive(self, size: int) -> bytes:
        """What the server sent next (b"": it closed the connection)."""
        if self._tls is not None:
            return bytes(await self._tls.receive_some(size))
        sock = self._sock
        assert sock is not None
        while True:
            try:
                return sock.recv(size)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)

    async def _deliver(self, data: bytes) -> None:
        if self._tls is not None:
            try:
                await self._tls.send_all(data)
            except trio.BrokenResourceError as exc:
                raise OSError(f"the TLS connection broke: {exc.__cause__ or exc}") from None
            return
        sock = self._sock
        assert sock is not None
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            if sock.type == socket.SOCK_DGRAM:
                return  # a datagram goes whole or not at all
            view = view[sent:]


async def datagram(family: int, address: str | tuple[Any, ...]) -> socket.socket:
    """A non-blocking datagram socket connected to ``address``."""
    sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        sock.connect(address)  # a datagram socket's connect does not wait
    except BaseException:
        sock.close()
        raise
    await trio.lowlevel.checkpoint()
    return sock


async def stream(connected: trio.SocketStream) -> socket.socket:
    """The non-blocking socket of a stream Trio connected (its TCP or Unix connection)."""
    trio_socket = connected.socket
    assert isinstance(trio_socket, trio.socket.SocketType)
    sock = socket.socket(fileno=trio_socket.detach())
    sock.setblocking(False)
    await trio.lowlevel.checkpoint()
    return sock

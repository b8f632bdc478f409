"""Fan-out of a container's output to attached clients.

The pump must never wait for a client: each subscriber gets a bounded buffer, and a
subscriber whose buffer is full is dropped (its channel closed, so its connection ends)
rather than slowing the container or the other clients.  The log gets everything anyway.
"""

from __future__ import annotations

import collections
import errno
import socket

import trio

from . import protocol

Chunk = tuple[int, bytes]  # (protocol.STDOUT or protocol.STDERR, data)

SUBSCRIBER_BUFFER = 64  # chunks; a pump hands on at most 1 MiB at once (_run.READ_SIZE)
# And bytes: 64 chunks of up to 1 MiB each would be 64 MiB held for one slow client.
SUBSCRIBER_BYTES = 4 * 1024 * 1024
# A lossless subscriber's: the pump waits above this, so what the daemon holds for a slow
# foreground client stays a few MiB (its pipe and socket buffers aside).
LOSSLESS_BUFFER = 4
# An attached client's socket takes this much output before a send waits for the client to
# read (Linux's default, ~208 KiB, makes a 1 MiB chunk five sends and four waits).
SEND_BUFFER = 4 * 1024 * 1024
SO_SNDBUFFORCE = 32  # Linux's; the socket module does not name it


def widen_send_buffer(stream: trio.abc.Stream) -> None:
    """Give an attached client's socket :data:`SEND_BUFFER` (SO_SNDBUFFORCE: the daemon runs
    as root; otherwise as much as net.core.wmem_max allows)."""
    if not isinstance(stream, trio.SocketStream):
        return
    try:
        stream.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SEND_BUFFER)
    except OSError:  # not privileged
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


async def send_framed(stream: trio.abc.Stream, head: bytes, data: bytes) -> None:
    """Send a chunk of output behind its frame's ``head``, a large one without copying it
    to put the head in front of it: both in one ``sendmsg`` (the client wakes once a
    frame, not for a head alone), the rest by ``send_all`` where the socket took part of
    it.  A small chunk, and a stream that is not a socket (a WebSocket's: each
    ``send_all`` is a message), get them joined."""
    if len(data) < protocol.COPY_LIMIT or not isinstance(stream, trio.SocketStream):
        await stream.send_all(head + data)
        return
    try:
        sent = await stream.socket.sendmsg([head, data])
    except OSError as exc:  # as send_all has them: the client gone, the stream closed
        if exc.errno == errno.EBADF:
            raise trio.ClosedResourceError("the connection was already closed") from None
        raise trio.BrokenResourceError(f"the client's connection broke: {exc}") from exc
    if sent < len(head):
        await stream.send_all(head[sent:])
        sent = len(head)
    if sent - len(head) < len(data):
        await stream.send_all(memoryview(data)[sent - len(head) :])


class _Backlog:
    """The bytes a subscriber's channel holds: the sizes of the chunks sent to it, oldest
    first, less those its reader has taken (the channel is first in, first out, so the
    number it still holds tells which)."""

    def __init__(self) -> None:
        self.sizes: collections.deque[int] = collections.deque()
        self.total = 0

    def settle(self, held: int) -> None:
        while len(self.sizes) > held:
            self.total -= self.sizes.popleft()

    def add(self, size: int) -> None:
        self.sizes.append(size)
        self.total += size


class Output:
    def __init__(self) -> None:
        self._subscribers: dict[trio.MemorySendChannel[Chunk], _Backlog] = {}
        self._lossless: set[trio.MemorySendChannel[Chunk]] = set()
        self._closed = False
        # Chunks a lossless subscriber's channel took: it reads on while this grows.
        self.taken = 0

    def subscribe(self, *, lossless: bool = False) -> trio.MemoryReceiveChannel[Chunk]:
        """A channel of what the container writes from now on; it ends with the output.

        ``lossless``: the client that started the container in the foreground gets every
        byte, so the container waits for it (backpressure, as a pipe would); other
        attached clients are dropped when they fall behind (more than
        :data:`SUBSCRIBER_BUFFER` chunks or :data:`SUBSCRIBER_BYTES` bytes not yet read)."""
        # Those whose client has gone (their receiving side closed) are forgotten here
        # too, not only at the next output: a quiet container attached to again and again
        # held every attach's channel.
        for old in [*self._subscribers, *self._lossless]:
            if not old.statistics().open_receive_channels:
                self._drop(old)
        size = LOSSLESS_BUFFER if lossless else SUBSCRIBER_BUFFER
        send, receive = trio.open_memory_channel[Chunk](size)
        if self._closed:
            send.close()
        elif lossless:
            self._lossless.add(send)
        else:
            self._subscribers[send] = _Backlog()
        return receive

    async def publish(self, stream: int, data: bytes) -> None:
        for send in list(self._lossless):
            try:
                await send.send((stream, data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lossless.discard(send)
            else:
                self.taken += 1
        for send, backlog in list(self._subscribers.items()):
            backlog.settle(send.statistics().current_buffer_used)
            if backlog.total and backlog.total + len(data) > SUBSCRIBER_BYTES:
                self._drop(send)  # too slow: dropping it is better than holding its output
                continue
            try:
                send.send_nowait((stream, data))
            except trio.WouldBlock:
                # Too slow: dropping it is better than blocking everyone else.
                self._drop(send)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(send)
            else:
                backlog.add(len(data))

    def _drop(self, send: trio.MemorySendChannel[Chunk]) -> None:
        self._subscribers.pop(send, None)
        self._lossless.discard(send)
        send.close()

    def close(self) -> None:
        """End of output: every subscriber sees the end of its channel."""
        self._closed = True
        for send in [*self._subscribers, *self._lossless]:
            self._drop(send)

    @property
    def closed(self) -> bool:
        return self._closed

"""A WebSocket over a hijacked connection, for ``GET /containers/{id}/attach/ws`` (the
attach that browser consoles such as Portainer's use).

The protocol is wsproto's (python-hyper's, the sans-I/O library made to pair with h11,
which has already parsed the upgrade request); this module only moves its bytes.  The
connection is seen as a :class:`trio.abc.HalfCloseableStream` of bytes, so the attach
streams through it as through a raw one: each ``send_all`` is one message, each
``receive_some`` the data of the client's messages, and the end of input a close.
"""

from __future__ import annotations

import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from ._api import READ_SIZE
from ._http import ApiError, HttpConnection
from ._http import Request as HttpRequest


class WebSocketStream(trio.abc.HalfCloseableStream):
    """The messages of an accepted WebSocket as a stream of bytes.  ``text``: output is
    sent as text messages (API before 1.28, as Docker sends it), else as binary ones."""

    def __init__(
        self, raw: trio.abc.Stream, ws: wsproto.WSConnection, leftover: bytes, *, text: bool
    ) -> None:
        self._raw = raw
        self._ws = ws
        self._text = text
        self._sending = trio.Lock()  # output and the answers to pings and closes
        self._input = bytearray()
        self._ended = False
        ws.receive_data(leftover)  # what the client sent past its handshake: read first

    async def _send(self, event: wsproto.events.Event) -> None:
        async with self._sending:
            await self._raw.send_all(self._ws.send(event))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            raise trio.ClosedResourceError("the WebSocket is closed")
        if self._text:
            await self._send(TextMessage(data=bytes(data).decode("utf-8", "replace")))
        else:
            await self._send(BytesMessage(data=bytes(data)))

    async def wait_send_all_might_not_block(self) -> None:
        await self._raw.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Close our side with a close message (the output has ended)."""
        if self._ws.state is ConnectionState.OPEN:
            await self._send(CloseConnection(code=1000))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The data of the client's next messages; b"" once it has closed (or gone)."""
        await self._take_events()
        while not self._input and not self._ended:
            data = await self._raw.receive_some(READ_SIZE)
            self._ws.receive_data(bytes(data) if data else None)
            await self._take_events()
        size = len(self._input) if max_bytes is None else max_bytes
        chunk = bytes(self._input[:size])
        del self._input[:size]
        return chunk

    async def _take_events(self) -> None:
        try:
            events = list(self._ws.events())
        except RemoteProtocolError as exc:
            self._ended = True
            raise trio.BrokenResourceError(f"bad WebSocket data: {exc}") from None
        for event in events:
            if isinstance(event, TextMessage):
                self._input += event.data.encode()
            elif isinstance(event, BytesMessage):
                self._input += event.data
            elif isinstance(event, Ping):
                await self._send(event.response())
            elif isinstance(event, CloseConnection):
                self._ended = True
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._send(event.response())
        if self._ws.state is ConnectionState.CLOSED:
            self._ended = True

    async def aclose(self) -> None:
        await self._raw.aclose()


async def accept(conn: HttpConnection, req: HttpRequest) -> WebSocketStream:
    """Answer the upgrade request ``req`` and make its connection a WebSocket.  A request
    that is not a WebSocket handshake is refused (400) by what it lacks."""
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in req.headers.items()
    ]
    try:
        ws.initiate_upgrade_connection(headers, req.path)
        (request,) = ws.events()
    except RemoteProtocolError as exc:
        raise ApiError(400, f"not a WebSocket handshake: {exc}") from None
    assert isinstance(request, Request)
    conn.hijacked = True
    await conn.send_raw(ws.send(AcceptConnection()))
    leftover = conn.h11.trailing_data[0]
    stream = WebSocketStream(conn.stream, ws, leftover, text=not req.at_least("1.28"))
    conn.stream = stream
    return stream

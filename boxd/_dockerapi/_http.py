"""HTTP/1.1 for the Engine API: h11 parses and frames (sans-IO), this is the thin Trio layer.

One :class:`HttpConnection` per accepted socket.  A connection carries requests one after
another (keep-alive); a response is a whole body, a chunked stream (logs, stats, wait), or
a hijack: after ``101 UPGRADED`` (the client asked with ``Upgrade: tcp``) or a plain ``200``
the socket carries raw bytes both ways, as the docker CLI expects for attach and exec.
"""

from __future__ import annotations

import fcntl
import json
import math
import re
import socket
import struct
import termios
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import h11
import trio

MAX_BODY = 16 << 20
# A request's line and headers: dockerd's limit (Go's http.DefaultMaxHeaderBytes), which a
# user's X-Registry-Config or X-Registry-Auth with many registries may come near.
MAX_HEADERS = 1 << 20
# What every connection may hold of a head; the bytes beyond, up to MAX_HEADERS each, come
# from a room all connections share (see HeadRoom): a thousand connections each sending a
# MiB slowly hold HEADS_ROOM, not a GiB.
SMALL_HEAD = 64 << 10
HEADS_ROOM = 16 << 20
READ_SIZE = 65536
# How long a connection ended with input unread (a hijacked stream's, a refused request's
# body) reads what its client still sends, waiting for it to close its side (see
# HttpConnection.close_gently).
LINGER = 5.0
# How long a hijack waits for its client to read the answer's head before the stream's
# first byte goes out (see HttpConnection.hijack).
HEAD_READ_WAIT = 2.0
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
PLAIN_TEXT = "text/plain; charset=utf-8"  # Go's http.Error
API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
# Any digits and dots, as Docker's router takes them: /v1/... is a version (too old).
_VERSIONED = re.compile(r"/v([0-9.]+)(/.*)\Z")


# The reason phrases of the statuses the API answers with, as dockerd's Go net/http writes
# them (docker-py's errors quote them: "404 Client Error: Not Found for url ..."); any other
# status takes http.HTTPStatus's phrase (its enum, ~0.1 MB, imported only then).
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def reason(status: int) -> str:
    """The reason phrase of ``status``'s status line."""
    known = _REASONS.get(status)
    if known is not None:
        return known
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def _number(part: str) -> int:
    try:
        return int(part)
    except ValueError:  # empty, or too long to convert
        return 0


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.44"`` as ``(1, 44)``, to compare API versions as Docker compares them: a
    part that is not a number is 0, and missing parts are 0 (``1.44.0`` is ``1.44``)."""
    parts = [_number(p) for p in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


class ApiError(Exception):
    """A request refused with Docker's error shape: ``{"message": ...}`` and a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PeerGone(Exception):
    """The client closed the connection or broke HTTP; nothing more can be said to it."""


@attrs.frozen
class Request:
    method: str
    path: str  # without the /v1.xx prefix
    version: str | None  # the prefix's API version, if any
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def at_least(self, version: str) -> bool:
        """Whether the client speaks API ``version`` or newer: its path's ``/v1.xx``, else
        the newest, as Docker reads a path without one.  Shapes and defaults that changed
        between versions follow this."""
        return version_tuple(self.version or API_VERSION) >= version_tuple(version)

    @property
    def upgrade(self) -> bool:
        """Whether it proposes to take the connection over: an Upgrade header (dockerd
        looks for that alone; Go's clients may send no Connection: Upgrade with it), or
        Connection: Upgrade."""
        return "upgrade" in self.headers or "upgrade" in self.headers.get("connection", "").lower()

    def arg(self, name: str) -> str | None:
        """A query parameter; the first of a repeated one, as Docker's (Go's FormValue)
        reads it: docker-py sends an outside Dockerfile as ``dockerfile=NAME&dockerfile=TEXT``."""
        values = self.query.get(name)
        return values[0] if values else None

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter as Docker reads it: 1/true/True, 0/false/False or empty."""
        value = self.arg(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no", ""):
            return False
        raise ApiError(400, f"invalid value for {name!r}: {value!r} is not a boolean")

    def integer(self, name: str) -> int | None:
        """A 64-bit integer in ASCII digits, as Go's strconv reads one (Python's int()
        also takes spaces, underscores and other scripts' digits)."""
        value = self.arg(name)
        if value is None or value == "":
            return None
        if not _INTEGER.match(value):
            raise ApiError(400, f"invalid value for {name!r}: {value!r} is not an integer")
        if not -(2**63) <= int(value) < 2**63:
            raise ApiError(400, f"invalid value for {name!r}: {value} is out of range (64 bits)")
        return int(value)

    def number(self, name: str) -> float | None:
        value = self.arg(name)
        if value is None or value == "":
            return None
        try:
            result = float(value)
        except ValueError:
            result = math.nan
        if not math.isfinite(result):
            raise ApiError(400, f"invalid value for {name!r}: {value!r} is not a number")
        return result

    def unix_ns(self, name: str) -> int | None:
        """A time as Docker's API takes it, ``SECONDS[.NANOSECONDS]`` (what the docker CLI
        sends for ``logs --since/--until``), in nanoseconds exactly, as Docker reads it: a
        time copied from ``docker logs -t`` names its own line, which a float of seconds
        (good to ~256 ns) missed.  More than 9 digits of fraction are cut, as Docker's."""
        value = self.arg(name)
        if value is None or value == "":
            return None
        seconds, _, fraction = value.partition(".")
        digits = seconds.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or not (
            fraction.isascii() and (fraction.isdigit() or not fraction) and len(fraction) <= 20
        ):
            raise ApiError(
                400,
                f"invalid value for {name!r}: {value!r} is not a Unix time (SECONDS[.NANOSECONDS])",
            )
        nanos = int(fraction[:9].ljust(9, "0")) if fraction else 0
        return int(seconds) * 1_000_000_000 + nanos

    def json(self) -> Any:
        """The body as JSON; an empty body is ``{}``.  As dockerd reads one, it must be
        sent as ``application/json`` (a form's or a missing type is refused) and hold one
        JSON value, nothing after it."""
        if not self.body.strip():
            return {}
        kind = self.headers.get("content-type", "")
        if kind.partition(";")[0].strip().lower() != "application/json":
            raise ApiError(
                400, f"unsupported Content-Type header ({kind}): must be 'application/json'"
            )
        try:
            return json.loads(self.body)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":
                raise ApiError(
                    400, f"unexpected content after JSON (line {exc.lineno} column {exc.colno})"
                ) from None
            raise ApiError(400, f"invalid JSON: {exc}") from None
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError; too deep
            raise ApiError(400, f"invalid JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, f"invalid request body: expected a JSON object, got {data!r}")
        return data


def stream_type(req: Request, tty: bool) -> str:
    """The Content-Type of an attach or exec stream: frames (8-byte headers) are named
    as such from API 1.42, as Docker names them; a terminal's bytes are raw."""
    return MULTIPLEXED if not tty and req.at_least("1.42") else RAW_STREAM


_INTEGER = re.compile(r"[+-]?[0-9]+\Z")  # strconv.Atoi's

# h11 names the bad bytes by their repr: bytearray(b'NONSENSE').
_BYTES_REPR = re.compile(r"""bytearray\(b('[^']*'|"[^"]*")\)""")


def _plain(exc: h11.RemoteProtocolError) -> str:
    """h11's words for a malformed request, the bytes it names quoted as the client sent
    them (``illegal request line: 'NONSENSE'``), not as Python shows a bytearray."""
    return _BYTES_REPR.sub(r"\1", str(exc))


def _refusal(exc: h11.RemoteProtocolError, in_body: bool) -> ApiError:
    """What a client whose bytes h11 could not parse is told."""
    why = _plain(exc)
    if exc.error_status_hint == 431:  # h11's "Receive buffer too long"
        what = "a chunk's header or trailers" if in_body else "request line and headers"
        why = f"{what} larger than {MAX_HEADERS} bytes"
    return ApiError(exc.error_status_hint, f"bad HTTP request: {why}")


def _request_of(event: h11.Request, body: bytes) -> Request:
    target = event.target.decode("latin-1")
    parts = urlsplit(target)
    path = unquote(parts.path)
    version = None
    match = _VERSIONED.match(path)
    if match:
        version, path = match[1], match[2]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
    return Request(
        method=event.method.decode("ascii", "replace").upper(),
        path=path,
        version=version,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=body,
    )


class _Head:
    """One connection's request head being read: its bytes so far, and those it holds of
    the room."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.received = 0
        self.held = 0
        self.cut = False  # cut short to make room for another's


class HeadRoom:
    """The bytes of request heads being read beyond :data:`SMALL_HEAD` each, at most
    ``limit`` in all.  When a head would take more than is left, the heads that began
    longest ago are cut (their clients answered 431), as :mod:`boxd._idle` closes the
    longest-waiting silent connections: a real client sends its head at once, and is not
    the one that has been sending one longest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._heads: dict[_Head, None] = {}  # oldest first

    @contextmanager
    def reading(self) -> Iterator[_Head]:
        """Read a head in the body; afterwards ``cut`` tells whether it was cut short."""
        head = _Head()
        self._heads[head] = None
        try:
            with head.scope:
                yield head
        finally:
            del self._heads[head]
            self.total -= head.held

    def received(self, head: _Head, size: int) -> None:
        """``head`` has ``size`` bytes more."""
        head.received += size
        held = max(head.received - SMALL_HEAD, 0)
        self.total += held - head.held
        head.held = held
        while self.total > self.limit:
            oldest = next(h for h in self._heads if h.held)
            self.total -= oldest.held
            oldest.held = 0
            oldest.cut = True
            oldest.scope.cancel(reason="request heads fill the room for them")


def _unread(fd: int) -> int:
    """The bytes sent on the Unix stream socket ``fd`` that its peer has not read yet."""
    queued = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0" * 4)
    return int(struct.unpack("i", queued)[0])


class HttpConnection:
    def __init__(self, stream: trio.abc.Stream, server_header: str, room: HeadRoom) -> None:
        self.stream = stream
        self.room = room
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.server_header = server_header
        self.method = "GET"
        self.hijacked = False
        self.refused_unread = False  # answered before its request was read: see refuse

    async def _send(self, event: h11.Event) -> None:
        try:
            data = self.h11.send(event)
        except h11.LocalProtocolError as exc:
            raise PeerGone(str(exc)) from None
        if data:
            await self.send_raw(data)

    async def send_raw(self, data: bytes) -> None:
        """``data`` written as it is, past h11: a head h11 does not make (a hijack's, a
        WebSocket's handshake); a client gone is :class:`PeerGone`."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone(str(exc)) from None

    async def _event(self, head: _Head | None = None) -> h11.Event | type[h11.PAUSED]:
        """The next event; ``head``: a request head's, whose bytes take their room."""
        while True:
            in_body = self.h11.their_state is h11.SEND_BODY
            refusal = None
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                refusal = _refusal(exc, in_body)
            if refusal is not None:
                # Raised outside the handler: h11's error (whose traceback holds h11, and
                # what it buffered) is not kept as its context while the refusal is answered.
                raise refusal
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise PeerGone(str(exc)) from None
            self.h11.receive_data(bytes(data))
            if head is not None:
                self.room.received(head, len(data))

    async def next_head(self) -> Request | None:
        """The next request's line and headers (its body not read yet: see
        :meth:`with_body`), or None once the client has closed the connection."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        event = None
        with self.room.reading() as head:
            event = await self._event(head)
        if event is None:  # cut short to make room for other clients' heads
            raise ApiError(
                431,
                f"bad HTTP request: request line and headers larger than {SMALL_HEAD} bytes "
                f"while other clients' large ones fill the {HEADS_ROOM} bytes kept for them",
            )
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise ApiError(400, "bad HTTP request: expected a request line")
        self.method = event.method.decode("ascii", "replace").upper()
        return _request_of(event, b"")

    async def with_body(self, request: Request, streamed: bool) -> Request:
        """``request`` with its body, read whole (at most :data:`MAX_BODY`), unless it is
        ``streamed``: one the handler reads with :meth:`body_chunks` (an image archive)."""
        if not streamed and int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
        if self.h11.they_are_waiting_for_100_continue:
            # ``Expect: 100-continue`` (curl's, before a body over 1 MiB): told at once to
            # send it, before any answer (a streamed one begins before the body is read).
            await self._send(
                h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
            )
        if streamed:
            return request
        body = bytearray()
        async for part in self.body_chunks():
            body += part
            if len(body) > MAX_BODY:
                raise ApiError(413, f"request body larger than {MAX_BODY} bytes")
        return attrs.evolve(request, body=bytes(body))

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request's body as it arrives."""
        while True:
            part = await self._event()
            if isinstance(part, h11.Data):
                yield bytes(part.data)
            elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
                return
            elif isinstance(part, h11.ConnectionClosed):
                raise PeerGone("closed in the middle of a request")

    @property
    def can_respond(self) -> bool:
        return self.h11.our_state is h11.SEND_RESPONSE

    @property
    def keep_alive(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def _headers(self, content_type: str | None, extra: dict[str, str]) -> list[tuple[str, str]]:
        headers = [
            ("Server", self.server_header),
            ("Api-Version", API_VERSION),
            ("Ostype", "linux"),
            ("Docker-Experimental", "false"),
        ]
        if content_type:
            headers.append(("Content-Type", content_type))
        if self.h11.their_state is h11.SEND_BODY:
            # Answered before its body was read (an import or a load refused at once): the
            # connection is not kept, and says so, or a client (Go's) sent its next request
            # on it and read no answer, as boxd lingers and closes (see close_gently).
            headers.append(("Connection", "close"))
        headers.extend(extra.items())
        return headers

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = dict(headers or {})
        extra["Content-Length"] = str(len(body))
        hdrs = self._headers(content_type if body or status != 204 else None, extra)
        await self._send(h11.Response(status_code=status, headers=hdrs, reason=reason(status)))
        if body and self.method != "HEAD":
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def respond_json(self, status: int, value: object) -> None:
        await self.respond(status, json.dumps(value).encode() + b"\n")

    async def error(self, exc: ApiError, *, plain: bool = False) -> None:
        """An error's answer: Docker's JSON, or (``plain``: a client of an API older than
        1.24, which dockerd answers so since it dropped them) Go's http.Error text."""
        if plain:
            body = (exc.message + "\n").encode()
            headers = {"X-Content-Type-Options": "nosniff"}
            await self.respond(exc.status, body, content_type=PLAIN_TEXT, headers=headers)
            return
        await self.respond_json(exc.status, {"message": exc.message})

    async def refuse(self, exc: ApiError) -> None:
        """Answer a request h11 could not parse (h11 will not frame a response to what it
        never saw as a request), then the connection ends."""
        if self.can_respond:
            await self.error(exc)
            return
        body = json.dumps({"message": exc.message}).encode() + b"\n"
        head = (
            f"HTTP/1.1 {exc.status} {reason(exc.status)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            await self.stream.send_all(head.encode() + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerGone(str(exc)) from None
        # What h11 holds of the request (up to MAX_HEADERS) is let go of, not kept while
        # the connection lingers (see close_gently): refused heads would hold a MiB each.
        self.h11 = h11.Connection(h11.SERVER)
        self.refused_unread = True

    async def start_stream(
        self, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        """Headers now (clients wait for them), then :meth:`send` pieces, then :meth:`end`."""
        hdrs = self._headers(content_type, headers or {})
        await self._send(h11.Response(status_code=200, headers=hdrs, reason=reason(200)))

    async def send(self, data: bytes) -> None:
        if data:
            await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def hijack(self, upgrade: bool, content_type: str = RAW_STREAM) -> bytes:
        """Turn the connection into a raw byte stream; return what the client already sent
        past its request.  After this, use :attr:`stream` directly; it is closed with the
        connection.  ``content_type`` names what it carries (see :func:`stream_type`)."""
        self.hijacked = True
        # A request that proposed an upgrade leaves the client waiting for our answer
        # (h11's MIGHT_SWITCH_PROTOCOL) rather than DONE.
        if upgrade and self.h11.their_state is not h11.DONE:
            headers = self._headers(content_type, {"Connection": "Upgrade", "Upgrade": "tcp"})
            await self._send(
                h11.InformationalResponse(status_code=101, headers=headers, reason=b"UPGRADED")
            )
            await self._head_read()
            return self.h11.trailing_data[0]
        # No upgrade asked for (curl): the raw stream is the body of a response that ends
        # with the connection, as Docker does it.
        raw = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n"
        await self.send_raw(raw.encode())
        await self._head_read()
        return b""

    async def _head_read(self) -> None:
        """Wait until the client has read the answer's head (at most :data:`HEAD_READ_WAIT`).

        docker-py (through http.client) reads the head through a buffer and then takes the
        socket beneath it: what came with the head is in that buffer, and lost.  An exec's
        output can follow its head within microseconds (dockerd's runc takes tens of
        milliseconds to start one), and a busy client then reads both at once:
        ``exec_run`` returned no output now and then.  A Unix socket's unread bytes are
        the sender's until read (SIOCOUTQ), so the stream waits for that count to be 0.
        """
        sock = getattr(self.stream, "socket", None)
        if sock is None or sock.family != socket.AF_UNIX:
            return
        pause = 0.0
        with trio.move_on_after(HEAD_READ_WAIT):
            while _unread(sock.fileno()):
                await trio.sleep(pause)
                pause = min(2 * pause or 0.0002, 0.01)

    async def close_gently(self) -> None:
        """End a connection whose client may still be sending what this side will not
        read (a hijacked stream's input, the body of a request answered before it was
        read whole, the rest of what h11 could not parse) as a pipe ends: our side first,
        so that the client reads all of the answer, then what it still sends is read and
        dropped until it closes its side, for at most :data:`LINGER` seconds, as Go's
        server (dockerd's) lingers.  A socket closed with input unread is reset, and its
        client loses the answer: a hijacked stream's Docker CLI exits 1 with "connection
        reset by peer" instead of the container's exit code (``yes | docker run -i IMAGE
        head -n1``; dockerd has it too: moby/moby#35723), and a client that sends its
        whole request before reading (Python's http.client) gets a broken pipe instead
        of the 413 or 431 that named what was wrong.  A connection with nothing left to
        read, or a stream already closed (a detach), is left as it is."""
        stream = self.stream
        states = (h11.SEND_BODY, h11.ERROR)
        left = self.hijacked or self.refused_unread or self.h11.their_state in states
        if not left or not isinstance(stream, trio.abc.HalfCloseableStream):
            return
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_eof()
            with trio.move_on_after(LINGER):
                while await stream.receive_some(READ_SIZE):
                    pass

    @asynccontextmanager
    async def cancelled_if_peer_closes(self) -> AsyncIterator[None]:
        """Run the body (a long wait or a stream) only as long as the client stays: a
        client that hangs up cancels it."""
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while True:
                    try:
                        data = await self.stream.receive_some(READ_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    if not data:
                        break
                    self.h11.receive_data(bytes(data))  # kept for the next request
                nursery.cancel_scope.cancel(reason="the client closed the connection")

            nursery.start_soon(watch)
            yield
            nursery.cancel_scope.cancel(reason="response complete")

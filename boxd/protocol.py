"""The boxd wire protocol, sans-IO: framing only, no sockets, no Trio.

``boxctl`` imports this module and nothing else of boxd, so it must stay cheap to import.

Framing
-------
Every frame is a 4-byte big-endian length followed by that many bytes of payload
(at most :data:`MAX_FRAME`).  The first payload byte tells the kind:

* ``{`` — a JSON object whose ``"type"`` names the message, e.g.
  ``{"type":"ListRequest","all":true}``.  NaN and Infinity are not JSON and are refused.
* ``0x00`` / ``0x01`` / ``0x02`` — raw bytes of stdin / stdout / stderr.  An stdin frame
  with no bytes after the kind byte means end of input.

Conversation
------------
Every request gets exactly one response (``...Response`` or ``ErrorResponse``).  Streaming
requests (``AttachRequest``, ``StartRequest`` or ``RunRequest`` with ``attach``,
``LogsRequest``, ``ExecRequest``, ``StatsRequest``) continue after the response:

* daemon -> client: stdout/stderr byte frames, ``StatsFrame``, and finally one
  ``ExitFrame {"exit_code": N}`` (or ``EndFrame`` for logs and stats, with or without
  follow/stream) after which the daemon closes the connection.  ``boxctl run`` is one
  ``RunRequest`` (create + start, answered with a ``CreateResponse``); with ``auto_remove``
  the container is gone before its ``ExitFrame`` is sent.  One read may bring the
  response and frames after it, up to the end frame: a client handles every frame it
  has before it waits for more.
* client -> daemon: stdin byte frames, ``ResizeFrame {"rows", "cols"}``,
  ``SignalFrame {"signal"}``, ``DetachFrame``.

The message catalogue (fields and types) is :mod:`boxd._messages`; the daemon validates
every request strictly and answers a bad one with an ``ErrorResponse`` naming the problem.
"""

from __future__ import annotations

from . import _wirejson

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Frame: TypeAlias = dict[str, Any] | tuple[int, bytes]

MAX_FRAME = 8 << 20
HEADER_SIZE = 4  # the length, big-endian (int.to_bytes: struct costs boxctl ~0.3 ms to import)

STDIN = 0
STDOUT = 1
STDERR = 2
STREAMS = (STDIN, STDOUT, STDERR)
OUTPUT_STREAMS = {"stdout": STDOUT, "stderr": STDERR}  # the log's names of the output streams


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def _no_constants(name: str) -> Any:
    raise ProtocolError(f"invalid JSON: {name} is not allowed")


_loads = _wirejson.scanner(_no_constants)


def encode(message: dict[str, Any]) -> bytes:
    return frame(_wirejson.dumps(message).encode())


def frame(payload: bytes) -> bytes:
    """The frame of an encoded JSON message."""
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_FRAME}")
    return len(payload).to_bytes(HEADER_SIZE, "big") + payload


# Above this a sender writes a byte frame's header and its data separately rather than
# copy the data behind the header.
COPY_LIMIT = 64 * 1024


def encode_bytes(stream: int, data: bytes, follows: int = 0) -> bytes:
    """One byte-stream frame (split data larger than MAX_FRAME - 1 before calling); with
    ``follows``, the frame's start only: ``follows`` bytes of data must be sent after it."""
    return (len(data) + follows + 1).to_bytes(HEADER_SIZE, "big") + bytes((stream,)) + data


def length_at(buf: bytes | bytearray, offset: int = 0) -> int:
    """The payload length in the frame header at ``offset``."""
    return int.from_bytes(buf[offset : offset + HEADER_SIZE], "big")


def decode_payload(payload: bytes) -> Frame:
    if not payload:
        raise ProtocolError("empty frame")
    kind = payload[0]
    if kind in STREAMS:
        return (kind, payload[1:])
    if kind != ord("{"):
        raise ProtocolError(f"unknown frame kind 0x{kind:02x}")
    try:
        message = _loads(payload.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError too; nested too deep
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message needs a string "type"')
    return message


class FrameDecoder:
    """Feed bytes in, take whole frames out."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buf)

    def take(self) -> bytes:
        """The bytes received that no frame was taken from (a reader of its own goes on
        from there); the decoder is left empty."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next(self) -> Frame | None:
        if len(self._buf) < HEADER_SIZE:
            return None
        length = length_at(self._buf)
        if length > self._max:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max}")
        end = HEADER_SIZE + length
        if len(self._buf) < end:
            return None
        kind = self._buf[HEADER_SIZE] if length else -1
        if kind in STREAMS:  # its bytes copied once, not as a payload and then again
            data = bytes(self._buf[HEADER_SIZE + 1 : end])
            del self._buf[:end]
            return (kind, data)
        payload = bytes(self._buf[HEADER_SIZE:end])
        del self._buf[:end]
        return decode_payload(payload)

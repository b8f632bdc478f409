"""The fluentd log driver: each line a container writes, an event of Fluentd's forward
protocol to a Fluentd (or Fluent Bit, Vector, ...) forward input, as Docker's fluentd
driver sends it (moby's daemon/logger/fluentd over fluent-logger-golang).

A line an event (see boxd/_linesend.py) in the forward protocol's message mode, one
MessagePack array ``[tag, time, record, option]``: ``tag`` the log option ``tag`` (the short
id by default), ``time`` in seconds, or with ``fluentd-sub-second-precision=true`` the
protocol's EventTime (extension 0: seconds and nanoseconds), ``record`` Docker's fields,
all strings: ``container_id`` (the full id), ``container_name`` (``/NAME``), ``source``
(``stdout`` or ``stderr``), ``log`` (the line without its newline, its bytes as written) and
the labels and variables the ``labels``/``env`` options select; a piece of a line over 16
KiB adds ``partial_message``, ``partial_id``, ``partial_ordinal`` and ``partial_last``.

``fluentd-address`` is ``HOST:PORT``, ``tcp://HOST:PORT``, ``tls://HOST:PORT`` (the
certificate checked against the host's authorities, as Docker's) or ``unix:///PATH``
(127.0.0.1:24224 by default). As Docker's, the driver is synchronous by default: the start
fails when nobody listens, and a send that fails is tried again on a new connection up to
``fluentd-max-retries`` times (practically for ever by default, holding the container's
output until Fluentd is back), waiting ``fluentd-retry-wait`` (1s) times fluent-logger's
growing factor (1.5x, at most 60 s) between connections. ``fluentd-async=true`` queues
the events (at most ``fluentd-buffer-limit`` of them, 1,048,576 by default; one more is
dropped) for a task of the run's that connects when it can: the start does not wait for
Fluentd and the container is never held. ``fluentd-request-ack=true`` sends each event
with a chunk id and waits for Fluentd's ack of it (``require_ack_response`` of a forward
input), sending it again without one; ``fluentd-write-timeout`` and
``fluentd-read-timeout`` bound a send and an ack's wait (none by default);
``fluentd-async-reconnect-interval`` (100ms to 10s) makes an asynchronous sender connect
anew that often (for a load balancer's sake).

The container's log is kept as well, as Docker's dual logging keeps it (the ``cache-``
options, as syslog's: see boxd/_syslog.py).  MessagePack comes from the ``msgpack``
package.
"""

from __future__ import annotations

import base64
import secrets
import ssl
import struct
import time
import urllib.parse
from collections.abc import Mapping

import attrs
import msgpack
import trio

from ._linesend import Ring, SocketSender, stream
from ._units import go_duration_ns, log_switch, parse_size
from .protocol import STDERR

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 24224
BUFFER_LIMIT = 1024 * 1024  # events an asynchronous sender queues, Docker's default
MAX_RETRIES = 2**31 - 1  # Docker's default: "fails after 204 years"
MAX_RETRIES_UNSET = 13  # fluent-logger's, for a fluentd-max-retries of 0
RETRY_WAIT = 1.0  # seconds, Docker's default
RETRY_WAIT_UNSET = 0.5  # fluent-logger's, for a fluentd-retry-wait of 0
MAX_RETRY_WAIT = 60.0
RECONNECT_RANGE = (0.1, 10.0)  # fluentd-async-reconnect-interval's, in seconds
# An acknowledged event ends with its option map: {"chunk": 24 base64 characters}.
_CHUNK_ID = 24


@attrs.frozen
class Settings:
    """Where and how a container's events are sent (see :func:`settings`)."""

    scheme: str  # "tcp", "tls" or "unix"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str = ""
    buffer_limit: int = BUFFER_LIMIT
    retry_wait: float = RETRY_WAIT
    max_retries: int = MAX_RETRIES
    asynchronous: bool = False
    reconnect_interval: float = 0.0  # seconds; 0: never but when a send fails
    sub_second: bool = False
    request_ack: bool = False
    write_timeout: float = 0.0  # seconds; 0: none
    read_timeout: float = 0.0


def _address(text: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of ``fluentd-address``, as Docker's parseAddress."""
    if not text:
        return "tcp", DEFAULT_HOST, DEFAULT_PORT, ""
    what = f"invalid fluentd-address ({text})"  # Docker's words
    parts = urllib.parse.urlsplit(text if "://" in text else f"tcp://{text}")
    if parts.scheme == "unix":
        if not parts.path.strip("/"):
            raise ValueError(f"{what}: path is empty")
        return "unix", "", 0, parts.path
    if parts.scheme not in ("tcp", "tls"):
        raise ValueError(f"{what}: unsupported scheme: {parts.scheme!r}")
    if parts.path:
        raise ValueError(f"{what}: should not contain a path element")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is no number, or out of range
        raise ValueError(f"{what}: invalid port: {exc}") from None
    return parts.scheme, host or DEFAULT_HOST, DEFAULT_PORT if port is None else port, ""


def _seconds(options: Mapping[str, str], key: str) -> float:
    """A duration option in seconds, 0 when not given; a negative one refused."""
    text = options.get(key, "0")
    seconds = go_duration_ns(text, f"value for {key}") / 1e9
    if seconds < 0:
        raise ValueError(f"invalid value for {key}: value must be a duration that is non-negative")
    return seconds


def settings(options: Mapping[str, str]) -> Settings:
    """The driver's settings from a container's log options, checked as Docker's
    ValidateLogOpt checks them (ValueError, in its words where it has some, naming the
    value)."""
    scheme, host, port, path = _address(options.get("fluentd-address", ""))
    limit = BUFFER_LIMIT
    if "fluentd-buffer-limit" in options:  # a count of events, read as a size (Docker's)
        limit = parse_size(
            options["fluentd-buffer-limit"], what="log option fluentd-buffer-limit", zero=True
        )
    retries = MAX_RETRIES
    if "fluentd-max-retries" in options:
        text = options["fluentd-max-retries"]
        if not text.isdigit() or not text.isascii():
            raise ValueError(f"invalid log option fluentd-max-retries {text!r}: expected a count")
        if int(text) > MAX_RETRIES:
            raise ValueError("invalid fluentd-max-retries: value out of range")
        retries = int(text) or MAX_RETRIES_UNSET
    retry_wait = RETRY_WAIT
    if "fluentd-retry-wait" in options:
        ns = go_duration_ns(options["fluentd-retry-wait"], "log option fluentd-retry-wait")
        retry_wait = max(ns // 1_000_000, 0) / 1000 or RETRY_WAIT_UNSET  # whole ms, as Docker
    interval = _seconds(options, "fluentd-async-reconnect-interval")
    low, high = RECONNECT_RANGE
    if interval and not low <= interval <= high:
        text = options["fluentd-async-reconnect-interval"]
        raise ValueError(
            "invalid value for fluentd-async-reconnect-interval: value "
            f"({text!r}) must be between 100ms and 10s"
        )
    return Settings(
        scheme,
        host,
        port,
        path,
        buffer_limit=limit or 8 * 1024,  # 0: fluent-logger's own default
        retry_wait=retry_wait,
        max_retries=retries,
        asynchronous=log_switch(options, "fluentd-async"),
        reconnect_interval=interval,
        sub_second=log_switch(options, "fluentd-sub-second-precision"),
        request_ack=log_switch(options, "fluentd-request-ack"),
        write_timeout=_seconds(options, "fluentd-write-timeout"),
        read_timeout=_seconds(options, "fluentd-read-timeout"),
    )


class Sender(SocketSender):
    """One container's connection to its Fluentd forward input."""

    def __init__(self, config: Settings, tag: str, fields: Mapping[str, str], what: str) -> None:
        """``fields``: those of every event of the container (:func:`container_fields`)."""
        super().__init__(what)
        self.config = config
        self._tag = tag
        self._fields = dict(fields)
        # A line's bytes go as they are, in a MessagePack string (as Go's string does).
        self._packer = msgpack.Packer(unicode_errors="surrogateescape")
        self._unpacker = msgpack.Unpacker()
        self._connected_at = 0.0
        self.retries = config.max_retries - 1  # attempts in all: fluentd-max-retries
        if config.asynchronous:  # a task of the run's sends, connecting when it can
            self.ring = Ring(2**63, config.buffer_limit)
            self.connects_at_start = False

    def where(self) -> str:
        c = self.config
        return f"unix://{c.path}" if c.scheme == "unix" else f"{c.scheme}://{c.host}:{c.port}"

    def _retry_wait(self, attempt: int) -> float:
        """fluent-logger's waits between connections: the retry wait times the integer part
        of 1.5 ** (attempt - 2), at most a minute."""
        growth = int(1.5 ** min(attempt - 2, 64))  # (at most a minute long before that)
        return min(self.config.retry_wait * growth, MAX_RETRY_WAIT)

    async def _connect(self) -> None:
        c = self.config
        if c.scheme == "unix":
            self._sock = await stream(await trio.open_unix_socket(c.path))
        elif c.scheme == "tls":  # the host's authorities, as Docker's (it skips no check)
            await self._connect_tls(c.host, c.port, ssl.create_default_context())
        else:
            self._sock = await stream(await trio.open_tcp_stream(c.host, c.port))
        self._unpacker = msgpack.Unpacker()  # nothing of an old connection's acks
        self._connected_at = trio.current_time()

    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        record = {
            **self._fields,
            "source": "stderr" if stream == STDERR else "stdout",
            "log": text.decode(errors="surrogateescape"),
        }
        if (piece := self.piece(stream, partial)) is not None:
            ident, ordinal, last = piece
            record["partial_message"] = "true"
            record["partial_id"] = ident
            record["partial_ordinal"] = str(ordinal)
            record["partial_last"] = "true" if last else "false"
        ns = time.time_ns()
        seconds = ns // 1_000_000_000
        when: int | msgpack.ExtType = seconds
        if self.config.sub_second:  # the forward protocol's EventTime
            when = msgpack.ExtType(0, struct.pack(">II", seconds & 0xFFFFFFFF, ns % 1_000_000_000))
        option = {}
        if self.config.request_ack:  # fluent-logger's chunk id: the time and 8 random bytes
            raw = struct.pack("<q", seconds) + secrets.token_bytes(8)
            option["chunk"] = base64.b64encode(raw).decode()
        data: bytes = self._packer.pack([self._tag, when, record, option])
        return data

    async def _deliver(self, data: bytes) -> None:
        c = self.config
        interval = c.reconnect_interval
        if interval and trio.current_time() - self._connected_at > interval:
            self.close()  # a new connection this often (an asynchronous sender's option)
            await self.open()
        with trio.move_on_after(c.write_timeout or float("inf")) as written:
            await super()._deliver(data)
        if written.cancelled_caught:
            raise OSError(f"no write in {c.write_timeout:g} s (fluentd-write-timeout)")
        if c.request_ack:
            with trio.move_on_after(c.read_timeout or float("inf")) as read:
                ack = await self._ack()
            if read.cancelled_caught:
                raise OSError(f"no ack in {c.read_timeout:g} s (fluentd-read-timeout)")
            chunk = data[-_CHUNK_ID:].decode()
            if ack != chunk:
                raise OSError(f"the ack {ack!r} is not the event's ({chunk!r})")

    async def _ack(self) -> object:
        """The ``ack`` of the next answer Fluentd sends on the connection."""
        while True:
            for answer in self._unpacker:
                return answer.get("ack") if isinstance(answer, dict) else None
            data = await self._receive(4096)
            if not data:
                raise OSError("the connection was closed before its ack")
            self._unpacker.feed(data)


def container_fields(cid: str, name: str, attributes: Mapping[str, str]) -> dict[str, str]:
    """The fields of each event of a container, as Docker's driver adds them
    (``attributes``: its log attributes, see boxd/_logattrs.py; ``tag`` is not one)."""
    fields = {key: value for key, value in attributes.items() if key != "tag"}
    return fields | {"container_id": cid, "container_name": f"/{name}"}

"""The gelf log driver: each line a container writes, a GELF 1.1 message to a Graylog (or
Logstash, Fluent Bit, ...) input, as Docker's gelf driver sends it (moby's
daemon/logger/gelf over Graylog2/go-gelf).

A line a message (see boxd/_linesend.py), to ``gelf-address`` (``udp://HOST:PORT`` or
``tcp://HOST:PORT``, the port required as Docker requires it): ``version`` 1.1, ``host``
(this host's name), ``short_message`` (the line without its newline), ``timestamp``
(seconds, to the millisecond), ``level`` (6 for stdout, 3 for stderr) and the container's
fields: ``_container_id``, ``_container_name``, ``_image_id``, ``_image_name``,
``_command``, ``_tag`` (the log option ``tag``, the short id by default), ``_created``
and the labels and variables the ``labels``/``env`` options select, each named with a
leading ``_``.  Over UDP a message is compressed (``gelf-compression-type`` gzip, the
default, zlib or none; ``gelf-compression-level`` -1 to 9, 1 by default) and sent in
GELF chunks of at most 1420 bytes when larger (128 at most, as go-gelf); over TCP it is
sent as it is, ended by a zero byte, a failed send tried again on a new connection
``gelf-tcp-max-reconnect`` times (3) with ``gelf-tcp-reconnect-delay`` seconds (1)
between.  A TCP input that does not answer at a start fails it, as Docker's does.

The container's log is kept as well, as Docker's dual logging keeps it (the ``cache-``
options, as syslog's: see boxd/_syslog.py).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from ._linesend import SocketSender, datagram, severity, stream

COMPRESSIONS = ("gzip", "zlib", "none")
CHUNK_SIZE = 1420  # go-gelf's: a larger message goes in chunks of this size
_CHUNK_HEAD = 12  # the magic bytes, the message's id, its number and their count
MAX_CHUNKS = 128


@attrs.frozen
class Settings:
    """Where and how a container's messages are sent (see :func:`settings`)."""

    scheme: str  # "udp" or "tcp"
    host: str
    port: int
    compression: str = "gzip"
    level: int = 1  # flate.BestSpeed, go-gelf's default
    max_reconnect: int = 3
    reconnect_delay: float = 1.0


def settings(options: Mapping[str, str]) -> Settings:
    """The driver's settings from a container's log options, checked as Docker's
    ValidateLogOpt checks them (ValueError, in its words, naming the value)."""
    text = options.get("gelf-address", "")
    if not text:
        raise ValueError("gelf-address is a required parameter")  # Docker's
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("udp", "tcp"):
        raise ValueError(f"invalid log option gelf-address {text!r}: the endpoint needs to be "
                         "TCP or UDP (udp://HOST:PORT or tcp://HOST:PORT)")  # fmt: skip
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is no number, or out of range
        raise ValueError(f"invalid log option gelf-address {text!r}: {exc}") from None
    if not host or port is None:
        raise ValueError(
            f"invalid log option gelf-address {text!r}: give it as {parts.scheme}://HOST:PORT"
        )
    found = Settings(parts.scheme, host, port)
    for key in ("gelf-compression-type", "gelf-compression-level"):
        if key in options and parts.scheme != "udp":
            raise ValueError(f"log option {key}: compression is only supported on UDP")
    for key in ("gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"):
        if key in options and parts.scheme != "tcp":
            raise ValueError(f"log option {key} is only valid for TCP")
    kind = options.get("gelf-compression-type", found.compression)
    if kind not in COMPRESSIONS:
        raise ValueError(
            f"invalid log option gelf-compression-type {kind!r}: use gzip, zlib or none"
        )
    level = options.get("gelf-compression-level", "1")
    if not re.fullmatch(r"-?\d+", level) or not -1 <= int(level) <= 9:
        raise ValueError(f"invalid log option gelf-compression-level {level!r}: use -1 to 9")
    counts = {}
    for key in ("gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"):
        value = options.get(key, "0")
        if not value.isdigit():
            raise ValueError(f"invalid log option {key} {value!r}: must be a positive integer")
        counts[key] = int(value)
    return attrs.evolve(
        found,
        compression=kind,
        level=int(level),
        max_reconnect=counts["gelf-tcp-max-reconnect"]
        if "gelf-tcp-max-reconnect" in options
        else found.max_reconnect,
        reconnect_delay=counts["gelf-tcp-reconnect-delay"]
        if "gelf-tcp-reconnect-delay" in options
        else found.reconnect_delay,
    )


def compress(config: Settings, data: bytes) -> bytes:
    if config.compression == "none":
        return data
    wbits = 31 if config.compression == "gzip" else 15  # a gzip or a zlib stream
    packer = zlib.compressobj(config.level, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def chunks(data: bytes) -> list[bytes]:
    """A UDP message as go-gelf sends it: whole up to :data:`CHUNK_SIZE`, else in chunks
    with the chunked GELF head (ValueError beyond :data:`MAX_CHUNKS`)."""
    if len(data) <= CHUNK_SIZE:
        return [data]
    size = CHUNK_SIZE - _CHUNK_HEAD
    count = len(data) // size + 1
    if count > MAX_CHUNKS:
        raise ValueError(f"a message of {len(data)} bytes would need {count} GELF chunks")
    ident = secrets.token_bytes(8)
    return [
        b"\x1e\x0f" + ident + bytes([i, count]) + data[i * size : (i + 1) * size]
        for i in range(count)
    ]


class Sender(SocketSender):
    """One container's connection to its GELF input."""

    def __init__(self, config: Settings, fields: Mapping[str, Any], what: str) -> None:
        """``fields``: the container's, those :func:`container_fields` gives."""
        super().__init__(what)
        self.config = config
        self._fields = dict(fields)
        self._host = socket.gethostname()
        if config.scheme == "tcp":
            self.retries, self.retry_delay = config.max_reconnect, config.reconnect_delay

    def where(self) -> str:
        return f"{self.config.scheme}://{self.config.host}:{self.config.port}"

    async def _connect(self) -> None:
        c = self.config
        if c.scheme == "tcp":
            self._sock = await stream(await trio.open_tcp_stream(c.host, c.port))
        else:
            family, _, _, _, address = (await trio.socket.getaddrinfo(c.host, c.port))[0]
            self._sock = await datagram(family, address)

    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        message = {
            "version": "1.1",
            "host": self._host,
            "short_message": text.decode(errors="replace"),
            "timestamp": time.time_ns() // 1_000_000 / 1000,
            "level": severity(stream),
            **self._fields,
        }
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
        return data + b"\0" if self.config.scheme == "tcp" else compress(self.config, data)

    async def _deliver(self, data: bytes) -> None:
        if self.config.scheme == "tcp":
            await super()._deliver(data)
            return
        try:
            pieces = chunks(data)
        except ValueError as exc:  # too large for GELF over UDP: this one is dropped
            raise OSError(str(exc)) from None
        for piece in pieces:
            await super()._deliver(piece)


def container_fields(
    *,
    cid: str,
    name: str,
    image_id: str,
    image: str,
    command: str,
    tag: str,
    created: str,
    attributes: Mapping[str, str],
) -> dict[str, str]:
    """The fields of each message of a container, as Docker's driver adds them
    (``attributes``: its log attributes, see boxd/_logattrs.py, ``tag`` not one)."""
    fields = {
        "_container_id": cid,
        "_container_name": name,
        "_image_id": image_id,
        "_image_name": image,
        "_command": command,
        "_tag": tag,
        "_created": created,
    }
    for key, value in attributes.items():
        if key != "tag":
            fields[key if key.startswith("_") else f"_{key}"] = value
    return fields

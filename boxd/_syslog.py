"""The syslog log driver: each line a container writes, sent to a syslog server as
Docker's syslog driver sends it (moby's daemon/logger/syslog over the srslog package).

A container's lines go to ``syslog-address`` (``unix://PATH``, ``unixgram://PATH``,
``udp://HOST[:PORT]``, ``tcp://HOST[:PORT]``, ``tcp+tls://HOST[:PORT]``, port 514 by
default; none: the host's own syslog socket, ``/dev/log`` first), one message a line (see
boxd/_linesend.py): a stdout line at severity info, a stderr one at err, of
``syslog-facility`` (``daemon`` by default), tagged with the log option ``tag`` (the
container's short id by default), in ``syslog-format`` (Docker's default, ``rfc3164``,
``rfc5424``, ``rfc5424micro``).  Every message ends with a newline (srslog's), which also
frames it on a stream; over TLS an RFC 5424 message is framed by its length (RFC 5425's
octet counting), as Docker frames it.  TLS checks the server's certificate against the
host's authorities and ``syslog-tls-ca-cert``'s, for the address's host name
(``syslog-tls-skip-verify=true``: not at all), and presents ``syslog-tls-cert`` with
``syslog-tls-key`` when given.  One connection a container, made at its start (one that
cannot be made fails the start, naming it, as Docker's does) or at its adoption.

The container's log is kept as well, as Docker's dual logging keeps it (``cache-disabled``,
``cache-max-size``, ``cache-max-file``, ``cache-compress``), so that ``logs`` reads it.

Hand-written, not ``logging.handlers.SysLogHandler``: that handler blocks its caller on
each send and formats Python's own records, not Docker's messages.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping

import attrs
import trio

from ._linesend import SocketSender, datagram, severity, stream
from ._units import GO_BOOLS

FACILITIES = {
    name: number
    for number, name in enumerate(
        (
            "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
            "authpriv", "ftp", "", "", "", "", "local0", "local1", "local2", "local3",
            "local4", "local5", "local6", "local7",
        )
    )
    if name
}  # fmt: skip
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
SCHEMES = ("unix", "unixgram", "udp", "tcp", "tcp+tls")
DEFAULT_PORT = 514
# Where the host's own syslog listens, as srslog looks for it (each as a datagram socket,
# then as a stream one).
LOCAL_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@attrs.frozen
class Settings:
    """Where and how a container's lines are sent (see :func:`settings`)."""

    scheme: str  # one of SCHEMES, or "" for the host's own syslog socket
    path: str = ""  # unix, unixgram
    host: str = ""  # udp, tcp
    port: int = DEFAULT_PORT
    facility: int = FACILITIES["daemon"]
    format: str = ""
    ca_cert: str = ""  # tcp+tls: a file of authorities trusted besides the host's
    cert: str = ""  # tcp+tls: the client's certificate and key files
    key: str = ""
    skip_verify: bool = False  # tcp+tls: the server's certificate not checked


def settings(options: Mapping[str, str]) -> Settings:
    """The driver's settings from a container's log options (``KEY=VALUE`` pairs as
    Docker's ``--log-opt`` gives them), without touching the file system; a bad value is
    refused naming it (ValueError)."""
    facility = _facility(options.get("syslog-facility", ""))
    form = options.get("syslog-format", "")
    if form not in FORMATS:
        raise ValueError(
            f"invalid log option syslog-format {form!r}: use rfc3164, rfc5424 or rfc5424micro"
        )
    scheme, path, host, port = _address(options.get("syslog-address", ""))
    files = {k: options.get(f"syslog-tls-{k}", "") for k in ("ca-cert", "cert", "key")}
    skip = options.get("syslog-tls-skip-verify")
    if skip is not None and skip != "" and skip not in GO_BOOLS:
        raise ValueError(
            f"invalid log option syslog-tls-skip-verify {skip!r}: expected true or false"
        )
    if bool(files["cert"]) != bool(files["key"]):
        raise ValueError("log options syslog-tls-cert and syslog-tls-key go together")
    return Settings(
        scheme,
        path,
        host,
        port,
        facility,
        form,
        ca_cert=files["ca-cert"],
        cert=files["cert"],
        key=files["key"],
        skip_verify=skip is not None and GO_BOOLS.get(skip, True),
    )


def _facility(text: str) -> int:
    if not text:
        return FACILITIES["daemon"]
    if text in FACILITIES:
        return FACILITIES[text]
    if text.isdigit() and int(text) <= 23:  # Docker takes a facility's number too
        return int(text)
    raise ValueError(
        f"invalid log option syslog-facility {text!r}: use a facility's name "
        f"({', '.join(FACILITIES)}) or number (0-23)"
    )


def _address(text: str) -> tuple[str, str, str, int]:
    """(scheme, path, host, port) of ``syslog-address``."""
    if not text:
        return "", "", "", DEFAULT_PORT
    what = f"invalid log option syslog-address {text!r}"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{what}: unsupported scheme: {parts.scheme!r} (use {', '.join(SCHEMES)})")
    if parts.scheme in ("unix", "unixgram"):
        if not parts.path.startswith("/"):
            raise ValueError(f"{what}: expected {parts.scheme}:///ABSOLUTE/PATH")
        return parts.scheme, parts.path, "", DEFAULT_PORT
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is no number, or out of range
        raise ValueError(f"{what}: {exc}") from None
    if not host:
        raise ValueError(f"{what}: no host")
    return parts.scheme, "", host, DEFAULT_PORT if port is None else port


def check_reachable(config: Settings) -> None:
    """At a container's creation, as Docker's daemon checks it: a socket path exists; and
    the TLS files given can be read (Docker's start would fail on them)."""
    if config.path:
        try:
            os.stat(config.path)
        except OSError as exc:
            address = f"{config.scheme}://{config.path}"
            raise ValueError(
                f"invalid log option syslog-address {address!r}: {exc.strerror}"
            ) from None
    if config.scheme == "tcp+tls":
        try:
            tls_context(config)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"syslog TLS: {exc}") from None


def tls_context(config: Settings) -> ssl.SSLContext:
    """The client's TLS settings for ``tcp+tls``, as Docker's tlsconfig.Client makes them
    (TLS 1.2 at least; the host's authorities and the CA file's)."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (config.ca_cert, config.cert, config.key):
        if path:
            with open(path, "rb"):  # a file that is not there, named
                pass
    if config.ca_cert:
        context.load_verify_locations(config.ca_cert)
    if config.cert:
        context.load_cert_chain(config.cert, config.key)
    if config.skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _stamp(now: float, form: str) -> str:
    t = time.localtime(now)
    if form in ("", "rfc3164"):  # Go's time.Stamp: "Jan _2 15:04:05"
        return f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"
    offset = t.tm_gmtoff
    zone = "Z" if offset == 0 else f"{'-' if offset < 0 else '+'}{abs(offset) // 3600:02d}:"
    if offset:
        zone += f"{abs(offset) % 3600 // 60:02d}"
    fraction = f".{int(now * 1e6) % 1_000_000:06d}" if form == "rfc5424micro" else ""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', t)}{fraction}{zone}"


def message(config: Settings, severity: int, tag: str, line: bytes, now: float) -> bytes:
    """One line as the syslog message Docker's driver sends for it (srslog's formatters,
    Docker's RFC 5424 one with the tag as the app name), ending in a newline."""
    priority = config.facility << 3 | severity
    stamp = _stamp(now, config.format)
    pid = os.getpid()
    if config.format == "":
        head = f"<{priority}>{stamp} {tag}[{pid}]: "
    elif config.format == "rfc3164":
        head = f"<{priority}>{stamp} {socket.gethostname()} {tag}[{pid}]: "
    else:
        head = f"<{priority}>1 {stamp} {socket.gethostname()} {tag} {pid} {tag} - "
    return head.encode() + line + (b"" if line.endswith(b"\n") else b"\n")


class Sender(SocketSender):
    """One container's connection to its syslog server."""

    def __init__(self, config: Settings, tag: str, what: str) -> None:
        super().__init__(what)
        self.config = config
        self.tag = tag

    def where(self) -> str:
        c = self.config
        if c.path:
            return f"{c.scheme}://{c.path}"
        return f"{c.scheme}://{c.host}:{c.port}" if c.scheme else "the host's syslog socket"

    async def _connect(self) -> None:
        c = self.config
        if c.scheme == "":
            await self._connect_local()
        elif c.scheme == "unixgram":
            self._sock = await datagram(socket.AF_UNIX, c.path)
        elif c.scheme == "unix":
            self._sock = await stream(await trio.open_unix_socket(c.path))
        elif c.scheme == "udp":
            family, _, _, _, address = (await trio.socket.getaddrinfo(c.host, c.port))[0]
            self._sock = await datagram(family, address)
        elif c.scheme == "tcp":
            self._sock = await stream(await trio.open_tcp_stream(c.host, c.port))
        else:
            await self._connect_tls(c.host, c.port, tls_context(c))

    async def _connect_local(self) -> None:
        """The host's own syslog socket, as srslog finds it."""
        for kind in ("unixgram", "unix"):
            for path in LOCAL_SOCKETS:
                try:
                    if kind == "unixgram":
                        self._sock = await datagram(socket.AF_UNIX, path)
                    else:
                        self._sock = await stream(await trio.open_unix_socket(path))
                except OSError:
                    continue
                return
        raise OSError(f"no syslog socket at {', '.join(LOCAL_SOCKETS)} (use syslog-address)")

    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        data = message(self.config, severity(stream), self.tag, text, time.time())
        if self.config.scheme == "tcp+tls" and self.config.format.startswith("rfc5424"):
            return b"%d %s" % (len(data), data)  # RFC 5425's octet counting, as Docker's
        return data

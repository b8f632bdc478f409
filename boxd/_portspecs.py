"""``-p``/``--publish`` and ``--expose`` as Docker reads them, into plain records.

Imported by boxctl: no attrs, ``ipaddress`` nor ``re`` (their imports were ~20-35 ms of
every ``boxctl run -p``); an address is checked and written as the C library reads and
writes it (``inet_pton``, ``inet_ntop``).  The daemon keeps a ``-p`` as
``boxd._netconfig.PortSpec``, of the same fields.
"""

from __future__ import annotations

import _socket

from ._record import frozen

PROTOCOLS = ("tcp", "udp")


@frozen
class Publish:
    """One container port a ``-p`` publishes: ``PortSpec``'s fields."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    @property
    def key(self) -> str:
        """Docker's name for the container side: ``80/tcp``."""
        return f"{self.container_port}/{self.protocol}"


def _address(family: int, text: str) -> str | None:
    """``text`` as the C library writes that address of ``family``; None if it is none."""
    try:
        return _socket.inet_ntop(family, _socket.inet_pton(family, text))
    except OSError:
        return None


def _port_range(text: str, spec: str, what: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        raise ValueError(f"invalid port mapping {spec!r}: {what} {text!r} is not a port or range")
    low, high = int(first), int(last) if dash else int(first)
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise ValueError(f"invalid port mapping {spec!r}: port {port} is out of range 1-65535")
    if high < low:
        raise ValueError(f"invalid port mapping {spec!r}: range {text!r} goes backwards")
    return low, high


def _bracketed(body: str, spec: str) -> tuple[str, list[str]]:
    """``[IPV6]:HOSTPORT:CONTAINERPORT`` (HOSTPORT may be empty): the address, and the
    parts as an unbracketed mapping splits into (the address's place first)."""
    inner, closed, rest = body[1:].partition("]")
    parts = rest.split(":")
    if not closed or len(parts) != 3 or parts[0]:
        raise ValueError(
            f"invalid port mapping {spec!r}: use [IPV6]:[HOSTPORT]:CONTAINERPORT[/tcp|/udp]"
        )
    address = _address(_socket.AF_INET6, inner)
    if address is None:
        raise ValueError(f"invalid port mapping {spec!r}: {inner!r} is not an IPv6 address")
    return address, parts


def parse_publish(spec: str) -> tuple[Publish, ...]:
    """``-p``: ``80``, ``8080:80``, ``127.0.0.1:8080:80``, ``127.0.0.1::80``,
    ``[::1]:8080:80`` (an IPv6 address in brackets), ``8000-8002:80-82``, ``8000-8010:80``
    (the first free of the range), each with an optional ``/tcp`` or ``/udp``."""
    body, slash, proto = spec.partition("/")
    protocol = proto.lower() if slash else "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid port mapping {spec!r}: protocol {proto!r} is not tcp or udp")
    if body.startswith("["):
        host_ip, parts = _bracketed(body, spec)
    else:
        parts = body.split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        if host_ip and _address(_socket.AF_INET, host_ip) is None:
            raise ValueError(f"invalid port mapping {spec!r}: {host_ip!r} is not an IPv4 address")
    if len(parts) > 3 or not parts[-1]:
        raise ValueError(
            f"invalid port mapping {spec!r}: use [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp]"
        )
    host_text = parts[-2] if len(parts) >= 2 else ""
    c_low, c_high = _port_range(parts[-1], spec, "container port")
    count = c_high - c_low + 1
    if not host_text:
        return tuple([Publish(p, protocol, host_ip) for p in range(c_low, c_high + 1)])
    h_low, h_high = _port_range(host_text, spec, "host port")
    if count == 1 and h_high > h_low:
        return (Publish(c_low, protocol, host_ip, h_low, h_high),)
    if h_high - h_low + 1 != count:
        raise ValueError(
            f"invalid port mapping {spec!r}: the host range and the container range "
            "differ in length"
        )
    return tuple([Publish(c_low + i, protocol, host_ip, h_low + i) for i in range(count)])


def parse_expose(spec: str) -> tuple[str, ...]:
    """``--expose 80``, ``80/udp``, ``8000-8002``: the ``PORT/PROTO`` keys it names."""
    body, slash, proto = spec.partition("/")
    protocol = proto.lower() if slash else "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid --expose {spec!r}: protocol {proto!r} is not tcp or udp")
    low, high = _port_range(body, spec, "port")
    return tuple([f"{p}/{protocol}" for p in range(low, high + 1)])


def host_port_text(host_ip: str, port: int | str) -> str:
    """``0.0.0.0:8080`` ("" is every IPv4 address), ``[::]:8080`` (IPv6 in brackets), as
    the docker CLI writes a published port."""
    host = host_ip or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

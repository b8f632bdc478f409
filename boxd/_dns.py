"""The name server boxd serves on each user network, at the network's gateway address.

A query for a container the asking container can reach (its name, its aliases, its short
id, its hostname on a network both are on, or NAME.NETWORK; with or without a trailing dot)
gets an A record, one for each container of that name (the replicas of a compose service
share its alias), in a random order as Docker's embedded server shuffles them (an AAAA
record for each IPv6 address such a container has on a network with IPv6); a reverse
(PTR) query for such a container's address gets NAME.NETWORK, as Docker's; any other query is
forwarded as it came to the asking container's upstream resolvers (its ``--dns`` servers,
else the host's) and their answer relayed back (SERVFAIL if none answers).  UDP and TCP
(two-byte length prefix, several queries per connection, as Docker's embedded server
answers both); a TCP query is forwarded over TCP.  Wire format through dnslib, imported by
the first query (a daemon whose containers ask no name of it does not hold it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

import trio

log = logging.getLogger("boxd.dns")

TTL = 0  # containers come and go: nobody should cache an answer
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0  # seconds a TCP client may keep a connection without a query
SIZE = 4096


class Names(NamedTuple):
    """What a network's name server answers, each asked with the asking address."""

    # (name, asker) -> the addresses of that name (IPv4 and IPv6), none when it is not ours.
    lookup: Callable[[str, str], Sequence[str]]
    # (address, asker) -> the name a reverse query gets, "" when it is not ours.
    reverse: Callable[[str, str], str]
    # asker -> the resolvers its other queries go to.
    upstreams: Callable[[str], Sequence[str]]


def _reversed(name: str) -> str:
    """The address a reverse query's name stands for (``4.3.2.1.in-addr.arpa``: 1.2.3.4;
    32 nibbles and ``ip6.arpa``: an IPv6 address), "" for any other name."""
    labels = name.lower().split(".")
    try:
        if len(labels) == 6 and labels[4:] == ["in-addr", "arpa"]:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        nibbles = labels[:32]
        if labels[32:] == ["ip6", "arpa"] and [len(n) for n in nibbles] == [1] * 32:
            return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
    except ValueError:
        pass
    return ""


def answer(query: bytes, names: Names, client: str) -> bytes | None:
    """Our own answer to ``query`` from ``client``, or None when it is not about one of
    our names."""
    from dnslib import AAAA, PTR, QTYPE, RR, A, DNSRecord

    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises several kinds on malformed packets
        return None
    if len(request.questions) != 1:
        return None
    question = request.questions[0]
    name = str(question.qname).rstrip(".")
    if question.qtype == QTYPE.PTR:
        address = _reversed(name)
        target = names.reverse(address, client) if address else ""
        if not target:
            return None
        reply = request.reply()
        reply.add_answer(RR(question.qname, QTYPE.PTR, rdata=PTR(target + "."), ttl=TTL))
        return bytes(reply.pack())
    addresses = list(names.lookup(name, client))
    if not addresses:
        return None
    reply = request.reply()
    random.shuffle(addresses)
    for address in addresses:
        v6 = ":" in address
        if question.qtype in (QTYPE.AAAA if v6 else QTYPE.A, QTYPE.ANY):
            kind, rdata = (QTYPE.AAAA, AAAA(address)) if v6 else (QTYPE.A, A(address))
            reply.add_answer(RR(question.qname, kind, rdata=rdata, ttl=TTL))
    # Another type for a known name (AAAA of one without IPv6): an empty NOERROR answer.
    return bytes(reply.pack())


def _failure(query: bytes) -> bytes | None:
    from dnslib import RCODE, DNSRecord

    try:
        reply = DNSRecord.parse(query).reply()
    except Exception:
        return None
    reply.header.rcode = RCODE.SERVFAIL
    return bytes(reply.pack())


async def _ask_udp(server: str, query: bytes) -> bytes | None:
    family = socket.AF_INET6 if ":" in server else socket.AF_INET  # an IPv6 resolver too
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        await sock.connect((server, 53))
        await sock.send(query)
        with trio.move_on_after(FORWARD_TIMEOUT):
            return bytes(await sock.recv(SIZE))
    return None


async def _ask_tcp(server: str, query: bytes) -> bytes | None:
    with trio.move_on_after(FORWARD_TIMEOUT):
        stream = await trio.open_tcp_stream(server, 53)
        async with stream:
            await stream.send_all(struct.pack("!H", len(query)) + query)
            return await _read_message(stream)
    return None


async def _forward(query: bytes, upstreams: Sequence[str], *, tcp: bool) -> bytes | None:
    for server in upstreams:
        try:
            reply = await (_ask_tcp if tcp else _ask_udp)(server, query)
        except OSError as exc:
            log.debug("forwarding to %s failed: %s", server, exc)
            continue
        if reply is not None:
            return reply
    return _failure(query)


async def _respond(query: bytes, client: str, names: Names, *, tcp: bool) -> bytes | None:
    data = answer(query, names, client)
    if data is None:
        data = await _forward(query, names.upstreams(client), tcp=tcp)
    return data


async def serve(
    address: str,
    names: Names,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on ``address``:53 (IPv4 or IPv6), UDP and TCP, until cancelled."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    udp = trio.socket.socket(family, socket.SOCK_DGRAM)
    tcp = trio.socket.socket(family, socket.SOCK_STREAM)
    with udp, tcp:
        await udp.bind((address, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await tcp.bind((address, 53))
        tcp.listen(64)
        await serve_on(udp, tcp, names, task_status=task_status)


async def serve_on(
    udp: trio.socket.SocketType,
    tcp: trio.socket.SocketType,
    names: Names,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on a bound UDP socket and a listening TCP one (a container's own, made in
    its namespace) until cancelled."""
    with udp, tcp:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_tcp, trio.SocketListener(tcp), names)
            task_status.started()
            while True:
                query, client = await udp.recvfrom(SIZE)
                nursery.start_soon(_reply_udp, udp, query, client, names)


async def _reply_udp(
    sock: trio.socket.SocketType, query: bytes, client: tuple[str, int], names: Names
) -> None:
    data = await _respond(query, client[0], names, tcp=False)
    if data is not None:
        with contextlib.suppress(OSError):
            await sock.sendto(data, client)


async def _serve_tcp(listener: trio.SocketListener, names: Names) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(_reply_tcp, stream, names)


async def _read_exactly(stream: trio.SocketStream, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


async def _read_message(stream: trio.SocketStream) -> bytes | None:
    """One length-prefixed DNS message (RFC 1035 4.2.2), None at end of stream."""
    head = await _read_exactly(stream, 2)
    if head is None:
        return None
    (length,) = struct.unpack("!H", head)
    return await _read_exactly(stream, length)


async def _reply_tcp(stream: trio.SocketStream, names: Names) -> None:
    client = stream.socket.getpeername()[0]
    async with stream:
        with contextlib.suppress(OSError, trio.BrokenResourceError):
            while True:
                query = None
                with trio.move_on_after(TCP_IDLE):
                    query = await _read_message(stream)
                if query is None:
                    return
                data = await _respond(query, client, names, tcp=True)
                if data is None:
                    return
                await stream.send_all(struct.pack("!H", len(data)) + data)

"""The name server boxd serves on each user network, at the network's gateway address.

A query for a container the asking container can reach (its name, its aliases, its short
id, its hostname on a network both are on; with or without a trailing dot) gets an A
record, one for each container of that name (the replicas of a compose service share its
alias), in a random order as Docker's embedded server shuffles them; any other query is
forwarded as it came to the asking container's upstream resolvers (its ``--dns`` servers,
else the host's) and their answer relayed back (SERVFAIL if none answers).  UDP and TCP
(two-byte length prefix, several queries per connection, as Docker's embedded server
answers both); a TCP query is forwarded over TCP.  Wire format through dnslib, imported by
the first query (a daemon whose containers ask no name of it does not hold it).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable, Sequence

import trio

log = logging.getLogger("boxd.dns")

TTL = 0  # containers come and go: nobody should cache an answer
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0  # seconds a TCP client may keep a connection without a query
SIZE = 4096

# (name, the asking address) -> the addresses of that name, none when it is not ours.
Lookup = Callable[[str, str], Sequence[str]]
# The asking address -> the resolvers its other queries go to.
Upstreams = Callable[[str], Sequence[str]]


def answer(query: bytes, lookup: Callable[[str], Sequence[str]]) -> bytes | None:
    """Our own answer to ``query``, or None when it is not about one of our names."""
    from dnslib import QTYPE, RR, A, DNSRecord

    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises several kinds on malformed packets
        return None
    if len(request.questions) != 1:
        return None
    question = request.questions[0]
    name = str(question.qname).rstrip(".")
    addresses = list(lookup(name))
    if not addresses:
        return None
    reply = request.reply()
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        random.shuffle(addresses)
        for address in addresses:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    # AAAA and others for a known name: an empty NOERROR answer (the name exists).
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
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
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


async def _respond(
    query: bytes, client: str, lookup: Lookup, upstreams: Upstreams, *, tcp: bool
) -> bytes | None:
    data = answer(query, lambda name: lookup(name, client))
    if data is None:
        data = await _forward(query, upstreams(client), tcp=tcp)
    return data


async def serve(
    address: str,
    lookup: Lookup,
    upstreams: Upstreams,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on ``address``:53, UDP and TCP, until cancelled."""
    udp = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with udp, tcp:
        await udp.bind((address, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await tcp.bind((address, 53))
        tcp.listen(64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_tcp, trio.SocketListener(tcp), lookup, upstreams)
            task_status.started()
            while True:
                query, client = await udp.recvfrom(SIZE)
                nursery.start_soon(_reply_udp, udp, query, client, lookup, upstreams)


async def _reply_udp(
    sock: trio.socket.SocketType,
    query: bytes,
    client: tuple[str, int],
    lookup: Lookup,
    upstreams: Upstreams,
) -> None:
    data = await _respond(query, client[0], lookup, upstreams, tcp=False)
    if data is not None:
        with contextlib.suppress(OSError):
            await sock.sendto(data, client)


async def _serve_tcp(listener: trio.SocketListener, lookup: Lookup, upstreams: Upstreams) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(_reply_tcp, stream, lookup, upstreams)


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


async def _reply_tcp(stream: trio.SocketStream, lookup: Lookup, upstreams: Upstreams) -> None:
    client = stream.socket.getpeername()[0]
    async with stream:
        with contextlib.suppress(OSError, trio.BrokenResourceError):
            while True:
                query = None
                with trio.move_on_after(TCP_IDLE):
                    query = await _read_message(stream)
                if query is None:
                    return
                data = await _respond(query, client, lookup, upstreams, tcp=True)
                if data is None:
                    return
                await stream.send_all(struct.pack("!H", len(data)) + data)

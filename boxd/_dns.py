"""The name server boxd serves on each user network, at the network's gateway address.

A query for a container of that network (its name, its aliases, its short id, its
hostname; with or without a trailing dot) gets an A record; any other query is forwarded
as it came to the host's resolvers and their answer relayed back (SERVFAIL if none
answers).  Only UDP: names are short and answers small.  Wire format through dnslib.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Sequence

import trio
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger("boxd.dns")

TTL = 0  # containers come and go: nobody should cache an answer
FORWARD_TIMEOUT = 2.0
SIZE = 4096


def answer(query: bytes, lookup: Callable[[str], str | None]) -> bytes | None:
    """Our own answer to ``query``, or None when it is not about one of our names."""
    try:
        request = DNSRecord.parse(query)
    except Exception:  # dnslib raises several kinds on malformed packets
        return None
    if len(request.questions) != 1:
        return None
    question = request.questions[0]
    name = str(question.qname).rstrip(".")
    address = lookup(name)
    if address is None:
        return None
    reply = request.reply()
    if question.qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
    # AAAA and others for a known name: an empty NOERROR answer (the name exists).
    return bytes(reply.pack())


def _failure(query: bytes) -> bytes | None:
    try:
        reply = DNSRecord.parse(query).reply()
    except Exception:
        return None
    reply.header.rcode = RCODE.SERVFAIL
    return bytes(reply.pack())


async def _forward(query: bytes, upstreams: Sequence[str]) -> bytes | None:
    for server in upstreams:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                await sock.connect((server, 53))
                await sock.send(query)
                with trio.move_on_after(FORWARD_TIMEOUT):
                    return bytes(await sock.recv(SIZE))
            except OSError as exc:
                log.debug("forwarding to %s failed: %s", server, exc)
    return _failure(query)


async def serve(
    address: str,
    lookup: Callable[[str], str | None],
    upstreams: Sequence[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on ``address``:53 until cancelled."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        await sock.bind((address, 53))
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                query, client = await sock.recvfrom(SIZE)
                nursery.start_soon(_reply, sock, query, client, lookup, upstreams)


async def _reply(
    sock: trio.socket.SocketType,
    query: bytes,
    client: tuple[str, int],
    lookup: Callable[[str], str | None],
    upstreams: Sequence[str],
) -> None:
    data = answer(query, lookup)
    if data is None:
        data = await _forward(query, upstreams)
    if data is not None:
        with contextlib.suppress(OSError):
            await sock.sendto(data, client)

"""The userland side of a published port (Docker's docker-proxy), on Trio.

The host port is bound by the daemon before the container starts: that is how a port that
is already taken fails ``run`` before anything exists, and how an ephemeral port is
chosen (bind to 0).  Traffic from other hosts, and from the host to its own non-loopback
addresses, is rewritten by boxd's nftables rules and never reaches these sockets; what does
reach them is the host's loopback (127.0.0.1 is not routed to a bridge) and containers
reaching a published port of the host (hairpin: the answer must come back through the
same connection).  Each accepted connection is relayed to the container's address.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Collection

import attrs
import trio

from ._netconfig import PortSpec
from ._portspecs import host_port_text

READ_SIZE = 65536
UDP_IDLE = 30.0  # seconds a UDP client's relay lives without traffic


class PublishError(OSError):
    """A host port that cannot be bound, said in Docker's words."""

    def __str__(self) -> str:
        return str(self.args[0])


def ipv6_available() -> bool:
    """Whether the daemon's namespace has IPv6 at all (a kernel booted without it has no
    IPv6 socket; Docker then publishes on IPv4 only)."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC).close()
    except OSError:
        return False
    return True


EPHEMERAL_TRIES = 10  # ephemeral ports tried for one free on both families (moby's 10 too)


def _bind_one(spec: PortSpec, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if spec.protocol == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in spec.host_ip else socket.AF_INET
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # IPv6 only: 0.0.0.0 is a socket of its own
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((spec.host_ip or "0.0.0.0", port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def bind(
    spec: PortSpec, published: Collection[tuple[str, int]] = (), *, twin: bool = False
) -> list[tuple[PortSpec, socket.socket]]:
    """Sockets bound to the host side of ``spec``, and with ``twin`` to the same port on
    ``::`` too (the twin's spec names that port), as Docker's port allocator picks one
    port free on every address it publishes on: the first such port of a range, or an
    ephemeral one (another tried while the kernel's pick is taken on the other family).
    A port that cannot be bound is refused in Docker's words: ``port is already
    allocated`` when one of boxd's containers publishes it (``published``: their
    protocols and host ports), the bind's error otherwise (``address already in use``,
    ``cannot assign requested address`` for an address the host does not have)."""
    tries = (
        range(spec.host_port, (spec.host_port_end or spec.host_port) + 1)
        if spec.host_port
        else [0] * (EPHEMERAL_TRIES if twin else 1)
    )
    failed = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    failed_spec = spec
    held: list[socket.socket] = []  # ephemeral picks taken on one family: kept till the end
    try:
        for port in tries:
            sock = None
            try:
                sock = _bind_one(spec, port)
                if not twin:
                    return [(spec, sock)]
                chosen = sock.getsockname()[1]
                failed_spec = attrs.evolve(spec, host_ip="::", host_port=chosen, host_port_end=0)
                return [(spec, sock), (failed_spec, _bind_one(failed_spec, chosen))]
            except OSError as exc:
                failed = exc
                if sock is not None:
                    held.append(sock)
                else:
                    failed_spec = spec if spec.host_port_end else attrs.evolve(spec, host_port=port)
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue  # a range's next port, another ephemeral one
                break
    finally:
        for sock in held:
            sock.close()
    where = host_port_text(failed_spec.host_ip, failed_spec.host_port)
    error = (failed.strerror or str(failed)).lower()
    if spec.host_port_end and failed.errno in (errno.EADDRINUSE, errno.EACCES):
        where = host_port_text(spec.host_ip, spec.host_port)
        both = " on IPv4 or on IPv6" if twin else ""
        reason = (
            f"every port of {where}-{spec.host_port_end}/{spec.protocol} is in use{both} ({error})"
        )
    elif (failed_spec.protocol, failed_spec.host_port) in published:
        reason = f"Bind for {where} failed: port is already allocated"
    else:
        reason = f"failed to bind host port {where}/{spec.protocol}: {error}"
    raise PublishError(f"cannot publish {spec.key}: {reason}")


async def serve(sock: socket.socket, address: str, port: int) -> None:
    """Relay what arrives on ``sock`` (bound by :func:`bind`) to ``address:port``."""
    tsock = trio.socket.from_stdlib_socket(sock)
    if sock.type == socket.SOCK_STREAM:
        await _serve_tcp(trio.SocketListener(tsock), address, port)
    else:
        await _serve_udp(tsock, address, port)


async def _serve_tcp(listener: trio.SocketListener, address: str, port: int) -> None:
    async with listener, trio.open_nursery() as nursery:
        while True:
            client = await listener.accept()
            nursery.start_soon(_relay_tcp, client, address, port)


async def _relay_tcp(client: trio.SocketStream, address: str, port: int) -> None:
    async with client:
        try:
            upstream = await trio.open_tcp_stream(address, port)
        except OSError:
            return  # the container does not listen: the client sees the connection close
        async with upstream, trio.open_nursery() as nursery:
            done = [0]

            async def pipe(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                try:
                    while data := await src.receive_some(READ_SIZE):
                        await dst.send_all(data)
                    with contextlib.suppress(OSError, trio.BrokenResourceError):
                        await dst.send_eof()
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    nursery.cancel_scope.cancel(reason="one side of a relayed connection broke")
                done[0] += 1
                if done[0] == 2:
                    nursery.cancel_scope.cancel(reason="both directions ended")

            nursery.start_soon(pipe, client, upstream)
            nursery.start_soon(pipe, upstream, client)


async def _serve_udp(tsock: trio.socket.SocketType, address: str, port: int) -> None:
    """One connected socket towards the container per client address, dropped after
    :data:`UDP_IDLE` seconds without traffic."""
    relays: dict[tuple[str, int], trio.socket.SocketType] = {}
    with tsock:
        async with trio.open_nursery() as nursery:
            while True:
                data, client = await tsock.recvfrom(READ_SIZE)
                relay = relays.get(client)
                if relay is None:
                    family = socket.AF_INET6 if ":" in address else socket.AF_INET
                    relay = trio.socket.socket(family, socket.SOCK_DGRAM)
                    await relay.connect((address, port))
                    relays[client] = relay
                    nursery.start_soon(_udp_back, tsock, relay, client, relays)
                with contextlib.suppress(OSError):
                    await relay.send(data)


async def _udp_back(
    tsock: trio.socket.SocketType,
    relay: trio.socket.SocketType,
    client: tuple[str, int],
    relays: dict[tuple[str, int], trio.socket.SocketType],
) -> None:
    with relay:
        try:
            while True:
                with trio.move_on_after(UDP_IDLE) as idle:
                    answer = await relay.recv(READ_SIZE)
                if idle.cancelled_caught:
                    return
                await tsock.sendto(answer, client)
        except OSError:
            return
        finally:
            relays.pop(client, None)

"""Links, addresses and routes through netlink (pyroute2), in the daemon's network namespace
and in a container's.

Every function here blocks for a few system calls: callers run them in a worker thread
(``trio.to_thread.run_sync``).  A container's namespace is entered only long enough to open
a netlink socket there (``setns`` changes the calling thread alone, and the thread returns
to its own namespace before anything else runs on it); the socket keeps talking to the
namespace it was opened in.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

NETLINK_ROUTE = 0

# The two requests of every container's start and end (a veth pair made, a link deleted)
# are encoded here, not by pyroute2: its encoding of the one request took ~0.9 ms (the
# kernel's work ~1 ms) and its IPRoute ~1 ms more to open; see README.md, "Networking".
# Numbers from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>.
_NLMSG_ERROR = 2
_RTM_NEWLINK, _RTM_DELLINK = 16, 17
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_ECHO = 0x1, 0x4, 0x8
_NLM_F_EXCL, _NLM_F_CREATE = 0x200, 0x400
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_PID = 1, 3, 10, 18, 19
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFF_UP = 0x1
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, seq, port
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change


def _attr(kind: int, payload: bytes) -> bytes:
    """A netlink attribute (struct nlattr and its payload, padded to 4 bytes)."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _request(kind: int, flags: int, body: bytes) -> bytes:
    """Send one rtnetlink request on a socket of its own (callers run in worker threads at
    once) and wait for its acknowledgement; the message the kernel echoed (NLM_F_ECHO),
    if any.  A refusal raises OSError with the kernel's errno."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC) as sock:
        flags |= _NLM_F_REQUEST | _NLM_F_ACK
        sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, 1, 0) + body)
        echoed = b""
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply, _, _, _ = _HEADER.unpack_from(data, offset)
                if reply == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return echoed
                echoed = data[offset : offset + length]
                offset += max((length + 3) & ~3, _HEADER.size)


def _new_veth(host_name: str, master: int, peer: str, mac: str, pid: int) -> int:
    """One request: a veth pair whose end ``host_name`` is up and a port of the bridge of
    index ``master``, and whose other end ``peer`` (with ``mac``) is in the network
    namespace of process ``pid`` (down: the container's side configures it).  Returns the
    host end's interface index (from the echoed link; by name if the kernel echoes none)."""
    peer_info = _ifinfo() + _attr(_IFLA_IFNAME, _name(peer))
    peer_info += _attr(_IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    peer_info += _attr(_IFLA_NET_NS_PID, struct.pack("=I", pid))
    info = _attr(_IFLA_INFO_KIND, _name("veth"))
    info += _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_info))
    body = _ifinfo(flags=_IFF_UP, change=_IFF_UP) + _attr(_IFLA_IFNAME, _name(host_name))
    body += _attr(_IFLA_MASTER, struct.pack("=I", master)) + _attr(_IFLA_LINKINFO, info)
    echoed = _request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL | _NLM_F_ECHO, body)
    if len(echoed) >= _HEADER.size + _IFINFO.size:
        return _IFINFO.unpack_from(echoed, _HEADER.size)[2]  # type: ignore[no-any-return]
    return socket.if_nametoindex(host_name)


def _delete(*, index: int = 0, name: str = "") -> bool:
    """Delete a link by index or by name; whether it was there."""
    body = _ifinfo(index=index) + (_attr(_IFLA_IFNAME, _name(name)) if name else b"")
    try:
        _request(_RTM_DELLINK, 0, body)
    except OSError as exc:
        if exc.errno != errno.ENODEV:
            raise
        return False
    return True


@contextlib.contextmanager
def _route(pid: int | None = None) -> Iterator[Any]:
    """An rtnetlink socket (pyroute2's IPRoute) in the daemon's namespace, or in the one
    of process ``pid``."""
    from pyroute2 import IPRoute
    from pyroute2 import netns as _pyroute2_netns

    # pyroute2 sets its logger to log everything when it is imported: a debug line for
    # every netlink message would drown the daemon's own.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    if pid is None:
        ipr = IPRoute()
    else:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _pyroute2_netns.setns(target)
            try:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            finally:
                _pyroute2_netns.setns(own)
        finally:
            os.close(target)
            os.close(own)
        ipr = IPRoute(fileno=sock.detach())
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ensure_bridge(name: str, gateway: str, prefix_len: int, mac: str) -> None:
    """The bridge ``name`` exists with the address ``mac``, holds ``gateway/prefix_len``
    and is up.  The address is set, not left to the kernel: a bridge would otherwise take
    the lowest of its ports' addresses and change it when that port goes (a container
    disconnected or removed), and the other containers' ARP caches would keep sending to
    the old one for half a minute."""
    with _route() as ipr:
        index = _index(ipr, name)
        if index is None:
            ipr.link("add", ifname=name, kind="bridge", address=mac)
            index = _index(ipr, name)
            assert index is not None
        held = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=socket.AF_INET)}
        if gateway not in held:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefix_len)
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> bool:
    """Delete the link ``name`` (a bridge, a veth end) if it exists; whether it did."""
    return _delete(name=name)


def link_index(name: str) -> int:
    """The interface index of link ``name`` (0: there is none)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def delete_index(index: int) -> None:
    """Delete the link of interface index ``index`` if it is still there."""
    _delete(index=index)


def link_names() -> set[str]:
    """The names of the links of the daemon's namespace.  The C library asks netlink
    itself: a daemon that starts no container on a network never imports pyroute2 (~11 MB
    of its memory)."""
    return {name for _, name in socket.if_nameindex()}


def routed_networks(skip: set[str]) -> list[tuple[ipaddress.IPv4Network, str]]:
    """The IPv4 destinations the daemon's namespace routes (main table, not through the
    links in ``skip``), with the link each goes to: what a new subnet must not overlap.
    A default route is not a destination."""
    found = []
    with _route() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = route.get_attr("RTA_DST")
            if dst is None or route["dst_len"] == 0:
                continue
            link = names.get(route.get_attr("RTA_OIF"), "?")
            if link in skip:
                continue
            found.append((ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False), link))
    return found


def plug(
    pid: int,
    *,
    host_name: str,
    bridge: str,
    mac: str,
    address: str,
    prefix_len: int,
    gateway: str,
    ifname: str = "eth0",
    default_route: bool = True,
    configure: bool = True,
) -> int:
    """Give process ``pid``'s network namespace an ``ifname``: one end of a veth pair whose
    other end (``host_name``) is a port of ``bridge``; with ``configure`` (a running
    container), its address and, with ``default_route``, a default route through
    ``gateway`` (a container's spawned process does that itself: SpawnPlan.links).
    Returns the host end's interface index."""
    try:
        master = socket.if_nametoindex(bridge)
    except OSError:
        raise OSError(errno.ENODEV, f"bridge {bridge} is gone") from None
    try:
        index = _new_veth(host_name, master, ifname, mac, pid)
    except FileExistsError:  # a previous run's end, if its namespace is not gone yet
        _delete(name=host_name)
        index = _new_veth(host_name, master, ifname, mac, pid)
    if not configure:
        return index
    try:
        with _route(pid) as inside:
            inner = _index(inside, ifname)
            assert inner is not None
            inside.addr("add", index=inner, address=address, prefixlen=prefix_len)
            inside.link("set", index=inner, state="up")
            if default_route:
                inside.route("add", dst="0.0.0.0/0", gateway=gateway)
    except BaseException:
        with contextlib.suppress(OSError):
            _delete(index=index)
        raise
    return index


def set_default_route(pid: int, gateway: str) -> None:
    """Route process ``pid``'s namespace by default through ``gateway`` (replacing any)."""
    with _route(pid) as inside:
        inside.route("replace", dst="0.0.0.0/0", gateway=gateway)

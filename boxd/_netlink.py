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
from collections.abc import Iterator
from typing import Any

NETLINK_ROUTE = 0


def _netlink_error() -> type[Exception]:
    # pyroute2 takes ~0.2 s to import: only a daemon that uses a network pays for it.
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError  # type: ignore[no-any-return]


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
    with _route() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except _netlink_error() as exc:
            if getattr(exc, "code", None) != errno.ENODEV:
                raise
            return False
        return True


def link_index(name: str) -> int:
    """The interface index of link ``name`` (0: there is none)."""
    with _route() as ipr:
        return _index(ipr, name) or 0


def delete_index(index: int) -> None:
    """Delete the link of interface index ``index`` if it is still there."""
    with _route() as ipr:
        try:
            ipr.link("del", index=index)
        except _netlink_error() as exc:
            if getattr(exc, "code", None) != errno.ENODEV:
                raise


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
) -> int:
    """Give process ``pid``'s network namespace an ``ifname``: one end of a veth pair whose
    other end (``host_name``) is a port of ``bridge``; its address and, with
    ``default_route``, a default route through ``gateway``.  Returns the host end's
    interface index."""
    with _route() as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise OSError(errno.ENODEV, f"bridge {bridge} is gone")
        stale = _index(ipr, host_name)
        if stale is not None:  # a previous run's end, if its namespace is not gone yet
            ipr.link("del", index=stale)
        ipr.link(
            "add",
            ifname=host_name,
            kind="veth",
            peer={"ifname": ifname, "address": mac, "net_ns_pid": pid},
        )
        try:
            index = _index(ipr, host_name)
            assert index is not None
            ipr.link("set", index=index, master=master, state="up")
            with _route(pid) as inside:
                inner = _index(inside, ifname)
                assert inner is not None
                inside.addr("add", index=inner, address=address, prefixlen=prefix_len)
                inside.link("set", index=inner, state="up")
                if default_route:
                    inside.route("add", dst="0.0.0.0/0", gateway=gateway)
        except BaseException:
            with contextlib.suppress(_netlink_error()):
                ipr.link("del", ifname=host_name)
            raise
        return index


def set_default_route(pid: int, gateway: str) -> None:
    """Route process ``pid``'s namespace by default through ``gateway`` (replacing any)."""
    with _route(pid) as inside:
        inside.route("replace", dst="0.0.0.0/0", gateway=gateway)

"""Links, addresses and routes through rtnetlink, in the daemon's network namespace and in
a container's.

The messages are encoded here (a few C structs and attributes of <linux/netlink.h>,
<linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h> and <linux/veth.h>), not by
pyroute2: importing pyroute2 (its message classes come with all of it) made a daemon that
had started one container on a network ~12 MB larger, half of what a bare Trio program
takes, and its encoding of a container's veth request took as long as the kernel's work
(~0.9 ms) on every start; see README.md, "Networking".

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
import os
import socket
import struct
import time
from collections.abc import Iterator

import attrs

from . import _syscalls

NETLINK_ROUTE = 0
CLONE_NEWNET = 0x40000000

_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_NEWROUTE, _RTM_GETROUTE = 20, 24, 26
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_ECHO, _NLM_F_DUMP = 0x1, 0x4, 0x8, 0x300
_NLM_F_REPLACE, _NLM_F_EXCL, _NLM_F_CREATE = 0x100, 0x200, 0x400
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_PID = 1, 3, 10, 18, 19
_IFLA_MTU, _IFLA_LINK = 4, 5
_RTM_SETLINK, _IFLA_PROTINFO, _IFLA_BRPORT_ISOLATED, _NLA_F_NESTED = 19, 12, 33, 0x8000
_IFLA_NUM_TX_QUEUES, _IFLA_NUM_RX_QUEUES = 31, 32
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
# <linux/if_link.h>: IFLA_MACVLAN_MODE, IFLA_IPVLAN_MODE and _FLAGS, IFLA_VLAN_ID, and
# the modes' values by Docker's names for them.
_IFLA_MACVLAN_MODE, _IFLA_IPVLAN_MODE, _IFLA_IPVLAN_FLAGS, _IFLA_VLAN_ID = 1, 1, 2, 1
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}
IPVLAN_MODES = {"l2": 0}  # (l3 and l3s, 1 and 2, route without a gateway: not taken)
IPVLAN_FLAGS = {"bridge": 0, "private": 1, "vepa": 2}
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST = 1, 2, 4
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 1, 4, 5, 15
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_IFF_UP = 0x1
_IFA_F_NODAD = 0x02
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, seq, port
_IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # struct ifaddrmsg: family, prefix, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg: family, dst_len, src_len, tos, table,
# protocol, scope, type, flags


def _attr(kind: int, payload: bytes) -> bytes:
    """A netlink attribute (struct nlattr and its payload, padded to 4 bytes)."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    """The attributes from ``offset`` to the end of a message, by type."""
    found = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]  # without the flag bits
        offset += (length + 3) & ~3
    return found


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


class _Socket:
    """An rtnetlink socket: one request at a time, each read to its acknowledgement (or
    to the end of a dump).  The kernel's refusal raises OSError with its errno."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    def request(
        self, kind: int, flags: int, body: bytes, *, dump: bool = False
    ) -> list[tuple[int, bytes]]:
        """Send one request; the (type, message) of each answer before its end (the link
        echoed with NLM_F_ECHO, a dump's items).  A dump ends with NLMSG_DONE, any other
        request with its acknowledgement (asked for here)."""
        self.seq += 1
        flags |= _NLM_F_REQUEST | (_NLM_F_DUMP if dump else _NLM_F_ACK)
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, self.seq, 0) + body)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, reply, _, seq, _ = _HEADER.unpack_from(data, offset)
                message = data[offset : offset + length]
                offset += max((length + 3) & ~3, _HEADER.size)
                if seq != self.seq:
                    continue
                if reply in (_NLMSG_ERROR, _NLMSG_DONE):
                    code = 0
                    if len(message) >= _HEADER.size + 4:
                        (code,) = struct.unpack_from("=i", message, _HEADER.size)
                    if code < 0:
                        raise OSError(-code, os.strerror(-code))
                    return answers
                answers.append((reply, message))

    def index(self, name: str) -> int:
        """The interface index of link ``name`` in the socket's namespace."""
        body = _ifinfo() + _attr(_IFLA_IFNAME, _name(name))
        for _, message in self.request(_RTM_GETLINK, 0, body):
            return _IFINFO.unpack_from(message, _HEADER.size)[2]  # type: ignore[no-any-return]
        raise OSError(errno.ENODEV, f"no link {name}")

    def add_address(self, index: int, address: str, prefix_len: int) -> None:
        """``address/prefix_len`` on link ``index`` (an IPv4 one with its broadcast
        address; an IPv6 one usable at once, without duplicate address detection, as
        Docker's: the address is the network's to give); an address the link holds
        already is left as it is."""
        iface = ipaddress.ip_interface(f"{address}/{prefix_len}")
        if iface.version == 6:
            body = _IFADDR.pack(socket.AF_INET6, prefix_len, _IFA_F_NODAD, 0, index)
            body += _attr(_IFA_LOCAL, iface.ip.packed) + _attr(_IFA_ADDRESS, iface.ip.packed)
        else:
            body = _IFADDR.pack(socket.AF_INET, prefix_len, 0, _RT_SCOPE_UNIVERSE, index)
            body += _attr(_IFA_LOCAL, iface.ip.packed) + _attr(_IFA_ADDRESS, iface.ip.packed)
            if prefix_len < 31:
                broadcast = ipaddress.IPv4Network(iface.network).broadcast_address
                body += _attr(_IFA_BROADCAST, broadcast.packed)
        with contextlib.suppress(FileExistsError):
            self.request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def up(self, index: int) -> None:
        self.request(_RTM_NEWLINK, 0, _ifinfo(index, _IFF_UP, _IFF_UP))

    def isolate_port(self, index: int) -> None:
        """Make bridge port ``index`` isolated: the bridge forwards nothing between it and
        another isolated port (``bridge link set dev X isolated on``); what it sends to
        the bridge's own address, the host, still arrives."""
        protinfo = _attr(_IFLA_BRPORT_ISOLATED, b"\x01")
        body = _IFINFO.pack(socket.AF_BRIDGE, 0, index, 0, 0)
        self.request(_RTM_SETLINK, 0, body + _attr(_IFLA_PROTINFO | _NLA_F_NESTED, protinfo))

    def default_route(self, gateway: str, *, replace: bool = False) -> None:
        """The main table's default route (IPv4 or IPv6, as ``gateway`` is) through
        ``gateway`` (``replace``: instead of the one there is)."""
        address = ipaddress.ip_address(gateway)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        body = _RTMSG.pack(
            family, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST, 0,
        )  # fmt: skip
        body += _attr(_RTA_GATEWAY, address.packed)
        flags = _NLM_F_CREATE | (_NLM_F_REPLACE if replace else _NLM_F_EXCL)
        self.request(_RTM_NEWROUTE, flags, body)

    def delete(self, *, index: int = 0, name: str = "") -> bool:
        """Delete a link by index or by name; whether it was there."""
        body = _ifinfo(index=index) + (_attr(_IFLA_IFNAME, _name(name)) if name else b"")
        try:
            self.request(_RTM_DELLINK, 0, body)
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise
            return False
        return True


def _setns(fd: int) -> None:
    import ctypes  # here: only network connect and disconnect enter a container's namespace

    if _syscalls.libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _netlink(pid: int | None = None) -> Iterator[_Socket]:
    """An rtnetlink socket in the daemon's namespace, or in the one of process ``pid``."""
    if pid is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC)
    else:
        sock = socket_in(pid, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    with sock:
        yield _Socket(sock)


def ensure_bridge(
    name: str, gateway: str, prefix_len: int, mac: str, mtu: int = 0, gateway6: str = ""
) -> None:
    """The bridge ``name`` exists with the address ``mac``, holds ``gateway/prefix_len``
    (and ``gateway6``, ADDRESS/LEN, on an IPv6 network) and is up; made with ``mtu`` (0:
    the kernel's).  The address is set, not left to the
    kernel: a bridge would otherwise take the lowest of its ports' addresses and change it
    when that port goes (a container disconnected or removed), and the other containers'
    ARP caches would keep sending to the old one for half a minute."""
    with _netlink() as nl:
        body = _ifinfo(flags=_IFF_UP, change=_IFF_UP) + _attr(_IFLA_IFNAME, _name(name))
        body += _attr(_IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        body += _attr(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, _name("bridge")))
        try:
            nl.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)
            index = socket.if_nametoindex(name)
        except FileExistsError:
            index = socket.if_nametoindex(name)
            nl.up(index)
        if mtu:  # set apart from the creation: the bridge then keeps it with no port left
            nl.request(_RTM_NEWLINK, 0, _ifinfo(index=index) + _attr(_IFLA_MTU, _u32(mtu)))
        if gateway:  # none on an IPv6-only network
            nl.add_address(index, gateway, prefix_len)
        if gateway6:
            address, _, length = gateway6.partition("/")
            nl.add_address(index, address, int(length))


def delete_link(name: str) -> bool:
    """Delete the link ``name`` (a bridge, a veth end) if it exists; whether it did."""
    with _netlink() as nl:
        return nl.delete(name=name)


def link_index(name: str) -> int:
    """The interface index of link ``name`` (0: there is none)."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def delete_index(index: int) -> None:
    """Delete the link of interface index ``index`` if it is still there."""
    with _netlink() as nl:
        nl.delete(index=index)


def link_names() -> set[str]:
    """The names of the links of the daemon's namespace."""
    return {name for _, name in socket.if_nameindex()}


def routed_networks(
    skip: set[str], family: int = socket.AF_INET
) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """The destinations of ``family`` the daemon's namespace routes (main table, not
    through the links in ``skip``), with the link each goes to: what a new subnet must not
    overlap.  A default route is not a destination."""
    found: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    with _netlink() as nl:
        query = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        routes = nl.request(_RTM_GETROUTE, 0, query, dump=True)
    for kind, message in routes:
        if kind != _RTM_NEWROUTE:
            continue
        route_family, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(message, _HEADER.size)
        attrs = _attrs(message, _HEADER.size + _RTMSG.size)
        if _RTA_TABLE in attrs:
            (table,) = struct.unpack("=I", attrs[_RTA_TABLE])
        if family != route_family or table != _RT_TABLE_MAIN or dst_len == 0:
            continue
        if _RTA_DST not in attrs:
            continue
        link = "?"
        if _RTA_OIF in attrs:
            with contextlib.suppress(OSError):
                link = socket.if_indextoname(struct.unpack("=I", attrs[_RTA_OIF])[0])
        if link in skip:
            continue
        dst = ipaddress.ip_address(attrs[_RTA_DST])
        found.append((ipaddress.ip_network(f"{dst}/{dst_len}", strict=False), link))
    return found


def _new_veth(
    nl: _Socket, host_name: str, master: int, peer: str, mac: str, pid: int, mtu: int
) -> int:
    """One request: a veth pair whose end ``host_name`` is up and a port of the bridge of
    index ``master``, and whose other end ``peer`` (with ``mac``) is in the network
    namespace of process ``pid``, down; both ends with ``mtu`` (0: the kernel's).  Returns
    the host end's interface index (from the echoed link; by name if the kernel echoes
    none).

    Each end gets one queue each way: the kernel's default for a veth is one per possible
    CPU, each a sysfs directory made and removed with the pair, which only XDP uses (the
    pair's request 0.81 -> 0.70 ms on 2 CPUs here; more on a larger host)."""
    queues = _attr(_IFLA_NUM_TX_QUEUES, _u32(1)) + _attr(_IFLA_NUM_RX_QUEUES, _u32(1))
    if mtu:
        queues += _attr(_IFLA_MTU, _u32(mtu))
    peer_info = _ifinfo() + _attr(_IFLA_IFNAME, _name(peer)) + queues
    peer_info += _attr(_IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    peer_info += _attr(_IFLA_NET_NS_PID, _u32(pid))
    info = _attr(_IFLA_INFO_KIND, _name("veth"))
    info += _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_info))
    body = _ifinfo(flags=_IFF_UP, change=_IFF_UP) + _attr(_IFLA_IFNAME, _name(host_name))
    body += queues + _attr(_IFLA_MASTER, _u32(master)) + _attr(_IFLA_LINKINFO, info)
    echoed = nl.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL | _NLM_F_ECHO, body)
    for kind, message in echoed:
        if kind == _RTM_NEWLINK:
            return _IFINFO.unpack_from(message, _HEADER.size)[2]  # type: ignore[no-any-return]
    return socket.if_nametoindex(host_name)


@attrs.frozen
class Interface:
    """A container's new interface as :func:`plug` and :func:`plug_slave` make it: its
    name, MAC, addresses and routes.  With ``configure`` (a running container) its
    IPv4 address and, with ``default_route``, a default route through ``gateway`` are
    set from here (a container's spawned process does that itself: SpawnPlan.links).  On
    an IPv6 network (``address6``, ADDRESS/LEN) it gets that address, is brought up and,
    given ``gateway6``, routes IPv6 by default through it, in either case: the spawned
    process has no ioctl for an address without duplicate address detection.  So do the
    ``link_local`` addresses (``--link-local-ip``).  ``mtu`` 0: the kernel's.
    ``sysctls``: the interface's own settings (the endpoint's
    ``com.docker.network.endpoint.sysctls``), each ``(KEY, VALUE)`` with its fourth part
    the interface's name (``net.ipv4.conf.eth1.forwarding``), written once it is set up."""

    mac: str
    address: str
    prefix_len: int
    gateway: str
    ifname: str = "eth0"
    default_route: bool = True
    configure: bool = True
    mtu: int = 0
    address6: str = ""
    gateway6: str = ""
    link_local: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()


def plug(
    pid: int, want: Interface, *, host_names: tuple[str, ...], bridge: str, isolated: bool = False
) -> tuple[int, str]:
    """Give process ``pid``'s network namespace ``want``: one end of a veth pair whose
    other end (named the first of ``host_names`` that is free) is a port of ``bridge``
    (``isolated``: an isolated port, see :meth:`_Socket.isolate_port`, before it can carry
    anything).  Returns the host end's interface index and name."""
    try:
        master = socket.if_nametoindex(bridge)
    except OSError:
        raise OSError(errno.ENODEV, f"bridge {bridge} is gone") from None
    with _netlink() as nl:
        index, host_name = _new_host_end(
            nl, host_names, master, want.ifname, want.mac, pid, want.mtu
        )
        try:
            if isolated:
                nl.isolate_port(index)
            _configure(pid, want)
        except BaseException:
            with contextlib.suppress(OSError):
                nl.delete(index=index)
            raise
    return index, host_name


def _configure(pid: int, want: Interface) -> None:
    """The addresses and routes of the new ``want`` in process ``pid``'s namespace (see
    :class:`Interface`)."""
    if want.configure or want.address6 or want.link_local:
        _set_addresses(pid, want)
    if want.sysctls:  # once it is set up, as dockerd writes them
        _write_sysctls(pid, want.sysctls)


def _set_addresses(pid: int, want: Interface) -> None:
    with _netlink(pid) as inside:
        inner = inside.index(want.ifname)
        # A spawned process sets its IPv4 address with SIOCSIFADDR, which changes the
        # interface's first one: before link-local ones, its own comes first.
        ours_first = want.configure or any("." in a for a in want.link_local)
        if ours_first and want.address:  # none on an IPv6-only network
            inside.add_address(inner, want.address, want.prefix_len)
        if want.address6:
            own, _, length = want.address6.partition("/")
            inside.add_address(inner, own, int(length))
        for extra in want.link_local:  # with moby's prefixes
            inside.add_address(inner, extra, 16 if "." in extra else 64)
        inside.up(inner)
        if want.default_route and want.configure and want.gateway:
            inside.default_route(want.gateway)
        if want.gateway6:
            inside.default_route(want.gateway6)


# A macvlan's MAC address is refused (EADDRINUSE) while the last run's interface of the
# same address is still there: the kernel destroys a namespace's links some 5-50 ms after
# its last process ended.  Tried this often, this far apart.
_BUSY_TRIES, _BUSY_WAIT = 40, 0.01


def plug_slave(
    pid: int, want: Interface, *, kind: str, parent: str, mode: str, flag: str = "bridge"
) -> None:
    """Give process ``pid``'s namespace ``want``, a ``kind`` ("macvlan" or "ipvlan") of
    the daemon's link ``parent`` in ``mode`` (and an ipvlan's ``flag``): made there in one
    request (with its MAC if a macvlan; an ipvlan has its parent's), up at once (see
    :data:`_BUSY_TRIES`), then configured as :func:`plug` configures its veth's end.  It
    has no host end: it goes with the namespace."""
    try:
        parent_index = socket.if_nametoindex(parent)
    except OSError:
        raise OSError(errno.ENODEV, f"parent interface {parent} is gone") from None
    if kind == "macvlan":
        data = _attr(_IFLA_MACVLAN_MODE, _u32(MACVLAN_MODES[mode]))
    else:
        data = _attr(_IFLA_IPVLAN_MODE, struct.pack("=H", IPVLAN_MODES[mode]))
        data += _attr(_IFLA_IPVLAN_FLAGS, struct.pack("=H", IPVLAN_FLAGS[flag]))
    info = _attr(_IFLA_INFO_KIND, _name(kind)) + _attr(_IFLA_INFO_DATA, data)
    body = _ifinfo() + _attr(_IFLA_IFNAME, _name(want.ifname))
    body += _attr(_IFLA_LINK, _u32(parent_index))
    if kind == "macvlan":
        body += _attr(_IFLA_ADDRESS, bytes.fromhex(want.mac.replace(":", "")))
    if want.mtu:
        body += _attr(_IFLA_MTU, _u32(want.mtu))
    body += _attr(_IFLA_NET_NS_PID, _u32(pid)) + _attr(_IFLA_LINKINFO, info)
    for attempt in range(_BUSY_TRIES):
        with _netlink() as nl:
            _new_link(nl, body, kind)
        try:  # up now: a MAC address still held is found here, not by the container
            with _netlink(pid) as inside:
                inside.up(inside.index(want.ifname))
            break
        except OSError as exc:
            with contextlib.suppress(OSError), _netlink(pid) as inside:
                inside.delete(name=want.ifname)
            if exc.errno != errno.EADDRINUSE or attempt == _BUSY_TRIES - 1:
                raise
            time.sleep(_BUSY_WAIT)
    try:
        _configure(pid, want)
    except BaseException:
        with contextlib.suppress(OSError), _netlink(pid) as inside:
            inside.delete(name=want.ifname)
        raise


@contextlib.contextmanager
def _inside(pid: int) -> Iterator[None]:
    """The calling thread in process ``pid``'s network namespace for the block (``setns``
    changes that thread alone), then back in its own."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def _write_sysctls(pid: int, settings: tuple[tuple[str, str], ...]) -> None:
    """Write network settings (``net.ipv4.conf.eth1.forwarding``) of process ``pid``'s
    namespace: the calling thread enters it for the writes (/proc/sys/net shows the
    namespace of the thread that looks), as dockerd writes an endpoint's.  A value
    already set is not written again (/proc/sys may be read-only); OSError naming the
    setting otherwise."""
    with _inside(pid):
        for key, value in settings:
            path = "/proc/sys/" + key.replace(".", "/")
            try:
                with open(path) as f:
                    now = f.read().strip()
                if now != value:
                    with open(path, "w") as f:
                        f.write(value)
            except OSError as exc:
                why = "not a setting the kernel has" if exc.errno == errno.ENOENT else exc.strerror
                raise OSError(exc.errno, f"sysctl {key}={value}: {why}") from None


def socket_in(pid: int, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A new socket of process ``pid``'s network namespace: the calling thread enters it
    only long enough to make the socket, which keeps talking to that namespace."""
    with _inside(pid):
        return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)


def delete_inside(pid: int, ifname: str) -> None:
    """Delete ``ifname`` of process ``pid``'s namespace (a macvlan or ipvlan: no host end)."""
    with _netlink(pid) as inside:
        inside.delete(name=ifname)


def ensure_parent(name: str, base: str = "", vlan: int = 0) -> bool:
    """The link ``name`` a macvlan or ipvlan network's interfaces hang from, up: with
    ``vlan``, made (if missing) as that VLAN of ``base``; without ``base``, made (if
    missing) as a dummy link (Docker's parent of a network given none).  Whether it was
    made here."""
    with _netlink() as nl:
        made = True
        try:
            if not base and not vlan:
                info = _attr(_IFLA_INFO_KIND, _name("dummy"))
                body = _ifinfo() + _attr(_IFLA_IFNAME, _name(name)) + _attr(_IFLA_LINKINFO, info)
            else:
                try:
                    base_index = socket.if_nametoindex(base)
                except OSError:
                    raise OSError(errno.ENODEV, f"parent interface {base} not found") from None
                data = _attr(_IFLA_VLAN_ID, struct.pack("=H", vlan))
                info = _attr(_IFLA_INFO_KIND, _name("vlan")) + _attr(_IFLA_INFO_DATA, data)
                body = _ifinfo() + _attr(_IFLA_IFNAME, _name(name))
                body += _attr(_IFLA_LINK, _u32(base_index)) + _attr(_IFLA_LINKINFO, info)
            _new_link(nl, body, "dummy" if not base and not vlan else "VLAN (8021q)")
        except FileExistsError:
            made = False
        nl.up(socket.if_nametoindex(name))
    return made


def _new_link(nl: _Socket, body: bytes, kind: str) -> None:
    """A new link of ``kind``; a kernel built without that kind is named as such."""
    try:
        nl.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        raise OSError(exc.errno, f"this kernel has no {kind} links") from None


def _new_host_end(
    nl: _Socket, names: tuple[str, ...], master: int, peer: str, mac: str, pid: int, mtu: int
) -> tuple[int, str]:
    """:func:`_new_veth` with the host's end named the first of ``names`` that is free: a
    previous run's end keeps its name until the kernel has cleaned up that run's network
    namespace, a few milliseconds after its end, and deleting it meanwhile waits for that
    clean-up (15-40 ms: a restart on a bridge took that much longer than a first start).
    With every name taken, the first one's holder is deleted."""
    for name in names:
        try:
            return _new_veth(nl, name, master, peer, mac, pid, mtu), name
        except FileExistsError:
            continue
    nl.delete(name=names[0])
    return _new_veth(nl, names[0], master, peer, mac, pid, mtu), names[0]


def set_default_route(pid: int, gateway: str) -> None:
    """Route process ``pid``'s namespace by default through ``gateway`` (replacing any of
    its family)."""
    with _netlink(pid) as inside:
        inside.default_route(gateway, replace=True)

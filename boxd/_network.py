"""Container networks: the default ``bridge``, user networks, addresses, published ports.

    Networks (one per supervisor)
      ├── <root>/networks/<id>.json   each network and its address allocations (atomic;
      │   by id: a name may hold any character, a '/' too)
      ├── bridges (netlink), brought up on first use, removed when the daemon stops
      ├── boxd's own nftables table (masquerade, published ports, isolation), rebuilt
      │   whole on every change
      └── a DNS responder per user network, at its gateway address
    Attachment (one per container run)
      reserve()   address (kept until the container is removed) and host ports (bound now:
                  a taken port fails here, before anything else exists)
      connect(pid)  while the child waits: a veth pair into its network namespace, then
                  nftables rules, proxies and its DNS name: the container is reachable
      release()   all of it undone (the veth goes with the namespace)

A container on ``host`` shares the daemon's network namespace (and gets the host's
resolv.conf); on ``none`` it has only a loopback.  Every other mode gives it a network
namespace of its own.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from . import _dns, _links, _netlink, _nft, _nsmodes, _proxy
from ._convert import ConversionError, structure, unstructure
from ._native import LinkConfig, Namespace
from ._netconfig import (
    BUILTIN,
    PREDEFINED,
    UNPRIVILEGED,
    Endpoint,
    EtcNetwork,
    NetworkJoin,
    NetworkSettings,
    PortBinding,
    PortSpec,
    check_driver_opts,
    check_ipv4,
    check_ipv6,
    check_link_local,
    check_mac,
    check_network_name,
    container_interfaces,
    endpoint_ifname,
    endpoint_sysctls,
    interface_names,
    interface_sysctls,
    joined,
    resolv_conf,
)
from ._records import Container, ContainerConfig, check_link, check_name
from ._store import NewerFormat, RecordWrites, remove_record, replace_record, versioned
from ._units import GO_BOOLS, MTU_RANGE, parse_mtu

log = logging.getLogger("boxd.network")

DEFAULT_BRIDGE = "boxd0"  # the default root's; see default_bridge()
DEFAULT_NETWORK = "bridge"
IPV6_MIN_MTU = 1280  # RFC 8200's

# Ranges a bridge's subnet must not touch: the kernel refuses their addresses on an
# interface (or gives them another meaning), so a container on such a network cannot start.
_NOT_UNICAST = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network'"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("255.255.255.255/32"), "the broadcast address"),
)

# The same for IPv6: the kernel gives these addresses no interface, or another meaning.
_NOT_UNICAST6 = (
    (ipaddress.IPv6Network("::/127"), "the unspecified and loopback addresses"),
    (ipaddress.IPv6Network("::ffff:0:0/96"), "IPv4-mapped addresses"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast"),
)

# Where subnets are picked from when none is asked for (Docker's default pools).
POOL = [ipaddress.IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)] + [
    ipaddress.IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)
]
FALLBACK_RESOLVERS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has only loopback ones
# Where a container on macvlan or ipvlan networks only asks for names: Docker's embedded
# DNS's address, served in the container's own namespace (see Attachment._serve_local_dns).
LOCAL_DNS = "127.0.0.11"
_IP_FREEBIND = 15  # <linux/in.h>: bind an address the namespace does not have yet
# Docker's words for what `network connect`/`disconnect` refuse.
HOST_CONFLICT = "container cannot be disconnected from host network or connected to host network"
NONE_CONFLICT = (
    "container cannot be connected to multiple networks with one of the networks in private "
    "(none) mode"
)
SHARED_CONFLICT = (
    "container sharing network namespace with another container or host cannot be connected "
    "to any other network"
)


class NetworkError(ValueError):
    """A request about networks that cannot be met (bad subnet, unknown network...)."""


def _default_refuses(ip: str) -> NetworkError:
    """An address (``--ip``) or an alias asked for on the default network, in moby's
    words (runconfig's ErrUnsupportedNetworkAndIP and ...AndAlias)."""
    if ip:
        return NetworkError("user specified IP address is supported on user defined networks only")
    return NetworkError(
        "network-scoped alias is supported only for containers in user defined networks"
    )


class NoSuchNetwork(NetworkError):
    """No network has that name or id."""


class SubnetTaken(NetworkError):
    """A subnet asked for overlaps another network's (dockerd's 403, its IPAM's
    ErrPoolOverlap)."""


class NetworkConflict(RuntimeError):
    """The network is in use, or exists already."""


class PredefinedNetwork(NetworkConflict):
    """``bridge``, ``host`` or ``none``: there with every daemon, never removed."""


def builtin_network_id(name: str) -> str:
    """The id of ``host`` or ``none``, which boxd keeps no record of."""
    return hashlib.sha256(f"boxd network {name}".encode()).hexdigest()


@attrs.define
class Network:
    name: str
    id: str
    bridge: str  # the Linux bridge's name
    subnet: str  # "172.18.0.0/16"
    gateway: str  # the bridge's own address
    created_at: float
    dns: bool  # a user network: containers resolve each other by name
    allocations: dict[str, str] = attrs.Factory(dict)  # container id -> address
    labels: dict[str, str] = attrs.Factory(dict)
    ip_range: str = ""  # where addresses are picked from ("": the whole subnet)
    # Docker's driver options it was made with (see NETWORK_OPTIONS), shown by inspect.
    options: dict[str, str] = attrs.Factory(dict)
    # Docker's --internal: no way out nor in (nothing routed through its bridge to or from
    # elsewhere, no masquerade, no default route through it, no published ports, and no
    # name forwarded upstream for a container on no other network).
    internal: bool = False
    # Docker's --ipv6 (EnableIPv6): dual stack, its containers get an address of this
    # subnet too (from the bridge's gateway6, the subnet's first by default).
    ipv6: bool = False
    subnet6: str = ""  # "fd00:1::/64" ("" without ipv6)
    gateway6: str = ""
    allocations6: dict[str, str] = attrs.Factory(dict)  # container id -> IPv6 address
    ip_range6: str = ""  # where IPv6 addresses are picked from ("": the whole subnet6)
    # Docker 28's EnableIPv4: false makes an IPv6-only network (with ipv6; subnet and
    # gateway then "", and its containers have IPv6 addresses only).
    ipv4: bool = True
    # Docker's --aux-address (IPAM's AuxiliaryAddresses): NAME -> an address of the subnet
    # (subnet6) that no container is given, kept for something else on the bridge's link.
    aux_addresses: dict[str, str] = attrs.Factory(dict)
    aux_addresses6: dict[str, str] = attrs.Factory(dict)
    attachable: bool = False  # Docker's --attachable: kept and shown, as for a bridge there
    # Docker's driver: "bridge" (a Linux bridge of its own, NAT, rules, a name server) or
    # "macvlan"/"ipvlan": each container's interface hangs from the host link
    # :attr:`parent`, on that link's own network (no NAT, no rules, no published ports; the
    # name server is each container's own, see Attachment._serve_local_dns).
    driver: str = "bridge"
    parent_made: bool = False  # its parent is a VLAN link boxd made (removed with it)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def network6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.subnet6)

    @property
    def mtu(self) -> int:
        """Its bridge's and veths' MTU (0: the kernel's, 1500)."""
        return int(self.options.get(MTU_OPTION, 0))

    @property
    def binding_ip(self) -> str:
        """Where its containers' ports are published without an address of their own
        ("": every address of the host)."""
        address = self.options.get(BINDING_IP_OPTION, "")
        return "" if address == "0.0.0.0" else address

    @property
    def masquerade(self) -> bool:
        """Whether what its containers send out is hidden behind the host's address."""
        return GO_BOOLS.get(self.options.get(MASQUERADE_OPTION, "true"), True)

    @property
    def parent(self) -> str:
        """A macvlan or ipvlan network's host link: its ``parent`` option, or a dummy link
        of its own (Docker's ``dm-`` one) for a network given none, or internal."""
        given = self.options.get(PARENT_OPTION, "")
        return given if given and not self.internal else f"dm-{self.id[:12]}"

    @property
    def serves_dns(self) -> bool:
        """Whether boxd's name server answers its containers (a bridge's, on its gateway)."""
        return self.dns and self.driver == "bridge"

    @property
    def icc(self) -> bool:
        """Whether its containers reach one another (Docker's inter-container
        communication); without, each is an isolated port of the bridge: each still
        reaches the host (its gateway, its DNS) and what it routes."""
        return GO_BOOLS.get(self.options.get(ICC_OPTION, "true"), True)


MTU_OPTION = "com.docker.network.driver.mtu"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
BINDING_IP_OPTION = "com.docker.network.bridge.host_binding_ipv4"
MASQUERADE_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
# Docker's EnableIPv6 and EnableIPv4 given as options (an Engine API field given wins);
# they stay among the options inspect shows, as Docker's.
IPV6_OPTION = "com.docker.network.enable_ipv6"
IPV4_OPTION = "com.docker.network.enable_ipv4"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
# Docker's network drivers boxd has, and the options of macvlan and ipvlan.
DRIVERS = ("bridge", "macvlan", "ipvlan")
PARENT_OPTION = "parent"
_SLAVE_MODES = {
    "macvlan": ("macvlan_mode", tuple(_netlink.MACVLAN_MODES), "bridge"),
    "ipvlan": ("ipvlan_mode", tuple(_netlink.IPVLAN_MODES), "l2"),
}
IPVLAN_FLAG_OPTION = "ipvlan_flag"
# The bridge driver's options boxd applies (``network create -o``); Docker's others are
# refused by name.
NETWORK_OPTIONS = (
    MTU_OPTION,
    BRIDGE_NAME_OPTION,
    BINDING_IP_OPTION,
    MASQUERADE_OPTION,
    IPV6_OPTION,
    IPV4_OPTION,
    ICC_OPTION,
)


def check_network_options(options: dict[str, str], taken: Iterable[str]) -> None:
    """``-o`` of ``network create``: an MTU (:data:`MTU_RANGE`), a bridge name that is a free
    interface name (``taken``: the bridges of boxd's networks), an IPv4 address to publish
    ports on, whether to masquerade, to have IPv6, to have IPv4, whether its containers
    reach one another (booleans as Docker takes them).  Another of Docker's own
    (``com.docker.network.*``) is refused by name; any other is kept and shown, and means
    nothing, as dockerd's bridge driver keeps it."""
    for key, value in options.items():
        if key not in NETWORK_OPTIONS:
            if key.startswith("com.docker.network."):
                raise NetworkError(f"network option {key!r} is not supported by boxd")
            continue
        if key == MTU_OPTION and parse_mtu(value) is None:
            raise NetworkError(f"invalid {key} {value!r}: use an MTU of {MTU_RANGE}")
        if key == BINDING_IP_OPTION:
            check_ipv4(value, key)
        if (
            key in (MASQUERADE_OPTION, IPV6_OPTION, IPV4_OPTION, ICC_OPTION)
            and value not in GO_BOOLS
        ):
            raise NetworkError(f"invalid {key} {value!r}: use true or false")
        if key == BRIDGE_NAME_OPTION:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", value) or value in (".", ".."):
                raise NetworkError(
                    f"invalid {key} {value!r}: an interface name of 1-15 letters, digits, "
                    "'_', '.' or '-'"
                )
            if value in taken or _interface_exists(value):
                raise NetworkConflict(f"invalid {key} {value!r}: that interface exists")


def _ensure_parent(net: Network) -> bool:
    """A macvlan or ipvlan network's parent link there and up (blocks): a dummy for one
    given none (or internal), a VLAN ``LINK.ID`` made if missing, a host link as it is;
    whether it was made."""
    given = net.options.get(PARENT_OPTION, "")
    if not given or net.internal:
        return _netlink.ensure_parent(net.parent)
    base, dot, vlan = given.rpartition(".")
    if dot and vlan.isdigit() and not _interface_exists(given):
        return _netlink.ensure_parent(given, base, int(vlan))
    if not _interface_exists(given):
        raise NetworkError(f"network {net.name}: its parent interface {given} is gone")
    return False


def _interface_exists(name: str) -> bool:
    """In the daemon's network namespace (/sys/class/net may show another's)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


@attrs.frozen
class BridgeOptions:
    """The default network: ``boxd --bridge-name``, ``--bridge-subnet`` ("" picks one),
    ``--mtu`` (0: the kernel's)."""

    name: str = ""  # "": default_bridge(root)
    subnet: str = ""
    mtu: int = 0
    gateway: str = ""  # the bridge's address ("": the subnet's first)
    # Docker's default-address-pools, (base CIDR, prefix length) each: where a network's
    # subnet is picked from when none is given (none: POOL).
    pools: tuple[tuple[str, int], ...] = ()
    # Docker's daemon-wide --ipv6 and --fixed-cidr-v6: the default network is dual stack,
    # in subnet6 ("": a /64 of the daemon's unique local /48, see ula_pool).
    ipv6: bool = False
    subnet6: str = ""
    icc: bool = True  # Docker's --icc: its containers reach one another

    @classmethod
    def of(
        cls,
        name: str,
        subnet: str,
        mtu: int,
        *,
        bip: str = "",
        pools: tuple[tuple[str, int], ...] = (),
        ipv6: bool = False,
        subnet6: str = "",
        icc: bool = True,
    ) -> BridgeOptions:
        """``bip`` (Docker's, checked: ADDRESS/LEN) gives the subnet and the gateway."""
        if not bip:
            return cls(name, subnet, mtu, pools=pools, ipv6=ipv6, subnet6=subnet6, icc=icc)
        iface = ipaddress.IPv4Interface(bip)
        return cls(name, str(iface.network), mtu, str(iface.ip), pools, ipv6, subnet6, icc)

    def candidates(self) -> Iterator[ipaddress.IPv4Network]:
        """The subnets a network without one may get, in order: the IPv4 pools'
        (without one, Docker's :data:`POOL`)."""
        pools = [(base, size) for base, size in self.pools if ":" not in base]
        if not pools:
            yield from POOL
        for base, size in pools:
            yield from ipaddress.IPv4Network(base).subnets(new_prefix=size)

    def candidates6(self, ula: ipaddress.IPv6Network) -> Iterator[ipaddress.IPv6Network]:
        """The IPv6 subnets a network without one may get, in order: the IPv6 pools'
        (without one, the /64s of ``ula``, as Docker adds its unique local /48 then)."""
        pools = [(base, size) for base, size in self.pools if ":" in base] or [(str(ula), 64)]
        for base, size in pools:
            yield from ipaddress.IPv6Network(base).subnets(new_prefix=size)


def _host_file(path: str) -> str | None:
    """A file of the host's (None if it cannot be read)."""
    try:
        with open(path) as f:  # not pathlib at each start: it interns the path's parts
            return f.read()
    except OSError:
        return None


def host_resolv(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str]]:
    """The host's nameservers and its other resolv.conf lines (search, options)."""
    servers: list[str] = []
    rest: list[str] = []
    for line in (_host_file(path) or "").splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain", "options"):
            rest.append(" ".join(words))
    return servers, rest


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def container_resolv(nameservers: Iterable[str], rest: Iterable[str]) -> str:
    lines = [f"nameserver {s}" for s in nameservers] + list(rest)
    return "\n".join(lines) + "\n"


def bridge_resolv(path: str = "/etc/resolv.conf") -> str:
    """The host's resolv.conf without its loopback nameservers (unreachable from another
    network namespace); Docker's public fallback if none is left."""
    servers, rest = host_resolv(path)
    kept = [s for s in servers if not _is_loopback(s)] or list(FALLBACK_RESOLVERS)
    return container_resolv(kept, rest)


def mac_of(address: str) -> str:
    """02:42 and the four bytes of the address (an IPv6 one's last four), as Docker makes
    them from an IPv4 one: stable, local."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(address).packed[-4:])


def default_bridge(root: Path) -> str:
    """``boxd0`` for the default root; another root gets a name of its own (a library
    user or a test beside the daemon never shares, nor removes, the daemon's bridge)."""
    if root.resolve() == Path("/var/lib/boxd"):
        return DEFAULT_BRIDGE
    return "boxd" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def dns_names(c: Container, join: NetworkJoin) -> tuple[str, ...]:
    """The names a container answers to on a user network: its name (first: what a reverse
    query gets), its host name, its short id and its aliases there."""
    names = (c.name, c.config.hostname or c.short_id, c.short_id, *join.aliases)
    return tuple(dict.fromkeys(names))


def host_link_name(cid: str, interface: str) -> str:
    """The host's end of the veth pair whose container end is ``interface``."""
    if interface == "eth0":
        return "bx" + cid[:12]
    return "bx" + hashlib.sha256(f"{cid}/{interface}".encode()).hexdigest()[:12]


# The letters of a host end's spare names.  A previous run's end keeps its name until the
# kernel has cleaned up that run's namespace, 5-50 ms after its end here: a container
# started again and again (a test suite's kill and start, a restart policy) found the
# first name and a single spare both held every other time, and waited 20-40 ms for one.
SPARE_LETTERS = "xyzwvuts"


def host_link_names(cid: str, interface: str) -> tuple[str, ...]:
    """The names that end takes: :func:`host_link_name`, or while previous runs' ends
    still hold it, the first free one of its spares (one letter more each, 15 characters
    in all: an interface name's most; see ``_netlink.plug``)."""
    name = host_link_name(cid, interface)
    return (name, *(name + letter for letter in SPARE_LETTERS))


def _table_name(bridge: str) -> str:
    return "boxd" if bridge == DEFAULT_BRIDGE else f"boxd-{bridge}"


def _ip_range(text: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """``text``, a CIDR of ``subnet``'s family inside it (Docker's IPAM IPRange)."""
    try:
        pool = ipaddress.ip_network(text)
    except ValueError:
        pool = None
    if pool is None or pool.version != subnet.version:
        raise NetworkError(
            f"invalid ip-range {text!r}: use an IPv{subnet.version} CIDR in the subnet"
        )
    if pool.network_address not in subnet or pool.broadcast_address not in subnet:
        raise NetworkError(f"invalid ip-range {text!r}: not inside the subnet {subnet}")
    return str(pool)


def ula_pool(root: Path) -> ipaddress.IPv6Network:
    """Where an IPv6 network without a subnet gets its /64: a unique local /48 of this
    daemon's (40 bits of a hash of its root), as Docker derives one from its host id."""
    digest = hashlib.sha256(f"boxd ula {root.resolve()}".encode()).digest()
    global_id = int.from_bytes(digest[:5], "big")
    return ipaddress.IPv6Network(((0xFD << 120) | (global_id << 80), 48))


# For each IP version: the longest prefix a network may have (room for the gateway and a
# container), the ranges it may not touch, an example.
_SUBNET_RULES: dict[int, tuple[int, tuple[tuple[Any, str], ...], str]] = {
    4: (30, _NOT_UNICAST, "10.5.0.0/24"),
    6: (126, _NOT_UNICAST6, "fd00:1::/64"),
}


def _checked_subnet(
    wanted: str, version: int, taken: Iterable[tuple[Any, str]]
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The subnet ``wanted`` names, refused (naming it) if it is not of IP ``version``, is
    too small, touches a range no interface has an address in, or overlaps what is
    ``taken`` (subnet, what holds it)."""
    longest, specials, example = _SUBNET_RULES[version]
    try:
        subnet = ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        subnet = None
    if subnet is None or subnet.version != version:
        raise NetworkError(f"invalid subnet {wanted!r}: use an IPv{version} CIDR such as {example}")
    if subnet.prefixlen > longest:
        raise NetworkError(f"invalid subnet {wanted!r}: too small (at most /{longest})")
    for special, what in specials:
        if subnet.overlaps(special):
            raise NetworkError(
                f"invalid subnet {wanted!r}: it overlaps {special}, {what},"
                " which no interface can have an address in"
            )
    for other, what in taken:
        if subnet.overlaps(other):
            raise SubnetTaken(f"subnet {subnet} overlaps {what}")
    return subnet


def _ends(subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> set[Any]:
    """The addresses of ``subnet`` no interface gets: its network address (IPv6's
    subnet-router anycast) and an IPv4 subnet's broadcast address."""
    if subnet.version == 6:
        return {subnet.network_address}
    return {subnet.network_address, subnet.broadcast_address}


def _gateway(text: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or address.version != subnet.version:
        raise NetworkError(f"invalid gateway {text!r}: use an IPv{subnet.version} address")
    if address not in subnet or address in _ends(subnet):
        raise NetworkError(f"invalid gateway {text!r}: not a host address of {subnet}")
    return str(address)


def _pool(
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None, gateway: str, ip_range: str
) -> tuple[str, str, str]:
    """One family's subnet, gateway (the one asked for, else the subnet's first address)
    and ip-range as a network keeps them ("" each without a subnet of that family)."""
    if subnet is None:
        return "", "", ""
    return (
        str(subnet),
        _gateway(gateway, subnet) if gateway else str(subnet.network_address + 1),
        _ip_range(ip_range, subnet) if ip_range else "",
    )


def _aux_addresses(aux: dict[str, str], subnet: str, gateway: str) -> dict[str, str]:
    """``--aux-address NAME=IP`` of one family, as Docker's IPAM takes them: each a host
    address of that family's ``subnet`` ("": the network has none), not its gateway nor
    another's; the addresses written as the kernel would (``fd00::01`` is ``fd00::1``)."""
    kept: dict[str, str] = {}
    for name, text in aux.items():
        what = f"invalid aux-address {name}={text}"
        if not name:
            raise NetworkError(f"{what}: give a name (NAME=IP)")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise NetworkError(f"{what}: not an IP address") from None
        if not subnet:
            raise NetworkError(f"{what}: the network has no IPv{address.version} subnet")
        network = ipaddress.ip_network(subnet)
        if address.version != network.version or address not in network:
            raise NetworkError(f"{what}: not in the network's subnet {subnet}")
        if address in _ends(network):
            raise NetworkError(f"{what}: not a host address of {subnet}")
        if str(address) == gateway or str(address) in kept.values():
            taken = "the gateway" if str(address) == gateway else "another's"
            raise NetworkConflict(f"{what}: that address is {taken}")
        kept[name] = str(address)
    return kept


# The network record's format (see boxd/_store.py's FORMAT): 1, its fields before formats,
# with no "format" key (the releases before formats read it so); 2: IPv6 (ipv6, subnet6,
# gateway6, allocations6), written with the key; 3: ip_range6, ipv4; 4: aux_addresses,
# aux_addresses6, attachable; 5: driver, parent_made (macvlan and ipvlan).  A change of its
# fields raises it (tests/test_records.py pins them); this boxd leaves a record of a newer
# format alone.
NETWORK_FORMAT = 5


class Networks:
    def __init__(self, root: Path, options: BridgeOptions = BridgeOptions()) -> None:
        self.dir = root / "networks"
        self.options = attrs.evolve(options, name=options.name or default_bridge(root))
        self.table = _table_name(self.options.name)
        self.pool6 = ula_pool(root)
        self.nursery: trio.Nursery | None = None  # proxies and DNS run here
        self._nets: dict[str, Network] = {}
        # The networks of a newer boxd's records, left alone: name -> subnet ("": unknown),
        # neither of which a new network here takes.
        self._foreign: dict[str, str] = {}
        self._up: set[str] = set()  # bridges this daemon brought up
        self._parents_up: set[str] = set()  # macvlan/ipvlan networks whose parent is there
        self._forwards: dict[str, list[_nft.Forward]] = {}  # container id -> its ports
        self._rebuild_wanted = False  # see apply_soon()
        # network -> container id -> its names there, its addresses there (IPv4, IPv6)
        self._names: dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {}
        self._dns: dict[str, trio.CancelScope] = {}
        self._resolvers: dict[str, tuple[str, ...]] = {}  # container id -> its --dns
        self._aliases: dict[str, dict[str, str]] = {}  # container id -> its links' ALIAS: NAME
        # (network, container id) -> the links of its join there (NetworkJoin.links),
        # lowercase ALIAS: NAME, answered on that network only
        self._join_links: dict[tuple[str, str], dict[str, str]] = {}
        # container id -> how many running ``container:NAME`` members share its namespace,
        # and their processes (where its macvlan and ipvlan interfaces are taken out)
        self._sharers: dict[str, int] = {}
        self._member_pids: dict[str, set[int]] = {}
        # ``--rm`` containers, whose addresses are not written down: see _allocate()
        self._unsaved: set[str] = set()
        self._lock = trio.Lock()
        # network id -> its record's durable writes in worker threads (_save_durably)
        self._writes: dict[str, RecordWrites] = {}
        self._table = False  # whether this daemon made its nftables table
        self._table6 = False  # and its ip6 twin (see boxd._nft), there now
        # ``container:NAME``: the running container NAME names, and its init's pid (set by
        # the supervisor; raises when there is none).
        self.peer: Callable[[str], tuple[Container, int]] | None = None
        self._upstreams = host_resolv()[0]

    # ---- records --------------------------------------------------------------------

    def _save(self, net: Network, *, durable: bool = False) -> None:
        """Replace the network's record; ``durable`` (with two fsyncs) only where nothing
        else runs yet (the records' load at start-up); a change of a network's own is
        written by :meth:`_save_durably`.  An address taken or given back is replaced
        atomically all the same, and what a machine crash loses of it, the next daemon's
        recover() puts right (no container outlives the machine): two fsyncs for every
        container's start and end were a tenth of what the daemon spent on a run.  It and
        its spare trade places (``replace_record``, as a container's record): a rename
        over the old record made ext4 flush the new one's blocks (its ``auto_da_alloc``),
        which under a container's heavy logging waited 30-100 ms for the disk, on the
        event loop's thread, at each start and end of a container on a network."""
        writes = self._writes.get(net.id)
        if writes is not None and writes.defer():
            return  # written after the write under way, with its fsyncs
        try:
            self._write(net, self._encode(net), durable=durable)
        except OSError as exc:
            if durable:
                raise
            # Not written (a full disk): recover() puts it right as after a crash, and
            # a container's end or `rm -f` must not fail for it.
            log.warning("network %s: its record not written: %s", net.name, exc)

    async def _save_durably(self, net: Network) -> None:
        """Write the network's record with its fsyncs in a worker thread
        (:class:`RecordWrites`), after any such write under way; saves made meanwhile are
        written after it, in order."""
        writes = self._writes.setdefault(net.id, RecordWrites())
        with trio.CancelScope(shield=True):  # the change is made: its record follows
            await writes.settled()
            encode = functools.partial(self._encode, net)
            await writes.write(encode, functools.partial(self._write, net), f"network {net.name}")

    def _encode(self, net: Network) -> bytes:
        """Not indented, as a container's record: json's indenting encoder is its Python
        one (twice the time of its C one, and a reference cycle left per call for the
        collector), and this runs at every start and end of a container on the network,
        whose record holds every address given out."""
        return json.dumps({"format": NETWORK_FORMAT, **unstructure(net)}).encode()

    def _write(self, net: Network, data: bytes, durable: bool = True) -> None:
        """(In a worker thread too: it touches nothing but the file.)"""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        replace_record(str(self._path(net)), data, durable=durable)

    def _load(self) -> None:
        """The records, each at its id's path (an older boxd named them by the network's
        name: moved).  Two of one name, left by a daemon that ended while replacing one
        (the default network's, or one being moved), keep the newer."""
        if not self.dir.is_dir():
            return
        found: dict[str, tuple[Network, Path]] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                raw = json.loads(path.read_bytes())
                net = structure(versioned(raw, NETWORK_FORMAT, "network record"), Network)
            except NewerFormat as exc:
                log.warning("network record %s %s: left alone", path, exc)
                self._foreign[str(raw.get("name", path.stem))] = str(raw.get("subnet", ""))
                continue
            except (OSError, ValueError, ConversionError) as exc:
                log.error("network record %s cannot be read (%s); ignored", path, exc)
                continue
            if net.name in found:
                older, newer = sorted(
                    (found[net.name], (net, path)),
                    key=lambda kept: (kept[0].created_at, kept[1] == self._path(kept[0])),
                )
                remove_record(str(older[1]))
                net, path = newer
            found[net.name] = (net, path)
        for net, path in found.values():
            self._nets[net.name] = net
            if path != self._path(net):
                self._save(net, durable=True)  # before anything else runs
                remove_record(str(path))

    def _path(self, net: Network) -> Path:
        return self.dir / f"{net.id}.json"

    def check(self, config: ContainerConfig) -> None:
        """Refuse a container's ``--network`` that names no network (at create; the
        container of ``container:NAME`` must exist when it starts), and, as Docker does,
        an address or an alias asked for on the default network, which has neither, and
        a ``container:NAME`` member's own hostname, hosts entries or exposed ports."""
        mode = config.network
        if mode not in BUILTIN and not mode.startswith("container:"):
            self.get(mode)
        if mode.startswith("container:"):
            # What is the other container's (runconfig's validateNetContainerMode).
            for given, words in (
                (config.hostname, "hostname and the network mode"),
                (config.extra_hosts, "custom host-to-IP mapping and the network mode"),
                (config.expose, "port exposing and the container type network mode"),
            ):
                if given:
                    raise NetworkError(f"conflicting options: {words}")
        for join in joined(config):
            if join.network == DEFAULT_NETWORK and (join.ip or join.ip6 or join.aliases):
                raise _default_refuses(join.ip or join.ip6)

    def by_name(self, config: ContainerConfig) -> ContainerConfig:
        """``config`` with each user network it names by id (or a prefix of one) named
        by its name, as Docker keys a container's networks: what looks for the network's
        containers by its name (``network rm``'s check, ``ps --filter network=``, its DNS
        after a rename) finds them all (checked by :meth:`check` first)."""

        def name(ref: str) -> str:
            return ref if ref in BUILTIN or ref.startswith("container:") else self.get(ref).name

        changes: dict[str, Any] = {}
        if (network := name(config.network)) != config.network:
            changes["network"] = network
        if config.networks is not None:
            joins = [attrs.evolve(j, network=name(j.network)) for j in config.networks]
            if joins != builtins.list(config.networks):
                changes["networks"] = tuple(joins)
        # One evolve, only for a change: each checks the whole configuration again.
        return attrs.evolve(config, **changes) if changes else config

    def list(self) -> list[Network]:
        return sorted(self._nets.values(), key=lambda n: n.created_at)

    async def _resolve(self, ref: str) -> Network:
        """A network by name or id, the default one made on first use (hold the lock)."""
        if ref == DEFAULT_NETWORK:
            return await self._default()
        return self.get(ref)

    def get(self, ref: str) -> Network:
        """By full id, then name, then id prefix: dockerd's order (a network may be named
        as another's id or a prefix of it; its id still names the other)."""
        net = next((n for n in self._nets.values() if n.id == ref), None) or self._nets.get(ref)
        if net is None:
            matches = [n for n in self._nets.values() if n.id.startswith(ref)] if ref else []
            if len(matches) != 1:
                raise NoSuchNetwork(f"no such network: {ref}")
            net = matches[0]
        return net

    # ---- subnets --------------------------------------------------------------------

    async def _routes(
        self, family: int = socket.AF_INET
    ) -> builtins.list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
        ours = {n.bridge for n in self._nets.values()}
        return await trio.to_thread.run_sync(_netlink.routed_networks, ours, family)

    async def _subnet(
        self, wanted: str, *, exclude: str = "", version: int = 4, routes: bool = True
    ) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """``wanted`` (an IPv4 or, ``version`` 6, an IPv6 CIDR) checked against the host's
        routes (unless not ``routes``) and the other networks (a newer boxd's IPv4 ones
        too), or the first free subnet of the pools (IPv6: see
        :meth:`BridgeOptions.candidates6`)."""
        candidates: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
        taken: builtins.list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]
        if version == 6:
            taken = [
                (n.network6, f"network {n.name}")
                for n in self._nets.values()
                if n.ipv6 and n.name != exclude
            ]
            found = await self._routes(socket.AF_INET6)
            candidates = self.options.candidates6(self.pool6)
        else:
            taken = [
                (n.network, f"network {n.name}")
                for n in self._nets.values()
                if n.ipv4 and n.name != exclude
            ]
            for name, text in self._foreign.items():
                with contextlib.suppress(ValueError):  # a newer boxd's subnet we cannot read
                    taken.append((ipaddress.IPv4Network(text), f"network {name} (a newer boxd's)"))
            found = await self._routes()
            candidates = self.options.candidates()
        if routes:
            taken += [(net, f"the host's route to {net} on {link}") for net, link in found]
        if wanted:
            return _checked_subnet(wanted, version, taken)
        for candidate in candidates:
            if not any(candidate.overlaps(other) for other, _ in taken):
                return candidate
        kind = "IPv6 subnet" if version == 6 else "subnet"
        raise NetworkError(f"no free {kind} left in the pool: give one with --subnet")

    # ---- the default network, user networks -----------------------------------------

    async def _default(self) -> Network:
        if DEFAULT_NETWORK in self._foreign:  # not made again beside it: see _load
            raise NetworkError(
                f"network {DEFAULT_NETWORK}: its record is a newer boxd's, left alone; "
                "containers on it start under that boxd"
            )
        net = self._nets.get(DEFAULT_NETWORK)
        wanted, gateway = self.options.subnet, self.options.gateway
        wanted6 = self.options.subnet6
        if (
            net is None
            or net.bridge != self.options.name
            or (wanted and ipaddress.IPv4Network(wanted, strict=False) != net.network)
            or (gateway and gateway != net.gateway)
            or net.ipv6 != self.options.ipv6
            or (wanted6 and ipaddress.IPv6Network(wanted6, strict=False) != net.network6)
        ):
            subnet = await self._subnet(wanted, exclude=DEFAULT_NETWORK)
            subnet6 = (
                await self._subnet(wanted6, exclude=DEFAULT_NETWORK, version=6)
                if self.options.ipv6
                else None
            )
            net = Network(
                name=DEFAULT_NETWORK,
                id=secrets.token_hex(32),
                bridge=self.options.name,
                subnet=str(subnet),
                gateway=_gateway(gateway, subnet) if gateway else str(subnet.network_address + 1),
                created_at=time.time(),
                dns=False,
                allocations={},
                ipv6=subnet6 is not None,
                subnet6=str(subnet6) if subnet6 else "",
                gateway6=str(subnet6.network_address + 1) if subnet6 else "",
            )
            old = self._nets.get(DEFAULT_NETWORK)
            self._nets[net.name] = net
            await self._save_durably(net)
            if old is not None:
                remove_record(str(self._path(old)))
        options = {MTU_OPTION: str(self.options.mtu)} if self.options.mtu else {}
        if not self.options.icc:  # each container's port isolated as it is plugged
            options[ICC_OPTION] = "false"
        # --mtu or --icc changed: the next bring-up sets the MTU, the next plug the port
        if net.options != options:
            net.options = options
            await self._save_durably(net)
        return net

    async def create(
        self,
        name: str,
        subnet: str = "",
        labels: dict[str, str] | None = None,
        gateway: str = "",
        ip_range: str = "",
        options: dict[str, str] | None = None,
        *,
        internal: bool = False,
        ipv6: bool = False,
        subnet6: str = "",
        gateway6: str = "",
        ip_range6: str = "",
        ipv4: bool = True,
        aux_addresses: dict[str, str] | None = None,
        aux_addresses6: dict[str, str] | None = None,
        attachable: bool = False,
        driver: str = "bridge",
    ) -> Network:
        """``gateway``: the bridge's address in ``subnet`` (default: its first);
        ``ip_range``: a CIDR in it, where containers' addresses are picked from (one asked
        for may be anywhere in the subnet, as in Docker); ``options``: Docker's bridge
        driver options (NETWORK_OPTIONS); ``internal``: see :attr:`Network.internal`;
        ``ipv6`` (or the option :data:`IPV6_OPTION`): dual stack, in ``subnet6`` (default:
        a free /64 of :func:`ula_pool`) with the bridge at ``gateway6`` (default: its first
        address), its containers' IPv6 addresses picked from ``ip_range6`` (default: all of
        it); without ``ipv4`` (or with the option :data:`IPV4_OPTION` false), IPv6 only;
        ``aux_addresses`` (``aux_addresses6``): NAME -> an address of the subnet (subnet6)
        that no container gets (see :func:`_aux_addresses`); ``driver``: bridge, macvlan or
        ipvlan (see :meth:`_check_slave`)."""
        check_network_name(name)
        if driver not in DRIVERS:
            raise NetworkError(
                f"network driver {driver!r} is not supported (use bridge, macvlan or ipvlan)"
            )
        if name in PREDEFINED or name in UNPRIVILEGED:
            raise PredefinedNetwork(f"network name {name!r} is reserved for a built-in network")
        labels = dict(labels or {})
        if "" in labels:
            raise NetworkError(f"invalid label '={labels['']}': a label needs a key")
        for what, value, given in (
            ("gateway", gateway, subnet),
            ("ip-range", ip_range, subnet),
            ("gateway", gateway6, subnet6),
            ("ip-range", ip_range6, subnet6),
        ):
            if value and not given:
                raise NetworkError(f"invalid {what} {value!r}: give the subnet it is in too")
        options = dict(options or {})
        async with self._lock:
            if name in self._nets:
                raise NetworkConflict(f"network with name {name} already exists")
            if name in self._foreign:
                raise NetworkConflict(
                    f"network with name {name} already exists (a newer boxd's, left alone)"
                )
            if driver == "bridge":
                check_network_options(options, (n.bridge for n in self._nets.values()))
            else:
                internal = self._check_slave(driver, options, internal)
            ipv6 = ipv6 or GO_BOOLS[options.get(IPV6_OPTION, "false")]
            ipv4 = ipv4 and GO_BOOLS[options.get(IPV4_OPTION, "true")]
            if not ipv4:
                if not ipv6:
                    raise NetworkError(
                        "invalid EnableIPv4 false (--ipv4=false): a network without IPv4 "
                        "needs IPv6 (--ipv6)"
                    )
                for what, value in (
                    ("subnet", subnet),
                    ("gateway", gateway),
                    ("ip-range", ip_range),
                ):
                    if value:
                        raise NetworkError(
                            f"invalid {what} {value!r}: the network has no IPv4 (EnableIPv4 false)"
                        )
            if subnet6 and not ipv6:
                # Docker keeps it unused; a subnet asked for and silently not had is refused.
                raise NetworkError(
                    f"invalid subnet {subnet6!r}: an IPv6 subnet needs --ipv6 (EnableIPv6)"
                )
            mtu = int(options.get(MTU_OPTION, 0))
            if ipv6 and 0 < mtu < IPV6_MIN_MTU:  # the kernel turns IPv6 off on such a link
                raise NetworkError(
                    f"invalid {MTU_OPTION} {mtu}: an IPv6 network needs an MTU of at least "
                    f"{IPV6_MIN_MTU}"
                )
            routes = driver == "bridge"  # a macvlan's subnet is its parent's LAN's
            pool = _pool(
                await self._subnet(subnet, routes=routes) if ipv4 else None, gateway, ip_range
            )
            pool6 = _pool(
                await self._subnet(subnet6, version=6, routes=routes) if ipv6 else None,
                gateway6,
                ip_range6,
            )
            aux = _aux_addresses(aux_addresses or {}, pool[0], pool[1])
            aux6 = _aux_addresses(aux_addresses6 or {}, pool6[0], pool6[1])
            net_id = secrets.token_hex(32)
            net = Network(
                name=name,
                id=net_id,
                bridge=(options.get(BRIDGE_NAME_OPTION) or f"br-{net_id[:12]}")
                if driver == "bridge"
                else "",
                options=options,
                internal=internal,
                subnet=pool[0],
                gateway=pool[1],
                ip_range=pool[2],
                created_at=time.time(),
                dns=True,
                labels=labels,
                ipv6=ipv6,
                subnet6=pool6[0],
                gateway6=pool6[1],
                ip_range6=pool6[2],
                ipv4=ipv4,
                aux_addresses=aux,
                aux_addresses6=aux6,
                attachable=attachable,
                driver=driver,
            )
            if driver != "bridge":  # its parent link made now, as Docker's
                try:
                    made = await trio.to_thread.run_sync(_ensure_parent, net)
                except OSError as exc:
                    raise NetworkError(
                        f"network {name}: cannot make its parent link {net.parent}: "
                        f"{exc.strerror or exc}"
                    ) from None
                net = attrs.evolve(net, parent_made=made and PARENT_OPTION in options)
                self._parents_up.add(net.name)
            self._nets[name] = net
            await self._save_durably(net)
        return net

    def _check_slave(self, driver: str, options: dict[str, str], internal: bool) -> bool:
        """A macvlan or ipvlan network's options, as Docker's drivers take them: ``parent``
        (a host link, or ``LINK.VLAN``, a VLAN of it that is made when missing; none: a
        dummy link of its own, and the network internal, as Docker's), its mode
        (``macvlan_mode`` bridge, private, vepa or passthru; ``ipvlan_mode`` l2, l3 and l3s
        refused; ``ipvlan_flag`` bridge, private or vepa), the MTU; one network a parent, as
        Docker has it.  Returns whether the network is internal."""
        mode_key, modes, _ = _SLAVE_MODES[driver]
        taken = {PARENT_OPTION, mode_key, MTU_OPTION, IPV6_OPTION, IPV4_OPTION}
        if driver == "ipvlan":
            taken.add(IPVLAN_FLAG_OPTION)
        for key in options:
            if key not in taken:
                raise NetworkError(
                    f"invalid option {key!r} for the {driver} driver: it takes "
                    f"{', '.join(sorted(taken))}"
                )
        if driver == "ipvlan" and options.get(mode_key) in ("l3", "l3s"):
            raise NetworkError(  # their containers route by device, with no gateway
                f"{mode_key} {options[mode_key]} is not supported by boxd: use l2 (or macvlan)"
            )
        if options.get(mode_key, modes[0]) not in modes:
            raise NetworkError(f"invalid {mode_key} {options[mode_key]!r}: use {', '.join(modes)}")
        flags = tuple(_netlink.IPVLAN_FLAGS)
        if driver == "ipvlan" and options.get(IPVLAN_FLAG_OPTION, "bridge") not in flags:
            raise NetworkError(
                f"invalid {IPVLAN_FLAG_OPTION} {options[IPVLAN_FLAG_OPTION]!r}: use "
                f"{', '.join(flags)}"
            )
        if MTU_OPTION in options:
            check_network_options({MTU_OPTION: options[MTU_OPTION]}, ())
        parent = options.get(PARENT_OPTION, "")
        if not parent:
            return True
        base, dot, vlan = parent.rpartition(".")
        if dot and not (vlan.isdigit() and 1 <= int(vlan) <= 4094 and base):
            raise NetworkError(f"invalid parent {parent!r}: a VLAN is LINK.ID, ID 1-4094")
        if not _interface_exists(parent) and not (dot and _interface_exists(base)):
            raise NetworkError(f"invalid parent {parent!r}: no such interface on this host")
        for other in self._nets.values():
            if other.driver != "bridge" and other.options.get(PARENT_OPTION) == parent:
                raise NetworkConflict(  # Docker's words
                    f"network {other.name} is already using parent interface {parent}"
                )
        return internal

    async def remove(self, ref: str, in_use: Callable[[str], builtins.list[str]]) -> Network:
        """``in_use(name)``: the containers on the network now.  The pre-defined ones
        are refused in Docker's words."""
        net = None if ref in BUILTIN else self.get(ref)
        if net is None or net.name in BUILTIN:
            name = ref if net is None else net.name
            raise PredefinedNetwork(f"{name} is a pre-defined network and cannot be removed")
        async with self._lock:
            # Under the lock a start's join takes: a container starting now (a restart
            # after its backoff) is on it, or finds it gone.
            users = in_use(net.name)
            if users:
                raise NetworkConflict(
                    f"network {net.name} is in use by container(s) {', '.join(users)}: "
                    "remove them first"
                )
            await self._bring_down(net)
            del self._nets[net.name]
            remove_record(str(self._path(net)))
            await self._apply()
        return net

    # ---- bridges, rules, DNS ----------------------------------------------------------

    async def _bring_up(self, net: Network) -> None:
        if net.driver != "bridge":  # its parent (made again after a reboot)
            if net.name not in self._parents_up:
                await trio.to_thread.run_sync(_ensure_parent, net)
                self._parents_up.add(net.name)
            return
        if net.bridge in self._up:
            return
        await trio.to_thread.run_sync(
            _netlink.ensure_bridge,
            net.bridge,
            net.gateway,
            net.network.prefixlen if net.ipv4 else 0,
            mac_of(net.gateway or net.gateway6),
            net.mtu,
            f"{net.gateway6}/{net.network6.prefixlen}" if net.ipv6 else "",
        )
        self._up.add(net.bridge)
        _enable_forwarding()
        if net.ipv6:
            _enable_forwarding(IPV6_FORWARDING)
        await self._apply()
        if net.serves_dns and self.nursery is not None:
            self._dns[net.name] = await self.nursery.start(self._serve_dns, net)

    async def _serve_dns(
        self, net: Network, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    _dns.serve,
                    net.gateway or net.gateway6,  # an IPv6-only network's: its IPv6 one
                    _dns.Names(
                        lambda name, client: self._lookup(net.name, name, client),
                        lambda address, client: self._reverse(net.name, address, client),
                        self._upstreams_of,
                    ),
                )
                task_status.started(scope)

    def renamed(self, c: Container) -> None:
        """A running container was renamed: its networks' DNS answers its new name, and
        its old one no more (as Docker's rename)."""
        for join in joined(c.config):
            members = self._names.get(join.network, {})
            if c.id in members:
                members[c.id] = (dns_names(c, join), members[c.id][1])

    def _forget(self, network: str, cid: str) -> None:
        """The container's names on ``network`` are answered no more; the network's
        entry goes with its last member (a test suite makes a network per test, and every
        DNS query goes through the entries)."""
        self._join_links.pop((network, cid), None)
        members = self._names.get(network)
        if members is not None:
            members.pop(cid, None)
            if not members:
                del self._names[network]

    def _answer(self, link: _Link, cid: str, names: tuple[str, ...]) -> None:
        """The container's ``names`` on ``link``'s network answer with its addresses
        there, and the links of its join there answer it (see _forget)."""
        network = link.net.name
        self._names.setdefault(network, {})[cid] = (names, link.addresses)
        aliases = link_aliases(link.join.links)
        if aliases:
            self._join_links[(network, cid)] = aliases

    def links_changed(self, c: Container) -> None:
        """A running container's links changed (one removed): its DNS answers the
        aliases it has now."""
        if c.id in self._aliases:
            self._aliases[c.id] = link_aliases(c.config.links)

    def _client(self, address: str) -> str | None:
        """The container that has ``address`` on one of its networks."""
        for members in self._names.values():
            for cid, (_, held) in members.items():
                if address in held:
                    return cid
        return None

    def _searched(self, network: str, cid: str | None) -> builtins.list[str]:
        """The user networks whose names a container asking on ``network`` resolves:
        that one first, then the others it is on (Docker's embedded DNS answers for every
        network the container is on)."""
        searched = [network]
        if cid is not None:
            searched += [
                n
                for n, members in self._names.items()
                if n != network and cid in members and n in self._nets and self._nets[n].dns
            ]
        return searched

    def _lookup(self, network: str, name: str, client: str) -> builtins.list[str]:
        """``name`` as a container asking from ``client`` sees it, on the networks it
        searches (:meth:`_searched`), then as Docker's NAME.NETWORK (NAME on NETWORK, one
        of those; the longest NAME first, as both may hold dots); every container that has
        the name there (a scaled service's, which share its alias).  The aliases of its
        links come first, each network in that order: those of its join there (their
        target there, as moby's endpoint aliases) and those made at create.  Names are
        matched whatever their case, as DNS names are (and Docker's)."""
        cid = self._client(client)
        name = name.lower()
        searched = self._searched(network, cid)
        wanted = [(name, n) for n in searched]
        head = name
        while "." in head:
            head, _, _ = head.rpartition(".")
            for net in searched:
                if net.lower() == name[len(head) + 1 :]:
                    wanted.append((head, net))
        if cid is not None:
            made = self._aliases.get(cid, {})
            for one, n in wanted:
                for aliases in (self._join_links.get((n, cid), {}), made):
                    target = aliases.get(one)
                    found = self._held(n, target) if target is not None else []
                    if found:
                        return found
        for one, n in wanted:
            found = self._held(n, one)
            if found:
                return found
        return []

    def _held(self, network: str, name: str) -> builtins.list[str]:
        """The addresses on ``network`` of every container that has ``name`` (lowercase)
        there."""
        members = self._names.get(network, {}).values()
        return [a for names, held in members if name in (n.lower() for n in names) for a in held]

    def _reverse(self, network: str, address: str, client: str) -> str:
        """A reverse query's answer for ``address``: NAME.NETWORK of the container that has
        it on a network the asking container searches, as Docker's ("" if none has)."""
        for n in self._searched(network, self._client(client)):
            for names, held in self._names.get(n, {}).values():
                if address in held:
                    return f"{names[0]}.{n}"
        return ""

    def _upstreams_of(self, client: str) -> builtins.list[str]:
        """Where the DNS forwards a container's other queries: its ``--dns`` servers, else
        the host's (the daemon's own namespace reaches the host's loopback resolvers too),
        never one of boxd's own name servers; none for a container on internal networks
        only, which has no way out (as Docker's embedded DNS)."""
        cid = self._client(client)
        on = [self._nets[n] for n, held in self._names.items() if cid in held and n in self._nets]
        if cid is not None and all(net.internal for net in on):
            return []
        servers = (self._resolvers.get(cid, ()) if cid else ()) or self._upstreams
        ours = {n.gateway for n in self._nets.values() if n.serves_dns}
        return [s for s in servers if s not in ours]

    async def _bring_down(self, net: Network) -> None:
        if net.driver != "bridge":  # its parent, if boxd made it
            self._parents_up.discard(net.name)
            if net.parent_made or PARENT_OPTION not in net.options or net.internal:
                await trio.to_thread.run_sync(_netlink.delete_link, net.parent)
            return
        scope = self._dns.pop(net.name, None)
        if scope is not None:
            scope.cancel(reason=f"network {net.name} removed")
        self._up.discard(net.bridge)
        await trio.to_thread.run_sync(_netlink.delete_link, net.bridge)

    def _bridges(self) -> builtins.list[_nft.Bridge]:
        return [
            _nft.Bridge(n.bridge, n.subnet, n.internal, n.masquerade, n.subnet6)
            for n in self._nets.values()
            if n.bridge in self._up
        ]

    async def _publish(self, forwards: builtins.list[_nft.Forward]) -> None:
        """A starting container's published ports into the table (under the lock): their
        rules added to it when it holds what they need and no ended container's rules wait
        to go (one of the same port would come first), else the table rebuilt (a table
        someone removed, as `nft flush ruleset` does, is made anew)."""
        v4 = all(f.family == _nft.FAMILY for f in forwards)
        if self._table and not self._rebuild_wanted and (self._table6 or v4):
            try:
                await _nft.add(self.table, self._bridges(), forwards)
                return
            except _nft.NftError:
                pass
        self._rebuild_wanted = False  # (done here: the one asked for finds nothing to do)
        await self._apply()

    async def _apply(self) -> None:
        bridges = self._bridges()
        forwards = [f for fs in self._forwards.values() for f in fs]
        ipv6 = any(b.subnet6 for b in bridges) or any(f.family == "ip6" for f in forwards)
        self._table = True
        await _nft.apply(self.table, bridges, forwards, ipv6=ipv6, drop6=self._table6)
        self._table6 = ipv6

    def apply_soon(self) -> None:
        """Rebuild the table off the caller's way: what an ended container published goes
        from it a moment later, not on the way out of its ``run`` (a rebuild deletes the
        table's rules, and the kernel's transaction then waits ~10 ms: `run --rm -p` took
        ~16 ms longer).  One rebuild at a time, and one for any number asked for while it
        waits; each makes the table hold what is published then."""
        if self._rebuild_wanted:
            return
        self._rebuild_wanted = True
        assert self.nursery is not None
        self.nursery.start_soon(self._rebuild)

    async def _rebuild(self) -> None:
        async with self._lock:
            if not self._rebuild_wanted:  # (close() took it over)
                return
            self._rebuild_wanted = False
            try:
                await self._apply()
            except _nft.NftError as exc:
                log.warning(
                    "%s: ended containers' ports keep their rules until the next rebuild", exc
                )

    # ---- the daemon's life ------------------------------------------------------------

    async def recover(
        self, existing: Mapping[str, Container], adopted: Iterable[Container] = ()
    ) -> None:
        """At start: forget the addresses of containers that no longer exist (``existing``:
        by id), remove what a daemon that died left (its table, its bridges) unless a
        container it ``adopted`` (live restore) still uses it: :meth:`adopt` brings those
        back into the table."""
        self._load()
        adopted = builtins.list(adopted)
        in_use = {e.network for c in adopted for e in c.state.network.endpoints}
        # An allocation not on disk: a --rm container's, or one a machine crash lost.
        for c in adopted:
            for e in c.state.network.endpoints:
                net = self._nets.get(e.network)
                if net is None:
                    continue
                kept = (net.allocations.get(c.id, ""), net.allocations6.get(c.id, ""))
                if kept != (e.ip_address, e.ipv6_address):
                    if e.ip_address:
                        net.allocations[c.id] = e.ip_address
                    if e.ipv6_address:
                        net.allocations6[c.id] = e.ipv6_address
                    await self._save_durably(net)
        for net in self._nets.values():
            stale = [cid for cid in {*net.allocations, *net.allocations6} if cid not in existing]
            for cid in stale:
                net.allocations.pop(cid, None)
                net.allocations6.pop(cid, None)
            if stale:
                await self._save_durably(net)
        links = await trio.to_thread.run_sync(_netlink.link_names)
        await self._recover_members(existing, adopted, links)
        for net in self._nets.values():
            if net.bridge in links and net.name not in in_use:
                log.info("removing bridge %s left by a previous daemon", net.bridge)
                await trio.to_thread.run_sync(_netlink.delete_link, net.bridge)
        try:
            families = await _nft.existing(self.table)
            if not in_use and families:
                log.info("removing nftables table %s left by a previous daemon", self.table)
                await _nft.delete(self.table, families)
            # Kept for adopted containers: the first rebuild removes it if no longer needed.
            self._table6 = bool(in_use) and "ip6" in families
        except _nft.NftError as exc:
            log.warning("%s: containers on a network will not start", exc)
        # The default network's record, checked against the host's routes now: a
        # --bridge-subnet that overlaps one stops the daemon here, naming both.
        await self._default()

    async def _recover_members(
        self, existing: Mapping[str, Container], adopted: builtins.list[Container], links: set[str]
    ) -> None:
        """Each adopted ``container:NAME`` member is counted among the members of the peer
        its record names (by id: NAME may name another container by now) before any adopted
        container's end is recorded, so that a peer that ended while no daemon ran, adopted
        with its exit status, takes its interfaces out of the namespace its members hold
        (see :meth:`Attachment.release`).  A peer that is not adopted (its shim gone too)
        left them there, their host ends on its bridges with its addresses: they go now,
        as they would have at its end.  The members run on with a loopback only, as they
        do when their peer ends while a daemon runs."""
        for c in adopted:
            if owner := c.state.network.peer:
                self._sharers[owner] = self._sharers.get(owner, 0) + 1
                self._member_pids.setdefault(owner, set()).add(c.state.pid)
        for owner in self._sharers.keys() - {c.id for c in adopted}:
            peer = existing.get(owner)
            for ep in peer.state.network.endpoints if peer is not None else ():
                net = self._nets.get(ep.network)
                if net is not None and net.driver != "bridge":
                    await _unplug_inside(self._member_pids[owner], ep.interface)
                    continue
                for name in host_link_names(owner, ep.interface):
                    if name in links:
                        log.info("removing %s: %s ended, its members run on", name, owner[:12])
                        await trio.to_thread.run_sync(_netlink.delete_link, name)

    async def close(self) -> None:
        """At shutdown: the bridges and rules go, except those of containers that run on
        (live restore: the next daemon adopts them and their network)."""
        for scope in self._dns.values():
            scope.cancel(reason="daemon stopping")
        self._dns.clear()
        async with self._lock:  # a rebuild asked for is done here, or not at all
            rebuild, self._rebuild_wanted = self._rebuild_wanted, False
        running = {self._nets[name].bridge for name, members in self._names.items() if members}
        if rebuild and running:  # the table kept for them holds what they publish
            with contextlib.suppress(_nft.NftError):
                await self._apply()
        for bridge in self._up - running:
            with contextlib.suppress(OSError):
                await trio.to_thread.run_sync(_netlink.delete_link, bridge)
        if running:
            log.info("keeping bridges %s for the containers that run on", sorted(running))
        elif self._table:
            with contextlib.suppress(_nft.NftError):
                await _nft.delete(self.table, _nft.FAMILIES if self._table6 else (_nft.FAMILY,))
        self._up.clear()
        self._table = self._table6 = False

    def forget(self, cid: str) -> None:
        """A removed container's addresses go back to their networks."""
        unsaved = cid in self._unsaved
        self._unsaved.discard(cid)
        for net in self._nets.values():
            freed = net.allocations.pop(cid, None), net.allocations6.pop(cid, None)
            if freed != (None, None) and not unsaved:
                self._save(net)

    # ---- containers -------------------------------------------------------------------

    def attachment(self, container: Container) -> Attachment:
        return Attachment(self, container)

    async def adopt(self, container: Container) -> Attachment | None:
        """A container a previous daemon left running (live restore): its networks come
        back as its record says (bridges up, rules, names, the host ports bound again).
        A ``container:NAME`` member's is its peer's, which :meth:`recover` counted it
        among the members of."""
        mode = container.config.network
        if mode == "host":
            return None
        attachment = Attachment(self, container)
        attachment.pid = container.state.pid
        if mode.startswith("container:"):
            attachment.owner = container.state.network.peer
            return attachment  # (a member of its pids since recover())
        joins = {j.network: j for j in joined(container.config)}
        for ep in container.state.network.endpoints:
            net = self._nets.get(ep.network)
            if net is None:
                continue
            join = joins.get(ep.network, NetworkJoin(ep.network, ep.aliases))
            index, host_link = 0, ""
            names = (ep.host_link,) if ep.host_link else host_link_names(container.id, ep.interface)
            for host_link in names:
                if index := await trio.to_thread.run_sync(_netlink.link_index, host_link):
                    break
            link = _Link(net, join, ep.ip_address, ep.interface, host_link, index, ep.ipv6_address)
            attachment.links.append(link)
        if attachment.links:
            for port in container.state.network.ports:
                spec = PortSpec(port.container_port, port.protocol, port.host_ip, port.host_port)
                try:
                    attachment._sockets += _proxy.bind(spec)
                except OSError as exc:
                    log.warning("%s: %s", container.short_id, exc)
        async with self._lock:
            for link in attachment.links:
                await self._bring_up(link.net)
        await attachment._activate()
        return attachment

    async def connect(
        self,
        container: Container,
        attachment: Attachment | None,
        asked: NetworkJoin,
    ) -> ContainerConfig:
        """``network connect``: the container's configuration with ``asked`` added (its
        network is resolved here, its address reserved now); ``attachment``, the running
        container's, gets the new interface at once (a stopped one gets it at its next
        start)."""
        config = container.config
        ref = asked.network
        if config.network == "host" or ref == "host":
            raise NetworkError(HOST_CONFLICT)
        if config.network.startswith("container:"):
            raise NetworkError(SHARED_CONFLICT)
        if config.network == "none" or ref == "none":
            raise NetworkError(NONE_CONFLICT)
        for alias in asked.aliases:
            check_name(alias)
        for link in asked.links:
            check_link(link)
        link_local = tuple([check_link_local(a) for a in asked.link_local_ips])
        ip = check_ipv4(asked.ip, "--ip") if asked.ip else ""
        ip6 = check_ipv6(asked.ip6, "--ip6") if asked.ip6 else ""
        mac = check_mac(asked.mac) if asked.mac else ""
        check_driver_opts(asked.driver_opts)
        async with self._lock:
            net = await self._resolve(ref)
        joins = joined(config)
        if any(j.network == net.name for j in joins):
            raise NetworkConflict(
                f"endpoint with name {container.name} already exists in network {net.name}"
            )
        if not net.dns and (ip or ip6 or asked.aliases):
            raise _default_refuses(ip or ip6)
        if not net.dns and asked.links:
            raise NetworkError(
                f"links at network connect are only for user-defined networks: {net.name}'s"
                " containers reach each other by the links made at create"
            )
        join = attrs.evolve(
            asked, network=net.name, ip=ip, ip6=ip6, mac=mac, link_local_ips=link_local
        )
        new = attrs.evolve(config, networks=(*joins, join))
        if attachment is None:  # at rest: its interface names checked now, not at its start
            try:
                container_interfaces(new)
            except ValueError as exc:
                raise NetworkConflict(str(exc)) from None
        async with self._lock:
            try:
                await self._allocate_both(net, config, container.id, join)
            except BaseException:
                await self._free(net, container.id)  # its IPv4 address, if its IPv6 one failed
                raise
        if attachment is not None:
            try:
                await attachment.join(net, join)
            except BaseException:
                await self._free(net, container.id)
                raise
        return new

    async def disconnect(
        self, container: Container, attachment: Attachment | None, ref: str
    ) -> ContainerConfig:
        """``network disconnect``: the configuration without network ``ref``; a running
        container loses its interface there at once.  Its address there is freed."""
        config = container.config
        if config.network == "host" or ref == "host":
            raise NetworkError(HOST_CONFLICT)
        joins = joined(config)
        async with self._lock:
            try:
                net = await self._resolve(ref)
            except NoSuchNetwork:
                if attachment is not None or not any(j.network == ref for j in joins):
                    raise
                # Removed while the container was at rest (see remove): taken off by name,
                # as Docker's daemon takes a stopped container off a network it cannot find.
                return attrs.evolve(config, networks=tuple([j for j in joins if j.network != ref]))
        if not any(j.network == net.name for j in joins):
            raise NetworkConflict(
                f"container {container.name} is not connected to network {net.name}"
            )
        new = attrs.evolve(config, networks=tuple([j for j in joins if j.network != net.name]))
        if attachment is not None:
            await attachment.leave(net.name)
        await self._free(net, container.id)
        return new

    async def _free(self, net: Network, cid: str) -> None:
        freed = net.allocations.pop(cid, None), net.allocations6.pop(cid, None)
        if freed != (None, None):
            await self._save_durably(net)

    async def _allocate(
        self, net: Network, cid: str, wanted: str = "", *, save: bool = True, v6: bool = False
    ) -> str:
        """The container's address on ``net`` (``v6``: its IPv6 one, "" on a network without
        IPv6): kept from before, ``wanted``, or the first free one.  Without ``save`` (a
        ``--rm`` container, which has no address to keep for a next start) a new address
        is not written down, nor is its return: the record is only ever behind by such
        addresses, which recover() drops (their containers are gone) or takes back from
        an adopted container's record."""
        if v6 and not net.ipv6:
            if wanted:
                raise NetworkError(
                    f"invalid --ip6 {wanted}: network {net.name} has no IPv6 (see --ipv6)"
                )
            return ""
        if not v6 and not net.ipv4:
            if wanted:
                raise NetworkError(
                    f"invalid --ip {wanted}: network {net.name} has no IPv4 (EnableIPv4 false)"
                )
            return ""
        subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
        if v6:
            allocations, subnet, what = net.allocations6, net.network6, "--ip6"
            pool: ipaddress.IPv4Network | ipaddress.IPv6Network = (
                ipaddress.IPv6Network(net.ip_range6) if net.ip_range6 else subnet
            )
            used = {a for c, a in allocations.items() if c != cid} | {net.gateway6}
            used |= set(net.aux_addresses6.values())
        else:
            allocations, subnet, what = net.allocations, net.network, "--ip"
            pool = ipaddress.IPv4Network(net.ip_range) if net.ip_range else subnet
            used = {a for c, a in allocations.items() if c != cid} | {net.gateway}
            used |= set(net.aux_addresses.values())
        address = allocations.get(cid)
        if (
            address is not None
            and ipaddress.ip_address(address) in subnet
            and wanted in ("", address)
        ):
            return address
        ends = _ends(subnet)
        if wanted:
            if ipaddress.ip_address(wanted) not in subnet or ipaddress.ip_address(wanted) in ends:
                raise NetworkError(
                    f"invalid {what} {wanted}: not an address of {net.name}'s {subnet}"
                )
            if wanted in used:
                raise NetworkConflict(f"address {wanted} on network {net.name} is already in use")
            allocations[cid] = wanted
            await self._save_durably(net)
            return wanted
        for host in (a for a in pool if a not in ends):
            if str(host) not in used:
                allocations[cid] = str(host)
                if save:
                    self._save(net)
                else:
                    self._unsaved.add(cid)
                return str(host)
        raise NetworkError(f"network {net.name} has no free address left in {pool}")

    async def _allocate_both(
        self,
        net: Network,
        config: ContainerConfig,
        cid: str,
        join: NetworkJoin,
        *,
        save: bool = True,
    ) -> tuple[str, str]:
        """The container's IPv4 address on ``net`` ("" on an IPv6-only network) and its IPv6
        one ("" without IPv6, or with the container's own turned off: :func:`ipv6_off`)."""
        off = ipv6_off(config)
        if off:
            turned_off = (
                "the container's IPv6 is turned off (--sysctl net.ipv6.conf.all.disable_ipv6=1)"
            )
            if join.ip6:
                raise NetworkError(f"invalid --ip6 {join.ip6}: {turned_off}")
            for extra in join.link_local_ips:
                if ":" in extra:
                    raise NetworkError(f"invalid --link-local-ip {extra}: {turned_off}")
            if not net.ipv4:
                raise NetworkError(f"network {net.name} is IPv6-only and {turned_off}")
        address = await self._allocate(net, cid, join.ip, save=save)
        if off:
            return address, ""
        return address, await self._allocate(net, cid, join.ip6, save=save, v6=True)


def _preferred(links: list[_Link]) -> _Link | None:
    """Of ``links``, the one of the highest gw-priority, the first of a tie (None: none)."""
    return max(links, key=lambda link: link.join.gw_priority, default=None)


def ipv6_off(config: ContainerConfig) -> bool:
    """Whether the container turns IPv6 off (``--sysctl net.ipv6.conf.all.disable_ipv6=1``,
    or ``lo``'s): it then gets no IPv6 address, as Docker gives none to a container whose
    loopback has none (the kernel would take it away)."""
    keys = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.lo.disable_ipv6")
    return any(
        k in keys and v.strip() == "1" for k, _, v in (s.partition("=") for s in config.sysctls)
    )


IPV6_FORWARDING = "/proc/sys/net/ipv6/conf/all/forwarding"


def _enable_forwarding(path: str = "/proc/sys/net/ipv4/ip_forward") -> None:
    """Routing between the bridges and the host's links, as Docker does (in the daemon's
    network namespace: a test's daemon changes its test namespace only); IPv6's
    (``IPV6_FORWARDING``) with the first network with IPv6."""
    with open(path, "r+") as f:
        if f.read().strip() != "1":
            log.info("enabling forwarding (%s)", path)
            f.seek(0)
            f.write("1\n")


@attrs.define
class _Link:
    """One of a container's interfaces: its place on one network."""

    net: Network
    join: NetworkJoin
    address: str
    interface: str  # eth0, eth1, ... in the container
    host_link: str  # the veth's other end, a port of the network's bridge
    host_index: int = 0  # its interface index, once plugged (never reused by another)
    address6: str = ""  # its IPv6 address on a network with IPv6

    @property
    def addresses(self) -> tuple[str, ...]:
        """Its addresses: IPv4 (but on an IPv6-only network), then IPv6 on a network with
        IPv6."""
        return tuple([a for a in (self.address, self.address6) if a])

    @property
    def mac(self) -> str:
        """The interface's MAC address: the one asked for, or one made from its address
        (an ipvlan's: its parent's, "" here).  The one place it is chosen, so that what
        inspect shows is what the link has."""
        if self.net.driver == "ipvlan":
            return ""
        return self.join.mac or mac_of(self.address or self.address6)


async def _unplug(link: _Link) -> None:
    """The host's end of ``link`` gone, by its index (a link never plugged has none, and
    nothing to remove); a failure is logged, never raised into the daemon's nursery."""
    if not link.host_index:
        return
    try:
        await trio.to_thread.run_sync(_netlink.delete_index, link.host_index)
    except OSError as exc:
        log.warning("could not remove %s: %s", link.host_link, exc)


async def _unplug_inside(members: set[int], interface: str) -> None:
    """A macvlan or ipvlan interface taken out of the namespace that ``members`` (processes
    of ``container:NAME`` members) hold; a failure is logged, never raised."""
    for pid in sorted(members):
        try:
            await trio.to_thread.run_sync(_netlink.delete_inside, pid, interface)
            return
        except OSError as exc:
            log.warning("could not remove %s through process %d: %s", interface, pid, exc)


def link_aliases(links: tuple[str, ...]) -> dict[str, str]:
    """The names links (``NAME:ALIAS``) give a container: ALIAS -> NAME, in lowercase (as
    its DNS matches them)."""
    return {alias.lower(): name.lower() for name, alias in map(_links.parse, links)}


class Attachment:
    """One run's place on its networks: see the module's docstring."""

    def __init__(self, networks: Networks, container: Container) -> None:
        self.networks = networks
        self.container = container
        self.mode = container.config.network
        self.links: list[_Link] = []
        self.pid = 0  # the container's init, once connected: where hot-plugging goes
        self._sockets: list[tuple[PortSpec, socket.socket]] = []
        self._bindings: tuple[PortBinding, ...] = ()
        self._proxies: trio.CancelScope | None = None
        self._local_dns: trio.CancelScope | None = None  # its own name server's, if any
        self._active = False
        self._peer: tuple[Container, int] | None = None  # container:NAME, once reserved
        self.link_hosts: tuple[str, ...] = ()  # /etc/hosts lines of its links (boxd._links)
        # container:NAME: the id of the container whose network namespace it shares, among
        # whose members (Networks._sharers) it counts until released.
        self.owner = ""

    @property
    def private(self) -> bool:
        """Whether the container gets a network namespace of its own."""
        return self.mode != "host"

    @property
    def address(self) -> str:
        """Its address on its first network ("" on none)."""
        return self.links[0].address if self.links else ""

    def _outward(self, links: builtins.list[_Link] | None = None) -> _Link | None:
        """The link its default route and published ports go through: of its networks with
        IPv4 that are not internal (none if all are), else (IPv6-only networks) of those
        not internal, for its ports, the one of the highest ``gw_priority`` (Docker 28's),
        the first of a tie.  ``links``: of those instead of its own (one more, say)."""
        links = self.links if links is None else links
        outside = [link for link in links if not link.net.internal]
        return _preferred([link for link in outside if link.address]) or _preferred(outside)

    def _outward6(self, links: builtins.list[_Link] | None = None) -> _Link | None:
        """The link its IPv6 default route goes through: of its networks with IPv6 that are
        not internal, the one of the highest ``gw_priority``, the first of a tie (as Docker
        picks a gateway for each family).  ``links``: as for :meth:`_outward`."""
        links = self.links if links is None else links
        return _preferred([ln for ln in links if ln.address6 and not ln.net.internal])

    def _names(self, join: NetworkJoin) -> tuple[str, ...]:
        return dns_names(self.container, join)

    def ns_paths(self) -> tuple[tuple[Namespace, str], ...]:
        """The namespaces the container joins: ``container:NAME``'s network."""
        if self._peer is None:
            return ()
        return ((Namespace.NET, f"/proc/{self._peer[1]}/ns/net"),)

    def _resolv(self) -> str:
        """Its resolv.conf: a user network's name server (the first of its networks that
        has one; ``--dns`` servers are then that server's upstreams, as with Docker's
        embedded DNS), else ``--dns`` or the host's servers (without loopback ones in a
        namespace of its own); ``--dns-search``/``--dns-option`` replace the host's."""
        config = self.container.config
        servers, rest = host_resolv()
        dns_net = next((link.net for link in self.links if link.net.serves_dns), None)
        local = self._local_dns_link() is not None
        if dns_net is not None:
            chosen = [dns_net.gateway or dns_net.gateway6]
        elif local:
            chosen = [LOCAL_DNS]
        elif config.dns:
            chosen = list(config.dns)
        elif self.mode == "host":
            chosen = servers
        else:
            chosen = [s for s in servers if not _is_loopback(s)] or list(FALLBACK_RESOLVERS)
        return resolv_conf(
            chosen,
            rest,
            dns_search=config.dns_search,
            dns_options=config.dns_options,
            embedded=dns_net is not None or local,
        )

    def etc(self) -> EtcNetwork:
        config = self.container.config
        hostname = _nsmodes.hostname(self.container)
        domain = _nsmodes.domainname(self.container)
        # As Docker's /etc/hosts: the full name, then the bare host name (of a hostname
        # that is itself a full name, libnetwork's too).
        full = f"{hostname}.{domain}" if domain else hostname
        names = (full, full.partition(".")[0]) if "." in full else (full,)
        if self._peer is not None:
            # The other container's place: its address, its name server.
            peer = self._peer[0]
            endpoints = peer.state.network.endpoints
            net = self.networks._nets.get(endpoints[0].network) if endpoints else None
            if net is None:
                return EtcNetwork(resolv=bridge_resolv())
            _, rest = host_resolv()
            resolv = (
                resolv_conf(
                    [net.gateway or net.gateway6] if net.serves_dns else [LOCAL_DNS],
                    rest,
                    dns_search=peer.config.dns_search,
                    dns_options=peer.config.dns_options,
                    embedded=True,
                )
                if net.dns
                else bridge_resolv()
            )
            first = endpoints[0]
            return EtcNetwork(
                address=first.ip_address or first.ipv6_address,  # IPv6-only: its IPv6 one
                addresses6=(first.ipv6_address,) if first.ip_address and first.ipv6_address else (),
                names=names,
                resolv=resolv,
                host_gateway=net.gateway or net.gateway6,
            )
        if self.mode == "host":
            hosts = None if config.extra_hosts else _host_file("/etc/hosts")
            return EtcNetwork(resolv=self._resolv(), host_gateway="127.0.0.1", hosts=hosts)
        if not self.links:
            # --network none: the image's own resolv.conf, unless --dns* asks otherwise.
            asked = config.dns or config.dns_search or config.dns_options
            return EtcNetwork(resolv=self._resolv() if asked else None)
        v4 = [link.address for link in self.links if link.address]
        v6 = [link.address6 for link in self.links if link.address6]
        first_net = self.links[0].net
        return EtcNetwork(
            address=v4[0] if v4 else v6[0],
            names=names,
            others=tuple(v4[1:]),
            addresses6=tuple(v6 if v4 else v6[1:]),
            resolv=self._resolv(),
            links=self.link_hosts,
            host_gateway=first_net.gateway or first_net.gateway6,
        )

    def _wanted_ports(self) -> list[PortSpec]:
        config = self.container.config
        ports = list(config.ports)
        if config.publish_all:
            published = {p.key for p in ports}
            # --expose, and the image's ExposedPorts.
            for key in dict.fromkeys((*config.expose, *config.exposed_ports)):
                if key not in published:
                    number, _, proto = key.partition("/")
                    ports.append(PortSpec(int(number), proto))
        return ports

    async def reserve(self) -> None:
        """The addresses, and the host ports bound (a taken port fails here)."""
        if self.mode in ("host", "none"):
            return
        nets = self.networks
        if self.mode.startswith("container:"):
            assert nets.peer is not None
            self._peer = nets.peer(self.mode.partition(":")[2])
            self.owner = self._peer[0].id
            nets._sharers[self.owner] = nets._sharers.get(self.owner, 0) + 1
            # Recorded with it: a next daemon adopts it as a member of that container's.
            peer = self._peer[0]
            self.container.state.network = NetworkSettings(
                peer=self.owner,
                hostname=_nsmodes.hostname(peer),
                domainname=_nsmodes.domainname(peer),
            )
            return
        cid = self.container.id
        joins = joined(self.container.config)
        interfaces = container_interfaces(self.container.config)
        async with nets._lock:
            for join, interface in zip(joins, interfaces, strict=True):
                try:
                    net = await nets._resolve(join.network)
                except NoSuchNetwork:  # removed while the container was at rest
                    raise NoSuchNetwork(
                        f"failed to set up container networking: network {join.network} not found"
                    ) from None
                address, address6 = await nets._allocate_both(
                    net,
                    self.container.config,
                    cid,
                    join,
                    save=not self.container.config.auto_remove,
                )
                host_link = host_link_name(cid, interface)
                self.links.append(_Link(net, join, address, interface, host_link, 0, address6))
        if self.links:
            # On internal networks only, its ports have no way in: they are published once
            # a network with one is connected (join), as by dockerd.
            outward = self._outward()
            if outward is not None and outward.net.driver == "bridge":  # (a macvlan's
                self._bind_ports(outward.net)  # address is reached as it is)
        async with nets._lock:
            for link in self.links:
                await nets._bring_up(link.net)

    def _bind_ports(self, net: Network) -> None:
        """The host ports it publishes through ``net``, bound (a taken one fails here,
        naming it); those without an address of their own on ``net``'s binding address, or
        on every address of each family, as Docker's: 0.0.0.0 and the same port on ``::``,
        one free on both (unless the host has no IPv6)."""
        forwards = self.networks._forwards.values()
        published = {(f.protocol, f.host_port) for fs in forwards for f in fs}
        both = _proxy.ipv6_available()
        try:
            for spec in self._wanted_ports():
                if not spec.host_ip and net.binding_ip:
                    spec = attrs.evolve(spec, host_ip=net.binding_ip)
                self._sockets += _proxy.bind(spec, published, twin=not spec.host_ip and both)
        except BaseException:
            self._close_sockets()
            raise

    def plan_links(self) -> tuple[LinkConfig, ...]:
        """What the container's process configures itself (SpawnPlan.links): the interface
        :meth:`connect` moves into its namespace for each network, eth0 first."""
        return tuple(
            [
                LinkConfig(
                    link.interface,
                    link.address,  # "" on an IPv6-only network: only brought up
                    link.net.network.prefixlen if link.address else 0,
                )
                for link in self.links
            ]
        )

    def plan_gateway(self) -> str:
        """Its default route's gateway: its first network's that is not internal ("": no
        default route)."""
        outward = self._outward()
        return outward.net.gateway if outward is not None else ""  # "": IPv6-only

    async def connect(self, pid: int) -> None:
        """While the container's init (``pid``) sets up its mounts: its interfaces, which
        it waits for and then configures itself (see :meth:`plan_links`), then its
        published ports and its names; it execs only after this returns."""
        self.pid = pid
        if self.owner:
            self.networks._member_pids.setdefault(self.owner, set()).add(pid)
        if self.links:
            self._check_namespace()

            outward6 = self._outward6()

            def plug_all() -> None:  # in one worker thread (each index kept at once)
                for link in self.links:
                    self._plug_now(link, configure=False, default_route=True,
                                   route6=link is outward6)  # fmt: skip

            await trio.to_thread.run_sync(plug_all)
        await self._activate()

    def _check_namespace(self) -> None:
        if os.stat(f"/proc/{self.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            # A spawn path that made no namespace (a test's fake): never touch the daemon's.
            raise OSError(f"process {self.pid} has no network namespace of its own to connect")

    def _plug_now(self, link: _Link, *, configure: bool, default_route: bool, route6: bool) -> None:
        """``link``'s interface in the container's namespace (blocks): a veth whose host
        end is a port of its bridge, or a macvlan/ipvlan of its parent (no host end);
        ``route6``: IPv6 goes through it by default (see :meth:`_outward6`)."""
        net = link.net
        want = _netlink.Interface(
            mac=link.mac,
            address=link.address,
            prefix_len=net.network.prefixlen if link.address else 0,
            gateway=net.gateway,
            ifname=link.interface,
            default_route=default_route,
            configure=configure,
            mtu=net.mtu,
            address6=f"{link.address6}/{net.network6.prefixlen}" if link.address6 else "",
            gateway6=net.gateway6 if route6 else "",
            link_local=link.join.link_local_ips,
            # The container's own that name it (as dockerd before API 1.48 moves them to
            # its endpoint), then its endpoint's, which win.
            sysctls=interface_sysctls(self.container.config.sysctls, link.interface)
            + endpoint_sysctls(link.join.driver_opts, link.interface),
        )
        if net.driver == "bridge":
            host_names = host_link_names(self.container.id, link.interface)
            link.host_index, link.host_link = _netlink.plug(
                self.pid, want, host_names=host_names, bridge=net.bridge, isolated=not net.icc
            )
            return
        mode_key, _, default = _SLAVE_MODES[net.driver]
        _netlink.plug_slave(
            self.pid,
            want,
            kind=net.driver,
            parent=net.parent,
            mode=net.options.get(mode_key, default),
            flag=net.options.get(IPVLAN_FLAG_OPTION, "bridge"),
        )
        link.host_index, link.host_link = 0, ""

    async def _plug(self, link: _Link, *, default_route: bool, route6: bool) -> None:
        """Hot-plug ``link`` into the running container: made and configured from here."""
        self._check_namespace()
        await trio.to_thread.run_sync(
            lambda: self._plug_now(link, configure=True, default_route=default_route, route6=route6)
        )

    def _publish_state(self) -> None:
        """What ``inspect`` shows: every network it is on, its published ports."""
        self.container.state.network = NetworkSettings(
            endpoints=tuple(
                [
                    Endpoint(
                        network=link.net.name,
                        ip_address=link.address,
                        prefix_len=link.net.network.prefixlen if link.address else 0,
                        gateway=link.net.gateway,
                        mac_address=link.mac,
                        aliases=link.join.aliases,
                        interface=link.interface,
                        ipv6_address=link.address6,
                        ipv6_prefix_len=link.net.network6.prefixlen if link.address6 else 0,
                        ipv6_gateway=link.net.gateway6 if link.address6 else "",
                        host_link=link.host_link if link.host_index else "",
                    )
                    for link in self.links
                ]
            ),
            ports=self._bindings,
        )

    async def _activate(self) -> None:
        """Published ports answer, the names resolve; ``inspect`` shows it."""
        if not self.links:
            return
        nets = self.networks
        cid = self.container.id
        self._active = True
        async with nets._lock:
            nets._resolvers[cid] = self.container.config.dns
            nets._aliases[cid] = link_aliases(self.container.config.links)
            for link in self.links:
                nets._answer(link, cid, self._names(link.join))
        outward = self._outward()
        if outward is not None and outward.net.driver == "bridge":
            await self._open_ports(outward)
        local = self._local_dns_link()
        if local is not None and self._local_dns is None and nets.nursery is not None:
            self._local_dns = await nets.nursery.start(self._serve_local_dns, local)
        self._publish_state()

    def _local_dns_link(self) -> _Link | None:
        """The link a container on user networks that no bridge name server serves (macvlan
        and ipvlan ones) asks names through: its first such network's."""
        if any(link.net.serves_dns for link in self.links):
            return None
        return next((link for link in self.links if link.net.dns), None)

    async def _serve_local_dns(
        self, link: _Link, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        """Its own name server, on :data:`LOCAL_DNS`:53 of its namespace (sockets made
        there, served here), answering as a network's name server answers the container
        at its address on ``link``: the names of every user network it is on, the rest
        forwarded (see :meth:`Networks._lookup`)."""
        nets, pid, asker = self.networks, self.pid, link.address or link.address6

        def bound() -> tuple[socket.socket, socket.socket]:
            udp = _netlink.socket_in(pid, socket.AF_INET, socket.SOCK_DGRAM)
            tcp = _netlink.socket_in(pid, socket.AF_INET, socket.SOCK_STREAM)
            try:
                for sock in (udp, tcp):  # its loopback may not be up yet
                    sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
                    sock.bind((LOCAL_DNS, 53))
                tcp.listen(64)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            return udp, tcp

        udp, tcp = await trio.to_thread.run_sync(bound)
        names = _dns.Names(
            lambda name, _: nets._lookup(link.net.name, name, asker),
            lambda address, _: nets._reverse(link.net.name, address, asker),
            lambda _: nets._upstreams_of(asker),
        )
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    functools.partial(
                        _dns.serve_on,
                        trio.socket.from_stdlib_socket(udp),
                        trio.socket.from_stdlib_socket(tcp),
                        names,
                    )
                )
                task_status.started(scope)

    async def _open_ports(self, outward: _Link) -> None:
        """The ports bound (:meth:`_bind_ports`) answer: forwarded to its address on
        ``outward`` by nftables rules and the proxies.  A port bound on IPv6 goes to its
        IPv6 address there; a container without one (an IPv4-only network) gets it
        through the proxy alone, to its IPv4 address, as Docker's docker-proxy relays it."""
        nets = self.networks
        bindings = []
        forwards = []
        for spec, sock in self._sockets:
            host_port = sock.getsockname()[1]
            bindings.append(
                PortBinding(spec.container_port, spec.protocol, spec.host_ip, host_port)
            )
            v6 = ":" in spec.host_ip
            if not (outward.address6 if v6 else outward.address):
                continue  # relayed to its address of the other family
            forwards.append(
                _nft.Forward(
                    spec.protocol,
                    "" if spec.host_ip == "::" else spec.host_ip,
                    host_port,
                    outward.address6 if v6 else outward.address,
                    spec.container_port,
                    "ip6" if v6 else _nft.FAMILY,
                )
            )
        async with nets._lock:
            nets._forwards[self.container.id] = forwards
            if forwards:
                await nets._publish(forwards)
        if self._sockets and nets.nursery is not None:
            self._proxies = await nets.nursery.start(self._serve_proxies, outward)
        self._bindings = tuple(bindings)

    async def join(self, net: Network, join: NetworkJoin) -> None:
        """Hot-plug: an interface on ``net`` into the running container (the next free
        ethN, or the name its endpoint asks for).  If the container had no way out and
        ``net`` is not internal, its default route goes through it, and so do its
        published ports if it has none now (after a ``disconnect`` of the network they
        were on, as Docker maps them again); if ``net`` has a higher gw-priority than the
        network that routes it, both move to ``net``; a taken host port or interface name
        fails the connect before anything is plugged."""
        try:
            asked = [endpoint_ifname(join.driver_opts)]
            interface = interface_names(asked, [link.interface for link in self.links])[0]
        except ValueError as exc:
            raise NetworkConflict(str(exc)) from None
        cid = self.container.id
        nets = self.networks
        address, address6 = net.allocations.get(cid, ""), net.allocations6.get(cid, "")
        link = _Link(net, join, address, interface, host_link_name(cid, interface), 0, address6)
        before, before6 = self._outward(), self._outward6()
        after = [*self.links, link]  # what routes once it is there
        outward, outward6 = self._outward(after) is link, self._outward6(after) is link
        # Its default routes: through ``net`` if it has none yet (IPv4's: not an IPv6-only
        # one), or moved to it from networks of a lower gw-priority.  Its published ports:
        # here if it had no way in, or moved from a network of a lower gw-priority.
        route4 = outward and bool(address)
        had4 = before is not None and bool(before.address)
        had6 = before6 is not None
        ports = outward and (before is None or join.gw_priority > before.join.gw_priority)
        ports = ports and net.driver == "bridge"
        moved = ports and before is not None and bool(self._sockets)
        bound = ports and not self._sockets
        if bound:
            self._bind_ports(net)
        try:
            async with nets._lock:
                await nets._bring_up(net)
            await self._plug(link, default_route=route4 and not had4, route6=outward6 and not had6)
            # A default route it had through another network: replaced.
            for replaced, gateway in (
                (route4 and had4, net.gateway),
                (outward6 and had6, net.gateway6),
            ):
                if replaced:
                    await trio.to_thread.run_sync(_netlink.set_default_route, self.pid, gateway)
        except BaseException:
            if bound:
                self._close_sockets()
            raise
        self.links.append(link)
        self._active = True
        if moved:  # the ports it published through ``before`` answer through ``net`` now
            await self._retarget_ports()
        async with nets._lock:
            nets._resolvers[cid] = self.container.config.dns
            nets._aliases[cid] = link_aliases(self.container.config.links)
            nets._answer(link, cid, self._names(join))
        if ports and self._sockets:
            await self._open_ports(link)
        self._publish_state()

    async def _retarget_ports(self) -> None:
        """Its published ports' forwards and relays taken off the network that held them;
        the bound ports stay bound, for :meth:`_open_ports` on the next one."""
        nets = self.networks
        async with nets._lock:
            forwards = nets._forwards.pop(self.container.id, [])
            if forwards:
                await nets._apply()
        if self._proxies is not None:
            self._proxies.cancel(reason="its ports moved to another network")
            self._proxies = None

    async def leave(self, network: str) -> None:
        """Hot-unplug: the interface on ``network`` goes, and its names; if it routed the
        container (:meth:`_outward`), the next that is not internal (of the highest
        gw-priority) routes by default and its published ports move there, as Docker moves
        a sandbox's external connectivity to its new gateway endpoint; with none left the
        host ports go, bound again at the next connect."""
        link = next(link for link in self.links if link.net.name == network)
        routed, routed6 = link is self._outward(), link is self._outward6()
        nets = self.networks
        cid = self.container.id
        if link.net.driver == "bridge":
            await trio.to_thread.run_sync(_netlink.delete_link, link.host_link)
        else:
            await trio.to_thread.run_sync(_netlink.delete_inside, self.pid, link.interface)
        self.links.remove(link)
        async with nets._lock:
            nets._forget(network, cid)
        if routed:
            await self._retarget_ports()
            outward = self._outward()
            if outward is None:
                self._stop_ports()
            else:
                if outward.address:
                    gateway = outward.net.gateway
                    await trio.to_thread.run_sync(_netlink.set_default_route, self.pid, gateway)
                if self._sockets:
                    await self._open_ports(outward)
        if routed6 and (outward6 := self._outward6()) is not None:
            gateway = outward6.net.gateway6
            await trio.to_thread.run_sync(_netlink.set_default_route, self.pid, gateway)
        self._publish_state()

    async def _serve_proxies(
        self, outward: _Link, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        """Each bound port relayed to the container's address on ``outward`` (its IPv6 one
        for a port bound on IPv6, when it has one).  Each relay listens on a duplicate of
        the bound socket, which it closes when cancelled: the bound one stays, for relays
        to the next network that holds the ports (see :meth:`_retarget_ports`)."""
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for spec, sock in self._sockets:
                    v6 = ":" in spec.host_ip and outward.address6
                    address = outward.address6 if v6 else outward.address or outward.address6
                    nursery.start_soon(_proxy.serve, sock.dup(), address, spec.container_port)
                task_status.started(scope)

    def _close_sockets(self) -> None:
        for _, sock in self._sockets:
            sock.close()
        self._sockets = []

    def _stop_ports(self) -> None:
        if self._proxies is not None:
            self._proxies.cancel(reason="container stopped")
            self._proxies = None
        self._close_sockets()
        self._bindings = ()

    async def release(self) -> None:
        """Undo :meth:`reserve` and :meth:`connect` (the addresses stay the container's
        until it is removed)."""
        self._stop_ports()
        if self._local_dns is not None:
            self._local_dns.cancel(reason="container stopped")
            self._local_dns = None
        self.container.state.network = NetworkSettings()
        nets = self.networks
        cid = self.container.id
        if self._active:
            self._active = False
            async with nets._lock:
                had_ports = bool(nets._forwards.pop(cid, None))
                nets._resolvers.pop(cid, None)
                nets._aliases.pop(cid, None)
                for link in self.links:
                    nets._forget(link.net.name, cid)
            if had_ports:
                nets.apply_soon()
        if self.owner:
            owner, self.owner, self._peer = self.owner, "", None
            nets._sharers[owner] -= 1
            nets._member_pids.get(owner, set()).discard(self.pid)
            if not nets._sharers[owner]:
                del nets._sharers[owner]
                nets._member_pids.pop(owner, None)
        if not nets._sharers.get(cid):
            return  # the host's ends go with the namespace, on the kernel's time
        # Members keep the namespace: its links go, off the container's way out (by index:
        # a next run's link of the same name is never the one deleted; a macvlan's through
        # a member, in the namespace: its address on the LAN would stay taken).
        members = nets._member_pids.get(cid, set())
        for link in self.links:
            if link.net.driver != "bridge":
                unplug = functools.partial(_unplug_inside, members, link.interface)
            else:
                unplug = functools.partial(_unplug, link)
            if nets.nursery is None:
                await unplug()
            else:
                nets.nursery.start_soon(unplug)

"""What a container asks of the network, and what it got: records and checks, no I/O.

A ``-p`` is a :class:`PortSpec` (``boxctl`` parses it with :mod:`boxd._portspecs`, which
imports no attrs); the daemon stores what a running container was given as
:class:`Endpoint` and :class:`PortBinding`.  ``boxctl`` imports this module for the other
network options (it must stay free of Trio).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._records import ContainerConfig

from ._portspecs import PROTOCOLS, host_port_text

# Built-in networks; anything else names a user network (``boxctl network create``).
BUILTIN = ("bridge", "host", "none")
# Podman's user-mode networks: refused by name (see check_network).
UNPRIVILEGED = ("slirp", "slirp4netns", "pasta")
# What Docker keeps for its own networks (``default`` is ``bridge`` by another name).
PREDEFINED = (*BUILTIN, "default")
LABEL_RE = re.compile(r"[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?\Z")


@attrs.frozen
class PortSpec:
    """One ``-p``: a container port published on the host.  ``host_port`` 0 lets the
    kernel pick (an ephemeral port); ``host_port_end`` > 0 asks for the first free port of
    ``host_port..host_port_end``.  ``host_ip`` "" is every address of the host (IPv4's and
    IPv6's, as Docker publishes); ``::`` every IPv6 address only."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    def __attrs_post_init__(self) -> None:
        _check_port(self.container_port, "container port", zero=False)
        _check_port(self.host_port, "host port", zero=True)
        if self.host_port_end:
            _check_port(self.host_port_end, "host port", zero=False)
            if self.host_port_end < self.host_port or not self.host_port:
                raise ValueError(f"invalid host port range {self.host_port}-{self.host_port_end}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"invalid protocol {self.protocol!r}: use tcp or udp")
        if self.host_ip:
            try:
                ipaddress.ip_address(self.host_ip)
            except ValueError:
                raise ValueError(
                    f"invalid host IP {self.host_ip!r}: use an IPv4 or IPv6 address"
                ) from None

    @property
    def key(self) -> str:
        """Docker's name for the container side: ``80/tcp``."""
        return f"{self.container_port}/{self.protocol}"


@attrs.frozen
class PortBinding:
    """A published port as it is now: the host side the kernel or the range gave."""

    container_port: int
    protocol: str
    host_ip: str
    host_port: int

    def describe(self) -> str:
        """``boxctl port``'s line: ``80/tcp -> 0.0.0.0:18080`` (``[::]:18080``)."""
        where = host_port_text(self.host_ip, self.host_port)
        return f"{self.container_port}/{self.protocol} -> {where}"


@attrs.frozen
class NetworkJoin:
    """A network a container is on (``--network``, or ``network connect``): the names it
    has there beyond its own, and the address it asked for ("" lets the network pick), the
    MAC address ("": one made from its address) and the endpoint's driver options."""

    network: str
    aliases: tuple[str, ...] = ()
    ip: str = ""
    mac: str = ""
    # The endpoint's driver options ("KEY=VALUE", the Engine API's DriverOpts): kept and
    # shown, as Docker's bridge driver keeps those it has no use for.
    driver_opts: tuple[str, ...] = ()
    ip6: str = ""  # the IPv6 address asked for (--ip6), on a network with IPv6
    # Docker 28's gw-priority: of the networks that are not internal, the one of the
    # highest routes by default and holds the published ports (the first of them, of a tie).
    gw_priority: int = 0
    # The links given with it (Docker's EndpointSettings.Links, "NAME:ALIAS" as
    # ContainerConfig.links): names its DNS answers this container with NAME's addresses
    # on this network, as moby's endpoint aliases.
    links: tuple[str, ...] = ()
    # --link-local-ip (IPAMConfig.LinkLocalIPs): more addresses of its interface there,
    # each in 169.254.0.0/16 or fe80::/10 (given /16 or /64, as moby's).
    link_local_ips: tuple[str, ...] = ()


@attrs.frozen
class Endpoint:
    """A container's place on one network."""

    network: str
    ip_address: str
    prefix_len: int
    gateway: str
    mac_address: str
    aliases: tuple[str, ...] = ()
    interface: str = "eth0"  # its name in the container
    # On a network with IPv6 (Docker's GlobalIPv6Address, ...PrefixLen, IPv6Gateway).
    ipv6_address: str = ""
    ipv6_prefix_len: int = 0
    ipv6_gateway: str = ""
    # The host's end of its veth: one of _network.host_link_names, recorded so that a next
    # daemon adopts that one and not a previous run's end that still holds another ("":
    # recorded before it was kept, or none made yet).
    host_link: str = ""


@attrs.frozen
class NetworkSettings:
    """What ``inspect`` shows of a running container's network (empty when it is not)."""

    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    # ``container:NAME``: the id of the container whose network namespace it joined (NAME
    # may name another one by the time a next daemon adopts it: see Networks.recover),
    # and that container's host and domain names, which it takes as Docker's does.
    peer: str = ""
    hostname: str = ""
    domainname: str = ""


@attrs.frozen
class EtcNetwork:
    """What a container's /etc/hosts and /etc/resolv.conf say about its network."""

    address: str = ""  # "" with no network of its own to name
    names: tuple[str, ...] = ()
    others: tuple[str, ...] = ()  # its addresses on its other networks
    addresses6: tuple[str, ...] = ()  # its IPv6 addresses, on its networks with IPv6
    resolv: str | None = None  # None: the image's own resolv.conf
    links: tuple[str, ...] = ()  # lines of its default-bridge links (see boxd._links)
    # The host's address as the container reaches it (--add-host NAME:host-gateway): its
    # first network's gateway, 127.0.0.1 on the host's network, "" with none.
    host_gateway: str = ""
    # --network host without --add-host: the host's /etc/hosts, which it gets a copy of as
    # with Docker (None: one of its own).
    hosts: str | None = None


def _check_port(value: int, what: str, *, zero: bool) -> None:
    if not (0 if zero else 1) <= value <= 65535:
        raise ValueError(f"invalid {what} {value}: must be 1-65535")


def check_network(mode: str) -> str:
    """``bridge``, ``host``, ``none``, ``container:NAME`` or a user network's name."""
    if mode in BUILTIN:
        return mode
    if mode in UNPRIVILEGED:
        raise ValueError(
            f"invalid network {mode!r}: boxd has no slirp4netns/pasta networking (it serves "
            "rootless containers; boxd's daemon runs as root, and gives --isolate-user "
            "containers the bridge, published ports included)"
        )
    if mode.startswith("container:"):
        if not mode[len("container:") :]:
            raise ValueError(f"invalid network {mode!r}: container: needs a container name")
        return mode
    if not mode.strip():
        raise ValueError(
            f"invalid network {mode!r}: use bridge, host, none, container:NAME or a network's name"
        )
    return mode


def check_network_name(name: str) -> str:
    """A user network's name: any text that is not blank, as moby takes (a space, a '/' or
    a long name too: boxd names no file nor interface after it), but a NUL byte, which no
    container's configuration may hold (see boxd._records.check_types)."""
    if not name.strip():
        raise ValueError(f"invalid network name {name!r}: the name is empty")
    if "\0" in name:
        raise ValueError(f"invalid network name {name!r}: contains a NUL byte")
    return name


def check_ipv4(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}: use an IPv4 address") from None


def check_ipv6(text: str, what: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}: use an IPv6 address") from None


def check_link_format(link: str) -> str:
    """A link as stored (``NAME:ALIAS``): both parts there, one colon; its alias (which
    :func:`boxd._records.check_link` checks as a name)."""
    target, _, alias = link.partition(":")
    if not target or not alias or ":" in alias:
        raise ValueError(f"bad format for links: {link}")
    return alias


def check_link_local(text: str) -> str:
    """A ``--link-local-ip``: a link-local unicast address (moby's check)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or not address.is_link_local:
        raise ValueError(
            f"invalid link-local IP address: {text!r} (use one in 169.254.0.0/16 or fe80::/10)"
        )
    return str(address)


# The endpoint's interface name in the container (Docker 28): else the next free ethN.
IFNAME_OPT = "com.docker.network.endpoint.ifname"
# The endpoint's own sysctls (Docker 28, API 1.46): net.X.Y.IFNAME.Z=VALUE, comma-separated.
SYSCTLS_OPT = "com.docker.network.endpoint.sysctls"


def check_driver_opts(opts: Iterable[str], where: str = "driver option") -> None:
    """An endpoint's driver options (``KEY=VALUE``) that boxd applies, checked: its
    interface's name (:func:`endpoint_ifname`) and sysctls (:func:`endpoint_sysctls`);
    the others Docker keeps without a use, and so does boxd."""
    endpoint_ifname(opts, where)
    endpoint_sysctls(opts, "IFNAME", where)


def endpoint_ifname(opts: Iterable[str], where: str = "driver option") -> str:
    """The interface name an endpoint's ``com.docker.network.endpoint.ifname`` asks for
    (Docker 28's), "" for none: a name the kernel takes (1-15 characters, no ``/``, ``:``
    or space, not ``.`` or ``..``), not the loopback's."""
    for opt in opts:
        key, _, name = opt.partition("=")
        if key != IFNAME_OPT:
            continue
        bad = not name or len(name) > 15 or name in (".", "..")
        if bad or any(c in "/:" or c.isspace() for c in name):
            raise ValueError(
                f"{where} {IFNAME_OPT}: invalid interface name {name!r} (1-15 characters,"
                " no '/', ':' or space)"
            )
        if name == "lo":
            raise ValueError(f"{where} {IFNAME_OPT}: 'lo' is the container's loopback")
        return name
    return ""


def interface_names(asked: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """The interface names of a container's endpoints in order, each the one it asks for
    (``asked``: "" for none) or the first free ethN, as Docker names them (``taken``: its
    interfaces already there); ValueError naming one asked for twice or already there."""
    used = set(taken)
    for name in asked:
        if name and name in used:
            raise ValueError(f"interface name {name!r} is already in use in the container")
        used.add(name)
    names = []
    for name in asked:
        if not name:
            name = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
            used.add(name)
        names.append(name)
    return names


def joined(config: ContainerConfig) -> tuple[NetworkJoin, ...]:
    """The networks a container is on, in order (the first that is not internal holds its
    published ports and its default route): ``--network`` (a network's name or ``bridge``) with
    ``--network-alias``, as ``network connect``/``disconnect`` left them."""
    if config.networks is not None:
        return config.networks
    if config.network in ("host", "none") or config.network.startswith("container:"):
        return ()
    return (NetworkJoin(config.network, config.network_aliases),)


def container_interfaces(config: ContainerConfig) -> list[str]:
    """The names of a container's interfaces on its networks, in order (see
    :func:`interface_names`)."""
    return interface_names([endpoint_ifname(join.driver_opts) for join in joined(config)])


def interface_sysctls(sysctls: Iterable[str], ifname: str) -> tuple[tuple[str, str], ...]:
    """Of a container's own ``--sysctl KEY=VALUE`` settings, those of its interface
    ``ifname`` (``net.ipv4.conf.eth0.forwarding``): written by the daemon once the
    interface is there, as its endpoint's are, not by the container's set-up, which may
    run before it is."""
    found = []
    for text in sysctls:
        key, _, value = text.partition("=")
        if sysctl_interface(key) == ifname:
            found.append((key, value))
    return tuple(found)


def sysctl_interface(key: str) -> str:
    """The interface a network sysctl names (``net.ipv4.conf.eth0.forwarding``: eth0, its
    fourth part, as dockerd reads it); "" where it names none (not ``net.``, fewer than
    five parts)."""
    parts = key.split(".", 4)
    return parts[3] if len(parts) == 5 and parts[0] == "net" else ""


def endpoint_sysctls(
    opts: Iterable[str], ifname: str, where: str = "driver option"
) -> tuple[tuple[str, str], ...]:
    """The settings of an endpoint's ``com.docker.network.endpoint.sysctls`` for its
    interface ``ifname``: each ``net.X.Y.IFNAME.Z=VALUE`` of its comma-separated list with
    the fourth part the interface's name, as Docker's bridge driver writes them
    (``net.ipv4.conf.IFNAME.forwarding=1`` is ``net.ipv4.conf.eth1.forwarding``)."""
    found = []
    for opt in opts:
        key, _, value = opt.partition("=")
        if key != SYSCTLS_OPT:
            continue
        for setting in value.split(","):
            name, eq, wanted = setting.partition("=")
            parts = name.split(".")
            if not eq or len(parts) != 5 or parts[0] != "net" or not all(parts):
                raise ValueError(
                    f"{where} {SYSCTLS_OPT}: expected sysctl {setting!r} to have format"
                    " net.X.Y.IFNAME.Z=VALUE"
                )
            if "\n" in wanted or "\0" in wanted or "/" in name:
                raise ValueError(f"{where} {SYSCTLS_OPT}: invalid sysctl {setting!r}")
            found.append((".".join([*parts[:3], ifname, parts[4]]), wanted))
    return tuple(found)


MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


def check_mac(text: str) -> str:
    """A unicast MAC address (``02:42:ac:11:00:09``), in lower case; Docker's words."""
    mac = text.lower().replace("-", ":")
    if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise ValueError(f"{text} is not a valid mac address")
    return mac


def _is_domain(text: str) -> bool:
    labels = text.removesuffix(".").split(".")
    return len(text) <= 253 and all(LABEL_RE.match(label) for label in labels)


def check_dns(servers: tuple[str, ...], search: tuple[str, ...], options: tuple[str, ...]) -> None:
    """``--dns`` (IP addresses), ``--dns-search`` (domains, ``.`` for none) and
    ``--dns-option`` (resolv.conf options such as ``ndots:2``), as Docker checks them."""
    for server in servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ValueError(f"invalid --dns {server!r}: not an IP address") from None
    for domain in search:
        if domain != "." and not _is_domain(domain):
            raise ValueError(f"invalid --dns-search {domain!r}: not a domain name")
    for option in options:
        if not option or any(c.isspace() for c in option):
            raise ValueError(f"invalid --dns-option {option!r}: one word such as ndots:2")


def resolv_conf(
    servers: list[str],
    rest: list[str],
    *,
    dns_search: tuple[str, ...] = (),
    dns_options: tuple[str, ...] = (),
    embedded: bool = False,
) -> str:
    """A resolv.conf: ``servers``, then the host's ``search``/``options`` lines
    (``rest``), each replaced by ``--dns-search`` / ``--dns-option`` when given (Docker's
    rule; ``--dns-search .`` means no search domains).  ``embedded``: ``servers`` is a
    user network's name server, asked with ``ndots:0`` unless an ndots option is given, as
    Docker's embedded DNS is (a name without dots is asked as it is before the search
    domains are tried: ``db`` never becomes ``db.corp.example`` of the host's search)."""
    lines = [f"nameserver {s}" for s in servers]
    search = [line for line in rest if line.split()[0] in ("search", "domain")]
    options = [word for line in rest if line.split()[0] == "options" for word in line.split()[1:]]
    if dns_search:
        domains = [d for d in dns_search if d != "."]
        search = [f"search {' '.join(domains)}"] if domains else []
    if dns_options:
        options = list(dns_options)
    if embedded and not any(word.startswith("ndots:") for word in options):
        options.append("ndots:0")
    return "\n".join(lines + search + ([f"options {' '.join(options)}"] if options else [])) + "\n"

"""Container networks: the default ``bridge``, user networks, addresses, published ports.

    Networks (one per supervisor)
      ├── <root>/networks/<name>.json   each network and its address allocations (atomic)
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
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
import trio

from . import _dns, _netlink, _nft, _proxy
from ._convert import ConversionError, structure, unstructure
from ._native import Namespace
from ._netconfig import (
    BUILTIN,
    Endpoint,
    EtcNetwork,
    NetworkSettings,
    PortBinding,
    PortSpec,
    check_network_name,
)
from ._records import Container
from ._store import atomic_write

log = logging.getLogger("boxd.network")

DEFAULT_BRIDGE = "boxd0"  # the default root's; see default_bridge()
DEFAULT_NETWORK = "bridge"
# Where subnets are picked from when none is asked for (Docker's default pools).
POOL = [ipaddress.IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)] + [
    ipaddress.IPv4Network(f"192.168.{n}.0/20") for n in range(0, 256, 16)
]
FALLBACK_RESOLVERS = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has only loopback ones


class NetworkError(ValueError):
    """A request about networks that cannot be met (bad subnet, unknown network...)."""


class NetworkConflict(RuntimeError):
    """The network is in use, or exists already."""


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

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)


@attrs.frozen
class BridgeOptions:
    """The default network: ``boxd --bridge-name``, ``--bridge-subnet`` ("" picks one)."""

    name: str = ""  # "": default_bridge(root)
    subnet: str = ""


def host_resolv(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str]]:
    """The host's nameservers and its other resolv.conf lines (search, options)."""
    servers: list[str] = []
    rest: list[str] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return servers, rest
    for line in lines:
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
    """02:42 and the four bytes of the address, as Docker makes them: stable, local."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def default_bridge(root: Path) -> str:
    """``boxd0`` for the default root; another root gets a name of its own (a library
    user or a test beside the daemon never shares, nor removes, the daemon's bridge)."""
    if root.resolve() == Path("/var/lib/boxd"):
        return DEFAULT_BRIDGE
    return "boxd" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def _table_name(bridge: str) -> str:
    return "boxd" if bridge == DEFAULT_BRIDGE else f"boxd-{bridge}"


class Networks:
    def __init__(self, root: Path, options: BridgeOptions = BridgeOptions()) -> None:
        self.dir = root / "networks"
        self.options = attrs.evolve(options, name=options.name or default_bridge(root))
        self.table = _table_name(self.options.name)
        self.nursery: trio.Nursery | None = None  # proxies and DNS run here
        self._nets: dict[str, Network] = {}
        self._up: set[str] = set()  # bridges this daemon brought up
        self._forwards: dict[str, list[_nft.Forward]] = {}  # container id -> its ports
        self._names: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {}  # net -> cid -> ...
        self._dns: dict[str, trio.CancelScope] = {}
        self._lock = trio.Lock()
        self._table = False  # whether this daemon made its nftables table
        # ``container:NAME``: the running container NAME names, and its init's pid (set by
        # the supervisor; raises when there is none).
        self.peer: Callable[[str], tuple[Container, int]] | None = None
        self._upstreams = host_resolv()[0]

    # ---- records --------------------------------------------------------------------

    def _save(self, net: Network, *, durable: bool = True) -> None:
        """``durable=False`` for an address taken or given back: the record is replaced
        atomically all the same, and what a machine crash loses of it, the next daemon's
        recover() puts right (no container outlives the machine).  Two fsyncs for every
        container's start and end were a tenth of what the daemon spent on a run."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = json.dumps(unstructure(net), indent=1).encode()
        atomic_write(self.dir / f"{net.name}.json", data, durable=durable)

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.glob("*.json")):
            try:
                net = structure(json.loads(path.read_bytes()), Network)
            except (OSError, ValueError, ConversionError) as exc:
                log.error("network record %s cannot be read (%s); ignored", path, exc)
                continue
            self._nets[net.name] = net

    def check(self, mode: str) -> None:
        """Refuse a container's ``--network`` that names no network (at create; the
        container of ``container:NAME`` must exist when it starts)."""
        if mode not in BUILTIN and not mode.startswith("container:"):
            self.get(mode)

    def list(self) -> list[Network]:
        return sorted(self._nets.values(), key=lambda n: n.created_at)

    def get(self, ref: str) -> Network:
        net = self._nets.get(ref)
        if net is None:
            matches = [n for n in self._nets.values() if n.id.startswith(ref)] if ref else []
            if len(matches) != 1:
                raise NetworkError(f"no such network: {ref}")
            net = matches[0]
        return net

    # ---- subnets --------------------------------------------------------------------

    async def _routes(self) -> builtins.list[tuple[ipaddress.IPv4Network, str]]:
        ours = {n.bridge for n in self._nets.values()}
        return await trio.to_thread.run_sync(_netlink.routed_networks, ours)

    async def _subnet(self, wanted: str, *, exclude: str = "") -> ipaddress.IPv4Network:
        """``wanted`` checked against the host's routes and the other networks, or the
        first free subnet of the pool."""
        taken = [(n.network, f"network {n.name}") for n in self._nets.values() if n.name != exclude]
        taken += [
            (net, f"the host's route to {net} on {link}") for net, link in await self._routes()
        ]
        if wanted:
            try:
                subnet = ipaddress.IPv4Network(wanted, strict=False)
            except ValueError:
                raise NetworkError(
                    f"invalid subnet {wanted!r}: use an IPv4 CIDR such as 10.5.0.0/24"
                ) from None
            if subnet.prefixlen > 30:
                raise NetworkError(f"invalid subnet {wanted!r}: too small (at most /30)")
            for other, what in taken:
                if subnet.overlaps(other):
                    raise NetworkError(f"subnet {subnet} overlaps {what}")
            return subnet
        for candidate in POOL:
            if not any(candidate.overlaps(other) for other, _ in taken):
                return candidate
        raise NetworkError("no free subnet left in the pool: give one with --subnet")

    # ---- the default network, user networks -----------------------------------------

    async def _default(self) -> Network:
        net = self._nets.get(DEFAULT_NETWORK)
        wanted = self.options.subnet
        if (
            net is None
            or net.bridge != self.options.name
            or (wanted and ipaddress.IPv4Network(wanted, strict=False) != net.network)
        ):
            subnet = await self._subnet(wanted, exclude=DEFAULT_NETWORK)
            net = Network(
                name=DEFAULT_NETWORK,
                id=secrets.token_hex(32),
                bridge=self.options.name,
                subnet=str(subnet),
                gateway=str(subnet.network_address + 1),
                created_at=time.time(),
                dns=False,
                allocations={},
            )
            self._nets[net.name] = net
            self._save(net)
        return net

    async def create(self, name: str, subnet: str = "") -> Network:
        check_network_name(name)
        async with self._lock:
            if name in self._nets:
                raise NetworkConflict(f"network {name} already exists")
            chosen = await self._subnet(subnet)
            net_id = secrets.token_hex(32)
            net = Network(
                name=name,
                id=net_id,
                bridge=f"br-{net_id[:12]}",
                subnet=str(chosen),
                gateway=str(chosen.network_address + 1),
                created_at=time.time(),
                dns=True,
            )
            self._nets[name] = net
            self._save(net)
        return net

    async def remove(self, ref: str, in_use: Callable[[str], builtins.list[str]]) -> Network:
        """``in_use(name)``: the containers that name the network."""
        net = self.get(ref)
        if net.name == DEFAULT_NETWORK:
            raise NetworkConflict(f"network {net.name} is built in and cannot be removed")
        users = in_use(net.name)
        if users:
            raise NetworkConflict(
                f"network {net.name} is in use by container(s) {', '.join(users)}: "
                "remove them first"
            )
        async with self._lock:
            await self._bring_down(net)
            del self._nets[net.name]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / f"{net.name}.json")
            await self._apply()
        return net

    # ---- bridges, rules, DNS ----------------------------------------------------------

    async def _bring_up(self, net: Network) -> None:
        if net.bridge in self._up:
            return
        await trio.to_thread.run_sync(
            _netlink.ensure_bridge, net.bridge, net.gateway, net.network.prefixlen
        )
        self._up.add(net.bridge)
        _enable_forwarding()
        await self._apply()
        if net.dns and self.nursery is not None:
            self._dns[net.name] = await self.nursery.start(self._serve_dns, net)

    async def _serve_dns(
        self, net: Network, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    _dns.serve,
                    net.gateway,
                    lambda name: self._lookup(net.name, name),
                    [s for s in self._upstreams if s != net.gateway],
                )
                task_status.started(scope)

    def _lookup(self, network: str, name: str) -> str | None:
        for names, address in self._names.get(network, {}).values():
            if name in names:
                return address
        return None

    async def _bring_down(self, net: Network) -> None:
        scope = self._dns.pop(net.name, None)
        if scope is not None:
            scope.cancel(reason=f"network {net.name} removed")
        self._up.discard(net.bridge)
        await trio.to_thread.run_sync(_netlink.delete_link, net.bridge)

    async def _apply(self) -> None:
        bridges = [
            _nft.Bridge(n.bridge, n.subnet) for n in self._nets.values() if n.bridge in self._up
        ]
        forwards = [f for fs in self._forwards.values() for f in fs]
        self._table = True
        await _nft.apply(self.table, bridges, forwards)

    # ---- the daemon's life ------------------------------------------------------------

    async def recover(self, existing: set[str], adopted: Iterable[Container] = ()) -> None:
        """At start: forget the addresses of containers that no longer exist, remove what
        a daemon that died left (its table, its bridges) unless a container it ``adopted``
        (live restore) still uses it: :meth:`adopt` brings those back into the table."""
        self._load()
        in_use = {e.network for c in adopted for e in c.state.network.endpoints}
        for net in self._nets.values():
            stale = [cid for cid in net.allocations if cid not in existing]
            for cid in stale:
                del net.allocations[cid]
            if stale:
                self._save(net)
        links = await trio.to_thread.run_sync(_netlink.link_names)
        for net in self._nets.values():
            if net.bridge in links and net.name not in in_use:
                log.info("removing bridge %s left by a previous daemon", net.bridge)
                await trio.to_thread.run_sync(_netlink.delete_link, net.bridge)
        try:
            if not in_use and await _nft.exists(self.table):
                log.info("removing nftables table %s left by a previous daemon", self.table)
                await _nft.delete(self.table)
        except _nft.NftError as exc:
            log.warning("%s: containers on a network will not start", exc)
        # The default network's record, checked against the host's routes now: a
        # --bridge-subnet that overlaps one stops the daemon here, naming both.
        await self._default()

    async def close(self) -> None:
        """At shutdown: the bridges and rules go, except those of containers that run on
        (live restore: the next daemon adopts them and their network)."""
        for scope in self._dns.values():
            scope.cancel(reason="daemon stopping")
        self._dns.clear()
        running = {self._nets[name].bridge for name, members in self._names.items() if members}
        for bridge in self._up - running:
            with contextlib.suppress(OSError):
                await trio.to_thread.run_sync(_netlink.delete_link, bridge)
        if running:
            log.info("keeping bridges %s for the containers that run on", sorted(running))
        elif self._table:
            with contextlib.suppress(_nft.NftError):
                await _nft.delete(self.table)
        self._up.clear()
        self._table = False

    def forget(self, cid: str) -> None:
        """A removed container's addresses go back to their networks."""
        for net in self._nets.values():
            if net.allocations.pop(cid, None) is not None:
                self._save(net, durable=False)

    # ---- containers -------------------------------------------------------------------

    def attachment(self, container: Container) -> Attachment:
        return Attachment(self, container)

    async def adopt(self, container: Container) -> Attachment | None:
        """A container a previous daemon left running (live restore): its network comes
        back as its record says (bridge up, rules, name, the host ports bound again)."""
        endpoints = container.state.network.endpoints
        if not endpoints or endpoints[0].network not in self._nets:
            return None
        attachment = Attachment(self, container)
        attachment.net = self._nets[endpoints[0].network]
        attachment.address = endpoints[0].ip_address
        for port in container.state.network.ports:
            spec = PortSpec(port.container_port, port.protocol, port.host_ip, port.host_port)
            try:
                attachment._sockets.append((spec, _proxy.bind(spec)))
            except OSError as exc:
                log.warning("%s: %s", container.short_id, exc)
        async with self._lock:
            await self._bring_up(attachment.net)
        await attachment._activate()
        return attachment

    async def _allocate(self, net: Network, cid: str) -> str:
        address = net.allocations.get(cid)
        subnet = net.network
        if address is not None and ipaddress.IPv4Address(address) in subnet:
            return address
        used = set(net.allocations.values()) | {net.gateway}
        for host in subnet.hosts():
            if str(host) not in used:
                net.allocations[cid] = str(host)
                self._save(net, durable=False)
                return str(host)
        raise NetworkError(f"network {net.name} has no free address left in {net.subnet}")


def _enable_forwarding(path: str = "/proc/sys/net/ipv4/ip_forward") -> None:
    """Routing between the bridges and the host's links, as Docker does (in the daemon's
    network namespace: a test's daemon changes its test namespace only)."""
    with open(path, "r+") as f:
        if f.read().strip() != "1":
            log.info("enabling IPv4 forwarding (%s)", path)
            f.seek(0)
            f.write("1\n")


class Attachment:
    """One run's place on its network: see the module's docstring."""

    def __init__(self, networks: Networks, container: Container) -> None:
        self.networks = networks
        self.container = container
        self.mode = container.config.network
        self.net: Network | None = None
        self.address = ""
        self._sockets: list[tuple[PortSpec, socket.socket]] = []
        self._proxies: trio.CancelScope | None = None
        self._host_link = "bx" + container.id[:12]
        self._active = False
        self._peer: tuple[Container, int] | None = None  # container:NAME, once reserved

    @property
    def private(self) -> bool:
        """Whether the container gets a network namespace of its own."""
        return self.mode != "host"

    def _names(self) -> tuple[str, ...]:
        c = self.container
        names = (c.config.hostname or c.short_id, c.name, c.short_id, *c.config.network_aliases)
        return tuple(dict.fromkeys(names))

    def ns_paths(self) -> tuple[tuple[Namespace, str], ...]:
        """The namespaces the container joins: ``container:NAME``'s network."""
        if self._peer is None:
            return ()
        return ((Namespace.NET, f"/proc/{self._peer[1]}/ns/net"),)

    def etc(self) -> EtcNetwork:
        if self._peer is not None:
            # The other container's place: its address, its name server.
            peer = self._peer[0]
            endpoints = peer.state.network.endpoints
            net = self.networks._nets.get(endpoints[0].network) if endpoints else None
            hostname = self.container.config.hostname or self.container.short_id
            if net is None:
                return EtcNetwork(resolv=bridge_resolv())
            _, rest = host_resolv()
            resolv = container_resolv([net.gateway], rest) if net.dns else bridge_resolv()
            return EtcNetwork(address=endpoints[0].ip_address, names=(hostname,), resolv=resolv)
        if self.mode == "host":
            servers, rest = host_resolv()
            return EtcNetwork(resolv=container_resolv(servers, rest))
        if self.net is None:
            return EtcNetwork()
        if self.net.dns:
            _, rest = host_resolv()
            resolv = container_resolv([self.net.gateway], rest)
        else:
            resolv = bridge_resolv()
        hostname = self.container.config.hostname or self.container.short_id
        return EtcNetwork(address=self.address, names=(hostname,), resolv=resolv)

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
        """The address, and the host ports bound (a taken port fails here)."""
        if self.mode in ("host", "none"):
            return
        nets = self.networks
        if self.mode.startswith("container:"):
            assert nets.peer is not None
            self._peer = nets.peer(self.mode.partition(":")[2])
            return
        async with nets._lock:
            if self.mode == DEFAULT_NETWORK:
                net = await nets._default()
            else:
                net = nets.get(self.mode)
            self.net = net
            self.address = await nets._allocate(net, self.container.id)
        try:
            for spec in self._wanted_ports():
                self._sockets.append((spec, _proxy.bind(spec)))
        except BaseException:
            self._close_sockets()
            raise
        async with nets._lock:
            await nets._bring_up(net)

    async def connect(self, pid: int) -> None:
        """While the container's init (``pid``) waits to go on: its eth0, then its
        published ports and its name."""
        await self._plug(pid)
        await self._activate()

    async def _plug(self, pid: int) -> None:
        net = self.net
        if net is None:
            return
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            # A spawn path that made no namespace (a test's fake): never touch the daemon's.
            raise OSError(f"process {pid} has no network namespace of its own to connect")
        await trio.to_thread.run_sync(
            lambda: _netlink.plug(
                pid,
                host_name=self._host_link,
                bridge=net.bridge,
                mac=mac_of(self.address),
                address=self.address,
                prefix_len=net.network.prefixlen,
                gateway=net.gateway,
            )
        )

    async def _activate(self) -> None:
        """Published ports answer, the name resolves; ``inspect`` shows it."""
        net = self.net
        if net is None:
            return
        nets = self.networks
        cid = self.container.id
        bindings = []
        forwards = []
        for spec, sock in self._sockets:
            host_port = sock.getsockname()[1]
            bindings.append(
                PortBinding(spec.container_port, spec.protocol, spec.host_ip, host_port)
            )
            forwards.append(
                _nft.Forward(
                    spec.protocol, spec.host_ip, host_port, self.address, spec.container_port
                )
            )
        self._active = True
        async with nets._lock:
            nets._forwards[cid] = forwards
            nets._names.setdefault(net.name, {})[cid] = (self._names(), self.address)
            if forwards:
                await nets._apply()
        if self._sockets and nets.nursery is not None:
            self._proxies = await nets.nursery.start(self._serve_proxies)
        self.container.state.network = NetworkSettings(
            endpoints=(
                Endpoint(
                    network=net.name,
                    ip_address=self.address,
                    prefix_len=net.network.prefixlen,
                    gateway=net.gateway,
                    mac_address=mac_of(self.address),
                    aliases=self.container.config.network_aliases,
                ),
            ),
            ports=tuple(bindings),
        )

    async def _serve_proxies(self, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                for spec, sock in self._sockets:
                    nursery.start_soon(_proxy.serve, sock, self.address, spec.container_port)
                task_status.started(scope)

    def _close_sockets(self) -> None:
        for _, sock in self._sockets:
            sock.close()
        self._sockets = []

    async def release(self) -> None:
        """Undo :meth:`reserve` and :meth:`connect` (the address stays the container's
        until it is removed)."""
        if self._proxies is not None:
            self._proxies.cancel(reason="container stopped")
            self._proxies = None
        self._close_sockets()
        self.container.state.network = NetworkSettings()
        net = self.net
        if net is None:
            return
        nets = self.networks
        cid = self.container.id
        if self._active:
            self._active = False
            async with nets._lock:
                had_ports = bool(nets._forwards.pop(cid, None))
                nets._names.get(net.name, {}).pop(cid, None)
                if had_ports:
                    await nets._apply()
        # The host's end goes with the namespace; this covers a namespace kept alive.
        await trio.to_thread.run_sync(_netlink.delete_link, self._host_link)

"""The protocol's network requests (``boxctl network ...``) and their handlers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from . import _prune
from ._lifecycle import AT_REST, RESTARTING
from ._listing import docker_match
from ._messages import DockerShapeResponse, OkResponse
from ._netconfig import BUILTIN, NetworkJoin, joined
from ._network import DEFAULT_NETWORK, builtin_network_id

if TYPE_CHECKING:
    from ._network import Attachment, Network
    from ._records import Container, ContainerConfig
    from ._supervisor import Supervisor


@attrs.frozen
class NetworkCreateRequest:
    name: str
    subnet: str = ""
    labels: dict[str, str] = attrs.Factory(dict)
    gateway: str = ""
    ip_range: str = ""
    options: dict[str, str] = attrs.Factory(dict)  # Docker's driver options (-o)
    internal: bool = False  # Docker's --internal
    ipv6: bool = False  # Docker's --ipv6: dual stack, in subnet6 ("": a free one)
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""  # its IPv6 addresses picked from here ("": all of subnet6)
    ipv4: bool = True  # Docker's EnableIPv4: False (with ipv6) makes an IPv6-only network
    # Docker's --aux-address NAME=IP: addresses its containers are never given, by family
    aux_addresses: dict[str, str] = attrs.Factory(dict)
    aux_addresses6: dict[str, str] = attrs.Factory(dict)
    attachable: bool = False  # Docker's --attachable, kept and shown
    driver: str = "bridge"  # bridge, macvlan or ipvlan (see Networks.create)


@attrs.frozen
class NetworkListRequest:
    # Docker's network list filters (see list_filter): {"key": ("value", ...)}
    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class NetworkInspectRequest:
    networks: tuple[str, ...]


@attrs.frozen
class DockerNetworkInspectRequest:
    """A network as ``docker network inspect`` prints it: answered with a
    DockerShapeResponse (see there)."""

    network: str


@attrs.frozen
class NetworkRemoveRequest:
    network: str


@attrs.frozen
class NetworkPruneRequest:
    # until, label, label! (boxd._prune)
    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class NetworkConnectRequest:
    container: str
    join: NetworkJoin  # the network, and what the container asks for there


@attrs.frozen
class NetworkDisconnectRequest:
    network: str
    container: str
    force: bool = False


@attrs.frozen
class Member:
    """A container on a network, as ``network inspect`` shows it."""

    id: str
    name: str
    ip_address: str  # its address on the network (kept while the container exists)
    running: bool
    mac_address: str = ""  # its interface's there, while it has one
    ipv6_address: str = ""  # on a network with IPv6


@attrs.frozen
class NetworkInfo:
    name: str
    id: str
    driver: str
    bridge: str
    subnet: str
    gateway: str
    created_at: float
    dns: bool
    containers: tuple[Member, ...]
    labels: dict[str, str] = attrs.Factory(dict)
    ip_range: str = ""
    options: dict[str, str] = attrs.Factory(dict)
    internal: bool = False
    ipv6: bool = False
    subnet6: str = ""
    gateway6: str = ""
    ip_range6: str = ""
    ipv4: bool = True
    aux_addresses: dict[str, str] = attrs.Factory(dict)
    aux_addresses6: dict[str, str] = attrs.Factory(dict)
    attachable: bool = False


@attrs.frozen
class NetworkResponse:
    network: NetworkInfo


@attrs.frozen
class NetworkListResponse:
    networks: tuple[NetworkInfo, ...]


@attrs.frozen
class NetworkPruneResponse:
    removed: tuple[str, ...]


REQUESTS = (
    NetworkCreateRequest,
    NetworkListRequest,
    NetworkInspectRequest,
    NetworkRemoveRequest,
    NetworkPruneRequest,
    NetworkConnectRequest,
    NetworkDisconnectRequest,
    DockerNetworkInspectRequest,
)

STREAMS: tuple[type[Any], ...] = ()  # the area's interface: see boxd._verbareas
ERRORS: dict[type[Exception], str] = {}


class Conn(Protocol):
    async def send(self, message: object) -> None: ...


# The phases with no endpoint on their networks: at rest, or between a restart's runs.
_OFF_NETWORK = AT_REST | {RESTARTING}


def _users(sup: Supervisor, name: str) -> list[str]:
    """The containers on network ``name`` now: those it joins that are not at rest or
    waiting out a restart's backoff.  A created or stopped one that names it does not keep
    it, nor one between its restarts (Docker's network has no endpoint of it then): its
    next start fails, naming the network, and a restart is not tried again."""
    return [
        c.name
        for c in sup.list(all=True)
        if c.state.status not in _OFF_NETWORK and any(j.network == name for j in joined(c.config))
    ]


def _info(sup: Supervisor, net: Network) -> NetworkInfo:
    members = []
    for c in sup.list(all=True):
        address = net.allocations.get(c.id)
        if address is not None or c.id in net.allocations6:  # IPv6-only networks: IPv6's
            running = sup.run_of(c.id) is not None
            # The MAC its interface there has, as its running attachment published it.
            mac = next(
                (e.mac_address for e in c.state.network.endpoints if e.network == net.name), ""
            )
            address6 = net.allocations6.get(c.id, "")
            members.append(
                Member(c.id, c.name, address or "", running, mac if running else "", address6)
            )
    return NetworkInfo(
        name=net.name,
        id=net.id,
        driver=net.driver,
        bridge=net.bridge,
        subnet=net.subnet,
        gateway=net.gateway,
        created_at=net.created_at,
        dns=net.dns,
        containers=tuple(members),
        labels=dict(net.labels),
        ip_range=net.ip_range,
        options=dict(net.options),
        internal=net.internal,
        ipv6=net.ipv6,
        subnet6=net.subnet6,
        gateway6=net.gateway6,
        ip_range6=net.ip_range6,
        ipv4=net.ipv4,
        aux_addresses=dict(net.aux_addresses),
        aux_addresses6=dict(net.aux_addresses6),
        attachable=net.attachable,
    )


def _builtin(sup: Supervisor, name: str) -> NetworkInfo:
    """``host`` or ``none``, which boxd keeps no record of: no bridge, no addresses, the
    containers that use it, made when the default network was (as Docker makes the three
    at once)."""
    default = next((n for n in sup.networks.list() if n.name == DEFAULT_NETWORK), None)
    members = tuple(
        [
            Member(c.id, c.name, "", sup.run_of(c.id) is not None)
            for c in sup.list(all=True)
            if c.config.network == name
        ]
    )
    return NetworkInfo(
        name=name,
        id=builtin_network_id(name),
        driver="host" if name == "host" else "null",
        bridge="",
        subnet="",
        gateway="",
        created_at=default.created_at if default is not None else 0.0,
        dns=False,
        containers=members,
    )


LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
DANGLING = {"1": True, "true": True, "0": False, "false": False}


def list_filter(filters: Mapping[str, tuple[str, ...]]) -> Callable[[NetworkInfo], bool]:
    """Docker's ``network ls`` filters (moby's daemon/network/filter.go): ``name`` and
    ``id`` (the text, or a regular expression found in it), ``driver`` and ``scope``
    (equal), ``type`` (builtin or custom), ``dangling`` (true: the user networks no
    container is on; false: the others), each matching if one of its values does, and
    ``label`` (KEY or KEY=VALUE), every one.  A bad key or value is refused (ValueError)
    in Docker's words."""
    for key in filters:
        if key not in LIST_FILTERS:
            raise ValueError(f"invalid filter '{key}'")
    for kind in filters.get("type", ()):
        if kind not in ("builtin", "custom"):
            raise ValueError(f"invalid filter: 'type'='{kind}'")
    dangling = filters.get("dangling", ())
    if len(dangling) > 1:
        raise ValueError('got more than one value for filter key "dangling"')
    if dangling and dangling[0] not in DANGLING:
        raise ValueError(
            'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")'
        )

    def selects(info: NetworkInfo) -> bool:
        builtin = info.name in BUILTIN
        tests: dict[str, Callable[[str], bool]] = {
            "name": lambda v: docker_match(v, info.name),
            "id": lambda v: docker_match(v, info.id),
            "driver": lambda v: v == info.driver,
            "scope": lambda v: v == "local",
            "type": lambda v: v == ("builtin" if builtin else "custom"),
            "dangling": lambda v: DANGLING[v] == (not builtin and not info.containers),
        }
        if not all(_prune.has_label(info.labels, want) for want in filters.get("label", ())):
            return False
        return all(any(map(tests[k], vs)) for k, vs in filters.items() if vs and k != "label")

    return selects


def _find(sup: Supervisor, ref: str) -> NetworkInfo:
    """The network ``ref`` names (a name, an id or a unique prefix of one), a built-in
    one too."""
    for name in ("host", "none"):
        if ref in (name, builtin_network_id(name)):
            return _builtin(sup, name)
    return _info(sup, sup.networks.get(ref))


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    """Each request type's handler, called with the request's connection."""

    async def create(conn: Conn, req: NetworkCreateRequest) -> None:
        net = await sup.networks.create(
            req.name,
            req.subnet,
            req.labels,
            req.gateway,
            req.ip_range,
            req.options,
            internal=req.internal,
            ipv6=req.ipv6,
            subnet6=req.subnet6,
            gateway6=req.gateway6,
            ip_range6=req.ip_range6,
            ipv4=req.ipv4,
            aux_addresses=req.aux_addresses,
            aux_addresses6=req.aux_addresses6,
            attachable=req.attachable,
            driver=req.driver,
        )
        sup.events.network("create", net.id, net.name)
        await conn.send(NetworkResponse(_info(sup, net)))

    async def list_(conn: Conn, req: NetworkListRequest) -> None:
        selects = list_filter(req.filters)
        found = [_info(sup, n) for n in sup.networks.list()]
        found += [_builtin(sup, name) for name in ("host", "none")]
        # By their making, as the networks' own order: the built-in ones with the bridge.
        found.sort(key=lambda n: n.created_at)
        await conn.send(NetworkListResponse(tuple([n for n in found if selects(n)])))

    async def inspect(conn: Conn, req: NetworkInspectRequest) -> None:
        found = tuple([_find(sup, ref) for ref in req.networks])
        await conn.send(NetworkListResponse(found))

    async def docker_inspect(conn: Conn, req: DockerNetworkInspectRequest) -> None:
        from ._dockerapi._shapes import network  # as the first docker client imports it

        await conn.send(DockerShapeResponse(network(_find(sup, req.network))))

    async def remove(conn: Conn, req: NetworkRemoveRequest) -> None:
        net = await sup.networks.remove(req.network, lambda name: _users(sup, name))
        sup.events.network("destroy", net.id, net.name)
        await conn.send(NetworkResponse(_info(sup, net)))

    async def prune(conn: Conn, req: NetworkPruneRequest) -> None:
        only = _prune.parse(req.filters, time.time())
        removed = []
        for net in sup.networks.list():
            if net.dns and not _users(sup, net.name) and only.selects(net.created_at, net.labels):
                await sup.networks.remove(net.name, lambda name: _users(sup, name))
                sup.events.network("destroy", net.id, net.name)
                removed.append(net.name)
        sup.events.pruned("network", 0)
        await conn.send(NetworkPruneResponse(tuple(removed)))

    async def connect(conn: Conn, req: NetworkConnectRequest) -> None:
        async def change(c: Container, attachment: Attachment | None) -> ContainerConfig:
            return await sup.networks.connect(c, attachment, req.join)

        await sup.change_networks(req.container, change)
        await conn.send(NetworkResponse(_info(sup, sup.networks.get(req.join.network))))

    async def disconnect(conn: Conn, req: NetworkDisconnectRequest) -> None:
        # -f (Docker's force) changes nothing here: a container boxd knows is always
        # disconnected cleanly, running or not.
        async def change(c: Container, attachment: Attachment | None) -> ContainerConfig:
            return await sup.networks.disconnect(c, attachment, req.network)

        await sup.change_networks(req.container, change)
        await conn.send(OkResponse())  # the network may be gone: see Networks.disconnect

    return {
        NetworkCreateRequest: create,
        NetworkListRequest: list_,
        NetworkInspectRequest: inspect,
        NetworkRemoveRequest: remove,
        NetworkPruneRequest: prune,
        NetworkConnectRequest: connect,
        NetworkDisconnectRequest: disconnect,
        DockerNetworkInspectRequest: docker_inspect,
    }

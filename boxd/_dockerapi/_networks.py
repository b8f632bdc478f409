"""Networks: the network verbs of the native socket, in Docker's shape."""

from __future__ import annotations

from typing import Any

from .._netserver import (
    NetworkCreateRequest,
    NetworkInspectRequest,
    NetworkListRequest,
    NetworkListResponse,
    NetworkPruneRequest,
    NetworkRemoveRequest,
)
from .._network import DRIVERS, IPV4_OPTION, IPV6_OPTION
from . import _shapes
from ._api import Api, one_answer
from ._http import ApiError, HttpConnection, Request
from ._router import route
from ._shapes import Fields


async def _verb(api: Api, request: object) -> Any:
    return await one_answer(api.networks[type(request)], request)


async def networks(api: Api, conn: HttpConnection, req: Request) -> None:
    filters = _shapes.parse_filters(req.arg("filters"))
    request = NetworkListRequest({k: tuple(v) for k, v in filters.items()})
    answer: NetworkListResponse = await _verb(api, request)
    await conn.respond_json(200, [_shapes.network(i) for i in answer.networks])


async def inspect(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    if req.arg("scope") not in (None, "", "local"):  # every network of boxd's is local
        raise ApiError(404, f"No such network: {ref}")
    answer = await _verb(api, NetworkInspectRequest(networks=(ref,)))
    await conn.respond_json(200, _shapes.network(answer.networks[0]))


async def create(api: Api, conn: HttpConnection, req: Request) -> None:
    body = Fields(req.json_object(), "body")
    name = body.text("Name")
    if not name:
        raise ApiError(400, "no network name given (Name)")
    driver = body.text("Driver") or "bridge"
    if driver not in DRIVERS:
        raise ApiError(
            400, f"network driver {driver!r} is not supported (use bridge, macvlan or ipvlan)"
        )
    scope = body.text("Scope")
    if scope == "swarm":  # moby's words: boxd is never part of a swarm
        raise ApiError(403, "cannot create a swarm scoped network when swarm is not active")
    if scope not in ("", "local"):
        raise ApiError(400, f"network scope {scope!r} is not supported by boxd (local only)")
    for key in ("Ingress", "ConfigOnly"):
        if body.flag(key):
            raise ApiError(400, f"{key} networks are not supported by boxd")
    ipam = body.object("IPAM")
    if ipam.text("Driver") not in ("", "default"):
        raise ApiError(400, f"IPAM driver {ipam.text('Driver')!r} is not supported by boxd")
    for key in ipam.mapping("Options"):
        raise ApiError(400, f"IPAM option {key!r} is not supported by boxd")
    pools = _pools(ipam.objects("Config"))
    pool, pool6 = pools.get(4, Fields({}, "body.IPAM.Config[0]")), pools.get(6)
    subnet, gateway, ip_range = pool.text("Subnet"), pool.text("Gateway"), pool.text("IPRange")
    labels = body.mapping("Labels")
    options = {k: str(v) for k, v in body.mapping("Options").items()}  # checked by the daemon
    # A field given wins over its option, which then goes (moby's createNetwork).
    # EnableIPv4 is API 1.48's, which moby ignores from older clients; boxd takes it from
    # any: a network without IPv4 asked for is not silently dual stack.
    if body.value("EnableIPv6") is not None:
        options.pop(IPV6_OPTION, None)
    ipv4 = True
    if body.value("EnableIPv4") is not None:
        ipv4 = body.flag("EnableIPv4")
        options.pop(IPV4_OPTION, None)
    request = NetworkCreateRequest(
        name=name, subnet=subnet, labels=labels, gateway=gateway, ip_range=ip_range,
        options=options, internal=body.flag("Internal"), ipv6=body.flag("EnableIPv6"),
        subnet6=pool6.text("Subnet") if pool6 is not None else "",
        gateway6=pool6.text("Gateway") if pool6 is not None else "",
        ip_range6=pool6.text("IPRange") if pool6 is not None else "", ipv4=ipv4,
        aux_addresses=_aux(pool), aux_addresses6=_aux(pool6) if pool6 is not None else {},
        attachable=body.flag("Attachable"), driver=driver,
    )  # fmt: skip
    answer = await _verb(api, request)
    await conn.respond_json(201, {"Id": answer.network.id, "Warning": ""})


def _aux(pool: Fields) -> dict[str, str]:
    """A pool's ``AuxiliaryAddresses``, NAME -> IP (checked by the daemon)."""
    return {k: str(v) for k, v in pool.mapping("AuxiliaryAddresses").items()}


def _pools(configs: list[Fields]) -> dict[int, Fields]:
    """``IPAM.Config``: one pool of each family at most, by family (a pool without a
    subnet is IPv4's, as its gateway says)."""
    pools: dict[int, Fields] = {}
    for pool in configs:
        family = 6 if ":" in pool.text("Subnet") + pool.text("Gateway") else 4
        if family in pools:
            raise ApiError(400, f"one IPAM Config per address family (IPv{family}) per network")
        pools[family] = pool
    return pools


async def remove(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    await _verb(api, NetworkRemoveRequest(network=ref))
    await conn.respond(204, content_type=None)


async def prune(api: Api, conn: HttpConnection, req: Request) -> None:
    filters = _shapes.parse_filters(req.arg("filters"))
    answer = await _verb(api, NetworkPruneRequest({k: tuple(v) for k, v in filters.items()}))
    await conn.respond_json(200, {"NetworksDeleted": list(answer.removed) or None})


ROUTES = [
    route("GET", r"/networks", networks),
    route("GET", r"/networks/", networks),  # dockerd lists there too (moby#24595)
    route("POST", r"/networks/create", create, json=True),
    route("POST", r"/networks/prune", prune),
    route("GET", r"/networks/(.+)", inspect),
    route("DELETE", r"/networks/(.+)", remove),
]

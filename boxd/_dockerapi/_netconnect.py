"""``POST /networks/{id}/connect`` and ``/disconnect``: the native socket's network
connect and disconnect, in Docker's shape (``Container``, ``EndpointConfig.Aliases``,
``EndpointConfig.IPAMConfig.IPv4Address`` and ``IPv6Address``,
``EndpointConfig.IPAMConfig.LinkLocalIPs``, ``EndpointConfig.MacAddress``,
``EndpointConfig.Links``; ``Force``)."""

from __future__ import annotations

from .._netserver import NetworkConnectRequest, NetworkDisconnectRequest
from ._api import Api, one_answer
from ._http import ApiError, HttpConnection, Request
from ._router import route
from ._shapes import Fields, endpoint_join


def _container(body: Fields) -> str:
    container = body.text("Container")
    if not container:
        raise ApiError(400, "no container given (Container)")
    return container


async def connect(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    body = Fields(req.json_object(), "body")
    join = endpoint_join(body.object("EndpointConfig"), "EndpointConfig", ref, early_mac=False)
    request = NetworkConnectRequest(container=_container(body), join=join)
    await one_answer(api.networks[NetworkConnectRequest], request)
    await conn.respond(200, content_type=None)


async def disconnect(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    body = Fields(req.json_object(), "body")
    request = NetworkDisconnectRequest(
        network=ref, container=_container(body), force=body.flag("Force")
    )
    await one_answer(api.networks[NetworkDisconnectRequest], request)
    await conn.respond(200, content_type=None)


ROUTES = [
    route("POST", r"/networks/(.+)/connect", connect, json=True),
    route("POST", r"/networks/(.+)/disconnect", disconnect, json=True),
]

"""Swarm mode's endpoints (swarm, nodes, services, tasks, secrets, configs), answered as
Docker answers them on a node that is in no swarm: boxd never is one.

A client that only asks (``docker info``'s callers, ``docker swarm leave --force`` in a
clean-up script, docker-py's ``client.swarm``) gets Docker's 503 and words, not a 404
that reads as a missing daemon feature or an old API.
"""

from __future__ import annotations

from ._api import Api
from ._http import ApiError, HttpConnection, Request
from ._router import route

NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
    "to connect this node to swarm and try again."
)
ID = r"/([^/]+)"


async def not_a_manager(api: Api, conn: HttpConnection, req: Request, *ref: str) -> None:
    raise ApiError(503, NOT_A_MANAGER)


async def leave(api: Api, conn: HttpConnection, req: Request) -> None:
    raise ApiError(503, "This node is not part of a swarm")


async def refuse_to_join(api: Api, conn: HttpConnection, req: Request) -> None:
    raise ApiError(503, "swarm mode is not supported by boxd: this node cannot init or join one")


# Docker's swarm routes, each answered as by a node in no swarm.
ROUTES = [
    route("POST", r"/swarm/leave", leave),
    route("POST", r"/swarm/init", refuse_to_join),
    route("POST", r"/swarm/join", refuse_to_join),
    route("GET", r"/swarm", not_a_manager),
    route("POST", r"/swarm/update", not_a_manager),
    route("GET", r"/swarm/unlockkey", not_a_manager),
    route("POST", r"/swarm/unlock", not_a_manager),
    route("GET", r"/tasks", not_a_manager),
    route("GET", r"/tasks" + ID, not_a_manager),
    route("GET", r"/tasks" + ID + "/logs", not_a_manager),
    route("GET", r"/services" + ID + "/logs", not_a_manager),
    *(
        route(method, f"/{area}{path}", not_a_manager)
        for area in ("nodes", "services", "secrets", "configs")
        for method, path in (
            ("GET", ""),
            ("GET", ID),
            ("DELETE", ID),
            ("POST", ID + "/update"),
            *([] if area == "nodes" else [("POST", "/create")]),
        )
    ),
]

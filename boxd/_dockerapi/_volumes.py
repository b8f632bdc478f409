"""Volumes: list (filters), create, inspect, remove (``force``), prune, in Docker's shape;
update (cluster volumes only) refused as dockerd in no swarm refuses it."""

from __future__ import annotations

from typing import Any

from .. import _volserver
from .._volserver import VolumeInfo
from . import _shapes
from ._api import Api
from ._http import ApiError, HttpConnection, Request
from ._router import route
from ._shapes import Fields


def shape(v: VolumeInfo) -> dict[str, Any]:
    """``docker volume inspect``'s object (``UsageData`` when the size was measured)."""
    row: dict[str, Any] = {
        "CreatedAt": _shapes.rfc3339(v.created_at),
        "Driver": v.driver,
        "Labels": v.labels or None,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": v.options or None,
        "Scope": "local",
    }
    if v.size >= 0:
        row["UsageData"] = {"Size": v.size, "RefCount": len(v.users)}
    return row


def _filters(req: Request) -> tuple[str, ...]:
    return tuple(
        [
            f"{key}={value}"
            for key, values in _shapes.parse_filters(req.arg("filters")).items()
            for value in values
        ]
    )


async def volumes(api: Api, conn: HttpConnection, req: Request) -> None:
    wanted = _volserver.parse_filters(_filters(req))
    found = (_volserver.info(api.sup, r) for r in api.sup.volumes.list())
    rows = [shape(v) for v in found if _volserver.matches(v, wanted)]
    await conn.respond_json(200, {"Volumes": rows, "Warnings": []})


async def create(api: Api, conn: HttpConnection, req: Request) -> None:
    body = Fields(req.json_object(), "body")
    record = api.sup.volumes.create(
        body.text("Name"),
        labels=body.mapping("Labels"),
        driver=body.text("Driver") or "local",
        options=body.mapping("DriverOpts"),
    )
    await conn.respond_json(201, shape(_volserver.info(api.sup, record)))


async def inspect(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    await conn.respond_json(200, shape(_volserver.info(api.sup, api.sup.volumes.get(name))))


async def remove(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    await _volserver.remove(api.sup, name, force=req.flag("force"))
    await conn.respond(204, content_type=None)


async def update(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    """``docker volume update``: only a swarm's cluster volumes have one; dockerd in no
    swarm refuses it before reading anything (503), as boxd does."""
    raise ApiError(503, "volume update only valid for cluster volumes, but swarm is unavailable")


async def prune(api: Api, conn: HttpConnection, req: Request) -> None:
    """Unused anonymous volumes (``all=true``: named ones too); a client of API 1.41 or
    older gets every unused volume pruned, as Docker's daemon does for it."""
    filters = {k: tuple(v) for k, v in _shapes.parse_filters(req.arg("filters")).items()}
    every = not req.at_least("1.42")
    removed, reclaimed = await _volserver.prune(api.sup, all=every, filters=filters)
    await conn.respond_json(200, {"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})


ROUTES = [
    route("GET", r"/volumes", volumes),
    route("POST", r"/volumes/create", create, json=True),
    route("POST", r"/volumes/prune", prune),
    route("GET", r"/volumes/([^/]+)", inspect),
    route("DELETE", r"/volumes/([^/]+)", remove),
    route("PUT", r"/volumes/([^/]+)", update),
]


async def df_rows(api: Api) -> list[dict[str, Any]]:
    """``/system/df``'s ``Volumes``: each with its size and how many containers use it."""
    return [shape(v) for v in await _volserver.sizes(api.sup)]

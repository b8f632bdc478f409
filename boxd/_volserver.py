"""The protocol's volume requests (``boxctl volume ...``, ``system prune``) and their
handlers, for the native socket and the Engine API alike."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from . import _prune
from ._volumes import NoSuchVolume, VolumeInUse, VolumeRecord

if TYPE_CHECKING:
    from ._supervisor import Supervisor


@attrs.frozen
class VolumeCreateRequest:
    name: str = ""  # empty: an anonymous volume
    driver: str = "local"
    labels: dict[str, str] = attrs.Factory(dict)
    options: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class VolumeListRequest:
    filters: tuple[str, ...] = ()  # "KEY=VALUE": name, label, dangling, driver


@attrs.frozen
class VolumeInspectRequest:
    names: tuple[str, ...]


@attrs.frozen
class VolumeRemoveRequest:
    """Answered with a VolumeListResponse of what was removed."""

    name: str
    force: bool = False  # a missing volume is no error


@attrs.frozen
class VolumePruneRequest:
    all: bool = False  # named volumes too (else anonymous ones only, as Docker 23+)
    # until, label, label! (boxd._prune), and all (Docker's: "true" is --all)
    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class VolumeInfo:
    name: str
    driver: str
    mountpoint: str
    created_at: float
    labels: dict[str, str]
    options: dict[str, str]
    users: tuple[str, ...]  # ids of the containers that mount it
    anonymous: bool
    size: int = -1  # bytes below it; -1: not measured


@attrs.frozen
class VolumeResponse:
    volume: VolumeInfo


@attrs.frozen
class VolumeListResponse:
    volumes: tuple[VolumeInfo, ...]


@attrs.frozen
class VolumePruneResponse:
    removed: tuple[str, ...]
    reclaimed: int  # bytes


REQUESTS = (
    VolumeCreateRequest,
    VolumeListRequest,
    VolumeInspectRequest,
    VolumeRemoveRequest,
    VolumePruneRequest,
)

LIST_FILTERS = ("dangling", "driver", "label", "name")

STREAMS: tuple[type[Any], ...] = ()  # the area's interface: see boxd._verbareas
ERRORS: dict[type[Exception], str] = {}


class Conn(Protocol):
    async def send(self, message: object) -> None: ...


def parse_filters(specs: Sequence[str]) -> dict[str, list[str]]:
    """``volume ls``'s ``KEY=VALUE`` words: a key given twice ORs its values; different
    keys AND."""
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq or key not in LIST_FILTERS:  # the key alone, in Docker's words
            raise ValueError(f"invalid filter {key!r}: use {'=, '.join(LIST_FILTERS)}=")
        if key == "dangling" and value not in ("true", "false", "1", "0"):
            raise ValueError(f"invalid filter 'dangling={value}': use true or false")
        filters.setdefault(key, []).append(value)
    return filters


def matches(info: VolumeInfo, filters: dict[str, list[str]]) -> bool:
    def test(key: str, value: str) -> bool:
        if key == "name":
            try:
                return re.search(value, info.name) is not None
            except re.error:
                return value in info.name
        if key == "label":
            name, eq, wanted = value.partition("=")
            return info.labels.get(name) == wanted if eq else name in info.labels
        if key == "driver":
            return value == info.driver
        return (not info.users) == (value in ("true", "1"))  # dangling

    return all(any(test(key, v) for v in values) for key, values in filters.items())


def info(sup: Supervisor, record: VolumeRecord, *, size: int = -1) -> VolumeInfo:
    return VolumeInfo(
        name=record.name,
        driver=record.driver,
        mountpoint=record.device or str(sup.volumes.path(record.name)),
        created_at=record.created_at,
        labels=dict(record.labels),
        options=dict(record.options),
        users=tuple(sup.volume_users(record.name)),
        anonymous=record.anonymous,
        size=size,
    )


async def sizes(sup: Supervisor) -> list[VolumeInfo]:
    """Every volume with the bytes it holds (``system df``), measured in a thread; one
    removed while the others are measured is not counted (as Docker's df skips it)."""
    found = []
    for record in sup.volumes.list():
        try:
            size = await trio.to_thread.run_sync(sup.volumes.size, record.name)
        except NoSuchVolume:
            continue
        found.append(info(sup, record, size=size))
    return found


async def remove(sup: Supervisor, name: str, *, force: bool = False) -> VolumeInfo | None:
    """Refused while a container (in any phase) mounts it, as Docker does; what was
    removed (None: nothing, a missing volume with ``force``).  Its files are deleted in
    the background, or before it returns when space is short (see Supervisor)."""
    if force and name not in {r.name for r in sup.volumes.list()}:
        return None
    found = info(sup, sup.volumes.get(name))
    if found.users:
        raise VolumeInUse(name, found.users)
    sup.remove_volume(name)
    await sup.give_space_back()
    return found


async def prune(
    sup: Supervisor, *, all: bool = False, filters: Mapping[str, tuple[str, ...]] | None = None
) -> tuple[list[str], int]:
    """Unused volumes: anonymous ones (and named ones with ``all``, or the filter
    ``all=true``) that match the filters; their names, and the bytes they held."""
    wanted = dict(filters or {})
    flags = wanted.pop("all", ())
    for flag in flags:
        if flag not in ("true", "false", "1", "0"):
            raise ValueError(f"invalid filter 'all={flag}': use true or false")
    # No until: Docker's volume prune refuses it too.
    only = _prune.parse(
        wanted,
        time.time(),
        keys=("label", "label!"),
        takes="volume prune takes label, label! and all",
    )
    every = all or any(flag in ("true", "1") for flag in flags)
    removed, reclaimed = [], 0
    for record in sup.volumes.list():
        if not (every or record.anonymous):
            continue
        if sup.volume_users(record.name) or not only.selects(record.created_at, record.labels):
            continue
        size = await trio.to_thread.run_sync(sup.volumes.size, record.name)
        if sup.volume_users(record.name):  # a container took it meanwhile
            continue
        sup.remove_volume(record.name)
        removed.append(record.name)
        reclaimed += size
    await sup.give_space_back()
    sup.events.pruned("volume", reclaimed)
    return removed, reclaimed


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    """Each request type's handler, called with the request's connection."""

    async def create(conn: Conn, req: VolumeCreateRequest) -> None:
        record = sup.volumes.create(
            req.name, labels=req.labels, driver=req.driver, options=req.options
        )
        await conn.send(VolumeResponse(info(sup, record)))

    async def list_(conn: Conn, req: VolumeListRequest) -> None:
        wanted = parse_filters(req.filters)
        found = (info(sup, r) for r in sup.volumes.list())
        await conn.send(VolumeListResponse(tuple([v for v in found if matches(v, wanted)])))

    async def inspect(conn: Conn, req: VolumeInspectRequest) -> None:
        found = tuple([info(sup, sup.volumes.get(name)) for name in req.names])
        await conn.send(VolumeListResponse(found))

    async def remove_(conn: Conn, req: VolumeRemoveRequest) -> None:
        removed = await remove(sup, req.name, force=req.force)
        await conn.send(VolumeListResponse(() if removed is None else (removed,)))

    async def prune_(conn: Conn, req: VolumePruneRequest) -> None:
        removed, reclaimed = await prune(sup, all=req.all, filters=req.filters)
        await conn.send(VolumePruneResponse(tuple(removed), reclaimed))

    return {
        VolumeCreateRequest: create,
        VolumeListRequest: list_,
        VolumeInspectRequest: inspect,
        VolumeRemoveRequest: remove_,
        VolumePruneRequest: prune_,
    }

"""The container verbs a daemon serves now and then: ``update``, ``rename``, ``top``,
``diff``, ``container prune``, ``stats``, ``events`` and ``inspect`` in Docker's shape (a
verb area of
:mod:`boxd._verbareas`: loaded by the first such request).  Their twelve messages and
handlers were ~0.2 MB of every daemon, most of which never serves one; ``docker`` clients
reach the same supervisor methods through the Engine API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import _prune, _top
from ._diff import Change
from ._events import event_filter, message
from ._lifecycle import NoSuchContainer
from ._messages import DockerShapeResponse, EndFrame, OkResponse
from ._records import Container, Resources, RestartPolicy
from ._server import Connection, cancel_when_closed

if TYPE_CHECKING:
    from ._cgroup import Stats
    from ._netcount import Interface
    from ._supervisor import Supervisor

STATS_INTERVAL = 1.0  # seconds between stats frames


@attrs.frozen
class UpdateRequest:
    container: str
    resources: Resources  # the limits given; None fields keep their values
    restart: RestartPolicy | None = None


@attrs.frozen
class UpdateResponse:
    warnings: tuple[str, ...] = ()  # options this host ignores (Supervisor.limit_warnings)


@attrs.frozen
class StatsRequest:
    containers: tuple[str, ...] = ()
    stream: bool = False
    all: bool = False  # none named: every container, those not running as zeros


@attrs.frozen
class RenameRequest:
    container: str
    name: str


@attrs.frozen
class TopRequest:
    container: str
    ps_args: tuple[str, ...] = ()  # options of the host's ps; none: -ef


@attrs.frozen
class DiffRequest:
    container: str


@attrs.frozen
class EventsRequest:
    """Kept events from ``since`` (none when None), then new ones as they happen, until
    ``until`` (Unix times), those that Docker's ``filters`` select (see
    :func:`boxd._events.event_filter`); each an EventFrame, then an EndFrame at ``until``."""

    since: float | None = None
    until: float | None = None
    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class PruneRequest:
    """Remove every container at rest that the filters select (Docker's ``until``,
    ``label``, ``label!``: see :mod:`boxd._prune`); answered with a PruneResponse."""

    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)


@attrs.frozen
class DockerInspectRequest:
    """A container as ``docker inspect`` prints it (the Engine API's JSON, at the version
    the docker CLI speaks), made here, where the Engine API's code is: ``boxctl inspect``
    that made it from the record imported most of the daemon for it (~150 ms a call, where
    ``ps`` takes 10).  ``size``: with SizeRw and SizeRootFs (``inspect -s``)."""

    container: str
    size: bool = False


@attrs.frozen
class DockerDfRequest:
    """Disk use as the Engine API's ``/system/df`` gives it to ``docker system df -v``: each
    image, container and volume with its size (``boxctl system df -v``), made here, where
    the Engine API's code is."""


@attrs.frozen
class TopResponse:
    titles: tuple[str, ...]
    processes: tuple[tuple[str, ...], ...]


@attrs.frozen
class DiffResponse:
    changes: tuple[Change, ...]


@attrs.frozen
class EventFrame:
    event: dict[str, Any]  # in Docker's shape (boxd._events.message)


@attrs.frozen
class PruneResponse:
    removed: tuple[str, ...]  # ids
    reclaimed: int  # bytes of files the removed containers held


@attrs.frozen
class StatsFrame:
    stats: tuple[dict[str, Any], ...]


REQUESTS: tuple[type[Any], ...] = (
    UpdateRequest,
    StatsRequest,
    RenameRequest,
    PruneRequest,
    TopRequest,
    DiffRequest,
    EventsRequest,
    DockerInspectRequest,
    DockerDfRequest,
)
STREAMS: tuple[type[Any], ...] = (StatsRequest, EventsRequest)
ERRORS: dict[type[Exception], str] = {}


def _not_running(c: Container, *, gone: bool = False) -> dict[str, Any]:
    """A stats row of a container that does not run: zeros, its memory limit too;
    ``gone``: removed since the stream began (marked so)."""
    counters = ("cpu_percent", "memory_usage", "memory_limit", "pids", "block_read")
    zeros = dict.fromkeys((*counters, "block_write", "net_rx", "net_tx"), 0)
    return {"id": c.id, "name": c.name, **zeros, **({"gone": True} if gone else {})}


def _exists(sup: Supervisor, cid: str) -> bool:
    try:
        sup.inspect(cid)
    except NoSuchContainer:
        return False
    return True


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    """Each request type's handler, called with the request's connection."""

    async def update(conn: Connection, req: UpdateRequest) -> None:
        await sup.update(req.container, req.resources, req.restart)
        await conn.send(UpdateResponse(tuple(sup.limit_warnings(req.resources))))

    async def rename(conn: Connection, req: RenameRequest) -> None:
        await sup.rename(req.container, req.name)
        await conn.send(OkResponse())

    async def top(conn: Connection, req: TopRequest) -> None:
        titles, rows = await _top.top(sup.processes(req.container), req.ps_args)
        await conn.send(
            TopResponse(titles=tuple(titles), processes=tuple([tuple(r) for r in rows]))
        )

    async def docker_inspect(conn: Connection, req: DockerInspectRequest) -> None:
        # The Engine API's code (~0.8 MB, h11 with it) is imported by the first call, as by
        # the first docker client.
        from ._dockerapi._containers import inspected
        from ._dockerapi._http import API_VERSION

        c = sup.inspect(req.container)
        shown = await inspected(sup, c, [], API_VERSION, size=req.size)
        await conn.send(DockerShapeResponse(shown))

    async def docker_df(conn: Connection, _: DockerDfRequest) -> None:
        from ._dockerapi._api import Api
        from ._dockerapi._system import DF_TYPES, disk_usage

        async with trio.open_nursery() as nursery:  # the Api's, for detached execs: none here
            shown = await disk_usage(Api(sup, nursery), set(DF_TYPES))
        await conn.send(DockerShapeResponse(shown))

    async def diff(conn: Connection, req: DiffRequest) -> None:
        await conn.send(DiffResponse(changes=tuple(await sup.diff(req.container))))

    async def prune(conn: Connection, req: PruneRequest) -> None:
        removed, reclaimed = await sup.prune(_prune.parse(req.filters, time.time()))
        await conn.send(PruneResponse(removed=tuple(removed), reclaimed=reclaimed))

    async def stats(conn: Connection, req: StatsRequest) -> None:
        """CPU percentages need two samples: the first frame comes after one interval.  A
        container named that is removed meanwhile stays, a row marked ``gone`` (the
        docker CLI shows it as ``--`` until it is stopped), not an end of the stream."""
        named = [sup.inspect(ref) for ref in req.containers]  # one missing: refused now

        def sample() -> list[tuple[Container, Stats, dict[str, Interface]]]:
            if not named:
                return sup.sample()
            here = [c.id for c in named if _exists(sup, c.id)]
            return sup.sample(here) if here else []

        previous = {c.id: (s.cpu_total_ns, trio.current_time()) for c, s, _ in sample()}
        await conn.send(OkResponse())
        while True:
            await trio.sleep(STATS_INTERVAL if req.stream else STATS_INTERVAL / 2)
            now = trio.current_time()
            rows = {}
            for c, s, networks in sample():
                before, then = previous.get(c.id, (s.cpu_total_ns, now))
                elapsed = max(now - then, 1e-9)
                previous[c.id] = (s.cpu_total_ns, now)
                rows[c.id] = {
                    "id": c.id,
                    "name": c.name,
                    "cpu_percent": round(100 * (s.cpu_total_ns - before) / 1e9 / elapsed, 2),
                    "memory_usage": s.usage_without_cache(),
                    "memory_limit": s.memory_limit,
                    "pids": s.pids,
                    "block_read": s.io_read_bytes,
                    "block_write": s.io_write_bytes,
                    "net_rx": sum(n.rx_bytes for n in networks.values()),
                    "net_tx": sum(n.tx_bytes for n in networks.values()),
                }
            # A container named that does not run: a row of zeros (its limit 0 too), as
            # dockerd answers for it; in the order named.  None named: the newest first,
            # as Docker's list.
            listed = named or sup.list(all=True)
            shown = [
                rows.get(c.id) or _not_running(c, gone=not _exists(sup, c.id))
                for c in listed
                if named or req.all or c.id in rows
            ]
            await conn.send(StatsFrame(stats=tuple(shown)))
            if not req.stream:
                await conn.send(EndFrame())
                return

    async def events(conn: Connection, req: EventsRequest) -> None:
        """The kept events in [since, until], then new ones until ``until``; a follower
        that hangs up ends its stream at once, not at the next event."""
        if req.since is not None and req.until is not None and req.since > req.until:
            raise ValueError(  # dockerd's words
                f"`since` time ({req.since:.9f}) cannot be after `until` time ({req.until:.9f})"
            )
        wanted = event_filter(req.filters)
        history, channel = sup.events.subscribe()
        await conn.send(OkResponse())
        until_ns = math.inf if req.until is None else req.until * 1e9
        with channel:
            if req.since is not None or req.until is not None:
                since_ns = (req.since or 0) * 1e9
                for event in history:
                    if since_ns <= event.time_ns <= until_ns and wanted(event):
                        await conn.send(EventFrame(event=message(event)))
            # The clock the events carry is the wall clock; trio's deadline is another.
            deadline = trio.current_time() + (until_ns / 1e9 - time.time())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_closed, conn, nursery.cancel_scope)
                with trio.move_on_at(deadline):
                    async for event in channel:
                        if wanted(event):
                            await conn.send(EventFrame(event=message(event)))
                nursery.cancel_scope.cancel(reason="until reached")
        await conn.send(EndFrame())

    return {
        UpdateRequest: update,
        StatsRequest: stats,
        RenameRequest: rename,
        PruneRequest: prune,
        TopRequest: top,
        DiffRequest: diff,
        EventsRequest: events,
        DockerInspectRequest: docker_inspect,
        DockerDfRequest: docker_df,
    }

"""The Engine API's server: connections, requests one after another, and the routes of
every area, each in a module of its own.

This front end translates and holds no policy: what a container may do, when it starts,
stops, restarts or is removed is the supervisor's business, as it is for the native socket
(:mod:`boxd._server`).  To add an area, write a module with a ``ROUTES`` list (see
:mod:`._router`) and name it in :data:`AREAS`.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from .. import __version__, _netserver
from .._idle import WaitingConnections
from .._images.verbs import ImageVerbs
from .._server import peer_credentials
from .._supervisor import Supervisor
from . import _archive, _attach, _containers, _images, _netconnect, _networks, _system, _volumes
from ._api import Api, api_error, unwrap
from ._http import API_VERSION, MIN_API_VERSION, ApiError, HttpConnection, PeerGone, Request
from ._router import Router

log = logging.getLogger("boxd.dockerapi")

FIRST_REQUEST_TIMEOUT = 5.0  # a client sends its request as soon as it has connected
IDLE_TIMEOUT = 30.0  # a kept-alive connection with no next request is closed
MAX_WAITING = 128  # connections waiting for a request (see boxd._idle)

# One line per area, in alphabetical order.
AREAS = (
    _archive,
    _attach,
    _containers,
    _images,
    _netconnect,
    _networks,
    _system,
    _volumes,
)
ROUTER = Router(r for area in AREAS for r in area.ROUTES)


def _check_version(version: str | None) -> None:
    if version is None:
        return
    wanted = tuple(int(p) for p in version.split("."))
    if wanted > tuple(int(p) for p in API_VERSION.split(".")):
        raise ApiError(
            400,
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}",
        )
    if wanted < tuple(int(p) for p in MIN_API_VERSION.split(".")):
        raise ApiError(
            400,
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version",
        )


class DockerApi:
    def __init__(self, sup: Supervisor, nursery: trio.Nursery) -> None:
        self.api = Api(sup, nursery, ImageVerbs(sup), _netserver.handlers(sup))
        self._waiting = WaitingConnections(MAX_WAITING)

    async def handle(self, stream: trio.abc.Stream) -> None:
        pid = uid = -1
        if isinstance(stream, trio.SocketStream):
            with contextlib.suppress(OSError):
                pid, uid, _ = peer_credentials(stream)
        conn = HttpConnection(stream, f"boxd/{__version__}")
        async with stream:
            try:
                await self._serve(conn, pid, uid)
            except PeerGone:
                pass
            except Exception as exc:  # a bug must cost one connection, not the daemon
                log.exception("peer pid=%d uid=%d: request failed", pid, uid)
                if conn.can_respond:
                    with contextlib.suppress(PeerGone):
                        await conn.error(ApiError(500, f"internal error: {exc}"))

    async def _serve(self, conn: HttpConnection, pid: int, uid: int) -> None:
        """Requests one after another.  Waiting for one is bounded as on the native socket
        (:mod:`boxd._idle`): silent connections time out, and the oldest waiting one makes
        room for a new one, so they cannot lock out real clients."""
        timeout = FIRST_REQUEST_TIMEOUT
        while True:
            request = None
            try:
                with self._waiting.waiting(timeout) as wait:
                    request = await conn.next_request(ROUTER.streamed)
            except ApiError as exc:
                await conn.refuse(exc)
                return
            if wait.evicted or wait.timed_out:
                log.debug("peer pid=%d uid=%d: no request in time, closed", pid, uid)
                return
            if request is None:
                return
            timeout = IDLE_TIMEOUT
            log.debug("peer pid=%d uid=%d: %s %s", pid, uid, request.method, request.path)
            try:
                await self._dispatch(conn, request)
            except Exception as exc:
                error = api_error(unwrap(exc))
                if error is None:
                    raise
                if not conn.can_respond:
                    return  # in the middle of a stream: ending it is all that is left
                await conn.error(error)
            if conn.hijacked or not conn.keep_alive:
                return

    async def _dispatch(self, conn: HttpConnection, request: Request) -> None:
        _check_version(request.version)
        route, groups = ROUTER.find(request)
        await route.handler(self.api, conn, request, *groups)

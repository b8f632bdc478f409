"""The Engine API's server: connections, requests one after another, and the routes of
every area, each in a module of its own (those of rarely used areas imported by the first
request of theirs).

This front end translates and holds no policy: what a container may do, when it starts,
stops, restarts or is removed is the supervisor's business, as it is for the native socket
(:mod:`boxd._server`).  To add an area, write a module with a ``ROUTES`` list (see
:mod:`._router`) and name it in :data:`AREAS` or :data:`LAZY_AREAS`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import re

import trio

from .. import __version__
from .._idle import WaitingConnections
from .._server import peer_credentials
from .._supervisor import Supervisor
from . import _attach, _containers, _system
from ._api import Api, api_error, unwrap
from ._http import (
    API_VERSION,
    HEADS_ROOM,
    MIN_API_VERSION,
    ApiError,
    HeadRoom,
    HttpConnection,
    PeerGone,
    Request,
    version_tuple,
)
from ._router import CONTAINER, Router

log = logging.getLogger("boxd.dockerapi")

# A new connection's wait for its request's line and headers (not its body): dockerd's
# (ReadHeaderTimeout), so that one typed by hand (socat, nc) is answered.  Silent ones cannot
# lock real clients out: the longest-waiting of more than MAX_WAITING is closed.
FIRST_REQUEST_TIMEOUT = 300.0
MAX_WAITING = 128  # new connections waiting for their first request (see boxd._idle)
# Kept-alive connections between requests: a pool of a client (docker-py's keeps ten per
# client, and more while responses are not read to the end).  dockerd never closes them, and
# a client that sends its next request as the daemon closes one gets no answer (Python's
# clients do not retry), so they are closed neither after a time nor for new connections:
# only the longest-idle of more than MAX_IDLE.
MAX_IDLE = 1024

# One line per area, in alphabetical order: those a client of containers uses.
AREAS = (
    _attach,
    _containers,
    _system,
)
# The areas whose routes are added by the first request whose path matches the gate (with
# the native socket's verbs behind them, ~1 MB of the daemon's memory: boxd._verbareas).
# Every path of an area's routes matches its gate (tests/test_dockerapi.py checks).
LAZY_AREAS = {
    "boxd._dockerapi._archive": re.compile(CONTAINER + r"/archive\Z"),
    "boxd._dockerapi._build": re.compile(r"/build\Z"),
    "boxd._dockerapi._images": re.compile(r"/(images|commit|auth|distribution)(/|\Z)"),
    "boxd._dockerapi._netconnect": re.compile(r"/networks/.+/(connect|disconnect)\Z"),
    "boxd._dockerapi._networks": re.compile(r"/networks(/|\Z)"),
    "boxd._dockerapi._swarm": re.compile(r"/(swarm|nodes|services|tasks|secrets|configs)(/|\Z)"),
    "boxd._dockerapi._volumes": re.compile(r"/volumes(/|\Z)"),
}


def _check_version(version: str | None) -> None:
    if version is None:
        return
    wanted = version_tuple(version)
    if wanted > version_tuple(API_VERSION):
        raise ApiError(
            400,
            f"client version {version} is too new. Maximum supported API version is {API_VERSION}",
        )
    if wanted < version_tuple(MIN_API_VERSION):
        raise ApiError(
            400,
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version",
        )


class DockerApi:
    def __init__(self, sup: Supervisor, nursery: trio.Nursery) -> None:
        self.api = Api(sup, nursery)
        self._waiting = WaitingConnections(MAX_WAITING)
        self._idle = WaitingConnections(MAX_IDLE)
        self._heads = HeadRoom(HEADS_ROOM)
        self.router = Router(r for area in AREAS for r in area.ROUTES)
        self._lazy = dict(LAZY_AREAS)  # those not added yet

    def _routes_for(self, request: Request) -> Router:
        """The router, with the routes of a lazy area the request's path may be for."""
        for name, gate in list(self._lazy.items()):
            if gate.match(request.path):
                self.router.add(importlib.import_module(name).ROUTES)
                del self._lazy[name]
        return self.router

    def _streamed(self, request: Request) -> bool:
        return self._routes_for(request).streamed(request)

    async def handle(self, stream: trio.abc.Stream) -> None:
        pid = uid = -1
        if isinstance(stream, trio.SocketStream):
            with contextlib.suppress(OSError):
                pid, uid, _ = peer_credentials(stream)
        conn = HttpConnection(stream, f"boxd/{__version__}", self._heads)
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
        """Requests one after another.  Waiting for the first one's head is bounded as on
        the native socket (:mod:`boxd._idle`): silent connections time out, and the oldest
        waiting one makes room for a new one, so they cannot lock out real clients.
        Waiting for the next is bounded only in number (:data:`MAX_IDLE`).  A body, once
        its head has come, is waited for as long as it takes, as dockerd waits, but still
        counts among the waiting connections: a connection that never sends the body it
        announced is closed to make room like a silent one."""
        waiting, timeout = self._waiting, FIRST_REQUEST_TIMEOUT
        while True:
            request = None
            try:
                with waiting.waiting(timeout) as wait:
                    request = await conn.next_head()
                    if request is not None:
                        # Its body for as long as it takes, still among the waiting ones.
                        wait.scope.deadline = math.inf
                        request = await conn.with_body(request, self._streamed(request))
            except ApiError as exc:
                await conn.refuse(exc)
                await conn.close_gently()
                return
            if wait.evicted or wait.timed_out:
                log.debug("peer pid=%d uid=%d: no request in time, closed", pid, uid)
                return
            if request is None:
                return
            waiting, timeout = self._idle, math.inf
            log.debug("peer pid=%d uid=%d: %s %s", pid, uid, request.method, request.path)
            try:
                await self._dispatch(conn, request)
            except Exception as exc:
                found = unwrap(exc)
                if isinstance(found, PeerGone):  # raised in a stream's nursery: a group
                    return
                error = api_error(found)
                if error is None:
                    raise
                if not conn.can_respond:
                    # In the middle of a stream: ending it is all that is left.
                    await conn.close_gently()
                    return
                old = request.version is not None and version_tuple(request.version) < (1, 24)
                await conn.error(error, plain=old)
            if conn.hijacked or not conn.keep_alive:
                await conn.close_gently()
                return

    async def _dispatch(self, conn: HttpConnection, request: Request) -> None:
        _check_version(request.version)
        route, groups = self._routes_for(request).find(request)
        if route.json:
            request.json()
        await route.handler(self.api, conn, request, *groups)

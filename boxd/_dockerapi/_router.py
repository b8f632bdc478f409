"""Which handler answers a request: each area module (containers, images, ...) lists its
routes in ``ROUTES``; :mod:`._server` gathers them into one :class:`Router`.

A handler is ``async def handler(api, conn, req, *groups)``: the :class:`~._api.Api` state,
the connection, the request and the pattern's groups (a container's name, an image's
reference).  Literal paths (``/containers/json``) are matched before patterns
(``/containers/([^/]+)``), so the order of modules and of routes in them does not matter;
two patterns of one method must not match one path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs

from ._http import ApiError, Request

Handler = Callable[..., Awaitable[None]]
CONTAINER = r"/containers/([^/]+)"  # a container's id or name: the handler's first argument


@attrs.frozen
class Route:
    method: str
    path: str  # a regular expression matched against the whole path
    handler: Handler
    # The request body is one the handler reads as it comes (an image archive), not whole.
    streamed: Callable[[Request], bool] | None = None
    # The body is JSON (Docker's ReadJSON): checked before the handler looks anything up,
    # so that a bad one is a 400 whether or not what the path names exists.
    json: bool = False
    pattern: re.Pattern[str] = attrs.field(init=False)

    @pattern.default
    def _compile(self) -> re.Pattern[str]:
        return re.compile(self.path + r"\Z")

    @property
    def literal(self) -> bool:
        return self.pattern.groups == 0


def route(
    method: str,
    path: str,
    handler: Handler,
    *,
    streamed: Callable[[Request], bool] | None = None,
    json: bool = False,
) -> Route:
    return Route(method, path, handler, streamed, json)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes: list[Route] = []
        self.add(routes)

    def add(self, routes: Iterable[Route]) -> None:
        found = [*self._routes, *routes]
        self._routes = [r for r in found if r.literal] + [r for r in found if not r.literal]

    @property
    def routes(self) -> list[tuple[str, str]]:
        """The method and path pattern of every route."""
        return [(r.method, r.path) for r in self._routes]

    def find(self, request: Request) -> tuple[Route, tuple[Any, ...]]:
        """The route for a request and its pattern's groups; Docker's 404 "page not
        found" for an unknown path and for a known one asked with another method (its
        router answers both alike, never 405)."""
        for r in self._routes:
            match = r.pattern.match(request.path)
            if match is not None and r.method == request.method:
                return r, match.groups()
        raise ApiError(404, f"page not found: {request.method} {request.path}")

    def streamed(self, request: Request) -> bool:
        try:
            r, _ = self.find(request)
        except ApiError:
            return False  # the body is read whole; the error is answered at dispatch
        return r.streamed is not None and r.streamed(request)

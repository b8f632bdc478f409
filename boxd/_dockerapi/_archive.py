"""Archive: what ``docker cp`` asks (``HEAD``, ``GET`` and ``PUT
/containers/{id}/archive?path=``), done by the daemon's own ``cp`` (:mod:`boxd._copyserver`).

``HEAD`` answers Docker's stat of the path in the ``X-Docker-Container-Path-Stat`` header
(base64 of ``{"name", "size", "mode", "mtime", "linkTarget"}``, ``mode`` in Go's
``os.FileMode`` bits); ``GET`` the same header and the tar; ``PUT`` extracts the tar body
into the directory ``path`` (``noOverwriteDirNonDir``, ``copyUIDGID``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from .._copymessages import NoSuchPath, PathStat
from .._copyserver import Copier
from ._api import Api
from ._http import ApiError, HttpConnection, Request
from ._router import CONTAINER, route

STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits.
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHAR = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(mode: int) -> int:
    """An st_mode as Go's os.FileMode (what the docker CLI tests: dir, symlink, ...)."""
    go = mode & 0o777
    kind = stat.S_IFMT(mode)
    go |= {
        stat.S_IFDIR: _GO_DIR,
        stat.S_IFLNK: _GO_SYMLINK,
        stat.S_IFIFO: _GO_PIPE,
        stat.S_IFSOCK: _GO_SOCKET,
        stat.S_IFCHR: _GO_DEVICE | _GO_CHAR,
        stat.S_IFBLK: _GO_DEVICE,
    }.get(kind, 0)
    for bit, go_bit in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID),
                        (stat.S_ISVTX, _GO_STICKY)):  # fmt: skip
        if mode & bit:
            go |= go_bit
    return go


def stat_header(st: PathStat) -> dict[str, str]:
    mtime = datetime.datetime.fromtimestamp(st.mtime, datetime.UTC)
    value = {
        "name": st.name,
        "size": st.size,
        "mode": go_mode(st.mode),
        "mtime": mtime.isoformat().replace("+00:00", "Z"),
        "linkTarget": st.link_target,
    }
    return {STAT_HEADER: base64.b64encode(json.dumps(value).encode()).decode()}


def _path(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise ApiError(400, "bad parameter: path cannot be empty")
    if "\0" in path:  # no file has one: Python's own words would not name the path
        raise ApiError(400, f"invalid path {path!r}: contains a NUL byte")
    return path


@asynccontextmanager
async def _not_found_is_404() -> AsyncIterator[None]:
    try:
        yield
    except NoSuchPath as exc:
        raise ApiError(404, str(exc)) from None


async def head(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    async with _not_found_is_404():
        st = await Copier(api.sup).stat(ref, _path(req))
    await conn.respond(200, content_type=None, headers=stat_header(st))


async def get(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    async with _not_found_is_404(), Copier(api.sup).archive(ref, _path(req)) as (st, chunks):
        await conn.start_stream("application/x-tar", stat_header(st))
        async for chunk in chunks:
            await conn.send(chunk)
    await conn.end()


async def put(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    path = _path(req)
    no_overwrite = req.flag("noOverwriteDirNonDir")
    copy_ids = req.flag("copyUIDGID")
    copier = Copier(api.sup)
    fd, tmp = copier.temp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            async for part in conn.body_chunks():
                await trio.to_thread.run_sync(out.write, part)
        async with _not_found_is_404():
            await copier.extract(
                ref, path, tmp, no_overwrite_dir_non_dir=no_overwrite, copy_uid_gid=copy_ids
            )
    finally:
        tmp.unlink(missing_ok=True)
    await conn.respond(200, content_type=None)


ROUTES = [
    route("HEAD", CONTAINER + r"/archive", head),
    route("GET", CONTAINER + r"/archive", get),
    route("PUT", CONTAINER + r"/archive", put, streamed=lambda req: True),
]

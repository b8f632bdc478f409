"""``POST /build``: Docker's classic builder.  The body is the context tar; the answer is
Docker's JSON stream (``{"stream": ...}`` lines, ``{"aux": {"ID": ...}}`` for the image,
a failure as its last line with ``errorDetail``), as the docker CLI's legacy builder,
docker-py and testcontainers read it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from .. import _fixedmodes
from .._build.dockerfile import DockerfileError
from .._build.messages import BuildOutputFrame, BuildRequest, BuiltFrame, StageBuiltFrame
from .._build.runner import BuildError
from .._build.verbs import build as build_verb
from .._records import Resources, Ulimit
from ._api import Api, Streamed, api_error, unwrap
from ._http import ApiError, HttpConnection, Request
from ._router import route


class _Answers(Streamed):
    quiet = False

    async def send(self, message: object) -> None:
        if isinstance(message, BuildOutputFrame):
            await self.line({"stream": message.stream})
        elif isinstance(message, StageBuiltFrame):  # each earlier stage's, as Docker's
            await self.line({"aux": {"ID": message.id}})
        elif isinstance(message, BuiltFrame):
            await self.line({"aux": {"ID": message.id}})
            if self.quiet:  # all the CLI's -q prints: what it is sent as stream
                await self.line({"stream": message.id + "\n"})
        else:
            await super().send(message)


def _json_arg(req: Request, name: str) -> Any:
    """The query parameter ``name`` read as JSON; None when it is absent, empty or null
    (Go's client marshals a nil map or slice so: ImageBuild without BuildArgs)."""
    text = req.arg(name)
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError(400, f"invalid {name}: not JSON: {text!r}") from None


def _json_map(req: Request, name: str) -> dict[str, str]:
    value = _json_arg(req, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"invalid {name}: expected an object: {req.arg(name)!r}")
    # A build arg of null takes its value from the client's environment in the CLI;
    # the daemon has none to give, so it is left unset.
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _nulls(req: Request, name: str) -> tuple[str, ...]:
    """The keys given null in the JSON object ``name`` (checked by :func:`_json_map`)."""
    value = _json_arg(req, name)
    return tuple([str(k) for k, v in value.items() if v is None]) if isinstance(value, dict) else ()


def _json_list(req: Request, name: str) -> tuple[str, ...]:
    """A JSON list of strings (``cachefrom=["app:latest"]``, as the CLI and docker-py
    send it)."""
    value = _json_arg(req, name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"invalid {name}: expected a list of strings: {req.arg(name)!r}")
    return tuple(value)


def _ulimits(req: Request) -> tuple[Ulimit, ...]:
    """``ulimits``: the docker CLI's JSON list of ``{"Name", "Soft", "Hard"}``."""
    value = _json_arg(req, "ulimits")
    if value is None:
        return ()
    limits = []
    for item in value if isinstance(value, list) else [value]:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("Name"), str)
            and all(type(item.get(k, 0)) is int for k in ("Soft", "Hard"))
        ):
            raise ApiError(
                400,
                'invalid ulimits: expected a list of {"Name", "Soft", "Hard"}: '
                f"{req.arg('ulimits')!r}",
            )
        limits.append(Ulimit(item["Name"], item.get("Soft", 0), item.get("Hard", 0)))
    return tuple(limits)


def _run_limits(req: Request) -> Resources:
    """The classic builder's limits of each RUN step's container (``docker build
    --memory`` ...); 0 is Docker's "not set".  What Docker's daemon refuses on Linux is
    refused in its words: security options (Windows' credential specs there) and an
    isolation other than ``default``."""
    if req.query.get("securityopt"):
        raise ApiError(400, "security options are not supported on linux")
    try:
        _fixedmodes.check("isolation", req.arg("isolation") or "")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if req.flag("squash"):
        raise ApiError(400, "build --squash is not supported by boxd")
    return Resources(
        memory=req.integer("memory") or None,
        memory_swap=req.integer("memswap") or None,
        cpu_shares=req.integer("cpushares") or None,
        cpuset_cpus=req.arg("cpusetcpus") or None,
        cpuset_mems=req.arg("cpusetmems") or None,
        cpu_period=req.integer("cpuperiod") or None,
        cpu_quota=req.integer("cpuquota") or None,
    )


async def build(api: Api, conn: HttpConnection, req: Request) -> None:
    if req.arg("remote"):
        raise ApiError(
            400, f"a remote context ({req.arg('remote')}) is not supported: send the context"
        )
    pull = (req.arg("pull") or "").lower() not in ("", "0", "false")
    request = BuildRequest(
        tags=tuple(req.query.get("t", [])),
        dockerfile=req.arg("dockerfile") or "",
        build_args=_json_map(req, "buildargs"),
        unset_args=_nulls(req, "buildargs"),
        target=req.arg("target") or "",
        labels=_json_map(req, "labels"),
        no_cache=req.flag("nocache"),
        pull=pull,
        rm=req.flag("rm", True),
        force_rm=req.flag("forcerm"),
        quiet=req.flag("q"),
        platform=req.arg("platform") or "",
        network=req.arg("networkmode") or "",
        # NAME:IP, repeated (docker-py) or comma-separated (the docker CLI).
        extra_hosts=tuple([h for v in req.query.get("extrahosts", []) for h in v.split(",") if h]),
        resources=_run_limits(req),
        shm_size=req.integer("shmsize") or None,
        ulimits=_ulimits(req),
        cgroup_parent=req.arg("cgroupparent") or "",
        cache_from=_json_list(req, "cachefrom"),
    )
    # The context is read whole first: then a client that hangs up (Ctrl-C) is seen at
    # once and cancels the build, as Docker cancels it.
    fd, path = api.sup.images.temp_file()
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in conn.body_chunks():
                await trio.to_thread.run_sync(f.write, chunk)
        # The head waits for the first output, as dockerd's: a context or Dockerfile it
        # refuses is then the response's status (400), not a line of a 200.
        answers = _Answers(conn, _chunks(path), head_at_first_output=True)
        answers.quiet = request.quiet
        await _run(api, conn, answers, request)
    finally:
        path.unlink(missing_ok=True)
    await conn.end()


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(1 << 20):
            yield chunk


async def _run(api: Api, conn: HttpConnection, answers: _Answers, request: BuildRequest) -> None:
    try:
        async with conn.cancelled_if_peer_closes():
            await build_verb(api.sup, answers, request)
    except Exception as exc:
        found = unwrap(exc)
        message: str | None = None
        if isinstance(found, BuildError | DockerfileError):
            message = str(found)
        else:
            error = api_error(found)
            if error is None:
                raise
            message = error.message
            if not answers.started:
                raise error from None
        if not answers.started:
            raise ApiError(400, message) from None
        detail: dict[str, Any] = {"message": message}
        if "returned a non-zero code: " in message:
            detail["code"] = int(message.rpartition(": ")[2])
        await answers.line({"errorDetail": detail, "error": message})


ROUTES = [route("POST", r"/build", build, streamed=lambda req: True)]

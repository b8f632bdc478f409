"""The Engine API's routes: each maps a Docker request onto the supervisor's methods.

This front end translates and holds no policy: what a container may do, when it starts,
stops, restarts or is removed is the supervisor's business, as it is for the native socket
(:mod:`boxd._server`).  What it keeps itself is what only the API has: exec instances
(created, then started by id, then inspected for their exit code).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import shlex
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from .. import __version__, _lifecycle, _logs, _netserver, _plan, protocol
from .._convert import ConversionError
from .._events import Event
from .._idle import WaitingConnections
from .._images.messages import (
    CommitRequest,
    ExportRequest,
    HistoryRequest,
    ImageInspectRequest,
    ImagesRequest,
    ImagesResponse,
    ImportRequest,
    LoadedFrame,
    LoadRequest,
    PruneImagesRequest,
    PulledFrame,
    PullProgressFrame,
    PullRequest,
    RemoveImageRequest,
    SaveRequest,
    TagRequest,
)
from .._images.reference import parse_reference
from .._images.registry import RegistryError
from .._images.store import NoSuchImage
from .._images.unpack import LayerError
from .._images.verbs import ImageInUse, ImageVerbs
from .._messages import EndFrame, OkResponse
from .._netserver import (
    NetworkCreateRequest,
    NetworkInfo,
    NetworkInspectRequest,
    NetworkListRequest,
    NetworkListResponse,
    NetworkPruneRequest,
    NetworkRemoveRequest,
)
from .._network import NetworkConflict, NetworkError
from .._output import Output
from .._records import Container, Status
from .._run import Run
from .._server import bind_socket, peer_credentials
from .._supervisor import Conflict, NoSuchContainer, StartError, Supervisor
from . import _shapes
from ._http import (
    API_VERSION,
    MIN_API_VERSION,
    RAW_STREAM,
    ApiError,
    HttpConnection,
    PeerGone,
    Request,
)
from ._shapes import Fields

log = logging.getLogger("boxd.dockerapi")

FIRST_REQUEST_TIMEOUT = 5.0  # a client sends its request as soon as it has connected
IDLE_TIMEOUT = 30.0  # a kept-alive connection with no next request is closed
MAX_WAITING = 128  # connections waiting for a request (see boxd._idle)
STATS_INTERVAL = 1.0
READ_SIZE = 65536
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
_HEADER = struct.Struct(">BxxxL")

Handler = Callable[..., Awaitable[None]]


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _api_error(exc: BaseException) -> ApiError | None:
    """Docker's status for an expected failure; None for a bug."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NoSuchContainer | NoSuchImage):
        text = str(exc)
        return ApiError(404, text[:1].upper() + text[1:])
    if isinstance(exc, NetworkError) and str(exc).startswith("no such network"):
        return ApiError(404, str(exc)[:1].upper() + str(exc)[1:])
    if isinstance(exc, Conflict | ImageInUse | NetworkConflict):
        return ApiError(409, str(exc))
    if isinstance(exc, RegistryError | LayerError):
        return ApiError(500, str(exc))
    if isinstance(exc, StartError):
        # The docker CLI picks its exit code from these words: 127 and 126.
        if exc.exit_code == 127:
            return ApiError(400, f"{exc}: executable file not found")
        if exc.exit_code == 126:
            return ApiError(400, f"{exc}: permission denied")
        return ApiError(500, str(exc))
    if isinstance(exc, ConversionError | ValueError):
        return ApiError(400, str(exc))
    if isinstance(exc, OSError):
        return ApiError(500, str(exc))
    return None


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


def _streamed(request: Request) -> bool:
    """Requests whose body the handler reads as it comes: image archives."""
    if request.method != "POST":
        return False
    return request.path == "/images/load" or (
        request.path == "/images/create" and request.arg("fromSrc") == "-"
    )


def frame(stream_id: int, data: bytes, *, tty: bool) -> bytes:
    """Docker's stream framing: raw for a TTY, else an 8-byte header (stream, size)."""
    return data if tty else _HEADER.pack(stream_id, len(data)) + data


@attrs.define(eq=False)
class _Exec:
    """An exec instance: created by one request, started by another, inspected after."""

    id: str
    container: str
    command: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    tty: bool
    stdin: bool
    stdout: bool
    stderr: bool
    started: bool = False
    run: Run | None = None
    exit_code: int | None = None
    size: tuple[int, int] | None = None  # a resize that came before the process ran

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.exited.is_set()


def _stats_shape(
    c: Container, sample: tuple[float, Any, int] | None, previous: tuple[float, Any, int] | None
) -> dict[str, Any]:
    def cpu(s: tuple[float, Any, int] | None) -> dict[str, Any]:
        if s is None or s[1] is None:
            return {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
        stats = s[1]
        return {
            "cpu_usage": {
                "total_usage": stats.cpu_total_ns,
                "usage_in_kernelmode": stats.cpu_system_ns,
                "usage_in_usermode": stats.cpu_user_ns,
            },
            "system_cpu_usage": s[2],
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }

    stats = sample[1] if sample else None
    return {
        "read": _shapes.rfc3339(sample[0]) if sample else _shapes.ZERO_TIME,
        "preread": _shapes.rfc3339(previous[0]) if previous else _shapes.ZERO_TIME,
        "pids_stats": {"current": stats.pids} if stats else {},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 0, "minor": 0, "op": "read", "value": stats.io_read_bytes},
                {"major": 0, "minor": 0, "op": "write", "value": stats.io_write_bytes},
            ]
            if stats
            else None
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(sample),
        "precpu_stats": cpu(previous),
        "memory_stats": {
            "usage": stats.memory_usage,
            "limit": stats.memory_limit or _mem_total(),
            "stats": {},
        }
        if stats
        else {},
        "name": "/" + c.name,
        "id": c.id,
        "networks": {},
    }


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return sum(int(x) for x in fields[:8]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class DockerApi:
    def __init__(self, sup: Supervisor, nursery: trio.Nursery) -> None:
        self.sup = sup
        self._nursery = nursery  # detached execs run here
        self._execs: dict[str, _Exec] = {}
        self._waiting = WaitingConnections(MAX_WAITING)
        self._verbs = ImageVerbs(sup)
        self._net_verbs = _netserver.handlers(sup)
        c = r"/containers/([^/]+)"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/_ping", self._ping),
            ("HEAD", r"/_ping", self._ping),
            ("GET", r"/version", self._version),
            ("GET", r"/info", self._info),
            ("GET", r"/events", self._events),
            ("GET", r"/system/df", self._df),
            ("POST", r"/containers/create", self._create),
            ("GET", r"/containers/json", self._list),
            ("POST", r"/containers/prune", self._prune),
            ("GET", c + r"/json", self._inspect),
            ("POST", c + r"/start", self._start),
            ("POST", c + r"/stop", self._stop),
            ("POST", c + r"/restart", self._restart),
            ("POST", c + r"/kill", self._kill),
            ("POST", c + r"/wait", self._wait),
            ("DELETE", c, self._remove),
            ("GET", c + r"/logs", self._logs),
            ("POST", c + r"/attach", self._attach),
            ("POST", c + r"/resize", self._resize),
            ("POST", c + r"/update", self._update),
            ("GET", c + r"/stats", self._stats),
            ("GET", c + r"/top", self._top),
            ("POST", c + r"/rename", self._rename),
            ("GET", c + r"/changes", self._changes),
            ("GET", c + r"/export", self._export),
            ("POST", c + r"/exec", self._exec_create),
            ("POST", r"/exec/([^/]+)/start", self._exec_start),
            ("POST", r"/exec/([^/]+)/resize", self._exec_resize),
            ("GET", r"/exec/([^/]+)/json", self._exec_inspect),
            ("GET", r"/images/json", self._images),
            ("POST", r"/images/create", self._image_create),
            ("GET", r"/images/get", self._image_save),
            ("POST", r"/images/load", self._image_load),
            ("POST", r"/images/prune", self._image_prune),
            ("POST", r"/commit", self._commit),
            ("GET", r"/images/(.+)/json", self._image_inspect),
            ("GET", r"/images/(.+)/history", self._image_history),
            ("GET", r"/images/(.+)/get", self._image_save),
            ("POST", r"/images/(.+)/tag", self._image_tag),
            ("DELETE", r"/images/(.+)", self._image_remove),
            ("POST", c + r"/pause", self._pause),
            ("GET", r"/networks", self._networks),
            ("POST", r"/networks/create", self._network_create),
            ("POST", r"/networks/prune", self._network_prune),
            ("GET", r"/networks/([^/]+)", self._network_inspect),
            ("DELETE", r"/networks/([^/]+)", self._network_remove),
            ("POST", r"/networks/([^/]+)/connect", self._network_connect),
            ("POST", r"/networks/([^/]+)/disconnect", self._network_connect),
            ("POST", c + r"/unpause", self._unpause),
        ]
        self._routes = [(m, re.compile(p + r"\Z"), h) for m, p, h in routes]

    # ---- connections ----------------------------------------------------------------

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
                    request = await conn.next_request(_streamed)
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
                error = _api_error(_unwrap(exc))
                if error is None:
                    raise
                if not conn.can_respond:
                    return  # in the middle of a stream: ending it is all that is left
                await conn.error(error)
            if conn.hijacked or not conn.keep_alive:
                return

    async def _dispatch(self, conn: HttpConnection, request: Request) -> None:
        _check_version(request.version)
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if method == request.method:
                await handler(conn, request, *match.groups())
                return
        if allowed:
            raise ApiError(405, f"method {request.method} not allowed for {request.path}")
        raise ApiError(404, f"page not found: {request.method} {request.path}")

    # ---- system ---------------------------------------------------------------------

    async def _ping(self, conn: HttpConnection, req: Request) -> None:
        await conn.respond(
            200,
            b"OK",
            content_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"},
        )

    async def _version(self, conn: HttpConnection, req: Request) -> None:
        details = {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
            "Arch": _arch(),
            "KernelVersion": platform.release(),
        }
        await conn.respond_json(
            200,
            {
                "Platform": {"Name": "boxd"},
                "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
                "Version": __version__,
                "GitCommit": "",
                "GoVersion": "",
                "BuildTime": "",
                **details,
            },
        )

    async def _info(self, conn: HttpConnection, req: Request) -> None:
        containers = self.sup.list(all=True)
        running = sum(1 for c in containers if _shapes.status_word(c) == "running")
        mode = self.sup.cgroups.mode
        await conn.respond_json(
            200,
            {
                "ID": "",
                "Name": platform.node(),
                "Containers": len(containers),
                "ContainersRunning": running,
                "ContainersPaused": 0,
                "ContainersStopped": len(containers) - running,
                "Images": 1,
                "Driver": "overlay2",
                "DockerRootDir": str(self.sup.store.root),
                "ServerVersion": __version__,
                "OperatingSystem": "boxd",
                "OSType": "linux",
                "Architecture": platform.machine(),
                "KernelVersion": platform.release(),
                "NCPU": os.cpu_count() or 1,
                "MemTotal": _mem_total(),
                "CgroupDriver": "cgroupfs",
                "CgroupVersion": "2" if mode == "v2" else "1",
                "LoggingDriver": "json-file",
                "DefaultRuntime": "boxd",
                "Runtimes": {"boxd": {"path": "boxd"}},
                "SecurityOptions": ["name=seccomp,profile=builtin"],
                "Plugins": {"Volume": [], "Network": ["host", "none"], "Log": ["json-file"]},
                "Swarm": {"LocalNodeState": "inactive"},
                "Warnings": None,
            },
        )

    async def _events(self, conn: HttpConnection, req: Request) -> None:
        """Kept events from ``since``, then new ones until ``until`` (or the client goes)."""
        since = req.number("since")
        until = req.number("until")
        keep = _shapes.event_filter(_shapes.parse_filters(req.arg("filters")))
        history, channel = self.sup.events.subscribe()

        def wanted(e: Event) -> bool:
            return (until is None or e.time_ns <= until * 1e9) and keep(e)

        await conn.start_stream()
        with channel:
            async with conn.cancelled_if_peer_closes():
                for e in history:
                    if since is not None and e.time_ns >= since * 1e9 and wanted(e):
                        await conn.send(json.dumps(_shapes.event(e)).encode() + b"\n")
                deadline = math.inf
                if until is not None:
                    deadline = trio.current_time() + until - time.time()
                with trio.move_on_at(deadline):
                    async for e in channel:
                        if wanted(e):
                            await conn.send(json.dumps(_shapes.event(e)).encode() + b"\n")
        await conn.end()

    # ---- containers -----------------------------------------------------------------

    async def _create(self, conn: HttpConnection, req: Request, *_: str) -> None:
        config = _shapes.container_config(req.json_object())
        c = await self.sup.create(config, (req.arg("name") or "").lstrip("/"))
        await conn.respond_json(201, {"Id": c.id, "Warnings": []})

    async def _list(self, conn: HttpConnection, req: Request) -> None:
        limit = req.integer("limit") or 0
        filters = _shapes.parse_filters(req.arg("filters"))
        found = _shapes.select_containers(self.sup.list, filters, all=req.flag("all"), limit=limit)
        now = time.time()
        await conn.respond_json(200, [_shapes.summary(c, now) for c in found])

    async def _prune(self, conn: HttpConnection, req: Request) -> None:
        if any(_shapes.parse_filters(req.arg("filters")).values()):
            raise ApiError(400, "filters for container prune are not supported by boxd")
        deleted, reclaimed = await self.sup.prune()
        await conn.respond_json(200, {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})

    async def _rename(self, conn: HttpConnection, req: Request, ref: str) -> None:
        name = (req.arg("name") or "").lstrip("/")
        if not name:
            raise ApiError(400, "no new name given (name)")
        await self.sup.rename(ref, name)
        await conn.respond(204, content_type=None)

    async def _changes(self, conn: HttpConnection, req: Request, ref: str) -> None:
        kinds = {"C": 0, "A": 1, "D": 2}
        changes = await self.sup.diff(ref)
        await conn.respond_json(
            200, [{"Path": ch.path, "Kind": kinds[ch.kind]} for ch in changes] or None
        )

    async def _inspect(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        ids = [e.id for e in self._execs.values() if e.container == c.id]
        await conn.respond_json(200, _shapes.inspect(c, ids))

    async def _start(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        if self.sup.run_of(c.id) is not None:
            await conn.respond(304, content_type=None)
            return
        await self.sup.start(c.id)  # an auto_remove one that cannot start is removed
        await conn.respond(204, content_type=None)

    async def _stop(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        if self.sup.run_of(c.id) is None:
            await conn.respond(304, content_type=None)
            return
        await self.sup.stop(c.id, req.number("t"))
        await conn.respond(204, content_type=None)

    async def _pause(self, conn: HttpConnection, req: Request, ref: str) -> None:
        await self.sup.pause(ref)
        await conn.respond(204, content_type=None)

    async def _unpause(self, conn: HttpConnection, req: Request, ref: str) -> None:
        await self.sup.unpause(ref)
        await conn.respond(204, content_type=None)

    async def _restart(self, conn: HttpConnection, req: Request, ref: str) -> None:
        await self.sup.restart(ref, req.number("t"))
        await conn.respond(204, content_type=None)

    async def _kill(self, conn: HttpConnection, req: Request, ref: str) -> None:
        await self.sup.kill(ref, req.arg("signal") or "SIGKILL")
        await conn.respond(204, content_type=None)

    async def _remove(self, conn: HttpConnection, req: Request, ref: str) -> None:
        if req.flag("link"):
            raise ApiError(400, "links are not supported by boxd")
        c = self.sup.inspect(ref)
        await self.sup.remove(c.id, force=req.flag("force"))
        for exec_id in [e.id for e in self._execs.values() if e.container == c.id]:
            del self._execs[exec_id]
        await conn.respond(204, content_type=None)

    async def _wait(self, conn: HttpConnection, req: Request, ref: str) -> None:
        """Headers at once (``docker run`` waits for them before it starts the container),
        the exit code when the condition is met."""
        condition = req.arg("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise ApiError(
                400, f"invalid condition {condition!r}: use not-running, next-exit or removed"
            )
        c = self.sup.inspect(ref)
        await conn.start_stream()
        code = c.state.exit_code or 0
        async with conn.cancelled_if_peer_closes():
            code = await self._wait_for(c, condition)
        await conn.send(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
        await conn.end()

    async def _wait_for(self, c: Container, condition: str) -> int:
        st = c.state
        if condition == "not-running":
            if st.status not in _lifecycle.LIVE:
                return st.exit_code or 0
            return await self.sup.wait(c.id)
        # What tells that a run ended since the request came: its process seen and gone,
        # or a start that failed (a new end, code or error with no process).
        before = (st.finished_at, st.exit_code, st.error)
        seen = False
        while True:
            try:
                c = self.sup.inspect(c.id)
            except NoSuchContainer:
                return st.exit_code or 0
            st = c.state
            with_process = st.status in _lifecycle.WITH_PROCESS
            seen = seen or with_process
            changed = (st.finished_at, st.exit_code, st.error) != before
            ended = (seen or changed) and not with_process and st.status is not Status.STARTING
            if condition == "next-exit" and ended:
                return st.exit_code or 0
            await self.sup.wait_changed()

    async def _resize(self, conn: HttpConnection, req: Request, ref: str) -> None:
        run = self.sup.run_of(ref)
        if run is None:
            raise Conflict(f"container {ref} is not running")
        run.resize(*self._size(req))
        await conn.respond(200, content_type=None)

    def _size(self, req: Request) -> tuple[int, int]:
        rows, cols = req.integer("h"), req.integer("w")
        if rows is None or cols is None or not (0 < rows < 65536 and 0 < cols < 65536):
            raise ApiError(
                400, f"invalid terminal size h={rows} w={cols}: give h and w in 1..65535"
            )
        return rows, cols

    async def _update(self, conn: HttpConnection, req: Request, ref: str) -> None:
        body = Fields(req.json_object(), "body")
        if body.object("RestartPolicy").text("Name"):  # the CLI sends an empty one
            raise ApiError(400, "changing the restart policy is not supported by boxd")
        c = self.sup.inspect(ref)
        given = _shapes.resources(body)
        changes = {k: v for k, v in attrs.asdict(given, recurse=False).items() if v is not None}
        await self.sup.update(c.id, attrs.evolve(c.config.resources, **changes))
        await conn.respond_json(200, {"Warnings": []})

    # ---- logs, attach -----------------------------------------------------------------

    async def _logs(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        streams = {n for n in ("stdout", "stderr") if req.flag(n)}
        if not streams:
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        tail_text = req.arg("tail") or "all"
        tail: int | None = None
        if tail_text != "all":
            try:
                tail = int(tail_text)
            except ValueError:
                raise ApiError(400, f"invalid tail {tail_text!r}: a number or all") from None
            tail = None if tail < 0 else tail
        since = req.number("since") or None
        until = req.number("until") or None
        follow = req.flag("follow")
        directory = self.sup.log_dir(c.id)
        formatter = _logs.OutputFormatter(timestamps=req.flag("timestamps"))
        tty = c.config.tty

        def encode(entries: list[_logs.LogEntry]) -> bytes:
            out = bytearray()
            for e in entries:
                if e.stream in streams and (until is None or e.time <= until):
                    sid = protocol.STDOUT if e.stream == "stdout" else protocol.STDERR
                    out += frame(sid, formatter.format(e), tty=tty)
            return bytes(out)

        await conn.start_stream(RAW_STREAM if tty else MULTIPLEXED)
        if not follow:
            entries = await trio.to_thread.run_sync(
                functools.partial(_logs.read_entries, directory, since=since, tail=tail)
            )
            data = encode(entries)
            for start in range(0, len(data), READ_SIZE):
                await conn.send(data[start : start + READ_SIZE])
            await conn.end()
            return

        def ended() -> bool:
            try:
                return self.sup.run_of(c.id) is None
            except NoSuchContainer:
                return True

        async with conn.cancelled_if_peer_closes():
            async for entry in _logs.follow(directory, since=since, tail=tail, until_closed=ended):
                await conn.send(encode([entry]))
        await conn.end()

    async def _attach(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        wanted = {
            sid
            for sid, name in ((protocol.STDOUT, "stdout"), (protocol.STDERR, "stderr"))
            if req.flag(name)
        }
        # Attached before start (docker run): every byte from the first, and the container's
        # stdin closes when the client's input ends (Docker's StdinOnce).
        before_start = self.sup.run_of(c.id) is None
        channel = self.sup.subscribe(c.id, lossless=before_start) if req.flag("stream") else None
        try:
            leftover = await conn.hijack(req.upgrade)
        except BaseException:
            if channel is not None:
                channel.close()
            raise
        tty = c.config.tty
        sock = conn.stream
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            if req.flag("logs"):
                entries = await trio.to_thread.run_sync(_logs.read_entries, self.sup.log_dir(c.id))
                formatter = _logs.OutputFormatter()
                for e in entries:
                    sid = protocol.STDOUT if e.stream == "stdout" else protocol.STDERR
                    if sid in wanted:
                        await sock.send_all(frame(sid, formatter.format(e), tty=tty))
            if channel is None:
                return
            async with trio.open_nursery() as nursery:
                if req.flag("stdin") and c.config.interactive:
                    nursery.start_soon(
                        self._forward_stdin,
                        sock,
                        leftover,
                        functools.partial(self._started, c.id),
                        before_start,
                    )
                nursery.start_soon(self._until_removed, c.id, nursery.cancel_scope)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async with channel:
                        async for sid, data in channel:
                            if sid in wanted:
                                await sock.send_all(frame(sid, data, tty=tty))
                nursery.cancel_scope.cancel(reason="the container's output ended")

    async def _started(self, cid: str) -> Run | None:
        """The container's run once it runs; None if it goes away first."""
        while True:
            try:
                run = self.sup.run_of(cid)
            except NoSuchContainer:
                return None
            if run is not None:
                return run
            await self.sup.wait_changed()

    async def _until_removed(self, cid: str, scope: trio.CancelScope) -> None:
        while True:
            try:
                self.sup.inspect(cid)
            except NoSuchContainer:
                scope.cancel(reason="the container was removed")
                return
            await self.sup.wait_changed()

    async def _forward_stdin(
        self,
        sock: trio.abc.Stream,
        leftover: bytes,
        run_of: Callable[[], Awaitable[Run | None]],
        close_at_end: bool,
    ) -> None:
        run = await run_of()
        if run is None:
            return
        if leftover:
            await run.write_stdin(leftover)
        while True:
            try:
                data = await sock.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not data:
                break
            await run.write_stdin(bytes(data))
        if close_at_end:
            await run.write_stdin(b"")

    # ---- exec -------------------------------------------------------------------------

    async def _exec_create(self, conn: HttpConnection, req: Request, ref: str) -> None:
        body = Fields(req.json_object(), "body")
        c = self.sup.inspect(ref)
        if self.sup.run_of(c.id) is None:
            raise Conflict(f"container {c.id[:12]} is not running")
        command = body.command("Cmd")
        if not command:
            raise ApiError(400, "no exec command specified")
        if body.flag("Privileged"):
            raise ApiError(400, "privileged exec is not supported by boxd")
        spec = _plan.ExecSpec(
            command=tuple(command),
            env=tuple(body.strings("Env")),
            workdir=body.text("WorkingDir"),
            user=body.text("User"),
            tty=body.flag("Tty"),
        )
        _plan.check_exec(spec)
        ex = _Exec(
            id=os.urandom(32).hex(),
            container=c.id,
            command=spec.command,
            env=spec.env,
            workdir=spec.workdir,
            user=spec.user,
            tty=spec.tty,
            stdin=body.flag("AttachStdin"),
            stdout=body.flag("AttachStdout"),
            stderr=body.flag("AttachStderr"),
        )
        for stale in [e for e in self._execs.values() if not self._exists(e.container)]:
            del self._execs[stale.id]  # their containers were removed by another client
        self._execs[ex.id] = ex
        await conn.respond_json(201, {"Id": ex.id})

    def _exists(self, cid: str) -> bool:
        try:
            self.sup.inspect(cid)
        except NoSuchContainer:
            return False
        return True

    def _exec_of(self, exec_id: str) -> _Exec:
        ex = self._execs.get(exec_id)
        if ex is None:
            raise ApiError(404, f"No such exec instance: {exec_id}")
        return ex

    async def _exec_start(self, conn: HttpConnection, req: Request, exec_id: str) -> None:
        ex = self._exec_of(exec_id)
        body = Fields(req.json_object(), "body")
        if ex.started:
            raise ApiError(409, f"exec instance {exec_id} has already been started")
        if self.sup.run_of(ex.container) is None:
            raise Conflict(f"container {ex.container[:12]} is not running")
        ex.started = True
        output = Output()
        if body.flag("Detach"):
            await self._nursery.start(self._run_exec, ex, output)
            await conn.respond(200, content_type=None)
            return
        channel = output.subscribe(lossless=True)
        leftover = await conn.hijack(req.upgrade)
        sock = conn.stream
        wanted = {
            sid for sid, on in ((protocol.STDOUT, ex.stdout), (protocol.STDERR, ex.stderr)) if on
        }
        # The outer nursery holds the process to its end (and its exit code recorded, for
        # the inspect that follows); the inner one, the streams of this connection.
        async with trio.open_nursery() as nursery:
            try:
                run: Run = await nursery.start(self._run_exec, ex, output)
            except Exception as exc:
                error = _api_error(_unwrap(exc))
                if error is None:
                    raise
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    message = (error.message + "\r\n").encode()
                    await sock.send_all(frame(protocol.STDOUT, message, tty=ex.tty))
                return
            async with trio.open_nursery() as streams:
                if ex.stdin:
                    streams.start_soon(
                        self._forward_stdin, sock, leftover, functools.partial(_ready, run), True
                    )
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    async with channel:
                        async for sid, data in channel:
                            if sid in wanted:
                                await sock.send_all(frame(sid, data, tty=ex.tty))
                await run.exited.wait()
                streams.cancel_scope.cancel(reason="the exec'd process ended")

    async def _run_exec(
        self, ex: _Exec, output: Output, *, task_status: trio.TaskStatus[Run]
    ) -> None:
        """Run the exec'd process to its end; its Run is reported once it runs.  A failure
        to start is recorded (126 or 127, as Docker reports it) and raised to the starter."""
        try:
            async with trio.open_nursery() as nursery:
                run: Run = await nursery.start(
                    functools.partial(
                        self.sup.exec,
                        ex.container,
                        ex.command,
                        env=ex.env,
                        workdir=ex.workdir,
                        user=ex.user,
                        tty=ex.tty,
                        interactive=ex.stdin,
                        output=output,
                    )
                )
                ex.run = run
                if ex.size is not None:
                    run.resize(*ex.size)
                task_status.started(run)
        except Exception as exc:
            failure = _unwrap(exc)
            ex.exit_code = failure.exit_code if isinstance(failure, StartError) else 126
            if isinstance(failure, Exception):
                raise failure from None
            raise
        assert run.outcome is not None
        ex.exit_code = run.outcome.exit_code

    async def _exec_resize(self, conn: HttpConnection, req: Request, exec_id: str) -> None:
        ex = self._exec_of(exec_id)
        size = self._size(req)
        if ex.exit_code is not None:
            raise Conflict(f"exec instance {exec_id} has ended")
        # The CLI resizes right after it starts the exec, often before the process runs.
        ex.size = size
        if ex.run is not None:
            ex.run.resize(*size)
        await conn.respond(200, content_type=None)

    async def _exec_inspect(self, conn: HttpConnection, req: Request, exec_id: str) -> None:
        ex = self._exec_of(exec_id)
        await conn.respond_json(
            200,
            {
                "ID": ex.id,
                "Running": ex.running,
                "ExitCode": ex.exit_code,
                "ProcessConfig": {
                    "tty": ex.tty,
                    "entrypoint": ex.command[0],
                    "arguments": list(ex.command[1:]),
                    "privileged": False,
                    "user": ex.user,
                },
                "OpenStdin": ex.stdin,
                "OpenStdout": ex.stdout,
                "OpenStderr": ex.stderr,
                "CanRemove": False,
                "ContainerID": ex.container,
                "DetachKeys": "",
                "Pid": ex.run.pid if ex.run is not None else 0,
            },
        )

    # ---- stats ------------------------------------------------------------------------

    async def _stats(self, conn: HttpConnection, req: Request, ref: str) -> None:
        c = self.sup.inspect(ref)
        stream = req.flag("stream", True)
        one_shot = req.flag("one-shot")

        def sample() -> tuple[float, Any, int] | None:
            found = self.sup.sample([c.id])
            return (time.time(), found[0][1], _system_cpu_ns()) if found else None

        await conn.start_stream()
        async with conn.cancelled_if_peer_closes():
            previous = None
            if not stream and not one_shot:  # two samples, so the CPU use is known
                previous = sample()
                await trio.sleep(STATS_INTERVAL)
            while True:
                current = sample()
                await conn.send(json.dumps(_stats_shape(c, current, previous)).encode() + b"\n")
                if not stream:
                    break
                previous = current
                await trio.sleep(STATS_INTERVAL)
        await conn.end()

    # ---- top --------------------------------------------------------------------------

    async def _top(self, conn: HttpConnection, req: Request, ref: str) -> None:
        """The host's ``ps`` (``ps_args``, default ``-ef``), its rows of the container's
        processes (those in its cgroup), as Docker does it."""
        pids = set(self.sup.processes(ref))
        try:
            args = shlex.split(req.arg("ps_args") or "-ef")
        except ValueError as exc:
            raise ApiError(400, f"invalid ps_args: {exc}") from None
        result = await trio.run_process(
            ["ps", *args], capture_stdout=True, capture_stderr=True, check=False
        )
        if result.returncode != 0:
            error = result.stderr.decode(errors="replace").strip().splitlines()
            raise ApiError(400, f"ps {shlex.join(args)} failed: {error[0] if error else '?'}")
        lines = result.stdout.decode(errors="replace").splitlines()
        titles = lines[0].split() if lines else []
        if "PID" not in titles:
            raise ApiError(400, f"ps {shlex.join(args)} shows no PID column")
        column = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
                rows.append(fields)
        await conn.respond_json(200, {"Titles": titles, "Processes": rows})

    # ---- networks: the network verbs of the native socket, in Docker's shape ----------

    def _network_shape(self, info: NetworkInfo) -> dict[str, Any]:
        prefix = info.subnet.partition("/")[2]
        return {
            "Name": info.name,
            "Id": info.id,
            "Created": _shapes.rfc3339(info.created_at),
            "Scope": "local",
            "Driver": info.driver,
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": None,
                "Config": [{"Subnet": info.subnet, "Gateway": info.gateway}],
            },
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {
                m.id: {
                    "Name": m.name,
                    "EndpointID": "",
                    "MacAddress": "",
                    "IPv4Address": f"{m.ip_address}/{prefix}",
                    "IPv6Address": "",
                }
                for m in info.containers
            },
            "Options": {"com.docker.network.bridge.name": info.bridge},
            "Labels": {},
        }

    def _builtin_network(self, name: str) -> dict[str, Any]:
        """``host`` and ``none``: no bridge, no addresses, as Docker lists them."""
        return {
            "Name": name,
            "Id": hashlib.sha256(f"boxd network {name}".encode()).hexdigest(),
            "Created": _shapes.ZERO_TIME,
            "Scope": "local",
            "Driver": "host" if name == "host" else "null",
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": {},
            "Options": {},
            "Labels": {},
        }

    async def _network_verb(self, request: object) -> Any:
        verb = self._net_verbs[type(request)]
        answers = _Answers()
        await verb(answers, request)
        return answers.last

    async def _networks(self, conn: HttpConnection, req: Request) -> None:
        filters = _shapes.parse_filters(req.arg("filters"))
        for key in filters:
            if key not in ("name", "id", "driver", "type"):
                raise ApiError(400, f"invalid filter '{key}'")
        answer: NetworkListResponse = await self._network_verb(NetworkListRequest())
        rows = [self._network_shape(i) for i in answer.networks]
        rows += [self._builtin_network(n) for n in ("host", "none")]
        keep = [r for r in rows if _network_matches(r, filters)]
        await conn.respond_json(200, keep)

    async def _network_inspect(self, conn: HttpConnection, req: Request, ref: str) -> None:
        if ref in ("host", "none"):
            await conn.respond_json(200, self._builtin_network(ref))
            return
        answer = await self._network_verb(NetworkInspectRequest(networks=(ref,)))
        await conn.respond_json(200, self._network_shape(answer.networks[0]))

    async def _network_create(self, conn: HttpConnection, req: Request) -> None:
        body = Fields(req.json_object(), "body")
        name = body.text("Name")
        if not name:
            raise ApiError(400, "no network name given (Name)")
        driver = body.text("Driver")
        if driver not in ("", "bridge"):
            raise ApiError(400, f"network driver {driver!r} is not supported (bridge only)")
        for key in ("Internal", "EnableIPv6", "Ingress", "ConfigOnly"):
            if body.flag(key):
                raise ApiError(400, f"{key} networks are not supported by boxd")
        configs = body.object("IPAM").objects("Config")
        if len(configs) > 1:
            raise ApiError(400, "one IPAM Config (one IPv4 subnet) per network")
        subnet = configs[0].text("Subnet") if configs else ""
        answer = await self._network_verb(NetworkCreateRequest(name=name, subnet=subnet))
        await conn.respond_json(201, {"Id": answer.network.id, "Warning": ""})

    async def _network_remove(self, conn: HttpConnection, req: Request, ref: str) -> None:
        if ref in ("host", "none"):
            raise ApiError(403, f"{ref} is a pre-defined network and cannot be removed")
        await self._network_verb(NetworkRemoveRequest(network=ref))
        await conn.respond(204, content_type=None)

    async def _network_prune(self, conn: HttpConnection, req: Request) -> None:
        if any(_shapes.parse_filters(req.arg("filters")).values()):
            raise ApiError(400, "filters for network prune are not supported by boxd")
        answer = await self._network_verb(NetworkPruneRequest())
        await conn.respond_json(200, {"NetworksDeleted": list(answer.removed) or None})

    async def _network_connect(self, conn: HttpConnection, req: Request, ref: str) -> None:
        raise ApiError(
            400,
            "connecting a container to a network after create is not supported by boxd: "
            "give --network at create",
        )

    # ---- images: the image verbs of the native socket, their answers in Docker's shape ---

    async def _image_verb(
        self, verb: Callable[[Any, Any], Awaitable[None]], request: object
    ) -> Any:
        """Run one of :class:`ImageVerbs`'s verbs; its one answer."""
        answers = _Answers()
        await verb(answers, request)
        return answers.last

    def _default_image(self) -> dict[str, Any]:
        return {
            "Id": _shapes.default_image_id(),
            "RepoTags": ["default:latest"],
            "RepoDigests": [],
            "Created": "1970-01-01T00:00:00Z",
            "Size": 0,
            "Os": "linux",
            "Architecture": _arch(),
            "Config": {"Cmd": None, "Entrypoint": None, "Env": [], "WorkingDir": "/"},
            "RootFS": {"Type": "layers", "Layers": []},
        }

    async def _images(self, conn: HttpConnection, req: Request) -> None:
        filters = _shapes.parse_filters(req.arg("filters"))
        for key in filters:
            if key not in ("reference", "dangling"):
                raise ApiError(400, f"invalid filter '{key}'")
        rows = await self._image_rows()
        if "reference" in filters:
            rows = [r for r in rows if _shapes.any_reference(r["RepoTags"], filters["reference"])]
        if "dangling" in filters:
            dangling = any(v.lower() in ("true", "1") for v in filters["dangling"])
            rows = [r for r in rows if (not r["RepoTags"]) == dangling]
        await conn.respond_json(200, rows)

    async def _df(self, conn: HttpConnection, req: Request) -> None:
        images = await self._image_rows()
        now = time.time()
        containers = [
            {**_shapes.summary(c, now), "SizeRw": 0, "SizeRootFs": 0}
            for c in self.sup.list(all=True)
        ]
        await conn.respond_json(
            200,
            {
                "LayersSize": sum(i["Size"] for i in images),
                "Images": images,
                "Containers": containers,
                "Volumes": [],
                "BuildCache": [],
            },
        )

    async def _image_rows(self) -> list[dict[str, Any]]:
        answer: ImagesResponse = await self._image_verb(self._verbs.images, ImagesRequest())
        rows = [
            {
                "Id": _shapes.default_image_id(),
                "ParentId": "",
                "RepoTags": ["default:latest"],
                "RepoDigests": [],
                "Created": 0,
                "Size": 0,
                "SharedSize": -1,
                "Labels": {},
                "Containers": -1,
            }
        ]
        for image in answer.images:
            rows.append(
                {
                    "Id": image.id,
                    "ParentId": "",
                    "RepoTags": [_shapes.familiar(t) for t in image.repo_tags],
                    "RepoDigests": [_shapes.familiar(d) for d in image.repo_digests],
                    "Created": _unix_time(image.created),
                    "Size": image.size,
                    "SharedSize": -1,
                    "Labels": {},
                    "Containers": image.containers,
                }
            )
        return rows

    async def _image_inspect(self, conn: HttpConnection, req: Request, name: str) -> None:
        if name in _shapes.DEFAULT_IMAGES or name == _shapes.default_image_id():
            await conn.respond_json(200, self._default_image())
            return
        answer = await self._image_verb(self._verbs.inspect, ImageInspectRequest(image=name))
        image: dict[str, Any] = dict(answer.image)
        image["RepoTags"] = [_shapes.familiar(t) for t in image["RepoTags"]]
        image["RepoDigests"] = [_shapes.familiar(d) for d in image["RepoDigests"]]
        await conn.respond_json(200, image)

    async def _image_remove(self, conn: HttpConnection, req: Request, name: str) -> None:
        if name in _shapes.DEFAULT_IMAGES:
            raise ApiError(409, "the image 'default' is built in and cannot be removed")
        request = RemoveImageRequest(image=name, force=req.flag("force"))
        answer = await self._image_verb(self._verbs.remove, request)
        await conn.respond_json(
            200,
            [{"Untagged": _shapes.familiar(t)} for t in answer.untagged]
            + [{"Deleted": d} for d in answer.deleted],
        )

    async def _image_tag(self, conn: HttpConnection, req: Request, name: str) -> None:
        repo = req.arg("repo") or ""
        if not repo:
            raise ApiError(400, "repository name (repo) must be given")
        target = f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo
        await self._image_verb(self._verbs.tag, TagRequest(source=name, target=target))
        await conn.respond(201, content_type=None)

    async def _image_create(self, conn: HttpConnection, req: Request) -> None:
        """A pull (``fromImage``) or an import of a root filesystem tar (``fromSrc=-``)."""
        source = req.arg("fromSrc")
        if source is None:
            await self._image_pull(conn, req)
            return
        if source != "-":
            raise ApiError(400, "importing from a URL is not supported: send the tar as the body")
        repo, tag = req.arg("repo") or "", req.arg("tag") or ""
        ref = f"{repo}:{tag}" if repo and tag else repo
        answers = _Streamed(conn, conn.body_chunks())
        loaded = await self._archive_verb(
            answers, self._verbs.import_, ImportRequest(reference=ref)
        )
        if loaded is not None:
            await answers.line({"status": loaded.images[0].id})
        await conn.end()

    async def _image_load(self, conn: HttpConnection, req: Request) -> None:
        answers = _Streamed(conn, conn.body_chunks())
        loaded = await self._archive_verb(answers, self._verbs.load, LoadRequest())
        for image in loaded.images if loaded is not None else ():
            for tag in image.tags or (None,):
                text = (
                    f"Loaded image: {_shapes.familiar(tag)}"
                    if tag
                    else f"Loaded image ID: {image.id}"
                )
                await answers.line({"stream": text + "\n"})
        await conn.end()

    async def _archive_verb(
        self,
        answers: _Streamed,
        verb: Callable[[Any, Any], Awaitable[None]],
        request: object,
    ) -> LoadedFrame | None:
        """Run load or import: its LoadedFrame, or None once a failure after the stream
        began is its last line (before, the failure is the response)."""
        try:
            await verb(answers, request)
        except Exception as exc:
            error = _api_error(_unwrap(exc))
            if error is None or not answers.started:
                raise
            await answers.line({"errorDetail": {"message": error.message}, "error": error.message})
            return None
        assert isinstance(answers.last, LoadedFrame)
        return answers.last

    async def _image_save(self, conn: HttpConnection, req: Request, name: str = "") -> None:
        names = [name] if name else req.query.get("names", [])
        if not names:
            raise ApiError(400, "no image named (names)")
        for n in names:
            if n in _shapes.DEFAULT_IMAGES:
                raise ApiError(400, "the image 'default' is built in and cannot be saved")
        answers = _Streamed(conn, content_type="application/x-tar")
        await self._verbs.save(answers, SaveRequest(images=tuple(names)))
        await conn.end()

    async def _export(self, conn: HttpConnection, req: Request, ref: str) -> None:
        answers = _Streamed(conn, content_type="application/x-tar")
        await self._verbs.export(answers, ExportRequest(container=ref))
        await conn.end()

    async def _image_history(self, conn: HttpConnection, req: Request, name: str) -> None:
        if name in _shapes.DEFAULT_IMAGES:
            await conn.respond_json(200, [])
            return
        record = self.sup.images.lookup(name)
        answer = await self._image_verb(self._verbs.history, HistoryRequest(image=name))
        rows = []
        for i, h in enumerate(answer.history):
            rows.append(
                {
                    "Id": record.id if i == 0 else "<missing>",
                    "Created": _unix_time(str(h.get("created") or "")),
                    "CreatedBy": str(h.get("created_by") or ""),
                    "Tags": [_shapes.familiar(t) for t in record.repo_tags] if i == 0 else None,
                    "Size": 0,
                    "Comment": str(h.get("comment") or ""),
                }
            )
        await conn.respond_json(200, rows)

    async def _image_prune(self, conn: HttpConnection, req: Request) -> None:
        filters = _shapes.parse_filters(req.arg("filters"))
        for key in filters:
            if key != "dangling":
                raise ApiError(400, f"invalid filter '{key}'")
        dangling = filters.get("dangling", ["true"])
        everything = any(v.lower() in ("false", "0") for v in dangling)
        answer = await self._image_verb(self._verbs.prune, PruneImagesRequest(all=everything))
        deleted = [{"Untagged": _shapes.familiar(t)} for t in answer.untagged]
        deleted += [{"Deleted": d} for d in answer.deleted]
        await conn.respond_json(200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": 0})

    async def _commit(self, conn: HttpConnection, req: Request) -> None:
        container = req.arg("container") or ""
        if not container:
            raise ApiError(400, "no container given (container)")
        repo, tag = req.arg("repo") or "", req.arg("tag") or ""
        ref = f"{repo}:{tag}" if repo and tag else repo
        changes = req.json()  # the CLI sends null or an empty configuration
        if changes is not None and (not isinstance(changes, dict) or any(changes.values())):
            raise ApiError(400, "changing the configuration at commit is not supported by boxd")
        request = CommitRequest(
            container=container, reference=ref, comment=req.arg("comment") or ""
        )
        answer = await self._image_verb(self._verbs.commit, request)
        await conn.respond_json(201, {"Id": answer.id})

    async def _image_pull(self, conn: HttpConnection, req: Request) -> None:
        """Docker's progress stream: one JSON object per line; a failure once the stream
        has begun is its last line (``errorDetail``), as the docker CLI expects."""
        name = req.arg("fromImage") or ""
        if not name:
            raise ApiError(400, "fromImage must be given (importing a tar is not supported)")
        tag = req.arg("tag") or ""
        ref = name if not tag else (f"{name}@{tag}" if ":" in tag else f"{name}:{tag}")
        if ref in ("default", "default:latest"):
            await conn.respond_json(200, {"status": "Image is up to date for default:latest"})
            return
        parse_reference(ref)  # a bad reference is a 400 before the stream starts
        await conn.start_stream()

        async def line(value: dict[str, Any]) -> None:
            await conn.send(json.dumps(value).encode() + b"\r\n")

        async def forward(message: object) -> None:
            if isinstance(message, PullProgressFrame):
                detail = {"current": message.current, "total": message.total}
                await line(
                    {"status": message.status, "progressDetail": detail, "id": message.layer}
                )
            elif isinstance(message, PulledFrame):
                await line({"status": f"Digest: {message.digest}"})
                await line({"status": f"Status: Image is pulled for {message.reference}"})

        await line({"status": f"Pulling from {name}", "id": tag or "latest"})
        try:
            async with conn.cancelled_if_peer_closes():
                await self._verbs.pull(_Answers(forward), PullRequest(reference=ref))
        except Exception as exc:
            error = _api_error(_unwrap(exc))
            if error is None:
                raise
            await line({"errorDetail": {"message": error.message}, "error": error.message})
        await conn.end()


def _network_matches(row: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's network list filters: name (a substring), id (a prefix), driver, type
    (builtin or custom)."""
    builtin = row["Name"] in ("bridge", "host", "none")
    kind = "builtin" if builtin else "custom"
    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: v in row["Name"],
        "id": lambda v: row["Id"].startswith(v),
        "driver": lambda v: v == row["Driver"],
        "type": lambda v: v == kind,
    }
    return all(any(checks[k](v) for v in vs) for k, vs in filters.items() if vs)


class _Answers:
    """What an image verb sends on its connection: kept, and forwarded if asked."""

    def __init__(self, forward: Callable[[object], Awaitable[None]] | None = None) -> None:
        self.last: Any = None
        self._forward = forward

    async def send(self, message: object) -> None:
        self.last = message
        if self._forward is not None:
            await self._forward(message)


class _Streamed(_Answers):
    """An image verb's byte-stream conversation (save, load, import) over HTTP: its
    OkResponse starts the response, its byte frames are the body; the request body is
    its input."""

    def __init__(
        self,
        conn: HttpConnection,
        body: AsyncIterator[bytes] | None = None,
        *,
        content_type: str = "application/json",
    ) -> None:
        super().__init__()
        self.conn = conn
        self.started = False
        self._body = body
        self._content_type = content_type

    async def send(self, message: object) -> None:
        if isinstance(message, OkResponse) and not self.started:
            await self.conn.start_stream(self._content_type)
            self.started = True
        elif not isinstance(message, EndFrame):
            self.last = message

    async def send_bytes(self, stream_id: int, data: bytes) -> None:
        await self.conn.send(data)

    async def receive(self) -> tuple[int, bytes] | None:
        assert self._body is not None
        data = await anext(self._body, b"")
        return protocol.STDIN, data

    async def line(self, value: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(value).encode() + b"\r\n")


def _unix_time(rfc3339: str) -> int:
    """Seconds of an RFC 3339 time (an image's ``created``), 0 if there is none."""
    try:
        return int(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


async def _ready(run: Run) -> Run:
    return run


async def serve_docker(
    sup: Supervisor,
    path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Engine API on a Unix socket at ``path`` (bound as the native socket is:
    mode 0660, group ``boxd``) until cancelled; the socket is removed at the end."""
    sock = await bind_socket(path)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            api = DockerApi(sup, nursery)
            await nursery.start(trio.serve_listeners, api.handle, [listener])
            task_status.started()
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

"""The daemon's socket server: frames in, supervisor calls, frames out.

One task per connection.  A connection carries requests one after another; a streaming
request (attach, start/run in the foreground, logs -f) keeps it until its end frame.  Any
bad input is answered with an ErrorResponse naming the problem, or the connection is closed;
nothing a client sends can end the server or disturb another connection.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import select
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from . import __version__, _logattrs, _logs, _nss, _verbareas, protocol
from ._convert import ConversionError
from ._idle import WaitingConnections
from ._images.config import DEFAULT_ID
from ._images.registry import RegistryError
from ._images.store import NoSuchImage
from ._images.unpack import ArchiveError, LayerError
from ._lifecycle import error_text
from ._listing import ListAnswers, select_containers
from ._messages import (
    CLIENT_FRAMES,
    REQUESTS,
    AttachRequest,
    AttachResponse,
    CreateRequest,
    CreateResponse,
    DetachFrame,
    EndFrame,
    ErrorResponse,
    ExecRequest,
    ExitFrame,
    InfoRequest,
    InfoResponse,
    InspectRequest,
    InspectResponse,
    KillRequest,
    ListRequest,
    LogsRequest,
    OkResponse,
    PauseRequest,
    RemoveRequest,
    ResizeFrame,
    RestartRequest,
    RunRequest,
    SignalFrame,
    StartRequest,
    StopRequest,
    UnpauseRequest,
    VersionRequest,
    VersionResponse,
    WaitRequest,
    WaitResponse,
    dump,
    parse,
)
from ._network import NetworkConflict, NoSuchNetwork
from ._output import Chunk, Output, send_framed, widen_send_buffer
from ._records import ContainerConfig, Status, parse_signal
from ._run import Run
from ._supervisor import AmbiguousContainer, Conflict, NoSuchContainer, StartError, Supervisor
from ._volumes import NoSuchVolume, VolumeInUse

log = logging.getLogger("boxd.server")

API_VERSION = 1
FIRST_REQUEST_TIMEOUT = 5.0  # a client sends its request as soon as it has connected
READ_TIMEOUT = 30.0  # for a later request on a kept connection to arrive whole
MAX_WAITING = 128  # connections waiting for a request (see _idle); busy ones are not capped
STDIN_CHUNK = 65536


class _Closed(Exception):
    """The peer went away or broke the protocol; the connection ends quietly."""


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside nested single-child exception groups (nurseries wrap)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _error_kind(exc: BaseException, areas: dict[type[Exception], str]) -> str | None:
    """The ErrorResponse kind of an expected failure (``areas``: those of the loaded verb
    areas' own failures); None for a bug."""
    for kind, area_kind in areas.items():
        if isinstance(exc, kind):
            return area_kind
    if isinstance(exc, AmbiguousContainer):  # several are there, none is missing
        return "invalid"
    if isinstance(exc, NoSuchContainer | NoSuchImage | NoSuchVolume | NoSuchNetwork):
        return "not_found"
    if isinstance(exc, Conflict | NetworkConflict | VolumeInUse):
        return "conflict"
    if isinstance(exc, RegistryError | LayerError | ArchiveError):
        return "failed"
    if isinstance(exc, StartError):
        return {127: "exec_not_found", 126: "exec_denied"}.get(exc.exit_code, "failed")
    if isinstance(exc, ValueError):
        return "invalid"
    if isinstance(exc, OSError):
        return "failed"
    return None


def _streams(request: object, areas: tuple[type[Any], ...]) -> bool:
    """Whether the request is answered with a stream that ends in an ExitFrame or EndFrame
    (``areas``: the streaming requests of the loaded verb areas)."""
    if isinstance(request, StartRequest | RunRequest):
        return request.attach
    if isinstance(request, ExecRequest):
        return not request.detach
    streams = (
        AttachRequest,
        ExecRequest,
        LogsRequest,
        *areas,
    )
    return isinstance(request, streams)


class Connection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = protocol.FrameDecoder()

    async def send(self, message: object) -> None:
        await self.stream.send_all(protocol.encode(dump(message)))

    async def send_bytes(self, stream_id: int, data: bytes) -> None:
        await send_framed(self.stream, protocol.encode_bytes(stream_id, b"", len(data)), data)

    def hung_up(self) -> bool:
        """Whether the client has closed the connection: the Unix socket's POLLHUP, which
        a half close (a client that still reads the answer) does not give."""
        if not isinstance(self.stream, trio.SocketStream):
            return False
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), 0)  # POLLHUP is always reported
        return any(events & select.POLLHUP for _, events in poller.poll(0))

    async def receive(self) -> protocol.Frame | None:
        """The next frame, or None at a clean end of the connection."""
        while True:
            frame = self.decoder.next()
            if frame is not None:
                return frame
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed from None
            if not data:
                if self.decoder.pending:
                    raise protocol.ProtocolError("connection closed in the middle of a frame")
                return None
            self.decoder.feed(bytes(data))


def peer_credentials(stream: trio.SocketStream) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (SO_PEERCRED)."""
    raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class Server:
    def __init__(self, sup: Supervisor, *, procview: str = "off", docker_socket: str = "") -> None:
        self.sup = sup
        self.procview = procview
        self.docker_socket = docker_socket
        self._waiting = WaitingConnections(MAX_WAITING)
        self._list_answers = ListAnswers()
        self._handlers: dict[type[Any], Callable[[Connection, Any], Awaitable[None]]] = {
            VersionRequest: self._version,
            InfoRequest: self._info,
            CreateRequest: self._create,
            StartRequest: self._start,
            RunRequest: self._run,
            AttachRequest: self._attach,
            StopRequest: self._stop,
            RestartRequest: self._restart,
            KillRequest: self._kill,
            RemoveRequest: self._remove,
            PauseRequest: self._pause,
            UnpauseRequest: self._unpause,
            ListRequest: self._list,
            InspectRequest: self._inspect,
            WaitRequest: self._wait,
            LogsRequest: self._read_logs,
            ExecRequest: self._exec,
        }
        # The verbs of boxd._verbareas, added as their first request loads them.
        self._requests = dict(REQUESTS)
        self._area_streams: tuple[type[Any], ...] = ()
        self._area_errors: dict[type[Exception], str] = {}

    def _load_area(self, request_type: str) -> None:
        """Add the catalogue entries, handlers, streams and errors of the verb area that
        serves ``request_type``, at its first request."""
        if request_type in self._requests:
            return
        area = _verbareas.area(request_type)
        if area is None:
            return
        self._requests.update((cls.__name__, cls) for cls in area.REQUESTS)
        self._handlers.update(area.handlers(self.sup))
        self._area_streams += area.STREAMS
        self._area_errors.update(area.ERRORS)

    async def handle(self, stream: trio.abc.Stream) -> None:
        pid = uid = -1
        if isinstance(stream, trio.SocketStream):
            with contextlib.suppress(OSError):
                pid, uid, _ = peer_credentials(stream)
        conn = Connection(stream)
        async with stream:
            try:
                await self._serve(conn, pid, uid)
            except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except protocol.ProtocolError as exc:
                log.info("peer pid=%d uid=%d: %s", pid, uid, exc)
                await self._error(conn, str(exc))
            except Exception as exc:  # a bug must cost one connection, not the daemon
                log.exception("peer pid=%d uid=%d: request failed", pid, uid)
                await self._error(conn, f"internal error: {exc}", "failed")

    async def _serve(self, conn: Connection, pid: int, uid: int) -> None:
        timeout = FIRST_REQUEST_TIMEOUT
        while True:
            with self._waiting.waiting(timeout) as wait:
                frame = await conn.receive()
            if wait.evicted:
                log.info("peer pid=%d uid=%d: closed, too many connections wait", pid, uid)
                await self._error(conn, "closed: too many connections wait for a request")
                return
            if wait.timed_out:
                await self._error(conn, f"no request within {timeout:g}s")
                return
            timeout = READ_TIMEOUT
            if frame is None:
                return
            if not isinstance(frame, dict):
                await self._error(conn, "expected a request, got a byte-stream frame")
                return
            try:
                self._load_area(frame["type"])
                request = parse(frame, self._requests)
            except ConversionError as exc:
                await self._error(conn, str(exc))
                continue
            log.debug("peer pid=%d uid=%d: %s", pid, uid, type(request).__name__)
            try:
                await self._handlers[type(request)](conn, request)
            except Exception as exc:
                kind = _error_kind(_unwrap(exc), self._area_errors)
                if kind is None:
                    raise
                await self._error(conn, error_text(_unwrap(exc)), kind)
                continue
            if _streams(request, self._area_streams):
                return  # its end frame was the last word: the connection closes

    async def _error(self, conn: Connection, message: str, kind: str = "invalid") -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await conn.send(ErrorResponse(message=message, kind=kind))

    # ---- plain requests -------------------------------------------------------------

    async def _version(self, conn: Connection, _: VersionRequest) -> None:
        await conn.send(VersionResponse(version=__version__, api=API_VERSION))

    async def _info(self, conn: Connection, _: InfoRequest) -> None:
        phases = self.sup.counts()
        running = sum(phases[s] for s in (Status.STARTING, Status.RUNNING, Status.STOPPING))
        await conn.send(
            InfoResponse(
                version=__version__,
                root=str(self.sup.store.root),
                cgroup_mode=self.sup.cgroups.mode,
                containers=phases.total(),
                running=running,
                procview=self.procview,
                paused=phases[Status.PAUSED],
                stopped=phases.total() - running - phases[Status.PAUSED],
                docker_socket=self.docker_socket,
            )
        )

    async def _create(self, conn: Connection, req: CreateRequest) -> None:
        c = await self.sup.create(req.config, req.name)
        warnings = tuple(self.sup.limit_warnings(req.config.resources))
        await conn.send(CreateResponse(id=c.id, name=c.name, warnings=warnings))

    async def _stop(self, conn: Connection, req: StopRequest) -> None:
        await self.sup.stop(req.container, req.timeout, sig=req.signal)
        await conn.send(OkResponse())

    async def _restart(self, conn: Connection, req: RestartRequest) -> None:
        await self.sup.restart(req.container, req.timeout, sig=req.signal)
        await conn.send(OkResponse())

    async def _kill(self, conn: Connection, req: KillRequest) -> None:
        await self.sup.kill(req.container, req.signal)
        await conn.send(OkResponse())

    async def _remove(self, conn: Connection, req: RemoveRequest) -> None:
        if req.link:  # `rm --link NAME/ALIAS`, as the docker CLI sends it to dockerd
            name, _, alias = req.container.strip("/").partition("/")
            await self.sup.remove_link(name, alias)
        else:
            await self.sup.remove(req.container, force=req.force, volumes=req.volumes)
        await conn.send(OkResponse())

    async def _pause(self, conn: Connection, req: PauseRequest) -> None:
        await self.sup.pause(req.container)
        await conn.send(OkResponse())

    async def _unpause(self, conn: Connection, req: UnpauseRequest) -> None:
        await self.sup.unpause(req.container)
        await conn.send(OkResponse())

    async def _list(self, conn: Connection, req: ListRequest) -> None:
        filters: dict[str, list[str]] = {}
        for item in req.filters:
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"invalid filter {item!r}: use KEY=VALUE")
            filters.setdefault(key, []).append(value)
        if "ancestor" in filters:  # the images named, and those built on them
            ancestry = self.sup.images.ancestry
            filters["ancestor"] = await trio.to_thread.run_sync(ancestry, filters["ancestor"])
        found = select_containers(self.sup.list, filters, all=req.all, limit=req.limit)
        sizes = await self.sup.sizes(found) if req.size else []
        await conn.stream.send_all(self._list_answers.frame(found, sizes, brief=req.brief))

    async def _inspect(self, conn: Connection, req: InspectRequest) -> None:
        c = self.sup.inspect(req.container)
        rw, root = (await self.sup.sizes([c]))[0] if req.size else (None, None)
        await conn.send(
            InspectResponse(
                container=c,
                log_path=self.sup.log_path(c),
                etc_paths=self.sup.etc_paths(c),
                graph_driver=self.sup.graph_driver(c),
                size_rw=rw,
                size_root_fs=root,
            )
        )

    async def _wait(self, conn: Connection, req: WaitRequest) -> None:
        await conn.send(WaitResponse(exit_code=await self.sup.wait(req.container)))

    # ---- streams --------------------------------------------------------------------

    async def _start(self, conn: Connection, req: StartRequest) -> None:
        if not req.attach:
            await self.sup.start(req.container, console_size=req.console_size)
            await conn.send(OkResponse())
            return
        answer = _joined(self.sup.inspect(req.container).config, req.stdin, req.input_tty)
        output, run = await self.sup.start_attached(req.container, console_size=req.console_size)
        await conn.send(answer)
        await self._foreground(conn, run, output, stdin=answer.stdin)

    async def _run(self, conn: Connection, req: RunRequest) -> None:
        c = await self.sup.create(req.config, req.name, starts=True)
        if conn.hung_up():
            # Its client is gone (Ctrl-C while the daemon was busy, or during a slow create):
            # nobody can name or stop what would start, so it does not, and is not left
            # either, as a library run cancelled before its start.
            await self.sup.remove(c.id, force=True, volumes=True)
            return
        # The supervisor removes an auto_remove container that cannot start.
        if req.attach:
            output, run = await self.sup.start_attached(c.id)
        else:
            await self.sup.start(c.id)
        warnings = tuple(self.sup.limit_warnings(req.config.resources))
        await conn.send(CreateResponse(id=c.id, name=c.name, warnings=warnings))
        if req.attach:
            await self._foreground(conn, run, output, stdin=req.stdin)

    async def _foreground(
        self,
        conn: Connection,
        run: Run,
        output: trio.MemoryReceiveChannel[Chunk],
        *,
        stdin: bool,
    ) -> None:
        """The stream of the client that started the container.  With ``--rm`` the
        container is removed before the client hears the exit code, as Docker does: a
        ``ps -a`` right after the run must not show it."""
        removal = None
        config = run.container.config
        if config.auto_remove:
            # The supervisor removes it once its end is recorded; this waits for that.
            removal = functools.partial(self.sup.removed, run.container.id)
        await _stream(
            conn, run, output, stdin=stdin, close_stdin=config.stdin_once, before_exit=removal
        )

    async def _attach(self, conn: Connection, req: AttachRequest) -> None:
        run = self.sup.attachable(req.container)
        answer = _joined(run.container.config, req.stdin, req.input_tty)
        output = run.output.subscribe()
        await conn.send(answer)
        await _stream(
            conn, run, output, stdin=answer.stdin, close_stdin=run.container.config.stdin_once
        )

    async def _exec(self, conn: Connection, req: ExecRequest) -> None:
        if req.detach:
            await self.sup.exec_detached(
                req.container,
                req.command,
                env=req.env,
                workdir=req.workdir,
                user=req.user,
                privileged=req.privileged,
            )
            await conn.send(OkResponse())
            return
        output = Output()
        # Its one reader, which gets every byte (the process waits for it, as on a pipe):
        # a lossy one was dropped once a few MiB waited, and the exec's output ended there,
        # silently cut, with the process's own exit code.
        channel = output.subscribe(lossless=True)
        async with trio.open_nursery() as nursery:
            proc: Run = await nursery.start(
                functools.partial(
                    self.sup.exec,
                    req.container,
                    req.command,
                    env=req.env,
                    workdir=req.workdir,
                    user=req.user,
                    tty=req.tty,
                    interactive=req.interactive,
                    privileged=req.privileged,
                    console_size=req.console_size,
                    output=output,
                )
            )
            await conn.send(OkResponse())
            await _stream(conn, proc, channel, stdin=req.interactive, close_stdin=True)

    async def _read_logs(self, conn: Connection, req: LogsRequest) -> None:
        directory = self.sup.log_dir(req.container)
        c = self.sup.inspect(req.container)
        cid = c.id
        await conn.send(OkResponse())
        details = _logattrs.details(c, c.config.image_id or DEFAULT_ID) if req.details else b""
        formatter = _logs.OutputFormatter(timestamps=req.timestamps, details=details)
        until = math.inf if req.until is None else req.until
        ended: Callable[[], bool] | None = None
        deadline = math.inf
        if req.follow:

            def stopped() -> bool:
                try:
                    return self.sup.run_of(cid) is None
                except NoSuchContainer:
                    return True

            ended = stopped
            # It ends at --until's time (as docker logs -f --until does).
            deadline = trio.current_time() + until - time.time()
        with trio.move_on_at(deadline):
            async for batch in _logs.batches(
                directory,
                since_ns=None if req.since is None else _logs.to_ns(req.since),
                tail=req.tail,
                until_ns=None if req.until is None else _logs.to_ns(req.until),
                until_closed=ended,
            ):
                for stream, data in formatter.chunks(batch):
                    await conn.send_bytes(protocol.OUTPUT_STREAMS[stream], data)
        await conn.send(EndFrame())


async def cancel_when_closed(conn: Connection, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client hangs up (it sends nothing more on this stream)."""
    with contextlib.suppress(_Closed, protocol.ProtocolError):
        while await conn.receive() is not None:
            pass
    scope.cancel(reason="client went away")


def _joined(config: ContainerConfig, stdin: bool, input_tty: bool) -> AttachResponse:
    """How a client that starts or attaches in the foreground drives its stream."""
    stdin = stdin and config.interactive
    if stdin and config.tty and not input_tty:
        raise ValueError("the input device is not a TTY")
    return AttachResponse(tty=config.tty, stdin=stdin)


async def _stream(
    conn: Connection,
    run: Run,
    output: trio.MemoryReceiveChannel[Chunk],
    *,
    stdin: bool,
    close_stdin: bool,
    before_exit: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Output to the client until the process ends (then ``before_exit``, then its exit
    code); input, resizes and signals from the client until it detaches or goes away (the
    process keeps running).  A client that vanishes ends only its own stream.

    ``close_stdin`` (Docker's StdinOnce; an exec's): the end of the client's input, its
    detaching or its going away closes the process's stdin (not a terminal's: see
    Run.write_stdin).  Otherwise the stdin stays open for the next client to attach, and
    the end of this one's input ends nothing: its output goes on to the process's end."""
    widen_send_buffer(conn.stream)
    async with trio.open_nursery() as nursery:

        async def from_client() -> None:
            with contextlib.suppress(_Closed, protocol.ProtocolError, ConversionError):
                while (frame := await conn.receive()) is not None:
                    if isinstance(frame, tuple):
                        if stdin and frame[0] == protocol.STDIN and (frame[1] or close_stdin):
                            await run.write_stdin(frame[1])
                        continue
                    msg = parse(frame, CLIENT_FRAMES)
                    if isinstance(msg, DetachFrame):
                        break
                    if isinstance(msg, ResizeFrame):
                        run.resize(msg.rows, msg.cols)
                    elif isinstance(msg, SignalFrame):
                        run.signal(parse_signal(msg.signal))
            nursery.cancel_scope.cancel(reason="client detached")

        nursery.start_soon(from_client)
        try:
            async with output:
                async for stream_id, data in output:
                    await conn.send_bytes(stream_id, data)
            await run.exited.wait()
            assert run.outcome is not None
            if before_exit is not None:
                await before_exit()
            await conn.send(ExitFrame(exit_code=run.outcome.exit_code))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        nursery.cancel_scope.cancel(reason="stream ended")
    if stdin and close_stdin:
        # However the stream ended: a client gone while its output was being sent, or
        # while its input waited for room in the pipe, is gone too.
        await run.write_stdin(b"")


async def bind_socket(path: Path) -> trio.socket.SocketType:
    """A listening socket at ``path``: mode 0660, group ``boxd`` when it exists.

    It is bound under a temporary name while the umask allows the owner only, given its
    final mode and group, and only then renamed into place: no instant exists at which the
    socket is reachable with looser permissions.
    """
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        await sock.bind(str(tmp))
    finally:
        os.umask(old)
    gid = await _nss.group_id("boxd")
    os.chown(tmp, 0 if os.geteuid() == 0 else -1, -1 if gid is None else gid)
    os.chmod(tmp, 0o660)
    os.rename(tmp, path)
    sock.listen(128)
    return sock


async def serve(
    server: Server,
    path: Path,
    *,
    listening: trio.socket.SocketType | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on a socket bound at ``path``, or on ``listening``, one systemd made (socket
    activation: it stays in place when the daemon ends)."""
    sock = listening if listening is not None else await bind_socket(path)
    listener = trio.SocketListener(sock)
    try:
        await trio.serve_listeners(server.handle, [listener], task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
            if listening is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

"""Attach, resize and exec: the hijacked connections (``101 UPGRADED``, then raw bytes both
ways, framed as Docker frames them) and exec instances, which only the API has: created by
one request, started by another, inspected for their exit code after."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
import trio

from .. import _detachkeys, _lifecycle, _logs, _plan, protocol
from .._output import Chunk, Output, widen_send_buffer
from .._run import Run
from .._supervisor import Conflict, NoSuchContainer, StartError
from ._api import READ_SIZE, Api, api_error, frame, send_frame, unwrap
from ._http import ApiError, HttpConnection, Request, stream_type
from ._router import CONTAINER, route
from ._shapes import Fields, console_size

# A container's ended exec instances kept for their exit codes (exec inspect, which every
# client asks right after the end), the oldest forgotten first: Docker forgets them too.
KEPT_ENDED = 128


@attrs.define(eq=False)
class Exec:
    """An exec instance: created by one request, started by another, inspected after."""

    id: str
    container: str
    spec: _plan.ExecSpec
    stdin: bool
    stdout: bool
    stderr: bool
    detach_keys: bytes  # watched in the input of a TTY
    started: bool = False
    run: Run | None = None
    exit_code: int | None = None  # of a failure to start; once it ran, its run's outcome's
    size: tuple[int, int] | None = None  # a resize that came before the process ran
    # The run of its container it was made in: it is gone with that run (as dockerd
    # forgets a container's execs when it stops), and no later run starts it.
    made_in: Run | None = None

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.exited.is_set()

    @property
    def code(self) -> int | None:
        """Its exit code once it has ended (or failed to start)."""
        if self.run is not None and self.run.outcome is not None:
            return self.run.outcome.exit_code
        return self.exit_code

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``Supervisor.exec`` for its process."""
        spec = self.spec
        return {
            "env": spec.env,
            "workdir": spec.workdir,
            "user": spec.user,
            "tty": spec.tty,
            "console_size": spec.console_size,
            "interactive": self.stdin,
            "privileged": spec.privileged,
            "exec_id": self.id,  # its events' execID: the id the client was given
        }

    def start_failed(self, exc: BaseException) -> NoReturn:
        """Record a failure to start (126 or 127, as Docker reports it) and raise it, out of
        the nursery's group when it is one exception."""
        failure = unwrap(exc)
        self.exit_code = failure.exit_code if isinstance(failure, StartError) else 126
        if isinstance(failure, Exception):
            raise failure from None
        raise exc


def _detach_keys(text: str) -> bytes:
    try:
        return _detachkeys.parse(text or _detachkeys.DEFAULT)
    except ValueError:
        raise ApiError(400, f"Invalid detach keys ({text}) provided") from None  # Docker's


def _size(req: Request) -> tuple[int, int]:
    rows, cols = req.integer("h"), req.integer("w")
    if rows is None or cols is None:
        missing = " and ".join(n for n, v in (("h", rows), ("w", cols)) if v is None)
        raise ApiError(400, f"missing {missing}: a terminal size needs h and w in 1..65535")
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise ApiError(400, f"invalid terminal size h={rows} w={cols}: give h and w in 1..65535")
    return rows, cols


async def resize(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    run = api.sup.run_of(ref)
    if run is None:
        raise Conflict(f"container {ref} is not running")
    rows, cols = _size(req)
    run.resize(rows, cols)
    # As dockerd reports a container's (not an exec's) resize.
    api.sup.events.report("resize", api.sup.inspect(ref), height=str(rows), width=str(cols))
    await conn.respond(200, content_type=None)


async def attach(
    api: Api, conn: HttpConnection, req: Request, ref: str, *, websocket: bool = False
) -> None:
    """The container's streams on the hijacked connection; with ``websocket``, on a
    WebSocket (``attach/ws``), never multiplexed, as Docker sends them there."""
    c = api.sup.inspect(ref)
    keys = _detach_keys(req.arg("detachKeys") or "")
    wanted = {
        sid
        for sid, name in ((protocol.STDOUT, "stdout"), (protocol.STDERR, "stderr"))
        if req.flag(name)
    }
    # Attached before start (docker run, start -a): every byte from the first.
    before_start = api.sup.run_of(c.id) is None
    channel = api.sup.subscribe(c.id, lossless=before_start) if req.flag("stream") else None
    try:
        if websocket:
            from . import _websocket  # wsproto: ~0.4 MB of the daemon, for a rare client

            await _websocket.accept(conn, req)
            leftover = b""  # the stream reads what came past the handshake itself
        else:
            leftover = await conn.hijack(req.upgrade, stream_type(req, c.config.tty))
    except BaseException:
        if channel is not None:
            channel.close()
        raise
    tty = c.config.tty
    raw = tty or websocket
    sock = conn.stream
    widen_send_buffer(sock)  # as boxctl's: a chunk of output is one send, not five
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if req.flag("logs") and c.config.log_driver != "none":  # none: nothing to replay
            formatter = _logs.OutputFormatter()
            async for batch in _logs.batches(api.sup.log_dir(c.id)):
                frames = b"".join(
                    frame(protocol.OUTPUT_STREAMS[stream], data, tty=raw)
                    for stream, data in formatter.records(batch)
                    if protocol.OUTPUT_STREAMS[stream] in wanted
                )
                if frames:  # a frame a record, one write a batch
                    await sock.send_all(frames)
        if channel is None:
            return
        async with trio.open_nursery() as nursery:
            forward = None
            if req.flag("stdin") and c.config.interactive:
                forward = functools.partial(
                    _forward_stdin,
                    sock,
                    leftover,
                    functools.partial(_started, api, c.id),
                    c.config.stdin_once and not tty,
                    keys if tty else None,
                    nursery.cancel_scope,
                )
            if websocket:
                nursery.start_soon(_websocket_input, sock, forward, nursery.cancel_scope)
            else:
                if forward is not None:
                    nursery.start_soon(forward)
                nursery.start_soon(_until_hung_up, sock, nursery.cancel_scope)
            nursery.start_soon(_until_removed, api, c.id, channel, nursery.cancel_scope)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                async with channel:
                    async for sid, data in channel:
                        if sid in wanted:
                            await send_frame(sock, sid, data, tty=raw)
            nursery.cancel_scope.cancel(reason="the container's output ended")


async def _websocket_input(
    sock: trio.abc.Stream,
    forward: Callable[[], Awaitable[None]] | None,
    streams: trio.CancelScope,
) -> None:
    """A WebSocket's messages: the container's stdin (``forward``), or read and dropped
    (its pings answered).  Its end (a close, the client gone) ends the attach, StdinOnce
    or not: a raw stream's end of input may be a half close, its client still reading the
    output, but a WebSocket closes both ways, and the streams would wait for the next
    output."""
    if forward is not None:
        await forward()
    else:
        while await sock.receive_some(READ_SIZE):
            pass
    streams.cancel(reason="the client closed the WebSocket")


async def _until_hung_up(sock: trio.abc.Stream, streams: trio.CancelScope) -> None:
    """End the streams once the client has closed its connection.  Without stdin (or
    after a StdinOnce input's end) nothing reads the socket, and a client gone was found
    only by the next output: each attach to a quiet container that its client gave up
    held a descriptor and a task for as long as the container stayed quiet.  A half close
    is no end (the docker CLI shuts its side at once when it has no input, and reads on);
    a Unix socket whose both sides are shut reports a hang-up, which an epoll instance
    holding it for no event reports alone, as readable."""
    inner = getattr(sock, "socket", None)
    if inner is None or inner.family != socket.AF_UNIX:
        return
    with select.epoll() as hangup:
        hangup.register(inner.fileno(), 0)
        await trio.lowlevel.wait_readable(hangup)
    streams.cancel(reason="the client closed the connection")


async def _started(api: Api, cid: str) -> Run | None:
    """The container's run once it runs; None if it goes away first."""
    while True:
        try:
            run = api.sup.run_of(cid)
        except NoSuchContainer:
            return None
        if run is not None:
            return run
        await api.sup.wait_changed()


async def _until_removed(
    api: Api, cid: str, channel: trio.MemoryReceiveChannel[Chunk], scope: trio.CancelScope
) -> None:
    """End the streams of a container removed before its output ended (attached before a
    start that never came: its channel would stay open).  Output that has ended is given
    to its last byte: a ``--rm`` container is removed as soon as it ends, most often
    before its client has read all it wrote."""
    while True:
        try:
            api.sup.inspect(cid)
        except NoSuchContainer:
            if channel.statistics().open_send_channels:
                scope.cancel(reason="the container was removed")
            return
        await api.sup.wait_changed()


async def _forward_stdin(
    sock: trio.abc.Stream,
    leftover: bytes,
    run_of: Callable[[], Awaitable[Run | None]],
    close_at_end: bool,
    detach_keys: bytes | None,
    streams: trio.CancelScope,
) -> None:
    """The client's input to the process.  Its end (the client's write side shut, or the
    client gone) closes the process's stdin with ``close_at_end`` (Docker's StdinOnce of a
    container without a TTY, an exec without one); otherwise, as in Docker, it ends this
    client's connection (``streams`` and the socket) and the stdin stays open for the next
    attach.  With a TTY, Docker's detach keys end the connection too."""
    run = await run_of()
    if run is None:
        return
    matcher = _detachkeys.DetachMatcher(detach_keys) if detach_keys else None
    data = leftover
    try:
        while True:
            detached = False
            if matcher is not None:
                data, detached = matcher.feed(data)
            if data:
                await run.write_stdin(data)
            if detached:
                break
            try:
                data = bytes(await sock.receive_some(READ_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not data:
                break
    finally:
        if close_at_end:  # never with a TTY, the only input watched for detach keys
            # Also when cancelled: a client gone while its input waited for room in the
            # pipe, found gone by the output that could not be sent to it.
            with trio.CancelScope(shield=True):
                await run.write_stdin(b"")
    if close_at_end:
        return
    streams.cancel(reason="the client detached" if detached else "the client's input ended")
    await trio.aclose_forcefully(sock)


# ---- exec -------------------------------------------------------------------------------


async def exec_create(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    body = Fields(req.json_object(), "body")
    c = api.sup.inspect(ref)
    _lifecycle.check_exec_between_runs(c.id, c.state.status)
    if api.sup.run_of(c.id) is None:
        raise Conflict(f"container {c.id} is not running")
    command = body.command("Cmd")
    if not command:
        raise ApiError(400, "No exec command specified")  # dockerd's words
    spec = _plan.ExecSpec(
        command=tuple(command),
        env=tuple(body.strings("Env")),
        workdir=body.text("WorkingDir"),
        user=body.text("User"),
        tty=body.flag("Tty"),
        privileged=body.flag("Privileged"),
        # API 1.42 on (before, Docker ignores it): the terminal's first size.
        console_size=console_size(body, "ConsoleSize") if req.at_least("1.42") else None,
    )
    _plan.check_exec(spec)
    if spec.user:  # looked up now, as dockerd 28 does: a bad one is the create's 400
        await trio.to_thread.run_sync(api.sup.check_exec_user, c.id, spec.user)
    ex = Exec(
        id=os.urandom(32).hex(),
        container=c.id,
        made_in=api.sup.run_of(c.id),
        spec=spec,
        stdin=body.flag("AttachStdin"),
        stdout=body.flag("AttachStdout"),
        stderr=body.flag("AttachStderr"),
        detach_keys=_detach_keys(body.text("DetachKeys")),
    )
    for stale in [e for e in api.execs.values() if not _exists(api, e.container)]:
        del api.execs[stale.id]  # their containers were removed by another client
    ended = [e.id for e in api.execs.values() if e.container == c.id and e.code is not None]
    for exec_id in ended[:-KEPT_ENDED]:
        del api.execs[exec_id]
    api.execs[ex.id] = ex
    await conn.respond_json(201, {"Id": ex.id})


def _exists(api: Api, cid: str) -> bool:
    try:
        api.sup.inspect(cid)
    except NoSuchContainer:
        return False
    return True


def _exec_of(api: Api, exec_id: str) -> Exec:
    ex = api.execs.get(exec_id)
    if ex is None:
        raise ApiError(404, f"No such exec instance: {exec_id}")
    return ex


async def exec_start(api: Api, conn: HttpConnection, req: Request, exec_id: str) -> None:
    ex = _exec_of(api, exec_id)
    body = Fields(req.json_object(), "body")
    if ex.started:
        raise ApiError(409, f"exec instance {exec_id} has already been started")
    if api.sup.run_of(ex.container) is not ex.made_in:  # its run ended: as dockerd's 404
        del api.execs[ex.id]
        raise ApiError(404, f"No such exec instance: {exec_id}")
    ex.started = True
    if body.flag("Detach"):
        # In the supervisor's nursery, as `boxctl exec -d`'s: it outlives this server.
        try:
            ex.run = await api.sup.exec_detached(ex.container, ex.spec.command, **ex.options())
        except Exception as exc:
            ex.start_failed(exc)
        if ex.size is not None:
            ex.run.resize(*ex.size)
        await conn.respond(200, content_type=None)
        return
    output = Output()
    # The start's own Tty, not the exec's, says whether the stream is framed, as in Docker:
    # docker-py starts an exec made with a TTY with Tty false, and reads frame headers.
    raw = body.flag("Tty")
    channel = output.subscribe(lossless=True)
    leftover = await conn.hijack(req.upgrade, stream_type(req, raw))
    sock = conn.stream
    widen_send_buffer(sock)
    wanted = {sid for sid, on in ((protocol.STDOUT, ex.stdout), (protocol.STDERR, ex.stderr)) if on}
    # The outer nursery holds the process to its end (and its exit code recorded, for
    # the inspect that follows); the inner one, the streams of this connection.
    async with trio.open_nursery() as nursery:
        try:
            run: Run = await nursery.start(_run_exec, api, ex, output)
        except Exception as exc:
            failure = unwrap(exc)
            error = api_error(failure)
            if error is None:
                raise
            # The failure as it is: the CLI reads an exec's exit code from its inspect,
            # not from the words api_error adds for a start's ("executable file not
            # found" after a -w directory missing, "permission denied" after a user).
            text = str(failure) if isinstance(failure, StartError) else error.message
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                message = (text + "\r\n").encode()
                await sock.send_all(frame(protocol.STDOUT, message, tty=raw))
            return
        async with trio.open_nursery() as streams:
            if ex.stdin:
                keys = ex.detach_keys if ex.spec.tty else None
                streams.start_soon(
                    _forward_stdin,
                    sock,
                    leftover,
                    functools.partial(_ready, run),
                    not ex.spec.tty,
                    keys,
                    streams.cancel_scope,
                )
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                async with channel:
                    async for sid, data in channel:
                        if sid in wanted:
                            await send_frame(sock, sid, data, tty=raw)
            await run.exited.wait()
            streams.cancel_scope.cancel(reason="the exec'd process ended")


async def _ready(run: Run) -> Run:
    return run


async def _run_exec(
    api: Api, ex: Exec, output: Output, *, task_status: trio.TaskStatus[Run]
) -> None:
    """Run the exec'd process to its end (its exit code: :attr:`Exec.code`); its Run is
    reported once it runs.  A failure to start is recorded and raised to the starter."""
    try:
        async with trio.open_nursery() as nursery:
            run: Run = await nursery.start(
                functools.partial(
                    api.sup.exec, ex.container, ex.spec.command, output=output, **ex.options()
                )
            )
            ex.run = run
            if ex.size is not None:
                run.resize(*ex.size)
            task_status.started(run)
    except Exception as exc:
        ex.start_failed(exc)


async def exec_resize(api: Api, conn: HttpConnection, req: Request, exec_id: str) -> None:
    size = _size(req)  # first, as dockerd reads it: a bad one is a 400 whatever the id
    ex = _exec_of(api, exec_id)
    if ex.code is not None:
        raise Conflict(f"exec instance {exec_id} has ended")
    # The CLI resizes right after it starts the exec, often before the process runs.
    ex.size = size
    if ex.run is not None:
        ex.run.resize(*size)
    await conn.respond(200, content_type=None)


async def exec_inspect(api: Api, conn: HttpConnection, req: Request, exec_id: str) -> None:
    ex = _exec_of(api, exec_id)
    await conn.respond_json(
        200,
        {
            "ID": ex.id,
            "Running": ex.running,
            "ExitCode": ex.code,
            "ProcessConfig": {
                "tty": ex.spec.tty,
                "entrypoint": ex.spec.command[0],
                "arguments": list(ex.spec.command[1:]),
                "privileged": ex.spec.privileged,
                "user": ex.spec.user,
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


ROUTES = [
    route("POST", CONTAINER + r"/attach", attach),
    route("GET", CONTAINER + r"/attach/ws", functools.partial(attach, websocket=True)),
    route("POST", CONTAINER + r"/resize", resize),
    route("POST", CONTAINER + r"/exec", exec_create, json=True),
    route("POST", r"/exec/([^/]+)/start", exec_start, json=True),
    route("POST", r"/exec/([^/]+)/resize", exec_resize),
    route("GET", r"/exec/([^/]+)/json", exec_inspect),
]

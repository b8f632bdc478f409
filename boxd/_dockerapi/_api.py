"""What every area of the Engine API shares: the state handlers get (:class:`Api`), Docker's
status for an expected failure, its stream framing, and the adapters that let a verb of the
native socket answer over HTTP."""

from __future__ import annotations

import json
import platform
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import protocol
from .._convert import ConversionError
from .._images.registry import RegistryError, RegistryNotFound
from .._images.store import ImageInUse, InvalidReference, NoSuchImage
from .._images.unpack import ArchiveError, LayerError
from .._lifecycle import error_text
from .._messages import EndFrame, OkResponse
from .._network import (
    NetworkConflict,
    NetworkError,
    NoSuchNetwork,
    PredefinedNetwork,
    SubnetTaken,
)
from .._output import send_framed
from .._supervisor import AmbiguousContainer, Conflict, NoSuchContainer, StartError, Supervisor
from .._volumes import NoSuchDriver, NoSuchVolume, VolumeInUse
from ._http import ApiError, HttpConnection

if TYPE_CHECKING:
    from .._images.verbs import ImageVerbs
    from ._attach import Exec

READ_SIZE = 65536
_HEADER = struct.Struct(">BxxxL")


@attrs.define(eq=False)
class Api:
    """The state handlers share: the supervisor (all policy is its), the nursery detached
    execs run in, the native socket's image and network verbs (made, and their modules
    imported, at first use: see boxd._verbareas), and what only the API has: exec
    instances (created, then started by id, then inspected for their exit code)."""

    sup: Supervisor
    nursery: trio.Nursery
    execs: dict[str, Exec] = attrs.Factory(dict)
    _images: ImageVerbs | None = attrs.field(default=None, init=False)
    _networks: dict[type, Callable[[Any, Any], Awaitable[None]]] | None = attrs.field(
        default=None, init=False
    )

    @property
    def images(self) -> ImageVerbs:
        if self._images is None:
            from .._images.verbs import ImageVerbs

            self._images = ImageVerbs(self.sup)
        return self._images

    @property
    def networks(self) -> dict[type, Callable[[Any, Any], Awaitable[None]]]:
        if self._networks is None:
            from .._netserver import handlers

            self._networks = handlers(self.sup)
        return self._networks

    def execs_of(self, cid: str, *, ended: bool = True) -> list[str]:
        """The ids of a container's exec instances (without ``ended``: those that have
        not ended, Docker's ``ExecIDs``)."""
        if ended:
            return [e.id for e in self.execs.values() if e.container == cid]
        run = self.sup.run_of(cid)  # one made in an earlier run is gone (see exec_start)
        return [
            e.id
            for e in self.execs.values()
            if e.container == cid and e.code is None and (e.started or e.made_in is run)
        ]


def unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def api_error(exc: BaseException) -> ApiError | None:
    """Docker's status for an expected failure; None for a bug."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AmbiguousContainer):  # InvalidParameter, as dockerd's
        return ApiError(400, str(exc))
    if isinstance(exc, InvalidReference):  # InvalidParameter, as dockerd's
        return ApiError(400, str(exc))
    if isinstance(exc, NoSuchContainer | NoSuchImage | NoSuchVolume):
        text = str(exc)
        return ApiError(404, text[:1].upper() + text[1:])
    if isinstance(exc, NoSuchDriver):  # dockerd's: no plugin of that name
        return ApiError(404, str(exc))
    if isinstance(exc, NetworkError) and str(exc).startswith("no such network"):
        return ApiError(404, str(exc)[:1].upper() + str(exc)[1:])
    if isinstance(exc, PredefinedNetwork | SubnetTaken):
        return ApiError(403, str(exc))
    if isinstance(exc, Conflict | ImageInUse | NetworkConflict | VolumeInUse):
        return ApiError(409, str(exc))
    if isinstance(exc, RegistryNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, RegistryError | LayerError):
        return ApiError(500, str(exc))
    if isinstance(exc, StartError) and isinstance(exc.__cause__, NoSuchNetwork):
        return ApiError(404, str(exc))  # removed while the container was at rest, as moby's
    if isinstance(exc, StartError):
        # The docker CLI picks its exit code from these words: 127 and 126.
        if exc.exit_code == 127:
            return ApiError(400, f"{exc}: executable file not found")
        if exc.exit_code == 126:
            return ApiError(400, f"{exc}: permission denied")
        return ApiError(500, str(exc))
    if isinstance(exc, ConversionError | ValueError | ArchiveError):
        return ApiError(400, str(exc))
    if isinstance(exc, OSError):
        return ApiError(500, error_text(exc))
    return None


def arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def frame(stream_id: int, data: bytes, *, tty: bool) -> bytes:
    """Docker's stream framing: raw for a TTY, else an 8-byte header (stream, size)."""
    return data if tty else _HEADER.pack(stream_id, len(data)) + data


async def send_frame(sock: trio.abc.Stream, stream_id: int, data: bytes, *, tty: bool) -> None:
    """:func:`frame` sent; a large chunk without the copy that puts the header before it."""
    if tty:
        await sock.send_all(data)
    else:
        await send_framed(sock, _HEADER.pack(stream_id, len(data)), data)


class Answers:
    """What a native verb sends on its connection: kept, and forwarded if asked."""

    def __init__(self, forward: Callable[[object], Awaitable[None]] | None = None) -> None:
        self.last: Any = None
        self._forward = forward

    async def send(self, message: object) -> None:
        self.last = message
        if self._forward is not None:
            await self._forward(message)


async def one_answer(verb: Callable[[Any, Any], Awaitable[None]], request: object) -> Any:
    """Run one of the native socket's verbs; its one answer."""
    answers = Answers()
    await verb(answers, request)
    return answers.last


class Streamed(Answers):
    """A verb's byte-stream conversation (save, load, import, export) over HTTP: its
    OkResponse starts the response, its byte frames are the body; the request body is
    its input.  ``head_at_first_output``: the response starts with the first thing said
    instead (dockerd's import: its client is answered once the image is made, and a
    failure before that is the response's status)."""

    def __init__(
        self,
        conn: HttpConnection,
        body: AsyncIterator[bytes] | None = None,
        *,
        content_type: str = "application/json",
        head_at_first_output: bool = False,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.started = False
        self._body = body
        self._content_type = content_type
        self._lazy = head_at_first_output

    async def _start(self) -> None:
        if not self.started:
            await self.conn.start_stream(self._content_type)
            self.started = True

    async def send(self, message: object) -> None:
        if isinstance(message, OkResponse):
            if not self._lazy:
                await self._start()
        elif not isinstance(message, EndFrame):
            self.last = message

    async def send_bytes(self, stream_id: int, data: bytes) -> None:
        await self._start()
        await self.conn.send(data)

    async def receive(self) -> tuple[int, bytes] | None:
        assert self._body is not None
        data = await anext(self._body, b"")
        return protocol.STDIN, data

    async def line(self, value: dict[str, Any]) -> None:
        await self._start()
        await self.conn.send(json.dumps(value).encode() + b"\r\n")

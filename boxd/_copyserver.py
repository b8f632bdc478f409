"""The daemon's ``cp`` (messages: :mod:`boxd._copymessages`): :class:`Copier` does the
work for both front ends, the protocol's handlers here and the Docker API's archive
endpoints."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from . import _plan, protocol
from ._copymessages import REQUESTS as REQUESTS
from ._copymessages import STREAMS as STREAMS
from ._copymessages import (
    CopyError,
    CopyFromRequest,
    CopyStatRequest,
    CopyStatResponse,
    CopyToRequest,
    NoSuchPath,
    PathStat,
)
from ._messages import EndFrame, OkResponse
from ._records import Container

if TYPE_CHECKING:
    from ._copy import IdMap
    from ._supervisor import Supervisor

# boxd._copy (tarfile, the image unpacker) is imported by the first copy, not at start.

CHUNK = 1 << 20


class Streamer(Protocol):
    async def send(self, message: object) -> None: ...

    async def send_bytes(self, stream_id: int, data: bytes) -> None: ...

    async def receive(self) -> dict[str, Any] | tuple[int, bytes] | None: ...


def id_map(container: Container) -> IdMap:
    """The container's user namespace mapping (the host's ids without one)."""
    from ._copy import IdMap

    return IdMap(*_plan.id_range()) if container.config.userns else IdMap()


def _check_writable(container: Container, root_fd: int, path: str) -> None:
    """Docker's rules: a read-only volume takes no file, a read-only root filesystem takes
    them only in a writable volume."""
    from . import _copy

    dest = _copy.resolve(root_fd, _copy.docker_path(path))
    deepest_first = sorted(container.config.volumes, key=lambda v: -len(v.container))
    for volume in deepest_first:
        if dest == volume.container or dest.startswith(volume.container.rstrip("/") + "/"):
            if volume.read_only:
                raise CopyError("mounted volume is marked read-only")
            return
    if container.config.read_only:
        raise CopyError("container rootfs is marked read-only")


class _ChannelWriter(io.RawIOBase):
    """What a worker thread writes, sent to a Trio channel (buffer it: each write is a
    trip to the Trio thread)."""

    def __init__(self, send: trio.MemorySendChannel[bytes]) -> None:
        self.send = send

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        trio.from_thread.run(self.send.send, bytes(data))
        return len(data)


class Copier:
    """What ``cp`` and the Docker API's archive endpoints do, on the supervisor's
    containers."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    async def stat(self, ref: str, path: str) -> PathStat:
        from . import _copy

        async with self.sup.open_root(ref) as (_c, root):
            return await trio.to_thread.run_sync(_copy.stat_path, root, path, ref)

    @contextlib.asynccontextmanager
    async def archive(
        self, ref: str, path: str
    ) -> AsyncIterator[tuple[PathStat, trio.MemoryReceiveChannel[bytes]]]:
        """The stat of ``path`` (a missing one fails here, before anything is sent) and its
        tar as it is written, in chunks of up to CHUNK bytes.  A failure while writing
        ends the chunks early and is raised from the context.  A stopped container cannot
        start until the context ends."""
        from . import _copy

        async with self.sup.open_root(ref) as (c, root):
            st = await trio.to_thread.run_sync(_copy.stat_path, root, path, ref)
            self.sup.events.report("archive-path", c)
            send, receive = trio.open_memory_channel[bytes](2)

            def write() -> None:
                with io.BufferedWriter(_ChannelWriter(send), CHUNK) as out:
                    _copy.write_archive(root, path, out, container=ref, ids=id_map(c))

            async def produce() -> None:
                async with send:
                    await trio.to_thread.run_sync(write)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                with receive:
                    yield st, receive

    def temp_file(self) -> tuple[int, Path]:
        return self.sup.images.temp_file()

    async def extract(
        self,
        ref: str,
        path: str,
        tar_path: Path,
        *,
        no_overwrite_dir_non_dir: bool = False,
        copy_uid_gid: bool = False,
    ) -> None:
        """Extract the tar at ``tar_path`` into the directory ``path`` of the container,
        once it is known to be a good tar with nothing refused in it."""
        from . import _copy

        async with self.sup.open_root(ref) as (c, root):

            def work() -> None:
                _copy.check_archive(
                    root,
                    path,
                    str(tar_path),
                    container=ref,
                    no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                )
                _check_writable(c, root, path)
                _copy.extract_archive(
                    root,
                    path,
                    str(tar_path),
                    container=ref,
                    ids=id_map(c),
                    copy_uid_gid=copy_uid_gid,
                )

            await trio.to_thread.run_sync(work)
        self.sup.events.report("extract-to-dir", c)


ERRORS: dict[type[Exception], str] = {NoSuchPath: "not_found"}  # see boxd._verbareas


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    copier = Copier(sup)

    async def stat(conn: Streamer, req: CopyStatRequest) -> None:
        await conn.send(CopyStatResponse(stat=await copier.stat(req.container, req.path)))

    async def copy_from(conn: Streamer, req: CopyFromRequest) -> None:
        async with copier.archive(req.container, req.path) as (st, chunks):
            await conn.send(CopyStatResponse(stat=st))
            async for chunk in chunks:
                await conn.send_bytes(protocol.STDOUT, chunk)
        await conn.send(EndFrame())

    async def copy_to(conn: Streamer, req: CopyToRequest) -> None:
        sup.inspect(req.container)  # an unknown one is refused before the archive comes
        await conn.send(OkResponse())
        fd, tmp = copier.temp_file()
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    frame = await conn.receive()
                    if frame is None:
                        raise CopyError("the client went away before the end of the archive")
                    if not isinstance(frame, tuple) or frame[0] != protocol.STDIN:
                        raise CopyError("expected the archive as stdin byte frames")
                    if not frame[1]:
                        break
                    await trio.to_thread.run_sync(out.write, frame[1])
            await copier.extract(
                req.container,
                req.path,
                tmp,
                no_overwrite_dir_non_dir=req.no_overwrite_dir_non_dir,
                copy_uid_gid=req.copy_uid_gid,
            )
        finally:
            tmp.unlink(missing_ok=True)
        await conn.send(OkResponse())

    return {CopyStatRequest: stat, CopyFromRequest: copy_from, CopyToRequest: copy_to}

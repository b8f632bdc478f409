"""The daemon's ``build`` verb (a verb area: see boxd._verbareas).

The client sends the context as a tar after the request; it is unpacked safely (every
member resolved inside a fresh directory, as ``cp`` unpacks) below the image store's
temporary directory, which a daemon start empties.
"""

from __future__ import annotations

import base64
import collections
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from .. import protocol
from .._messages import EndFrame, OkResponse
from .dockerfile import DockerfileError, parse
from .messages import (
    BUILD_REQUESTS,
    BUILD_STREAMS,
    BuildOutputFrame,
    BuildRequest,
    BuiltFrame,
    StageBuiltFrame,
)
from .runner import Builder, BuildError, Options, Say

if TYPE_CHECKING:
    from .._supervisor import Supervisor

__all__ = ["BuildError", "build"]

_HELD = 8 << 20  # the most output -q keeps for a failure (its newest)


class Streamer(Protocol):
    async def send(self, message: object) -> None: ...

    async def receive(self) -> dict[str, Any] | tuple[int, bytes] | None: ...


def _options(req: BuildRequest) -> Options:
    """The request's options, checked before the context is read."""
    from .._hosts import parse_host
    from .._images.pull import parse_platform
    from .._images.reference import parse_reference
    from .._ulimits import check_ulimit

    tags = []
    for tag in req.tags:
        try:
            ref = parse_reference(tag)
        except ValueError as exc:
            raise ValueError(f"invalid tag {tag!r}: {exc}") from None
        if ref.digest is not None:
            raise ValueError(f"invalid tag {tag!r}: a tag cannot hold a digest")
        tags.append(ref.with_tag(ref.tag or "latest"))
    for name in (*req.build_args, *req.unset_args):
        if not name:
            raise ValueError("a --build-arg has an empty name")
    for host in req.extra_hosts:
        parse_host(host)
    for limit in req.ulimits:
        check_ulimit(limit.name, limit.soft, limit.hard)
    secrets = {}
    for ident, text in req.secrets.items():
        if not ident:
            raise ValueError("a --secret has an empty id")
        try:
            secrets[ident] = base64.b64decode(text, validate=True)
        except ValueError:
            raise ValueError(f"secret {ident!r}: its content is not base64") from None
    return Options(
        tags=tuple(tags),
        build_args=dict(req.build_args),
        unset_args=req.unset_args,
        target=req.target,
        labels=dict(req.labels),
        no_cache=req.no_cache,
        pull=req.pull,
        rm=req.rm,
        force_rm=req.force_rm,
        platform=parse_platform(req.platform) if req.platform else None,
        network=req.network if req.network not in ("", "default") else "bridge",
        extra_hosts=tuple(req.extra_hosts),
        ulimits=tuple(req.ulimits),
        cgroup_parent=req.cgroup_parent,
        cache_from=tuple(req.cache_from),
        secrets=secrets,
    )


async def _receive_context(conn: Streamer, dest: Path) -> None:
    """The stdin byte frames up to an empty one: a tar (plain or compressed), unpacked
    into ``dest``."""
    from .. import _copy

    fd, name = tempfile.mkstemp(dir=dest.parent, prefix="context-")
    tar_path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            while True:
                frame = await conn.receive()
                if frame is None:
                    raise BuildError("the client went away before the end of the context")
                if not isinstance(frame, tuple) or frame[0] != protocol.STDIN:
                    raise BuildError("expected the build context as stdin byte frames")
                if not frame[1]:
                    break
                await trio.to_thread.run_sync(f.write, frame[1])
        root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            await trio.to_thread.run_sync(
                lambda: _copy.extract_archive(
                    root,
                    "/",
                    str(tar_path),
                    container="the build context",
                    ids=_copy.IdMap(),
                    copy_uid_gid=True,
                )
            )
        except _copy.CopyError as exc:
            raise BuildError(f"the build context: {exc}") from None
        finally:
            os.close(root)
    finally:
        # A context of hundreds of MB: its blocks are freed in a worker thread.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: tar_path.unlink(missing_ok=True))


async def _cancel_when_gone(conn: Streamer, scope: trio.CancelScope) -> None:
    """Cancel the build when its client hangs up (boxctl's Ctrl-C), as Docker does; a
    connection whose input has ended for good (HTTP's) is not watched."""
    while (frame := await conn.receive()) is not None:
        if frame == (protocol.STDIN, b""):
            return
    scope.cancel(reason="the client went away")


def _dockerfile(context: Path, name: str) -> str:
    from .._images.unpack import open_in_root

    root = os.open(context, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for candidate in (name,) if name else ("Dockerfile", "dockerfile"):
            try:
                fd = open_in_root(root, candidate, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except IsADirectoryError:
                break
            with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if not text:
                raise BuildError(f"the Dockerfile ({candidate}) cannot be empty")
            return text
    finally:
        os.close(root)
    raise BuildError(f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}")


async def build(sup: Supervisor, conn: Streamer, req: BuildRequest) -> None:
    from .. import _resources
    from .._records import check_shm_size

    options = _options(req)
    # RUN's limits, checked before the context is read (each step's create checks again).
    check_shm_size(req.shm_size)
    resources, warnings = _resources.settle(req.resources, sup.cgroups)
    options = attrs.evolve(options, resources=resources, shm_size=req.shm_size)
    await conn.send(OkResponse())

    # -q: the output is held, and sent only if the build fails (then before its error), as
    # Docker's daemon does; the newest _HELD bytes of it.
    held: collections.deque[str] = collections.deque()
    held_size = 0

    async def say(text: str) -> None:
        nonlocal held_size
        if not req.quiet:
            await conn.send(BuildOutputFrame(stream=text))
            return
        held.append(text)
        held_size += len(text)
        while held_size > _HELD and len(held) > 1:
            held_size -= len(held.popleft())

    for warning in warnings:
        await say(f"WARNING: {warning}\n")
    try:
        image_id = await _build(sup, conn, req, options, say)
    except Exception:
        if held:
            await conn.send(BuildOutputFrame(stream="".join(held)))
        raise
    if not image_id:
        return  # cancelled: the client went away
    await conn.send(BuiltFrame(id=image_id, tags=tuple([str(t) for t in options.tags])))
    await say(f"Successfully built {image_id.removeprefix('sha256:')[:12]}\n")
    for tag in options.tags:
        await say(f"Successfully tagged {tag.familiar}\n")
    await conn.send(EndFrame())


async def _build(
    sup: Supervisor, conn: Streamer, req: BuildRequest, options: Options, say: Say
) -> str:
    """The build of the context the client sends; its image's id ("": cancelled)."""
    work = Path(tempfile.mkdtemp(dir=sup.images.tmp, prefix="build-"))
    try:
        context = work / "context"
        context.mkdir(mode=0o700)
        await _receive_context(conn, context)
        try:
            dockerfile = parse(_dockerfile(context, req.dockerfile))
        except DockerfileError as exc:
            # As Docker's daemon words it: "dockerfile parse error on line 3: unknown
            # instruction: NOINSTRUCTION".
            where, _, what = str(exc).partition(": ")
            if where.startswith("line ") and where[5:].isdigit() and what:
                raise BuildError(f"dockerfile parse error on {where}: {what}") from None
            raise BuildError(f"Dockerfile parse error: {exc}") from None
        if not dockerfile.instructions:
            raise BuildError("Dockerfile parse error: file with no instructions")

        async def stage_built(image_id: str) -> None:
            await conn.send(StageBuiltFrame(id=image_id))

        builder = Builder(sup, context, options, say, stage_built)
        image_id = ""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_gone, conn, nursery.cancel_scope)
            image_id = await builder.build(dockerfile)
            nursery.cancel_scope.cancel(reason="the build is done")
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, work, True)
    return image_id


# The area's interface (boxd._verbareas).
REQUESTS = BUILD_REQUESTS
STREAMS = BUILD_STREAMS
ERRORS: dict[type[Exception], str] = {BuildError: "build", DockerfileError: "build"}


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    async def handle(conn: Streamer, req: BuildRequest) -> None:
        await build(sup, conn, req)

    return {BuildRequest: handle}

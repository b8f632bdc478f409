"""The daemon's image verbs: pull, images, inspect, rmi, tag, login, logout.

The server hands these requests here (see :meth:`ImageVerbs.handlers`); each answers on
the connection it is given, as the container verbs do in :mod:`boxd._server`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .._messages import OkResponse
from .messages import (
    ImageInspectRequest,
    ImageInspectResponse,
    ImagesRequest,
    ImagesResponse,
    ImageSummary,
    LoginRequest,
    LogoutRequest,
    PulledFrame,
    PullProgressFrame,
    PullRequest,
    RemovedImageResponse,
    RemoveImageRequest,
    TagRequest,
)
from .pull import Progress, parse_platform
from .reference import Reference, parse_reference
from .registry import RegistryError, open_registry
from .store import ImageRecord, ImageStore

if TYPE_CHECKING:
    from .._supervisor import Supervisor


class Sender(Protocol):
    async def send(self, message: object) -> None: ...


class ImageInUse(RuntimeError):
    """rmi of an image a container uses (without --force)."""


class ImageVerbs:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    @property
    def store(self) -> ImageStore:
        return self.sup.images

    def handlers(self) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
        return {
            PullRequest: self.pull,
            ImagesRequest: self.images,
            ImageInspectRequest: self.inspect,
            RemoveImageRequest: self.remove,
            TagRequest: self.tag,
            LoginRequest: self.login,
            LogoutRequest: self.logout,
        }

    async def pull(self, conn: Sender, req: PullRequest) -> None:
        ref = parse_reference(req.reference)
        platform = parse_platform(req.platform)
        await conn.send(OkResponse())
        send, receive = trio.open_memory_channel[Progress](1000)

        def report(p: Progress) -> None:
            # Progress is advice: when the client reads slowly, frames are dropped, but a
            # layer's final state is never (those are few).
            with contextlib.suppress(trio.WouldBlock):
                send.send_nowait(p)

        async def forward() -> None:
            async with receive:
                async for p in receive:
                    await conn.send(PullProgressFrame(p.layer, p.status, p.current, p.total))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward)
            async with send:
                record = await self.sup.puller.pull(ref, platform=platform, progress=report)
        digest = next(
            (d.split("@")[1] for d in record.repo_digests if d.startswith(ref.name + "@")), ""
        )
        await conn.send(PulledFrame(id=record.id, digest=digest, reference=str(ref)))

    def _users(self, record: ImageRecord) -> list[str]:
        return [c.name for c in self.sup.list(all=True) if c.config.image_id == record.id]

    def _created(self, record: ImageRecord) -> str:
        with contextlib.suppress(OSError, ValueError):
            return str(self.store.config(record).get("created") or "")
        return ""

    async def images(self, conn: Sender, _: ImagesRequest) -> None:
        summaries = tuple(
            ImageSummary(
                id=r.id,
                repo_tags=r.repo_tags,
                repo_digests=r.repo_digests,
                size=self.store.size(r),
                created=self._created(r),
                containers=len(self._users(r)),
            )
            for r in sorted(self.store.images(), key=lambda r: r.added, reverse=True)
        )
        await conn.send(ImagesResponse(images=summaries))

    async def inspect(self, conn: Sender, req: ImageInspectRequest) -> None:
        record = self.store.lookup(req.image)
        config = self.store.config(record)
        await conn.send(
            ImageInspectResponse(
                image={
                    "Id": record.id,
                    "RepoTags": list(record.repo_tags),
                    "RepoDigests": list(record.repo_digests),
                    "Created": config.get("created", ""),
                    "Architecture": config.get("architecture", ""),
                    "Os": config.get("os", ""),
                    "Size": self.store.size(record),
                    "Config": config.get("config") or {},
                    "RootFS": {
                        "Type": "layers",
                        "Layers": [layer.diff_id for layer in record.layers],
                    },
                    "Layers": [
                        {"Digest": layer.digest, "Size": layer.size, "MediaType": layer.media_type}
                        for layer in record.layers
                    ],
                }
            )
        )

    async def remove(self, conn: Sender, req: RemoveImageRequest) -> None:
        """Docker's rmi: by tag, untag (and delete when no tag is left); by id, delete.
        An image a container uses is not deleted (``-f`` untags it all the same)."""
        record = self.store.lookup(req.image)
        untagged: list[str] = []
        by_tag = None
        with contextlib.suppress(ValueError):
            ref = parse_reference(req.image)
            if str(ref) in record.repo_tags:
                by_tag = str(ref)
        users = self._users(record)
        if by_tag is not None and (len(record.repo_tags) > 1 or users):
            if users and not req.force and len(record.repo_tags) == 1:
                raise ImageInUse(_in_use(req.image, record, users))
            record = self.store.untag(record, by_tag)
            await conn.send(RemovedImageResponse(untagged=(by_tag,), deleted=()))
            return
        if users:
            if not req.force:
                raise ImageInUse(_in_use(req.image, record, users))
            for tag in record.repo_tags:
                self.store.untag(record, tag)
            await conn.send(RemovedImageResponse(untagged=record.repo_tags, deleted=()))
            return
        if by_tag is None and len(record.repo_tags) > 1 and not req.force:
            raise ImageInUse(
                f"unable to delete {record.id[7:19]} (must be forced): the image is "
                f"referenced in several repositories ({', '.join(record.repo_tags)})"
            )
        untagged = list(record.repo_tags)
        layers = self.store.delete(record)
        await conn.send(
            RemovedImageResponse(untagged=tuple(untagged), deleted=(record.id, *layers))
        )

    async def tag(self, conn: Sender, req: TagRequest) -> None:
        record = self.store.lookup(req.source)
        target = parse_reference(req.target)
        if target.digest is not None:
            raise ValueError(f"invalid tag {req.target!r}: a tag cannot hold a digest")
        self.store.tag(record.id, target)
        await conn.send(OkResponse())

    async def login(self, conn: Sender, req: LoginRequest) -> None:
        ref = Reference(_registry(req.registry), "")
        async with open_registry(
            ref,
            insecure=self.sup.puller.insecure,
            credentials=self.sup.puller.credentials,
            user=(req.username, req.password),
        ):
            pass
        self.sup.puller.credentials.set(ref.registry, req.username, req.password)
        await conn.send(OkResponse())

    async def logout(self, conn: Sender, req: LogoutRequest) -> None:
        self.sup.puller.credentials.remove(_registry(req.registry))
        await conn.send(OkResponse())


def _registry(text: str) -> str:
    host = text.removeprefix("https://").removeprefix("http://").rstrip("/") or "docker.io"
    if host in ("index.docker.io", "registry-1.docker.io", "index.docker.io/v1"):
        return "docker.io"
    if "/" in host:
        raise ValueError(f"invalid registry {text!r}: give a host[:port]")
    return host


def _in_use(ref: str, record: ImageRecord, users: list[str]) -> str:
    return (
        f"conflict: unable to remove image {ref} ({record.id[7:19]}): it is used by "
        f"container(s) {', '.join(users)} (remove them first, or --force to untag it)"
    )


__all__ = ["ImageInUse", "ImageVerbs", "RegistryError"]

"""The daemon's image verbs: pull, push, images, inspect, rmi, tag, login, logout.

The server hands these requests here (see :meth:`ImageVerbs.handlers`); each answers on
the connection it is given, as the container verbs do in :mod:`boxd._server`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import trio

from .. import _platforms, _prune, _volserver, protocol
from .._healthcheck import to_api
from .._lifecycle import LIVE, RUNNING, Conflict
from .._logs import format_time
from .._messages import EndFrame, OkResponse
from .._rootfs import root_upper
from .config import (
    DEFAULT,
    DEFAULT_ID,
    EMPTY_CONFIG,
    created_at,
    default_config,
    default_record,
    default_refusal,
    is_default,
    on_default_refusal,
)
from .messages import (
    IMAGE_REQUESTS,
    IMAGE_STREAMS,
    MISSING,
    CommitRequest,
    CommitResponse,
    DistributionRequest,
    DistributionResponse,
    ExportRequest,
    HistoryRequest,
    HistoryResponse,
    ImageInspectRequest,
    ImageInspectResponse,
    ImagesRequest,
    ImagesResponse,
    ImageSummary,
    ImportRequest,
    LoadedFrame,
    LoadedImage,
    LoadRequest,
    LoginRequest,
    LogoutRequest,
    PruneImagesRequest,
    PulledFrame,
    PullingFrame,
    PullProgressFrame,
    PullRequest,
    PushRequest,
    RemovedImageResponse,
    RemoveImageRequest,
    SaveRequest,
    SystemDfRequest,
    SystemDfResponse,
    TagRequest,
)
from .pull import Platform, Progress, parse_platform
from .reference import Reference, is_registry, matching, parse_reference
from .registry import RegistryError, open_registry
from .store import ImageInUse, ImageRecord, ImageStore, NoSuchImage, written_size

if TYPE_CHECKING:
    from .._supervisor import Supervisor


class Sender(Protocol):
    async def send(self, message: object) -> None: ...


class Streamer(Sender, Protocol):
    """A connection that also carries byte frames (save, load, import)."""

    async def send_bytes(self, stream_id: int, data: bytes) -> None: ...

    async def receive(self) -> dict[str, Any] | tuple[int, bytes] | None: ...


class ImageVerbs:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    @property
    def store(self) -> ImageStore:
        return self.sup.images

    def handlers(self) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
        return {
            PullRequest: self.pull,
            PushRequest: self.push,
            ImagesRequest: self.images,
            ImageInspectRequest: self.inspect,
            DistributionRequest: self.distribution,
            RemoveImageRequest: self.remove,
            TagRequest: self.tag,
            LoginRequest: self.login,
            LogoutRequest: self.logout,
            SaveRequest: self.save,
            LoadRequest: self.load,
            ImportRequest: self.import_,
            CommitRequest: self.commit,
            HistoryRequest: self.history,
            PruneImagesRequest: self.prune,
            SystemDfRequest: self.df,
            ExportRequest: self.export,
        }

    async def pull(self, conn: Sender, req: PullRequest) -> None:
        ref = parse_reference(req.reference, default_tag=not req.all_tags)
        platform = parse_platform(req.platform)
        user = (req.username, req.password) if req.username else None
        if not req.all_tags:
            await conn.send(OkResponse())
            await self._pull_one(conn, ref, platform, user)
            return
        if ref.tag is not None or ref.digest is not None:
            raise ValueError("tag can't be used with --all-tags/-a")  # Docker's words
        if is_default(str(ref.with_tag("latest"))):  # built in: its one tag
            tags = ["latest"]
        else:
            tags = await self.sup.puller.tags(ref, user)
        await conn.send(OkResponse())
        for tag in tags:
            await conn.send(PullingFrame(tag=tag))
            await self._pull_one(conn, ref.with_tag(tag), platform, user)
        await conn.send(EndFrame())

    async def _pull_one(
        self,
        conn: Sender,
        ref: Reference,
        platform: Platform | None,
        user: tuple[str, str] | None,
    ) -> None:
        """One reference's pull: its progress frames, then its PulledFrame."""
        if is_default(str(ref)):  # built in: always here, as it is
            await conn.send(PulledFrame(id=DEFAULT_ID, digest="", reference="default:latest"))
            return
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
                pulled = await self.sup.puller.pull(
                    ref, platform=platform, progress=report, user=user
                )
        image_event(self.sup, "pull", pulled.record.id, ref.familiar, ref.familiar_name)
        await conn.send(
            PulledFrame(
                id=pulled.record.id,
                digest=pulled.digest,
                reference=str(ref),
                downloaded=pulled.fetched,
            )
        )

    async def push(self, conn: Sender, req: PushRequest) -> None:
        from . import push  # on first use

        await push.serve(self.sup, conn, req)

    def _users(self, record: ImageRecord) -> list[str]:
        if record.id == DEFAULT_ID:
            return [c.name for c in self.sup.list(all=True) if c.config.image == DEFAULT]
        return [c.name for c in self.sup.list(all=True) if record.id in c.config.image_ids]

    def _config_of(self, record: ImageRecord) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return self.store.config(record)
        return {}

    def _found(self, name: str) -> tuple[ImageRecord, dict[str, Any]]:
        """The image ``name`` names, the built-in one too, and its configuration."""
        if is_default(name):
            return default_record(), default_config()
        record = self.store.lookup(name)
        return record, self.store.config(record)

    async def images(self, conn: Sender, req: ImagesRequest) -> None:
        """The stored images and the built-in one, as the filters select them; as Docker
        lists them, not an untagged one that others were committed from unless ``all``."""
        stored = self.store.images()
        parents = {r.parent for r in stored}
        holders = collections.Counter(d for r in stored for d in {x.diff_id for x in r.layers})
        configs = {r.id: self._config_of(r) for r in stored}
        configs[DEFAULT_ID] = default_config()
        records = [*stored, default_record()]
        # Newest first by the image's created time, as Docker lists them (not by when it
        # came here: a pull of an old image lists it with the old ones).
        records.sort(key=lambda r: (created_at(configs[r.id]), r.added), reverse=True)
        keep = _image_filter(req.filters, self.store, configs, parents)
        records = [
            r
            for r in records
            if keep(r) and (req.all or r.repo_tags or r.repo_digests or r.id not in parents)
        ]
        await self.sup.unpacks.settled(records)  # the sizes of their layers
        # Each layer's size read once (its record is a file): for the totals and shares.
        layer_size = functools.cache(self.store.layer_size)

        def shared(record: ImageRecord) -> int:
            diff_ids = {layer.diff_id for layer in record.layers}
            return sum(layer_size(d) for d in diff_ids if holders[d] > 1)

        # With a reference filter an image shows only the names it matched, as Docker's.
        references = req.filters.get("reference", ())

        def names(found: tuple[str, ...]) -> tuple[str, ...]:
            return matching(found, references) if references else found

        summaries = tuple(
            [
                ImageSummary(
                    id=r.id,
                    repo_tags=names(r.repo_tags),
                    parent=r.parent,
                    repo_digests=names(r.repo_digests),
                    size=sum(layer_size(layer.diff_id) for layer in r.layers),
                    created=str(configs[r.id].get("created") or ""),
                    containers=len(self._users(r)),
                    labels=dict((configs[r.id].get("config") or {}).get("Labels") or {}),
                    shared_size=shared(r),
                )
                for r in records
            ]
        )
        await conn.send(ImagesResponse(images=summaries))

    async def inspect(self, conn: Sender, req: ImageInspectRequest) -> None:
        record, config = self._found(req.image)
        await self.sup.unpacks.settled([record])
        await conn.send(
            ImageInspectResponse(
                image={
                    "Id": record.id,
                    "RepoTags": list(record.repo_tags),
                    "RepoDigests": list(record.repo_digests),
                    "Parent": record.parent,
                    "Created": config.get("created", ""),
                    "Architecture": config.get("architecture", ""),
                    "Os": config.get("os", ""),
                    **({"Variant": config["variant"]} if config.get("variant") else {}),
                    "Comment": config.get("comment", ""),
                    "DockerVersion": config.get("docker_version", ""),
                    "Author": config.get("author", ""),
                    "Size": self.store.size(record),
                    "Config": {**EMPTY_CONFIG, **(config.get("config") or {})},
                    # The config of the container that made it (Docker's classic builder
                    # and commit wrote one; boxd's do not).
                    "ContainerConfig": config.get("container_config") or {},
                    "GraphDriver": {"Name": "overlay2", "Data": self._layer_dirs(record)},
                    "RootFS": {
                        "Type": "layers",
                        "Layers": [layer.diff_id for layer in record.layers],
                    },
                    "Metadata": {
                        "LastTagTime": format_time(round(record.tagged * 1e9))
                        if record.tagged
                        else "0001-01-01T00:00:00Z"  # Go's zero time, as Docker's
                    },
                    "Layers": [
                        {"Digest": layer.digest, "Size": layer.size, "MediaType": layer.media_type}
                        for layer in record.layers
                    ],
                }
            )
        )

    def _layer_dirs(self, record: ImageRecord) -> dict[str, str] | None:
        """Where the image's layers are unpacked, as Docker's GraphDriver.Data names them:
        the top one (UpperDir) and those below, top-most first (LowerDir); None for one
        of no layer of its own (default) or whose layers are not all here."""
        try:
            top, *below = self.store.lowers(record)
        except (NoSuchImage, ValueError):
            return None
        return {"UpperDir": top, **({"LowerDir": ":".join(below)} if below else {})}

    async def distribution(self, conn: Sender, req: DistributionRequest) -> None:
        ref = parse_reference(req.reference)
        user = (req.username, req.password) if req.username else None
        media, digest, size, platforms = await self.sup.puller.distribution(ref, user)
        await conn.send(DistributionResponse(media, digest, size, tuple(platforms)))

    async def remove(self, conn: Sender, req: RemoveImageRequest) -> None:
        """Docker's rmi.  By tag: untag, and delete the image with its last tag.  By id:
        every tag, then the image.  A container using the image makes it a conflict; with
        ``-f`` a stopped container's image is removed all the same (hidden, its layers kept
        until the container goes: the container keeps working), a running container's
        never: by id it is refused, by tag only the tag goes, as Docker does.  An image
        that others were committed from (their Parent) is never deleted: by id it is
        refused even with ``-f``, by tag only the tag goes.  Then (``prune``) the untagged
        images it came from that nothing else uses go too.  The built-in image default is
        not in the store: refused as such, not as unknown."""
        if not req.image.strip():
            raise ValueError("image name cannot be blank")  # dockerd's words
        if is_default(req.image):
            raise Conflict(default_refusal("removed"))
        record = self.store.lookup(req.image)
        children = self._children(record)
        by_ref = None  # the tag or repo digest it was named by (else: by id)
        with contextlib.suppress(ValueError):
            ref = parse_reference(req.image)
            name = str(ref) if ref.digest is None else f"{ref.name}@{ref.digest}"
            if name in (*record.repo_tags, *record.repo_digests):
                by_ref = name
        users = [c for c in self.sup.list(all=True) if record.id in c.config.image_ids]
        running = [c for c in users if c.state.status in LIVE]
        single = _single_reference(record)
        untagged: tuple[str, ...] = ()
        if by_ref is not None:
            if users and not req.force and single:
                raise ImageInUse(
                    f'conflict: unable to remove repository reference "{req.image}" (must '
                    f"force) - container {users[0].id[:12]} is using its referenced image "
                    f"{record.id[7:19]}"
                )
            before = (*record.repo_tags, *record.repo_digests)
            record = self.store.untag(record, by_ref)
            # With its repository's last tag, the repository's digests (as Docker's).
            left = (*record.repo_tags, *record.repo_digests)
            untagged = tuple([r for r in before if r not in left])
            for _ in untagged:
                image_event(self.sup, "untag", record.id)
            # Docker leaves an image still named, a running container's, one with children.
            if record.repo_tags or record.repo_digests or running or children:
                await conn.send(RemovedImageResponse(untagged=untagged, deleted=()))
                return
        else:
            conflict = ""
            if children:
                conflict = "cannot be forced) - image has dependent child images"
            elif running:
                conflict = "cannot be forced) - image is being used by running container"
            elif record.repo_tags + record.repo_digests and not single and not req.force:
                conflict = "must be forced) - image is referenced in multiple repositories"
            elif users and not req.force:
                conflict = "must be forced) - image is being used by stopped container"
            if conflict:
                who = f" {(running or users)[0].id[:12]}" if conflict.endswith("container") else ""
                raise ImageInUse(f"conflict: unable to delete {record.id[7:19]} ({conflict}{who}")
            untagged = (*record.repo_tags, *record.repo_digests)
            for _ in untagged:
                image_event(self.sup, "untag", record.id)
        if users:
            async with self.sup.puller.lock:
                self.store.retire(record)
            self.sup.events.image("delete", record.id, record.id)
            deleted: tuple[str, ...] = (record.id,)
        else:
            deleted, _ = await self._delete(record)
        if req.prune:
            deleted += (await self._prune_parents(record))[0]
        await conn.send(RemovedImageResponse(untagged=untagged, deleted=deleted))

    async def _delete(self, record: ImageRecord) -> tuple[tuple[str, ...], int]:
        """Delete an image no container uses: its id and the layers that went with it, top
        first, by the ids Docker names them by (their ChainIDs: a layer over others no
        other image has, though its directory stays for an image that has it over other
        layers), and the bytes of the layers deleted."""
        deleted = await self.sup.puller.delete(record)
        self.sup.events.image("delete", record.id, record.id)
        return (record.id, *deleted.chains), deleted.size

    def _children(self, record: ImageRecord) -> list[ImageRecord]:
        """The stored images committed from ``record`` (their Parent)."""
        return [r for r in self.store.images() if r.parent == record.id]

    async def _prune_parents(self, record: ImageRecord) -> tuple[tuple[str, ...], int]:
        """After ``record``'s deletion, the image it was committed from, and so on up,
        while one is untagged and no container nor other image uses it (Docker's rmi
        without --no-prune, and its prune): what was deleted (see :meth:`_delete`)."""
        deleted: tuple[str, ...] = ()
        reclaimed = 0
        while record.parent and record.parent != DEFAULT_ID:
            try:
                record = self.store.get(record.parent)
            except NoSuchImage:
                break
            if record.repo_tags or record.repo_digests or self._users(record):
                break
            if self._children(record):
                break
            ids, size = await self._delete(record)
            deleted += ids
            reclaimed += size
        return deleted, reclaimed

    async def tag(self, conn: Sender, req: TagRequest) -> None:
        if is_default(req.source):
            raise ValueError(default_refusal("tagged (build FROM default to name an image on it)"))
        record = self.store.lookup(req.source)
        target = parse_reference(req.target)
        if target.digest is not None:
            raise ValueError(f"invalid tag {req.target!r}: a tag cannot hold a digest")
        self.store.tag(record.id, target)
        image_event(self.sup, "tag", record.id, name=target.familiar)
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

    # ---- archives -------------------------------------------------------------------

    async def save(self, conn: Streamer, req: SaveRequest) -> None:
        from . import archive  # tarfile and zstandard: on first use

        images: dict[str, tuple[ImageRecord, list[Reference]]] = {}
        for text in req.images:
            if is_default(text):
                raise ValueError(default_refusal("saved"))
            for record, ref in self._saved_as(text):
                if record.base:
                    raise ValueError(on_default_refusal(text, "saved"))
                refs = images.setdefault(record.id, (record, []))[1]
                if ref is not None:
                    refs.append(ref)
        # A name given twice (or a tag and its image's digest) is one tag, as Docker's.
        named = [(record, list(dict.fromkeys(refs))) for record, refs in images.values()]
        await self._send_archive(conn, lambda out: archive.save(self.store, named, out))
        for image_id in images:
            image_event(self.sup, "save", image_id)

    def _saved_as(self, text: str) -> list[tuple[ImageRecord, Reference | None]]:
        """The images ``save TEXT`` writes, each with the tag it names it by, as Docker's:
        a repository without a tag, every tag of it (whichever image each names); a tag,
        that one; an ID or ``NAME@DIGEST``, the image without a tag."""
        try:
            ref: Reference | None = parse_reference(text)
        except ValueError:  # an id (prefix) only
            ref = None
        if ref is not None and ref.digest is None and ":" not in text.rpartition("/")[2]:
            tagged: list[tuple[ImageRecord, Reference | None]] = [
                (record, tag)
                for record in self.store.images()
                for tag in map(parse_reference, record.repo_tags)
                if tag.name == ref.name
            ]
            if tagged:
                return tagged
        record = self.store.lookup(text)
        if ref is not None and ref.digest is None and str(ref) in record.repo_tags:
            return [(record, ref)]
        return [(record, None)]

    async def _send_archive(self, conn: Streamer, write: Callable[[BinaryIO], None]) -> None:
        """``write`` an archive to a temporary file in a thread, then stream it as byte
        frames after an OkResponse (a failure while writing is still an error answer)."""
        fd, path = self.store.temp_file()

        def write_file() -> None:
            with os.fdopen(fd, "wb") as out:
                write(out)

        try:
            await trio.to_thread.run_sync(write_file)
            await conn.send(OkResponse())
            async with await trio.open_file(path, "rb") as f:
                while chunk := await f.read(CHUNK):
                    await conn.send_bytes(protocol.STDOUT, chunk)
        finally:
            path.unlink(missing_ok=True)
        await conn.send(EndFrame())

    async def _receive_file(self, conn: Streamer) -> Path:
        """The stdin byte frames of the client, up to an empty one, into a temp file."""
        fd, path = self.store.temp_file()
        try:
            while True:
                frame = await conn.receive()
                if frame is None:
                    raise ValueError("the client went away before the end of the archive")
                if not isinstance(frame, tuple) or frame[0] != protocol.STDIN:
                    raise ValueError("expected the archive as stdin byte frames")
                if not frame[1]:
                    return path
                await trio.to_thread.run_sync(_write_all, fd, frame[1])
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    async def load(self, conn: Streamer, req: LoadRequest) -> None:
        from . import archive  # tarfile and zstandard: on first use

        if req.platform:
            _platforms.parse(req.platform)  # a bad one: refused before the archive is sent
        await conn.send(OkResponse())
        path = await self._receive_file(conn)
        try:
            loaded = await trio.to_thread.run_sync(archive.load, self.store, path, req.platform)
        finally:
            path.unlink(missing_ok=True)
        for image in loaded:
            image_event(self.sup, "load", image.id)
        await conn.send(LoadedFrame(images=tuple(loaded)))

    async def import_(self, conn: Streamer, req: ImportRequest) -> None:
        from . import archive  # tarfile and zstandard: on first use

        ref = parse_reference(req.reference) if req.reference else None
        platform = _platforms.of_import(req.platform) if req.platform else _platforms.host()
        inner: dict[str, Any] = {}
        _changed(inner, req.changes)
        await conn.send(OkResponse())
        path = await self._receive_file(conn)
        try:
            record = await trio.to_thread.run_sync(
                archive.import_rootfs,
                self.store,
                path,
                ref,
                inner,
                req.comment or "Imported from -",
                platform,
            )
        finally:
            path.unlink(missing_ok=True)
        tags = (ref.familiar,) if ref else ()
        for tag in tags:
            image_event(self.sup, "tag", record.id, name=tag)
        image_event(self.sup, "import", record.id)
        await conn.send(LoadedFrame(images=(LoadedImage(id=record.id, tags=tags),)))

    async def commit(self, conn: Sender, req: CommitRequest) -> None:
        from . import archive  # tarfile and zstandard: on first use

        c = self.sup.inspect(req.container)
        if not c.config.image_id and c.config.image != DEFAULT:
            raise ValueError(
                f"container {c.name} runs on the root directory {c.config.image}, not an "
                "image: only containers of stored images and of default can be committed"
            )
        ref = parse_reference(req.reference) if req.reference else None
        # On default: the new image is based on it (archive.commit over None).
        parent = self.store.for_container(c.config.image_id) if c.config.image_id else None
        cfg = c.config
        entrypoint = list(cfg.entrypoint or ())
        inner: dict[str, Any] = {
            "Env": list(cfg.env),
            "Cmd": list(cfg.command[len(entrypoint) :]) or None,
            "Entrypoint": entrypoint or None,
            "WorkingDir": cfg.workdir,
            "User": cfg.user,
            "Labels": dict(label.partition("=")[::2] for label in cfg.labels) or None,
            "ExposedPorts": {p: {} for p in cfg.exposed_ports} or None,
        }
        if cfg.stop_signal != "SIGTERM":
            inner["StopSignal"] = cfg.stop_signal
        # As Docker's commit merges them in: the container's health check (the image's,
        # under its own), and its declared volumes (its Config.Volumes: the anonymous ones
        # asked for, -v PATH, and the image's; anonymous ones again at each run).
        if cfg.healthcheck is not None:
            inner["Healthcheck"] = to_api(cfg.healthcheck)
        volumes = list(cfg.declared_volumes)
        if parent is not None:
            volumes += (self.store.config(parent).get("config") or {}).get("Volumes") or {}
        inner["Volumes"] = {path: {} for path in volumes} or None
        inner = {k: v for k, v in inner.items() if v is not None}
        if req.config is None:
            _changed(inner, req.changes)
        else:  # Docker's: the changes apply to the given configuration, then the merge
            given = dict(req.config)
            _changed(given, req.changes)
            inner = _merged(given, inner)
        history = {
            "created_by": " ".join(cfg.command[len(entrypoint) :]),
            "comment": req.comment,
            "author": req.author,
        }
        uppers = self.sup.uppers(c.id)
        upper = archive.container_upper(c.config.userns)
        async with self._paused(c.id if req.pause else None):
            record = await trio.to_thread.run_sync(
                archive.commit, self.store, parent, uppers, inner, ref, history, upper
            )
        image_event(self.sup, "create", record.id)  # Docker 26's (API 1.46)
        if ref is not None:
            image_event(self.sup, "tag", record.id, name=ref.familiar)
        attributes = {"comment": req.comment, "imageID": record.id}
        self.sup.events.report("commit", c, **attributes, imageRef=ref.familiar if ref else "")
        await conn.send(CommitResponse(id=record.id))

    @contextlib.asynccontextmanager
    async def _paused(self, cid: str | None) -> AsyncIterator[None]:
        """Container ``cid`` (None: none) frozen meanwhile if it runs, as Docker's commit
        does by default, so that its files are read as they were at one moment."""
        if cid is None or self.sup.inspect(cid).state.status is not RUNNING:
            yield
            return
        try:
            await self.sup.pause(cid, for_commit=True)
        except Conflict:  # it ended (or was paused) meanwhile: nothing of it runs on
            paused = False
        else:
            paused = True
        try:
            yield
        finally:
            if paused:
                with contextlib.suppress(Conflict):  # it was killed meanwhile
                    await self.sup.unpause(cid)

    async def history(self, conn: Sender, req: HistoryRequest) -> None:
        record, config = self._found(req.image)
        # Each entry that made a layer (not `empty_layer`) is the next layer's, in order:
        # its size is that layer's unpacked size, as Docker's history shows.
        layers = iter(record.layers)
        rows = []
        for entry in config.get("history") or ():
            row = dict(entry)
            if not entry.get("empty_layer"):
                layer = next(layers, None)
                row["size"] = 0 if layer is None else self.store.layer_size(layer.diff_id)
            rows.append(row)
        # The image's id on its top row, then the image it was committed or built from
        # and so on while they are here, each on the row its own history ends at (a
        # build's base many rows down); the rows between, "<missing>".
        images: list[tuple[str, tuple[str, ...]]] = [(MISSING, ())] * len(rows)
        if rows:
            images[0] = (record.id, record.repo_tags)
        seen = {record.id}
        while record.parent and record.parent not in seen:
            try:
                record, config = self._found(record.parent)
            except NoSuchImage:
                break
            seen.add(record.id)
            top = len(rows) - len(config.get("history") or ())  # its history's last row
            if 0 <= top < len(rows) and images[top][0] == MISSING:  # (a child's if the same:
                images[top] = (record.id, record.repo_tags)  # a build's --label)
        await conn.send(HistoryResponse(history=tuple(reversed(rows)), images=tuple(images)))

    async def prune(self, conn: Sender, req: PruneImagesRequest) -> None:
        """Images no container uses: untagged ones (with ``all``, tagged ones too), but not
        one that others were committed from; as Docker's, the untagged images that a
        deleted one was committed from go too (see :meth:`_prune_parents`), and with
        ``all`` a tagged one once its children went (passes until one deletes nothing)."""
        used = self.sup.images_in_use()
        only = _prune.parse(req.filters, time.time())
        untagged: list[str] = []
        deleted: list[str] = []
        reclaimed = 0
        before = -1
        while len(deleted) != before:
            before = len(deleted)
            stored = self.store.images()
            parents = {r.parent for r in stored}  # as the pass began: the next one sees less
            for record in stored:
                if record.id in deleted or record.id in used or record.id in parents:
                    continue
                if record.repo_tags and not req.all:
                    continue
                config = self.store.config(record)
                labels = (config.get("config") or {}).get("Labels") or {}
                if not only.selects(created_at(config), labels):
                    continue
                untagged.extend((*record.repo_tags, *record.repo_digests))
                for _ in (*record.repo_tags, *record.repo_digests):
                    image_event(self.sup, "untag", record.id)
                for ids, size in (await self._delete(record), await self._prune_parents(record)):
                    deleted.extend(ids)
                    reclaimed += size
        if deleted:
            from .._build.runner import forget_gone_steps

            await trio.to_thread.run_sync(forget_gone_steps, self.store)
        self.sup.events.pruned("image", reclaimed)
        await conn.send(
            RemovedImageResponse(
                untagged=tuple(untagged), deleted=tuple(deleted), reclaimed=reclaimed
            )
        )

    async def df(self, conn: Sender, _: SystemDfRequest) -> None:
        """Disk use, the built-in image counted among the images (as the lists show it)."""
        containers = self.sup.list(all=True)
        used = self.sup.images_in_use()
        used |= {DEFAULT_ID for c in containers if c.config.image == DEFAULT}
        records = [*self.store.images(), default_record()]
        await self.sup.unpacks.settled(records)
        sizes = {
            layer.diff_id: self.store.layer_size(layer.diff_id)
            for record in records
            for layer in record.layers
        }
        kept = {layer.diff_id for r in records if r.id in used for layer in r.layers}
        dirs = [(self.sup.store.container_dir(c.id), bool(c.state.pid)) for c in containers]

        def written() -> tuple[int, int]:
            """Bytes the containers wrote, and those the ones not running wrote."""
            each = [(written_size(d), running) for d, running in dirs]
            return sum(n for n, _ in each), sum(n for n, running in each if not running)

        written_total, written_idle = await trio.to_thread.run_sync(written)
        volumes = await _volserver.sizes(self.sup)
        await conn.send(
            SystemDfResponse(
                images=len(records),
                images_active=sum(1 for r in records if r.id in used),
                images_size=sum(sizes.values()),
                images_reclaimable=sum(n for d, n in sizes.items() if d not in kept),
                layers=len(sizes),
                containers=len(containers),
                containers_running=sum(1 for c in containers if c.state.pid),
                containers_size=written_total,
                containers_reclaimable=written_idle,
                volumes=len(volumes),
                volumes_active=sum(1 for v in volumes if v.users),
                volumes_size=sum(v.size for v in volumes),
                volumes_reclaimable=sum(v.size for v in volumes if not v.users),
            )
        )

    async def export(self, conn: Streamer, req: ExportRequest) -> None:
        from . import archive  # tarfile and zstandard: on first use

        c = self.sup.inspect(req.container)
        if c.config.image_id:
            record = self.store.for_container(c.config.image_id)
            if record.base:
                raise ValueError(
                    f"container {c.name}: {on_default_refusal(c.config.image, 'exported')}"
                )
            lowers = list(self.store.lowers(record))
        elif c.config.image.startswith("/"):
            lowers = [c.config.image]
        else:
            raise ValueError(
                f"container {c.name} runs on the image default (the host's /usr): "
                "export takes containers of stored images and root directories"
            )
        upper = root_upper(self.sup.store.container_dir(c.id))
        dirs = ([str(upper)] if upper.is_dir() else []) + lowers
        top = archive.container_upper(c.config.userns) if upper.is_dir() else archive.LAYER
        await self._send_archive(conn, lambda out: archive.export_merged(dirs, out, top))


CHUNK = 1 << 20


def image_event(
    sup: Supervisor, action: str, image_id: str, actor: str = "", name: str = ""
) -> None:
    """An image's event as Docker's: with the image's labels while it is stored; its
    actor and name the image's id unless given (a pull's and a push's reference)."""
    labels: dict[str, str] = {}
    with contextlib.suppress(NoSuchImage, OSError, ValueError):
        config = sup.images.config(sup.images.get(image_id)).get("config") or {}
        labels = {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}
    sup.events.image(action, actor or image_id, name or image_id, labels)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _registry(text: str) -> str:
    host = text.removeprefix("https://").removeprefix("http://").rstrip("/") or "docker.io"
    if host in ("index.docker.io", "registry-1.docker.io", "index.docker.io/v1"):
        return "docker.io"
    if not is_registry(host):  # a path, a space, a control or non-ASCII character
        raise ValueError(f"invalid registry {text!r}: give a host[:port]")
    return host


def _single_reference(record: ImageRecord) -> bool:
    """Whether the image is named once, as Docker's rmi counts it: one tag or digest, or
    a tag and digests of its repository (or digests of one repository)."""
    refs = (*record.repo_tags, *record.repo_digests)
    if len(refs) <= 1:
        return len(refs) == 1
    if len(record.repo_tags) > 1:
        return False
    repos = {d.partition("@")[0] for d in record.repo_digests}
    tagged = {t.rpartition(":")[0] for t in record.repo_tags}
    return len(repos) == 1 and tagged <= repos


# The area's interface (boxd._verbareas).
REQUESTS = IMAGE_REQUESTS
STREAMS = IMAGE_STREAMS
ERRORS: dict[type[Exception], str] = {ImageInUse: "conflict"}


def handlers(sup: Supervisor) -> dict[type[Any], Callable[[Any, Any], Awaitable[None]]]:
    return ImageVerbs(sup).handlers()


__all__ = ["ImageInUse", "ImageVerbs", "RegistryError"]


_IMAGE_FILTERS = ("before", "dangling", "label", "reference", "since", "until")


def _image_filter(
    filters: dict[str, tuple[str, ...]],
    store: ImageStore,
    configs: dict[str, dict[str, Any]],
    parents: set[str],
) -> Callable[[ImageRecord], bool]:
    """Docker's image list filters as a test of a record (``configs``: each image's
    configuration by id; ``until`` read as prune reads it; ``parents``: the ids of the
    images others were committed from, which are not dangling).  An unknown key, a
    dangling value that is no boolean, a bad time or a before/since image that is not
    there is a ValueError (LookupError) naming it."""
    for key in filters:
        if key not in _IMAGE_FILTERS:
            raise ValueError(f"invalid filter '{key}' (use {', '.join(_IMAGE_FILTERS)})")
    dangling = {v.lower() for v in filters.get("dangling", ())}
    if dangling - {"true", "false", "1", "0"}:
        raise ValueError(f"invalid filter 'dangling={sorted(dangling)[0]}': use true or false")
    bounds = []
    for key in ("before", "since"):
        for ref in filters.get(key, ()):
            image_id = DEFAULT_ID if is_default(ref) else store.lookup(ref).id
            bounds.append((key, created_at(configs.get(image_id) or {})))
    # Several untils are all applied, the earliest deciding, as dockerd's list takes them
    # (prune refuses more than one).
    now = time.time()
    bounds += [("before", _prune.parse_time(text, now)) for text in filters.get("until", ())]
    by_label = _prune.parse({k: filters[k] for k in ("label",) if k in filters}, now)
    references = filters.get("reference", ())

    def keep(record: ImageRecord) -> bool:
        config = configs.get(record.id) or {}
        # As Docker's: dangling, no tag and no child image; not dangling, some reference.
        if dangling & {"true", "1"}:
            if record.repo_tags or record.id in parents:
                return False
        elif dangling and not (record.repo_tags or record.repo_digests):
            return False
        created = created_at(config)
        for key, at in bounds:
            if (created >= at) if key == "before" else (created <= at):
                return False
        if not by_label.selects(created, (config.get("config") or {}).get("Labels") or {}):
            return False
        return not references or bool(
            matching((*record.repo_tags, *record.repo_digests), references)
        )

    return keep


def _merged(given: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """A commit's configuration ``given`` filled in from the ``container``'s, as Docker's
    commit merges them: what ``given`` leaves empty is the container's; its environment
    variables, labels, exposed ports and volumes are added to the container's (the same
    names: its own); the container's command only when it gives no entrypoint and no
    command, its entrypoint only when it gives none."""
    found = dict(given)
    for key in ("User", "WorkingDir", "StopSignal", "Healthcheck"):
        if not found.get(key) and container.get(key):
            found[key] = container[key]
    own = list(found.get("Env") or ())
    names = {item.partition("=")[0] for item in own}
    env = own + [e for e in container.get("Env") or () if e.partition("=")[0] not in names]
    if env:
        found["Env"] = env
    for key in ("Labels", "ExposedPorts", "Volumes"):
        merged = {**(container.get(key) or {}), **(found.get(key) or {})}
        if merged:
            found[key] = merged
    if not found.get("Entrypoint"):
        if not found.get("Cmd") and container.get("Cmd"):
            found["Cmd"] = container["Cmd"]
        if found.get("Entrypoint") is None and container.get("Entrypoint"):
            found["Entrypoint"] = container["Entrypoint"]
    return found


def _changed(inner: dict[str, Any], changes: tuple[str, ...]) -> None:
    """``--change`` lines applied to an image's ``config`` (a bad one is a ValueError
    naming it, before anything is made)."""
    if changes:
        from .._build.instructions import apply_changes  # the Dockerfile parser: on first use

        apply_changes(inner, changes)

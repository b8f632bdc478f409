"""``push``: a stored image to a registry, as the distribution spec and ``docker push`` do.

Per layer: a HEAD skips what the repository has (``Layer already exists``); a blob that
another repository of the same registry holds (an image pulled from or pushed to it, as
the image records' repo digests tell) is mounted from there (``Mounted from NAME``); any
other is uploaded: a POST begins the upload, one PUT sends the bytes with their digest.
Then the config blob, then the manifest under the tag, with its media type.

The stored blobs are pushed unchanged, so the config's digest (the image id) and the
layers' digests stay what they were.  A layer kept only as a plain tar (``commit``,
``import`` or ``load`` of an uncompressed layer) is pushed gzipped, as Docker pushes: the
gzip blob is made once, stored beside the plain one (:meth:`ImageStore.set_twin`), and
pushed every time after, so a second push sends the same bytes, skips every layer, and
the manifest's digest is the same.  Nothing is written locally but that gzip blob (whole,
renamed into place) and, after the manifest is stored, the image's new repo digest.

Docker Hub is refused before any request: no boxd test or user expects a push to leave
for it, and its ``library/`` namespace is not anyone's to push to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import attrs
import trio

from .._messages import EndFrame, OkResponse
from .config import default_refusal, is_default, on_default_refusal
from .messages import PushedFrame, PushingFrame, PushProgressFrame, PushRequest
from .pull import DOCKER_MANIFEST, OCI_MANIFEST, PARALLEL, Progress, _leaves, retrying
from .reference import DEFAULT_REGISTRY, Reference, parse_reference
from .registry import Registry, RegistryError, open_registry
from .store import BlobRef, ImageRecord, ImageStore, NoSuchImage
from .verbs import image_event

if TYPE_CHECKING:
    from .._supervisor import Supervisor
    from .verbs import Sender

__all__ = ["NotLocal", "serve"]

CHUNK = 1 << 20
PROGRESS_EVERY = 0.1  # seconds between two progress reports of one layer
UPLOAD_ATTEMPTS = 5  # a layer's uploads, the next after 5, 10, 15 ... s (Docker's default)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

ProgressFn = Callable[[Progress], None]


class NotLocal(NoSuchImage):
    """No stored image has the tag (Docker's words)."""

    def __init__(self, name: str) -> None:
        LookupError.__init__(self, f"An image does not exist locally with the tag: {name}")


@attrs.frozen
class Blob:
    """A layer as it is pushed: the stored blob and what the manifest says of it."""

    digest: str
    size: int
    zstd: bool


def _targets(store: ImageStore, req: PushRequest) -> list[tuple[Reference, ImageRecord]]:
    """The tags to push and their images: the one named (``latest`` if none), or with
    ``all_tags`` every stored tag of the repository."""
    ref = parse_reference(req.reference)
    named = req.reference.rpartition("/")[2]
    if is_default(str(ref)):
        raise ValueError(default_refusal("pushed"))
    if ref.digest is not None:
        raise ValueError(f"cannot push a digest reference: {req.reference}")
    if req.all_tags and ":" in named:
        raise ValueError(f"tag can't be used with --all-tags/-a: {req.reference}")
    found = []
    for record in store.images():
        for tag in record.repo_tags:
            other = parse_reference(tag)
            if other.name != ref.name:
                continue
            if req.all_tags or other.tag == ref.tag:
                found.append((other, record))
    if not found:
        raise NotLocal(req.reference)
    if ref.registry == DEFAULT_REGISTRY:
        raise ValueError(
            f"boxd does not push to Docker Hub ({ref.familiar} names docker.io): tag the "
            f"image with your registry's host and push that "
            f"(boxctl tag {ref.familiar} HOST[:PORT]/{ref.repository.removeprefix('library/')})"
        )
    return sorted(found, key=lambda found: str(found[0]))


def _gzip(store: ImageStore, digest: str) -> tuple[str, int]:
    """The gzip blob of a plain tar blob: made once (gzip as Go's default level writes it,
    no name, time 0: the same bytes each time), stored, and recorded as its twin."""
    known = store.twin(digest)
    if known is not None:
        return known
    fd, tmp = store.temp_file()
    sha = hashlib.sha256()
    size = 0
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    try:
        with open(fd, "wb") as out, open(store.blob_path(digest), "rb") as src:
            while chunk := src.read(CHUNK):
                data = packer.compress(chunk)
                sha.update(data)
                size += len(data)
                out.write(data)
            data = packer.flush()
            sha.update(data)
            size += len(data)
            out.write(data)
        twin = "sha256:" + sha.hexdigest()
        if not store.has_blob(twin):
            store.commit_blob(tmp, twin)
    finally:
        tmp.unlink(missing_ok=True)
    store.set_twin(digest, twin, size)
    return twin, size


def _blob(store: ImageStore, layer: BlobRef) -> Blob:
    media = layer.media_type
    if media.endswith("zstd"):
        return Blob(layer.digest, layer.size, True)
    if "gzip" in media:
        return Blob(layer.digest, layer.size, False)
    return Blob(*_gzip(store, layer.digest), False)


def manifest(config: bytes, config_digest: str, layers: list[Blob]) -> tuple[bytes, str]:
    """The manifest (bytes, media type): Docker's schema 2, as ``docker push`` writes it;
    an OCI manifest when a layer is zstd (schema 2 has no such type)."""
    oci = any(layer.zstd for layer in layers)
    media = OCI_MANIFEST if oci else DOCKER_MANIFEST
    body = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [
            {
                "mediaType": (OCI_ZSTD if layer.zstd else OCI_GZIP) if oci else DOCKER_GZIP,
                "size": layer.size,
                "digest": layer.digest,
            }
            for layer in layers
        ],
    }
    return json.dumps(body, indent=3).encode(), media


def _sources(store: ImageStore, ref: Reference, digests: set[str]) -> dict[str, str]:
    """Blob digest -> another repository of ``ref``'s registry that has it (a repo digest
    of an image with the layer: it was pulled from there or pushed there)."""
    found: dict[str, str] = {}
    for record in store.images():
        for repo_digest in record.repo_digests:
            other = parse_reference(repo_digest)
            if other.registry != ref.registry or other.repository == ref.repository:
                continue
            for layer in record.layers:
                twin = store.twin(layer.digest)
                for digest in (layer.digest, twin[0] if twin else ""):
                    if digest in digests:
                        found.setdefault(digest, other.repository)
    return found


async def _chunks(store: ImageStore, blob: Blob, report: ProgressFn) -> AsyncIterator[bytes]:
    short = _short(blob.digest)
    done = 0
    shown = -1.0
    async with await trio.open_file(store.blob_path(blob.digest), "rb") as f:
        while chunk := await f.read(CHUNK):
            done += len(chunk)
            now = trio.current_time()
            if now - shown >= PROGRESS_EVERY:
                shown = now
                report(Progress(short, "Pushing", done, blob.size))
            yield chunk


async def _push_blob(
    registry: Registry,
    store: ImageStore,
    blob: Blob,
    source: str,
    report: ProgressFn,
) -> None:
    short = _short(blob.digest)
    if await registry.has_blob(blob.digest):
        report(Progress(short, "Layer already exists", blob.size, blob.size))
        return
    location = await registry.start_upload(blob.digest, source)
    if location is None:
        report(Progress(short, f"Mounted from {source}", blob.size, blob.size))
        return
    await registry.finish_upload(location, blob.digest, blob.size, _chunks(store, blob, report))
    report(Progress(short, "Pushed", blob.size, blob.size))


async def push_tag(
    sup: Supervisor,
    ref: Reference,
    record: ImageRecord,
    user: tuple[str, str] | None,
    report: ProgressFn,
) -> tuple[str, int]:
    """Push one tag; the manifest's digest and size (the image then has that repo
    digest)."""
    store = sup.images
    puller = sup.puller
    config = store.read_blob(record.id)
    blobs = []
    for layer in record.layers:  # a plain layer is gzipped first: its id is the gzip's
        blobs.append(await trio.to_thread.run_sync(_blob, store, layer))
        report(Progress(_short(blobs[-1].digest), "Preparing"))
    sources = _sources(store, ref, {b.digest for b in blobs})
    async with open_registry(
        ref,
        insecure=puller.insecure,
        credentials=puller.credentials,
        user=user,
        actions="push,pull",
        sources=tuple(sorted(set(sources.values()))),
    ) as registry:
        limit = trio.CapacityLimiter(PARALLEL)

        async def one(blob: Blob) -> None:
            source = sources.get(blob.digest, "")
            async with limit:
                await retrying(
                    UPLOAD_ATTEMPTS,
                    "upload",
                    Progress(_short(blob.digest), ""),
                    report,
                    functools.partial(_push_blob, registry, store, blob, source, report),
                )

        for blob in blobs:
            report(Progress(_short(blob.digest), "Waiting"))
        try:
            async with trio.open_nursery() as nursery:
                for blob in dict.fromkeys(blobs):
                    nursery.start_soon(one, blob)
        except BaseExceptionGroup as group:
            # Several uploads may fail at once: the push fails with the first reason.
            leaves = list(_leaves(group))
            if all(isinstance(e, Exception) for e in leaves):
                raise leaves[0] from None
            raise
        if not await registry.has_blob(record.id):
            location = await registry.start_upload()
            assert location is not None

            async def config_bytes() -> AsyncIterator[bytes]:
                yield config

            await registry.finish_upload(location, record.id, len(config), config_bytes())
        data, media = manifest(config, record.id, blobs)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        given = await registry.put_manifest(ref.tag or "latest", data, media)
        if given and given != digest:
            raise RegistryError(
                f"{ref.registry}/{ref.repository}: the registry stored the manifest as "
                f"{given}, boxd sent {digest}"
            )
    async with puller.lock:  # an image removed meanwhile stays removed
        with contextlib.suppress(NoSuchImage):
            store.get(record.id)
            store.add(record.id, record.layers, attrs.evolve(ref, tag=None), digest)
    return digest, len(data)


async def serve(sup: Supervisor, conn: Sender, req: PushRequest) -> None:
    """The PushRequest conversation (see :mod:`boxd._images.messages`)."""
    targets = _targets(sup.images, req)
    for ref, record in targets:
        if record.base:
            raise ValueError(on_default_refusal(ref.familiar, "pushed"))
    user = (req.username, req.password) if req.username else None
    diff_ids = [layer.diff_id for _, record in targets for layer in record.layers]
    puller = sup.puller
    await conn.send(OkResponse())

    def report(p: Progress) -> None:
        # As pull's: frames are dropped for a slow reader, never a layer's last state
        # (the channel holds far more than a push has layers).
        with contextlib.suppress(trio.WouldBlock):
            send.send_nowait(p)

    async def forward() -> None:
        async with receive:
            async for p in receive:
                await conn.send(PushProgressFrame(p.layer, p.status, p.current, p.total))

    with sup.images.holding() as hold:
        async with puller.lock:  # rmi meanwhile keeps the layers (as for a pull)
            hold.add(*diff_ids)
        for ref, record in targets:
            tag = ref.tag or "latest"
            await conn.send(PushingFrame(repository=ref.name, tag=tag))
            send, receive = trio.open_memory_channel[Progress](1000)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(forward)
                async with send:
                    digest, size = await push_tag(sup, ref, record, user, report)
            image_event(sup, "push", record.id, ref.familiar, ref.familiar_name)
            await conn.send(PushedFrame(tag=tag, digest=digest, size=size))
    await conn.send(EndFrame())


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]

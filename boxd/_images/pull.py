"""``pull``: a reference to a stored image, every byte checked on the way.

The manifest is fetched by tag or digest (a digest is checked against the bytes); an OCI
index or a Docker manifest list is resolved to the manifest for the platform asked for (by
default the host's).  Every layer blob streams into ``tmp/``, hashed as it comes; its
sha256 and size are checked at the end, before it is renamed into the content store: a
mismatch fails the pull and keeps nothing.  Blobs already stored are not
fetched again; up to :data:`PARALLEL` are fetched at once.  The image record, which makes
the image visible, is written last; then its layers are unpacked in the background
(:mod:`boxd._images.unpacks`: a create waits for them), so a pull costs what fetching and
checking its blobs costs, as ``skopeo copy`` to ``dir:`` or ``ctr content fetch`` do.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform as host_platform
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import trio

from .. import _platforms
from .reference import Reference
from .registry import (
    BlobCut,
    Credentials,
    Registry,
    RegistryError,
    RegistryNotFound,
    RegistryTransient,
    open_registry,
    parse_json,
)
from .store import BlobRef, Deleted, ImageRecord, ImageStore, NoSuchImage
from .unpacks import Unpacks

__all__ = [
    "PARALLEL",
    "Platform",
    "Progress",
    "Pulled",
    "Puller",
    "choose_platform",
    "parse_platform",
]

PARALLEL = 3
CHUNK = 1 << 16
PROGRESS_EVERY = 0.1  # seconds between two progress reports of one layer
MAX_MANIFEST = 4 << 20
RESUMES = 3  # tries in a row to go on with a broken download that bring no byte more

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
# Layers once not to be pushed (a Windows base layer; deprecated by OCI 1.1): fetched from
# the registry as any, as Docker's pull on Linux does, never from their ``urls``.
FOREIGN_LAYERS = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


@attrs.frozen
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host() -> Platform:
    machine = host_platform.machine()
    arch = _ARCH.get(machine, machine)
    return Platform("linux", arch, "v7" if machine == "armv7l" else "")


def parse_platform(text: str) -> Platform | None:
    """``os/arch[/variant]`` (``linux/arm64``, ``linux/arm/v7``); empty: None (the host's,
    :func:`boxd._platforms.default` in an index)."""
    if not text:
        return None
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {text!r}: use os/arch[/variant], e.g. linux/amd64")
    return Platform(*parts)


@attrs.frozen
class Progress:
    """One layer's state: ``Waiting``, ``Downloading``, ``Download complete``, ``Pull
    complete``, ``Already exists``; bytes so far and in all."""

    layer: str  # the short id Docker shows: 12 hex digits of the blob's digest
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[Progress], None]


async def _top_manifest(
    registry: Registry, ref: Reference
) -> tuple[str, str, dict[str, Any], bytes]:
    """The manifest or index ``ref`` names: its digest, media type, body and bytes
    (checked against the reference's digest when it has one)."""
    try:
        data, media = await registry.manifest(
            ref.digest or ref.tag or "latest", (*MANIFESTS, *INDEXES)
        )
    except RegistryNotFound as exc:  # in Docker's words
        if exc.code == "NAME_UNKNOWN":
            raise RegistryNotFound(
                f"repository {ref.familiar_name} not found: {exc.said}", exc.code, exc.said
            ) from None
        said = exc.said or "manifest unknown"
        raise RegistryNotFound(
            f"manifest for {ref.familiar} not found: {said}", exc.code, exc.said
        ) from None
    if ref.digest is not None:
        _check(data, ref.digest, "manifest")
    body = parse_json(data, "the manifest")
    return (
        "sha256:" + hashlib.sha256(data).hexdigest(),
        str(body.get("mediaType") or media),
        body,
        data,
    )


def _check(data: bytes, digest: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise RegistryError(f"{what} {digest} does not match its content ({actual})")


def _descriptor(d: Any, what: str) -> tuple[str, int, str]:
    if not isinstance(d, dict):
        raise RegistryError(f"{what} is not a descriptor")
    digest, size, media = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise RegistryError(f"{what} has an unsupported digest {digest!r} (sha256 only)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RegistryError(f"{what} has an invalid size {size!r}")
    return digest, size, str(media)


def choose_platform(name: str, index: dict[str, Any], want: Platform | None) -> str:
    """The digest of the manifest for ``want`` in an OCI index or a Docker manifest list
    (None: the host's, its x86-64 level included), as Docker's pull chooses it: the entry
    that runs there and is closest to it (``amd64/v3`` before ``amd64``; ``amd64/v4``
    never on a v3 CPU; arm/v6 for arm/v7); ``name`` (the image's) begins the error when
    there is none."""
    wanted = _platforms.default() if want is None else (want.os, want.architecture, want.variant)
    order = _platforms.compatible(wanted)
    found = []
    best: tuple[int, str] | None = None
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError(f"{name}: the index has no list of manifests")
    for i, entry in enumerate(entries):
        digest, _, media = _descriptor(entry, f"index entry {i}")
        plat = entry.get("platform")
        plat = plat if isinstance(plat, dict) else {}
        found.append(
            "/".join(
                p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p
            )
        )
        annotations = entry.get("annotations")
        attestation = isinstance(annotations, dict) and (
            annotations.get("vnd.docker.reference.type") == "attestation-manifest"
        )  # buildx's provenance or SBOM, never an image to run
        runs = media in MANIFESTS and not attestation
        place = _platforms.rank(order, plat) if runs else None
        if place is not None and (best is None or place < best[0]):
            best = place, digest
    if best is not None:
        return best[1]
    shown = want or host()
    raise RegistryError(
        f"{name}: no image for platform {shown} "
        f"(the index has: {', '.join(sorted(set(filter(None, found)))) or 'nothing'})"
    )


@attrs.frozen
class Pulled:
    record: ImageRecord
    digest: str  # what the reference named (an index's, for a multi-platform image)
    fetched: bool  # whether anything new came (else the image was up to date)


class Puller:
    def __init__(
        self,
        store: ImageStore,
        unpacks: Unpacks,
        credentials: Credentials,
        insecure: frozenset[str] = frozenset(),
        *,
        lock: trio.Lock | None = None,
        attempts: int = 5,
    ) -> None:
        self.store = store
        # Downloads of a layer that fails for a reason that may pass, the next after 5,
        # 10, 15 ... s, as Docker's pull (its --max-download-attempts).
        self.attempts = attempts
        self.unpacks = unpacks
        self.credentials = credentials
        self.insecure = insecure
        self._locks: dict[str, trio.Lock] = {}
        # Deleting images takes this lock (the supervisor's, which its clean-up takes
        # before any pull), and a pull or push takes it to hold its layers: a deletion in
        # progress ends before, and a later one leaves them (ImageStore.holding).
        self.lock = lock or trio.Lock()

    async def delete(self, record: ImageRecord) -> Deleted:
        """Remove an image and its layers no other image or pull in progress uses
        (cancelling their unpacks first); what went."""
        async with self.lock:
            await self.unpacks.stop(self.store.unshared(record) - self.store.held())
            return await trio.to_thread.run_sync(self.store.delete, record)

    async def tags(self, ref: Reference, user: tuple[str, str] | None = None) -> list[str]:
        """The tags of ``ref``'s repository, as its registry lists them (``pull -a``)."""
        async with open_registry(
            ref, insecure=self.insecure, credentials=self.credentials, user=user
        ) as registry:
            try:
                tags = await registry.tags()
            except RegistryNotFound as exc:  # in Docker's words
                raise RegistryNotFound(
                    f"repository {ref.familiar_name} not found: {exc.said or 'name unknown'}",
                    exc.code,
                    exc.said,
                ) from None
        if not tags:
            raise RegistryError(f"{ref.familiar_name}: the repository has no tags")
        return tags

    async def distribution(
        self, ref: Reference, user: tuple[str, str] | None = None
    ) -> tuple[str, str, int, list[dict[str, Any]]]:
        """What ``ref`` names in its registry: the media type, digest and size of its
        manifest or index, and the platforms it is for (an index's entries', or a
        manifest's config's), as Docker's distribution inspect gives them."""
        async with open_registry(
            ref, insecure=self.insecure, credentials=self.credentials, user=user
        ) as registry:
            digest, media, body, data = await _top_manifest(registry, ref)
            if media in INDEXES:
                entries = body.get("manifests") or []
                platforms = [e["platform"] for e in entries if isinstance(e.get("platform"), dict)]
            elif media in MANIFESTS:
                config_digest, size, _ = _descriptor(body.get("config"), "config")
                config = parse_json(
                    await self._small_blob(registry, config_digest, size, "config"), "the config"
                )
                platforms = [
                    {k: config[k] for k in ("architecture", "os", "variant") if config.get(k)}
                ]
            else:
                raise RegistryError(f"{ref.familiar}: unsupported manifest media type {media!r}")
        return media, digest, len(data), platforms

    async def pull(
        self,
        ref: Reference,
        *,
        platform: Platform | None = None,
        progress: ProgressFn | None = None,
        user: tuple[str, str] | None = None,
    ) -> Pulled:
        """The stored image (its layers unpacking in the background); ``user``: the
        credentials to use instead of the stored ones."""
        report = progress or (lambda _: None)
        try:
            before = self.store.lookup(str(ref)).id
        except NoSuchImage:
            before = ""
        async with open_registry(
            ref, insecure=self.insecure, credentials=self.credentials, user=user
        ) as registry:
            top_digest, manifest = await self._manifest(registry, ref, platform)
            config_digest, config_size, config_type = _descriptor(manifest.get("config"), "config")
            if config_type not in CONFIGS:
                raise RegistryError(
                    f"{ref.familiar} is not a container image: its config has media type "
                    f"{config_type!r}"
                )
            fetched = not self.store.has_blob(config_digest)
            if not fetched:
                config_bytes = self.store.read_blob(config_digest)
            else:
                config_bytes = await self._small_blob(
                    registry, config_digest, config_size, "config"
                )
            config = parse_json(config_bytes, "the image config")
            system = config.get("os") or "linux"
            if str(system).lower() != "linux":  # before any layer, as Docker's pull
                raise RegistryError(
                    f"image operating system {json.dumps(system)} cannot be used on this "
                    "platform: operating system is not supported"
                )
            stored = self.store.stored_layers(config_digest)
            layers = stored or self._layers(ref, manifest, config)
            with self.store.holding() as hold:
                async with self.lock:
                    hold.add(*[layer.diff_id for layer in layers])
                if stored is not None:  # removed before the hold: its layers fetched again
                    stored = self.store.stored_layers(config_digest)
                    layers = stored or self._layers(ref, manifest, config)
                fetched |= await self._fetch_layers(registry, layers, report)
                record = self.store.make(
                    config_bytes, layers, ref, top_digest, image_id=config_digest, stamp=False
                )
                self.unpacks.start(record)
        return Pulled(record, top_digest, fetched or before != record.id)

    async def _manifest(
        self, registry: Registry, ref: Reference, want: Platform | None
    ) -> tuple[str, dict[str, Any]]:
        top, media, body, _ = await _top_manifest(registry, ref)
        if media in INDEXES:
            digest = choose_platform(ref.familiar, body, want)
            data, media = await registry.manifest(digest, MANIFESTS)
            _check(data, digest, "manifest")
            body = parse_json(data, "the manifest")
            media = str(body.get("mediaType") or media)
        if media not in MANIFESTS:
            raise RegistryError(
                f"{ref.familiar}: unsupported manifest media type {media!r} "
                "(boxd reads OCI and Docker schema 2 manifests and indexes)"
            )
        return top, body

    @staticmethod
    def _layers(
        ref: Reference, manifest: dict[str, Any], config: dict[str, Any]
    ) -> tuple[BlobRef, ...]:
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list):
            raise RegistryError(f"{ref.familiar}: the image config has no rootfs.diff_ids list")
        descriptors = manifest.get("layers") or []
        if not isinstance(descriptors, list) or len(descriptors) != len(diff_ids):
            raise RegistryError(
                f"{ref.familiar}: the manifest lists {len(descriptors)} layers but the config "
                f"{len(diff_ids)} diff_ids"
            )
        layers = []
        for i, (d, diff_id) in enumerate(zip(descriptors, diff_ids, strict=True)):
            digest, size, media = _descriptor(d, f"layer {i}")
            if media not in LAYERS and media not in FOREIGN_LAYERS:
                raise RegistryError(
                    f"{ref.familiar}: layer {digest} has media type {media!r}, which boxd "
                    "does not fetch (not an image layer)"
                )
            if not isinstance(diff_id, str) or not diff_id.startswith("sha256:"):
                raise RegistryError(f"{ref.familiar}: layer {i} has a bad diff_id {diff_id!r}")
            layers.append(BlobRef(digest, size, media, diff_id))
        return tuple(layers)

    async def _small_blob(self, registry: Registry, digest: str, size: int, what: str) -> bytes:
        if size > MAX_MANIFEST:
            raise RegistryError(f"the {what} {digest} is too large ({size} bytes)")
        chunks = bytearray()
        async with registry.blob(digest) as r:
            async for chunk in r.aiter_raw(CHUNK):
                chunks += chunk
                if len(chunks) > size:
                    break
        if len(chunks) != size:
            raise RegistryError(f"the {what} {digest} is not {size} bytes long")
        _check(bytes(chunks), digest, what)
        return bytes(chunks)

    async def _fetch_layers(
        self, registry: Registry, layers: tuple[BlobRef, ...], report: ProgressFn
    ) -> bool:
        """Fetch the blobs not stored yet; whether any was."""
        limit = trio.CapacityLimiter(PARALLEL)
        fetched: list[bool] = []
        missing = []
        # In the manifest's order, as dockerd: what is stored "Already exists" at once (and
        # never "Waiting"); the rest waits for its turn.
        for layer in layers:
            if self.store.has_blob(layer.digest):
                report(Progress(_short(layer.digest), "Already exists", layer.size, layer.size))
            else:
                report(Progress(_short(layer.digest), "Waiting", 0, layer.size))
                missing.append(layer)
        try:
            async with trio.open_nursery() as nursery:
                for layer in missing:
                    nursery.start_soon(self._layer, registry, layer, limit, report, fetched)
        except BaseExceptionGroup as group:
            # Several layers may fail at once (a registry that serves garbage): the pull
            # fails with the first reason, as one error the caller can name.
            leaves = list(_leaves(group))
            if all(isinstance(e, Exception) for e in leaves):
                raise leaves[0] from None
            raise
        return any(fetched)

    async def _layer(
        self,
        registry: Registry,
        layer: BlobRef,
        limit: trio.CapacityLimiter,
        report: ProgressFn,
        fetched: list[bool],
    ) -> None:
        short = _short(layer.digest)
        lock = self._locks.setdefault(layer.digest, trio.Lock())
        async with lock, limit:
            if self.store.has_blob(layer.digest):
                report(Progress(short, "Already exists", layer.size, layer.size))
                return
            try:
                await self._attempts(registry, layer, report)
            except RegistryNotFound as exc:
                if layer.media_type not in FOREIGN_LAYERS:
                    raise
                raise RegistryError(
                    f"{exc}: it is a foreign (non-distributable) layer, which boxd fetches "
                    "from the registry only, never from the manifest's urls"
                ) from None
            fetched.append(True)
            report(Progress(short, "Pull complete", layer.size, layer.size))

    async def _attempts(self, registry: Registry, layer: BlobRef, report: ProgressFn) -> None:
        """The layer's download, tried up to ``attempts`` times (:func:`retrying`)."""
        await retrying(
            self.attempts,
            "download",
            Progress(_short(layer.digest), ""),
            report,
            functools.partial(self._stream, registry, layer, report),
        )

    async def _stream(self, registry: Registry, layer: BlobRef, report: ProgressFn) -> None:
        """Download into ``tmp/``, each chunk hashed and written as it arrives (on the
        event loop: ~0.1 ms a chunk; a pipe to a thread cost more than it saved), checked
        against the layer's digest and size at the end, then renamed into the store."""

        def verify(digest: str, size: int) -> None:
            if size != layer.size:
                raise RegistryError(
                    f"layer {layer.digest} is {size} bytes, the manifest says {layer.size}"
                )
            if digest != layer.digest:
                raise RegistryError(
                    f"layer {layer.digest} does not match its content ({digest}): "
                    "the download is corrupt or was tampered with"
                )

        fd, tmp = self.store.temp_file()
        sha = hashlib.sha256()

        def sink(chunk: bytes) -> None:
            sha.update(chunk)
            with memoryview(chunk) as view:
                while view:
                    view = view[os.write(fd, view) :]

        try:
            size = await self._download(registry, layer, sink, report)
            verify("sha256:" + sha.hexdigest(), size)
            os.close(fd)
            fd = -1
            self.store.commit_blob(tmp, layer.digest)
        finally:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)

    async def _download(
        self,
        registry: Registry,
        layer: BlobRef,
        sink: Callable[[bytes], None],
        report: ProgressFn,
    ) -> int:
        """The blob into ``sink``; its length.  A download that breaks off (the
        connection closed or reset mid-body) goes on from the byte it reached with a range
        request, as containerd's fetcher does, until :data:`RESUMES` tries in a row bring
        nothing more."""
        short = _short(layer.digest)
        done = 0
        shown = -1.0
        fruitless = 0
        while True:
            start = done
            try:
                async with registry.blob(layer.digest, offset=done) as r:
                    # A registry that ignored the range sends what came already again:
                    # dropped, as containerd's fetcher drops it.
                    again = done if r.status_code == 200 else 0
                    async for whole in r.aiter_raw():  # as it arrives: progress as it goes
                        chunk = whole[again:]
                        again -= len(whole) - len(chunk)
                        if not chunk:
                            continue
                        done += len(chunk)
                        if done > layer.size:
                            raise RegistryError(
                                f"layer {layer.digest} is larger than the {layer.size} bytes "
                                "the manifest says"
                            )
                        sink(chunk)
                        now = trio.current_time()
                        if now - shown >= PROGRESS_EVERY:
                            shown = now
                            report(Progress(short, "Downloading", done, layer.size))
                break
            except BlobCut as exc:
                if done == layer.size:
                    break  # all of it came before the connection broke
                fruitless = 0 if done > start else fruitless + 1
                if fruitless >= RESUMES:
                    raise RegistryTransient(
                        f"{exc} (after {done} of {layer.size} bytes, {RESUMES} times)"
                    ) from None
        report(Progress(short, "Download complete", done, layer.size))
        return done


async def retrying(
    attempts: int,
    what: str,
    layer: Progress,
    report: ProgressFn,
    action: Callable[[], Awaitable[None]],
) -> None:
    """``action`` (a layer's download or upload: ``what``), tried again after a failure
    that may pass (the registry unreachable, a connection broken, a 5xx) up to
    ``attempts`` times in all, waiting 5 s more each time and saying so in the layer's
    progress (``Retrying in 5 seconds``), as Docker's pull and push do."""
    for attempt in range(1, attempts + 1):
        try:
            await action()
            return
        except RegistryTransient as exc:
            if attempt == attempts:
                tries = f"{attempt} attempt{'s' * (attempt > 1)}"
                raise RegistryError(f"{exc} ({what} failed after {tries})") from None
        for left in range(5 * attempt, 0, -1):
            report(attrs.evolve(layer, status=f"Retrying in {left} second{'s' * (left > 1)}"))
            await trio.sleep(1)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]

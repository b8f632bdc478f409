"""Image archives: ``save`` and ``load`` (Docker's archive), ``import`` (a root filesystem
tarball) and ``commit`` (a container's upper directory as a new layer).

``save`` writes what Docker Engine 25 writes: an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) plus Docker's ``manifest.json``, so both Docker and
OCI tools read it.  ``load`` reads that, an older Docker archive (``manifest.json`` with
``<id>/layer.tar``), or a plain OCI archive (``index.json`` only).  Members are looked up
by name inside the archive and copied into the store through the same checks as a pull:
nothing of an archive is ever extracted to a path it names.  Every blob named by digest
is checked against it, every layer against the config's diff_id.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import zstandard

from .. import _platforms
from .._diff import INIT_DIRS, RUNTIME_FILES
from .._human import rfc3339_nano
from .config import DEFAULT, DEFAULT_ID, created_at, default_base_config
from .hardlinks import Links, add_hard_link, note_link
from .messages import LoadedImage
from .reference import Reference, parse_reference
from .store import BlobRef, Hold, ImageRecord, ImageStore, NoSuchImage, digest_hex
from .tarstream import ZSTD_MAGIC
from .unpack import (
    OPAQUE,
    OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    LayerError,
    own_ids,
    upper_opaque_xattr,
)
from .unpack import ArchiveError as ArchiveError

__all__ = [
    "LAYER",
    "ArchiveError",
    "Upper",
    "commit",
    "container_upper",
    "export_merged",
    "import_rootfs",
    "layer_of_uppers",
    "load",
    "save",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


def _media_type(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        return OCI_GZIP
    if head == ZSTD_MAGIC:
        return OCI_ZSTD
    return OCI_TAR


def _oci_layer_type(media_type: str) -> str:
    if media_type.endswith(("gzip", "+gzip")):
        return OCI_GZIP
    if media_type.endswith("zstd"):
        return OCI_ZSTD
    return OCI_TAR


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ---- save -----------------------------------------------------------------------------


def _manifest(store: ImageStore, record: ImageRecord) -> bytes:
    config = store.read_blob(record.id)
    return _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": record.id, "size": len(config)},
            "layers": [
                {"mediaType": _oci_layer_type(layer.media_type), "digest": layer.digest,
                 "size": layer.size}
                for layer in record.layers
            ],
        }
    )  # fmt: skip


def save(
    store: ImageStore, images: list[tuple[ImageRecord, list[Reference]]], out: IO[bytes]
) -> None:
    """Write a Docker/OCI archive of ``images`` (each with the tags to name it by); an
    image's Parent is in its manifest.json entry when that image is saved too, as Docker
    writes it."""
    index: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    blobs: dict[str, Path | bytes] = {}
    # A config's and its layers' files carry the image's creation time, as dockerd's
    # archive gives them (the rest the epoch).
    times: dict[str, int] = {}
    saved = {record.id for record, _ in images}
    for record, refs in images:
        manifest = _manifest(store, record)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        blobs[digest] = manifest
        blobs[record.id] = store.blob_path(record.id)
        created = max(0, int(created_at(store.config(record))))
        times.setdefault(record.id, created)
        for layer in record.layers:
            blobs[layer.digest] = store.blob_path(layer.digest)
            times.setdefault(layer.digest, created)
        descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest)}
        index.extend(
            {**descriptor, "annotations": {IMAGE_NAME: str(ref), REF_NAME: ref.tag or "latest"}}
            for ref in refs
        )
        if not refs:
            index.append(descriptor)
        docker.append(
            {
                "Config": f"blobs/sha256/{digest_hex(record.id)}",
                "RepoTags": [ref.familiar for ref in refs],
                "Layers": [f"blobs/sha256/{digest_hex(layer.digest)}" for layer in record.layers],
                **({"Parent": record.parent} if record.parent in saved else {}),
            }
        )
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")
        for digest, source in blobs.items():
            name = f"blobs/sha256/{digest_hex(digest)}"
            if isinstance(source, bytes):
                _add_bytes(tar, name, source)
            else:
                info = tarfile.TarInfo(name)
                info.size = source.stat().st_size
                info.mode = 0o644
                info.mtime = times.get(digest, 0)
                with open(source, "rb") as f:
                    tar.addfile(info, f)
        index_doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}
        _add_bytes(tar, "index.json", _json_bytes(index_doc))
        _add_bytes(tar, "manifest.json", _json_bytes(docker))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


# ---- load -----------------------------------------------------------------------------


class _Archive:
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members = {
            os.path.normpath(m.name.lstrip("/")): m for m in tar.getmembers() if m.isreg()
        }

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(os.path.normpath(name.lstrip("/")))
        if member is None:
            raise ArchiveError(f"the archive has no file {name!r}")
        f = self.tar.extractfile(member)
        assert f is not None
        return f

    def read(self, name: str, limit: int = 16 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError(f"{name!r} in the archive is too large")
        return data

    def manifest(self, digest: str) -> Any:
        """The manifest (or index) blob ``digest``, checked against its digest."""
        data = self.read(self.blob(digest))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ArchiveError(f"manifest {digest} does not match its digest")
        return json.loads(data)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (ValueError, RecursionError) as exc:
            raise ArchiveError(f"{name!r} in the archive is not JSON: {exc}") from None

    def has(self, name: str) -> bool:
        return os.path.normpath(name) in self.members

    def blob(self, digest: str) -> str:
        return f"blobs/sha256/{digest_hex(digest)}"


def _store_layer(
    store: ImageStore,
    hold: Hold,
    archive: _Archive,
    name: str,
    diff_id: str,
    digest: str | None,
) -> BlobRef:
    """Copy a layer member into the blob store (checked against ``digest`` when the
    archive names it by one) and unpack it once (checked against ``diff_id``), held by
    ``hold``."""
    fd, tmp = store.temp_file()
    sha = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(name) as src:
            while chunk := src.read(CHUNK):
                sha.update(chunk)
                size += len(chunk)
                out.write(chunk)
        actual = "sha256:" + sha.hexdigest()
        if digest is not None and actual != digest:
            raise ArchiveError(f"layer {name!r} does not match its digest {digest} ({actual})")
        media = _media_type(tmp)
        store.keep_layer(hold, tmp, actual, diff_id, move=True)
    except LayerError as exc:
        raise ArchiveError(f"layer {name!r}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return BlobRef(actual, size, media, diff_id)


def _load_image(
    store: ImageStore,
    hold: Hold,
    archive: _Archive,
    config_name: str,
    layer_names: list[tuple[str, str | None]],
    config_digest: str | None,
    platform: str,
) -> tuple[bytes, tuple[BlobRef, ...]] | None:
    """An image's layers stored (held by ``hold``): its configuration and layers, or None
    where it is not for ``platform`` (if one is given)."""
    config_bytes = archive.read(config_name)
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    if config_digest is not None and image_id != config_digest:
        raise ArchiveError(f"config {config_name!r} does not match its digest {config_digest}")
    try:
        config = json.loads(config_bytes)
        diff_ids = list(config["rootfs"]["diff_ids"] or [])  # null: no layer, as Go writes it
    except (ValueError, KeyError, TypeError):
        raise ArchiveError(f"config {config_name!r} has no rootfs.diff_ids") from None
    system = config.get("os") or "linux"
    if str(system).lower() != "linux":  # Docker's words
        raise ArchiveError(f"cannot load {system} image on linux")
    if platform and not _platforms.matches(
        _platforms.parse(platform), _platforms.of_config(config)
    ):
        return None
    if len(diff_ids) != len(layer_names):
        raise ArchiveError(
            f"config {config_name!r} lists {len(diff_ids)} layers, the archive {len(layer_names)}"
        )
    # Held before the stored image's record is read: a removal of it meanwhile either
    # took the record first (the layers are stored here again) or leaves them.
    hold.add(*[str(diff_id) for diff_id in diff_ids])
    stored = store.stored_layers(image_id)
    if stored is not None:
        return config_bytes, stored
    layers = tuple(
        [
            _store_layer(store, hold, archive, name, str(diff_id), digest)
            for (name, digest), diff_id in zip(layer_names, diff_ids, strict=True)
        ]
    )
    return config_bytes, layers


def _unwrap(path: Path, kinds: Sequence[str]) -> None:
    """Uncompress the file at ``path`` in place when it is one of ``kinds`` (``xz``,
    ``bzip2``, ``zstd``; told by its magic bytes): Docker's load and import take archives
    in those besides gzip, which tarfile and the layer reader read as they are."""
    with open(path, "rb") as f:
        head = f.read(10)
    if head.startswith(b"\xfd7zXZ\x00"):
        kind = "xz"
    elif head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        kind = "bzip2"
    elif head.startswith(ZSTD_MAGIC):
        kind = "zstd"
    else:
        return
    if kind not in kinds:
        return
    plain = path.with_name(path.name + ".plain")
    try:
        with open(path, "rb") as src, open(plain, "wb") as out:
            if kind == "zstd":
                zstandard.ZstdDecompressor().copy_stream(src, out, read_size=CHUNK)
            else:
                with lzma.open(src) if kind == "xz" else bz2.open(src) as reader:
                    shutil.copyfileobj(reader, out, CHUNK)
        os.replace(plain, path)
    except (lzma.LZMAError, EOFError, ValueError, zstandard.ZstdError) as exc:
        raise ArchiveError(f"the {kind} stream is truncated or damaged: {exc}") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk's (ENOSPC ...), not the stream's
        raise ArchiveError(f"the {kind} stream is damaged: {exc}") from None  # bz2's
    finally:
        plain.unlink(missing_ok=True)


def load(store: ImageStore, path: Path, platform: str = "") -> list[LoadedImage]:
    """Load every image of the archive at ``path``: its id and tags, for each; with
    ``platform`` (``os/arch[/variant]``, the Engine API's since 1.48) only the images
    for it, and of a multi-platform index that platform's manifest (as the host's
    without one)."""
    _unwrap(path, ("zstd",))  # tarfile reads gzip, bzip2 and xz
    try:
        with store.undone_on_failure():
            return _load(store, path, platform)
    except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise ArchiveError(f"the archive is truncated or damaged: {exc}") from None
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise ArchiveError(f"the archive's index or manifests are malformed: {exc!r}") from None


def _load(store: ImageStore, path: Path, platform: str) -> list[LoadedImage]:
    loaded: list[LoadedImage] = []
    parents: dict[str, str] = {}  # of manifest.json's entries, by image id
    with _open_tar(path) as tar, store.holding() as hold:
        archive = _Archive(tar)
        if archive.has("manifest.json"):
            entries = archive.json("manifest.json")
            if not isinstance(entries, list):
                raise ArchiveError("manifest.json is not a list")
            for entry in entries:
                try:
                    config_name = str(entry["Config"])
                    # null: an image of no layer (FROM scratch), as Go writes an empty list
                    layers = entry["Layers"] if entry["Layers"] is not None else []
                    layer_names = [(str(n), _digest_of(str(n))) for n in layers]
                    tags = [str(t) for t in entry.get("RepoTags") or []]
                    parent = str(entry.get("Parent") or "")
                except (KeyError, TypeError):
                    raise ArchiveError("manifest.json: an entry lacks Config or Layers") from None
                image = _load_image(
                    store,
                    hold,
                    archive,
                    config_name,
                    layer_names,
                    _digest_of(config_name),
                    platform,
                )
                if image is None:
                    continue
                config, layers = image
                loaded.append(_record(store, config, layers, tags))
                parents[loaded[-1].id] = parent
        elif archive.has("index.json"):
            for config, layers, tags in _load_oci(store, hold, archive, platform):
                loaded.append(_record(store, config, layers, tags))
        else:
            raise ArchiveError("neither manifest.json nor index.json: not an image archive")
    for image_id, parent in parents.items():
        if parent in parents and parent != image_id:
            with contextlib.suppress(NoSuchImage):  # removed since by another client
                _set_parent(store, store.get(image_id), store.get(parent))
    return loaded


def _set_parent(store: ImageStore, record: ImageRecord, parent: ImageRecord) -> None:
    """``parent`` as the Parent of the loaded image ``record``, if it can be the image
    ``record`` was committed from, as Docker's load checks it: the same history and one
    entry more."""
    mine = store.config(record).get("history") or []
    theirs = store.config(parent).get("history") or []
    follows = len(mine) == len(theirs) + 1 and mine[: len(theirs)] == theirs
    if (follows or not (mine or theirs)) and record.parent != parent.id:
        store.save(attrs.evolve(record, parent=parent.id))


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError):  # its message is a line per method tried
        raise ArchiveError(
            "not a tar archive (plain, or compressed with gzip, bzip2, xz or zstd)"
        ) from None


def _digest_of(name: str) -> str | None:
    """The digest a ``blobs/sha256/<hex>`` member name promises."""
    parts = os.path.normpath(name).split("/")
    if len(parts) == 3 and parts[:2] == ["blobs", "sha256"] and len(parts[2]) == 64:
        return "sha256:" + parts[2]
    return None


def _load_oci(
    store: ImageStore, hold: Hold, archive: _Archive, platform: str
) -> Iterator[tuple[bytes, tuple[BlobRef, ...], list[str]]]:
    index = archive.json("index.json")
    for entry in index.get("manifests") or []:
        digest = str(entry.get("digest", ""))
        manifest = archive.manifest(digest)
        if manifest.get("mediaType") == OCI_INDEX or "manifests" in manifest:
            manifest = _host_manifest(archive, digest, manifest, platform)
        config_digest = str(manifest["config"]["digest"])
        layer_names: list[tuple[str, str | None]] = [
            (archive.blob(str(d["digest"])), str(d["digest"])) for d in manifest.get("layers", [])
        ]
        image = _load_image(
            store, hold, archive, archive.blob(config_digest), layer_names, config_digest, platform
        )
        if image is None:
            continue
        config, layers = image
        annotations = entry.get("annotations") or {}
        # containerd's full name; else an OCI ref.name that is a whole reference (skopeo
        # writes those), not a bare tag.
        name = str(annotations.get(IMAGE_NAME) or "")
        ref_name = str(annotations.get(REF_NAME) or "")
        if not name and ":" in ref_name:
            name = ref_name
        tags = [name] if name else []
        yield config, layers, tags


def _host_manifest(
    archive: _Archive, digest: str, index: dict[str, Any], platform: str
) -> dict[str, Any]:
    """The host's platform's manifest in a multi-platform index (``skopeo copy --all``,
    buildx's OCI output), or ``platform``'s, as a pull takes it from a registry's."""
    from .pull import choose_platform, parse_platform
    from .registry import RegistryError

    try:
        chosen = choose_platform(f"the index {digest}", index, parse_platform(platform))
    except RegistryError as exc:
        raise ArchiveError(str(exc)) from None
    manifest: dict[str, Any] = archive.manifest(chosen)
    return manifest


def _record(
    store: ImageStore, config: bytes, layers: tuple[BlobRef, ...], tags: list[str]
) -> LoadedImage:
    image_id = store.make(config, layers).id
    names = []
    replaced = {}
    for tag in tags:
        try:
            ref = parse_reference(tag)
        except ValueError as exc:
            raise ArchiveError(f"the archive's tag {tag!r}: {exc}") from None
        taken = store.tag(image_id, ref, stamp=False)
        names.append(ref.familiar)
        if taken:
            replaced[ref.familiar] = taken
    return LoadedImage(image_id, tuple(names), replaced)


# ---- import and commit ----------------------------------------------------------------


def _config(
    diff_ids: list[str],
    base: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    created_by: str = "",
    comment: str = "",
    author: str = "",
    empty_layer: bool = False,
) -> dict[str, Any]:
    """The new image's configuration over ``base``'s: its layers, ``config``, and a history
    entry (``empty_layer``: one that made no layer); ``comment`` and ``author`` are also
    the image's own (``docker inspect``'s Comment and Author)."""
    now = rfc3339_nano(time.time_ns())
    base = dict(base or {"architecture": _arch(), "os": "linux"})
    base.pop("comment", None)
    base.pop("author", None)
    entry = {
        "created": now,
        "created_by": created_by,
        "comment": comment,
        "author": author,
        "empty_layer": empty_layer,
    }
    history = [*(base.get("history") or []), {k: v for k, v in entry.items() if v}]
    base.update(
        created=now,
        config=config,
        rootfs={"type": "layers", "diff_ids": diff_ids},
        history=history,
        **{k: v for k, v in (("comment", comment), ("author", author)) if v},
    )
    return base


def _arch() -> str:
    from .pull import host

    return host().architecture


def _single_layer(store: ImageStore, hold: Hold, tar_path: Path, *, move: bool = False) -> BlobRef:
    """A layer blob from a tar (any compression tarfile reads): stored as it is (the
    file renamed into place with ``move``: one of the store's temporary files), held by
    ``hold``."""
    from .unpack import open_layer

    sha = hashlib.sha256()
    with open(tar_path, "rb") as f, open_layer(f) as plain:
        while chunk := plain.read(CHUNK):
            sha.update(chunk)
    diff_id = "sha256:" + sha.hexdigest()
    sha = hashlib.sha256()
    with open(tar_path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
    digest = "sha256:" + sha.hexdigest()
    media = _media_type(tar_path)
    size = tar_path.stat().st_size
    try:
        store.keep_layer(hold, tar_path, digest, diff_id, move=move)
    except LayerError as exc:
        raise ArchiveError(str(exc)) from None
    return BlobRef(digest, size, media, diff_id)


def import_rootfs(
    store: ImageStore,
    tar_path: Path,
    ref: Reference | None,
    container_config: dict[str, Any],
    comment: str,
    platform: tuple[str, str, str],
) -> ImageRecord:
    """``import``: a root filesystem tarball as a one-layer image with ``container_config``
    (empty: no command of its own), for ``platform`` (os, architecture, variant)."""
    if not tar_path.stat().st_size:  # an empty layer, as dockerd makes of no bytes
        tar_path.write_bytes(bytes(1024))  # (a tar archive's end alone)
    _unwrap(tar_path, ("xz", "bzip2"))  # the layer reader reads gzip and zstd
    with store.undone_on_failure(), store.holding() as hold:
        try:
            layer = _single_layer(store, hold, tar_path)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a system call's (a full disk), not the tarball's (gzip's)
            raise ArchiveError(f"not a readable tarball: {exc}") from None
        os_name, arch, variant = platform
        base = {"architecture": arch, "os": os_name, **({"variant": variant} if variant else {})}
        config = _config([layer.diff_id], base, container_config, comment=comment)
        return store.make(_json_bytes(config), (layer,), ref)


@attrs.frozen
class Upper:
    """How an overlay wrote a directory: the xattr that marks an opaque directory in it
    and, for a user-namespaced container's upper, the id map (host start, count) its
    owners went through: a layer and an export record the container's own ids.  The
    default is a layer's directory (the unpack writes both xattrs and the ids as they are)
    or the upper of a container that is not user-namespaced."""

    opaque: str = OPAQUE_XATTR
    id_map: tuple[int, int] | None = None

    def owner(self, st: os.stat_result) -> tuple[int, int]:
        return own_ids(st, self.id_map)


LAYER = Upper()

# An overlay of a container: its target, its upper directory and its lower directories
# (top-most first).
Overlay = tuple[str, Path, Sequence[str]]


def container_upper(userns: bool) -> Upper:
    """How a container's overlays write its uppers: the other opaque xattr there is an
    ordinary one, copied up from a layer (which has both), and reading it as the mark
    would hide the layers' files below it; a user-namespaced container's files are owned
    by host ids."""
    from .._plan import id_range

    return Upper(upper_opaque_xattr(userns), id_range() if userns else None)


def commit(
    store: ImageStore,
    parent: ImageRecord | None,
    uppers: Sequence[Overlay],
    container_config: dict[str, Any],
    ref: Reference | None,
    history: dict[str, str],
    upper: Upper = LAYER,
) -> ImageRecord:
    """``commit``: the container's upper directories (see :func:`write_diff`) as a new
    layer over ``parent``, or with None over the built-in image default (the new image is
    then based on it); ``history``: the new entry's ``created_by``, ``comment`` and
    ``author``.  A container that changed nothing adds no layer, only the history entry
    (``empty_layer``), as Docker's commit."""
    with store.holding() as hold:
        layer = layer_of_uppers(store, hold, uppers, upper)
        own = () if layer is None else (layer,)
        layers: tuple[BlobRef, ...] = ()
        if parent is None:
            base, over, parent_id = default_base_config(), DEFAULT, DEFAULT_ID
        else:
            base, layers, over = store.config(parent), parent.layers, parent.base
            parent_id = parent.id
        diff_ids = [below.diff_id for below in (*layers, *own)]
        config = _config(diff_ids, base, container_config, **history, empty_layer=layer is None)
        layers = (*layers, *own)
        return store.make(_json_bytes(config), layers, ref, base=over, parent=parent_id)


def layer_of_uppers(
    store: ImageStore, hold: Hold, uppers: Sequence[Overlay], upper: Upper = LAYER
) -> BlobRef | None:
    """Overlay upper directories (or any directories) as one stored, unpacked layer (see
    :func:`write_diff`), held by ``hold``; None when they hold no change (no layer is
    stored: Docker's commit and builders make none of an empty diff, only an
    ``empty_layer`` entry)."""
    fd, tmp = store.temp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            changed = write_diff(uppers, out, upper)
        return _single_layer(store, hold, tmp, move=True) if changed else None
    finally:
        tmp.unlink(missing_ok=True)


# Written into every container at start (diff's list, as paths below the root): never part
# of its changes, as Docker binds its own over the image's and commits none of them.
_RUNTIME_FILES = frozenset([path.removeprefix("/") for path in RUNTIME_FILES])
# Made for its mounts and those files where the image has none (see INIT_DIRS): committed
# only with something written below them.
_INIT_DIRS = frozenset([path.removeprefix("/") for path in INIT_DIRS])


def write_diff(uppers: Sequence[Overlay], out: IO[bytes], upper: Upper = LAYER) -> bool:
    """A layer tar of a container's overlay upper directories, (target, directory, the
    overlay's lower directories top-most first) with ``/`` first (one on a stored image; on
    default one more for each host directory it shows, /usr ...), each one's paths below
    its target (``usr/bin/x``): whiteouts (0/0 character devices) become ``.wh.NAME`` and
    opaque directories get ``.wh..wh..opq``; the files boxd writes at each start
    (/etc/hostname, /etc/hosts, /etc/resolv.conf) are left out, and so is what an upper
    holds where another overlay is mounted (its mount point).  A directory that is only
    overlay's copy of a lower one (its mode and owner the same, nothing written below it:
    /etc, where boxd's own files went) is left out too, and so is one boxd made where the
    image has none (/dev, /proc, /sys, /etc: see INIT_DIRS), so a container that changed
    nothing makes an empty layer, as Docker's.  Files are opened with O_NOFOLLOW and
    checked to be what was listed: the container may change its upper directories
    meanwhile, and must not make the daemon read a host file; a lower directory (an image
    layer, the host's /usr ..., which the container cannot change) is looked into only
    through directories checked to be ones (never through a symlink).  An upper directory
    that is not there (a container that never ran) changed nothing.
    ``upper``: how the overlays wrote them (see :func:`container_upper`).  Whether the
    tar holds anything."""
    targets = {target.strip("/") for target, _, _ in uppers}
    links: Links = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for target, directory, lowers in uppers:
            try:
                root_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                rel = target.strip("/")
                # The mount point's own entry first, as the layer's directory of it, if
                # anything is written below it.
                walk = _Walk(tar, targets, links, upper)
                if rel:
                    walk.pending.append(_info(rel, os.fstat(root_fd), upper))
                walk.directory(root_fd, [str(lower) for lower in lowers], f"{rel}/" if rel else "")
            finally:
                os.close(root_fd)
        return bool(tar.getmembers())


@attrs.define
class _Walk:
    """One upper directory's walk into a layer tar.  A directory's entry waits in
    ``pending`` until something is written below it, or it is found to differ from the
    lower directory it copies (or to have none)."""

    tar: tarfile.TarFile
    skipped: set[str]
    links: Links
    upper: Upper
    pending: list[tarfile.TarInfo] = attrs.Factory(list)

    def write(self, info: tarfile.TarInfo | None = None) -> None:
        """The pending directories, then ``info`` (if any)."""
        for waiting in self.pending:
            self.tar.addfile(waiting)
        self.pending.clear()
        if info is not None:
            self.tar.addfile(info)

    def directory(self, dir_fd: int, below: list[str], prefix: str) -> None:
        """The entries of the upper directory ``dir_fd`` (``below``: the lower directories
        it lies over, top-most first)."""
        for name in sorted(os.listdir(dir_fd)):
            path = f"{prefix}{name}"
            if path in _RUNTIME_FILES or path in self.skipped:
                continue
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if is_whiteout(st):
                wh = tarfile.TarInfo(f"{prefix}{WHITEOUT_PREFIX}{name}")
                wh.mtime = int(st.st_mtime)
                self.write(wh)
            elif stat.S_ISDIR(st.st_mode):
                self.subdirectory(dir_fd, below, name, path, st)
            else:
                self.write()
                _add_entry(
                    self.tar, dir_fd, name, path, st, self.links, self.upper, _keep_capability
                )

    def subdirectory(
        self, dir_fd: int, below: list[str], name: str, path: str, st: os.stat_result
    ) -> None:
        info = _info(path, st, self.upper)
        self.pending.append(info)
        sub = _open_dir(dir_fd, name)
        lower: os.stat_result | None = None
        subs: list[str] = []
        try:
            if _opaque(sub, self.upper.opaque):
                self.write(tarfile.TarInfo(f"{path}/{OPAQUE}"))
            else:
                lower = lower_dirs(below, name, subs)
            self.directory(sub, subs, f"{path}/")
        finally:
            os.close(sub)
        if self.pending and self.pending[-1] is info:  # nothing written below it
            self.pending.pop()
            same = lower is not None and (
                (stat.S_IMODE(lower.st_mode), lower.st_uid, lower.st_gid)
                == (info.mode, info.uid, info.gid)
            )
            if not same and not (lower is None and path in _INIT_DIRS):
                self.write(info)


def lower_dirs(below: list[str], name: str, found: list[str]) -> os.stat_result | None:
    """The directories ``name`` of the lower directories ``below`` that overlay merges,
    into ``found`` (down to a lower where it is no directory or is opaque); what the
    top-most of them is (None: no lower has it, or not as a directory).  Each is checked
    to be a directory itself, so a path of ``found`` crosses no symlink."""
    top = None
    for directory in below:
        path = f"{directory}/{name}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        if top is None:
            top = st
        found.append(path)
        with contextlib.suppress(OSError):
            if os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                break
    return top


def _opaque(fd: int, attr: str) -> bool:
    with contextlib.suppress(OSError):
        return os.getxattr(fd, attr) == b"y"
    return False


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _open_dir(dir_fd: int, name: str) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(name, flags, dir_fd=dir_fd)


def _info(path: str, st: os.stat_result, written: Upper) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.uid, info.gid = written.owner(st)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    return info


def _add_entry(
    tar: tarfile.TarFile,
    dir_fd: int,
    name: str,
    path: str,
    st: os.stat_result,
    links: Links,
    written: Upper,
    keep: KeepXattrs,
) -> None:
    """A file, symlink, device or FIFO (sockets are left out, as Docker does); a file
    already written under another name, a hard link to it."""
    info = _info(path, st, written)
    if add_hard_link(tar, info, st, links):
        return
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            now = os.fstat(f.fileno())
            if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                raise ArchiveError(f"{path} changed while it was read")
            info.size = now.st_size
            keep(info, f.fileno())
            tar.addfile(info, f)
        note_link(st, path, links)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        info.type = (
            tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode)
            else tarfile.BLKTYPE if stat.S_ISBLK(st.st_mode) else tarfile.FIFOTYPE
        )  # fmt: skip
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)


# The xattr of a file's capabilities (setcap's); its value's revision in byte 3.
CAPABILITY = "security.capability"
_CAP_REVISION_2, _CAP_REVISION_3 = 2, 3
_CAP_V2_SIZE = 20


def _keep_capability(info: tarfile.TarInfo, fd: int) -> None:
    """A file's capabilities go into the tar, the one xattr Docker's layers and exports
    carry (a `RUN setcap ...` works so): one set in a user namespace (revision 3, naming
    its root's host uid) as the revision 2 it means in any container, as Docker writes it."""
    try:
        value = os.getxattr(fd, CAPABILITY)
    except OSError:
        return
    if len(value) > 3 and value[3] == _CAP_REVISION_3:
        value = value[:3] + bytes([_CAP_REVISION_2]) + value[4:_CAP_V2_SIZE]
    _add_xattr(info, CAPABILITY, value)


def _add_xattr(info: tarfile.TarInfo, attr: str, value: bytes) -> None:
    header = {f"SCHILY.xattr.{attr}": value.decode("utf-8", "surrogateescape")}
    info.pax_headers = {**info.pax_headers, **header}


def _keep_xattrs(info: tarfile.TarInfo, fd: int) -> None:
    """Every xattr of the file or directory (its capabilities as :func:`_keep_capability`
    writes them)."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return
    for attr in names:
        if attr == CAPABILITY:
            _keep_capability(info, fd)
            continue
        with contextlib.suppress(OSError):  # gone meanwhile
            _add_xattr(info, attr, os.getxattr(fd, attr))


def export_merged(
    dirs: list[str], out: IO[bytes], top: Upper = LAYER, *, all_xattrs: bool = False
) -> None:
    """``export``: one tar of the directories stacked as overlay stacks them (``dirs``
    top-most first): what a whiteout hides or an opaque directory covers is left out, as
    are the files boxd writes at each start.  ``top``: how the first was written (a
    container's upper: see :func:`container_upper`); the others are layers.  Of the
    xattrs, files' capabilities go in (as in Docker's exports); ``all_xattrs``: those of
    every file and directory (a volume's copy-up keeps them, as Docker's does; the
    unpack drops the ones no layer may set)."""
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in dirs]
    written = [top, *(LAYER for _ in dirs[1:])]
    keep = _keep_xattrs if all_xattrs else _keep_capability
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _merge(tar, list(zip(fds, written, strict=True)), "", {}, keep)
    finally:
        for fd in fds:
            os.close(fd)


# Which of an entry's xattrs (read from its fd) go into its header.
KeepXattrs = Callable[[tarfile.TarInfo, int], None]


def _merge(
    tar: tarfile.TarFile, dirs: list[tuple[int, Upper]], prefix: str, links: Links, keep: KeepXattrs
) -> None:
    """``dirs``: each directory's fd and how it was written, top-most first."""
    top: dict[str, tuple[int, os.stat_result]] = {}
    for i, (fd, _) in enumerate(dirs):
        for name in os.listdir(fd):
            if name not in top:
                top[name] = (i, os.stat(name, dir_fd=fd, follow_symlinks=False))
    for name in sorted(top):
        i, st = top[name]
        path = f"{prefix}{name}"
        if is_whiteout(st) or path in _RUNTIME_FILES:
            continue
        if not stat.S_ISDIR(st.st_mode):
            _add_entry(tar, dirs[i][0], name, path, st, links, dirs[i][1], keep)
            continue
        # The directory merges with the same directory below, down to a layer where the
        # name is not a directory or where it is opaque.
        subs: list[tuple[int, Upper]] = []
        try:
            for fd, written in dirs[i:]:
                try:
                    below = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(below.st_mode):
                    break
                subs.append((_open_dir(fd, name), written))
                if _opaque(subs[-1][0], written.opaque):
                    break
            info = _info(path, st, dirs[i][1])
            keep(info, subs[0][0])  # the first is the directory itself
            tar.addfile(info)
            _merge(tar, subs, f"{path}/", links, keep)
        finally:
            for fd, _ in subs:
                os.close(fd)

"""The image store under ``<root>/images``: content-addressed, every write atomic.

Layout::

    blobs/sha256/<hex>      manifests, configs and compressed layers, each checked against
                            its digest before it is renamed into place; kept after the
                            unpack (as containerd's content store keeps them): ``save``
                            writes them as they came, and a lost layer directory is
                            unpacked again from its blob
    l/<12 hex>/             one unpacked layer (a diff), named by its diff_id, shared
                            read-only by every container of every image that uses it
    layers/<hex>.json       the record that makes ``l/...`` of diff_id <hex> present; it
                            is written after the rename, so a killed unpack leaves nothing
                            a later run would use
    meta/<hex>.json         one image (id = digest of its config): tags, repo digests,
                            the layer blobs in order and what they lie over (its base)
    gzip/<hex>.json         the gzip blob a push made of the plain tar blob <hex> (a
                            committed or imported layer), pushed in its place: made
                            once, so every push of the layer sends the same bytes
    retired/<hex>.json      an image removed (``rmi -f``) while stopped containers use it:
                            no longer listed or found by name, its layers kept for those
                            containers until the last of them is removed
    tmp/                    downloads and unpacks in progress (emptied at start)

The layer directories' names are short so that a deep image's overlay ``lowerdir=``
option (one page at most) takes many of them.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import attrs

from .._convert import structure, unstructure
from .._store import atomic_write
from .reference import Reference, parse_reference
from .unpack import LayerError, unpack

__all__ = [
    "BlobRef",
    "Hold",
    "ImageRecord",
    "ImageStore",
    "NoSuchImage",
    "UnpackCancelled",
    "digest_hex",
]

SHORT = 12


class UnpackCancelled(Exception):
    """An unpack stopped because its image is being removed (or the daemon stops)."""


class NoSuchImage(LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such image: {ref}")


class InvalidReference(NoSuchImage):
    """A lookup of what is neither an id nor a reference (``busybox:sha256:...``): no
    image, in the reference parser's words (dockerd's 400 ``invalid reference format``)."""

    def __init__(self, message: str) -> None:
        LookupError.__init__(self, message)


@attrs.frozen
class BlobRef:
    """A layer as the manifest names it (the compressed blob) and its diff_id."""

    digest: str
    size: int
    media_type: str
    diff_id: str


@attrs.frozen
class ImageRecord:
    id: str  # sha256:<digest of the config blob>
    layers: tuple[BlobRef, ...]
    repo_tags: tuple[str, ...] = ()  # normalized: docker.io/library/busybox:latest
    repo_digests: tuple[str, ...] = ()  # docker.io/library/busybox@sha256:<manifest>
    added: float = 0.0
    # What the layers lie over: "" nothing (an image as registries hold it), or "default"
    # (the built-in image: the host's /usr ... and the skeleton root).  Here, not in the
    # config: the config's rootfs can only name layers, and default is none, so an image
    # based on it is one of this store only (save and push refuse it).
    base: str = ""
    # When it was last tagged by tag, commit, import or build (not by pull or load), as
    # Docker's inspect shows it in Metadata.LastTagTime; 0: never.
    tagged: float = 0.0
    # The image it was committed from (an id, ``default``'s too), as Docker's inspect shows
    # it in Parent: a fact of this store, not of the config, so lost by push (save keeps
    # it when it saves that image too, in manifest.json, as Docker's).
    parent: str = ""


def digest_hex(digest: str) -> str:
    algorithm, _, hexa = digest.partition(":")
    if algorithm != "sha256" or not _is_hex(hexa):
        raise ValueError(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return hexa


def _is_hex(text: str) -> bool:
    """A sha256 digest's 64 hex digits."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layer_dirs = root / "l"
        self.layer_records = root / "layers"
        self.records = root / "meta"
        self.retired = root / "retired"
        self.twins = root / "gzip"
        self.tmp = root / "tmp"
        for d in (self.blobs, self.layer_records, self.records, self.retired, self.twins):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Traversable: a user-namespaced container's root (an unprivileged host uid) must
        # reach the layers it mounts.
        self.layer_dirs.mkdir(mode=0o711, exist_ok=True)
        # The one lower of an image without layers (FROM scratch and metadata only), as
        # Docker gives it an empty root: overlay needs a lower directory.
        self.empty = root / "empty"
        self.empty.mkdir(mode=0o755, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700)
        # By diff_id: its unpack or deletion, with how many threads hold or wait for it
        # (an entry goes when the last one leaves: the store sees any number of layers).
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._locks_lock = threading.Lock()
        # Images' records read, changed and written by one thread at a time (a load, an
        # import or a commit in a worker thread beside a tag or a pull on the loop's: two
        # writes of one record through its one temporary file made it invalid JSON), and
        # an image's record made (add) against the collector's deletion of retired ones:
        # an image added again while retired is live, and is never deleted under it.
        self._records_lock = threading.RLock()
        # Why an image was removed after its pull (its layer refused), by id, tag and
        # digest reference: a lookup of it says so instead of a bare "no such image".
        self._refused: dict[str, str] = {}
        # The records as last read, by directory and file name (see _read_records).
        self._parsed: dict[Path, dict[str, tuple[tuple[int, int, int], ImageRecord]]] = {}
        # Per thread, inside undone_on_failure: the configs it stored, the layer blobs it
        # stored (with their diff_ids) and the layers it unpacked (their diff_ids).
        self._added = threading.local()
        # The layers (diff_ids) that images being made take (see holding), counted over
        # their holds, and how many holds have ended: a removal that read the records
        # before an end reads them again (the image made then is recorded).
        self._holds: collections.Counter[str] = collections.Counter()
        self._ends = 0

    # ---- blobs ----------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes (checked against ``digest`` when given); their digest."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and digest != actual:
            raise ValueError(f"blob {digest} does not match its content ({actual})")
        path = self.blob_path(actual)
        if not path.exists():
            atomic_write(path, data, 0o600, durable=False)
            self._note(config=actual)
        return actual

    @contextlib.contextmanager
    def undone_on_failure(self) -> Iterator[None]:
        """Blobs stored and layers unpacked by this thread within the context are deleted
        again if it raises (a load or import cut short by a full disk or a bad layer in
        the middle), those no image uses (nor holds) by then: nothing is left that no
        image holds.  Its holds end first (:meth:`holding` inside this context)."""
        added = _Added()
        self._added.sets = added
        try:
            yield
        except BaseException:
            self._drop_unused(added)
            raise
        finally:
            del self._added.sets

    def _note(self, *, config: str = "", blob: str = "", layer: str = "") -> None:
        """``blob``: a layer blob of the layer ``layer`` (else ``layer`` was unpacked)."""
        added: _Added | None = getattr(self._added, "sets", None)
        if added is None:
            return
        if config:
            added.configs.add(config)
        elif blob:
            added.blobs[blob] = layer
        elif layer:
            added.layers.add(layer)

    def _drop_unused(self, added: _Added) -> None:
        check = _Unused(self)
        for diff_id in added.layers | set(added.blobs.values()):
            with self._layer_lock(diff_id):
                if check.free(diff_id) and diff_id in added.layers:
                    self._delete_layer(diff_id)
                for digest in [d for d, of in added.blobs.items() if of == diff_id]:
                    if check.free(diff_id, digest):
                        self._delete_blob(digest, check.blobs)
        with self._records_lock:
            for digest in added.configs:
                if not self._recorded(digest):
                    self.blob_path(digest).unlink(missing_ok=True)

    # ---- holds ----------------------------------------------------------------------

    @contextlib.contextmanager
    def holding(self) -> Iterator[Hold]:
        """A :class:`Hold` for an image being made, released at the end of the context
        (once its record is written)."""
        hold = Hold(self)
        try:
            yield hold
        finally:
            hold.release()

    def _hold(self, diff_ids: Collection[str]) -> None:
        with self._locks_lock:
            self._holds.update(diff_ids)

    def _release(self, diff_ids: Collection[str]) -> None:
        with self._locks_lock:
            self._holds.subtract(diff_ids)
            self._holds = +self._holds
            self._ends += 1

    def held(self) -> frozenset[str]:
        """The diff_ids images being made hold now."""
        with self._locks_lock:
            return frozenset(self._holds)

    def _held_now(self, diff_id: str) -> tuple[bool, int]:
        """Whether ``diff_id`` is held, and how many holds have ended."""
        with self._locks_lock:
            return diff_id in self._holds, self._ends

    def keep_layer(
        self, hold: Hold, source: Path, digest: str, diff_id: str, *, move: bool = False
    ) -> None:
        """The layer ``diff_id`` whose blob ``digest`` is at ``source`` (renamed into
        place with ``move``, else copied, unless the store has that blob), unpacked unless
        it is; held by ``hold`` first, and checked and made under the layer's lock, so
        a removal of an image with this layer either ended before (and it is stored again
        here) or leaves it.  Raises :class:`LayerError` for a blob that does not unpack to
        ``diff_id`` (the blob stored here is deleted again)."""
        hold.add(diff_id)
        with self._layer_lock(diff_id):
            stored = not self.has_blob(digest)
            if stored:
                if move:
                    os.rename(source, self.blob_path(digest))
                else:
                    fd, tmp = self.temp_file()
                    os.close(fd)
                    try:
                        shutil.copyfile(source, tmp)
                        os.rename(tmp, self.blob_path(digest))
                    finally:
                        tmp.unlink(missing_ok=True)
                self._note(blob=digest, layer=diff_id)
            if self.layer_dir(diff_id) is None:
                try:
                    with open(self.blob_path(digest), "rb") as blob:
                        self._unpack(blob.read, diff_id, f"layer {digest}")
                except LayerError:
                    if stored:
                        self._delete_blob(digest, set())
                    raise

    def present(self, hold: Hold, layers: Collection[BlobRef]) -> bool:
        """Whether every one of ``layers`` (a cache entry's) is stored and unpacked;
        each held by ``hold`` first, as :meth:`keep_layer` holds one."""
        hold.add(*[layer.diff_id for layer in layers])
        for layer in layers:
            with self._layer_lock(layer.diff_id):
                if not self.has_blob(layer.digest) or self.layer_dir(layer.diff_id) is None:
                    return False
        return True

    def temp_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        return fd, Path(name)

    def commit_blob(self, tmp: Path, digest: str) -> None:
        """Move a verified download into place."""
        os.rename(tmp, self.blob_path(digest))

    def twin(self, digest: str) -> tuple[str, int] | None:
        """The gzip blob (digest, size) made of the plain tar blob ``digest``, if any."""
        try:
            found = json.loads((self.twins / f"{digest_hex(digest)}.json").read_bytes())
        except FileNotFoundError:
            return None
        twin = str(found["digest"])
        return (twin, int(found["size"])) if self.has_blob(twin) else None

    def set_twin(self, digest: str, twin: str, size: int) -> None:
        """Record ``twin`` (stored) as the gzip blob of the plain tar blob ``digest``."""
        record = {"digest": twin, "size": size}
        atomic_write(self.twins / f"{digest_hex(digest)}.json", json.dumps(record).encode())

    def _delete_blob(self, digest: str, others: set[str]) -> None:
        """Remove a layer blob (and its gzip twin, unless ``others`` names it)."""
        twin = self.twin(digest)
        self.blob_path(digest).unlink(missing_ok=True)
        (self.twins / f"{digest_hex(digest)}.json").unlink(missing_ok=True)
        if twin is not None and twin[0] not in others:
            self.blob_path(twin[0]).unlink(missing_ok=True)

    # ---- layers ---------------------------------------------------------------------

    def layer_dir(self, diff_id: str) -> Path | None:
        """The unpacked layer of ``diff_id``, if it is complete."""
        hexa = digest_hex(diff_id)
        try:
            record = json.loads((self.layer_records / f"{hexa}.json").read_bytes())
        except FileNotFoundError:
            return None
        path = self.layer_dirs / str(record["dir"])
        return path if path.is_dir() else None

    def unpack_layer(
        self, blob_digest: str, diff_id: str, cancelled: Callable[[], bool] = lambda: False
    ) -> Path:
        """Unpack a stored blob once: its directory (already there if it was).  One
        thread at a time per layer (see :meth:`delete`); ``cancelled()`` is asked at every
        read of the blob, and :class:`UnpackCancelled` raised when it says so."""
        with self._layer_lock(diff_id):
            found = self.layer_dir(diff_id)
            if found is not None:
                return found

            def read(n: int) -> bytes:
                if cancelled():
                    raise UnpackCancelled(f"the unpack of layer {blob_digest} was cancelled")
                return blob.read(n)

            with open(self.blob_path(blob_digest), "rb") as blob:
                return self._unpack(read, diff_id, f"layer {blob_digest}")

    @contextlib.contextmanager
    def _layer_lock(self, diff_id: str) -> Iterator[None]:
        with self._locks_lock:
            lock, users = self._locks.setdefault(diff_id, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._locks_lock:
                users[0] -= 1
                if not users[0]:
                    del self._locks[diff_id]

    def _unpack(self, read: Callable[[int], bytes], diff_id: str, what: str) -> Path:
        """Unpack into a temporary directory, check the diff_id, rename the directory
        into place, write its record: a kill at any moment leaves no layer a run would
        use (``tmp/`` is emptied at start; a directory without its record is replaced)."""
        hexa = digest_hex(diff_id)
        final = self.layer_dirs / hexa[:SHORT]
        work = Path(tempfile.mkdtemp(dir=self.tmp, prefix="layer-"))
        try:
            # A layer whose tar has no "./" member (most: Docker's and boxd's own steps
            # write only what changed) leaves its root as Docker's layer directories are,
            # 0755; the top layer's root is the mode of the container's "/".
            os.chmod(work, 0o755)
            result = unpack(read, str(work))
            if result.diff_id != diff_id:
                raise LayerError(
                    f"{what} unpacks to {result.diff_id}, but the image says {diff_id}"
                )
            os.chmod(work, os.stat(work).st_mode | 0o011)
            if final.exists():  # a half unpack (killed before its record) or a collision
                shutil.rmtree(final)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        record = {"diff_id": diff_id, "dir": final.name, "files": disk_usage([final])}
        try:
            atomic_write(self.layer_records / f"{hexa}.json", json.dumps(record).encode())
        except BaseException:  # a full disk: no layer without its record is left
            shutil.rmtree(final, ignore_errors=True)
            raise
        self._note(layer=diff_id)
        return final

    def layer_size(self, diff_id: str) -> int:
        """What the unpacked layer holds, as Docker counts a layer's size (see
        :func:`disk_usage`): 0 for a layer that changed nothing.  Of an older boxd's record
        that :meth:`measure` could not rewrite: the tar's size it recorded."""
        with contextlib.suppress(FileNotFoundError):
            path = self.layer_records / f"{digest_hex(diff_id)}.json"
            record = json.loads(path.read_bytes())
            return int(record.get("files", record.get("size", 0)))
        return 0

    def measure(self) -> int:
        """At start: the size of each layer whose record has none (an older boxd's, which
        recorded its tar's size instead) measured and recorded; how many were.  A record
        that cannot be read or rewritten is left as it is."""
        measured = 0
        with os.scandir(self.layer_records) as entries:
            for entry in entries:
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    record = json.loads(Path(entry.path).read_bytes())
                    if "files" not in record:
                        path = self.layer_dirs / str(record["dir"])
                        record["files"] = disk_usage([path])
                        record.pop("size", None)
                        atomic_write(Path(entry.path), json.dumps(record).encode())
                        measured += 1
        return measured

    # ---- images ---------------------------------------------------------------------

    def save(self, record: ImageRecord) -> None:
        data = json.dumps(unstructure(record), indent=1).encode()
        with self._records_lock:
            atomic_write(self.records / f"{digest_hex(record.id)}.json", data)

    def images(self) -> list[ImageRecord]:
        return self._read_records(self.records)

    def _read_records(self, directory: Path) -> list[ImageRecord]:
        """The records in ``directory`` (by name), each parsed once while its file stays
        the same (every write renames a new file into place: another inode): a prune or
        an rmi reads them all for each image it deletes, a store may hold thousands (a
        classic build keeps an image per step), and the JSON and its conversion are most
        of a read.  One that cannot be read or parsed is left out."""
        known = self._parsed.get(directory, {})
        seen: dict[str, tuple[tuple[int, int, int], ImageRecord]] = {}
        with os.scandir(directory) as entries:
            names = sorted([(e.name, e) for e in entries if e.name.endswith(".json")])
        for name, entry in names:
            with contextlib.suppress(OSError, ValueError):
                st = entry.stat(follow_symlinks=False)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                hit = known.get(name)
                if hit is None or hit[0] != key:  # read after the stat: never older
                    hit = (key, structure(json.loads(Path(entry.path).read_bytes()), ImageRecord))
                seen[name] = hit
        self._parsed[directory] = seen
        return [record for _, record in seen.values()]

    def get(self, image_id: str) -> ImageRecord:
        path = self.records / f"{digest_hex(image_id)}.json"
        try:
            return structure(json.loads(path.read_bytes()), ImageRecord)
        except FileNotFoundError:
            raise NoSuchImage(image_id) from None

    def stored_layers(self, image_id: str) -> tuple[BlobRef, ...] | None:
        """The layers of the stored image ``image_id`` (None: it is not stored).  A pull or
        a load of it again takes these, as Docker knows layers by their diff_ids: its own
        blobs (the same layers compressed otherwise: a zstd push, a podman save of plain
        tars) would be kept by no image, since :meth:`add` keeps the record there is."""
        try:
            return self.get(image_id).layers
        except NoSuchImage:
            return None

    def for_container(self, image_id: str) -> ImageRecord:
        """The image a container was created from, even if it was retired since."""
        try:
            return self.get(image_id)
        except NoSuchImage:
            path = self.retired / f"{digest_hex(image_id)}.json"
            try:
                return structure(json.loads(path.read_bytes()), ImageRecord)
            except FileNotFoundError:
                raise NoSuchImage(image_id) from None

    def retired_images(self) -> list[ImageRecord]:
        return self._read_records(self.retired)

    def config(self, record: ImageRecord) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(self.read_blob(record.id))
        return config

    def lookup(self, text: str) -> ImageRecord:
        """By reference (``busybox``, ``x:1``, ``x@sha256:...``), by id or unique id prefix."""
        records = self.images()
        hexa = text.removeprefix("sha256:")
        if hexa and len(hexa) <= 64 and all(c in "0123456789abcdef" for c in hexa):
            matches = [r for r in records if r.id.removeprefix("sha256:").startswith(hexa)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1 and len(hexa) < 64:
                raise NoSuchImage(f"{text} (the prefix matches {len(matches)} images)")
        try:
            ref = parse_reference(text)
        except ValueError as exc:
            raise InvalidReference(str(exc)) from None
        for record in records:
            if ref.digest is not None and f"{ref.name}@{ref.digest}" in record.repo_digests:
                return record
            if ref.digest is None and str(ref) in record.repo_tags:
                return record
        raise self.gone(text, shown=ref.familiar)  # as Docker names it: nope:latest

    def ancestry(self, refs: list[str]) -> list[str]:
        """An ``ancestor`` filter's values with the ids of the images they name (by any
        of their names, an id or a prefix of one) and of those images' descendants (built
        or committed on them, their Parent), as Docker's filter takes an image and its
        children by id.  Reads the store: not on the event loop's thread."""
        ids = set()
        for ref in refs:
            with contextlib.suppress(NoSuchImage):
                ids.add(self.lookup(ref).id)
        records = self.images() if ids else []
        while children := {r.id for r in records if r.parent in ids and r.id not in ids}:
            ids |= children
        return [*refs, *sorted(ids)]

    def gone(self, text: str, why: str = "", shown: str = "") -> NoSuchImage:
        """The error for an image ``text`` (named ``shown``, else as given) not (or no
        longer) there: with the reason it was removed after its pull, if it was."""
        keys = [text, f"sha256:{text.removeprefix('sha256:')}"]
        with contextlib.suppress(ValueError):
            ref = parse_reference(text)
            keys.append(str(ref) if ref.digest is None else f"{ref.name}@{ref.digest}")
        reason = next((self._refused[k] for k in keys if k in self._refused), "")
        shown = shown or text
        if reason:
            return NoSuchImage(f"{shown} (removed after its pull: {reason})")
        return NoSuchImage(f"{shown} ({why})" if why else shown)

    def refuse(self, record: ImageRecord, reason: str) -> None:
        """Remember why ``record`` is being removed (for :meth:`lookup`'s error)."""
        for key in (record.id, *record.repo_tags, *record.repo_digests):
            self._refused[key] = reason

    def tag(self, image_id: str, ref: Reference, *, stamp: bool = True) -> str:
        """Point ``ref`` (a tag) at the image, taking it from any image that had it: the
        id of that image ("" when none had it).  ``stamp``: the image's tag time is now
        (Docker's tag, commit, import and build; not its pull and load)."""
        if ref.familiar_name == "sha256":  # sha256:abc would read as a digest or an id
            raise ValueError(
                f"invalid tag {ref.familiar!r}: refusing to create an ambiguous tag using"
                " digest algorithm as name"
            )
        name = str(ref.with_tag(ref.tag or "latest"))
        taken = ""
        with self._records_lock:
            for record in self.images():
                if record.id != image_id and name in record.repo_tags:
                    self.save(attrs.evolve(record, repo_tags=_without(record.repo_tags, name)))
                    taken = record.id
            record = self.get(image_id)
            tags = record.repo_tags if name in record.repo_tags else (*record.repo_tags, name)
            tagged = time.time() if stamp else record.tagged
            if (tags, tagged) != (record.repo_tags, record.tagged):
                self.save(attrs.evolve(record, repo_tags=tags, tagged=tagged))
        return taken

    def add(
        self,
        image_id: str,
        layers: tuple[BlobRef, ...],
        ref: Reference | None,
        digest: str = "",
        *,
        base: str = "",
        parent: str = "",
        stamp: bool = True,
    ) -> ImageRecord:
        """Record an image whose config and layers are stored (over ``base``, from
        ``parent``, see :class:`ImageRecord`); tag it with ``ref`` (``stamp``: see
        :meth:`tag`).  An image retired (``rmi -f``) and added again is live again: its
        retired record goes, and the container that held it no longer takes it along.
        Its config must still be stored (a collector in another thread may have deleted
        it since the caller stored it): a FileNotFoundError naming it, not a record
        without its config."""
        with self._records_lock:
            if not self.has_blob(image_id):
                path = self.blob_path(image_id)
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            try:
                record = self.get(image_id)
            except NoSuchImage:
                record = ImageRecord(
                    id=image_id, layers=layers, added=time.time(), base=base, parent=parent
                )
            self._refused.pop(image_id, None)
            if ref is not None:
                self._refused.pop(str(ref), None)
            if ref is not None and digest:
                repo_digest = f"{ref.name}@{digest}"
                self._refused.pop(repo_digest, None)
                if repo_digest not in record.repo_digests:
                    digests = (*record.repo_digests, repo_digest)
                    record = attrs.evolve(record, repo_digests=digests)
            self.save(record)
            (self.retired / f"{digest_hex(image_id)}.json").unlink(missing_ok=True)
            if ref is not None and ref.tag is not None:
                self.tag(image_id, ref, stamp=stamp)
                record = self.get(image_id)
        return record

    def make(
        self,
        config: bytes,
        layers: tuple[BlobRef, ...],
        ref: Reference | None = None,
        digest: str = "",
        *,
        image_id: str | None = None,
        base: str = "",
        parent: str = "",
        stamp: bool = True,
    ) -> ImageRecord:
        """Store an image's config (checked against ``image_id`` when given) and
        :meth:`add` its record, in one step against a removal or the collector of the same
        image, which deletes a config only while no record of it exists."""
        with self._records_lock:
            image_id = self.put_blob(config, image_id)
            return self.add(image_id, layers, ref, digest, base=base, parent=parent, stamp=stamp)

    def untag(self, record: ImageRecord, name: str) -> ImageRecord:
        """``name`` (a tag or a repo digest) taken from the image; with the last tag of a
        repository, the repository's digests too (as Docker's rmi).  Of the record as it
        is now (another thread may have tagged it since ``record`` was read)."""
        with self._records_lock:
            record = self.get(record.id)
            tags = _without(record.repo_tags, name)
            digests = _without(record.repo_digests, name)
            repo = name.rpartition(":")[0]
            if "@" not in name and all(t.rpartition(":")[0] != repo for t in tags):
                digests = tuple([d for d in digests if d.partition("@")[0] != repo])
            record = attrs.evolve(record, repo_tags=tags, repo_digests=digests)
            self.save(record)
        return record

    def retire(self, record: ImageRecord) -> None:
        """Hide an image that stopped containers still use (``rmi -f``, as Docker deletes
        the image but not the layers a container holds); :meth:`collect` deletes it."""
        hexa = digest_hex(record.id)
        record = attrs.evolve(record, repo_tags=(), repo_digests=())
        with self._records_lock:
            atomic_write(self.retired / f"{hexa}.json", json.dumps(unstructure(record)).encode())
            (self.records / f"{hexa}.json").unlink(missing_ok=True)

    def collect(self, in_use: set[str]) -> None:
        """Delete the retired images no container uses any more (``in_use``: image ids),
        but not one added again since (a pull, load or build of the same image: only its
        retired record is left, if :meth:`add` has not taken it yet)."""
        for record in self.retired_images():
            if record.id in in_use:
                continue
            with self._records_lock:
                (self.retired / f"{digest_hex(record.id)}.json").unlink(missing_ok=True)
                if not (self.records / f"{digest_hex(record.id)}.json").exists():
                    self._delete_unheld(record, _Unused(self))

    def delete(self, record: ImageRecord) -> Deleted:
        """Remove an image and what no other image uses (nor one being made holds: see
        :meth:`holding`)."""
        with self._records_lock:
            (self.records / f"{digest_hex(record.id)}.json").unlink(missing_ok=True)
        check = _Unused(self)
        removed, size = self._delete_unheld(record, check)
        held = {c for r in check.records() for c in chain_ids(r.layers)}
        gone = [c for c in chain_ids(record.layers) if c not in held]
        return Deleted(removed, gone[::-1], size)

    def _delete_unheld(self, record: ImageRecord, check: _Unused) -> tuple[list[str], int]:
        """What of an image whose record is gone no other image uses or holds (see
        :meth:`delete`): the diff_ids removed and the bytes of their layers."""
        removed: list[str] = []
        size = 0
        for layer in record.layers:
            # After an unpack of the layer in progress (cancel it first: Unpacks.stop);
            # one that starts later finds no blob.
            with self._layer_lock(layer.diff_id):
                if layer.diff_id not in removed and check.free(layer.diff_id):
                    size += self.layer_size(layer.diff_id)  # its record goes with it
                    self._delete_layer(layer.diff_id)
                    removed.append(layer.diff_id)
                if check.free(layer.diff_id, layer.digest):
                    self._delete_blob(layer.digest, check.blobs)
        with self._records_lock:  # not the config of the same image added again
            if not self._recorded(record.id):
                self.blob_path(record.id).unlink(missing_ok=True)
        return removed, size

    def _recorded(self, image_id: str) -> bool:
        """Whether the image has a record, live or retired (its config is needed)."""
        name = f"{digest_hex(image_id)}.json"
        return (self.records / name).exists() or (self.retired / name).exists()

    def unshared(self, record: ImageRecord) -> set[str]:
        """The diff_ids of ``record``'s layers that no other image (retired ones too)
        uses: what deleting it would delete."""
        others = [r for r in self.images() + self.retired_images() if r.id != record.id]
        return {layer.diff_id for layer in record.layers} - self._used(others)

    @staticmethod
    def _used(records: list[ImageRecord]) -> set[str]:
        return {layer.diff_id for r in records for layer in r.layers}

    @staticmethod
    def _blobs_of(records: list[ImageRecord]) -> set[str]:
        """The blobs ``records`` need: their layers' and their configs (an image's id)."""
        return {layer.digest for r in records for layer in r.layers} | {r.id for r in records}

    def sweep(self, images: list[ImageRecord]) -> int:
        """At start, before any pull, load or unpack: delete the blobs, unpacked layers
        and layer records that no image (nor a retired one) holds, which a daemon killed
        during a load, import, commit or pull had stored and nothing would ever delete
        (a pull cut short keeps its layers until then, for the next pull of the image).
        Nothing is deleted while an image record cannot be read.  ``images``: the stored
        images (:meth:`images`, which the caller reads anyway).  How many went."""
        records = images + self.retired_images()
        on_disk = len([*self.records.glob("*.json"), *self.retired.glob("*.json")])
        if len(records) != on_disk:
            return 0
        used = self._used(records)
        held = self._blobs_of(records)
        # A held plain blob's gzip twin is held too (the twins' records, read once each,
        # before the blobs are swept); another twin record goes.
        for entry in os.scandir(self.twins):
            plain = "sha256:" + entry.name.removesuffix(".json")
            if plain not in held:
                os.unlink(entry.path)
            elif (twin := self.twin(plain)) is not None:
                held.add(twin[0])
        gone = 0
        for entry in os.scandir(self.layer_records):
            diff_id = "sha256:" + entry.name.removesuffix(".json")
            if diff_id in used:
                continue
            if entry.name.endswith(".json") and _is_hex(entry.name[:-5]):
                self._delete_layer(diff_id)
            else:  # a record's temporary file
                os.unlink(entry.path)
            gone += 1
        kept = {self.layer_dir(diff_id) for diff_id in used} - {None}
        for entry in os.scandir(self.layer_dirs):
            if Path(entry.path) not in kept:  # a rename whose record was never written
                shutil.rmtree(entry.path, ignore_errors=True)
                gone += 1
        for entry in os.scandir(self.blobs):
            if "sha256:" + entry.name not in held:
                os.unlink(entry.path)
                gone += 1
        return gone

    def _delete_layer(self, diff_id: str) -> None:
        hexa = digest_hex(diff_id)
        path = self.layer_dir(diff_id)
        (self.layer_records / f"{hexa}.json").unlink(missing_ok=True)
        if path is not None:
            trash = Path(tempfile.mkdtemp(dir=self.tmp, prefix="gone-"))
            os.rename(path, trash / "layer")
            shutil.rmtree(trash, ignore_errors=True)

    def lowers(self, record: ImageRecord) -> tuple[str, ...]:
        """The layer directories of an image, top-most first (overlay's lowerdir order).

        A layer the image holds twice (two RUN steps that changed the same, an image's
        repeated empty layer) is one directory: overlay refuses a lowerdir given twice
        (ELOOP, 'overlapping'), so only its top-most place is kept, which shows the same
        (what the lower copy holds, the upper one holds again over everything between)."""
        dirs: dict[str, None] = {}
        for layer in reversed(record.layers):
            path = self.layer_dir(layer.diff_id)
            if path is None:
                raise NoSuchImage(f"{record.id} (layer {layer.diff_id} is missing)")
            dirs.setdefault(str(path))
        return tuple(dirs)

    def size(self, record: ImageRecord) -> int:
        return sum(self.layer_size(layer.diff_id) for layer in record.layers)

    def layers_size(self) -> int:
        """The bytes of the layers the images hold, each layer once (Docker's LayersSize:
        what ``system df`` shows as the images' size)."""
        return sum(map(self.layer_size, self._used(self.images())))


@attrs.frozen
class Deleted:
    """What :meth:`ImageStore.delete` removed: the layers' diff_ids (each once, though
    the image may hold a layer twice: two RUN steps that changed nothing); the ids Docker
    names them by, top first (their ChainIDs: a layer over others that no other image
    has, though its directory stays for an image that has it over other layers); and the
    bytes of the layers deleted."""

    diff_ids: list[str]
    chains: list[str]
    size: int


def chain_ids(layers: Collection[BlobRef]) -> list[str]:
    """Docker's ids of an image's layers (ChainIDs): the first one's diff_id, then each
    the digest of the id below it and its own diff_id ("sha256:... sha256:...")."""
    chains: list[str] = []
    for layer in layers:
        below = f"{chains[-1]} {layer.diff_id}" if chains else ""
        chains.append(
            "sha256:" + hashlib.sha256(below.encode()).hexdigest() if below else layer.diff_id
        )
    return chains


class ImageInUse(RuntimeError):
    """rmi of an image a container uses (without --force)."""


class Hold:
    """The layers an image being made (a load, import, commit, build or pull) takes: each
    held (:meth:`add`) before it checks that the layer is stored, until its record is
    written (:meth:`release`).  A removal of another image with the layer leaves it,
    and so does the collector of retired images (see :meth:`ImageStore.keep_layer`)."""

    def __init__(self, store: ImageStore) -> None:
        self._store = store
        self.diff_ids: set[str] = set()

    def add(self, *diff_ids: str) -> None:
        """Hold these layers too (each once, however often it is named)."""
        new = set(diff_ids) - self.diff_ids
        self._store._hold(new)
        self.diff_ids |= new

    def release(self) -> None:
        """Let them go (the image's record holds those it uses); it may hold more again."""
        self._store._release(self.diff_ids)
        self.diff_ids = set()


@attrs.define
class _Added:
    """What one thread stored inside :meth:`ImageStore.undone_on_failure`: configs, layer
    blobs (each with its layer's diff_id) and unpacked layers."""

    configs: set[str] = attrs.Factory(set)
    blobs: dict[str, str] = attrs.Factory(dict)
    layers: set[str] = attrs.Factory(set)


class _Unused:
    """Which layers and blobs no image record uses and no image being made holds, as a
    removal asks it under each layer's lock: the records are read again whenever a hold
    has ended since they were read (its image is recorded by then)."""

    def __init__(self, store: ImageStore) -> None:
        self._store = store
        self._ends = -1
        self._records: list[ImageRecord] | None = None
        self.used: set[str] = set()
        self.blobs: set[str] = set()  # the layer blobs and configs records need

    def free(self, diff_id: str, blob: str = "") -> bool:
        """Whether the layer (with ``blob``: that blob of it) may go."""
        held, ends = self._store._held_now(diff_id)
        if held:
            return False
        if ends != self._ends:
            records = self._read()
            store = self._store
            self.used, self.blobs, self._ends = store._used(records), store._blobs_of(records), ends
        return blob not in self.blobs if blob else diff_id not in self.used

    def records(self) -> list[ImageRecord]:
        """The records (live and retired) as last read, read now if they were not."""
        return self._records if self._records is not None else self._read()

    def _read(self) -> list[ImageRecord]:
        self._records = self._store.images() + self._store.retired_images()
        return self._records


def _without(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return tuple([i for i in items if i != item])


def written_size(container_dir: Path) -> int:
    """What a container wrote to its own filesystem (Docker's SizeRw): what its overlays'
    upper directories hold (/usr's too on default) as :func:`disk_usage` counts it, but
    the files boxd writes at each start (Docker keeps its own out of the container's
    layer too), so that a container that changed nothing has written 0 B.  A container
    removed while it is measured (``system df`` beside an ``rm``) has written nothing."""
    from .._diff import RUNTIME_FILES
    from .._rootfs import root_upper, written_uppers

    root = root_upper(container_dir)
    try:
        uppers = written_uppers(container_dir)
    except FileNotFoundError:  # its fs/ went between the glob's steps
        return 0
    return disk_usage(uppers, {f"{root}{p}" for p in RUNTIME_FILES})


def disk_usage(dirs: list[Path], leave_out: Collection[str] = ()) -> int:
    """Bytes below ``dirs`` as Docker counts a layer's or a container's size: the sizes
    of everything but directories (a symlink's is its target's length; nothing is
    followed), each inode once (hard links); but the paths ``leave_out``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [str(d) for d in dirs]
    while pending:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    if entry.path in leave_out:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total

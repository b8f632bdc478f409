"""Layers unpacked from their stored blobs, in the background, once each.

A pull ends when its blobs are stored and verified (as ``skopeo copy`` to ``dir:`` or
``ctr content fetch`` end); :meth:`Unpacks.start` then unpacks the layers not yet
unpacked, each in a thread, up to :data:`PARALLEL` at once, as containerd unpacks its
content store's blobs into snapshots.  A create waits for its image's layers
(:meth:`Unpacks.ready`): several creates of one image share one unpack of each layer, a
layer missing and not under way (the daemon was killed mid-unpack: the work was in
``tmp/``, emptied at start) is unpacked again from its blob, and an unpack that fails is
the create's error, naming the image, the layer and the member.  A layer whose content is
refused (a hostile or broken member) leaves no image behind: ``refused`` (the
supervisor's) removes every image that has it, as a pull that unpacked at once would
have left none.  :meth:`Unpacks.stop`
cancels the unpacks of an image being removed and waits for them to end (the unpacking
thread stops at its next read of the blob); the store's per-layer lock orders an unpack
and the deletion of the same layer.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import attrs
import trio

from .store import BlobRef, ImageRecord, ImageStore, UnpackCancelled
from .unpack import LayerError

__all__ = ["PARALLEL", "Unpacks"]

PARALLEL = 3


@attrs.define(eq=False)
class _Job:
    layer: BlobRef
    done: trio.Event = attrs.Factory(trio.Event)
    cancelled: threading.Event = attrs.Factory(threading.Event)
    error: Exception | None = None


class Unpacks:
    def __init__(
        self,
        store: ImageStore,
        nursery: trio.Nursery,
        refused: Callable[[str, LayerError], Awaitable[None]],
    ) -> None:
        self.store = store
        self._nursery = nursery
        self._refused = refused  # removes the images of a layer whose content is refused
        self._jobs: dict[str, _Job] = {}  # by diff_id: the unpacks under way
        self._refusals: set[trio.Event] = set()  # removals by ``refused`` under way
        self._limit = trio.CapacityLimiter(PARALLEL)

    def start(self, record: ImageRecord) -> list[_Job]:
        """Unpack in the background the layers of ``record`` not unpacked yet (joining
        those under way); their jobs."""
        jobs = []
        for layer in record.layers:
            job = self._jobs.get(layer.diff_id)
            if job is None:
                if self.store.layer_dir(layer.diff_id) is not None:
                    continue
                job = self._jobs[layer.diff_id] = _Job(layer)
                self._nursery.start_soon(self._run, job, name=f"unpack {layer.diff_id}")
            jobs.append(job)
        return jobs

    async def _run(self, job: _Job) -> None:
        try:
            async with self._limit:
                if not job.cancelled.is_set():
                    await trio.to_thread.run_sync(
                        self.store.unpack_layer,
                        job.layer.digest,
                        job.layer.diff_id,
                        job.cancelled.is_set,
                    )
        except Exception as exc:
            job.error = exc
        finally:
            del self._jobs[job.layer.diff_id]
            job.done.set()
        if isinstance(job.error, LayerError):
            # In a task of its own: removing the images stops their other unpacks and
            # waits for them, whose own refusals then wait for this one's lock.
            done = trio.Event()
            self._refusals.add(done)
            self._nursery.start_soon(self._refuse, job.layer.diff_id, job.error, done)

    async def _refuse(self, diff_id: str, error: LayerError, done: trio.Event) -> None:
        try:
            await self._refused(diff_id, error)
        finally:
            self._refusals.discard(done)
            done.set()

    async def ready(self, record: ImageRecord, name: str) -> None:
        """Return once every layer of the image ``name`` is unpacked; an unpack that
        fails raises :class:`LayerError` naming the layer and why."""
        jobs = self.start(record)
        if not jobs:  # every layer is there (the usual case: one lookup per layer)
            return
        for job in jobs:
            await job.done.wait()
        # A refused layer first: its refusal cancels the image's other unpacks.
        failed = sorted(
            (job for job in jobs if job.error is not None),
            key=lambda job: not isinstance(job.error, LayerError),
        )
        if failed:
            job = failed[0]
            error = job.error
            what = f"image {name}: its layer {job.layer.digest} cannot be unpacked"
            if isinstance(error, FileNotFoundError | UnpackCancelled):  # by rmi
                raise self.store.gone(name, "it was removed")
            if isinstance(error, LayerError):
                raise LayerError(f"{what}: {error}")
            if isinstance(error, OSError):
                raise LayerError(f"{what}: {error.strerror or error}")
            raise LayerError(f"{what}: {error}")
        for layer in record.layers:
            if self.store.layer_dir(layer.diff_id) is None:  # deleted meanwhile
                raise self.store.gone(name, "it was removed")

    async def settled(self, records: list[ImageRecord]) -> None:
        """Return once no layer of ``records`` is being unpacked (their sizes are known)
        and no refused image is being removed."""
        for record in records:
            for layer in record.layers:
                job = self._jobs.get(layer.diff_id)
                if job is not None:
                    await job.done.wait()
        for done in list(self._refusals):
            await done.wait()

    async def stop(self, diff_ids: set[str] | frozenset[str]) -> None:
        """Cancel the unpacks of ``diff_ids`` and wait for them to end."""
        jobs = [job for d, job in self._jobs.items() if d in diff_ids]
        for job in jobs:
            job.cancelled.set()
        for job in jobs:
            await job.done.wait()

    async def aclose(self) -> None:
        """Cancel every unpack and wait for them to end (the daemon stops)."""
        await self.stop(frozenset(self._jobs))

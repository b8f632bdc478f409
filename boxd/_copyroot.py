"""A container's root directory as its processes see it, held open for ``cp``.

A running container's is ``/proc/PID/root`` of its init: the overlay and every mount the
container has below it (volumes, tmpfs), in its own mount namespace.  A container at rest
has nothing mounted anywhere, so a holder process is spawned through the native path with
the container's own overlays and volumes (the same mount table, less /proc, /sys and /dev,
in a mount namespace of its own and, for ``--isolate-user``, the container's user
namespace and id-mapped layers), pivots into it and waits, never to exec, until it is
killed (or its daemon is: it dies with it); its ``/proc/PID/root`` is then the root.
Nothing is ever mounted on the host.  The caller keeps the container from starting
meanwhile (overlayfs refuses a second mount of an upper directory in use).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from . import _native, _plan, _shim
from ._native import Namespace, Native, Spawned, SpawnPlan
from ._records import Container
from ._rootfs import Image, bind_subpaths, container_mounts, id_mapped_layers

__all__ = ["open_running_root", "open_stopped_root"]


def _open_root(pid: int) -> int:
    return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


@asynccontextmanager
async def open_running_root(pid: int, pidfd: int) -> AsyncIterator[int]:
    """An O_PATH fd of the root of the running process ``pid`` (``pidfd`` its pidfd)."""
    fd = _open_root(pid)
    try:
        # Still alive after the open: the pid was that process's, not a reused one.
        signal.pidfd_send_signal(pidfd, 0)
        yield fd
    finally:
        os.close(fd)


def _holder_plan(
    container: Container,
    image: Image,
    container_dir: Path,
    start_fd: int,
    image_mounts: Sequence[tuple[str, tuple[str, ...]]],
) -> SpawnPlan:
    config = container.config
    id_map = _plan.id_range() if config.userns else None
    rootfs, mounts = container_mounts(
        image,
        container_dir,
        id_map=id_map,
        read_only_root=config.read_only,
        volumes=config.volumes,
        image_mounts=image_mounts,
        standard=False,
        # Made, if missing, as its start makes it: dockerd makes it at the create, so a
        # `cp` into or out of it before the first start finds it (moby's
        # TestCreateWithWorkdir).
        workdir=config.workdir,
    )
    return SpawnPlan(
        argv=("/",),  # never run: the holder is killed while it waits for start_fd
        namespaces=frozenset({Namespace.MOUNT} | ({Namespace.USER} if id_map else set())),
        rootfs=rootfs,
        mounts=mounts,
        id_mapped=id_mapped_layers(image, container_dir) if id_map else (),
        start_fd=start_fd,
        process_name="boxd:[cp]",
        die_with_caller=True,  # its mounts must not outlive a killed daemon
    )


def _write_maps(id_map: tuple[int, int] | None) -> Callable[[Spawned], None] | None:
    if id_map is None:
        return None
    start, count = id_map

    def write(spawned: Spawned) -> None:
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{spawned.pid}/{name}").write_text(f"0 {start} {count}\n")

    return write


@asynccontextmanager
async def open_stopped_root(
    native: Native,
    container: Container,
    image: Image,
    container_dir: Path,
    image_mounts: Sequence[tuple[str, tuple[str, ...]]] = (),
) -> AsyncIterator[int]:
    """An O_PATH fd of the root of a container at rest, its layers, volumes and image
    mounts (``image_mounts``: as :class:`boxd._plan.Prepared` has them) mounted by a
    holder process for as long as the context lasts."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as listener:
        listener.bind("")  # an autobound abstract address: nobody is told it
        listener.listen(1)
        plan = _holder_plan(container, image, container_dir, listener.fileno(), image_mounts)
        if any(v.subpath for v in container.config.volumes):  # as a start binds them
            plan = await trio.to_thread.run_sync(
                bind_subpaths, native, plan, container.config.volumes
            )
        id_map = _plan.id_range() if container.config.userns else None
        try:
            spawned = await _native.start(native, plan, prepare=_write_maps(id_map))
        finally:
            for fd in plan.mount_fds:
                os.close(fd)
        try:
            fd = _open_root(spawned.pid)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            with trio.CancelScope(shield=True):
                signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
                await _shim.reap_child(spawned.pidfd)

"""The Docker Engine API (HTTP/1.1 on a second Unix socket), a front end to the supervisor.

``_http``: h11 on Trio; ``_shapes``: Docker's JSON and boxd's records, both ways;
``_server``: connections, and the areas' routes gathered by ``_router``; ``_api``: what
the areas share; one module per area (``_containers``, ``_attach``, ``_images``,
``_networks``, ``_system``).  This package's own module holds only the listening socket:
the rest (h11, every area: ~1 MB of the daemon's memory) is imported when the first
client connects.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._server import bind_socket

if TYPE_CHECKING:
    from .._supervisor import Supervisor
    from ._server import DockerApi


async def serve_docker(
    sup: Supervisor,
    path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Engine API on a Unix socket at ``path`` (bound as the native socket is:
    mode 0660, group ``boxd``) until cancelled; the socket is removed at the end."""
    sock = await bind_socket(path)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            api: list[DockerApi] = []

            async def handle(stream: trio.abc.Stream) -> None:
                if not api:  # no checkpoint from here to the append: made once
                    from ._server import DockerApi

                    api.append(DockerApi(sup, nursery))
                await api[0].handle(stream)

            await nursery.start(trio.serve_listeners, handle, [listener])
            task_status.started()
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

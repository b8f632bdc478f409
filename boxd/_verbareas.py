"""The protocol's verbs a daemon serves now and then: images, networks, volumes, ``cp``
and the rarer container verbs (update, rename, top, diff, prune, stats, events).

Their messages and handlers (64 attrs classes and their code: 1.2 MB of the idle
daemon's 34 MB) are imported by the first request of their area, not at start.  The
socket server knows only each area's request names (below); the area's module has:

* ``REQUESTS``: its request classes (the catalogue's entries, named as on the wire),
* ``STREAMS``: those whose conversation goes on after the response,
* ``ERRORS``: the ErrorResponse kind of the failures only its handlers raise,
* ``handlers(sup)``: each request class's handler.

``tests/test_protocol.py`` checks the names below against each module's ``REQUESTS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

AREAS: dict[str, tuple[str, ...]] = {
    "boxd._build.verbs": ("BuildRequest",),
    "boxd._copyserver": ("CopyStatRequest", "CopyFromRequest", "CopyToRequest"),
    "boxd._images.verbs": (
        "PullRequest",
        "PushRequest",
        "ImagesRequest",
        "ImageInspectRequest",
        "DistributionRequest",
        "RemoveImageRequest",
        "TagRequest",
        "LoginRequest",
        "LogoutRequest",
        "SaveRequest",
        "LoadRequest",
        "ImportRequest",
        "CommitRequest",
        "HistoryRequest",
        "PruneImagesRequest",
        "SystemDfRequest",
        "ExportRequest",
    ),
    "boxd._netserver": (
        "NetworkCreateRequest",
        "NetworkListRequest",
        "NetworkInspectRequest",
        "NetworkRemoveRequest",
        "NetworkPruneRequest",
        "NetworkConnectRequest",
        "NetworkDisconnectRequest",
        "DockerNetworkInspectRequest",
    ),
    "boxd._rareverbs": (
        "UpdateRequest",
        "StatsRequest",
        "RenameRequest",
        "PruneRequest",
        "TopRequest",
        "DiffRequest",
        "EventsRequest",
        "DockerInspectRequest",
        "DockerDfRequest",
    ),
    "boxd._volserver": (
        "VolumeCreateRequest",
        "VolumeListRequest",
        "VolumeInspectRequest",
        "VolumeRemoveRequest",
        "VolumePruneRequest",
    ),
}
AREA_OF: dict[str, str] = {name: module for module, names in AREAS.items() for name in names}


def area(request_type: str) -> ModuleType | None:
    """The module of the area that serves ``request_type`` (imported now if it was not), or
    None for a request of the core catalogue or an unknown one."""
    module = AREA_OF.get(request_type)
    return None if module is None else importlib.import_module(module)

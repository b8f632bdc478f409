"""The protocol's image messages (the catalogue is :mod:`boxd._messages`).

``PullRequest`` streams: an ``OkResponse``, ``PullProgressFrame`` per layer change, and
``PulledFrame`` at the end (or an ``ErrorResponse`` if the pull fails); with ``all_tags``,
per tag a ``PullingFrame``, its ``PullProgressFrame`` and ``PulledFrame``, then an
``EndFrame``.  ``PushRequest``
streams: an ``OkResponse``, then per tag a ``PushingFrame``, ``PushProgressFrame`` per layer
change and ``PushedFrame``, and an ``EndFrame`` (or an ``ErrorResponse``).  ``SaveRequest``,
``LoadRequest`` and ``ImportRequest`` carry archives as byte frames (see each).
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class PullRequest:
    reference: str
    platform: str = ""  # os/arch[/variant]; empty: the daemon's host
    username: str = ""  # credentials for this pull only (the Docker API's X-Registry-Auth);
    password: str = ""  # empty: those ``login`` stored
    all_tags: bool = False  # every tag the registry lists (``reference`` names none)


@attrs.frozen
class PullingFrame:
    tag: str  # the next tag an all-tags pull pulls


@attrs.frozen
class PullProgressFrame:
    layer: str
    status: str
    current: int = 0
    total: int = 0


@attrs.frozen
class PulledFrame:
    id: str
    digest: str
    reference: str
    downloaded: bool = False  # something new came (Docker's "Downloaded newer image")


@attrs.frozen
class PushRequest:
    reference: str  # with a tag, or without one: latest, or with all_tags every tag
    all_tags: bool = False
    username: str = ""  # credentials for this push only (the Docker API's X-Registry-Auth);
    password: str = ""  # empty: those ``login`` stored


@attrs.frozen
class PushingFrame:
    repository: str  # host[:port]/name
    tag: str


@attrs.frozen
class PushProgressFrame:
    layer: str
    status: str  # Preparing, Waiting, Pushing, Pushed, Layer already exists, Mounted from R
    current: int = 0
    total: int = 0


@attrs.frozen
class PushedFrame:
    tag: str
    digest: str  # the manifest's
    size: int  # the manifest's bytes


@attrs.frozen
class ImagesRequest:
    """``filters``: Docker's (``dangling``, ``label``, ``before``, ``since``,
    ``reference``); an image must match every key, and a value of each.  ``all``: also
    the untagged images others were committed from (Docker's intermediate images)."""

    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    all: bool = False


@attrs.frozen
class ImageSummary:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    created: str  # the config's "created" (RFC 3339), or empty
    containers: int
    labels: dict[str, str] = attrs.Factory(dict)
    shared_size: int = 0  # of its layers that another image also has
    parent: str = ""  # the image it was committed from (see ImageRecord)


@attrs.frozen
class ImagesResponse:
    images: tuple[ImageSummary, ...]


@attrs.frozen
class ImageInspectRequest:
    image: str


@attrs.frozen
class ImageInspectResponse:
    image: dict[str, Any]


@attrs.frozen
class DistributionRequest:
    """What a registry holds under a reference, pulling nothing (Docker's
    ``/distribution/NAME/json``)."""

    reference: str
    username: str = ""  # as PullRequest's
    password: str = ""


@attrs.frozen
class DistributionResponse:
    media_type: str  # of the manifest or index the reference names
    digest: str
    size: int
    platforms: tuple[dict[str, Any], ...]  # those it is for: OCI platform objects


@attrs.frozen
class RemoveImageRequest:
    """``prune``: also the untagged images it was committed from that nothing else uses
    (Docker's rmi without ``--no-prune``)."""

    image: str
    force: bool = False
    prune: bool = True


@attrs.frozen
class RemovedImageResponse:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]
    reclaimed: int = 0  # bytes of the unpacked layers deleted (a prune's)


@attrs.frozen
class TagRequest:
    source: str
    target: str


@attrs.frozen
class LoginRequest:
    registry: str
    username: str
    password: str


@attrs.frozen
class LogoutRequest:
    registry: str


@attrs.frozen
class SaveRequest:
    """Answered with an OkResponse, the archive as stdout byte frames, then EndFrame."""

    images: tuple[str, ...]


@attrs.frozen
class LoadRequest:
    """The archive follows as stdin byte frames (an empty one ends it); answered with an
    OkResponse, then LoadedFrame once it is loaded.  ``platform`` (``os/arch[/variant]``):
    only the archive's images for it are loaded."""

    platform: str = ""


@attrs.frozen
class ImportRequest:
    """A root filesystem tarball as stdin frames, as for LoadRequest.  ``changes``: the
    image's configuration as Dockerfile lines (``--change``); ``comment``: its history's."""

    reference: str = ""
    changes: tuple[str, ...] = ()
    comment: str = ""
    platform: str = ""  # os[/arch[/variant]] the image says it is for; empty: the host's


@attrs.frozen
class LoadedImage:
    """``replaced``: of the tags, those another image had before, with its id (Docker's
    load says it renames that image's tag to the empty string)."""

    id: str
    tags: tuple[str, ...]
    replaced: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class LoadedFrame:
    images: tuple[LoadedImage, ...]


@attrs.frozen
class CommitRequest:
    """``changes``: Dockerfile lines applied to the container's configuration
    (``--change``); ``pause``: a running container is frozen while its files are read;
    ``config``: an image configuration's fields (Docker's, checked: the Engine API's commit
    body) that replace the container's, which fills in the rest as Docker's commit merges
    them."""

    container: str
    reference: str = ""
    comment: str = ""
    author: str = ""
    changes: tuple[str, ...] = ()
    pause: bool = True
    config: dict[str, Any] | None = None


@attrs.frozen
class CommitResponse:
    id: str


@attrs.frozen
class HistoryRequest:
    image: str


MISSING = "<missing>"


@attrs.frozen
class HistoryResponse:
    """``images``: each row's image id and tags, from the top, as Docker's history names
    them: the image's, then those of the image it was committed or built from (its
    Parent) and so on, as far as they are stored, each on the row its history ends at;
    :data:`MISSING` for the others."""

    history: tuple[dict[str, Any], ...]
    images: tuple[tuple[str, tuple[str, ...]], ...] = ()


@attrs.frozen
class PruneImagesRequest:
    all: bool = False  # also tagged images no container uses (else: untagged ones)
    filters: dict[str, tuple[str, ...]] = attrs.Factory(dict)  # until, label, label!


@attrs.frozen
class SystemDfRequest:
    pass


@attrs.frozen
class SystemDfResponse:
    images: int
    images_active: int  # used by a container
    images_size: int  # bytes of their layers (shared layers once)
    images_reclaimable: int  # bytes only unused images hold
    layers: int
    containers: int
    containers_running: int
    containers_size: int  # bytes written in their upper layers
    volumes: int = 0
    volumes_active: int = 0  # mounted by a container
    volumes_size: int = 0  # bytes below them
    volumes_reclaimable: int = 0  # bytes of the unused ones
    containers_reclaimable: int = 0  # bytes written by those not running


@attrs.frozen
class ExportRequest:
    """Answered with an OkResponse, the container's files as a tar in stdout byte frames,
    then EndFrame."""

    container: str


IMAGE_REQUESTS = (
    PullRequest,
    PushRequest,
    ImagesRequest,
    ImageInspectRequest,
    DistributionRequest,
    RemoveImageRequest,
    TagRequest,
    LoginRequest,
    LogoutRequest,
    SaveRequest,
    LoadRequest,
    ImportRequest,
    CommitRequest,
    HistoryRequest,
    PruneImagesRequest,
    SystemDfRequest,
    ExportRequest,
)
# Requests whose conversation goes on after the response (the connection closes after).
IMAGE_STREAMS = (PullRequest, PushRequest, SaveRequest, LoadRequest, ImportRequest, ExportRequest)

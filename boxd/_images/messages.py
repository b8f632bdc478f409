"""The protocol's image messages (the catalogue is :mod:`boxd._messages`).

``PullRequest`` streams: an ``OkResponse``, ``PullProgressFrame`` per layer change, and
``PulledFrame`` at the end (or an ``ErrorResponse`` if the pull fails).
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class PullRequest:
    reference: str
    platform: str = ""  # os/arch[/variant]; empty: the daemon's host


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


@attrs.frozen
class ImagesRequest:
    pass


@attrs.frozen
class ImageSummary:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    created: str  # the config's "created" (RFC 3339), or empty
    containers: int


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
class RemoveImageRequest:
    image: str
    force: bool = False


@attrs.frozen
class RemovedImageResponse:
    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


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


IMAGE_REQUESTS = (
    PullRequest,
    ImagesRequest,
    ImageInspectRequest,
    RemoveImageRequest,
    TagRequest,
    LoginRequest,
    LogoutRequest,
)

"""The protocol's build messages (the catalogue is :mod:`boxd._messages`).

``BuildRequest``: the context follows as a tar in stdin byte frames (an empty one ends
it); the daemon answers with an ``OkResponse``, then ``BuildOutputFrame`` per piece of
Docker's build output, ``StageBuiltFrame`` as each stage but the last ends, and
``BuiltFrame`` at the end (or an ``ErrorResponse`` of kind ``build``, whose message is the
one line Docker prints).
"""

from __future__ import annotations

import attrs

from .._records import Resources, Ulimit


@attrs.frozen
class BuildRequest:
    tags: tuple[str, ...] = ()
    dockerfile: str = ""  # its path in the context; empty: Dockerfile
    build_args: dict[str, str] = attrs.Factory(dict)
    # Given without a value the client could take (``--build-arg NAME`` with NAME not in
    # its environment; the API's null): an ARG's default stays, and each is named in the
    # unused-arguments warning when no ARG takes it, as dockerd names it.
    unset_args: tuple[str, ...] = ()
    target: str = ""
    labels: dict[str, str] = attrs.Factory(dict)
    no_cache: bool = False
    pull: bool = False
    rm: bool = True  # remove a step's container once the step succeeded
    force_rm: bool = False  # remove it whatever happened
    quiet: bool = False  # no step output: only the image id at the end
    platform: str = ""
    network: str = ""  # RUN's network (--network); empty: bridge, Docker's default
    extra_hosts: tuple[str, ...] = ()  # RUN's /etc/hosts lines (--add-host NAME:IP)
    # RUN's limits (--memory, --cpu-shares, ...) and /dev/shm size (--shm-size), as the
    # classic builder applies them to each step's container.
    resources: Resources = attrs.Factory(Resources)
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()  # RUN's --ulimit
    cgroup_parent: str = ""  # RUN's --cgroup-parent
    cache_from: tuple[str, ...] = ()  # --cache-from: images whose histories are the cache
    # --secret: RUN --mount=type=secret's contents by id, base64 (never in an image, a
    # step's cache key nor the daemon's log)
    secrets: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class BuildOutputFrame:
    stream: str  # text, lines ending in \n as Docker's {"stream": ...}


@attrs.frozen
class StageBuiltFrame:
    """An earlier stage's image (its last step's), which Docker's classic builder names in
    an ``aux`` message of its own as each stage ends."""

    id: str


@attrs.frozen
class BuiltFrame:
    id: str
    tags: tuple[str, ...] = ()


BUILD_REQUESTS = (BuildRequest,)
BUILD_STREAMS = (BuildRequest,)

"""The protocol's ``cp`` messages (the catalogue is :mod:`boxd._messages`).

* ``CopyStatRequest`` -> ``CopyStatResponse``: Docker's stat of a container path.
* ``CopyFromRequest`` -> ``CopyStatResponse``, the tar as stdout byte frames, ``EndFrame``.
* ``CopyToRequest`` -> ``OkResponse`` (the container exists); the client sends the tar as
  stdin byte frames up to an empty one; -> ``OkResponse`` once it is extracted, or an
  ``ErrorResponse``, nothing written, when the archive or the destination is refused.
"""

from __future__ import annotations

import attrs

# The copy's own errors and its answer's record live here, not in boxd._copy (which does the
# work with tarfile and the image unpacker): the daemon imports that on the first ``cp``.


class NoSuchPath(LookupError):
    """Docker's words for a container path that is not there."""

    def __init__(self, path: str, container: str) -> None:
        super().__init__(f"Could not find the file {path} in container {container}")


class CopyError(ValueError):
    """A copy that cannot be done as asked; the message names the path."""


@attrs.frozen
class PathStat:
    """What Docker's ``X-Docker-Container-Path-Stat`` tells of a path (the symlink itself,
    not what it points to)."""

    name: str
    size: int
    mode: int  # st_mode
    mtime: float
    link_target: str = ""  # a symlink: the container path it resolves to


@attrs.frozen
class CopyStatRequest:
    container: str
    path: str


@attrs.frozen
class CopyFromRequest:
    container: str
    path: str


@attrs.frozen
class CopyToRequest:
    """Extract the tar that follows into the directory ``path`` of the container."""

    container: str
    path: str
    no_overwrite_dir_non_dir: bool = False  # refuse to replace a directory by a file or back
    copy_uid_gid: bool = False  # the tar's owners (else the container's root)


@attrs.frozen
class CopyStatResponse:
    stat: PathStat


REQUESTS = (CopyStatRequest, CopyFromRequest, CopyToRequest)
STREAMS = (CopyFromRequest, CopyToRequest)

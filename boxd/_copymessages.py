"""The protocol's ``cp`` messages (the catalogue is :mod:`boxd._messages`).

* ``CopyStatRequest`` -> ``CopyStatResponse``: Docker's stat of a container path.
* ``CopyFromRequest`` -> ``CopyStatResponse``, the tar as stdout byte frames, ``EndFrame``.
* ``CopyToRequest`` -> ``OkResponse`` (the container exists); the client sends the tar as
  stdin byte frames up to an empty one; -> ``OkResponse`` once it is extracted, or an
  ``ErrorResponse``, nothing written, when the archive or the destination is refused.
"""

from __future__ import annotations

import attrs

from ._copy import PathStat


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

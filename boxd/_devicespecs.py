"""``--device HOST[:CONTAINER][:PERMISSIONS]`` read and checked as text (no I/O).

Imported by boxctl: the standard library's ``posixpath`` only (``boxd._devicemap``, whose
records are attrs classes and which knows the container's /dev, was ~24 ms of every
``boxctl run --device``).  The daemon's record of a mapping is
``boxd._devicemap.DeviceMapping``, of these three fields.
"""

from __future__ import annotations

import posixpath

DEFAULT_PERMISSIONS = "rwm"
_ACCESS = frozenset("rwm")  # read, write, mknod: boxd._devices.ACCESS_BITS's letters


def invalid(mapping: object, reason: str) -> ValueError:
    return ValueError(f"invalid --device '{mapping}': {reason}")


def valid_permissions(text: str) -> bool:
    return bool(text) and set(text) <= _ACCESS and len(set(text)) == len(text)


def parse(text: str) -> tuple[str, str, str]:
    """Docker's ``HOST[:CONTAINER][:PERMISSIONS]`` as (host path, container path,
    permissions); with two parts the second is the permissions when it is made of r, w
    and m, else the container path.  ValueError naming the text when it is malformed (see
    :func:`check`)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise invalid(text, "use HOST[:CONTAINER][:PERMISSIONS], e.g. /dev/fuse:/dev/fuse:rwm")
    host, container, permissions = parts[0], "", DEFAULT_PERMISSIONS
    if len(parts) == 3:
        container, permissions = parts[1], parts[2]
    elif len(parts) == 2:
        if valid_permissions(parts[1]):
            permissions = parts[1]
        else:
            container = parts[1]
    container = container or host
    check(host, container, permissions, text)
    return host, container, permissions


def check(host: str, container: str, permissions: str, what: object) -> None:
    """What a mapping must be, whoever sent it: absolute paths, permissions a non-empty
    set of r, w and m; ``what`` names it in the error."""
    for path, side in ((host, "host"), (container, "container")):
        if not path.startswith("/"):
            raise invalid(what, f"the {side} path {path!r} is not absolute")
        if "\0" in path:
            raise invalid(what, f"the {side} path contains a NUL byte")
    if posixpath.normpath(container) == "/":
        raise invalid(what, "the container path cannot be /")
    if not valid_permissions(permissions):
        raise invalid(
            what,
            f"permissions {permissions!r} are not a combination of r, w and m (read, write, mknod)",
        )

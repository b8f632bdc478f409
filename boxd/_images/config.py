"""An image's configuration applied to a container's, as Docker combines them.

* ``Entrypoint`` and ``Cmd``: the container runs entrypoint + command.  A command given
  to ``run`` replaces the image's ``Cmd``; ``--entrypoint`` replaces the image's
  ``Entrypoint`` and drops its ``Cmd`` (``--entrypoint ""`` clears it).
* ``Env`` comes first; the user's ``-e`` overrides it by name.
* ``WorkingDir``, ``User`` and ``StopSignal`` apply unless the user gave their own.
  ``User`` may be a name: it is resolved in the image's ``/etc/passwd`` and
  ``/etc/group`` at create (numeric ids are taken as they are).
* ``ExposedPorts`` and ``Labels`` are kept on the container for networking and inspect.
"""

from __future__ import annotations

from typing import Any

import attrs

from .._records import ContainerConfig
from .._rootfs import Image, Layer, read_image_file
from .store import ImageRecord, ImageStore

__all__ = ["ImageConfigError", "apply_image_config", "rootfs_of"]


class ImageConfigError(ValueError):
    """The image's configuration cannot make a container; the message says why."""


def rootfs_of(store: ImageStore, record: ImageRecord, name: str) -> Image:
    """The overlay stack of a stored image: its layers as lowers, top-most first."""
    lowers = store.lowers(record)
    if not lowers:
        raise ImageConfigError(f"image {name} has no layers")
    return Image(name, (Layer(lowers[0], "/", below=lowers[1:]),))


def _strings(config: dict[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ImageConfigError(f"the image's {key} is not a list of strings: {value!r}")
    return tuple(value)


def _lookup_id(text: str | None, name: str, index: int, what: str) -> int | None:
    """The id of ``name`` in a passwd/group file's text (``index``: the id's field)."""
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) > index and fields[0] == name and fields[index].isdigit():
            return int(fields[index])
    return None


def resolve_user(spec: str, image: Image) -> str:
    """``USER[:GROUP]`` with names looked up in the image: ``UID:GID``."""
    user, _, group = spec.partition(":")
    passwd = read_image_file(image, "/etc/passwd")
    if user.isdigit():
        uid = int(user)
        gid = next(
            (
                int(f[3])
                for f in (line.split(":") for line in (passwd or "").splitlines())
                if len(f) > 3 and f[2] == user and f[3].isdigit()
            ),
            uid if not group else 0,
        )
    else:
        found = _lookup_id(passwd, user, 2, "user")
        if found is None:
            raise ImageConfigError(
                f"unable to find user {user}: no matching entries in passwd file"
            )
        uid = found
        gid = _lookup_id(passwd, user, 3, "group") or 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _lookup_id(read_image_file(image, "/etc/group"), group, 2, "group")
            if found is None:
                raise ImageConfigError(
                    f"unable to find group {group}: no matching entries in group file"
                )
            gid = found
    return f"{uid}:{gid}"


def apply_image_config(
    config: ContainerConfig, record: ImageRecord, image_config: dict[str, Any], image: Image
) -> ContainerConfig:
    """The container's configuration with the image's defaults filled in."""
    inner = image_config.get("config") or {}
    if not isinstance(inner, dict):
        raise ImageConfigError("the image's config is not an object")
    if config.entrypoint is not None:
        entrypoint, cmd = config.entrypoint, config.command
    else:
        entrypoint = _strings(inner, "Entrypoint")
        cmd = config.command or _strings(inner, "Cmd")
    argv = (*entrypoint, *cmd)
    if not argv:
        raise ImageConfigError(
            f"no command given, and image {config.image} has no Cmd or Entrypoint"
        )
    workdir = config.workdir or str(inner.get("WorkingDir") or "/")
    if not workdir.startswith("/"):
        workdir = "/" + workdir
    user = config.user
    if not user and inner.get("User"):
        user = resolve_user(str(inner["User"]), image)
    stop_signal = config.stop_signal
    if stop_signal == "SIGTERM" and inner.get("StopSignal"):
        stop_signal = str(inner["StopSignal"])
    labels = inner.get("Labels") or {}
    ports = inner.get("ExposedPorts") or {}
    return attrs.evolve(
        config,
        image_id=record.id,
        command=argv,
        entrypoint=entrypoint,
        env=(*_strings(inner, "Env"), *config.env),
        workdir=workdir,
        user=user,
        stop_signal=stop_signal,
        exposed_ports=tuple(sorted(str(p) for p in ports)),
        labels=(
            *(f"{k}={v}" for k, v in sorted(labels.items())),
            *config.labels,
        ),
    )

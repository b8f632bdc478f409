"""An image's configuration applied to a container's, as Docker combines them.

* ``Entrypoint`` and ``Cmd``: the container runs entrypoint + command.  A command given
  to ``run`` replaces the image's ``Cmd``; ``--entrypoint`` replaces the image's
  ``Entrypoint`` and drops its ``Cmd`` (``--entrypoint ""`` clears it).
* ``Env`` comes first; the user's ``-e`` overrides it by name.
* ``WorkingDir``, ``User`` and ``StopSignal`` apply unless the user gave their own
  (``User`` names are resolved at start in the container's /etc/passwd, as for ``-u``).
* ``ExposedPorts`` and ``Labels`` are kept on the container for networking and inspect.
* ``Healthcheck`` applies unless the container's own replaces it, field by field
  (``--no-healthcheck`` disables it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import attrs

from .. import _human, _prune
from .._healthcheck import from_api, merge
from .._logs import format_time
from .._records import ContainerConfig
from .._rootfs import Image, Layer, default_created, stacked
from .store import ImageRecord, ImageStore

__all__ = [
    "DEFAULT",
    "DEFAULT_ID",
    "ImageConfigError",
    "apply_image_config",
    "default_base_config",
    "default_config",
    "default_record",
    "default_refusal",
    "is_default",
    "on_default_refusal",
    "rootfs_of",
]

# The base (ImageRecord.base) of an image whose layers lie over the built-in image.
DEFAULT = "default"
# The built-in image's id: it has no configuration blob to be the digest of.
DEFAULT_ID = "sha256:" + hashlib.sha256(b"boxd image default").hexdigest()
_DEFAULT_NAMES = ("default", "default:latest", "docker.io/library/default:latest")
# The fields of an image's Config that inspect shows where the image has none, as Docker's
# Engine API 1.50 does (older versions fill in a container's too: boxd._dockerapi._images).
EMPTY_CONFIG = {
    "Cmd": None,
    "Entrypoint": None,
    "Env": None,
    "Labels": None,
    "OnBuild": None,
    "User": "",
    "Volumes": None,
    "WorkingDir": "",
}


def created_at(config: dict[str, Any]) -> float:
    """An image's ``created`` (RFC 3339, as Go writes it: nanoseconds) as a Unix time; 0
    when it has none or an unreadable one (it counts as old)."""
    text = _human.to_microseconds(str(config.get("created") or ""))
    try:
        return _prune.parse_time(text, time.time()) if text else 0.0
    except ValueError:
        return 0.0


_DEFAULT_HISTORY = "default: boxd's built-in image (this host's /usr)"


class ImageConfigError(ValueError):
    """The image's configuration cannot make a container; the message says why."""


def rootfs_of(
    store: ImageStore, record: ImageRecord, name: str, default: Callable[[], Image]
) -> Image:
    """The overlay stack of a stored image: its layers as lowers, top-most first, over
    nothing (none: the store's empty directory, an empty root as Docker gives) or, for an
    image based on default, over ``default()``'s (see :func:`boxd._rootfs.stacked`)."""
    lowers = store.lowers(record)
    if record.base == DEFAULT:
        return stacked(default(), name, lowers)
    top, *below = lowers or (str(store.empty),)
    return Image(name, (Layer(top, "/", below=tuple(below)),))


def default_base_config() -> dict[str, Any]:
    """The configuration an image based on default starts from (``FROM default``, the
    commit of a container on default): no layers, no command, and one history entry for
    the base itself, made when default's inputs last changed.  That entry keeps such an
    image's id (and a build's cache keys, digests of configurations) apart from one over
    nothing, and changes them when the host's default does."""
    import time

    from .pull import host

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(default_created()))
    return {
        "architecture": host().architecture,
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "created_by": _DEFAULT_HISTORY, "empty_layer": True}],
    }


def is_default(name: str) -> bool:
    """Whether ``name`` names the built-in image: ``default``, ``default:latest`` (as the
    docker CLI sends it too: ``docker.io/library/default:latest``), its id or a prefix of
    it as long as the short id the lists show (12 digits: no stored image has it too)."""
    hexa = name.removeprefix("sha256:")
    return name in _DEFAULT_NAMES or (len(hexa) >= 12 and DEFAULT_ID[7:].startswith(hexa))


def default_record() -> ImageRecord:
    """The built-in image as the store records an image (no layers, no blob): what the
    image verbs list, inspect and show the history of beside the stored images."""
    return ImageRecord(id=DEFAULT_ID, layers=(), repo_tags=("default:latest",))


def default_config() -> dict[str, Any]:
    """The built-in image's configuration in a stored one's shape: made when its inputs
    last changed, with no command (a container on it names its own) and ``/`` as its
    working directory."""
    from .pull import host

    created = format_time(round(default_created() * 1e9))
    return {
        "architecture": host().architecture,
        "os": "linux",
        "created": created,
        "config": {"Cmd": None, "Entrypoint": None, "Env": [], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "created_by": _DEFAULT_HISTORY, "empty_layer": True}],
    }


def default_refusal(verb: str) -> str:
    """Why the built-in image itself is not removed, saved or pushed: it is not stored."""
    return f"the image 'default' is built in and cannot be {verb}"


def on_default_refusal(name: str, verb: str) -> str:
    """Why an image based on default cannot leave this host (save, push, export)."""
    return (
        f"image {name} is built on default (this host's /usr): it cannot be {verb}; "
        "build it FROM a stored image to ship it"
    )


def _strings(config: dict[str, Any], key: str) -> tuple[str, ...]:
    value = config.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ImageConfigError(f"the image's {key} is not a list of strings: {value!r}")
    return tuple(value)


def apply_image_config(
    config: ContainerConfig, record: ImageRecord, image_config: dict[str, Any]
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
    if not argv and config.entrypoint is not None:  # Docker's words, and why
        raise ImageConfigError(
            "no command specified: an empty Entrypoint resets the image's, and its Cmd"
        )
    if not argv:
        raise ImageConfigError(
            f"no command specified: image {config.image} has no Cmd or Entrypoint"
        )
    workdir = config.workdir or str(inner.get("WorkingDir") or "/")
    if not workdir.startswith("/"):
        workdir = "/" + workdir
    user = config.user or str(inner.get("User") or "")
    stop_signal = config.stop_signal
    if stop_signal == "SIGTERM" and inner.get("StopSignal"):
        stop_signal = str(inner["StopSignal"])
    labels = inner.get("Labels") or {}
    ports = inner.get("ExposedPorts") or {}
    try:
        image_check = (
            from_api(inner["Healthcheck"], "Healthcheck") if inner.get("Healthcheck") else None
        )
    except ValueError as exc:
        raise ImageConfigError(f"the image's {exc}") from None
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
        healthcheck=merge(config.healthcheck, image_check),
    )

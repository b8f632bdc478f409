"""``boxctl inspect``: containers (and images, networks) in the JSON shape ``docker inspect``
prints, so that what parses Docker's output parses boxd's; ``-f/--format`` renders each one
through a Go template (``{{.State.Pid}}``, ``{{json .Config}}``)."""

from __future__ import annotations

import sys

from ._args import Args
from ._client import CliError, call, print_json

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

TYPES = ("container", "image", "network", "volume")


def _container(socket: str, ref: str, size: bool = False) -> dict[str, Any]:
    """``size``: with Docker's SizeRw and SizeRootFs (``inspect -s``).  The daemon shapes it,
    as its Engine API does for the docker CLI."""
    request = {"type": "DockerInspectRequest", "container": ref, "size": size}
    shaped: dict[str, Any] = call(socket, request)["shaped"]
    return shaped


def _image(socket: str, ref: str) -> dict[str, Any]:
    from ._images import familiar  # names as Docker shows them: busybox:latest

    image: dict[str, Any] = call(socket, {"type": "ImageInspectRequest", "image": ref})["image"]
    image["RepoTags"] = [familiar(t) for t in image["RepoTags"]]
    image["RepoDigests"] = [familiar(d) for d in image["RepoDigests"]]
    return image


def _network(socket: str, ref: str) -> dict[str, Any]:
    request = {"type": "DockerNetworkInspectRequest", "network": ref}
    shaped: dict[str, Any] = call(socket, request)["shaped"]
    return shaped


def _volume(socket: str, ref: str) -> dict[str, Any]:
    from ._volumes import docker_shape

    reply = call(socket, {"type": "VolumeInspectRequest", "names": [ref]})
    return docker_shape(reply["volumes"][0])


FINDERS = {"image": _image, "network": _network, "volume": _volume}


def find(socket: str, ref: str, kind: str | None, *, size: bool = False) -> dict[str, Any]:
    """The object ``ref`` names: of ``kind``, or the first of a container, an image, a
    network and a volume (Docker's order) that exists (a container with its sizes, with
    ``size``)."""
    for k in (kind,) if kind else TYPES:
        try:
            return _container(socket, ref, size) if k == "container" else FINDERS[k](socket, ref)
        except CliError as exc:
            if kind or "no such" not in str(exc).lower():
                raise
    raise CliError(f"No such object: {ref}")


def cmd_inspect(args: Args) -> int:
    if args.type is not None and args.type not in TYPES:
        raise CliError(f"invalid --type {args.type!r}: use {', '.join(TYPES)}", 125)
    return show(args, args.containers, args.type)


# The keys whose objects are Go maps in Docker's inspect types (the rest are structs):
# Config.Labels, NetworkSettings.Ports, HostConfig.Sysctls, GraphDriver.Data, a network's
# Containers and Options, a volume's Status...  LogConfig.Config too (see _go_maps).
_MAP_KEYS = frozenset(
    {"Labels", "ExposedPorts", "Volumes", "Ports", "Networks", "PortBindings", "Sysctls"}
    | {"StorageOpt", "Tmpfs", "Annotations", "Data", "DriverOpts", "Options", "Containers"}
    | {"Status"}
)


def _go_maps(value: Any, key: str = "", parent: str = "") -> Any:
    """``value`` with the objects that are Go maps in Docker's types made GoMaps, for
    ``inspect``'s template rules: ``{{.Config.Labels.x}}`` prints ``<no value>`` where
    ``{{.State.Nope}}`` is an error.  ``key``: the field that holds ``value`` ("" for a
    map's entry: its key is the user's, a network named Labels is no map)."""
    from ._template import GoMap

    if isinstance(value, list):
        return [_go_maps(v, key, parent) for v in value]
    if not isinstance(value, dict):
        return value
    is_map = key in _MAP_KEYS or (key == "Config" and parent == "LogConfig")
    if is_map:
        return GoMap({k: _go_maps(v) for k, v in value.items()})
    return {k: _go_maps(v, k, key) for k, v in value.items()}


def show(args: Args, refs: list[str], kind: str | None) -> int:
    """Print the objects ``refs`` name (of ``kind``), as JSON or through ``args.format``
    (under the docker CLI's rules for inspect: a field an object lacks is an error)."""
    template = None
    if args.format:
        from ._template import Template

        template = Template(args.format, raw=True)
    found, status = [], 0
    for ref in refs:
        try:
            found.append(find(args.socket, ref, kind, size=getattr(args, "size", False)))
        except CliError as exc:
            print(f"boxctl: {exc}", file=sys.stderr)
            status = 1
    if template is None:
        print_json(found)
    else:
        for item in found:
            print(template.render(_go_maps(item)))
    return status

"""``boxctl volume ...``, ``system prune``, and the configuration of the run options about
volumes (``-v``, ``--mount``, ``--volumes-from``; their table is in boxctl._runopts)."""

from __future__ import annotations

import os
import sys

from boxd import _human

from ._args import (
    APPEND,
    FLAG,
    REST,
    SOME,
    VALUE,
    Args,
    Command,
    Opt,
    confirm,
    print_removed,
    prune_filters,
    run_subcommand,
)
from ._client import OPERANDS, USAGE, CliError, call

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

    from boxd._mounts import Mount


# ---- run and create -----------------------------------------------------------------------

API_SOCKET = "/var/run/docker.sock"  # where --use-api-socket binds it, as the docker CLI


def run_mounts(args: Args) -> dict[str, Any]:
    """``-v``, ``--mount`` and ``--volumes-from`` as ContainerConfig fields (``volumes``,
    extra ``tmpfs`` specs, ``image_mounts``, ``mount_points``, ``binds`` and
    ``declared_volumes`` (the -v with a source and the paths of those without, as the
    docker CLI sends them), ``volumes_from``).  A ``--mount`` with ``volume-label``s
    creates its named volume first (with those labels), as Docker's create does."""
    volumes: list[dict[str, Any]] = []
    tmpfs: list[str] = []
    labelled: list[Mount] = []  # a new volume's labels and options
    points: list[str] = []
    binds: list[str] = []
    declared: list[str] = []
    images: list[dict[str, str]] = []
    found = {"volumes": volumes, "tmpfs": tmpfs, "mount_points": points, "binds": binds,
             "declared_volumes": declared, "volumes_from": args.volumes_from,
             "image_mounts": images}  # fmt: skip
    if args.volume_driver not in (None, "local"):  # dockerd's NotFound of a plugin
        raise CliError(f"volume driver {args.volume_driver!r} not found: the one driver is local")
    specs = list(args.volume)
    if args.use_api_socket:  # as the docker CLI's: the socket where its tools look
        if args.isolate_user or args.userns == "private":
            raise CliError(
                "--use-api-socket cannot go with --isolate-user: the socket takes root's "
                "connections, and that container's root is an unprivileged host user",
                USAGE,
            )
        served = call(args.socket, {"type": "InfoRequest"})["docker_socket"]
        if not served:
            raise CliError("--use-api-socket: this daemon serves no Docker API socket")
        specs.append(f"{served}:{API_SOCKET}")
    if not (specs or args.mount):
        return found
    from boxd import _mounts  # csv and re: only for the runs that mount something

    try:
        for spec in specs:
            fields = _mounts.parse_volume_flag(spec)
            if fields["host"]:  # absolute, as the docker CLI sends it
                fields["host"] = os.path.abspath(os.path.expanduser(str(fields["host"])))
                binds.append(f"{fields['host']}:{spec.split(':', 1)[1]}")
            elif fields.get("volume"):
                binds.append(spec)
            else:
                declared.append(str(fields["container"]))
            volumes.append(fields)
        for text in args.mount:
            mount = _mounts.parse_mount(text)
            if mount.type == "image":  # always given as a mount: not one of mount_points
                images.append(mount.image_fields())
                continue
            points.append(mount.target)
            if mount.type == "tmpfs":
                tmpfs.append(mount.tmpfs_spec())
                continue
            if mount.labels or mount.options:
                labelled.append(mount)
            if mount.create_source and not os.path.lexists(mount.source):
                try:  # bind-create-src: a directory, as Docker's daemon makes it
                    os.makedirs(mount.source, mode=0o755)
                except OSError as exc:
                    why = f"bind-create-src: cannot make {mount.source}: {exc.strerror}"
                    raise CliError(why) from None
            volumes.append(mount.volume_fields())
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    for v in volumes:
        if v["host"]:
            v["host"] = os.path.abspath(os.path.expanduser(v["host"]))
    for m in labelled:
        request = {"name": m.source, "labels": m.labels, "options": m.options}
        call(args.socket, {"type": "VolumeCreateRequest", **request})
    return found


# ---- volume verbs -------------------------------------------------------------------------


def _pairs(words: list[str], what: str) -> dict[str, str]:
    found = {}
    for word in words:
        key, _, value = word.partition("=")
        if not key:
            raise CliError(f"invalid {what} {word!r}: use KEY=VALUE", USAGE)
        found[key] = value
    return found


def _create(args: Args) -> int:
    if len(args.names) > 1:
        raise CliError("boxctl volume create: at most one NAME", OPERANDS)
    if args.name and args.names:
        raise CliError("boxctl volume create: a NAME and --name: give one", USAGE)
    request = {
        "type": "VolumeCreateRequest",
        "name": args.name or (args.names[0] if args.names else ""),
        "driver": args.driver,
        "labels": _pairs(args.label, "--label"),
        "options": _pairs(args.opt, "--opt"),
    }
    print(call(args.socket, request)["volume"]["name"])
    return 0


def docker_shape(v: dict[str, Any]) -> dict[str, Any]:
    """``docker volume inspect``'s shape of a volume."""
    import datetime

    created = datetime.datetime.fromtimestamp(v["created_at"]).astimezone()
    return {
        "CreatedAt": created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "Driver": v["driver"],
        "Labels": v["labels"] or None,
        "Mountpoint": v["mountpoint"],
        "Name": v["name"],
        "Options": v["options"] or None,
        "Scope": "local",
    }


def _row(v: dict[str, Any]) -> dict[str, Any]:
    """What ``volume ls --format`` templates see (Docker's fields)."""
    labels = v["labels"]
    return {
        "Name": v["name"],
        "Driver": v["driver"],
        "Scope": "local",
        "Mountpoint": v["mountpoint"],
        "Labels": ",".join(f"{k}={val}" for k, val in labels.items()),
        "Label": lambda key: labels.get(key, ""),
        "Links": str(len(v["users"])),
        "Size": "N/A",
        "CreatedAt": docker_shape(v)["CreatedAt"],
    }


def _ls(args: Args) -> int:
    request = {"type": "VolumeListRequest", "filters": args.filter}
    volumes = call(args.socket, request)["volumes"]
    if args.quiet:
        for v in volumes:
            print(v["name"])
        return 0
    fmt = args.format or "table {{.Driver}}\t{{.Name}}"
    if fmt == "json":
        import json

        for v in volumes:
            row = _row(v)
            del row["Label"]
            print(json.dumps(row))
        return 0
    from ._template import print_formatted

    headers = {"Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "CreatedAt": "CREATED AT"}
    print_formatted(fmt, [_row(v) for v in volumes], headers, strict=True)
    return 0


def _inspect(args: Args) -> int:
    from ._inspect import show

    return show(args, args.names, "volume")


def _rm(args: Args) -> int:
    status = 0
    for name in args.names:
        try:
            call(args.socket, {"type": "VolumeRemoveRequest", "name": name, "force": args.force})
        except CliError as exc:
            print(f"boxctl: {exc}", file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


def _prune(args: Args) -> int:
    which = "all" if args.all else "anonymous"
    warning = f"WARNING! This will remove {which} local volumes not used by at least one container."
    if not confirm(warning, args.force):
        return 0
    request = {"type": "VolumePruneRequest", "all": args.all, "filters": prune_filters(args.filter)}
    r = call(args.socket, request)
    print_removed("Deleted Volumes:", r["removed"])
    print(f"Total reclaimed space: {_human.size(r['reclaimed'], 4)}")
    return 0


FILTER = Opt(
    "-f", "--filter", kind=APPEND, metavar="KEY=VALUE", help="name, label, dangling, driver"
)
SUBCOMMANDS = (
    Command(
        "create",
        _create,
        "create a volume (no NAME: a random one)",
        (
            Opt("--name", kind=VALUE, help="the volume's name"),
            Opt("-d", "--driver", kind=VALUE, default="local", help="local (the one driver)"),
            Opt("-l", "--label", kind=APPEND, metavar="KEY=VALUE", help="a label"),
            Opt(
                "-o",
                "--opt",
                kind=APPEND,
                metavar="KEY=VALUE",
                help="type=none -o o=bind -o device=DIR: the host directory DIR",
            ),
        ),
        (("names", REST, "[NAME]"),),
    ),
    Command(
        "ls",
        _ls,
        "list volumes",
        (
            Opt("-q", "--quiet", kind=FLAG, help="only names"),
            FILTER,
            Opt("--format", kind=VALUE, help="json, or a Go template ({{.Name}}, table ...)"),
        ),
        aliases=("list",),
    ),
    Command(
        "inspect",
        _inspect,
        "show volumes as JSON",
        (Opt("-f", "--format", kind=VALUE, help="a Go template"),),
        (("names", SOME, "VOLUME"),),
    ),
    Command(
        "rm",
        _rm,
        "remove volumes (refused while a container uses one)",
        (Opt("-f", "--force", kind=FLAG, help="no error for a missing volume"),),
        (("names", SOME, "VOLUME"),),
        aliases=("remove",),
    ),
    Command(
        "prune",
        _prune,
        "remove unused anonymous volumes (-a: unused named ones too)",
        (
            Opt("-a", "--all", kind=FLAG, help="named volumes too"),
            Opt("-f", "--force", kind=FLAG, help="do not ask for confirmation"),
            Opt("--filter", kind=APPEND, metavar="KEY=VALUE", help="label=K[=V], label!=K[=V]"),
        ),
    ),
)
SUB_BY_NAME = {name: c for c in SUBCOMMANDS for name in (c.name, *c.aliases)}


def cmd_volume(args: Args) -> int:
    return run_subcommand(COMMANDS[0], args, SUB_BY_NAME)


# ---- system prune -------------------------------------------------------------------------


def cmd_system_prune(args: Args) -> int:
    """Docker's ``system prune``: the prunes of containers, networks, volumes (with
    ``--volumes``) and images, one after the other, then the space reclaimed."""
    items = ["all stopped containers", "all networks not used by at least one container"]
    filters = prune_filters(args.filter)
    if args.volumes and "until" in filters:  # volume prune takes none (the CLI's words)
        raise CliError('the "until" filter is not supported with "--volumes"')
    if args.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them"
                 if args.all else "all dangling images")  # fmt: skip
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not confirm(warning, args.force):
        return 0
    reclaimed = 0
    containers = call(args.socket, {"type": "PruneRequest", "filters": filters})
    reclaimed += containers["reclaimed"]
    print_removed("Deleted Containers:", containers["removed"])
    networks = call(args.socket, {"type": "NetworkPruneRequest", "filters": filters})
    print_removed("Deleted Networks:", networks["removed"])
    if args.volumes:
        volumes = call(args.socket, {"type": "VolumePruneRequest", "filters": filters})
        reclaimed += volumes["reclaimed"]
        print_removed("Deleted Volumes:", volumes["removed"])
    request = {"type": "PruneImagesRequest", "all": args.all, "filters": filters}
    images = call(args.socket, request)
    reclaimed += images["reclaimed"]
    from ._images import pruned_lines

    print_removed("Deleted Images:", pruned_lines(images))
    print(f"Total reclaimed space: {_human.size(reclaimed, 4)}")
    return 0


SYSTEM_PRUNE = Command(
    "prune",
    cmd_system_prune,
    "remove stopped containers, unused networks, dangling images (and volumes)",
    (
        Opt("-a", "--all", kind=FLAG, help="every unused image, not just dangling ones"),
        Opt("--volumes", kind=FLAG, help="unused anonymous volumes too"),
        Opt("-f", "--force", kind=FLAG, help="do not ask for confirmation"),
        Opt("--filter", kind=APPEND, metavar="KEY=VALUE", help="label=K[=V], label!=.., until="),
    ),
)

COMMANDS = (
    Command(
        "volume",
        cmd_volume,
        "manage volumes: create, ls, inspect, rm, prune",
        (),
        (("words", REST, "COMMAND ..."),),
        subcommands=lambda: SUB_BY_NAME.items(),
    ),
)

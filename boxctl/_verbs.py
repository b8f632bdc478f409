"""Docker's container verbs beyond the lifecycle: ``rename``, ``top``, ``diff``,
``events``, ``container prune`` and the ``container`` group (``boxctl container ls``,
``container rm``, ... as in Docker)."""

from __future__ import annotations

import time

from boxd import _human, _wirejson

from ._args import (
    APPEND,
    FLAG,
    ONE,
    PRUNE_FILTER,
    REST,
    VALUE,
    Args,
    Command,
    Opt,
    confirm,
    print_removed,
    prune_filters,
    subcommand,
)
from ._client import OPERANDS, USAGE, Client, CliError, call, check

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any


def cmd_rename(args: Args) -> int:
    call(args.socket, {"type": "RenameRequest", "container": args.container, "name": args.name})
    return 0


def cmd_top(args: Args) -> int:
    # One operand holds the container and ps's options: they may start with '-'.
    if not args.words:
        raise CliError("boxctl top: a CONTAINER is required (see 'boxctl top --help')", OPERANDS)
    container, *ps_args = args.words
    response = call(args.socket, {"type": "TopRequest", "container": container, "ps_args": ps_args})
    rows = [response["titles"], *response["processes"]]
    # As docker top's tabwriter: each column but the last its widest cell and 3 spaces, at
    # least 20 wide.
    widths = [max(max(len(r[i]) for r in rows if i < len(r)) + 3, 20) for i in range(len(rows[0]))]
    for r in rows:
        print("".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=False)) + r[-1])
    return 0


def cmd_diff(args: Args) -> int:
    response = call(args.socket, {"type": "DiffRequest", "container": args.container})
    for change in response["changes"]:
        print(f"{change['kind']} {change['path']}")
    return 0


def time_arg(text: str, option: str) -> float:
    """A Unix time (``1700000000.5``), a duration back from now (``10s``, ``5m``, ``2h``,
    ``1d``) or an RFC 3339 time (``2024-05-01T10:00:00Z``), as Docker takes them."""
    import datetime  # only these options need it

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return time.time() - float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        pass
    # The fraction is read apart: datetime keeps microseconds, and a time that docker logs
    # -t printed (nanoseconds) must name its own line, as the daemon reckons it (ns / 1e9).
    head, dot, rest = text.partition(".")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    nanos = int(rest[:digits][:9].ljust(9, "0")) if dot and digits else 0
    try:
        when = datetime.datetime.fromisoformat(head + rest[digits:] if dot else text)
    except ValueError:
        raise CliError(
            f"invalid {option} {text!r}: use a Unix time, a duration (10s, 5m, 2h) or an "
            "RFC 3339 time",
            USAGE,
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as Docker reads it
    return (int(when.timestamp()) * 1_000_000_000 + nanos) / 1_000_000_000


def _event_filter(specs: list[str]) -> dict[str, list[str]]:
    """``--filter KEY=VALUE``: the same key ORs its values, different keys AND (the
    daemon filters, and refuses a key it does not know)."""
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq or not key:
            raise CliError(f"invalid --filter {spec!r}: use KEY=VALUE", USAGE)
        filters.setdefault(key, []).append(value)
    return filters


def _event_text(event: dict[str, Any]) -> str:
    """Docker's line: local time (Go's RFC3339NanoFixed: nine digits, Z for UTC), type,
    action, actor, attributes."""
    import datetime

    seconds, nanos = divmod(event["timeNano"], 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds).astimezone()
    offset = when.strftime("%z")
    zone = "Z" if offset == "+0000" else offset[:-2] + ":" + offset[-2:]
    stamp = f"{when.strftime('%Y-%m-%dT%H:%M:%S')}.{nanos:09d}{zone}"
    actor = event["Actor"]
    pairs = ", ".join(f"{k}={v}" for k, v in sorted(actor["Attributes"].items()))
    return f"{stamp} {event['Type']} {event['Action']} {actor['ID']} ({pairs})"


def _event_fields(event: dict[str, Any]) -> dict[str, Any]:
    """An event as Docker's ``--format`` templates see it (Go's field names; the old
    ones empty where Docker leaves them so: a network's or a volume's event)."""
    return {
        "Status": event.get("status", ""),
        "ID": event.get("id", ""),
        "From": event.get("from", ""),
        "Type": event["Type"],
        "Action": event["Action"],
        "Actor": event["Actor"],
        "Scope": event["scope"],
        "Time": event["time"],
        "TimeNano": event["timeNano"],
    }


def cmd_events(args: Args) -> int:
    from ._template import Template

    # A bad template is refused before anything is asked of the daemon.
    template = None if args.format in (None, "json") else Template(args.format)
    request: dict[str, Any] = {"type": "EventsRequest", "filters": _event_filter(args.filter)}
    if args.since is not None:
        request["since"] = time_arg(args.since, "--since")
    if args.until is not None:
        request["until"] = time_arg(args.until, "--until")
    with Client(args.socket) as client:
        client.request(request)
        while True:
            frame = client.receive()
            if not isinstance(frame, dict) or frame["type"] == "EndFrame":
                return 0
            check(frame)
            event = frame["event"]
            if args.format == "json":
                line = _wirejson.dumps(event, separators=(", ", ": "))
            elif template is None:
                line = _event_text(event)
            else:
                line = template.render(_event_fields(event))
            print(line, flush=True)


def cmd_container_prune(args: Args) -> int:
    if not confirm("WARNING! This will remove all stopped containers.", args.force):
        return 0
    filters = prune_filters(args.filter)
    response = call(args.socket, {"type": "PruneRequest", "filters": filters})
    print_removed("Deleted Containers:", response["removed"])
    print(f"Total reclaimed space: {_human.size(response['reclaimed'], 4)}")
    return 0


PRUNE = Command(
    "prune",
    cmd_container_prune,
    "remove every stopped container",
    (
        Opt("-f", "--force", kind=FLAG, help="do not ask for confirmation"),
        PRUNE_FILTER,
    ),
)


# What `boxctl container VERB` takes: Docker's container group.
CONTAINER_VERBS = (
    *("attach", "create", "diff", "exec", "inspect", "kill", "logs", "ls", "list", "ps"),
    *("pause", "unpause", "rename", "restart", "rm", "remove", "run", "start", "stats"),
    *("stop", "top", "update", "wait", "commit", "export", "cp", "port"),
)


def _container_commands() -> dict[str, Command]:
    from ._cli import find_command

    commands = {PRUNE.name: PRUNE}
    for name in CONTAINER_VERBS:
        command = find_command(name)
        assert command is not None
        commands[name] = command
    return commands


def cmd_container(args: Args) -> int:
    found = subcommand(CONTAINER_COMMAND, args, _container_commands())
    if found is None:
        return 0
    command, sub = found
    if command.name == "inspect":  # containers only: No such container, as Docker's
        setattr(sub, "type", "container")  # noqa: B010 (Args holds the parsed options)
    return command.handler(sub)


CONTAINER_COMMAND = Command(
    "container",
    cmd_container,
    "manage containers: prune, and every container command (ls, rm, ...)",
    (),
    (("words", REST, "COMMAND [ARG...]"),),
    subcommands=lambda: _container_commands().items(),
)


COMMANDS = (
    Command(
        "events",
        cmd_events,
        "follow the events of containers (create, start, die, ...), images (pull, tag, "
        "delete, ...), networks (connect, ...) and volumes (mount, ...)",
        (
            Opt("--since", kind=VALUE, help="also the kept events since a time or duration"),
            Opt("--until", kind=VALUE, help="stop at this time"),
            Opt(
                "-f",
                "--filter",
                kind=APPEND,
                metavar="KEY=VALUE",
                help="container, event, image, label, network, scope, type, volume",
            ),
            Opt(
                "--format",
                kind=VALUE,
                metavar="FORMAT",
                help="json (one object a line) or a Go template: '{{.Action}} {{.Actor.ID}}'",
            ),
        ),
    ),
    Command(
        "top",
        cmd_top,
        "show a container's processes (the host's ps; default -ef)",
        (),
        (("words", REST, "CONTAINER [ps OPTIONS]"),),
    ),
    Command(
        "diff",
        cmd_diff,
        "show what a container changed in its filesystem (A added, C changed, D deleted)",
        (),
        (("container", ONE, "CONTAINER"),),
    ),
    Command(
        "rename",
        cmd_rename,
        "rename a container",
        (),
        (("container", ONE, "CONTAINER"), ("name", ONE, "NEW_NAME")),
    ),
    CONTAINER_COMMAND,
)

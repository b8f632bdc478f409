"""Docker's container verbs beyond the lifecycle: ``rename``, ``top``, ``diff``,
``container prune`` and the ``container`` group (``boxctl container ls``, ``container
rm``, ... as in Docker)."""

from __future__ import annotations

import sys

from ._args import FLAG, ONE, REST, Args, Command, Opt
from ._client import USAGE, CliError, call


def cmd_rename(args: Args) -> int:
    call(args.socket, {"type": "RenameRequest", "container": args.container, "name": args.name})
    return 0


def cmd_top(args: Args) -> int:
    # One operand holds the container and ps's options: they may start with '-'.
    if not args.words:
        raise CliError("boxctl top: a CONTAINER is required (see 'boxctl top --help')", USAGE)
    container, *ps_args = args.words
    response = call(args.socket, {"type": "TopRequest", "container": container, "ps_args": ps_args})
    rows = [response["titles"], *response["processes"]]
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip())
    return 0


def cmd_diff(args: Args) -> int:
    response = call(args.socket, {"type": "DiffRequest", "container": args.container})
    for change in response["changes"]:
        print(f"{change['kind']} {change['path']}")
    return 0


def _human(n: int) -> str:
    """Docker's units for reclaimed space: 0B, 12.3kB, 4.5MB (powers of 1000)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.4g}{unit}"
        size /= 1000
    raise AssertionError


def cmd_container_prune(args: Args) -> int:
    if not args.force:
        print(
            "WARNING! This will remove all stopped containers.\n"
            "Are you sure you want to continue? [y/N] ",
            end="",
            flush=True,
        )
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    response = call(args.socket, {"type": "PruneRequest"})
    if response["removed"]:
        print("Deleted Containers:")
        for cid in response["removed"]:
            print(cid)
        print()
    print(f"Total reclaimed space: {_human(response['reclaimed'])}")
    return 0


PRUNE = Command(
    "prune",
    cmd_container_prune,
    "remove every stopped container",
    (Opt("-f", "--force", kind=FLAG, help="do not ask for confirmation"),),
)


# What `boxctl container VERB` takes: Docker's container group.
CONTAINER_VERBS = (
    *("attach", "create", "diff", "exec", "inspect", "kill", "logs", "ls", "list", "ps"),
    *("pause", "unpause", "rename", "restart", "rm", "remove", "run", "start", "stats"),
    *("stop", "top", "update", "wait"),
)


def cmd_container(args: Args) -> int:
    from ._cli import BY_NAME

    if not args.words:
        raise CliError("boxctl container: a COMMAND is required (prune, ls, rm, ...)", USAGE)
    name, *rest = args.words
    command = PRUNE if name == PRUNE.name else None
    if name in CONTAINER_VERBS:
        command = BY_NAME.get(name)
    if command is None:
        raise CliError(f"boxctl container: unknown command {name!r}", USAGE)
    prog = f"boxctl container {name}"
    sub = command.parse(rest, prog)
    sub.socket = args.socket
    sub.prog = prog
    return command.handler(sub)


COMMANDS = (
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
    Command(
        "container",
        cmd_container,
        "manage containers: prune, and every container command (ls, rm, ...)",
        (),
        (("words", REST, "COMMAND [ARG...]"),),
    ),
)

"""The options of ``run`` and ``create`` that a plain run leaves out (ports and names,
volumes, health checks), apart from the modules that turn them into the container's
configuration: those are imported only when one of their options is given (a ``run`` without
them does not pay ~0.5-1 ms of imports for them)."""

from __future__ import annotations

from ._args import APPEND, FLAG, INT, VALUE, Args, Opt

NETWORK = (
    Opt("-p", "--publish", kind=APPEND, metavar="[IP:][HOST:]PORT", help="publish a port"),
    Opt("-P", "--publish-all", help="publish every exposed port on an ephemeral port"),
    Opt("--expose", kind=APPEND, metavar="PORT[/PROTO]", help="expose a port (for -P)"),
    Opt("--network-alias", kind=APPEND, metavar="NAME", help="another name on its network"),
    Opt("--dns", kind=APPEND, metavar="IP", help="a name server for its resolv.conf"),
    Opt("--dns-search", kind=APPEND, metavar="DOMAIN", help="a search domain (. for none)"),
    Opt("--dns-option", kind=APPEND, metavar="OPTION", help="a resolv.conf option"),
    Opt("--dns-opt", kind=APPEND, metavar="OPTION", help="the same as --dns-option"),
)

VOLUMES = (
    Opt(
        "-v",
        "--volume",
        kind=APPEND,
        metavar="[SRC:]DST[:OPTS]",
        help="bind a host path, or mount a volume (NAME:DST; DST alone: anonymous)",
    ),
    Opt(
        "--mount",
        kind=APPEND,
        metavar="type=..,src=..,dst=..",
        help="a bind, volume or tmpfs mount, as Docker's --mount",
    ),
    Opt(
        "--volumes-from",
        kind=APPEND,
        metavar="CONTAINER[:ro|:rw]",
        help="mount the volumes and binds of another container",
    ),
)

HEALTH = (
    Opt("--health-cmd", kind=VALUE, metavar="COMMAND", help="command that checks health"),
    Opt("--health-interval", kind=VALUE, metavar="DURATION", help="time between checks (30s)"),
    Opt("--health-timeout", kind=VALUE, metavar="DURATION", help="longest a check runs (30s)"),
    Opt(
        "--health-retries",
        kind=INT,
        metavar="N",
        help="failures in a row that make it unhealthy (3)",
    ),
    Opt("--health-start-period", kind=VALUE, metavar="DURATION", help="failures not counted (0s)"),
    Opt(
        "--health-start-interval",
        kind=VALUE,
        metavar="DURATION",
        help="time between checks in the start period (5s)",
    ),
    Opt("--no-healthcheck", kind=FLAG, help="no health check, not even the image's"),
)


def given(args: Args, options: tuple[Opt, ...]) -> bool:
    """Whether any of ``options`` was given on the command line (each is at its default,
    or an empty list, otherwise)."""
    return any(getattr(args, o.dest) not in (o.default, []) for o in options)

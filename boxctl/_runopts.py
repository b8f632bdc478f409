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
    Opt("--ip", kind=VALUE, metavar="ADDR", help="its IPv4 address on its (user) network"),
    Opt("--ip6", kind=VALUE, metavar="ADDR", help="its IPv6 address on its (--ipv6) network"),
    Opt("--mac-address", kind=VALUE, metavar="MAC", help="its MAC address on its network"),
    Opt(
        "--link-local-ip",
        kind=APPEND,
        metavar="ADDR",
        help="one more address on its network (169.254.0.0/16, fe80::/10)",
    ),
    Opt("--link", kind=APPEND, metavar="NAME[:ALIAS]", help="reach container NAME as ALIAS"),
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
        help="a bind, volume, tmpfs or image mount, as Docker's --mount",
    ),
    Opt(
        "--volumes-from",
        kind=APPEND,
        metavar="CONTAINER[:ro|:rw]",
        help="mount the volumes and binds of another container",
    ),
    Opt(
        "--volume-driver",
        kind=VALUE,
        metavar="DRIVER",
        help="the driver of the volumes it makes: local, the one there is",
    ),
    Opt(
        "--use-api-socket",
        kind=FLAG,
        help="bind the daemon's Docker API socket at /var/run/docker.sock",
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


# Docker's other resource options (parsed by boxctl._limits): those `update` takes too,
# then those only `run` and `create` take.
LIMITS = (
    Opt("--memory-reservation", kind=VALUE, metavar="SIZE", help="soft memory limit (e.g. 64m)"),
    Opt("--kernel-memory", kind=VALUE, metavar="SIZE", help="deprecated: accepted and ignored"),
    Opt("--cpu-period", kind=INT, metavar="US", help="CFS period in microseconds (1000-1000000)"),
    Opt("--cpu-quota", kind=INT, metavar="US", help="CFS quota in microseconds per period"),
    Opt("--cpuset-mems", kind=VALUE, metavar="NODES", help="memory nodes allowed (e.g. 0-1)"),
    Opt("--cpu-rt-period", kind=INT, metavar="US", help="real-time period in microseconds"),
    Opt("--cpu-rt-runtime", kind=INT, metavar="US", help="real-time runtime in microseconds"),
    Opt("--blkio-weight", kind=INT, metavar="W", help="block I/O weight (10-1000, 0: unset)"),
)
RUN_LIMITS = (
    Opt("--memory-swappiness", kind=INT, metavar="N", help="swappiness 0-100 (-1: the host's)"),
    Opt("--oom-kill-disable", help="disable the OOM killer (with --memory)"),
    Opt(
        "--blkio-weight-device",
        kind=APPEND,
        metavar="DEV:W",
        help="block I/O weight of a device (/dev/sda:200)",
    ),
    Opt(
        "--device-read-bps", kind=APPEND, metavar="DEV:RATE", help="read rate limit (/dev/sda:1mb)"
    ),
    Opt("--device-write-bps", kind=APPEND, metavar="DEV:RATE", help="write rate limit"),
    Opt("--device-read-iops", kind=APPEND, metavar="DEV:N", help="read operations per second"),
    Opt("--device-write-iops", kind=APPEND, metavar="DEV:N", help="write operations per second"),
)

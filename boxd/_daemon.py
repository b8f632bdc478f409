"""``boxd``: the daemon.  A supervisor, a socket server and a signal watcher in one nursery.

SIGTERM, SIGINT or SIGQUIT leaves the containers running (live restore: the next daemon
adopts them; with ``--no-live-restore`` it stops every container gracefully, by its stop
signal and timeout; a third such signal ends a stop that hangs), saves the records,
removes the socket and exits 0.  SIGHUP reloads the configuration (:func:`reload`);
SIGUSR1 logs the task tree, as SIGQUIT does before it stops.  A lock on
``<root>/boxd.pid`` (:func:`~boxd._store.hold_root`) refuses a second daemon, or a
library's supervisor, on the same root.  Whatever a killed daemon
left behind is repaired at start (:mod:`boxd._repair`, the store, the supervisor's
recovery): no leftover keeps it from serving.  Under systemd it reports readiness and
takes the socket it is given (:mod:`boxd._systemd`; ``boxd install-service`` writes the
units).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import trio

# Before boxd's own modules define their classes: see there.
from . import _nosource  # noqa: F401

# isort: split
from . import __version__, _daemonconfig, _repair, _systemd, _tasks, _trim, _ulimits, _units
from ._dockerapi import serve_docker
from ._network import DEFAULT_BRIDGE, BridgeOptions
from ._procview import CPU_POLICIES, ProcView, available
from ._records import LOG_DRIVERS, Ulimit, check_driver_log_options, check_log_compress
from ._server import Server, serve
from ._store import RootInUse, hold_root
from ._supervisor import DEFAULT_ROOT, Supervisor, open_supervisor

log = logging.getLogger("boxd")

DEFAULT_SOCKET = Path("/run/boxd/boxd.sock")
DEFAULT_DOCKER_SOCKET = "/run/boxd/docker.sock"


# The signals that stop the daemon: SIGQUIT too, as dockerd's (which dumps its goroutines
# first: boxd logs its tasks).
_STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class DaemonError(Exception):
    pass


def _parse_args(argv: Sequence[str] | None) -> SimpleNamespace:
    """The daemon's options.  argparse (with gettext, ~0.4 MB) is needed only here: it is
    imported for this call and dropped after it, so its memory serves the daemon's own
    objects instead (a later ``import argparse`` loads it again)."""
    before = set(sys.modules)
    import argparse

    p = argparse.ArgumentParser(prog="boxd", description="The boxd container daemon.")

    def mtu(text: str) -> int:  # argparse's words: "argument --mtu: invalid mtu value: 'X'"
        value = _units.parse_mtu(text)
        if value is None:
            raise ValueError(text)
        return value

    def icc(text: str) -> bool:  # a boolean as Docker's flag takes it (Go's ParseBool)
        if text not in _units.GO_BOOLS:
            raise ValueError(text)  # argparse's words: "invalid icc value: 'X'"
        return _units.GO_BOOLS[text]

    p.add_argument(
        "--root",
        "--data-root",
        dest="root",
        type=Path,
        default=Path(os.environ.get("BOXD_ROOT", DEFAULT_ROOT)),
        help="state directory (env BOXD_ROOT; default %(default)s)",
    )
    p.add_argument(
        "--socket",
        type=Path,
        default=Path(os.environ.get("BOXD_SOCKET", DEFAULT_SOCKET)),
        help="control socket (env BOXD_SOCKET; default %(default)s)",
    )
    p.add_argument(
        "--docker-socket",
        default=os.environ.get("BOXD_DOCKER_SOCKET", DEFAULT_DOCKER_SOCKET),
        help="Docker Engine API socket; empty: not served (env BOXD_DOCKER_SOCKET; "
        "default %(default)s)",
    )
    p.add_argument(
        "-l",
        "--log-level",
        default="info",
        choices=list(_daemonconfig.LEVELS),
        help="the daemon's log's least level (default %(default)s)",
    )
    p.add_argument(
        "-D",
        "--debug",
        dest="log_level",
        action="store_const",
        const="debug",
        help="log at level debug (dockerd's --debug)",
    )
    p.add_argument(
        "-p",
        "--pidfile",
        type=Path,
        default=None,
        help="also write the daemon's pid there, as dockerd's --pidfile (the root's boxd.pid "
        "always has it)",
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="check the options and the configuration file, then exit (0: configuration OK)",
    )
    p.add_argument("-v", "--version", action="version", version=f"boxd version {__version__}")
    p.add_argument(
        "--cgroup-parent",
        default=None,
        help="cgroup below which containers' cgroups are made (default: below the daemon's own)",
    )
    p.add_argument(
        "--log-max-size",
        default=None,
        help="size at which a new container's log rotates (e.g. 10m; default 10m)",
    )
    p.add_argument(
        "--log-max-files",
        type=int,
        default=None,
        help="number of log files kept per new container (default 3)",
    )
    p.add_argument(
        "--procview",
        choices=["on", "off"],
        default="on",
        help="serve containers a /proc that shows their own limits (FUSE)",
    )
    p.add_argument(
        "--no-live-restore",
        dest="live_restore",
        action="store_false",
        help="stop every container when the daemon stops (default: they run on, and the "
        "next daemon adopts them)",
    )
    p.add_argument(
        "--procview-cpus",
        choices=list(CPU_POLICIES),
        default="cpuset",
        help="what the view's CPU count follows: the cpuset (default) or also the CPU quota",
    )
    p.add_argument(
        "--bridge-name",
        default="",
        help=f"the default network's Linux bridge (default {DEFAULT_BRIDGE} for the default "
        "root, another name for another root)",
    )
    p.add_argument(
        "--bridge-subnet",
        default="",
        help="the default network's IPv4 subnet (default: a free 172.17-31.0.0/16)",
    )
    p.add_argument(
        "--bip",
        default="",
        metavar="ADDRESS/LEN",
        help="the default bridge's address and subnet, as Docker's bip (not with --bridge-subnet)",
    )
    p.add_argument(
        "--icc",
        type=icc,
        default=True,
        metavar="BOOL",
        help="whether containers on the default network reach one another (default: true; "
        "false: as Docker's --icc=false; user networks: -o com.docker.network.bridge."
        "enable_icc)",
    )
    p.add_argument(
        "--ipv6",
        action="store_true",
        help="IPv6 on the default bridge too, as Docker's --ipv6 (user networks: network "
        "create --ipv6)",
    )
    p.add_argument(
        "--fixed-cidr-v6",
        default="",
        metavar="CIDR",
        help="the default bridge's IPv6 subnet with --ipv6 (default: a free /64)",
    )
    p.add_argument(
        "--default-address-pool",
        dest="address_pools",
        action="append",
        default=[],
        metavar="base=CIDR,size=LEN",
        help="where networks without a subnet get one (repeat for more; default: "
        "172.17-31.0.0/16, then 192.168.0-240.0/20)",
    )
    p.add_argument(
        "--mtu",
        type=mtu,
        default=0,
        help="the default network's MTU, its bridge's and veths' (default: the kernel's, 1500)",
    )
    p.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of the daemon, shown by docker info (repeat for more)",
    )
    p.add_argument(
        "--default-ulimit",
        dest="default_ulimits",
        action="append",
        default=[],
        metavar="NAME=SOFT[:HARD]",
        help="a new container's limit where it gives none of that name, as Docker's (repeat "
        "for more)",
    )
    p.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a registry reached over plain HTTP (loopback registries always are)",
    )
    p.add_argument(
        "--max-download-attempts",
        type=int,
        default=5,
        metavar="N",
        help="tries of a layer's download that fails for a reason that may pass (default 5)",
    )
    p.add_argument(
        "--log-driver",
        default="json-file",
        choices=list(LOG_DRIVERS),
        help="where containers' output is kept unless they say (default %(default)s)",
    )
    p.add_argument(
        "--log-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a new container's log option unless it names it, as daemon.json's log-opts "
        "(max-size, max-file, mode, labels, env, tag, ...); repeat it for more",
    )
    p.set_defaults(log_options=())  # the kept ones of --log-opt and daemon.json's log-opts
    p.add_argument(
        "--config-file",
        type=Path,
        default=None,
        help="a daemon.json: Docker's keys where boxd has the setting, boxd's options by "
        f"their names (default {_daemonconfig.DEFAULT_PATH}, if it exists)",
    )
    args = SimpleNamespace(**vars(p.parse_args(argv)))
    del p, argparse
    args.log_level = _daemonconfig.LEVELS[args.log_level]
    path = args.config_file or _daemonconfig.DEFAULT_PATH
    given = list(sys.argv[1:] if argv is None else argv)
    for dest, value in _daemonconfig.read(path, given, required=bool(args.config_file)).items():
        setattr(args, dest, value)
    for dest, value in _daemonconfig.flag_log_opts(args.log_opt, given).items():
        setattr(args, dest, value)
    args.address_pools = tuple(
        [pool if isinstance(pool, tuple) else _flag_pool(pool) for pool in args.address_pools]
    )
    args.labels = _daemonconfig.labels("--label", list(args.labels))
    args.default_ulimits = tuple(
        [
            u if isinstance(u, tuple) else _daemonconfig.default_ulimit(u)
            for u in args.default_ulimits
        ]
    )
    if args.fixed_cidr_v6:
        _daemonconfig.cidr_v6("--fixed-cidr-v6", args.fixed_cidr_v6)
    if args.fixed_cidr_v6 and not args.ipv6:
        raise _daemonconfig.ConfigError(
            f"--fixed-cidr-v6 {args.fixed_cidr_v6} needs --ipv6 (the default bridge's IPv6)"
        )
    if args.bip:
        _daemonconfig.bip("--bip", args.bip)
        if args.bridge_subnet:
            raise _daemonconfig.ConfigError(
                "--bip and --bridge-subnet both set the default network's subnet: give one"
            )
    for name in {"argparse", "gettext"} - before:
        sys.modules.pop(name, None)
    gc.collect()  # classes are reference cycles
    return args


def _flag_pool(text: str) -> tuple[str, int]:
    """``--default-address-pool base=CIDR,size=LEN``, as dockerd takes it."""
    fields = dict(part.partition("=")[::2] for part in text.split(","))
    size = fields.get("size", "")
    value = {**fields, "size": int(size) if size.isdigit() else size}
    return _daemonconfig.address_pool("--default-address-pool", value)


def _checked(args: SimpleNamespace) -> SimpleNamespace:
    """``args`` whose values the daemon can follow (the configuration file's too), at the
    start and at each reload, with ``log_max_bytes``: the size given (flags, daemon.json),
    recorded on each new container (see Supervisor), in bytes: log-opts' max-size is read
    in Docker's units, the text of --log-max-size here."""
    max_size = args.log_max_size
    if isinstance(max_size, str):
        max_size = _units.parse_size(max_size, what="--log-max-size")
    args.log_max_bytes = max_size
    if args.log_max_files is not None and args.log_max_files < 1:
        raise DaemonError(f"invalid --log-max-files {args.log_max_files}: must be >= 1")
    if args.max_download_attempts < 1:
        raise DaemonError(
            f"invalid --max-download-attempts {args.max_download_attempts}: must be >= 1"
        )
    if args.log_driver not in LOG_DRIVERS:  # from the configuration file
        raise DaemonError(
            f"invalid log-driver {args.log_driver!r}: "
            "use json-file, local, syslog, journald, gelf, fluentd, splunk or none"
        )
    if args.log_driver == "none" and (args.log_options or max_size or args.log_max_files):
        raise DaemonError(
            "log-opts (and --log-max-size, --log-max-files) need a log: log-driver none keeps none"
        )
    try:
        check_driver_log_options(
            args.log_driver,
            args.log_options,
            max_size=max_size is not None,
            max_files=args.log_max_files is not None,
        )
        check_log_compress(args.log_max_files, args.log_options)
    except ValueError as exc:
        raise DaemonError(f"log-opts: {exc}") from None
    for name, allowed in (("procview", ("on", "off")), ("procview_cpus", CPU_POLICIES)):
        if getattr(args, name) not in allowed:
            raise DaemonError(
                f"invalid {name.replace('_', '-')} {getattr(args, name)!r}: "
                f"use {' or '.join(allowed)}"
            )
    return args


# What a reload on SIGHUP changes in the running daemon, by the option's dest: the name an
# operator knows it by and how it is applied.  The other options are read at the start only.
_RELOADED: dict[str, tuple[str, Callable[[Supervisor, SimpleNamespace], None]]] = {
    "log_level": ("log-level", lambda sup, a: logging.getLogger().setLevel(a.log_level.upper())),
    "log_driver": ("log-driver", lambda sup, a: setattr(sup, "log_driver", a.log_driver)),
    "log_max_bytes": (
        "log-opts max-size",
        lambda sup, a: setattr(sup, "log_max_size", a.log_max_bytes),
    ),
    "log_max_files": (
        "log-opts max-file",
        lambda sup, a: setattr(sup, "log_max_files", a.log_max_files),
    ),
    "log_options": ("log-opts", lambda sup, a: setattr(sup, "log_options", a.log_options)),
    "default_ulimits": ("default-ulimits", lambda sup, a: _default_ulimits(sup, a)),
    "labels": ("labels", lambda sup, a: setattr(sup, "labels", a.labels)),
    "insecure_registry": ("insecure-registries", lambda sup, a: _registries(sup, a)),
    "max_download_attempts": ("max-download-attempts", lambda sup, a: _registries(sup, a)),
}
_NOT_COMPARED = {
    "config_file",
    "log_max_size",
    "validate",
}  # the file itself; the size, in bytes above


def _default_ulimits(sup: Supervisor, args: SimpleNamespace) -> None:
    sup.default_ulimits = tuple([Ulimit(*limit) for limit in args.default_ulimits])


def _registries(sup: Supervisor, args: SimpleNamespace) -> None:
    sup.set_registry_options(frozenset(args.insecure_registry), args.max_download_attempts)


def reload(sup: Supervisor, args: SimpleNamespace, argv: Sequence[str]) -> SimpleNamespace:
    """SIGHUP, as dockerd's: the command line ``argv`` and the configuration file read
    again; what can change while the daemon runs is changed (for the containers created
    from now on), what cannot is named in the log.  A file the daemon cannot follow
    changes nothing: the options in use (returned) stay, and the daemon serves on."""
    try:
        new = _checked(_parse_args(argv))
    except (_daemonconfig.ConfigError, DaemonError, ValueError) as exc:
        log.error("reload failed, the configuration in use is kept: %s", exc)
        return args
    changed = {
        dest for dest, value in vars(new).items() if getattr(args, dest, None) != value
    } - _NOT_COMPARED
    done = set()
    for dest in sorted(changed & set(_RELOADED)):
        name, apply = _RELOADED[dest]
        apply(sup, new)
        done.add(dest)
        log.info(
            "reloaded %s: %s (was %s)",
            name,
            _shown(getattr(new, dest)),
            _shown(getattr(args, dest)),
        )
    later = sorted(changed - done)
    if later:
        log.warning(
            "reload: %s changed, but only a restart of boxd applies it; in use until then: %s",
            ", ".join(d.replace("_", "-") for d in later),
            ", ".join(f"{d.replace('_', '-')} {_shown(getattr(args, d))}" for d in later),
        )
        for dest in later:  # the next reload compares with what is in use
            setattr(new, dest, getattr(args, dest))
    if not changed:
        log.info("reloaded the configuration: nothing changed")
    # dockerd's "daemon reload" event, with what its reload reports.
    attributes = {
        "debug": str(new.log_level == "debug").lower(),
        "labels": json.dumps(list(new.labels)),
        "insecure-registries": json.dumps(list(new.insecure_registry)),
        "max-download-attempts": str(new.max_download_attempts),
        "live-restore": str(new.live_restore).lower(),
    }
    sup.events.daemon("reload", sup.daemon_id, attributes)
    return new


def _shown(value: object) -> str:
    """An option's value in the log, a list's items as the flags take them."""
    if isinstance(value, list | tuple | frozenset):
        return "[" + ", ".join(_item(v) for v in value) + "]"
    return str(value)


def _item(value: object) -> str:
    if isinstance(value, tuple) and len(value) == 3:  # a limit
        return f"{value[0]}={value[1]}:{value[2]}"
    if isinstance(value, tuple) and len(value) == 2:  # an address pool
        return f"base={value[0]},size={value[1]}"
    return str(value)


def _log_tasks(why: str) -> None:
    """The daemon's Trio task tree as one log record (SIGUSR1; SIGQUIT before stopping):
    dockerd's goroutine dump, boxd's way."""
    log.warning("\n".join([f"{why}: the daemon's tasks", *_tasks.tree()]))


async def run_daemon(args: SimpleNamespace, argv: Sequence[str] = ()) -> None:
    """Serve until SIGTERM, SIGINT or SIGQUIT; ``argv``: the command line, read again at
    SIGHUP's reload."""
    args = _checked(args)
    view = None
    why_not = "turned off (--procview off)" if args.procview == "off" else available()
    if why_not is None:
        view = ProcView(cpu_policy=args.procview_cpus)
    else:
        log.warning("the per-container /proc view is off: %s", why_not)
    _repair.detach_dead_mounts(args.root)
    _repair.remove_stale_socket_files(args.socket)
    if args.docker_socket:
        _repair.remove_stale_socket_files(Path(args.docker_socket))
    inherited = _systemd.listen_fds()
    if not inherited:
        _refuse_served(args.socket, "--socket")
    if args.docker_socket:
        _refuse_served(Path(args.docker_socket), "--docker-socket")
    listening = None
    if inherited:
        listening = trio.socket.fromfd(inherited[0], socket.AF_UNIX, socket.SOCK_STREAM)
        os.close(inherited[0])
    with trio.open_signal_receiver(*_STOP, signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as outer:
            if view is not None:
                # serve() detaches a dead view a killed daemon left mounted there (any
                # stat of it fails with ENOTCONN), then makes the directory.
                await outer.start(view.serve, args.root / "procview")
            async with (
                open_supervisor(
                    args.root,
                    cgroup_parent=args.cgroup_parent,
                    log_driver=args.log_driver,
                    log_max_size=args.log_max_bytes,
                    log_max_files=args.log_max_files,
                    log_options=args.log_options,
                    procview=view,
                    bridge=BridgeOptions.of(
                        args.bridge_name,
                        args.bridge_subnet,
                        args.mtu,
                        bip=args.bip,
                        pools=args.address_pools,
                        ipv6=args.ipv6,
                        subnet6=args.fixed_cidr_v6,
                        icc=args.icc,
                    ),
                    live_restore=args.live_restore,
                    insecure_registries=frozenset(args.insecure_registry),
                    max_download_attempts=args.max_download_attempts,
                ) as sup,
                trio.open_nursery() as nursery,
            ):
                _default_ulimits(sup, args)
                sup.labels = args.labels
                server = Server(
                    sup,
                    procview="on" if view else f"off: {why_not}",
                    docker_socket=args.docker_socket,
                )
                if args.docker_socket:  # first: a client of the native socket may expect it
                    await nursery.start(serve_docker, sup, Path(args.docker_socket))
                await nursery.start(
                    functools.partial(serve, server, args.socket, listening=listening)
                )
                _trim.release_free_memory()  # what start-up and recovery freed
                _systemd.notify("READY=1")
                log.info(
                    "boxd ready: root %s, socket %s, Docker API %s, cgroups %s",
                    args.root,
                    args.socket,
                    args.docker_socket or "off",
                    sup.cgroups.mode,
                )
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                        _systemd.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")
                        args = reload(sup, args, argv)
                        _systemd.notify("READY=1")
                        continue
                    if signum in (signal.SIGUSR1, signal.SIGQUIT):
                        _log_tasks(f"received {name}")
                    if signum not in _STOP:
                        continue
                    if args.live_restore:
                        log.info("received %s: leaving the containers running", name)
                    else:
                        log.info("received %s: stopping containers", name)
                    _systemd.notify("STOPPING=1")
                    nursery.cancel_scope.cancel(reason=f"signal {signum}")
                    outer.start_soon(_forced, signals)
                    break
            # The containers are stopped: nobody reads the view any more.
            outer.cancel_scope.cancel(reason="daemon stopping")
    log.info("boxd stopped")


@contextlib.contextmanager
def _pidfile(path: Path | None) -> Iterator[None]:
    """``--pidfile``: this process's pid written at ``path`` while the daemon runs, and
    removed after; one that names a live process (another daemon's) is refused, one whose
    process is gone (a killed daemon's) is replaced."""
    if path is None:
        yield
        return
    with contextlib.suppress(FileNotFoundError, ValueError):
        other = int(path.read_text().strip() or "0")
        if other > 0 and other != os.getpid() and Path(f"/proc/{other}").exists():
            raise DaemonError(
                f"the pid file {path} names process {other}, which is running: stop that "
                f"daemon, or remove {path} if it is not one"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(path.read_text()) == os.getpid():  # not a later daemon's
                path.unlink()


async def _forced(signals: AsyncIterator[int]) -> None:
    """dockerd's way out of a stop that hangs (a container that ignores its stop signal,
    with a long timeout): the third SIGTERM, SIGINT or SIGQUIT ends the daemon at once,
    without cleanup; the next daemon repairs what it left, as after a kill."""
    count = 1
    async for signum in signals:
        count += signum in _STOP
        if count >= 3:
            log.error("forcing boxd to stop without cleanup: %d stop signals received", count)
            logging.shutdown()
            os._exit(128 + signum)


def _refuse_served(path: Path, flag: str) -> None:
    """Refuse a socket some process serves at ``path`` (a boxd on another root, a
    dockerd): ours, put in its place, would take its clients, and its exit would remove
    ours.  A file nobody answers at, a killed daemon's, is replaced."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        probe.settimeout(5)  # a full backlog: someone is there
        try:
            probe.connect(str(path))
        except TimeoutError:
            pass
        except OSError:
            return
    raise DaemonError(
        f"another process serves the socket {path}: stop it, or give this daemon another {flag}"
    )


_TEXT_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class _JournalFormat(logging.Formatter):
    """A record for the journal (stderr of a systemd service): its syslog priority as the
    ``<N>`` prefix journald reads (``journalctl -p warning`` then finds boxd's warnings,
    and shows errors in red), no time of ours (the journal keeps its own)."""

    _PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = self._PRIORITIES.get(record.levelno, 2)  # above ERROR: critical
        return f"<{priority}>{super().format(record)}"


def _errors(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The leaves of nested exception groups (a Trio nursery wraps what fails in it)."""
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_errors(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def main(argv: Sequence[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["install-service"]:
        sys.exit(_systemd.install(words[1:]))
    try:
        args = _parse_args(words)
        if args.docker_socket:  # as clients are told of it (--use-api-socket's bind)
            args.docker_socket = os.path.abspath(args.docker_socket)
        if args.validate:  # dockerd's --validate: the daemon's checks, as at its start
            _checked(args)
            print("configuration OK", file=sys.stderr)
            sys.exit(0)
    except (_daemonconfig.ConfigError, DaemonError, ValueError) as exc:
        sys.exit(f"boxd: {exc}")
    handler = logging.StreamHandler()
    handler.setFormatter(_JournalFormat() if _systemd.stderr_is_journal() else _TEXT_FORMAT)
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    # The HTTP client's own lines (every request, its headers) are noise in the daemon's log.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if os.geteuid() != 0:
        sys.exit("boxd: must run as root (namespaces, mounts and cgroups need it)")
    _trim.one_heap()
    _ulimits.raise_open_files()
    # Docker's daemon sets 022 too: a shell's or service's 077 or 002 would otherwise be
    # every container's (and its volumes', its copies' and its build's files' modes).
    os.umask(0o022)
    try:
        with hold_root(args.root), _pidfile(args.pidfile):
            trio.run(run_daemon, args, words)
    except (DaemonError, RootInUse, ValueError, OSError) as exc:
        sys.exit(f"boxd: {exc}")
    except BaseExceptionGroup as group:
        leaves = _errors(group)
        if not all(isinstance(e, DaemonError | ValueError | OSError) for e in leaves):
            raise
        sys.exit("\n".join(f"boxd: {e}" for e in leaves))

"""The records boxd stores and sends: a container's configuration and its state.

They are plain ``attrs`` classes; :mod:`boxd._convert` turns them into JSON and back.
Validation that needs no I/O lives here, so a bad value is refused before anything exists.
"""

from __future__ import annotations

import enum
import math
import posixpath
import re
import secrets
import types
import typing

import attrs

from . import _caps, _fixedmodes, _logattrs, _nsmodes
from ._devicemap import DeviceMapping, check_all
from ._healthcheck import Health, Healthcheck, check_healthcheck
from ._hosts import HOST_GATEWAY, parse_host
from ._mounts import PROPAGATIONS, check_volume_name, clean_path, is_local
from ._native import check_console_size
from ._netconfig import (
    NetworkJoin,
    NetworkSettings,
    PortSpec,
    check_dns,
    check_driver_opts,
    check_ipv4,
    check_ipv6,
    check_link_format,
    check_link_local,
    check_mac,
    check_network,
    container_interfaces,
)
from ._portspecs import parse_expose
from ._signames import parse_signal as parse_signal
from ._sysctl import parse_sysctl
from ._tmpfs import parse_tmpfs
from ._ulimits import check_ulimit
from ._units import (
    CACHE_OPTIONS,
    DRIVER_LOG_OPTIONS,
    FLUENTD_OPTIONS,
    GELF_OPTIONS,
    GO_BOOLS,
    LOG_MODES,
    SPLUNK_OPTIONS,
    SYSLOG_OPTIONS,
    SYSLOG_TLS_OPTIONS,
    log_option,
    parse_size,
)
from ._users import check_group, check_user

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
ID_RE = re.compile(r"[0-9a-f]{64}\Z")


class Status(enum.Enum):
    """A container's phase; the transitions between phases are in :mod:`boxd._lifecycle`."""

    CREATED = "created"
    STARTING = "starting"  # its process is being spawned
    RUNNING = "running"
    PAUSED = "paused"  # its cgroup is frozen
    RESTARTING = "restarting"  # ended; its restart policy starts it again after a backoff
    STOPPING = "stopping"  # asked to stop: stop signal sent, SIGKILL after the timeout
    STOPPED = "stopped"  # ended because somebody asked (stop, kill, daemon shutdown)
    EXITED = "exited"  # ended by itself
    REMOVING = "removing"  # being removed (rm): only the removal goes on


class RestartName(enum.Enum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"


@attrs.frozen
class RestartPolicy:
    name: RestartName = RestartName.NO
    max_retries: int = 0  # on-failure only; 0 = unlimited

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """``no``, ``always``, ``unless-stopped``, ``on-failure`` or ``on-failure:N``."""
        name, _, count = text.partition(":")
        try:
            policy = RestartName(name)
        except ValueError:
            raise ValueError(
                f"invalid restart policy {text!r}: use no, on-failure[:max], always "
                "or unless-stopped"
            ) from None
        if count and policy is not RestartName.ON_FAILURE:
            raise ValueError(f"invalid restart policy {text!r}: only on-failure takes a count")
        retries = 0
        if count:
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"invalid restart policy {text!r}: count must be >= 1")
            retries = int(count)
        return cls(policy, retries)

    def __str__(self) -> str:
        if self.name is RestartName.ON_FAILURE and self.max_retries:
            return f"on-failure:{self.max_retries}"
        return self.name.value

    def wants_restart(self, *, exit_code: int, stopped: bool, restarts: int) -> bool:
        """Whether a container that just ended should be started again."""
        if stopped or self.name is RestartName.NO:
            return False
        if self.name is RestartName.ON_FAILURE:
            return exit_code != 0 and (not self.max_retries or restarts < self.max_retries)
        return True


@attrs.frozen
class Volume:
    """A host directory (or file) bound into the container: always nosuid and nodev (a
    setuid file or a device node on the host gives nothing inside), read-only and noexec
    on request.  A named volume (``volume``: its name) is a directory the daemon keeps
    (see :mod:`boxd._volumes`): a client leaves ``host`` empty (and ``volume`` too for an
    anonymous one), the daemon fills both in at create."""

    host: str
    container: str
    read_only: bool = False
    noexec: bool = False
    volume: str = ""
    nocopy: bool = False  # a new, empty volume is not filled from the image
    # Its mount propagation, Docker's word: "" (or "rprivate", Docker's default), or
    # "private", "rslave", "slave", "rshared", "shared" (see
    # boxd._rootfs.container_mounts).
    propagation: str = ""
    # How a bind takes the mounts below its source (``--mount bind-recursive``, Docker's
    # words): "" (enabled: bound too, and read-only with it), "disabled" (the source's
    # own mount alone), "writable" (bound, but read-only at the top only) or "readonly"
    # (read-only below too, or the start fails).
    recursive: str = ""
    # A named volume's directory or file that is bound alone (``volume-subpath``): a
    # relative path inside it, resolved there at each start without following symlinks.
    subpath: str = ""

    @property
    def is_volume(self) -> bool:
        return bool(self.volume) or not self.host


@attrs.frozen
class ImageMount:
    """Another image's files, read-only, at ``target`` (``--mount type=image``, Docker 28's
    and Podman's): ``image`` as given, ``image_id`` the stored image it named at create
    (the one mounted, whatever the name means later), ``subpath`` one of its directories
    or files alone (relative, no symlink on the way)."""

    image: str
    target: str
    image_id: str = ""
    subpath: str = ""


@attrs.frozen
class Ulimit:
    """A resource limit (``--ulimit nofile=1024:2048``); -1 is unlimited."""

    name: str
    soft: int
    hard: int


@attrs.frozen
class DeviceRate:
    """A block device's limit (``--device-read-bps /dev/sda:1mb``, ``--blkio-weight-device
    /dev/sda:200``): the device's path on the host, and bytes or operations per second, or
    a weight (see :mod:`boxd._resources`)."""

    path: str
    rate: int


@attrs.frozen
class Resources:
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory + swap; -1 unlimited
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None
    cpuset_cpus: str | None = None
    # Docker's other options, with the meaning of boxd._cgroup.Limits' fields of the same
    # names (None: not set; see boxd._resources).
    memory_reservation: int | None = None
    memory_swappiness: int | None = None
    oom_kill_disable: bool | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_mems: str | None = None
    cpu_rt_period: int | None = None
    cpu_rt_runtime: int | None = None
    blkio_weight: int | None = None
    blkio_weight_device: tuple[DeviceRate, ...] | None = None
    device_read_bps: tuple[DeviceRate, ...] | None = None
    device_write_bps: tuple[DeviceRate, ...] | None = None
    device_read_iops: tuple[DeviceRate, ...] | None = None
    device_write_iops: tuple[DeviceRate, ...] | None = None


@attrs.frozen
class Security:
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    no_new_privileges: bool = True
    # "default", "unconfined", a path to a Docker-format profile (boxctl's), or such a
    # profile's JSON itself (the Engine API's: "{...}")
    seccomp: str = "default"
    # Docker's MaskedPaths and ReadonlyPaths (boxd._masks): None, the defaults; () with
    # --security-opt systempaths=unconfined; or the API's own lists.
    masked_paths: tuple[str, ...] | None = None
    readonly_paths: tuple[str, ...] | None = None


def _clean_workdir(path: str) -> str:
    """A working directory as Docker's daemon keeps it ("/tmp/" is "/tmp"); a relative
    one as given, for its refusal to name it."""
    return clean_path(path) if path.startswith("/") else path


@attrs.frozen
class ContainerConfig:
    # "default", an absolute path to a root filesystem directory, or an image reference
    image: str
    # Empty for an image reference: the image's Cmd (see boxd._images.config).
    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    # Empty: the image's WorkingDir, else /.  Kept cleaned (see _clean_workdir).
    workdir: str = attrs.field(default="/", converter=_clean_workdir)
    user: str = ""  # "USER[:GROUP]", names or ids (see _users); empty = root
    group_add: tuple[str, ...] = ()  # supplementary groups: names or gids
    hostname: str = ""
    domainname: str = ""  # its NIS domain name (kernel.domainname of its UTS namespace)
    extra_hosts: tuple[str, ...] = ()  # --add-host NAME:IP, lines added to /etc/hosts
    tty: bool = False
    # A terminal's size from its first instruction, (rows, columns): the client's own at
    # create (Docker's HostConfig.ConsoleSize), used at each start unless the start gives
    # one.  None: 24x80 until the first resize.
    console_size: tuple[int, int] | None = None
    interactive: bool = False
    # Docker's StdinOnce (`run -i` in the foreground, `create -i`): the end of an attached
    # client's input, or the client's going away, closes the container's stdin.  Without
    # it the stdin stays open for the next attach (`run -d -i`).
    stdin_once: bool = False
    network: str = "bridge"  # bridge, host, none, container:NAME or a user network
    ports: tuple[PortSpec, ...] = ()  # -p
    publish_all: bool = False  # -P: every exposed port on an ephemeral host port
    expose: tuple[str, ...] = ()  # --expose, as "80/tcp"
    network_aliases: tuple[str, ...] = ()  # more names on a user network
    # Docker's links, "NAME:ALIAS": on a user network the container's DNS answers ALIAS as
    # NAME (for it alone), as Docker's embedded DNS does; on the default bridge, /etc/hosts
    # lines and variables (boxd._links).
    links: tuple[str, ...] = ()
    # The networks it is on once `network connect`/`disconnect` changed them (None: just
    # --network's, with --network-alias): see boxd._network.joined.
    networks: tuple[NetworkJoin, ...] | None = None
    dns: tuple[str, ...] = ()  # --dns servers (on a user network: its DNS's upstreams)
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    userns: bool = False
    # --pid, --ipc, --uts: "" (its own), "host", "container:NAME", for --ipc "none",
    # "private", "shareable" too; --cgroupns (see boxd._nsmodes).
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    cgroupns_mode: str = ""  # "" or "private" (its own), "host"
    volumes: tuple[Volume, ...] = ()
    image_mounts: tuple[ImageMount, ...] = ()
    # The container paths of the volumes and tmpfs given as mounts (--mount, the Engine
    # API's HostConfig.Mounts) rather than as -v and --tmpfs (Binds, Tmpfs): inspect shows
    # each as it was given.
    mount_points: tuple[str, ...] = ()
    # Docker's HostConfig.Binds as given (the Engine API's; boxctl's -v with a source, its
    # host path made absolute), shown back by inspect; None: shown from ``volumes`` (a
    # configuration that did not say).
    binds: tuple[str, ...] | None = None
    # Docker's Config.Volumes: the paths of the anonymous volumes asked for (Config.Volumes,
    # -v PATH) and of the image's VOLUMEs, shown back by inspect.
    declared_volumes: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()  # "CONTAINER[:ro|:rw]": its volumes, copied at create
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()  # "PATH[:OPTIONS]", as --tmpfs takes them
    shm_size: int | None = None  # bytes of /dev/shm; None: Docker's 64 MiB
    ulimits: tuple[Ulimit, ...] = ()
    oom_score_adj: int | None = None  # -1000..1000; None: the daemon's own
    init: bool = False  # --init: boxd-init runs the command as PID 1's child
    sysctls: tuple[str, ...] = ()  # "KEY=VALUE", namespaced ones only (see _sysctl)
    devices: tuple[DeviceMapping, ...] = ()  # --device (see _devicemap)
    device_cgroup_rules: tuple[str, ...] = ()  # --device-cgroup-rule "c 1:3 rwm"
    resources: Resources = Resources()
    security: Security = Security()
    restart: RestartPolicy = RestartPolicy()
    stop_signal: str = "SIGTERM"
    # Seconds a stop waits before SIGKILL; negative: it never kills (Docker's -1).  None:
    # Docker's default (STOP_TIMEOUT), which inspect does not show, as Docker's does not.
    stop_timeout: float | None = None
    # Seconds each run may last before it is killed (SIGKILL, as Podman's --timeout); its
    # outcome says so (Outcome.timed_out).  None: no limit.
    timeout: float | None = None
    auto_remove: bool = False
    runtime: str = "runc"  # the name it was run with, one of RUNTIMES
    log_driver: str = ""  # see LOG_DRIVERS; empty: the supervisor's (json-file by default)
    log_max_size: int | None = None  # None: the driver's default (json-file: the daemon's)
    log_max_files: int | None = None
    # "KEY=VALUE", the --log-opt options kept as given (_units.KEPT_LOG_OPTIONS): the log
    # attributes (labels=, labels-regex=, env=, env-regex=, tag=: see _logattrs), shown by
    # logs --details, and Docker's mode= and max-buffer-size=.
    log_options: tuple[str, ...] = ()
    procview: bool = True
    cgroup_parent: str = ""
    # A stored image's: the image's id, and --entrypoint (None: the image's Entrypoint).
    image_id: str = ""
    entrypoint: tuple[str, ...] | None = None
    exposed_ports: tuple[str, ...] = ()  # "80/tcp", from the image
    labels: tuple[str, ...] = ()  # "KEY=VALUE"
    # "KEY=VALUE", the Engine API's HostConfig.Annotations (`docker run --annotation`, API
    # 1.43): for the OCI runtime in Docker; boxd runs the container itself, so they are
    # kept and shown back, as inspect shows them.
    annotations: tuple[str, ...] = ()
    # Docker's HostConfig.SecurityOpt (--security-opt) as given, shown back by inspect as
    # Docker shows it; what boxd applies of them is in ``security``.
    security_opt: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None  # merged with the image's (see _healthcheck)
    # Docker's HostConfig.Isolation as given: "" or "default" (in any case), the one
    # isolation on Linux (see _fixedmodes); kept and shown back, as inspect shows it.
    isolation: str = ""
    # Docker's HostConfig.UsernsMode as given: "" or "host" (no user namespace, see
    # _fixedmodes; boxd's own is ``userns``, --isolate-user); shown back by inspect.
    userns_mode: str = ""
    # The streams a Docker client said at create it attaches to (Config.AttachStdin,
    # AttachStdout, AttachStderr: "stdin", "stdout", "stderr"); kept and shown back, as
    # inspect shows them.  Each attach names its own streams; these change nothing.
    attach: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        validate_config(self)

    @property
    def image_ids(self) -> frozenset[str]:
        """The stored images it uses (keeps from removal and pruning): its own and those
        of its image mounts."""
        mounted = [m.image_id for m in self.image_mounts]
        return frozenset([i for i in (self.image_id, *mounted) if i])


@attrs.frozen
class RunSummary:
    """What a code-execution service wants to know about one finished run."""

    wall_seconds: float
    cpu_user_seconds: float
    cpu_system_seconds: float
    peak_memory: int  # bytes, 0 when unknown


@attrs.define
class ContainerState:
    status: Status = Status.CREATED
    pid: int = 0
    pid_start_time: int = 0  # field 22 of /proc/PID/stat: tells a reused pid apart
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    restart_count: int = 0
    # Stopped by a user's request (stop, kill, rm -f), not by a daemon shutdown: decides
    # whether `unless-stopped` brings the container back when the daemon starts.
    manual_stop: bool = False
    summary: RunSummary | None = None
    network: NetworkSettings = attrs.Factory(NetworkSettings)  # while it runs
    health: Health | None = None  # with a health check, since its first start


@attrs.define
class Container:
    id: str
    name: str
    created_at: float
    config: ContainerConfig
    state: ContainerState = attrs.Factory(ContainerState)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def new_id() -> str:
    return secrets.token_hex(32)


MAX_NAME = 128
STOP_TIMEOUT = 10.0  # seconds: a stop's wait for a container that did not set its own


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    if len(name) > MAX_NAME:
        raise ValueError(
            f"invalid container name {name!r}: {len(name)} characters, at most {MAX_NAME}"
        )
    return name


def check_link(link: str) -> str:
    """A link as stored (``NAME:ALIAS``): both parts there, the alias a name."""
    check_name(check_link_format(link))
    return link


# Docker's words (a mount's destination), refused at create as dockerd does, not at start.
_ON_ROOT = "destination can't be '/': it would cover the container's root"


def check_volume(v: Volume) -> None:
    """What a volume must be, whoever sent it."""
    what = f"{v.volume or v.host}:{v.container}" if v.volume or v.host else v.container
    if "\0" in what:
        raise invalid("volumes", what, "contains a NUL byte")
    if not v.container.startswith("/"):
        raise invalid("volumes", what, f"{v.container!r} is not an absolute path")
    if not v.container.strip("/"):
        raise invalid("volumes", what, _ON_ROOT)
    if v.volume:
        check_volume_name(v.volume)
    elif v.host and v.nocopy:
        raise invalid("volumes", what, "nocopy is for named volumes, not host paths")
    if v.subpath and not v.volume:
        raise invalid("volumes", what, "volume-subpath is for named volumes")
    if v.propagation and v.propagation not in PROPAGATIONS:
        known = ", ".join(PROPAGATIONS)
        raise invalid("volumes", what, f"propagation {v.propagation!r}: use one of {known}")
    if v.subpath and not is_local(v.subpath):
        raise invalid("volumes", what, f"volume-subpath {v.subpath!r} leaves the volume")


def check_image_mount(m: ImageMount) -> None:
    what = f"type=image,source={m.image},target={m.target}"
    if not m.image or "\0" in what:
        raise invalid("image_mounts", what, "needs an image (source=IMAGE), without NUL bytes")
    if not m.target.startswith("/"):
        raise invalid("image_mounts", what, f"{m.target!r} is not an absolute path")
    if not m.target.strip("/"):
        raise invalid("image_mounts", what, _ON_ROOT)
    if m.subpath and not is_local(m.subpath):
        raise invalid("image_mounts", what, f"image-subpath {m.subpath!r} leaves the image")


# The option of `boxctl run` (and of `docker run`) that sets each field of a configuration:
# a refused value is named as its user typed it, not by its place in a record.
OPTIONS = {
    "env": "--env",
    "workdir": "--workdir",
    "user": "--user",
    "group_add": "--group-add",
    "hostname": "--hostname",
    "domainname": "--domainname",
    "extra_hosts": "--add-host",
    "network": "--network",
    "volumes": "--volume",
    "volumes_from": "--volumes-from",
    "mount_points": "--mount",
    "image_mounts": "--mount",
    "declared_volumes": "--volume",
    "tmpfs": "--tmpfs",
    "shm_size": "--shm-size",
    "ulimits": "--ulimit",
    "resources.memory": "--memory",
    "resources.memory_swap": "--memory-swap",
    "resources.cpus": "--cpus",
    "resources.cpu_shares": "--cpu-shares",
    "resources.pids_limit": "--pids-limit",
    "resources.cpuset_cpus": "--cpuset-cpus",
    "resources.memory_reservation": "--memory-reservation",
    "resources.memory_swappiness": "--memory-swappiness",
    "resources.cpu_period": "--cpu-period",
    "resources.cpu_quota": "--cpu-quota",
    "resources.cpuset_mems": "--cpuset-mems",
    "resources.blkio_weight": "--blkio-weight",
    "restart": "--restart",
    "stop_signal": "--stop-signal",
    "stop_timeout": "--stop-timeout",
    "timeout": "--timeout",
    "runtime": "--runtime",
    "log_driver": "--log-driver",
    "log_max_size": "--log-max-size",
    "log_max_files": "--log-max-files",
    "log_options": "--log-opt",
    "cgroup_parent": "--cgroup-parent",
    "labels": "--label",
    "annotations": "--annotation",
    "attach": "--attach",
}

ATTACH_STREAMS = ("stdin", "stdout", "stderr")


def invalid(field: str, value: object, reason: str = "") -> ValueError:
    """The error for a refused value of a configuration field (a path such as
    ``resources.memory``), in the words of the command line: ``invalid --memory '1x'``."""
    text = format(value, "g") if isinstance(value, float) else str(value)
    message = f"invalid {OPTIONS.get(field, field)} {text!r}"
    return ValueError(f"{message}: {reason}" if reason else message)


# Where a container's output is kept, as Docker's --log-driver names it: json-file (the
# daemon's rotation by default), local (Docker's local driver's 20 MiB x 5 and compressed
# rotated files by default; the same file format here), none (no log: `logs` cannot read),
# syslog (each line sent to a syslog server, boxd/_syslog.py; a log kept as local's for
# `logs` unless cache-disabled=true, as Docker's dual logging keeps one), journald (each
# line an entry of the host's journal, boxd/_journald.py; a log kept as local's), gelf
# (each line a GELF message, boxd/_gelf.py; a log kept as syslog's) or fluentd (each line
# an event of Fluentd's forward protocol, boxd/_fluentd.py; a log kept as syslog's) or
# splunk (lines posted in batches to a Splunk HTTP Event Collector, boxd/_splunk.py; a log
# kept as syslog's).
LOG_DRIVERS = ("json-file", "local", "none", "syslog", "journald", "gelf", "fluentd", "splunk")
# The drivers that send each line on (boxd/_linesend.py), and the options each takes
# beyond the log attributes, mode, max-buffer-size and the cache ones (Docker's dual
# logging's, which dockerd takes with any driver and uses with those it cannot read
# back: syslog and gelf here; journald's log is kept as local's).
_SENDING_OPTIONS = {
    "syslog": (*SYSLOG_OPTIONS, *SYSLOG_TLS_OPTIONS),
    "journald": (),
    "gelf": GELF_OPTIONS,
    "fluentd": FLUENTD_OPTIONS,
    "splunk": SPLUNK_OPTIONS,
}
SENDING_DRIVERS = tuple(_SENDING_OPTIONS)

# The names boxd's one runtime answers to (``--runtime``, ``docker info``'s Runtimes): it
# starts every container itself, with no OCI runtime binary under it.  ``runc`` first, the
# default: the name Docker's tools expect of the default runtime and send back;
# ``boxd``, the name boxd gave it before.
RUNTIMES = ("runc", "boxd")


def check_log_options(config: ContainerConfig) -> None:
    """Log options need a log: refused with the none driver (the container's, or once an
    empty one is the daemon's).  Docker's mode and max-buffer-size are checked as its
    daemon checks them (boxd's own log never drops output, whatever the mode; a sending
    driver's lines in non-blocking mode go through a ring that drops, boxd/_linesend.py)."""
    if config.log_driver == "none" and (config.log_max_size or config.log_max_files):
        raise ValueError("log rotation options need a log: --log-driver none keeps none")
    if config.log_driver == "none" and config.log_options:
        raise ValueError("log options need a log: --log-driver none keeps none")
    check_kept_log_options(config.log_options)
    if config.log_driver:  # (empty: the daemon's, checked once merged at the creation)
        check_driver_log_options(
            config.log_driver,
            config.log_options,
            max_size=config.log_max_size is not None,
            max_files=config.log_max_files is not None,
        )
    check_log_compress(config.log_max_files, config.log_options)


def check_driver_log_options(
    driver: str, kept: tuple[str, ...], *, max_size: bool = False, max_files: bool = False
) -> None:
    """The options only some drivers take, in Docker's words for another: rotation and
    ``compress`` are json-file's and local's, the sending drivers' their own (see
    :data:`_SENDING_OPTIONS`; checked: ValueError naming the bad value)."""
    keys = [option.partition("=")[0] for option in kept]
    options = _kept(kept)
    check_log_cache(options)
    own = _SENDING_OPTIONS.get(driver, ())
    if driver in _SENDING_OPTIONS:
        keys += [*(["max-size"] if max_size else []), *(["max-file"] if max_files else [])]
    for key in keys:
        rotation = key in ("max-size", "max-file", "compress") and driver in _SENDING_OPTIONS
        if rotation or (key in DRIVER_LOG_OPTIONS and key not in (*own, *CACHE_OPTIONS)):
            raise ValueError(f"unknown log opt {key!r} for {driver} log driver")  # Docker's
    if driver == "syslog":
        from . import _syslog  # only for containers that send their lines to syslog

        _syslog.settings(options)
    elif driver == "gelf":
        from . import _gelf

        _gelf.settings(options)
    elif driver == "fluentd":
        from . import _fluentd

        _fluentd.settings(options)
    elif driver == "splunk":
        from . import _splunk

        _splunk.settings(options)


def check_log_cache(options: dict[str, str]) -> None:
    """Docker's dual logging's options (the local log a sending driver's container
    keeps; taken with every driver, as dockerd takes them)."""
    for key in ("cache-disabled", "cache-compress"):
        if key in options and options[key] not in GO_BOOLS:
            raise ValueError(f"invalid log option {key} {options[key]!r}: expected true or false")
    for key, rotation in (("cache-max-size", "max-size"), ("cache-max-file", "max-file")):
        if key in options:
            try:
                log_option(rotation, options[key])
            except ValueError as exc:  # said of the rotation's option: of this one here
                raise ValueError(str(exc).replace(rotation, key, 1)) from None


def log_sizes(config: ContainerConfig) -> tuple[int | None, int | None]:
    """The container's own log rotation, (max size, max files), None where its driver's
    default applies: a sending driver's from its cache options, the others' as given."""
    if config.log_driver not in SENDING_DRIVERS:
        return config.log_max_size, config.log_max_files
    options = _kept(config.log_options)
    size, files = options.get("cache-max-size"), options.get("cache-max-file")
    return (
        None if size is None else log_option("max-size", size)[1],
        None if files is None else log_option("max-file", files)[1],
    )


def log_options_of(config: ContainerConfig) -> dict[str, str]:
    """The container's kept log options by name (a sending driver's settings among
    them: see boxd/_syslog.py, boxd/_gelf.py)."""
    return _kept(config.log_options)


def keeps_log(config: ContainerConfig) -> bool:
    """Whether the container keeps a log that `logs` reads: not with the none driver, nor
    with a sending driver's ``cache-disabled=true``."""
    if config.log_driver in SENDING_DRIVERS:
        return not GO_BOOLS.get(_kept(config.log_options).get("cache-disabled", ""), False)
    return config.log_driver != "none"


def check_log_compress(max_files: int | None, kept: tuple[str, ...]) -> None:
    """A ``compress=true`` among the kept log options needs rotated files to compress
    (local's default with one file is no refusal: nothing rotated is kept)."""
    if max_files == 1 and GO_BOOLS.get(_kept(kept).get("compress", "")):
        raise ValueError("compress cannot be true when max-file is less than 2")  # Docker's


def _kept(kept: tuple[str, ...]) -> dict[str, str]:
    return dict(option.partition("=")[::2] for option in kept)


def log_compressed(config: ContainerConfig) -> bool:
    """Whether the container's rotated log files are compressed: its ``compress`` option,
    or its driver's default as Docker has them (local's yes, json-file's no)."""
    if config.log_driver in SENDING_DRIVERS:  # Docker's dual logging compresses by default
        return GO_BOOLS.get(_kept(config.log_options).get("cache-compress", ""), True)
    given = _kept(config.log_options).get("compress")
    return config.log_driver == "local" if given is None else GO_BOOLS[given]


def check_kept_log_options(kept: tuple[str, ...]) -> None:
    """The log options kept as given (ContainerConfig.log_options; daemon.json's)."""
    options = _kept(kept)
    for option in kept:
        key, eq, value = option.partition("=")
        if not eq:
            raise invalid("log_options", option, "expected KEY=VALUE")
        if key == "mode" and value not in LOG_MODES:
            raise ValueError(f"logger: logging mode not supported: {value}")  # Docker's
        if key == "max-buffer-size":
            if options.get("mode") != "non-blocking":
                raise ValueError(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
                )
            parse_size(value, what="log option max-buffer-size")
        if key == "compress" and value not in GO_BOOLS:
            raise ValueError(f"invalid log option compress {value!r}: expected true or false")
        if key not in ("mode", "max-buffer-size", "compress", *DRIVER_LOG_OPTIONS):
            _logattrs.check(key, value)


def check_shm_size(size: int | None) -> None:
    """``--shm-size`` in bytes (None: Docker's 64 MiB)."""
    if size is not None and size < 1:
        raise ValueError(f"invalid --shm-size {size}: must be at least 1 byte")


def _expected(annotation: object) -> tuple[tuple[type, ...], str] | None:
    """The types a caller's value of a field so annotated may have, and how an error says
    them; None: not checked here (records of their own, checked where they are used)."""
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = kinds[0] if isinstance(annotation, types.UnionType) and len(kinds) == 1 else annotation
    if kind is float:
        return (int, float), "a number"
    if kind in (int, bool, str):
        assert isinstance(kind, type)
        return (kind,), ("an " if kind is int else "a ") + kind.__name__
    if kind == tuple[str, ...]:
        return (tuple, list), "a tuple of str"
    return None


_FIELD_TYPES: dict[type, dict[str, tuple[tuple[type, ...], str]]] = {}


def _field_types(cls: type) -> dict[str, tuple[tuple[type, ...], str]]:
    """A record class's fields checked by :func:`check_types`, and what each takes."""
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = {n: k for n, hint in hints.items() if (k := _expected(hint))}
    return _FIELD_TYPES[cls]


def check_types(record: ContainerConfig | Resources, where: str = "") -> None:
    """Refuse a value of another type than its field's by name (TypeError): a library
    caller's ``command="ls -l"`` ran ``l``, ``("sleep", 10)`` and ``memory="64m"`` failed
    with a TypeError from deep inside that named neither.  And a NUL byte in a str (or an
    item) by name (ValueError): no path, name or argument holds one, and the start failed
    with "embedded null byte" (one in ``cgroup_parent`` failed the supervisor's close)."""
    for name, (allowed, said) in _field_types(type(record)).items():
        value = getattr(record, name)
        if value is None:
            continue
        wrong = [value] if isinstance(value, bool) and bool not in allowed else []
        if not isinstance(value, allowed):
            wrong = [value]
        elif isinstance(value, (tuple, list)):  # and its items
            wrong = [item for item in value if not isinstance(item, str)]
        if wrong:
            reason = f"must be {said}, not {type(wrong[0]).__name__}"
            raise TypeError(str(invalid(where + name, value, reason)))
        texts = [value] if isinstance(value, str) else value
        for text in texts if isinstance(texts, (tuple, list)) else ():
            if "\0" in text:
                raise invalid(where + name, text, "contains a NUL byte")


def validate_config(config: ContainerConfig) -> None:
    """Refuse what can be refused without I/O, with a message naming the bad value."""
    check_types(config)
    check_types(config.resources, "resources.")
    reference = config.image != "default" and not config.image.startswith("/")
    if not reference and not config.command and not config.entrypoint:
        what = "the image 'default' has" if config.image == "default" else "a root directory has"
        raise ValueError(f"no command specified ({what} no Cmd)")
    if config.command and not config.command[0] and config.entrypoint is None:
        raise ValueError("no command specified: the command's first word is empty")
    # A bare KEY unsets KEY (one of the image's).  Any other name is taken, as Docker takes
    # it (docker-compose sends "affinity:container==ID" when it recreates a container).
    for item in config.env:
        if not item.partition("=")[0]:
            raise invalid("env", item, "use KEY=VALUE or KEY")
    if config.workdir and not config.workdir.startswith("/"):
        raise invalid("workdir", config.workdir, "must be absolute")
    if config.user:
        check_user(config.user)
    if config.console_size is not None:
        check_console_size(config.console_size)
    for group in config.group_add:
        check_group(group)
    for host in config.extra_hosts:
        if parse_host(host)[1] == HOST_GATEWAY and config.network == "none":
            raise ValueError(f"invalid --add-host {host!r}: --network none has no host to name")
    for sysctl in config.sysctls:
        parse_sysctl(sysctl, network=config.network)
    check_all(config.devices, config.device_cgroup_rules, read_only_root=config.read_only)
    if len(config.hostname) > 64:  # the kernel's limit, and Docker's
        raise invalid("hostname", config.hostname, "too long (at most 64 characters)")
    if config.hostname and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9.-]*", config.hostname):
        raise invalid("hostname", config.hostname, "use letters, digits, '.' and '-'")
    domain = config.domainname  # at most 64 bytes: the kernel's
    if domain and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}", domain):
        raise invalid("domainname", domain, "use letters, digits, '_', '.' and '-' (at most 64)")
    check_network(config.network)
    _nsmodes.check_config(config)
    for item in config.expose:
        parse_expose(item)
    for alias in config.network_aliases:
        check_name(alias)
    for link in config.links:
        check_link(link)
    if config.links and (
        config.network in ("host", "none") or config.network.startswith("container:")
    ):
        raise ValueError(
            f"conflicting options: links cannot be used with --network {config.network}"
            " (the container has no network of its own to reach them on)"
        )
    shared = config.network.startswith("container:")
    for join in config.networks or ():
        if join.network in ("host", "none") or join.network.startswith("container:"):
            raise ValueError(f"invalid network {join.network!r}: not one to connect to")
        check_network(join.network)
        for alias in join.aliases:
            check_name(alias)
        for link in join.links:
            check_link(link)
        for address in join.link_local_ips:
            check_link_local(address)
        if join.ip:
            check_ipv4(join.ip, "--ip")
        if join.ip6:
            check_ipv6(join.ip6, "--ip6")
        if join.mac:
            check_mac(join.mac)
        check_driver_opts(join.driver_opts)
    container_interfaces(config)  # refuses names given twice
    check_dns(config.dns, config.dns_search, config.dns_options)
    if shared and (config.dns or config.dns_search or config.dns_options):
        raise ValueError(
            f"conflicting options: dns and the network mode (--network {config.network} "
            "uses that container's DNS settings)"
        )
    if (config.ports or config.publish_all) and (config.network in ("host", "none") or shared):
        raise ValueError(
            f"published ports need a network of the container's own: --network "
            f"{config.network} has none"
        )
    if shared and config.userns:
        raise ValueError(
            f"--network {config.network} cannot go with --isolate-user: that network "
            "namespace belongs to the host's user namespace"
        )
    try:
        parse_signal(config.stop_signal)
    except ValueError:
        raise invalid("stop_signal", config.stop_signal) from None
    if config.stop_timeout is not None and not math.isfinite(config.stop_timeout):
        reason = "use a number of seconds (negative: wait for its end, never kill)"
        raise invalid("stop_timeout", config.stop_timeout, reason)
    if config.timeout is not None and not (math.isfinite(config.timeout) and config.timeout > 0):
        raise invalid("timeout", config.timeout, "use a number of seconds > 0")
    for v in config.volumes:
        check_volume(v)
    points = [posixpath.normpath(v.container) for v in config.volumes]
    for spec in config.tmpfs:
        if not parse_tmpfs(spec)[0].strip("/"):
            raise invalid("tmpfs", spec, _ON_ROOT)
    points += [posixpath.normpath(parse_tmpfs(spec)[0]) for spec in config.tmpfs]
    for m in config.image_mounts:
        check_image_mount(m)
    points += [posixpath.normpath(m.target) for m in config.image_mounts]
    for point in points:
        if points.count(point) > 1:
            raise ValueError(
                f"duplicate mount point {point}: a volume, image or --tmpfs is there twice"
            )
    for path in config.declared_volumes:
        if not path.startswith("/"):
            raise invalid("declared_volumes", path, "is not an absolute path")
    for point in config.mount_points:
        if posixpath.normpath(point) not in points:
            raise invalid("mount_points", point, "no volume or tmpfs is mounted there")
    sec = config.security
    _caps.check_names((*sec.cap_add, *sec.cap_drop))
    for what, paths in (("MaskedPaths", sec.masked_paths), ("ReadonlyPaths", sec.readonly_paths)):
        for path in paths or ():
            if not path.startswith("/") or not path.strip("/"):
                raise ValueError(f"invalid {what} entry {path!r}: use an absolute path below /")
    if config.runtime not in RUNTIMES:
        raise invalid(
            "runtime", config.runtime, "unknown runtime name: boxd's own is called runc (or boxd)"
        )
    if config.log_driver and config.log_driver not in LOG_DRIVERS:
        raise invalid(
            "log_driver",
            config.log_driver,
            "use json-file, local, syslog, journald, gelf, fluentd, splunk or none",
        )
    check_log_options(config)
    if config.oom_score_adj is not None and not -1000 <= config.oom_score_adj <= 1000:
        raise ValueError(
            f"invalid --oom-score-adj {config.oom_score_adj}: must be between -1000 and 1000"
        )
    for limit in config.ulimits:
        check_ulimit(limit.name, limit.soft, limit.hard)
    check_shm_size(config.shm_size)
    for key in ("labels", "annotations"):
        for label in getattr(config, key):
            if not label.partition("=")[0]:
                raise invalid(key, label, "use KEY=VALUE")
    if config.healthcheck is not None:
        check_healthcheck(config.healthcheck)
    _fixedmodes.check("isolation", config.isolation)
    _fixedmodes.check("userns", config.userns_mode)
    if config.userns_mode and config.userns:
        raise ValueError("--userns host conflicts with --isolate-user: choose one")
    for stream in config.attach:
        if stream not in ATTACH_STREAMS or config.attach.count(stream) > 1:
            raise invalid("attach", stream, "use stdin, stdout or stderr, each once")
    if config.auto_remove and config.restart.name is not RestartName.NO:
        raise ValueError("--rm and --restart cannot be combined")

"""Docker's JSON shapes and boxd's records, both ways (pure functions, no I/O but the clock).

Create bodies are read field by field: a value of the wrong type is refused with the path
of the field, ``null`` counts as absent (docker-py sends every field), unknown fields are
ignored as Docker ignores them, and a setting boxd cannot honour is refused rather than
dropped.  Inspect and list results carry the keys that the docker CLI and docker-py read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from .. import _human, _links, _masks, _nsmodes, _seccomp, _secopt
from .. import _mounts as mount_specs
from .._convert import structure, unstructure
from .._devicemap import DeviceMapping
from .._devicespecs import DEFAULT_PERMISSIONS
from .._dockerwords import command_line, health_suffix
from .._healthcheck import from_api as healthcheck_from_api
from .._healthcheck import to_api as healthcheck_to_api
from .._images.config import DEFAULT_ID, is_default
from .._images.reference import parse_reference
from .._listing import labels, status_word
from .._netconfig import Endpoint, NetworkJoin, PortSpec, check_driver_opts, check_mac, joined
from .._network import DEFAULT_NETWORK
from .._records import (
    LOG_DRIVERS,
    RUNTIMES,
    Container,
    ContainerConfig,
    DeviceRate,
    ImageMount,
    Resources,
    RestartName,
    RestartPolicy,
    Security,
    Ulimit,
    Volume,
)
from .._units import (
    CONTAINER_LOG_OPTIONS,
    DRIVER_LOG_OPTIONS,
    KEPT_LOG_OPTIONS,
    format_log_size,
    log_option,
)
from ._http import ApiError

if TYPE_CHECKING:  # the network verbs' module is loaded by their first use
    from .._netserver import NetworkInfo

T = TypeVar("T")
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: float | None) -> str:
    if t is None:
        return ZERO_TIME
    ns = round(t * 1e9)
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


# ---- reading a request body ----------------------------------------------------------


class Fields:
    """Typed access to one JSON object of a request, naming the path of a bad value."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ApiError(400, f"invalid {path}: expected an object, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self._folded: dict[str, Any] | None = None

    def value(self, key: str) -> Any:
        """The field ``key``, else one whose name differs only in case: Docker's decoder
        (Go's) takes either, and clients rely on it (docker-py sends ``detachKeys``)."""
        if key in self.data:
            return self.data[key]
        if self._folded is None:
            self._folded = {k.lower(): v for k, v in self.data.items()}
        return self._folded.get(key.lower())

    def _get(self, key: str, check: Callable[[Any], bool], what: str) -> Any:
        value = self.value(key)
        if value is None:
            return None
        if not check(value):
            raise ApiError(400, f"invalid {self.path}.{key}: expected {what}, got {value!r}")
        return value

    def text(self, key: str) -> str:
        return self._get(key, lambda v: isinstance(v, str), "a string") or ""

    def flag(self, key: str) -> bool:
        return bool(self._get(key, lambda v: isinstance(v, bool), "a boolean"))

    def integer(self, key: str) -> int:
        return self._get(key, _is_int, "an integer") or 0

    def strings(self, key: str) -> list[str]:
        return list(self._get(key, _is_strings, "a list of strings") or [])

    def command(self, key: str) -> list[str] | None:
        """A list of strings, or a string (split as a shell would: Docker takes both)."""
        value = self._get(key, lambda v: isinstance(v, str) or _is_strings(v), "a list of strings")
        if isinstance(value, str):
            return shlex.split(value)
        return None if value is None else list(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self._get(
            key,
            lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
            "an object of strings",
        )
        return dict(value or {})

    def mapping_keys(self, key: str) -> list[str]:
        """The keys of an object whose values do not matter (``ExposedPorts``)."""
        value = self._get(key, lambda v: isinstance(v, dict), "an object")
        return [str(k) for k in value or {}]

    def object(self, key: str) -> Fields:
        return Fields(self.value(key), f"{self.path}.{key}")

    def objects(self, key: str) -> list[Fields]:
        value = self._get(key, lambda v: isinstance(v, list), "a list")
        return [Fields(v, f"{self.path}.{key}[{i}]") for i, v in enumerate(value or [])]

    def present(self, key: str) -> bool:
        """Set to something other than null, zero, false or empty."""
        return bool(self.value(key))


def _kind(value: object) -> str:
    return type(value).__name__.replace("NoneType", "null")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# ---- create ---------------------------------------------------------------------------

# HostConfig settings boxd has no way to honour: refused when set, so a client never
# believes it got one.
_REFUSED_HOST = (
    "DeviceRequests",
    # --storage-opt size=...: a quota of the container's layer, which overlay on this kind
    # of file system cannot give (Docker's overlay2 needs xfs with pquota): ignored, it was
    # a limit the user believed in.
    "StorageOpt",
)
_NETWORKS = {"": "bridge", "default": "bridge"}
# Namespace modes: the values that ask for what boxd does (a container's own namespace of
# each kind, no user namespace), and what a refusal says boxd does instead.
_USERNS_PRIVATE = "private"
# Config's Attach* flags and the stream each names.
_ATTACH_FLAGS = {"stdin": "AttachStdin", "stdout": "AttachStdout", "stderr": "AttachStderr"}


def console_size(fields: Fields, key: str) -> tuple[int, int] | None:
    """``HostConfig.ConsoleSize`` (API 1.42) or an exec's ``ConsoleSize``: [height,
    width] of the terminal from its first instruction, as (rows, columns); None when absent
    or with a 0 in it (Docker's [0, 0], unset).  Anything but two integers 0..65535 is
    refused by name."""
    value = fields.value(key)
    if value is None:
        return None
    where = f"{fields.path}.{key}"
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) for v in value):
        raise ApiError(400, f"invalid {where} {value!r}: expected [height, width], two integers")
    if not all(0 <= v <= 65535 for v in value):
        raise ApiError(
            400, f"invalid {where} {value!r}: height and width must be between 0 and 65535"
        )
    rows, cols = value
    return (rows, cols) if rows and cols else None


def container_config(
    body: dict[str, Any], *, with_console_size: bool = True, recursive_ro: bool = True
) -> ContainerConfig:
    """A ContainerConfig from the body of ``POST /containers/create``.  A stored image's
    Entrypoint, Cmd, Env, WorkingDir and User are filled in by the supervisor.
    ``with_console_size``: HostConfig.ConsoleSize is read (API 1.42 on; before, Docker
    ignores it).  Without ``recursive_ro`` (a client of API 1.43 or older, as dockerd
    keeps it for them) a read-only bind is read-only at its top only, as before
    ``ReadOnlyNonRecursive`` and ``ReadOnlyForceRecursive`` came."""
    cfg = Fields(body, "Config")
    host = cfg.object("HostConfig")
    size = console_size(host, "ConsoleSize") if with_console_size else None
    image = cfg.text("Image")
    if not image:
        raise ApiError(400, "no image given (Config.Image is empty)")
    entrypoint = cfg.command("Entrypoint")
    command = cfg.command("Cmd") or []
    if entrypoint == [""]:  # --entrypoint "": none, and not the image's Cmd (Docker's reset)
        entrypoint = []
    if is_default(image):  # no image configuration: the command is all there is
        image, command, entrypoint = "default", (entrypoint or []) + command, None
    for key in _REFUSED_HOST:
        if host.present(key):
            if key == "DeviceRequests":  # what docker run --gpus sends
                raise ApiError(400, f"HostConfig.{key} (--gpus) is not supported by boxd: it"
                               " has no device drivers")  # fmt: skip
            raise ApiError(400, f"HostConfig.{key} is not supported by boxd")
    if (driver := host.text("VolumeDriver")) not in ("", "local"):  # --volume-driver
        from .._volumes import NoSuchDriver

        raise NoSuchDriver(driver)  # 404, as dockerd's for a plugin it has not
    log_driver, log_max_size, log_max_files, log_options = _log_config(host.object("LogConfig"))
    network = _NETWORKS.get(host.text("NetworkMode"), host.text("NetworkMode"))
    if cfg.flag("NetworkDisabled"):  # docker-py's network_disabled: loopback only
        if network not in ("bridge", "none"):
            raise ApiError(
                400,
                f"Config.NetworkDisabled conflicts with HostConfig.NetworkMode {network!r}:"
                " a container without networking has its loopback only",
            )
        network = "none"
    aliases, endpoint_links, joins = _endpoints(cfg, network)
    userns_mode = host.text("UsernsMode")
    ports = tuple(_port_specs(host))
    links = dict.fromkeys(_link(text) for text in (*host.strings("Links"), *endpoint_links))
    restart = host.object("RestartPolicy")
    stop_timeout = cfg._get("StopTimeout", _is_int, "an integer")
    try:
        raw_check = body.get("Healthcheck")
        healthcheck = (
            None if raw_check is None else healthcheck_from_api(raw_check, "Config.Healthcheck")
        )
        config = ContainerConfig(
            image=image,
            command=tuple(command),
            entrypoint=None if entrypoint is None else tuple(entrypoint),
            env=tuple(cfg.strings("Env")),
            workdir=cfg.text("WorkingDir"),
            user=cfg.text("User"),
            hostname=cfg.text("Hostname"),
            domainname=cfg.text("Domainname"),
            pid_mode=host.text("PidMode"),
            ipc_mode=host.text("IpcMode"),
            uts_mode=host.text("UTSMode"),
            cgroupns_mode=host.text("CgroupnsMode"),
            tty=cfg.flag("Tty"),
            console_size=size,
            interactive=cfg.flag("OpenStdin"),
            stdin_once=cfg.flag("StdinOnce"),
            network=network,
            network_aliases=aliases,
            links=tuple(links),
            networks=joins,
            dns=tuple(host.strings("Dns")),
            dns_search=tuple(host.strings("DnsSearch")),
            dns_options=tuple(host.strings("DnsOptions")),
            # The host's network: Docker discards them (see warnings).
            ports=() if network == "host" else ports,
            publish_all=host.flag("PublishAllPorts") and network != "host",
            expose=tuple(cfg.mapping_keys("ExposedPorts")),
            volumes=tuple(_volumes(host, cfg.mapping_keys("Volumes"), recursive_ro)),
            volumes_from=tuple(host.strings("VolumesFrom")),
            read_only=host.flag("ReadonlyRootfs"),
            tmpfs=tuple(_tmpfs(host)),
            shm_size=host.integer("ShmSize") or None,
            group_add=tuple(host.strings("GroupAdd")),
            extra_hosts=tuple(host.strings("ExtraHosts")),
            init=host.flag("Init"),
            # 0, Docker's unset, leaves the process the daemon's own score
            oom_score_adj=host.integer("OomScoreAdj") or None,
            sysctls=tuple([f"{k}={v}" for k, v in host.mapping("Sysctls").items()]),
            devices=tuple(_devices(host)),
            device_cgroup_rules=tuple(host.strings("DeviceCgroupRules")),
            ulimits=tuple(
                [
                    Ulimit(u.text("Name"), u.integer("Soft"), u.integer("Hard"))
                    for u in host.objects("Ulimits")
                ]
            ),
            resources=_resources(host),
            security=_security(host),
            restart=restart_policy(restart.text("Name"), restart.integer("MaximumRetryCount")),
            stop_signal=cfg.text("StopSignal") or "SIGTERM",
            stop_timeout=None if stop_timeout is None else float(stop_timeout),
            auto_remove=host.flag("AutoRemove"),
            labels=tuple([f"{k}={v}" for k, v in cfg.mapping("Labels").items()]),
            annotations=tuple([f"{k}={v}" for k, v in host.mapping("Annotations").items()]),
            runtime=host.text("Runtime") or RUNTIMES[0],
            cgroup_parent=host.text("CgroupParent"),
            log_driver=log_driver,
            log_max_size=log_max_size,
            log_max_files=log_max_files,
            log_options=log_options,
            healthcheck=healthcheck,
            image_mounts=tuple(
                [ImageMount(**m.image_fields()) for m in _api_mounts(host) if m.type == "image"]
            ),
            mount_points=tuple([m.target for m in _api_mounts(host)]),
            binds=tuple(host.strings("Binds")),
            declared_volumes=tuple(cfg.mapping_keys("Volumes")),
            security_opt=tuple(host.strings("SecurityOpt")),
            isolation=host.text("Isolation"),
            # "private" (Podman's word, and what inspect shows of one): boxd's own user
            # namespace, boxctl's --isolate-user, so that a client recreating a container
            # from its inspect (watchtower's) keeps it.
            userns=userns_mode == _USERNS_PRIVATE,
            userns_mode="" if userns_mode == _USERNS_PRIVATE else userns_mode,
            attach=tuple([s for s, key in _ATTACH_FLAGS.items() if cfg.flag(key)]),
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return config


def _devices(host: Fields) -> Iterable[DeviceMapping]:
    """``HostConfig.Devices``: ``PathOnHost``, ``PathInContainer`` (default: the same),
    ``CgroupPermissions`` (default ``rwm``)."""
    for device in host.objects("Devices"):
        path = device.text("PathOnHost")
        yield DeviceMapping(
            path,
            device.text("PathInContainer") or path,
            device.text("CgroupPermissions") or DEFAULT_PERMISSIONS,
        )


# Docker's other log drivers: boxd knows them and says it has them not; another name is one
# Docker has not either, and gets Docker's words.
_DOCKER_LOG_DRIVERS = frozenset(
    ("syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs", "gcplogs",
     "logentries")
)  # fmt: skip


def _log_config(log: Fields) -> tuple[str, int | None, int | None, tuple[str, ...]]:
    """``HostConfig.LogConfig`` (``--log-driver``, ``--log-opt``): json-file (Podman's
    k8s-file too), local or none (see boxd._records.LOG_DRIVERS); of the options, the
    rotation (``max-size``, in Docker's units: 1k is 1000 bytes, and ``max-file``) applies, the log
    attributes (``labels``, ``env``, ``tag``, ...: see boxd._logattrs) and Docker's
    ``mode`` and ``max-buffer-size`` are kept as given, ``compress=false`` is what boxd
    does; any other option is refused rather than dropped.  Returns (driver, max size,
    max files, the kept options as "KEY=VALUE"), None where not given."""
    driver = {"k8s-file": "json-file"}.get(log.text("Type"), log.text("Type"))
    if driver and driver not in LOG_DRIVERS and driver not in _DOCKER_LOG_DRIVERS:
        raise ApiError(400, f"logger: no log driver named {driver!r} is registered")  # Docker's
    if driver and driver not in LOG_DRIVERS:
        raise ApiError(
            400,
            f"logging driver {driver!r} is not supported by boxd"
            " (use json-file, local, syslog, journald, gelf, fluentd, splunk or none)",
        )
    options = log.mapping("Config")
    if driver == "none" and options:
        raise ApiError(400, f"unknown log opt {next(iter(options))!r} for none log driver")
    found: dict[str, int] = {}
    kept = []
    for key, value in options.items():
        if key == "max-size" and value == "-1":  # Docker's "no limit": the daemon's default
            continue
        if key in KEPT_LOG_OPTIONS or key in DRIVER_LOG_OPTIONS:
            kept.append(f"{key}={value}")  # checked with the configuration
            continue
        try:
            option = log_option(key, value, taken=CONTAINER_LOG_OPTIONS)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        found[option[0]] = option[1]
    return driver, found.get("max-size"), found.get("max-file"), tuple(kept)


def _port_specs(host: Fields) -> Iterable[PortSpec]:
    """``HostConfig.PortBindings``: ``{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}``;
    an empty or missing HostPort is an ephemeral port, ``8000-8010`` the first free one."""
    bindings = host._get("PortBindings", lambda v: isinstance(v, dict), "an object") or {}
    for key, hosts in bindings.items():
        port, _, protocol = str(key).partition("/")
        if not port.isdigit():
            raise ApiError(400, f"invalid HostConfig.PortBindings key {key!r}: use PORT/tcp")
        where = f"HostConfig.PortBindings[{key}]"
        if hosts is not None and not isinstance(hosts, list):
            raise ApiError(400, f"invalid {where}: expected a list, got {hosts!r}")
        for i, binding in enumerate(hosts or [{}]):
            b = Fields(binding, f"{where}[{i}]")
            low, _, high = b.text("HostPort").partition("-")
            if not (low or "0").isdigit() or not (high or "0").isdigit():
                raise ApiError(400, f"invalid {where}[{i}].HostPort {b.text('HostPort')!r}")
            yield PortSpec(
                container_port=int(port),
                protocol=protocol or "tcp",
                host_ip=b.text("HostIp"),
                host_port=int(low or 0),
                host_port_end=int(high or 0),
            )


def _link(text: str) -> str:
    """One of ``HostConfig.Links`` (``NAME:ALIAS``, ``NAME``, or the ``/NAME:/C/ALIAS``
    Docker shows) as ``NAME:ALIAS``, checked as Docker's ParseLink does."""
    if not text:
        raise ApiError(400, "empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2:
        raise ApiError(400, f"bad format for links: {text}")
    name = parts[0].lstrip("/")
    alias = parts[-1].rpartition("/")[2]
    return f"{name}:{alias}"


def _endpoints(
    cfg: Fields, network: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[NetworkJoin, ...] | None]:
    """``NetworkingConfig.EndpointsConfig``: the aliases and links (as ``HostConfig.Links``,
    which compose v2 sends here) on the container's own network, and, when it names more
    networks (API 1.44), an address (``IPAMConfig``) or a MAC address (``MacAddress``, or
    the container's own before API 1.44), every network the container joins, its own
    first (the links of another network kept with its join, as ``network connect``'s)."""
    endpoints = cfg.object("NetworkingConfig").object("EndpointsConfig")
    joins: dict[str, NetworkJoin] = {}
    links: tuple[str, ...] = ()
    for name in endpoints.data:
        endpoint = endpoints.object(name)
        net = _NETWORKS.get(name, name)
        main = net == network
        if main:
            links = tuple(endpoint.strings("Links"))
        where = f"EndpointsConfig[{name!r}]"
        joins[net] = endpoint_join(endpoint, where, net, main=main)
    own = joins.pop(network, NetworkJoin(network))
    if own.mac and cfg.text("MacAddress") and _mac(cfg.text("MacAddress")) != own.mac:
        raise ApiError(
            400,
            f"Config.MacAddress {cfg.text('MacAddress')!r} differs from "
            f"EndpointsConfig[{network!r}].MacAddress {own.mac!r}: the container-wide MAC "
            "address must match the endpoint-specific MAC address for the main network, "
            "or be left empty",
        )
    if not own.mac and cfg.text("MacAddress"):
        own = attrs.evolve(own, mac=_mac(cfg.text("MacAddress")))
    if not (
        joins or own.ip or own.ip6 or own.mac or own.driver_opts or own.gw_priority
        or own.link_local_ips
    ):  # fmt: skip
        return own.aliases, links, None
    if network in ("host", "none") or network.startswith("container:"):
        what = f"be on {next(iter(joins))!r}" if joins else "have an address or MAC of its own"
        raise ApiError(400, f"the container's network is {network!r}: it cannot {what}")
    return own.aliases, links, (own, *joins.values())


def endpoint_join(
    endpoint: Fields, where: str, network: str, *, main: bool = False, early_mac: bool = True
) -> NetworkJoin:
    """An endpoint's settings (``network connect``'s ``EndpointConfig``, each of a create's
    ``EndpointsConfig``; ``where`` names it in a refusal) as the join of ``network``.
    ``main``: the container's own network, whose ``Links`` are the container's links (not
    kept with the join).  ``early_mac=False`` leaves the MAC address as given, for the
    daemon to check once it has found the container: dockerd's connect names a missing
    container before a bad address."""
    check_endpoint(endpoint, where)
    ipam = endpoint.object("IPAMConfig")
    mac = endpoint.text("MacAddress")
    return NetworkJoin(
        network=network,
        aliases=tuple(endpoint.strings("Aliases")),
        ip=ipam.text("IPv4Address"),
        mac=_mac(mac) if early_mac else mac,
        driver_opts=driver_opts(endpoint),
        ip6=ipam.text("IPv6Address"),
        gw_priority=endpoint.integer("GwPriority"),
        links=() if main else endpoint_links(endpoint),
        link_local_ips=tuple(ipam.strings("LinkLocalIPs")),
    )


def endpoint_links(endpoint: Fields) -> tuple[str, ...]:
    """An endpoint's ``Links``, as ``NAME:ALIAS`` (see :func:`_link`)."""
    return tuple(dict.fromkeys(_link(text) for text in endpoint.strings("Links")))


def driver_opts(endpoint: Fields) -> tuple[str, ...]:
    """An endpoint's ``DriverOpts``, as ``KEY=VALUE``."""
    return tuple([f"{k}={v}" for k, v in endpoint.mapping("DriverOpts").items()])


def check_endpoint(endpoint: Fields, where: str) -> None:
    """An endpoint's settings boxd would have to drop are refused by name instead."""
    try:
        check_driver_opts(driver_opts(endpoint), f"{where}.DriverOpts")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _mac(text: str) -> str:
    try:
        return check_mac(text) if text else ""
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _port_bindings(c: Container) -> dict[str, list[dict[str, str]]]:
    """``HostConfig.PortBindings`` as asked for at create."""
    found: dict[str, list[dict[str, str]]] = {}
    for p in c.config.ports:
        port = str(p.host_port) if p.host_port else ""
        if p.host_port_end:
            port += f"-{p.host_port_end}"
        found.setdefault(p.key, []).append({"HostIp": p.host_ip, "HostPort": port})
    return found


def network(info: NetworkInfo) -> dict[str, Any]:
    """A network as ``docker network inspect`` shows it (and ``GET /networks`` lists it);
    ``host`` and ``none`` without a bridge or addresses, as Docker's."""
    prefix = info.subnet.partition("/")[2]
    prefix6 = info.subnet6.partition("/")[2]
    pools = []
    if info.subnet:
        pools.append(
            {
                "Subnet": info.subnet,
                **_ip_range(info.ip_range),
                "Gateway": info.gateway,
                **_aux(info.aux_addresses),
            }
        )
    if info.subnet6:
        pools.append(
            {
                "Subnet": info.subnet6,
                **_ip_range(info.ip_range6),
                "Gateway": info.gateway6,
                **_aux(info.aux_addresses6),
            }
        )
    if info.driver in ("host", "null"):
        options = {}
    elif info.dns:  # a user network: the options it was created with
        options = info.options
    else:  # Docker's default network shows its bridge
        options = {"com.docker.network.bridge.name": info.bridge, **info.options}
    return {
        "Name": info.name,
        "Id": info.id,
        "Created": rfc3339(info.created_at),
        "Scope": "local",
        "Driver": info.driver,
        "EnableIPv4": info.ipv4,  # Docker 28's (API 1.48)
        "EnableIPv6": info.ipv6,
        "IPAM": {"Driver": "default", "Options": None, "Config": pools},
        "Internal": info.internal,
        "Attachable": info.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            m.id: {
                "Name": m.name,
                "EndpointID": endpoint_id(m.id, info.name) if m.running else "",
                "MacAddress": m.mac_address,
                "IPv4Address": f"{m.ip_address}/{prefix}" if m.ip_address else "",
                "IPv6Address": f"{m.ipv6_address}/{prefix6}" if m.ipv6_address else "",
            }
            for m in info.containers
        },
        "Options": options,
        "Labels": info.labels,
    }


def _ip_range(ip_range: str) -> dict[str, str]:
    """Docker shows an IPRange only when one was given."""
    return {"IPRange": ip_range} if ip_range else {}


def _aux(addresses: dict[str, str]) -> dict[str, dict[str, str]]:
    """And AuxiliaryAddresses only when there are some."""
    return {"AuxiliaryAddresses": dict(addresses)} if addresses else {}


def endpoint_id(container_id: str, network: str) -> str:
    """A connected container's ``EndpointID`` on ``network`` (its name), the same in
    container and network inspect: Docker's is its endpoint's id, which boxd keeps no
    record of."""
    return hashlib.sha256(f"boxd endpoint {container_id} {network}".encode()).hexdigest()


def _network_settings(c: Container) -> dict[str, Any]:
    """``NetworkSettings``: the ports published now (exposed ones as null) and the
    container's address on each network, while it runs."""
    cfg = c.config
    now = c.state.network
    ports: dict[str, list[dict[str, str]] | None] = {}
    if _has_ports(c):
        ports = dict.fromkeys(_exposed(c))
    for b in now.ports:
        key = f"{b.container_port}/{b.protocol}"
        ports[key] = [
            *(ports.get(key) or []),
            {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)},
        ]
    joins = {j.network: j for j in joined(cfg)}
    # A user network's links are its endpoint's, as Docker shows them (the default
    # bridge's legacy ones are HostConfig's): those made at create on the main network,
    # and each join's own (network connect's, another network's at create).
    user_links = list(cfg.links) if cfg.network != DEFAULT_NETWORK else []

    def endpoint(
        network: str, gateway: str, address: str, prefix: int, mac: str, ep: Endpoint | None
    ) -> Any:
        """Docker's EndpointSettings: the addresses asked for (IPAMConfig) and those had."""
        join = joins.get(network)
        asked: dict[str, Any] = {}
        if join is not None:
            asked = {"IPv4Address": join.ip, "IPv6Address": join.ip6}
            asked = {k: v for k, v in asked.items() if v}
            if join.link_local_ips:
                asked["LinkLocalIPs"] = list(join.link_local_ips)
        return {
            "IPAMConfig": asked or None,
            "Links": [
                *(user_links if network == cfg.network else ()),
                *(join.links if join is not None else ()),
            ]
            or None,
            "Aliases": list(join.aliases) if join is not None and join.aliases else None,
            "NetworkID": network,
            "EndpointID": endpoint_id(c.id, network) if ep is not None else "",
            "Gateway": gateway,
            "IPAddress": address,
            "IPPrefixLen": prefix,
            "IPv6Gateway": ep.ipv6_gateway if ep is not None else "",
            "GlobalIPv6Address": ep.ipv6_address if ep is not None else "",
            "GlobalIPv6PrefixLen": ep.ipv6_prefix_len if ep is not None else 0,
            "MacAddress": mac,
            "DriverOpts": dict(o.partition("=")[::2] for o in join.driver_opts)
            if join is not None and join.driver_opts
            else None,
            "GwPriority": join.gw_priority if join is not None else 0,
        }

    networks: dict[str, dict[str, Any]] = {
        e.network: {
            **endpoint(e.network, e.gateway, e.ip_address, e.prefix_len, e.mac_address, e),
            "Aliases": list(e.aliases) or None,
        }
        for e in now.endpoints
    }
    # At rest: the networks it will join, without addresses, with a MAC asked for (as
    # Docker shows them).
    for name, join in joins.items():
        networks.setdefault(name, endpoint(name, "", "", 0, join.mac, None))
    if cfg.network in ("host", "none"):  # the one it is on, as Docker lists it
        networks.setdefault(cfg.network, endpoint(cfg.network, "", "", 0, "", None))
    # Docker's deprecated top-level fields: its endpoint on the default bridge's (empty on
    # any other network, as Docker shows them before API 1.52).
    default = next((e for e in now.endpoints if e.network == DEFAULT_NETWORK), None)
    return {
        "Bridge": "",
        "SandboxID": "",
        "Ports": ports,
        "Networks": networks,
        "EndpointID": endpoint_id(c.id, DEFAULT_NETWORK) if default else "",
        "Gateway": default.gateway if default else "",
        "GlobalIPv6Address": default.ipv6_address if default else "",
        "GlobalIPv6PrefixLen": default.ipv6_prefix_len if default else 0,
        "IPAddress": default.ip_address if default else "",
        "IPPrefixLen": default.prefix_len if default else 0,
        "IPv6Gateway": default.ipv6_gateway if default else "",
        "MacAddress": default.mac_address if default else "",
    }


def with_dns_names(c: Container, settings: dict[str, Any]) -> None:
    """API 1.44's ``DNSNames`` of each endpoint of ``settings`` (inspect's
    ``NetworkSettings``): on a user network the names its DNS answers with the container's
    address, in Docker's order (name, aliases, short id, hostname, each once); none on the
    default bridge, whose DNS is the host's."""
    for name, endpoint in settings["Networks"].items():
        if not _user_network(name):
            endpoint["DNSNames"] = None
            continue
        names = (c.name, *(endpoint["Aliases"] or ()), c.short_id, c.config.hostname)
        endpoint["DNSNames"] = [n for n in dict.fromkeys(names) if n]


def with_old_aliases(c: Container, settings: dict[str, Any]) -> None:
    """Before API 1.45, inspect's ``Aliases`` of each user network's endpoint (of
    ``settings``, inspect's ``NetworkSettings``) add the short id and the hostname (each
    once), as Docker's did before ``DNSNames`` named them."""
    for name, endpoint in settings["Networks"].items():
        if _user_network(name):
            names = (*(endpoint["Aliases"] or ()), c.short_id, c.config.hostname)
            endpoint["Aliases"] = [n for n in dict.fromkeys(names) if n]


def _user_network(name: str) -> bool:
    return name not in ("bridge", "host", "none") and not name.startswith("container:")


def _has_ports(c: Container) -> bool:
    """Whether Docker would show the container's ports: only while it has its network
    (a created or stopped container shows none)."""
    return status_word(c) in ("running", "paused")


def _exposed(c: Container) -> Iterable[str]:
    """Its exposed ports, once each (the image's EXPOSE and the container's own may both
    name one)."""
    return dict.fromkeys(
        (*c.config.exposed_ports, *c.config.expose, *(p.key for p in c.config.ports))
    )


def _port_rows(c: Container) -> list[dict[str, Any]]:
    """``Ports`` of a list row: published ones with their host side, exposed ones alone."""
    if not _has_ports(c):
        return []
    rows: list[dict[str, Any]] = [
        {
            "IP": b.host_ip or "0.0.0.0",
            "PrivatePort": b.container_port,
            "PublicPort": b.host_port,
            "Type": b.protocol,
        }
        for b in c.state.network.ports
    ]
    published = {(r["PrivatePort"], r["Type"]) for r in rows}
    for key in _exposed(c):
        port, _, protocol = key.partition("/")
        if (int(port), protocol or "tcp") not in published:
            rows.append({"PrivatePort": int(port), "Type": protocol or "tcp"})
    return rows


def _volumes(host: Fields, volumes: list[str], recursive_ro: bool) -> Iterable[Volume]:
    """``Binds`` (as ``-v`` takes them: a host path, a volume's name or none), the bind
    and volume ``Mounts``, and the paths of ``Config.Volumes`` that none of them, and no
    ``Tmpfs``, covers (anonymous volumes: ``docker run -v /data``; clients also list there
    what they bind; a tmpfs there wins, as in dockerd, moby#40446)."""
    found = []
    for spec in host.strings("Binds"):
        try:
            fields = mount_specs.parse_bind(spec)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if fields["host"] and fields.get("read_only") and not recursive_ro:
            fields["recursive"] = "writable"
        found.append(_volume(fields, spec))
    for mount in _api_mounts(host):
        if mount.type in ("bind", "volume"):
            fields = mount.volume_fields()
            if mount.type == "bind" and mount.read_only and not recursive_ro:
                if mount.recursive == "readonly":
                    raise ApiError(
                        400,
                        f"{mount.what}: BindOptions.ReadOnlyForceRecursive needs API 1.44 or newer",
                    )
                fields["recursive"] = mount.recursive or "writable"
            found.append(_volume(fields, mount.what))
    taken = {os.path.normpath(v.container) for v in found}
    taken |= {os.path.normpath(m.target) for m in _api_mounts(host)}
    taken |= {os.path.normpath(path) for path in host.mapping_keys("Tmpfs")}
    for path in volumes:
        if os.path.normpath(path) not in taken:
            found.append(_volume({"host": "", "container": path}, f"Config.Volumes {path}"))
    return found


def _volume(fields: dict[str, object], what: str) -> Volume:
    source = str(fields["host"])
    if source and not source.startswith("/"):
        raise ApiError(400, f"{what}: host path {source!r} is not absolute")
    if source and not os.path.exists(source):
        raise ApiError(400, f"{what}: bind source path does not exist: {source}")
    return structure(fields, Volume)


def _api_mounts(host: Fields) -> Iterable[mount_specs.Mount]:
    """``HostConfig.Mounts`` checked by the rules ``--mount`` follows."""
    for m in host.objects("Mounts"):
        mount = mount_specs.Mount(m.path, option="mount")
        try:
            mount.type = (m.text("Type") or "volume").lower()
            mount.source = m.text("Source")
            mount.target = m.text("Target")
            mount.read_only = m.flag("ReadOnly")
            options = {family: m.object(f"{family}Options") for family in _MOUNT_FAMILIES}
            for family, given in options.items():
                if any(given.data.values()):
                    mount.given.add(family.lower())
            binds, volumes, image, tmpfs = options.values()
            if image.text("Subpath"):  # API 1.48
                mount.set_subpath(image.text("Subpath"), "image")
            if binds.text("Propagation"):
                mount.set_propagation(binds.text("Propagation"))
            _recursion(mount, binds)
            mount.nocopy = volumes.flag("NoCopy")
            if volumes.text("Subpath"):  # API 1.45
                mount.set_subpath(volumes.text("Subpath"))
            driver = volumes.object("DriverConfig")
            mount.set_driver(driver.text("Name"))
            for key, value in driver.mapping("Options").items():
                mount.set_volume_opt(f"{key}={value}")
            if tmpfs.integer("SizeBytes"):
                mount.tmpfs_options.append(f"size={tmpfs.integer('SizeBytes')}")
            if tmpfs.integer("Mode"):
                mount.set_tmpfs_mode(f"{tmpfs.integer('Mode'):o}")
            mount.tmpfs_options += _tmpfs_flags(mount, tmpfs)
            mount.check()
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        yield mount


# HostConfig.Mounts' option objects (BindOptions, ...), by the mount type each is for.
_MOUNT_FAMILIES = ("Bind", "Volume", "Image", "Tmpfs")
# TmpfsOptions.Options (API 1.46): the flags dockerd takes there.
_TMPFS_FLAGS = ("exec", "noexec")


def _tmpfs_flags(mount: mount_specs.Mount, tmpfs: Fields) -> list[str]:
    """``TmpfsOptions.Options`` (API 1.46): ``[["noexec"]]``, a flag per list of one, as
    dockerd takes them (only ``exec`` and ``noexec``), in its words when refused."""
    found = []
    options = tmpfs._get(
        "Options", lambda v: isinstance(v, list) and all(map(_is_strings, v)), "lists of strings"
    )
    for option in options or []:
        if not 1 <= len(option) <= 2:
            raise mount.error(f"TmpfsOptions.Options {option!r}: invalid option array length")
        if option[0] not in _TMPFS_FLAGS:
            raise mount.error(f"TmpfsOptions.Options {option!r}: invalid option: {option[0]}")
        found.append("=".join(option))
    return found


def _recursion(mount: mount_specs.Mount, binds: Fields) -> None:
    """``BindOptions``' NonRecursive, ReadOnlyNonRecursive and ReadOnlyForceRecursive as
    ``bind-recursive`` (disabled, writable, readonly), in dockerd's words when they
    conflict."""
    force = binds.flag("ReadOnlyForceRecursive")
    top_only = binds.flag("ReadOnlyNonRecursive")
    if top_only and force:
        raise mount.error("mount options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive")
    for flag, name in ((top_only, "ReadOnlyNonRecursive"), (force, "ReadOnlyForceRecursive")):
        if flag and not mount.read_only:
            raise mount.error(f"options conflict: Writable && {name}")
    if binds.flag("NonRecursive"):
        mount.recursive = "disabled"
    elif top_only or force:
        mount.recursive = "writable" if top_only else "readonly"


def _tmpfs(host: Fields) -> Iterable[str]:
    for path, options in host.mapping("Tmpfs").items():
        yield f"{path}:{options}" if options else path
    for mount in _api_mounts(host):
        if mount.type == "tmpfs":
            yield mount.tmpfs_spec()


def resources(host: Fields) -> Resources:
    return _resources(host)


def _resources(host: Fields) -> Resources:
    memory = host.integer("Memory")
    swap = host.integer("MemorySwap")
    nano = host.integer("NanoCpus")
    pids = host.integer("PidsLimit")
    for key, value in (
        ("Memory", memory),
        ("NanoCpus", nano),
        ("CpuShares", host.integer("CpuShares")),
    ):
        if value < 0:
            raise ApiError(400, f"invalid HostConfig.{key} {value}: must not be negative")
    return Resources(
        memory=memory or None,
        memory_swap=swap or None,
        cpus=nano / 1e9 if nano else None,
        cpu_shares=host.integer("CpuShares") or None,
        # -1: no limit.  A PidsLimit given as 0 is no limit too, as dockerd reads it (the
        # clients send none when not asked): absent or null, boxd's default one.
        pids_limit=pids if pids > 0 else (None if host.value("PidsLimit") is None else -1),
        cpuset_cpus=host.text("CpusetCpus") or None,
        **_more_resources(host),
    )


# HostConfig's integer resources and their Resources fields: 0 (and null) is unset.
_INTEGERS = {
    "MemoryReservation": "memory_reservation",
    "CpuPeriod": "cpu_period",
    "CpuQuota": "cpu_quota",
    "CpuRealtimePeriod": "cpu_rt_period",
    "CpuRealtimeRuntime": "cpu_rt_runtime",
    "BlkioWeight": "blkio_weight",
}
_DEVICE_RATES = {
    "BlkioWeightDevice": ("blkio_weight_device", "Weight"),
    "BlkioDeviceReadBps": ("device_read_bps", "Rate"),
    "BlkioDeviceWriteBps": ("device_write_bps", "Rate"),
    "BlkioDeviceReadIOps": ("device_read_iops", "Rate"),
    "BlkioDeviceWriteIOps": ("device_write_iops", "Rate"),
}


def _more_resources(host: Fields) -> dict[str, Any]:
    """Docker's other resource fields (see boxd._resources); KernelMemory is accepted and
    ignored (:func:`warnings`)."""
    out: dict[str, Any] = {}
    for key, field in _INTEGERS.items():
        if host.integer(key):
            out[field] = host.integer(key)
    swappiness = host._get("MemorySwappiness", _is_int, "an integer")
    if swappiness is not None and swappiness != -1:
        out["memory_swappiness"] = swappiness
    if host._get("OomKillDisable", lambda v: isinstance(v, bool), "a boolean"):
        out["oom_kill_disable"] = True
    if host.text("CpusetMems"):
        out["cpuset_mems"] = host.text("CpusetMems")
    for key, (field, value_key) in _DEVICE_RATES.items():
        rows = host.objects(key)
        if rows:
            out[field] = tuple([DeviceRate(r.text("Path"), r.integer(value_key)) for r in rows])
    return out


def warnings(host: Fields) -> list[str]:
    """What create and update tell a client of the HostConfig alone (the host's own are
    :meth:`Supervisor.limit_warnings`)."""
    found = []
    if host.integer("KernelMemory"):
        found.append(
            "KernelMemory is deprecated (kernels no longer limit kernel memory apart): ignored"
        )
    if host.text("NetworkMode") == "host" and host.value("PortBindings"):
        found.append("Published ports are discarded when using host network mode")  # Docker's
    return found


def _device_rates(rates: tuple[DeviceRate, ...] | None, key: str) -> list[dict[str, Any]]:
    return [{"Path": r.path, key: r.rate} for r in rates or ()]


def _system_paths(sec: Security) -> dict[str, list[str] | None]:
    """MaskedPaths and ReadonlyPaths as applied: none for a privileged container."""
    paths = _masks.applied(sec)
    if paths is None:
        return {"MaskedPaths": None, "ReadonlyPaths": None}
    return {"MaskedPaths": list(paths[0]), "ReadonlyPaths": list(paths[1])}


def _seccomp_profile(text: str) -> str:
    """``seccomp=PROFILE``: the profile's JSON itself, as the docker CLI sends the file it
    read; a 400 naming what is wrong in it."""
    try:
        _seccomp.profile_from_docker(json.loads(text))
    except ValueError as exc:  # json's too
        raise ApiError(400, f"invalid --security-opt seccomp profile: {exc}") from None
    return text


def _security(host: Fields) -> Security:
    no_new_privileges = True
    seccomp = "default"
    # null: Docker's defaults; [] (the docker CLI's --security-opt systempaths=unconfined)
    # or a list of the client's own.
    masked = None if host.value("MaskedPaths") is None else tuple(host.strings("MaskedPaths"))
    readonly = None if host.value("ReadonlyPaths") is None else tuple(host.strings("ReadonlyPaths"))
    for opt in host.strings("SecurityOpt"):
        key, sep, value = _secopt.split(opt)
        try:
            nothing = _secopt.asks_for_nothing(key, value)
        except ValueError as exc:
            raise ApiError(400, f"invalid SecurityOpt {opt!r}: {exc}") from None
        if nothing:
            pass  # what boxd does anyway: dockerd takes them on a host without either
        elif key == "no-new-privileges" and value in ("", "true", "false"):
            no_new_privileges = value != "false"
        elif key == "seccomp" and value in ("unconfined", "default"):
            seccomp = value
        elif key == "seccomp" and sep:
            seccomp = _seccomp_profile(value)
        elif key == "systempaths" and value == "unconfined":
            masked = readonly = ()
        else:
            raise ApiError(
                400,
                f"invalid SecurityOpt {opt!r}: use no-new-privileges, seccomp=unconfined or"
                " a profile, systempaths=unconfined, apparmor=unconfined or label=disable",
            )
    return Security(
        privileged=host.flag("Privileged"),
        cap_add=tuple(host.strings("CapAdd")),
        cap_drop=tuple(host.strings("CapDrop")),
        no_new_privileges=no_new_privileges,
        seccomp=seccomp,
        masked_paths=masked,
        readonly_paths=readonly,
    )


def restart_policy(name: str, retries: int) -> RestartPolicy:
    if name in ("", "no"):
        return RestartPolicy()
    try:
        policy = RestartPolicy.parse(name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if retries:
        if policy.name is not RestartName.ON_FAILURE or retries < 0:
            raise ApiError(400, f"invalid MaximumRetryCount {retries} for restart policy {name}")
        policy = attrs.evolve(policy, max_retries=retries)
    return policy


# ---- inspect and list -----------------------------------------------------------------


def image_id(c: Container) -> str:
    return c.config.image_id or DEFAULT_ID


def familiar(ref: str) -> str:
    """``docker.io/library/busybox:latest`` as Docker shows it: ``busybox:latest``."""
    try:
        return parse_reference(ref, default_tag=False).familiar
    except ValueError:
        return ref


def _host_config(c: Container) -> dict[str, Any]:
    cfg = c.config
    res = cfg.resources
    seccomp = cfg.security.seccomp
    binds = list(cfg.binds) if cfg.binds is not None else _binds(cfg)
    legacy = cfg.network == DEFAULT_NETWORK
    links = _links.shown(c) if legacy else list(cfg.links)
    return {
        "Binds": binds or None,
        "ContainerIDFile": "",  # the docker CLI's own file: the daemon never sees it
        "VolumeDriver": "",
        "VolumesFrom": list(cfg.volumes_from) or None,
        "Links": links or None,
        "NetworkMode": cfg.network,
        # Lists, as the docker CLI sends them (never null): scripts index them.
        "Dns": list(cfg.dns),
        "DnsOptions": list(cfg.dns_options),
        "DnsSearch": list(cfg.dns_search),
        "Cgroup": "",
        "PidMode": _nsmodes.docker_mode("pid", cfg.pid_mode),
        "IpcMode": _nsmodes.docker_mode("ipc", cfg.ipc_mode),
        "UTSMode": _nsmodes.docker_mode("uts", cfg.uts_mode),
        "CgroupnsMode": cfg.cgroupns_mode or "private",  # boxd's default on every host
        "UsernsMode": _USERNS_PRIVATE if cfg.userns else cfg.userns_mode,
        "Isolation": cfg.isolation,
        "PortBindings": _port_bindings(c),
        "PublishAllPorts": cfg.publish_all,
        "RestartPolicy": {
            "Name": cfg.restart.name.value,
            "MaximumRetryCount": cfg.restart.max_retries,
        },
        "AutoRemove": cfg.auto_remove,
        "Privileged": cfg.security.privileged,
        "ReadonlyRootfs": cfg.read_only,
        "CapAdd": list(cfg.security.cap_add) or None,
        "CapDrop": list(cfg.security.cap_drop) or None,
        # As given; a record of a configuration that has none of them: its seccomp.
        "SecurityOpt": list(cfg.security_opt)
        or ([f"seccomp={seccomp}"] if seccomp != "default" else None),
        **_system_paths(cfg.security),
        "Tmpfs": dict(
            t.partition(":")[::2]
            for t in cfg.tmpfs
            if not _given_as_mount(cfg, t.partition(":")[0])
        )
        or None,
        "ShmSize": cfg.shm_size or 64 << 20,
        "GroupAdd": list(cfg.group_add) or None,
        "ExtraHosts": list(cfg.extra_hosts) or None,
        "Init": cfg.init or None,
        "Sysctls": dict(x.partition("=")[::2] for x in cfg.sysctls) or None,
        "Devices": [
            {
                "PathOnHost": d.host,
                "PathInContainer": d.container,
                "CgroupPermissions": d.permissions,
            }
            for d in cfg.devices
        ],
        "DeviceCgroupRules": list(cfg.device_cgroup_rules) or None,
        "DeviceRequests": None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in cfg.ulimits] or None,
        "Memory": res.memory or 0,
        "MemorySwap": res.memory_swap or 0,
        "NanoCpus": round((res.cpus or 0) * 1e9),
        "CpuShares": res.cpu_shares or 0,
        "PidsLimit": res.pids_limit,
        "CpusetCpus": res.cpuset_cpus or "",
        "CpusetMems": res.cpuset_mems or "",
        "CpuPeriod": res.cpu_period or 0,
        "CpuQuota": res.cpu_quota or 0,
        "CpuRealtimePeriod": res.cpu_rt_period or 0,
        "CpuRealtimeRuntime": res.cpu_rt_runtime or 0,
        "MemoryReservation": res.memory_reservation or 0,
        "MemorySwappiness": res.memory_swappiness,
        "OomKillDisable": bool(res.oom_kill_disable),
        "OomScoreAdj": cfg.oom_score_adj or 0,
        "KernelMemory": 0,
        "ConsoleSize": list(cfg.console_size or (0, 0)),
        # Windows' limits, zero on Linux as in Docker's.
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "BlkioWeight": res.blkio_weight or 0,
        **{
            key: _device_rates(getattr(res, field), value_key) or None
            for key, (field, value_key) in _DEVICE_RATES.items()
        },
        "LogConfig": {"Type": cfg.log_driver or "json-file", "Config": _log_options(cfg)},
        "Runtime": cfg.runtime,
        "CgroupParent": cfg.cgroup_parent,
        **_annotations(cfg),
        **_host_mounts(cfg),
    }


def _binds(cfg: ContainerConfig) -> list[str]:
    """``HostConfig.Binds`` of a configuration that did not keep them as given: each volume
    not given as a mount, as ``-v`` would name it."""
    binds = []
    for v in cfg.volumes:
        if _given_as_mount(cfg, v.container):
            continue
        given = (("ro", v.read_only), ("noexec", v.noexec), (v.propagation, v.propagation))
        opts = ",".join(o for o, on in given if on)
        binds.append(f"{v.volume or v.host}:{v.container}" + (f":{opts}" if opts else ""))
    return binds


def _bind_modes(cfg: ContainerConfig) -> dict[str, str]:
    """The mode field (``ro,Z`` of ``-v SRC:DST:ro,Z``, "" without one) of each bind given
    with a source, by its container path."""
    binds = list(cfg.binds) if cfg.binds is not None else _binds(cfg)
    fields = [b.split(":", 2) for b in binds]
    return {os.path.normpath(f[1]): f[2] if len(f) > 2 else "" for f in fields if len(f) > 1}


def _given_as_mount(cfg: ContainerConfig, path: str) -> bool:
    """Whether the volume or tmpfs at ``path`` was given as a mount (HostConfig.Mounts)."""
    return os.path.normpath(path) in {os.path.normpath(p) for p in cfg.mount_points}


def _tmpfs_mounts(cfg: ContainerConfig) -> list[tuple[str, str]]:
    """The (path, options) of the tmpfs given as mounts."""
    found = [t.partition(":")[::2] for t in cfg.tmpfs]
    return [(path, options) for path, options in found if _given_as_mount(cfg, path)]


# Volume.recursive -> the BindOptions flag that asks for it.
_BIND_RECURSION = {
    "disabled": "NonRecursive",
    "writable": "ReadOnlyNonRecursive",
    "readonly": "ReadOnlyForceRecursive",
}


def _host_mounts(cfg: ContainerConfig) -> dict[str, list[dict[str, Any]]]:
    """``HostConfig.Mounts`` in the shape a client sends them, left out when there are none,
    as Docker leaves it."""
    mounts: list[dict[str, Any]] = []
    for v in cfg.volumes:
        if not _given_as_mount(cfg, v.container):
            continue
        mount: dict[str, Any] = {"Type": "volume" if v.volume else "bind"}
        mount.update(Source=v.volume or v.host, Target=v.container)
        if v.read_only:
            mount["ReadOnly"] = True
        if v.nocopy:
            mount["VolumeOptions"] = {"NoCopy": True}
        bind: dict[str, str | bool] = {"Propagation": v.propagation} if v.propagation else {}
        bind |= {_BIND_RECURSION[v.recursive]: True} if v.recursive else {}
        if bind:
            mount["BindOptions"] = bind
        if v.subpath:
            mount["VolumeOptions"] = {**mount.get("VolumeOptions", {}), "Subpath": v.subpath}
        mounts.append(mount)
    for m in cfg.image_mounts:
        image: dict[str, Any] = {"Type": "image", "Source": m.image, "Target": m.target}
        if m.subpath:
            image["ImageOptions"] = {"Subpath": m.subpath}
        mounts.append(image)
    for path, options in _tmpfs_mounts(cfg):
        mount = {"Type": "tmpfs", "Target": path}
        tmpfs: dict[str, Any] = {}
        for option in options.split(",") if options else ():
            key, _, value = option.partition("=")
            if key == "ro":
                mount["ReadOnly"] = True
            elif key in _TMPFS_FLAGS:
                tmpfs.setdefault("Options", []).append([key])
            elif key == "size" and value.isdigit():  # bytes, as a mount gives them
                tmpfs["SizeBytes"] = int(value)
            elif key == "mode" and value and set(value) <= set("01234567"):
                tmpfs["Mode"] = int(value, 8)
        if tmpfs:
            mount["TmpfsOptions"] = tmpfs
        mounts.append(mount)
    return {"Mounts": mounts} if mounts else {}


def _annotations(cfg: ContainerConfig) -> dict[str, dict[str, str]]:
    """``HostConfig.Annotations``, left out when there are none, as Docker leaves it."""
    if not cfg.annotations:
        return {}
    return {"Annotations": dict(a.partition("=")[::2] for a in cfg.annotations)}


def _log_options(cfg: ContainerConfig) -> dict[str, str]:
    """The container's own log rotation and kept options as ``--log-opt`` spells them (the
    daemon's default rotation where it has none, as Docker shows only what was given)."""
    options = {}
    if cfg.log_max_size is not None:
        options["max-size"] = format_log_size(cfg.log_max_size)
    if cfg.log_max_files is not None:
        options["max-file"] = str(cfg.log_max_files)
    options |= dict(option.split("=", 1) for option in cfg.log_options)
    return options


def _mounts(c: Container) -> list[dict[str, Any]]:
    """``Mounts`` of inspect and of the list: binds and volumes."""
    rows = []
    modes = _bind_modes(c.config)
    for v in c.config.volumes:
        row: dict[str, Any] = {"Type": "volume" if v.volume else "bind"}
        if v.volume:
            row["Name"] = v.volume
        # Cleaned, as Docker's: -v /src/:/dst/ is shown as /src and /dst (Binds as given).
        row.update(Source=v.host and mount_specs.clean_path(v.host))
        row.update(Destination=mount_specs.clean_path(v.container))
        if v.volume:
            row["Driver"] = "local"
        # Docker's: -v's mode field as given; "z" for a named volume of the local driver
        # without one, and for a volume mount (moby's setBindModeIfNull); else none.
        mode = modes.get(os.path.normpath(v.container))
        if mode is None:  # an anonymous volume, the image's, another container's, a mount
            mode = "z" if v.volume and _given_as_mount(c.config, v.container) else ""
        elif v.volume and not mode:
            mode = "z"
        row.update(
            Mode=mode,
            RW=not v.read_only,
            Propagation="" if v.volume else v.propagation or "rprivate",
        )
        rows.append(row)
    for m in c.config.image_mounts:  # as dockerd lists them, but for the layer's path
        rows.append(
            {"Type": "image", "Name": m.image, "Source": "", "Destination": m.target,
             "Mode": "", "RW": False, "Propagation": "rprivate"}
        )  # fmt: skip
    for path, options in _tmpfs_mounts(c.config):  # a --tmpfs is not listed, as by Docker
        read_only = "ro" in options.split(",")
        path = mount_specs.clean_path(path)
        rows.append(
            {"Type": "tmpfs", "Source": "", "Destination": path, "Mode": "",
             "RW": not read_only, "Propagation": ""}
        )  # fmt: skip
    return rows


def inspect(
    c: Container,
    exec_ids: list[str],
    log_path: str = "",
    etc_paths: tuple[str, str, str] = ("", "", ""),
    graph_driver: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``docker inspect``'s object (``log_path``: its ``LogPath``, where the daemon writes
    the log; ``etc_paths``: its ``ResolvConfPath``, ``HostnamePath`` and ``HostsPath``;
    ``graph_driver``: its ``GraphDriver.Data``)."""
    cfg = c.config
    st = c.state
    # The container runs entrypoint + command (boxd._images.config); Docker shows them apart.
    entrypoint = list(cfg.entrypoint or ())
    word = status_word(c)
    return {
        "Id": c.id,
        "Created": rfc3339(c.created_at),
        "Path": cfg.command[0],
        "Args": list(cfg.command[1:]),
        "State": {
            "Status": word,
            "Running": word in ("running", "paused", "restarting"),
            "Paused": word == "paused",
            "Restarting": word == "restarting",
            "OOMKilled": st.oom_killed,
            "Dead": False,
            "Pid": st.pid,
            "ExitCode": st.exit_code or 0,
            "Error": st.error,
            "StartedAt": rfc3339(st.started_at),
            "FinishedAt": rfc3339(st.finished_at),
            **_health(c),
        },
        "Image": image_id(c),
        "ResolvConfPath": etc_paths[0],
        "HostnamePath": etc_paths[1],
        "HostsPath": etc_paths[2],
        "LogPath": log_path,
        "Name": "/" + c.name,
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": _host_config(c),
        "GraphDriver": {"Name": "overlay2", "Data": graph_driver},
        "Mounts": _mounts(c),
        "Config": {
            "Hostname": _nsmodes.hostname(c),
            "Domainname": _nsmodes.domainname(c),
            "User": cfg.user,
            **{key: stream in cfg.attach for stream, key in _ATTACH_FLAGS.items()},
            "Tty": cfg.tty,
            "OpenStdin": cfg.interactive,
            "StdinOnce": cfg.stdin_once,
            "Env": list(cfg.env),
            "Cmd": list(cfg.command[len(entrypoint) :]) or None,
            "Image": familiar(cfg.image),
            "Volumes": {path: {} for path in cfg.declared_volumes} or None,
            "WorkingDir": cfg.workdir or "/",
            "Entrypoint": entrypoint or None,
            "ExposedPorts": {p: {} for p in (*cfg.exposed_ports, *cfg.expose)} or None,
            "OnBuild": None,
            "Labels": labels(c),
            "StopSignal": cfg.stop_signal,
            # omitted unless set, as Docker's
            **({} if cfg.stop_timeout is None else {"StopTimeout": round(cfg.stop_timeout)}),
            **(
                {"Healthcheck": healthcheck_to_api(cfg.healthcheck)}
                if cfg.healthcheck is not None
                else {}
            ),
        },
        "NetworkSettings": _network_settings(c),
        # boxd's own, beside Docker's keys (clients ignore keys they do not know): the
        # phase (stopped and exited apart) and the end-of-run summary (wall, CPU, peak).
        "Boxd": {"Phase": st.status.value, "Summary": unstructure(st.summary)},
    }


def _health(c: Container) -> dict[str, Any]:
    """``State.Health``, for a container that has run with a health check."""
    health = c.state.health
    if health is None:
        return {}
    return {
        "Health": {
            "Status": health.status,
            "FailingStreak": health.failing_streak,
            "Log": [
                {
                    "Start": rfc3339(r.start),
                    "End": rfc3339(r.end),
                    "ExitCode": r.exit_code,
                    "Output": r.output,
                }
                for r in health.log
            ],
        }
    }


def status_text(c: Container, now: float) -> str:
    st = c.state
    word = status_word(c)
    if word in ("running", "paused"):
        up = "Up " + _human.duration(now - (st.started_at or now))
        if word == "paused":
            return up + " (Paused)"
        return up + health_suffix(st.health.status) if st.health is not None else up
    if word == "created":
        return "Created"
    if word == "restarting":
        return (
            f"Restarting ({st.exit_code or 0}) {_human.duration(now - (st.finished_at or now))} ago"
        )
    if word == "removing":
        return "Removal In Progress"
    return f"Exited ({st.exit_code or 0}) {_human.duration(now - (st.finished_at or now))} ago"


def summary(c: Container, now: float) -> dict[str, Any]:
    """One row of ``GET /containers/json``."""
    cfg = c.config
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": familiar(cfg.image),
        "ImageID": image_id(c),
        "Command": command_line(cfg.command),
        "Created": int(c.created_at),
        "Ports": _port_rows(c),
        "Labels": labels(c),
        "State": status_word(c),
        "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": cfg.network, **_annotations(cfg)},  # those: API 1.46
        "NetworkSettings": {"Networks": _network_settings(c)["Networks"]},
        "Mounts": _mounts(c),
    }


# ---- list filters ---------------------------------------------------------------------


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """``filters`` as JSON: ``{"key": ["v", ...]}`` or the old ``{"key": {"v": true}}``;
    ``null`` (a script's ``json.dumps(None)``) is none, as Docker reads it."""
    import json

    if not text:
        return {}
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"invalid filters {text!r}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, f"invalid filters {text!r}: expected a JSON object")
    found: dict[str, list[str]] = {}
    for key, value in raw.items():
        if _is_strings(value) or (
            isinstance(value, dict) and all(isinstance(v, str) for v in value)
        ):
            found[key] = list(value)
        else:
            raise ApiError(400, f"invalid filter {key!r}: expected a list of strings")
    return found

"""The daemon's configuration file (``--config-file``, default ``/etc/boxd/daemon.json``):
Docker's ``daemon.json`` keys where boxd has the setting, and boxd's own options under
their flags' names.

A key also given as a flag is refused, as dockerd refuses it ("specified both as a flag
and in the configuration file"), and so is a key boxd does not know, named: a setting
that is silently dropped is a setting the user thinks they have.  Sans-IO but for
:func:`read`: the parsed JSON in, the options' values out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ._records import check_kept_log_options
from ._ulimits import check_ulimit, parse_ulimit
from ._units import (
    CONTAINER_LOG_OPTIONS,
    DRIVER_LOG_OPTIONS,
    KEPT_LOG_OPTIONS,
    MTU_RANGE,
    log_option,
    parse_mtu,
)

DEFAULT_PATH = Path("/etc/boxd/daemon.json")

# dockerd's log levels (--log-level and the file's), by the level boxd logs at.
LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning"}
LEVELS |= {"error": "error", "fatal": "error"}


class ConfigError(ValueError):
    """A configuration file boxd cannot follow; the message names the file and the key."""


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, not {json.dumps(value)}")
    return value


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {json.dumps(value)}")
    return value


def _strings(key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of strings, not {json.dumps(value)}")
    return list(value)


def _count(key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a number of 1 or more, not {json.dumps(value)}")
    return value


def _mtu(key: str, value: object) -> int:
    mtu = parse_mtu(value) if isinstance(value, int) else None  # a number, not its digits
    if mtu is None:
        raise ConfigError(f"{key} must be an MTU of {MTU_RANGE}, not {json.dumps(value)}")
    return mtu


def cidr_v6(key: str, value: str) -> str:
    """Docker's ``fixed-cidr-v6``: an IPv6 subnet (its other checks are the network's)."""
    import ipaddress  # as bip's: only a daemon given one pays for it

    try:
        ipaddress.IPv6Network(value, strict=False)
    except ValueError:
        raise ConfigError(
            f"invalid {key} {value!r}: use an IPv6 CIDR such as fd00:1::/64"
        ) from None
    return value


def bip(key: str, value: object) -> str:
    """Docker's ``bip``: the default bridge's address and prefix, ``ADDRESS/LEN``."""
    import ipaddress

    text = _text(key, value)
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        iface = None
    if (
        iface is None
        or "/" not in text
        or iface.ip
        in (
            iface.network.network_address,
            iface.network.broadcast_address,
        )
    ):
        raise ConfigError(
            f"invalid {key} {text!r}: give the bridge's own address and prefix, such as "
            "192.168.5.1/24"
        )
    return text


def address_pool(key: str, value: object) -> tuple[str, int]:
    """One of Docker's default-address-pools: ``{"base": CIDR, "size": LEN}``, IPv4 or
    IPv6 (where networks with IPv6 get their subnets)."""
    import ipaddress

    fields: dict[str, object] = value if isinstance(value, dict) else {}
    base, size = fields.get("base"), fields.get("size")
    try:
        network = ipaddress.ip_network(base) if isinstance(base, str) else None
    except ValueError:
        network = None
    longest = 126 if network is not None and network.version == 6 else 30
    if (
        network is None
        or isinstance(size, bool)
        or not isinstance(size, int)
        or not network.prefixlen <= size <= longest
        or set(fields) - {"base", "size"}
    ):
        raise ConfigError(
            f'invalid {key} entry {json.dumps(value)}: use {{"base": CIDR, "size": LEN}}'
            " with LEN from the base's prefix to 30 (IPv6: to 126)"
        )
    return str(network), size


def _pools(key: str, value: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a list of pools, not {json.dumps(value)}")
    return tuple([address_pool(key, v) for v in value])


def default_ulimit(text: str) -> tuple[str, int, int]:
    """``--default-ulimit NAME=SOFT[:HARD]``, as ``--ulimit`` takes it."""
    try:
        return parse_ulimit(text)
    except ValueError as exc:
        raise ConfigError(str(exc).replace("--ulimit", "--default-ulimit")) from None


def _ulimits(key: str, value: object) -> tuple[tuple[str, int, int], ...]:
    """Docker's ``default-ulimits``: ``{"nofile": {"Name": "nofile", "Soft": N, "Hard":
    N}, ...}``, each limit by its name (-1: unlimited)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be an object of limits, not {json.dumps(value)}")
    found = []
    for name, limit in value.items():
        fields: dict[str, object] = limit if isinstance(limit, dict) else {}
        soft, hard = fields.get("Soft"), fields.get("Hard")
        if (
            set(fields) - {"Name", "Soft", "Hard"}
            or fields.get("Name", name) != name
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in (soft, hard))
        ):
            raise ConfigError(
                f"invalid {key} entry {json.dumps({name: limit})}: use "
                f'{{"{name}": {{"Name": "{name}", "Soft": N, "Hard": N}}}} (-1: unlimited)'
            )
        assert isinstance(soft, int) and isinstance(hard, int)
        try:
            check_ulimit(name, soft, hard)
        except ValueError as exc:
            raise ConfigError(
                str(exc).replace(
                    f"invalid --ulimit '{name}={soft}:{hard}'", f"invalid {key} {name}"
                )
            ) from None
        found.append((name, soft, hard))
    return tuple(found)


def labels(key: str, value: object) -> tuple[str, ...]:
    """Docker's daemon ``labels`` (``--label``): ``KEY=VALUE`` each, a key once."""
    found = _strings(key, value)
    values: dict[str, str] = {}
    for label in found:
        name, eq, text = label.partition("=")
        if not name or not eq:
            raise ConfigError(f"invalid {key} {label!r}: use KEY=VALUE")
        if values.setdefault(name, text) != text:
            raise ConfigError(
                f"invalid {key}: {name} is given twice, as {values[name]!r} and {text!r}"
            )
    return tuple(found)


def _only(*accepted: str, what: str) -> Callable[[str, object], None]:
    """A Docker key boxd takes only where it names what boxd does anyway (a daemon.json
    written for dockerd often says so): nothing to set; any other value refused."""

    def read(key: str, value: object) -> None:
        given = _strings(key, value) if key == "exec-opts" else [_text(key, value)]
        for text in given:
            if text not in accepted:
                raise ConfigError(f"invalid {key} {text!r}: {what}")

    return read


def _level(key: str, value: object) -> str:
    level = LEVELS.get(_text(key, value).lower())
    if level is None:
        raise ConfigError(f"invalid {key} {value!r}: use debug, info, warn or error")
    return level


def _docker_socket(key: str, value: object) -> str:
    hosts = _strings(key, value)
    if len(hosts) != 1 or not hosts[0].startswith("unix://"):
        raise ConfigError(
            f"invalid {key} {json.dumps(hosts)}: boxd serves the Docker API on one Unix "
            'socket: give ["unix:///PATH"]'
        )
    return hosts[0].removeprefix("unix://")


_LOG_LEVEL_FLAGS = ("--log-level", "-l", "--debug", "-D")
# The flags that take no value.
_SWITCHES = {"--debug", "-D", "--ipv6", "--no-live-restore"}

# key -> (the option's dest, its flags, how the value is read)
_KEYS: dict[str, tuple[str, tuple[str, ...], Callable[[str, object], object]]] = {
    # Docker's daemon.json
    "data-root": ("root", ("--root", "--data-root"), lambda k, v: Path(_text(k, v))),
    "log-level": ("log_level", _LOG_LEVEL_FLAGS, _level),
    "debug": ("log_level", _LOG_LEVEL_FLAGS, lambda k, v: "debug" if _flag(k, v) else "info"),
    "log-driver": ("log_driver", ("--log-driver",), _text),
    "live-restore": ("live_restore", ("--no-live-restore",), _flag),
    "insecure-registries": ("insecure_registry", ("--insecure-registry",), _strings),
    "labels": ("labels", ("--label",), labels),
    "pidfile": ("pidfile", ("--pidfile", "-p"), lambda k, v: Path(_text(k, v))),
    "max-download-attempts": ("max_download_attempts", ("--max-download-attempts",), _count),
    "cgroup-parent": ("cgroup_parent", ("--cgroup-parent",), _text),
    "hosts": ("docker_socket", ("--docker-socket",), _docker_socket),
    "mtu": ("mtu", ("--mtu",), _mtu),
    "bip": ("bip", ("--bip",), bip),
    "default-address-pools": ("address_pools", ("--default-address-pool",), _pools),
    "default-ulimits": ("default_ulimits", ("--default-ulimit",), _ulimits),
    "ipv6": ("ipv6", ("--ipv6",), _flag),
    "icc": ("icc", ("--icc",), _flag),
    "fixed-cidr-v6": ("fixed_cidr_v6", ("--fixed-cidr-v6",), lambda k, v: cidr_v6(k, _text(k, v))),
    # Docker's, taken where they name what boxd does
    "storage-driver": (
        "",
        (),
        _only("overlay2", what="boxd keeps images and containers with overlay2 only"),
    ),
    "exec-opts": (
        "",
        (),
        _only(
            "native.cgroupdriver=cgroupfs",
            what="boxd makes containers' cgroups itself (native.cgroupdriver=cgroupfs only)",
        ),
    ),
    # boxd's own
    "socket": ("socket", ("--socket",), lambda k, v: Path(_text(k, v))),
    "procview": ("procview", ("--procview",), _text),
    "procview-cpus": ("procview_cpus", ("--procview-cpus",), _text),
    "bridge-name": ("bridge_name", ("--bridge-name",), _text),
    "bridge-subnet": ("bridge_subnet", ("--bridge-subnet",), _text),
}
_LOG_OPTS = {
    "max-size": ("log_max_size", "--log-max-size"),
    "max-file": ("log_max_files", "--log-max-files"),
}

# What one key sets: its name, the option's dest, the value, the flags that set it too,
# and the value as the file wrote it.
_Setting = tuple[str, str, object, tuple[str, ...], object]


def options(config: Mapping[str, Any], given: Sequence[str]) -> dict[str, object]:
    """The options ``config`` (a daemon.json's object) sets, by dest; ``given``: the
    command line's words (a key one of them also sets is refused)."""
    unknown = sorted(set(config) - set(_KEYS) - {"log-opts"})
    if unknown:
        raise ConfigError(
            "the following directives don't match any configuration option: "
            + ", ".join(unknown)
            + " (boxd takes "
            + ", ".join(sorted([*_KEYS, "log-opts"]))
            + ")"
        )
    found: list[_Setting] = []
    for key, value in config.items():
        if key == "log-opts":
            found += _log_opts(value)
        else:
            dest, flags, read = _KEYS[key]
            found.append((key, dest, read(key, value), flags, value))
    clashes = []
    if "log-opts" in config:  # dockerd's --log-opt clashes with the file's log-opts whole
        found.append(("log-opts", "", None, ("--log-opt",), config["log-opts"]))
    for key, _, _, flags, raw in found:
        flag_value = _flag_value(given, flags)
        if flag_value is not None:
            clashes.append(f"{key} (from flag: {flag_value}, from file: {json.dumps(raw)})")
    if clashes:
        raise ConfigError(
            "the following directives are specified both as a flag and in the "
            "configuration file: " + ", ".join(clashes)
        )
    return {dest: value for _, dest, value, _, _ in found if dest}


def _log_opts(value: object, where: str = "log-opts") -> list[_Setting]:
    """The settings of daemon.json's ``log-opts`` (or of dockerd's ``--log-opt`` flags,
    ``where`` naming them in errors)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"log-opts must be an object of strings, not {json.dumps(value)}")
    found: list[_Setting] = []
    # Docker's mode and max-buffer-size and the log attributes: every new container's that
    # keeps its log with the daemon's driver (see Supervisor.log_options).
    taken = (*KEPT_LOG_OPTIONS, *DRIVER_LOG_OPTIONS)  # (a driver's own: checked with it)
    kept = tuple([f"{key}={text}" for key, text in value.items() if key in taken])
    try:
        check_kept_log_options(kept)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if kept:
        found.append(("log-opts", "log_options", kept, (), dict(value)))
    for key, text in value.items():
        if key in taken:
            continue
        try:
            option = log_option(key, text, taken=CONTAINER_LOG_OPTIONS)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        dest, flag = _LOG_OPTS[key]
        # (max-size in bytes, read in Docker's units, where --log-max-size's are 1024's)
        found.append((f"log-opts {key}", dest, option[1], (flag,), text))
    return found


def flag_log_opts(words: Sequence[str], given: Sequence[str]) -> dict[str, object]:
    """dockerd's ``--log-opt KEY=VALUE`` flags (``words``) as the options they set, by
    dest, as daemon.json's ``log-opts`` sets them; ``given``: the command line's words
    (``--log-max-size`` with ``--log-opt max-size=`` is refused)."""
    opts = {}
    for word in words:
        key, equals, text = word.partition("=")
        if not key or not equals:
            raise ConfigError(f"invalid --log-opt {word!r}: expected KEY=VALUE")
        opts[key] = text
    found = _log_opts(opts, "--log-opt")
    for key, _, _, flags, raw in found:
        flag_value = _flag_value(given, flags)
        if flag_value is not None:
            raise ConfigError(
                f"--log-opt {key.removeprefix('log-opts ')}={raw} and {flags[0]} "
                f"{flag_value} both set it: give one"
            )
    return {dest: value for _, dest, value, _, _ in found}


def _flag_value(given: Sequence[str], flags: tuple[str, ...]) -> str | None:
    """The value a flag among ``flags`` has in ``given`` (a switch's: true, or false for a
    ``--no-`` one), or None."""
    for i, word in enumerate(given):
        for flag in flags:
            if word == flag and flag in _SWITCHES:  # as dockerd shows a switch
                return "false" if flag.startswith("--no-") else "true"
            if word == flag:
                return given[i + 1] if i + 1 < len(given) else ""
            if word.startswith(flag + "="):
                return word.partition("=")[2]
    return None


def read(path: Path, given: Sequence[str], *, required: bool) -> dict[str, object]:
    """:func:`options` of the file at ``path``; none where it does not exist and is not
    ``required`` (the default path)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"cannot read the configuration file {path}: it does not exist"
            ) from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror}") from None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the configuration file {path} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration file {path} must hold a JSON object")
    try:
        return options(config, given)
    except ConfigError as exc:
        raise ConfigError(f"invalid daemon configuration {path}: {exc}") from None

"""Parsing of the human units users type (``256m``, ``0.5``), without dependencies.

The CLI validates with these before it sends anything; the daemon validates again.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: boxctl imports this module, and typing costs ~3 ms

if TYPE_CHECKING:
    from collections.abc import Mapping

_INF = float("inf")  # not math.isfinite: math costs every boxctl run ~0.2 ms to import
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# Docker's log drivers read max-size's units as powers of 1000 (go-units' FromHumanSize).
_LOG_SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


# Go's duration units (time.ParseDuration's), in nanoseconds.
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_DURATION_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_NUMBER = frozenset("0123456789.")


def go_duration_ns(text: str, what: str) -> int:
    """A Go duration as Go's time.ParseDuration reads it (``30s``, ``1m30s``, ``500ms``,
    ``-1.5h``, ``0``) in nanoseconds; ValueError naming ``what`` and the text."""
    bad = ValueError(f"invalid {what} {text!r}: use a duration such as 30s, 1m30s or 500ms")
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in ("-", "+") else text
    if body == "0":
        return 0
    total = 0.0
    pos = 0
    if not body:
        raise bad
    while pos < len(body):
        start = pos
        while pos < len(body) and body[pos] in _DURATION_NUMBER:
            pos += 1
        number, unit_start = body[start:pos], pos
        while pos < len(body) and body[pos] not in _DURATION_NUMBER:
            pos += 1
        unit = body[unit_start:pos]
        if unit not in _DURATION_UNITS or number.strip(".") == "" or number.count(".") > 1:
            raise bad
        total += float(number) * _DURATION_UNITS[unit]
    return sign * round(total)


# An interface's MTU, as Docker takes it (--mtu, daemon.json's mtu, a network's option).
MTU_RANGE = "68 to 65535"


def parse_mtu(value: object) -> int | None:
    """An MTU given as a number or its digits; None if it is none in :data:`MTU_RANGE`."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 65535:
        return None
    return value


def parse_size(
    text: str, *, what: str = "size", zero: bool = False, units: dict[str, int] = _SIZE_UNITS
) -> int:
    """Bytes from a number and an optional unit: ``512``, ``64k``, ``1.5g``, ``10 MiB``.

    Units are powers of 1024 in any case, spelled ``k``, ``kb`` or ``kib`` (and so on for
    m, g, t); a lone ``b`` means bytes.  Used for every size option (``--memory``,
    ``--memory-swap``, ``--log-max-size`` of boxctl and of the daemon); 0 only if ``zero``.
    ``units``: other factors (``--log-opt max-size``'s, Docker's powers of 1000).
    """
    stripped = text.strip()
    end = len(stripped) - len(stripped.lstrip("0123456789.+-"))
    number, spelled = stripped[:end], stripped[end:].strip()
    try:
        value = float(number)
    except ValueError:
        raise ValueError(
            f"invalid {what} {text!r}: use a number with an optional unit k, m, g or t"
        ) from None
    unit = spelled.lower()
    unit = unit[:-1] if unit.endswith("b") else unit
    unit = unit[:-1] if len(unit) == 2 and unit.endswith("i") else unit
    if unit not in units:
        raise ValueError(f"invalid {what} {text!r}: unknown unit {spelled!r} (use k, m, g or t)")
    if zero and value == 0:
        return 0
    if not 0 < value < _INF:  # NaN too
        raise ValueError(f"invalid {what} {text!r}: must be a positive number")
    size = int(value * units[unit])
    if size < 1:
        raise ValueError(f"invalid {what} {text!r}: must be at least 1 byte")
    return size


def format_log_size(size: int) -> str:
    """A log's max-size as ``--log-opt max-size`` (:func:`log_option`, Docker's units)
    reads it back: in the largest power of 1000 that divides it (``10m`` for 10 MB,
    ``1500k``, ``1048576`` for boxctl's ``--log-max-size 1m``)."""
    factor, unit = max((f, u) for u, f in _LOG_SIZE_UNITS.items() if size % f == 0)
    return f"{size // factor}{unit}"


def parse_cpus(text: str) -> float:
    """A number of CPUs, at least 0.01 (``0.5``, ``2``), or 0 for no limit, as Docker reads
    it."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid --cpus {text!r}: use a number such as 0.5") from None
    if value != 0 and not 0.01 <= value < _INF:  # NaN too
        raise ValueError(
            f"invalid --cpus {text!r}: must be a finite number >= 0.01, or 0 for no limit"
        )
    return value


# Volume options: each sets a field of the volume record; nosuid and nodev are always in
# force (and suid, dev are refused).
_VOLUME_OPTIONS: dict[str, tuple[str, bool | str] | None] = {
    "ro": ("read_only", True),
    "rw": ("read_only", False),
    "noexec": ("noexec", True),
    "exec": ("noexec", False),
    "nosuid": None,
    "nodev": None,
    "nocopy": ("nocopy", True),  # a named volume is not filled from the image
    # SELinux relabelling: there is no SELinux here, so nothing to do (Docker's answer too).
    "z": None,
    "Z": None,
    # Mount propagation.
    "rprivate": ("propagation", ""),  # the default
    "private": ("propagation", "private"),
    "rslave": ("propagation", "rslave"),
    "slave": ("propagation", "slave"),
    "rshared": ("propagation", "rshared"),
    "shared": ("propagation", "shared"),
    # Docker for Mac's consistency modes: ignored on Linux, as by Docker.
    "consistent": None,
    "cached": None,
    "delegated": None,
}


def split_volume(spec: str) -> tuple[str, str, dict[str, bool | str]]:
    """``HOST:CONTAINER[:OPTIONS]`` -> (host, container, {"read_only": ..., "noexec": ...}
    for the options given).  OPTIONS, comma-separated: ro or rw, noexec or exec, nosuid,
    nodev.  The paths are checked by whoever uses them."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"volume {spec!r} is not HOST:CONTAINER[:OPTIONS]")
    return parts[0], parts[1], volume_options(spec, parts[2] if len(parts) == 3 else "")


def volume_options(spec: str, text: str) -> dict[str, bool | str]:
    """The fields of a volume record that OPTIONS (comma-separated, see split_volume) set;
    ``spec`` is the whole value, for the error messages."""
    chosen: dict[str, tuple[str, bool | str]] = {}
    for option in text.split(",") if text else ():
        if option in ("suid", "dev"):
            raise ValueError(f"volume {spec!r}: volumes are always nosuid and nodev")
        if option not in _VOLUME_OPTIONS:
            known = ", ".join(_VOLUME_OPTIONS)
            raise ValueError(f"volume {spec!r}: unknown option {option!r} (use {known})")
        setting = _VOLUME_OPTIONS[option]
        if setting is None:
            continue
        field, value = setting
        if field in chosen and chosen[field][1] != value:
            raise ValueError(f"volume {spec!r}: both {chosen[field][0]} and {option}")
        chosen[field] = (option, value)
    return {field: value for field, (_, value) in chosen.items()}


def memory_limits(memory: str | None, memory_swap: str | None) -> dict[str, int]:
    """``--memory`` and ``--memory-swap`` as given (None: not), in bytes as
    :class:`boxd.Resources` takes them; a swap of ``-1`` is unlimited, and 0 of either is
    not given, as Docker reads it."""
    found = {}
    if memory is not None:
        found["memory"] = parse_size(memory, what="--memory", zero=True)
    if memory_swap is not None:
        found["memory_swap"] = (
            -1 if memory_swap == "-1" else parse_size(memory_swap, what="--memory-swap", zero=True)
        )
    return {key: value for key, value in found.items() if value != 0}


# The log attribute options, as --log-opt names them (Docker's logger.Attr* names): the
# container's labels and variables named or matched, and a tag (see _logattrs).
LOG_ATTRIBUTES = ("env", "env-regex", "labels", "labels-regex", "tag")
# Docker's log modes (--log-opt mode=): whichever is asked for, the output is drained
# into the log through the pipes (a 1 MiB one, Docker's default max-buffer-size) and none
# of it dropped; a sending driver's lines go through a ring in non-blocking mode (see
# boxd/_linesend.py).
LOG_MODES = ("blocking", "non-blocking")
# The log options kept with a container as given (ContainerConfig.log_options).
KEPT_LOG_OPTIONS = (*LOG_ATTRIBUTES, "mode", "max-buffer-size", "compress")
# The syslog, gelf, fluentd and splunk drivers' (boxd/_syslog.py, boxd/_gelf.py,
# boxd/_fluentd.py, boxd/_splunk.py), kept too: where and how they send, and Docker's dual
# logging's local copy ("cache-"), which `logs` reads.
SYSLOG_OPTIONS = ("syslog-address", "syslog-facility", "syslog-format")
SYSLOG_TLS_OPTIONS = (
    "syslog-tls-ca-cert",
    "syslog-tls-cert",
    "syslog-tls-key",
    "syslog-tls-skip-verify",
)
GELF_OPTIONS = (
    "gelf-address",
    "gelf-compression-type",
    "gelf-compression-level",
    "gelf-tcp-max-reconnect",
    "gelf-tcp-reconnect-delay",
)
FLUENTD_OPTIONS = (
    "fluentd-address",
    "fluentd-async",
    "fluentd-async-reconnect-interval",
    "fluentd-buffer-limit",
    "fluentd-max-retries",
    "fluentd-request-ack",
    "fluentd-retry-wait",
    "fluentd-sub-second-precision",
    "fluentd-write-timeout",
    "fluentd-read-timeout",
)
SPLUNK_OPTIONS = (
    "splunk-url",
    "splunk-token",
    "splunk-source",
    "splunk-sourcetype",
    "splunk-index",
    "splunk-capath",
    "splunk-caname",
    "splunk-insecureskipverify",
    "splunk-format",
    "splunk-verify-connection",
    "splunk-gzip",
    "splunk-gzip-level",
    "splunk-index-acknowledgment",
)
CACHE_OPTIONS = ("cache-disabled", "cache-max-size", "cache-max-file", "cache-compress")
DRIVER_LOG_OPTIONS = (
    *SYSLOG_OPTIONS,
    *SYSLOG_TLS_OPTIONS,
    *GELF_OPTIONS,
    *FLUENTD_OPTIONS,
    *SPLUNK_OPTIONS,
    *CACHE_OPTIONS,
)
# Go's strconv.ParseBool, which Docker reads its switches with (compress=, a network's
# options).
GO_BOOLS = dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True) | dict.fromkeys(
    ("0", "f", "F", "FALSE", "false", "False"), False
)


def log_switch(options: Mapping[str, str], key: str, default: bool = False) -> bool:
    """A log driver's switch option as Go's strconv.ParseBool reads it (``default`` when
    not given; ValueError naming a value it is not)."""
    value = options.get(key)
    if value is None:
        return default
    if value not in GO_BOOLS:
        raise ValueError(f"invalid log option {key} {value!r}: expected true or false")
    return GO_BOOLS[value]


# What a container's --log-opt takes, as an error says it.
CONTAINER_LOG_OPTIONS = (
    "max-size, max-file, " + ", ".join(KEPT_LOG_OPTIONS[:-1]) + " and " + KEPT_LOG_OPTIONS[-1]
)


def log_option(key: str, value: str, *, taken: str = "max-size and max-file") -> tuple[str, int]:
    """One log rotation option as ``--log-opt KEY=VALUE``, LogConfig.Config and
    daemon.json's ``log-opts`` spell it: ``("max-size", bytes)`` or ``("max-file", count)``
    (the others taken are KEPT_LOG_OPTIONS).  Any other is refused by name rather than
    dropped (ValueError), saying what is ``taken``."""
    if key == "max-size":  # in Docker's units, powers of 1000: 1k is 1000 bytes
        return key, parse_size(value, what="log option max-size", units=_LOG_SIZE_UNITS)
    if key == "max-file":
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"invalid log option max-file {value!r}: expected an integer, at least 1"
            )
        return key, int(value)
    raise ValueError(f"log option {key}={value!r} is not supported by boxd (it takes {taken})")

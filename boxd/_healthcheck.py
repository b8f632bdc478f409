"""Docker's health checks: the configuration a container carries and the state it shows.

Trio-free and small (every record imports it); the checks themselves run in
:mod:`boxd._health`, imported only by a container that has one.

A :class:`Healthcheck` is Docker's ``HealthConfig`` in seconds: ``test`` is ``()`` (inherit
the image's), ``("NONE",)`` (no check, not even the image's), ``("CMD", ARG...)`` or
``("CMD-SHELL", COMMAND)``; a duration or ``retries`` of 0 inherits the image's, else
Docker's default (interval and timeout 30 s, start period 0, start interval 5 s, 3
retries).  ``create`` stores the container's merged with its image's, as Docker does.
"""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MINIMUM = 0.001  # Docker's least non-zero duration (1 ms)
LOG_ENTRIES = 5  # the results kept, as Docker keeps them
OUTPUT_LIMIT = 4096  # bytes of a check's output kept; "..." marks the rest

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
NONE = "none"  # for `ps --filter health=`: no health check
HEALTH_FILTERS = (STARTING, HEALTHY, UNHEALTHY, NONE)

# Each duration field: its `run` option and its Engine API key.
_DURATIONS = {
    "interval": ("--health-interval", "Interval"),
    "timeout": ("--health-timeout", "Timeout"),
    "start_period": ("--health-start-period", "StartPeriod"),
    "start_interval": ("--health-start-interval", "StartInterval"),
}


@attrs.frozen
class Healthcheck:
    test: tuple[str, ...] = ()
    interval: float = 0.0  # seconds; 0: inherit / default
    timeout: float = 0.0
    start_period: float = 0.0
    start_interval: float = 0.0
    retries: int = 0

    @property
    def disabled(self) -> bool:
        return self.test == ("NONE",)


@attrs.frozen
class HealthResult:
    start: float  # Unix times
    end: float
    exit_code: int  # -1: the check could not run or outlived its timeout
    output: str


@attrs.define
class Health:
    status: str = STARTING
    failing_streak: int = 0
    log: tuple[HealthResult, ...] = ()  # the last LOG_ENTRIES, oldest first


def check_healthcheck(hc: Healthcheck) -> None:
    """Refuse a configuration Docker refuses, naming the bad value."""
    test = hc.test
    if test:
        kind = test[0]
        if kind == "NONE":
            if len(test) > 1:
                raise ValueError(f"invalid health check test {list(test)!r}: NONE takes nothing")
        elif kind == "CMD":
            if len(test) < 2 or not test[1]:
                raise ValueError(f"invalid health check test {list(test)!r}: CMD needs a command")
        elif kind == "CMD-SHELL":
            if len(test) != 2 or not test[1].strip():
                raise ValueError(
                    f"invalid --health-cmd {list(test)!r}: CMD-SHELL takes one command line"
                )
        else:
            raise ValueError(
                f"invalid health check test {list(test)!r}: it starts with CMD, CMD-SHELL or NONE"
            )
        if any("\0" in word for word in test):
            raise ValueError(f"invalid health check test {list(test)!r}: contains a NUL byte")
    for field, (option, key) in _DURATIONS.items():
        value = getattr(hc, field)
        if value < 0:
            raise ValueError(f"invalid {option} ({key}) {value:g}s: cannot be negative")
        if 0 < value < MINIMUM:
            raise ValueError(f"invalid {option} ({key}) {value:g}s: use 0 or at least 1ms")
    if hc.retries < 0:
        raise ValueError(f"invalid --health-retries (Retries) {hc.retries}: cannot be negative")


def merge(own: Healthcheck | None, image: Healthcheck | None) -> Healthcheck | None:
    """The container's health check over its image's, field by field (Docker's rule)."""
    if image is None or (own is not None and own.disabled):
        return own
    if own is None:
        return image
    return Healthcheck(
        test=own.test or image.test,
        interval=own.interval or image.interval,
        timeout=own.timeout or image.timeout,
        start_period=own.start_period or image.start_period,
        start_interval=own.start_interval or image.start_interval,
        retries=own.retries or image.retries,
    )


def active(hc: Healthcheck | None) -> Healthcheck | None:
    """The check to run, with Docker's defaults filled in; None when there is none."""
    if hc is None or not hc.test or hc.disabled:
        return None
    return Healthcheck(
        test=hc.test,
        interval=hc.interval or DEFAULT_INTERVAL,
        timeout=hc.timeout or DEFAULT_TIMEOUT,
        start_period=hc.start_period or DEFAULT_START_PERIOD,
        start_interval=hc.start_interval or DEFAULT_START_INTERVAL,
        retries=hc.retries or DEFAULT_RETRIES,
    )


def from_api(value: object, where: str) -> Healthcheck:
    """Docker's ``HealthConfig`` JSON (durations in nanoseconds) as a Healthcheck; ``where``
    names it in errors (``Config.Healthcheck``)."""
    if not isinstance(value, dict):
        raise ValueError(f"invalid {where}: expected an object")
    test = value.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(w, str) for w in test):
        raise ValueError(f"invalid {where}.Test {test!r}: expected a list of strings")
    numbers: dict[str, Any] = {}
    for field, (_, key) in (*_DURATIONS.items(), ("retries", ("", "Retries"))):
        raw = value.get(key) or 0
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"invalid {where}.{key} {raw!r}: expected an integer")
        numbers[field] = raw if field == "retries" else raw / 1e9
    return Healthcheck(test=tuple(test), **numbers)


def to_api(hc: Healthcheck) -> dict[str, Any]:
    """A Healthcheck as Docker's ``HealthConfig`` JSON (zero fields left out, as Docker)."""
    shaped: dict[str, Any] = {"Test": list(hc.test)}
    for field, (_, key) in _DURATIONS.items():
        if value := getattr(hc, field):
            shaped[key] = round(value * 1e9)
    if hc.retries:
        shaped["Retries"] = hc.retries
    return shaped


def go_duration(seconds: float) -> str:
    """A duration as Go prints one (``30s``, ``500ms``, ``1m30s``), for Docker's messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if hours or minutes else ""
    return text + f"{round(rest, 9):g}s"

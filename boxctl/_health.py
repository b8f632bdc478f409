"""``run``/``create``'s health check options (their table is in boxctl._runopts), Docker's
names and defaults (interval and timeout 30s, start period 0, start interval 5s, retries 3:
the daemon fills them in)."""

from __future__ import annotations

from ._args import Args
from ._client import USAGE, CliError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any


_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)"


def parse_duration(text: str, option: str) -> float:
    """A Go duration (``1m30s``, ``100ms``, ``0``) in seconds."""
    import re  # only when a duration is given: `run` does not pay for it otherwise

    pattern = re.compile(_PART)
    body = text[1:] if text[:1] in "+-" else text
    seconds = 0.0
    pos = 0
    while body != "0" and pos < len(body):
        part = pattern.match(body, pos)
        if part is None:
            raise CliError(
                f"invalid {option} {text!r}: use a duration such as 100ms, 30s or 1m30s", USAGE
            )
        seconds += float(part[1]) * _UNITS[part[2]]
        pos = part.end()
    if not body:
        raise CliError(
            f"invalid {option} {text!r}: use a duration such as 100ms, 30s or 1m30s", USAGE
        )
    if text.startswith("-") and seconds:
        raise CliError(f"invalid {option} {text!r}: cannot be negative", USAGE)
    return seconds


def healthcheck(args: Args) -> dict[str, Any] | None:
    """The configuration's ``healthcheck`` from the options; None when none was given."""
    durations = {
        "interval": ("--health-interval", args.health_interval),
        "timeout": ("--health-timeout", args.health_timeout),
        "start_period": ("--health-start-period", args.health_start_period),
        "start_interval": ("--health-start-interval", args.health_start_interval),
    }
    given = bool(args.health_cmd) or args.health_retries is not None
    given = given or any(v is not None for _, v in durations.values())
    if args.no_healthcheck:
        if given:
            raise CliError("--no-healthcheck conflicts with --health-* options", USAGE)
        return {"test": ["NONE"]}
    if not given:
        return None
    config: dict[str, Any] = {"test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else []}
    for field, (option, text) in durations.items():
        if text is not None:
            config[field] = parse_duration(text, option)
    if args.health_retries is not None:
        if args.health_retries < 0:
            raise CliError(
                f"invalid --health-retries {args.health_retries}: cannot be negative", USAGE
            )
        config["retries"] = args.health_retries
    return config

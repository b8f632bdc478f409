"""The filters every prune takes, as Docker's: ``label=KEY[=VALUE]``, ``label!=KEY[=VALUE]``
and ``until=TIME`` (a Unix time, an RFC 3339 time, or a duration back from now: ``10m``,
``24h``).  Given twice, a key's values all apply; an object passes when every filter does.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping, Sequence

import attrs

KEYS = ("label", "label!", "until")
_UNITS = {"s": 1, "m": 60, "h": 3600}


@attrs.frozen
class PruneFilter:
    labels: tuple[str, ...] = ()  # each must be on the object
    not_labels: tuple[str, ...] = ()  # none may be
    until: float | None = None  # created before this Unix time

    def matches(self, labels: Mapping[str, str], created: float) -> bool:
        if self.until is not None and created >= self.until:
            return False
        if not all(_has(labels, want) for want in self.labels):
            return False
        return not any(_has(labels, want) for want in self.not_labels)


def _has(labels: Mapping[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return labels.get(key) == value if eq else key in labels


def rfc3339(text: str) -> float:
    """An RFC 3339 time as Go writes them (``Z``, nanoseconds) as a Unix time; 0 when it
    is not one (an image without a creation time counts as old)."""
    main, dot, rest = text.replace("Z", "+00:00").partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        main = f"{main}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        when = datetime.datetime.fromisoformat(main)
    except ValueError:
        return 0.0
    return (when if when.tzinfo else when.replace(tzinfo=datetime.UTC)).timestamp()


def parse_time(text: str) -> float:
    """``until``'s value as a Unix time."""
    try:
        if text[-1:] in _UNITS:
            return time.time() - float(text[:-1]) * _UNITS[text[-1]]
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid filter 'until={text}': use a Unix time, an RFC 3339 time or a "
            "duration (10m, 24h)"
        ) from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def parse(specs: Sequence[str], extra: Sequence[str] = ()) -> tuple[PruneFilter, dict[str, str]]:
    """``KEY=VALUE`` words -> the filter, and the values of the ``extra`` keys a prune
    takes besides (``all`` of volume prune).  A key no prune knows is refused."""
    labels, not_labels, until = [], [], None
    others: dict[str, str] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq or key not in (*KEYS, *extra):
            names = ", ".join(f"{k}=" for k in (*KEYS, *extra))
            raise ValueError(f"invalid filter {spec!r}: use {names}")
        if key == "label":
            labels.append(value)
        elif key == "label!":
            not_labels.append(value)
        elif key == "until":
            until = parse_time(value)
        else:
            others[key] = value
    return PruneFilter(tuple(labels), tuple(not_labels), until), others

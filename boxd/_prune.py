"""Docker's prune filters (``container prune --filter until=24h --filter label=tmp``), read
the same way for every front end: the native socket and the Engine API send the user's
words, the daemon reads them on its own clock, as Docker's does.

- ``until=TIME``: only what was created before TIME: a Unix time (``1700000000.5``), a Go
  duration back from now (``10m``, ``1h30m``, ``24h``), or an RFC 3339 time or date
  (``2024-05-01T10:00:00Z``, ``2024-05-01``).
- ``label=KEY`` or ``label=KEY=VALUE``: only what has the label (every one given).
- ``label!=KEY`` or ``label!=KEY=VALUE`` (the key ``label!``): only what has none of them.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ._units import go_duration_ns

KEYS = ("until", "label", "label!")


@attrs.frozen
class PruneFilter:
    until: float | None = None  # Unix time
    labels: tuple[str, ...] = ()  # KEY or KEY=VALUE, all required
    not_labels: tuple[str, ...] = ()  # KEY or KEY=VALUE, none allowed

    def selects(self, created: float, labels: Mapping[str, str]) -> bool:
        """Whether something created at ``created`` with ``labels`` is to be pruned."""
        if self.until is not None and created >= self.until:
            return False
        if not all(has_label(labels, want) for want in self.labels):
            return False
        return not any(has_label(labels, want) for want in self.not_labels)


def has_label(labels: Mapping[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


def parse(
    filters: Mapping[str, tuple[str, ...] | list[str]],
    now: float,
    *,
    keys: tuple[str, ...] = KEYS,
    takes: str = "prune takes until, label and label!",
) -> PruneFilter:
    """The filters (Docker's ``{"key": ["value", ...]}``) as a :class:`PruneFilter`; a key
    not among ``keys`` (``takes`` says which there are) or a bad value raises ValueError
    naming it."""
    for key in filters:
        if key not in keys:
            raise ValueError(f"invalid filter {key!r}: {takes}")
    until = None
    for text in filters.get("until", ()):
        if until is not None:
            raise ValueError("more than one until filter")
        until = parse_time(text, now)
    for key in ("label", "label!"):
        for text in filters.get(key, ()):
            if not text.partition("=")[0]:
                raise ValueError(f"invalid filter '{key}={text}': use {key}=KEY or KEY=VALUE")
    return PruneFilter(
        until=until,
        labels=tuple(filters.get("label", ())),
        not_labels=tuple(filters.get("label!", ())),
    )


def parse_time(text: str, now: float) -> float:
    """A Unix time, a Go duration before ``now``, or an RFC 3339 time or date (a time
    without a zone is local, as Docker reads it)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return now - go_duration_ns(text, "until") / 1e9
    except ValueError:
        pass
    import datetime  # here: the daemon needs it only for such a time (~0.2 MB)

    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"invalid until {text!r}: use a Unix time, a duration (10m, 24h) or an RFC 3339 time"
        ) from None
    return when.timestamp()  # a naive one is taken as local time

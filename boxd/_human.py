"""Durations and sizes as Docker prints them (go-units' HumanDuration and HumanSize), and
times as Go writes them, for the daemon's Docker API and for ``boxctl`` alike (no
imports: boxctl starts fast)."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``Less than a second``, ``5 seconds``, ``About a minute``, ``3 hours``, ``2 weeks``."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def size(n: float, digits: int = 3) -> str:
    """Decimal units with three significant digits, as ``docker ps -s``: ``0B``, ``12.3kB``,
    ``1.5MB`` (``digits=4``: go-units' HumanSize, as in ``Total reclaimed space``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.{digits}g}{units[i]}"


def to_microseconds(rfc3339: str) -> str:
    """An RFC 3339 time as Go writes it (nanoseconds) cut to the microseconds Python's
    ``datetime.fromisoformat`` takes; the rest of the text as it is."""
    head, dot, rest = rfc3339.partition(".")
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if dot else rfc3339


def rfc3339_nano(ns: int) -> str:
    """A UTC time as Go's RFC3339Nano writes it, as dockerd stamps an image or a log line:
    to the nanosecond (two images made within a second differ, in id too, and list in
    order for ``since`` and ``before``), the fraction without its trailing zeros, none
    for a whole second."""
    import time

    seconds, fraction = divmod(ns, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"

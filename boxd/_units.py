"""Parsing of the human units users type (``256m``, ``0.5``), without dependencies.

The CLI validates with these before it sends anything; the daemon validates again.
"""

from __future__ import annotations

import math

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, what: str = "size") -> int:
    """``512``, ``64k``, ``256m``, ``1g`` (case-insensitive, optional trailing ``b``)."""
    t = text.strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in "bkmgt" else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}: use a number with k, m or g") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"invalid {what} {text!r}: must be a positive number")
    size = int(value * _SIZE_UNITS[unit])
    if size < 1:
        raise ValueError(f"invalid {what} {text!r}: must be at least 1 byte")
    return size


def parse_cpus(text: str) -> float:
    """A number of CPUs, at least 0.01 (``0.5``, ``2``)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid --cpus {text!r}: use a number such as 0.5") from None
    if not math.isfinite(value) or value < 0.01:
        raise ValueError(f"invalid --cpus {text!r}: must be a finite number >= 0.01")
    return value

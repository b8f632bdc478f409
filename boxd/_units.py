"""Parsing of the human units users type (``256m``, ``0.5``), without dependencies.

The CLI validates with these before it sends anything; the daemon validates again.
"""

from __future__ import annotations

import math

_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from a number and an optional unit: ``512``, ``64k``, ``1.5g``, ``10 MiB``.

    Units are powers of 1024 in any case, spelled ``k``, ``kb`` or ``kib`` (and so on for
    m, g, t); a lone ``b`` means bytes.  Used for every size option (``--memory``,
    ``--memory-swap``, ``--log-max-size`` of boxctl and of the daemon).
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
    if unit not in _SIZE_UNITS:
        raise ValueError(f"invalid {what} {text!r}: unknown unit {spelled!r} (use k, m, g or t)")
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

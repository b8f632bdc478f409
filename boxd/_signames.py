"""Signal names as users type them, in a module of its own: ``boxd-runtime kill`` reads
them without importing the records (attrs)."""

from __future__ import annotations

import signal


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm``, ``15``, and Docker's real-time names
    ``RTMIN+3`` (systemd's stop signal) and ``SIGRTMAX-2``: the signal's number."""
    t = text.strip().upper().removeprefix("SIG")
    base, sign, offset = t.partition("+") if "+" in t else t.partition("-")
    if t.isdigit() and (0 < int(t) < 32 or signal.SIGRTMIN <= int(t) <= signal.SIGRTMAX):
        return int(t)
    if base in ("RTMIN", "RTMAX") and (offset.isdigit() if sign else not offset):
        start = signal.SIGRTMIN if base == "RTMIN" else signal.SIGRTMAX
        number = start + int(offset or 0) * (-1 if sign == "-" else 1)
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
    elif not t.isdigit() and "SIG" + t in signal.Signals.__members__:
        return signal.Signals["SIG" + t]
    raise ValueError(f"invalid signal {text!r}")

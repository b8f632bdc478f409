"""Signal names as users type them, in a module of its own: ``boxd-runtime kill`` reads
them without importing the records (attrs)."""

from __future__ import annotations

import re
import signal

# Docker's names of the real-time signals: RTMIN, RTMIN+N, RTMAX-N, RTMAX.
_REAL_TIME = re.compile(r"RT(MIN|MAX)(?:([+-])([0-9]+))?\Z")


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15``; a real-time one as ``SIGRTMIN+3``
    (systemd's stop signal), ``RTMAX-1`` or its number."""
    t = text.strip().upper()
    name = t.removeprefix("SIG")
    number: int | None = None
    if t.isdigit():
        number = int(t)
    elif (real_time := _REAL_TIME.match(name)) is not None:
        base, sign, offset = real_time.groups()
        number = int(signal.SIGRTMIN if base == "MIN" else signal.SIGRTMAX)
        if sign:
            number += int(offset) if sign == "+" else -int(offset)
        if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            number = None
    elif name.isalnum():
        number = getattr(signal.Signals, "SIG" + name, None)
    if number is None or number not in signal.valid_signals():
        raise ValueError(f"invalid signal {text!r}")
    return number

"""Signal names as users type them, in a module of its own: ``boxd-runtime kill`` reads
them without importing the records (attrs)."""

from __future__ import annotations

import functools
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
    if number is None or number not in _valid_numbers():
        raise ValueError(f"invalid signal: {text}")  # moby's words
    return number


@functools.cache
def _valid_numbers() -> frozenset[int]:
    """The numbers of this system's signals, as plain ints: ``signal.valid_signals()``
    makes a ``Signals`` member of each of its 62 numbers at every call (64 us), and a
    container's configuration checks its stop signal each time one is made."""
    return frozenset([int(s) for s in signal.valid_signals()])

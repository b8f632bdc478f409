"""Signal names as users type them, in a module of its own: ``boxd-runtime kill`` reads
them without importing the records (attrs)."""

from __future__ import annotations

import re
import signal


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15``; a real-time one as Docker names it,
    ``SIGRTMIN+3`` or ``RTMAX-1`` (systemd stops on SIGRTMIN+3: its images say so in
    STOPSIGNAL), or by number."""
    t = text.strip().upper()
    try:
        if t.isdigit():
            number = int(t)
            if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
                return number
            return signal.Signals(number)
        name = t if t.startswith("SIG") else "SIG" + t
        realtime = re.fullmatch(r"SIGRT(MIN\+|MAX-)(\d+)", name)
        if realtime is None:
            return signal.Signals[name]
        offset = int(realtime[2])
        number = signal.SIGRTMIN + offset if realtime[1] == "MIN+" else signal.SIGRTMAX - offset
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return number
    except (KeyError, ValueError):
        pass
    raise ValueError(f"invalid signal {text!r}")

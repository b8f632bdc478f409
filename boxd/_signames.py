"""Signal names as users type them, in a module of its own: ``boxd-runtime kill`` reads
them without importing the records (attrs)."""

from __future__ import annotations

import signal


def parse_signal(text: str) -> signal.Signals:
    """``TERM``, ``SIGTERM``, ``sigterm`` or ``15``."""
    t = text.strip().upper()
    try:
        if t.isdigit():
            return signal.Signals(int(t))
        return signal.Signals[t if t.startswith("SIG") else "SIG" + t]
    except (KeyError, ValueError):
        raise ValueError(f"invalid signal {text!r}") from None

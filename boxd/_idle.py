"""Connections that wait for a request: each has a deadline, and only so many may wait.

A client sends its request as soon as it has connected, so a connection that stays silent
costs a task and a file descriptor and does no work.  Refusing new connections once many
are open (a global cap) lets a few hundred silent ones lock out every real client, ``ps``
included.  Instead, the waiting ones are bounded: when one more starts to wait than the
limit allows, the one that has waited longest is closed.  A real client, which sends its
request at once, is never the one that has waited longest.  Connections that are doing
work (a request being served, an attached stream) are not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio


class Wait:
    """One connection's wait for its next request."""

    def __init__(self, timeout: float) -> None:
        self.scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        self.evicted = False  # closed to make room for a newer connection

    @property
    def timed_out(self) -> bool:
        return self.scope.cancelled_caught and not self.evicted


class WaitingConnections:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waits: dict[Wait, None] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._waits)

    @contextlib.contextmanager
    def waiting(self, timeout: float) -> Iterator[Wait]:
        """Wait (for a request) in the body; afterwards ``evicted`` or ``timed_out`` tells
        whether the wait was cut short."""
        wait = Wait(timeout)
        self._waits[wait] = None
        if len(self._waits) > self.limit:
            oldest = next(iter(self._waits))
            del self._waits[oldest]
            oldest.evicted = True
            oldest.scope.cancel(reason="too many connections wait for a request")
        try:
            with wait.scope:
                yield wait
        finally:
            self._waits.pop(wait, None)

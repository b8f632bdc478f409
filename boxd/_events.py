"""Container events, as Docker reports them: create, start, die (with exitCode; after oom
when the OOM killer ended it), pause, unpause and destroy are changes of phase; kill (with
signal), stop, restart, rename, update, attach and exec_create, exec_start, exec_die (with
execID, exitCode) are reported by the supervisor's verbs; health_status: STATUS by the
health checks (boxd._health).

The supervisor hands every container record it saves to :meth:`Events.observe` and every
removal to :meth:`Events.removed`; the events are the changes of phase between two saves.
Subscribers get the events from the moment they subscribe (a bounded buffer each: one that
falls behind is dropped, never the supervisor slowed); the last :data:`HISTORY` events are
kept for ``since``: 256, as Docker's daemon keeps.  Each event holds its container's id,
name, image and labels, so a longer history kept those of long-removed containers alive
(~0.2 MB at 1024), scattered through memory that a burst of starts had filled.
"""

from __future__ import annotations

import collections
import time

import attrs
import trio

from ._records import Container

HISTORY = 256
SUBSCRIBER_BUFFER = 1024
_ENDED = ("exited", "stopped", "restarting")
_WITH_PROCESS = ("running", "paused", "stopping")


@attrs.frozen
class Event:
    time_ns: int
    action: str
    id: str
    name: str
    image: str
    labels: tuple[str, ...]  # "KEY=VALUE"
    attributes: tuple[tuple[str, str], ...] = ()  # e.g. (("exitCode", "0"),)


class Events:
    def __init__(self) -> None:
        self._phase: dict[str, str] = {}
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()

    def subscribe(self) -> tuple[list[Event], trio.MemoryReceiveChannel[Event]]:
        """The events kept so far, and a channel of those to come."""
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        return list(self._history), receive

    def observe(self, c: Container) -> None:
        """A container's record was saved: report its change of phase, if any."""
        phase = c.state.status.value
        before = self._phase.get(c.id)
        self._phase[c.id] = phase
        if phase == before:
            return
        if phase == "created" and before is None:
            self._emit("create", c)
        elif phase == "running":
            self._emit("unpause" if before == "paused" else "start", c)
        elif phase == "paused":
            self._emit("pause", c)
        elif phase in _ENDED and before in _WITH_PROCESS:
            if c.state.oom_killed:
                self._emit("oom", c)
            self._emit("die", c, exitCode=str(c.state.exit_code or 0))

    def report(self, action: str, c: Container, **attributes: str) -> None:
        """An event that is no change of phase: kill, stop, rename, exec_start, ..."""
        self._emit(action, c, **attributes)

    def removed(self, c: Container) -> None:
        self._phase.pop(c.id, None)
        self._emit("destroy", c)

    def _emit(self, action: str, c: Container, **attributes: str) -> None:
        event = Event(
            time_ns=time.time_ns(),
            action=action,
            id=c.id,
            name=c.name,
            image=c.config.image,
            labels=c.config.labels,
            attributes=tuple(attributes.items()),
        )
        self._history.append(event)
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()

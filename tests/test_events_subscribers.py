"""The fan-out of the daemon's events (boxd/_events.py) to its ``events`` streams, the
native socket's and the Engine API's: real Trio channels, no daemon needed."""

from __future__ import annotations

from boxd._events import Events


async def test_ended_streams_are_forgotten_before_the_next_event() -> None:
    """A quiet daemon polled for its events (a stream opened and given up, again and
    again, and no event meanwhile) held every poller's channel until the next event: the
    daemon's memory grew with each poll."""
    events = Events()
    for _ in range(1000):
        _, channel = events.subscribe()
        channel.close()
    _, live = events.subscribe()
    assert len(events._subscribers) == 1
    events.volume("create", "v")
    assert live.receive_nowait().action == "create"

"""The fan-out of the daemon's events (boxd/_events.py) to its ``events`` streams, the
native socket's and the Engine API's: real Trio channels, no daemon needed."""

from __future__ import annotations

import pytest
import trio

from boxd._events import SUBSCRIBER_BUFFER, Events


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


async def test_a_reader_far_behind_misses_events_and_keeps_its_stream() -> None:
    """A reader more than SUBSCRIBER_BUFFER events behind misses those that find its buffer
    full, and its stream goes on, as Docker's publisher drops them for a slow subscriber;
    boxd ended the stream (``docker events`` exited, as if the daemon had gone)."""
    events = Events()
    _, slow = events.subscribe()
    for i in range(SUBSCRIBER_BUFFER + 100):
        events.volume("create", f"v{i}")
    got = [slow.receive_nowait() for _ in range(SUBSCRIBER_BUFFER)]
    assert [e.id for e in got] == [f"v{i}" for i in range(SUBSCRIBER_BUFFER)]
    events.volume("destroy", "v0")
    assert slow.receive_nowait().action == "destroy"
    with pytest.raises(trio.WouldBlock):
        slow.receive_nowait()

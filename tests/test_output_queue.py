"""The fan-out of a container's output (boxd/_output.py): an attached client that does not
read is dropped once it holds SUBSCRIBER_BYTES of unread output (or SUBSCRIBER_BUFFER
chunks), whatever the chunks' sizes; one that reads is never dropped; the foreground
(lossless) client waits instead.  Real Trio channels, no daemon needed: the daemon's attach
paths all subscribe here."""

from __future__ import annotations

import trio

from boxd._output import SUBSCRIBER_BUFFER, SUBSCRIBER_BYTES, Output

MIB = 1024 * 1024


async def _drain(channel: trio.MemoryReceiveChannel[tuple[int, bytes]]) -> list[int]:
    """Sizes of what the channel held, up to its end (it must end: the subscriber was
    dropped or the output closed)."""
    with trio.fail_after(5):
        return [len(data) async for _, data in channel]


async def test_a_slow_subscriber_is_dropped_at_its_byte_bound() -> None:
    output = Output()
    slow = output.subscribe()
    for _ in range(SUBSCRIBER_BYTES // MIB + 3):
        await output.publish(1, b"x" * MIB)
    # It got what fits in the bound, then its end: not 64 MiB held for it.
    assert await _drain(slow) == [MIB] * (SUBSCRIBER_BYTES // MIB)


async def test_a_reader_frees_its_room() -> None:
    output = Output()
    reader = output.subscribe()
    got = 0
    for _ in range(3 * SUBSCRIBER_BYTES // MIB):
        await output.publish(1, b"x" * MIB)
        _, data = reader.receive_nowait()  # read as it comes: never behind
        got += len(data)
    assert got == 3 * SUBSCRIBER_BYTES
    # Half read: room for that half again, one more is too many.
    for _ in range(SUBSCRIBER_BYTES // MIB):
        await output.publish(1, b"y" * MIB)
    for _ in range(SUBSCRIBER_BYTES // MIB // 2):
        reader.receive_nowait()
    for _ in range(SUBSCRIBER_BYTES // MIB // 2 + 1):
        await output.publish(1, b"z" * MIB)
    assert await _drain(reader) == [MIB] * (SUBSCRIBER_BYTES // MIB)


async def test_small_chunks_are_bounded_by_count() -> None:
    output = Output()
    slow = output.subscribe()
    for _ in range(SUBSCRIBER_BUFFER + 1):
        await output.publish(2, b"a")
    assert await _drain(slow) == [1] * SUBSCRIBER_BUFFER


async def test_the_foreground_client_waits_instead() -> None:
    output = Output()
    foreground = output.subscribe(lossless=True)
    other = output.subscribe()
    sizes: list[int] = []
    async with trio.open_nursery() as nursery:

        async def read_all() -> None:
            sizes.extend(await _drain(foreground))

        nursery.start_soon(read_all)
        for _ in range(2 * SUBSCRIBER_BYTES // MIB):
            await output.publish(1, b"x" * MIB)
        output.close()
    assert sizes == [MIB] * (2 * SUBSCRIBER_BYTES // MIB)
    assert await _drain(other) == [MIB] * (SUBSCRIBER_BYTES // MIB)


async def test_gone_subscribers_are_forgotten_before_the_next_output() -> None:
    """A quiet container attached to again and again (each client gone before it wrote
    anything) held every attach's channel until it wrote: the daemon's memory grew."""
    output = Output()
    for lossless in (False, True) * 500:
        output.subscribe(lossless=lossless).close()
    live = output.subscribe()
    assert (len(output._subscribers), len(output._lossless)) == (1, 0)
    await output.publish(1, b"x")
    assert live.receive_nowait() == (1, b"x")

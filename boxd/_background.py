"""A worker thread's call that the caller awaits later, doing its own work on the event loop
meanwhile (a start makes its cgroup while its directories are made in a thread)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class InThread(Generic[T]):
    """``fn(*args)`` in a worker thread (``limiter``), started by a task of ``nursery``;
    :meth:`result` waits for it.  Not cancellable, as a thread is not: the caller must
    await :meth:`result` (also when it fails itself) before it undoes what ``fn`` did."""

    def __init__(
        self,
        nursery: trio.Nursery,
        limiter: trio.CapacityLimiter,
        fn: Callable[..., T],
        *args: object,
    ) -> None:
        self._done = trio.Event()
        self._value: list[T] = []  # one when fn returned
        self._error: BaseException | None = None
        nursery.start_soon(self._run, limiter, fn, args)

    async def _run(
        self, limiter: trio.CapacityLimiter, fn: Callable[..., T], args: tuple[object, ...]
    ) -> None:
        try:
            with trio.CancelScope(shield=True):
                self._value.append(await trio.to_thread.run_sync(fn, *args, limiter=limiter))
        except BaseException as exc:  # the caller's to handle, in its own task
            self._error = exc
        finally:
            self._done.set()

    async def result(self) -> T:
        """``fn``'s return value, or its exception raised here (a schedule point, not a
        cancel point)."""
        with trio.CancelScope(shield=True):
            await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value[0]

"""A running container's health checks, as Docker runs them.

Imported only when a container with a health check starts (the configuration and state
records are in :mod:`boxd._healthcheck`).  :func:`watch` runs in the run's own nursery,
beside its reaper, so the checks end with the container and are cancelled with it.

Every ``interval`` (``start_interval`` while the container is starting within its start
period) the check runs as an ``exec`` would: the container's namespaces, cgroup, user,
capabilities and seccomp filter, its output (stdout and stderr together, the first 4 KiB)
kept in the health log and never in the container's log.  A check still running after
``timeout`` is killed and fails with exit code -1; so does one that cannot start.  The
first success makes the container healthy; ``retries`` failures in a row make it unhealthy
(failures within the start period do not count while it is starting).  A change of status
is written to the record and reported as ``health_status: STATUS``; the checks are not run
while the container is paused or stopping, and one running when it is paused or stopped is
killed and forgotten (no result: Docker's monitor stops at a pause and starts again at the
unpause, so a frozen check never times out).  When the container ends its status becomes
unhealthy (Docker's rule), and each start begins again at starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import trio

from ._healthcheck import (
    HEALTHY,
    LOG_ENTRIES,
    OUTPUT_LIMIT,
    STARTING,
    UNHEALTHY,
    Health,
    Healthcheck,
    HealthResult,
    go_duration,
)
from ._lifecycle import RUNNING, Conflict, NoSuchContainer
from ._output import Output

if TYPE_CHECKING:
    from ._run import Run
    from ._supervisor import Supervisor, _Entry

log = logging.getLogger("boxd.health")


def begin(health: Health | None) -> Health:
    """A run's health at its start: starting, its earlier results kept."""
    return Health(STARTING, 0, health.log if health is not None else ())


async def watch(sup: Supervisor, entry: _Entry, run: Run, check: Healthcheck) -> None:
    """Run ``check`` on the container of ``entry`` until ``run`` ends.  A failure of the
    checks' own (a bug, a record that cannot be written) ends the checks, never the run."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_checks, sup, entry, check)
            await run.exited.wait()
            nursery.cancel_scope.cancel(reason="the container ended")
    except Exception:
        log.exception(
            "%s: health checks failed; none run until it starts again",
            entry.container.short_id,
        )
        await run.exited.wait()
    health = entry.container.state.health
    if health is not None:
        health.status = UNHEALTHY


async def _checks(sup: Supervisor, entry: _Entry, check: Healthcheck) -> None:
    c = entry.container
    started = c.state.started_at or time.time()
    while True:
        health = c.state.health
        assert health is not None
        early = health.status == STARTING and time.time() - started < check.start_period
        await trio.sleep(check.start_interval if early else check.interval)
        if entry.phase is not RUNNING:
            continue
        result = await _probe(sup, entry, check)
        if result is not None:
            _record(sup, entry, check, result, started)


def _argv(test: tuple[str, ...]) -> tuple[str, ...]:
    return test[1:] if test[0] == "CMD" else ("/bin/sh", "-c", test[1])


async def _probe(sup: Supervisor, entry: _Entry, check: Healthcheck) -> HealthResult | None:
    """One check's result; None when the container left the running phase meanwhile."""
    left = entry.changed  # set at its next transition: out of the running phase
    output = Output()
    chunks = output.subscribe(lossless=True)
    kept = bytearray()
    truncated = False

    async def collect() -> None:
        nonlocal truncated
        async for _, data in chunks:
            room = OUTPUT_LIMIT - len(kept)
            kept.extend(data[: max(room, 0)])
            truncated = truncated or len(data) > room

    start = time.time()
    code = -1
    text = ""

    async def run_check(task_status: trio.TaskStatus[Run]) -> None:
        nonlocal code
        code = await sup.exec(
            entry.container.id, _argv(check.test), output=output, task_status=task_status
        )

    timed_out = interrupted = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        try:
            proc: Run = await nursery.start(run_check)
        except Exception as exc:
            output.close()  # it never ran: nothing else ends the output
            failure: BaseException = exc
            while isinstance(failure, BaseExceptionGroup) and len(failure.exceptions) == 1:
                failure = failure.exceptions[0]  # exec raises from inside its nursery
            if isinstance(failure, Conflict | NoSuchContainer):
                return None
            code, text = -1, str(failure)  # it could not run: a failed check, as in Docker
        else:
            with trio.move_on_after(check.timeout) as deadline:
                interrupted = await _first(proc.exited, left) is left
            timed_out = deadline.cancelled_caught
            if timed_out or interrupted:
                _kill_group(proc)  # if frozen, it goes at the unpause
    if interrupted:  # paused, stopped or ended meanwhile: no result, as Docker's
        return None
    said = kept.decode(errors="replace") + ("..." if truncated else "")
    if timed_out:  # the exit code of what was killed does not count; what it said does
        code = -1
        text = f"Health check exceeded timeout ({go_duration(check.timeout)})"
        text += f": {said}" if said else ""
    if not text:
        text = said
    return HealthResult(start=start, end=time.time(), exit_code=code, output=text)


async def _first(*events: trio.Event) -> trio.Event:
    """The first of ``events`` to be set."""
    done: list[trio.Event] = []
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                done.append(event)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
    return done[0]


def _kill_group(proc: Run) -> None:
    """Kill a check that outlived its timeout, with what it started (``sh -c`` forks): an
    exec'd process leads a session of its own (setsid), so its process group is its pid.
    The pid stays that group's while any member lives, even once the leader is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _record(
    sup: Supervisor, entry: _Entry, check: Healthcheck, result: HealthResult, started: float
) -> None:
    c = entry.container
    health = c.state.health
    assert health is not None
    before = health.status
    status, streak = before, health.failing_streak
    if result.exit_code == 0:
        status, streak = HEALTHY, 0
    elif before != STARTING or result.start - started >= check.start_period:
        streak += 1
        if streak >= check.retries:
            status = UNHEALTHY
    c.state.health = Health(status, streak, (*health.log, result)[-LOG_ENTRIES:])
    if status != before:
        log.info("%s: %s", c.short_id, status)
        sup._save(c)
        sup.events.report(f"health_status: {status}", c)

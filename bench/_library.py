"""boxd as a library, timed inside one Python process: ``python -m bench._library``.

Run as a child of the bench so that a crash in the native code is a reported error, not the
end of the run.  It answers rounds the bench asks for on stdin (see :func:`_main`), taken in
turn with crun's: per round, milliseconds (``samples``), or ``{"error": ...}``; ``lag``: the
longest single step of any Trio task during each run or repeat (ms), which is how long the
event loop was blocked at most: a start must not block it for more than 1 ms (issue #17);
``lag_cpu``: that step's CPU time on the loop's thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import trio

import boxd


class LongestStep(trio.abc.Instrument):
    """The longest task step since :meth:`take`: while one runs, no other task does.  Also
    that step's CPU time on the loop's thread (``time.thread_time``), for information: the
    rest of its wall time the thread waited (for a CPU, the GIL, the disk)."""

    def __init__(self) -> None:
        self.longest = self.longest_cpu = 0.0
        self._began = self._began_cpu = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._began = time.perf_counter()
        self._began_cpu = time.thread_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        wall = time.perf_counter() - self._began
        if wall > self.longest:
            self.longest = wall
            self.longest_cpu = time.thread_time() - self._began_cpu

    def take(self, cpu: list[float]) -> float:
        """Milliseconds of the longest step since the last call (its CPU appended to
        ``cpu``)."""
        longest, self.longest = self.longest, 0.0
        cpu.append(self.longest_cpu * 1000)
        self.longest_cpu = 0.0
        return longest * 1000


STEPS = LongestStep()


def _config(image: str) -> boxd.ContainerConfig:
    # No network: crun's bundle has a network namespace with only its loopback, as here.
    return boxd.ContainerConfig(
        image=image,
        command=("/bin/true",),
        resources=boxd.Resources(memory=64 << 20),
        network="none",
    )


async def _one(sup: boxd.Supervisor, config: boxd.ContainerConfig) -> None:
    c = await sup.run(config)
    try:
        code = await sup.wait(c.id)
    finally:
        await sup.remove(c.id)
    if code != 0:
        raise RuntimeError(f"/bin/true in container {c.id} exited {code}")


async def _start(
    sup: boxd.Supervisor,
    config: boxd.ContainerConfig,
    runs: int,
    lag: list[float],
    cpu: list[float],
) -> list[float]:
    """Each run: run, wait (timed), then remove (not timed, as crun's delete is in its run)."""
    samples = []
    for _ in range(runs):
        STEPS.take([])
        t0 = time.perf_counter_ns()
        c = await sup.run(config)
        code = await sup.wait(c.id)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        lag.append(STEPS.take(cpu))
        await sup.remove(c.id)
        if code != 0:
            raise RuntimeError(f"/bin/true in container {c.id} exited {code}")
    return samples


async def _sequential(
    sup: boxd.Supervisor,
    config: boxd.ContainerConfig,
    count: int,
    repeats: int,
    lag: list[float],
    cpu: list[float],
) -> list[float]:
    samples = []
    for _ in range(repeats):
        STEPS.take([])
        t0 = time.perf_counter_ns()
        for _ in range(count):
            await _one(sup, config)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        lag.append(STEPS.take(cpu))
    return samples


async def _concurrent(
    sup: boxd.Supervisor,
    config: boxd.ContainerConfig,
    count: int,
    repeats: int,
    lag: list[float],
    cpu: list[float],
) -> list[float]:
    samples = []
    for _ in range(repeats):
        STEPS.take([])
        t0 = time.perf_counter_ns()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(_one, sup, config)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        lag.append(STEPS.take(cpu))
    return samples


def _first_error(group: BaseExceptionGroup[Exception]) -> str:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def _round(
    sup: boxd.Supervisor, config: boxd.ContainerConfig, mode: str, n: int, count: int
) -> dict[str, Any]:
    """One round of ``mode``: ``n`` runs (start) or repeats of ``count`` containers."""
    lag: list[float] = []
    cpu: list[float] = []
    shapes = {"sequential": _sequential, "concurrent": _concurrent}
    if mode != "start" and mode not in shapes:
        return {"error": f"unknown mode {mode!r}"}
    answer: dict[str, Any] = {}
    try:
        if mode == "start":
            # One start first, not counted: the peer's round just before took the caches,
            # as hyperfine's warm-up run gives crun its own back.
            await _start(sup, config, 1, [], [])
            samples = await _start(sup, config, n, lag, cpu)
        else:
            samples = await shapes[mode](sup, config, count, n, lag, cpu)
        answer = {"samples": samples, "lag": lag, "lag_cpu": cpu}
    except* Exception as group:  # reported per round; the next request still runs
        answer = {"error": _first_error(group)}
    return answer


async def _main(args: argparse.Namespace) -> None:
    """Rounds on request, so that the bench can take them in turn with a peer's: each
    line of stdin ``MODE N COUNT`` (``start``, ``sequential`` or ``concurrent``; N runs or
    repeats of COUNT containers) gets one JSON line on stdout; the supervisor stays open
    between them."""
    config = _config(args.image)
    async with boxd.open_supervisor(args.root) as sup:
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            mode, n, count = line.split()
            answer = await _round(sup, config, mode, int(n), int(count))
            print(json.dumps(answer), flush=True)
        for c in sup.list(all=True):
            await sup.remove(c.id, force=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench._library")
    p.add_argument("--root", type=Path, required=True, help="the supervisor's state directory")
    p.add_argument("--image", required=True, help="root filesystem directory")
    trio.run(_main, p.parse_args(), instruments=[STEPS])


if __name__ == "__main__":
    main()

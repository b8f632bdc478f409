"""boxd as a library, timed inside one Python process: ``python -m bench._library``.

Run as a child of the bench so that a crash in the native code is a reported error, not the
end of the run.  Prints one JSON object: per mode, milliseconds, or ``{"error": ...}``; and
per mode ``<mode>_lag``: the longest single step of any Trio task during each repeat (ms),
which is how long the event loop was blocked at most: a start must not block it for more
than 1 ms (issue #17); ``<mode>_lag_cpu``: that step's CPU time on the loop's thread.
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


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    config = _config(args.image)
    async with boxd.open_supervisor(args.root) as sup:
        for mode in args.modes.split(","):
            lag: list[float] = []
            cpu: list[float] = []
            try:
                if mode == "start":
                    out[mode] = await _start(sup, config, args.runs, lag, cpu)
                elif mode == "sequential":
                    out[mode] = await _sequential(
                        sup, config, args.sequential, args.repeats, lag, cpu
                    )
                else:
                    out[mode] = await _concurrent(
                        sup, config, args.concurrent, args.repeats, lag, cpu
                    )
                out[f"{mode}_lag"] = lag
                out[f"{mode}_lag_cpu"] = cpu
            except* Exception as group:  # reported per mode; the other modes still run
                error = {"error": _first_error(group)}
                out[mode] = out[f"{mode}_lag"] = out[f"{mode}_lag_cpu"] = error
        for c in sup.list(all=True):
            await sup.remove(c.id, force=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench._library")
    p.add_argument("--root", type=Path, required=True, help="the supervisor's state directory")
    p.add_argument("--image", required=True, help="root filesystem directory")
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--sequential", type=int, required=True)
    p.add_argument("--concurrent", type=int, required=True)
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument(
        "--modes",
        default="start,sequential,concurrent",
        help="the modes to run (each is measured when the bench's case for it runs)",
    )
    json.dump(trio.run(_main, p.parse_args(), instruments=[STEPS]), sys.stdout)


if __name__ == "__main__":
    main()

"""boxd as a library, timed inside one Python process: ``python -m bench._library``.

Run as a child of the bench so that a crash in the native code is a reported error, not the
end of the run.  Prints one JSON object: per mode, milliseconds, or ``{"error": ...}``.
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


def _config(image: str) -> boxd.ContainerConfig:
    return boxd.ContainerConfig(
        image=image, command=("/bin/true",), resources=boxd.Resources(memory=64 << 20)
    )


async def _one(sup: boxd.Supervisor, config: boxd.ContainerConfig) -> None:
    c = await sup.run(config)
    try:
        code = await sup.wait(c.id)
    finally:
        await sup.remove(c.id)
    if code != 0:
        raise RuntimeError(f"/bin/true in container {c.id} exited {code}")


async def _start(sup: boxd.Supervisor, config: boxd.ContainerConfig, runs: int) -> list[float]:
    """Each run: run, wait (timed), then remove (not timed, as crun's delete is in its run)."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        c = await sup.run(config)
        code = await sup.wait(c.id)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        await sup.remove(c.id)
        if code != 0:
            raise RuntimeError(f"/bin/true in container {c.id} exited {code}")
    return samples


async def _sequential(
    sup: boxd.Supervisor, config: boxd.ContainerConfig, count: int, repeats: int
) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(count):
            await _one(sup, config)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


async def _concurrent(
    sup: boxd.Supervisor, config: boxd.ContainerConfig, count: int, repeats: int
) -> list[float]:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(_one, sup, config)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
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
        for mode in ("start", "sequential", "concurrent"):
            try:
                if mode == "start":
                    out[mode] = await _start(sup, config, args.runs)
                elif mode == "sequential":
                    out[mode] = await _sequential(sup, config, args.sequential, args.repeats)
                else:
                    out[mode] = await _concurrent(sup, config, args.concurrent, args.repeats)
            except* Exception as group:  # reported per mode; the other modes still run
                out[mode] = {"error": _first_error(group)}
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
    json.dump(trio.run(_main, p.parse_args()), sys.stdout)


if __name__ == "__main__":
    main()

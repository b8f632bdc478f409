"""Servers a test runs in a daemon's network namespace (the log drivers' syslog and GELF
inputs): each a Python script that prints its port, then writes what it gets to a file."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def servers(
    netns: str, script: str, kinds: Sequence[str], directory: Path
) -> Iterator[dict[str, tuple[int, Path]]]:
    """``script`` run as ``script KIND FILE`` for each of ``kinds`` in ``netns``: by kind,
    the port it printed and the file it writes (``directory/KIND.out``); killed at the
    end, whatever happened."""
    found: dict[str, tuple[int, Path]] = {}
    procs: list[subprocess.Popen[str]] = []
    try:
        for kind in kinds:
            out = directory / f"{kind}.out"
            out.touch()
            proc = subprocess.Popen(
                ["nsenter", f"--net={netns}", sys.executable, "-c", script, kind, str(out)],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            found[kind] = (int(proc.stdout.readline()), out)
        yield found
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def json_lines(path: Path, count: int, timeout: float = 10) -> list[Any]:
    """What a server wrote to ``path``, a JSON value a line, once there are ``count`` of
    them (or ``timeout`` seconds have passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [json.loads(line) for line in path.read_text().splitlines()]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)

"""Timing: hyperfine for command lines, and the helpers that say why a command failed."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_exports = itertools.count()


class CommandFailed(RuntimeError):
    pass


def run_checked(argv: Sequence[str], *, timeout: float = 300) -> str:
    """Run once; stdout on success, else :class:`CommandFailed` with the tail of stderr."""
    r = subprocess.run(
        list(argv), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, text=True
    )
    if r.returncode != 0:
        tail = (r.stderr.strip() or r.stdout.strip())[-400:]
        raise CommandFailed(f"{shlex.join(argv)} exited {r.returncode}: {tail or 'no output'}")
    return r.stdout


def hyperfine(
    argv: Sequence[str],
    *,
    runs: int,
    work: Path,
    warmup: int = 1,
    wrap: Sequence[str] = (),
    timeout: float = 600,
) -> list[float]:
    """Milliseconds of each of ``runs`` runs of ``argv`` (no shell between), by hyperfine.

    ``wrap`` runs hyperfine itself inside another command (cgns.sh), so the wrapper's cost
    is paid once and not counted.  On failure the command is run once more, directly, to
    show its own error instead of hyperfine's.
    """
    export = work / f"hyperfine-{next(_exports)}.json"
    command = [
        *wrap,
        "hyperfine",
        "--shell=none",
        "--style=none",
        f"--runs={runs}",
        f"--warmup={warmup}",
        f"--export-json={export}",
        shlex.join(argv),
    ]
    r = subprocess.run(
        command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, text=True
    )
    if r.returncode != 0:
        run_checked([*wrap, *argv], timeout=timeout)
        raise CommandFailed(f"hyperfine failed: {r.stderr.strip()[-400:]}")
    results = json.loads(export.read_text())["results"]
    return [t * 1000 for t in results[0]["times"]]


def shell_script(work: Path, name: str, body: str) -> list[str]:
    """A POSIX sh script in the work directory, as an argv."""
    path = work / f"{name}.sh"
    path.write_text("set -u\n" + body + "\n")
    return ["sh", str(path)]


def sequential(command: str, count: int) -> str:
    """Shell: ``command`` ``count`` times, one after another; ``$i`` is the run's number."""
    return f'i=0\nwhile [ "$i" -lt {count} ]; do\n  {command} || exit 1\n  i=$((i + 1))\ndone'


def concurrent(command: str, count: int) -> str:
    """Shell: ``count`` copies of ``command`` at once; fails if any fails."""
    return (
        f'pids=""\ni=0\nwhile [ "$i" -lt {count} ]; do\n  {command} &\n  pids="$pids $!"\n'
        '  i=$((i + 1))\ndone\nrc=0\nfor p in $pids; do wait "$p" || rc=1; done\nexit "$rc"'
    )


def in_turn(
    commands: dict[str, list[str] | Exception],
    runs: int,
    *,
    settle: float = 0.0,
    after: Callable[[], None] | None = None,
) -> dict[str, list[float] | Exception]:
    """Milliseconds of ``runs`` runs of each command, taken in turn: one of each per round,
    the order turned by one every round, after a first round that is not counted; a pause
    of ``settle`` seconds after each run, and ``after`` called (untimed).  A command that
    failed (or fails here) keeps its error and leaves the rounds."""
    out: dict[str, list[float] | Exception] = {
        k: v if isinstance(v, Exception) else [] for k, v in commands.items()
    }
    keys = [k for k, v in commands.items() if not isinstance(v, Exception)]
    for i in range(runs + 1):
        shift = i % len(keys) if keys else 0
        for key in keys[shift:] + keys[:shift]:
            command, samples = commands[key], out[key]
            if isinstance(samples, Exception) or isinstance(command, Exception):
                continue
            try:
                ms = timed_once(command)
            except Exception as exc:
                out[key] = exc
                continue
            if i:
                samples.append(ms)
            if after is not None:
                after()
            time.sleep(settle)
    return out


def samples(timed: dict[str, list[float] | Exception], name: str) -> list[float]:
    got = timed[name]
    if isinstance(got, Exception):
        raise got
    return got


def timed_once(argv: list[str]) -> float:
    """Milliseconds of one run of ``argv``, output dropped (as hyperfine's default).  Started
    with posix_spawn and reaped with waitpid: subprocess.run (its pipe, and its start of the
    child from this process) cost ~1.3 ms more per run here (minimum of 150 runs of
    ``python -c pass``: 13.1 against 11.8 ms), a tenth of the shortest command timed, which
    pulled the ratios of the pairs taken in turn towards 1 (session 8)."""
    with tempfile.TemporaryFile() as errors:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, errors.fileno(), 2),
        ]
        # The signals subprocess gives back their default action (Python ignores them).
        default = [signal.SIGPIPE, signal.SIGXFSZ]
        began = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsigdef=default)
        _, status = os.waitpid(pid, 0)
        ms = (time.perf_counter() - began) * 1000
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"{shlex.join(argv)} exited {code}: {tail or 'no output'}")
    return ms

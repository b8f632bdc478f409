"""Timing: hyperfine for command lines, and the helpers that say why a command failed."""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
from collections.abc import Sequence
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

"""``top``: the host's ``ps`` with the caller's options, cut down to a container's processes.

As Docker does it: ``ps`` runs on the host (default ``-ef``) with ``-q PIDS`` added, so
that options which select no processes of their own (``-o pid,comm``) still list the
container's (``ps`` refuses ``-q`` beside some options, such as ``f``: then it runs
without); its header gives the column titles, and a row is kept when its PID is one of
the processes of the container's cgroup.  The last column (the command) may hold spaces,
so each row is split into as many fields as there are titles.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import trio

DEFAULT_ARGS = ("-ef",)


async def top(pids: Collection[int], ps_args: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(titles, rows) of ``ps ps_args`` for the processes ``pids``; ValueError when ps
    refuses the options or its output has no PID column."""
    args = list(ps_args or DEFAULT_ARGS)
    selected = ["-q", ",".join(str(pid) for pid in sorted(pids))] if pids else []
    result = await trio.run_process(
        ["ps", *args, *selected], capture_stdout=True, capture_stderr=True, check=False
    )
    if result.returncode != 0 and selected:
        result = await trio.run_process(
            ["ps", *args], capture_stdout=True, capture_stderr=True, check=False
        )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"ps {' '.join(args)}: {reason[0] if reason else 'failed'}")
    return parse(result.stdout.decode(errors="replace"), pids)


def parse(output: str, pids: Collection[int]) -> tuple[list[str], list[list[str]]]:
    lines = output.splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise ValueError("ps printed no PID column (keep a PID field in -o)")
    at = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        try:
            pid = int(fields[at])
        except (IndexError, ValueError):
            continue
        if pid in pids:
            rows.append(fields)
    return titles, rows

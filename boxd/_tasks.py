"""The running Trio program's tasks: the daemon's dump of them (SIGUSR1, SIGQUIT) and
``/info``'s count (dockerd's goroutines)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import trio

_TRIO = os.path.dirname(trio.__file__) + os.sep


def tasks() -> Iterator[tuple[int, trio.lowlevel.Task]]:
    """Every task of the running ``trio.run``, parents first, each with its depth."""
    root = trio.lowlevel.current_root_task()
    assert root is not None  # called in trio.run
    todo = [(0, root)]
    while todo:
        depth, task = todo.pop()
        yield depth, task
        children = [child for n in task.child_nurseries for child in n.child_tasks]
        todo.extend((depth + 1, child) for child in reversed(children))


def tree() -> list[str]:
    """One line a task, indented by its depth: its name and the innermost line outside
    Trio that it waits at."""
    lines = []
    for depth, task in tasks():
        frames = [(f.f_code.co_filename, line) for f, line in task.iter_await_frames()]
        own = [f"{name}:{line}" for name, line in frames if not name.startswith(_TRIO)]
        lines.append(f"{'  ' * (depth + 1)}{task.name}  at {own[-1] if own else '(Trio)'}")
    return lines

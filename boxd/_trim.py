"""Give the C heap's free pages back to the system.

glibc's malloc keeps what Python frees in its heaps (the main one and one per thread that
allocated) and returns only a free top of each heap, so after a burst of work (containers
started and removed, images pulled) the daemon's resident memory stays at its high-water
mark.  ``malloc_trim(0)`` releases every free page of every heap: ~1 MB of the idle daemon
after twenty runs, in about 0.3 ms.  The daemon calls it once ready and after each batch of
removed containers is cleaned up (in that worker thread).  Other C libraries (musl) have no
such call: nothing is done there.

The daemon also keeps one heap for all its threads (:func:`one_heap`): glibc gives each
thread that allocates a heap of its own (up to eight per CPU), and its worker threads' heaps
(Trio's thread cache: the start's file system work, the removals) kept ~0.1 MB resident
each after a busy spell, which ``malloc_trim`` does not give back (it releases a thread
heap's free chunks, not its free top).

First, the spawn extension unmaps the stacks its children ran on until they exec'd, which
it otherwise does only at its next spawn: after twenty starts at once, ~0.5 MB.
"""

from __future__ import annotations

import sys

from . import _syscalls

_M_ARENA_MAX = -8  # glibc's malloc.h


def one_heap() -> None:
    """Every thread allocates from the main heap (glibc only; before threads start).  The
    daemon's threads mostly hold Python's GIL while they allocate: one heap costs them no
    waiting worth a heap each."""
    mallopt = getattr(_syscalls.libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 1)


def release_free_memory() -> None:
    """Return the free pages of the C heaps to the system (glibc only), and the children's
    stacks no child runs on any more."""
    native = sys.modules.get("sandbox_native")  # not imported (nor needed) before a spawn
    if native is not None:
        native.release_stacks()
    malloc_trim = getattr(_syscalls.libc(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)

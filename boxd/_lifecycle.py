"""A container's lifecycle: its phases and every allowed transition, in one place.

A container is in exactly one phase (:class:`~boxd._records.Status`, stored in its record
and shown by ``ps`` and ``inspect``)::

    created ──start──▶ starting ──spawned──▶ running ◀──unpause── paused
       ▲                  │                   │  │ └──────pause──────▲
       └──spawn failed────┘ (never ran)       │  └─stop─▶ stopping ──▶ stopped
                                              │                         │
    exited ◀──ended by itself─────────────────┤ (killed: stopped)       │
      │         restarting ◀──ended, policy───┘                         │
      │            └──backoff over──▶ starting                          │
      └──────────────────────────── start / rm ◀─────────────────────────┘
                                         rm ──▶ removing ──▶ (gone)

The supervisor changes a phase only through :func:`check_transition`, and every verb asks
a predicate (``can_start``, ``can_pause``, ...) before it acts; a verb that does not fit
the phase is refused with :class:`Conflict`, whose message says why in the user's terms.

A daemon that starts finds each record in the phase its predecessor last wrote.  A record
in a live phase (:data:`LIVE`) whose process still runs is a container found running:
adopted by the new daemon where live restore keeps it, otherwise killed and recorded as
exited; one whose process is gone ended while no daemon watched it.
"""

from __future__ import annotations

from ._records import Status

CREATED = Status.CREATED
STARTING = Status.STARTING
RUNNING = Status.RUNNING
PAUSED = Status.PAUSED
RESTARTING = Status.RESTARTING
STOPPING = Status.STOPPING
STOPPED = Status.STOPPED
EXITED = Status.EXITED
REMOVING = Status.REMOVING

# Phases in which the container has a lifecycle task (a process, or a restart pending).
LIVE = frozenset({STARTING, RUNNING, PAUSED, RESTARTING, STOPPING})
# Phases in which its process exists (and may be signalled).
WITH_PROCESS = frozenset({RUNNING, PAUSED, STOPPING})
# Phases in which it is at rest: it can be started or removed.
AT_REST = frozenset({CREATED, STOPPED, EXITED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    CREATED: frozenset({STARTING, REMOVING}),
    # Spawning failed: back to created (it never ran) or exited; a restart that failed
    # waits for the next one (restarting).
    STARTING: frozenset({RUNNING, CREATED, EXITED, RESTARTING}),
    RUNNING: frozenset({PAUSED, STOPPING, STOPPED, EXITED, RESTARTING}),
    # A paused process can still end (SIGKILL, the OOM killer on cgroup v2).
    PAUSED: frozenset({RUNNING, STOPPING, STOPPED, EXITED}),
    RESTARTING: frozenset({STARTING, STOPPED}),
    STOPPING: frozenset({STOPPED}),
    STOPPED: frozenset({STARTING, REMOVING}),
    EXITED: frozenset({STARTING, REMOVING}),
    REMOVING: frozenset(),
}


class Conflict(RuntimeError):
    """The container is not in a phase that allows the request."""


class NoSuchContainer(LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such container: {ref}")


class AmbiguousContainer(LookupError):
    """An id prefix that several containers have: no one container, but not a missing
    one either (``rm -f`` must not pass over it as gone, nor ``inspect`` look for an
    image instead).  Docker's words."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"multiple IDs found with provided prefix: {ref}")


def error_text(exc: BaseException) -> str:
    """What a client is told of a failed request: the error's message; for a system
    call's error (an OSError without a message of its own) its reason and the paths it
    names, in dockerd's shape ("/var/lib/x: No space left on device"), not Python's
    ("[Errno 28] No space left on device: '/var/lib/x'")."""
    if not isinstance(exc, OSError) or exc.strerror is None:
        return str(exc)
    if type(exc).__str__ is not OSError.__str__:
        return str(exc)
    paths = " -> ".join([str(p) for p in (exc.filename, exc.filename2) if p is not None])
    return f"{paths}: {exc.strerror}" if paths else exc.strerror


def check_transition(current: Status, new: Status) -> None:
    """Raise AssertionError for a transition the lifecycle does not have (a bug)."""
    if new not in TRANSITIONS[current]:
        raise AssertionError(f"no transition from {current.value} to {new.value}")


def _refuse(name: str, phase: Status, what: str) -> Conflict:
    return Conflict(f"container {name} is {_words(phase)}: {what}")


def _words(phase: Status) -> str:
    return {
        CREATED: "not running",
        STOPPED: "not running",
        EXITED: "not running",
        REMOVING: "being removed",
    }.get(phase, phase.value)


def can_start(name: str, phase: Status) -> bool:
    """True: start it; False: it is already started (a no-op, as in Docker)."""
    if phase in AT_REST:
        return True
    if phase is PAUSED:
        raise _refuse(name, phase, "unpause it instead")
    if phase is REMOVING:  # moby's words, which name no container
        raise Conflict("container is marked for removal and cannot be started")
    return False


def can_stop(phase: Status) -> bool:
    """Whether stop has anything to do (stopping a container at rest is a no-op)."""
    return phase in LIVE


def check_kill(name: str, phase: Status) -> None:
    if phase not in WITH_PROCESS:
        raise _refuse(name, phase, "there is no process to signal")


def check_pause(name: str, phase: Status) -> None:
    if phase is PAUSED:
        raise Conflict(f"container {name} is already paused")
    if phase is not RUNNING:
        raise _refuse(name, phase, "only a running container can be paused")


def check_unpause(name: str, phase: Status) -> None:
    if phase is not PAUSED:
        raise Conflict(f"container {name} is not paused")


def check_exec_between_runs(cid: str, phase: Status) -> None:
    """A paused container, or one waiting for its restart, takes no exec: refused in
    Docker's words (its daemon counts both as running, so its "not running" does not
    come first)."""
    if phase is PAUSED:
        raise Conflict(f"Container {cid} is paused, unpause the container before exec")
    if phase is RESTARTING:
        raise Conflict(f"Container {cid} is restarting, wait until the container is running")


def check_exec(cid: str, name: str, phase: Status) -> None:
    check_exec_between_runs(cid, phase)
    if phase not in (RUNNING, STOPPING):
        raise _refuse(name, phase, "exec needs a running container")


def ended_before_exec(name: str) -> Conflict:
    """An exec refused as :func:`check_exec` refuses it: its container's process ended
    while the exec was being set up (its end not yet recorded)."""
    return _refuse(name, EXITED, "exec needs a running container")


def check_attach(name: str, phase: Status) -> None:
    if phase is PAUSED:
        raise _refuse(name, phase, "unpause it first")
    if phase not in (RUNNING, STOPPING):
        raise _refuse(name, phase, "attach needs a running container")


def check_update(name: str, phase: Status) -> None:
    if phase is REMOVING:
        raise _refuse(name, phase, "its limits can no longer change")


def check_remove(name: str, phase: Status, *, force: bool) -> None:
    """``rm`` takes a container at rest; ``rm -f`` takes it in any phase."""
    if force or phase in AT_REST or phase is REMOVING:
        return
    raise _refuse(name, phase, "stop the container before removing or force remove")  # Docker's


def shown_by_default(phase: Status) -> bool:
    """Whether ``ps`` without ``-a`` lists it (Docker lists paused and restarting ones)."""
    return phase in LIVE

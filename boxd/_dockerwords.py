"""boxd's phases in Docker's words, for ``docker ps``-like lists (the daemon's and the
Engine API's filters, boxctl's STATE and STATUS columns).  Docker has no starting and no
stopping phase, and one "exited" for boxd's stopped (by a request) and exited (by itself).
No imports: boxctl reads it at every ``ps``.
"""

WORDS: dict[str, str] = {
    "created": "created",
    "starting": "created",
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "stopping": "running",
    "stopped": "exited",
    "exited": "exited",
    "removing": "removing",
}


def shown_phase(status: str, ran: bool, restarts: int) -> str:
    """The phase a list shows: a start's is the one before it, as Docker has no word for a
    start and shows its container as it was until its process runs: created (it never
    ``ran``), restarting (its restart policy's start: ``restarts`` counted), exited (a
    start by hand, or the daemon's at its own start)."""
    if status != "starting" or not ran:
        return status
    return "restarting" if restarts else "exited"


# What Docker's ``status`` filter accepts ("dead" is Docker's; no boxd container is).
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def health_suffix(status: str) -> str:
    """What ``ps`` adds to a running container's ``Up ...`` for its health check's status
    (boxd._healthcheck): `` (healthy)``, `` (health: starting)``."""
    return f" (health: {status})" if status == "starting" else f" ({status})"


def command_line(argv: tuple[str, ...] | list[str]) -> str:
    """A container's command as Docker's list shows it (``Command``, ``ps``'s COMMAND):
    its words joined by spaces, a word with a space in it between single quotes."""
    return " ".join(f"'{word}'" if " " in word else word for word in argv)

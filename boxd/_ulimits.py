"""``--ulimit NAME=SOFT[:HARD]`` as Docker takes it: the resource limits a container's
processes (its init and every exec) start with.

NAME is one of :data:`NAMES` (``nofile``, ``nproc``, ``core`` ...); SOFT and HARD are
integers, ``-1`` for unlimited; without HARD the hard limit is SOFT.  The soft limit may
not exceed the hard one.  Limits are set before the process drops its capabilities, so a
hard limit may be raised above the daemon's own.

Imported by boxctl: only the standard library, nothing slow.
"""

from __future__ import annotations

# RLIMIT_* numbers of Linux (asm-generic: x86_64 and aarch64, the architectures boxd runs
# on); Python's resource module lacks some (RLIMIT_LOCKS).
NAMES = {
    "cpu": 0,
    "fsize": 1,
    "data": 2,
    "stack": 3,
    "core": 4,
    "rss": 5,
    "nproc": 6,
    "nofile": 7,
    "memlock": 8,
    "as": 9,
    "locks": 10,
    "sigpending": 11,
    "msgqueue": 12,
    "nice": 13,
    "rtprio": 14,
    "rttime": 15,
}
UNLIMITED = -1
_MAX = 2**63 - 1
# What a container's processes get without --ulimit nofile=: Docker 25+ (containerd 2)
# gives 1024 soft, 524288 hard, not the daemon's own limit (raised, see raise_open_files).
# 1024 keeps select() safe in programs that use it; the hard limit lets those that want
# more raise it themselves.
OPEN_FILES = (1024, 524288)


def open_files() -> tuple[int, int]:
    """:data:`OPEN_FILES`, the hard limit at most the daemon's own: raising it needs
    CAP_SYS_RESOURCE, which a daemon may lack (this project's CI machine's root does)."""
    import resource

    own = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = OPEN_FILES[1] if own == resource.RLIM_INFINITY else min(OPEN_FILES[1], own)
    return min(OPEN_FILES[0], hard), hard


def raise_open_files() -> tuple[int, int]:
    """The daemon's soft RLIMIT_NOFILE raised to its hard limit, as Go daemons do at start:
    a daemon started from a shell has 1024, and every running container holds a few fds
    (pidfd, output pipes, its namespace, the shim's socket).  Returns (old soft, hard)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


def check_ulimit(name: str, soft: int, hard: int, *, text: str = "") -> None:
    """Refuse a limit the kernel would, naming it (as ``text``, the user's spelling)."""
    what = f"invalid --ulimit {text or f'{name}={soft}:{hard}'!r}"
    if name not in NAMES:
        raise ValueError(f"{what}: unknown limit {name!r} (use {', '.join(sorted(NAMES))})")
    for value in (soft, hard):
        if not UNLIMITED <= value <= _MAX:
            raise ValueError(f"{what}: {value} is not a limit (use a number >= 0, or -1)")
    if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
        shown = "unlimited" if soft == UNLIMITED else soft
        raise ValueError(f"{what}: the soft limit {shown} is above the hard limit {hard}")


def parse_ulimit(text: str) -> tuple[str, int, int]:
    """``nofile=1024:4096`` -> (``nofile``, 1024, 4096); ``core=0`` -> (``core``, 0, 0)."""
    name, eq, values = text.partition("=")
    parts = values.split(":")
    if not eq or not name or len(parts) > 2:
        raise ValueError(f"invalid --ulimit {text!r}: use NAME=SOFT[:HARD] (e.g. nofile=1024:2048)")
    try:
        soft = int(parts[0])
        hard = int(parts[1]) if len(parts) == 2 else soft
    except ValueError:
        raise ValueError(
            f"invalid --ulimit {text!r}: limits are integers (-1 for unlimited)"
        ) from None
    check_ulimit(name, soft, hard, text=text)
    return name, soft, hard

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

"""Docker's ``run`` options of which boxd has one setting only: ``--userns host`` (no user
namespace: boxd's is ``--isolate-user``, which boxctl and the Engine API also take as
``--userns private``, mapped before this check) and ``--isolation default``.  What asks for
that setting (or leaves it empty) is taken; anything else is refused naming the option and
the value.  boxctl's options and the Engine API's HostConfig (UsernsMode, Isolation) are
checked here alike.

Imported by boxctl: the standard library only.
"""

from __future__ import annotations

_TAKEN = {
    "userns": ("host",),
    "isolation": ("default",),
}
_WHY = {
    "userns": "use host, or private for a user namespace of its own (--isolate-user)",
}


def check(option: str, value: str) -> None:
    """Refuse a ``value`` of ``option`` (``userns``, ``isolation``) other
    than boxd's one setting, naming both (``--isolation`` in Docker's words)."""
    # Docker reads an isolation in any case ("Default"), the namespace modes as written.
    if not value or (value.lower() if option == "isolation" else value) in _TAKEN[option]:
        return
    if option == "isolation":
        raise ValueError(f"Invalid isolation: {value!r} - linux only supports 'default'")
    raise ValueError(f"invalid --{option} {value!r}: {_WHY[option]}")

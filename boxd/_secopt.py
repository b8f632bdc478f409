"""``--security-opt`` items as Docker reads them, for boxctl and the Engine API's
SecurityOpt: ``KEY=VALUE``, else Docker's older ``KEY:VALUE`` (deprecated there, still
taken)."""

from __future__ import annotations

# Keys of what boxd has none of: the value that asks for none, and what boxd lacks.
_UNCONFINED = {
    "apparmor": ("unconfined", "AppArmor profiles"),
    "label": ("disable", "SELinux labels"),
}


def split(opt: str) -> tuple[str, str, str]:
    """(key, separator, value) of ``opt``: at its first ``=``, else at its first ``:`` (a
    profile's JSON has colons of its own)."""
    return opt.partition("=") if "=" in opt else opt.partition(":")


def asks_for_nothing(key: str, value: str) -> bool:
    """Whether ``key`` and ``value`` ask for what boxd does anyway, having no AppArmor and
    no SELinux labels (``apparmor=unconfined``, ``label=disable``: dockerd takes them on a
    host without either); False for any other key.  A profile or label to apply raises
    :class:`ValueError` naming what boxd lacks."""
    if key not in _UNCONFINED:
        return False
    anyway, missing = _UNCONFINED[key]
    if value != anyway:
        raise ValueError(f"boxd has no {missing} (only {key}={anyway}, what it does anyway)")
    return True

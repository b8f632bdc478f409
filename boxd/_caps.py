"""Linux capabilities: names, numbers, and the sets a container starts with.

The rules follow Docker's ``--cap-add`` / ``--cap-drop`` / ``--privileged``:

* a container starts from :data:`DEFAULT_CAPS`;
* ``--cap-drop ALL`` empties the set before the additions are applied, so
  ``--cap-drop ALL --cap-add NET_ADMIN`` leaves exactly NET_ADMIN;
* ``--cap-add ALL`` (or ``--privileged``) gives every capability the running kernel knows;
* other drops are applied after the additions, so naming a capability in both drops it.

Names are accepted as ``CAP_NET_ADMIN``, ``NET_ADMIN`` or ``net_admin``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence

from ._native import Capabilities

# Capability numbers from <linux/capability.h>, in order: the index is the number.
_NAMES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)

#: Highest capability number this module has a name for.
LAST_KNOWN_CAP = len(_NAMES) - 1

#: ``"CAP_CHOWN" -> 0`` and so on, for every capability this module knows.
CAPS: dict[str, int] = {f"CAP_{name}": number for number, name in enumerate(_NAMES)}

#: Docker's default capability set, by name.
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"


def cap_number(name: str) -> int:
    """The number of a capability given as ``CAP_NET_ADMIN``, ``NET_ADMIN`` or ``net_admin``."""
    key = name.strip().upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return CAPS[key]
    except KeyError:
        # moby's words, the name as it looked it up: unknown capability: "CAP_FOO"
        raise ValueError(f"unknown capability: {json.dumps(key, ensure_ascii=False)}") from None


def cap_name(number: int) -> str:
    """``CAP_NET_ADMIN`` for 12; capabilities newer than this module are ``CAP_<number>``."""
    if number < 0 or number > 63:
        raise ValueError(f"capability number {number} is out of range 0..63")
    return f"CAP_{_NAMES[number]}" if number <= LAST_KNOWN_CAP else f"CAP_{number}"


def to_mask(names: Iterable[str]) -> int:
    """The bit mask of the named capabilities (``ALL`` is not accepted here)."""
    mask = 0
    for name in names:
        mask |= 1 << cap_number(name)
    return mask


def to_names(mask: int) -> list[str]:
    """The names of the capabilities in ``mask``, lowest number first."""
    return [cap_name(n) for n in range(64) if mask >> n & 1]


@functools.cache  # the kernel's, fixed while it runs
def kernel_last_cap() -> int:
    """The highest capability the running kernel supports (``cap_last_cap``)."""
    with open(_CAP_LAST_CAP) as f:
        return int(f.read())


def own_bounding_set() -> int:
    """The capabilities this process could ever hold (CapBnd): a container cannot get more."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (kernel_last_cap() + 1)) - 1


def all_caps_mask() -> int:
    """Every capability the running kernel supports and this process's bounding set holds
    (a daemon run without, say, CAP_SYS_RESOURCE cannot hand it to ``--privileged``)."""
    return ((1 << (kernel_last_cap() + 1)) - 1) & own_bounding_set()


@functools.cache  # a constant
def _default_mask() -> int:
    return to_mask(DEFAULT_CAPS)


def _is_all(name: str) -> bool:
    return name.strip().upper() in ("ALL", "CAP_ALL")


def check_names(names: Iterable[str]) -> None:
    """Refuse an unknown name in ``--cap-add``/``--cap-drop`` (``ALL`` is one), as Docker
    refuses it at create, not at the first start."""
    to_mask(name for name in names if not _is_all(name))


def compute(
    cap_add: Sequence[str], cap_drop: Sequence[str], *, uid: int, privileged: bool
) -> Capabilities:
    """The capability sets of a container's first process, with Docker's semantics.

    ``privileged`` gives every capability of the running kernel and ignores the lists.
    Otherwise ``--cap-add ALL`` gives every capability except the dropped ones;
    ``--cap-drop ALL`` gives exactly the added ones; and without ``ALL`` the drops are
    taken from :data:`DEFAULT_CAPS` and the additions applied after them (so a name in
    both lists is kept, as in Docker).

    Bounding and permitted hold the resulting set.  Effective holds it too for uid 0; a
    non-root process starts with empty permitted and effective sets (as with Docker, it can
    regain capabilities only through file capabilities, within the bounding set).
    Inheritable and ambient are empty.  An unknown name raises :class:`ValueError`, even
    when ``privileged`` or ``ALL`` makes it moot.
    """
    add = [name for name in cap_add if not _is_all(name)]
    drop = [name for name in cap_drop if not _is_all(name)]
    add_mask, drop_mask = to_mask(add), to_mask(drop)
    # Every capability there is (this process's bounding set: a read of /proc/self/status)
    # only where it counts: not for the default set, less the drops.
    everything = all_caps_mask() if privileged or add_mask or len(add) != len(cap_add) else 0
    unsupported = add_mask & ~everything
    if unsupported:
        raise ValueError(
            f"capability {to_names(unsupported)[0]} is not supported by the running kernel"
        )
    if privileged:
        caps = everything
    elif len(add) != len(cap_add):
        caps = everything & ~drop_mask
    elif len(drop) != len(cap_drop):
        caps = add_mask
    else:
        caps = (_default_mask() & ~drop_mask) | add_mask
    if uid == 0:
        return Capabilities(bounding=caps, effective=caps, permitted=caps)
    return Capabilities(bounding=caps, effective=0, permitted=0)

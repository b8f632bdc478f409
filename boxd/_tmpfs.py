"""``--tmpfs PATH[:OPTIONS]`` as Docker takes it, and the container's /dev/shm.

OPTIONS is a comma-separated list of mount flags (``ro``/``rw``, ``exec``/``noexec``,
``suid``/``nosuid``, ``dev``/``nodev``, the atime family, ``sync``/``async``,
``dirsync``), a propagation (``shared``, ``rslave``, ...) and tmpfs settings (``size``,
``mode``, ``uid``, ``gid``, ``nr_inodes``).
Without options a tmpfs is ``rw,nosuid,nodev,noexec`` with mode 1777, as in Docker; an
option given overrides its default (``exec`` lifts ``noexec``), and of an option given
twice the last counts.  Sizes take boxd's units (``64m``, ``1g``; see
:func:`boxd._units.parse_size`) and reach the kernel in bytes; ``size`` also takes a
whole percentage of the host's memory (``50%``), passed on as the kernel reads it.

Imported by boxctl: only the standard library, nothing slow.
"""

from __future__ import annotations

from ._units import parse_size

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
# A tmpfs's own propagation (Docker takes these among its options too): set apart from
# its mount, which cannot set it.
PROPAGATION_FLAGS = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
PROPAGATION_BITS = MS_REC | MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED

DEFAULT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
# Docker's size of /dev/shm (``--shm-size``).
DEFAULT_SHM_SIZE = 64 << 20

# Flag option -> (MS_* bit, set or cleared); also the base of a volume's (boxd/_volumes.py).
MOUNT_FLAGS = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True),
    "async": (MS_SYNCHRONOUS, False),
    "dirsync": (MS_DIRSYNC, True),
    "noatime": (MS_NOATIME, True),
    "atime": (MS_NOATIME, False),
    "nodiratime": (MS_NODIRATIME, True),
    "diratime": (MS_NODIRATIME, False),
    "relatime": (MS_RELATIME, True),
    "norelatime": (MS_RELATIME, False),
    "strictatime": (MS_STRICTATIME, True),
    "nostrictatime": (MS_STRICTATIME, False),
}
_SETTINGS = ("size", "mode", "uid", "gid", "nr_inodes")
_MAX_ID = 2**32 - 2
_KNOWN = (
    "use ro, rw, [no]exec, [no]suid, [no]dev, [no]atime, [no]diratime, [no]relatime, "
    "[no]strictatime, sync, async, dirsync, [r]shared, [r]slave, [r]private, [r]unbindable, "
    "size=, mode=, uid=, gid=, nr_inodes="
)


def _setting(spec: str, key: str, value: str) -> str:
    """The kernel's form of one tmpfs setting, or ValueError naming it."""
    if key == "size" and value.endswith("%"):  # of the host's memory, as the kernel reads it
        if not (value[:-1].isascii() and value[:-1].isdigit()):
            raise ValueError(
                f"invalid --tmpfs {spec!r}: size {value!r} is not a whole percentage (50%)"
            )
        return f"{int(value[:-1])}%"
    if key == "size":
        return str(parse_size(value, what=f"--tmpfs {spec!r} size"))
    if key == "nr_inodes":
        if value.isascii() and value.isdigit():
            return value
        return str(parse_size(value, what=f"--tmpfs {spec!r} nr_inodes"))
    if key == "mode":
        if not value or any(c not in "01234567" for c in value) or int(value, 8) > 0o7777:
            raise ValueError(f"invalid --tmpfs {spec!r}: mode {value!r} is not octal 0-7777")
        return f"{int(value, 8):o}"
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_ID:
        raise ValueError(f"invalid --tmpfs {spec!r}: {key} {value!r} is not a numeric id")
    return str(int(value))


def parse_tmpfs(spec: str) -> tuple[str, int, str]:
    """``PATH[:OPTIONS]`` -> (PATH, MS_* flags, tmpfs data such as ``mode=1777,size=1024``);
    a propagation asked for is among the flags (:data:`PROPAGATION_BITS`: the caller sets
    it apart, after the mount).

    PATH must be absolute; where it may go is checked by the mount table.  A bad option is
    refused with a ValueError that names it.
    """
    path, _, options = spec.partition(":")
    if not path.startswith("/"):
        raise ValueError(f"invalid --tmpfs {spec!r}: {path!r} is not an absolute path")
    flags = DEFAULT_FLAGS
    settings = {"mode": "1777"}
    for option in options.split(",") if options else ():
        key, eq, value = option.partition("=")
        if not eq and key in MOUNT_FLAGS:
            bit, on = MOUNT_FLAGS[key]
            flags = flags | bit if on else flags & ~bit
        elif not eq and key in PROPAGATION_FLAGS:  # the last one given counts
            flags = (flags & ~PROPAGATION_BITS) | PROPAGATION_FLAGS[key]
        elif eq and key in _SETTINGS:
            settings[key] = _setting(spec, key, value)
        elif key in MOUNT_FLAGS:
            raise ValueError(f"invalid --tmpfs {spec!r}: option {key!r} takes no value")
        elif key in _SETTINGS:
            raise ValueError(f"invalid --tmpfs {spec!r}: option {key!r} needs a value ({key}=)")
        else:
            raise ValueError(f"invalid --tmpfs {spec!r}: unknown option {key!r} ({_KNOWN})")
    return path, flags, ",".join(f"{k}={v}" for k, v in settings.items())


def shm_data(size: int | None) -> str:
    """The tmpfs data of a container's /dev/shm (mounted nosuid, nodev, noexec)."""
    return f"mode=1777,size={DEFAULT_SHM_SIZE if size is None else size}"

"""Docker's masked and read-only paths, as steps of a container's mount table.

Masked paths leak host details or expose kernel knobs a container has no business with:
each is hidden (``/dev/null`` over a file, an empty read-only tmpfs over a directory; a path
the kernel does not have is skipped).  Read-only paths stay visible but cannot be written:
each is bind-remounted read-only, keeping the nosuid/nodev/noexec flags ``/proc`` is
mounted with (a remount in a user namespace may not clear them).
"""

from __future__ import annotations

import functools
import os
import re

from ._native import MountKind, MountOp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._records import Security

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

# Each x86 CPU's thermal_throttle directory counts the times it ran too hot, which what
# the host's other workloads run changes: a side channel Docker masks too
# (GHSA-6fw5-f8r9-fgfm, with /proc/interrupts).
_CPUS = "/sys/devices/system/cpu"


@functools.cache  # the host's CPUs: fixed while the daemon runs, as Docker computes them once
def default_masked_paths(cpus: str = _CPUS) -> tuple[str, ...]:
    """:data:`MASKED_PATHS` and each CPU's ``thermal_throttle`` directory the host has
    (``cpus``: where the host's CPU directories are)."""
    try:
        entries = os.listdir(cpus)
    except OSError:
        entries = []
    numbers = sorted(
        int(entry[3:])
        for entry in entries
        if re.fullmatch(r"cpu\d+", entry)
        and os.path.isdir(os.path.join(cpus, entry, "thermal_throttle"))
    )
    return MASKED_PATHS + tuple([f"{_CPUS}/cpu{n}/thermal_throttle" for n in numbers])


READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8


@functools.cache  # the same records for every container (frozen)
def mask_ops(
    masked_paths: tuple[str, ...] = MASKED_PATHS, readonly_paths: tuple[str, ...] = READONLY_PATHS
) -> tuple[MountOp, ...]:
    """The steps that make ``readonly_paths`` read-only, then hide ``masked_paths``.  Run
    them after /proc and /sys are mounted: the child resolves each path inside the
    container's root, so an image whose /proc is a symlink gets the masks where its /proc
    really is."""
    readonly = tuple(
        [
            MountOp(MountKind.REMOUNT_RO, path, flags=_MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            for path in readonly_paths
        ]
    )
    masked = tuple([MountOp(MountKind.MASK, path) for path in masked_paths])
    return readonly + masked


def applied(sec: Security) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The masked and the read-only paths a container gets: Docker's, or its own lists
    (``--security-opt systempaths=unconfined``: none); None when privileged, as Docker."""
    if sec.privileged:
        return None
    return (
        default_masked_paths() if sec.masked_paths is None else sec.masked_paths,
        READONLY_PATHS if sec.readonly_paths is None else sec.readonly_paths,
    )

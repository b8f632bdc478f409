"""A container's resource options (:class:`boxd._records.Resources`) as cgroup limits
(:class:`boxd._cgroup.Limits`): block devices named by path are resolved to their
``MAJ:MIN`` here, and what a host cannot apply is dropped with a warning, as Docker does
(:func:`settle`)."""

from __future__ import annotations

import os
import stat

import attrs

from ._cgroup import CgroupHost, Limits
from ._lifecycle import Conflict
from ._record import make
from ._records import DeviceRate, Resources

# Options ``docker update`` does not take: a container keeps them for its life.
NOT_UPDATABLE = {
    "memory_swappiness": "--memory-swappiness",
    "oom_kill_disable": "--oom-kill-disable",
    "blkio_weight_device": "--blkio-weight-device",
    "device_read_bps": "--device-read-bps",
    "device_write_bps": "--device-write-bps",
    "device_read_iops": "--device-read-iops",
    "device_write_iops": "--device-write-iops",
}
_DEVICE_FIELDS = (
    "blkio_weight_device",
    "device_read_bps",
    "device_write_bps",
    "device_read_iops",
    "device_write_iops",
)


def device_number(path: str, option: str, value: str) -> str:
    """``MAJ:MIN`` of the block device at ``path`` on this host; ValueError naming the
    option and its value when there is none."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"invalid {option} {value!r}: {path}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise ValueError(f"invalid {option} {value!r}: {path} is not a block device")
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _devices(
    field: str, rates: tuple[DeviceRate, ...] | None
) -> tuple[tuple[str, int], ...] | None:
    if rates is None:
        return None
    option = "--" + field.replace("_", "-")
    return tuple([(device_number(r.path, option, f"{r.path}:{r.rate}"), r.rate) for r in rates])


def limits(res: Resources) -> Limits:
    """The cgroup limits of ``res`` (ValueError naming a device path that is no block
    device here)."""
    fields = attrs.asdict(res, recurse=False)
    for field in _DEVICE_FIELDS:
        fields[field] = _devices(field, fields[field])
    return make(Limits, fields)


def settle(res: Resources, host: CgroupHost) -> tuple[Resources, list[str]]:
    """``res`` without what this host cannot apply, and the warnings a user is shown for
    it (the values are checked first: a bad one is refused, not dropped)."""
    wanted = limits(res)
    host.validate(wanted)
    drop, notes = host.ignored(wanted)
    if drop:
        res = attrs.evolve(res, **dict.fromkeys(drop))
    return res, warnings(drop, notes)


def warnings(drop: dict[str, str], notes: list[str]) -> list[str]:
    """:meth:`CgroupHost.ignored`'s answer as a user is told it."""
    return [*(f"--{f.replace('_', '-')} is ignored: {why}" for f, why in drop.items()), *notes]


def with_swap_bound(res: Resources) -> Resources:
    """Docker's default at create: a memory limit without --memory-swap lets the container
    swap as much again (memory + swap = twice the limit), not as much as the host's swap
    holds; ``memory_swap=-1`` asks for that, equal to ``memory`` for no swap."""
    if res.memory is not None and res.memory_swap is None:
        return attrs.evolve(res, memory_swap=2 * res.memory)
    return res


def merged(current: Resources, changes: Resources) -> Resources:
    """``docker update``: the limits ``changes`` gives (not None) replace those of
    ``current``; --cpus and --cpu-period/--cpu-quota replace one another.  ValueError for
    an option ``docker update`` does not take; Conflict for a memory limit without --memory-swap
    above the memory and swap the container has (Docker's rule: moby compares it with the
    recorded MemorySwap, so a container without a bound -- no limit at all, or
    --memory-swap -1 -- must be given --memory-swap with its new --memory too)."""
    given = {k: v for k, v in attrs.asdict(changes, recurse=False).items() if v is not None}
    for field, option in NOT_UPDATABLE.items():
        if field in given:
            raise ValueError(f"{option} cannot be changed by update: create a new container")
    memory, swap = given.get("memory"), current.memory_swap
    if memory is not None and "memory_swap" not in given and memory > (swap or 0):
        bound = "unlimited" if swap is None or swap == -1 else str(swap)
        raise Conflict(  # moby's conflictingUpdateOptions: 409
            f"invalid --memory {memory}: Memory limit should be smaller than already set "
            f"memoryswap limit (--memory-swap {bound}, memory and swap together), update "
            "the memoryswap at the same time: give --memory-swap with it"
        )
    if "cpus" in given:
        given.setdefault("cpu_period", None)
        given.setdefault("cpu_quota", None)
    elif "cpu_period" in given or "cpu_quota" in given:
        given["cpus"] = None
    return attrs.evolve(current, **given)

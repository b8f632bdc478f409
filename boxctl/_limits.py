"""``run``/``create``/``update``'s resource options beyond the basic ones (their table is
in boxctl._runopts): parsed into the fields of boxd's Resources record; the daemon checks
the ranges and the devices."""

from __future__ import annotations

import sys
from typing import Any

from ._args import Args


def _device_rates(option: str, specs: list[str], *, size: bool) -> list[dict[str, Any]]:
    from boxd import _units

    rates = []
    for spec in specs:
        path, colon, value = spec.rpartition(":")
        unit = "a rate such as 1mb" if size else "a number"
        if not colon or not path.startswith("/") or not value:
            example = "/dev/sda:1mb" if size else "/dev/sda:100"
            raise ValueError(f"invalid {option} {spec!r}: use DEVICE:VALUE, e.g. {example}")
        if size:
            rate = _units.parse_size(value, what=option)
        elif value.isdigit():
            rate = int(value)
        else:
            raise ValueError(f"invalid {option} {spec!r}: {value!r} is not {unit}")
        rates.append({"path": path, "rate": rate})
    return rates


def resources(args: Args) -> dict[str, Any]:
    """The fields of Resources these options set (ValueError naming a malformed value);
    ``--kernel-memory`` is checked, then ignored with a warning, as Docker does."""
    from boxd import _units

    res: dict[str, Any] = {}
    if args.memory_reservation is not None:
        res["memory_reservation"] = _units.parse_size(
            args.memory_reservation, what="--memory-reservation"
        )
    if args.kernel_memory is not None:
        _units.parse_size(args.kernel_memory, what="--kernel-memory")
        print(
            "WARNING: --kernel-memory is deprecated (kernels no longer limit kernel memory "
            "apart): ignored",
            file=sys.stderr,
        )
    for name in ("cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "blkio_weight"):
        value = getattr(args, name)
        if value:  # 0: unset, as Docker reads it
            res[name] = value
    if args.cpuset_mems is not None:
        res["cpuset_mems"] = args.cpuset_mems
    swappiness = getattr(args, "memory_swappiness", None)
    if swappiness is not None and swappiness != -1:
        res["memory_swappiness"] = swappiness
    if getattr(args, "oom_kill_disable", False):
        res["oom_kill_disable"] = True
    for name, size in (
        ("blkio_weight_device", False),
        ("device_read_bps", True),
        ("device_write_bps", True),
        ("device_read_iops", False),
        ("device_write_iops", False),
    ):
        specs = getattr(args, name, None)
        if specs:
            res[name] = _device_rates("--" + name.replace("_", "-"), specs, size=size)
    return res

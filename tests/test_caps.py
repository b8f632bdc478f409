"""Capability names, Docker's cap-add / cap-drop / privileged rules, masked paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from boxd import _caps
from boxd._caps import cap_name, cap_number, compute, to_mask, to_names
from boxd._masks import MASKED_PATHS, applied, default_masked_paths, mask_ops
from boxd._native import MountKind
from boxd._records import Security

MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8


def test_names_in_every_spelling() -> None:
    assert cap_number("CAP_NET_ADMIN") == 12
    assert cap_number("NET_ADMIN") == 12
    assert cap_number("net_admin") == 12
    assert cap_number("cap_chown") == 0
    assert cap_number("CHECKPOINT_RESTORE") == 40
    assert cap_name(21) == "CAP_SYS_ADMIN"
    assert cap_name(62) == "CAP_62"
    assert all(cap_number(name) == number for name, number in _caps.CAPS.items())
    assert _caps.LAST_KNOWN_CAP == 40


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("NET_ADMN", "CAP_NET_ADMN"),
        ("", "CAP_"),
        ("CAP_", "CAP_"),
        ("ALLL", "CAP_ALLL"),
        ("cap_net admin", "CAP_NET ADMIN"),
    ],
)
def test_unknown_name_is_named(bad: str, named: str) -> None:
    """In moby's words: the name as it looks it up."""
    with pytest.raises(ValueError) as info:
        cap_number(bad)
    assert str(info.value) == f'unknown capability: "{named}"'


def test_cap_name_range() -> None:
    with pytest.raises(ValueError, match="64"):
        cap_name(64)


def test_mask_round_trip() -> None:
    mask = to_mask(["CHOWN", "cap_kill", "SYS_ADMIN"])
    assert mask == 1 | 1 << 5 | 1 << 21
    assert to_names(mask) == ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]


def test_default_set_is_dockers() -> None:
    caps = compute([], [], uid=0, privileged=False)
    assert set(to_names(caps.bounding)) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    }  # fmt: skip
    assert caps.effective == caps.permitted == caps.bounding
    assert caps.inheritable == caps.ambient == 0


def test_add_and_drop() -> None:
    caps = compute(["NET_ADMIN"], ["cap_mknod", "KILL"], uid=0, privileged=False)
    names = to_names(caps.bounding)
    assert "CAP_NET_ADMIN" in names
    assert "CAP_MKNOD" not in names and "CAP_KILL" not in names
    assert "CAP_CHOWN" in names
    # A name in both lists is kept: the additions come after the drops.
    caps = compute(["NET_RAW"], ["NET_RAW"], uid=0, privileged=False)
    assert "CAP_NET_RAW" in to_names(caps.bounding)


def test_drop_all_then_add() -> None:
    caps = compute(["NET_ADMIN", "net_raw"], ["ALL"], uid=0, privileged=False)
    assert to_names(caps.bounding) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert compute([], ["all"], uid=0, privileged=False).bounding == 0


def test_add_all() -> None:
    everything = _caps.all_caps_mask()
    kernel = (1 << (_caps.kernel_last_cap() + 1)) - 1
    assert everything == kernel & _caps.own_bounding_set()
    assert compute(["ALL"], [], uid=0, privileged=False).bounding == everything
    caps = compute(["ALL"], ["SYS_ADMIN"], uid=0, privileged=False)
    assert caps.bounding == everything & ~(1 << 21)


def test_privileged_is_bounded_by_our_own_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_caps, "own_bounding_set", lambda: ~(1 << 24) & ((1 << 41) - 1))
    caps = compute([], [], uid=0, privileged=True)
    assert not caps.bounding & (1 << 24)


def test_privileged_is_every_kernel_cap() -> None:
    caps = compute([], ["SYS_ADMIN"], uid=0, privileged=True)
    assert caps.bounding == caps.effective == caps.permitted == _caps.all_caps_mask()


def test_non_root_uid_has_only_bounding() -> None:
    caps = compute(["NET_ADMIN"], [], uid=1000, privileged=False)
    assert caps.bounding & 1 << 12
    assert caps.effective == caps.permitted == caps.inheritable == caps.ambient == 0


def test_unknown_names_rejected_even_when_moot() -> None:
    with pytest.raises(ValueError, match='"CAP_NET_ADMN"'):
        compute(["NET_ADMN"], [], uid=0, privileged=False)
    with pytest.raises(ValueError, match='"CAP_BOGUS"'):
        compute(["ALL"], ["BOGUS"], uid=0, privileged=True)


def test_cap_unknown_to_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_caps, "kernel_last_cap", lambda: 37)
    monkeypatch.setattr(_caps, "own_bounding_set", lambda: (1 << 41) - 1)
    assert compute(["ALL"], [], uid=0, privileged=False).bounding == (1 << 38) - 1
    with pytest.raises(ValueError, match="CAP_BPF is not supported by the running kernel"):
        compute(["BPF"], [], uid=0, privileged=False)


# --- masked and read-only paths (the other half of a container's privileges) -------------


def test_mask_ops() -> None:
    ops = mask_ops()
    by_name = {op.target: op for op in ops}
    assert len(by_name) == len(ops) == 17
    kcore = by_name["/proc/kcore"]
    assert kcore.kind is MountKind.MASK
    assert kcore.describe() == "mask /proc/kcore"
    masked = {op.target for op in ops if op.kind is MountKind.MASK}
    assert masked == {
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/proc/interrupts", "/sys/firmware", "/sys/devices/virtual/powercap",
    }  # fmt: skip
    readonly = [op for op in ops if op.kind is MountKind.REMOUNT_RO]
    assert {op.target for op in readonly} == {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    }  # fmt: skip
    for op in readonly:
        assert op.flags == MS_NOSUID | MS_NODEV | MS_NOEXEC


def test_each_cpus_thermal_throttle_is_masked_as_dockers(tmp_path: Path) -> None:
    """Docker masks /sys/devices/system/cpu/cpuN/thermal_throttle where the host has it
    (x86 with the thermal interrupt: not this test's VM, so a directory stands for the
    host's /sys/devices/system/cpu)."""
    for name in ("cpu0", "cpu1", "cpu10", "cpu2", "cpufreq", "cpuidle"):
        (tmp_path / name).mkdir()
    for name in ("cpu0", "cpu10", "cpu2", "cpuidle"):
        (tmp_path / name / "thermal_throttle").mkdir()
    assert default_masked_paths(str(tmp_path)) == (
        *MASKED_PATHS,
        "/sys/devices/system/cpu/cpu0/thermal_throttle",
        "/sys/devices/system/cpu/cpu2/thermal_throttle",
        "/sys/devices/system/cpu/cpu10/thermal_throttle",
    )
    assert default_masked_paths(str(tmp_path / "none")) == MASKED_PATHS
    # What a container gets: the host's (this one's, whatever it has).
    paths = applied(Security())
    assert paths is not None and paths[0] == default_masked_paths()

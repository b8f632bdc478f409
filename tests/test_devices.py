"""The cgroup v2 device program (boxd/_devices.py).

Rules and the encoder are checked without the kernel: exact bytes for a known rule set,
and every request of a grid run through a small eBPF interpreter against the v1
controller's meaning.  Then the real kernel (``root``): this host's unified hierarchy is
mounted (hybrid), so new cgroups are made below this process's OWN v2 cgroup, the program
is attached, and a new process that places itself there makes and opens device nodes.
The v1 devices controller does not cover those processes (their v1 devices cgroup stays
ours), so what is refused is refused by the program.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxd import _devices
from boxd._cgroup import ALLOWED_DEVICES, Cgroup, CgroupError, CgroupHost, Limits
from boxd._devices import DeviceFilterError, DeviceRule, attach, compile_rules, parse_rule

# --- rules -----------------------------------------------------------------------------


def test_rules_parse_and_print_as_v1_takes_them() -> None:
    assert parse_rule("c 136:* rwm") == DeviceRule("c", 136, None, "rwm")
    assert parse_rule("a *:* m") == DeviceRule("a", None, None, "m")
    assert parse_rule("b 254:16 wr") == DeviceRule("b", 254, 16, "wr")
    assert [str(rule) for rule in ALLOWED_DEVICES][-2:] == ["c 5:2 rwm", "c 136:* rwm"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("x 1:3 rwm", "'x 1:3 rwm': use TYPE MAJOR:MINOR ACCESS"),
        ("c 1:3", "'c 1:3': use TYPE"),
        ("c 1-3 rwm", "'c 1-3 rwm': use TYPE"),
        ("c 1:3 rwx", "'c 1:3 rwx': use TYPE"),
        ("c -1:3 r", "'c -1:3 r': use TYPE"),
        ("c  1:3 r", "'c  1:3 r': use TYPE"),
        ("c 4096:0 r", "'c 4096:0 r': major 4096 is out of range 0..4095"),
        ("b 8:1048576 r", "'b 8:1048576 r': minor 1048576 is out of range 0..1048575"),
        ("c 1:3 rr", "'c 1:3 rr': access 'rr' is not a non-empty set"),
    ],
)
def test_bad_rules_are_named(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="invalid device rule") as info:
        parse_rule(text)
    assert named in str(info.value)


def test_rules_built_directly_are_checked_too() -> None:
    with pytest.raises(ValueError, match="device type 'p' is not c, b or a"):
        DeviceRule("p", 1, 3, "r")
    with pytest.raises(ValueError, match="access '' is not a non-empty set"):
        DeviceRule("c", 1, 3, "")


# --- the encoder ---------------------------------------------------------------------


def test_known_rules_give_known_instructions() -> None:
    """struct bpf_insn: code, src << 4 | dst, off (s16), imm (s32), little-endian."""
    expected = [
        "61 12 0000 00000000",  # r2 = ctx->access_type
        "bc 23 0000 00000000",  # w3 = w2
        "54 03 0000 ffff0000",  # w3 &= 0xffff: type
        "74 02 0000 10000000",  # w2 >>= 16: access
        "61 14 0400 00000000",  # r4 = ctx->major
        "61 15 0800 00000000",  # r5 = ctx->minor
        # c 1:3 rw
        "55 03 0700 02000000",  # if r3 != CHAR goto next rule
        "bc 20 0000 00000000",  # w0 = w2
        "54 00 0000 f9ffffff",  # w0 &= ~(READ | WRITE)
        "55 00 0400 00000000",  # if r0 != 0 goto next rule (mknod asked)
        "55 04 0300 01000000",  # if r4 != 1 goto next rule
        "55 05 0200 03000000",  # if r5 != 3 goto next rule
        "b7 00 0000 01000000",  # r0 = 1
        "95 00 0000 00000000",  # exit
        # b *:* m
        "55 03 0500 01000000",  # if r3 != BLOCK goto next rule
        "bc 20 0000 00000000",
        "54 00 0000 feffffff",  # w0 &= ~MKNOD
        "55 00 0200 00000000",
        "b7 00 0000 01000000",
        "95 00 0000 00000000",
        # nothing matched
        "b7 00 0000 00000000",  # r0 = 0
        "95 00 0000 00000000",
    ]
    program = compile_rules([parse_rule("c 1:3 rw"), parse_rule("b *:* m")])
    assert program == bytes.fromhex("".join(expected))


def test_rules_after_one_allowing_everything_are_left_out() -> None:
    """The verifier refuses unreachable instructions."""
    program = compile_rules([parse_rule("a *:* rwm"), parse_rule("c 1:3 r")])
    assert len(program) // 8 == 6 + 2
    assert program[-16:] == bytes.fromhex("b700000001000000 9500000000000000")


_U64 = (1 << 64) - 1


def run_program(program: bytes, kind: int, access: int, major: int, minor: int) -> int:
    """Run ``program`` on one struct bpf_cgroup_dev_ctx; only what the encoder emits."""
    ctx = struct.pack("<III", access << 16 | kind, major, minor)
    regs: list[int | None] = [0] * 11
    regs[1] = None  # the context pointer
    pc = 0
    while True:
        code, dst_src, off, imm = struct.unpack_from("<BBhi", program, 8 * pc)
        dst, src = dst_src & 0xF, dst_src >> 4
        pc += 1
        value = regs[dst] or 0
        if code == 0x61:  # r_dst = *(u32 *)(r_src + off)
            assert regs[src] is None, "loads only from the context"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0xBC:
            regs[dst] = (regs[src] or 0) & 0xFFFFFFFF
        elif code == 0x54:
            regs[dst] = value & imm & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (value & 0xFFFFFFFF) >> imm
        elif code == 0xB7:
            regs[dst] = imm & _U64
        elif code == 0x55:
            if value != imm & _U64:
                pc += off
        elif code == 0x95:
            return value if dst == 0 else regs[0] or 0
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc - 1}")


def v1_allows(rules: list[DeviceRule], kind: int, access: int, major: int, minor: int) -> bool:
    """The v1 devices controller after ``deny a`` and an ``allow`` per rule."""
    asked = {a for a, bit in _devices.ACCESS_BITS.items() if access & bit}
    return any(
        rule.kind in ("a", {1: "b", 2: "c"}[kind])
        and rule.major in (None, major)
        and rule.minor in (None, minor)
        and asked <= set(rule.access)
        for rule in rules
    )


@pytest.mark.parametrize(
    "rules",
    [
        [str(rule) for rule in ALLOWED_DEVICES],
        ["c *:* m", "b *:* m", *(str(rule) for rule in ALLOWED_DEVICES)],  # boxd-runtime's
        ["c 1:3 r", "b 8:* wm", "a 5:* m", "c *:9 rw"],
        ["a *:* rwm"],
        [],
    ],
)
def test_program_means_what_v1_means(rules: list[str]) -> None:
    parsed = [parse_rule(rule) for rule in rules]
    program = compile_rules(parsed)
    for kind in (1, 2):
        for access in range(1, 8):
            for major in (0, 1, 5, 8, 136, 4095):
                for minor in (0, 2, 3, 5, 9, 1 << 19):
                    want = v1_allows(parsed, kind, access, major, minor)
                    got = run_program(program, kind, access, major, minor)
                    assert got == int(want), (rules, kind, access, major, minor)


# --- errors ---------------------------------------------------------------------------


def test_a_kernel_without_the_program_type_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAKE kernel: bpf(2) fails with EINVAL before the verifier wrote any log, as a
    kernel built without CONFIG_CGROUP_BPF does."""

    def no_such_type(cmd: int, attr: object) -> int:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(_devices, "_bpf", no_such_type)
    with pytest.raises(DeviceFilterError) as info:
        attach(tmp_path, compile_rules(ALLOWED_DEVICES))
    assert info.value.errno == errno.EINVAL
    assert f"cgroup {tmp_path}" in str(info.value)
    assert "no BPF_PROG_TYPE_CGROUP_DEVICE programs (CONFIG_CGROUP_BPF)" in str(info.value)


@pytest.mark.root
def test_the_verifiers_refusal_is_quoted(tmp_path: Path) -> None:
    truncated = compile_rules(ALLOWED_DEVICES)[:-8]  # no exit at the end
    with pytest.raises(DeviceFilterError, match=r"refused the device program: .*exit") as info:
        attach(tmp_path, truncated)
    assert info.value.errno == errno.EINVAL


@pytest.mark.root
def test_a_directory_that_is_no_cgroup_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeviceFilterError, match=f"{tmp_path}: .*not a cgroup v2 directory"):
        attach(tmp_path, compile_rules(ALLOWED_DEVICES))


# --- the real kernel ---------------------------------------------------------------------

CHECKER = """
import errno, json, os, stat, sys
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
out = []
for op, path, *number in json.loads(sys.argv[2]):
    try:
        if op == "mknod":
            kind = stat.S_IFCHR if number[0] == "c" else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(number[1], number[2]))
        else:
            os.close(os.open(path, os.O_RDONLY if op == "read" else os.O_WRONLY))
        out.append("ok")
    except OSError as exc:
        out.append(errno.errorcode[exc.errno])
print(json.dumps(out))
"""
Check = tuple[str, ...] | tuple[str, str, str, int, int]


def _unique() -> str:
    return f"boxd-devtest-{uuid.uuid4().hex[:12]}"


def _own_v2_base() -> Path:
    """A new cgroup's path below this process's own cgroup in the unified hierarchy."""
    host = CgroupHost.detect(name=_unique())
    v2 = next((h for h in host.hierarchies if h.version == 2), None)
    if v2 is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    return Path(v2.base)


def _remove(d: Path) -> None:
    """Kill what is in cgroup ``d`` (only processes of this test) and remove it."""
    if not d.exists():
        return
    (d / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 5
    while True:
        try:
            d.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def nested_cgroups(*programs: bytes) -> Iterator[Path]:
    """A chain of new cgroups below our own v2 cgroup, the n-th with ``programs[n]``
    attached; yields the deepest.  All are removed on exit, deepest first."""
    made: list[Path] = []
    d = _own_v2_base()
    try:
        for program in programs:
            d.mkdir()
            made.append(d)
            attach(d, program)
            d = d / "c"
        yield made[-1]
    finally:
        for cgroup in reversed(made):
            _remove(cgroup)


def run_in(cgroup: Path, checks: list[Check]) -> list[str]:
    """A new process places itself in ``cgroup``, then makes or opens each node:
    ("read" | "write", path) or ("mknod", path, "c" | "b", major, minor); "ok" or the
    errno's name for each."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHECKER, str(cgroup / "cgroup.procs"), json.dumps(checks)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    result: list[str] = json.loads(out)
    return result


def a_host_disk(tmp_path: Path) -> tuple[int, int]:
    """A block device of this host that a node made here opens (the disk of / first;
    some sandboxes refuse it even to root), so that a refusal in the cgroup is the
    program's."""
    root = os.stat("/").st_dev
    numbers = sorted(os.listdir("/sys/dev/block"))
    candidates = [(os.major(root), os.minor(root))] if os.major(root) else []
    candidates += [(int(n.split(":")[0]), int(n.split(":")[1])) for n in numbers]
    node = tmp_path / "probe-disk"
    for major, minor in candidates:
        os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
        try:
            os.close(os.open(node, os.O_RDONLY))
        except OSError:
            continue
        finally:
            node.unlink()
        return major, minor
    pytest.skip(f"no block device of this host opens here (tried {candidates})")


@pytest.mark.root
def test_the_allowlist_refuses_a_host_disk(tmp_path: Path) -> None:
    major, minor = a_host_disk(tmp_path)
    disk = tmp_path / "disk"
    os.mknod(disk, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
    checks: list[Check] = [
        ("read", "/dev/null"),
        ("write", "/dev/null"),
        ("read", "/dev/zero"),
        ("read", "/dev/urandom"),
        ("read", str(disk)),
        ("mknod", str(tmp_path / "disk2"), "b", major, minor),
        ("mknod", str(tmp_path / "mem"), "c", 1, 1),
        ("mknod", str(tmp_path / "null"), "c", 1, 3),
        ("read", str(tmp_path / "null")),
        ("mknod", str(tmp_path / "pts"), "c", 136, 7),  # any minor of 136
    ]
    with nested_cgroups(compile_rules(ALLOWED_DEVICES)) as cgroup:
        assert run_in(cgroup, checks) == ["ok"] * 4 + ["EPERM"] * 3 + ["ok"] * 3
    assert not (tmp_path / "disk2").exists() and not (tmp_path / "mem").exists()


@pytest.mark.root
def test_type_access_and_wildcards_on_the_kernel(tmp_path: Path) -> None:
    rules = [parse_rule("c 1:3 r"), parse_rule("c 1:* m")]
    checks: list[Check] = [
        ("read", "/dev/null"),
        ("write", "/dev/null"),  # w is not allowed
        ("read", "/dev/zero"),  # 1:5 may only be made
        ("mknod", str(tmp_path / "zero"), "c", 1, 5),
        ("mknod", str(tmp_path / "block"), "b", 1, 5),  # a block device of the same number
        ("mknod", str(tmp_path / "tty"), "c", 5, 0),
    ]
    with nested_cgroups(compile_rules(rules)) as cgroup:
        assert run_in(cgroup, checks) == ["ok", "EPERM", "EPERM", "ok", "EPERM", "EPERM"]


@pytest.mark.root
def test_a_parents_program_still_applies(tmp_path: Path) -> None:
    """BPF_F_ALLOW_MULTI: the programs of the cgroup and its ancestors must all allow."""
    only_null = compile_rules([parse_rule("c 1:3 rwm")])
    with nested_cgroups(only_null, compile_rules(ALLOWED_DEVICES)) as cgroup:
        assert run_in(cgroup, [("read", "/dev/null"), ("read", "/dev/zero")]) == ["ok", "EPERM"]


def _without_v1_devices(tmp_path: Path) -> str:
    """A copy of /proc/self/mountinfo without the v1 devices hierarchy (a FAKE mount
    table: the host as if it had no v1 devices controller)."""
    mountinfo = tmp_path / "mountinfo"
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    if not any(" - cgroup2 " in ln for ln in lines):
        pytest.skip("no cgroup v2 hierarchy is mounted")
    kept = [ln for ln in lines if not (" - cgroup " in ln and "devices" in ln.split()[-1])]
    mountinfo.write_text("\n".join(kept) + "\n")
    return str(mountinfo)


def _left(cg: Cgroup) -> list[str]:
    return [p for p in cg.paths.values() if Path(p).exists()]


@pytest.mark.root
async def test_a_host_without_v1_devices_attaches_the_program(tmp_path: Path) -> None:
    """CgroupHost on the real kernel, told by its mount table that no v1 devices
    controller exists: the container's cgroup in the real unified hierarchy gets the
    program at create."""
    host = CgroupHost.detect(name=_unique(), mountinfo=_without_v1_devices(tmp_path))
    assert "devices" not in host.controllers()
    cg = host.create("c", Limits())
    try:
        major, minor = a_host_disk(tmp_path)
        checks: list[Check] = [
            ("read", "/dev/null"),
            ("mknod", str(tmp_path / "disk"), "b", major, minor),
        ]
        assert run_in(Path(cg.paths["unified"]), checks) == ["ok", "EPERM"]
    finally:
        await cg.remove()
    assert _left(cg) == []


@pytest.mark.root
def test_an_attach_the_kernel_refuses_fails_create(tmp_path: Path) -> None:
    """No silent downgrade: below a cgroup holding an exclusive device program (attached
    without flags) the kernel refuses ours, and create fails with the reason and leaves
    nothing behind."""
    parent = _own_v2_base()
    parent.mkdir()
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        prog_fd = _devices._load(compile_rules([parse_rule("a *:* rwm")]))
        try:
            # attach_flags 0: exclusive
            exclusive = _devices._PROG_ATTACH_ATTR.pack(
                dir_fd, prog_fd, _devices._BPF_CGROUP_DEVICE, 0
            )
            _devices._bpf(_devices._BPF_PROG_ATTACH, exclusive)
        finally:
            os.close(prog_fd)
            os.close(dir_fd)
        host = CgroupHost.detect(parent=parent.name, mountinfo=_without_v1_devices(tmp_path))
        with pytest.raises(CgroupError, match=f"cgroup {parent}/c: .*without BPF_F_ALLOW_MULTI"):
            host.create("c", Limits())
        assert [p.name for p in parent.iterdir() if p.is_dir()] == []
    finally:
        _remove(parent)

"""The seccomp BPF compiler: checked with a small BPF interpreter for exhaustive unit tests,
then loaded into a real child process to see what the kernel does with it."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from boxd import _caps
from boxd._seccomp import (
    ALLOW,
    ARCHES,
    Action,
    ActionKind,
    ArgCheck,
    Op,
    Profile,
    Rule,
    compile_profile,
    default_profile,
    fail_with,
    load_docker_profile,
    profile_from_docker,
    profile_to_docker,
)
from boxd._syscalls import AARCH64, I386, X86_64

HOST_ARCH = os.uname().machine
needs_supported_host = pytest.mark.skipif(
    HOST_ARCH not in ARCHES, reason=f"no seccomp support for {HOST_ARCH}"
)

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_I386 = 0x40000003


# --- a classic BPF interpreter, enough for what the compiler emits ------------------------


def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Run ``program`` on one struct seccomp_data; return the SECCOMP_RET_* value."""
    full_args = (*args, *(0,) * (6 - len(args)))
    data = struct.pack("<IIQ6Q", nr, arch, 0, *full_args)
    insns: list[tuple[int, int, int, int]] = [
        struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)
    ]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            (acc,) = struct.unpack_from("<I", data, k)
        elif code == 0x54:
            acc &= k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x25, 0x35):
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k}[code]
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x}")


def errno_ret(err: int) -> int:
    return RET_ERRNO | err


def test_arch_check_x86_64() -> None:
    program = compile_profile(default_profile(), "x86_64")
    assert struct.unpack_from("<HBBI", program, 8)[3] == AUDIT_ARCH_X86_64
    assert run_bpf(program, X86_64["read"], AUDIT_ARCH_X86_64) == RET_ALLOW
    # The x32 ABI, and another architecture's call, are killed.
    assert run_bpf(program, 0x40000000 | X86_64["read"], AUDIT_ARCH_X86_64) == RET_KILL_PROCESS
    assert run_bpf(program, AARCH64["read"], AUDIT_ARCH_AARCH64) == RET_KILL_PROCESS
    # i386's (the 32-bit ABI), only with a profile that asks for it, as Docker's archMap.
    assert run_bpf(program, I386["read"], AUDIT_ARCH_I386) == RET_ALLOW
    alone = Profile(fail_with(errno.EPERM), (Rule(("read",), ALLOW),))
    assert run_bpf(compile_profile(alone, "x86_64"), 3, AUDIT_ARCH_I386) == RET_KILL_PROCESS


def test_i386_calls_get_the_same_rules_by_their_own_numbers() -> None:
    """As Docker's profile on x86_64 (its archMap adds SCMP_ARCH_X86): a 32-bit program
    (an i386 image) runs, its calls allowed and refused as the 64-bit ones."""
    program = compile_profile(default_profile(), "x86_64")

    def ret(name: str, *args: int) -> int:
        return run_bpf(program, I386[name], AUDIT_ARCH_I386, args)

    for name in ("read", "mmap2", "_llseek", "fstat64", "socketcall", "getuid32", "ptrace"):
        assert ret(name) == RET_ALLOW, name
    for name in ("mount", "umount", "unshare", "stime", "keyctl", "arch_prctl", "vm86"):
        assert ret(name) == errno_ret(errno.EPERM), name
    assert ret("socket", 40) == errno_ret(errno.EPERM) and ret("socket", 1) == RET_ALLOW
    assert ret("clone", 0x20000 | 17) == errno_ret(errno.EPERM) and ret("clone", 17) == RET_ALLOW
    assert ret("clone3") == errno_ret(errno.ENOSYS)
    assert run_bpf(program, 1000, AUDIT_ARCH_I386) == errno_ret(errno.ENOSYS)
    admin = compile_profile(default_profile(), "x86_64", caps=1 << _caps.cap_number("SYS_ADMIN"))
    assert run_bpf(admin, I386["umount"], AUDIT_ARCH_I386) == RET_ALLOW


def test_arch_check_aarch64() -> None:
    program = compile_profile(default_profile(), "aarch64")
    assert struct.unpack_from("<HBBI", program, 8)[3] == AUDIT_ARCH_AARCH64
    assert AUDIT_ARCH_X86_64.to_bytes(4, "little") not in program
    assert run_bpf(program, AARCH64["read"], AUDIT_ARCH_AARCH64) == RET_ALLOW
    assert run_bpf(program, AARCH64["read"], AUDIT_ARCH_X86_64) == RET_KILL_PROCESS
    # arm64 has no x32-like ABI bit: a huge number is just unknown.
    assert run_bpf(program, 0x40000000, AUDIT_ARCH_AARCH64) == errno_ret(errno.ENOSYS)


def test_host_arch_is_the_default() -> None:
    if HOST_ARCH not in ARCHES:
        with pytest.raises(ValueError, match=repr(HOST_ARCH)):
            compile_profile(default_profile())
    else:
        assert compile_profile(default_profile()) == compile_profile(default_profile(), HOST_ARCH)


def test_unsupported_arch_named() -> None:
    with pytest.raises(ValueError, match="unsupported architecture 'riscv64'"):
        compile_profile(default_profile(), "riscv64")


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_every_number_gets_its_rule(arch: str) -> None:
    """Exhaustively: the binary search gives every number the outcome the profile says."""
    spec = ARCHES[arch]
    program = compile_profile(default_profile(), arch)
    # The allowlist, ptrace's rule (Linux 4.8+), arch_prctl's (amd64) and CAP_SYS_CHROOT's
    # (a default capability).
    rules = default_profile().rules
    allowed = {*rules[0].names, *rules[1].names, *rules[2].names, "chroot"}
    numbers = {number: name for name, number in spec.table.items()}
    conditional = {"clone", "socket", "personality", "clone3", "open_tree_attr"}
    for nr in range(max(numbers) + 100):
        got = run_bpf(program, nr, spec.audit_arch)
        name = numbers.get(nr)
        if name is None:
            assert got == errno_ret(errno.ENOSYS), nr
        elif name in allowed:
            assert got == RET_ALLOW, name
        elif name not in conditional:
            assert got == errno_ret(errno.EPERM), name
    assert run_bpf(program, 0xFFFFFFFF, spec.audit_arch) in (
        errno_ret(errno.ENOSYS),
        RET_KILL_PROCESS,
    )


def test_default_profile_conditions() -> None:
    program = compile_profile(default_profile(), "x86_64")

    def ret(name: str, *args: int) -> int:
        return run_bpf(program, X86_64[name], AUDIT_ARCH_X86_64, args)

    thread_flags = 0x003D0F00
    assert ret("clone", thread_flags) == RET_ALLOW
    assert ret("clone", 0x01200011) == RET_ALLOW  # fork: CLONE_CHILD_SETTID|CLEARTID|SIGCHLD
    for flag in (0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000):
        assert ret("clone", flag | 17) == errno_ret(errno.EPERM), hex(flag)
    assert ret("unshare", 0x400) == errno_ret(errno.EPERM)  # CLONE_FILES: Docker's too
    assert ret("unshare", 0x80) == errno_ret(errno.EPERM)  # CLONE_NEWTIME
    assert ret("clone3") == ret("open_tree_attr") == errno_ret(errno.ENOSYS)
    assert ret("socket", 1) == ret("socket", 39) == ret("socket", 41) == RET_ALLOW
    assert ret("socket", 38) == ret("socket", 40) == errno_ret(errno.EPERM)
    assert ret("socket", 40 | 1 << 32) == RET_ALLOW  # the full 64-bit value is compared
    for persona in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert ret("personality", persona) == RET_ALLOW
    assert ret("personality", 0x0400000) == errno_ret(errno.EPERM)
    assert ret("personality", 0xFFFFFFFF | 1 << 32) == errno_ret(errno.EPERM)


BOUNDARY = sorted(
    {0, 1, 5, 6, 7, 0xFFFFFFFF, 1 << 32, (1 << 32) + 6, (6 << 32) + 5, (6 << 32) + 6,
     (6 << 32) + 7, (7 << 32) + 6, (1 << 64) - 1}
)  # fmt: skip


# What Docker's default profile (moby/profiles seccomp, default_linux.go) does on x86_64
# that an allowlist written by hand would easily get wrong: with Docker's 14 capabilities
# and a kernel of 4.8 or later, and what each added capability allows besides.
DOCKER_ALLOWS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "adjtimex", "clock_adjtime",
    "fanotify_mark", "memfd_secret", "statmount", "listmount", "chroot", "epoll_ctl_old",
    "uretprobe", "io_setup", "landlock_create_ruleset", "mseal",
)  # fmt: skip
DOCKER_DENIES = (
    "sethostname", "setdomainname", "get_mempolicy", "ustat", "sysfs", "unshare", "setns",
    "kcmp", "pidfd_getfd", "process_madvise", "fanotify_init", "io_uring_setup", "keyctl",
    "userfaultfd", "uselib", "uprobe", "bpf", "perf_event_open", "mount", "open_by_handle_at",
)  # fmt: skip
DOCKER_BY_CAPABILITY = {
    "SYS_ADMIN": ("mount", "umount2", "unshare", "setns", "sethostname", "setdomainname",
                  "clone3", "fsopen", "open_tree", "mount_setattr", "bpf", "perf_event_open",
                  "syslog", "quotactl", "fanotify_init", "lookup_dcookie"),
    "SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise"),
    "SYS_TIME": ("settimeofday", "clock_settime"),
    "SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "SYS_BOOT": ("reboot",),
    "SYS_RAWIO": ("iopl", "ioperm"),
    "SYS_PACCT": ("acct",),
    "SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind", "set_mempolicy_home_node"),
    "SYSLOG": ("syslog",),
    "BPF": ("bpf",),
    "PERFMON": ("perf_event_open",),
    "DAC_READ_SEARCH": ("open_by_handle_at",),
    "SYS_TTY_CONFIG": ("vhangup",),
}  # fmt: skip


def test_default_profile_is_dockers() -> None:
    default = _caps.to_mask(_caps.DEFAULT_CAPS)

    def ret(caps: int, name: str, *args: int) -> int:
        program = compile_profile(default_profile(), "x86_64", caps=caps)
        return run_bpf(program, X86_64[name], AUDIT_ARCH_X86_64, args)

    for name in DOCKER_ALLOWS:
        assert ret(default, name) == RET_ALLOW, name
    for name in DOCKER_DENIES:
        assert ret(default, name) == errno_ret(errno.EPERM), name
    for cap, names in DOCKER_BY_CAPABILITY.items():
        with_cap = default | 1 << _caps.cap_number(cap)
        for name in names:
            assert ret(default, name) != RET_ALLOW, name
            assert ret(with_cap, name) == RET_ALLOW, (cap, name)
    admin = default | 1 << _caps.cap_number("SYS_ADMIN")
    assert ret(admin, "clone", 0x20000 | 17) == RET_ALLOW  # CLONE_NEWNS
    assert ret(admin, "open_tree_attr") == RET_ALLOW
    no_chroot = default & ~(1 << _caps.cap_number("SYS_CHROOT"))
    assert ret(no_chroot, "chroot") == errno_ret(errno.EPERM)
    assert ret(0, "ptrace") == RET_ALLOW  # not a capability's: --cap-drop ALL keeps it


@pytest.mark.parametrize("op", list(Op))
@pytest.mark.parametrize("value", [6, (6 << 32) + 6, 0xFFFFFFFF, (1 << 64) - 1])
def test_argument_comparisons_are_64_bit(op: Op, value: int) -> None:
    mask = 0xFFFF0000_0000FFFF
    check = ArgCheck(2, op, mask if op is Op.MASKED_EQ else value, value & mask)
    profile = Profile(fail_with(errno.EPERM), (Rule(("read",), ALLOW, (check,)),))
    program = compile_profile(profile, "x86_64")
    expected: Callable[[int], bool] = {
        Op.EQ: lambda a: a == value,
        Op.NE: lambda a: a != value,
        Op.LT: lambda a: a < value,
        Op.LE: lambda a: a <= value,
        Op.GT: lambda a: a > value,
        Op.GE: lambda a: a >= value,
        Op.MASKED_EQ: lambda a: a & mask == value & mask,
    }[op]
    for arg in sorted({*BOUNDARY, value, value - 1, (value + 1) % (1 << 64)}):
        got = run_bpf(program, X86_64["read"], AUDIT_ARCH_X86_64, (0, 0, arg))
        assert (got == RET_ALLOW) == expected(arg), (op, hex(value), hex(arg))


def test_conditional_rules_in_order_then_unconditional() -> None:
    profile = Profile(
        fail_with(errno.EPERM),
        (
            Rule(("read",), fail_with(errno.EBADF), (ArgCheck(0, Op.EQ, 3),)),
            Rule(("read", "write"), ALLOW),
            Rule(("read",), fail_with(errno.EIO), (ArgCheck(0, Op.GE, 3),)),
            Rule(("write",), fail_with(errno.EIO), (ArgCheck(0, Op.EQ, 3), ArgCheck(1, Op.EQ, 0))),
        ),
    )
    program = compile_profile(profile, "x86_64")

    def ret(name: str, *args: int) -> int:
        return run_bpf(program, X86_64[name], AUDIT_ARCH_X86_64, args)

    assert ret("read", 3) == errno_ret(errno.EBADF)
    assert ret("read", 4) == errno_ret(errno.EIO)
    assert ret("read", 2) == RET_ALLOW
    assert ret("write", 3, 0) == errno_ret(errno.EIO)
    assert ret("write", 3, 1) == RET_ALLOW
    assert ret("open") == errno_ret(errno.EPERM)


def test_long_jumps_in_a_big_search() -> None:
    """One outcome per call: the search tree outgrows 8-bit jumps and must still be exact."""
    rules = tuple(Rule((name,), fail_with(number % 200 + 1)) for name, number in X86_64.items())
    program = compile_profile(Profile(ALLOW, rules), "x86_64")
    assert len(program) // 8 > 600
    assert any(struct.unpack_from("<H", program, i)[0] == 0x05 for i in range(0, len(program), 8))
    for name, number in X86_64.items():
        assert run_bpf(program, number, AUDIT_ARCH_X86_64) == errno_ret(number % 200 + 1), name
    # With ALLOW as the default, unknown numbers are allowed (the kernel answers ENOSYS).
    assert run_bpf(program, 1000, AUDIT_ARCH_X86_64) == RET_ALLOW


def test_cap_and_arch_filtered_rules() -> None:
    admin = 1 << _caps.cap_number("SYS_ADMIN")
    profile = Profile(
        fail_with(errno.EPERM),
        (
            Rule(("mount",), ALLOW, includes_caps=admin),
            Rule(("clone3",), fail_with(errno.ENOSYS), excludes_caps=admin),
            Rule(("arch_prctl", "read"), ALLOW, arches=frozenset({"amd64"})),
            Rule(("write",), ALLOW, excludes_arches=frozenset({"amd64"})),
            Rule(("getpid",), ALLOW, min_kernel=(99, 0)),
        ),
    )
    for caps, mount, clone3 in ((0, errno.EPERM, errno.ENOSYS), (admin, None, errno.EPERM)):
        program = compile_profile(profile, "x86_64", caps=caps)
        got = run_bpf(program, X86_64["mount"], AUDIT_ARCH_X86_64)
        assert got == (RET_ALLOW if mount is None else errno_ret(mount))
        assert run_bpf(program, X86_64["clone3"], AUDIT_ARCH_X86_64) == errno_ret(clone3)
    x86 = compile_profile(profile, "x86_64")
    arm = compile_profile(profile, "aarch64")
    assert run_bpf(x86, X86_64["read"], AUDIT_ARCH_X86_64) == RET_ALLOW
    assert run_bpf(x86, X86_64["write"], AUDIT_ARCH_X86_64) == errno_ret(errno.EPERM)
    assert run_bpf(arm, AARCH64["read"], AUDIT_ARCH_AARCH64) == errno_ret(errno.EPERM)
    assert run_bpf(arm, AARCH64["write"], AUDIT_ARCH_AARCH64) == RET_ALLOW
    assert run_bpf(x86, X86_64["getpid"], AUDIT_ARCH_X86_64) == errno_ret(errno.EPERM)


def test_compile_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'no_such_call'"):
        compile_profile(Profile(ALLOW, (Rule(("read", "no_such_call"), ALLOW),)), "x86_64")
    conflict = Profile(ALLOW, (Rule(("read",), ALLOW), Rule(("read",), fail_with(1))))
    with pytest.raises(ValueError, match="conflicting actions for system call read"):
        compile_profile(conflict, "x86_64")
    with pytest.raises(ValueError, match="argument index 6"):
        ArgCheck(6, Op.EQ, 0)
    with pytest.raises(ValueError, match="not an unsigned 64-bit value"):
        ArgCheck(0, Op.EQ, -1)
    with pytest.raises(ValueError, match="errno 70000"):
        fail_with(70000)


def test_dockers_own_default_profile_loads() -> None:
    """Docker's default.json names uretprobe (x86_64 only, Linux 6.11) among its allowed
    calls: a profile that does loads, and the call is allowed where it exists.  Its archMap
    gives x86_64 the 32-bit SCMP_ARCH_X86: that is the profile's compat."""
    data: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [{"names": ["read", "uretprobe", "uprobe"], "action": "SCMP_ACT_ALLOW"}],
    }
    assert not profile_from_docker(data).compat
    data["archMap"] = [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ]
    profile = profile_from_docker(data)
    assert profile.compat
    x86 = compile_profile(profile, "x86_64")
    assert run_bpf(x86, X86_64["uretprobe"], AUDIT_ARCH_X86_64) == RET_ALLOW
    assert run_bpf(x86, X86_64["uprobe"], AUDIT_ARCH_X86_64) == RET_ALLOW
    arm = compile_profile(profile, "aarch64")
    assert run_bpf(arm, AARCH64["read"], AUDIT_ARCH_AARCH64) == RET_ALLOW


def test_names_unknown_to_one_arch_are_skipped() -> None:
    profile = Profile(fail_with(errno.EPERM), (Rule(("arch_prctl", "read"), ALLOW),))
    arm = compile_profile(profile, "aarch64")
    assert run_bpf(arm, AARCH64["read"], AUDIT_ARCH_AARCH64) == RET_ALLOW


def test_default_profile_names_exist_and_denials_hold() -> None:
    for rule in default_profile().rules:
        for name in rule.names:
            assert name in X86_64 or name in AARCH64 or name in I386, name
    allowed = set(default_profile().rules[0].names)
    denied = {
        "mount", "umount2", "pivot_root", "setns", "keyctl", "add_key", "request_key", "bpf",
        "perf_event_open", "kexec_load", "kexec_file_load", "init_module", "finit_module",
        "delete_module", "reboot", "swapon", "swapoff", "open_by_handle_at", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "acct", "settimeofday",
        "clock_settime", "quotactl", "lookup_dcookie", "vhangup", "nfsservctl", "syslog",
        "iopl", "ioperm", "kcmp", "pidfd_getfd", "fsopen", "open_tree", "sethostname",
        "setdomainname", "get_mempolicy", "ustat", "sysfs",
    }  # fmt: skip
    assert not allowed & denied
    conditional = {"clone", "clone3", "unshare", "socket", "personality", "chroot", "ptrace"}
    assert not allowed & conditional


# --- Docker's JSON format -----------------------------------------------------------------


def test_docker_round_trip(tmp_path: Path) -> None:
    admin = 1 << _caps.cap_number("SYS_ADMIN")
    profile = Profile(
        fail_with(errno.EACCES),
        (
            *default_profile().rules,
            Rule(("mount",), ALLOW, includes_caps=admin, min_kernel=(4, 8)),
            Rule(("kexec_load",), Action(ActionKind.KILL_PROCESS), arches=frozenset({"amd64"})),
            Rule(("reboot",), Action(ActionKind.LOG), excludes_caps=admin),
            Rule(("acct",), Action(ActionKind.TRACE, 42)),
            Rule(("syslog",), Action(ActionKind.KILL_THREAD), excludes_arches=frozenset({"x86"})),
        ),
    )
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile_to_docker(profile), indent=2))
    loaded = load_docker_profile(path)
    assert loaded == profile
    for arch in ARCHES:
        assert compile_profile(loaded, arch) == compile_profile(profile, arch)
    again = tmp_path / "default.json"
    again.write_text(json.dumps(profile_to_docker(default_profile())))
    assert load_docker_profile(again) == default_profile()


def test_docker_profile_fields(tmp_path: Path) -> None:
    data = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basic I/O"},
            {"name": "getpid", "action": "SCMP_ACT_KILL"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": None},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
             "includes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["amd64", "arm64"]},
             "excludes": {}},
        ],
    }  # fmt: skip
    profile = profile_from_docker(data)
    assert profile.default_action == fail_with(errno.ENOSYS)
    assert profile.rules[0].names == ("read", "write")
    assert profile.rules[1] == Rule(("getpid",), Action(ActionKind.KILL_THREAD))
    assert profile.rules[2].action == fail_with(errno.EPERM)
    assert profile.rules[3].args == (ArgCheck(0, Op.EQ, 8),)
    assert profile.rules[3].includes_caps == 1 << 21
    assert profile.rules[3].arches == frozenset({"amd64", "arm64"})


def test_names_of_other_architectures_are_skipped() -> None:
    """Docker's profile lists calls of 32-bit and other ABIs; they load and are skipped."""
    names = ["read", "chown32", "_llseek", "socketcall", "mmap2", "riscv_flush_icache"]
    data = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}  # fmt: skip
    profile = profile_from_docker(data)
    for arch, spec in ARCHES.items():
        program = compile_profile(profile, arch)
        assert run_bpf(program, spec.table["read"], spec.audit_arch) == RET_ALLOW
        assert run_bpf(program, spec.table["write"], spec.audit_arch) == errno_ret(errno.EPERM)


def _with(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
    rule.update(changes)
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "profile: expected dict"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, "unknown action 'SCMP_ACT_MAYBE'"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "action SCMP_ACT_NOTIFY is not supported"),
        ({}, r"profile.defaultAction: expected str, got None"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "colour": 1}, "unknown key 'colour'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
         "unknown architecture 'SCMP_ARCH_Z80'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]},
         "profile.flags: not supported"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"},
         "errnoRet must be an errno number, got 'EPERM'"),
        (_with(names=["read", "frobnicate"]), r"syscalls\[0\].names: .*'frobnicate'"),
        (_with(names=[]), r"syscalls\[0\]: no system call names"),
        (_with(action="SCMP_ACT_NOPE"), r"syscalls\[0\]: unknown action 'SCMP_ACT_NOPE'"),
        (_with(action="SCMP_ACT_ERRNO", errnoRet=True), "errno number, got True"),
        (_with(action="SCMP_ACT_ERRNO", errnoRet=-1), "errno number, got -1"),
        (_with(action="SCMP_ACT_ERRNO", errnoRet=70000), r"syscalls\[0\]: errno 70000"),
        (_with(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]),
         r"syscalls\[0\].args\[0\].op: unknown comparison 'SCMP_CMP_ABOUT'"),
        (_with(args=[{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]), "argument index 7"),
        (_with(args=[{"index": 0, "value": -2, "op": "SCMP_CMP_EQ"}]), "value -2"),
        (_with(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "mask": 1}]),
         "unknown key 'mask'"),
        (_with(includes={"caps": ["CAP_TELEPORT"]}), r'includes.caps: .*"CAP_TELEPORT"'),
        (_with(includes={"minKernel": "4"}), "minKernel: expected 'major.minor', got '4'"),
        (_with(excludes={"minKernel": "4.8"}), "excludes.minKernel: not supported"),
        (_with(color="red"), r"syscalls\[0\]: unknown key 'color'"),
    ],
)  # fmt: skip
def test_docker_profile_errors(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile_from_docker(data)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"{path}: invalid JSON"):
        load_docker_profile(path)
    path.write_text(json.dumps(_with(names=["nosuchcall"])))
    with pytest.raises(ValueError, match=f"{path}: .*'nosuchcall'"):
        load_docker_profile(path)


# --- the real thing: a child process under the filter -------------------------------------

# Runs in a fresh interpreter: loads the program given on stdin (if any), then makes each
# requested probe and prints {probe: "ok:<result>" or errno name}.
PAYLOAD = r"""
import ctypes, errno, json, os, subprocess, sys, threading
from boxd._syscalls import X86_64, AARCH64
table = {"x86_64": X86_64, "aarch64": AARCH64}[os.uname().machine]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                       ctypes.c_ulong]

def sys_call(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return "ok:%d" % ret if ret >= 0 else errno.errorcode[ctypes.get_errno()]

def named(name, *args):
    return sys_call(table[name], *args)

def clone_newns():
    result = named("clone", 0x20000 | 17, 0, 0, 0, 0)
    if result == "ok:0":
        os._exit(0)
    if result.startswith("ok:"):
        os.waitpid(int(result[3:]), 0)
    return result

def thread():
    seen = []
    t = threading.Thread(target=seen.append, args=(1,))
    t.start()
    t.join()
    return "ok:%d" % len(seen)

def fork_exec():
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        finally:
            os._exit(99)
    return "ok:%d" % os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def python_child():
    workload = os.environ["WORKLOAD"]
    return "ok:%d" % subprocess.run([sys.executable, "-c", workload]).returncode

buf = ctypes.create_string_buffer(4096)
root = ctypes.create_string_buffer(b"/")
probes = {
    "unshare_newns": lambda: named("unshare", 0x20000),
    "unshare_files": lambda: named("unshare", 0x400),
    "setns": lambda: named("setns", -1, 0),
    "clone_newns": clone_newns,
    "mount": lambda: named("mount", 0, 0, 0, 0, 0),
    "umount2": lambda: named("umount2", 0, 0),
    "keyctl": lambda: named("keyctl", 0, 0, 0, 0, 0),
    "bpf": lambda: named("bpf", 0, 0, 0),
    "clone3": lambda: named("clone3", 0, 0),
    "nr1000": lambda: sys_call(1000),
    "personality_query": lambda: named("personality", 0xFFFFFFFF),
    "personality_bad": lambda: named("personality", 0x0400000),
    "getrandom": lambda: named("getrandom", ctypes.addressof(buf), 16, 0),
    "statx": lambda: named("statx", -100, ctypes.addressof(root), 0, 0x7FF,
                           ctypes.addressof(buf)),
    "io_uring_setup": lambda: named("io_uring_setup", 1, ctypes.addressof(buf)),
    # PTRACE_ATTACH to a pid that cannot exist: ESRCH once the filter lets it through.
    "ptrace": lambda: named("ptrace", 16, 0x7FFFFFFF, 0, 0),
    "socket_kcm": lambda: named("socket", 38, 2, 0),
    "socket_vsock": lambda: named("socket", 40, 1, 0),
    "socket_unix": lambda: named("socket", 1, 1, 0),
    "x32_getpid": lambda: sys_call(0x40000000 | 39),
    "thread": thread,
    "fork_exec": fork_exec,
    "python_child": python_child,
}
program = sys.stdin.buffer.read()
if program:
    fprog = ctypes.create_string_buffer(16)
    filt = ctypes.create_string_buffer(program, len(program))
    ctypes.c_ushort.from_buffer(fprog, 0).value = len(program) // 8
    ctypes.c_void_p.from_buffer(fprog, 8).value = ctypes.addressof(filt)
    assert libc.prctl(38, 1, None, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS"
    if libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:
        sys.exit("PR_SET_SECCOMP: " + os.strerror(ctypes.get_errno()))
print(json.dumps({name: probes[name]() for name in sys.argv[1:]}), flush=True)
"""

# An ordinary program, run (exec'd) under the filter by the "python_child" probe.
WORKLOAD = r"""
import asyncio, concurrent.futures, hashlib, os, socket, subprocess, tempfile
asyncio.run(asyncio.sleep(0.001))
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    assert list(pool.map(abs, [-1, -2])) == [1, 2]
with tempfile.TemporaryDirectory() as d:
    with open(os.path.join(d, "f"), "wb") as f:
        f.write(os.urandom(64))
    os.rename(os.path.join(d, "f"), os.path.join(d, "g"))
    os.stat(os.path.join(d, "g"))
a, b = socket.socketpair()
a.sendall(b"ping")
assert b.recv(4) == b"ping"
out = subprocess.run(["/bin/sh", "-c", "echo hi | cat"], capture_output=True).stdout
assert out.strip() == b"hi"
hashlib.sha256(b"x").hexdigest()
"""

REPO = Path(__file__).resolve().parent.parent


def run_probes(program: bytes, *probes: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PAYLOAD, *probes],
        input=program.decode("latin-1"),
        encoding="latin-1",
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "WORKLOAD": WORKLOAD},
        timeout=60,
        check=False,
    )


def probe(program: bytes, *probes: str) -> dict[str, str]:
    result = run_probes(program, *probes)
    assert result.returncode == 0, result.stderr
    answers: dict[str, str] = json.loads(result.stdout)
    return answers


@needs_supported_host
def test_default_filter_in_a_real_process() -> None:
    got = probe(
        compile_profile(default_profile()),
        "unshare_newns", "unshare_files", "setns", "clone_newns", "mount", "umount2",
        "keyctl", "bpf", "clone3", "nr1000", "personality_query", "personality_bad",
        "getrandom", "statx", "io_uring_setup", "ptrace", "socket_vsock", "socket_kcm",
        "socket_unix", "thread", "fork_exec", "python_child",
    )  # fmt: skip
    assert got == {
        "unshare_newns": "EPERM",
        "unshare_files": "EPERM",
        "setns": "EPERM",
        "clone_newns": "EPERM",
        "mount": "EPERM",
        "umount2": "EPERM",
        "keyctl": "EPERM",
        "bpf": "EPERM",
        "clone3": "ENOSYS",
        "nr1000": "ENOSYS",
        "personality_query": "ok:0",
        "personality_bad": "EPERM",
        "getrandom": "ok:16",
        "statx": "ok:0",
        "io_uring_setup": "EPERM",
        "ptrace": "ESRCH",
        "socket_vsock": "EPERM",
        "socket_kcm": "EPERM",
        "socket_unix": got["socket_unix"],
        "thread": "ok:1",
        "fork_exec": "ok:0",
        "python_child": "ok:0",
    }
    assert got["socket_unix"].startswith("ok:")


@needs_supported_host
def test_without_the_filter_the_probes_differ() -> None:
    """A control run, so the answers above are the filter's and not the kernel's."""
    got = probe(b"", "clone3", "personality_bad", "keyctl", "unshare_files", "socket_kcm")
    assert got["clone3"] == "EINVAL"
    assert got["personality_bad"] == "ok:0"
    assert got["keyctl"] != "EPERM"
    assert got["unshare_files"] == "ok:0"
    assert got["socket_kcm"] != "EPERM"


@pytest.mark.skipif(HOST_ARCH != "x86_64", reason="the x32 ABI exists only on x86_64")
def test_x32_call_kills_the_process() -> None:
    result = run_probes(compile_profile(default_profile()), "x32_getpid")
    assert result.returncode == -signal.SIGSYS, result


@needs_supported_host
def test_docker_profile_file_loaded_for_real(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["keyctl", "add_key"], "action": "SCMP_ACT_ERRNO",
                     "errnoRet": errno.EACCES},
                    {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                     "errnoRet": errno.EINVAL,
                     "args": [{"index": 0, "value": 0x0400000, "op": "SCMP_CMP_GE"}]},
                    {"names": ["getrandom"], "action": "SCMP_ACT_ERRNO",
                     "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                    # Docker's (runc's) TRACE: with no tracer, ENOSYS.
                    {"names": ["bpf"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                ],
            }
        )
    )  # fmt: skip
    got = probe(
        compile_profile(load_docker_profile(path)),
        "keyctl", "personality_bad", "personality_query", "getrandom", "clone3", "thread", "bpf",
    )  # fmt: skip
    assert got == {
        "bpf": "ENOSYS",
        "keyctl": "EACCES",
        "personality_bad": "EINVAL",
        "personality_query": "EINVAL",
        "getrandom": "ok:16",
        "clone3": "EINVAL",
        "thread": "ok:1",
    }

"""Device access control on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE.

Cgroup v2 has no devices controller.  Instead, whenever a task makes a device node
(mknod) or opens one, the kernel runs the BPF_CGROUP_DEVICE programs in effect for the
task's cgroup in the unified hierarchy (on a hybrid host as well, before the v1 devices
controller's own check).  A program gets ``struct bpf_cgroup_dev_ctx``::

    u32 access_type;  /* access << 16 | type */
    u32 major;
    u32 minor;

with type BPF_DEVCG_DEV_BLOCK (1) or BPF_DEVCG_DEV_CHAR (2) and access a mask of
BPF_DEVCG_ACC_MKNOD (1), READ (2) and WRITE (4); it returns 1 to allow, 0 to deny (the
call fails with EPERM).

:func:`compile_rules` builds an allowlist with the meaning of the v1 controller's
``devices.allow`` after ``devices.deny a``: a request is allowed when one rule has its
type (or ``a``), its major and minor (or ``*``) and every access bit it asks for::

    r2 = ctx->access_type; r3 = r2 & 0xffff (type); r2 >>= 16 (access)
    r4 = ctx->major; r5 = ctx->minor
    for each rule: a check per field the rule restricts, each jumping past the rule's
                   "r0 = 1; exit" when it fails
    r0 = 0; exit

:func:`attach` loads it with bpf(BPF_PROG_LOAD) and attaches it to a cgroup directory
with bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI).  The attachment holds the
program (the fd is closed at once) until the cgroup is removed.  What ALLOW_MULTI means:

* the programs in effect for a cgroup are its own and those its ancestors attached with
  ALLOW_MULTI, all of which must allow a request (a single deny wins).  So a restriction
  above the container's cgroup (systemd's DevicePolicy= on the daemon's unit, which
  attaches with ALLOW_MULTI) still applies, and ours can only narrow it;
* a program an ancestor attached with BPF_F_ALLOW_OVERRIDE is replaced by ours for the
  container's subtree (the kernel's override rule); one attached without a flag forbids
  any program below it, and then the attach fails with EPERM and says so;
* from inside, removing it takes bpf(2) (refused by the default seccomp filter) and the
  program's fd, which only CAP_SYS_ADMIN can get from its id; a program of the
  container's own cannot widen access (first point).  A ``--privileged`` container has
  both.

The license string only matters for programs that call GPL-only helpers; this one calls
no helper, so it carries boxd's own.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Sequence

from ._record import frozen
from ._syscalls import BY_MACHINE, libc

# --- bpf(2) constants (linux/bpf.h) ---------------------------------------------------

_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6  # enum bpf_attach_type
_BPF_F_ALLOW_MULTI = 2

_DEV_BLOCK = 1  # BPF_DEVCG_DEV_BLOCK
_DEV_CHAR = 2  # BPF_DEVCG_DEV_CHAR
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
MAX_MAJOR = (1 << 12) - 1  # the kernel's dev_t: 12 bits of major, 20 of minor
MAX_MINOR = (1 << 20) - 1

# --- eBPF instructions (linux/bpf_common.h, linux/bpf.h) ------------------------------

_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto pc + 1 + off
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

# struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm;}, little-endian
# on both supported machines (dst_reg is the low nibble).
_INSN = struct.Struct("<BBhi")
_Insn = tuple[int, int, int, int, int]  # code, dst, src, off, imm
# A rule's jump to "this rule does not match": resolved once the rule's block is complete.
_NEXT_RULE = -1

_LICENSE = b"Apache-2.0\0"
_PROG_NAME = b"boxd_devices"
_LOG_SIZE = 1 << 16


class DeviceFilterError(OSError):
    pass


@frozen
class DeviceRule:
    """Allow ``access`` (some of ``r``, ``w``, ``m``) to devices of ``kind`` (``c``
    character, ``b`` block, ``a`` either) numbered ``major``:``minor`` (None: any)."""

    kind: str
    major: int | None
    minor: int | None
    access: str

    def __post_init__(self) -> None:
        if self.kind not in ("a", "b", "c"):
            raise ValueError(f"device type {self.kind!r} is not c, b or a")
        if self.major is not None and not 0 <= self.major <= MAX_MAJOR:
            raise ValueError(f"major {self.major} is out of range 0..{MAX_MAJOR}")
        if self.minor is not None and not 0 <= self.minor <= MAX_MINOR:
            raise ValueError(f"minor {self.minor} is out of range 0..{MAX_MINOR}")
        access = self.access
        if not access or set(access) - set(ACCESS_BITS) or len(set(access)) != len(access):
            raise ValueError(f"access {access!r} is not a non-empty set of r, w and m")

    def __str__(self) -> str:
        """The rule as ``devices.allow`` of the v1 controller takes it: ``c 136:* rwm``."""
        major = "*" if self.major is None else self.major
        minor = "*" if self.minor is None else self.minor
        return f"{self.kind} {major}:{minor} {self.access}"


def parse_rule(text: str) -> DeviceRule:
    """``c 1:3 rwm``, ``c 136:* rw``, ``a *:* m`` -> a :class:`DeviceRule`; ValueError naming
    the text when malformed."""
    kind, _, rest = text.partition(" ")
    numbers, _, access = rest.partition(" ")
    major, colon, minor = numbers.partition(":")
    # What the regular expression ([abc]) (\d+|\*):(\d+|\*) ([rwm]+) takes, without re
    # (boxd-runtime create imports no re: ~1.5 ms).
    if not (
        kind in ("a", "b", "c")
        and colon
        and all(n == "*" or n.isdecimal() for n in (major, minor))
        and access
        and set(access) <= set("rwm")
    ):
        raise ValueError(
            f"invalid device rule {text!r}: use TYPE MAJOR:MINOR ACCESS, e.g. c 136:* rw"
        )
    try:
        return DeviceRule(
            kind,
            None if major == "*" else int(major),
            None if minor == "*" else int(minor),
            access,
        )
    except ValueError as exc:
        raise ValueError(f"invalid device rule {text!r}: {exc}") from None


def _rule_code(rule: DeviceRule) -> list[_Insn]:
    """Instructions that return 1 when ``rule`` allows the request, else go on past them."""
    block: list[_Insn] = []
    if rule.kind != "a":
        block.append((_JNE_K, 3, 0, _NEXT_RULE, _DEV_CHAR if rule.kind == "c" else _DEV_BLOCK))
    allowed = sum(ACCESS_BITS[a] for a in rule.access)
    if allowed != sum(ACCESS_BITS.values()):
        # Every requested bit must be allowed: access & ~allowed == 0.
        block += [
            (_MOV32_X, 0, 2, 0, 0),
            (_AND32_K, 0, 0, 0, ~allowed),
            (_JNE_K, 0, 0, _NEXT_RULE, 0),
        ]
    if rule.major is not None:
        block.append((_JNE_K, 4, 0, _NEXT_RULE, rule.major))
    if rule.minor is not None:
        block.append((_JNE_K, 5, 0, _NEXT_RULE, rule.minor))
    block += [(_MOV64_K, 0, 0, 0, 1), (_EXIT, 0, 0, 0, 0)]
    return [
        (code, dst, src, len(block) - i - 1 if off == _NEXT_RULE else off, imm)
        for i, (code, dst, src, off, imm) in enumerate(block)
    ]


def compile_rules(rules: Sequence[DeviceRule]) -> bytes:
    """The program (``struct bpf_insn[]`` bytes) that allows what ``rules`` allow and
    denies everything else.  Rules after one that allows everything are left out (the
    verifier refuses unreachable instructions)."""
    program: list[_Insn] = [
        (_LDX_W, 2, 1, 0, 0),  # access_type
        (_MOV32_X, 3, 2, 0, 0),
        (_AND32_K, 3, 0, 0, 0xFFFF),  # type
        (_RSH32_K, 2, 0, 0, 16),  # access
        (_LDX_W, 4, 1, 4, 0),  # major
        (_LDX_W, 5, 1, 8, 0),  # minor
    ]
    for rule in rules:
        code = _rule_code(rule)
        program += code
        if len(code) == 2:  # no check: everything is allowed
            break
    else:
        program += [(_MOV64_K, 0, 0, 0, 0), (_EXIT, 0, 0, 0, 0)]
    return b"".join(
        _INSN.pack(code, src << 4 | dst, off, imm) for code, dst, src, off, imm in program
    )


# --- loading and attaching ------------------------------------------------------------


# The BPF_PROG_LOAD part of ``union bpf_attr``, up to ``prog_name``: prog_type, insn_cnt,
# insns, license, log_level, log_size, log_buf, kern_version, prog_flags, prog_name.
_PROG_LOAD_ATTR = struct.Struct("=IIQQIIQII16s")
# The BPF_PROG_ATTACH part: target_fd, attach_bpf_fd, attach_type, attach_flags.
_PROG_ATTACH_ATTR = struct.Struct("=IIII")


def _bpf(cmd: int, attr: bytes) -> int:
    """bpf(cmd, &attr, sizeof attr); OSError with the errno on failure."""
    import ctypes  # on first use: see _syscalls.libc

    machine = os.uname().machine
    numbers = BY_MACHINE.get(machine)
    if numbers is None:
        raise DeviceFilterError(
            errno.ENOSYS, f"no bpf(2) number for {machine!r} (known: {', '.join(BY_MACHINE)})"
        )
    number = numbers["bpf"]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    result: int = libc().syscall(
        ctypes.c_long(number),
        ctypes.c_long(cmd),
        buffer,
        ctypes.c_ulong(len(attr)),
    )
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _load(program: bytes) -> int:
    """Load ``program``; the fd of the loaded program.  A refusal quotes the end of the
    verifier's log."""
    import ctypes  # on first use: see _syscalls.libc

    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr = _PROG_LOAD_ATTR.pack(
        _BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // _INSN.size,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,  # log_level
        _LOG_SIZE,
        ctypes.addressof(log),
        0,  # kern_version
        0,  # prog_flags
        _PROG_NAME,
    )
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except OSError as exc:
        text = log.value.decode(errors="replace").strip()
        if exc.errno == errno.ENOSYS:
            why = "this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL)"
        elif exc.errno == errno.EPERM:
            why = "loading a BPF program needs CAP_SYS_ADMIN (or CAP_BPF)"
        elif exc.errno == errno.EINVAL and not text:
            # The verifier never ran: the kernel does not know the program type.
            why = (
                "this kernel has no BPF_PROG_TYPE_CGROUP_DEVICE programs "
                "(CONFIG_CGROUP_BPF), the only device control cgroup v2 has"
            )
        else:
            tail = " | ".join(text.splitlines()[-4:])
            why = f"the kernel refused the device program: {exc.strerror}: {tail}"
        raise OSError(exc.errno, why) from None


def _attach(dir_fd: int, prog_fd: int) -> None:
    attr = _PROG_ATTACH_ATTR.pack(dir_fd, prog_fd, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI)
    try:
        _bpf(_BPF_PROG_ATTACH, attr)
    except OSError as exc:
        why = f"cannot attach the device program: {exc.strerror}"
        if exc.errno == errno.EPERM:
            why += (
                " (an ancestor cgroup holds a device program attached without "
                "BPF_F_ALLOW_MULTI or BPF_F_ALLOW_OVERRIDE, which allows none below it)"
            )
        elif exc.errno == errno.EBADF:
            why += " (not a cgroup v2 directory)"
        raise OSError(exc.errno, why) from None


def attach(cgroup_dir: str | os.PathLike[str], program: bytes) -> None:
    """Load ``program`` (from :func:`compile_rules`) and attach it to the cgroup v2
    directory ``cgroup_dir`` with BPF_F_ALLOW_MULTI.  :class:`DeviceFilterError` naming
    the directory and the reason on failure."""
    try:
        dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            prog_fd = _load(program)
            try:
                _attach(dir_fd, prog_fd)
            finally:
                os.close(prog_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise DeviceFilterError(
            exc.errno, f"cannot restrict device access in cgroup {cgroup_dir}: {exc.strerror}"
        ) from None

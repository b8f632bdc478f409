"""Seccomp profiles and a classic-BPF compiler for them (no libseccomp needed).

A :class:`Profile` is a default action and a list of :class:`Rule` s, with the meaning of
Docker's JSON profiles (:func:`load_docker_profile` reads one, :func:`profile_to_docker`
writes one).  :func:`compile_profile` turns it into the bytes of a ``struct sock_filter``
array for ``SpawnPlan.seccomp``, which the spawn path loads with
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` after setting no_new_privs.

The program, for one architecture:

1. ``seccomp_data.arch`` must be the target's AUDIT_ARCH, otherwise the process is killed;
   a profile with ``compat`` also takes i386's on x86_64, whose calls then go through steps
   2 to 4 with their own numbers.  On x86_64 the x32 ABI (bit 0x40000000 of the number) is
   killed.
2. A binary search over the system call number picks the rules of that call.  Numbers are
   grouped into ranges that share an outcome, so the search is about seven comparisons.
3. A call's rules with argument checks are tried in profile order; the first whose checks
   all hold gives its action.  Then the call's unconditional rule, if any, and otherwise the
   profile's default action.
4. A number the syscall table does not know (a gap, or newer than the table) gets ENOSYS,
   so that programs probe new calls and fall back, unless the default action is ALLOW.

Which rules apply is decided at compile time: rules limited to other architectures
(``includes.arches``), to capabilities the container lacks (``includes.caps`` /
``excludes.caps``) or to newer kernels (``includes.minKernel``) are left out.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence

from . import _caps
from ._record import frozen
from ._syscalls import AARCH64, I386, OTHER_ARCHES_ONLY, X86_64

TYPE_CHECKING = False  # not typing's: typing costs ~2.5 ms of boxd-runtime create's import
if TYPE_CHECKING:
    from typing import Any

# --- BPF and seccomp constants (linux/filter.h, linux/seccomp.h, linux/audit.h) ---------

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_JA = 0x05  # BPF_JMP | BPF_JA
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGT_K = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

_RET_KILL_PROCESS = 0x80000000
_RET_KILL_THREAD = 0x00000000
_RET_ERRNO = 0x00050000
_RET_TRACE = 0x7FF00000
_RET_LOG = 0x7FFC0000
_RET_ALLOW = 0x7FFF0000

# Offsets in struct seccomp_data {int nr; u32 arch; u64 instruction_pointer; u64 args[6];}
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

_X32_SYSCALL_BIT = 0x40000000
_MAX_INSNS = 4096  # BPF_MAXINSNS
_MAX_JUMP = 255  # jt/jf are u8

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}.  Both supported architectures are
# little-endian, so the program is built little-endian whatever machine compiles it.
_SOCK_FILTER = struct.Struct("<HBBI")

_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


# --- the profile model -------------------------------------------------------------------


class ActionKind(enum.Enum):
    """What the filter does with a call; values are Docker's names."""

    ALLOW = "SCMP_ACT_ALLOW"
    ERRNO = "SCMP_ACT_ERRNO"
    KILL_PROCESS = "SCMP_ACT_KILL_PROCESS"
    KILL_THREAD = "SCMP_ACT_KILL_THREAD"
    LOG = "SCMP_ACT_LOG"
    TRACE = "SCMP_ACT_TRACE"


_RETURNS = {  # SECCOMP_RET_* of each kind (ERRNO's and TRACE's take the action's value too)
    ActionKind.ALLOW: _RET_ALLOW,
    ActionKind.ERRNO: _RET_ERRNO,
    ActionKind.KILL_PROCESS: _RET_KILL_PROCESS,
    ActionKind.KILL_THREAD: _RET_KILL_THREAD,
    ActionKind.LOG: _RET_LOG,
    ActionKind.TRACE: _RET_TRACE,
}


@frozen
class Action:
    kind: ActionKind
    # For ERRNO: the error the call fails with; for TRACE: the value a ptrace tracer is
    # told (PTRACE_GETEVENTMSG).  Without a tracer a traced call fails with ENOSYS.
    errno: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.errno <= 0xFFFF:
            raise ValueError(f"errno {self.errno} is out of range 0..65535")

    def ret(self) -> int:
        """The SECCOMP_RET_* value the filter returns."""
        if self.kind in (ActionKind.ERRNO, ActionKind.TRACE):
            return _RETURNS[self.kind] | self.errno
        return _RETURNS[self.kind]


ALLOW = Action(ActionKind.ALLOW)
KILL_PROCESS = Action(ActionKind.KILL_PROCESS)


def fail_with(err: int) -> Action:
    """The action that makes a call fail with ``err`` (``fail_with(errno.EPERM)``)."""
    return Action(ActionKind.ERRNO, err)


class Op(enum.Enum):
    """Argument comparisons (unsigned, on the full 64-bit argument)."""

    NE = "SCMP_CMP_NE"
    LT = "SCMP_CMP_LT"
    LE = "SCMP_CMP_LE"
    EQ = "SCMP_CMP_EQ"
    GE = "SCMP_CMP_GE"
    GT = "SCMP_CMP_GT"
    MASKED_EQ = "SCMP_CMP_MASKED_EQ"


@frozen
class ArgCheck:
    """``args[index] <op> value``; for MASKED_EQ, ``args[index] & value == value_two``."""

    index: int
    op: Op
    value: int
    value_two: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 5:
            raise ValueError(f"argument index {self.index} is out of range 0..5")
        for name, value in (("value", self.value), ("value_two", self.value_two)):
            if not 0 <= value <= _U64:
                raise ValueError(f"argument {name} {value} is not an unsigned 64-bit value")


@frozen
class Rule:
    """``action`` for the calls in ``names`` when every check in ``args`` holds.

    The rule applies only to containers that hold every capability in ``includes_caps``
    and none in ``excludes_caps`` (bit masks), on the Docker architectures in ``arches``
    (``amd64``, ``arm64``; empty means all) minus ``excludes_arches``, and on kernels at
    least ``min_kernel`` (major, minor).
    """

    names: tuple[str, ...]
    action: Action
    args: tuple[ArgCheck, ...] = ()
    includes_caps: int = 0
    excludes_caps: int = 0
    arches: frozenset[str] = frozenset()
    excludes_arches: frozenset[str] = frozenset()
    min_kernel: tuple[int, int] | None = None


@frozen
class Profile:
    """``compat``: the filter takes the calls of the 32-bit ABI the native architecture's
    kernel runs too, where boxd has its table (i386 on x86_64, as Docker's profile maps
    SCMP_ARCH_X86 there), each by its own number under the same rules; otherwise they
    kill the process."""

    default_action: Action
    rules: tuple[Rule, ...] = ()
    compat: bool = False


@frozen
class _Arch:
    audit_arch: int
    docker_name: str  # as in a Docker profile's includes.arches
    table: Mapping[str, int]
    x32_bit: bool  # numbers with bit 30 set belong to another ABI
    compat: _Arch | None = None  # the 32-bit ABI this architecture's kernel runs too


ARCHES: dict[str, _Arch] = {
    "x86_64": _Arch(
        0xC000003E, "amd64", X86_64, x32_bit=True, compat=_Arch(0x40000003, "x86", I386, False)
    ),
    "aarch64": _Arch(0xC00000B7, "arm64", AARCH64, x32_bit=False),
}


# Every name some supported architecture's table (or the list of other architectures'
# calls) has: a profile such as Podman's asks about ~1,300 names per container.
_KNOWN = frozenset(OTHER_ARCHES_ONLY).union(X86_64, I386, AARCH64)


def known_syscall(name: str) -> bool:
    """Whether some supported architecture's table (or the list of other architectures'
    calls) has ``name``."""
    return name in _KNOWN


def _check_names(names: Iterable[str], where: str) -> None:
    unknown = sorted({name for name in names if not known_syscall(name)})
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise ValueError(f"{where}: unknown system call {listed}")


# --- the compiler ------------------------------------------------------------------------

_Insn = tuple[int, int, int, int]  # code, jt, jf, k
# A rule block's jump to "this rule does not match": resolved once the block is complete.
_FAIL = -1


@frozen
class _Outcome:
    """What happens to one system call: conditional rules in order, then a fallback."""

    conditional: tuple[tuple[tuple[ArgCheck, ...], Action], ...]
    fallback: Action


def _kernel_version() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    if match is None:
        raise ValueError(f"cannot read the kernel version from {os.uname().release!r}")
    return int(match[1]), int(match[2])


def _applies(rule: Rule, arch: _Arch, caps: int, kernel: tuple[int, int]) -> bool:
    if rule.arches and arch.docker_name not in rule.arches:
        return False
    if arch.docker_name in rule.excludes_arches:
        return False
    if rule.includes_caps & caps != rule.includes_caps or rule.excludes_caps & caps:
        return False
    return rule.min_kernel is None or kernel >= rule.min_kernel


def _load_arg(index: int, high: bool) -> _Insn:
    return (_LD_W_ABS, 0, 0, _OFF_ARGS + 8 * index + (4 if high else 0))


def _check_code(check: ArgCheck) -> list[_Insn]:
    """Instructions that fall through when ``check`` holds and jump to _FAIL otherwise."""
    hi, lo = check.value >> 32, check.value & _U32
    load_hi, load_lo = _load_arg(check.index, True), _load_arg(check.index, False)
    op = check.op
    if op is Op.EQ:
        return [load_hi, (_JEQ_K, 0, _FAIL, hi), load_lo, (_JEQ_K, 0, _FAIL, lo)]
    if op is Op.NE:
        # Holds as soon as one half differs.
        return [load_hi, (_JEQ_K, 0, 2, hi), load_lo, (_JEQ_K, _FAIL, 0, lo)]
    if op is Op.MASKED_EQ:
        want_hi, want_lo = check.value_two >> 32, check.value_two & _U32
        return [
            load_hi,
            (_ALU_AND_K, 0, 0, hi),
            (_JEQ_K, 0, _FAIL, want_hi),
            load_lo,
            (_ALU_AND_K, 0, 0, lo),
            (_JEQ_K, 0, _FAIL, want_lo),
        ]
    # Ordered comparisons: the high halves decide unless they are equal.
    if op in (Op.GT, Op.GE):
        low_jump = _JGT_K if op is Op.GT else _JGE_K
        return [
            load_hi,
            (_JGT_K, 3, 0, hi),
            (_JEQ_K, 0, _FAIL, hi),
            load_lo,
            (low_jump, 0, _FAIL, lo),
        ]
    # LT is "not GE" and LE is "not GT" on the low half.
    low_jump = _JGE_K if op is Op.LT else _JGT_K
    return [
        load_hi,
        (_JGT_K, _FAIL, 0, hi),
        (_JEQ_K, 0, 2, hi),
        load_lo,
        (low_jump, _FAIL, 0, lo),
    ]


def _rule_code(args: tuple[ArgCheck, ...], action: Action, name: str) -> list[_Insn]:
    block = [insn for check in args for insn in _check_code(check)]
    block.append((_RET_K, 0, 0, action.ret()))
    resolved = []
    for i, (code, jt, jf, k) in enumerate(block):
        to_end = len(block) - i - 1
        if to_end > _MAX_JUMP:
            raise ValueError(f"rule for {name} has too many argument checks ({len(args)})")
        resolved.append((code, to_end if jt == _FAIL else jt, to_end if jf == _FAIL else jf, k))
    return resolved


def _outcome_code(outcome: _Outcome, name: str) -> list[_Insn]:
    code = [insn for args, action in outcome.conditional for insn in _rule_code(args, action, name)]
    code.append((_RET_K, 0, 0, outcome.fallback.ret()))
    return code


def _search_code(ranges: Sequence[tuple[int, _Outcome, str]]) -> list[_Insn]:
    """A binary search over ``ranges`` (start number, outcome, name), sorted by start."""
    if len(ranges) == 1:
        _, outcome, name = ranges[0]
        return _outcome_code(outcome, name)
    middle = len(ranges) // 2
    below, above = _search_code(ranges[:middle]), _search_code(ranges[middle:])
    pivot = ranges[middle][0]
    if len(below) <= _MAX_JUMP:
        return [(_JGE_K, len(below), 0, pivot), *below, *above]
    # Too far for the 8-bit jump: hop over the lower half with an unconditional jump.
    return [(_JGE_K, 0, 1, pivot), (_JA, 0, 0, len(below)), *below, *above]


def _outcomes(
    profile: Profile, arch: _Arch, caps: int, kernel: tuple[int, int]
) -> dict[int, _Outcome]:
    conditional: dict[int, list[tuple[tuple[ArgCheck, ...], Action]]] = {}
    unconditional: dict[int, Action] = {}
    for rule in profile.rules:
        if not _applies(rule, arch, caps, kernel):
            continue
        for name in rule.names:
            number = arch.table.get(name)
            if number is None:
                continue
            if rule.args:
                conditional.setdefault(number, []).append((rule.args, rule.action))
                continue
            earlier = unconditional.setdefault(number, rule.action)
            if earlier != rule.action:
                raise ValueError(
                    f"conflicting actions for system call {name}: "
                    f"{earlier.kind.value} and {rule.action.kind.value}"
                )
    outcomes = {}
    # Most calls share an outcome (allowed, or the default action): one record for each
    # (a compile made ~900 records, two architectures' calls, before).
    made: dict[tuple[tuple[tuple[tuple[ArgCheck, ...], Action], ...], Action], _Outcome] = {}
    for number in arch.table.values():
        fallback = unconditional.get(number, profile.default_action)
        rules = conditional.get(number, [])
        # Trailing conditional rules that lead to the fallback anyway are dead weight.
        while rules and rules[-1][1] == fallback:
            rules.pop()
        key = (tuple(rules), fallback)
        outcome = made.get(key)
        if outcome is None:
            outcome = made[key] = _Outcome(*key)
        outcomes[number] = outcome
    return outcomes


def _arch_code(profile: Profile, arch: _Arch, caps: int, kernel: tuple[int, int]) -> list[_Insn]:
    """The checks of one architecture's calls, from loading the number on (every path
    returns)."""
    outcomes = _outcomes(profile, arch, caps, kernel)
    names = {number: name for name, number in arch.table.items()}
    unknown = _Outcome(
        (),
        profile.default_action
        if profile.default_action.kind is ActionKind.ALLOW
        else fail_with(_errno.ENOSYS),
    )
    ranges: list[tuple[int, _Outcome, str]] = []
    for number in range(max(outcomes) + 2):
        outcome = outcomes.get(number, unknown)
        if not ranges or ranges[-1][1] != outcome:
            ranges.append((number, outcome, names.get(number, str(number))))
    code: list[_Insn] = [(_LD_W_ABS, 0, 0, _OFF_NR)]
    if arch.x32_bit:
        code += [(_JGE_K, 0, 1, _X32_SYSCALL_BIT), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    return code + _search_code(ranges)


def compile_profile(profile: Profile, arch: str | None = None, *, caps: int | None = None) -> bytes:
    """The BPF program (``struct sock_filter[]`` bytes) enforcing ``profile``.

    ``arch`` is ``x86_64`` or ``aarch64`` (default: this machine's).  ``caps`` is the
    container's capability mask, used for rules with ``includes_caps``/``excludes_caps``
    (default: Docker's default set).  Raises :class:`ValueError` for an unsupported arch,
    names no syscall table knows, or conflicting unconditional actions for one call.
    """
    arch = arch or os.uname().machine
    spec = ARCHES.get(arch)
    if spec is None:
        raise ValueError(f"unsupported architecture {arch!r} (supported: {', '.join(ARCHES)})")
    for i, rule in enumerate(profile.rules):
        _check_names(rule.names, f"rule {i}")
    mask = _caps.to_mask(_caps.DEFAULT_CAPS) if caps is None else caps
    kernel = _kernel_version()
    arches = [spec, spec.compat] if profile.compat and spec.compat else [spec]
    program: list[_Insn] = [(_LD_W_ABS, 0, 0, _OFF_ARCH)]
    for each in arches:
        block = _arch_code(profile, each, mask, kernel)
        # Another architecture: over this one's block (the accumulator still holds it).
        program += [(_JEQ_K, 1, 0, each.audit_arch), (_JA, 0, 0, len(block)), *block]
    program.append((_RET_K, 0, 0, _RET_KILL_PROCESS))
    if len(program) > _MAX_INSNS:
        raise ValueError(f"seccomp program of {len(program)} instructions exceeds {_MAX_INSNS}")
    return b"".join(_SOCK_FILTER.pack(*insn) for insn in program)


# --- the default profile -----------------------------------------------------------------

# Calls an ordinary program needs: the calls Docker's default profile allows a container
# with its default capabilities (ptrace and process_vm_readv/writev among them: the kernel
# lets a process trace only its own uid's dumpable processes without CAP_SYS_PTRACE), so a
# program that runs under Docker runs here.  Left out (they fail with EPERM unless the
# capability that makes them useful is added: see _BY_CAPABILITY): namespace and mount
# control (unshare, setns, mount, umount2, pivot_root, the new mount API, mount_setattr),
# sethostname and setdomainname, the kernel keyring, bpf, perf_event_open, module
# loading, kexec, reboot, swap, quotas, process accounting, the clock setters, syslog, raw
# port I/O, io_uring, userfaultfd, open_by_handle_at, lookup_dcookie, vhangup, nfsservctl,
# fanotify_init, NUMA placement of memory, LSM attributes, chroot, the obsolete ustat and
# sysfs, and the calls that look into other processes beyond ptrace's rules (kcmp,
# pidfd_getfd, process_madvise).
_ALLOWED = (
    # processes, threads, scheduling, limits
    "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork",
    "vfork", "wait4", "waitid", "getpid", "getppid", "gettid", "getpgid", "getpgrp",
    "setpgid", "getsid", "setsid", "set_tid_address", "set_robust_list", "get_robust_list",
    "rseq", "prctl", "seccomp", "getcpu", "membarrier", "restart_syscall", "modify_ldt",
    "set_thread_area", "get_thread_area", "getpriority", "setpriority", "sched_yield",
    "sched_getaffinity", "sched_setaffinity", "sched_getattr", "sched_setattr",
    "sched_getparam", "sched_setparam", "sched_getscheduler", "sched_setscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
    "ioprio_get", "ioprio_set", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times",
    "uname", "sysinfo", "getrandom", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self", "uretprobe",
    # credentials
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid",
    # signals
    "kill", "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigqueueinfo",
    "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause", "alarm",
    "pidfd_open", "pidfd_send_signal",
    # memory
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "remap_file_pages", "memfd_create",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "process_mrelease", "map_shadow_stack",
    "mseal", "cachestat", "memfd_secret",
    # file descriptors and I/O
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range",
    "dup", "dup2", "dup3", "lseek", "fcntl", "flock", "ioctl", "fsync", "fdatasync", "sync",
    "syncfs", "sync_file_range", "fallocate", "ftruncate", "truncate", "readahead",
    "fadvise64", "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "pipe", "pipe2",
    # the file system
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "statmount",
    "listmount", "access", "faccessat", "faccessat2", "getcwd", "chdir", "fchdir", "mkdir",
    "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "unlink",
    "unlinkat", "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod",
    "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "umask", "utime",
    "utimes", "utimensat", "futimesat", "mknod", "mknodat", "getdents", "getdents64",
    "name_to_handle_at", "getxattr", "lgetxattr", "fgetxattr", "getxattrat", "setxattr",
    "lsetxattr", "fsetxattr", "setxattrat", "listxattr", "llistxattr", "flistxattr",
    "listxattrat", "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
    "file_getattr", "file_setattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark",
    # waiting, events, time
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl_old", "epoll_wait_old", "eventfd",
    "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "futex", "futex_waitv",
    "futex_wake", "futex_wait", "futex_requeue", "time", "gettimeofday", "clock_gettime",
    "clock_getres", "clock_nanosleep", "nanosleep", "adjtimex", "clock_adjtime", "getitimer",
    "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete",
    # the 32-bit calls of i386 (a profile with compat: see Profile)
    "_llseek", "_newselect", "chown32", "clock_adjtime64", "clock_getres_time64",
    "clock_gettime64", "clock_nanosleep_time64", "fadvise64_64", "fchown32", "fcntl64",
    "fstat64", "fstatat64", "fstatfs64", "ftruncate64", "futex_time64", "getegid32",
    "geteuid32", "getgid32", "getgroups32", "getresgid32", "getresuid32", "getuid32",
    "io_pgetevents_time64", "ipc", "lchown32", "lstat64", "mmap2", "mq_timedreceive_time64",
    "mq_timedsend_time64", "ppoll_time64", "pselect6_time64", "recvmmsg_time64",
    "rt_sigtimedwait_time64", "sched_rr_get_interval_time64", "semtimedop_time64",
    "sendfile64", "setfsgid32", "setfsuid32", "setgid32", "setgroups32", "setregid32",
    "setresgid32", "setresuid32", "setreuid32", "setuid32", "sigprocmask", "sigreturn",
    "socketcall", "stat64", "statfs64", "timer_gettime64", "timer_settime64",
    "timerfd_gettime64", "timerfd_settime64", "truncate64", "ugetrlimit", "utimensat_time64",
    "waitpid",
    # asynchronous I/O (the old interface; io_uring stays out)
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    # System V and POSIX IPC (private to the container's IPC namespace)
    "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
    "shmget", "shmat", "shmdt", "shmctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # sockets (socket itself is conditional, below)
    "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown",
)  # fmt: skip

# Calls each capability makes useful, allowed only to a container that holds it (as
# Docker's profile does): with CAP_SYS_ADMIN, clone and unshare take any flags and clone3
# is allowed.
_BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
        "mount", "mount_setattr", "move_mount", "open_tree", "open_tree_attr",
        "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
        "syslog", "umount", "umount2", "unshare",
    ),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": (
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "clock_settime", "clock_settime64", "stime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}  # fmt: skip

# Every CLONE_NEW* flag that clone() can carry (CLONE_NEWTIME shares its bit with the exit
# signal there).
CLONE_NAMESPACE_FLAGS = 0x7E020000

# Address families socket() refuses, as Docker's profile does: AF_KCM (the kernel
# connection multiplexor) and AF_VSOCK (sockets to the hypervisor or other VMs).
_AF_KCM = 38
_AF_VSOCK = 40

# personality(): Linux, PER_LINUX32, UNAME26, both, and 0xffffffff (only query).
_SAFE_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def default_profile() -> Profile:
    """boxd's default filter: Docker's default profile, denying with EPERM.

    Beyond the allowlist: the calls of :data:`_BY_CAPABILITY` for a container that holds
    the capability; ptrace and process_vm_readv/writev (Linux 4.8 and later: earlier ones
    let a traced process escape seccomp); clone without namespace flags; socket for any
    family but AF_KCM and AF_VSOCK; personality with the safe values only; and, without
    CAP_SYS_ADMIN, clone3 and open_tree_attr failing with ENOSYS (clone3's flags live in
    memory a filter cannot read, so C libraries fall back to clone, whose flags are
    checked; open_tree_attr, newer than Docker's profile, gets the ENOSYS Docker gives it).
    """
    admin = _caps.to_mask(("CAP_SYS_ADMIN",))
    rules = [
        Rule(_ALLOWED, ALLOW),
        Rule(("ptrace", "process_vm_readv", "process_vm_writev"), ALLOW, min_kernel=(4, 8)),
        Rule(("arch_prctl",), ALLOW, arches=frozenset({"amd64"})),  # not i386's
        *[
            Rule(names, ALLOW, includes_caps=_caps.to_mask((cap,)))
            for cap, names in _BY_CAPABILITY.items()
        ],
        Rule(("clone",), ALLOW, (ArgCheck(0, Op.MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0),)),
        Rule(("clone3", "open_tree_attr"), fail_with(_errno.ENOSYS), excludes_caps=admin),
        Rule(("socket",), ALLOW, (ArgCheck(0, Op.NE, _AF_KCM), ArgCheck(0, Op.NE, _AF_VSOCK))),
    ]
    rules += [
        Rule(("personality",), ALLOW, (ArgCheck(0, Op.EQ, value),)) for value in _SAFE_PERSONALITIES
    ]
    return Profile(fail_with(_errno.EPERM), tuple(rules), compat=True)


# --- Docker's JSON format ----------------------------------------------------------------

_DOCKER_ACTIONS = {kind.value: kind for kind in ActionKind}
_DOCKER_ACTIONS["SCMP_ACT_KILL"] = ActionKind.KILL_THREAD
_UNSUPPORTED_ACTIONS = ("SCMP_ACT_NOTIFY",)
_WITH_ERRNO = (ActionKind.ERRNO, ActionKind.TRACE)
_DOCKER_OPS = {op.value: op for op in Op}
_SCMP_I386 = "SCMP_ARCH_X86"
_SCMP_ARCHES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
)  # fmt: skip


def _expect(value: object, kind: type, where: str) -> Any:
    # bool is an int to isinstance(), but `"errnoRet": true` is a mistake, not 1.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _check_keys(obj: Mapping[str, object], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unknown key {', '.join(repr(key) for key in extra)}")


def _parse_action(raw: object, errno_ret: object, where: str) -> Action:
    name: str = _expect(raw, str, where)
    if name in _UNSUPPORTED_ACTIONS:
        raise ValueError(f"{where}: action {name} is not supported")
    kind = _DOCKER_ACTIONS.get(name)
    if kind is None:
        raise ValueError(f"{where}: unknown action {name!r}")
    if kind not in _WITH_ERRNO:
        return Action(kind)
    if errno_ret is None:  # EPERM for TRACE too, as runc gives it
        return Action(kind, _errno.EPERM)
    if not isinstance(errno_ret, int) or isinstance(errno_ret, bool) or errno_ret < 0:
        raise ValueError(f"{where}: errnoRet must be an errno number, got {errno_ret!r}")
    try:
        return Action(kind, errno_ret)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _parse_arg(raw: object, where: str) -> ArgCheck:
    obj = _expect(raw, dict, where)
    _check_keys(obj, ("index", "value", "valueTwo", "op"), where)
    op_name = _expect(obj.get("op"), str, where + ".op")
    op = _DOCKER_OPS.get(op_name)
    if op is None:
        raise ValueError(f"{where}.op: unknown comparison {op_name!r}")
    index = _expect(obj.get("index"), int, where + ".index")
    value = _expect(obj.get("value", 0), int, where + ".value")
    value_two = _expect(obj.get("valueTwo", 0), int, where + ".valueTwo")
    try:
        return ArgCheck(index, op, value, value_two)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _parse_filter(raw: object, where: str) -> tuple[int, frozenset[str], tuple[int, int] | None]:
    """An ``includes``/``excludes`` object: (caps mask, arches, minKernel)."""
    if raw is None:
        return 0, frozenset(), None
    obj = _expect(raw, dict, where)
    _check_keys(obj, ("caps", "arches", "minKernel"), where)
    caps = _expect(obj.get("caps") or [], list, where + ".caps")
    try:
        mask = _caps.to_mask(_expect(cap, str, where + ".caps") for cap in caps)
    except ValueError as exc:
        raise ValueError(f"{where}.caps: {exc}") from None
    arches = _expect(obj.get("arches") or [], list, where + ".arches")
    min_kernel = None
    if obj.get("minKernel"):
        text = _expect(obj["minKernel"], str, where + ".minKernel")
        match = re.fullmatch(r"(\d+)\.(\d+)", text)
        if match is None:
            raise ValueError(f"{where}.minKernel: expected 'major.minor', got {text!r}")
        min_kernel = (int(match[1]), int(match[2]))
    return mask, frozenset(_expect(a, str, where + ".arches") for a in arches), min_kernel


def _parse_rule(raw: object, where: str) -> Rule:
    obj = _expect(raw, dict, where)
    keys = ("names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes")
    _check_keys(obj, keys, where)
    names = _expect(obj.get("names") or [], list, where + ".names")
    if obj.get("name"):
        names = [*names, obj["name"]]
    if not names:
        raise ValueError(f"{where}: no system call names")
    for name in names:
        _expect(name, str, where + ".names")
    _check_names(names, where + ".names")
    action = _parse_action(obj.get("action"), obj.get("errnoRet"), where)
    raw_args = _expect(obj.get("args") or [], list, where + ".args")
    args = tuple([_parse_arg(arg, f"{where}.args[{i}]") for i, arg in enumerate(raw_args)])
    includes_caps, arches, min_kernel = _parse_filter(obj.get("includes"), where + ".includes")
    excludes_caps, excludes_arches, excluded_kernel = _parse_filter(
        obj.get("excludes"), where + ".excludes"
    )
    if excluded_kernel is not None:
        raise ValueError(f"{where}.excludes.minKernel: not supported")
    return Rule(
        tuple(names), action, args, includes_caps, excludes_caps, arches, excludes_arches,
        min_kernel,
    )  # fmt: skip


def profile_from_docker(data: object) -> Profile:
    """A :class:`Profile` from the parsed JSON of a Docker seccomp profile.

    Of ``architectures``/``archMap`` the native architecture counts, and SCMP_ARCH_X86
    (i386, on x86_64: the profile's ``compat``); calls of any other are killed.  Errors
    name the bad value and where it is (``syscalls[3].action: unknown action
    'SCMP_ACT_FOO'``).
    """
    obj = _expect(data, dict, "profile")
    keys = ("defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls",
            "flags", "listenerPath", "listenerMetadata")  # fmt: skip
    _check_keys(obj, keys, "profile")
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if obj.get(key):
            raise ValueError(f"profile.{key}: not supported, got {obj[key]!r}")
    arches = list(_expect(obj.get("architectures") or [], list, "profile.architectures"))
    for i, entry in enumerate(_expect(obj.get("archMap") or [], list, "profile.archMap")):
        where = f"profile.archMap[{i}]"
        _check_keys(_expect(entry, dict, where), ("architecture", "subArchitectures"), where)
        arches += [entry.get("architecture"), *(entry.get("subArchitectures") or [])]
    for arch in arches:
        if arch not in _SCMP_ARCHES:
            raise ValueError(f"profile.architectures: unknown architecture {arch!r}")
    default = _parse_action(
        obj.get("defaultAction"), obj.get("defaultErrnoRet"), "profile.defaultAction"
    )
    syscalls = _expect(obj.get("syscalls") or [], list, "profile.syscalls")
    rules = tuple([_parse_rule(rule, f"syscalls[{i}]") for i, rule in enumerate(syscalls)])
    return Profile(default, rules, compat=_SCMP_I386 in arches)


def load_docker_profile(path: str | os.PathLike[str]) -> Profile:
    """Read a Docker seccomp profile (JSON) from ``path``; see :func:`profile_from_docker`."""
    import json  # here: boxd-runtime create compiles a profile it got as parsed JSON

    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}: invalid JSON: {exc}") from None
    try:
        return profile_from_docker(data)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None


def _action_to_docker(action: Action, out: dict[str, Any], prefix: str) -> None:
    out[prefix + "Action" if prefix else "action"] = action.kind.value
    if action.kind in _WITH_ERRNO:
        out[prefix + "ErrnoRet" if prefix else "errnoRet"] = action.errno


def _filter_to_docker(caps: int, arches: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if caps:
        out["caps"] = _caps.to_names(caps)
    if arches:
        out["arches"] = sorted(arches)
    return out


def profile_to_docker(profile: Profile) -> dict[str, Any]:
    """``profile`` as a Docker seccomp profile (a JSON-ready dict)."""
    out: dict[str, Any] = {}
    _action_to_docker(profile.default_action, out, "default")
    syscalls = []
    for rule in profile.rules:
        entry: dict[str, Any] = {"names": list(rule.names)}
        _action_to_docker(rule.action, entry, "")
        if rule.args:
            entry["args"] = [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op.value}
                for a in rule.args
            ]
        includes = _filter_to_docker(rule.includes_caps, rule.arches)
        if rule.min_kernel is not None:
            includes["minKernel"] = "{}.{}".format(*rule.min_kernel)
        excludes = _filter_to_docker(rule.excludes_caps, rule.excludes_arches)
        if includes:
            entry["includes"] = includes
        if excludes:
            entry["excludes"] = excludes
        syscalls.append(entry)
    out["syscalls"] = syscalls
    if profile.compat:
        out["architectures"] = ["SCMP_ARCH_X86_64", _SCMP_I386, "SCMP_ARCH_AARCH64"]
    return out

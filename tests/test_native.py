"""The native spawn path: sandbox_native.spawn through boxd._native.start.

Every container here mounts its overlay root and /proc INSIDE its own mount namespace
(plan.mounts), so nothing outlives the test but the overlay's upper directory in tmp_path.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import os
import platform
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from boxd import _shim, _syscalls, _trim
from boxd._cgroup import parse_cpu_list
from boxd._native import (
    SYNC_MESSAGE,
    Capabilities,
    FakeNative,
    LinkConfig,
    Message,
    MountKind,
    MountOp,
    Namespace,
    RealNative,
    Rlimit,
    ShimSpec,
    Spawned,
    SpawnError,
    SpawnPlan,
    Stage,
    _receive,
    check_console_size,
    is_exec_failure,
    native_arguments,
    parse_message,
    start,
)
from boxd._record import evolve

ISOLATED = frozenset(
    {Namespace.MOUNT, Namespace.PID, Namespace.UTS, Namespace.IPC, Namespace.CGROUP}
)

# A static helper that tries the classic chroot escape and says whether "/" moved.
ESCAPE_SOURCE = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    struct stat before, after;
    if (stat("/", &before) || mkdir("/tmp/jail", 0700) || chroot("/tmp/jail")) return 2;
    for (int i = 0; i < 16; i++) if (chdir("..")) return 3;
    if (chroot(".") || stat("/", &after)) return 4;
    puts(before.st_dev == after.st_dev && before.st_ino == after.st_ino ? "same" : "escaped");
    return 0;
}
"""

CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE = 0, 5, 10
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


@attrs.frozen
class Result:
    status: os.waitid_result
    output: str

    @property
    def exit_code(self) -> int:
        assert self.status.si_code == os.CLD_EXITED, self.status
        return self.status.si_status


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    # Earlier tests' garbage (a Trio run's wakeup socket pair) must not be closed by the
    # collector during this test and look like fds it closed.
    gc.collect()
    before = _fds()
    yield
    # listdir itself had an fd open each time: compare the sets, not the counts.
    assert _fds() == before


@pytest.fixture(scope="session")
def escape_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("escape")
    source = directory / "escape.c"
    source.write_text(ESCAPE_SOURCE)
    binary = directory / "escape"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


@attrs.frozen
class Layout:
    """A container root: the busybox tree as overlay lower, upper/work/merged in tmp_path."""

    lower: Path
    upper: Path
    work: Path
    merged: Path

    def mounts(self, *extra: MountOp) -> tuple[MountOp, ...]:
        overlay = MountOp(
            MountKind.MOUNT,
            "/",
            source="overlay",
            fstype="overlay",
            data=f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}",
        )
        proc = MountOp(
            MountKind.MOUNT,
            "/proc",
            source="proc",
            fstype="proc",
            flags=MS_NOSUID | MS_NODEV | MS_NOEXEC,
        )
        return (overlay, proc, *extra)

    def plan(self, *argv: str, **fields: Any) -> SpawnPlan:
        fields.setdefault("namespaces", ISOLATED)
        fields.setdefault("rootfs", str(self.merged))
        fields.setdefault("mounts", self.mounts())
        return SpawnPlan(argv=argv, **fields)


@pytest.fixture
def layout(busybox_root: Path, tmp_path: Path) -> Layout:
    dirs = [tmp_path / name for name in ("upper", "work", "merged")]
    for d in dirs:
        d.mkdir()
    return Layout(busybox_root, *dirs)


@pytest.fixture
def reaper() -> Iterator[list[Spawned]]:
    """Processes a test started; whatever still runs at the end is killed and reaped."""
    spawned: list[Spawned] = []
    yield spawned
    for s in spawned:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(s.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # already reaped by the test
            os.waitid(os.P_PIDFD, s.pidfd, os.WEXITED)
        os.close(s.pidfd)


async def wait_exit(pidfd: int) -> os.waitid_result:
    await trio.lowlevel.wait_readable(pidfd)
    status = _reap_now(pidfd)
    assert status is not None
    return status


def _reap_now(pidfd: int) -> os.waitid_result | None:
    return os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)


def is_reaped(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return True
    return False


async def run(
    plan: SpawnPlan,
    reaper: list[Spawned],
    configure: Callable[[Spawned], Awaitable[None]] | None = None,
    native: RealNative | None = None,
) -> Result:
    """Start ``plan`` with stdout and stderr on one pipe; wait for the end and the output.
    ``configure``: as :func:`boxd._native.start`'s."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        spawned = await start(
            native or RealNative(),
            evolve(plan, stdin=write_end, stdout=write_end, stderr=write_end),
            configure=configure,
        )
    finally:
        os.close(write_end)
    reaper.append(spawned)
    chunks = []
    async with trio.lowlevel.FdStream(read_end) as stream:
        while chunk := await stream.receive_some():
            chunks.append(chunk)
    return Result(await wait_exit(spawned.pidfd), b"".join(chunks).decode())


def status_field(output: str, name: str) -> str:
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"{name} not in {output!r}")


# ---------------------------------------------------------------- validation, no root


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"argv": ()}, "argv must not be empty"),
        ({"argv": ("true",), "stdout": 1}, "stdio fd 1 must be >= 3"),
        ({"argv": ("tr\0ue",)}, "argv item contains a NUL byte"),
        ({"argv": ("true",), "env": ("A=\0",)}, "env item contains a NUL byte"),
        ({"argv": ("true",), "hostname": "h"}, "needs a new UTS namespace"),
        ({"argv": ("true",), "rootfs": "/x"}, "needs a new mount namespace"),
        ({"argv": ("true",), "cwd": "tmp"}, "cwd 'tmp' must be absolute"),
        ({"argv": ("true",), "join_pidfd": 5}, "join_namespaces is empty"),
        (
            {"argv": ("true",), "ns_paths": ((Namespace.MOUNT, "/proc/1/ns/mnt"),)},
            "joining a mount namespace by path is not supported",
        ),
        (
            {
                "argv": ("true",),
                "namespaces": frozenset({Namespace.NET}),
                "ns_paths": ((Namespace.NET, "/proc/1/ns/net"),),
            },
            "the network namespace is both new and joined",
        ),
        (
            {
                "argv": ("true",),
                "join_pidfd": 5,
                "join_namespaces": frozenset({Namespace.PID}),
                "namespaces": frozenset({Namespace.UTS}),
            },
            "a joining process takes no namespaces",
        ),
        (
            {"argv": ("true",), "mount_fds": (7,)},
            "each of mount_fds is attached by exactly one ATTACH step",
        ),
        (
            {
                "argv": ("true",),
                "namespaces": frozenset({Namespace.MOUNT}),
                "rootfs": "/r",
                "mounts": (MountOp(MountKind.ATTACH, "/a", dev=7),),
            },
            "each of mount_fds is attached by exactly one ATTACH step",
        ),
        ({"argv": ("sh",), "console_size": (37, 123)}, r"console_size \(37, 123\) needs a console"),
        (
            {"argv": ("sh",), "console": True, "console_size": (0, 80)},
            r"console size 0x80 \(rows x columns\) is out of range 1..65535",
        ),
        (
            {"argv": ("sh",), "console": True, "console_size": (24, 65536)},
            "console size 24x65536 .* out of range",
        ),
    ],
)
def test_plan_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        native_arguments(SpawnPlan(**fields))


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((37,), r"console size \(37,\) is not two integers \(rows, columns\)"),
        ((37, 123, 1), "console size .* is not two integers"),
        (("37", 123), r"console size \('37', 123\) is not two integers"),
        ((True, 80), "is not two integers"),
        (None, "console size None is not two integers"),
        ((-1, 80), r"console size -1x80 \(rows x columns\) is out of range 1..65535"),
        ((24, 0), "console size 24x0 .* out of range"),
    ],
)
def test_console_size_is_checked(size: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_console_size(size)


def test_console_size_reaches_the_extension() -> None:
    plan = SpawnPlan(argv=("sh",), console=True, console_size=(37, 123))
    assert native_arguments(plan)["console_size"] == (37, 123)
    assert check_console_size([1, 65535]) == (1, 65535)
    # No size: the terminal's old 24x80.
    assert native_arguments(evolve(plan, console_size=None))["console_size"] == (24, 80)
    extension = importlib.import_module("sandbox_native")
    with pytest.raises(ValueError, match=r"console_size \(0, 5\) is out of range 1..65535"):
        extension.spawn(argv=(b"true",), console_size=(0, 5))


def test_frozen_records_take_fields_by_position_or_name() -> None:
    op = MountOp(MountKind.MOUNT, "/x", source="s")
    same = MountOp(MountKind.MOUNT, "/x", "s")
    assert op == same and hash(op) == hash(same) and (op.fstype, op.flags, op.dev) == ("", 0, 0)
    assert evolve(op, data="d") == MountOp(MountKind.MOUNT, "/x", "s", data="d")
    with pytest.raises(TypeError, match=r"MountOp\(\) missing kind, target"):
        MountOp()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected or repeated 'target'"):
        MountOp(MountKind.MOUNT, "/x", target="/y")  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected or repeated 'colour'"):
        MountOp(MountKind.MOUNT, "/x", colour=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 8 arguments, got 9"):
        MountOp(MountKind.MOUNT, "/x", "", "", 0, "", 0, 0, 0)  # type: ignore[call-arg]
    with pytest.raises(AttributeError, match="frozen"):
        op.target = "/y"  # type: ignore[misc]


def test_mount_table_strings_are_checked(tmp_path: Path) -> None:
    plan = SpawnPlan(
        argv=("true",),
        namespaces=frozenset({Namespace.MOUNT}),
        rootfs=str(tmp_path),
        mounts=(MountOp(MountKind.MOUNT, "/x", "tmpfs", "tmpfs", data="size=1\0m"),),
    )
    with pytest.raises(ValueError, match="mount data contains a NUL byte"):
        native_arguments(plan)
    with pytest.raises(ValueError, match="mount target 'x' must be an absolute container path"):
        native_arguments(evolve(plan, mounts=(MountOp(MountKind.MKDIR, "x"),)))
    encoded = native_arguments(evolve(plan, mounts=(MountOp(MountKind.MKDIR, "/\udcff", mode=1),)))
    assert encoded["mounts"] == ((int(MountKind.MKDIR), b"/\xff", b"", b"", 0, b"", 1, 0),)


def test_native_arguments_encoding() -> None:
    plan = SpawnPlan(
        argv=("sh",),
        namespaces=frozenset({Namespace.PID, Namespace.UTS}),
        hostname="h",
        rlimits=(Rlimit(resource.RLIMIT_NOFILE, 10, -1),),
        caps=Capabilities(bounding=3, effective=1, permitted=3),
    )
    args = native_arguments(plan)
    assert args["clone_flags"] == Namespace.PID.value | Namespace.UTS.value
    assert args["argv"] == (b"sh",)
    assert args["hostname"] == b"h"
    assert args["rlimits"] == ((resource.RLIMIT_NOFILE, 10, -1),)
    assert args["caps"] == (3, 1, 3, 0, 0)


def test_extension_rejects_unknown_fields() -> None:
    extension = importlib.import_module("sandbox_native")  # mypy sees the source directory
    with pytest.raises(TypeError):
        extension.spawn(argv=(b"true",), colour=b"red")
    with pytest.raises(ValueError, match="NUL"):
        extension.spawn(argv=(b"true",), cwd=b"/a\0b")
    with pytest.raises(ValueError, match="seccomp program"):
        extension.spawn(argv=(b"true",), seccomp=b"123")


# ---------------------------------------------------------------- the fake, no root


async def test_fake_native_records_and_runs(no_fd_leak: None) -> None:
    fake = FakeNative()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    prepared: list[Spawned] = []
    plan = SpawnPlan(argv=("sh", "-c", "echo $GREETING"), env=("GREETING=hi",), stdout=write_end)
    spawned = await start(fake, plan, prepare=prepared.append)
    os.close(write_end)
    assert fake.plans == [plan]
    assert fake.released == prepared == [spawned]
    status = await wait_exit(spawned.pidfd)
    os.close(spawned.pidfd)
    assert status.si_status == 0
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"hi\n"


async def test_fake_native_failure(no_fd_leak: None) -> None:
    fake = FakeNative(failure=(Stage.EXEC, errno.ENOENT, 0))
    with pytest.raises(SpawnError, match="exec /bin/nope: No such file or directory"):
        await start(fake, SpawnPlan(argv=("/bin/nope",)))


# ---------------------------------------------------------------- the real thing


@pytest.mark.root
async def test_true_and_false(no_fd_leak: None, layout: Layout, reaper: list[Spawned]) -> None:
    assert (await run(layout.plan("/bin/true"), reaper)).exit_code == 0
    assert (await run(layout.plan("false"), reaper)).exit_code == 1


def _child_stacks() -> list[str]:
    """Mappings of this process shaped as a spawned child's stack: 64 KiB (CHILD_STACK in
    sandbox_native.c) between two guard pages, as /proc/self/maps shows them."""
    maps = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        start, end = (int(x, 16) for x in span.split("-"))
        maps.append((start, end, perms, line))
    page = os.sysconf("SC_PAGESIZE")
    return [
        line
        for before, (start, end, perms, line), after in zip(maps, maps[1:], maps[2:], strict=False)
        if end - start == 64 * 1024 and perms.startswith("rw")
        and before[1] == start and before[2].startswith("---") and before[1] - before[0] == page
        and after[0] == end and after[2].startswith("---")
    ]  # fmt: skip


_KCMP_VM = 1  # linux/kcmp.h


def _sharing_our_memory() -> int:
    """Processes besides this one that run in its memory (children before their exec,
    whoever reaps them): kcmp(2) says whether two processes share one address space."""
    kcmp = _syscalls.BY_MACHINE[platform.machine()]["kcmp"]
    me = os.getpid()
    others = [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and entry != str(me)]
    return sum(_syscalls.libc().syscall(kcmp, me, pid, _KCMP_VM, 0, 0) == 0 for pid in others)


@pytest.mark.root
async def test_children_stacks_are_unmapped_when_memory_is_released(
    no_fd_leak: None, layout: Layout, reaper: list[Spawned]
) -> None:
    """A child runs on a mapping of ours until it execs; spawn unmaps the unused ones as it
    starts, and so does the daemon's release of free memory (after removals): once
    released, a stack is left only for a child still running in our memory.  An earlier
    test's child killed before its exec (a shim's container after its shim failed, a
    start cancelled in its set-up) may still be on its way out, in a system call the kill
    does not interrupt: on a loaded machine (a CI run beside two other test runs) one
    took more than 30 s, so its stack is counted with it, not waited for."""
    _trim.release_free_memory()
    # Left by earlier tests of this process and not released: not this test's to judge
    # (a shim's intermediate killed in its clone left one, before the test below).
    earlier = set(_child_stacks())
    assert (await run(layout.plan("/bin/true"), reaper)).exit_code == 0
    assert set(_child_stacks()) - earlier
    await _stacks_released(earlier)


async def _stacks_released(earlier: set[str]) -> None:
    """Wait until, released, the stacks not in ``earlier`` are no more than the processes
    still running in our memory (30 s at most)."""
    deadline = trio.current_time() + 30
    while True:
        _trim.release_free_memory()
        stacks = [s for s in _child_stacks() if s not in earlier]
        sharing = _sharing_our_memory()
        if len(stacks) <= sharing:
            break
        assert trio.current_time() < deadline, (stacks, sharing)
        await trio.sleep(0.05)


@pytest.mark.root
async def test_exec_missing(layout: Layout, no_fd_leak: None) -> None:
    with pytest.raises(SpawnError) as caught:
        await start(RealNative(), layout.plan("/bin/nope"))
    error = caught.value
    assert str(error) == "exec /bin/nope: No such file or directory"
    assert error.errno == errno.ENOENT and error.stage == Stage.EXEC
    assert error.filename == "/bin/nope"
    assert is_exec_failure(error) == 127


@pytest.mark.root
async def test_search_path_miss_and_permission(layout: Layout, no_fd_leak: None) -> None:
    with pytest.raises(SpawnError, match="exec nope: No such file or directory"):
        await start(RealNative(), layout.plan("nope"))
    with pytest.raises(SpawnError, match="exec passwd: Permission denied") as caught:
        await start(RealNative(), layout.plan("passwd", search_path=("/etc",)))
    assert is_exec_failure(caught.value) == 126


@pytest.mark.root
async def test_chdir_missing(layout: Layout, no_fd_leak: None) -> None:
    with pytest.raises(SpawnError, match=r"^chdir /missing: No such file or directory$"):
        await start(RealNative(), layout.plan("/bin/true", cwd="/missing"))


@pytest.mark.root
async def test_failing_mount(layout: Layout, no_fd_leak: None) -> None:
    bad = MountOp(MountKind.MOUNT, "/no/proc", "proc", "proc")
    with pytest.raises(SpawnError, match=r"^mount /no/proc: No such file or directory$") as caught:
        await start(RealNative(), layout.plan("/bin/true", mounts=layout.mounts(bad)))
    assert caught.value.stage == Stage.MOUNT


@pytest.mark.root
async def test_inside_the_container(
    no_fd_leak: None, layout: Layout, reaper: list[Spawned]
) -> None:
    script = "echo pid=$$; echo host=$(hostname); set -- /proc/[0-9]*; echo procs=$*;"
    result = await run(layout.plan("sh", "-c", script, hostname="boxy"), reaper)
    assert result.exit_code == 0, result.output
    # set, echo and globs are builtins: no other process runs while the glob is expanded.
    assert result.output.split("\n") == ["pid=1", "host=boxy", "procs=/proc/1", ""]


@pytest.mark.root
async def test_only_stdio_fds(no_fd_leak: None, layout: Layout, reaper: list[Spawned]) -> None:
    leaky = os.open("/dev/null", os.O_RDONLY)  # inheritable: only close_range stops it
    try:
        spawned = await start(RealNative(), layout.plan("sleep", "1000", stdin=leaky))
    finally:
        os.close(leaky)
    reaper.append(spawned)
    # start() returned: the exec happened, so these are the program's own fds.
    assert sorted(os.listdir(f"/proc/{spawned.pid}/fd")) == ["0", "1", "2"]


@pytest.mark.root
async def test_no_host_mounts(layout: Layout, reaper: list[Spawned]) -> None:
    result = await run(layout.plan("cat", "/proc/self/mountinfo"), reaper)
    assert result.exit_code == 0
    mount_points = [line.split()[4] for line in result.output.splitlines()]
    assert mount_points == ["/", "/proc"]


@pytest.mark.root
async def test_status_of_the_exec_process(layout: Layout, reaper: list[Spawned]) -> None:
    # Ignore a signal and block another here: neither may reach the container.
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        status = await run(layout.plan("cat", "/proc/self/status"), reaper)
        stat = await run(layout.plan("cat", "/proc/self/stat"), reaper)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
        signal.signal(signal.SIGUSR1, old)
    assert status_field(status.output, "SigIgn") == "0" * 16
    assert status_field(status.output, "SigBlk") == "0" * 16
    assert status_field(status.output, "NSpid").split()[-1] == "1"
    fields = stat.output.rsplit(")", 1)[1].split()
    pid, sid = 1, int(fields[3])  # after "(comm)": state ppid pgrp session
    assert sid == pid


@pytest.mark.root
async def test_chroot_escape_stays_inside(
    layout: Layout, reaper: list[Spawned], escape_binary: Path
) -> None:
    helper = MountOp(MountKind.BIND_DEV, "/bin/escape", str(escape_binary))
    result = await run(layout.plan("/bin/escape", mounts=layout.mounts(helper)), reaper)
    assert (result.exit_code, result.output) == (0, "same\n")


@pytest.mark.root
async def test_capabilities_dropped(layout: Layout, reaper: list[Spawned]) -> None:
    keep = 1 << CAP_CHOWN | 1 << CAP_KILL
    caps = Capabilities(bounding=keep, effective=keep, permitted=keep)
    result = await run(layout.plan("cat", "/proc/self/status", caps=caps), reaper)
    assert result.exit_code == 0, result.output
    assert int(status_field(result.output, "CapBnd"), 16) == keep
    assert int(status_field(result.output, "CapEff"), 16) == keep
    assert int(status_field(result.output, "CapPrm"), 16) == keep


@pytest.mark.root
async def test_non_root_user_with_ambient_capability(layout: Layout, reaper: list[Spawned]) -> None:
    bind = 1 << CAP_NET_BIND_SERVICE
    caps = Capabilities(
        bounding=bind, effective=bind, permitted=bind, inheritable=bind, ambient=bind
    )
    plan = layout.plan("cat", "/proc/self/status", uid=65534, gid=65534, groups=(65534,), caps=caps)
    result = await run(plan, reaper)
    assert result.exit_code == 0, result.output
    assert status_field(result.output, "Uid").split() == ["65534"] * 4
    assert status_field(result.output, "Gid").split() == ["65534"] * 4
    assert status_field(result.output, "Groups") == "65534"
    assert int(status_field(result.output, "CapEff"), 16) == bind
    assert int(status_field(result.output, "CapAmb"), 16) == bind
    assert int(status_field(result.output, "CapBnd"), 16) == bind


@pytest.mark.root
async def test_user_namespace_with_maps_written_by_prepare(
    layout: Layout, reaper: list[Spawned]
) -> None:
    def write_maps(spawned: Spawned) -> None:
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{spawned.pid}/{name}").write_text("0 100000 65536\n")

    plan = layout.plan(
        "cat",
        "/proc/self/uid_map",
        "/proc/self/status",
        namespaces=ISOLATED | {Namespace.USER},
        mounts=(),
        rootfs=None,
    )
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        plan = evolve(plan, stdout=write_end)
        spawned = await start(RealNative(), plan, prepare=write_maps)
    finally:
        os.close(write_end)
    reaper.append(spawned)
    await wait_exit(spawned.pidfd)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    assert output.split("\n")[0].split() == ["0", "100000", "65536"]
    assert status_field(output, "Uid").split() == ["0"] * 4


@pytest.mark.root
@pytest.mark.parametrize("user_namespace", [False, True])
async def test_the_container_runs_on_every_cpu_at_the_callers_priority(
    layout: Layout, reaper: list[Spawned], user_namespace: bool
) -> None:
    """The process sets up off its caller's CPU, then resets its affinity to every CPU (its
    cpuset's: here the test's), as runc and crun do: neither that narrowing nor the caller
    thread's own pinning reaches the program.  Its nice value and policy are the caller's,
    unchanged; all of it in a new user namespace too."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one CPU: there is no other to set up on")

    def write_maps(spawned: Spawned) -> None:
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{spawned.pid}/{name}").write_text("0 100000 65536\n")

    fields: dict[str, Any] = {}
    if user_namespace:
        fields = {"namespaces": ISOLATED | {Namespace.USER}, "mounts": (), "rootfs": None}
    plan = layout.plan("cat", "/proc/self/status", "/proc/self/stat", **fields)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.sched_setaffinity(0, {min(cpus)})  # this thread (the event loop's) only
    try:
        spawned = await start(
            RealNative(),
            evolve(plan, stdout=write_end),
            prepare=write_maps if user_namespace else None,
        )
    finally:
        os.sched_setaffinity(0, cpus)
        os.close(write_end)
    reaper.append(spawned)
    await wait_exit(spawned.pidfd)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    assert parse_cpu_list(status_field(output, "Cpus_allowed_list")) == cpus
    stat = output.splitlines()[-1].rsplit(")", 1)[1].split()
    nice, policy = int(stat[16]), int(stat[38])  # fields 19 and 41 of proc(5)
    assert (nice, policy) == (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))


@pytest.mark.root
async def test_remount_read_only_of_a_plain_path(layout: Layout, reaper: list[Spawned]) -> None:
    ops = layout.mounts(
        MountOp(MountKind.REMOUNT_RO, "/proc/sys"),
        MountOp(MountKind.REMOUNT_RO, "/proc/nope"),
    )
    script = "echo other > /proc/sys/kernel/hostname 2>&1; hostname"
    result = await run(layout.plan("sh", "-c", script, hostname="boxy", mounts=ops), reaper)
    assert result.exit_code == 0, result.output
    assert "Read-only file system" in result.output
    assert result.output.endswith("boxy\n")


@pytest.mark.root
async def test_a_step_mounted_on_the_root_is_what_the_next_steps_see(
    layout: Layout, reaper: list[Spawned], tmp_path: Path
) -> None:
    """The child holds the root's fd across the mount table's steps: a mount on the root
    itself, here through a symlink of the image's that leads there, is entered by the next
    step as when the root was opened anew for each step."""
    upper, work = tmp_path / "upper2", tmp_path / "work2"
    upper.mkdir()
    work.mkdir()
    second = f"lowerdir={layout.lower},upperdir={upper},workdir={work}"
    ops = layout.mounts(
        MountOp(MountKind.SYMLINK, "/up", source="/"),
        MountOp(MountKind.MOUNT, "/up", source="overlay", fstype="overlay", data=second),
        MountOp(MountKind.WRITE_FILE, "/marker", data="on top\n", mode=0o644),
    )
    result = await run(layout.plan("cat", "/marker", mounts=ops), reaper)
    assert (result.exit_code, result.output) == (0, "on top\n")
    assert (upper / "marker").read_text() == "on top\n"
    assert not (layout.upper / "marker").exists()


@pytest.mark.root
async def test_rlimit_and_no_new_privs(layout: Layout, reaper: list[Spawned]) -> None:
    plan = layout.plan(
        "cat",
        "/proc/self/limits",
        "/proc/self/status",
        rlimits=(Rlimit(resource.RLIMIT_NOFILE, 64, 128), Rlimit(resource.RLIMIT_CORE, 0, -1)),
        no_new_privs=True,
    )
    result = await run(plan, reaper)
    assert result.exit_code == 0, result.output
    lines = {line[:26].strip(): line[26:].split() for line in result.output.splitlines()}
    assert lines["Max open files"][:2] == ["64", "128"]
    assert lines["Max core file size"][:2] == ["0", "unlimited"]
    assert status_field(result.output, "NoNewPrivs") == "1"


@pytest.mark.root
async def test_rlimit_failure_names_the_resource(layout: Layout, no_fd_leak: None) -> None:
    bad = Rlimit(resource.RLIMIT_NOFILE, 100, 10)  # soft above hard
    with pytest.raises(SpawnError, match=r"^setrlimit RLIMIT_NOFILE 100:10: Invalid arg"):
        await start(RealNative(), layout.plan("/bin/true", rlimits=(bad,)))


def _deny_mkdir_filter() -> bytes:
    """A classic BPF program: mkdir and mkdirat fail with EPERM, all else is allowed."""
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM
    arch_x86_64 = 0xC000003E
    insns = [
        (ld_w_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq_k, 1, 0, arch_x86_64),
        (ret_k, 0, 0, allow),
        (ld_w_abs, 0, 0, 0),  # seccomp_data.nr
        (jeq_k, 2, 0, 83),  # mkdir
        (jeq_k, 1, 0, 258),  # mkdirat
        (ret_k, 0, 0, allow),
        (ret_k, 0, 0, deny),
    ]
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)


@pytest.mark.root
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the test filter is for x86_64")
@pytest.mark.parametrize("no_new_privs", [False, True])
async def test_seccomp(layout: Layout, reaper: list[Spawned], no_new_privs: bool) -> None:
    caps = Capabilities(bounding=1 << CAP_KILL, effective=0, permitted=0)
    plan = layout.plan(
        "sh",
        "-c",
        "mkdir /tmp/x 2>/dev/null || echo denied; grep Seccomp: /proc/self/status",
        seccomp=_deny_mkdir_filter(),
        no_new_privs=no_new_privs,
        caps=caps,
    )
    result = await run(plan, reaper)
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["denied", "Seccomp:", "2"]


# In a process of its own (the filter it loads stays for good): a plan with sysinfo gets
# its listener; once the process runs under a filter with a listener of its own, the kernel
# refuses the child one (EBUSY), and the child runs all the same, its refusal logged once.
_REFUSED_LISTENER = f"""
import ctypes, logging, os, struct, sys
from boxd._native import RealNative, SpawnPlan, start_blocking
logging.basicConfig(format="%(message)s")
allow = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)
plan = SpawnPlan(argv=("/bin/true",), seccomp=allow, sysinfo=True)

def spawn():
    spawned = start_blocking(RealNative(), plan)
    status = os.waitid(os.P_PIDFD, spawned.pidfd, os.WEXITED)
    if spawned.sysinfo >= 0:
        print(os.readlink(f"/proc/self/fd/{{spawned.sysinfo}}"), status.si_status, flush=True)
    else:
        print("none", status.si_status, flush=True)

spawn()
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
libc = ctypes.CDLL(None, use_errno=True)
nr = {_syscalls.BY_MACHINE[platform.machine()]["seccomp"]}
assert libc.syscall(nr, 1, 8, ctypes.byref(Program(1, allow))) >= 0, ctypes.get_errno()
spawn()
spawn()
"""


@pytest.mark.root
def test_a_sysinfo_listener_the_kernel_refuses_fails_no_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _REFUSED_LISTENER], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["anon_inode:seccomp notify 0", "none 0", "none 0"]
    refusals = [line for line in result.stderr.splitlines() if "refuses" in line]
    assert refusals == [
        "the kernel refuses a seccomp listener (Device or resource busy): containers' "
        "sysinfo(2) shows the host's memory, not their limits"
    ]


@pytest.mark.root
async def test_spawn_while_threads_are_busy(layout: Layout, reaper: list[Spawned]) -> None:
    # Worker threads that hold malloc and GIL-free locks all the time: a child that used
    # malloc or stdio after the fork would deadlock on a lock some thread held.
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            [bytearray(4096) for _ in range(256)]
            repr(list(range(512)))

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(trio.to_thread.run_sync, churn)
        try:
            for _ in range(30):
                result = await run(layout.plan("/bin/true"), reaper)
                assert result.exit_code == 0
        finally:
            stop.set()


@pytest.mark.root
async def test_prepare_failure_kills_the_child(layout: Layout, no_fd_leak: None) -> None:
    started: list[Spawned] = []

    def prepare(spawned: Spawned) -> None:
        started.append(spawned)
        raise RuntimeError("cgroup placement failed")

    with pytest.raises(RuntimeError, match="cgroup placement failed"):
        await start(RealNative(), layout.plan("/bin/true"), prepare=prepare)
    assert is_reaped(started[0].pid)


LINK = LinkConfig("eth0", "10.9.0.2", 24)


@pytest.mark.root
async def test_links_are_configured_once_the_parent_made_them(
    layout: Layout, no_fd_leak: None, reaper: list[Spawned]
) -> None:
    # The child sets up its mounts while `configure` runs, and configures eth0 only once
    # told: here the interface (one end of a veth pair in its namespace) appears a while
    # after the release.
    async def configure(spawned: Spawned) -> None:
        await trio.sleep(0.2)
        await trio.run_process(
            ["nsenter", f"--net=/proc/{spawned.pid}/ns/net", "ip", "link", "add", "eth0",
             "type", "veth", "peer", "name", "eth1"],
        )  # fmt: skip

    plan = layout.plan(
        "sh",
        "-c",
        "ip -4 addr show eth0 && ip route",
        namespaces=ISOLATED | {Namespace.NET},
        links=(LINK,),
        gateway="10.9.0.1",
    )
    result = await run(plan, reaper, configure)
    assert result.exit_code == 0, result.output
    assert "inet 10.9.0.2/24" in result.output
    assert "default via 10.9.0.1 dev eth0" in result.output


@pytest.mark.root
async def test_a_child_that_failed_meanwhile_reports_its_own_failure(
    layout: Layout, no_fd_leak: None
) -> None:
    # Its mount fails while the parent makes its interfaces: the namespace goes with it
    # and the parent's work fails too, but the error is the child's.
    async def configure(spawned: Spawned) -> None:
        await trio.lowlevel.wait_readable(spawned.pidfd)  # it has ended
        raise OSError(errno.ESRCH, "its namespace is gone")

    bad = MountOp(MountKind.MOUNT, "/no/proc", "proc", "proc")
    plan = layout.plan(
        "/bin/true",
        mounts=layout.mounts(bad),
        namespaces=ISOLATED | {Namespace.NET},
        links=(LINK,),
    )
    with pytest.raises(SpawnError, match=r"^mount /no/proc: No such file or directory$"):
        await start(RealNative(), plan, configure=configure)


def test_a_record_sent_before_the_end_is_read_after_the_reset() -> None:
    # The child failed (its record sent) and ended before reading our LINKED: the kernel
    # reports the reset first, then the record.
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent:
        child.send(SYNC_MESSAGE.pack(Message.FAILED, Stage.MOUNT, errno.ENOENT, 2))
        parent.send(SYNC_MESSAGE.pack(Message.LINKED, 0, 0, 0))
        child.close()
        assert parse_message(_receive(parent.fileno())[0]) == (
            Message.FAILED, Stage.MOUNT, errno.ENOENT, 2
        )  # fmt: skip
        assert _receive(parent.fileno()) == (b"", [])


@pytest.mark.root
async def test_configure_failure_kills_the_waiting_child(layout: Layout, no_fd_leak: None) -> None:
    started: list[Spawned] = []

    async def configure(spawned: Spawned) -> None:
        started.append(spawned)
        raise OSError(errno.ENODEV, "bridge boxd9 is gone")

    plan = layout.plan("/bin/true", namespaces=ISOLATED | {Namespace.NET}, links=(LINK,))
    with pytest.raises(OSError, match="bridge boxd9 is gone"):
        await start(RealNative(), plan, configure=configure)
    assert is_reaped(started[0].pid)


class Recording(RealNative):
    """The real spawn, keeping what it returned and how far :meth:`tick` had counted."""

    def __init__(self) -> None:
        self.steps = 0
        self.spawned: list[tuple[Spawned, int]] = []

    def spawn(self, plan: SpawnPlan) -> Spawned:
        spawned = super().spawn(plan)
        self.spawned.append((spawned, self.steps))
        return spawned

    async def tick(self) -> None:
        """Count the event loop's steps."""
        while True:
            self.steps += 1
            await trio.lowlevel.checkpoint()


def _shim_plan(layout: Layout, directory: Path, *argv: str) -> SpawnPlan:
    return layout.plan(*argv, shim=ShimSpec(_shim.program(), str(directory), ("boxd-shim", "t")))


def _parent_comm(pid: int) -> str:
    parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{parent}/comm").read_text().strip()


def _children() -> list[str]:
    return [
        pid
        for task in Path("/proc/self/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]


@pytest.mark.root
async def test_a_shim_start_reports_the_container_and_keeps_the_loop_going(
    layout: Layout, tmp_path: Path, no_fd_leak: None
) -> None:
    """The spawn returns before the intermediate's report (no container pidfd yet, its
    report socket instead), which start() awaits: another task of the loop is stepped
    meanwhile.  The container's parent is then boxd-shim."""
    recording = Recording()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recording.tick)
        spawned = await start(recording, _shim_plan(layout, tmp_path, "sleep", "100"))
        nursery.cancel_scope.cancel()
    try:
        ((early, steps_then),) = recording.spawned
        assert early.pidfd == -1 and early.report_fd >= 0
        assert recording.steps > steps_then
        assert spawned.report_fd == -1 and spawned.pidfd >= 0 and spawned.shim_pidfd >= 0
        assert _parent_comm(spawned.pid) == "boxd-shim"
    finally:
        signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
        await _shim.end_unheld(spawned.pidfd, spawned.shim_pidfd, tmp_path)
        await _shim.reaped()
    assert _children() == []


@pytest.mark.root
async def test_a_shim_that_cannot_start_is_reaped_and_named(
    layout: Layout, tmp_path: Path, no_fd_leak: None
) -> None:
    """The intermediate clones the container, then cannot enter the shim's directory: the
    container is killed, the intermediate reaped, its fds closed, and the error names
    boxd-shim."""
    with pytest.raises(SpawnError) as failed:
        await start(RealNative(), _shim_plan(layout, tmp_path / "gone", "sleep", "100"))
    assert failed.value.stage is Stage.SHIM and failed.value.errno == errno.ENOENT
    assert str(failed.value) == f"start {_shim.program()}: No such file or directory"
    assert _children() == []


@pytest.mark.root
async def test_a_shim_intermediate_killed_in_its_clone_leaves_no_stack_behind(
    layout: Layout, tmp_path: Path, no_fd_leak: None
) -> None:
    """A cancelled start kills the intermediate, maybe in its clone of the container (a
    SIGKILL ends a clone of new namespaces that is under way): that clone then made no
    child to clear the container's stack's `alive`, and the mapping must still go.  The
    kill lands at 300 moments spread over the intermediate's first 3 ms (before the fix,
    ~5 mappings of 300 stayed for good); a container that was made waits for its release
    on the sync socket, which is closed, and exits."""
    _trim.release_free_memory()
    earlier = set(_child_stacks())
    native = RealNative()
    for i in range(300):
        spawned = native.spawn(_shim_plan(layout, tmp_path, "/bin/true"))
        kill_at = time.perf_counter() + i * 0.00001
        while time.perf_counter() < kill_at:
            pass
        signal.pidfd_send_signal(spawned.shim_pidfd, signal.SIGKILL)
        await wait_exit(spawned.shim_pidfd)
        for fd in (spawned.shim_pidfd, spawned.sync_fd, spawned.report_fd):
            os.close(fd)
    await _stacks_released(earlier)


@pytest.mark.root
async def test_cancelled_start_kills_the_child(layout: Layout, no_fd_leak: None) -> None:
    started: list[Spawned] = []
    with trio.CancelScope() as scope:
        scope.cancel(reason="test")
        await start(RealNative(), layout.plan("sleep", "100"), prepare=started.append)
    assert scope.cancelled_caught
    assert is_reaped(started[0].pid)


@pytest.mark.root
async def test_parent_gives_up_before_release(layout: Layout, no_fd_leak: None) -> None:
    # Closing sync_fd without a release: the child must exit without running anything.
    spawned = RealNative().spawn(layout.plan("/bin/true"))
    os.close(spawned.sync_fd)
    status = await wait_exit(spawned.pidfd)
    os.close(spawned.pidfd)
    assert status.si_status == 127


@pytest.mark.root
async def test_join_a_running_container(
    no_fd_leak: None, layout: Layout, reaper: list[Spawned]
) -> None:
    first = await start(RealNative(), layout.plan("sleep", "1000", hostname="first", stdin=-1))
    reaper.append(first)
    joined = frozenset({Namespace.MOUNT, Namespace.PID, Namespace.UTS, Namespace.IPC})
    script = (
        "echo host=$(hostname); echo pid=$$; echo init=$(cat /proc/1/comm);"
        " echo root=$(stat -c %d:%i /) first=$(stat -L -c %d:%i /proc/1/root)"
    )
    plan = SpawnPlan(
        argv=("sh", "-c", script),
        join_pidfd=first.pidfd,
        join_namespaces=joined,
        process_name="boxd:[exec]",
    )
    recording = Recording()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recording.tick)
        result = await run(plan, reaper, native=recording)
        nursery.cancel_scope.cancel()
    # The spawn returned the intermediate with its report pipe; start() waited for its
    # report in the loop, and the process it returned is another: the final one.
    ((early, steps_then),) = recording.spawned
    assert early.report_fd >= 0 and early.pid != reaper[-1].pid
    assert recording.steps > steps_then
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.split("\n")[:3])
    assert lines["host"] == "first"
    assert lines["pid"] != "1"
    assert lines["init"] == "sleep"
    root, first_root = result.output.split("\n")[3].split()
    assert root.removeprefix("root=") == first_root.removeprefix("first=")


@pytest.mark.root
async def test_join_failure_is_reported(layout: Layout, no_fd_leak: None) -> None:
    # An fd that is neither a pidfd nor a namespace makes setns fail in the intermediate.
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        plan = SpawnPlan(
            argv=("/bin/true",), join_pidfd=read_end, join_namespaces=frozenset({Namespace.UTS})
        )
        with pytest.raises(SpawnError, match=r"^join: Invalid argument$") as caught:
            await start(RealNative(), plan)
        assert caught.value.stage == Stage.JOIN
    finally:
        os.close(read_end)
        os.close(write_end)


def _pts_mounts() -> tuple[MountOp, ...]:
    """A devpts of the container's own at /dev/pts, where the child opens its console."""
    return (
        MountOp(MountKind.MKDIR, "/dev/pts", mode=0o755),
        MountOp(
            MountKind.MOUNT,
            "/dev/pts",
            "devpts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=620",
        ),
    )


def _console_output(master: int) -> bytes:
    """What the process wrote to its terminal (all of it: it has ended, and the little it
    wrote waits in the terminal's buffer), read from the master until the end (EIO)."""
    chunks = []
    with open(master, "rb", buffering=0) as f:
        while True:
            try:
                chunk = f.read(4096)
            except OSError as exc:  # EIO: no slave end is open any more
                assert exc.errno == errno.EIO, exc
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.root
async def test_console_has_its_size_from_the_first_instruction(
    no_fd_leak: None, layout: Layout, reaper: list[Spawned]
) -> None:
    """The terminal is sized before the exec: a program that reads the size once, at its
    start, sees the plan's, with no resize after the spawn.  Without a size: 24x80.  An
    exec into the container (join mode) gets its own size the same way."""
    mounts = layout.mounts(*_pts_mounts())
    plan = layout.plan("sh", "-c", "stty size; tty", mounts=mounts, console=True)
    for size, expected in (((37, 123), b"37 123"), (None, b"24 80")):
        spawned = await start(RealNative(), evolve(plan, console_size=size))
        reaper.append(spawned)
        assert spawned.console >= 0
        status = await wait_exit(spawned.pidfd)
        assert status.si_code == os.CLD_EXITED and status.si_status == 0
        lines = _console_output(spawned.console).splitlines()
        assert lines == [expected, b"/dev/pts/0"], lines
    first = await start(RealNative(), layout.plan("sleep", "1000", mounts=mounts))
    reaper.append(first)
    joined = SpawnPlan(
        argv=("stty", "size"),
        join_pidfd=first.pidfd,
        join_namespaces=frozenset({Namespace.MOUNT, Namespace.PID}),
        console=True,
        console_size=(51, 202),
    )
    spawned = await start(RealNative(), joined)
    reaper.append(spawned)
    status = await wait_exit(spawned.pidfd)
    assert status.si_code == os.CLD_EXITED and status.si_status == 0
    assert _console_output(spawned.console).splitlines() == [b"51 202"]


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text()


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as f:
        return f.read()


@pytest.mark.root
async def test_a_cgroup_the_child_cannot_join_is_a_spawn_failure(layout: Layout) -> None:
    """Step 0 writes "0" to each ``tasks`` fd; a write that fails (here: an fd opened
    read-only) fails the spawn at its own stage, naming the cgroup.  The child fails
    before it waits for its release: here it has ended before the parent releases it."""
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        plan = evolve(
            layout.plan("/bin/true"), cgroup_tasks=((fd, "/sys/fs/cgroup/memory/x/tasks"),)
        )

        def until_it_ended(spawned: Spawned) -> None:
            select.select([spawned.pidfd], [], [])

        with pytest.raises(SpawnError) as caught:
            await start(RealNative(), plan, prepare=until_it_ended)
    finally:
        os.close(fd)
    assert caught.value.stage == Stage.CGROUP
    assert str(caught.value) == "join the cgroup /sys/fs/cgroup/memory/x: Bad file descriptor"


@pytest.mark.root
async def test_wait_for_start(layout: Layout, tmp_path: Path, reaper: list[Spawned]) -> None:
    """start_fd: start() returns once the child is set up and waits; it execs only when a
    connection comes, and that connection gets the end of file of the exec."""
    path = str(tmp_path / "start.sock")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        plan = layout.plan("echo", "started", start_fd=listener.fileno(), stdout=write_end)
        try:
            spawned = await start(RealNative(), plan)
        finally:
            os.close(write_end)
    reaper.append(spawned)
    # Set up and waiting: not exec'd (still the spawn path's name), not exited.
    assert _comm(spawned.pid) == "boxd:[init]\n"
    assert _reap_now(spawned.pidfd) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        assert conn.recv(16) == b""  # end of file: the exec happened
    assert _read_all(read_end) == b"started\n"
    status = await wait_exit(spawned.pidfd)
    assert status.si_code == os.CLD_EXITED and status.si_status == 0


@pytest.mark.root
async def test_wait_for_start_then_exec_fails(layout: Layout, tmp_path: Path) -> None:
    path = str(tmp_path / "start.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        spawned = await start(RealNative(), layout.plan("/bin/nope", start_fd=listener.fileno()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        record = conn.recv(SYNC_MESSAGE.size)
    assert SYNC_MESSAGE.unpack(record) == (Message.FAILED, Stage.EXEC, errno.ENOENT, 0)
    await wait_exit(spawned.pidfd)
    os.close(spawned.pidfd)

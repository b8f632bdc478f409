"""A run's end through the library, on real containers: what ``wait`` tells at once, and
what is dismantled after it (the container's mount namespace, its cgroup)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import boxd

pytestmark = pytest.mark.root


def _held_mount_namespaces() -> list[str]:
    """The mount namespaces other than our own that this process holds an fd of."""
    own = os.readlink("/proc/self/ns/mnt")
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("mnt:[") and target != own:
                held.append(target)
    return held


def _config(root: Path, *command: str) -> boxd.ContainerConfig:
    return boxd.ContainerConfig(image=str(root), command=command, network="none")


async def test_the_end_is_told_before_the_mounts_go_and_nothing_waits_wrongly(
    tmp_path: Path, busybox_root: Path
) -> None:
    """The container's mount namespace is let go of after its end is recorded: a start
    and a copy out of the stopped container right after ``wait`` find its overlay whole,
    ``rm`` right after returns with the cgroup gone, and once the supervisor's background
    work is done no namespace is held."""
    append = _config(busybox_root, "/bin/sh", "-c", "echo run >> /kept")
    handed: list[str] = []
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        dismantle = sup._dismantle_later

        def seen(entry: Any, cgroup: Any, mount_ns: int) -> None:
            handed.append(os.readlink(f"/proc/self/fd/{mount_ns}"))
            dismantle(entry, cgroup, mount_ns)

        sup._dismantle_later = seen  # type: ignore[method-assign]
        c = await sup.run(append)
        assert await sup.wait(c.id) == 0
        await sup.start(c.id)  # at once: its last run's end may still be dismantled
        assert await sup.wait(c.id) == 0
        async with sup.open_root(c.id) as (_, root):
            fd = os.open("kept", os.O_RDONLY | os.O_CLOEXEC, dir_fd=root)
            try:
                assert os.read(fd, 100) == b"run\nrun\n"
            finally:
                os.close(fd)
        await sup.remove(c.id)  # at once too: it returns once the cgroup is gone
        assert c.id not in sup.cgroups.list_children()  # from every hierarchy
        await sup._cgroups_removed()
        # Each run's end handed on its own mount namespace, and none is held now.
        own = os.readlink("/proc/self/ns/mnt")
        assert len(handed) == 2 and all(n.startswith("mnt:[") and n != own for n in handed)
        assert _held_mount_namespaces() == []
    assert _held_mount_namespaces() == []


async def test_a_start_that_fails_at_exec_holds_nothing(tmp_path: Path, busybox_root: Path) -> None:
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.create(_config(busybox_root, "/bin/nope"))
        with pytest.raises(boxd.StartError, match="exec /bin/nope"):
            await sup.start(c.id)
        assert _held_mount_namespaces() == []
        await sup.remove(c.id)


async def test_the_end_records_what_the_run_used(tmp_path: Path, busybox_root: Path) -> None:
    """The run's summary (CPU time, peak memory) comes from the cgroup's counters, read at
    its end (Cgroup.usage), before ``wait`` answers."""
    busy = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"
    config = boxd.ContainerConfig(
        image=str(busybox_root),
        command=("/bin/sh", "-c", busy),
        network="none",
        resources=boxd.Resources(memory=64 << 20),
    )
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        c = await sup.run(config)
        assert await sup.wait(c.id) == 0
        summary = sup.inspect(c.id).state.summary
        assert summary is not None and summary.wall_seconds > 0
        assert summary.cpu_user_seconds + summary.cpu_system_seconds > 0
        assert summary.peak_memory > 0
        await sup.remove(c.id)


@pytest.mark.parametrize("by_ioctl", [True, False])
def test_the_mount_namespace_is_opened_by_pidfd_or_by_proc(
    monkeypatch: pytest.MonkeyPatch, by_ioctl: bool
) -> None:
    """``mount_ns_of``: the process's own mount namespace, close-on-exec, through the
    pidfd's ioctl where the kernel has it (6.11) and /proc/PID/ns/mnt otherwise (an older
    kernel's refusal, made here by starting from the fallback)."""
    from boxd import _run
    from boxd._native import Spawned

    monkeypatch.setattr(_run, "_pidfd_ns_ioctl", by_ioctl)
    script = "echo ready; exec sleep 30"  # "ready": in its own mount namespace
    with subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", script], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        pidfd = os.pidfd_open(proc.pid)
        try:
            assert proc.stdout.readline() == b"ready\n"
            fd = _run.mount_ns_of(Spawned(pid=proc.pid, pidfd=pidfd, sync_fd=-1))
            try:
                assert (
                    os.readlink(f"/proc/self/fd/{fd}")
                    == os.readlink(f"/proc/{proc.pid}/ns/mnt")
                    != os.readlink("/proc/self/ns/mnt")
                )
                assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            finally:
                os.close(fd)
        finally:
            proc.kill()
            os.close(pidfd)

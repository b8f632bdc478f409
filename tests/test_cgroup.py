"""The cgroup layer: detection, placement, limits, counters, kill and removal.

This host is HYBRID: memory, cpu, cpuacct, cpuset, pids, freezer and blkio are v1
hierarchies and the unified (v2) hierarchy holds no controller we use (only hugetlb).  So
the pure-v2 paths (the files written, the controllers enabled down the parent chain, the
no-internal-processes rule, removal) are tested on a FAKE cgroup tree (tests/fake_cgroup.py:
a temporary directory laid out like /sys/fs/cgroup, with fake mountinfo and cgroup files,
and the kernel's rules where boxd depends on them); pure v1 is tested on a fake tree too.
The real kernel is tested on this hybrid host (``root`` marker): limits read back from the
real files, a real child placed, killed and counted, a real OOM kill and a pids limit.

Device control: where the v1 devices controller covers the container's cgroup its
allowlist is written there; otherwise (pure v2, or hybrid without it) a BPF program is
attached to the v2 cgroup.  A fake tree cannot take a BPF program: FakeCgroupFs records
which program was attached where; the real program is tested in test_devices.py.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from daemon_harness import session_name, until
from fake_cgroup import FakeCgroupFs

from boxd import _cgroup, _native
from boxd._cgroup import (
    ALLOWED_DEVICES,
    Cgroup,
    CgroupError,
    CgroupHost,
    Limits,
    Usage,
    shares_to_weight,
)
from boxd._devices import compile_rules, parse_rule
from boxd._native import RealNative, SpawnPlan
from boxd._record import evolve
from boxd._shim import reap_child
from boxd._units import parse_size

M = 1 << 20
ALL_V2 = {c: "v2" for c in ("cpu", "cpuset", "io", "memory", "pids")}
DEVICE_PROGRAM = compile_rules(ALLOWED_DEVICES)


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    return FakeCgroupFs(tmp_path, monkeypatch)


async def _sigterm_one(fs: FakeCgroupFs, cg: Cgroup, d: Path) -> list[tuple[str, str]]:
    """A real process, listed in the fake ``cgroup.procs`` of every hierarchy of ``cg`` (as
    the kernel lists a container's), must die of ``kill_all(SIGTERM)``; returns the writes
    that took (relative to ``d``), and leaves the lists empty again."""
    sleeper = await trio.lowlevel.open_process(["sleep", "60"])
    procs = [Path(p) / "cgroup.procs" for p in cg.paths.values()]
    try:
        for path in procs:
            path.write_text(str(sleeper.pid))
        fs.writes.clear()
        await cg.kill_all(signal.SIGTERM)
        assert await sleeper.wait() == -signal.SIGTERM
        return fs.written(d)
    finally:
        sleeper.kill()
        await sleeper.wait()
        for path in procs:
            path.write_text("")


# ---- pure v2 on a fake tree ---------------------------------------------------------


async def test_v2_create_enables_controllers_writes_limits_and_removes(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/system.slice/boxd.service")
    host = fs.detect()
    assert (host.mode, host.controllers(), host.unavailable) == ("v2", ALL_V2, {})
    limits = Limits(
        memory=64 * M,
        memory_swap=96 * M,
        cpus=0.5,
        cpu_shares=1024,
        pids_limit=10,
        cpuset_cpus="1-2",
    )
    host.validate(limits)
    cg = host.create("c1", limits)
    every = "+cpu +cpuset +io +memory +pids"
    assert fs.written(own) == [
        ("cgroup.subtree_control", every),  # our own cgroup: no processes, so legal
        ("boxd/cgroup.subtree_control", every),
        ("boxd/c1/memory.max", str(64 * M)),
        ("boxd/c1/memory.swap.max", str(32 * M)),  # swap alone: total minus memory
        ("boxd/c1/cpu.max", "50000 100000"),
        ("boxd/c1/cpu.weight", "39"),
        ("boxd/c1/pids.max", "10"),
        ("boxd/c1/cpuset.cpus", "1-2"),
    ]
    assert cg.paths == {"unified": str(own / "boxd" / "c1")}
    c1 = str((own / "boxd" / "c1").relative_to(fs.root))
    assert fs.device_programs == {c1: DEVICE_PROGRAM}  # no v1 devices controller: BPF
    fs.writes.clear()
    cg.add(1234)
    cg.update(Limits(pids_limit=-1, cpus=2))
    assert fs.written(own) == [
        ("boxd/c1/cgroup.procs", "1234"),
        ("boxd/c1/cpu.max", "200000 100000"),
        ("boxd/c1/pids.max", "max"),
    ]
    assert host.list_children() == ["c1"]
    fs.writes.clear()
    await cg.remove()
    assert fs.written(own) == [("boxd/c1/cgroup.kill", "1")]
    assert not (own / "boxd").exists()  # the parent it made goes with its last child
    assert (own / "cgroup.procs").exists()
    await cg.remove()  # idempotent
    assert host.list_children() == []


async def test_v2_placement_is_the_directory_for_clone_into_cgroup(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c1", Limits())
    with cg.placement() as (tasks, v2):
        assert tasks == ()  # no v1 hierarchy: nothing for the child to write
        assert os.readlink(f"/proc/self/fd/{v2}") == str(own / "boxd" / "c1")
    with pytest.raises(OSError):
        os.fstat(v2)  # closed once the spawn has its copy
    await cg.remove()


async def test_v2_default_pids_limit_and_nested_parent(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/user.slice/u.service", controllers="memory pids")
    host = fs.detect(parent="a/b")
    cg = host.create("c", Limits())
    assert fs.written(own) == [
        ("cgroup.subtree_control", "+memory +pids"),
        ("a/cgroup.subtree_control", "+memory +pids"),
        ("a/b/cgroup.subtree_control", "+memory +pids"),
        ("a/b/c/pids.max", "4096"),
    ]
    await cg.remove()
    assert not (own / "a").exists()


async def test_v2_root_cgroup_files_are_never_written(fs: FakeCgroupFs) -> None:
    """In a container with a cgroup namespace our own cgroup is the root: we use what its
    subtree_control already enables and report the rest."""
    root = fs.mount_v2("/", enabled="cpu memory pids")
    host = fs.detect()
    assert host.controllers() == {"cpu": "v2", "memory": "v2", "pids": "v2"}
    assert set(host.unavailable) == {"cpuset", "io"}
    assert "root cgroup" in host.unavailable["cpuset"]
    with pytest.raises(ValueError, match=r"cpuset controller is unavailable: .*root cgroup"):
        host.validate(Limits(cpuset_cpus="0"))
    cg = host.create("c", Limits(memory=32 * M))
    assert fs.written(root) == [
        ("boxd/cgroup.subtree_control", "+cpu +memory +pids"),
        ("boxd/c/memory.max", str(32 * M)),
        ("boxd/c/pids.max", "4096"),
    ]
    await cg.remove()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == []


async def test_v2_own_cgroup_with_processes_reports_unavailable(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/user.slice/session-1.scope")
    (own / "cgroup.procs").write_text("77\n")  # we (and our shell) live in it
    host = fs.detect()
    assert host.controllers() == {}
    assert set(host.unavailable) == set(ALL_V2)
    assert "has processes" in host.unavailable["memory"]
    assert str(own / "cgroup.subtree_control") in host.unavailable["memory"]
    with pytest.raises(ValueError, match=r"memory controller is unavailable: .*has processes"):
        host.validate(Limits(memory=64 * M))
    cg = host.create("c", Limits())  # still a cgroup of its own: kill and counters work
    assert fs.written(own) == []
    assert (own / "cgroup.procs").read_text() == "77\n"  # nobody was moved
    await cg.remove()
    assert not (own / "boxd").exists()


async def test_v2_absolute_parent_is_made_below_the_root(fs: FakeCgroupFs) -> None:
    fs.mount_v2("/system.slice/boxd.service", controllers="memory pids")
    assert fs.v2 is not None
    root = fs.v2
    host = fs.detect(parent="/machine/boxd")
    cg = host.create("c", Limits(pids_limit=5))
    assert cg.paths == {"unified": str(root / "machine" / "boxd" / "c")}
    assert fs.written(root) == [
        ("machine/cgroup.subtree_control", "+memory +pids"),
        ("machine/boxd/cgroup.subtree_control", "+memory +pids"),
        ("machine/boxd/c/pids.max", "5"),
    ]
    await cg.remove()
    assert not (root / "machine").exists()  # every directory it made, children first


async def test_a_containers_own_parent(fs: FakeCgroupFs) -> None:
    """``--cgroup-parent`` of one container (CgroupHost.below): a relative one below the
    daemon's containers' parent, an absolute one from the hierarchy's root; what was made
    for it goes with the container, a parent that was there stays."""
    own = fs.mount_v2("/system.slice/boxd.service", controllers="memory pids")
    assert fs.v2 is not None
    root = fs.v2
    host = fs.detect()
    relative = host.below("team/a")
    cg = relative.create("c", Limits(pids_limit=5))
    assert cg.paths == {"unified": str(own / "boxd" / "team" / "a" / "c")}
    assert ("boxd/team/a/c/pids.max", "5") in fs.written(own)
    await cg.remove()
    assert not (own / "boxd" / "team").exists()
    fs.mkdir(root / "machine")  # the user's: it stays
    absolute = host.below("/machine/x")
    cg = absolute.create("c", Limits(pids_limit=5))
    assert cg.paths == {"unified": str(root / "machine" / "x" / "c")}
    await cg.remove()
    assert not (root / "machine" / "x").exists() and (root / "machine").is_dir()
    with pytest.raises(ValueError, match=r"invalid --cgroup-parent 'a/\.\./b'"):
        host.below("a/../b")


async def test_parent_slash_is_the_hierarchy_root(fs: FakeCgroupFs) -> None:
    """An OCI cgroupsPath such as /cgrouptest: made directly in the root, whose own files
    are never written (so no controller can be enabled there on v2)."""
    fs.mount_v1("pids", "/user")
    host = fs.detect(parent="/")
    cg = host.create("c", Limits(pids_limit=5))
    root = fs.root / "sys/fs/cgroup/pids"
    assert cg.paths == {"pids": str(root / "c")}
    assert fs.written(root) == [("c/pids.max", "5")]
    await cg.remove()
    assert not (root / "c").exists() and root.is_dir()


async def test_v2_update_is_all_or_nothing(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/boxd.service")
    host = fs.detect()
    cg = host.create("c", Limits(memory=64 * M))
    d = own / "boxd" / "c"
    (d / "memory.current").write_text(str(60 * M))  # and memory.reclaim frees nothing
    with pytest.raises(CgroupError, match=r"cannot lower memory.max .* uses 62914560 bytes"):
        cg.update(Limits(memory=32 * M, cpus=1))
    assert ((d / "memory.max").read_text(), (d / "cpu.max").read_text()) == (
        str(64 * M),
        "max 100000",
    )
    with pytest.raises(CgroupError, match=r"cpuset\.cpus"):  # a late write fails...
        cg.update(Limits(memory=128 * M, cpus=1, cpuset_cpus="7"))
    # ... and the earlier ones are undone.
    assert ((d / "memory.max").read_text(), (d / "cpu.max").read_text()) == (
        str(64 * M),
        "max 100000",
    )
    await cg.remove()


async def test_v2_counters_oom_and_freeze_kill(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/boxd.service")
    host = fs.detect()
    cg = host.create("c", Limits(memory=32 * M))
    d = own / "boxd" / "c"
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.peak").write_text("2097152\n")
    (d / "cpu.stat").write_text("usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n")
    (d / "pids.current").write_text("3\n")
    (d / "io.stat").write_text("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n")
    s = cg.stats()
    assert (s.memory_usage, s.memory_limit, s.memory_peak) == (M, 32 * M, 2 * M)
    assert (s.cpu_user_ns, s.cpu_system_ns, s.cpu_total_ns) == (2_000_000, 1_000_000, 3_000_000)
    assert (s.pids, s.io_read_bytes, s.io_write_bytes) == (3, 4096, 8192)
    # A run's summary reads only its part of them.
    assert cg.usage() == Usage(cpu_user_ns=2_000_000, cpu_system_ns=1_000_000, memory_peak=2 * M)
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    assert cg.oom_killed()
    # A kernel without cgroup.kill (before 5.14), and a signal other than SIGKILL:
    # freeze, signal each process, thaw.
    (d / "cgroup.kill").unlink()
    assert await _sigterm_one(fs, cg, d) == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]
    await cg.remove()


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` over the file in place, in one write (no truncation a reader could
    see in between), as the kernel changes a counter."""
    assert len(text) == path.stat().st_size
    with path.open("r+") as f:
        f.write(text)


async def test_v2_oom_kills_are_told_as_memory_events_counts_them(fs: FakeCgroupFs) -> None:
    """The v2 watch wakes on each change of memory.events (inotify, as the kernel notifies
    it) and tells of a rise of its oom_kill count only: not of the limit merely reached
    (max), nor of kills already told."""
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits(memory=32 * M))
    events = own / "boxd" / "c" / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    send, told = trio.open_memory_channel[int](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cg.watch_oom_kills, partial(send.send_nowait, 1))
        await trio.testing.wait_all_tasks_blocked()
        _rewrite(events, "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n")
        _rewrite(events, "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
        with trio.fail_after(10):
            await told.receive()
        _rewrite(events, "low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
        with trio.fail_after(10):
            await told.receive()
        _rewrite(events, "low 0\nhigh 0\nmax 8\noom 3\noom_kill 3\n")
        await trio.testing.wait_all_tasks_blocked()  # once the watch has read it
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.WouldBlock):
        told.receive_nowait()
    await cg.remove()


async def test_a_thaw_finds_the_cgroup_gone(
    fs: FakeCgroupFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container whose process was ending as it froze (a commit's pause) is recorded as
    ended and its cgroup removed before the thaw: the thaw has nothing to let go, and
    says nothing (it made a commit answer 500); other write errors still raise."""
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits())
    state = own / "boxd" / "c" / "cgroup.freeze"
    await cg.remove()  # between the thaw's look at the freezer and its write
    monkeypatch.setattr(cg, "_freezer", lambda: (str(state), "1", "0", lambda: False))
    cg.thaw()
    assert fs.writes[-1] == (str(state.relative_to(fs.root)), "0")

    def refused(path: str, value: str) -> None:
        raise CgroupError(errno.EBUSY, f"cannot write {value!r} to {path}")

    monkeypatch.setattr(_cgroup, "_write", refused)
    with pytest.raises(CgroupError):
        cg.thaw()


# ---- hybrid and pure v1 on fake trees ------------------------------------------------


def test_hybrid_takes_each_controller_where_it_is(fs: FakeCgroupFs) -> None:
    fs.mount_v1("cpu,cpuacct", "/")
    fs.mount_v1("memory", "/")
    fs.mount_v2("/", controllers="memory", enabled="memory")
    host = fs.detect()
    assert host.mode == "hybrid"
    assert host.controllers() == {"memory": "v2", "cpu": "v1", "cpuacct": "v1"}


def test_a_hierarchy_covered_by_a_later_mount_is_not_used(fs: FakeCgroupFs) -> None:
    """As in a mount namespace that hides the unified hierarchy under an empty tmpfs (the
    peers' cgns.sh wrapper, under which boxd-runtime runs for Podman)."""
    fs.mount_v1("memory", "/")
    fs.mount_v2("/", controllers="", enabled="")
    fs._mountinfo.append("90 23 0:90 / /sys/fs/cgroup/unified rw - tmpfs peersmask rw")
    host = fs.detect()
    assert host.mode == "v1"
    assert [h.version for h in host.hierarchies] == [1]


def test_hierarchies_below_a_later_mount_are_not_used(fs: FakeCgroupFs) -> None:
    """A mount namespace that binds the unified hierarchy over /sys/fs/cgroup: mountinfo
    still lists the v1 mounts below it, which no path reaches any more (pure v2, not
    hybrid).  A later mount that is one they sit on (the root, listed late after a
    pivot_root) hides nothing."""
    fs.mount_v1("memory", "/")
    fs.mount_v2("/", controllers="", enabled="")
    fs._mountinfo.append("23 1 8:1 / / rw - ext4 /dev/vda rw")  # what they all sit on
    assert fs.detect().mode == "hybrid"
    fs._mountinfo.append("95 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate")
    host = fs.detect()
    assert host.mode == "v2"
    assert [(h.version, h.mount) for h in host.hierarchies] == [(2, f"{fs.root}/sys/fs/cgroup")]


def test_hierarchies_hidden_by_the_mount_namespace_are_named_as_the_cause(
    fs: FakeCgroupFs,
) -> None:
    """`ip netns exec` mounts a new /sys: /proc/self/cgroup lists hierarchies that
    mountinfo does not show.  The daemon refuses to start (it makes nothing), saying why."""
    fs.mount_v1("memory", "/user")
    fs._mountinfo[:] = ["22 1 0:22 / /sys rw - sysfs sysfs rw"]  # a new /sys only
    with pytest.raises(
        CgroupError, match=r"no cgroup hierarchy is mounted in this mount .*nsenter"
    ):
        fs.detect()


def test_v1_detection_puts_each_hierarchy_below_our_own_cgroup(fs: FakeCgroupFs) -> None:
    for controllers in ("memory", "cpu,cpuacct", "pids"):
        fs.mount_v1(controllers, "/user")
    host = fs.detect()
    assert host.mode == "v1"
    assert host.controllers() == {"memory": "v1", "cpu": "v1", "cpuacct": "v1", "pids": "v1"}
    assert sorted(os.path.relpath(h.base, fs.root) for h in host.hierarchies) == [
        "sys/fs/cgroup/cpu,cpuacct/user/boxd",
        "sys/fs/cgroup/memory/user/boxd",
        "sys/fs/cgroup/pids/user/boxd",
    ]


async def test_the_view_a_container_gets_is_decided_by_the_host(fs: FakeCgroupFs) -> None:
    """Cgroup.view (what boxd._rootfs.cgroup_ops shows at /sys/fs/cgroup): None on pure v2
    (the container mounts its own cgroup2); on v1 a (name, directory) per hierarchy it
    has a cgroup of its own in, named as the host names it, and the unified one beside
    them on a hybrid host.  Fake trees: this host can be neither pure v1 nor pure v2."""
    fs.mount_v2("/", controllers="memory pids")
    assert fs.detect().create("c", Limits()).view() is None


@pytest.mark.parametrize("hybrid", [False, True])
async def test_the_v1_view_names_each_hierarchy_as_the_host_does(
    fs: FakeCgroupFs, hybrid: bool
) -> None:
    for controllers in ("memory", "cpu,cpuacct", "cpuset", "pids", "freezer"):
        fs.mount_v1(controllers, "/user")
    if hybrid:
        fs.mount_v2("/user", controllers="hugetlb")
    host = fs.detect()
    cg = host.create("c1", Limits(memory=64 * M))
    view = dict(cg.view() or ())
    root = fs.root / "sys/fs/cgroup"
    expected = {
        c: str(root / c / "user/boxd/c1") for c in ("memory", "cpu,cpuacct", "cpuset", "pids")
    }
    if hybrid:  # the freezer beside a v2 hierarchy is not joined, so not shown
        expected["unified"] = str(root / "unified/user/boxd/c1")
    else:
        expected["freezer"] = str(root / "freezer/user/boxd/c1")
    assert view == expected
    assert host.view("c1", Limits(memory=64 * M)) == cg.view()  # before the cgroup exists
    await cg.remove()


@pytest.mark.parametrize("kind", ["v1", "hybrid", "v2"])
async def test_a_container_has_a_name_systemd_cgroup_of_its_own_as_runc_gives_it(
    fs: FakeCgroupFs, kind: str
) -> None:
    """A systemd inside (a container's init) cannot boot without a cgroup of its own in the
    host's v1 name=systemd hierarchy, shown at /sys/fs/cgroup/systemd: made below ours,
    with no controller to set, the process placed there, removed with the rest.  A pure v2
    host that mounts one (for old containers) gives its containers their cgroup2 alone."""
    if kind == "v2":
        fs.mount_v2("/user", controllers="memory pids")
    else:
        fs.mount_v1("memory", "/user")
    # (Inside a pure v2 tree: its mount point is a directory of the unified hierarchy.)
    fs.mount_v1("name=systemd", "/" if kind == "v2" else "/user", directory="systemd")
    if kind == "hybrid":
        fs.mount_v2("/user", controllers="")
    host = fs.detect()
    cg = host.create("c1", Limits(memory=64 * M))
    named = fs.root / "sys/fs/cgroup/systemd/user/boxd/c1"
    if kind == "v2":
        assert host.mode == "v2" and cg.view() is None and not named.exists()
        await cg.remove()
        return
    assert host.mode == kind
    assert dict(cg.view() or ())["systemd"] == str(named)
    assert cg.paths["name=systemd"] == str(named)
    assert not [path for path, _ in fs.writes if path.startswith("sys/fs/cgroup/systemd")]
    with cg.placement() as (tasks, _):
        assert str(named / "tasks") in [path for _, path in tasks]
    await cg.remove()
    assert not named.parent.exists()


@pytest.mark.parametrize("kind", ["v2", "hybrid"])
async def test_an_exec_joins_the_inits_cgroup_where_no_process_may_join_the_containers(
    fs: FakeCgroupFs, kind: str
) -> None:
    """A systemd in a container whose cgroup2 is writable (--privileged, a pure v2 host:
    this one is hybrid, so fake trees) moves its processes below the container's cgroup
    and enables controllers there; a process may no longer join that cgroup (EBUSY), and
    an exec'd one joins the init's, as runc falls back to.  Its v1 cgroups stay the
    container's, and so does everything where nothing is enabled below."""
    if kind == "hybrid":
        fs.mount_v1("memory", "/user")
        fs.mount_v2("/user", controllers="")
    else:
        fs.mount_v2("/user", controllers="memory pids")
    cg = fs.detect().create("c", Limits())
    v2 = fs.root / ("sys/fs/cgroup/unified" if kind == "hybrid" else "sys/fs/cgroup")
    own = v2 / "user/boxd/c"
    fs.mkdir(own / "init.scope")
    (fs.root / "proc/7").mkdir(parents=True)
    (fs.root / "proc/7/cgroup").write_text("1:memory:/user/boxd/c\n0::/user/boxd/c/init.scope\n")
    assert cg.for_exec(7) is cg  # nothing enabled below it yet
    (own / "cgroup.subtree_control").write_text("memory pids\n" if kind == "v2" else "")
    moved = cg.for_exec(7)
    expected = own / "init.scope" if kind == "v2" else own
    with moved.placement() as (tasks, v2_fd):
        assert os.fstat(v2_fd).st_ino == expected.stat().st_ino
        if kind == "hybrid":
            assert [path for _, path in tasks] == [
                str(fs.root / "sys/fs/cgroup/memory/user/boxd/c/tasks")
            ]
    fs.rmdir(own / "init.scope")
    await cg.remove()


async def test_a_cpuset_limit_joins_a_container_made_without_a_cpuset(fs: FakeCgroupFs) -> None:
    """A container made by a boxd that left the v1 cpuset out (and still running, live
    restore) joins it on its first cpuset limit."""
    for controllers in ("memory", "cpuset"):
        fs.mount_v1(controllers, "/")
    host = fs.detect()
    (fs.root / "sys/fs/cgroup/memory/boxd").mkdir()
    fs.mkdir(fs.root / "sys/fs/cgroup/memory/boxd/old")
    cg = host.open("old")
    assert list(cg.paths) == ["memory"]
    cg.update(Limits(cpuset_cpus="1"))
    assert sorted(cg.paths) == ["cpuset", "memory"]
    assert (fs.root / "sys/fs/cgroup/cpuset/boxd/old/cpuset.cpus").read_text() == "1"
    await cg.remove()


V1_ALLOWLIST = [("devices.deny", "a")] + [("devices.allow", str(r)) for r in ALLOWED_DEVICES]


@pytest.mark.parametrize(
    ("v1", "v2", "program_in", "allowlist_in"),
    [
        ((), True, "boxd/c", None),  # pure v2
        (("devices", "pids"), True, None, "devices/boxd/c"),  # hybrid, v1 devices covers it
        (("pids",), True, "unified/boxd/c", None),  # hybrid without v1 devices
        (("devices", "pids"), False, None, "devices/boxd/c"),  # pure v1
    ],
)
async def test_device_control_is_v1s_allowlist_where_it_applies_else_bpf(
    fs: FakeCgroupFs,
    v1: tuple[str, ...],
    v2: bool,
    program_in: str | None,
    allowlist_in: str | None,
) -> None:
    for controllers in v1:
        fs.mount_v1(controllers, "/")
    if v2:
        fs.mount_v2("/", controllers="", enabled="")
    cg = fs.detect().create("c", Limits())
    programs = {f"sys/fs/cgroup/{program_in}": DEVICE_PROGRAM} if program_in else {}
    assert fs.device_programs == programs
    allowlist = [(f"{allowlist_in}/{f}", v) for f, v in V1_ALLOWLIST] if allowlist_in else []
    assert [(p, v) for p, v in fs.written(fs.root / "sys/fs/cgroup") if "/devices." in p] == (
        allowlist
    )
    await cg.remove()


@pytest.mark.parametrize("v2", [True, False])
async def test_a_containers_own_devices_follow_the_default_allowlist(
    fs: FakeCgroupFs, v2: bool
) -> None:
    """``--device`` and ``--device-cgroup-rule``: their rules after boxd's, in the v2
    program (pure v2) or in devices.allow (v1)."""
    extra = [parse_rule("c 10:229 rw"), parse_rule("b 7:* m")]
    if v2:
        fs.mount_v2("/", controllers="", enabled="")
    else:
        fs.mount_v1("devices", "/")
    cg = fs.detect().create("c", Limits(), extra)
    if v2:
        program = compile_rules([*ALLOWED_DEVICES, *extra])
        assert fs.device_programs == {"sys/fs/cgroup/boxd/c": program}
    else:
        written = [v for p, v in fs.written(fs.root / "sys/fs/cgroup") if "/devices." in p]
        assert written == [v for _, v in V1_ALLOWLIST] + ["c 10:229 rw", "b 7:* m"]
    await cg.remove()


async def test_a_refused_device_program_fails_create_and_leaves_nothing(fs: FakeCgroupFs) -> None:
    """No silent downgrade to no device control (the refusal is the FAKE kernel's)."""
    own = fs.mount_v2("/boxd.service")
    fs.refuse_device_programs = "this kernel has no BPF_PROG_TYPE_CGROUP_DEVICE programs"
    with pytest.raises(CgroupError, match="no BPF_PROG_TYPE_CGROUP_DEVICE") as info:
        fs.detect().create("c", Limits(pids_limit=5))
    assert info.value.errno == errno.EINVAL
    assert not (own / "boxd").exists()


async def test_v1_create_writes_limits_and_copies_cpuset(fs: FakeCgroupFs) -> None:
    for controllers in ("memory", "cpu,cpuacct", "cpuset", "pids", "freezer"):
        fs.mount_v1(controllers, "/user")
    host = fs.detect()
    assert host.mode == "v1"
    limits = Limits(
        memory=64 * M,
        memory_swap=128 * M,
        cpus=1.5,
        cpu_shares=512,
        pids_limit=20,
        cpuset_cpus="0-1",
    )
    host.validate(limits)
    cg = host.create("c1", limits)
    root = fs.root / "sys/fs/cgroup"
    assert sorted(cg.paths) == ["cpu,cpuacct", "cpuset", "freezer", "memory", "pids"]
    assert fs.written(root) == [
        # A new v1 cpuset cgroup has no CPUs and no memory nodes: copied from the parent;
        # the containers' cgroups are born with them (clone_children).
        ("cpuset/user/boxd/cpuset.cpus", "0-3"),
        ("cpuset/user/boxd/cpuset.mems", "0"),
        ("cpuset/user/boxd/cgroup.clone_children", "1"),
        ("memory/user/boxd/c1/memory.limit_in_bytes", str(64 * M)),
        ("memory/user/boxd/c1/memory.memsw.limit_in_bytes", str(128 * M)),
        ("cpu,cpuacct/user/boxd/c1/cpu.cfs_period_us", "100000"),
        ("cpu,cpuacct/user/boxd/c1/cpu.cfs_quota_us", "150000"),
        ("cpu,cpuacct/user/boxd/c1/cpu.shares", "512"),
        ("pids/user/boxd/c1/pids.max", "20"),
        ("cpuset/user/boxd/c1/cpuset.cpus", "0-1"),
    ]
    # Raising both: memsw first (it may never be below the memory limit).
    fs.writes.clear()
    cg.update(Limits(memory=256 * M, memory_swap=512 * M))
    assert fs.written(root / "memory/user/boxd/c1") == [
        ("memory.memsw.limit_in_bytes", str(512 * M)),
        ("memory.limit_in_bytes", str(256 * M)),
    ]
    # Lowering below usage: EBUSY with the usage, nothing else applied.
    mem = root / "memory/user/boxd/c1"
    (mem / "memory.usage_in_bytes").write_text(str(100 * M))
    with pytest.raises(CgroupError, match=r"cannot lower memory.limit_in_bytes .* 104857600"):
        cg.update(Limits(memory=32 * M, cpus=0.5))
    assert (mem / "memory.limit_in_bytes").read_text() == str(256 * M)
    assert (root / "cpu,cpuacct/user/boxd/c1/cpu.cfs_quota_us").read_text() == "150000"
    await cg.remove()
    assert not any((root / c / "user" / "boxd").exists() for c in cg.paths)


async def test_v1_cpuset_below_a_parent_boxd_did_not_make_is_copied(fs: FakeCgroupFs) -> None:
    """cgroup.clone_children is written only in a directory boxd made: below an existing
    --cgroup-parent each container's cgroup gets the parent's CPUs and nodes written."""
    own = fs.mount_v1("cpuset", "/user")
    fs.mkdir(own / "jobs")
    for name in ("cpuset.cpus", "cpuset.mems"):
        (own / "jobs" / name).write_text((own / name).read_text())
    cg = fs.detect(parent="jobs").create("c1", Limits())
    assert fs.written(own) == [("jobs/c1/cpuset.cpus", "0-3"), ("jobs/c1/cpuset.mems", "0")]
    await cg.remove()


async def test_v2_cpus_are_the_nearest_cpuset_up(fs: FakeCgroupFs) -> None:
    """The CPUs a v2 cgroup runs on (the /proc view shows them): its cpuset.cpus.effective,
    else, where its parent does not enable cpuset, the nearest one's above it (the
    daemon's own cgroup given fewer CPUs); none where no cgroup up to the mount has it."""
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits())
    assert cg.effective_cpus() is None
    (own / "cpuset.cpus.effective").write_text("0-1\n")
    assert cg.effective_cpus() == {0, 1}
    (own / "boxd" / "c" / "cpuset.cpus.effective").write_text("1\n")
    assert cg.effective_cpus() == {1}
    await cg.remove()


async def test_v1_cpu_limit_is_the_lowest_quota_up(fs: FakeCgroupFs) -> None:
    """The CPU time a cgroup may take (the /proc view's quota policy): the lowest
    quota/period of its own and its parents' up to the mount."""
    own = fs.mount_v1("cpu", "/user")
    cg = fs.detect().create("c", Limits(cpus=1.5))
    assert cg.effective_cpus() is None  # no cpuset hierarchy
    assert cg.cpu_limit() == 1.5
    (own / "cpu.cfs_quota_us").write_text("50000\n")
    assert cg.cpu_limit() == 0.5
    await cg.remove()


async def test_v2_cpu_limit_is_the_lowest_cpu_max_up(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/boxd.service")
    cg = fs.detect().create("c", Limits())
    assert cg.cpu_limit() is None
    (own / "cpu.max").write_text("150000 100000\n")
    assert cg.cpu_limit() == 1.5
    (own / "boxd" / "c" / "cpu.max").write_text("20000 100000\n")
    assert cg.cpu_limit() == 0.2
    await cg.remove()


async def test_v1_placement_is_each_hierarchys_tasks_file(fs: FakeCgroupFs) -> None:
    for controllers in ("memory", "pids"):
        fs.mount_v1(controllers, "/user")
    cg = fs.detect().create("c1", Limits())
    with cg.placement() as (tasks, v2):
        assert v2 == -1
        paths = [path for _, path in tasks]
        assert sorted(paths) == sorted(str(Path(p) / "tasks") for p in cg.paths.values())
        for fd, _ in tasks:
            assert os.get_blocking(fd) and os.readlink(f"/proc/self/fd/{fd}").endswith("/tasks")
    await cg.remove()


async def test_v1_without_swap_accounting_and_freezer_kill(fs: FakeCgroupFs) -> None:
    fs.swap_accounting = False
    fs.mount_v1("memory", "/")
    fs.mount_v1("freezer", "/")
    host = fs.detect()
    cg = host.create("c", Limits(memory=64 * M, memory_swap=-1))
    assert fs.written() == [("sys/fs/cgroup/memory/boxd/c/memory.limit_in_bytes", str(64 * M))]
    freezer = Path(cg.paths["freezer"])
    frozen_and_thawed = [("freezer.state", "FROZEN"), ("freezer.state", "THAWED")]
    assert await _sigterm_one(fs, cg, freezer) == frozen_and_thawed
    await cg.remove()


def test_v1_counters_and_oom_fallback(fs: FakeCgroupFs) -> None:
    fs.mount_v1("memory", "/")
    fs.mount_v1("cpu,cpuacct", "/")
    cg = fs.detect().create("c", Limits())
    mem, cpu = Path(cg.paths["memory"]), Path(cg.paths["cpu,cpuacct"])
    (mem / "memory.usage_in_bytes").write_text("4096\n")
    (mem / "memory.max_usage_in_bytes").write_text("8192\n")
    (cpu / "cpuacct.usage").write_text("5000\n")
    (cpu / "cpuacct.usage_user").write_text("3000\n")
    (cpu / "cpuacct.usage_sys").write_text("2000\n")
    s = cg.stats()
    assert (s.memory_usage, s.memory_limit, s.memory_peak) == (4096, None, 8192)
    assert (s.cpu_user_ns, s.cpu_system_ns, s.cpu_total_ns) == (3000, 2000, 5000)
    assert cg.usage() == Usage(cpu_user_ns=3000, cpu_system_ns=2000, memory_peak=8192)
    assert not cg.oom_killed()
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed()
    # Kernels before 4.13 have no oom_kill line: a hit limit (failcnt) stands in.
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    assert not cg.oom_killed()
    (mem / "memory.failcnt").write_text("3\n")
    assert cg.oom_killed()


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        (Limits(memory=0), "--memory 0"),
        (Limits(memory=-5), "--memory -5"),
        (Limits(memory=1000), "--memory 1000"),
        (Limits(memory=64 * M, memory_swap=32 * M), f"--memory-swap {32 * M}"),
        (Limits(memory=64 * M, memory_swap=-2), "--memory-swap -2"),
        (Limits(memory_swap=64 * M), f"--memory-swap {64 * M}"),
        (Limits(cpus=math.nan), "--cpus nan"),
        (Limits(cpus=math.inf), "--cpus inf"),
        (Limits(cpus=0.001), "--cpus 0.001"),
        (Limits(cpus=-1.0), "--cpus -1.0"),
        (Limits(cpus=5.0), "--cpus 5.0"),  # 4 CPUs online
        (Limits(cpu_shares=0), "--cpu-shares 0: use 1 to 262144"),
        (Limits(cpu_shares=262145), "--cpu-shares 262145"),
        (Limits(pids_limit=-2), "--pids-limit -2: use 1 to 4194304, or 0 or -1 for no limit"),
        (Limits(pids_limit=(1 << 22) + 1), "--pids-limit 4194305: use 1 to 4194304"),
        (Limits(cpuset_cpus="2-5"), "--cpuset-cpus '2-5': CPU 4 is not online"),
        (Limits(cpuset_cpus="3-1"), "'3-1'"),
        (Limits(cpuset_cpus="one"), "'one'"),
    ],
)
def test_validation_names_the_bad_value(fs: FakeCgroupFs, limits: Limits, named: str) -> None:
    fs.mount_v2("/boxd.service")
    with pytest.raises(ValueError) as info:
        fs.detect().validate(limits)
    assert named in str(info.value)


@pytest.mark.parametrize("text", ["12q", "0", "-5m", "nan", ""])
def test_memory_sizes(text: str) -> None:
    assert parse_size("256m", what="--memory") == 256 * M
    assert parse_size("1g", what="--memory") == 1 << 30
    with pytest.raises(ValueError, match=f"invalid --memory {text!r}"):
        parse_size(text, what="--memory")


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (512, 20), (1024, 39), (262144, 10000)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_bad_names_and_parents(fs: FakeCgroupFs) -> None:
    fs.mount_v2("/boxd.service")
    host = fs.detect()
    for name in ("", "..", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid cgroup name"):
            host.open(name)
    with pytest.raises(ValueError, match=r"invalid --cgroup-parent 'a/\.\./b'"):
        fs.detect(parent="a/../b")


# ---- the real kernel (this host: hybrid) ---------------------------------------------


def _existing(dirs: Iterable[str]) -> list[str]:
    return [d for d in dirs if os.path.exists(d)]


@pytest.fixture
async def real_host() -> AsyncIterator[CgroupHost]:
    """A host whose containers' cgroups go below <own>/boxd-test-<random>; every cgroup
    left by the test is removed, and nothing may remain."""
    host = CgroupHost.detect(name=session_name(uuid.uuid4().hex[:12]))
    missing = {"memory", "pids", "cpu"} - set(host.controllers())
    if missing:
        pytest.skip(f"controllers {sorted(missing)} unavailable: {host.unavailable}")
    try:
        yield host
    finally:
        for name in host.list_children():
            await host.open(name).remove()
        assert _existing(h.base for h in host.hierarchies) == []


def _file(cg: Cgroup, controller: str, name: str) -> str:
    d = next(Path(p) for key, p in cg.paths.items() if controller in key.split(","))
    return (d / name).read_text().strip()


def _cgroups_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def _left(cg: Cgroup) -> list[str]:
    return [p for p in cg.paths.values() if Path(p).exists()]


@pytest.mark.root
async def test_real_limits_place_kill_remove(real_host: CgroupHost) -> None:
    limits = Limits(memory=64 * M, memory_swap=64 * M, cpus=0.5, cpu_shares=512, pids_limit=32)
    if "cpuset" in real_host.controllers():
        limits = evolve(limits, cpuset_cpus="0")
    real_host.validate(limits)
    cg = real_host.create("c1", limits)
    v1 = real_host.controllers()["memory"] == "v1"
    if v1:
        assert _file(cg, "memory", "memory.limit_in_bytes") == str(64 * M)
        assert _file(cg, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _file(cg, "cpu", "cpu.cfs_period_us") == "100000"
        assert _file(cg, "cpu", "cpu.shares") == "512"
    else:
        assert _file(cg, "memory", "memory.max") == str(64 * M)
        assert _file(cg, "cpu", "cpu.max") == "50000 100000"
    assert _file(cg, "pids", "pids.max") == "32"
    if limits.cpuset_cpus is not None:
        assert _file(cg, "cpuset", "cpuset.cpus") == "0"
    proc = await trio.lowlevel.open_process(["sleep", "60"])
    try:
        cg.add(proc.pid)
        assert cg.procs() == [proc.pid]
        assert "/c1\n" in _cgroups_of(proc.pid)
        assert cg.stats().pids == 1
        await cg.kill_all()
        assert await proc.wait() == -signal.SIGKILL
    finally:
        proc.kill()
        await proc.wait()
    assert cg.procs() == []
    assert cg.stats().pids == 0  # still readable after the process is gone
    assert real_host.list_children() == ["c1"]
    await cg.remove()
    assert _left(cg) == []
    assert real_host.list_children() == []
    await cg.remove()


@pytest.mark.root
async def test_real_terminal_reader_reads_in_the_containers_cpu_group(
    real_host: CgroupHost,
) -> None:
    """sandbox_native.gather_read with the two ``tasks`` files of Cgroup.reading_groups:
    the thread reads in the container's v1 cpu cgroup and is back in the readers' own
    before it returns; meanwhile the container's processes are still only its own."""
    import importlib
    import pty
    import threading

    cg = real_host.create("c1", Limits())
    with cg.reading_groups() as groups:
        if groups is None:
            pytest.skip("no v1 cpu hierarchy here: v2 places whole processes")
        cpu_dir = next(p for key, p in cg.paths.items() if "cpu" in key.split(","))
        readers = f"{os.path.dirname(cpu_dir)}/{_cgroup.READERS}"
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        gather = importlib.import_module("sandbox_native").gather_read
        seen: dict[str, object] = {}

        def read() -> None:
            seen["tid"] = str(threading.get_native_id())
            seen["result"] = gather(master, memoryview(bytearray(64)), 30.0, 60.0, *groups)
            seen["back"] = seen["tid"] in _tasks(readers)

        os.write(slave, b"x")
        thread = threading.Thread(target=read)
        thread.start()
        try:
            # It waits for more output (a pause of 30 s ends a chunk) in the container's group.
            until(lambda: seen.get("tid") in _tasks(cpu_dir), "the reader in its group", timeout=10)
            # The cgroup lists us meanwhile; a kill of the container's processes must not.
            assert str(os.getpid()) in _cgroup._read(f"{cpu_dir}/cgroup.procs").split()
            assert os.getpid() not in _cgroup._tree_procs(cpu_dir)
            assert os.getpid() not in cg.procs()
        finally:
            os.close(slave)  # EIO: the call returns
            thread.join()
            os.close(master)
    assert seen["result"] == (1, True, False)
    assert seen["back"]  # in the readers' group once the call returned
    assert _tasks(cpu_dir) == []
    await cg.remove()
    assert _existing([readers]) == []  # removed with the other parents


def _tasks(d: str) -> list[str]:
    return Path(f"{d}/tasks").read_text().split()


@pytest.mark.root
async def test_real_child_places_itself(real_host: CgroupHost) -> None:
    """The spawn path's child writes "0" to each v1 ``tasks`` file and is born in the v2
    cgroup (CLONE_INTO_CGROUP): it is in the container's cgroup in every hierarchy it needs
    before it execs, and the caller never moves it."""
    limits = Limits(memory=64 * M)
    cg = real_host.create("self", limits)
    with cg.placement() as (tasks, v2):
        plan = SpawnPlan(argv=("sleep", "60"), cgroup_tasks=tasks, cgroup_dir=v2)
        spawned = await _native.start(RealNative(), plan)
    try:
        assert cg.procs() == [spawned.pid]
        lines = _cgroups_of(spawned.pid).splitlines()
        ours = [line for line in lines if line.endswith("/self")]
        assert len(ours) == len(real_host.joined(limits))
    finally:
        signal.pidfd_send_signal(spawned.pidfd, signal.SIGKILL)
        await reap_child(spawned.pidfd)
    await cg.remove()


@pytest.mark.root
async def test_real_sigterm_through_the_freezer(real_host: CgroupHost) -> None:
    cg = real_host.create("t", Limits())
    proc = await trio.lowlevel.open_process(["sleep", "60"])
    try:
        cg.add(proc.pid)
        await cg.kill_all(signal.SIGTERM)
        assert await proc.wait() == -signal.SIGTERM
    finally:
        proc.kill()
        await proc.wait()
    await cg.remove()


async def _read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = b""
    while not line.endswith(b"\n") and (chunk := await stream.receive_some(1)):
        line += chunk
    return line


async def _run_placed(cg: Cgroup, code: str, *, kill: bool = False) -> tuple[int, bytes]:
    """Run ``python -c code`` in ``cg``: it waits for a byte on stdin (sent once it is
    placed) before it does anything; returns its exit status and first output line
    (``kill``: the cgroup is killed once that line is read)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", "import sys; sys.stdin.read(1)\n" + code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        cg.add(proc.pid)
        await proc.stdin.send_all(b"x")
        await proc.stdin.aclose()
        line = await _read_line(proc.stdout)
        if kill:
            await cg.kill_all()
        return await proc.wait(), line
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.root
async def test_real_oom_kill_is_reported(real_host: CgroupHost) -> None:
    hog = real_host.create("hog", Limits(memory=32 * M, memory_swap=32 * M))
    status, _ = await _run_placed(hog, "b = bytearray(200 << 20)")
    assert status == -signal.SIGKILL
    assert hog.oom_killed()
    peak = hog.stats().memory_peak
    assert peak is not None and peak > 16 * M
    await hog.remove()
    fine = real_host.create("fine", Limits(memory=32 * M, memory_swap=32 * M))
    status, _ = await _run_placed(fine, "b = bytearray(1 << 20); print('ok')")
    assert status == 0
    assert not fine.oom_killed()
    await fine.remove()


_HOGS = """
import subprocess, sys
for _ in sys.stdin:  # a line: a child that takes 200 MiB, and its exit status
    hog = subprocess.run([sys.executable, "-c", "b = bytearray(200 << 20)"])
    print(hog.returncode, flush=True)
"""


@pytest.mark.root
async def test_real_oom_kills_are_told_as_they_happen(real_host: CgroupHost) -> None:
    """The OOM killer takes a child while the cgroup's first process runs on (a notebook's
    kernel): each kill is told as it happens, once, those before the watch began too
    (``reported=0``) or only those after it (``reported=None``)."""
    cg = real_host.create("kills", Limits(memory=32 * M, memory_swap=32 * M))
    send, told = trio.open_memory_channel[str](math.inf)
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", _HOGS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        cg.add(proc.pid)
        await proc.stdin.send_all(b"hog\n")
        assert await _read_line(proc.stdout) == b"-9\n"
        async with trio.open_nursery() as nursery:
            for reported in (0, None):
                name = f"from {reported}"
                watch = partial(cg.watch_oom_kills, partial(send.send_nowait, name))
                nursery.start_soon(partial(watch, reported=reported))
            with trio.fail_after(10):
                assert await told.receive() == "from 0"
            await trio.testing.wait_all_tasks_blocked()  # both watch
            await proc.stdin.send_all(b"hog\n")
            assert await _read_line(proc.stdout) == b"-9\n"
            with trio.fail_after(10):
                assert {await told.receive(), await told.receive()} == {"from 0", "from None"}
            nursery.cancel_scope.cancel()
        with pytest.raises(trio.WouldBlock):
            told.receive_nowait()
        assert proc.poll() is None  # the first process runs on
    finally:
        proc.kill()
        await proc.wait()
    await cg.remove()


FORK_LOOP = """
import os, time
forked = failed = 0
for _ in range(64):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, failed, flush=True)
time.sleep(60)
"""


@pytest.mark.root
async def test_real_pids_limit_stops_a_fork_loop(real_host: CgroupHost) -> None:
    cg = real_host.create("forks", Limits(pids_limit=16))
    assert _file(cg, "pids", "pids.max") == "16"
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(cg.stats().pids)
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        status, line = await _run_placed(cg, FORK_LOOP, kill=True)
        nursery.cancel_scope.cancel(reason="the fork loop is over")
    forked, failed = map(int, line.split())
    assert (forked, failed) == (15, 49)  # python itself is the 16th
    assert status == -signal.SIGKILL
    assert max(seen) <= 16
    await cg.remove()


@pytest.mark.root
async def test_real_update_is_all_or_nothing(real_host: CgroupHost) -> None:
    if real_host.controllers()["memory"] != "v1":
        pytest.skip("the memory controller is on v2 here (tested on a fake tree)")
    cg = real_host.create("upd", Limits(memory=64 * M, memory_swap=64 * M))
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.read(1); b = bytearray(40 << 20)\n"
            "print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        cg.add(proc.pid)
        await proc.stdin.send_all(b"x")
        assert await _read_line(proc.stdout) == b"ready\n"
        with pytest.raises(CgroupError, match=r"cannot lower memory\.limit_in_bytes") as info:
            cg.update(Limits(memory=16 * M, cpus=1.0))
        assert info.value.errno == errno.EBUSY
        assert _file(cg, "memory", "memory.limit_in_bytes") == str(64 * M)
        assert _file(cg, "cpu", "cpu.cfs_quota_us") == "-1"
        with pytest.raises(CgroupError, match=r"cpuset\.cpus"):
            cg.update(Limits(memory=48 * M, cpuset_cpus=str(os.cpu_count() or 1)))
        assert _file(cg, "memory", "memory.limit_in_bytes") == str(64 * M)
        # Raising memory above the old memsw: memsw must go first, and does.
        cg.update(Limits(memory=128 * M, memory_swap=128 * M, cpus=1.0))
        assert _file(cg, "memory", "memory.limit_in_bytes") == str(128 * M)
        assert _file(cg, "cpu", "cpu.cfs_quota_us") == "100000"
    finally:
        proc.kill()
        await proc.wait()
    await cg.remove()


@pytest.mark.root
async def test_real_stale_cgroups_are_found_after_a_restart(real_host: CgroupHost) -> None:
    real_host.create("a", Limits())
    real_host.create("b", Limits())
    name = os.path.basename(real_host.hierarchies[0].base)
    again = CgroupHost.detect(name=name)  # as a restarted daemon would
    assert again.list_children() == ["a", "b"]
    for child in again.list_children():
        await again.open(child).remove()
    assert real_host.list_children() == []

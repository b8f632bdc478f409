"""A container's /sys/fs/cgroup on a host with v1 hierarchies (this one is hybrid: memory,
cpu, pids ... on v1, hugetlb alone on v2): Docker's layout, a directory per hierarchy the
container has a cgroup of its own in, showing that cgroup, read-only, and nothing of the
daemon's or the host's.  Real containers on the real kernel; which layout a pure v2 or a
pure v1 host gets is decided in ``Cgroup.view``, tested on fake trees in test_cgroup.py."""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon

pytestmark = pytest.mark.root

# The controllers boxd makes a container's cgroup in (the v1 freezer beside a v2
# hierarchy, and named hierarchies but name=systemd, it does not).
JOINED = {"memory", "cpu", "cpuacct", "pids", "blkio", "devices", "cpuset"}
SYSTEMD = "name=systemd"

# Run in the container: what its /sys/fs/cgroup holds, and its limits found as the JVM
# finds them (CgroupV1Controller: the cgroup mount of the controller in mountinfo, its
# root matched against the controller's path in /proc/self/cgroup).
SEES = r"""
import errno, json, os, sys, time
top = "/sys/fs/cgroup"
mountinfo = open("/proc/self/mountinfo").read().splitlines()
paths = {}
for line in open("/proc/self/cgroup").read().splitlines():
    _, names, path = line.split(":", 2)
    for name in names.split(",") if names else ["unified"]:
        paths[name] = path
def jvm_dir(controller):
    for line in mountinfo:
        left, _, right = line.partition(" - ")
        fields, (fstype, _src, superopts) = left.split(), right.split()
        root, point = fields[3], fields[4]
        if fstype == "cgroup" and controller in superopts.split(","):
            path = paths[controller]
            if root == "/":
                return point + (path if path != "/" else "")
            if root == path:
                return point
            return None
    return None
def attempt(f):
    try:
        f()
    except OSError as e:
        return errno.errorcode[e.errno]
    return "done"
entries = {}
for name in sorted(os.listdir(top)):
    p = os.path.join(top, name)
    if os.path.islink(p):
        entries[name] = {"link": os.readlink(p)}
    else:
        entries[name] = {
            "ino": os.stat(p).st_ino,
            "subdirs": [e for e in os.listdir(p) if os.path.isdir(os.path.join(p, e))],
            "procs": open(os.path.join(p, "cgroup.procs")).read().split(),
        }
def read(controller, name):
    d = jvm_dir(controller)
    return None if d is None else open(os.path.join(d, name)).read().strip()
print(json.dumps({
    "entries": entries,
    "cgroup_paths": paths,
    "roots": {l.split()[4]: l.split()[3] for l in mountinfo if l.split()[4].startswith(top + "/")},
    "options": {l.split()[4]: l.split()[5] for l in mountinfo if l.split()[4].startswith(top)},
    "memory": read("memory", "memory.limit_in_bytes"),
    "quota": read("cpu", "cpu.cfs_quota_us"),
    "cpus": read("cpuset", "cpuset.cpus"),
    "usage": read("cpuacct", "cpuacct.usage"),
    "pids": read("pids", "pids.max"),
    "write": attempt(lambda: open(top + "/memory/memory.limit_in_bytes", "w").write("1")),
    "mkdir": attempt(lambda: os.mkdir(top + "/memory/sub")),
    "top_mkdir": attempt(lambda: os.mkdir(top + "/new")),
    "umount": attempt(lambda: os.rmdir(top + "/memory")),
}), flush=True)
time.sleep(300)
"""


def host_hierarchies() -> dict[str, set[str]]:
    """The host's v1 hierarchies boxd joins (directory name -> controllers; ``systemd`` ->
    {name=systemd} where a v1 controller is mounted too), and ``unified`` when a v2
    hierarchy is mounted."""
    found: dict[str, set[str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, superopts = right.split()[0], right.split()[2]
        point = left.split()[4]
        if fstype == "cgroup2":
            found["unified"] = set()
        elif fstype == "cgroup" and (JOINED | {SYSTEMD}) & set(superopts.split(",")):
            found[os.path.basename(point)] = (JOINED | {SYSTEMD}) & set(superopts.split(","))
    if all(names <= {SYSTEMD} for names in found.values()):  # pure v2: its cgroup2 only
        found = {name: names for name, names in found.items() if not names}
    return found


def _sees(daemon: Daemon, *opts: str) -> tuple[str, dict[str, Any]]:
    cid = daemon.ctl("run", "-d", *opts, "default", "python3", "-c", SEES).stdout.strip()
    daemon.wait_for(cid, lambda _: daemon.ctl("logs", cid).stdout.strip() != "")
    return cid, json.loads(daemon.ctl("logs", cid).stdout)


def test_a_v1_host_shows_the_containers_own_cgroups(daemon: Daemon) -> None:
    hierarchies = host_hierarchies()
    if not any(hierarchies.values()):
        pytest.skip("no v1 cgroup hierarchy here: a pure v2 host shows the container's cgroup2")
    cid, seen = _sees(daemon, "--memory", "32m", "--cpus", "0.5", "--pids-limit", "50")
    try:
        entries = seen["entries"]
        links = {name: e["link"] for name, e in entries.items() if "link" in e}
        dirs = {name: e for name, e in entries.items() if "link" not in e}
        # A directory per hierarchy it has a cgroup in, named as the host names it; a
        # comounted controller is a link to its hierarchy (cpu -> cpu,cpuacct).
        assert set(dirs) == set(hierarchies)
        assert links == {c: name for name, cs in hierarchies.items() if len(cs) > 1 for c in cs}
        assert "freezer" not in entries
        # The name=systemd hierarchy too, as runc gives it (a systemd inside needs one):
        # its own cgroup there, "/" in its /proc/self/cgroup.
        if any(SYSTEMD in names for names in hierarchies.values()):
            assert "systemd" in dirs and seen["cgroup_paths"][SYSTEMD] == "/"
        # Its own limits, found as the JVM finds them: both paths are "/" in its cgroup
        # namespace.
        assert seen["memory"] == str(32 << 20)
        assert seen["quota"] == "50000"
        assert seen["pids"] == "50"
        assert seen["cpus"] and int(seen["usage"]) > 0
        assert set(seen["cgroup_paths"].values()) == {"/"}
        assert set(seen["roots"].values()) == {"/"}
        # Its own cgroup in each: the same kernfs node as the host's directory of it; the
        # container's processes alone, no cgroup below.
        for name, entry in dirs.items():
            (host_dir,) = glob.glob(f"/sys/fs/cgroup/{name}/**/{cid}", recursive=True)
            assert entry["ino"] == os.stat(host_dir).st_ino, name
            assert entry["subdirs"] == [] and entry["procs"] == ["1"], name
        # Read-only, nosuid, nodev, noexec: the tmpfs and every hierarchy.
        for point, options in seen["options"].items():
            assert {"ro", "nosuid", "nodev", "noexec"} <= set(options.split(",")), point
        assert seen["write"] == seen["mkdir"] == seen["top_mkdir"] == "EROFS"
        assert seen["umount"] in ("EBUSY", "EROFS")
        (memory,) = glob.glob(f"/sys/fs/cgroup/memory/**/{cid}", recursive=True)
        assert int(Path(memory, "memory.limit_in_bytes").read_text()) == 32 << 20
    finally:
        daemon.ctl("rm", "-f", cid)


def test_without_limits_the_same_layout_and_no_limit(daemon: Daemon) -> None:
    hierarchies = host_hierarchies()
    if not any(hierarchies.values()):
        pytest.skip("no v1 cgroup hierarchy here")
    cid, seen = _sees(daemon)
    try:
        assert {n for n, e in seen["entries"].items() if "link" not in e} == set(hierarchies)
        assert int(seen["memory"]) >= 1 << 62 and seen["quota"] == "-1"
        assert seen["pids"] == "4096"  # boxd's default
    finally:
        daemon.ctl("rm", "-f", cid)


@pytest.mark.skipif(shutil.which("java") is None, reason="no JRE (Debian: default-jre-headless)")
def test_a_jvm_sizes_itself_from_the_containers_limits(daemon: Daemon) -> None:
    """The JVM's container support (the host's JRE, through the default image's /usr)
    reads the memory limit and the CPU quota: its default heap is a quarter of the
    container's 1 GiB, not of the host's memory."""
    r = daemon.ctl(
        "run", "--rm", "--memory", "1g", "--cpus", "1", "default",
        "java", "-Xlog:os+container=trace", "-XX:+PrintFlagsFinal", "-version",
    )  # fmt: skip
    assert "Memory Limit is: 1073741824" in r.stdout, r.stdout
    heap = next(line for line in r.stdout.splitlines() if " MaxHeapSize " in line)
    assert int(heap.split("=")[1].split()[0]) == 256 << 20, heap
    assert "active_processor_count: 1" in r.stdout, r.stdout


NESTS = """
set -e
cd /sys/fs/cgroup
mkdir memory/inner unified/inner systemd/inner
echo 16777216 > memory/inner/memory.limit_in_bytes
echo 64 > pids/pids.max
sleep 1000 &
echo $! > memory/inner/cgroup.procs
echo $! > unified/inner/cgroup.procs
echo $! > systemd/inner/cgroup.procs
echo nested $(cat memory/inner/memory.limit_in_bytes) $(cat pids/pids.max)
wait
"""


def test_a_privileged_container_may_nest_below_its_own_cgroups(daemon: Daemon) -> None:
    """``--privileged``: its /sys/fs/cgroup is writable, as Docker mounts it: it makes a
    cgroup below its own, sets a limit there and in its own cgroup, and moves a process
    down (below its v2 cgroup too, whose cgroup.procs then lists it no more): ``top``
    still shows that process, and removing the container kills it and removes every
    cgroup.  Without --privileged, nothing."""
    hierarchies = host_hierarchies()
    if not {"memory", "pids", "unified", "systemd"} <= set(hierarchies):
        pytest.skip("this test's paths are a hybrid host's (memory, pids, systemd on v1, unified)")
    refused = daemon.ctl("run", "--rm", "default", "mkdir", "/sys/fs/cgroup/memory/inner",
                         check=False)  # fmt: skip
    assert refused.returncode == 1 and "Read-only file system" in refused.stderr
    cid = daemon.ctl("run", "-d", "--privileged", "default", "sh", "-c", NESTS).stdout.strip()
    try:
        daemon.wait_for(cid, lambda _: "nested" in daemon.ctl("logs", cid).stdout)
        assert daemon.ctl("logs", cid).stdout == f"nested {16 << 20} 64\n"
        (inner,) = glob.glob(f"/sys/fs/cgroup/memory/**/{cid}/inner", recursive=True)
        assert Path(inner, "memory.limit_in_bytes").read_text() == f"{16 << 20}\n"
        (sleeper,) = Path(inner, "cgroup.procs").read_text().split()
        # Below its own name=systemd cgroup too, as a systemd inside keeps its services.
        (named,) = glob.glob(f"/sys/fs/cgroup/systemd/**/{cid}/inner", recursive=True)
        assert Path(named, "cgroup.procs").read_text().split() == [sleeper]
        (own,) = glob.glob(f"/sys/fs/cgroup/pids/**/{cid}", recursive=True)
        assert Path(own, "pids.max").read_text() == "64\n"
        rows = daemon.ctl("top", cid).stdout.splitlines()
        assert [row.split()[1] for row in rows if row.endswith(" sleep 1000")] == [sleeper]
    finally:
        daemon.ctl("rm", "-f", cid)
    # The daemon removes a run's cgroups once its end is recorded (rm does not wait).
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{sleeper}") or glob.glob(
        f"/sys/fs/cgroup/*/**/{cid}", recursive=True
    ):
        assert time.monotonic() < deadline, "the nested process or cgroups outlived rm -f"
        time.sleep(0.05)

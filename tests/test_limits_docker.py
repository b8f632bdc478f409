"""Docker's other resource options (--memory-reservation, --memory-swappiness,
--oom-kill-disable, --kernel-memory, --cpu-period/--cpu-quota, --cpuset-mems,
--cpu-rt-*, --blkio-weight[-device], --device-{read,write}-{bps,iops}) through boxctl and
the docker CLI against a real daemon (in the test session's network namespace), read back
from the container's real cgroup files.  This host is HYBRID (memory, cpu, cpuset, blkio
on v1): the v1 files are tested for real here; pure v2 cannot exist on this host, so its
writes (memory.low, io.weight, io.max, cpu.max, cpuset.mems) and its refusals are tested
on the fake cgroup tree of tests/fake_cgroup.py."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import fake_cgroup
import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import DOCKER, api_call, docker, docker_env, needs_cli
from fake_cgroup import FakeCgroupFs
from test_limits import _cgroup_file

from boxd._cgroup import Limits

M = 1 << 20


def _block_device() -> tuple[str, str]:
    """A block device of this host: its path and MAJ:MIN."""
    for name in sorted(os.listdir("/sys/block")):
        path = f"/dev/{name}"
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode):
            return path, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    pytest.skip("no block device node in /dev")


def _weight_file() -> str | None:
    """The v1 blkio weight file this host's kernel offers (None: no CFQ or BFQ weight)."""
    found = [
        n for n in ("blkio.weight", "blkio.bfq.weight") if Path("/sys/fs/cgroup/blkio", n).exists()
    ]
    return found[0] if found else None


# ---- boxctl on the real (hybrid: v1) files ---------------------------------------------


@pytest.mark.root
def test_memory_options_in_the_v1_files_and_update(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run",
        "-d",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "10",
        "--oom-kill-disable",
        "--kernel-memory",
        "50m",
        "default",
        "sleep",
        "300",
    )
    cid = r.stdout.strip()
    assert "--kernel-memory is deprecated" in r.stderr and "ignored" in r.stderr
    assert int(_cgroup_file(cid, "memory", "memory.soft_limit_in_bytes").read_text()) == 32 * M
    assert _cgroup_file(cid, "memory", "memory.swappiness").read_text().strip() == "10"
    control = _cgroup_file(cid, "memory", "memory.oom_control").read_text()
    assert "oom_kill_disable 1" in control
    res = daemon.inspect(cid)["config"]["resources"]
    assert (res["memory_reservation"], res["memory_swappiness"], res["oom_kill_disable"]) == (
        32 * M,
        10,
        True,
    )
    daemon.ctl("update", "--memory-reservation", "48m", cid)
    assert int(_cgroup_file(cid, "memory", "memory.soft_limit_in_bytes").read_text()) == 48 * M
    r = daemon.ctl("update", "--memory-reservation", "100m", cid, check=False)
    assert r.returncode != 0 and "must not exceed --memory" in r.stderr
    daemon.ctl("rm", "-f", cid)


@pytest.mark.root
def test_an_oom_its_killer_may_not_end_is_reported(daemon: Daemon) -> None:
    """v1's --oom-kill-disable: the container stalls in its OOM instead of being killed;
    as dockerd, that is an ``oom`` event and State.OOMKilled, and it still runs (moby's
    TestEventsOOMDisableTrue)."""
    since = time.time()
    hog = "x=a; while true; do x=$x$x$x$x; done"
    cid = daemon.ctl(
        "run", "-d", "--oom-kill-disable", "-m", "10m", "--memory-swap", "10m",
        "default", "sh", "-c", hog,
    ).stdout.strip()  # fmt: skip
    c = daemon.wait_for(cid, lambda c: c["state"]["oom_killed"], timeout=30)
    assert c["state"]["status"] == "running"
    until = str(time.time())
    events = daemon.ctl("events", "--since", str(since), "--until", until, "-f", "event=oom")
    assert cid in events.stdout, events.stdout
    daemon.ctl("rm", "-f", cid)


@pytest.mark.root
def test_oom_kill_disable_without_memory_warns(daemon: Daemon) -> None:
    r = daemon.ctl("run", "--rm", "--oom-kill-disable", "default", "true")
    assert r.returncode == 0 and "WARNING: the OOM killer is disabled" in r.stderr


@pytest.mark.root
def test_cpu_options_in_the_v1_files_and_update(daemon: Daemon) -> None:
    cid = daemon.ctl(
        "run",
        "-d",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-mems",
        "0",
        "default",
        "sleep",
        "300",
    ).stdout.strip()
    assert _cgroup_file(cid, "cpu", "cpu.cfs_period_us").read_text().strip() == "50000"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "25000"
    assert _cgroup_file(cid, "cpuset", "cpuset.mems").read_text().strip() == "0"
    daemon.ctl("update", "--cpu-quota", "40000", cid)
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "40000"
    daemon.ctl("update", "--cpus", "1.5", cid)  # --cpus replaces period and quota
    assert _cgroup_file(cid, "cpu", "cpu.cfs_period_us").read_text().strip() == "100000"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "150000"
    res = daemon.inspect(cid)["config"]["resources"]
    assert (res["cpus"], res["cpu_period"], res["cpu_quota"]) == (1.5, None, None)
    daemon.ctl("rm", "-f", cid)


@pytest.mark.root
def test_cpu_rt_runtime_takes_its_budget_from_the_parents_boxd_made(daemon: Daemon) -> None:
    if not Path("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists():
        r = daemon.ctl("run", "--rm", "--cpu-rt-runtime", "1000", "default", "true", check=False)
        assert r.returncode == 125 and "no real-time group scheduling" in r.stderr
        return
    cid = daemon.ctl(
        "run",
        "-d",
        "--cpu-rt-period",
        "1000000",
        "--cpu-rt-runtime",
        "10000",
        "default",
        "sleep",
        "300",
    ).stdout.strip()
    assert _cgroup_file(cid, "cpu", "cpu.rt_period_us").read_text().strip() == "1000000"
    assert _cgroup_file(cid, "cpu", "cpu.rt_runtime_us").read_text().strip() == "10000"
    parent = _cgroup_file(cid, "cpu", "cpu.rt_runtime_us").parent.parent
    assert int((parent / "cpu.rt_runtime_us").read_text()) >= 10000
    # Another with a shorter period: its parent's budget is counted per period.
    other = daemon.ctl(
        "run", "-d", "--cpu-rt-period", "1000", "--cpu-rt-runtime", "100", "default", "sleep", "300"
    ).stdout.strip()
    assert int((parent / "cpu.rt_runtime_us").read_text()) >= 10000 + 100_000
    # More than the host's root gives (950 ms of each second by default): the kernel's no.
    r = daemon.ctl("run", "--rm", "--cpu-rt-runtime", "999000", "default", "true", check=False)
    assert r.returncode == 125 and "invalid --cpu-rt-runtime 999000: the kernel refuses" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    daemon.ctl("rm", "-f", cid, other)


@pytest.mark.root
def test_block_io_options_in_the_v1_files(daemon: Daemon) -> None:
    path, number = _block_device()
    r = daemon.ctl(
        "run",
        "-d",
        "--blkio-weight",
        "300",
        "--blkio-weight-device",
        f"{path}:200",
        "--device-read-bps",
        f"{path}:1mb",
        "--device-write-bps",
        f"{path}:2mb",
        "--device-read-iops",
        f"{path}:100",
        "--device-write-iops",
        f"{path}:200",
        "default",
        "sleep",
        "300",
    )
    cid = r.stdout.strip()
    for name, value in (
        ("read_bps_device", 1 * M),
        ("write_bps_device", 2 * M),
        ("read_iops_device", 100),
        ("write_iops_device", 200),
    ):
        text = _cgroup_file(cid, "blkio", f"blkio.throttle.{name}").read_text()
        assert f"{number} {value}" in text.splitlines(), (name, text)
    res = daemon.inspect(cid)["config"]["resources"]
    assert res["device_read_bps"] == [{"path": path, "rate": 1 * M}]
    weight = _weight_file()
    if weight is None:  # this host: no CFQ or BFQ weight: ignored with a warning, as Docker
        assert "WARNING: --blkio-weight is ignored" in r.stderr
        assert "WARNING: --blkio-weight-device is ignored" in r.stderr
        assert (res["blkio_weight"], res["blkio_weight_device"]) == (None, None)
    else:
        assert _cgroup_file(cid, "blkio", weight).read_text().split()[-1] == "300"
        assert res["blkio_weight"] == 300
    r = daemon.ctl("update", "--blkio-weight", "500", cid)
    if weight is None:
        assert "WARNING: --blkio-weight is ignored" in r.stderr
    else:
        assert _cgroup_file(cid, "blkio", weight).read_text().split()[-1] == "500"
    r = daemon.ctl("update", "--device-read-bps", f"{path}:1mb", cid, check=False)
    assert r.returncode != 0  # update does not take it (docker update neither)
    daemon.ctl("rm", "-f", cid)


@pytest.mark.root
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--blkio-weight", "5"], "invalid --blkio-weight 5: use 10 to 1000"),
        (["--blkio-weight", "x"], "'x'"),
        (["--blkio-weight-device", "/dev/null:5"], "invalid --blkio-weight-device"),
        (["--device-read-bps", "/dev/nope:1mb"], "'/dev/nope:1048576': /dev/nope: No such file"),
        (["--device-write-bps", "/dev/null:1mb"], "/dev/null is not a block device"),
        (["--device-read-iops", "/dev/sda:fast"], "'fast' is not a number"),
        (["--device-write-iops", "sda"], "invalid --device-write-iops 'sda'"),
        (["--device-read-bps", "/dev/sda:1q"], "invalid --device-read-bps '1q'"),
        (["--memory-reservation", "1x"], "invalid --memory-reservation '1x'"),
        (["--memory-reservation", "1k"], "the minimum is 6m"),
        (["--memory-swappiness", "101"], "invalid --memory-swappiness 101"),
        (["--kernel-memory", "lots"], "invalid --kernel-memory 'lots'"),
        (["--cpu-period", "10"], "invalid --cpu-period 10"),
        (["--cpu-quota", "10"], "invalid --cpu-quota 10"),
        (["--cpus", "1", "--cpu-quota", "50000"], "cannot be combined with --cpu-period"),
        (["--cpuset-mems", "7"], "memory node 7 is not online"),
        (["--cpuset-mems", "a-b"], "invalid --cpuset-mems 'a-b'"),
        (["--cpu-rt-period", "1000", "--cpu-rt-runtime", "2000"], "must not exceed"),
    ],
)
def test_bad_values_are_named_with_exit_125(daemon: Daemon, args: list[str], named: str) -> None:
    r = daemon.ctl("run", "--rm", *args, "default", "true", check=False)
    assert r.returncode == 125 and named in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


@pytest.mark.root
def test_the_proc_view_counts_a_cpu_quota_as_cpus(tmp_path: Path) -> None:
    """With ``--procview-cpus quota`` a container sees ceil(quota / period) CPUs, whether
    --cpus or --cpu-quota and --cpu-period set them."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: a quota cannot show fewer")
    with running_daemon(tmp_path, "--procview-cpus", "quota") as d:
        for args in (["--cpus", "0.5"], ["--cpu-period", "200000", "--cpu-quota", "100000"]):
            r = d.ctl("run", "--rm", *args, "default", "grep", "-c", "^processor", "/proc/cpuinfo")
            assert r.stdout == "1\n", (args, r.stdout)


@pytest.mark.root
@pytest.mark.skipif(
    (os.cpu_count() or 1) < 2 or not Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists(),
    reason="needs two CPUs and a v1 cpu hierarchy",
)
def test_the_proc_view_counts_a_parents_cpu_quota(tmp_path: Path) -> None:
    """A quota of the container's --cgroup-parent throttles it as well as its own: with
    ``--procview-cpus quota`` it sees that many CPUs."""
    with running_daemon(tmp_path, "--procview-cpus", "quota") as d:
        cid = d.ctl(
            "run", "-d", "--cgroup-parent", "half-cpu", "default", "sleep", "60"
        ).stdout.strip()
        pid = d.inspect(cid)["state"]["pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        path = next(ln.split(":", 2)[2] for ln in lines if "cpu" in ln.split(":")[1].split(","))
        parent = Path(f"/sys/fs/cgroup/cpu{path}").parent
        period = int((parent / "cpu.cfs_period_us").read_text())
        (parent / "cpu.cfs_quota_us").write_text(str(period // 2))
        r = d.ctl("exec", cid, "grep", "-c", "^processor", "/proc/cpuinfo")
        assert r.stdout == "1\n", r.stdout


# ---- the docker CLI ---------------------------------------------------------------------


@pytest.mark.root
@needs_cli
def test_docker_cli_create_inspect_update(daemon: Daemon) -> None:
    path, number = _block_device()
    r = docker(
        daemon,
        "run",
        "-d",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "20",
        "--oom-kill-disable",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "20000",
        "--cpuset-mems",
        "0",
        "--blkio-weight",
        "100",
        "--device-write-bps",
        f"{path}:1mb",
        "--device-read-iops",
        f"{path}:50",
        "default",
        "sleep",
        "300",
    )
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip().splitlines()[-1]
    assert int(_cgroup_file(cid, "memory", "memory.soft_limit_in_bytes").read_text()) == 32 * M
    assert _cgroup_file(cid, "memory", "memory.swappiness").read_text().strip() == "20"
    assert "oom_kill_disable 1" in _cgroup_file(cid, "memory", "memory.oom_control").read_text()
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "20000"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_period_us").read_text().strip() == "50000"
    throttle = _cgroup_file(cid, "blkio", "blkio.throttle.write_bps_device").read_text()
    assert f"{number} {M}" in throttle.splitlines()
    host = json.loads(docker(daemon, "inspect", cid).stdout)[0]["HostConfig"]
    assert (host["MemoryReservation"], host["MemorySwappiness"], host["OomKillDisable"]) == (
        32 * M,
        20,
        True,
    )
    assert (host["CpuPeriod"], host["CpuQuota"], host["CpusetMems"]) == (50000, 20000, "0")
    assert host["BlkioDeviceWriteBps"] == [{"Path": path, "Rate": M}]
    assert host["BlkioDeviceReadIOps"] == [{"Path": path, "Rate": 50}]
    if _weight_file() is None:
        assert "WARNING: --blkio-weight is ignored" in r.stderr
        assert host["BlkioWeight"] == 0
    else:
        assert host["BlkioWeight"] == 100
    u = docker(daemon, "update", "--memory-reservation", "48m", "--cpu-quota", "30000", cid)
    assert u.returncode == 0, u.stderr
    assert int(_cgroup_file(cid, "memory", "memory.soft_limit_in_bytes").read_text()) == 48 * M
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "30000"
    host = json.loads(docker(daemon, "inspect", cid).stdout)[0]["HostConfig"]
    assert (host["MemoryReservation"], host["CpuQuota"]) == (48 * M, 30000)
    u = docker(daemon, "update", "--blkio-weight", "200", cid)
    assert u.returncode == 0, u.stderr
    if _weight_file() is None:
        assert "--blkio-weight is ignored" in u.stdout, u.stdout  # where the CLI prints them
    docker(daemon, "rm", "-f", cid)


@pytest.mark.root
@needs_cli
def test_docker_cli_kernel_memory_and_bad_values(daemon: Daemon) -> None:
    # From API 1.42 (the CLI negotiates 1.50) the CLI no longer sends it: silently none,
    # as with Docker; an older client's is accepted with a warning.
    r = docker(daemon, "run", "--rm", "--kernel-memory", "50m", "default", "true")
    assert (r.returncode, r.stderr) == (0, "")
    assert DOCKER is not None
    argv = [DOCKER, "run", "--rm", "--kernel-memory", "50m", "default", "true"]
    env = {**docker_env(daemon), "DOCKER_API_VERSION": "1.41"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "KernelMemory is deprecated" in r.stderr, r.stderr
    for args, named in (
        (["--blkio-weight", "5"], "invalid --blkio-weight 5"),
        (["--device-read-bps", "/dev/nope:1mb"], "/dev/nope"),
        (["--cpuset-mems", "7"], "invalid --cpuset-mems '7': memory node 7 is not online"),
    ):
        r = docker(daemon, "run", "--rm", *args, "default", "true")
        assert r.returncode == 125 and named in r.stderr, (args, r.stderr)
    assert docker(daemon, "ps", "-a", "-q").stdout == ""
    assert docker(daemon, "info", "-f", "{{.OomKillDisable}}").stdout == "true\n"  # v1 memory


@pytest.mark.root
@pytest.mark.parametrize(
    ("host", "named"),
    [
        ({"MemorySwappiness": 101}, "invalid --memory-swappiness 101"),
        ({"MemorySwappiness": "high"}, "HostConfig.MemorySwappiness: expected an integer"),
        ({"OomKillDisable": "yes"}, "HostConfig.OomKillDisable: expected a boolean"),
        ({"BlkioWeight": 2000}, "invalid --blkio-weight 2000"),
        ({"BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 100}]}, "not a block device"),
        ({"BlkioDeviceReadBps": "fast"}, "HostConfig.BlkioDeviceReadBps: expected a list"),
        ({"BlkioDeviceWriteIOps": [{"Path": "/dev/nope", "Rate": 5}]}, "'/dev/nope:5'"),
        ({"CpuPeriod": 50, "CpuQuota": 100000}, "invalid --cpu-period 50"),
        ({"NanoCpus": 10**9, "CpuQuota": 50000}, "cannot be combined"),
        ({"MemoryReservation": 1000}, "invalid --memory-reservation 1000"),
    ],
)
def test_api_bad_values_are_400_naming_them(
    daemon: Daemon, host: dict[str, object], named: str
) -> None:
    body = {"Image": "default", "Cmd": ["true"], "HostConfig": host}
    status, _, answer = api_call(daemon, "POST", "/containers/create", json.dumps(body).encode())
    assert status == 400 and named in json.loads(answer)["message"], answer


@pytest.mark.root
def test_docker_py_run_inspect_update(daemon: Daemon) -> None:
    docker_py = pytest.importorskip("docker")
    path, number = _block_device()
    client = docker_py.DockerClient(base_url=f"unix://{daemon.docker_socket}")
    try:
        c = client.containers.run(
            "default",
            ["sleep", "300"],
            detach=True,
            mem_limit="64m",
            mem_reservation="16m",
            oom_kill_disable=True,
            cpu_period=40000,
            cpu_quota=10000,
            device_read_bps=[{"Path": path, "Rate": 4 * M}],
            device_write_iops=[{"Path": path, "Rate": 30}],
        )
        assert int(_cgroup_file(c.id, "memory", "memory.soft_limit_in_bytes").read_text()) == 16 * M
        assert _cgroup_file(c.id, "cpu", "cpu.cfs_period_us").read_text().strip() == "40000"
        text = _cgroup_file(c.id, "blkio", "blkio.throttle.write_iops_device").read_text()
        assert f"{number} 30" in text.splitlines()
        c.update(mem_reservation="24m", cpu_quota=20000)
        c.reload()
        host = c.attrs["HostConfig"]
        assert (host["MemoryReservation"], host["CpuQuota"], host["CpuPeriod"]) == (
            24 * M,
            20000,
            40000,
        )
        assert host["BlkioDeviceReadBps"] == [{"Path": path, "Rate": 4 * M}]
        assert _cgroup_file(c.id, "cpu", "cpu.cfs_quota_us").read_text().strip() == "20000"
        with pytest.raises(docker_py.errors.APIError, match="invalid --blkio-weight 5"):
            client.containers.create("default", ["true"], blkio_weight=5)
        with pytest.raises(docker_py.errors.APIError, match="/dev/nope"):
            client.containers.create(
                "default", ["true"], device_write_bps=[{"Path": "/dev/nope", "Rate": 1}]
            )
        c.remove(force=True)
    finally:
        client.close()


# ---- pure v2, on a fake tree (this host cannot have one) --------------------------------


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupFs:
    return FakeCgroupFs(tmp_path, monkeypatch)


def test_v2_writes_memory_low_cpu_max_io_weight_and_io_max(fs: FakeCgroupFs) -> None:
    own = fs.mount_v2("/system.slice/boxd.service")
    host = fs.detect()
    limits = Limits(
        memory_reservation=32 * M,
        cpu_period=50000,
        cpu_quota=25000,
        cpuset_mems="0",
        blkio_weight=1000,
        blkio_weight_device=(("8:0", 10),),
        device_read_bps=(("8:0", M),),
        device_write_iops=(("8:0", 100),),
        device_write_bps=(("8:16", 2 * M),),
    )
    host.validate(limits)
    assert host.ignored(limits) == ({}, [])
    cg = host.create("c1", limits)
    written = [w for w in fs.written(own) if w[0].startswith("boxd/c1/")]
    assert written == [
        ("boxd/c1/pids.max", "4096"),
        ("boxd/c1/memory.low", str(32 * M)),
        ("boxd/c1/cpu.max", "25000 50000"),
        ("boxd/c1/cpuset.mems", "0"),
        ("boxd/c1/io.weight", "10000"),  # Docker's 10..1000 scaled to io.weight's 1..10000
        ("boxd/c1/io.weight", "8:0 1"),
        ("boxd/c1/io.max", "8:0 rbps=1048576 wiops=100"),
        ("boxd/c1/io.max", "8:16 wbps=2097152"),
    ]
    fs.writes.clear()
    cg.update(Limits(cpu_quota=-1))  # the period stays as it is
    assert fs.written(own) == [("boxd/c1/cpu.max", "max 50000")]


def test_v2_ignores_swappiness_and_oom_kill_disable_and_has_no_rt(fs: FakeCgroupFs) -> None:
    fs.mount_v2("/system.slice/boxd.service")
    host = fs.detect()
    drop, notes = host.ignored(Limits(memory_swappiness=10, oom_kill_disable=True))
    assert set(drop) == {"memory_swappiness", "oom_kill_disable"} and notes == []
    assert "v2" in drop["memory_swappiness"] and "OOM killer" in drop["oom_kill_disable"]
    with pytest.raises(ValueError, match="invalid --cpu-rt-runtime 1000: this kernel has no real"):
        host.validate(Limits(cpu_rt_runtime=1000))


def test_v2_bfq_weight_is_taken_as_is(fs: FakeCgroupFs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_cgroup.V2_FILES["io"], "io.bfq.weight", "default 100")
    own = fs.mount_v2("/system.slice/boxd.service")
    host = fs.detect()
    host.create("c1", Limits(blkio_weight=300, blkio_weight_device=(("8:0", 20),)))
    written = fs.written(own)
    assert ("boxd/c1/io.bfq.weight", "300") in written
    assert ("boxd/c1/io.bfq.weight", "8:0 20") in written


def test_v1_weight_missing_is_ignored_and_files_are_written(
    fs: FakeCgroupFs, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = fs.mount_v1("blkio", "/")
    fs.mount_v1("memory", "/")
    fs.mount_v1("cpu,cpuacct", "/")
    host = fs.detect()
    drop, _ = host.ignored(Limits(blkio_weight=100, blkio_weight_device=(("8:0", 100),)))
    assert set(drop) == {"blkio_weight", "blkio_weight_device"}
    # A kernel with CFQ (or BFQ) weights: every blkio cgroup has the files.
    weights = {"blkio.weight": "500", "blkio.weight_device": ""}
    for name, text in weights.items():
        monkeypatch.setitem(fake_cgroup.V1_FILES["blkio"], name, text)
        (own / name).write_text(text)
    assert host.ignored(Limits(blkio_weight=100)) == ({}, [])
    limits = Limits(
        blkio_weight=100,
        blkio_weight_device=(("8:0", 200),),
        device_read_iops=(("8:0", 7),),
        memory_reservation=16 * M,
        memory_swappiness=0,
        oom_kill_disable=True,
        cpu_period=20000,
    )
    host.create("c1", limits)
    written = fs.written(fs.root / "sys/fs/cgroup")
    for expected in (
        ("blkio/boxd/c1/blkio.weight", "100"),
        ("blkio/boxd/c1/blkio.weight_device", "8:0 200"),
        ("blkio/boxd/c1/blkio.throttle.read_iops_device", "8:0 7"),
        ("memory/boxd/c1/memory.soft_limit_in_bytes", str(16 * M)),
        ("memory/boxd/c1/memory.swappiness", "0"),
        ("memory/boxd/c1/memory.oom_control", "1"),
        ("cpu,cpuacct/boxd/c1/cpu.cfs_period_us", "20000"),
    ):
        assert expected in written, (expected, written)


async def test_a_v2_supervisor_drops_what_it_ignores_and_applies_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library on a pure v2 host (a fake tree; FakeNative spawns nothing): swappiness and
    --oom-kill-disable are dropped from the record with their warnings, a reservation is
    written to memory.low, create and update of a running container both apply it, and
    update refuses what `docker update` does not take."""
    from boxd import DeviceRate, Resources
    from boxd._native import FakeNative
    from boxd._records import ContainerConfig
    from boxd._supervisor import open_supervisor

    fs = FakeCgroupFs(tmp_path / "cgroupfs", monkeypatch)
    own = fs.mount_v2("/user.slice/test", controllers="cpu io memory pids")
    (tmp_path / "image/bin").mkdir(parents=True)
    (tmp_path / "image/bin/sh").write_text("")
    wanted = Resources(memory_reservation=32 * M, memory_swappiness=5, oom_kill_disable=True)
    async with open_supervisor(tmp_path / "root", native=FakeNative(), cgroups=fs.detect()) as sup:
        config = ContainerConfig(
            # Running while updated (FakeNative runs it on the host; its end would take the
            # cgroup away: it read "no such file" under a loaded CI run).
            image=str(tmp_path / "image"),
            command=("sleep", "60"),
            network="none",
            resources=wanted,
        )
        assert len(sup.limit_warnings(wanted)) == 2
        c = await sup.create(config, "c")
        stored = c.config.resources
        assert (stored.memory_reservation, stored.memory_swappiness) == (32 * M, None)
        assert stored.oom_kill_disable is None
        await sup.start(c.id)
        low = next(own.glob(f"*/{c.id}/memory.low"))
        assert low.read_text() == str(32 * M)
        await sup.update(c.id, Resources(memory_reservation=48 * M))
        assert low.read_text() == str(48 * M)
        with pytest.raises(ValueError, match="--device-read-bps cannot be changed by update"):
            await sup.update(c.id, Resources(device_read_bps=(DeviceRate("/dev/x", 1),)))
        await sup.remove(c.id, force=True)

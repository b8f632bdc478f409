"""boxd-runtime, the OCI runtime: its config.json records (no root), then its command line
driven as conmon and containerd's shim drive runc, on bundles that ``umoci unpack`` makes
from an OCI image of the busybox root, and checked against runc on the same bundle."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import oci_peers
import pytest
from test_cgroupfs import host_hierarchies

from boxd._cgroup import parse_cpu_list
from boxd._native import (
    FakeNative,
    MountKind,
    Namespace,
    SpawnError,
    SpawnPlan,
    Stage,
    start_blocking,
)
from boxd._oci import _spec, _translate
from boxd._oci._spec import SpecError

RUNTIME = str(Path(sys.executable).with_name("boxd-runtime"))


def runc_spec() -> dict[str, Any]:
    """A config.json as `runc spec` writes it (the template conmon-less users start from)."""
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {
                key: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                for key in ("bounding", "effective", "permitted", "ambient")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
    }


# ---------------------------------------------------------------- config.json, no root


def test_spec_is_strict_and_names_the_bad_value() -> None:
    document = runc_spec()
    document["process"]["terminal"] = "yes"
    with pytest.raises(SpecError, match=r"expected bool, got str @ \$\.process\.terminal"):
        _spec.parse(document)


def test_spec_keeps_unknown_fields_and_refuses_what_matters() -> None:
    document = runc_spec()
    document["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE"}
    document["org.example.future"] = {"x": 1}
    spec = _spec.parse(document)
    assert spec.process is not None and spec.process.args == ("sh",)
    document["linux"]["intelRdt"] = {"closID": "x"}
    with pytest.raises(SpecError, match=r"linux\.intelRdt \(Intel RDT\) is not supported"):
        _spec.parse(document)
    document = runc_spec()
    document["ociVersion"] = "2.0.0"
    with pytest.raises(SpecError, match=r"ociVersion '2\.0\.0' is not supported"):
        _spec.parse(document)


def test_namespace_paths_and_time_namespace_are_refused(tmp_path: Path) -> None:
    document = runc_spec()
    document["linux"]["namespaces"][1] = {"type": "mount", "path": "/proc/1/ns/mnt"}
    with pytest.raises(SpecError, match=r"joining the mount namespace at /proc/1/ns/mnt"):
        _translate.namespaces(_spec.parse(document))
    document = runc_spec()
    document["linux"]["namespaces"].append({"type": "network", "path": "/proc/1/ns/net"})
    assert _translate.joined(_spec.parse(document)) == ((Namespace.NET, "/proc/1/ns/net"),)
    document["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(SpecError, match="with a new user namespace is not supported"):
        _translate.namespaces(_spec.parse(document))
    document = runc_spec()
    document["linux"]["namespaces"][-1] = {"type": "time"}
    with pytest.raises(SpecError, match="the time namespace is not supported"):
        _translate.namespaces(_spec.parse(document))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["nosuid", "noexec", "nodev", "ro"], (0x1 | 0x2 | 0x4 | 0x8, 0, "")),
        (["rbind", "rprivate", "rw"], (0x1000 | 0x4000, (1 << 18) | 0x4000, "")),
        (["nosuid", "mode=755", "size=65536k", "suid"], (0, 0, "mode=755,size=65536k")),
    ],
)
def test_mount_options_as_runc_parses_them(
    options: list[str], expected: tuple[int, int, str]
) -> None:
    assert _translate.parse_options(options, "m") == expected
    with pytest.raises(SpecError, match=r"option 'idmap' \(id-mapped mounts\)"):
        _translate.parse_options(["idmap"], "mounts[0]")
    # A runtime's own option (see copy_ups), never the file system's data.
    assert _translate.parse_options(["tmpcopyup", "size=1m"], "m") == (0, 0, "size=1m")


def test_resources_to_limits_and_refusals() -> None:
    resources = _spec.structure(
        {"memory": {"limit": 64 << 20, "swap": 128 << 20}, "cpu": {"quota": 50000,
         "period": 100000, "shares": 512}, "pids": {"limit": 32}},
        _spec.Resources, "resources",
    )  # fmt: skip
    limits = _translate.limits(resources)
    assert (limits.memory, limits.memory_swap, limits.cpus) == (64 << 20, 128 << 20, 0.5)
    assert (limits.cpu_shares, limits.pids_limit) == (512, 32)
    refused = resources.evolve(rdma={"mlx": {"hcaHandles": 1}})
    with pytest.raises(SpecError, match=r"linux\.resources\.rdma: not supported"):
        _translate.limits(refused)


def _device_spec(linux: dict[str, Any]) -> _spec.Spec:
    return _spec.structure({**runc_spec(), "linux": linux}, _spec.Spec, "config.json")


def test_device_rules_are_the_allow_rules_and_the_nodes_mknod() -> None:
    """linux.resources.devices as runc reads them (its defaults, boxd's list and mknod of
    any node, come on top), as far as an allowlist can say them."""
    rules = _translate.device_rules(
        _device_spec(
            {
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
                "resources": {
                    "devices": [
                        {"allow": True, "type": "c", "major": 1, "minor": 1, "access": "r"},
                        {"allow": False, "access": "rwm"},  # drops the one before
                        {"allow": False, "type": "b", "major": 8, "access": "rw"},  # moot
                        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                        {"allow": True, "type": "b", "major": 7, "access": "rwm"},
                    ]
                },
            }
        )
    )
    assert [str(rule) for rule in rules] == ["c *:* m", "b *:* m", "c 10:229 rw", "b 7:* rwm"]
    everything = [{"allow": True, "access": "rwm"}]  # podman --privileged
    spec = _device_spec({"resources": {"devices": everything}})
    assert [str(rule) for rule in _translate.device_rules(spec)][2:] == ["a *:* rwm"]
    narrowing = [*everything, {"allow": False, "type": "c", "major": 10, "access": "w"}]
    spec = _device_spec({"resources": {"devices": narrowing}})
    with pytest.raises(SpecError, match=r"devices\[1\]: a deny rule \(c 10:\* w\) after an"):
        _translate.device_rules(spec)
    spec = _device_spec({"resources": {"devices": [{"allow": True, "access": "rwx"}]}})
    with pytest.raises(SpecError, match=r"devices\[0\]: access 'rwx' is not"):
        _translate.device_rules(spec)


def test_sysctls_must_be_namespaced() -> None:
    document = runc_spec()
    document["linux"]["sysctl"] = {"kernel.shmmax": "1"}
    spec = _spec.parse(document)
    with pytest.raises(SpecError, match="shares the host's ipc namespace"):
        _translate.sysctls(spec, _translate.namespaces(spec))
    document["linux"]["sysctl"] = {"vm.swappiness": "1"}
    with pytest.raises(SpecError, match=r"vm\.swappiness: not a namespaced sysctl"):
        _translate.sysctls(_spec.parse(document), frozenset())


def test_a_cgroup_mount_binds_the_hosts_outside_a_cgroup_namespace(tmp_path: Path) -> None:
    """Without a cgroup namespace a ``cgroup`` mount is the host's cgroup2 mount bound and
    remounted with the spec's flags (a new mount would reset the hierarchy's options);
    in one (made or joined) it is a new cgroup2 mount."""
    sh = tmp_path / "rootfs" / "bin" / "sh"
    sh.parent.mkdir(parents=True)
    sh.write_text("")
    sh.chmod(0o755)
    document = runc_spec()
    options = ["nosuid", "noexec", "nodev", "relatime", "ro"]
    cgroup = {"destination": "/sys/fs/cgroup", "type": "cgroup", "options": options}
    document["mounts"].append(cgroup)
    flags = _translate.parse_options(options, "m")[0]

    def cgroup_mounts(document: dict[str, Any]) -> list[tuple[MountKind, str, str, int]]:
        plan = _translate.build(
            _spec.parse(document), str(tmp_path), start_fd=-1, keep_fds=0, no_pivot=False,
            sysctls={}, host_cgroup2="/sys/fs/cgroup/unified",
        )  # fmt: skip
        return [
            (op.kind, op.source, op.fstype, op.flags)
            for op in plan.mounts
            if op.target == "/sys/fs/cgroup" and op.kind is MountKind.MOUNT
        ]

    assert cgroup_mounts(document) == [
        (MountKind.MOUNT, "/sys/fs/cgroup/unified", "", _translate.MS_BIND),
        (MountKind.MOUNT, "", "", _translate.MS_REMOUNT | _translate.MS_BIND | flags),
    ]
    fresh = [(MountKind.MOUNT, "cgroup2", "cgroup2", flags)]
    document["linux"]["namespaces"].append({"type": "cgroup"})
    assert cgroup_mounts(document) == fresh
    document["linux"]["namespaces"][-1] = {"type": "cgroup", "path": "/proc/1/ns/cgroup"}
    assert cgroup_mounts(document) == fresh


# ---------------------------------------------------------------- the spawn without Trio


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_start_blocking_runs_and_reports_failures() -> None:
    """create's spawn (no event loop): the same steps as _native.start, blocking; the
    fake native runs the plan on the host."""
    before = _fds()
    fake = FakeNative()
    placed: list[int] = []
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    plan = SpawnPlan(argv=("sh", "-c", "echo $GREETING"), env=("GREETING=hi",), stdout=write_end)
    spawned = start_blocking(fake, plan, lambda s: placed.append(s.pid))
    os.close(write_end)
    assert placed == [spawned.pid] and fake.released == [spawned]
    assert os.waitid(os.P_PIDFD, spawned.pidfd, os.WEXITED).si_status == 0  # type: ignore[union-attr]
    os.close(spawned.pidfd)
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read() == b"hi\n"
    failing = FakeNative(failure=(Stage.EXEC, errno.ENOENT, 0))
    with pytest.raises(SpawnError, match="exec /bin/nope: No such file or directory"):
        start_blocking(failing, SpawnPlan(argv=("/bin/nope",)))
    assert _fds() == before  # the failed child was reaped, its fds closed


# ---------------------------------------------------------------- the command line


@attrs.define
class Bundle:
    path: Path
    config: dict[str, Any]

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config))

    def command(self, script: str) -> None:
        self.config["process"]["args"] = ["sh", "-c", script]
        self.config["process"]["terminal"] = False
        self.write()


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory, busybox_root: Path) -> Path:
    """An OCI image layout holding the busybox root as one layer (built with umoci)."""
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (apt-get install umoci)")
    return oci_peers.make_busybox_image(tmp_path_factory.mktemp("oci-image"), busybox_root)


@pytest.fixture
def bundle(busybox_image: Path, tmp_path: Path) -> Bundle:
    path = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{busybox_image}:busybox", str(path)],
        check=True,
        capture_output=True,
    )
    config = json.loads((path / "config.json").read_text())
    return Bundle(path, config)


@attrs.define
class Runtime:
    root: Path
    # Run as containerd and Podman run here (oci_peers.wrapped): cgroup v1 only.
    v1_only: bool = False

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: the container's processes inherit the runtime's stdio and may
        # outlive it (create, run -d), as under conmon.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            argv = [RUNTIME, "--root", str(self.root), *args]
            code = subprocess.run(
                oci_peers.wrapped(argv) if self.v1_only else argv,
                stdout=out,
                stderr=err,
                text=True,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode
            out.seek(0)
            err.seek(0)
            done = subprocess.CompletedProcess(args, code, out.read(), err.read())
        if check and done.returncode != 0:
            raise AssertionError(f"boxd-runtime {' '.join(args)}: {done.returncode} {done.stderr}")
        return done

    def state(self, cid: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self("state", cid).stdout)
        return state


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """boxd-runtime on a private --root; every container left is deleted at the end."""
    rt = Runtime(tmp_path / "state")
    yield rt
    for cid in rt("list", "--quiet", check=False).stdout.split():
        rt("delete", "--force", cid, check=False)
    assert not rt("list", "--quiet").stdout.strip()


def _wait_status(rt: Runtime, cid: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while rt.state(cid)["status"] != status:
        assert time.monotonic() < deadline, f"{cid} never became {status}"
        time.sleep(0.02)


@pytest.mark.root
def test_create_start_state_exec_pause_kill_delete(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.command("echo started > /tmp/started; exec sleep 1000")
    bundle.config["root"]["readonly"] = False
    bundle.write()
    pid_file = tmp_path / "init.pid"
    runtime("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), "c1")
    state = runtime.state("c1")
    pid = int(pid_file.read_text())
    assert state["status"] == "created" and state["pid"] == pid and state["id"] == "c1"
    assert state["bundle"] == str(bundle.path) and state["ociVersion"].startswith("1.")
    assert state["annotations"]["org.opencontainers.image.os"] == "linux"
    # Set up, waiting for start: not exec'd yet, nothing run.
    assert Path(f"/proc/{pid}/comm").read_text() == "boxd:[oci-init]\n"
    assert not (bundle.path / "rootfs" / "tmp" / "started").exists()
    runtime("start", "c1")
    assert runtime.state("c1")["status"] == "running"
    assert runtime("start", "c1", check=False).stderr.strip() == (
        "cannot start an already running container"
    )
    out = runtime("exec", "c1", "sh", "-c", "cat /tmp/started; hostname; echo $$").stdout
    assert out.split() == ["started", "umoci-default", out.split()[-1]]
    assert int(out.split()[-1]) > 1  # in the container's pid namespace, not pid 1
    assert runtime("exec", "c1", "sh", "-c", "exit 7", check=False).returncode == 7
    assert json.loads(runtime("ps", "--format", "json", "c1").stdout) == [pid]
    assert str(pid) in runtime("ps", "c1").stdout
    runtime("pause", "c1")
    assert runtime.state("c1")["status"] == "paused"
    assert runtime("exec", "c1", "true", check=False).stderr.strip() == (
        "cannot exec in a paused container: resume it first"
    )
    runtime("resume", "c1")
    assert runtime.state("c1")["status"] == "running"
    listed = json.loads(runtime("list", "--format", "json").stdout)
    assert [(c["id"], c["status"], c["pid"]) for c in listed] == [("c1", "running", pid)]
    refused = runtime("delete", "c1", check=False)
    assert refused.returncode == 1
    assert "cannot delete container c1 that is not stopped: running" in refused.stderr
    runtime("kill", "c1", "KILL")  # a pid namespace's init ignores signals it has no handler for
    _wait_status(runtime, "c1", "stopped")
    assert runtime.state("c1")["pid"] == 0
    assert runtime("kill", "c1", "9", check=False).stderr.strip() == "container not running"
    runtime("delete", "c1")
    gone = runtime("state", "c1", check=False)
    assert gone.returncode == 1 and 'container "c1" does not exist' in gone.stderr


@pytest.mark.root
def test_a_sigkill_ends_a_paused_container_as_under_runc(bundle: Bundle, tmp_path: Path) -> None:
    """``ctr task kill`` of a paused task: a SIGKILL thaws the container, as runc does, since
    a process frozen by the v1 freezer dies only once thawed (the runtime as containerd runs
    it here, with cgroup v1 only); other signals leave it paused."""
    runtime = Runtime(tmp_path / "state", v1_only=True)
    bundle.command("exec sleep 1000")
    try:
        runtime("run", "--detach", "--bundle", str(bundle.path), "k1")
        runtime("pause", "k1")
        runtime("kill", "k1", "TERM")
        assert runtime.state("k1")["status"] == "paused"
        runtime("kill", "k1", "KILL")
        deadline = time.monotonic() + 10
        while runtime.state("k1")["status"] != "stopped":
            assert time.monotonic() < deadline, runtime.state("k1")
            time.sleep(0.02)
    finally:
        runtime("delete", "--force", "k1", check=False)
    assert runtime("list", "--quiet").stdout == ""


SEES = textwrap.dedent(
    """\
    grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
    echo hostname=$(hostname) pid=$$ nofile=$(ulimit -n)/$(ulimit -Hn)
    id; cat /proc/self/uid_map /proc/self/gid_map
    touch /rootfs-is-writable 2>/dev/null || echo root read-only
    cat /proc/kcore 2>&1 | wc -c; echo x 2>/dev/null > /proc/sys/kernel/domainname || echo sys ro
    awk '$2 !~ "^/sys/fs/cgroup" && $2 !~ "^/dev/(null|zero|full|random|urandom|tty)$" \
        {print $2, ($2 ~ "^/proc/" ? "" : $3)}' /proc/self/mounts | sort
    """
)


@pytest.mark.root
def test_the_process_sees_what_it_sees_under_runc(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The same bundle under runc and under boxd-runtime: capabilities, no_new_privs,
    hostname, pid 1, rlimits, ids and maps, read-only root, masked and read-only paths,
    the mount points (except those below /sys/fs/cgroup: runc shows every hierarchy it
    placed the container in, boxd those it made a cgroup in, see
    test_a_cgroup_mount_on_a_v1_host_is_runcs_layout; the device nodes, which boxd binds;
    and the file system type of the masks of /proc files: the host's /dev/null for boxd,
    the container's for runc)."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    bundle.command(SEES)
    bundle.config["root"]["readonly"] = True
    bundle.config["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [10, 20]}
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
    bundle.write()
    ours = runtime("run", "--bundle", str(bundle.path), "sees")
    theirs = _runc(bundle, tmp_path, "sees")
    assert ours.stdout == theirs.stdout
    assert "hostname=umoci-default pid=1 nofile=256/512" in ours.stdout
    assert "uid=0(root) gid=0(root) groups=10,20" in ours.stdout
    assert "root read-only" in ours.stdout and "sys ro" in ours.stdout


def _runc(bundle: Bundle, tmp_path: Path, cid: str) -> subprocess.CompletedProcess[str]:
    """``runc run`` of the same bundle, which must exit 0: the reference to compare with."""
    theirs = subprocess.run(
        ["runc", "--root", str(tmp_path / "runc"), "run", "--bundle", str(bundle.path), cid],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert theirs.returncode == 0, theirs.stderr
    return theirs


SHIM = textwrap.dedent(
    """\
    import ctypes, os, subprocess, sys
    # As conmon and containerd's shim do: become the subreaper of what create leaves.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    runtime, root, bundle = sys.argv[1:4]
    pid_file = os.path.join(bundle, "pid")
    base = [runtime, "--root", root]
    subprocess.run([*base, "create", "--bundle", bundle, "--pid-file", pid_file, "x"], check=True)
    pid = int(open(pid_file).read())
    subprocess.run([*base, "start", "x"], check=True)
    _, status = os.waitpid(pid, 0)
    subprocess.run([*base, "delete", "x"], check=True)
    print(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.root
def test_the_umask_is_runcs_whatever_the_callers(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """Without process.user.umask the process gets runc's 0022, not its caller's (here
    0077: a container's files were private to its root); with one, that one, for an
    exec too."""
    bundle.command("umask")
    caller = os.umask(0o077)
    try:
        ours = runtime("run", "--bundle", str(bundle.path), "masked").stdout
        if shutil.which("runc") is not None:
            assert ours == _runc(bundle, tmp_path, "masked").stdout
        bundle.config["process"]["user"]["umask"] = 0o027
        bundle.write()
        given = runtime("run", "--bundle", str(bundle.path), "given").stdout
        bundle.command("exec sleep 1000")
        runtime("run", "-d", "--bundle", str(bundle.path), "execd")
        execd = runtime("exec", "execd", "sh", "-c", "umask").stdout  # the spec's, as runc's
        runtime("kill", "execd", "KILL")
    finally:
        os.umask(caller)
    assert (ours, given, execd) == ("0022\n", "0027\n", "0027\n")


@pytest.mark.root
def test_a_non_root_process_reopens_its_stdio_pipes_as_under_runc(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The pipes conmon or a containerd shim give (root's, mode 0600) become the
    process's user's, as runc's fixStdioPermissions makes them: a ``--user 1000``
    container may write /dev/stdout (nginx's logs), in run and in exec.  A file the
    caller gives stays its own."""
    bundle.command('echo out > /dev/stdout; stat -Lc "%u %a" /dev/stdout; exec sleep 1000')
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.write()
    (bundle.path / "rootfs").chmod(0o755)  # umoci's is 0700
    base = [RUNTIME, "--root", str(runtime.root)]
    runtime("create", "--bundle", str(bundle.path), "c1")  # files: the init's
    shown = "/bin/sh", "-c", 'echo in-exec > /dev/stdout; stat -Lc "%u %a" /dev/stdout'
    runtime("start", "c1")
    execd = subprocess.run([*base, "exec", "c1", *shown], capture_output=True, text=True)
    assert (execd.stdout, execd.stderr) == ("in-exec\n1000 600\n", "")
    runtime("kill", "c1", "KILL")
    _wait_status(runtime, "c1", "stopped")
    runtime("delete", "c1")
    bundle.command('echo out > /dev/stdout; stat -Lc "%u %a" /dev/stdout')
    argv = ["run", "--bundle", str(bundle.path), "c2"]
    ours = subprocess.run([*base, *argv], capture_output=True, text=True, timeout=60)
    assert (ours.stdout, ours.stderr) == ("out\n1000 600\n", "")
    if shutil.which("runc") is not None:
        assert _runc(bundle, tmp_path, "c2").stdout == ours.stdout
    with (tmp_path / "out").open("w+") as out:
        argv = ["run", "--bundle", str(bundle.path), "c3"]
        subprocess.run([*base, *argv], stdout=out, stderr=subprocess.DEVNULL, timeout=60)
    assert os.stat(tmp_path / "out").st_uid == 0


@pytest.mark.root
def test_the_bundle_path_is_cleaned_as_runc_cleans_it(runtime: Runtime, bundle: Bundle) -> None:
    """``--bundle`` is made absolute and cleaned (``..``, ``.``, a trailing ``/``), as runc's
    filepath.Abs does: the state and hooks name the bundle directory itself."""
    bundle.command("true")
    (bundle.path.parent / "other").mkdir()
    spelled = f"{bundle.path.parent}/other/../{bundle.path.name}/./"
    runtime("create", "--bundle", spelled, "c1")
    assert runtime.state("c1")["bundle"] == str(bundle.path)
    runtime("delete", "--force", "c1")


@pytest.mark.root
def test_the_caller_of_create_reaps_the_init(runtime: Runtime, bundle: Bundle) -> None:
    """create leaves the init to its caller (here a subreaper, as conmon is): the exit
    status after start comes from waiting for it, with no runtime process left around."""
    bundle.command("exit 42")
    done = subprocess.run(
        [sys.executable, "-c", SHIM, RUNTIME, str(runtime.root), str(bundle.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "42"


@pytest.mark.root
def test_run_passes_the_exit_code_and_failures(runtime: Runtime, bundle: Bundle) -> None:
    bundle.command("echo out; echo err >&2; exit 3")
    done = runtime("run", "--bundle", str(bundle.path), "r1", check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert runtime("run", "--keep", "--bundle", str(bundle.path), "r1", check=False).returncode == 3
    assert runtime.state("r1")["status"] == "stopped"
    runtime("delete", "r1")
    bundle.config["process"]["args"] = ["/bin/nope"]
    bundle.write()
    failed = runtime("create", "--bundle", str(bundle.path), "r2", check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "exec /bin/nope: No such file or directory"
    # Found at create, gone at start: start reports what the exec says.
    bundle.config["process"]["args"] = ["/bin/true"]
    bundle.write()
    runtime("create", "--bundle", str(bundle.path), "r3")
    (bundle.path / "rootfs" / "bin" / "true").unlink()
    failed = runtime("start", "r3", check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "exec /bin/true: No such file or directory"
    runtime("delete", "r3")


@pytest.mark.root
def test_a_missing_working_directory_is_made_as_under_runc(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """``process.cwd`` the image lacks (a Kubernetes ``workingDir``, ``ctr run --cwd``):
    runc and crun make it, root's and 0755 whatever the process's user, through the image's
    symlinks, where the container sees it."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    (bundle.path / "rootfs").chmod(0o755)  # for user 1000 (a temporary directory's 0700)
    (bundle.path / "rootfs" / "link").symlink_to("/tmp")
    bundle.command("pwd; stat -c '%u %a' . /tmp/sub")
    bundle.config["process"]["cwd"] = "/link/sub/dir"
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.write()
    ours = runtime("run", "--bundle", str(bundle.path), "cwd1", check=False)
    assert (ours.returncode, ours.stdout) == (0, "/tmp/sub/dir\n0 755\n0 755\n"), ours.stderr
    shutil.rmtree(bundle.path / "rootfs" / "tmp" / "sub")
    assert _runc(bundle, tmp_path, "cwd1").stdout == ours.stdout


@pytest.mark.root
def test_a_program_bound_as_a_file_runs_as_under_runc(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """The process's program may be a file bound into the container, below a directory the
    image lacks, through a symlink on the host: Podman's ``--init`` binds
    ``/usr/libexec/podman/catatonit`` (a link) on ``/run/podman-init`` and runs that.
    create's early check must not call it missing."""
    program = tmp_path / "programs" / "init"
    program.parent.mkdir()
    program.write_text('#!/bin/sh\necho "bound $*"\nexit 3\n')
    program.chmod(0o755)
    link = tmp_path / "init-link"
    link.symlink_to(program)
    assert not (bundle.path / "rootfs" / "run").exists()
    bundle.config["process"]["args"] = ["/run/boxd-init", "a", "b"]
    bundle.config["process"]["terminal"] = False
    bundle.config["mounts"].append(
        {"destination": "/run/boxd-init", "type": "bind", "source": str(link),
         "options": ["bind", "ro"]}
    )  # fmt: skip
    bundle.write()
    done = runtime("run", "--bundle", str(bundle.path), "bound", check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "bound a b\n", "")


@pytest.mark.root
def test_the_container_runs_on_every_cpu_whatever_the_runtimes_affinity(
    runtime: Runtime, bundle: Bundle
) -> None:
    """boxd-runtime pinned to one CPU (as a systemd unit's CPUAffinity= pins conmon or a
    shim): the container's process sets up off that CPU and then runs on every CPU of its
    cpuset, as under runc and crun, at the runtime's nice value and policy."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("one CPU: there is no other to set up on")
    bundle.command("cat /proc/self/status /proc/self/stat")
    pinned = ["taskset", "-c", str(min(cpus)), RUNTIME, "--root", str(runtime.root)]
    done = subprocess.run(
        [*pinned, "run", "--bundle", str(bundle.path), "a1"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert parse_cpu_list(status["Cpus_allowed_list"].strip()) == cpus
    stat = done.stdout.splitlines()[-1].rsplit(")", 1)[1].split()
    nice, policy = int(stat[16]), int(stat[38])  # fields 19 and 41 of proc(5)
    assert (nice, policy) == (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))


def test_checkpoint_and_restore_are_refused_by_name() -> None:
    """``ctr task checkpoint`` runs the runtime's ``checkpoint``; Podman first asks
    ``checkpoint --help``, whose failure makes it refuse before it tries."""
    for argv in (["checkpoint", "--help"], ["restore", "--image-path", "/x", "c1"]):
        done = subprocess.run([RUNTIME, *argv], capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout) == (1, ""), done
        message = "checkpoint/restore (CRIU) is not supported by boxd-runtime"
        assert done.stderr == f"boxd-runtime {argv[0]}: {message}\n"


@pytest.mark.root
def test_bad_input_gets_clear_errors(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.command("true")
    runtime("create", "--bundle", str(bundle.path), "e1")
    again = runtime("create", "--bundle", str(bundle.path), "e1", check=False)
    assert again.returncode == 1 and "container with id exists: e1" in again.stderr
    log = tmp_path / "log.json"
    systemd = runtime(
        "--log", str(log), "--log-format", "json", "--systemd-cgroup",
        "create", "--bundle", str(bundle.path), "e2", check=False,
    )  # fmt: skip
    assert systemd.returncode == 1 and "--systemd-cgroup" in systemd.stderr
    assert "(podman --cgroup-manager cgroupfs; containerd: SystemdCgroup = false)" in (
        systemd.stderr
    )
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "--systemd-cgroup" in entry["msg"]
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]
    bundle.write()
    bad = runtime("create", "--bundle", str(bundle.path), "e3", check=False)
    assert "process.rlimits[0]: unknown type 'RLIMIT_BOGUS'" in bad.stderr
    assert runtime("kill", "e1", "SIGNOPE", check=False).stderr.strip() == (
        "invalid signal: SIGNOPE"
    )
    assert runtime("delete", "--force", "never-made").returncode == 0
    assert "e3" not in runtime("list", "--quiet").stdout


@pytest.mark.root
def test_a_device_node_is_made_and_opened_as_its_rules_say(
    runtime: Runtime, bundle: Bundle
) -> None:
    """podman --device: the node in linux.devices, its allow rule in resources.devices."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")
    node = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}
    deny = {"allow": False, "access": "rwm"}
    allow = {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}
    bundle.config["linux"]["devices"] = [node]
    bundle.config["linux"].setdefault("resources", {})["devices"] = [deny, allow]
    bundle.command("ls -l /dev/fuse; (: > /dev/fuse) && echo opened")
    done = runtime("run", "--bundle", str(bundle.path), "d1", check=False)
    assert (done.returncode, done.stdout.split()[0], done.stdout.split()[-1]) == (
        0, "crw-rw-rw-", "opened",
    )  # fmt: skip
    bundle.config["linux"]["resources"]["devices"] = [deny]
    bundle.write()
    done = runtime("run", "--bundle", str(bundle.path), "d2", check=False)
    assert "opened" not in done.stdout and "Operation not permitted" in done.stderr
    # Any node may be made, as under runc and crun (tar and dpkg make some), not opened.
    for kind in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][kind].append("CAP_MKNOD")
    bundle.command(
        "mknod /tmp/ttyS0 c 4 64 && mknod /tmp/loop0 b 7 0 && echo made\n"
        "(: < /tmp/loop0) 2>/dev/null || echo not opened"
    )
    done = runtime("run", "--bundle", str(bundle.path), "d3", check=False)
    assert (done.returncode, done.stdout) == (0, "made\nnot opened\n"), done.stderr


@pytest.mark.root
def test_devices_listed_with_the_defaults_are_made_once_as_runc_makes_them(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """Podman's --privileged lists every device of the host, /dev/null and /dev/ptmx
    among them: the spec's node stands for the default, and /dev/ptmx stays the link to
    the container's own devpts ("mknod /dev/full: File exists" before)."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    nodes = [("/dev/null", 1, 3), ("/dev/full", 1, 7), ("/dev/ptmx", 5, 2), ("/dev/tty", 5, 0)]
    bundle.config["linux"]["devices"] = [
        {"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666}
        for path, major, minor in nodes
    ]
    allow_all = {"allow": True, "access": "rwm"}
    bundle.config["linux"].setdefault("resources", {})["devices"] = [allow_all]
    listing = "for f in /dev/*; do stat -c '%n %F %a %t:%T' $f; done; readlink /dev/ptmx"
    bundle.command(f"{listing}; echo x > /dev/null && echo written")
    ours = runtime("run", "--bundle", str(bundle.path), "p1")
    theirs = _runc(bundle, tmp_path, "p1")
    assert ours.stdout == theirs.stdout
    assert "/dev/null character special file 666 1:3\n" in ours.stdout
    assert ours.stdout.endswith("/dev/zero character special file 666 1:5\npts/ptmx\nwritten\n")


@pytest.mark.root
def test_seccomp_limits_and_sysctl(runtime: Runtime, bundle: Bundle) -> None:
    """The spec's seccomp profile (compiled by boxd's compiler), cgroup limits placed
    before the exec, a namespaced sysctl, a user namespace with its maps."""
    bundle.command(
        "mkdir /tmp/d; echo mkdir=$?; cat /proc/sys/kernel/shmmni; cat /proc/self/uid_map;"
        "cat /proc/self/cgroup | grep -c memory:/$"
    )
    bundle.config["root"]["readonly"] = False
    linux = bundle.config["linux"]
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}
        ],
    }
    linux["resources"]["memory"] = {"limit": 64 << 20}
    linux["resources"]["pids"] = {"limit": 20}
    linux["sysctl"] = {"kernel.shmmni": "1000"}
    linux["namespaces"].append({"type": "cgroup"})
    bundle.write()
    done = runtime("run", "--bundle", str(bundle.path), "s1")
    lines = done.stdout.splitlines()
    assert lines[0] == "mkdir=1" and "Read-only file system" in done.stderr
    assert lines[1] == "1000"
    assert lines[-1] == "1"  # its own memory cgroup is the root of its cgroup namespace


def _cgroup2_mount(mountinfo: str, where: str) -> tuple[str, str, str, str]:
    """(device, root, mount options, super options) of the cgroup2 mount at ``where``."""
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, (fstype, _source, super_options) = left.split(), right.split()
        if fields[4] == where and fstype == "cgroup2":
            return fields[2], fields[3], fields[5], super_options
    raise AssertionError(f"no cgroup2 mount at {where}: {mountinfo}")


@pytest.mark.root
def test_a_cgroup_mount_without_a_cgroup_namespace_binds_the_hosts(
    runtime: Runtime, bundle: Bundle
) -> None:
    """A ``cgroup`` mount in a container that shares the host's cgroup namespace is the
    host's cgroup2 mount bound (read-only as the spec asks), where the container finds its
    cgroup at its full path: a new cgroup2 mount there would set the hierarchy's options
    (nsdelegate, memory_recursiveprot), the host's too.  In a cgroup namespace of its own
    it is a new mount whose root is the container's cgroup."""
    host = Path("/proc/self/mountinfo").read_text()
    v2 = next((line.split()[4] for line in host.splitlines() if " - cgroup2 " in line), None)
    if v2 is None:
        pytest.skip("no cgroup2 hierarchy is mounted here")
    if any(host_hierarchies().values()):
        pytest.skip("a host with v1 hierarchies gets their layout (the test below)")
    device, root, _, options = _cgroup2_mount(host, v2)
    bundle.command(
        'cat /proc/self/mountinfo; p=$(sed -n "s/^0:://p" /proc/self/cgroup); echo "cgroup=$p"\n'
        'grep -qx 1 "/sys/fs/cgroup${p%/}/cgroup.procs" && echo sees its cgroup'
    )
    mounts = [m for m in bundle.config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    options_ro = ["nosuid", "noexec", "nodev", "relatime", "ro"]
    mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "options": options_ro})
    bundle.config["mounts"] = mounts
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    bundle.write()
    shared = runtime("run", "--bundle", str(bundle.path), "g1").stdout
    device_seen, root_seen, mount_options, _ = _cgroup2_mount(shared, "/sys/fs/cgroup")
    assert (device_seen, root_seen) == (device, root) and "ro" in mount_options.split(",")
    assert "cgroup=/\n" not in shared and shared.endswith("sees its cgroup\n")
    assert _cgroup2_mount(Path("/proc/self/mountinfo").read_text(), v2)[3] == options
    linux["namespaces"].append({"type": "cgroup"})
    bundle.write()
    own = runtime("run", "--bundle", str(bundle.path), "g2").stdout
    assert _cgroup2_mount(own, "/sys/fs/cgroup")[0] == device
    assert own.endswith("cgroup=/\nsees its cgroup\n")


@pytest.mark.root
def test_a_cgroup_mount_on_a_v1_host_is_runcs_layout(runtime: Runtime, bundle: Bundle) -> None:
    """On a host with v1 hierarchies a ``cgroup`` mount is what runc gives there (and boxd
    gives its containers, tests/test_cgroupfs.py): a directory per hierarchy showing the
    container's own cgroup, read-only as the spec asks.  Its memory limit is where the
    JVM looks: in a cgroup namespace the mount's root and its /proc/self/cgroup path are
    both "/", without one both are the cgroup's full path.  Without one a hybrid host's
    unified hierarchy is not shown, as runc shows none: a systemd inside (Podman's
    --systemd) took it for its own and could not find its full path there."""
    hierarchies = host_hierarchies()
    if not any(hierarchies.values()):
        pytest.skip("no v1 cgroup hierarchy here")
    bundle.command(
        "ls /sys/fs/cgroup | tr '\\n' ' '; echo\n"
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n"
        "grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo | cut -d' ' -f4\n"
        "sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup\n"
        "echo 1 2>/dev/null > /sys/fs/cgroup/memory/memory.limit_in_bytes || echo read-only"
    )
    mounts = [m for m in bundle.config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    options_ro = ["nosuid", "noexec", "nodev", "relatime", "ro"]
    mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "options": options_ro})
    bundle.config["mounts"] = mounts
    linux = bundle.config["linux"]
    linux["resources"]["memory"] = {"limit": 64 << 20}
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    links = {c for name, cs in hierarchies.items() if len(cs) > 1 for c in cs}
    for cid, namespace in (("v1", False), ("v1ns", True)):
        if namespace:
            linux["namespaces"].append({"type": "cgroup"})
        bundle.write()
        names, limit, root, path, written = runtime(
            "run", "--bundle", str(bundle.path), cid
        ).stdout.splitlines()
        shown = set(hierarchies) - (set() if namespace else {"unified"})
        assert set(names.split()) == shown | links
        assert limit == str(64 << 20) and written == "read-only"
        assert root == path and (root == "/") == namespace, (root, path)


@pytest.mark.root
def test_processes_moved_below_the_containers_cgroup_are_still_its_own(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A writable ``cgroup`` mount (podman --privileged's): a process the container moves
    into cgroups it made below its own (in every hierarchy) is in ``ps``, and ``kill
    --all`` reaches it."""
    hierarchies = host_hierarchies()
    if "unified" not in hierarchies or not any(hierarchies.values()):
        pytest.skip("this test's paths are a hybrid host's (/sys/fs/cgroup/unified)")
    bundle.command(
        "sleep 1000 & for d in /sys/fs/cgroup/*/; do mkdir -p ${d}inner; "
        "if [ -f ${d}cpuset.cpus ]; then cat ${d}cpuset.cpus > ${d}inner/cpuset.cpus; "
        "cat ${d}cpuset.mems > ${d}inner/cpuset.mems; fi; "
        "echo $! > ${d}inner/cgroup.procs; done; exec sleep 1000"
    )
    mounts = [m for m in bundle.config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    options_rw = ["nosuid", "noexec", "nodev", "relatime", "rw"]
    mounts.append({"destination": "/sys/fs/cgroup", "type": "cgroup", "options": options_rw})
    bundle.config["mounts"] = mounts
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    linux["namespaces"].append({"type": "cgroup"})
    bundle.write()
    pid_file = tmp_path / "init.pid"
    runtime("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), "n1")
    runtime("start", "n1")
    own = Path(f"/proc/{pid_file.read_text().strip()}/cgroup").read_text()
    (path,) = [line[3:] for line in own.splitlines() if line.startswith("0::")]
    inner = Path("/sys/fs/cgroup/unified", path.lstrip("/"), "inner", "cgroup.procs")
    deadline = time.monotonic() + 30
    while not (inner.exists() and inner.read_text().split()):
        assert time.monotonic() < deadline, "the container never moved its process"
        time.sleep(0.02)
    (moved,) = inner.read_text().split()
    assert int(moved) in json.loads(runtime("ps", "--format", "json", "n1").stdout)
    runtime("kill", "--all", "n1", "KILL")
    while Path(f"/proc/{moved}").exists():
        assert time.monotonic() < deadline, "kill --all missed the moved process"
        time.sleep(0.02)
    runtime("delete", "--force", "n1")
    assert not inner.parent.exists()


@pytest.mark.root
def test_a_compiled_seccomp_program_is_kept_under_the_root(
    runtime: Runtime, bundle: Bundle
) -> None:
    """create keeps the program it compiled in <root>/.seccomp and uses it for the same
    profile (and capabilities, and compiler) only: another profile compiles again, and an
    entry whose stored key is not the profile's is never used."""
    bundle.command("mkdir /tmp/d")
    bundle.config["root"]["readonly"] = False
    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}
    bundle.write()
    cache = runtime.root / ".seccomp"

    def run(cid: str) -> str:
        done = runtime("run", "--bundle", str(bundle.path), cid, check=False)
        assert done.returncode == 1
        return done.stderr

    assert "Read-only file system" in run("c1")
    (entry,) = cache.iterdir()
    written = entry.stat().st_ino
    assert "Read-only file system" in run("c2")  # from the cache: not written again
    assert entry.stat().st_ino == written
    entry.write_bytes(b'["another key"]\0' + bytes(8))
    assert "Read-only file system" in run("c3")  # not the stored program: compiled again
    assert entry.read_bytes() != b'["another key"]\0' + bytes(8)
    rule["errnoRet"] = errno.EPERM
    bundle.write()
    assert "Operation not permitted" in run("c4")
    assert len(list(cache.iterdir())) == 2
    assert runtime("list", "--quiet").stdout.split() == []


@pytest.mark.root
def test_sysctl_without_a_writable_proc(runtime: Runtime, bundle: Bundle) -> None:
    """The init sets sysctls itself on the /proc the spec mounts; with a read-only /proc a
    process that joins its namespaces does."""
    bundle.command("cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ping_group_range")
    bundle.config["linux"]["sysctl"] = {"kernel.shmmni": "1000", "net.ipv4.ping_group_range": "0 0"}
    proc = next(m for m in bundle.config["mounts"] if m["destination"] == "/proc")
    proc["options"] = [*proc.get("options", []), "ro"]
    bundle.write()
    done = runtime("run", "--bundle", str(bundle.path), "s2")
    assert done.stdout.split() == ["1000", "0", "0"]


# What a tmpcopyup tmpfs holds, one line per entry: type, mode, owner, size, link target.
LIST_COPIED = (
    "cd /data && find . | sort | while read -r p; do "
    "echo $p $(stat -c '%F %a %u:%g %s' $p) $(readlink $p); done; "
    "cat dir/file; cat bound; stat -c %a /data /fresh"
)


@pytest.mark.root
def test_tmpcopyup_fills_the_tmpfs_with_the_images_files_as_runc_does(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """Podman adds ``tmpcopyup`` to each ``--tmpfs`` and ``--read-only`` tmpfs.  Owners,
    modes (set-id bits too) and links are kept; what a later mount covers is that mount's
    (a host file bound below, never written); the tmpfs takes the directory's mode."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    data = bundle.path / "rootfs" / "data"
    (data / "dir").mkdir(parents=True)
    data.chmod(0o750)
    (data / "dir" / "file").write_text("from the image\n")
    os.chown(data / "dir" / "file", 1000, 1001)
    (data / "dir" / "file").chmod(0o4755)
    (data / "link").symlink_to("dir/file")
    (data / "bound").write_text("the image's, covered\n")
    host_file = tmp_path / "host-file"
    host_file.write_text("the host's\n")
    # A mount point reached through a link: the tmpfs is where the link leads.
    (bundle.path / "rootfs" / "linked").mkdir()
    (bundle.path / "rootfs" / "linked" / "file").write_text("through a link\n")
    (bundle.path / "rootfs" / "via").symlink_to("linked")
    bundle.command(LIST_COPIED + "; cat /via/file; grep -c ' /linked ' /proc/self/mountinfo")
    bundle.config["root"]["readonly"] = True
    tmpfs = {"destination": "/data", "type": "tmpfs", "source": "tmpfs"}
    tmpfs["options"] = ["rw", "nosuid", "nodev", "tmpcopyup"]  # type: ignore[assignment]
    bound = {"destination": "/data/bound", "type": "bind", "source": str(host_file)}
    bound["options"] = ["bind", "ro"]  # type: ignore[assignment]
    fresh, via = {**tmpfs, "destination": "/fresh"}, {**tmpfs, "destination": "/via"}
    bundle.config["mounts"] += [tmpfs, bound, fresh, via]
    bundle.write()
    ours = runtime("run", "--bundle", str(bundle.path), "copied")
    (bundle.path / "rootfs" / "fresh").rmdir()  # the mount point made for it: runc's to make
    theirs = _runc(bundle, tmp_path, "cp")
    assert ours.stdout == theirs.stdout
    assert "./dir/file regular file 4755 1000:1001 15" in ours.stdout
    assert "./link symbolic link 777 0:0 8 dir/file" in ours.stdout
    # /fresh is not in the image: the mount point made for it is not what it copies.
    assert ours.stdout.endswith("from the image\nthe host's\n750\n1777\nthrough a link\n1\n")
    assert host_file.read_text() == "the host's\n"
    # Where the mount cannot be filled from the image, refused by name.
    bundle.config["mounts"][-1] = {**tmpfs, "destination": "/data/sub"}
    bundle.config["mounts"][-4] = {**tmpfs, "options": ["rw"]}
    bundle.write()
    refused = runtime("run", "--bundle", str(bundle.path), "below", check=False)
    assert refused.returncode == 1
    assert "(/data/sub): option 'tmpcopyup' below the mount at /data" in refused.stderr


@pytest.mark.root
def test_tmpcopyup_below_a_tmpcopyup_tmpfs_holds_the_images_files_as_runc_does(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """Podman's ``--systemd`` mounts /run and /run/lock, each a tmpfs with ``tmpcopyup``:
    below a tmpfs filled from the image, the image's files are what runc copies (they were
    refused, and Podman could not start a systemd container).  The lower tmpfs takes the
    image directory's mode (crun's is 1777 too; runc's 1755, its copy's umask)."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    run = bundle.path / "rootfs" / "run"
    (run / "lock" / "sub").mkdir(parents=True, exist_ok=True)
    (run / "lock").chmod(0o1777)
    (run / "lock" / "sub" / "kept").write_text("below\n")
    (run / "other").write_text("above\n")
    bundle.command(
        "cd /run && find . | sort | while read -r p; do echo $p $(stat -c '%F %a' $p); done; "
        "cat other lock/sub/kept; grep -c ' /run' /proc/self/mountinfo"
    )
    tmpfs = {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}
    tmpfs["options"] = ["rw", "nosuid", "nodev", "tmpcopyup"]  # type: ignore[assignment]
    bundle.config["mounts"] += [tmpfs, {**tmpfs, "destination": "/run/lock"}]
    bundle.write()
    ours = runtime("run", "--bundle", str(bundle.path), "nested")
    theirs = _runc(bundle, tmp_path, "nested-runc").stdout
    assert ours.stdout == theirs.replace("./lock directory 1755", "./lock directory 1777")
    assert "./lock directory 1777\n./lock/sub directory 755\n./lock/sub/kept regular" in ours.stdout
    assert ours.stdout.endswith("above\nbelow\n2\n")


@pytest.mark.root
def test_a_user_namespace_gets_its_tmpcopyup_and_binds_its_root_cannot_reach(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A tmpfs mounted in the container's user namespace takes no file of the host's
    root: the copy is made as the container's root, owners as the container sees them
    (the root filesystem shifted by 100000, as Podman's --uidmap lays it out).  A bind
    source below a directory of mode 0700 (``podman -v /root/x:/x --uidmap ...``) is bound
    all the same: the runtime makes the bind, as runc does."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    # Where the container's root (the host's uid 100000) may reach it: pytest's are 0700.
    reachable = Path(tempfile.mkdtemp(prefix="boxd-userns-", dir="/tmp"))
    try:
        reachable.chmod(0o711)
        shutil.copytree(bundle.path, reachable / "bundle", symlinks=True)
        (reachable / "bundle").chmod(0o711)
        _tmpcopyup_in_a_user_namespace(
            runtime, Bundle(reachable / "bundle", bundle.config), tmp_path
        )
    finally:
        shutil.rmtree(reachable)


def _tmpcopyup_in_a_user_namespace(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    data = bundle.path / "rootfs" / "data"
    (data / "dir").mkdir(parents=True)
    (data / "dir" / "file").write_text("from the image\n")
    os.chown(data / "dir" / "file", 1000, 1001)
    for where, dirs, files in os.walk(bundle.path / "rootfs"):
        for name in [".", *dirs, *files]:
            path = os.path.join(where, name)
            st = os.lstat(path)
            os.lchown(path, st.st_uid + 100000, st.st_gid + 100000)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(path, stat.S_IMODE(st.st_mode))
    private = tmp_path / "private"  # below pytest's directories, all 0700
    private.mkdir()
    (private / "file").write_text("bound from a private directory\n")
    bundle.command(LIST_COPIED.replace("cat bound; ", "").replace(" /fresh", "; cat /p/file"))
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["uidMappings"] = linux["gidMappings"] = maps
    tmpfs = {"destination": "/data", "type": "tmpfs", "source": "tmpfs"}
    tmpfs["options"] = ["rw", "nosuid", "nodev", "tmpcopyup"]  # type: ignore[assignment]
    bind = {"destination": "/p", "type": "bind", "source": str(private)}
    bind["options"] = ["rbind", "ro"]  # type: ignore[assignment]
    bundle.config["mounts"] += [tmpfs, bind]
    bundle.write()
    ours = runtime("run", "--bundle", str(bundle.path), "userns")
    theirs = _runc(bundle, tmp_path, "u")
    assert ours.stdout == theirs.stdout
    assert "./dir/file regular file 644 1000:1001 15" in ours.stdout
    assert ours.stdout.endswith("bound from a private directory\n")


@pytest.mark.root
def test_update_changes_the_limits(runtime: Runtime, bundle: Bundle) -> None:
    bundle.command("exec sleep 1000")
    bundle.config["linux"]["resources"]["pids"] = {"limit": 20}
    bundle.write()
    runtime("run", "--detach", "--bundle", str(bundle.path), "u1")
    pid = runtime.state("u1")["pid"]
    pids_dir = _cgroup_dir(pid, "pids")
    assert (pids_dir / "pids.max").read_text().strip() == "20"
    runtime("update", "--resources", "-", "u1", input=json.dumps({"pids": {"limit": 30}}))
    assert (pids_dir / "pids.max").read_text().strip() == "30"
    bad = runtime("update", "--resources", "-", "u1", input='{"pids": {"limit": "x"}}', check=False)
    assert bad.returncode == 1 and "expected int" in bad.stderr
    # A cpuset limit (its cgroup there made at create): delete removes it too.
    runtime("update", "--resources", "-", "u1", input=json.dumps({"cpu": {"cpus": "0"}}))
    cpuset_dir = _cgroup_dir(pid, "cpuset")
    assert (cpuset_dir / "cpuset.cpus").read_text().strip() == "0"
    runtime("delete", "--force", "u1")
    assert not pids_dir.exists() and not cpuset_dir.exists()
    assert not cpuset_dir.parent.exists()  # the runtime's own group there, made by update


@pytest.mark.root
def test_no_pids_limit_in_the_spec_is_none(runtime: Runtime, bundle: Bundle) -> None:
    """containerd (``ctr run``, Kubernetes without a pids limit) sets no
    ``linux.resources.pids``: the container gets no limit, as under runc, not boxd's own
    default; an update that gives none (or 0, runc's "unchanged") leaves it."""
    bundle.command("exec sleep 1000")
    assert "pids" not in bundle.config["linux"]["resources"]
    runtime("run", "--detach", "--bundle", str(bundle.path), "p1")
    pids_max = _cgroup_dir(runtime.state("p1")["pid"], "pids") / "pids.max"
    assert pids_max.read_text().strip() == "max"
    runtime("update", "--resources", "-", "p1", input=json.dumps({"pids": {"limit": 40}}))
    runtime("update", "--resources", "-", "p1", input=json.dumps({"pids": {"limit": 0}}))
    assert pids_max.read_text().strip() == "40"
    runtime("update", "--resources", "-", "p1", input=json.dumps({"pids": {"limit": -1}}))
    assert pids_max.read_text().strip() == "max"
    runtime("delete", "--force", "p1")


@pytest.mark.root
def test_update_checks_the_given_limits_with_the_containers_others(
    runtime: Runtime, bundle: Bundle
) -> None:
    """``podman update --memory-swap`` sends the swap alone, as runc takes it: the memory
    limit is the container's, as at create or as an earlier update set it."""
    bundle.command("exec sleep 1000")
    bundle.config["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle.write()
    runtime("run", "--detach", "--bundle", str(bundle.path), "u2")
    memory = _cgroup_dir(runtime.state("u2")["pid"], "memory")
    v1 = (memory / "memory.limit_in_bytes").exists()
    swap_file = memory / ("memory.memsw.limit_in_bytes" if v1 else "memory.swap.max")
    if not swap_file.exists():
        pytest.skip("the kernel accounts no swap here")

    def update(memory: dict[str, int]) -> subprocess.CompletedProcess[str]:
        return runtime("update", "--resources", "-", "u2", input=json.dumps({"memory": memory}),
                       check=False)  # fmt: skip

    def swap() -> int:  # memory + swap, as the spec counts it
        limit = (memory / ("memory.limit_in_bytes" if v1 else "memory.max")).read_text()
        value = int(swap_file.read_text())
        return value if v1 else value + int(limit)

    assert update({"swap": 200 << 20}).returncode == 0
    assert swap() == 200 << 20
    assert update({"limit": 100 << 20, "swap": 300 << 20}).returncode == 0
    too_small = update({"swap": 80 << 20})
    assert too_small.returncode == 1
    assert too_small.stderr.strip() == (
        f"--resources: invalid --memory-swap {80 << 20}: must be at least --memory {100 << 20}"
    )
    assert swap() == 300 << 20
    runtime("delete", "--force", "u2")


@pytest.mark.root
def test_memory_cpu_and_block_io_resources(runtime: Runtime, bundle: Bundle) -> None:
    """What podman and containerd pass for Docker's other options: the v1 files here."""
    block = next(
        p
        for p in (Path("/dev") / n for n in sorted(os.listdir("/sys/block")))
        if p.is_block_device()
    )
    number = f"{os.major(block.stat().st_rdev)}:{os.minor(block.stat().st_rdev)}"
    major, minor = map(int, number.split(":"))
    bundle.command("exec sleep 1000")
    resources = bundle.config["linux"]["resources"]
    resources["memory"] = {
        "limit": 64 << 20,
        "reservation": 32 << 20,
        "swappiness": 5,
        "disableOOMKiller": True,
    }
    resources["cpu"] = {"mems": "0", "quota": 20000, "period": 100000}
    throttle = {"major": major, "minor": minor, "rate": 1 << 20}
    resources["blockIO"] = {"throttleReadBpsDevice": [throttle]}
    bundle.write()
    runtime("run", "--detach", "--bundle", str(bundle.path), "r1")
    pid = runtime.state("r1")["pid"]
    memory = _cgroup_dir(pid, "memory")
    assert int((memory / "memory.soft_limit_in_bytes").read_text()) == 32 << 20
    assert (memory / "memory.swappiness").read_text().strip() == "5"
    assert "oom_kill_disable 1" in (memory / "memory.oom_control").read_text()
    assert (_cgroup_dir(pid, "cpuset") / "cpuset.mems").read_text().strip() == "0"
    bps = (_cgroup_dir(pid, "blkio") / "blkio.throttle.read_bps_device").read_text()
    assert f"{number} {1 << 20}" in bps.splitlines()
    runtime("delete", "--force", "r1")
    weighted = (
        Path("/sys/fs/cgroup/blkio/blkio.weight").exists()
        or Path("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
    )
    resources["blockIO"] = {"weight": 300, "leafWeight": 10}
    bundle.write()
    bad = runtime("create", "--bundle", str(bundle.path), "r2", check=False)
    assert bad.returncode == 1 and "blockIO.leafWeight: not supported" in bad.stderr
    if not weighted:  # no CFQ or BFQ weight: a runtime cannot warn and drop it, so refuses
        resources["blockIO"] = {"weight": 300}
        bundle.write()
        bad = runtime("create", "--bundle", str(bundle.path), "r2", check=False)
        assert bad.returncode == 1, bad.stderr
        assert "linux.resources.blockIO.weight: cannot be applied here" in bad.stderr


def _cgroup_dir(pid: int, controller: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
    with contextlib.suppress(StopIteration):
        unified = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                       if line.startswith("0::"))  # fmt: skip
        return Path("/sys/fs/cgroup") / unified[3:].lstrip("/")
    raise AssertionError(f"no {controller} cgroup for {pid}")


def test_features_names_what_is_supported() -> None:
    done = subprocess.run([RUNTIME, "features"], capture_output=True, text=True, check=True)
    features = json.loads(done.stdout)
    assert features["ociVersionMax"] == "1.2.0"
    assert "createRuntime" in features["hooks"] and "rbind" in features["mountOptions"]
    assert "tmpcopyup" in features["mountOptions"]
    assert features["linux"]["cgroup"]["systemd"] is False
    assert os.path.exists(RUNTIME)


@pytest.mark.root
def test_hooks_get_the_state_and_time_out(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.command("exit 0")

    def hook(name: str) -> dict[str, Any]:
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/{name}.json"]}

    bundle.config["hooks"] = {
        kind: [hook(kind)]
        for kind in ("prestart", "createRuntime", "createContainer", "startContainer",
                     "poststart", "poststop")
    }  # fmt: skip
    bundle.write()
    runtime("run", "--bundle", str(bundle.path), "h1")
    seen = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(seen) == sorted(bundle.config["hooks"])
    assert {s["id"] for s in seen.values()} == {"h1"}
    assert seen["createRuntime"]["status"] == "created" and seen["createRuntime"]["pid"] > 0
    assert seen["poststart"]["status"] == "running"
    assert seen["poststop"]["status"] == "stopped"
    assert seen["createRuntime"]["bundle"] == str(bundle.path)
    bundle.config["hooks"] = {
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]
    }
    bundle.write()
    slow = runtime("create", "--bundle", str(bundle.path), "h2", check=False)
    assert slow.returncode == 1
    assert slow.stderr.strip() == "createRuntime hook /bin/sleep timed out after 1 s"
    assert "h2" not in runtime("list", "--quiet").stdout


@pytest.mark.root
def test_console_socket_and_preserved_fds(runtime: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    """As conmon: the pty master arrives on --console-socket (SCM_RIGHTS); fds 3.. of the
    caller stay open in the container with --preserve-fds."""
    bundle.command("echo via-fd-3 >&3; stty size; tty")
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 33, "width": 77}
    bundle.write()
    path = str(tmp_path / "console.sock")
    out = tmp_path / "fd3"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        # The runtime's fd 3 is the file: exactly what --preserve-fds 1 passes on.
        create = subprocess.run(
            ["sh", "-c", 'exec "$0" --root "$1" create --bundle "$2" --console-socket "$3" '
             '--preserve-fds 1 t1 3>"$4"',
             RUNTIME, str(runtime.root), str(bundle.path), path, str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert create.returncode == 0, create.stderr
        master = _receive_master(listener)
    runtime("start", "t1")
    screen = _screen_until(master, b"/dev/pts/0")
    assert b"33 77" in screen and b"/dev/pts/0" in screen
    assert out.read_text() == "via-fd-3\n"


def _receive_master(listener: socket.socket) -> int:
    """The pty master a runtime sent on its --console-socket."""
    conn, _ = listener.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    assert len(fds) == 1
    return fds[0]


def _screen_until(master: int, marker: bytes) -> bytes:
    """What the process wrote to its terminal until ``marker`` or its end (the master is
    closed)."""
    screen = b""
    with open(master, "rb", buffering=0) as f:
        while marker not in screen:
            try:
                chunk = f.read(1024)
            except OSError:  # EIO: the last slave end is closed
                break
            if not chunk:
                break
            screen += chunk
    return screen


def _first_line(master: int) -> bytes:
    """The first line the process wrote to its terminal (the master is closed)."""
    return _screen_until(master, b"\n").partition(b"\r\n")[0]


@pytest.mark.root
def test_console_size_from_the_first_instruction(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """process.consoleSize is the terminal's before the exec, not set on the master after
    the spawn: `run` (create and start in one, where that raced the process) and `exec`
    print theirs as their first output."""
    bundle.command("stty size; exec sleep 1000")
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 37, "width": 123}
    bundle.write()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "run.sock"))
        listener.listen(1)
        runtime("run", "--detach", "--bundle", str(bundle.path), "--console-socket",
                str(tmp_path / "run.sock"), "s1")  # fmt: skip
        master = _receive_master(listener)
    assert _first_line(master) == b"37 123"
    process = dict(bundle.config["process"], args=["stty", "size"])
    process["consoleSize"] = {"height": 41, "width": 99}
    (tmp_path / "process.json").write_text(json.dumps(process))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(tmp_path / "exec.sock"))
        listener.listen(1)
        runtime("exec", "--process", str(tmp_path / "process.json"), "--console-socket",
                str(tmp_path / "exec.sock"), "s1")  # fmt: skip
        master = _receive_master(listener)
    assert _first_line(master) == b"41 99"
    # Past a terminal's unsigned short: refused by name, nothing started.
    process["consoleSize"] = {"height": 41, "width": 70000}
    (tmp_path / "process.json").write_text(json.dumps(process))
    bad = runtime("exec", "--process", str(tmp_path / "process.json"), "--console-socket",
                  str(tmp_path / "exec.sock"), "s1", check=False)  # fmt: skip
    assert bad.returncode != 0
    assert "process.consoleSize: console size 41x70000" in bad.stderr, bad.stderr


@pytest.mark.root
def test_a_pods_containers_share_namespaces_by_path(
    runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """As the kubelet asks through containerd: the sandbox makes network, IPC and UTS
    namespaces, each container joins them by path and makes its own mount and pid ones."""
    bundle.command("exec sleep 1000")
    bundle.write()
    runtime("run", "--detach", "--bundle", str(bundle.path), "sandbox")
    sandbox = runtime.state("sandbox")["pid"]
    member = Bundle(tmp_path / "member", json.loads(json.dumps(bundle.config)))
    shutil.copytree(bundle.path, member.path, symlinks=True)
    member.command("for ns in net ipc uts pid; do readlink /proc/self/ns/$ns; done; hostname")
    del member.config["hostname"]
    member.config["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "pid"},
        *({"type": kind, "path": f"/proc/{sandbox}/ns/{ns}"}
          for kind, ns in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))),
    ]  # fmt: skip
    member.write()
    out = runtime("run", "--bundle", str(member.path), "member").stdout.split()
    shared = [os.readlink(f"/proc/{sandbox}/ns/{ns}") for ns in ("net", "ipc", "uts")]
    assert out[:3] == shared
    assert out[3] != os.readlink(f"/proc/{sandbox}/ns/pid")
    assert out[4] == "umoci-default"  # the sandbox's hostname, in the shared UTS namespace
    # A pod that shares its processes (Kubernetes' shareProcessNamespace): the pid
    # namespace is the sandbox's too, where the sandbox's process is pid 1.
    member.config["linux"]["namespaces"][1] = {"type": "pid", "path": f"/proc/{sandbox}/ns/pid"}
    member.command("readlink /proc/self/ns/pid; cat /proc/1/comm")
    out = runtime("run", "--bundle", str(member.path), "sharing").stdout.split()
    assert out == [os.readlink(f"/proc/{sandbox}/ns/pid"), "sleep"]
    member.config["linux"]["namespaces"][2]["path"] = "/proc/self/ns/nope"
    member.write()
    bad = runtime("create", "--bundle", str(member.path), "bad", check=False)
    assert "network namespace /proc/self/ns/nope: No such file or directory" in bad.stderr

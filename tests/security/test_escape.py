"""The escape suite: hostile actions from inside containers of a real daemon, each with the
safe result asserted and, where the host could change, host-side evidence that it did not.

Most checks run the static probe (``rootfs/probe/probe.c``) in the busybox root; the
Python ones use the image ``default`` (the host's /usr).  One daemon serves the module.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO, Daemon, running_daemon

from boxd._native import RealNative, SpawnPlan, _join_report
from boxd._plan import BASE_NAMESPACES

pytestmark = pytest.mark.root

DOCKER_CAPS = 0x00000000A80425FB  # Docker's default 14 capabilities
CAP_SYS_ADMIN = 21
NO_CAPS = "0000000000000000"
STANDARD_DEV = {
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "ptmx",
    "pts",
    "shm",
    "mqueue",
    "fd",
    "stdin",
    "stdout",
    "stderr",
}


@pytest.fixture(scope="module")
def boxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("escape")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def image(busybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox root with the probe, its top directory searchable by any user (-u 1000)."""
    return copy_root(busybox_root, tmp_path_factory.mktemp("escape-image") / "root")


@pytest.fixture(scope="module")
def sleeper(boxd: Daemon, image: Path) -> Iterator[str]:
    """A running busybox container to exec into."""
    boxd.ctl("run", "-d", "--name", "sleeper", "-e", "MINE=1", str(image), "/bin/sh",
             "-c", "exec /bin/probe sleep 600")  # fmt: skip
    try:
        yield "sleeper"
    finally:
        boxd.ctl("rm", "-f", "sleeper")


def run(boxd: Daemon, image: Path | str, *args: str, opts: tuple[str, ...] = ()) -> str:
    """stdout of a foreground container that must exit 0."""
    return boxd.ctl("run", "--rm", *opts, str(image), *args).stdout.replace("\r\n", "\n")


def sh(boxd: Daemon, image: Path, script: str, *opts: str) -> list[str]:
    """The output lines of a busybox shell script (it may exit non-zero)."""
    r = boxd.ctl("run", "--rm", *opts, str(image), "/bin/sh", "-c", script, check=False)
    return r.stdout.splitlines()


def keys(text: str) -> dict[str, str]:
    """The probe's key=value lines."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def copy_root(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    os.chmod(dest, 0o755)
    return dest


def host_mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


# ---- capabilities and no_new_privs -----------------------------------------------------


def test_init_and_exec_have_dockers_capabilities(boxd: Daemon, image: Path, sleeper: str) -> None:
    init = keys(run(boxd, image, "/bin/probe", "caps"))
    execd = keys(boxd.ctl("exec", sleeper, "/bin/probe", "caps").stdout)
    for status in (init, execd):
        assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == DOCKER_CAPS
        assert int(status["CapPrm"], 16) == DOCKER_CAPS
        assert status["CapInh"] == status["CapAmb"] == NO_CAPS
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_non_root_user_has_no_effective_capabilities(
    boxd: Daemon, image: Path, sleeper: str
) -> None:
    init = keys(run(boxd, image, "/bin/probe", "caps", opts=("-u", "1000")))
    execd = keys(boxd.ctl("exec", "-u", "1000", sleeper, "/bin/probe", "caps").stdout)
    for status in (init, execd):
        assert status["CapEff"] == status["CapPrm"] == status["CapAmb"] == NO_CAPS


def test_setuid_binary_in_image_gives_no_privilege(
    boxd: Daemon, image: Path, tmp_path: Path
) -> None:
    root = copy_root(image, tmp_path / "suid")
    os.chmod(root / "bin" / "probe", 0o4755)
    out = run(boxd, root, "/bin/sh", "-c", "probe id; probe caps", opts=("-u", "1000"))
    assert keys(out)["euid"] == "1000" and keys(out)["CapEff"] == NO_CAPS
    # What SECURITY.md tells a user whose sudo or su fails: Docker's setuid back.
    docker = ("-u", "1000", "--security-opt", "no-new-privileges=false")
    out = run(boxd, root, "/bin/sh", "-c", "probe id; probe caps", opts=docker)
    assert keys(out)["euid"] == "0" and int(keys(out)["CapEff"], 16) == DOCKER_CAPS


def test_capabilities_reach_no_host_disk_and_no_mount(boxd: Daemon, image: Path) -> None:
    disk = Path("/proc/partitions").read_text().splitlines()[2].split()
    major, minor = disk[0], disk[1]
    out = sh(
        boxd,
        image,
        f"probe mknod /tmp/disk b {major} {minor}; probe open /tmp/disk r;"
        "probe mknod /tmp/mem c 1 1; probe open /tmp/mem r;"
        "probe syscall mount none /tmp tmpfs 0",
    )
    errors = [line for line in out if line.startswith("errno=")]
    # mknod of a non-standard node, or at the latest its open, is refused.
    assert "ok" not in out[1:2] + out[3:4]
    assert out[-1] == "errno=1 EPERM" and len(errors) >= 3
    # Without the seccomp filter, the missing CAP_SYS_ADMIN alone still refuses mount.
    caps_only = sh(
        boxd,
        image,
        "probe syscall mount none /tmp tmpfs 0",
        "--security-opt",
        "seccomp=unconfined",
    )
    assert caps_only == ["errno=1 EPERM"]


# ---- seccomp ---------------------------------------------------------------------------

DENIED = {
    "unshare 0x20000": "EPERM",  # CLONE_NEWNS
    "setns 0 0": "EPERM",
    "mount none /tmp tmpfs 0": "EPERM",
    "umount2 /proc 2": "EPERM",
    "keyctl 0 0 0": "EPERM",
    "add_key": "EPERM",
    "bpf 0 0 0": "EPERM",
    "perf_event_open": "EPERM",
    "kexec_load": "EPERM",
    "init_module": "EPERM",
    "open_by_handle_at": "EPERM",
    "userfaultfd 0": "EPERM",
    "io_uring_setup 1 0": "EPERM",
    "clone3": "ENOSYS",
    "sethostname boxd 4": "EPERM",
    "kcmp 1 1 0 0 0": "EPERM",  # KCMP_FILE
    "settimeofday 0 0": "EPERM",  # sets nothing: only the permission check
}


def syscall_results(boxd: Daemon, image: Path, calls: Iterable[str], *opts: str) -> dict[str, str]:
    """{call: errno name or "ok"} for each ``probe syscall CALL`` in one container."""
    script = "".join(
        f"echo {shlex.quote(call)} $(probe syscall {call} | head -n 1);" for call in calls
    )
    got = {}
    for line in sh(boxd, image, script, *opts):  # "CALL ok" or "CALL errno=N NAME"
        call, result = line.removesuffix(" ok"), "ok"
        if call == line:
            call, _, result = line.rsplit(" ", 2)
        got[call] = result
    return got


def test_seccomp_denies_with_the_expected_errno(boxd: Daemon, image: Path) -> None:
    assert syscall_results(boxd, image, DENIED) == DENIED


def test_ptrace_works_as_under_docker(boxd: Daemon, image: Path) -> None:
    """Docker's profile allows ptrace (Linux 4.8+): strace and gdb work inside, on the
    container's own processes (the kernel still refuses a non-dumpable one, see below)."""
    assert sh(boxd, image, "probe ptrace 1; true") == ["ok"]  # pid 1: the shell
    if shutil.which("strace"):  # the host's, in the image "default"
        r = boxd.ctl("run", "--rm", "default", "strace", "-f", "-e", "trace=none", "true")
        assert r.stderr.endswith("+++ exited with 0 +++\n"), r.stderr


PROBE32_SOURCE = REPO / "rootfs" / "probe" / "probe32.c"


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="i386 programs run on x86_64")
def test_an_i386_program_runs_under_the_filter(boxd: Daemon, image: Path, tmp_path: Path) -> None:
    """A 32-bit x86 program (an i386 image) runs as under Docker, whose profile takes
    SCMP_ARCH_X86 on x86_64, and its calls get the same rules (it was killed by SIGSYS at
    its first call); without the filter the kernel answers them otherwise."""
    root = copy_root(image, tmp_path / "i386")
    build = subprocess.run(
        ["gcc", "-m32", "-static", "-nostdlib", "-fno-stack-protector", "-O2", "-Wall",
         "-Wextra", "-Werror", "-o", str(root / "bin" / "probe32"), str(PROBE32_SOURCE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.skip(f"gcc cannot build an i386 program here: {build.stderr.strip()}")
    filtered = {"getpid": "ok", "mount": "1", "socket_vsock": "1", "clone3": "38",
                "unknown": "38"}  # fmt: skip
    assert keys(run(boxd, root, "/bin/probe32")) == filtered
    unconfined = keys(
        run(boxd, root, "/bin/probe32", opts=("--security-opt", "seccomp=unconfined"))
    )
    assert unconfined["mount"] == "14" and unconfined["clone3"] != "38"  # EFAULT, EINVAL


# Calls Docker's profile allows once the capability is added, as boxd's does.
WITH_CAPABILITY = {
    "SYS_ADMIN": ("mount none /tmp tmpfs 0", "unshare 0x20000", "sethostname boxd 4"),
    "SYS_PTRACE": ("kcmp 1 1 0 0 0",),
    "SYS_TIME": ("settimeofday 0 0",),
}


@pytest.mark.parametrize("cap", sorted(WITH_CAPABILITY))
def test_an_added_capability_allows_its_calls(boxd: Daemon, image: Path, cap: str) -> None:
    calls = WITH_CAPABILITY[cap]
    got = syscall_results(boxd, image, calls, "--cap-add", cap)
    assert got == dict.fromkeys(calls, "ok")


def test_ordinary_programs_still_work(boxd: Daemon) -> None:
    script = (
        "import concurrent.futures as cf, os, subprocess\n"
        "with cf.ThreadPoolExecutor(4) as ex: print(sum(ex.map(abs, range(-5, 0))))\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(7)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
        "print(len(os.getrandom(16)), subprocess.run(['true']).returncode)\n"
    )
    assert run(boxd, "default", "python3", "-c", script).split() == ["15", "7", "16", "0"]


# ---- namespaces, mounts, /dev ----------------------------------------------------------

NAMESPACES = ("pid", "uts", "ipc", "mnt", "cgroup", "net")


def test_namespaces_differ_from_the_hosts(boxd: Daemon, image: Path, sleeper: str) -> None:
    script = "for n in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$n; done"
    host = [os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES]
    init = sh(boxd, image, script)
    execd = boxd.ctl("exec", sleeper, "/bin/sh", "-c", script).stdout.split()
    sleeper_init = boxd.ctl("exec", sleeper, "/bin/sh", "-c", script.replace("self", "1"))
    assert execd == sleeper_init.stdout.split()  # exec joins the container's namespaces
    isolated = sh(boxd, image, script, "--network", "none")
    for ns in (init, execd, isolated):
        assert len(ns) == len(NAMESPACES)
        assert not set(ns) & set(host)
    # The default network (bridge) is a network namespace of the container's own too (the
    # loop above; containers that are gone may have left their inode numbers to others).


def test_mount_table_shows_no_host_mount_point(boxd: Daemon, image: Path) -> None:
    lines = run(boxd, image, "/bin/probe", "mounts").splitlines()
    points = [line.split()[4] for line in lines]
    assert points[0] == "/"
    assert all(p == "/" or p.split("/")[1] in ("proc", "sys", "dev") for p in points), points
    # A mount's root inside its filesystem names no host directory either.
    roots = [line.split()[3] for line in lines]
    assert not [r for r in roots if r.startswith(("/tmp", "/work", "/home", "/var", "/run"))]


def test_mount_options_name_no_host_path(boxd: Daemon, image: Path) -> None:
    """overlayfs shows its options in the container's /proc/self/mountinfo: its layers'
    directories are named relative to the directory it is mounted from (the image's
    through symlinks there), so neither the image's place nor the daemon's root shows."""
    text = run(boxd, image, "/bin/probe", "mounts")
    assert str(image) not in text and str(boxd.root) not in text
    assert "lowerdir=l/0,upperdir=upper,workdir=work," in text


def test_dev_holds_only_the_standard_nodes(boxd: Daemon, image: Path) -> None:
    entries = run(boxd, image, "/bin/probe", "ls", "/dev").split()
    assert {e.removeprefix("entry=") for e in entries} == STANDARD_DEV
    pts = run(boxd, image, "/bin/probe", "ls", "/dev/pts").split()
    assert pts == ["entry=ptmx"], "a new devpts instance shows none of the host's terminals"


# ---- /proc, /sys, cgroupfs ---------------------------------------------------------------


def test_masked_proc_paths_read_nothing(boxd: Daemon, image: Path) -> None:
    for path in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/interrupts"):
        r = boxd.ctl("run", "--rm", str(image), "/bin/probe", "cat", path, check=False)
        # Masked by /dev/null where the host has the file; absent where the host has not.
        assert r.stdout == "" and (r.returncode == 0 or "No such file" in r.stderr), path
    assert run(boxd, image, "/bin/probe", "ls", "/sys/firmware") == ""


def test_kernel_wide_proc_and_sys_files_cannot_be_written(boxd: Daemon, image: Path) -> None:
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_bytes()
    helper = Path("/sys/kernel/uevent_helper")
    helper_before = helper.read_bytes() if helper.exists() else None
    try:
        out = sh(
            boxd,
            image,
            "probe write /proc/sys/kernel/core_pattern '|/tmp/pwn';"
            "probe write /proc/sysrq-trigger h;"
            "probe write /sys/kernel/uevent_helper /tmp/pwn;"
            "probe open /proc/sys/vm/overcommit_memory w",
        )
        assert len(out) == 4 and all(line.startswith("errno=") for line in out), out
        assert out[0] == out[3] == "errno=30 EROFS"
    finally:
        # Evidence first, repair second: had a write got through, the host is restored.
        after = Path("/proc/sys/kernel/core_pattern").read_bytes()
        if after != core_pattern:
            Path("/proc/sys/kernel/core_pattern").write_bytes(core_pattern)
    assert after == core_pattern
    assert (helper.read_bytes() if helper.exists() else None) == helper_before


def test_cgroupfs_is_read_only_and_cannot_be_mounted(boxd: Daemon, image: Path) -> None:
    out = sh(
        boxd,
        image,
        "for f in /sys/fs/cgroup/release_agent /sys/fs/cgroup/*/release_agent"
        " /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/cgroup.subtree_control; do"
        "  [ -e $f ] || f=/sys/fs/cgroup/release_agent; probe write $f 1; done;"
        "probe syscall mkdir /sys/fs/cgroup/escape 0755;"
        "probe syscall mount none /tmp cgroup 0 memory;"
        "probe syscall mount none /tmp cgroup2 0",
        "--security-opt",
        "seccomp=unconfined",  # so the mount and write refusals come from the kernel
    )
    assert out and all(line.startswith("errno=") for line in out), out
    assert out[-2:] == ["errno=1 EPERM", "errno=1 EPERM"]
    assert "errno=30 EROFS" in out


# ---- chroot, fds, working directory -------------------------------------------------------


def test_chroot_escape_stays_inside(boxd: Daemon, image: Path) -> None:
    out = run(boxd, image, "/bin/probe", "chroot-escape").splitlines()
    assert out[0] == "ok"
    seen = {line.removeprefix("entry=") for line in out[1:]}
    assert seen == set(os.listdir(image)) | {".dockerenv"}  # the root boxd gives every container
    assert "work" not in seen


def test_only_stdio_reaches_init_and_exec(boxd: Daemon, image: Path, sleeper: str) -> None:
    init = keys(run(boxd, image, "/bin/probe", "fds"))
    execd = keys(boxd.ctl("exec", sleeper, "/bin/probe", "fds").stdout)
    tty = keys(run(boxd, image, "/bin/probe", "fds", opts=("-t",)))
    for fds in (init, execd, tty):
        assert sorted(fds) == ["fd.0", "fd.1", "fd.2"]
    # And the sleeper's init itself, seen from an exec'd process.
    assert boxd.ctl("exec", sleeper, "/bin/probe", "ls", "/proc/1/fd").stdout.split() == [
        "entry=0",
        "entry=1",
        "entry=2",
    ]


@pytest.mark.parametrize(
    "workdir", ["/proc/self/fd/3", "/proc/self/fd/4", "/proc/self/fd/5", "/proc/self/fd/7"]
)
def test_workdir_through_an_fd_is_refused(
    boxd: Daemon, image: Path, sleeper: str, workdir: str
) -> None:
    for args in (
        ("run", "--rm", "-w", workdir, str(image), "/bin/probe", "cwd"),
        ("exec", "-w", workdir, sleeper, "/bin/probe", "cwd"),
    ):
        r = boxd.ctl(*args, check=False)
        assert r.returncode != 0 and workdir in r.stderr, (args, r.stdout)


def test_escaping_workdir_stays_inside(boxd: Daemon, image: Path, sleeper: str) -> None:
    for workdir in ("/../../..", "/tmp/../../../.."):
        out = run(boxd, image, "/bin/probe", "cwd", opts=("-w", workdir))
        assert out == "cwd=/\n"
        execd = boxd.ctl("exec", "-w", workdir, sleeper, "/bin/probe", "cwd").stdout
        assert execd == "cwd=/\n"


# ---- the runtime's code inside the container -------------------------------------------


def test_a_process_still_running_runtime_code_cannot_be_traced_or_reopened(
    boxd: Daemon, sleeper: str
) -> None:
    """Every process that joins a container runs the runtime's code (the host's Python
    binary, forked from the daemon) until its exec; held there, as if before its release,
    nothing inside can ptrace it or open its /proc/PID/exe, mem or environ (CVE-2019-5736
    reopened runc's binary through /proc/PID/exe)."""
    init = boxd.inspect(sleeper)["state"]["pid"]
    pidfd = os.pidfd_open(init)
    try:
        plan = SpawnPlan(
            argv=("/bin/probe", "exit", "0"),
            join_pidfd=pidfd,
            join_namespaces=BASE_NAMESPACES,
            process_name="boxd:[exec]",
        )
        # The spawn returns the intermediate; its report gives the process held.
        held = _join_report(RealNative().spawn(plan), plan)
    finally:
        os.close(pidfd)
    try:
        status = Path(f"/proc/{held.pid}/status").read_text()
        inside = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        pid = inside.split()[-1]
        assert boxd.ctl("exec", sleeper, "/bin/probe", "ls", "/proc").stdout.count(
            f"entry={pid}\n"
        ), "the held process is not visible inside"
        attempts = [
            ("ptrace", pid),
            ("open", f"/proc/{pid}/exe"),
            ("open", f"/proc/{pid}/mem"),
            ("open", f"/proc/{pid}/environ"),
        ]
        for args in attempts:
            r = boxd.ctl("exec", sleeper, "/bin/probe", *args, check=False)
            assert (r.returncode, r.stdout) in ((1, "errno=1 EPERM\n"), (1, "errno=13 EACCES\n"))
    finally:
        os.close(held.sync_fd)  # EOF: the held process gives up and exits
        os.waitid(os.P_PIDFD, held.pidfd, os.WEXITED)
        os.close(held.pidfd)


# ---- hostile root filesystems --------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
@pytest.mark.parametrize("name", ["proc", "dev", "sys"])
def test_symlinked_mount_point_sends_no_mount_to_the_host(
    boxd: Daemon, image: Path, tmp_path: Path, name: str, relative: bool
) -> None:
    target = tmp_path / "host-target"
    target.mkdir()
    root = copy_root(image, tmp_path / "hostile")
    shutil.rmtree(root / name)
    (root / name).symlink_to("../" * 20 + str(target).lstrip("/") if relative else target)
    mounts_before = host_mount_points()
    for opts in ((), ("--procview", "off")):
        r = boxd.ctl("run", "--rm", *opts, str(root), "/bin/probe", "mounts", check=False)
        if r.returncode != 0:
            assert r.returncode == 125 and "boxctl: " in r.stderr  # refused, with a reason
        assert list(target.iterdir()) == []
        # (Only below this test's directory: other test runs may mount at the same time.)
        assert not {p for p in host_mount_points() - mounts_before if p.startswith(str(tmp_path))}


@pytest.mark.parametrize("procview", ["on", "off"])
def test_symlinked_proc_keeps_its_masks(
    boxd: Daemon, image: Path, tmp_path: Path, procview: str
) -> None:
    """The masks and read-only paths follow /proc to where the image's symlink puts it."""
    target = tmp_path / "host-target"
    target.mkdir()
    root = copy_root(image, tmp_path / "hostile")
    shutil.rmtree(root / "proc")
    (root / "proc").symlink_to(target)
    opts = ("--procview", procview, str(root), "/bin/probe")
    # Open for writing only: the host's core_pattern is never changed by this test.
    r = boxd.ctl("run", "--rm", *opts, "open", "/proc/sys/kernel/core_pattern", "w", check=False)
    assert (r.returncode, r.stdout) == (1, "errno=30 EROFS\n")
    assert run(boxd, root, "/bin/probe", "cat", "/proc/keys", opts=opts[:2]) == ""
    assert list(target.iterdir()) == []


def test_symlink_in_a_volume_sends_no_write_to_the_host(
    boxd: Daemon, image: Path, tmp_path: Path
) -> None:
    """A volume's contents are not part of the image, so only the child's resolution inside
    the root sees this symlink (another container could have put it there)."""
    target, source = tmp_path / "host-target", tmp_path / "source"
    target.mkdir()
    source.mkdir()
    (source / "link").symlink_to(target)
    r = boxd.ctl(
        "run", "--rm", "-v", f"{source}:/data", "--tmpfs", "/data/link/made",
        str(image), "/bin/probe", "mounts",
        check=False,
    )  # fmt: skip
    assert list(target.iterdir()) == []
    assert r.returncode == 125 and "/data/link/made" in r.stderr, r.stderr


def test_symlinked_volume_target_stays_inside(boxd: Daemon, image: Path, tmp_path: Path) -> None:
    target, source = tmp_path / "host-target", tmp_path / "source"
    target.mkdir()
    source.mkdir()
    (source / "hello").write_text("hi")
    root = copy_root(image, tmp_path / "hostile")
    (root / "mnt").symlink_to(target)
    out = run(boxd, root, "/bin/probe", "cat", "/mnt/hello", opts=("-v", f"{source}:/mnt"))
    assert out == "hi" and list(target.iterdir()) == []


def test_a_read_only_volume_is_read_only_below_it_too(
    boxd: Daemon, image: Path, tmp_path: Path
) -> None:
    """``-v SRC:DST:ro`` binds SRC with the mounts below it: they are read-only too, as
    Docker 25 makes them (they stayed writable: Docker's old systemd recipe ``-v
    /sys/fs/cgroup:/sys/fs/cgroup:ro`` gave a container the host's cgroup hierarchies)."""
    source = tmp_path / "volume"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "boxd-test-sub", source / "sub"],
                   check=True)  # fmt: skip
    try:
        script = "for d in /x /x/sub; do touch $d/new 2>/dev/null || echo $d refused; done"
        lines = sh(boxd, image, script, "-v", f"{source}:/x:ro")
    finally:
        subprocess.run(["umount", source / "sub"], check=True)
    assert lines == ["/x refused", "/x/sub refused"]


# ---- terminal, daemon socket, environment ---------------------------------------------------


def test_terminal_comes_from_the_containers_own_devpts(
    boxd: Daemon, image: Path, sleeper: str
) -> None:
    """The pty is opened inside, in the container's devpts instance: it has a name there,
    and the host's devpts never holds it."""
    host_ptys = set(os.listdir("/dev/pts"))
    assert run(boxd, image, "/bin/tty", opts=("-t",)) == "/dev/pts/0\n"
    assert boxd.ctl("exec", "-t", sleeper, "/bin/tty").stdout == "/dev/pts/0\n"
    boxd.ctl("run", "-d", "-t", "--name", "tty-sleeper", str(image), "/bin/probe", "sleep", "600")
    try:
        assert boxd.ctl("exec", "-t", "tty-sleeper", "/bin/tty").stdout == "/dev/pts/1\n"
        # Nothing new on the host (another process's terminal may close meanwhile).
        assert not set(os.listdir("/dev/pts")) - host_ptys
    finally:
        boxd.ctl("rm", "-f", "tty-sleeper")


def test_tiocsti_does_not_reach_the_callers_terminal(boxd: Daemon, tmp_path: Path) -> None:
    injected, status, end = tmp_path / "injected", tmp_path / "status", tmp_path / "end"
    payload = f"touch {injected}\n"
    script = (
        "import fcntl, os, termios\n"
        f"for c in {payload.encode()!r}: fcntl.ioctl(0, termios.TIOCSTI, bytes([c]))\n"
        "print('sid', os.getsid(0) == os.getpid())\n"
    )
    boxctl = [sys.executable, "-m", "boxctl", "--socket", str(boxd.socket)]
    command = shlex.join([*boxctl, "run", "--rm", "-t", "default", "python3", "-c", script])
    # The server's socket in the test's directory: tmux leaves it behind when killed.
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    env = f"PYTHONPATH={shlex.quote(str(REPO))}"
    subprocess.run([*tmux, "new-session", "-d", "-x", "120", "-y", "30", "sh"], check=True)
    try:
        # The caller's shell: run the container, record its status, then a marker line.
        # Anything injected into this terminal would be read (and run) before the marker.
        for line in (f"{env} {command}; echo $? > {status}", f"touch {end}"):
            subprocess.run([*tmux, "send-keys", line, "Enter"], check=True)
        deadline = time.monotonic() + 60
        while not end.exists():
            assert time.monotonic() < deadline, "the caller's shell never ran the marker"
            time.sleep(0.05)
        screen = subprocess.run(
            [*tmux, "capture-pane", "-p"], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert status.read_text() == "0\n"
    assert "sid True" in screen
    assert not injected.exists()


def test_daemon_socket_is_not_reachable(boxd: Daemon, sleeper: str) -> None:
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try: s.connect(sys.argv[1])\n"
        "except OSError as e: print(type(e).__name__)\n"
        "else: print('connected')\n"
    )
    out = run(boxd, "default", "python3", "-c", script, str(boxd.socket))
    assert out == "FileNotFoundError\n"
    r = boxd.ctl("exec", sleeper, "/bin/probe", "stat", str(boxd.socket), check=False)
    assert r.stdout == "errno=2 ENOENT\n"


def test_environment_holds_only_what_was_given(boxd: Daemon, image: Path, sleeper: str) -> None:
    def names(text: str) -> set[str]:
        return {line.split("=", 1)[0] for line in text.splitlines() if line}

    base = {"PATH", "HOSTNAME", "HOME"}
    assert names(run(boxd, image, "/bin/probe", "env", opts=("-e", "A=1"))) == base | {"A"}
    tty = run(boxd, image, "/bin/probe", "env", opts=("-t",))
    assert names(tty) == base | {"TERM"}
    execd = boxd.ctl("exec", "-e", "B=2", sleeper, "/bin/probe", "env").stdout
    assert names(execd) == base | {"MINE", "B"}  # the daemon's own PYTHONPATH is not there


# ---- relaxations ---------------------------------------------------------------------------


def test_privileged_really_relaxes(boxd: Daemon, image: Path) -> None:
    script = "probe caps; probe stat /proc/keys; probe syscall mount none /tmp tmpfs 0"
    out = sh(boxd, image, script, "--privileged")
    status = keys("\n".join(out))
    effective = int(status["CapEff"], 16)
    assert effective & DOCKER_CAPS == DOCKER_CAPS and effective >> CAP_SYS_ADMIN & 1
    assert status["Seccomp"] == "0"
    assert status["type"] == "file"  # /proc/keys is not masked
    assert "ok" in out  # mount works (inside the container's own mount namespace)


def test_cap_drop_all_leaves_no_capability(boxd: Daemon, image: Path) -> None:
    out = sh(boxd, image, "probe caps; probe mknod /tmp/n c 1 3", "--cap-drop", "ALL")
    status = keys("\n".join(out))
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == NO_CAPS
    assert out[-1] == "errno=1 EPERM"


def test_seccomp_unconfined_removes_the_filter(boxd: Daemon, image: Path) -> None:
    out = sh(
        boxd,
        image,
        "probe caps; probe syscall clone3",
        "--security-opt",
        "seccomp=unconfined",
    )
    status = keys("\n".join(out))
    assert status["Seccomp"] == "0" and status["NoNewPrivs"] == "1"
    assert out[-1] != "errno=38 ENOSYS"  # the kernel, not the filter, answers clone3 now

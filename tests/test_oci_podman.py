"""Podman (with conmon) driving boxd-runtime: ``podman --runtime $(command -v boxd-runtime)``,
run as :mod:`oci_peers` describes.  Podman passes no
``--root`` to the runtime on every call (``podman rm`` omits ``--runtime-flag``), so
boxd-runtime keeps its state in its default ``/run/boxd-runtime``; container ids are
Podman's, unique.  Slow: a few Podman runs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import oci_peers
import pytest
from daemon_harness import session_name

RUNTIME = str(Path(sys.executable).with_name("boxd-runtime"))


@attrs.define
class Podman:
    work: Path
    parent: str  # --cgroup-parent, unique to the test
    rootfs: Path  # a private copy: Podman writes /etc/hosts and friends into a --rootfs

    def argv(self, *args: str) -> list[str]:
        podman = [
            "podman",
            "--runtime", RUNTIME,
            "--root", str(self.work / "storage"),
            "--runroot", str(self.work / "run"),
            "--tmpdir", str(self.work / "tmp"),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            *args,
        ]  # fmt: skip
        return oci_peers.wrapped(podman)

    def run_options(self, network: str = "none") -> list[str]:
        return [
            "--network", network,
            "--cgroup-parent", self.parent,
            # Podman asks for more than this process may raise to (no CAP_SYS_RESOURCE).
            "--ulimit", "nofile=20000:20000",
            "--ulimit", "nproc=32768:32768",
        ]  # fmt: skip

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode} {done.stderr}")
        return done


@pytest.fixture
def podman(busybox_root: Path) -> Iterator[Podman]:
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman and conmon are not installed (apt-get install podman conmon)")
    # Short: Podman refuses a --runroot of more than 50 characters.
    work = Path(tempfile.mkdtemp(prefix="boxd-pm-", dir="/tmp"))
    p = Podman(work, "/" + session_name(uuid.uuid4().hex[:8]), work / "rootfs")
    shutil.copytree(busybox_root, p.rootfs, symlinks=True)
    try:
        yield p
    finally:
        p("rm", "--all", "--force", "--time", "0", check=False)
        # Podman leaves its cgroup parent (and the conmon cgroup in it) behind.  What it
        # mounted for its storage lives in the wrappers' mount namespaces, gone with them.
        oci_peers.remove_cgroups(p.parent)
        shutil.rmtree(work)


@pytest.mark.root
def test_podman_run_rm_and_exit_codes(podman: Podman) -> None:
    root = str(podman.rootfs)
    done = podman("run", "--rm", *podman.run_options(), "--rootfs", root, "echo", "hi")
    assert done.stdout == "hi\n"
    code = podman("run", "--rm", *podman.run_options(), "--rootfs", root, "sh", "-c", "exit 3",
                  check=False).returncode  # fmt: skip
    assert code == 3
    missing = podman("run", "--rm", *podman.run_options(), "--rootfs", root, "/bin/nope",
                     check=False)  # fmt: skip
    assert missing.returncode == 127, missing.stderr
    assert "exec /bin/nope: No such file or directory" in missing.stderr
    assert podman("ps", "--all", "--quiet").stdout == ""


@pytest.mark.root
def test_podman_run_init(podman: Podman) -> None:
    """``--init``: Podman binds catatonit (through a symlink) on /run/podman-init, which
    the image lacks, and runs it as pid 1 with the command below it."""
    if not os.path.exists("/usr/libexec/podman/catatonit"):
        pytest.skip("catatonit is not installed (apt-get install catatonit)")
    script = "tr '\\0' ' ' < /proc/1/cmdline; exit 3"
    done = podman("run", "--rm", "--init", *podman.run_options(), "--rootfs",
                  str(podman.rootfs), "sh", "-c", script, check=False)  # fmt: skip
    expected = (3, f"/run/podman-init -- sh -c {script} ")
    assert (done.returncode, done.stdout) == expected, done.stderr


@pytest.mark.root
def test_podman_network_namespace_joined_by_path_takes_its_sysctls(podman: Podman) -> None:
    """Podman makes a bridge network's namespace itself and gives it by path, with its
    default ``net.ipv4.ping_group_range``: a namespace joined by path is the container's
    for its sysctls, as runc has it, unless it is the runtime's own (the host's)."""
    with subprocess.Popen(["unshare", "--net", "sleep", "60"]) as holder:
        try:
            deadline = time.monotonic() + 10
            ns = f"/proc/{holder.pid}/ns/net"
            while os.readlink(ns) == os.readlink("/proc/self/ns/net"):
                assert time.monotonic() < deadline, "unshare never made its namespace"
                time.sleep(0.01)
            done = podman("run", "--rm", *podman.run_options(f"ns:{ns}"), "--rootfs",
                          str(podman.rootfs), "readlink", "/proc/self/ns/net")  # fmt: skip
            assert done.stdout.strip() == os.readlink(ns)
            # A net sysctl file shows the reader's namespace: read from inside that one.
            sysctl = ["cat", "/proc/sys/net/ipv4/ping_group_range"]
            seen = subprocess.run(["nsenter", f"--net={ns}", *sysctl], capture_output=True)
            assert seen.stdout.split() == [b"0", b"0"]  # Podman's default, set there
        finally:
            holder.kill()
    own = podman("run", "--rm", *podman.run_options("ns:/proc/self/ns/net"), "--rootfs",
                 str(podman.rootfs), "true", check=False)  # fmt: skip
    assert own.returncode != 0
    assert "ping_group_range: the container shares the host's network namespace" in own.stderr


@pytest.mark.root
def test_podman_read_only_and_tmpfs_hold_the_images_files(podman: Podman) -> None:
    """``--read-only`` and ``--tmpfs`` mount tmpfs with ``tmpcopyup``: the image's files
    there are in it, writes go to it and not to the root filesystem."""
    (podman.rootfs / "srv" / "cfg").mkdir(parents=True)
    (podman.rootfs / "srv" / "cfg" / "kept").write_text("from the image\n")
    (podman.rootfs / "tmp" / "t").write_text("tmp too\n")
    script = "cat /srv/cfg/kept /tmp/t; echo new > /srv/cfg/new && touch /tmp/u && echo wrote"
    done = podman("run", "--rm", *podman.run_options(), "--read-only", "--tmpfs", "/srv",
                  "--rootfs", str(podman.rootfs), "sh", "-c", script)  # fmt: skip
    assert done.stdout == "from the image\ntmp too\nwrote\n"
    assert not (podman.rootfs / "srv" / "cfg" / "new").exists()
    assert not (podman.rootfs / "tmp" / "u").exists()


@pytest.mark.root
def test_podman_device(podman: Podman) -> None:
    """``podman --device``: the node made, its rule honoured (boxd's list stays the base)."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse is missing")
    script = "stat -c '%t:%T' /dev/fuse; (: > /dev/fuse) && echo opened"
    done = podman("run", "--rm", *podman.run_options(), "--device", "/dev/fuse",
                  "--rootfs", str(podman.rootfs), "sh", "-c", script)  # fmt: skip
    assert done.stdout == "a:e5\nopened\n"


@pytest.mark.root
def test_podman_detached_exec_limits_stop_rm(podman: Podman) -> None:
    cid = podman(
        "run", "-d", *podman.run_options(), "--memory", "64m", "--pids-limit", "50",
        "--rootfs", str(podman.rootfs), "sleep", "1000",
    ).stdout.strip()  # fmt: skip
    state = json.loads(
        subprocess.run([RUNTIME, "state", cid], capture_output=True, check=True).stdout
    )
    assert state["status"] == "running" and state["id"] == cid
    pid = state["pid"]
    cgroups = dict(
        (c, p) for _, cs, p in (line.split(":", 2) for line in
        Path(f"/proc/{pid}/cgroup").read_text().splitlines()) for c in cs.split(",")
    )  # fmt: skip
    memory = Path("/sys/fs/cgroup/memory") / cgroups["memory"].lstrip("/")
    pids = Path("/sys/fs/cgroup/pids") / cgroups["pids"].lstrip("/")
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert (pids / "pids.max").read_text().strip() == "50"
    # Podman sends what changes alone ({"memory": {"swap": N}}): the memory limit stays.
    podman("update", "--memory-swap", "200m", cid)
    memsw = memory / "memory.memsw.limit_in_bytes"
    assert not memsw.exists() or memsw.read_text().strip() == str(200 << 20)
    out = podman("exec", cid, "sh", "-c", "echo in $(hostname); cat /proc/1/cmdline").stdout
    assert out.split("\n")[0] == f"in {cid[:12]}"
    assert out.split("\n")[1].startswith("sleep")
    # Its own limits in its /sys/fs/cgroup, as under runc (v1 hierarchies here).
    inside = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"
    assert podman("exec", cid, "sh", "-c", inside).stdout.split() == [str(64 << 20), "50"]
    assert podman("exec", cid, "sh", "-c", "exit 5", check=False).returncode == 5
    podman("stop", "--time", "1", cid)
    assert json.loads(podman("inspect", cid).stdout)[0]["State"]["Status"] == "exited"
    podman("rm", cid)
    assert not memory.exists() and not pids.exists()
    gone = subprocess.run([RUNTIME, "state", cid], capture_output=True, text=True)
    assert gone.returncode == 1 and "does not exist" in gone.stderr


SYSTEMD_PROBE = """
set -e
path=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
mkdir /sys/fs/cgroup/systemd$path/init.scope
echo $$ > /sys/fs/cgroup/systemd$path/init.scope/cgroup.procs
grep -c -E ' /run(/lock)? ' /proc/self/mountinfo
sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup
"""


@pytest.mark.root
def test_podman_systemd_mode_gets_its_tmpfs_and_a_name_systemd_cgroup(podman: Podman) -> None:
    """``podman run --systemd=always`` (what Podman does for an image whose command is
    systemd's): tmpfs at /run and /run/lock (both tmpcopyup: the second was refused, below
    the first), and on a v1 host the name=systemd hierarchy bound writable over the
    container's /sys/fs/cgroup/systemd, where it must have a cgroup of its own to make
    init.scope in and move into, as systemd does first (boxd-runtime made none there, and
    its read-only /sys/fs/cgroup had no mount point for the bind)."""
    if not Path("/sys/fs/cgroup/systemd").is_dir():
        pytest.skip("no v1 name=systemd hierarchy here (Podman then mounts the cgroup2)")
    done = podman("run", "--rm", "--systemd=always", *podman.run_options(), "--rootfs",
                  str(podman.rootfs), "sh", "-c", SYSTEMD_PROBE)  # fmt: skip
    mounts, path = done.stdout.split()
    assert mounts == "2"
    assert path.startswith(podman.parent + "/libpod-") and path.endswith("/init.scope")
    # Gone with the container, init.scope and all.
    assert not Path("/sys/fs/cgroup/systemd" + path.removesuffix("/init.scope")).exists()


@pytest.mark.root
def test_podman_run_it_through_tmux(podman: Podman) -> None:
    """A real terminal: conmon's --console-socket gets the pty master boxd-runtime made
    in the container's devpts; the size is the tmux pane's."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = f"boxd-oci-{os.getpid()}"
    argv = podman.argv("run", "-it", "--rm", *podman.run_options(), "--rootfs",
                       str(podman.rootfs), "sh")  # fmt: skip
    command = shlex.join(argv)
    tmux = ["tmux", "-L", server]
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "30", command], check=True)
    try:
        _send(tmux, "tty; stty size; echo $((6*7))", "42")
        screen = _capture(tmux)
        assert "/dev/pts/0" in screen and "30 100" in screen
        subprocess.run([*tmux, "send-keys", "exit", "Enter"], check=True)
        deadline = time.monotonic() + 30
        while subprocess.run([*tmux, "has-session"], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "podman run -it did not end after exit"
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        # tmux leaves its socket behind when it is killed.
        Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", server).unlink(
            missing_ok=True
        )


def _capture(tmux: list[str]) -> str:
    return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout


def _send(tmux: list[str], keys: str, expect: str) -> None:
    deadline = time.monotonic() + 60
    while "#" not in _capture(tmux):  # the shell's prompt
        assert time.monotonic() < deadline, f"no prompt: {_capture(tmux)!r}"
        time.sleep(0.1)
    subprocess.run([*tmux, "send-keys", keys, "Enter"], check=True)
    while expect not in _capture(tmux).split(keys)[-1]:
        assert time.monotonic() < deadline, f"no {expect!r}: {_capture(tmux)!r}"
        time.sleep(0.1)

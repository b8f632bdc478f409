"""--isolate-user: container root is an unprivileged host uid (the /etc/subuid range of user
``boxd``, else 100000:65536), checked from inside and on the host.

The daemon's root must be reachable by that uid (the overlays are mounted by it), so this
module runs its own daemon in a directory below /tmp instead of pytest's 0700 tree.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from test_escape import copy_root, keys, run

from boxd._plan import id_range

pytestmark = pytest.mark.root

START, COUNT = id_range()


@pytest.fixture(scope="module")
def boxd() -> Iterator[Daemon]:
    top = Path(tempfile.mkdtemp(prefix="boxd-userns-"))
    try:
        os.chmod(top, 0o711)
        with running_daemon(top) as daemon:
            yield daemon
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def image(busybox_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_root(busybox_root, tmp_path_factory.mktemp("userns-image") / "root")


def probe(boxd: Daemon, image: Path, *args: str, opts: tuple[str, ...] = ()) -> dict[str, str]:
    return keys(run(boxd, image, "/bin/probe", *args, opts=("--isolate-user", *opts)))


def test_root_inside_is_an_unprivileged_host_uid(boxd: Daemon, image: Path) -> None:
    assert probe(boxd, image, "id")["uid"] == "0"
    maps = run(boxd, image, "/bin/probe", "cat", "/proc/self/uid_map", opts=("--isolate-user",))
    assert maps.split() == ["0", str(START), str(COUNT)]
    boxd.ctl("run", "-d", "--name", "userns-sleeper", "--isolate-user", str(image),
             "/bin/probe", "sleep", "600")  # fmt: skip
    try:
        pid = boxd.inspect("userns-sleeper")["state"]["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(START)] * 4
        # An exec'd process joins the same user namespace.
        execd = boxd.ctl("exec", "userns-sleeper", "/bin/probe", "cat", "/proc/self/uid_map")
        assert execd.stdout.split() == ["0", str(START), str(COUNT)]
    finally:
        boxd.ctl("rm", "-f", "userns-sleeper")


def test_image_is_root_owned_inside_and_untouched_on_the_host(boxd: Daemon, image: Path) -> None:
    """The layers are id-mapped: host root's files are the container root's, and writes go
    to the container's upper layer, owned by the mapped uid, never to the image."""
    before = {p.name: os.lstat(p).st_mtime_ns for p in image.iterdir()}
    etc = probe(boxd, image, "stat", "/etc")
    assert (etc["uid"], etc["gid"]) == ("0", "0")
    script = "echo changed > /etc/passwd && echo new > /etc/new-file && mkdir /root2 && echo ok"
    assert run(boxd, image, "/bin/sh", "-c", script, opts=("--isolate-user",)) == "ok\n"
    assert "changed" not in (image / "etc" / "passwd").read_text()
    assert not (image / "etc" / "new-file").exists()
    assert {p.name: os.lstat(p).st_mtime_ns for p in image.iterdir()} == before


def test_host_root_files_stay_unwritable(boxd: Daemon, image: Path) -> None:
    """A volume is not id-mapped: what host root owns is nobody's inside, and container root
    cannot write it, whatever its mode allows root."""
    volume = boxd.root.parent / "volume"
    volume.mkdir(mode=0o755)
    secret = volume / "secret"
    secret.write_text("host")
    os.chmod(secret, 0o644)
    opts = ("-v", f"{volume}:/v")
    assert probe(boxd, image, "stat", "/v/secret", opts=opts)["uid"] == "65534"
    out = run(boxd, image, "/bin/sh", "-c", "/bin/probe write /v/secret x; /bin/probe "
              "write /v/new x; true", opts=("--isolate-user", *opts))  # fmt: skip
    assert out.split("\n")[:2] == ["errno=13 EACCES", "errno=13 EACCES"]
    assert secret.read_text() == "host" and sorted(os.listdir(volume)) == ["secret"]
    assert stat.S_IMODE(os.stat(volume).st_mode) == 0o755


def test_namespaced_capabilities_do_not_reach_the_host(boxd: Daemon, image: Path) -> None:
    script = (
        "/bin/probe mknod /tmp/disk b 8 0; /bin/probe write /proc/sys/kernel/hostname x; "
        "/bin/probe write /sys/kernel/profiling x; true"
    )
    for network in ("host", "none"):
        out = run(boxd, image, "/bin/sh", "-c", script,
                  opts=("--isolate-user", "--network", network))  # fmt: skip
        assert out.splitlines() == ["errno=1 EPERM", "errno=30 EROFS", "errno=30 EROFS"], network


def test_a_root_it_cannot_reach_is_refused_by_name(tmp_path: Path, image: Path) -> None:
    """pytest's own temporary tree is 0700: a daemon there cannot run --isolate-user."""
    with running_daemon(tmp_path) as daemon:
        r = daemon.ctl("run", "--rm", "--isolate-user", str(image), "/bin/true", check=False)
    assert r.returncode == 125
    blocked = next(p for p in (tmp_path, *tmp_path.parents) if not os.stat(p).st_mode & 0o001)
    assert f"cannot enter {blocked} (mode 0700): the daemon's --root" in r.stderr


def test_a_volume_its_root_cannot_reach_is_bound_by_the_daemon(
    boxd: Daemon, image: Path, tmp_path: Path
) -> None:
    """pytest's temporary tree is 0700, which the container's root (host uid START)
    cannot enter: the daemon makes the bind and the child moves it in, as runc does for
    ``-v /root/x:/x`` under userns-remap.  The files keep their host owners (unmapped:
    nobody inside), and the container's root may not write where the host's root may."""
    shared = tmp_path / "shared"  # 0755 itself, below 0700 directories
    shared.mkdir(mode=0o755)
    (shared / "file").write_text("reached\n")
    out = run(boxd, image, "/bin/sh", "-c", "cat /v/file; /bin/probe write /v/new x; true",
              opts=("--isolate-user", "-v", f"{shared}:/v"))  # fmt: skip
    assert out.splitlines() == ["reached", "errno=13 EACCES"]
    assert not (shared / "new").exists()


def test_unprivileged_ports_but_no_ping_groups_in_a_user_namespace(
    boxd: Daemon, image: Path
) -> None:
    """Docker's ip_unprivileged_port_start=0 is set in a user-namespaced container's network
    namespace too; its ping_group_range is not (the groups beyond its map)."""
    out = run(boxd, image, "/bin/cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start",
              "/proc/sys/net/ipv4/ping_group_range", opts=("--isolate-user",))  # fmt: skip
    ports, *groups = out.split()
    assert ports == "0" and groups != ["0", "2147483647"]  # the kernel's "1 0", unmapped


def test_terminal_inside_a_user_namespace(boxd: Daemon, image: Path) -> None:
    assert run(boxd, image, "/bin/tty", opts=("--isolate-user", "-t")) == "/dev/pts/0\n"


def test_its_own_cgroups_read_only_in_a_user_namespace(boxd: Daemon, image: Path) -> None:
    """On a host with v1 hierarchies the container's /sys/fs/cgroup is its own cgroups
    bound by its root (host uid START): readable, its limits; not writable, not even
    remountable read-write (tests/test_cgroupfs.py has the layout)."""
    if " - cgroup " not in Path("/proc/self/mountinfo").read_text():
        pytest.skip("no v1 cgroup hierarchy here: a pure v2 host shows the container's cgroup2")
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
        "/bin/probe write /sys/fs/cgroup/memory/memory.limit_in_bytes 1; "
        "/bin/probe write /sys/fs/cgroup/new x; "
        "mkdir /sys/fs/cgroup/memory/sub 2>/dev/null || echo mkdir refused; "
        "mount -o remount,rw /sys/fs/cgroup/memory 2>/dev/null || echo remount refused; "
        "ls -p /sys/fs/cgroup/memory | grep -c /; true"
    )
    for network in ("host", "none"):
        out = run(boxd, image, "/bin/sh", "-c", script,
                  opts=("--isolate-user", "--network", network, "--memory", "32m",
                        "--pids-limit", "40"))  # fmt: skip
        assert out.splitlines() == [
            str(32 << 20),
            "40",
            "errno=30 EROFS",
            "errno=30 EROFS",
            "mkdir refused",
            "remount refused",
            "0",
        ], network

"""Volumes with a mount (Docker's local driver's ``type``, ``device`` and ``o``): a tmpfs
and an ext4 file system on a real loop device mounted on the volume's ``_data`` while a
container that uses it runs, shared by the containers that run at once, unmounted after
the last one; a mount that fails fails the start in Docker's words; a daemon killed
meanwhile leaves the mount to the next, which undoes it when no container uses it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon
from docker_clients import docker, needs_cli

from boxd import _mountinfo
from boxd._volumes import check_options, mount_options

pytestmark = pytest.mark.root


def _mounted(daemon: Daemon, name: str) -> bool:
    return str(daemon.root.resolve() / "volumes" / name / "_data") in _mountinfo.mount_points()


def test_options_as_docker_s_local_driver_reads_them() -> None:
    ro, nosuid, bind, rec, shared = 0x1, 0x2, 0x1000, 0x4000, 1 << 20
    assert mount_options("") == (0, 0, "")
    assert mount_options("size=10m,uid=1000,ro,nosuid") == (ro | nosuid, 0, "size=10m,uid=1000")
    assert mount_options("rbind,rw,rshared") == (bind | rec, shared | rec, "")
    assert mount_options("addr=10.0.0.1,nfsvers=4,soft") == (0, 0, "addr=10.0.0.1,nfsvers=4,soft")
    check_options("local", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    check_options("local", {"type": "nfs", "device": ":/export", "o": "addr=nas,rw"})
    for options, words in [
        ({"foo": "bar"}, 'invalid option: "foo"'),
        ({"type": "tmpfs"}, 'missing required option: "device"'),
        ({"device": "/dev/sdb1"}, 'missing required option: "type"'),
        ({"o": "size=1m", "type": "tmpfs"}, 'missing required option: "device"'),
        ({"type": "cifs", "device": "//srv:445/share"}, "port not allowed in CIFS device URL"),
        ({"size": "10m"}, "quota size requested but no quota support"),
        ({"type": "none", "o": "bind", "device": "/no/such/dir"}, "not an existing directory"),
    ]:
        with pytest.raises(ValueError, match=words):
            check_options("local", options)


@needs_cli
def test_a_tmpfs_volume_is_mounted_while_its_containers_run(daemon: Daemon) -> None:
    r = docker(daemon, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
               "-o", "o=size=2m,uid=1000,mode=0750", "fast")  # fmt: skip
    assert r.returncode == 0, r.stderr
    [shape] = json.loads(docker(daemon, "volume", "inspect", "fast").stdout)
    assert shape["Options"] == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "size=2m,uid=1000,mode=0750",
    }
    assert not _mounted(daemon, "fast")  # not until a container uses it
    daemon.ctl("run", "-d", "--name", "one", "-v", "fast:/d", "default", "sh", "-c",
               "echo kept > /d/f; sleep 600")  # fmt: skip
    assert _mounted(daemon, "fast")
    r = daemon.ctl("run", "--rm", "-v", "fast:/d", "default", "sh", "-c",
                   "cat /d/f; stat -c '%u %a' /d; df -k /d | tail -1")  # fmt: skip
    kept, owner, usage = r.stdout.splitlines()
    assert (kept, owner) == ("kept", "1000 750")
    assert usage.split()[0] == "tmpfs" and usage.split()[1] == "2048"
    assert _mounted(daemon, "fast")  # the first one still runs
    daemon.ctl("rm", "-f", "one")
    assert not _mounted(daemon, "fast")  # after its last user, as Docker's
    r = daemon.ctl("run", "--rm", "-v", "fast:/d", "default", "ls", "/d")
    assert r.stdout == ""  # a tmpfs: a new one
    assert not _mounted(daemon, "fast")
    daemon.ctl("volume", "rm", "fast")


@pytest.fixture
def loop_ext4(tmp_path: Path) -> Iterator[str]:
    """A real block device: a loop device over an ext4 image, detached after the test."""
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=True)


def test_a_block_device_s_file_system_keeps_its_files_across_runs(
    daemon: Daemon, loop_ext4: str
) -> None:
    daemon.ctl("volume", "create", "-o", "type=ext4", "-o", f"device={loop_ext4}",
               "-o", "o=noatime", "disk")  # fmt: skip
    daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "sh", "-c", "echo 1 > /d/n")
    assert not _mounted(daemon, "disk")
    r = daemon.ctl("run", "--rm", "-v", "disk:/d:ro", "default", "sh", "-c",
                   "cat /d/n; grep ' /d ' /proc/mounts")  # fmt: skip
    n, mount = r.stdout.splitlines()
    assert n == "1" and " ext4 " in mount and "noatime" in mount
    daemon.ctl("volume", "rm", "disk")


def test_a_copy_into_a_stopped_container_reaches_its_volume_s_file_system(
    daemon: Daemon, loop_ext4: str, tmp_path: Path
) -> None:
    """cp into (and out of) a container at rest: its volume's file system is mounted
    meanwhile, as Docker's copy mounts it, so the file lands on the disk, not below it."""
    daemon.ctl("volume", "create", "-o", "type=ext4", "-o", f"device={loop_ext4}", "disk")
    daemon.ctl("create", "--name", "rest", "-v", "disk:/d", "default", "true")
    (tmp_path / "in.txt").write_text("copied in\n")
    daemon.ctl("cp", str(tmp_path / "in.txt"), "rest:/d/in.txt")
    assert not _mounted(daemon, "disk")  # undone after the copy
    daemon.ctl("cp", "rest:/d/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "copied in\n"
    r = daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "cat", "/d/in.txt")
    assert r.stdout == "copied in\n"
    daemon.ctl("rm", "rest")
    daemon.ctl("volume", "rm", "disk")


def test_a_disk_volume_is_filled_from_the_image_when_empty(daemon: Daemon, loop_ext4: str) -> None:
    """As Docker fills an empty volume from the image at a container's create: the disk is
    mounted for it and filled, once; its files are never emptied by boxd."""
    daemon.ctl("volume", "create", "-o", "type=ext4", "-o", f"device={loop_ext4}", "disk")
    # Nothing at /d in the image: no fill; the file system's lost+found goes.
    daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "rmdir", "/d/lost+found")
    daemon.ctl("create", "--name", "skel", "-v", "disk:/usr/share/base-files", "default", "true")
    assert not _mounted(daemon, "disk")  # mounted for the fill only
    r = daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "ls", "-A", "/d")
    assert sorted(r.stdout.split()) == sorted(
        p.name for p in Path("/usr/share/base-files").iterdir()
    )
    daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "sh", "-c", "rm /d/motd")
    daemon.ctl("create", "--name", "again", "-v", "disk:/usr/share/base-files", "default", "true")
    r = daemon.ctl("run", "--rm", "-v", "disk:/d", "default", "ls", "-A", "/d")
    assert "motd" not in r.stdout.split()  # not empty: not filled again
    daemon.ctl("rm", "skel", "again")
    daemon.ctl("volume", "rm", "disk")


def test_a_mount_that_fails_fails_the_start_in_docker_s_words(daemon: Daemon) -> None:
    daemon.ctl("volume", "create", "-o", "type=nosuchfs", "-o", "device=x", "bad")
    r = daemon.ctl("run", "--name", "b", "-v", "bad:/d", "default", "true", check=False)
    path = daemon.root.resolve() / "volumes" / "bad" / "_data"
    assert r.returncode == 125
    assert (
        f"error while mounting volume '{path}': failed to mount local volume: mount x:{path}, "
        "flags: 0x0, data: : No such device"
    ) in r.stderr
    assert daemon.inspect("b")["state"]["status"] == "created"
    assert not _mounted(daemon, "bad")
    daemon.ctl("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
               "-o", "o=password=hunter2,nosuch=1", "secret")  # fmt: skip
    r = daemon.ctl("run", "--rm", "-v", "secret:/d", "default", "true", check=False)
    assert r.returncode == 125 and "password=********" in r.stderr
    assert "hunter2" not in r.stderr
    daemon.ctl("rm", "b")
    daemon.ctl("volume", "rm", "bad", "secret")


def test_a_killed_daemon_s_mount_is_the_next_one_s(daemon: Daemon) -> None:
    """Live restore: the container runs on with its volume mounted; the next daemon knows
    the mount, keeps it while the container runs and undoes it after."""
    daemon.ctl("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "kept")
    daemon.ctl("run", "-d", "--name", "lv", "-v", "kept:/d", "default", "sleep", "600")
    daemon.stop(signal.SIGKILL)
    assert _mounted(daemon, "kept")
    daemon.start()
    assert _mounted(daemon, "kept")
    daemon.ctl("run", "--rm", "-v", "kept:/d", "default", "touch", "/d/x")
    assert _mounted(daemon, "kept")  # the adopted container still uses it
    daemon.ctl("rm", "-f", "lv")
    assert not _mounted(daemon, "kept")
    daemon.ctl("volume", "rm", "kept")


def test_containers_starting_at_once_share_one_mount(daemon: Daemon) -> None:
    """Starts on one volume at the same time mount it once (the mounts are made one at a
    time), and the last end undoes it."""
    daemon.ctl("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "shared")
    names = [f"at-once-{n}" for n in range(4)]
    boxctl = [sys.executable, "-m", "boxctl", "--socket", str(daemon.socket), "run", "-d"]
    procs = [
        subprocess.Popen(
            [
                *boxctl,
                "--name",
                name,
                "-v",
                "shared:/d",
                "default",
                "sh",
                "-c",
                f"touch /d/{name}; sleep 600",
            ],
            stdout=subprocess.DEVNULL,
        )
        for name in names
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    point = str(daemon.root.resolve() / "volumes" / "shared" / "_data")
    assert _mountinfo.mount_points().count(point) == 1
    r = daemon.ctl("run", "--rm", "-v", "shared:/d", "default", "ls", "/d")
    assert sorted(r.stdout.split()) == names  # one file system, every container's file
    daemon.ctl("rm", "-f", *names)
    assert point not in _mountinfo.mount_points()
    daemon.ctl("volume", "rm", "shared")

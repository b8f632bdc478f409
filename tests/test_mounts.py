"""--tmpfs options, /dev/shm, single-file volumes and a working directory that is created:
parsed here, and checked inside real containers through boxctl and a real daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import Daemon

from boxd._tmpfs import (
    MS_NOATIME,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    parse_tmpfs,
)


def test_tmpfs_defaults_are_dockers() -> None:
    assert parse_tmpfs("/run") == ("/run", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777")


def test_tmpfs_options() -> None:
    path, flags, data = parse_tmpfs("/run/t:size=10m,mode=0700,uid=1000,gid=50,nr_inodes=1k")
    assert path == "/run/t"
    assert flags == MS_NOSUID | MS_NODEV | MS_NOEXEC
    assert data == "mode=700,size=10485760,uid=1000,gid=50,nr_inodes=1024"
    # A flag lifts its default; the last of two settings counts.
    _, flags, data = parse_tmpfs("/x:exec,suid,dev,ro,noatime,size=1m,size=2k")
    assert flags == MS_RDONLY | MS_NOATIME
    assert data == "mode=1777,size=2048"
    assert parse_tmpfs("/x:noexec,exec")[1] == MS_NOSUID | MS_NODEV
    # A share of the host's memory, as the kernel (and so Docker) takes it.
    assert parse_tmpfs("/x:size=50%")[2] == "mode=1777,size=50%"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("run", "'run' is not an absolute path"),
        ("/run:sizee=10m", "unknown option 'sizee'"),
        ("/run:size=10x", "unknown unit 'x'"),
        ("/run:size=", "invalid --tmpfs '/run:size=' size ''"),
        ("/run:mode=888", "mode '888' is not octal"),
        ("/run:uid=bob", "uid 'bob' is not a numeric id"),
        ("/run:gid=-1", "gid '-1' is not a numeric id"),
        ("/run:exec=1", "option 'exec' takes no value"),
        ("/run:size", "option 'size' needs a value (size=)"),
        ("/run:mpol=default", "unknown option 'mpol' (use ro, rw, [no]exec"),
        ("/run:size=1.5%", "size '1.5%' is not a whole percentage"),
        ("/run:size=%", "size '%' is not a whole percentage"),
        ("/run:nr_inodes=10%", "nr_inodes '10%': unknown unit '%'"),
    ],
)
def test_bad_tmpfs_options_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid --tmpfs") as info:
        parse_tmpfs(spec)
    assert message in str(info.value)


# Mount options and size of a mount point, and whether a copied binary runs from it.
PROBE = """
point=$1
grep " $point " /proc/self/mountinfo | tail -n 1 | cut -d' ' -f6
df -k "$point" | tail -n 1 | tr -s ' ' | cut -d' ' -f2
stat -c '%a %u %g' "$point"
cp /bin/true "$point/true" && "$point/true"; echo "exec=$?"
"""


def _probe(daemon: Daemon, point: str, *options: str) -> list[str]:
    out = daemon.ctl(
        "run", "--rm", *options, "default", "/bin/sh", "-c", PROBE, "probe", point
    ).stdout.splitlines()
    assert len(out) == 4, out
    return [",".join(sorted(out[0].split(","))), *out[1:]]


@pytest.mark.root
def test_tmpfs_and_shm_in_a_container(daemon: Daemon) -> None:
    # Docker's defaults: nosuid, nodev, noexec; mode 1777; no size of its own.
    assert _probe(daemon, "/run/t", "--tmpfs", "/run/t")[0] == "nodev,noexec,nosuid,relatime,rw"
    assert _probe(daemon, "/run/t", "--tmpfs", "/run/t")[2:] == ["1777 0 0", "exec=126"]
    # Options as Docker takes them (before: a directory named "/run/t:size=10m,...").
    sized = _probe(daemon, "/run/t", "--tmpfs", "/run/t:size=10m,mode=750,uid=7,gid=8,exec")
    assert sized == ["nodev,nosuid,relatime,rw", "10240", "750 7 8", "exec=0"]
    # /dev/shm: Docker's 64 MiB, nosuid, nodev and noexec; --shm-size resizes it.
    assert _probe(daemon, "/dev/shm") == ["nodev,noexec,nosuid,relatime,rw", "65536", "1777 0 0",
                                          "exec=126"]  # fmt: skip
    assert _probe(daemon, "/dev/shm", "--shm-size", "16m")[1] == "16384"
    # /dev itself: Docker's 64 MiB too (it was 64 KiB).
    assert _probe(daemon, "/dev")[:2] == ["nosuid,relatime,rw", "65536"]
    # Half of the host's memory (it was refused: '%' was no unit boxd knew).
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    half = int(_probe(daemon, "/run/t", "--tmpfs", "/run/t:size=50%")[1])
    assert abs(half - total / 2) < total / 100, (half, total)
    # A propagation among the options, as Docker takes it (moby's integration-cli
    # TestRunTmpfsMountsWithOptions): the mount's own, set after it.
    fields = "grep ' /run/t ' /proc/self/mountinfo | cut -d' ' -f7"
    for option, shown in (("shared", "shared:"), ("private", "-"), ("unbindable", "unbindable")):
        r = daemon.ctl("run", "--rm", "--tmpfs", f"/run/t:{option}", "default", "sh", "-c", fields)
        assert r.stdout.startswith(shown), (option, r.stdout)


@pytest.mark.root
def test_bad_tmpfs_and_shm_size_are_refused(daemon: Daemon) -> None:
    bad = daemon.ctl("run", "--rm", "--tmpfs", "/run:sise=1m", "default", "true", check=False)
    assert bad.returncode == 125
    assert "invalid --tmpfs '/run:sise=1m': unknown option 'sise'" in bad.stderr
    bad = daemon.ctl("create", "--shm-size", "0", "default", "true", check=False)
    assert bad.returncode == 125 and "invalid --shm-size '0'" in bad.stderr
    assert daemon.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
def test_single_file_volumes(daemon: Daemon, tmp_path: Path) -> None:
    greeting = tmp_path / "greeting"
    greeting.write_text("hello\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("10.1.2.3 db\n")
    script = (
        "cat /etc/greeting /etc/hosts; (echo x > /etc/greeting) 2>/dev/null || echo read-only;"
        "echo more >> /new/dir/greeting"
    )
    out = daemon.ctl(
        "run", "--rm", "-v", f"{greeting}:/etc/greeting:ro", "-v", f"{greeting}:/new/dir/greeting",
        "-v", f"{hosts}:/etc/hosts", "default", "/bin/sh", "-c", script,
    ).stdout  # fmt: skip
    assert out == "hello\n10.1.2.3 db\nread-only\n"
    assert greeting.read_text() == "hello\nmore\n"
    assert hosts.read_text() == "10.1.2.3 db\n"


@pytest.mark.root
def test_a_missing_working_directory_is_made(daemon: Daemon) -> None:
    out = daemon.ctl(
        "run", "--name", "w", "-u", "nobody", "-w", "/made/here", "default",
        "/bin/sh", "-c", "pwd; stat -c '%u:%g %a' . ..",
    ).stdout  # fmt: skip
    assert out == "/made/here\n0:0 755\n0:0 755\n"
    cid = daemon.inspect("w")["id"]
    # In the container's own upper layer, not in the image.
    assert (daemon.root / "containers" / cid / "fs" / "root" / "upper" / "made" / "here").is_dir()
    daemon.ctl("rm", "w")
    out = daemon.ctl("run", "--rm", "--read-only", "-w", "/ro/made", "default", "pwd").stdout
    assert out == "/ro/made\n"


@pytest.mark.root
def test_duplicate_mount_points_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    for options in (["--tmpfs", "/data", "--tmpfs", "/data/:size=1m"],
                    ["-v", f"{tmp_path}:/data", "--tmpfs", "/data"]):  # fmt: skip
        bad = daemon.ctl("run", "--rm", *options, "default", "true", check=False)
        assert bad.returncode == 125
        assert "duplicate mount point /data" in bad.stderr


@pytest.mark.root
def test_a_mount_below_another_lands_in_it(daemon: Daemon, tmp_path: Path) -> None:
    """Docker's order (sortMounts): the shallower mount first, volumes and tmpfs alike,
    whatever order they were given in; a mount below another is made in it, not hidden
    under it."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("host\n")
    out = daemon.ctl(
        "run", "--rm", "-v", f"{host}:/srv/in/host", "--tmpfs", "/srv",
        "-v", "inner:/a/b", "-v", "outer:/a", "default",
        "/bin/sh", "-c", "cat /srv/in/host/f; touch /a/b/in-inner",
    ).stdout  # fmt: skip
    assert out == "host\n"
    look = ("run", "--rm", "-v", "inner:/i", "default", "ls", "-A", "/i")
    assert daemon.ctl(*look).stdout == "in-inner\n"


@pytest.mark.root
def test_a_mount_at_etc_keeps_its_files(daemon: Daemon, tmp_path: Path) -> None:
    """The container's own /etc/hostname, /etc/hosts (and /etc/resolv.conf) go over a
    directory bound at /etc as Docker puts them there, bound from the container's
    directory: the host's files are never written (they were overwritten), and a
    read-only one does not stop the start (the write there failed it)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("the host's\n")
    show = ("/bin/sh", "-c", "cat /etc/hostname; grep -c myname /etc/hosts")
    out = daemon.ctl("run", "--rm", "-h", "myname", "-v", f"{etc}:/etc", "default", *show)
    assert out.stdout == "myname\n1\n"
    assert (etc / "hosts").read_text() == "the host's\n"
    assert (etc / "hostname").read_text() == ""  # the mount point, as runc makes it
    out = daemon.ctl(
        "run", "--rm", "-h", "ro", "-v", f"{etc}:/etc:ro", "default", "cat", "/etc/hostname"
    )
    assert out.stdout == "ro\n"
    assert (etc / "hosts").read_text() == "the host's\n"


@pytest.mark.root
def test_a_directory_on_a_file_is_explained(daemon: Daemon, tmp_path: Path) -> None:
    """A bind of a directory on a file of the image (or of a file on a directory) fails
    naming both, with Docker's hint of why."""
    (tmp_path / "file").write_text("")
    for spec in (f"{tmp_path}:/etc/passwd", f"{tmp_path / 'file'}:/etc"):
        bad = daemon.ctl("run", "--rm", "-v", spec, "default", "true", check=False)
        host, _, point = spec.partition(":")
        assert bad.returncode == 125
        assert (
            f"mount {host} on {point} (a directory on a file, or a file on a directory?):"
            " Not a directory" in bad.stderr
        ), bad.stderr

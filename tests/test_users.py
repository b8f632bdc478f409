"""``-u USER[:GROUP]`` resolved in the container's own /etc/passwd and /etc/group, read
inside its root filesystem (never through a symlink to a host file)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon

from boxd._plan import id_range
from boxd._rootfs import Image, Layer, read_container_file
from boxd._users import ExecUser, check_user, resolve

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:1001:1001:An app:/home/app:/bin/sh
# a comment, and a short line:
broken:x:7
"""
GROUP = """\
root:x:0:
wheel:x:10:root,app
staff:x:50:app
nogroup:x:65534:
app:x:1001:
"""


def test_names_and_ids_resolve_as_docker_does() -> None:
    # The primary group leads the supplementary ones, as in Docker since 20.10.18.
    assert resolve("app", PASSWD, GROUP) == ExecUser(1001, 1001, (1001, 10, 50), "/home/app")
    assert resolve("1001", PASSWD, GROUP) == ExecUser(1001, 1001, (1001, 10, 50), "/home/app")
    # An explicit group replaces the gid and brings no other supplementary groups.
    assert resolve("app:staff", PASSWD, GROUP) == ExecUser(1001, 50, (50,), "/home/app")
    assert resolve("app:7", PASSWD, GROUP) == ExecUser(1001, 7, (7,), "/home/app")
    assert resolve("nobody:wheel", PASSWD, GROUP) == ExecUser(65534, 10, (10,), "/nonexistent")
    # A uid the image does not know runs with gid 0, as in Docker.
    assert resolve("4242", PASSWD, GROUP) == ExecUser(4242, 0, (0,), "/")
    assert resolve("4242:4242", None, None) == ExecUser(4242, 4242, (4242,), "/")
    # Root, named or not, gets the groups that list it.
    assert resolve("", PASSWD, GROUP) == ExecUser(0, 0, (0, 10), "/root")
    assert resolve("root", PASSWD, GROUP) == resolve("0", PASSWD, GROUP)
    # HOME of a uid passwd lacks, root's too, is /, as runc sets it.
    assert resolve("", None, None) == ExecUser(0, 0, (0,), "/")


def test_group_add_appends_names_and_ids() -> None:
    added = resolve("app", PASSWD, GROUP, ("nogroup", "4242", "staff", "4242"))
    # Once each, but a group the user has already stays twice, as Docker sets them.
    assert added == ExecUser(1001, 1001, (1001, 10, 50, 65534, 4242, 50), "/home/app")
    assert resolve("4242", None, None, ("7",)).groups == (0, 7)
    with pytest.raises(ValueError, match="unable to find group admins: no matching entries"):
        resolve("app", PASSWD, GROUP, ("admins",))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nobody2", "unable to find user nobody2: no matching entries in passwd file"),
        ("broken", "unable to find user broken: no matching entries in passwd file"),
        ("app:admins", "unable to find group admins: no matching entries in group file"),
        ("app:x:y", "invalid --user 'app:x:y'"),
        ("a b", "invalid --user 'a b'"),
        ("4294967295", "id 4294967295 is out of range"),
    ],
)
def test_unknown_users_and_groups_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve(spec, PASSWD, GROUP)
    assert message in str(info.value)


def test_check_user_accepts_names_and_ids() -> None:
    for spec in ("nobody", "1000", "1000:50", "www-data:www-data", "app:0", "app:", ":50"):
        check_user(spec)


def test_an_empty_side_of_the_colon_is_as_docker_reads_it() -> None:
    """``:GROUP`` is root with that group, ``USER:`` that user with its own groups."""
    assert resolve(":staff", PASSWD, GROUP) == ExecUser(0, 50, (50,), "/root")
    assert resolve("app:", PASSWD, GROUP) == resolve("app", PASSWD, GROUP)
    assert resolve(":", PASSWD, GROUP) == resolve("", PASSWD, GROUP)


# ---- reading the files inside the image -----------------------------------------------------


def _image(tmp_path: Path) -> tuple[Image, Path, Path]:
    lower = tmp_path / "image"
    (lower / "etc").mkdir(parents=True)
    (lower / "usr" / "share").mkdir(parents=True)
    container = tmp_path / "container"
    upper = container / "fs" / "root" / "upper"
    upper.mkdir(parents=True)
    return Image(str(lower), (Layer(str(lower), "/"),)), lower, container


def test_files_are_read_as_the_container_sees_them(tmp_path: Path) -> None:
    image, lower, container = _image(tmp_path)
    (lower / "etc" / "passwd").write_text("from the image\n")
    assert read_container_file(image, container, "/etc/passwd") == b"from the image\n"
    # A symlink inside the image is followed inside it.
    (lower / "usr" / "share" / "group").write_text("shared\n")
    (lower / "etc" / "group").symlink_to("../usr/share/group")
    assert read_container_file(image, container, "/etc/group") == b"shared\n"
    # The container's upper layer wins; its whiteout hides the image's file.
    upper_etc = container / "fs" / "root" / "upper" / "etc"
    upper_etc.mkdir()
    (upper_etc / "passwd").write_text("written by the container\n")
    assert read_container_file(image, container, "/etc/passwd") == b"written by the container\n"
    (upper_etc / "passwd").unlink()
    os.mknod(upper_etc / "passwd", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    assert read_container_file(image, container, "/etc/passwd") is None


@pytest.mark.parametrize("how", ["absolute", "relative", "dir"])
def test_symlinks_never_reach_a_host_file(tmp_path: Path, how: str) -> None:
    image, lower, container = _image(tmp_path)
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    if how == "absolute":
        (lower / "etc" / "passwd").symlink_to(host / "passwd")
    elif how == "relative":
        (lower / "etc" / "passwd").symlink_to("../" * 12 + str(host / "passwd").lstrip("/"))
    else:
        os.rmdir(lower / "etc")
        (lower / "etc").symlink_to(host)
    assert read_container_file(image, container, "/etc/passwd") is None


def test_special_files_are_not_opened(tmp_path: Path) -> None:
    image, lower, container = _image(tmp_path)
    os.mkfifo(lower / "etc" / "passwd")  # opening it for reading would block
    assert read_container_file(image, container, "/etc/passwd") is None
    os.mknod(lower / "etc" / "group", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    assert read_container_file(image, container, "/etc/group") is None


# ---- through boxctl and a real daemon -------------------------------------------------------


def _root_with_users(busybox_root: Path, dest: Path) -> Path:
    shutil.copytree(busybox_root, dest, symlinks=True)
    os.chmod(dest, 0o755)  # a non-root user must be able to enter "/"
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


@pytest.mark.root
def test_users_by_name_in_run_and_exec(daemon: Daemon, busybox_root: Path, tmp_path: Path) -> None:
    image = str(_root_with_users(busybox_root, tmp_path / "image"))
    ids = 'echo "$(id -u) $(id -g) $(id -G) $HOME"'
    run = daemon.ctl("run", "--rm", "-u", "app", image, "/bin/sh", "-c", ids).stdout
    assert run == "1001 1001 1001 10 50 /home/app\n"
    run = daemon.ctl("run", "--rm", "-u", "app:staff", image, "/bin/sh", "-c", ids).stdout
    assert run == "1001 50 50 /home/app\n"
    # busybox's id as under Docker: the kernel's sorted list, the primary group in it.
    run = daemon.ctl("run", "--rm", "-u", "4242", "--group-add", "staff", image, "id").stdout
    assert run == "uid=4242 gid=0(root) groups=0(root),50(staff)\n"
    run = daemon.ctl("run", "--rm", "-u", "app", image, "id").stdout
    assert run == "uid=1001(app) gid=1001(app) groups=10(wheel),50(staff),1001(app)\n"
    # An empty HOME is the user's, as runc sets it; a uid passwd lacks has /.
    home = ("/bin/sh", "-c", "echo $HOME")
    run = daemon.ctl("run", "--rm", "-e", "HOME=", "-u", "app", image, *home).stdout
    assert run == "/home/app\n"
    (Path(image) / "etc" / "passwd").write_text("")
    assert daemon.ctl("run", "--rm", image, *home).stdout == "/\n"
    (Path(image) / "etc" / "passwd").write_text(PASSWD)
    # The image `default` has Debian's nobody and nogroup.
    run = daemon.ctl("run", "--rm", "-u", "nobody", "default", "/bin/sh", "-c", ids).stdout
    assert run == "65534 65534 65534 /nonexistent\n"
    daemon.ctl("run", "-d", "--name", "c", image, "sleep", "300")
    execd = daemon.ctl("exec", "-u", "app", "c", "/bin/sh", "-c", ids).stdout
    assert execd == "1001 1001 1001 10 50 /home/app\n"
    execd = daemon.ctl("exec", "-u", "nobody:wheel", "c", "/bin/sh", "-c", ids).stdout
    assert execd == "65534 10 10 /nonexistent\n"
    # A user the container adds later is found by exec: its upper layer is read.
    daemon.ctl("exec", "c", "/bin/sh", "-c", "echo 'late:x:77:77::/:/bin/sh' >> /etc/passwd")
    assert daemon.ctl("exec", "-u", "late", "c", "id", "-u").stdout == "77\n"
    bad = daemon.ctl("exec", "-u", "nobody2", "c", "true", check=False)
    assert bad.returncode == 126  # an exec that cannot start, as Docker's (run's is 125)
    assert "unable to find user nobody2: no matching entries in passwd file" in bad.stderr
    daemon.ctl("rm", "-f", "c")


@pytest.mark.root
def test_unknown_user_is_refused(daemon: Daemon) -> None:
    bad = daemon.ctl("run", "--rm", "-u", "nobody2", "default", "true", check=False)
    assert bad.returncode == 125
    assert "unable to find user nobody2: no matching entries in passwd file" in bad.stderr
    bad = daemon.ctl("run", "--rm", "-u", "nobody:nogroup2", "default", "true", check=False)
    assert bad.returncode == 125
    assert "unable to find group nogroup2: no matching entries in group file" in bad.stderr
    assert daemon.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
def test_a_symlinked_passwd_never_reads_the_hosts(
    daemon: Daemon, busybox_root: Path, tmp_path: Path
) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("evil:x:4242:4242::/:/bin/sh\n")
    image = _root_with_users(busybox_root, tmp_path / "image")
    (image / "etc" / "passwd").unlink()
    (image / "etc" / "passwd").symlink_to(host)
    bad = daemon.ctl("run", "--rm", "-u", "evil", str(image), "true", check=False)
    assert bad.returncode == 125
    assert "unable to find user evil: no matching entries in passwd file" in bad.stderr


@pytest.mark.root
def test_containers_get_umask_022_whatever_the_daemons(tmp_path: Path) -> None:
    """A daemon started under umask 077 (a root shell's, a service's) sets Docker's 022:
    its containers' processes (run and exec) and a new volume's directory had 077."""
    caller = os.umask(0o077)
    try:
        with running_daemon(tmp_path) as daemon:
            script = "umask; stat -c %a /v; touch /v/f; stat -c %a /v/f"
            run = daemon.ctl("run", "--rm", "-v", "vol:/v", "default", "sh", "-c", script)
            assert run.stdout == "0022\n755\n644\n"
            daemon.ctl("run", "-d", "--name", "c", "default", "sleep", "300")
            assert daemon.ctl("exec", "c", "sh", "-c", "umask").stdout == "0022\n"
            daemon.ctl("rm", "-f", "c")
    finally:
        os.umask(caller)


@pytest.fixture
def traversable(busybox_root: Path) -> Iterator[tuple[Daemon, str]]:
    """A daemon and the users' image where --isolate-user's root may traverse to them
    (pytest's directories are 0700)."""
    top = Path(tempfile.mkdtemp(prefix="boxd-users-"))
    try:
        os.chmod(top, 0o711)
        image = str(_root_with_users(busybox_root, top / "image"))
        with running_daemon(top / "daemon") as daemon:
            yield daemon, image
    finally:
        shutil.rmtree(top)


@pytest.mark.root
def test_a_non_root_user_can_reopen_its_stdio(traversable: tuple[Daemon, str]) -> None:
    """``/dev/stdout`` and ``/proc/self/fd/N`` reopen the daemon's pipes (mode 0600): they
    belong to the process's user, as runc makes them (nginx's logs linked to /dev/stdout
    under ``-u``), in run and exec, and to its root under --isolate-user (host root is
    unmapped there).  The host's /dev/null stays root's."""
    daemon, image = traversable
    script = "echo out > /dev/stdout; echo err > /proc/self/fd/2; stat -Lc %u /dev/stdout"
    for flags, uid in ((), 1001), (("-u", "4242"), 4242), (("--isolate-user", "-u", "0"), 0):
        run = daemon.ctl("run", "--rm", "-u", "app", *flags, image, "/bin/sh", "-c", script)
        assert (run.stdout, run.stderr) == (f"out\n{uid}\n", "err\n"), flags
    daemon.ctl("run", "-d", "--name", "c", "-u", "app", image, "sleep", "300")
    execd = daemon.ctl("exec", "-i", "c", "/bin/sh", "-c", "cat > /dev/stdout", input=b"in\n")
    assert execd.stdout == "in\n"
    daemon.ctl("rm", "-f", "c")
    assert os.stat("/dev/null").st_uid == 0


@pytest.mark.root
def test_a_terminal_belongs_to_the_user_and_the_tty_group(traversable: tuple[Daemon, str]) -> None:
    """``-t -u 1000``: the terminal is the user's and group 5's (mode 0620), as under
    Docker, whose devpts takes gid=5 whether the image names that group or not (this
    image does not: the group was root's), in run and exec and under --isolate-user."""
    daemon, image = traversable
    show = ("/bin/sh", "-c", 'stat -c "%u %g %a" $(tty)')
    for flags in (), ("--isolate-user",):
        run = daemon.ctl("run", "--rm", "-t", "-u", "app", *flags, image, *show)
        assert run.stdout == "1001 5 620\n", flags
    daemon.ctl("run", "-d", "--name", "c", image, "sleep", "300")
    assert daemon.ctl("exec", "-t", "-u", "app", "c", *show).stdout == "1001 5 620\n"
    daemon.ctl("rm", "-f", "c")


@pytest.mark.root
def test_an_id_isolate_user_does_not_map_is_named(traversable: tuple[Daemon, str]) -> None:
    """A uid, gid or group beyond --isolate-user's ids (65536 by default) is refused
    naming it (the kernel's "setuid 70000: Invalid argument"; an unmapped --group-add was
    blamed on the gid), in run (125) and exec (126); the last id still runs."""
    daemon, image = traversable
    n = id_range()[1]
    isolated = ("--rm", "--isolate-user", image, "true")
    for flags, what in (
        (("-u", f"{n + 4464}"), f"uid {n + 4464}"),
        (("-u", f"app:{n}"), f"gid {n}"),
        (("--group-add", f"{n}"), f"group {n}"),
    ):
        bad = daemon.ctl("run", *flags, *isolated, check=False)
        assert bad.returncode == 125, flags
        assert f"boxctl: {what} is not in --isolate-user's ids 0-{n - 1} (host " in bad.stderr
    assert daemon.ctl("run", "-u", f"{n - 1}", *isolated[:-1], "id", "-u").stdout == f"{n - 1}\n"
    daemon.ctl("run", "-d", "--name", "c", "--isolate-user", image, "sleep", "300")
    bad = daemon.ctl("exec", "-u", f"{n}", "c", "true", check=False)
    assert bad.returncode == 126 and f"uid {n} is not in --isolate-user's ids" in bad.stderr
    daemon.ctl("rm", "-f", "c")
    assert daemon.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
def test_isolate_users_ipc_namespace_is_its_roots(traversable: tuple[Daemon, str]) -> None:
    """Under --isolate-user the IPC namespace is made by the namespace's root, as runc
    makes it: /dev/mqueue (its mqueue file system's root) is the container root's, not
    the unmapped host root's (65534); a queue a user makes there is that user's."""
    daemon, image = traversable
    show = "stat -c '%u %g %a' /dev/mqueue; touch /dev/mqueue/q; stat -c %u /dev/mqueue/q"
    run = daemon.ctl("run", "--rm", "--isolate-user", "-u", "app", image, "/bin/sh", "-c", show)
    assert run.stdout == "0 0 1777\n1001\n"

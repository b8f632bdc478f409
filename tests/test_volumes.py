"""Named and anonymous volumes, ``--mount``, ``--volumes-from``, ``system prune``: parsed
here, and driven through the real boxctl, the docker CLI and docker-py against a real
daemon (one for the module, emptied after each test)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import build_busybox_root
from daemon_harness import Daemon, running_daemon
from docker_clients import api_call, needs_cli
from docker_clients import docker as _docker

from boxd._mounts import parse_mount, parse_volume_flag
from boxd._volumes import Volumes, copy_up, stacked_dirs

# ---- parsing ------------------------------------------------------------------------------


def test_volume_flag_forms() -> None:
    assert parse_volume_flag("/data") == {"host": "", "container": "/data"}
    assert parse_volume_flag("/data:ro") == {"host": "", "container": "/data", "read_only": True}
    assert parse_volume_flag("cache:/data") == {"host": "", "container": "/data", "volume": "cache"}
    assert parse_volume_flag("cache:/data:ro,nocopy") == {
        "host": "",
        "container": "/data",
        "volume": "cache",
        "read_only": True,
        "nocopy": True,
    }
    assert parse_volume_flag("/srv:/data:z") == {"host": "/srv", "container": "/data"}
    # Docker for Mac's consistency modes (compose files carry them): ignored, as by Docker
    # on Linux.
    for mode in ("cached", "delegated", "consistent"):
        assert parse_volume_flag(f"/srv:/data:{mode}") == {"host": "/srv", "container": "/data"}
    assert parse_volume_flag("cache:/data:ro,cached")["read_only"] is True
    assert parse_volume_flag("./here:/data") == {"host": "./here", "container": "/data"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (":/data", "use [SOURCE:]DEST[:OPTIONS]"),
        ("a:/data", "invalid volume name 'a'"),  # Docker's names have two characters or more
        ("b@d:/data", "invalid volume name 'b@d'"),
        ("cache:data", "'data' is not an absolute path"),
        ("cache:/data:rx", "unknown option 'rx'"),
        ("/srv:/data:nocopy", "nocopy is for volumes, not host paths"),
        # As dockerd (moby's integration-cli TestRunNamedVolumesMountedAsShared).
        ("cache:/data:shared", "propagation 'shared' is for binds of host paths"),
        ("/data:rslave", "propagation 'rslave' is for binds of host paths"),
        ("cache:/data:suid", "always nosuid and nodev"),
    ],
)
def test_bad_volume_flags_are_named(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_volume_flag(spec)


def test_mount_forms() -> None:
    m = parse_mount("type=bind,src=/srv,dst=/data,readonly")
    assert (m.type, m.volume_fields()) == (
        "bind",
        {"host": "/srv", "container": "/data", "read_only": True},
    )
    # Docker's csv: a quoted field may hold a comma; ro= takes Go's booleans.
    m = parse_mount('type=volume,"source=cache",target=/c,ro=false,volume-label=a=b,volume-nocopy')
    assert m.volume_fields() == {"host": "", "container": "/c", "volume": "cache", "nocopy": True}
    assert m.labels == {"a": "b"}
    m = parse_mount("type=volume,src=vo,dst=/d,volume-opt=type=none,volume-opt=device=/s=1")
    assert m.options == {"type": "none", "device": "/s=1"}
    assert parse_mount('type=bind,"src=/a,b",dst=/x').source == "/a,b"
    assert parse_mount("dst=/anon").volume_fields() == {"host": "", "container": "/anon"}
    m = parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=0700,ro=1")
    assert m.tmpfs_spec() == "/t:size=1048576,mode=700,ro"
    assert parse_mount("type=bind,src=/s,dst=/d,bind-propagation=rprivate").source == "/s"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("type=bind,dst=/x", "type=bind needs a source"),
        ("type=bind,src=rel,dst=/x", "bind source 'rel' is not an absolute path"),
        ("type=volume,src=v1", "target is required"),
        ("type=volume,src=v1,dst=x", "target 'x' is not an absolute path"),
        ("type=nfs,src=v1,dst=/x", "type 'nfs' is not supported"),
        ("type=tmpfs,src=v1,dst=/x", "type=tmpfs takes no source"),
        ("type=volume,src=v1,dst=/x,colour=red", "unexpected key 'colour'"),
        ("type=volume,src=v1,dst=/x,sloppy", "invalid field 'sloppy'"),
        ("type=volume,src=v1,dst=/x,ro=maybe", "invalid value for ro: 'maybe'"),
        ("type=volume,src=v1,dst=/x,tmpfs-size=1m", "cannot mix 'tmpfs-*' options"),
        ("type=bind,src=/s,dst=/x,volume-nocopy", "cannot mix 'volume-*' options"),
        ("type=bind,src=/s,dst=/x,bind-propagation=odd", "use one of rprivate"),
        ("type=volume,src=v1,dst=/x,volume-opt=nfs", "invalid volume-opt 'nfs'"),
        ("type=volume,dst=/x,volume-opt=type=tmpfs", "need a named volume (src=NAME)"),
        ("type=volume,src=v1,dst=/x,volume-driver=nfs", "volume-driver 'nfs' is not"),
        ("type=tmpfs,dst=/x,tmpfs-mode=9", "tmpfs-mode '9' is not an octal mode"),
        ("type=tmpfs,dst=/x,tmpfs-size=lots", "invalid tmpfs-size"),
        ('type=bind,"src=/s,dst=/x', "invalid --mount"),
        ("type=volume,src=-x,dst=/x", "invalid volume name '-x'"),
    ],
)
def test_bad_mounts_are_named(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_mount(text)


def test_an_images_creation_time_for_prune_until() -> None:
    from boxd._images.config import created_at

    # Go writes nanoseconds; Python reads six digits.
    assert created_at({"created": "2023-11-14T22:13:20.123456789Z"}) == 1700000000.123456
    assert created_at({"created": "2023-11-14T22:13:20Z"}) == 1700000000.0
    assert created_at({}) == 0.0 and created_at({"created": "yesterday"}) == 0.0


def test_copy_up_reads_the_layers_as_overlay_stacks_them(tmp_path: Path) -> None:
    upper, middle, lower = (tmp_path / n for n in ("upper", "middle", "lower"))
    for d in (upper / "data", middle / "data", lower / "data"):
        d.mkdir(parents=True)
    dirs = [str(upper), str(middle), str(lower)]
    want = [str(d / "data") for d in (upper, middle, lower)]
    assert stacked_dirs(dirs, "data") == want
    # A file in the middle layer hides what the lower one holds at that path.
    shutil.rmtree(middle / "data")
    (middle / "data").write_text("")
    assert stacked_dirs(dirs, "data") == [str(upper / "data")]
    # A symlink on the way is not followed (the layers are untrusted).
    (upper / "data").rmdir()
    (upper / "data").symlink_to("/etc")
    assert stacked_dirs(dirs, "data") == []
    assert stacked_dirs(dirs, "nothing/here") == []


def test_a_volumes_size_counts_a_hard_linked_file_once(tmp_path: Path) -> None:
    """As Docker's (its directory.Size): ``system df`` showed twice the bytes of a file
    with two names."""
    volumes = Volumes(tmp_path / "volumes", tmp_path / "trash")
    volumes.create("linked")
    data = volumes.path("linked")
    (data / "a").write_bytes(b"x" * 1000)
    os.link(data / "a", data / "b")
    (data / "c").write_bytes(b"y" * 24)
    assert volumes.size("linked") == 1024


@pytest.mark.root
def test_copy_up_keeps_xattrs(tmp_path: Path) -> None:
    """As Docker's copy-up (continuity's CopyDir): the image's xattrs at the mount point
    go into the new volume, files' and directories' alike (the mount point's own, and its
    time, too); the overlay's own stay out."""
    upper, lower, dest = (tmp_path / n for n in ("upper", "lower", "dest"))
    (lower / "data" / "sub").mkdir(parents=True)
    (upper / "data").mkdir(parents=True)
    (lower / "data" / "f").write_text("x")
    os.setxattr(lower / "data" / "f", "user.colour", b"blue")
    os.setxattr(lower / "data" / "sub", "user.kind", b"dir")
    os.setxattr(lower / "data" / "sub", "trusted.overlay.origin", b"forged")
    os.setxattr(upper / "data", "user.top", b"mount point")
    os.utime(upper / "data", (1_000_000_000, 1_000_000_000))
    dest.mkdir()
    assert copy_up([str(upper), str(lower)], "data", dest)
    assert os.getxattr(dest, "user.top") == b"mount point"
    assert dest.stat().st_mtime == 1_000_000_000
    assert os.getxattr(dest / "f", "user.colour") == b"blue"
    assert os.getxattr(dest / "sub", "user.kind") == b"dir"
    assert "trusted.overlay.origin" not in os.listxattr(dest / "sub")


# ---- a daemon -----------------------------------------------------------------------------


def _traversable_dir(prefix: str) -> Path:
    """A directory that a user-namespaced container's root (an unprivileged host uid) may
    walk through, as it must to reach the daemon's root and an image (pytest's are 0700)."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(top, 0o711)
    return top


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[Daemon]:
    top = _traversable_dir("boxd-volumes-")
    try:
        with running_daemon(top) as d:
            yield d
    finally:
        shutil.rmtree(top)


@pytest.fixture
def daemon(module_daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon, emptied of containers and volumes after the test."""
    yield module_daemon
    ids = module_daemon.ctl("ps", "-a", "-q").stdout.split()
    if ids:
        module_daemon.ctl("rm", "-f", *ids, check=False)
    module_daemon.ctl("volume", "prune", "-f", "-a", check=False)


def _fails(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    r = daemon.ctl(*args, check=False)
    assert r.returncode != 0, r.stdout
    return r


def _volumes(daemon: Daemon) -> list[str]:
    return daemon.ctl("volume", "ls", "-q").stdout.split()


@pytest.mark.root
def test_volume_verbs(daemon: Daemon) -> None:
    assert daemon.ctl("volume", "create", "--label", "team=a", "web-data").stdout == "web-data\n"
    # Docker's create is idempotent: the volume of that name is answered.
    assert daemon.ctl("volume", "create", "web-data").stdout == "web-data\n"
    anonymous = daemon.ctl("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous)
    # docker volume ls:
    #   DRIVER    VOLUME NAME
    #   local     web-data
    lines = daemon.ctl("volume", "ls").stdout.splitlines()
    assert lines[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split() for line in lines[1:]) == [
        ["local", anonymous],
        ["local", "web-data"],
    ]
    assert daemon.ctl("volume", "ls", "-q", "--filter", "label=team=a").stdout == "web-data\n"
    assert daemon.ctl("volume", "ls", "-q", "-f", "name=^web").stdout == "web-data\n"
    assert daemon.ctl("volume", "ls", "-q", "-f", "label=team=b").stdout == ""
    assert sorted(_volumes(daemon)) == sorted(
        daemon.ctl("volume", "ls", "-q", "-f", "dangling=true").stdout.split()
    )
    out = daemon.ctl(
        "volume", "ls", "-f", "name=web", "--format", "{{.Name}} {{.Driver}} {{.Labels}}"
    )
    assert out.stdout == "web-data local team=a\n"
    out = daemon.ctl("volume", "ls", "-f", "name=web", "--format", '{{.Name}}={{.Label "team"}}')
    assert out.stdout == "web-data=a\n"
    out = daemon.ctl("volume", "ls", "-f", "name=web", "--format", "table {{.Name}}\t{{.Scope}}")
    assert out.stdout.split("\n") == ["VOLUME NAME   SCOPE", "web-data      local", ""]
    row = json.loads(daemon.ctl("volume", "ls", "-f", "name=web", "--format", "json").stdout)
    assert (row["Name"], row["Scope"], row["Labels"]) == ("web-data", "local", "team=a")
    [shape] = json.loads(daemon.ctl("volume", "inspect", "web-data").stdout)
    assert sorted(shape) == [
        *("CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"),
    ]
    assert shape["Mountpoint"] == str(daemon.root / "volumes" / "web-data" / "_data")
    assert (shape["Driver"], shape["Labels"], shape["Scope"]) == ("local", {"team": "a"}, "local")
    assert os.path.isdir(shape["Mountpoint"])
    assert daemon.ctl("volume", "inspect", "-f", "{{.Name}}", "web-data").stdout == "web-data\n"
    # Bad input: named, exit 1, nothing made.
    assert "invalid volume name 'x'" in _fails(daemon, "volume", "create", "x").stderr
    r = _fails(daemon, "volume", "create", "-o", "type=tmpfs", "fast")
    assert 'missing required option: "device"' in r.stderr and r.returncode == 1
    assert "volume driver 'nfs'" in _fails(daemon, "volume", "create", "-d", "nfs", "n1").stderr
    # run's --volume-driver: local, the one there is, or refused before anything is made
    r = daemon.ctl("run", "--rm", "--volume-driver", "local", "-v", "/d", "default", "true")
    assert r.returncode == 0
    r = _fails(daemon, "run", "--rm", "--volume-driver", "nfs", "-v", "/d", "default", "true")
    assert r.returncode == 125 and "volume driver 'nfs' not found" in r.stderr
    r = _fails(daemon, "volume", "inspect", "nosuch")
    assert (r.returncode, r.stderr.strip()) == (1, "boxctl: No such volume: nosuch")
    # Docker's words: the key alone
    assert "invalid filter 'colour'" in _fails(daemon, "volume", "ls", "-f", "colour=red").stderr
    assert "No such volume: nosuch" in _fails(daemon, "volume", "rm", "nosuch").stderr
    assert daemon.ctl("volume", "rm", "-f", "nosuch").returncode == 0
    for name in ("..", "../containers", "web-data/../web-data"):  # never a path
        assert "No such volume" in _fails(daemon, "volume", "rm", name).stderr
    assert sorted(_volumes(daemon)) == sorted([anonymous, "web-data"])
    assert daemon.ctl("volume", "rm", "web-data", anonymous).stdout.split() == [
        "web-data",
        anonymous,
    ]
    assert _volumes(daemon) == []
    assert not (daemon.root / "volumes" / "web-data").exists()


@pytest.mark.root
def test_a_read_only_volume_is_one_mount(daemon: Daemon, tmp_path: Path) -> None:
    """A ``ro`` bind or volume is its own mount made read-only, as Docker's: the container's
    mountinfo showed two at its target (the bind, rw, with a read-only bind of it on top)."""
    script = "grep -E ' /(b|v) ' /proc/self/mountinfo | cut -d' ' -f5,6; touch /b/f /v/f"
    r = _fails(daemon, "run", "--rm", "-v", f"{tmp_path}:/b:ro", "-v", "ronotes:/v:ro",
               "default", "sh", "-c", script)  # fmt: skip
    mounts = [line.split() for line in r.stdout.splitlines()]
    assert sorted(point for point, _ in mounts) == ["/b", "/v"], r.stdout
    assert all(options.split(",")[0] == "ro" for _, options in mounts), r.stdout
    assert r.stderr.count("Read-only file system") == 2, r.stderr
    daemon.ctl("volume", "rm", "ronotes")


@pytest.mark.root
def test_named_volume_outlives_its_containers(daemon: Daemon) -> None:
    daemon.ctl("run", "--rm", "-v", "notes:/data", "default", "sh", "-c", "echo kept > /data/f")
    assert _volumes(daemon) == ["notes"]  # made on first use, kept after --rm
    out = daemon.ctl("run", "--rm", "-v", "notes:/data:ro", "default", "sh", "-c",
                     "cat /data/f; touch /data/g 2>/dev/null || echo read-only")  # fmt: skip
    assert out.stdout == "kept\nread-only\n"
    cid = daemon.ctl("create", "--name", "user", "-v", "notes:/data", "default", "true").stdout
    r = _fails(daemon, "volume", "rm", "notes")
    # docker: Error response from daemon: remove notes: volume is in use - [<id>]
    assert r.returncode == 1
    assert f"remove notes: volume is in use - [{cid.strip()}]" in r.stderr
    assert "notes" not in daemon.ctl("volume", "prune", "-f", "-a").stdout
    assert daemon.ctl("volume", "ls", "-q", "-f", "dangling=false").stdout == "notes\n"
    daemon.ctl("rm", "-v", "user")  # -v: anonymous volumes only; a named one stays
    assert _volumes(daemon) == ["notes"]
    assert daemon.ctl("volume", "rm", "notes").stdout == "notes\n"


@pytest.mark.root
def test_anonymous_volumes(daemon: Daemon) -> None:
    daemon.ctl("run", "--rm", "-v", "/scratch", "default", "touch", "/scratch/x")
    assert _volumes(daemon) == []  # --rm takes its anonymous volumes along
    daemon.ctl("create", "--name", "a", "-v", "/scratch", "-v", "kept:/k", "default", "true")
    mounts = daemon.inspect("a")["config"]["volumes"]
    anonymous = mounts[0]["volume"]
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous)
    assert mounts[0]["host"] == str(daemon.root / "volumes" / anonymous / "_data")
    [shape] = json.loads(daemon.ctl("volume", "inspect", anonymous).stdout)
    assert shape["Labels"] == {"com.docker.volume.anonymous": ""}
    # boxctl inspect: Docker's Mounts.
    [c] = json.loads(daemon.ctl("inspect", "a").stdout)
    assert c["Mounts"] == [
        {
            "Type": "volume",
            "Name": anonymous,
            "Source": str(daemon.root / "volumes" / anonymous / "_data"),
            "Destination": "/scratch",
            "Driver": "local",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        },
        {
            "Type": "volume",
            "Name": "kept",
            "Source": str(daemon.root / "volumes" / "kept" / "_data"),
            "Destination": "/k",
            "Driver": "local",
            "Mode": "z",  # Docker's for a named volume
            "RW": True,
            "Propagation": "",
        },
    ]
    out = daemon.ctl("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", "a").stdout
    assert out == f"{anonymous} kept \n"
    daemon.ctl("create", "--name", "b", "-v", "/scratch", "default", "true")
    daemon.ctl("rm", "a")  # without -v its volumes stay
    assert anonymous in _volumes(daemon)
    # Docker 23+: prune takes unused anonymous volumes only; -a named ones too.
    out = daemon.ctl("volume", "prune", "-f").stdout
    assert out.startswith(f"Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: ")
    assert sorted(_volumes(daemon)) == sorted(
        ["kept", daemon.inspect("b")["config"]["volumes"][0]["volume"]]
    )
    daemon.ctl("rm", "-v", "b")
    assert _volumes(daemon) == ["kept"]
    assert "kept" in daemon.ctl("volume", "prune", "-f", "--all").stdout
    assert _volumes(daemon) == []


@pytest.fixture
def image_with_data() -> Iterator[Path]:
    """A root filesystem with /data owned by uid 1234: what a new volume there gets."""
    top = _traversable_dir("boxd-volumes-image-")
    try:
        yield _image_with_data(top)
    finally:
        shutil.rmtree(top)


def _image_with_data(top: Path) -> Path:
    root = build_busybox_root(top / "img")
    os.chmod(root, 0o755)
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "sub" / "file").write_text("from the image\n")
    os.chown(root / "data", 1234, 5678)
    os.chmod(root / "data", 0o750)
    os.chown(root / "data" / "sub" / "file", 1234, 5678)
    os.chmod(root / "data" / "sub" / "file", 0o640)
    return root


@pytest.mark.root
def test_a_new_volume_is_filled_from_the_image(daemon: Daemon, image_with_data: Path) -> None:
    show = "stat -c '%u %g %a' /data /data/sub/file; cat /data/sub/file"
    run = ("run", "--rm", "--rootfs", str(image_with_data))
    out = daemon.ctl(*run, "-v", "filled:/data", "sh", "-c", f"{show}; echo mine > /data/sub/file")
    assert out.stdout == "1234 5678 750\n1234 5678 640\nfrom the image\n"
    # Not empty any more: what the containers wrote stays, the image is not copied again.
    assert daemon.ctl(*run, "-v", "filled:/data", "cat", "/data/sub/file").stdout == "mine\n"
    # nocopy, and a --mount volume-nocopy: an empty directory.
    assert daemon.ctl(*run, "-v", "bare:/data:nocopy", "ls", "-A", "/data").stdout == ""
    mount = "type=volume,src=bare2,dst=/data,volume-nocopy"
    assert daemon.ctl(*run, "--mount", mount, "ls", "-A", "/data").stdout == ""
    # An anonymous volume is filled too.
    assert daemon.ctl(*run, "-v", "/data", "cat", "/data/sub/file").stdout == "from the image\n"
    # --isolate-user: owners as the container's user namespace maps them; its root owns an
    # empty volume (and may write it).
    userns = (*run, "--isolate-user")
    out = daemon.ctl(*userns, "-v", "mapped:/data", "sh", "-c", f"{show}; touch /data/new")
    assert out.stdout == "1234 5678 750\n1234 5678 640\nfrom the image\n"
    out = daemon.ctl(
        *userns, "-v", "empty:/data:nocopy", "sh", "-c", "touch /data/x; stat -c %u /data/x"
    )
    assert out.stdout == "0\n"


@pytest.mark.root
def test_a_volume_subpath_is_filled_from_the_image(daemon: Daemon, image_with_data: Path) -> None:
    """As Docker's create fills a ``volume-subpath`` mount (moby's TestRunMountVolumeSubdir,
    "subdir with copy data"): an empty directory there gets what the image holds at the
    mount point, owners and modes kept (as the user namespace maps them with
    --isolate-user); one that holds something is left as it is, and so is the rest of
    the volume."""
    run = ("run", "--rm", "--rootfs", str(image_with_data))
    make = "mkdir /v/a /v/b /v/u; echo kept > /v/b/f; echo top > /v/top"
    daemon.ctl(*run, "-v", "parts:/v", "sh", "-c", make)
    show = "stat -c '%u %g %a' /data /data/sub/file; cat /data/sub/file"
    mount = "type=volume,src=parts,dst=/data,volume-subpath="
    out = daemon.ctl(*run, "--mount", mount + "a", "sh", "-c", show).stdout
    assert out == "1234 5678 750\n1234 5678 640\nfrom the image\n"
    assert daemon.ctl(*run, "--mount", mount + "b", "ls", "/data").stdout == "f\n"
    out = daemon.ctl(*run, "--isolate-user", "--mount", mount + "u", "sh", "-c", show).stdout
    assert out == "1234 5678 750\n1234 5678 640\nfrom the image\n"
    data = daemon.root / "volumes" / "parts" / "_data"
    assert (data / "u" / "sub" / "file").stat().st_uid > 1234  # a host id of the namespace
    out = daemon.ctl(*run, "-v", "parts:/v", "sh", "-c", "ls /v; cat /v/a/sub/file /v/b/f").stdout
    assert out == "a\nb\ntop\nu\nfrom the image\nkept\n"
    daemon.ctl("volume", "rm", "parts")


@pytest.mark.root
def test_a_volume_is_filled_at_create(
    daemon: Daemon, image_with_data: Path, tmp_path: Path
) -> None:
    """As Docker's: the fill is the create's, not the start's.  A ``cp`` into a created
    container's volume adds to the image's files; a data container that never runs
    hands its filled volume on through ``--volumes-from``; a volume emptied by its
    container stays empty when it starts again."""
    image = ("--rootfs", str(image_with_data))
    daemon.ctl("create", "--name", "c", "-v", "filled:/data", *image, "ls", "-A", "/data/sub")
    (tmp_path / "added").write_text("by cp\n")
    daemon.ctl("cp", str(tmp_path / "added"), "c:/data/sub/added")
    assert daemon.ctl("start", "-a", "c").stdout == "added\nfile\n"
    daemon.ctl("create", "--name", "store", "-v", "/data", *image, "true")
    out = daemon.ctl("run", "--rm", "--volumes-from", "store", "default", "cat", "/data/sub/file")
    assert out.stdout == "from the image\n"
    empty_it = ("sh", "-c", "ls -A /data; rm -r /data/*")
    out = daemon.ctl("run", "--name", "e", "-v", "emptied:/data", *image, *empty_it)
    assert out.stdout == "sub\n"
    assert daemon.ctl("start", "-a", "e", check=False).stdout == ""


@pytest.mark.root
def test_an_anonymous_volume_over_a_file_is_refused_at_create(
    daemon: Daemon, image_with_data: Path
) -> None:
    """Docker's create refuses it (``cannot mount volume over existing file``); boxd made
    the container and its volume, and the start failed."""
    for verb in ("create", "run"):
        r = _fails(daemon, verb, "-v", "/data/sub/file", "--rootfs", str(image_with_data), "true")
        assert r.returncode == 125, r.stderr
        assert "cannot mount volume over existing file, file exists /data/sub/file" in r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""
    assert _volumes(daemon) == []


@pytest.mark.root
def test_an_images_volumes_are_anonymous_volumes(daemon: Daemon, image_with_data: Path) -> None:
    """An image's ``VOLUME /data`` gives each container an anonymous volume there, filled
    from the image (Docker's rule), unless a mount of the container covers it."""
    skopeo = shutil.which("skopeo")
    if skopeo is None or shutil.which("umoci") is None:
        pytest.skip("umoci and skopeo build the image")
    from registry_harness import build_oci_image

    layout = image_with_data.parent / "layout"
    build_oci_image(layout, "v", image_with_data, config={"volume": "/data", "cmd": "sh"})
    archive = image_with_data.parent / "image.tar"
    subprocess.run([skopeo, "copy", "--quiet", f"oci:{layout}:v", f"oci-archive:{archive}:vol:1"],
                   check=True)  # fmt: skip
    daemon.ctl("load", "-i", str(archive))
    try:
        daemon.ctl("create", "--name", "c", "vol:1", "cat", "/data/sub/file")
        [v] = daemon.inspect("c")["config"]["volumes"]
        assert (v["container"], len(v["volume"])) == ("/data", 64)
        assert daemon.ctl("start", "-a", "c").stdout == "from the image\n"
        daemon.ctl("rm", "-v", "c")
        out = daemon.ctl("run", "--rm", "-v", "mine:/data", "vol:1", "ls", "/data").stdout
        assert out == "sub\n"
        assert _volumes(daemon) == ["mine"]
    finally:
        daemon.ctl("rmi", "vol:1", check=False)


@pytest.mark.root
def test_an_isolated_containers_own_etc_files_in_a_volume(daemon: Daemon) -> None:
    """With a volume at /etc, the container's /etc/hosts is bound from its directory
    (see test_mounts): a user-namespaced container's root owns it, and may write it."""
    script = "echo '10.0.0.9 extra' >> /etc/hosts && grep -c extra /etc/hosts"
    out = daemon.ctl(
        "run", "--rm", "--isolate-user", "-v", "etc:/etc", "default", "sh", "-c", script
    )
    assert out.stdout == "1\n"


@pytest.mark.root
def test_mount_option(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("host\n")
    tmp_path.chmod(0o755)
    script = (
        "cat /b/f; touch /b/x 2>/dev/null || echo ro-bind; echo v > /v/f; "
        "grep ' /t ' /proc/self/mountinfo | cut -d' ' -f6; stat -c %a /t"
    )
    out = daemon.ctl(
        "run", "--rm",
        "--mount", f"type=bind,source={tmp_path},target=/b,readonly",
        "--mount", "type=volume,src=labelled,dst=/v,volume-label=team=b",
        "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=700",
        "default", "sh", "-c", script,
    )  # fmt: skip
    assert out.stdout.splitlines()[:4] == [
        "host",
        "ro-bind",
        "rw,nosuid,nodev,noexec,relatime",
        "700",
    ]
    [shape] = json.loads(daemon.ctl("volume", "inspect", "labelled").stdout)
    assert shape["Labels"] == {"team": "b"}
    # Refused, exit 125 as Docker's run, the bad value named, nothing made.
    for mount, words in [
        ("type=bind,dst=/x", "type=bind needs a source"),
        (  # in Docker's daemon's words, not -v's (it named a --volume never given)
            f"type=bind,src={tmp_path}/missing,dst=/x",
            f'boxctl: invalid mount config for type "bind": bind source path does not exist:'
            f" {tmp_path}/missing\n",
        ),
        ("type=volume,src=new-one,dst=/x,colour=red", "unexpected key 'colour'"),
    ]:
        r = _fails(daemon, "run", "--rm", "--mount", mount, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
        r = _fails(daemon, "create", "--mount", mount, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
    r = _fails(daemon, "run", "--rm", "-v", "x:/data", "default", "true")
    assert r.returncode == 125 and "invalid volume name 'x'" in r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""
    assert _volumes(daemon) == ["labelled"]


@pytest.mark.root
@needs_cli
def test_mount_volume_opt_makes_the_volume(daemon: Daemon, tmp_path: Path) -> None:
    """``--mount ...,volume-opt=K=V`` (the API's ``VolumeOptions.DriverConfig.Options``):
    a new volume is made with the local driver's options, as Docker makes it (boxd
    refused every volume-opt); a bad one is named, as by ``volume create -o``."""
    tmp_path.chmod(0o755)
    bound = f"volume-opt=type=none,volume-opt=o=bind,volume-opt=device={tmp_path}"
    mount = f"type=volume,src=onhost,dst=/d,{bound}"
    daemon.ctl("run", "--rm", "--mount", mount, "default", "sh", "-c", "echo in > /d/f")
    assert (tmp_path / "f").read_text() == "in\n"
    [shape] = json.loads(daemon.ctl("volume", "inspect", "onhost").stdout)
    assert shape["Options"] == {"type": "none", "o": "bind", "device": str(tmp_path)}
    r = _docker(daemon, "run", "--rm", "--mount", mount.replace("onhost", "viacli"), "default",
                "cat", "/d/f")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "in\n"), r.stderr
    bad = "type=volume,src=bad,dst=/d,volume-opt=type=nfs"
    r = _fails(daemon, "run", "--rm", "--mount", bad, "default", "true")
    assert 'missing required option: "device"' in r.stderr, r.stderr
    r = _docker(daemon, "run", "--rm", "--mount", bad, "default", "true")
    assert r.returncode == 125 and 'missing required option: "device"' in r.stderr, r.stderr
    assert "bad" not in _volumes(daemon)


@pytest.mark.root
@needs_cli
def test_a_bind_of_a_mode_without_a_source_is_refused_as_by_dockerd(daemon: Daemon) -> None:
    """``docker run -v /data:ro`` (the CLI sends it in ``Binds``) is refused by Docker's daemon
    ("invalid volume specification"); boxd made a read-only anonymous volume.  boxctl's
    ``-v /data:ro`` is Podman's anonymous volume with options, as before."""
    for spec in ("/data:ro", "cache:rw"):
        body = {"Image": "default", "Cmd": ["true"], "HostConfig": {"Binds": [spec]}}
        status, _, data = api_call(daemon, "POST", "/containers/create", json.dumps(body).encode())
        assert (status, json.loads(data)) == (
            400,
            {"message": f"invalid volume specification: '{spec}'"},
        )
    r = _docker(daemon, "run", "--rm", "-v", "/data:ro", "default", "true")
    assert r.returncode == 125
    assert "invalid volume specification: '/data:ro'" in r.stderr, r.stderr
    assert (daemon.ctl("ps", "-a", "-q").stdout, _volumes(daemon)) == ("", [])
    r = _fails(daemon, "run", "--rm", "-v", "/data:ro", "default", "touch", "/data/f")
    assert "Read-only file system" in r.stderr, r.stderr


@pytest.mark.root
def test_volumes_from(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    daemon.ctl(
        "run", "-d", "--name", "src", "-v", "shared:/data", "-v", "/anon",
        "-v", f"{tmp_path}:/host", "default", "sh", "-c", "echo s > /data/f; sleep 600",
    )  # fmt: skip
    daemon.wait_for("src", lambda c: c["state"]["status"] == "running")
    script = "cat /data/f; ls -d /anon /host; touch /data/g 2>/dev/null || echo ro"
    out = daemon.ctl("run", "--rm", "--volumes-from", "src:ro", "default", "sh", "-c", script)
    assert out.stdout == "s\n/anon\n/host\nro\n"
    out = daemon.ctl("run", "--rm", "--volumes-from", "src", "default", "sh", "-c", script)
    assert out.stdout == "s\n/anon\n/host\n"
    r = _fails(daemon, "run", "--rm", "--volumes-from", "nosuch", "-v", "new:/n", "default", "true")
    assert r.returncode == 125 and "--volumes-from 'nosuch': no such container" in r.stderr
    assert "new" not in _volumes(daemon)  # refused before anything was made
    r = _fails(daemon, "run", "--rm", "--volumes-from", "src:rx", "default", "true")
    assert r.returncode == 125 and "invalid --volumes-from 'src:rx'" in r.stderr
    # Two donors with one mount point: the later's, as dockerd registers them (moby's
    # TestDuplicateMountpointsForVolumesFrom); the taker's own wins over both.
    daemon.ctl("create", "--name", "src2", "-v", "second:/data", "default", "true")
    both = ("--volumes-from", "src", "--volumes-from", "src2")
    daemon.ctl("create", "--name", "taker", *both, "default", "true")
    taken = {v["container"]: v["volume"] for v in daemon.inspect("taker")["config"]["volumes"]}
    assert taken["/data"] == "second"
    daemon.ctl("create", "--name", "own", "-v", "mine:/data", *both, "default", "true")
    taken = {v["container"]: v["volume"] for v in daemon.inspect("own")["config"]["volumes"]}
    assert taken["/data"] == "mine"
    # A path alone (-v /data: a new anonymous volume) yields to the donor's, as dockerd
    # applies --volumes-from first (moby's TestRunApplyVolumesFromBeforeVolumes).
    out = daemon.ctl("run", "--rm", "--volumes-from", "src", "-v", "/data", "default", "cat",
                     "/data/f")  # fmt: skip
    assert out.stdout == "s\n"
    daemon.ctl("rm", "taker", "own", "src2")
    daemon.ctl("volume", "rm", "second", "mine")
    # The anonymous volume is used by src still: rm -v of another user leaves it.
    daemon.ctl("create", "--name", "other", "--volumes-from", "src", "default", "true")
    daemon.ctl("rm", "-v", "other")
    assert len(_volumes(daemon)) == 2
    daemon.ctl("rm", "-f", "-v", "src")
    assert _volumes(daemon) == ["shared"]


@pytest.mark.root
def test_volumes_from_neither_fills_nor_makes_writable(
    daemon: Daemon, image_with_data: Path
) -> None:
    """Docker's --volumes-from: a mount the donor has read-only stays so (":rw" only
    keeps a writable one writable), and the volume is not filled from the taker's image,
    however empty it is (its CopyData is false)."""
    image = ("--rootfs", str(image_with_data))
    # default has no /data: the volume stays empty at the donor's create.
    daemon.ctl("create", "--name", "donor", "-v", "held:/data:ro", "default", "true")
    script = "ls -A /data; touch /data/x 2>/dev/null || echo ro"
    for spec in ("donor:rw", "donor"):
        out = daemon.ctl("run", "--rm", "--volumes-from", spec, *image, "sh", "-c", script)
        assert out.stdout == "ro\n"


@pytest.mark.root
def test_system_prune_and_df(daemon: Daemon) -> None:
    daemon.ctl("create", "--name", "done", "-v", "/anon", "default", "true")
    daemon.ctl("rm", "done")  # leaves its anonymous volume
    cid = daemon.ctl("create", "-v", "named:/n", "default", "true").stdout.strip()
    df = daemon.ctl("system", "df").stdout.splitlines()
    row = next(line.split() for line in df if line.startswith("Local Volumes"))
    assert row[2:4] == ["2", "1"]  # TOTAL, ACTIVE
    since = time.time()
    out = daemon.ctl("system", "prune", "-f", "--volumes").stdout
    assert out.startswith(f"Deleted Containers:\n{cid}\n\nDeleted Volumes:\n")
    assert re.search(r"\nTotal reclaimed space: [0-9.]+k?B\n\Z", out), out
    # Each prune ends in an event of its type, without an actor, with the bytes it freed
    # (dockerd's since Docker 23), which `--filter type=builder` finds too.
    window = f"since={since}&until={time.time()}&filters="
    events = api_call(daemon, "GET", f"/events?{window}" + '{"event":["prune"]}')[2]
    pruned = {e["Type"]: e["Actor"] for e in map(json.loads, events.splitlines())}
    assert sorted(pruned) == ["container", "image", "network", "volume"], pruned
    assert {a["ID"] for a in pruned.values()} == {""}
    assert int(pruned["container"]["Attributes"]["reclaimed"]) > 0
    assert api_call(daemon, "POST", "/build/prune")[0] == 200
    window = f"since={since}&until={time.time()}&filters="
    events = api_call(daemon, "GET", f"/events?{window}" + '{"type":["builder"]}')[2]
    assert [json.loads(e)["Action"] for e in events.splitlines()] == ["prune"]
    assert _volumes(daemon) == ["named"]  # named volumes stay (Docker 23+)
    out = daemon.ctl("system", "prune", "-f").stdout
    assert out == "Total reclaimed space: 0B\n"
    # --filter: every prune takes label=, label!= and until=.
    daemon.ctl("create", "--name", "keep", "-l", "keep=1", "-v", "/a1", "default", "true")
    drop = daemon.ctl("create", "--name", "drop", "-l", "x=1", "default", "true").stdout.strip()
    daemon.ctl("volume", "create", "-l", "keep=1", "kv")
    assert daemon.ctl("system", "prune", "-f", "--filter", "until=1h").stdout == (
        "Total reclaimed space: 0B\n"
    )
    out = daemon.ctl("system", "prune", "-f", "--volumes", "--filter", "label!=keep").stdout
    assert out.startswith(f"Deleted Containers:\n{drop}\n\nTotal reclaimed space: ")
    assert "Deleted Volumes" not in out  # keep's anonymous volume is in use
    assert daemon.ctl("ps", "-a", "--format", "{{.Names}}").stdout == "keep\n"
    out = daemon.ctl("volume", "prune", "-f", "-a", "--filter", "label=keep=1").stdout
    assert out.startswith("Deleted Volumes:\nkv\n")
    r = _fails(daemon, "system", "prune", "-f", "--filter", "colour=red")
    assert "invalid filter 'colour'" in r.stderr and r.returncode == 1
    # Docker's volume prune takes no until; its CLI refuses it with --volumes before all.
    r = _fails(daemon, "volume", "prune", "-f", "--filter", "until=1h")
    assert "invalid filter 'until': volume prune takes label, label! and all" in r.stderr
    r = _fails(daemon, "system", "prune", "-f", "--volumes", "--filter", "until=1h")
    assert 'the "until" filter is not supported with "--volumes"' in r.stderr
    r = daemon.ctl("system", "prune", input=b"n\n")
    assert r.stdout.startswith("WARNING! This will remove:\n  - all stopped containers\n")


@pytest.mark.root
def test_volumes_and_their_users_survive_a_restart(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        daemon.ctl("create", "--name", "user", "-v", "db:/db", "default", "true")
        daemon.ctl("volume", "create", "--label", "k=v", "spare")
        daemon.stop()
        daemon.start()
        assert sorted(_volumes(daemon)) == ["db", "spare"]
        assert "volume is in use" in _fails(daemon, "volume", "rm", "db").stderr
        [shape] = json.loads(daemon.ctl("volume", "inspect", "spare").stdout)
        assert shape["Labels"] == {"k": "v"}
        daemon.ctl("rm", "user")
        daemon.ctl("volume", "rm", "db", "spare")
        # Live restore: a running container keeps its volume through a daemon killed.
        daemon.ctl("run", "-d", "--name", "live", "-v", "/scratch", "-v", "kept:/k",
                   "default", "sh", "-c", "echo before > /k/f; sleep 600")  # fmt: skip
        daemon.wait_for("live", lambda c: c["state"]["status"] == "running")
        daemon.stop(signal.SIGKILL)
        daemon.start()
        assert daemon.ctl("exec", "live", "cat", "/k/f").stdout == "before\n"
        assert "volume is in use" in _fails(daemon, "volume", "rm", "kept").stderr
        assert len(daemon.ctl("volume", "prune", "-f", "-a").stdout.splitlines()) == 1
        daemon.ctl("rm", "-f", "-v", "live")
        assert _volumes(daemon) == ["kept"]


# ---- the Engine API: the docker CLI and docker-py -------------------------------------------


@needs_cli
@pytest.mark.root
def test_docker_cli_volumes(daemon: Daemon) -> None:
    assert _docker(daemon, "volume", "create", "--label", "a=1", "dv").stdout == "dv\n"
    r = _docker(daemon, "volume", "ls", "--format", "{{.Driver}} {{.Name}} {{.Labels}}")
    assert r.stdout == "local dv a=1\n", r.stderr
    r = _docker(daemon, "run", "--rm", "-v", "dv:/data", "default", "sh", "-c",
                "echo hi > /data/f; cat /data/f")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    host = daemon.root.parent
    r = _docker(daemon, "run", "-d", "--name", "d1", "-v", "dv:/data", "-v", "/anon",
                "-v", f"{host}:/b:rw", "--mount", "type=volume,dst=/mv",
                "--mount", "type=tmpfs,dst=/t", "default", "sleep", "600")  # fmt: skip
    assert r.returncode == 0, r.stderr
    [c] = json.loads(_docker(daemon, "inspect", "d1").stdout)
    mounts = sorted(c["Mounts"], key=lambda m: m["Destination"])
    anonymous, mounted = mounts[0]["Name"], mounts[3]["Name"]
    assert mounts == [
        {
            "Type": "volume",
            "Name": anonymous,
            "Source": str(daemon.root / "volumes" / anonymous / "_data"),
            "Destination": "/anon",
            "Driver": "local",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        },
        # Mode: -v's as given; "z" for a named volume without one and a volume mount, as
        # Docker's daemon shows them
        {
            "Type": "bind",
            "Source": str(host),
            "Destination": "/b",
            "Mode": "rw",
            "RW": True,
            "Propagation": "rprivate",
        },
        {
            "Type": "volume",
            "Name": "dv",
            "Source": str(daemon.root / "volumes" / "dv" / "_data"),
            "Destination": "/data",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        },
        {
            "Type": "volume",
            "Name": mounted,
            "Source": str(daemon.root / "volumes" / mounted / "_data"),
            "Destination": "/mv",
            "Driver": "local",
            "Mode": "z",
            "RW": True,
            "Propagation": "",
        },
        # A tmpfs mount is listed too, as by Docker (a --tmpfs is not).
        {
            "Type": "tmpfs",
            "Source": "",
            "Destination": "/t",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        },
    ]
    r = _docker(daemon, "volume", "rm", "dv")
    assert r.returncode == 1 and "volume is in use" in r.stderr
    r = _docker(daemon, "volume", "inspect", "nosuch")
    assert r.returncode == 1 and "no such volume" in r.stderr.lower()
    assert _docker(daemon, "rm", "-f", "-v", "d1").returncode == 0
    assert _volumes(daemon) == ["dv"]
    r = _docker(daemon, "run", "--rm", "--mount", "type=bind,src=/nonexistent,dst=/x",
                "default", "true")  # fmt: skip
    assert r.returncode == 125 and "/nonexistent" in r.stderr
    r = _docker(daemon, "system", "df", "-v")
    assert re.search(r"^dv\s+0\s+", r.stdout, re.M), r.stdout
    # docker system prune: containers, networks, volumes (the anonymous ones, at API 1.42
    # and later, as Docker's daemon), images, and the build cache boxd does not have.
    _docker(daemon, "create", "--name", "gone", "-v", "/anon", "default", "true")
    r = _docker(daemon, "system", "prune", "-f", "--volumes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Deleted Containers:\n") and "Deleted Volumes:\n" in r.stdout
    assert _volumes(daemon) == ["dv"]
    assert _docker(daemon, "volume", "prune", "-f").stdout.startswith("Total reclaimed space")
    assert _volumes(daemon) == ["dv"]
    assert _docker(daemon, "volume", "prune", "-f", "--all").stdout.startswith("Deleted Volumes:")
    assert _volumes(daemon) == []


@pytest.mark.root
@needs_cli
def test_docker_run_v_makes_a_missing_host_directory(daemon: Daemon, tmp_path: Path) -> None:
    """``docker run -v /host/path:/x`` (``Binds``) makes a missing host path as a
    directory, as Docker's daemon does (``--mount type=bind`` refuses it, above)."""
    source = tmp_path / "made" / "here"
    r = _docker(daemon, "run", "--rm", "-v", f"{source}:/x", "default", "sh", "-c",
                "echo hi > /x/f")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (source / "f").read_text() == "hi\n"
    r = _docker(daemon, "run", "--rm", "-v", f"{source}:/x:ro,delegated", "default", "cat", "/x/f")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr  # Docker for Mac's mode: ignored
    assert (source.stat().st_mode & 0o777, source.parent.stat().st_mode & 0o777) == (0o755, 0o755)
    # What exists is bound as it is: a file, a socket (the Docker API's own, for a client
    # inside), never made a directory over.
    (tmp_path / "file").write_text("a file\n")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "sock"))
        r = _docker(daemon, "run", "--rm", "-v", f"{tmp_path}/file:/f:ro", "-v",
                    f"{tmp_path}/sock:/s", "default", "sh", "-c", "cat /f; test -S /s")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "a file\n"), r.stderr
    # A bad Binds entry is refused before anything is made for the good one before it.
    first, second = tmp_path / "first", tmp_path / "second"
    body = {"Image": "default", "HostConfig": {"Binds": [f"{first}:/a", f"{second}:x"]}}
    status, data = _call(daemon, "POST", "/containers/create", json.dumps(body).encode())
    assert status == 400 and b"'x' is not an absolute path" in data, data
    assert not first.exists()
    # Nor is anything left of a create refused for another reason (Docker makes them at
    # the start): the directories made for it are taken away again.
    binds = [f"{first}/a/b:/a", f"{first}/c:/c"]
    body = {"Image": "default", "Cmd": ["true"], "HostConfig": {"Binds": binds}}
    status, data = _call(
        daemon, "POST", "/containers/create?name=bad%20name", json.dumps(body).encode()
    )
    assert status == 400 and b"invalid container name" in data, data
    assert not first.exists()


@pytest.mark.root
def test_docker_py_volumes(daemon: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{daemon.docker_socket}")
    try:
        v = client.volumes.create("pyvol", labels={"by": "py"})
        assert (v.name, v.attrs["Labels"]) == ("pyvol", {"by": "py"})
        assert [x.name for x in client.volumes.list(filters={"label": "by=py"})] == ["pyvol"]
        out = client.containers.run(
            "default",
            ["sh", "-c", "echo py > /data/f; cat /data/f"],
            volumes={"pyvol": {"bind": "/data", "mode": "rw"}},
            remove=True,
        )
        assert out == b"py\n"
        c = client.containers.create("default", "true", volumes=["/anon"])
        anonymous = c.attrs["Mounts"][0]["Name"]
        assert anonymous in [x.name for x in client.volumes.list()]
        c.remove(v=True)
        assert [x.name for x in client.volumes.list()] == ["pyvol"]
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get("nosuch")
        client.volumes.get("pyvol").remove()
        assert client.volumes.prune()["VolumesDeleted"] is None
    finally:
        client.close()


def _call(daemon: Daemon, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    status, _, data = api_call(daemon, method, path, body)
    return status, data


def _create(mounts: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"Image": "default", "Cmd": ["true"], "HostConfig": {"Mounts": mounts}}
    ).encode()


BAD = [
    ("POST", "/volumes/create", b'{"Name": "x"}', 400, "invalid volume name 'x'"),
    # dockerd's NotFound (no plugin of that name, docker-py's NotFound): a 400 before.
    (
        "POST",
        "/volumes/create",
        b'{"Name": "ok1", "Driver": "nfs"}',
        404,
        "volume driver 'nfs' not found: the one driver is local",
    ),
    (
        "POST",
        "/volumes/create",
        b'{"Name": "ok1", "DriverOpts": {"o": "size=1m"}}',
        400,
        'missing required option: "device"',  # Docker's
    ),
    ("POST", "/volumes/create", b'{"Name": 5}', 400, "body.Name"),
    ("GET", "/volumes/nosuch", None, 404, "No such volume: nosuch"),
    ("DELETE", "/volumes/nosuch", None, 404, "No such volume: nosuch"),
    ("GET", '/volumes?filters={"colour":["red"]}', None, 400, "invalid filter 'colour': use"),
    ("GET", '/volumes?filters={"dangling":["maybe"]}', None, 400, "dangling=maybe"),
    ("POST", '/volumes/prune?filters={"name":["x"]}', None, 400, "invalid filter 'name'"),
    (
        "POST",
        "/containers/create",
        _create([{"Type": "bind", "Source": "/nonexistent", "Target": "/x"}]),
        400,
        "bind source path does not exist: /nonexistent",
    ),
    ("POST", "/containers/create", _create([{"Type": "bind", "Target": "/x"}]), 400, "source"),
    (
        "POST",
        "/containers/create",
        _create(
            [{"Type": "volume", "Source": "v1", "Target": "/x", "TmpfsOptions": {"Mode": 448}}]
        ),
        400,
        "cannot mix 'tmpfs-*' options with mount type 'volume'",
    ),
    (
        "POST",
        "/containers/create",
        _create([{"Type": "nfs", "Source": "v1", "Target": "/x"}]),
        400,
        "type 'nfs' is not supported",
    ),
    (
        "POST",
        "/containers/create",
        _create(
            [{"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}]
        ),
        400,
        "volume-driver 'nfs'",
    ),
    (
        "POST",
        "/containers/create",
        _create([{"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a/b"}}]),
        400,
        "volume-subpath needs a named volume",
    ),
    (
        "POST",
        "/containers/create",
        json.dumps(
            {"Image": "default", "Cmd": ["true"], "HostConfig": {"Binds": ["a:/x"]}}
        ).encode(),
        400,
        "invalid volume name 'a'",
    ),
    (
        "POST",
        "/containers/create",
        json.dumps(
            {"Image": "default", "Cmd": ["true"], "HostConfig": {"VolumesFrom": ["nosuch"]}}
        ).encode(),
        400,  # a bad parameter, as moby's registerMountPoints makes it (404: "pull the image")
        "invalid --volumes-from 'nosuch': no such container: nosuch",
    ),
]


@pytest.mark.root
@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD)
def test_bad_volume_requests_get_dockers_error_shape(
    daemon: Daemon, method: str, path: str, body: bytes | None, status: int, words: str
) -> None:
    got, data = _call(daemon, method, path, body)
    assert got == status, data
    error = json.loads(data)
    assert list(error) == ["message"] and words in error["message"], error
    # Nothing was made, and the daemon serves on.
    status, data = _call(daemon, "GET", "/volumes")
    assert (status, json.loads(data)) == (200, {"Volumes": [], "Warnings": []})
    status, data = _call(daemon, "GET", "/containers/json?all=1")
    assert (status, json.loads(data)) == (200, [])


@pytest.mark.root
def test_volume_api_shapes(daemon: Daemon) -> None:
    body = b'{"Name": "api1", "Labels": {"k": "v"}}'
    status, data = _call(daemon, "POST", "/volumes/create", body)
    assert status == 201
    created = json.loads(data)
    assert sorted(created) == [
        "CreatedAt",
        "Driver",
        "Labels",
        "Mountpoint",
        "Name",
        "Options",
        "Scope",
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", created["CreatedAt"])
    status, data = _call(daemon, "GET", '/volumes?filters={"label":["k=v"]}')
    assert (status, json.loads(data)) == (200, {"Volumes": [created], "Warnings": []})
    body = json.dumps(
        {
            "Image": "default",
            "Cmd": ["true"],
            "Volumes": {"/anon": {}},
            "HostConfig": {
                "Binds": ["api1:/a:ro"],
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "api2",
                        "Target": "/b",
                        "VolumeOptions": {"Labels": {"made": "by-mount"}},
                    }
                ],
            },
        }
    ).encode()
    status, data = _call(daemon, "POST", "/containers/create?name=m", body)
    assert status == 201, data
    status, data = _call(daemon, "GET", "/containers/m/json")
    c = json.loads(data)
    assert c["HostConfig"]["Binds"][0] == "api1:/a:ro"
    kinds = sorted(
        (m["Destination"], m["Type"], m.get("Name", "")[:4], m["RW"]) for m in c["Mounts"]
    )
    anonymous = next(m["Name"] for m in c["Mounts"] if m["Destination"] == "/anon")
    assert kinds == [("/a", "volume", "api1", False), ("/anon", "volume", anonymous[:4], True),
                     ("/b", "volume", "api2", True)]  # fmt: skip
    status, data = _call(daemon, "GET", "/volumes/api2")
    assert json.loads(data)["Labels"] == {"made": "by-mount"}
    status, data = _call(daemon, "DELETE", "/volumes/api1")
    assert status == 409 and b"volume is in use" in data
    status, data = _call(daemon, "GET", "/system/df")
    usage = {v["Name"]: v["UsageData"] for v in json.loads(data)["Volumes"]}
    assert usage["api1"] == {"Size": 0, "RefCount": 1}
    assert _call(daemon, "DELETE", "/containers/m?v=1")[0] == 204
    names = sorted(v["Name"] for v in json.loads(_call(daemon, "GET", "/volumes")[1])["Volumes"])
    assert names == ["api1", "api2"]  # v=1: the anonymous one went
    assert _call(daemon, "DELETE", "/volumes/nosuch?force=1")[0] == 204
    # A client of API 1.41 (boxd's) prunes every unused volume, as Docker's daemon does.
    status, data = _call(daemon, "POST", "/v1.41/volumes/prune")
    pruned = json.loads(data)
    assert sorted(pruned["VolumesDeleted"]) == ["api1", "api2"] and pruned["SpaceReclaimed"] == 0


@pytest.mark.root
def test_a_bind_is_rprivate_on_a_host_of_shared_mounts(tmp_path: Path) -> None:
    """systemd makes the host's mounts shared; the daemon runs here in a mount namespace of
    the test's own made so (it ends with the daemon).  A host mount made below a bound
    directory after the start is not seen inside, as with Docker's rprivate binds; with
    rslave, as Docker's, it is."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    wrap = ("unshare", "-m", "--propagation", "unchanged", "sh", "-c",
            'mount --make-rshared / && exec "$@"', "sh")  # fmt: skip
    with running_daemon(tmp_path / "d", wrap=wrap) as daemon:
        daemon.ctl("run", "-d", "--name", "b", "--network", "none", "-v", f"{src}:/w",
                   "--mount", f"type=bind,src={src},dst=/s,bind-propagation=rslave",
                   "default", "sleep", "300")  # fmt: skip
        assert daemon.process is not None
        in_its_namespace = ("nsenter", f"--mount=/proc/{daemon.process.pid}/ns/mnt")
        subprocess.run([*in_its_namespace, "mount", "-t", "tmpfs", "later", str(src / "sub")],
                       check=True)  # fmt: skip
        subprocess.run([*in_its_namespace, "touch", str(src / "sub" / "f")], check=True)
        script = "ls -A /w/sub; grep -c ' /w ' /proc/1/mountinfo; ls /s/sub"
        # /w: the bind alone, empty below; /s: the host's new mount.
        assert daemon.ctl("exec", "b", "sh", "-c", script).stdout == "1\nf\n"
        shown = json.loads(daemon.ctl("inspect", "-f", "{{json .Mounts}}", "b").stdout)
        assert sorted((m["Destination"], m["Propagation"]) for m in shown) == [
            ("/s", "rslave"),
            ("/w", "rprivate"),
        ]


@pytest.mark.root
def test_rshared_binds_pass_mounts_both_ways(tmp_path: Path) -> None:
    """As Docker's [r]shared binds: what the container mounts below the bind is mounted
    below its source on the host too (and stays when the container is gone), and what
    the host mounts there later is seen inside.  The daemon runs in a mount namespace of
    the test's own made shared (it ends with the daemon, and the mounts with it)."""
    src = tmp_path / "src"
    for sub in ("in", "out", "late"):
        (src / sub).mkdir(parents=True)
    wrap = ("unshare", "-m", "--propagation", "unchanged", "sh", "-c",
            'mount --make-rshared / && exec "$@"', "sh")  # fmt: skip
    top = _traversable_dir("boxd-rshared-")  # for an --isolate-user container below
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, top)
        daemon = stack.enter_context(running_daemon(top, wrap=wrap))
        assert daemon.process is not None
        in_its_namespace = ("nsenter", f"--mount=/proc/{daemon.process.pid}/ns/mnt")
        daemon.ctl("run", "-d", "--name", "s", "--network", "none", "--cap-add", "SYS_ADMIN",
                   "-v", f"{src}:/s:rshared",
                   "--mount", f"type=bind,src={src},dst=/p,bind-propagation=shared",
                   "default", "sleep", "300")  # fmt: skip
        mine = "mount -t tmpfs mine /s/in && echo inside > /s/in/f && grep ' /s ' /proc/1/mountinfo"
        shown = daemon.ctl("exec", "s", "sh", "-c", mine).stdout
        assert " shared:" in shown, shown
        host = subprocess.run([*in_its_namespace, "cat", str(src / "in" / "f")],
                              capture_output=True, text=True, check=True)  # fmt: skip
        assert host.stdout == "inside\n"
        subprocess.run([*in_its_namespace, "mount", "-t", "tmpfs", "late", str(src / "late")],
                       check=True)  # fmt: skip
        subprocess.run([*in_its_namespace, "touch", str(src / "late" / "g")], check=True)
        assert daemon.ctl("exec", "s", "ls", "/s/late", "/p/late").stdout == (
            "/p/late:\ng\n\n/s/late:\ng\n"
        )
        mounts = json.loads(daemon.ctl("inspect", "-f", "{{json .Mounts}}", "s").stdout)
        assert sorted((m["Destination"], m["Propagation"]) for m in mounts) == [
            ("/p", "shared"),
            ("/s", "rshared"),
        ]
        # What a container mounts below an rprivate bind stays its own, in a user
        # namespace too (there the bind is made by the daemon, as an [r]shared one is).
        for isolate in ((), ("--isolate-user",)):
            script = "mount -t tmpfs other /w/out && touch /w/out/x && ls /w/out"
            r = daemon.ctl("run", "--rm", *isolate, "--network", "none", "--cap-add", "SYS_ADMIN",
                           "-v", f"{src}:/w", "default", "sh", "-c", script)  # fmt: skip
            assert r.stdout == "x\n"
            mounted = subprocess.run([*in_its_namespace, "mountpoint", "-q", str(src / "out")])
            assert mounted.returncode != 0, isolate
        daemon.ctl("rm", "-f", "s")
        # Docker's too: the container's mount outlives it, on the host's side.
        left = subprocess.run([*in_its_namespace, "cat", str(src / "in" / "f")],
                              capture_output=True, text=True, check=True)  # fmt: skip
        assert left.stdout == "inside\n"


@pytest.mark.root
def test_rslave_and_rshared_need_a_source_that_can_give_them(tmp_path: Path) -> None:
    """As Docker's: a private source cannot pass on what the host mounts later, nor be a
    peer of the container's bind, and the start says so (the daemon in a mount namespace
    of the test's own, all private)."""
    wrap = ("unshare", "-m", "--propagation", "private")
    with running_daemon(tmp_path / "d", wrap=wrap) as daemon:
        for mode, needs in (("rslave", "a shared or slave mount"), ("rshared", "a shared mount")):
            spec = f"{tmp_path}:/s:{mode}"
            r = daemon.ctl("run", "--rm", "-v", spec, "default", "true", check=False)
            assert r.returncode == 125
            assert f"path {tmp_path} is mounted on " in r.stderr
            assert f"but it is not {needs}" in r.stderr


@pytest.mark.root
def test_a_users_mount_at_dev_shm_replaces_boxds(daemon: Daemon, tmp_path: Path) -> None:
    """As Docker's: a tmpfs or bind of the user's at /dev/shm is the one there, with no
    64 MiB shm of boxd's below it."""
    script = "grep -c ' /dev/shm ' /proc/self/mountinfo; df -k /dev/shm | awk 'NR==2 {print $2}'"
    for given in (("--tmpfs", "/dev/shm:size=5m"), ("-v", f"{tmp_path}:/dev/shm")):
        out = daemon.ctl("run", "--rm", *given, "default", "sh", "-c", script).stdout
        assert out.splitlines()[0] == "1", (given, out)
        if given[0] == "--tmpfs":
            assert out.splitlines()[1] == "5120"

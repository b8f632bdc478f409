"""Docker 25-26's mount options: ``bind-recursive`` (and the Engine API's BindOptions
NonRecursive, ReadOnlyNonRecursive, ReadOnlyForceRecursive), ``bind-create-src`` and
``volume-subpath`` (VolumeOptions.Subpath), through boxctl, the docker CLI and the API."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import api_call, needs_cli
from docker_clients import docker as _docker

from boxd._mounts import parse_mount


def test_mount_option_forms() -> None:
    m = parse_mount("type=bind,src=/s,dst=/d,ro,bind-recursive=writable")
    assert m.volume_fields() == {
        "host": "/s", "container": "/d", "read_only": True, "recursive": "writable",
    }  # fmt: skip
    assert parse_mount("type=bind,src=/s,dst=/d,bind-recursive=enabled").volume_fields() == {
        "host": "/s", "container": "/d",
    }  # fmt: skip
    assert parse_mount("type=bind,src=/s,dst=/d,bind-recursive=disabled").recursive == "disabled"
    m = parse_mount("type=bind,src=/s,dst=/d,ro,bind-recursive=readonly,bind-propagation=rprivate")
    assert m.recursive == "readonly"
    assert parse_mount("type=bind,src=/s,dst=/d,bind-create-src").create_source
    assert not parse_mount("type=bind,src=/s,dst=/d,bind-create-src=false").create_source
    m = parse_mount("type=volume,src=data,dst=/d,volume-subpath=./a//b/")
    assert m.volume_fields() == {"host": "", "container": "/d", "volume": "data", "subpath": "a/b"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("type=bind,src=/s,dst=/x,bind-recursive=yes", "invalid value for bind-recursive: 'yes'"),
        ("type=bind,src=/s,dst=/x,bind-recursive=writable", "writable needs readonly too"),
        ("type=bind,src=/s,dst=/x,bind-recursive=readonly", "readonly needs readonly too"),
        (
            "type=bind,src=/s,dst=/x,ro,bind-recursive=readonly,bind-propagation=rslave",
            "would not be read-only (use rprivate)",
        ),
        ("type=bind,src=/s,dst=/x,bind-nonrecursive", "use bind-recursive=disabled instead"),
        ("type=bind,src=/s,dst=/x,bind-nonrecursive=1", "use bind-recursive=disabled instead"),
        ("type=volume,src=v1,dst=/x,bind-recursive=disabled", "cannot mix 'bind-*' options"),
        ("type=bind,src=/s,dst=/x,volume-subpath=a", "cannot mix 'volume-*' options"),
        ("type=volume,src=v1,dst=/x,volume-subpath=/etc", "a relative path within the volume"),
        ("type=volume,src=v1,dst=/x,volume-subpath=a/../..", "a relative path within the volume"),
        ("type=volume,src=v1,dst=/x,volume-subpath=", "a relative path within the volume"),
        ("type=volume,dst=/x,volume-subpath=a", "needs a named volume (src=NAME)"),
        ("type=bind,src=/s,dst=/x,bind-create-src=perhaps", "invalid value for bind-create-src"),
    ],
)
def test_bad_mount_options_are_named(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_mount(text)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    top = Path(tempfile.mkdtemp(prefix="boxd-mountopts-"))
    try:
        with running_daemon(top) as d:
            yield d
            ids = d.ctl("ps", "-a", "-q").stdout.split()
            if ids:
                d.ctl("rm", "-f", *ids, check=False)
            d.ctl("volume", "prune", "-f", "-a", check=False)
    finally:
        shutil.rmtree(top)


@pytest.fixture
def nested(tmp_path: Path) -> Iterator[Path]:
    """A host directory with a tmpfs mounted below it (``sub``)."""
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(top / "sub")], check=True)
    try:
        (top / "sub" / "below").write_text("below\n")
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top / "sub")], check=True)


# What a container sees of /x: whether the top and the tmpfs below are writable, and
# whether the tmpfs is there at all.
_PROBE = (
    "touch /x/t 2>/dev/null && echo top-rw || echo top-ro; "
    "test -e /x/sub/below || echo sub-absent; "
    "touch /x/sub/s 2>/dev/null && echo sub-rw || echo sub-ro"
)


@pytest.mark.root
@pytest.mark.parametrize(
    ("options", "seen"),
    [
        ("ro", "top-ro sub-ro"),  # Docker 25: read-only below too
        ("ro,bind-recursive=enabled", "top-ro sub-ro"),
        ("ro,bind-recursive=writable", "top-ro sub-rw"),  # Docker 24's ro
        ("ro,bind-recursive=readonly", "top-ro sub-ro"),
        ("ro,bind-recursive=disabled", "top-ro sub-absent sub-ro"),  # an empty directory
        ("bind-recursive=disabled", "top-rw sub-absent sub-rw"),
        ("bind-recursive=enabled", "top-rw sub-rw"),
    ],
)
def test_bind_recursive(daemon: Daemon, nested: Path, options: str, seen: str) -> None:
    mount = f"type=bind,src={nested},dst=/x,{options}"
    r = daemon.ctl("run", "--rm", "--mount", mount, "default", "sh", "-c", _PROBE)
    assert r.stdout.split() == seen.split(), r.stderr


@pytest.mark.root
def test_bind_create_src(daemon: Daemon, tmp_path: Path) -> None:
    source = tmp_path / "made" / "here"
    mount = f"type=bind,src={source},dst=/x"
    r = daemon.ctl("run", "--rm", "--mount", mount, "default", "true", check=False)
    assert r.returncode == 125 and "bind source path does not exist" in r.stderr, r.stderr
    assert not source.parent.exists()
    daemon.ctl("run", "--rm", "--mount", f"{mount},bind-create-src", "default", "touch", "/x/f")
    assert (source / "f").exists() and source.stat().st_mode & 0o777 == 0o755
    (tmp_path / "file").write_text("a file\n")  # what exists is bound as it is
    mount = f"type=bind,src={tmp_path}/file,dst=/f,bind-create-src"
    assert daemon.ctl("run", "--rm", "--mount", mount, "default", "cat", "/f").stdout == "a file\n"


@pytest.mark.root
def test_volume_subpath(daemon: Daemon, tmp_path: Path) -> None:
    fill = (
        "mkdir -p /v/sub/deep; echo in-sub > /v/sub/f; echo top > /v/top; ln -s /etc /v/link;"
        " ln -s .. /v/sub/deep/up; ln -s link /v/link2"
    )
    daemon.ctl("run", "--rm", "-v", "shared:/v", "default", "sh", "-c", fill)
    base = "type=volume,src=shared,dst=/m,volume-subpath="
    r = daemon.ctl("run", "--rm", "--mount", base + "sub", "default", "sh", "-c",
                   "ls /m; cat /m/f; echo new > /m/g")  # fmt: skip
    assert r.stdout == "deep\nf\nin-sub\n"
    out = daemon.ctl("run", "--rm", "-v", "shared:/v", "default", "cat", "/v/sub/g").stdout
    assert out == "new\n"  # written into the volume's subdirectory
    file = "type=volume,src=shared,dst=/etc/motd,volume-subpath=sub/f"  # a file alone
    assert daemon.ctl("run", "--rm", "--mount", file, "default", "cat", "/etc/motd").stdout == (
        "in-sub\n"
    )
    ro = daemon.ctl("run", "--rm", "--mount", base + "sub,ro", "default", "touch", "/m/x",
                    check=False)  # fmt: skip
    assert "Read-only file system" in ro.stderr
    data = daemon.root / "volumes" / "shared" / "_data"
    # A symlink on the way is followed as dockerd's safepath follows it (an absolute one
    # from the host's root) where it stays in the volume, refused where it leaves it; a
    # missing subpath fails the start.  Docker's words, exit 125.
    up = daemon.ctl("run", "--rm", "--mount", base + "sub/deep/up", "default", "ls", "/m")
    assert up.stdout == "deep\nf\ng\n"
    escapes = f"path concatenation escapes the base directory, base: {data}, subpath:"
    for subpath, why in (("link", escapes), ("link2", escapes), ("nope", "cannot access")):
        r = daemon.ctl("run", "--rm", "--mount", base + subpath, "default", "true", check=False)
        assert r.returncode == 125, r.stderr
        assert why in r.stderr, r.stderr
    # What a start finds is looked up at that start: a directory swapped for a symlink to
    # the host's /etc after the create is refused, not followed.
    daemon.ctl("create", "--name", "later", "--mount", base + "sub/deep", "default", "ls", "/m")
    shutil.rmtree(data / "sub" / "deep")
    (data / "sub" / "deep").symlink_to("/etc")
    r = daemon.ctl("start", "-a", "later", check=False)
    assert r.returncode != 0 and f"{escapes} sub/deep" in r.stderr, r.stderr
    # cp into a stopped container writes into the subpath, as its mount would.
    (data / "sub" / "deep").unlink()
    (data / "sub" / "deep").mkdir()
    (tmp_path / "copied").write_text("copied\n")
    daemon.ctl("cp", str(tmp_path / "copied"), "later:/m/copied")
    assert (data / "sub" / "deep" / "copied").read_text() == "copied\n"
    assert daemon.ctl("start", "-a", "later").stdout == "copied\n"
    # --volumes-from copies the subpath with the volume.
    got = daemon.ctl("run", "--rm", "--volumes-from", "later", "default", "ls", "/m").stdout
    assert got == "copied\n"
    config = daemon.inspect("later")["config"]["volumes"]
    assert [(v["volume"], v["subpath"]) for v in config] == [("shared", "sub/deep")]
    daemon.ctl("rm", "later")
    daemon.ctl("volume", "rm", "shared")


@pytest.mark.root
@needs_cli
def test_docker_cli_mount_options(daemon: Daemon, nested: Path) -> None:
    daemon.ctl("run", "--rm", "-v", "dvol:/v", "default", "sh", "-c", "mkdir /v/a; echo a > /v/a/f")
    r = _docker(daemon, "run", "--rm", "--mount", "type=volume,src=dvol,dst=/m,volume-subpath=a",
                "default", "cat", "/m/f")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "a\n"), r.stderr
    mount = f"type=bind,src={nested},dst=/x,ro,bind-recursive=writable"
    r = _docker(daemon, "run", "--rm", "--mount", mount, "default", "sh", "-c", _PROBE)
    assert r.stdout.split() == ["top-ro", "sub-rw"], r.stderr
    mount = f"type=bind,src={nested},dst=/x,bind-recursive=disabled"
    r = _docker(daemon, "create", "--name", "shown", "--mount", mount, "--mount",
                "type=volume,src=dvol,dst=/m,volume-subpath=a", "default", "true")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = _docker(daemon, "inspect", "-f", "{{json .HostConfig.Mounts}}", "shown")
    assert json.loads(r.stdout) == [
        {"Type": "bind", "Source": str(nested), "Target": "/x",
         "BindOptions": {"NonRecursive": True}},
        {"Type": "volume", "Source": "dvol", "Target": "/m", "VolumeOptions": {"Subpath": "a"}},
    ]  # fmt: skip
    _docker(daemon, "rm", "shown")
    # A client of API 1.43 had read-only binds read-only at the top only: dockerd keeps
    # that for it, and refuses what it could not have asked for.
    old = "/v1.43/containers/create"
    body = {"Image": "default", "Cmd": ["sh", "-c", _PROBE],
            "HostConfig": {"Binds": [f"{nested}:/x:ro"]}}  # fmt: skip
    status, _, data = api_call(daemon, "POST", old, json.dumps(body).encode())
    assert status == 201, data
    cid = json.loads(data)["Id"]
    assert daemon.ctl("start", "-a", cid).stdout.split() == ["top-ro", "sub-rw"]
    daemon.ctl("rm", cid)
    forced = {"Type": "bind", "Source": str(nested), "Target": "/x", "ReadOnly": True,
              "BindOptions": {"ReadOnlyForceRecursive": True}}  # fmt: skip
    body = {"Image": "default", "HostConfig": {"Mounts": [forced]}}
    status, _, data = api_call(daemon, "POST", old, json.dumps(body).encode())
    assert status == 400 and b"ReadOnlyForceRecursive needs API 1.44" in data, data
    for options, words in (
        ({"ReadOnlyNonRecursive": True, "ReadOnlyForceRecursive": True},
         "mount options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive"),
        ({"ReadOnlyNonRecursive": True}, "options conflict: Writable && ReadOnlyNonRecursive"),
    ):  # fmt: skip
        spec = {"Type": "bind", "Source": str(nested), "Target": "/x", "BindOptions": options,
                "ReadOnly": "ReadOnlyForceRecursive" in options}  # fmt: skip
        body = {"Image": "default", "HostConfig": {"Mounts": [spec]}}
        status, _, data = api_call(daemon, "POST", "/containers/create", json.dumps(body).encode())
        assert status == 400 and words.encode() in data, data
    _docker(daemon, "volume", "rm", "dvol")


_LAYERED = """\
FROM scratch
COPY busybox /bin/busybox
COPY d1/ /data/
COPY d2/ /data/
RUN ["/bin/busybox", "rm", "/data/gone"]
RUN ["/bin/busybox", "ln", "-s", "/etc", "/data/link"]
RUN ["/bin/busybox", "sh", "-c", "ln -s data/sub /subs; ln -s ../.. /out"]
RUN ["/bin/busybox", "sh", "-c", "rm -r /data/again; mkdir /data/again; echo new >/data/again/n"]
"""


@pytest.fixture
def layered(daemon: Daemon, tmp_path: Path) -> Iterator[str]:
    """A stored image of several layers: two directories merged at /data, a file removed
    (a whiteout), a symlink added and a directory made anew (opaque) by later layers."""
    context = tmp_path / "context"
    d1 = ("one", "gone", "sub/s1", "again/old")
    for name, files in (("d1", d1), ("d2", ("two", "sub/s2"))):
        for file in files:
            (context / name / file).parent.mkdir(parents=True, exist_ok=True)
            (context / name / file).write_text(f"{Path(file).name}\n")
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(_LAYERED)
    daemon.ctl("build", "-q", "-t", "layered", str(context))
    yield "layered"
    daemon.ctl("rmi", "-f", "layered", check=False)


def _mount_image(daemon: Daemon, options: str, script: str) -> subprocess.CompletedProcess[str]:
    mount = f"type=image,source=layered,target=/img{options}"
    return daemon.ctl("run", "--rm", "--mount", mount, "default", "sh", "-c", script, check=False)


@pytest.mark.root
def test_image_mount(daemon: Daemon, layered: str, tmp_path: Path) -> None:
    r = _mount_image(daemon, "", "ls /img/data; ls /img/data/sub; touch /img/x")
    # Merged as the image's own root would be: the whiteout hides gone, sub has both.
    assert r.stdout.split() == ["again", "link", "one", "sub", "two", "s1", "s2"], r.stderr
    assert "Read-only file system" in r.stderr
    for subpath, seen in (("data/sub", "s1 s2"), ("bin", "busybox"), ("data/again", "n")):
        r = _mount_image(daemon, f",image-subpath={subpath}", "ls /img")
        assert r.stdout.split() == seen.split(), r.stderr
    # Its overlay's options name no host path (one layer has an empty one below it).
    for options in ("", ",image-subpath=bin"):
        r = _mount_image(daemon, options, "grep ' /img ' /proc/self/mountinfo")
        assert "lowerdir=l/0:l/1" in r.stdout and str(daemon.root) not in r.stdout, r.stdout
    r = _mount_image(daemon, ",image-subpath=data/one", "cat /img; echo x > /img")
    assert r.stdout == "one\n" and "Read-only file system" in r.stderr, r.stderr
    # A relative symlink on the way is followed inside the image, as dockerd's safepath
    # follows it; one that leaves the image (an absolute one: from the host's root) is
    # refused in its words.
    r = _mount_image(daemon, ",image-subpath=subs", "ls /img")
    assert r.stdout.split() == ["s1", "s2"], r.stderr
    escapes = "path concatenation escapes the base directory"
    for subpath, why in (
        ("data/gone", "/data/gone of the image: no such file or directory"),
        ("data/link/x", f"{escapes}: /data/link is a symlink to /etc"),
        ("out/etc", f"{escapes}: /out is a symlink to ../.."),
        ("data/one/x", "/data/one of the image: not a directory"),
    ):
        r = _mount_image(daemon, f",image-subpath={subpath}", "true")
        assert r.returncode == 125 and why in r.stderr, r.stderr
    # The image a container mounts is in use: not removed, not pruned; inspect shows it.
    mount = "type=image,src=layered,dst=/img,image-subpath=data"
    daemon.ctl("create", "--name", "keeper", "--mount", mount, "default", "ls", "/img")
    r = daemon.ctl("rmi", "layered", check=False)
    assert r.returncode == 1 and "container" in r.stderr and "is using" in r.stderr, r.stderr
    daemon.ctl("image", "prune", "-a", "-f")
    assert daemon.ctl("images", "-q", "layered").stdout.strip()
    shown = daemon.ctl("inspect", "-f", "{{json .HostConfig.Mounts}}", "keeper").stdout
    assert json.loads(shown) == [
        {"Type": "image", "Source": "layered", "Target": "/img",
         "ImageOptions": {"Subpath": "data"}},
    ]  # fmt: skip
    # cp reads the image's files there, and cannot write them, as for a read-only mount.
    daemon.ctl("cp", "keeper:/img/one", str(tmp_path / "one"))
    assert (tmp_path / "one").read_text() == "one\n"
    r = daemon.ctl("cp", str(tmp_path / "one"), "keeper:/img/new", check=False)
    assert r.returncode == 1 and "into /img: read-only file system" in r.stderr, r.stderr
    # Removed by force meanwhile, the image stays for its user, as a container's own does.
    daemon.ctl("rmi", "-f", "layered")
    assert daemon.ctl("start", "-a", "keeper").stdout.split() == [
        "again", "link", "one", "sub", "two",
    ]  # fmt: skip
    daemon.ctl("rm", "keeper")


@pytest.mark.root
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mount", "type=image,src=nosuch,dst=/img"], "no such image"),
        (["--mount", "type=image,src=default,dst=/img"], "bind the host's path with type=bind"),
        (["--mount", "type=image,dst=/img"], "type=image needs an image"),
        (["--mount", "type=image,src=layered,dst=/img,image-subpath=/etc"], "within the image"),
        (["--mount", "type=image,src=layered,dst=/img,volume-nocopy"], "cannot mix 'volume-*'"),
        (["--isolate-user", "--mount", "type=image,src=layered,dst=/img"], "--isolate-user"),
        (["-v", "/tmp:/img", "--mount", "type=image,src=layered,dst=/img"], "duplicate mount"),
    ],
)
def test_bad_image_mounts_are_named(
    daemon: Daemon, layered: str, args: list[str], words: str
) -> None:
    r = daemon.ctl("run", "--rm", *args, "default", "true", check=False)
    assert r.returncode == 125 and words in r.stderr, r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


@pytest.mark.root
@needs_cli
def test_image_mounts_through_the_engine_api(daemon: Daemon, layered: str) -> None:
    """Type "image" is API 1.48's: the docker CLI's ``--mount type=image`` (and
    ``image-subpath``, ``ImageOptions.Subpath``) works; dockerd refuses it from an older
    client, in its words, and so does boxd."""
    r = _docker(daemon, "run", "--rm", "--mount",
                "type=image,source=layered,target=/img,image-subpath=data/sub",
                "default", "ls", "/img")  # fmt: skip
    assert (r.returncode, r.stdout.split()) == (0, ["s1", "s2"]), r.stderr
    mount = {"Type": "image", "Source": "layered", "Target": "/img",
             "ImageOptions": {"Subpath": "data"}}  # fmt: skip
    body = json.dumps({"Image": "default", "Cmd": ["ls", "/img"],
                       "HostConfig": {"Mounts": [mount]}}).encode()  # fmt: skip
    status, _, data = api_call(daemon, "POST", "/v1.47/containers/create", body)
    assert status == 400 and b'Mount type \\"Image\\" needs API v1.48 or newer' in data, data
    status, _, data = api_call(daemon, "POST", "/v1.48/containers/create", body)
    assert status == 201, data
    cid = json.loads(data)["Id"]
    shown = json.loads(_docker(daemon, "inspect", cid).stdout)[0]
    assert shown["HostConfig"]["Mounts"] == [mount]
    assert [(m["Type"], m["Name"], m["RW"]) for m in shown["Mounts"]] == [
        ("image", "layered", False)
    ]
    assert daemon.ctl("start", "-a", cid).stdout.split() == ["again", "link", "one", "sub", "two"]
    daemon.ctl("rm", cid)
    mount["ImageOptions"] = {"Subpath": "../etc"}
    body = json.dumps({"Image": "default", "HostConfig": {"Mounts": [mount]}}).encode()
    status, _, data = api_call(daemon, "POST", "/containers/create", body)
    assert status == 400 and b"subpath must be a relative path within the image" in data, data
    assert daemon.ctl("ps", "-a", "-q").stdout == ""

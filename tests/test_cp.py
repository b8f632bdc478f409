"""``cp`` (issue 16) and the archive endpoints ``docker cp`` uses (issue 18), through the
real boxctl, the real docker CLI and a real daemon: Docker's path rules both ways, tar
streams, running and stopped containers, volumes, user namespaces, and hostile symlinks
inside the container that must never lead a read or a write to the host.

The daemon's root is below /tmp (mode 0711), not pytest's 0700 tree, so that an
``--isolate-user`` container's root can reach its overlays.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import api_call, needs_cli
from docker_clients import docker as _docker

from boxd._plan import id_range

pytestmark = pytest.mark.root

MTIME = 1_600_000_000


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    top = Path(tempfile.mkdtemp(prefix="boxd-cp-"))
    try:
        os.chmod(top, 0o711)
        with running_daemon(top) as d:
            yield d
    finally:
        shutil.rmtree(top)


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    yield daemon
    daemon.remove_containers()


def _start(daemon: Daemon, name: str, *opts: str, run: bool = True) -> None:
    verb = ("run", "-d") if run else ("create",)
    daemon.ctl(*verb, "--name", name, "--network", "none", *opts, "default", "sleep", "300")


def _sh(daemon: Daemon, name: str, script: str) -> str:
    return daemon.ctl("exec", name, "sh", "-c", script).stdout


def _cp(daemon: Daemon, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return daemon.ctl("cp", *args, input=input, check=False)


def _tree(top: Path) -> Path:
    """A host tree: a file with a mode and a time, binary data, a relative and an absolute
    symlink, a directory of its own mode."""
    src = top / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    os.chmod(src / "a.txt", 0o640)
    (src / "sub" / "blob").write_bytes(os.urandom(300_000))
    os.chmod(src / "sub", 0o750)
    (src / "link").symlink_to("a.txt")
    (src / "abs").symlink_to("/etc/passwd")
    for p in (src / "a.txt", src / "sub" / "blob", src / "sub"):
        os.utime(p, (MTIME, MTIME))
    return src


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_copy_in_by_dockers_rules(clean: Daemon, tmp_path: Path) -> None:
    """Docker: a missing DEST takes SRC's content under DEST's name; an existing directory
    receives SRC by its own name; SRC/. copies the content; files and symlinks keep their
    mode and time, owned by the container's root unless -a."""
    src = _tree(tmp_path)
    blob = _sha((src / "sub" / "blob").read_bytes())
    _start(clean, "c")
    assert _cp(clean, str(src), "c:/data").returncode == 0
    assert _sh(clean, "c", "stat -c '%a %u:%g %Y' /data/a.txt /data/sub") == (
        f"640 0:0 {MTIME}\n750 0:0 {MTIME}\n"
    )
    assert _sh(clean, "c", "readlink /data/link /data/abs; sha256sum < /data/sub/blob") == (
        f"a.txt\n/etc/passwd\n{blob}  -\n"
    )
    clean.ctl("cp", str(src), "c:/data")  # exists: src lands inside it
    clean.ctl("cp", f"{src}/.", "c:/content")  # the content, under the new name
    clean.ctl("cp", f"{src}/a.txt", "c:/tmp/")
    clean.ctl("cp", f"{src}/a.txt", "c:/tmp/renamed")
    listing = _sh(clean, "c", "ls /data/src; ls /content; cat /tmp/a.txt /tmp/renamed")
    assert listing == "a.txt\nabs\nlink\nsub\n" * 2 + "hello\nhello\n"

    os.chown(src / "a.txt", 1234, 5678)
    clean.ctl("cp", "-a", f"{src}/a.txt", "c:/tmp/owned")
    clean.ctl("cp", "-L", f"{src}/link", "c:/tmp/followed")
    assert _sh(clean, "c", "stat -c %u:%g /tmp/owned; stat -c %F /tmp/followed") == (
        "1234:5678\nregular file\n"
    )

    # A tar stream on stdin goes into an existing directory as it is.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("streamed/x")
        info.size, info.mode, info.uid = 3, 0o600, 42
        tar.addfile(info, io.BytesIO(b"abc"))
    r = _cp(clean, "-", "c:/tmp", input=data.getvalue())
    assert r.returncode == 0, r.stderr
    assert _sh(clean, "c", "stat -c '%a %u' /tmp/streamed/x; cat /tmp/streamed/x") == "600 0\nabc"


def test_copy_out_by_dockers_rules(clean: Daemon, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _start(clean, "c")
    clean.ctl("cp", str(src), "c:/data")
    _sh(clean, "c", "chown 1234:5678 /data/a.txt")
    out = tmp_path / "out"
    out.mkdir()
    clean.ctl("cp", "c:/data", str(out / "new"))  # missing: named after DEST
    clean.ctl("cp", "c:/data", str(out))  # existing directory: by SRC's name
    clean.ctl("cp", "c:/data/.", str(out / "content"))
    clean.ctl("cp", "c:/data/link", str(out / "link"))
    clean.ctl("cp", "-L", "c:/data/link", str(out / "followed"))
    clean.ctl("cp", "-a", "c:/data/a.txt", str(out / "owned"))
    new = out / "new"
    assert sorted(os.listdir(new)) == ["a.txt", "abs", "link", "sub"]
    assert sorted(os.listdir(out / "data")) == sorted(os.listdir(out / "content")) == [
        "a.txt", "abs", "link", "sub",
    ]  # fmt: skip
    st = os.stat(new / "a.txt")
    assert (oct(st.st_mode & 0o777), st.st_uid, int(st.st_mtime)) == ("0o640", 0, MTIME)
    assert (new / "sub" / "blob").read_bytes() == (src / "sub" / "blob").read_bytes()
    assert os.readlink(new / "abs") == "/etc/passwd"  # a symlink stays one, never followed
    assert os.readlink(out / "link") == "a.txt"
    assert (out / "followed").read_text() == "hello\n" and not (out / "followed").is_symlink()
    assert (os.stat(out / "owned").st_uid, os.stat(out / "owned").st_gid) == (1234, 5678)
    assert int(os.stat(new / "sub").st_mtime) == MTIME  # directories' times set last

    r = subprocess.run(
        f"{_ctl(clean)} cp c:/data - | tar -tvf -", shell=True, capture_output=True, text=True
    )
    names = [line.split()[-1] for line in r.stdout.splitlines() if "->" not in line]
    assert names[:3] == ["data/", "data/a.txt", "data/sub/"], r.stdout


def _ctl(daemon: Daemon) -> str:
    from daemon_harness import daemon_cli

    return daemon_cli(daemon)


def test_bad_input_exits_1_and_writes_nothing(clean: Daemon, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _start(clean, "c")
    _sh(clean, "c", "echo keep > /tmp/file")
    cases = [
        (("c:/nope", str(tmp_path / "x")), "Could not find the file /nope in container c"),
        (("nosuch:/etc", str(tmp_path / "x")), "No such container: nosuch"),
        (("c:/etc", "c:/tmp"), "copying between containers is not supported"),
        ((str(src), str(tmp_path / "y")), "must specify at least one container source"),
        ((str(src), "c:/tmp/file"), "cannot copy directory"),
        ((f"{src}/a.txt", "c:/missing/"), "no such directory"),
        ((f"{src}/a.txt", "c:/missing/x"), "Could not find the file /missing in container c"),
        (("-", "c:/tmp/file"), 'destination "c:/tmp/file" must be a directory'),
        (("c:/etc", str(tmp_path / "nodir" / "x")), "does not exist"),
    ]
    for args, message in cases:
        r = _cp(clean, *args, input=b"")
        assert (r.returncode, message in r.stderr) == (1, True), (args, r.stderr)
    assert _sh(clean, "c", "cat /tmp/file; ls /missing 2>&1 || true").startswith("keep\n")

    # A hostile tar: a good member, then one that climbs out; nothing of it is written.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name in ("good.txt", "../../evil.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    r = _cp(clean, "-", "c:/tmp", input=data.getvalue())
    assert r.returncode == 1 and "'../../evil.txt' points outside" in r.stderr
    assert _sh(clean, "c", "ls /tmp; test -e /evil.txt || echo none") == "file\nnone\n"
    # Into / such a name stops at the root, as dockerd's untar joins it onto the
    # destination: ../up.txt is /up.txt.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("../up.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert _cp(clean, "-", "c:/", input=data.getvalue()).returncode == 0
    assert _sh(clean, "c", "cat /up.txt; rm /up.txt") == "x"
    # boxctl never lets a file replace a directory or the other way round (Docker's CLI
    # sends noOverwriteDirNonDir); the check comes before the first write.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("first.txt"), io.BytesIO(b""))
        tar.addfile(_dir_member("file"))
    r = _cp(clean, "-", "c:/tmp", input=data.getvalue())
    assert r.returncode == 1 and "cannot overwrite non-directory '/tmp/file'" in r.stderr
    assert _sh(clean, "c", "ls /tmp") == "file\n"
    r = _cp(clean, "-", "c:/tmp", input=b"not a tar at all" * 100)
    assert r.returncode == 1 and "not a valid tar" in r.stderr


def _dir_member(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def _mounts_below(path: Path) -> list[str]:
    """Mounts of the host below ``path`` (the daemon's own /proc view aside)."""
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if str(path / "containers") in line]


def _holders(daemon: Daemon) -> list[str]:
    """The daemon's copy helpers still running (its descendants only: other suites' daemons
    may be copying on this machine at the same time)."""
    assert daemon.process is not None
    found, todo = [], [str(daemon.process.pid)]
    while todo:
        pid = todo.pop()
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += (task / "children").read_text().split()
            comm = Path(f"/proc/{pid}/comm").read_text()
            if pid != str(daemon.process.pid) and comm == "boxd:[cp]\n":
                found.append(pid)
        except OSError:  # it ended meanwhile
            continue
    return found


def test_stopped_containers_and_volumes(clean: Daemon, tmp_path: Path) -> None:
    """A created container and an exited one: their layers (and volumes) are read and
    written although nothing of them is mounted, nothing stays mounted or running after,
    and the container starts with the files in place."""
    src = _tree(tmp_path)
    vol = tmp_path / "vol"
    vol.mkdir()
    _start(clean, "s", "-v", f"{vol}:/vol", run=False)
    assert _cp(clean, str(src), "s:/data").returncode == 0
    assert _cp(clean, f"{src}/a.txt", "s:/vol/").returncode == 0
    assert (vol / "a.txt").read_text() == "hello\n"
    clean.ctl("start", "s")
    assert _sh(clean, "s", "cat /data/a.txt /vol/a.txt; echo more > /made") == "hello\nhello\n"
    clean.ctl("stop", "-t", "0", "s")
    out = tmp_path / "out"
    assert _cp(clean, "s:/made", str(out)).returncode == 0
    assert out.read_text() == "more\n"
    assert _cp(clean, "s:/vol/a.txt", str(tmp_path / "fromvol")).returncode == 0
    assert (tmp_path / "fromvol").read_text() == "hello\n"
    assert _mounts_below(clean.root) == [] and _holders(clean) == []
    clean.ctl("start", "s")  # the overlay's upper is free again
    assert _sh(clean, "s", "cat /made") == "more\n"
    # A working directory the image lacks is there for a cp before the first start, as
    # dockerd makes it at the create (root's, 0755; its parents too).
    _start(clean, "w", "-w", "/home/foo/bar", run=False)
    assert _cp(clean, f"{src}/a.txt", "w:/home/foo/bar/").returncode == 0
    assert _cp(clean, "w:/home/foo/bar", str(tmp_path / "wd")).returncode == 0
    assert (tmp_path / "wd" / "a.txt").read_text() == "hello\n"
    clean.ctl("start", "w")
    assert _sh(clean, "w", "pwd; stat -c '%a %u' .") == "/home/foo/bar\n755 0\n"


def test_read_only_root_takes_files_only_in_a_writable_volume(
    clean: Daemon, tmp_path: Path
) -> None:
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    f = tmp_path / "f"
    f.write_text("x")
    _start(clean, "r", "--read-only", "-v", f"{vol}:/vol", "-v", f"{ro}:/ro:ro")
    for state in ("running", "stopped"):
        r = _cp(clean, str(f), "r:/tmp/")
        assert (r.returncode, r.stderr) == (1, "boxctl: container rootfs is marked read-only\n")
        r = _cp(clean, str(f), "r:/ro/")
        assert (r.returncode, r.stderr) == (1, "boxctl: mounted volume is marked read-only\n")
        assert _cp(clean, str(f), f"r:/vol/{state}").returncode == 0
        assert _cp(clean, "r:/etc/hostname", str(tmp_path / state)).returncode == 0
        clean.ctl("stop", "-t", "0", "r")
    assert sorted(os.listdir(vol)) == ["running", "stopped"] and os.listdir(ro) == []


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_hostile_symlinks_never_reach_the_host(clean: Daemon, tmp_path: Path, state: str) -> None:
    """Symlinks the container made: / itself, ../ climbing above its root, absolute paths
    of host files, a symlinked parent directory.  Reads find the container's files or
    nothing; writes land inside the container."""
    secret = tmp_path / "host-secret"
    secret.write_text("HOST\n")
    target_dir = tmp_path / "host-dir"
    target_dir.mkdir()
    _start(clean, "h")
    _sh(
        clean,
        "h",
        f"ln -s / /data; ln -s ../../../../../../{secret} /etc/evil; ln -s {secret} /abs;"
        f" mkdir /d; ln -s /etc /d/etclink; ln -s ../../../../.. /up; ln -s {target_dir} /hd;"
        " echo inside > /etc/marker; ln -s ../../../../etc/passwd /etc/evil2",
    )
    passwd = _sh(clean, "h", "cat /etc/passwd")
    assert passwd != Path("/etc/passwd").read_text()
    if state == "stopped":
        clean.ctl("stop", "-t", "0", "h")
    out = tmp_path / "out"
    for src in ("h:/etc/evil", "h:/abs", "h:/up" + str(secret), "h:/data" + str(secret)):
        r = _cp(clean, "-L", src, str(out))
        assert r.returncode == 1 and "Could not find the file" in r.stderr, (src, r.stderr)
        assert not out.exists()
    assert _cp(clean, "-L", "h:/etc/evil2", str(tmp_path / "pw")).returncode == 0
    assert (tmp_path / "pw").read_text() == passwd  # the container's, not the host's
    r = _cp(clean, "h:/up/etc/marker", str(out))
    assert r.returncode == 0 and out.read_text() == "inside\n"
    assert _cp(clean, "-L", "h:/d/etclink/marker", str(tmp_path / "m2")).returncode == 0
    r = _cp(clean, "h:/etc/evil", str(tmp_path / "link"))  # the link itself, as a link
    assert os.readlink(tmp_path / "link") == f"../../../../../../{secret}"

    payload = tmp_path / "payload"
    payload.write_text("PWNED\n")
    expected = {"h:/d/etclink/": 0, "h:/hd/": 1, f"h:/up{target_dir}/": 1, "h:/data/tmp/": 0}
    for dest, code in expected.items():
        r = _cp(clean, str(payload), dest)
        assert r.returncode == code, (dest, r.stderr)
    # A tar that makes a symlink to / and then writes through it.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        link = tarfile.TarInfo("esc")
        link.type, link.linkname = tarfile.SYMTYPE, "/"
        tar.addfile(link)
        info = tarfile.TarInfo(f"esc{target_dir}/through-link")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    r = _cp(clean, "-", "h:/tmp", input=data.getvalue())
    assert r.returncode == 0, r.stderr
    assert secret.read_text() == "HOST\n" and os.listdir(target_dir) == []
    assert not Path("/etc/payload").exists()
    if state == "stopped":
        clean.ctl("start", "h")
    inside = _sh(clean, "h", f"cat /etc/payload /tmp/payload; ls {target_dir}")
    assert inside == "PWNED\nPWNED\nthrough-link\n"


def test_user_namespace_ids(clean: Daemon, tmp_path: Path) -> None:
    """--isolate-user: files come in owned by the container's root (host uid START), -a
    keeps the tar's ids inside the namespace; out, the container's ids are shown."""
    start, _count = id_range()
    f = tmp_path / "f"
    f.write_text("x")
    os.chown(f, 1234, 99)
    _start(clean, "u", "--isolate-user")
    clean.ctl("cp", str(f), "u:/tmp/root-owned")
    clean.ctl("cp", "-a", str(f), "u:/tmp/kept")
    assert _sh(clean, "u", "stat -c %u:%g /tmp/root-owned /tmp/kept") == "0:0\n1234:99\n"
    cid = clean.inspect("u")["id"]
    upper = clean.root / "containers" / cid / "fs" / "root" / "upper" / "tmp"
    assert os.stat(upper / "root-owned").st_uid == start
    assert os.stat(upper / "kept").st_uid == start + 1234
    clean.ctl("cp", "-a", "u:/tmp/kept", str(tmp_path / "back"))
    assert os.stat(tmp_path / "back").st_uid == 1234
    clean.ctl("stop", "-t", "0", "u")
    clean.ctl("cp", str(f), "u:/tmp/stopped")
    clean.ctl("start", "u")
    assert _sh(clean, "u", "stat -c %u /tmp/stopped") == "0\n"


# ---- the Docker API: the docker CLI and raw HTTP --------------------------------------


@needs_cli
def test_docker_cp_both_ways(clean: Daemon, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _start(clean, "d")
    r = _docker(clean, "cp", str(src), "d:/data")
    assert r.returncode == 0, r.stderr
    assert _sh(clean, "d", "stat -c '%a %u' /data/a.txt; readlink /data/link") == "640 0\na.txt\n"
    r = _docker(clean, "cp", "d:/data", str(tmp_path / "back"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back" / "sub" / "blob").read_bytes() == (src / "sub" / "blob").read_bytes()
    assert os.readlink(tmp_path / "back" / "link") == "a.txt"
    r = _docker(clean, "cp", "d:/nope", str(tmp_path / "x"))
    assert r.returncode == 1 and "Could not find the file /nope in container d" in r.stderr
    r = _docker(clean, "cp", str(src), "d:/data/a.txt")
    assert r.returncode == 1 and "cannot copy directory" in r.stderr
    clean.ctl("stop", "-t", "0", "d")
    r = _docker(clean, "cp", f"{src}/a.txt", "d:/stopped.txt")
    assert r.returncode == 0, r.stderr
    r = _docker(clean, "cp", "d:/stopped.txt", str(tmp_path / "stopped.txt"))
    assert r.returncode == 0 and (tmp_path / "stopped.txt").read_text() == "hello\n"
    # Docker's events for both directions.
    r = clean.ctl("events", "--since", "10m", "--until", "0s", "--format", "json")
    actions = [e["Action"] for e in map(json.loads, r.stdout.splitlines())]
    assert {"extract-to-dir", "archive-path"} <= set(actions)


@needs_cli
@pytest.mark.parametrize("state", ["running", "stopped"])
def test_hard_links_come_out_as_hard_links(clean: Daemon, tmp_path: Path, state: str) -> None:
    """A file's other names are hard links in the tar, as Docker's archive writes them
    (they came out as copies of its data): boxctl and the docker CLI make them links
    again, a hard link to a symlink too (boxctl's tar extraction followed it)."""
    _start(clean, "h")
    script = "mkdir -p /d/sub; echo data > /d/f; ln /d/f /d/sub/g; ln -s f /d/s; ln /d/s /d/s2"
    _sh(clean, "h", script)
    if state == "stopped":
        clean.ctl("stop", "-t", "0", "h")
    status, _, body = api_call(clean, "GET", "/containers/h/archive?path=/d")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["d/f"].isfile() and members["d/s"].issym()
    links = {"d/sub/g": "d/f", "d/s2": "d/s"}  # to the first name each has in the tar
    assert {n: (members[n].islnk(), members[n].linkname) for n in links} == {
        n: (True, target) for n, target in links.items()
    }
    copies = {
        tmp_path / "boxctl": clean.ctl("cp", "h:/d", str(tmp_path / "boxctl")),
        tmp_path / "docker": _docker(clean, "cp", "h:/d", str(tmp_path / "docker")),
    }
    for dest, r in copies.items():
        assert r.returncode == 0, r.stderr
        assert os.stat(dest / "f").st_ino == os.stat(dest / "sub" / "g").st_ino
        assert os.lstat(dest / "s").st_ino == os.lstat(dest / "s2").st_ino
        assert os.readlink(dest / "s2") == "f" and (dest / "sub" / "g").read_text() == "data\n"


@needs_cli
@pytest.mark.skipif(shutil.which("setcap") is None, reason="no setcap on this host")
def test_file_capabilities_are_copied_both_ways(clean: Daemon, tmp_path: Path) -> None:
    """A file's capabilities (setcap's security.capability) go with it, as Docker's
    archives carry them: out through boxctl and the docker CLI, in through boxctl (they
    were dropped, and a copied ping could no longer open its raw socket)."""
    _start(clean, "k")
    _sh(clean, "k", "cp /bin/true /capped && setcap cap_net_raw+ep /capped")
    copies = {
        tmp_path / "boxctl": clean.ctl("cp", "k:/capped", str(tmp_path / "boxctl")),
        tmp_path / "docker": _docker(clean, "cp", "k:/capped", str(tmp_path / "docker")),
    }
    for dest, r in copies.items():
        assert r.returncode == 0, r.stderr
        shown = subprocess.run(["getcap", str(dest)], capture_output=True, text=True)
        assert shown.stdout.split() == [str(dest), "cap_net_raw=ep"]
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    shutil.copy(tmp_path / "boxctl", tmp_path / "tree" / "sub" / "x")
    subprocess.run(["setcap", "cap_net_admin+ep", str(tmp_path / "tree" / "sub" / "x")], check=True)
    clean.ctl("cp", str(tmp_path / "boxctl"), "k:/one")
    clean.ctl("cp", str(tmp_path / "tree"), "k:/tree")
    assert _sh(clean, "k", "getcap /one /tree/sub/x").split() == [
        "/one",
        "cap_net_raw=ep",
        "/tree/sub/x",
        "cap_net_admin=ep",
    ]


def test_archive_endpoints_in_dockers_shape(clean: Daemon) -> None:
    _start(clean, "e")
    e_id = clean.ctl("inspect", "-f", "{{.Id}}", "e").stdout.strip()
    _sh(clean, "e", "ln -s /etc/hostname /hn")
    status, headers, body = api_call(clean, "HEAD", "/containers/e/archive?path=/etc")
    assert (status, body) == (200, b"")
    st = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert st["name"] == "etc" and st["mode"] == (1 << 31) | 0o755 and st["linkTarget"] == ""
    status, headers, _ = api_call(clean, "HEAD", "/v1.41/containers/e/archive?path=/hn")
    st = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert st["mode"] & (1 << 27) and st["linkTarget"] == "/etc/hostname"
    status, headers, body = api_call(clean, "GET", "/containers/e/archive?path=/etc/hostname")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames() == ["hostname"]
    for method, path, code, message in [
        ("GET", "/containers/e/archive?path=/nope", 404, "Could not find the file /nope"),
        ("GET", "/containers/nosuch/archive?path=/", 404, "No such container: nosuch"),
        ("GET", "/containers/e/archive", 400, "path cannot be empty"),
        ("PUT", "/containers/e/archive?path=/etc/hostname", 400, "not a directory"),
        ("PUT", "/containers/e/archive?path=/tmp&noOverwriteDirNonDir=x", 400, "boolean"),
        # A file asked for as a directory is not missing: dockerd says "not a directory".
        ("GET", "/containers/e/archive?path=/etc/hostname/", 400, "not a directory"),
        ("HEAD", "/containers/e/archive?path=/etc/hostname/x", 400, ""),
        # The container is named as the client named it, as dockerd names it: its id.
        ("GET", f"/containers/{e_id}/archive?path=/nope", 404, f"/nope in container {e_id}"),
        ("PUT", f"/containers/{e_id}/archive?path=/nope", 404, f"/nope in container {e_id}"),
    ]:
        status, _, body = api_call(clean, method, path)
        assert status == code, (path, body)
        assert method == "HEAD" or message in json.loads(body)["message"], (path, body)
    status, _, _ = api_call(clean, "HEAD", "/containers/e/archive?path=/nope")
    assert status == 404

"""Images and the container mount table (boxd._rootfs), and real containers on them.

The real containers mount everything inside their own mount namespace, so when their
process ends nothing is left but the upper directories under tmp_path; each real test
checks that no mount of its container directory is visible on the host.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest
import trio
from daemon_harness import Daemon

import boxd._rootfs
from boxd import _plan
from boxd._native import (
    MountKind,
    MountOp,
    Namespace,
    RealNative,
    SpawnError,
    SpawnPlan,
    is_exec_failure,
    start,
)
from boxd._records import Container, ContainerConfig
from boxd._rootfs import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Image,
    ImageError,
    Layer,
    Volume,
    cgroup_ops,
    check_command,
    container_mounts,
    id_mapped_layers,
    look_up,
    parse_volume,
    prepare_default_image,
    resolve_image,
    stacked,
)

SKEL = Path(__file__).resolve().parent.parent / "rootfs" / "skel"
ISOLATED = frozenset(
    {Namespace.MOUNT, Namespace.PID, Namespace.UTS, Namespace.IPC, Namespace.CGROUP}
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def default(images: Path) -> Image:
    return resolve_image("default", images)


# --- resolving images ----------------------------------------------------------------------


def test_missing_image_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=f"no such directory: {tmp_path}/nope"):
        resolve_image(str(tmp_path / "nope"), tmp_path)


def test_file_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match=f"not a directory: {tmp_path}/f"):
        resolve_image(str(tmp_path / "f"), tmp_path)


def test_empty_directory_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match=f"image {tmp_path}/empty has no /bin/sh"):
        resolve_image(str(tmp_path / "empty"), tmp_path)


def test_overlay_unsafe_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a,b").mkdir()
    with pytest.raises(ImageError, match="a,b contains ','"):
        resolve_image(str(tmp_path / "a,b"), tmp_path)


def test_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rootfs").mkdir()
    tool = tmp_path / "rootfs" / "hello"
    tool.write_text("")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    image = resolve_image("rootfs", tmp_path / "images")
    assert image == Image(str(tmp_path / "rootfs"), (Layer(str(tmp_path / "rootfs"), "/"),))


def test_busybox_root_resolves(busybox_root: Path, tmp_path: Path) -> None:
    image = resolve_image(str(busybox_root), tmp_path)
    assert image.layers == (Layer(str(busybox_root), "/"),)


def test_default_image_layout(images: Path, default: Image) -> None:
    root = Path(default.layers[0].lower)
    assert default.name == "default"
    assert default.layers[0].target == "/"
    assert Layer("/usr", "/usr") in default.layers
    assert (root / "etc" / "passwd").read_text() == (SKEL / "etc" / "passwd").read_text()
    assert (root / "etc" / "ld.so.cache").read_bytes() == Path("/etc/ld.so.cache").read_bytes()
    if os.path.islink("/etc/alternatives/awk"):
        assert os.readlink(root / "etc/alternatives/awk") == os.readlink("/etc/alternatives/awk")
    for name in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + name):
            assert os.readlink(root / name) == os.readlink("/" + name)
    assert sorted(os.listdir(root / "etc")) == sorted(
        [p.name for p in (SKEL / "etc").iterdir()] + ["alternatives", "ld.so.cache", "mtab"]
    )
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert not (root / "home").exists()


def test_layers_stacked_over_default(default: Image, tmp_path: Path) -> None:
    """Each of default's overlays gets the layers' directories for its target above its
    own, top-most first; a layer without the directory (or with a symlink there, never
    followed out of the layer) is left out of that overlay."""
    top, middle, bottom = (tmp_path / n for n in ("top", "middle", "bottom"))
    (top / "usr" / "bin").mkdir(parents=True)
    (middle / "etc").mkdir(parents=True)
    (middle / "usr").symlink_to("/etc")
    (bottom / "usr").mkdir(parents=True)
    image = stacked(default, "mine", [str(top), str(middle), str(bottom)])
    assert image.name == "mine"
    assert [layer.target for layer in image.layers] == [x.target for x in default.layers]
    root, *host = image.layers
    assert root.lowers == (str(top), str(middle), str(bottom), default.layers[0].lower)
    usr = next(layer for layer in image.layers if layer.target == "/usr")
    assert usr.lowers == (f"{top}/usr", f"{bottom}/usr", "/usr")
    for layer in host:
        if layer.target != "/usr":  # no layer has /bin, /lib ... as a directory here
            assert layer.lowers == next(
                d.lowers for d in default.layers if d.target == layer.target
            )
    assert stacked(default, "empty", []).layers == default.layers


def test_default_image_is_built_once(images: Path, default: Image) -> None:
    again = prepare_default_image(images)
    assert str(again) == default.layers[0].lower
    # No temporary build directory is left behind.
    assert [p.name for p in images.iterdir()] == [again.name]


def test_check_command(default: Image, busybox_root: Path, tmp_path: Path) -> None:
    path = ("/usr/local/bin", "/usr/bin", "/bin")
    check_command(default, "python3", path)
    check_command(default, "/bin/sh", path)
    with pytest.raises(SpawnError, match="exec nope: No such file or directory") as missing:
        check_command(default, "nope", path)
    assert is_exec_failure(missing.value) == 127
    with pytest.raises(SpawnError) as not_executable:
        check_command(default, "/etc/passwd", path)
    assert not_executable.value.errno == errno.EACCES
    assert is_exec_failure(not_executable.value) == 126
    # Symlinks resolve inside the image: busybox's /bin/sh -> busybox.
    check_command(resolve_image(str(busybox_root), tmp_path), "sh", path)


# --- volumes ---------------------------------------------------------------------------------


def test_parse_volume(tmp_path: Path) -> None:
    assert parse_volume(f"{tmp_path}:/data") == Volume(str(tmp_path), "/data", False)
    assert parse_volume(f"{tmp_path}:/data/../x/:ro") == Volume(str(tmp_path), "/x", True)
    assert parse_volume(f"{tmp_path}:/data:rw") == Volume(str(tmp_path), "/data", False)
    # The default (docker-py's and the CLI's "rw,rprivate").
    assert parse_volume(f"{tmp_path}:/data:rw,rprivate") == Volume(str(tmp_path), "/data", False)
    assert parse_volume(f"{tmp_path}:/data:rslave").propagation == "rslave"
    assert parse_volume(f"{tmp_path}:/d:ro,nosuid,nodev,noexec") == Volume(
        str(tmp_path), "/d", read_only=True, noexec=True
    )
    assert parse_volume(f"{tmp_path}:/d:exec,nodev") == Volume(str(tmp_path), "/d")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{d}", "is not HOST:CONTAINER\\[:OPTIONS\\]"),
        ("{d}:/a:ro:x", "is not HOST:CONTAINER"),
        ("{d}:data", "container path 'data' must be an absolute path"),
        ("{d}/missing:/data", "host directory {d}/missing does not exist"),
        (
            "{d}:/data:rx",
            "unknown option 'rx' \\(use ro, rw, noexec, exec, nosuid, nodev, nocopy, z, Z, "
            "rprivate, private, rslave, slave, rshared, shared, consistent, cached, delegated\\)",
        ),
        ("{d}:/data:rshared,rslave", "both rshared and rslave"),
        ("{d}:/data:rslave,private", "both rslave and private"),
        ("{d}:/data:ro,rw", "both ro and rw"),
        ("{d}:/data:noexec,exec", "both noexec and exec"),
        ("{d}:/data:suid", "volumes are always nosuid and nodev"),
        ("{d}:/", "would cover the container's root"),
        ("{d}:/proc/sys", "is inside /proc"),
    ],
)
def test_bad_volume(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.format(d=tmp_path)):
        parse_volume(spec.format(d=tmp_path))


# --- the mount table -------------------------------------------------------------------------


def test_mount_table(default: Image, tmp_path: Path) -> None:
    rootfs, ops = container_mounts(default, tmp_path / "c")
    assert rootfs == str(tmp_path / "c" / "rootfs")
    chdir, first = ops[:2]
    assert (first.kind, first.target, first.fstype) == (MountKind.MOUNT, "/", "overlay")
    # Its directories named relative to the layer's (the child's working directory for
    # the mount), the image's through symlinks: the container's mountinfo, which shows
    # the options, names no host path.
    base = tmp_path / "c" / "fs" / "root"
    assert (chdir.kind, chdir.source) == (MountKind.CHDIR, str(base))
    assert first.data.startswith("lowerdir=l/0,upperdir=upper,workdir=work,")
    assert os.readlink(base / "l" / "0") == default.layers[0].lowers[0]
    assert (base / "upper").is_dir()
    # Whatever the host's overlay module defaults to, the upper layer holds every change:
    # no redirect of a renamed directory, no metacopy of a chmod'ed file (diff and commit
    # read the upper).
    assert first.data.endswith(",index=off,redirect_dir=off,metacopy=off")
    assert (tmp_path / "c" / "fs" / "usr" / "work").is_dir()
    by_name = {op.target: op for op in ops if op.kind == MountKind.MOUNT}
    assert by_name["/usr"].data.startswith("lowerdir=l/0,")
    assert os.readlink(tmp_path / "c" / "fs" / "usr" / "l" / "0") == "/usr"
    assert by_name["/sys"].flags & MS_RDONLY
    assert by_name["/dev/pts"].data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    nodes = {op.target: op for op in ops if op.kind == MountKind.MKNOD}
    assert nodes["/dev/null"].dev == os.makedev(1, 3)
    assert nodes["/dev/tty"].mode == stat.S_IFCHR | 0o666


@pytest.mark.root
def test_mount_table_for_a_user_namespace(default: Image) -> None:
    top = Path(tempfile.mkdtemp(prefix="boxd-rootfs-"))  # pytest's tree is not o+x
    try:
        os.chmod(top, 0o711)
        c = top / "c"
        _rootfs, ops = container_mounts(default, c, id_map=(100_000, 65_536))
        assert [st.st_uid for st in map(os.stat, (c / "rootfs", c / "fs/root/upper"))] == [
            100_000,
            100_000,
        ]
        assert stat.S_IMODE(os.stat(c).st_mode) == 0o711
        layers = id_mapped_layers(default, c)
        assert [lower for lower, _ in layers] == [layer.lower for layer in default.layers]
        overlays = [op.data for op in ops if op.fstype == "overlay"]
        assert [data.split(",")[0] for data in overlays] == ["lowerdir=l/0"] * len(layers)
        chdirs = [op.source for op in ops if op.kind == MountKind.CHDIR]
        assert [os.readlink(f"{d}/l/0") for d in chdirs] == [p for _, p in layers]
        # userxattr turns redirects and metacopy off itself (and refuses them given).
        assert all(data.endswith(",index=off,userxattr") for data in overlays)
        # The host's network namespace is not the user namespace's: no sysfs of its own.
        sys_ops = [(op.kind, op.source) for op in ops if op.target == "/sys"]
        assert sys_ops[-2:] == [(MountKind.MOUNT, "/sys"), (MountKind.REMOUNT_RO, "")]
        _rootfs, ops = container_mounts(default, c, id_map=(100_000, 65_536), private_network=True)
        assert [op.fstype for op in ops if op.target == "/sys"][-1] == "sysfs"
        binds = {op.target: op.source for op in ops if op.kind == MountKind.BIND_DEV}
        assert binds["/dev/urandom"] == "/dev/urandom"
        assert not [op for op in ops if op.kind == MountKind.MKNOD]
        assert [op.data for op in ops if op.fstype == "devpts"] == [
            "newinstance,ptmxmode=0666,mode=0620,gid=5"  # the container's tty group, mapped
        ]
        _rootfs, ops = container_mounts(default, c, id_map=(100_000, 5))  # unmapped: none
        assert [op.data for op in ops if op.fstype == "devpts"] == [
            "newinstance,ptmxmode=0666,mode=0620"
        ]
    finally:
        shutil.rmtree(top)


def test_mount_table_options(default: Image, tmp_path: Path) -> None:
    host = tmp_path / "data"
    host.mkdir()
    mask = MountOp(MountKind.MASK, "/proc/kcore")
    _rootfs, ops = container_mounts(
        default,
        tmp_path / "c",
        read_only_root=True,
        tmpfs=["/run/t"],
        volumes=[Volume(str(host), "/srv/data", True)],
        extra=[mask],
    )
    assert ops[-1] == mask
    volume = [op for op in ops if op.target == "/srv/data"]
    kinds = [MountKind.MKDIR, MountKind.MOUNT, MountKind.MOUNT, MountKind.REMOUNT_RO]
    assert [op.kind for op in volume] == kinds
    assert volume[1].source == str(host) and volume[1].flags & MS_BIND
    # rprivate, as Docker's binds: not a slave of the host's shared mount it binds, which
    # would show the host's later mounts below it.
    assert (volume[2].source, volume[2].flags) == ("", MS_PRIVATE | MS_REC)
    ro = [op.target for op in ops if op.kind == MountKind.REMOUNT_RO]
    assert ro == ["/srv/data", "/", "/usr"]
    assert [op.fstype for op in ops if op.target == "/run/t"] == ["", "tmpfs"]


def _image_with_a_shell(tmp_path: Path) -> Path:
    image_dir = tmp_path / "image"
    (image_dir / "bin").mkdir(parents=True)
    (image_dir / "bin" / "sh").write_text("")
    (image_dir / "bin" / "sh").chmod(0o755)
    return image_dir


def test_symlinks_in_the_image_stay_inside_it(tmp_path: Path) -> None:
    image_dir = _image_with_a_shell(tmp_path)
    (image_dir / "real").mkdir()
    # An image that points its mount points outside itself: they must resolve inside.
    os.symlink("../../../../../../real", image_dir / "dev")
    os.symlink("/real/../../srv", image_dir / "mnt")
    image = resolve_image(str(image_dir), tmp_path)
    _rootfs, ops = container_mounts(
        image, tmp_path / "c", volumes=[Volume(str(tmp_path), "/mnt/v", False)]
    )
    targets = {op.target for op in ops}
    assert "/real/pts" in targets and "/dev/pts" not in targets
    assert "/srv/v" in targets


def test_each_table_looks_up_its_mount_points_again(tmp_path: Path) -> None:
    """What the container's own layer holds at a start decides where its mounts land: a
    /dev it replaced by a symlink on its last run moves them in the next table (the
    records that tables share are made from the paths each one looked up)."""
    image = resolve_image(str(_image_with_a_shell(tmp_path)), tmp_path)
    c = tmp_path / "c"
    _rootfs, first = container_mounts(image, c)
    (c / "fs/root/upper/elsewhere").mkdir()
    os.symlink("/elsewhere", c / "fs/root/upper/dev")
    _rootfs, second = container_mounts(image, c)
    assert "/dev/pts" in {op.target for op in first}
    targets = {op.target for op in second}
    assert "/elsewhere/pts" in targets and "/dev/pts" not in targets
    _rootfs, other = container_mounts(image, tmp_path / "other")
    assert other[1:] == first[1:]  # the same table but for its own overlay


def test_lookups_made_ahead_give_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start looks up its mount points in its worker thread (look_up); the table the
    event loop builds from them is the one it would have made, without a lookup of its
    own for those paths."""
    image_dir = _image_with_a_shell(tmp_path)
    (image_dir / "real").mkdir()
    os.symlink("/real", image_dir / "dev")
    image = resolve_image(str(image_dir), tmp_path)
    c = tmp_path / "c"
    volumes = [Volume(str(tmp_path), "/srv/v", False)]
    files = {"/etc/hostname": "h\n"}
    _rootfs, plain = container_mounts(image, c, files=files, workdir="/w", volumes=volumes)
    known: dict[str, os.stat_result | None] = {}
    look_up(image, c, ["/", "/proc", "/sys", "/dev", "/etc/hostname", "/w", "/srv/v"], known)
    looked: list[Sequence[str]] = []
    monkeypatch.setattr(boxd._rootfs, "_lstat_first", looked.append)
    _rootfs, ahead = container_mounts(
        image,
        c,
        files=files,
        workdir="/w",
        volumes=volumes,
        known=known,
        dirs_made=True,
    )
    assert ahead == plain and looked == []


async def test_a_start_looks_up_its_mount_points_in_its_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What _plan.prepare (the worker thread's part of a start) looks up is all the mount
    table needs: the event loop's step that builds it makes no lookups."""
    image = resolve_image(str(_image_with_a_shell(tmp_path)), tmp_path)
    config = ContainerConfig(image=image.name, command=("sh",), network="none", workdir="/w")
    container = Container(id="a" * 64, name="c", created_at=0.0, config=config)
    prepared = _plan.prepare(container, image, tmp_path / "c")
    looked: list[Sequence[str]] = []
    monkeypatch.setattr(boxd._rootfs, "_lstat_first", looked.append)
    plan = await _plan.build(container, image, tmp_path / "c", read=prepared, stdio=(3, 4, 5))
    assert looked == [] and "/w" in {op.target for op in plan.mounts}


def test_volume_into_proc_through_a_symlink_is_refused(tmp_path: Path) -> None:
    image_dir = _image_with_a_shell(tmp_path)
    os.symlink("/proc/sys", image_dir / "data")
    image = resolve_image(str(image_dir), tmp_path)
    with pytest.raises(ValueError, match="is inside /proc"):
        container_mounts(image, tmp_path / "c", volumes=[Volume(str(tmp_path), "/data", False)])


# --- real containers ---------------------------------------------------------------------------


@attrs.frozen
class Ran:
    code: int
    output: str


def _absent(*paths: str) -> bool:
    return not any(os.path.lexists(p) for p in paths)


def _mounted_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line for line in f if f" {path}" in line]


async def run_container(
    image: Image,
    container_dir: Path,
    *argv: str,
    read_only_root: bool = False,
    tmpfs: Sequence[str] = (),
    volumes: Sequence[Volume] = (),
) -> Ran:
    """Run ``argv`` in a container on ``image``; stdout and stderr are returned together."""
    rootfs, mounts = container_mounts(
        image, container_dir, read_only_root=read_only_root, tmpfs=tmpfs, volumes=volumes
    )
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    plan = SpawnPlan(
        argv=argv,
        env=("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",),
        namespaces=ISOLATED,
        hostname="rootfs-test",
        rootfs=rootfs,
        mounts=mounts,
        stdin=null,
        stdout=write_end,
        stderr=write_end,
    )
    try:
        spawned = await start(RealNative(), plan)
    finally:
        os.close(write_end)
        os.close(null)
    chunks = []
    try:
        async with trio.lowlevel.FdStream(read_end) as stream:
            while chunk := await stream.receive_some():
                chunks.append(chunk)
        await trio.lowlevel.wait_readable(spawned.pidfd)
        # The pidfd is readable: the child has exited and waitid returns at once.
        status = os.waitid(os.P_PIDFD, spawned.pidfd, os.WEXITED)  # noqa: ASYNC222
    finally:
        os.close(spawned.pidfd)
    assert status is not None and status.si_code == os.CLD_EXITED, status
    assert _mounted_below(container_dir) == []
    return Ran(status.si_status, b"".join(chunks).decode())


@pytest.mark.root
async def test_default_runs_python(default: Image, tmp_path: Path) -> None:
    ran = await run_container(default, tmp_path, "python3", "-c", "print(1)")
    assert ran == Ran(0, "1\n")


@pytest.mark.root
async def test_default_writes_stay_in_the_container(default: Image, tmp_path: Path) -> None:
    name = f"boxd-test-{uuid.uuid4().hex}"
    ran = await run_container(default, tmp_path, "/usr/bin/touch", f"/usr/{name}", f"/etc/{name}")
    assert ran == Ran(0, "")
    assert _absent(f"/usr/{name}", f"/etc/{name}", f"{default.layers[0].lower}/etc/{name}")
    assert (tmp_path / "fs" / "usr" / "upper" / name).is_file()
    assert (tmp_path / "fs" / "root" / "upper" / "etc" / name).is_file()


@pytest.mark.root
async def test_default_sees_only_the_image(default: Image, tmp_path: Path) -> None:
    script = "; ".join(
        [
            "import os",
            "print(open('/etc/passwd').read(), end='')",
            "print(sorted(os.listdir('/')))",
            "print(os.listdir('/root'), os.path.exists('/home'))",
            "print(open('/etc/hostname').read(), end='')",
        ]
    )
    ran = await run_container(default, tmp_path, "python3", "-c", script)
    passwd = (SKEL / "etc" / "passwd").read_text()
    assert ran.code == 0, ran.output
    assert ran.output.startswith(passwd)
    top = eval(ran.output[len(passwd) :].splitlines()[0])
    assert "home" not in top and "work" not in top and "usr" in top
    assert ran.output.splitlines()[-2:] == ["[] False", "boxd"]


DEVICE_CHECK = """
import os, stat
for name in ("null", "zero", "full", "random", "urandom", "tty"):
    st = os.stat("/dev/" + name)
    print(name, stat.S_ISCHR(st.st_mode), oct(stat.S_IMODE(st.st_mode)),
          os.major(st.st_rdev), os.minor(st.st_rdev))
for name in ("ptmx", "fd", "stdin", "stdout", "stderr"):
    print(name, os.readlink("/dev/" + name))
print("pts", sorted(os.listdir("/dev/pts")))
print("shm", oct(stat.S_IMODE(os.stat("/dev/shm").st_mode)))
with open("/dev/null", "w") as f:
    f.write("x")
fs = {}
for line in open("/proc/self/mountinfo"):
    fields = line.split()
    sep = fields.index("-")
    fs[fields[4]] = (fields[sep + 1], fields[5].split(",")[0], fields[sep + 3])
for point in ("/", "/usr", "/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts",
              "/dev/shm", "/dev/mqueue"):
    print("mount", point, *fs[point])
"""


@pytest.mark.root
async def test_default_devices_and_mounts(default: Image, tmp_path: Path) -> None:
    ran = await run_container(default, tmp_path, "python3", "-c", DEVICE_CHECK)
    assert ran.code == 0, ran.output
    lines = ran.output.splitlines()
    devices = [line.split() for line in lines[:6]]
    assert [(d[0], d[1], d[3], d[4]) for d in devices] == [
        ("null", "True", "1", "3"),
        ("zero", "True", "1", "5"),
        ("full", "True", "1", "7"),
        ("random", "True", "1", "8"),
        ("urandom", "True", "1", "9"),
        ("tty", "True", "5", "0"),
    ]
    assert lines[6:11] == [
        "ptmx pts/ptmx",
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
    ]
    # A new devpts instance: none of the host's terminals, only its own ptmx.
    assert lines[11] == "pts ['ptmx']"
    assert lines[12] == "shm 0o1777"
    mounts = {line.split()[1]: line.split()[2:] for line in lines[13:]}
    assert mounts["/"][:2] == ["overlay", "rw"]
    assert mounts["/usr"][:2] == ["overlay", "rw"]
    assert mounts["/proc"][:2] == ["proc", "rw"]
    assert mounts["/sys"][:2] == ["sysfs", "ro"]
    assert mounts["/sys/fs/cgroup"][:2] == ["cgroup2", "ro"]
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][2]
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"


def test_the_v1_cgroup_layout_table() -> None:
    """A tmpfs, a directory per hierarchy with the container's cgroup bound on it and
    remounted read-only, a link per controller of a comounted one (as Docker's), and the
    tmpfs read-only last (real containers: tests/test_cgroupfs.py)."""
    nse_ro = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
    remount = MS_REMOUNT | MS_BIND | nse_ro
    ops = cgroup_ops("/sys/fs/cgroup", [("cpu,cpuacct", "/h/cpu"), ("unified", "/h/u")], nse_ro)
    assert [(op.kind, op.target, op.source, op.flags) for op in ops] == [
        (MountKind.MOUNT, "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC),
        (MountKind.MKDIR, "/sys/fs/cgroup/cpu,cpuacct", "", 0),
        (MountKind.MOUNT, "/sys/fs/cgroup/cpu,cpuacct", "/h/cpu", MS_BIND),
        (MountKind.MOUNT, "/sys/fs/cgroup/cpu,cpuacct", "", remount),
        (MountKind.SYMLINK, "/sys/fs/cgroup/cpu", "cpu,cpuacct", 0),
        (MountKind.SYMLINK, "/sys/fs/cgroup/cpuacct", "cpu,cpuacct", 0),
        (MountKind.MKDIR, "/sys/fs/cgroup/unified", "", 0),
        (MountKind.MOUNT, "/sys/fs/cgroup/unified", "/h/u", MS_BIND),
        (MountKind.MOUNT, "/sys/fs/cgroup/unified", "", remount),
        (MountKind.MOUNT, "/sys/fs/cgroup", "", remount),
    ]


@pytest.mark.root
async def test_device_modes_ignore_the_umask(default: Image, tmp_path: Path) -> None:
    script = "import os; print(*(oct(os.stat('/dev/' + n).st_mode & 0o777) for n in %r))"
    names = ("null", "zero", "full", "random", "urandom", "tty")
    old = os.umask(0o022)
    try:
        ran = await run_container(default, tmp_path, "python3", "-c", script % (names,))
    finally:
        os.umask(old)
    assert ran == Ran(0, " ".join(["0o666"] * len(names)) + "\n")


@pytest.mark.root
async def test_read_only_root_with_volumes_and_tmpfs(default: Image, tmp_path: Path) -> None:
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "given").write_text("hello\n")
    script = "; ".join(
        [
            "cat /ro/given",
            "echo out > /rw/written",
            "echo t > /scratch/t && cat /scratch/t",
            "touch /ro/x || echo ro-volume-refused",
            "touch /etc/x || echo root-refused",
            "touch /usr/x || echo usr-refused",
        ]
    )
    ran = await run_container(
        default,
        tmp_path / "c",
        "/bin/sh",
        "-c",
        script,
        read_only_root=True,
        tmpfs=["/scratch"],
        volumes=[Volume(str(rw), "/rw", False), Volume(str(ro), "/ro", True)],
    )
    assert ran.code == 0, ran.output
    out = [line for line in ran.output.splitlines() if "Read-only file system" not in line]
    assert out == ["hello", "t", "ro-volume-refused", "root-refused", "usr-refused"]
    assert (rw / "written").read_text() == "out\n"
    assert sorted(os.listdir(ro)) == ["given"]


@pytest.mark.root
async def test_busybox_root_runs_the_probe(busybox_root: Path, tmp_path: Path) -> None:
    image = resolve_image(str(busybox_root), tmp_path / "images")
    ran = await run_container(image, tmp_path / "a", "/bin/probe", "stat", "/dev/null")
    fields = dict(line.split("=") for line in ran.output.splitlines())
    assert (ran.code, fields["type"], fields["major"], fields["minor"]) == (0, "char", "1", "3")
    ran = await run_container(image, tmp_path / "b", "/bin/probe", "ls", "/dev/pts")
    assert ran == Ran(0, "entry=ptmx\n")
    ran = await run_container(image, tmp_path / "c", "/bin/probe", "write", "/etc/z", "data")
    assert ran == Ran(0, "ok\n")
    assert not (busybox_root / "etc" / "z").exists()
    assert (tmp_path / "c" / "fs" / "root" / "upper" / "etc" / "z").read_text() == "data"
    ran = await run_container(image, tmp_path / "d", "/bin/probe", "chroot-escape")
    assert ran.code == 0, ran.output
    entries = {line[len("entry=") :] for line in ran.output.splitlines()[1:]}
    assert ran.output.startswith("ok\n") and {"bin", "etc", "proc"} <= entries
    assert "work" not in entries


@pytest.mark.root
def test_etc_hostname_and_hosts_are_the_containers(
    daemon: Daemon, busybox_root: Path, tmp_path: Path
) -> None:
    """Written into the container's own layer at each start, over whatever the image has
    there: a symlink to a host file or a FIFO is replaced, never followed or opened."""
    host_file = tmp_path / "host-file"
    host_file.write_text("host\n")
    root = tmp_path / "image"
    shutil.copytree(busybox_root, root, symlinks=True)
    (root / "etc" / "hostname").symlink_to(host_file)
    os.mkfifo(root / "etc" / "hosts")
    out = daemon.ctl(
        "run", "--rm", "--hostname", "web", str(root),
        "/bin/sh", "-c", "cat /etc/hostname /etc/hosts && echo '10.0.0.1 db' >> /etc/hosts",
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[:3] == ["web", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert re.fullmatch(r"[\d.]+\tweb", lines[3]), lines  # its address on the bridge
    assert host_file.read_text() == "host\n"
    assert (root / "etc" / "hostname").is_symlink()


@pytest.mark.root
def test_volume_options_reach_the_mount(daemon: Daemon, busybox_root: Path, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    script = volume / "run-me"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    opts = daemon.ctl(
        "run", "--rm", "-v", f"{volume}:/v:ro,nosuid,nodev,noexec", str(busybox_root),
        "/bin/sh", "-c", "grep ' /v ' /proc/self/mountinfo; /v/run-me; echo code=$?",
    ).stdout  # fmt: skip
    fields = opts.splitlines()[-2].split()[5].split(",")  # the top mount at /v
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(fields)
    assert opts.splitlines()[-1] == "code=126"
    plain = daemon.ctl("run", "--rm", "-v", f"{volume}:/v", str(busybox_root), "/v/run-me")
    assert plain.stdout == "ran\n"
    bad = daemon.ctl(
        "run", "--rm", "-v", f"{volume}:/v:suid", str(busybox_root), "true", check=False
    )
    assert bad.returncode == 125 and "volumes are always nosuid and nodev" in bad.stderr

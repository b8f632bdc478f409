"""Layer unpacking: whiteouts, devices, owners, and hostile tars that must not escape."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from boxd._images.store import BlobRef, ImageStore
from boxd._images.unpack import LayerError, unpack
from boxd._inroot import read_regular

pytestmark = pytest.mark.root

Add = Callable[[tarfile.TarFile], None]


def _tar(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def _unpack(data: bytes, tmp_path: Path) -> Path:
    dest = tmp_path / "layer"
    dest.mkdir()
    unpack(io.BytesIO(data).read, str(dest))
    return dest


def test_files_dirs_links_devices_and_owners(tmp_path: Path) -> None:
    data = _tar(
        (_info("./etc", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8), None),
        (_info("./etc/passwd", uid=1, gid=2, mtime=1000), b"root:x:0:0::/:/bin/sh\n"),
        (_info("bin/su", mode=0o4755), b"#!/bin/sh\n"),
        (_info("bin/sh", tarfile.SYMTYPE, linkname="busybox"), None),
        (_info("bin/login", tarfile.LNKTYPE, linkname="bin/su"), None),
        (_info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), None),
        (_info("run/fifo", tarfile.FIFOTYPE), None),
        (
            _info("f", pax_headers={"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.x": "y"}),
            b"",
        ),
    )
    root = _unpack(data, tmp_path)
    st = os.stat(root / "etc")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 7, 8)
    st = os.stat(root / "etc/passwd")
    assert (st.st_uid, st.st_gid, st.st_mtime) == (1, 2, 1000)
    assert stat.S_IMODE(os.stat(root / "bin/su").st_mode) == 0o4755
    assert os.readlink(root / "bin/sh") == "busybox"
    assert os.stat(root / "bin/login").st_ino == os.stat(root / "bin/su").st_ino
    st = os.stat(root / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.stat(root / "run/fifo").st_mode)
    assert os.getxattr(root / "f", "user.k") == b"v"
    assert "trusted.x" not in os.listxattr(root / "f")


def test_zeros_become_holes(tmp_path: Path) -> None:
    """A sparse file in a layer or a cp tar is zeros there (Docker's tars are never
    sparse): unpacked, its runs of zeros are holes again, the contents the same."""
    zeros = bytes(8 << 20)
    middle = zeros + b"data" + zeros
    data = _tar(
        (_info("middle"), middle),
        (_info("empty"), zeros),
        (_info("small"), bytes(100)),
        (_info("dense"), b"x" * 10000),
    )
    root = _unpack(data, tmp_path)
    contents = {name: (root / name).read_bytes() for name in ("middle", "empty", "small", "dense")}
    assert contents == {
        "middle": middle,
        "empty": zeros,
        "small": bytes(100),
        "dense": b"x" * 10000,
    }
    allocated = {name: os.stat(root / name).st_blocks * 512 for name in ("middle", "empty")}
    assert all(size <= 2 << 20 for size in allocated.values()), allocated


def test_overlays_own_xattrs_in_a_tar_are_dropped(tmp_path: Path) -> None:
    """``user.overlay.*`` is what a user-namespaced container's overlay (userxattr) reads
    as its metadata: a layer carrying it would make a directory opaque, or a file a
    whiteout, there alone.  Only ``.wh.`` entries say that; other user xattrs stay."""
    opaque = {"SCHILY.xattr.user.overlay.opaque": "y", "SCHILY.xattr.user.mine": "kept"}
    data = _tar(
        (_info("lib", tarfile.DIRTYPE, pax_headers=opaque), None),
        (_info("lib/f", pax_headers={"SCHILY.xattr.user.overlay.whiteout": "y"}), b""),
    )
    root = _unpack(data, tmp_path)
    assert os.listxattr(root / "lib") == ["user.mine"]
    assert os.listxattr(root / "lib/f") == []


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    data = _tar(
        (_info("etc/.wh.motd"), b""),
        (_info("var/cache", tarfile.DIRTYPE), None),
        (_info("var/cache/.wh..wh..opq"), b""),
        (_info("var/cache/new"), b"x"),
    )
    root = _unpack(data, tmp_path)
    st = os.lstat(root / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (root / "etc/.wh.motd").exists()
    assert os.getxattr(root / "var/cache", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(root / "var/cache", "user.overlay.opaque") == b"y"
    assert (root / "var/cache/new").read_bytes() == b"x"


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_layers(tmp_path: Path, compress: str) -> None:
    data = _tar((_info("hello"), b"hi\n"))
    packed = gzip.compress(data) if compress == "gzip" else zstandard.compress(data)
    dest = tmp_path / "layer"
    dest.mkdir()
    result = unpack(io.BytesIO(packed).read, str(dest))
    assert (dest / "hello").read_bytes() == b"hi\n"
    import hashlib

    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("members", "error"),
    [
        ([(_info("../escape"), b"x")], "'../escape' points outside the layer"),
        ([(_info("a/../../escape"), b"x")], "'a/../../escape' points outside"),
        ([(_info("x/.wh..."), b"")], "whiteout of '..'"),
        ([(_info("link", tarfile.LNKTYPE, linkname="../../etc/passwd"), None)], "outside"),
        ([(_info("link", tarfile.LNKTYPE, linkname="nothere"), None)], "not in the layer"),
    ],
)
def test_hostile_members_are_refused_by_name(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], error: str
) -> None:
    with pytest.raises(LayerError) as info:
        _unpack(_tar(*members), tmp_path)
    assert error in str(info.value)
    assert not (tmp_path / "escape").exists()


def test_symlinks_cannot_carry_writes_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    inside = str(outside).lstrip("/")
    data = _tar(
        (_info(inside, tarfile.DIRTYPE), None),
        (_info("abs", tarfile.SYMTYPE, linkname=str(outside)), None),
        (_info("abs/pwned"), b"x"),
        (_info("rel", tarfile.SYMTYPE, linkname="../../../../../../" + str(outside)), None),
        (_info("rel/pwned2"), b"x"),
        (_info("/absolute-name"), b"x"),
        (_info("hl", tarfile.LNKTYPE, linkname="abs/pwned"), None),
    )
    root = _unpack(data, tmp_path)
    assert list(outside.iterdir()) == []
    # The writes went where the symlinks point when the layer's root is "/".
    assert (root / inside / "pwned").read_bytes() == b"x"
    assert (root / inside / "pwned2").read_bytes() == b"x"
    assert (root / "absolute-name").exists()
    assert os.stat(root / "hl").st_ino == os.stat(root / inside / "pwned").st_ino


def test_a_write_through_a_dangling_symlink_lands_inside_the_root(tmp_path: Path) -> None:
    """A member below a symbolic link to a directory not there (an absolute target, one
    climbing with ``..``, a chain of links) makes that directory inside the root, as
    dockerd's unpacking (chrooted there) does, and writes nothing outside; a loop of
    links is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    data = _tar(
        (_info("abs", tarfile.SYMTYPE, linkname=str(outside) + "/new"), None),
        (_info("abs/pwned"), b"x"),
        (_info("up", tarfile.SYMTYPE, linkname="../../../../climbed"), None),
        (_info("up/f"), b"y"),
        (_info("chain", tarfile.SYMTYPE, linkname="abs/deeper"), None),
        (_info("chain/g"), b"z"),
    )
    root = _unpack(data, tmp_path)
    assert list(outside.iterdir()) == [] and not (tmp_path / "climbed").exists()
    inside = root / str(outside).lstrip("/") / "new"
    assert (inside / "pwned").read_bytes() == b"x"
    assert (root / "climbed" / "f").read_bytes() == b"y"
    assert (inside / "deeper" / "g").read_bytes() == b"z"
    loop = _tar(
        (_info("a", tarfile.SYMTYPE, linkname="b"), None),
        (_info("b", tarfile.SYMTYPE, linkname="a"), None),
        (_info("a/f"), b"x"),
    )
    (tmp_path / "loop").mkdir()
    with pytest.raises(LayerError, match="'a/f'"):
        _unpack(loop, tmp_path / "loop")


def test_truncated_and_sparse_layers_are_refused(tmp_path: Path) -> None:
    data = gzip.compress(_tar((_info("big"), b"y" * 100_000)))
    with pytest.raises(LayerError, match="not a valid tar"):
        _unpack(data[: len(data) // 2], tmp_path)

    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(10 << 30)
        f.write(b"x")
    archive = tmp_path / "sparse.tar.gz"
    import subprocess

    subprocess.run(
        ["tar", "-C", str(tmp_path), "--sparse", "-czf", str(archive), "sparse"], check=True
    )
    assert archive.stat().st_size < 1 << 20
    dest = tmp_path / "layer2"
    dest.mkdir()
    with open(archive, "rb") as f, pytest.raises(LayerError, match="'sparse' is a sparse file"):
        unpack(f.read, str(dest))


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_and_large_numbers_in_every_tar_format(tmp_path: Path, fmt: int) -> None:
    ustar = fmt == tarfile.USTAR_FORMAT
    deep = "/".join(["d" * 60] * 4)  # a name prefix in ustar, a long name record otherwise
    name = "p" * 120 + "/" + "n" * 90 if ustar else deep + "/" + "n" * 150
    link = "l" * 100 if ustar else "/" + "l" * 120
    uid = 70_000 if ustar else 3_000_000_000  # GNU: base-256 in the header; pax: a record
    data = _tar(
        (_info(name, uid=uid, gid=5, mtime=1_700_000_000), b"long\n"),
        (_info("sym", tarfile.SYMTYPE, linkname=link), None),
        fmt=fmt,
    )
    root = _unpack(data, tmp_path)
    st = os.stat(root / name)
    assert (root / name).read_bytes() == b"long\n"
    assert (st.st_uid, st.st_gid, st.st_mtime) == (uid, 5, 1_700_000_000)
    assert os.readlink(root / "sym") == link


def test_gzip_members_concatenated_and_zero_padding(tmp_path: Path) -> None:
    data = _tar((_info("a"), b"a" * 5000), (_info("b"), b"b"))
    packed = gzip.compress(data[:3000]) + gzip.compress(data[3000:]) + bytes(1000)
    root = _unpack(packed, tmp_path)
    assert (root / "a").read_bytes() == b"a" * 5000 and (root / "b").read_bytes() == b"b"
    (tmp_path / "again").mkdir()
    with pytest.raises(LayerError, match="trailing data that is not gzip"):
        _unpack(gzip.compress(data) + b"junk", tmp_path / "again")


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    data = bytearray(_tar((_info("a"), b"x"), (_info("b"), b"y")))
    data[1024] ^= 0xFF  # the second header's name: its checksum no longer matches
    with pytest.raises(LayerError, match="not a valid tar: a tar header has a bad checksum"):
        _unpack(bytes(data), tmp_path)


def test_a_tar_cut_at_a_member_boundary_ends_there(tmp_path: Path) -> None:
    """No end-of-archive blocks (a download cut short between members): the members
    before are made, and the diff_id covers what came (the caller compares it)."""
    data = _tar((_info("a"), b"x" * 512), (_info("b"), b"y"))[:1024]
    dest = tmp_path / "layer"
    dest.mkdir()
    result = unpack(io.BytesIO(gzip.compress(data)).read, str(dest))
    assert (dest / "a").read_bytes() == b"x" * 512 and not (dest / "b").exists()
    import hashlib

    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_tar_cut_in_its_last_members_padding_ends_there(tmp_path: Path) -> None:
    """A stream that ends after a member's data, in its padding (the docker CLI's build
    context with a Dockerfile from outside it ends so), ends the archive, as Go's tar
    reader takes it; one that ends inside a member's data is refused."""
    data = _tar((_info("a"), b"x" * 3), (_info("b"), b"yy"))
    root = _unpack(data[: 512 + 512 + 512 + 2], tmp_path)
    assert (root / "a").read_bytes() == b"xxx" and (root / "b").read_bytes() == b"yy"
    (tmp_path / "again").mkdir()
    with pytest.raises(LayerError, match="not a valid tar: the tar ends too early in member 'b'"):
        _unpack(data[: 512 + 512 + 512 + 1], tmp_path / "again")
    # Its end blocks: one, or both, are taken; part of the second is a tar cut short, as
    # Go's reader refuses it (moby's TestBuildAddBrokenTar).
    whole = _tar((_info("a"), b"x"))
    assert len(whole) >= 4 * 512 and whole[1024:2048] == bytes(1024)
    for n, cut in enumerate((2048, 1536)):
        (tmp_path / f"end{n}").mkdir()
        assert (_unpack(whole[:cut], tmp_path / f"end{n}") / "a").read_bytes() == b"x"
    (tmp_path / "cut").mkdir()
    with pytest.raises(LayerError, match="the tar ends too early, in its end-of-archive"):
        _unpack(whole[:2047], tmp_path / "cut")


def test_a_layer_unpacked_by_many_threads_once_leaves_no_lock_behind(tmp_path: Path) -> None:
    """Threads asking for one layer get one unpack; the per-layer lock goes with the last
    of them (and with a deletion), so a long-lived store holds none for layers it saw."""
    layer = _tar((_info("hello"), b"hi\n"))
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    store = ImageStore(tmp_path / "images")
    blob = store.put_blob(gzip.compress(layer))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        dirs = set(pool.map(lambda _: store.unpack_layer(blob, diff_id), range(8)))
    assert len(dirs) == 1 and (dirs.pop() / "hello").read_bytes() == b"hi\n"
    assert store._locks == {}
    ref = BlobRef(blob, 0, "application/vnd.oci.image.layer.v1.tar+gzip", diff_id)
    record = store.add(store.put_blob(b"{}"), (ref,), None)
    assert store.delete(record).diff_ids == [diff_id]
    assert store._locks == {} and store.layer_dir(diff_id) is None


def test_a_dotdot_lookup_survives_renames_elsewhere_on_the_machine(tmp_path: Path) -> None:
    """openat2 with RESOLVE_IN_ROOT gives EAGAIN when any rename or mount on the machine
    raced with a ``..`` of the lookup; on a busy host a copy failed so ("Resource
    temporarily unavailable").  The open is tried again: none of these fails."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").write_bytes(b"found\n")
    spin = tmp_path / "spin"
    renamer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "a, b = sys.argv[1] + '.0', sys.argv[1] + '.1'\n"
            "open(a, 'w').close()\n"
            "while True:\n"
            "    os.rename(a, b)\n"
            "    os.rename(b, a)\n",
            str(spin),
        ]
    )
    try:
        for _ in range(5000):
            assert read_regular(str(root), "a/../../../b") == b"found\n"
    finally:
        renamer.kill()
        renamer.wait()


def test_a_layer_of_several_uppers(tmp_path: Path) -> None:
    """A container on default has an upper directory per overlay: its layer holds each
    one's entries below the overlay's target, whiteouts and opaque directories as
    ``.wh.`` entries, and not the root upper's copy of a mount point."""
    from boxd._images.archive import write_diff

    root, usr = tmp_path / "root", tmp_path / "usr"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "built").write_text("x\n")
    (root / "etc" / "hostname").write_text("boxd's own\n")
    (root / "usr" / "stray").mkdir(parents=True)  # the mount point: the /usr overlay's
    (usr / "local" / "share").mkdir(parents=True)
    (usr / "local" / "share" / "f").write_text("y\n")
    os.mknod(usr / "local" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (usr / "lib").mkdir()
    os.setxattr(usr / "lib", "trusted.overlay.opaque", b"y")
    buf = io.BytesIO()
    write_diff([("/", root, ()), ("/usr", usr, ()), ("/lib64", tmp_path / "never-ran", ())], buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
        assert tar.extractfile("usr/local/share/f").read() == b"y\n"  # type: ignore[union-attr]
    assert names == [
        "etc", "etc/built", "usr", "usr/lib", "usr/lib/.wh..wh..opq", "usr/local",
        "usr/local/.wh.gone", "usr/local/share", "usr/local/share/f",
    ]  # fmt: skip
    layer = tmp_path / "layer"
    layer.mkdir()
    buf.seek(0)
    unpack(buf.read, str(layer))
    assert stat.S_ISCHR(os.lstat(layer / "usr" / "local" / "gone").st_mode)
    assert os.getxattr(layer / "usr" / "lib", "trusted.overlay.opaque") == b"y"


def test_an_image_added_again_while_retired_is_not_collected(tmp_path: Path) -> None:
    """``rmi -f`` retires an image a stopped container holds; a pull, load or build of
    the same image makes it live again, and the collector that runs after the
    container's removal leaves it (it deleted the record and the config the pull had
    just written).  A config deleted between its store and the record (a collector in
    another thread) is an error naming it, not a record without its config."""
    layer = _tar((_info("hello"), b"hi\n"))
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    store = ImageStore(tmp_path / "images")
    ref = BlobRef(store.put_blob(layer), len(layer), "application/x-tar", diff_id)
    store.unpack_layer(ref.digest, diff_id)
    record = store.add(store.put_blob(b"{}"), (ref,), None)
    store.retire(record)
    assert store.images() == []
    again = store.add(store.put_blob(b"{}"), (ref,), None)
    store.collect(in_use=set())
    assert store.images() == [again] and store.layer_dir(diff_id) is not None
    assert store.read_blob(record.id) == b"{}"
    store.retire(again)
    store.collect(in_use=set())  # nothing holds it now: it goes
    assert store.layer_dir(diff_id) is None and not store.has_blob(record.id)
    with pytest.raises(FileNotFoundError, match=record.id.removeprefix("sha256:")):
        store.add(record.id, (), None)
    assert store.images() == []


def test_threads_changing_one_image_record_keep_it_whole(tmp_path: Path) -> None:
    """A load, an import or a commit (worker threads) and a tag or pull (the loop's) may
    change one image's record at once: each change is made on the record as it is and
    written whole (two writes through its one temporary file made it invalid JSON, or
    one's rename found the file gone), and no tag is lost."""
    from boxd._images.reference import parse_reference

    store = ImageStore(tmp_path / "images")
    record = store.add(store.put_blob(b"{}"), (), None)

    def tag(n: int) -> None:
        for i in range(15):
            store.tag(record.id, parse_reference(f"t{n}:{i}"))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(tag, range(4)))
    tags = sorted(store.get(record.id).repo_tags)
    assert tags == sorted(f"docker.io/library/t{n}:{i}" for n in range(4) for i in range(15))


def test_a_layer_an_image_being_made_takes_outlives_a_removal(tmp_path: Path) -> None:
    """A commit, build, import or load whose layer is already stored (another image's)
    holds it before it checks: a removal of that other image before the new image is
    recorded leaves the layer and its blob (it deleted them, and the new image was left
    without its layer); a removal that read the records before the hold ended reads them
    again, and finds the new image."""
    from boxd._images.store import _Unused

    layer = _tar((_info("hello"), b"hi\n"))
    tar = tmp_path / "layer.tar"
    tar.write_bytes(layer)
    diff_id = digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    ref = BlobRef(digest, len(layer), "application/x-tar", diff_id)
    store = ImageStore(tmp_path / "images")
    with store.holding() as hold:
        store.keep_layer(hold, tar, digest, diff_id)
        first = store.make(b'{"n":1}', (ref,))
    check = _Unused(store)  # a removal's, before the next image's hold ends
    assert check.free(diff_id) is False
    with store.holding() as hold:
        store.keep_layer(hold, tar, digest, diff_id)  # stored already: taken as it is
        assert store.delete(first).diff_ids == []
        assert store.has_blob(digest) and store.layer_dir(diff_id) is not None
        assert check.free(diff_id) is False and store.held() == {diff_id}
        second = store.make(b'{"n":2}', (ref,))
    assert store.held() == frozenset() and check.free(diff_id, digest) is False
    assert (Path(store.lowers(second)[0]) / "hello").read_bytes() == b"hi\n"
    assert store.delete(second).diff_ids == [diff_id]
    assert not store.has_blob(digest) and store.layer_dir(diff_id) is None
    assert not store.has_blob(second.id) and store._locks == {}


def test_images_made_of_one_layer_and_removed_by_threads_keep_it(tmp_path: Path) -> None:
    """Two clients commit the same change at once (the same layer) and remove their
    images: each image, once recorded, has its layer and blob, whatever the other's
    removal did meanwhile; after both, nothing is left."""
    from boxd._images.archive import layer_of_uppers

    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "made").write_text("x\n")
    store = ImageStore(tmp_path / "images")
    missing = []

    def client(n: int) -> None:
        for i in range(200):
            with store.holding() as hold:
                layer = layer_of_uppers(store, hold, [("/", upper, ())])
                assert layer is not None
                record = store.make(f'{{"client":{n},"i":{i}}}'.encode(), (layer,))
            if not store.has_blob(layer.digest) or store.layer_dir(layer.diff_id) is None:
                missing.append((n, i))
            store.delete(record)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(client, range(2)))
    assert missing == []
    assert store.images() == [] and not os.listdir(store.blobs)
    assert not os.listdir(store.layer_dirs) and store.held() == frozenset()


def test_a_failed_load_leaves_only_what_another_image_being_made_holds(tmp_path: Path) -> None:
    """A load cut short by a bad layer deletes the blobs, configs and layers it stored,
    but not a layer another load or commit took meanwhile (it found it stored, and
    records it next)."""
    good, bad = _tar((_info("a"), b"a\n")), _tar((_info("b"), b"b\n"))
    (tmp_path / "good.tar").write_bytes(good)
    (tmp_path / "bad.tar").write_bytes(bad)
    good_id = "sha256:" + hashlib.sha256(good).hexdigest()
    bad_digest = "sha256:" + hashlib.sha256(bad).hexdigest()
    store = ImageStore(tmp_path / "images")
    for other in (False, True):
        with store.holding() as taker:
            with (
                pytest.raises(LayerError, match="unpacks to"),
                store.undone_on_failure(),
                store.holding() as hold,
            ):
                store.keep_layer(hold, tmp_path / "good.tar", good_id, good_id)
                if other:
                    store.keep_layer(taker, tmp_path / "good.tar", good_id, good_id)
                store.put_blob(b'{"loaded":1}')
                store.keep_layer(hold, tmp_path / "bad.tar", bad_digest, "sha256:" + "0" * 64)
            assert not store.has_blob(bad_digest)
            assert store.has_blob(good_id) is other
            assert (store.layer_dir(good_id) is not None) is other
            ref = BlobRef(good_id, len(good), "application/x-tar", good_id)
            taken = store.make(b'{"taken":1}', (ref,)) if other else None
        if taken is not None:
            assert store.delete(taken).diff_ids == [good_id]
        assert os.listdir(store.blobs) == [] and os.listdir(store.layer_dirs) == []


def test_records_are_parsed_once_and_read_again_when_their_file_changes(
    tmp_path: Path,
) -> None:
    """The store keeps the records it parsed while their files stay the same (a prune
    reads them all for each image it deletes); a record written again (a tag), one that
    went, and one that does not parse are seen as they are now."""
    from boxd._images.reference import parse_reference

    store = ImageStore(tmp_path / "images")
    first, second = store.make(b'{"n":1}', ()), store.make(b'{"n":2}', ())
    listed = store.images()
    assert store.images()[0] is listed[0]  # not parsed again
    store.tag(first.id, parse_reference("x:1"))
    assert {r.id: r.repo_tags for r in store.images()}[first.id] == ("docker.io/library/x:1",)
    (store.records / f"{second.id[7:]}.json").write_text("{not json")
    assert [r.id for r in store.images()] == [first.id]
    store.delete(first)
    assert store.images() == []


def test_a_container_removed_while_measured_has_written_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``system df`` beside an ``rm`` (six clients at once): the container's ``fs/`` went
    between the glob's steps, which raised FileNotFoundError and made df a 500."""
    import boxd._rootfs
    from boxd._images.store import written_size

    upper = tmp_path / "c" / "fs" / "root" / "upper"
    upper.mkdir(parents=True)
    (upper / "f").write_bytes(b"12345")
    assert written_size(tmp_path / "c") == 5

    def vanished(container_dir: Path) -> list[Path]:
        raise FileNotFoundError(2, "No such file or directory", str(container_dir / "fs"))

    monkeypatch.setattr(boxd._rootfs, "written_uppers", vanished)
    assert written_size(tmp_path / "c") == 0

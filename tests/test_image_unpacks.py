"""Layers unpacked after the pull, in the background: a real registry, a real daemon, and
the daemon's reads of a layer blob held by fanotify (tests/held_reads.py) to catch it in
the middle of an unpack, without timing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, daemon_cli, running_daemon
from held_reads import holding_reads
from registry_harness import Registry, push, running_registry, write_layout

pytestmark = pytest.mark.root

FILES = 48  # of 64 KiB of random bytes: a layer of ~3 MiB that gzip cannot shrink


def _tar(add: list[tuple[str, bytes]] | Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        if isinstance(add, Path):
            tar.add(add, arcname=".")
        else:
            for name, data in add:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def bulky(tmp_path: Path, busybox_root: Path) -> Iterator[tuple[Registry, str, str]]:
    """A registry holding ``bulky:1`` (busybox, then a layer of random files); the
    reference and the hex digest of the bulky layer's blob."""
    data = [(f"data/{i:02d}", os.urandom(64 << 10)) for i in range(FILES)]
    digests = write_layout(tmp_path / "layout", [_tar(busybox_root), _tar(data)])
    with running_registry(tmp_path) as registry:
        push(tmp_path / "layout", "1", registry, "bulky:1")
        yield registry, f"{registry.host}/bulky:1", digests[1]


def _blobs(daemon: Daemon) -> Path:
    return daemon.root / "images" / "blobs" / "sha256"


def _complete_layers(daemon: Daemon) -> tuple[set[str], set[str]]:
    """The layer directories present, and those whose record says they are complete."""
    images = daemon.root / "images"
    records = {json.loads(p.read_text())["dir"] for p in (images / "layers").glob("*.json")}
    return set(os.listdir(images / "l")), records


def _blocked_reading(pid: int) -> bool:
    """Whether a boxctl process waits for the daemon's answer (its request is sent)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "unix_stream_read_generic"
    except OSError:
        return False


def _wait_for(condition: object, what: str) -> None:
    import time

    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_daemon_killed_during_an_unpack_unpacks_again_from_the_blob(
    tmp_path: Path, bulky: tuple[Registry, str, str]
) -> None:
    _, ref, layer = bulky
    (tmp_path / "d").mkdir()
    with running_daemon(tmp_path / "d", "--procview", "off") as daemon:
        tmp = daemon.root / "images" / "tmp"
        with holding_reads(_blobs(daemon), layer) as hold:
            r = daemon.ctl("pull", ref)  # the blobs are stored: the pull is done
            assert r.stdout.splitlines()[-2] == f"Status: Downloaded newer image for {ref}"
            assert hold.held.wait(60), "the layer's unpack never read its blob"
            # In the middle of the unpack: some of the layer's files are in tmp/ (written
            # from what the first read gave, maybe by a thread behind the held reader).
            deadline = time.monotonic() + 60
            while not list(tmp.glob("layer-*/data/*")):
                assert time.monotonic() < deadline, "nothing of the layer was unpacked"
                time.sleep(0.05)
            assert daemon.process is not None
            daemon.process.kill()
            hold.release()
            daemon.process.wait()
            daemon.process = None
        present, complete = _complete_layers(daemon)
        # busybox's layer at most, with or without its record: the kill may come between
        # its directory's rename into place and its record (such a directory is replaced
        # when the layer is unpacked again, ImageStore._unpack); never a record without
        # its directory, never the held layer's.
        assert complete <= present and len(present) <= 1
        half = list(tmp.glob("layer-*"))
        assert list(tmp.glob("layer-*/data/*"))  # left by the kill
        daemon.start("--procview", "off")  # which empties tmp/ and unpacks again
        assert not any(p.exists() for p in half)
        r = daemon.ctl("run", "--rm", "--pull", "never", ref, "sh", "-c", "ls /data | wc -l")
        assert r.stdout.strip() == str(FILES)
        present, complete = _complete_layers(daemon)
        assert present == complete and len(complete) == 2


def _tagged(meta: Path) -> bool:
    """Whether an image record in ``meta`` still has a tag (records only: the store writes
    each through a temporary file renamed over it, and deletes it at the end of an rmi)."""
    for record in meta.glob("*.json"):
        try:
            if json.loads(record.read_bytes())["repo_tags"]:
                return True
        except FileNotFoundError:
            continue
    return False


def test_rmi_during_an_unpack_cancels_it_and_leaves_nothing(
    daemon: Daemon, bulky: tuple[Registry, str, str]
) -> None:
    _, ref, layer = bulky
    images = daemon.root / "images"
    with holding_reads(_blobs(daemon), layer) as hold:
        daemon.ctl("pull", ref)
        assert hold.held.wait(60), "the layer's unpack never read its blob"
        rmi = subprocess.Popen(
            [*daemon_cli(daemon).split(), "rmi", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # rmi untags first, then cancels the unpack and waits for it to end.
        _wait_for(lambda: not _tagged(images / "meta"), "rmi never untagged the image")
        hold.release()
        out, err = rmi.communicate(timeout=60)
    assert rmi.returncode == 0, err
    untagged, digest, deleted = out.splitlines()[:3]  # the repository's digest too
    repository = ref.rpartition(":")[0]
    assert (untagged, digest.split("@")[0]) == (f"Untagged: {ref}", f"Untagged: {repository}")
    assert deleted.startswith("Deleted: sha256:")
    assert os.listdir(images / "l") == [] and os.listdir(images / "layers") == []
    assert os.listdir(images / "tmp") == [] and os.listdir(images / "meta") == []
    assert not (_blobs(daemon) / layer).exists()
    images_left = json.loads(daemon.ctl("images", "--format", "json").stdout)
    assert [i["repo_tags"] for i in images_left] == [["default:latest"]]  # built in
    # Pulled again, it unpacks and runs.
    daemon.ctl("pull", ref)
    r = daemon.ctl("run", "--rm", "--pull", "never", ref, "sh", "-c", "ls /data | wc -l")
    assert r.stdout.strip() == str(FILES)


def test_two_creates_wait_for_one_unpack(
    tmp_path: Path, daemon: Daemon, bulky: tuple[Registry, str, str]
) -> None:
    registry, ref, layer = bulky
    with holding_reads(_blobs(daemon), layer) as hold:
        daemon.ctl("pull", ref)
        assert hold.held.wait(60), "the layer's unpack never read its blob"
        creates = [
            subprocess.Popen(
                [*daemon_cli(daemon).split(), "create", "--pull", "never", "--name", name, ref,
                 "sh", "-c", "ls /data | wc -l"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("first", "second")
        ]  # fmt: skip
        _wait_for(
            lambda: all(_blocked_reading(p.pid) for p in creates),
            "the creates never asked the daemon",
        )
        assert all(p.poll() is None for p in creates)  # both wait for the held unpack
        hold.release()
        for p in creates:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
    assert hold.opens == 1  # one unpack read the blob, for both
    for name in ("first", "second"):
        assert daemon.ctl("start", "-a", name).stdout.strip() == str(FILES)
    # images shows the unpacked size: the layers' uncompressed tars.
    size = json.loads(daemon.ctl("images", "--format", "json", ref).stdout)[0]["size"]
    assert size > FILES * (64 << 10)
    # The blobs are kept as they came: save writes the registry's bytes.
    archive = tmp_path / "saved.tar"
    daemon.ctl("save", "-o", str(archive), ref)
    with tarfile.open(archive) as tar:
        saved = tar.extractfile(f"blobs/sha256/{layer}")
        assert saved is not None
        assert saved.read() == registry.blob_path(layer).read_bytes()

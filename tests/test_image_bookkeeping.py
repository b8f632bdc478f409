"""What a Docker user sees of boxd's images through the docker CLI: the sizes of layers
and images, what a commit holds, which removals are refused and in what words, and what
the lists and histories show.  One real daemon for the module (its own root and sockets),
its images imported from a busybox root."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import api_call, docker, needs_cli
from registry_harness import build_oci_image, push, running_registry

pytestmark = [pytest.mark.root, needs_cli]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("bookkeeping")) as d:
        yield d


@pytest.fixture
def bb(daemon: Daemon, tmp_path: Path, busybox_root: Path) -> Iterator[str]:
    """The busybox root imported as ``bb:1`` (its id); after the test, every container
    and every image but default is removed."""
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    r = docker(daemon, "import", "-c", 'CMD ["sh"]', str(tarball), "bb:1")
    assert r.returncode == 0, r.stderr
    yield r.stdout.strip()
    daemon.remove_containers()
    for _ in range(5):  # children before their parents
        ids = docker(daemon, "images", "-a", "-q", "--no-trunc").stdout.split()
        stored = [i for i in ids if i != _default_id()]
        if not stored:
            break
        docker(daemon, "rmi", "-f", *stored)
    assert docker(daemon, "images", "-a", "-q", "--no-trunc").stdout.split() == [_default_id()]


def _default_id() -> str:
    from boxd._images.config import DEFAULT_ID

    return DEFAULT_ID


def _inspect(daemon: Daemon, name: str) -> dict[str, Any]:
    r = docker(daemon, "image", "inspect", name)
    assert r.returncode == 0, r.stderr
    found: dict[str, Any] = json.loads(r.stdout)[0]
    return found


def _files_size(root: Path) -> int:
    """What Docker counts as a directory's size: every non-directory's, each inode once."""
    seen: set[int] = set()
    total = 0
    for path in root.rglob("*"):
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def test_an_unchanged_container_commits_an_empty_layer(
    daemon: Daemon, bb: str, busybox_root: Path
) -> None:
    """As Docker's: a container that changed nothing shows no changes and commits a layer
    of 0 B (boxd's own /etc/hostname, /etc/hosts and /etc/resolv.conf, and the /etc they
    made overlay copy, are no change, nor what it wrote); sizes are what the files hold,
    as Docker counts them (not their tar's length); a directory whose mode changed is a
    change."""
    image = _inspect(daemon, "bb:1")
    assert image["Size"] == _files_size(busybox_root)
    assert image["DockerVersion"] == ""  # as Docker's answer has it: the config's (none)
    assert docker(daemon, "run", "--name", "idle", "bb:1", "true").returncode == 0
    assert docker(daemon, "diff", "idle").stdout == ""
    r = docker(daemon, "inspect", "--size", "-f", "{{.SizeRw}}", "idle")
    assert r.stdout == "0\n"  # boxd's own /etc files are not what it wrote
    df = docker(daemon, "system", "df", "--format", "{{.Type}} {{.Size}}").stdout
    assert "Containers 0B" in df.splitlines(), df
    r = docker(daemon, "commit", "idle", "idle:1")
    assert r.returncode == 0, r.stderr
    sizes = docker(daemon, "history", "--format", "{{.Size}}", "idle:1").stdout.split()
    assert sizes[0] == "0B"
    image = _inspect(daemon, "idle:1")
    assert image["Size"] == _inspect(daemon, "bb:1")["Size"]
    # As Docker's commit: no layer at all, only its history entry (empty_layer).
    assert image["RootFS"] == _inspect(daemon, "bb:1")["RootFS"]
    (entry, *_) = json.loads(daemon.ctl("history", "--format", "json", "idle:1").stdout)
    assert entry["empty_layer"] is True and entry["created_by"] == "true"
    assert docker(daemon, "run", "--rm", "idle:1", "true").returncode == 0
    assert image["Parent"] == bb

    script = "head -c 100000 /dev/zero > /etc/data; ln /etc/data /etc/again; chmod 700 /tmp"
    assert docker(daemon, "run", "--name", "busy", "bb:1", "sh", "-c", script).returncode == 0
    assert docker(daemon, "diff", "busy").stdout.split("\n") == [
        "C /etc", "A /etc/again", "A /etc/data", "C /tmp", ""
    ]  # fmt: skip
    assert docker(daemon, "commit", "busy", "busy:1").returncode == 0
    sizes = docker(daemon, "history", "--format", "{{.Size}}", "busy:1").stdout.split()
    assert sizes[0] == "100kB"  # the data once, though two names hold it
    r = docker(daemon, "run", "--rm", "busy:1", "stat", "-c", "%a", "/tmp")
    assert r.stdout == "700\n"
    r = docker(daemon, "run", "--rm", "busy:1", "stat", "-c", "%h", "/etc/again")
    assert r.stdout == "2\n"


def test_layers_an_older_boxd_stored_are_measured_at_start(tmp_path: Path) -> None:
    """A layer record of an older boxd holds its tar's length: the daemon's start measures
    the layer as Docker does instead (once), so old and new images' sizes agree."""
    from boxd._images.store import ImageStore

    store = ImageStore(tmp_path / "images")
    layer = tmp_path / "layer.tar"
    files = tmp_path / "files"
    (files / "d").mkdir(parents=True)
    (files / "d" / "f").write_bytes(b"x" * 1000)
    (files / "d" / "link").symlink_to("f")
    subprocess.run(["tar", "-C", str(files), "-cf", str(layer), "."], check=True)
    digest = store.put_blob(layer.read_bytes())
    store.unpack_layer(digest, digest)  # a plain tar: its digest is its diff_id
    assert store.layer_size(digest) == 1000 + len("f")
    record = store.layer_records / f"{digest[7:]}.json"
    old = {**json.loads(record.read_text()), "size": layer.stat().st_size}
    del old["files"]
    record.write_text(json.dumps(old))
    assert store.measure() == 1
    assert store.layer_size(digest) == 1001
    assert store.measure() == 0
    # One it cannot measure (no directory named) keeps the size it had, and the rest go on.
    record.write_text(json.dumps({"diff_id": digest, "size": 5}))
    assert store.measure() == 0
    assert store.layer_size(digest) == 5


def test_an_image_others_were_committed_from_is_kept_as_docker_keeps_it(
    daemon: Daemon, bb: str, tmp_path: Path
) -> None:
    """As Docker's: an image that another one names as its Parent is not deleted (by id:
    refused even with -f; by tag: only the tag goes, and the untagged parent is listed
    with -a only, and not as dangling); the child's removal takes the untagged parent
    with it unless --no-prune, and so does the prune of an untagged child."""
    assert docker(daemon, "run", "--name", "c1", "bb:1", "sh", "-c", "echo a > /a").returncode == 0
    child = docker(daemon, "commit", "c1", "child:1").stdout.strip()
    assert docker(daemon, "rm", "c1").returncode == 0
    for args in (("rmi", bb), ("rmi", "-f", bb[7:19])):
        r = docker(daemon, *args)
        assert r.returncode == 1
        assert r.stderr == (
            "Error response from daemon: conflict: unable to delete "
            f"{bb[7:19]} (cannot be forced) - image has dependent child images\n"
        )
    assert docker(daemon, "rmi", "bb:1").stdout == "Untagged: bb:1\n"
    assert _inspect(daemon, "child:1")["Parent"] == bb
    assert docker(daemon, "run", "--rm", "child:1", "cat", "/a").stdout == "a\n"
    # Where its layers are, as Docker's GraphDriver names them: its own on top.
    dirs = _inspect(daemon, "child:1")["GraphDriver"]["Data"]
    assert Path(dirs["UpperDir"], "a").read_text() == "a\n"
    assert dirs["LowerDir"] == _inspect(daemon, bb)["GraphDriver"]["Data"]["UpperDir"]

    def listed(*args: str) -> list[str]:
        ids = docker(daemon, "images", "-q", "--no-trunc", *args).stdout.split()
        return [i for i in ids if i != _default_id()]

    assert listed() == [child]
    assert sorted(listed("-a")) == sorted([child, bb])
    assert listed("-f", "dangling=true") == []
    assert docker(daemon, "image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    # system df counts the images the list shows; info all of them (default among them).
    df = docker(daemon, "system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout
    assert "Images 2" in df.splitlines(), df
    assert docker(daemon, "info", "--format", "{{.Images}}").stdout == "3\n"

    r = docker(daemon, "rmi", "--no-prune", "child:1")
    assert r.stdout.splitlines()[:2] == ["Untagged: child:1", f"Deleted: {child}"]
    assert listed("-f", "dangling=true") == [bb]  # no tag, no child now
    top = _chain(daemon, bb)
    r = docker(daemon, "rmi", top)
    assert r.stdout.count("Deleted: ") == 2 * 3 and f"Deleted: {bb}\n" in r.stdout
    assert listed("-a") == []

    r = docker(daemon, "import", str(tmp_path / "rootfs.tar"))
    top = _chain(daemon, r.stdout.strip())
    assert listed("-f", "dangling=true") == [top]
    r = docker(daemon, "image", "prune", "-f")
    assert r.stdout.count("deleted: ") == 2 * 3, r.stdout
    assert listed("-a") == []


def _chain(daemon: Daemon, image: str) -> str:
    """Two untagged images committed one from the other from ``image``: the top's id."""
    for name in ("middle", "top"):
        assert docker(daemon, "run", "--name", name, image, "touch", f"/{name}").returncode == 0
        image = docker(daemon, "commit", name).stdout.strip()
        assert docker(daemon, "rm", name).returncode == 0
    return image


def test_history_names_the_images_a_commit_came_from(daemon: Daemon, bb: str) -> None:
    """As Docker's history: the rows from the top are the image's and its parents' (the
    image each was committed from), with their tags; the rest are <missing>."""
    middle = _chain(daemon, bb)
    top = _chain(daemon, middle)
    shown = "--no-trunc", "--human=false", "--format", "{{.ID}} {{.Size}} {{.CreatedBy}}"
    rows = docker(daemon, "history", *shown, top).stdout.splitlines()
    parents = [str(_inspect(daemon, top)["Parent"])]
    for _ in range(3):
        parents.append(str(_inspect(daemon, parents[-1])["Parent"]))
    assert parents[1] == middle and parents[3] == bb
    assert rows == [
        f"{top} 0 touch /top", f"{parents[0]} 0 touch /middle",
        f"{middle} 0 touch /top", f"{parents[2]} 0 touch /middle",
        f"{bb} {_inspect(daemon, bb)['Size']} ",
    ]  # fmt: skip
    listing = daemon.ctl("history", top).stdout.splitlines()  # boxctl's, as the docker CLI's
    assert [line.split()[0] for line in listing] == ["IMAGE", *(r[7:19] for r in rows)]


def test_prune_all_and_disk_use_with_images_in_use(daemon: Daemon, bb: str, tmp_path: Path) -> None:
    """``image prune -a`` deletes a tagged image once the child committed from it went
    (whichever it meets first), and keeps an image a container uses and the one it came
    from; ``system df`` counts a layer that several images hold once, as Docker's."""
    r = docker(daemon, "import", "-c", "LABEL base=2", str(tmp_path / "rootfs.tar"), "base:2")
    base2 = r.stdout.strip()
    for image, name, tag in ((bb, "c1", "ch:1"), (base2, "c2", "inuse:1")):
        assert docker(daemon, "run", "--name", name, image, "touch", "/t").returncode == 0
        assert docker(daemon, "commit", name, tag).returncode == 0
        assert docker(daemon, "rm", name).returncode == 0
    inuse = str(_inspect(daemon, "inuse:1")["Id"])
    assert docker(daemon, "create", "--name", "user", "inuse:1").returncode == 0
    status, _, body = api_call(daemon, "GET", "/system/df")
    assert status == 200
    assert json.loads(body)["LayersSize"] == _inspect(daemon, "bb:1")["Size"]  # the one base

    r = docker(daemon, "image", "prune", "-a", "-f")
    assert r.returncode == 0, r.stderr
    assert "untagged: bb:1\n" in r.stdout and "untagged: ch:1\n" in r.stdout
    ids = docker(daemon, "images", "-a", "-q", "--no-trunc").stdout.split()
    assert sorted(ids) == sorted([inuse, base2, _default_id()])


def test_save_and_load_keep_the_parent_they_both_hold(
    daemon: Daemon, bb: str, tmp_path: Path
) -> None:
    """As Docker's: an archive of an image and the one it was committed from names that
    Parent (manifest.json), and a load of it gives the image that Parent again (so the
    parent is kept by rmi as before); an archive without the parent names none."""
    assert docker(daemon, "run", "--name", "c1", "bb:1", "touch", "/made").returncode == 0
    assert docker(daemon, "commit", "c1", "child:1").returncode == 0
    assert docker(daemon, "rm", "c1").returncode == 0
    both, alone = tmp_path / "both.tar", tmp_path / "alone.tar"
    assert docker(daemon, "save", "-o", str(both), "child:1", "bb:1").returncode == 0
    assert docker(daemon, "save", "-o", str(alone), "child:1").returncode == 0
    for archive, parent, removed in ((alone, "", ("child:1", "bb:1")), (both, bb, ("child:1",))):
        assert docker(daemon, "rmi", *removed).returncode == 0
        r = docker(daemon, "load", "-i", str(archive))
        assert r.returncode == 0, r.stderr
        assert _inspect(daemon, "child:1")["Parent"] == parent
    r = docker(daemon, "rmi", bb)
    assert "image has dependent child images" in r.stderr


def test_rmi_of_a_pulled_image_names_its_digests_as_docker_does(
    daemon: Daemon, tmp_path: Path, busybox_root: Path
) -> None:
    """A pulled image is named by its tag and its repository's digest: rmi of the tag
    untags the digest too (\\"Untagged: NAME@sha256:...\\"), unless another tag of the
    repository is left; rmi of the digest takes only the digest; a tag and the digests of
    its repository are one reference (rmi by id needs no -f), two repositories are not."""
    layout = tmp_path / "layout"
    build_oci_image(layout, "v1", busybox_root, config={"cmd": ["sh"]})
    with running_registry(tmp_path) as registry:
        push(layout, "v1", registry, "tools/box:v1")
        ref = f"{registry.host}/tools/box:v1"
        assert docker(daemon, "pull", "-q", ref).returncode == 0
    image = _inspect(daemon, ref)["Id"]
    (digested,) = _inspect(daemon, ref)["RepoDigests"]
    # As Docker's: a pull tags without a tag time (Go's zero time), a tag gives it one.
    assert _inspect(daemon, ref)["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}
    assert docker(daemon, "tag", ref, f"{registry.host}/tools/box:v2").returncode == 0
    tagged = _inspect(daemon, ref)["Metadata"]["LastTagTime"]
    assert tagged != "0001-01-01T00:00:00Z" and tagged.endswith("Z"), tagged
    r = docker(daemon, "rmi", ref)
    assert r.stdout == f"Untagged: {ref}\n"  # v2 is left: the digest stays
    r = docker(daemon, "rmi", digested)
    assert r.stdout == f"Untagged: {digested}\n"
    assert _inspect(daemon, image)["RepoTags"] == [f"{registry.host}/tools/box:v2"]
    assert docker(daemon, "rmi", f"{registry.host}/tools/box:v2").stdout.startswith(
        f"Untagged: {registry.host}/tools/box:v2\nDeleted: {image}\n"
    )
    (tmp_path / "again").mkdir()
    with running_registry(tmp_path / "again") as registry:
        push(layout, "v1", registry, "tools/box:v1")
        ref = f"{registry.host}/tools/box:v1"
        assert docker(daemon, "pull", "-q", ref).returncode == 0
        (digested,) = _inspect(daemon, ref)["RepoDigests"]
        r = docker(daemon, "rmi", image)  # one tag and its digest: one reference
        assert r.stdout.startswith(f"Untagged: {ref}\nUntagged: {digested}\nDeleted: {image}")
        assert docker(daemon, "pull", "-q", ref).returncode == 0
        assert docker(daemon, "tag", ref, "else:1").returncode == 0
        r = docker(daemon, "rmi", image)
        assert "image is referenced in multiple repositories" in r.stderr
        r = docker(daemon, "rmi", "else:1")
        assert r.stdout == "Untagged: else:1\n"
        r = docker(daemon, "rmi", ref)
        assert r.stdout.startswith(f"Untagged: {ref}\nUntagged: {digested}\nDeleted: {image}")


def test_rmi_refusals_in_dockers_words(daemon: Daemon, bb: str) -> None:
    """rmi of an image with several tags untags; by id it is refused without -f; an image
    a stopped container uses is refused without -f, naming the container's short id as
    Docker does (the words scripts match)."""
    short = bb[7:19]
    assert docker(daemon, "tag", "bb:1", "bb:2").returncode == 0
    r = docker(daemon, "rmi", short)
    assert r.stderr == (
        f"Error response from daemon: conflict: unable to delete {short} (must be forced) - "
        "image is referenced in multiple repositories\n"
    )
    assert docker(daemon, "rmi", "bb:2").stdout == "Untagged: bb:2\n"
    cid = docker(daemon, "create", "bb:1").stdout.strip()
    r = docker(daemon, "rmi", "bb:1")
    assert r.stderr == (
        'Error response from daemon: conflict: unable to remove repository reference "bb:1" '
        f"(must force) - container {cid[:12]} is using its referenced image {short}\n"
    )
    r = docker(daemon, "rmi", bb)
    assert r.stderr == (
        f"Error response from daemon: conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {cid[:12]}\n"
    )
    assert docker(daemon, "rmi", "-f", "bb:1").stdout == f"Untagged: bb:1\nDeleted: {bb}\n"
    assert docker(daemon, "start", "-a", cid).returncode == 0


def test_a_load_that_takes_a_tag_says_so_as_docker_does(
    daemon: Daemon, bb: str, tmp_path: Path
) -> None:
    """docker load of an image whose tag another image has moves the tag and says so in
    Docker's words; the other image is then dangling."""
    saved = tmp_path / "saved.tar"
    assert docker(daemon, "save", "-o", str(saved), "bb:1").returncode == 0
    r = docker(daemon, "import", "-c", "LABEL other=yes", str(tmp_path / "rootfs.tar"), "bb:1")
    other = r.stdout.strip()
    r = docker(daemon, "load", "-i", str(saved))
    assert r.stdout == (
        f"The image bb:1 already exists, renaming the old one with ID {other} to empty "
        "string\nLoaded image: bb:1\n"
    )
    ids = docker(daemon, "images", "-q", "--no-trunc", "-f", "dangling=true").stdout.split()
    assert ids == [other]
    assert docker(daemon, "load", "-i", str(saved)).stdout == "Loaded image: bb:1\n"
    r = docker(daemon, "import", "-c", "LABEL third=yes", str(tmp_path / "rootfs.tar"), "bb:1")
    third = r.stdout.strip()
    assert daemon.ctl("load", "-i", str(saved)).stdout == (  # boxctl's words too
        f"The image bb:1 already exists, renaming the old one with ID {third} to empty "
        "string\nLoaded image: bb:1\n"
    )


def test_rmi_names_the_layers_it_deletes_by_dockers_ids(
    daemon: Daemon, bb: str, tmp_path: Path
) -> None:
    """rmi names the layers it deletes top first by Docker's layer ids (ChainIDs: a
    layer's diff_id over the ids below it), each once: two RUN steps that wrote the same
    are two layers of Docker's (one directory of boxd's); each with its image (the first
    RUN's image is the built one's Parent, and goes with it)."""
    (tmp_path / "ctx").mkdir()
    same = "RUN echo a > /a && touch -r /bin/busybox /a\n"  # the same layer twice
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM bb:1\n{same}{same}")
    daemon.ctl("build", "-q", "-t", "twice:1", str(tmp_path / "ctx"))
    image = _inspect(daemon, "twice:1")
    layers = image["RootFS"]["Layers"]
    assert layers[1] == layers[2]
    chains = [layers[0]]
    for diff_id in layers[1:]:
        chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    r = docker(daemon, "rmi", "twice:1")
    assert r.stdout.splitlines() == [
        "Untagged: twice:1", f"Deleted: {image['Id']}", f"Deleted: {chains[2]}",
        f"Deleted: {image['Parent']}", f"Deleted: {chains[1]}",
    ]  # fmt: skip


def test_a_missing_image_is_named_as_docker_names_it(daemon: Daemon) -> None:
    """The error names a missing image with its default tag, as Docker's: nope:latest."""
    for args in (("rmi", "nope"), ("tag", "nope", "x:1"), ("history", "nope")):
        r = docker(daemon, *args)
        assert r.stderr == "Error response from daemon: No such image: nope:latest\n", args
    r = docker(daemon, "rmi", "team/nope:2")
    assert r.stderr == "Error response from daemon: No such image: team/nope:2\n"
    r = docker(daemon, "rmi", " ")  # moby's TestRmiBlank
    assert r.stderr == "Error response from daemon: image name cannot be blank\n"

"""Images end to end: a real docker-registry on loopback, images built with umoci and pushed
with skopeo, pulled and run by a real boxd through boxctl."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon
from registry_harness import Registry, build_oci_image, manifest_of, push, running_registry

pytestmark = pytest.mark.root

CMD = "echo $GREETING from $(pwd) as $(id -u):$(id -g); cat hello.txt"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, busybox_root: Path) -> Path:
    """An OCI layout: tag ``v1`` is busybox + a layer that adds /work and deletes /bin/vi."""
    base = tmp_path_factory.mktemp("oci")
    second = base / "second"
    (second / "work").mkdir(parents=True)
    (second / "work" / "hello.txt").write_text("hello from the second layer\n")
    (second / ".boxd-delete").write_text("bin/vi\n")
    layout = base / "layout"
    build_oci_image(
        layout,
        "v1",
        busybox_root,
        extra_layers=[second],
        config={
            "cmd": ["/bin/sh", "-c", CMD],
            "env": ["GREETING=hi", "PATH=/bin:/usr/bin"],
            "workingdir": "/work",
            "user": "nobody",
        },
    )
    return layout


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path) as registry:
        yield registry


def _layer_blobs(registry: Registry, name: str) -> list[str]:
    manifest = manifest_of(registry, name, "v1")
    return [str(layer["digest"]) for layer in manifest["layers"]]  # type: ignore[attr-defined]


def test_pull_run_images_and_no_second_fetch(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "tools/box:v1")
    ref = f"{registry.host}/tools/box:v1"
    r = daemon.ctl("pull", ref)
    assert r.stdout.splitlines()[-1] == ref
    assert "Pull complete" in r.stdout  # a pipe gets one line per layer
    blobs = registry.requests("/blobs/")
    assert blobs == 3  # the config and two layers

    # The image's Cmd, Env, WorkingDir and User (a name, from its /etc/passwd).
    r = daemon.ctl("run", "--rm", ref)
    assert r.stdout == "hi from /work as 65534:65534\nhello from the second layer\n"
    # A command replaces Cmd; -u, -w and -e override the image's.
    who = CMD.partition(";")[0]
    r = daemon.ctl("run", "--rm", "-u", "0", "-w", "/", "-e", "GREETING=yo", ref, "sh", "-c", who)
    assert r.stdout == "yo from / as 0:0\n"
    # --entrypoint replaces Entrypoint and drops Cmd.
    r = daemon.ctl("run", "--rm", "--entrypoint", "/bin/echo", ref, "a", "b")
    assert r.stdout == "a b\n"
    # The second layer's whiteout hides /bin/vi of the first.
    r = daemon.ctl("run", "--rm", "-u", "0", ref, "sh", "-c", "ls /bin/vi; ls /bin/sh", check=False)
    assert "/bin/sh" in r.stdout and "/bin/vi" not in r.stdout

    # Pulled again: the manifest is read, no blob is fetched.
    again = daemon.ctl("pull", ref)
    assert "Already exists" in again.stdout
    assert registry.requests("/blobs/") == blobs

    images = json.loads(daemon.ctl("images", "--format", "json").stdout)
    assert [i["repo_tags"] for i in images] == [[ref]]
    assert images[0]["size"] > 0
    listing = daemon.ctl("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == [f"{registry.host}/tools/box", "v1", images[0]["id"][7:19]]
    inspect = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]
    assert inspect["Config"]["WorkingDir"] == "/work"
    assert len(inspect["RootFS"]["Layers"]) == 2

    # Each layer is unpacked once, read-only lowers shared by containers (no copy).
    layers = daemon.root / "images" / "l"
    assert len(os.listdir(layers)) == 2

    # rmi: refused while a container uses the image, then by tag with -f (untag), then
    # the image goes with its layers once nothing uses it.
    daemon.ctl("create", "--name", "user", ref)
    r = daemon.ctl("rmi", ref, check=False)
    assert r.returncode == 1 and "used by container(s) user" in r.stderr
    daemon.ctl("tag", ref, "other:1")
    assert daemon.ctl("rmi", "other:1").stdout == "Untagged: docker.io/library/other:1\n"
    daemon.ctl("rm", "user")
    r = daemon.ctl("rmi", ref)
    assert f"Untagged: {ref}" in r.stdout and "Deleted: sha256:" in r.stdout
    assert os.listdir(layers) == []
    assert json.loads(daemon.ctl("images", "--format", "json").stdout) == []


def test_run_pulls_a_missing_image(daemon: Daemon, registry: Registry, layout: Path) -> None:
    push(layout, "v1", registry, "box:v1")
    r = daemon.ctl("run", "--rm", f"{registry.host}/box:v1", "echo", "pulled")
    assert r.stdout == "pulled\n"
    assert "Unable to find image" in r.stderr
    r = daemon.ctl(
        "run", "--rm", "--pull", "never", f"{registry.host}/box:nope", "true", check=False
    )
    assert r.returncode == 1 and "no such image" in r.stderr


def test_a_tampered_layer_fails_the_pull_and_keeps_nothing(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "box:v1")
    blob = registry.blob_path(_layer_blobs(registry, "box")[-1])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    r = daemon.ctl("pull", f"{registry.host}/box:v1", check=False)
    assert r.returncode == 125
    assert "does not match its content" in r.stderr
    assert json.loads(daemon.ctl("images", "--format", "json").stdout) == []
    images = daemon.root / "images"
    assert os.listdir(images / "tmp") == []
    assert os.listdir(images / "meta") == []
    assert not (images / "blobs" / "sha256" / blob.parent.name).exists()


def test_bad_references_and_unknown_registries(daemon: Daemon) -> None:
    r = daemon.ctl("pull", "Busybox", check=False)
    assert r.returncode == 1 and "must be lowercase ('Busybox')" in r.stderr
    r = daemon.ctl("pull", "127.0.0.1:1/x", check=False)
    assert r.returncode == 125 and "cannot reach registry 127.0.0.1:1" in r.stderr
    r = daemon.ctl("run", "--rm", "--pull", "never", "nothing-here", check=False)
    assert r.returncode == 1 and "no such image: nothing-here" in r.stderr


def test_credentials_file_is_private(daemon: Daemon, registry: Registry) -> None:
    daemon.ctl("login", "-u", "me", "--password-stdin", registry.host, input=b"s3cret\n")
    auth = daemon.root / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert registry.host in json.loads(auth.read_text())["auths"]
    daemon.ctl("logout", registry.host)
    assert registry.host not in json.loads(auth.read_text())["auths"]

"""Images end to end: a real docker-registry on loopback, images built with umoci and pushed
with skopeo, pulled and run by a real boxd through boxctl."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, daemon_cli, running_daemon
from docker_clients import UnixHTTP, api_call, docker
from registry_harness import (
    Registry,
    add_index,
    build_oci_image,
    cutting_proxy,
    manifest_of,
    push,
    put_blob,
    put_manifest,
    running_registry,
    running_token_server,
    stalling_proxy,
    write_htpasswd,
    write_layout,
)
from test_terminal import Tmux, _boxctl, tmux

pytestmark = pytest.mark.root
__all__ = ["tmux"]  # the fixture, for the terminal test

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
            "stopsignal": "SIGQUIT",
            "label": ["org.example.team=images"],
            "exposedports": ["8080/tcp"],
        },
    )
    return layout


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path) as registry:
        yield registry


def _stored(daemon: Daemon) -> list[dict[str, Any]]:
    """``images --format json`` but the built-in default, which it always lists."""
    images: list[dict[str, Any]] = json.loads(daemon.ctl("images", "--format", "json").stdout)
    return [i for i in images if i["repo_tags"] != ["default:latest"]]


def _table(daemon: Daemon, *args: str) -> list[str]:
    """``images``' header and its rows but default's."""
    lines = daemon.ctl("images", *args).stdout.splitlines()
    return [line for line in lines if not line.startswith("default ")]


def _layer_blobs(registry: Registry, name: str) -> list[str]:
    manifest = manifest_of(registry, name, "v1")
    return [str(layer["digest"]) for layer in manifest["layers"]]  # type: ignore[attr-defined]


def _skopeo_copy(*args: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", *args], check=True)


def test_pull_run_images_and_no_second_fetch(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "tools/box:v1")
    ref = f"{registry.host}/tools/box:v1"
    start = time.time()
    r = daemon.ctl("pull", ref)
    assert r.stdout.splitlines()[0] == "v1: Pulling from tools/box"  # Docker's first line
    # Docker's pull event: the reference and its repository, with the image's labels.
    window = ("--since", str(start), "--until", str(time.time()), "-f", "type=image")
    fmt = "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{index .Actor.Attributes"
    shown = daemon.ctl("events", *window, "--format", fmt + ' "org.example.team"}}').stdout
    assert shown == f"pull {ref} {registry.host}/tools/box images\n"
    assert r.stdout.splitlines()[-2:] == [f"Status: Downloaded newer image for {ref}", ref]
    assert "Pull complete" in r.stdout  # a pipe gets one line per layer
    blobs = registry.requests("/blobs/")
    assert blobs == 3  # the config and two layers
    assert daemon.ctl("pull", "-q", ref).stdout == f"{ref}\n"  # docker pull -q's one line

    # The image's Cmd, Env, WorkingDir and User (a name, from its /etc/passwd).
    r = daemon.ctl("run", "--rm", ref)
    assert r.stdout == "hi from /work as 65534:65534\nhello from the second layer\n"
    # A command replaces Cmd; -u, -w and -e override the image's.
    who = CMD.partition(";")[0]
    r = daemon.ctl("run", "--rm", "-u", "0", "-w", "/", "-e", "GREETING=yo", ref, "sh", "-c", who)
    assert r.stdout == "yo from / as 0:0\n"
    # StopSignal, Labels and ExposedPorts are the container's.
    daemon.ctl("create", "--name", "configured", "-l", "mine=1", ref)
    config = daemon.inspect("configured")["config"]
    assert config["stop_signal"] == "SIGQUIT"
    assert config["labels"] == ["org.example.team=images", "mine=1"]
    assert config["exposed_ports"] == ["8080/tcp"]
    assert config["image_id"].startswith("sha256:")
    daemon.ctl("rm", "configured")
    # --entrypoint replaces Entrypoint and drops Cmd.
    r = daemon.ctl("run", "--rm", "--entrypoint", "/bin/echo", ref, "a", "b")
    assert r.stdout == "a b\n"
    # The second layer's whiteout hides /bin/vi of the first.
    r = daemon.ctl("run", "--rm", "-u", "0", ref, "sh", "-c", "ls /bin/vi; ls /bin/sh", check=False)
    assert "/bin/sh" in r.stdout and "/bin/vi" not in r.stdout

    # Pulled again: the manifest is read, no blob is fetched.
    again = daemon.ctl("pull", ref)
    assert "Already exists" in again.stdout
    assert again.stdout.splitlines()[-2] == f"Status: Image is up to date for {ref}"
    assert registry.requests("/blobs/") == blobs

    images = _stored(daemon)
    assert [i["repo_tags"] for i in images] == [[ref]]
    assert images[0]["size"] > 0
    listing = _table(daemon)
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == [f"{registry.host}/tools/box", "v1", images[0]["id"][7:19]]
    # As the docker CLI: --digests, --no-trunc, and a repository known only by a digest.
    digest = images[0]["repo_digests"][0].partition("@")[2]
    daemon.ctl("tag", ref, "other:1")
    tags = json.loads(daemon.ctl("image", "inspect", "other:1").stdout)[0]["RepoTags"]
    assert sorted(tags) == sorted([ref, "other:1"])  # Docker's familiar names
    shown = daemon.ctl("image", "inspect", "-f", "{{.Id}} {{json .RepoTags}}", "other:1").stdout
    assert shown == daemon.ctl("inspect", "-f", "{{.Id}} {{json .RepoTags}}", "other:1").stdout
    assert shown.startswith(images[0]["id"] + " [") and '"other:1"' in shown
    listing = _table(daemon, "--digests", "--no-trunc")
    assert listing[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[:4] for line in listing[1:]) == [
        [f"{registry.host}/tools/box", "v1", digest, images[0]["id"]],
        ["other", "1", "<none>", images[0]["id"]],
    ]
    daemon.ctl("rmi", ref)
    assert _table(daemon)[1].split()[:2] == ["other", "1"]
    daemon.ctl("rmi", "other:1")
    daemon.ctl("pull", f"{registry.host}/tools/box@{digest}")
    assert _table(daemon)[1].split()[:2] == [
        f"{registry.host}/tools/box",
        "<none>",
    ]
    daemon.ctl("pull", ref)
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
    assert r.returncode == 1 and "(must force) - container " in r.stderr
    daemon.ctl("tag", ref, "other:1")
    assert daemon.ctl("rmi", "other:1").stdout == "Untagged: other:1\n"  # as Docker shows it
    daemon.ctl("rm", "user")
    r = daemon.ctl("rmi", ref)
    assert f"Untagged: {ref}" in r.stdout and "Deleted: sha256:" in r.stdout
    assert os.listdir(layers) == []
    assert os.listdir(daemon.root / "images" / "blobs" / "sha256") == []  # nothing kept
    assert _stored(daemon) == []


def test_rmi_force_of_an_image_in_use_as_docker_does(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    """A stopped container's image goes with ``rmi -f`` (the container keeps working, its
    layers stay until it is removed); a running container's image is never deleted: by id
    the removal is refused, by tag only the tag goes."""
    push(layout, "v1", registry, "rm/box:v1")
    ref = f"{registry.host}/rm/box:v1"
    daemon.ctl("pull", ref)
    image_id = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]["Id"]
    short = image_id[7:19]
    cid = daemon.ctl("create", "--name", "stopped", ref).stdout.strip()
    r = daemon.ctl("rmi", ref, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        f'unable to remove repository reference "{ref}" (must force) - container '
        f"{cid[:12]} is using its referenced image {short}"
    )
    r = daemon.ctl("rmi", image_id, check=False)
    assert r.returncode == 1
    assert f"unable to delete {short} (must be forced) - image is being used by stopped" in r.stderr
    daemon.ctl("run", "-d", "--name", "live", ref, "sleep", "1000")
    for target in (image_id, short):
        r = daemon.ctl("rmi", "-f", target, check=False)
        assert r.returncode == 1
        assert f"unable to delete {short} (cannot be forced) - image is being used by running" in (
            r.stderr
        )
    daemon.ctl("rm", "-f", "live")

    (digested,) = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]["RepoDigests"]
    r = daemon.ctl("rmi", "-f", ref)  # the repository's digest goes with its last tag
    assert r.stdout == f"Untagged: {ref}\nUntagged: {digested}\nDeleted: {image_id}\n"
    assert _stored(daemon) == []
    assert daemon.ctl("image", "inspect", image_id, check=False).returncode == 1
    assert daemon.ctl("start", "-a", "stopped").stdout.endswith("hello from the second layer\n")
    layers = daemon.root / "images" / "l"
    assert len(os.listdir(layers)) == 2
    daemon.ctl("rm", "stopped")
    deadline = time.monotonic() + 60  # the layers go in the background, after the container
    while os.listdir(layers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(layers) == []

    # Pulled again while retired (a stopped container still used it): the image is the
    # pull's now, and the container's removal does not take it along.
    daemon.ctl("create", "--name", "stopped", ref)
    daemon.ctl("rmi", "-f", ref)
    daemon.ctl("pull", ref)
    daemon.ctl("rm", "stopped")
    retired = daemon.root / "images" / "retired"
    while os.listdir(retired) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [i["id"] for i in _stored(daemon)] == [image_id]
    assert daemon.ctl("run", "--rm", "--pull", "never", ref).stdout.endswith("second layer\n")
    assert len(os.listdir(layers)) == 2
    daemon.ctl("rmi", ref)

    # By tag with a running container: only the tag goes; the image stays, untagged.
    daemon.ctl("pull", ref)
    daemon.ctl("run", "-d", "--name", "live", ref, "sleep", "1000")
    assert daemon.ctl("rmi", "-f", ref).stdout == f"Untagged: {ref}\nUntagged: {digested}\n"
    images = _stored(daemon)
    assert [(i["id"], i["repo_tags"]) for i in images] == [(image_id, [])]
    daemon.ctl("rm", "-f", "live")
    assert daemon.ctl("rmi", short).stdout.startswith(f"Deleted: {image_id}\n")


def test_foreign_layers_come_from_the_registry_and_artifacts_are_refused(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    """Manifests pushed by hand (plain HTTP PUTs).  Foreign (non-distributable) layers
    the registry holds are pulled as any, as Docker's pull on Linux and OCI 1.1 take
    them; one it does not hold (a Windows base layer, with urls elsewhere) fails the pull
    naming it, its urls never fetched.  An OCI artifact whose config is not an image config
    fails naming the media type.  A failed pull fetches no layer and keeps nothing."""
    push(layout, "v1", registry, "plain/box:v1")
    plain = manifest_of(registry, "plain/box", "v1")
    layers: list[dict[str, Any]] = plain["layers"]  # type: ignore[assignment]
    kinds = ["application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
             "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"]  # fmt: skip
    for layer, kind in zip(layers, kinds, strict=True):
        put_blob(registry, "foreign/box", registry.blob_path(layer["digest"]).read_bytes())
        layer.update(mediaType=kind, urls=["https://example.invalid/layer.tar.gz"])
    config: dict[str, Any] = plain["config"]  # type: ignore[assignment]
    put_blob(registry, "foreign/box", registry.blob_path(config["digest"]).read_bytes())
    plain["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    put_manifest(registry, "foreign/box", "held", plain)
    held = f"{registry.host}/foreign/box:held"
    ran = daemon.ctl("run", "--rm", "-u", "0", held, "cat", "/work/hello.txt")
    assert ran.stdout == "hello from the second layer\n"
    daemon.ctl("rmi", held)

    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "cd" * 32]},
        }
    ).encode()
    put_manifest(
        registry,
        "foreign/box",
        "1",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": put_blob(registry, "foreign/box", image_config),
                "size": len(image_config),
            },
            "layers": [
                {
                    "mediaType": kinds[1],
                    "digest": "sha256:" + "ab" * 32,
                    "size": 1000,
                    "urls": ["https://example.invalid/base.tar.gz"],
                }
            ],
        },
    )
    blobs = registry.requests("/blobs/")
    r = daemon.ctl("pull", f"{registry.host}/foreign/box:1", check=False)
    assert r.returncode == 1
    assert (
        f"blob sha256:{'ab' * 32} not found: blob unknown to registry: it is a foreign "
        "(non-distributable) layer, which boxd fetches from the registry only, never from "
        "the manifest's urls"
    ) in r.stderr

    artifact = "application/vnd.example.model.config.v1+json"
    data = b"not an image"
    weights = put_blob(registry, "artifact/thing", data)
    put_manifest(
        registry,
        "artifact/thing",
        "1",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": artifact,
                "digest": put_blob(registry, "artifact/thing", b"{}"),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.example.model.weights.v1",
                    "digest": weights,
                    "size": len(data),
                }
            ],
        },
    )
    r = daemon.ctl("pull", f"{registry.host}/artifact/thing:1", check=False)
    assert r.returncode == 1
    assert f"is not a container image: its config has media type '{artifact}'" in r.stderr
    assert registry.requests("/blobs/") == blobs + 2  # its config, the missing layer
    assert registry.requests(weights) == 0
    assert _stored(daemon) == []
    images = daemon.root / "images"
    assert os.listdir(images / "l") == [] and os.listdir(images / "tmp") == []


def test_an_image_for_another_operating_system_is_refused_before_its_layers(
    daemon: Daemon, registry: Registry
) -> None:
    """A single-platform image whose config says ``windows``: refused in Docker's words
    once its config is read, no layer fetched, nothing kept."""
    layer = b"a Windows layer, never fetched"
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "windows",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "cd" * 32]},
        }
    ).encode()
    digest = put_blob(registry, "win/box", layer)
    put_manifest(
        registry,
        "win/box",
        "1",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": put_blob(registry, "win/box", config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": len(layer),
                }
            ],
        },
    )
    r = daemon.ctl("pull", f"{registry.host}/win/box:1", check=False)
    assert (r.returncode, r.stderr) == (
        1,
        'boxctl: image operating system "windows" cannot be used on this platform: '
        "operating system is not supported\n",
    )
    assert registry.requests(digest) == 0
    assert _stored(daemon) == []
    assert os.listdir(daemon.root / "images" / "blobs" / "sha256") == []


def test_a_terminal_shows_each_layers_progress_in_place(
    daemon: Daemon, registry: Registry, layout: Path, tmux: Tmux
) -> None:
    """``pull`` in a real terminal (tmux): one line per layer, rewritten in place (a
    download's bar while it runs, caught mid-layer by a stalling proxy), then Docker's
    summary.  A pipe gets one line per finished layer."""
    push(layout, "v1", registry, "tty/box:v1")
    layers = _layer_blobs(registry, "tty/box")
    short = [d[7:19] for d in layers]
    with stalling_proxy(registry, layers[-1].removeprefix("sha256:")) as proxy:
        ref = f"{proxy.host}/tty/box:v1"
        tmux.start(_boxctl(daemon, "pull", ref))
        tmux("set-option", "-t", "t", "remain-on-exit", "on")  # the screen, once it ends
        assert proxy.stalled.wait(60), "the pull never reached the last layer"
        screen = tmux.wait_for(lambda s: f"{short[-1]}: Downloading [" in s)
        bar = next(line for line in screen.splitlines() if line.startswith(short[-1]))
        assert "=>" in bar and "/" in bar  # [=====>     ]  1.2MB/2.4MB
        proxy.release.set()
        assert tmux.wait_exit(60) == 0
        # With the history: the dead pane's notice scrolls the screen by a line.
        screen = tmux("capture-pane", "-p", "-S", "-", "-t", "t")
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[: len(short) + 1] == [
        "v1: Pulling from tty/box",
        *(f"{s}: Pull complete" for s in short),
    ]
    assert lines[len(short) + 1].startswith("Digest: sha256:") and ref in lines[len(short) + 3 :]

    daemon.ctl("rmi", ref)
    r = daemon.ctl("pull", f"{registry.host}/tty/box:v1")  # a pipe: as each one ends
    done = sorted(r.stdout.splitlines()[1 : len(short) + 1])
    assert done == sorted(f"{s}: Pull complete" for s in short)
    assert "\x1b" not in r.stdout


def test_run_pulls_a_missing_image(daemon: Daemon, registry: Registry, layout: Path) -> None:
    push(layout, "v1", registry, "box:v1")
    r = daemon.ctl("run", "--rm", f"{registry.host}/box:v1", "echo", "pulled")
    assert r.stdout == "pulled\n"
    assert "Unable to find image" in r.stderr
    assert f"Status: Downloaded newer image for {registry.host}/box:v1" in r.stderr
    blobs = registry.requests("/blobs/")
    r = daemon.ctl("run", "--rm", f"{registry.host}/box:v1", "true")
    assert "Unable to find image" not in r.stderr
    r = daemon.ctl("run", "--rm", "--pull", "always", f"{registry.host}/box:v1", "true")
    assert f"Status: Image is up to date for {registry.host}/box:v1" in r.stderr
    assert registry.manifests() == 2  # looked up again by --pull always only
    assert registry.requests("/blobs/") == blobs
    r = daemon.ctl(
        "run", "--rm", "--pull", "never", f"{registry.host}/box:nope", "true", check=False
    )
    assert r.returncode == 125 and "No such image" in r.stderr
    # -q/--quiet (Docker's): the pull shows nothing (an unknown option before).
    daemon.ctl("rmi", f"{registry.host}/box:v1")
    r = daemon.ctl("run", "--rm", "-q", f"{registry.host}/box:v1", "echo", "quietly")
    assert (r.stdout, r.stderr) == ("quietly\n", "")
    r = daemon.ctl("create", "--quiet", "--pull", "always", f"{registry.host}/box:v1")
    assert r.stderr == ""
    daemon.ctl("rm", r.stdout.strip())


def test_a_tampered_layer_fails_the_pull_and_keeps_nothing(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "box:v1")
    for digest in _layer_blobs(registry, "box"):  # every layer: they fail at once
        blob = registry.blob_path(digest)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    r = daemon.ctl("pull", f"{registry.host}/box:v1", check=False)
    assert r.returncode == 1
    assert "does not match its content" in r.stderr
    assert _stored(daemon) == []
    images = daemon.root / "images"
    assert os.listdir(images / "tmp") == []
    assert os.listdir(images / "meta") == []
    assert not (images / "blobs" / "sha256" / blob.parent.name).exists()


def test_a_download_cut_short_goes_on_from_the_byte_it_reached(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    """A registry that vanishes mid-layer (its connection shut down): the pull goes on
    with a range request from the byte it reached, as containerd's fetcher does (a
    server that ignores the range: the bytes it sends again are dropped).  One that cuts
    every try short fails the download, which is tried again 5 s later, as Docker's
    pull (``Retrying in 5 seconds``); with ``--max-download-attempts 1`` the pull then
    fails naming the layer and how far it came, keeps nothing, and a pull once the
    registry is back completes."""
    push(layout, "v1", registry, "cut/box:v1")
    first = _layer_blobs(registry, "cut/box")[0]
    size = registry.blob_path(first).stat().st_size
    with cutting_proxy(registry, first.removeprefix("sha256:"), cuts=1) as proxy:
        ref = f"{proxy.host}/cut/box:v1"
        daemon.ctl("pull", ref)
    assert proxy.ranges == [None, f"bytes={size // 2}-"]
    ran = daemon.ctl("run", "--rm", "-u", "0", ref, "cat", "/work/hello.txt")
    assert ran.stdout == "hello from the second layer\n"
    daemon.ctl("rmi", ref)
    # A server that ignores the range sends the whole blob again: what came is skipped.
    with cutting_proxy(registry, first.removeprefix("sha256:"), 1, ignore_ranges=True) as proxy:
        ref = f"{proxy.host}/cut/box:v1"
        daemon.ctl("pull", ref)
    assert proxy.ranges == [None, f"bytes={size // 2}-"]
    assert daemon.ctl("run", "--rm", ref, "cat", "/work/hello.txt").stdout.startswith("hello")
    daemon.ctl("rmi", ref)
    resumed = [f"bytes={size // 2}-"] * 3
    with cutting_proxy(registry, first.removeprefix("sha256:"), cuts=4) as proxy:
        ref = f"{proxy.host}/cut/box:v1"
        pulled = docker(daemon, "pull", ref) if shutil.which("docker") else None
        if pulled is None:
            daemon.ctl("pull", ref)
    assert proxy.ranges == [None, *resumed, None]  # tried again, whole
    if pulled is not None:
        assert pulled.returncode == 0 and f"{first[7:19]}: Retrying in 5 seconds" in pulled.stdout
    daemon.ctl("rmi", ref)
    daemon.stop()
    daemon.start("--max-download-attempts", "1")
    with cutting_proxy(registry, first.removeprefix("sha256:"), cuts=10) as proxy:
        r = daemon.ctl("pull", f"{proxy.host}/cut/box:v1", check=False)
    assert r.returncode == 1
    assert f"fetching {first}: " in r.stderr
    assert (
        f"(after {size // 2} of {size} bytes, 3 times) (download failed after 1 attempt)"
    ) in r.stderr
    assert proxy.ranges == [None, *resumed]
    assert _stored(daemon) == []
    images = daemon.root / "images"
    assert os.listdir(images / "tmp") == [] and os.listdir(images / "meta") == []
    ref = f"{registry.host}/cut/box:v1"
    daemon.ctl("pull", ref)
    ran = daemon.ctl("run", "--rm", "-u", "0", ref, "cat", "/work/hello.txt")
    assert ran.stdout == "hello from the second layer\n"


def test_a_missing_tag_or_digest_is_named_in_dockers_words(
    daemon: Daemon, registry: Registry, layout: Path
) -> None:
    """The registry's 404 (MANIFEST_UNKNOWN; NAME_UNKNOWN for the tags of ``pull -a``) as
    Docker's pull words it, through boxctl (exit 1) and the Engine API (404: the docker
    CLI's run pulls, then says it)."""
    push(layout, "v1", registry, "there/box:v1")
    missing = [f"{registry.host}/there/box:nope", f"{registry.host}/there/box@sha256:{'0' * 64}"]
    for ref in missing:
        r = daemon.ctl("pull", ref, check=False)
        assert (r.returncode, r.stderr) == (
            1,
            f"boxctl: manifest for {ref} not found: manifest unknown: manifest unknown\n",
        )
    r = daemon.ctl("pull", "--all-tags", f"{registry.host}/nowhere/box", check=False)
    assert (r.returncode, r.stderr) == (
        1,
        f"boxctl: repository {registry.host}/nowhere/box not found: name unknown: repository "
        "name not known to registry\n",
    )
    if shutil.which("docker"):
        r = docker(daemon, "run", "--rm", missing[0], "true")
        assert r.returncode == 125
        assert (
            f"Error response from daemon: manifest for {missing[0]} not found: "
            "manifest unknown: manifest unknown"
        ) in r.stderr
    assert _stored(daemon) == []


def test_a_plain_http_registry_not_on_loopback_is_named_and_allowed_by_option(
    tmp_path: Path, layout: Path
) -> None:
    """A registry on another address of this (the test session's own) network namespace,
    speaking plain HTTP: a pull tries HTTPS, as Docker's does, and says why it failed and
    what allows it (its TLS error said nothing); with ``--insecure-registry`` it pulls."""
    address = "198.18.0.1"  # RFC 2544's benchmarking range, on this namespace's lo
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    try:
        with (
            running_registry(tmp_path, address=address) as registry,
            running_daemon(tmp_path / "daemon") as daemon,
        ):
            push(layout, "v1", registry, "far/box:v1")
            ref = f"{registry.host}/far/box:v1"
            r = daemon.ctl("pull", ref, check=False)
            assert (r.returncode, r.stderr) == (
                1,
                f"boxctl: cannot reach registry {registry.host}: it did not answer in TLS (a "
                "plain HTTP registry? boxd speaks plain HTTP only to loopback registries and "
                "those given with --insecure-registry)\n",
            )
            daemon.stop()
            daemon.start("--insecure-registry", registry.host)
            daemon.ctl("pull", ref)
            assert daemon.ctl("run", "--rm", ref, "cat", "/work/hello.txt").stdout == (
                "hello from the second layer\n"
            )
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=True)


def test_an_image_without_layers_makes_containers_as_dockers_does(
    daemon: Daemon, registry: Registry, tmp_path: Path, busybox_root: Path
) -> None:
    """An image of no layer (FROM scratch and metadata only) from a registry: its
    containers get an empty root, as Docker's, so one is created, its start says what it
    cannot exec (exit 127), and it can be filled by cp and committed into an image that
    runs."""
    write_layout(tmp_path / "layout", [])
    ref = f"{registry.host}/empty/box:1"
    _skopeo_copy("--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:1", f"docker://{ref}")
    daemon.ctl("pull", ref)
    r = daemon.ctl("run", "--rm", ref, check=False)  # its Cmd: /bin/sh
    assert r.returncode == 127 and "exec /bin/sh: No such file or directory" in r.stderr
    daemon.ctl("create", "--name", "filled", ref, "/busybox", "echo", "filled")
    daemon.ctl("cp", str(busybox_root / "bin" / "busybox"), "filled:/busybox")
    assert daemon.ctl("start", "-a", "filled").stdout == "filled\n"
    daemon.ctl("commit", "filled", "filled:1")
    daemon.ctl("rm", "filled")
    assert daemon.ctl("run", "--rm", "filled:1").stdout == "filled\n"
    daemon.ctl("rmi", "filled:1", ref)


def test_bad_references_and_unknown_registries(daemon: Daemon) -> None:
    r = daemon.ctl("pull", "Busybox", check=False)
    assert r.returncode == 1 and "must be lowercase ('Busybox')" in r.stderr
    r = daemon.ctl("pull", "127.0.0.1:1/x", check=False)  # docker pull: 1, run: 125
    assert r.returncode == 1 and r.stderr == (
        "boxctl: cannot reach registry 127.0.0.1:1: all attempts to connect to 127.0.0.1:1 "
        "failed (Connection refused)\n"
    )
    assert r.stdout == ""  # no "Pulling from" for what was not found
    r = daemon.ctl("run", "--rm", "127.0.0.1:1/x", check=False)
    assert r.returncode == 125 and "cannot reach registry 127.0.0.1:1" in r.stderr
    r = daemon.ctl("run", "--rm", "--pull", "never", "nothing-here", check=False)
    assert r.returncode == 125 and "No such image: nothing-here" in r.stderr
    r = daemon.ctl("rmi", "default", check=False)  # not stored, but not unknown either
    assert r.returncode == 1 and "the image 'default' is built in" in r.stderr, r.stderr


def test_files_that_cannot_be_read_or_written_are_one_line(
    tmp_path: Path, daemon: Daemon, busybox_root: Path
) -> None:
    """As the docker CLI: ``-o`` is written beside itself and renamed at the end, so a
    failed save leaves no file (nor the old one changed)."""
    missing = tmp_path / "missing"
    for args, words in [
        (["load", "-i", str(missing)], f"boxctl load: open {missing}: No such file"),
        (["import", str(missing), "x:1"], f"boxctl import: open {missing}: No such file"),
        (
            ["save", "-o", f"{missing}/x.tar", "default"],
            f"boxctl save: invalid output path {missing}/x.tar: No such file",
        ),
        (
            ["export", "-o", f"{missing}/x.tar", "nothing"],
            f"boxctl export: invalid output path {missing}/x.tar: No such file",
        ),
    ]:
        r = daemon.ctl(*args, check=False)
        assert (r.returncode, r.stderr.count("\n")) == (1, 1) and words in r.stderr, r.stderr
    files = tmp_path / "files"
    files.mkdir()
    out = files / "out.tar"
    out.write_bytes(b"old")
    r = daemon.ctl("save", "-o", str(out), "nothing-here", check=False)
    assert r.returncode == 1 and "No such image: nothing-here" in r.stderr
    assert os.listdir(files) == ["out.tar"] and out.read_bytes() == b"old"
    tarball = tmp_path / "rootfs.tar"
    shutil.make_archive(str(tarball.with_suffix("")), "tar", busybox_root)
    daemon.ctl("import", str(tarball), "saved:1")
    daemon.ctl("save", "-o", str(out), "saved:1")
    assert os.listdir(files) == ["out.tar"]
    daemon.ctl("rmi", "saved:1")
    assert daemon.ctl("load", "-i", str(out)).stdout == "Loaded image: saved:1\n"


def test_credentials_file_is_private(daemon: Daemon, registry: Registry) -> None:
    daemon.ctl("login", "-u", "me", "--password-stdin", registry.host, input=b"s3cret\n")
    auth = daemon.root / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert registry.host in json.loads(auth.read_text())["auths"]
    daemon.ctl("logout", registry.host)
    assert registry.host not in json.loads(auth.read_text())["auths"]


def test_basic_auth_with_login(tmp_path: Path, daemon: Daemon, layout: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "me", "pw-basic")
    with running_registry(tmp_path, htpasswd=htpasswd) as registry:
        push(layout, "v1", registry, "box:v1", creds="me:pw-basic")
        ref = f"{registry.host}/box:v1"
        r = daemon.ctl("pull", ref, check=False)
        assert r.returncode == 1 and f"requires a login (boxctl login {registry.host})" in r.stderr
        r = daemon.ctl("login", "-u", "me", "-p", "wrong", registry.host, check=False)
        assert r.returncode == 1 and "refused the credentials" in r.stderr  # docker login's 1
        daemon.ctl("login", "-u", "me", "--password-stdin", registry.host, input=b"pw-basic\n")
        assert daemon.ctl("run", "--rm", ref, "echo", "in").stdout == "in\n"
        assert "pw-basic" not in (daemon.root / "auth.json").read_text()
        daemon.ctl("logout", registry.host)
        daemon.ctl("rmi", ref)
        assert daemon.ctl("pull", ref, check=False).returncode == 1


def test_bearer_token_auth(tmp_path: Path, daemon: Daemon, layout: Path) -> None:
    with (
        running_token_server(tmp_path, "me", "pw-token") as tokens,
        running_registry(tmp_path, token=tokens) as registry,
    ):
        push(layout, "v1", registry, "team/box:v1", creds="me:pw-token")
        ref = f"{registry.host}/team/box:v1"
        tokens.asked.clear()
        r = daemon.ctl("pull", ref, check=False)
        assert r.returncode == 1 and "refused an anonymous pull" in r.stderr
        assert tokens.asked == [
            {"scope": "repository:team/box:pull", "service": tokens.service, "auth": "no"}
        ]
        daemon.ctl("login", "-u", "me", "-p", "pw-token", registry.host)
        daemon.ctl("pull", ref)
        assert tokens.asked[-1] == {
            "scope": "repository:team/box:pull",
            "service": tokens.service,
            "auth": "yes",
        }
        # A token that stops working during a pull (expired) is renewed once.
        daemon.ctl("rmi", ref)
        tokens.useless = 1
        asked = len(tokens.asked)
        daemon.ctl("pull", ref)
        assert len(tokens.asked) == asked + 2  # the useless one, then its renewal
        # Anonymous tokens, where the token server gives them.
        daemon.ctl("logout", registry.host)
        daemon.ctl("rmi", ref)
        tokens.anonymous = True
        assert daemon.ctl("run", "--rm", ref, "echo", "anon").stdout == "anon\n"


def test_commit_save_rmi_load_round_trip(
    tmp_path: Path, daemon: Daemon, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "box:v1")
    ref = f"{registry.host}/box:v1"
    daemon.ctl("pull", ref)
    daemon.ctl(
        "run", "--name", "changer", "-u", "0", ref,
        "sh", "-c", "echo new > /work/new.txt; rm /work/hello.txt; mkdir -p /opt/x; rm -r /root",
    )  # fmt: skip
    image_id = daemon.ctl("commit", "-m", "my change", "changer", "mine/changed:1").stdout.strip()
    assert image_id.startswith("sha256:")
    daemon.ctl("rm", "changer")
    check = "cat /work/new.txt; ls /work; ls -d /opt/x; ls /root 2>&1; ls /etc; id -u"
    before = daemon.ctl("run", "--rm", "mine/changed:1", "sh", "-c", check).stdout
    # The container's configuration (its -u 0 here) is the new image's, as in Docker.
    assert before == (
        "new\nnew.txt\n/opt/x\nls: /root: No such file or directory\n"
        "group\nhostname\nhosts\npasswd\nresolv.conf\n0\n"  # resolv.conf: its network's
    )
    history = json.loads(daemon.ctl("history", "--format", "json", "mine/changed:1").stdout)
    # As Docker's: the container's command made it; the message is the comment.
    assert history[0]["created_by"].startswith("sh -c echo new > /work/new.txt;")
    assert history[0]["comment"] == "my change"

    archive = tmp_path / "saved.tar"
    daemon.ctl("save", "-o", str(archive), "mine/changed:1", ref, "mine/changed:1")
    # The config's file carries the image's creation time, as in dockerd's archives.
    created = daemon.ctl("image", "inspect", "-f", "{{.Created}}", "mine/changed:1").stdout
    when = datetime.datetime.fromisoformat(created.strip()[:19] + "+00:00").timestamp()
    with tarfile.open(archive) as tar:
        assert tar.getmember(f"blobs/sha256/{image_id[7:]}").mtime == int(when)
    daemon.ctl("rmi", "mine/changed:1", ref)
    assert _stored(daemon) == []
    r = daemon.ctl("load", "-i", str(archive))
    assert sorted(r.stdout.splitlines()) == sorted(
        [f"Loaded image: {ref}", "Loaded image: mine/changed:1"]
    )
    after = daemon.ctl("run", "--rm", "mine/changed:1", "sh", "-c", check).stdout
    assert after == before
    assert json.loads(daemon.ctl("image", "inspect", "mine/changed:1").stdout)[0]["Id"] == image_id

    # Which tags an archive names, as Docker's save: a repository alone, all of its tags
    # (of any image); an ID or NAME@DIGEST, none.
    daemon.ctl("tag", "mine/changed:1", "mine/changed:2")
    daemon.ctl("tag", ref, "mine/changed:other")
    daemon.ctl("tag", "mine/changed:1", "else:1")

    def saved_tags(*names: str) -> list[str]:
        daemon.ctl("save", "-o", str(tmp_path / "named.tar"), *names)
        with tarfile.open(tmp_path / "named.tar") as tar:
            manifest = tar.extractfile("manifest.json")
            assert manifest is not None
            entries = json.loads(manifest.read())
        return sorted(t for entry in entries for t in entry["RepoTags"])

    assert saved_tags("mine/changed") == ["mine/changed:1", "mine/changed:2", "mine/changed:other"]
    assert saved_tags("mine/changed:2") == ["mine/changed:2"]
    assert saved_tags(image_id[7:19]) == []
    daemon.ctl("pull", ref)  # a loaded image has no digest of a registry
    pulled = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]
    assert saved_tags(pulled["RepoDigests"][0]) == []
    daemon.ctl("rmi", "mine/changed:2", "mine/changed:other", "else:1")

    # The archive is also a Docker archive and an OCI layout that skopeo reads.
    skopeo_dir = tmp_path / "from-skopeo"

    _skopeo_copy(f"docker-archive:{archive}:mine/changed:1", f"oci:{skopeo_dir}:x")
    _skopeo_copy(f"oci-archive:{archive}:1", f"dir:{tmp_path / 'd'}")


def test_load_archives_written_by_skopeo(tmp_path: Path, daemon: Daemon, layout: Path) -> None:

    docker_archive = tmp_path / "docker.tar"
    oci_archive = tmp_path / "oci.tar"
    _skopeo_copy(f"oci:{layout}:v1", f"docker-archive:{docker_archive}:x/y:1")
    _skopeo_copy(f"oci:{layout}:v1", f"oci-archive:{oci_archive}:z:2")
    assert daemon.ctl("load", "-i", str(docker_archive)).stdout == "Loaded image: x/y:1\n"
    assert daemon.ctl("run", "--rm", "x/y:1").stdout.startswith("hi from /work")
    # From stdin, as `boxctl load < FILE`.
    r = subprocess.run(
        f"{daemon_cli(daemon)} load < {oci_archive}", shell=True, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Loaded image: z:2\n"


def test_import_a_root_filesystem_tarball(
    tmp_path: Path, daemon: Daemon, busybox_root: Path
) -> None:

    tarball = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-C", str(busybox_root), "-czf", str(tarball), "."], check=True)
    image_id = daemon.ctl("import", str(tarball), "imported:1").stdout.strip()
    assert image_id.startswith("sha256:")
    assert daemon.ctl("run", "--rm", "imported:1", "echo", "ok").stdout == "ok\n"
    r = daemon.ctl("run", "--rm", "imported:1", check=False)
    assert r.returncode != 0 and "has no Cmd or Entrypoint" in r.stderr
    # prune: untagged images go; -a takes tagged ones no container uses.
    daemon.ctl("tag", "imported:1", "imported:2")
    daemon.ctl("rmi", "imported:1")
    assert daemon.ctl("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    r = daemon.ctl("image", "prune", "-a", "-f")
    assert "untagged: imported:2" in r.stdout
    assert _stored(daemon) == []
    daemon.ctl("import", str(tarball), "again:1")
    pruned = daemon.ctl("system", "prune", "-a", "-f").stdout
    assert "untagged: again:1\n" in pruned
    assert pruned.splitlines()[-1] != "Total reclaimed space: 0B"  # the image's layer


def test_compressed_archives_and_tarballs_as_docker_takes_them(
    tmp_path: Path, daemon: Daemon, busybox_root: Path
) -> None:
    """``docker save | xz``, ``| zstd``..., and a root filesystem as .tar.xz or .tar.bz2:
    load and import take gzip, bzip2, xz and zstd, as Docker's; what is none of them is
    one line and exit 1."""
    import bz2
    import lzma

    import zstandard

    plain = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(plain), "."], check=True)
    data = plain.read_bytes()
    for name, packed in (("xz", lzma.compress(data)), ("bz2", bz2.compress(data))):
        (tmp_path / f"rootfs.tar.{name}").write_bytes(packed)
        daemon.ctl("import", str(tmp_path / f"rootfs.tar.{name}"), f"imp:{name}")
    layers = [
        json.loads(daemon.ctl("image", "inspect", f"imp:{name}").stdout)[0]["RootFS"]["Layers"]
        for name in ("xz", "bz2")
    ]
    assert layers[0] == layers[1]  # the same plain layer
    assert daemon.ctl("run", "--rm", "imp:xz", "echo", "ok").stdout == "ok\n"
    saved = tmp_path / "saved.tar"
    daemon.ctl("save", "-o", str(saved), "imp:xz")
    daemon.ctl("rmi", "imp:xz", "imp:bz2")
    for packed in (
        zstandard.ZstdCompressor().compress(saved.read_bytes()),
        lzma.compress(saved.read_bytes()),
    ):
        (tmp_path / "packed").write_bytes(packed)
        assert daemon.ctl("load", "-i", str(tmp_path / "packed")).stdout == "Loaded image: imp:xz\n"
    for junk, verbs in (
        (b"not an archive\n", (("load", "-i"), ("import",))),
        (b"", (("load", "-i"),)),
    ):
        (tmp_path / "packed").write_bytes(junk)
        for verb in verbs:
            r = daemon.ctl(*verb, str(tmp_path / "packed"), check=False)
            assert (r.returncode, r.stderr.count("\n")) == (1, 1), r.stderr
    # No bytes at all import as an image of one empty layer, as dockerd makes it.
    daemon.ctl("import", str(tmp_path / "packed"), "imp:empty")
    shown = daemon.ctl("inspect", "-f", "{{len .RootFS.Layers}}", "imp:empty").stdout
    assert shown == "1\n"
    daemon.ctl("rmi", "imp:empty")
    (tmp_path / "packed").write_bytes(b"not an archive\n")
    r = daemon.ctl("load", "-i", str(tmp_path / "packed"), check=False)
    assert "not a tar archive (plain, or compressed with gzip, bzip2, xz or zstd)" in r.stderr
    daemon.ctl("rmi", "imp:xz")


def test_commit_and_import_apply_changes(
    tmp_path: Path, daemon: Daemon, busybox_root: Path
) -> None:

    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    changes = [
        "ENV GREETING=hi WHO=world",
        "WORKDIR /srv",
        'CMD ["sh", "-c", "echo $GREETING $WHO; pwd; id -u"]',
        "USER 7:7",
        "EXPOSE 8080 53/udp",
        'LABEL team="the a team"',
        "STOPSIGNAL SIGINT",
    ]
    flags = [word for change in changes for word in ("-c", change)]
    daemon.ctl("import", *flags, "-m", "from busybox", str(tarball), "bb:1")
    assert daemon.ctl("run", "--rm", "bb:1").stdout == "hi world\n/srv\n7\n"
    (image,) = json.loads(daemon.ctl("image", "inspect", "bb:1").stdout)
    assert image["Comment"] == "from busybox"
    config = image["Config"]
    assert config["Env"] == ["GREETING=hi", "WHO=world"]
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert (config["Labels"], config["StopSignal"]) == ({"team": "the a team"}, "SIGINT")

    # Commit: the changes go over the container's configuration; a running container is
    # frozen while its files are read, and runs on after.
    daemon.ctl("run", "-d", "--name", "c", "-u", "0", "bb:1", "sleep", "1000")
    daemon.ctl("exec", "c", "sh", "-c", "echo made > /made")
    daemon.ctl(
        "commit", "-c", "ENV WHO=there", "-c", "CMD cat /made; echo $GREETING $WHO",
        "-m", "made a file", "-a", "Me <me@example.com>", "c", "bb:2",
    )  # fmt: skip
    state = json.loads(daemon.ctl("inspect", "c").stdout)[0]["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    assert daemon.ctl("run", "--rm", "bb:2").stdout == "made\nhi there\n"
    (image,) = json.loads(daemon.ctl("image", "inspect", "bb:2").stdout)
    assert (image["Comment"], image["Author"]) == ("made a file", "Me <me@example.com>")
    (newest, *_) = json.loads(daemon.ctl("history", "--format", "json", "bb:2").stdout)
    assert newest["comment"] == "made a file" and newest["created_by"] == "sleep 1000"
    # Not frozen: the container's files as they are while it runs.  An ENTRYPOINT keeps a
    # CMD the changes gave before it, as in a Dockerfile's stage (moby's TestCommitChange).
    both = ("-c", 'CMD ["/bin/sh"]', "-c", 'ENTRYPOINT ["/bin/sh"]')
    daemon.ctl("commit", "--pause=false", *both, "c", "bb:3")
    shown = daemon.ctl("image", "inspect", "-f", "{{.Config.Entrypoint}} {{.Config.Cmd}}", "bb:3")
    assert shown.stdout == "[/bin/sh] [/bin/sh]\n"

    # A change that is not one, or a bad value, is refused by name; no image is made.
    r = daemon.ctl("commit", "-c", "RUN rm -rf /", "c", "bb:4", check=False)
    assert r.returncode != 0
    assert "invalid change 'RUN rm -rf /': RUN is not a valid change command" in r.stderr
    r = daemon.ctl("import", "-c", "EXPOSE 99999", str(tarball), "bb:4", check=False)
    assert r.returncode != 0
    assert "invalid change 'EXPOSE 99999': invalid port in EXPOSE: 99999" in r.stderr
    tags = _stored(daemon)
    assert not any("bb:4" in t for image in tags for t in image.get("repo_tags", ()))
    daemon.ctl("rm", "-f", "c")


def test_image_list_filters(tmp_path: Path, daemon: Daemon, busybox_root: Path) -> None:

    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    for name, label in (("old:1", "team=a"), ("mid:1", "team=b"), ("new:1", "other=x")):
        daemon.ctl("import", "-c", f"LABEL {label}", str(tarball), name)
        time.sleep(1.1)  # created a second apart: image times are in seconds

    def names(*args: str) -> list[str]:
        rows = json.loads(daemon.ctl("images", "--format", "json", *args).stdout)
        tags = [t.rpartition("/")[2] for row in rows for t in row["repo_tags"]]
        return [t for t in tags if t != "default:latest"]  # its time is the host's

    assert names() == ["new:1", "mid:1", "old:1"]
    # By the images' created time, as Docker's: old:1 loaded again is still the oldest.
    saved = tmp_path / "old.tar"
    daemon.ctl("save", "-o", str(saved), "old:1")
    daemon.ctl("rmi", "old:1")
    daemon.ctl("load", "-i", str(saved))
    assert names() == ["new:1", "mid:1", "old:1"]
    assert names("-f", "label=team") == ["mid:1", "old:1"]
    assert names("-f", "label=team=a") == ["old:1"]
    assert names("-f", "label=team", "-f", "label=other") == []  # every label given
    assert names("-f", "before=new:1") == ["mid:1", "old:1"]
    assert names("-f", "since=old:1", "-f", "label=team") == ["mid:1"]
    assert names("-f", "reference=mi*") == names("mid") == ["mid:1"]
    # As Docker's: only the names matched are shown; a host:port is part of the name;
    # "*" does not cross a "/".
    daemon.ctl("tag", "mid:1", "127.0.0.1:5000/team/mid:2")

    def tags(*args: str) -> list[str]:
        rows = json.loads(daemon.ctl("images", "--format", "json", *args).stdout)
        return [t for row in rows for t in row["repo_tags"] if t != "default:latest"]

    assert tags("mid") == ["docker.io/library/mid:1"]
    assert tags("127.0.0.1:5000/team/mid") == tags("-f", "reference=*/*/mid:*")
    assert tags("127.0.0.1:5000/team/mid") == ["127.0.0.1:5000/team/mid:2"]
    assert tags("-f", "reference=*/mid") == []
    daemon.ctl("rmi", "127.0.0.1:5000/team/mid:2")
    assert names("-f", "dangling=true") == []
    rows = json.loads(daemon.ctl("images", "--format", "json", "old").stdout)
    assert rows[0]["labels"] == {"team": "a"}
    # Bad filters are refused by name.
    for spec, words in (
        ("colour=red", "invalid filter 'colour'"),
        ("dangling=maybe", "invalid filter 'dangling=maybe'"),
        ("since=nope:1", "No such image: nope:1"),
        ("label", "invalid --filter 'label'"),
    ):
        r = daemon.ctl("images", "-f", spec, check=False)
        assert r.returncode != 0 and words in r.stderr, (spec, r.stderr)


def test_hostile_archive_leaves_no_image(tmp_path: Path, daemon: Daemon) -> None:
    import io
    import tarfile

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "evil.tar"
    archive.write_bytes(layer.getvalue())
    r = daemon.ctl("import", str(archive), "evil:1", check=False)
    assert r.returncode == 1 and "'../../escape' points outside the layer" in r.stderr
    assert _stored(daemon) == []
    images = daemon.root / "images"
    assert os.listdir(images / "l") == [] and os.listdir(images / "tmp") == []


def test_an_index_gives_the_hosts_platform(
    tmp_path: Path, daemon: Daemon, registry: Registry, layout: Path
) -> None:
    import platform
    import shutil

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    other = "arm64" if arch != "arm64" else "amd64"
    copy = tmp_path / "layout"
    shutil.copytree(layout, copy)
    add_index(copy, "multi", [("v1", f"linux/{other}"), ("v1", f"linux/{arch}")])
    _skopeo_copy(
        "--all", "--dest-tls-verify=false", f"oci:{copy}:multi", f"docker://{registry.host}/multi:1"
    )
    ref = f"{registry.host}/multi:1"
    r = daemon.ctl("pull", "--platform", "linux/s390x", ref, check=False)
    assert r.returncode == 1
    assert "no image for platform linux/s390x (the index has: linux/amd64, linux/arm64)" in r.stderr
    assert daemon.ctl("run", "--rm", ref, "echo", "mine").stdout == "mine\n"
    digest = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]["RepoDigests"][0]
    # The repo digest is the index's (what the tag points at), as Docker reports it.
    request = urllib.request.Request(
        f"http://{registry.host}/v2/multi/manifests/1",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert digest == f"{registry.host}/multi@{answer.headers['Docker-Content-Digest']}"


def test_pull_all_tags(daemon: Daemon, registry: Registry, layout: Path) -> None:
    """``pull -a``: every tag the registry lists, each shown as a pull (its heading and
    digest), then one status for the repository, as ``docker pull -a``; a tag with it
    is refused in Docker's words."""
    for tag in ("v1", "v2"):
        push(layout, "v1", registry, f"every/box:{tag}")
    name = f"{registry.host}/every/box"
    lines = daemon.ctl("pull", "-a", name).stdout.splitlines()
    assert [line for line in lines if "Pulling from" in line] == [
        "v1: Pulling from every/box",
        "v2: Pulling from every/box",
    ]
    assert lines[-2:] == [f"Status: Downloaded newer image for {name}", name]
    tags = sorted(tag for image in _stored(daemon) for tag in image["repo_tags"])
    assert tags == [f"{name}:v1", f"{name}:v2"]
    r = daemon.ctl("pull", "-a", f"{name}:v1", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: tag can't be used with --all-tags/-a\n")
    daemon.ctl("rmi", f"{name}:v1", f"{name}:v2")


def test_a_multi_platform_oci_archive_loads_the_hosts_image(
    tmp_path: Path, daemon: Daemon, layout: Path
) -> None:
    """``skopeo copy --all`` (as buildx's multi-platform OCI output) writes an archive whose
    index.json names an index: ``load`` takes the host's platform from it, as a pull does."""
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    other = "arm64" if arch != "arm64" else "amd64"
    copy = tmp_path / "layout"
    shutil.copytree(layout, copy)
    subprocess.run(
        ["umoci", "config", "--image", f"{copy}:v1", "--tag", "mine", "--config.label=which=host"],
        check=True,
    )
    add_index(copy, "multi", [("v1", f"linux/{other}"), ("mine", f"linux/{arch}")])
    archive = tmp_path / "multi.tar"
    _skopeo_copy("--all", f"oci:{copy}:multi", f"oci-archive:{archive}:multi/box:1")
    assert daemon.ctl("load", "-i", str(archive)).stdout == "Loaded image: multi/box:1\n"
    label = daemon.ctl("image", "inspect", "-f", "{{.Config.Labels.which}}", "multi/box:1")
    assert label.stdout == "host\n"
    assert daemon.ctl("run", "--rm", "multi/box:1", "cat", "/work/hello.txt").stdout
    daemon.ctl("rmi", "multi/box:1")


# security.capability of cap_net_raw+ep: VFS_CAP_REVISION_2 with the effective flag, and
# CAP_NET_RAW (13) permitted.
NET_RAW_EP = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)
# no_new_privs (boxd's default) would ignore file capabilities, as Docker's option does.
NNP_OFF = ("--security-opt", "no-new-privileges=false")


def _caps_image(tmp_path: Path, registry: Registry, busybox_root: Path) -> str:
    """busybox and a layer written by umoci with /caps/grep, busybox given cap_net_raw+ep
    (as setcap gives it), pushed with skopeo."""
    layer = tmp_path / "caps-layer"
    (layer / "caps").mkdir(parents=True)
    shutil.copy(busybox_root / "bin" / "busybox", layer / "caps" / "grep")
    os.setxattr(layer / "caps" / "grep", "security.capability", NET_RAW_EP)
    layout = tmp_path / "layout"
    build_oci_image(layout, "v1", busybox_root, extra_layers=[layer])
    push(layout, "v1", registry, "caps:v1")
    return f"{registry.host}/caps:v1"


def _effective_caps(daemon: Daemon, image: str) -> list[str]:
    """The effective capabilities of /caps/grep run by a non-root user."""
    argv = ("-u", "1000", image, "/caps/grep", "^CapEff", "/proc/self/status")
    return daemon.ctl("run", "--rm", *NNP_OFF, *argv).stdout.split()


def test_a_file_capability_in_a_layer_survives_the_unpack(
    tmp_path: Path, daemon: Daemon, registry: Registry, busybox_root: Path
) -> None:
    """A binary given a capability by setcap (as a Dockerfile's `RUN setcap ...` does) keeps
    it when a layer written by umoci is pulled: the unpack sets the xattr after the chown,
    which would clear it, so a non-root user running it gets the capability (where
    no_new_privs is off, as in Docker's containers)."""
    ref = _caps_image(tmp_path, registry, busybox_root)
    assert _effective_caps(daemon, ref) == ["CapEff:", f"{1 << 13:016x}"]
    daemon.ctl("rmi", ref)


def test_commits_within_a_second_are_stamped_apart(daemon: Daemon) -> None:
    """dockerd stamps a commit to the nanosecond (Go's RFC3339Nano): the same container
    committed twice in a second makes two images, listed in order by ``since``/``before``
    (moby's TestImagesFilterUntil).  boxd stamped whole seconds, so both commits were one
    image, the second tag moved onto the first."""
    daemon.ctl("create", "--name", "still", "default", "true")
    ids = []
    for tag in ("v0", "v1", "v2"):
        status, _, body = api_call(daemon, "POST", f"/commit?container=still&repo=st&tag={tag}")
        assert status == 201, body
        ids.append(json.loads(body)["Id"])
    assert len(set(ids)) == 3
    (image,) = json.loads(daemon.ctl("image", "inspect", "st:v1").stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", image["Created"])
    query = urllib.parse.quote(json.dumps({"since": ["st:v0"], "before": ["st:v2"]}))
    _, _, body = api_call(daemon, "GET", f"/images/json?filters={query}")
    assert [i["Id"] for i in json.loads(body)] == [ids[1]]
    # Several untils, the earliest deciding, as dockerd's list takes them (was a 400).
    (v2,) = json.loads(daemon.ctl("image", "inspect", "st:v2").stdout)
    untils = [str(time.time() + 60), v2["Created"]]
    query = urllib.parse.quote(json.dumps({"since": ["st:v0"], "until": untils}))
    status, _, body = api_call(daemon, "GET", f"/images/json?filters={query}")
    assert (status, [i["Id"] for i in json.loads(body)]) == (200, [ids[1]]), body


def test_a_tag_named_as_a_digest_algorithm_is_refused(daemon: Daemon) -> None:
    """``sha256:x`` would read as a digest or an image id: dockerd refuses it as a name
    (moby's TestTagUsingDigestAlgorithmAsName), for a tag, a commit and an import alike;
    boxd made it."""
    daemon.ctl("create", "--name", "tagged", "default", "true")
    daemon.ctl("commit", "tagged", "base:1")
    words = "refusing to create an ambiguous tag using digest algorithm as name"
    for path in [
        "/images/base:1/tag?repo=sha256&tag=sometag",
        "/commit?container=tagged&repo=sha256&tag=x",
    ]:
        status, _, body = api_call(daemon, "POST", path)
        assert status == 400 and words in json.loads(body)["message"], (path, body)
    r = daemon.ctl("commit", "tagged", "sha256:y", check=False)
    assert r.returncode != 0 and words in r.stderr
    assert "sha256" not in daemon.ctl("images", "--format", "{{.Repository}}").stdout


def test_an_archive_of_an_image_with_no_layer_loads(daemon: Daemon) -> None:
    """Go writes an empty list as null: dockerd's save of an image of no layer (FROM
    scratch and a LABEL) has ``"Layers": null`` (moby's specialimage.Dangling).  boxd
    refused it: "an entry lacks Config or Layers".  Untagged, its inspect's RepoTags and
    RepoDigests are empty lists, not null."""
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": None,
        "config": {"Labels": {"org.example.empty": "1"}},
        "history": [{"created_by": "LABEL org.example.empty=1", "empty_layer": True}],
        "rootfs": {"type": "layers", "diff_ids": None},
    }).encode()  # fmt: skip
    digest = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"blobs/sha256/{digest}", "RepoTags": None, "Layers": None}]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in [
            (f"blobs/sha256/{digest}", config),
            ("manifest.json", json.dumps(manifest).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    status, _, body = api_call(daemon, "POST", "/images/load?quiet=1", archive.getvalue())
    assert status == 200 and b"error" not in body, body
    status, _, body = api_call(daemon, "GET", f"/images/sha256:{digest}/json")
    image = json.loads(body)
    assert (status, image["RepoTags"], image["RepoDigests"]) == (200, [], []), body
    assert image["Config"]["Labels"] == {"org.example.empty": "1"}


def test_an_import_is_for_the_platform_asked_for(daemon: Daemon, busybox_root: Path) -> None:
    """``docker import --platform``: the image says it is for that os/arch (an os alone:
    the host's architecture), as dockerd's import does (moby's TestImportWithCustomPlatform);
    another os than Linux, or no platform, refused by name.  boxd ignored the platform."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(busybox_root / "bin", arcname="bin")
    host = platform.machine().replace("x86_64", "amd64").replace("aarch64", "arm64")
    cases = [("", (host, "")), ("linux", (host, "")), ("LINUX", (host, "")),
             ("linux/arm/v7", ("arm", "v7")), ("linux/sparc64", ("sparc64", ""))]  # fmt: skip
    for asked, shown in cases:
        query = urllib.parse.urlencode(
            {"fromSrc": "-", "repo": "plat", "tag": "x", "platform": asked}
        )
        status, _, body = api_call(daemon, "POST", f"/images/create?{query}", archive.getvalue())
        assert status == 200 and b"error" not in body, (asked, body)
        image = json.loads(api_call(daemon, "GET", "/images/plat:x/json")[2])
        assert (image["Os"], image["Architecture"], image.get("Variant", "")) == ("linux", *shown)
    for asked, words in [("macos", "operating system is not supported"),
                         ("macos/arm64", "operating system is not supported"),
                         ("       ", "invalid platform"), ("/", "invalid platform")]:  # fmt: skip
        query = urllib.parse.urlencode({"fromSrc": "-", "repo": "bad", "platform": asked})
        status, _, body = api_call(daemon, "POST", f"/images/create?{query}", archive.getvalue())
        assert words in body.decode(), (asked, body)
    listed = json.loads(api_call(daemon, "GET", "/images/json")[2])
    assert not [t for i in listed for t in i["RepoTags"] if t.startswith("bad:")]


def test_an_engine_api_import_answers_once_its_image_is_made(
    daemon: Daemon, busybox_root: Path
) -> None:
    """As dockerd's import: the response begins once the image is made, so a client that
    reads only the head (Go's ImageImport returns then) finds the image, and a failure is
    the response's status, not a line after a 200.  A refusal sent before the body was
    read says ``Connection: close``: Go's client sent its next request on the connection,
    which boxd closes, and read EOF."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(busybox_root / "bin", arcname="bin")
    conn = UnixHTTP(daemon.docker_socket)
    try:
        conn.request("POST", "/images/create?fromSrc=-&repo=headfirst", body=archive.getvalue())
        r = conn.getresponse()  # the head alone
        assert r.status == 200
        assert api_call(daemon, "GET", "/images/headfirst/json")[0] == 200
        assert json.loads(r.read())["status"].startswith("sha256:")
    finally:
        conn.close()
    status, _, body = api_call(daemon, "POST", "/images/create?fromSrc=-&repo=empty", b"")
    assert status == 200 and json.loads(body)["status"].startswith("sha256:"), body
    assert api_call(daemon, "DELETE", "/images/empty")[0] == 200
    query = "fromSrc=-&repo=bad&platform=macos"
    status, headers, _ = api_call(daemon, "POST", f"/images/create?{query}", b"x" * (1 << 20))
    assert (status, headers["connection"]) == (400, "close")
    assert api_call(daemon, "GET", "/_ping")[0] == 200


def test_commit_and_export_keep_file_capabilities(
    tmp_path: Path, daemon: Daemon, registry: Registry, busybox_root: Path
) -> None:
    """A file with capabilities that a container wrote (here touched: overlay copies it up
    with its xattrs) keeps them in its commit's layer and its export, as Docker's do: the
    one xattr their tars carry."""
    ref = _caps_image(tmp_path, registry, busybox_root)
    daemon.ctl("run", "--name", "toucher", ref, "touch", "/caps/grep")
    daemon.ctl("commit", "toucher", "caps:touched")
    assert _effective_caps(daemon, "caps:touched") == ["CapEff:", f"{1 << 13:016x}"]
    exported = tmp_path / "exported.tar"
    daemon.ctl("export", "-o", str(exported), "toucher")
    with tarfile.open(exported) as tar:
        headers = tar.getmember("caps/grep").pax_headers
    assert headers["SCHILY.xattr.security.capability"].encode() == NET_RAW_EP
    daemon.ctl("rm", "toucher")
    daemon.ctl("rmi", "caps:touched", ref)


def _blob(registry: Registry, name: str, digest: str) -> bytes:
    request = urllib.request.Request(f"http://{registry.host}/v2/{name}/blobs/{digest}")
    with urllib.request.urlopen(request, timeout=10) as r:
        data: bytes = r.read()
    return data


def test_the_same_image_compressed_otherwise_takes_the_stored_layers(
    tmp_path: Path, daemon: Daemon, registry: Registry, layout: Path
) -> None:
    """An image pulled again from where its layers are plain tars (as a podman save or a
    zstd push has them, other blobs for the same diff_ids), or loaded from a docker-archive
    skopeo writes them plain in, takes the layers already stored, as Docker knows layers
    by diff_id: nothing is fetched, and no blob is left that no image keeps."""
    import gzip

    push(layout, "v1", registry, "box:v1")
    ref = f"{registry.host}/box:v1"
    daemon.ctl("pull", ref)
    blobs = daemon.root / "images" / "blobs" / "sha256"
    stored = sorted(os.listdir(blobs))
    manifest: dict[str, Any] = manifest_of(registry, "box", "v1")
    config = _blob(registry, "box", manifest["config"]["digest"])
    plain = [gzip.decompress(_blob(registry, "box", d["digest"])) for d in manifest["layers"]]
    put_blob(registry, "plain/box", config)
    layers = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(data),
         "digest": put_blob(registry, "plain/box", data)}
        for data in plain
    ]  # fmt: skip
    oci = "application/vnd.oci.image.manifest.v1+json"
    put_manifest(registry, "plain/box", "v1", {**manifest, "mediaType": oci, "layers": layers})
    fetched = registry.requests("/blobs/")
    daemon.ctl("pull", f"{registry.host}/plain/box:v1")
    assert registry.requests("/blobs/") == fetched  # every layer "Already exists"
    archive = tmp_path / "plain.tar"
    _skopeo_copy(
        "--dest-decompress", f"oci:{layout}:v1", f"docker-archive:{archive}:plain/loaded:v1"
    )
    daemon.ctl("load", "-i", str(archive))
    assert sorted(os.listdir(blobs)) == stored
    assert daemon.ctl("run", "--rm", "plain/loaded:v1", "cat", "/work/hello.txt").stdout
    daemon.ctl("rmi", ref, f"{registry.host}/plain/box:v1", "plain/loaded:v1")
    assert os.listdir(blobs) == []


def test_a_stored_image_runs_user_namespaced(registry: Registry, layout: Path) -> None:
    push(layout, "v1", registry, "box:v1")
    ref = f"{registry.host}/box:v1"
    top = Path(tempfile.mkdtemp(prefix="boxd-images-userns-"))
    try:
        os.chmod(top, 0o711)  # the container's root (an unprivileged host uid) walks in
        with running_daemon(top) as daemon:
            daemon.ctl("pull", ref)
            _run_user_namespaced(daemon, ref)
    finally:
        shutil.rmtree(top)


def test_a_user_namespaced_containers_commit_and_export_hold_its_own_ids(
    registry: Registry, layout: Path
) -> None:
    """What a user-namespaced container writes is owned by host ids (its root is uid
    100000 ...): its commit and its export record the container's own (0, 1234), as
    Docker's userns-remap does, so the image runs with or without a user namespace; a
    directory it replaced is opaque in the commit (its overlay's user.overlay.opaque);
    one that changed nothing shows no change and its commit makes no layer."""
    push(layout, "v1", registry, "box:v1")
    ref = f"{registry.host}/box:v1"
    top = Path(tempfile.mkdtemp(prefix="boxd-images-userns-"))
    script = "mkdir /made && touch /made/f && chown 1234:55 /made/f && rm -r /work && mkdir /work"
    shown = "stat -c '%n %u:%g' /made /made/f /work; ls -A /work"
    try:
        os.chmod(top, 0o711)  # the container's root (an unprivileged host uid) walks in
        with running_daemon(top) as daemon:
            daemon.ctl("pull", ref)
            daemon.ctl(
                "run", "--isolate-user", "-u", "0", "--name", "writer", ref, "sh", "-c", script
            )
            daemon.ctl("commit", "writer", "written:1")
            expected = ["/made", "0:0", "/made/f", "1234:55", "/work", "0:0"]
            for isolated in ((), ("--isolate-user",)):
                argv = ("run", "--rm", *isolated, "-u", "0", "written:1", "sh", "-c", shown)
                assert daemon.ctl(*argv).stdout.split() == expected
            exported = top / "exported.tar"
            daemon.ctl("export", "-o", str(exported), "writer")
            with tarfile.open(exported) as tar:
                owners = {m.name: (m.uid, m.gid) for m in tar if m.name.startswith("made")}
            assert owners == {"made": (0, 0), "made/f": (1234, 55)}
            daemon.ctl("rm", "writer")
            # One that changed nothing shows no change (the /etc copied up for boxd's own
            # files is its own ids again) and its commit makes no layer.
            daemon.ctl("run", "--isolate-user", "--name", "idle", ref, "true")
            assert daemon.ctl("diff", "idle").stdout == ""
            daemon.ctl("commit", "idle", "idle:1")
            history = json.loads(daemon.ctl("history", "--format", "json", "idle:1").stdout)
            assert history[0]["empty_layer"] is True  # no layer, as Docker's commit
            daemon.ctl("rm", "idle")
    finally:
        shutil.rmtree(top)


def _run_user_namespaced(daemon: Daemon, ref: str) -> None:
    r = daemon.ctl(
        "run", "--rm", "--isolate-user", "-u", "0", ref,
        "sh", "-c", "cat /work/hello.txt; ls /bin/vi; cat /proc/self/uid_map",
        check=False,
    )  # fmt: skip
    assert r.stdout.startswith("hello from the second layer\n"), r.stderr
    assert "/bin/vi" not in r.stdout  # the whiteout holds in the id-mapped layers too
    assert r.stdout.split()[-3:-2] == ["0"] and r.stdout.split()[-2] != "0"


def test_a_daemon_killed_during_a_pull_leaves_nothing_half_there(
    tmp_path: Path, registry: Registry, layout: Path
) -> None:
    push(layout, "v1", registry, "box:v1")
    last_layer = _layer_blobs(registry, "box")[-1]
    with (
        stalling_proxy(registry, last_layer.removeprefix("sha256:")) as proxy,
        running_daemon(tmp_path, "--procview", "off") as daemon,
    ):
        pulling = subprocess.Popen(
            [*daemon_cli(daemon).split(), "pull", f"{proxy.host}/box:v1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proxy.stalled.wait(60), "the pull never reached the last layer"
        assert daemon.process is not None
        daemon.process.kill()
        daemon.process.wait()
        assert pulling.wait(60) != 0
        images = daemon.root / "images"
        assert os.listdir(images / "tmp")  # the download in progress, left by the kill
        daemon.start("--procview", "off")
        assert os.listdir(images / "tmp") == []
        assert os.listdir(images / "meta") == []
        assert _stored(daemon) == []
        # Every layer directory present is a complete one (its record written last).
        records = {json.loads(p.read_text())["dir"] for p in (images / "layers").glob("*.json")}
        assert set(os.listdir(images / "l")) == records
        assert not (images / "blobs" / "sha256" / last_layer.removeprefix("sha256:")).exists()
        # The same pull, straight from the registry, completes and runs.
        ref = f"{registry.host}/box:v1"
        daemon.ctl("pull", ref)
        assert daemon.ctl("run", "--rm", "-u", "0", ref, "cat", "/work/hello.txt").stdout == (
            "hello from the second layer\n"
        )


def test_what_no_image_holds_is_deleted_when_the_daemon_starts(
    tmp_path: Path, busybox_root: Path
) -> None:
    """A daemon killed during a load, import or pull leaves blobs and layers no image
    record names (a load of a six-layer archive killed midway kept a 31 MB blob for
    ever).  The next daemon deletes them before its first request, and nothing an image
    holds; while an image record cannot be read it deletes nothing."""
    tarball = tmp_path / "busybox.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_root, arcname=".")
    with running_daemon(tmp_path, "--procview", "off") as daemon:
        daemon.ctl("import", str(tarball), "bb:1")
        images = daemon.root / "images"
        held = {d: sorted(os.listdir(images / d)) for d in ("blobs/sha256", "l", "layers", "meta")}
        assert daemon.process is not None
        daemon.process.kill()
        daemon.process.wait()
        orphan = "ab" * 32
        (images / "blobs" / "sha256" / orphan).write_bytes(os.urandom(1 << 20))
        (images / "l" / "0123456789ab" / "etc").mkdir(parents=True)  # no record: cut short
        (images / "l" / "cdcdcdcdcdcd").mkdir()
        record = {"diff_id": "sha256:" + "cd" * 32, "dir": "cdcdcdcdcdcd", "size": 0}
        (images / "layers" / f"{'cd' * 32}.json").write_text(json.dumps(record))
        (images / "layers" / f".{'ef' * 32}.json.tmp").write_text("{")
        unreadable = images / "meta" / f"{'12' * 32}.json"
        unreadable.write_text("{")
        daemon.start("--procview", "off")
        assert (images / "blobs" / "sha256" / orphan).exists()  # a record unread: kept
        daemon.stop()
        unreadable.unlink()
        daemon.start("--procview", "off")
        after = {d: sorted(os.listdir(images / d)) for d in held}
        assert after == held
        assert daemon.ctl("run", "--rm", "bb:1", "echo", "whole").stdout == "whole\n"


def test_export_and_system_df(
    tmp_path: Path, daemon: Daemon, registry: Registry, layout: Path
) -> None:
    import tarfile

    push(layout, "v1", registry, "box:v1")
    ref = f"{registry.host}/box:v1"
    daemon.ctl("pull", ref)
    daemon.ctl("run", "--name", "c", "-u", "0", ref, "sh", "-c", "echo x > /work/x; rm /bin/ls")
    out = tmp_path / "c.tar"
    daemon.ctl("export", "-o", str(out), "c")
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert tar.extractfile("work/x").read() == b"x\n"  # type: ignore[union-attr]
    assert {"work/hello.txt", "bin/sh", "etc/passwd"} <= names
    assert "bin/ls" not in names and "bin/vi" not in names  # whiteouts, upper and image
    assert "etc/hostname" not in names
    assert not any(".wh." in n for n in names)
    df = json.loads(daemon.ctl("system", "df", "--format", "json").stdout)
    assert (df["images"], df["images_active"], df["layers"], df["containers"]) == (2, 1, 2, 1)
    assert df["images_size"] > 0 and df["images_reclaimable"] == 0
    assert df["containers_size"] >= 2
    assert daemon.ctl("system", "df").stdout.splitlines()[0].split() == [
        "TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"
    ]  # fmt: skip
    r = daemon.ctl("export", "-o", str(out), "nope", check=False)
    assert r.returncode == 1 and "No such container: nope" in r.stderr


def test_a_deep_image_fits_overlays_options(
    tmp_path: Path, daemon: Daemon, busybox_root: Path
) -> None:
    """125 layers (Docker's limit) in a Docker archive: their lowerdir= names are relative
    to the layers' directory, so the overlay's options stay within a page."""
    import io
    import tarfile

    base = tmp_path / "base.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(base), "."], check=True)
    layers = [base.read_bytes()]
    for i in range(1, 125):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(f"deep/{i:03d}")
            info.size = len(str(i))
            tar.addfile(info, io.BytesIO(str(i).encode()))
        layers.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["ls", "/deep"]},
         "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()  # fmt: skip
    archive = tmp_path / "deep.tar"
    with tarfile.open(archive, mode="w") as tar:
        members = {f"{d[7:]}/layer.tar": layer for d, layer in zip(diff_ids, layers, strict=True)}
        members["config.json"] = config
        manifest = [
            {
                "Config": "config.json",
                "RepoTags": ["deep:125"],
                "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids],
            }
        ]
        members["manifest.json"] = json.dumps(manifest).encode()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert daemon.ctl("load", "-i", str(archive)).stdout == "Loaded image: deep:125\n"
    listing = daemon.ctl("run", "--rm", "deep:125").stdout.split()
    assert listing == [f"{i:03d}" for i in range(1, 125)]


def test_a_hostile_pulled_layer_is_refused_and_leaves_nothing(
    tmp_path: Path, daemon: Daemon, registry: Registry
) -> None:
    import io
    import tarfile

    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        info = tarfile.TarInfo("fine")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../../../pwned")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    layout = tmp_path / "evil-layout"
    write_layout(layout, [good.getvalue(), evil.getvalue()])
    push(layout, "1", registry, "evil:1")
    # The pull stores the blobs, checked against their digests; the layers are unpacked
    # after it, and the create that needs them fails with the unpack's reason. The image
    # is then removed with every layer and blob of it: nothing partial is left.
    ref = f"{registry.host}/evil:1"
    daemon.ctl("pull", ref)
    # Whether the create finds the unpack under way or the image already removed, it
    # names the layer and the member.
    r = daemon.ctl("create", "--pull", "never", ref, check=False)
    assert r.returncode == 125
    assert ": its layer sha256:" in r.stderr
    assert "cannot be unpacked: member '../../../../../../../../pwned' points outside" in r.stderr
    assert _stored(daemon) == []  # waits for the removal under way
    assert not (tmp_path / "pwned").exists() and not Path("/pwned").exists()
    assert daemon.ctl("ps", "-aq").stdout == ""
    images = daemon.root / "images"
    assert os.listdir(images / "tmp") == []
    assert os.listdir(images / "l") == [] and os.listdir(images / "meta") == []
    assert list((images / "layers").glob("*.json")) == []
    for layer in manifest_of(registry, "evil", "1")["layers"]:  # type: ignore[attr-defined]
        digest = str(layer["digest"])
        assert not (images / "blobs" / "sha256" / digest.removeprefix("sha256:")).exists()
    # A run pulls it again and is refused again, with the member named.
    r = daemon.ctl("run", "--rm", ref, "true", check=False)
    assert r.returncode == 125 and "points outside the layer" in r.stderr
    assert _stored(daemon) == []


def test_hostile_and_broken_archives_are_refused(tmp_path: Path, daemon: Daemon) -> None:
    import gzip
    import io
    import tarfile

    archive = tmp_path / "evil.tar"
    manifest = [{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": ["/etc/shadow"]}]
    with tarfile.open(archive, mode="w") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = daemon.ctl("load", "-i", str(archive), check=False)
    assert r.returncode == 1
    assert "the archive has no file '../../etc/passwd'" in r.stderr
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(gzip.compress(archive.read_bytes())[:30])
    r = daemon.ctl("load", "-i", str(truncated), check=False)
    assert r.returncode == 1 and "the archive is truncated or damaged" in r.stderr
    # An image of another operating system: refused in Docker's words, before its layers.
    windows = tmp_path / "windows.tar"
    config = json.dumps({"os": "windows", "rootfs": {"diff_ids": ["sha256:" + "cd" * 32]}})
    manifest = [{"Config": "config.json", "RepoTags": ["win:1"], "Layers": ["layer.tar"]}]
    with tarfile.open(windows, mode="w") as tar:
        for name, text in (("manifest.json", json.dumps(manifest)), ("config.json", config)):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    r = daemon.ctl("load", "-i", str(windows), check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: cannot load windows image on linux\n")
    assert _stored(daemon) == []
    assert os.listdir(daemon.root / "images" / "tmp") == []

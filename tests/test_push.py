"""Push end to end: images made every way boxd makes them (import, commit, load, pull) pushed
by boxctl, the docker CLI and docker-py to a real docker-registry on loopback (plain,
htpasswd, token auth), checked with skopeo and pulled back into a second daemon."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import DOCKER, docker, needs_cli
from registry_harness import (
    Registry,
    busy_proxy,
    push,
    running_registry,
    running_token_server,
    write_htpasswd,
    write_layout,
)

pytestmark = pytest.mark.root


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with running_registry(tmp_path) as registry:
        yield registry


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Daemon]:
    """Another daemon, on a root of its own: what a push sent, pulled back."""
    (tmp_path / "second").mkdir()
    with running_daemon(tmp_path / "second") as d:
        yield d


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory, busybox_root: Path) -> Path:
    """The busybox root as a plain tar (``import`` keeps it plain: push gzips it)."""
    path = tmp_path_factory.mktemp("push") / "busybox.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(path), "."], check=True)
    return path


def _skopeo(registry: Registry, ref: str, *extra: str) -> bytes:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (.ci/install-deps installs it)")
    return subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", *extra, f"docker://{registry.host}/{ref}"],
        check=True,
        capture_output=True,
    ).stdout


def _image(daemon: Daemon, ref: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]
    return found


def _lines(out: str) -> list[str]:
    return out.splitlines()


def test_import_commit_and_load_round_trip(
    daemon: Daemon, second: Daemon, registry: Registry, busybox_tar: Path, tmp_path: Path
) -> None:
    base = f"{registry.host}/base"
    daemon.ctl("import", str(busybox_tar), f"{base}:1")
    image = _image(daemon, f"{base}:1")

    r = daemon.ctl("push", f"{base}:1")
    lines = _lines(r.stdout)
    assert lines[0] == f"The push refers to repository [{base}]"
    assert lines[1].endswith(": Pushed")
    assert lines[2].startswith("1: digest: sha256:") and len(lines) == 3
    digest = lines[2].split()[2]

    # What the registry has, read by skopeo: a Docker schema 2 manifest whose digest is
    # the one printed, the config as stored (the image id) and the layer gzipped.
    raw = _skopeo(registry, "base:1", "--raw")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["digest"] == image["Id"]
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert lines[1] == f"{layer['digest'][7:19]}: Pushed"
    assert registry.blob_path(layer["digest"]).read_bytes()[:2] == b"\x1f\x8b"
    assert f"{base}@{digest}" in _image(daemon, f"{base}:1")["RepoDigests"]  # type: ignore[operator]

    # Again: every layer skipped, the same manifest digest.
    again = _lines(daemon.ctl("push", f"{base}:1").stdout)
    assert again[1:] == [f"{layer['digest'][7:19]}: Layer already exists", lines[2]]

    # A committed image: its base layer is there already, its own layer goes up.
    daemon.ctl("run", "--name", "c", f"{base}:1", "sh", "-c", "echo committed > /hello")
    daemon.ctl("commit", "c", f"{registry.host}/app:2")
    app = _image(daemon, f"{registry.host}/app:2")
    out = _lines(daemon.ctl("push", f"{registry.host}/app:2").stdout)
    done = dict(line.split(": ", 1) for line in out[1:3])  # (in the order they are done)
    assert done.pop(layer["digest"][7:19]) == "Mounted from base", out
    assert list(done.values()) == ["Pushed"], out

    # Pulled back into another daemon: the same image, and it runs.
    second.ctl("pull", f"{registry.host}/app:2")
    assert _image(second, f"{registry.host}/app:2")["Id"] == app["Id"]
    r = second.ctl("run", "--rm", f"{registry.host}/app:2", "cat", "/hello")
    assert r.stdout == "committed\n"

    # A built image (a RUN and a COPY on the imported one): its layers go up, the base's
    # is there already; pulled back, it runs.
    context = tmp_path / "context"
    context.mkdir()
    (context / "note.txt").write_text("copied\n")
    (context / "Dockerfile").write_text(
        f"FROM {base}:1\nRUN echo built > /built\nCOPY note.txt /note.txt\n"
    )
    daemon.ctl("build", "-t", f"{registry.host}/built:1", str(context))
    out = _lines(daemon.ctl("push", f"{registry.host}/built:1").stdout)
    # The layers go up at once: each one's line comes when it is done, the base's anywhere
    # among them (CI saw a new layer's first).
    done = dict(line.split(": ", 1) for line in out[1:4])
    kept = done.pop(layer["digest"][7:19])
    assert kept == "Layer already exists" or kept.startswith("Mounted from "), out
    assert list(done.values()) == ["Pushed", "Pushed"], out
    second.ctl("pull", f"{registry.host}/built:1")
    r = second.ctl("run", "--rm", f"{registry.host}/built:1", "cat", "/built", "/note.txt")
    assert r.stdout == "built\ncopied\n"

    # Saved by the first daemon, loaded by the second (a plain layer again), pushed from
    # there: the same gzip bytes (made there, once), so the same manifest.
    archive = tmp_path / "base.tar"
    daemon.ctl("save", "-o", str(archive), f"{base}:1")
    second.ctl("load", "-i", str(archive))
    second.ctl("tag", f"{base}:1", f"{registry.host}/copy:1")
    out = _lines(second.ctl("push", f"{registry.host}/copy:1").stdout)
    assert out[1] in (f"{layer['digest'][7:19]}: Mounted from {r}" for r in ("app", "built"))
    assert out[2] == f"1: digest: {digest} size: {lines[2].split()[-1]}"
    assert os.listdir(second.root / "images" / "tmp") == []


def test_pulled_image_all_tags_and_mount(
    daemon: Daemon, second: Daemon, registry: Registry, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, [_tar({"a.txt": b"one\n"}), _tar({"b.txt": b"two\n"})])
    push(layout, "1", registry, "src/x:1")
    daemon.ctl("pull", f"{registry.host}/src/x:1")
    image = _image(daemon, f"{registry.host}/src/x:1")
    daemon.ctl("tag", f"{registry.host}/src/x:1", f"{registry.host}/dst/x:a")
    daemon.ctl("tag", f"{registry.host}/src/x:1", f"{registry.host}/dst/x:b")

    # No tag: latest, which is not there (Docker's rule and words).
    r = daemon.ctl("push", f"{registry.host}/dst/x", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(
        f"An image does not exist locally with the tag: {registry.host}/dst/x"
    )
    start = time.time()
    r = daemon.ctl("push", "-a", f"{registry.host}/dst/x")
    # Docker's push events: one per tag, the reference and its repository.
    window = ("--since", str(start), "--until", str(time.time()), "-f", "event=push")
    shown = daemon.ctl("events", *window, "--format", "{{.Actor.ID}} {{.Actor.Attributes.name}}")
    assert shown.stdout.splitlines() == [
        f"{registry.host}/dst/x:{tag} {registry.host}/dst/x" for tag in ("a", "b")
    ]
    lines = _lines(r.stdout)
    assert lines[0] == f"The push refers to repository [{registry.host}/dst/x]"
    mounted = [line for line in lines if line.endswith(": Mounted from src/x")]
    assert len(mounted) == 2  # the pulled blobs, unchanged, mounted from where they came
    tags = [line for line in lines if ": digest: " in line]
    assert [t.split(":")[0] for t in tags] == ["a", "b"]
    assert tags[0].split()[2] == tags[1].split()[2]
    # The stored blobs went up unchanged: the pulled manifest's layers are the pushed one's.
    pushed = json.loads(_skopeo(registry, "dst/x:a", "--raw"))
    source = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    original = json.loads((layout / "blobs" / "sha256" / source[7:]).read_text())
    assert [x["digest"] for x in pushed["layers"]] == [x["digest"] for x in original["layers"]]
    assert pushed["config"]["digest"] == image["Id"]

    r = daemon.ctl("push", "-q", f"{registry.host}/dst/x:b")
    assert r.stdout == f"{registry.host}/dst/x:b\n"
    second.ctl("pull", f"{registry.host}/dst/x:b")
    assert _image(second, f"{registry.host}/dst/x:b")["Id"] == image["Id"]


def _tar(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_bad_input_is_named_and_leaves_nothing(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar({"f": b"x"}))
    daemon.ctl("import", str(layer), f"{registry.host}/ok:1")
    before = _image(daemon, f"{registry.host}/ok:1")
    unreachable = f"127.0.0.1:{_closed_port()}"
    daemon.ctl("tag", f"{registry.host}/ok:1", f"{unreachable}/ok:1")
    daemon.ctl("tag", f"{registry.host}/ok:1", "mine/hub:1")
    cases = [
        ("nosuch", "An image does not exist locally with the tag: nosuch"),
        ("nosuch:2", "An image does not exist locally with the tag: nosuch:2"),
        ("mine/hub:1", "boxd does not push to Docker Hub (mine/hub:1 names docker.io)"),
        (f"{registry.host}/ok:bad!", "invalid reference"),
        (f"{registry.host}/ok@sha256:{'a' * 64}", "cannot push a digest reference"),
        (f"{unreachable}/ok:1", f"cannot reach registry {unreachable}"),
    ]
    for ref, words in cases:
        r = daemon.ctl("push", ref, check=False)
        assert r.returncode == 1, (ref, r.stderr)
        assert words in r.stderr, (ref, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = daemon.ctl("push", "-a", f"{registry.host}/ok:1", check=False)
    assert r.returncode == 1 and "tag can't be used with --all-tags/-a" in r.stderr
    # Nothing half-written: the image's record is as it was, no temporary file is left.
    assert _image(daemon, f"{registry.host}/ok:1")["RepoDigests"] == before["RepoDigests"]
    images = daemon.root / "images"
    assert os.listdir(images / "tmp") == []
    # The gzip layer made for the push that could not reach its registry is whole, and
    # goes with the image.
    assert len(os.listdir(images / "gzip")) == 1
    daemon.ctl("rmi", "-f", str(before["Id"]))
    assert os.listdir(images / "gzip") == os.listdir(images / "blobs" / "sha256") == []


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_needs_and_uses_credentials(daemon: Daemon, tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar({"f": b"secret layer\n"}))
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "me", "pw-basic")
    with running_registry(tmp_path, htpasswd=htpasswd) as registry:
        ref = first = f"{registry.host}/auth/x:1"
        daemon.ctl("import", str(layer), ref)
        r = daemon.ctl("push", ref, check=False)
        assert r.returncode == 1
        assert f"registry {registry.host} requires a login (boxctl login {registry.host})" in (
            r.stderr
        )
        daemon.ctl("login", "-u", "me", "--password-stdin", registry.host, input=b"pw-basic\n")
        r = daemon.ctl("push", ref)
        assert r.stdout.splitlines()[-1].startswith("1: digest: sha256:")

    token_dir = tmp_path / "token"
    token_dir.mkdir()
    with (
        running_token_server(token_dir, "me", "pw-token") as tokens,
        running_registry(token_dir, token=tokens) as registry,
    ):
        ref = f"{registry.host}/tok/x:1"
        daemon.ctl("tag", first, ref)
        r = daemon.ctl("push", ref, check=False)
        assert r.returncode == 1
        assert f"the token server of {registry.host} refused an anonymous push,pull" in r.stderr
        daemon.ctl("login", "-u", "me", "-p", "pw-token", registry.host)
        r = daemon.ctl("push", ref)
        assert r.stdout.splitlines()[-1].startswith("1: digest: sha256:")
        assert {"scope": "repository:tok/x:push,pull", "auth": "yes"}.items() <= (
            tokens.asked[-1].items()
        )
        # A token that grants nothing: the registry's refusal, named.
        tokens.useless = 10
        daemon.ctl("tag", ref, f"{registry.host}/tok/y:1")
        r = daemon.ctl("push", f"{registry.host}/tok/y:1", check=False)
        assert r.returncode == 1
        assert f"{registry.host}/tok/y: access denied (HTTP 401)" in r.stderr


# ---- the docker CLI and docker-py ------------------------------------------------------


def _docker_config(daemon: Daemon, auths: dict[str, tuple[str, str]]) -> None:
    config = daemon.root.parent / "docker-config"
    config.mkdir(exist_ok=True)
    entries = {
        host: {"auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}
        for host, (user, pw) in auths.items()
    }
    (config / "config.json").write_text(json.dumps({"auths": entries}))


@needs_cli
def test_docker_cli_push(daemon: Daemon, tmp_path: Path) -> None:
    assert DOCKER is not None
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar({"f": b"docker cli\n"}))
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "me", "pw-cli")
    with running_registry(tmp_path, htpasswd=htpasswd) as registry:
        ref = f"{registry.host}/cli/x:1"
        daemon.ctl("import", str(layer), ref)
        # The first request of the Engine API's image area: a login refused by the registry.
        r = docker(daemon, "login", "-u", "me", "--password-stdin", registry.host, input="no\n")
        assert r.returncode == 1 and f"registry {registry.host} refused" in r.stderr, r.stderr
        r = docker(daemon, "push", ref)
        assert r.returncode == 1 and "requires a login" in r.stderr
        # docker login goes through the daemon's /auth; the CLI keeps the credentials
        # and sends them with the push (X-Registry-Auth).
        r = docker(daemon, "login", "-u", "me", "--password-stdin", registry.host, input="pw-cli\n")
        assert r.returncode == 0 and "Login Succeeded" in r.stdout, r.stderr
        r = docker(daemon, "push", ref)
        assert r.returncode == 0, r.stderr
        assert f"The push refers to repository [{registry.host}/cli/x]" in r.stdout
        assert "Pushed" in r.stdout
        digest_line = r.stdout.splitlines()[-1]
        assert digest_line.startswith("1: digest: sha256:")
        r = docker(daemon, "push", ref)
        assert "Layer already exists" in r.stdout and r.stdout.splitlines()[-1] == digest_line
        # -a: every tag of the repository (the CLI sends no tag).
        daemon.ctl("tag", ref, f"{registry.host}/cli/x:2")
        r = docker(daemon, "push", "-a", f"{registry.host}/cli/x")
        assert r.returncode == 0, r.stderr
        tags = [line.split(":")[0] for line in r.stdout.splitlines() if ": digest: " in line]
        assert tags == ["1", "2"]
        r = docker(daemon, "push", f"{registry.host}/cli/none:1")
        assert r.returncode == 1
        assert f"An image does not exist locally with the tag: {registry.host}/cli/none" in (
            r.stderr
        )


def test_docker_py_push(daemon: Daemon, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker")
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar({"f": b"docker-py\n"}))
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "me", "pw-py")
    with running_registry(tmp_path, htpasswd=htpasswd) as registry:
        repo = f"{registry.host}/py/x"
        daemon.ctl("import", str(layer), f"{repo}:1")
        client = docker_py.DockerClient(base_url=f"unix://{daemon.docker_socket}")
        try:
            auth = {"username": "me", "password": "pw-py"}
            lines = list(
                client.images.push(repo, tag="1", stream=True, decode=True, auth_config=auth)
            )
            assert lines[0] == {"status": f"The push refers to repository [{repo}]"}
            # The imported layer is plain: it is named by its gzip blob's id throughout.
            ids = {
                s: {x["id"] for x in lines if x.get("status") == s} for s in ("Preparing", "Pushed")
            }
            assert ids["Preparing"] == ids["Pushed"] and len(ids["Pushed"]) == 1
            aux = lines[-1]["aux"]
            assert aux["Tag"] == "1" and aux["Size"] > 0
            assert lines[-2] == {"status": f"1: digest: {aux['Digest']} size: {aux['Size']}"}
            again = list(
                client.images.push(repo, tag="1", stream=True, decode=True, auth_config=auth)
            )
            assert "Layer already exists" in [line.get("status") for line in again]
            assert again[-1]["aux"] == aux
            # Wrong credentials: the registry's refusal is the stream's last line.
            bad = {"username": "me", "password": "wrong"}
            lines = list(
                client.images.push(repo, tag="1", stream=True, decode=True, auth_config=bad)
            )
            assert registry.host in lines[-1]["error"]
            assert lines[-1]["errorDetail"]["message"] == lines[-1]["error"]
            with pytest.raises(docker_py.errors.NotFound, match="does not exist locally"):
                client.images.push(f"{registry.host}/py/none", tag="1")

            # A pull takes X-Registry-Auth too (boxd has no stored login for it); without,
            # the refusal is the response, before any layer, as dockerd's.
            client.images.remove(f"{repo}:1")
            with pytest.raises(docker_py.errors.APIError, match="requires a login"):
                client.api.pull(repo, tag="1", stream=True, decode=True)
            lines = list(client.api.pull(repo, tag="1", stream=True, decode=True, auth_config=auth))
            assert lines[-1] == {"status": f"Status: Downloaded newer image for {repo}:1"}
        finally:
            client.close()


def test_docker_py_push_with_an_identity_token(daemon: Daemon, tmp_path: Path) -> None:
    """X-Registry-Auth's ``identitytoken`` is traded for a registry token with OAuth 2's
    refresh-token grant, as Docker's client does (ACR's logins, for one, are such)."""
    docker_py = pytest.importorskip("docker")
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_tar({"f": b"identity\n"}))
    with (
        running_token_server(tmp_path, "me", "pw") as tokens,
        running_registry(tmp_path, token=tokens) as registry,
    ):
        repo = f"{registry.host}/id/x"
        daemon.ctl("import", str(layer), f"{repo}:1")
        client = docker_py.DockerClient(base_url=f"unix://{daemon.docker_socket}")
        try:
            wrong = {"identitytoken": "not-the-token"}
            lines = list(
                client.images.push(repo, tag="1", stream=True, decode=True, auth_config=wrong)
            )
            assert (
                f"the token server of {registry.host} refused the identity token"
                in (lines[-1]["error"])
            )
            auth = {"identitytoken": tokens.identity}
            lines = list(
                client.images.push(repo, tag="1", stream=True, decode=True, auth_config=auth)
            )
            assert "aux" in lines[-1], lines[-1]
            asked = tokens.asked[-1]
            assert (asked["grant_type"], asked["scope"]) == (
                "refresh_token",
                "repository:id/x:push,pull",
            )
            client.images.remove(f"{repo}:1")
            lines = list(client.api.pull(repo, tag="1", stream=True, decode=True, auth_config=auth))
            assert lines[-1] == {"status": f"Status: Downloaded newer image for {repo}:1"}
        finally:
            client.close()


def test_a_loaded_zstd_layer_goes_up_as_is_in_an_oci_manifest(
    daemon: Daemon, second: Daemon, registry: Registry, tmp_path: Path
) -> None:
    """Schema 2 has no zstd layer type: such an image is pushed with an OCI manifest, its
    blob unchanged."""
    import zstandard

    plain = _tar({"z.txt": b"zstd layer\n"})
    blob = zstandard.ZstdCompressor().compress(plain)
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(plain).hexdigest()}"]},
    }
    layer = put(blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **put(json.dumps(config).encode()),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", **layer}],
    }
    ref = f"{registry.host}/zstd/x:1"
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **put(json.dumps(manifest).encode()),
        "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": "1"},
    }
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    archive = tmp_path / "zstd.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(archive), "."], check=True)
    daemon.ctl("load", "-i", str(archive))

    out = _lines(daemon.ctl("push", ref).stdout)
    assert out[1] == f"{str(layer['digest'])[7:19]}: Pushed"
    pushed = json.loads(_skopeo(registry, "zstd/x:1", "--raw"))
    assert pushed["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert pushed["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert pushed["layers"] == [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", **layer}
    ]
    second.ctl("pull", ref)
    assert _image(second, ref)["Id"] == _image(daemon, ref)["Id"]


def test_an_upload_the_registry_is_too_busy_for_is_tried_again(
    daemon: Daemon, registry: Registry, busybox_tar: Path
) -> None:
    """A registry that answers a layer's upload with HTTP 503 (busy) for a while: the
    upload is tried again 5 s later (``Retrying in 5 seconds``), as Docker's push does,
    and the push completes."""
    with busy_proxy(registry, refuse_puts=1) as proxy:
        ref = f"{proxy.host}/busy/box:1"
        daemon.ctl("import", str(busybox_tar), ref)
        if DOCKER is not None:
            pushed = docker(daemon, "push", ref)
            assert pushed.returncode == 0, pushed.stderr
            assert ": Retrying in 5 seconds" in pushed.stdout
        else:
            daemon.ctl("push", ref)
    assert len(proxy.refused) == 1
    digest = json.loads(_skopeo(registry, "busy/box:1"))["Digest"]
    assert _image(daemon, ref)["RepoDigests"] == [f"{proxy.host}/busy/box@{digest}"]

"""A real registry (Debian's docker-registry) on a free loopback port, and images to push.

Images are built here from the busybox root filesystem with umoci (an OCI layout) and
pushed with skopeo: bytes written by other tools, read by boxd.  Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest


@attrs.define
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    log: Path
    htpasswd: Path | None = None

    def requests(self, what: str) -> int:
        """How many GET requests the registry's access log has whose path contains ``what``."""
        return sum(
            1 for line in self.log.read_text().splitlines() if '"GET ' in line and what in line
        )

    def blob_path(self, digest: str) -> Path:
        hexa = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/install-deps installs it)")
    return path


@contextlib.contextmanager
def running_registry(tmp_path: Path, htpasswd: Path | None = None) -> Iterator[Registry]:
    binary = _tool("docker-registry")
    port = _free_port()
    storage = tmp_path / "registry-storage"
    storage.mkdir()
    config = tmp_path / "registry.yml"
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: boxd-test\n    path: {htpasswd}\n"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for credentials
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {log.read_text()}"
                    ) from None
                time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", storage, log, htpasswd)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def build_oci_image(
    layout: Path,
    tag: str,
    rootfs: Path,
    *,
    config: dict[str, str | list[str]] | None = None,
    extra_layers: list[Path] | None = None,
) -> None:
    """An OCI layout ``layout`` with image ``tag``: ``rootfs`` as its first layer, then one
    layer per directory of ``extra_layers`` (umoci's diff of a bundle, whiteouts included),
    and the given config (``cmd``, ``entrypoint``, ``env``, ``workingdir``, ``user``)."""
    umoci = _tool("umoci")
    image = f"{layout}:{tag}"
    if not layout.exists():
        subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", image], check=True)
    bundle = layout.parent / f"bundle-{tag}"
    for source in [rootfs, *(extra_layers or [])]:
        subprocess.run(
            [umoci, "unpack", "--image", image, str(bundle)], check=True, capture_output=True
        )
        target = bundle / "rootfs"
        subprocess.run(["cp", "-a", f"{source}/.", str(target)], check=True)
        deleted = source / ".boxd-delete"
        if deleted.exists():
            for name in deleted.read_text().split():
                subprocess.run(["rm", "-rf", str(target / name)], check=True)
            (target / ".boxd-delete").unlink()
        subprocess.run([umoci, "repack", "--image", image, str(bundle)], check=True)
        shutil.rmtree(bundle)
    args = []
    for key, value in (config or {}).items():
        values = value if isinstance(value, list) else [value]
        if key in ("cmd", "entrypoint", "env") and not values:
            args.append(f"--clear=config.{key}")
        args += [f"--config.{key}={v}" for v in values]
    subprocess.run([umoci, "config", "--image", image, *args], check=True)


def push(layout: Path, tag: str, registry: Registry, name: str) -> None:
    skopeo = _tool("skopeo")
    subprocess.run(
        [
            skopeo,
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{registry.host}/{name}",
        ],
        check=True,
    )


def manifest_of(registry: Registry, name: str, tag: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        data: dict[str, object] = json.loads(r.read())
    return data

"""A real registry (Debian's docker-registry) on a free loopback port, and images to push.

Images are built here from the busybox root filesystem with umoci (an OCI layout) and
pushed with skopeo: bytes written by other tools, read by boxd.  Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import attrs
import pytest


@attrs.define
class Registry:
    host: str  # ADDRESS:PORT (127.0.0.1 unless asked otherwise)
    storage: Path
    log: Path
    htpasswd: Path | None = None

    def requests(self, what: str) -> int:
        """How many GET requests the registry's access log has whose path contains ``what``."""
        return sum(
            1 for line in self.log.read_text().splitlines() if '"GET ' in line and what in line
        )

    def manifests(self) -> int:
        """How many manifest GETs the registry served."""
        return self.requests("/manifests/")

    def blob_path(self, digest: str) -> Path:
        hexa = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa / "data"


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/install-deps installs it)")
    return path


@contextlib.contextmanager
def running_registry(
    tmp_path: Path,
    htpasswd: Path | None = None,
    token: TokenServer | None = None,
    address: str = "127.0.0.1",
) -> Iterator[Registry]:
    """The registry on a free port of ``address`` (one of this network namespace's)."""
    binary = _tool("docker-registry")
    port = _free_port(address)
    storage = tmp_path / "registry-storage"
    storage.mkdir()
    config = tmp_path / "registry.yml"
    auth = ""
    if htpasswd is not None:
        auth = f"auth:\n  htpasswd:\n    realm: boxd-test\n    path: {htpasswd}\n"
    if token is not None:
        auth = (
            f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.service}\n"
            f"    issuer: {token.issuer}\n    rootcertbundle: {token.cert}\n"
        )
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}:{port}\n"
        # Foreign layers (fetched by clients from elsewhere) may name any URL: a test pushes
        # such a manifest by hand to see it refused.  Nothing fetches those URLs.
        "validation:\n  manifests:\n    urls:\n      allow:\n        - '^https?://'\n" + auth
    )
    log = tmp_path / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}:{port}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for credentials
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"docker-registry did not start: {log.read_text()}"
                    ) from None
                time.sleep(0.05)
        yield Registry(f"{address}:{port}", storage, log, htpasswd)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with a bcrypt entry (what docker-registry accepts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    path.write_text(
        f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n"
    )
    return path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.define
class TokenServer:
    """A token server as the distribution spec describes it: it answers GET
    ``/token?service=&scope=`` (and a POST of OAuth 2's refresh-token grant) with a JWT
    (RS256, signed with openssl, its certificate in the ``x5c`` header) granting what the
    scopes (one or more) ask, if the basic-auth credentials are ``user``:``password`` (or
    the refresh token ``identity``; or to anyone when ``anonymous``)."""

    realm: str
    cert: Path
    key: Path
    user: str
    password: str
    anonymous: bool
    service: str = "boxd-test-registry"
    issuer: str = "boxd-test-issuer"
    asked: list[dict[str, str]] = attrs.Factory(list)
    useless: int = 0  # this many tokens from now on grant nothing (as an expired one)
    # The refresh token that OAuth 2's refresh-token grant (a POST) takes instead of the
    # credentials, as Docker's clients trade an identity token.
    identity: str = "boxd-test-identity-token"

    def token(self, scopes: list[str], subject: str) -> str:
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        access = []
        if self.useless:
            self.useless -= 1
        else:
            for scope in scopes:
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing}.{_b64(signature)}"


@contextlib.contextmanager
def running_token_server(
    tmp_path: Path, user: str, password: str, *, anonymous: bool = False
) -> Iterator[TokenServer]:
    key, cert = tmp_path / "token.key", tmp_path / "token.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=boxd-test-token", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    holder: list[TokenServer] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server = holder[0]
            pairs = urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)
            scopes = [value for key, value in pairs if key == "scope"]
            query = dict(pairs)  # a request with several scopes: the last one here
            given = self.headers.get("Authorization")
            server.asked.append({**query, "auth": "yes" if given else "no"})
            if given != expected and not (server.anonymous and given is None):
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": server.token(scopes, user if given else "")}).encode()
            self._answer(body)

        def do_POST(self) -> None:
            server = holder[0]
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            server.asked.append({**form, "auth": "token"})
            if form.get("grant_type") != "refresh_token" or (
                form.get("refresh_token") != server.identity
            ):
                self.send_response(401)
                self.end_headers()
                return
            token = server.token(form.get("scope", "").split(), user)
            self._answer(json.dumps({"access_token": token}).encode())

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    holder.append(
        TokenServer(f"http://127.0.0.1:{port}/token", cert, key, user, password, anonymous)
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


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


def push(layout: Path, tag: str, registry: Registry, name: str, creds: str | None = None) -> None:
    skopeo = _tool("skopeo")
    subprocess.run(
        [
            skopeo,
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            *([f"--dest-creds={creds}"] if creds else []),
            f"oci:{layout}:{tag}",
            f"docker://{registry.host}/{name}",
        ],
        check=True,
    )


def put_blob(registry: Registry, name: str, data: bytes) -> str:
    """Upload a blob by hand (POST, then PUT with its digest), as a client would; its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(
        f"http://{registry.host}/v2/{name}/blobs/uploads/", method="POST", data=b""
    )
    with urllib.request.urlopen(start, timeout=10) as r:
        location = urllib.parse.urljoin(f"http://{registry.host}/", r.headers["Location"])
    separator = "&" if "?" in location else "?"
    finish = urllib.request.Request(
        f"{location}{separator}digest={digest}",
        method="PUT",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(finish, timeout=10):
        pass
    return digest


def put_manifest(registry: Registry, name: str, tag: str, manifest: dict[str, object]) -> None:
    """Store a manifest written by hand under ``tag`` (its ``mediaType`` as content type)."""
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{name}/manifests/{tag}",
        method="PUT",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": str(manifest["mediaType"])},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def manifest_of(registry: Registry, name: str, tag: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://{registry.host}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        data: dict[str, object] = json.loads(r.read())
    return data


@attrs.define
class StallingProxy:
    """A loopback HTTP proxy to a registry that sends half of one blob and then stalls
    (``stalled`` is set) until ``release`` is set, then sends the rest: a pull caught in
    the middle of a download, for as long as the test needs, with no timing involved."""

    host: str
    blob: str
    stalled: threading.Event = attrs.Factory(threading.Event)
    release: threading.Event = attrs.Factory(threading.Event)


@attrs.define
class CuttingProxy:
    """A loopback HTTP proxy to a registry that cuts its first ``cuts`` answers for one
    blob short, the connection shut down mid-body (the first after half of it, the others
    before any byte): a registry that vanishes mid-download.  ``ranges``: the Range
    header (None: none) of each request for the blob it had (with ``ignore_ranges`` it
    answers each with the whole blob, as a server that cannot send part of one)."""

    host: str
    blob: str
    cuts: int
    ranges: list[str | None] = attrs.Factory(list)


class _Forward(http.server.BaseHTTPRequestHandler):
    """A request forwarded to ``registry`` (the server's; its Host header kept, so the
    registry's upload locations name the proxy), its answer sent back, the blob's body by
    ``blob_body`` (the server's too); the first ``refuse_puts`` PUTs of a blob upload
    are answered 503 instead."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def _forward(self, method: str) -> None:
        dropped = ("range",) if self.server.ignore_ranges else ()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        if method == "PUT" and "/blobs/uploads/" in self.path and self.server.refuse_puts:
            self.server.refuse_puts -= 1
            self.server.refused.append(self.path)
            self.send_error(503, "the registry is busy: try again")
            return
        request = urllib.request.Request(
            f"http://{self.server.registry.host}{self.path}",
            data=data,
            headers=headers,
            method=method,
        )
        try:
            answer = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as exc:
            answer = exc
        body = answer.read()
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "HEAD":
            return
        if self.server.blob in self.path:
            self.server.blob_body(self, body)
            return
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def do_POST(self) -> None:
        self._forward("POST")

    def do_PUT(self) -> None:
        self._forward("PUT")

    def do_PATCH(self) -> None:
        self._forward("PATCH")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        registry: Registry,
        blob: str,
        blob_body: Callable[[_Forward, bytes], None],
        ignore_ranges: bool = False,
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.registry = registry
        self.blob = blob
        self.blob_body = blob_body
        self.ignore_ranges = ignore_ranges  # as a server that cannot send part of a file
        self.refuse_puts = 0
        self.refused: list[str] = []  # the PUTs answered 503
        self.host = ""  # host:port, once it serves


@contextlib.contextmanager
def _serving(server: _ProxyServer) -> Iterator[str]:
    """The proxy's host:port while it serves."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def stalling_proxy(registry: Registry, blob: str) -> Iterator[StallingProxy]:
    holder: list[StallingProxy] = []

    def stall(handler: _Forward, body: bytes) -> None:
        proxy = holder[0]
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        proxy.stalled.set()
        proxy.release.wait()
        with contextlib.suppress(OSError):  # the client may be gone (killed)
            handler.wfile.write(body[len(body) // 2 :])

    with _serving(_ProxyServer(registry, blob, stall)) as host:
        holder.append(StallingProxy(host, blob))
        try:
            yield holder[0]
        finally:
            holder[0].release.set()


@contextlib.contextmanager
def cutting_proxy(
    registry: Registry, blob: str, cuts: int, *, ignore_ranges: bool = False
) -> Iterator[CuttingProxy]:
    holder: list[CuttingProxy] = []

    def cut(handler: _Forward, body: bytes) -> None:
        proxy = holder[0]
        proxy.ranges.append(handler.headers.get("Range"))
        if len(proxy.ranges) > proxy.cuts:
            handler.wfile.write(body)
            return
        handler.wfile.write(body[: len(body) // 2 if len(proxy.ranges) == 1 else 0])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    with _serving(_ProxyServer(registry, blob, cut, ignore_ranges)) as host:
        holder.append(CuttingProxy(host, blob, cuts))
        yield holder[0]


@contextlib.contextmanager
def busy_proxy(registry: Registry, refuse_puts: int) -> Iterator[_ProxyServer]:
    """A loopback proxy to a registry that answers the first ``refuse_puts`` PUTs of blob
    uploads with HTTP 503 (``refused`` lists them; ``host`` is where it listens)."""
    server = _ProxyServer(registry, "no blob", lambda handler, body: None)
    server.refuse_puts = refuse_puts
    with _serving(server) as host:
        server.host = host
        yield server


def write_layout(path: Path, layers: list[bytes], tag: str = "1") -> list[str]:
    """An OCI layout written byte by byte: the tars ``layers`` gzipped as they are (hostile
    ones too), a config naming their diff_ids, Cmd ``/bin/sh``, tagged ``tag``; the hex
    digests of the layer blobs."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers],
        },
    }
    compressed = [blob(gzip.compress(layer, compresslevel=1)) for layer in layers]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            **blob(json.dumps(config).encode()),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **c} for c in compressed
        ],
    }
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **blob(json.dumps(manifest).encode()),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return [str(c["digest"]).removeprefix("sha256:") for c in compressed]


def add_index(layout: Path, new_tag: str, members: Iterable[tuple[str, str]]) -> None:
    """Tag ``new_tag`` in an OCI layout: an index of the manifests of ``members``, each a
    (tag, "os/arch[/variant]") pair; a tag may appear once per platform."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    by_tag = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m
        for m in index["manifests"]
        if "org.opencontainers.image.ref.name" in m.get("annotations", {})
    }
    entries = []
    for tag, platform in members:
        os_name, arch, *variant = platform.split("/")
        entry = {k: by_tag[tag][k] for k in ("mediaType", "digest", "size")}
        named = {"os": os_name, "architecture": arch}
        if variant:
            named["variant"] = variant[0]
        entries.append({**entry, "platform": named})
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }
    ).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{digest}",
            "size": len(data),
            "annotations": {"org.opencontainers.image.ref.name": new_tag},
        }
    )
    index_path.write_text(json.dumps(index))

"""The OCI distribution protocol over httpx: probing, authentication, manifests, blobs.

``/v2/`` is probed first; its ``WWW-Authenticate`` challenge decides the scheme: a Bearer
challenge (realm, service) is answered by fetching a token from the realm for the
repository's pull scope, or a push's push and pull (with the credentials as basic auth, or
anonymously; an identity token is traded with OAuth 2's refresh-token grant), a
Basic challenge by sending the credentials with every request.  HTTPS is verified against
the system's CA bundle; plain HTTP is used only for loopback registries (127.0.0.0/8,
::1, localhost) and those the daemon was started with ``--insecure-registry`` for, as
Docker does.  Credentials never appear in a log line or an error message.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._store import atomic_write
from .reference import DEFAULT_REGISTRY, Reference

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BlobCut",
    "Credentials",
    "Registry",
    "RegistryError",
    "RegistryNotFound",
    "RegistryTransient",
    "open_registry",
]

HUB_HOST = "registry-1.docker.io"
HUB_AUTH_KEY = "https://index.docker.io/v1/"
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
TIMEOUT = 30.0  # seconds for each request; 10 to connect
MAX_TAG_PAGES = 100  # pages of a tag list followed (a registry answers 100 tags or more a page)
# The user name that marks the password as an identity token (an OAuth 2 refresh token),
# as Docker's credential helpers mark it.
IDENTITY_TOKEN = "<token>"

_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """The registry refused or failed a request; the message says which and why."""


class RegistryNotFound(RegistryError):
    """The registry has no such manifest or blob (its HTTP 404); ``code`` the first error
    code it gave (``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN`` ...), ``said`` its errors as
    Docker shows them (``manifest unknown: manifest unknown``)."""

    def __init__(self, message: str, code: str = "", said: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.said = said


class RegistryTransient(RegistryError):
    """A failure that may pass: the registry unreachable, a connection that broke, an
    answer of HTTP 5xx (a pull tries the download again, as Docker's does)."""


class BlobCut(RegistryTransient):
    """A blob's download broke off after its answer began (the connection closed or
    reset): what came so far is good, the rest may be asked for with a range."""


def host_of(registry: str) -> str:
    return HUB_HOST if registry == DEFAULT_REGISTRY else registry


def is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Credentials:
    """``<root>/auth.json`` (mode 0600): registry -> base64 of ``user:password``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        return {k: v for k, v in data.get("auths", {}).items() if isinstance(v, str)}

    @staticmethod
    def _key(registry: str) -> str:
        return HUB_AUTH_KEY if registry == DEFAULT_REGISTRY else registry

    def get(self, registry: str) -> tuple[str, str] | None:
        token = self._load().get(self._key(registry))
        if token is None:
            return None
        user, _, password = base64.b64decode(token).decode().partition(":")
        return user, password

    def set(self, registry: str, user: str, password: str) -> None:
        auths = self._load()
        auths[self._key(registry)] = base64.b64encode(f"{user}:{password}".encode()).decode()
        atomic_write(self.path, json.dumps({"auths": auths}).encode(), 0o600)
        os.chmod(self.path, 0o600)

    def remove(self, registry: str) -> bool:
        auths = self._load()
        if auths.pop(self._key(registry), None) is None:
            return False
        atomic_write(self.path, json.dumps({"auths": auths}).encode(), 0o600)
        return True


def ssl_context() -> ssl.SSLContext:
    """Certificates checked against the system's CA bundle (Python's defaults where none
    of the known paths has one)."""
    for bundle in CA_BUNDLES:
        if os.path.exists(bundle):
            return ssl.create_default_context(cafile=bundle)
    return ssl.create_default_context()


class Registry:
    """One registry, one repository: the requests a pull makes, and a push's (with
    ``actions="push,pull"``; ``sources``: other repositories of the registry whose blobs
    a push may mount, asked for with pull scope)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        registry: str,
        repository: str,
        *,
        insecure: bool,
        credentials: tuple[str, str] | None,
        actions: str = "pull",
        sources: tuple[str, ...] = (),
    ) -> None:
        self.client = client
        self.registry = registry
        self.repository = repository
        self.actions = actions
        self.sources = sources
        self.base = f"{'http' if insecure else 'https'}://{host_of(registry)}"
        self.credentials = credentials
        self._auth: str | None = None  # the Authorization header to send
        self._challenge: dict[str, str] | None = None  # a bearer challenge, to renew

    async def login(self) -> None:
        """Probe ``/v2/`` and authenticate as its challenge asks (the scope of
        ``actions``)."""
        import httpx

        try:
            r = await self.client.get(f"{self.base}/v2/")
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach registry {self.registry}: {_broken(exc)}") from None
        if r.status_code == 200:
            return
        if r.status_code != 401:
            raise RegistryError(
                f"registry {self.registry} answered /v2/ with HTTP {r.status_code}: "
                "not an OCI distribution registry?"
            )
        scheme, _, params = r.headers.get("www-authenticate", "").partition(" ")
        fields = dict(_CHALLENGE_RE.findall(params))
        if scheme.lower() == "basic":
            if self.credentials is None or self.credentials[0] == IDENTITY_TOKEN:
                raise RegistryError(
                    f"registry {self.registry} requires a login (boxctl login {self.registry})"
                )
            user, password = self.credentials
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._auth = f"Basic {token}"
        elif scheme.lower() == "bearer" and "realm" in fields:
            self._challenge = fields
            self._auth = f"Bearer {await self._token(fields)}"
        else:
            raise RegistryError(
                f"registry {self.registry} asks for an authentication scheme boxd does not "
                f"speak: {scheme or 'none given'}"
            )
        check = await self._get(f"{self.base}/v2/", allow=(200, 401, 404))
        if check.status_code == 401:
            raise RegistryError(f"registry {self.registry} refused the credentials")

    async def _token(self, challenge: dict[str, str]) -> str:
        import httpx

        params: list[tuple[str, str | int | float | bool | None]] = []
        if self.repository:
            params.append(("scope", f"repository:{self.repository}:{self.actions}"))
        params += [("scope", f"repository:{source}:pull") for source in self.sources]
        if "service" in challenge:
            params.append(("service", challenge["service"]))
        identity = self.credentials is not None and self.credentials[0] == IDENTITY_TOKEN
        try:
            if identity and self.credentials is not None:
                # OAuth 2's refresh-token grant, as Docker's client trades an identity token.
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": self.credentials[1],
                    "client_id": "boxd",
                    "scope": " ".join(str(value) for key, value in params if key == "scope"),
                    "service": challenge.get("service", ""),
                }
                r = await self.client.post(challenge["realm"], data=form)
            else:
                auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
                r = await self.client.get(challenge["realm"], params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"cannot reach the token server of {self.registry}: {_broken(exc)}"
            ) from None
        if r.status_code in (401, 403):
            what = "the identity token" if identity else "the credentials"
            raise RegistryError(
                f"the token server of {self.registry} refused "
                f"{what if self.credentials else 'an anonymous ' + self.actions} "
                f"(HTTP {r.status_code})"
            )
        if r.status_code != 200:
            raise RegistryError(
                f"the token server of {self.registry} answered HTTP {r.status_code}"
            )
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server of {self.registry} sent no token")
        return token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._auth is not None:
            headers["Authorization"] = self._auth
        return headers

    async def _get(
        self, url: str, *, headers: dict[str, str] | None = None, allow: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        return await self.request("GET", url, headers=headers, allow=allow)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        allow: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """One request with the credentials (a bearer token renewed once on a 401); an
        answer outside ``allow`` is a :class:`RegistryError` naming what the registry
        said."""
        import httpx

        for attempt in range(2):
            try:
                r = await self.client.request(
                    method, url, headers=self._headers(headers), content=content
                )
            except httpx.HTTPError as exc:
                raise RegistryTransient(f"{self.registry}: {_broken(exc)}") from None
            if not await self._renewed(r, attempt):
                break
        if r.status_code not in allow:
            raise _http_error(self.registry, self.repository, url, r)
        return r

    async def manifest(self, reference: str, accept: tuple[str, ...]) -> tuple[bytes, str]:
        """The manifest (bytes) and its media type, by tag or digest."""
        url = f"{self.base}/v2/{self.repository}/manifests/{reference}"
        r = await self._get(url, headers={"Accept": ", ".join(accept)})
        media_type = r.headers.get("content-type", "").split(";")[0].strip()
        return r.content, media_type

    async def tags(self) -> list[str]:
        """The repository's tags, in the registry's order (its pages followed)."""
        url = f"{self.base}/v2/{self.repository}/tags/list"
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            r = await self._get(url)
            listed = parse_json(r.content, "the tag list").get("tags") or []
            if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
                raise RegistryError(f"{self.registry}/{self.repository}: a bad tag list")
            tags += listed
            following = r.links.get("next", {}).get("url")
            if not following:
                break
            url = str(r.url.join(following))
        return tags

    @asynccontextmanager
    async def blob(self, digest: str, offset: int = 0) -> AsyncIterator[httpx.Response]:
        """A streaming response for the blob, from byte ``offset`` on (a range request: a
        download resumed; a registry that ignores it answers 200 with the whole blob);
        redirects followed, the Authorization header dropped when a redirect leaves the
        registry's host.  An error while its body is read is a :class:`BlobCut`."""
        import httpx

        url = f"{self.base}/v2/{self.repository}/blobs/{digest}"
        extra = {"Range": f"bytes={offset}-"} if offset else None
        try:
            for attempt in range(2):
                async with self.client.stream("GET", url, headers=self._headers(extra)) as r:
                    if r.status_code not in ((200, 206) if offset else (200,)):
                        await r.aread()
                        if await self._renewed(r, attempt):
                            continue
                        raise _http_error(self.registry, self.repository, url, r)
                    if r.status_code == 206 and not r.headers.get("content-range", "").startswith(
                        f"bytes {offset}-"
                    ):
                        raise RegistryError(
                            f"{self.registry}: fetching {digest}: the registry answered a "
                            f"range from byte {offset} with another one "
                            f"({r.headers.get('content-range')!r})"
                        )
                    try:
                        yield r
                    except httpx.TransportError as exc:
                        raise BlobCut(
                            f"{self.registry}: fetching {digest}: {_broken(exc)}"
                        ) from None
                    return
        except httpx.HTTPError as exc:
            raise RegistryTransient(f"{self.registry}: fetching {digest}: {_broken(exc)}") from None

    # ---- push -----------------------------------------------------------------------

    async def has_blob(self, digest: str) -> bool:
        """Whether the repository has the blob (HEAD)."""
        url = f"{self.base}/v2/{self.repository}/blobs/{digest}"
        return (await self.request("HEAD", url, allow=(200, 404))).status_code == 200

    async def start_upload(self, digest: str = "", source: str = "") -> str | None:
        """Begin a blob upload: its URL; None when ``digest`` was mounted from the
        repository ``source`` of the same registry instead (a failed mount begins an
        upload, as the distribution spec says)."""
        url = f"{self.base}/v2/{self.repository}/blobs/uploads/"
        if source:
            url += f"?mount={digest}&from={source}"
        r = await self.request("POST", url, allow=(201, 202))
        if r.status_code == 201 and source:
            return None
        location = r.headers.get("location")
        if r.status_code != 202 or not location:
            raise RegistryError(
                f"{self.registry}/{self.repository}: the registry began no upload "
                f"(HTTP {r.status_code}, no Location)"
            )
        return str(r.url.join(location))

    async def finish_upload(
        self, location: str, digest: str, size: int, chunks: AsyncIterator[bytes]
    ) -> None:
        """Send the blob's bytes to the upload at ``location`` in one PUT, with its digest."""
        import httpx

        url = httpx.URL(location).copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            r = await self.client.put(url, headers=self._headers(headers), content=chunks)
        except httpx.HTTPError as exc:
            raise RegistryTransient(
                f"{self.registry}: uploading {digest}: {_broken(exc)}"
            ) from None
        if r.status_code not in (201, 204):
            raise _http_error(self.registry, self.repository, f"/blobs/{digest}", r)

    async def put_manifest(self, tag: str, data: bytes, media_type: str) -> str:
        """Store a manifest under ``tag``; the digest the registry gives it."""
        url = f"{self.base}/v2/{self.repository}/manifests/{tag}"
        r = await self.request(
            "PUT", url, headers={"Content-Type": media_type}, content=data, allow=(201, 200)
        )
        return str(r.headers.get("docker-content-digest", ""))

    async def _renewed(self, r: httpx.Response, attempt: int) -> bool:
        """After a 401 to a bearer token (expired during a long pull, say): a new token
        from the same challenge, once; whether the request should be made again."""
        if r.status_code != 401 or attempt > 0 or self._challenge is None:
            return False
        self._auth = f"Bearer {await self._token(self._challenge)}"
        return True


# What OpenSSL (1.1 to 3.x) says of an answer that is no TLS record: plain HTTP's.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE")


def _broken(exc: Exception) -> str:
    """What an httpx error says: its own words, else those of the first cause that has
    any (trio's TLS and socket errors say nothing), with the system's reasons its
    connection attempts failed (``Connection refused``), else what it is; a TLS handshake
    answered in plain HTTP named as such, with the option that allows it."""
    import httpx

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ssl.SSLError) and c.reason in _NOT_TLS for c in chain):
        return (
            "it did not answer in TLS (a plain HTTP registry? boxd speaks plain HTTP "
            "only to loopback registries and those given with --insecure-registry)"
        )
    said = next((str(c) for c in chain if str(c)), "")
    reasons = sorted(  # trio's: "Error connecting to ('127.0.0.1', 1): Connection refused"
        {
            attempt.strerror.rpartition(": ")[2]
            for c in chain
            if isinstance(c, BaseExceptionGroup)
            for attempt in c.exceptions
            if isinstance(attempt, OSError) and attempt.strerror
        }
    )
    if said:
        return f"{said} ({', '.join(reasons)})" if reasons else said
    if isinstance(exc, httpx.TimeoutException):
        return f"nothing came for {TIMEOUT:.0f} seconds"
    return f"the connection broke ({type(exc).__name__})"


def _docker_words(error: dict[str, Any]) -> str:
    """A registry's error as Docker's errcode shows it: its code in words, its message
    (``manifest unknown: manifest unknown``)."""
    code = str(error.get("code") or "").lower().replace("_", " ")
    message = str(error.get("message") or "")
    return f"{code}: {message}" if code and message else code or message


def _http_error(registry: str, repository: str, url: str, r: httpx.Response) -> RegistryError:
    what = url.rsplit("/", 2)
    detail = said = code = ""
    try:
        errors = [e for e in r.json().get("errors") or [] if isinstance(e, dict)]
    except (ValueError, AttributeError):
        errors = []
    if errors:
        detail = ": " + "; ".join(str(e.get("message", e.get("code"))) for e in errors)
        code = str(errors[0].get("code") or "")
        said = "; ".join(_docker_words(e) for e in errors)
    if r.status_code == 404:
        return RegistryNotFound(
            f"{registry}/{repository}: {what[-2].rstrip('s')} {what[-1]} not found{detail}",
            code,
            said,
        )
    if r.status_code in (401, 403):
        return RegistryError(
            f"{registry}/{repository}: access denied (HTTP {r.status_code}){detail}; "
            f"the repository may not exist or may need 'boxctl login {registry}'"
        )
    busy = RegistryTransient if r.status_code >= 500 else RegistryError
    return busy(f"{registry}/{repository}: HTTP {r.status_code}{detail}")


@asynccontextmanager
async def open_registry(
    ref: Reference,
    *,
    insecure: frozenset[str],
    credentials: Credentials,
    user: tuple[str, str] | None = None,
    actions: str = "pull",
    sources: tuple[str, ...] = (),
) -> AsyncIterator[Registry]:
    """A logged-in :class:`Registry` for ``ref``'s repository (``user``: credentials to
    try instead of the stored ones, as ``boxctl login`` does; ``actions`` and ``sources``
    as :class:`Registry` takes them).  httpx (~2 MB of the daemon's memory with what it
    imports) is imported by the first pull, push or login."""
    import httpx

    plain = is_loopback(ref.registry) or ref.registry in insecure
    async with httpx.AsyncClient(
        verify=ssl_context(),
        timeout=httpx.Timeout(TIMEOUT, connect=10.0),
        follow_redirects=True,
        headers={"User-Agent": "boxd"},
    ) as client:
        registry = Registry(
            client,
            ref.registry,
            ref.repository,
            insecure=plain,
            credentials=user or credentials.get(ref.registry),
            actions=actions,
            sources=sources,
        )
        await registry.login()
        yield registry


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:  # nested too deep: a hostile registry
        raise RegistryError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return value

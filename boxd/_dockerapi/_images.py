"""Images: the image verbs of the native socket, their answers in Docker's shape; pull's
and load's progress as Docker's JSON lines; the built-in ``default``."""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import _platforms
from .._healthcheck import from_api as healthcheck_from_api
from .._healthcheck import to_api as healthcheck_to_api
from .._images.config import EMPTY_CONFIG
from .._images.messages import (
    MISSING,
    CommitRequest,
    DistributionRequest,
    DistributionResponse,
    HistoryRequest,
    ImageInspectRequest,
    ImagesRequest,
    ImagesResponse,
    ImportRequest,
    LoadedFrame,
    LoadRequest,
    LoginRequest,
    PruneImagesRequest,
    PulledFrame,
    PullingFrame,
    PullProgressFrame,
    PullRequest,
    PushedFrame,
    PushingFrame,
    PushProgressFrame,
    PushRequest,
    RemoveImageRequest,
    SaveRequest,
    TagRequest,
)
from .._images.reference import any_reference, parse_reference
from .._images.registry import IDENTITY_TOKEN
from .._images.store import NoSuchImage
from .._messages import OkResponse
from . import _shapes
from ._api import Answers, Api, Streamed, api_error, one_answer, unwrap
from ._http import ApiError, HttpConnection, Request
from ._router import route

# Image inspect's ContainerConfig where the image has none, as Docker shows it before API
# 1.45 (docker-compose 1.29 reads its Volumes when it recreates a container); and the
# fields of an image's Config dockerd fills in for a client older than API 1.50: 1.50's
# and a container's, never an image's.
_EMPTY_CONFIG = {
    "Hostname": "",
    "Domainname": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Image": "",
    **EMPTY_CONFIG,
}


async def images(api: Api, conn: HttpConnection, req: Request) -> None:
    filters = _shapes.parse_filters(req.arg("filters"))
    rows = await image_rows(api, filters, shared=req.flag("shared-size"), all=req.flag("all"))
    for row in rows:
        versioned(req, row)
        if not req.at_least("1.43") and not row["RepoTags"] and not row["RepoDigests"]:
            row["RepoTags"], row["RepoDigests"] = ["<none>:<none>"], ["<none>@<none>"]
    await conn.respond_json(200, rows)


def versioned(req: Request, image: dict[str, Any]) -> dict[str, Any]:
    """An image's list row or inspect object as the client's API version has it: before
    1.44 with ``VirtualSize``, which Docker has long given as the same as ``Size``."""
    if not req.at_least("1.44"):
        image["VirtualSize"] = image["Size"]
    return image


async def image_rows(
    api: Api,
    filters: dict[str, list[str]] | None = None,
    *,
    shared: bool = False,
    all: bool = True,
) -> list[dict[str, Any]]:
    """The image list's rows, ``default`` among them (the image verbs list it);
    ``shared``: each one's SharedSize (its layers another image also has), else -1 as
    Docker's list; ``all``: the intermediate images too (see ImagesRequest)."""
    filters = filters or {}
    request = ImagesRequest(filters={k: tuple(v) for k, v in filters.items()}, all=all)
    answer: ImagesResponse = await one_answer(api.images.images, request)
    rows = []
    patterns = filters.get("reference", ())
    for image in answer.images:
        rows.append(
            {
                "Id": image.id,
                "ParentId": image.parent,
                # Of an image the filter selects, the references it matches, as Docker's.
                "RepoTags": [
                    _shapes.familiar(t)
                    for t in image.repo_tags
                    if not patterns or any_reference((t,), patterns)
                ],
                "RepoDigests": [
                    _shapes.familiar(d)
                    for d in image.repo_digests
                    if not patterns or _digest_matches(_shapes.familiar(d), patterns)
                ],
                "Created": _unix_time(image.created),
                "Size": image.size,
                "SharedSize": image.shared_size if shared else -1,
                "Labels": image.labels,
                "Containers": image.containers,
            }
        )
    return rows


def _digest_matches(digest: str, patterns: Sequence[str]) -> bool:
    """A reference filter's pattern against ``NAME@sha256:...`` or its NAME, as Docker's."""
    name = digest.partition("@")[0]
    return any(fnmatch.fnmatchcase(digest, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


async def inspect(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    """An image as the client's API version shows it: ``Container`` and ``ContainerConfig``
    before 1.45, the empty container fields of its Config before 1.50 (fewer in 1.50).
    1.49's ``platform`` (not another platform's image); 1.48's ``manifests`` asks for
    what a store of image indexes has, which boxd's is not (dockerd's overlay2 store
    answers it the same way, without them)."""
    wanted = platform_arg(req) if req.at_least("1.49") else None
    if wanted is not None and req.at_least("1.48") and req.flag("manifests"):
        raise ApiError(
            400, "conflicting options: manifests and platform options cannot both be set"
        )
    answer = await one_answer(api.images.inspect, ImageInspectRequest(image=name))
    if wanted is not None:
        check_platform(api, name, name, wanted)
    image: dict[str, Any] = dict(answer.image)
    image["RepoTags"] = [_shapes.familiar(t) for t in image["RepoTags"]]
    image["RepoDigests"] = [_shapes.familiar(d) for d in image["RepoDigests"]]
    built_by = image.pop("ContainerConfig")
    if not req.at_least("1.45") or _compose_v1(req):
        image["Container"], image["ContainerConfig"] = "", built_by or _EMPTY_CONFIG
    if not req.at_least("1.50"):  # the image verbs fill in 1.50's
        image["Config"] = {**_EMPTY_CONFIG, **image["Config"]}
    await conn.respond_json(200, versioned(req, image))


def _compose_v1(req: Request) -> bool:
    """Whether the client is docker-compose 1.x (its User-Agent says so): it negotiates
    the daemon's newest API version and then reads image inspect's ``ContainerConfig``,
    gone since 1.45, when it recreates a container (``KeyError: 'ContainerConfig'``, as
    it fails against Docker 25 and later); boxd gives it that field at any version."""
    return req.headers.get("user-agent", "").startswith("docker-compose/1.")


def platform_arg(req: Request, key: str = "platform") -> _platforms.Platform | None:
    """A query's OCI platform object (``{"os": "linux", "architecture": "arm64"}``: API
    1.46's push, 1.48's history, save and load, 1.49's inspect), in dockerd's words when it
    is not one; None when not given."""
    values = req.query.get(key, [])
    if len(values) > 1:
        raise ApiError(400, "multiple platform parameters not supported")  # dockerd 28's
    return decode_platform(values[0]) if values and values[0] else None


def decode_platform(text: str) -> _platforms.Platform:
    """One JSON-encoded OCI platform, as dockerd decodes it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ApiError(400, f"failed to parse platform: {exc}") from None
    keys = ("os", "architecture", "variant", "os.version")
    if not isinstance(value, dict) or not all(isinstance(value.get(k, ""), str) for k in keys):
        raise ApiError(400, f"failed to parse platform: {text!r} is not an OCI platform")
    os_name, arch, variant = (
        value.get("os", ""),
        value.get("architecture", ""),
        value.get("variant", ""),
    )
    if not (os_name or arch) and (variant or value.get("os.version") or value.get("os.features")):
        raise ApiError(
            400, "optional platform fields provided, but OS and Architecture are missing"
        )
    if not (os_name and arch):
        raise ApiError(400, "both OS and Architecture must be provided")
    try:
        if any("/" in part for part in (os_name, arch, variant)):
            raise ValueError(f"invalid platform {os_name}/{arch}/{variant}: a part holds a '/'")
        return _platforms.parse("/".join([p for p in (os_name, arch, variant) if p]))
    except ValueError as exc:
        raise ApiError(400, f"failed to parse platform: {exc}") from None


def check_platform(api: Api, image: str, reference: str, wanted: _platforms.Platform) -> None:
    """A stored image of another platform than ``wanted`` is "not found", in Docker's
    words (so the docker CLI pulls the platform asked for, unless --pull never)."""
    if image == "default" or image.startswith("/"):
        actual = _platforms.host()
    else:
        try:
            record = api.sup.images.lookup(image)
        except NoSuchImage:
            return  # the verb names it
        actual = _platforms.of_config(api.sup.images.config(record))
    try:
        _platforms.check(reference, wanted, actual)
    except _platforms.PlatformMismatch as exc:
        raise ApiError(404, str(exc)) from None


async def distribution(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    """What the registry holds under ``name``, read from it now (docker-py's
    ``get_registry_data``, a check whether a newer image is there): its manifest's or
    index's descriptor and the platforms it is for."""
    user, password = registry_auth(req)
    request = DistributionRequest(reference=name, username=user, password=password)
    answer: DistributionResponse = await one_answer(api.images.distribution, request)
    descriptor = {"mediaType": answer.media_type, "digest": answer.digest, "size": answer.size}
    await conn.respond_json(200, {"Descriptor": descriptor, "Platforms": list(answer.platforms)})


async def remove(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    """1.50's ``platforms``: one at most (a store of one platform per image, as dockerd's
    overlay2 store), the image not removed unless it is for it."""
    if req.at_least("1.50") and req.query.get("platforms"):
        if len(req.query["platforms"]) > 1:
            raise ApiError(400, "multiple platforms are not supported")
        check_platform(api, name, name, decode_platform(req.query["platforms"][0]))
    request = RemoveImageRequest(image=name, force=req.flag("force"), prune=not req.flag("noprune"))
    answer = await one_answer(api.images.remove, request)
    await conn.respond_json(
        200,
        [{"Untagged": _shapes.familiar(t)} for t in answer.untagged]
        + [{"Deleted": d} for d in answer.deleted],
    )


async def tag_image(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    repo = req.arg("repo") or ""
    if not repo:
        raise ApiError(400, "repository name (repo) must be given")
    target = f"{repo}:{req.arg('tag')}" if req.arg("tag") else repo
    await one_answer(api.images.tag, TagRequest(source=name, target=target))
    await conn.respond(201, content_type=None)


async def create(api: Api, conn: HttpConnection, req: Request) -> None:
    """A pull (``fromImage``) or an import of a root filesystem tar (``fromSrc=-``)."""
    source = req.arg("fromSrc")
    if source is None:
        await _pull(api, conn, req)
        return
    if source != "-":
        raise ApiError(400, "importing from a URL is not supported: send the tar as the body")
    repo, tag = req.arg("repo") or "", req.arg("tag") or ""
    ref = f"{repo}:{tag}" if repo and tag else repo
    answers = Streamed(conn, conn.body_chunks(), head_at_first_output=True)
    request = ImportRequest(
        reference=ref,
        changes=tuple(req.query.get("changes", ())),
        comment=req.arg("message") or "",
        platform=req.arg("platform") or "",
    )
    loaded = await _archive_verb(answers, api.images.import_, request)
    if loaded is not None:
        await answers.line({"status": loaded.images[0].id})
    await conn.end()


async def load(api: Api, conn: HttpConnection, req: Request) -> None:
    wanted = platform_arg(req) if req.at_least("1.48") else None
    request = LoadRequest(platform=_platforms.text(wanted) if wanted else "")
    answers = Streamed(conn, conn.body_chunks())
    loaded = await _archive_verb(answers, api.images.load, request)
    for image in loaded.images if loaded is not None else ():
        for tag in image.tags or (None,):
            text = (
                f"Loaded image: {_shapes.familiar(tag)}" if tag else f"Loaded image ID: {image.id}"
            )
            if tag in image.replaced:  # Docker's words
                text = (
                    f"The image {_shapes.familiar(tag)} already exists, renaming the old one "
                    f"with ID {image.replaced[tag]} to empty string\n{text}"
                )
            await answers.line({"stream": text + "\n"})
    await conn.end()


async def _archive_verb(
    answers: Streamed, verb: Callable[[Any, Any], Awaitable[None]], request: object
) -> LoadedFrame | None:
    """Run load or import: its LoadedFrame, or None once a failure after the stream
    began is its last line (before, the failure is the response)."""
    try:
        await verb(answers, request)
    except Exception as exc:
        error = api_error(unwrap(exc))
        if error is None or not answers.started:
            raise
        await answers.line({"errorDetail": {"message": error.message}, "error": error.message})
        return None
    assert isinstance(answers.last, LoadedFrame)
    return answers.last


async def save(api: Api, conn: HttpConnection, req: Request, name: str = "") -> None:
    names = [name] if name else req.query.get("names", [])
    if not names:
        raise ApiError(400, "no image named (names)")
    wanted = platform_arg(req) if req.at_least("1.48") else None
    if wanted is not None:  # each image is of one platform: that one, or none to save
        try:
            for image in names:
                check_platform(api, image, image, wanted)
        except ApiError:  # dockerd's overlay2 store's words
            text = _platforms.text(wanted)
            raise ApiError(404, f"no suitable export target found for platform {text}") from None
    answers = Streamed(conn, content_type="application/x-tar")
    await api.images.save(answers, SaveRequest(images=tuple(names)))
    await conn.end()


async def history(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    wanted = platform_arg(req) if req.at_least("1.48") else None
    answer = await one_answer(api.images.history, HistoryRequest(image=name))
    if wanted is not None:
        check_platform(api, name, name, wanted)
    rows = []
    for i, h in enumerate(answer.history):
        image_id, tags = answer.images[i] if i < len(answer.images) else (MISSING, ())
        rows.append(
            {
                "Id": image_id,
                "Created": _unix_time(str(h.get("created") or "")),
                "CreatedBy": str(h.get("created_by") or ""),
                "Tags": [_shapes.familiar(t) for t in tags] or None,
                "Size": int(h.get("size") or 0),
                "Comment": str(h.get("comment") or ""),
            }
        )
    await conn.respond_json(200, rows)


async def prune(api: Api, conn: HttpConnection, req: Request) -> None:
    filters = _shapes.parse_filters(req.arg("filters"))
    dangling = filters.pop("dangling", ["true"])
    everything = any(v.lower() in ("false", "0") for v in dangling)
    request = PruneImagesRequest(all=everything, filters={k: tuple(v) for k, v in filters.items()})
    answer = await one_answer(api.images.prune, request)
    deleted = [{"Untagged": _shapes.familiar(t)} for t in answer.untagged]
    deleted += [{"Deleted": d} for d in answer.deleted]
    await conn.respond_json(
        200, {"ImagesDeleted": deleted or None, "SpaceReclaimed": answer.reclaimed}
    )


async def commit(api: Api, conn: HttpConnection, req: Request) -> None:
    container = req.arg("container") or ""
    if not container:
        raise ApiError(400, "no container given (container)")
    repo, tag = req.arg("repo") or "", req.arg("tag") or ""
    ref = f"{repo}:{tag}" if repo and tag else repo
    request = CommitRequest(
        container=container,
        reference=ref,
        comment=req.arg("comment") or "",
        author=req.arg("author") or "",
        changes=tuple(req.query.get("changes", ())),
        pause=req.flag("pause", default=True),
        config=_commit_config(req.json()),
    )
    answer = await one_answer(api.images.commit, request)
    await conn.respond_json(201, {"Id": answer.id})


def _commit_config(body: object) -> dict[str, Any] | None:
    """The image configuration of a commit's body (docker-py's ``commit(conf=...)``), its
    fields checked by name: None when it sets nothing (the docker CLI sends null or an
    empty one).  The fields of a container's only (Hostname, Tty...) are not an image's:
    ignored, as by Docker."""
    given = _shapes.Fields(body, "config")
    found: dict[str, Any] = {}
    for key in ("Cmd", "Entrypoint"):
        if (command := given.command(key)) is not None:
            found[key] = command
    for key in ("Env", "OnBuild", "Shell"):
        if given.value(key) is not None:
            found[key] = given.strings(key)
    for key in ("User", "WorkingDir", "StopSignal"):
        if given.text(key):
            found[key] = given.text(key)
    if given.value("Labels") is not None:
        found["Labels"] = given.mapping("Labels")
    for key in ("ExposedPorts", "Volumes"):
        if given.value(key) is not None:
            found[key] = {name: {} for name in given.mapping_keys(key)}
    if given.value("Healthcheck") is not None:
        try:
            check = healthcheck_from_api(given.value("Healthcheck"), "config.Healthcheck")
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        found["Healthcheck"] = healthcheck_to_api(check)
    return found if any(found.values()) else None


async def _pull(api: Api, conn: HttpConnection, req: Request) -> None:
    """Docker's progress stream: one JSON object per line, begun once the image is found
    (its first layer's progress, or its end); a failure before is the response (404 for
    no such manifest, as dockerd's), once the stream has begun its last line
    (``errorDetail``), as the docker CLI expects.  A name without tag or digest pulls
    every tag of the repository (``docker pull -a``), as dockerd does: each tag's lines,
    then one status for the repository."""
    name = req.arg("fromImage") or ""
    if not name:
        raise ApiError(400, "fromImage must be given (importing a tar is not supported)")
    tag = req.arg("tag") or ""
    ref = name if not tag else (f"{name}@{tag}" if ":" in tag else f"{name}:{tag}")
    parsed = parse_reference(ref, default_tag=False)  # a bad one: a 400 before the stream
    repository = parsed.repository
    all_tags = parsed.tag is None and parsed.digest is None
    platform = req.arg("platform") or ""
    if platform:
        try:
            platform = _platforms.text(_platforms.parse(platform))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    user, password = registry_auth(req)
    request = PullRequest(
        reference=ref, platform=platform, username=user, password=password, all_tags=all_tags
    )
    started = downloaded = False

    async def line(value: dict[str, Any]) -> None:
        await conn.send(json.dumps(value).encode() + b"\r\n")

    async def forward(message: object) -> None:
        nonlocal started, downloaded
        if not started and isinstance(message, PullingFrame | PullProgressFrame | PulledFrame):
            started = True
            await conn.start_stream()
            if not all_tags:
                await line({"status": f"Pulling from {repository}", "id": tag or "latest"})
        if isinstance(message, PullingFrame):
            await line({"status": f"Pulling from {repository}", "id": message.tag})
        elif isinstance(message, PullProgressFrame):
            # Only a download has a progress bar, as dockerd sends it: the docker CLI on a
            # pipe leaves out every line that has one, and "Pull complete" must show.
            detail = {"current": message.current, "total": message.total}
            shown = detail if message.status == "Downloading" else {}
            await line({"status": message.status, "progressDetail": shown, "id": message.layer})
        elif isinstance(message, PulledFrame):
            if message.digest:  # the built-in default has none
                await line({"status": f"Digest: {message.digest}"})
            downloaded |= message.downloaded
            if not all_tags:
                await line({"status": _pull_status(message.reference, message.downloaded)})

    try:
        async with conn.cancelled_if_peer_closes():
            await api.images.pull(Answers(forward), request)
        if all_tags:
            await line({"status": _pull_status(parsed.familiar, downloaded)})
    except Exception as exc:
        error = api_error(unwrap(exc))
        if error is None or not started:
            raise
        await line({"errorDetail": {"message": error.message}, "error": error.message})
    await conn.end()


def _pull_status(name: str, downloaded: bool) -> str:
    news = "Downloaded newer image" if downloaded else "Image is up to date"
    return f"Status: {news} for {name}"


async def auth(api: Api, conn: HttpConnection, req: Request) -> None:
    """``docker login``: the credentials are tried on the registry and kept, as
    ``boxctl login`` keeps them (the CLI keeps its own copy for X-Registry-Auth)."""
    body = _shapes.Fields(req.json_object(), "body")  # strings, names in any case: as Go's
    user, password = body.text("username"), body.text("password")
    if not user:
        raise ApiError(400, "a username is required")
    server = body.text("serveraddress")
    await one_answer(
        api.images.login, LoginRequest(registry=server, username=user, password=password)
    )
    await conn.respond_json(200, {"Status": "Login Succeeded", "IdentityToken": ""})


def registry_auth(req: Request) -> tuple[str, str]:
    """The credentials of ``X-Registry-Auth`` (base64url JSON: ``username`` and
    ``password``, or ``auth``: base64 of user:password, or an ``identitytoken``, given as
    the user ``<token>``), as the docker CLI and docker-py send them; ("", "") when none
    are given."""
    header = req.headers.get("x-registry-auth", "").strip()
    if not header:
        return "", ""
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        auth = json.loads(raw) if raw.strip() else {}
        if not isinstance(auth, dict):
            raise ValueError("not a JSON object")
        user, password = str(auth.get("username") or ""), str(auth.get("password") or "")
        if not user and auth.get("auth"):
            user, _, password = base64.b64decode(str(auth["auth"])).decode().partition(":")
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"invalid X-Registry-Auth header: {exc}") from None
    if auth.get("identitytoken"):
        return IDENTITY_TOKEN, str(auth["identitytoken"])
    return user, password


async def push(api: Api, conn: HttpConnection, req: Request, name: str) -> None:
    """Docker's push stream: the repository, each layer's progress, each tag's digest
    (a line, then ``aux``); a failure once the stream has begun is its last line.
    Without ``tag``, every tag of the repository is pushed (the Engine API's rule)."""
    tag = req.arg("tag") or ""
    wanted = platform_arg(req) if req.at_least("1.46") else None
    if wanted is not None:  # an image is of one platform: that one, or none to push
        check_platform(api, f"{name}:{tag}" if tag else name, name, wanted)
    user, password = registry_auth(req)
    request = PushRequest(
        reference=f"{name}:{tag}" if tag else name,
        all_tags=not tag and ":" not in name.rpartition("/")[2],
        username=user,
        password=password,
    )
    started = announced = False

    async def line(value: dict[str, Any]) -> None:
        await conn.send(json.dumps(value).encode() + b"\r\n")

    async def forward(message: object) -> None:
        nonlocal started, announced
        if isinstance(message, OkResponse):
            await conn.start_stream()
            started = True
        elif isinstance(message, PushingFrame) and not announced:
            announced = True
            await line({"status": f"The push refers to repository [{message.repository}]"})
        elif isinstance(message, PushProgressFrame):
            detail = {"current": message.current, "total": message.total}
            shown = detail if message.status == "Pushing" else {}
            await line({"status": message.status, "progressDetail": shown, "id": message.layer})
        elif isinstance(message, PushedFrame):
            text = f"{message.tag}: digest: {message.digest} size: {message.size}"
            await line({"status": text})
            aux = {"Tag": message.tag, "Digest": message.digest, "Size": message.size}
            await line({"progressDetail": {}, "aux": aux})

    try:
        async with conn.cancelled_if_peer_closes():
            await api.images.push(Answers(forward), request)
    except Exception as exc:
        error = api_error(unwrap(exc))
        if error is None or not started:
            raise
        await line({"errorDetail": {"message": error.message}, "error": error.message})
    await conn.end()


def _unix_time(rfc3339: str) -> int:
    """Seconds of an RFC 3339 time (an image's ``created``), 0 if there is none."""
    try:
        return int(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


async def search(api: Api, conn: HttpConnection, req: Request) -> None:
    raise ApiError(
        501,
        "docker search is not supported by boxd: it pulls images by name, it does not"
        " search registries",
    )


ROUTES = [
    route("GET", r"/images/json", images),
    route("GET", r"/images/search", search),
    route("POST", r"/images/create", create, streamed=lambda req: req.arg("fromSrc") == "-"),
    route("GET", r"/images/get", save),
    route("POST", r"/images/load", load, streamed=lambda req: True),
    route("POST", r"/images/prune", prune),
    route("POST", r"/commit", commit, json=True),
    route("GET", r"/images/(.+)/json", inspect),
    route("GET", r"/images/(.+)/history", history),
    route("GET", r"/distribution/(.+)/json", distribution),
    route("GET", r"/images/(.+)/get", save),
    route("POST", r"/images/(.+)/tag", tag_image),
    route("POST", r"/images/(.+)/push", push),
    route("POST", r"/auth", auth, json=True),
    route("DELETE", r"/images/(.+)", remove),
]

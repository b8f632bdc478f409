"""boxctl's image commands: pull, push, images, rmi, tag, login, logout, image SUBCOMMAND.

The daemon does the work (as dockerd does); these only ask and show.  ``pull`` and
``push`` show Docker's per-layer progress on a terminal, and one line per finished layer
on a pipe.
"""

from __future__ import annotations

import io
import os
import sys
import time

from boxd import _human

from ._args import (
    ANY,
    APPEND,
    BOOL,
    CONTENT_TRUST,
    ONE,
    PRUNE_FILTER,
    REST,
    SOME,
    VALUE,
    Args,
    Command,
    Opt,
    check_content_trust,
    confirm,
    filters_of,
    print_removed,
    prune_filters,
    run_subcommand,
)
from ._client import OPERANDS, Client, CliError, call, check, print_json

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

FINAL = ("Pull complete", "Already exists")
PUSH_FINAL = ("Pushed", "Layer already exists", "Mounted from ")


class _Progress:
    """Docker's pull (and push) display: a line per layer rewritten in place on a
    terminal; on a pipe, a line when a layer is done (``final``: how such a status
    begins)."""

    def __init__(self, out: TextIO, final: tuple[str, ...] = FINAL) -> None:
        self.out = out
        self.final = final
        self.tty = out.isatty()
        self.order: list[str] = []
        self.lines: dict[str, str] = {}

    def update(self, frame: dict[str, Any]) -> None:
        layer, status = frame["layer"], frame["status"]
        text = status
        if status in ("Downloading", "Pushing") and frame["total"]:
            width = 50
            done = min(width, width * frame["current"] // frame["total"])
            bar = "=" * max(done - 1, 0) + (">" if done else "") + " " * (width - done)
            text = (
                f"{status} [{bar}]  {_human.size(frame['current'])}/{_human.size(frame['total'])}"
            )
        if layer not in self.lines:
            self.order.append(layer)
            if self.tty:
                self.out.write(f"{layer}: {text}\n")
        elif self.tty:
            up = len(self.order) - self.order.index(layer)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{layer}: {text}\x1b[{up}B\r")
        final = status.startswith(self.final)
        if not self.tty and final and not self.lines.get(layer, "").startswith(self.final):
            self.out.write(f"{layer}: {status}\n")
        self.lines[layer] = status if final else text
        self.out.flush()


def pull(socket: str, reference: str, platform: str, out: TextIO) -> dict[str, Any]:
    """Pull through the daemon, showing progress on ``out``; the PulledFrame.  Docker's
    first line (``1.36: Pulling from library/busybox``) comes with the first news of the
    image, so a pull that finds nothing says only why."""
    from boxd._images.reference import parse_reference

    try:
        ref = parse_reference(reference)
        heading = f"{ref.digest or ref.tag}: Pulling from {ref.repository}\n"
    except ValueError:
        heading = ""  # the daemon refuses it in its words
    with Client(socket) as client:
        client.request({"type": "PullRequest", "reference": reference, "platform": platform})
        shown = _Progress(out)
        while True:
            frame = client.receive()
            if not isinstance(frame, dict):
                continue
            if heading and frame["type"] in ("PullProgressFrame", "PulledFrame"):
                out.write(heading)
                heading = ""
            if frame["type"] == "PullProgressFrame":
                shown.update(frame)
            elif frame["type"] == "PulledFrame":
                return frame
            else:
                check(frame)
                raise CliError(f"unexpected frame {frame['type']} during pull")


def _summary(frame: dict[str, Any], out: TextIO) -> None:
    """Docker's last lines: the digest, and whether anything new came."""
    if frame["digest"]:
        print(f"Digest: {frame['digest']}", file=out)
    if frame.get("downloaded"):
        print(f"Status: Downloaded newer image for {frame['reference']}", file=out)
    else:
        print(f"Status: Image is up to date for {frame['reference']}", file=out)


def pull_all_tags(socket: str, reference: str, platform: str, out: TextIO) -> None:
    """``pull -a``: every tag of the repository, each shown as a pull is (its heading,
    its layers, its digest), then one status for the repository, as ``docker pull -a``."""
    from boxd._images.reference import parse_reference

    request = {"type": "PullRequest", "reference": reference, "platform": platform}
    downloaded = False
    with Client(socket) as client:
        client.request({**request, "all_tags": True})
        shown = _Progress(out)
        while True:
            frame = client.receive()
            if not isinstance(frame, dict):
                continue
            if frame["type"] == "PullingFrame":
                repository = parse_reference(reference, default_tag=False).repository
                out.write(f"{frame['tag']}: Pulling from {repository}\n")
                shown = _Progress(out)
            elif frame["type"] == "PullProgressFrame":
                shown.update(frame)
            elif frame["type"] == "PulledFrame":
                if frame["digest"]:  # the built-in default has none
                    print(f"Digest: {frame['digest']}", file=out)
                downloaded |= bool(frame.get("downloaded"))
            elif frame["type"] == "EndFrame":
                news = "Downloaded newer image" if downloaded else "Image is up to date"
                print(f"Status: {news} for {reference}", file=out)
                return
            else:
                check(frame)
                raise CliError(f"unexpected frame {frame['type']} during pull")


def cmd_pull(args: Args) -> int:
    """Every failure exits 1, as ``docker pull``'s (``run``'s pull exits 125); ``-q``:
    only the reference pulled, as ``docker pull -q`` prints it; ``-a``: every tag."""
    check_content_trust(args)
    shown = io.StringIO() if args.quiet else sys.stdout
    try:
        if args.all_tags:
            pull_all_tags(args.socket, args.reference, args.platform or "", shown)
            print(args.reference)
            return 0
        frame = pull(args.socket, args.reference, args.platform or "", shown)
    except CliError as exc:
        raise CliError(str(exc), 1) from None
    _summary(frame, shown)
    print(frame["reference"])
    return 0


def cmd_push(args: Args) -> int:
    """Docker's push display; every failure exits 1, as ``docker push``'s."""
    check_content_trust(args)
    request = {"type": "PushRequest", "reference": args.reference, "all_tags": args.all_tags}
    out = sys.stdout
    announced = False
    try:
        with Client(args.socket) as client:
            client.request(request)
            shown = _Progress(out, PUSH_FINAL)
            while True:
                frame = client.receive()
                if not isinstance(frame, dict):
                    continue
                kind = frame["type"]
                if kind == "PushProgressFrame" and not args.quiet:
                    shown.update(frame)
                elif kind == "PushingFrame":
                    name = f"{frame['repository']}:{frame['tag']}"
                    if args.quiet:
                        print(name, file=out)
                    elif not announced:
                        print(f"The push refers to repository [{frame['repository']}]", file=out)
                        announced = True
                    shown = _Progress(out, PUSH_FINAL)
                elif kind == "PushedFrame" and not args.quiet:
                    line = f"{frame['tag']}: digest: {frame['digest']} size: {frame['size']}"
                    print(line, file=out)
                elif kind == "EndFrame":
                    return 0
                else:
                    check(frame)
    except CliError as exc:
        raise CliError(str(exc), 1) from None


def _wanted(args: Args) -> tuple[str, str, str] | None:
    """``--platform``, normalized (None: not given); a malformed one is refused."""
    if not getattr(args, "platform", None):
        return None
    from boxd import _platforms

    try:
        return _platforms.parse(args.platform)
    except ValueError as exc:
        raise CliError(str(exc), 125) from None


def ensure_platform(args: Args, image: str) -> None:
    """``--platform`` with ``default`` or a root filesystem directory: the host's."""
    wanted = _wanted(args)
    if wanted is not None:
        from boxd import _platforms

        try:
            _platforms.check(image, wanted, _platforms.host())
        except _platforms.PlatformMismatch as exc:
            raise CliError(str(exc), 125) from None


def ensure_image(args: Args, image: str) -> None:
    """``run``/``create``'s ``--pull missing|always|never`` (progress on stderr); with
    ``--platform``, a stored image of another platform counts as missing (Docker's rule:
    pulled, or with ``--pull never`` refused in Docker's words)."""
    policy = args.pull
    wanted = _wanted(args)
    out = io.StringIO() if args.quiet else sys.stderr  # -q: nothing shown
    if policy == "never" and wanted is None:
        return
    mismatch = None
    if policy != "always":
        try:
            found = call(args.socket, {"type": "ImageInspectRequest", "image": image})["image"]
        except CliError as exc:
            if exc.kind != "not_found":
                raise
            found = None
        if found is not None:
            if wanted is None:
                return
            from boxd import _platforms

            actual = {"os": found["Os"], "architecture": found["Architecture"]}
            actual["variant"] = found.get("Variant", "")
            try:
                _platforms.check(image, wanted, _platforms.of_config(actual))
                return
            except _platforms.PlatformMismatch as exc:
                if policy == "never":
                    raise CliError(str(exc), 125) from None
                mismatch = exc
        elif policy == "never":
            return  # create names the missing image
        print(f"Unable to find image '{_tagged(image)}' locally", file=out)
    platform = "/".join(p for p in wanted if p) if wanted is not None else ""
    try:
        frame = pull(args.socket, image, platform, out)
    except CliError as exc:
        if mismatch is None:
            raise
        raise CliError(f"{mismatch} (and pulling {platform} failed: {exc})", 125) from None
    _summary(frame, out)


def _tagged(ref: str) -> str:
    """A reference as Docker names it when it pulls: ``busybox`` -> ``busybox:latest``."""
    last = ref.rpartition("/")[2]
    return familiar(ref if ":" in last or "@" in last else ref + ":latest")


def familiar(ref: str) -> str:
    """A stored name as Docker shows it: ``docker.io/library/busybox:latest`` ->
    ``busybox:latest``, ``docker.io/me/app@sha256:...`` -> ``me/app@sha256:...``."""
    if ref.startswith("docker.io/library/") and ref.count("/") == 2:
        return ref.removeprefix("docker.io/library/")
    return ref.removeprefix("docker.io/")


def _short_name(tag: str) -> tuple[str, str]:
    """``docker.io/library/busybox:latest`` -> (``busybox``, ``latest``)."""
    name, _, tag_part = familiar(tag).rpartition(":")
    return name, tag_part


def _ago(created: str, now: float) -> str:
    """``2024-05-01T10:00:00.123456789Z`` -> ``3 months ago``, in go-units' words as
    Docker's lists (``Less than a second ago``, ``1 second ago``, ``About a minute ago``)."""
    t = _created(created)
    return "N/A" if t is None else _human.duration(now - t) + " ago"


def _created(created: str) -> float | None:
    """An RFC 3339 time (nanoseconds too: cut to the microseconds ``datetime`` takes) as a
    Unix time; None if there is none."""
    from datetime import datetime  # (not re: it and enum cost ~4 ms of `images`)

    try:
        return datetime.fromisoformat(_human.to_microseconds(created)).timestamp()
    except ValueError:
        return None


# The fields of the docker CLI's image formatter, and its table's headers.
IMAGE_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "SIZE",
}


def image_rows(images: list[dict[str, Any]], now: float, *, trunc: bool) -> list[dict[str, str]]:
    """A row per repository and tag of each image (``<none>`` for what it lacks), with the
    docker CLI's fields and their values as it shows them."""
    rows = []
    for i in images:
        t = _created(i["created"])
        common = {
            "ID": i["id"][7:19] if trunc else i["id"],
            "CreatedSince": _ago(i["created"], now),
            "CreatedAt": "" if t is None else _utc(t),
            "Size": _human.size(i["size"]),
            "Containers": str(i["containers"]),
            "SharedSize": "N/A",  # as Docker's list: computed by system df -v only
            "UniqueSize": "N/A",
            "VirtualSize": _human.size(i["size"], 4),
        }
        for name, tag, digest in _names(i):
            rows.append({"Repository": name, "Tag": tag, "Digest": digest, **common})
    return rows


def _utc(t: float) -> str:
    """A time as Docker's formatters print it (Go's time.String of UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(t))


def cmd_images(args: Args) -> int:
    filters = filters_of(
        args.filter,
        "dangling=true|false, label=KEY[=VALUE], before=IMAGE, since=IMAGE, reference=PATTERN",
    )
    reference = _one(args, args.reference)
    if reference:
        filters.setdefault("reference", []).append(reference)
    request = {"type": "ImagesRequest", "filters": filters, "all": args.all}
    images = call(args.socket, request)["images"]
    if args.format == "json":  # boxd's own records (Docker's fields: '{{json .}}')
        print_json(images)
        return 0
    rows = image_rows(images, time.time(), trunc=not args.no_trunc)
    if args.quiet and not args.format:  # a line per row, as Docker's: two tags, twice
        for r in rows:
            print(r["ID"])
        return 0
    from ._template import Template, print_formatted

    fmt = args.format
    if fmt in (None, "", "table"):
        digest = "\t{{.Digest}}" if args.digests else ""
        fmt = "table {{.Repository}}\t{{.Tag}}" + digest + "\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    print_formatted(Template(fmt, strict=True), rows, IMAGE_HEADERS)
    return 0


def _names(image: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows of an image as the docker CLI lists them: one per tag
    with its repository's digest, one per repository known only by a digest (a pull by
    digest: tag ``<none>``), or ``<none>`` thrice."""
    digests: dict[str, str] = {}
    for repo_digest in image["repo_digests"]:
        name, _, digest = repo_digest.partition("@")
        digests.setdefault(name, digest)
    rows = []
    tagged = set()
    for tag in image["repo_tags"]:
        full, _, _ = tag.rpartition(":")
        tagged.add(full)
        rows.append((*_short_name(tag), digests.get(full, "<none>")))
    rows.extend((familiar(n), "<none>", d) for n, d in digests.items() if n not in tagged)
    return rows or [("<none>", "<none>", "<none>")]


def cmd_image_inspect(args: Args) -> int:
    """``docker image inspect``: ``boxctl inspect --type image`` (``-f`` too)."""
    from ._inspect import show

    return show(args, args.images, "image")


def cmd_rmi(args: Args) -> int:
    status = 0
    for ref in args.images:
        try:
            request = {"type": "RemoveImageRequest", "image": ref, "force": args.force}
            r = call(args.socket, {**request, "prune": not args.no_prune})
        except CliError as exc:
            # -f: one that is not there is said, no failure (docker 28's rmi -f)
            print(f"boxctl: {exc}", file=sys.stderr)
            status = status or int(not (args.force and exc.kind == "not_found"))
            continue
        for tag in r["untagged"]:
            print(f"Untagged: {familiar(tag)}")
        for digest in r["deleted"]:
            print(f"Deleted: {digest}")
    return status


def cmd_tag(args: Args) -> int:
    call(args.socket, {"type": "TagRequest", "source": args.source, "target": args.target})
    return 0


def _server(args: Args) -> str:
    return _one(args, args.server) or "docker.io"


def cmd_login(args: Args) -> int:
    username = args.username
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    elif args.password is not None:
        password = args.password
    else:
        if username is None:
            username = input("Username: ")
        import getpass  # only a prompt needs it (termios, ...)

        password = getpass.getpass("Password: ")
    if not username:
        raise CliError("boxctl login: a username is required (-u)")
    registry = _server(args)
    request = {"type": "LoginRequest", "registry": registry, "username": username}
    try:
        call(args.socket, {**request, "password": password})
    except CliError as exc:  # a refused login or an unreachable registry: docker login's 1
        raise CliError(str(exc), 1) from None
    print("Login Succeeded")
    return 0


def cmd_logout(args: Args) -> int:
    registry = _server(args)
    call(args.socket, {"type": "LogoutRequest", "registry": registry})
    print(f"Removing login credentials for {registry}")
    return 0


def cmd_save(args: Args) -> int:
    return _receive_archive(args, {"type": "SaveRequest", "images": args.images})


def cmd_export(args: Args) -> int:
    return _receive_archive(args, {"type": "ExportRequest", "container": args.container})


def _receive_archive(args: Args, request: dict[str, Any]) -> int:
    """Write the stdout byte frames that answer ``request`` to -o FILE or stdout.

    As the docker CLI's: FILE is written beside itself and renamed into place at the
    end, so a failure (a missing image, a daemon gone) leaves no file or the old one,
    and an output path that cannot be written is refused before the daemon is asked.
    """
    if args.output is None and sys.stdout.isatty():
        raise CliError(
            f"{args.prog}: cowardly refusing to write an archive to a terminal "
            "(use -o FILE or redirect)"
        )
    temp = None
    out: BinaryIO = sys.stdout.buffer
    if args.output:
        head, tail = os.path.split(args.output)
        temp = os.path.join(head, f".{tail}.boxctl-{os.getpid()}")
        try:
            out = open(temp, "xb")  # noqa: SIM115
        except OSError as exc:
            why = f"invalid output path {args.output}: {exc.strerror}"
            raise CliError(f"{args.prog}: {why}") from None
    try:
        with Client(args.socket) as client:
            client.request(request)
            while True:
                frame = client.receive()
                if isinstance(frame, tuple):
                    out.write(frame[1])
                    continue
                if frame["type"] == "EndFrame":
                    break
                check(frame)
        if temp is not None:
            out.close()
            try:
                os.rename(temp, args.output)
            except OSError as exc:
                raise CliError(f"{args.prog}: cannot write {args.output}: {exc.strerror}") from None
            temp = None
        return 0
    finally:
        if temp is not None:
            out.close()
            os.unlink(temp)


def _send_file(args: Args, request: dict[str, Any], path: str | None) -> list[dict[str, Any]]:
    """Send a file (or stdin) after the request as stdin frames; the LoadedFrame's images."""
    try:
        source = open(path, "rb") if path and path != "-" else sys.stdin.buffer  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"{args.prog}: open {path}: {exc.strerror}") from None
    try:
        with Client(args.socket) as client:
            client.request(request)
            while chunk := source.read(1 << 20):
                client.send_bytes(0, chunk)
            client.send_bytes(0, b"")
            while True:
                frame = client.receive()
                if isinstance(frame, dict):
                    try:
                        check(frame)
                    except CliError as exc:  # docker load's and import's 1
                        raise CliError(str(exc), 1) from None
                    if frame["type"] == "LoadedFrame":
                        images: list[dict[str, Any]] = frame["images"]
                        return images
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def cmd_load(args: Args) -> int:
    if args.input is None and sys.stdin.isatty():
        raise CliError("boxctl load: give -i FILE or an archive on stdin")
    for image in _send_file(args, {"type": "LoadRequest"}, args.input):
        for tag in image["tags"]:
            if tag in image["replaced"]:  # Docker's words
                print(
                    f"The image {tag} already exists, renaming the old one with ID "
                    f"{image['replaced'][tag]} to empty string"
                )
            print(f"Loaded image: {tag}")
        if not image["tags"]:
            print(f"Loaded image ID: {image['id']}")
    return 0


def _one(args: Args, words: list[str]) -> str:
    if len(words) > 1:
        raise CliError(f"{args.prog}: unexpected argument {words[1]!r}", OPERANDS)
    return words[0] if words else ""


def cmd_import(args: Args) -> int:
    request = {
        "type": "ImportRequest",
        "reference": _one(args, args.reference),
        "changes": args.change or [],
        "comment": args.message or "",
    }
    (image,) = _send_file(args, request, args.file)
    print(image["id"])
    return 0


def cmd_commit(args: Args) -> int:
    request = {
        "type": "CommitRequest",
        "container": args.container,
        "reference": _one(args, args.reference),
        "comment": args.message or "",
        "author": args.author or "",
        "changes": args.change or [],
        "pause": args.pause,
    }
    print(call(args.socket, request)["id"])
    return 0


_CHANGE = Opt(
    "-c",
    "--change",
    kind=APPEND,
    metavar="INSTRUCTION",
    help="a Dockerfile instruction for the image: CMD, ENTRYPOINT, ENV, EXPOSE, "
    "HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR",
)


HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def cmd_history(args: Args) -> int:
    """docker history's rows, fields (``--format``), ``-q``, ``-H=false`` (times as RFC
    3339, sizes in bytes) and ``--no-trunc``; ``--format json``: the image config's own
    history entries (``empty_layer`` too, which Docker's rows cannot tell)."""
    answer = call(args.socket, {"type": "HistoryRequest", "image": args.image})
    if args.format == "json":
        print_json(answer["history"])
        return 0
    # Each row's image (the image's, those it was committed or built from), as the docker
    # CLI shows them; the others' <missing>.
    ids = [
        str(i) if args.no_trunc or not str(i).startswith("sha256:") else str(i)[7:19]
        for i, _tags in answer["images"]
    ]
    now = time.time()
    rows = []
    for n, h in enumerate(answer["history"]):
        by = str(h.get("created_by", ""))
        if not args.no_trunc and len(by) > 45:
            by = by[:44] + "…"  # as the docker CLI shortens it
        t = _created(str(h.get("created", "")))
        at = "" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        size = int(h.get("size") or 0)
        rows.append(
            {
                "ID": ids[n] if n < len(ids) else "<missing>",
                "CreatedSince": _ago(str(h.get("created", "")), now) if args.human else at,
                "CreatedAt": at,
                "CreatedBy": by,
                "Size": _human.size(size) if args.human else str(size),
                "Comment": str(h.get("comment", "")),
            }
        )
    fmt = args.format
    if args.quiet and not fmt:
        fmt = "{{.ID}}"
    if fmt in (None, "", "table"):  # -H=false: the time as written, CREATED AT
        created = "{{.CreatedSince}}" if args.human else "{{.CreatedAt}}"
        fmt = f"table {{{{.ID}}}}\t{created}\t{{{{.CreatedBy}}}}\t{{{{.Size}}}}\t{{{{.Comment}}}}"
    from ._template import Template, print_formatted

    print_formatted(Template(fmt, strict=True), rows, HISTORY_HEADERS)
    return 0


DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE"}
DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def cmd_df(args: Args) -> int:
    """docker system df's rows and fields (``--format``); ``json``: boxd's own record
    (with its count of layers); ``-v``: each image, container and volume."""
    if args.verbose:
        return _df_verbose(args)
    r = call(args.socket, {"type": "SystemDfRequest"})
    if args.format == "json":
        print_json(r)
        return 0

    def row(kind: str, total: int, active: int, size: int, reclaimable: int) -> dict[str, str]:
        share = f" ({100 * reclaimable // size}%)" if size else ""
        return {
            "Type": kind,
            "TotalCount": str(total),
            "Active": str(active),
            "Size": _human.size(size, 4),
            "Reclaimable": _human.size(reclaimable, 4) + share,
        }

    rows = [
        row("Images", r["images"], r["images_active"], r["images_size"], r["images_reclaimable"]),
        row("Containers", r["containers"], r["containers_running"], r["containers_size"],
            r["containers_reclaimable"]),
        row("Local Volumes", r["volumes"], r["volumes_active"], r["volumes_size"],
            r["volumes_reclaimable"]),
        # Build steps are images here, counted above; the Engine API's df says the same.
        row("Build Cache", 0, 0, 0, 0),
    ]  # fmt: skip
    from ._template import Template, print_formatted

    fmt = DF_TABLE if args.format in (None, "", "table") else args.format
    print_formatted(Template(fmt, strict=True), rows, DF_HEADERS)
    return 0


# docker system df -v's tables (docker/cli's disk usage formatter), from the Engine API's
# /system/df body the daemon makes (DockerDfRequest).
DF_IMAGES = (
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    "\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}"
)
DF_CONTAINERS = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}"
    "\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}"
)
DF_VOLUMES = "table {{.Name}}\t{{.Links}}\t{{.Size}}"
DF_CACHE = (
    "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}"
    "\t{{.UsageCount}}\t{{.Shared}}"
)
DF_VERBOSE_HEADERS = {
    "Repository": "REPOSITORY",
    "CreatedSince": "CREATED",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "Command": "COMMAND",
    "LocalVolumes": "LOCAL VOLUMES",
    "RunningFor": "CREATED",
    "Names": "NAMES",
    "Name": "VOLUME NAME",
    "Links": "LINKS",
    "CacheType": "CACHE TYPE",
    "LastUsedSince": "LAST USED",
    "UsageCount": "USAGE",
}


def _df_verbose(args: Args) -> int:
    """``system df -v``: docker's tables of the images (each one's shared and unique
    bytes, the containers using it), the containers (their volumes and the bytes they
    wrote) and the volumes (their users and bytes), and the build cache (none: build steps
    are images here)."""
    if args.format not in (None, "", "table"):
        raise CliError(f"invalid --format {args.format!r} with --verbose: only the tables")
    from ._ps import shown_command
    from ._template import Template, print_formatted

    usage = call(args.socket, {"type": "DockerDfRequest"})["shaped"]
    now = time.time()

    def size(n: int | None) -> str:
        return "N/A" if n is None or n < 0 else _human.size(n)

    def ago(unix: float) -> str:
        return _human.duration(now - unix) + " ago"

    images = []
    for i in usage["Images"] or []:
        repo = tag = "<none>"
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:  # the first one only, as docker's
            repo, tag = _short_name(tags[0])
        shared = i.get("SharedSize", -1)
        images.append(
            {
                "Repository": repo,
                "Tag": tag,
                "ID": i["Id"].removeprefix("sha256:")[:12],
                "CreatedSince": ago(i["Created"]),
                "Size": size(i["Size"]),
                "SharedSize": size(shared),
                "UniqueSize": "N/A" if shared < 0 else size(i["Size"] - shared),
                "Containers": "N/A" if i.get("Containers", -1) < 0 else str(i["Containers"]),
            }
        )
    containers = []
    for c in usage["Containers"] or []:
        names = [n.removeprefix("/") for n in c["Names"]]
        containers.append(
            {
                "ID": c["Id"][:12],
                "Image": c["Image"],
                "Command": shown_command(c["Command"], trunc=True),
                "LocalVolumes": str(sum(1 for m in c["Mounts"] if m.get("Driver") == "local")),
                "Size": size(c.get("SizeRw") or 0),  # without its image's, as docker's df
                "RunningFor": ago(c["Created"]),
                "Status": c["Status"],
                "Names": next((n for n in names if "/" not in n), ",".join(names)),
            }
        )
    volumes = [
        {
            "Name": v["Name"],
            "Links": str(v["UsageData"]["RefCount"]),
            "Size": size(v["UsageData"]["Size"]),
        }
        for v in usage["Volumes"] or []
    ]
    none: list[dict[str, str]] = []  # build steps are images here: no build cache
    sections = (  # each with its ID column's header
        ("Images space usage:", DF_IMAGES, images, "IMAGE ID"),
        ("Containers space usage:", DF_CONTAINERS, containers, "CONTAINER ID"),
        ("Local Volumes space usage:", DF_VOLUMES, volumes, ""),
        (f"Build cache usage: {size(0)}", DF_CACHE, none, "CACHE ID"),
    )
    for n, (title, fmt, rows, id_header) in enumerate(sections):
        print(("\n" if n else "") + title + "\n")
        headers = {**DF_VERBOSE_HEADERS, "ID": id_header}
        print_formatted(Template(fmt, strict=True), rows, headers)
    return 0


def _system_commands() -> dict[str, Command]:
    """Docker's system group: its own df and prune, and events and info as aliases."""
    from ._cli import find_command
    from ._volumes import SYSTEM_PRUNE

    commands = {"df": SYSTEM_DF, "prune": SYSTEM_PRUNE}
    for name in ("events", "info"):
        command = find_command(name)
        assert command is not None
        commands[name] = command
    return commands


def cmd_system(args: Args) -> int:
    return run_subcommand(SYSTEM_COMMAND, args, _system_commands())


def cmd_prune(args: Args) -> int:
    """Docker's ``image prune``: asked first (``-f``: not), then what went under ``Deleted
    Images:`` and the space reclaimed."""
    warning = (
        "WARNING! This will remove all images without at least one container associated to them."
        if args.all
        else "WARNING! This will remove all dangling images."
    )
    filters = prune_filters(args.filter)
    if not confirm(warning, args.force):
        return 0
    r = call(args.socket, {"type": "PruneImagesRequest", "all": args.all, "filters": filters})
    print_removed("Deleted Images:", pruned_lines(r))
    print(f"Total reclaimed space: {_human.size(r['reclaimed'], 4)}")
    return 0


def pruned_lines(response: dict[str, Any]) -> list[str]:
    """A PruneImagesResponse's lines as Docker prints them: ``untagged: busybox:latest``,
    ``deleted: sha256:...``."""
    lines = [f"untagged: {familiar(t)}" for t in response["untagged"]]
    return lines + [f"deleted: {d}" for d in response["deleted"]]


PLATFORM = Opt("--platform", kind=VALUE, help="os/arch[/variant] (default: the daemon's)")
IMAGES_OPTIONS = (
    Opt("-q", "--quiet", help="only ids"),
    Opt("-a", "--all", help="also untagged images others were committed from"),
    Opt("--digests", help="show each repository's digest"),
    Opt("--no-trunc", help="show whole image ids"),
    Opt(
        "-f",
        "--filter",
        kind=APPEND,
        metavar="KEY=VALUE",
        help="dangling, label (every one given), before, since, until, reference",
    ),
    Opt(
        "--format",
        kind=VALUE,
        help="table, json (boxd's records), or a Go template ({{.Repository}}, {{json .}})",
    ),
)
IMAGES_OPERANDS = (("reference", ANY, "[REPOSITORY[:TAG]]"),)
RMI_OPTIONS = (
    Opt("-f", "--force", help="also an image stopped containers use"),
    Opt("--no-prune", help="keep the untagged images it was committed from"),
)

SYSTEM_COMMAND = Command(
    "system",
    cmd_system,
    "df: disk used by images, layers, containers and volumes; prune: what is unused; events, info",
    (),
    (("words", REST, "df|prune|events|info [OPTIONS]"),),
    subcommands=lambda: _system_commands().items(),
)


COMMANDS = (
    Command(
        "pull",
        cmd_pull,
        "pull an image from a registry",
        (
            PLATFORM,
            Opt("-a", "--all-tags", help="every tag of the repository"),
            Opt("-q", "--quiet", help="only the reference pulled"),
            CONTENT_TRUST,
        ),
        (("reference", ONE, "IMAGE"),),
    ),
    Command(
        "push",
        cmd_push,
        "push an image to a registry",
        (
            Opt("-a", "--all-tags", help="every tag of the repository"),
            Opt("-q", "--quiet", help="only the references pushed"),
            CONTENT_TRUST,
        ),
        (("reference", ONE, "NAME[:TAG]"),),
    ),
    Command(
        "images",
        cmd_images,
        "list images",
        IMAGES_OPTIONS,
        IMAGES_OPERANDS,
    ),
    Command("rmi", cmd_rmi, "remove images", RMI_OPTIONS, (("images", SOME, "IMAGE"),)),
    Command(
        "tag", cmd_tag, "tag an image", (), (("source", ONE, "SOURCE"), ("target", ONE, "TARGET"))
    ),
    Command(
        "login",
        cmd_login,
        "log in to a registry (credentials kept by the daemon, mode 0600)",
        (
            Opt("-u", "--username", kind=VALUE),
            Opt("-p", "--password", kind=VALUE),
            Opt("--password-stdin", help="read the password from stdin"),
        ),
        (("server", ANY, "SERVER"),),
    ),
    Command("logout", cmd_logout, "log out of a registry", (), (("server", ANY, "SERVER"),)),
    Command(
        "save",
        cmd_save,
        "write images to an archive (OCI layout + Docker manifest.json)",
        (Opt("-o", "--output", kind=VALUE, help="the file (default: stdout)"),),
        (("images", SOME, "IMAGE"),),
    ),
    Command(
        "load",
        cmd_load,
        "load images from a Docker or OCI archive",
        (
            Opt("-i", "--input", kind=VALUE, help="the file (default: stdin)"),
            # Docker's hides its progress bars; boxctl shows none, only what was loaded.
            Opt("-q", "--quiet", help="no progress (there is none: the names loaded only)"),
        ),
    ),
    Command(
        "import",
        cmd_import,
        "make an image from a root filesystem tarball",
        (_CHANGE, Opt("-m", "--message", kind=VALUE, help="the history comment")),
        (("file", ONE, "FILE|-"), ("reference", ANY, "[REFERENCE]")),
    ),
    Command(
        "commit",
        cmd_commit,
        "make an image from a container's changes",
        (
            _CHANGE,
            Opt("-m", "--message", kind=VALUE, help="the history comment"),
            Opt("-a", "--author", kind=VALUE, help='the author ("Name <email>")'),
            Opt(
                "-p",
                "--pause",
                kind=BOOL,
                default=True,
                help="freeze the container while its files are read (the default)",
            ),
        ),
        (("container", ONE, "CONTAINER"), ("reference", ANY, "[REFERENCE]")),
    ),
    Command(
        "export",
        cmd_export,
        "write a container's files as a tar",
        (Opt("-o", "--output", kind=VALUE, help="the file (default: stdout)"),),
        (("container", ONE, "CONTAINER"),),
    ),
    SYSTEM_COMMAND,
    Command(
        "history",
        cmd_history,
        "show an image's history",
        (
            Opt(
                "--format",
                kind=VALUE,
                help="table, json (the config's entries), or a Go template ({{.CreatedBy}})",
            ),
            Opt("-H", "--human", kind=BOOL, default=True, help="sizes and times for people"),
            Opt("-q", "--quiet", help="only ids"),
            Opt("--no-trunc", help="do not shorten the commands"),
        ),
        (("image", ONE, "IMAGE"),),
    ),
)

_BY_NAME = {c.name: c for c in COMMANDS}
_IMAGE_LS = Command("ls", cmd_images, "list images", IMAGES_OPTIONS, IMAGES_OPERANDS)
_IMAGE_RM = Command("rm", cmd_rmi, "remove images", RMI_OPTIONS, (("images", SOME, "IMAGE"),))
SUBCOMMANDS = {
    "ls": _IMAGE_LS,
    "list": _IMAGE_LS,
    "inspect": Command(
        "inspect",
        cmd_image_inspect,
        "show images as JSON",
        (Opt("-f", "--format", kind=VALUE, help="a Go template ({{.Id}})"),),
        (("images", SOME, "IMAGE"),),
    ),
    "rm": _IMAGE_RM,
    "remove": _IMAGE_RM,
    "pull": _BY_NAME["pull"],
    "push": _BY_NAME["push"],
    "tag": _BY_NAME["tag"],
    "save": _BY_NAME["save"],
    "load": _BY_NAME["load"],
    "import": _BY_NAME["import"],
    "history": _BY_NAME["history"],
    "prune": Command(
        "prune",
        cmd_prune,
        "remove images no container uses (untagged ones; -a: all)",
        (
            Opt("-a", "--all", help="tagged images too"),
            Opt("-f", "--force", help="do not ask for confirmation"),
            PRUNE_FILTER,
        ),
    ),
}


SYSTEM_DF = Command(
    "df",
    cmd_df,
    "disk usage",
    (
        Opt("--format", kind=VALUE, help="table, json (boxd's record), or a Go template"),
        Opt("-v", "--verbose", help="each image, container and volume"),
    ),
)


def _image_commands() -> dict[str, Command]:
    from ._build import COMMANDS as BUILD  # boxctl build's

    return {**SUBCOMMANDS, "build": BUILD[0]}


def cmd_image(args: Args) -> int:
    # build's module is imported only for it (and for help)
    commands = _image_commands() if args.words[:1] == ["build"] else SUBCOMMANDS
    return run_subcommand(IMAGE_COMMAND, args, commands)


IMAGE_COMMAND = Command(
    "image",
    cmd_image,
    "manage images: ls, inspect, rm, build, pull, push, tag, prune, ...",
    (),
    (("words", REST, "COMMAND [ARG...]"),),
    subcommands=lambda: _image_commands().items(),
)

"""``boxctl build``: send the context as a tar, show the daemon's build output.

The daemon does the build (as dockerd's classic builder does); this tars the context
directory (leaving out what .dockerignore excludes, as the docker CLI does; the daemon
applies it again), or passes on a tar (or a lone Dockerfile) read from stdin with ``-``.
A Dockerfile given with ``-f`` outside the context is sent inside the tar under a name
of its own.
"""

from __future__ import annotations

import io
import os
import sys

from ._args import (
    APPEND,
    BOOL,
    CONTENT_TRUST,
    INT,
    ONE,
    VALUE,
    Args,
    Command,
    Opt,
    check_content_trust,
)
from ._client import USAGE, Client, CliError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any


def _pairs(values: list[str], option: str, *, need_value: bool) -> dict[str, str | None]:
    """KEY=VALUE items; without ``need_value`` a bare KEY takes its value from the
    environment, as Docker's --build-arg does (None where it is not set there)."""
    found: dict[str, str | None] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise CliError(f"boxctl build: invalid {option} {item!r}: use KEY=VALUE", USAGE)
        found[key] = value if eq or need_value else os.environ.get(key)
    return found


def _context(args: Args) -> tuple[str, Callable[[IO[bytes]], None]]:
    """The Dockerfile's name in the context, and what writes the context's tar (checked
    here, before the daemon is asked; a directory's tar is streamed as it is made)."""
    import tarfile  # here: the other commands (found after this module's) do without it

    from boxd._build.ignore import Ignore

    context = args.context
    if context == "-" and args.file == "-":
        raise CliError("boxctl build: stdin cannot be both the context and the Dockerfile", 125)
    if context == "-":
        data = sys.stdin.buffer.read()
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                tar.next()
        except (tarfile.TarError, EOFError):
            # Not a tar: a Dockerfile alone, as `docker build - < Dockerfile`.
            def lone(out: IO[bytes]) -> None:
                with tarfile.open(fileobj=out, mode="w|") as tar:
                    info = tarfile.TarInfo("Dockerfile")
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))

            return "Dockerfile", lone

        def passed_on(out: IO[bytes]) -> None:
            out.write(data)

        return args.file or "", passed_on
    if not os.path.isdir(context):
        raise CliError(f"boxctl build: unable to prepare context: path {context!r} not found")
    # -f -: the Dockerfile from stdin, sent beside the context as one outside it is.
    piped = sys.stdin.buffer.read() if args.file == "-" else None
    dockerfile = args.file or os.path.join(context, "Dockerfile")
    if not args.file and not os.path.lexists(dockerfile):  # the docker CLI's fallback
        lower = os.path.join(context, "dockerfile")
        dockerfile = lower if os.path.lexists(lower) else dockerfile
    if piped is None and not os.path.isfile(dockerfile):
        raise CliError(
            f"boxctl build: Cannot locate specified Dockerfile: {args.file or 'Dockerfile'}"
        )
    rel = (
        ""
        if piped is not None
        else os.path.relpath(os.path.realpath(dockerfile), os.path.realpath(context))
    )
    outside = piped is not None or rel.startswith("..")
    try:
        with open(os.path.join(context, ".dockerignore")) as f:
            ignore = Ignore(f.read())
    except FileNotFoundError:
        ignore = Ignore()
    always = {".dockerignore", *([rel] if rel else [])}
    name_in_tar = f".dockerfile.{os.urandom(10).hex()}" if outside else rel

    def write(out: IO[bytes]) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for top, dirs, files in os.walk(context):
                base = os.path.relpath(top, context)
                base = "" if base == "." else base
                for d in list(dirs):
                    name = f"{base}/{d}" if base else d
                    below = ignore.reincludes_below(name) or any(
                        a.startswith(name + "/") for a in always
                    )
                    if ignore.excluded(name) and not below:
                        dirs.remove(d)
                        continue
                    tar.add(os.path.join(top, d), arcname=name, recursive=False)
                for file in files:
                    name = f"{base}/{file}" if base else file
                    if ignore.excluded(name) and name not in always:
                        continue
                    tar.add(os.path.join(top, file), arcname=name, recursive=False)
            if piped is not None:
                info = tarfile.TarInfo(name_in_tar)
                info.size, info.mode = len(piped), 0o644
                tar.addfile(info, io.BytesIO(piped))
            elif outside:
                tar.add(dockerfile, arcname=name_in_tar, recursive=False)

    return name_in_tar, write


class _Frames(io.RawIOBase):
    """A file that sends what is written to it as stdin byte frames (buffer it)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.client.send_bytes(0, bytes(data))
        return len(data)


def _secrets(values: list[str]) -> dict[str, str]:
    """``--secret id=ID[,src=FILE][,env=VAR][,type=file|env]``, as buildx reads it: a
    file's content, or an environment variable's (``env=``, or the id's name when neither
    is given); base64, as the request carries them."""
    import base64

    found = {}
    for value in values:
        fields = dict(f.partition("=")[::2] for f in value.split(",") if f)
        ident = fields.pop("id", "")
        kind = fields.pop("type", "")
        src = fields.pop("src", "") or fields.pop("source", "")
        env = fields.pop("env", "")
        if not ident or fields or kind not in ("", "file", "env"):
            raise CliError(
                f"invalid --secret {value!r}: use id=ID,src=FILE or id=ID,env=VAR", USAGE
            )
        if kind == "file" or (src and kind != "env"):
            try:
                with open(src or ident, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise CliError(f"--secret {ident}: {src or ident}: {exc.strerror}", USAGE) from None
        else:
            name = env or src or ident
            if name not in os.environ:
                raise CliError(f"--secret {ident}: no {name} in the environment", USAGE)
            data = os.fsencode(os.environ[name])
        found[ident] = base64.b64encode(data).decode()
    return found


def _run_limits(args: Args) -> dict[str, Any]:
    """Each RUN step's limits, /dev/shm size, ulimits and cgroup parent, as ``docker
    build`` takes them.  What Docker's daemon refuses on Linux is refused in its words:
    ``--security-opt`` (Windows' credential specs there), an ``--isolation`` other than
    ``default``; ``--compress`` is taken (it only compresses the context on its way)."""
    from boxd import _fixedmodes, _units
    from boxd._ulimits import parse_ulimit

    if args.security_opt:
        opts = " ".join(f"--security-opt {o}" for o in args.security_opt)
        raise CliError(f"boxctl build: security options are not supported on linux ({opts})")
    if args.squash:
        raise CliError("boxctl build: --squash is not supported by boxd")
    try:
        _fixedmodes.check("isolation", args.isolation or "")
        resources: dict[str, Any] = _units.memory_limits(args.memory, args.memory_swap)
        shm = None if args.shm_size is None else _units.parse_size(args.shm_size, what="--shm-size")
        ulimits = []
        for text in args.ulimit:
            name, soft, hard = parse_ulimit(text)
            ulimits.append({"name": name, "soft": soft, "hard": hard})
    except ValueError as exc:
        raise CliError(f"boxctl build: {exc}", USAGE) from None
    for name in ("cpu_shares", "cpuset_cpus", "cpuset_mems", "cpu_period", "cpu_quota"):
        if getattr(args, name) is not None:
            resources[name] = getattr(args, name)
    return {
        "resources": resources,
        "shm_size": shm,
        "ulimits": ulimits,
        "cgroup_parent": args.cgroup_parent or "",
    }


def cmd_build(args: Args) -> int:
    check_content_trust(args)
    if args.iidfile:  # as the docker CLI: a failed build leaves no id of an earlier one
        try:
            os.remove(args.iidfile)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CliError(f"boxctl build: --iidfile {args.iidfile}: {exc.strerror}") from None
    build_args = _pairs(args.build_arg, "--build-arg", need_value=False)
    request = {
        "type": "BuildRequest",
        "tags": args.tag,
        "build_args": {k: v for k, v in build_args.items() if v is not None},
        "unset_args": [k for k, v in build_args.items() if v is None],
        "target": args.target or "",
        "labels": _pairs(args.label, "--label", need_value=True),
        "no_cache": args.no_cache,
        "pull": args.pull,
        "rm": args.rm,
        "force_rm": args.force_rm,
        "quiet": args.quiet,
        "platform": args.platform or "",
        "network": args.network or "",
        "extra_hosts": args.add_host,
        "cache_from": args.cache_from,
        "secrets": _secrets(args.secret),
        **_run_limits(args),
    }
    request["dockerfile"], write = _context(args)
    with Client(args.socket) as client:
        try:
            client.request(request)
        except CliError as exc:  # the request's options, refused before the build
            raise CliError(str(exc), USAGE) from None
        with io.BufferedWriter(_Frames(client), 1 << 20) as out:
            write(out)
        client.send_bytes(0, b"")
        built: dict[str, Any] = {}
        while True:
            frame = client.receive()
            if not isinstance(frame, dict):
                continue
            if frame["type"] == "ErrorResponse":  # the build failed: docker build's 1
                raise CliError(str(frame.get("message")), 1)
            if frame["type"] == "BuildOutputFrame":
                # With -q the daemon sends the output only when the build failed: to
                # stderr, before the error, as the docker CLI shows it.
                shown = sys.stderr if args.quiet else sys.stdout
                shown.write(frame["stream"])
                shown.flush()
            elif frame["type"] == "BuiltFrame":
                built = frame
            elif frame["type"] == "EndFrame":
                break
    if args.quiet:
        print(built["id"])
    if args.iidfile:
        try:
            with open(args.iidfile, "w") as f:
                f.write(built["id"])
        except OSError as exc:
            raise CliError(f"boxctl build: --iidfile {args.iidfile}: {exc.strerror}") from None
    return 0


COMMANDS = (
    Command(
        "build",
        cmd_build,
        "build an image from a Dockerfile (Docker's classic builder)",
        (
            Opt("-t", "--tag", kind=APPEND, help="NAME[:TAG] for the image (repeatable)"),
            Opt("-f", "--file", kind=VALUE, help="the Dockerfile (default: CONTEXT/Dockerfile)"),
            Opt("--build-arg", kind=APPEND, help="KEY=VALUE for an ARG (repeatable)"),
            Opt("--target", kind=VALUE, help="the stage to build"),
            Opt(
                "--secret",
                kind=APPEND,
                metavar="id=ID,src=FILE",
                help="a secret for RUN --mount=type=secret (or id=ID,env=VAR)",
            ),
            Opt("--label", kind=APPEND, help="KEY=VALUE for the image (repeatable)"),
            Opt("--no-cache", help="do not use the layer cache"),
            Opt(
                "--cache-from", kind=APPEND, metavar="IMAGE", help="use IMAGE's steps as the cache"
            ),
            Opt("-q", "--quiet", help="show only the image id"),
            Opt("--iidfile", kind=VALUE, metavar="FILE", help="write the image id to FILE"),
            Opt("--pull", help="pull the base images even if they are stored"),
            CONTENT_TRUST,
            Opt("--rm", kind=BOOL, default=True, help="remove the steps' containers (default)"),
            Opt("--force-rm", help="remove them even after a failed step"),
            Opt("--platform", kind=VALUE, help="os/arch[/variant] of the base images"),
            Opt("--network", kind=VALUE, help="RUN's network: bridge (default), host, none"),
            Opt("--add-host", kind=APPEND, metavar="NAME:IP", help="a line of RUN's /etc/hosts"),
            Opt("-m", "--memory", kind=VALUE, help="RUN's memory limit (e.g. 256m)"),
            Opt("--memory-swap", kind=VALUE, help="RUN's memory + swap (-1: unlimited swap)"),
            Opt("-c", "--cpu-shares", kind=INT, help="RUN's relative CPU weight"),
            Opt("--cpuset-cpus", kind=VALUE, help="RUN's CPUs (e.g. 0-1,3)"),
            Opt("--cpuset-mems", kind=VALUE, help="RUN's memory nodes (e.g. 0)"),
            Opt("--cpu-period", kind=INT, metavar="US", help="RUN's CFS period (microseconds)"),
            Opt("--cpu-quota", kind=INT, metavar="US", help="RUN's CFS quota per period"),
            Opt("--shm-size", kind=VALUE, help="RUN's /dev/shm size (default 64m)"),
            Opt("--ulimit", kind=APPEND, metavar="NAME=SOFT[:HARD]", help="RUN's ulimit"),
            Opt("--cgroup-parent", kind=VALUE, help="the cgroup RUN's cgroups go below"),
            Opt("--isolation", kind=VALUE, help="default (the one on Linux)"),
            Opt("--compress", help="(the context goes uncompressed over the local socket)"),
            Opt("--security-opt", kind=APPEND, help="(refused on Linux, as Docker refuses it)"),
            Opt("--squash", help="(refused: boxd keeps every step's layer)"),
        ),
        (("context", ONE, "CONTEXT|-"),),
    ),
)

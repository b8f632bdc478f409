"""RUN's ``--mount`` and ``--network``, as BuildKit's Dockerfile frontend takes them.

``--mount=[type=TYPE][,KEY=VALUE...]`` (CSV, as BuildKit reads it), once per mount:

- ``type=bind`` (the default): ``target`` (``dst``, ``destination``), ``source`` (``src``;
  the root by default) of the build context or of ``from`` (a stage, an image), read-only
  unless ``rw`` (``readwrite``; what is written there is discarded).  The step's cache key
  holds a digest of what is bound, as BuildKit's does.
- ``type=cache``: a directory kept across builds (``id``, the target by default), for
  package managers' caches: ``target``, ``ro``, ``sharing`` (``shared``, ``private``,
  ``locked``), ``mode`` (0755), ``uid``, ``gid`` (0) of a new one.  ``builder prune``
  deletes them.
- ``type=tmpfs``: ``target``, ``size``.
- ``type=secret``: a secret given to ``boxctl build --secret id=ID,src=FILE`` (or
  ``env=VAR``), as a read-only file at ``target`` (``/run/secrets/ID`` by default; ``mode``
  0400, ``uid``, ``gid``) and, with ``env=NAME``, as that variable of the step's process;
  never in a layer, the image, nor the step's cache key.  One not given (the docker CLI's
  classic builder carries none) is left out, and fails the step if ``required``.
- ``type=ssh``: boxd forwards no SSH agent: left out, and fails the step if ``required``.

What is mounted is not in the step's layer (a mount point the step made is, as with
BuildKit).  ``--network=default|none|host`` runs the step on the build's network, none, or
the host's.
"""

from __future__ import annotations

import csv

import attrs

from .._units import GO_BOOLS, parse_size
from .dockerfile import DockerfileError

TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARINGS = ("shared", "private", "locked")
NETWORKS = ("default", "none", "host")
_TARGET = ("target", "dst", "destination")
_BOOLS = {"readonly": "ro", "ro": "ro", "readwrite": "rw", "rw": "rw", "required": "required"}
_KEYS = {
    "bind": {"source", "src", "from", *_TARGET},
    "cache": {"id", "sharing", "mode", "uid", "gid", "from", "source", "src", *_TARGET},
    "tmpfs": {"size", *_TARGET},
    "secret": {"id", "mode", "uid", "gid", "env", *_TARGET},
    "ssh": {"id", "mode", "uid", "gid", *_TARGET},
}


@attrs.frozen
class RunMount:
    kind: str  # one of TYPES
    target: str
    source: str = ""  # below the context or ``from``'s root
    origin: str = ""  # ``from``: a stage or image ("": the build context)
    read_only: bool = True
    ident: str = ""  # a cache's, a secret's
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: int | None = None  # a tmpfs's bytes
    required: bool = False
    env: str = ""  # a secret's variable (env=)
    target_given: bool = True  # (a secret's target was written, not its default)


def parse(spec: str, line: int) -> RunMount:
    """One ``--mount`` value (DockerfileError naming the bad part)."""
    try:
        fields = next(csv.reader([spec]), [])
    except csv.Error as exc:
        raise DockerfileError(f"line {line}: --mount={spec}: {exc}") from None
    given: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq and key in _BOOLS:
            value = "true"
        elif not eq:
            raise DockerfileError(
                f"line {line}: --mount={spec}: invalid field {field!r}: must be a key=value pair"
            )
        given[_BOOLS.get(key, key)] = value
    kind = given.pop("type", "bind")
    if kind not in TYPES:
        raise DockerfileError(
            f"line {line}: --mount={spec}: unsupported mount type {kind!r} (use {', '.join(TYPES)})"
        )
    flags = {k: given.pop(k) for k in ("ro", "rw", "required") if k in given}
    for key in given:
        if key not in _KEYS[kind]:
            raise DockerfileError(f"line {line}: --mount={spec}: unexpected key {key!r} for {kind}")
    target = next((given[k] for k in _TARGET if k in given), "")
    target_given = bool(target)
    if kind == "secret" and not target:
        target = f"/run/secrets/{given.get('id', '')}"
    if kind == "ssh" and not target:
        target = f"/run/buildkit/ssh_agent.{given.get('id', 'default')}"
    if not target:
        raise DockerfileError(f"line {line}: --mount={spec}: mount target is required")
    switches = {}
    for key, value in flags.items():
        if value not in GO_BOOLS:
            raise DockerfileError(
                f"line {line}: --mount={spec}: invalid value for {key}: {value!r} (true or false)"
            )
        switches[key] = GO_BOOLS[value]
    if "ro" in switches:
        read_only = switches["ro"]
    else:  # a bind is read-only unless rw; a cache and a tmpfs are writable
        read_only = not switches["rw"] if "rw" in switches else kind == "bind"
    sharing = given.get("sharing", "shared")
    if sharing not in SHARINGS:
        raise DockerfileError(
            f"line {line}: --mount={spec}: unsupported sharing value {sharing!r} "
            f"(use {', '.join(SHARINGS)})"
        )
    numbers = {}
    for key, base in (("mode", 8), ("uid", 10), ("gid", 10)):
        if key in given:
            try:
                numbers[key] = int(given[key], base)
            except ValueError:
                raise DockerfileError(
                    f"line {line}: --mount={spec}: invalid {key} {given[key]!r}"
                ) from None
    size = None
    if "size" in given:
        try:
            size = parse_size(given["size"], what="tmpfs size")
        except ValueError as exc:
            raise DockerfileError(f"line {line}: --mount={spec}: {exc}") from None
    if kind == "cache" and "from" in given:
        raise DockerfileError(
            f"line {line}: --mount={spec}: a cache mount's from= is not supported by boxd"
        )
    return RunMount(
        kind,
        target,
        source=given.get("source", given.get("src", "")),
        origin=given.get("from", ""),
        read_only=read_only,
        ident=given.get("id", target if kind == "cache" else ""),
        sharing=sharing,
        mode=numbers.get("mode", 0o400 if kind == "secret" else 0o755),
        uid=numbers.get("uid", 0),
        gid=numbers.get("gid", 0),
        size=size,
        required=switches.get("required", False),
        env=given.get("env", ""),
        target_given=target_given,
    )

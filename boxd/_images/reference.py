"""Image references, parsed and normalized as Docker does (distribution's ``reference``).

``busybox`` is ``docker.io/library/busybox:latest``; ``host:port/repo/name:tag``,
``name@sha256:<64 hex>`` and ``name:tag@sha256:...`` are all references.  The first path
component is a registry when it contains ``.`` or ``:``, is ``localhost``, or has an
upper-case letter; otherwise the registry is Docker Hub, where a one-component name lives
under ``library/``.  An invalid reference is refused with a message naming the bad part.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

__all__ = [
    "DEFAULT_REGISTRY",
    "Reference",
    "ReferenceError",
    "any_reference",
    "matching",
    "parse_reference",
]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
_LEGACY_HUB = ("index.docker.io", "registry-1.docker.io")
MAX_NAME = 255

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z")
_PATH_PART_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}\Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")


class ReferenceError(ValueError):
    """An image reference that does not parse; the message names the bad part."""


@attrs.frozen
class Reference:
    """A normalized reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``: what a tag is stored under."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def familiar(self) -> str:
        """The short form Docker shows: ``busybox:latest``, ``me/app:1``, ``host:5000/x:1``."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        if self.tag is not None:
            name += f":{self.tag}"
        if self.digest is not None:
            name += f"@{self.digest}"
        return name

    @property
    def familiar_name(self) -> str:
        """The repository as Docker shows it, without tag or digest: ``busybox``."""
        return attrs.evolve(self, tag=None, digest=None).familiar

    def with_tag(self, tag: str) -> Reference:
        return attrs.evolve(self, tag=tag, digest=None)


def is_registry(host: str) -> bool:
    """Whether ``host`` is a registry's ``host[:port]`` as a reference names one."""
    return _DOMAIN_RE.match(host) is not None


def _split_domain(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_REGISTRY, name


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalize ``text``; a reference with neither tag nor digest gets
    ``latest`` unless ``default_tag`` is false."""
    if not text:
        raise ReferenceError("invalid reference format: the reference is empty")
    if text != text.strip():
        raise ReferenceError(f"invalid reference format {text!r}: leading or trailing space")
    remainder, at, digest = text.partition("@")
    if at:
        if not _DIGEST_RE.match(digest):
            raise ReferenceError(f"invalid reference format {text!r}: bad digest {digest!r}")
        algorithm = digest.partition(":")[0]
        if algorithm != "sha256":
            raise ReferenceError(
                f"invalid reference {text!r}: unsupported digest algorithm {algorithm!r} "
                "(only sha256)"
            )
        if not _SHA256_RE.match(digest):
            raise ReferenceError(
                f"invalid reference {text!r}: digest {digest!r} is not 64 lower-case hex digits"
            )
    # A tag follows the last colon after the last slash (a colon before it is a port).
    name, tag = remainder, None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ReferenceError(
                f"invalid reference format {text!r}: bad tag {tag!r} "
                "(letters, digits, _ . -, at most 128, not starting with . or -)"
            )
    if not name:
        raise ReferenceError(f"invalid reference format {text!r}: no repository name")
    if _HEX64_RE.match(name):
        raise ReferenceError(
            f"invalid repository name {name!r}: 64-character hexadecimal names are image ids"
        )
    registry, path = _split_domain(name)
    if not is_registry(registry):
        raise ReferenceError(f"invalid reference format {text!r}: bad registry {registry!r}")
    if registry in _LEGACY_HUB:
        registry = DEFAULT_REGISTRY
    for part in path.split("/"):
        if not _PATH_PART_RE.match(part):
            if part.lower() != part and _PATH_PART_RE.match(part.lower()):
                raise ReferenceError(
                    f"invalid reference format {text!r}: repository name must be "
                    f"lowercase ({part!r})"
                )
            raise ReferenceError(
                f"invalid reference format {text!r}: bad path component {part!r} "
                "(lower-case letters and digits, separated by . _ __ or -)"
            )
    if len(name) > MAX_NAME:
        raise ReferenceError(
            f"invalid reference {text!r}: repository name longer than {MAX_NAME} characters"
        )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if tag is None and digest == "" and default_tag:
        tag = DEFAULT_TAG
    return Reference(registry, path, tag, digest or None)


def matching(refs: Sequence[str], patterns: Sequence[str]) -> tuple[str, ...]:
    """Docker's ``reference`` filter of image lists (its ``FamiliarMatch``): the stored
    tags and digests some pattern matches, as Docker shows the reference
    (``busybox:latest``, ``host:5000/x@sha256:...``) or its repository (``busybox``,
    ``host:5000/x``); ``*`` and ``?`` do not cross a ``/``, as in Go's ``path.Match``."""
    found = []
    for ref in refs:
        try:
            parsed = parse_reference(ref, default_tag=False)
            shown, repo = parsed.familiar, parsed.familiar_name
        except ValueError:
            shown, repo = ref, ref.rpartition(":")[0]
        if any(_path_match(p, shown) or _path_match(p, repo) for p in patterns):
            found.append(ref)
    return tuple(found)


def any_reference(tags: Sequence[str], patterns: Sequence[str]) -> bool:
    """Whether some pattern matches one of ``tags`` (see :func:`matching`)."""
    return bool(matching(tags, patterns))


def _path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` any run and ``?`` any one of the characters but ``/``,
    ``[...]`` (``[^...]``) a class, ``\\`` quotes; a malformed pattern matches nothing."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return False
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = re.sub(r"([\\\]\[^])", r"\\\1", body[1:] if negate else body)
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.fullmatch("".join(out), name) is not None
    except re.error:
        return False

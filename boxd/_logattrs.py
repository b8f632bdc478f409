"""A container's log attributes: what ``logs --details`` prints before each line.

Docker's json-file and local drivers take ``--log-opt labels=``, ``labels-regex=``,
``env=``, ``env-regex=`` (the container's labels and variables so named or matched) and
``tag=`` (a template of the container's identity); the attributes are the same for every
line of a container, so boxd works them out from its configuration when the log is read
rather than storing them in each record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ._units import LOG_ATTRIBUTES

if TYPE_CHECKING:
    from ._records import Container


_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def _short(image_id: str) -> str:
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


# The fields of a tag, as Docker's logger.Info offers them: of the container and its
# image's id.
_TAG_FIELDS: dict[str, Callable[[Container, str], str]] = {
    "ID": lambda c, image_id: c.id[:12],
    "FullID": lambda c, image_id: c.id,
    "Name": lambda c, image_id: c.name,
    "ImageID": lambda c, image_id: _short(image_id),
    "ImageFullID": lambda c, image_id: image_id,
    "ImageName": lambda c, image_id: c.config.image,
    "Command": lambda c, image_id: " ".join(c.config.command),
    "Hostname": lambda c, image_id: os.uname().nodename,
    "DaemonName": lambda c, image_id: "docker",
}


def check(key: str, value: str) -> None:
    """Refuse (ValueError, naming it) an attribute option boxd cannot honour: a regular
    expression that does not compile, a tag that uses more of Go's templates than its
    fields."""
    if key not in LOG_ATTRIBUTES:
        raise ValueError(
            f"log option {key!r} is not a log attribute: use {', '.join(LOG_ATTRIBUTES)}"
        )
    if key.endswith("-regex"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid log option {key} {value!r}: {exc}") from None
    if key == "tag":
        for field in _FIELD.findall(value):
            if field not in _TAG_FIELDS:
                raise ValueError(
                    f"invalid log option tag {value!r}: no field {field!r}; a tag is text and "
                    + ", ".join("{{." + name + "}}" for name in _TAG_FIELDS)
                )
        if "{{" in _FIELD.sub("", value):
            raise ValueError(
                f"invalid log option tag {value!r}: only fields such as {{{{.Name}}}} "
                "are taken, not Go's template actions"
            )


def _pairs(items: Iterable[str]) -> dict[str, str]:
    found = {}
    for item in items:
        key, eq, value = item.partition("=")
        if eq:
            found[key] = value
    return found


def attributes(c: Container, image_id: str) -> dict[str, str]:
    """The attributes of each line of ``c``'s log (its image's id ``image_id``), as
    Docker's drivers work them out: the labels and variables (``Config.Env``) named or
    matched, and the tag."""
    options = _pairs(c.config.log_options)
    labels, env = _pairs(c.config.labels), _pairs(c.config.env)
    found: dict[str, str] = {}
    for source, names, regex in (
        (labels, options.get("labels", ""), options.get("labels-regex", "")),
        (env, options.get("env", ""), options.get("env-regex", "")),
    ):
        found |= {name: source[name] for name in names.split(",") if name in source}
        if regex:
            pattern = re.compile(regex)
            found |= {name: value for name, value in source.items() if pattern.search(name)}
    if tag := options.get("tag", ""):
        found["tag"] = _FIELD.sub(lambda m: _TAG_FIELDS[m[1]](c, image_id), tag)
    return found


def details(c: Container, image_id: str) -> bytes:
    """What ``logs --details`` prints before each line of ``c``: its attributes sorted by
    name, ``name=value`` URL-encoded and joined by commas, then a space (the space alone
    without any), as Docker prints them."""
    pairs = sorted(attributes(c, image_id).items())
    return ",".join(f"{_escape(k)}={_escape(v)}" for k, v in pairs).encode() + b" "


_UNESCAPED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _escape(text: str) -> str:
    """``text`` as Go's url.QueryEscape writes it: a space as ``+``, each byte of any
    other character but letters, digits and ``-_.~`` as ``%XX``."""
    return "".join(
        char
        if char in _UNESCAPED
        else "+"
        if char == " "
        else "".join(map("%{:02X}".format, char.encode()))
        for char in text
    )

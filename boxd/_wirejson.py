"""Compact JSON through CPython's C codec (``_json``) alone, without the ``json`` package.

``import json`` costs ``boxctl`` ~7 ms of its start (``json.decoder`` compiles regular
expressions, so it imports ``re`` and ``enum``): half of what a whole ``boxctl ps`` may take
above the bare interpreter.  The C scanner and encoder that ``json`` itself uses need none of
that; this module drives them with the settings the protocol uses (compact separators, no
NaN or Infinity, strict strings).  The results are ``json.dumps``'s and ``json.loads``'s.
An error of the C scanner comes from ``json.decoder`` (imported by the scanner only then).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"


def _unserializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(
    value: object, *, ensure_ascii: bool = True, separators: tuple[str, str] = (",", ":")
) -> str:
    """``json.dumps(value, separators=separators, allow_nan=False, ensure_ascii=...)``."""
    encode = _json.make_encoder(
        {},  # markers: a circular reference is an error
        _unserializable,
        _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring,
        None,  # no indentation
        separators[1],
        separators[0],
        False,  # keys in their order
        False,  # a key that is not a string is an error
        False,  # NaN and Infinity are refused
    )
    return "".join(encode(value, 0))


def indented(value: object, indent: str = "    ") -> str:
    """``json.dumps(value, indent=len(indent), ensure_ascii=False)`` of a value whose keys
    are strings (as decoded JSON's are): the docker CLI's inspect output.  ``json`` indents
    in Python anyway (its C encoder has no indentation), so only the layout is done here."""
    parts: list[str] = []

    def walk(item: object, depth: int) -> None:
        if isinstance(item, dict) and item:
            inner = "\n" + indent * (depth + 1)
            opening = "{"
            for key, member in item.items():
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                parts.append(opening + inner + dumps(key, ensure_ascii=False) + ": ")
                walk(member, depth + 1)
                opening = ","
            parts.append("\n" + indent * depth + "}")
        elif isinstance(item, list | tuple) and item:
            inner = "\n" + indent * (depth + 1)
            opening = "["
            for member in item:
                parts.append(opening + inner)
                walk(member, depth + 1)
                opening = ","
            parts.append("\n" + indent * depth + "]")
        else:
            parts.append(dumps(item, ensure_ascii=False))

    walk(value, 0)
    return "".join(parts)


class _Scanning:
    """What the C scanner reads from its context (``json.JSONDecoder``'s attributes)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant: Callable[[str], Any]) -> None:
        self.parse_constant = parse_constant


def scanner(parse_constant: Callable[[str], Any]) -> Callable[[str], Any]:
    """``json.loads`` for ``str``: ``parse_constant`` is called with ``NaN``, ``Infinity``
    and ``-Infinity``; any other error is a ``ValueError``."""
    # typeshed names the scanner's own type as its argument; it reads attributes only.
    scan = _json.make_scanner(_Scanning(parse_constant))  # type: ignore[arg-type]

    def loads(text: str) -> Any:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = scan(text, start)
        except StopIteration as exc:  # no value where one must start
            raise ValueError(f"Expecting value: char {exc.value}") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"Extra data: char {end}")
        return value

    return loads

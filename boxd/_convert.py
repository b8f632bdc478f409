"""The one cattrs converter: records and messages to JSON-able data and back, strictly.

Strict means: unknown keys, wrong types and bad enum values are errors, and ``"no"`` is not
``True`` (cattrs coerces primitives by default; the hooks below do not).  Errors are
reported as one line with the path of the bad value (``... @ $.config.memory``).
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Set
from typing import Any, TypeVar

import attrs
import cattrs

T = TypeVar("T")

# What cattrs' JSON preset (``cattrs.preconf.json``) sets that boxd's records need: sets
# become lists, and str/int enums pass through (json encodes them as their values).  The
# preset's hooks for datetime, date and bytes serve no record here and import datetime
# (with its C module, ~0.2-0.3 MB of the daemon's memory).
converter = cattrs.Converter(forbid_extra_keys=True, unstruct_collection_overrides={Set: list})
converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum) and issubclass(t, str | int),
    lambda value: value,
)


def _strict(kind: type[Any], *, allow: tuple[type[Any], ...] = ()) -> None:
    accepted = (kind, *allow)

    def structure(value: object, _: type[Any]) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        if kind is float:
            if not math.isfinite(float(value)):
                raise ValueError(f"expected a finite number, got {value!r}")
            return float(value)
        return value

    converter.register_structure_hook(kind, structure)


_strict(str)
_strict(bool)
_strict(int)
_strict(float, allow=(int,))


def _structure_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"invalid value {value!r}: expected one of {choices}") from None


converter.register_structure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _structure_enum
)


def _is_tuple(t: Any) -> bool:
    return getattr(t, "__origin__", None) is tuple


def _tuple_hook(cls: Any) -> Any:
    item_type = cls.__args__[0]

    def structure(value: object, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple([converter.structure(v, item_type) for v in value])

    return structure


converter.register_structure_hook_factory(_is_tuple, _tuple_hook)


def _is_record(t: Any) -> bool:
    return isinstance(t, type) and attrs.has(t)


# One hook per record class: cattrs makes the hooks of a record's fields anew for each
# class that has them (uncached, so that a field's own settings could shape them), so
# each request and record holding a ContainerConfig had its own copy of its code (35 KB
# to structure one), of its Resources', its Security's...: the run and create requests,
# a container record and a list answer made 483 KiB of hooks, 233 KiB shared.  A record
# class's hook depends on nothing but the class and this converter: made once, shared.
converter.register_structure_hook_factory(
    _is_record, functools.cache(converter.gen_structure_attrs_fromdict)
)
converter.register_unstructure_hook_factory(
    _is_record, functools.cache(converter.gen_unstructure_attrs_fromdict)
)


def _describe(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return str(exc) or type(exc).__name__


class ConversionError(ValueError):
    """Data that does not fit a record; ``str()`` names every bad value with its path.

    ``refused``: the data had the right shape, and a record's own validation refused a
    value (``invalid --stop-signal 'SIGFOO'``).  Those messages are written for the user
    who gave the value, so no path is added: ``@ $.config`` would be protocol jargon.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def _refusal(exc: BaseException) -> BaseException | None:
    """The ValueError a record's validator raised, if that is what ``exc`` reports: cattrs
    attaches a field note to what structuring one field raised, none to what the class
    itself raised (its ``__attrs_post_init__``)."""
    while isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        with_notes, without = exc.group_exceptions()
        if len(with_notes) + len(without) != 1:
            return None
        exc = with_notes[0][0] if with_notes else without[0]
        if not with_notes and isinstance(exc, ValueError):
            return exc
    return None


def structure(data: object, cls: type[T]) -> T:
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            refused = _refusal(exc)
            if refused is not None:
                raise ConversionError(str(refused), refused=True) from None
            lines = cattrs.transform_error(exc, format_exception=_describe)
            raise ConversionError("; ".join(lines)) from None
        raise ConversionError(str(exc)) from None


def unstructure(obj: object) -> Any:
    return converter.unstructure(obj)

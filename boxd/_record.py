"""Frozen records without attrs, for the modules that ``boxd-runtime create`` imports.

``@frozen`` makes a class of annotated fields (a default is a class attribute) a frozen
record: keyword or positional ``__init__``, ``__eq__`` and ``__hash__`` by value,
``__repr__``; ``__post_init__`` (if defined) checks the values.  :func:`evolve` copies
one with changes, :func:`make` makes one from a dict of its fields.  The spawn plan, the
cgroup limits, the seccomp profile and the root-filesystem layers are such records: attrs
would generate their methods as source code at import, and importing attrs with what it
imports (typing, inspect) and generating them costs each ``boxd-runtime create`` (a
process per container) more than all it does with them.  The daemon's own records
(``_records``, the messages) stay attrs classes, structured by cattrs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Set
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> object:
        return lambda f: f


_MISSING = object()
# Each record class's maker from a dict of its fields (see make).
_MAKERS: dict[type, Callable[[dict[str, Any]], Any]] = {}


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen record of its annotated fields (in order)."""
    own = vars(cls)
    names = tuple(own.get("__annotations__", {}))  # this class's own fields, in order
    defaults = {n: own[n] for n in names if n in own}
    required = frozenset(n for n in names if n not in defaults)
    setattr(cls, "__match_args__", names)  # noqa: B010 (mypy: not a declared attribute)
    check = own.get("__post_init__")

    count = len(names)
    # What keywords may name after n positional values (a repeated one is refused).
    later = tuple([frozenset(names[n:]) for n in range(count + 1)])

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # One generic method, without generated source: the defaults, the positional
        # values and the keywords go into __dict__ by dict updates (a spawn plan's mount
        # table makes dozens of records per start).
        if len(args) > count:
            raise TypeError(f"{cls.__name__}() takes {count} arguments, got {len(args)}")
        values = self.__dict__
        values.update(defaults)
        values.update(zip(names, args, strict=False))
        if kwargs:
            if not kwargs.keys() <= later[len(args)]:
                raise _unexpected(cls, kwargs, later[len(args)])
            values.update(kwargs)
        if len(values) < count:
            raise _missing(cls, required - values.keys())
        if check is not None:
            check(self)

    def make(given: dict[str, Any]) -> Any:
        record = object.__new__(cls)
        values = record.__dict__
        values.update(defaults)
        if not given.keys() <= later[0]:
            raise _unexpected(cls, given, later[0])
        values.update(given)
        if len(values) < count:
            raise _missing(cls, required - values.keys())
        if check is not None:
            check(record)
        return record

    _MAKERS[cls] = make

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise AttributeError(f"{cls.__name__} is frozen: cannot set {name}")

    def __delattr__(self: Any, name: str) -> None:
        raise AttributeError(f"{cls.__name__} is frozen: cannot delete {name}")

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(self.__dict__ == other.__dict__)

    def __hash__(self: Any) -> int:
        return hash(tuple([self.__dict__[n] for n in names]))

    def __repr__(self: Any) -> str:
        fields = ", ".join(f"{n}={self.__dict__[n]!r}" for n in names)
        return f"{cls.__name__}({fields})"

    for method in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)
    return cls


def _unexpected(cls: type, given: dict[str, Any], allowed: frozenset[str]) -> TypeError:
    bad = next(n for n in given if n not in allowed)
    return TypeError(f"{cls.__name__}() got an unexpected or repeated {bad!r}")


def _missing(cls: type, missing: Set[str]) -> TypeError:
    return TypeError(f"{cls.__name__}() missing {', '.join(sorted(missing))}")


def make(cls: type[T], values: dict[str, Any]) -> T:
    """A record of ``cls`` from its fields' ``values``, checked as ``cls(**values)`` is.

    Not made by that call: a call with keywords from a dict makes a tuple of their names,
    and CPython 3.11 keeps every freed tuple of 20 items (up to 2,000; its free list of
    that length is filled but never taken from).  The cgroup limits' 20 fields, made a few
    times per start, left ~0.4 MB of them in a daemon after a few hundred starts."""
    made: T = _MAKERS[cls](values)
    return made


def evolve(record: T, **changes: Any) -> T:
    """A copy of ``record`` with ``changes`` (checked as a new one is)."""
    return make(type(record), {**record.__dict__, **changes})

"""Frozen records without attrs, for the modules that ``boxd-runtime create`` imports.

``@frozen`` makes a class of annotated fields (a default is a class attribute) a frozen
record: keyword or positional ``__init__``, ``__eq__`` and ``__hash__`` by value,
``__repr__``; ``__post_init__`` (if defined) checks the values.  :func:`evolve` copies
one with changes.  The spawn plan, the cgroup limits, the seccomp profile and the
root-filesystem layers are such records: attrs would generate their methods as source
code at import, and importing attrs with what it imports (typing, inspect) and
generating them costs each ``boxd-runtime create`` (a process per container) more than
all it does with them.  The daemon's own records (``_records``, the messages) stay attrs
classes, structured by cattrs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> object:
        return lambda f: f


_MISSING = object()


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
                bad = next(n for n in kwargs if n not in later[len(args)])
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated {bad!r}")
            values.update(kwargs)
        if len(values) < count:
            missing = required - values.keys()
            raise TypeError(f"{cls.__name__}() missing {', '.join(sorted(missing))}")
        if check is not None:
            check(self)

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


def evolve(record: T, **changes: Any) -> T:
    """A copy of ``record`` with ``changes`` (checked as a new one is)."""
    values: dict[str, Any] = {**record.__dict__, **changes}
    return type(record)(**values)

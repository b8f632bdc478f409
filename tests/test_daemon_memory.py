"""What the idle daemon holds: modules it leaves unimported until used (bench/README.md,
"Idle daemon memory (session 9)")."""

from __future__ import annotations

import ast
import enum
import gc
import json
import subprocess
import sys
import types
from pathlib import Path

import attrs
import pytest

import boxd
from boxd import _convert, _events, _messages, _prune, _record, _records


def _python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def _loaded(code: str) -> set[str]:
    return set(_python(f"{code}; import sys; print(*sorted(sys.modules))").split())


def test_the_daemon_imports_no_datetime_at_start() -> None:
    """cattrs' JSON preset and _prune's time parsing brought datetime (~0.3 MB)."""
    loaded = _loaded("import boxd._daemon")
    assert not {"datetime", "_datetime", "cattrs.preconf", "cattrs.preconf.json"} & loaded


def test_the_daemon_loads_the_image_puller_at_the_first_pull() -> None:
    """The puller (the registry protocol's manifests and layers, ~0.12 MB) is made by the
    supervisor on first use; the clean-up after removals takes the images' lock without it
    (test_images pulls and removes images through it)."""
    assert "boxd._images.pull" not in _loaded("import boxd._daemon")


class _Word(enum.StrEnum):
    A = "a"


class _Number(enum.IntEnum):
    ONE = 1


@attrs.frozen
class _Shape:
    word: _Word
    number: _Number
    names: frozenset[str]
    sizes: tuple[int, ...]


def test_the_converter_keeps_the_json_presets_shapes() -> None:
    """Enums as their values, sets as lists, and back; extra keys still refused."""
    shape = _Shape(_Word.A, _Number.ONE, frozenset({"x"}), (1, 2))
    data = _convert.unstructure(shape)
    wire = json.loads(json.dumps(data))
    assert wire == {"word": "a", "number": 1, "names": ["x"], "sizes": [1, 2]}
    assert _convert.structure(wire, _Shape) == shape
    try:
        _convert.structure({**data, "extra": 1}, _Shape)
    except _convert.ConversionError as exc:
        assert "extra" in str(exc)
    else:
        raise AssertionError("an unknown key was accepted")


def test_prune_reads_rfc3339_times_with_datetime_imported_there() -> None:
    assert _prune.parse_time("2024-01-01T00:00:00Z", 0) == 1704067200.0


def test_the_daemon_drops_argparse_once_its_options_are_read() -> None:
    code = (
        "import gc, sys, boxd._daemon as d; "
        "a = d._parse_args(['--root', '/r', '--insecure-registry', 'h:1', '--no-live-restore']); "
        "print(a.root, a.insecure_registry, a.live_restore, a.log_level); "
        "print('argparse' in sys.modules, 'gettext' in sys.modules, "
        "any(isinstance(o, type) and o.__module__ == 'argparse' for o in gc.get_objects()))"
    )
    assert _python(code).splitlines() == ["/r ['h:1'] False info", "False False False"]


def test_the_daemons_options_are_still_argparses() -> None:
    """--help and a refused value as before (argparse's words, exit 2)."""
    helped = subprocess.run(
        [sys.executable, "-m", "boxd", "--help"], capture_output=True, text=True
    )
    assert helped.returncode == 0 and "--procview-cpus" in helped.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "boxd", "--log-level", "loud"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice: 'loud'" in bad.stderr


def test_the_events_history_keeps_the_last_256_as_docker() -> None:
    """Docker's daemon keeps 256 events for ``--since``; more kept removed containers' ids,
    names and labels alive."""
    events = _events.Events()
    config = _records.ContainerConfig(image="default", command=("true",), labels=("a=b",))
    for n in range(300):
        events.removed(_records.Container(f"{n:064x}", f"c{n}", 0.0, config))
    kept, receive = events.subscribe()
    receive.close()
    assert [e.attribute("name") for e in kept] == [f"c{n}" for n in range(300 - 256, 300)]


def _made_from_a_generator(node: ast.AST) -> bool:
    """A tuple made from an iterator of unknown length: ``tuple(x for ...)``,
    ``tuple(map(...))`` (``filter``, ``zip``) or ``f(*(x for ...))``."""
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Name) and node.func.id == "tuple" and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.GeneratorExp):
            return True
        if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name):
            return arg.func.id in ("map", "filter", "zip")
    return any(
        isinstance(a, ast.Starred) and isinstance(a.value, ast.GeneratorExp) for a in node.args
    )


def test_no_tuple_is_made_from_a_generator() -> None:
    """CPython 3.11 makes such a tuple at a guessed length of 10 and shrinks it, so it is
    taken from one of its free lists of tuples and returned to another's (each keeps up
    to 2,000): after a few hundred starts the daemon held ~0.7 MB of free tuples that way
    (bench/README.md, session 17).  A list comprehension's tuple is made at its length."""
    found = []
    for path in sorted(Path(boxd.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if _made_from_a_generator(node):
                found.append(f"{path.name}:{getattr(node, 'lineno', '?')}")
    assert not found


@_record.frozen
class _Point:
    x: int
    y: int = 0
    label: str = ""

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x must not be negative")


def test_a_record_made_from_a_dict_is_checked_as_a_call() -> None:
    assert _record.make(_Point, {"x": 1, "label": "a"}) == _Point(1, label="a")
    assert _record.evolve(_Point(1, 2), y=3) == _Point(1, 3)
    for values, refused in (
        ({"y": 1}, "missing x"),
        ({"x": 1, "z": 2}, "unexpected or repeated 'z'"),
    ):
        with pytest.raises(TypeError, match=refused):
            _record.make(_Point, values)
    with pytest.raises(ValueError, match="negative"):
        _record.evolve(_Point(1), x=-1)


def test_the_cgroup_limits_leave_no_tuples_behind() -> None:
    """Limits has 20 fields: made or copied by a call with keywords from a dict, each left
    a tuple of their names that CPython 3.11 keeps (its free list of 20-tuples is filled
    and never taken from).  In a fresh interpreter, as the list may be full in this one."""
    code = (
        "import sys; from boxd import _record, _records, _resources; "
        "res = _records.Resources(memory=64 << 20); _resources.limits(res); "
        "before = sys.getallocatedblocks(); "
        "[_record.evolve(_resources.limits(res), pids_limit=n) for n in range(3000)]; "
        "print(sys.getallocatedblocks() - before)"
    )
    assert int(_python(code)) < 300


def test_a_records_converter_code_is_made_once() -> None:
    """cattrs makes a field's hooks anew for each class that has the field: each request
    holding a ContainerConfig had its own copy of its structuring code (35 KB)."""
    config = _convert.unstructure(_records.ContainerConfig(image="default", command=("true",)))
    for request in (_messages.RunRequest, _messages.CreateRequest):
        _convert.structure({"config": config}, request)
    name = "<cattrs generated structure boxd._records.ContainerConfig>"
    made = [
        f
        for f in gc.get_objects()
        if isinstance(f, types.FunctionType) and f.__code__.co_filename == name
    ]
    assert len(made) == 1

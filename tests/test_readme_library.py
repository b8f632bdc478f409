"""The README's library examples, run as they are written (their state directory moved
into the test's): what a reader copies works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    section = text.split("### As a library", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_has_its_library_examples() -> None:
    assert len(_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_readme_library_example_runs(index: int, tmp_path: Path) -> None:
    source = _examples()[index]
    assert '"/tmp/boxd-lib"' in source
    source = source.replace('"/tmp/boxd-lib"', repr(str(tmp_path / "root")))
    done = subprocess.run(  # not in the repository: the installed boxd, not its sources
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if index == 0:
        assert lines == ["0"]
    else:
        assert lines[0].startswith("(0, b'6\\n', RunSummary(wall_seconds=")
        assert lines[1] == "(137, b'')"
        assert lines[2] == "0 10000000"

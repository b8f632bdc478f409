"""The benchmark still runs (quick mode): every case is measured or reports its error.
No timing is asserted: timings belong to `nox -s bench`, not to pass/fail tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent


def test_quick_bench_covers_every_case(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    data = json.loads((tmp_path / "results.json").read_text())
    results = data["results"]
    for prefix in (
        "start/boxctl",
        "start/library",
        "start/crun",
        "start/runc",
        "start/bwrap",
        "start/podman",
        "many/",
        "list/boxctl ps (0)",
        "memory/",
        "output/",
    ):
        found = [k for k in results if k.startswith(prefix)]
        assert found, prefix
        for k in found:
            assert "median" in results[k] or results[k].get("error"), k
    assert "boxd benchmarks" in (tmp_path / "results.md").read_text()

"""How the installed ``boxctl`` and ``boxd-runtime`` start (no root, no daemon): scripts of
their own, not the wrapper an installer writes for an entry point (pip 23's imports ``re``,
~7 ms of every call), which import neither ``re``, ``enum``, ``typing`` nor ``json`` on the
way to their first error.  What they import is read from ``PYTHONPROFILEIMPORTTIME``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {"re", "enum", "typing", "json"}


def _run(program: str, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    path = Path(sys.executable).with_name(program)
    assert path.read_text().startswith("#!/"), f"{path} is not a script of its own"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    r = subprocess.run([str(path), *args], capture_output=True, text=True, env=env, timeout=60)
    imported = {
        line.rpartition("|")[2].strip()
        for line in r.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    return r, imported


def test_installed_boxctl_starts_without_heavy_imports(tmp_path: Path) -> None:
    socket = tmp_path / "no-daemon.sock"
    r, imported = _run("boxctl", "--socket", str(socket), "ps", "-a")
    assert r.returncode == 1
    assert f"boxctl: cannot connect to boxd at {socket}: is the daemon running?" in r.stderr
    assert {"boxctl._cli", "boxctl._ps", "boxctl._client"} <= imported
    assert not imported & HEAVY, sorted(imported & HEAVY)


@pytest.mark.parametrize("command", ["state", "delete"])
def test_installed_boxd_runtime_starts_without_heavy_imports(tmp_path: Path, command: str) -> None:
    r, imported = _run("boxd-runtime", "--root", str(tmp_path), command, "nosuch")
    assert r.returncode == 1
    assert 'container "nosuch" does not exist' in r.stderr
    assert "boxd._oci._cli" in imported
    assert not imported & HEAVY, sorted(imported & HEAVY)


# What `run` and `create` import only for their options about environment and labels,
# ports and names, volumes and health checks.
RUN_OPTION_MODULES = {"boxctl._files", "boxctl._network", "boxctl._volumes", "boxctl._health"}


def test_plain_run_skips_the_modules_of_options_not_given(tmp_path: Path) -> None:
    socket = tmp_path / "no-daemon.sock"
    r, imported = _run("boxctl", "--socket", str(socket), "run", "--rm", str(tmp_path), "true")
    assert r.returncode == 125
    assert "cannot connect to boxd" in r.stderr
    assert "boxctl._runopts" in imported
    assert not imported & RUN_OPTION_MODULES, sorted(imported & RUN_OPTION_MODULES)


def test_run_imports_the_modules_of_options_given(tmp_path: Path) -> None:
    socket = tmp_path / "no-daemon.sock"
    options = ["-e", "A=1", "-v", f"{tmp_path}:/data", "--dns", "192.0.2.53"]
    options += ["--health-cmd", "true", "--cidfile", str(tmp_path / "cid")]
    r, imported = _run("boxctl", "--socket", str(socket), "run", *options, str(tmp_path), "true")
    assert r.returncode == 125
    assert "cannot connect to boxd" in r.stderr
    assert imported >= RUN_OPTION_MODULES, sorted(RUN_OPTION_MODULES - imported)
    assert not (tmp_path / "cid").exists()  # claimed, then given up: nothing was created

"""The benchmark still runs (quick mode): every case lists boxd and every peer, each measured
or with the reason it could not run, and nothing the run made is left behind.  No timing is
asserted: timings belong to `nox -s bench`, not to pass/fail tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._env import own_cgroup_dirs
from bench._report import BASELINE, OURS, PEER, Case
from bench._targets import TARGETS, judge

REPO = Path(__file__).resolve().parent.parent

CASES = ("start", "sequential", "concurrent", "list", "memory", "output", "oci-cycle", "oci-podman")
# The network cases, each with its entries (measured or with their error).
NETWORK_CASES = ("network-start", "network-bridge", "network-published")
PEERS_PER_CASE = {
    "start": ("crun run", "runc run", "bwrap --unshare-all", "podman run --rm --rootfs"),
    "sequential": ("crun run", "runc run", "bwrap --unshare-all", "podman run --rm --rootfs"),
    "concurrent": ("crun run", "runc run", "bwrap --unshare-all", "podman run --rm --rootfs"),
    "oci-cycle": ("runc create, start, delete", "crun create, start, delete", "runc run"),
    "oci-podman": ("podman --runtime runc run --rm --rootfs",),
}
TOOLS = ("crun", "runc", "bwrap", "podman", "hyperfine", "busybox")


@contextlib.contextmanager
def cgroups_of_its_own() -> Iterator[list[Path]]:
    """A new cgroup below ours in every hierarchy, for a command to run in (so that
    another run on the machine that cleans up below its own cgroup never sees what we put
    there); removed at the end, which fails if a process is left in it."""
    made: list[Path] = []
    try:
        for d in own_cgroup_dirs():
            new = d / f"boxd-bench-test-{os.getpid()}"
            new.mkdir()
            made.append(new)
            for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: none until copied
                if (new / name).exists() and not (new / name).read_text().strip():
                    (new / name).write_text((d / name).read_text())
        yield made
    finally:
        deadline = time.monotonic() + 30
        for d in reversed(made):
            while True:
                try:
                    d.rmdir()
                    break
                except OSError:  # a process of the run still leaving, or left behind
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


@pytest.mark.root
def test_quick_bench_reports_every_case_and_peer(tmp_path: Path) -> None:
    with cgroups_of_its_own() as own:
        # Another run's cgroups (podman's parent, a runc container) beside the run's own,
        # as a bench running at the same time has them: the run must leave them alone.
        others = [d / f"bench-{name}" for d in own for name in ("other-podman", "x")]
        for d in others:
            d.mkdir()
        try:
            enter = 'for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 125; done; '
            r = subprocess.run(
                [
                    "sh",
                    "-c",
                    enter + f"exec {sys.executable} -m bench --quick --no-install --out {tmp_path}",
                    "sh",
                    *map(str, own),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
                # Its work directory below ours: the session's leak check knows its roots.
                env={**os.environ, "TMPDIR": str(tmp_path)},
            )
            assert [d for d in others if not d.is_dir()] == []
        finally:
            for d in others:
                with contextlib.suppress(FileNotFoundError):
                    d.rmdir()
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["cleanup_problems"] == [], data["cleanup_problems"]
    assert r.returncode == 0, r.stderr[-2000:]
    for tool in TOOLS:
        info = data["tools"][tool]
        assert info.get("version") or info.get("error"), tool
    cases = {c["key"]: c for c in data["cases"]}
    assert set(CASES) | set(NETWORK_CASES) <= set(cases)
    for key in (*CASES, *NETWORK_CASES):
        entries = {e["name"]: e for e in cases[key]["entries"]}
        assert any(e["role"] == OURS for e in entries.values()), key
        for name in PEERS_PER_CASE.get(key, ()):
            assert name in entries, (key, name)
        for e in entries.values():
            if "error" in e:
                assert e["error"].strip(), (key, e["name"])
            else:
                assert isinstance(e["median"], float | int) and e["runs"] >= 1, (key, e)
        for ratio in cases[key]["ratios"]:
            assert entries[ratio["ours"]]["role"] == OURS
            assert entries[ratio["other"]]["role"] != OURS
    assert "memory" in (tmp_path / "results.md").read_text().lower()
    # It ends with the issues' targets, each judged (an entry's name drifting from its
    # target's would show as "not measured").
    assert "## The issues' targets" in (tmp_path / "results.md").read_text()
    failed = {c["key"] for c in data["cases"] if any("error" in e for e in c["entries"])}
    assert len(data["targets"]) == len(TARGETS)
    for target, row in zip(TARGETS, data["targets"], strict=True):
        assert row["met"] is not None or target.case in failed, row
    # Its own work directory only: another run on the machine may have its own mounts.
    assert f"{data['work']}/" not in Path("/proc/self/mountinfo").read_text()
    # Nor a cgroup of its own anywhere (podman's parent is at each hierarchy's root).
    tag = "bench-" + Path(data["work"]).name.removeprefix("boxd-bench-") + "-"
    assert [t for t, _, _ in os.walk("/sys/fs/cgroup") if os.path.basename(t).startswith(tag)] == []


def test_ratios_pair_ours_with_every_measured_other_of_the_same_metric() -> None:
    case = Case("c", "a case", "ms")
    case.measure("ours", OURS, lambda: [2.0, 4.0, 6.0])
    case.measure("peer", PEER, lambda: [2.0])
    case.measure("other metric", BASELINE, lambda: [1.0], metric="m")
    case.measure("broken", PEER, lambda: [1.0 / 0])
    assert [(r["ours"], r["other"], r["ratio"]) for r in case.ratios()] == [("ours", "peer", 2.0)]


def test_a_failing_entry_is_kept_with_its_error() -> None:
    case = Case("c", "a case", "ms")

    def missing() -> list[float]:
        raise RuntimeError("podman is not installed")

    case.measure("podman", PEER, missing)
    case.measure("empty", PEER, list)
    assert [e["error"] for e in case.to_json()["entries"]] == [
        "RuntimeError: podman is not installed",
        "no samples",
    ]
    assert case.ratios() == []


def test_targets_are_judged_from_the_entries_the_run_measured() -> None:
    listing = Case("list", "listing", "ms")
    listing.measure("python -c pass", BASELINE, lambda: [20.0])
    listing.measure("boxctl ps -a (0 containers)", OURS, lambda: [29.0])
    listing.measure("boxctl ps -a (100 created)", OURS, lambda: [31.0])
    output = Case("output", "output", "ms")
    output.measure("raw pipe: dd to cat", BASELINE, lambda: [100.0])
    output.measure("boxctl run --rm: one client attached", OURS, lambda: [400.0])
    output.measure("boxctl run -d: to the log, nobody attached", OURS, lambda: [150.0])
    output.fail("PTY: script -qec dd", BASELINE, "script is not installed")
    output.measure("boxctl run --rm -t: through a PTY, attached", OURS, lambda: [1.0])
    rows = {r["target"]: r for r in judge([listing, output])}
    assert {r["issue"] for r in rows.values()} == {17}  # only the cases of this run
    zero = rows["`boxctl ps -a`, 0 containers, at most 1.5x `python -c pass`"]
    assert (zero["met"], zero["shown"]) == (True, "1.45x")
    assert rows["`boxctl ps -a`, 100 containers, at most 1.5x `python -c pass`"]["met"] is False
    attached = rows["256 MiB through `run --rm` (attached) at least 50% of a raw pipe"]
    assert (attached["met"], attached["shown"]) == (False, "25%")
    assert rows["256 MiB to the log, detached, at least 50% of a raw pipe"]["met"] is True
    pty = rows["256 MiB through `run --rm -t` at least as fast as `script`"]
    assert (pty["met"], pty["shown"]) == (None, "not measured")

"""The daemon on a pure cgroup v1 host and on a pure cgroup v2 host, for real.

This host is hybrid (memory, cpu and pids are v1 hierarchies; the unified one holds only
hugetlb), so the daemon runs in a private mount namespace of the test's own that shows it
one kind only: the unified hierarchy covered by an empty tmpfs (pure v1, as on an older
distribution), or /sys/fs/cgroup covered by the unified hierarchy (pure v2, its v1
hierarchies still listed in mountinfo below the cover, and without the controllers this
kernel has bound to v1: their limits are refused by name, which a fake tree checks for a
v2 host that has them, test_cgroup.py).  Both namespaces end with the daemon; the
harness checks that no cgroup of it is left in any hierarchy.  Last, a host that is itself
a container: boxd inside a privileged boxd container, as a CI job runs it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from daemon_harness import CGROUP_VIEWS, REPO, UNIFIED, Daemon, frozen, running_daemon

pytestmark = pytest.mark.root

needs_hybrid = pytest.mark.skipif(
    not Path(UNIFIED, "cgroup.controllers").exists(),
    reason="needs a hybrid host (to show the daemon one kind of hierarchy only)",
)
PURE_V1, PURE_V2 = CGROUP_VIEWS["v1"], CGROUP_VIEWS["v2"]


def _mode(daemon: Daemon) -> str:
    (line,) = [x for x in daemon.ctl("info").stdout.splitlines() if x.startswith("cgroup_mode")]
    return line.split(":", 1)[1].strip()


def _pause_freezes(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "p", "default", "sleep", "300")
    pid = daemon.inspect("p")["state"]["pid"]
    daemon.ctl("pause", "p")
    assert frozen(pid)
    daemon.ctl("unpause", "p")
    assert not frozen(pid)
    assert daemon.ctl("exec", "p", "echo", "in").stdout == "in\n"


def _adopted_after_a_crash(daemon: Daemon) -> None:
    """The daemon killed with -9 and started again keeps container ``p`` (live restore)."""
    pid = daemon.inspect("p")["state"]["pid"]
    daemon.stop(signal.SIGKILL)
    daemon.start()
    assert daemon.inspect("p")["state"]["pid"] == pid
    daemon.ctl("pause", "p")
    assert frozen(pid)
    daemon.ctl("rm", "-f", "p")


@needs_hybrid
def test_a_pure_v1_host(tmp_path: Path) -> None:
    """Limits, their counters, the v1 freezer and live restore with v1 hierarchies only."""
    with running_daemon(tmp_path, wrap=PURE_V1) as daemon:
        assert _mode(daemon) == "v1"
        r = daemon.ctl("run", "--name", "hog", "-m", "32m", "default",
                       "sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)",
                       check=False)  # fmt: skip
        assert r.returncode == 137 and daemon.inspect("hog")["state"]["oom_killed"] is True
        r = daemon.ctl("run", "--rm", "--pids-limit", "8", "default",
                       "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9; do sleep 9 & done",
                       check=False)  # fmt: skip
        assert r.returncode == 2 and "Cannot fork" in r.stderr
        free = daemon.ctl("run", "--rm", "-m", "64m", "default", "free", "-m").stdout
        assert free.splitlines()[1].split()[1] == "64"  # the /proc view's, from v1 memory
        _pause_freezes(daemon)
        _adopted_after_a_crash(daemon)


@needs_hybrid
def test_a_pure_v2_host_whose_v1_hierarchies_are_covered(tmp_path: Path) -> None:
    """mountinfo still lists the v1 mounts below the unified hierarchy's cover: they are
    not used (the daemon once took the host for hybrid and every run failed, `cannot
    create cgroup /sys/fs/cgroup/cpu/...`).  cgroup.freeze, the BPF device program and
    live restore work; the limits of controllers this kernel keeps on v1 are refused."""
    with running_daemon(tmp_path, wrap=PURE_V2) as daemon:
        assert _mode(daemon) == "v2"
        assert daemon.ctl("run", "--rm", "default", "echo", "ran").stdout == "ran\n"
        r = daemon.ctl("run", "--rm", "-m", "64m", "default", "true", check=False)
        assert r.returncode == 125 and "the memory controller is unavailable" in r.stderr
        # The device program: a node outside the allowlist cannot be made, one a rule
        # allows can be made and opened.
        make = "mknod /tmp/fuse c 10 229 && exec 3<>/tmp/fuse && echo opened"
        r = daemon.ctl("run", "--rm", "default", "sh", "-c", make, check=False)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr
        r = daemon.ctl("run", "--rm", "--device-cgroup-rule", "c 10:229 rwm", "default",
                       "sh", "-c", make, check=False)  # fmt: skip
        assert r.stdout == "opened\n", r.stderr
        _pause_freezes(daemon)
        _adopted_after_a_crash(daemon)


# Run in the outer container: the inner daemon, a run, a limit its /proc view shows, a
# pause; each inner container is removed before the inner daemon stops.
INNER = """
{python} -m boxd --root /var/lib/boxd/root --socket /run/inner.sock --log-level warning &
daemon=$!
for i in $(seq 100); do [ -S /run/inner.sock ] && break; sleep 0.1; done
inner() {{ {python} -m boxctl --socket /run/inner.sock "$@"; }}
inner run --rm default echo inner ran
inner run --rm -m 64m default sh -c 'free -m | sed -n 2p' | tr -s ' ' | cut -d' ' -f1,2
inner run -d --name p default sleep 300 > /dev/null
inner pause p > /dev/null && inner ps --format '{{{{.Names}}}} {{{{.State}}}}'
inner rm -f p > /dev/null
kill $daemon && wait $daemon && echo inner daemon stopped
"""


def test_boxd_in_a_privileged_container(daemon: Daemon) -> None:
    """A CI job's case: boxd inside a --privileged boxd container, its state on a volume
    (an overlay's upper layer cannot be on the container's own overlay root), the project
    and its interpreter bound read-only.  The inner daemon's containers run, get their
    limits (in cgroups below its own, the outer container's) and the inner /proc view,
    and pause."""
    binds = sorted({str(REPO), sys.prefix, sys.base_prefix})
    outer = [b for b in binds if not any(b.startswith(o + "/") for o in binds if o != b)]
    volumes = [arg for path in outer for arg in ("-v", f"{path}:{path}:ro")]
    r = daemon.ctl("run", "--rm", "--privileged", "-v", "inner-state:/var/lib/boxd", *volumes,
                   "-e", f"PYTHONPATH={REPO}", "default",
                   "sh", "-c", INNER.format(python=sys.executable), timeout=120)  # fmt: skip
    assert r.stdout.splitlines() == [
        "inner ran",
        "Mem: 64",
        "p paused",
        "inner daemon stopped",
    ], r.stderr
    daemon.ctl("volume", "rm", "inner-state")

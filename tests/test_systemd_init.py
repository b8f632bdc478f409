"""systemd as a container's init, end to end: a Debian root with systemd (debootstrap's,
which .ci/systemd-root builds once into :data:`ROOT`; ``BOXD_TEST_SYSTEMD_ROOT`` names
another tarball) imported as an image and booted as Docker's users boot it.  The
mechanisms alone (the name=systemd cgroup, the terminal's hangup, Podman's tmpfs) are
tested with busybox in test_cgroupfs.py, test_terminal.py and test_oci_podman.py."""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon

ROOT = Path(os.environ.get("BOXD_TEST_SYSTEMD_ROOT", "/var/cache/boxd-ci/systemd-bookworm.tar"))

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _state(daemon: Daemon, cid: str) -> str:
    """``systemctl is-system-running``: starting until systemd has booted."""
    return daemon.ctl("exec", cid, "systemctl", "is-system-running", check=False).stdout.strip()


def test_systemd_boots_runs_a_service_and_halts_at_stop(daemon: Daemon) -> None:
    """``--privileged`` (writable cgroups, as Docker and runc need for systemd) with tmpfs at
    /run and /run/lock and a terminal: systemd boots with no cgroup error, starts a
    service that the journal records, its console-getty's prompt reaches the log, and
    ``stop`` sends the image's STOPSIGNAL (SIGRTMIN+3): systemd halts, which in a PID
    namespace with CAP_SYS_BOOT the kernel ends with SIGINT (exit 130, as under runc; a
    SIGTERM it ignores would have been followed by SIGKILL: 137).  Nothing is left."""
    if not ROOT.is_file():
        pytest.skip(f"no systemd root at {ROOT} (.ci/systemd-root builds it with debootstrap)")
    daemon.ctl("import", "-c", 'CMD ["/sbin/init"]', "-c", "STOPSIGNAL SIGRTMIN+3", str(ROOT),
               "sysd:test", timeout=300)  # fmt: skip
    cid = daemon.ctl("run", "-d", "-t", "--privileged", "--tmpfs", "/run", "--tmpfs",
                     "/run/lock", "sysd:test").stdout.strip()  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (state := _state(daemon, cid)) not in ("running", "degraded"):
            assert state in ("", "initializing", "starting"), state
            assert time.monotonic() < deadline, f"systemd did not boot: {state}"
            time.sleep(0.2)
        status = daemon.ctl("exec", cid, "systemctl", "status", "--no-pager").stdout
        assert "init.scope" in status and "systemd-journald.service" in status, status
        daemon.ctl("exec", cid, "systemd-run", "--unit", "boxd-test", "sleep", "1000")
        script = "systemctl is-active boxd-test; journalctl --no-pager -u boxd-test"
        service = daemon.ctl("exec", cid, "sh", "-c", script).stdout
        assert service.startswith("active\n") and "Started boxd-test.service" in service
        # Below the container's own cgroup: name=systemd's on a v1 or hybrid host, else its
        # cgroup2.
        named = "/sys/fs/cgroup/systemd"
        top = named if os.path.isdir(named) else "/sys/fs/cgroup"
        (slice_,) = glob.glob(f"{top}/**/{cid}/system.slice", recursive=True)
        assert os.path.isdir(f"{slice_}/boxd-test.service")
        deadline = time.monotonic() + 60
        while " login: " not in (log := daemon.ctl("logs", cid).stdout):
            assert time.monotonic() < deadline, log[-2000:]
            time.sleep(0.2)
        assert "control group" not in log and "Failed to mount" not in log, log
        daemon.ctl("stop", cid)
        assert daemon.inspect(cid)["state"]["exit_code"] == 130
        assert "Halting system." in daemon.ctl("logs", cid).stdout
    finally:
        daemon.ctl("rm", "-f", cid)

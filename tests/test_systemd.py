"""boxd as a systemd service: the units parse (systemd-analyze verify), and a real daemon
speaks both protocols a service manager uses, readiness (Type=notify) and socket
activation.  No systemd runs on these machines: the test plays the service manager."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_harness import Daemon, _env, leftover_cgroups, logged_daemon, shims, until

from boxd import _systemd


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "boxd",
            "install-service",
            "--unit-dir",
            str(tmp_path),
            "--group",
            "root",  # exists: nothing is created on this machine
            "--boxd",
            f"{sys.executable} -m boxd",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    )
    assert "systemctl daemon-reload" in r.stdout
    service = (tmp_path / "boxd.service").read_text()
    reload = "ExecReload=/bin/kill -HUP $MAINPID"  # systemctl reload: SIGHUP's reload
    for line in ("Type=notify", "KillMode=process", "Delegate=yes", reload):
        assert line in service.splitlines()
    assert "--cgroup-parent /boxd" in service
    assert "SocketGroup=root" in (tmp_path / "boxd.socket").read_text()
    units = [str(tmp_path / "boxd.service"), str(tmp_path / "boxd.socket")]
    r = subprocess.run([analyze, "verify", *units], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_notify_sends_one_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _systemd.notify("READY=1")  # no service manager: nothing to tell
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        assert _systemd.notify("READY=1")
        assert manager.recv(4096) == b"READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(f"\0boxd-test-{os.getpid()}")  # the abstract namespace, as systemd uses
        monkeypatch.setenv("NOTIFY_SOCKET", f"@boxd-test-{os.getpid()}")
        assert _systemd.notify("STOPPING=1")
        assert manager.recv(4096) == b"STOPPING=1"


@pytest.mark.root
def test_daemon_under_a_service_manager(tmp_path: Path) -> None:
    """Started as systemd starts it: the listening socket as fd 3 with LISTEN_FDS and
    LISTEN_PID, NOTIFY_SOCKET for READY=1 once it serves; the socket is systemd's and
    stays when the daemon stops."""
    path = tmp_path / "boxd.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(30)
    # As systemd execs it: fd 3 and LISTEN_PID of the exec'd process itself.
    start = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.close(int(sys.argv[1])); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'boxd', *sys.argv[2:]])"
    )
    env = {**_env(), "NOTIFY_SOCKET": str(tmp_path / "notify")}
    fd = listener.fileno()
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", start, str(fd), "--root", str(root), "--socket", str(path)),
            *("--docker-socket", str(tmp_path / "docker.sock")),
        ],
        pass_fds=(fd,),
        env=env,
    )
    listener.close()
    daemon = Daemon(root=root, socket=path)
    try:
        assert manager.recv(4096) == b"READY=1"
        assert daemon.ctl("run", "--rm", "default", "echo", "hi").stdout == "hi\n"
        proc.send_signal(signal.SIGHUP)  # systemctl reload
        assert manager.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert manager.recv(4096) == b"READY=1"
        proc.send_signal(signal.SIGTERM)
        assert manager.recv(4096) == b"STOPPING=1"
        assert proc.wait(timeout=60) == 0
        assert path.exists()  # systemd's socket, not the daemon's to remove
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        manager.close()
        left = shims(root)
        for shim in left:  # nothing may outlive the test, whatever failed
            os.kill(shim, signal.SIGKILL)
    assert left == []
    deadline = time.monotonic() + 10
    while leftover_cgroups(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftover_cgroups(root) == []


@pytest.mark.root
def test_the_log_in_the_journal_carries_its_priorities(tmp_path: Path) -> None:
    """A service's stderr that is the journal's ($JOURNAL_STREAM names it): each line
    starts with its syslog priority, as journald reads it (``journalctl -p``), without a
    time of boxd's own (the journal has its own; a stderr elsewhere keeps boxd's)."""
    log = tmp_path / "boxd.log"
    log.touch()
    st = log.stat()
    journal = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    with logged_daemon(tmp_path, env=journal) as (daemon, _):
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGUSR1)
        until(lambda: "SIGUSR1" in log.read_text(), "the task dump")
        assert daemon.stop() == 0
    lines = log.read_text().splitlines()
    assert any(line.startswith("<6>boxd: boxd ready: root ") for line in lines), lines
    assert "<4>boxd: received SIGUSR1: the daemon's tasks" in lines
    assert lines[-1] == "<6>boxd: boxd stopped"
    assert not [line for line in lines if re.match(r"\d{4}-\d\d-\d\d ", line)]

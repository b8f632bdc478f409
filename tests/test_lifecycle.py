"""The full lifecycle against a real daemon in a temporary root, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import (
    Daemon,
    _env,
    daemon_cli,
    frozen,
    logged_daemon,
    running_daemon,
    until,
)
from docker_clients import api_call

from boxctl._client import CliError
from boxd import protocol
from boxd._cgroup import CgroupHost
from boxd._supervisor import cgroup_name

pytestmark = pytest.mark.root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_foreground_run_streams_and_returns_the_exit_code(daemon: Daemon) -> None:
    r = daemon.ctl(
        "run", "--rm", "default", "sh", "-c", "echo out; echo err >&2; exit 7", check=False
    )
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


def test_command_not_found_and_not_executable(daemon: Daemon) -> None:
    r = daemon.ctl("run", "--rm", "default", "/bin/nope", check=False)
    assert r.returncode == 127
    assert r.stderr.strip() == "boxctl: exec /bin/nope: No such file or directory"
    r = daemon.ctl("run", "--rm", "default", "/etc/passwd", check=False)
    assert r.returncode == 126
    assert "Permission denied" in r.stderr
    r = daemon.ctl("run", "--rm", "default", "no-such-command", check=False)
    assert r.returncode == 127
    assert daemon.ctl("ps", "-a", "-q").stdout == ""  # --rm: removed although it never ran


def test_auto_removed_container_is_gone_when_its_exit_code_is_told(daemon: Daemon) -> None:
    """As docker run --rm: a ps right after the run never shows the container, whichever
    way it was started."""
    for _ in range(5):
        r = daemon.ctl("run", "--rm", "default", "sh", "-c", "exit 5", check=False)
        assert r.returncode == 5
        assert daemon.ctl("ps", "-a", "-q").stdout == ""
    cid = daemon.ctl("create", "--rm", "default", "sh", "-c", "exit 6").stdout.strip()
    assert daemon.ctl("start", "-a", cid, check=False).returncode == 6
    assert daemon.ctl("ps", "-a", "-q").stdout == ""
    cid = daemon.ctl("run", "-d", "--rm", "default", "true").stdout.strip()
    daemon.wait_for_gone(cid)


def test_options_parse_as_docker_does() -> None:
    """boxctl's own option parser (no daemon): bundles, = forms, the command line after
    the image left alone, and one-line errors that name the word."""
    from boxctl._args import Args
    from boxctl._cli import find_command

    def parse(*words: str) -> Args:
        command = find_command(words[0])
        assert command is not None
        return command.parse(words[1:], f"boxctl {words[0]}")

    a = parse("run", "-it", "--rm", "-eA=1", "-e", "B", "--memory=64m", "img", "sh", "-c", "-x")
    assert (a.tty, a.interactive, a.rm, a.env, a.memory) == (True, True, True, ["A=1", "B"], "64m")
    assert a.words == ["img", "sh", "-c", "-x"]
    a = parse("run", "--memory-swap", "-1", "--no-sig-proxy", "--", "img")
    assert (a.memory_swap, a.sig_proxy, a.words, a.detach) == ("-1", False, ["img"], False)
    a = parse("exec", "-it", "web", "ls", "-l")
    assert (a.container, a.command, a.tty) == ("web", ["ls", "-l"], True)
    assert parse("run", "--sig-proxy", "img").sig_proxy
    assert not parse("run", "--sig-proxy=false", "img").sig_proxy
    assert parse("run", "--rm=true", "img").rm and not parse("run", "--rm=0", "img").rm
    assert parse("stats", "--no-stream").no_stream  # a flag named --no-x is still a flag
    assert parse("attach", "--no-stdin", "c").no_stdin
    a = parse("ps", "-aq")
    assert (a.all, a.quiet, a.format) == (True, True, None)
    assert parse("stop", "-t", "2.5", "a", "b").time == 2.5
    assert parse("rm", "a", "-f").force
    assert parse("logs", "--tail=3", "c").tail == "3"
    # pflag's -x=VALUE: the = is not part of the value; a flag takes a boolean so.
    a = parse("ps", "-a", "-n=1", "-f=name=web")
    assert (a.last, a.filter) == (1, ["name=web"])
    a = parse("run", "-e=A=1", "-d=false", "-i=true", "img")
    assert (a.env, a.detach, a.interactive) == (["A=1"], False, True)
    # Docker's --userns takes a mode: host is no user namespace (boxd's default).
    assert not parse("run", "--userns", "host", "img").isolate_user
    assert parse("run", "--userns=host", "img").words == ["img"]
    assert parse("run", "--isolate-user", "img").isolate_user
    # run's and create's -h is Docker's --hostname, not --help.
    assert parse("run", "-h", "web", "img").hostname == "web"
    assert parse("create", "-hweb", "img").hostname == "web"
    # A bad option exits 125, a wrong count of operands 1: the docker CLI's codes.
    for words, message, code in [
        (("run", "--bogus", "img"), "unknown option '--bogus'", 125),
        (("logs", "--since", "c"), "a CONTAINER is required", 1),
        (("stop",), "at least one CONTAINER is required", 1),
        (("logs", "a", "b"), "unexpected argument 'b'", 1),
        (("run", "--rm=yes", "img"), "invalid --rm=yes: use true or false", 125),
        (("run", "img", "--name"), None, 0),
        (("kill", "-s"), "-s needs a value", 125),
    ]:
        if message is None:
            assert parse(*words).words == ["img", "--name"]
            continue
        with pytest.raises(CliError, match=message) as info:
            parse(*words)
        assert info.value.code == code, words


def test_command_found_on_path_and_stdin_forwarded(daemon: Daemon) -> None:
    r = daemon.ctl("run", "--rm", "-i", "default", "tr", "a-z", "A-Z", input=b"hello\n")
    assert r.stdout == "HELLO\n"


def test_detached_list_inspect_logs_stop(daemon: Daemon) -> None:
    cid = daemon.ctl(
        "run",
        "-d",
        "--name",
        "web",
        "default",
        "sh",
        "-c",
        "echo started; trap '' TERM; while :; do sleep 0.1; done",
    ).stdout.strip()
    assert len(cid) == 64
    listing = daemon.ctl("ps").stdout
    assert cid[:12] in listing and "web" in listing and "Up" in listing
    c = daemon.inspect("web")
    assert c["state"]["status"] == "running" and c["id"] == cid
    pid = c["state"]["pid"]
    assert _alive(pid)
    daemon.wait_for("web", lambda _: "started" in daemon.ctl("logs", "web").stdout)
    # The workload ignores SIGTERM: stop must kill it after the timeout, and all of it.
    t0 = time.monotonic()
    daemon.ctl("stop", "-t", "1", "web")
    assert time.monotonic() - t0 >= 1
    c = daemon.inspect(cid[:8])
    assert c["state"]["status"] == "stopped"
    assert c["state"]["exit_code"] == 137
    assert not _alive(pid)
    assert "Exited (137)" in daemon.ctl("ps", "-a").stdout
    # docker ps --format json: one object per line, Docker's keys
    (line,) = daemon.ctl("ps", "-a", "--format", "json").stdout.splitlines()
    assert json.loads(line)["ID"] == cid[:12]


def test_start_again_keeps_files_even_after_exiting(daemon: Daemon) -> None:
    daemon.ctl(
        "run",
        "-d",
        "--name",
        "keeper",
        "default",
        "sh",
        "-c",
        "echo line >> /usr/kept; cat /usr/kept | wc -l",
    )
    daemon.wait_for("keeper", lambda c: c["state"]["status"] == "exited")
    daemon.ctl("start", "keeper")
    daemon.wait_for("keeper", lambda c: c["state"]["status"] == "exited")
    assert daemon.ctl("logs", "keeper").stdout.split() == ["1", "2"]
    assert not Path("/usr/kept").exists()


def test_restart_policy_on_failure_counts(daemon: Daemon) -> None:
    daemon.ctl(
        "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "default", "sh", "-c", "exit 3"
    )
    c = daemon.wait_for(
        "flaky",
        lambda c: c["state"]["restart_count"] == 2 and c["state"]["status"] == "exited",
        timeout=30,
    )
    assert c["state"]["exit_code"] == 3
    time.sleep(0.5)
    assert daemon.inspect("flaky")["state"]["restart_count"] == 2


def test_restart_always_is_stopped_by_stop(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "loop", "--restart", "always", "default", "true")
    daemon.wait_for("loop", lambda c: c["state"]["restart_count"] >= 1)
    daemon.ctl("stop", "loop")
    c = daemon.inspect("loop")
    assert c["state"]["status"] in ("stopped", "exited")
    count = c["state"]["restart_count"]
    time.sleep(0.5)
    assert daemon.inspect("loop")["state"]["restart_count"] == count


def test_a_rm_container_survives_its_restart(daemon: Daemon) -> None:
    """``docker restart`` of a ``--rm`` container stops and starts it, as Docker's restart
    does (moby's TestContainerWithAutoRemoveCanBeRestarted); its stop removed it, and the
    start that followed failed ("container is marked for removal").  Its end after that
    removes it as before."""
    daemon.ctl("run", "-d", "--rm", "--name", "rmr", "default", "sleep", "60")
    pid = daemon.inspect("rmr")["state"]["pid"]
    daemon.ctl("restart", "-t", "0", "rmr")
    c = daemon.inspect("rmr")
    assert c["state"]["status"] == "running" and c["state"]["pid"] != pid
    daemon.ctl("kill", "rmr")
    daemon.wait_for_gone("rmr")


def test_a_kill_with_its_own_stop_signal_keeps_it_down(daemon: Daemon) -> None:
    """As Docker's: a kill with the container's stop signal (nginx's QUIT, systemd's
    SIGRTMIN+3) stops it, its restart policy does not bring it back (it did)."""
    script = "trap 'exit 0' QUIT; echo ready; while :; do sleep 0.1; done"
    daemon.ctl("run", "-d", "--name", "q", "--restart", "always", "--stop-signal", "SIGQUIT",
               "default", "sh", "-c", script)  # fmt: skip
    daemon.wait_for("q", lambda c: "ready" in daemon.ctl("logs", "q").stdout)
    daemon.ctl("kill", "-s", "QUIT", "q")
    assert daemon.inspect("q")["state"]["manual_stop"]  # written before the signal
    c = daemon.wait_for("q", lambda c: c["state"]["status"] not in ("running", "stopping"))
    assert (c["state"]["status"], c["state"]["restart_count"]) == ("stopped", 0)
    daemon.ctl("rm", "q")


def _in_a_grown_backoff(daemon: Daemon, name: str) -> None:
    """A container that ends at once, --restart always, seen waiting in its backoff once
    that has grown to 0.8 s or more (--network none: each start stays short next to it)."""
    daemon.ctl(
        "run", "-d", "--name", name, "--restart", "always", "--network", "none",
        "default", "sh", "-c", "exit 1",
    )  # fmt: skip
    daemon.wait_for(name, lambda c: c["state"]["restart_count"] >= 4)
    daemon.wait_for(name, lambda c: c["state"]["status"] == "restarting")


def test_engine_api_stop_keeps_a_restarting_container_down(daemon: Daemon) -> None:
    """docker stop of a container waiting out its backoff: no 304 (it is not at rest),
    and no restart after it.  A start meanwhile is Docker's 304 (State.Running is true while
    it restarts; it answered 204 and did nothing)."""
    _in_a_grown_backoff(daemon, "loop")
    assert api_call(daemon, "POST", "/containers/loop/start")[0] == 304
    status, _, body = api_call(daemon, "POST", "/containers/loop/stop")
    assert status == 204, body
    c = daemon.inspect("loop")
    assert c["state"]["status"] == "stopped"
    time.sleep(2)  # longer than the backoff it was in
    assert daemon.inspect("loop")["state"] == c["state"]
    status, _, _ = api_call(daemon, "POST", "/containers/loop/stop")
    assert status == 304  # at rest now


def test_a_start_by_hand_gives_on_failure_its_tries_again(daemon: Daemon) -> None:
    """As Docker's: RestartCount begins again at each start but the policy's own."""
    daemon.ctl(
        "run", "-d", "--name", "flaky", "--restart", "on-failure:1", "--network", "none",
        "default", "sh", "-c", "echo ran; exit 3",
    )  # fmt: skip

    def done(c: dict[str, Any]) -> bool:
        return bool(c["state"]["restart_count"] == 1 and c["state"]["status"] == "exited")

    daemon.wait_for("flaky", done)
    daemon.ctl("start", "flaky")
    daemon.wait_for("flaky", lambda c: daemon.ctl("logs", "flaky").stdout.count("ran") == 4)
    assert daemon.wait_for("flaky", done)["state"]["exit_code"] == 3


def test_remove_force_and_refusal(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "busy", "default", "sleep", "300")
    pid = daemon.inspect("busy")["state"]["pid"]
    r = daemon.ctl("rm", "busy", check=False)
    assert r.returncode == 1 and "is running" in r.stderr
    daemon.ctl("rm", "-f", "busy")
    assert not _alive(pid)
    r = daemon.ctl("inspect", "busy", check=False)
    assert r.returncode == 1 and r.stderr.strip() == "boxctl: No such object: busy"


def test_wait_prints_exit_code_and_kill_signals(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "w", "default", "sleep", "300")
    daemon.ctl("kill", "-s", "KILL", "w")
    assert daemon.ctl("wait", "w").stdout.strip() == "137"


def test_bad_cli_input_gets_one_line(daemon: Daemon, tmp_path: Path) -> None:
    cases = [
        (["run", "--name", "bad name", "default", "true"], "invalid container name"),
        (["run", "--memory", "-1", "default", "true"], "invalid --memory '-1'"),
        (["run", "--cpus", "nan", "default", "true"], "invalid --cpus 'nan'"),
        (["run", "--restart", "sometimes", "default", "true"], "invalid --restart"),
        (["run", str(tmp_path / "missing"), "true"], "missing"),
        (["stop", "ghost"], "No such container: ghost"),
        (["run", "-e", "=x", "default", "true"], "invalid --env '=x'"),
    ]
    for args, message in cases:
        r = daemon.ctl(*args, check=False)
        assert r.returncode != 0, args
        assert message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


def test_no_daemon_message(tmp_path: Path) -> None:
    d = Daemon(root=tmp_path, socket=tmp_path / "none.sock")
    r = d.ctl("ps", check=False)
    assert r.returncode == 1
    assert r.stderr.startswith(
        f"boxctl: cannot connect to boxd at {tmp_path}/none.sock: is the daemon running?"
    )


def test_garbage_on_the_socket_gets_an_error_and_the_daemon_serves_on(daemon: Daemon) -> None:
    for raw in (b"\xff\xff\xff\xff", struct.pack(">I", 4) + b"nope", b'\x00\x00\x00\x09{"type"'):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(daemon.socket))
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            reply = s.recv(65536)
        assert b"ErrorResponse" in reply, raw
    assert daemon.ctl("ps").returncode == 0
    mode = daemon.socket.stat().st_mode & 0o777
    assert mode == 0o660


def _run_request(daemon: Daemon, name: str, *, close: bool) -> socket.socket:
    """A client's `run` request for ``name``, sent while the daemon is stopped; then the
    client hangs up (``close``: Ctrl-C) or only half closes (it still reads the answer)."""
    config = {"image": "default", "command": ["sleep", "300"], "auto_remove": True}
    request = {"type": "RunRequest", "config": config, "name": name, "attach": True}
    assert daemon.process is not None
    s = socket.socket(socket.AF_UNIX)
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        s.connect(str(daemon.socket))
        s.sendall(protocol.encode(request))
        if close:
            s.close()
        else:
            s.shutdown(socket.SHUT_WR)
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    return s


def test_a_run_whose_client_hung_up_before_its_start_does_not_start(daemon: Daemon) -> None:
    """A `boxctl run` interrupted (Ctrl-C) while the daemon was busy, or during a slow
    create, left a container running that nobody had asked for any more (with `--rm`, for
    good): the run stops before its start and leaves nothing, as a library run cancelled
    there.  A client that only half closes still gets its container."""
    since = str(time.time())
    _run_request(daemon, "gone", close=True)

    def actions() -> list[str]:
        window = ("--since", since, "--until", str(time.time()))
        fmt = ("--format", "{{.Action}}")
        return daemon.ctl("events", *window, "-f", "container=gone", *fmt).stdout.split()

    until(lambda: "destroy" in actions(), "the hung-up run's container removed")
    assert actions() == ["create", "destroy"]
    with _run_request(daemon, "kept", close=False) as s:
        assert b"CreateResponse" in s.recv(65536)
        assert daemon.inspect("kept")["state"]["status"] == "running"
    daemon.ctl("rm", "-f", "kept")


def test_second_daemon_on_the_same_root_is_refused(daemon: Daemon) -> None:
    other = Daemon(root=daemon.root, socket=daemon.socket.with_name("other.sock"))
    with pytest.raises(RuntimeError, match="exited with 1"):
        other.start()


def _refused(argv: list[str]) -> str:
    """The stderr of a daemon started with ``argv``, which must exit 1 at once; stopped (by
    SIGTERM: it cleans up) if it serves instead."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.communicate(timeout=60)
        raise AssertionError(f"{argv} served instead of exiting") from None
    assert proc.returncode == 1, err
    return err


def test_second_daemon_on_the_same_socket_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    """Another root, the same socket: the second daemon used to put its socket in place of
    the first's (and the first's exit removed the second's)."""
    argv = [sys.executable, "-m", "boxd", "--root", str(tmp_path / "other"),
            "--socket", str(daemon.socket), "--docker-socket", ""]  # fmt: skip
    assert f"boxd: another process serves the socket {daemon.socket}: stop it" in _refused(argv)
    argv[6:9] = [str(tmp_path / "own.sock"), "--docker-socket", str(daemon.docker_socket)]
    assert "give this daemon another --docker-socket" in _refused(argv)
    assert daemon.ctl("ps", "-a", "-q").returncode == 0  # the first serves on
    assert not (tmp_path / "own.sock").exists()


def test_kill_9_of_the_daemon_then_a_new_one_tells_the_truth(tmp_path: Path) -> None:
    """Without live restore the next daemon kills what a crashed one left (see
    tests/test_live.py for the default)."""
    with running_daemon(tmp_path, "--no-live-restore") as daemon:
        daemon.ctl("run", "-d", "--name", "orphan", "default", "sleep", "300")
        daemon.ctl(
            "run", "-d", "--name", "phoenix", "--restart", "always", "default", "sleep", "300"
        )
        pids = [daemon.inspect(n)["state"]["pid"] for n in ("orphan", "phoenix")]
        daemon.stop(signal.SIGKILL)
        daemon.start()
        c = daemon.inspect("orphan")
        assert c["state"]["status"] == "exited"
        assert c["state"]["exit_code"] == 255
        assert not any(_alive(p) for p in pids)
        phoenix = daemon.wait_for("phoenix", lambda c: c["state"]["status"] == "running")
        assert phoenix["state"]["pid"] not in pids


def test_daemon_sigterm_stops_containers_and_removes_socket(tmp_path: Path) -> None:
    with running_daemon(tmp_path, "--no-live-restore") as daemon:
        daemon.ctl("run", "-d", "--name", "s", "default", "sleep", "300")
        pid = daemon.inspect("s")["state"]["pid"]
        assert daemon.stop() == 0
        assert not daemon.socket.exists()
        assert not _alive(pid)
        daemon.start()
        c = daemon.inspect("s")
        assert c["state"]["status"] == "stopped"


def test_sigusr1_logs_the_tasks_and_sigquit_stops_after_them(tmp_path: Path) -> None:
    """dockerd's SIGUSR1 dumps its goroutines and runs on, its SIGQUIT dumps them and
    exits: boxd logs its Trio task tree (it used to die at either signal, by their default
    action, leaving its sockets), and stops at SIGQUIT as at SIGTERM."""
    with logged_daemon(tmp_path) as (daemon, log):
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGUSR1)
        until(lambda: "received SIGUSR1: the daemon's tasks" in log.read_text(), "the tasks")
        assert "boxd._server.serve  at " in log.read_text()
        assert daemon.ctl("ps", "-a", "-q").stdout == ""  # still serving
        assert daemon.stop(signal.SIGQUIT) == 0
        assert "received SIGQUIT: the daemon's tasks" in log.read_text()
        assert "boxd stopped" in log.read_text()
        assert not daemon.socket.exists()


def test_pidfile_names_the_daemon_while_it_runs(tmp_path: Path) -> None:
    """dockerd's --pidfile: written at the start, removed at the stop; another daemon given
    it while the first runs is refused, a killed daemon's is replaced."""
    pidfile = tmp_path / "run" / "boxd.pid"
    pidfile.parent.mkdir()
    pidfile.write_text("999999999\n")  # no such process: a killed daemon's
    with logged_daemon(tmp_path, "--pidfile", str(pidfile)) as (daemon, _):
        assert daemon.process is not None
        assert pidfile.read_text() == f"{daemon.process.pid}\n"
        argv = [sys.executable, "-m", "boxd", "--root", str(tmp_path / "other"),
                "--socket", str(tmp_path / "other.sock"), "--docker-socket", "",
                "-p", str(pidfile)]  # fmt: skip
        assert (
            f"boxd: the pid file {pidfile} names process {daemon.process.pid}, which is "
            "running: stop that daemon"
        ) in _refused(argv)
        assert pidfile.read_text() == f"{daemon.process.pid}\n"
        assert daemon.stop() == 0
    assert not pidfile.exists()


def test_a_third_stop_signal_ends_a_stop_that_hangs(tmp_path: Path) -> None:
    """dockerd's third interrupt: a stop waiting on a container that ignores SIGTERM (300 s
    of stop timeout) ends at once, without cleanup; the next daemon cleans up as after a
    kill (running_daemon's exit)."""
    with running_daemon(tmp_path, "--no-live-restore") as daemon:
        hang = ("sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done")
        daemon.ctl("run", "-d", "--name", "stubborn", "--stop-timeout", "300", "default", *hang)
        daemon.wait_for("stubborn", lambda c: c["state"]["status"] == "running")
        until(lambda: daemon.ctl("logs", "stubborn").stdout == "up\n", "the trap set")
        pid = daemon.inspect("stubborn")["state"]["pid"]
        proc = daemon.process
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        until(lambda: not daemon.socket.exists(), "the stop begun")

        def ended() -> bool:  # one signal at a time: a pending one is not counted twice
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            return proc.poll() is not None

        try:
            until(ended, "the forced stop", timeout=60)
        finally:
            if proc.poll() is None:  # still stopping: its container ended, it ends too
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        daemon.process = None


def test_network_none_has_only_a_working_loopback(daemon: Daemon) -> None:
    script = (
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(s.getsockname()).sendall(b'ping')\n"
        "print(s.accept()[0].recv(4).decode())\n"
    )
    r = daemon.ctl("run", "--rm", "--network", "none", "default", "python3", "-c", script)
    assert r.stdout.split("\n")[:2] == ["['lo']", "ping"]


def test_foreground_run_gets_every_byte(daemon: Daemon) -> None:
    """The client that runs a container in the foreground is never dropped for being slow:
    the container waits for it, as it would for a pipe."""
    r = subprocess.run(
        f"{daemon_cli(daemon)} run --rm default head -c 67108864 /dev/zero | wc -c",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout.strip() == "67108864"


def test_pause_unpause_and_the_status_column(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "p", "default", "sh", "-c", "while :; do sleep 0.1; done")
    pid = daemon.inspect("p")["state"]["pid"]
    daemon.ctl("pause", "p")
    assert daemon.inspect("p")["state"]["status"] == "paused"
    assert frozen(pid)
    assert "(Paused)" in daemon.ctl("ps").stdout
    r = daemon.ctl("exec", "p", "true", check=False)
    cid = daemon.inspect("p")["id"]  # Docker's words, and its exit code
    assert (r.returncode, r.stderr) == (
        1,
        f"boxctl: Container {cid} is paused, unpause the container before exec\n",
    )
    info = daemon.ctl("info").stdout
    assert "paused: 1" in info and "running: 0" in info
    daemon.ctl("unpause", "p")
    assert not frozen(pid)
    assert daemon.inspect("p")["state"]["status"] == "running"
    daemon.ctl("pause", "p")
    daemon.ctl("rm", "-f", "p")  # a paused container goes too
    assert not _alive(pid)


def test_a_paused_container_ended_is_unpaused_in_the_events(daemon: Daemon) -> None:
    """As Docker's: `stop`, `kill` and `rm -f` of a paused container thaw it to end it,
    and `events` says so (`unpause` before its `die`), as Docker's resume reports it."""
    start = time.time()
    for verb in (("stop", "-t", "1"), ("kill",), ("rm", "-f")):
        daemon.ctl("run", "-d", "--name", "pz", "default", "sleep", "300")
        daemon.ctl("pause", "pz")
        daemon.ctl(*verb, "pz")
        daemon.ctl("rm", "-f", "pz")
    window = ("--since", str(start), "--until", str(time.time()))
    fmt = "{{.Action}}"
    r = daemon.ctl("events", *window, "-f", "event=pause", "-f", "event=unpause",
                   "-f", "event=die", "--format", fmt)  # fmt: skip
    assert r.stdout.split() == ["pause", "unpause", "die"] * 3


def test_kill_with_the_stop_signal_thaws_a_paused_container(daemon: Daemon) -> None:
    """As Docker's: ``kill -s`` of a paused container's own stop signal thaws it to receive
    the signal (an unpause); another signal waits, frozen, for the unpause."""
    loop = "while :; do sleep 0.1; done"
    for name, stop in (("t", "TERM"), ("u", "USR1")):
        trap = f"trap 'exit 3' TERM; trap 'exit 4' USR1; echo ready; {loop}"
        daemon.ctl("run", "-d", "--name", name, "--stop-signal", stop, "default", "sh", "-c", trap)
        daemon.wait_for(name, lambda c: "ready" in daemon.ctl("logs", c["id"]).stdout)
        daemon.ctl("pause", name)
    daemon.ctl("kill", "-s", "SIGTERM", "t")
    assert daemon.inspect("t")["state"]["status"] != "paused"  # running, or ended
    assert daemon.ctl("wait", "t", timeout=20).stdout == "3\n"
    pid = daemon.inspect("u")["state"]["pid"]
    daemon.ctl("kill", "-s", "TERM", "u")  # not its stop signal: it stays paused
    assert daemon.inspect("u")["state"]["status"] == "paused" and frozen(pid)
    daemon.ctl("kill", "-s", "usr1", "u")
    assert daemon.ctl("wait", "u", timeout=20).stdout in ("3\n", "4\n")  # both were pending
    since = daemon.inspect("t")["state"]["started_at"]
    events = daemon.ctl("events", "--since", str(since), "--until", str(time.time())).stdout
    assert events.count(" unpause ") == 2, events
    daemon.ctl("rm", "t", "u")


def test_exec_into_a_cgroup_frozen_by_another_is_refused(daemon: Daemon) -> None:
    """A container whose cgroup somebody else froze: its exec's setup would freeze in it,
    and the spawn waits for that on the event loop.  Refused, naming it; the daemon goes
    on answering, and after a thaw exec works."""
    daemon.ctl("run", "-d", "--name", "f", "default", "sleep", "300")
    cid = daemon.inspect("f")["id"]
    host = CgroupHost.detect(name=cgroup_name(daemon.root))  # the daemon is our child
    freezer = host.open(cid).freeze_state()
    assert freezer is not None, "no freezer for the container"
    state, freeze = Path(freezer[0]), freezer[1]
    thawed = "0" if freeze == "1" else "THAWED"
    state.write_text(freeze)
    try:
        r = daemon.ctl("exec", "f", "true", check=False, timeout=20)
        assert r.returncode == 1 and f"Container {cid} is frozen" in r.stderr, r.stderr
        assert "f" in daemon.ctl("ps", timeout=20).stdout
    finally:
        state.write_text(thawed)
    assert daemon.ctl("exec", "f", "echo", "thawed").stdout == "thawed\n"
    daemon.ctl("rm", "-f", "f")


def test_restarting_is_listed_as_docker_shows_it(daemon: Daemon) -> None:
    _in_a_grown_backoff(daemon, "r")
    listing = daemon.ctl("ps").stdout
    assert "Restarting (1)" in listing, listing
    daemon.ctl("rm", "-f", "r")
    assert daemon.ctl("ps", "-a", "-q").stdout == ""

"""Piped stdin through the real CLI and daemon: every byte arrives, in order, and its end
closes the container's stdin where Docker's StdinOnce does (`run -i`, `create -i`), not
that of a `run -d -i` attached to; a TTY asked for with a pipe as input is refused at
once."""

from __future__ import annotations

import hashlib
import random
import shlex
import subprocess
import sys

import pytest
from daemon_harness import REPO, Daemon, boxctl_process, daemon_cli, pipe_held, until

pytestmark = pytest.mark.root


def _payload() -> bytes:
    """1 MiB holding every byte value, the default detach keys (Ctrl-P Ctrl-Q) among them."""
    rng = random.Random(12)
    return bytes(range(256)) + b"\x10\x11" + rng.randbytes((1 << 20) - 258)


def _ctl(
    daemon: Daemon, *args: str, data: bytes, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "boxctl", "--socket", str(daemon.socket), *args],
        input=data,
        capture_output=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=timeout,
    )


def test_detach_keys_in_piped_stdin_are_data(daemon: Daemon) -> None:
    """The issue's own command: it printed nothing, exited 0 and left the container
    blocked on its stdin."""
    r = subprocess.run(
        f"printf 'abc\\020\\021def\\n' | {daemon_cli(daemon)} run -i --rm default od -c",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0].split() == [
        "0000000", "a", "b", "c", "020", "021", "d", "e", "f", "\\n",
    ]  # fmt: skip
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


def test_binary_stdin_arrives_whole_through_run_exec_and_attach(daemon: Daemon) -> None:
    data = _payload()
    digest = hashlib.md5(data).hexdigest()

    r = _ctl(daemon, "run", "-i", "--rm", "default", "md5sum", data=data)
    assert (r.returncode, r.stdout.split()[:1]) == (0, [digest.encode()]), r.stderr

    daemon.ctl("run", "-d", "--name", "c", "default", "sleep", "300")
    r = _ctl(daemon, "exec", "-i", "c", "sh", "-c", "cat > /tmp/in", data=data)
    assert r.returncode == 0, r.stderr
    assert daemon.ctl("exec", "c", "md5sum", "/tmp/in").stdout.split()[0] == digest

    # `create -i` is Docker's StdinOnce: the end of start -ai's input is the container's.
    daemon.ctl("create", "-i", "--name", "a", "default", "md5sum")
    r = _ctl(daemon, "start", "-ai", "a", data=data)
    assert (r.returncode, r.stdout.split()[:1]) == (0, [digest.encode()]), r.stderr
    daemon.ctl("rm", "-f", "c")


def test_attach_keeps_the_stdin_of_a_detached_container_open(daemon: Daemon) -> None:
    """`run -d -i` is not Docker's StdinOnce: the end of an attached client's input is not
    the end of the container's, whose stdin stays open for the next attach.  It was
    closed: the script read nothing more, and the second client's line was lost."""
    script = 'read a; echo "got $a"; read b; echo "got $b"; exit 7'
    daemon.ctl("run", "-d", "-i", "--name", "s", "default", "sh", "-c", script)
    assert daemon.inspect("s")["config"]["stdin_once"] is False
    with boxctl_process(daemon, "attach", "s") as first:
        assert first.stdin is not None
        first.stdin.write(b"one\n")
        first.stdin.close()  # its input ends; the container's does not
        until(lambda: daemon.ctl("logs", "s").stdout == "got one\n", "the first line")
        # As Docker's client: the one whose input ended waits for the container's end.
        r = _ctl(daemon, "attach", "s", data=b"two\n")
        assert (r.returncode, r.stdout) == (7, b"got two\n"), r.stderr
        assert first.stdout is not None
        assert (first.wait(timeout=60), first.stdout.read()) == (7, b"got one\ngot two\n")
    assert daemon.ctl("logs", "s").stdout == "got one\ngot two\n"


def test_start_ai_gives_each_run_its_own_input(daemon: Daemon) -> None:
    """`create -i` is Docker's StdinOnce: each `start -ai` input ends that run's stdin."""
    daemon.ctl("create", "-i", "--name", "c", "default", "sh", "-c", "cat; echo end")
    assert daemon.inspect("c")["config"]["stdin_once"] is True
    for line in (b"first\n", b"second\n"):
        r = _ctl(daemon, "start", "-ai", "c", data=line)
        assert (r.returncode, r.stdout) == (0, line + b"end\n"), r.stderr


def test_run_i_attaches_stdin_whatever_a_names(daemon: Daemon) -> None:
    """Docker's `-i` attaches stdin with `-a stdout` too; boxctl left the container
    waiting for input that never came, and hung."""
    r = _ctl(daemon, "run", "-i", "-a", "stdout", "--rm", "default", "cat", data=b"hi\n")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr


def test_a_vanished_run_i_client_closes_the_containers_stdin(daemon: Daemon) -> None:
    """Docker's StdinOnce: the stdin of `run -i` ends with its client, also one killed.
    A `cat` waited for input forever."""
    with boxctl_process(daemon, "run", "-i", "--name", "v", "default", "cat"):
        until(lambda: daemon.ctl("inspect", "v", check=False).returncode == 0, "the container")
        daemon.wait_for("v", lambda c: c["state"]["status"] == "running")
    c = daemon.wait_for("v", lambda c: c["state"]["status"] == "exited")
    assert c["state"]["exit_code"] == 0


def test_a_run_i_client_gone_while_its_input_waits_closes_the_stdin(daemon: Daemon) -> None:
    """The client's input waits for room in the container's stdin pipe when the client is
    killed, and the daemon learns of its end by the output it can no longer send: the
    stdin closes then too (it stayed open, and `cat` waited for ever)."""
    script = "until [ -e /tmp/go ]; do sleep 0.05; done; echo tick; cat >/dev/null; echo end"
    with boxctl_process(
        daemon, "run", "-i", "--name", "w", "default", "sh", "-c", script
    ) as client:
        assert client.stdin is not None
        client.stdin.write(b"x" * (256 << 10))  # more than the pipe holds
        client.stdin.flush()
        until(lambda: daemon.ctl("inspect", "w", check=False).returncode == 0, "the container")
        pid = daemon.wait_for("w", lambda c: c["state"]["status"] == "running")["state"]["pid"]
        until(lambda: pipe_held(f"/proc/{pid}/fd/0") >= 65536, "a full stdin pipe")
    daemon.ctl("exec", "w", "touch", "/tmp/go")
    c = daemon.wait_for("w", lambda c: c["state"]["status"] == "exited")
    assert c["state"]["exit_code"] == 0
    assert daemon.ctl("logs", "w").stdout == "tick\nend\n"


def test_output_flows_while_the_container_leaves_its_stdin_unread(daemon: Daemon) -> None:
    """A container that writes more than every buffer holds before it reads its input: the
    client must go on reading output while its input waits (it used to block sending
    input, so client, daemon and container waited on each other forever)."""
    data = _payload()
    script = "head -c 67108864 /dev/zero | tr '\\0' x; md5sum"
    r = subprocess.run(
        f"{daemon_cli(daemon)} run -i --rm default sh -c {shlex.quote(script)} | tail -c 36",
        shell=True,
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert r.stdout.split()[:1] == [hashlib.md5(data).hexdigest().encode()], r.stderr


def test_a_tty_with_piped_stdin_is_refused_at_once(daemon: Daemon) -> None:
    """Docker's client check: no request is sent, nothing is created or left running."""
    daemon.ctl("run", "-d", "-i", "-t", "--name", "t", "default", "sh")
    before = daemon.ctl("ps", "-a", "-q").stdout
    for args in (
        ("run", "-it", "--rm", "default", "cat"),
        ("run", "-i", "-t", "default", "cat"),
        ("exec", "-it", "t", "cat"),
        ("attach", "t"),
        ("start", "-a", "-i", "t"),
    ):
        r = _ctl(daemon, *args, data=b"x\n", timeout=20)
        assert (r.returncode, r.stderr) == (1, b"boxctl: the input device is not a TTY\n"), args
    assert daemon.ctl("ps", "-a", "-q").stdout == before
    assert daemon.inspect("t")["state"]["status"] == "running"
    # -t without -i takes no input: a pipe is fine there.
    r = _ctl(daemon, "run", "-t", "--rm", "default", "echo", "hi", data=b"")
    assert (r.returncode, r.stdout) == (0, b"hi\r\n")
    daemon.ctl("rm", "-f", "t")


def test_bad_detach_keys_exit_1_and_create_nothing(daemon: Daemon) -> None:
    """Docker's client passes --detach-keys on to the daemon, which refuses a bad value:
    exit 1 for run, start -a, attach and exec alike (not run's 125 of a bad option)."""
    daemon.ctl("create", "-i", "--name", "c", "default", "cat")
    before = daemon.ctl("ps", "-a", "-q").stdout
    for args in (
        ("run", "-i", "default", "cat"),
        ("start", "-a", "c"),
        ("attach", "c"),
        ("exec", "-i", "c", "cat"),
    ):
        r = daemon.ctl(args[0], "--detach-keys", "foo", *args[1:], check=False)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("boxctl: invalid detach keys 'foo'"), (args, r.stderr)
    # Beyond ASCII, not a key's one byte: ß was a traceback, é taken as a byte never typed.
    for keys in ("ctrl-ß", "€", "é"):
        r = daemon.ctl("attach", "--detach-keys", keys, "c", check=False)
        words = f"boxctl: invalid detach keys '{keys}': use e.g. ctrl-p,ctrl-q\n"
        assert (r.returncode, r.stderr) == (1, words), keys
    assert daemon.ctl("ps", "-a", "-q").stdout == before
    assert daemon.inspect("c")["state"]["status"] == "created"

"""Piped stdin through the real CLI and daemon: every byte arrives, in order, and its end
closes the container's stdin; a TTY asked for with a pipe as input is refused at once."""

from __future__ import annotations

import hashlib
import random
import shlex
import subprocess
import sys

import pytest
from daemon_harness import REPO, Daemon, daemon_cli

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

    # The end of the attached client's input is the end of the container's.
    daemon.ctl("run", "-d", "-i", "--name", "a", "default", "md5sum")
    r = _ctl(daemon, "attach", "a", data=data)
    assert (r.returncode, r.stdout.split()[:1]) == (0, [digest.encode()]), r.stderr
    daemon.ctl("rm", "-f", "c")


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
    assert daemon.ctl("ps", "-a", "-q").stdout == before
    assert daemon.inspect("c")["state"]["status"] == "created"

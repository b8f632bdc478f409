"""Docker's daily verbs and flags (issue 16) through the real CLI and daemon: rename, top,
diff, container prune, exec -d, --env-file, --label/--label-file, --cidfile.  The expected
outputs quote Docker's documented behaviour."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon

pytestmark = pytest.mark.root


def test_env_file_and_labels_as_docker_reads_them(daemon: Daemon, tmp_path: Path) -> None:
    """Docker: lines KEY=VALUE or KEY (the caller's value, if it has one); '#' lines and
    blank lines skipped; the value kept as written (quotes too); -e wins over the file."""
    env = tmp_path / "env"
    env.write_text('# a comment\nA=1\n\n  B=two words\nC="quoted"\nPATH\nUNSET_HERE\n')
    script = 'echo "$A|$B|$C|${UNSET_HERE-unset}"; test -n "$PATH"'
    r = daemon.ctl(
        "run", "--rm", "--env-file", str(env), "-e", "A=3", "default", "sh", "-c", script
    )
    assert r.stdout == '3|two words|"quoted"|unset\n'
    daemon.ctl("run", "-d", "--name", "e", "default", "sleep", "300")
    r = daemon.ctl("exec", "--env-file", str(env), "e", "sh", "-c", "echo $B")
    assert r.stdout == "two words\n"

    labels = tmp_path / "labels"
    labels.write_text("com.example.a=1\n# no\ncom.example.flag\n")
    daemon.ctl(
        "create", "--name", "l", "--label-file", str(labels), "-l", "com.example.a=2",
        "--label", "b=x y", "default", "true",
    )  # fmt: skip
    assert daemon.inspect("l")["config"]["labels"] == [
        "com.example.a=2",
        "com.example.flag=",
        "b=x y",
    ]

    r = daemon.ctl(
        "run", "--rm", "--env-file", str(tmp_path / "nope"), "default", "true", check=False
    )
    assert (r.returncode, r.stderr) == (
        125,
        f"boxctl: invalid --env-file '{tmp_path}/nope': No such file or directory\n",
    )
    bad = tmp_path / "bad"
    bad.write_text("GOOD=1\nBAD NAME=2\n")
    r = daemon.ctl("run", "--rm", "--env-file", str(bad), "default", "true", check=False)
    assert r.returncode == 125 and "line 2: 'BAD NAME' is not a name" in r.stderr
    daemon.ctl("rm", "-f", "e")


def test_cidfile_is_written_once_and_never_overwritten(daemon: Daemon, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    cid = daemon.ctl("run", "-d", "--cidfile", str(cidfile), "default", "sleep", "300").stdout
    assert cidfile.read_text() == cid.strip()
    # Docker refuses an existing file (the container it names may still run).
    r = daemon.ctl("run", "--rm", "--cidfile", str(cidfile), "default", "true", check=False)
    assert r.returncode == 125
    assert r.stderr == (
        "boxctl: container ID file found, make sure the other container isn't running or "
        f"delete {cidfile}\n"
    )
    assert cidfile.read_text() == cid.strip()
    # A foreground run writes it too; a create that fails leaves none behind.
    fg = tmp_path / "fg"
    daemon.ctl("run", "--rm", "--cidfile", str(fg), "default", "true")
    assert len(fg.read_text()) == 64
    failed = tmp_path / "failed"
    r = daemon.ctl(
        "create", "--cidfile", str(failed), "--stop-signal", "NOPE", "default", "true", check=False
    )
    assert r.returncode == 125 and not failed.exists()
    daemon.ctl("rm", "-f", cid.strip())


def test_rename(daemon: Daemon) -> None:
    cid = daemon.ctl("run", "-d", "--name", "old", "default", "sleep", "300").stdout.strip()
    daemon.ctl("create", "--name", "other", "default", "true")
    assert daemon.ctl("rename", "old", "new").stdout == ""
    assert daemon.inspect("new")["id"] == cid
    assert daemon.ctl("inspect", "old", check=False).returncode == 1
    for args, message in (
        (("new", "other"), "the name 'other' is already in use"),
        (("new", "bad/name"), "invalid container name 'bad/name'"),
        (("new", "new"), "is already named 'new'"),
        (("ghost", "x"), "no such container: ghost"),
    ):
        r = daemon.ctl("rename", *args, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    # The new name is kept across a daemon restart.
    daemon.stop()
    daemon.start()
    assert daemon.inspect("new")["id"] == cid
    daemon.ctl("rm", "-f", "new", "other")


def test_top_shows_the_containers_processes_with_ps_options(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "t", "default", "sh", "-c", "sleep 301 & sleep 302")
    lines = daemon.ctl("top", "t").stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = sorted(line.split(None, 7)[7] for line in lines[1:])
    assert commands == ["sh -c sleep 301 & sleep 302", "sleep 301", "sleep 302"]
    lines = daemon.ctl("top", "t", "-o", "pid,args").stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and len(lines) == 4
    assert all(int(line.split()[0]) > 0 for line in lines[1:])
    r = daemon.ctl("top", "t", "-o", "args", check=False)
    assert r.returncode == 1 and "no PID column" in r.stderr
    daemon.ctl("create", "--name", "idle", "default", "true")
    r = daemon.ctl("top", "idle", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: container idle is not running\n")
    daemon.ctl("rm", "-f", "t", "idle")


def test_diff_lists_added_changed_and_deleted_paths(daemon: Daemon) -> None:
    """Docker's example: `C /etc`, `A /etc/new`, `D /etc/old`, parents shown as changed,
    sorted by path; the runtime's own /etc/hostname and /etc/hosts are not listed."""
    daemon.ctl("create", "--name", "fresh", "default", "true")
    assert daemon.ctl("diff", "fresh").stdout == ""
    daemon.ctl("start", "-a", "fresh")
    assert daemon.ctl("diff", "fresh").stdout == ""
    script = (
        "mkdir -p /srv/new && echo x > /srv/new/f && rm /etc/passwd && echo y >> /etc/group"
        " && touch /usr/bin/zz"
    )
    daemon.ctl("run", "--name", "d", "default", "sh", "-c", script)
    assert daemon.ctl("diff", "d").stdout.splitlines() == [
        "C /etc",
        "C /etc/group",
        "D /etc/passwd",
        "A /srv",
        "A /srv/new",
        "A /srv/new/f",
        "C /usr/bin",
        "A /usr/bin/zz",
    ]
    r = daemon.ctl("diff", "ghost", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: no such container: ghost\n")
    daemon.ctl("rm", "fresh", "d")


def test_container_prune_removes_only_stopped_containers(daemon: Daemon) -> None:
    running = daemon.ctl("run", "-d", "default", "sleep", "300").stdout.strip()
    created = daemon.ctl("create", "default", "true").stdout.strip()
    exited = daemon.ctl("run", "-d", "default", "sh", "-c", "head -c 100000 /dev/zero > /f")
    exited_id = exited.stdout.strip()
    daemon.ctl("wait", exited_id)
    # Without -f Docker asks, and a "no" changes nothing.
    r = daemon.ctl("container", "prune", input=b"n\n")
    assert r.stdout == (
        "WARNING! This will remove all stopped containers.\n"
        "Are you sure you want to continue? [y/N] "
    )
    assert len(daemon.ctl("ps", "-a", "-q").stdout.split()) == 3
    out = daemon.ctl("container", "prune", "-f").stdout.splitlines()
    assert out[0] == "Deleted Containers:"
    assert sorted(out[1:3]) == sorted([created, exited_id])
    assert out[3] == "" and out[4].startswith("Total reclaimed space: ")
    assert float(out[4].split()[-1].rstrip("kMGB")) > 0  # the 100 kB the container wrote
    assert daemon.ctl("ps", "-a", "-q").stdout.split() == [running[:12]]
    assert daemon.ctl("container", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    # The group takes the other container verbs as Docker's does.
    assert daemon.ctl("container", "ls", "-q").stdout.split() == [running[:12]]
    daemon.ctl("container", "rm", "-f", running)


def test_exec_detached_runs_on_after_the_client_left(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "x", "default", "sleep", "300")
    script = (
        "echo started > /tmp/mark; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
        "echo done > /tmp/mark"
    )
    r = daemon.ctl("exec", "-d", "x", "sh", "-c", script)
    assert (r.returncode, r.stdout) == (0, "")
    assert daemon.ctl("exec", "x", "cat", "/tmp/mark").stdout == "started\n"
    daemon.ctl("exec", "x", "touch", "/tmp/go")
    daemon.ctl("exec", "x", "sh", "-c", "while ! grep -q done /tmp/mark; do sleep 0.05; done")
    r = daemon.ctl("exec", "-d", "x", "/no/such", check=False)
    assert (r.returncode, r.stderr) == (127, "boxctl: exec /no/such: No such file or directory\n")
    # A detached exec still running goes with its container.
    daemon.ctl("exec", "-d", "x", "sleep", "1000")
    pids = daemon.ctl("top", "x", "-o", "pid").stdout.split()[1:]
    assert len(pids) == 2
    daemon.ctl("rm", "-f", "x")
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()


class _Lines:
    """Lines of a child's stdout as they come (select on the pipe, no Python buffering
    that select would not see)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""

    def next_event(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], 60)
            assert ready, "no event within 60 s"
            data = os.read(self.fd, 65536)
            assert data, "the follower ended"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event


def test_events_are_followed_in_order(daemon: Daemon) -> None:
    """Docker's `events`: a follower started before the actions sees each in order, with
    Docker's JSON shape; `--since`/`--until` replay the kept ones and end."""
    start = time.time()
    since = ("--since", str(start))  # kept events too: nothing is missed while it connects
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "boxctl",
            "--socket",
            str(daemon.socket),
            "events",
            *since,
            "--format",
            "json",
            "--filter",
            "type=container",
        ],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    events = _Lines(follower)
    try:
        first = daemon.ctl("create", "--name", "first", "default", "true").stdout.strip()
        while (e := events.next_event())["id"] != first:
            pass
        assert e["Action"] == "create" and e["Actor"]["Attributes"]["name"] == "first"
        cid = daemon.ctl("run", "-d", "--name", "w", "-l", "team=a", "default", "sleep", "300")
        cid_w = cid.stdout.strip()
        daemon.ctl("rename", "w", "v")
        daemon.ctl("exec", "v", "true")
        daemon.ctl("rm", "-f", "v")
        daemon.ctl("run", "--rm", "--name", "oom", "-m", "8m", "default", "python3", "-c",
                   "x = bytearray(64 << 20)", check=False)  # fmt: skip
        seen: list[tuple[str, str]] = []
        while not (seen and seen[-1][:2] == ("destroy", "oom")):
            e = events.next_event()
            seen.append((e["Action"], e["Actor"]["Attributes"]["name"]))
            if e["id"] == cid_w and e["Action"] == "create":
                assert e["Actor"]["Attributes"]["team"] == "a"
                assert e["Type"] == "container" and e["timeNano"] // 10**9 == e["time"]
            if e["Action"] == "die" and e["id"] == cid_w:
                assert e["Actor"]["Attributes"]["exitCode"] == "137"
        assert seen == [
            ("create", "w"),
            ("start", "w"),
            ("rename", "v"),
            ("exec_start: true", "v"),
            ("die", "v"),
            ("destroy", "v"),
            ("create", "oom"),
            ("start", "oom"),
            ("oom", "oom"),
            ("die", "oom"),
            ("destroy", "oom"),
        ]
    finally:
        follower.kill()
        follower.wait()
        assert follower.stdout is not None
        follower.stdout.close()
    # The kept events between two times, then the end; filtered as Docker filters.
    r = daemon.ctl("events", "--since", str(start), "--until", str(time.time()),
                   "--filter", "container=first", "--filter", "event=create")  # fmt: skip
    line = r.stdout.splitlines()
    assert len(line) == 1 and line[0].split()[1:4] == ["container", "create", first]
    assert line[0].endswith("(image=default, name=first)")
    r = daemon.ctl("events", "--filter", "colour=red", check=False)
    assert r.returncode == 125 and "invalid --filter 'colour=red'" in r.stderr
    daemon.ctl("rm", "first")


def test_run_attach_picks_the_streams(daemon: Daemon) -> None:
    """Docker's `run -a STREAM`: only the streams named are joined; -a with -d conflicts."""
    script = "echo out; echo err >&2; exit 3"
    r = daemon.ctl("run", "--rm", "-a", "stdout", "default", "sh", "-c", script, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "")
    r = daemon.ctl("run", "--rm", "-a", "STDERR", "default", "sh", "-c", script, check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "", "err\n")
    r = daemon.ctl("run", "--rm", "-i", "-a", "stdin", "-a", "stdout", "default", "cat",
                   input=b"typed\n")  # fmt: skip
    assert r.stdout == "typed\n"
    for args, message in (
        (("-d", "-a", "stdout"), "conflicting options: -a and -d"),
        (("-a", "stdpipe"), "invalid --attach 'stdpipe': use stdin, stdout or stderr"),
    ):
        r = daemon.ctl("run", *args, "default", "true", check=False)
        assert (r.returncode, r.stderr) == (125, f"boxctl: {message}\n")
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


def _signalled_run(daemon: Daemon, *options: str) -> tuple[subprocess.Popen[bytes], str]:
    """A foreground run whose container reports SIGTERM; returns once its trap is set."""
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.05; done'
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "boxctl",
            "--socket",
            str(daemon.socket),
            "run",
            *options,
            "default",
            "sh",
            "-c",
            script,
        ],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc, options[options.index("--name") + 1]


def test_sig_proxy_forwards_signals_unless_turned_off(daemon: Daemon) -> None:
    proc, _ = _signalled_run(daemon, "--rm", "--name", "p")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (7, b"got TERM\n")
    # --sig-proxy=false (Docker's spelling): boxctl itself ends, the container runs on.
    proc, name = _signalled_run(daemon, "--sig-proxy=false", "--name", "q")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert daemon.inspect(name)["state"]["status"] == "running"
    daemon.ctl("rm", "-f", name)

"""Docker's daily verbs and flags (issue 16) through the real CLI and daemon: rename, top,
diff, container prune (and its filters), exec -d and --privileged, update, events,
--stop-timeout, --env-file, --label/--label-file, --cidfile.  The expected
outputs quote Docker's documented behaviour."""

from __future__ import annotations

import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon
from docker_clients import docker, needs_cli

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
        (("new", "other"), 'new name: Conflict. The container name "/other" is already in use'),
        (("new", "bad/name"), "invalid container name 'bad/name'"),
        (("new", "new"), "is already named 'new'"),
        (("ghost", "x"), "No such container: ghost"),
    ):
        r = daemon.ctl("rename", *args, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    # The new name is kept across a daemon restart.
    daemon.stop()
    daemon.start()
    assert daemon.inspect("new")["id"] == cid
    daemon.ctl("rm", "-f", "new", "other")


def test_rm_link_removes_a_link_not_the_container(daemon: Daemon) -> None:
    """``rm --link NAME/ALIAS`` (``-l``; a leading / as the docker CLI takes it): the link
    goes, both containers stay; what is not a link is refused in Docker's words."""
    daemon.ctl("create", "--name", "db", "default", "true")
    daemon.ctl("create", "--name", "web", "--link", "db:d", "--link", "db:e", "default", "true")
    assert daemon.ctl("rm", "--link", "/web/d").stdout == "/web/d\n"
    links = daemon.ctl("inspect", "-f", "{{.HostConfig.Links}}", "web").stdout
    assert links == "[/db:/web/e]\n"
    for ref, message in (
        ("web", "Conflict, cannot remove the default link name of the container"),
        ("web/d", "No such container: web/d"),
        ("ghost/e", "No such container: ghost/e"),
        ("ghost", "No such container: ghost"),
    ):
        r = daemon.ctl("rm", "-l", ref, check=False)
        assert r.returncode == 1 and message in r.stderr, (ref, r.stderr)
    assert daemon.ctl("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["web", "db"]
    daemon.ctl("rm", "web", "db")


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
    # ps -o alone selects only the caller's user's processes: the container's are named.
    daemon.ctl("run", "-d", "--name", "u", "-u", "4321", "default", "sleep", "303")
    lines = daemon.ctl("top", "u", "-o", "pid,user,args").stdout.splitlines()
    assert len(lines) == 2 and lines[1].split()[1:] == ["4321", "sleep", "303"]
    lines = daemon.ctl("top", "u", "axf").stdout.splitlines()  # ps refuses -q beside f
    assert len(lines) == 2 and lines[1].endswith("sleep 303")
    daemon.ctl("rm", "-f", "u")
    daemon.ctl("create", "--name", "idle", "default", "true")
    r = daemon.ctl("top", "idle", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: container idle is not running\n")
    daemon.ctl("rm", "-f", "t", "idle")


def test_diff_lists_added_changed_and_deleted_paths(daemon: Daemon) -> None:
    """Docker's example: `C /etc`, `A /etc/new`, `D /etc/old`, parents shown as changed,
    sorted by path; the runtime's own /etc/hostname, /etc/hosts and /.dockerenv (Docker's
    marker of a container, which scripts test for) are not listed."""
    daemon.ctl("create", "--name", "fresh", "default", "test", "-f", "/.dockerenv")
    assert daemon.ctl("diff", "fresh").stdout == ""
    daemon.ctl("start", "-a", "fresh")  # its exit code 0: the marker is there
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
    assert (r.returncode, r.stderr) == (1, "boxctl: No such container: ghost\n")
    daemon.ctl("rm", "fresh", "d")


def test_diff_lists_what_a_directory_made_again_no_longer_holds(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A directory of the image removed and made again (an opaque one in the upper layer):
    Docker compares the container's files with the image's, so what the image held there
    is Deleted (a directory once, not its contents), beside what is new; a name a later
    layer whited out was never there."""
    (tmp_path / "Dockerfile").write_text(
        "FROM default\n"
        "RUN mkdir -p /srv/d/sub && touch /srv/d/a /srv/d/b /srv/d/w /srv/d/sub/x\n"
        "RUN rm /srv/d/w\n"
    )
    daemon.ctl("build", "-q", "-t", "diff-opaque", str(tmp_path))
    script = "rm -rf /srv/d && mkdir /srv/d && touch /srv/d/c"
    daemon.ctl("run", "--name", "o", "diff-opaque", "sh", "-c", script)
    listed = daemon.ctl("diff", "o").stdout
    assert listed == "C /srv\nC /srv/d\nD /srv/d/a\nD /srv/d/b\nA /srv/d/c\nD /srv/d/sub\n"
    daemon.ctl("rm", "o")
    daemon.ctl("rmi", "diff-opaque")


def test_diff_and_commit_of_a_scratch_image_leave_out_what_boxd_made(
    daemon: Daemon, tmp_path: Path
) -> None:
    """An image with no /dev, /proc, /sys or /etc (FROM scratch, one static binary):
    boxd makes them for its mounts and its /etc files, where Docker has its init layer
    below the container's.  Neither ``diff`` nor ``commit`` showed Docker's (docker-py's
    own test_diff): they listed and committed ``A /dev``, ``A /proc``, ``A /sys``.  A
    change below one of them shows it as changed, as over Docker's init layer."""
    shutil.copy2("/bin/busybox", tmp_path / "busybox")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY busybox /busybox\n")
    daemon.ctl("build", "-q", "-t", "bare", str(tmp_path))
    daemon.ctl("run", "--name", "b1", "bare", "/busybox", "touch", "/test")
    assert daemon.ctl("diff", "b1").stdout == "A /test\n"
    daemon.ctl("run", "--name", "b2", "bare", "/busybox", "sh", "-c", "echo x > /etc/foo")
    assert daemon.ctl("diff", "b2").stdout == "C /etc\nA /etc/foo\n"
    for name, image in (("b1", "bare-b1"), ("b2", "bare-b2")):
        daemon.ctl("commit", name, image)
    saved = tmp_path / "saved.tar"
    daemon.ctl("save", "-o", str(saved), "bare-b1", "bare-b2")
    layers = []
    with tarfile.open(saved) as archive:
        for member in archive.getmembers():
            blob = archive.extractfile(member) if member.name.startswith("blobs/") else None
            try:
                with tarfile.open(fileobj=io.BytesIO(blob.read() if blob else b"")) as layer:
                    layers.append(sorted(layer.getnames()))
            except tarfile.ReadError:
                continue  # not a layer: a manifest's or config's JSON, a directory
    assert ["test"] in layers and ["etc", "etc/foo"] in layers, layers
    assert not any(n in layer for layer in layers for n in ("dev", "proc", "sys"))
    daemon.ctl("rm", "b1", "b2")
    daemon.ctl("rmi", "bare-b1", "bare-b2", "bare")


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


def test_logs_of_a_container_never_started(daemon: Daemon) -> None:
    """Docker: nothing, exit 0 (it has no log yet), with or without -f."""
    cid = daemon.ctl("create", "default", "echo", "hi").stdout.strip()
    for follow in ((), ("-f",)):
        r = daemon.ctl("logs", *follow, cid)
        assert (r.stdout, r.stderr) == ("", "")
    daemon.ctl("rm", cid)


def test_container_prune_filters(daemon: Daemon) -> None:
    """Docker's prune filters: label=KEY[=VALUE], label!=KEY, until=TIME (created before)."""
    a = daemon.ctl("create", "-l", "tmp=a", "default", "true").stdout.strip()
    b = daemon.ctl("create", "-l", "tmp=b", "default", "true").stdout.strip()
    between = time.time()
    c = daemon.ctl("create", "-l", "tmp=c", "default", "true").stdout.strip()
    keep = daemon.ctl("create", "-l", "keep", "default", "true").stdout.strip()

    def pruned(*filters: str) -> list[str]:
        args = [f"--filter={f}" for f in filters]
        out = daemon.ctl("container", "prune", "-f", *args).stdout.splitlines()
        return out[1:-2] if out[0] == "Deleted Containers:" else []

    assert pruned("label=tmp=a") == [a]
    assert pruned("label=tmp", f"until={between}") == [b]
    assert pruned("label!=keep") == [c]
    assert daemon.ctl("ps", "-a", "-q").stdout.split() == [keep[:12]]
    for bad, words in [("until=later", "invalid until 'later'"), ("colour=red", "'colour'")]:
        r = daemon.ctl("container", "prune", "-f", "--filter", bad, check=False)
        assert r.returncode == 1 and words in r.stderr
    assert pruned("until=2000-01-01") == []  # an RFC 3339 date, long before
    assert pruned("until=0s") == [keep]  # a duration back from now


def test_image_and_network_prune_filters(daemon: Daemon, tmp_path: Path) -> None:
    """The same filters for `image prune` (until: the image's created time; its config's
    labels) and `network prune` (until; networks carry no labels)."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "f").write_text("x")
    tarball = tmp_path / "root.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    daemon.ctl("import", str(tarball), "pruned:1")
    daemon.ctl("network", "create", "pn")
    for keeping in ("until=2000-01-01", "label=team"):
        kept = daemon.ctl("image", "prune", "-af", "--filter", keeping).stdout
        assert kept == "Total reclaimed space: 0B\n"
        assert daemon.ctl("network", "prune", "-f", "--filter", keeping).stdout == ""
    r = daemon.ctl("image", "prune", "-af", "--filter", "label!=team", "--filter", "until=0s")
    assert "untagged: pruned:1" in r.stdout
    pruned = daemon.ctl("network", "prune", "-f", "--filter", "until=0s").stdout
    assert pruned == "Deleted Networks:\npn\n\n"
    r = daemon.ctl("network", "prune", "-f", "--filter", "until=", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: invalid until '': use a Unix time, a "
                                        "duration (10m, 24h) or an RFC 3339 time\n")  # fmt: skip


def test_update_keeps_what_it_is_not_given_and_changes_the_restart_policy(
    daemon: Daemon,
) -> None:
    """Docker's `update`: the limits named change, the others stay; --restart too."""
    daemon.ctl("run", "-d", "--name", "u", "-m", "64m", "--cpu-shares", "512", "default",
               "sleep", "300")  # fmt: skip
    daemon.ctl("update", "--cpus", "1.5", "u")
    resources = daemon.inspect("u")["config"]["resources"]
    assert (resources["memory"], resources["cpu_shares"], resources["cpus"]) == (64 << 20, 512, 1.5)
    daemon.ctl("update", "--restart", "on-failure:2", "u")
    assert daemon.inspect("u")["config"]["restart"] == {"name": "on-failure", "max_retries": 2}
    r = daemon.ctl("update", "u", check=False)
    assert (r.returncode, r.stderr) == (
        125,
        "boxctl update: give at least one limit or --restart\n",
    )
    daemon.ctl("run", "-d", "--rm", "--name", "gone", "default", "sleep", "300")
    r = daemon.ctl("update", "--restart", "always", "gone", check=False)
    assert r.returncode == 1 and "cannot be updated because AutoRemove is enabled" in r.stderr
    daemon.ctl("rm", "-f", "u", "gone")


def test_exec_privileged_gets_every_capability(daemon: Daemon) -> None:
    """Docker's `exec --privileged`: every capability for that process alone."""
    daemon.ctl("run", "-d", "--name", "x", "default", "sleep", "300")
    script = "grep ^CapEff /proc/self/status"
    plain = daemon.ctl("exec", "x", "sh", "-c", script).stdout.split()[1]
    privileged = daemon.ctl("exec", "--privileged", "x", "sh", "-c", script).stdout.split()[1]
    with open("/proc/self/status") as f:  # root's: every capability of this kernel
        everything = next(line.split()[1] for line in f if line.startswith("CapBnd:"))
    assert privileged == everything and plain != everything
    assert daemon.ctl("exec", "x", "sh", "-c", script).stdout.split()[1] == plain
    daemon.ctl("rm", "-f", "x")


def test_stop_timeout_is_what_stop_waits(daemon: Daemon) -> None:
    """--stop-timeout: the seconds stop waits before SIGKILL (sleep as PID 1 ignores
    SIGTERM, so stop always waits the whole time here)."""
    daemon.ctl("run", "-d", "--name", "t", "--stop-timeout", "1", "default", "sleep", "300")
    started = time.monotonic()
    daemon.ctl("stop", "t")
    assert 1 <= time.monotonic() - started < 10  # Docker's default would be 10
    assert daemon.inspect("t")["state"]["exit_code"] == 137
    daemon.ctl("rm", "t")


@needs_cli
def test_a_negative_stop_timeout_waits_for_the_end(daemon: Daemon) -> None:
    """Docker's -1: stop sends the stop signal and waits for the container to end by
    itself, with no SIGKILL after any time: a container's --stop-timeout -1 (inspect shows
    it), `stop -t -1`, and the Engine API's t=-1 from the docker CLI.  Each here ends 1.5 s
    after its SIGTERM (a stop of 1 s would have killed it: 137)."""
    script = 'trap "sleep 1.5; exit 7" TERM; while :; do sleep 0.1; done'
    daemon.ctl("run", "-d", "--name", "own", "--stop-timeout", "-1", "default", "sh", "-c", script)
    for name in ("asked", "docker"):
        daemon.ctl("run", "-d", "--name", name, "default", "sh", "-c", script)
    shown = daemon.ctl("inspect", "-f", "{{.Config.StopTimeout}}", "own").stdout
    assert shown == "-1\n"
    daemon.ctl("stop", "own")
    daemon.ctl("stop", "-t", "-1", "asked")
    assert docker(daemon, "stop", "-t", "-1", "docker").returncode == 0
    codes = [daemon.inspect(name)["state"]["exit_code"] for name in ("own", "asked", "docker")]
    assert codes == [7, 7, 7]
    r = daemon.ctl("stop", "-t", "nan", "own", check=False)
    assert r.returncode == 125 and "invalid -t 'nan'" in r.stderr
    daemon.ctl("rm", "own", "asked", "docker")


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
        script = 'trap "exit 0" TERM; sleep 300 & wait'
        cid = daemon.ctl("run", "-d", "--name", "w", "-l", "team=a", "default", "sh", "-c", script)
        cid_w = cid.stdout.strip()
        daemon.ctl("rename", "w", "v")
        daemon.ctl("exec", "v", "sh", "-c", "exit 4", check=False)
        daemon.ctl("kill", "-s", "WINCH", "v")  # ignored by sh
        daemon.ctl("stop", "v")
        daemon.ctl("rm", "v")
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
                assert e["Actor"]["Attributes"]["exitCode"] == "0"
            if e["Action"] == "exec_die":
                assert e["Actor"]["Attributes"]["exitCode"] == "4"
                assert len(e["Actor"]["Attributes"]["execID"]) == 64
        # Docker's: kill for each signal, die, then stop; attach before a foreground start.
        assert seen == [
            ("create", "w"),
            ("start", "w"),
            ("rename", "v"),
            ("exec_create: sh -c exit 4", "v"),
            ("exec_start: sh -c exit 4", "v"),
            ("exec_die", "v"),
            ("kill", "v"),
            ("kill", "v"),
            ("die", "v"),
            ("stop", "v"),
            ("destroy", "v"),
            ("create", "oom"),
            ("attach", "oom"),
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
    r = daemon.ctl("events", "--since", "20", "--until", "10", check=False)
    assert (r.returncode, r.stderr) == (
        1,
        "boxctl: `since` time (20.000000000) cannot be after `until` time (10.000000000)\n",
    )
    # --format: Docker's Go templates over Docker's fields; the event filter matches the
    # action's first word.
    fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.signal}}"
    window = ("--since", str(start), "--until", str(time.time()))
    r = daemon.ctl(
        "events", *window, "-f", "event=kill", "-f", "event=exec_create", "--format", fmt
    )
    assert r.stdout.splitlines() == [
        "container exec_create: sh -c exit 4 v <no value>",
        f"container kill v {int(signal.SIGWINCH)}",
        f"container kill v {int(signal.SIGTERM)}",
    ]
    r = daemon.ctl("events", "--format", "{{.Action", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: template: unclosed action at offset 0\n")
    r = daemon.ctl("events", "--filter", "colour=red", check=False)
    assert r.returncode == 1 and "invalid filter 'colour'" in r.stderr, r.stderr
    r = daemon.ctl("events", "--filter", "type=box", check=False)
    assert r.returncode == 1 and "invalid filter 'type=box'" in r.stderr, r.stderr
    r = daemon.ctl("events", "--filter", "colour", check=False)
    assert r.returncode == 125 and "invalid --filter 'colour'" in r.stderr, r.stderr
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


def test_log_driver_and_log_opt(daemon: Daemon) -> None:
    """boxctl takes Docker's --log-driver (json-file, local, none; syslog: test_syslog.py)
    and --log-opt."""
    r = daemon.ctl("run", "--name", "q", "--log-driver", "none", "default", "echo", "hi")
    assert r.stdout == "hi\n"  # the attached client still gets it
    r = daemon.ctl("logs", "q", check=False)
    assert r.returncode != 0
    assert "configured logging driver does not support reading" in r.stderr
    script = "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); echo line$i; done"
    opts = ("--log-opt", "max-size=4k", "--log-opt", "max-file=2", "--log-opt", "compress=false")
    daemon.ctl(
        "run", "--name", "rot", "--log-driver", "local", *opts, "default", "sh", "-c", script
    )
    kept = daemon.ctl("logs", "rot").stdout.splitlines()
    assert kept[-1] == "line2000" and len(kept) < 1000
    config = json.loads(daemon.ctl("inspect", "rot").stdout)[0]["HostConfig"]["LogConfig"]
    assert config == {
        "Type": "local",
        "Config": {"max-size": "4k", "max-file": "2", "compress": "false"},
    }
    cid = daemon.ctl("inspect", "-f", "{{.Id}}", "rot").stdout.strip()
    assert sorted(os.listdir(daemon.root / "containers" / cid / "logs")) == [
        "container.log",
        "container.log.1",
    ]
    for args, words in [
        (
            ("--log-driver", "awslogs"),
            "invalid --log-driver 'awslogs': use json-file, local, syslog",
        ),
        (("--log-opt", "syslog-address=udp://x"), "unknown log opt 'syslog-address' for json-file"),
        (("--log-opt", "awslogs-region=x"), "invalid --log-opt 'awslogs-region=x'"),
        (("--log-driver", "none", "--log-opt", "max-file=2"), "--log-driver none keeps none"),
        (("--log-opt", "compress=maybe"), "invalid log option compress 'maybe': expected true"),
        (
            ("--log-opt", "compress=1", "--log-opt", "max-file=1"),
            "compress cannot be true when max-file is less than 2",
        ),
    ]:
        r = daemon.ctl("run", "--rm", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, r.stderr
    daemon.ctl("rm", "q", "rot")


def test_compressed_logs_are_read_whole(daemon: Daemon) -> None:
    """``--log-opt compress=true`` (and the local driver's default, as Docker's): the files
    rotated out are gzipped, and ``logs`` (all, ``--tail``, ``-f``) reads through them."""
    script = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line$i; done"
    opts = ("--log-opt", "max-size=4k", "--log-opt", "max-file=6")
    for name, more in (
        ("gz", ("--log-opt", "compress=true")),
        ("local", ("--log-driver", "local")),
    ):
        daemon.ctl("run", "--name", name, *opts, *more, "default", "sh", "-c", script)
        cid = daemon.ctl("inspect", "-f", "{{.Id}}", name).stdout.strip()
        logs = daemon.root / "containers" / cid / "logs"  # (local's LogPath is empty)
        deadline = time.monotonic() + 30
        while len(list(logs.glob("*.gz"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(p.name for p in logs.iterdir()) == ["container.log"] + [
            f"container.log.{n}.gz" for n in range(1, 6)
        ]
        kept = daemon.ctl("logs", name).stdout.splitlines()
        assert 300 < len(kept) < 600
        assert kept == [f"line{i}" for i in range(3001 - len(kept), 3001)]
        assert daemon.ctl("logs", "--tail", "400", name).stdout.splitlines() == kept[-400:]
        assert daemon.ctl("logs", "-f", name).stdout.splitlines() == kept
    daemon.ctl("rm", "gz", "local")


def test_stats_table_and_templates_as_docker_prints_them(daemon: Daemon) -> None:
    """Docker's columns (MEM % too; an unlimited container's limit is the host's memory)
    and its template fields (`docker stats --format '{{.Name}} {{.CPUPerc}}'`)."""
    daemon.ctl("run", "-d", "--name", "st", "-m", "64m", "default", "sleep", "300")
    daemon.ctl("run", "-d", "--name", "free", "default", "sleep", "300")
    table = daemon.ctl("stats", "--no-stream", "st").stdout.splitlines()
    assert re.split(" {2,}", table[0]) == [
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
        "BLOCK I/O", "PIDS",
    ]  # fmt: skip
    assert len(table) == 2 and "/ 64MiB" in table[1], table
    fmt = "{{.Container}}|{{.Name}}|{{.ID}}|{{.CPUPerc}}|{{.MemUsage}}|{{.MemPerc}}|{{.PIDs}}"
    row = daemon.ctl("stats", "--no-stream", "--format", fmt, "st").stdout
    container, name, short, cpu, memory, percent, pids = row.strip().split("|")
    assert (container, name, pids) == ("st", "st", "1")
    assert short == daemon.inspect("st")["id"][:12]
    assert cpu.endswith("%") and percent.endswith("%") and memory.endswith(" / 64MiB")
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    free = daemon.ctl("stats", "--no-stream", "--format", "{{.MemUsage}}", "free").stdout
    assert "unlimited" not in free and free.strip().endswith(f" / {_binary(total)}"), free
    io = daemon.ctl("stats", "--no-stream", "--format", "table {{.Name}}\t{{.NetIO}}", "st")
    assert io.stdout.splitlines()[0].split() == ["NAME", "NET", "I/O"]
    bad = daemon.ctl("stats", "--no-stream", "--format", "{{.Nope}}", "st", check=False)
    assert bad.returncode != 0 and "Nope" in bad.stderr
    # A container named that does not run: a row of zeros, as Docker shows it.
    daemon.ctl("kill", "free")
    daemon.ctl("wait", "free")
    rows = daemon.ctl("stats", "--no-stream", "--format", fmt, "free", "st").stdout.splitlines()
    assert rows[0].split("|")[:7] == ["free", "free", daemon.inspect("free")["id"][:12],
                                      "0.00%", "0B / 0B", "0.00%", "0"]  # fmt: skip
    assert rows[1].startswith("st|st|") and len(rows) == 2
    daemon.ctl("rm", "-f", "st", "free")


def _binary(n: float) -> str:
    """go-units' BytesSize: 4 significant digits, binary units."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def test_network_ls_and_prune_as_docker(daemon: Daemon) -> None:
    """`network create -d bridge`; `network ls`: Docker's columns, --format, --filter,
    --no-trunc; `network inspect` in Docker's shape; `network prune` asks first
    (-f/--force: not) and lists what went under Docker's title."""
    daemon.ctl("network", "create", "-l", "team=a", "-d", "bridge", "na")
    nb = daemon.ctl("network", "create", "--driver=bridge", "nb").stdout.strip()
    r = daemon.ctl("network", "create", "-d", "overlay", "nc", check=False)
    assert (r.returncode, r.stderr) == (
        1,
        "boxctl: invalid network driver 'overlay': use bridge, macvlan or ipvlan\n",
    )
    table = daemon.ctl("network", "ls").stdout.splitlines()
    assert re.split(" {2,}", table[0]) == ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    assert [re.split(" {2,}", line)[1:] for line in table[1:]] == [
        ["bridge", "bridge", "local"], ["host", "host", "local"], ["na", "bridge", "local"],
        ["nb", "bridge", "local"], ["none", "null", "local"],
    ]  # fmt: skip
    assert table[4].split()[0] == nb[:12]
    names = daemon.ctl("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout
    assert names.splitlines() == [
        "bridge bridge local", "host host local", "na bridge local", "nb bridge local",
        "none null local",
    ]  # fmt: skip
    builtin = daemon.ctl("network", "ls", "-f", "type=builtin", "--format", "{{.Name}}").stdout
    assert builtin.split() == ["bridge", "host", "none"]
    assert daemon.ctl("network", "ls", "-q", "--no-trunc", "-f", "name=nb").stdout == nb + "\n"
    labelled = daemon.ctl("network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}")
    assert labelled.stdout == "na\n"
    custom = daemon.ctl("network", "ls", "-f", "type=custom", "--format", "{{.ID}}").stdout
    assert custom.split() == [daemon.ctl("network", "ls", "-q", "-f", "name=na").stdout.strip(),
                              nb[:12]]  # fmt: skip
    row = json.loads(daemon.ctl("network", "ls", "--format", "json", "-f", "name=na").stdout)
    assert (row["Name"], row["Driver"], row["Scope"], row["Labels"]) == (
        "na",
        "bridge",
        "local",
        "team=a",
    )
    # inspect: Docker's shape (a template sees it too), from `inspect` as well.
    shown = json.loads(daemon.ctl("network", "inspect", "na").stdout)[0]
    assert (shown["Name"], shown["Driver"], shown["Labels"]) == ("na", "bridge", {"team": "a"})
    fmt = "{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{len .Containers}}"
    line = daemon.ctl("network", "inspect", "-f", fmt, "nb").stdout.split()
    assert line[0] == nb and line[1].count("/") == 1 and line[2] == "0"
    assert daemon.ctl("inspect", "--type", "network", "-f", "{{.Id}}", "nb").stdout == nb + "\n"
    # host and none: no bridge, no subnet; the containers on them; not removed.
    daemon.ctl("create", "--name", "on-host", "--network", "host", "default", "true")
    try:
        shown = json.loads(daemon.ctl("network", "inspect", "host").stdout)[0]
        assert (shown["Driver"], shown["IPAM"]["Config"], shown["Options"]) == ("host", [], {})
        cid = daemon.inspect("on-host")["id"]
        assert shown["Containers"] == {
            cid: {
                "Name": "on-host", "EndpointID": "", "MacAddress": "", "IPv4Address": "",
                "IPv6Address": "",
            }
        }  # fmt: skip
        assert (
            daemon.ctl("network", "inspect", "-f", "{{.Id}}", shown["Id"]).stdout.strip()
            == (shown["Id"])
        )
    finally:
        daemon.ctl("rm", "on-host")
    assert json.loads(daemon.ctl("network", "inspect", "none").stdout)[0]["Driver"] == "null"
    for name in ("bridge", "host", "none"):
        r = daemon.ctl("network", "rm", name, check=False)
        words = f"boxctl: {name} is a pre-defined network and cannot be removed\n"
        assert (r.returncode, r.stderr) == (1, words)
    bad = daemon.ctl("network", "ls", "-f", "colour=red", check=False)
    assert (bad.returncode, bad.stderr) == (1, "boxctl: invalid filter 'colour'\n")

    asked = daemon.ctl("network", "prune", input=b"n\n")
    assert asked.stdout == (
        "WARNING! This will remove all custom networks not used by at least one container.\n"
        "Are you sure you want to continue? [y/N] "
    )
    assert daemon.ctl("network", "ls", "-q").stdout.count("\n") == 5
    pruned = daemon.ctl("network", "prune", "-f")
    assert pruned.stdout == "Deleted Networks:\nna\nnb\n\n"
    assert daemon.ctl("network", "prune", "--force").stdout == ""


def test_forced_removal_of_what_is_not_there_succeeds(daemon: Daemon) -> None:
    """Docker 20.10+: `rm -f` of a missing container (and `network rm -f` of a missing
    network) is not a failure (docker 28's `rm -f` says so on stderr, its `network rm -f`
    nothing); `volume rm -f` names it, as its daemon takes it as removed.  Without -f it
    fails, and -f fails on any other error."""
    daemon.ctl("run", "-d", "--name", "here", "default", "sleep", "300")
    daemon.ctl("volume", "create", "vhere")
    daemon.ctl("network", "create", "nhere")
    for verb in (["rm"], ["volume", "rm"], ["network", "rm"]):
        missing = daemon.ctl(*verb, "ghost", check=False)
        assert missing.returncode == 1 and "ghost" in missing.stderr, (verb, missing)
        forced = daemon.ctl(*verb, "-f", "ghost")
        said = "boxctl: No such container: ghost\n" if verb == ["rm"] else ""
        assert (forced.stdout, forced.stderr) == ("ghost\n" if "volume" in verb else "", said)
    r = daemon.ctl("rm", "-f", "ghost", "here")
    assert r.stdout == "here\n"
    daemon.ctl("run", "-d", "--name", "user", "-v", "vhere:/v", "--network", "nhere", "default",
               "sleep", "300")  # fmt: skip
    for verb, name in ((["volume", "rm"], "vhere"), (["network", "rm"], "nhere")):
        in_use = daemon.ctl(*verb, "-f", "ghost", name, check=False)
        assert in_use.returncode == 1 and "in use" in in_use.stderr, (verb, in_use)
    daemon.ctl("rm", "-f", "user")
    # A prefix of several containers is not a missing one: -f does not hide it.
    made = [daemon.ctl("create", "default", "true").stdout.strip() for _ in range(17)]
    firsts = [cid[0] for cid in made]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 17 ids, 16 hex digits
    r = daemon.ctl("rm", "-f", shared, check=False)
    assert r.returncode == 1 and f"multiple IDs found with provided prefix: {shared}" in r.stderr
    daemon.ctl("rm", *made)
    assert daemon.ctl("volume", "rm", "vhere").stdout == "vhere\n"
    assert daemon.ctl("network", "rm", "nhere").stdout == "nhere\n"


def test_stop_and_restart_take_a_signal(daemon: Daemon) -> None:
    """Docker 23's `stop -s/--signal` and `restart -s/--signal`: that signal instead of
    the container's stop signal, SIGKILL after the timeout as ever."""
    script = 'trap "echo got $1; exit 3" USR1 INT; while :; do sleep 0.05; done'
    daemon.ctl("run", "-d", "--name", "sg", "default", "sh", "-c", script, "sh", "trapped")
    daemon.ctl("stop", "-s", "SIGUSR1", "sg")
    assert daemon.inspect("sg")["state"]["exit_code"] == 3
    daemon.ctl("restart", "--signal", "INT", "-t", "5", "sg")
    assert daemon.ctl("stop", "--signal=USR1", "-t", "5", "sg").stdout == "sg\n"
    assert daemon.ctl("logs", "sg").stdout == "got trapped\n" * 2
    r = daemon.ctl("stop", "-s", "SIGFOO", "sg", check=False)
    assert r.returncode == 1 and "invalid signal: SIGFOO" in r.stderr, r.stderr
    daemon.ctl("rm", "sg")
    # Docker's real-time names: systemd in a container stops on SIGRTMIN+3.
    waits = "import signal, sys; signal.signal(signal.SIGRTMIN + {}, lambda *a: sys.exit({})); " \
        "print('ready', flush=True); signal.pause()"  # fmt: skip
    daemon.ctl("run", "-d", "--name", "rt", "--stop-signal", "SIGRTMIN+3", "default",
               "python3", "-c", waits.format(3, 37))  # fmt: skip
    while "ready" not in daemon.ctl("logs", "rt").stdout:
        time.sleep(0.05)
    daemon.ctl("stop", "rt")
    assert daemon.inspect("rt")["state"]["exit_code"] == 37
    daemon.ctl("rm", "rt")
    daemon.ctl("run", "-d", "--name", "rt", "default", "python3", "-c", waits.format(1, 35))
    while "ready" not in daemon.ctl("logs", "rt").stdout:
        time.sleep(0.05)
    daemon.ctl("kill", "-s", "rtmin+1", "rt")
    assert daemon.ctl("wait", "rt").stdout == "35\n"
    daemon.ctl("rm", "rt")


def test_stop_kill_and_rm_of_several_are_at_once(daemon: Daemon) -> None:
    """As Docker's client: `stop` of several sends each its stop signal at once, so the
    stop of containers that ignore it (a PID 1 without a handler) takes one timeout, not
    one each; what is done is printed in the order given, a failure in its place."""
    names = ["par1", "par2", "par3"]
    for name in names:
        daemon.ctl("run", "-d", "--name", name, "default", "sleep", "300")
    start = time.time()
    r = daemon.ctl("stop", "-t", "3", "par1", "nope", "par2", "par3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (
        1,
        "par1\npar2\npar3\n",
        "boxctl: No such container: nope\n",
    )
    window = ("--since", str(start), "--until", str(time.time()))
    fmt = "{{.Action}} {{.Actor.Attributes.signal}}"
    r = daemon.ctl("events", *window, "-f", "event=kill", "-f", "event=die", "--format", fmt)
    actions = r.stdout.splitlines()
    # Each its SIGTERM before any SIGKILL (one at a time, the first was killed and ended
    # before the second had its SIGTERM).
    assert actions[:3] == ["kill 15"] * 3 and actions.count("kill 9") == 3, actions
    daemon.ctl("start", *names)
    r = daemon.ctl("kill", *names, "nope", check=False)
    assert (r.returncode, r.stdout) == (1, "par1\npar2\npar3\n")
    r = daemon.ctl("rm", "-f", "nope", *names)
    assert (r.stdout, r.stderr) == ("par1\npar2\npar3\n", "boxctl: No such container: nope\n")


def test_events_of_networks_volumes_and_images(
    daemon: Daemon, tmp_path: Path, busybox_root: Path
) -> None:
    """Docker's events beyond containers, in its shapes and order: a network's create,
    connect and disconnect (at the start and end, and by network connect/disconnect),
    destroy; a volume's create, mount, unmount and destroy; an image's import, tag, save,
    untag, delete and load; ``--filter type=``, ``network=``, ``volume=``, ``image=``."""
    start = time.time()
    net = daemon.ctl("network", "create", "evn").stdout.strip()
    daemon.ctl("volume", "create", "evv")
    script = 'trap "exit 0" TERM; sleep 60 & wait'
    cid = daemon.ctl("run", "-d", "--name", "evc", "--network", "evn", "-v", "evv:/data",
                     "default", "sh", "-c", script).stdout.strip()  # fmt: skip
    daemon.ctl("network", "connect", "bridge", "evc")
    daemon.ctl("network", "disconnect", "bridge", "evc")
    daemon.ctl("stop", "evc")
    daemon.ctl("rm", "evc")
    daemon.ctl("network", "rm", "evn")
    daemon.ctl("volume", "rm", "evv")
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    image = daemon.ctl("import", "-c", "LABEL team=a", str(tarball), "evi:1").stdout.strip()
    daemon.ctl("tag", "evi:1", "evi:2")
    daemon.ctl("save", "-o", str(tmp_path / "evi.tar"), "evi:1")
    daemon.ctl("rmi", "evi:2")
    daemon.ctl("rmi", "-f", image)
    daemon.ctl("load", "-i", str(tmp_path / "evi.tar"))
    daemon.ctl("rmi", "evi:1")
    fmt = "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Status}}"

    def seen(*filters: str) -> list[list[str]]:
        window = ("--since", str(start), "--until", str(time.time()), "--format", fmt)
        lines = daemon.ctl("events", *window, *filters).stdout.splitlines()
        return [line.split() for line in lines]

    assert seen("--filter", "type=network") == [
        ["network", "create", net, "evn"],
        ["network", "connect", net, "evn"],
        *[["network", action, seen("-f", "network=bridge")[0][2], "bridge"]
          for action in ("connect", "disconnect")],
        ["network", "disconnect", net, "evn"],
        ["network", "destroy", net, "evn"],
    ]  # fmt: skip
    assert seen("-f", "network=evn") == seen("-f", "type=network", "-f", "network=evn")
    assert [e[:3] for e in seen("-f", "type=volume")] == [
        ["volume", action, "evv"] for action in ("create", "mount", "unmount", "destroy")
    ]
    assert seen("-f", "volume=evv") == seen("-f", "type=volume")
    assert seen("-f", "type=image") == [
        ["image", "tag", image, "evi:1", "tag"],
        ["image", "import", image, image, "import"],
        ["image", "tag", image, "evi:2", "tag"],
        ["image", "save", image, image, "save"],
        ["image", "untag", image, image, "untag"],
        ["image", "untag", image, image, "untag"],
        ["image", "delete", image, image, "delete"],
        ["image", "load", image, image, "load"],
        ["image", "untag", image, image, "untag"],
        ["image", "delete", image, image, "delete"],
    ]
    assert len(seen("-f", "image=evi")) == 2  # the tags, by their repository
    assert len(seen("-f", "type=image", "-f", "label=team=a")) == 8  # not once it is gone
    # The JSON lines: a mount's attributes, and no status, id or from (Docker's older
    # fields are a container's and an image's only).
    window = ("--since", str(start), "--until", str(time.time()))
    line = daemon.ctl("events", *window, "-f", "event=mount", "--format", "json").stdout
    mount = json.loads(line)
    assert "status" not in mount and mount["Type"] == "volume"
    assert mount["Actor"] == {"ID": "evv", "Attributes": {
        "container": cid, "destination": "/data", "driver": "local", "propagation": "",
        "read/write": "true",
    }}  # fmt: skip


def test_event_lines_carry_dockers_fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker events' RFC3339NanoFixed: nine digits always, local time, Z for UTC."""
    from boxctl._verbs import _event_text

    actor = {"ID": "ab" * 32, "Attributes": {"image": "default", "name": "s1"}}
    event = {"Type": "container", "Action": "start", "Actor": actor,
             "timeNano": 1_796_424_243_100_000_000}  # fmt: skip
    for zone, stamp in (
        ("UTC", "2026-12-04T22:44:03.100000000Z"),
        ("Europe/Paris", "2026-12-04T23:44:03.100000000+01:00"),
    ):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert _event_text(event).split()[0] == stamp
    monkeypatch.undo()
    time.tzset()


def test_published_ports_are_discarded_on_the_host_network(daemon: Daemon) -> None:
    """Docker: -p and -P with --network host are ignored with a warning, not refused."""
    warning = "WARNING: Published ports are discarded when using host network mode\n"
    r = daemon.ctl("run", "--rm", "--network", "host", "-p", "18081:80", "default", "true")
    assert r.stderr == warning
    r = daemon.ctl("create", "--name", "hp", "--network=host", "-P", "--expose", "81", "default",
                   "true")  # fmt: skip
    assert r.stderr == warning
    assert daemon.inspect("hp")["config"]["ports"] == []
    r = daemon.ctl("create", "--network", "host", "-p", "82:80/udp", "default", "true")
    assert daemon.inspect(r.stdout.strip())["config"]["expose"] == ["80/udp"]  # as Docker's
    daemon.ctl("rm", r.stdout.strip())
    assert daemon.ctl("port", "hp").stdout == ""
    daemon.ctl("rm", "hp")
    r = daemon.ctl("run", "--rm", "--network", "none", "-p", "80", "default", "true", check=False)
    assert r.returncode == 125 and "need a network" in r.stderr


def test_run_takes_an_address_and_a_mac_on_its_network(daemon: Daemon) -> None:
    """`run --network NET --ip ADDR --mac-address MAC` (Docker's), with its aliases; an
    address is for a user network only, and a bad one is refused naming it."""
    daemon.ctl("network", "create", "--subnet", "10.61.0.0/24", "ipnet")
    show = "cat /sys/class/net/eth0/address; hostname -i"
    mac = ("--mac-address", "02:42:0A:3D:00:99")
    r = daemon.ctl("run", "--rm", "--network", "ipnet", "--ip", "10.61.0.50", *mac,
                   "--network-alias", "db", "default", "sh", "-c", show)  # fmt: skip
    assert r.stdout.split() == ["02:42:0a:3d:00:99", "10.61.0.50"]
    daemon.ctl("run", "-d", "--name", "ipc", "--network", "ipnet", "--ip", "10.61.0.51",
               "--network-alias", "db", "default", "sleep", "300")  # fmt: skip
    (endpoint,) = daemon.inspect("ipc")["state"]["network"]["endpoints"]
    assert (endpoint["ip_address"], endpoint["aliases"][-1:]) == ("10.61.0.51", ["db"])
    for args, words in (
        (["--ip", "10.61.0.x"], "invalid --ip '10.61.0.x'"),
        (["--mac-address", "01:00:00:00:00:01"], "not a valid mac address"),
    ):
        r = daemon.ctl("run", "--rm", "--network", "ipnet", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, (args, r.stderr)
    r = daemon.ctl("run", "--rm", "--network", "host", "--ip", "10.61.0.52", "default", "true",
                   check=False)  # fmt: skip
    assert r.returncode == 125 and "user defined networks only" in r.stderr, r.stderr
    daemon.ctl("rm", "-f", "ipc")
    daemon.ctl("network", "rm", "ipnet")

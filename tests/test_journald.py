"""The journald log driver (boxd/_journald.py) against a real systemd-journald: one run
in a private mount namespace with the daemon (its sockets and journal on tmpfs there, so
the host's /run and /var/log are not touched), read back with journalctl."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import docker, needs_cli

from boxd import _journald, protocol
from boxd._human import rfc3339_nano

JOURNALD = "/lib/systemd/systemd-journald"
needs_journald = pytest.mark.skipif(
    not os.path.exists(JOURNALD), reason=f"{JOURNALD} is not installed (Debian's systemd)"
)


def test_fields_are_docker_s() -> None:
    assert rfc3339_nano(1_796_615_000_250_000_000) == "2026-12-07T03:43:20.25Z"  # Go's
    assert rfc3339_nano(1_796_615_000_000_000_000) == "2026-12-07T03:43:20Z"
    assert _journald.field_name("com.example.team") == "COM_EXAMPLE_TEAM"
    assert _journald.field_name("_private-key1") == "PRIVATE_KEY1"
    assert _journald.field_name("héllo") == "H_LLO"
    sender = _journald.Sender({"CONTAINER_NAME": "web", "NOTE": "a\nb"}, "c")
    first = sender._message(protocol.STDERR, b"oops", False)
    assert first.startswith(b"PRIORITY=3\nMESSAGE=oops\nCONTAINER_NAME=web\n")
    assert b"NOTE\n" + struct.pack("<Q", 3) + b"a\nb\n" in first  # the binary form
    assert b"CONTAINER_LOG_ORDINAL=1\n" in first and b"CONTAINER_PARTIAL" not in first
    piece = sender._message(protocol.STDOUT, b"x" * 10, True)
    end = sender._message(protocol.STDOUT, b"yy", False)
    (pid,) = {line for line in piece.split(b"\n") if line.startswith(b"CONTAINER_PARTIAL_ID=")}
    assert pid in end.split(b"\n")
    for data, ordinal, last in ((piece, b"1", b"false"), (end, b"2", b"true")):
        assert b"CONTAINER_PARTIAL_ORDINAL=" + ordinal + b"\n" in data
        assert b"CONTAINER_PARTIAL_LAST=" + last + b"\n" in data
    assert b"CONTAINER_PARTIAL_MESSAGE=true\n" in piece
    assert b"CONTAINER_PARTIAL_MESSAGE" not in end and b"MESSAGE=yy\n" in end


def _private_run(tmp_path: Path, journald: bool) -> tuple[str, ...]:
    """A wrap that runs the daemon with /run/systemd, /run/log and /var/log/journal on
    tmpfs in a mount namespace of its own, and systemd-journald there if ``journald``."""
    dirs = ["/run/systemd", "/run/log", *(["/var/log/journal"] * os.path.isdir("/var/log/journal"))]
    mounts = " && ".join(f"mount -t tmpfs boxd-test-journal {d}" for d in dirs)
    pidfile = tmp_path / "journald.pid"
    start = f"{{ {JOURNALD} >/dev/null 2>&1 & echo $! > {pidfile}; }} && " if journald else ""
    return ("unshare", "-m", "--propagation", "private", "sh", "-c",
            f'{mounts} && {start}exec "$@"', "sh")  # fmt: skip


@pytest.fixture
def journal_daemon(tmp_path: Path) -> Iterator[Daemon]:
    pidfile = tmp_path / "journald.pid"
    try:
        with running_daemon(tmp_path, wrap=_private_run(tmp_path, journald=True)) as d:
            socket_path = f"/proc/{d.process.pid if d.process else 0}/root{_journald.SOCKET}"
            deadline = time.monotonic() + 10
            while not os.path.exists(socket_path) and time.monotonic() < deadline:
                time.sleep(0.02)
            yield d
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.02)


def _entries(daemon: Daemon, name: str, count: int) -> list[dict[str, Any]]:
    assert daemon.process is not None
    argv = ["nsenter", f"--mount=/proc/{daemon.process.pid}/ns/mnt", "journalctl",
            "-D", "/run/log/journal", "-o", "json", "--all", "--no-pager",
            f"CONTAINER_NAME={name}"]  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        entries = [json.loads(line) for line in out.splitlines()]
        if len(entries) >= count or time.monotonic() > deadline:
            return sorted(entries, key=lambda e: int(e["CONTAINER_LOG_ORDINAL"]))
        time.sleep(0.05)


@pytest.mark.root
@needs_cli
@needs_journald
def test_a_container_s_lines_are_journal_entries(journal_daemon: Daemon) -> None:
    daemon = journal_daemon
    script = "echo hello journal; echo bad >&2; printf '%20000s\\n' x"
    r = docker(daemon, "run", "--name", "jr", "--log-driver", "journald",
               "--label", "team=a", "--log-opt", "labels=team", "--log-opt", "tag={{.Name}}",
               "default", "sh", "-c", script)  # fmt: skip
    assert r.returncode == 0, r.stderr
    cid = daemon.inspect("jr")["id"]
    entries = _entries(daemon, "jr", 4)
    common = {
        "CONTAINER_ID": cid[:12],
        "CONTAINER_ID_FULL": cid,
        "CONTAINER_NAME": "jr",
        "CONTAINER_TAG": "jr",
        "SYSLOG_IDENTIFIER": "jr",
        "IMAGE_NAME": "default",
        "TEAM": "a",
    }
    for entry in entries:
        assert entry.items() >= common.items()
        assert len(entry["CONTAINER_LOG_EPOCH"]) == 64
        assert entry["SYSLOG_TIMESTAMP"].endswith("Z")
    assert len({e["CONTAINER_LOG_EPOCH"] for e in entries}) == 1
    lines = [e for e in entries if "CONTAINER_PARTIAL_ID" not in e]  # (two streams: any order)
    assert sorted((e["MESSAGE"], e["PRIORITY"]) for e in lines) == [
        ("bad", "3"),
        ("hello journal", "6"),
    ]
    pieces = [e for e in entries if "CONTAINER_PARTIAL_ID" in e]  # 20000 bytes: 16 KiB, the rest
    assert [e["MESSAGE"] for e in pieces] == [" " * 16384, " " * (19999 - 16384) + "x"]
    assert [e.get("CONTAINER_PARTIAL_MESSAGE") for e in pieces] == ["true", None]
    assert [e["CONTAINER_PARTIAL_LAST"] for e in pieces] == ["false", "true"]
    assert docker(daemon, "logs", "jr").stdout.startswith("hello journal\n")  # the local copy
    # An entry larger than a datagram (three variables of 100 KB as attributes, an
    # argument's most each): in a sealed memfd.
    big = [a for n in "ABC" for a in ("-e", f"BIG_{n}={n * 100_000}")]
    r = docker(daemon, "run", "--name", "big", "--log-driver", "journald", *big,
               "--log-opt", "env=BIG_A,BIG_B,BIG_C", "default", "echo", "large entry")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (entry,) = _entries(daemon, "big", 1)
    assert entry["MESSAGE"] == "large entry"
    assert [entry[f"BIG_{n}"] for n in "ABC"] == [n * 100_000 for n in "ABC"]
    daemon.ctl("rm", "big")
    for opts, words in [
        (("max-size=1m",), "unknown log opt 'max-size' for journald log driver"),
        (("syslog-address=udp://x",), "unknown log opt 'syslog-address' for journald"),
        (("cache-disabled=maybe",), "invalid log option cache-disabled 'maybe'"),
    ]:
        args = [a for opt in opts for a in ("--log-opt", opt)]
        r = docker(daemon, "run", "--rm", "--log-driver", "journald", *args, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
    daemon.ctl("rm", "jr")


@pytest.mark.root
@needs_cli
def test_without_journald_the_start_fails_in_docker_s_words(tmp_path: Path) -> None:
    with running_daemon(tmp_path, wrap=_private_run(tmp_path, journald=False)) as daemon:
        r = docker(daemon, "run", "--name", "nj", "--log-driver", "journald", "default", "true")
        assert r.returncode == 125
        assert "failed to initialize logging driver: journald is not enabled on this host" in (
            r.stderr
        )
        daemon.ctl("rm", "nj")

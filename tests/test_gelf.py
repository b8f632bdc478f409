"""The gelf log driver (boxd/_gelf.py): its options in Docker's words, GELF chunks and
compression, and a container's lines as GELF messages to UDP and TCP inputs in the
daemon's network namespace (a small reader of GELF, as a Graylog input reads it)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon
from docker_clients import docker, needs_cli
from netns_servers import json_lines, servers

from boxd import _gelf

# A GELF input of the daemon's network namespace: prints its port, then writes each
# message it puts together (chunks joined, gzip or zlib undone, TCP's zero bytes split
# on) to a file as a JSON line, with how many chunks it came in.
_INPUT = r"""
import json, socket, sys, zlib
kind, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
f = open(out, "a", buffering=1)
def put(data, chunks=1):
    if data[:2] == b"\x1f\x8b":
        data = zlib.decompress(data, 47)
    elif data[:1] == b"\x78":
        data = zlib.decompress(data)
    f.write(json.dumps({"chunks": chunks, **json.loads(data)}) + "\n")
if kind == "udp":
    parts = {}
    while True:
        d = s.recv(70000)
        if d[:2] != b"\x1e\x0f":
            put(d)
            continue
        got = parts.setdefault(d[2:10], {})
        got[d[10]] = d[12:]
        if len(got) == d[11]:
            put(b"".join(got[i] for i in range(d[11])), d[11])
            del parts[d[2:10]]
s.listen()
while True:
    c, _ = s.accept()
    buf = b""
    while d := c.recv(65536):
        buf += d
        while b"\0" in buf:
            m, buf = buf.split(b"\0", 1)
            put(m)
"""


def test_options_are_checked_in_docker_s_words() -> None:
    assert _gelf.settings({"gelf-address": "udp://10.0.0.5:12201"}) == _gelf.Settings(
        "udp", "10.0.0.5", 12201
    )
    tcp = {"gelf-address": "tcp://[::1]:12201", "gelf-tcp-max-reconnect": "0",
           "gelf-tcp-reconnect-delay": "2"}  # fmt: skip
    assert _gelf.settings(tcp) == _gelf.Settings("tcp", "::1", 12201, max_reconnect=0,
                                                 reconnect_delay=2)  # fmt: skip
    udp = "udp://h:1"
    for options, words in [
        ({}, "gelf-address is a required parameter"),
        ({"gelf-address": "http://h:1"}, "the endpoint needs to be TCP or UDP"),
        ({"gelf-address": "udp://h"}, "invalid log option gelf-address 'udp://h': give it as"),
        ({"gelf-address": "tcp://h:1", "gelf-compression-type": "none"},
         "compression is only supported on UDP"),
        ({"gelf-address": udp, "gelf-tcp-max-reconnect": "1"}, "is only valid for TCP"),
        ({"gelf-address": udp, "gelf-compression-type": "lz4"}, "gelf-compression-type 'lz4'"),
        ({"gelf-address": udp, "gelf-compression-level": "10"}, "gelf-compression-level '10'"),
        ({"gelf-address": udp, "gelf-compression-level": "--1"}, "gelf-compression-level '--1'"),
        ({"gelf-address": "tcp://h:1", "gelf-tcp-reconnect-delay": "x"}, "a positive integer"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(words)):
            _gelf.settings(options)


def test_chunks_and_compression_are_go_gelf_s() -> None:
    assert _gelf.chunks(b"x" * 1420) == [b"x" * 1420]
    data = bytes(range(256)) * 20  # 5120 bytes: 4 chunks of at most 1408
    pieces = _gelf.chunks(data)
    assert [len(p) for p in pieces] == [1420, 1420, 1420, 12 + 5120 - 3 * 1408]
    assert {p[:2] for p in pieces} == {b"\x1e\x0f"} and len({p[2:10] for p in pieces}) == 1
    assert [(p[10], p[11]) for p in pieces] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert b"".join(p[12:] for p in pieces) == data
    with pytest.raises(ValueError, match="would need 129 GELF chunks"):
        _gelf.chunks(b"x" * (128 * 1408))
    config = _gelf.Settings("udp", "h", 1)
    assert zlib.decompress(_gelf.compress(config, b"hi"), 47) == b"hi"  # gzip
    zlib_config = _gelf.Settings("udp", "h", 1, compression="zlib")
    assert _gelf.compress(zlib_config, b"hi")[:1] == b"\x78"
    assert _gelf.compress(_gelf.Settings("udp", "h", 1, compression="none"), b"hi") == b"hi"


@pytest.fixture
def inputs(daemon: Daemon, tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    """A UDP and a TCP GELF input on the daemon's loopback: their ports and files."""
    with servers(daemon.netns, _INPUT, ("udp", "tcp"), tmp_path) as found:
        yield found


@pytest.mark.root
@needs_cli
def test_a_container_s_lines_are_gelf_messages(
    daemon: Daemon, inputs: dict[str, tuple[int, Path]]
) -> None:
    port, out = inputs["udp"]
    script = "echo hi gelf; echo oops >&2; head -c 12000 /dev/zero | tr '\\0' a; echo"
    r = docker(daemon, "run", "--name", "gu", "--log-driver", "gelf",
               "--log-opt", f"gelf-address=udp://127.0.0.1:{port}",
               "--log-opt", "gelf-compression-type=none",
               "--label", "team=a", "--log-opt", "labels=team",
               "default", "sh", "-c", script)  # fmt: skip
    assert r.returncode == 0, r.stderr
    record = daemon.inspect("gu")
    found = sorted(json_lines(out, 3), key=lambda m: len(m["short_message"]))
    assert [(m["short_message"], m["level"], m["chunks"] > 1) for m in found] == [
        ("oops", 3, False),
        ("hi gelf", 6, False),
        ("a" * 12000, 6, True),  # 12 KB of JSON uncompressed: in chunks of 1420 bytes
    ]
    for m in found:
        assert m["version"] == "1.1" and isinstance(m["timestamp"], float)
        assert m["_container_id"] == record["id"] and m["_container_name"] == "gu"
        assert m["_image_name"] == "default" and m["_tag"] == record["id"][:12]
        assert m["_command"] == f"sh -c {script}" and m["_team"] == "a"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]{8}(\.\d+)?Z", m["_created"])
    assert docker(daemon, "logs", "gu").stdout.startswith("hi gelf\n")  # the local copy
    # TCP: zero bytes between messages, gzip not taken; the tag a template.
    port, out = inputs["tcp"]
    r = docker(daemon, "run", "--name", "gt", "--log-driver", "gelf",
               "--log-opt", f"gelf-address=tcp://127.0.0.1:{port}", "--log-opt", "tag={{.Name}}",
               "default", "sh", "-c", "echo one; echo two")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [(m["short_message"], m["_tag"]) for m in json_lines(out, 2)] == [
        ("one", "gt"),
        ("two", "gt"),
    ]
    daemon.ctl("rm", "gu", "gt")
    for opts, words in [
        ((), "gelf-address is a required parameter"),
        (("gelf-address=tcp://127.0.0.1:1",), "failed to initialize logging driver"),
        (("gelf-address=udp://127.0.0.1:1", "max-size=1m"), "unknown log opt 'max-size' for gelf"),
        (("gelf-address=udp://127.0.0.1:1", "syslog-facility=user"),
         "unknown log opt 'syslog-facility' for gelf log driver"),
    ]:  # fmt: skip
        args = [a for opt in opts for a in ("--log-opt", opt)]
        r = docker(daemon, "run", "--rm", "--log-driver", "gelf", *args, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr

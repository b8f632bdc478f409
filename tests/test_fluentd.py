"""The fluentd log driver (boxd/_fluentd.py): its options in Docker's words, events in
the forward protocol's message mode, and a container's lines sent to a forward input in
the daemon's network namespace (a small reader of the protocol that acknowledges chunks
as Fluentd's ``require_ack_response`` does), synchronously and asynchronously."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from daemon_harness import Daemon, logged_daemon
from docker_clients import docker, needs_cli
from netns_servers import json_lines, servers
from test_syslog import _certificates

from boxd import _fluentd, protocol

# A forward input of the daemon's network namespace (on a port of its own, or the one
# given as tcp@PORT): prints its port, then writes each event it reads as a JSON line
# (bytes that are not UTF-8 as surrogate escapes; an EventTime as [seconds, nanoseconds]),
# and answers an event that asks for an ack with it.
_INPUT = r"""
import json, socket, struct, sys, msgpack
kind, out = sys.argv[1], sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(kind.partition("@")[2] or 0)))
print(s.getsockname()[1], flush=True)
f = open(out, "a", buffering=1)
s.listen()
while True:
    c, _ = s.accept()
    events = msgpack.Unpacker(unicode_errors="surrogateescape")
    while d := c.recv(65536):
        events.feed(d)
        for tag, when, record, option in events:
            if isinstance(when, msgpack.ExtType):
                when = list(struct.unpack(">II", when.data))
            f.write(json.dumps([tag, when, record, option]) + "\n")
            if "chunk" in option:
                c.sendall(msgpack.packb({"ack": option["chunk"]}))
"""


@pytest.fixture
def forward(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A forward input on the daemon's loopback: its port and its output file."""
    with servers(daemon.netns, _INPUT, ("tcp",), tmp_path) as found:
        yield found["tcp"]


def test_options_are_checked_in_docker_s_words() -> None:
    assert _fluentd.settings({}) == _fluentd.Settings("tcp")
    got = _fluentd.settings(
        {
            "fluentd-address": "fluent.example:24225",
            "fluentd-async": "true",
            "fluentd-buffer-limit": "2k",
            "fluentd-retry-wait": "250ms",
            "fluentd-max-retries": "0",
            "fluentd-async-reconnect-interval": "1s",
            "fluentd-sub-second-precision": "1",
            "fluentd-request-ack": "T",
            "fluentd-write-timeout": "2s",
            "fluentd-read-timeout": "1m",
        }
    )
    assert got == _fluentd.Settings(
        "tcp", "fluent.example", 24225, "", 2048, 0.25, 13, True, 1.0, True, True, 2.0, 60.0
    )
    assert _fluentd.settings({"fluentd-address": "unix:///run/fluent.sock"}).path == (
        "/run/fluent.sock"
    )
    assert _fluentd.settings({"fluentd-address": "tcp://[::1]"}).host == "::1"
    for options, words in [
        ({"fluentd-address": "udp://h:1"},
         "invalid fluentd-address (udp://h:1): unsupported scheme: 'udp'"),
        ({"fluentd-address": "unix://"}, "invalid fluentd-address (unix://): path is empty"),
        ({"fluentd-address": "tcp://h:1/x"}, "should not contain a path element"),
        ({"fluentd-address": "h:99999"}, "invalid fluentd-address (h:99999): invalid port"),
        ({"fluentd-async": "maybe"},
         "invalid log option fluentd-async 'maybe': expected true or false"),
        ({"fluentd-max-retries": "4294967296"}, "invalid fluentd-max-retries: value out of range"),
        ({"fluentd-max-retries": "-1"}, "invalid log option fluentd-max-retries '-1'"),
        ({"fluentd-retry-wait": "soon"}, "invalid log option fluentd-retry-wait 'soon'"),
        ({"fluentd-buffer-limit": "lots"}, "invalid log option fluentd-buffer-limit 'lots'"),
        ({"fluentd-async-reconnect-interval": "5ms"},
         "invalid value for fluentd-async-reconnect-interval: value ('5ms') must be between "
         "100ms and 10s"),
        ({"fluentd-write-timeout": "-1s"},
         "invalid value for fluentd-write-timeout: value must be a duration that is non-negative"),
    ]:  # fmt: skip
        with pytest.raises(ValueError) as caught:
            _fluentd.settings(options)
        assert words in str(caught.value)


def test_an_event_is_fluent_logger_s() -> None:
    """The forward protocol's message mode: [tag, time, record, option], every record
    value a string (a line's bytes as written), EventTime with sub-second precision, a
    chunk id to acknowledge, the partial fields of a line in pieces."""
    fields = _fluentd.container_fields("f" * 64, "web", {"team": "a", "tag": "t"})
    assert fields == {"team": "a", "container_id": "f" * 64, "container_name": "/web"}
    plain = _fluentd.Sender(_fluentd.settings({}), "web", fields, "c")
    before = int(time.time())
    tag, when, record, option = msgpack.unpackb(
        plain._message(protocol.STDERR, b"\xff\xfeok", False), raw=True
    )
    assert (tag, option) == (b"web", {})
    assert before <= when <= time.time()
    assert record == {b"team": b"a", b"container_id": b"f" * 64, b"container_name": b"/web",
                      b"source": b"stderr", b"log": b"\xff\xfeok"}  # fmt: skip
    options = {"fluentd-sub-second-precision": "true", "fluentd-request-ack": "true"}
    precise = _fluentd.Sender(_fluentd.settings(options), "web", fields, "c")
    data = precise._message(protocol.STDOUT, b"x" * 10, True)
    _, when, record, option = msgpack.unpackb(data)
    assert when.code == 0 and len(when.data) == 8
    seconds, nanoseconds = struct.unpack(">II", when.data)
    assert abs(seconds + nanoseconds / 1e9 - time.time()) < 5
    assert len(option["chunk"]) == 24 and data.endswith(option["chunk"].encode())
    assert record["partial_message"] == "true" and record["partial_ordinal"] == "1"
    assert record["partial_last"] == "false" and len(record["partial_id"]) == 64
    _, _, last, _ = msgpack.unpackb(precise._message(protocol.STDOUT, b"y", False))
    assert (last["partial_ordinal"], last["partial_last"]) == ("2", "true")
    assert last["partial_id"] == record["partial_id"]


@pytest.mark.root
@needs_cli
def test_a_container_s_lines_are_fluentd_events(daemon: Daemon, forward: tuple[int, Path]) -> None:
    port, out = forward
    address = f"fluentd-address=127.0.0.1:{port}"
    daemon.ctl("run", "-d", "--name", "fl", "--log-driver", "fluentd", "--log-opt", address,
               "default", "sh", "-c", r"echo out; printf '\377bin\n' >&2")  # fmt: skip
    assert daemon.ctl("wait", "fl").stdout == "0\n"
    cid = daemon.inspect("fl")["id"]
    events = json_lines(out, 2)
    assert sorted((e[0], e[2]["source"], e[2]["log"]) for e in events) == [
        (cid[:12], "stderr", "\udcffbin"),
        (cid[:12], "stdout", "out"),
    ]
    assert {e[2]["container_id"] for e in events} == {cid}
    assert {e[2]["container_name"] for e in events} == {"/fl"}
    # The docker CLI: a tag, an attribute, EventTime and acknowledged events.
    r = docker(daemon, "run", "--name", "fl2", "--label", "team=core",
               "--log-driver", "fluentd", "--log-opt", address, "--log-opt", "tag={{.Name}}",
               "--log-opt", "labels=team", "--log-opt", "fluentd-sub-second-precision=true",
               "--log-opt", "fluentd-request-ack=true",
               "default", "sh", "-c", "for i in 1 2 3; do echo n$i; done")  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = json_lines(out, 5)[2:]
    assert [(e[0], e[2]["log"], e[2]["team"]) for e in events] == [
        ("fl2", f"n{i}", "core") for i in (1, 2, 3)
    ]
    assert all(len(e[1]) == 2 and len(e[3]["chunk"]) == 24 for e in events)
    assert docker(daemon, "logs", "fl2").stdout == "n1\nn2\nn3\n"  # the local copy
    info = json.loads(docker(daemon, "info", "--format", "{{json .Plugins.Log}}").stdout)
    assert "fluentd" in info
    daemon.ctl("rm", "fl", "fl2")


@pytest.mark.root
@needs_cli
def test_without_fluentd_a_start_fails_unless_asynchronous(daemon: Daemon, tmp_path: Path) -> None:
    """As Docker's: a synchronous sender's start fails naming the address; an asynchronous
    one starts, queues, and sends once a forward input listens there."""
    free = socket.socket()  # a port of the daemon's loopback nobody listens on yet
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    address = f"fluentd-address=tcp://127.0.0.1:{port}"
    r = docker(daemon, "run", "--name", "sync", "--log-driver", "fluentd", "--log-opt",
               address, "default", "true")  # fmt: skip
    assert r.returncode == 125
    assert f"failed to initialize logging driver: all attempts to connect to 127.0.0.1:{port}" in (
        r.stderr
    )
    r = docker(daemon, "run", "-d", "--name", "async", "--log-driver", "fluentd",
               "--log-opt", address, "--log-opt", "fluentd-async=true",
               "--log-opt", "fluentd-retry-wait=100ms",
               "default", "sh", "-c", "echo early; sleep 1; echo late; sleep 600")  # fmt: skip
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)  # "early" waits in the queue
    with servers(daemon.netns, _INPUT, (f"tcp@{port}",), tmp_path) as found:
        (_, out) = found[f"tcp@{port}"]
        events = json_lines(out, 2)
        assert [e[2]["log"] for e in events] == ["early", "late"]
    assert docker(daemon, "logs", "async").stdout == "early\nlate\n"
    daemon.ctl("rm", "-f", "sync", "async")
    for bad, words in [
        ("fluentd-address=udp://127.0.0.1:1", "unsupported scheme: 'udp'"),
        ("max-size=1m", "unknown log opt 'max-size' for fluentd log driver"),
        ("gelf-address=udp://h:1", "unknown log opt 'gelf-address' for fluentd log driver"),
    ]:
        r = daemon.ctl("run", "--rm", "--log-driver", "fluentd", "--log-opt", bad, "default",
                       "true", check=False)  # fmt: skip
        assert r.returncode == 125 and words in r.stderr, r.stderr


@pytest.mark.root
def test_acknowledged_events_survive_fluentd_s_restart(daemon: Daemon, tmp_path: Path) -> None:
    """fluentd-request-ack: an event the input did not acknowledge (it was killed) is sent
    again once one listens there again; the container's lines wait meanwhile, none lost."""
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    script = "i=0; while [ $i -lt 30 ]; do echo n$i; i=$((i+1)); sleep 0.05; done"
    kind = f"tcp@{port}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with servers(daemon.netns, _INPUT, (kind,), tmp_path / "a") as found:
        daemon.ctl("run", "-d", "--name", "ack", "--log-driver", "fluentd",
                   "--log-opt", f"fluentd-address=127.0.0.1:{port}",
                   "--log-opt", "fluentd-request-ack=true",
                   "--log-opt", "fluentd-retry-wait=100ms",
                   "default", "sh", "-c", script)  # fmt: skip
        json_lines(found[kind][1], 5)
    first = json_lines(found[kind][1], 0)  # all it wrote before it was killed
    time.sleep(0.5)  # nobody listens: the sender waits and tries again
    with servers(daemon.netns, _INPUT, (kind,), tmp_path / "b") as found:
        assert daemon.ctl("wait", "ack").stdout == "0\n"
        seen = {e[2]["log"] for e in first}
        second = json_lines(found[kind][1], 30 - len(seen))
    lines = seen | {e[2]["log"] for e in second}
    assert lines == {f"n{i}" for i in range(30)}
    assert second  # the rest went to the second
    daemon.ctl("rm", "ack")


# The forward input over TLS (its certificate and key in its output file's directory).
_TLS_INPUT = _INPUT.replace(
    "    c, _ = s.accept()\n",
    "    c, _ = s.accept()\n"
    "    import os, ssl\n"
    "    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "    where = os.path.dirname(out)\n"
    "    tls.load_cert_chain(f'{where}/server.pem', f'{where}/server.key')\n"
    "    c = tls.wrap_socket(c, server_side=True)\n",
)


@pytest.mark.root
def test_fluentd_over_tls(tmp_path: Path) -> None:
    """tls://: the input's certificate checked against the host's authorities (here the
    daemon's SSL_CERT_FILE names the test's CA), acknowledged events through TLS."""
    _certificates(tmp_path)
    env = {"SSL_CERT_FILE": str(tmp_path / "ca.pem")}
    with logged_daemon(tmp_path, env=env) as (daemon, _):
        with servers(daemon.netns, _TLS_INPUT, ("tls",), tmp_path) as found:
            port, out = found["tls"]
            r = daemon.ctl("run", "--rm", "--network", "none", "--log-driver", "fluentd",
                           "--log-opt", f"fluentd-address=tls://localhost:{port}",
                           "--log-opt", "fluentd-request-ack=true",
                           "default", "sh", "-c", "echo secure")  # fmt: skip
            assert r.stdout == "secure\n"
            [event] = json_lines(out, 1)
            assert event[2]["log"] == "secure" and len(event[3]["chunk"]) == 24
        assert daemon.stop() == 0

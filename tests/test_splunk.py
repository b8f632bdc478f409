"""The splunk log driver (boxd/_splunk.py): its options in Docker's words, the events of
each format, and a container's lines posted in batches to an HTTP Event Collector in the
daemon's network namespace (a small one that checks the token and undoes gzip, as
Splunk's does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from daemon_harness import Daemon
from docker_clients import docker, needs_cli
from netns_servers import json_lines, servers

from boxd import _splunk, protocol

TOKEN = "00000000-1111-2222-3333-444444444444"

# A collector: prints its port; OPTIONS answers 200; a POST with the token has its events
# (concatenated JSON objects, gzip undone) written to the file, a line each, and 200.
_COLLECTOR = r"""
import gzip, http.server, json, sys
kind, out = sys.argv[1], sys.argv[2]
f = open(out, "a", buffering=1)
class Collector(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_OPTIONS(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Authorization") != "Splunk TOKEN":
            self.send_response(401); self.send_header("Content-Length", "7"); self.end_headers()
            self.wfile.write(b"no auth")
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text, decoder, at = body.decode(), json.JSONDecoder(), 0
        while at < len(text):
            event, at = decoder.raw_decode(text, at)
            f.write(json.dumps({"path": self.path, "gzip": "Content-Encoding" in self.headers,
                                **event}) + "\n")
        reply = b'{"text":"Success","code":0}'
        self.send_response(200); self.send_header("Content-Length", str(len(reply)))
        self.end_headers(); self.wfile.write(reply)
server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
print(server.server_address[1], flush=True)
server.serve_forever()
""".replace("TOKEN", TOKEN)


@pytest.fixture
def collector(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    with servers(daemon.netns, _COLLECTOR, ("hec",), tmp_path) as found:
        yield found["hec"]


def test_options_are_checked_in_docker_s_words() -> None:
    got = _splunk.settings({"splunk-url": "https://hec.example:8088", "splunk-token": "t",
                            "splunk-gzip": "true", "splunk-format": "raw"})  # fmt: skip
    assert got == _splunk.Settings(
        "https://hec.example:8088/services/collector/event/1.0", "t", gzip=True, format="raw"
    )
    for options, words in [
        ({"splunk-token": "t"}, "splunk: splunk-url is expected"),
        ({"splunk-url": "http://h:1"}, "splunk: splunk-token is expected"),
        ({"splunk-url": "h:1", "splunk-token": "t"},
         "splunk: expected format scheme://dns_name_or_ip:port for splunk-url ('h:1')"),
        ({"splunk-url": "http://h:1/x", "splunk-token": "t"}, "scheme://dns_name_or_ip:port"),
        ({"splunk-url": "http://h:1", "splunk-token": "t", "splunk-format": "xml"},
         "unknown format specified xml, supported formats are inline, json and raw"),
        ({"splunk-url": "http://h:1", "splunk-token": "t", "splunk-gzip-level": "10"},
         "not supported level '10' for splunk-gzip-level"),
        ({"splunk-url": "http://h:1", "splunk-token": "t", "splunk-gzip": "maybe"},
         "invalid log option splunk-gzip 'maybe'"),
    ]:  # fmt: skip
        with pytest.raises(ValueError) as caught:
            _splunk.settings(options)
        assert words in str(caught.value)


def test_events_of_each_format() -> None:
    config = _splunk.settings({"splunk-url": "http://h:1", "splunk-token": "t",
                               "splunk-source": "src", "splunk-index": "main"})  # fmt: skip
    inline = _splunk.Sender(config, "web", {"team": "a", "tag": "web"}, "c")
    event = json.loads(inline._message(protocol.STDERR, b"oops \xff", False))
    assert list(event) == ["event", "time", "host", "source", "index"]
    assert event["event"] == {"line": "oops \ufffd", "source": "stderr", "tag": "web",
                              "attrs": {"team": "a"}}  # fmt: skip
    assert (event["source"], event["index"]) == ("src", "main")
    assert abs(float(event["time"]) - time.time()) < 5 and len(event["time"].split(".")[1]) == 6
    as_json = _splunk.Sender(attrs.evolve(config, format="json"), None, {}, "c")
    assert json.loads(as_json._message(protocol.STDOUT, b'{"a": 1}', False))["event"] == {
        "line": {"a": 1}, "source": "stdout"
    }  # fmt: skip
    raw = _splunk.Sender(attrs.evolve(config, format="raw"), "web", {"team": "a"}, "c")
    assert json.loads(raw._message(protocol.STDOUT, b"hi", False))["event"] == "web team=a hi"
    assert raw._message(protocol.STDOUT, b"   ", False) == b""  # blank: left out


@pytest.mark.root
@needs_cli
def test_a_container_s_lines_reach_the_collector(
    daemon: Daemon, collector: tuple[int, Path]
) -> None:
    port, out = collector
    url = f"splunk-url=http://127.0.0.1:{port}"
    r = docker(daemon, "run", "--name", "sp", "--log-driver", "splunk", "--log-opt", url,
               "--log-opt", f"splunk-token={TOKEN}", "--log-opt", "splunk-gzip=true",
               "--log-opt", "tag={{.Name}}", "--label", "team=core", "--log-opt", "labels=team",
               "default", "sh", "-c", "echo one; echo two >&2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = json_lines(out, 2)  # posted at the container's end, not 5 s later
    assert {e["path"] for e in events} == {"/services/collector/event/1.0"}
    assert all(e["gzip"] for e in events)
    assert sorted((e["event"]["source"], e["event"]["line"]) for e in events) == [
        ("stderr", "two"), ("stdout", "one")
    ]  # fmt: skip
    assert {e["event"]["tag"] for e in events} == {"sp"}
    assert {json.dumps(e["event"]["attrs"]) for e in events} == {'{"team": "core"}'}
    assert docker(daemon, "logs", "sp").stdout == "one\n"  # the local copy
    # A wrong token: the posts are refused, the container runs on, the daemon says so.
    r = daemon.ctl("run", "--rm", "--log-driver", "splunk", "--log-opt", url,
                   "--log-opt", "splunk-token=wrong", "default", "echo", "lost")  # fmt: skip
    assert r.returncode == 0 and r.stdout == "lost\n"
    # Nobody there: the start fails (the connection is verified), unless not verified.
    dead = "splunk-url=http://127.0.0.1:1"
    r = daemon.ctl("run", "--rm", "--log-driver", "splunk", "--log-opt", dead,
                   "--log-opt", "splunk-token=t", "default", "true", check=False)  # fmt: skip
    assert r.returncode == 125 and "failed to initialize logging driver: splunk:" in r.stderr
    r = daemon.ctl("run", "--rm", "--log-driver", "splunk", "--log-opt", dead,
                   "--log-opt", "splunk-token=t", "--log-opt", "splunk-verify-connection=false",
                   "default", "true", timeout=120)  # fmt: skip
    assert r.returncode == 0
    daemon.ctl("rm", "sp")

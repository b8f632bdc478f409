"""The syslog log driver (boxd/_syslog.py): its options, Docker's message formats, the
lines of a container sent to real sockets (a datagram one, TCP and UDP servers in the
daemon's network namespace), the local copy `logs` reads, and a daemon killed meanwhile."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from daemon_harness import Daemon, logged_daemon, until
from docker_clients import docker, needs_cli
from netns_servers import servers

from boxd import _linesend, _syslog, protocol

# A server of the daemon's network namespace: prints its port, then writes what it gets
# to a file (a line per datagram, or the stream as it comes).
_SERVER = """
import socket, sys
kind, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
with open(out, "ab", buffering=0) as f:
    if kind == "udp":
        while True:
            f.write(s.recv(70000))
    s.listen()
    while True:
        c, _ = s.accept()
        while data := c.recv(65536):
            f.write(data)
"""


def test_options_are_docker_s_and_bad_ones_are_named() -> None:
    assert _syslog.settings({}) == _syslog.Settings("", facility=3)
    assert _syslog.settings(
        {"syslog-address": "udp://10.0.0.5", "syslog-facility": "local3"}
    ) == _syslog.Settings("udp", host="10.0.0.5", port=514, facility=19)
    assert _syslog.settings(
        {"syslog-address": "tcp://[::1]:1514", "syslog-facility": "7", "syslog-format": "rfc5424"}
    ) == _syslog.Settings("tcp", host="::1", port=1514, facility=7, format="rfc5424")
    assert _syslog.settings({"syslog-address": "unixgram:///dev/log"}).path == "/dev/log"
    tls = {"syslog-address": "tcp+tls://logs.example", "syslog-tls-ca-cert": "/ca.pem",
           "syslog-tls-cert": "/c.pem", "syslog-tls-key": "/k.pem",
           "syslog-tls-skip-verify": ""}  # fmt: skip
    assert _syslog.settings(tls) == _syslog.Settings(
        "tcp+tls", host="logs.example", facility=3, ca_cert="/ca.pem", cert="/c.pem",
        key="/k.pem", skip_verify=True,
    )  # fmt: skip
    assert not _syslog.settings({**tls, "syslog-tls-skip-verify": "false"}).skip_verify
    for options, words in [
        ({"syslog-address": "http://x"}, "unsupported scheme: 'http'"),
        ({"syslog-address": "udp://:99"}, "invalid log option syslog-address 'udp://:99': no host"),
        ({"syslog-address": "udp://h:99999"}, "invalid log option syslog-address 'udp://h:99999'"),
        ({"syslog-address": "unix://relative"}, "expected unix:///ABSOLUTE/PATH"),
        ({"syslog-facility": "bogus"}, "invalid log option syslog-facility 'bogus'"),
        ({"syslog-facility": "24"}, "invalid log option syslog-facility '24'"),
        ({"syslog-format": "rfc9999"}, "invalid log option syslog-format 'rfc9999'"),
        ({"syslog-tls-cert": "/c.pem"}, "syslog-tls-cert and syslog-tls-key go together"),
        ({"syslog-tls-skip-verify": "yes"}, "invalid log option syslog-tls-skip-verify 'yes'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(words)):
            _syslog.settings(options)


def test_messages_in_each_format() -> None:
    now = 1_796_615_000.25
    pid, host = os.getpid(), socket.gethostname()
    month = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123]\d \d\d:\d\d:\d\d"
    rfc3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    zone = r"(Z|[+-]\d\d:\d\d)"
    for form, severity, pattern in [
        ("", _linesend.INFO, rf"<30>{month} web\[{pid}\]: hi\n"),
        ("rfc3164", _linesend.ERR, rf"<27>{month} {host} web\[{pid}\]: hi\n"),
        ("rfc5424", _linesend.INFO, rf"<30>1 {rfc3339}{zone} {host} web {pid} web - hi\n"),
        ("rfc5424micro", _linesend.INFO,
         rf"<30>1 {rfc3339}\.250000{zone} {host} web {pid} web - hi\n"),
    ]:  # fmt: skip
        config = _syslog.Settings("", format=form)
        for line in (b"hi", b"hi\n"):  # one newline at the end either way
            text = _syslog.message(config, severity, "web", line, now).decode()
            assert re.fullmatch(pattern, text), (form, text)
    local3 = _syslog.Settings("udp", host="h", facility=19)
    assert _syslog.message(local3, _linesend.ERR, "t", b"x", now).startswith(b"<155>")


async def test_lines_are_whole_in_order_and_long_ones_in_pieces(tmp_path: Path) -> None:
    """As Docker's copier hands lines on: whole (a chunk's rest waits for the next), none
    empty, at most 16 KiB each, an unfinished last one at the stream's end."""
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.setblocking(False)
    sender = _syslog.Sender(_syslog.settings({"syslog-address": f"unixgram://{path}"}), "t", "c")
    await sender.open()
    try:
        await sender.send(protocol.STDOUT, b"a\nb")
        await sender.send(protocol.STDERR, b"err\n")
        await sender.send(protocol.STDOUT, b"c\n\n")
        await sender.send(protocol.STDOUT, b"x" * 40000)
        await sender.flush(protocol.STDOUT)
        await sender.flush(protocol.STDERR)  # nothing left: nothing sent
    finally:
        sender.close()
    got = []
    while True:
        try:
            got.append(server.recv(70000))
        except BlockingIOError:
            break
    server.close()
    heads = [m.split(b": ", 1)[0][:4] for m in got]
    bodies = [m.split(b": ", 1)[1] for m in got]
    assert heads == [b"<30>", b"<27>", b"<30>", b"<30>", b"<30>", b"<30>"]
    assert bodies[:3] == [b"a\n", b"err\n", b"bc\n"]
    assert [len(b) for b in bodies[3:]] == [16385, 16385, 40000 - 2 * 16384 + 1]


def test_the_ring_holds_its_bytes_and_drops_what_does_not_fit() -> None:
    """Docker's ring: lines' bytes up to the size, then dropped; one line larger than the
    ring goes when the ring is empty; a count limit too where a driver has one."""
    ring = _linesend.Ring(100)
    assert [ring.put(b"m%d" % size, size) for size in (60, 40, 1)] == [True, True, False]
    assert [d for d, _ in ring.queue] == [b"m60", b"m40"] and ring.dropped == 1
    ring.taken()
    ring.taken()
    ring.put(b"big", 500)
    assert ring.size == 500 and len(ring.queue) == 1
    counted = _linesend.Ring(10**6, max_messages=2)
    assert [counted.put(b"x", 1) for _ in range(3)] == [True, True, False]
    assert len(counted.queue) == 2 and counted.dropped == 1


async def test_non_blocking_mode_never_waits_for_the_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mode=non-blocking: a server that does not read holds no send; the ring's lines go
    once it reads, in order, and what did not fit is dropped and said so once."""
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    sender = _syslog.Sender(_syslog.settings({"syslog-address": f"unix://{path}"}), "t", "c")
    sender.ring = _linesend.Ring(2000)
    await sender.open()
    conn, _ = server.accept()
    got = bytearray()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.drain)
            with trio.fail_after(10):  # 1 MB the server does not read: never waited for
                for n in range(10_000):  # as the pump: the others have a turn per chunk
                    await sender.send(protocol.STDOUT, b"%099d\n" % n)
                    if n % 100 == 0:
                        await trio.lowlevel.checkpoint()
            reader = trio.socket.from_stdlib_socket(conn)
            read = trio.Event()

            async def read_all() -> None:
                while data := await reader.recv(65536):
                    got.extend(data)
                read.set()

            nursery.start_soon(read_all)
            with trio.fail_after(10):
                await sender.sent(2.0, 10.0)
                sender.close()  # the end of the server's stream
                await read.wait()
            nursery.cancel_scope.cancel()
    finally:
        conn.close()
        server.close()
    numbers = [int(m.rsplit(b": ", 1)[1]) for m in bytes(got).splitlines()]
    assert numbers == sorted(set(numbers)) and 20 < len(numbers) < 10_000
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        f"c: log lines to unix://{path} dropped: the non-blocking mode's buffer is full (2000 "
        "bytes; the count at the container's end)",
        f"c: log lines not sent to unix://{path}: {10_000 - len(numbers)} dropped (the buffer "
        "full), 0 left unsent at the container's end",
    ]


@pytest.mark.root
def test_a_non_blocking_container_ends_with_its_server_stuck(tmp_path: Path) -> None:
    """A syslog stream server that stops reading: the container (mode=non-blocking) runs
    to its end, its log has every line, the server got a part of them in order, and the
    daemon's log names the lines not sent."""
    path = tmp_path / "stuck.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    try:
        with logged_daemon(tmp_path) as (daemon, log):
            r = daemon.ctl("run", "--name", "nb", "--network", "none", "--log-driver", "syslog",
                           "--log-opt", f"syslog-address=unix://{path}",
                           "--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=64k",
                           "default", "seq", "100000", timeout=60)  # fmt: skip
            assert r.returncode == 0 and r.stdout.split() == [str(n) for n in range(1, 100001)]
            assert daemon.ctl("logs", "nb").stdout.split() == r.stdout.split()
            until(lambda: "left unsent at the container's end" in log.read_text(), "the count")
            conn, _ = server.accept()
            conn.settimeout(5)
            got = b""
            while data := conn.recv(1 << 20):
                got += data
                if b": 100000\n" in got or len(got) > 10 << 20:
                    break
            conn.close()
            numbers = [int(m.rsplit(b": ", 1)[1]) for m in got.splitlines()]
            assert numbers and numbers == sorted(set(numbers)) and len(numbers) < 100_000
            daemon.ctl("rm", "nb")
            assert daemon.stop() == 0
    finally:
        server.close()


@pytest.fixture
def log_servers(daemon: Daemon, tmp_path: Path) -> Iterator[dict[str, tuple[int, Path]]]:
    """A UDP and a TCP server on the daemon's loopback: their ports and output files."""
    with servers(daemon.netns, _SERVER, ("udp", "tcp"), tmp_path) as found:
        yield found


def _received(path: Path, count: int, timeout: float = 10) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_bytes().splitlines(keepends=True)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def _datagrams(sock: socket.socket, count: int, timeout: float = 10) -> list[bytes]:
    sock.settimeout(timeout)
    return [sock.recv(70000) for _ in range(count)]


@pytest.mark.root
@needs_cli
def test_a_container_s_lines_go_to_syslog_and_to_its_log(
    daemon: Daemon, log_servers: dict[str, tuple[int, Path]], tmp_path: Path
) -> None:
    # A datagram socket of the host's file system (boxctl), Docker's default format.
    path = tmp_path / "dev-log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        opt = f"syslog-address=unixgram://{path}"
        script = "echo out; echo err >&2"
        r = daemon.ctl("run", "--name", "gram", "--log-driver", "syslog", "--log-opt", opt,
                       "default", "sh", "-c", script)  # fmt: skip
        short = daemon.inspect("gram")["id"][:12]
        got = sorted(_datagrams(sock, 2))
        pid = daemon.process.pid if daemon.process is not None else 0
        assert [re.sub(rb"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ", rb"<\1>", m) for m in got] == [
            f"<27>{short}[{pid}]: err\n".encode(),
            f"<30>{short}[{pid}]: out\n".encode(),
        ]
        assert sorted(r.stdout.splitlines() + r.stderr.splitlines()) == ["err", "out"]
        assert sorted(daemon.ctl("logs", "gram").stdout.split()) == ["out"]  # (stdout's)
        config = json.loads(daemon.ctl("inspect", "gram").stdout)[0]["HostConfig"]["LogConfig"]
        assert config == {"Type": "syslog", "Config": {"syslog-address": f"unixgram://{path}"}}
    finally:
        sock.close()
    # TCP through the docker CLI: RFC 5424, a tag of its name, a line a message.
    port, out = log_servers["tcp"]
    r = docker(daemon, "run", "--name", "tcp", "--log-driver", "syslog",
               "--log-opt", f"syslog-address=tcp://127.0.0.1:{port}",
               "--log-opt", "syslog-format=rfc5424", "--log-opt", "tag={{.Name}}",
               "default", "sh", "-c", "for i in 1 2 3; do echo line$i; done")  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = _received(out, 3)
    host = socket.gethostname()
    assert [re.sub(rb" \S+ ", b" T ", m, count=1) for m in lines] == [
        f"<30>1 T {host} tcp {pid} tcp - line{i}\n".encode() for i in (1, 2, 3)
    ]
    assert docker(daemon, "logs", "tcp").stdout == "line1\nline2\nline3\n"
    # UDP, a facility, RFC 3164; no local copy: `logs` cannot read.
    port, out = log_servers["udp"]
    daemon.ctl("run", "--name", "udp", "--log-driver", "syslog",
               "--log-opt", f"syslog-address=udp://127.0.0.1:{port}",
               "--log-opt", "syslog-facility=local3", "--log-opt", "syslog-format=rfc3164",
               "--log-opt", "cache-disabled=true",
               "default", "sh", "-c", "echo oops >&2")  # fmt: skip
    (message,) = _received(out, 1)
    assert re.fullmatch(rf"<155>\w{{3}} [ \d]\d [\d:]{{8}} {host} \w{{12}}\[{pid}\]: oops\n",
                        message.decode()), message  # fmt: skip
    r = daemon.ctl("logs", "udp", check=False)
    assert r.returncode != 0
    assert "with --log-driver syslog and cache-disabled=true" in r.stderr
    daemon.ctl("rm", "gram", "tcp", "udp")


@pytest.mark.root
@needs_cli
def test_bad_syslog_settings_are_refused_by_name(daemon: Daemon, tmp_path: Path) -> None:
    closed = socket.socket()  # a port of the daemon's loopback nobody listens on
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    for opts, words in [
        ((f"syslog-address=unix://{tmp_path}/none.sock",),
         f"invalid log option syslog-address 'unix://{tmp_path}/none.sock': No such file"),
        (("syslog-address=tcp+tls://127.0.0.1:6514", f"syslog-tls-ca-cert={tmp_path}/no.pem"),
         "syslog TLS: [Errno 2] No such file or directory"),
        (("max-size=1m",), "unknown log opt 'max-size' for syslog log driver"),
        (("compress=true",), "unknown log opt 'compress' for syslog log driver"),
        (("cache-max-file=0",), "invalid log option cache-max-file '0'"),
        (("cache-disabled=maybe",), "invalid log option cache-disabled 'maybe'"),
    ]:  # fmt: skip
        args = [a for opt in opts for a in ("--log-opt", opt)]
        r = daemon.ctl("run", "--rm", "--log-driver", "syslog", *args, "default", "true",
                       check=False)  # fmt: skip
        assert r.returncode == 125 and words in r.stderr, r.stderr
        r = docker(daemon, "run", "--rm", "--log-driver", "syslog", *args, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
    r = daemon.ctl("run", "--rm", "--log-opt", "syslog-facility=user", "default", "true",
                   check=False)  # fmt: skip
    assert "unknown log opt 'syslog-facility' for json-file log driver" in r.stderr
    # The cache options dockerd takes with any driver (and uses with those it cannot read).
    daemon.ctl("run", "--rm", "--log-opt", "cache-disabled=true", "default", "true")
    # Nobody there (closed in this namespace: the daemon's is the test session's).
    opt = f"syslog-address=tcp://127.0.0.1:{port}"
    r = docker(daemon, "run", "--name", "down", "--log-driver", "syslog", "--log-opt", opt,
               "default", "true")  # fmt: skip
    assert r.returncode == 125
    assert f"failed to initialize logging driver: all attempts to connect to 127.0.0.1:{port}" in (
        r.stderr
    )
    assert daemon.inspect("down")["state"]["status"] == "created"  # as Docker's, kept
    daemon.ctl("rm", "down")


# A syslog server over TLS in the daemon's namespace (its certificate and key in its output
# file's directory, and a client's certificate required when client-ca.pem is there).
_TLS_SERVER = """
import os, socket, ssl, sys
kind, out = sys.argv[1], sys.argv[2]
where = os.path.dirname(out)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{where}/server.pem", f"{where}/server.key")
if os.path.exists(f"{where}/client-ca.pem"):
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(f"{where}/client-ca.pem")
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
s.listen()
with open(out, "ab", buffering=0) as f:
    while True:
        c, _ = s.accept()
        try:
            c = context.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            continue
        while data := c.recv(65536):
            f.write(data)
"""


def _certificates(where: Path) -> None:
    """A CA, a server certificate of it for localhost (127.0.0.1), and a client's."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf",
            "-out", f"{name}.pem")  # fmt: skip


@pytest.mark.root
def test_syslog_over_tls(daemon: Daemon, tmp_path: Path) -> None:
    """tcp+tls: the server's certificate checked against syslog-tls-ca-cert for the
    address's name, RFC 5424 messages framed by their length (as Docker's), a client
    certificate the server requires; a server the CA did not sign fails the start, unless
    syslog-tls-skip-verify."""
    _certificates(tmp_path)
    ca = f"syslog-tls-ca-cert={tmp_path}/ca.pem"
    client = (f"syslog-tls-cert={tmp_path}/client.pem", f"syslog-tls-key={tmp_path}/client.key")
    (tmp_path / "client-ca.pem").write_bytes((tmp_path / "ca.pem").read_bytes())
    with servers(daemon.netns, _TLS_SERVER, ("tls",), tmp_path) as found:
        port, out = found["tls"]
        address = f"syslog-address=tcp+tls://localhost:{port}"
        args = ["--log-opt", address, "--log-opt", ca, "--log-opt", "syslog-format=rfc5424"]
        certs = [a for c in client for a in ("--log-opt", c)]
        r = daemon.ctl("run", "--rm", "--log-driver", "syslog", *args, *certs,
                       "default", "sh", "-c", "echo one; echo two")  # fmt: skip
        assert r.stdout == "one\ntwo\n"
        until(lambda: out.read_bytes().count(b" - ") >= 2, "the two messages")
        data = out.read_bytes()
        messages = []
        while data:
            length, _, rest = data.partition(b" ")
            messages.append(rest[: int(length)])
            data = rest[int(length) :]
        assert [m.rsplit(b" - ", 1)[1] for m in messages] == [b"one\n", b"two\n"]
        # A CA that did not sign it: refused; with syslog-tls-skip-verify, not checked.
        (tmp_path / "other").mkdir()
        _certificates(tmp_path / "other")
        other = ["--log-opt", address, "--log-opt", f"syslog-tls-ca-cert={tmp_path}/other/ca.pem"]
        r = daemon.ctl("run", "--rm", "--log-driver", "syslog", *other, "default", "true",
                       check=False)  # fmt: skip
        assert r.returncode == 125 and "CERTIFICATE_VERIFY_FAILED" in r.stderr, r.stderr
        r = daemon.ctl("run", "--rm", "--log-driver", "syslog", *other, *certs, "--log-opt",
                       "syslog-tls-skip-verify=true", "default", "echo", "three")  # fmt: skip
        assert r.returncode == 0, r.stderr
        until(lambda: b"three" in out.read_bytes(), "the line sent unverified")
        assert b"three\n" in out.read_bytes().splitlines(keepends=True)[-1]


@pytest.mark.root
def test_lines_written_while_no_daemon_ran_are_sent(daemon: Daemon, tmp_path: Path) -> None:
    """Live restore: the next daemon connects again and sends what the pipe kept; a chunk
    the killed daemon had sent but not yet logged (the kill comes right after a line
    arrived here) is sent again, not lost."""
    path = tmp_path / "dev-log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        script = "i=0; while [ $i -lt 30 ]; do echo n$i; i=$((i+1)); sleep 0.05; done"
        daemon.ctl("run", "-d", "--name", "lv", "--log-driver", "syslog",
                   "--log-opt", f"syslog-address=unixgram://{path}",
                   "default", "sh", "-c", script)  # fmt: skip
        got = [m.rsplit(b": ", 1)[1] for m in _datagrams(sock, 5)]
        daemon.stop(signal.SIGKILL)
        time.sleep(0.3)  # it writes on meanwhile, into its pipe
        daemon.start()
        while got[-1] != b"n29\n":
            got.append(_datagrams(sock, 1)[0].rsplit(b": ", 1)[1])
        once = [line for i, line in enumerate(got) if i == 0 or line != got[i - 1]]
        assert once == [f"n{i}\n".encode() for i in range(30)]
        assert len(got) - len(once) <= 1  # at most the line in flight, again
    finally:
        sock.close()
    daemon.ctl("wait", "lv")
    assert daemon.ctl("logs", "lv").stdout.split() == [f"n{i}" for i in range(30)]  # once
    daemon.ctl("rm", "-f", "lv")


def test_the_senders_are_loaded_by_their_first_container_only() -> None:
    """The sending drivers' modules (and msgpack) are not in an idle daemon's memory."""
    modules = ("boxd._linesend", "boxd._syslog", "boxd._journald", "boxd._gelf",
               "boxd._fluentd", "msgpack", "boxd._splunk", "httpx")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "import sys, boxd._daemon, boxd._supervisor, boxd._dockerapi; "
         f"print([m for m in {modules!r} if m in sys.modules])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout == "[]\n"

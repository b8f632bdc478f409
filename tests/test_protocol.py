"""The wire protocol: framing round trips and every class of bad input, sans-IO and over
``memory_stream_pair`` against the real server code (no daemon, no root needed)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from boxctl import _attach
from boxctl._client import Client
from boxd import _verbareas, _wirejson, protocol
from boxd._messages import REQUESTS, parse
from boxd._server import Connection, Server


def test_round_trip_split_anywhere() -> None:
    data = protocol.encode({"type": "ListRequest", "all": True}) + protocol.encode_bytes(
        protocol.STDOUT, b"\x00\xff\n"
    )
    for cut in range(len(data) + 1):
        dec = protocol.FrameDecoder()
        dec.feed(data[:cut])
        frames = []
        while (f := dec.next()) is not None:
            frames.append(f)
        dec.feed(data[cut:])
        while (f := dec.next()) is not None:
            frames.append(f)
        assert frames == [{"type": "ListRequest", "all": True}, (1, b"\x00\xff\n")]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"type":"ListRequest","x":NaN}', "NaN is not allowed"),
        (b'{"type":"X","x":Infinity}', "Infinity is not allowed"),
        (b"[1,2]", "unknown frame kind"),
        (b'{"all":true}', 'needs a string "type"'),
        (b'{"type":5}', 'needs a string "type"'),
        (b"\x07abc", "unknown frame kind 0x07"),
        (b"", "empty frame"),
        (b'{"type":"\xff"}', "invalid JSON"),
        # Nested deeper than the parser recurses: was an "internal error" and a traceback.
        (b'{"type":"X","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid JSON"),
    ],
)
def test_bad_payloads(payload: bytes, error: str) -> None:
    dec = protocol.FrameDecoder()
    dec.feed(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(protocol.ProtocolError, match=error):
        dec.next()


def test_oversized_frame_refused_before_reading_it() -> None:
    dec = protocol.FrameDecoder()
    dec.feed(struct.pack(">I", protocol.MAX_FRAME + 1))
    with pytest.raises(protocol.ProtocolError, match="exceeds the limit"):
        dec.next()


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"type": "Nope"}, "unknown message type 'Nope'"),
        ({"type": "ListRequest", "all": "yes"}, "expected bool, got str @ $.all"),
        ({"type": "ListRequest", "bogus": 1}, "bogus"),
        ({"type": "StopRequest"}, "required field missing @ $.container"),
        ({"type": "StopRequest", "container": "x", "timeout": "5"}, "$.timeout"),
        (
            {"type": "CreateRequest", "config": {"image": "default", "command": "sh"}},
            "expected a list, got str @ $.config.command",
        ),
        (
            {"type": "CreateRequest", "config": {"image": "default", "command": []}},
            "no command specified (the image 'default' has no Cmd)",
        ),
        (
            {
                "type": "CreateRequest",
                "config": {"image": "default", "command": ["sh"], "restart": {"name": "often"}},
            },
            "invalid value 'often'",
        ),
        ({"type": "KillRequest", "container": "x", "signal": True}, "expected str"),
        (
            {
                "type": "RunRequest",
                "config": {"image": "default", "command": ["sh"]},
                "attach": "yes",
            },
            "expected bool, got str @ $.attach",
        ),
        (
            {"type": "StartRequest", "container": "x", "console_size": [0, 80]},
            "console size 0x80 (rows x columns) is out of range 1..65535",
        ),
        (
            {"type": "ExecRequest", "container": "x", "command": ["sh"], "console_size": [24]},
            "console size (24,) is not two integers (rows, columns)",
        ),
        (
            {"type": "ExecRequest", "container": "x", "command": ["sh"], "console_size": "24x80"},
            "expected a list, got str @ $.console_size",
        ),
        (
            {
                "type": "CreateRequest",
                "config": {"image": "default", "command": ["sh"], "console_size": [24, 70000]},
            },
            "console size 24x70000 (rows x columns) is out of range",
        ),
    ],
)
def test_bad_messages_name_the_problem(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse(message, REQUESTS)


def test_console_sizes_are_optional() -> None:
    """Clients that know no console_size (older boxctl) send none: 24x80 as before."""
    start = parse({"type": "StartRequest", "container": "x", "attach": True}, REQUESTS)
    assert start.console_size is None
    exec_ = parse({"type": "ExecRequest", "container": "x", "command": ["sh"]}, REQUESTS)
    assert exec_.console_size is None
    run = parse(
        {
            "type": "RunRequest",
            "config": {
                "image": "default",
                "command": ["sh"],
                "tty": True,
                "console_size": [37, 123],
            },
        },
        REQUESTS,
    )
    assert run.config.console_size == (37, 123)
    sized = {"type": "ExecRequest", "container": "x", "command": ["sh"], "console_size": [37, 123]}
    assert parse(sized, REQUESTS).console_size == (37, 123)


class _NoContainers:
    """Just enough of a Supervisor for requests that touch no container."""

    def list(self, *, all: bool = False) -> list[object]:
        return []

    def sample(self, refs: object = ()) -> tuple[object, ...]:
        return ()


async def _converse(chunks: list[bytes]) -> list[protocol.Frame]:
    server = Server(_NoContainers())  # type: ignore[arg-type]
    client, daemon = trio.testing.memory_stream_pair()
    frames: list[protocol.Frame] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, daemon)
        for chunk in chunks:
            await client.send_all(chunk)
        await client.send_eof()
        dec = protocol.FrameDecoder()
        while data := await client.receive_some():
            dec.feed(bytes(data))
            while (f := dec.next()) is not None:
                frames.append(f)
    return frames


async def test_server_answers_every_request_and_survives_garbage() -> None:
    frames = await _converse(
        [
            protocol.encode({"type": "ListRequest", "all": True}),
            protocol.encode({"type": "Bogus"}),
            protocol.encode({"type": "ListRequest", "all": 1}),
            protocol.encode({"type": "ListRequest"}),
        ]
    )
    assert frames[0] == {"type": "ListResponse", "containers": [], "briefs": [], "sizes": []}
    errors = [f for f in frames[1:3] if isinstance(f, dict)]
    assert [e["type"] for e in errors] == ["ErrorResponse", "ErrorResponse"]
    assert "unknown message type 'Bogus'" in errors[0]["message"]
    assert "expected bool" in errors[1]["message"]
    assert frames[3] == {"type": "ListResponse", "containers": [], "briefs": [], "sizes": []}


async def test_server_loads_a_verb_area_at_its_first_request() -> None:
    frames = await _converse(
        [
            protocol.encode({"type": "VolumeListRequest", "filters": "x"}),
            protocol.encode({"type": "CopyStatRequest", "container": "c"}),
        ]
    )
    errors = [f for f in frames if isinstance(f, dict) and f["type"] == "ErrorResponse"]
    assert len(errors) == 2
    assert errors[0]["message"].startswith("VolumeListRequest: ")  # parsed, strictly
    assert "CopyStatRequest: " in errors[1]["message"]
    assert "path" in errors[1]["message"]  # the missing field is named


def test_verb_areas_list_their_modules_requests() -> None:
    for name, requests in _verbareas.AREAS.items():
        area = importlib.import_module(name)
        assert requests == tuple(cls.__name__ for cls in area.REQUESTS), name
        assert set(area.STREAMS) <= set(area.REQUESTS), name
        assert all(issubclass(e, Exception) for e in area.ERRORS), name
        assert callable(area.handlers), name
        assert not set(requests) & set(REQUESTS), name  # the core catalogue has none


def test_the_daemon_imports_no_verb_area_at_start() -> None:
    """They are the daemon's memory only once used (bench/README.md, session 7)."""
    code = "import sys, boxd._daemon; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not set(_verbareas.AREAS) & set(loaded)


async def test_server_closes_after_the_end_frame_of_a_stream(autojump_clock: object) -> None:
    """The end frame is the stream's last word: a request after it gets no answer."""
    frames = await _converse(
        [
            protocol.encode({"type": "StatsRequest"}),
            protocol.encode({"type": "ListRequest"}),
        ]
    )
    assert frames == [
        {"type": "OkResponse"},
        {"type": "StatsFrame", "stats": []},
        {"type": "EndFrame"},
    ]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'\x00\x00\x00\x05{"ty', "closed in the middle of a frame"),
        (struct.pack(">I", 1 << 30), "exceeds the limit"),
        (struct.pack(">I", 5) + b"hello", "unknown frame kind"),
        (struct.pack(">I", 3) + b"{}}", "invalid JSON"),
        (protocol.encode_bytes(protocol.STDIN, b"x"), "expected a request"),
    ],
)
async def test_server_refuses_broken_frames_with_an_error(raw: bytes, error: str) -> None:
    frames = await _converse([raw])
    assert len(frames) == 1
    assert isinstance(frames[0], dict)
    assert frames[0]["type"] == "ErrorResponse"
    assert error in frames[0]["message"]


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        "",
        None,
        {"Id": "abc", "Args": [], "Labels": {}, "State": {"Pid": 7, "Running": True}},
        [{"équipe": "café ☕", "quote": '"\\\n\t\x01'}, [1, 2.5, -0.0, 1e300, [[]], [{}]]],
        {"nested": {"deeper": {"deepest": [None, False, True, 10**20]}}},
    ],
)
def test_inspects_indented_json_is_jsons(value: object) -> None:
    """``boxctl inspect`` prints what ``json.dumps(indent=4, ensure_ascii=False)`` would,
    without importing json (re and enum with it, ~5 ms of the call)."""
    assert _wirejson.indented(value) == json.dumps(value, indent=4, ensure_ascii=False)


async def test_output_frames_reach_a_slow_reader_whole_and_a_gone_one_ends_the_stream() -> None:
    """A large chunk of output goes out with its header in one ``sendmsg`` (the client
    wakes once a frame, not for a header alone); a socket that takes part of it (a client
    that reads slowly, a small send buffer) gets the rest after: every frame decodes to
    the bytes sent, in order, the small ones (copied behind their header) too."""
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = Connection(trio.SocketStream(ours))
    sent = [
        (protocol.STDOUT if n % 2 else protocol.STDERR, os.urandom(size))
        for n, size in enumerate(
            (1 << 20, 5, protocol.COPY_LIMIT, 300_001, protocol.COPY_LIMIT - 1)
        )
    ]
    decoder = protocol.FrameDecoder()
    got: list[protocol.Frame] = []

    async def read_slowly() -> None:
        while data := await theirs.recv(3000):
            decoder.feed(data)
            while (frame := decoder.next()) is not None:
                got.append(frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_slowly)
        for stream_id, data in sent:
            await conn.send_bytes(stream_id, data)
        ours.close()
    theirs.close()
    assert got == sent
    # A client gone, a connection closed: the stream errors send_all raises, which the
    # daemon's streams end on (a raw OSError went past them, and a container's stdin
    # was not closed after its client had gone).
    ours, theirs = trio.socket.socketpair()
    conn = Connection(trio.SocketStream(ours))
    theirs.close()
    with pytest.raises(trio.BrokenResourceError):
        await conn.send_bytes(protocol.STDOUT, bytes(protocol.COPY_LIMIT))
    await conn.stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await conn.send_bytes(protocol.STDOUT, bytes(protocol.COPY_LIMIT))


def test_error_frames_are_json_with_type() -> None:
    frame = protocol.encode({"type": "ErrorResponse", "message": "x", "kind": "invalid"})
    assert json.loads(frame[4:])["type"] == "ErrorResponse"


def _fake_daemon(
    path: Path, frames: bytes, got_request: list[protocol.Frame], listening: threading.Event
) -> None:
    """Accept one connection, read one request, answer with ``frames`` in one write, then
    hold the connection open until the client closes it (or, if the client waits for
    more, close it after a while: the client then fails instead of hanging the test)."""
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listening.set()  # not the socket file: it exists before listen(), refusing clients
        conn, _ = listener.accept()
        with conn:
            dec = protocol.FrameDecoder()
            while (request := dec.next()) is None:
                dec.feed(conn.recv(65536))
            got_request.append(request)
            conn.sendall(frames)
            conn.settimeout(10)
            with contextlib.suppress(TimeoutError):
                while conn.recv(65536):
                    pass


def test_client_ends_with_an_exit_frame_that_came_with_the_response(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A short-lived process: the response, its output and its ExitFrame arrive in one read.
    The client must not wait on the socket for more (it once did, until the daemon's read
    timeout closed the connection 30 s later)."""
    path = tmp_path / "fake.sock"
    frames = (
        protocol.encode({"type": "OkResponse"})
        + protocol.encode_bytes(protocol.STDOUT, b"out\n")
        + protocol.encode({"type": "ExitFrame", "exit_code": 3})
    )
    got: list[protocol.Frame] = []
    listening = threading.Event()
    daemon = threading.Thread(target=_fake_daemon, args=(path, frames, got, listening))
    daemon.start()
    try:
        listened = listening.wait(timeout=30)
        assert listened, "the fake daemon did not listen"
        with Client(str(path)) as client:
            client.request({"type": "StartRequest", "container": "x", "attach": True})
            code = _attach.stream(
                client, stdin=False, tty_mode=False, detach_keys=b"\x10\x11", sig_proxy=False
            )
    finally:
        daemon.join()
    assert got == [{"type": "StartRequest", "container": "x", "attach": True}]
    assert code == 3
    assert capfd.readouterr().out == "out\n"


def test_client_reads_the_exit_of_a_process_that_ended_before_it_could_send(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``exec -t`` of a short-lived process, with piped stdin: the daemon sent the output and
    the ExitFrame, and closed the connection, before the client sent its terminal size and
    its input.  The failed sends must not lose what came: the client once exited 1 without
    a word (EPIPE), about one ``exec -t CONTAINER /bin/tty`` in ten on a busy machine."""
    path = tmp_path / "fake.sock"
    stdin_r, stdin_w = os.pipe()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)
        with Client(str(path)) as client:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(
                    protocol.encode_bytes(protocol.STDOUT, b"/dev/pts/0\r\n")
                    + protocol.encode({"type": "ExitFrame", "exit_code": 3})
                )
            os.write(stdin_w, b"input nobody reads")
            os.close(stdin_w)
            with open(stdin_r, "rb") as stdin:
                monkeypatch.setattr("sys.stdin", stdin)
                code = _attach.stream(
                    client, stdin=True, tty_mode=True, detach_keys=b"", sig_proxy=False
                )
    assert code == 3
    assert capfd.readouterr().out == "/dev/pts/0\r\n"


def test_attach_reader_writes_output_split_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boxctl's attach loop writes output frames from its receive buffer as they arrive,
    parts of frames too: every byte reaches its fd in order, stdin-kind output is dropped,
    and messages (one larger than the buffer) come out whole, however the stream is cut."""
    monkeypatch.setattr(_attach, "RECEIVE_SIZE", 64)
    big = {"type": "StatsFrame", "stats": ["x" * 200]}
    stream = b"".join(
        [
            protocol.encode_bytes(protocol.STDOUT, bytes(range(256)) * 3),
            protocol.encode_bytes(protocol.STDERR, b"err"),
            protocol.encode_bytes(protocol.STDIN, b"dropped"),
            protocol.encode(big),
            protocol.encode_bytes(protocol.STDOUT, b"tail"),
            protocol.encode({"type": "ExitFrame", "exit_code": 3}),
        ]
    )
    for cut in (0, 1, 5, 70, 800, len(stream)):
        for step in (1, 7, 100, 4096):
            out = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            err = os.open(tmp_path / "err", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            ours, theirs = socket.socketpair()
            try:
                incoming = _attach._Incoming(stream[:cut], {1: out, 2: err})
                messages = incoming.parse()
                for offset in range(cut, len(stream), step):
                    theirs.sendall(stream[offset : offset + step])
                    while True:
                        incoming.receive(ours)
                        messages += incoming.parse()
                        ours.setblocking(False)
                        try:
                            if not ours.recv(1, socket.MSG_PEEK):
                                break
                        except BlockingIOError:
                            break
                        finally:
                            ours.setblocking(True)
                assert messages == [big, {"type": "ExitFrame", "exit_code": 3}]
                assert os.pread(out, 4096, 0) == bytes(range(256)) * 3 + b"tail"
                assert os.pread(err, 4096, 0) == b"err"
            finally:
                ours.close()
                theirs.close()
                os.close(out)
                os.close(err)

"""boxctl's image display: pull and push progress on a terminal and on a pipe (pure, no
daemon)."""

from __future__ import annotations

import io

from boxctl._images import PUSH_FINAL, _created, _Progress, _short_name
from boxd._human import size


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _frames() -> list[dict[str, object]]:
    return [
        {"layer": "aaa", "status": "Waiting", "current": 0, "total": 100},
        {"layer": "bbb", "status": "Waiting", "current": 0, "total": 50},
        {"layer": "aaa", "status": "Downloading", "current": 50, "total": 100},
        {"layer": "bbb", "status": "Already exists", "current": 50, "total": 50},
        {"layer": "aaa", "status": "Extracting", "current": 100, "total": 100},
        {"layer": "aaa", "status": "Pull complete", "current": 100, "total": 100},
    ]


def test_a_pipe_gets_one_line_per_finished_layer() -> None:
    out = io.StringIO()
    shown = _Progress(out)
    for frame in _frames():
        shown.update(frame)
    assert out.getvalue() == "bbb: Already exists\naaa: Pull complete\n"


def test_a_terminal_gets_lines_rewritten_in_place() -> None:
    out = _Terminal()
    shown = _Progress(out)
    for frame in _frames():
        shown.update(frame)
    text = out.getvalue()
    assert text.startswith("aaa: Waiting\nbbb: Waiting\n")
    # aaa is two lines up: the cursor goes there, rewrites the line, comes back.
    assert "\x1b[2A\r\x1b[2Kaaa: Downloading [" in text
    assert "50B/100B" in text
    assert "\x1b[1A\r\x1b[2Kbbb: Already exists" in text
    assert text.endswith("\x1b[2A\r\x1b[2Kaaa: Pull complete\x1b[2B\r")


def test_a_push_on_a_pipe_gets_one_line_per_layer_pushed_skipped_or_mounted() -> None:
    out = io.StringIO()
    shown = _Progress(out, PUSH_FINAL)
    for layer, status in [
        ("aaa", "Preparing"),
        ("bbb", "Preparing"),
        ("ccc", "Preparing"),
        ("aaa", "Pushing"),
        ("bbb", "Layer already exists"),
        ("ccc", "Mounted from team/base"),
        ("aaa", "Pushed"),
    ]:
        shown.update({"layer": layer, "status": status, "current": 1, "total": 2})
    assert out.getvalue() == (
        "bbb: Layer already exists\nccc: Mounted from team/base\naaa: Pushed\n"
    )


def test_names_and_sizes_as_docker_shows_them() -> None:
    assert _short_name("docker.io/library/busybox:latest") == ("busybox", "latest")
    assert _short_name("docker.io/me/app:1") == ("me/app", "1")
    assert _short_name("127.0.0.1:5000/x/y:2") == ("127.0.0.1:5000/x/y", "2")
    assert (size(999), size(1500), size(4_260_000)) == ("999B", "1.5kB", "4.26MB")


def test_created_times_as_go_writes_them() -> None:
    """An image's ``created`` in RFC 3339 as Go writes it (nanoseconds, Z or an offset)."""
    base = 1796575512  # 2026-12-06T16:45:12Z
    assert _created("2026-12-06T16:45:12.123456789Z") == base + 0.123456
    assert _created("2026-12-06T16:45:12Z") == base
    assert _created("2026-12-06T16:45:12.5+01:00") == base - 3600 + 0.5
    assert _created("2026-12-06T16:45:12.1234567-02:30") == base + 9000 + 0.123456
    assert _created("") is None
    assert _created("yesterday") is None

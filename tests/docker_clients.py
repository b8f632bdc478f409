"""The docker CLI and raw HTTP against a test daemon's Docker API socket (shared by the
Docker API, cp and volume tests)."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from daemon_harness import Daemon

DOCKER = shutil.which("docker")
needs_cli = pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not on PATH")


def docker_env(daemon: Daemon) -> dict[str, str]:
    """The environment that points the docker CLI (and docker-py) at ``daemon``."""
    return {
        **os.environ,
        "DOCKER_HOST": f"unix://{daemon.docker_socket}",
        "DOCKER_CONFIG": str(daemon.root.parent / "docker-config"),
    }


def docker(
    daemon: Daemon, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real docker CLI against ``daemon``'s Docker API."""
    assert DOCKER is not None
    return subprocess.run(
        [DOCKER, *args],
        input=input,
        capture_output=True,
        text=True,
        env=docker_env(daemon),
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


class UnixHTTP(http.client.HTTPConnection):
    """http.client on a Unix socket (the Docker API's)."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)  # blocking: waits for room in the listen backlog
        self.sock.settimeout(30)


def api_call(
    daemon: Daemon, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to ``daemon``'s Docker API: status, headers (lower-case names),
    body."""
    conn = UnixHTTP(daemon.docker_socket)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()

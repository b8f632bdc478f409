"""The Docker Engine API, driven by clients nobody here wrote: the docker CLI, docker-py,
and raw HTTP with bad input.  One real daemon for the module (its own root and sockets)."""

from __future__ import annotations

import base64
import gc
import importlib
import importlib.metadata
import io
import json
import os
import platform
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import REPO, Daemon, pipe_held, running_daemon, until
from docker_clients import DOCKER, UnixHTTP, docker_env, needs_cli
from docker_clients import api_call as _call
from docker_clients import docker as _docker
from registry_harness import build_oci_image, push, running_registry
from test_terminal import Tmux, _sized

from boxd._rootfs import _skeleton, default_created

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("dockerapi")) as d:
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    """The module's daemon, emptied of containers after the test."""
    yield daemon
    daemon.remove_containers()


# ---- the docker CLI -------------------------------------------------------------------


@needs_cli
@pytest.mark.parametrize(
    ("args", "code", "out", "err"),
    [
        (("default", "echo", "hi"), 0, "hi\n", ""),
        (("default", "sh", "-c", "echo oops >&2; exit 3"), 3, "", "oops"),
        (("default", "/nope"), 127, "", "executable file not found"),
        (("default", "/etc/passwd"), 126, "", "permission denied"),
        # Refused by the create, as Docker's: the start failed (chdir: Not a directory).
        (("-w", "/etc/passwd", "default", "pwd"), 125, "", "Cannot mkdir: /etc/passwd is not a"),
        (("-w", "/etc/passwd/x", "default", "pwd"), 125, "", "/etc/passwd/x: /etc/passwd is not"),
        (("no-such-image", "true"), 125, "", "no-such-image"),
        (("--cpuset-cpus", "4096", "default", "true"), 125, "", "4096"),
        (("-m", "2m", "default", "true"), 125, "", "minimum"),
        # As Docker: the ports are discarded, with a warning (the host's network is shared).
        (("-p", "8080:80", "--network", "host", "default", "true"), 0, "", "Published ports are"),
        (("-p", "8080:80", "--network", "none", "default", "true"), 125, "", "need a network"),
        (("--storage-opt", "size=1G", "default", "true"), 125, "", "StorageOpt is not supported"),
        # The local driver is the one there is: asked for by name, it is no change.
        (("--volume-driver", "local", "-v", "/data", "default", "echo", "hi"), 0, "hi\n", ""),
        (("--volume-driver", "nfs", "default", "true"), 125, "", "volume driver 'nfs' not found"),
    ],
)
def test_run_rm_exit_codes_as_docker(
    clean: Daemon, args: tuple[str, ...], code: int, out: str, err: str
) -> None:
    r = _docker(clean, "run", "--rm", *args)
    assert r.returncode == code, r.stderr
    assert r.stdout.startswith(out)
    assert err in r.stderr
    # --rm: gone as soon as the CLI returns, whatever the outcome.
    assert _docker(clean, "ps", "-a", "-q").stdout == ""


@needs_cli
def test_run_options_reach_the_container(clean: Daemon, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("from-host\n")
    tmp_path.chmod(0o755)  # readable by the container's uid 1000
    script = (
        "ulimit -n; ulimit -Hn; echo $A; pwd; id -u; id -G; cat /mnt/file; "
        "touch /mnt/x 2>/dev/null || echo ro-volume; touch /x 2>/dev/null || echo ro-root; "
        "touch /scratch/x && echo tmpfs-rw; grep -w db /etc/hosts; cat /proc/sys/kernel/msgmax; "
        "cat /proc/1/comm"
    )
    r = _docker(
        clean,
        *("run", "--rm", "--ulimit", "nofile=100:200", "-e", "A=1", "-w", "/tmp"),
        *("-u", "1000:1000", "--group-add", "5", "-v", f"{tmp_path}:/mnt:ro", "--read-only"),
        *("--tmpfs", "/scratch:size=1m,mode=1777", "--add-host", "db:10.1.2.3", "--init"),
        *("--sysctl", "kernel.msgmax=4321", "--userns", "host", "--ipc", "private"),
        *("--cgroupns", "private", "default", "sh", "-c", script),  # what boxd does anyway
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == [
        *("100", "200", "1", "/tmp", "1000", "1000 5", "from-host", "ro-volume", "ro-root"),
        *("tmpfs-rw", "10.1.2.3\tdb", "4321", "init", ""),
    ]


@needs_cli
def test_run_rm_gives_the_client_all_of_the_output(clean: Daemon) -> None:
    """``docker run --rm``: the container is removed as soon as it ends, most often
    before the client has read the last of its output; that output still reaches it
    (the attach stream used to end at the removal, short by up to a few MiB), every byte
    in its place (a frame's header and its chunk go out in one sendmsg, the rest after
    when the socket takes part of it)."""
    assert DOCKER is not None
    script = "seq 3000000; head -c 1000000 /dev/zero >&2"
    lines = "".join(f"{n}\n" for n in range(1, 3_000_001)).encode()
    for _ in range(5):
        r = subprocess.run(
            [DOCKER, "run", "--rm", "default", "sh", "-c", script],
            capture_output=True,
            env=docker_env(clean),
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert (r.returncode, len(r.stdout), len(r.stderr)) == (0, len(lines), 1_000_000)
        assert r.stdout == lines
    # Attached to a container removed without ever running: the stream ends all the same.
    # An Upgrade header alone asks for the upgrade, as dockerd reads it (moby's Go tests
    # send no Connection: Upgrade with it, and need the 101 to write their input).
    for connection in ("Connection: Upgrade\r\n", ""):
        cid = _docker(clean, "create", "default", "true").stdout.strip()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(clean.docker_socket))
            sock.sendall(
                f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
                f"{connection}Upgrade: tcp\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101 "), (connection, head)
            assert _docker(clean, "rm", cid).returncode == 0
            assert sock.recv(100) == b""


def _stdout_frame(data: bytes) -> bytes:
    """``data`` as Docker's multiplexed stream carries stdout: an 8-byte header first."""
    return b"\x01\0\0\0" + len(data).to_bytes(4, "big") + data


def test_a_hijacked_stream_begins_once_its_head_is_read(clean: Daemon) -> None:
    """docker-py reads the head through http.client's buffer, then takes the socket
    beneath it: output that came with the head was lost (exec_run returned b"" now and
    then on a busy client).  The stream's first byte waits until the head was read."""
    sleeper = json.dumps({"Image": "default", "Cmd": ["sh", "-c", "echo log; exec sleep 1000"]})
    assert _call(clean, "POST", "/containers/create?name=h", sleeper.encode())[0] == 201
    assert _call(clean, "POST", "/containers/h/start")[0] == 204
    made = json.dumps({"Cmd": ["echo", "out"], "AttachStdout": True}).encode()
    status, _, data = _call(clean, "POST", "/containers/h/exec", made)
    assert status == 201, data
    requests = [
        f"POST /exec/{json.loads(data)['Id']}/start HTTP/1.1\r\nHost: d\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n{}",
        # Without an upgrade (curl), the past output of an attach with logs.
        "POST /containers/h/attach?logs=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n",
    ]
    while _call(clean, "GET", "/containers/h/logs?stdout=1")[2] != _stdout_frame(b"log\n"):
        time.sleep(0.01)
    for request, output in zip(requests, [b"out\n", b"log\n"], strict=True):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(clean.docker_socket))
            sock.sendall(request.encode())
            time.sleep(0.5)  # a busy client: the exec has long ended
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 ") and head.endswith(b"\r\n\r\n"), head
            rest = b"".join(iter(lambda: sock.recv(65536), b""))
            assert rest == _stdout_frame(output)


@needs_cli
def test_use_api_socket_reaches_the_daemon_from_inside(clean: Daemon) -> None:
    """Docker 28's ``--use-api-socket``: the container reaches the daemon through its
    Docker API socket at /var/run/docker.sock, where the docker CLI and docker-py look
    (the default image has the host's docker CLI): boxctl's (the socket the daemon says
    it serves, which ``info`` shows) and the docker CLI's own."""
    info = clean.ctl("info").stdout
    assert f"docker_socket: {clean.docker_socket}\n" in info
    inside = ("docker", "run", "--rm", "default", "echo", "from-inside")
    assert clean.ctl("run", "--rm", "--use-api-socket", "default", *inside).stdout == (
        "from-inside\n"
    )
    r = _docker(clean, "run", "--rm", "--use-api-socket", "default", *inside)
    assert (r.returncode, r.stdout) == (0, "from-inside\n"), r.stderr
    r = clean.ctl("run", "--rm", "--use-api-socket", "-v", "/tmp:/var/run/docker.sock",
                  "default", "true", check=False)  # fmt: skip
    assert r.returncode == 125 and "/var/run/docker.sock" in r.stderr, r.stderr
    r = clean.ctl("run", "--rm", "--use-api-socket", "--isolate-user", "default", "true",
                  check=False)  # fmt: skip
    assert r.returncode == 125 and "cannot go with --isolate-user" in r.stderr, r.stderr


@needs_cli
def test_entrypoint_reset(clean: Daemon) -> None:
    """``--entrypoint ""`` (the CLI sends ``[""]``) resets the image's entrypoint, as
    Docker's daemon reads it: the command runs alone, and the image's Cmd is not taken
    (none given: refused).  It ran ``""``: 'exec : Permission denied'."""
    assert _docker(clean, "create", "--name", "src", "default", "true").returncode == 0
    r = _docker(
        clean, "commit", "-c", 'ENTRYPOINT ["echo", "ep"]', "-c", 'CMD ["cmd"]', "src", "ep"
    )
    assert r.returncode == 0, r.stderr
    try:
        assert _docker(clean, "run", "--rm", "ep").stdout == "ep cmd\n"
        r = _docker(clean, "run", "--rm", "--entrypoint", "", "ep", "echo", "reset")
        assert (r.returncode, r.stdout) == (0, "reset\n"), r.stderr
        r = _docker(clean, "run", "--rm", "--entrypoint", "", "default", "echo", "reset")
        assert (r.returncode, r.stdout) == (0, "reset\n"), r.stderr
        r = _docker(clean, "run", "--rm", "--entrypoint", "", "ep")
        assert r.returncode == 125 and "no command specified: an empty Entrypoint" in r.stderr
        # boxctl's run is refused by the same check, in the same words (it named the
        # image's Cmd as missing, which the reset had dropped).
        r = clean.ctl("run", "--rm", "--entrypoint", "", "ep", check=False)
        assert r.returncode == 125 and "no command specified: an empty Entrypoint" in r.stderr
        args = ("run", "--rm", "--entrypoint", "", "default")
        for r in (clean.ctl(*args, check=False), _docker(clean, *args)):
            assert r.returncode == 125, r.stderr
            assert "no command specified (the image 'default' has no Cmd)" in r.stderr
    finally:
        clean.remove_containers()
        _docker(clean, "rmi", "ep")


@needs_cli
def test_real_time_signals(clean: Daemon) -> None:
    """``--stop-signal SIGRTMIN+3`` (systemd's images say ``STOPSIGNAL SIGRTMIN+3``) and
    ``kill -s RTMIN+2`` reach the container, as Docker names them: they were refused as
    invalid signals, and an image that named one could not be run."""
    trapper = "trap 'echo rt2' 36; trap 'echo rt3; exit 0' 37; echo up; while :; do sleep 0.1; done"
    r = _docker(clean, "run", "-d", "--name", "rt", "--stop-signal", "SIGRTMIN+3", "default",
                "sh", "-c", trapper)  # fmt: skip
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while "up" not in _docker(clean, "logs", "rt").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _docker(clean, "kill", "-s", "RTMIN+2", "rt").returncode == 0
    assert _docker(clean, "stop", "rt").returncode == 0
    assert _docker(clean, "logs", "rt").stdout == "up\nrt2\nrt3\n"
    assert _docker(clean, "inspect", "-f", "{{.State.ExitCode}}", "rt").stdout == "0\n"


@needs_cli
def test_detached_container_through_its_life(clean: Daemon) -> None:
    script = "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"
    cid = _docker(
        clean, "run", "-d", "--name", "web", "-l", "team=a", "default", "sh", "-c", script
    )
    assert cid.returncode == 0, cid.stderr
    ps = _docker(clean, "ps", "--format", "{{.Names}} {{.Status}} {{.Command}}").stdout
    assert ps.startswith("web Up ")
    # As dockerd lists it: a word with a space between single quotes, cut by the CLI.
    assert ps.rstrip().endswith('"sh -c \'echo started…"')
    # The native socket sees the same container at the same time (one supervisor).
    assert clean.inspect("web")["state"]["status"] == "running"
    assert _docker(clean, "ps", "-q", "--filter", "label=team=a").stdout.strip() == cid.stdout[:12]
    assert _docker(clean, "ps", "-q", "--filter", "label=team=b").stdout == ""
    assert _docker(clean, "pause", "web").returncode == 0
    assert "(Paused)" in _docker(clean, "ps", "--format", "{{.Status}}").stdout
    paused = _docker(clean, "inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "web")
    assert paused.stdout == "paused true\n"
    assert _docker(clean, "unpause", "web").returncode == 0

    top = _docker(clean, "top", "web", "-o", "pid,args").stdout.splitlines()
    assert top[0].split() == ["PID", "COMMAND"]
    assert f"sh -c {script}" in [line.split(None, 1)[1] for line in top[1:]]
    r = _docker(clean, "exec", "web", "sh", "-c", "echo in-$HOSTNAME; exit 4")
    assert (r.returncode, r.stdout) == (4, f"in-{cid.stdout[:12]}\n")
    assert _docker(clean, "exec", "web", "/nope").returncode == 127
    assert _docker(clean, "exec", "-i", "web", "cat", input="piped\n").stdout == "piped\n"

    with _follow_logs(clean, "web") as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "started\n"
        assert _docker(clean, "stop", "web").stdout == "web\n"
        # logs -f ends by itself when the container does, with everything it wrote.
        assert follow.stdout.read() == "bye\n"
        assert follow.wait(timeout=30) == 0

    info = json.loads(_docker(clean, "inspect", "web").stdout)[0]
    assert info["Id"] == cid.stdout.strip()
    assert info["Name"] == "/web"
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 0
    assert info["Config"]["Labels"] == {"team": "a"}
    fmt = _docker(clean, "inspect", "-f", "{{.State.Running}} {{.Config.Cmd}}", "web").stdout
    assert fmt == f"false [sh -c {script}]\n"
    assert "Exited (0)" in _docker(clean, "ps", "-a").stdout
    assert _docker(clean, "rm", "-f", "web").returncode == 0
    assert _docker(clean, "ps", "-a", "-q").stdout == ""
    r = _docker(clean, "inspect", "web")
    assert r.returncode == 1
    assert "No such object: web" in r.stderr


@needs_cli
def test_stdin_the_process_never_reads_gives_its_exit_code(clean: Daemon) -> None:
    """Piped input left unread when the process ends (`yes | docker run -i IMAGE head -n1`,
    a large file into `true`): the CLI reports the process's exit code, not "connection
    reset by peer" with exit code 1, as dockerd's attach does (moby/moby#35723).  Three
    times each: the reset depended on how far the input had got."""
    _docker(clean, "run", "-d", "-i", "--name", "reader", "default", "sleep", "300")
    env = docker_env(clean)
    assert DOCKER is not None
    unread = ["yes", "|", DOCKER, "run", "-i", "--rm", "default", "head", "-n", "1"]
    cases = [
        (unread, 0, "y\n"),
        (["head", "-c", "64M", "/dev/zero", "|", DOCKER, "run", "-i", "--rm", "default",
          "sh", "-c", "exit 7"], 7, ""),
        (["yes", "|", DOCKER, "exec", "-i", "reader", "head", "-n", "1"], 0, "y\n"),
    ]  # fmt: skip
    for argv, code, out in cases * 3:
        command = " ".join(a if a == "|" else shlex.quote(a) for a in argv)
        r = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, env=env, timeout=60
        )
        assert (r.returncode, r.stdout, r.stderr) == (code, out, ""), command


@needs_cli
def test_cli_errors_and_stdin(clean: Daemon) -> None:
    assert _docker(clean, "run", "--rm", "-i", "default", "cat", input="a\nb\n").stdout == "a\nb\n"
    r = _docker(clean, "stop", "nothing-here")
    assert r.returncode == 1
    assert "No such container: nothing-here" in r.stderr
    _docker(clean, "run", "-d", "--name", "dup", "default", "sleep", "60")
    r = _docker(clean, "run", "-d", "--name", "dup", "default", "true")
    assert r.returncode == 125
    assert "already in use" in r.stderr
    r = _docker(clean, "rm", "dup")
    assert r.returncode == 1
    assert "running" in r.stderr
    assert _docker(clean, "update", "--memory", "100m", "--memory-swap", "200m", "dup").stdout
    limits = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"
    assert _docker(clean, "inspect", "-f", limits, "dup").stdout == f"{100 << 20} {200 << 20}\n"
    # What update is not given stays; a PidsLimit of -1 is no limit, as Docker's.
    limits += " {{.HostConfig.PidsLimit}}"
    for pids in ("50", "-1"):
        assert _docker(clean, "update", "--pids-limit", pids, "dup").returncode == 0
        assert _docker(clean, "inspect", "-f", limits, "dup").stdout == (
            f"{100 << 20} {200 << 20} {pids}\n"
        )
    assert _docker(clean, "update", "--restart", "on-failure:2", "dup").returncode == 0
    policy = "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
    assert _docker(clean, "inspect", "-f", policy, "dup").stdout == "on-failure:2\n"
    assert _docker(clean, "update", "--restart", "no", "dup").returncode == 0
    # A --rm container takes no restart policy: 409, dockerd's words (it said "--rm and
    # --restart cannot be combined", a 400); "no" it takes.
    assert _docker(clean, "run", "-d", "--rm", "--name", "gone", "default", "sleep", "60").stdout
    r = _docker(clean, "update", "--restart", "always", "gone")
    assert (r.returncode, r.stderr) == (1, (
        "Error response from daemon: Restart policy cannot be updated because AutoRemove is "
        "enabled for the container\n"
    ))  # fmt: skip
    status, _, _ = _call(clean, "POST", "/containers/gone/update",
                         b'{"RestartPolicy": {"Name": "always"}}')  # fmt: skip
    assert status == 409
    # A working directory is kept cleaned, as dockerd keeps it.
    _docker(clean, "run", "-d", "--name", "wd", "-w", "/tmp//x/", "default", "sleep", "60")
    assert _docker(clean, "inspect", "-f", "{{.Config.WorkingDir}}", "wd").stdout == "/tmp/x\n"
    assert _docker(clean, "exec", "wd", "pwd").stdout == "/tmp/x\n"
    _docker(clean, "rm", "-f", "wd")
    assert _docker(clean, "update", "--restart", "no", "gone").returncode == 0
    _docker(clean, "rm", "-f", "gone")
    # exec: --privileged gets every capability; a paused container refuses, in Docker's words.
    caps = ["sh", "-c", "grep ^CapEff /proc/self/status"]
    privileged = _docker(clean, "exec", "--privileged", "dup", *caps).stdout.split()[1]
    assert privileged != _docker(clean, "exec", "dup", *caps).stdout.split()[1]
    assert int(privileged, 16) & (1 << 21)  # CAP_SYS_ADMIN
    cid = _docker(clean, "inspect", "-f", "{{.Id}}", "dup").stdout.strip()
    assert _docker(clean, "pause", "dup").returncode == 0
    counts = "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.Images}}"
    assert _docker(clean, "info", "-f", counts).stdout == "1 0 1 1\n"
    r = _docker(clean, "exec", "dup", "true")
    assert (r.returncode, r.stderr) == (
        1,
        f"Error response from daemon: Container {cid} is paused, unpause the container "
        "before exec\n",
    )
    r = _docker(clean, "start", "dup")  # not the 304 of a running one: dockerd's 409
    assert (r.returncode, r.stderr) == (1, (
        "Error response from daemon: cannot start a paused container, try unpause instead\n"
        "Error: failed to start containers: dup\n"
    ))  # fmt: skip
    assert _docker(clean, "unpause", "dup").returncode == 0
    assert _docker(clean, "kill", "dup").returncode == 0
    assert _docker(clean, "wait", "dup").stdout == "137\n"


@needs_cli
def test_rename_diff_prune(clean: Daemon) -> None:
    created = _docker(clean, "create", "default", "true").stdout.strip()
    r = _docker(clean, "logs", created)  # never started: no log, as from Docker
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert _docker(clean, "rm", created).returncode == 0
    script = "echo x > /added; rm /etc/group"
    assert _docker(clean, "run", "--name", "d1", "default", "sh", "-c", script).returncode == 0
    assert _docker(clean, "rename", "d1", "d2").returncode == 0
    assert _docker(clean, "ps", "-a", "--format", "{{.Names}}").stdout == "d2\n"
    changes = _docker(clean, "diff", "d2").stdout.splitlines()
    assert {"A /added", "D /etc/group"} <= set(changes)
    r = _docker(clean, "rename", "d2", "bad name")
    assert r.returncode == 1
    assert "bad name" in r.stderr
    kept = _docker(clean, "create", "-l", "keep=1", "default", "true").stdout.strip()
    r = _docker(clean, "container", "prune", "-f", "--filter", "label!=keep")
    assert r.stdout.startswith("Deleted Containers:\n") and kept not in r.stdout
    assert _docker(clean, "ps", "-a", "-q", "--no-trunc").stdout == kept + "\n"
    r = _docker(clean, "container", "prune", "-f", "--filter", "until=whenever")
    assert r.returncode == 1 and "invalid until 'whenever'" in r.stderr
    r = _docker(clean, "container", "prune", "-f", "--filter", "label=keep=1")
    assert r.stdout.startswith(f"Deleted Containers:\n{kept}\n")
    assert _docker(clean, "ps", "-a", "-q").stdout == ""


def test_two_creates_of_one_name_at_once_one_wins_in_dockers_words(clean: Daemon) -> None:
    """pytest-xdist workers creating a fixture's named container at the same moment: one
    gets it, the other Docker's 409, whose words (and the holder's id between quotes) a
    suite's retry or cleanup reads; a rename to a taken name says it as Docker does."""
    import threading

    docker = pytest.importorskip("docker")
    clients = [docker.APIClient(base_url=f"unix://{clean.docker_socket}") for _ in range(2)]

    def create(
        client: Any, name: str, both: threading.Barrier, made: list[str], refused: list[Any]
    ) -> None:
        both.wait()
        try:
            made.append(client.create_container("default", "true", name=name)["Id"])
        except docker.errors.APIError as exc:
            refused.append(exc)

    for i in range(10):
        name = f"same-{i}"
        made: list[str] = []
        refused: list[Any] = []
        both = threading.Barrier(2)
        args = [(c, name, both, made, refused) for c in clients]
        threads = [threading.Thread(target=create, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(made) == 1 and len(refused) == 1, (made, refused)
        assert refused[0].status_code == 409
        assert refused[0].explanation == (
            f'Conflict. The container name "/{name}" is already in use by container '
            f'"{made[0]}". You have to remove (or rename) that container to be able to reuse '
            "that name."
        )
    with pytest.raises(docker.errors.APIError) as raised:
        clients[0].rename("same-0", "same-1")
    assert raised.value.status_code == 409
    assert raised.value.explanation.startswith(
        'Error when allocating new name: Conflict. The container name "/same-1" is already in '
        "use by container"
    )


@needs_cli
def test_log_opt_rotation_and_refusals(clean: Daemon) -> None:
    """``--log-opt max-size/max-file`` rotate the container's log (Docker's json-file
    options, max-size in Docker's units: 4k is 4000 bytes, where it was 4096); an option
    boxd does not honour is refused, naming it, not dropped."""
    script = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line$i; done"
    opts = ["--log-opt", "max-size=4k", "--log-opt", "max-file=2"]
    assert _docker(clean, "run", "--name", "rot", *opts, "default", "sh", "-c", script).stdout
    config = _docker(clean, "inspect", "-f", "{{json .HostConfig.LogConfig}}", "rot").stdout
    assert json.loads(config) == {
        "Type": "json-file",
        "Config": {"max-size": "4k", "max-file": "2"},
    }
    logs = Path(_docker(clean, "inspect", "-f", "{{.LogPath}}", "rot").stdout.strip()).parent
    sizes = [(logs / name).stat().st_size for name in ("container.log", "container.log.1")]
    assert 3900 < sizes[1] <= 4000 and sizes[0] <= 4000
    kept = _docker(clean, "logs", "rot").stdout.splitlines()
    assert kept[-1] == "line3000"
    assert len(kept) < 1000  # two files of at most 4 KiB of JSON records
    assert kept == [f"line{i}" for i in range(3001 - len(kept), 3001)]  # a tail, in order
    for opt, words in [
        ("max-size=lots", "invalid log option max-size 'lots'"),
        ("max-file=0", "invalid log option max-file '0'"),
        ("syslog-address=udp://x", "unknown log opt 'syslog-address' for json-file log driver"),
        ("awslogs-region=x", "log option awslogs-region='x' is not supported"),
        ("compress=maybe", "invalid log option compress 'maybe': expected true or false"),
    ]:
        r = _docker(clean, "run", "--rm", "--log-opt", opt, "default", "true")
        assert r.returncode == 125, r.stderr
        assert words in r.stderr
    r = _docker(
        clean,
        "run",
        "--rm",
        "--log-opt",
        "compress=true",
        "--log-opt",
        "max-file=1",
        "default",
        "true",
    )
    assert "compress cannot be true when max-file is less than 2" in r.stderr  # Docker's words
    opts[-1] = "max-file=3"
    _docker(
        clean,
        "run",
        "--name",
        "gz",
        *opts,
        "--log-opt",
        "compress=true",
        "default",
        "sh",
        "-c",
        script,
    )
    assert _docker(clean, "logs", "--tail", "150", "gz").stdout.splitlines() == [
        f"line{i}" for i in range(2851, 3001)
    ]  # into the files rotated out: compressed at once, or being compressed
    assert _docker(clean, "ps", "-a", "--format", "{{.Names}}").stdout == "gz\nrot\n"


@needs_cli
def test_logs_details_show_the_log_attributes(clean: Daemon) -> None:
    """``--log-opt labels=/labels-regex=/env=/env-regex=/tag=`` (Docker's json-file and
    local options) give each line attributes that ``logs --details`` prints before it,
    sorted and URL-encoded, on the line's own stream (they were refused, and the Engine
    API's ``details`` was ignored: not even the space before a line)."""
    opts = ["--label", "team=a b", "--label", "zone=x", "--label", "spot=1/2", "-e", "FOO=f"]
    opts += ["-e", "BAR=b", "--log-opt", "labels=team,missing", "--log-opt", "env=FOO"]
    opts += ["--log-opt", "labels-regex=^sp", "--log-opt", "tag={{.Name}}/{{.ID}}"]
    script = "echo out; echo err >&2"
    r = _docker(clean, "run", "--name", "att", *opts, "default", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    cid = _docker(clean, "inspect", "-f", "{{.Id}}", "att").stdout.strip()
    prefix = f"FOO=f,spot=1%2F2,tag=att%2F{cid[:12]},team=a+b "
    r = _docker(clean, "logs", "--details", "att")
    assert (r.stdout, r.stderr) == (prefix + "out\n", prefix + "err\n")
    stamped = _docker(clean, "logs", "--details", "-t", "att").stdout
    assert stamped.split(" ", 1)[1] == prefix + "out\n"
    assert clean.ctl("logs", "--details", "att").stdout == prefix + "out\n"
    config = json.loads(
        _docker(clean, "inspect", "-f", "{{json .HostConfig.LogConfig}}", "att").stdout
    )
    assert config["Config"] == {
        "labels": "team,missing",
        "env": "FOO",
        "labels-regex": "^sp",
        "tag": "{{.Name}}/{{.ID}}",
    }
    # Without attributes, the space alone, as Docker prints it.
    _docker(clean, "run", "--name", "plain", "default", "echo", "hi")
    assert _docker(clean, "logs", "--details", "plain").stdout == " hi\n"
    clean.ctl("run", "--name", "bx", "-e", "A=1", "--log-opt", "env-regex=^A$", "default", "true")
    assert _docker(
        clean, "inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "bx"
    ).stdout == ('{"env-regex":"^A$"}\n')
    for opt, words in [
        ("labels-regex=(", "invalid log option labels-regex '('"),
        ("tag={{.Nope}}", "invalid log option tag '{{.Nope}}': no field 'Nope'"),
        ("tag={{if .Name}}x{{end}}", "not Go's template actions"),
    ]:
        r = _docker(clean, "run", "--rm", "--log-opt", opt, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
        r = clean.ctl("run", "--rm", "--log-opt", opt, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, r.stderr
    r = clean.ctl(
        "run", "--log-driver", "none", "--log-opt", "env=A", "default", "true", check=False
    )
    assert r.returncode == 125 and "log options need a log" in r.stderr


@needs_cli
def test_log_mode_options_are_taken(clean: Daemon) -> None:
    """Docker's ``--log-opt mode=blocking|non-blocking`` and ``max-buffer-size`` (with
    non-blocking), which compose files set, are taken and shown back (they were refused):
    boxd drains the output into the log either way and drops none of it; bad values are
    refused in Docker's daemon's words."""
    opts = ["--log-opt", "mode=non-blocking", "--log-opt", "max-buffer-size=4m"]
    r = _docker(clean, "run", "--name", "nb", *opts, "default", "echo", "kept")
    assert (r.returncode, r.stdout) == (0, "kept\n"), r.stderr
    assert _docker(clean, "logs", "nb").stdout == "kept\n"
    shown = _docker(clean, "inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "nb")
    assert json.loads(shown.stdout) == {"mode": "non-blocking", "max-buffer-size": "4m"}
    clean.ctl("run", "--name", "bl", "--log-opt", "mode=blocking", "default", "true")
    shown = _docker(clean, "inspect", "-f", "{{json .HostConfig.LogConfig.Config}}", "bl")
    assert json.loads(shown.stdout) == {"mode": "blocking"}
    for opts, words in [
        (["mode=sometimes"], "logger: logging mode not supported: sometimes"),
        (["max-buffer-size=4m"], "max-buffer-size option is only supported with 'mode=non-"),
        (["mode=non-blocking", "max-buffer-size=lots"], "invalid log option max-buffer-size"),
    ]:
        args = [arg for opt in opts for arg in ("--log-opt", opt)]
        r = _docker(clean, "run", "--rm", *args, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
        r = clean.ctl("run", "--rm", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, r.stderr


@needs_cli
def test_container_sizes(clean: Daemon, tmp_path: Path, busybox_root: Path) -> None:
    """``ps -s``, ``inspect --size`` and ``system df``: what a container wrote (SizeRw)
    and that with its image's layers (SizeRootFs)."""
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    assert _docker(clean, "import", str(tarball), "sz:1").returncode == 0
    script = "head -c 300000 /dev/zero > /blob"
    assert _docker(clean, "run", "--name", "big", "sz:1", "/bin/sh", "-c", script).returncode == 0
    r = _docker(clean, "inspect", "--size", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "big")
    rw, rootfs = map(int, r.stdout.split())
    image = int(_docker(clean, "image", "inspect", "-f", "{{.Size}}", "sz:1").stdout)
    assert 300000 <= rw < 310000 and rootfs == rw + image
    listed = _docker(clean, "ps", "-a", "-s", "--format", "{{.Size}}").stdout
    assert listed.startswith("30") and "kB (virtual " in listed, listed
    # boxctl's ps -s and inspect -s show the same (it showed what was written only).
    assert clean.ctl("ps", "-a", "-s", "--format", "{{.Size}}").stdout == listed
    fmt = "{{.SizeRw}} {{.SizeRootFs}}"
    assert clean.ctl("inspect", "-s", "-f", fmt, "big").stdout == r.stdout
    assert "SizeRw" not in json.loads(clean.ctl("inspect", "big").stdout)[0]  # as Docker's
    assert "big" in _docker(clean, "system", "df", "-v").stdout
    # Its image is in use: nothing of it is reclaimable (SharedSize given, as Docker's df).
    df = _docker(clean, "system", "df", "--format", "{{.Type}}={{.Reclaimable}}").stdout
    assert "Images=0B (0%)" in df.splitlines(), df
    assert _docker(clean, "rm", "big").returncode == 0
    assert _docker(clean, "rmi", "sz:1").returncode == 0
    # On default, /usr is an overlay of its own: what is written there counts too.
    script = "head -c 200000 /dev/zero > /usr/local/blob; head -c 100000 /dev/zero > /blob"
    assert _docker(clean, "run", "--name", "two", "default", "sh", "-c", script).returncode == 0
    r = _docker(clean, "inspect", "--size", "-f", "{{.SizeRw}}", "two")
    assert 300000 <= int(r.stdout) < 310000, r.stdout
    assert _docker(clean, "rm", "two").returncode == 0


@needs_cli
def test_ps_names_an_image_by_id_once_its_name_moved(
    clean: Daemon, tmp_path: Path, busybox_root: Path
) -> None:
    """As dockerd's list (moby's TestPsImageIDAfterUpdate): a container whose image name
    now resolves to another image, or to none, is listed with its image's id; the
    ``ancestor`` filter takes the image's descendants too (TestPsListContainersFilter-
    AncestorImage)."""
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    assert _docker(clean, "import", str(tarball), "mv:orig").returncode == 0
    first = _docker(clean, "image", "inspect", "-f", "{{.Id}}", "mv:orig").stdout.strip()
    assert _docker(clean, "run", "-d", "--name", "old", "mv:orig", "sleep", "60").returncode == 0
    assert _docker(clean, "commit", "old", "mv:new").returncode == 0
    assert _docker(clean, "run", "-d", "--name", "kid", "mv:new", "sleep", "60").returncode == 0
    listed = "{{.Names}} {{.Image}}"
    rows = sorted(_docker(clean, "ps", "--no-trunc", "--format", listed).stdout.splitlines())
    assert rows == ["kid mv:new", "old mv:orig"]
    by_ancestor = _docker(clean, "ps", "-q", "--filter", f"ancestor={first}").stdout.split()
    assert len(by_ancestor) == 2  # old, and kid of a child of its image
    assert _docker(clean, "tag", "mv:new", "mv:orig").returncode == 0  # the name moves
    rows = sorted(_docker(clean, "ps", "--no-trunc", "--format", listed).stdout.splitlines())
    assert rows == ["kid mv:new", f"old {first}"]
    assert _docker(clean, "inspect", "-f", "{{.Config.Image}}", "old").stdout == "mv:orig\n"
    _docker(clean, "rm", "-f", "old", "kid")
    _docker(clean, "rmi", "mv:orig", "mv:new")


@needs_cli
def test_log_drivers_none_and_local(clean: Daemon) -> None:
    """``--log-driver none``: the output still reaches the attached client, nothing is
    kept, and ``logs`` says so in Docker's words; ``local`` keeps a log (Docker's local
    driver's rotation by default); others are refused by name."""
    r = _docker(clean, "run", "--name", "quiet", "--log-driver", "none", "default", "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    r = _docker(clean, "logs", "quiet")
    assert r.returncode == 1 and "configured logging driver does not support reading" in r.stderr
    logs = clean.root / "containers" / _docker(clean, "inspect", "-f", "{{.Id}}", "quiet").stdout
    assert not (logs.with_name(logs.name.strip()) / "logs").exists()
    r = _docker(clean, "run", "--name", "loc", "--log-driver", "local", "default", "echo", "kept")
    assert r.returncode == 0, r.stderr
    assert _docker(clean, "logs", "loc").stdout == "kept\n"
    config = _docker(clean, "inspect", "-f", "{{json .HostConfig.LogConfig}}", "loc").stdout
    assert json.loads(config) == {"Type": "local", "Config": {}}
    for args, words in [
        (["--log-driver", "awslogs"], "logging driver 'awslogs' is not supported by boxd"),
        (["--log-driver", "asdf"], "logger: no log driver named 'asdf' is registered"),
        (
            ["--log-driver", "none", "--log-opt", "max-size=1m"],
            "invalid logging opts for driver none",
        ),  # the CLI's own check
    ]:
        r = _docker(clean, "run", "--rm", *args, "default", "true")
        assert r.returncode == 125 and words in r.stderr, r.stderr
    assert _docker(clean, "rm", "quiet", "loc").returncode == 0


@needs_cli
def test_runtime_names(clean: Daemon) -> None:
    """runc, the name Docker's tools expect of the default runtime, is boxd's own: info
    shows it as the default, inspect echoes the name a container was run with (runc when
    none was given), and an unknown one is refused by name."""
    info = _docker(clean, "info", "-f", "{{.DefaultRuntime}} {{json .Runtimes}}").stdout
    default, _, runtimes = info.partition(" ")
    assert default == "runc" and sorted(json.loads(runtimes)) == ["boxd", "runc"]
    for args, name in [
        ((), "runc"),
        (("--runtime", "runc"), "runc"),
        (("--runtime", "boxd"), "boxd"),
    ]:
        cid = _docker(clean, "create", *args, "default", "true").stdout.strip()
        assert _docker(clean, "inspect", "-f", "{{.HostConfig.Runtime}}", cid).stdout == f"{name}\n"
    r = _docker(clean, "run", "--rm", "--runtime", "crun", "default", "true")
    assert r.returncode == 125 and "invalid --runtime 'crun': unknown runtime name" in r.stderr


@needs_cli
def test_isolation_and_attach_flags_are_kept_as_given(clean: Daemon) -> None:
    """``HostConfig.Isolation`` ("" or "default", in any case: Linux's one), ``UsernsMode`` and
    ``Config.AttachStdin/AttachStdout/AttachStderr`` are kept at create and shown back by
    inspect as given, as by Docker (inspect gave "" and three falses whatever was sent);
    boxctl's create (with -a too) and run set them as the docker CLI does."""
    fmt = (
        "{{.HostConfig.Isolation}} {{.Config.AttachStdin}} {{.Config.AttachStdout}} "
        "{{.Config.AttachStderr}}"
    )
    for args, shown in [
        ((), " false true true"),
        (("--isolation", "default"), "default false true true"),
        (("--isolation", "Default"), "Default false true true"),
        (("-i",), " true true true"),
        (("-a", "stderr"), " false false true"),
        (("-i", "-a", "stdout"), " true true false"),
        (("-a", "STDIN", "-a", "stderr"), " true false true"),
    ]:
        cid = _docker(clean, "create", *args, "default", "true").stdout.strip()
        assert _docker(clean, "inspect", "-f", fmt, cid).stdout == shown + "\n", args
        cid = clean.ctl("create", *args, "default", "true").stdout.strip()
        assert clean.ctl("inspect", "-f", fmt, cid).stdout == shown + "\n", args
    r = clean.ctl("create", "-a", "bogus", "default", "true", check=False)
    assert (r.returncode, r.stderr) == (
        125,
        "boxctl: invalid --attach 'bogus': use stdin, stdout or stderr\n",
    )
    cid = _docker(clean, "run", "-d", "-i", "default", "true").stdout.strip()
    assert _docker(clean, "inspect", "-f", fmt, cid).stdout == " false false false\n"
    clean.ctl("run", "--name", "fg", "-a", "stdout", "default", "true")
    assert clean.ctl("inspect", "-f", fmt, "fg").stdout == " false true false\n"
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{clean.docker_socket}")
    try:
        host = client.create_host_config(isolation="default", userns_mode="host")
        made = client.create_container("default", "true", stdin_open=True, host_config=host)
        got = client.inspect_container(made["Id"])
        assert got["HostConfig"]["Isolation"] == "default"
        assert got["HostConfig"]["UsernsMode"] == "host"  # Ansible compares it ("" before)
        flags = {k: got["Config"][k] for k in ("AttachStdin", "AttachStdout", "AttachStderr")}
        assert flags == {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True}
    finally:
        client.close()


def test_recreate_from_inspect_keeps_the_user_namespace() -> None:
    """A container of ``--isolate-user`` is inspected with ``UsernsMode: private`` (Podman's
    word), which create takes back: an updater that recreates a container from its inspect
    (watchtower: its Config, HostConfig and networks posted to create) kept everything but
    the user namespace, shown as "" and so dropped, and the new container's root was the
    host's.  boxctl takes ``--userns private`` alike; another mode is refused by name."""
    docker = pytest.importorskip("docker")
    top = Path(tempfile.mkdtemp(prefix="boxd-userns-api-"))
    try:
        os.chmod(top, 0o711)  # the daemon's root: a namespaced root must traverse it
        with running_daemon(top) as daemon:
            _recreate_keeps_the_user_namespace(daemon, docker)
    finally:
        shutil.rmtree(top)


def _recreate_keeps_the_user_namespace(daemon: Daemon, docker: Any) -> None:
    uid_map = ("default", "cat", "/proc/self/uid_map")
    daemon.ctl("create", "--name", "old", "--isolate-user", *uid_map)
    client = docker.APIClient(base_url=f"unix://{daemon.docker_socket}", version="auto")
    try:
        info = client.inspect_container("old")
        assert info["HostConfig"]["UsernsMode"] == "private"
        body = {**info["Config"], "HostConfig": info["HostConfig"]}
        body["NetworkingConfig"] = {"EndpointsConfig": info["NetworkSettings"]["Networks"]}
        r = client.post(client._url("/containers/create"), params={"name": "new"}, json=body)
        assert r.status_code == 201, r.text
        client.start("new")
        assert client.wait("new")["StatusCode"] == 0
        shown = client.logs("new").decode().split()  # root inside, an unprivileged id outside
        assert shown[0] == "0" and shown[1] != "0", shown
        assert client.inspect_container("new")["HostConfig"]["UsernsMode"] == "private"
        plain = client.create_container("default", "true")
        assert client.inspect_container(plain["Id"])["HostConfig"]["UsernsMode"] == ""
        body = {"Image": "default", "Cmd": ["true"], "HostConfig": {"UsernsMode": "keep-id"}}
        r = client.post(client._url("/containers/create"), json=body)
        assert r.status_code == 400 and "invalid --userns 'keep-id'" in r.json()["message"]
    finally:
        client.close()
    shown = daemon.ctl("run", "--rm", "--userns", "private", *uid_map).stdout.split()
    assert shown[0] == "0" and shown[1] != "0", shown
    r = daemon.ctl("run", "--rm", "--userns", "keep-id", "default", "true", check=False)
    assert r.returncode != 0 and "invalid --userns 'keep-id'" in r.stderr


def test_mounts_show_paths_cleaned(clean: Daemon, tmp_path: Path) -> None:
    """Inspect's and the list's ``Mounts`` show a bind's source and each destination
    cleaned, as Docker's (Go's path.Clean), and ``--filter volume=`` finds them so: a tool
    that looks for its mount by path (``/var/run/docker.sock``) got ``/x//y/`` as given.
    ``HostConfig.Binds`` stays as given."""
    docker = pytest.importorskip("docker")
    bind = f"{tmp_path}/./:/x//y/"
    host = {"Binds": [bind], "Mounts": [{"Type": "tmpfs", "Target": "/t/"}]}
    client = docker.APIClient(base_url=f"unix://{clean.docker_socket}", version="auto")
    try:
        r = client.post(
            client._url("/containers/create"),
            json={"Image": "default", "Cmd": ["true"], "HostConfig": host},
        )
        assert r.status_code == 201, r.text
        made = r.json()["Id"]
        got = client.inspect_container(made)
        shown = sorted((m["Type"], m["Source"], m["Destination"]) for m in got["Mounts"])
        assert shown == [("bind", str(tmp_path), "/x/y"), ("tmpfs", "", "/t")]
        assert got["HostConfig"]["Binds"] == [bind]
        listed = client.containers(all=True, filters={"volume": "/x/y"})
        assert [c["Id"] for c in listed] == [made]
        shown = sorted((m["Type"], m["Source"], m["Destination"]) for m in listed[0]["Mounts"])
        assert ("bind", str(tmp_path), "/x/y") in shown
        assert [c["Id"] for c in client.containers(all=True, filters={"volume": str(tmp_path)})]
    finally:
        client.close()


@needs_cli
def test_security_opts_that_ask_for_what_boxd_does_anyway(clean: Daemon) -> None:
    """``--security-opt apparmor=unconfined`` and ``label=disable`` (guides for FUSE or
    Docker in Docker carry them) ask for what boxd does anyway, having no AppArmor and no
    SELinux labels: taken, as dockerd takes them on a host without either.  A profile or
    label to apply is refused, named: boxd could not give it."""
    for opt in ("apparmor=unconfined", "apparmor:unconfined", "label=disable", "label:disable"):
        r = _docker(clean, "run", "--rm", "--security-opt", opt, "default", "true")
        assert r.returncode == 0, (opt, r.stderr)
    for opt, words in (
        ("apparmor=docker-default", "boxd has no AppArmor profiles"),
        ("label=type:svirt_apache_t", "boxd has no SELinux labels"),
    ):
        r = _docker(clean, "run", "--rm", "--security-opt", opt, "default", "true")
        assert r.returncode == 125 and f"invalid SecurityOpt '{opt}': {words}" in r.stderr


@needs_cli
def test_security_opts_are_shown_back_as_given(clean: Daemon) -> None:
    """HostConfig.SecurityOpt is shown back as given, as by Docker: it showed a seccomp
    setting alone, so ``--security-opt no-new-privileges`` was not there for an audit
    (docker-bench-security's check reads it) to find.  boxctl's alike."""
    opts = ("no-new-privileges", "seccomp=unconfined", "label:disable")
    args = [word for opt in opts for word in ("--security-opt", opt)]
    fmt = "{{json .HostConfig.SecurityOpt}}"
    cid = _docker(clean, "create", *args, "default", "true").stdout.strip()
    assert json.loads(_docker(clean, "inspect", "-f", fmt, cid).stdout) == list(opts)
    boxctl_args = args[:4]  # boxctl has no SELinux option to take
    cid = clean.ctl("create", *boxctl_args, "default", "true").stdout.strip()
    assert json.loads(clean.ctl("inspect", "-f", fmt, cid).stdout) == list(opts[:2])
    cid = _docker(clean, "create", "default", "true").stdout.strip()
    assert _docker(clean, "inspect", "-f", fmt, cid).stdout == "null\n"


@needs_cli
def test_system_paths_unconfined_and_the_apis_own_lists(clean: Daemon) -> None:
    """``--security-opt systempaths=unconfined`` (the docker CLI sends it as empty
    MaskedPaths and ReadonlyPaths, which boxd ignored: the masks stayed) unmasks /proc;
    docker-py's own lists replace Docker's, and inspect shows what applies."""
    probe = "grep -c ' /proc/sys \\| /proc/timer_list ' /proc/self/mountinfo"
    masked = _docker(clean, "run", "--rm", "default", "sh", "-c", probe)
    assert masked.stdout == "2\n", masked.stderr
    open_ = _docker(
        clean, "run", "--rm", "--security-opt", "systempaths=unconfined", "default", "sh", "-c",
        probe,
    )  # fmt: skip
    assert open_.stdout == "0\n", open_.stderr
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{clean.docker_socket}", version="1.41")
    try:
        host = client.create_host_config(security_opt=[])
        host["MaskedPaths"], host["ReadonlyPaths"] = ["/proc/version"], []
        c = client.create_container(
            "default", ["sh", "-c", "wc -c < /proc/version; " + probe], host_config=host
        )
        client.start(c)
        assert client.wait(c, timeout=30)["StatusCode"] == 1  # grep found neither
        assert client.logs(c).decode().split() == ["0", "0"]
        shown = client.inspect_container(c)["HostConfig"]
        assert (shown["MaskedPaths"], shown["ReadonlyPaths"]) == (["/proc/version"], [])
        host["MaskedPaths"] = ["proc/version"]
        with pytest.raises(docker.errors.APIError) as info:
            client.create_container("default", ["true"], host_config=host)
        assert "invalid MaskedPaths entry 'proc/version'" in str(info.value)
    finally:
        client.close()


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    t = Tmux(f"boxd-dockerapi-{os.getpid()}", tmp_path / "exit-status")
    try:
        yield t
    finally:
        t.kill()


@needs_cli
def test_run_it_typing_resize_and_detach(clean: Daemon, tmux: Tmux) -> None:
    env = (
        f"DOCKER_HOST=unix://{clean.docker_socket} "
        f"DOCKER_CONFIG={clean.root.parent / 'docker-config'}"
    )
    tmux.start(f"env {env} {DOCKER} run -it --name tty default sh")
    tmux.wait_for(lambda s: "#" in s)
    tmux.keys("echo typed-$((6*7)); stty size", "Enter")
    tmux.wait_for(lambda s: "typed-42" in s and "30 100" in s)
    tmux.resize(120, 40)
    tmux.keys("C-p", "C-q")
    assert tmux.wait_exit() == 0
    assert clean.inspect("tty")["state"]["status"] == "running"
    tmux.start(f"env {env} {DOCKER} attach tty")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "#" in s)
    tmux.keys("exit 6", "Enter")
    assert tmux.wait_exit() == 6
    # exec -it into a running TTY container, in a second session.
    _docker(clean, "run", "-d", "-it", "--name", "tty2", "default", "sh")
    # The CLI sends the size right after the start: read first, as a person types.
    script = "read code; stty size; read more; exit $code"
    tmux.start(f"env {env} {DOCKER} exec -it tty2 sh -c {shlex.quote(script)}")
    tmux.keys("9", "Enter")
    tmux.wait_for(lambda s: "30 100" in s)
    tmux.keys("Enter")
    assert tmux.wait_exit() == 9


def test_console_size_at_create_and_exec_create(clean: Daemon) -> None:
    """HostConfig.ConsoleSize ([height, width], API 1.42) is the terminal's from the first
    instruction, at each start; an exec's ConsoleSize the same.  [0, 0] is unset (24x80),
    as inspect shows it; before 1.42 it is ignored, as by Docker."""

    def create(version: str, size: object) -> str:
        body = {"Image": "default", "Cmd": ["stty", "size"], "Tty": True}
        if size is not None:
            body["HostConfig"] = {"ConsoleSize": size}
        status, _, data = _call(
            clean, "POST", f"/v{version}/containers/create", json.dumps(body).encode()
        )
        assert status == 201, data
        cid: str = json.loads(data)["Id"]
        return cid

    for version, size, seen in (
        ("1.44", [37, 123], [37, 123]),
        ("1.44", [0, 0], [0, 0]),
        ("1.44", None, [0, 0]),
        ("1.41", [37, 123], [0, 0]),
    ):
        cid = create(version, size)
        for _ in range(2):  # the size is the container's, at each start
            assert _call(clean, "POST", f"/containers/{cid}/start")[0] == 204
            assert json.loads(_call(clean, "POST", f"/containers/{cid}/wait")[2])["StatusCode"] == 0
        expected = "37 123" if seen != [0, 0] else "24 80"
        assert clean.ctl("logs", cid).stdout.split("\n")[:2] == [expected, expected]
        shown = json.loads(_call(clean, "GET", f"/containers/{cid}/json")[2])
        assert shown["HostConfig"]["ConsoleSize"] == seen
    sleeper = json.dumps({"Image": "default", "Cmd": ["sleep", "1000"], "Tty": True}).encode()
    status, _, data = _call(clean, "POST", "/containers/create?name=x", sleeper)
    assert status == 201 and _call(clean, "POST", "/containers/x/start")[0] == 204
    made = json.dumps(
        {"Cmd": ["stty", "size"], "Tty": True, "AttachStdout": True, "ConsoleSize": [41, 99]}
    ).encode()
    status, _, data = _call(clean, "POST", "/containers/x/exec", made)
    assert status == 201, data
    exec_id = json.loads(data)["Id"]
    status, _, out = _call(clean, "POST", f"/exec/{exec_id}/start", b'{"Tty":true}')
    assert (status, out) == (200, b"41 99\r\n")
    for bad, words in (
        ([-1, 99], "invalid body.ConsoleSize [-1, 99]: height and width must be between"),
        ([41], "invalid body.ConsoleSize [41]: expected [height, width], two integers"),
    ):
        made = json.dumps({"Cmd": ["true"], "Tty": True, "ConsoleSize": bad}).encode()
        status, _, data = _call(clean, "POST", "/containers/x/exec", made)
        assert status == 400 and words in json.loads(data)["message"], data


@needs_cli
def test_the_docker_cli_gives_its_terminals_size_from_the_start(clean: Daemon, tmux: Tmux) -> None:
    """docker run -it and exec -it send ConsoleSize: the first ``stty size`` in the
    container is the pane's, not 24x80 until the CLI's resize."""
    env = (
        f"DOCKER_HOST=unix://{clean.docker_socket} "
        f"DOCKER_CONFIG={clean.root.parent / 'docker-config'}"
    )
    script = shlex.quote("stty size; sleep 1; stty size")
    run = f"env {env} {DOCKER} run -it --name sz default sh -c {script}"
    host, *seen = _sized(tmux, run, 2, width=123, height=37)
    assert seen == [host, host]
    # Sent by the CLI at create, not won in a race with its resize.
    shown = json.loads(_docker(clean, "inspect", "sz").stdout)[0]
    assert shown["HostConfig"]["ConsoleSize"] == [37, 123]
    _docker(clean, "run", "-d", "-t", "--name", "sz2", "default", "sleep", "1000")
    exec_ = f"env {env} {DOCKER} exec -it sz2 stty size"
    host, *seen = _sized(tmux, exec_, 1, width=97, height=31)
    assert seen == [host]


@needs_cli
def test_events_followed_in_order(clean: Daemon) -> None:
    since = str(int(time.time()))
    fmt = "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"
    argv = [DOCKER or "docker", "events", "--since", since, "--filter", "container=evt"]
    with subprocess.Popen(
        [*argv, "--format", fmt], stdout=subprocess.PIPE, text=True, env=docker_env(clean)
    ) as follow:
        assert follow.stdout is not None
        assert (
            _docker(
                clean, "run", "--rm", "--name", "evt", "default", "sh", "-c", "exit 3"
            ).returncode
            == 3
        )
        lines = [follow.stdout.readline() for _ in range(5)]
        follow.terminate()
    assert [line.replace("<no value>", "").split() for line in lines] == [
        ["create", "evt"],
        ["attach", "evt"],
        ["start", "evt"],
        ["die", "evt", "3"],
        ["destroy", "evt"],
    ]
    # The container filter takes a prefix of the name too, as Docker's (its FuzzyMatch).
    # FuzzyMatch takes a prefix of the ID as well: "ev" cannot begin one, "e" could
    # (another test's container in the same second).
    wanted = {"container": ["ev"]}
    query = urllib.parse.urlencode(
        {"since": since, "until": time.time(), "filters": json.dumps(wanted)}
    )
    status, _, data = _call(clean, "GET", f"/events?{query}")
    names = {json.loads(line)["Actor"]["Attributes"]["name"] for line in data.splitlines()}
    assert (status, names) == (200, {"evt"})


def test_events_until_alone_and_a_terminals_resize(clean: Daemon) -> None:
    """As dockerd: ``events --until`` alone gives the kept events up to then (it gave
    none: moby's TestEventsCommit and others), a container's terminal resized is a
    ``resize`` event with its size, and a ``since`` after the ``until`` is refused."""
    run = _docker(clean, "run", "-d", "-t", "--name", "rsz", "default", "sleep", "30")
    cid = run.stdout.strip()
    status, _, _ = _call(clean, "POST", f"/containers/{cid}/resize?h=40&w=100")
    assert status == 200
    _docker(clean, "rm", "-f", cid)
    fmt = "{{.Action}} {{.Actor.Attributes.height}}x{{.Actor.Attributes.width}}"
    argv = ["events", "-f", f"container={cid}", "--until", f"{time.time():.9f}"]
    actions = _docker(clean, *argv, "--format", fmt).stdout.splitlines()
    assert "resize 40x100" in actions and actions[-1].startswith("destroy"), actions
    status, _, body = _call(clean, "GET", "/events?since=20&until=10")
    assert status == 400 and b"`since` time (20) cannot be after `until` time (10)" in body


def test_an_execs_events_carry_the_id_its_client_was_given(clean: Daemon) -> None:
    """exec_create, exec_start and exec_die name the exec by the id its create answered,
    as dockerd's do (moby's TestEventsExecDie): boxd's carried a new id of their own, so a
    client could not tell which of its execs had ended."""
    since = time.time()
    body = json.dumps({"Image": "default", "Cmd": ["sleep", "60"]}).encode()
    assert _call(clean, "POST", "/containers/create?name=evx", body)[0] == 201
    assert _call(clean, "POST", "/containers/evx/start")[0] == 204
    made = {}
    for detach in (True, False):
        body = json.dumps({"Cmd": ["true"], "AttachStdout": not detach}).encode()
        exec_id = json.loads(_call(clean, "POST", "/containers/evx/exec", body)[2])["Id"]
        start = json.dumps({"Detach": detach}).encode()
        assert _call(clean, "POST", f"/exec/{exec_id}/start", start)[0] == 200
        made[exec_id] = detach

    def ended() -> bool:
        states = [json.loads(_call(clean, "GET", f"/exec/{i}/json")[2]) for i in made]
        return not any(state["Running"] for state in states)

    until(ended, "the execs' ends")
    wanted = {"container": ["evx"], "event": ["exec_create", "exec_start", "exec_die"]}
    query = urllib.parse.urlencode(
        {"since": since, "until": time.time() + 1, "filters": json.dumps(wanted)}
    )
    _, _, data = _call(clean, "GET", f"/events?{query}")
    seen: dict[str, list[str]] = {}
    for line in data.splitlines():
        event = json.loads(line)
        seen.setdefault(event["Actor"]["Attributes"]["execID"], []).append(
            event["Action"].split(":")[0]
        )
    assert seen == {i: ["exec_create", "exec_start", "exec_die"] for i in made}
    assert _call(clean, "DELETE", "/containers/evx?force=1")[0] == 204


@needs_cli
def test_an_ambiguous_id_prefix_is_named_as_docker_names_it(clean: Daemon) -> None:
    """A prefix of several containers' ids names none of them, in Docker's words and
    status (400): ``docker rm -f`` took the 404 it got for a missing container and
    succeeded, ``docker inspect`` and ``boxctl inspect`` went on to look for an image."""
    made = [_docker(clean, "create", "default", "true").stdout.strip() for _ in range(17)]
    firsts = [cid[0] for cid in made]
    shared = next(c for c in firsts if firsts.count(c) > 1)  # 17 ids, 16 hex digits
    words = f"multiple IDs found with provided prefix: {shared}"
    for r in (
        _docker(clean, "inspect", shared),
        _docker(clean, "rm", "-f", shared),
        clean.ctl("inspect", shared, check=False),
        clean.ctl("inspect", "--type", "container", shared, check=False),
    ):
        assert r.returncode == 1 and words in r.stderr, (r.args, r.stderr)
    status, _, body = _call(clean, "GET", f"/containers/{shared}/json")
    assert (status, json.loads(body)["message"]) == (400, words)
    assert sorted(_docker(clean, "ps", "-aq", "--no-trunc").stdout.split()) == sorted(made)


@needs_cli
def test_graph_driver_data_names_the_root_overlays_directories(clean: Daemon) -> None:
    """``GraphDriver.Data`` (null before; moby's description has it never null): the
    image's directories (``LowerDir``), what the container wrote (``UpperDir``),
    ``WorkDir`` and, while it runs, where the host sees its root (``MergedDir``), in both
    clients' inspect."""
    cid = _docker(clean, "run", "-d", "default", "sh", "-c", "echo hi > /made; sleep 300")
    cid.check_returncode()
    name = cid.stdout.strip()
    fmt = "{{json .GraphDriver}}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        driver = json.loads(_docker(clean, "inspect", "-f", fmt, name).stdout)
        if (Path(driver["Data"]["UpperDir"]) / "made").exists():
            break
        time.sleep(0.05)
    assert driver == json.loads(clean.ctl("inspect", "-f", fmt, name).stdout)
    data = driver["Data"]
    assert driver["Name"] == "overlay2" and list(data) == [
        "LowerDir", "MergedDir", "UpperDir", "WorkDir"
    ]  # fmt: skip
    assert (Path(data["UpperDir"]) / "made").read_text() == "hi\n"
    assert Path(data["UpperDir"]).is_relative_to(clean.root) and Path(data["WorkDir"]).is_dir()
    assert all(Path(lower).is_dir() for lower in data["LowerDir"].split(":"))
    assert (Path(data["MergedDir"]) / "made").read_text() == "hi\n"
    _docker(clean, "stop", "-t", "0", name).check_returncode()
    stopped = json.loads(_docker(clean, "inspect", "-f", fmt, name).stdout)["Data"]
    assert "MergedDir" not in stopped and stopped["UpperDir"] == data["UpperDir"]
    _docker(clean, "rm", name).check_returncode()


@needs_cli
def test_log_path_is_the_json_file_drivers_file(clean: Daemon) -> None:
    """``LogPath``: the file the json-file driver writes, in both clients' inspect (it
    was empty); none for ``local`` (Docker keeps its file out of the API) and ``none``."""
    r = _docker(clean, "run", "--name", "lp", "default", "echo", "logged")
    assert r.returncode == 0, r.stderr
    path = _docker(clean, "inspect", "-f", "{{.LogPath}}", "lp").stdout.strip()
    assert path == clean.ctl("inspect", "-f", "{{.LogPath}}", "lp").stdout.strip()
    assert path.startswith(str(clean.root)) and "logged" in Path(path).read_text()
    for driver in ("local", "none"):
        made = _docker(clean, "create", "--log-driver", driver, "default", "true")
        cid = made.stdout.strip()
        assert _docker(clean, "inspect", "-f", "{{.LogPath}}", cid).stdout == "\n", driver
        assert clean.ctl("inspect", "-f", "{{.LogPath}}", cid).stdout == "\n", driver


@needs_cli
def test_etc_paths_are_the_files_the_container_reads(clean: Daemon, tmp_path: Path) -> None:
    """``HostnamePath``, ``HostsPath`` and ``ResolvConfPath``: where the container's own
    /etc/hostname, /etc/hosts and /etc/resolv.conf are on the host (they were empty), in
    both clients' inspect; a file bound there (``-v``) is shown as its own, as Docker's."""
    made = _docker(clean, "run", "--name", "ep", "-h", "eph", "--add-host", "marker:192.0.2.8",
                   "default", "cat", "/etc/hosts", "/etc/resolv.conf")  # fmt: skip
    assert made.returncode == 0, made.stderr
    fields = "{{.HostnamePath}} {{.HostsPath}} {{.ResolvConfPath}}"
    paths = _docker(clean, "inspect", "-f", fields, "ep").stdout.split()
    assert paths == clean.ctl("inspect", "-f", fields, "ep").stdout.split()
    hostname, hosts, resolv = (Path(p) for p in paths)
    assert all(str(p).startswith(str(clean.root)) for p in paths)
    assert hostname.read_text() == "eph\n"
    assert hosts.read_text() + resolv.read_text() == made.stdout
    assert "192.0.2.8\tmarker" in made.stdout
    mine = tmp_path / "hosts"
    mine.write_text("127.0.0.1 localhost\n")
    _docker(clean, "create", "--name", "bound", "-v", f"{mine}:/etc/hosts", "default", "true")
    assert _docker(clean, "inspect", "-f", fields, "bound").stdout == f" {mine} \n"
    # A root directory removed since its container was made: inspect still answers.
    root = tmp_path / "root"
    root.mkdir()
    (root / "x").write_text("")
    (root / "x").chmod(0o755)
    clean.ctl("create", "--name", "rootless", str(root), "/x")
    shutil.rmtree(root)
    assert clean.ctl("inspect", "-f", fields, "rootless").stdout == "  \n"


@needs_cli
def test_events_of_networks_and_volumes_through_the_cli(clean: Daemon) -> None:
    """``docker events --filter type=...`` sees a network's and a volume's events in
    Docker's shape: the Actor's ID and attributes, none of a container's older fields."""
    since = str(time.time())
    net = _docker(clean, "network", "create", "evnet").stdout.strip()
    _docker(clean, "volume", "create", "evvol")
    r = _docker(clean, "run", "--rm", "--network", "evnet", "-v", "evvol:/v", "default", "true")
    assert r.returncode == 0, r.stderr
    _docker(clean, "network", "rm", "evnet")
    _docker(clean, "volume", "rm", "evvol")
    window = ("--since", since, "--until", str(time.time()), "--format", "{{json .}}")
    found = {}
    for kind in ("network", "volume"):
        lines = _docker(clean, "events", *window, "--filter", f"type={kind}").stdout.splitlines()
        found[kind] = [json.loads(line) for line in lines]
    assert [(e["Action"], e["Actor"]["ID"]) for e in found["network"]] == [
        (action, net) for action in ("create", "connect", "disconnect", "destroy")
    ]
    assert found["network"][1]["Actor"]["Attributes"]["name"] == "evnet"
    assert all(e["Type"] == "network" and "status" not in e for e in found["network"])
    assert [(e["Action"], e["Actor"]["ID"]) for e in found["volume"]] == [
        (action, "evvol") for action in ("create", "mount", "unmount", "destroy")
    ]
    r = _docker(clean, "events", *window, "--filter", "type=box")
    assert r.returncode == 1 and "invalid filter 'type=box'" in r.stderr, r.stderr


# ---- docker-py ------------------------------------------------------------------------


def test_network_disabled_gives_a_loopback_only(clean: Daemon) -> None:
    """docker-py's ``network_disabled`` (Config.NetworkDisabled), which boxd ignored: the
    container that asked for no network was put on the bridge."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        listed = client.containers.run(
            "default", ["ls", "/sys/class/net"], network_disabled=True, remove=True
        )
        assert listed == b"lo\n"
        with pytest.raises(docker.errors.APIError) as info:
            client.containers.create(
                "default", ["true"], network_disabled=True, network_mode="host"
            )
        assert "Config.NetworkDisabled conflicts with HostConfig.NetworkMode 'host'" in str(
            info.value
        )
    finally:
        client.close()


# The keys of HostConfig that Docker's inspect always has (those not marked omitempty in
# moby's api/types/container/hostconfig.go).
DOCKER_HOST_CONFIG_KEYS = {
    *("Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy"),
    *("AutoRemove", "VolumeDriver", "VolumesFrom", "ConsoleSize", "CapAdd", "CapDrop"),
    *("CgroupnsMode", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode"),
    *("Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts"),
    *("ReadonlyRootfs", "SecurityOpt", "UTSMode", "UsernsMode", "ShmSize", "Isolation"),
    *("CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice"),
    *("BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps"),
    *("BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod"),
    *("CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules"),
    *("DeviceRequests", "MemoryReservation", "MemorySwap", "MemorySwappiness"),
    *("OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps"),
    "IOMaximumBandwidth",
}


@needs_cli
def test_inspect_has_every_key_of_dockers_host_config(clean: Daemon) -> None:
    """Every HostConfig key Docker's inspect always has is there: ``Dns``, ``DnsOptions``
    and ``DnsSearch`` were missing (``attrs["HostConfig"]["Dns"]`` a KeyError in docker-py,
    ``{{.HostConfig.Dns}}`` "<no value>"), and so were the keys of what boxd has not."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        c = client.containers.create(
            "default", ["true"], dns=["10.9.9.9"], dns_search=["example.org"], dns_opt=["ndots:2"]
        )
        host = c.attrs["HostConfig"]
        assert not DOCKER_HOST_CONFIG_KEYS - set(host), DOCKER_HOST_CONFIG_KEYS - set(host)
        assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (
            ["10.9.9.9"], ["example.org"], ["ndots:2"]
        )  # fmt: skip
        fmt = "{{json .HostConfig.Dns}} {{.HostConfig.ContainerIDFile}}|{{.HostConfig.Cgroup}}|"
        assert _docker(clean, "inspect", "-f", fmt, c.id).stdout == '["10.9.9.9"] ||\n'
        cid = _docker(clean, "create", "default", "true").stdout.strip()
        assert _docker(clean, "inspect", "-f", fmt, cid).stdout == "[] ||\n"
    finally:
        client.close()


@needs_cli
def test_binds_and_volumes_are_shown_as_given(clean: Daemon, tmp_path: Path) -> None:
    """HostConfig.Binds is shown as the client sent it and Config.Volumes holds the
    anonymous volumes asked for and the image's VOLUMEs, as by Docker: Binds listed every
    volume (an anonymous one by its generated name, ``:rw`` dropped) and Config.Volumes
    was null, so a tool that compares what it asked for (Ansible's docker_container)
    found a difference at every run.  boxctl's -v alike (a relative source made absolute,
    as the docker CLI sends it)."""
    src = _docker(clean, "create", "default", "true").stdout.strip()
    assert _docker(clean, "commit", "-c", "VOLUME /iv", src, "withvol:1").returncode == 0
    (tmp_path / "rel").mkdir()
    fmt = "{{json .HostConfig.Binds}} {{json .Config.Volumes}} {{len .Mounts}}"
    vols = ("-v", "/data", "-v", "named:/n:ro", "-v", f"{tmp_path}:/b:rw")
    try:
        cid = _docker(clean, "create", *vols, "withvol:1", "true").stdout.strip()
        binds, declared, mounts = _docker(clean, "inspect", "-f", fmt, cid).stdout.split()
        assert sorted(json.loads(binds)) == sorted(["named:/n:ro", f"{tmp_path}:/b:rw"])
        assert (json.loads(declared), mounts) == ({"/data": {}, "/iv": {}}, "4")
        # A commit keeps them as the image's volumes, as Docker's (it kept the image's).
        assert _docker(clean, "commit", cid, "committed-vol:1").returncode == 0
        image = _docker(clean, "inspect", "-f", "{{json .Config.Volumes}}", "committed-vol:1")
        assert json.loads(image.stdout) == {"/data": {}, "/iv": {}}
        r = subprocess.run(  # from tmp_path: ./rel is its
            [sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "create",
             "-v", "./rel:/r", "-v", "/data", "withvol:1", "true"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=tmp_path, check=True,
        )  # fmt: skip
        shown = clean.ctl("inspect", "-f", fmt, r.stdout.strip()).stdout
        assert shown == f'["{tmp_path}/rel:/r"] {{"/data":{{}},"/iv":{{}}}} 3\n'
        # Nothing given: no binds, the image's volume declared.
        for run in (lambda *a: _docker(clean, *a), clean.ctl):
            cid = run("create", "withvol:1", "true").stdout.strip()
            assert run("inspect", "-f", fmt, cid).stdout == 'null {"/iv":{}} 1\n'
    finally:
        clean.remove_containers()
        _docker(clean, "rmi", "withvol:1", "committed-vol:1")
        _docker(clean, "volume", "prune", "-af")


def test_system_df_gives_the_networks_ids_as_the_list_does(clean: Daemon) -> None:
    """``system/df``'s containers are the list's rows: their endpoints' NetworkID was the
    network's name ("bridge") there, its id in the list and in inspect."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        client.containers.create("default", ["true"], name="dfc")
        bridge = client.networks.get("bridge").id
        [row] = client.df()["Containers"]
        assert row["NetworkSettings"]["Networks"]["bridge"]["NetworkID"] == bridge
        [listed] = client.api.containers(all=True)
        assert listed["NetworkSettings"] == row["NetworkSettings"]
    finally:
        client.close()


@needs_cli
def test_mounts_are_shown_where_they_were_given(clean: Daemon, tmp_path: Path) -> None:
    """``--mount`` (HostConfig.Mounts) is shown back as HostConfig.Mounts, ``-v`` as Binds
    and ``--tmpfs`` as Tmpfs, as by Docker, and a tmpfs mount is among the container's
    Mounts (every mount was shown among Binds or Tmpfs, and a tmpfs mount not at all).
    boxctl's ``--mount`` alike."""
    src = str(tmp_path)
    mounts = (
        *("--mount", "type=volume,src=given-vol,dst=/v,volume-nocopy"),
        *("--mount", f"type=bind,src={src},dst=/b,ro"),
        *("--mount", "type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=700"),
    )
    plain = ("-v", "plain-vol:/data", "--tmpfs", "/t2")
    fmt = "{{json .HostConfig.Mounts}}|{{json .HostConfig.Binds}}|{{json .HostConfig.Tmpfs}}"
    given = [
        {
            "Type": "volume",
            "Source": "given-vol",
            "Target": "/v",
            "VolumeOptions": {"NoCopy": True},
        },
        {"Type": "bind", "Source": src, "Target": "/b", "ReadOnly": True},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 2 << 20, "Mode": 0o700}},
    ]
    cid = _docker(clean, "create", *mounts, *plain, "default", "true").stdout.strip()
    boxctl_id = clean.ctl("create", *mounts, *plain, "default", "true").stdout.strip()
    try:
        for shown in (
            _docker(clean, "inspect", "-f", fmt, cid).stdout,
            clean.ctl("inspect", "-f", fmt, boxctl_id).stdout,
        ):
            host_mounts, binds, tmpfs = (json.loads(part) for part in shown.split("|"))
            assert host_mounts == given
            assert (binds, tmpfs) == (["plain-vol:/data"], {"/t2": ""})
        rows = json.loads(_docker(clean, "inspect", "-f", "{{json .Mounts}}", cid).stdout)
        assert [(m["Type"], m["Destination"], m["RW"]) for m in rows] == [
            *(("volume", "/data", True), ("volume", "/v", True), ("bind", "/b", False)),
            ("tmpfs", "/t", True),
        ]
    finally:
        clean.remove_containers()
        _docker(clean, "volume", "rm", "given-vol", "plain-vol")


@needs_cli
def test_stats_count_a_containers_network_traffic(clean: Daemon) -> None:
    """NET I/O: the counters of the container's interfaces but lo (it sends 5000 bytes to
    its gateway); none for a container on the host's network, as from Docker."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        c = client.containers.run("default", ["sleep", "60"], detach=True, name="talker")
        c.reload()  # its address and gateway, given at start
        gateway = c.attrs["NetworkSettings"]["Gateway"]
        # Twice: the first may wait for the gateway's ARP answer, and go with the process.
        send = (
            "import socket, time; s = socket.socket(2, 2)\n"
            f"for _ in range(2): s.sendto(bytes(5000), ('{gateway}', 9)); time.sleep(0.2)"
        )
        assert c.exec_run(["python3", "-c", send]).exit_code == 0
        networks = c.stats(stream=False)["networks"]
        assert list(networks) == ["eth0"]
        assert networks["eth0"]["tx_bytes"] >= 5000 and networks["eth0"]["tx_packets"] >= 4
        shown = _docker(clean, "stats", "--no-stream", "--format", "{{.NetIO}}", "talker")
        assert shown.stdout.strip().split(" / ")[1] != "0B"
        native = clean.ctl("stats", "--no-stream", "--format", "json", "talker").stdout
        assert json.loads(native)[0]["net_tx"] >= 5000
        host = client.containers.run("default", ["sleep", "60"], detach=True, network_mode="host")
        assert "networks" not in host.stats(stream=False)
    finally:
        client.close()


def test_stats_stream_ends_when_the_container_is_removed(clean: Daemon) -> None:
    """A stats stream (a dashboard's, Portainer's) ends, complete, when its container is
    removed, as Docker's does: it was cut off mid-response, and docker-py's loop over
    ``stats(stream=True)`` raised "Connection broken" instead of ending."""
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{clean.docker_socket}", timeout=60)
    try:
        made = client.create_container("default", ["sleep", "300"])
        client.start(made)
        items = client.stats(made, decode=True, stream=True)
        assert next(items)["id"] == made["Id"]
        client.remove_container(made, force=True)
        rest = list(items)  # ends: no exception, no wait for the timeout
        assert all(item["id"] == made["Id"] for item in rest)
    finally:
        client.close()


def test_stats_memory_as_docker_counts_it(clean: Daemon) -> None:
    """The cgroup's memory.stat is in memory_stats.stats, where the docker CLI reads the
    inactive file cache it takes off the usage; boxctl stats takes it off the same way."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        write = "dd if=/dev/zero of=/cache bs=1M count=32 2>/dev/null; touch /written; sleep 60"
        c = client.containers.run("default", ["sh", "-c", write], detach=True, name="cached")
        deadline = time.monotonic() + 30
        while c.exec_run(["test", "-e", "/written"]).exit_code != 0:
            assert time.monotonic() < deadline, "dd never ended"
            time.sleep(0.1)
        memory = c.stats(stream=False)["memory_stats"]
        stat = memory["stats"]
        inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
        assert inactive is not None and memory["usage"] >= 32 << 20
        native = json.loads(clean.ctl("stats", "--no-stream", "--format", "json", "cached").stdout)
        assert native[0]["memory_usage"] <= memory["usage"] - inactive + (4 << 20)
        # Where cpuacct is v1's, each CPU's time too (percpu_usage, which scripts count
        # CPUs by: moby's integration-cli TestAPIStatsNoStreamGetCpu), as dockerd gives it.
        usage = c.stats(stream=False)["cpu_stats"]["cpu_usage"]
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        if any("cpuacct" in line.split(":")[1].split(",") for line in lines):
            assert len(usage["percpu_usage"]) >= 1 and sum(usage["percpu_usage"]) > 0
        else:
            assert "percpu_usage" not in usage
    finally:
        client.close()


@pytest.mark.parametrize(
    ("method", "path", "status", "phrase"),
    [
        ("GET", "/_ping", 200, "OK"),
        ("GET", "/containers/nope/json", 404, "Not Found"),
        ("POST", "/containers/create", 400, "Bad Request"),
        ("GET", "/swarm", 503, "Service Unavailable"),
    ],
)
def test_status_lines_carry_the_reason_phrases(
    clean: Daemon, method: str, path: str, status: int, phrase: str
) -> None:
    """As dockerd's Go net/http writes them: clients quote them in their errors."""
    conn = UnixHTTP(clean.docker_socket)
    try:
        conn.request(method, path, body=b"{" if method == "POST" else None)
        r = conn.getresponse()
        assert (r.status, r.reason) == (status, phrase)
    finally:
        conn.close()


def test_docker_py(clean: Daemon) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        started = time.time()
        assert client.ping()
        assert client.version()["ApiVersion"] == "1.50"
        assert client.containers.run("default", ["echo", "hello"], remove=True) == b"hello\n"
        c = client.containers.run(
            "default",
            ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done"],
            detach=True,
            environment={"X": "1"},
        )
        assert list(c.logs(stream=True, follow=True)) == [b"line1\n", b"line2\n", b"line3\n"]
        assert c.wait() == {"StatusCode": 0}  # as Docker's: no "Error" when there is none
        c.reload()
        assert c.status == "exited"
        assert "X=1" in c.attrs["Config"]["Env"]
        c.remove()
        # A bare name (docker-py's None) unsets the variable, as in Docker; HOME, unset,
        # is then the user's from the image's passwd, as runc sets it.
        script = 'echo "${HOME-unset} ${TERM-unset} [$B]"'
        u = client.containers.create(
            "default", ["sh", "-c", script], environment={"HOME": None, "TERM": None, "B": ""}
        )
        assert "HOME" in u.attrs["Config"]["Env"] and "B=" in u.attrs["Config"]["Env"]
        u.start()
        assert u.wait()["StatusCode"] == 0 and u.logs() == b"/root unset []\n"
        u.remove()
        d = client.containers.run(
            "default", ["sleep", "60"], detach=True, name="py", mem_limit="64m"
        )
        code, out = d.exec_run(["sh", "-c", "echo out; echo err >&2; exit 4"], demux=True)
        assert (code, out) == (4, (b"out\n", b"err\n"))
        assert client.containers.get("py").id == d.id
        assert [x.name for x in client.containers.list()] == ["py"]
        stats = d.stats(stream=False)
        assert stats["memory_stats"]["usage"] > 0
        assert stats["memory_stats"]["limit"] == 64 << 20
        d.kill()  # answered once the end is recorded, as by Docker
        d.reload()
        assert (d.status, d.attrs["State"]["ExitCode"]) == ("exited", 137)
        d.remove()
        with pytest.raises(docker.errors.ContainerError) as failed:
            client.containers.run("default", ["sh", "-c", "echo bad >&2; exit 2"])
        assert failed.value.exit_status == 2
        assert failed.value.stderr == b"bad\n"
        with pytest.raises(docker.errors.NotFound) as missing:
            client.containers.get("nope")
        # The status line's reason phrase, which docker-py quotes (it was empty).
        assert ': Not Found ("No such container: nope")' in str(missing.value)
        with pytest.raises(docker.errors.ImageNotFound):
            client.containers.create("no-such-image", ["true"])
        # Events kept by the daemon, from a time before the runs to one after them.
        ended = int(time.time()) + 1
        events = client.events(since=started, until=ended, decode=True, filters={"event": "die"})
        codes = [e["Actor"]["Attributes"]["exitCode"] for e in events]
        assert codes == ["0", "0", "0", "137", "2"]
        # Attached before start, with the logs (none yet) and the stream.
        w = client.containers.create("default", ["sh", "-c", "echo before; exit 3"])
        with warnings.catch_warnings():  # docker-py leaves its hijacked socket to the GC
            warnings.simplefilter("ignore", ResourceWarning)
            stream = client.api.attach(w.id, stream=True, logs=True)
            w.start()
            output = b"".join(stream)
            stream.close()
            del stream
            gc.collect()
        assert output == b"before\n"
        assert w.wait(condition="not-running")["StatusCode"] == 3
        w.remove()
        # Exec inspect, update, one-shot stats, top.
        e = client.containers.run("default", ["sleep", "60"], detach=True)
        ex = client.api.exec_create(e.id, ["sh", "-c", "exit 5"], privileged=True)
        client.api.exec_start(ex["Id"])
        got = client.api.exec_inspect(ex["Id"])
        assert (got["ExitCode"], got["Running"], got["ContainerID"]) == (5, False, e.id)
        assert got["ProcessConfig"] == {"tty": False, "entrypoint": "sh", "privileged": True,
                                        "arguments": ["-c", "exit 5"], "user": ""}  # fmt: skip
        # The start's Tty, not the exec's, frames the stream, as Docker's does: docker-py
        # starts with Tty false unless told, and reads frames.
        for tty in (False, True):
            tx = client.api.exec_create(e.id, ["echo", "on a tty"], tty=True)
            assert client.api.exec_start(tx["Id"], tty=tty) == b"on a tty\r\n"
        # Without a limit before, the swap is given too, as Docker requires (409 else).
        with pytest.raises(docker.errors.APIError) as refused:
            e.update(mem_limit="32m")
        assert refused.value.status_code == 409
        e.update(mem_limit="32m", memswap_limit="64m")
        e.reload()
        assert e.attrs["HostConfig"]["Memory"] == 32 << 20
        assert e.attrs["HostConfig"]["CgroupnsMode"] == "private"
        # Docker's EndpointSettings, every key (docker-py's tests read DriverOpts).
        endpoint = e.attrs["NetworkSettings"]["Networks"]["bridge"]
        assert {"DriverOpts", "IPAMConfig", "GlobalIPv6Address", "IPv6Gateway"} <= set(endpoint)
        # An endpoint id while connected, the same in network inspect (it was empty).
        members = client.api.inspect_network("bridge")["Containers"]
        assert len(endpoint["EndpointID"]) == 64
        assert members[e.id]["EndpointID"] == endpoint["EndpointID"]
        one = client.api.stats(e.id, stream=False, one_shot=True)
        assert one["pids_stats"] == {"current": 1} and one["precpu_stats"]["cpu_usage"]
        assert "PID" in e.top()["Titles"]
        e.remove(force=True)
    finally:
        client.close()


def test_a_follow_of_a_removed_container_gets_its_log_whole(clean: Daemon) -> None:
    """A client following a log that reads only after the container was removed (docker-py's
    ``run(remove=True)`` does: it follows, waits, removes, then reads) gets what the log
    held at the removal, the files rotated after the one it was reading too (they went
    with the container's directory: it got the first 10 MiB)."""
    size = 24_000_000  # lines of 16 KiB: the default rotation's three files of 10 MiB
    script = f"while [ ! -e /go ]; do sleep 0.05; done; head -c {size} /dev/zero"
    r = _docker(clean, "run", "-d", "--name", "big", "default", "sh", "-c", script)
    cid = r.stdout.strip()
    conn = UnixHTTP(clean.docker_socket)
    try:
        conn.request("GET", "/containers/big/logs?follow=1&stdout=1")
        response = conn.getresponse()  # its head: the follow is under way
        assert _docker(clean, "exec", "big", "touch", "/go").returncode == 0
        assert _docker(clean, "wait", "big").stdout == "0\n"
        assert _docker(clean, "rm", "big").returncode == 0
        places = ("containers", "trash", "trash/.deleting")  # where it goes, then gone
        until(
            lambda: not any((clean.root / place / cid).exists() for place in places),
            "the container's directory deleted",
        )
        body = response.read()
    finally:
        conn.close()
    got, at = 0, 0
    while at < len(body):  # the frames' payloads
        length = int.from_bytes(body[at + 4 : at + 8], "big")
        got, at = got + length, at + 8 + length
    assert got == size


@needs_cli
def test_logs_follow_gets_a_burst_rotated_through_a_small_max_size(clean: Daemon) -> None:
    """``docker logs -f`` of a burst of output through ``max-size=2k, max-file=2`` (a
    dozen rotations between two of the follow's looks for newer files) gets every line:
    it got 93 of 300, the files rotated out before it opened them."""
    burst = "while [ ! -e /go ]; do sleep 0.05; done; seq 300 | sed 's/^/line /'"
    script = f"echo ready; {burst}"
    opts = ["--log-opt", "max-size=2k", "--log-opt", "max-file=2"]
    r = _docker(clean, "run", "-d", "--name", "burst", *opts, "default", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    with _follow_logs(clean, "burst") as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "ready\n"  # following: now the burst
        assert _docker(clean, "exec", "burst", "touch", "/go").returncode == 0
        assert follow.stdout.read().splitlines() == [f"line {n}" for n in range(1, 301)]
        assert follow.wait(timeout=30) == 0
    logs = Path(_docker(clean, "inspect", "-f", "{{.LogPath}}", "burst").stdout.strip()).parent
    assert len(os.listdir(logs)) == 2
    clean.ctl("rm", "burst")


def _follow_logs(clean: Daemon, name: str) -> subprocess.Popen[str]:
    """``docker logs -f NAME``, its output read through a pipe."""
    argv = [DOCKER or "docker", "logs", "-f", name]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=docker_env(clean))


@needs_cli
def test_logs_since_and_until_a_printed_time_name_its_own_line(clean: Daemon) -> None:
    """``docker logs --since/--until`` a time that ``docker logs -t`` printed (the CLI
    sends it as SECONDS.NANOSECONDS) take that line, as Docker's do: the daemon read the
    time as a float, good to ~256 ns, and left out some lines of their own time."""
    script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo l$i; sleep 0.01; done"
    assert _docker(clean, "run", "--name", "stamps", "default", "sh", "-c", script).returncode == 0
    stamps = [line.split(" ", 1)[0] for line in _logs_lines(clean, "-t")]
    assert len(stamps) == 12
    for number, stamp in enumerate(stamps, 1):
        assert _logs_lines(clean, "--since", stamp)[0] == f"l{number}"
        assert _logs_lines(clean, "--until", stamp)[-1] == f"l{number}"
    r = _docker(clean, "logs", "--since", "x", "stamps")
    assert r.returncode != 0 and "x" in r.stderr
    clean.ctl("rm", "stamps")


def _logs_lines(clean: Daemon, *options: str) -> list[str]:
    r = _docker(clean, "logs", *options, "stamps")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_logs_come_a_line_a_frame(clean: Daemon) -> None:
    """Lines written at once reach a client one frame each, as Docker frames each log
    message: docker-py's ``logs(stream=True)`` and ``attach`` yield a frame an item, and
    ``for line in container.logs(stream=True)`` is a line a turn (a run of lines came as
    one frame, so as one item)."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        c = client.containers.run("default", ["printf", "a\\nb\\nc"], detach=True)
        assert c.wait()["StatusCode"] == 0
        lines = [b"a\n", b"b\n", b"c"]
        assert list(c.logs(stream=True)) == lines
        assert list(c.logs(stream=True, follow=True, timestamps=True))[1].endswith(b" b\n")
        c.remove()
        # attach's replay of the logs, to a running container.
        r = client.containers.run(
            "default", ["sh", "-c", "printf 'a\\nb\\nc'; sleep 60"], detach=True
        )
        while r.logs() != b"".join(lines):
            time.sleep(0.05)
        with warnings.catch_warnings():  # docker-py leaves its hijacked socket to the GC
            warnings.simplefilter("ignore", ResourceWarning)
            stream = client.api.attach(r.id, stream=True, logs=True)
            assert [next(stream) for _ in lines] == lines
            r.remove(force=True)
            stream.close()
            del stream
            gc.collect()
    finally:
        client.close()


@needs_cli
def test_exec_that_cannot_start_and_exec_between_runs_as_docker(clean: Daemon) -> None:
    """An exec that cannot start exits as Docker's: 126 for an unknown -u user, 127 for a
    missing -w directory (runc's "no such file or directory"), not the 125 of a refused
    option; a container waiting for its restart refuses exec in Docker's words (it said
    "not running")."""
    assert _docker(clean, "run", "-d", "--name", "up", "default", "sleep", "300").returncode == 0
    # A user is looked up at the exec's create, as dockerd 28 does (a 400 there; boxctl's
    # exec resolves it at its start, which exits 126); a missing directory fails the
    # start, on stdout, as dockerd writes a start's failure into the stream, in its own
    # words (not with the "executable file not found" a run's gets).
    for user, what in (("nosuchuser", "user nosuchuser"), ("1:nosuchgrp", "group nosuchgrp")):
        r = _docker(clean, "exec", "-u", user, "up", "true")
        file = "passwd" if what.startswith("user") else "group"
        assert (r.returncode, r.stderr) == (1, (
            f"Error response from daemon: unable to find {what}: no matching entries in "
            f"{file} file\n"
        ))  # fmt: skip
    r = _docker(clean, "exec", "-w", "/no/such/dir", "up", "true")
    assert (r.returncode, r.stdout) == (127, "chdir /no/such/dir: No such file or directory\n")
    # A command found nowhere on the search path: runc's words, as dockerd passes them on.
    missing = 'exec: "no-such-cmd": executable file not found in $PATH'
    r = _docker(clean, "exec", "up", "no-such-cmd")
    assert (r.returncode, r.stdout) == (127, missing + "\n")
    r = clean.ctl("exec", "up", "no-such-cmd", check=False)
    assert (r.returncode, r.stderr) == (127, f"boxctl: {missing}\n")
    r = clean.ctl("exec", "-u", "nosuchuser", "up", "true", check=False)
    assert r.returncode == 126 and "unable to find user nosuchuser" in r.stderr
    r = clean.ctl("exec", "-w", "/no/such/dir", "up", "true", check=False)
    assert r.returncode == 127 and "chdir /no/such/dir: No such file or directory" in r.stderr
    # Ended at once, restarted after a backoff that doubles: soon long enough to catch.
    args = ["--name", "loop", "--restart", "always", "default", "sh", "-c", "exit 3"]
    assert _docker(clean, "run", "-d", *args).returncode == 0
    cid = _docker(clean, "inspect", "-f", "{{.Id}}", "loop").stdout.strip()
    words = f"Container {cid} is restarting, wait until the container is running"

    def refused_while_restarting() -> bool:
        r = _docker(clean, "exec", "loop", "true")
        b = clean.ctl("exec", "loop", "true", check=False)
        return r.returncode == 1 and words in r.stderr and words in b.stderr

    until(refused_while_restarting, "an exec refused while the container restarts")
    # A stopped one: named by its full id, as dockerd's errNotRunning names it.
    assert _docker(clean, "stop", "-t", "0", "up").returncode == 0
    r = _docker(clean, "exec", "up", "true")
    up = _docker(clean, "inspect", "-f", "{{.Id}}", "up").stdout.strip()
    assert (r.returncode, r.stderr) == (
        1,
        f"Error response from daemon: container {up} is not running\n",
    )


def test_ended_execs_are_not_listed_nor_kept_for_good(clean: Daemon) -> None:
    """As Docker's: a container's ``ExecIDs`` are its exec instances that have not ended;
    an ended one stays to be inspected for its exit code, and past KEPT_ENDED of a
    container the oldest are forgotten (the daemon kept every one, ~3 KB each, and
    listed them all: a probe that execs every few seconds)."""
    from boxd._dockerapi._attach import KEPT_ENDED

    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{clean.docker_socket}")
    try:
        cid = client.create_container("default", ["sleep", "60"])["Id"]
        client.start(cid)
        first = client.exec_create(cid, ["sh", "-c", "exit 3"])["Id"]
        client.exec_start(first)
        assert client.exec_inspect(first)["ExitCode"] == 3
        waiting = client.exec_create(cid, ["true"])["Id"]  # created, not started
        assert client.inspect_container(cid)["ExecIDs"] == [waiting]
        for _ in range(KEPT_ENDED):
            client.exec_start(client.exec_create(cid, ["true"])["Id"])
        assert client.inspect_container(cid)["ExecIDs"] == [waiting]
        assert client.exec_inspect(first)["ExitCode"] == 3  # KEPT_ENDED ended: all kept
        last = client.exec_create(cid, ["true"])["Id"]
        with pytest.raises(docker.errors.NotFound, match=f"No such exec instance: {first}"):
            client.exec_inspect(first)
        assert client.inspect_container(cid)["ExecIDs"] == [waiting, last]
        # An exec made in a run that ended is gone with it, a later run's start too, as
        # dockerd forgets a stopped container's execs (moby's TestExecAPIStart): a 404.
        client.stop(cid, timeout=0)
        client.start(cid)
        assert client.inspect_container(cid)["ExecIDs"] is None  # none of this run's
        with pytest.raises(docker.errors.NotFound, match=f"No such exec instance: {last}"):
            client.exec_start(last)
    finally:
        client.close()


def test_detach_keys_of_an_api_client(clean: Daemon) -> None:
    """docker-py detaches by typing the detach keys into an attached or exec'd TTY (Docker
    watches them on the server): the connection ends, the process runs on."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")

    def typed_until_closed(sock: Any, *keys: bytes, echo: bytes = b"") -> None:
        raw = sock._sock  # docker-py's SocketIO over the hijacked socket
        raw.settimeout(30)
        seen = b""
        for key in keys:
            raw.sendall(key)
            while echo and echo not in seen:  # what came before the sequence went in
                seen += raw.recv(4096)
        while raw.recv(4096):
            pass
        sock.close()
        raw.close()

    try:
        # docker-py leaves its hijacked sockets to the GC
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            c = client.containers.run("default", ["cat"], detach=True, tty=True, stdin_open=True)
            sock = client.api.attach_socket(c.id, {"stdin": 1, "stdout": 1, "stream": 1})
            # A lone Ctrl-P is passed on once the next key shows it is not the sequence.
            typed_until_closed(sock, b"a\x10b\n", b"\x10", b"\x11", echo=b"a^Pb")
            c.reload()
            assert c.status == "running"
            sock = client.api.attach_socket(c.id, {"stdin": 1, "stream": 1, "detachKeys": "ctrl-x"})
            typed_until_closed(sock, b"\x18")
            ex = client.api.exec_create(c.id, ["cat"], stdin=True, tty=True, detach_keys="ctrl-y,z")
            sock = client.api.exec_start(ex["Id"], tty=True, socket=True)
            typed_until_closed(sock, b"\x19z")
            assert client.api.exec_inspect(ex["Id"])["Running"] is True
            with pytest.raises(docker.errors.APIError) as refused:
                client.api.exec_create(c.id, ["cat"], stdin=True, tty=True, detach_keys="ctrl-")
            assert "Invalid detach keys (ctrl-) provided" in str(refused.value)
            with pytest.raises(docker.errors.APIError) as refused:  # was a 500, a traceback
                client.api.exec_create(c.id, ["cat"], stdin=True, tty=True, detach_keys="ctrl-ß")
            assert "Invalid detach keys (ctrl-ß) provided" in str(refused.value)
            c.remove(force=True)
            del sock
            gc.collect()
    finally:
        client.close()


def _websocket(daemon: Daemon, target: str) -> Any:
    """websocket-client (docker-py's WebSocket library) connected to the Engine API's
    socket at ``target``."""
    websocket = pytest.importorskip("websocket")
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(daemon.docker_socket))
    return websocket.create_connection(f"ws://localhost{target}", socket=sock, timeout=30)


def _messages(ws: Any, *until: bytes) -> tuple[set[int], bytes]:
    """The opcodes and the data of the messages received until each of ``until`` is in
    the data (stdout and stderr come through pipes of their own, in no set order)."""
    opcodes, data = set(), b""
    while not all(part in data for part in until):
        opcode, payload = ws.recv_data()
        opcodes.add(opcode)
        data += payload
    return opcodes, data


def test_an_attach_without_input_ends_when_its_client_goes(clean: Daemon) -> None:
    """Nothing reads an attach's socket when it carries no stdin, so a client gone was
    found only by the container's next output: each attach to a quiet container that its
    client gave up held a descriptor of the daemon for good.  A half close is no end: the
    docker CLI shuts its side at once when it has no input, and reads on."""
    for name, script in (("quiet", "exec sleep 300"), ("late", "sleep 2; echo late; sleep 300")):
        body = json.dumps({"Image": "default", "Cmd": ["sh", "-c", script]}).encode()
        assert _call(clean, "POST", f"/containers/create?name={name}", body)[0] == 201
        assert _call(clean, "POST", f"/containers/{name}/start")[0] == 204

    def attach(name: str, upgrade: bool) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(clean.docker_socket))
        s.settimeout(30)
        asked = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
        s.sendall(
            f"POST /containers/{name}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
            f"Host: d\r\n{asked}\r\n".encode()
        )
        assert s.recv(4096).endswith(b"\r\n\r\n")  # the head, nothing more yet
        return s

    assert clean.process is not None
    fds = f"/proc/{clean.process.pid}/fd"
    attach("quiet", True).close()  # what a first attach loads, loaded
    before = len(os.listdir(fds))
    for upgrade in (True, False) * 25:
        attach("quiet", upgrade).close()
    until(lambda: len(os.listdir(fds)) <= before, "the daemon to close the attaches' sockets")
    with attach("late", True) as s:
        s.shutdown(socket.SHUT_WR)
        got = b""
        while b"late" not in got and (data := s.recv(4096)):
            got += data
        assert got == b"\x01\x00\x00\x00\x00\x00\x00\x05late\n"


def test_attach_over_a_websocket(clean: Daemon) -> None:
    """``GET /containers/ID/attach/ws``, the attach of browser consoles (Portainer's): the
    output in binary messages, stdout and stderr never multiplexed (API 1.28 on; text
    messages before), the client's messages as stdin, bytes of any value both ways; the
    end of one client's input leaves the container's stdin open (no StdinOnce) for the
    next client, as Docker's."""
    websocket = pytest.importorskip("websocket")
    script = 'while read -r l; do echo "out $l"; echo "err $l" >&2; done; echo ended'
    cid = _docker(clean, "run", "-d", "-i", "default", "sh", "-c", script).stdout.strip()
    query = "stream=1&stdin=1&stdout=1&stderr=1"
    ws = _websocket(clean, f"/v1.44/containers/{cid}/attach/ws?{query}")
    ws.send_binary(b"one\n")
    ws.send("two\n")
    opcodes, data = _messages(ws, b"out two\n", b"err two\n")
    assert opcodes == {websocket.ABNF.OPCODE_BINARY}
    assert sorted(data.splitlines()) == [b"err one", b"err two", b"out one", b"out two"]
    ws.close()
    # The past output (logs=1) first, then what the next input makes.
    ws = _websocket(clean, f"/v1.27/containers/{cid}/attach/ws?{query}&logs=1")
    ws.send_binary(b"three\n")
    opcodes, data = _messages(ws, b"out three\n", b"err three\n")
    assert opcodes == {websocket.ABNF.OPCODE_TEXT}
    assert data.startswith((b"out one\n", b"err one\n"))
    ws.close()
    assert _docker(clean, "inspect", "-f", "{{.State.Status}}", cid).stdout == "running\n"

    # Binary data through a cat, byte for byte.
    cat = _docker(clean, "run", "-d", "-i", "default", "cat").stdout.strip()
    ws = _websocket(clean, f"/containers/{cat}/attach/ws?stream=1&stdin=1&stdout=1")
    sent = bytes(range(256)) * 64 + b"\n"
    ws.send_binary(sent)
    _, data = _messages(ws, sent)
    assert data == sent
    ws.close()

    # A close ends the attach at once, with or without stdin: the daemon answers it and
    # closes the connection, not waiting for the next output of an idle container.
    for query in ("stream=1&stdout=1", "stream=1&stdin=1&stdout=1"):
        ws = _websocket(clean, f"/containers/{cat}/attach/ws?{query}")
        ws.send_close()
        answer = b""
        while chunk := ws.sock.recv(4096):  # to the end: the daemon closes the connection
            answer += chunk
        assert answer[0] == 0x80 | websocket.ABNF.OPCODE_CLOSE  # its close, the last frame
        ws.shutdown()

    # Not a WebSocket handshake: refused by what it lacks, nothing hijacked.
    status, _, body = _call(clean, "GET", f"/containers/{cid}/attach/ws?stream=1")
    assert status == 400 and b"not a WebSocket handshake" in body, body


def test_the_end_of_an_api_clients_input_as_docker(clean: Daemon) -> None:
    """Docker's StdinOnce false (docker-py's stdin_open, `docker run -d -i`): the end of an
    attached client's input ends its connection and leaves the container's stdin open for
    the next one.  The connection stayed open until the container ended: a client reading
    to its end waited for ever.  An exec with a TTY, the same; without one, the input's
    end is the process's."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")

    def sent_until_closed(sock: Any, data: bytes) -> bytes:
        raw = sock._sock  # docker-py's SocketIO over the hijacked socket
        raw.settimeout(30)
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := raw.recv(4096):
            received += chunk
        sock.close()
        raw.close()
        return received

    script = 'read a; echo "got $a"; read b; echo "got $b"; exit 7'
    try:
        # docker-py leaves its hijacked sockets to the GC
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            c = client.containers.run("default", ["sh", "-c", script], detach=True, stdin_open=True)
            assert c.attrs["Config"]["StdinOnce"] is False
            for line in (b"one\n", b"two\n"):
                sock = client.api.attach_socket(c.id, {"stdin": 1, "stdout": 1, "stream": 1})
                sent_until_closed(sock, line)
            assert c.wait(timeout=30)["StatusCode"] == 7
            assert c.logs() == b"got one\ngot two\n"
            c.remove()
            c = client.containers.run("default", ["sleep", "300"], detach=True)
            ex = client.api.exec_create(c.id, ["cat"], stdin=True, tty=True)
            sock = client.api.exec_start(ex["Id"], tty=True, socket=True)
            sent_until_closed(sock, b"typed\n")
            assert client.api.exec_inspect(ex["Id"])["Running"] is True
            ex = client.api.exec_create(c.id, ["cat"], stdin=True)
            sock = client.api.exec_start(ex["Id"], socket=True)
            assert sent_until_closed(sock, b"piped\n") == b"\x01\0\0\0\0\0\0\6piped\n"
            assert client.api.exec_inspect(ex["Id"])["ExitCode"] == 0
            c.remove(force=True)
            del sock
            gc.collect()
    finally:
        client.close()


def test_a_stdin_once_client_gone_while_its_input_waits_closes_the_stdin(clean: Daemon) -> None:
    """Docker's StdinOnce (docker-py's create_container with stdin_open): a client that
    goes away while its input waits for room in the container's stdin pipe closes the
    stdin once the daemon finds it gone (by the output it cannot send).  It stayed open,
    and `cat` waited for ever."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    script = "until [ -e /tmp/go ]; do sleep 0.05; done; echo tick; cat >/dev/null; echo end"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            cid = client.api.create_container("default", ["sh", "-c", script], stdin_open=True)
            assert client.api.inspect_container(cid)["Config"]["StdinOnce"] is True
            sock = client.api.attach_socket(cid, {"stdin": 1, "stdout": 1, "stream": 1})
            client.api.start(cid)
            raw = sock._sock
            raw.sendall(b"x" * (128 << 10))  # more than the pipe holds
            pid = client.api.inspect_container(cid)["State"]["Pid"]
            deadline = time.monotonic() + 30
            while pipe_held(f"/proc/{pid}/fd/0") < 65536:
                assert time.monotonic() < deadline, "the stdin pipe never filled"
                time.sleep(0.01)
            sock.close()
            raw.close()  # the client is gone
            del sock, raw
            gc.collect()
            client.api.exec_start(client.api.exec_create(cid, ["touch", "/tmp/go"])["Id"])
            assert client.api.wait(cid, timeout=30)["StatusCode"] == 0
            assert client.api.logs(cid) == b"tick\nend\n"
            client.api.remove_container(cid)
    finally:
        client.close()


@needs_cli
def test_start_ai_twice_gives_each_run_its_input(clean: Daemon) -> None:
    """`docker create -i` is Docker's StdinOnce: inspect says so, and the input of each
    `start -ai` is that run's, its end the run's stdin's end."""
    _docker(clean, "create", "-i", "--name", "twice", "default", "sh", "-c", "cat; echo end")
    assert _docker(clean, "inspect", "-f", "{{.Config.StdinOnce}}", "twice").stdout == "true\n"
    for line in ("first\n", "second\n"):
        r = _docker(clean, "start", "-ai", "twice", input=line)
        assert (r.returncode, r.stdout, r.stderr) == (0, line + "end\n", "")


def test_a_client_gone_mid_stream_is_no_failed_request(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client that hangs up in the middle of a streamed answer (docker cp of a big file)
    ends that answer, and nothing more: the daemon logs no failed request for it."""
    with running_daemon(tmp_path) as d:
        script = "head -c 50000000 /dev/zero > /big && touch /done; sleep 60"
        d.ctl("run", "-d", "--name", "big", "default", "sh", "-c", script)
        for _ in range(300):
            if d.ctl("exec", "big", "test", "-f", "/done", check=False).returncode == 0:
                break
            time.sleep(0.1)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(d.docker_socket))
            s.sendall(b"GET /containers/big/archive?path=/big HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        time.sleep(1)  # the daemon's next send finds the client gone
        assert _call(d, "GET", "/_ping")[0] == 200
    assert "request failed" not in capfd.readouterr().err


def test_clients_see_a_node_in_no_swarm(clean: Daemon) -> None:
    """docker-py's ``client.swarm`` and its clean-up call, and the docker CLI, get Docker's
    answers for a node in no swarm (503), not a 404 they take for a broken daemon."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        assert client.swarm.attrs == {}
        assert client.api.leave_swarm(force=True) is True
        with pytest.raises(docker.errors.APIError) as refused:
            client.services.list()
        assert refused.value.status_code == 503
        assert "not a swarm manager" in str(refused.value)
    finally:
        client.close()
    if DOCKER is not None:
        left = _docker(clean, "swarm", "leave", "--force")
        assert left.returncode == 1
        assert "This node is not part of a swarm" in left.stderr


@needs_cli
def test_no_plugins_and_no_registry_search(clean: Daemon) -> None:
    """``docker plugin ls`` lists none (boxd's drivers are built in), as a Docker daemon
    with no plugin installed; ``docker search`` is refused in words that say so, not as a
    method the path does not allow."""
    r = _docker(clean, "plugin", "ls", "--format", "{{.Name}}")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = _docker(clean, "search", "alpine")
    assert r.returncode == 1 and "docker search is not supported by boxd" in r.stderr


# ---- raw HTTP -------------------------------------------------------------------------


def test_a_client_waiting_for_100_continue_is_told_to_go_on(clean: Daemon) -> None:
    """curl asks ``Expect: 100-continue`` before a body over 1 MiB (a tar to ``archive``,
    ``images/load``) and holds it back for a second unless told to go on, as Docker's
    server tells it at once: boxd does too, for a body read whole and one read as it
    comes."""
    body = json.dumps({"Image": "default", "Cmd": ["true"]}).encode()
    for path, status in (("/containers/create?name=expect", b"201"), ("/images/load", b"200")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(clean.docker_socket))
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            first = sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 100 ")  # before the body is sent
            # A streamed answer's head may come with it (load's does, under load).
            answer = first.partition(b"\r\n\r\n")[2]
            sock.sendall(body)
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
            assert answer.split()[1] == status, answer


def test_ping_version_and_prefixes(clean: Daemon) -> None:
    for method in ("GET", "HEAD"):
        status, headers, body = _call(clean, method, "/_ping")
        assert status == 200
        assert headers["api-version"] == "1.50"
        # The classic builder only (the docker CLI then does not try BuildKit); no swarm.
        assert (headers["builder-version"], headers["swarm"]) == ("1", "inactive")
        assert body == (b"OK" if method == "GET" else b"")
    # Any path's OPTIONS (a browser's preflight): 200, as dockerd answers it (moby's
    # integration-cli TestAPIOptionsRoute).
    for path in ("/", "/v1.50/containers/json", "/nosuch"):
        assert _call(clean, "OPTIONS", path)[:3:2] == (200, b""), path
    for path in (
        "/version",
        "/v1.24/version",
        "/v1.41/version",
        "/v1.44/version",
        "/v1.50/version",
        "/v1.50.0/version",
    ):
        status, _, body = _call(clean, "GET", path)
        assert status == 200
        version = json.loads(body)
        assert (version["ApiVersion"], version["MinAPIVersion"]) == ("1.50", "1.24")
        # The package's version, as installed (pyproject.toml reads boxd.__version__).
        assert version["Version"] == importlib.metadata.version("boxd"), version
    status, _, body = _call(clean, "GET", "/info")
    assert status == 200
    info = json.loads(body)
    assert info["Containers"] == 0
    # Keys tools index without a default (a KeyError before): dockerd's shapes.
    assert info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Secure"] is True
    assert info["RegistryConfig"]["InsecureRegistryCIDRs"] == ["::1/128", "127.0.0.0/8"]
    assert (info["HttpProxy"], info["HttpsProxy"], info["NoProxy"]) == ("", "", "")
    assert info["ContainerdCommit"] == info["RuncCommit"] == {"ID": ""}
    assert info["LoggingDriver"] == "json-file"  # the daemon's default
    # What every container gets, as dockerd names its defaults (boxd's no_new_privs is on
    # by default: an audit of the daemon reads it here).
    assert info["SecurityOptions"] == [
        "name=seccomp,profile=builtin", "name=cgroupns", "name=no-new-privileges",
    ]  # fmt: skip
    # API 1.24's ExecutionDriver, as dockerd gives it to such a client (moby's
    # TestInfoAPIVersioned), and only to one.
    assert "ExecutionDriver" not in info
    old = json.loads(_call(clean, "GET", "/v1.24/info")[2])
    assert old["ExecutionDriver"] == "<not supported>"
    status, _, body = _call(clean, "GET", "/system/df")
    assert status == 200
    assert [i["RepoTags"] for i in json.loads(body)["Images"]] == [["default:latest"]]
    # API 1.42's type asks for some areas only, the others null, as moby's (boxd ignored it).
    status, _, body = _call(clean, "GET", "/system/df?type=volume&type=build-cache")
    assert status == 200
    assert json.loads(body) == {
        "LayersSize": 0, "Images": None, "Containers": None, "Volumes": [], "BuildCache": [],
    }  # fmt: skip
    status, _, body = _call(clean, "GET", "/v1.41/system/df?type=bogus")  # before 1.42: none
    assert status == 200 and json.loads(body)["Images"]


def test_filters_null_are_no_filters(clean: Daemon) -> None:
    """``filters=null`` (a script's ``json.dumps(None)``) is no filter to Docker; boxd
    refused it ("expected a JSON object")."""
    for path in ("/containers/json", "/images/json", "/networks", "/volumes", "/plugins"):
        status, _, body = _call(clean, "GET", f"{path}?filters=null")
        assert status == 200, (path, body)
        assert _call(clean, "GET", path)[2] == body


@needs_cli
def test_docker_version_shows_the_engine_as_docker_does(clean: Daemon) -> None:
    """``docker version``: the API version the CLI negotiated down to, the package's
    version as the Engine's, and Experimental (blank before: boxd gave no such detail)."""
    fmt = (
        "{{.Client.APIVersion}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}} "
        "{{.Server.Version}}{{range .Server.Components}} {{.Details.Experimental}}{{end}}"
    )
    r = _docker(clean, "version", "--format", fmt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1.50", "1.50", "1.24", importlib.metadata.version("boxd"), "false"]


@needs_cli
def test_what_the_cli_sends_only_to_newer_apis(clean: Daemon) -> None:
    """The docker CLI refuses --annotation (API 1.43), --health-start-interval (1.44) and
    ``stop -s`` (1.42) to an older daemon: each reaches boxd and does what it says."""
    trapper = "trap 'exit 7' INT; while :; do sleep 0.1; done"
    r = _docker(
        clean, "run", "-d", "--name", "a", "--annotation", "org.example/k=v",
        "--health-cmd", "true", "--health-interval", "1h", "--health-start-period", "1m",
        "--health-start-interval", "100ms", "default", "sh", "-c", trapper,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    shown = json.loads(_docker(clean, "inspect", "a").stdout)[0]
    assert shown["HostConfig"]["Annotations"] == {"org.example/k": "v"}
    assert shown["Config"]["Healthcheck"]["StartInterval"] == 100_000_000
    # Checked every 100ms while starting, not first after the hour's interval.
    deadline = time.monotonic() + 10
    health = ""
    while health != "healthy" and time.monotonic() < deadline:
        time.sleep(0.1)
        health = _docker(clean, "inspect", "-f", "{{.State.Health.Status}}", "a").stdout.strip()
    assert health == "healthy"
    r = _docker(clean, "stop", "-s", "SIGNOPE", "a")
    assert r.returncode == 1 and "Error response from daemon: invalid signal: SIGNOPE" in r.stderr
    assert _docker(clean, "stop", "-s", "INT", "a").returncode == 0
    assert _docker(clean, "inspect", "-f", "{{.State.ExitCode}}", "a").stdout == "7\n"
    assert _docker(clean, "start", "a").returncode == 0
    assert _docker(clean, "restart", "-s", "INT", "a").returncode == 0
    assert _docker(clean, "inspect", "-f", "{{.State.Running}}", "a").stdout == "true\n"
    # An exec's frames are named as such from 1.42 (a raw stream before, as Docker's).
    for version, kind in (("1.41", "raw-stream"), ("1.44", "multiplexed-stream")):
        made = _call(clean, "POST", "/containers/a/exec", b'{"Cmd":["true"],"AttachStdout":true}')
        exec_id = json.loads(made[2])["Id"]
        _, headers, _ = _call(clean, "POST", f"/v{version}/exec/{exec_id}/start", b"{}")
        assert headers["content-type"] == f"application/vnd.docker.{kind}"
    plain = _docker(clean, "create", "default", "true").stdout.strip()
    assert "Annotations" not in json.loads(_docker(clean, "inspect", plain).stdout)[0]["HostConfig"]


def test_shapes_follow_the_clients_api_version(clean: Daemon, tmp_path: Path) -> None:
    """docker-py pinned to 1.41 gets the older shapes and defaults, at 1.44 the newer:
    VirtualSize (gone in 1.44), an untagged image's ``<none>`` tags (gone in 1.43), a
    bind's CreateMountpoint (1.42)."""
    docker = pytest.importorskip("docker")
    old = docker.APIClient(base_url=f"unix://{clean.docker_socket}", version="1.41")
    new = docker.APIClient(base_url=f"unix://{clean.docker_socket}", version="1.44")
    try:
        tarball = io.BytesIO()
        with tarfile.open(fileobj=tarball, mode="w") as tar:
            tar.addfile(tarfile.TarInfo("empty"))
        answer = new.import_image_from_data(tarball.getvalue())  # untagged
        image = json.loads(answer.splitlines()[-1])["status"]
        then = {r["Id"]: r for r in old.images()}[image]
        now = {r["Id"]: r for r in new.images()}[image]
        assert (then["RepoTags"], then["RepoDigests"]) == (["<none>:<none>"], ["<none>@<none>"])
        assert (now["RepoTags"], now["RepoDigests"]) == ([], [])
        assert then["VirtualSize"] == then["Size"] and "VirtualSize" not in now
        assert old.inspect_image(image)["VirtualSize"] == old.inspect_image(image)["Size"]
        assert "VirtualSize" not in new.inspect_image(image)
        assert all("VirtualSize" in i for i in old.df()["Images"])
        assert not any("VirtualSize" in i for i in new.df()["Images"])
        # until: what was made before the time, given as prune takes it.
        for until, listed in (("1h", False), (str(time.time() + 60), True)):
            rows = new.images(filters={"until": until})
            assert (image in {r["Id"] for r in rows}) is listed
        new.remove_image(image)
        # CreateMountpoint: the missing source is made at 1.44, refused as missing at 1.41.
        source = tmp_path / "made" / "here"
        mount = {"Type": "bind", "Source": str(source), "Target": "/m",
                 "BindOptions": {"CreateMountpoint": True}}  # fmt: skip
        body = json.dumps({"Image": "default", "Cmd": ["true"], "HostConfig": {"Mounts": [mount]}})
        status, _, data = _call(clean, "POST", "/v1.41/containers/create", body.encode())
        assert status == 400 and b"bind source path does not exist" in data, data
        assert not source.exists()
        status, _, data = _call(clean, "POST", "/v1.44/containers/create", body.encode())
        assert status == 201 and source.is_dir(), data
    finally:
        old.close()
        new.close()


def _json_call(clean: Daemon, method: str, path: str, body: object = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body).encode()
    status, _, data = _call(clean, method, path, raw)
    return status, json.loads(data) if data else None


VERSIONS = ("1.44", "1.45", "1.46", "1.47", "1.48", "1.49", "1.50")
_ARM64 = urllib.parse.quote(json.dumps({"os": "linux", "architecture": "arm64"}))


def test_shapes_of_api_1_45_to_1_50(clean: Daemon, tmp_path: Path) -> None:
    """What changed from API 1.45 to 1.50 (boxd served 1.44), each version as moby's router
    has it: image inspect without ContainerConfig (1.45) and without a container's empty
    Config fields (1.50), platform parameters of inspect, history, save, load and delete
    (1.48-1.50), /info's firewall backend and bridge-nf fields, the list's annotations
    (1.46), GwPriority ignored before 1.48, a volume subpath refused before 1.45."""
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("empty"))
    status, _, data = _call(
        clean, "POST", "/images/create?fromSrc=-&repo=plain", tarball.getvalue()
    )
    assert status == 200, data
    image = {v: _json_call(clean, "GET", f"/v{v}/images/plain/json")[1] for v in VERSIONS}
    assert image["1.44"]["ContainerConfig"]["Hostname"] == "" and image["1.44"]["Container"] == ""
    assert not {"Container", "ContainerConfig"} & (image["1.45"].keys() | image["1.50"].keys())
    assert image["1.49"]["Config"]["AttachStdin"] is False and "Cmd" in image["1.49"]["Config"]
    assert "AttachStdin" not in image["1.50"]["Config"] and "Cmd" in image["1.50"]["Config"]
    # docker-compose 1.x reads ContainerConfig at any version (it fails without it, as
    # against Docker 25 and later): it gets it.
    conn = UnixHTTP(clean.docker_socket)
    try:
        agent = "docker-compose/1.29.2 docker-py/5.0.3 Linux/6.1.0"
        conn.request("GET", "/v1.50/images/plain/json", headers={"User-Agent": agent})
        assert "ContainerConfig" in json.loads(conn.getresponse().read())
    finally:
        conn.close()
    # Another platform's image is "not found", as dockerd's overlay2 store answers.
    status, body = _json_call(clean, "GET", f"/images/plain/json?platform={_ARM64}")
    assert status == 404 and "does not match the specified platform" in body["message"], body
    host = urllib.parse.quote(json.dumps({"os": "linux", "architecture": platform.machine()}))
    assert _json_call(clean, "GET", f"/images/plain/json?platform={host}")[0] == 200
    assert _json_call(clean, "GET", f"/v1.48/images/plain/json?platform={_ARM64}")[0] == 200
    for query, words in (
        ("platform=linux", "failed to parse platform"),
        ("platform=%7B%22os%22%3A%22linux%22%7D", "both OS and Architecture must be provided"),
        (f"platform={_ARM64}&manifests=1", "conflicting options: manifests and platform"),
    ):
        status, body = _json_call(clean, "GET", f"/images/plain/json?{query}")
        assert status == 400 and words in body["message"], (query, body)
    status, body = _json_call(clean, "GET", f"/images/plain/history?platform={_ARM64}")
    assert status == 404, body
    status, body = _json_call(clean, "GET", f"/images/plain/get?platform={_ARM64}")
    assert status == 404 and body["message"] == (
        "no suitable export target found for platform linux/arm64"
    )
    status, body = _json_call(
        clean, "GET", f"/images/plain/get?platform={_ARM64}&platform={_ARM64}"
    )
    assert (status, body["message"]) == (400, "multiple platform parameters not supported")
    # load: only the archive's images for the platform asked for.
    status, _, archive = _call(clean, "GET", "/images/plain/get")
    assert status == 200
    assert _json_call(clean, "DELETE", f"/images/plain?platforms={_ARM64}")[0] == 404
    assert _json_call(clean, "DELETE", "/images/plain")[0] == 200
    status, _, data = _call(clean, "POST", f"/images/load?platform={_ARM64}", archive)
    assert status == 200 and b"Loaded image" not in data, data
    assert _json_call(clean, "GET", "/images/plain/json")[0] == 404
    status, _, data = _call(clean, "POST", f"/images/load?platform={host}", archive)
    assert status == 200 and b"Loaded image: plain:latest" in data, data
    info = {v: _json_call(clean, "GET", f"/v{v}/info")[1] for v in VERSIONS}
    assert info["1.50"]["FirewallBackend"] == {"Driver": "nftables"}
    assert "BridgeNfIptables" not in info["1.50"] and info["1.49"]["BridgeNfIptables"] is False
    assert "FirewallBackend" not in info["1.48"]
    assert info["1.48"]["RuncCommit"] == {"ID": "", "Expected": ""}
    assert info["1.49"]["RuncCommit"] == {"ID": ""}
    assert info["1.46"]["RegistryConfig"]["AllowNondistributableArtifactsCIDRs"] is None
    assert "AllowNondistributableArtifactsCIDRs" not in info["1.47"]["RegistryConfig"]
    # The list's annotations (1.46).
    made = {"Image": "default", "Cmd": ["true"], "HostConfig": {"Annotations": {"a": "b"}}}
    assert _json_call(clean, "POST", "/containers/create?name=noted", made)[0] == 201
    for version, shown in (("1.45", None), ("1.46", {"a": "b"})):
        rows = _json_call(clean, "GET", f"/v{version}/containers/json?all=1")[1]
        assert rows[0]["HostConfig"].get("Annotations") == shown
    # A commit's image "create" event (1.46; a build's too), not for older clients.
    since = time.time()
    status, _, data = _call(clean, "POST", "/commit?container=noted&repo=snap", None)
    assert status == 201, data
    window = f"since={since}&until={time.time()}&filters=" + urllib.parse.quote(
        json.dumps({"type": ["image"]})
    )
    for version, actions in (("1.45", ["tag"]), ("1.46", ["create", "tag"])):
        lines = _call(clean, "GET", f"/v{version}/events?{window}")[2].splitlines()
        assert [json.loads(line)["Action"] for line in lines] == actions, version
    assert _json_call(clean, "DELETE", "/images/snap")[0] == 200
    _call(clean, "DELETE", "/containers/noted")
    # GwPriority came with 1.48: before, it is ignored (so "none" takes it), after checked.
    body = {"Image": "default", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"},
            "NetworkingConfig": {"EndpointsConfig": {"none": {"GwPriority": 5}}}}  # fmt: skip
    status, made_id = _json_call(clean, "POST", "/v1.47/containers/create", body)
    assert status == 201, made_id
    _call(clean, "DELETE", f"/containers/{made_id['Id']}")
    status, refused = _json_call(clean, "POST", "/v1.48/containers/create", body)
    assert status == 400 and "the container's network is 'none'" in refused["message"], refused
    subpath = {"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {"Subpath": "a"}}
    body = {"Image": "default", "HostConfig": {"Mounts": [subpath]}}
    status, refused = _json_call(clean, "POST", "/v1.44/containers/create", body)
    assert status == 400 and refused["message"] == "VolumeOptions.Subpath needs API v1.45 or newer"
    # build prune's 1.48 names are integers, as dockerd checks them.
    status, refused = _json_call(clean, "POST", "/build/prune?reserved-space=lots")
    assert status == 400 and "reserved-space" in refused["message"], refused
    assert _json_call(clean, "DELETE", "/images/plain")[0] == 200
    assert _json_call(clean, "GET", "/containers/json?all=1")[1] == []


def test_tmpfs_options_and_the_volume_driver_warning(clean: Daemon) -> None:
    """API 1.46's ``TmpfsOptions.Options`` (``exec`` and ``noexec``, as dockerd takes
    them) and 1.48's warning for ``VolumeDriver`` beside volume mounts."""
    script = "printf '#!/bin/sh\\necho ran\\n' > /t/x; chmod +x /t/x; /t/x"
    for options, ran in (([["exec"]], True), ([["noexec"]], False), (None, False)):
        tmpfs = {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": options}}
        body = {"Image": "default", "Cmd": ["sh", "-c", script],
                "HostConfig": {"Mounts": [tmpfs]}}  # fmt: skip
        status, made = _json_call(clean, "POST", "/containers/create", body)
        assert status == 201, made
        r = clean.ctl("start", "-a", made["Id"], check=False)
        assert ("ran" in r.stdout) is ran, (options, r.stdout, r.stderr)
        if options:
            shown = _json_call(clean, "GET", f"/containers/{made['Id']}/json")[1]
            assert shown["HostConfig"]["Mounts"][0]["TmpfsOptions"] == {"Options": options}
        clean.ctl("rm", made["Id"])
    bad: tuple[tuple[object, str], ...] = (
        ([["nosuid"]], "invalid option: nosuid"),
        ([["exec", "1", "2"]], "invalid option array length"),
        ([[]], "invalid option array length"),
        ("exec", "expected lists of strings"),
    )
    for given, words in bad:
        tmpfs = {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": given}}
        body = {"Image": "default", "HostConfig": {"Mounts": [tmpfs]}}
        status, refused = _json_call(clean, "POST", "/containers/create", body)
        assert status == 400 and words in refused["message"], (given, refused)
    volume = {"Type": "volume", "Target": "/v"}
    host = {"VolumeDriver": "local", "Mounts": [volume]}
    body = {"Image": "default", "Cmd": ["true"], "HostConfig": host}
    for version, warned in (("1.47", False), ("1.48", True)):
        status, made = _json_call(clean, "POST", f"/v{version}/containers/create", body)
        assert status == 201, made
        assert (
            any("volume-driver configuration is ignored" in w for w in made["Warnings"] or [])
            is warned
        )
        _call(clean, "DELETE", f"/containers/{made['Id']}?v=1")
    assert _json_call(clean, "GET", "/containers/json?all=1")[1] == []


@needs_cli
def test_the_default_images_time_is_the_newest_of_its_inputs() -> None:
    """Not at the Unix epoch ("56 years ago"): at the newest of its inputs' times (the
    skeleton as installed, the host's /etc/alternatives and /etc/ld.so.cache)."""
    created = default_created()
    times = [os.stat(f).st_mtime for f in ("/etc/alternatives", "/etc/ld.so.cache")]
    for top, dirs, files in os.walk(str(_skeleton())):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        times += [os.stat(os.path.join(top, f)).st_mtime for f in files if f != "__init__.py"]
    assert created == max(times)
    assert 946684800 < created <= time.time()  # after 2000, before now


def test_the_default_image_shows_its_time_the_same_everywhere(clean: Daemon) -> None:
    """Inspect, the list and the docker CLI's table show one time, a real one.  (The
    daemon's copy of boxd may be another than this process's, a checkout's rather than the
    installed one, whose skeleton has other times: so the bounds, not the exact value.)"""
    # Read first: a package install meanwhile rewrites them, and only raises the time.
    floor = max(os.stat(f).st_mtime for f in ("/etc/alternatives", "/etc/ld.so.cache"))
    shown = _docker(clean, "image", "inspect", "-f", "{{.Created}}", "default").stdout.strip()
    status, _, body = _call(clean, "GET", "/images/json")
    assert status == 200
    rows = {tuple(i["RepoTags"]): i for i in json.loads(body)}
    created = rows[("default:latest",)]["Created"]
    assert int(floor) <= created <= time.time()
    assert shown.startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))), shown
    listed = _docker(clean, "images", "--format", "{{.CreatedAt}}", "default").stdout
    assert listed.startswith(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))), listed
    again = _docker(clean, "image", "inspect", "-f", "{{.Created}}", "default").stdout.strip()
    assert again == shown


@needs_cli
def test_boxctl_shows_the_default_image_as_the_engine_api_does(
    clean: Daemon, tmp_path: Path
) -> None:
    """The built-in image is listed, inspected, pulled and refused alike by boxctl and
    the docker CLI (the image verbs know of it, both clients ask them)."""
    listed = clean.ctl("images").stdout.splitlines()
    assert [line.split()[:3] for line in listed[1:]] == [["default", "latest", _default_id()[7:19]]]
    assert clean.ctl("images", "-q").stdout.split() == [_default_id()[7:19]]
    assert clean.ctl("images", "-q", "-f", "dangling=true").stdout == ""
    ours = json.loads(clean.ctl("image", "inspect", "default").stdout)[0]
    theirs = json.loads(_docker(clean, "image", "inspect", "default").stdout)[0]
    for key in ("Id", "RepoTags", "Created", "Size", "Os", "Architecture", "Config", "RootFS"):
        assert ours[key] == theirs[key], key
    assert ours["Id"] == _default_id() and ours["RepoTags"] == ["default:latest"]
    assert clean.ctl("inspect", "-f", "{{.Id}}", "default").stdout.strip() == _default_id()
    short = _default_id()[7:19]  # as images -q shows it
    assert clean.ctl("image", "inspect", "-f", "{{.Id}}", short).stdout.strip() == _default_id()
    shown = _docker(clean, "image", "inspect", "-f", "{{.Id}}", short).stdout.strip()
    assert shown == _default_id()
    # Run by the names the lists show (each client's), and built on by its id.
    for name in ("default:latest", short, _default_id()):
        assert clean.ctl("run", "--rm", name, "echo", "ran").stdout == "ran\n", name
        assert _docker(clean, "run", "--rm", name, "echo", "ran").stdout == "ran\n", name
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {short}\nRUN echo built > /built\n")
    clean.ctl("build", "-q", "-t", "on-default:1", str(tmp_path / "ctx"))
    assert clean.ctl("run", "--rm", "on-default:1", "cat", "/built").stdout == "built\n"
    cid = clean.ctl("create", "default:latest", "true").stdout.strip()
    assert clean.ctl("ps", "-a", "-q", "-f", f"ancestor={short}").stdout.split() == [cid[:12]]
    clean.ctl("rm", cid)
    clean.ctl("rmi", "on-default:1")
    history = clean.ctl("history", "--no-trunc", "default").stdout.splitlines()
    assert len(history) == 2 and "default: boxd's built-in image" in history[1], history
    r = _docker(clean, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "default")
    assert r.stdout == "default: boxd's built-in image (this host's /usr)\n", r.stderr
    # Pulled: it is here already, by either client.
    r = clean.ctl("pull", "default")
    assert r.stdout.splitlines()[-2:] == [
        "Status: Image is up to date for default:latest",
        "default:latest",
    ]
    r = _docker(clean, "pull", "default")
    assert r.returncode == 0 and "Image is up to date for default:latest" in r.stdout, r.stderr
    # Not stored, so neither removed, saved, tagged nor pushed; in the same words by both.
    verbs = (
        ("removed", ("rmi", "default")),
        ("saved", ("save", "-o", f"{tmp_path}/x.tar", "default")),
        ("tagged", ("tag", "default", "mine:1")),
    )
    for verb, args in verbs:
        r, d = clean.ctl(*args, check=False), _docker(clean, *args)
        assert r.returncode == d.returncode == 1, (r.stderr, d.stderr)
        words = f"the image 'default' is built in and cannot be {verb}"
        assert words in r.stderr and words in d.stderr, (r.stderr, d.stderr)
    # Its containers are counted, as Docker's list counts an image's.
    clean.ctl("create", "--name", "on-default", "default", "true")
    rows = json.loads(clean.ctl("images", "--format", "json").stdout)
    assert [row["containers"] for row in rows] == [1]


BAD: list[tuple[str, str, bytes | None, int, str]] = [
    ("GET", "/containers/nope/json", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/start", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/stop", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/kill", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/wait", None, 404, "No such container: nope"),
    ("DELETE", "/containers/nope", None, 404, "No such container: nope"),
    ("DELETE", "/containers/nope/alias", None, 404, "No such container: nope/alias"),
    ("GET", "/distribution/Bad%20Name/json", None, 400, "invalid reference format 'Bad Name'"),
    ("GET", "/containers/nope/logs?stdout=1", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/attach?stream=1", None, 404, "No such container: nope"),
    ("GET", "/containers/nope/attach/ws?stream=1", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/exec", b'{"Cmd":["true"]}', 404, "No such container: nope"),
    ("GET", "/containers/nope/stats", None, 404, "No such container: nope"),
    ("POST", "/exec/nope/start", b"{}", 404, "No such exec instance: nope"),
    ("GET", "/exec/nope/json", None, 404, "No such exec instance: nope"),
    ("GET", "/images/nope/json", None, 404, "No such image: nope"),
    ("POST", "/containers/create", b"{not json", 400, "invalid JSON"),
    # Nested deeper than the parser recurses (was a 500 "internal error", a traceback).
    ("POST", "/containers/create", b"[" * 100_000 + b"]" * 100_000, 400, "invalid JSON"),
    ("GET", "/containers/json?filters=" + "[" * 100_000, None, 400, "invalid filters"),
    ("POST", "/containers/create", b"[1]", 400, "expected a JSON object"),
    ("POST", "/containers/create", b"{} trailing", 400, "unexpected content after JSON"),
    # A mount on / is refused at create, in dockerd's words (it was refused only at start).
    *[
        (
            "POST",
            "/containers/create",
            json.dumps({"Image": "default", "Cmd": ["true"], "HostConfig": host}).encode(),
            400,
            "destination can't be '/'",
        )
        for host in [
            {"Tmpfs": {"/": ""}},
            {"Tmpfs": {"//": "size=1m"}},
            {"Binds": ["/tmp:/"]},
            {"Mounts": [{"Type": "tmpfs", "Target": "/"}]},
            {"Binds": ["vol:/"]},
        ]
    ],
    # A bad body is a 400 before what the path names is looked up, as dockerd reads it.
    ("POST", "/containers/nope/exec", b"{not json", 400, "invalid JSON"),
    ("POST", "/exec/nope/start", b"{} {}", 400, "unexpected content after JSON"),
    ("POST", "/networks/nope/connect", b"{not json", 400, "invalid JSON"),
    ("POST", "/containers/create", b'{"Image":"default"}', 400, "no command"),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["true"],"HostConfig":{"CapAdd":["foo"]}}',
        400,
        'unknown capability: "CAP_FOO"',  # moby's words
    ),
    *(
        (
            "POST",
            "/containers/create",
            b'{"Image":"default","Cmd":["true"],"HostConfig":{"%s":-5}}' % key.encode(),
            400,
            f"invalid HostConfig.{key} -5: must not be negative",
        )
        for key in ("Memory", "NanoCpus", "CpuShares")
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"Isolation":"hyperv"}}',
        400,
        "Invalid isolation: 'hyperv' - linux only supports",
    ),
    ("POST", "/containers/create", b'{"Image":"nope","Cmd":["x"]}', 404, "No such image: nope"),
    ("POST", "/containers/create", b'{"Image":"default","Cmd":"x","Env":"A=1"}', 400, "Env"),
    ("POST", "/containers/create", b'{"Image":"default","Cmd":[1]}', 400, "Cmd"),
    ("POST", "/containers/create", b'{"Image":"default","Cmd":["x"],"Tty":"yes"}', 400, "Tty"),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"Memory":"lots"}}',
        400,
        "HostConfig.Memory",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"DeviceRequests":[{"Count":-1}]}}',
        400,
        "HostConfig.DeviceRequests (--gpus) is not supported by boxd: it has no device drivers",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"Devices":[{"PathOnHost":"/dev/null",'
        b'"CgroupPermissions":"rwx"}]}}',
        400,
        "invalid --device '/dev/null:rwx': permissions 'rwx' are not a combination of r, w",
    ),
    (
        "POST",
        "/containers/create?name=bad%20name",
        b'{"Image":"default","Cmd":["x"]}',
        400,
        "bad name",
    ),
    ("POST", "/containers/create", b'{"Image":"default","Cmd":["x"],"Env":["=1"]}', 400, "=1"),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"PidMode":"private"}}',
        400,
        "invalid --pid 'private': use host or container:NAME",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"CgroupnsMode":"shared"}}',
        400,
        "invalid --cgroupns 'shared': use private, host",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"IpcMode":"bogus"}}',
        400,
        "invalid --ipc 'bogus'",
    ),
    ("GET", "/containers/json?filters=%7Bnope", None, 400, "invalid filters"),
    ("GET", '/containers/json?filters={"colour":["red"]}', None, 400, "colour"),
    ("GET", '/containers/json?filters={"status":["asleep"]}', None, 400, "asleep"),
    ("GET", "/containers/json?all=maybe", None, 400, "all"),
    ("GET", "/containers/json?limit=ten", None, 400, "limit"),
    ("GET", "/events?since=yesterday", None, 400, "since"),
    ("GET", '/events?filters={"colour":["red"]}', None, 400, "colour"),
    ("POST", "/images/create", None, 400, "fromImage"),
    ("POST", "/images/create?fromImage=Bad%20Name", None, 400, "Bad Name"),
    ("DELETE", "/images/nope", None, 404, "No such image: nope"),
    ("DELETE", "/images/default", None, 409, "built in"),
    ("POST", "/images/nope/tag?repo=x", None, 404, "No such image: nope"),
    ("POST", "/images/default/tag", None, 400, "repo"),
    ("POST", "/images/nope/push", None, 404, "An image does not exist locally with the tag: nope"),
    ("POST", "/auth", b"{}", 400, "a username is required"),
    ("POST", "/auth", b'{"username": 7}', 400, "invalid body.username: expected a string, got 7"),
    (
        "POST",
        "/auth",
        b'{"username": "u", "serveraddress": true}',
        400,
        "invalid body.serveraddress: expected a string, got True",
    ),
    # Refused before any connection: httpx could not make a URL of either (a 500 once).
    (
        "POST",
        "/auth",
        b'{"username": "u", "serveraddress": "https://\\f"}',
        400,
        "invalid registry 'https://\\x0c': give a host[:port]",
    ),
    (
        "POST",
        "/auth",
        b'{"username": "u", "serveraddress": "\\u00b9\\u00bf"}',
        400,
        "invalid registry '\xb9\xbf': give a host[:port]",
    ),
    ("GET", "/system/df?type=image&type=bogus", None, 400, "unknown object type: bogus"),
    ("GET", "/containers/nope/top", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/pause", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/update", b"{}", 404, "No such container: nope"),
    ("POST", "/containers/nope/resize?h=1&w=1", None, 404, "No such container: nope"),
    ("POST", "/exec/nope/resize?h=1&w=1", None, 404, "No such exec instance: nope"),
    ("POST", "/exec/nope/resize?h=foo&w=bar", None, 400, "h"),  # read first, as dockerd's
    ("POST", "/containers/nope/restart", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/unpause", None, 404, "No such container: nope"),
    ("POST", "/containers/nope/rename?name=x", None, 404, "No such container: nope"),
    ("GET", "/containers/nope/changes", None, 404, "No such container: nope"),
    ("GET", "/containers/nope/export", None, 404, "No such container: nope"),
    ("HEAD", "/containers/nope/archive?path=/", None, 404, ""),
    ("GET", "/containers/nope/archive?path=/", None, 404, "No such container: nope"),
    ("PUT", "/containers/nope/archive?path=/", b"x", 404, "No such container: nope"),
    (
        "GET",
        "/containers/nope/archive?path=/a%00",
        None,
        400,
        "invalid path '/a\\x00': contains a NUL",
    ),
    ("POST", "/containers/prune?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("POST", "/containers/prune?filters=%7B%22until%22:%5B%22soon%22%5D%7D", None, 400, "soon"),
    ("GET", "/images/json?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("GET", "/images/get", None, 400, "names"),
    ("GET", '/images/json?filters={"since":["nope:1"]}', None, 404, "No such image: nope:1"),
    (
        "POST",
        "/containers/create",
        b'{"Image": "default", "Cmd": ["true"], "HostConfig": {"LogConfig": '
        b'{"Type": "none", "Config": {"max-size": "1m"}}}}',
        400,
        "unknown log opt 'max-size' for none log driver",
    ),
    ("GET", "/images/nope/get", None, 404, "No such image: nope"),
    ("POST", "/build?buildargs=nope", b"", 400, "invalid buildargs"),
    ("GET", "/images/nope/history", None, 404, "No such image: nope"),
    # Not a reference at all: dockerd's 400 (moby's TestCreateByImageID), not a 404.
    ("GET", "/images/Nope/json", None, 400, "invalid reference format 'Nope': repository name"),
    (
        "POST",
        "/containers/create",
        b'{"Image": "default:sha256:' + b"a" * 64 + b'"}',
        400,
        "invalid reference format 'default:sha256:",
    ),
    # API 1.48-1.50's platforms: JSON OCI platform objects, one at a time.
    ("GET", "/images/default/json?platform=%7B", None, 400, "failed to parse platform"),
    ("GET", "/images/default/history?platform=linux/amd64", None, 400, "failed to parse"),
    ("POST", "/images/load?platform=%7B%7D", b"", 400, "both OS and Architecture must be"),
    ("DELETE", "/images/default?platforms=1&platforms=2", None, 400, "multiple platforms are"),
    (
        "GET",
        "/images/default/json?platform=%7B%22os%22:%22linux%22,%22architecture%22:%22a/b%22%7D",
        None,
        400,
        "failed to parse platform: invalid platform",
    ),
    # A stream begun (200) ends with the error as its last line, as Docker's do.
    ("POST", "/images/load", b"not a tar", 200, "not a tar archive"),
    ("POST", "/images/prune?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("POST", "/commit", None, 400, "container"),
    ("POST", "/commit?container=nope", None, 404, "No such container: nope"),
    ("POST", "/build/prune?filters=%7Bnope", None, 400, "invalid filters"),
    ("POST", "/build/prune?keep-storage=lots", None, 400, "'keep-storage': 'lots' is not an"),
    # Integers as Go reads them: ASCII digits, 64 bits (Python's int() took these).
    ("POST", "/containers/nope/restart?t=1_0", None, 400, "'t': '1_0' is not an integer"),
    ("POST", "/containers/nope/restart?t=%205", None, 400, "'t': ' 5' is not an integer"),
    (
        "GET",
        "/containers/json?limit=9223372036854775808",
        None,
        400,
        "invalid value for 'limit': 9223372036854775808 is out of range (64 bits)",
    ),
    ("GET", "/networks?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    # The list at /networks/ too, as dockerd's (moby#24595): was a 404 "page not found".
    ("GET", "/networks/?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("POST", "/networks/create", b"{}", 400, "Name"),
    ("POST", "/networks/create", b'{"Name":"s","Scope":"swarm"}', 403, "swarm is not active"),
    ("POST", "/networks/create", b'{"Name":"g","Scope":"global"}', 400, "scope 'global' is not"),
    ("POST", "/networks/prune?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("GET", "/networks/nope", None, 404, "No such network: nope"),
    ("GET", "/networks/bridge?scope=swarm", None, 404, "No such network: bridge"),
    ("DELETE", "/networks/nope", None, 404, "No such network: nope"),
    ("DELETE", "/networks/bridge", None, 403, "bridge is a pre-defined network and cannot be"),
    ("DELETE", "/networks/none", None, 403, "none is a pre-defined network and cannot be"),
    ("POST", "/networks/nope/connect", b"[1]", 400, "expected a JSON object"),
    ("POST", "/networks/nope/disconnect", b"[1]", 400, "expected a JSON object"),
    ("GET", "/volumes?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("POST", "/volumes/create", b"[1]", 400, "expected a JSON object"),
    ("POST", "/volumes/prune?filters=%7B%22colour%22:%5B%22red%22%5D%7D", None, 400, "colour"),
    ("GET", "/volumes/nope", None, 404, "No such volume: nope"),
    ("DELETE", "/volumes/nope", None, 404, "No such volume: nope"),
    # dockerd's words (`docker volume update`), not a 404 "page not found" as before.
    (
        "PUT",
        "/volumes/nope?version=1",
        b"{}",
        503,
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ),
    ("GET", "/v1.51/containers/json", None, 400, "Maximum supported API version is 1.50"),
    ("POST", "/containers/nope/stop?signal=SIGNOPE", None, 404, "No such container: nope"),
    ("GET", '/images/json?filters={"until":["soon"]}', None, 400, "invalid until 'soon'"),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"ConsoleSize":[-1,80]}}',
        400,
        "invalid Config.HostConfig.ConsoleSize [-1, 80]: height and width must be between 0",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"ConsoleSize":[24,"80"]}}',
        400,
        "invalid Config.HostConfig.ConsoleSize [24, '80']: expected [height, width], two",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"ConsoleSize":"24x80"}}',
        400,
        "invalid Config.HostConfig.ConsoleSize '24x80'",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"Annotations":{"":"x"}}}',
        400,
        "invalid --annotation '=x': use KEY=VALUE",
    ),
    (
        "POST",
        "/containers/create",
        b'{"Image":"default","Cmd":["x"],"HostConfig":{"Mounts":[{"Type":"volume",'
        b'"Target":"/t","BindOptions":{"CreateMountpoint":true}}]}}',
        400,
        "cannot mix 'bind-*' options with mount type 'volume'",
    ),
    ("GET", "/v1.12/containers/json", None, 400, "too old"),
    ("GET", "/no/such/route", None, 404, "page not found"),
    ("GET", '/plugins?filters={"colour":["red"]}', None, 400, "invalid filter 'colour'"),
    ("GET", "/images/search?term=alpine", None, 501, "docker search is not supported by boxd"),
    # Docker's router answers a known path asked with another method as an unknown one.
    ("PUT", "/containers/create", None, 404, "page not found: PUT /containers/create"),
    ("HEAD", "/containers/json", None, 404, ""),
    ("DELETE", "/v1.44/_ping", None, 404, "page not found: DELETE /_ping"),
    # Any digits and dots are a version, as Docker's router reads them.
    ("GET", "/v1/containers/json", None, 400, "client version 1 is too old"),
    ("GET", "/v1.50.1/containers/json", None, 400, "client version 1.50.1 is too new"),
]
# Swarm mode: every route answered as by a Docker node in no swarm, with Docker's words.
BAD += [
    ("POST", "/swarm/leave?force=1", None, 503, "This node is not part of a swarm"),
    ("POST", "/swarm/init", b"{}", 503, "swarm mode is not supported by boxd"),
    ("POST", "/swarm/join", b"{}", 503, "swarm mode is not supported by boxd"),
    *(
        (method, path, None, 503, "This node is not a swarm manager")
        for method, path in [
            ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
            ("POST", "/swarm/unlock"), ("GET", "/tasks"), ("GET", "/tasks/x"),
            ("GET", "/tasks/x/logs"), ("GET", "/services/x/logs"),
            *(("POST", f"/{area}/create") for area in ("services", "secrets", "configs")),
            *(
                (method, f"/{area}{path}")
                for area in ("nodes", "services", "secrets", "configs")
                for method, path in [("GET", ""), ("GET", "/x"), ("DELETE", "/x"),
                                     ("POST", "/x/update")]
            ),
        ]
    ),
]  # fmt: skip


# What takes no input at all, so that no input can be bad (``/_ping``, ``/version``, ...).
NO_INPUT = {("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/version"), ("GET", "/info"),
            ("OPTIONS", "/.*")}  # fmt: skip


def test_bad_input_covers_every_route() -> None:
    """Every route of the server (and so every area's, as they are added) has a case in
    BAD, or takes no input."""
    from boxd._dockerapi._http import ApiError, Request
    from boxd._dockerapi._router import Router
    from boxd._dockerapi._server import AREAS, LAZY_AREAS

    lazy = [importlib.import_module(name) for name in LAZY_AREAS]
    router = Router(r for area in (*AREAS, *lazy) for r in area.ROUTES)
    covered = set(NO_INPUT)
    for method, target, *_ in BAD:
        path, _, query = target.partition("?")
        request = Request(method, path, None, urllib.parse.parse_qs(query), {}, b"")
        try:
            route, _ = router.find(request)
        except ApiError:
            continue  # the cases of unknown paths and methods
        covered.add((route.method, route.path))
    assert sorted(set(router.routes) - covered) == []


def test_every_route_of_a_lazy_area_passes_its_gate() -> None:
    """A lazy area's routes are added by the first request whose path matches its gate: a
    path of the area that the gate let by would be a 404."""
    from boxd._dockerapi._server import LAZY_AREAS

    for name, gate in LAZY_AREAS.items():
        for r in importlib.import_module(name).ROUTES:
            path = r.path.replace("([^/]+)", "x").replace("(.+)", "x/y")
            assert r.pattern.match(path), (name, r.path)
            assert gate.match(path), (name, r.path)


def test_the_engine_api_imports_the_rare_areas_on_first_use() -> None:
    """A `docker run` needs none of the image, network, volume and copy verbs: their
    modules are the daemon's memory only once used (bench/README.md, session 7)."""
    code = "import sys, boxd._daemon, boxd._dockerapi._server; print(*sorted(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    rare = {"boxd._images.messages", "boxd._netserver", "boxd._volserver", "boxd._copyserver",
            "boxd._copymessages", "boxd._dockerapi._images", "tarfile", "http",
            "wsproto"}  # fmt: skip
    assert not rare & loaded


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD)
def test_bad_input_gets_dockers_error_shape(
    clean: Daemon, method: str, path: str, body: bytes | None, status: int, words: str
) -> None:
    got, headers, data = _call(clean, method, path, body)
    assert got == status, data
    old = re.match(r"/v(\d+)(?:\.(\d+))?/", path)
    if old and (int(old[1]), int(old[2] or 0)) < (1, 24):
        # A client of an API dockerd dropped: Go's plain text, as dockerd answers it, so
        # that it reads the error (moby's TestAPIClientVersionOldNotSupported).
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert data.endswith(b"\n") and words.encode() in data, data
        return
    assert headers["content-type"] == "application/json"
    if status == 200:
        last: dict[str, Any] = json.loads(data.splitlines()[-1])
        assert words in last["errorDetail"]["message"] and words in last["error"]
    elif method != "HEAD":  # a HEAD answer has its headers and no body
        error: dict[str, Any] = json.loads(data)
        assert list(error) == ["message"]
        assert words in error["message"]
    # Nothing was created by a bad request, and the daemon keeps serving.
    status, _, listing = _call(clean, "GET", "/containers/json?all=1")
    assert (status, json.loads(listing)) == (200, [])


def test_a_tmpfs_takes_the_place_of_an_anonymous_volume(clean: Daemon) -> None:
    """``Config.Volumes`` and ``HostConfig.Tmpfs`` on the same path: the tmpfs is mounted
    there and no volume is made, as dockerd does (moby#40446,
    TestCreateTmpfsOverrideAnonymousVolume); boxd refused "duplicate mount point"."""
    script = "mount | grep ' /foo type tmpfs' && mount | grep ' /bar type tmpfs'"
    body = {
        "Image": "default",
        "Cmd": ["sh", "-c", script],
        "Volumes": {"/foo": {}, "/bar": {}},
        "HostConfig": {"Tmpfs": {"/foo": "", "/bar": "size=999k"}},
    }
    status, _, data = _call(clean, "POST", "/containers/create?name=tv", json.dumps(body).encode())
    assert status == 201, data
    assert _call(clean, "POST", "/containers/tv/start")[0] == 204
    status, _, data = _call(clean, "POST", "/containers/tv/wait")
    assert json.loads(data)["StatusCode"] == 0, _call(
        clean, "GET", "/containers/tv/logs?stdout=1&stderr=1"
    )
    inspect = json.loads(_call(clean, "GET", "/containers/tv/json")[2])
    assert inspect["Config"]["Volumes"] == {"/foo": {}, "/bar": {}}
    assert json.loads(_call(clean, "GET", "/volumes")[2])["Volumes"] == []
    assert _call(clean, "DELETE", "/containers/tv")[0] == 204


def test_a_pids_limit_of_0_is_no_limit_at_create_and_update(clean: Daemon) -> None:
    """dockerd reads a PidsLimit given as 0 as no limit, at create and at update, and
    before API 1.40 an update's is ignored (moby's TestUpdatePidsLimit).  boxd took 0 as
    not given: its default limit at create, the limit kept at update."""

    def pids(name: str) -> Any:
        return json.loads(_call(clean, "GET", f"/containers/{name}/json")[2])["HostConfig"][
            "PidsLimit"
        ]

    for name, limit in (("p0", 0), ("p32", 32), ("pnone", None)):
        host = {} if limit is None else {"PidsLimit": limit}
        made = json.dumps({"Image": "default", "Cmd": ["sleep", "60"], "HostConfig": host})
        assert _call(clean, "POST", f"/containers/create?name={name}", made.encode())[0] == 201
    assert (pids("p0"), pids("p32"), pids("pnone")) == (-1, 32, None)
    assert _call(clean, "POST", "/containers/p32/start")[0] == 204
    for version, limit, shown in (("v1.39", 16, 32), ("v1.40", 16, 16), ("v1.44", 0, -1)):
        update = json.dumps({"PidsLimit": limit}).encode()
        assert _call(clean, "POST", f"/{version}/containers/p32/update", update)[0] == 200
        assert pids("p32") == shown, version
    for name in ("p0", "p32", "pnone"):
        assert _call(clean, "DELETE", f"/containers/{name}?force=1")[0] == 204


def test_a_json_body_must_be_sent_as_json(clean: Daemon) -> None:
    """dockerd reads a route's JSON body only when it comes as ``application/json``
    (moby's TestContainerInvalidJSON, TestNetworkInvalidJSON, TestVolumesInvalidJSON):
    boxd read a form's or a text's as JSON, and created what it asked for."""
    create = json.dumps({"Image": "default", "Cmd": ["true"]}).encode()
    for path in ["/containers/create", "/containers/nope/exec", "/volumes/create",
                 "/networks/create", "/networks/nope/disconnect"]:  # fmt: skip
        for kind in ["text/plain", "application/x-www-form-urlencoded", None]:
            conn = UnixHTTP(clean.docker_socket)
            try:
                conn.request(
                    "POST", path, body=create, headers={"Content-Type": kind} if kind else {}
                )
                r = conn.getresponse()
                status, message = r.status, json.loads(r.read())["message"]
            finally:
                conn.close()
            want = f"unsupported Content-Type header ({kind or ''}): must be 'application/json'"
            assert (status, message) == (400, want), (path, kind)
    # A media type's parameters are its own: JSON still.
    conn = UnixHTTP(clean.docker_socket)
    try:
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        conn.request("POST", "/containers/create?name=typed", body=create, headers=headers)
        assert conn.getresponse().status == 201
    finally:
        conn.close()
    assert _call(clean, "GET", "/volumes")[2].count(b'"Name"') == 0
    assert _call(clean, "DELETE", "/containers/typed")[0] == 204


def test_container_state_errors(clean: Daemon) -> None:
    body = json.dumps({"Image": "default", "Cmd": ["sleep", "60"]}).encode()
    status, _, data = _call(clean, "POST", "/containers/create?name=s", body)
    assert status == 201
    cid = json.loads(data)["Id"]
    # moby's words: a kill's refusal names the container as asked for, and one with no
    # process by its id (a timeout that was not a whole number of seconds was taken).
    words = {
        "/containers/s/kill": f"cannot kill container: s: container {cid} is not running",
        f"/containers/{cid}/kill": f"cannot kill container: {cid}: container {cid} is not running",
        f"/containers/{cid}/kill?signal=SIGNOPE": (
            f"cannot kill container: {cid}: invalid signal: SIGNOPE"
        ),
        f"/containers/{cid}/stop?t=1.5": "invalid value for 't': '1.5' is not an integer",
        f"/containers/{cid}/stop?t=soon": "invalid value for 't': 'soon' is not an integer",
        f"/containers/{cid}/resize?h=10": "missing w: a terminal size needs h and w in 1..65535",
        f"/containers/{cid}/resize": "missing h and w: a terminal size needs h and w in 1..65535",
        f"/containers/{cid}/logs?stdout=1&since=1.5e9": (
            "invalid value for 'since': '1.5e9' is not a Unix time (SECONDS[.NANOSECONDS])"
        ),
    }
    for method, path, want in [
        ("POST", "/containers/s/kill", 409),
        ("POST", f"/containers/{cid}/kill", 409),
        ("POST", f"/containers/{cid}/resize?h=10&w=10", 409),
        ("POST", f"/containers/{cid}/exec", 409),
        ("POST", f"/containers/{cid}/stop", 304),
        ("POST", f"/containers/{cid}/stop?t=soon", 400),  # checked before the 304, as moby
        ("POST", f"/containers/{cid}/start", 204),
        ("POST", f"/containers/{cid}/start", 304),
        ("GET", f"/containers/{cid}/top?ps_args=--bogus", 400),
        ("GET", f"/containers/{cid}/top?ps_args=-o%20comm", 400),
        ("POST", f"/containers/{cid}/resize?h=0&w=10", 400),
        ("POST", f"/containers/{cid}/resize?h=10", 400),
        ("POST", f"/containers/{cid}/resize", 400),
        ("POST", f"/containers/{cid}/kill?signal=SIGNOPE", 400),
        ("POST", f"/containers/{cid}/stop?t=1.5", 400),
        ("POST", f"/containers/{cid}/restart?t=1.5", 400),
        ("POST", f"/containers/{cid}/wait?condition=whenever", 400),
        ("GET", f"/containers/{cid}/logs", 400),
        ("GET", f"/containers/{cid}/logs?stdout=1&tail=some", 400),
        ("GET", f"/containers/{cid}/logs?stdout=1&since=1.5e9", 400),
        ("GET", f"/containers/{cid}/logs?stdout=1&until=-", 400),
        ("DELETE", f"/containers/{cid}", 409),
        ("POST", f"/containers/{cid}/exec", 400),
        ("DELETE", f"/containers/{cid}?force=1", 204),
    ]:
        got, _, data = _call(clean, method, path, b'{"Cmd":[]}' if path.endswith("exec") else None)
        assert got == want, (method, path, data)
        if want >= 400:
            assert json.loads(data)["message"]
        if path in words:
            assert json.loads(data)["message"] == words[path]


def test_malformed_http_is_answered_and_the_daemon_goes_on(clean: Daemon) -> None:
    for raw, words in (
        (b"NONSENSE\r\n\r\n", "bad HTTP request: illegal request line: 'NONSENSE'"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n",
            "bad HTTP request: illegal header line: 'Bad header'",  # not bytearray(b'...')
        ),
    ):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(clean.docker_socket))
            s.settimeout(30)
            s.sendall(raw)
            reply = s.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"message": words}
    # A client that vanishes mid-request costs nothing.
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(clean.docker_socket))
        s.sendall(b"POST /containers/create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    assert _call(clean, "GET", "/_ping")[0] == 200
    # Silent connections cannot lock real clients out: the oldest waiting ones are closed.
    silent = [socket.socket(socket.AF_UNIX) for _ in range(200)]
    try:
        for s in silent:
            s.connect(str(clean.docker_socket))
        assert _call(clean, "GET", "/_ping")[0] == 200
        silent[0].settimeout(30)
        assert silent[0].recv(1) == b""  # closed by the daemon
    finally:
        for s in silent:
            s.close()


def test_a_request_typed_by_hand_is_answered(clean: Daemon) -> None:
    """A request typed into socat or nc comes in pieces, seconds apart: dockerd waits 5
    minutes for a new connection's headers and for a body as long as it takes.  boxd closed
    a connection whose first request (body included) had not all come within 5 s, and the
    one typing it got no answer."""
    body = json.dumps({"Image": "default", "Cmd": ["true"]}).encode()
    typed = [
        (b"GET /_ping HTTP/1.1\r\nHo", b"st: d\r\n\r\n"),
        (
            b"POST /containers/create?name=typed HTTP/1.1\r\nHost: d\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body),
            body,
        ),
    ]
    socks = [socket.socket(socket.AF_UNIX) for _ in typed]
    try:
        for s, (first, _) in zip(socks, typed, strict=True):
            s.connect(str(clean.docker_socket))
            s.settimeout(30)
            s.sendall(first)
        time.sleep(6)  # longer than boxd waited
        assert _call(clean, "GET", "/_ping")[0] == 200  # others are served meanwhile
        answers = []
        for s, (_, rest) in zip(socks, typed, strict=True):
            s.sendall(rest)
            answers.append(s.recv(65536).split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 200 OK", b"HTTP/1.1 201 Created"]
    finally:
        for s in socks:
            s.close()


def test_bodies_announced_and_never_sent_cannot_lock_others_out(clean: Daemon) -> None:
    """A body is waited for as long as it takes, but its connection still counts among
    those waiting for a request: the longest-waiting of more than 128 is closed."""
    head = b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 10\r\n\r\n{"
    stuck = [socket.socket(socket.AF_UNIX) for _ in range(200)]
    try:
        for s in stuck:
            s.connect(str(clean.docker_socket))
            s.sendall(head)
        assert _call(clean, "GET", "/_ping")[0] == 200
        stuck[0].settimeout(30)
        assert stuck[0].recv(1) == b""  # closed by the daemon, with no answer
    finally:
        for s in stuck:
            s.close()


def test_a_client_sending_too_much_reads_why_it_was_refused(clean: Daemon) -> None:
    """A request refused before it was read whole (a body over 16 MiB, headers over
    64 KiB) is answered, then the connection lingers until its client has sent the rest
    and closed: closed with input unread, the socket was reset, and a client that sends
    its whole request before reading (Python's http.client) got a broken pipe, or a reset
    for the answer it had not read yet, instead of the words that named what was wrong."""
    create = json.dumps({"Image": "default", "Cmd": ["true"], "Env": ["X=" + "x" * (20 << 20)]})
    for _ in range(3):
        status, headers, data = _call(clean, "POST", "/containers/create", create.encode())
        assert (status, headers["content-type"]) == (413, "application/json")
        assert json.loads(data) == {"message": "request body larger than 16777216 bytes"}
    # Chunked (docker-py's for a generator), so refused only once 16 MiB have been read.
    conn = UnixHTTP(clean.docker_socket)
    try:
        chunks = (create[i : i + 65536].encode() for i in range(0, len(create), 65536))
        conn.request("POST", "/containers/create", body=chunks, encode_chunked=True)
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())["message"]) == (
            413,
            "request body larger than 16777216 bytes",
        )
    finally:
        conn.close()
    big = b"b" * (2 << 20)
    for head in (
        b"GET /_ping?" + big + b" HTTP/1.1\r\nHost: d",
        b"GET /_ping HTTP/1.1\r\nX: " + big,
    ):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(clean.docker_socket))
            s.sendall(head + b"\r\n\r\n")
            assert _refusal_431(s) == (
                "bad HTTP request: request line and headers larger than 1048576 bytes"
            )
    status, _, listing = _call(clean, "GET", "/containers/json?all=1")
    assert (status, json.loads(listing)) == (200, [])


def _refusal_431(s: socket.socket) -> str:
    """The message of the 431 answer the daemon sends on ``s`` before it closes it."""
    s.settimeout(30)
    reply = b""
    while data := s.recv(65536):
        reply += data
    assert reply.startswith(b"HTTP/1.1 431 ")
    return str(json.loads(reply.partition(b"\r\n\r\n")[2])["message"])


def _ping_with_registry_config(daemon: Daemon, config: str) -> tuple[int, bytes]:
    conn = UnixHTTP(daemon.docker_socket)
    try:
        conn.request("GET", "/_ping", headers={"X-Registry-Config": config})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _registry_config(size: int) -> str:
    """An X-Registry-Config of at most ``size`` bytes, and nearly that: the credentials of
    many registries."""
    auth = {"username": "u", "password": "p" * 40}
    entry = len(json.dumps({"registry10000.example:5000": auth}))  # names of up to 5 digits
    config = {f"registry{i}.example:5000": auth for i in range(size * 3 // 4 // entry)}
    encoded = base64.urlsafe_b64encode(json.dumps(config).encode()).decode()
    assert len(encoded) <= size
    return encoded


def test_request_headers_up_to_a_mib_as_dockerd_reads_them(clean: Daemon) -> None:
    """A request's headers may take 1 MiB, as dockerd's (Go's default): an X-Registry-Config
    with the credentials of many registries passed 64 KiB, boxd's limit, and was refused.
    (The config was once 1.004 MiB: refused when the daemon read it in pieces, under load.)"""
    config = _registry_config(1020 << 10)
    assert len(config) > 1000 << 10
    assert _ping_with_registry_config(clean, config) == (200, b"OK")


def test_large_request_heads_sent_slowly_take_a_bounded_room(clean: Daemon) -> None:
    """Heads over 64 KiB share 16 MiB: connections that each send most of a MiB of headers
    and no end hold no more (the oldest are answered 431 to make room, as the longest
    silent connections are closed), and a client that sends a large head at once is served."""
    part = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Registry-Config: " + b"a" * (1000 << 10)
    slow = [socket.socket(socket.AF_UNIX) for _ in range(20)]
    try:
        for s in slow:
            s.connect(str(clean.docker_socket))
            s.sendall(part)
        assert _ping_with_registry_config(clean, "b" * (1000 << 10)) == (200, b"OK")
        # 17 heads of 1000 KiB hold 936 KiB each of the 16 MiB: of 21, 4 at least were cut.
        until(lambda: len(_readable(slow)) >= 4, "the oldest heads cut")
        for s in _readable(slow):
            assert _refusal_431(s) == (
                "bad HTTP request: request line and headers larger than 65536 bytes "
                "while other clients' large ones fill the 16777216 bytes kept for them"
            )
    finally:
        for s in slow:
            s.close()


def _rss_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]) >> 10


def test_refused_heads_are_not_held_while_their_connections_linger(clean: Daemon) -> None:
    """A connection refused for the size of its headers lingers (it reads what its client
    still sends, up to 5 s), holding none of them: forty refused heads of 1.1 MiB each
    held 44 MiB of the daemon's memory while their clients stayed."""
    assert clean.process is not None
    before = _rss_mib(clean.process.pid)
    head = b"GET /_ping HTTP/1.1\r\nX: " + b"x" * (1100 << 10) + b"\r\n\r\n"
    refused = [socket.socket(socket.AF_UNIX) for _ in range(40)]
    try:
        for s in refused:
            s.connect(str(clean.docker_socket))
            s.sendall(head)
            s.settimeout(30)
            assert s.recv(12) == b"HTTP/1.1 431"
        assert _rss_mib(clean.process.pid) - before < 20
    finally:
        for s in refused:
            s.close()


def _readable(socks: list[socket.socket]) -> list[socket.socket]:
    return select.select(socks, [], [], 0)[0]


def test_a_kept_alive_connection_is_not_closed_for_newer_ones(clean: Daemon) -> None:
    """A client's pool (docker-py's: ten and more per client) keeps its connections open
    between requests; one closed as the client sends its next request would get no answer.
    dockerd keeps them; so does boxd, also while more new connections come than may wait."""

    def ping(kept: socket.socket) -> bytes:
        kept.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\nOK") and (data := kept.recv(65536)):
            answer += data
        return answer

    with socket.socket(socket.AF_UNIX) as kept:
        kept.connect(str(clean.docker_socket))
        kept.settimeout(30)
        assert ping(kept).startswith(b"HTTP/1.1 200 ")
        silent = [socket.socket(socket.AF_UNIX) for _ in range(200)]
        try:
            for s in silent:
                s.connect(str(clean.docker_socket))
            assert _call(clean, "GET", "/_ping")[0] == 200
            assert ping(kept).startswith(b"HTTP/1.1 200 ")
        finally:
            for s in silent:
                s.close()


# ---- images, against a real registry on loopback --------------------------------------


def test_distribution_inspect(clean: Daemon, tmp_path: Path, busybox_root: Path) -> None:
    """``/distribution/NAME/json`` (docker-py's ``get_registry_data``, which a check for a
    newer image reads) gives the manifest's descriptor and platform from the registry,
    pulling nothing; it was not served (404 page not found)."""
    docker = pytest.importorskip("docker")
    layout = tmp_path / "layout"
    build_oci_image(layout, "v1", busybox_root)
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        with running_registry(tmp_path) as registry:
            push(layout, "v1", registry, "tools/box:v1")
            ref = f"{registry.host}/tools/box:v1"
            data = client.images.get_registry_data(ref)
            assert (
                data.attrs["Descriptor"]["mediaType"]
                == "application/vnd.oci.image.manifest.v1+json"
            )
            assert [p["os"] for p in data.attrs["Platforms"]] == ["linux"]  # its config's
            assert [i.tags for i in client.images.list(name=ref)] == []  # nothing pulled
            pulled = client.images.pull(ref)
            assert pulled.attrs["RepoDigests"] == [f"{registry.host}/tools/box@{data.id}"]
            with pytest.raises(docker.errors.NotFound):
                client.images.get_registry_data(f"{registry.host}/tools/box:nope")
            # The module's later pulls of the same layers must fetch them again.
            client.images.remove(ref)
    finally:
        client.close()


@needs_cli
def test_pull_images_run_tag_rmi(clean: Daemon, tmp_path: Path, busybox_root: Path) -> None:
    layout = tmp_path / "layout"
    build_oci_image(
        layout,
        "v1",
        busybox_root,
        config={
            "cmd": ["/bin/sh", "-c", "echo $GREETING from $(pwd)"],
            "env": ["GREETING=hi", "PATH=/bin"],
            "workingdir": "/work",
        },
    )
    with running_registry(tmp_path) as registry:
        push(layout, "v1", registry, "tools/box:v1")
        push(layout, "v1", registry, "other/box:v1")
        ref = f"{registry.host}/tools/box:v1"
        r = _docker(clean, "pull", ref)
        assert r.returncode == 0, r.stderr
        # As dockerd's on a pipe: the repository's path, then a line per layer (the CLI
        # leaves out those with a progress bar: only "Downloading" has one).
        assert r.stdout.splitlines()[0] == "v1: Pulling from tools/box"
        assert any(line.endswith(": Pull complete") for line in r.stdout.splitlines())
        assert "Digest: sha256:" in r.stdout
        assert f"Status: Downloaded newer image for {ref}" in r.stdout
        r = _docker(clean, "pull", ref)
        assert f"Status: Image is up to date for {ref}" in r.stdout
        # Each stored layer "Already exists" at once, as dockerd says it, never "Waiting".
        assert ": Already exists" in r.stdout and "Waiting" not in r.stdout
        tags = _docker(clean, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert sorted(tags) == sorted(["default:latest", ref])
        # The image's Cmd, Env and WorkingDir; a command and an entrypoint replace them.
        assert _docker(clean, "run", "--rm", ref).stdout == "hi from /work\n"
        assert _docker(clean, "run", "--rm", ref, "echo", "over").stdout == "over\n"
        r = _docker(clean, "run", "--rm", "--entrypoint", "/bin/echo", ref, "a", "b")
        assert r.stdout == "a b\n"
        fmt = "{{.Config.WorkingDir}} {{len .RootFS.Layers}}"
        assert _docker(clean, "image", "inspect", "-f", fmt, ref).stdout == "/work 1\n"
        # run pulls what is missing, as the CLI does it (create: 404, pull, create).
        other = f"{registry.host}/other/box:v1"
        r = _docker(clean, "run", "--rm", other, "echo", "pulled")
        assert (r.returncode, r.stdout) == (0, "pulled\n")
        assert "Unable to find image" in r.stderr
        r = _docker(clean, "pull", f"{registry.host}/tools/box:nope")
        assert r.returncode == 1
        assert "nope" in r.stderr
        # -a: every tag (the name alone, as dockerd takes it), then the repository's status.
        r = _docker(clean, "pull", "-a", f"{registry.host}/other/box")
        assert "v1: Pulling from other/box" in r.stdout, r.stderr
        assert f"Image is up to date for {registry.host}/other/box\n" in r.stdout
        # rmi: of one of two tags, untag; refused while a container uses the image.
        assert _docker(clean, "tag", ref, "mine:1").returncode == 0
        assert _docker(clean, "rmi", "mine:1").stdout == "Untagged: mine:1\n"
        # Its repository's digest goes with the repository's last tag, as Docker's.
        untagged = _docker(clean, "rmi", other).stdout.splitlines()
        assert untagged[0] == f"Untagged: {other}"
        assert [line.split("@")[0] for line in untagged[1:]] == [
            f"Untagged: {registry.host}/other/box"
        ]
        assert _docker(clean, "create", "--name", "user", ref).returncode == 0
        r = _docker(clean, "rmi", ref)
        assert (r.returncode, "(must force) - container " in r.stderr) == (1, True)
        assert _docker(clean, "rm", "user").returncode == 0
        r = _docker(clean, "rmi", ref)
        assert r.returncode == 0, r.stderr
        assert f"Untagged: {ref}" in r.stdout and "Deleted: sha256:" in r.stdout
        assert _docker(clean, "images", "-q").stdout.split() == [_default_id()[7:19]]

        docker = pytest.importorskip("docker")
        client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
        try:
            image = client.images.pull(f"{registry.host}/tools/box", tag="v1")
            assert image.tags == [ref]
            out = client.containers.run(ref, remove=True)
            assert out == b"hi from /work\n"
            client.images.remove(ref)
            with pytest.raises(docker.errors.ImageNotFound):
                client.images.get(ref)
        finally:
            client.close()


def test_a_pull_that_finds_nothing_is_an_error_status(clean: Daemon, tmp_path: Path) -> None:
    """As dockerd answers it: a pull that fails before its first layer (a registry out of
    reach, no such manifest) is an error status, 500 or 404, not a 200 stream that ends in
    an error: docker-py's ``images.pull`` (and so testcontainers' pull of Ryuk) raised a
    later "No such image" that hid why."""
    status, _, data = _call(clean, "POST", "/images/create?fromImage=127.0.0.1:1/nothing&tag=1")
    assert status == 500, data
    assert "cannot reach registry 127.0.0.1:1" in json.loads(data)["message"]
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        with running_registry(tmp_path) as registry:
            path = f"/images/create?fromImage={registry.host}/tools/box&tag=nope"
            status, _, data = _call(clean, "POST", path)
            assert status == 404 and "nope not found" in json.loads(data)["message"], data
            with pytest.raises(docker.errors.NotFound, match="nope not found"):
                client.images.pull(f"{registry.host}/tools/box", tag="nope")
            r = _docker(clean, "run", "--rm", f"{registry.host}/tools/box:nope")
            assert r.returncode == 125 and "nope not found" in r.stderr, r.stderr
    finally:
        client.close()


def _default_id() -> str:
    from boxd._images.config import DEFAULT_ID

    return DEFAULT_ID


@needs_cli
def test_commit_with_a_configuration(clean: Daemon) -> None:
    """docker-py's ``commit(conf=...)``: the configuration's fields replace the
    container's, which fills in the rest, as Docker's commit merges them (the variables,
    labels and ports of both, the given winning; the container's command unless one is
    given; ``changes`` apply to the given configuration).  It was refused."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        c = client.containers.run(
            "default", ["sh", "-c", "echo made > /tmp/made; sleep 60"], detach=True,
            environment={"KEEP": "1", "OVER": "old"}, labels={"a": "1"}, working_dir="/tmp",
        )  # fmt: skip
        while c.exec_run(["cat", "/tmp/made"]).exit_code != 0:
            time.sleep(0.05)
        conf = {
            "Cmd": ["sh", "-c", 'cat made; echo "$OVER $ADDED $KEEP"'],
            "Env": ["OVER=new", "ADDED=2"],
            "Labels": {"b": "2"},
            "ExposedPorts": {"80/tcp": {}},
            "Hostname": "a container's, not an image's",
        }
        image = c.commit("committed", "1", conf=conf)
        config = image.attrs["Config"]
        assert config["Env"] == ["OVER=new", "ADDED=2", "KEEP=1"]
        assert (config["Labels"], config["ExposedPorts"]) == ({"a": "1", "b": "2"}, {"80/tcp": {}})
        assert client.containers.run("committed:1", remove=True) == b"made\nnew 2 1\n"
        image = c.commit("committed", "2", conf={"Entrypoint": ["echo"]}, changes=["ENV Z=9"])
        config = image.attrs["Config"]
        assert (config["Entrypoint"], config.get("Cmd")) == (["echo"], None)
        assert config["Env"] == ["Z=9", "KEEP=1", "OVER=old"]
        with pytest.raises(docker.errors.APIError) as bad:
            client.api.commit(c.id, conf={"Env": "A=1"})
        assert "invalid config.Env: expected a list of strings, got 'A=1'" in str(bad.value)
    finally:
        client.close()
        clean.remove_containers()
        _docker(clean, "rmi", "committed:1", "committed:2")


def test_import_save_load_commit_history_prune(
    clean: Daemon, tmp_path: Path, busybox_root: Path
) -> None:
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
    r = _docker(
        clean, "import", "-c", 'CMD ["/bin/echo", "imported"]', "-m", "a tar", str(tarball), "bb:1"
    )
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert _docker(clean, "run", "--rm", "bb:1").stdout == "imported\n"
    assert _docker(clean, "inspect", "-f", "{{.Comment}}", "bb:1").stdout == "a tar\n"
    r = _docker(clean, "import", "-c", "LABEL team=a", str(tarball), "labelled:1")
    assert r.returncode == 0, r.stderr
    listed = _docker(clean, "images", "--filter", "label=team=a", "--format", "{{.Repository}}")
    assert listed.stdout == "labelled\n"
    listed = _docker(clean, "images", "--format", "{{.Repository}}", "bb")
    assert listed.stdout == "bb\n"
    # An image of several tags: the reference filter shows those it matches, as Docker's.
    assert _docker(clean, "tag", "bb:1", "example.com/other/bb:2").returncode == 0
    fmt = "{{.Repository}}:{{.Tag}}"
    for wanted, shown in (
        ("bb", "bb:1\n"), ("bb:1", "bb:1\n"), ("b*", "bb:1\n"),
        ("example.com/*/*", "example.com/other/bb:2\n"),
    ):  # fmt: skip
        assert _docker(clean, "images", "--format", fmt, wanted).stdout == shown, wanted
    # ps's ancestor filter names an image by any of its names or its id, as Docker's.
    user = _docker(clean, "create", "bb:1").stdout.strip()[:12]
    for ancestor in ("bb:1", "example.com/other/bb:2", image_id, image_id[7:19]):
        r = _docker(clean, "ps", "-a", "-q", "-f", f"ancestor={ancestor}")
        assert r.stdout == f"{user}\n", (ancestor, r.stderr)
    assert _docker(clean, "ps", "-a", "-q", "-f", "ancestor=default").stdout == ""
    assert _docker(clean, "rm", user).returncode == 0
    assert _docker(clean, "rmi", "example.com/other/bb:2").returncode == 0
    r = _docker(clean, "images", "--filter", "colour=red")
    assert r.returncode == 1 and "invalid filter 'colour'" in r.stderr
    assert _docker(clean, "rmi", "labelled:1").returncode == 0
    saved = tmp_path / "saved.tar"
    assert _docker(clean, "save", "-o", str(saved), "bb:1").returncode == 0
    assert _docker(clean, "rmi", "bb:1").returncode == 0
    r = _docker(clean, "load", "-i", str(saved))
    assert (r.returncode, r.stdout) == (0, "Loaded image: bb:1\n"), r.stderr
    assert _docker(clean, "images", "-q", "--no-trunc", "bb:1").stdout.strip() == image_id
    history = _docker(clean, "history", "--format", "{{.CreatedBy}}|{{.Comment}}", "bb:1").stdout
    assert history == "|a tar\n"  # as Docker's import: no command made it
    size = _docker(clean, "history", "--format", "{{.Size}}", "bb:1").stdout
    assert size.endswith("MB\n"), size  # the layer's, unpacked
    r = _docker(clean, "run", "--name", "cm", "bb:1", "/bin/sh", "-c", "echo made > /made")
    assert r.returncode == 0, r.stderr
    r = _docker(clean, "commit", "-c", "RUN true", "cm", "bb:2")
    assert r.returncode == 1 and "RUN is not a valid change command" in r.stderr
    r = _docker(
        clean, "commit", "-c", "ENV MADE=yes", "-c", "CMD cat /made; echo $MADE", "cm", "bb:2"
    )
    assert r.returncode == 0, r.stderr
    assert _docker(clean, "run", "--rm", "bb:2").stdout == "made\nyes\n"
    # Its Parent: the image it was committed from, as Docker shows it (docker-py's
    # test_commit reads it); an imported one has none.
    assert _docker(clean, "inspect", "-f", "{{.Parent}}", "bb:2").stdout == f"{image_id}\n"
    assert _docker(clean, "inspect", "-f", "{{.Parent}}", "bb:1").stdout == "\n"
    rows = json.loads(_call(clean, "GET", "/images/json?filters={%22reference%22:[%22bb:2%22]}")[2])
    assert [row["ParentId"] for row in rows] == [image_id]
    exported = tmp_path / "exported.tar"
    assert _docker(clean, "export", "-o", str(exported), "cm").returncode == 0
    with tarfile.open(exported) as tar:
        names = tar.getnames()
    assert "made" in [n.removeprefix("./") for n in names]
    assert "bin/busybox" in [n.removeprefix("./") for n in names]
    assert _docker(clean, "rm", "cm").returncode == 0
    for keeping in ("until=2000-01-01", "label=team"):  # made today; with no labels
        r = _docker(clean, "image", "prune", "-a", "-f", "--filter", keeping)
        assert (r.returncode, r.stdout) == (0, "Total reclaimed space: 0B\n"), r.stderr
    r = _docker(clean, "image", "prune", "-a", "-f", "--filter", "colour=red")
    assert r.returncode == 1 and "'colour'" in r.stderr
    pruned = _docker(clean, "image", "prune", "-a", "-f").stdout
    assert "untagged: bb:1" in pruned and "untagged: bb:2" in pruned
    # The unpacked layers' bytes, as dockerd counts what its prune removed.
    assert pruned.splitlines()[-1] not in ("Total reclaimed space: 0B", "")
    assert _docker(clean, "images", "-q").stdout.split() == [_default_id()[7:19]]


# ---- networks and published ports (the session runs in a network namespace of its own) ---


def _fetch(url: str) -> str:
    """The body at ``url``, retried while the server in the container starts (bounded)."""
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


@needs_cli
def test_ps_filters_network_volume_publish_expose(clean: Daemon) -> None:
    """``docker ps --filter network=`` (a name or a prefix of the id), ``volume=``,
    ``publish=``, ``expose=`` and ``is-task=``, of containers running or not."""
    assert _docker(clean, "network", "create", "pf").returncode == 0
    try:
        network_id = _docker(clean, "network", "inspect", "-f", "{{.Id}}", "pf").stdout.strip()
        web = _docker(
            clean, "create", "--name", "web", "--network", "pf", "-v", "pfvol:/data", "-p",
            "127.0.0.1:0:80", "--expose", "9000", "default", "true",
        ).stdout.strip()[:12]  # fmt: skip
        plain = _docker(clean, "create", "--name", "web2", "default", "true").stdout.strip()[:12]

        def shown(*filters: str) -> list[str]:
            args = [arg for f in filters for arg in ("--filter", f)]
            r = _docker(clean, "ps", "-a", "-q", *args)
            assert r.returncode == 0, r.stderr
            return r.stdout.split()

        assert shown("network=pf") == shown(f"network={network_id[:6]}") == [web]
        assert shown("network=bridge") == [plain]
        assert shown("volume=pfvol") == shown("volume=/data") == [web]
        # Created, not running: no published port yet (moby's list takes a running
        # container's host ports), its exposed ones.
        assert shown("expose=9000/tcp") == shown("expose=9000") == [web]
        assert shown("publish=9000") == shown("network=pf", "volume=nope") == []
        assert shown("is-task=false") == [plain, web]
        # name: a regular expression, as Docker's (^web$ is how scripts ask for one name)
        assert shown("name=^web$") == shown("name=^/web$") == [web]
        assert shown("name=web") == [plain, web]
        # So is network ls's name filter.
        for wanted, listed in (("^pf$", "pf\n"), ("^bridge$", "bridge\n"), ("^nope$", "")):
            r = _docker(clean, "network", "ls", "-f", f"name={wanted}", "--format", "{{.Name}}")
            assert (r.returncode, r.stdout) == (0, listed), r.stderr
        r = _docker(clean, "ps", "--filter", "publish=8080:80")
        assert r.returncode == 1 and "invalid filter 'publish=8080:80'" in r.stderr
    finally:
        clean.remove_containers()
        _docker(clean, "volume", "rm", "pfvol")
        _docker(clean, "network", "rm", "pf")


@needs_cli
def test_add_host_host_gateway(clean: Daemon) -> None:
    """``--add-host host.docker.internal:host-gateway`` (compose's ``extra_hosts`` carry
    it) names the host's address on the container's network: its bridge's gateway, as
    Docker names its docker0's; with ``--network host`` the host is 127.0.0.1."""

    def named(*args: str) -> str:
        r = _docker(
            clean, "run", "--rm", "--add-host", "host.docker.internal:host-gateway", *args,
            "default", "sh", "-c", "grep -w host.docker.internal /etc/hosts",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    fmt = "{{(index .IPAM.Config 0).Gateway}}"
    gateway = _docker(clean, "network", "inspect", "-f", fmt, "bridge").stdout.strip()
    assert named() == f"{gateway}\thost.docker.internal\n"
    assert _docker(clean, "network", "create", "--subnet", "10.66.0.0/24", "hg").returncode == 0
    try:
        assert named("--network", "hg") == "10.66.0.1\thost.docker.internal\n"
    finally:
        _docker(clean, "network", "rm", "hg")
    assert named("--network", "host") == "127.0.0.1\thost.docker.internal\n"
    r = _docker(clean, "run", "--rm", "--network", "none", "--add-host", "h:host-gateway",
                "default", "true")  # fmt: skip
    assert r.returncode == 125
    assert "invalid --add-host 'h:host-gateway': --network none has no host to name" in r.stderr


@needs_cli
def test_an_address_or_alias_on_the_default_network_is_refused(clean: Daemon) -> None:
    """``docker run --ip`` or ``--network-alias`` on the default bridge: refused at
    create in moby's words (the default network has neither), nothing created; on a user
    network both are taken."""
    r = _docker(clean, "run", "--rm", "--ip", "172.17.0.50", "default", "true")
    words = "user specified IP address is supported on user defined networks only"
    assert r.returncode == 125 and words in r.stderr, r.stderr
    # The docker CLI refuses an alias there itself; a client of the API gets the daemon's.
    body = {
        "Image": "default",
        "Cmd": ["true"],
        "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": ["db"]}}},
    }
    status, _, answer = _call(clean, "POST", "/containers/create", json.dumps(body).encode())
    words = "network-scoped alias is supported only for containers in user defined networks"
    assert status == 400 and words in json.loads(answer)["message"], answer
    assert _docker(clean, "ps", "-aq").stdout == ""
    assert _docker(clean, "network", "create", "--subnet", "10.67.0.0/24", "ua").returncode == 0
    try:
        r = _docker(clean, "run", "--rm", "--network", "ua", "--ip", "10.67.0.9",
                    "--network-alias", "db", "default", "hostname", "-i")  # fmt: skip
        assert (r.returncode, r.stdout.strip()) == (0, "10.67.0.9"), r.stderr
    finally:
        _docker(clean, "network", "rm", "ua")


@needs_cli
def test_a_renamed_container_answers_by_its_new_name(clean: Daemon) -> None:
    """``docker rename`` of a running container on a user network: the network's DNS
    answers its new name and no longer its old one, as Docker's (it answered the old)."""
    assert _docker(clean, "network", "create", "rn").returncode == 0
    try:
        r = _docker(clean, "run", "-d", "--name", "web", "--network", "rn", "--network-alias",
                    "www", "default", "sleep", "60")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert _docker(clean, "rename", "web", "web2").returncode == 0
        look = "for n in web2 web www; do getent hosts $n >/dev/null && echo $n; done"
        r = _docker(clean, "run", "--rm", "--network", "rn", "default", "sh", "-c", look)
        assert r.stdout.split() == ["web2", "www"], r.stderr
        dns = "{{json .NetworkSettings.Networks.rn.DNSNames}}"
        assert "web2" in json.loads(_docker(clean, "inspect", "-f", dns, "web2").stdout)
    finally:
        clean.remove_containers()
        _docker(clean, "network", "rm", "rn")


@needs_cli
def test_a_shared_namespace_follows_its_container_through_a_rename(clean: Daemon) -> None:
    """``--network/--pid/--ipc container:NAME`` is kept as ``container:ID``, as Docker's
    create keeps it: after a rename of that container the sharer starts again in its
    namespaces.  It was kept by name: the restart failed ("No such container"), or joined
    a newer container given the old name."""

    def net_namespace(ref: str) -> str:
        pid = _docker(clean, "inspect", "-f", "{{.State.Pid}}", ref).stdout.strip()
        return os.readlink(f"/proc/{pid}/ns/net")

    run = ("run", "-d", "--ipc", "shareable")
    base = _docker(clean, *run, "--name", "base", "default", "sleep", "60").stdout.strip()
    modes = ("--network", "container:base", "--pid", "container:base", "--ipc", "container:base")
    r = _docker(clean, "run", "-d", "--name", "side", *modes, "default", "sleep", "60")
    assert r.returncode == 0, r.stderr
    fmt = "{{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{.HostConfig.IpcMode}}"
    assert _docker(clean, "inspect", "-f", fmt, "side").stdout.split() == [f"container:{base}"] * 3
    assert _docker(clean, "rename", "base", "old").returncode == 0
    assert _docker(clean, *run, "--name", "base", "default", "sleep", "60").returncode == 0
    r = _docker(clean, "restart", "-t", "0", "side")
    assert r.returncode == 0, r.stderr
    assert net_namespace("side") == net_namespace("old") != net_namespace("base")


@needs_cli
def test_user_network_name_lookup_and_published_port(clean: Daemon) -> None:
    assert _docker(clean, "network", "create", "n1").returncode == 0
    names = _docker(clean, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert {"bridge", "host", "none", "n1"} <= set(names)
    server = ("python3", "-m", "http.server", "8000", "--directory", "/etc")
    r = _docker(
        clean,
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "n1",
        "-p",
        "127.0.0.1::8000",
        "default",
        *server,
    )
    assert r.returncode == 0, r.stderr
    short = r.stdout.strip()[:12]
    mapped = _docker(clean, "port", "srv", "8000").stdout.split()
    assert len(mapped) == 1 and mapped[0].startswith("127.0.0.1:")
    # The published port answers on loopback; the container answers by name on n1.
    assert _fetch(f"http://{mapped[0]}/hostname") == f"{short}\n"
    lookup = (
        "import urllib.request as u; print(u.urlopen('http://srv:8000/hostname').read().decode())"
    )
    r = _docker(clean, "run", "--rm", "--network", "n1", "default", "python3", "-c", lookup)
    assert (r.returncode, r.stdout) == (0, f"{short}\n\n"), r.stderr
    address = _docker(
        clean, "inspect", "-f", "{{.NetworkSettings.Networks.n1.IPAddress}}", "srv"
    ).stdout.strip()
    members = _docker(
        clean, "network", "inspect", "-f", "{{range .Containers}}{{.IPv4Address}}{{end}}", "n1"
    ).stdout
    assert address and members.startswith(address + "/")
    r = _docker(clean, "network", "rm", "n1")
    assert (r.returncode, "in use" in r.stderr) == (1, True)
    assert _docker(clean, "rm", "-f", "srv").returncode == 0
    assert _docker(clean, "network", "rm", "n1").stdout == "n1\n"
    r = _docker(clean, "network", "inspect", "n1")
    assert r.returncode == 1
    # prune's filters: until (created before), label (networks carry none).
    assert _docker(clean, "network", "create", "n2").returncode == 0
    for keeping in ("until=2000-01-01", "label=team"):
        r = _docker(clean, "network", "prune", "-f", "--filter", keeping)
        assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = _docker(clean, "network", "prune", "-f", "--filter", "until=0s")
    assert r.stdout == "Deleted Networks:\nn2\n\n"


def test_testcontainers_reaches_an_exposed_port(clean: Daemon) -> None:
    pytest.importorskip("testcontainers")
    script = """
from testcontainers.core.container import DockerContainer
import urllib.request, time
server = ["python3", "-m", "http.server", "8000", "--directory", "/etc"]
with DockerContainer("default").with_command(server).with_exposed_ports(8000) as c:
    url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(8000)}/hostname"
    for _ in range(300):
        try:
            body = urllib.request.urlopen(url, timeout=10).read().decode()
            break
        except OSError:
            time.sleep(0.1)
    print(body.strip() == c.get_wrapped_container().id[:12])
"""
    env = {**docker_env(clean), "TESTCONTAINERS_RYUK_DISABLED": "true"}
    r = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert (r.returncode, r.stdout) == (0, "True\n"), r.stderr
    assert _docker(clean, "ps", "-a", "-q").stdout == ""  # stopped and removed by it

"""Exit codes and messages at the edges, through the real CLI and daemon: Docker's codes,
the user's own words, and a daemon that silent connections cannot lock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO, Daemon, running_daemon

from boxd import protocol

pytestmark = pytest.mark.root


def test_refused_values_exit_125_in_the_words_of_the_command_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    cases = [
        (["run", "-m", "10x", "default", "true"], "invalid --memory '10x'", 125),
        (["run", "--cpus", "64", "default", "true"], "invalid --cpus 64", 125),
        (["run", "--stop-signal", "SIGFOO", "default", "true"],
         "invalid --stop-signal 'SIGFOO'", 125),
        (["create", "--stop-signal", "SIGFOO", "default", "true"], "--stop-signal 'SIGFOO'", 125),
        (["run", "-w", "rel", "default", "true"], "invalid --workdir 'rel': must be absolute", 125),
        (["run", "-e", "=2", "default", "true"], "invalid --env '=2': use KEY=VALUE", 125),
        (["run", "--hostname", "a_b", "default", "true"], "invalid --hostname 'a_b'", 125),
        (["run", "--stop-timeout", "inf", "default", "true"], "invalid --stop-timeout 'inf'", 125),
        (["run", "--bogus", "default", "true"], "unknown option '--bogus'", 125),
        (["run", "--cap-add", "FOO", "default", "true"], 'unknown capability: "CAP_FOO"', 125),
        (["create", "--cap-drop", "CAP_BAR", "default", "true"],
         'unknown capability: "CAP_BAR"', 125),
        (
            ["run", "-v", f"{missing}:/data", "default", "true"],
            f"invalid --volume '{missing}:/data': {missing} does not exist",
            125,
        ),
        (["run", "--rm", "default", "/no/such/program"], "/no/such/program", 127),
        (["stop", "-t", "nan", "x"], "invalid -t 'nan'", 125),
        (["update", "-m", "1x", "x"], "invalid --memory '1x'", 125),
        # Not refused values: what the daemon says about a container exits 1, as Docker.
        (["stop", "ghost"], "No such container: ghost", 1),
        (["frob"], "unknown command 'frob'", 1),
    ]  # fmt: skip
    for args, message, code in cases:
        r = daemon.ctl(*args, check=False)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert r.stderr.startswith("boxctl") and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Request" not in r.stderr and "$." not in r.stderr, r.stderr
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


def test_version_without_a_daemon_prints_the_client_and_fails(tmp_path: Path) -> None:
    r = Daemon(root=tmp_path, socket=tmp_path / "none.sock").ctl("version", check=False)
    assert r.returncode == 1
    assert r.stdout.startswith("boxctl ")
    assert "cannot connect to boxd" in r.stderr
    with running_daemon(tmp_path / "up") as daemon:
        r = daemon.ctl("version")
        assert r.stdout.splitlines()[1].startswith("boxd ")


def _as_user(uid: int, gid: int, *args: str, socket_path: Path) -> subprocess.CompletedProcess[str]:
    python = _interpreter_for(uid, gid)
    return subprocess.run(
        [*_setpriv(uid, gid), python, "-m", "boxctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PYTHONPATH": _PATH, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


# This checkout, then the packages of the test's environment (attrs, ...): another
# interpreter than ours may have to run boxctl, ours being in a directory only root enters.
_PATH = os.pathsep.join((str(REPO), sysconfig.get_paths()["purelib"]))


def _setpriv(uid: int, gid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def _interpreter_for(uid: int, gid: int) -> str:
    """A Python that an unprivileged user can run and that finds boxctl in this checkout."""
    for python in (os.path.realpath(sys.executable), shutil.which("python3") or ""):
        probe = subprocess.run(
            [*_setpriv(uid, gid), python, "-c", "import boxctl._cli"],
            capture_output=True,
            cwd="/",
            env={"PYTHONPATH": _PATH},
        )
        if python and probe.returncode == 0:
            return python
    pytest.skip(f"no Python that uid {uid} may run finds boxctl in {REPO}")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory others may enter: the socket's permission is then the only barrier."""
    path = Path(tempfile.mkdtemp(prefix="boxd-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_permission_denied_names_the_socket_and_the_group(tmp_path: Path, open_dir: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    daemon = Daemon(root=tmp_path / "root", socket=open_dir / "boxd.sock")
    daemon.start()
    try:
        sock = daemon.socket
        group = sock.stat().st_gid
        r = _as_user(65534, 65534, "ps", socket_path=sock)
        assert r.returncode == 1
        assert r.stderr.startswith(f"boxctl: permission denied on {sock}: the socket is there")
        if group == 0:
            assert "only root may use it" in r.stderr and "groupadd boxd" in r.stderr
        # A socket shared with a group: the message names it and how to join it.
        os.chown(sock, 0, 65534)
        r = _as_user(65533, 65533, "ps", socket_path=sock)
        name = subprocess.run(
            ["getent", "group", "65534"], capture_output=True, text=True
        ).stdout.split(":")[0]
        assert f"only root and the group {name} may use it" in r.stderr, r.stderr
        assert f"usermod -aG {name} 65533" in r.stderr
        assert _as_user(65533, 65534, "ps", socket_path=sock).returncode == 0
    finally:
        daemon.stop()


def _reply(sock: socket.socket) -> dict[str, object]:
    sock.settimeout(60)
    decoder = protocol.FrameDecoder()
    while (frame := decoder.next()) is None:
        data = sock.recv(65536)
        assert data, "closed without a reply"
        decoder.feed(data)
    assert isinstance(frame, dict)
    return frame


def test_silent_connections_do_not_lock_out_real_clients(daemon: Daemon) -> None:
    """300 connections that never send a request once made the daemon refuse every other
    one ("too many connections"), `ps` included."""
    silent = []
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(daemon.socket))
            silent.append(s)
        assert daemon.ctl("ps").stdout.startswith("CONTAINER ID")
        # The connection that waited longest made room for the newer ones ...
        assert _reply(silent[0])["message"] == "closed: too many connections wait for a request"
        # ... and one that stays silent is closed after the first-request deadline.
        assert _reply(silent[-1])["message"] == "no request within 5s"
        assert silent[-1].recv(1) == b""
    finally:
        for s in silent:
            s.close()


def test_version_flag_and_help_command_as_docker(tmp_path: Path) -> None:
    """`docker --version`/`-v` (what scripts probe first) and `docker help [COMMAND]`,
    with no daemon needed."""
    ctl = Daemon(root=tmp_path, socket=tmp_path / "none.sock").ctl
    from boxd import __version__

    for flag in ("--version", "-v"):
        assert ctl(flag).stdout == f"boxctl version {__version__}\n"
    assert ctl("help").stdout.startswith("usage: boxctl")
    assert ctl("help", "run").stdout.startswith("usage: boxctl run [OPTIONS] IMAGE")
    r = ctl("help", "frob", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: unknown command 'frob' (see 'boxctl --help')\n")


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ("network", ("create", "ls, list", "inspect", "rm, remove", "prune", "connect")),
        ("volume", ("create", "ls, list", "inspect", "rm, remove", "prune")),
        ("image", ("ls, list", "rm, remove", "build", "history", "prune", "save", "load")),
        ("system", ("df", "prune", "events", "info")),
        ("container", ("prune", "ls, list, ps", "rm, remove", "exec", "cp", "port")),
    ],
)
def test_a_group_s_help_lists_its_commands(group: str, commands: tuple[str, ...]) -> None:
    """`docker network --help` lists the group's commands; boxctl's listed none (only -h),
    so `boxctl volume --help` did not say how to list volumes."""
    ctl = Daemon(root=Path("/nonexistent"), socket=Path("/nonexistent.sock")).ctl
    for words in ((group, "--help"), (group, "-h"), ("help", group)):
        out = ctl(*words).stdout
        assert out.startswith(f"usage: boxctl {group} "), out
        listed = out.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        names = [line[2:22].strip() for line in listed]
        assert set(commands) <= set(names), (names, out)


@pytest.mark.parametrize("group", ["network", "volume", "image", "system", "container"])
def test_a_group_without_its_command_shows_its_help_and_a_wrong_count_exits_1(group: str) -> None:
    """As the docker CLI's groups: `docker network` alone prints the group's usage and
    exits 0, an unknown subcommand exits 1; boxctl's five groups exited 2 or 125, one
    printing its help and the next an error.  A missing or extra operand exits 1 too
    ("requires at least 1 argument"), a bad option 125."""
    ctl = Daemon(root=Path("/nonexistent"), socket=Path("/nonexistent.sock")).ctl
    r = ctl(group)
    assert r.stdout.startswith(f"usage: boxctl {group} ") and "\ncommands:\n" in r.stdout
    r = ctl(group, "frob", check=False)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr == f"boxctl {group}: unknown command 'frob' (see 'boxctl {group} --help')\n"
    for words, code in [
        (("rm",), 1),
        (("run",), 1),
        (("exec", "c"), 1),
        (("top",), 1),
        (("volume", "create", "a", "b"), 1),
        (("image", "ls", "a", "b"), 1),
        (("logs", "a", "b"), 1),
        (("run", "--frob", "x"), 125),
    ]:
        r = ctl(*words, check=False)
        assert r.returncode == code and r.stderr.startswith("boxctl"), (words, r)


@pytest.mark.parametrize(
    ("words", "line"),
    [  # what the README documents, which their help said otherwise or left out
        (("volume", "create"), "-o, --opt KEY=VALUE          type=none -o o=bind -o device=DIR"),
        (("network", "ls"), "-f, --filter KEY=VALUE       name, id, label, driver, scope, "
                            "type=custom|builtin, dangling=true|false"),
        (("run",), "-c, --cpu-shares CPU_SHARES  relative CPU weight (1-262144; "),
        (("update",), "-c, --cpu-shares CPU_SHARES  relative CPU weight (1-262144; "),
        (("create",), "--network, --net NETWORK     bridge (default), host, none, container:NAME"),
        (("ps",), "-f, --filter KEY=VALUE       id, name, label, status, exited, ancestor, "
                  "before, since, health, network, volume, publish, expose, is-task"),
        (("images",), "-f, --filter KEY=VALUE       dangling, label (every one given), before, "
                      "since, until, reference"),
        (("run",), "--log-opt KEY=VALUE          max-size=10m, max-file=3; labels=, "
                   "labels-regex=, env=, env-regex=, tag=, mode=, max-buffer-size="),
    ],
)  # fmt: skip
def test_an_option_s_help_says_what_it_takes(words: tuple[str, ...], line: str) -> None:
    """`volume create -o` said "a driver option (none)" though it takes Docker's bind of a
    host directory; `network ls -f` left out `dangling`; `--cpu-shares` said 2-262144,
    though 1 is taken (README) and a refusal says 1 to 262144; `--network` left out
    container:NAME; `ps -f` half the filters it takes, `images -f` until,
    `--log-opt` max-buffer-size."""
    ctl = Daemon(root=Path("/nonexistent"), socket=Path("/nonexistent.sock")).ctl
    assert f"\n  {line}" in ctl(*words, "--help").stdout

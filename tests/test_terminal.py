"""Terminals driven as a person would: a real tmux session typing into boxctl."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, daemon_cli

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, socket_name: str, status_file: Path) -> None:
        self.base = ["tmux", "-L", socket_name]
        # Where the server listens: tmux leaves the file behind when it is killed.
        tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
        self.socket = Path(tmpdir, f"tmux-{os.getuid()}", socket_name)
        self.status_file = status_file

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], check=True, capture_output=True, text=True
        ).stdout

    def start(self, command: str, *, width: int = 100, height: int = 30) -> None:
        """Run ``command`` in the session ``t``, once the previous one has ended.

        The server outlives its sessions (``exit-empty off``): started anew for each, a
        ``new-session`` could reach the previous server as it exited ("server exited
        unexpectedly"); and the previous session must be gone, not only its command (the
        status file is written before the pane's shell exits: "duplicate session")."""
        self("start-server", ";", "set-option", "-s", "exit-empty", "off")
        deadline = time.monotonic() + 20
        while self.alive():
            assert time.monotonic() < deadline, "the previous tmux session did not end"
            time.sleep(0.02)
        self.status_file.unlink(missing_ok=True)
        # The shell records the exit code itself: tmux's pane_dead_status is not reliable
        # without a TERM in the environment (CI has none).
        wrapped = f"{command}; echo $? > {shlex.quote(str(self.status_file))}"
        self("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), wrapped)

    def alive(self) -> bool:
        """Whether the session ``t`` exists."""
        return (
            subprocess.run([*self.base, "has-session", "-t", "=t"], capture_output=True).returncode
            == 0
        )

    def resize(self, width: int, height: int) -> None:
        """Resize the window, and wait until the shell in it (in a container) sees the new
        size: the resize travels through the client and the daemon to the container's
        terminal, and a ``stty size`` typed at once may print the old one.  The shell polls
        its own terminal's size until it is the new one, then says so."""
        self("resize-window", "-t", "t", "-x", str(width), "-y", str(height))
        self.keys(
            f'until [ "$(stty size)" = "{height} {width}" ]; do sleep 0.05; done; '
            "echo size-$(stty size | tr ' ' x)",
            "Enter",
        )
        self.wait_for(lambda s: f"size-{height}x{width}" in s)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "t")

    def wait_for(self, check: Callable[[str], bool], timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never matched:\n{text}")
            time.sleep(0.05)

    def dead_status(self) -> int | None:
        """The exit code of the command started last, once it has ended."""
        text = self.status_file.read_text() if self.status_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    def wait_exit(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.dead_status()) is None:
            assert time.monotonic() < deadline, "the command did not end"
            time.sleep(0.05)
        return status

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)
        self.socket.unlink(missing_ok=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(f"boxd-test-{os.getpid()}", tmp_path / "exit-status")
    try:
        yield t
    finally:
        t.kill()


def _boxctl(daemon: Daemon, *args: str) -> str:
    return f"{daemon_cli(daemon)} {shlex.join(args)}"


def _until_prompt(tmux: Tmux) -> None:
    deadline = time.monotonic() + 20
    while "#" not in tmux.screen():
        assert time.monotonic() < deadline, tmux.screen()
        tmux.keys("Enter")
        time.sleep(0.2)


def _screen_at_end(tmux: Tmux) -> str:
    """The screen once the command started as ``COMMAND; echo end-$?; read _`` has ended
    (and said its exit code); the pane is then let go."""
    screen = tmux.wait_for(lambda s: re.search(r"\bend-\d+$", s, re.M) is not None)
    tmux.keys("Enter")
    tmux.wait_exit()
    return screen


def test_interactive_shell_resize_ctrl_c_and_exit_code(daemon: Daemon, tmux: Tmux) -> None:
    tmux.start(_boxctl(daemon, "run", "-it", "--name", "tty", "default", "sh"))
    _until_prompt(tmux)
    tmux.keys("stty size", "Enter")
    tmux.wait_for(lambda s: "30 100" in s)
    tmux.resize(120, 40)
    # Ctrl-C reaches the container's foreground process, not boxctl.
    tmux.keys("echo cat-$((2*3)); cat", "Enter")
    tmux.wait_for(lambda s: "cat-6" in s)
    tmux.keys("C-c")
    # The terminal discards input typed ahead of the interrupt: type once the shell is back.
    tmux.wait_for(lambda s: s.rstrip().endswith("#"))
    tmux.keys("echo after-$?", "Enter")
    tmux.wait_for(lambda s: "after-130" in s)
    tmux.keys("exit 3", "Enter")
    assert tmux.wait_exit() == 3
    assert daemon.inspect("tty")["state"]["exit_code"] == 3


def test_the_third_ctrl_c_gives_the_terminal_back(daemon: Daemon, tmux: Tmux) -> None:
    """Ctrl-C is forwarded, and a PID 1 without a handler ignores it: the third one ends
    boxctl and leaves the container running, as Docker's client does: its words on a line
    of their own after the ^C, exit 1.  Here the process says it got each (signals sent at
    once may arrive as one): the next key waits."""
    script = 'trap "echo got-int" INT; echo ready; while :; do sleep 0.05; done'
    run = _boxctl(daemon, "run", "--name", "z", "default", "sh", "-c", script)
    tmux.start(f"{run}; echo end-$?; read _")
    tmux.wait_for(lambda s: "ready" in s)
    tmux.keys("C-c")
    tmux.wait_for(lambda s: s.count("got-int") == 1)
    tmux.keys("C-c")
    tmux.wait_for(lambda s: s.count("got-int") == 2)
    tmux.keys("C-c")
    screen = _screen_at_end(tmux)
    assert "^C\nboxctl: got 3 SIGTERM/SIGINTs, forcefully exiting\nend-1\n" in screen, screen
    assert daemon.inspect("z")["state"]["status"] == "running"


def test_ctrl_z_without_a_tty_reaches_the_container_and_does_not_stop_boxctl(
    daemon: Daemon, tmux: Tmux
) -> None:
    """Without a TTY our terminal stays cooked: Ctrl-Z is a SIGTSTP to boxctl, Ctrl-\\ a
    SIGQUIT.  run, start -a and attach forward them (Docker's client forwards every signal
    it can catch) rather than being stopped, with the shell that waits for them."""
    script = (
        'trap "echo got-TSTP" TSTP; trap "echo got-QUIT; exit 7" QUIT; '
        "while :; do echo tick; sleep 0.5; done"
    )
    daemon.ctl("create", "-i", "--name", "s", "default", "sh", "-c", script)
    daemon.ctl("run", "-d", "-i", "--name", "a", "default", "sh", "-c", script)
    for command in (
        _boxctl(daemon, "run", "-i", "default", "sh", "-c", script),
        _boxctl(daemon, "start", "-ai", "s"),
        _boxctl(daemon, "attach", "a"),
    ):
        tmux.start(command)
        tmux.wait_for(lambda s: "tick" in s)  # boxctl is attached
        tmux.keys("C-z")
        tmux.wait_for(lambda s: "got-TSTP" in s)
        tmux.keys("C-\\")
        assert tmux.wait_exit() == 7, command


def test_keys_typed_before_the_terminal_is_raw_reach_the_container(
    daemon: Daemon, tmux: Tmux
) -> None:
    """A command typed ahead, while the client starts, is the container's input: putting
    our terminal in raw mode must not flush it.  The pane sleeps before boxctl starts, so
    the keys wait in the terminal's input queue for it."""
    run = _boxctl(daemon, "run", "-it", "--name", "ahead", "default", "sh")
    tmux.start(f"sleep 1; {run}")
    tmux.keys("echo typed-ahead-$((6*7))", "Enter")
    tmux.wait_for(lambda s: "typed-ahead-42" in s)
    tmux.keys("exit 4", "Enter")
    assert tmux.wait_exit() == 4


def test_ctrl_c_of_run_t_without_i_reaches_the_container(daemon: Daemon, tmux: Tmux) -> None:
    """``run -t`` without ``-i`` leaves our terminal cooked: Ctrl-C is a SIGINT to boxctl,
    which forwards it as Docker's client does, rather than ending alone with the
    container's process left running."""
    script = 'trap "echo got INT; exit 9" INT; echo ready; while :; do sleep 0.05; done'
    tmux.start(_boxctl(daemon, "run", "-t", "--name", "k", "default", "sh", "-c", script))
    tmux.wait_for(lambda s: "ready" in s)
    tmux.keys("C-c")
    assert tmux.wait_exit() == 9
    assert daemon.inspect("k")["state"]["status"] == "exited"
    assert "got INT" in daemon.ctl("logs", "k").stdout


def test_detach_and_reattach(daemon: Daemon, tmux: Tmux) -> None:
    daemon.ctl("run", "-d", "-i", "-t", "--name", "s", "default", "sh")
    tmux.start(f"{_boxctl(daemon, 'attach', 's')}; echo end-$?; read _")
    # attach prints nothing of its own: a fresh prompt shows that keys now go through.
    _until_prompt(tmux)
    tmux.keys("echo first-$((6*7))", "Enter")
    tmux.wait_for(lambda s: "first-42" in s)
    # A lone Ctrl-P is delivered once the next key shows it is not the sequence.
    tmux.keys("C-p", "x")
    tmux.keys("C-p", "C-q")
    # Docker's client's words and code.
    assert "boxctl: read escape sequence\nend-1" in _screen_at_end(tmux)
    assert daemon.inspect("s")["state"]["status"] == "running"
    tmux.start(_boxctl(daemon, "attach", "s"))
    _until_prompt(tmux)
    tmux.keys("echo second-$((6*7))", "Enter")
    tmux.wait_for(lambda s: "second-42" in s)
    tmux.keys("exit", "Enter")
    daemon.wait_for("s", lambda c: c["state"]["status"] == "exited")
    # The log has the session too (TTY containers have logs).
    assert "second-42" in daemon.ctl("logs", "s").stdout


def test_detach_from_run_and_start_is_quiet_from_exec_not(daemon: Daemon, tmux: Tmux) -> None:
    """As Docker's client: the detach keys end run -it and start -ai with 0 and no word,
    exec -it (as attach) with "read escape sequence" and 1.  The containers run on."""
    daemon.ctl("create", "-it", "--name", "s", "default", "sh")
    daemon.ctl("run", "-d", "-it", "--name", "e", "default", "sh")
    for command, code in (
        (_boxctl(daemon, "run", "-it", "--name", "r", "default", "sh"), 0),
        (_boxctl(daemon, "start", "-ai", "s"), 0),
        (_boxctl(daemon, "exec", "-it", "e", "sh"), 1),
    ):
        tmux.start(f"{command}; echo end-$?; read _")
        _until_prompt(tmux)
        tmux.keys("C-p", "C-q")
        screen = _screen_at_end(tmux)
        assert f"end-{code}" in screen.split(), screen
        assert ("read escape sequence" in screen) == bool(code), screen
    for name in ("r", "s", "e"):
        assert daemon.inspect(name)["state"]["status"] == "running"


def test_empty_detach_keys_are_the_default(daemon: Daemon, tmux: Tmux) -> None:
    """``--detach-keys ""`` (a script's ``"$KEYS"`` with none set) is Ctrl-P Ctrl-Q, as
    Docker's client takes it, rather than refused before anything runs."""
    for command, code in (
        (_boxctl(daemon, "run", "-it", "--detach-keys", "", "--name", "r", "default", "sh"), 0),
        (_boxctl(daemon, "attach", "--detach-keys", "", "r"), 1),
        (_boxctl(daemon, "exec", "-it", "--detach-keys", "", "r", "sh"), 1),
    ):
        tmux.start(command)
        _until_prompt(tmux)
        tmux.keys("C-p", "C-q")
        assert tmux.wait_exit() == code, command
    assert daemon.inspect("r")["state"]["status"] == "running"


def test_attach_again_draws_the_prompt_again(daemon: Daemon, tmux: Tmux) -> None:
    """Attached again at the size the container's terminal has, a shell draws its prompt
    at once (boxctl resizes one row and column larger first, as Docker's client does),
    not a blank screen until a key is typed.  Readline draws again only when the size it
    reads changed: the larger size must reach it before ours does."""
    daemon.ctl("run", "-d", "-it", "-e", "PS1=prompt> ", "--name", "b", "default",
               "bash", "--norc", "-i")  # fmt: skip
    for _ in range(3):
        tmux.start(_boxctl(daemon, "attach", "b"))
        tmux.wait_for(lambda s: "prompt>" in s)
        tmux.keys("C-p", "C-q")
        assert tmux.wait_exit() == 1
    tmux.start(_boxctl(daemon, "attach", "b"))
    tmux.wait_for(lambda s: "prompt>" in s)
    tmux.keys("stty size", "Enter")
    tmux.wait_for(lambda s: "30 100" in s)
    tmux.keys("exit", "Enter")
    assert tmux.wait_exit() == 0


def test_a_user_but_root_opens_its_own_terminal_by_name(daemon: Daemon, tmux: Tmux) -> None:
    """The terminal of run -it and exec -it is given to the process's user (its group
    stays tty), as runc gives it: screen or gpg's pinentry open it by its name."""
    opened = 'exec 3<>"$(tty)" && echo opened-$((6*7)); stat -c %u "$(tty)"; exit 3'
    daemon.ctl("run", "-d", "-t", "--name", "e", "default", "sleep", "1000")
    for command, uid in (
        (_boxctl(daemon, "run", "-it", "-u", "1000:1000", "default", "sh", "-c", opened), "1000"),
        (_boxctl(daemon, "exec", "-it", "-u", "33", "e", "sh", "-c", opened), "33"),
    ):
        tmux.start(f"{command}; echo end-$?; read _")
        screen = tmux.wait_for(lambda s: re.search(r"^end-\d+$", s, re.M) is not None)
        tmux.keys("Enter")
        tmux.wait_exit()
        assert screen.split()[-3:] == ["opened-42", uid, "end-3"], screen


def _pid_of(*argv: str) -> int:
    """The pid of the process running exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes() == wanted:
                    return int(entry.name)
    raise AssertionError(f"no process runs {argv}")


def test_a_signal_that_ends_attach_restores_the_terminal(daemon: Daemon, tmux: Tmux) -> None:
    """attach with a TTY forwards no signal (as Docker's): SIGTERM or SIGHUP end it, once
    our terminal is restored, not left raw for what runs after (bash restores it
    itself, sh and a script do not).  So does any other signal whose default action ends
    a process, sent by another program (SIGUSR1, a real-time one): those left it raw."""
    daemon.ctl("run", "-d", "-it", "--name", "s", "default", "sh")
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGRTMIN + 3):
        tmux.start(f"{_boxctl(daemon, 'attach', 's')}; echo status-$?; stty -a; read _")
        _until_prompt(tmux)
        argv = shlex.split(_boxctl(daemon, "attach", "s"))[2:]  # after env PYTHONPATH=
        os.kill(_pid_of(*argv), signum)
        screen = tmux.wait_for(lambda s: "status-" in s and "icanon" in s)
        assert f"status-{128 + signum}" in screen.split(), screen
        assert {"icanon", "echo", "opost"} <= set(screen.split()), screen
        tmux.keys("Enter")
        tmux.wait_exit()
    assert daemon.inspect("s")["state"]["status"] == "running"


def _stopped(argv: list[str]) -> bool:
    """Whether a process runs exactly ``argv``, stopped (by job control)."""
    with contextlib.suppress(AssertionError, OSError):  # not (yet, or any longer) there
        stat = Path(f"/proc/{_pid_of(*argv)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"
    return False


def test_run_it_started_in_the_background_goes_on_at_fg(daemon: Daemon, tmux: Tmux) -> None:
    """``run -it ... &`` in a shell with job control: boxctl is stopped (SIGTTOU) as it
    makes our terminal raw, and ``fg`` lets it go on.  The SIGCONT of ``fg`` interrupted
    that change: a Python traceback, and the container left running without its client."""
    run = _boxctl(daemon, "run", "-it", "--rm", "default", "sh")
    tmux.start("env PS1='host> ' bash --norc --noprofile -i")
    tmux.wait_for(lambda s: "host>" in s)
    tmux.keys(f"{run} &", "Enter")
    argv = shlex.split(run)[2:]  # after env PYTHONPATH=
    deadline = time.monotonic() + 20
    while not _stopped(argv):
        assert time.monotonic() < deadline, "boxctl in the background was not stopped"
        time.sleep(0.05)
    tmux.keys("fg", "Enter")
    _until_prompt(tmux)
    tmux.keys("echo fg-$((6*7))", "Enter")
    tmux.wait_for(lambda s: "fg-42" in s)
    tmux.keys("exit 5", "Enter")
    tmux.wait_for(lambda s: "host>" in s.rsplit("fg-42", 1)[1])
    tmux.keys("echo end-$?", "Enter")
    screen = tmux.wait_for(lambda s: re.search(r"^end-\d+$", s, re.M) is not None)
    assert "end-5" in screen.split() and "Traceback" not in screen, screen
    tmux.keys("exit", "Enter")
    assert tmux.wait_exit() == 0
    assert daemon.ctl("ps", "-a", "-q").stdout == ""


# What an interactive shell does at a hangup, for the command it runs: SIGHUP is passed on
# (bash sends it to its jobs), and here the command's stderr and exit code are kept.
HANGUP_SHELL = """
import signal, subprocess, sys
with open(sys.argv[1], "wb") as err:
    p = subprocess.Popen(sys.argv[3:], stderr=err)
    signal.signal(signal.SIGHUP, lambda *_: p.send_signal(signal.SIGHUP))
    code = p.wait()
with open(sys.argv[2], "w") as status:
    status.write(f"{code}\\n")
"""


def test_a_terminal_that_hangs_up_ends_run_without_a_traceback(
    daemon: Daemon, tmux: Tmux, tmp_path: Path
) -> None:
    """The window of ``run -it`` closes: SIGHUP is forwarded, and the container's last
    output cannot be written to the terminal that is gone.  boxctl ends as Docker's client
    does (its error, exit code 1), not with a Python traceback."""
    script = 'trap "sleep 0.5; echo bye; exit 5" HUP; echo ready; while :; do sleep 0.1; done'
    err, status = tmp_path / "stderr", tmp_path / "status"
    run = shlex.split(_boxctl(daemon, "run", "-it", "--name", "h", "default", "sh", "-c", script))
    tmux.start(shlex.join([sys.executable, "-c", HANGUP_SHELL, str(err), str(status), *run]))
    tmux.wait_for(lambda s: "ready" in s)
    tmux("kill-session", "-t", "t")
    daemon.wait_for("h", lambda c: c["state"]["status"] == "exited")
    deadline = time.monotonic() + 20
    while not (status.exists() and status.read_text().endswith("\n")):
        assert time.monotonic() < deadline, "boxctl did not end"
        time.sleep(0.05)
    assert daemon.inspect("h")["state"]["exit_code"] == 5  # the SIGHUP reached it
    assert err.read_text() == "boxctl: write /dev/stdout: Input/output error\n"
    assert status.read_text() == "1\n"


def test_a_tty_container_has_its_terminal_at_dev_console(daemon: Daemon) -> None:
    """As runc binds it: what opens /dev/console (a getty, an init system) gets the
    container's terminal.  exec -t leaves it alone, and without a TTY there is none."""
    same = 'echo to-console > /dev/console; stat -L -c %t:%T:%i /dev/console "$(tty)"'
    r = daemon.ctl("run", "-t", "--rm", "default", "sh", "-c", same)
    lines = r.stdout.split()
    assert lines[0] == "to-console" and lines[1] == lines[2], r.stdout
    daemon.ctl("run", "-d", "-t", "--name", "e", "default", "sleep", "1000")
    r = daemon.ctl("exec", "-t", "e", "sh", "-c", same.split("; ")[1])
    assert r.stdout.split()[0] != r.stdout.split()[1], r.stdout  # the container's, not exec's
    daemon.ctl("rm", "-f", "e")
    r = daemon.ctl("run", "--rm", "default", "sh", "-c", "test -e /dev/console || echo none")
    assert r.stdout == "none\n"


def test_output_after_the_terminal_was_closed_and_opened_again_is_kept(daemon: Daemon) -> None:
    """A getty (systemd's console-getty) hangs the console up and opens it again: for a
    moment no process of the container has its terminal open.  That was taken for the end
    of its output: what came after was lost, and once the terminal's buffer was full its
    writes to /dev/console blocked."""
    script = (
        "echo before; exec </dev/null >/dev/null 2>&1; sleep 1; "
        "head -c 200000 /dev/zero | tr '\\0' . > /dev/console; echo after > /dev/console"
    )
    cid = daemon.ctl("run", "-d", "-t", "default", "sh", "-c", script).stdout.strip()
    try:
        assert daemon.ctl("wait", cid).stdout.strip() == "0"
        assert daemon.ctl("logs", cid).stdout == "before\n" + "." * 200000 + "after\n"
    finally:
        daemon.ctl("rm", "-f", cid)


def test_tty_output_is_drained_with_nobody_attached(daemon: Daemon) -> None:
    daemon.ctl(
        "run",
        "-d",
        "-t",
        "--name",
        "chatty",
        "default",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; echo done",
    )
    c = daemon.wait_for("chatty", lambda c: c["state"]["status"] == "exited", timeout=60)
    assert c["state"]["exit_code"] == 0
    assert daemon.ctl("logs", "--tail", "1", "chatty").stdout.strip() == "done"


def test_tty_log_of_megabytes_without_a_newline_comes_back_whole(daemon: Daemon) -> None:
    """6 MiB on a terminal with no newline at all: one line of partial records, and no
    dd statistics after it.  A bench once saw ``logs`` print nothing for such a log."""
    size = 6 << 20
    cid = daemon.ctl(
        "run", "-d", "-t", "default", "sh", "-c", f"head -c {size} /dev/zero"
    ).stdout.strip()
    assert daemon.ctl("wait", cid).stdout.strip() == "0"
    assert len(daemon.ctl("logs", cid).stdout) == size
    assert len(daemon.ctl("logs", "--tail", "1", cid).stdout) == size


def test_tty_output_arrives_whole_attached_and_in_the_log(daemon: Daemon) -> None:
    """Some 2 MB through a terminal, which the daemon reads in a worker thread and hands on
    in chunks: every line, in order, to the attached client and to the log."""
    expected = "".join(f"{i}\n" for i in range(1, 300_001))
    r = daemon.ctl("run", "-t", "--name", "big", "default", "seq", "300000", timeout=120)
    assert r.stdout == expected  # text mode: the terminal's \r\n read as \n
    assert daemon.ctl("logs", "big").stdout == expected


def _sizes(screen: str) -> list[str]:
    """The ``stty size`` answers on the screen ("37 123"), in order."""
    return [line for line in map(str.strip, screen.splitlines()) if re.fullmatch(r"\d+ \d+", line)]


def _sized(tmux: Tmux, command: str, answers: int, *, width: int, height: int) -> list[str]:
    """Run ``command`` after the pane's own ``stty size``; the sizes on the screen once it
    ended (the pane's first, then ``answers`` more), its exit code checked.  The pane
    says the code and waits for a key, so that the screen is read before it goes."""
    tmux.start(f"stty size; {command}; echo end-$?; read _", width=width, height=height)
    screen = tmux.wait_for(lambda s: re.search(r"^end-\d+$", s, re.M) is not None)
    tmux.keys("Enter")
    tmux.wait_exit()
    assert "end-0" in screen.split(), screen
    host, *seen = _sizes(screen)
    assert host == f"{height} {width}" and len(seen) == answers, screen
    return [host, *seen]


def test_a_terminal_has_the_clients_size_from_the_start(daemon: Daemon, tmux: Tmux) -> None:
    """run -it, start -ai and exec -it send the client's terminal size with the request: a
    program that reads it once at its start sees it, not 24x80 until the first resize.
    The pane's own ``stty size`` comes first on the screen; each container's must be the
    same, the first it prints."""
    cmd = ("sh", "-c", "stty size; sleep 1; stty size")
    run = _boxctl(daemon, "run", "-it", "--name", "r", "default", *cmd)
    host, *seen = _sized(tmux, run, 2, width=123, height=37)
    assert seen == [host, host]
    # start -ai: the start request's size (nobody's terminal at create).
    daemon.ctl("create", "-it", "--name", "s", "default", "stty", "size")
    host, *seen = _sized(tmux, _boxctl(daemon, "start", "-ai", "s"), 1, width=101, height=33)
    assert seen == [host]
    # exec -it into a container that got no size at all (24x80).
    daemon.ctl("run", "-d", "-t", "--name", "e", "default", "sleep", "1000")
    exec_ = _boxctl(daemon, "exec", "-it", "e", "stty", "size")
    host, *seen = _sized(tmux, exec_, 1, width=97, height=31)
    assert seen == [host]
    daemon.ctl("rm", "-f", "e")


def test_a_terminal_without_a_size_leaves_the_containers_at_24x80(
    daemon: Daemon, tmux: Tmux
) -> None:
    """A pty no one sized (0x0, as ``script`` makes without a terminal of its own) gives
    the container's terminal no size: it keeps 24x80, as with Docker's client, rather than
    being resized to no rows and no columns once its process runs."""
    run = _boxctl(daemon, "run", "-it", "default", "sh", "-c", "sleep 1; stty size")
    tmux.start(f"stty rows 0 cols 0; {run}; echo end-$?; read _")
    screen = tmux.wait_for(lambda s: re.search(r"^end-\d+$", s, re.M) is not None)
    tmux.keys("Enter")
    tmux.wait_exit()
    assert "end-0" in screen.split() and _sizes(screen) == ["24 80"], screen


def test_a_size_given_at_create_is_used_at_each_start(daemon: Daemon, tmux: Tmux) -> None:
    """create -t in a terminal keeps its size with the container (Docker's
    HostConfig.ConsoleSize): a later start without a terminal of its own uses it."""
    create = _boxctl(daemon, "create", "-t", "--name", "c", "default", "stty", "size")
    host, *_ = _sized(tmux, create, 0, width=111, height=29)
    for _ in range(2):
        daemon.ctl("start", "c")
        assert daemon.ctl("wait", "c").stdout.strip() == "0"
    assert daemon.ctl("logs", "c").stdout.split("\n")[:2] == [host, host]

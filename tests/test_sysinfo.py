"""sysinfo(2) inside real containers: answered with the container's memory (seccomp user
notification, boxd/_sysinfo.py), or the host's where it is not intercepted."""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from daemon_harness import Daemon, running_daemon, until

import boxd
from boxd import _sysinfo
from boxd._procview import ViewLimits, available
from boxd._syscalls import BY_MACHINE

pytestmark = [
    pytest.mark.root,
    pytest.mark.fuse,
    pytest.mark.skipif(available() is not None, reason=f"no FUSE here: {available()}"),
]

SYS_SYSINFO = BY_MACHINE[os.uname().machine]["sysinfo"]
SYS_SECCOMP = BY_MACHINE[os.uname().machine]["seccomp"]
HOST_TOTAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

# Python in the container (the default image is the host's files): what sysinfo says of
# the memory (totalram * mem_unit), or the errno it failed with, for a pointer (default: a
# buffer of its size).
SYSINFO = f"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
buffer = ctypes.create_string_buffer(112)
def call(address=ctypes.addressof(buffer)):
    if libc.syscall({SYS_SYSINFO}, ctypes.c_void_p(address)) != 0:
        return f"errno {{ctypes.get_errno()}}"
    return str(int.from_bytes(buffer[32:40], "little") * int.from_bytes(buffer[104:108], "little"))
"""
# Once, for the pointer in argv[1] if any.
CALL = SYSINFO + "print(call(*map(int, sys.argv[1:])))\n"
# Every 0.05 s until killed.
LOOP = SYSINFO + "while True:\n    print(call(), flush=True)\n    time.sleep(0.05)\n"
# Without a pause, a line every 0.1 s: the calls made so far, and the last one's answer.
TIGHT = (
    SYSINFO
    + "made, last = 0, time.monotonic()\nwhile True:\n    answer = call()\n    made += 1\n"
    + "    if time.monotonic() - last > 0.1:\n"
    + "        print(made, answer, flush=True)\n        last = time.monotonic()\n"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("sysinfo")) as d:
        yield d


def _run(daemon: Daemon, *args: str) -> str:
    return daemon.ctl("run", "--rm", "--network", "none", *args).stdout


@pytest.mark.parametrize(
    "options", [(), ("--security-opt", "no-new-privileges")], ids=["default", "nnp"]
)
def test_free_and_phys_pages_show_the_limit(daemon: Daemon, options: tuple[str, ...]) -> None:
    """Both places the filters are loaded: before the identity change, or last (with
    no_new_privs)."""
    script = (
        "busybox free -k; python3 -c 'import os; "
        'print(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))\''
    )
    out = _run(daemon, "--memory", "64m", *options, "default", "sh", "-c", script).splitlines()
    mem = next(line.split() for line in out if line.startswith("Mem:"))
    assert mem[1] == str(64 << 10)
    assert out[-1] == str(64 << 20)


def test_an_exec_is_answered_as_its_container(daemon: Daemon) -> None:
    """An exec's process is no child of the container's init (it joins its namespaces):
    it gets a listener of its own, but for a detached one, which may outlive the daemon."""
    daemon.ctl("run", "-d", "--name", "execd", "--memory", "48m", "default", "sleep", "60")
    try:
        out = daemon.ctl("exec", "execd", "python3", "-c", CALL).stdout
        assert out.split() == [str(48 << 20)]
        script = f"python3 -c {shlex.quote(CALL)} > /tmp/detached"
        daemon.ctl("exec", "-d", "execd", "sh", "-c", script)
        read = ("exec", "execd", "cat", "/tmp/detached")
        until(lambda: bool(daemon.ctl(*read).stdout), "the detached exec's answer")
        assert daemon.ctl(*read).stdout.split() == [str(HOST_TOTAL)]
    finally:
        daemon.ctl("rm", "-f", "execd")


def test_not_intercepted_the_host_values_show(daemon: Daemon) -> None:
    for options in (["--security-opt", "seccomp=unconfined"], ["--procview", "off"]):
        out = _run(daemon, "--memory", "64m", *options, "default", "python3", "-c", CALL)
        assert out.split() == [str(HOST_TOTAL)], options


# A seccomp listener of the process's own (no_new_privs, an allow-all filter): "listener",
# or the error the kernel refused it with.
OWN_LISTENER = f"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
allow = ctypes.create_string_buffer(struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000))
program = ctypes.create_string_buffer(struct.pack("=H6xQ", 1, ctypes.addressof(allow)))
# seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, program)
fd = libc.syscall({SYS_SECCOMP}, 1, 8, program)
print("listener" if fd >= 0 else os.strerror(ctypes.get_errno()))
"""


def test_a_listener_of_the_containers_own_is_refused(daemon: Daemon) -> None:
    """The kernel gives one listener per chain of filters (a nested runtime's seccomp
    notification inside a container with the view gets EBUSY, as the README says)."""
    own = _run(daemon, "default", "python3", "-c", OWN_LISTENER)
    assert own.strip() == os.strerror(errno.EBUSY)
    off = _run(daemon, "--procview", "off", "default", "python3", "-c", OWN_LISTENER)
    assert off.strip() == "listener"


def test_a_profile_that_refuses_sysinfo_still_refuses_it(daemon: Daemon, tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    refusal = {"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [refusal]}))
    out = _run(daemon, "--security-opt", f"seccomp={profile}", "default", "python3", "-c", CALL)
    assert out.split() == ["errno", "1"]


def test_a_bad_pointer_gets_efault(daemon: Daemon) -> None:
    for pointer in ("1", str(1 << 62)):
        out = _run(daemon, "--memory", "64m", "default", "python3", "-c", CALL, pointer)
        assert out.split() == ["errno", "14"], pointer


# Four processes of eight threads each call sysinfo 50 times at once, while processes that
# call it in a loop are killed (some in the middle of a call); prints the totals seen.
MANY = f"""
import ctypes, os, signal, threading, time
libc = ctypes.CDLL(None, use_errno=True)
def total():
    buffer = ctypes.create_string_buffer(112)
    assert libc.syscall({SYS_SYSINFO}, buffer) == 0, ctypes.get_errno()
    return int.from_bytes(buffer[32:40], "little") * int.from_bytes(buffer[104:108], "little")
victims = []
for _ in range(10):
    pid = os.fork()
    if pid == 0:
        while True:
            total()
    victims.append(pid)
workers = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        seen = set()
        def calls():
            for _ in range(50):
                seen.add(total())
        threads = [threading.Thread(target=calls) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(*seen, flush=True)
        os._exit(0)
    workers.append(pid)
for pid in victims:
    time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
for pid in victims + workers:
    os.waitpid(pid, 0)
print(total())
"""


def test_many_callers_at_once_all_get_answers(daemon: Daemon) -> None:
    out = _run(daemon, "--memory", "96m", "default", "python3", "-c", MANY)
    assert out.split() == [str(96 << 20)] * 5


def test_an_adopted_container_is_answered_by_the_next_daemon(tmp_path: Path) -> None:
    """Kill -9 of the daemon while the container calls sysinfo in a loop: while no daemon
    runs its shim lets the calls through to the kernel (the host's values: nothing in the
    container waits for a daemon), and the next daemon, which adopts it, answers them."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl(
            "run", "-d", "--name", "looper", "--memory", "80m", "default", "python3", "-c", LOOP
        )
        until(lambda: len(daemon.ctl("logs", "looper").stdout.split()) > 3, "the first answers")
        assert daemon.process is not None
        daemon.stop(signal.SIGKILL)
        time.sleep(1)  # ~20 calls, made while no daemon runs (the shim holds their output)
        daemon.start()

        def lines() -> list[str]:
            return daemon.ctl("logs", "looper").stdout.splitlines()

        # They went on, with the host's values (in the log once the output is drained).
        until(lambda: lines().count(str(HOST_TOTAL)) >= 5, "the calls made meanwhile")
        before = len(lines())
        until(lambda: len(lines()) > before + 5, "answers from the next daemon")
        last = lines()
        assert set(last) == {str(80 << 20), str(HOST_TOTAL)}
        assert last[-5:] == [str(80 << 20)] * 5
        assert daemon.inspect("looper")["state"]["status"] == "running"


def test_a_daemon_killed_amid_answers_leaves_no_call_waiting(tmp_path: Path) -> None:
    """A container calling sysinfo without a pause has a call in the daemon's hands almost
    always: taken by the daemon, the call a kill -9 cut short waited for good (its caller
    stopped at the first kill).  Its shim takes the calls and lets those the daemon had
    not answered go on."""
    with running_daemon(tmp_path) as daemon:
        daemon.ctl(
            "run", "-d", "--name", "tight", "--memory", "72m", "default", "python3", "-c", TIGHT
        )

        def made() -> int:
            last = daemon.ctl("logs", "--tail", "1", "tight").stdout.split()
            return int(last[0]) if last else 0

        def more_than(count: int) -> Callable[[], bool]:
            return lambda: made() > count

        for pause in (0.0, 0.05, 0.2):
            until(more_than(made()), "calls answered")
            daemon.stop(signal.SIGKILL)
            time.sleep(pause)
            daemon.start()
            until(more_than(made() + 100), "calls after the kill")
        assert daemon.ctl("logs", "--tail", "1", "tight").stdout.split()[1] == str(72 << 20)


async def test_an_answer_slow_to_write_holds_up_only_its_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A write into the caller that does not end within ANSWER_TIMEOUT (its page slow to
    come) is left to its thread and the call unanswered (here the library's supervisor
    holds the listener itself); the event loop goes on meanwhile, and the container's
    later calls are answered once that thread has ended.  The first call is the first
    python3's own (glibc's qsort asks get_phys_pages as Python starts): that process stays
    stuck until the container's end kills it."""
    monkeypatch.setattr(_sysinfo, "ANSWER_TIMEOUT", 0.2)
    answer = _sysinfo.for_container
    first = [True]

    def slow_first(limits: ViewLimits) -> bytes:
        if first:
            first.clear()
            time.sleep(1)
        return answer(limits)

    monkeypatch.setattr(_sysinfo, "for_container", slow_first)
    call = shlex.quote(CALL)
    config = boxd.ContainerConfig(
        image="default",
        command=("sh", "-c", f"python3 -c {call} & sleep 1.5; python3 -c {call}"),
        network="none",
        resources=boxd.Resources(memory=72 << 20),
    )
    async with boxd.open_supervisor(tmp_path / "lib", procview=True) as sup:
        c = await sup.create(config)
        with caplog.at_level(logging.WARNING, "boxd.sysinfo"):
            output, _ = await sup.start_attached(c.id)
            with trio.fail_after(1):  # the loop runs on while the first answer's thread sleeps
                await trio.sleep(0.5)
            seen = b"".join([data async for _, data in output])
        assert await sup.wait(c.id) == 0
        await sup.remove(c.id)
    assert "left unanswered" in caplog.text
    assert seen.split() == [str(72 << 20).encode()]

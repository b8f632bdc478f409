"""The daemon's side of boxd-shim, the keeper that lets a container outlive its daemon.

With live restore a container is spawned through boxd-shim (``sandbox_native/shim.c``): a
static C program of a few pages that is the container's parent (so it reaps it and keeps
its wait status), holds the container's stdio ends (so a daemon's death gives it no EPIPE,
no EOF on stdin, no SIGHUP) and the listener of its sysinfo filter (it takes the calls
and sends them to the connected daemon as CALLs, see :attr:`ShimConnection.calls`; with
no daemon connected it lets them through to the kernel), and listens on ``shim.sock`` in the
container's directory.  A daemon connects (one at a time) and gets a :class:`Hello`: the
container's pid, its exit status if it has ended, its pidfd and the fds the shim holds.
The shim sends EXIT when the container ends and goes away on DONE, which a daemon sends
once it has recorded the status and drained the output; until then every new daemon can
collect both.

Messages are one ``struct shim_msg`` each (:data:`MESSAGE`) on a SOCK_SEQPACKET socket,
fds as SCM_RIGHTS.  A shim's HELLO and EXIT append when it reaped the container
(:data:`EXITED_AT`): an end no daemon saw gets its own time, not the next daemon's start.
A shim of an older build sends the bare message (its container's end is then dated when a
daemon learns of it), and reads only bare ones: the daemon sends no more.

The socket's path is reached through ``/proc/self/fd/<dirfd>/`` so that deep roots (a
test's temporary directory) never hit the 108-byte limit of a socket path.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import math
import os
import signal
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

from ._native import passed_fds

MAGIC = 0x31535842  # "BXS1": the protocol's version
MESSAGE = struct.Struct("=IIiiiI")  # magic, type, pid, code, status, held
EXITED_AT = struct.Struct("=q")  # CLOCK_REALTIME in ns at the reaping; 0: running
CALL = struct.Struct("=QQ")  # a CALL's notification id and sysinfo's argument
_SIZES = (MESSAGE.size, MESSAGE.size + EXITED_AT.size)  # of the other messages
PEER = struct.Struct("=iII")  # struct ucred: pid, uid, gid
SOCKET_NAME = "shim.sock"
PROGRAM = "boxd-shim"
HELLO_TIMEOUT = 5.0  # a shim that does not greet in this time is treated as absent


class Slot(enum.IntEnum):
    """The stdio ends a shim holds: bit ``1 << slot`` of a message's ``held``."""

    STDIN = 0  # the write end of the container's stdin pipe
    STDOUT = 1  # the read end of its stdout pipe
    STDERR = 2  # the read end of its stderr pipe
    CONSOLE = 3  # its terminal's master
    SYSINFO = 4  # the listener of its sysinfo filter (see boxd/_sysinfo.py)


class _Type(enum.IntEnum):
    HELLO = 1
    EXIT = 2
    HOLD = 3
    CLOSE_STDIN = 4
    DONE = 5
    CALL = 6


# A sysinfo call the shim sent: its notification id, its caller's pid, sysinfo's argument.
Call = tuple[int, int, int]


class ShimError(OSError):
    """No shim answered as one should."""


def program() -> str:
    """The host path of boxd-shim, installed beside the extension (see setup.py).  No
    pathlib at each start: it interns every part of a path it parses (see _store)."""
    spec = importlib.util.find_spec("sandbox_native")
    path = os.path.join(os.path.dirname(spec.origin), PROGRAM) if spec and spec.origin else None
    if path is None or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{PROGRAM} is not installed beside sandbox_native ({path})")
    return path


@attrs.frozen
class ExitStatus:
    code: int  # si_code: os.CLD_EXITED, CLD_KILLED or CLD_DUMPED
    status: int  # si_status: the exit code, or the signal
    at: float | None = None  # when its shim reaped it (time.time()); None: an older shim's

    @property
    def exit_code(self) -> int:
        """As shells report it: the code, or 128 + the signal."""
        return self.status if self.code == os.CLD_EXITED else 128 + self.status


@attrs.frozen
class Hello:
    pid: int
    exited: ExitStatus | None
    pidfd: int  # the caller owns it
    held: dict[Slot, int]  # the caller owns these (copies of the shim's)


def _pack(kind: _Type, held: int = 0) -> bytes:
    return MESSAGE.pack(MAGIC, kind, 0, 0, 0, held)


class ShimConnection:
    """One daemon's connection to one container's shim."""

    def __init__(self, sock: trio.socket.SocketType, pidfd: int) -> None:
        self._sock = sock
        self._pidfd = pidfd  # the shim's, found through the socket's peer credentials
        # The sysinfo calls the shim took from the container's listener and sent here
        # (id, caller's pid, address), read by wait_exit: see boxd/_sysinfo.py.
        self._calls, self.calls = trio.open_memory_channel[Call](math.inf)

    @classmethod
    async def connect(cls, directory: Path) -> tuple[ShimConnection, Hello]:
        """Connect to the shim in ``directory`` and read its greeting; :class:`ShimError`
        (an OSError) when none answers: no socket, nobody listening, a silent or garbled
        peer."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                await sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
            finally:
                os.close(dirfd)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER.size)
            conn = cls(sock, os.pidfd_open(PEER.unpack(creds)[0]))
        except BaseException:
            sock.close()
            raise
        try:
            with trio.move_on_after(HELLO_TIMEOUT):
                kind, pid, exited, held, fds = await conn._receive()
                if kind is not _Type.HELLO or not fds:
                    _close_all(fds)
                    raise ShimError(f"{directory}: the shim did not greet")
                slots = [s for s in Slot if held & (1 << s)]
                if len(fds) != 1 + len(slots):
                    _close_all(fds)
                    raise ShimError(f"{directory}: the shim sent {len(fds)} fds")
                return conn, Hello(pid, exited, fds[0], dict(zip(slots, fds[1:], strict=True)))
            raise ShimError(f"{directory}: the shim did not greet in {HELLO_TIMEOUT} s")
        except BaseException:
            conn.close()
            raise

    async def _receive(self) -> tuple[_Type | None, int, ExitStatus | None, int, list[int]]:
        """One message: (type, pid, exit status, held, fds); type None at end of file.  A
        CALL goes to :attr:`calls` and is not returned."""
        while True:
            data, ancillary, _, _ = await self._sock.recvmsg(
                MESSAGE.size + CALL.size,
                socket.CMSG_SPACE(4 * (len(Slot) + 1)),
                socket.MSG_CMSG_CLOEXEC,
            )
            fds = passed_fds(ancillary)
            if not data:
                return None, 0, None, 0, fds
            if len(data) < MESSAGE.size:
                _close_all(fds)
                raise ShimError(f"not a boxd-shim message ({len(data)} bytes)")
            magic, kind, pid, code, status, held = MESSAGE.unpack_from(data)
            if magic != MAGIC:
                _close_all(fds)
                raise ShimError(f"not a boxd-shim message (magic {magic:#x})")
            # HELLO and EXIT may end with the time of the reaping; a CALL has its own.
            sizes = (MESSAGE.size + CALL.size,) if kind == _Type.CALL else _SIZES
            if len(data) not in sizes or (fds and kind == _Type.CALL):
                _close_all(fds)
                raise ShimError(f"not a boxd-shim message ({len(data)} bytes, type {kind})")
            if kind != _Type.CALL:
                break
            call_id, address = CALL.unpack_from(data, MESSAGE.size)
            self._calls.send_nowait((call_id, pid, address))
        (ns,) = EXITED_AT.unpack_from(data, MESSAGE.size) if len(data) > MESSAGE.size else (0,)
        exited = ExitStatus(code, status, ns / 1e9 if ns > 0 else None) if code else None
        return _Type(kind), pid, exited, held, fds

    async def _send(self, data: bytes, fds: list[int] | None = None) -> None:
        if fds:
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"={len(fds)}i", *fds))
            await self._sock.sendmsg([data], [rights])
        else:
            await self._sock.send(data)

    async def hold(self, fds: Mapping[Slot, int]) -> None:
        """Have the shim hold copies of these stdio ends (replacing what it held)."""
        slots = sorted(fds)
        await self._send(_pack(_Type.HOLD, sum(1 << s for s in slots)), [fds[s] for s in slots])

    async def close_stdin(self) -> None:
        """Close the shim's copy of the stdin pipe's write end (the container reads EOF)."""
        await self._send(_pack(_Type.CLOSE_STDIN))

    async def wait_exit(self) -> ExitStatus | None:
        """The container's exit status once it has ended; None if the shim went away.
        Meanwhile the sysinfo calls the shim sends go to :attr:`calls` (closed once this
        returns: the shim lets the calls go on that no daemon answered)."""
        with self._calls:
            while True:
                try:
                    kind, _, exited, _, fds = await self._receive()
                except OSError:
                    return None
                _close_all(fds)
                if kind is None:
                    return None
                if kind is _Type.EXIT and exited is not None:
                    return exited

    async def done(self) -> None:
        """Tell the shim the status is recorded and the output drained.  It exits at once;
        its end is awaited, and it is reaped if it is the caller's child (the daemon that
        spawned it, or a library user's process that opened a supervisor before), by a
        task of its own: the caller goes on meanwhile (a `run --rm`'s exit code does not
        wait for the shim to be scheduled and torn down).  :func:`reaped` waits for all."""
        with contextlib.suppress(OSError):
            await self._send(_pack(_Type.DONE))
        self._sock.close()
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd >= 0:
            pending = _reaping()
            told = trio.Event()
            pending.add(told)
            trio.lowlevel.spawn_system_task(_reap_told, pidfd, pending, told, name="shim reap")

    def close(self) -> None:
        """Let go of the shim (it keeps running)."""
        self._sock.close()
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


# The shims told DONE and not yet reaped, per Trio run (a supervisor's close waits for them).
_REAPING: trio.lowlevel.RunVar[set[trio.Event]] = trio.lowlevel.RunVar("boxd_shim_reaping")


def _reaping() -> set[trio.Event]:
    try:
        return _REAPING.get()
    except LookupError:
        pending: set[trio.Event] = set()
        _REAPING.set(pending)
        return pending


async def _reap_told(pidfd: int, pending: set[trio.Event], told: trio.Event) -> None:
    """Wait for the end of a shim told DONE (at most HELLO_TIMEOUT: it exits at once), reap
    it if it is our child, close its pidfd."""
    try:
        with trio.move_on_after(HELLO_TIMEOUT):
            await trio.lowlevel.wait_readable(pidfd)
        # WNOHANG: never blocks.  Not our child (ChildProcessError), or any other error:
        # nothing to reap, and a system task must not raise.
        with contextlib.suppress(OSError):
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222
    finally:
        os.close(pidfd)
        pending.discard(told)
        told.set()


async def reaped() -> None:
    """Return once every shim told DONE in this Trio run has ended and been reaped."""
    pending = _reaping()
    while pending:
        await next(iter(pending)).wait()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


async def reap_child(pidfd: int) -> None:
    """Reap the caller's child behind ``pidfd`` once it has ended; close ``pidfd``."""
    try:
        await trio.lowlevel.wait_readable(pidfd)
        # The pidfd is readable: the child has exited and waitid returns at once.
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)  # noqa: ASYNC222
    finally:
        os.close(pidfd)


async def end_unheld(container_pidfd: int, shim_pidfd: int, directory: Path) -> None:
    """End a shim whose container was killed (or failed) before the caller took it over:
    wait for the container's end, let the shim reap it, say DONE, reap the shim.  Closes
    both pidfds."""
    try:
        await trio.lowlevel.wait_readable(container_pidfd)
    finally:
        os.close(container_pidfd)
    try:
        conn, hello = await ShimConnection.connect(directory)
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(shim_pidfd, signal.SIGKILL)
        await reap_child(shim_pidfd)
        return
    os.close(shim_pidfd)
    os.close(hello.pidfd)
    _close_all(list(hello.held.values()))
    if hello.exited is None:
        await conn.wait_exit()
    await conn.done()

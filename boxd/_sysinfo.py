"""sysinfo(2) answered with a container's memory limits (seccomp user notification).

busybox's ``free``, glibc's ``get_phys_pages()`` and ``sysconf(_SC_PHYS_PAGES)`` (so
Python's ``os.sysconf("SC_PHYS_PAGES")``, GNU sort's buffer sizing) take the machine's
memory from the sysinfo system call, which the /proc view (boxd/_procview.py) cannot
change.  So, as LXD does it, a container that has the view gets a second seccomp filter,
loaded by its process just before its own (sandbox_native/child.c): sysinfo of the native
architecture goes to a listener, every other call is let through.  The listener comes to
the daemon with the spawn (:attr:`boxd._native.Spawned.sysinfo`) and :func:`answer`, a
task of the container's run, answers each call: the host's sysinfo (uptime, loads, the
number of processes) with the amounts of memory replaced by what the container's
/proc/meminfo shows (:func:`boxd._procview.meminfo_now`): totalram MemTotal, freeram
MemFree, sharedram Shmem, bufferram 0, totalswap SwapTotal, freeswap SwapFree, with
mem_unit 1.  The struct is written into the caller's memory through /proc/PID/mem (after
the notification's id is checked still valid, so a reused pid is never written to); a
pointer to nothing mapped gets EFAULT, as from the kernel (but a read-only page of the
caller's is written, as a debugger writes it, where the kernel would answer EFAULT).

Not intercepted (the host's values): containers without the view (``--procview off``, or
a daemon that does not serve it), unconfined (``--security-opt seccomp=unconfined``) and
privileged ones, 32-bit callers (i386, x32), detached execs (``exec -d``, which may
outlive the daemon), and any container where the kernel refuses a listener
(older than Linux 5.0, or the daemon itself under a filter with one: logged once).  A
profile that refuses sysinfo still refuses it: stacked filters take the strictest action.
The kernel gives one listener per chain of filters, so a program in the container that
asks for one of its own (a nested runtime's seccomp notification) is refused with EBUSY.

With live restore the container's shim holds a copy of the listener, takes each call from
it and sends it to the connected daemon (:func:`answer_sent`), which answers on its own
copy; while no daemon is connected, the shim lets each call through to the kernel
(``SECCOMP_USER_NOTIF_FLAG_CONTINUE``: the host's values), so that nothing in the
container waits for a daemon (glibc's qsort, so every ``python3`` start, makes a call).
The shim takes the calls, not the daemon, because a call taken is answered by its taker
alone: one a killed daemon had taken and not answered waited until a signal came to its
caller (a container calling sysinfo in a loop stopped at the first kill -9 of the
daemon), where the shim, seeing the daemon gone, lets the calls it sent go on.  Without
live restore the daemon takes the calls itself (:func:`answer`); once no one holds the
listener (such a daemon was killed and its containers run on), the kernel fails the
calls, waiting and new, with ENOSYS.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import logging
import os
import select
import struct
from collections.abc import Callable

import outcome
import trio

from ._procview import ViewLimits, meminfo_now
from ._shim import Call
from ._syscalls import libc

log = logging.getLogger("boxd.sysinfo")


def _ioc(direction: int, number: int, size: int) -> int:
    """The generic _IOC encoding (x86_64 and arm64 alike) of seccomp's ioctl ``number``."""
    return direction << 30 | size << 16 | ord("!") << 8 | number


_WRITE, _READ = 1, 2
# struct seccomp_notif: id, pid, flags, data (nr, arch, instruction_pointer, args[6]).
NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp: id, val, error (a negative errno), flags.
RESPONSE = struct.Struct("=QqiI")
NOTIF_RECV = _ioc(_READ | _WRITE, 0, NOTIF.size)
NOTIF_SEND = _ioc(_READ | _WRITE, 1, RESPONSE.size)
NOTIF_ID_VALID = _ioc(_WRITE, 2, 8)
# struct sysinfo of a 64-bit kernel: uptime, loads[3], totalram, freeram, sharedram,
# bufferram, totalswap, freeswap, procs (and a pad), totalhigh, freehigh, mem_unit.
SYSINFO = struct.Struct("=q3Q6QHH4x2QI4x")
# How long an answer may take once a call was taken (the caller's memory may be slow to
# write: a page on a FUSE mount); past it the call stays unanswered.
ANSWER_TIMEOUT = 5.0


def host_sysinfo() -> tuple[int, ...]:
    """The daemon's own sysinfo(2), as :data:`SYSINFO`'s fields."""
    buffer = bytearray(SYSINFO.size)
    if libc().sysinfo((ctypes.c_char * SYSINFO.size).from_buffer(buffer)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sysinfo: {os.strerror(err)}")
    return SYSINFO.unpack(buffer)


def for_container(limits: ViewLimits) -> bytes:
    """The struct sysinfo a container with ``limits`` is answered: the host's, with the
    amounts of memory its /proc/meminfo shows (in bytes: mem_unit 1)."""
    host = host_sysinfo()
    kb = meminfo_now(limits)
    memory = ("MemTotal", "MemFree", "Shmem", "Buffers", "SwapTotal", "SwapFree")
    amounts = [kb.get(name, 0) * 1024 for name in memory]
    # uptime, loads[3]; the amounts; procs, its pad, totalhigh, freehigh, mem_unit.
    return SYSINFO.pack(*host[:4], *amounts, host[10], 0, 0, 0, 1)


async def answer_sent(
    listener: int,
    calls: trio.MemoryReceiveChannel[Call],
    limits: Callable[[], ViewLimits],
    name: str,
) -> None:
    """Answer the sysinfo calls the container's shim took from ``listener`` and sent
    (:attr:`boxd._shim.ShimConnection.calls`), as :func:`answer` does, until the shim's
    connection ends or this is cancelled.  The shim, not the daemon, takes the calls, so
    that those a killed daemon had not answered are let go on by the shim, not left
    waiting for good."""
    writer = _Writer()
    async for call in calls:
        await _answer(listener, call, writer, limits, name)


async def answer(listener: int, limits: Callable[[], ViewLimits], name: str) -> None:
    """Answer the sysinfo calls that come on ``listener`` (not closed) with ``limits()``
    until cancelled, or until no process is left under its filter (a container without a
    shim: the daemon takes the calls itself); ``name`` is the container's, for the log.
    Each call's answer is written by a worker thread (the caller's page may be slow to
    write) while the event loop goes on; a call taken is answered even if this is
    cancelled meanwhile (at most ANSWER_TIMEOUT later), so that no caller waits for a
    daemon that took its call and left."""
    poll = select.poll()
    poll.register(listener, select.POLLIN)
    writer = _Writer()
    while True:
        await trio.lowlevel.wait_readable(listener)
        # The kernel's receive waits for a call whatever O_NONBLOCK says: it is made only
        # when one waits (each waiting call counts once; one taken back when its caller
        # was killed meanwhile makes it fail with ENOENT, not wait).  Woken without one,
        # once no process is left under the filter (POLLHUP), none can come any more.
        events = dict(poll.poll(0)).get(listener, 0)
        if events & select.POLLIN:
            call = _receive(listener)
            if call is not None:
                await _answer(listener, call, writer, limits, name)
        elif events & select.POLLHUP:
            return


def _receive(listener: int) -> Call | None:
    """The next call: (id, pid, address); None if there is none after all (its caller
    was killed, or interrupted, since the poll: ENOENT)."""
    buffer = bytearray(NOTIF.size)  # zeroed, as the kernel wants it
    try:
        fcntl.ioctl(listener, NOTIF_RECV, buffer)
    except (FileNotFoundError, InterruptedError):
        return None
    call_id, pid, _flags, _nr, _arch, _ip, address, *_ = NOTIF.unpack(buffer)
    return call_id, pid, address


async def _answer(
    listener: int,
    call: Call,
    writer: _Writer,
    limits: Callable[[], ViewLimits],
    name: str,
) -> None:
    """Write the struct at the call's address and let the call return 0 (or fail with
    EFAULT, a pointer that cannot be written); shielded from cancellation, for at most
    ANSWER_TIMEOUT (past it the call stays unanswered)."""
    deadline = trio.current_time() + ANSWER_TIMEOUT
    call_id, pid, address = call
    try:
        mem = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # gone already: nobody waits for the answer
    try:
        valid = _valid(listener, call_id)  # after the open: the pid is still the caller's
    except BaseException:
        os.close(mem)
        raise
    if not valid:
        os.close(mem)
        return
    with trio.CancelScope(shield=True, deadline=deadline) as scope:
        done = await writer.write(mem, address, limits)
    if scope.cancelled_caught:
        log.warning("%s: sysinfo's answer took over %s s; left unanswered", name, ANSWER_TIMEOUT)
        return
    error = 0 if done else -errno.EFAULT
    with contextlib.suppress(FileNotFoundError):  # killed meanwhile
        fcntl.ioctl(listener, NOTIF_SEND, RESPONSE.pack(call_id, 0, error, 0))


def _valid(listener: int, call_id: int) -> bool:
    """Whether the call is still waiting for its answer (its process alive)."""
    try:
        fcntl.ioctl(listener, NOTIF_ID_VALID, struct.pack("=Q", call_id))
    except FileNotFoundError:
        return False
    return True


class _Writer:
    """One container's worker thread for its answers, one at a time: a thread whose write
    never ends (the caller's page never comes) is left to it, and holds up only that
    container's next answers, never a thread the rest of the daemon shares."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._idle = trio.Event()
        self._idle.set()

    async def write(self, mem: int, address: int, limits: Callable[[], ViewLimits]) -> bool:
        """:func:`_write` in a thread of its own once the last one has ended; ``mem`` is
        closed (by the thread, once it is started: cancelled while that runs, this returns
        and the thread goes on)."""
        try:
            await self._idle.wait()
        except BaseException:
            os.close(mem)
            raise
        idle = self._idle = trio.Event()
        result: list[outcome.Outcome[bool]] = []

        def deliver(written: outcome.Outcome[bool]) -> None:
            result.append(written)
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(idle.set)

        job = functools.partial(_write, mem, address, limits)
        trio.lowlevel.start_thread_soon(job, deliver, name="boxd sysinfo")
        await idle.wait()
        return result[0].unwrap()


def _write(mem: int, address: int, limits: Callable[[], ViewLimits]) -> bool:
    """Write the container's struct sysinfo at ``address`` of the process whose memory
    ``mem`` is, and close ``mem``; False if it cannot be written there (the kernel's
    EFAULT)."""
    try:
        try:
            data = for_container(limits())
        except (LookupError, OSError) as exc:
            # Its cgroup is gone (the container is ending): the host's, unchanged.
            log.debug("sysinfo: the container's limits are unknown (%s)", exc)
            data = SYSINFO.pack(*host_sysinfo())
        try:
            return os.pwrite(mem, data, address) == len(data)
        except (OSError, OverflowError):  # EIO: nothing mapped there; beyond off_t
            return False
    finally:
        os.close(mem)

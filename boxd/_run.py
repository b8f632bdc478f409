"""One run of a container: its first process and the task tree around it.

    Run.execute  (started with nursery.start: returns once the process really runs)
      ├── pump stdout ─┐  (or one pump for the PTY master)
      ├── pump stderr ─┴─▶ log writer + attached clients (never blocked by them)
      └── reaper: pidfd readable → waitid → kill what is left in the cgroup
                  → drain the pumps → read the cgroup's counters → cleanup (shielded)

The process's stdio are pipes (stdout and stderr kept apart) or a terminal the child opens
in the container's own devpts and whose master it hands over: the daemon never holds the
slave, so the master sees end of output when the container ends and no attached client
hangs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import stat
import termios
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from . import _native, _nsmodes, _plan, _ptyout, _rootfs, _shim, _sysinfo, protocol
from ._cgroup import Cgroup
from ._ledger import Ledger, LoggedPipe
from ._lifecycle import Conflict
from ._logs import LogWriter
from ._native import Namespace, Native, ShimSpec, Spawned, SpawnPlan
from ._output import Output
from ._record import evolve
from ._records import Container, RunSummary
from ._shim import ExitStatus, Hello, ShimConnection

if TYPE_CHECKING:
    from ._linesend import LineSender
    from ._network import Attachment
    from ._procview import ViewLimits

log = logging.getLogger("boxd.run")

# The most one read of a pipe hands on at once (a terminal: see _ptyout).
READ_SIZE = 1024 * 1024
# After the process ended, how long its output may still flow with nobody taking any (a
# lossless reader that takes a chunk within this keeps it flowing, up to DRAIN_LIMIT).
# Docker's wait for a process's streams (daemon/monitor.go): an exec whose process leaves
# a child holding its output (`sh -c 'cmd &'`) returns after it, as with Docker.
DRAIN_TIMEOUT = 2.0
# The most it may flow in all: the pipe may have a writer outside the cgroup (its fd
# passed to another container), whose output would never end.
DRAIN_LIMIT = 60.0
CLEANUP_TIMEOUT = 10.0


UNKNOWN_EXIT = 255  # the exit code recorded when nobody could learn the real one
# The output pipes' capacity: a container writes this much ahead of the daemon before it
# blocks (as on any full pipe: nothing is dropped), so the daemon reads (logs, sends) up to
# READ_SIZE at a time rather than the default 64 KiB (a wakeup, a log write and a frame per
# 64 KiB); with live restore it is what a container writes while no daemon reads.  Pages
# are taken as bytes are written, so an idle container's pipes hold none.
PIPE_SIZE = READ_SIZE
# With a ledger a chunk stays in its pipe until it is logged (see _ledger): at most half
# the pipe, so that the container fills the other half meanwhile.  Chunks of the whole pipe
# took that overlap away (~15% slower, session 14); a quarter made twice the chunks, each
# with its system calls, its log records and its Trio tasks' turns: the daemon's CPU per
# 256 MiB attached 220-230 against 180 ms with halves (bench/README, session 32).
LEDGER_CHUNK = PIPE_SIZE // 2


@attrs.define
class Outcome:
    exit_code: int
    oom_killed: bool
    summary: RunSummary | None
    error: str = ""  # why the exit code is not the process's own
    # The signal that ended the process; None if it exited (or its status is unknown).
    # Its exit code, 128 + the signal as Docker's, is also that of an exit(128 + N).
    signal: int | None = None
    # A fork or clone was refused at the pids limit (a fork bomb held), which Docker
    # does not report.
    pids_limit_hit: bool = False
    # Killed at its configuration's timeout (and not ended otherwise first).
    timed_out: bool = False


def start_time_of(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks since boot); 0 if the process is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        stat = os.read(fd, 4096)  # a few hundred bytes, all in one read
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int(stat.rsplit(b")", 1)[1].split()[19])


# PIDFD_GET_MNT_NAMESPACE (linux/pidfd.h, Linux 6.11): a pidfd's process's mount namespace
# as a new close-on-exec fd, with the same access check as /proc/PID/ns/mnt but no path
# lookup through /proc (on the event loop's thread, once per start).
PIDFD_GET_MNT_NAMESPACE = 0xFF03
_pidfd_ns_ioctl = True  # False once the kernel refused it (older than 6.11)


def _ended_at(status: ExitStatus | None, started_at: float) -> float:
    """When a process ended: when its shim reaped it (it may have ended while no daemon
    ran), else now, as its end is seen; never before ``started_at``, its start as recorded
    (a shim may reap a short process before its start is reported: a negative wall time,
    FinishedAt before StartedAt)."""
    at = status.at if status is not None and status.at is not None else time.time()
    return max(at, started_at)


def mount_ns_of(spawned: Spawned) -> int:
    """A new fd of the mount namespace of ``spawned``'s process (OSError: gone, or not
    allowed)."""
    global _pidfd_ns_ioctl
    if _pidfd_ns_ioctl:
        try:
            return fcntl.ioctl(spawned.pidfd, PIDFD_GET_MNT_NAMESPACE)
        except OSError as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
            _pidfd_ns_ioctl = False
    return os.open(f"/proc/{spawned.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def _give_pipes(stdio: tuple[int, int, int], plan: SpawnPlan) -> None:
    """Make the process's user the owner of the stdio pipes the daemon made (mode 0600):
    ``/dev/stdout`` and ``/proc/self/fd/1`` reopen the pipe, which a ``-u 1000`` process
    (or, under ``--isolate-user``, even its root: host root is unmapped there) could not
    otherwise do.  Only the owner changes, as runc does it; /dev/null stays as it is."""
    uid = plan.uid
    if Namespace.USER in plan.namespaces:
        start, count = _plan.id_range()
        if uid >= count:
            return  # unmapped: the child refuses to become it
        uid += start
    for fd in stdio:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.fchown(fd, uid, -1)


def _above_stdio(fd: int) -> int:
    """The spawn path wants the fds it dups onto 0/1/2 to be >= 3 (a daemon started with
    its stdio closed gets low numbers from the kernel)."""
    if fd >= 3:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    termios.tcsetwinsize(fd, (rows, cols))


class Run:
    """A running container process; the supervisor keeps the current one per container."""

    def __init__(
        self,
        container: Container,
        output: Output,
        logs: LogWriter | None,
        *,
        tty: bool | None = None,
        interactive: bool | None = None,
        null_stdio: bool = False,
    ) -> None:
        """``logs`` None: output goes to attached clients only (exec).  ``tty`` and
        ``interactive`` default to the container's configuration.  ``null_stdio`` (`exec
        -d` without a terminal): its stdin, stdout and stderr are /dev/null, as Docker
        gives a detached exec, so nothing of it depends on the daemon: it outlives one
        that leaves with live restore (see :attr:`detach`) or is killed, where its output
        pipes would have broken."""
        self.container = container
        self.output = output
        self.logs = logs
        self.tty = tty
        self.interactive = interactive
        self.null_stdio = null_stdio
        self.pid = 0
        self.pidfd = -1
        self.exited = trio.Event()
        # Set once the process has ended (before its end is recorded): a terminal's EIO is
        # then the end of its output, not a hangup (see _ptyout).
        self._reaped = trio.Event()
        # Its place on its network, released when the process ends (not when a live
        # restore lets go of it: the next daemon adopts that too).
        self.network: Attachment | None = None
        self.outcome: Outcome | None = None
        # When its end was seen (time.time(); 0: not yet): its wall time and Docker's
        # FinishedAt end there, not once a slow reader has taken the output it left.
        self.ended_at = 0.0
        # Set by the supervisor as it kills the run at its configuration's timeout.
        self.timed_out = False
        self._stdin: trio.lowlevel.FdStream | None = None
        self._stdin_lock = trio.Lock()
        self._tty_master = -1
        # When it started (time.time()): taken as its start is reported, so a process its
        # shim reaped sooner (a `true`) is dated as ending then (see _ended_at).
        self.started_at = 0.0
        # Live restore: the container's shim (see boxd/_shim.py).
        self._shim: ShimConnection | None = None
        # Set by the supervisor for a driver that sends each line on (syslog, journald, gelf,
        # fluentd).
        self.sender: LineSender | None = None
        # It ended before this daemon connected to its shim (while no daemon ran).
        self._exited_unseen: ExitStatus | None = None
        # Set by the supervisor when the daemon leaves with live restore: cancelling a run
        # that has a shim then leaves its process running, held by the shim; one with
        # null_stdio needs nobody to hold anything.
        self.detach = False
        # Set by the supervisor: takes the ended init's cgroup and its mount namespace (an
        # fd, -1: none held) to remove and close after the end is recorded; None: the
        # cgroup is removed before the run ends, and no namespace is held.
        self.dismantle: Callable[[Cgroup, int], None] | None = None
        # The init's mount namespace, held from its spawn until its end is recorded: the
        # kernel dismantles a mount namespace when its last holder lets go, and when that
        # is the exiting init (every mount unmounted, the overlay's upper file system
        # synced: 5-10 ms measured), the pidfd tells of its end only after all that.
        self._mount_ns = -1
        # Live restore with a log: where the pumps note what they are logging, so that
        # a daemon's death loses nothing of the output nor logs it twice (see _ledger).
        self._ledger: Ledger | None = None
        # Set by the supervisor: the container's limits as its /proc view shows them,
        # with which its process's sysinfo calls are answered (boxd/_sysinfo.py) where
        # its spawn (or its shim) gave a listener.
        self.view_limits: Callable[[], ViewLimits] | None = None
        self._sysinfo = -1  # that listener, while the run is supervised

    # ---- control from the supervisor and attached clients ----------------------------

    def signal(self, sig: int) -> None:
        if self.exited.is_set() or self.pidfd < 0:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, sig)

    def resize(self, rows: int, cols: int) -> None:
        if self._tty_master >= 0 and not self.exited.is_set():
            _set_winsize(self._tty_master, rows, cols)

    async def write_stdin(self, data: bytes) -> None:
        """Forward input; empty data closes stdin (not for a TTY, where ^D does that).
        Input after the end, or once the process closed its stdin or ended, is dropped, as
        a pipe's reader that went away drops it; a process that takes none (not
        interactive: its stdin is /dev/null) refuses it with :class:`Conflict`."""
        stream = self._stdin
        if stream is None:
            if not self._interactive:
                what = "this exec in container" if self.interactive is not None else "container"
                raise Conflict(
                    f"{what} {self.container.name} ({self.container.short_id}) takes no "
                    "input: it was not made with interactive=True, its stdin is /dev/null"
                )
            return
        async with self._stdin_lock:
            try:
                if data:
                    await stream.send_all(data)
                elif self._tty_master < 0:
                    self._stdin = None
                    await stream.aclose()
                    if self._shim is not None:
                        await self._shim.close_stdin()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._stdin = None

    @property
    def _interactive(self) -> bool:
        """Its stdin is a pipe (or its terminal) that takes input."""
        if self.interactive is not None:
            return self.interactive
        return self.container.config.interactive

    # ---- the run itself -------------------------------------------------------------

    async def execute(
        self,
        native: Native,
        build_plan: Callable[[tuple[int, int, int]], Awaitable[SpawnPlan]],
        cgroup: Cgroup,
        *,
        owns_cgroup: bool = True,
        network: Attachment | None = None,
        shim_dir: Path | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Spawn the process ``await build_plan(stdio)`` describes and supervise it to its
        end.

        ``owns_cgroup``: the process is the container's init, so its end kills whatever is
        left in the cgroup and removes it; an exec'd process only joins the cgroup.
        ``network``: the init's place on its network, reserved before the plan is built
        (the plan writes its address into /etc/hosts), connected while the child sets up
        its mounts (it then waits for its interfaces and configures them itself) and
        released when it ends.
        ``shim_dir``: spawn it through a boxd-shim listening there (live restore).
        """
        config = self.container.config
        tty_mode = self.tty if self.tty is not None else config.tty
        interactive = self._interactive
        with ExitStack() as fds, ExitStack() as child:
            # `child` holds what only the child needs: closed right after the spawn.
            # The mount namespace, unless its end handed it on (or the process lives on
            # with live restore, or never ran: little to dismantle).
            fds.callback(self._let_go_of_mount_ns)
            readers: list[tuple[int, int]] = []
            if tty_mode or self.null_stdio:
                # With a terminal, the child opens it in the container's devpts (see
                # SpawnPlan.console); until then its stdio is /dev/null.
                null = _above_stdio(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
                child.callback(os.close, null)
                stdio = (null, null, null)
            else:
                out_r, out_w = (_above_stdio(n) for n in os.pipe2(os.O_CLOEXEC))
                err_r, err_w = (_above_stdio(n) for n in os.pipe2(os.O_CLOEXEC))
                for end in (out_r, err_r):
                    fcntl.fcntl(end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                if interactive:
                    in_r, in_w = (_above_stdio(n) for n in os.pipe2(os.O_CLOEXEC))
                    self._stdin = trio.lowlevel.FdStream(in_w)
                else:
                    in_r = _above_stdio(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
                for n in (in_r, out_w, err_w):
                    child.callback(os.close, n)
                stdio = (in_r, out_w, err_w)
                readers = [(protocol.STDOUT, out_r), (protocol.STDERR, err_r)]
            streams = [(s, trio.lowlevel.FdStream(n)) for s, n in readers]
            self.network = network
            try:
                if network is not None:
                    await network.reserve()
                plan = await build_plan(stdio)
                if readers:
                    _give_pipes(stdio, plan)
                userns = Namespace.USER in plan.namespaces
                hosts, shared = _rootfs.tree_sources(config.volumes, userns=userns)
                if hosts:  # made here (a worker thread: a FUSE source waits for its
                    # server) and moved in by the child, as runc binds them
                    plan = await trio.to_thread.run_sync(
                        _rootfs.bind_trees, native, plan, hosts, shared
                    )
                if (ipc := dict(plan.ns_paths).get(Namespace.IPC)) is not None:
                    # --ipc container:NAME: NAME's /dev/shm too, made in its mount namespace.
                    plan = await trio.to_thread.run_sync(_nsmodes.peer_shm, native, plan, ipc)
                for fd in plan.mount_fds:
                    child.callback(os.close, fd)
                if any(v.subpath for v in config.volumes):  # found safely, bound as trees
                    given = len(plan.mount_fds)
                    plan = await trio.to_thread.run_sync(
                        _rootfs.bind_subpaths, native, plan, config.volumes
                    )
                    for fd in plan.mount_fds[given:]:
                        child.callback(os.close, fd)
                if network is not None and network.links:  # it configures them itself
                    links, gateway = network.plan_links(), network.plan_gateway()
                    plan = evolve(plan, links=links, gateway=gateway)
                if shim_dir is not None:
                    argv = (_shim.PROGRAM, self.container.id)
                    plan = evolve(plan, shim=ShimSpec(_shim.program(), str(shim_dir), argv))
                id_map = _plan.id_range() if userns else None
                hold = owns_cgroup and self.dismantle is not None
                hold = hold and Namespace.MOUNT in plan.namespaces
                # The process places itself in the cgroup (see Cgroup.placement).
                with cgroup.placement() as (tasks, v2_dir):
                    spawned = await _native.start(
                        native,
                        evolve(plan, cgroup_tasks=tasks, cgroup_dir=v2_dir),
                        prepare=_placer(
                            id_map, config.oom_score_adj, self._hold_mount_ns if hold else None
                        ),
                        configure=None if network is None else lambda s: network.connect(s.pid),
                    )
            except BaseException:
                with trio.CancelScope(shield=True):
                    if network is not None:
                        await network.release()
                    for _, stream in streams:
                        await stream.aclose()
                    if self._stdin is not None:
                        await self._stdin.aclose()
                raise
            child.close()  # the child holds its own copies now
            # Its mount table, environment and seccomp program (~10 KB) would otherwise
            # stay in this frame for as long as the container runs.
            del plan
            if tty_mode:
                master = _above_stdio(spawned.console)
                # A copy for resizes that lives until cleanup (the pump closes `master`).
                self._tty_master = os.dup(master)
                fds.callback(os.close, self._tty_master)
                streams = [(protocol.STDOUT, trio.lowlevel.FdStream(master))]
                if interactive:
                    self._stdin = trio.lowlevel.FdStream(os.dup(master))
            self._register(spawned)
            if spawned.sysinfo >= 0:
                self._sysinfo = spawned.sysinfo
                fds.callback(self._let_go_of_sysinfo)
            if spawned.shim_pidfd >= 0:
                assert shim_dir is not None
                await self._hand_to_shim(spawned, shim_dir, streams)
            self.started_at = time.time()
            task_status.started()
            if shim_dir is not None and self.logs is not None and not tty_mode:
                self._ledger = Ledger.create(shim_dir)
            await self._supervise(streams, cgroup, owns_cgroup)

    async def _hand_to_shim(
        self,
        spawned: Spawned,
        shim_dir: Path,
        streams: list[tuple[int, trio.lowlevel.FdStream]],
    ) -> None:
        """Connect to the new container's shim and have it hold the stdio ends."""
        held = {
            _shim.Slot.CONSOLE if self._tty_master >= 0 else _shim.Slot(stream_id): stream.fileno()
            for stream_id, stream in streams
        }
        if self._stdin is not None and self._tty_master < 0:
            held[_shim.Slot.STDIN] = self._stdin.fileno()
        if self._sysinfo >= 0:  # it takes the calls: see boxd/_sysinfo.py
            held[_shim.Slot.SYSINFO] = self._sysinfo
        try:
            self._shim, hello = await ShimConnection.connect(shim_dir)
            os.close(hello.pidfd)  # the same process as ours
            # A short-lived container may have ended before the shim greeted us: the
            # greeting then has the status, and no EXIT follows.
            self._exited_unseen = hello.exited
            await self._shim.hold(held)
            os.close(spawned.shim_pidfd)  # the connection has its own
        except BaseException:
            with trio.CancelScope(shield=True):
                for _, stream in streams:
                    await stream.aclose()
                if self._stdin is not None:
                    await self._stdin.aclose()
                if self._shim is not None:
                    self._shim.close()
                self.signal(signal.SIGKILL)
                await _shim.end_unheld(self.pidfd, spawned.shim_pidfd, shim_dir)
            raise

    async def adopt(
        self,
        shim: ShimConnection,
        hello: Hello,
        cgroup: Cgroup,
        directory: Path,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Supervise a container a previous daemon started, from its shim's greeting: the
        pidfd, the stdio ends and, if it ended while no daemon ran, its exit status;
        ``directory`` is the container's (its ledger's)."""
        config = self.container.config
        self._shim = shim
        self.pid = hello.pid
        self.pidfd = hello.pidfd
        self._exited_unseen = hello.exited
        held = dict(hello.held)
        streams: list[tuple[int, trio.lowlevel.FdStream]] = []
        with ExitStack() as fds:
            if _shim.Slot.CONSOLE in held:
                master = held.pop(_shim.Slot.CONSOLE)
                self._tty_master = os.dup(master)
                fds.callback(os.close, self._tty_master)
                streams.append((protocol.STDOUT, trio.lowlevel.FdStream(master)))
                if config.interactive:
                    self._stdin = trio.lowlevel.FdStream(os.dup(master))
            for slot in (_shim.Slot.STDOUT, _shim.Slot.STDERR):
                if slot in held:
                    streams.append((int(slot), trio.lowlevel.FdStream(held.pop(slot))))
            if _shim.Slot.STDIN in held:
                self._stdin = trio.lowlevel.FdStream(held.pop(_shim.Slot.STDIN))
            if _shim.Slot.SYSINFO in held:
                self._sysinfo = held.pop(_shim.Slot.SYSINFO)
                fds.callback(self._let_go_of_sysinfo)
            self.started_at = self.container.state.started_at or time.time()
            if self.logs is not None and self._tty_master < 0:
                self._ledger = Ledger.open(directory)
            task_status.started()
            await self._supervise(streams, cgroup, owns_cgroup=True)

    async def _supervise(
        self,
        streams: list[tuple[int, trio.lowlevel.FdStream]],
        cgroup: Cgroup,
        owns_cgroup: bool,
    ) -> None:
        """Pump the output until the process has ended, then record and clean up."""
        ended = False
        status: ExitStatus | None = None
        try:
            async with trio.open_nursery() as nursery:
                pumps_done = trio.Event()
                nursery.start_soon(self._pump_all, streams, pumps_done, cgroup)
                if self.sender is not None and self.sender.ring is not None:
                    nursery.start_soon(self.sender.drain)  # non-blocking mode's sends
                if self._sysinfo >= 0 and self.view_limits is not None:
                    name = self.container.short_id
                    if self._shim is not None:  # it takes the calls and sends them here
                        calls = self._shim.calls
                        nursery.start_soon(
                            _sysinfo.answer_sent, self._sysinfo, calls, self.view_limits, name
                        )
                    else:
                        nursery.start_soon(_sysinfo.answer, self._sysinfo, self.view_limits, name)
                status = await self._reap()
                self.ended_at = _ended_at(status, self.started_at)
                ended = True
                self._reaped.set()
                if owns_cgroup:
                    # Descendants may still hold the output open: they go with init.
                    await cgroup.kill_all()
                await self._drained(pumps_done)
                if self.sender is not None:
                    await self.sender.sent(DRAIN_TIMEOUT, DRAIN_LIMIT)
                nursery.cancel_scope.cancel(reason="process ended")
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + CLEANUP_TIMEOUT
                if not ended and self.detach and self._shim is not None:
                    # Live restore: the shim keeps the process and its output for the next
                    # daemon; this one only lets go of its copies.
                    self._shim.close()
                elif not ended and self.detach and self.null_stdio:
                    pass  # nothing of it is ours but the pidfd
                else:
                    if not ended:  # cancelled while it runs: it must not outlive us
                        self.signal(signal.SIGKILL)
                        status = await self._reap()
                        self.ended_at = _ended_at(status, self.started_at)
                    self.outcome = self._outcome(status, cgroup if owns_cgroup else None)
                    if self.network is not None:
                        await self.network.release()
                    # Called once: the supervisor's callback holds its entry, which
                    # holds this run (a cycle that only a full collection would free).
                    dismantle, self.dismantle = self.dismantle, None
                    mount_ns, self._mount_ns = self._mount_ns, -1
                    if owns_cgroup and dismantle is not None:
                        dismantle(cgroup, mount_ns)
                    elif owns_cgroup:
                        await cgroup.remove()
                    if self._shim is not None:
                        await self._shim.done()
                # Its number is free for the next open (another container's pidfd, as
                # containers come and go): a signal or an exec between here and the end's
                # recording must find none, never that.
                os.close(self.pidfd)
                self.pidfd = -1
                if self._ledger is not None:
                    self._ledger.close()
                    self._ledger = None
                if self._stdin is not None:
                    await self._stdin.aclose()
                    self._stdin = None
                self.output.close()
                self.exited.set()

    async def _drained(self, pumps_done: trio.Event) -> None:
        """Wait for the pumps to hand on what the ended process wrote: while a lossless
        reader takes a chunk at least every DRAIN_TIMEOUT seconds (a service that stores
        or sends each on takes longer for the pipe's and its channel's last chunks than a
        fixed wait gave it), at most DRAIN_LIMIT in all."""
        with trio.move_on_after(DRAIN_LIMIT):
            while True:
                taken = self.output.taken
                with trio.move_on_after(DRAIN_TIMEOUT):
                    await pumps_done.wait()
                if pumps_done.is_set() or self.output.taken == taken:
                    return

    def _hold_mount_ns(self, spawned: Spawned) -> None:
        """Open the new process's mount namespace (made by its clone; it waits before
        anything is mounted there).  Not held if it cannot be opened: its end is then as
        without, no slower."""
        with contextlib.suppress(OSError):
            self._mount_ns = mount_ns_of(spawned)

    def _let_go_of_sysinfo(self) -> None:
        os.close(self._sysinfo)
        self._sysinfo = -1

    def _let_go_of_mount_ns(self) -> None:
        if self._mount_ns >= 0:
            os.close(self._mount_ns)
            self._mount_ns = -1

    def _register(self, spawned: Spawned) -> None:
        self.pid = spawned.pid
        self.pidfd = spawned.pidfd

    async def _reap(self) -> ExitStatus | None:
        """The process's exit status once it has ended; None if nobody could learn it (its
        shim died before it)."""
        if self._shim is None:
            await trio.lowlevel.wait_readable(self.pidfd)
            # Readable pidfd: the process has ended, so this returns at once.
            result = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222
            assert result is not None
            return ExitStatus(result.si_code, result.si_status)
        if self._exited_unseen is not None:
            return self._exited_unseen
        status = await self._shim.wait_exit()
        if status is None:
            log.warning(
                "%s: its shim ended before it; its exit code will be unknown",
                self.container.short_id,
            )
            await trio.lowlevel.wait_readable(self.pidfd)  # a non-child's pidfd too
        return status

    async def _pump_all(
        self, streams: list[tuple[int, trio.lowlevel.FdStream]], done: trio.Event, cgroup: Cgroup
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for stream_id, stream in streams:
                    nursery.start_soon(self._pump, stream_id, stream, cgroup)
        finally:
            done.set()

    async def _pump(self, stream_id: int, stream: trio.lowlevel.FdStream, cgroup: Cgroup) -> None:
        name = "stdout" if stream_id == protocol.STDOUT else "stderr"
        fd = stream.fileno()  # non-blocking (FdStream made it so)
        async with stream:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                keep = partial(self._keep, name)
                publish = partial(self._hand_on, stream_id)
                await _ptyout.pump(fd, keep, publish, cgroup.reading_groups, self._reaped)
                if self.sender is not None:
                    await self.sender.flush(stream_id)
                return
            if self._ledger is not None and self.logs is not None:
                pipe: _Pipe | LoggedPipe = self._ledger.pipe(
                    stream_id, fd, self.logs, name, LEDGER_CHUNK
                )
            else:
                pipe = _Pipe(fd, partial(self._keep, name))
            try:
                while True:
                    data, ended = pipe.read()
                    if data:
                        if self.sender is not None:
                            # Before the chunk leaves the pipe (logged): a daemon killed
                            # meanwhile leaves it to the next, which sends it again.
                            await self.sender.send(stream_id, data)
                        pipe.log(data)
                        await self.output.publish(stream_id, data)
                    if ended:
                        if self.sender is not None:
                            await self.sender.flush(stream_id)
                        return
                    if data:  # more may be there already: read again, once others had a turn
                        await trio.lowlevel.checkpoint()
                    else:
                        await trio.lowlevel.wait_readable(fd)
            finally:
                pipe.close()

    async def _hand_on(self, stream_id: int, data: bytes) -> None:
        """A terminal's chunk the log has: to the log server (a sending driver's, see
        boxd/_linesend.py), then to the attached clients."""
        if self.sender is not None:
            await self.sender.send(stream_id, data)
        await self.output.publish(stream_id, data)

    def _keep(self, name: str, data: bytes) -> None:
        if self.logs is not None:
            self.logs.write(name, data)

    def _outcome(self, status: ExitStatus | None, cgroup: Cgroup | None) -> Outcome:
        code = UNKNOWN_EXIT if status is None else status.exit_code
        error = "" if status is not None else "its shim ended before it: exit code unknown"
        signum = None if status is None or status.code == os.CLD_EXITED else status.status
        oom = False
        summary = None
        if cgroup is None:
            return Outcome(code, oom_killed=False, summary=None, error=error, signal=signum)
        pids_limit_hit = False
        try:
            oom = cgroup.oom_killed()
            pids_limit_hit = cgroup.pids_limit_hit()
            used = cgroup.usage()
            summary = RunSummary(
                wall_seconds=round(self.ended_at - self.started_at, 6),
                cpu_user_seconds=used.cpu_user_ns / 1e9,
                cpu_system_seconds=used.cpu_system_ns / 1e9,
                peak_memory=used.memory_peak or 0,
            )
        except OSError as exc:
            log.warning("%s: cannot read cgroup counters: %s", self.container.short_id, exc)
        if oom and code == 128 + signal.SIGKILL:
            code = 137
        return Outcome(
            code,
            oom_killed=oom,
            summary=summary,
            error=error,
            signal=signum,
            pids_limit_hit=pids_limit_hit,
            # Its SIGKILL's: not a process that ended as the time ran out.
            timed_out=self.timed_out and signum == signal.SIGKILL,
        )


class _Pipe:
    """The pump's reader of an output pipe with no ledger (no live restore, or no log): a
    read takes the chunk out of the pipe."""

    def __init__(self, fd: int, keep: Callable[[bytes], None]) -> None:
        self._fd = fd
        self.log = keep

    def read(self) -> tuple[bytes, bool]:
        """What the pipe has now, up to READ_SIZE (one read: a pipe gives all it holds at
        once); and whether the output has ended."""
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return b"", False
        return data, not data

    def close(self) -> None:
        """Nothing of its own to close (the pump's stream holds the fd)."""


def _placer(
    id_map: tuple[int, int] | None,
    oom_score_adj: int | None,
    hold: Callable[[Spawned], None] | None = None,
) -> Callable[[Spawned], None]:
    """What the parent does while the child waits (in its cgroup already): ``hold`` (the
    run keeps its mount namespace), its OOM score adjustment (kept across exec), and for a
    user namespace its uid/gid maps (container 0..n-1 -> host start..start+n-1)."""

    def place(spawned: Spawned) -> None:
        if hold is not None:
            hold(spawned)
        if oom_score_adj is not None:
            try:
                Path(f"/proc/{spawned.pid}/oom_score_adj").write_text(f"{oom_score_adj}\n")
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"cannot set --oom-score-adj {oom_score_adj}: {exc.strerror} (below the "
                    "daemon's own it needs CAP_SYS_RESOURCE)",
                ) from None
        if id_map is not None:
            start, count = id_map
            for name in ("uid_map", "gid_map"):
                Path(f"/proc/{spawned.pid}/{name}").write_text(f"0 {start} {count}\n")

    return place

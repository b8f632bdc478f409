"""The supervisor: containers' records, their lifecycles and restart policies, on Trio.

``async with open_supervisor(root=...) as sup`` is the library entry point; the daemon is a
socket server around one.  Each container that runs has one lifecycle task in the
supervisor's nursery; it owns the container's current :class:`~boxd._run.Run` and applies
the restart policy when the run ends.  A failure inside one container's tree is recorded on
that container and never reaches the supervisor or another container.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from . import _logs, _plan
from ._cgroup import Cgroup, CgroupHost, Limits, Stats, parse_cpu_list
from ._native import Native, RealNative, SpawnError, is_exec_failure
from ._network import BridgeOptions, Networks
from ._output import Chunk, Output
from ._procview import ProcView, ViewLimits
from ._records import (
    Container,
    ContainerConfig,
    Resources,
    RestartName,
    Status,
    check_name,
    new_id,
    parse_signal,
)
from ._rootfs import Image, ImageError, prepare_default_image, resolve_image
from ._run import Run, start_time_of
from ._store import Store

log = logging.getLogger("boxd.supervisor")

DEFAULT_ROOT = Path("/var/lib/boxd")
BACKOFF_START = 0.1  # seconds before the first restart; doubles up to BACKOFF_MAX
BACKOFF_MAX = 10.0
BACKOFF_RESET = 10.0  # a run this long resets the backoff


class NoSuchContainer(LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no such container: {ref}")


class Conflict(RuntimeError):
    """The container is not in a state that allows the request."""


class StartError(RuntimeError):
    """The runtime could not start the container; ``exit_code`` is what a CLI returns."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@attrs.define(eq=False)
class _Entry:
    """What the supervisor knows about a container beyond its record."""

    container: Container
    logs: _logs.LogWriter | None = None
    run: Run | None = None
    output: Output = attrs.Factory(Output)
    lifecycle: trio.CancelScope | None = None  # set while a lifecycle task runs
    idle: trio.Event = attrs.Factory(trio.Event)  # set when no lifecycle task runs
    backoff: trio.CancelScope | None = None
    # Set when the current run's end is recorded (exit code, status, counters).
    recorded: trio.Event = attrs.Factory(trio.Event)
    stopping: bool = False
    lock: trio.Lock = attrs.Factory(trio.Lock)

    def __attrs_post_init__(self) -> None:
        self.idle.set()


def _limits(resources: Resources) -> Limits:
    return Limits(
        memory=resources.memory,
        memory_swap=resources.memory_swap,
        cpus=resources.cpus,
        cpu_shares=resources.cpu_shares,
        pids_limit=resources.pids_limit,
        cpuset_cpus=resources.cpuset_cpus,
    )


class Supervisor:
    def __init__(
        self,
        store: Store,
        nursery: trio.Nursery,
        native: Native,
        cgroups: CgroupHost,
        *,
        log_max_size: int = _logs.DEFAULT_MAX_SIZE,
        log_max_files: int = _logs.DEFAULT_MAX_FILES,
        networks: Networks | None = None,
    ) -> None:
        self.store = store
        self.native = native
        self.cgroups = cgroups
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self._nursery = nursery
        self._entries: dict[str, _Entry] = {}
        # The daemon's /proc view (issue: containers see their own limits), when served.
        self.procview: ProcView | None = None
        self._default_image: Path | None = None
        self._trash = trio.Event()  # set: a removed container's directory awaits deletion
        self.networks = networks or Networks(store.root)

    # ---- lookup ---------------------------------------------------------------------

    def _lookup(self, ref: str) -> _Entry:
        """By full id, by name, or by a unique id prefix."""
        entry = self._entries.get(ref)
        if entry is not None:
            return entry
        for e in self._entries.values():
            if e.container.name == ref:
                return e
        if ref and all(c in "0123456789abcdef" for c in ref):
            matches = [e for cid, e in self._entries.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise NoSuchContainer(f"{ref} (the prefix matches {len(matches)} containers)")
        raise NoSuchContainer(ref)

    def inspect(self, ref: str) -> Container:
        return self._lookup(ref).container

    def list(self, *, all: bool = False) -> list[Container]:
        found = [e.container for e in self._entries.values()]
        if not all:
            found = [c for c in found if c.state.status is Status.RUNNING]
        return sorted(found, key=lambda c: c.created_at, reverse=True)

    def run_of(self, ref: str) -> Run | None:
        """The container's current run, if its process is running."""
        run = self._lookup(ref).run
        return run if run is not None and not run.exited.is_set() else None

    def sample(self, refs: Sequence[str] = ()) -> builtins.list[tuple[Container, Stats]]:
        """Counters of the named (default: all running) containers, read now."""
        entries = [self._lookup(r) for r in refs] if refs else list(self._entries.values())
        found = []
        for entry in entries:
            if entry.run is None or entry.run.exited.is_set():
                continue
            with contextlib.suppress(OSError):
                found.append((entry.container, self.cgroups.open(entry.container.id).stats()))
        return found

    def view_limits(self, pid: int) -> ViewLimits | None:
        """What the /proc view shows the process (or thread) ``pid``: its container's
        limits and usage, found through its cgroup; None for a process of no container."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return None
        for part in text.replace(":", "/").replace("\n", "/").split("/"):
            entry = self._entries.get(part)
            if entry is not None:
                return self._view_of(entry)
        return None

    def _view_of(self, entry: _Entry) -> ViewLimits:
        c = entry.container
        res = c.config.resources
        stats = self.cgroups.open(c.id).stats()
        swap_limit = None
        if res.memory is not None and res.memory_swap is not None and res.memory_swap >= 0:
            swap_limit = res.memory_swap - res.memory
        return ViewLimits(
            memory_limit=res.memory,
            memory_usage=stats.memory_usage,
            swap_limit=swap_limit,
            swap_usage=0,
            cpus=tuple(sorted(parse_cpu_list(res.cpuset_cpus))) if res.cpuset_cpus else None,
            cpu_quota=res.cpus,
            started_at=c.state.started_at or time.time(),
            cpu_usage_ns=(stats.cpu_user_ns, stats.cpu_system_ns),
        )

    def log_dir(self, ref: str) -> Path:
        return self.store.container_dir(self._lookup(ref).container.id) / "logs"

    # ---- create ---------------------------------------------------------------------

    def _image(self, ref: str) -> Image:
        if ref == "default" and self._default_image is None:
            self._default_image = prepare_default_image(self.store.images)
        return resolve_image(ref, self.store.images)

    async def create(self, config: ContainerConfig, name: str = "") -> Container:
        if name:
            check_name(name)
            for e in self._entries.values():
                if e.container.name == name:
                    raise Conflict(
                        f"the name {name!r} is already in use by container {e.container.short_id}"
                    )
        try:
            image = self._image(config.image)
        except ImageError as exc:
            raise ValueError(str(exc)) from None
        cid = new_id()
        if config.image != "default":
            config = attrs.evolve(config, image=image.name)
        self.cgroups.validate(_limits(config.resources))
        self.networks.check(config.network)
        container = Container(
            id=cid, name=name or self._generate_name(cid), created_at=time.time(), config=config
        )
        self.store.save(container)
        self._entries[cid] = _Entry(container)
        return container

    def _generate_name(self, cid: str) -> str:
        names = {e.container.name for e in self._entries.values()}
        name = f"box-{cid[:8]}"
        n = 8
        while name in names:
            n += 1
            name = f"box-{cid[:n]}"
        return name

    # ---- start and the lifecycle ----------------------------------------------------

    async def start(self, ref: str) -> Container:
        """Start the container; returns once its process really runs (no-op if it runs)."""
        entry = self._lookup(ref)
        await self._start(entry, attach=False)
        return entry.container

    async def start_attached(self, ref: str) -> tuple[trio.MemoryReceiveChannel[Chunk], Run]:
        """Start the container (if it is not running) with its output subscribed from the
        first byte: the foreground ``run`` and ``start -a``.  The Run tells the exit code
        even if the container is removed (``--rm``) right after."""
        entry = self._lookup(ref)
        channel = await self._start(entry, attach=True)
        assert channel is not None and entry.run is not None
        return channel, entry.run

    async def _start(
        self, entry: _Entry, *, attach: bool
    ) -> trio.MemoryReceiveChannel[Chunk] | None:
        async with entry.lock:
            if entry.lifecycle is not None:
                return entry.output.subscribe() if attach else None
            if entry.output.closed:
                entry.output = Output()
            channel = entry.output.subscribe(lossless=True) if attach else None
            entry.stopping = False
            entry.container.state.manual_stop = False
            entry.run = None
            try:
                await self._nursery.start(self._lifecycle, entry)
            except BaseException:
                if channel is not None:
                    channel.close()
                raise
            return channel

    async def run(self, config: ContainerConfig, name: str = "") -> Container:
        container = await self.create(config, name)
        try:
            return await self.start(container.id)
        except BaseException:
            if config.auto_remove:
                with trio.CancelScope(shield=True):
                    await self.remove(container.id, force=True)
            raise

    async def _lifecycle(self, entry: _Entry, *, task_status: trio.TaskStatus[None]) -> None:
        c = entry.container
        with trio.CancelScope() as scope:
            entry.lifecycle = scope
            entry.idle = trio.Event()
            try:
                backoff = BACKOFF_START
                first = True
                while True:
                    ran = await self._run_once(entry, task_status if first else None)
                    first = False
                    st = c.state
                    assert st.exit_code is not None
                    if entry.stopping or not c.config.restart.wants_restart(
                        exit_code=st.exit_code, stopped=False, restarts=st.restart_count
                    ):
                        break
                    backoff = BACKOFF_START if ran >= BACKOFF_RESET else backoff
                    log.info(
                        "%s: restarting in %.1fs (policy %s)", c.short_id, backoff, c.config.restart
                    )
                    with trio.CancelScope() as entry.backoff:
                        await trio.sleep(backoff)
                    entry.backoff = None
                    if entry.stopping:
                        break
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    st.restart_count += 1
            except Exception as exc:
                if first and entry.run is None:  # not started: the starter gets it
                    raise
                log.exception("%s: lifecycle failed", c.short_id)
                c.state.error = str(exc)
                c.state.status = Status.EXITED
                self._save(c)
            finally:
                entry.lifecycle = None
                entry.idle.set()
        if c.config.auto_remove and c.id in self._entries:
            await self._discard(entry)

    async def _run_once(self, entry: _Entry, task_status: trio.TaskStatus[None] | None) -> float:
        """One run; returns how long it ran.  Reports start via task_status (first run)."""
        c = entry.container
        st = c.state
        image = self._image(c.config.image)
        if entry.logs is None:
            entry.logs = _logs.LogWriter.open(
                self.store.container_dir(c.id) / "logs",
                max_size=c.config.log_max_size or self.log_max_size,
                max_files=c.config.log_max_files or self.log_max_files,
            )
        if entry.output.closed:
            entry.output = Output()
        run = Run(c, entry.output, entry.logs)
        entry.recorded = trio.Event()
        cgroup = self.cgroups.create(c.id, _limits(c.config.resources))
        cdir = self.store.container_dir(c.id)
        view = self.procview.files() if self.procview is not None and c.config.procview else None
        net = self.networks.attachment(c)
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(
                        functools.partial(run.execute, network=net),
                        self.native,
                        lambda stdio: _plan.build(
                            c, image, cdir, stdio=stdio, view_files=view, net=net.etc()
                        ),
                        cgroup,
                    )
                except Exception as exc:
                    # Raised after the nursery closes, so the caller sees it bare.
                    failure = exc
                else:
                    entry.run = run
                    st.status = Status.RUNNING
                    st.pid = run.pid
                    st.pid_start_time = start_time_of(run.pid)
                    st.started_at = time.time()
                    st.finished_at = None
                    st.exit_code = None
                    st.error = ""
                    st.oom_killed = False
                    st.summary = None
                    self._save(c)
                    if task_status is not None:
                        task_status.started()
        except Exception:
            if failure is not None or run.outcome is None:
                raise
            # The run's own tree failed after the process started (a bug): record it on
            # this container; the supervisor and the other containers go on.
            log.exception("%s: supervision failed", c.short_id)
            st.error = "supervision failed; see the daemon's log"
        if failure is not None:
            return await self._start_failed(entry, cgroup, failure, report=task_status is not None)
        outcome = run.outcome
        assert outcome is not None
        st.status = Status.STOPPED if entry.stopping else Status.EXITED
        st.exit_code = outcome.exit_code
        st.oom_killed = outcome.oom_killed
        st.summary = outcome.summary
        st.finished_at = time.time()
        st.pid = 0
        self._save(c)
        entry.recorded.set()
        return st.finished_at - (st.started_at or st.finished_at)

    async def _start_failed(
        self, entry: _Entry, cgroup: Cgroup, failure: Exception, *, report: bool
    ) -> float:
        """Record why the process could not start; raise it to the starter if there is
        one (a restart has nobody to tell but the record)."""
        c = entry.container
        st = c.state
        with trio.CancelScope(shield=True):
            await cgroup.remove()
        entry.output.close()
        code = is_exec_failure(failure) or 125
        st.error = str(failure)
        st.exit_code = code
        if st.status is Status.RUNNING:
            st.status = Status.EXITED
        self._save(c)
        entry.recorded.set()
        if not report:
            return 0.0
        if isinstance(failure, OSError | ValueError):
            raise StartError(str(failure), code) from failure
        raise failure

    def _save(self, container: Container, *, durable: bool = False) -> None:
        """Record a container that still exists (durable: its configuration changed)."""
        if container.id in self._entries:
            self.store.save(container, durable=durable)

    # ---- stop, kill, restart, remove, wait ------------------------------------------

    async def stop(self, ref: str, grace: float | None = None, *, manual: bool = True) -> None:
        """Stop signal, up to ``grace`` seconds (default: the container's stop timeout),
        then SIGKILL of the whole cgroup."""
        entry = self._lookup(ref)
        c = entry.container
        if grace is not None and (not math.isfinite(grace) or grace < 0):
            raise ValueError(f"invalid stop timeout {grace!r}")
        wait = c.config.stop_timeout if grace is None else grace
        if entry.lifecycle is None:
            return
        entry.stopping = True
        if manual:
            c.state.manual_stop = True
        if entry.backoff is not None:
            entry.backoff.cancel(reason="container stopped during restart backoff")
        run = entry.run
        if run is not None and not run.exited.is_set():
            run.signal(parse_signal(c.config.stop_signal))
            with trio.move_on_after(wait):
                await run.exited.wait()
            if not run.exited.is_set():
                log.info("%s: did not stop in %ss; killing", c.short_id, wait)
                run.signal(signal.SIGKILL)
        await entry.idle.wait()

    async def kill(self, ref: str, sig: str = "SIGKILL") -> None:
        signum = parse_signal(sig)
        entry = self._lookup(ref)
        run = entry.run
        if run is None or run.exited.is_set():
            raise Conflict(f"container {entry.container.name} is not running")
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            entry.stopping = True
            entry.container.state.manual_stop = True
        run.signal(signum)

    async def restart(self, ref: str, grace: float | None = None) -> Container:
        await self.stop(ref, grace)
        return await self.start(ref)

    async def remove(self, ref: str, *, force: bool = False) -> None:
        entry = self._lookup(ref)
        if entry.lifecycle is not None:
            if not force:
                raise Conflict(
                    f"container {entry.container.name} is running: stop it first or use --force"
                )
            await self.stop(ref, grace=0)
        await self._discard(entry)

    async def _discard(self, entry: _Entry) -> None:
        cid = entry.container.id
        if self._entries.pop(cid, None) is None:
            return
        if entry.logs is not None:
            entry.logs.close()
        self.networks.forget(cid)
        self.store.discard(cid)
        self._trash.set()

    async def _collect_trash(self) -> None:
        """Delete removed containers' directories in a thread, one batch at a time."""
        while True:
            await self._trash.wait()
            self._trash = trio.Event()
            await trio.to_thread.run_sync(self.store.empty_trash)

    async def wait(self, ref: str) -> int:
        """Wait until the current run ends; its exit code (the last one if not running)."""
        entry = self._lookup(ref)
        run = entry.run
        if run is not None and entry.lifecycle is not None:
            await entry.recorded.wait()
            assert run.outcome is not None
            return run.outcome.exit_code
        code = entry.container.state.exit_code
        return 0 if code is None else code

    async def exec(
        self,
        ref: str,
        command: tuple[str, ...],
        *,
        env: tuple[str, ...] = (),
        workdir: str = "",
        user: str = "",
        tty: bool = False,
        interactive: bool = False,
        output: Output | None = None,
        task_status: trio.TaskStatus[Run] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Run a process inside the running container (its namespaces, cgroup, root,
        capabilities and seccomp filter); report its Run via ``task_status`` once it runs
        and return its exit code.  Cancelling this kills the process.  Its output goes to
        ``output`` (subscribe before calling, so that nothing is missed)."""
        entry = self._lookup(ref)
        c = entry.container
        run = entry.run
        if run is None or run.exited.is_set():
            raise Conflict(f"container {c.name} is not running")
        request = _plan.ExecSpec(command=command, env=env, workdir=workdir, user=user, tty=tty)
        _plan.check_exec(request)
        proc = Run(c, output or Output(), None, tty=tty, interactive=interactive)
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(
                    functools.partial(proc.execute, owns_cgroup=False),
                    self.native,
                    lambda stdio: _plan.build_exec(c, request, run.pidfd, stdio=stdio),
                    self.cgroups.open(c.id),
                )
            except (SpawnError, OSError) as exc:
                raise StartError(str(exc), is_exec_failure(exc) or 125) from exc
            task_status.started(proc)
        assert proc.outcome is not None
        return proc.outcome.exit_code

    async def update(self, ref: str, resources: Resources) -> Container:
        entry = self._lookup(ref)
        c = entry.container
        limits = _limits(resources)
        self.cgroups.validate(limits)
        if entry.run is not None and not entry.run.exited.is_set():
            self.cgroups.open(c.id).update(limits)
        c.config = attrs.evolve(c.config, resources=resources)
        self._save(c, durable=True)
        return c

    # ---- start-up and shutdown ------------------------------------------------------

    async def _recover(self) -> None:
        """Make the records true after a crash; clean what a dead daemon left behind."""
        self._trash.set()  # directories of containers removed just before it died
        for c in self.store.load_all():
            self._entries[c.id] = _Entry(c)
            st = c.state
            if st.status is not Status.RUNNING:
                continue
            alive = st.pid > 0 and start_time_of(st.pid) == st.pid_start_time
            if alive:
                log.warning("%s: killing process %d left by a previous daemon", c.short_id, st.pid)
                try:
                    pidfd = os.pidfd_open(st.pid)
                except ProcessLookupError:
                    pass
                else:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    os.close(pidfd)
            st.status = Status.EXITED
            st.exit_code = 255
            st.error = "the daemon ended while the container ran; exit code unknown"
            st.finished_at = time.time()
            st.pid = 0
            self.store.save(c)
        for name in self.cgroups.list_children():
            log.info("removing cgroup %s left by a previous daemon", name)
            await self.cgroups.open(name).remove()
        await self.networks.recover(set(self._entries))
        for entry in list(self._entries.values()):
            c = entry.container
            if c.config.auto_remove:
                await self._discard(entry)
            elif _restart_at_boot(c):
                try:
                    await self.start(c.id)
                except Exception as exc:  # one container must not stop the daemon
                    log.error("%s: restart at start-up failed: %s", c.short_id, exc)

    async def _shutdown(self) -> None:
        async with trio.open_nursery() as nursery:
            for entry in list(self._entries.values()):
                if entry.lifecycle is not None:
                    nursery.start_soon(lambda cid: self.stop(cid, manual=False), entry.container.id)

    def counts(self) -> tuple[int, int]:
        running = sum(1 for e in self._entries.values() if e.lifecycle is not None)
        return len(self._entries), running


def _restart_at_boot(c: Container) -> bool:
    policy = c.config.restart.name
    st = c.state
    if st.status is Status.CREATED or st.exit_code is None:
        return False
    if policy is RestartName.ALWAYS:
        return True
    if policy is RestartName.UNLESS_STOPPED:
        return not st.manual_stop
    if policy is RestartName.ON_FAILURE:
        return st.exit_code == 255 and bool(st.error)
    return False


def cgroup_name(root: Path) -> str:
    """``boxd`` for the default root; one name per root otherwise, so that daemons on
    different roots (tests, a library user beside the daemon) never touch each other's
    cgroups when they clean up."""
    if root.resolve() == DEFAULT_ROOT:
        return "boxd"
    return "boxd-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


@asynccontextmanager
async def open_supervisor(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    native: Native | None = None,
    cgroup_parent: str | None = None,
    log_max_size: int = _logs.DEFAULT_MAX_SIZE,
    log_max_files: int = _logs.DEFAULT_MAX_FILES,
    procview: ProcView | None = None,
    bridge: BridgeOptions | None = None,
) -> AsyncIterator[Supervisor]:
    """A supervisor for the containers stored under ``root``.

    On entry, records are reconciled with reality (see :meth:`Supervisor._recover`); on
    exit every running container is stopped gracefully (its stop signal and timeout),
    and the networks' bridges and rules are removed.  ``bridge``: the default network's
    bridge and subnet.
    """
    store = Store(Path(root))
    cgroups = CgroupHost.detect(parent=cgroup_parent, name=cgroup_name(store.root))
    async with trio.open_nursery() as nursery:
        sup = Supervisor(
            store,
            nursery,
            native or RealNative(),
            cgroups,
            log_max_size=log_max_size,
            log_max_files=log_max_files,
            networks=Networks(store.root, bridge or BridgeOptions()),
        )
        sup.procview = procview
        sup.networks.nursery = nursery
        try:
            await sup._recover()
            nursery.start_soon(sup._collect_trash)
            yield sup
        finally:
            with trio.CancelScope(shield=True):
                await sup._shutdown()
                await sup.networks.close()
                await trio.to_thread.run_sync(store.empty_trash)
            nursery.cancel_scope.cancel(reason="supervisor closed")

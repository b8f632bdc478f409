"""The supervisor: containers' records, their lifecycles and restart policies, on Trio.

``async with open_supervisor(root=...) as sup`` is the library entry point; the daemon is a
socket server around one.  Each container that runs has one lifecycle task in the
supervisor's nursery; it owns the container's current :class:`~boxd._run.Run` and applies
the restart policy when the run ends.  A failure inside one container's tree is recorded on
that container and never reaches the supervisor or another container.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import errno
import functools
import hashlib
import logging
import math
import os
import posixpath
import select
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import (
    _copyroot,
    _devicemap,
    _diff,
    _lifecycle,
    _links,
    _live,
    _logs,
    _netcount,
    _nsmodes,
    _plan,
    _ptyout,
    _resources,
    _shim,
    _trim,
)
from ._cgroup import (
    Cgroup,
    CgroupError,
    CgroupHost,
    MemoryDetail,
    Stats,
)
from ._diff import Change
from ._events import Events
from ._healthcheck import active as active_healthcheck
from ._images.config import apply_image_config, is_default, rootfs_of
from ._images.registry import Credentials
from ._images.store import ImageStore
from ._images.unpack import LayerError
from ._images.unpacks import Unpacks
from ._lifecycle import (
    CREATED,
    EXITED,
    PAUSED,
    REMOVING,
    RESTARTING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    error_text,
)
from ._lifecycle import AmbiguousContainer as AmbiguousContainer
from ._lifecycle import Conflict as Conflict
from ._lifecycle import NoSuchContainer as NoSuchContainer
from ._live import Adoption
from ._native import (
    Namespace,
    Native,
    RealNative,
    SpawnError,
    SpawnPlan,
    Stage,
    is_exec_failure,
)
from ._network import (
    DEFAULT_NETWORK,
    Attachment,
    BridgeOptions,
    NetworkError,
    Networks,
    NoSuchNetwork,
    builtin_network_id,
)
from ._output import Chunk, Output
from ._procview import CPU_FILES, CPU_USAGE_FILES, MEMORY_FILES, ProcView, ViewLimits
from ._prune import PruneFilter
from ._records import (
    ID_RE,
    SENDING_DRIVERS,
    STOP_TIMEOUT,
    Container,
    ContainerConfig,
    ImageMount,
    Resources,
    RestartName,
    RestartPolicy,
    Status,
    Ulimit,
    Volume,
    check_name,
    invalid,
    keeps_log,
    log_compressed,
    log_options_of,
    log_sizes,
    new_id,
    parse_signal,
)
from ._rootfs import (
    Image,
    ImageError,
    container_dirs_at,
    container_uppers,
    image_mount_sources,
    image_sources,
    is_file_at,
    layer_dirs,
    own_file_at,
    prepare_default_image,
    resolve_image,
)
from ._run import Run, start_time_of
from ._shim import ExitStatus
from ._store import RecordWrites, RootInUse, Store, hold_root
from ._tmpfs import parse_tmpfs
from ._volumes import (
    FILLING,
    NoSuchVolume,
    VolumeMountError,
    Volumes,
    copy_up,
    fill_subpath,
    mounts,
    stacked_dirs,
)

if TYPE_CHECKING:
    from ._images.pull import Puller
    from ._linesend import LineSender

log = logging.getLogger("boxd.supervisor")

DEFAULT_ROOT = Path("/var/lib/boxd")
BACKOFF_START = 0.1  # seconds before the first restart; doubles up to BACKOFF_MAX
BACKOFF_MAX = 60.0  # Docker's restart manager's
BACKOFF_RESET = 10.0  # a run this long resets the backoff
# In a container's directory while a commit holds it paused (see Supervisor.pause).
COMMIT_PAUSE = "commit-pause"
RECORD_GRACE = 10.0  # how long a run's cgroup waits for its end to be recorded at most
KILL_WAIT = 10.0  # how long a SIGKILL's answer waits for the end to be recorded (Docker's)
# The trash is emptied once no container has started or been removed for TRASH_QUIET
# seconds, or TRASH_MAX_DELAY after it was first filled if they never pause: deleting
# directories while containers start made every start slower (the deletions' I/O, and on
# ext4 without a journal each new inode's search skips the ones deleted in the last
# seconds), see bench/README.
TRASH_QUIET = 0.25
TRASH_MAX_DELAY = 5.0
# Unless the store's file system is short of space: less free than LOW_SPACE, or than a
# tenth of its size (of its inodes) if that is less.  Then a removal (rm, volume rm, the
# prunes) returns once what it removed is deleted, as Docker's does, and a create waits
# for what earlier removals put in the trash (a `run --rm` answers once its container
# is gone from the store): who removes containers to make room has it at once.
LOW_SPACE = 1 << 30
# The phases in which a container holds its volumes' mounts (see _unmount_idle_volumes).
_VOLUMES_HELD = frozenset({STARTING, RUNNING, PAUSED, STOPPING})
# At that same pause, spare container directories are made (Store.make_spare_dirs) for
# the next burst of starts, as many as started since the last pause, SPARES_MIN to
# SPARES_MAX per kind of image (its overlays): a start takes one by a rename instead of
# making twelve inodes (see Store.take_spare_dir).
SPARES_MIN = 2
SPARES_MAX = 32


class StartError(RuntimeError):
    """The runtime could not start the container; ``exit_code`` is what a CLI returns."""

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _has_ended(pidfd: int) -> bool:
    """Whether the process of ``pidfd`` has exited (its pidfd is readable then)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _exec_start_code(exc: BaseException) -> int:
    """The exit code of an exec that could not start, as Docker's daemon gives it: 127
    for a path not found (the command, or a -w directory: runc's "no such file or
    directory"), 126 for anything else (a command not executable, an unknown -u user)."""
    if (code := is_exec_failure(exc)) is not None:
        return code
    missing = isinstance(exc, SpawnError) and exc.errno in (errno.ENOENT, errno.ENOTDIR)
    return 127 if missing else 126


def _exec_start_text(exc: BaseException, argv0: str) -> str:
    """What an exec that could not start says: a command name found nowhere on the search
    path in runc's words, as dockerd passes them on (``exec: "nope": executable file not
    found in $PATH``); anything else as the failure says it."""
    missing = isinstance(exc, SpawnError) and exc.stage is Stage.EXEC and exc.errno == errno.ENOENT
    if missing and "/" not in argv0:
        return f'exec: "{argv0}": executable file not found in $PATH'
    return error_text(exc)


@attrs.define(eq=False)
class _Entry:
    """What the supervisor knows about a container beyond its record."""

    container: Container
    logs: _logs.LogWriter | None = None
    # A sending log driver's connection, open for a run only (as the log's file).
    sender: LineSender | None = None
    run: Run | None = None
    output: Output = attrs.Factory(Output)
    idle: trio.Event = attrs.Factory(trio.Event)  # set when no lifecycle task runs
    backoff: trio.CancelScope | None = None
    # Set when the current run's end is recorded (exit code, status, counters).
    recorded: trio.Event = attrs.Factory(trio.Event)
    changed: trio.Event = attrs.Factory(trio.Event)  # set (and replaced) at each transition
    gone: trio.Event = attrs.Factory(trio.Event)  # set once it is removed
    # Its current or last run ends because somebody asked (stop, kill): no restart.
    stopping: bool = False
    # A restart's stop: an auto_remove container stays for the start that follows, as
    # Docker's restart keeps it.
    restarting: bool = False
    lock: trio.Lock = attrs.Factory(trio.Lock)  # held while it starts, pauses, is removed
    # Set once the last run's cgroup is removed (in the background, after its end), and
    # once its mount namespace is dismantled too (see Supervisor._dismantle_later).
    cgroup_removed: trio.Event | None = None
    dismantled: trio.Event | None = None
    # The image `run` resolved as it created the container, for the start that follows
    # at once (taken by it, whatever happens: a later start resolves it afresh).
    image: Image | None = None
    # Its record's durable writes, in a worker thread (Supervisor._write_durably): a save
    # meanwhile is made after such a write, not beside it.
    record: RecordWrites = attrs.Factory(RecordWrites)

    def __attrs_post_init__(self) -> None:
        self.idle.set()

    @property
    def phase(self) -> Status:
        return self.container.state.status


class _Relay(trio.TaskStatus[Run]):
    """A task status that passes ``started`` on and remembers that it was called."""

    def __init__(self, status: trio.TaskStatus[Run]) -> None:
        self.status = status
        self.done = False

    def started(self, value: Run | None = None) -> None:
        assert value is not None
        self.done = True
        self.status.started(value)


def _short_of_space(path: Path) -> bool:
    """Whether the file system of ``path`` has little room left, in bytes or in inodes
    (see LOW_SPACE)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    free, size = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return free < min(LOW_SPACE, size // 10) or st.f_favail < st.f_files // 10


def _bytes_below(top: Path) -> int:
    """The sizes of the files below ``top`` (links not followed)."""
    total = 0
    for where, _, files in os.walk(top):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(where, name)).st_size
    return total


def _check_volume_sources(config: ContainerConfig) -> None:
    """A missing host path is named at create, not found by a mount at start: a -v's (a
    Bind's) in boxd's words, a --mount's (HostConfig.Mounts') in Docker's daemon's."""
    mounted = {posixpath.normpath(p) for p in config.mount_points}
    for v in config.volumes:
        if v.is_volume or os.path.exists(v.host):
            continue
        if posixpath.normpath(v.container) in mounted:
            raise ValueError(
                f'invalid mount config for type "bind": bind source path does not exist: {v.host}'
            )
        raise invalid("volumes", f"{v.host}:{v.container}", f"{v.host} does not exist")


# An image mount of the image default (or of one built on it, or of a root directory).
_HOST_FILES = (
    "type=image mount at {}: {} shows the host's own directories, not an image's layers:"
    " bind the host's path with type=bind,readonly instead"
)


class Supervisor:
    def __init__(
        self,
        store: Store,
        nursery: trio.Nursery,
        native: Native,
        cgroups: CgroupHost,
        *,
        log_driver: str = "json-file",
        log_max_size: int | None = None,
        log_max_files: int | None = None,
        log_options: tuple[str, ...] = (),
        networks: Networks | None = None,
        live_restore: bool = False,
    ) -> None:
        self.store = store
        self.log_driver = log_driver  # a new container's, unless its config names one
        # The kept log options (daemon.json's log-opts: mode, max-buffer-size, the log
        # attributes) of a new container that keeps its log with log_driver, each unless
        # its own names it: Docker's merge.
        self.log_options = log_options
        # Containers outlive this supervisor, kept by shims (see boxd/_live.py).
        self.live_restore = live_restore
        self._detached_execs: set[Run] = set()  # `exec -d` processes running
        self.native = native
        self.cgroups = cgroups
        self._parent_hosts: dict[str, CgroupHost] = {}  # by --cgroup-parent (_cgroups_of)
        # The daemon's rotation where it was given one (--log-max-size, daemon.json's
        # max-size, ...): recorded on each new container that keeps its log with
        # log_driver and names none, as Docker merges its log-opts at the creation (so
        # inspect shows it, and the container keeps it across a change of the daemon's);
        # a container without any rotates by its driver's default.
        self.log_max_size = log_max_size
        self.log_max_files = log_max_files
        self._nursery = nursery
        # Set once open_supervisor's block has ended: its tasks are gone, nothing starts.
        self.closed = False
        self._entries: dict[str, _Entry] = {}
        # The daemon's /proc view (issue: containers see their own limits), when served.
        self.procview: ProcView | None = None
        self._default_image: Path | None = None
        self.images = ImageStore(store.images)
        self.unpacks = Unpacks(self.images, nursery, self._refused_layer)
        # Deleting images takes this lock; pulls register the layers they fetch under it.
        self.images_lock = trio.Lock()
        self.insecure_registries: frozenset[str] = frozenset()
        self.max_download_attempts = 5
        # The daemon's labels (Docker's --label), as /info lists them.
        self.labels: tuple[str, ...] = ()
        # Docker's default-ulimits: every new container's, but for the names it gives.
        self.default_ulimits: tuple[Ulimit, ...] = ()
        self._puller: Puller | None = None
        # Set: a removed container's directory awaits deletion (_trash_filled), or spare
        # directories are wanted (see _collect_trash).
        self._trash = trio.Event()
        self._trash_filled = False
        # Starts since the last pause, per kind of image (its overlays' directories): how
        # many spare directories the pause makes for each (counted in worker threads).
        self._spare_demand: dict[tuple[str, ...], int] = {}
        self._busy_at = 0.0  # when a container last started or was removed (Trio's clock)
        self._trash_wait: trio.CancelScope | None = None  # the trash's wait for a pause
        self._trash_latest = 0.0  # when it is emptied even if there is no pause
        self._trash_fills = 0  # how many times something was put in the trash
        self._trash_emptied = 0  # of those, how many the last emptying deleted
        self._trash_hurry = False  # someone waits for the trash: no pause is awaited
        self._trash_done = trio.lowlevel.ParkingLot()  # woken at each emptying's end
        self._changes = trio.lowlevel.ParkingLot()  # woken at each state change or removal
        self._removals: set[trio.Event] = set()  # cgroup removals under way (their end)
        # Starts' file system work (_prepare_run) in one worker thread at a time: with one
        # per start, 20 at once ran 20 threads whose Python fought the loop for the GIL.
        self._prepare_limiter = trio.CapacityLimiter(1)
        # Volumes' mounts are made and undone one at a time: two starts on one volume mount
        # it once, and an end that undoes it does so before a start looks or after.
        self._volume_mounts = trio.Lock()
        # Volumes a copy into or out of a container at rest holds mounted meanwhile.
        self._copy_volumes: collections.Counter[str] = collections.Counter()
        self.events = Events(self._network_ids)
        self.networks = networks or Networks(store.root)
        self.networks.peer = self._network_peer
        self.volumes = Volumes(store.root / "volumes", store.trash, self.events.volume)

    @property
    def daemon_id(self) -> str:
        """The daemon's ID (``/info``'s, its events' actor): one per root."""
        return hashlib.sha256(f"boxd {self.store.root}".encode()).hexdigest()[:36]

    def set_registry_options(self, insecure: frozenset[str], attempts: int) -> None:
        """The registries reached over plain HTTP and the tries of a layer's download, for
        the pulls from now on (the daemon's start, and its reload on SIGHUP)."""
        self.insecure_registries = insecure
        self.max_download_attempts = attempts
        if self._puller is not None:
            self._puller.insecure = insecure
            self._puller.attempts = attempts

    @property
    def puller(self) -> Puller:
        """The image puller, made at the first pull or image removal: its module (the
        registry protocol's manifests and layers, ~0.12 MB) is not loaded before."""
        if self._puller is None:
            from ._images.pull import Puller

            self._puller = Puller(
                self.images,
                self.unpacks,
                Credentials(self.store.root / "auth.json"),
                self.insecure_registries,
                lock=self.images_lock,
                attempts=self.max_download_attempts,
            )
        return self._puller

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
                raise AmbiguousContainer(ref)
        raise NoSuchContainer(ref)

    def inspect(self, ref: str) -> Container:
        return self._lookup(ref).container

    def list(self, *, all: bool = False) -> list[Container]:
        found = [
            e.container
            for e in self._entries.values()
            if all or _lifecycle.shown_by_default(e.phase)
        ]
        return sorted(found, key=lambda c: c.created_at, reverse=True)

    def images_in_use(self) -> set[str]:
        """The ids of the stored images some container runs on or mounts (its own, and
        those of its ``--mount type=image``)."""
        return {i for e in self._entries.values() for i in e.container.config.image_ids}

    def run_of(self, ref: str) -> Run | None:
        """The container's current run, if its process is running (or paused)."""
        entry = self._lookup(ref)
        return entry.run if entry.phase in _lifecycle.WITH_PROCESS else None

    def sample(
        self, refs: Sequence[str] = ()
    ) -> builtins.list[tuple[Container, Stats, dict[str, _netcount.Interface]]]:
        """Counters of the named (default: all running) containers, read now: their
        cgroups' and their network interfaces'."""
        entries = [self._lookup(r) for r in refs] if refs else list(self._entries.values())
        found = []
        for entry in entries:
            run = entry.run
            if entry.phase not in _lifecycle.WITH_PROCESS or run is None:
                continue
            with contextlib.suppress(OSError):
                stats = self._cgroup_of(entry.container).stats()
                found.append((entry.container, stats, _netcount.read(run.pid)))
        return found

    def view_known(self, container: str) -> bool:
        """Whether ``container`` is the id of one of our containers (the /proc view's
        resolver: it serves their files)."""
        return container in self._entries

    def view_limits(self, container: str, path: str) -> ViewLimits:
        """What the /proc view's file ``path`` shows ``container``'s processes: its limits
        and the usage that file shows; LookupError once it is removed."""
        entry = self._entries.get(container)
        if entry is None:
            raise LookupError(f"container {container} was removed")
        return self._view_of(entry, path)

    def _viewed(self, c: Container) -> bool:
        """Whether the container's processes get the /proc view (and their sysinfo(2)
        answered from it)."""
        return self.procview is not None and c.config.procview

    def _memory_view(self, c: Container) -> Callable[[], ViewLimits]:
        """What a sysinfo(2) call of the container's processes is answered from: the
        limits its /proc/meminfo shows."""
        return functools.partial(self.view_limits, c.id, "/proc/meminfo")

    def _view_of(self, entry: _Entry, path: str) -> ViewLimits:
        c = entry.container
        # What the file shows, and no more: it is made anew at each read from its start
        # (a cgroup file's open and read take 20-40 us; stats() reads eight to ten).  The
        # two sets of files are apart, so the cgroup is looked up once at most, and not
        # for the others.
        if path in MEMORY_FILES:
            memory = self._cgroup_of(c).memory_detail()
        else:
            memory = MemoryDetail({}, None, 0)
        cpu = cpus = quota = None
        if path in CPU_FILES:
            cg = self._cgroup_of(c)
            cpu = cg.cpu_times() if path in CPU_USAGE_FILES else None
            # The CPUs its cpuset gives it now and the CPU time it may take (--cpus, or
            # less where a parent's quota is lower), as the kernel applies them.
            cpus = cg.effective_cpus()
            quota = cg.cpu_limit()
        return ViewLimits(
            memory_limit=memory.limit,
            memory_usage=memory.usage,
            swap_limit=memory.swap_limit,
            swap_usage=memory.swap_usage,
            memory_stat=memory.stat,
            cpus=tuple(sorted(cpus)) if cpus else None,
            cpu_quota=quota,
            cpu_usage_ns=cpu,
        )

    def subscribe(self, ref: str, *, lossless: bool = False) -> trio.MemoryReceiveChannel[Chunk]:
        """The container's output from now on: of its current run or, if none runs, of the
        next one from its first byte (a client that attaches before start)."""
        entry = self._lookup(ref)
        if entry.output.closed:
            entry.output = Output()
        self.events.report("attach", entry.container)
        return entry.output.subscribe(lossless=lossless)

    async def wait_changed(self) -> None:
        """Return at the next change of any container's recorded state, or a removal."""
        await self._changes.park()

    async def sizes(self, containers: Sequence[Container]) -> builtins.list[tuple[int, int]]:
        """Docker's SizeRw and SizeRootFs of each container: the bytes it wrote to its own
        filesystem (see written_size), read in a worker thread; and those with its
        image's layers (none for default and a root directory, which are the host's
        files)."""
        from ._images.store import written_size

        dirs = [self.store.container_dir(c.id) for c in containers]
        written = await trio.to_thread.run_sync(lambda: [written_size(d) for d in dirs])
        images: dict[str, int] = {}
        for c in containers:
            if c.config.image_id and c.config.image_id not in images:
                try:
                    record = self.images.for_container(c.config.image_id)
                except LookupError:
                    images[c.config.image_id] = 0
                else:
                    images[c.config.image_id] = self.images.size(record)
        return [
            (rw, rw + images.get(c.config.image_id, 0))
            for c, rw in zip(containers, written, strict=True)
        ]

    def log_path(self, c: Container) -> str:
        """The file its log is written to, as Docker's inspect shows it (``LogPath``): the
        json-file driver's; "" for ``local`` (whose file Docker keeps out of its API) and
        ``none``."""
        if c.config.log_driver != "json-file":
            return ""
        return str(self.store.log_dir(c.id) / _logs.LOG_NAME)

    def etc_paths(self, c: Container) -> tuple[str, str, str]:
        """Docker's ResolvConfPath, HostnamePath and HostsPath: where the container's
        /etc/resolv.conf, /etc/hostname and /etc/hosts are on the host -- the file a volume
        binds there, else the copy a start wrote in its layer ("" before it has one: a
        container never started, a resolv.conf its network does not give)."""
        bound = {posixpath.normpath(v.container): v.host for v in c.config.volumes}
        files = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
        try:
            image: Image | None = self._image(c.config.image, c.config.image_id)
        except ImageError:  # its root directory removed since: inspect shows the rest
            image = None
        where = self.store.container_dir(c.id)
        found = [bound.get(f) or (image and own_file_at(image, where, f)) or "" for f in files]
        return found[0], found[1], found[2]

    def graph_driver(self, c: Container) -> dict[str, str] | None:
        """Docker's ``GraphDriver.Data`` for the overlay of the container's root (its
        overlay2's keys): the image's directories under it (``LowerDir``, top-most first),
        what the container wrote (``UpperDir``), overlay's ``WorkDir``; while it runs,
        ``MergedDir``, where the host sees its root (``/proc/PID/root``: boxd mounts it in
        the container's mount namespace only).  None once its image is gone."""
        try:
            image = self._image(c.config.image, c.config.image_id)
        except ImageError:
            return None
        for target, upper, lowers in container_uppers(image, self.store.container_dir(c.id)):
            if target != "/":
                continue
            data = {"LowerDir": ":".join(lowers)}
            if c.state.status in (RUNNING, PAUSED) and c.state.pid:
                data["MergedDir"] = f"/proc/{c.state.pid}/root"
            return data | {"UpperDir": str(upper), "WorkDir": str(upper.with_name("work"))}
        return None

    def log_dir(self, ref: str) -> Path:
        """Where the container's log is; a ValueError for one that keeps none."""
        c = self._lookup(ref).container
        if not keeps_log(c.config):
            how = c.config.log_driver + (
                "" if c.config.log_driver == "none" else " and cache-disabled=true"
            )
            raise ValueError(
                "configured logging driver does not support reading: container "
                f"{c.name} was created with --log-driver {how}"
            )
        return self.store.log_dir(c.id)

    # ---- create ---------------------------------------------------------------------

    def _image(self, ref: str, image_id: str = "") -> Image:
        if ref == "default" and self._default_image is None:
            self._default_image = prepare_default_image(self.store.images)
        if ref == "default" or ref.startswith("/"):
            return resolve_image(ref, self.store.images)
        record = self.images.for_container(image_id) if image_id else self.images.lookup(ref)
        return rootfs_of(self.images, record, ref, functools.partial(self._image, "default"))

    def _with_image_config(self, config: ContainerConfig) -> ContainerConfig:
        """A stored image's configuration (Cmd, Env, User ...) under the container's.  A
        root directory has none: ``--entrypoint`` comes before the command's words."""
        if config.image == "default" or config.image.startswith("/"):
            if config.entrypoint is None:
                return config
            return attrs.evolve(config, command=(*config.entrypoint, *config.command))
        record = self.images.lookup(config.image)
        return apply_image_config(config, record, self.images.config(record))

    def _check_name_free(self, name: str) -> None:
        """Refused in Docker's words (a test suite's retry or cleanup matches them, and
        takes the holder's id from between the quotes)."""
        check_name(name)
        for e in self._entries.values():
            if e.container.name == name:
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{e.container.id}". You have to remove (or rename) that container to be '
                    "able to reuse that name."
                )

    async def _refused_layer(self, diff_id: str, error: LayerError) -> None:
        """A pulled layer's content is refused (a hostile or broken member): no image
        that has it is left, as if its pull had failed; the create that waited on it
        had the reason."""
        for record in self.images.images():
            for layer in record.layers:
                if layer.diff_id == diff_id:
                    reason = f"its layer {layer.digest} cannot be unpacked: {error}"
                    names = ", ".join(record.repo_tags) or record.id
                    log.warning("image %s removed: %s", names, reason)
                    self.images.refuse(record, reason)
                    await self.puller.delete(record)
                    break

    async def _layers_ready(self, image: str) -> None:
        """A stored image's layers are unpacked in the background after its pull: wait
        for them (see boxd/_images/unpacks.py)."""
        if image != "default" and not image.startswith("/"):
            await self.unpacks.ready(self.images.lookup(image), image)

    async def _resolve_image_mounts(self, config: ContainerConfig) -> ContainerConfig:
        """``--mount type=image``: each image named is a stored one (not pulled for it, as
        by Docker), its layers unpacked, its id kept, and its subpath there (looked up
        again at each start, as the file system work of a start is)."""
        if not config.image_mounts:
            return config
        if config.userns:
            raise ValueError(
                "type=image mounts are not supported with --isolate-user: the image's files"
                " would show no owner the container's users map to"
            )
        mounts = []
        for given in config.image_mounts:
            if is_default(given.image) or given.image.startswith("/"):
                raise ValueError(_HOST_FILES.format(given.target, given.image))
            try:
                record = self.images.lookup(given.image)
            except LookupError as exc:
                raise ValueError(f"type=image mount at {given.target}: {exc}") from None
            await self.unpacks.ready(record, given.image)
            m = attrs.evolve(given, image_id=record.id)
            await trio.to_thread.run_sync(image_sources, self._mounted_image(m), m.subpath)
            mounts.append(m)
        return attrs.evolve(config, image_mounts=tuple(mounts))

    def _mounted_image(self, m: ImageMount) -> tuple[str, ...]:
        """The layer directories, top-most first, of the image an image mount names."""
        image = self._image(m.image, m.image_id)
        if len(image.layers) != 1:  # over default: host directories at several places
            raise ValueError(_HOST_FILES.format(m.target, f"{m.image} is built on default, which"))
        return image.layers[0].lowers

    def _mounted_images(self, c: Container) -> builtins.list[tuple[ImageMount, tuple[str, ...]]]:
        """``c``'s image mounts, each with its image's layer directories."""
        return [(m, self._mounted_image(m)) for m in c.config.image_mounts]

    def _check_workdir(self, container: Container, image: Image) -> None:
        """Refuse a working directory that is, or is below, a file of the image, at the
        create, as Docker's create fails making it (the start's chdir would)."""
        workdir = container.config.workdir
        parts = posixpath.normpath(workdir).split("/")[1:] if workdir else []
        where = self.store.container_dir(container.id)
        for depth in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:depth])
            if is_file_at(image, where, path):
                # In moby's words; below a file, which one.
                below = f"{workdir}: " if depth < len(parts) else ""
                raise ValueError(f"Cannot mkdir: {below}{path} is not a directory")

    async def create(
        self, config: ContainerConfig, name: str = "", *, starts: bool = False
    ) -> Container:
        """A new container; ``starts``: it is started at once (``run``), and its record is
        first written when it runs or could not start (see :meth:`run`); its directory is
        made as it starts (:meth:`_run_once`)."""
        self._check_open()
        if config.image != "default" and is_default(config.image):
            # The built-in image by another of its names (`images` lists it by
            # default:latest and its id, as users copy them from there): one name in the
            # record, which everything after this tells the stored images from.
            config = attrs.evolve(config, image="default")
        await self.give_space_back()
        await self._layers_ready(config.image)
        config = await self._resolve_image_mounts(config)
        container, image = self._new(config, name, starts=starts)
        # Held until it is made: a removal meanwhile (`rm -f NAME`, a prune: the container
        # is listed from here on) waits for it, as Docker's cannot see it before.
        entry = self._entries[container.id]
        entry.lock.acquire_nowait()
        try:
            return await self._make(entry, image, starts=starts)
        finally:
            entry.lock.release()

    async def _make(self, entry: _Entry, image: Image, *, starts: bool) -> Container:
        """The rest of :meth:`create`, under the new container's lock."""
        container, config = entry.container, entry.container.config
        try:
            self._check_workdir(container, image)
            await self._fill_volumes(container, image)
        except BaseException:  # not made after all: nor are its anonymous volumes
            self._discard(entry)
            self._drop_anonymous(container)
            raise
        if starts:
            return container
        # Its directory (made by the save below otherwise): a create is followed by a
        # start, as Docker's clients do it.
        self._take_spare(container.id, image, container.config)
        self._busy(trio.current_time())
        self._trash.set()
        # A --rm container need not outlive a crash of the machine (the next supervisor
        # removes every auto-remove container it does not adopt; a record lost leaves a
        # directory without one, which is deleted): its record is written without the two
        # fsyncs (~5 ms of every `boxctl run --rm` here).
        try:
            if config.auto_remove:
                self.store.save(container, durable=False)
            else:
                await self._write_durably(entry)
        except BaseException:  # not made after all (a full disk): not listed either
            self._discard(entry)
            raise
        return container

    async def _save_durably(self, entry: _Entry) -> None:
        """Record a container that changed its configuration, its record written as
        :meth:`_write_durably` writes it, fsyncs and all (after any write under way)."""
        with trio.CancelScope(shield=True):  # the change is made: its record follows
            await entry.record.settled()
            if entry.phase is REMOVING or self._entries.get(entry.container.id) is not entry:
                return  # removed meanwhile: a write would make its directory again
            await self._write_durably(entry)
        self._save(entry.container, write=False)  # its events and waiters

    async def _write_durably(self, entry: _Entry) -> None:
        """Write the record with its fsyncs in a worker thread (:class:`RecordWrites`);
        saves made meanwhile (another client's verb on the new container) are written
        after it; a removal waits for the write (see _remove_now)."""
        c = entry.container
        encode = functools.partial(self.store.encode, c)
        await entry.record.write(encode, functools.partial(self.store.write, c.id), c.short_id)

    def _new(
        self, config: ContainerConfig, name: str, *, starts: bool = False
    ) -> tuple[Container, Image]:
        """A checked new container, known but not yet saved, and its image (``starts``:
        its first start takes the image resolved here)."""
        if name:
            self._check_name_free(name)
        try:
            image = self._image(config.image)
            config = self._with_image_config(config)
        except ImageError as exc:
            raise ValueError(str(exc)) from None
        cid = new_id()
        # What the daemon fills in, in one evolve (each checks the whole configuration
        # again: ~60 us of the event loop's step that makes a container).
        changes: dict[str, Any] = {}
        if config.image.startswith("/"):
            changes["image"] = image.name
        if not config.log_driver:  # the daemon's (the evolve checks its options)
            changes["log_driver"] = self.log_driver
        if self.default_ulimits:  # the daemon's, where the container names none of theirs
            own = {limit.name for limit in config.ulimits}
            defaults = [limit for limit in self.default_ulimits if limit.name not in own]
            changes["ulimits"] = (*config.ulimits, *defaults)
        if changes.get("log_driver", config.log_driver) == self.log_driver:
            if self.log_options:
                own = {option.partition("=")[0] for option in config.log_options}
                daemons = [o for o in self.log_options if o.partition("=")[0] not in own]
                changes["log_options"] = (*config.log_options, *daemons)
            if config.log_max_size is None and self.log_max_size is not None:
                changes["log_max_size"] = self.log_max_size
            if config.log_max_files is None and self.log_max_files is not None:
                changes["log_max_files"] = self.log_max_files
        resources, warnings = _resources.settle(
            _resources.with_swap_bound(config.resources), self._cgroups_of(config)
        )
        for warning in warnings:
            log.warning("%s: %s", name or cid[:12], warning)
        if resources != config.resources:
            changes["resources"] = resources
        config = attrs.evolve(config, **changes) if changes else config
        _check_volume_sources(config)
        if config.log_driver == "syslog":  # its socket's path, as Docker's create checks it
            from . import _syslog

            _syslog.check_reachable(_syslog.settings(log_options_of(config)))
        _devicemap.check_hosts(config.devices)
        self.networks.check(config)
        if name and _nsmodes.peer(config.network) == name:  # dockerd's words (at its start)
            raise ValueError(
                f"invalid --network {config.network!r}: cannot join own network namespace"
            )
        config = self._with_peer_ids(self.networks.by_name(config))
        self._check_links(config)
        config = self._with_volumes(config)
        container = Container(
            id=cid, name=name or self._generate_name(cid), created_at=time.time(), config=config
        )
        self._entries[cid] = _Entry(container, image=image if starts else None)
        self.events.observe(container)
        return container, image

    def _take_spare(self, cid: str, image: Image, config: ContainerConfig) -> None:
        """(In any thread.)  A new container's directory from the spares, if one is left
        (see Store.take_spare_dir), counted for the next pause's making."""
        if not keeps_log(config):  # its directory holds no log
            return
        layers = layer_dirs(image)
        self._spare_demand[layers] = self._spare_demand.get(layers, 0) + 1
        self.store.take_spare_dir(cid, layers)

    def _with_volumes(self, config: ContainerConfig) -> ContainerConfig:
        """``--volumes-from`` copied in (the container's own mount points win, then the
        later donor's), then an anonymous volume for each ``VOLUME`` of the image no mount
        covers, then its volumes made where missing (an anonymous one named) and each
        one's ``host`` set to its directory: the last step of create, after every
        check."""
        mounts = builtins.list(config.volumes)
        tmpfs = {posixpath.normpath(parse_tmpfs(spec)[0]) for spec in config.tmpfs}

        def free(path: str) -> bool:
            taken = tmpfs | {posixpath.normpath(v.container) for v in mounts}
            return posixpath.normpath(path) not in taken

        # A new anonymous volume asked for by its path alone (-v /data, Config.Volumes) is
        # no mount of the container's own: a donor's there wins, as dockerd applies
        # --volumes-from before it (moby's TestRunApplyVolumesFromBeforeVolumes).
        pending: builtins.list[Volume] = []
        if config.volumes_from:
            declared_here = {posixpath.normpath(p) for p in config.declared_volumes}
            pending = [
                v
                for v in mounts
                if not (v.host or v.volume) and posixpath.normpath(v.container) in declared_here
            ]
            mounts = [v for v in mounts if v not in pending]
        # Of the donors, the later wins a mount point, as dockerd registers them.
        donated: dict[str, Volume] = {}
        for spec in config.volumes_from:
            ref, _, mode = spec.partition(":")
            if mode not in ("", "ro", "rw"):
                raise invalid("volumes_from", spec, "use CONTAINER[:ro|:rw]")
            try:
                donor = self._lookup(ref).container
            except NoSuchContainer:  # a bad parameter of this create (400, as Docker's: the
                # docker CLI takes a 404 for a missing image and goes to pull it)
                raise invalid("volumes_from", spec, f"no such container: {ref}") from None
            for v in donor.config.volumes:
                if free(v.container):
                    # Docker's: read-only when the donor's is or the mode says so (":rw"
                    # makes no mount writable), and never filled from this container's
                    # image (its CopyData is false).
                    read_only = v.read_only or mode == "ro"
                    point = posixpath.normpath(v.container)
                    donated.pop(point, None)  # (in the later donor's order)
                    donated[point] = attrs.evolve(v, read_only=read_only, nocopy=bool(v.volume))
        mounts += donated.values()
        mounts += [v for v in pending if free(v.container)]
        paths = builtins.list(config.declared_volumes)
        if config.image_id:
            inner = self.images.config(self.images.get(config.image_id)).get("config") or {}
            declared = inner.get("Volumes") if isinstance(inner, dict) else None
            for path in sorted(declared or {}):
                if not isinstance(path, str) or not path:
                    continue
                # A relative one (dockerd's builder takes `VOLUME data`) is below the
                # root, as runc mounts a relative destination.
                point = path if path.startswith("/") else posixpath.normpath("/" + path)
                if free(point):
                    mounts.append(Volume(host="", container=point))
                if point not in paths:
                    paths.append(point)  # Docker's merge: each one, mounted over or not
        for i, v in enumerate(mounts):
            if v.is_volume:
                name = self.volumes.create(v.volume).name
                mounts[i] = attrs.evolve(v, volume=name, host=str(self.volumes.source(name)))
        if mounts == builtins.list(config.volumes) and paths == builtins.list(
            config.declared_volumes
        ):
            return config  # no volume: no evolve, which checks the whole configuration again
        return attrs.evolve(config, volumes=tuple(mounts), declared_volumes=tuple(paths))

    def volume_users(self, name: str) -> builtins.list[str]:
        """The ids of the containers (in any phase) that mount the volume ``name``."""
        return [
            e.container.id
            for e in self._entries.values()
            if any(v.volume == name for v in e.container.config.volumes)
        ]

    async def _fill_volumes(self, c: Container, image: Image, *, cut_short: bool = False) -> None:
        """At the container's create, an empty volume gets what the image holds at its mount
        point (unless ``nocopy``), owners and modes kept, as Docker fills a new volume
        (what a ``cp`` puts in it before the start is added to that; a volume emptied
        later stays empty); for a user-namespaced container, with owners as its
        namespace maps them.  ``cut_short``: at a start, only a fill a killed daemon cut
        short is done again.  A volume with a mount (a share's, a disk's) is mounted for
        its fill, filled only if empty and never emptied (a fill cut short is left as it
        is: what is on a share may be another's)."""
        id_map = _plan.id_range() if c.config.userns else None
        cdir = self.store.container_dir(c.id)
        async with contextlib.AsyncExitStack() as stack:
            held = False  # the volumes' mounts, made for the first fill of one that has one
            for v in c.config.volumes:
                record = self.volumes.get(v.volume) if v.volume else None
                anonymous = not cut_short and record is not None and record.anonymous
                if anonymous and is_file_at(image, cdir, v.container):  # as Docker's create
                    raise ValueError(
                        f"cannot mount volume over existing file, file exists {v.container}"
                    )
                if record is None or record.device:
                    continue
                where, shared = self.volumes.path(v.volume), mounts(record)
                if cut_short and (shared or not (where.parent / FILLING).exists()):
                    continue
                if shared and v.nocopy:
                    continue
                dirs, rel = ([], "") if v.nocopy else container_dirs_at(image, cdir, v.container)
                if shared:  # mounted only if the image has something to fill it with
                    if not stacked_dirs(dirs, rel):
                        continue
                    if not held:
                        await stack.enter_async_context(self._volumes_mounted(c))
                        held = True
                if v.subpath:
                    fill = functools.partial(fill_subpath, v, dirs, rel, where.parent, id_map)
                else:
                    fill = functools.partial(copy_up, dirs, rel, where, id_map, marked=not shared)
                await trio.to_thread.run_sync(fill)

    async def _mount_volumes(self, c: Container) -> None:
        """A start's volumes with a mount (Docker's local driver's ``type``, ``device``
        and ``o``): mounted on their ``_data`` unless a running container's mount is
        there already (StartError in Docker's words)."""
        wanted = [v.volume for v in c.config.volumes if v.volume]
        async with self._volume_mounts:
            for name in wanted:
                if name not in self.volumes.mounted and mounts(self.volumes.get(name)):
                    try:
                        await trio.to_thread.run_sync(self.volumes.mount, name)
                    except VolumeMountError as exc:
                        raise StartError(str(exc)) from None

    async def _unmount_idle_volumes(self) -> None:
        """Undo the mount of each volume that no container starting or with a process
        uses (Docker's local driver unmounts after its last user's end)."""
        if not self.volumes.mounted:
            return  # (every container's end asks)
        async with self._volume_mounts:
            held = {
                v.volume
                for e in self._entries.values()
                if e.phase in _VOLUMES_HELD
                for v in e.container.config.volumes
            }
            held |= {name for name, count in self._copy_volumes.items() if count}
            for name in sorted(self.volumes.mounted - held):
                try:
                    await trio.to_thread.run_sync(self.volumes.unmount, name)
                except OSError as exc:
                    log.warning("volume %s: its mount stays: %s", name, exc)

    def _drop_anonymous(self, c: Container) -> None:
        """``rm -v`` and ``--rm``: the container's anonymous volumes that no other
        container uses go too (named ones stay)."""
        for v in c.config.volumes:
            try:
                anonymous = bool(v.volume) and self.volumes.get(v.volume).anonymous
            except (NoSuchVolume, OSError):
                continue
            if anonymous and not self.volume_users(v.volume):
                self.remove_volume(v.volume)

    def remove_volume(self, name: str) -> None:
        """Out of the store now, its files deleted in the background (check its users
        first: see :meth:`volume_users`)."""
        self.volumes.remove(name)
        self._fill_trash()

    def _network_ids(self, name: str) -> tuple[str, str]:
        """A network's id and driver by its name, for its events ("" once it is gone)."""
        if name in ("host", "none"):
            return builtin_network_id(name), "host" if name == "host" else "null"
        try:
            net = self.networks.get(name)
        except NetworkError:
            return "", "bridge"
        return net.id, net.driver

    def _with_peer_ids(self, config: ContainerConfig) -> ContainerConfig:
        """``container:NAME`` of ``--network``, ``--pid`` and ``--ipc`` as
        ``container:ID``, as Docker's create keeps them: the sharing follows that container
        through a rename, and never reaches a newer one given its old name.  A ``--pid`` or
        ``--ipc`` one that finds none is refused here, as dockerd refuses it at create; a
        ``--network`` one is left as it is (its start says so)."""
        found: dict[str, Any] = {}
        for field in ("network", "pid_mode", "ipc_mode"):
            ref = _nsmodes.peer(getattr(config, field))
            if ref is None:
                continue
            try:
                found[field] = "container:" + self._lookup(ref).container.id
            except NoSuchContainer:
                if field != "network":  # in Docker's words, as the API and boxctl show them
                    option = "--pid" if field == "pid_mode" else "--ipc"
                    mode = getattr(config, field)
                    raise ValueError(
                        f"invalid {option} {mode!r}: No such container: {ref}"
                    ) from None
            except AmbiguousContainer:
                pass
        return attrs.evolve(config, **found) if found else config

    def _network_peer(self, ref: str) -> tuple[Container, int]:
        """``--network container:NAME``: that container, and the pid of its running init."""
        entry = self._lookup(ref)
        run = entry.run
        if run is None or run.exited.is_set():
            name = entry.container.name
            raise Conflict(f"container {name} is not running: its network cannot be joined")
        return entry.container, run.pid

    def _cgroups_of(self, config: ContainerConfig) -> CgroupHost:
        """Where a container's cgroup is: below the supervisor's parent, or below its own
        ``--cgroup-parent`` (see CgroupHost.below; a bad one is refused by name)."""
        return self._cgroups_of_parent(config.cgroup_parent)

    def _cgroup_of(self, c: Container) -> Cgroup:
        """The cgroup of container ``c``, where it is (see :meth:`_cgroups_of`)."""
        return self._cgroups_of(c.config).open(c.id)

    def _cgroups_of_parent(self, parent: str) -> CgroupHost:
        if not parent:
            return self.cgroups
        host = self._parent_hosts.get(parent)
        if host is None:
            host = self._parent_hosts[parent] = self.cgroups.below(parent)
        return host

    def _link_target(self, name: str) -> Container:
        """The container a default-bridge link names; Docker's words when there is none."""
        try:
            return self._lookup(name).container
        except NoSuchContainer:
            raise ValueError(f"could not get container for {name}: no such container") from None

    def _check_links(self, config: ContainerConfig) -> None:
        """At create, as Docker: every container a default-bridge link names exists and
        has an address of its own to be reached at."""
        if config.network != DEFAULT_NETWORK:
            return
        for name, _ in map(_links.parse, config.links):
            mode = self._link_target(name).config.network
            if mode == "host" or mode.startswith("container:"):
                raise ValueError(
                    f"cannot link to {name}: it shares a network namespace (--network "
                    f"{mode}) and has no address of its own"
                )

    def _legacy_links(self, c: Container, *, strict: bool = True) -> _links.Legacy:
        """What ``c``'s default-bridge links give it now (see boxd._links): at a start each
        linked container must run there (``strict``); for an exec or a rewrite of its
        /etc/hosts, those that do not are left out."""
        if c.config.network != DEFAULT_NETWORK or not c.config.links:
            return _links.Legacy()
        hosts, env = [], []
        for name, alias in map(_links.parse, c.config.links):
            try:
                child = self._link_target(name)
                entry = self._entries[child.id]
                if entry.run is None or entry.run.exited.is_set():
                    raise Conflict(
                        f"Cannot link to a non running container: /{child.name} AS "  # dockerd's
                        f"/{c.name}/{alias}"
                    )
                address = next(
                    (
                        e.ip_address
                        for e in child.state.network.endpoints
                        if e.network == DEFAULT_NETWORK
                    ),
                    None,
                )
                if address is None:
                    raise Conflict(
                        f"cannot link to {child.name}: it is not on the default network "
                        f"{DEFAULT_NETWORK!r}"
                    )
            except (ValueError, Conflict):
                if strict:
                    raise
                continue
            hosts.append(_links.hosts_line(address, alias, child))
            env += _links.variables(c.name, alias, address, child)
        return _links.Legacy(tuple(hosts), tuple(env))

    def _joined_namespaces(self, c: Container) -> tuple[tuple[Namespace, str], ...]:
        """``--pid``/``--ipc container:NAME``: the namespace files of NAME's running init
        (Docker's words when it does not run or keeps its ipc private)."""
        paths = []
        for kind, ref in _nsmodes.joined(c.config).items():
            entry = self._lookup(ref)
            run = entry.run
            if run is None or run.exited.is_set():
                joined = "PID" if kind is Namespace.PID else "IPC"  # dockerd's words
                raise Conflict(
                    f"failed to join {joined} namespace: container {entry.container.id} is "
                    "not running"
                )
            if kind is Namespace.IPC and entry.container.config.ipc_mode not in ("", "shareable"):
                raise ValueError(
                    f"container {entry.container.name}: non-shareable IPC (hint: use "
                    "IpcMode:shareable for the donor container)"
                )
            paths.append((kind, f"/proc/{run.pid}/ns/{kind.describe()}"))
        return tuple(paths)

    def _generate_name(self, cid: str) -> str:
        names = {e.container.name for e in self._entries.values()}
        name = f"box-{cid[:8]}"
        n = 8
        while name in names:
            n += 1
            name = f"box-{cid[:n]}"
        return name

    # ---- phases ---------------------------------------------------------------------

    def _set(
        self,
        entry: _Entry,
        phase: Status,
        *,
        save: bool = True,
        write: bool = True,
        bug: bool = False,
    ) -> None:
        """The one place a container changes phase (see :mod:`boxd._lifecycle`); ``bug``:
        its supervision failed, and it is recorded as exited from whatever phase;
        ``write=False``: saved (observed) but not written, see :meth:`_save`."""
        if not bug:
            _lifecycle.check_transition(entry.phase, phase)
        entry.container.state.status = phase
        if save:
            self._save(entry.container, write=write)
        changed, entry.changed = entry.changed, trio.Event()
        changed.set()
        if _logs.followed():  # a follow of its log ends once it has ended: at once
            _logs.wake_followers(str(self.store.log_dir(entry.container.id)))

    # ---- start and the lifecycle ----------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(
                f"the supervisor of {self.store.root} is closed: create and start containers "
                "inside its 'async with open_supervisor(...)' block"
            )

    async def start(self, ref: str, *, console_size: tuple[int, int] | None = None) -> Container:
        """Start the container; returns once its process really runs (no-op if it runs).
        ``console_size``: a TTY container's terminal size from the start, for this run
        (None: its config's, else 24x80)."""
        entry = self._lookup(ref)
        await self._start(entry, attach=False, console_size=console_size)
        return entry.container

    async def start_attached(
        self, ref: str, *, console_size: tuple[int, int] | None = None
    ) -> tuple[trio.MemoryReceiveChannel[Chunk], Run]:
        """Start the container (if it is not running) with its output subscribed from the
        first byte: the foreground ``run`` and ``start -a``.  The Run tells the exit code
        even if the container is removed (``--rm``) right after.  ``console_size``: as
        :meth:`start`'s."""
        entry = self._lookup(ref)
        self.events.report("attach", entry.container)
        channel = await self._start(entry, attach=True, console_size=console_size)
        assert channel is not None and entry.run is not None
        return channel, entry.run

    async def _start(
        self, entry: _Entry, *, attach: bool, console_size: tuple[int, int] | None = None
    ) -> trio.MemoryReceiveChannel[Chunk] | None:
        self._check_open()
        c = entry.container
        image, entry.image = entry.image, None
        if entry.phase is STOPPING:  # start after the stop, as `restart` does
            await entry.idle.wait()
        async with entry.lock:
            if not _lifecycle.can_start(c.name, entry.phase):
                if not attach:
                    return None
                while entry.phase is STARTING:
                    await entry.changed.wait()
                _lifecycle.check_attach(c.name, entry.phase)
                return entry.output.subscribe()
            if entry.output.closed:
                entry.output = Output()
            channel = entry.output.subscribe(lossless=True) if attach else None
            entry.stopping = False
            c.state.manual_stop = False
            # As Docker's: every start but its policy's own begins the count again (an
            # on-failure:N container started by hand has its N tries again).
            c.state.restart_count = 0
            entry.run = None
            try:
                # A start, once begun, ends (running, or back where it was): a starter
                # cancelled midway (a build's client gone) would leave the phase at
                # "starting", where every stop, rm -f and shutdown waits for ever.  It is
                # short (a spawn); the starter's cancellation comes right after it.
                with trio.CancelScope(shield=True):
                    await self._nursery.start(
                        functools.partial(
                            self._lifecycle, entry, image=image, console_size=console_size
                        )
                    )
            except BaseException:
                if channel is not None:
                    channel.close()
                if c.config.auto_remove:
                    with trio.CancelScope(shield=True):
                        await self._remove_now(entry)
                raise
            return channel

    async def run(self, config: ContainerConfig, name: str = "") -> Container:
        """Create and start.  A run that does not return its container leaves none: one
        that cannot start, or whose caller is cancelled before it started, is removed (its
        caller could not name it to remove it; ``create`` and ``start`` keep a container
        that fails to start, as Docker does).

        Its record is first written when it runs (or could not start), as a state change
        (no fsync, see Store.save): one write fewer than create + start.  A crash before
        that leaves a directory without a record, which the next supervisor deletes."""
        container = await self.create(config, name, starts=True)
        try:
            return await self.start(container.id)
        except BaseException:
            with trio.CancelScope(shield=True):
                if container.id in self._entries:  # an auto-remove one is gone already
                    await self.remove(container.id, force=True, volumes=True)
            raise

    async def _lifecycle(
        self,
        entry: _Entry,
        *,
        adoption: Adoption | None = None,
        image: Image | None = None,
        console_size: tuple[int, int] | None = None,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """Run the container (or adopt its running process), and again as its restart
        policy says, until it ends for good; then remove it if it is ``auto_remove``.
        ``image``: resolved for the first run (by `run`'s create, just before);
        ``console_size``: the first run's terminal size (the start's client's; restarts
        take the config's)."""
        c = entry.container
        entry.idle = trio.Event()
        first = True
        try:
            backoff: float | None = None
            while True:
                ran = await self._run_once(
                    entry, task_status if first else None, adoption, image, console_size
                )
                first = False
                adoption = image = console_size = None
                if entry.phase is not RESTARTING:
                    break
                backoff = _backoff(backoff, ran)
                log.info(
                    "%s: restarting in %.1fs (policy %s)", c.short_id, backoff, c.config.restart
                )
                with trio.CancelScope() as entry.backoff:
                    await trio.sleep(backoff)
                entry.backoff = None
                if entry.stopping:
                    self._set(entry, STOPPED)
                    break
        except Exception as exc:
            if first:  # not started: the starter gets it
                raise
            # A bug in this container's supervision: recorded on it; the supervisor and
            # the other containers go on.
            log.exception("%s: lifecycle failed", c.short_id)
            c.state.error = str(exc)
            if entry.phase in _lifecycle.LIVE:
                self._set(entry, EXITED, bug=True)
            else:
                self._save(c)
        finally:
            entry.idle.set()
        if c.config.auto_remove and not entry.restarting:
            await self._remove_now(entry)

    def _after_run(self, entry: _Entry, exit_code: int) -> Status:
        """The phase a run's end leads to: stopped (somebody asked), restarting (the
        policy wants it again: that restart is counted now, as Docker counts it, so that
        the record in the backoff shows it) or exited."""
        c = entry.container
        # manual_stop: also a stop or kill a killed daemon recorded before the end (an
        # adopted run's entry.stopping is new).
        if entry.stopping or c.state.manual_stop:
            return STOPPED
        if c.config.restart.wants_restart(
            exit_code=exit_code, stopped=False, restarts=c.state.restart_count
        ):
            c.state.restart_count += 1
            return RESTARTING
        return EXITED

    async def _run_once(
        self,
        entry: _Entry,
        task_status: trio.TaskStatus[None] | None,
        adoption: Adoption | None = None,
        image: Image | None = None,
        console_size: tuple[int, int] | None = None,
    ) -> float:
        """One run (or the adoption of a running one: its phase stays as recorded); returns
        how long it ran.  Reports start via task_status (first run).  Its log is open for
        the run only: a container at rest holds no fd (its log's directory and file were
        two for each exited container, until its removal: a test suite's thousands of
        them ran the daemon out of fds); its next start opens it again."""
        try:
            return await self._one_run(entry, task_status, adoption, image, console_size)
        finally:
            if entry.logs is not None:
                entry.logs.close()
                entry.logs = None
            if entry.sender is not None:
                entry.sender.close()
                entry.sender = None
            with trio.CancelScope(shield=True):
                await self._unmount_idle_volumes()

    async def _one_run(
        self,
        entry: _Entry,
        task_status: trio.TaskStatus[None] | None,
        adoption: Adoption | None,
        image: Image | None,
        console_size: tuple[int, int] | None,
    ) -> float:
        c = entry.container
        st = c.state
        if adoption is None:
            self._set(entry, STARTING, save=False)
            self._busy(trio.current_time())
        entry.recorded = trio.Event()
        try:
            image = image or self._image(c.config.image, c.config.image_id)
            mounted = self._mounted_images(c)
            if c.config.log_driver in SENDING_DRIVERS:
                entry.sender = await self._line_sender(c, fail=adoption is None)
            if adoption is None:
                await self._mount_volumes(c)
            joined = self._joined_namespaces(c) if adoption is None else ()
            # An adopted container's are made again when wanted (exec, network connect).
            legacy = self._legacy_links(c) if adoption is None else _links.Legacy()
            # The start's file system work in one worker thread (not a cancel point).
            with trio.CancelScope(shield=True):
                read = await trio.to_thread.run_sync(
                    self._prepare_run,
                    entry,
                    image,
                    adoption,
                    mounted,
                    limiter=self._prepare_limiter,
                )
            if self._spare_demand:
                self._trash.set()  # spares for the next start, at the next pause
            if entry.dismantled is not None:  # the last run's, when it restarts at once
                await entry.dismantled.wait()
            if adoption is None:
                await self._fill_volumes(c, image, cut_short=True)
                # The cgroup's directories and limits (a millisecond of system calls) are
                # steps of the event loop of their own, one per hierarchy (schedule points,
                # not cancel ones).
                await trio.lowlevel.cancel_shielded_checkpoint()
                assert read is not None  # made for a new process
                devices, device_rules = read.devices, read.device_rules
                steps = self._cgroups_of(c.config).creation(
                    c.id, _resources.limits(c.config.resources), device_rules
                )
                while (cgroup := next(steps)) is None:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            else:
                devices = []
                cgroup = self._cgroup_of(c)
        except Exception as exc:  # nothing runs yet: the phase goes back
            return await self._start_failed(entry, None, exc, report=task_status is not None)
        if entry.output.closed:
            entry.output = Output()
        run = Run(c, entry.output, entry.logs)
        run.sender = entry.sender
        run.dismantle = functools.partial(self._dismantle_later, entry)
        run.view_limits = self._memory_view(c)
        cdir = self.store.container_dir(c.id)
        view = self.procview.files(c.id) if self.procview is not None and self._viewed(c) else None
        net = self.networks.attachment(c)
        net.link_hosts = legacy.hosts
        failure: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if adoption is not None:
                        run.network = await self.networks.adopt(c)
                        await nursery.start(run.adopt, adoption.shim, adoption.hello, cgroup, cdir)
                    else:
                        assert read is not None  # made for a new process
                        await nursery.start(
                            functools.partial(
                                run.execute,
                                shim_dir=cdir if self.live_restore else None,
                                network=net,
                            ),
                            self.native,
                            lambda stdio: _plan.build(
                                c,
                                image,
                                cdir,
                                read=read,
                                stdio=stdio,
                                view_files=view,
                                net=net.etc(),
                                ns_paths=net.ns_paths() + joined,
                                cgroups=cgroup.view(),
                                devices=devices,
                                link_env=legacy.env,
                                console_size=console_size,
                            ),
                            cgroup,
                        )
                except Exception as exc:
                    # Raised after the nursery closes, so the caller sees it bare.
                    failure = exc
                else:
                    # What the start looked up and read in its root (stat results by
                    # path, /etc/passwd and /etc/group): not kept while the container runs.
                    read = None
                    entry.run = run
                    st.pid = run.pid
                    st.pid_start_time = start_time_of(run.pid) or st.pid_start_time
                    st.started_at = run.started_at if adoption is None else st.started_at
                    st.finished_at = None
                    st.exit_code = None
                    st.error = ""
                    st.oom_killed = False
                    st.summary = None
                    if (check := active_healthcheck(c.config.healthcheck)) is not None:
                        from . import _health  # only for containers with a health check

                        st.health = _health.begin(st.health)
                        nursery.start_soon(_health.watch, self, entry, run, check)
                    if c.config.timeout is not None and st.started_at is not None:
                        end = st.started_at + c.config.timeout  # an adopted run's too
                        nursery.start_soon(self._time_limit, entry, run, end)
                    nursery.start_soon(self._watch_oom, entry, run, cgroup, adoption is None)
                    if adoption is None:
                        self._set(entry, RUNNING)
                    else:
                        self._save(c)
                        if adoption.hello.exited is None:
                            await self._rebind_view(c, run, view)
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
        st.exit_code = outcome.exit_code
        st.error = outcome.error or st.error
        st.oom_killed = outcome.oom_killed
        st.summary = outcome.summary
        st.finished_at = run.ended_at or time.time()
        st.pid = 0
        phase = self._after_run(entry, outcome.exit_code)
        # An auto_remove container that ended leaves the store in this same step (see
        # _lifecycle): its end is not written (after a crash, recovery removes it all the
        # same).  One record write less for every `run --rm`.
        self._set(entry, phase, write=phase is RESTARTING or not c.config.auto_remove)
        entry.recorded.set()
        return st.finished_at - (st.started_at or st.finished_at)

    async def _line_sender(self, c: Container, *, fail: bool) -> LineSender:
        """The sending log driver's connection for a run of ``c`` (syslog, journald, gelf
        or fluentd): at a start one that cannot be made fails the start, naming why (as
        Docker's; not an asynchronous fluentd's, which connects when it can); an adopted
        container's sends try again at each line.  With Docker's ``mode=non-blocking``
        its sends go through a ring (see boxd/_linesend.py)."""
        from . import _logattrs  # only for containers that send their lines on
        from ._images.config import DEFAULT_ID

        image_id = c.config.image_id or DEFAULT_ID
        options = log_options_of(c.config)
        attributes = _logattrs.attributes(c, image_id)
        tag = attributes.get("tag") or c.short_id
        sender: LineSender
        if c.config.log_driver == "journald":
            from . import _journald

            fields = _journald.container_fields(c.id, c.name, c.config.image, tag, attributes)
            sender = _journald.Sender(fields, c.short_id)
        elif c.config.log_driver == "gelf":
            from . import _gelf
            from ._human import rfc3339_nano

            gelf_fields = _gelf.container_fields(
                cid=c.id,
                name=c.name,
                image_id=image_id,
                image=c.config.image,
                command=" ".join(c.config.command),
                tag=tag,
                created=rfc3339_nano(round(c.created_at * 1e9)),
                attributes=attributes,
            )
            sender = _gelf.Sender(_gelf.settings(options), gelf_fields, c.short_id)
        elif c.config.log_driver == "fluentd":
            from . import _fluentd

            fields = _fluentd.container_fields(c.id, c.name, attributes)
            sender = _fluentd.Sender(_fluentd.settings(options), tag, fields, c.short_id)
        elif c.config.log_driver == "splunk":
            from . import _splunk

            given = None if options.get("tag") == "" else tag  # an empty tag: none, as Docker's
            sender = _splunk.Sender(_splunk.settings(options), given, attributes, c.short_id)
        else:
            from . import _syslog

            sender = _syslog.Sender(_syslog.settings(options), tag, c.short_id)
        if options.get("mode") == "non-blocking":  # a ring and a task of the run send
            from ._linesend import RING_BYTES, Ring
            from ._units import parse_size

            given = options.get("max-buffer-size")
            what = "log option max-buffer-size"
            size = RING_BYTES if given is None else parse_size(given, what=what)
            sender.ring = Ring(size, None if sender.ring is None else sender.ring.max_messages)
        try:
            if sender.connects_at_start:
                await sender.open()
        except OSError as exc:
            if fail:
                raise StartError(f"failed to initialize logging driver: {exc}") from None
            log.warning("%s: its log server is not reachable yet: %s", c.short_id, exc)
        return sender

    def _prepare_run(
        self,
        entry: _Entry,
        image: Image,
        adoption: Adoption | None,
        mounted: Sequence[tuple[ImageMount, tuple[str, ...]]],
    ) -> _plan.Prepared | None:
        """A run's new inodes and reads, for a worker thread (see _plan.prepare): at its
        first start the container's directory (made here for `run`), the log's and the log
        file; for a new process the record's spares and what _plan.prepare makes and reads
        (None: adopted); ``mounted``: its image mounts and their images' layers."""
        c = entry.container
        cdir = self.store.container_dir(c.id)
        cfg = c.config
        if entry.logs is None:
            if adoption is None and not cdir.exists():  # made at the start (`run`)
                self._take_spare(c.id, image, cfg)
            cdir.mkdir(mode=0o700, exist_ok=True)
            if keeps_log(cfg):
                local = cfg.log_driver in ("local", *SENDING_DRIVERS)  # (Docker's cache)
                max_size, max_files = log_sizes(cfg)
                entry.logs = _logs.LogWriter.open(
                    self.store.log_dir(c.id),
                    # (the daemon's: a container recorded before it was merged at creation)
                    max_size=max_size
                    or (_logs.LOCAL_MAX_SIZE if local else self.log_max_size)
                    or _logs.DEFAULT_MAX_SIZE,
                    max_files=max_files
                    or (_logs.LOCAL_MAX_FILES if local else self.log_max_files)
                    or _logs.DEFAULT_MAX_FILES,
                    compress=log_compressed(cfg),
                )
        if adoption is not None:
            return None
        (cdir / COMMIT_PAUSE).unlink(missing_ok=True)  # a commit's of a run before, ended
        self.store.make_spares(c.id)
        return _plan.prepare(c, image, cdir, mounted)

    def _dismantle_later(self, entry: _Entry, cgroup: Cgroup, mount_ns: int) -> None:
        """Remove a run's cgroup after its end is recorded, so that ``wait`` returns
        without the rmdirs (a directory per hierarchy, each once the kernel lets go: ~0.2
        ms of a 10 ms start), then
        let go of its mount namespace (``mount_ns``, -1: none) in a worker thread, where
        the kernel unmounts everything in it.  ``rm`` waits for the first; a restart,
        ``cp`` out of the stopped container and the trash for both."""
        removed = entry.cgroup_removed = trio.Event()
        done = entry.dismantled = trio.Event()
        recorded = entry.recorded  # this run's
        self._removals.add(done)

        async def dismantle() -> None:
            try:
                with trio.CancelScope(shield=True):
                    try:
                        # Once the end is recorded, and a turn after it, when the waiters
                        # woken by it have had theirs: otherwise, in the same batch of
                        # Trio's turns in random order, `wait` returned after the rmdirs
                        # half the time.  A run whose end is never recorded (a bug in
                        # its supervision) still gives its cgroup back.
                        with trio.move_on_after(RECORD_GRACE):
                            await recorded.wait()
                        await trio.lowlevel.checkpoint()
                        await cgroup.remove()
                    finally:
                        removed.set()
                        if mount_ns >= 0:
                            await trio.to_thread.run_sync(os.close, mount_ns)
            finally:
                self._removals.discard(done)
                done.set()

        self._nursery.start_soon(dismantle)

    async def _cgroups_removed(self) -> None:
        """Return once every removal started by :meth:`_dismantle_later` ended."""
        while self._removals:
            await next(iter(self._removals)).wait()

    async def _rebind_view(self, c: Container, run: Run, view: dict[str, str] | None) -> None:
        """An adopted container's /proc view files lead to its last daemon's dead FUSE
        server: this daemon's files are bound in their place.  In a thread: the view is
        served by this event loop, and opening its files waits for it."""
        if view is None:
            return
        try:
            await trio.to_thread.run_sync(self.native.rebind, run.pidfd, view)
        except OSError as exc:
            log.warning("%s: cannot bind the /proc view in again: %s", c.short_id, exc)

    async def _start_failed(
        self, entry: _Entry, cgroup: Cgroup | None, failure: Exception, *, report: bool
    ) -> float:
        """Record why the process could not start; raise it to the starter if there is
        one (a restart has nobody to tell but the record, and its policy tries again)."""
        c = entry.container
        st = c.state
        if cgroup is not None:
            with trio.CancelScope(shield=True):
                await cgroup.remove()
        entry.output.close()
        code = is_exec_failure(failure) or 125
        st.error = error_text(failure)
        if report:
            st.exit_code = code
            self._set(entry, CREATED if st.started_at is None else EXITED)
        elif isinstance(failure, NoSuchNetwork) and not (entry.stopping or st.manual_stop):
            # A restart whose network was removed in its backoff is the last, as Docker's
            # (one that failed to set up networking is not restarted): exited with its
            # last run's code.
            self._set(entry, EXITED)
        else:
            st.exit_code = code
            self._set(entry, self._after_run(entry, code))
        entry.recorded.set()
        if not report:
            return 0.0
        if isinstance(failure, OSError | ValueError):
            raise StartError(error_text(failure), code) from failure
        raise failure

    def _save(self, container: Container, *, write: bool = True) -> None:
        """Record a state change of a container that still exists (``write=False``: its
        events and waiters only, the record file is not written; a configuration change
        is written with its fsyncs by :meth:`_save_durably`).

        A state change the file system refuses to write (a full disk) is logged, not
        raised: the container's supervision goes on (a run ends, ``rm -f`` frees space),
        the next save writes it all, and a daemon after a crash corrects the phase from
        the last record written (see recovery)."""
        entry = self._entries.get(container.id)
        if entry is not None:
            if write and not entry.record.defer():  # else after the write under way
                try:
                    self.store.save(container, durable=False)
                except OSError as exc:
                    log.warning("%s: its record not written: %s", container.short_id, exc)
            self.events.observe(container)
            self._changes.unpark_all()

    # ---- stop, kill, pause, restart, remove, wait -----------------------------------

    async def stop(
        self,
        ref: str,
        grace: float | None = None,
        *,
        manual: bool = True,
        sig: str | None = None,
    ) -> None:
        """Stop signal (``sig``, else the container's own), up to ``grace`` seconds
        (default: the container's stop timeout), then SIGKILL of the whole cgroup; a
        negative one never kills (Docker's -1: the stop waits for the container to end by
        itself).  A paused container is thawed to receive it; a restarting one just stays
        down.  Stopping a container at rest is a no-op.  Events as Docker's: kill (each
        signal), die, and stop at the end of a ``manual`` one (not the daemon's shutdown,
        not ``rm -f``)."""
        entry = self._lookup(ref)
        c = entry.container
        if grace is not None and not math.isfinite(grace):
            raise ValueError(f"invalid stop timeout '{grace:g}'")
        stop_signal = parse_signal(sig or c.config.stop_signal)
        own = c.config.stop_timeout
        wait = grace if grace is not None else STOP_TIMEOUT if own is None else own
        if not _lifecycle.can_stop(entry.phase):
            return
        entry.stopping = True
        if manual:
            c.state.manual_stop = True
        while entry.phase is STARTING:
            await entry.changed.wait()
        if entry.phase is RESTARTING and entry.backoff is not None:
            entry.backoff.cancel(reason="container stopped during restart backoff")
        elif entry.phase in _lifecycle.WITH_PROCESS and entry.run is not None:
            run = entry.run
            paused = entry.phase is PAUSED
            if entry.phase is not STOPPING:
                self._set(entry, STOPPING)
            if wait != 0:  # with no time to stop, the stop signal would only precede SIGKILL
                self._signal(c, run, stop_signal)
            if paused:
                self._thaw_to_end(c)
            # The supervisor's, not the caller's: a caller cancelled during the grace
            # period (a test's timeout, a client gone) would leave a container that
            # ignores its stop signal stopping for ever, and every start, restart and
            # wait after it waiting with it.  A negative wait asked for that: no SIGKILL.
            if wait >= 0:
                self._nursery.start_soon(self._kill_after, c, run, wait)
        await entry.idle.wait()
        if manual:
            self.events.report("stop", c)

    async def _kill_after(self, c: Container, run: Run, wait: float) -> None:
        """A stop's end: SIGKILL if the run has not ended ``wait`` seconds after its stop
        signal."""
        with trio.move_on_after(wait):
            await run.exited.wait()
        if not run.exited.is_set():
            if wait > 0:
                log.info("%s: did not stop in %ss; killing", c.short_id, wait)
            self._signal(c, run, signal.SIGKILL)

    async def _time_limit(self, entry: _Entry, run: Run, end: float) -> None:
        """Kill the run at ``end`` (seconds since the epoch) if it still runs then: its
        configuration's timeout.  It ended by itself, as by its memory limit's OOM killer
        (exited, not stopped: its restart policy applies)."""
        c = entry.container
        with trio.move_on_after(max(0.0, end - time.time())):
            await run.exited.wait()
        if run.exited.is_set():
            return
        log.info("%s: ran for its timeout of %gs; killing", c.short_id, c.config.timeout)
        run.timed_out = True
        self._signal(c, run, signal.SIGKILL)
        if entry.phase is PAUSED:
            self._thaw_to_end(c)

    async def _watch_oom(self, entry: _Entry, run: Run, cgroup: Cgroup, new: bool) -> None:
        """Record and report OOM kills in the container as they happen, as Docker does
        (``State.OOMKilled``, an ``oom`` event per rise of the kernel's count, or on v1
        as an OOM begins that ``--oom-kill-disable`` keeps its killer from ending): the killer
        may take a process other than the first one, and the container runs on (a
        notebook's kernel, a test's child).
        A ``new`` run's cgroup counts its kills from its start, also those before this
        watch began; an adopted run's are those from its adoption on."""
        if run.exited.is_set():
            return  # ended before the watch began (a short run): its end reads the count
        c = entry.container

        def killed() -> None:
            c.state.oom_killed = True
            self._save(c)
            self.events.report("oom", c)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(cgroup.watch_oom_kills, killed, reported=0 if new else None)
            )
            await run.exited.wait()
            nursery.cancel_scope.cancel(reason="the run ended: its end records the rest")

    def _signal(self, c: Container, run: Run, signum: int) -> None:
        run.signal(signum)
        self.events.report("kill", c, signal=str(int(signum)))

    def _thaw_to_end(self, c: Container) -> None:
        """Thaw a paused container after the signal that ends it (a v1 freezer holds even
        SIGKILL until the thaw): an ``unpause`` event, as Docker's resume reports one."""
        self._thaw(c)
        self.events.report("unpause", c)

    def _thaw(self, c: Container) -> None:
        try:
            self._cgroup_of(c).thaw()
        except OSError as exc:  # gone with its process: nothing left to thaw
            log.debug("%s: thaw: %s", c.short_id, exc)

    async def kill(self, ref: str, sig: str = "SIGKILL") -> None:
        signum = parse_signal(sig)
        entry = self._lookup(ref)
        # Its own stop signal too (a systemd container's SIGRTMIN+3, nginx's SIGQUIT), as
        # Docker's: its restart policy does not bring it back.
        own = signum == parse_signal(entry.container.config.stop_signal)
        ending = own or signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
        if entry.phase is RESTARTING and entry.backoff is not None:
            # No process to signal: what would end it keeps it down, as a stop does;
            # another is answered with success and the restart goes on, as moby's.
            if ending:
                entry.stopping = entry.container.state.manual_stop = True
                self.events.report("kill", entry.container, signal=str(int(signum)))
                entry.backoff.cancel(reason="container killed during restart backoff")
                await entry.idle.wait()
            return
        _lifecycle.check_kill(entry.container.name, entry.phase)
        run, recorded = entry.run, entry.recorded
        assert run is not None
        if run.exited.is_set():
            # Ended by itself, its end not yet recorded (its output closed just now: a
            # code runner's "kill it unless it ended"): nothing to signal, and no stop to
            # record over its exit (the status was "stopped" in half of such kills).
            with trio.move_on_after(KILL_WAIT):
                await recorded.wait()
            return
        if ending:
            entry.stopping = True
            if not entry.container.state.manual_stop:
                # On disk before the signal: a daemon killed before the end is recorded
                # leaves a record whose restart policy would bring the container back.
                entry.container.state.manual_stop = True
                self._save(entry.container)
        self._signal(entry.container, run, signum)
        if signum != signal.SIGKILL:
            if own:
                # As Docker's: its stop signal is meant to end it, so a paused container
                # is thawed to receive it (it waited for an unpause before).
                async with entry.lock:
                    if entry.phase is PAUSED:
                        self._resume(entry)
            return
        if entry.phase is PAUSED:
            self._thaw_to_end(entry.container)
        # As Docker's: a SIGKILL is answered once the end is recorded, so the inspect that
        # follows (docker-py's tests, scripts) sees the container exited, not running.
        with trio.move_on_after(KILL_WAIT) as waited:
            await recorded.wait()
        if waited.cancelled_caught:
            log.warning("%s: not ended %.0f s after SIGKILL", entry.container.short_id, KILL_WAIT)

    async def pause(self, ref: str, *, for_commit: bool = False) -> None:
        """Freeze every process of the container (cgroup v2 ``cgroup.freeze``, or the v1
        freezer controller); ``for_commit``: for a commit, which unpauses it after: marked
        (:data:`COMMIT_PAUSE`) before the freeze, so that after a crash the next daemon
        does (:meth:`_settle_pause`)."""
        entry = self._lookup(ref)
        c = entry.container
        async with entry.lock:
            _lifecycle.check_pause(c.name, entry.phase)
            marker = self.store.container_dir(c.id) / COMMIT_PAUSE
            if for_commit:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            try:
                await self._freeze(entry)
            except BaseException:
                if for_commit:
                    marker.unlink(missing_ok=True)
                raise
            self._set(entry, PAUSED)

    async def _freeze(self, entry: _Entry) -> None:
        c = entry.container
        try:
            await self._cgroup_of(c).freeze()
        except CgroupError as exc:
            # A process that is exiting never freezes, and a cgroup its end removed
            # cannot be: the container ended as it froze (its end may not be recorded
            # yet).  Any other failure is the freezer's.
            if entry.phase is RUNNING and exc.errno != errno.ENOENT:
                raise
            raise Conflict(
                f"container {c.name} is not running: only a running container can be paused"
            ) from None
        if entry.phase is not RUNNING:  # it ended meanwhile
            self._thaw(c)
            _lifecycle.check_pause(c.name, entry.phase)

    async def unpause(self, ref: str) -> None:
        entry = self._lookup(ref)
        c = entry.container
        async with entry.lock:
            _lifecycle.check_unpause(c.name, entry.phase)
            self._resume(entry)

    def _resume(self, entry: _Entry) -> None:
        """Thaw a paused container: it runs again (an ``unpause`` event)."""
        c = entry.container
        self._cgroup_of(c).thaw()
        (self.store.container_dir(c.id) / COMMIT_PAUSE).unlink(missing_ok=True)
        self._set(entry, RUNNING)

    async def restart(
        self, ref: str, grace: float | None = None, *, sig: str | None = None
    ) -> Container:
        entry = self._lookup(ref)
        entry.restarting = True
        try:
            await self.stop(ref, grace, sig=sig)
        finally:
            entry.restarting = False
        c = await self.start(ref)
        self.events.report("restart", c)
        return c

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        """Remove a container at rest; with ``force`` in any phase (killed first); with
        ``volumes`` its anonymous volumes too."""
        entry = self._lookup(ref)
        c = entry.container
        _lifecycle.check_remove(c.name, entry.phase, force=force)
        async with entry.lock:
            if entry.gone.is_set():  # its create failed meanwhile
                raise NoSuchContainer(ref)
            _lifecycle.check_remove(c.name, entry.phase, force=force)  # started meanwhile?
            if entry.phase in _lifecycle.LIVE:
                await self.stop(c.id, grace=0, manual=False)  # killed: no stop event
            await self._remove_now(entry, volumes=volumes)
        await self.give_space_back()

    async def rename(self, ref: str, name: str) -> Container:
        """Give a container another name, in any phase (``docker rename``)."""
        entry = self._lookup(ref)
        if name == entry.container.name:
            raise Conflict(f"container {entry.container.short_id} is already named {name!r}")
        try:
            self._check_name_free(name)
        except Conflict as exc:  # Docker's words for it
            raise Conflict(f"Error when allocating new name: {exc}") from None
        old, entry.container.name = entry.container.name, name
        self._save(entry.container)
        await self._links_follow(old, name)
        self.networks.renamed(entry.container)
        self.events.report("rename", entry.container, oldName=old)
        return entry.container

    async def remove_link(self, ref: str, alias: str) -> None:
        """Remove the container's link ALIAS (``docker rm --link REF/ALIAS``): its next
        starts make no hosts line nor variables of it, and a user network's DNS no longer
        answers the alias for it.  A running container's /etc/hosts keeps its line, as
        Docker's does.  In dockerd's words: a link missing (or its container) is no
        container of its name, REF/ALIAS; REF alone (no ALIAS) names the container's own
        name, which is no link to remove."""
        named = f"{ref}/{alias}"
        if not alias:
            self._lookup(ref)
            raise Conflict("Conflict, cannot remove the default link name of the container")
        try:
            entry = self._lookup(ref)
        except NoSuchContainer:
            raise NoSuchContainer(named) from None
        c = entry.container
        links = tuple([link for link in c.config.links if _links.parse(link)[1] != alias])
        if links == c.config.links:
            raise NoSuchContainer(named)
        c.config = attrs.evolve(c.config, links=links)
        self.networks.links_changed(c)
        await self._save_durably(entry)

    async def _links_follow(self, old: str, new: str) -> None:
        """Default-bridge links that name a renamed container follow it, as Docker's links
        follow the container: the linking containers' next starts find it by its new name,
        and inspect shows that."""
        changed = []
        for e in self._entries.values():
            c = e.container
            if c.config.network != DEFAULT_NETWORK:
                continue
            links = tuple(
                [
                    f"{new if name == old else name}:{alias}"
                    for name, alias in map(_links.parse, c.config.links)
                ]
            )
            if links != c.config.links:
                c.config = attrs.evolve(c.config, links=links)
                changed.append(e)
        for e in changed:  # all changed first: the writes let other tasks run
            await self._save_durably(e)

    def processes(self, ref: str) -> builtins.list[int]:
        """The pids of every process of a running container (``top``)."""
        entry = self._lookup(ref)
        if entry.phase not in _lifecycle.WITH_PROCESS:
            raise Conflict(f"container {entry.container.name} is not running")
        return self._cgroup_of(entry.container).procs()

    async def diff(self, ref: str) -> builtins.list[Change]:
        """What the container changed in its root filesystem (``diff``), running or not."""
        c = self._lookup(ref).container
        image = self._image(c.config.image, c.config.image_id)
        where = self.store.container_dir(c.id)
        return await trio.to_thread.run_sync(
            functools.partial(_diff.changes, image, where, userns=c.config.userns)
        )

    def uppers(self, ref: str) -> builtins.list[tuple[str, Path, tuple[str, ...]]]:
        """(target, upper directory, lower directories) of each of the container's
        overlays, ``/`` first: what it wrote over what (commit's and a build step's layer;
        several on default)."""
        c = self._lookup(ref).container
        image = self._image(c.config.image, c.config.image_id)
        return container_uppers(image, self.store.container_dir(c.id))

    @asynccontextmanager
    async def open_root(self, ref: str) -> AsyncIterator[tuple[Container, int]]:
        """The container and an O_PATH fd of its root directory as its processes see it
        (``cp``): a running one's own, or for one at rest its layers and volumes mounted
        meanwhile in a holder's mount namespace (see boxd/_copyroot.py); it cannot start
        until the context ends."""
        entry = self._lookup(ref)
        c, run = entry.container, entry.run
        if entry.phase in _lifecycle.WITH_PROCESS and run is not None:
            async with _copyroot.open_running_root(run.pid, run.pidfd) as fd:
                yield c, fd
            return
        async with entry.lock:
            if entry.phase not in _lifecycle.AT_REST:
                raise Conflict(f"container {c.name} is {entry.phase.value}: try again")
            if entry.dismantled is not None:  # its last run's overlay is unmounted
                await entry.dismantled.wait()
            image = self._image(c.config.image, c.config.image_id)
            where = self.store.container_dir(c.id)
            images = await trio.to_thread.run_sync(image_mount_sources, self._mounted_images(c))
            # Its volumes' mounts (an NFS share's, a disk's) are there meanwhile, as
            # Docker's copy mounts them: what is copied goes to them, not below them (nor
            # below its image mounts, which are read-only).
            async with (
                self._volumes_mounted(c),
                _copyroot.open_stopped_root(self.native, c, image, where, images) as fd,
            ):
                yield c, fd

    @contextlib.asynccontextmanager
    async def _volumes_mounted(self, c: Container) -> AsyncIterator[None]:
        """``c``'s volumes with a mount mounted meanwhile, though it is at rest (a copy
        into it, its volumes' fill at its create), held against another container's end;
        undone after if no container uses them then."""
        names = [v.volume for v in c.config.volumes if v.volume]
        self._copy_volumes.update(names)
        try:
            await self._mount_volumes(c)
            yield
        finally:
            self._copy_volumes.subtract(names)
            with trio.CancelScope(shield=True):
                await self._unmount_idle_volumes()

    async def prune(self, only: PruneFilter | None = None) -> tuple[builtins.list[str], int]:
        """Remove every container at rest (created, stopped or exited) that ``only``
        selects: their ids, and the bytes of the files they held."""
        only = only or PruneFilter()
        removed, reclaimed = [], 0
        for entry in builtins.list(self._entries.values()):
            c = entry.container
            labels = dict(label.partition("=")[::2] for label in c.config.labels)
            # Not one that `run` made for its start (it starts or goes at once).
            if entry.image is not None:
                continue
            if entry.phase in _lifecycle.AT_REST and only.selects(c.created_at, labels):
                async with entry.lock:
                    if entry.phase in _lifecycle.AT_REST and not entry.gone.is_set():
                        where = self.store.container_dir(entry.container.id)
                        reclaimed += await trio.to_thread.run_sync(_bytes_below, where)
                        await self._remove_now(entry)
                        removed.append(entry.container.id)
        await self.give_space_back()
        self.events.pruned("container", reclaimed)
        return removed, reclaimed

    async def _remove_now(self, entry: _Entry, *, volumes: bool = False) -> None:
        """The one removal path (``rm``, ``--rm``, start-up): removing, then gone; with
        ``volumes`` (and always for ``--rm``) its anonymous volumes too."""
        if entry.phase is REMOVING:
            await entry.gone.wait()
            return
        # Not written down: its directory leaves the store right after (a crash before
        # leaves it as its record says).  Only if that fails is the record left saying
        # so, for the next supervisor to finish.
        self._set(entry, REMOVING, write=False)
        with trio.CancelScope(shield=True):
            if entry.record.under_way is not None:  # done before the directory goes
                await entry.record.settled()
                if self._entries.get(entry.container.id) is not entry:
                    return  # that write failed: its create took it away
            if entry.cgroup_removed is not None:  # its last run's cgroup: gone with it
                await entry.cgroup_removed.wait()
        try:
            self._discard(entry)
        except OSError:
            self.store.save(entry.container, durable=False)
            raise
        if volumes or entry.container.config.auto_remove:
            self._drop_anonymous(entry.container)

    def _discard(self, entry: _Entry) -> None:
        self._entries.pop(entry.container.id, None)
        if self.procview is not None:
            self.procview.drop(entry.container.id)
        if entry.logs is not None:
            entry.logs.close()
        _logs.keep_for_followers(self.store.log_dir(entry.container.id))
        self.networks.forget(entry.container.id)
        self.store.discard(entry.container.id)
        self._busy(trio.current_time())
        self._fill_trash()
        self.events.removed(entry.container)
        entry.gone.set()
        self._changes.unpark_all()

    async def removed(self, cid: str) -> None:
        """Return once the container ``cid`` (an ``auto_remove`` one that ended) is gone."""
        entry = self._entries.get(cid)
        if entry is not None:
            await entry.gone.wait()

    async def _collect_trash(self) -> None:
        """Make spare container directories and delete removed containers' directories
        in a thread, one batch at a time, when starts and removals pause (see
        TRASH_QUIET)."""
        while True:
            await self._trash.wait()
            # Each start or removal meanwhile moves the deadline on (see _busy).
            self._trash_latest = trio.current_time() + TRASH_MAX_DELAY
            with trio.CancelScope(deadline=self._trash_latest) as self._trash_wait:
                if self._trash_hurry:
                    self._trash_wait.cancel()
                self._busy(self._busy_at)
                await trio.sleep_forever()
            self._trash_wait = None
            self._trash_hurry = False
            self._trash = trio.Event()
            # Spares first: their new inodes are quicker made before the deletions (see
            # Store.take_spare_dir), and whoever waits for the trash waits for them too.
            if self._spare_demand:
                demand, self._spare_demand = self._spare_demand, {}
                await trio.to_thread.run_sync(self._make_spares, demand)
            if not self._trash_filled:
                continue
            self._trash_filled = False
            fills = self._trash_fills
            # Their last runs' overlays are unmounted first (see _dismantle_later).
            for done in builtins.list(self._removals):
                await done.wait()
            # What the removed containers held is free now: give it back to the system,
            # in the same worker thread (each hand-off to one wakes a thread on the
            # loop's step).
            await trio.to_thread.run_sync(self._empty_trash)
            self._trash_emptied = fills
            self._trash_done.unpark_all()
            # Images retired by `rmi -f` while stopped containers used them go with the
            # last of those containers.
            async with self.images_lock:
                used = self.images_in_use()
                await trio.to_thread.run_sync(self.images.collect, used)

    def _fill_trash(self) -> None:
        """Something was moved into the trash: it is emptied at the next pause."""
        self._trash_filled = True
        self._trash_fills += 1
        self._trash.set()

    async def give_space_back(self) -> None:
        """If the store's file system is short of space (see LOW_SPACE) while removed
        containers or volumes wait in the trash, delete them now and return once they
        are gone; else return at once (they go at the next pause)."""
        wanted = self._trash_fills
        if self._trash_emptied >= wanted or not _short_of_space(self.store.root):
            return
        self._trash_hurry = True
        if self._trash_wait is not None:
            self._trash_wait.cancel()
        while self._trash_emptied < wanted:
            await self._trash_done.park()

    def _busy(self, when: float) -> None:
        """A container started or was removed at ``when``: the trash waits on."""
        self._busy_at = when
        if self._trash_wait is not None:
            self._trash_wait.deadline = min(self._trash_latest, when + TRASH_QUIET)

    def _empty_trash(self) -> None:
        self.store.empty_trash()
        _ptyout.release_kept_buffers()
        _trim.release_free_memory()

    def _make_spares(self, demand: dict[tuple[str, ...], int]) -> None:
        for layers, starts in demand.items():
            try:
                self.store.make_spare_dirs(layers, min(SPARES_MAX, max(SPARES_MIN, starts)))
            except OSError as exc:  # a full disk: starts make their directories as before
                log.warning("cannot make spare container directories: %s", exc)

    async def wait(self, ref: str) -> int:
        """Wait until the current run ends; its exit code (the last one if not running).
        A container waiting out its restart backoff is not at rest (Docker's counts it
        running): the wait is for the end of the run the restart begins, or of the
        backoff by a stop or ``rm -f``."""
        entry = self._lookup(ref)
        while entry.phase in (STARTING, RESTARTING):
            await entry.changed.wait()
        run, recorded = entry.run, entry.recorded
        if run is not None and entry.phase in _lifecycle.WITH_PROCESS:
            await recorded.wait()
            assert run.outcome is not None
            return run.outcome.exit_code
        code = entry.container.state.exit_code
        return 0 if code is None else code

    def attachable(self, ref: str) -> Run:
        """The run an ``attach`` joins; Conflict when the container is not running."""
        entry = self._lookup(ref)
        _lifecycle.check_attach(entry.container.name, entry.phase)
        assert entry.run is not None
        self.events.report("attach", entry.container)
        return entry.run

    def check_exec_user(self, ref: str, user: str) -> None:
        """Refuse (ValueError, naming it) a ``user`` for an exec in ``ref`` that its
        container's /etc/passwd and /etc/group do not resolve, as Docker's exec create
        does (its files may still change before the start, which resolves it again).
        Reads the container's files: not on the event loop's thread."""
        c = self._lookup(ref).container
        image = self._image(c.config.image, c.config.image_id)
        _plan.identity(user, image, self.store.container_dir(c.id), c.config.group_add)

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
        privileged: bool = False,
        console_size: tuple[int, int] | None = None,
        output: Output | None = None,
        exec_id: str = "",
        detached: bool = False,
        task_status: trio.TaskStatus[Run] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Run a process inside the running container (its namespaces, cgroup, root,
        capabilities and seccomp filter); report its Run via ``task_status`` once it runs
        and return its exit code.  Cancelling this kills the process, but a ``detached``
        one (`exec -d`) when the supervisor leaves with live restore: without a terminal
        its stdio is /dev/null (``output`` gets nothing) and it runs on as its container
        does.  Its output goes to ``output`` (subscribe before calling, so that nothing is
        missed); with ``tty``, its terminal is ``console_size`` (rows, columns) from the
        start.  Events: exec_create, exec_start, exec_die with ``exec_id`` (a new one if
        not given)."""
        entry = self._lookup(ref)
        c = entry.container
        _lifecycle.check_exec(c.id, c.name, entry.phase)
        request = _plan.ExecSpec(
            command=command,
            env=env,
            workdir=workdir,
            user=user,
            tty=tty,
            privileged=privileged,
            console_size=console_size,
        )
        _plan.check_exec(request)
        exec_id = exec_id or os.urandom(32).hex()
        action = " ".join(command)
        self.events.report(f"exec_create: {action}", c, execID=exec_id)
        proc = Run(
            c,
            output or Output(),
            None,
            tty=tty,
            interactive=interactive and not detached,
            null_stdio=detached and not tty,
        )
        proc.view_limits = self._memory_view(c)
        # Its sysinfo answered as its container's init's, but for a detached exec's: it may
        # outlive this daemon, and no shim would hold its listener for the next one.
        sysinfo = self._viewed(c) and not detached

        # The container's init, as the exec joins it: a copy of its pidfd, taken while
        # it is known to run, not the run's own, which its end closes (its number then
        # another container's pidfd, as containers come and go) while the exec spawns.
        target = -1

        async def exec_plan(stdio: tuple[int, int, int]) -> SpawnPlan:
            image = self._image(c.config.image, c.config.image_id)
            where = self.store.container_dir(c.id)
            # Made again at each exec, as Docker does: the linked containers as they are now.
            links = self._legacy_links(c, strict=False).env
            return _plan.build_exec(
                c, request, target, image, where, stdio=stdio, link_env=links, sysinfo=sysinfo
            )

        # A failure to start is raised once the nursery has closed: from inside it Trio
        # would wrap it in an ExceptionGroup, not the StartError or Conflict a caller
        # catches.
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            try:
                # The spawn waits, on the event loop's thread, for its setup, which joins
                # the container's cgroup: frozen, it would wait until a thaw and hold every
                # other request meanwhile.  Under the lock a pause waits for the spawn.
                async with entry.lock:
                    _lifecycle.check_exec(c.id, c.name, entry.phase)
                    run = entry.run  # a restart meanwhile has a new one
                    if run is None or run.pidfd < 0:  # ended, its end not yet recorded
                        raise _lifecycle.ended_before_exec(c.name)
                    cgroup = self._cgroup_of(c).for_exec(run.pid)
                    if cgroup.frozen():  # by somebody else: boxd's own pause is a phase
                        raise Conflict(
                            f"Container {c.id} is frozen (its cgroup's freezer, not a pause "
                            "of boxd's): thaw it before exec"
                        )
                    target = os.dup(run.pidfd)
                    try:
                        await nursery.start(
                            functools.partial(proc.execute, owns_cgroup=False),
                            self.native,
                            exec_plan,
                            cgroup,
                        )
                    except OSError as exc:
                        # The container ended as the exec joined it: its process has
                        # exited, or is exiting (no namespaces left to join: ESRCH).
                        if exc.errno == errno.ESRCH or _has_ended(target):
                            raise _lifecycle.ended_before_exec(c.name) from exc
                        raise
                    finally:
                        os.close(target)
            except Conflict as exc:
                failure = exc
            except (SpawnError, OSError, ValueError) as exc:
                failure = StartError(_exec_start_text(exc, command[0]), _exec_start_code(exc))
                failure.__cause__ = exc
            else:
                self.events.report(f"exec_start: {action}", c, execID=exec_id)
                task_status.started(proc)
                if detached:
                    self._detached_execs.add(proc)
                    try:
                        await proc.exited.wait()
                    finally:
                        self._detached_execs.discard(proc)
        if failure is not None:
            raise failure
        assert proc.outcome is not None
        code = proc.outcome.exit_code
        self.events.report("exec_die", c, execID=exec_id, exitCode=str(code))
        return code

    async def exec_detached(self, ref: str, command: tuple[str, ...], **options: Any) -> Run:
        """``exec -d``: start the process and return once it runs.  It lives on in the
        supervisor's nursery, its stdio /dev/null (a terminal's output discarded), until it
        ends or its container does (it is in the container's cgroup), across the daemon's
        end with live restore.  ``options`` as for :meth:`exec`."""
        run: Run = await self._nursery.start(
            self._exec_in_background, ref, command, {**options, "detached": True}
        )
        return run

    async def _exec_in_background(
        self,
        ref: str,
        command: tuple[str, ...],
        options: dict[str, Any],
        task_status: trio.TaskStatus[Run],
    ) -> None:
        relay = _Relay(task_status)
        try:
            await self.exec(ref, command, task_status=relay, **options)
        except Exception:
            if not relay.done:
                raise  # the caller of exec_detached is told
            log.exception("%s: detached exec of %s failed", ref, command[0])

    def limit_warnings(self, resources: Resources) -> builtins.list[str]:
        """What a user is told about ``resources`` (checked already by create or update):
        the options this host ignores, as Docker warns of them."""
        return _resources.warnings(*self.cgroups.ignored(_resources.limits(resources)))

    async def update(
        self, ref: str, changes: Resources, restart: RestartPolicy | None = None
    ) -> Container:
        """``docker update``, for every front end: the limits ``changes`` gives (not None)
        replace the container's, the others keep their values; ``restart``, if given,
        becomes its restart policy.  The limits are checked as a whole, then applied to a
        running container's cgroup and recorded."""
        entry = self._lookup(ref)
        c = entry.container
        resources, warnings = _resources.settle(
            _resources.merged(c.config.resources, changes), self._cgroups_of(c.config)
        )
        for warning in warnings:
            log.warning("%s: %s", c.name, warning)
        limits = _resources.limits(resources)
        _lifecycle.check_update(c.name, entry.phase)
        if c.config.auto_remove and restart is not None and restart.name is not RestartName.NO:
            raise Conflict(  # dockerd's words and status
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        config = attrs.evolve(
            c.config, resources=resources, restart=c.config.restart if restart is None else restart
        )
        if entry.phase in _lifecycle.WITH_PROCESS:
            try:
                self._cgroup_of(c).update(limits)
            except CgroupError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                # A limit below what it uses: in the user's terms, as Docker's words
                # ("Cannot update container ..."), not the host's cgroup path.
                words = f"cannot update container {c.name}: {exc.strerror}"
                raise CgroupError(exc.errno, words) from None
        c.config = config
        await self._save_durably(entry)
        self.events.report("update", c)
        return c

    async def change_networks(
        self,
        ref: str,
        change: Callable[[Container, Attachment | None], Awaitable[ContainerConfig]],
    ) -> Container:
        """``network connect``/``disconnect``: ``change(container, attachment)`` gives the
        new configuration, and hot-plugs the running container's ``attachment`` (None at
        rest); a running container's /etc/hosts and resolv.conf follow."""
        entry = self._lookup(ref)
        async with entry.lock:
            c = entry.container
            run = entry.run if entry.phase in _lifecycle.WITH_PROCESS else None
            attachment = run.network if run is not None else None
            c.config = await change(c, attachment)
            await self._save_durably(entry)
            if attachment is not None and attachment.pid:
                attachment.link_hosts = self._legacy_links(c, strict=False).hosts
                etc = attachment.etc()
                await trio.to_thread.run_sync(_plan.refresh_etc, c, attachment.pid, etc)
        return c

    # ---- start-up and shutdown ------------------------------------------------------

    async def _recover(self) -> None:
        """Make the records true after a crash; clean what a dead daemon left behind."""
        self._fill_trash()  # directories of containers removed just before it died
        self.volumes.recover()
        adoptions: dict[str, Adoption] = {}
        loaded = self.store.load_all()
        for cid in loaded.unfinished:
            await self._discard_unfinished(cid)
        for c in loaded.containers:
            entry = self._entries[c.id] = _Entry(c)
            found = await _live.find_shim(self.store.container_dir(c.id))
            ended = None  # how the record's process ended, if its shim said
            if found is not None:
                why_not = _live.why_not_adopt(found, c, live_restore=self.live_restore)
                if why_not is None:
                    adoptions[c.id] = found
                    continue
                log.warning("%s: killing the process its shim keeps: %s", c.short_id, why_not)
                recorded = _live.keeps_recorded(found, c)
                status = await _live.end(found)
                if recorded:
                    ended = status
            if entry.phase in _lifecycle.LIVE:
                try:
                    self._found_live(entry, ended)
                except OSError as exc:  # its record cannot be written: it is served as read
                    log.error("%s: cannot record what became of it: %s", c.short_id, exc)
        for entry in self._entries.values():  # as found: the changes from here are events
            self.events.known(entry.container)
        # Every other cgroup holds what no record shows (a create or start cut short, a
        # record set aside): killed and removed.  A newer boxd's containers are not ours.
        # Those below a container's own --cgroup-parent are looked for where its record says.
        parents = {e.container.config.cgroup_parent for e in self._entries.values()} - {""}
        for host in (self.cgroups, *(self._cgroups_of_parent(p) for p in sorted(parents))):
            for name in host.list_children():
                # Not a container's (a relative --cgroup-parent's directory), or kept.
                if not ID_RE.match(name) or name in loaded.foreign or name in adoptions:
                    continue
                log.info("removing cgroup %s left by a previous daemon", name)
                try:
                    await host.open(name).remove()
                except OSError as exc:
                    log.warning("cannot remove cgroup %s: %s", name, exc)
        await self.networks.recover(
            {cid: e.container for cid, e in self._entries.items()},
            [self._entries[cid].container for cid in adoptions],
        )
        await self._unmount_idle_volumes()  # those a last daemon left with no container
        for entry in list(self._entries.values()):
            c = entry.container
            if c.id in adoptions:
                log.info("%s: adopting process %d", c.short_id, c.state.pid)
                if adoptions[c.id].hello.exited is None:
                    await self._settle_pause(entry)
                adopt = functools.partial(self._lifecycle, entry, adoption=adoptions[c.id])
                try:
                    await self._nursery.start(adopt)
                except Exception as exc:  # one container must not stop the daemon
                    log.error("%s: adoption failed: %s", c.short_id, exc)
            elif entry.phase is REMOVING:  # the last daemon died removing it
                self._discard(entry)
            elif c.config.auto_remove:
                # Ended, or never started (a `run --rm` cut between its create and its
                # start, or a `create --rm` not started yet): removed, as Docker's daemon
                # removes every --rm container it does not find alive.
                await self._remove_now(entry)
            elif _restart_at_boot(c):
                try:
                    await self.start(c.id)
                except Exception as exc:  # one container must not stop the daemon
                    log.error("%s: restart at start-up failed: %s", c.short_id, exc)

    async def _settle_pause(self, entry: _Entry) -> None:
        """A daemon killed between freezing a container's cgroup and recording it paused
        (or between thawing and recording it running) left a record that says otherwise:
        the cgroup, the user's last word, is followed.  A container recorded running but
        frozen would take every exec (whose process is born in the cgroup, and frozen
        there) and every stop signal without an answer."""
        c = entry.container
        try:
            cgroup = self._cgroup_of(c)
            marker = self.store.container_dir(c.id) / COMMIT_PAUSE
            if marker.exists():  # the commit that paused it died with the last daemon
                log.warning("%s: thawed: the commit that paused it did not end", c.short_id)
                cgroup.thaw()
                c.state.status = RUNNING
            elif entry.phase is RUNNING and cgroup.frozen():
                log.warning("%s: its cgroup is frozen: recorded as paused", c.short_id)
                await cgroup.freeze()  # a freeze the last daemon began: done
                c.state.status = PAUSED
            elif entry.phase is PAUSED and not cgroup.frozen():
                log.warning("%s: its cgroup is not frozen: recorded as running", c.short_id)
                c.state.status = RUNNING
            else:
                return
            self.store.save(c)
            marker.unlink(missing_ok=True)  # after the record: a crash between thaws again
        except OSError as exc:  # its record or its cgroup: it is served as it is
            log.error("%s: cannot settle its paused state: %s", c.short_id, exc)

    async def _discard_unfinished(self, cid: str) -> None:
        """A directory without a record: a create cut short, or a run killed after its
        process was spawned but before its first record, whose shim keeps the process
        (and would until it sees its socket gone).  That process is killed and its shim
        ended before the directory goes."""
        d = self.store.container_dir(cid)
        found = await _live.find_shim(d)
        if found is not None:
            log.warning("%s: killing the process its shim keeps: it has no record", cid[:12])
            await _live.end(found)
        log.info("removing %s: its create never finished (no record)", d)
        self.store.discard(cid)

    def _found_live(self, entry: _Entry, ended: ExitStatus | None = None) -> None:
        """A container the last daemon left in a live phase: its process (if it still
        runs, and really is its process: the pid's start time must match) is killed, and
        it is recorded as ended, with the exit code its shim kept (``ended``: one that
        is not adopted, e.g. a stop under way), else 255.  A pid that now names an
        unrelated process is left alone."""
        c = entry.container
        st = c.state
        if entry.phase is RESTARTING:  # it had ended; its policy decides again below
            st.status = EXITED
            # The restart it waited for did not happen (a record of an older boxd had not
            # counted it yet).
            st.restart_count = max(st.restart_count - 1, 0)
            self.store.save(c)
            return
        if ended is not None:  # its shim's: ended and reaped
            st.status = STOPPED if entry.phase is STOPPING else EXITED
            st.exit_code = ended.exit_code
            st.finished_at = ended.at or time.time()
            st.pid = 0
            self.store.save(c)
            return
        if st.pid > 0:
            started = start_time_of(st.pid)
            if started == st.pid_start_time:
                log.warning("%s: killing process %d left by a previous daemon", c.short_id, st.pid)
                with contextlib.suppress(ProcessLookupError):
                    pidfd = os.pidfd_open(st.pid)
                    try:
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    finally:
                        os.close(pidfd)
            elif started:
                log.warning(
                    "%s: pid %d now belongs to another process (started at tick %d, not %d): "
                    "not touched",
                    c.short_id,
                    st.pid,
                    started,
                    st.pid_start_time,
                )
        if entry.phase is STARTING and st.started_at is None:
            st.status = CREATED  # it never ran: its cgroup (below) held whatever was spawned
        else:
            st.status = STOPPED if entry.phase is STOPPING else EXITED
            st.exit_code = 255
            st.error = "the daemon ended while the container ran; exit code unknown"
            st.finished_at = time.time()
        st.pid = 0
        self.store.save(c)

    async def _shutdown(self) -> None:
        if self.live_restore:
            # The containers outlive us: when the nursery is cancelled, each run lets go of
            # its process, which its shim keeps for the next supervisor.
            for entry in self._entries.values():
                if entry.run is not None:
                    entry.run.detach = True
            for run in self._detached_execs:
                run.detach = True
            return
        async with trio.open_nursery() as nursery:
            for entry in list(self._entries.values()):
                if entry.phase in _lifecycle.LIVE:
                    nursery.start_soon(lambda cid: self.stop(cid, manual=False), entry.container.id)

    def counts(self) -> collections.Counter[Status]:
        """How many containers are in each phase."""
        return collections.Counter(e.phase for e in self._entries.values())


def _backoff(last: float | None, ran: float) -> float:
    """The wait before a restart, as Docker's restart manager has it: 0.1 s, doubled at
    each restart up to a minute, 0.1 s again after a run of 10 s or more.  ``last``: the
    wait before the last restart (None: there was none); ``ran``: how long the run that
    ended lasted."""
    if last is None or ran >= BACKOFF_RESET:
        return BACKOFF_START
    return min(last * 2, BACKOFF_MAX)


def _restart_at_boot(c: Container) -> bool:
    """Whether a container starts again with the daemon, as Docker's: ``always`` ones,
    ``unless-stopped`` ones no user stopped, and ``on-failure`` ones no user stopped whose
    last code was not 0 (ended while no daemon ran, by a reboot, by the last daemon's own
    stop) with tries left."""
    policy = c.config.restart.name
    st = c.state
    if st.status is CREATED or st.exit_code is None:
        return False
    if policy is RestartName.ALWAYS:
        return True
    if policy is RestartName.UNLESS_STOPPED:
        return not st.manual_stop
    if policy is RestartName.ON_FAILURE:
        return c.config.restart.wants_restart(
            exit_code=st.exit_code, stopped=st.manual_stop, restarts=st.restart_count
        )
    return False


def cgroup_name(root: Path) -> str:
    """``boxd`` for the default root; one name per root otherwise, so that daemons on
    different roots (tests, a library user beside the daemon) never touch each other's
    cgroups when they clean up."""
    if root.resolve() == DEFAULT_ROOT:
        return "boxd"
    return "boxd-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


async def _shielded_nursery(
    *, task_status: trio.TaskStatus[tuple[trio.Nursery, trio.CancelScope]]
) -> None:
    """The nursery of a supervisor's own tasks (each container's lifecycle, ...) and the
    scope that ends them when it closes.  Shielded: a caller's block cancelled from
    outside (a ``fail_after`` around it, a test's timeout) must not cancel them under the
    supervisor's feet, which killed every container with its end unrecorded (exit code
    unknown, as after a crash); the block's cancellation closes the supervisor as its
    end would."""
    with trio.CancelScope(shield=True) as scope:
        async with trio.open_nursery() as nursery:
            task_status.started((nursery, scope))
            await trio.sleep_forever()


# The roots a supervisor of this process has open.
_open_roots: set[Path] = set()


@contextlib.contextmanager
def _sole_supervisor(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Be the one supervisor on ``root``, of this process and of any other (see
    :func:`~boxd._store.hold_root`): each would take the other's running containers for a
    dead daemon's and kill them.  Gives the root made absolute: a later chdir of the
    caller (a test's) must not move it."""
    where = Path(root).absolute()
    if where in _open_roots:
        raise RootInUse(f"a supervisor of this process is already open on {where}")
    with hold_root(where):
        _open_roots.add(where)
        try:
            yield where
        finally:
            _open_roots.discard(where)


@asynccontextmanager
async def open_supervisor(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    native: Native | None = None,
    cgroups: CgroupHost | None = None,
    cgroup_parent: str | None = None,
    log_driver: str = "json-file",
    log_max_size: int | None = None,
    log_max_files: int | None = None,
    log_options: tuple[str, ...] = (),
    procview: ProcView | bool | None = None,
    insecure_registries: frozenset[str] = frozenset(),
    max_download_attempts: int = 5,
    bridge: BridgeOptions | None = None,
    live_restore: bool = False,
) -> AsyncIterator[Supervisor]:
    """A supervisor for the containers stored under ``root``.

    On entry, records are reconciled with reality (see :meth:`Supervisor._recover`); on
    exit every running container is stopped gracefully (its stop signal and timeout),
    and the networks' bridges and rules are removed.  With ``live_restore`` they run on
    after the exit (and a crash), each kept by a boxd-shim, and the next supervisor on
    ``root`` with ``live_restore`` adopts them (the networks stay for them).  ``native``
    and ``cgroups`` replace the spawn path and the host's cgroups (tests give
    :class:`~boxd._native.FakeNative` and a fake cgroup tree); ``bridge``: the default
    network's bridge and subnet; ``log_driver``, the log sizes and the kept ``log_options``
    ("KEY=VALUE"): a new container's unless its configuration names them.  ``procview``:
    True serves the per-container /proc view at ``root/procview`` while the supervisor is
    open (/dev/fuse and pyfuse3; one per process), else a view its caller serves (the
    daemon's).
    """
    with _sole_supervisor(root) as where:
        store = Store(where)
        if cgroups is None:
            cgroups = CgroupHost.detect(parent=cgroup_parent, name=cgroup_name(store.root))
        cgroups.keep_parents = True  # made once for all containers, removed below
        # What the caller's block (or the recovery before it) raised, raised again as it is
        # once the nursery is closed: from inside it Trio would wrap it in an ExceptionGroup,
        # which no `except ValueError` (nor pytest.raises, nor Python's own handling of a
        # KeyboardInterrupt) around the `async with` would recognise.  A background task's
        # error still comes as the nursery's group.
        error: BaseException | None = None
        async with trio.open_nursery() as outer:
            nursery, background = await outer.start(_shielded_nursery)
            sup = Supervisor(
                store,
                nursery,
                native or RealNative(),
                cgroups,
                log_driver=log_driver,
                log_max_size=log_max_size,
                log_max_files=log_max_files,
                log_options=log_options,
                networks=Networks(store.root, bridge or BridgeOptions()),
                live_restore=live_restore,
            )
            if isinstance(procview, ProcView):  # the caller's: its readers are ours now
                procview.resolver = sup
                sup.procview = procview
            sup.set_registry_options(insecure_registries, max_download_attempts)
            sup.networks.nursery = nursery
            try:
                if procview is True:
                    view = ProcView(sup)
                    await nursery.start(view.serve, where / "procview")
                    sup.procview = view
                await sup._recover()
                images = await trio.to_thread.run_sync(sup.images.images)
                try:
                    swept = await trio.to_thread.run_sync(sup.images.sweep, images)
                except (OSError, ValueError) as exc:  # the store as it is serves on
                    log.warning("images: what no image holds not deleted: %s", exc)
                else:
                    if swept:
                        log.info("images: deleted %d blobs and layers no image holds", swept)
                measured = await trio.to_thread.run_sync(sup.images.measure)
                if measured:
                    log.info("images: measured %d layers an older boxd stored", measured)
                for record in images:  # unpacks a kill cut short, from the blobs
                    sup.unpacks.start(record)
                nursery.start_soon(sup._collect_trash)
                yield sup
            except BaseException as exc:
                error = exc
            finally:
                try:
                    with trio.CancelScope(shield=True):
                        await sup.unpacks.aclose()
                        await sup._shutdown()
                        await sup._unmount_idle_volumes()  # (live restore: those in use stay)
                        await sup._cgroups_removed()
                        await _shim.reaped()
                        await sup.networks.close()
                        # A parent made at start for containers that never ran (or all of
                        # whose cgroups are gone) would outlive us; one still in use stays.
                        for host in (*sup._parent_hosts.values(), cgroups):
                            host.remove_parents()
                        await trio.to_thread.run_sync(store.empty_trash)
                finally:
                    # Also when the closing is cut short (a second Ctrl-C in a stop's
                    # grace period): the shielded tasks would keep the nursery open for
                    # ever; cancelled, each run kills its process on its way out.
                    background.cancel(reason="supervisor closed")
                    sup.closed = True
        if error is not None:
            raise error

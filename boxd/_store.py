"""Records on disk: one directory per container, every write atomic.

Layout under the root (default ``/var/lib/boxd``, mode 0700)::

    boxd.pid                         the pid of the process that holds the root (hold_root)
    containers/<id>/container.json   the Container record (config and state), with its format
    containers/<id>.corrupt/         a container whose record could not be read, set aside
    containers/<id>/logs/            container.log and its rotations
    containers/<id>/fs/              overlay upper and work directories
    containers/<id>/rootfs/          mount point of the container's root (inside its mount ns)
    images/                          prepared image layers (the skeleton of ``default``)
    trash/                           removed containers' directories, deleted in the background
    trash/.deleting/                 those being deleted
    spares/<layers>.<n>/             container directories made ahead (Store.take_spare_dir)

A write goes to a spare file in the same directory (``.container.json.tmp``), is fsynced,
trades places with the record (or is renamed to it: the first write), and the directory is
fsynced: a crash at any instant leaves the old or the new record.  The spare then holds the
previous record and takes the next write: no inode is made or freed once both exist (see
:func:`replace_record`).

Every record carries ``"format"``: :data:`FORMAT` for this release.  A record without it was
written by the first release (format 1, which this one reads as it is).  A record of a newer
format is left alone, untouched: its container belongs to a newer boxd.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from . import _syscalls
from ._atomic import atomic_write as atomic_write
from ._atomic import sync_dir, write_file
from ._convert import ConversionError, structure, unstructure
from ._logs import LOG_NAME
from ._records import ID_RE, Container, ContainerConfig
from ._shim import SOCKET_NAME

log = logging.getLogger("boxd.store")

RECORD = "container.json"
DELETING = ".deleting"  # in trash/: what empty_trash is deleting
SPARE_NEW = ".new-"  # in spares/: a spare being made (a leftover is deleted)
# 1: the first release (no "format" key).  2: the phases starting, paused, restarting,
# stopping and removing.  3: the fields added since 2 (Isolation, Attach*, UsernsMode, log
# options ...; a reader of 2 set such records aside as unreadable, killing their
# containers: it leaves those of 3 alone).  4: IPv6 (a join's ip6, an endpoint's IPv6
# address, prefix and gateway, the container's IPv6 addresses).  5: a bind's propagation
# (rslave, slave, private).  6: an endpoint's host_link (its veth's host end, one of
# several names).  7: a join's gw_priority.  8: a join's links.  9: a join's
# link_local_ips.  10: the log drivers syslog, journald and gelf, whose records a reader of
# 9 refuses (an unknown driver: set aside, its container killed) and now leaves alone.
# 11: the log drivers fluentd and splunk, as 10.  12: a bind's recursion mode, a
# volume's subpath, image mounts and --cgroupns host (a reader of 11 would mount the whole
# volume, the mounts below a bind that was to hide them, or no image).  A change of the record's
# fields raises it (tests/test_records.py pins them), as does a value an older reader
# refuses.
FORMAT = 12


@attrs.frozen
class Loaded:
    containers: list[Container]
    # Ids of records of a newer format: their containers (processes, cgroups, files) are
    # not this daemon's to touch.
    foreign: frozenset[str]
    # Ids of directories without a record: a create cut short, or a run whose process was
    # spawned (its shim may keep it) before its first record was written.  The caller
    # ends what runs there and discards them.
    unfinished: tuple[str, ...] = ()


class NewerFormat(Exception):
    pass


PID_FILE = "boxd.pid"


class RootInUse(Exception):
    """Another process (a daemon, a library's supervisor) holds the state directory, or a
    supervisor of this process has it open."""


# The roots this process holds (see hold_root): the lock's file descriptor, and how many
# holds of this process are open on it.
_holds: dict[Path, list[int]] = {}


@contextlib.contextmanager
def hold_root(root: Path) -> Iterator[None]:
    """Hold the state directory ``root`` (made if missing) for this process while the
    block runs: an exclusive lock of its ``boxd.pid``, which names this process.  Two
    processes on one root would each take the other's containers for a dead daemon's
    leftovers and kill them; while another holds it this raises :class:`RootInUse` with
    its pid.  This process's holds nest (the daemon holds its root from before its
    supervisor's).

    A POSIX record lock (``lockf``), which is the process's own and ends with it, not a
    ``flock``, which belongs to the open file: a child cloned mid-start still had a copy
    of the descriptor when the program was killed, and kept the root locked after it.
    (Closing any descriptor of the file would drop a record lock: only this opens it.)"""
    root = Path(os.path.abspath(root))
    held = _holds.get(root)
    if held is not None:
        held[1] += 1
    else:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(root / PID_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RootInUse(f"another boxd (pid {other}) is running on {root}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held = _holds[root] = [fd, 1]
    try:
        yield
    finally:
        held[1] -= 1
        if held[1] == 0:
            del _holds[root]
            os.close(held[0])


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        # Per container: its configuration and that configuration's JSON, as its last save
        # encoded it.  A configuration is frozen (a change makes a new object), so while
        # the object is the same its JSON is; each save encodes only the rest.
        self._configs: dict[str, tuple[ContainerConfig, str]] = {}
        self.containers = root / "containers"
        self.images = root / "images"
        self.trash = root / "trash"
        self.spares = root / "spares"
        # Per set of overlay directories (``fs/root``, ...): the spare directories made for
        # containers with those overlays (see take_spare_dir).  Lists: a pop or an append is
        # one step under the GIL, for the worker threads that take and make them.
        self._spare_dirs: dict[str, list[str]] = {}
        # Traversable, not listable or readable: the root of a user-namespaced container is
        # an unprivileged host uid that must reach its own layers (the records are 0600).
        for d in (root, self.containers, self.images):
            d.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(d, 0o711)
        self._load_spares()

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def log_dir(self, cid: str) -> Path:
        """Where the container's log files are (whether it keeps any or not)."""
        return self.containers / cid / "logs"

    def save(self, container: Container, *, durable: bool = True) -> None:
        """``durable=False`` for state changes: after a crash of the machine every container
        is dead anyway and the next daemon corrects what the record says (see recovery);
        a configuration must survive it."""
        self.write(container.id, self.encode(container), durable=durable)

    def write(self, cid: str, data: bytes, *, durable: bool = True) -> None:
        """:meth:`save` of ``data``, the record :meth:`encode` made (in a worker thread: it
        touches no state of the store's)."""
        d = os.fspath(self.container_dir(cid))
        try:
            replace_record(os.path.join(d, RECORD), data, durable=durable)
        except FileNotFoundError:  # no directory yet (create): made here, not tried first
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)
            replace_record(os.path.join(d, RECORD), data, durable=durable)

    def encode(self, container: Container) -> bytes:
        """The record's bytes: ``json.dumps({"format": FORMAT, **unstructure(container)})``
        (one line: json's C encoder; with an indent it encodes in Python), with the
        configuration's part encoded once per configuration (two thirds of the work)."""
        config = container.config
        known = self._configs.get(container.id)
        if known is None or known[0] is not config:
            known = config, json.dumps(unstructure(config), allow_nan=False)
            self._configs[container.id] = known
        head = json.dumps(
            {
                "format": FORMAT,
                "id": container.id,
                "name": container.name,
                "created_at": container.created_at,
            },
            allow_nan=False,
        )
        state = json.dumps(unstructure(container.state), allow_nan=False)
        return f'{head[:-1]}, "config": {known[1]}, "state": {state}}}'.encode()

    def make_spares(self, cid: str) -> None:
        """Make the files the next two saves of ``cid``'s record write into (see
        :func:`replace_record`), for a worker thread: each is a new inode, which costs
        this VM's ext4 0.2-0.5 ms of kernel CPU; made here, the saves make none.  Files a
        save is writing are left as they are (no truncation)."""
        d = os.fspath(self.container_dir(cid))
        names = [f".{RECORD}.tmp"]
        if not os.path.exists(os.path.join(d, RECORD)):  # the first save renames the spare
            names.append(f".{RECORD}.next")
        for n in names:
            os.close(os.open(os.path.join(d, n), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

    def take_spare_dir(self, cid: str, layer_dirs: tuple[str, ...]) -> bool:
        """For a worker thread, at a container's first start: its directory taken from the
        spares made for containers whose overlays have ``layer_dirs`` (``fs/root``, ...), by
        a rename, with what a start makes in it before the container runs (its log, its
        record's spare files, ``rootfs`` and each overlay's upper and work directories),
        all empty.  False if none is left.  Each new inode costs this VM's ext4 (no
        journal: a new inode skips those freed in the last minute) 0.03-0.5 ms; a start
        makes twelve of them, which :meth:`make_spare_dirs` makes when containers pause."""
        pool = self._spare_dirs.get(_spare_key(layer_dirs))
        while pool:
            try:
                os.rename(pool.pop(), self.container_dir(cid))
            except FileNotFoundError:  # gone meanwhile (deleted by hand): the next one
                continue
            return True
        return False

    def make_spare_dirs(self, layer_dirs: tuple[str, ...], count: int) -> None:
        """For a worker thread: make spare directories (see :meth:`take_spare_dir`) until
        ``count`` of them wait for containers whose overlays have ``layer_dirs``.  Each is
        made under a temporary name and renamed: a spare is whole or not one."""
        key = _spare_key(layer_dirs)
        pool = self._spare_dirs.setdefault(key, [])
        self.spares.mkdir(mode=0o700, exist_ok=True)
        while len(pool) < count:
            made = tempfile.mkdtemp(prefix=SPARE_NEW, dir=self.spares)  # mode 0700
            try:
                os.mkdir(os.path.join(made, "logs"))
                os.close(os.open(os.path.join(made, "logs", LOG_NAME), _NEW_LOG, 0o640))
                for spare in (f".{RECORD}.tmp", f".{RECORD}.next"):
                    os.close(os.open(os.path.join(made, spare), _NEW_FILE, 0o600))
                os.mkdir(os.path.join(made, "rootfs"))
                for layer in layer_dirs:
                    os.makedirs(os.path.join(made, layer, "upper"))
                    os.mkdir(os.path.join(made, layer, "work"))
                final = os.path.join(self.spares, f"{key}.{made.rsplit(SPARE_NEW, 1)[1]}")
                os.rename(made, final)
            except BaseException:
                _remove_tree(Path(made))
                raise
            pool.append(final)

    def _load_spares(self) -> None:
        """Take up the spares a last daemon left; delete any it was making."""
        try:
            names = os.listdir(self.spares)
        except FileNotFoundError:
            return
        for name in sorted(names):
            key, dot, _ = name.rpartition(".")
            if name.startswith(SPARE_NEW) or not dot or not key:
                _remove_tree(self.spares / name)
            else:
                self._spare_dirs.setdefault(key, []).append(os.fspath(self.spares / name))

    def load_all(self) -> Loaded:
        """Every readable record.  What a crash can leave is repaired on the way: a
        temporary file beside a record is removed, and a record that cannot be read is set
        aside with its directory (``<id>.corrupt``) and one warning naming it; a directory
        whose record was never written is listed in :attr:`Loaded.unfinished`."""
        found = []
        foreign = set()
        unfinished = []
        for d in sorted(self.containers.iterdir()):
            if not ID_RE.match(d.name) or not d.is_dir():
                continue
            for spare in (f".{RECORD}.tmp", f".{RECORD}.next"):
                (d / spare).unlink(missing_ok=True)
            record = d / RECORD
            if not record.exists():
                unfinished.append(d.name)
                continue
            try:
                container = read_record(record)
            except NewerFormat as exc:
                log.warning("%s: %s; left alone", record, exc)
                foreign.add(d.name)
                continue
            except (OSError, ValueError) as exc:
                self._set_aside(d, record, exc)
                continue
            if container.id != d.name:
                self._set_aside(d, record, f"id {container.id!r} does not match its directory")
                continue
            found.append(container)
        return Loaded(found, frozenset(foreign), tuple(unfinished))

    def _set_aside(self, d: Path, record: Path, why: object) -> None:
        dest = d.with_name(f"{d.name}.corrupt")
        n = 1
        while dest.exists():
            n += 1
            dest = d.with_name(f"{d.name}.corrupt{n}")
        log.warning("container record %s cannot be read (%s); moved aside to %s", record, why, dest)
        os.rename(d, dest)
        # No daemon will reach a shim of it again: without its socket the shim ends its
        # container (whose cgroup recovery removes anyway) and itself within seconds,
        # instead of waiting for ever (it finds the socket through its working directory,
        # which the rename moved with it).
        (dest / SOCKET_NAME).unlink(missing_ok=True)

    def discard(self, cid: str) -> None:
        """Take a container's directory out of the store at once (a rename into ``trash/``);
        :meth:`empty_trash` deletes it later, off the caller's path (its upper layer may
        hold any number of files)."""
        self._configs.pop(cid, None)
        try:
            os.rename(self.container_dir(cid), self.trash / cid)
        except FileNotFoundError:  # no such directory, or no trash yet (made here once)
            if self.trash.is_dir():
                return
            self.trash.mkdir(mode=0o700, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.container_dir(cid), self.trash / cid)

    def empty_trash(self) -> None:
        """Delete what :meth:`discard` set aside (also what a killed daemon left there).
        Each directory is first moved into ``trash/.deleting``: the last rmdir of a
        directory holds its parent's lock while ext4 mounted with ``discard`` waits for the
        disk, and in ``trash/`` that stalled :meth:`discard`'s rename on the event loop's
        thread (10 ms and more, measured)."""
        deleting = self.trash / DELETING
        with contextlib.suppress(FileNotFoundError):
            deleting.mkdir(mode=0o700, exist_ok=True)
            for d in self.trash.iterdir():
                if d.name != DELETING:
                    try:
                        os.rename(d, deleting / d.name)
                    except OSError:  # a namesake left there: delete it where it is
                        _remove_tree(d)
            for d in deleting.iterdir():
                _remove_tree(d)


def _spare_key(layer_dirs: tuple[str, ...]) -> str:
    """``fs/root``, ``fs/usr`` -> ``root+usr``: the name of a spare before its suffix."""
    return "+".join(d.removeprefix("fs/") for d in layer_dirs)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_NEW_LOG = _NEW_FILE | os.O_APPEND


def _remove_tree(path: Path) -> None:
    """Delete ``path`` and all below it in one call of the C extension, which holds no GIL
    (``shutil.rmtree`` took it back for every entry: while containers started at once, the
    event loop's thread waited for it, see bench/README).  What cannot be deleted stays
    for the next emptying."""
    # By name: mypy would take the sandbox_native/ source directory for the module.
    with contextlib.suppress(OSError):
        importlib.import_module("sandbox_native").remove_tree(os.fspath(path))


def replace_record(path: str, data: bytes, *, durable: bool) -> None:
    """:func:`atomic_write` for a file only its writer reads (a container's record: read by
    the next supervisor, never while one writes it): the new bytes go into the spare
    ``.<name>.tmp`` in place, which then trades places with ``path`` (``renameat2`` with
    ``RENAME_EXCHANGE``).  A rename over the old file freed the old inode in the writer's
    thread, and on ext4 mounted with ``discard`` that waits for the disk (2-30 ms measured
    on the event loop's thread); an exchange frees nothing and, from the second write
    on, makes no inode.  The first write (no record yet), and a file system that cannot
    exchange, rename instead (and a spare made ahead, ``.<name>.next``, becomes the spare).
    A reader that opened the old record must be done with it before the next write (which
    overwrites the spare that file became)."""
    parent, name = os.path.split(path)
    spare = os.path.join(parent, f".{name}.tmp")
    write_file(spare, data, durable=durable)
    if not _exchange(spare, path):
        os.rename(spare, path)
        # The spare is the record now: the one made ahead (Store.make_spares) takes its
        # place, if there is one.
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(parent, f".{name}.next"), spare)
    if durable:
        sync_dir(parent)


class RecordWrites:
    """The durable writes of one record (a container's, a network's) in worker threads:
    their fsyncs on the event loop's thread stopped the whole daemon for as long as a busy
    disk took (40-60 ms after a container's 256 MiB log).  One at a time: a save made
    while one is under way (:meth:`defer`) is written after it, in order, fsyncs too."""

    def __init__(self) -> None:
        self.under_way: trio.Event | None = None
        self._again = False

    def defer(self) -> bool:
        """Whether a write is under way; if so the save asked for now follows it."""
        if self.under_way is None:
            return False
        self._again = True
        return True

    async def settled(self) -> None:
        """Once no write is under way."""
        while self.under_way is not None:
            await self.under_way.wait()

    async def write(
        self, encode: Callable[[], bytes], write: Callable[[bytes], None], what: str
    ) -> None:
        """``write(encode())`` in a worker thread, then again for each save deferred
        meanwhile (a refusal of those is logged, naming ``what``: the record's next write
        has it); the first one's OSError is raised."""
        self.under_way = done = trio.Event()
        try:
            with trio.CancelScope(shield=True):  # what it writes is what the caller was told
                await trio.to_thread.run_sync(write, encode())
                while self._again:
                    self._again = False
                    try:
                        await trio.to_thread.run_sync(write, encode())
                    except OSError as exc:
                        log.warning("%s: its record not written: %s", what, exc)
        finally:
            self.under_way = None
            done.set()


def remove_record(path: str) -> None:
    """A record :func:`replace_record` wrote gone, with its spare (neither may exist)."""
    parent, name = os.path.split(path)
    for each in (path, os.path.join(parent, f".{name}.tmp")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(each)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Errors of renameat2 that mean "rename instead": nothing to exchange with (the first
# write), no such flag on this file system or kernel, no renameat2 at all.
_NO_EXCHANGE = frozenset({errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _exchange(a: str, b: str) -> bool:
    """Swap two directory entries atomically; False when :data:`_NO_EXCHANGE` says so."""
    import ctypes  # see _syscalls.libc

    renameat2 = getattr(_syscalls.libc(), "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
        err = ctypes.get_errno()
        if err in _NO_EXCHANGE:
            return False
        raise OSError(err, os.strerror(err), b)
    return True


def versioned(raw: object, newest: int, what: str = "record") -> dict[str, Any]:
    """A record's JSON object without its ``"format"`` (1 without one: written before its
    kind had formats), checked against ``newest``, the newest format this boxd reads:
    NewerFormat for a newer boxd's (``what``: the kind of record, for the message),
    ConversionError when it is no record."""
    if not isinstance(raw, dict):
        raise ConversionError("not a JSON object")
    version = raw.pop("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConversionError(f"invalid format {version!r}")
    if version > newest:
        raise NewerFormat(
            f"written by a newer boxd ({what} format {version}; this one reads up to {newest})"
        )
    return raw


def read_record(path: Path) -> Container:
    """One record file; NewerFormat for a newer boxd's, ValueError when unreadable."""
    return structure(versioned(json.loads(path.read_bytes()), FORMAT), Container)

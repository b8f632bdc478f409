"""Volumes the daemon keeps: directories under its root that outlive containers.

    <root>/volumes/<name>/volume.json   the record: name, driver, labels, options, created
    <root>/volumes/<name>/_data         what containers see (Docker's layout)
    <root>/volumes/<name>/.filling      there while _data is being filled from an image

A volume is made whole in a temporary directory and renamed into place, and removed by a
rename into the store's trash (deleted in the background): a daemon killed at any instant
leaves a volume complete or absent.  Its filling from the image (:func:`copy_up`) is
marked while under way: a fill a killed daemon cut short is emptied and done again at the
next create or start of a container on it (the volume's content was only partly there).
Which containers use a volume is not stored here: it is read from the containers' records
(their ``volumes``), so it survives the daemon.

An anonymous volume (``-v /data``) has a random 64-hex name and Docker's label
``com.docker.volume.anonymous``; ``rm -v`` and ``--rm`` remove it with its container, and
``volume prune`` removes only those unless ``--all``.

The one option set the local driver takes is Docker's bind: ``type=none``, ``o=bind``,
``device=DIR`` (compose's ``driver_opts``), an existing host directory that containers
mount in place of ``_data``.  It is never filled from an image (boxd fills only its own
``_data``: a fill cut short is emptied, which a host directory must never be) and stays
when the volume is removed, as Docker's does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from ._convert import ConversionError, structure, unstructure
from ._images.unpack import kept_xattr, unpack
from ._lifecycle import error_text
from ._mounts import check_volume_name, valid_volume_name
from ._store import NewerFormat, atomic_write, versioned

log = logging.getLogger("boxd.volumes")

RECORD = "volume.json"
# The volume record's format (see boxd/_store.py's FORMAT): 1, its fields up to now, with no
# "format" key (the releases before formats read it so).  A change of its fields raises it
# (tests/test_records.py pins them) and writes the key; this boxd leaves a volume whose
# record has a newer format alone: not listed, used, replaced nor removed.
VOLUME_FORMAT = 1
DATA = "_data"
FILLING = ".filling"
ANONYMOUS = "com.docker.volume.anonymous"
DRIVER = "local"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class NoSuchVolume(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such volume: {name}")


class NoSuchDriver(ValueError):
    """A volume driver other than local: a plugin boxd has not (dockerd's NotFound)."""

    def __init__(self, driver: str) -> None:
        super().__init__(f"volume driver {driver!r} not found: the one driver is local")


class VolumeInUse(RuntimeError):
    def __init__(self, name: str, users: Iterable[str]) -> None:
        super().__init__(f"remove {name}: volume is in use - [{', '.join(users)}]")


@attrs.frozen
class VolumeRecord:
    name: str
    created_at: float
    driver: str = DRIVER
    labels: dict[str, str] = attrs.Factory(dict)
    options: dict[str, str] = attrs.Factory(dict)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS in self.labels

    @property
    def device(self) -> str:
        """The host directory of a bind volume ("" for the daemon's own)."""
        return self.options.get("device", "")


# Docker's local driver's keys; of their values boxd takes the bind of a directory.
_OPTION_KEYS = ("type", "device", "o")
_BIND = "type=none,o=bind,device=DIR"


def check_options(driver: str, options: dict[str, str]) -> None:
    if driver != DRIVER:
        raise NoSuchDriver(driver)
    if not options:
        return
    for key in options:
        if key not in _OPTION_KEYS:
            raise ValueError(f'invalid option key: "{key}"')
    kind, device, flags = (options.get(k, "") for k in _OPTION_KEYS)
    if kind != "none" or flags not in ("bind", "rbind"):
        given = ",".join(f"{k}={v}" for k, v in options.items())
        hint = " (for a tmpfs, mount one in each container: --tmpfs or --mount type=tmpfs)"
        raise ValueError(
            f"invalid volume options {given!r}: the local driver of boxd takes {_BIND} only"
            + (hint if kind == "tmpfs" else "")
        )
    if not device.startswith("/") or not os.path.isdir(device):
        raise ValueError(f"invalid volume option device={device!r}: not an existing directory")


class Volumes:
    def __init__(
        self, root: Path, trash: Path, report: Callable[[str, str], None] | None = None
    ) -> None:
        """``report(action, name)``: told of each volume made (create) and removed
        (destroy), for their events."""
        self.dir = root
        self.trash = trash
        self.dir.mkdir(mode=0o711, exist_ok=True)
        self._report = report or (lambda action, name: None)

    def path(self, name: str) -> Path:
        """The directory the daemon keeps for the volume."""
        return self.dir / name / DATA

    def source(self, name: str) -> Path:
        """The directory containers see (the ``Mountpoint``): a bind volume's device."""
        device = self.get(name).device
        return Path(device) if device else self.path(name)

    def get(self, name: str) -> VolumeRecord:
        if not valid_volume_name(name):  # no path of the name leaves the store
            raise NoSuchVolume(name)
        try:
            data = (self.dir / name / RECORD).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchVolume(name) from None
        try:
            return structure(
                versioned(json.loads(data), VOLUME_FORMAT, "volume record"), VolumeRecord
            )
        except NewerFormat as exc:
            raise OSError(errno.EPROTO, f"volume {name}: {exc}: left alone") from None
        except (ValueError, ConversionError) as exc:
            raise OSError(errno.EIO, f"volume {name}: unreadable record: {exc}") from None

    def list(self) -> list[VolumeRecord]:
        found = []
        for d in sorted(self.dir.iterdir()):
            if d.name.startswith("."):
                continue
            try:
                found.append(self.get(d.name))
            except (NoSuchVolume, OSError) as exc:
                log.warning("%s", error_text(exc))  # each names the volume or its path
        return found

    def create(
        self,
        name: str = "",
        *,
        labels: dict[str, str] | None = None,
        driver: str = DRIVER,
        options: dict[str, str] | None = None,
    ) -> VolumeRecord:
        """A new volume, or the one of that name (Docker's create is idempotent); no name:
        an anonymous one."""
        options = options or {}
        check_options(driver, options)
        labels = dict(labels or {})
        if name:
            check_volume_name(name)
            with contextlib.suppress(NoSuchVolume):
                return self.get(name)
        else:
            name = secrets.token_hex(32)
            labels[ANONYMOUS] = ""
        record = VolumeRecord(name, time.time(), driver, labels, options)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.dir))
        try:
            os.chmod(tmp, 0o711)
            (tmp / DATA).mkdir(mode=0o755)
            data = json.dumps(unstructure(record), indent=1).encode()
            atomic_write(tmp / RECORD, data)
            os.rename(tmp, self.dir / name)
        except BaseException:
            _remove_tree(tmp)
            raise
        self._report("create", name)
        return record

    def remove(self, name: str) -> None:
        """Out of the store at once (a rename into the trash, emptied later)."""
        self.get(name)
        self.trash.mkdir(mode=0o700, exist_ok=True)
        os.rename(self.dir / name, self.trash / f"volume-{name}-{secrets.token_hex(4)}")
        self._report("destroy", name)

    def recover(self) -> None:
        """A volume whose create was cut short (a temporary directory) is deleted."""
        for d in self.dir.iterdir():
            if d.name.startswith("."):
                log.info("removing the unfinished volume %s", d)
                _remove_tree(d)

    def size(self, name: str) -> int:
        """The bytes of its files, each hard-linked one once (Docker's count)."""
        total, seen = 0, set()
        for where, _, files in os.walk(self.source(name)):
            for f in files:
                try:
                    st = os.lstat(os.path.join(where, f))
                except OSError:
                    continue
                if st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_size
        return total


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---- copy-up: a new volume gets the image's files at its mount point -------------------


def _opaque(fd: int) -> bool:
    for attr in OPAQUE_XATTRS:
        with contextlib.suppress(OSError):
            if os.getxattr(fd, attr) == b"y":
                return True
    return False


def stacked_dirs(dirs: Iterable[str], rel: str) -> list[str]:
    """The directories (top-most first) whose merge overlay shows at ``rel`` below the
    layer directories ``dirs`` (top-most first): down to a layer where it is not a
    directory, or where it (or a directory above it) is opaque."""
    found = []
    for top in dirs:
        if not os.path.isdir(top):
            continue
        parts = [p for p in rel.split("/") if p]
        # A whiteout or a file on the way hides the layers below.
        hidden = False
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts):
                try:
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    break
                if not stat.S_ISDIR(st.st_mode):
                    hidden = True
                    break
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)  # fmt: skip
                os.close(fd)
                fd = sub
                if i == len(parts) - 1:
                    found.append(os.path.join(top, *parts))
                if _opaque(fd):
                    hidden = True
                    break
            else:
                if not parts:
                    found.append(top)
                    hidden = _opaque(fd)
        finally:
            os.close(fd)
        if hidden:
            break
    return found


def copy_up(
    layer_dirs: list[str], rel: str, dest: Path, id_map: tuple[int, int] | None = None
) -> bool:
    """Fill the empty volume directory ``dest`` with what the container's layers
    (``layer_dirs``, top-most first) hold at ``rel``, owners and modes kept, as Docker
    fills a new volume from the image.  Unpacked as an untrusted layer is (no path of it
    leaves ``dest``).  ``id_map`` (host start, count): a user-namespaced container's, to
    which the owners are shifted (its root owns an empty volume).  False when there was
    nothing to copy.  A fill under way is marked (:data:`FILLING`, beside ``dest``): one
    that a killed daemon cut short is emptied and done again."""
    marker = dest.parent / FILLING
    if marker.exists():
        log.warning("volume %s: its filling was cut short; filling it again", dest.parent.name)
        _empty(dest)
    else:
        with os.scandir(dest) as entries:
            if any(entries):
                return False
    dirs = stacked_dirs(layer_dirs, rel)
    if not dirs:
        if id_map is not None:
            os.chown(dest, id_map[0], id_map[0])
        marker.unlink(missing_ok=True)
        return False
    top = os.stat(dirs[0])
    from ._images.archive import export_merged  # tarfile and zstandard: on first use

    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    with tempfile.TemporaryFile(dir=dest.parent) as tar:
        export_merged(dirs, tar, all_xattrs=True)
        tar.seek(0)
        unpack(tar.read, str(dest))
    os.chown(dest, top.st_uid, top.st_gid)
    os.chmod(dest, stat.S_IMODE(top.st_mode))
    _copy_xattrs(dirs[0], dest)
    os.utime(dest, ns=(top.st_atime_ns, top.st_mtime_ns))
    if id_map is not None:
        _shift_owners(dest, *id_map)
    marker.unlink()
    return True


def _copy_xattrs(source: str, dest: Path) -> None:
    """The mount point's own xattrs, those an untrusted layer may set (as for what is
    below it)."""
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for attr in os.listxattr(fd):
            if kept_xattr(attr):
                with contextlib.suppress(OSError):  # gone meanwhile
                    os.setxattr(dest, attr, os.getxattr(fd, attr))
    finally:
        os.close(fd)


def _empty(directory: Path) -> None:
    """Remove what ``directory`` holds (no symlink in it is followed)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _shift_owners(top: Path, start: int, count: int) -> None:
    """Owners below ``top`` (itself too) as a user namespace mapping 0..count-1 to
    start.. sees them (links not followed; mode bits kept: chown clears set-id ones)."""

    def shift(path: str) -> None:
        st = os.lstat(path)
        uid = st.st_uid + start if st.st_uid < count else st.st_uid
        gid = st.st_gid + start if st.st_gid < count else st.st_gid
        os.lchown(path, uid, gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))

    shift(str(top))
    for where, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            shift(os.path.join(where, name))

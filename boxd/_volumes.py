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

The local driver's options are Docker's (compose's ``driver_opts``): ``type``, ``device``
and ``o``, which name a mount made on ``_data`` while a container that uses the volume
runs (:meth:`Volumes.mount`: ``type=tmpfs device=tmpfs o=size=100m``, an NFS export, a
block device's file system), as Docker's local driver mounts it at the first container's
start and unmounts it after the last one's end.  The mount's options are read as
moby/sys/mount reads them: mount flags (``ro``, ``nosuid``, ``bind``, ``rshared``, ...) and
the rest handed to the file system; ``addr=`` of an nfs or cifs mount is resolved to an
address first.  The bind of a host directory (``type=none``, ``o=bind``, ``device=DIR``)
is not mounted on ``_data``: containers mount the directory itself, and it is never filled
from an image (a fill cut short is emptied, which a host directory must never be).  A
volume with a mount is filled when empty, mounted for it, and a fill of it cut short is
left as it is (see :func:`copy_up`'s ``marked``); what ``device`` names stays when the
volume is removed, as Docker's does.  ``size`` (Docker's
quota of a volume on XFS) is refused: boxd sets no quota.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from . import _mountinfo
from ._convert import ConversionError, structure, unstructure
from ._images.unpack import kept_xattr, unpack
from ._lifecycle import error_text
from ._mounts import check_volume_name, valid_volume_name
from ._records import Volume
from ._rootfs import open_subpath
from ._store import NewerFormat, atomic_write, versioned
from ._tmpfs import MOUNT_FLAGS, MS_RDONLY
from ._units import parse_size

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
        """The host directory of a bind volume ("" for the daemon's own, mounted or not)."""
        return self.options.get("device", "") if is_bind(self.options) else ""


# Docker's local driver's keys, and those each needs beside it (its mandatoryOpts).
_OPTION_KEYS = ("type", "device", "o", "size")
_NEEDED = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

# Mount options as moby/sys/mount reads them: a flag's MS_* bit and whether it is set (the
# others are the file system's, handed on as its data).
_MS_REMOUNT, _MS_MANDLOCK, _MS_BIND, _MS_REC, _MS_SILENT = 0x20, 0x40, 0x1000, 0x4000, 0x8000
_MS_POSIXACL, _MS_UNBINDABLE, _MS_PRIVATE, _MS_SLAVE, _MS_SHARED = [1 << n for n in range(16, 21)]
_MS_I_VERSION, _MS_LAZYTIME = 1 << 23, 1 << 25
_MOUNT_FLAGS = {
    **MOUNT_FLAGS,  # ro, rw, [no]suid, [no]dev, [no]exec, sync, async, dirsync, the atimes
    "defaults": (0, True),
    "remount": (_MS_REMOUNT, True),
    "mand": (_MS_MANDLOCK, True),
    "nomand": (_MS_MANDLOCK, False),
    "bind": (_MS_BIND, True),
    "rbind": (_MS_BIND | _MS_REC, True),
    "acl": (_MS_POSIXACL, True),
    "noacl": (_MS_POSIXACL, False),
    "silent": (_MS_SILENT, True),
    "loud": (_MS_SILENT, False),
    "iversion": (_MS_I_VERSION, True),
    "noiversion": (_MS_I_VERSION, False),
    "lazytime": (_MS_LAZYTIME, True),
    "nolazytime": (_MS_LAZYTIME, False),
}
_PROPAGATIONS = {
    "private": _MS_PRIVATE,
    "rprivate": _MS_PRIVATE | _MS_REC,
    "shared": _MS_SHARED,
    "rshared": _MS_SHARED | _MS_REC,
    "slave": _MS_SLAVE,
    "rslave": _MS_SLAVE | _MS_REC,
    "unbindable": _MS_UNBINDABLE,
    "runbindable": _MS_UNBINDABLE | _MS_REC,
}
_MNT_DETACH = 2


def mount_options(text: str) -> tuple[int, int, str]:
    """``o=``'s options as moby/sys/mount parses them: (mount flags, propagation flags,
    the file system's data: the options that are not flags, in their order)."""
    flags = propagation = 0
    data = []
    for option in text.split(",") if text else []:
        if option in _PROPAGATIONS:
            propagation |= _PROPAGATIONS[option]
        elif option in _MOUNT_FLAGS:
            bit, on = _MOUNT_FLAGS[option]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(option)
    return flags, propagation, ",".join(data)


def is_bind(options: dict[str, str]) -> bool:
    """Docker's bind of a host directory, which containers mount themselves."""
    return options.get("type") == "none" and options.get("o") in ("bind", "rbind")


def check_options(driver: str, options: dict[str, str]) -> None:
    """The local driver's options, as Docker's validateOpts checks them (ValueError in
    its words, naming the option)."""
    if driver != DRIVER:
        raise NoSuchDriver(driver)
    for key in options:
        if key not in _OPTION_KEYS:
            raise ValueError(f'invalid option: "{key}"')  # Docker's
    if "size" in options:
        size = options["size"]
        if parse_size(size, what="volume option size", zero=True):
            raise ValueError(
                f"invalid volume option size={size!r}: quota size requested but no quota "
                "support (boxd sets no volume quota)"
            )
    for key, needed in _NEEDED.items():
        for other in needed if key in options else ():
            if other not in options:
                raise ValueError(f'missing required option: "{other}"')  # Docker's
    kind, device = options.get("type", ""), options.get("device", "")
    if kind == "cifs" and urllib.parse.urlsplit(device).port is not None:
        raise ValueError("port not allowed in CIFS device URL, include 'port' in 'o='")
    if is_bind(options) and (not device.startswith("/") or not os.path.isdir(device)):
        raise ValueError(f"invalid volume option device={device!r}: not an existing directory")


def mounts(record: VolumeRecord) -> bool:
    """Whether the volume's options name a mount on its ``_data`` (not a bind's)."""
    return "type" in record.options and not is_bind(record.options)


def _resolved(kind: str, device: str, data: str) -> tuple[str, str]:
    """An nfs or cifs mount's ``addr=`` (and a cifs share's host) as an address, as
    Docker's getMountOptions resolves them (the kernel takes no names there)."""
    if kind not in ("nfs", "cifs"):
        return device, data
    options = data.split(",")
    for i, option in enumerate(options):
        key, _, host = option.partition("=")
        if key == "addr" and host and not _is_ipv4(host):
            options[i] = f"addr={_address_of(host)}"
            return device, ",".join(options)
    share = urllib.parse.urlsplit(device).hostname if kind == "cifs" else None
    if share and not _is_ip(share):
        device = device.replace(share, _address_of(share), 1)
    return device, data


def _is_ipv4(text: str) -> bool:
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(text).version == 4
    return False


def _is_ip(text: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(text)
        return True
    return False


def _address_of(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None)[0][4][0])
    except OSError as exc:
        raise OSError(f"error resolving passed in network volume address {host!r}: {exc}") from None


def _mount(source: str, target: str, kind: str, flags: int, data: str) -> None:
    import ctypes  # only for volumes with a mount

    libc = ctypes.CDLL(None, use_errno=True)
    args = [os.fsencode(source), os.fsencode(target), kind.encode(), flags, data.encode()]
    if libc.mount(*args) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _unmount(target: Path) -> None:
    """Unmount ``target``; one still busy (a process of the host in it) is detached."""
    import ctypes

    umount2 = ctypes.CDLL(None, use_errno=True).umount2
    if umount2(os.fsencode(target), 0) == 0:
        return
    if ctypes.get_errno() == errno.EBUSY and umount2(os.fsencode(target), _MNT_DETACH) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:  # EINVAL: not mounted (any more)
        raise OSError(ctypes.get_errno(), f"unmount {target}: {os.strerror(ctypes.get_errno())}")


class VolumeMountError(ValueError):
    """A volume's mount failed at a container's start (Docker's words)."""


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
        self.mounted: set[str] = set()  # the volumes whose mount is on their _data

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
        """Out of the store at once (a rename into the trash, emptied later), its mount
        undone first: the trash's deletion never reaches into a mounted file system."""
        self.get(name)
        self.unmount(name)
        self.trash.mkdir(mode=0o700, exist_ok=True)
        os.rename(self.dir / name, self.trash / f"volume-{name}-{secrets.token_hex(4)}")
        self._report("destroy", name)

    def recover(self) -> None:
        """A volume whose create was cut short (a temporary directory) is deleted; the
        mounts a last daemon left on volumes' ``_data`` are known as this one's (the
        supervisor undoes those no container uses)."""
        points = set(_mountinfo.mount_points())
        for d in self.dir.iterdir():
            if d.name.startswith("."):
                log.info("removing the unfinished volume %s", d)
                _remove_tree(d)
            elif os.path.realpath(d / DATA) in points:
                self.mounted.add(d.name)

    def mount(self, name: str) -> None:
        """Mount what the volume's options name on its ``_data``, unless it is there
        (blocks: a worker thread's; VolumeMountError in Docker's words)."""
        if name in self.mounted:
            return
        options = self.get(name).options
        kind, given = options["type"], options.get("o", "")
        flags, propagation, data = mount_options(given)
        target = self.path(name)
        device = options["device"]
        try:
            device, data = _resolved(kind, device, data)
            if not flags & _MS_REMOUNT or data:
                _mount(device, str(target), kind, flags, data)
            self.mounted.add(name)
            if propagation:
                _mount("", str(target), "", propagation, "")
            if flags & (_MS_BIND | MS_RDONLY) == _MS_BIND | MS_RDONLY:  # a read-only bind
                _mount("", str(target), "", flags | _MS_REMOUNT, "")
        except OSError as exc:
            password = next((o[9:] for o in given.split(",") if o.startswith("password=")), "")
            shown = data.replace(f"password={password}", "password=********") if password else data
            why = exc.strerror or str(exc)
            with contextlib.suppress(OSError):
                self.unmount(name)
            raise VolumeMountError(
                f"error while mounting volume '{target}': failed to mount local volume: mount "
                f"{device}:{target}, flags: {flags:#x}, data: {shown}: {why}"
            ) from None

    def unmount(self, name: str) -> None:
        """Undo the volume's mount, if it has one (blocks)."""
        if name in self.mounted:
            _unmount(self.path(name))
            self.mounted.discard(name)

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
    layer_dirs: list[str],
    rel: str,
    dest: Path,
    id_map: tuple[int, int] | None = None,
    *,
    marked: bool = True,
    volume_dir: Path | None = None,
) -> bool:
    """Fill the empty volume directory ``dest`` with what the container's layers
    (``layer_dirs``, top-most first) hold at ``rel``, owners and modes kept, as Docker
    fills a new volume from the image.  Unpacked as an untrusted layer is (no path of it
    leaves ``dest``).  ``id_map`` (host start, count): a user-namespaced container's, to
    which the owners are shifted (its root owns an empty volume).  False when there was
    nothing to copy.  A fill under way is marked (:data:`FILLING`, beside ``dest``): one
    that a killed daemon cut short is emptied and done again; not ``marked`` (a volume with
    a mount: a share's files are never emptied here; a volume's subpath), it is left as it
    is.  ``volume_dir``: the volume's own directory, where the mark and the fill's
    temporary file go (default: ``dest``'s parent; a subpath's ``dest`` is a
    descriptor's /proc path)."""
    volume_dir = volume_dir or dest.parent
    marker = volume_dir / FILLING
    if marked and marker.exists():
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
        if marked:
            marker.unlink(missing_ok=True)
        return False
    top = os.stat(dirs[0])
    from ._images.archive import export_merged  # tarfile and zstandard: on first use

    if marked:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    with tempfile.TemporaryFile(dir=volume_dir) as tar:
        export_merged(dirs, tar, all_xattrs=True)
        tar.seek(0)
        unpack(tar.read, str(dest))
    os.chown(dest, top.st_uid, top.st_gid)
    os.chmod(dest, stat.S_IMODE(top.st_mode))
    _copy_xattrs(dirs[0], dest)
    os.utime(dest, ns=(top.st_atime_ns, top.st_mtime_ns))
    if id_map is not None:
        _shift_owners(dest, *id_map)
    if marked:
        marker.unlink(missing_ok=True)
    return True


def fill_subpath(
    volume: Volume,
    layer_dirs: list[str],
    rel: str,
    volume_dir: Path,
    id_map: tuple[int, int] | None = None,
) -> bool:
    """A ``volume-subpath`` mount's directory filled at the container's create as Docker
    fills it: when it is empty and the image holds something at the mount point (see
    :func:`copy_up`; never marked nor emptied: it is the volume's, not one the fill
    made).  Looked up as its bind is (see :func:`open_subpath`) and filled through that
    descriptor; one that is not there, is a file or leaves the volume is left to the
    start, which refuses it in Docker's words."""
    if not stacked_dirs(layer_dirs, rel):
        return False
    try:
        fd = open_subpath(volume)
    except (OSError, ValueError):
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            return False
        dest = Path(f"/proc/self/fd/{fd}")
        return copy_up(layer_dirs, rel, dest, id_map, marked=False, volume_dir=volume_dir)
    finally:
        os.close(fd)


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
    start.. sees them (mode bits kept: chown clears set-id ones).  Each entry is taken
    from its directory's descriptor and changed through one of its own, never through a
    path a container sharing the volume could change into a symlink meanwhile."""

    def shift(fd: int, name: str = "", dir_fd: int | None = None) -> None:
        st = os.fstat(fd)
        uid = st.st_uid + start if st.st_uid < count else st.st_uid
        gid = st.st_gid + start if st.st_gid < count else st.st_gid
        if stat.S_ISLNK(st.st_mode):  # the link itself, which is never followed
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        else:
            os.chown(f"/proc/self/fd/{fd}", uid, gid)
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode))

    top_fd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        shift(top_fd)
        for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=top_fd):
            for name in (*dirs, *files):
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    shift(fd, name, dir_fd)
                finally:
                    os.close(fd)
    finally:
        os.close(top_fd)

"""``diff``: what a container changed in its root filesystem, read from its upper layers.

Each overlay's upper directory holds what the container wrote over one image layer: a file
or directory there is Added (nothing at that path in the layer below) or Changed; a
whiteout (a 0:0 character device) is a Deleted path, and so is what the layers below hold
in a directory the container removed and made again (an opaque one), as Docker, which
compares the container's file system with its image's, lists them.  A directory the
container only wrote inside shows as Changed, as Docker shows it, and one that is just a
copy-up of an unchanged directory with nothing reported below it is left out.  The files
boxd itself writes at each start (/etc/hostname, /etc/hosts, /etc/resolv.conf,
/.dockerenv) are not the container's changes: Docker binds its own over the image
(/.dockerenv: in its init layer) and does not list them either; nor are the directories
boxd makes for its mounts and those files in an image that has none (INIT_DIRS).

Nothing here follows a symlink: entries are read with lstat below the upper directory,
and a lower layer is only asked whether a path exists in it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

import attrs

from ._images.unpack import OPAQUE_XATTR, own_ids, upper_opaque_xattr
from ._rootfs import Image, _container_view

RUNTIME_FILES = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv"})
# The directories boxd makes in a container's root when its image has none (a FROM scratch
# one): the mount points of /dev, /proc and /sys, and /etc for the files above.  Docker
# makes them in its init layer, below the container's own: they are no change of the
# container's (a change below one is, the directory then shown as changed, not added) and
# no part of its commit.
INIT_DIRS = frozenset({"/dev", "/proc", "/sys", "/etc"})


@attrs.frozen
class Change:
    kind: str  # "A", "C" or "D", as `docker diff` prints them
    path: str


def _opaque(path: str, attr: str) -> bool:
    try:
        return os.getxattr(path, attr, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lower_stat(lowers: Sequence[str], rel: str) -> os.stat_result | None:
    for lower in lowers:
        try:
            return os.lstat(os.path.join(lower, rel))
        except OSError:
            continue
    return None


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lower_names(lowers: Sequence[str], rel: str) -> set[str]:
    """What the image shows in its directory ``rel``: the names in the layers' directories,
    top-most first, less those a layer above whited out, down to an opaque one."""
    names: set[str] = set()
    hidden: set[str] = set()
    for lower in lowers:
        path = os.path.join(lower, rel)
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if entry.name in hidden or entry.name in names:
                continue
            if _whiteout(entry.stat(follow_symlinks=False)):
                hidden.add(entry.name)
            else:
                names.add(entry.name)
        if _opaque(path, OPAQUE_XATTR):
            break
    return names


def changes(image: Image, container_dir: Path, *, userns: bool = False) -> list[Change]:
    """The container's changes, sorted by path (``userns``: its overlays take
    ``userxattr``, and mark opaque directories with their ``user.`` xattr, and its
    upper directories' owners are host ids, read back as its own)."""
    opaque = upper_opaque_xattr(userns)
    id_map = None
    if userns:
        from ._plan import id_range

        id_map = id_range()
    view = _container_view(image, container_dir)
    targets = {target for target, _ in view}
    found: list[Change] = []

    def walk(target: str, upper: str, lowers: Sequence[str], rel: str) -> bool:
        """Report below ``rel``; whether anything was."""
        try:
            entries = sorted(os.scandir(os.path.join(upper, rel)), key=lambda e: e.name)
        except OSError:
            return False
        reported = False
        for entry in entries:
            sub = posixpath.join(rel, entry.name)
            path = posixpath.join(target, sub)
            if path in targets or path in RUNTIME_FILES:
                continue  # another layer's overlay covers it; boxd's own file
            st = entry.stat(follow_symlinks=False)
            if _whiteout(st):
                found.append(Change("D", path))
                reported = True
                continue
            below = None if _opaque(entry.path, opaque) else _lower_stat(lowers, sub)
            if below is None and entry.is_dir(follow_symlinks=False):
                # Made again over the image's directory: what that held is gone.
                gone = _lower_names(lowers, sub) - set(os.listdir(entry.path))
                for name in sorted(gone):
                    if (deleted := posixpath.join(path, name)) not in targets:
                        found.append(Change("D", deleted))
                        reported = True
            new = below is None and _lower_stat(lowers, sub) is None
            if new and path in INIT_DIRS and entry.is_dir(follow_symlinks=False):
                if walk(target, upper, (), sub):  # as over Docker's init layer's
                    found.append(Change("C", path))
                    reported = True
                continue
            if new:
                found.append(Change("A", path))
                reported = True
                if entry.is_dir(follow_symlinks=False):
                    walk(target, upper, (), sub)  # all of it is new
                continue
            if not entry.is_dir(follow_symlinks=False):
                found.append(Change("C", path))
                reported = True
                continue
            inner = walk(target, upper, () if below is None else lowers, sub)
            same = below is not None and (stat.S_IMODE(st.st_mode), *own_ids(st, id_map)) == (
                stat.S_IMODE(below.st_mode),
                below.st_uid,
                below.st_gid,
            )
            if inner or not same:
                found.append(Change("C", path))
                reported = True
        return reported

    for target, (upper, *lowers) in view:
        walk(target, upper, lowers, "")
    return sorted(found, key=lambda c: c.path)

"""Root filesystems: the image ``default``, user root directories, and the mount table.

An :class:`Image` is an ordered stack of read-only lower directories, each for one place in
the container (``/``, ``/usr`` ...).  :func:`container_mounts` turns it into the
:class:`~boxd._native.MountOp` table the child runs in its own mount namespace before
pivot_root: one overlay per layer (an overlay cannot see mounts inside its lower
directory, so ``/usr`` gets an overlay of its own on top of the root overlay), then /proc,
/sys, /dev and the user's volumes and tmpfs mounts.  Nothing is mounted on the host: the
mounts live and die with the container's mount namespace.

The image ``default`` is a small skeleton (``rootfs/skel``: /etc with passwd, group, hosts
...) plus the host's /usr (and /bin, /sbin, /lib* where they are real directories) as
read-only lowers, so a container has the host's shell, coreutils and python3 and sees
nothing else of the host.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import posixpath
import stat
import sys
from collections import deque
from collections.abc import Callable, Container, Iterator, Mapping, Sequence

from . import _syscalls
from ._atomic import atomic_write
from ._inroot import openat2, read_regular
from ._mountinfo import propagation_of
from ._native import MAX_MOUNT_FDS, MountKind, MountOp, Native, SpawnError, SpawnPlan, Stage
from ._record import evolve, frozen
from ._tmpfs import PROPAGATION_BITS, PROPAGATION_FLAGS, parse_tmpfs, shm_data
from ._units import split_volume

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: boxd-runtime create does without typing
if TYPE_CHECKING:
    from importlib.resources.abc import Traversable
    from pathlib import Path
    from typing import Any

    from ._records import ImageMount, Volume

__all__ = [
    "Image",
    "ImageError",
    "Layer",
    "Volume",
    "cgroup_ops",
    "check_command",
    "container_dirs",
    "container_mounts",
    "container_uppers",
    "default_created",
    "look_up",
    "parse_volume",
    "prepare_default_image",
    "read_container_file",
    "resolve_image",
    "stacked",
    "written_uppers",
]


def __getattr__(name: str) -> Any:
    # Volume, on first use: boxd-runtime's create checks a command in a bundle without
    # the container records (attrs classes, ~20 ms to import).
    if name == "Volume":
        from ._records import Volume

        return Volume
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
# A volume's propagation (Docker's word) -> its bind's flags; "" is rprivate, the default.
_PROPAGATION = {"": PROPAGATION_FLAGS["rprivate"], **PROPAGATION_FLAGS}
_SHARED = ("rshared", "shared")
# What a volume's propagation needs of the host mount its source is on (Docker's check and
# words): a peer group to join, or one to receive from.
_NEEDS = {
    "rshared": (("shared:",), "a shared mount"),
    "shared": (("shared:",), "a shared mount"),
    "rslave": (("shared:", "master:"), "a shared or slave mount"),
    "slave": (("shared:", "master:"), "a shared or slave mount"),
}

_DEFAULT = "default"
# Top-level host directories the default image takes from the host: a symlink (Debian's
# merged /usr) is reproduced as the same symlink, a real directory becomes a lower layer.
_HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Empty directories of the default image: mount points and the usual writable places.
_IMAGE_DIRS = {
    "proc": 0o555,
    "sys": 0o555,
    "dev": 0o755,
    "run": 0o755,
    "tmp": 0o1777,
    "root": 0o700,
    "var": 0o755,
    "var/tmp": 0o1777,
}
# Bumped whenever the layout built by _build_default changes, so old builds are not reused.
_LAYOUT_VERSION = b"1"
_MAX_SYMLINKS = 40
_PAGE = 4096  # overlayfs takes its mount options in one page
# What every container's overlay is mounted with whatever the host's overlay module
# defaults to: its upper directory then holds all it changed, which diff, commit, build
# and export read.  A redirect (a renamed directory of a layer) or a metacopy (a file whose
# owner or mode changed, its data left below) would leave it out.  Docker reads such a
# container through its mount instead (its "naive diff"); userxattr, a user-namespaced
# container's, turns both off itself and refuses them given.  index=off as Docker's.
_OVERLAY_OPTIONS = ",index=off,redirect_dir=off,metacopy=off"
_OVERLAY_USERNS_OPTIONS = ",index=off,userxattr"
# Characters that overlayfs' option string cannot carry unescaped.
_OVERLAY_UNSAFE = frozenset(",:\\")

_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
_DEV_LINKS = (
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
_TTY_GID = 5


class ImageError(Exception):
    """An image reference that cannot be used; the message names the bad value."""


@frozen
class Layer:
    """A read-only host directory ``lower`` shown at ``target`` in the container, over the
    directories ``below`` (an image's deeper layers, top-most first)."""

    lower: str
    target: str
    below: tuple[str, ...] = ()

    @property
    def lowers(self) -> tuple[str, ...]:
        return (self.lower, *self.below)


@frozen
class Image:
    """A root filesystem: layers ordered from ``/`` outwards (a parent before its children)."""

    name: str
    layers: tuple[Layer, ...]


# --- the image `default` -------------------------------------------------------------------


def _skeleton() -> Traversable:
    """The skeleton shipped as package data ``boxd.skel``, or ``rootfs/skel`` in a checkout.
    An installed package's directory is used as it is: importlib.resources (with zipfile,
    ~0.5 MB of the daemon's memory) only for a package that is not one (a zip)."""
    try:
        __import__("boxd.skel")
    except ModuleNotFoundError:
        from pathlib import Path  # here, as below: boxd-runtime create does without pathlib

        source = Path(__file__).resolve().parent.parent / "rootfs" / "skel"
        if not source.is_dir():
            raise ImageError(f"the skeleton of image default is missing: {source}") from None
        return source
    for directory in sys.modules["boxd.skel"].__path__:
        if os.path.isdir(directory):
            from pathlib import Path

            return Path(directory)
    import importlib.resources  # here: boxd-runtime create checks commands, needs no image

    return importlib.resources.files("boxd.skel")


def _walk(node: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    """(relative path, node) of every file and directory below ``node``, sorted."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in ("__pycache__", "__init__.py"):
            continue
        rel = f"{prefix}{child.name}"
        yield rel, child
        if child.is_dir():
            yield from _walk(child, rel + "/")


def _host_etc_links() -> list[tuple[str, str]]:
    """The host's /etc/alternatives symlinks that /usr/bin resolves through."""
    try:
        names = sorted(os.listdir("/etc/alternatives"))
    except FileNotFoundError:
        return []
    links = []
    for name in names:
        path = os.path.join("/etc/alternatives", name)
        if os.path.islink(path):
            links.append((name, os.readlink(path)))
    return links


def _read_optional(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _host_top(name: str) -> tuple[str, str]:
    """("link", target), ("dir", "") or ("absent", "") for the host's ``/name``."""
    path = "/" + name
    if os.path.islink(path):
        return "link", os.readlink(path)
    if os.path.isdir(path):
        return "dir", ""
    return "absent", ""


def _host_state() -> tuple[object, ...]:
    """What changes whenever an input of :func:`_fingerprint` on the host does: package
    tools replace /etc/alternatives links and /etc/ld.so.cache by renames, and a top-level
    link changes /'s directory."""
    found: list[object] = []
    for path in ("/etc/alternatives", "/etc/ld.so.cache", "/"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))
    return tuple(found)


# The last fingerprint and the host state it was made in: a run of `default` stats three
# paths instead of reading the skeleton, the alternatives and the loader cache again.
_fingerprinted: dict[tuple[object, ...], str] = {}


def _fingerprint(skel: Traversable) -> str:
    """A digest of everything the default image is built from."""
    state = (str(skel), *_host_state())
    known = _fingerprinted.get(state)
    if known is None:
        known = _fingerprint_now(skel)
        _fingerprinted.clear()
        _fingerprinted[state] = known
    return known


def _fingerprint_now(skel: Traversable) -> str:
    import hashlib

    h = hashlib.sha256(_LAYOUT_VERSION)
    for rel, node in _walk(skel):
        h.update(f"\0{rel}\0".encode())
        if node.is_file():
            h.update(node.read_bytes())
    for name, target in _host_etc_links():
        h.update(f"\0alt\0{name}\0{target}".encode())
    h.update(b"\0cache\0" + (_read_optional("/etc/ld.so.cache") or b""))
    for name in _HOST_DIRS:
        h.update("\0top\0{}\0{}\0{}".format(name, *_host_top(name)).encode())
    return h.hexdigest()[:16]


def default_created() -> float:
    """When image ``default`` was made, as Docker shows an image's creation: the newest
    modification time of what it is built from (the skeleton's files as installed, the
    host's /etc/alternatives and /etc/ld.so.cache, which package installs rewrite), so a
    build shows the same time each time it is asked, and a newer build a newer one."""
    from pathlib import Path

    times = [0.0]
    for _, node in _walk(_skeleton()):
        # Files only (importing the package adds __pycache__ to its directory); a zipped
        # package's files carry no time of their own.
        if isinstance(node, Path) and node.is_file():
            times.append(node.stat().st_mtime)
    for path in ("/etc/alternatives", "/etc/ld.so.cache"):
        with contextlib.suppress(FileNotFoundError):
            times.append(os.stat(path).st_mtime)
    return max(times)


def _build_default(skel: Traversable, dest: Path) -> None:
    for rel, node in _walk(skel):
        if node.is_dir():
            (dest / rel).mkdir(mode=0o755)
        else:
            (dest / rel).write_bytes(node.read_bytes())
            os.chmod(dest / rel, 0o644)
    etc = dest / "etc"
    etc.mkdir(mode=0o755, exist_ok=True)
    alternatives = etc / "alternatives"
    alternatives.mkdir(mode=0o755)
    for name, target in _host_etc_links():
        (alternatives / name).symlink_to(target)
    cache = _read_optional("/etc/ld.so.cache")
    if cache is not None:
        (etc / "ld.so.cache").write_bytes(cache)
        os.chmod(etc / "ld.so.cache", 0o644)
    (etc / "mtab").symlink_to("/proc/self/mounts")
    for name in _HOST_DIRS:
        kind, target = _host_top(name)
        if kind == "link":
            (dest / name).symlink_to(target)
        elif kind == "dir":
            (dest / name).mkdir(mode=0o755)
    for rel, mode in _IMAGE_DIRS.items():
        (dest / rel).mkdir(exist_ok=True)
        os.chmod(dest / rel, mode)
    os.chmod(dest, 0o755)


def prepare_default_image(images_dir: Path) -> Path:
    """Build the root layer of ``default`` under ``images_dir`` unless it is there; return it.

    The build is named by a digest of its inputs (the skeleton, the host's
    /etc/alternatives and /etc/ld.so.cache, the host's top-level layout), so a changed host
    gets a fresh build and running containers keep the one they were started on.  It is
    built in a temporary directory and renamed into place, so a reader never sees half.
    """
    skel = _skeleton()
    images_dir.mkdir(parents=True, exist_ok=True)
    final = images_dir / f"{_DEFAULT}-{_fingerprint(skel)}"
    if final.is_dir():
        return final
    import shutil
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix=f".{_DEFAULT}-", dir=images_dir))
    try:
        _build_default(skel, tmp)
        try:
            tmp.rename(final)
        except OSError as e:
            # Someone else finished the same build first: theirs is as good as ours.
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _default_layers(root: Path) -> tuple[Layer, ...]:
    layers = [Layer(str(root), "/")]
    for name in _HOST_DIRS:
        if _host_top(name)[0] == "dir":
            layers.append(Layer("/" + name, "/" + name))
    return tuple(layers)


def stacked(base: Image, name: str, lowers: Sequence[str]) -> Image:
    """An image whose layer directories ``lowers`` (top-most first, each a whole root:
    ``usr/bin/x``) lie over ``base`` (``default``): each of base's overlays gets, above its
    own lowers, every layer's subdirectory for its target that is a directory (not
    followed through a symlink; overlay refuses a missing lowerdir), so a whiteout or an
    opaque directory in a layer hides the host's file there too."""
    layers = []
    for layer in base.layers:
        if layer.target == "/":
            own = list(lowers)
        else:
            rel = layer.target.strip("/")
            own = [f"{d}/{rel}" for d in lowers if _is_real_dir(f"{d}/{rel}")]
        dirs = (*own, *layer.lowers)
        layers.append(Layer(dirs[0], layer.target, below=dirs[1:]))
    return Image(name, tuple(layers))


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


# --- resolving references and paths inside an image ----------------------------------------


def _check_overlay_path(path: str, what: str) -> None:
    bad = sorted(_OVERLAY_UNSAFE.intersection(path))
    if bad:
        raise ImageError(f"{what} {path} contains {''.join(bad)!r}, which overlayfs cannot take")


# A view of an image for path lookups: (target, directories searched in order).
_View = tuple[tuple[str, tuple[str, ...]], ...]


def _image_view(image: Image) -> _View:
    return tuple([(layer.target, layer.lowers) for layer in image.layers])


def _layer_dirs(view: _View, path: str) -> tuple[tuple[str, ...], str]:
    """The host directories (upper first) of the layer holding container path ``path``
    (normalized, absolute), and the path relative to them."""
    best: tuple[str, tuple[str, ...]] = ("", ())
    for target, dirs in view:
        inside = path == target or path.startswith(target.rstrip("/") + "/")
        if inside and len(target) >= len(best[0]):
            best = (target, dirs)
    return best[1], path[len(best[0]) :].lstrip("/")


def _host_paths(view: _View, path: str) -> tuple[str, ...]:
    """The host paths that may hold container path ``path`` (normalized, absolute)."""
    dirs, rel = _layer_dirs(view, path)
    return tuple([os.path.join(d, rel) if rel else d for d in dirs])


# What a table's lookups found at container paths (see _Table): lstat results, by path.
_Known = dict[str, os.stat_result | None]


def _lookup(
    view: _View, path: str, known: _Known | None = None
) -> tuple[str, os.stat_result | None]:
    """Resolve ``path`` as the container will, following symlinks inside the image only.

    Returns the resolved container path and the lstat of what is there (None: nothing, in
    which case the rest of the path is taken literally, up to a layer's own target).  A
    symlink never leads out of the image: ``..`` stops at the container's root and absolute
    targets restart there.
    ``known``: what lookups made just before found (one table's: ``/`` once, not per
    path), and where this one's findings go.
    """
    parts = deque(p for p in path.split("/") if p)
    cur = "/"
    hops = 0
    st: os.stat_result | None = _lstat_at(view, cur, known)
    while parts:
        name = parts.popleft()
        if name == ".":
            continue
        if name == "..":
            cur = posixpath.dirname(cur)
            st = _lstat_at(view, cur, known)
            continue
        nxt = posixpath.join(cur, name)
        if st is None:
            # Nothing here in the layer below, but a layer mounted at this very path (its
            # mount point made for it, as for a bind below a directory the image lacks).
            cur = nxt
            st = _lstat_at(view, cur, known) if any(t == cur for t, _ in view) else None
            continue
        st = _lstat_at(view, nxt, known)
        if st is None or not stat.S_ISLNK(st.st_mode):
            cur = nxt
            continue
        hops += 1
        if hops > _MAX_SYMLINKS:
            raise ImageError(f"too many levels of symbolic links in the image at {path}")
        link = next(os.readlink(h) for h in _host_paths(view, nxt) if os.path.lexists(h))
        if link.startswith("/"):
            cur = "/"
            st = _lstat_at(view, cur, known)
        parts.extendleft(reversed([p for p in link.split("/") if p]))
    return cur, st


def _lstat_at(view: _View, path: str, known: _Known | None) -> os.stat_result | None:
    """The lstat of container path ``path`` in its top-most layer (None: nothing there)."""
    if known is None:
        return _lstat_first(_host_paths(view, path))
    try:
        return known[path]
    except KeyError:
        st = known[path] = _lstat_first(_host_paths(view, path))
        return st


def _lstat_first(paths: Sequence[str]) -> os.stat_result | None:
    for p in paths:
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        # An overlay whiteout (a 0/0 character device) hides what the layers below hold.
        return None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else st
    return None


def _has_command(root: str) -> bool:
    """Whether the directory holds an executable regular file anywhere."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
                return True
    return False


def _container_view(image: Image, container_dir: Path) -> _View:
    """The container's root filesystem as its overlays show it: each layer's upper
    directory over the image's."""
    return tuple(
        [
            (layer.target, (_layer_base(container_dir, layer.target) + "/upper", *layer.lowers))
            for layer in image.layers
        ]
    )


def _lower_links(base: str, lower_dirs: Sequence[str]) -> list[str]:
    """The names an overlay mounted from directory ``base`` gives its lower directories:
    symlinks ``l/0``, ``l/1``, ... there (made at a container's first start), so that the
    overlay's options, which the container reads in /proc/self/mountinfo, name no host
    path (the daemon's root, the image's place), and a deep image's fit overlay's one
    page of options (Docker's ``l/`` names do that much)."""
    names = []
    for n, target in enumerate(lower_dirs):
        link = f"{base}/l/{n}"
        try:
            if os.readlink(link) != target:
                os.unlink(link)
                os.symlink(target, link)
        except FileNotFoundError:
            os.makedirs(f"{base}/l", exist_ok=True)
            os.symlink(target, link)
        names.append(f"l/{n}")
    return names


def _layer_base(container_dir: Path, target: str) -> str:
    """``fs/<layer>`` of the container directory: its upper and work directories' parent
    (a string: pathlib's ``/`` costs several microseconds each, on every start)."""
    return f"{container_dir}/{_layer_dir(target)}"


def read_container_file(
    image: Image, container_dir: Path, path: str, known: _Known | None = None
) -> bytes | None:
    """A regular file of a container's root filesystem, as the container sees it without
    its volumes and tmpfs mounts (where Docker reads /etc/passwd), or None when it is
    missing or not a regular file.  Symlinks are followed inside the image only
    (:func:`_lookup`), and the file is opened in its layer with RESOLVE_IN_ROOT, so
    nothing the image or the container wrote makes the daemon read a host file.
    ``known``: lookups shared with others of the same start (see :func:`look_up`)."""
    view = _container_view(image, container_dir)
    resolved, st = _lookup(view, path, known)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    dirs, rel = _layer_dirs(view, resolved)
    for d in dirs:
        if os.path.isdir(d):
            data = read_regular(d, rel)
            if data is not None:
                return data
    return None


def look_up(image: Image, container_dir: Path, paths: Sequence[str], known: _Known) -> None:
    """Look up container paths ahead (a start's worker thread, for the mount table the
    event loop then builds: :func:`container_mounts` with ``known``); a path that cannot
    be resolved is left for the table to report."""
    view = _container_view(image, container_dir)
    for path in paths:
        with contextlib.suppress(ImageError):
            _lookup(view, path, known)


def container_dirs_at(image: Image, container_dir: Path, path: str) -> tuple[list[str], str]:
    """The host directories (top-most first: the container's upper, then the image's) of
    the layer holding container path ``path``, symlinks resolved inside the image, and
    the path relative to them (a volume's copy-up reads them)."""
    view = _container_view(image, container_dir)
    resolved, _ = _lookup(view, posixpath.normpath(path))
    dirs, rel = _layer_dirs(view, resolved)
    return list(dirs), rel


def is_file_at(image: Image, container_dir: Path, path: str) -> bool:
    """Whether something other than a directory is at container path ``path`` (symlinks
    resolved inside the image), where no volume can go."""
    _resolved, st = _lookup(_container_view(image, container_dir), posixpath.normpath(path))
    return st is not None and not stat.S_ISDIR(st.st_mode)


def own_file_at(image: Image, container_dir: Path, path: str) -> str:
    """The host path of the container's own copy of the regular file at container path
    ``path`` (symlinks resolved inside the image): in its layer's upper directory, where a
    start writes /etc/hosts and the like; "" while it has none (never started)."""
    view = _container_view(image, container_dir)
    try:
        resolved, st = _lookup(view, posixpath.normpath(path))
    except ImageError:
        return ""
    dirs, rel = _layer_dirs(view, resolved)
    if st is None or not stat.S_ISREG(st.st_mode) or not dirs:
        return ""
    own = f"{dirs[0]}/{rel}"
    return own if os.path.isfile(own) and not os.path.islink(own) else ""


def resolve_image(ref: str, images_dir: Path) -> Image:
    """The image ``default``, or a root filesystem directory given by path."""
    if ref == _DEFAULT:
        root = prepare_default_image(images_dir)
        _check_overlay_path(str(root), "image directory")
        return Image(_DEFAULT, _default_layers(root))
    if not ref:
        raise ImageError("image reference is empty (use 'default' or a directory)")
    path = os.path.abspath(ref)
    if not os.path.exists(path):
        raise ImageError(f"image {ref} is not 'default' and no such directory: {path}")
    if not os.path.isdir(path):
        raise ImageError(f"image {ref} is not a directory: {path}")
    _check_overlay_path(path, "image directory")
    image = Image(path, (Layer(path, "/"),))
    _resolved, st = _lookup(_image_view(image), "/bin/sh")
    if not (st is not None and stat.S_ISREG(st.st_mode)) and not _has_command(path):
        raise ImageError(f"image {path} has no /bin/sh and no executable file")
    return image


def resolve_in_image(image: Image, path: str) -> tuple[str, bool]:
    """Container path ``path`` (absolute) as the container resolves it, symlinks followed
    inside the image only, and whether anything is there."""
    resolved, st = _lookup(_image_view(image), path)
    return resolved, st is not None


def check_command(image: Image, argv0: str, search_path: Sequence[str], cwd: str = "/") -> None:
    """Fail early, before anything is created, when ``argv0`` cannot run in ``image``.

    Raises the :class:`~boxd._native.SpawnError` that the spawn itself would raise, so a
    caller maps both the same way (127 not found, 126 not executable).
    """
    view = _image_view(image)
    if "/" in argv0:
        candidates = [posixpath.join(cwd, argv0)]
    else:
        candidates = [posixpath.join(d, argv0) for d in search_path if d.startswith("/")]
    err = errno.ENOENT
    for candidate in candidates:
        _path, st = _lookup(view, candidate)
        if st is None:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return
        err = errno.EACCES
    raise SpawnError(Stage.EXEC, err, f"exec {argv0}", argv0)


# --- volumes and the mount table -----------------------------------------------------------


def _container_path(path: str, what: str) -> str:
    """A normalized absolute container path where a mount may go."""
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} must be an absolute path")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = norm[1:]
    if norm == "/":
        raise ValueError(f"{what} {path!r} would cover the container's root")
    # /proc: its masked paths and the /proc view's files must stay.  /sys takes a bind
    # over the container's read-only sysfs, as Docker's does (a monitor's -v /sys:/sys:ro,
    # systemd's -v /sys/fs/cgroup:/sys/fs/cgroup with --cgroupns host).
    if norm == "/proc" or norm.startswith("/proc/"):
        raise ValueError(f"{what} {path!r} is inside /proc")
    return norm


def parse_volume(spec: str) -> Volume:
    """``HOST:CONTAINER[:OPTIONS]`` -> :class:`Volume` (see :func:`_units.split_volume`);
    HOST must be an existing directory."""
    host, container, options = split_volume(spec)
    host = os.path.abspath(host)
    if not os.path.isdir(host):
        raise ValueError(f"volume {spec!r}: host directory {host} does not exist")
    container = _container_path(container, f"volume {spec!r}: container path")
    from ._records import Volume

    return Volume(
        host,
        container,
        bool(options.get("read_only", False)),
        bool(options.get("noexec", False)),
        propagation=str(options.get("propagation", "")),
    )


def _layer_dir(target: str) -> str:
    """``fs/<layer>`` relative to the container directory, for the overlay at ``target``."""
    return "fs/" + ("root" if target == "/" else target.strip("/").replace("/", "-"))


def layer_dirs(image: Image) -> tuple[str, ...]:
    """The directories (``fs/root``, ...) of a container's overlays, relative to its own."""
    return tuple([_layer_dir(layer.target) for layer in image.layers])


def container_uppers(image: Image, container_dir: Path) -> list[tuple[str, Path, tuple[str, ...]]]:
    """(target, upper directory, lower directories) of each of the container's overlays,
    ``/`` first: what it wrote in each over what (commit's and a build step's layer)."""
    return [
        (layer.target, container_dir / _layer_dir(layer.target) / "upper", layer.lowers)
        for layer in image.layers
    ]


def written_uppers(container_dir: Path) -> list[Path]:
    """The upper directories of every overlay the container had (none before its first
    run), whatever its image is now: what it wrote (Docker's SizeRw)."""
    return sorted(container_dir.glob(_layer_dir("*") + "/upper"))


def root_upper(container_dir: Path) -> Path:
    """The overlay upper directory of the container's root layer (``/``): what it wrote
    there (export's top, Docker's SizeRw)."""
    return container_dir / _layer_dir("/") / "upper"


class _Table:
    """Builds the mount table.  Targets are container paths, resolved here through the
    image's symlinks (to know which directories to create) and again by the child, inside
    the root, when it runs the step."""

    def __init__(self, view: _View, known: _Known | None = None) -> None:
        self.view = view
        self.ops: list[MountOp] = []
        self._known: _Known = {} if known is None else known  # what lookups found

    def resolve(self, path: str) -> str:
        """Where a mount on container path ``path`` really lands (symlinks in the image
        followed inside the image, so no mount or mkdir can land outside the rootfs)."""
        return _lookup(self.view, path, self._known)[0]

    def mkdirs(self, path: str, mode: int = 0o755) -> None:
        self.ops += _mkdir_ops(path, mode)

    def add(
        self,
        kind: MountKind,
        path: str,
        *,
        source: str = "",
        fstype: str = "",
        flags: int = 0,
        data: str = "",
        mode: int = 0,
        dev: int = 0,
    ) -> None:
        self.ops.append(MountOp(kind, path, source, fstype, flags, data, mode, dev))


_MAX_LINKS = 40  # symlinks followed in one lookup, as the kernel's


def image_sources(lowers: Sequence[str], subpath: str) -> tuple[str, ...]:
    """What overlayfs shows at ``subpath`` of the image layers ``lowers`` (top-most first):
    the directories it merges there, top-most first, or the one file (``lowers`` for the
    image's root).  A layer's whiteout or opaque directory hides what is below it, as in
    the container's own root.  A symlink on the way is followed inside the image as
    dockerd's safepath follows it in the mounted image; one that leaves it (an absolute
    one too: dockerd resolves it from the host's root) is refused, as is a path where
    nothing is (ValueError naming where)."""
    from ._images.archive import lower_dirs

    parts = [p for p in subpath.split("/") if p not in ("", ".")]
    dirs, depth, links = list(lowers), 0, 0
    while depth < len(parts):
        found: list[str] = []
        if lower_dirs(dirs, parts[depth], found) is None:
            path, st = _top_entry(dirs, parts[depth])
            at = "/" + "/".join(parts[: depth + 1])
            if st is not None and stat.S_ISLNK(st.st_mode) and links < _MAX_LINKS:
                target = os.readlink(path)
                # Every part before it is a directory: ".." in the target is lexical.
                rest = posixpath.normpath("/".join([*parts[:depth], target, *parts[depth + 1 :]]))
                if target.startswith("/") or rest == ".." or rest.startswith("../"):
                    raise ValueError(
                        f"image-subpath {subpath!r}: path concatenation escapes the base "
                        f"directory: {at} is a symlink to {target}"
                    )
                parts = [p for p in rest.split("/") if p != "."]
                dirs, depth, links = list(lowers), 0, links + 1
                continue
            if st is not None and stat.S_ISREG(st.st_mode) and depth == len(parts) - 1:
                return (path,)
            why = "no such file or directory"
            if st is not None and stat.S_ISLNK(st.st_mode):
                why = "too many levels of symbolic links"
            elif st is not None and depth < len(parts) - 1:
                why = "not a directory"
            raise ValueError(
                f"image-subpath {subpath!r}: cannot access path {at} of the image: {why}"
            )
        dirs, depth = found, depth + 1
    return tuple(dirs)


def _top_entry(dirs: Sequence[str], name: str) -> tuple[str, os.stat_result | None]:
    """The top-most layer's ``name`` among ``dirs`` and its lstat (None: none, or a
    whiteout)."""
    from ._images.archive import is_whiteout

    for directory in dirs:
        path = f"{directory}/{name}"
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(path)
            return path, None if is_whiteout(st) else st
    return "", None


def image_mount_sources(
    mounted: Sequence[tuple[ImageMount, tuple[str, ...]]],
) -> list[tuple[str, tuple[str, ...]]]:
    """Each image mount's target and what :func:`image_sources` finds for it in its
    image's layers (``mounted``: each with those); blocks."""
    return [(m.target, image_sources(lowers, m.subpath)) for m, lowers in mounted]


# A subpath's lookup in its volume: below it, no symlink followed (moby's safepath).
_SUBPATH_RESOLVE = 0x08 | 0x04 | 0x02  # RESOLVE_BENEATH, _NO_SYMLINKS, _NO_MAGICLINKS


def subpath_source(volume: Volume) -> str:
    """What ``volume`` binds by path: its source, or the file or directory of its subpath
    there (only a name: :func:`bind_subpaths` finds it safely at the start)."""
    return f"{volume.host}/{volume.subpath}" if volume.subpath else volume.host


@functools.cache
def _has_mount_setattr() -> bool:
    """Whether the kernel has mount_setattr (asked once: an fd that is none gets EBADF
    where the call exists)."""
    import ctypes  # see _syscalls.libc

    number = _syscalls.BY_MACHINE.get(os.uname().machine, _syscalls.X86_64)["mount_setattr"]
    rc = _syscalls.libc().syscall(ctypes.c_long(number), -1, b"", 0, None, 0)
    return not (rc < 0 and ctypes.get_errno() == errno.ENOSYS)


def check_recursive_read_only(target: str) -> None:
    """``bind-recursive=readonly``: the kernel must be able to make the mounts below a
    bind read-only (mount_setattr, Linux 5.12), else the start fails, as Docker's."""
    if not _has_mount_setattr():
        raise ValueError(
            f"volume {target}: bind-recursive=readonly: this kernel cannot make the mounts"
            " below a bind read-only (mount_setattr needs Linux 5.12)"
        )


def bind_subpaths(native: Native, plan: SpawnPlan, volumes: Sequence[Volume]) -> SpawnPlan:
    """``plan`` with the binds of its volumes' subpaths made here as detached trees that
    its ATTACH steps move onto their targets (the caller closes ``mount_fds`` once it has
    spawned it).  Each is looked up in its volume as Docker's daemon does (safepath):
    below the volume's directory, no symlink followed on the way, and bound from what the
    lookup found, so that a container writing the volume meanwhile cannot point the bind
    elsewhere (and a container in a user namespace is given the bind as a tree, as
    :func:`bind_trees` gives it its binds).  Not on the event loop's thread."""
    wanted = {subpath_source(v): v for v in volumes if v.subpath}
    return _binds_as_trees(
        plan,
        lambda op: op.source in wanted,
        lambda op: _subpath_tree(native, wanted[op.source], bool(op.flags & MS_REC)),
        "volume subpaths",
        peers=frozenset([s for s, v in wanted.items() if v.propagation in _SHARED]),
    )


def _binds_as_trees(
    plan: SpawnPlan,
    take: Callable[[MountOp], bool],
    tree: Callable[[MountOp], int],
    what: str,
    peers: Container[str] = (),
) -> SpawnPlan:
    """``plan`` with each bind step that ``take`` takes made an ATTACH step of the
    detached tree ``tree`` makes for it (closed again if a later one fails).  A tree is a
    peer of its source's mount (where that is shared): each is then made a slave of it,
    as a bind made in the child's namespace (a slave of the host's) is, but for the
    sources of ``peers`` ([r]shared volumes, whose mounts are to reach the host's)."""
    fds: list[int] = []
    ops: list[MountOp] = []
    try:
        for op in plan.mounts:
            bind = op.kind is MountKind.MOUNT and op.flags & MS_BIND and not op.flags & MS_REMOUNT
            if bind and take(op):
                if len(fds) + len(plan.mount_fds) == MAX_MOUNT_FDS:
                    raise ValueError(f"more than {MAX_MOUNT_FDS} {what}")
                fds.append(tree(op))
                ops.append(MountOp(MountKind.ATTACH, op.target, source=op.source, dev=fds[-1]))
                if op.source in peers:
                    continue
                op = MountOp(MountKind.MOUNT, op.target, flags=MS_SLAVE | MS_REC)
            ops.append(op)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return evolve(plan, mounts=tuple(ops), mount_fds=(*plan.mount_fds, *fds))


def open_subpath(volume: Volume) -> int:
    """The volume's subpath, looked up as dockerd's safepath does (see
    :func:`_resolved_subpath`): an ``O_PATH`` descriptor of what the lookup found, which a
    container writing the volume meanwhile cannot point elsewhere."""
    where, subpath = _resolved_subpath(volume)
    base = os.open(where, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return openat2(base, subpath, os.O_PATH | os.O_CLOEXEC, _SUBPATH_RESOLVE)
    except OSError as exc:  # Docker's words, and which part of it is a symlink
        why = "a symlink on the way, which is not followed" if exc.errno == errno.ELOOP else ""
        raise OSError(
            exc.errno, f"cannot access path {subpath_source(volume)}: {why or exc.strerror}"
        ) from None
    finally:
        os.close(base)


def _subpath_tree(native: Native, volume: Volume, recursive: bool) -> int:
    found = open_subpath(volume)
    try:
        return native.clone_tree(f"/proc/self/fd/{found}", recursive=recursive)
    finally:
        os.close(found)


def _resolved_subpath(volume: Volume) -> tuple[str, str]:
    """The volume's directory and its subpath with the symlinks on the way resolved, as
    dockerd's safepath resolves them (an absolute link from the host's root), which must
    stay below the volume: the lookup that follows takes no symlink, so that one put on
    the way meanwhile makes it fail rather than leave the volume."""
    base = os.path.realpath(volume.host)
    try:
        found = os.path.realpath(os.path.join(base, volume.subpath), strict=True)
    except OSError as exc:
        raise OSError(
            exc.errno, f"cannot access path {subpath_source(volume)}: {exc.strerror}"
        ) from None
    subpath = os.path.relpath(found, base)  # normalized: ".." first if it left
    if subpath == ".." or subpath.startswith("../"):
        raise ValueError(  # dockerd's words
            f"path concatenation escapes the base directory, base: {base}, subpath: "
            f"{volume.subpath}"
        )
    return base, subpath


def tree_sources(
    volumes: Sequence[Volume], *, userns: bool
) -> tuple[frozenset[str], frozenset[str]]:
    """The volumes' sources that :func:`bind_trees` binds for a start: in a user
    namespace all of them (its root may not reach one by path: below /root, 0700), else
    the shared ones (a bind made in the child's namespace, a slave of the host's, could
    not be a peer of its source's mount); and of those the shared ones."""
    shared = frozenset([v.host for v in volumes if v.propagation in _SHARED])
    return frozenset([v.host for v in volumes]) if userns else shared, shared


def bind_trees(
    native: Native,
    plan: SpawnPlan,
    sources: Container[str] | None = None,
    peers: Container[str] = (),
) -> SpawnPlan:
    """``plan`` with its binds (of ``sources``, default every host path but the root
    filesystem's) made here, as detached trees its ATTACH steps move onto their targets;
    the caller closes ``mount_fds`` once it has spawned it.  For a container in a new user
    namespace, as runc makes them: its root may not reach a source by path (a volume
    below /root, which is 0700), the caller can; for a bind of ``peers`` (see
    :func:`tree_sources`), to join its source's peer group.  Not on the event loop's
    thread: a source on a FUSE mount waits for its server (OSError naming the source on
    failure)."""

    def take(op: MountOp) -> bool:
        # The root itself is not one: its path is walked anyway.
        return (
            op.source.startswith("/")
            and op.target != "/"
            and (sources is None or op.source in sources)
        )

    def tree(op: MountOp) -> int:
        try:
            return native.clone_tree(op.source, recursive=bool(op.flags & MS_REC))
        except OSError as exc:
            raise OSError(exc.errno, f"bind source {op.source}: {exc.strerror}") from None

    return _binds_as_trees(plan, take, tree, "binds in a user namespace", peers)


def _check_traversable(dirs: Sequence[Path], uid: int, what: str) -> None:
    """The overlays of a user-namespaced container are mounted by its root, host ``uid``,
    which must be able to walk down to their directories (its volumes' binds are made by
    the daemon: see bind_trees)."""
    for d in dirs:
        st = os.stat(d)
        if not st.st_mode & stat.S_IXOTH and st.st_uid != uid:
            raise ValueError(
                f"a user-namespaced container's root (host uid {uid}) cannot enter {d} "
                f"(mode {stat.S_IMODE(st.st_mode):04o}): {what} must be in directories "
                "others may traverse (o+x)"
            )


def id_mapped_layers(image: Image, container_dir: Path) -> tuple[tuple[str, str], ...]:
    """(image layer, attach point) for a user-namespaced container: the child mounts an
    id-mapped copy of each layer directory on its attach point, and the overlays use those."""
    return tuple(
        [
            (lower, str(container_dir / "layers" / str(i)))
            for i, lower in enumerate(d for layer in image.layers for d in layer.lowers)
        ]
    )


def container_dirs(
    image: Image, container_dir: Path, *, id_map: tuple[int, int] | None = None
) -> None:
    """Create the directories of :func:`container_mounts` under ``container_dir`` (only
    system calls: a caller may run this in a worker thread first, and then pass
    ``dirs_made``): ``rootfs``, ``fs/<layer>/{upper,work}`` per image layer (the upper's
    root with the mode and owner of the layer's lower, the work owned by root), and with
    ``id_map`` the id-mapped layers' attach points, all owned by the ids the container's
    0 maps to, and the container directory traversable (0711)."""
    _check_overlay_path(str(container_dir), "container directory")
    rootfs = container_dir / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)

    def own(path: Path, uid: int, gid: int) -> None:
        """chown to host ids, or to those the container's ids map to."""
        if id_map is not None:
            start, count = id_map
            uid = start + uid if uid < count else uid
            gid = start + gid if gid < count else gid
        os.chown(path, uid, gid)

    if id_map is not None:
        os.chmod(container_dir, 0o711)
        own(rootfs, 0, 0)
        for _, point in id_mapped_layers(image, container_dir):
            os.makedirs(point, mode=0o711, exist_ok=True)
    for layer in image.layers:
        base = container_dir / _layer_dir(layer.target)
        upper, work = base / "upper", base / "work"
        upper.mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
        # The upper's root gives the merged directory its owner and mode.
        lower_st = os.stat(layer.lower)
        os.chmod(upper, stat.S_IMODE(lower_st.st_mode))
        own(upper, lower_st.st_uid, lower_st.st_gid)
        own(work, 0, 0)


def container_mounts(
    image: Image,
    container_dir: Path,
    *,
    id_map: tuple[int, int] | None = None,
    private_network: bool = False,
    read_only_root: bool = False,
    tmpfs: Sequence[str] = (),
    shm_size: int | None = None,
    shm: bool = True,
    volumes: Sequence[Volume] = (),
    image_mounts: Sequence[tuple[str, tuple[str, ...]]] = (),
    files: Mapping[str, str] | None = None,
    workdir: str = "/",
    extra: Sequence[MountOp] = (),
    standard: bool = True,
    dirs_made: bool = False,
    cgroups: Sequence[tuple[str, str]] | None = None,
    cgroups_writable: bool = False,
    known: _Known | None = None,
) -> tuple[str, tuple[MountOp, ...]]:
    """Create the container's upper/work directories and return (rootfs, mount table).

    Under ``container_dir``: ``rootfs`` (the mount point that becomes "/") and
    ``fs/<layer>/{upper,work}`` per image layer; writes of the container land in the
    uppers, never in the image (``dirs_made``: :func:`container_dirs` made them already).
    The table, run in order by the child before pivot_root:
    the overlays; /proc, /sys (read-only), /sys/fs/cgroup (read-only unless
    ``cgroups_writable``: the container's own cgroup2, or with ``cgroups`` a v1 host's
    layout, see :func:`cgroup_ops`), /dev (a
    tmpfs with the standard devices: created with mknod, or in a user namespace bound from
    the host's nodes), /dev/pts (a new instance), /dev/shm (``shm_size`` bytes, None:
    64 MiB; without ``shm`` an empty directory: Docker's ``--ipc none``, or where ``--ipc
    host`` or ``container:NAME`` mounts theirs; none either under a volume or tmpfs of the
    user's there), /dev/mqueue;
    the volumes; the image mounts (``image_mounts``: target, and what
    :func:`image_sources` found: read-only, an overlay of several directories or a bind of
    one directory or file); the tmpfs mounts (``--tmpfs`` specs); ``files``
    (container path -> contents, written into the container's upper layer: its own
    /etc/hostname and /etc/hosts); the directories of ``workdir``; read-only remounts of
    the overlays when ``read_only_root``; then ``extra``.  Without ``standard``: no /proc,
    /sys or /dev (the files alone, as ``cp`` reads a stopped container's).  ``known``: what
    lookups of this start found already (:func:`look_up`); the table's own go there too.

    ``id_map`` (host start, count) is the user namespace's uid and gid map: the container's
    root is host uid ``start``, which mounts the overlays, so the rootfs, the uppers and
    works are its own, the container directory is traversable to it, the lowers are the
    id-mapped layers of :func:`id_mapped_layers` and the overlays take ``userxattr``.
    Without ``private_network`` such a container cannot mount sysfs (the network namespace
    is the host's, not owned by its user namespace): it gets the host's /sys bound
    read-only instead.
    """
    if not dirs_made:
        container_dirs(image, container_dir, id_map=id_map)
    rootfs = f"{container_dir}/rootfs"
    userns = id_map is not None
    lowers = [list(layer.lowers) for layer in image.layers]
    if id_map is not None:
        _check_traversable(
            (container_dir, *container_dir.parents), id_map[0], "the daemon's --root"
        )
        points = iter(id_mapped_layers(image, container_dir))
        lowers = [
            [point for _, point in itertools.islice(points, len(layer.lowers))]
            for layer in image.layers
        ]
    overlays = []
    for layer, lower_dirs in zip(image.layers, lowers, strict=True):
        base = _layer_base(container_dir, layer.target)
        # Named relative to the layer's directory, which the child makes its working
        # directory just before the mount (see :func:`_lower_links`).
        names = _lower_links(base, lower_dirs)
        data = f"lowerdir={':'.join(names)},upperdir=upper,workdir=work"
        data += _OVERLAY_USERNS_OPTIONS if userns else _OVERLAY_OPTIONS
        if len(data) >= _PAGE:
            raise ImageError(
                f"image {image.name} has too many layers ({len(layer.lowers)}) for one overlay "
                f"mount: its options take {len(data)} bytes, the limit is {_PAGE - 1}"
            )
        overlays.append((layer.target, base, data))
    table = _Table(_container_view(image, container_dir), known)
    overlay_paths = []
    for target, base, data in overlays:
        path = table.resolve(target)
        table.mkdirs(path)
        table.add(MountKind.CHDIR, "/", source=base)
        table.add(MountKind.MOUNT, path, source="overlay", fstype="overlay", data=data)
        overlay_paths.append(path)
    # A volume, bind or tmpfs of the user's at /dev/shm replaces boxd's, as Docker's does.
    given = [v.container for v in volumes] + [spec.partition(":")[0] for spec in tmpfs]
    shm = shm and "/dev/shm" not in map(posixpath.normpath, given)
    if standard:
        _standard_mounts(
            table,
            userns=userns,
            host_sys=userns and not private_network,
            tty_gid=id_map is None or id_map[1] > _TTY_GID,
            shm=shm_data(shm_size) if shm else None,
            cgroups=cgroups,
            cgroups_writable=cgroups_writable,
        )
    volume_paths = set()
    mount_paths = set()  # the volumes' and the tmpfs mounts'

    def add_volume(volume: Volume) -> None:
        path = table.resolve(_container_path(volume.container, "volume"))
        _container_path(path, f"volume {volume.container} (in the image)")
        # A subpath's: the start binds it from a safe lookup (bind_subpaths).
        source = subpath_source(volume)
        if os.path.isdir(source):
            table.mkdirs(path)
        else:  # a single file: its mount point is an empty file
            table.mkdirs(posixpath.dirname(path))
            table.add(MountKind.MKFILE, path, mode=0o644)
        below = 0 if volume.recursive == "disabled" else MS_REC
        table.add(MountKind.MOUNT, path, source=source, flags=MS_BIND | below)
        # rprivate, Docker's default: a bind of the host's shared mounts (systemd makes
        # them so) in the container's namespace, which the child made a slave of the
        # host's, would be a slave too and show what the host mounts below the source
        # after the start.  [r]slave asks for that, which a private source cannot give;
        # [r]shared for the mounts either side makes to reach the other, which the start
        # gives by binding it here as a tree that joins the source's peer group
        # (tree_sources, bind_trees), as runc's bind of it from the host's namespace does.
        if needs := _NEEDS.get(volume.propagation):
            point, fields = propagation_of(os.path.realpath(volume.host))
            if not any(f.startswith(needs[0]) for f in fields):
                raise ValueError(
                    f"volume {volume.container}: {volume.propagation} propagation: path "
                    f"{volume.host} is mounted on {point} but it is not {needs[1]}"
                )
        table.add(MountKind.MOUNT, path, flags=_PROPAGATION[volume.propagation])
        volume_paths.add(path)
        mount_paths.add(path)
        flags = MS_NOSUID | MS_NODEV | (MS_NOEXEC if volume.noexec else 0)
        if volume.read_only:
            # MS_REC: the mounts below it read-only too, as Docker 25 makes them, unless
            # bind-recursive says otherwise (see Volume.recursive).
            if volume.recursive == "readonly":
                check_recursive_read_only(volume.container)
            below = 0 if volume.recursive in ("disabled", "writable") else MS_REC
            table.add(MountKind.REMOUNT_RO, path, flags=flags | below)
        else:
            table.add(MountKind.MOUNT, path, flags=MS_REMOUNT | MS_BIND | flags)

    def add_tmpfs(spec: str) -> None:
        target, tmpfs_flags, tmpfs_data = parse_tmpfs(spec)
        path = table.resolve(_container_path(target, "tmpfs"))
        _container_path(path, f"tmpfs {target} (in the image)")
        mount_paths.add(path)
        table.mkdirs(path)
        table.add(
            MountKind.MOUNT,
            path,
            source="tmpfs",
            fstype="tmpfs",
            flags=tmpfs_flags & ~PROPAGATION_BITS,
            data=tmpfs_data,
        )
        if tmpfs_flags & PROPAGATION_BITS:  # set apart: a mount's flags cannot set it
            table.add(MountKind.MOUNT, path, flags=tmpfs_flags & PROPAGATION_BITS)

    def add_image(n: int, target: str, sources: tuple[str, ...]) -> None:
        path = table.resolve(_container_path(target, "image"))
        _container_path(path, f"image mount {target} (in the image)")
        mount_paths.add(path)
        flags = MS_NOSUID | MS_NODEV
        if not os.path.isdir(sources[0]):  # a file (image-subpath): bound alone
            table.mkdirs(posixpath.dirname(path))
            table.add(MountKind.MKFILE, path, mode=0o644)
            table.add(MountKind.MOUNT, path, source=sources[0], flags=MS_BIND)
            table.add(MountKind.REMOUNT_RO, path, flags=flags)
            return
        table.mkdirs(path)
        # Lower directories only: a read-only overlay, its layers named as the root's are
        # (so its options name no host path; a bind's root would show the layer's), one
        # layer with an empty directory below it (overlay takes two at least).
        base = f"{container_dir}/image-mounts/{n}"
        if len(sources) == 1:
            os.makedirs(f"{base}/empty", exist_ok=True)
            sources = (*sources, f"{base}/empty")
        data = f"lowerdir={':'.join(_lower_links(base, sources))}{_OVERLAY_OPTIONS}"
        if len(data) >= _PAGE:
            raise ImageError(f"image mount {target}: too many layers for one overlay mount")
        table.add(MountKind.CHDIR, "/", source=base)
        table.add(
            MountKind.MOUNT, path, source="overlay", fstype="overlay", flags=MS_RDONLY | flags,
            data=data,
        )  # fmt: skip

    # Volumes, image mounts and tmpfs mounts together, the shallower first (a stable sort
    # on the depth of the path given, Docker's sortMounts): one below another lands in
    # it, not under it.
    user_mounts = [
        *[(volume.container, functools.partial(add_volume, volume)) for volume in volumes],
        *[
            (target, functools.partial(add_image, n, target, found))
            for n, (target, found) in enumerate(image_mounts)
        ],
        *[(spec.partition(":")[0], functools.partial(add_tmpfs, spec)) for spec in tmpfs],
    ]
    for _, add in sorted(user_mounts, key=lambda m: posixpath.normpath(m[0]).count("/")):
        add()
    for target, text in (files or {}).items():
        path = table.resolve(_container_path(target, "file"))
        if path in volume_paths:  # the user's own file (-v ...:/etc/hosts) wins
            continue
        table.mkdirs(posixpath.dirname(path))
        if any(path.startswith(f"{point}/") for point in mount_paths):
            # In a volume, a host directory or a tmpfs (-v ...:/etc): not written there,
            # over the user's own file, but bound over it from the container's directory,
            # as Docker binds its own (an empty mount point made where none is).
            table.add(MountKind.MKFILE, path, mode=0o644)
            source = _own_file(container_dir, target, text, id_map)
            table.add(MountKind.MOUNT, path, source=source, flags=MS_BIND)
            continue
        table.add(MountKind.WRITE_FILE, path, data=text, mode=0o644)
    if workdir.startswith("/") and workdir != "/":
        # As Docker: a missing working directory is made, owned by the container's root.
        table.mkdirs(table.resolve(posixpath.normpath(workdir)))
    if read_only_root:
        for path in overlay_paths:
            table.add(MountKind.REMOUNT_RO, path)
    table.ops.extend(extra)
    return rootfs, tuple(table.ops)


def _own_file(container_dir: Path, target: str, text: str, id_map: tuple[int, int] | None) -> str:
    """``target``'s contents as a file of the container's directory (``files/``, readable
    by the container's users, its root's own), to be bound over ``target``."""
    d = container_dir / "files"
    d.mkdir(mode=0o755, exist_ok=True)
    path = d / target.strip("/").replace("/", "_")
    atomic_write(path, text.encode(), mode=0o644, durable=False)  # made at each start
    if id_map is not None:
        os.chown(path, id_map[0], id_map[0])
    return str(path)


def cgroup_ops(target: str, cgroups: Sequence[tuple[str, str]], flags: int) -> list[MountOp]:
    """A v1 host's /sys/fs/cgroup as Docker shows it, at ``target`` (an existing directory):
    a tmpfs with a directory per hierarchy named as the host names it (``memory``,
    ``cpu,cpuacct``, ``unified``), onto which ``cgroups`` (name, host directory: the
    container's own cgroup there, :meth:`boxd._cgroup.Cgroup.view`) are bound, a symlink
    for each controller of a comounted hierarchy (``cpu -> cpu,cpuacct``), the binds and
    then the tmpfs remounted with ``flags`` (read-only, nosuid, nodev, noexec).

    Binds, not new cgroup mounts: they take no lock of the cgroup core (a new v1 mount
    first waits for dying cgroups to go), and show the same in and outside a cgroup
    namespace.  In the container's cgroup namespace mountinfo gives each its root as
    ``/``, as /proc/self/cgroup does (runtimes that size themselves, the JVM's, match
    the two)."""
    head, around, tail = _cgroup_frame(target, tuple([name for name, _ in cgroups]), flags)
    ops = list(head)
    for (name, source), (mkdir, after) in zip(cgroups, around, strict=True):
        ops.append(mkdir)
        ops.append(MountOp(MountKind.MOUNT, f"{target}/{name}", source, flags=MS_BIND))
        ops += after
    ops.append(tail)
    return ops


@functools.lru_cache(maxsize=16)  # frozen records, a function of the arguments alone
def _cgroup_frame(
    target: str, names: tuple[str, ...], flags: int
) -> tuple[tuple[MountOp], tuple[tuple[MountOp, tuple[MountOp, ...]], ...], MountOp]:
    """The steps of :func:`cgroup_ops` that do not name a container's cgroup: the tmpfs,
    per hierarchy its directory (before its bind) and its remount and symlinks (after),
    and the tmpfs's remount."""
    remount = MS_REMOUNT | MS_BIND | flags
    head = MountOp(
        MountKind.MOUNT,
        target,
        "tmpfs",
        "tmpfs",
        flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC),
        "mode=755,size=64k",
    )
    around = []
    for name in names:
        path = f"{target}/{name}"
        after = [MountOp(MountKind.MOUNT, path, flags=remount)]
        if "," in name:
            for controller in name.split(","):
                after.append(MountOp(MountKind.SYMLINK, f"{target}/{controller}", name))
        around.append((MountOp(MountKind.MKDIR, path, mode=0o755), tuple(after)))
    return (head,), tuple(around), MountOp(MountKind.MOUNT, target, flags=remount)


def _standard_mounts(
    table: _Table,
    *,
    userns: bool,
    host_sys: bool,
    tty_gid: bool,
    shm: str | None,
    cgroups: Sequence[tuple[str, str]] | None,
    cgroups_writable: bool = False,
) -> None:
    """/proc, /sys with /sys/fs/cgroup, /dev with its devices, pts, shm and mqueue, at
    where the container's /proc, /sys and /dev resolve (looked up for each table); the
    steps around the cgroups' are the same records for every container that resolves
    them alike (:func:`_proc_sys_ops`, :func:`_dev_ops`)."""
    proc, sys = table.resolve("/proc"), table.resolve("/sys")
    # sysfs (and the cgroups below it) writable for --privileged, as Docker mounts them.
    table.ops.extend(_proc_sys_ops(proc, sys, host_sys, writable=cgroups_writable))
    # sysfs itself provides the fs/cgroup directory; writable for --privileged, as Docker
    # mounts it (the container's own cgroups: it may nest below them).
    cgroup_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (0 if cgroups_writable else MS_RDONLY)
    if cgroups is None:
        table.ops.append(
            MountOp(MountKind.MOUNT, sys + "/fs/cgroup", "cgroup2", "cgroup2", cgroup_flags)
        )
    else:
        table.ops.extend(cgroup_ops(sys + "/fs/cgroup", cgroups, cgroup_flags))
    pts_options = "newinstance,ptmxmode=0666,mode=0620"
    if tty_gid:  # Docker's, whether the image names the group or not
        pts_options += f",gid={_TTY_GID}"
    table.ops.extend(_dev_ops(table.resolve("/dev"), userns, pts_options, shm))


def _mkdir_ops(path: str, mode: int = 0o755) -> list[MountOp]:
    """MKDIR steps for each directory down to ``path`` (a resolved container path)."""
    parts = [p for p in path.split("/") if p]
    return [
        MountOp(MountKind.MKDIR, "/" + "/".join(parts[:i]), mode=mode)
        for i in range(1, len(parts) + 1)
    ]


@functools.lru_cache(maxsize=16)  # frozen records, a function of the arguments alone
def _proc_sys_ops(
    proc: str, sys: str, host_sys: bool, *, writable: bool = False
) -> tuple[MountOp, ...]:
    """/proc and /sys at their resolved paths (``host_sys``: the host's /sys bound
    read-only, for a user namespace without a network namespace of its own; else sysfs,
    read-only unless ``writable``)."""
    nse = MS_NOSUID | MS_NODEV | MS_NOEXEC
    ops = _mkdir_ops(proc, 0o555)
    ops.append(MountOp(MountKind.MOUNT, proc, "proc", "proc", nse))
    ops += _mkdir_ops(sys, 0o555)
    if host_sys:
        # Recursive: the host's mounts below /sys are locked to it in a user namespace.
        ops.append(MountOp(MountKind.MOUNT, sys, "/sys", flags=MS_BIND | MS_REC))
        ops.append(MountOp(MountKind.REMOUNT_RO, sys, flags=nse))
    else:
        ops.append(
            MountOp(MountKind.MOUNT, sys, "sysfs", "sysfs", nse | (0 if writable else MS_RDONLY))
        )
    return tuple(ops)


@functools.lru_cache(maxsize=16)  # frozen records, a function of the arguments alone
def _dev_ops(dev: str, userns: bool, pts_options: str, shm: str | None) -> tuple[MountOp, ...]:
    """/dev at its resolved path: a tmpfs with the standard devices (made with mknod, or
    in a user namespace bound from the host's nodes), /dev/pts (a new instance with
    ``pts_options``), the links, /dev/shm (tmpfs ``shm`` options; None: no mount) and
    /dev/mqueue."""
    nse = MS_NOSUID | MS_NODEV | MS_NOEXEC
    ops = _mkdir_ops(dev)
    # Docker's size (64 MiB): room for what programs put there (sockets, FIFOs, a log or
    # lock file), its pages charged to the container's memory as any tmpfs's.
    ops.append(MountOp(MountKind.MOUNT, dev, "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k"))
    for name, major, minor in _DEVICES:
        path = f"{dev}/{name}"
        if userns:
            ops.append(MountOp(MountKind.BIND_DEV, path, f"/dev/{name}"))
        else:
            ops.append(
                MountOp(
                    MountKind.MKNOD, path, mode=stat.S_IFCHR | 0o666, dev=os.makedev(major, minor)
                )
            )
    ops += _mkdir_ops(dev + "/pts")
    ops.append(
        MountOp(
            MountKind.MOUNT, dev + "/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, pts_options
        )
    )
    for name, target in _DEV_LINKS:
        ops.append(MountOp(MountKind.SYMLINK, f"{dev}/{name}", target))
    ops += _mkdir_ops(dev + "/shm")
    if shm is not None:
        ops.append(MountOp(MountKind.MOUNT, dev + "/shm", "shm", "tmpfs", nse, shm))
    ops += _mkdir_ops(dev + "/mqueue")
    ops.append(MountOp(MountKind.MOUNT, dev + "/mqueue", "mqueue", "mqueue", nse))
    return tuple(ops)

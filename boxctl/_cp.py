"""``boxctl cp``: files between a container and the host, by Docker's rules.

As the docker CLI does, the client decides what the copy means and the daemon only stats,
archives and extracts container paths, resolved inside the container's root
(``boxd/_copy.py``).  Out of a container: the daemon's tar of SRC, extracted here below
DEST's directory, its top entry renamed to DEST's name when DEST is not an existing
directory.  Into one: a tar made here whose top entry already has the name it must get,
sent to the daemon to extract into DEST (or DEST's directory).  ``-`` is a tar stream on
stdin or stdout.  Every failure exits 1, as ``docker cp``'s do.
"""

from __future__ import annotations

import errno
import os
import posixpath
import sys

from ._args import FLAG, ONE, Args, Command, Opt
from ._client import Client, CliError, check

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    import tarfile
    from typing import IO, Any

CHUNK = 1 << 20
CAPABILITY = "security.capability"  # the xattr of a file's capabilities
S_IFMT, S_IFDIR, S_IFLNK, S_IFREG = 0o170000, 0o040000, 0o120000, 0o100000


def split_arg(arg: str) -> tuple[str, str]:
    """(container, path) of ``CONTAINER:PATH``; ("", arg) for a host path (absolute, or
    one whose part before ``:`` starts with ``.``, as ``./a:b``)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def _has_dot(path: str) -> bool:
    return path == "." or path.endswith("/.")


def _split_entry(path: str) -> tuple[str, str]:
    """Docker's SplitPathDirEntry: (directory, last component), ``.`` kept as the last."""
    clean = posixpath.normpath(path)
    if _has_dot(path) and clean != ".":
        clean += "/."
    return posixpath.dirname(clean) or ".", posixpath.basename(clean) or "."


def _is_dir(mode: int) -> bool:
    return mode & S_IFMT == S_IFDIR


def _ask(client: Client, request: dict[str, Any]) -> dict[str, Any]:
    """The response to ``request``, an ErrorResponse too."""
    client.send(request)
    frame = client.receive()
    if not isinstance(frame, dict):
        raise CliError("the daemon sent bytes where a response was expected")
    return frame


def _stat(client_path: str, container: str, path: str) -> dict[str, Any] | None:
    """The daemon's stat of a container path, or None when it cannot say (a missing path:
    the copy itself then tells what is wrong)."""
    with Client(client_path) as client:
        response = _ask(client, {"type": "CopyStatRequest", "container": container, "path": path})
    if response.get("type") == "ErrorResponse":
        return None
    stat: dict[str, Any] = response["stat"]
    return stat


def cmd_cp(args: Args) -> int:
    try:
        return _copy(args)
    except CliError as exc:
        raise CliError(str(exc), 1) from None
    except BrokenPipeError:
        raise  # stdout closed early: boxctl exits 1 without a word
    except OSError as exc:
        raise CliError(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "), 1) from None


def _copy(args: Args) -> int:
    if not args.source:
        raise CliError("source can not be empty")
    if not args.destination:
        raise CliError("destination can not be empty")
    src_container, src = split_arg(args.source)
    dst_container, dst = split_arg(args.destination)
    if src_container and dst_container:
        raise CliError("copying between containers is not supported")
    if src_container:
        return _from_container(args, src_container, src, dst)
    if dst_container:
        return _to_container(args, src, dst_container, dst)
    raise CliError("must specify at least one container source")


# ---- out of a container ----------------------------------------------------------------


def _local_path(path: str) -> str:
    """Absolute, keeping a trailing ``/`` or ``/.`` (they change what is copied)."""
    absolute = os.path.abspath(path)
    if _has_dot(path):
        return absolute + "/."
    if path.endswith("/"):
        return absolute + "/"
    return absolute


def _from_container(args: Args, container: str, src: str, dst: str) -> int:
    if dst != "-":
        dst = _local_path(dst)
        parent = posixpath.dirname(posixpath.normpath(dst))
        if not os.path.exists(parent):
            raise CliError(f"invalid output path: directory {parent!r} does not exist")
    rebase = ""
    if args.follow_link:
        stat = _stat(args.socket, container, src)
        if stat is not None and stat["mode"] & S_IFMT == S_IFLNK:
            target = stat["link_target"]
            rebase = _split_entry(src)[1]
            if _has_dot(src):
                target += "/."
            elif src.endswith("/"):
                target += "/"
            src = target
    with Client(args.socket) as client:
        response = _ask(client, {"type": "CopyFromRequest", "container": container, "path": src})
        check(response)
        if dst == "-":
            out = sys.stdout.buffer
            for data in _tar_bytes(client):
                out.write(data)
            out.flush()
            return 0
        src_is_dir = _is_dir(response["stat"]["mode"])
        _extract_here(client, src, src_is_dir, rebase, dst, keep_owner=args.archive)
    return 0


class _FrameReader:
    """The stdout byte frames after the response, as a file (up to the EndFrame)."""

    def __init__(self, client: Client) -> None:
        self.chunks = _tar_bytes(client)
        self.pending = b""
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size != 0:
            if self.pos >= len(self.pending):
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                self.pending, self.pos = chunk, 0
            left = len(self.pending) - self.pos
            take = left if size < 0 else min(size, left)
            parts.append(self.pending[self.pos : self.pos + take])
            self.pos += take
            size = size - take if size > 0 else size
        return b"".join(parts)


def _tar_bytes(client: Client) -> Any:
    while True:
        frame = client.receive()
        if isinstance(frame, tuple):
            yield frame[1]
            continue
        if frame.get("type") == "EndFrame":
            return
        check(frame)


def _destination(path: str) -> tuple[str, bool, bool]:
    """Docker's CopyInfoDestinationPath: (the path with symlinks at its end followed,
    exists, is a directory); its parent must exist."""
    for _ in range(11):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        path = target if target.startswith("/") else posixpath.join(_split_entry(path)[0], target)
    else:
        raise CliError(f"too many symlinks in {path}")
    if os.path.lexists(path):
        return path, True, os.path.isdir(path)
    parent = _split_entry(path)[0]
    if not os.path.isdir(parent):
        if os.path.exists(parent):
            raise CliError(f"{parent}: not a directory")
        raise CliError(f"lstat {parent}: no such file or directory")
    return path, False, False


def _prepare(
    src: str, src_is_dir: bool, rebase: str, dst: str, exists: bool, is_dir: bool
) -> tuple[str, tuple[str, str] | None]:
    """Docker's PrepareArchiveCopy: the directory to extract into, and the renaming of the
    archive's top entry (old, new), if any."""
    dst_dir, dst_base = _split_entry(dst)
    src_base = rebase or _split_entry(src)[1]
    if exists and is_dir:
        return dst, None
    if exists and src_is_dir:
        raise CliError("cannot copy directory")
    if not exists and not src_is_dir and dst.endswith(("/", "/.")):
        raise CliError("no such directory")
    return dst_dir, (src_base, dst_base)


def _rename(name: str, renaming: tuple[str, str] | None) -> str:
    name = name.rstrip("/")
    if renaming is None:
        return name
    old, new = renaming
    head, sep, rest = name.partition("/")
    if head == old:
        return new + sep + rest
    return name


def _extract_here(
    client: Client, src: str, src_is_dir: bool, rebase: str, dst: str, *, keep_owner: bool
) -> None:
    import tarfile

    path, exists, is_dir = _destination(dst)
    dst_dir, renaming = _prepare(src, src_is_dir, rebase, path, exists, is_dir)
    # The daemon names the top entry after SRC (after the link's target with -L).
    old = _split_entry(src)[1]
    new = renaming[1] if renaming is not None else rebase or old
    renaming = None if new == old else (old, new)
    root = os.path.realpath(dst_dir)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    reader = _FrameReader(client)
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            _extract_member(tar, member, root, renaming, keep_owner, dirs)
    # tarfile stops at the archive's end blocks: read on to the EndFrame, which the daemon
    # sends once the copy is over (a stopped container's mounts gone: it can start), or the
    # error that ended the archive.
    while reader.read(1 << 20):
        pass
    for target, member in reversed(dirs):
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)


def _inside(root: str, name: str) -> str:
    """The host path of archive member ``name`` below ``root``; nothing may lead out."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise CliError(f"archive member {name!r} points outside {root}")
    target = os.path.join(root, *parts)
    parent = os.path.realpath(os.path.dirname(target)) if parts else root
    if parent != root and not parent.startswith(root.rstrip("/") + "/"):
        raise CliError(f"archive member {name!r} would be written through a link out of {root}")
    return target


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    root: str,
    renaming: tuple[str, str] | None,
    keep_owner: bool,
    dirs: list[tuple[str, tarfile.TarInfo]],
) -> None:
    name = _rename(member.name, renaming)
    target = _inside(root, name)
    if member.islnk():
        member = member.replace(linkname=_rename(member.linkname, renaming), deep=False)
        _inside(root, member.linkname)
    if not keep_owner:  # as Docker: the invoking user's, unless -a
        member = member.replace(uid=os.getuid(), gid=os.getgid(), deep=False)
    if os.path.lexists(target) and target != root:
        existing_dir = os.path.isdir(target) and not os.path.islink(target)
        if existing_dir and not member.isdir():
            raise CliError(f"cannot overwrite directory {target!r} with non-directory")
        if not existing_dir and member.isdir():
            raise CliError(f"cannot overwrite non-directory {target!r} with directory")
        if not existing_dir:
            os.unlink(target)  # never written through: it may be a symlink
    if target == root or (member.isdir() and os.path.isdir(target)):
        if target != root:
            os.chmod(target, member.mode)
            dirs.append((target, member))
        return
    if member.islnk():
        # Made here, not by tarfile: its link follows a symlink it names (a hard link to a
        # symlink became one to the symlink's target, or failed).
        os.link(_inside(root, member.linkname), target, follow_symlinks=False)
        return
    member = member.replace(name=os.path.relpath(target, root), deep=False)
    tar.extract(member, root, numeric_owner=True, filter="fully_trusted")
    _set_xattrs(target, member)
    if member.isdir():
        dirs.append((target, member))


def _set_xattrs(target: str, member: tarfile.TarInfo) -> None:
    """The member's xattrs (the daemon's tar carries a file's capabilities, as Docker's
    does), set as the docker CLI sets them: where this file system or user may not, the
    file goes without."""
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        try:
            os.setxattr(target, key[13:], os.fsencode(value), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise CliError(f"cannot set {key[13:]} on {target}: {exc.strerror}") from None


# ---- into a container ------------------------------------------------------------------


class _FrameWriter:
    """A file whose writes go to the daemon as stdin byte frames of up to CHUNK bytes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) >= CHUNK:
            self.client.send_bytes(0, bytes(self.buffer[:CHUNK]))
            del self.buffer[:CHUNK]
        return len(data)

    def close(self) -> None:
        if self.buffer:
            self.client.send_bytes(0, bytes(self.buffer))
        self.buffer.clear()
        self.client.send_bytes(0, b"")


def _source(path: str, follow: bool) -> tuple[str, str]:
    """Docker's CopyInfoSourcePath: (the host path to read, the archive's top name)."""
    path = _local_path(path)
    name = _split_entry(path)[1]
    if follow or path.endswith(("/", "/.")):
        resolved = os.path.realpath(path)
    else:  # the last component as it is: a symlink is copied as one
        resolved = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if not os.path.lexists(resolved):
        raise CliError(f"lstat {resolved}: no such file or directory")
    return resolved, name


def _to_container(args: Args, src: str, container: str, dst: str) -> int:
    stat = _stat(args.socket, container, dst)
    if stat is not None and stat["mode"] & S_IFMT == S_IFLNK:
        target = stat["link_target"]
        dst = target if target.startswith("/") else posixpath.join(_split_entry(dst)[0], target)
        stat = _stat(args.socket, container, dst)
    if stat is not None and stat["mode"] & S_IFMT not in (S_IFDIR, S_IFREG):
        raise CliError(f'destination "{container}:{dst}" must be a directory or a regular file')
    exists, is_dir = stat is not None, stat is not None and _is_dir(stat["mode"])
    if src == "-":
        if not is_dir:
            raise CliError(f'destination "{container}:{dst}" must be a directory')
        return _send(args, container, dst, sys.stdin.buffer, None)
    resolved, name = _source(src, args.follow_link)
    src_is_dir = os.path.isdir(resolved) and not os.path.islink(resolved)
    dst_dir, renaming = _prepare(src, src_is_dir, name, dst, exists, is_dir)
    top = name if renaming is None else renaming[1]
    return _send(args, container, dst_dir, None, (resolved, top))


def _send(
    args: Args, container: str, dst_dir: str, stream: IO[bytes] | None, tree: tuple[str, str] | None
) -> int:
    """Send a tar (``stream``, or made of ``tree``: host path, top name) for the daemon to
    extract into the container directory ``dst_dir``."""
    import tarfile

    request = {
        "type": "CopyToRequest",
        "container": container,
        "path": dst_dir,
        "no_overwrite_dir_non_dir": True,
        "copy_uid_gid": args.archive,
    }
    with Client(args.socket) as client:
        client.request(request)
        out = _FrameWriter(client)
        if stream is not None:
            while data := stream.read(CHUNK):
                out.write(data)
        else:
            assert tree is not None
            path, top = tree

            def capability(info: tarfile.TarInfo) -> tarfile.TarInfo:
                """A file's capabilities (setcap's) go with it, as the docker CLI's tar
                carries them."""
                if info.isfile():
                    host = os.path.normpath(os.path.join(path, os.path.relpath(info.name, top)))
                    try:
                        value = os.getxattr(host, CAPABILITY, follow_symlinks=False)
                    except OSError:
                        return info
                    info.pax_headers = {f"SCHILY.xattr.{CAPABILITY}": os.fsdecode(value)}
                return info

            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                tar.add(path, arcname=top, recursive=True, filter=capability)
        out.close()
        client.response()
    return 0


COMMANDS = (
    Command(
        "cp",
        cmd_cp,
        "copy files between a container and the host (- is a tar on stdin/stdout)",
        (
            Opt("-a", "--archive", kind=FLAG, help="keep the source's uid and gid"),
            Opt("-L", "--follow-link", kind=FLAG, help="follow a symbolic link in SRC_PATH"),
            Opt("-q", "--quiet", kind=FLAG, help="(no progress is printed anyway)"),
        ),
        (
            ("source", ONE, "CONTAINER:SRC_PATH|SRC_PATH|-"),
            ("destination", ONE, "CONTAINER:DEST_PATH|DEST_PATH|-"),
        ),
    ),
)

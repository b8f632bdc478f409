"""Compiled seccomp programs kept under ``--root`` (``<root>/.seccomp/``): Podman and
containerd create every container with the same profile, and compiling it (importing the
compiler, resolving some 400 names, building the BPF) cost ~4-5 ms of CPU per ``create``;
reading the program back costs a file read.

An entry is the whole key (the profile as config.json gave it, the bounding capabilities,
the machine, and size and mtime of the compiler's source files, so that an upgrade of boxd
compiles again), a NUL, then the program.  It is used only when the stored key equals the
key byte for byte: the file's name (a CRC of the key) only finds it, a collision costs a
compile.  Entries are written to a file of the writer's own and renamed, so a reader sees
a whole entry or none.  ``.seccomp`` cannot be a container's directory (ids start with a
letter or digit); the cache is as trusted as the containers' state beside it.
"""

from __future__ import annotations

import contextlib
import os
import zlib

from ._state import dumps

TYPE_CHECKING = False  # not typing's: boxd-runtime create does without typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_BOXD = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the program depends on besides the profile: the compiler, its syscall and
# capability tables, and the profile's preparation (_translate._skip_unknown).
_SOURCES = ("_seccomp.py", "_syscalls.py", "_caps.py", os.path.join("_oci", "_translate.py"))
_INSTRUCTION = 8  # sizeof(struct sock_filter)


def _compiler_stamp() -> list[str] | None:
    stamp = []
    for name in _SOURCES:
        try:
            st = os.stat(os.path.join(_BOXD, name))
        except OSError:
            return None  # not installed as files: compile every time
        stamp.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return stamp


def program(
    cache_dir: str, section: dict[str, Any], bounding: int, compile_: Callable[[], bytes]
) -> bytes:
    """The program of ``section`` from the cache in ``cache_dir``, or ``compile_()``'s,
    stored there for the next ``create``."""
    stamp = _compiler_stamp()
    if stamp is None:
        return compile_()
    key = dumps([stamp, os.uname().machine, bounding, section]).encode()
    directory = os.path.join(cache_dir, ".seccomp")
    path = os.path.join(directory, f"{zlib.crc32(key):08x}-{len(key)}")
    try:
        with open(path, "rb") as f:
            entry = f.read()
    except FileNotFoundError:
        entry = b""
    stored = entry[len(key) + 1 :]
    if entry[: len(key) + 1] == key + b"\0" and stored and len(stored) % _INSTRUCTION == 0:
        return stored
    compiled = compile_()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(key + b"\0" + compiled)
        os.rename(tmp, path)
    except OSError:  # a full or read-only file system: the next create compiles again
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return compiled

"""Files named on the command line: ``--env-file``, ``--label-file`` and ``--cidfile``,
read and written as Docker does."""

from __future__ import annotations

import os

from ._client import USAGE, CliError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Sequence


def read_lines(path: str, option: str) -> list[str]:
    """The ``KEY=VALUE`` or ``KEY`` lines of an env or label file: blank lines and lines
    starting with ``#`` are skipped, leading whitespace is dropped, the rest is kept as
    written (a value may hold spaces, ``=`` and quotes, which stay part of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CliError(f"invalid {option} {path!r}: {reason}", USAGE) from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or "\0" in line or any(c.isspace() for c in key):
            raise CliError(
                f"invalid {option} {path!r}: line {number}: {key!r} is not a name", USAGE
            )
        lines.append(line)
    return lines


def env_list(files: Sequence[str], values: Sequence[str]) -> list[str]:
    """The environment from ``--env-file`` files, then ``-e`` (later wins, as in Docker).
    A bare name passes the caller's value, and is left out when the caller has none."""
    env = []
    for value in values:  # a file's lines are checked as it is read
        if not value.partition("=")[0]:
            raise CliError(f"invalid --env {value!r}: use KEY=VALUE or KEY", USAGE)
    for item in [line for path in files for line in read_lines(path, "--env-file")] + list(values):
        if "=" in item:
            env.append(item)
        elif item in os.environ:
            env.append(f"{item}={os.environ[item]}")
    return env


def label_list(files: Sequence[str], values: Sequence[str]) -> list[str]:
    """Labels from ``--label-file`` files, then ``--label`` (later wins); ``KEY`` alone is a
    label with an empty value."""
    labels: dict[str, str] = {}
    for item in [line for path in files for line in read_lines(path, "--label-file")] + list(
        values
    ):
        key, _, value = item.partition("=")
        labels[key] = value
    return [f"{k}={v}" for k, v in labels.items()]


def open_cidfile(path: str | None) -> int | None:
    """Claim the ``--cidfile`` before anything is created: it must not exist yet (it may
    belong to a container still running).  The descriptor to write the id to."""
    if path is None:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise CliError(
            f"container ID file found, make sure the other container isn't running or "
            f"delete {path}",
            USAGE,
        ) from None
    except OSError as exc:
        raise CliError(f"invalid --cidfile {path!r}: {exc.strerror}", USAGE) from None


def write_cidfile(fd: int | None, cid: str) -> None:
    if fd is not None:
        os.write(fd, cid.encode())
        os.close(fd)


def abandon_cidfile(fd: int | None, path: str | None) -> None:
    """Nothing was created: the claimed file goes."""
    if fd is not None and path is not None:
        os.close(fd)
        os.unlink(path)

"""``boxd-runtime``: the OCI runtime command line (runc's), as conmon, containerd's shim and
Podman call it.  Errors go to stderr and, with ``--log``, to the log file in the chosen
format (``--log-format json``: one ``{"level", "msg", "time"}`` object a line, which
conmon and the shim read back); the exit code is then 1, as runc's.

Every command is a new process, and conmon or the shim run several per container, so this
module imports only what each command needs: ``start``, ``state``, ``kill``, ``delete``,
``list`` and ``ps`` (:mod:`._quick`) no Trio, attrs or cattrs; ``create``, ``run`` and
``exec`` the spec's records and the spawn path (:mod:`._runtime`), still without Trio
(``pause``, and a ``delete`` that must kill what is left in a cgroup, use it).  Not
argparse either (its import and parser building cost more than ``state`` itself): a table
of runc's options per command, read as Go's flag package reads them (``--opt VALUE``,
``--opt=VALUE``, ``-opt``; options end at the first operand or ``--``).
"""

from __future__ import annotations

import gc
import os
import sys

from ._state import DEFAULT_ROOT, NotFound, OciError, Root, dumps, now

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

    from . import _runtime

FLAG, VALUE, INT, LIST = "flag", "value", "int", "list"

# option names (the first is the destination, without dashes) -> kind
Options = dict[tuple[str, ...], str]
_GLOBAL: Options = {
    ("root",): VALUE,
    ("log",): VALUE,
    ("log-format",): VALUE,
    ("debug",): FLAG,
    ("systemd-cgroup",): FLAG,
    ("rootless",): VALUE,  # accepted as runc's callers pass it; boxd-runtime runs as root
    ("criu",): VALUE,  # accepted (checkpointing is not a command here)
}
_CREATING: Options = {
    ("bundle", "b"): VALUE,
    ("pid-file",): VALUE,
    ("console-socket",): VALUE,
    ("no-pivot",): FLAG,
    ("no-new-keyring",): FLAG,
    ("preserve-fds",): INT,
}
_FORMAT: Options = {("format", "f"): VALUE}
# command -> (help, options, operands: names, "?" optional, "*" the rest of the words)
COMMANDS: dict[str, tuple[str, Options, tuple[str, ...]]] = {
    "create": ("create a container; its process waits for start", _CREATING, ("id",)),
    "run": (
        "create and start a container (and wait for it, unless -d)",
        {**_CREATING, ("detach", "d"): FLAG, ("keep",): FLAG},
        ("id",),
    ),
    "start": ("start a created container", {}, ("id",)),
    "state": ("the container's state (JSON)", {}, ("id",)),
    "kill": (
        "send a signal (default SIGTERM) to the init or --all",
        {("all", "a"): FLAG},
        ("id", "signal?"),
    ),
    "delete": (
        "delete a stopped (or, with --force, any) container",
        {("force", "f"): FLAG},
        ("id",),
    ),
    "exec": (
        "run a process in a container",
        {
            ("process", "p"): VALUE,
            ("tty", "t"): FLAG,
            ("console-socket",): VALUE,
            ("detach", "d"): FLAG,
            ("pid-file",): VALUE,
            ("cwd",): VALUE,
            ("env", "e"): LIST,
            ("user", "u"): VALUE,
            ("preserve-fds",): INT,
        },
        ("id", "args*"),
    ),
    "pause": ("freeze every process of a container", {}, ("id",)),
    "resume": ("thaw a paused container", {}, ("id",)),
    "list": ("the containers under --root", {**_FORMAT, ("quiet", "q"): FLAG}, ()),
    "ps": ("the processes of a container", _FORMAT, ("id", "ps_args*")),
    "update": (
        "change a container's resource limits",
        {("resources", "r"): VALUE},
        ("id",),
    ),
    "features": ("what this runtime supports (JSON)", {}, ()),
}
USAGE = "usage: boxd-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND"


class UsageError(Exception):
    pass


class Help(Exception):
    """``--help`` (or ``-h``) where an option may be: the usage goes to stdout."""


def _usage() -> str:
    lines = [USAGE, "", "An OCI runtime (runc's command line) on boxd's spawn path.", ""]
    for name, (help_, options, operands) in COMMANDS.items():
        words = [f"--{names[0]}" for names in options]
        args = [o.rstrip("?*").upper() for o in operands]
        lines.append(f"  {name:9} {help_}")
        lines.append(f"            {' '.join([*words, *args])}".rstrip())
    return "\n".join(lines)


def _parse_options(
    words: list[str], table: Options, values: dict[str, Any], where: str
) -> list[str]:
    """Read the options of ``table`` from the front of ``words``; return the rest."""
    by_name = {name: (names[0], kind) for names, kind in table.items() for name in names}
    for names, kind in table.items():
        values.setdefault(
            names[0].replace("-", "_"), [] if kind == LIST else False if kind == FLAG else None
        )
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return words[i + 1 :]
        if not word.startswith("-") or word == "-":
            break
        name, eq, value = word.lstrip("-").partition("=")
        if name in ("help", "h"):
            raise Help
        found = by_name.get(name)
        if found is None:
            raise UsageError(f"{where}: flag provided but not defined: {word.split('=')[0]}")
        dest, kind = found[0].replace("-", "_"), found[1]
        if kind == FLAG:
            if eq and value not in ("true", "false", "1", "0"):
                raise UsageError(f"{where}: invalid boolean value {value!r} for {word}")
            values[dest] = not eq or value in ("true", "1")
            i += 1
            continue
        if not eq:
            if i + 1 >= len(words):
                raise UsageError(f"{where}: flag needs an argument: {word}")
            i += 1
            value = words[i]
        if kind == INT:
            if not value.lstrip("-").isdigit():
                raise UsageError(f"{where}: invalid value {value!r} for {word}: not a number")
            values[dest] = int(value)
        elif kind == LIST:
            values[dest].append(value)
        else:
            values[dest] = value
        i += 1
    return words[i:]


def parse(argv: Sequence[str]) -> dict[str, Any]:
    """The global options, ``command`` and the command's options and operands."""
    values: dict[str, Any] = {}
    rest = _parse_options(list(argv), _GLOBAL, values, "boxd-runtime")
    if not rest:
        raise UsageError(_usage())
    command = values["command"] = rest[0]
    if command in ("checkpoint", "restore"):
        # Podman asks `checkpoint --help` whether a runtime can: this fails, as it should.
        raise UsageError(
            f"boxd-runtime {command}: checkpoint/restore (CRIU) is not supported by boxd-runtime"
        )
    if command not in COMMANDS:
        raise UsageError(f"boxd-runtime: no such command {command!r}\n{USAGE}")
    _, table, operands = COMMANDS[command]
    words = _parse_options(rest[1:], table, values, command)
    for operand in operands:
        if operand.endswith("*"):
            values[operand[:-1]] = words
            words = []
        elif words:
            values[operand.rstrip("?")] = words.pop(0)
        elif operand.endswith("?"):
            values[operand[:-1]] = None
        else:
            raise UsageError(f"{command}: the container id is required")
    if words:
        raise UsageError(f"{command}: unexpected argument {words[0]!r}")
    if values["log_format"] not in (None, "text", "json"):
        raise UsageError(f"--log-format {values['log_format']!r}: use text or json")
    return values


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        if self.path is None:
            return
        time = now()
        if self.fmt == "json":
            line = dumps({"level": level, "msg": msg, "time": time})
        else:
            line = f"time={dumps(time)} level={level} msg={dumps(msg)}"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def error(self, msg: str) -> None:
        self._write("error", msg)
        print(msg, file=sys.stderr)

    def debug(self, msg: str) -> None:
        if self.debug_on:
            self._write("debug", msg)
            if self.path is None:
                print(f"debug: {msg}", file=sys.stderr)


def _load_json(path: str, what: str) -> Any:
    from ._state import loads

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        return loads(text)
    except OSError as exc:
        raise OciError(f"{what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise OciError(f"{what} {path}: invalid JSON: {exc}") from None


def _create_options(args: dict[str, Any]) -> _runtime.CreateOptions:
    from . import _runtime

    if args["preserve_fds"] is not None and args["preserve_fds"] < 0:
        raise OciError(f"--preserve-fds {args['preserve_fds']} must not be negative")
    return _runtime.CreateOptions(
        bundle=args["bundle"] or ".",
        pid_file=args["pid_file"],
        console_socket=args["console_socket"],
        preserve_fds=args["preserve_fds"] or 0,
        no_pivot=args["no_pivot"],
        systemd_cgroup=args["systemd_cgroup"],
    )


def _ps(root: Root, args: dict[str, Any]) -> int:
    import subprocess

    from . import _quick

    pids = _quick.procs(root.load(args["id"]))
    if args["format"] == "json":
        print(dumps(pids))
        return 0
    done = subprocess.run(
        ["ps", *(args["ps_args"] or ["-ef"])], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise OciError(f"ps: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise OciError("ps: its output has no PID column")
    column = header.index("PID")
    print(lines[0])
    wanted = {str(p) for p in pids}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            print(line)
    return 0


def _list(root: Root, args: dict[str, Any]) -> int:
    from . import _quick

    states = _quick.list_states(root)
    if args["quiet"]:
        for s in states:
            print(s["id"])
    elif args["format"] == "json":
        print(dumps(states or None))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [
            (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
            for s in states
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _exec(root: Root, args: dict[str, Any]) -> int:
    from . import _runtime

    process = _load_json(args["process"], "--process") if args["process"] else None
    words = args["args"]
    options = _runtime.ExecOptions(
        process=process,
        args=tuple(words[1:] if words[:1] == ["--"] else words),
        tty=args["tty"],
        console_socket=args["console_socket"],
        detach=args["detach"],
        pid_file=args["pid_file"],
        cwd=args["cwd"],
        env=tuple(args["env"]),
        user=args["user"],
        preserve_fds=args["preserve_fds"] or 0,
    )
    return _runtime.exec_(root, args["id"], options)


def _dispatch(args: dict[str, Any], log: _Log) -> int:
    root = Root(args["root"] or DEFAULT_ROOT)
    command = args["command"]
    if command in ("start", "state", "kill", "delete"):
        from . import _quick

        if command == "start":
            _quick.start(root, args["id"])
        elif command == "state":
            print(dumps(_quick.state(root, args["id"])))
        elif command == "kill":
            _quick.kill(root, args["id"], args["signal"] or "SIGTERM", args["all"])
        elif not _quick.delete(root, args["id"], args["force"]):
            from . import _runtime

            _runtime.remove(root, args["id"], args["force"])
        return 0
    if command == "list":
        return _list(root, args)
    if command == "ps":
        return _ps(root, args)
    if command == "exec":
        return _exec(root, args)
    if command in ("create", "run"):
        # No garbage collection: importing the spawn path and building the plan made the
        # collector run ten times (~1.5 ms of create's CPU) for objects that live until the
        # process ends (os._exit, see _exit); `run` then waits in waitid, allocating nothing.
        gc.disable()
    from . import _runtime  # the commands below need the records or the spawn path

    if command == "features":
        import json

        print(json.dumps(_runtime.features(), indent=4))
        return 0
    if command == "create":
        spawned = _runtime.create(root, args["id"], _create_options(args))
        log.debug(f"created {args['id']}: init pid {spawned.pid}")
        os.close(spawned.pidfd)
        return 0
    if command == "run":
        return _runtime.run(
            root, args["id"], _create_options(args), detach=args["detach"], keep=args["keep"]
        )
    if command == "update":
        if args["resources"] is None:
            raise UsageError("update: --resources FILE (or - for stdin) is required")
        _runtime.update(root, args["id"], _load_json(args["resources"], "--resources"))
        return 0
    assert command in ("pause", "resume")
    import trio

    trio.run(_runtime.pause, root, args["id"], command == "pause")
    return 0


def _message(exc: BaseException) -> str:
    """What the caller reads: an OSError without Python's ``[Errno N]`` decoration."""
    native = sys.modules.get("boxd._native")  # a SpawnError comes from there, if at all
    spawn_error = native is not None and isinstance(exc, native.SpawnError)
    if isinstance(exc, OSError) and exc.strerror and not spawn_error:
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _exit(code: int) -> NoReturn:
    """End the process without the interpreter's finalization: its module teardown and
    garbage collection cost 3-10 ms of CPU here (more the more modules ``create`` loaded),
    and this process holds nothing that needs it (the log file is closed after each line,
    the state written and closed, the init is a separate process).  Only the standard
    streams' buffers are flushed; a flush that fails exits 120, as the interpreter does."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = 120
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] in (["--version"], ["-v"], ["version"]):
        from .. import __version__
        from ._state import OCI_VERSION

        print(f"boxd-runtime version {__version__}\nspec: {OCI_VERSION}")
        sys.exit(0)
    try:
        args = parse(["--help"] if words[:1] == ["help"] else words)
    except Help:
        print(_usage())
        sys.exit(0)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
    log = _Log(args["log"], args["log_format"] or "text", args["debug"])
    log.debug(f"boxd-runtime {' '.join(words)}")
    try:
        code = _dispatch(args, log)
    except (NotFound, OciError, UsageError, ValueError, OSError) as exc:
        log.error(_message(exc))
        code = 1
    _exit(code)

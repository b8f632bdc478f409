"""``boxd-runtime``: the OCI runtime command line (runc's), as conmon, containerd's shim and
Podman call it.  Errors go to stderr and, with ``--log``, to the log file in the chosen
format (``--log-format json``: one ``{"level", "msg", "time"}`` object a line, which
conmon and the shim read back); the exit code is then 1, as runc's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from .._native import SpawnError
from . import _runtime
from ._state import DEFAULT_ROOT, NotFound, Root


class _Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def _write(self, level: str, msg: str) -> None:
        if self.path is None:
            return
        time = _runtime.now()
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": time})
        else:
            line = f"time={json.dumps(time)} level={level} msg={json.dumps(msg)}"
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="boxd-runtime",
        description="An OCI runtime (runc's command line) on boxd's spawn path.",
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", help="log file (errors, and with --debug debug lines)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", help=argparse.SUPPRESS)
    p.add_argument("--criu", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def creating(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--bundle", "-b", default=".")
        c.add_argument("--pid-file")
        c.add_argument("--console-socket")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument("id")
        return c

    creating("create", "create a container; its process waits for start")
    r = creating("run", "create and start a container (and wait for it, unless -d)")
    r.add_argument("--detach", "-d", action="store_true")
    r.add_argument("--keep", action="store_true", help="do not delete it after it exits")
    for name, help_ in (
        ("start", "start a created container"),
        ("pause", "freeze every process of a container"),
        ("resume", "thaw a paused container"),
        ("state", "the container's state (JSON)"),
    ):
        sub.add_parser(name, help=help_).add_argument("id")
    k = sub.add_parser("kill", help="send a signal (default SIGTERM) to the init or --all")
    k.add_argument("--all", "-a", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = sub.add_parser("delete", help="delete a stopped (or, with --force, any) container")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("id")
    e = sub.add_parser("exec", help="run a process in a container")
    e.add_argument("--process", "-p")
    e.add_argument("--tty", "-t", action="store_true")
    e.add_argument("--console-socket")
    e.add_argument("--detach", "-d", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--cwd")
    e.add_argument("--env", "-e", action="append", default=[])
    e.add_argument("--user", "-u")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    ls = sub.add_parser("list", help="the containers under --root")
    ls.add_argument("--format", "-f", choices=("table", "json"), default="table")
    ls.add_argument("--quiet", "-q", action="store_true")
    ps = sub.add_parser("ps", help="the processes of a container")
    ps.add_argument("--format", "-f", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    u = sub.add_parser("update", help="change a container's resource limits")
    u.add_argument("--resources", "-r", required=True, help="a JSON file, - for stdin")
    u.add_argument("id")
    sub.add_parser("features", help="what this runtime supports (JSON)")
    return p


def _load_json(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise _runtime.OciError(f"{what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise _runtime.OciError(f"{what} {path}: invalid JSON: {exc}") from None


def _create_options(args: argparse.Namespace) -> _runtime.CreateOptions:
    if args.preserve_fds < 0:
        raise _runtime.OciError(f"--preserve-fds {args.preserve_fds} must not be negative")
    return _runtime.CreateOptions(
        bundle=Path(args.bundle),
        pid_file=args.pid_file,
        console_socket=args.console_socket,
        preserve_fds=args.preserve_fds,
        no_pivot=args.no_pivot,
        systemd_cgroup=args.systemd_cgroup,
    )


def _ps(root: Root, args: argparse.Namespace) -> int:
    pids = _runtime.container_pids(root, args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return 0
    done = subprocess.run(
        ["ps", *(args.ps_args or ["-ef"])], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise _runtime.OciError(f"ps: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise _runtime.OciError("ps: its output has no PID column")
    column = header.index("PID")
    print(lines[0])
    wanted = {str(p) for p in pids}
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            print(line)
    return 0


def _list(root: Root, args: argparse.Namespace) -> int:
    states = _runtime.list_states(root)
    if args.quiet:
        for s in states:
            print(s["id"])
    elif args.format == "json":
        print(json.dumps(states or None))
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


async def _dispatch(args: argparse.Namespace, log: _Log) -> int:
    root = Root(args.root)
    command = args.command
    if command == "features":
        print(json.dumps(_runtime.features(), indent=4))
        return 0
    if command == "list":
        return _list(root, args)
    if command == "create":
        spawned = await _runtime.create(root, args.id, _create_options(args))
        log.debug(f"created {args.id}: init pid {spawned.pid}")
        return 0
    if command == "run":
        return await _runtime.run(
            root, args.id, _create_options(args), detach=args.detach, keep=args.keep
        )
    if command == "start":
        _runtime.start(root, args.id)
        return 0
    if command == "state":
        saved = root.load(args.id)
        state = _runtime.state_document(saved, _runtime.status_of(root, saved))
        state["rootfs"] = str(
            Path(saved.bundle) / ((saved.config.get("root") or {}).get("path") or "")
        )
        state["created"] = saved.created
        state["owner"] = ""
        print(json.dumps(state, indent=2))
        return 0
    if command == "kill":
        _runtime.kill(root, args.id, _runtime.parse_signal(args.signal), args.all)
        return 0
    if command == "delete":
        try:
            await _runtime.delete(root, args.id, args.force)
        except NotFound:
            if not args.force:
                raise
        return 0
    if command in ("pause", "resume"):
        await _runtime.pause(root, args.id, command == "pause")
        return 0
    if command == "ps":
        return _ps(root, args)
    if command == "update":
        _runtime.update(root, args.id, _load_json(args.resources, "--resources"))
        return 0
    assert command == "exec"
    process = _load_json(args.process, "--process") if args.process else None
    cmd = args.args[1:] if args.args[:1] == ["--"] else args.args
    options = _runtime.ExecOptions(
        process=process,
        args=tuple(cmd),
        tty=args.tty,
        console_socket=args.console_socket,
        detach=args.detach,
        pid_file=args.pid_file,
        cwd=args.cwd,
        env=tuple(args.env),
        user=args.user,
        preserve_fds=args.preserve_fds,
    )
    return await _runtime.exec_(root, args.id, options)


def _message(exc: BaseException) -> str:
    """What the caller reads: an OSError without Python's ``[Errno N]`` decoration."""
    if isinstance(exc, OSError) and not isinstance(exc, SpawnError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    log = _Log(args.log, args.log_format, args.debug)
    log.debug(f"boxd-runtime {' '.join(sys.argv[1:] if argv is None else argv)}")
    try:
        code = trio.run(_dispatch, args, log)
    except (NotFound, _runtime.OciError, ValueError, OSError) as exc:
        log.error(_message(exc))
        sys.exit(1)
    sys.exit(code)

"""``boxctl``: Docker's vocabulary for boxd, with the seed's command names as aliases."""

from __future__ import annotations

import os
import sys

from boxd import _wirejson

from . import _args
from ._args import ANY, APPEND, BOOL, FLOAT, INT, ONE, REST, SOME, VALUE, Args, Command, Opt
from ._client import OPERANDS, USAGE, Client, CliError, call, check, socket_path, terminal_size

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, NoReturn


def _tmpfs(spec: str) -> str:
    from boxd._tmpfs import parse_tmpfs

    try:
        parse_tmpfs(spec)
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    return spec


def _ulimit(text: str) -> dict[str, Any]:
    from boxd._ulimits import parse_ulimit

    try:
        name, soft, hard = parse_ulimit(text)
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    return {"name": name, "soft": soft, "hard": hard}


def _security(opts: Sequence[str]) -> dict[str, Any]:
    from boxd import _secopt

    sec: dict[str, Any] = {}
    for opt in opts:
        key, sep, value = _secopt.split(opt)
        try:
            nothing = _secopt.asks_for_nothing(key, value)
        except ValueError as exc:
            raise CliError(f"invalid --security-opt {opt!r}: {exc}", USAGE) from None
        if nothing:
            continue  # apparmor=unconfined, label=disable: what boxd does anyway
        if key == "no-new-privileges" and value in ("", "true", "false"):
            sec["no_new_privileges"] = value != "false"
        elif key == "seccomp" and sep and value:
            sec["seccomp"] = value if value in ("unconfined", "default") else os.path.abspath(value)
        elif key == "systempaths" and value == "unconfined":  # /proc and /sys unmasked
            sec["masked_paths"] = sec["readonly_paths"] = []
        else:
            raise CliError(
                f"invalid --security-opt {opt!r}: use no-new-privileges[=false], "
                "seccomp=unconfined|PROFILE.json, systempaths=unconfined, apparmor=unconfined "
                "or label=disable",
                USAGE,
            )
    return sec


def _resources(args: Args) -> dict[str, Any]:
    from boxd import _units

    res: dict[str, Any] = {}
    try:
        res.update(_units.memory_limits(args.memory, args.memory_swap))
        if args.cpus is not None and (cpus := _units.parse_cpus(args.cpus)):
            res["cpus"] = cpus
        if _runopts_given(args):
            from . import _limits

            res.update(_limits.resources(args))
    except ValueError as exc:
        raise CliError(str(exc), USAGE) from None
    if args.cpu_shares:  # 0: not given, as Docker reads it
        res["cpu_shares"] = args.cpu_shares
    if args.pids_limit is not None:
        # As Docker's: any negative number is no limit.
        res["pids_limit"] = max(args.pids_limit, -1)
    if args.cpuset_cpus is not None:
        res["cpuset_cpus"] = args.cpuset_cpus
    return res


def _runopts_given(args: Args) -> bool:
    """Whether one of boxctl._runopts' limits was given (``update`` has only LIMITS)."""
    from . import _runopts

    options = _runopts.LIMITS + _runopts.RUN_LIMITS
    return any(getattr(args, o.dest, o.default) not in (o.default, []) for o in options)


def _is_directory(word: str) -> bool:
    """A root filesystem directory rather than an image reference: a path as written."""
    return word.startswith(("/", "./", "../", "~")) or word in (".", "..")


def _config(args: Args) -> tuple[dict[str, Any], str]:
    from boxd import _fixedmodes

    from . import _runopts

    _args.check_content_trust(args)
    # --userns private (Podman's word, and what the Engine API's inspect shows of it):
    # boxd's own user namespace, --isolate-user.
    private_userns = args.userns == "private"
    for mode in ("userns", "isolation"):  # before any pull
        try:
            value = getattr(args, mode) or ""
            _fixedmodes.check(mode, "" if mode == "userns" and private_userns else value)
        except ValueError as exc:
            raise CliError(str(exc), USAGE) from None
    words = list(args.words)
    reference = False
    if args.rootfs:
        image = os.path.abspath(args.rootfs)
    elif words:
        image = words.pop(0)
        if _is_directory(image):
            image = os.path.abspath(os.path.expanduser(image))
        reference = image != "default" and not image.startswith("/")
    else:
        raise CliError(
            f"{args.prog}: an IMAGE (a reference, default, or a root filesystem directory) "
            "is required",
            OPERANDS,
            "operands",
        )
    # --entrypoint replaces the image's command too (Docker's rule): no /bin/sh then.
    if not words and not reference and args.entrypoint is None:
        words = ["/bin/sh"]
    if reference:
        from ._images import ensure_image

        ensure_image(args, image)
    elif args.platform:
        from ._images import ensure_platform

        ensure_platform(args, image)
    # Several --network, or one in Docker 25's fields, are read with the network options.
    network = "none" if args.isolate_network else (args.network or ["bridge"])[0]
    config: dict[str, Any] = {
        "image": image,
        "command": words,
        "workdir": args.workdir or ("" if reference else "/"),
        "user": args.user or "",
        "group_add": args.group_add,
        "hostname": args.hostname or "",
        "domainname": args.domainname or "",
        "extra_hosts": args.add_host,
        "tty": args.tty,
        "interactive": args.interactive,
        "network": network,
        "userns": args.isolate_user or private_userns,
        "pid_mode": args.pid or "",
        "ipc_mode": args.ipc or "",
        "uts_mode": args.uts or "",
        "cgroupns_mode": args.cgroupns or "",
        "read_only": args.read_only,
        "binds": [],  # as the docker CLI sends none: the image's volumes are not binds
        "resources": _resources(args),
        "security": {
            "privileged": args.privileged,
            "cap_add": args.cap_add,
            "cap_drop": args.cap_drop,
            **_security(args.security_opt),
        },
        "restart": _restart(args.restart),
        "stop_signal": args.stop_signal,
        "auto_remove": args.rm,
        "procview": args.procview == "on",
        "cgroup_parent": args.cgroup_parent or "",
    }
    # A terminal has our size from its first instruction (Docker's ConsoleSize), not 24x80
    # until the first resize frame: a program reads it once at its start.
    if args.tty and (size := console_size()) is not None:
        config["console_size"] = size
    # The fields of options not given are left out (the daemon's defaults: empty), and so
    # are the imports of the modules that read them.
    if args.env or args.env_file or args.label or args.label_file:
        from . import _files

        config["env"] = _files.env_list(args.env_file, args.env)
        config["labels"] = _files.label_list(args.label_file, args.label)
    if _runopts.given(args, _runopts.NETWORK) or len(args.network) > 1 or "=" in network:
        from ._network import published

        config.update(published(args))
    tmpfs = [_tmpfs(spec) for spec in args.tmpfs]
    if _runopts.given(args, _runopts.VOLUMES):
        from ._volumes import run_mounts

        mounts = run_mounts(args)
        tmpfs += mounts.pop("tmpfs")
        config.update(mounts)
    if tmpfs:
        config["tmpfs"] = tmpfs
    if args.stop_timeout is not None:
        config["stop_timeout"] = args.stop_timeout
    if args.timeout is not None:
        config["timeout"] = args.timeout
    if args.runtime:
        config["runtime"] = args.runtime
    if args.annotation:
        config["annotations"] = args.annotation
    if args.security_opt:
        config["security_opt"] = args.security_opt
    if args.isolation:
        config["isolation"] = args.isolation
    if args.userns and not private_userns:
        config["userns_mode"] = args.userns
    if args.entrypoint is not None:
        config["entrypoint"] = [args.entrypoint] if args.entrypoint else []
    config["ulimits"] = [_ulimit(text) for text in args.ulimit]
    if args.init:
        config["init"] = True
    if args.sysctl:
        config["sysctls"] = args.sysctl
    if args.device:
        from boxd import _devicespecs

        try:
            mappings = [_devicespecs.parse(text) for text in args.device]
        except ValueError as exc:
            raise CliError(str(exc), USAGE) from None
        config["devices"] = [
            {"host": host, "container": container, "permissions": permissions}
            for host, container, permissions in mappings
        ]
    if args.device_cgroup_rule:
        config["device_cgroup_rules"] = args.device_cgroup_rule
    if args.oom_score_adj is not None:
        config["oom_score_adj"] = args.oom_score_adj
    if _runopts.given(args, _runopts.HEALTH):
        from ._health import healthcheck

        if (check := healthcheck(args)) is not None:
            config["healthcheck"] = check
    from boxd import _units

    if args.shm_size is not None:
        try:
            config["shm_size"] = _units.parse_size(args.shm_size, what="--shm-size")
        except ValueError as exc:
            raise CliError(str(exc), USAGE) from None
    files = args.log_max_files
    if args.log_max_size is not None:
        try:
            config["log_max_size"] = _units.parse_size(args.log_max_size, what="--log-max-size")
        except ValueError as exc:
            raise CliError(str(exc), USAGE) from None
    kept = []
    for opt in args.log_opt:
        key, eq, value = opt.partition("=")
        if not eq:
            raise CliError(f"invalid --log-opt {opt!r}: expected KEY=VALUE", USAGE)
        if key in _units.KEPT_LOG_OPTIONS or key in _units.DRIVER_LOG_OPTIONS:
            kept.append(opt)  # checked with the configuration
            continue
        try:
            option = _units.log_option(key, value, taken=_units.CONTAINER_LOG_OPTIONS)
        except ValueError as exc:
            raise CliError(f"invalid --log-opt {opt!r}: {exc}", USAGE) from None
        if option[0] == "max-size":
            config["log_max_size"] = option[1]
        else:
            files = option[1]
    if kept:
        config["log_options"] = tuple(kept)
    if args.log_driver is not None:
        config["log_driver"] = args.log_driver
    if files is not None:
        if files < 1:
            raise CliError(f"invalid --log-max-files {files}: must be >= 1", USAGE)
        config["log_max_files"] = files
    return config, args.name or ""


def _restart(text: str) -> dict[str, Any]:
    """Docker's policy words; a count of 0 is no limit (``on-failure:0``), and the one
    count the other policies take, as Docker's."""
    name, _, count = text.partition(":")
    if name not in ("no", "on-failure", "always", "unless-stopped") or (
        count and (not count.isdigit() or (name != "on-failure" and int(count)))
    ):
        raise CliError(
            f"invalid --restart {text!r}: use no, on-failure[:max], always or unless-stopped",
            USAGE,
        )
    return {"name": name, "max_retries": int(count) if count else 0}


# ---- commands -------------------------------------------------------------------------


def _run_failure(exc: CliError) -> CliError:
    """``run`` and ``create`` exit 125 whatever went wrong before the container ran (a
    refused value, an image that cannot be pulled, a name in use, no daemon), as Docker's
    do; 126 and 127 keep their meaning, and so does a missing IMAGE's 1 (the docker CLI's
    "requires at least 1 argument")."""
    if exc.code == 1 and exc.kind != "operands":
        exc.code = USAGE
    return exc


def _warn(response: dict[str, Any]) -> None:
    """The options the daemon's host ignores, as the docker CLI shows them."""
    for warning in response.get("warnings", ()):
        print(f"WARNING: {warning}", file=sys.stderr)


def cmd_create(args: Args) -> int:
    from . import _files

    try:
        config, name = _config(args)
        # Docker's client: -i attaches stdin, so its end (or the client's going away)
        # closes the container's stdin, at every `start -ai` too.
        config["stdin_once"] = args.interactive
        # -a as the docker CLI's create takes it: the streams inspect shows attached
        # (stdout and stderr without it; stdin with -i or -a stdin).
        streams = _attach_streams(args) if args.attach else {"stdout", "stderr"}
        config["attach"] = _attach_config(args.interactive or "stdin" in streams, streams)
        cidfile = _files.open_cidfile(args.cidfile)
        try:
            response = call(args.socket, {"type": "CreateRequest", "config": config, "name": name})
        except BaseException:
            _files.abandon_cidfile(cidfile, args.cidfile)
            raise
    except CliError as exc:
        raise _run_failure(exc) from None
    _files.write_cidfile(cidfile, response["id"])
    _warn(response)
    print(response["id"])
    return 0


def cmd_run(args: Args) -> int:
    """One request creates and starts (and, in the foreground, streams): one connection,
    one round trip before the container runs."""
    if args.attach and args.detach:
        raise CliError("conflicting options: -a and -d", USAGE)
    streams = _attach_streams(args)
    # -i attaches stdin whatever -a names, as Docker's client does: `-a stdout -i` without
    # it left the container waiting for input that never came.
    stdin = args.interactive
    keys = b""
    if not args.detach:
        _check_tty(stdin=stdin, tty_mode=args.tty)
        # Refused here, not in the try below: a bad value ends Docker's client with 1.
        keys = parse_detach_keys(args.detach_keys)
    created = False
    try:
        config, name = _config(args)
        # Docker's StdinOnce: the foreground client's input is the container's, its end
        # closes it; `run -d -i` keeps the stdin open for whoever attaches.
        config["stdin_once"] = stdin and not args.detach
        if not args.detach:
            explicit = "stdin" in streams and bool(args.attach)
            config["attach"] = _attach_config(stdin or explicit, streams)
        request = {
            "type": "RunRequest",
            "config": config,
            "name": name,
            "attach": not args.detach,
            "stdin": stdin,
        }
        cidfile = None
        if args.cidfile is not None:
            from . import _files

            cidfile = _files.open_cidfile(args.cidfile)

        def answered(response: dict[str, Any]) -> None:
            nonlocal created
            created = True
            _warn(response)
            if cidfile is not None:
                _files.write_cidfile(cidfile, response["id"])

        try:
            if args.detach:
                response = call(args.socket, request)
                answered(response)
                print(response["id"])
                return 0
            outputs = tuple(n for s, n in (("stdout", 1), ("stderr", 2)) if s in streams)
            return _attached(
                args,
                request,
                keys,
                stdin=stdin,
                tty_mode=args.tty,
                answered=answered,
                outputs=outputs,
            )
        finally:
            if not created and cidfile is not None:
                _files.abandon_cidfile(cidfile, args.cidfile)
    except CliError as exc:
        # Once the container runs, what fails is the stream's: Docker's client exits 1.
        raise (exc if created else _run_failure(exc)) from None


def _attach_streams(args: Args) -> set[str]:
    """``run -a STREAM``: the streams the client joins (all, without -a)."""
    if not args.attach:
        return {"stdin", "stdout", "stderr"}
    streams = {s.lower() for s in args.attach}
    for s in streams - {"stdin", "stdout", "stderr"}:
        raise CliError(f"invalid --attach {s!r}: use stdin, stdout or stderr", USAGE)
    return streams


def _attach_config(stdin: bool, outputs: set[str]) -> list[str]:
    """The streams a foreground client joins, as the docker CLI tells the daemon at create
    (inspect's Config.AttachStdin, AttachStdout, AttachStderr): stdin with -i or -a stdin,
    the outputs it joins."""
    return ["stdin"] * stdin + [s for s in ("stdout", "stderr") if s in outputs]


def console_size() -> list[int] | None:
    """Our terminal's [rows, columns], which a container's terminal starts with; None if
    stdout is not a terminal (or one without a size)."""
    size = terminal_size()
    return list(size) if size is not None else None


def _check_tty(*, stdin: bool, tty_mode: bool) -> None:
    """A container's terminal takes its input from ours: a pipe or a file cannot be one.
    Refused before anything is asked of the daemon, with Docker's words and exit code."""
    if stdin and tty_mode and not os.isatty(0):
        raise CliError("the input device is not a TTY")


def _attached(
    args: Args,
    request: dict[str, Any],
    keys: bytes,
    *,
    stdin: bool = False,
    tty_mode: bool = False,
    answered: Callable[[dict[str, Any]], None] | None = None,
    outputs: tuple[int, ...] = (1, 2),
) -> int:
    """Send a streaming request and run the terminal loop: the exit code.
    ``answered`` gets the response before the stream starts; ``outputs`` are the streams
    printed (stdout 1, stderr 2).  An AttachResponse decides ``stdin`` and ``tty_mode``.

    Signals are forwarded as by Docker's client: always by ``run`` (``run -t`` without
    ``-i`` leaves the keyboard's Ctrl-C to our terminal: it must reach the container's
    process, not leave it running behind a client that ended), by ``attach``,
    ``start -a`` and ``exec`` only without a TTY.  ``keys``: the detach keys."""
    with Client(args.socket) as client:
        client.send(request)
        # Only streaming commands pay for the terminal machinery, and they load it while
        # the daemon works on the request.
        from . import _attach

        response = client.response()
        if answered is not None:
            answered(response)
        if response["type"] == "AttachResponse":
            stdin, tty_mode = response["stdin"], response["tty"]
        code = _attach.stream(
            client,
            stdin=stdin,
            tty_mode=tty_mode,
            detach_keys=keys,
            sig_proxy=args.sig_proxy and (request["type"] == "RunRequest" or not tty_mode),
            outputs=outputs,
            redraw=request["type"] == "AttachRequest",
        )
    if code is None and request["type"] in ("AttachRequest", "ExecRequest"):
        # Docker's client says so after the detach keys of attach and exec (its error of
        # the input that ended there), exit 1; run and start -a leave quietly (0).
        raise CliError("read escape sequence")
    return 0 if code is None else code


def parse_detach_keys(text: str) -> bytes:
    """``ctrl-p,ctrl-q`` -> b"\\x10\\x11" (boxd._detachkeys); an empty one is the default,
    as Docker's client takes it (``--detach-keys "$KEYS"`` with none set).  A bad value
    exits 1, not 125: Docker's client passes it on to the daemon, which refuses it."""
    from boxd import _detachkeys

    try:
        return _detachkeys.parse(text or _detachkeys.DEFAULT)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _joining(kind: str, container: str, stdin: bool) -> dict[str, Any]:
    """An attaching StartRequest or an AttachRequest.  The daemon answers with the
    container's tty and interactive settings, or refuses a TTY whose input would be a pipe
    or a file (Docker's client check, without asking for the container first)."""
    return {
        "type": kind,
        "container": container,
        "stdin": stdin,
        "input_tty": not stdin or os.isatty(0),
    }


def cmd_start(args: Args) -> int:
    if args.attach:
        if len(args.containers) != 1:
            raise CliError("boxctl start: --attach takes exactly one container", USAGE)
        request = _joining("StartRequest", args.containers[0], args.interactive)
        # Used only if the container has a TTY (the daemon knows, not we).
        if (size := console_size()) is not None:
            request["console_size"] = size
        return _attached(args, {**request, "attach": True}, parse_detach_keys(args.detach_keys))
    return _each(args, lambda ref: call(args.socket, {"type": "StartRequest", "container": ref}))


def cmd_attach(args: Args) -> int:
    request = _joining("AttachRequest", args.container, not args.no_stdin)
    return _attached(args, request, parse_detach_keys(args.detach_keys))


def cmd_exec(args: Args) -> int:
    if not args.command:
        raise CliError("boxctl exec: a COMMAND is required", OPERANDS)
    if not args.detach:
        _check_tty(stdin=args.interactive, tty_mode=args.tty)
    from . import _files

    request = {
        "type": "ExecRequest",
        "container": args.container,
        "command": args.command,
        "env": _files.env_list(args.env_file, args.env),
        "workdir": args.workdir or "",
        "user": args.user or "",
        "tty": args.tty,
        "interactive": args.interactive,
        "privileged": args.privileged,
    }
    if args.detach:  # Docker's exec -d: started, then left alone; its output goes nowhere
        call(args.socket, {**request, "tty": False, "interactive": False, "detach": True})
        return 0
    if args.tty and (size := console_size()) is not None:
        request["console_size"] = size
    keys = parse_detach_keys(args.detach_keys)
    return _attached(args, request, keys, stdin=args.interactive, tty_mode=args.tty)


PARALLEL = 50  # containers handled at once by stop, kill, rm, pause, unpause: Docker's


def _each(
    args: Args,
    action: Callable[[str], object],
    *,
    missing_ok: bool = False,
    parallel: bool = False,
) -> int:
    """Apply to several containers as Docker does: report each failure, go on
    (``missing_ok``: a container that is not there is reported, but no failure, as by
    docker 28's ``rm -f``).  ``parallel``: to all at once (up to :data:`PARALLEL`), as
    Docker's client stops, kills, removes, pauses and unpauses them, so that a stop of
    twenty takes one stop timeout, not twenty; reported in the order given."""
    status = 0
    for ref, failure in zip(
        args.containers, _outcomes(args.containers, action, parallel), strict=True
    ):
        if failure is None:
            print(ref, flush=True)
        else:
            print(f"boxctl: {failure}", file=sys.stderr, flush=True)
            status = status or int(not (missing_ok and failure.kind == "not_found"))
    return status


def _outcomes(
    refs: Sequence[str], action: Callable[[str], object], parallel: bool
) -> Iterator[CliError | None]:
    """Each ref's failure (None: done), in the order of ``refs``, as each is known."""

    def outcome(ref: str) -> CliError | None:
        try:
            action(ref)
        except CliError as exc:
            return exc
        return None

    if not parallel or len(refs) < 2:
        yield from map(outcome, refs)
        return
    import queue
    import threading

    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(refs)):
        todo.put(i)
    done = [threading.Event() for _ in refs]
    results: list[CliError | BaseException | None] = [None] * len(refs)

    def work() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = outcome(refs[i])
            except BaseException as exc:  # raised again by the main thread
                results[i] = exc
            finally:
                done[i].set()

    # Daemon threads, not a pool's: a Ctrl-C ends boxctl at once, as Docker's client,
    # not at the end of every stop under way (the daemon goes on with them).
    for _ in range(min(PARALLEL, len(refs))):
        threading.Thread(target=work, daemon=True).start()
    for i in range(len(refs)):
        done[i].wait()
        result = results[i]
        if result is not None and not isinstance(result, CliError):
            raise result
        yield result


def cmd_stop(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(
            args.socket,
            {"type": "StopRequest", "container": ref, "timeout": args.time, "signal": args.signal},
        ),
        parallel=True,
    )


def cmd_restart(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(
            args.socket,
            {
                "type": "RestartRequest",
                "container": ref,
                "timeout": args.time,
                "signal": args.signal,
            },
        ),
    )


def cmd_kill(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(
            args.socket, {"type": "KillRequest", "container": ref, "signal": args.signal}
        ),
        parallel=True,
    )


def cmd_pause(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(args.socket, {"type": "PauseRequest", "container": ref}),
        parallel=True,
    )


def cmd_unpause(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(args.socket, {"type": "UnpauseRequest", "container": ref}),
        parallel=True,
    )


def cmd_rm(args: Args) -> int:
    return _each(
        args,
        lambda ref: call(
            args.socket,
            {
                "type": "RemoveRequest",
                "container": ref,
                "force": args.force,
                "volumes": args.volumes,
                "link": args.link,
            },
        ),
        missing_ok=args.force,  # Docker's rm -f, as the shell's
        parallel=True,
    )


def cmd_wait(args: Args) -> int:
    status = 0
    for ref in args.containers:
        try:
            print(call(args.socket, {"type": "WaitRequest", "container": ref})["exit_code"])
        except CliError as exc:
            print(f"boxctl: {exc}", file=sys.stderr)
            status = 1
    return status


def _tail(text: str | None) -> int | None:
    """``--tail``/``-n``: a number of lines, or ``all`` (a negative number too, as Docker)."""
    if text is None or text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise CliError(f"invalid --tail {text!r}: a number of lines or all", USAGE) from None
    return n if n >= 0 else None


def cmd_list(args: Args) -> int:
    from . import _ps  # each verb imports what only it needs: boxctl's start stays short

    return _ps.cmd_list(args)


def cmd_inspect(args: Args) -> int:
    from . import _inspect

    return _inspect.cmd_inspect(args)


def cmd_logs(args: Args) -> int:
    # A time copied from `logs -t` names its own line: a microsecond of slack each way,
    # since seconds as a float hold a nanosecond time only to ~256 ns.
    from . import _verbs

    since = _verbs.time_arg(args.since, "--since") - 1e-6 if args.since else None
    until = _verbs.time_arg(args.until, "--until") + 1e-6 if args.until else None
    with Client(args.socket) as client:
        client.request(
            {
                "type": "LogsRequest",
                "container": args.container,
                "tail": _tail(args.tail),
                "since": since,
                "until": until,
                "follow": args.follow,
                "timestamps": args.timestamps,
                "details": args.details,
            }
        )
        out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
        while True:
            frame = client.receive()
            if isinstance(frame, tuple):
                out.get(frame[0], sys.stdout.buffer).write(frame[1])
                out.get(frame[0], sys.stdout.buffer).flush()
            elif frame["type"] == "EndFrame":
                return 0
            else:
                check(frame)


def cmd_info(args: Args) -> int:
    info = call(args.socket, {"type": "InfoRequest"})
    if args.format is not None:  # the fields of docker info's that boxd has
        _print_template(
            args.format,
            {
                "ServerVersion": info["version"],
                "DockerRootDir": info["root"],
                "CgroupVersion": "2" if info["cgroup_mode"] == "v2" else "1",
                "Containers": info["containers"],
                "ContainersRunning": info["running"],
                "ContainersPaused": info["paused"],
                "ContainersStopped": info["stopped"],
                "OSType": "linux",
            },
        )
        return 0
    keys = ("version", "root", "cgroup_mode", "containers", "running", "paused", "stopped")
    for key in (*keys, "procview"):
        print(f"{key}: {info[key]}")
    print(f"docker_socket: {info['docker_socket'] or 'off'}")
    return 0


def _print_template(fmt: str, value: dict[str, Any]) -> None:
    """``--format`` of info and version: a Go template over Docker's field names (one
    unknown is refused, naming it, as Docker's)."""
    from ._template import Template

    print(Template("{{json .}}" if fmt == "json" else fmt, strict=True).render(value))


def cmd_version(args: Args) -> int:
    from boxd import __version__

    if args.format is not None:  # Docker's .Client.Version and .Server.Version
        daemon = call(args.socket, {"type": "VersionRequest"})
        client = {"Version": __version__, "Os": "linux"}
        server = {"Version": daemon["version"], "ApiVersion": str(daemon["api"]), "Os": "linux"}
        _print_template(args.format, {"Client": client, "Server": server})
        return 0
    print(f"boxctl {__version__}", flush=True)
    # Without a daemon, Docker prints its client's part and fails.
    daemon = call(args.socket, {"type": "VersionRequest"})
    print(f"boxd {daemon['version']} (api {daemon['api']})")
    return 0


def _binary(n: float) -> str:
    """go-units' BytesSize, as ``docker stats`` prints memory: ``1.41MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    raise AssertionError


def _host_memory() -> int:
    """The limit ``docker stats`` shows for a container without one: the host's memory
    (the daemon's: it serves this socket on the same host)."""
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
    "\t{{.BlockIO}}\t{{.PIDs}}"
)
STATS_HEADERS = {
    "ID": "CONTAINER ID",
    "Container": "CONTAINER",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
}


def _stats_row(r: dict[str, Any], refs: list[str], trunc: bool = True) -> dict[str, str]:
    """What ``docker stats --format`` templates see: its fields, its units (memory in
    binary units, I/O in decimal ones), ``Container`` as the user named it."""
    from boxd import _human

    # No limit (None): the host's memory; a container that does not run has 0 (0B / 0B).
    limit = _host_memory() if r["memory_limit"] is None else r["memory_limit"]
    named = [ref for ref in refs if ref == r["name"] or r["id"].startswith(ref)]
    counters = {
        "CPUPerc": f"{r['cpu_percent']:.2f}%",
        "MemUsage": f"{_binary(r['memory_usage'])} / {_binary(limit)}",
        "MemPerc": f"{100 * r['memory_usage'] / limit if limit else 0:.2f}%",
        "NetIO": f"{_human.size(r['net_rx'])} / {_human.size(r['net_tx'])}",
        "BlockIO": f"{_human.size(r['block_read'])} / {_human.size(r['block_write'])}",
        "PIDs": str(r["pids"]),
    }
    if r.get("gone"):  # removed while shown: the docker CLI's "--"
        counters = dict.fromkeys(counters, "--")
    return {
        "Container": named[0] if named else r["id"],
        "Name": r["name"],
        "ID": r["id"][:12] if trunc else r["id"],
        **counters,
    }


def cmd_stats(args: Args) -> int:
    from ._template import Template, print_formatted

    stream = not args.no_stream
    fmt = STATS_TABLE if args.format in (None, "table") else args.format
    template = None if fmt == "json" else Template(fmt, strict=True)
    refresh = stream and sys.stdout.isatty() and template is not None
    with Client(args.socket) as client:
        request = {"type": "StatsRequest", "containers": args.containers, "stream": stream}
        client.request({**request, "all": args.all})
        while True:
            frame = client.receive()
            if not isinstance(frame, dict) or frame["type"] == "EndFrame":
                return 0
            check(frame)
            rows = frame["stats"]
            if template is None:
                print(_wirejson.dumps(rows, separators=(", ", ": ")), flush=True)
                continue
            if refresh:
                print("\x1b[H\x1b[2J", end="")
            shown = [_stats_row(r, args.containers, not args.no_trunc) for r in rows]
            print_formatted(template, shown, STATS_HEADERS)
            sys.stdout.flush()


def cmd_update(args: Args) -> int:
    request: dict[str, Any] = {"type": "UpdateRequest", "resources": _resources(args)}
    if args.restart is not None:
        request["restart"] = _restart(args.restart)
    if not request["resources"] and args.restart is None:
        raise CliError("boxctl update: give at least one limit or --restart", USAGE)
    return _each(args, lambda ref: _warn(call(args.socket, {**request, "container": ref})))


# ---- the command table ----------------------------------------------------------------

RESOURCE_OPTIONS = (
    Opt("-m", "--memory", kind=VALUE, help="memory limit (e.g. 256m)"),
    Opt("--memory-swap", kind=VALUE, help="memory + swap limit (-1: unlimited swap)"),
    Opt("--cpus", "--cpu", kind=VALUE, dest="cpus", help="CPU limit in cores (e.g. 0.5)"),
    Opt("-c", "--cpu-shares", kind=INT, help="relative CPU weight (1-262144; 1 is 2)"),
    Opt("--pids-limit", kind=INT, help="maximum number of processes (0 or less: none)"),
    Opt("--cpuset-cpus", kind=VALUE, help="CPUs allowed (e.g. 0-1,3)"),
)

ENV_FILE = Opt("--env-file", kind=APPEND, metavar="FILE", help="variables, one K=V a line")
RUN_OPTIONS = (
    Opt("--name", kind=VALUE, help="a unique name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"),
    Opt("--rm", help="remove the container when it exits"),
    Opt("-e", "--env", kind=APPEND, metavar="K=V", help="an environment variable"),
    ENV_FILE,
    Opt("-l", "--label", kind=APPEND, metavar="KEY[=VALUE]", help="a label"),
    Opt("--label-file", kind=APPEND, metavar="FILE", help="labels, one KEY[=VALUE] a line"),
    Opt("--cidfile", kind=VALUE, metavar="FILE", help="write the container's id to FILE"),
    Opt("-w", "--workdir", kind=VALUE, help="working directory inside (default: the image's)"),
    Opt("--entrypoint", kind=VALUE, help='replace the image\'s entrypoint ("": none)'),
    Opt("--pull", kind=VALUE, default="missing", choices=("missing", "always", "never")),
    _args.CONTENT_TRUST,
    Opt("-q", "--quiet", help="pull the image without showing progress"),
    Opt("--platform", kind=VALUE, help="os/arch[/variant] the image must be for"),
    Opt("-u", "--user", kind=VALUE, help="USER[:GROUP] to run as (names or ids)"),
    Opt("--group-add", kind=APPEND, metavar="GROUP", help="a supplementary group (name or id)"),
    Opt("-h", "--hostname", kind=VALUE, help="the container's hostname"),
    Opt("--domainname", kind=VALUE, help="the container's NIS domain name"),
    Opt("--add-host", kind=APPEND, metavar="NAME:IP", help="a line of /etc/hosts"),
    *RESOURCE_OPTIONS,
    Opt("--restart", kind=VALUE, default="no", help="no, on-failure[:max], always, unless-stopped"),
    Opt("--stop-signal", kind=VALUE, default="SIGTERM", help="signal that stops it"),
    Opt("--stop-timeout", kind=FLOAT, help="seconds before SIGKILL (default 10; -1: never)"),
    Opt("--timeout", kind=FLOAT, help="seconds each run may last before SIGKILL (Podman's)"),
    Opt("-t", "--tty", help="allocate a pseudo-terminal"),
    Opt("-i", "--interactive", help="keep stdin open"),
    Opt("--isolate-user", help="a user namespace: container root is an unprivileged host user"),
    Opt(
        "--userns",
        kind=VALUE,
        help="host (Docker's): no user namespace, as by default; private: --isolate-user",
    ),
    Opt("--cgroupns", kind=VALUE, help="private (its own cgroup namespace, the default) or host"),
    Opt("--isolation", kind=VALUE, help="default (Docker's, the one on Linux)"),
    Opt("--runtime", kind=VALUE, help="runc (default) or boxd: boxd's own runtime by either name"),
    Opt("--annotation", kind=APPEND, metavar="KEY=VALUE", help="an annotation (inspect shows it)"),
    Opt("--isolate-network", help="same as --network none"),
    Opt("--pid", kind=VALUE, help="host or container:NAME: share that pid namespace"),
    Opt("--ipc", kind=VALUE, help="shareable (default), private, none, host or container:NAME"),
    Opt("--uts", kind=VALUE, help="host: the host's hostname"),
    Opt(
        "--network",
        "--net",
        kind=APPEND,
        dest="network",
        help="bridge (default), host, none, container:NAME, a network's name (repeatable), "
        "or name=NET,alias=A,ip=IP,ip6=IP,mac-address=MAC,driver-opt=K=V",
    ),
)
RUN_OPTIONS_AFTER_VOLUMES = (
    Opt("--read-only", help="mount the root read-only"),
    Opt("--tmpfs", kind=APPEND, metavar="PATH[:OPTS]", help="a tmpfs (size=64m,mode=1777,exec..)"),
    Opt("--shm-size", kind=VALUE, help="size of /dev/shm (default 64m)"),
    Opt("--sysctl", kind=APPEND, metavar="KEY=VALUE", help="a namespaced kernel setting"),
    Opt("--init", help="run an init as PID 1 that forwards signals and reaps orphans"),
    Opt("--oom-score-adj", kind=INT, help="the OOM killer's preference (-1000 to 1000)"),
    Opt("--ulimit", kind=APPEND, metavar="NAME=SOFT[:HARD]", help="a resource limit (nofile=1024)"),
    Opt("--rootfs", kind=VALUE, help="root filesystem directory (replaces IMAGE)"),
    Opt("--privileged", help="UNSAFE: all capabilities and devices, no seccomp or masks"),
    Opt("--device", kind=APPEND, metavar="HOST[:CONT][:rwm]", help="a host device (or a dir)"),
    Opt("--device-cgroup-rule", kind=APPEND, metavar="RULE", help="allow devices: 'c 1:3 rwm'"),
    Opt("--cap-add", kind=APPEND, metavar="CAP", help="add a capability"),
    Opt("--cap-drop", kind=APPEND, metavar="CAP", help="drop a capability"),
    Opt(
        "--security-opt",
        kind=APPEND,
        metavar="OPT",
        help="no-new-privileges, seccomp=..., systempaths=unconfined",
    ),
    Opt(
        "--log-driver",
        kind=VALUE,
        help="json-file (default), local, syslog, journald, gelf, fluentd, splunk or none (no log)",
    ),
    Opt(
        "--log-opt",
        kind=APPEND,
        metavar="KEY=VALUE",
        help=(
            "max-size=10m, max-file=3; labels=, labels-regex=, env=, env-regex=, tag=, mode=, "
            "max-buffer-size="
        ),
    ),
    Opt("--log-max-size", kind=VALUE, help="rotate the log at this size (e.g. 10m)"),
    Opt("--log-max-files", kind=INT, help="log files kept"),
    Opt(
        "--procview",
        kind=VALUE,
        default="on",
        choices=("on", "off"),
        help="show the container its own limits in /proc (default on)",
    ),
    Opt("--cgroup-parent", kind=VALUE, help="cgroup below which the container's is made"),
)
RUN_OPERANDS = (("words", REST, "IMAGE [COMMAND [ARG...]]"),)


def _run_options() -> tuple[Opt, ...]:
    """``create``'s options, and ``run``'s after its own: the network, volume and health
    options come from a module that only these two commands import."""
    from . import _runopts

    return (
        *RUN_OPTIONS,
        *_runopts.LIMITS,
        *_runopts.RUN_LIMITS,
        *_runopts.NETWORK,
        *_runopts.VOLUMES,
        *RUN_OPTIONS_AFTER_VOLUMES,
        *_runopts.HEALTH,
    )


def _update_options() -> tuple[Opt, ...]:
    from . import _runopts

    return (
        *RESOURCE_OPTIONS,
        *_runopts.LIMITS,
        Opt("--restart", kind=VALUE, help="the new restart policy"),
    )


ATTACH_OPTIONS = (
    Opt("--detach-keys", kind=VALUE, default="ctrl-p,ctrl-q", help="keys that detach"),
    Opt("--sig-proxy", kind=BOOL, default=True, help="forward signals to the container"),
)
# --timeout is Docker 28's name; --time the older one, which it still takes.
TIMEOUT = Opt(
    "-t", "--timeout", "--time", kind=FLOAT, dest="time", help="seconds before SIGKILL (-1: never)"
)
STOP_SIGNAL = Opt("-s", "--signal", kind=VALUE, help="the signal (default: the container's)")
CONTAINERS = (("containers", SOME, "CONTAINER"),)

COMMANDS = (
    Command(
        "run",
        cmd_run,
        "create and start a container",
        lambda: (
            Opt("-d", "--detach", help="run in the background"),
            Opt("-a", "--attach", kind=APPEND, metavar="STREAM", help="stdin, stdout, stderr"),
            *ATTACH_OPTIONS,
            *_run_options(),
        ),
        RUN_OPERANDS,
    ),
    Command(
        "create",
        cmd_create,
        "create a container",
        lambda: (
            Opt("-a", "--attach", kind=APPEND, metavar="STREAM", help="stdin, stdout, stderr"),
            *_run_options(),
        ),
        RUN_OPERANDS,
    ),
    Command(
        "start",
        cmd_start,
        "start containers",
        (
            Opt("-a", "--attach", help="attach to its output"),
            Opt("-i", "--interactive", help="attach stdin"),
            *ATTACH_OPTIONS,
        ),
        CONTAINERS,
    ),
    Command(
        "attach",
        cmd_attach,
        "attach to a running container",
        (Opt("--no-stdin", help="do not attach stdin"), *ATTACH_OPTIONS),
        (("container", ONE, "CONTAINER"),),
    ),
    Command(
        "exec",
        cmd_exec,
        "run a command in a running container",
        (
            Opt("-d", "--detach", help="start it in the background; its output is dropped"),
            Opt("-i", "--interactive", help="keep stdin open"),
            Opt("-t", "--tty", help="allocate a pseudo-terminal"),
            Opt("-e", "--env", kind=APPEND, metavar="K=V", help="an environment variable"),
            ENV_FILE,
            Opt("-w", "--workdir", kind=VALUE, help="working directory inside"),
            Opt("-u", "--user", kind=VALUE, help="USER[:GROUP] to run as (names or ids)"),
            Opt("--privileged", help="every capability (the container's seccomp filter holds)"),
            *ATTACH_OPTIONS,
        ),
        (("container", ONE, "CONTAINER"), ("command", REST, "COMMAND [ARG...]")),
    ),
    Command("stop", cmd_stop, "stop containers", (TIMEOUT, STOP_SIGNAL), CONTAINERS),
    Command("restart", cmd_restart, "restart containers", (TIMEOUT, STOP_SIGNAL), CONTAINERS),
    Command(
        "kill",
        cmd_kill,
        "send a signal to containers",
        (Opt("-s", "--signal", kind=VALUE, default="SIGKILL", help="the signal"),),
        CONTAINERS,
    ),
    Command("pause", cmd_pause, "freeze every process of containers", (), CONTAINERS),
    Command("unpause", cmd_unpause, "let paused containers run again", (), CONTAINERS),
    Command(
        "list",
        cmd_list,
        "list containers",
        (
            Opt("-a", "--all", help="include stopped containers"),
            Opt("-q", "--quiet", help="only ids"),
            Opt(
                "-f",
                "--filter",
                kind=APPEND,
                metavar="KEY=VALUE",
                help=(
                    "id, name, label, status, exited, ancestor, before, since, health, "
                    "network, volume, publish, expose, is-task"
                ),
            ),
            Opt("--format", kind=VALUE, help="table, json, or a Go template ({{.Names}})"),
            Opt("-n", "--last", kind=INT, default=None, help="the newest N, stopped included"),
            Opt("-l", "--latest", help="the newest one, stopped included"),
            Opt("-s", "--size", help="the bytes each one wrote"),
            Opt("--no-trunc", help="do not shorten ids and commands"),
        ),
        aliases=("ps", "ls"),
    ),
    Command(
        "inspect",
        cmd_inspect,
        "show containers (or images, networks) as docker inspect does",
        (
            Opt("-f", "--format", kind=VALUE, help="a Go template ({{.State.Pid}})"),
            Opt("--type", kind=VALUE, help="container, image, network or volume"),
            Opt("-s", "--size", help="a container's sizes too: SizeRw, SizeRootFs"),
        ),
        (("containers", SOME, "NAME|ID"),),
    ),
    Command(
        "remove",
        cmd_rm,
        "remove containers",
        (
            Opt("-f", "--force", help="kill a running container first"),
            Opt("-v", "--volumes", help="remove its anonymous volumes too"),
            Opt("-l", "--link", help="remove the link NAME/ALIAS, not a container"),
        ),
        CONTAINERS,
        aliases=("rm",),
    ),
    Command("wait", cmd_wait, "wait for containers to end; print their exit codes", (), CONTAINERS),
    Command(
        "logs",
        cmd_logs,
        "show a container's output",
        (
            Opt("-n", "--tail", kind=VALUE, help="only the last N lines (or all)"),
            Opt("-f", "--follow", help="keep printing new output"),
            Opt("-t", "--timestamps", help="prefix lines with their time"),
            Opt("--since", kind=VALUE, help="from a Unix or RFC 3339 time, or 10s/5m/2h ago"),
            Opt("--until", kind=VALUE, help="up to a Unix or RFC 3339 time, or 10s/5m/2h ago"),
            Opt("--details", help="show each line's log attributes"),
        ),
        (("container", ONE, "CONTAINER"),),
    ),
    Command(
        "update",
        cmd_update,
        "change a container's resource limits or restart policy",
        _update_options,
        CONTAINERS,
    ),
    Command(
        "stats",
        cmd_stats,
        "show containers' resource usage",
        (
            Opt("-a", "--all", help="every container (those not running: zeros)"),
            Opt("--no-stream", help="one sample, then exit"),
            Opt("--no-trunc", help="whole ids"),
            Opt("--format", kind=VALUE, help="table, json, or a Go template ({{.CPUPerc}})"),
        ),
        (("containers", ANY, "CONTAINER"),),
    ),
    Command(
        "info",
        cmd_info,
        "show the daemon's state",
        (Opt("-f", "--format", kind=VALUE, help="a Go template ({{.ServerVersion}})"),),
    ),
    Command(
        "version",
        cmd_version,
        "show versions",
        (Opt("-f", "--format", kind=VALUE, help="a Go template ({{.Server.Version}})"),),
    ),
)
_OWN = {name: c for c in COMMANDS for name in (c.name, *c.aliases)}


def _others() -> Iterator[tuple[Command, ...]]:
    """The commands of the other modules, each module's imported when its turn comes: a
    command of this module (``ps``, ``run``) pays for none of them, ``network`` for one."""
    from . import _network

    yield _network.COMMANDS
    from . import _volumes

    yield _volumes.COMMANDS
    from . import _images

    yield (*_images.COMMANDS, _images.IMAGE_COMMAND)
    from . import _build

    yield _build.COMMANDS
    from . import _verbs

    yield _verbs.COMMANDS
    from . import _cp

    yield _cp.COMMANDS


def all_commands() -> tuple[Command, ...]:
    """Every command, in the order help lists them."""
    *mine, info, version = COMMANDS
    return (*mine, *(c for commands in _others() for c in commands), info, version)


def find_command(name: str) -> Command | None:
    """The command called ``name`` (or by that alias)."""
    if name in _OWN:
        return _OWN[name]
    for commands in _others():
        for c in commands:
            if name in (c.name, *c.aliases):
                return c
    return None


def _help() -> str:
    from ._args import command_lines

    lines = [
        "usage: boxctl [--socket PATH] COMMAND [OPTIONS] [ARG...]",
        "",
        "Control boxd containers.",
        "",
        "commands:",
    ]
    lines += command_lines((n, c) for c in all_commands() for n in (c.name, *c.aliases))
    lines += [
        "",
        "options:",
        "  --socket PATH        the daemon's socket (env BOXD_SOCKET; default /run/boxd/boxd.sock)",
        "  -h, --help           show this help and exit",
        "  -v, --version        show boxctl's version and exit",
        "",
        "'boxctl COMMAND --help' (or 'boxctl help COMMAND') describes a command.",
    ]
    return "\n".join(lines)


def _parse(words: list[str]) -> Args:
    """The command and its arguments; the global options come before the command."""
    socket = None
    while words and words[0].startswith("-"):
        name, eq, value = words.pop(0).partition("=")
        if name in ("-h", "--help"):
            print(_help())
            sys.exit(0)
        if name in ("-v", "--version"):  # Docker's: the client's version, no daemon asked
            from boxd import __version__

            print(f"boxctl version {__version__}")
            sys.exit(0)
        if name != "--socket":
            raise CliError(f"boxctl: unknown option {name!r} (see 'boxctl --help')", USAGE)
        if not eq:
            if not words:
                raise CliError("boxctl: --socket needs a value", USAGE)
            value = words.pop(0)
        socket = value
    if not words:
        print(_help(), file=sys.stderr)
        sys.exit(2)
    name = words.pop(0)
    if name == "help":  # Docker's `help [COMMAND]`: as --help
        if not words:
            print(_help())
            sys.exit(0)
        name, words = words[0], ["--help"]
    command = find_command(name)
    if command is None:
        raise CliError(f"boxctl: unknown command {name!r} (see 'boxctl --help')")
    prog = f"boxctl {name}"
    args = command.parse(words, prog)
    args.socket = socket_path(socket)
    args.prog = prog
    args.handler = command.handler
    return args


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        args = _parse(list(sys.argv[1:] if argv is None else argv))
        code = args.handler(args)
    except CliError as exc:
        import contextlib

        words = f"boxctl: {exc}" if not str(exc).startswith("boxctl") else str(exc)
        with contextlib.suppress(OSError):  # EIO: stderr was the terminal that hung up
            print(words, file=sys.stderr)
        code = exc.code
    except BrokenPipeError:
        code = 1
    except KeyboardInterrupt:
        code = 130
    # The process ends here without the interpreter's teardown (every module and object
    # freed, a last garbage collection: ~2-3 ms of a 20 ms `boxctl ps`).  Nothing is left
    # to close: boxctl closes its files and sockets where it opens them, registers no
    # atexit function, and its only threads (a verb's on several containers) are done,
    # but after a Ctrl-C, which ends their requests (the daemon goes on with them); what
    # stdout holds is written first.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # EPIPE: the reader went away
            code = code or 1
    os._exit(code)

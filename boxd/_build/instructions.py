"""The metadata instructions: each changes the image's configuration only (Docker's
``#(nop)`` steps, ``empty_layer`` in the history).  Sans-IO: a configuration in, the
changed one out."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from typing import Any

from .. import _units
from .._signames import parse_signal
from .dockerfile import DockerfileError, Heredoc, Instruction, expand, pairs, parse, words

__all__ = [
    "CHANGE_KEYWORDS",
    "SCRIPTS",
    "apply_changes",
    "apply_metadata",
    "go_duration",
    "go_duration_ns",
    "go_quoted",
    "nop",
    "run_command",
    "shell_form",
]

# What `commit --change` and `import --change` take, as Docker's daemon does.
CHANGE_KEYWORDS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)


def go_duration_ns(text: str, where: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    try:
        return _units.go_duration_ns(text, "duration")
    except ValueError as exc:
        raise DockerfileError(f"{where}: {exc}") from None


def shell_form(ins: Instruction, shell: list[str]) -> list[str]:
    """RUN's, CMD's and ENTRYPOINT's command: the exec form as given, the shell form
    through the SHELL (``/bin/sh -c`` by default)."""
    if ins.exec_form is not None:
        return list(ins.exec_form)
    return [*shell, ins.text]


# Where a RUN's script heredoc (one that starts with ``#!``) is bound in the step's
# container, read-only, to be run as a file; BuildKit puts it there too.
SCRIPTS = "/dev/pipes"


def run_command(ins: Instruction, shell: list[str]) -> tuple[list[str], Heredoc | None]:
    """A RUN's command, and the heredoc to bind at SCRIPTS as a file when the command is
    that file.  As BuildKit: a RUN that is only a heredoc runs its lines through the
    shell, or runs them as a script when they start with ``#!``; a command with heredocs
    gets them back below it, for the shell to read (``RUN python3 <<EOF``)."""
    if not ins.heredocs:
        return shell_form(ins, shell), None
    first = ins.heredocs[0]
    if len(ins.heredocs) == 1 and ins.text == first.marker:
        if first.content.startswith("#!"):
            return [f"{SCRIPTS}/{first.name}"], first
        return [*shell, first.content], None
    return [*shell, ins.text + "".join(f"\n{d.body}{d.end}" for d in ins.heredocs)], None


def nop(inner: dict[str, Any], text: str, *, writes: bool = False) -> str:
    """A step's history ``created_by`` as Docker's builder writes it: the stage's SHELL
    (the one after the step), ``#(nop)``, the step as Go prints it; one space after
    ``#(nop)`` for a step that ``writes`` files (COPY, ADD, WORKDIR), two for the
    others, as Docker's."""
    shell = inner.get("Shell") or ["/bin/sh", "-c"]
    return " ".join([*shell, f"#(nop) {text}"] if writes else [*shell, "#(nop) ", text])


def go_quoted(values: Sequence[str]) -> str:
    """Go's ``%q`` of a list of strings: ``["a" "b c"]``."""
    return "[" + " ".join(_go_quote(v) for v in values) + "]"


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``0s``, ``500ms``, ``1.5s``, ``1m30s``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 10**9:
        unit, size = ("ns", 1) if ns < 10**3 else ("µs", 10**3) if ns < 10**6 else ("ms", 10**6)
        return sign + _fraction(ns, size) + unit
    seconds = _fraction(ns % (60 * 10**9), 10**9) + "s"
    minutes, hours = ns // (60 * 10**9) % 60, ns // (3600 * 10**9)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else sign + seconds


def _fraction(value: int, size: int) -> str:
    whole, rest = divmod(value, size)
    digits = str(rest).rjust(len(str(size)) - 1, "0").rstrip("0") if rest else ""
    return f"{whole}.{digits}" if digits else str(whole)


def _ports(ins: Instruction, given: list[str]) -> list[str]:
    """EXPOSE's ports (``8000-8002`` is three), each PORT/PROTOCOL."""
    found = []
    for word in given:
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, dash, high = port.partition("-")
        if (
            proto not in ("tcp", "udp", "sctp")
            or not low.isdigit()
            or (dash and not high.isdigit())
            or not 0 < int(low) <= int(high or low) <= 65535
        ):
            raise DockerfileError(f"line {ins.line}: invalid port in EXPOSE: {word}")
        found += [f"{p}/{proto}" for p in range(int(low), int(high or low) + 1)]
    return found


def apply_metadata(
    ins: Instruction, inner: dict[str, Any], env: dict[str, str], escape: str
) -> str:
    """Apply a metadata instruction to the image's ``config`` (``inner``, changed in
    place); the history's ``created_by``.  ``env``: the values substitution sees."""
    kw, line = ins.keyword, ins.line
    shell = list(inner.get("Shell") or ["/bin/sh", "-c"])
    if kw == "ENV":
        found = pairs(ins, env, escape)
        current = list(inner.get("Env") or [])
        for key, value in found:
            # Replaced where it is (PATH stays first), else added at the end, as Docker's.
            names = [e.partition("=")[0] for e in current]
            if key in names:
                current[names.index(key)] = f"{key}={value}"
            else:
                current.append(f"{key}={value}")
        inner["Env"] = current
        return nop(inner, "ENV " + " ".join(f"{k}={v}" for k, v in found))
    if kw == "LABEL":
        found = pairs(ins, env, escape)
        labels = dict(inner.get("Labels") or {})
        labels.update(found)
        inner["Labels"] = labels
        return nop(inner, "LABEL " + " ".join(f"{k}={v}" for k, v in found))
    if kw == "MAINTAINER":
        if not ins.text:
            raise DockerfileError(f"line {line}: MAINTAINER requires exactly one argument")
        return nop(inner, f"MAINTAINER {ins.text}")
    if kw == "WORKDIR":
        path = expand(ins.text, env, escape, line)
        if not path:
            raise DockerfileError(f"line {line}: WORKDIR requires exactly one argument")
        if not path.startswith("/"):
            path = (inner.get("WorkingDir") or "/").rstrip("/") + "/" + path
        # Cleaned, as Docker's builder cleans it ("/a/b/" is "/a/b"; Go's Clean takes
        # "//" to "/", which normpath keeps).
        path = "/" + posixpath.normpath(path).lstrip("/")
        inner["WorkingDir"] = path
        return nop(inner, f"WORKDIR {path}", writes=True)
    if kw == "USER":
        user = expand(ins.text, env, escape, line)
        if not user or " " in user.strip():
            raise DockerfileError(f"line {line}: USER requires exactly one argument")
        inner["User"] = user.strip()
        return nop(inner, f"USER {user.strip()}")
    if kw in ("CMD", "ENTRYPOINT"):
        command = shell_form(ins, shell) if ins.text else []
        if kw == "ENTRYPOINT":
            inner["Entrypoint"] = command or None
            # Docker: an ENTRYPOINT drops the base image's CMD (the caller keeps one the
            # same stage set before it).
            inner.pop("Cmd", None)
        else:
            inner["Cmd"] = command
        return nop(inner, f"{kw} {go_quoted(command)}")
    if kw == "EXPOSE":
        if not ins.text:
            raise DockerfileError(f"line {line}: EXPOSE requires at least one argument")
        # A variable's value is split into words here, as Docker's builder splits it for
        # EXPOSE alone (EXPOSE $PORTS with PORTS="80 443").
        given = [port for word in words(ins.text, env, escape, line) for port in word.split()]
        ports = _ports(ins, given)
        exposed = dict(inner.get("ExposedPorts") or {})
        exposed.update({p: {} for p in ports})
        inner["ExposedPorts"] = exposed
        return nop(inner, "EXPOSE " + " ".join(given))
    if kw == "VOLUME":
        if not ins.text.strip():
            raise DockerfileError(f"line {line}: VOLUME requires at least one argument")
        paths = (
            list(ins.exec_form) if ins.exec_form is not None else words(ins.text, env, escape, line)
        )
        if not paths or not all(p.strip() for p in paths):
            raise DockerfileError(f"line {line}: VOLUME specified can not be an empty string")
        # A relative path is kept as written, as dockerd's builder keeps it: a container
        # mounts it below its root (boxd._supervisor), as runc mounts it for dockerd.
        volumes = dict(inner.get("Volumes") or {})
        volumes.update({p: {} for p in paths})
        inner["Volumes"] = volumes
        return nop(inner, f"VOLUME [{' '.join(paths)}]")
    if kw == "STOPSIGNAL":
        signal = expand(ins.text, env, escape, line).strip()
        if not signal:
            raise DockerfileError(f"line {line}: STOPSIGNAL requires exactly one argument")
        try:
            parse_signal(signal)
        except ValueError as exc:
            raise DockerfileError(f"line {line}: STOPSIGNAL: {exc}") from None
        inner["StopSignal"] = signal
        return nop(inner, f"STOPSIGNAL {signal}")
    if kw == "SHELL":
        if ins.exec_form is None or not ins.exec_form:
            raise DockerfileError(
                f'line {line}: SHELL requires the arguments to be in JSON form: ["sh", "-c"]'
            )
        inner["Shell"] = list(ins.exec_form)
        return nop(inner, f"SHELL [{' '.join(ins.exec_form)}]")
    if kw == "HEALTHCHECK":
        check = inner["Healthcheck"] = _healthcheck(ins)
        # Go's %+v of Docker's HealthConfig.
        fields = [f"Test:[{' '.join(check['Test'])}]"]
        fields += [f"{k}:{go_duration(check.get(k, 0))}" for k in _DURATIONS.values()]
        return nop(inner, f"HEALTHCHECK &{{{' '.join(fields)} Retries:{check.get('Retries', 0)}}}")
    if kw == "ONBUILD":
        trigger = ins.text.strip()
        first = trigger.split(None, 1)[0].upper() if trigger else ""
        if not first:
            raise DockerfileError(f"line {line}: ONBUILD requires at least one argument")
        if first in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"line {line}: {first} isn't allowed as an ONBUILD trigger")
        inner["OnBuild"] = [*(inner.get("OnBuild") or []), trigger]
        return nop(inner, f"ONBUILD {trigger}")
    raise DockerfileError(f"line {line}: {kw} is not a metadata instruction")


def apply_changes(inner: dict[str, Any], changes: Sequence[str]) -> None:
    """``commit --change`` and ``import --change``: each a Dockerfile line of one of
    :data:`CHANGE_KEYWORDS`, applied in order to the image's ``config`` (``inner``, changed
    in place); ``$VAR`` is the environment the changes before it left.  A bad one raises
    DockerfileError naming it.  As a Dockerfile's stage, an ENTRYPOINT keeps a CMD the
    changes gave before it (it drops the image's)."""
    cmd = None
    for change in changes:
        try:
            instructions = parse(change).instructions
            if not instructions:
                raise DockerfileError("it is empty")
            for ins in instructions:
                if ins.keyword not in CHANGE_KEYWORDS:
                    raise DockerfileError(
                        f"{ins.keyword} is not a valid change command (use "
                        + ", ".join(CHANGE_KEYWORDS)
                        + ")"
                    )
                env = dict(e.partition("=")[::2] for e in inner.get("Env") or ())
                apply_metadata(ins, inner, env, "\\")
                if ins.keyword == "CMD":
                    cmd = inner.get("Cmd")
                elif ins.keyword == "ENTRYPOINT" and cmd is not None:
                    inner["Cmd"] = cmd
        except DockerfileError as exc:
            message = str(exc).removeprefix("line 1: ")
            raise DockerfileError(f"invalid change {change!r}: {message}") from None


# HEALTHCHECK's duration options and their HealthConfig fields, in its order.
_DURATIONS = {
    "interval": "Interval",
    "timeout": "Timeout",
    "start-period": "StartPeriod",
    "start-interval": "StartInterval",
}


def _healthcheck(ins: Instruction) -> dict[str, Any]:
    where = f"line {ins.line}: HEALTHCHECK"
    rest = ins.text.strip()
    if not rest:
        raise DockerfileError(f"{where} requires an argument: CMD COMMAND or NONE")
    kind, _, command = rest.partition(" ")
    if kind.upper() == "NONE":
        if command.strip() or ins.flags:
            raise DockerfileError(f"{where} NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD" or not command.strip():
        raise DockerfileError(f"{where}: give CMD COMMAND or NONE, not {rest!r}")
    command = command.strip()
    try:
        exec_form = json.loads(command) if command.startswith("[") else None
    except (ValueError, RecursionError):
        exec_form = None
    if isinstance(exec_form, list) and all(isinstance(w, str) for w in exec_form):
        test = ["CMD", *exec_form]
    else:
        test = ["CMD-SHELL", command]
    check: dict[str, Any] = {"Test": test}
    for flag, value in ins.flags:
        if flag == "retries":
            # 0 (as unset: the default, 3, when run) is Docker's too; only a negative
            # count or no number is refused.
            if value.startswith("-") and value[1:].isdigit():
                raise DockerfileError(f"{where}: --retries cannot be negative ({value})")
            if not value.isdigit():
                raise DockerfileError(f"{where}: --retries takes a count, not {value!r}")
            if int(value):
                check["Retries"] = int(value)
        else:
            ns = go_duration_ns(value, f"{where} --{flag}")
            if ns and ns < 1_000_000:  # Docker's minimum; no run could use the image
                raise DockerfileError(f"{where} --{flag}: {value!r} cannot be less than 1ms")
            if ns:
                check[_DURATIONS[flag]] = ns
    return check

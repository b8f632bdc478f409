"""boxctl's command-line parsing: a table of options per command, Docker's conventions.

Not argparse: importing and building argparse's parsers for every command took ~20 ms, more
than the rest of ``boxctl ps``.  This parser knows only what boxctl uses:

* long options ``--name VALUE`` or ``--name=VALUE``; short ones ``-e VALUE`` or
  ``-eVALUE``, and flags bundled as in ``-it`` (the last may take a value: ``-de K=V``);
  a flag may be given a boolean as Docker's are (``--rm=true``, ``--sig-proxy=false``);
* a value option takes the next word whatever it is (``--memory-swap -1``);
* ``--`` ends the options; for commands whose last operand is a command line (``run``,
  ``exec``), the options end where that command line starts;
* no abbreviations of long options (Docker has none either).

Errors are one line naming the bad word, exit code 125 (Docker's for a bad option).
"""

from __future__ import annotations

import sys

from ._client import OPERANDS, USAGE, CliError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

# Option kinds.
FLAG = "flag"  # store True
BOOL = "bool"  # --x / --no-x
VALUE = "value"  # a string
INT = "int"
FLOAT = "float"
APPEND = "append"  # a string, repeatable: a list

# What a flag's value may be (``--rm=true``), as Go's strconv.ParseBool reads it.
BOOLEAN_WORDS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}

_INF = float("inf")  # not math's: math costs every boxctl call ~0.2 ms to import

# Operand kinds.
ONE = "one"
SOME = "some"  # one or more
ANY = "any"  # zero or more
REST = "rest"  # the rest of the words, options included: a command line


class Args:
    """Parsed words by destination name, as argparse's Namespace; the caller adds the
    daemon's socket, the command's name as typed and its handler."""

    socket: str
    prog: str
    handler: Callable[[Args], int]

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no option {name!r}")


class Opt:
    __slots__ = ("choices", "default", "dest", "help", "kind", "metavar", "names")

    def __init__(
        self,
        *names: str,
        kind: str = FLAG,
        dest: str = "",
        default: object = None,
        choices: Sequence[str] = (),
        metavar: str = "",
        help: str = "",
    ) -> None:
        self.names = names
        self.kind = kind
        self.dest = dest or names[-1].lstrip("-").replace("-", "_")
        self.default = False if kind in (FLAG, BOOL) and default is None else default
        self.choices = tuple(choices)
        self.metavar = metavar or (
            "{" + ",".join(self.choices) + "}" if self.choices else self.dest.upper()
        )
        self.help = help

    @property
    def takes_value(self) -> bool:
        return self.kind not in (FLAG, BOOL)


class Command:
    def __init__(
        self,
        name: str,
        handler: Callable[[Args], int],
        help: str,
        options: Sequence[Opt] | Callable[[], Sequence[Opt]] = (),
        operands: Sequence[tuple[str, str, str]] = (),
        aliases: Sequence[str] = (),
        subcommands: Callable[[], Iterable[tuple[str, Command]]] | None = None,
    ) -> None:
        """``operands``: (dest, kind, metavar) in order; only the last may be SOME, ANY
        or REST.  ``options`` may be a function that gives them when they are first
        needed (a command's options from a module only it imports).  ``subcommands``:
        a group's (name, command) pairs, which its help lists."""
        self.name = name
        self.handler = handler
        self.help = help
        self._options = options
        self.operands = operands
        self.aliases = tuple(aliases)
        self.subcommands = subcommands

    @property
    def options(self) -> Sequence[Opt]:
        if callable(self._options):
            self._options = self._options()
        return self._options

    def usage(self, prog: str) -> str:
        words = [f"usage: {prog}"]
        if self.options:
            words.append("[OPTIONS]")
        for _, kind, metavar in self.operands:
            words.append(
                {ONE: metavar, SOME: f"{metavar} [{metavar}...]", ANY: f"[{metavar}...]"}.get(
                    kind, metavar
                )
            )
        return " ".join(words)

    def help_text(self, prog: str) -> str:
        lines = [self.usage(prog), "", self.help]
        if self.aliases:
            lines.append(f"(also: {', '.join(self.aliases)})")
        if self.subcommands is not None:
            lines += ["", "commands:", *command_lines(self.subcommands())]
        helps = "--help" if any("-h" in o.names for o in self.options) else "-h, --help"
        lines += ["", "options:", f"  {helps:<28} show this help and exit"]
        for opt in self.options:
            names = list(opt.names)
            if opt.kind == BOOL:
                names.append("--no-" + names[-1][2:])
            left = ", ".join(names) + (f" {opt.metavar}" if opt.takes_value else "")
            lines.append(f"  {left:<28} {opt.help}".rstrip())
        return "\n".join(lines)

    def parse(self, words: Sequence[str], prog: str) -> Args:
        args = Args()
        for opt in self.options:
            setattr(args, opt.dest, [] if opt.kind == APPEND else opt.default)
        table: dict[str, Opt] = {}
        for opt in self.options:
            for name in opt.names:
                table[name] = opt
            if opt.kind == BOOL:
                table["--no-" + opt.names[-1][2:]] = opt

        def fail(message: str, code: int = USAGE) -> CliError:
            return CliError(f"{prog}: {message} (see '{prog} --help')", code)

        def lookup(name: str) -> Opt:
            # -h is help unless the command has an -h of its own (run's --hostname).
            if name == "--help" or (name == "-h" and name not in table):
                print(self.help_text(prog))
                sys.exit(0)
            opt = table.get(name)
            if opt is None:
                raise fail(f"unknown option {name!r}")
            return opt

        def store(opt: Opt, name: str, value: str) -> None:
            if opt.choices and value not in opt.choices:
                raise fail(f"invalid {name} {value!r}: use {', '.join(opt.choices)}")
            if opt.kind == APPEND:
                getattr(args, opt.dest).append(value)
                return
            try:
                converted = {INT: int, FLOAT: float}.get(opt.kind, str)(value)
                if opt.kind == FLOAT and not -_INF < float(value) < _INF:  # NaN too
                    raise ValueError
            except ValueError:
                kind = "an integer" if opt.kind == INT else "a number"
                raise fail(f"invalid {name} {value!r}: expected {kind}") from None
            setattr(args, opt.dest, converted)

        rest_at = (
            len(self.operands) - 1 if self.operands[-1:] and self.operands[-1][1] == REST else -1
        )
        operands: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word == "--":
                operands.extend(words[i:])
                break
            if word.startswith("--"):
                name, eq, value = word.partition("=")
                opt = lookup(name)
                if opt.takes_value:
                    if not eq:
                        if i == len(words):
                            raise fail(f"{name} needs a value")
                        value, i = words[i], i + 1
                    store(opt, name, value)
                elif eq:
                    # Docker's (Go's) flags take a boolean value too: --sig-proxy=false.
                    if name.startswith("--no-") or value.lower() not in BOOLEAN_WORDS:
                        raise fail(f"invalid {name}={value}: use true or false")
                    setattr(args, opt.dest, BOOLEAN_WORDS[value.lower()])
                else:
                    # A flag is set by its name; only a BOOL has a --no- form that clears it.
                    setattr(args, opt.dest, opt.kind == FLAG or not name.startswith("--no-"))
            elif word.startswith("-") and len(word) > 1:
                for j in range(1, len(word)):
                    name = "-" + word[j]
                    opt = lookup(name)
                    # pflag's -n=1 and -d=false: what follows the = is the value.
                    value = word[j + 2 :] if word[j + 1 : j + 2] == "=" else word[j + 1 :]
                    if not opt.takes_value:
                        if value != word[j + 1 :]:
                            if value.lower() not in BOOLEAN_WORDS:
                                raise fail(f"invalid {name}={value}: use true or false")
                            setattr(args, opt.dest, BOOLEAN_WORDS[value.lower()])
                            break
                        setattr(args, opt.dest, True)
                        continue
                    if not value:
                        if i == len(words):
                            raise fail(f"{name} needs a value")
                        value, i = words[i], i + 1
                    store(opt, name, value)
                    break
            else:
                operands.append(word)
                if len(operands) - 1 == rest_at:
                    operands.extend(words[i:])
                    break
        self._assign(args, operands, fail)
        return args

    def _assign(self, args: Args, words: list[str], fail: Callable[[str, int], CliError]) -> None:
        """The operands, in order; a wrong count of them exits 1, as the docker CLI's
        "requires N argument(s)" does (a bad option: 125)."""
        for dest, kind, metavar in self.operands:
            if kind == ONE:
                if not words:
                    raise fail(f"a {metavar} is required", OPERANDS)
                setattr(args, dest, words.pop(0))
                continue
            if kind == SOME and not words:
                raise fail(f"at least one {metavar} is required", OPERANDS)
            setattr(args, dest, list(words))
            words.clear()
        if words:
            raise fail(f"unexpected argument {words[0]!r}", OPERANDS)


def subcommand(
    group: Command, args: Args, commands: Mapping[str, Command]
) -> tuple[Command, Args] | None:
    """The subcommand of ``group`` (``boxctl network``) that ``args.words`` name, from
    ``commands``, and its arguments (its ``prog`` and socket set), as the docker CLI's
    groups take them: None without one (the group's help is printed: exit 0), an
    unknown one refused (exit 1)."""
    prog = f"boxctl {group.name}"
    if not args.words:
        print(group.help_text(prog))
        return None
    name, *rest = args.words
    command = commands.get(name)
    if command is None:
        raise CliError(f"{prog}: unknown command {name!r} (see '{prog} --help')", OPERANDS)
    sub = command.parse(rest, f"{prog} {name}")
    sub.socket, sub.prog = args.socket, f"{prog} {name}"
    return command, sub


def run_subcommand(group: Command, args: Args, commands: Mapping[str, Command]) -> int:
    """:func:`subcommand`, run: its exit status (0 for the group's help)."""
    found = subcommand(group, args, commands)
    return 0 if found is None else found[0].handler(found[1])


def command_lines(named: Iterable[tuple[str, Command]]) -> list[str]:
    """Help's lines of commands, in order, each with every name it is given by."""
    names: dict[int, list[str]] = {}
    commands: dict[int, Command] = {}
    for name, command in named:
        names.setdefault(id(command), []).append(name)
        commands[id(command)] = command
    return [f"  {', '.join(names[key]):<20} {c.help}" for key, c in commands.items()]


def prune_filters(specs: list[str]) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` of the prune verbs, as Docker's filters (``label!=k`` is the
    key ``label!``); the daemon reads and checks them (boxd._prune)."""
    return filters_of(specs, "until=TIME, label=KEY[=VALUE], label!=KEY")


def filters_of(specs: list[str], keys: str) -> dict[str, list[str]]:
    """``--filter KEY=VALUE`` options as Docker's filters (``{key: [value, ...]}``); one
    without ``=`` is refused, naming it and the ``keys`` the verb takes."""
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        if not eq:
            raise CliError(f"invalid --filter {spec!r}: use {keys}", USAGE)
        filters.setdefault(key, []).append(value)
    return filters


def confirm(warning: str, force: bool) -> bool:
    """A prune's question, as Docker asks it (``-f``/``--force``: no question)."""
    if force:
        return True
    print(f"{warning}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def print_removed(title: str, lines: list[str]) -> None:
    """A prune's list of what went (``Deleted Containers:``), nothing when nothing went."""
    if lines:
        print(title)
        for line in lines:
            print(line)
        print()


# Docker's --disable-content-trust is true unless content trust is asked for; boxd checks
# images by their digests only, so "=false" (verify signatures) cannot be done.
CONTENT_TRUST = Opt(
    "--disable-content-trust",
    default=True,
    help="(always: signatures are not verified, digests are)",
)


def check_content_trust(args: Args) -> None:
    """Refuse ``--disable-content-trust=false``, naming what cannot be done."""
    if not args.disable_content_trust:
        raise CliError(
            "invalid --disable-content-trust=false: boxd does not verify image signatures "
            "(Docker Content Trust); images are checked by their digests",
            USAGE,
        )


PRUNE_FILTER = Opt(
    "--filter",
    kind=APPEND,
    metavar="KEY=VALUE",
    help="until=TIME (created before), label=KEY[=VALUE], label!=KEY[=VALUE]",
)

"""A Dockerfile as Docker's classic builder reads it: sans-IO, no Trio.

:func:`parse` turns the text into :class:`Instruction` records: parser directives at the
top (``# escape=`` sets the escape character; ``# syntax=`` names a BuildKit front end,
which boxd ignores: :attr:`Dockerfile.notes` says so), comment lines dropped (also inside
continued lines), lines continued by the escape character at their end, and each
instruction's ``--flag=value`` options and JSON (exec) form split off.  BuildKit's
heredocs (``RUN <<EOF``, ``COPY <<EOF /path``: the lines after the instruction up to the
delimiter) are taken too: :class:`Heredoc`.

:func:`expand` is Docker's variable substitution for the instructions that have it
(``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}``, ``${VAR-word}``,
``${VAR+word}``, ``${VAR:?message}``, and the pattern forms ``${VAR#pat}``, ``##``, ``%``,
``%%``, ``${VAR/pat/text}``, ``//``; the shell's special parameters, ``$$`` ..., are names
nothing sets), as BuildKit's lexer does it, which Docker's classic builder uses too; with
Docker's quoting: single quotes keep text as it is, double quotes keep spaces and expand,
the escape character keeps the next character.
"""

from __future__ import annotations

import json
import re

import attrs

__all__ = [
    "Dockerfile",
    "DockerfileError",
    "Heredoc",
    "Instruction",
    "expand",
    "expand_heredoc",
    "pairs",
    "parse",
    "raw_words",
    "words",
]

# Every instruction the classic builder knows.
KEYWORDS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
# The instructions whose arguments get variable substitution (Docker's list).
EXPANDED = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
# The options each instruction takes (``--name=value``); others are refused by name.
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
    "RUN": frozenset({"mount", "network"}),
}
# BuildKit's options that Docker's classic builder refuses too: named as such, not as
# unknown (a Dockerfile written for BuildKit, not a typo).
BUILDKIT_FLAGS: dict[str, frozenset[str]] = {
    "RUN": frozenset({"security", "device"}),
    "COPY": frozenset({"parents"}),
    "ADD": frozenset({"unpack"}),
}
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"--([a-zA-Z][a-zA-Z0-9-]*)(?:=(.*))?\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The shell's special parameters: ``$$``, ``${@}`` ... are names (that nothing sets).
_SPECIAL = "@*#?-$!0"
# A heredoc's start (``RUN <<EOF``, ``COPY <<-"END" /x``), in the instructions BuildKit
# takes them in.  Not ``$((x<<2))`` nor bash's ``<<<``.
_HEREDOC = re.compile(r"(?:^|\s)(<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\3)(?=\s|$)")
HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})


class DockerfileError(ValueError):
    """A Dockerfile that cannot be built; the message names the line."""


@attrs.frozen
class Heredoc:
    """One ``<<NAME`` of an instruction and the lines below it up to NAME's line."""

    marker: str  # as written in the instruction: <<-"EOF"
    name: str  # EOF
    body: str  # its lines as written, each ending with a newline
    end: str  # the delimiter's line as written (tabs before it with <<-)
    expand: bool  # the delimiter unquoted: $VARIABLES in the body are expanded
    chomp: bool  # <<-: leading tabs are dropped from each line

    @property
    def content(self) -> str:
        """The body as the command or file gets it (tabs dropped for ``<<-``)."""
        if not self.chomp:
            return self.body
        return "".join(line.lstrip("\t") for line in self.body.splitlines(keepends=True))


@attrs.frozen
class Instruction:
    line: int  # where it starts (1-based)
    keyword: str  # upper case: RUN
    text: str  # the arguments after the keyword and its flags, continuation joined
    flags: tuple[tuple[str, str], ...] = ()
    exec_form: tuple[str, ...] | None = None  # the JSON form's strings, when it is one
    heredocs: tuple[Heredoc, ...] = ()  # in the order of their markers in ``text``

    def flag(self, name: str, default: str = "") -> str:
        for key, value in self.flags:
            if key == name:
                return value
        return default

    @property
    def original(self) -> str:
        """The instruction as written, on one line (Step N/M : ...)."""
        flags = "".join(f"--{k}={v} " for k, v in self.flags)
        return f"{self.keyword} {flags}{self.text}".rstrip()


@attrs.frozen
class Dockerfile:
    instructions: tuple[Instruction, ...]
    escape: str = "\\"
    notes: tuple[str, ...] = ()


def parse(text: str) -> Dockerfile:
    lines = text.removeprefix("\ufeff").splitlines()
    escape = "\\"
    notes: list[str] = []
    start = 0
    seen: set[str] = set()
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if m is None or not line.lstrip().startswith("#"):
            break
        name, value = m.group(1).lower(), m.group(2)
        if name in seen:
            raise DockerfileError(f"line {i + 1}: parser directive {name!r} given twice")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"line {i + 1}: invalid escape token {value!r} does not match ` or \\"
                )
            escape = value
        elif name == "syntax":
            notes.append(
                f"the syntax directive ({value}) is ignored: boxd builds with its own "
                "classic builder"
            )
        start = i + 1
    instructions = []
    i = start
    while i < len(lines):
        raw = lines[i]
        first = i + 1
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = [raw.rstrip()]
        while _continues(parts[-1], escape):
            parts[-1] = parts[-1].rstrip()[:-1]
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # comments and empty lines inside a continued line are dropped
            if i >= len(lines):
                break
            parts.append(lines[i].rstrip())
            i += 1
        ins = _instruction(first, "".join(parts).strip())
        if not ins.text and ins.keyword in _NEEDS_ARGUMENTS:  # before any step runs
            raise DockerfileError(f"line {first}: {ins.keyword} {_NEEDS_ARGUMENTS[ins.keyword]}")
        if ins.keyword in HEREDOC_KEYWORDS and ins.exec_form is None:
            docs = []
            for m in _HEREDOC.finditer(ins.text):
                doc, i = _heredoc(m, lines, i, ins)
                docs.append(doc)
            ins = attrs.evolve(ins, heredocs=tuple(docs))
        instructions.append(ins)
    return Dockerfile(tuple(instructions), escape, tuple(notes))


def _heredoc(m: re.Match[str], lines: list[str], i: int, ins: Instruction) -> tuple[Heredoc, int]:
    """The heredoc ``m`` starts, its body from ``lines[i]`` on; and the line after it."""
    marker, dash, quote, name = m.group(1, 2, 3, 4)
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        i += 1
        if (line.lstrip("\t") if dash else line) == name:
            doc = Heredoc(marker, name, "".join(body), line, not quote, bool(dash))
            return doc, i
        body.append(line + "\n")
    raise DockerfileError(
        f"line {ins.line}: {ins.keyword} {marker}: no line {name!r} ends the heredoc"
    )


def _continues(line: str, escape: str) -> bool:
    return line.rstrip().endswith(escape)


# What an instruction given no arguments is told, in the words of Docker's parser, which
# refuses it before the build runs anything (RUN, CMD and ENTRYPOINT may be empty).
_NEEDS_ARGUMENTS = {
    "ADD": "requires at least two arguments",
    "ARG": "requires at least one argument",
    "COPY": "requires at least two arguments",
    "ENV": "requires at least one argument",
    "EXPOSE": "requires at least one argument",
    "FROM": "requires either one or three arguments: IMAGE [AS NAME]",
    "HEALTHCHECK": "requires an argument: CMD COMMAND or NONE",
    "LABEL": "requires at least one argument",
    "MAINTAINER": "requires exactly one argument",
    "ONBUILD": "requires at least one argument",
    "SHELL": "requires at least one argument",
    "STOPSIGNAL": "requires exactly one argument",
    "USER": "requires exactly one argument",
    "VOLUME": "requires at least one argument",
    "WORKDIR": "requires exactly one argument",
}


def _instruction(line: int, text: str) -> Instruction:
    keyword, _, rest = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = f"{more} {rest}"
    word = keyword
    keyword = keyword.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(f"line {line}: unknown instruction: {word}{_did_you_mean(word)}")
    rest = rest.strip()
    flags: list[tuple[str, str]] = []
    if keyword in FLAGS:
        while rest.startswith("--"):
            head, _, tail = rest.partition(" ")
            m = _FLAG.match(head)
            if m is None:
                break
            name, value = m.group(1), m.group(2)
            if name in BUILDKIT_FLAGS.get(keyword, ()):
                raise DockerfileError(
                    f"line {line}: the --{name} option of {keyword} requires BuildKit, which "
                    "boxd does not run (it builds as Docker's classic builder)"
                )
            if name not in FLAGS[keyword]:
                hint = _did_you_mean(name, FLAGS[keyword])
                raise DockerfileError(f"line {line}: unknown flag: --{name} (for {keyword}){hint}")
            flags.append((name, value if value is not None else "true"))
            rest = tail.strip()
    exec_form = None
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except (ValueError, RecursionError):  # not JSON, or nested too deep: shell form
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            exec_form = tuple(value)
    return Instruction(line, keyword, rest, tuple(flags), exec_form)


def _did_you_mean(word: str, options: frozenset[str] = KEYWORDS) -> str:
    """`` (did you mean FROM?)`` for a word a known one is within two edits of, as
    Docker suggests it (a keyword in the word's case); else nothing."""
    best, distance = "", 3
    for option in sorted(options):
        d = _edits(word.upper(), option.upper())
        if d < distance:
            best, distance = option, d
    if not best:
        return ""
    if word.islower():
        best = best.lower()
    return f" (did you mean {best}?)"


def _edits(a: str, b: str) -> int:
    """The Levenshtein distance of ``a`` and ``b``."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


# ---- variable substitution ----------------------------------------------------------


class _Lexer:
    """Docker's shell lexer for one instruction's text: words, quotes and ``$`` forms."""

    def __init__(self, text: str, env: dict[str, str], escape: str, line: int) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.line = line
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def words(self, split: bool) -> list[str]:
        found: list[str] = []
        word: list[str] = []
        started = False
        while self.pos < len(self.text):
            ch = self.take()
            if split and ch in " \t\n":
                if started:
                    found.append("".join(word))
                    word, started = [], False
                continue
            started = True
            if ch == self.escape:
                nxt = self.take()
                word.append(nxt if nxt else ch)
            elif ch == "'":
                word.append(self.until("'"))
            elif ch == '"':
                word.append(self.double())
            elif ch == "$":
                word.append(self.dollar())
            else:
                word.append(ch)
        if started:
            found.append("".join(word))
        return found

    def until(self, quote: str) -> str:
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise DockerfileError(f"line {self.line}: unexpected end of text: missing {quote}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def double(self) -> str:
        out: list[str] = []
        while True:
            ch = self.take()
            if not ch:
                raise DockerfileError(f'line {self.line}: unexpected end of text: missing "')
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                out.append(self.take())
            elif ch == "$":
                out.append(self.dollar())
            else:
                out.append(ch)

    def name(self) -> str:
        """A ``$``'s name: letters, digits and ``_``; or digits alone; or one of the
        shell's special parameters (``$$``, ``$@`` ...), which a build does not set."""
        ch = self.peek()
        if ch.isdigit():
            start = self.pos
            while self.peek().isdigit():
                self.take()
            return self.text[start : self.pos]
        if ch and ch in _SPECIAL:
            return self.take()
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.take()
        return self.text[start : self.pos]

    def dollar(self) -> str:
        if self.peek() == "{":
            self.take()
            return self.braced()
        name = self.name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def braced(self) -> str:
        if self.peek() in ("", "{", "}", ":"):
            raise DockerfileError(f"line {self.line}: bad substitution in {self.text!r}")
        name = self.name()
        op = self.take()
        if op == "}":
            return self.env.get(name, "")
        if op == ":":
            op += self.take()
        value = self.env.get(name)
        if op in ("-", "+", "?", ":-", ":+", ":?"):
            word = self.inner()
            empty = value is None or (op.startswith(":") and value == "")
            if op[-1] == "-":
                return word if empty else str(value)
            if op[-1] == "+":
                return "" if empty else word
            if empty:
                why = (
                    "is not allowed to be unset" if value is None else "is not allowed to be empty"
                )
                raise DockerfileError(f"line {self.line}: {name}: {word or why}")
            return str(value)
        if op in ("#", "%"):
            # ${NAME#PATTERN}: NAME without its shortest prefix PATTERN matches (## the
            # longest); % the suffix.
            word = self.inner(raw=True)
            greedy = word.startswith(op)
            pattern = word[1:] if greedy else word
            if op == "#":
                return self.trimmed(pattern, value or "", greedy)
            return self.trimmed(_reversed_pattern(pattern), (value or "")[::-1], greedy)[::-1]
        if op == "/":
            # ${NAME/PATTERN/TEXT}: the first (// every) longest match replaced.
            every = self.peek() == "/"
            if every:
                self.take()
            pattern = self.inner(stop="/", raw=True)
            text = self.inner(raw=True)
            regex = self.pattern(pattern, greedy=True)
            return regex.sub(lambda _: text, value or "", count=0 if every else 1)
        if not op:
            raise DockerfileError(f"line {self.line}: missing '}}' in {self.text!r}")
        raise DockerfileError(
            f"line {self.line}: unsupported modifier ({op}) in substitution in {self.text!r}"
        )

    def trimmed(self, pattern: str, value: str, greedy: bool) -> str:
        m = self.pattern(pattern, greedy=greedy).match(value)
        return value[m.end() :] if m else value

    def pattern(self, pattern: str, *, greedy: bool) -> re.Pattern[str]:
        """A substitution's shell pattern (``*``, ``?``; a backslash keeps ``*``, ``?``
        and itself, and goes before a ``}`` or ``/``) as a regular expression."""
        out: list[str] = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            i += 1
            if ch == "*":
                out.append(".*" if greedy else ".*?")
            elif ch == "?":
                out.append(".")
            elif ch == "\\" and pattern[i : i + 1] in ("}", "/"):
                continue
            elif ch == "\\":
                nxt = pattern[i : i + 1]
                if nxt not in ("*", "?", "\\"):
                    raise DockerfileError(
                        f"line {self.line}: invalid pattern ({pattern}) in substitution: "
                        f"invalid escape '\\{nxt}'"
                    )
                out.append(re.escape(nxt))
                i += 1
            else:
                out.append(re.escape(ch))
        return re.compile("".join(out), re.DOTALL)

    def inner(self, stop: str = "}", raw: bool = False) -> str:
        """The word of a ``${NAME:-word}`` up to ``stop`` (expanded); ``raw``: an
        escaped character keeps its escape (a pattern's)."""
        out: list[str] = []
        while True:
            ch = self.take()
            if not ch:
                raise DockerfileError(f"line {self.line}: missing {stop!r} in {self.text!r}")
            if ch == stop:
                return "".join(out)
            if ch == self.escape:
                out.append((ch if raw else "") + self.take())
            elif ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                out.append(self.until("'"))
            elif ch == '"':
                out.append(self.double())
            else:
                out.append(ch)


def _reversed_pattern(pattern: str) -> str:
    """A pattern backwards, each escape still before the character it escapes (a
    suffix is found as the prefix of the reversed value)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def words(text: str, env: dict[str, str], escape: str = "\\", line: int = 0) -> list[str]:
    """The words of ``text`` as Docker splits them, each expanded and unquoted."""
    return _Lexer(text, env, escape, line).words(split=True)


def expand(text: str, env: dict[str, str], escape: str = "\\", line: int = 0) -> str:
    """``text`` as one word, expanded and unquoted (its spaces kept)."""
    return "".join(_Lexer(text, env, escape, line).words(split=False))


def expand_heredoc(text: str, env: dict[str, str], line: int = 0) -> str:
    """A heredoc's body with its ``$`` forms expanded as a shell expands an unquoted
    heredoc's: quotes are kept as they are, a backslash keeps ``$``, ``\\`` and a
    backquote."""
    lexer = _Lexer(text, env, "\\", line)
    out: list[str] = []
    while lexer.pos < len(text):
        ch = lexer.take()
        if ch == "\\" and lexer.peek() in ("$", "\\", "`"):
            out.append(lexer.take())
        elif ch == "$":
            out.append(lexer.dollar())
        else:
            out.append(ch)
    return "".join(out)


def pairs(instruction: Instruction, env: dict[str, str], escape: str) -> list[tuple[str, str]]:
    """ENV's and LABEL's ``KEY=VALUE ...`` (or the old ``KEY VALUE``), expanded."""
    text, line = instruction.text, instruction.line
    if not text:
        raise DockerfileError(f"line {line}: {instruction.keyword} requires at least one argument")
    raw = raw_words(text, escape)
    if "=" not in raw[0]:
        # The old form: one name, the rest of the line its value.
        if len(raw) < 2:
            raise DockerfileError(
                f"line {line}: {instruction.keyword} {text}: must have two arguments "
                "(KEY VALUE) or be KEY=VALUE"
            )
        key = raw[0]
        value = text[len(key) :].strip()
        return [(key, expand(value, env, escape, line))]
    found = []
    for word in raw:
        if "=" not in word:
            raise DockerfileError(
                f"line {line}: {instruction.keyword} {text}: {word!r} is not KEY=VALUE"
            )
        key, _, value = word.partition("=")
        key = expand(key, env, escape, line)
        if not key:
            raise DockerfileError(  # Docker's words
                f"line {line}: {instruction.keyword} names can not be blank: {text}"
            )
        found.append((key, expand(value, env, escape, line)))
    return found


def raw_words(text: str, escape: str) -> list[str]:
    """Words split at unquoted blanks, quotes and escapes kept (expanded later)."""
    found: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            word.append(ch + text[i + 1])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in " \t":
            if word:
                found.append("".join(word))
                word = []
            i += 1
            continue
        word.append(ch)
        i += 1
    if word:
        found.append("".join(word))
    return found

"""The ``--format`` of every verb: the part of Go's text/template that Docker users write.

``{{.Names}}``, ``{{.State.Pid}}``, ``table {{.ID}}\\t{{.Status}}``, ``{{json .Config}}``,
``{{join .Args ","}}``, ``{{printf "%s=%d" .A .B}}``, ``{{if eq .State "running"}}…{{else}}…
{{end}}``, ``{{range .Mounts}}{{.Destination}} {{end}}``, ``{{range $k, $v := .Labels}}``,
``{{with .X}}``, pipes (``{{.Name | upper}}``), parentheses, ``{{-``/``-}}`` trimming.

Functions: Docker's ``json``, ``join``, ``split``, ``lower``, ``upper``, ``title``, ``pad``,
``truncate``; Go's ``printf``, ``print``, ``println``, ``index``, ``len``, ``slice``, ``eq``,
``ne``, ``lt``, ``le``, ``gt``, ``ge``, ``and``, ``or``, ``not``.  Data are JSON-shaped values
(dicts, lists, strings, numbers); a dict may hold a callable, which is how ``{{.Label
"k"}}`` of ``ps`` works.  A field a dict lacks prints ``<no value>`` as a Go map's would,
unless the caller asks for strict fields (Docker's formatters are structs: an unknown field
is an error there) or for ``inspect``'s rules (``raw``: a key an object lacks is an error,
but in a :class:`GoMap`).  Written here rather than taken from a library: the few Python ports of
Go templates are unmaintained, and Docker's users need exactly this subset.
"""

from __future__ import annotations

from boxd import _wirejson

from ._client import CliError
from ._table import aligned

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

MISSING = object()


class GoMap(dict):  # type: ignore[type-arg]
    """A JSON object that is a Go map in Docker's types (``Config.Labels``), not a struct:
    under ``inspect``'s rules a key it lacks prints ``<no value>``."""

    __slots__ = ()


class TemplateError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(f"template: {message}", 1)


# ---- lexing ------------------------------------------------------------------------------


def _actions(text: str) -> Iterator[tuple[str, str]]:
    """("text", s) and ("action", inner) pieces, with ``{{-``/``-}}`` trimming applied."""
    pos, trim_next = 0, False
    while True:
        start = text.find("{{", pos)
        literal = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            literal = literal.lstrip()
        if start < 0:
            if literal:
                yield "text", literal
            return
        end = text.find("}}", start)
        if end < 0:
            raise TemplateError(f"unclosed action at offset {start}")
        inner = text[start + 2 : end]
        if inner.startswith("- ") or inner == "-":
            literal = literal.rstrip()
            inner = inner[1:]
        trim_next = inner.endswith(" -")
        if trim_next:
            inner = inner[:-1]
        if literal:
            yield "text", literal
        yield "action", inner.strip()
        pos = end + 2


class _Chain(str):
    """A field chain right after a ``)``: ``.HostPort`` of ``(index $v 0).HostPort``."""


def _tokens(action: str) -> list[str]:
    """An action's words: strings, raw strings, parentheses, pipes and the rest."""
    out: list[str] = []
    i = 0
    while i < len(action):
        ch = action[i]
        if ch.isspace():
            i += 1
        elif ch in "()|,":
            out.append(ch)
            i += 1
        elif ch == '"':
            j = i + 1
            while j < len(action) and action[j] != '"':
                j += 2 if action[j] == "\\" else 1
            if j >= len(action):
                raise TemplateError(f"unterminated quoted string in {{{{{action}}}}}")
            out.append(action[i : j + 1])
            i = j + 1
        elif ch == "`":
            j = action.find("`", i + 1)
            if j < 0:
                raise TemplateError(f"unterminated raw string in {{{{{action}}}}}")
            out.append(action[i : j + 1])
            i = j + 1
        elif action.startswith(":=", i):
            out.append(":=")
            i += 2
        else:
            j = i
            while j < len(action) and not action[j].isspace() and action[j] not in '()|,"`':
                if action.startswith(":=", j):
                    break
                j += 1
            word = action[i:j]
            out.append(_Chain(word) if ch == "." and i and action[i - 1] == ")" else word)
            i = j
    return out


# ---- parsing: a tree of nodes ---------------------------------------------------------
# A node is ("text", str) | ("out", pipe) | ("set", var, pipe)
# | ("if"|"with", pipe, body, else_body, var) | ("range", (key_var, value_var), pipe, body,
# else_body).  A pipe is a list of commands, a command a list of operands; an operand is a
# word (str), a parenthesised pipe (list) or a field of one: ("chain", operand, ".Field").


def _pipe(words: list[str]) -> list[list[Any]]:
    commands: list[list[Any]] = [[]]
    stack: list[list[list[Any]]] = []
    for word in words:
        if word == "(":
            stack.append(commands)
            commands = [[]]
        elif word == ")":
            if not stack:
                raise TemplateError("unexpected ) in the template")
            inner, commands = commands, stack.pop()
            commands[-1].append(inner)
        elif isinstance(word, _Chain):
            if not commands[-1]:
                raise TemplateError(f"unexpected {word} in the template")
            commands[-1].append(("chain", commands[-1].pop(), str(word)))
        elif word == "|":
            if not commands[-1]:
                raise TemplateError("missing command before |")
            commands.append([])
        else:
            commands[-1].append(word)
    if stack:
        raise TemplateError("unclosed ( in the template")
    if not commands[-1]:
        raise TemplateError("missing value in an action")
    return commands


def parse(text: str) -> list[Any]:
    pieces = list(_actions(text))
    pos = 0

    def block(closers: tuple[str, ...]) -> tuple[list[Any], str]:
        nonlocal pos
        nodes: list[Any] = []
        while pos < len(pieces):
            kind, value = pieces[pos]
            pos += 1
            if kind == "text":
                nodes.append(("text", value))
                continue
            words = _tokens(value)
            if not words or words[0].startswith("/*"):
                continue  # a comment
            head = words[0]
            if head in ("end", "else"):
                if head not in closers:
                    raise TemplateError(f"unexpected {{{{{head}}}}}")
                return nodes, head
            if head in ("if", "with"):
                var, rest = _declared(words[1:])
                body, closer = block(("end", "else"))
                other = block(("end",))[0] if closer == "else" else []
                nodes.append((head, _pipe(rest), body, other, var))
            elif head == "range":
                names: tuple[str, ...] = ()
                rest = words[1:]
                if ":=" in rest:
                    at = rest.index(":=")
                    names = tuple(w for w in rest[:at] if w != ",")
                    rest = rest[at + 1 :]
                body, closer = block(("end", "else"))
                other = block(("end",))[0] if closer == "else" else []
                nodes.append(("range", names, _pipe(rest), body, other))
            elif head in ("define", "template", "block"):
                raise TemplateError(f"{{{{{head}}}}} is not supported")
            else:
                var, rest = _declared(words)
                nodes.append(("set", var, _pipe(rest)) if var else ("out", _pipe(rest)))
        if closers:
            raise TemplateError(f"missing {{{{end}}}} (for {{{{{closers[0]}}}}})")
        return nodes, ""

    return block(())[0]


def _declared(words: list[str]) -> tuple[str, list[str]]:
    """The variable ``$x := ...`` declares (or ""), and the words of its value."""
    if len(words) > 2 and words[1] == ":=" and words[0].startswith("$"):
        return words[0], words[2:]
    return "", words


# ---- evaluation ---------------------------------------------------------------------------


def text_of(value: Any) -> str:
    """A value printed as Go's fmt prints it in a template."""
    if type(value) is str:  # most values (every field of a ps row): first, and as it is
        return value
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value)) if abs(value) < 1e6 else f"{value:g}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{text_of(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(text_of(v) for v in value) + "]"
    return str(value)


def _truthy(value: Any) -> bool:
    return value not in (MISSING, None) and bool(value)


def _printf(fmt: str, *args: Any) -> str:
    out, i, n = [], 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%" or i + 1 == len(fmt):
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "-+ #0123456789.":
            j += 1
        verb, flags = fmt[j] if j < len(fmt) else "", fmt[i + 1 : j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        arg = args[n] if n < len(args) else MISSING
        n += 1
        if arg is MISSING:
            out.append(f"%!{verb}(MISSING)")
        elif verb in "dxXo" and isinstance(arg, int | float):
            out.append(f"%{flags}{verb}" % int(arg))
        elif verb in "feg" and isinstance(arg, int | float):
            out.append(f"%{flags}{verb}" % arg)
        elif verb == "q":
            out.append(_wirejson.dumps(text_of(arg), ensure_ascii=False))
        else:
            out.append(f"%{flags}s" % text_of(arg))
    return "".join(out)


def _print(*args: Any) -> str:
    """Go's fmt.Sprint: a space between two operands only where neither is a string."""
    out = []
    for i, value in enumerate(args):
        if i and not isinstance(value, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(text_of(value))
    return "".join(out)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict):
                return MISSING
            raise TemplateError(f"index of {text_of(key)} in {text_of(value)}") from None
    return value


def _slice(value: Any, *bounds: int) -> Any:
    return value[bounds[0] : bounds[1]] if len(bounds) > 1 else value[bounds[0] if bounds else 0 :]


def _truncate(value: Any, n: int) -> str:
    s = text_of(value)
    return s[:n]


def _json(value: Any) -> str:
    if isinstance(value, dict):  # a row's methods ({{.Label "k"}}) are no JSON, as in Go
        value = {k: v for k, v in value.items() if not callable(v)}
    return _wirejson.dumps(None if value is MISSING else value, ensure_ascii=False)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "join": lambda items, sep: sep.join(text_of(i) for i in items or ()),
    "split": lambda s, sep: text_of(s).split(sep),
    "lower": lambda s: text_of(s).lower(),
    "upper": lambda s: text_of(s).upper(),
    "title": lambda s: text_of(s).title(),
    "pad": lambda s, left, right: " " * left + text_of(s) + " " * right,
    "truncate": _truncate,
    "printf": _printf,
    "print": _print,
    "println": lambda *a: " ".join(text_of(v) for v in a) + "\n",
    "index": _index,
    "len": lambda v: len(v) if v not in (MISSING, None) else 0,
    "slice": _slice,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truthy(a),
}


class _Run:
    def __init__(self, root: Any, strict: bool, raw: bool = False) -> None:
        self.strict = strict
        self.raw = raw
        self.vars: dict[str, Any] = {"$": root}

    def field(self, value: Any, path: str, args: list[Any]) -> Any:
        for name in path.split(".")[1:] if path != "." else []:
            if isinstance(value, _Header):
                break  # a table's header row: every field below a header is that header
            if value is MISSING or value is None:  # null: mostly Docker's nil maps
                return MISSING
            if not isinstance(value, dict):
                raise TemplateError(f"can't evaluate field {name} in {text_of(value)!r}")
            if name not in value:
                if self.raw and not isinstance(value, GoMap):
                    raise TemplateError(f'executing at <{path}>: map has no entry for key "{name}"')
                if self.strict:
                    raise TemplateError(f"can't evaluate field {name}")
                return MISSING
            value = value[name]
        if callable(value):
            return value(*args)
        if args:
            raise TemplateError(f"{path} is not a method but has arguments")
        return value

    def operand(self, word: Any, dot: Any) -> Any:
        if isinstance(word, list):
            return self.pipe(word, dot)
        if isinstance(word, tuple):  # ("chain", operand, ".Field")
            return self.field(self.operand(word[1], dot), word[2], [])
        if word.startswith('"'):
            import json  # only for quoted strings (json imports re and enum)

            try:
                return json.loads(word)
            except ValueError:
                raise TemplateError(f"bad string {word}") from None
        if word.startswith("`"):
            return word[1:-1]
        if word.startswith("."):
            return self.field(dot, word, [])
        if word.startswith("$"):
            var, _, rest = word.partition(".")
            if var not in self.vars:
                raise TemplateError(f"undefined variable {var}")
            return self.field(self.vars[var], "." + rest, []) if rest else self.vars[var]
        if word in ("true", "false"):
            return word == "true"
        if word == "nil":
            return None
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            pass
        if word in FUNCTIONS or word in ("and", "or"):
            return self.call(word, [], dot, MISSING)
        raise TemplateError(f'function "{word}" not defined')

    def call(self, name: str, words: list[Any], dot: Any, piped: Any) -> Any:
        if name in ("and", "or"):
            values = [self.operand(w, dot) for w in words]
            if piped is not MISSING:
                values.append(piped)
            result: Any = values[0] if values else MISSING
            for v in values:
                result = v
                if _truthy(v) != (name == "and"):
                    break
            return result
        args = [self.operand(w, dot) for w in words]
        if piped is not MISSING:
            args.append(piped)
        try:
            return FUNCTIONS[name](*args)
        except TemplateError:
            raise
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"error calling {name}: {exc}") from None

    def command(self, command: list[Any], dot: Any, piped: Any) -> Any:
        head, rest = command[0], command[1:]
        if isinstance(head, str) and (head in FUNCTIONS or head in ("and", "or")):
            return self.call(head, rest, dot, piped)
        if isinstance(head, str) and head.startswith((".", "$")) and (rest or piped is not MISSING):
            args = [self.operand(w, dot) for w in rest]
            if piped is not MISSING:
                args.append(piped)
            if head.startswith("$"):
                var, _, path = head.partition(".")
                return self.field(self.vars.get(var, MISSING), "." + path if path else ".", args)
            return self.field(dot, head, args)
        if rest or piped is not MISSING:
            if (
                isinstance(head, str)
                and head[:1].isalpha()
                and head not in ("true", "false", "nil")
            ):
                raise TemplateError(f'function "{head}" not defined')
            raise TemplateError(f"can't give arguments to {text_of(head)}")
        return self.operand(head, dot)

    def pipe(self, pipe: list[list[Any]], dot: Any) -> Any:
        value: Any = MISSING
        for command in pipe:
            value = self.command(command, dot, value)
        return value

    def nodes(self, nodes: list[Any], dot: Any, out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                pipe = node[1]
                word = pipe[0][0] if len(pipe) == 1 and len(pipe[0]) == 1 else None
                if isinstance(word, str) and word.startswith("."):  # {{.Field}}: that alone
                    out.append(text_of(self.field(dot, word, [])))
                else:
                    out.append(text_of(self.pipe(pipe, dot)))
            elif kind == "set":
                self.vars[node[1]] = self.pipe(node[2], dot)
            elif kind in ("if", "with"):
                value = self.pipe(node[1], dot)
                if node[4]:
                    self.vars[node[4]] = value
                if _truthy(value):
                    self.nodes(node[2], value if kind == "with" else dot, out)
                else:
                    self.nodes(node[3], dot, out)
            else:
                _, names, pipe, body, other = node
                value = self.pipe(pipe, dot)
                items = (
                    list(value.items())
                    if isinstance(value, dict)
                    else list(enumerate(value if isinstance(value, list | tuple) else []))
                )
                if isinstance(value, dict):
                    items.sort()
                if not items:
                    self.nodes(other, dot, out)
                for key, item in items:
                    if len(names) == 1:
                        self.vars[names[0]] = item
                    elif len(names) == 2:
                        self.vars[names[0]], self.vars[names[1]] = key, item
                    self.nodes(body, item, out)


class Template:
    """A parsed ``--format`` value; ``table`` formats also render a header row."""

    def __init__(self, text: str, *, strict: bool = False, raw: bool = False) -> None:
        """``strict``: a field a dict lacks is an error (Docker's formatters, structs);
        ``raw``: ``inspect``'s rules, where the docker CLI, its typed structs failing,
        runs the template on the raw JSON with Go's ``missingkey=error``: a key an object
        lacks is an error, but in a :class:`GoMap` (a Go map of the typed structs)."""
        text = _escapes(text)
        self.table = text.startswith("table")
        if self.table:
            text = text[len("table") :].lstrip(" ")
        self.tree = parse(text)
        self.strict = strict
        self.raw = raw
        # Only text and plain {{.Field}}s (a ps table): each field's string is put in as
        # it is, without the evaluator (which any other value still goes through).
        self._plain: list[tuple[str, bool]] | None = []
        for node in self.tree:
            plain = node[0] == "out" and len(node[1]) == len(node[1][0]) == 1
            word = node[1][0][0] if plain else ""
            if node[0] == "text":
                self._plain.append((node[1], False))
            elif isinstance(word, str) and word[:1] == "." and word.count(".") == 1 and word != ".":
                self._plain.append((word[1:], True))
            else:
                self._plain = None
                break

    def fields(self) -> list[str] | None:
        """The fields of the value the template names (``Names`` for ``{{.Names}}``); None
        when it may show any (``{{.}}``, ``{{json .}}``, a variable)."""
        words = _words(self.tree)
        if any(w == "." or w.startswith("$") for w in words):
            return None
        return list(dict.fromkeys(_field_names(words)))

    def render(self, value: Any) -> str:
        if self._plain is not None and type(value) is dict:
            out = []
            for text, is_field in self._plain:
                if is_field:
                    text = value.get(text, MISSING)
                    if type(text) is not str:
                        break  # anything but a string: as the evaluator would
                out.append(text)
            else:
                return "".join(out)
        out = []
        _Run(value, self.strict, self.raw).nodes(self.tree, value, out)
        return "".join(out)

    def header(self, value: dict[str, Any]) -> str:
        """A table's header row: the header cells by field name, never strict."""
        out: list[str] = []
        _Run(value, False).nodes(self.tree, value, out)
        return "".join(out)


def _escapes(text: str) -> str:
    """``\\t`` and ``\\n`` typed in the template's text as a tab and a newline, as Docker's
    formatters read them; inside an action they are left to its quoted strings."""
    out, pos = [], 0
    while (start := text.find("{{", pos)) >= 0:
        end = text.find("}}", start)
        end = len(text) if end < 0 else end + 2
        out += [text[pos:start].replace("\\t", "\t").replace("\\n", "\n"), text[start:end]]
        pos = end
    out.append(text[pos:].replace("\\t", "\t").replace("\\n", "\n"))
    return "".join(out)


def _words(value: Any, into: list[str] | None = None) -> list[str]:
    """Every word of a parsed template, in order (texts left out)."""
    words = [] if into is None else into
    if isinstance(value, str):
        words.append(value)
    elif isinstance(value, tuple) and value and value[0] == "text":
        pass
    elif isinstance(value, tuple) and value and value[0] == "chain":
        _words(value[1], words)  # its field is one of that value's, not of the root's
    elif isinstance(value, list | tuple):
        for v in value:
            _words(v, words)
    return words


def _field_names(words: list[str]) -> list[str]:
    """The fields of the value that ``words`` name (``Names`` of ``.Names.x``), in order."""
    return [w[1:].split(".")[0] for w in words if w.startswith(".") and len(w) > 1]


def print_formatted(
    fmt: str | Template,
    items: list[Any],
    headers: dict[str, str] | None = None,
    *,
    strict: bool = False,
) -> None:
    """Each item through the template ``fmt`` (a Template keeps its own ``strict``), one
    per line; a ``table`` format gets its header (each ``.Field`` shown as
    ``headers[Field]``, else the field name in capitals) and aligned columns."""
    template = fmt if isinstance(fmt, Template) else Template(fmt, strict=strict)
    lines = [template.render(item) for item in items]
    if not template.table:
        for line in lines:
            print(line)
        return
    names = _field_names(_words(template.tree))
    head = {n: (headers or {}).get(n, n.upper()) for n in names}
    header = template.header({n: _Header(h) for n, h in head.items()})
    print(aligned([header, *lines]) if lines or header else "")


class _Header(str):
    """A header cell: also answers calls (``{{.Label "x"}}`` in a table's header)."""

    def __call__(self, *args: Any) -> str:
        return str(self)

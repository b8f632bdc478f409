"""The README's shell examples against boxctl itself: each `boxctl VERB` it shows is a
command, and each option it gives one is that command's (no daemon: the CLI's own
tables).  What the examples run is tried by hand and by the verbs' own tests."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from boxctl._args import Command
from boxctl._cli import find_command

README = Path(__file__).resolve().parent.parent / "README.md"


def _calls() -> list[list[str]]:
    """The words of every `boxctl ...` in the README's sh blocks, comments left out."""
    calls = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            lexer = shlex.shlex(line.split("  #", 1)[0], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for word in [*lexer, ";"]:
                if word.strip("&|;<>()") and not word.startswith("$"):
                    words.append(word)
                    continue
                if words[:1] == ["boxctl"]:
                    calls.append(words[1:])
                words = []
    return calls


def _command(words: list[str]) -> tuple[Command, list[str]]:
    command = find_command(words[0])
    assert command is not None, f"boxctl {words[0]}: no such command"
    if command.subcommands is None:
        return command, words[1:]
    subcommands = dict(command.subcommands())
    assert words[1] in subcommands, f"boxctl {' '.join(words[:2])}: no such command"
    return subcommands[words[1]], words[2:]


def test_the_readme_s_boxctl_examples_name_commands_and_their_options() -> None:
    calls = _calls()
    assert len(calls) > 50
    for words in calls:
        command, rest = _command(words)
        options = {name: o for o in command.options for name in o.names}
        rest = [word.strip("[]") for word in rest]  # `prune -f [-a]`: -a as well
        i = 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] != "-":
            word, i = rest[i], i + 1
            names = [word.split("=", 1)[0]] if word.startswith("--") else []
            names = names or [f"-{c}" for c in word[1:].split("=", 1)[0]]
            for name in names:
                assert name in options, f"boxctl {' '.join(words)}: {name} is not an option"
            if options[names[-1]].takes_value and "=" not in word and len(names) == 1:
                i += 1  # its value


def test_the_readme_s_verb_synopses_name_their_options() -> None:
    """`stop [-t -s]`, `logs [-n/--tail N|all -f ...]`: the options the README's prose gives
    a verb (boxd-runtime's, in its own section, aside)."""
    text = README.read_text().split("### An OCI runtime", 1)[0]
    synopses = re.findall(r"`((?:[a-z]+\s)?[a-z]+)\s\[([^`]*?)\]", text)
    checked = 0
    for verb, inside in synopses:
        flags = re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", inside)
        if not flags:
            continue
        command, _ = _command(verb.split())
        names = {name for o in command.options for name in o.names}
        for flag in flags:
            assert flag in names, f"`{verb} [{inside}]`: {flag} is not an option of {verb}"
        checked += 1
    assert checked > 10

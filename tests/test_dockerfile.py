"""The Dockerfile reader, .dockerignore and the metadata instructions, without a daemon
(the builds themselves: tests/test_build.py)."""

from __future__ import annotations

from typing import Any

import pytest

from boxd._build.dockerfile import DockerfileError, expand, pairs, parse, words
from boxd._build.ignore import Ignore
from boxd._build.instructions import apply_metadata, go_duration_ns


def test_directives_comments_and_continuations() -> None:
    text = (
        "# escape=`\n# syntax=docker/dockerfile:1\n\nFROM x\n"
        'RUN echo a `\n  # dropped\n\n  b\n# a comment\nrun ["echo", "c"]\n'
    )
    df = parse(text)
    assert df.escape == "`"
    assert "syntax directive (docker/dockerfile:1) is ignored" in df.notes[0]
    first, second, third = df.instructions
    assert (first.keyword, first.text, first.line) == ("FROM", "x", 4)
    assert (second.keyword, second.text, second.exec_form) == ("RUN", "echo a   b", None)
    assert (third.keyword, third.exec_form, third.line) == ("RUN", ("echo", "c"), 10)
    # A directive after anything else is a comment.
    assert parse("FROM x\n# escape=`\n").escape == "\\"


def test_flags_and_bad_lines() -> None:
    ins = parse("COPY --from=build --chown=1:2 a b\n").instructions[0]
    assert ins.flags == (("from", "build"), ("chown", "1:2"))
    assert ins.text == "a b"
    with pytest.raises(DockerfileError, match="line 2: unknown instruction: FORM"):
        parse("FROM x\nFORM y\n")
    with pytest.raises(DockerfileError, match="line 1: unknown flag: --nope"):
        parse("COPY --nope=1 a b\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")
    # Not valid JSON: the shell form, as Docker reads it.
    assert parse("CMD [oops\n").instructions[0].exec_form is None


def test_a_heredoc_is_named_at_its_instruction() -> None:
    """BuildKit's heredocs: said at the RUN, not as an unknown instruction "echo" below;
    ``$((x<<2))`` and ``<<<`` are no heredocs."""
    for text, start in (
        ("FROM x\nRUN <<EOF\necho one\nEOF\n", "line 2: RUN <<EOF: heredocs are BuildKit's"),
        ("FROM x\nCOPY <<-'END' /a\nhi\nEND\n", "line 2: COPY <<END: heredocs"),
    ):
        with pytest.raises(DockerfileError, match=start):
            parse(text)
    parse("FROM x\nRUN echo $((1<<2)) $((y<<z)); cat <<<word\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", ["1"]),
        ("${A}x", ["1x"]),
        ("${UNSET:-d e}", ["d e"]),
        ("${EMPTY:-d}", ["d"]),
        ("${EMPTY-d}", [""]),
        ("${A:+set}", ["set"]),
        ("${UNSET:+set}", [""]),
        ("'$A' \"$A b\" \\$A", ["$A", "1 b", "$A"]),
        ("a\\ b c", ["a b", "c"]),
        ("$", ["$"]),
    ],
)
def test_substitution(text: str, expected: list[str]) -> None:
    assert words(text, {"A": "1", "EMPTY": ""}) == expected


def test_substitution_errors_name_the_line() -> None:
    with pytest.raises(DockerfileError, match="line 3: X: needed"):
        expand("${X:?needed}", {}, line=3)
    with pytest.raises(DockerfileError, match="missing '"):
        words("'open", {})


def test_env_forms() -> None:
    (new,) = parse('ENV A="x y" B=${A:-z} C=$D\n').instructions
    assert pairs(new, {"D": "d"}, "\\") == [("A", "x y"), ("B", "z"), ("C", "d")]
    (old,) = parse("ENV KEY value with spaces\n").instructions
    assert pairs(old, {}, "\\") == [("KEY", "value with spaces")]
    (bad,) = parse("ENV ONLYKEY\n").instructions
    with pytest.raises(DockerfileError, match="must have two arguments"):
        pairs(bad, {}, "\\")


def _apply(line: str, inner: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    config = inner or {}
    (ins,) = parse(line).instructions
    return config, apply_metadata(ins, config, {"P": "8080"}, "\\")


def test_metadata_instructions() -> None:
    config, by = _apply("EXPOSE $P 53/udp 7000-7001\n")
    assert config["ExposedPorts"] == {
        "8080/tcp": {}, "53/udp": {}, "7000/tcp": {}, "7001/tcp": {}
    }  # fmt: skip
    assert by.startswith("/bin/sh -c #(nop)  EXPOSE")
    config, _ = _apply("WORKDIR sub\n", {"WorkingDir": "/app"})
    assert config["WorkingDir"] == "/app/sub"
    config, _ = _apply("ENTRYPOINT run.sh\n", {"Cmd": ["x"], "Shell": ["/bin/bash", "-c"]})
    assert config == {"Entrypoint": ["/bin/bash", "-c", "run.sh"], "Shell": ["/bin/bash", "-c"]}
    config, _ = _apply('HEALTHCHECK --interval=1m30s --timeout=500ms CMD ["true"]\n')
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"], "Interval": 90 * 10**9, "Timeout": 500 * 10**6
    }  # fmt: skip
    config, _ = _apply("HEALTHCHECK NONE\n")
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    config, _ = _apply("ONBUILD RUN make\n")
    assert config["OnBuild"] == ["RUN make"]
    for bad, words_ in [
        ("EXPOSE 99999\n", "invalid port in EXPOSE: 99999"),
        ("SHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
        ("ONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger"),
        ("HEALTHCHECK --interval=soon CMD true\n", "invalid duration 'soon'"),
    ]:
        with pytest.raises(DockerfileError, match=words_):
            _apply(bad)
    assert go_duration_ns("0", "x") == 0


def test_dockerignore() -> None:
    ignore = Ignore("# c\n*.log\n!keep.log\nbuild/\n**/tmp\n/abs\n")
    assert ignore.excluded("a.log") and not ignore.excluded("keep.log")
    assert ignore.excluded("build/x/y")  # below an excluded directory
    assert ignore.excluded("d/e/tmp") and ignore.excluded("tmp")
    assert ignore.excluded("abs") and not ignore.excluded("sub/a.log")
    assert not Ignore("").excluded("anything")
    # An excluded directory is walked for what a ! line names below it (Docker's check).
    kept = Ignore("dir\n!dir/sub/file\n")
    assert kept.excluded("dir/sub") and not kept.excluded("dir/sub/file")
    assert kept.reincludes_below("dir") and kept.reincludes_below("dir/sub")
    assert not kept.reincludes_below("dir/sub/file") and not kept.reincludes_below("other")

"""The Dockerfile reader, .dockerignore and the metadata instructions, without a daemon
(the builds themselves: tests/test_build.py)."""

from __future__ import annotations

from typing import Any

import pytest

from boxd._build.dockerfile import DockerfileError, expand, expand_heredoc, pairs, parse, words
from boxd._build.ignore import Ignore
from boxd._build.instructions import apply_metadata, go_duration_ns, run_command


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
    with pytest.raises(
        DockerfileError, match=r"line 2: unknown instruction: FORM \(did you mean FROM\?\)"
    ):
        parse("FROM x\nFORM y\n")
    with pytest.raises(DockerfileError, match=r"unknown instruction: cpy \(did you mean copy\?\)"):
        parse("FROM x\ncpy a b\n")
    with pytest.raises(DockerfileError, match=r"unknown instruction: BOGUS$"):
        parse("FROM x\nBOGUS y\n")
    with pytest.raises(DockerfileError, match=r"--frm \(for COPY\) \(did you mean from\?\)"):
        parse("FROM x\nCOPY --frm=build a b\n")
    with pytest.raises(
        DockerfileError, match="line 2: the --security option of RUN requires BuildKit"
    ):
        parse("FROM x\nRUN --security=insecure make\n")
    with pytest.raises(DockerfileError, match="line 1: unknown flag: --nope"):
        parse("COPY --nope=1 a b\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM x\n")
    # Not valid JSON: the shell form, as Docker reads it.
    assert parse("CMD [oops\n").instructions[0].exec_form is None
    # An instruction without its arguments is refused by the parser, before any step
    # runs, in Docker's words (moby's TestBuildLineErrorOnBuild, TestBuildMissingArgs);
    # RUN, CMD and ENTRYPOINT may be empty.
    with pytest.raises(DockerfileError, match=r"^line 3: ONBUILD requires at least one argument$"):
        parse("FROM x\nRUN make\nONBUILD\n")
    with pytest.raises(DockerfileError, match=r"^line 2: COPY requires at least two arguments$"):
        parse("FROM x\nCOPY --from=y\n")
    assert len(parse("FROM x\nRUN\nCMD\nENTRYPOINT\n").instructions) == 4


def test_heredocs_take_the_lines_up_to_their_delimiter() -> None:
    """BuildKit's heredocs: the lines below RUN, COPY and ADD up to each delimiter, as
    written (comments and empty lines are the body's); ``<<-`` drops leading tabs, a
    quoted delimiter turns expansion off; ``$((x<<2))``, ``<<<`` and the JSON form have
    none."""
    text = (
        "FROM x\n"
        "RUN <<EOF\n"
        "# kept\n"
        "\n"
        "echo one\n"
        "EOF\n"
        "COPY <<-'END' <<B /dir/\n"
        "\tindented\n"
        "\tEND\n"
        "b $X\n"
        "B\n"
        "RUN echo $((1<<2)) $((y<<z)); cat <<<word\n"
        'RUN ["sh", "-c", "cat <<EOF"]\n'
    )
    run, copy, shift, exec_form = parse(text).instructions[1:]
    (doc,) = run.heredocs
    assert (doc.marker, doc.name, doc.body, doc.expand) == (
        "<<EOF",
        "EOF",
        "# kept\n\necho one\n",
        True,
    )
    first, second = copy.heredocs
    assert (first.marker, first.name, first.chomp, first.expand) == ("<<-'END'", "END", True, False)
    assert (first.body, first.content, first.end) == ("\tindented\n", "indented\n", "\tEND")
    assert (second.name, second.content, second.expand) == ("B", "b $X\n", True)
    assert shift.heredocs == () and exec_form.heredocs == ()
    with pytest.raises(DockerfileError, match="line 2: RUN <<EOF: no line 'EOF' ends the heredoc"):
        parse("FROM x\nRUN <<EOF\necho one\n")


def test_a_run_with_heredocs_gets_its_command_as_buildkit_gives_it() -> None:
    shell = ["/bin/sh", "-c"]

    def command(text: str) -> tuple[list[str], str | None]:
        cmd, script = run_command(parse(text).instructions[0], shell)
        return cmd, script.content if script else None

    assert command("RUN <<EOF\necho a\necho b\nEOF\n") == ([*shell, "echo a\necho b\n"], None)
    assert command("RUN <<-EOF\n\techo a\n\tEOF\n") == ([*shell, "echo a\n"], None)
    assert command("RUN <<EOF\n#!/bin/busybox sh\necho a\nEOF\n") == (
        ["/dev/pipes/EOF"],
        "#!/bin/busybox sh\necho a\n",
    )
    assert command("RUN cat <<A >a && cat <<-B\nx\nA\n\ty\n\tB\n") == (
        [*shell, "cat <<A >a && cat <<-B\nx\nA\n\ty\n\tB"],
        None,
    )


def test_heredoc_expansion_keeps_quotes_as_a_shell_does() -> None:
    env = {"X": "1"}
    assert expand_heredoc("'$X' \"${X}\" \\$X \\\\ \\n ${U:-d}\n", env) == "'1' \"1\" $X \\ \\n d\n"


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
        # The shell's special parameters and positional ones are names nothing sets.
        ("$$ a$$b ${$}c $1x", ["", "ab", "c", "x"]),
        # Docker's pattern forms (BuildKit's lexer, which its classic builder uses too).
        ("${V#v} ${V#*.} ${V##*.} ${V%.*} ${V%%.*}", ["1.2.3", "2.3", "3", "v1.2", "v1"]),
        ("${P##*/} ${P%/*} ${V%\\*} ${UNSET#x}", ["t.tar.gz", "/usr/lib", "v1.2.3", ""]),
        (
            "${V/./-} ${V//./-} ${P/\\/usr/opt} ${V//[/x}",
            ["v1-2.3", "v1-2-3", "opt/lib/t.tar.gz", "v1.2.3"],
        ),
    ],
)
def test_substitution(text: str, expected: list[str]) -> None:
    env = {"A": "1", "EMPTY": "", "V": "v1.2.3", "P": "/usr/lib/t.tar.gz"}
    assert words(text, env) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${X:?needed}", "line 3: X: needed"),
        ("${EMPTY:?}", "line 3: EMPTY: is not allowed to be empty"),
        ("${X?}", "line 3: X: is not allowed to be unset"),
        ("${X:#a}", r"line 3: unsupported modifier \(:#\) in substitution"),
        ("${X/a", "line 3: missing '/'"),
        ("${X#\\a}", r"line 3: invalid pattern \(\\a\) in substitution: invalid escape"),
        ("${}", "line 3: bad substitution"),
    ],
)
def test_substitution_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        expand(text, {"EMPTY": ""}, line=3)


def test_an_unclosed_quote_is_refused() -> None:
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
    # Cleaned, and a variable's words split for EXPOSE, as Docker's builder does (moby's
    # TestBuildWorkdirWithEnvVariables, TestBuildEnvironmentReplacementExpose).
    config, by = _apply("WORKDIR //a/./b/../c/\n", {"WorkingDir": "/app"})
    assert config["WorkingDir"] == "/a/c" and by.endswith("WORKDIR /a/c")
    (ins,) = parse("EXPOSE $PORTS\n").instructions
    config = {}
    apply_metadata(ins, config, {"PORTS": "  99   100 "}, "\\")
    assert config["ExposedPorts"] == {"99/tcp": {}, "100/tcp": {}}
    config, _ = _apply("ENTRYPOINT run.sh\n", {"Cmd": ["x"], "Shell": ["/bin/bash", "-c"]})
    assert config == {"Entrypoint": ["/bin/bash", "-c", "run.sh"], "Shell": ["/bin/bash", "-c"]}
    config, _ = _apply('HEALTHCHECK --interval=1m30s --timeout=500ms CMD ["true"]\n')
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"], "Interval": 90 * 10**9, "Timeout": 500 * 10**6
    }  # fmt: skip
    config, _ = _apply("HEALTHCHECK NONE\n")
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    config, _ = _apply("HEALTHCHECK --retries=0 CMD true\n")  # Docker's: the default
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"]}
    config, _ = _apply("ONBUILD RUN make\n")
    assert config["OnBuild"] == ["RUN make"]
    # ENV replaces a variable where it is (PATH stays first), as Docker's.
    config, _ = _apply("ENV PATH=/opt B=2 C=3\n", {"Env": ["PATH=/bin", "B=1", "Z=9"]})
    assert config["Env"] == ["PATH=/opt", "B=2", "Z=9", "C=3"]
    # VOLUME keeps a relative path, and a broken JSON form's words, as dockerd's builder
    # (moby's TestBuildWithVolumes: `VOLUME [/test7 /test8]`).
    config, _ = _apply('VOLUME data /a ["/b"]\n')
    assert sorted(config["Volumes"]) == ["/a", "[/b]", "data"]
    for bad, words_ in [
        ("EXPOSE 99999\n", "invalid port in EXPOSE: 99999"),
        ("SHELL sh -c\n", "SHELL requires the arguments to be in JSON form"),
        ("HEALTHCHECK --retries=-1 CMD true\n", r"--retries cannot be negative \(-1\)"),
        ("HEALTHCHECK --retries=x CMD true\n", "--retries takes a count, not 'x'"),
        ("ONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger"),
        ("HEALTHCHECK --interval=soon CMD true\n", "invalid duration 'soon'"),
    ]:
        with pytest.raises(DockerfileError, match=words_):
            _apply(bad)
    assert go_duration_ns("0", "x") == 0


@pytest.mark.parametrize(
    ("line", "inner", "created_by"),
    [
        ('CMD ["nginx", "-g", "daemon off;"]', {}, 'CMD ["nginx" "-g" "daemon off;"]'),
        ("EXPOSE 80/udp $P 7000-7001", {}, "EXPOSE 80/udp 8080 7000-7001"),
        ("VOLUME /a /b", {}, "VOLUME [/a /b]"),
        ("STOPSIGNAL SIGTERM", {}, "STOPSIGNAL SIGTERM"),
        ("USER 1000:50", {}, "USER 1000:50"),
        (
            "HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://x/ || exit 1",
            {},
            "HEALTHCHECK &{Test:[CMD-SHELL curl -f http://x/ || exit 1] Interval:1m30s "
            "Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}",
        ),
        (
            "HEALTHCHECK NONE",
            {},
            "HEALTHCHECK &{Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s "
            "StartInterval:0s Retries:0}",
        ),
    ],
)
def test_history_lines_are_dockers(line: str, inner: dict[str, Any], created_by: str) -> None:
    """A metadata step's ``created_by`` as Docker's builder writes it (Go's %q, %v, %+v),
    so ``history`` reads as Docker's and --cache-from matches Docker-built images."""
    assert _apply(line + "\n", inner)[1] == "/bin/sh -c #(nop)  " + created_by


def test_history_lines_begin_with_the_stages_shell() -> None:
    shell = {"Shell": ["/bin/bash", "-c"]}
    _, by = _apply("ENTRYPOINT echo hi\n", dict(shell))
    assert by == '/bin/bash -c #(nop)  ENTRYPOINT ["/bin/bash" "-c" "echo hi"]'
    _, by = _apply('SHELL ["/bin/ash", "-eo", "pipefail", "-c"]\n', dict(shell))
    assert by == "/bin/ash -eo pipefail -c #(nop)  SHELL [/bin/ash -eo pipefail -c]"
    _, by = _apply("WORKDIR /app\n", dict(shell))  # a step that writes: one space
    assert by == "/bin/bash -c #(nop) WORKDIR /app"


def test_dockerignore() -> None:
    ignore = Ignore("# c\n*.log\n!keep.log\nbuild/\n**/tmp\n/abs\n")
    assert ignore.excluded("a.log") and not ignore.excluded("keep.log")
    assert ignore.excluded("build/x/y")  # below an excluded directory
    assert ignore.excluded("d/e/tmp") and ignore.excluded("tmp")
    assert ignore.excluded("abs") and not ignore.excluded("sub/a.log")
    assert not Ignore("").excluded("anything")
    assert Ignore("\ufeffDockerfile\n").excluded("Dockerfile")  # an editor's byte order mark
    # An excluded directory is walked for what a ! line names below it (Docker's check).
    kept = Ignore("dir\n!dir/sub/file\n")
    assert kept.excluded("dir/sub") and not kept.excluded("dir/sub/file")
    assert kept.reincludes_below("dir") and kept.reincludes_below("dir/sub")
    assert not kept.reincludes_below("dir/sub/file") and not kept.reincludes_below("other")

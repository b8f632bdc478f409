"""The Go-template subset behind every ``--format``, against what Go's text/template (and so
``docker ... --format``) prints for the same template and data.  No root, no daemon."""

from __future__ import annotations

import re
from typing import Any

import pytest

from boxctl._table import aligned
from boxctl._template import Template, TemplateError, print_formatted

DATA: dict[str, Any] = {
    "ID": "4f2a9c1b7e3d",
    "Names": "web",
    "State": {"Status": "running", "Pid": 4242, "ExitCode": 0, "Running": True, "Health": None},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"team": "a", "app": "web"}, "Cmd": ["sh"]},
    "Mounts": [{"Destination": "/data"}, {"Destination": "/logs"}],
    "Size": 1.5,
    "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{{.Names}}", "web"),
        ("{{.ID}}\\t{{.State.Status}}", "4f2a9c1b7e3d\trunning"),
        ("{{.State.Pid}} {{.State.Running}}", "4242 true"),
        ("{{json .Config.Env}}", '["A=1","B=2"]'),
        ("{{json .Config.Labels}}", '{"team":"a","app":"web"}'),
        ("{{.Config.Env}}", "[A=1 B=2]"),
        ("{{.Config.Labels}}", "map[app:web team:a]"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ('{{index .Config.Labels "team"}}', "a"),
        ('{{printf "%s:%d" .Names .State.Pid}}', "web:4242"),
        ('{{printf "%q" .Names}}', '"web"'),
        ("{{.Names | upper}}", "WEB"),
        ("{{upper .Names | lower}}", "web"),
        ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
        ('{{if ne .State.Status "running"}}up{{else}}down{{end}}', "down"),
        ("{{if and .State.Running (eq .State.ExitCode 0)}}ok{{end}}", "ok"),
        ("{{if or .State.Health .State.Running}}y{{end}}", "y"),
        ("{{if not .State.Health}}none{{end}}", "none"),
        ("{{range .Mounts}}{{.Destination}} {{end}}", "/data /logs "),
        ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "app=web;team=a;"),
        ("{{range $i, $m := .Mounts}}{{$i}}{{$m.Destination}}{{end}}", "0/data1/logs"),
        ("{{range .Nothing}}x{{else}}empty{{end}}", "empty"),
        ("{{with .State}}{{.Pid}}{{end}}", "4242"),
        ("{{.Missing}}", "<no value>"),
        ("{{.State.Health}}", "<nil>"),
        ("{{len .Mounts}}", "2"),
        ('{{split "a,b" ","}}', "[a b]"),
        ("{{truncate .ID 4}}", "4f2a"),
        ("a {{- .Names -}} b", "awebb"),
        ("{{/* a comment */}}x", "x"),
        ("{{$.Names}}", "web"),
        ("{{.Size}}", "1.5"),
        ("{{title .Names}}", "Web"),
        # A field of a parenthesised value: docker inspect's port idiom.
        ("{{(index .Mounts 0).Destination}}", "/data"),
        ("{{(index .Mounts 1).Destination | upper}}", "/LOGS"),
        ("{{range $k, $v := .Ports}}{{$k}}>{{(index $v 0).HostPort}} {{end}}", "80/tcp>8080 "),
        ("{{(.State).Pid}}", "4242"),
        # Variables declared in an action, an if or a with.
        ("{{$n := .Names}}{{$n}}-{{$n}}", "web-web"),
        ("{{with $m := index .Mounts 1}}{{$m.Destination}}{{end}}", "/logs"),
        ("{{if $s := .State.Status}}{{$s}}{{end}}", "running"),
        # An escape in a quoted string is the string's (docker inspect's line idiom).
        ('{{range .Mounts}}{{.Destination}}{{"\\n"}}{{end}}', "/data\n/logs\n"),
        ('{{printf "%s\\t%d" .Names .State.Pid}}', "web\t4242"),
        # print is Go's Sprint: a space between operands only where neither is a string.
        ("{{print .State.Pid .State.ExitCode}}", "4242 0"),
        ('{{print .Names .State.Pid "x" 1}}', "web4242x1"),
        ("{{print .State.Running .Size}}", "true 1.5"),
    ],
)
def test_renders_as_go_does(fmt: str, expected: str) -> None:
    assert Template(fmt).render(DATA) == expected.replace("\\t", "\t")


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{{.Names", "unclosed action"),
        ("{{if .Names}}x", "missing {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{nosuch .Names}}", 'function "nosuch" not defined'),
        ('{{printf "%s" (.Names}}', "unclosed ("),
        ('{{template "x"}}', "not supported"),
    ],
)
def test_bad_templates_are_refused_with_the_reason(fmt: str, message: str) -> None:
    with pytest.raises(TemplateError, match="template: .*" + re.escape(message)):
        Template(fmt).render(DATA)


def test_strict_fields_name_the_unknown_one() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        Template("{{.Nope}}", strict=True).render(DATA)


def test_methods_take_arguments() -> None:
    row = {"Label": lambda key: {"team": "a"}.get(key, "")}
    assert Template('{{.Label "team"}}').render(row) == "a"


def test_table_prints_docker_headers_and_aligned_columns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [{"ID": "abc", "Names": "web"}, {"ID": "defghi", "Names": "db"}]
    print_formatted("table {{.ID}}\\t{{.Names}}", rows, {"ID": "CONTAINER ID"})
    assert capsys.readouterr().out.splitlines() == [
        "CONTAINER ID   NAMES",
        "abc            web",
        "defghi         db",
    ]


def test_aligned_pads_every_column_but_the_last() -> None:
    assert aligned(["a\tbb\tc", "ddd\te\tf"]) == "a         bb        c\nddd       e         f"
    assert aligned(["a_long_name\tx"]) == "a_long_name   x"
    # Rows of fewer cells: a row's last cell is never padded, nor counted in a width.
    assert aligned(["a\tb", "ccccccccccccc", "d\te\tf"]) == (
        "a         b\nccccccccccccc\nd         e         f"
    )


def test_json_of_a_row_leaves_its_methods_out() -> None:
    """`--format '{{json .}}'` of ps, volume ls, network ls: a row's callables (`{{.Label
    "k"}}`) are methods in Docker's formatters, which Go's JSON leaves out."""
    row = {"Names": "web", "Labels": "team=a", "Label": lambda key: "a"}
    assert Template("{{json .}}").render(row) == '{"Names":"web","Labels":"team=a"}'
    assert Template('{{.Label "team"}}').render(row) == "a"


@pytest.mark.parametrize(
    ("fmt", "printed", "error"),
    [
        ("{{.Name}}", "/web", None),
        ("{{.Config.Labels.nope}}", "<no value>", None),  # a Go map: no entry is no value
        ("{{.HostConfig.LogConfig.Config.x}}", "<no value>", None),
        ("{{range .Mounts}}{{.Nope}}{{end}}", None, 'map has no entry for key "Nope"'),
        ("{{.Nope}}", None, 'executing at <.Nope>: map has no entry for key "Nope"'),
        ("{{.State.Nope}}", None, 'executing at <.State.Nope>: map has no entry for key "Nope"'),
        ("{{.State.Health.Status}}", None, 'map has no entry for key "Health"'),
        ("{{.NetworkSettings.Networks.Labels.Nope}}", None, 'map has no entry for key "Nope"'),
        ("{{.Labels.x}}", "<no value>", None),  # null: a nil map (a volume's labels)
    ],
)
def test_inspect_s_templates_fail_on_a_missing_key_but_in_a_go_map(
    fmt: str, printed: str | None, error: str | None
) -> None:
    """`docker inspect -f '{{.State.Nope}}'` fails (the CLI runs the template on the raw JSON
    with missingkey=error once its typed structs failed); boxctl printed `<no value>` and
    exited 0.  Keys of Docker's Go maps (labels, log options) still print `<no value>`, and
    a network named Labels is no map.  What docker 28's CLI printed for the same object."""
    from boxctl._inspect import _go_maps

    value = _go_maps(
        {
            "Name": "/web",
            "Config": {"Labels": {"a": "1"}},
            "State": {"Status": "created"},
            "Labels": None,
            "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}},
            "Mounts": [{"Type": "bind"}],
            "NetworkSettings": {"Networks": {"Labels": {"NetworkID": "n1"}}},
        }
    )
    template = Template(fmt, raw=True)
    if error is None:
        assert template.render(value) == printed
        return
    with pytest.raises(TemplateError) as info:
        template.render(value)
    assert error in str(info.value) and info.value.code == 1

"""``ps``'s default table, built without the template evaluator, prints what the template
``table {{.ID}}\\t{{.Image}}...`` prints (no daemon: briefs as the daemon sends them)."""

from __future__ import annotations

from typing import Any

import pytest

from boxctl._ps import COLUMNS, DEFAULT_FIELDS, HEADERS, default_table, row
from boxctl._template import Template, print_formatted

NOW = 1_800_000_000.0


def _brief(n: int, **over: Any) -> dict[str, Any]:
    brief: dict[str, Any] = {
        "id": f"{n:02d}" + "ab" * 31,
        "name": f"box-{n}",
        "image": "docker.io/library/busybox:latest",
        "command": ["sh", "-c", "echo a long command\tline with a tab"],
        "created_at": NOW - 3600 * n,
        "started_at": NOW - 60,
        "finished_at": None,
        "status": "running",
        "exit_code": None,
        "oom_killed": False,
        "ports": [],
        "exposed": [],
        "labels": ["team=a"],
        "volumes": [],
        "networks": ["bridge"],
        "network": "bridge",
    }
    brief.update(over)
    return brief


BRIEFS = [
    _brief(1),
    _brief(
        2,
        status="exited",
        exit_code=137,
        oom_killed=True,
        finished_at=NOW - 5,
        ports=[{"host_ip": "", "host_port": 8080, "container_port": 80, "protocol": "tcp"}],
        exposed=["443"],
    ),
    _brief(3, status="created", image="127.0.0.1:5000/tools/app:1.2", command=["true"]),
    _brief(4, status="paused", name="a-much-longer-container-name", size=[2_000_000, 9_000_000]),
]


@pytest.mark.parametrize("count", [0, 1, len(BRIEFS)])
@pytest.mark.parametrize("trunc", [True, False])
@pytest.mark.parametrize("size", [False, True])
def test_default_table_is_the_templates(
    count: int, trunc: bool, size: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    fields = (*DEFAULT_FIELDS, "Size") if size else DEFAULT_FIELDS
    template = Template("table " + "\\t".join("{{." + f + "}}" for f in fields), strict=True)
    briefs = BRIEFS[:count]
    rows = [row(c, NOW, trunc=trunc, names=COLUMNS) for c in briefs]
    print_formatted(template, rows, HEADERS)
    through_template = capsys.readouterr().out
    assert default_table(briefs, NOW, trunc=trunc, size=size) + "\n" == through_template
    assert through_template.startswith("CONTAINER ID ")


def test_ports_are_grouped_and_ordered_as_docker_shows_them() -> None:
    """docker/cli's DisplayablePorts: by container port; runs of ports published on the
    same number (and exposed ones) shown as a range; other mappings last, one by one."""

    def bound(port: int, host: int, ip: str = "", proto: str = "tcp") -> dict[str, Any]:
        return {"container_port": port, "host_port": host, "host_ip": ip, "protocol": proto}

    ports = [
        bound(80, 18080),
        bound(80, 18080, "::"),
        bound(9001, 9001, proto="udp"),
        bound(81, 35703, "127.0.0.1"),
        bound(9000, 9000, proto="udp"),
    ]
    brief = _brief(1, ports=ports, exposed=["7000/tcp", "7001", "443", "8000-8001/udp"])
    assert row(brief, NOW, trunc=True)["Ports"] == (
        "443/tcp, 7000-7001/tcp, 8000-8001/udp, 0.0.0.0:9000-9001->9000-9001/udp, "
        "0.0.0.0:18080->80/tcp, [::]:18080->80/tcp, 127.0.0.1:35703->81/tcp"
    )


def test_mounts_are_names_cut_as_docker_cuts_them() -> None:
    """docker/cli's Mounts: each mount's volume name, else its source, cut to 15
    characters with an ellipsis unless --no-trunc."""
    brief = _brief(1, volumes=["pgdata", "/srv/www/static/files", "ab" * 32])
    assert row(brief, NOW, trunc=True)["Mounts"] == "pgdata,/srv/www/stati…,ababababababab…"
    assert row(brief, NOW, trunc=False)["Mounts"] == ",".join(brief["volumes"])


def test_the_command_is_quoted_as_dockers_list_quotes_it() -> None:
    """moby's list: a word with a space between single quotes (nothing else escaped),
    then docker/cli's cut to 20 characters and Go quoting."""
    brief = _brief(1, command=["sh", "-c", "head -c 7000 /dev/zero; echo 'done'"])
    assert row(brief, NOW, trunc=False)["Command"] == (
        "\"sh -c 'head -c 7000 /dev/zero; echo 'done''\""
    )
    assert row(brief, NOW, trunc=True)["Command"] == '"sh -c \'head -c 7000…"'
    assert row(_brief(2, command=["a;b", "$x"]), NOW, trunc=True)["Command"] == '"a;b $x"'


def test_an_oom_kill_is_not_in_the_status_as_in_dockers() -> None:
    """moby's State.String(): ``Exited (137) 5 seconds ago``, whatever killed it (inspect's
    State.OOMKilled tells an OOM kill); the Docker API's list says the same."""
    oom = BRIEFS[1]
    assert oom["oom_killed"]
    assert row(oom, NOW, trunc=True)["Status"] == "Exited (137) 5 seconds ago"

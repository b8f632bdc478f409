"""``ps``, ``inspect`` and ``logs`` as Docker's users script them (issue 16): filters,
``-n``/``-l``, ``--no-trunc``, ``-s``, Go-template and JSON formats with Docker's keys,
``inspect`` in ``docker inspect``'s shape, ``logs`` with ``-n``, ``--tail all``, ``--until``
and ``--details``.  Real daemon, real CLI; expected outputs quote Docker's docs."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from daemon_harness import Daemon

pytestmark = pytest.mark.root


def _ps(daemon: Daemon, *args: str) -> list[str]:
    return daemon.ctl("ps", *args).stdout.splitlines()


def test_ps_filters_limits_and_formats(daemon: Daemon) -> None:
    daemon.ctl("create", "--name", "first", "-l", "team=a", "default", "true")
    r = daemon.ctl(
        "run", "--name", "failed", "-l", "team=b", "default", "sh", "-c", "exit 3", check=False
    )
    assert r.returncode == 3
    web = daemon.ctl(
        "run", "-d", "--name", "web", "-l", "team=a", "default", "sleep", "300"
    ).stdout.strip()
    names = "{{.Names}}"
    # Without -a only running ones; a status filter looks at every container, an exited
    # filter does not (as dockerd's: so without -a it finds none, the exited being left).
    assert _ps(daemon, "--format", names) == ["web"]
    assert _ps(daemon, "-a", "--format", names) == ["web", "failed", "first"]
    assert _ps(daemon, "-f", "status=exited", "--format", names) == ["failed"]
    assert _ps(daemon, "-f", "exited=3", "--format", names) == []
    assert _ps(daemon, "-a", "-f", "exited=3", "--format", names) == ["failed"]
    assert _ps(daemon, "-a", "-f", "status=created", "--format", names) == ["first"]
    assert _ps(daemon, "-a", "-f", "label=team=a", "--format", names) == ["web", "first"]
    assert _ps(daemon, "-a", "-f", "label=team", "-f", "name=fi", "--format", names) == ["first"]
    # Docker's id filter is a regular expression searched in the whole id: 12 digits, as
    # `ps` shows them, so that no other container's 64 random ones hold them by chance.
    assert _ps(daemon, "-a", "-f", f"id={web[:12]}", "--format", names) == ["web"]
    assert _ps(daemon, "-a", "-f", "before=web", "--format", names) == ["failed", "first"]
    assert _ps(daemon, "-a", "-f", "since=first", "--format", names) == ["web", "failed"]
    assert _ps(daemon, "-a", "-f", "ancestor=default", "-q") == _ps(daemon, "-a", "-q")
    # -n N: the newest N of all; -l: the newest one.
    assert _ps(daemon, "-n", "2", "--format", names) == ["web", "failed"]
    assert _ps(daemon, "-l", "--format", names) == ["web"]
    assert _ps(daemon, "-q", "--no-trunc") == [web]
    # Templates: fields, methods, tables with Docker's headers.
    assert _ps(daemon, "--format", '{{.ID}} {{.Label "team"}} {{.State}}') == [
        f"{web[:12]} a running"
    ]
    table = _ps(daemon, "-a", "-f", "name=web", "--format", "table {{.Names}}\\t{{.Status}}")
    assert table[0].split() == ["NAMES", "STATUS"] and table[1].startswith("web       Up ")
    default = _ps(daemon)
    assert [h.strip() for h in default[0].split("   ") if h][:3] == [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
    ]
    assert default[1].startswith(web[:12]) and '"sleep 300"' in default[1]
    # --format json: one object per line, Docker's keys.
    (line,) = _ps(daemon, "--format", "json")
    row = json.loads(line)
    assert {"ID", "Names", "Image", "Command", "Status", "State", "Labels", "Ports"} <= set(row)
    assert (row["ID"], row["Names"], row["State"], row["Labels"]) == (
        web[:12],
        "web",
        "running",
        "team=a",
    )
    # -s: a SIZE column; what the container wrote, and with its image's files (none on
    # default), as Docker shows them.
    daemon.ctl("exec", "web", "sh", "-c", "head -c 2000000 /dev/zero > /big")
    assert _ps(daemon, "-s", "--format", "{{.Size}}") == ["2MB (virtual 2MB)"]


BAD = [
    (("-f", "colour=red"), "invalid filter 'colour'"),
    (("-f", "status=sleepy"), "invalid filter 'status=sleepy'"),
    (("-f", "novalue"), "invalid filter 'novalue': use KEY=VALUE"),
    (("-f", "before=nosuch"), "No such container: nosuch"),
    (("--format", "{{.Nope}}"), "can't evaluate field Nope"),
    (("--format", "{{.Names"), "unclosed action"),
    (("-n", "x"), "invalid -n 'x'"),
]


def test_ps_refuses_bad_filters_and_formats(daemon: Daemon) -> None:
    daemon.ctl("run", "-d", "--name", "x", "default", "sleep", "300")
    for args, message in BAD:
        r = daemon.ctl("ps", *args, check=False)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr


def test_inspect_in_dockers_shape_with_format(daemon: Daemon) -> None:
    cid = daemon.ctl(
        "run", "-d", "--name", "web", "-e", "A=1", "-l", "team=a", "default", "sleep", "300"
    ).stdout.strip()
    (c,) = json.loads(daemon.ctl("inspect", "web").stdout)
    pid = daemon.inspect("web")["state"]["pid"]
    assert c["Id"] == cid and c["Name"] == "/web"
    assert (c["State"]["Status"], c["State"]["Pid"], c["State"]["Running"]) == (
        "running",
        pid,
        True,
    )
    assert "A=1" in c["Config"]["Env"] and c["Config"]["Labels"] == {"team": "a"}
    assert c["Boxd"]["Phase"] == "running"

    def fmt(template: str, *refs: str) -> str:
        return daemon.ctl("inspect", "-f", template, *refs).stdout

    assert fmt("{{.State.Status}} {{.State.Pid}}", "web") == f"running {pid}\n"
    assert fmt("{{json .Config.Labels}}", "web") == '{"team":"a"}\n'
    assert fmt("{{.Name}}", "web", cid[:12]) == "/web\n/web\n"
    daemon.ctl("stop", "-t", "0", "web")
    assert fmt("{{.State.ExitCode}} {{.Boxd.Phase}}", "web") == "137 stopped\n"
    # The run summary of a code-execution service stays visible.
    assert set(json.loads(fmt("{{json .Boxd.Summary}}", "web"))) == {
        "wall_seconds",
        "cpu_user_seconds",
        "cpu_system_seconds",
        "peak_memory",
    }
    # --type; an unknown object; a bad --type.
    r = daemon.ctl("inspect", "--type", "image", "web", check=False)
    assert r.returncode == 1 and "no such image" in r.stderr.lower()
    r = daemon.ctl("inspect", "nosuch", "web", "-f", "{{.Name}}", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (1, "/web\n", "boxctl: No such object: nosuch\n")
    r = daemon.ctl("inspect", "--type", "volcano", "web", check=False)
    assert r.returncode == 125 and "invalid --type 'volcano'" in r.stderr


def test_logs_tail_until_and_details(daemon: Daemon) -> None:
    script = "echo one; sleep 1.2; echo two"
    daemon.ctl("run", "--name", "l", "default", "sh", "-c", script)

    def logs(*args: str) -> str:
        return daemon.ctl("logs", *args, "l").stdout

    assert logs("-n", "1") == "two\n"
    assert logs("--tail", "all") == logs("--tail", "-1") == "one\ntwo\n"
    assert logs("--details") == " one\n two\n"
    stamped = logs("-t").splitlines()
    first = stamped[0].split()[0]  # RFC 3339 with nanoseconds, as docker logs -t
    assert logs("--until", first) == "one\n"
    assert logs("--since", stamped[1].split()[0]) == "two\n"
    at = datetime.fromisoformat(first[:26] + "+00:00").timestamp()
    assert logs("--until", f"{at + 0.6:.3f}") == "one\n"
    assert logs("--until", "1h") == ""  # an hour ago: nothing yet
    # A follow ends at --until even while the container goes on.
    daemon.ctl(
        "run", "-d", "--name", "f", "default", "sh", "-c", "while :; do date; sleep 0.2; done"
    )
    t0 = time.monotonic()
    r = daemon.ctl("logs", "-f", "--until", f"{time.time() + 1:.3f}", "f", timeout=30)
    assert r.stdout and time.monotonic() - t0 < 20
    for args, message in (
        (("--tail", "many"), "invalid --tail 'many': a number of lines or all"),
        (("--until", "soon"), "invalid --until 'soon'"),
    ):
        r = daemon.ctl("logs", *args, "l", check=False)
        assert r.returncode == 125 and message in r.stderr, r.stderr


def test_system_events_and_info_are_aliases(daemon: Daemon) -> None:
    cid = daemon.ctl("create", "--name", "ev", "default", "true").stdout.strip()
    since = ("--since", "5m", "--until", "0s", "--filter", "container=ev")
    assert daemon.ctl("system", "events", *since).stdout == daemon.ctl("events", *since).stdout
    assert f"container create {cid}" in daemon.ctl("system", "events", *since).stdout
    assert daemon.ctl("system", "info").stdout == daemon.ctl("info").stdout
    r = daemon.ctl("system", "bogus", check=False)
    assert r.returncode == 1 and "system: unknown command 'bogus'" in r.stderr


def test_ps_mounts_name_volumes_and_binds(daemon: Daemon, tmp_path: Path) -> None:
    """`ps --format {{.Mounts}}`: a volume by its name, a bind by its host path (Docker)."""
    daemon.ctl("run", "-d", "--name", "m", "-v", "psvol:/data", "-v", f"{tmp_path}:/src",
               "default", "sleep", "300")  # fmt: skip
    shown = daemon.ctl("ps", "--no-trunc", "--filter", "name=m", "--format", "{{.Mounts}}")
    assert shown.stdout == f"psvol,{tmp_path}\n"
    daemon.ctl("rm", "-f", "m")
    daemon.ctl("volume", "rm", "psvol")


def test_ps_filters_by_network_volume_publish_and_expose(daemon: Daemon, tmp_path: Path) -> None:
    """Docker's other `ps` filters: network (a name the container is on), volume (a name,
    a bind's source or a destination), publish (a host port) and expose (a container
    port, published or exposed), ports as `80`, `80/udp` or a range."""
    daemon.ctl("network", "create", "fnet")
    daemon.ctl("run", "-d", "--name", "a", "--network", "fnet", "-v", "fvol:/data",
               "-p", "127.0.0.1:18089:80", "default", "sleep", "300")  # fmt: skip
    daemon.ctl("run", "-d", "--name", "b", "-v", f"{tmp_path}:/src", "--expose", "9000-9001/udp",
               "default", "sleep", "300")  # fmt: skip

    def names(*filters: str) -> list[str]:
        args = [w for f in filters for w in ("--filter", f)]
        return daemon.ctl("ps", *args, "--format", "{{.Names}}").stdout.split()

    assert names("network=fnet") == ["a"] and names("network=bridge") == ["b"]
    assert names("volume=fvol") == names("volume=/data") == ["a"]
    assert names("volume=/src") == names(f"volume={tmp_path}") == ["b"]
    assert names("publish=18089") == names("publish=18089/tcp") == ["a"]
    assert names("publish=80") == names("publish=18089/udp") == []
    assert names("expose=80") == ["a"] and names("expose=9001/udp") == ["b"]
    assert sorted(names("expose=79-81", "expose=9000/udp")) == ["a", "b"]
    assert names("network=fnet", "volume=/src") == []
    for bad in ("publish=1:2", "expose=http", "publish=99999"):
        r = daemon.ctl("ps", "--filter", bad, check=False)
        assert r.returncode == 1 and bad.partition("=")[0] in r.stderr, (bad, r.stderr)
    daemon.ctl("rm", "-f", "a", "b")
    daemon.ctl("volume", "rm", "fvol")
    daemon.ctl("network", "rm", "fnet")

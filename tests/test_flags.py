"""Docker's run/create flags of issue 16: --ulimit, --group-add, --add-host, --sysctl,
--oom-score-adj, --entrypoint, --init; parsed here, and seen inside real containers through
boxctl and a real daemon."""

from __future__ import annotations

import re

import pytest
from daemon_harness import Daemon

from boxd._hosts import parse_host
from boxd._ulimits import parse_ulimit


def _limit(limits: str, label: str) -> tuple[str, str]:
    """(soft, hard) of one line of /proc/self/limits."""
    line = next(line for line in limits.splitlines() if line.startswith(label))
    soft, hard = re.split(r"\s{2,}", line[len(label) :].strip())[:2]
    return soft, hard


def test_ulimit_parsing() -> None:
    assert parse_ulimit("nofile=1024:4096") == ("nofile", 1024, 4096)
    assert parse_ulimit("core=0") == ("core", 0, 0)
    assert parse_ulimit("memlock=-1") == ("memlock", -1, -1)
    assert parse_ulimit("nproc=10:-1") == ("nproc", 10, -1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nofile", "use NAME=SOFT[:HARD]"),
        ("nofile=1:2:3", "use NAME=SOFT[:HARD]"),
        ("nofiles=10", "unknown limit 'nofiles' (use as, core, cpu"),
        ("nofile=ten", "limits are integers"),
        ("nofile=200:100", "the soft limit 200 is above the hard limit 100"),
        ("nofile=-1:100", "the soft limit unlimited is above the hard limit 100"),
        ("nofile=-2", "-2 is not a limit"),
    ],
)
def test_bad_ulimits_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"invalid --ulimit {text!r}") as info:
        parse_ulimit(text)
    assert message in str(info.value)


@pytest.mark.root
def test_ulimits_reach_init_and_exec(daemon: Daemon) -> None:
    limits = daemon.ctl(
        "run", "--rm", "--ulimit", "nofile=100:100", "--ulimit", "core=0:-1",
        "--ulimit", "nproc=500", "--ulimit", "nproc=300:400", "default", "cat", "/proc/self/limits",
    ).stdout  # fmt: skip
    assert _limit(limits, "Max open files") == ("100", "100")
    assert _limit(limits, "Max core file size") == ("0", "unlimited")
    assert _limit(limits, "Max processes") == ("300", "400")  # the last one counts
    daemon.ctl("run", "-d", "--name", "u", "--ulimit", "nofile=64:128", "default", "sleep", "300")
    execd = daemon.ctl("exec", "u", "cat", "/proc/self/limits").stdout
    assert _limit(execd, "Max open files") == ("64", "128")
    daemon.ctl("rm", "-f", "u")
    bad = daemon.ctl("run", "--rm", "--ulimit", "nofile=200:100", "default", "true", check=False)
    assert bad.returncode != 0
    assert "invalid --ulimit 'nofile=200:100': the soft limit 200 is above" in bad.stderr


@pytest.mark.root
def test_group_add_in_run_and_exec(daemon: Daemon) -> None:
    groups = ("--group-add", "tty", "--group-add", "4242")
    out = daemon.ctl("run", "--rm", "-u", "nobody", *groups, "default", "id", "-G").stdout
    assert out == "65534 5 4242\n"
    daemon.ctl("run", "-d", "--name", "g", *groups, "default", "sleep", "300")
    assert daemon.ctl("exec", "-u", "nobody", "g", "id", "-G").stdout == "65534 5 4242\n"
    daemon.ctl("rm", "-f", "g")
    bad = daemon.ctl("run", "--rm", "--group-add", "staff2", "default", "true", check=False)
    assert bad.returncode == 125
    assert "unable to find group staff2: no matching entries in group file" in bad.stderr
    bad = daemon.ctl("run", "--rm", "--group-add", "a:b", "default", "true", check=False)
    assert bad.returncode != 0 and "invalid --group-add 'a:b'" in bad.stderr


def test_add_host_parsing() -> None:
    assert parse_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_host("v6:2001:db8::0:1") == ("v6", "2001:db8::1")
    assert parse_host("v6=[2001:db8::1]") == ("v6", "2001:db8::1")
    for text, message in [
        ("db", "'' is not an IP address"),
        ("db:10.0.0.300", "'10.0.0.300' is not an IP address"),
        (":10.0.0.1", "'' is not a host name"),
        ("a b:10.0.0.1", "'a b' is not a host name"),
        ("gw:host-gateway", "host-gateway needs a bridge network"),
    ]:
        with pytest.raises(ValueError, match=f"invalid --add-host {text!r}") as info:
            parse_host(text)
        assert message in str(info.value)


@pytest.mark.root
def test_add_host_lines_in_etc_hosts(daemon: Daemon) -> None:
    out = daemon.ctl(
        "run", "--rm", "--network", "none", "--hostname", "web", "--add-host", "db:10.0.0.5",
        "--add-host", "v6:2001:db8::1", "default", "cat", "/etc/hosts",
    ).stdout  # fmt: skip
    # (--network none: no address of its own, so its name is 127.0.1.1's, as on Debian)
    assert out.splitlines()[-3:] == ["127.0.1.1\tweb", "10.0.0.5\tdb", "2001:db8::1\tv6"]
    bad = daemon.ctl("run", "--rm", "--add-host", "db:nowhere", "default", "true", check=False)
    assert bad.returncode != 0
    assert "invalid --add-host 'db:nowhere': 'nowhere' is not an IP address" in bad.stderr

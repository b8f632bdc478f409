"""Docker's run/create flags of issue 16: --ulimit, --group-add, --add-host, --sysctl,
--oom-score-adj, --entrypoint, --init; parsed here, and seen inside real containers through
boxctl and a real daemon; and what the docker CLI's run and create flags give through the
Engine API."""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import docker, needs_cli

from boxd._hosts import hosts_lines, parse_host
from boxd._sysctl import parse_sysctl
from boxd._ulimits import parse_ulimit

CAP_SYS_RESOURCE = 24


def _has_capability(cap: int) -> bool:
    status = Path("/proc/self/status").read_text()
    effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> cap & 1)


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
    assert bad.returncode == 125
    assert "invalid --ulimit 'nofile=200:100': the soft limit 200 is above" in bad.stderr


@pytest.mark.root
def test_open_files_are_dockers_not_the_daemons(tmp_path: Path) -> None:
    """A daemon started from a shell with a low soft limit (64 here, 1024 in a login
    shell) raises it to its hard limit at start, so it runs more containers than the soft
    limit has fds for (each holds a few); the containers and their execs get Docker's
    1024:524288 (the hard limit at most the daemon's: raising it needs CAP_SYS_RESOURCE,
    which this project's CI machine lacks), not the daemon's raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        started = running_daemon(tmp_path)
        d = started.__enter__()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert d.process is not None
        own = Path(f"/proc/{d.process.pid}/limits").read_text()
        assert _limit(own, "Max open files") == (str(hard), str(hard))
        for n in range(20):
            d.ctl("run", "-d", "--network", "none", "--name", f"c{n}", "default", "sleep", "300")
        assert len(d.ctl("ps", "-q").stdout.split()) == 20
        seen = d.ctl("exec", "c19", "cat", "/proc/self/limits").stdout
        docker = ("1024", str(min(hard, 524288)))
        assert _limit(seen, "Max open files") == docker
        init = Path(f"/proc/{d.ctl('inspect', '-f', '{{.State.Pid}}', 'c0').stdout.strip()}/limits")
        assert _limit(init.read_text(), "Max open files") == docker
    finally:
        started.__exit__(None, None, None)


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
    assert bad.returncode == 125 and "invalid --group-add 'a:b'" in bad.stderr


def test_add_host_parsing() -> None:
    assert parse_host("db:10.0.0.5") == ("db", "10.0.0.5")
    # Docker's host-gateway: the host's address on the container's network, at its start.
    assert parse_host("gw:host-gateway") == ("gw", "host-gateway")
    lines = hosts_lines(("db:10.0.0.5", "gw:host-gateway"), host_gateway="172.17.0.1")
    assert lines == "10.0.0.5\tdb\n172.17.0.1\tgw\n"
    with pytest.raises(ValueError, match="'gw:host-gateway': the container has no network"):
        hosts_lines(("gw:host-gateway",), host_gateway="")
    assert parse_host("v6:2001:db8::0:1") == ("v6", "2001:db8::1")
    assert parse_host("v6=[2001:db8::1]") == ("v6", "2001:db8::1")
    for text, message in [
        ("db", "'' is not an IP address"),
        ("db:10.0.0.300", "'10.0.0.300' is not an IP address"),
        (":10.0.0.1", "'' is not a host name"),
        ("a b:10.0.0.1", "'a b' is not a host name"),
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
    assert bad.returncode == 125
    assert "invalid --add-host 'db:nowhere': 'nowhere' is not an IP address" in bad.stderr


@pytest.mark.root
def test_oom_score_adj_for_init_and_exec(daemon: Daemon) -> None:
    read = ("cat", "/proc/self/oom_score_adj")
    assert daemon.ctl("run", "--rm", "--oom-score-adj", "300", "default", *read).stdout == "300\n"
    lower = daemon.ctl("run", "--rm", "--oom-score-adj", "-5", "default", *read, check=False)
    if _has_capability(CAP_SYS_RESOURCE):
        assert lower.stdout == "-5\n"
    else:  # as on this project's CI machine
        assert lower.returncode == 125
        assert "cannot set --oom-score-adj -5: Permission denied" in lower.stderr
    daemon.ctl("run", "-d", "--name", "o", "--oom-score-adj", "500", "default", "sleep", "300")
    assert daemon.ctl("exec", "o", *read).stdout == "500\n"
    daemon.ctl("rm", "-f", "o")
    bad = daemon.ctl("run", "--rm", "--oom-score-adj", "1001", "default", "true", check=False)
    assert bad.returncode == 125
    assert "invalid --oom-score-adj 1001: must be between -1000 and 1000" in bad.stderr


@pytest.mark.root
def test_entrypoint_of_the_default_image(daemon: Daemon) -> None:
    out = daemon.ctl("run", "--rm", "--entrypoint", "/bin/echo", "default", "hi", "there").stdout
    assert out == "hi there\n"
    # Without words the entrypoint runs alone (the image's default command is dropped).
    assert daemon.ctl("run", "--rm", "--entrypoint", "pwd", "default").stdout == "/\n"
    assert daemon.ctl("run", "--rm", "--entrypoint", "", "default", "echo", "x").stdout == "x\n"
    daemon.ctl("create", "--name", "e", "--entrypoint", "/bin/echo", "default", "a")
    config = daemon.inspect("e")["config"]
    # As for an image's: the command is what runs, the entrypoint is kept apart too.
    assert (config["entrypoint"], config["command"]) == (["/bin/echo"], ["/bin/echo", "a"])
    assert '"/bin/echo a"' in daemon.ctl("ps", "-a").stdout
    assert daemon.ctl("start", "-a", "e").stdout == "a\n"
    daemon.ctl("rm", "e")
    bad = daemon.ctl("run", "--rm", "--entrypoint", "/no/such", "default", check=False)
    assert bad.returncode == 127 and "/no/such" in bad.stderr


ZOMBIES = "grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat 2>/dev/null | wc -l"


@pytest.mark.root
def test_init_is_pid_1_and_passes_on_the_exit(daemon: Daemon) -> None:
    out = daemon.ctl(
        "run", "--rm", "--init", "default", "sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline",
    ).stdout  # fmt: skip
    assert out.splitlines() == ["2", "/dev/init -- sh -c echo $$; tr '\\0' ' ' < /proc/1/cmdline "]
    assert (
        daemon.ctl("run", "--rm", "--init", "default", "sh", "-c", "exit 3", check=False).returncode
        == 3
    )
    killed = daemon.ctl("run", "--rm", "--init", "default", "sh", "-c", "kill -9 $$", check=False)
    assert killed.returncode == 137
    missing = daemon.ctl("run", "--rm", "--init", "default", "/no/such", check=False)
    assert missing.returncode == 127
    assert "boxd-init: exec /no/such: No such file or directory" in missing.stderr


@pytest.mark.root
def test_a_run_past_its_timeout_is_killed(daemon: Daemon) -> None:
    """``--timeout``, as Podman's: SIGKILL once it has run that long (``sh`` as PID 1
    ignores SIGTERM); a run that ends first keeps its exit code."""
    slow = daemon.ctl("run", "--rm", "--timeout", "1", "default", "sleep", "100", check=False)
    assert slow.returncode == 137
    quick = daemon.ctl(
        "run", "--rm", "--timeout", "30", "default", "sh", "-c", "exit 3", check=False
    )
    assert quick.returncode == 3
    bad = daemon.ctl("run", "--rm", "--timeout", "0", "default", "true", check=False)
    assert "invalid --timeout '0': use a number of seconds > 0" in bad.stderr


@pytest.mark.root
def test_init_forwards_stop_and_reaps_orphans(daemon: Daemon) -> None:
    # Without --init, `sh` as PID 1 ignores SIGTERM: stop waits out its timeout and kills
    # (137).  With it, SIGTERM reaches sh as a plain process, which dies of it (143).
    daemon.ctl("run", "-d", "--name", "plain", "default", "sh", "-c", "sleep 1000")
    daemon.ctl("run", "-d", "--name", "s", "--init", "default", "sh", "-c", "sleep 1000")
    daemon.ctl("stop", "-t", "1", "plain")
    daemon.ctl("stop", "-t", "120", "s")
    assert daemon.inspect("plain")["state"]["exit_code"] == 137
    assert daemon.inspect("s")["state"]["exit_code"] == 143
    # An orphan that ends is reaped by PID 1, even while the command never waits.
    daemon.ctl("run", "-d", "--name", "z", "--init", "default", "sh", "-c",
               "sh -c 'sleep 0 &'; exec sleep 1000")  # fmt: skip
    poll = f"for i in $(seq 200); do [ $({ZOMBIES}) = 0 ] && exit 0; sleep 0.05; done; exit 1"
    assert daemon.ctl("exec", "z", "sh", "-c", poll, check=False).returncode == 0
    daemon.ctl("rm", "-f", "plain", "s", "z")


@pytest.mark.parametrize(
    ("text", "network", "message"),
    [
        ("net.ipv4.ip_forward=1", "host", "with --network host it would change the host's"),
        ("net.ipv4.ip_forward=1", "container:db", "would change that container's network"),
        ("vm.swappiness=10", "none", "vm.swappiness is not namespaced"),
        ("kernel.hostname=x", "none", "set the hostname with --hostname"),
        ("kernel.shmmax", "none", "use KEY=VALUE"),
        ("../../etc/x=1", "none", "use KEY=VALUE"),
        ("kernel.sem=1\n2", "none", "the value holds a newline"),
    ],
)
def test_sysctls_must_be_namespaced(text: str, network: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid --sysctl {text!r}")) as info:
        parse_sysctl(text, network=network)
    assert message in str(info.value)


@pytest.mark.root
def test_sysctls_reach_only_the_containers_namespaces(daemon: Daemon) -> None:
    files = ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shmmax",
             "/proc/sys/fs/mqueue/msg_max", "/proc/sys/kernel/domainname")  # fmt: skip
    host = [Path(f).read_text() for f in files]
    out = daemon.ctl(
        "run", "--rm", "--network", "none", "--sysctl", "net.ipv4.ip_unprivileged_port_start=80",
        "--sysctl", "kernel.shmmax=1000000", "--sysctl", "fs.mqueue.msg_max=20",
        "--sysctl", "kernel.domainname=example.org", "default", "cat", *files,
    ).stdout  # fmt: skip
    assert out.splitlines() == ["80", "1000000", "20", "example.org"]
    assert [Path(f).read_text() for f in files] == host
    bad = daemon.ctl("run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1",
                     "default", "true", check=False)  # fmt: skip
    assert bad.returncode == 125 and "with --network host it would change" in bad.stderr
    bad = daemon.ctl("run", "--rm", "--sysctl", "kernel.shmmax=lots", "default", "true",
                     check=False)  # fmt: skip
    assert bad.returncode == 125
    assert "set /proc/sys/kernel/shmmax: Invalid argument" in bad.stderr


@pytest.mark.root
def test_a_network_of_its_own_gets_dockers_sysctls(daemon: Daemon) -> None:
    """Docker sets ip_unprivileged_port_start=0 and ping_group_range=0 2147483647 in a
    container's own network namespace: a ``-u`` user binds port 80 and opens an ICMP echo
    socket (ping) as there; a --sysctl of them wins; --network host keeps the host's."""
    script = (
        "import socket\n"
        "socket.socket().bind(('127.0.0.1', 80)); print('bound')\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); print('ping')\n"
    )
    out = daemon.ctl("run", "--rm", "--network", "none", "-u", "1000", "default", "python3",
                     "-c", script).stdout  # fmt: skip
    assert out == "bound\nping\n"
    files = ("/proc/sys/net/ipv4/ip_unprivileged_port_start",
             "/proc/sys/net/ipv4/ping_group_range")  # fmt: skip
    out = daemon.ctl("run", "--rm", "--network", "none", "--sysctl",
                     "net.ipv4.ip_unprivileged_port_start=1024", "default", "cat",
                     *files).stdout  # fmt: skip
    assert out.split() == ["1024", "0", "2147483647"]
    host = subprocess.run(["nsenter", f"--net={daemon.netns}", "cat", *files],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert daemon.ctl("run", "--rm", "--network", "host", "default", "cat", *files).stdout == host


@pytest.mark.root
def test_domainname_and_the_options_of_one_setting(daemon: Daemon) -> None:
    """``--domainname`` (refused before): the container's UTS domain name and its full
    name in /etc/hosts, as Docker's; a sysctl of it wins.  ``--userns``, ``--isolation``
    and ``--runtime`` take boxd's one setting and refuse any other by name (``--cgroupns``
    its two, private and host); ``--annotation`` is kept (all were unknown options to boxctl)."""
    script = 'domainname; grep -w "$(hostname)" /etc/hosts | cut -f2'
    out = daemon.ctl("run", "--rm", "-h", "web", "--domainname", "example.org", "default",
                     "sh", "-c", script).stdout  # fmt: skip
    assert out == "example.org\nweb.example.org web\n"
    # A hostname that is a full name: it and the bare name, as libnetwork writes them
    # (moby's integration-cli TestRunHostnameFQDN).
    fqdn = "hostname; hostname -s; grep foobar /etc/hosts | cut -f2"
    r = daemon.ctl("run", "--rm", "-h", "foobar.example.com", "default", "sh", "-c", fqdn)
    assert r.stdout == "foobar.example.com\nfoobar\nfoobar.example.com foobar\n"
    out = daemon.ctl("run", "--rm", "--domainname", "a.b", "--sysctl", "kernel.domainname=c.d",
                     "default", "domainname").stdout  # fmt: skip
    assert out == "c.d\n"
    assert Path("/proc/sys/kernel/domainname").read_text() != "c.d\n"  # the host's: untouched
    daemon.ctl("create", "--name", "one", "--domainname", "example.org", "--cgroupns", "private",
               "--userns", "host", "--isolation", "default", "--runtime", "boxd",
               "--annotation", "org.example/k=v", "default", "true")  # fmt: skip
    fmt = (
        "{{.Config.Domainname}} {{.HostConfig.Runtime}} {{.HostConfig.UsernsMode}}"
        " {{json .HostConfig.Annotations}}"
    )
    shown = daemon.ctl("inspect", "-f", fmt, "one").stdout
    assert shown == 'example.org boxd host {"org.example/k":"v"}\n'
    daemon.ctl("rm", "one")
    for args, words in (
        (("--cgroupns", "shared"), "invalid --cgroupns 'shared': use private, host"),
        (("--userns", "keep-id"), "invalid --userns 'keep-id': use host, or private"),
        (("--userns", "host", "--isolate-user"), "--userns host conflicts with --isolate-user"),
        (("--isolation", "hyperv"), "Invalid isolation: 'hyperv' - linux only supports 'default'"),
        (("--runtime", "crun"), "invalid --runtime 'crun': unknown runtime name"),
        (("--annotation", "=v"), "invalid --annotation '=v': use KEY=VALUE"),
        (("--domainname", "a b"), "invalid --domainname 'a b'"),
        (("--uts", "host", "--domainname", "x.y"), "conflicting options: domainname and the UTS"),
    ):
        r = daemon.ctl("create", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, (args, r.stderr)
    assert daemon.ctl("ps", "-aq").stdout == ""


@needs_cli
@pytest.mark.root
def test_docker_stop_timeout_is_shown_when_given(daemon: Daemon) -> None:
    """Docker's inspect has Config.StopTimeout only when --stop-timeout was given (the
    default, 10 s, is the daemon's), so a client reading it knows whether it was set."""
    for name, args in (("plain", ()), ("given", ("--stop-timeout", "3"))):
        r = docker(daemon, "create", "--name", name, *args, "default", "true")
        assert r.returncode == 0, r.stderr
    r = docker(daemon, "inspect", "-f", "{{json .Config.StopTimeout}}", "plain", "given")
    assert r.stdout == "null\n3\n", r.stderr


@needs_cli
@pytest.mark.root
def test_docker_volumes_from_a_missing_container(daemon: Daemon) -> None:
    """A --volumes-from naming no container is a bad parameter (400, as Docker's): a 404
    sent the docker CLI to pull the image, as for a missing one, and it said the image was
    not found locally."""
    r = docker(daemon, "create", "--volumes-from", "nosuch:ro", "default", "true")
    assert r.stderr == (
        "Error response from daemon: invalid --volumes-from 'nosuch:ro': no such container:"
        " nosuch\n"
    )
    assert r.returncode == 1
    assert docker(daemon, "ps", "-aq").stdout == ""


@needs_cli
@pytest.mark.root
def test_docker_hostname_up_to_the_kernels_64(daemon: Daemon) -> None:
    """--hostname takes 64 characters, as Docker and the kernel do (boxd took 63, and
    refused a longer one as if a character in it were wrong)."""
    name = "h" * 64
    r = docker(daemon, "run", "--rm", "-h", name, "default", "hostname")
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    r = docker(daemon, "run", "--rm", "-h", name + "h", "default", "true")
    assert r.returncode == 125
    assert f"invalid --hostname '{name}h': too long (at most 64 characters)" in r.stderr


@needs_cli
@pytest.mark.root
def test_docker_seccomp_profile(daemon: Daemon, tmp_path: Path) -> None:
    """``--security-opt seccomp=PROFILE.json``: the docker CLI sends the file's JSON, which
    is the container's filter (it was refused); a profile boxd cannot read is refused
    naming what is wrong, and nothing is created."""
    profile = tmp_path / "profile.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW",'
        ' "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}'
    )
    r = docker(daemon, "run", "--rm", "--security-opt", f"seccomp={profile}", "default",
               "sh", "-c", "mkdir /made || grep Seccomp: /proc/self/status")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "Seccomp:\t2\n"), r.stderr
    assert "Operation not permitted" in r.stderr
    # With --privileged too (Docker 26 on: it drops the default filter only), and in its
    # execs; without the profile, no filter at all.
    r = docker(daemon, "run", "-d", "--name", "p", "--privileged", "--security-opt",
               f"seccomp={profile}", "default", "sleep", "60")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = docker(daemon, "exec", "p", "sh", "-c", "mkdir /made || grep Seccomp: /proc/self/status")
    assert (r.returncode, r.stdout) == (0, "Seccomp:\t2\n"), r.stderr
    r = docker(daemon, "run", "--rm", "--privileged", "default", "grep", "Secc", "/proc/1/status")
    assert r.stdout.splitlines()[0] == "Seccomp:\t0", r.stderr
    docker(daemon, "rm", "-f", "p")
    profile.write_text('{"defaultAction": "SCMP_ACT_BOGUS"}')
    r = docker(daemon, "create", "--security-opt", f"seccomp={profile}", "default", "true")
    assert r.returncode == 1
    assert (
        "invalid --security-opt seccomp profile: profile.defaultAction: unknown action "
        "'SCMP_ACT_BOGUS'"
    ) in r.stderr
    assert docker(daemon, "ps", "-aq").stdout == ""


@needs_cli
@pytest.mark.root
def test_docker_ipc_none_has_no_dev_shm(daemon: Daemon) -> None:
    """``--ipc none``, Docker's: an ipc namespace of its own and no /dev/shm mounted (it was
    refused); such a container is no ipc donor."""
    script = "grep -c ' /dev/shm ' /proc/mounts; ls -A /dev/shm; readlink /proc/self/ns/ipc"
    r = docker(daemon, "run", "--rm", "--ipc", "none", "default", "sh", "-c", script)
    count, ns = r.stdout.split("\n", 1)
    assert count == "0" and ns.startswith("ipc:[") and r.returncode == 0, r.stdout + r.stderr
    assert ns.strip() != f"ipc:[{Path('/proc/self/ns/ipc').stat().st_ino}]"
    r = docker(daemon, "run", "-d", "--name", "lone", "--ipc", "none", "default", "sleep", "60")
    assert r.returncode == 0, r.stderr
    shown = docker(daemon, "inspect", "-f", "{{.HostConfig.IpcMode}}", "lone").stdout
    assert shown == "none\n"
    r = docker(daemon, "run", "--rm", "--ipc", "container:lone", "default", "true")
    assert r.returncode == 125 and "non-shareable IPC" in r.stderr, r.stderr
    docker(daemon, "rm", "-f", "lone")

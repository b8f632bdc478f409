"""macvlan (and ipvlan) networks: each container's interface hangs from a host link of the
daemon's namespace (here one end of a veth pair whose other end is in a "LAN" namespace the
test makes, with a web server on it), on that link's own network: the LAN's hosts and the
containers reach each other directly, with no bridge, NAT or published port between."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon
from docker_clients import docker, needs_cli

pytestmark = pytest.mark.root

LAN = "192.168.77"


def _ip(*args: str, netns: str = "") -> None:
    enter = ["nsenter", f"--net={netns}"] if netns else []
    subprocess.run([*enter, "ip", *args], check=True, capture_output=True)


@pytest.fixture
def lan(daemon: Daemon, tmp_path: Path) -> Iterator[str]:
    """A link ``lan0`` of the daemon's namespace on a LAN (a namespace of the test's, at
    LAN.1, serving HTTP on 8077, its log in tmp_path/http.log); its name.  Both
    namespaces' links go at the end."""
    name = f"boxd-lan-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = None
    log = (tmp_path / "http.log").open("w")
    try:
        _ip("link", "add", "lan0", "type", "veth", "peer", "name", "peer0", "netns", name,
            netns=daemon.netns)  # fmt: skip
        _ip("link", "set", "lan0", "up", netns=daemon.netns)
        _ip("-n", name, "addr", "add", f"{LAN}.1/24", "dev", "peer0")
        _ip("-n", name, "link", "set", "peer0", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-m", "http.server", "8077",
             "--bind", f"{LAN}.1"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        yield "lan0"
    finally:
        if server is not None:
            server.kill()
            server.wait()
        log.close()
        subprocess.run(["ip", "netns", "del", name], check=True)  # with peer0, and lan0


def _links(daemon: Daemon) -> str:
    return subprocess.run(["nsenter", f"--net={daemon.netns}", "ip", "-o", "link"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


@needs_cli
def test_containers_are_hosts_of_the_parent_s_lan(daemon: Daemon, lan: str, tmp_path: Path) -> None:
    r = docker(daemon, "network", "create", "-d", "macvlan", "--subnet", f"{LAN}.0/24",
               "--gateway", f"{LAN}.1", "-o", f"parent={lan}", "mv")  # fmt: skip
    assert r.returncode == 0, r.stderr
    [shape] = json.loads(docker(daemon, "network", "inspect", "mv").stdout)
    assert (shape["Driver"], shape["Options"]) == ("macvlan", {"parent": lan})
    assert shape["IPAM"]["Config"] == [{"Subnet": f"{LAN}.0/24", "Gateway": f"{LAN}.1"}]
    ls = docker(daemon, "network", "ls", "--filter", "driver=macvlan", "--format", "{{.Name}}")
    assert ls.stdout == "mv\n"
    # A LAN host answers it directly (its gateway is the LAN's; no NAT: it sees .10).
    r = daemon.ctl("run", "--rm", "--network", "mv", "--ip", f"{LAN}.10", "default", "sh", "-c",
                   f"ip -4 -o addr show eth0; ip route; curl -s -m5 http://{LAN}.1:8077/ >/dev/null"
                   " && echo reached")  # fmt: skip
    addr, *routes, reached = r.stdout.splitlines()
    assert f"inet {LAN}.10/24" in addr and f"default via {LAN}.1 dev eth0" in routes[0]
    assert reached == "reached"
    assert f"{LAN}.10 - - " in (tmp_path / "http.log").read_text()  # its own address
    # Again at once, with the same address (and MAC) the last run's dying namespace holds.
    for _ in range(8):
        daemon.ctl("run", "--rm", "--network", "mv", "--ip", f"{LAN}.10", "default", "true")
    # Two containers: one serves, the other reaches it; -p publishes nothing (as Docker's).
    daemon.ctl("run", "-d", "--name", "web", "--network", "mv", "--ip", f"{LAN}.20",
               "-p", "8080:8080", "default", "python3", "-m", "http.server", "8080")  # fmt: skip
    assert docker(daemon, "port", "web").stdout == ""
    script = f"for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -m2 -o /dev/null http://{LAN}.20:8080/ && exit; sleep 0.3; done; exit 1"  # noqa: E501
    daemon.ctl("run", "--rm", "--network", "mv", "default", "sh", "-c", script)
    # Names: its own name server, at Docker's 127.0.0.11 in its namespace.
    r = daemon.ctl("run", "--rm", "--network", "mv", "default", "sh", "-c",
                   "grep nameserver /etc/resolv.conf; getent hosts web")  # fmt: skip
    assert r.stdout.split() == ["nameserver", "127.0.0.11", f"{LAN}.20", "web"]
    # A container on the default bridge joins the LAN at run time, and leaves it.
    daemon.ctl("run", "-d", "--name", "hop", "default", "sleep", "600")
    daemon.ctl("network", "connect", "--ip", f"{LAN}.30", "mv", "hop")
    code = f"curl -s -m5 -o /dev/null -w '%{{http_code}}' http://{LAN}.1:8077/"
    r = daemon.ctl("exec", "hop", "sh", "-c", f"ip -4 -o addr show eth1; {code}")
    assert f"inet {LAN}.30/24" in r.stdout and r.stdout.endswith("200")
    # The daemon killed: the next one adopts them on the LAN, and disconnects there.
    daemon.stop(signal.SIGKILL)
    daemon.start()
    r = daemon.ctl("exec", "hop", "curl", "-s", "-m5", "-o", "/dev/null", "-w", "%{http_code}",
                   f"http://{LAN}.20:8080/")  # fmt: skip
    assert r.stdout == "200"
    assert daemon.ctl("exec", "web", "getent", "hosts", "web").stdout.split() == [
        f"{LAN}.20",
        "web",
    ]
    daemon.ctl("network", "disconnect", "mv", "hop")
    assert "eth1" not in daemon.ctl("exec", "hop", "ip", "-o", "link").stdout
    daemon.ctl("rm", "-f", "web", "hop")
    daemon.ctl("network", "rm", "mv")
    assert "lan0" in _links(daemon)  # the host's link stays, untouched


@needs_cli
def test_bad_macvlan_and_ipvlan_networks_are_named(daemon: Daemon, lan: str) -> None:
    for args, words in [
        (("-d", "macvlan", "-o", "parent=nope0"), "invalid parent 'nope0': no such interface"),
        (("-d", "macvlan", "-o", f"parent={lan}", "-o", "macvlan_mode=fast"),
         "invalid macvlan_mode 'fast': use private, vepa, bridge, passthru"),
        (("-d", "macvlan", "-o", f"parent={lan}", "-o", "com.docker.network.bridge.name=x"),
         "invalid option 'com.docker.network.bridge.name' for the macvlan driver"),
        (("-d", "ipvlan", "-o", f"parent={lan}", "-o", "ipvlan_mode=l4"),
         "invalid ipvlan_mode 'l4': use l2"),
        (("-d", "ipvlan", "-o", f"parent={lan}", "-o", "ipvlan_mode=l3"),
         "ipvlan_mode l3 is not supported by boxd: use l2 (or macvlan)"),
        (("-d", "macvlan", "-o", f"parent={lan}.5000"), "a VLAN is LINK.ID, ID 1-4094"),
        (("-d", "overlay",), "network driver 'overlay' is not supported (use bridge, macvlan"),
    ]:  # fmt: skip
        r = docker(daemon, "network", "create", *args, "bad")
        assert r.returncode == 1 and words in r.stderr, r.stderr
    daemon.ctl("network", "create", "-d", "macvlan", "--subnet", f"{LAN}.0/24", "-o",
               f"parent={lan}", "first")  # fmt: skip
    r = daemon.ctl("network", "create", "-d", "macvlan", "-o", f"parent={lan}", "second",
                   check=False)  # fmt: skip
    assert r.returncode == 1 and f"network first is already using parent interface {lan}" in (
        r.stderr
    )
    daemon.ctl("network", "rm", "first")
    # ipvlan and the internal (dummy-parented) networks, where this machine's kernel has them
    # (it may lack ipvlan, dummy and VLAN links: then named as such).
    daemon.ctl("network", "create", "-d", "ipvlan", "--subnet", f"{LAN}.0/24", "-o",
               f"parent={lan}", "iv")  # fmt: skip
    reach = f"curl -s -m5 -o /dev/null http://{LAN}.1:8077/ && echo reached"
    r = daemon.ctl("run", "--rm", "--network", "iv", "default", "sh", "-c", reach, check=False)
    assert r.stdout == "reached\n" or "this kernel has no ipvlan links" in r.stderr, r.stderr
    daemon.ctl("network", "rm", "iv")
    r = daemon.ctl("network", "create", "-d", "macvlan", "--internal", "alone", check=False)
    if r.returncode == 0:
        assert "dm-" in _links(daemon)
        daemon.ctl("network", "rm", "alone")
        assert "dm-" not in _links(daemon)
    else:
        assert "this kernel has no dummy links" in r.stderr, r.stderr
    assert daemon.ctl("network", "ls", "-q", "--filter", "driver=macvlan").stdout == ""


def test_a_network_record_of_format_5_holds_the_driver(daemon: Daemon, lan: str) -> None:
    daemon.ctl("network", "create", "-d", "macvlan", "--subnet", f"{LAN}.0/24", "-o",
               f"parent={lan}", "kept")  # fmt: skip
    [record] = [p for p in Path(daemon.root, "networks").glob("*.json") if "kept" in p.read_text()]
    data = json.loads(record.read_text())
    assert (data["format"], data["driver"], data["options"]) == (5, "macvlan", {"parent": lan})
    daemon.stop()
    daemon.start()  # read back by the next daemon
    time.sleep(0.1)
    info = json.loads(daemon.ctl("network", "inspect", "kept").stdout)[0]
    assert info["Driver"] == "macvlan"
    daemon.ctl("network", "rm", "kept")


def test_an_owner_s_macvlan_leaves_the_namespace_its_members_hold(daemon: Daemon, lan: str) -> None:
    """A container:NAME member keeps its owner's namespace when the owner ends: the
    owner's macvlan leaves it (through the member), so the owner's next start can have its
    address and MAC on the LAN again."""
    daemon.ctl("network", "create", "-d", "macvlan", "--subnet", f"{LAN}.0/24", "-o",
               f"parent={lan}", "mv")  # fmt: skip
    daemon.ctl("run", "-d", "--name", "owner", "--network", "mv", "--ip", f"{LAN}.50",
               "default", "sleep", "600")  # fmt: skip
    daemon.ctl("run", "-d", "--name", "member", "--network", "container:owner", "default",
               "sleep", "600")  # fmt: skip
    assert "eth0" in daemon.ctl("exec", "member", "ip", "-o", "link").stdout
    daemon.ctl("kill", "owner")
    daemon.ctl("wait", "owner")
    deadline = time.monotonic() + 10
    while "eth0" in daemon.ctl("exec", "member", "ip", "-o", "link").stdout:
        assert time.monotonic() < deadline, "the owner's macvlan stayed in the namespace"
        time.sleep(0.05)
    daemon.ctl("start", "owner")
    r = daemon.ctl("exec", "owner", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {LAN}.50/24" in r.stdout
    daemon.ctl("rm", "-f", "member", "owner")
    daemon.ctl("network", "rm", "mv")

"""Container networking: the default bridge, published ports, user networks with DNS.

Every daemon here runs in a network namespace the test makes (``ip netns add``) and deletes
afterwards, even on failure; clients run in it through ``nsenter``.  The only addresses
contacted are loopback and addresses inside that namespace (its bridges, and 192.0.2.1 on a
veth pair made in it to stand for one of the host's own addresses).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker_clients
import pytest
import trio
from daemon_harness import REPO, Daemon, _env, daemon_cli, running_daemon, session_name, until

from boxd import _netconfig, _network, _nft, _store
from boxd._convert import unstructure
from boxd._portspecs import Publish, parse_expose, parse_publish

HOST_ADDRESS = "192.0.2.1"  # TEST-NET-1, on a veth pair inside the test's namespace

SERVER = """
import socket, threading, http.server
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5353))
    while True:
        data, peer = s.recvfrom(100)
        s.sendto(b"echo " + data, peer)
threading.Thread(target=udp, daemon=True).start()
http.server.test(http.server.SimpleHTTPRequestHandler, port=80, bind="0.0.0.0")
"""

# Runs in the test's namespace: fetch a TCP URL and a UDP echo, print what came back.
CLIENT = """
import socket, sys, urllib.request
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    print(urllib.request.urlopen(f"http://{host}:{port}/", timeout=10).status)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    for _ in range(5):
        s.sendto(b"hi", (host, port))
        try:
            print(s.recv(100).decode())
            break
        except TimeoutError:
            continue
"""


# Runs in the test's namespace: holds a TCP port (argv[1]) until killed, on 0.0.0.0 or on
# the IPv6 address argv[2] (IPv6 only).
HOLD_PORT = """
import socket, sys, time
address = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
if ":" in address:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((address, int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(300)
"""


# ---- parsing, no root ------------------------------------------------------------------


def test_publish_specs() -> None:
    assert parse_publish("80") == (Publish(80),)
    assert parse_publish("8080:80/udp") == (Publish(80, "udp", "", 8080),)
    assert parse_publish("127.0.0.1::80") == (Publish(80, "tcp", "127.0.0.1", 0),)
    assert parse_publish("127.0.0.1:8080:80/TCP") == (Publish(80, "tcp", "127.0.0.1", 8080),)
    assert parse_publish("8000-8001:80-81") == (
        Publish(80, "tcp", "", 8000),
        Publish(81, "tcp", "", 8001),
    )
    assert parse_publish("8000-8010:80") == (Publish(80, "tcp", "", 8000, 8010),)
    assert parse_publish("80-81") == (Publish(80), Publish(81))
    assert parse_publish("[::1]:8080:80") == (Publish(80, "tcp", "::1", 8080),)
    assert parse_publish("[0::0]::53/udp") == (Publish(53, "udp", "::", 0),)
    # Written as the C library writes an address (IPv4-mapped ones in dotted form).
    assert parse_publish("[::FFFF:1.2.3.4]:80:80")[0].host_ip == "::ffff:1.2.3.4"
    assert parse_publish("80:80/udp")[0].key == "80/udp"
    assert parse_expose("53/udp") == ("53/udp",)
    assert parse_expose("80-81") == ("80/tcp", "81/tcp")
    for bad, message in [
        ("", "use \\[IP:\\]\\[HOSTPORT:\\]CONTAINERPORT"),
        ("80/sctp", "protocol 'sctp' is not tcp or udp"),
        ("70000", "port 70000 is out of range 1-65535"),
        ("0", "port 0 is out of range"),
        ("x:80", "host port 'x' is not a port or range"),
        ("1.2.3:80:80", "'1.2.3' is not an IPv4 address"),
        ("8000-8002:80-81", "differ in length"),
        ("90-80", "goes backwards"),
        ("1:2:3:4", "use \\[IP:\\]"),
        ("[::1]80", "use \\[IPV6\\]:\\[HOSTPORT\\]:CONTAINERPORT"),
        ("[::1]:80", "use \\[IPV6\\]:\\[HOSTPORT\\]:CONTAINERPORT"),
        ("[1.2.3.4]:80:80", "'1.2.3.4' is not an IPv6 address"),
        ("01.2.3.4:80:80", "'01.2.3.4' is not an IPv4 address"),
        ("[fe80::1%eth0]:80:80", "'fe80::1%eth0' is not an IPv6 address"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_publish(bad)
    for mode in ("bridge", "host", "none", "my-net", "container:web", "my net", "a/b", "-x"):
        assert _netconfig.check_network(mode) == mode
    for mode in ("", " ", "container:"):
        with pytest.raises(ValueError, match="invalid network"):
            _netconfig.check_network(mode)


def test_network_records_are_kept_by_id(tmp_path: Path) -> None:
    """A record an older boxd named by its network's name moves to its id's path; of two
    records of one name (a daemon that ended while replacing the default network's, or
    while moving one), the newer is kept and the other removed."""
    records = tmp_path / "networks"
    records.mkdir()

    def record(name: str, net_id: str, created: float, path: str) -> None:
        net = _network.Network(name, net_id, "br-x", "10.9.0.0/24", "10.9.0.1", created, True)
        net.allocations["c" * 64] = "10.9.0.2"
        (records / path).write_text(json.dumps(unstructure(net)))

    record("front", "f" * 64, 1.0, "front.json")  # an older boxd's
    record("bridge", "1" * 64, 1.0, f"{'1' * 64}.json")  # replaced by the next one
    record("bridge", "2" * 64, 2.0, f"{'2' * 64}.json")
    record("back", "b" * 64, 1.0, "back.json")  # moved, the old one not yet removed
    record("back", "b" * 64, 1.0, f"{'b' * 64}.json")
    nets = _network.Networks(tmp_path)
    nets._load()
    assert sorted(p.name for p in records.iterdir()) == [f"{c * 64}.json" for c in "2bf"]
    # A record of format 3 (before auxiliary addresses) loads without them.
    assert nets.get("back").aux_addresses == {} and not nets.get("back").attachable
    assert {n.name: n.id[0] for n in nets.list()} == {"front": "f", "bridge": "2", "back": "b"}
    assert nets.get("front").allocations == {"c" * 64: "10.9.0.2"}
    # Saved again, a record trades places with its spare (as a container's: no rename
    # over it, which made ext4 flush under heavy logging, on the event loop's thread).
    front = nets.get("front")
    path = records / f"{front.id}.json"
    inode = path.stat().st_ino
    nets._save(front)
    spare = records / f".{front.id}.json.tmp"
    assert spare.stat().st_ino == inode and path.stat().st_ino != inode
    _store.remove_record(str(path))  # as `network rm`: the spare goes with it
    assert not path.exists() and not spare.exists()


def test_a_networks_durable_write_is_off_the_loop_and_saves_meanwhile_follow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network's own change (create, disconnect, an --ip) is written with its fsyncs in
    a worker thread: the loop runs meanwhile, and an address saved then (a start's, an
    end's) is written after that write, not beside it."""
    nets = _network.Networks(tmp_path)
    net = _network.Network("front", "f" * 64, "br-x", "10.9.0.0/24", "10.9.0.1", 1.0, True)
    nets._nets[net.name] = net
    gate, entered = threading.Event(), threading.Event()
    write, writes = nets._write, []

    def held(n: _network.Network, data: bytes, durable: bool = True) -> None:
        writes.append(durable)
        if not entered.is_set():
            entered.set()
            assert gate.wait(10)  # else the loop never got to let it go
        write(n, data, durable)

    monkeypatch.setattr(nets, "_write", held)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nets._save_durably, net)
            await trio.to_thread.run_sync(lambda: entered.wait(10))  # the loop runs
            net.allocations["c" * 64] = "10.9.0.2"
            nets._save(net)
            assert writes == [True]  # not beside the one under way
            gate.set()

    trio.run(main)
    assert writes == [True, True]
    record = json.loads((tmp_path / "networks" / f"{net.id}.json").read_bytes())
    assert record["allocations"] == {"c" * 64: "10.9.0.2"}


def test_a_starting_containers_port_rules_are_added_as_a_rebuild_has_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A starting container's ports are added to the table (~3 ms) rather than the table
    rebuilt (~16 ms: the kernel's transaction waits for what a rebuild's flush deletes):
    the rules added are those a rebuild would hold besides the others, in each family."""
    bridges = [
        _nft.Bridge("boxd0", "172.17.0.0/16", subnet6="fd00:1::/64"),
        _nft.Bridge("br-1", "172.18.0.0/16"),
    ]
    old = [_nft.Forward("tcp", "", 8080, "172.17.0.2", 80)]
    new = [
        _nft.Forward("udp", "127.0.0.1", 5353, "172.17.0.3", 53),
        _nft.Forward("tcp", "", 8443, "fd00:1::3", 443, "ip6"),
    ]
    sent: list[dict[str, Any]] = []

    async def capture(batch: dict[str, Any]) -> None:
        sent.append(batch)

    monkeypatch.setattr(_nft, "_nft", capture)
    trio.run(_nft.add, "boxd", bridges, new)
    base = _nft.ruleset("boxd", bridges, old, ipv6=True)["nftables"]
    rebuilt = _nft.ruleset("boxd", bridges, [*old, *new], ipv6=True)["nftables"]
    added = sent[0]["nftables"]
    assert added[0] == rebuilt[0]  # the schema's version
    assert added[1:] == [c for c in rebuilt if c not in base]
    assert {next(iter(c)) for c in added[1:]} == {"add"} and len(added) == 1 + 2 * len(new)


def test_ruleset_touches_only_its_own_table() -> None:
    batch = _nft.ruleset(
        "boxd",
        [_nft.Bridge("boxd0", "172.17.0.0/16"), _nft.Bridge("br-1", "172.18.0.0/16")],
        [_nft.Forward("tcp", "", 8080, "172.17.0.2", 80)],
    )["nftables"]
    tables = {
        body.get("table") or body.get("name")
        for command in batch[1:]
        for body in command[next(iter(command))].values()
    }
    assert tables == {"boxd"}
    assert [next(iter(c)) for c in batch[1:3]] == ["add", "flush"]  # never a delete elsewhere
    drops = [c for c in batch if "drop" in json.dumps(c)]
    assert len(drops) == 2  # boxd0 -> br-1 and br-1 -> boxd0
    # With IPv6: its ip6 twin, for the IPv6 subnets only; then, the last one gone, removed.
    bridges = [_nft.Bridge("br-1", "172.18.0.0/16", subnet6="fd00:1::/64")]
    batch = _nft.ruleset("boxd", bridges, [], ipv6=True)["nftables"][1:]
    families = {body["family"] for c in batch for body in c[next(iter(c))].values()}
    assert families == {"ip", "ip6"}
    ip6 = json.dumps([c for c in batch if '"ip6"' in json.dumps(c)])
    assert '"addr": "fd00:1::"' in ip6 and "172.18.0.0" not in ip6
    batch = _nft.ruleset("boxd", [], [], drop6=True)["nftables"][1:]
    assert [c for c in batch if '"ip6"' in json.dumps(c)] == [
        {"add": {"table": {"family": "ip6", "name": "boxd"}}},
        {"delete": {"table": {"family": "ip6", "name": "boxd"}}},
    ]


# ---- end to end, in a namespace of the test's own ----------------------------------------


def inside(ns: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={ns}", "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace for one test (loopback up, a veth pair holding 192.0.2.1),
    deleted afterwards whatever happens."""
    name = session_name(secrets.token_hex(4))
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = f"/run/netns/{name}"
    try:
        for step in (
            "ip link set lo up",
            "ip link add h0 type veth peer name h1",
            f"ip addr add {HOST_ADDRESS}/24 dev h0",
            "ip link set h0 up",
            "ip link set h1 up",
        ):
            inside(path, *step.split())
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def links(ns: str) -> list[str]:
    out = inside(ns, "ip", "-j", "link", "show").stdout
    return sorted(link["ifname"] for link in json.loads(out))


def links_settle(ns: str, prefixes: tuple[str, ...], expected: list[str]) -> list[str]:
    """The links named with ``prefixes``, once they are ``expected`` (within 15 s): a
    stopped container's veth goes with its namespace, which the kernel frees a moment
    after its last process, and the daemon's own deletion runs off the container's way."""
    deadline = time.monotonic() + 15
    while True:
        found = [n for n in links(ns) if n.startswith(prefixes)]
        if found == expected or time.monotonic() > deadline:
            return found


def nft_tables(ns: str) -> list[str]:
    out = inside(ns, "nft", "-j", "list", "tables").stdout
    return [item["table"]["name"] for item in json.loads(out)["nftables"] if "table" in item]


def nft_rules(ns: str) -> str:
    """The daemon's IPv4 table (``boxd`` and a suffix for a root other than the default;
    an IPv6 network adds its ip6 twin of the same name)."""
    (table,) = {t for t in nft_tables(ns) if t.startswith("boxd")}
    return inside(ns, "nft", "list", "table", "ip", table).stdout


def fetch(ns: str, kind: str, host: str, port: int) -> str:
    return inside(ns, "python3", "-c", CLIENT, kind, host, str(port)).stdout.strip()


@contextlib.contextmanager
def serving(ns: str, script: str) -> Iterator[None]:
    """``script`` (python3, printing "ready" once it serves) running in network namespace
    ``ns`` (a path), killed afterwards."""
    process = subprocess.Popen(
        ["nsenter", f"--net={ns}", "--", "python3", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
    )
    with process:
        try:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
            yield
        finally:
            process.kill()


@pytest.fixture
def netd(tmp_path: Path, netns: str) -> Iterator[Daemon]:
    with running_daemon(tmp_path, netns=netns) as daemon:
        yield daemon
    # The daemon stopped: its bridges and its table went with it.
    assert links_settle(netns, ("boxd", "br-", "bx"), []) == []
    assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []


def wait_listening(daemon: Daemon, ref: str, port: int) -> None:
    script = (
        "import socket, time\n"
        "for _ in range(600):\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
    )
    daemon.ctl("exec", ref, "python3", "-c", script)


@pytest.mark.root
def test_bridge_published_ports_hairpin_and_cleanup(netd: Daemon) -> None:
    ns = netd.netns
    before = links(ns)
    netd.ctl(
        "run", "-d", "--name", "web", "--hostname", "webhost", "-p", "18080:80",
        "-p", "127.0.0.1:15353:5353/udp", "--expose", "5353/udp", "-P",
        "default", "python3", "-c", SERVER,
    )  # fmt: skip
    wait_listening(netd, "web", 80)
    state = netd.inspect("web")["state"]["network"]
    (endpoint,) = state["endpoints"]
    address = endpoint["ip_address"]
    assert endpoint["network"] == "bridge" and endpoint["gateway"].endswith(".1")
    assert endpoint["mac_address"].startswith("02:42:")
    # 80/tcp on 18080; 5353/udp on 127.0.0.1:15353; -P adds nothing already published.
    ports = {(p["container_port"], p["protocol"]): p for p in state["ports"]}
    assert sorted(ports) == [(80, "tcp"), (5353, "udp")]
    assert netd.ctl("port", "web").stdout.splitlines() == [
        "80/tcp -> 0.0.0.0:18080",
        "80/tcp -> [::]:18080",  # on both families, as Docker publishes
        "5353/udp -> 127.0.0.1:15353",
    ]
    assert netd.ctl("port", "web", "80").stdout == "0.0.0.0:18080\n[::]:18080\n"

    # The container's own view: its address, a default route, /etc/hosts, resolv.conf.
    own = netd.ctl(
        "exec", "web", "sh", "-c",
        "cat /etc/hosts /etc/resolv.conf; ls /sys/class/net; cat /proc/net/route",
    ).stdout  # fmt: skip
    assert f"{address}\twebhost\n" in own
    assert "nameserver 127." not in own and "eth0" in own and "00000000" in own

    # From the host: loopback (the proxy), the host's own address and the bridge's
    # (nftables DNAT), UDP on loopback; from another container: the host's address and
    # the gateway (hairpin, through the proxy).
    assert fetch(ns, "tcp", "127.0.0.1", 18080) == "200"
    assert fetch(ns, "tcp", HOST_ADDRESS, 18080) == "200"
    assert fetch(ns, "tcp", endpoint["gateway"], 18080) == "200"
    assert fetch(ns, "udp", "127.0.0.1", 15353) == "echo hi"
    hairpin = netd.ctl(
        "run", "--rm", "default", "python3", "-c", CLIENT, "tcp", HOST_ADDRESS, "18080"
    )
    assert hairpin.stdout.strip() == "200"
    assert "dnat to" in nft_rules(ns)
    # --network container:web: web's network namespace (its loopback, its eth0), for
    # the container's init and for what is exec'd in it.
    netd.ctl("run", "-d", "--name", "side", "--network", "container:web", "default", "sleep", "60")
    shared = netd.ctl("exec", "side", "python3", "-c", CLIENT, "tcp", "127.0.0.1", "80")
    assert shared.stdout.strip() == "200"
    mac = netd.ctl("exec", "side", "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert mac == endpoint["mac_address"]

    # A host port that is taken: run fails at once, naming it in Docker's words (another
    # container's, another program's); nothing is left behind.
    rules = nft_rules(ns)
    r = netd.ctl("run", "-d", "--name", "other", "-p", "18080:80", "default", "true", check=False)
    assert r.returncode == 125
    allocated = "cannot publish 80/tcp: Bind for 0.0.0.0:18080 failed: port is already allocated"
    assert allocated in r.stderr
    holder = subprocess.Popen(
        ["nsenter", f"--net={ns}", "--", "python3", "-c", HOLD_PORT, "18081"],
        stdout=subprocess.PIPE,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"listening\n"
            r = netd.ctl("run", "--name", "other2", "-p", "18081:80", "default", "true",
                         check=False)  # fmt: skip
        finally:
            holder.kill()
    assert r.returncode == 125
    held = "failed to bind host port 0.0.0.0:18081/tcp: address already in use"
    assert f"cannot publish 80/tcp: {held}" in r.stderr
    # An address the host does not have: named, in Docker's words.
    r = netd.ctl("run", "--name", "other3", "-p", "198.51.100.1:18082:80/udp", "default", "true",
                 check=False)  # fmt: skip
    foreign = "failed to bind host port 198.51.100.1:18082/udp: cannot assign requested address"
    assert r.returncode == 125 and f"cannot publish 80/udp: {foreign}" in r.stderr
    assert nft_rules(ns) == rules
    assert len(links(ns)) == len(before) + 2  # boxd0 and web's veth, no more

    # -P alone: an ephemeral host port, reported by port and inspect.
    netd.ctl("run", "-d", "--name", "eph", "--expose", "80", "-P", "default", "sleep", "60")
    eph, eph6 = netd.inspect("eph")["state"]["network"]["ports"]
    assert eph["host_port"] > 0 and eph6["host_port"] == eph["host_port"]
    shown = netd.ctl("port", "eph", "80/tcp").stdout
    assert shown == f"0.0.0.0:{eph['host_port']}\n[::]:{eph['host_port']}\n"

    # Removal releases the veth, the rules and the address: web's veth goes at once,
    # though side keeps its namespace alive.
    web = "bx" + netd.inspect("web")["id"][:12]
    netd.ctl("rm", "-f", "web")
    assert links_settle(ns, (web,), []) == []
    netd.ctl("rm", "-f", "side", "eph", "other", "other2", "other3")
    assert links_settle(ns, ("bx",), []) == []
    # The rules of ended containers' ports go a moment after (off their run's way out).
    until(lambda: "dnat" not in nft_rules(ns), "the published ports' rules to go")
    assert json.loads(netd.ctl("network", "inspect", "bridge").stdout)[0]["Containers"] == {}


@pytest.mark.root
def test_user_networks_resolve_by_name_and_are_isolated(netd: Daemon) -> None:
    netd.ctl("network", "create", "front")
    netd.ctl("network", "create", "--subnet", "10.77.0.0/24", "back")
    listing = netd.ctl("network", "ls").stdout
    assert "front" in listing and "back" in listing and "bridge" in listing
    subnet = "{{range .IPAM.Config}}{{.Subnet}}{{end}}"
    assert netd.ctl("network", "inspect", "-f", subnet, "back").stdout == "10.77.0.0/24\n"
    netd.ctl(
        "run", "-d", "--name", "api", "--network", "front", "--network-alias", "apisrv",
        "default", "python3", "-m", "http.server", "80",
    )  # fmt: skip
    netd.ctl("run", "-d", "--name", "db", "--network", "back", "default", "sleep", "60")
    wait_listening(netd, "api", 80)
    api = netd.inspect("api")["state"]["network"]["endpoints"][0]["ip_address"]
    script = (
        "import socket, sys, urllib.request\n"
        "print(socket.gethostbyname('api'), socket.gethostbyname('apisrv'))\n"
        "print(urllib.request.urlopen('http://api/', timeout=10).status)\n"
    )
    r = netd.ctl("run", "--rm", "--network", "front", "default", "python3", "-c", script)
    assert r.stdout.split() == [api, api, "200"]
    # From the other network: the address is not routed across (dropped), and the name
    # is not one of that network's.
    probe = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        f"print(s.connect_ex(('{api}', 80)) != 0)\n"
    )
    r = netd.ctl("exec", "db", "python3", "-c", probe)
    assert r.stdout.strip() == "True"
    assert "api" not in netd.ctl("exec", "db", "cat", "/etc/hosts").stdout

    # Bad input, each named, nothing made.
    for args, message in [
        (("network", "create", "--subnet", "10.77.0.0/16", "x"), "overlaps network back"),
        (("network", "create", "--subnet", "nonsense", "x"), "invalid subnet 'nonsense'"),
        (("network", "create", "--subnet", "224.1.0.0/16", "x"), "overlaps 224.0.0.0/4, multicast"),
        (("network", "create", "--subnet", "127.5.0.0/16", "x"), "overlaps 127.0.0.0/8, loopback"),
        (("network", "create", "front"), "network with name front already exists"),
        (("network", "create", "host"), "reserved"),
        (("network", "rm", "front"), "in use by container(s) api"),
        (("network", "rm", "bridge"), "bridge is a pre-defined network and cannot be removed"),
        (("run", "--network", "nope", "default", "true"), "No such network: nope"),
        (("run", "--network", "container:nope", "default", "true"), "No such container: nope"),
        (
            ("run", "--name", "me", "--network", "container:me", "default", "true"),
            "invalid --network 'container:me': cannot join own network namespace",
        ),
        (("run", "--network", "container:db", "--isolate-user", "default", "true"), "cannot go"),
        (("run", "--network", "slirp", "--isolate-user", "default", "true"), "no slirp4netns"),
        (("run", "-p", "99999", "default", "true"), "out of range"),
        (("run", "--network", "none", "-p", "80", "default", "true"), "need a network"),
        (("run", "--network", "container:db", "-p", "80", "default", "true"), "need a network"),
    ]:
        r = netd.ctl(*args, check=False)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
    # An overlap is dockerd's 403 (its IPAM's ErrPoolOverlap: moby's integration-cli
    # TestAPINetworkIPAMMultipleBridgeNetworks).
    overlap = {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.77.0.0/16"}]}}
    status, _, body = docker_clients.api_call(
        netd, "POST", "/networks/create", json.dumps(overlap).encode()
    )
    assert status == 403 and b"overlaps network back" in body, body
    assert [line.split()[1] for line in netd.ctl("network", "ls").stdout.splitlines()[1:]] == [
        "back",
        "bridge",
        "front",
        "host",
        "none",
    ]
    netd.ctl("rm", "-f", "api", "db")
    assert netd.ctl("network", "prune", "-f").stdout.split() == [
        "Deleted",
        "Networks:",
        "front",
        "back",
    ]
    assert [n for n in links(netd.netns) if n.startswith("br-")] == []


@pytest.mark.root
def test_docker_api_publishes_ports(netd: Daemon) -> None:
    """docker-py's ``ports=``: HostConfig.PortBindings and ExposedPorts, answered as Docker
    does in NetworkSettings.Ports."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        c = client.containers.run(
            "default", ["python3", "-m", "http.server", "80"], detach=True, name="api",
            ports={"80/tcp": None, "81/tcp": ("127.0.0.1", 18181)},
        )  # fmt: skip
        c.reload()
        ports = c.attrs["NetworkSettings"]["Ports"]
        assert ports["81/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "18181"}]
        eph, eph6 = ports["80/tcp"]
        assert (eph["HostIp"], eph6["HostIp"], eph6["HostPort"]) == (
            "0.0.0.0",
            "::",
            eph["HostPort"],
        )
        assert c.attrs["NetworkSettings"]["IPAddress"].count(".") == 3
        wait_listening(netd, "api", 80)
        assert fetch(netd.netns, "tcp", "127.0.0.1", int(eph["HostPort"])) == "200"
        c.remove(force=True)
    finally:
        client.close()


@pytest.mark.root
def test_network_across_daemon_restarts(tmp_path: Path, netns: str) -> None:
    """Live restore: a published port answers again once the next daemon adopted its
    container.  A daemon killed without live restore: the next one removes its bridge and
    rules and the port is free again.  Nothing is left when the last one stops."""
    with running_daemon(tmp_path / "live", netns=netns) as d:
        d.ctl("run", "-d", "--name", "web", "-p", "18090:80", "default", "python3", "-m",
              "http.server", "80")  # fmt: skip
        wait_listening(d, "web", 80)
        assert d.stop() == 0  # the container runs on; its bridge stays
        d.start()
        assert fetch(netns, "tcp", "127.0.0.1", 18090) == "200"
        assert fetch(netns, "tcp", HOST_ADDRESS, 18090) == "200"
        d.ctl("rm", "-f", "web")
    with running_daemon(tmp_path / "killed", "--no-live-restore", netns=netns) as d:
        d.ctl("run", "-d", "--name", "web", "-p", "18090:80", "default", "sleep", "300")
        bridges = [n for n in links(netns) if n.startswith("boxd")]
        d.stop(signal.SIGKILL)
        d.start()
        assert [n for n in links(netns) if n.startswith(("boxd", "bx"))] == []
        assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []
        d.ctl("run", "-d", "--name", "again", "-p", "18090:80", "default", "sleep", "300")
        assert [n for n in links(netns) if n.startswith("boxd")] == bridges
    assert links_settle(netns, ("boxd", "bx", "br-"), []) == []
    assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []


# A DNS client for the containers' python3 (no dnslib there): A queries for each name,
# over TCP (two of them on one connection, length-prefixed) or UDP; prints each address.
DNS_CLIENT = """
import socket, struct, sys
kind, server, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def query(n, name):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    head = struct.pack("!HHHHHH", n, 0x0100, 1, 0, 0, 0)
    return head + labels + b"\\0" + struct.pack("!HH", 1, 1)
def address(reply):
    return socket.inet_ntoa(reply[-4:]) if struct.unpack("!H", reply[6:8])[0] else "none"
if kind == "tcp":
    s = socket.create_connection((server, 53), timeout=10)
    queries = [query(n, name) for n, name in enumerate(names)]
    s.sendall(b"".join(struct.pack("!H", len(q)) + q for q in queries))
    f = s.makefile("rb")
    for _ in names:
        (size,) = struct.unpack("!H", f.read(2))
        print(address(f.read(size)))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    for n, name in enumerate(names):
        s.sendto(query(n, name), (server, 53))
        print(address(s.recv(4096)))
"""

# Runs in the test's namespace: a stand-in upstream resolver on 192.0.2.1:53 (UDP) that
# answers every A query with 198.51.100.7.
UPSTREAM = """
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.1", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(4096)
    head = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    answer = b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + socket.inet_aton("198.51.100.7")
    s.sendto(head + q[12:] + answer, peer)
"""


def endpoints(daemon: Daemon, ref: str) -> dict[str, dict[str, Any]]:
    found = daemon.inspect(ref)["state"]["network"]["endpoints"]
    return {e["network"]: e for e in found}


@pytest.mark.root
def test_network_connect_and_disconnect(netd: Daemon) -> None:
    """Hot-plug into a running container (a new interface, its names on that network, its
    /etc/hosts and resolv.conf), unplug, and the same for a container at rest (applied at
    its next start); Docker's refusals."""
    ns = netd.netns
    netd.ctl("network", "create", "front")
    netd.ctl("network", "create", "--subnet", "10.77.0.0/24", "back")
    netd.ctl(
        "run", "-d", "--name", "api", "--network", "front", "default",
        "python3", "-m", "http.server", "80",
    )  # fmt: skip
    netd.ctl("run", "-d", "--name", "cli", "default", "sleep", "300")
    wait_listening(netd, "api", 80)
    host_links = [n for n in links(ns) if n.startswith("bx")]

    netd.ctl("network", "connect", "--alias", "client", "front", "cli")
    eps = endpoints(netd, "cli")
    assert sorted(eps) == ["bridge", "front"]
    assert (eps["bridge"]["interface"], eps["front"]["interface"]) == ("eth0", "eth1")
    assert eps["front"]["aliases"] == ["client"]
    assert len([n for n in links(ns) if n.startswith("bx")]) == len(host_links) + 1
    front_ip = eps["front"]["ip_address"]
    api_ip = endpoints(netd, "api")["front"]["ip_address"]
    own = netd.ctl("exec", "cli", "sh", "-c", "cat /etc/hosts /etc/resolv.conf").stdout
    assert f"{front_ip}\t" in own and f"{eps['bridge']['ip_address']}\t" in own
    assert f"nameserver {eps['front']['gateway']}" in own
    fetch_api = ("exec", "cli", "python3", "-c", CLIENT, "tcp", "api", "80")
    ask = ("exec", "cli", "python3", "-c", DNS_CLIENT, "udp", eps["front"]["gateway"], "api")
    assert netd.ctl(*ask).stdout.split() == [api_ip]
    assert netd.ctl(*fetch_api).stdout.strip() == "200"
    # Its names on front, as api's DNS answers them.
    resolve = ("python3", "-c", DNS_CLIENT, "udp", eps["front"]["gateway"], "client", "cli")
    assert netd.ctl("exec", "api", *resolve).stdout.split() == [front_ip, front_ip]
    members = json.loads(netd.ctl("network", "inspect", "front").stdout)[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["api", "cli"]

    # Docker's refusals, each named; nothing changes.
    netd.ctl("run", "-d", "--name", "h", "--network", "host", "default", "sleep", "300")
    netd.ctl("create", "--name", "iso", "--network", "none", "default", "true")
    for args, message in [
        (("connect", "front", "cli"), "endpoint with name cli already exists in network front"),
        (("connect", "nope", "cli"), "No such network: nope"),
        (("connect", "front", "nosuch"), "No such container: nosuch"),
        (("disconnect", "back", "cli"), "container cli is not connected to network back"),
        (("connect", "front", "h"), "cannot be disconnected from host network or connected"),
        (("disconnect", "host", "cli"), "connected to host network"),
        (("connect", "front", "iso"), "one of the networks in private (none) mode"),
        (("connect", "--ip", "172.31.0.9", "bridge", "iso"), "private (none) mode"),
        (("connect", "--ip", "10.77.1.5", "back", "cli"), "invalid --ip 10.77.1.5"),
        (("connect", "--ip", "nonsense", "back", "cli"), "invalid --ip 'nonsense'"),
        (("connect", "--alias", "a b", "back", "cli"), "invalid container name 'a b'"),
        (("connect", "--link", "api:a:b", "back", "cli"), "bad format for links"),
        (("connect", "--link", "x:y:z", "back", "nosuch"), '"x:y:z" for "--link" flag'),
        (("connect", "--link-local-ip", "10.0.0.1", "back", "nosuch"), "link-local IP address"),
    ]:
        r = netd.ctl("network", *args, check=False)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
    assert sorted(endpoints(netd, "cli")) == ["bridge", "front"]

    # Unplugged: the interface, the names, the way to api go.
    netd.ctl("network", "disconnect", "front", "cli")
    assert sorted(endpoints(netd, "cli")) == ["bridge"]
    assert [n for n in links(ns) if n.startswith("bx")] == host_links
    assert "eth1" not in netd.ctl("exec", "cli", "ls", "/sys/class/net").stdout
    assert front_ip not in netd.ctl("exec", "cli", "cat", "/etc/hosts").stdout
    assert netd.ctl("exec", "api", *resolve).stdout.split() == ["none", "none"]

    # At rest: connected with a chosen address, off its first network; so at its start.
    netd.ctl("create", "--name", "later", "default", "sleep", "300")
    netd.ctl("network", "connect", "--ip", "10.77.0.50", "back", "later")
    r = netd.ctl("network", "connect", "--ip", "10.77.0.50", "back", "cli", check=False)
    assert "address 10.77.0.50 on network back is already in use" in r.stderr
    netd.ctl("network", "disconnect", "-f", "bridge", "later")
    netd.ctl("start", "later")
    eps = endpoints(netd, "later")
    assert sorted(eps) == ["back"] and eps["back"]["ip_address"] == "10.77.0.50"
    route = netd.ctl("exec", "later", "cat", "/proc/net/route").stdout
    assert "eth0" in route and "00000000" in route  # its default route, through back
    r = netd.ctl("network", "rm", "back", check=False)
    assert "in use by container(s) later" in r.stderr
    # Kept across a restart of a running container too, with a link given with it: a
    # name front's DNS answers for cli alone.
    netd.ctl("network", "connect", "--link", "api:svc", "front", "cli")
    netd.ctl("restart", "-t", "0", "cli")
    assert sorted(endpoints(netd, "cli")) == ["bridge", "front"]
    assert netd.ctl(*fetch_api).stdout.strip() == "200"
    asked = ("python3", "-c", DNS_CLIENT, "udp", endpoints(netd, "cli")["front"]["gateway"], "svc")
    assert netd.ctl("exec", "cli", *asked).stdout.split() == [api_ip]
    assert netd.ctl("exec", "api", *asked).stdout.split() == ["none"]

    # Its published ports go with the network they were on, and come back when it is
    # connected again (as Docker maps them again).
    netd.ctl("rm", "-f", "api")
    netd.ctl("run", "-d", "--name", "api", "-p", "18086:80", "default", "python3", "-m",
             "http.server", "80")  # fmt: skip
    wait_listening(netd, "api", 80)
    netd.ctl("network", "disconnect", "bridge", "api")
    assert netd.inspect("api")["state"]["network"]["ports"] == []
    assert inside(ns, "python3", "-c", CLIENT, "tcp", "127.0.0.1", "18086", check=False).returncode
    netd.ctl("network", "connect", "front", "api")
    assert fetch(ns, "tcp", "127.0.0.1", 18086) == "200"
    assert fetch(ns, "tcp", HOST_ADDRESS, 18086) == "200"
    assert netd.ctl("port", "api", "80").stdout == "0.0.0.0:18086\n[::]:18086\n"

    netd.ctl("rm", "-f", "api", "cli", "h", "iso", "later")
    assert links_settle(ns, ("bx",), []) == []
    for name in ("front", "back", "bridge"):
        info = json.loads(netd.ctl("network", "inspect", name).stdout)[0]
        assert info["Containers"] == {}


@pytest.mark.root
def test_a_start_takes_the_spare_name_while_a_previous_end_holds_the_first(
    netd: Daemon, netns: str
) -> None:
    """A restart's new veth does not wait for the previous run's, which keeps its name
    until the kernel has cleaned up that run's namespace (deleting it meanwhile waited for
    the clean-up: a restart on a bridge took 15-40 ms longer than a first start): the
    host's end takes the first free of its spare names, one letter more.  Links holding
    names stand in for previous runs' ends here (eth0's first name and first spare, eth1's
    first name): the container works through its spare-named ends, a hot-plugged network
    leaves by the name in use, and nothing of its own is left."""
    netd.ctl("network", "create", "side")
    netd.ctl("create", "--name", "s", "default", "python3", "-m", "http.server", "80")
    cid = netd.inspect("s")["id"]
    eth0 = _network.host_link_names(cid, "eth0")
    eth1 = _network.host_link_names(cid, "eth1")
    held = sorted([*eth0[:2], eth1[0]])
    for n, name in enumerate(held):  # (a veth pair: this kernel may have no dummy links)
        inside(netns, "ip", "link", "add", name, "type", "veth", "peer", "name", f"stand{n}")
    try:
        netd.ctl("start", "s")
        wait_listening(netd, "s", 80)
        assert fetch(netns, "tcp", endpoints(netd, "s")["bridge"]["ip_address"], 80) == "200"
        netd.ctl("network", "connect", "side", "s")
        in_use = [eth0[2], eth1[1]]
        assert [n for n in links(netns) if n.startswith("bx")] == sorted([*held, *in_use])
        netd.ctl("network", "disconnect", "side", "s")
        assert links_settle(netns, (eth1[1],), []) == []
        netd.ctl("rm", "-f", "s")
        assert links_settle(netns, ("bx",), held) == held
    finally:
        for name in held:
            inside(netns, "ip", "link", "del", name, check=False)
    netd.ctl("network", "rm", "side")


@pytest.mark.root
def test_a_next_daemon_adopts_the_end_in_use_not_an_older_one_holding_the_first_name(
    tmp_path: Path, netns: str
) -> None:
    """A daemon that starts while a restarted container's previous end still holds the
    first name (the kernel frees it 5-50 ms after that run) adopted the end by that name:
    the container's own end, a spare, went unknown, and a disconnect deleted the older one
    and left the container on the network.  The endpoint's record names its end; a link
    holding the first name stands in for the older end here."""
    with running_daemon(tmp_path, netns=netns) as d:
        d.ctl("create", "--name", "s", "-p", "18091:80", "default", "python3", "-m",
              "http.server", "80")  # fmt: skip
        first, spare = _network.host_link_names(d.inspect("s")["id"], "eth0")[:2]
        inside(netns, "ip", "link", "add", first, "type", "veth", "peer", "name", "stand0")
        try:
            d.ctl("start", "s")
            wait_listening(d, "s", 80)
            assert [n for n in links(netns) if n.startswith("bx")] == sorted([first, spare])
            assert d.stop() == 0  # the container runs on
            d.start()
            assert fetch(netns, "tcp", "127.0.0.1", 18091) == "200"
            d.ctl("network", "disconnect", "bridge", "s")  # by the end's name: the spare
            assert links_settle(netns, ("bx",), [first]) == [first]
            d.ctl("rm", "-f", "s")
        finally:
            inside(netns, "ip", "link", "del", first, check=False)


@pytest.mark.root
def test_dns_answers_name_dot_network_and_reverse_queries(netd: Daemon) -> None:
    """As Docker's embedded DNS: NAME.NETWORK resolves (a network the asking container is
    on), names match whatever their case, a reverse query for a container's address gets
    NAME.NETWORK, and containers ask it with ndots:0."""
    netd.ctl("network", "create", "front")
    netd.ctl("network", "create", "back")
    netd.ctl("run", "-d", "--name", "api", "--network", "front", "default", "sleep", "300")
    api = endpoints(netd, "api")["front"]["ip_address"]
    script = (
        "import socket, sys\n"
        "print(socket.gethostbyname(sys.argv[1]), socket.gethostbyaddr(sys.argv[2])[0])\n"
    )
    r = netd.ctl("run", "--rm", "--network", "front", "default", "python3", "-c", script,
                 "api.front", api)  # fmt: skip
    assert r.stdout.split() == [api, "api.front"]
    # Whatever the case, as DNS names are.
    r = netd.ctl("run", "--rm", "--network", "front", "default", "python3", "-c", DNS_CLIENT,
                 "udp", endpoints(netd, "api")["front"]["gateway"], "API", "Api.FRONT")  # fmt: skip
    assert r.stdout.split() == [api, api]
    # From a network api is not on, api.front is not one of its names.
    gateway = netd.ctl("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "back")
    r = netd.ctl("run", "--rm", "--network", "back", "default", "python3", "-c", DNS_CLIENT,
                 "udp", gateway.stdout.strip(), "api.front", "api")  # fmt: skip
    assert r.stdout.split() == ["none", "none"]
    # Asked with ndots:0, as Docker's containers ask its embedded DNS (a member of api's
    # network namespace too), unless an ndots option is given.
    resolv = ("cat", "/etc/resolv.conf")
    for args in (("--network", "front"), ("--network", "container:api")):
        r = netd.ctl("run", "--rm", *args, "default", *resolv)
        last = r.stdout.splitlines()[-1].split()  # the host's options may come first
        assert last[0] == "options" and last[-1] == "ndots:0", r.stdout
    r = netd.ctl("run", "--rm", "--network", "front", "--dns-option", "ndots:3",
                 "--dns-option", "edns0", "default", *resolv)  # fmt: skip
    assert r.stdout.splitlines()[-1] == "options ndots:3 edns0"
    netd.ctl("rm", "-f", "api")


@pytest.mark.root
def test_internal_network(netd: Daemon) -> None:
    """Docker's ``--internal`` (compose's ``internal: true``): its containers reach each
    other by name and nothing else (no default route, nothing routed in from another
    network, no name forwarded upstream, no published port); a container also on a
    network with a way out routes and publishes through that one."""
    ns = netd.netns
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        inner = client.networks.create("inner", internal=True, ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.44.0.0/24")]))  # fmt: skip
        assert inner.attrs["Internal"] is True
    finally:
        client.close()
    netd.ctl("network", "create", "--internal", "inner2")  # boxctl's flag
    ls = netd.ctl("network", "ls", "-f", "name=inner", "--format", "{{.Name}} {{.Internal}}")
    assert ls.stdout == "inner true\ninner2 true\n"
    netd.ctl("run", "-d", "--name", "db", "--network", "inner", "default", "python3", "-m",
             "http.server", "80")  # fmt: skip
    wait_listening(netd, "db", 80)
    probe = (
        "import socket, urllib.request\n"
        "print(urllib.request.urlopen('http://db/', timeout=10).status)\n"
        f"print(socket.socket().connect_ex(('{HOST_ADDRESS}', 1)))\n"
        "print(sum(r.split()[1] == '00000000' for r in open('/proc/net/route').readlines()[1:]))"
    )
    r = netd.ctl("run", "--rm", "--network", "inner", "default", "python3", "-c", probe)
    assert r.stdout.split() == ["200", "101", "0"]  # ENETUNREACH: no default route
    db = endpoints(netd, "db")["inner"]
    blocked = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(2)\n"
        f"print(s.connect_ex(('{db['ip_address']}', 80)) != 0)\n"
    )
    r = netd.ctl("run", "--rm", "default", "python3", "-c", blocked)  # from the bridge
    assert r.stdout.strip() == "True"
    with serving(ns, UPSTREAM):
        r = netd.ctl("run", "--rm", "--network", "inner", "--dns", HOST_ADDRESS, "default",
                     "python3", "-c", DNS_CLIENT, "udp", db["gateway"], "outside.example",
                     "db")  # fmt: skip
    assert r.stdout.split() == ["none", db["ip_address"]]
    # A port published on internal networks only has no way in until a network with one
    # is connected, as with dockerd (moby's TestPortBindingOnSandbox).
    netd.ctl("run", "-d", "--name", "late", "--network", "inner", "-p", "18086:80", "default",
             "python3", "-m", "http.server", "80")  # fmt: skip
    wait_listening(netd, "late", 80)
    closed = inside(ns, "python3", "-c", CLIENT, "tcp", "127.0.0.1", "18086", check=False)
    assert "ConnectionRefusedError" in closed.stderr, closed
    netd.ctl("network", "connect", "bridge", "late")
    assert fetch(ns, "tcp", "127.0.0.1", 18086) == "200"
    assert netd.ctl("port", "late", "80").stdout.startswith("0.0.0.0:18086")
    netd.ctl("rm", "-f", "late")

    netd.ctl("create", "--name", "both", "--network", "inner", "-p", "18085:80", "default",
             "python3", "-m", "http.server", "80")  # fmt: skip
    netd.ctl("network", "connect", "bridge", "both")
    netd.ctl("start", "both")
    wait_listening(netd, "both", 80)
    assert fetch(ns, "tcp", "127.0.0.1", 18085) == "200"
    assert fetch(ns, "tcp", HOST_ADDRESS, 18085) == "200"
    bridge = endpoints(netd, "both")["bridge"]
    route = netd.ctl("exec", "both", "cat", "/proc/net/route").stdout.splitlines()
    gateway = socket.inet_aton(bridge["gateway"])[::-1].hex().upper()
    assert [line.split()[:3] for line in route[1:] if line.split()[1] == "00000000"] == [
        [bridge["interface"], "00000000", gateway]
    ]
    netd.ctl("rm", "-f", "db", "both")


@pytest.mark.root
def test_dns_over_tcp_and_dns_flags(netd: Daemon) -> None:
    """The network's name server answers TCP (two queries on one connection) as well as
    UDP; --dns/--dns-search/--dns-option make the container's resolv.conf, and on a user
    network the --dns servers are where its other names are forwarded."""
    ns = netd.netns
    netd.ctl("network", "create", "front")
    netd.ctl("run", "-d", "--name", "db", "--network", "front", "--network-alias", "store",
             "default", "sleep", "300")  # fmt: skip
    ep = endpoints(netd, "db")["front"]
    r = netd.ctl("run", "--rm", "--network", "front", "default", "python3", "-c", DNS_CLIENT,
                 "tcp", ep["gateway"], "db", "store")  # fmt: skip
    assert r.stdout.split() == [ep["ip_address"], ep["ip_address"]]
    # From the host's side (the test's namespace) too, over TCP.
    r = inside(ns, "python3", "-c", DNS_CLIENT, "tcp", ep["gateway"], "store")
    assert r.stdout.split() == [ep["ip_address"]]

    with serving(ns, UPSTREAM):
        flags = ("--dns", HOST_ADDRESS, "--dns-search", "example.test", "--dns-option", "ndots:2")
        script = (
            "import socket; print(open('/etc/resolv.conf').read());"
            "print(socket.gethostbyname('outside.example'))"
        )
        r = netd.ctl("run", "--rm", *flags, "default", "python3", "-c", script)
        assert r.stdout.splitlines()[:3] == [
            f"nameserver {HOST_ADDRESS}",
            "search example.test",
            "options ndots:2",
        ]
        assert r.stdout.split()[-1] == "198.51.100.7"  # asked 192.0.2.1 directly
        r = netd.ctl("run", "--rm", "--network", "front", *flags, "default", "python3", "-c",
                     script)  # fmt: skip
        assert r.stdout.splitlines()[0] == f"nameserver {ep['gateway']}"
        assert "search example.test" in r.stdout
        assert r.stdout.split()[-1] == "198.51.100.7"  # forwarded by front's DNS to --dns
        r = netd.ctl("run", "--rm", "--network", "host", "--dns", "192.0.2.9",
                     "--dns-search", ".", "default", "cat", "/etc/resolv.conf")  # fmt: skip
        assert r.stdout.splitlines()[0] == "nameserver 192.0.2.9"
        assert "search" not in r.stdout
    for args, message in [
        (("--dns", "nonsense"), "invalid --dns 'nonsense': not an IP address"),
        (("--dns-search", "a..b"), "invalid --dns-search 'a..b'"),
        (("--network", "container:db", "--dns", "192.0.2.9"), "conflicting options: dns"),
    ]:
        r = netd.ctl("run", "--rm", *args, "default", "true", check=False)
        assert r.returncode == 125 and message in r.stderr, (args, r.stderr)
    netd.ctl("rm", "-f", "db")


@pytest.mark.root
def test_docker_api_network_connect(netd: Daemon) -> None:
    """docker-py's ``Network.connect``/``disconnect`` and the docker CLI's ``network
    connect``/``disconnect``: the endpoints in inspect's NetworkSettings.Networks, Docker's
    errors and codes."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        net = client.networks.create("front", ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.66.0.0/24")]))  # fmt: skip
        c = client.containers.run("default", ["sleep", "300"], detach=True, name="web")
        net.connect(c, aliases=["www"])
        c.reload()
        nets = c.attrs["NetworkSettings"]["Networks"]
        assert sorted(nets) == ["bridge", "front"]
        assert nets["front"]["IPAddress"].startswith("10.66.0.") and nets["front"]["Aliases"]
        # The deprecated top-level fields are the default bridge's, as moby's (whatever
        # network came first); empty for a container on user networks only.
        top = ("IPAddress", "Gateway", "MacAddress", "EndpointID", "IPPrefixLen")
        settings = c.attrs["NetworkSettings"]
        assert [settings[k] for k in top] == [nets["bridge"][k] for k in top]
        assert settings["IPAddress"] and settings["Gateway"]
        only = client.containers.run("default", ["sleep", "300"], detach=True, network="front")
        only.reload()
        settings = only.attrs["NetworkSettings"]
        assert [settings[k] for k in top] == ["", "", "", "", 0]
        assert settings["Networks"]["front"]["IPAddress"].startswith("10.66.0.")
        only.remove(force=True)
        with pytest.raises(docker.errors.APIError) as info:
            net.connect(c)
        assert info.value.status_code == 409 and "already exists" in str(info.value)
        with pytest.raises(docker.errors.NotFound):
            net.connect("nosuch")
        net.disconnect(c, force=True)
        c.reload()
        assert sorted(c.attrs["NetworkSettings"]["Networks"]) == ["bridge"]
        with pytest.raises(docker.errors.APIError) as info:
            net.disconnect(c)
        assert "is not connected to network front" in str(info.value)
        # At rest: shown without an address until it starts, with the address it asked for.
        later = client.containers.create("default", ["sleep", "300"], name="later")
        net.connect(later, ipv4_address="10.66.0.77")
        later.reload()
        assert later.attrs["NetworkSettings"]["Networks"]["front"]["IPAddress"] == ""
        later.start()
        later.reload()
        front = later.attrs["NetworkSettings"]["Networks"]["front"]
        assert front["IPAddress"] == "10.66.0.77"
        assert front["IPAMConfig"] == {"IPv4Address": "10.66.0.77"}  # asked for, kept shown
        # Several networks at create (API 1.44's EndpointsConfig); a client of API 1.43
        # is refused in moby's words, naming them, and nothing is made.
        both = {"bridge": {}, "front": {"Aliases": ["m"]}}
        old = docker.APIClient(base_url=f"unix://{netd.docker_socket}", version="1.43")
        try:
            r = old.post(old._url("/containers/create"), params={"name": "multi"}, json={
                "Image": "default", "Cmd": ["sleep", "300"], "Hostname": "mh",
                "HostConfig": {"NetworkMode": "bridge"},
                "NetworkingConfig": {"EndpointsConfig": both},
            })  # fmt: skip
        finally:
            old.close()
        assert (r.status_code, r.json()["message"]) == (
            400,
            "Container cannot be created with multiple network endpoints: bridge, front",
        )
        assert not client.containers.list(all=True, filters={"name": "multi"})
        multi = client.api.create_container(
            "default", ["sleep", "300"], name="multi", hostname="mh",
            networking_config={"EndpointsConfig": both},
            host_config=client.api.create_host_config(network_mode="bridge"),
        )  # fmt: skip
        client.api.start(multi)
        shown = client.api.inspect_container(multi)["NetworkSettings"]["Networks"]
        assert sorted(shown) == ["bridge", "front"]
        # From API 1.45 (docker-py's negotiated 1.50 here) the aliases are those given;
        # before, a user network's add the short id and the hostname, as Docker's do; the
        # default bridge's stay none.
        assert (shown["front"]["Aliases"], shown["bridge"]["Aliases"]) == (["m"], None)
        legacy = docker.APIClient(base_url=f"unix://{netd.docker_socket}", version="1.44")
        try:
            shown = legacy.inspect_container(multi)["NetworkSettings"]["Networks"]
        finally:
            legacy.close()
        short = multi["Id"][:12]
        assert (shown["front"]["Aliases"], shown["bridge"]["Aliases"]) == (["m", short, "mh"], None)
        out = client.containers.run(
            "default", ["cat", "/etc/resolv.conf"], remove=True,
            dns=["192.0.2.9"], dns_search=["example.test"], dns_opt=["ndots:3"],
        )  # fmt: skip
        assert out.decode().splitlines() == [
            "nameserver 192.0.2.9",
            "search example.test",
            "options ndots:3",
        ]
    finally:
        client.close()

    cli = shutil.which("docker")
    if cli is not None:
        env = {**os.environ, "DOCKER_HOST": f"unix://{netd.docker_socket}",
               "DOCKER_CONFIG": str(netd.root.parent / "docker-config")}  # fmt: skip

        def docker_cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [cli, *args], capture_output=True, text=True, env=env, timeout=60, check=False
            )

        assert docker_cli("network", "connect", "--alias", "w2", "front", "web").returncode == 0
        assert "front" in netd.inspect("web")["config"]["networks"][1]["network"]
        r = docker_cli("network", "connect", "host", "web")
        assert r.returncode == 1 and "connected to host network" in r.stderr
        r = docker_cli("network", "disconnect", "front", "nosuch")
        assert r.returncode == 1 and "No such container: nosuch" in r.stderr
        assert docker_cli("network", "disconnect", "front", "web").returncode == 0
    netd.ctl("rm", "-f", "web", "later", "multi")


@pytest.mark.root
def test_network_labels(netd: Daemon) -> None:
    """Labels given at create (docker-py, boxctl) are kept, shown by inspect, selected by
    the list's ``label`` filters (every one) and by prune's ``label``/``label!``, as the
    tools that find their networks by label (Compose, testcontainers) need."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        mine = client.networks.create("mine", labels={"project": "a", "tier": "front"})
        assert mine.attrs["Labels"] == {"project": "a", "tier": "front"}
        netd.ctl("network", "create", "--label", "project=b", "--label", "bare", "other")
        assert client.networks.get("other").attrs["Labels"] == {"project": "b", "bare": ""}
        shown = json.loads(netd.ctl("network", "inspect", "other").stdout)
        assert shown[0]["Labels"] == {"project": "b", "bare": ""}

        def listed(*labels: str) -> list[str]:
            return sorted(n.name for n in client.networks.list(filters={"label": list(labels)}))

        assert listed("project") == ["mine", "other"]
        assert listed("project=a") == ["mine"]
        assert listed("project", "bare") == ["other"]
        assert listed("project=a", "bare") == []
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.create_network("bad", labels={"": "x"})
        assert refused.value.status_code == 400 and "invalid label '=x'" in str(refused.value)
        pruned = client.networks.prune(filters={"label!": "project=a"})
        assert pruned["NetworksDeleted"] == ["other"]
        assert client.networks.prune(filters={"label": "tier=front"})["NetworksDeleted"] == ["mine"]
    finally:
        client.close()


@pytest.mark.root
def test_network_rm_with_stopped_containers_on_it(netd: Daemon) -> None:
    """A network only stopped or created containers name is removed, as Docker's (they
    have no endpoint on it then): it was refused as in use.  Their next start fails in
    Docker's words, naming it; a running container still keeps it."""
    netd.ctl("network", "create", "gone")
    netd.ctl("run", "-d", "--name", "was", "--network", "gone", "default", "sleep", "300")
    netd.ctl("create", "--name", "never", "--network", "gone", "default", "true")
    r = netd.ctl("network", "rm", "gone", check=False)
    assert r.returncode != 0 and "in use by container(s) was" in r.stderr, r.stderr
    netd.ctl("stop", "-t", "0", "was")
    assert netd.ctl("network", "rm", "gone").stdout == "gone\n"
    for name in ("was", "never"):
        r = netd.ctl("start", name, check=False)
        words = "failed to set up container networking: network gone not found"
        assert r.returncode != 0 and words in r.stderr, r.stderr
        assert netd.inspect(name)["state"]["status"] in ("exited", "created")
    status, _, data = docker_clients.api_call(netd, "POST", "/containers/was/start")
    assert (status, json.loads(data)["message"]) == (404, words)  # moby's NotFound, not a 500
    # Taken off it by name, as Docker's: it starts on its other networks (none here).
    netd.ctl("network", "disconnect", "gone", "never")
    netd.ctl("start", "never")
    # Made again under its name: the container joins it (boxd's records name networks).
    netd.ctl("network", "create", "gone")
    netd.ctl("start", "was")
    assert list(endpoints(netd, "was")) == ["gone"]
    netd.ctl("rm", "-f", "was", "never")
    netd.ctl("network", "rm", "gone")


@pytest.mark.root
def test_network_rm_with_a_container_between_its_restarts(netd: Daemon) -> None:
    """A container waiting out its restart's backoff has no endpoint on its network, as
    Docker's: the network is removed (it was refused as in use), and the restart that
    finds it gone is the last: exited, naming it, not tried again after each backoff."""
    netd.ctl("network", "create", "flaky")
    netd.ctl("run", "-d", "--name", "crashing", "--network", "flaky", "--restart", "always",
             "default", "sh", "-c", "exit 3")  # fmt: skip
    try:
        # Refused while one of its runs is on it, taken in a backoff (most of its time).
        until(
            lambda: netd.ctl("network", "rm", "flaky", check=False).returncode == 0,
            "the network's removal between the container's runs",
        )
        until(lambda: netd.inspect("crashing")["state"]["status"] == "exited", "its end")
        state = netd.inspect("crashing")["state"]
        words = "failed to set up container networking: network flaky not found"
        assert words in state["error"], state
        # Its policy does not bring it back; its code is its last run's, as Docker's.
        assert (state["status"], state["exit_code"]) == ("exited", 3)
    finally:
        netd.ctl("rm", "-f", "crashing", check=False)
        netd.ctl("network", "rm", "flaky", check=False)


@pytest.mark.root
def test_network_names_as_moby_takes_them(netd: Daemon) -> None:
    """Any name that is not blank, as moby's (docker-py's own tests make one with a space):
    one with a space, a '/' or 300 characters is made, used, inspected and removed, and
    kept across a daemon's restart; a blank one and Docker's predefined ones are refused."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    long_name = "n" * 300
    try:
        spaced = client.networks.create("my net")
        for name in ("a/b", long_name):
            assert client.networks.get(client.networks.create(name).id).name == name
        client.containers.run(
            "default", ["sleep", "300"], detach=True, name="web", network="my net"
        )
        resolve = "import socket; print(socket.gethostbyname('web'))"
        out = client.containers.run(
            "default", ["python3", "-c", resolve], remove=True, network="my net"
        )
        web = client.containers.get("web").attrs["NetworkSettings"]["Networks"]["my net"]
        assert out.decode().strip() == web["IPAddress"] != ""
        assert [n.name for n in client.networks.list(names=["my net"])] == [spaced.name]
        assert client.networks.get("a/b").name == "a/b"
        # docker-py's own test of a name with a space, and of a scope asked for.
        assert client.api.inspect_network("my net", scope="local")["Name"] == "my net"
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_network("my net", scope="swarm")
        client.networks.get("a/b").remove()
        for bad, status, message in [
            ("  ", 400, "invalid network name '  ': the name is empty"),
            ("a\0b", 400, "invalid network name 'a\\x00b': contains a NUL byte"),
            ("default", 403, "network name 'default' is reserved"),
        ]:
            with pytest.raises(docker.errors.APIError) as refused:
                client.networks.create(bad)
            assert refused.value.status_code == status and message in str(refused.value)
    finally:
        client.close()
    r = netd.ctl("network", "inspect", "-f", "{{.Name}}", "my net")
    assert r.stdout == "my net\n"
    assert netd.stop() == 0  # web runs on (live restore)
    netd.start()
    names = netd.ctl("network", "ls", "--format", "{{.Name}}").stdout.splitlines()
    assert sorted(names) == sorted(["bridge", "host", "none", "my net", long_name])
    r = netd.ctl("run", "--rm", "--network", "my net", "default", "python3", "-c", resolve)
    assert r.stdout.strip() == web["IPAddress"]
    # Named by a prefix of its id: the container is on it by its name, so network rm
    # sees it there (it did not, and removed the network under it).
    net_id = netd.ctl("network", "inspect", "-f", "{{.Id}}", "my net").stdout.strip()
    netd.ctl("run", "-d", "--name", "byid", "--network", net_id[:12], "default", "sleep", "300")
    assert list(endpoints(netd, "byid")) == ["my net"]
    netd.ctl("rm", "-f", "web")
    r = netd.ctl("network", "rm", "my net", check=False)
    assert r.returncode != 0 and "in use by container(s) byid" in r.stderr
    netd.ctl("rm", "-f", "byid")
    netd.ctl("network", "rm", "my net", long_name)


@pytest.mark.root
def test_a_network_id_names_its_network_before_another_named_so(netd: Daemon) -> None:
    """dockerd finds a network by its full id, then by name, then by a prefix of its id
    (moby's TestDockerNetworkDeletePreferID): boxd took the name first, and removed the
    network named as another's id instead of that other."""
    made = netd.ctl("network", "create", "pref1").stdout.strip()
    net_id = netd.ctl("network", "inspect", "-f", "{{.Id}}", made).stdout.strip()
    netd.ctl("network", "create", net_id[:12])
    netd.ctl("network", "create", net_id)
    try:
        netd.ctl("network", "rm", net_id[:12])  # the one named so, not pref1
        netd.ctl("network", "rm", net_id)  # pref1, not the one named so
        names = netd.ctl("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "pref1" not in names and net_id[:12] not in names and net_id in names
    finally:
        for name in ("pref1", net_id[:12], net_id):
            netd.ctl("network", "rm", name, check=False)


@pytest.mark.root
def test_network_list_filters_as_dockers(netd: Daemon) -> None:
    """Docker's network list filters, the same through the Engine API and boxctl (the
    daemon applies them): dangling (true or false), scope, type, name, every label; a
    bad key or value refused in Docker's words.  boxctl lists by name, as the docker CLI."""
    netd.ctl("network", "create", "--label", "a", "--label", "b", "net10")
    netd.ctl("network", "create", "--label", "a", "net9")
    netd.ctl("run", "-d", "--name", "on9", "--network", "net9", "default", "sleep", "300")

    def api(filters: dict[str, list[str]]) -> tuple[int, Any]:
        query = urllib.parse.quote(json.dumps(filters))
        status, _, data = docker_clients.api_call(netd, "GET", f"/networks?filters={query}")
        return status, json.loads(data)

    def cli(*filters: str) -> list[str]:
        args = [f"--filter={f}" for f in filters]
        return netd.ctl("network", "ls", *args, "--format", "{{.Name}}").stdout.splitlines()

    assert cli() == ["bridge", "host", "net9", "net10", "none"]
    for filters, names in [
        ({"dangling": ["true"]}, ["net10"]),
        ({"dangling": ["0"]}, ["bridge", "host", "net9", "none"]),
        ({"scope": ["local"], "type": ["custom"]}, ["net9", "net10"]),
        ({"label": ["a", "b"]}, ["net10"]),
        ({"label": ["a"], "name": ["^net"]}, ["net9", "net10"]),
    ]:
        status, found = api(filters)
        assert status == 200 and sorted(n["Name"] for n in found) == sorted(names)
        assert cli(*[f"{k}={v}" for k, vs in filters.items() for v in vs]) == names
    for filters, words in [
        ({"dangling": ["maybe"]}, "invalid value for filter 'dangling', must be \"true\""),
        ({"dangling": ["1", "0"]}, 'got more than one value for filter key "dangling"'),
        ({"type": ["foo"]}, "invalid filter: 'type'='foo'"),
        ({"colour": ["red"]}, "invalid filter 'colour'"),
    ]:
        status, error = api(filters)
        assert status == 400 and words in error["message"]
    r = netd.ctl("network", "ls", "-f", "dangling=maybe", check=False)
    assert r.returncode != 0 and "invalid value for filter 'dangling'" in r.stderr
    netd.ctl("rm", "-f", "on9")


@pytest.mark.root
def test_network_gateway(netd: Daemon) -> None:
    """An IPAM Gateway (docker-py, Compose's ``ipam.config.gateway``, boxctl --gateway) is
    the bridge's address and the containers' route and name server, an IPRange where
    addresses are picked; an AuxiliaryAddress outside the subnet is refused by name."""
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.67.0.0/24", gateway="10.67.0.254")]
        )
        net = client.networks.create("gw", ipam=ipam)
        assert net.attrs["IPAM"]["Config"] == [{"Subnet": "10.67.0.0/24", "Gateway": "10.67.0.254"}]
        script = "cat /etc/resolv.conf /proc/net/route"
        out = client.containers.run("default", ["sh", "-c", script], network="gw", remove=True)
        assert "nameserver 10.67.0.254" in out.decode()
        assert "\t00000000\tFE00430A\t" in out.decode()  # the default route, via .254
        # An IPRange: addresses picked there; one asked for anywhere in the subnet.
        pool = docker.types.IPAMPool(subnet="10.71.0.0/24", iprange="10.71.0.128/25")
        ranged = client.networks.create("ranged", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
        assert ranged.attrs["IPAM"]["Config"][0]["IPRange"] == "10.71.0.128/25"
        script = "ip -4 -o addr show eth0 | awk '{print $4}'"
        out = client.containers.run("default", ["sh", "-c", script], network="ranged", remove=True)
        assert out == b"10.71.0.128/24\n"
        ranged.remove()
        for pool, words in [
            (docker.types.IPAMPool(subnet="10.68.0.0/24", gateway="10.69.0.1"),
             "invalid gateway '10.69.0.1': not a host address of 10.68.0.0/24"),
            (docker.types.IPAMPool(subnet="10.68.0.0/24", iprange="10.69.0.0/25"),
             "invalid ip-range '10.69.0.0/25': not inside the subnet 10.68.0.0/24"),
            (docker.types.IPAMPool(subnet="10.68.0.0/24", aux_addresses={"a": "10.69.0.5"}),
             "invalid aux-address a=10.69.0.5: not in the network's subnet 10.68.0.0/24"),
            (docker.types.IPAMPool(gateway="10.68.0.1"),
             "invalid gateway '10.68.0.1': give the subnet it is in too"),
        ]:  # fmt: skip
            with pytest.raises(docker.errors.APIError) as refused:
                client.networks.create("bad", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
            assert refused.value.status_code == 400 and words in str(refused.value)
        subnet = ("--subnet", "10.70.0.0/24", "--gateway", "10.70.0.9")
        netd.ctl("network", "create", *subnet, "--ip-range", "10.70.0.64/26", "c")
        shown = json.loads(netd.ctl("network", "inspect", "c").stdout)[0]
        assert shown["IPAM"]["Config"] == [
            {"Subnet": "10.70.0.0/24", "IPRange": "10.70.0.64/26", "Gateway": "10.70.0.9"}
        ]
        for name in ("gw", "c"):
            client.networks.get(name).remove()
    finally:
        client.close()


@pytest.mark.root
def test_network_mtu_and_bridge_name(netd: Daemon, netns: str) -> None:
    """``network create -o com.docker.network.driver.mtu=N`` and ``...bridge.name=NAME``,
    which boxd refused: the bridge and both ends of each veth get the MTU, the bridge the
    name; inspect shows them; a bad MTU and a name in use are refused by name."""
    made = "com.docker.network.driver.mtu=1400", "com.docker.network.bridge.name=boxdtestbr0"
    netd.ctl("network", "create", "-o", made[0], "-o", made[1], "small")
    try:
        out = netd.ctl("run", "--rm", "--network", "small", "default", "sh", "-c",
                       "cat /sys/class/net/eth0/mtu").stdout  # fmt: skip
        assert out == "1400\n"
        bridge = subprocess.run(
            ["nsenter", f"--net={netns}", "ip", "-o", "link", "show", "boxdtestbr0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert " mtu 1400 " in bridge, bridge
        options = json.loads(netd.ctl("network", "inspect", "small").stdout)[0]["Options"]
        assert options == dict(o.split("=") for o in made)
        for opt, words in (
            ("com.docker.network.driver.mtu=10", "use an MTU of 68 to 65535"),
            ("com.docker.network.bridge.name=boxdtestbr0", "that interface exists"),
            ("com.docker.network.bridge.inhibit_ipv4=true", "is not supported by boxd"),
        ):
            r = netd.ctl("network", "create", "-o", opt, "other", check=False)
            assert r.returncode != 0 and words in r.stderr, r.stderr
    finally:
        netd.ctl("network", "rm", "small")


@pytest.mark.root
def test_network_binding_address_and_masquerade_options(netd: Daemon) -> None:
    """``-o com.docker.network.bridge.host_binding_ipv4=ADDR`` (compose's driver_opts,
    to publish on loopback only) and ``...enable_ip_masquerade=false``, as Docker's bridge
    driver takes them: a port published without an address is published on ADDR only; the
    network's subnet is not masqueraded; bad values refused by name."""
    ns = netd.netns
    binding = "com.docker.network.bridge.host_binding_ipv4"
    masquerade = "com.docker.network.bridge.enable_ip_masquerade"
    netd.ctl("network", "create", "--subnet", "10.45.0.0/24", "-o", f"{binding}=127.0.0.1",
             "-o", f"{masquerade}=false", "local")  # fmt: skip
    netd.ctl("run", "-d", "--name", "web", "--network", "local", "-p", "18087:80",
             "-p", f"{HOST_ADDRESS}:18088:80", "default", "python3", "-m", "http.server",
             "80")  # fmt: skip
    wait_listening(netd, "web", 80)
    assert netd.ctl("port", "web").stdout.splitlines() == [
        "80/tcp -> 127.0.0.1:18087",
        f"80/tcp -> {HOST_ADDRESS}:18088",
    ]
    assert fetch(ns, "tcp", "127.0.0.1", 18087) == "200"
    assert fetch(ns, "tcp", HOST_ADDRESS, 18088) == "200"
    assert inside(ns, "python3", "-c", CLIENT, "tcp", HOST_ADDRESS, "18087", check=False).returncode
    rules = nft_rules(ns)
    assert "10.45.0.0/24" not in rules.partition("chain postrouting")[2].partition("}")[0]
    for opt, words in (
        (f"{binding}=nowhere", f"invalid {binding} 'nowhere': use an IPv4 address"),
        (f"{masquerade}=maybe", f"invalid {masquerade} 'maybe': use true or false"),
        ("com.docker.network.bridge.nosuch=1", "network option 'com.docker.network.bridge"),
    ):
        r = netd.ctl("network", "create", "-o", opt, "other", check=False)
        assert r.returncode != 0 and words in r.stderr, r.stderr
    # An option Docker itself does not know is kept and shown, as dockerd's bridge driver
    # keeps it (moby's integration-cli TestAPINetworkInspectUserDefinedNetwork).
    netd.ctl("network", "create", "-o", "foo=bar", "kept")
    shown = json.loads(netd.ctl("network", "inspect", "kept").stdout)[0]["Options"]
    assert shown["foo"] == "bar"
    netd.ctl("network", "rm", "kept")
    netd.ctl("rm", "-f", "web")
    netd.ctl("network", "rm", "local")


@pytest.mark.root
def test_a_network_without_inter_container_communication(netd: Daemon) -> None:
    """``-o com.docker.network.bridge.enable_icc=false``, as Docker's bridge driver takes
    it (it was refused): its containers do not reach one another, a container connected
    later neither, while each still reaches its gateway (the host); on a network with it
    (true, or not given) they do; a bad value is refused by name."""
    icc = "com.docker.network.bridge.enable_icc"
    netd.ctl("network", "create", "--subnet", "10.46.0.0/24", "-o", f"{icc}=false", "apart")
    netd.ctl("network", "create", "--subnet", "10.47.0.0/24", "-o", f"{icc}=true", "along")
    server = ("default", "python3", "-m", "http.server", "80")
    netd.ctl("run", "-d", "--name", "srv", "--network", "apart", *server)
    netd.ctl("network", "connect", "along", "srv")
    wait_listening(netd, "srv", 80)
    shown = json.loads(netd.ctl("network", "inspect", "apart").stdout)[0]
    assert shown["Options"][icc] == "false"
    endpoints = netd.inspect("srv")["state"]["network"]["endpoints"]
    addresses = {e["network"]: e["ip_address"] for e in endpoints}
    probe = (
        "import socket, sys\n"
        "for address in sys.argv[1:]:\n"
        "    s = socket.socket()\n"
        "    s.settimeout(3)\n"
        "    print(s.connect_ex((address, 80)) == 0)\n"
    )
    netd.ctl("run", "-d", "--name", "peer", "--network", "apart", "default", "sleep", "300")
    r = netd.ctl("exec", "peer", "python3", "-c", probe, addresses["apart"])
    assert r.stdout.split() == ["False"]
    # The gateway still answers: the network's name server there.
    lookup = "import socket; print(socket.gethostbyname('srv'))"
    assert netd.ctl("exec", "peer", "python3", "-c", lookup).stdout == f"{addresses['apart']}\n"
    netd.ctl("network", "connect", "along", "peer")
    r = netd.ctl("exec", "peer", "python3", "-c", probe, addresses["along"], addresses["apart"])
    assert r.stdout.split() == ["True", "False"]
    r = netd.ctl("network", "create", "-o", f"{icc}=maybe", "other", check=False)
    assert r.returncode != 0 and f"invalid {icc} 'maybe': use true or false" in r.stderr
    netd.ctl("rm", "-f", "srv", "peer")
    netd.ctl("network", "rm", "apart", "along")


@pytest.mark.root
def test_the_daemons_icc_false(tmp_path: Path, netns: str) -> None:
    """``boxd --icc=false`` (daemon.json's ``icc``), as Docker's: the default network's
    containers do not reach one another (inspect shows its enable_icc false), each still
    reaches the host: a published port through it; a bad value is refused in argparse's
    words."""
    with running_daemon(tmp_path, "--icc=false", netns=netns) as d:
        server = ("default", "python3", "-m", "http.server", "80")
        d.ctl("run", "-d", "--name", "srv", "-p", "18090:80", *server)
        wait_listening(d, "srv", 80)
        shown = json.loads(d.ctl("network", "inspect", "bridge").stdout)[0]
        assert shown["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        gateway = shown["IPAM"]["Config"][0]["Gateway"]
        address = d.inspect("srv")["state"]["network"]["endpoints"][0]["ip_address"]
        probe = (
            "import socket, sys\n"
            "for where in sys.argv[1:]:\n"
            "    s = socket.socket()\n"
            "    s.settimeout(3)\n"
            "    host, port = where.split()\n"
            "    print(s.connect_ex((host, int(port))) == 0)\n"
        )
        wheres = (f"{address} 80", f"{gateway} 18090")
        r = d.ctl("run", "--rm", "default", "python3", "-c", probe, *wheres)
        assert r.stdout.split() == ["False", "True"]
        d.ctl("rm", "-f", "srv")
    r = subprocess.run(
        [sys.executable, "-m", "boxd", "--icc", "maybe"], capture_output=True, text=True,
        env=_env(), timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "invalid icc value: 'maybe'" in r.stderr


@pytest.mark.root
def test_the_daemons_network_options(tmp_path: Path, netns: str) -> None:
    """``boxd --mtu``, ``--bip`` and ``--default-address-pool`` (daemon.json's ``mtu``,
    ``bip``, ``default-address-pools``), as Docker's: the default bridge's and its
    containers' MTU, the bridge's address and subnet, where subnets are picked from (IPv6
    ones from an IPv6 pool)."""
    pool, pool6 = "base=10.98.0.0/16,size=24", "base=fd00:98::/56,size=64"
    with running_daemon(
        tmp_path, "--mtu", "1450", "--bip", "10.99.0.5/24", "--default-address-pool", pool,
        "--default-address-pool", pool6, netns=netns,
    ) as d:  # fmt: skip
        # --default-address-pool (daemon.json's default-address-pools): a user network's
        # subnet without --subnet; an IPv6 one's from the IPv6 pool.
        d.ctl("network", "create", "--ipv6", "pooled")
        pooled = json.loads(d.ctl("network", "inspect", "pooled").stdout)[0]["IPAM"]["Config"]
        assert [p["Subnet"] for p in pooled] == ["10.98.0.0/24", "fd00:98::/64"]
        d.ctl("network", "rm", "pooled")
        out = d.ctl("run", "--rm", "default", "cat", "/sys/class/net/eth0/mtu").stdout
        assert out == "1450\n"
        shown = json.loads(d.ctl("network", "inspect", "bridge").stdout)[0]
        assert shown["Options"]["com.docker.network.driver.mtu"] == "1450"
        # --bip (daemon.json's bip): the bridge's own address and the subnet.
        ipam = shown["IPAM"]["Config"][0]
        assert (ipam["Subnet"], ipam["Gateway"]) == ("10.99.0.0/24", "10.99.0.5")
        route = d.ctl("run", "--rm", "default", "ip", "route", "show", "default").stdout
        assert route.startswith("default via 10.99.0.5 "), route


@pytest.mark.root
def test_shared_and_host_network_names_as_dockers(netd: Daemon) -> None:
    """A ``--network container:NAME`` member takes NAME's host and domain names (its
    hostname, /etc/hostname, HOSTNAME, /etc/hosts, inspect) and refuses its own, its own
    hosts entries and exposed ports in Docker's words; ``--network host`` takes the host's
    name and a copy of its /etc/hosts (its own with ``--add-host``), as Docker's."""
    netd.ctl("run", "-d", "--name", "peer", "--hostname", "h1", "--domainname", "example.test",
             "default", "sleep", "300")  # fmt: skip
    show = "hostname; cat /etc/hostname; echo $HOSTNAME; cat /proc/sys/kernel/domainname"
    r = netd.ctl("run", "--rm", "--network", "container:peer", "default", "sh", "-c", show)
    assert r.stdout.split() == ["h1", "h1", "h1", "example.test"]
    netd.ctl("run", "-d", "--name", "member", "--network", "container:peer", "default",
             "sleep", "300")  # fmt: skip
    own = netd.ctl("exec", "member", "cat", "/etc/hosts").stdout.splitlines()
    peer = netd.inspect("peer")["state"]["network"]["endpoints"][0]["ip_address"]
    assert own[-1] == f"{peer}\th1.example.test h1"
    status, _, data = docker_clients.api_call(netd, "GET", "/containers/member/json")
    config = json.loads(data)["Config"]
    assert status == 200 and (config["Hostname"], config["Domainname"]) == ("h1", "example.test")
    # Kept by the other container's id, as Docker keeps it: a rename changes nothing.
    peer_id = netd.inspect("peer")["id"]
    assert json.loads(data)["HostConfig"]["NetworkMode"] == f"container:{peer_id}"
    netd.ctl("rename", "peer", "peer-old")
    netd.ctl("restart", "-t", "0", "member")
    assert netd.ctl("exec", "member", "hostname").stdout == "h1\n"
    for option, words in [
        (("--hostname", "x"), "conflicting options: hostname and the network mode"),
        (("--add-host", "a:192.0.2.9"), "custom host-to-IP mapping and the network mode"),
        (("--expose", "80"), "port exposing and the container type network mode"),
    ]:
        r = netd.ctl("run", "--rm", "--network", "container:peer", *option, "default", "true",
                     check=False)  # fmt: skip
        assert r.returncode == 125 and words in r.stderr

    r = netd.ctl("run", "--rm", "--network", "host", "default", "sh", "-c", "hostname; echo")
    assert r.stdout.split() == [socket.gethostname()]
    r = netd.ctl("run", "--rm", "--network", "host", "default", "cat", "/etc/hosts")
    assert r.stdout == Path("/etc/hosts").read_text()
    r = netd.ctl("run", "--rm", "--network", "host", "--add-host", "a:192.0.2.9",
                 "default", "cat", "/etc/hosts")  # fmt: skip
    assert r.stdout.startswith("127.0.0.1\tlocalhost\n") and r.stdout.endswith("192.0.2.9\ta\n")
    r = netd.ctl("run", "--rm", "--network", "host", "--hostname", "mine", "default", "hostname")
    assert r.stdout == "mine\n"
    netd.ctl("rm", "-f", "member", "peer-old")


@pytest.mark.root
def test_mac_addresses(netd: Daemon) -> None:
    """A MAC address asked for (docker-py's mac_address, --mac-address; an endpoint's at
    create or connect) is the interface's and inspect's; a bad one is refused by name."""
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{netd.docker_socket}", version="1.41")
    try:
        client.create_network("macs")
        c = client.create_container(
            "default", ["sleep", "300"], mac_address="02:42:AC:11:00:09", name="m"
        )
        client.connect_container_to_network(c, "macs", mac_address="02:00:00:00:00:42")
        at_rest = client.inspect_container(c)["NetworkSettings"]["Networks"]
        assert at_rest["macs"]["MacAddress"] == "02:00:00:00:00:42"
        client.start(c)
        netd.wait_for("m", lambda r: r["state"]["network"]["endpoints"])
        shown = client.inspect_container(c)["NetworkSettings"]
        assert shown["MacAddress"] == "02:42:ac:11:00:09"
        assert shown["Networks"]["macs"]["MacAddress"] == "02:00:00:00:00:42"
        r = netd.ctl("exec", "m", "cat", *(f"/sys/class/net/eth{i}/address" for i in (0, 1)))
        assert r.stdout == "02:42:ac:11:00:09\n02:00:00:00:00:42\n"
        # Other driver options are kept and shown, as Docker's (docker-py's own test).
        opts = client.create_container(
            "default", ["sleep", "300"], name="opts",
            networking_config=client.create_networking_config({
                "bridge": client.create_endpoint_config(driver_opt={"com.docker-py.x": "on"}),
            }),
            host_config=client.create_host_config(network_mode="bridge"),
        )  # fmt: skip
        client.start(opts)
        client.connect_container_to_network(opts, "macs", driver_opt={"k": "v"})
        shown = client.inspect_container(opts)["NetworkSettings"]["Networks"]
        assert shown["bridge"]["DriverOpts"] == {"com.docker-py.x": "on"}
        assert shown["macs"]["DriverOpts"] == {"k": "v"}
        client.remove_container(opts, force=True)
        for bad in ("02:42:ac:11:00", "01:00:5e:00:00:01"):  # short; multicast
            with pytest.raises(docker.errors.APIError) as refused:
                client.create_container("default", ["true"], mac_address=bad)
            assert f"{bad} is not a valid mac address" in str(refused.value)
        # None asked for: each network's inspect, the container's and the network's, shows
        # the MAC its interface there has, also on a network connected to while it runs.
        made = client.create_container("default", ["sleep", "300"], name="made")
        client.start(made)
        client.connect_container_to_network(made, "macs")
        netd.wait_for("made", lambda r: len(r["state"]["network"]["endpoints"]) == 2)
        r = netd.ctl("exec", "made", "cat", *(f"/sys/class/net/eth{i}/address" for i in (0, 1)))
        had = dict(zip(("bridge", "macs"), r.stdout.split(), strict=True))
        assert all(mac.startswith("02:42:") for mac in had.values())
        shown = client.inspect_container(made)["NetworkSettings"]
        assert shown["MacAddress"] == had["bridge"]
        assert {n: e["MacAddress"] for n, e in shown["Networks"].items()} == had
        for network, mac in had.items():
            members = client.inspect_network(network)["Containers"]
            assert members[made["Id"]]["MacAddress"] == mac
        assert client.inspect_network("macs")["Containers"][c["Id"]]["MacAddress"] == (
            "02:00:00:00:00:42"
        )
        if docker_clients.DOCKER is not None:
            shape = ("-f", "{{json .Containers}}")
            out = docker_clients.docker(netd, "network", "inspect", "bridge", *shape)
            assert json.loads(out.stdout)[made["Id"]]["MacAddress"] == had["bridge"]
        client.stop(made, timeout=0)
        assert client.inspect_network("macs")["Containers"][made["Id"]]["MacAddress"] == ""
        client.remove_container(made, force=True)
        client.remove_container(c, force=True)
        client.remove_network("macs")
    finally:
        client.close()


@pytest.mark.skipif(docker_clients.DOCKER is None, reason="the docker CLI is not on PATH")
def test_a_mac_per_endpoint_and_dns_names(netd: Daemon) -> None:
    """API 1.44: the docker CLI sends --mac-address as its network's endpoint's; inspect
    shows each user network's DNSNames (to a 1.44 client only)."""
    docker = pytest.importorskip("docker")

    def cli(*args: str) -> str:
        r = docker_clients.docker(netd, *args)
        assert r.returncode == 0, r.stderr
        return r.stdout

    cli("network", "create", "dn")
    cli("run", "-d", "--name", "web", "--network", "dn", "--network-alias", "www",
        "--mac-address", "02:00:00:00:00:44", "default", "sleep", "300")  # fmt: skip
    netd.wait_for("web", lambda r: r["state"]["network"]["endpoints"])
    assert cli("exec", "web", "cat", "/sys/class/net/eth0/address") == "02:00:00:00:00:44\n"
    shown = json.loads(cli("inspect", "web"))[0]
    endpoint = shown["NetworkSettings"]["Networks"]["dn"]
    assert endpoint["MacAddress"] == "02:00:00:00:00:44"
    assert endpoint["DNSNames"] == ["web", "www", shown["Id"][:12]]
    client = docker.APIClient(base_url=f"unix://{netd.docker_socket}", version="1.41")
    try:
        networks = client.inspect_container("web")["NetworkSettings"]["Networks"]
        assert "DNSNames" not in networks["dn"]
        # The container-wide MAC and its network's endpoint's must agree, as in Docker.
        body = {
            "Image": "default", "Cmd": ["true"], "MacAddress": "02:00:00:00:00:45",
            "HostConfig": {"NetworkMode": "dn"},
            "NetworkingConfig": {"EndpointsConfig": {"dn": {"MacAddress": "02:00:00:00:00:46"}}},
        }  # fmt: skip
        status, _, data = docker_clients.api_call(
            netd, "POST", "/containers/create", json.dumps(body).encode()
        )
        assert status == 400 and b"must match the endpoint-specific MAC address" in data
    finally:
        client.close()
    cli("rm", "-f", "web")
    cli("network", "rm", "dn")


def host_state(daemon: Daemon) -> dict[str, Any]:
    """What the daemon's namespace holds: links (without counters), addresses, routes, the
    whole nft ruleset, the conntrack table, and the default network's allocations."""
    ns = daemon.netns

    def ip_json(*args: str) -> Any:
        # IPv4 (boxd's): a bridge's IPv6 link-local routes come and go with its carrier.
        return json.loads(inside(ns, "ip", "-4", "-j", *args).stdout)

    # Not operstate: a bridge's follows its ports a moment later (the kernel's linkwatch).
    link_keys = ("ifname", "link_type", "address", "master", "mtu")
    conntrack = inside(ns, "cat", "/proc/net/nf_conntrack", check=False)
    return {
        "links": sorted(
            (tuple(str(link.get(k)) for k in link_keys) for link in ip_json("link", "show")),
        ),
        "addresses": sorted(
            (a["ifname"], i["local"], i["prefixlen"])
            for a in ip_json("addr", "show")
            for i in a["addr_info"]
        ),
        # Without flags: "linkdown" follows the bridge's carrier too.
        "routes": sorted(
            json.dumps({k: v for k, v in r.items() if k != "flags"}, sort_keys=True)
            for r in ip_json("route", "show", "table", "all")
        ),
        # Without handles: boxd's table is rebuilt whole, its rules numbered anew.
        "ruleset": [
            {kind: {k: v for k, v in body.items() if k != "handle"} for kind, body in i.items()}
            for i in json.loads(inside(ns, "nft", "-j", "list", "ruleset").stdout)["nftables"]
        ],
        # Each entry without its countdown (the fifth field: seconds it has left), and
        # not the bridges' own IGMP reports to 224.0.0.22 (the kernel's, when a port
        # comes up: they come and go on their own time).
        "conntrack": sorted(
            " ".join(words[:4] + words[5:])
            for words in (line.split() for line in conntrack.stdout.splitlines())
            if "dst=224.0.0.22" not in words
        )
        if conntrack.returncode == 0
        else None,
        "allocations": json.loads(daemon.ctl("network", "inspect", "bridge").stdout)[0][
            "Containers"
        ],
    }


@pytest.mark.root
@pytest.mark.slow
def test_hundred_runs_leave_the_host_as_it_was(netd: Daemon) -> None:
    """100 ``run --rm`` on the bridge with published ports (TCP and UDP, ephemeral host
    ports), four at a time: the namespace's links, addresses, routes, nftables ruleset,
    conntrack table and the address allocations are the same after as before (the bridge
    and boxd's table made by a first run)."""
    run = ("run", "--rm", "-p", "127.0.0.1::80", "-p", "81/udp", "default", "true")
    netd.ctl(*run)
    links_settle(netd.netns, ("bx",), [])
    before = host_state(netd)
    assert before["conntrack"] is not None, "no /proc/net/nf_conntrack in the namespace"
    loop = f"for i in $(seq 25); do {daemon_cli(netd)} {' '.join(run)} || exit 1; done"
    script = f"{loop} & {loop} & {loop} & {loop} & for j in 1 2 3 4; do wait -n || exit 1; done"
    subprocess.run(["bash", "-c", script], check=True, timeout=600)
    links_settle(netd.netns, ("bx",), [])
    after = host_state(netd)
    for key in before:
        assert after[key] == before[key], key


_PER_TEST_NETWORKS = """
import json, os, sys, boxd, trio

async def main():
    async with boxd.open_supervisor(sys.argv[1]) as sup:
        fds = len(os.listdir("/proc/self/fd"))
        for i in range(10):
            net = f"per-test-{i}"
            await sup.networks.create(net)
            config = boxd.ContainerConfig(image=sys.argv[2], command=("true",), network=net)
            c = await sup.run(config)
            assert await sup.wait(c.id) == 0
            await sup.remove(c.id)
            await sup.networks.remove(net, lambda name: [])
        print(json.dumps({
            "entries": len(sup.networks._names),
            "fds": len(os.listdir("/proc/self/fd")) - fds,
        }))

trio.run(main)
"""


@pytest.mark.root
def test_a_network_per_test_leaves_nothing_of_it(
    tmp_path: Path, netns: str, busybox_root: Path
) -> None:
    """A test suite's network per test (testcontainers' ``Network()``: a new name each
    time), a container on it, both removed: the supervisor keeps no entry of the network
    (every DNS query went through one per network ever used) and no fd of it (its DNS
    server's sockets)."""
    result = inside(
        netns,
        "env",
        f"PYTHONPATH={REPO}",
        sys.executable,
        "-c",
        _PER_TEST_NETWORKS,
        str(tmp_path / "lib"),
        str(busybox_root),
    )
    assert json.loads(result.stdout) == {"entries": 0, "fds": 0}


@pytest.mark.root
def test_daemon_refuses_a_bridge_subnet_over_a_host_route(tmp_path: Path, netns: str) -> None:
    """``boxd --bridge-subnet`` that overlaps a route of the host: the daemon does not
    start, and says which subnet overlaps which route; it made nothing."""
    inside(netns, "ip", "addr", "add", "10.123.4.1/24", "dev", "h0")
    r = subprocess.run(
        ["nsenter", f"--net={netns}", "--", sys.executable, "-m", "boxd",
         "--root", str(tmp_path / "root"), "--socket", str(tmp_path / "boxd.sock"),
         "--docker-socket", "", "--bridge-subnet", "10.123.0.0/16"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )  # fmt: skip
    assert r.returncode != 0
    assert "subnet 10.123.0.0/16 overlaps the host's route to 10.123.4.0/24 on h0" in r.stderr
    assert [n for n in links(netns) if n.startswith("boxd")] == []
    assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []


def test_network_counters_from_proc_net_dev() -> None:
    from boxd import _netcount

    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs"
        " drop fifo colls carrier compressed\n"
        "    lo:     120       2    0    0    0     0          0         0      120       2    0"
        "    0    0     0       0          0\n"
        "  eth0:    1340      16    1    2    0     0          0         0     1245      14    3"
        "    4    0     0       0          0\n"
    )
    assert _netcount.parse(text) == {"eth0": _netcount.Interface(1340, 16, 1, 2, 1245, 14, 3, 4)}
    assert _netcount.read(os.getpid()) == {}  # the host's network: none of its own


def test_ipv6_dns_answers_and_pool() -> None:
    """The embedded DNS answers A with a name's IPv4 addresses and AAAA with its IPv6 ones
    (ANY with both), a reverse query in ip6.arpa names the container; an IPv6 network
    without a subnet gets a /64 of the daemon's own unique local /48."""
    dnslib = pytest.importorskip("dnslib")
    from boxd import _dns

    names = _dns.Names(
        lambda name, client: ["10.9.0.2", "fd00:1::2"] if name == "web" else [],
        lambda address, client: "web.front" if address == "fd00:1::2" else "",
        lambda client: [],
    )

    def ask(name: str, kind: str) -> list[str]:
        query = dnslib.DNSRecord.question(name, kind).pack()
        reply = _dns.answer(bytes(query), names, "10.9.0.3")
        assert reply is not None
        return sorted(str(rr.rdata) for rr in dnslib.DNSRecord.parse(reply).rr)

    assert ask("web", "A") == ["10.9.0.2"]
    assert ask("web", "AAAA") == ["fd00:1::2"]
    assert ask("web", "ANY") == ["10.9.0.2", "fd00:1::2"]
    assert ask("web", "MX") == []  # a known name: NOERROR, no record
    reverse = ipaddress.IPv6Address("fd00:1::2").reverse_pointer
    assert ask(reverse, "PTR") == ["web.front."]
    assert _dns._reversed("1.2.ip6.arpa") == ""
    pool = _network.ula_pool(Path("/var/lib/boxd"))
    assert pool.prefixlen == 48 and pool.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert pool == _network.ula_pool(Path("/var/lib/boxd"))
    assert pool != _network.ula_pool(Path("/tmp/other-root"))


# Runs in a container: listens on its IPv6 address on port 80 (bound at its first
# instruction: an address still in duplicate address detection could not be bound), answers
# each connection with the address it came from.
V6_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6)
s.bind((sys.argv[1], 80))
s.listen()
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

V6_CLIENT = """
import socket, sys
found = socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET6, socket.SOCK_STREAM)
address = found[0][4][0]
s = socket.create_connection((address, 80), timeout=10)
print(address, s.recv(100).decode(), socket.gethostbyaddr(address)[0])
"""


@pytest.mark.root
def test_ipv6_networks(netd: Daemon) -> None:
    """Docker's --ipv6 networks (boxctl, docker-py): the bridge holds the IPv6 gateway,
    each container an IPv6 address usable at its first instruction (asked with --ip6, or
    the next free one), a default route through the gateway, its /etc/hosts line, and the
    DNS answers its name with AAAA; inspect shows it as Docker's.  Bad input is refused,
    naming the value."""
    v6 = ("--ipv6", "--subnet", "fd00:1::/64", "--subnet", "10.91.0.0/24")
    netd.ctl("network", "create", *v6, "--gateway", "fd00:1::fe", "dual")
    shown = json.loads(netd.ctl("network", "inspect", "dual").stdout)[0]
    assert shown["EnableIPv6"] is True
    assert shown["IPAM"]["Config"] == [
        {"Subnet": "10.91.0.0/24", "Gateway": "10.91.0.1"},
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe"},
    ]
    assert netd.ctl("network", "ls", "--format", "{{.Name}} {{.IPv6}}").stdout.count("dual true")
    netd.ctl("run", "-d", "--name", "web", "--network", "dual", "--ip6", "fd00:1::80",
             "default", "python3", "-c", V6_SERVER, "fd00:1::80")  # fmt: skip
    # The bridge (up with its first container) holds the gateway, usable at once.
    bridge = f"br-{shown['Id'][:12]}"
    out = inside(netd.netns, "ip", "-6", "-o", "addr", "show", "dev", bridge, "scope", "global")
    assert "fd00:1::fe/64" in out.stdout and "tentative" not in out.stdout
    r = netd.ctl("run", "--rm", "-h", "client", "--network", "dual", "default", "sh", "-c",
                 "ip -6 route show default; grep client /etc/hosts; python3 -c \"$0\" web",
                 V6_CLIENT)  # fmt: skip
    lines = r.stdout.splitlines()
    assert lines[0].startswith("default via fd00:1::fe dev eth0"), r.stdout
    assert [line.split()[0] for line in lines[1:3]] == ["10.91.0.3", "fd00:1::1"]
    assert lines[3] == "fd00:1::80 fd00:1::1 web.dual"  # the first free address: ::1
    ep = netd.inspect("web")["state"]["network"]["endpoints"][0]
    assert (ep["ipv6_address"], ep["ipv6_prefix_len"], ep["ipv6_gateway"]) == (
        "fd00:1::80", 64, "fd00:1::fe",
    )  # fmt: skip
    assert ep["ip_address"] == "10.91.0.2"  # and IPv4 still
    members = json.loads(netd.ctl("network", "inspect", "dual").stdout)[0]["Containers"]
    assert [m["IPv6Address"] for m in members.values()] == ["fd00:1::80/64"]

    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{netd.docker_socket}")
    try:
        settings = client.inspect_container("web")["NetworkSettings"]
        # Docker's top-level fields are its default bridge endpoint's: empty here.
        top = ("IPAddress", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway")
        assert [settings[k] for k in top] == ["", "", 0, ""]
        shown = settings["Networks"]["dual"]
        assert shown["IPAMConfig"] == {"IPv6Address": "fd00:1::80"}
        assert (shown["GlobalIPv6Address"], shown["GlobalIPv6PrefixLen"]) == ("fd00:1::80", 64)
        assert shown["IPv6Gateway"] == "fd00:1::fe"
        # docker-py: EnableIPv6 without an IPv6 subnet takes a /64 of the daemon's pool.
        made = client.create_network("pooled", enable_ipv6=True)
        pools = client.inspect_network(made["Id"])["IPAM"]["Config"]
        assert [ipaddress.ip_network(p["Subnet"]).version for p in pools] == [4, 6]
        assert ipaddress.ip_network(pools[1]["Subnet"]).prefixlen == 64
        c = client.create_container(
            "default", ["sleep", "300"], name="late",
            networking_config=client.create_networking_config(
                {"pooled": client.create_endpoint_config(ipv6_address=pools[1]["Gateway"])}
            ),
            host_config=client.create_host_config(network_mode="pooled"),
        )  # fmt: skip
        with pytest.raises(docker.errors.APIError) as refused:
            client.start(c)
        assert "is already in use" in str(refused.value)
        client.remove_container(c, force=True)
        # Hot-plugged: the address and, the container having no IPv6 before, the route.
        client.connect_container_to_network("web", "pooled")
        r = netd.ctl(
            "exec", "web", "sh", "-c", "ip -6 -o addr show dev eth1 scope global; ip -6 route"
        )
        assert " scope global " in r.stdout and "tentative" not in r.stdout
        assert "default via fd00:1::fe dev eth0" in r.stdout  # still its first network's
        client.disconnect_container_from_network("web", "pooled")
        client.remove_network(made["Id"])
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="fd00:7::/64", gateway="fd00:8::1")]
        )
        for kwargs, words in [
            ({"ipam": docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet="fd00:7::/64")])},
             "invalid subnet 'fd00:7::/64': an IPv6 subnet needs --ipv6 (EnableIPv6)"),
            ({"enable_ipv6": True, "ipam": ipam},
             "invalid gateway 'fd00:8::1': not a host address of fd00:7::/64"),
        ]:  # fmt: skip
            with pytest.raises(docker.errors.APIError) as refused:
                client.create_network("bad", **kwargs)
            assert refused.value.status_code == 400 and words in str(refused.value)
    finally:
        client.close()
    for args, words in [
        (("network", "create", "--ipv6", "--subnet", "fd00:1:0:0:8000::/65", "x"),
         "subnet fd00:1:0:0:8000::/65 overlaps network dual"),
        (("network", "create", "--ipv6", "--subnet", "fd00:2::/127", "x"),
         "invalid subnet 'fd00:2::/127': too small (at most /126)"),
        (("network", "create", "--ipv6", "--subnet", "fe80::/64", "x"),
         "it overlaps fe80::/10, link-local"),
        (("network", "create", "--ipv6", "-o", "com.docker.network.driver.mtu=1200", "x"),
         "invalid com.docker.network.driver.mtu 1200: an IPv6 network needs an MTU of at least"),
        (("network", "create", "--ipv6", "--subnet", "fd00:3::/64", "--subnet", "fd00:4::/64",
          "x"), "invalid --subnet 'fd00:4::/64': one IPv6 --subnet per network"),
        (("run", "--network", "dual", "--ip6", "fd00:9::1", "default", "true"),
         "invalid --ip6 fd00:9::1: not an address of dual's fd00:1::/64"),
        (("run", "--network", "dual", "--ip6", "10.91.0.9", "default", "true"),
         "invalid --ip6 '10.91.0.9': use an IPv6 address"),
        (("run", "--ip6", "fd00:1::9", "default", "true"),
         "invalid --ip6 'fd00:1::9': user specified IP address is supported on user defined"),
    ]:  # fmt: skip
        r = netd.ctl(*args, check=False)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
    # --ip6 on a network without IPv6: refused, and its IPv4 address there not kept.
    netd.ctl("network", "create", "v4only")
    r = netd.ctl("network", "connect", "--ip6", "fd00:1::9", "v4only", "web", check=False)
    assert "invalid --ip6 fd00:1::9: network v4only has no IPv6 (see --ipv6)" in r.stderr
    assert json.loads(netd.ctl("network", "inspect", "v4only").stdout)[0]["Containers"] == {}
    # IPv6 turned off in the container (--sysctl, as Docker sees it on its loopback): an
    # IPv4 address only, as Docker's; --ip6 then refused.
    off = ("--sysctl", "net.ipv6.conf.all.disable_ipv6=1", "--network", "dual")
    r = netd.ctl("run", "--rm", "-h", "nov6", *off, "default", "sh", "-c",
                 "ip -6 -o addr show scope global; cat /etc/hosts")  # fmt: skip
    assert "fd00:1:" not in r.stdout and "10.91.0." in r.stdout, r.stdout
    r = netd.ctl("run", *off, "--ip6", "fd00:1::99", "default", "true", check=False)
    assert "invalid --ip6 fd00:1::99: the container's IPv6 is turned off" in r.stderr
    netd.remove_containers()  # web, and those the refused starts above made
    netd.ctl("network", "rm", "dual", "v4only")


# Runs in the test's second namespace (the world beyond the daemon's): answers each TCP
# connection on [::]:8099 with the address it came from.
V6_PEER = """
import socket
s = socket.socket(socket.AF_INET6)
s.bind(("::", 8099))
s.listen()
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

# Runs in a container: connects to argv[1] port argv[2], prints what it answers or "no".
V6_DIAL = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print(s.recv(100).decode())
except OSError:
    print("no")
"""


@pytest.mark.root
def test_ipv6_ip_range(netd: Daemon) -> None:
    """``--ip-range`` for each family (Docker's IPAM IPRange in the IPv6 pool too): a
    container's IPv6 address is picked from the network's IPv6 range, which inspect shows;
    a range outside its subnet, without one, or a second of a family is refused."""
    netd.ctl("network", "create", "--ipv6", "--subnet", "10.93.0.0/24", "--subnet",
             "fd00:93::/64", "--ip-range", "fd00:93::100/120", "--ip-range", "10.93.0.64/26",
             "r6")  # fmt: skip
    shown = json.loads(netd.ctl("network", "inspect", "r6").stdout)[0]
    assert shown["IPAM"]["Config"] == [
        {"Subnet": "10.93.0.0/24", "IPRange": "10.93.0.64/26", "Gateway": "10.93.0.1"},
        {"Subnet": "fd00:93::/64", "IPRange": "fd00:93::100/120", "Gateway": "fd00:93::1"},
    ]
    script = "ip -o addr show eth0 scope global | awk '{print $4}'"
    out = netd.ctl("run", "--rm", "--network", "r6", "default", "sh", "-c", script).stdout
    assert out.split() == ["10.93.0.64/24", "fd00:93::100/64"]
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{netd.docker_socket}")
    try:
        pool = docker.types.IPAMPool(subnet="fd00:94::/64", iprange="fd00:94::8:0/112")
        made = client.create_network(
            "py6", enable_ipv6=True, ipam=docker.types.IPAMConfig(pool_configs=[pool])
        )
        (_, pool6) = client.inspect_network(made["Id"])["IPAM"]["Config"]
        assert pool6 == {"Subnet": "fd00:94::/64", "IPRange": "fd00:94::8:0/112",
                         "Gateway": "fd00:94::1"}  # fmt: skip
        client.remove_network(made["Id"])
    finally:
        client.close()
    for args, words in [
        (("--subnet", "fd00:95::/64", "--ip-range", "fd00:96::/120"),
         "invalid ip-range 'fd00:96::/120': not inside the subnet fd00:95::/64"),
        (("--ip-range", "fd00:96::/120"),
         "invalid ip-range 'fd00:96::/120': give the subnet it is in too"),
        (("--subnet", "fd00:95::/64", "--ip-range", "fd00:95::/120", "--ip-range",
          "fd00:95::1:0/120"),
         "invalid --ip-range 'fd00:95::1:0/120': one IPv6 --ip-range per network"),
    ]:  # fmt: skip
        r = netd.ctl("network", "create", "--ipv6", *args, "x", check=False)
        assert r.returncode != 0 and words in r.stderr, r.stderr
    netd.ctl("network", "rm", "r6")


@pytest.mark.root
def test_several_networks_at_run_and_their_fields(netd: Daemon) -> None:
    """``run --network A --network B`` joins both, as Docker 25's CLI does (boxctl kept the
    last alone), and ``--network name=NET,alias=..,ip=..,mac-address=..,driver-opt=K=V``
    sets that network's endpoint (boxctl took it for a network's name); ``network connect
    --driver-opt``.  Each bad combination gets the docker CLI's words, exit 125."""
    for n in (1, 2):
        netd.ctl("network", "create", "--subnet", f"10.8{n}.0.0/24", f"m{n}")
    netd.ctl("run", "-d", "--name", "multi", "--network", "name=m1,alias=web,alias=www",
             "--network", "name=m2,alias=api,ip=10.82.0.50,mac-address=02:42:ac:1e:00:99,"
             "driver-opt=com.example.opt=1", "default", "sleep", "60")  # fmt: skip
    shown = json.loads(netd.ctl("inspect", "multi").stdout)[0]
    assert shown["HostConfig"]["NetworkMode"] == "m1"
    nets = shown["NetworkSettings"]["Networks"]
    assert list(nets) == ["m1", "m2"]
    assert nets["m1"]["Aliases"][:2] == ["web", "www"] and nets["m2"]["Aliases"][0] == "api"
    assert (nets["m2"]["MacAddress"], nets["m2"]["DriverOpts"]) == (
        "02:42:ac:1e:00:99", {"com.example.opt": "1"}
    )  # fmt: skip
    address = nets["m2"]["IPAddress"]
    for net, name, found in (("m2", "api", address), ("m1", "www", nets["m1"]["IPAddress"])):
        out = netd.ctl("run", "--rm", "--network", net, "default", "getent", "hosts", name)
        assert out.stdout.split()[0] == found, (net, out.stdout)
    out = netd.ctl("run", "--rm", "--network", "m1", "--network", "m2", "--ip", "10.81.0.40",
                   "default", "sh", "-c", "cat /sys/class/net/eth*/address | wc -l; "
                   "ip -o -4 addr show eth0 | awk '{print $4}'")  # fmt: skip
    assert out.stdout.split() == ["2", "10.81.0.40/24"], out.stdout  # --ip: the first's
    c = netd.ctl("run", "-d", "--network", "m1", "default", "sleep", "60").stdout.strip()
    netd.ctl("network", "connect", "--driver-opt", "com.example.a=1,com.example.b=2", "m2", c)
    opts = json.loads(netd.ctl("inspect", c).stdout)[0]["NetworkSettings"]["Networks"]["m2"]
    assert opts["DriverOpts"] == {"com.example.a": "1", "com.example.b": "2"}
    bad = [
        (("--network", "bridge", "--network", "m1"),
         "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
        (("--network", "m1", "--network", "m1"), 'network "m1" is specified multiple times'),
        (("--network", "name=m1,alias=a", "--network-alias", "b"),
         "conflicting options: cannot specify both --network-alias and per-network alias"),
        (("--network", "name=m1,ip=10.81.0.9", "--ip", "10.81.0.8"),
         "conflicting options: cannot specify both --ip and per-network IPv4 address"),
        (("--network", "name=m1,foo=1"),
         'invalid argument "name=m1,foo=1" for "--network" flag: invalid field key foo'),
        (("--network", "alias=x"),
         'invalid argument "alias=x" for "--network" flag: network name/id is not specified'),
        (("--network", "name=bridge,ip=172.17.0.9"),
         "user specified IP address is supported on user defined networks only"),
        (("--network", "name=m1,driver-opt=com.docker.network.endpoint.ifname=a/b"),
         "com.docker.network.endpoint.ifname: invalid interface name 'a/b'"),
        (("--network", "name=m1,gw-priority=high"),
         'for "--network" flag: invalid gw-priority (high): invalid syntax'),
        (("--network", "name=m1,link-local-ip=169.254.1.1", "--link-local-ip", "169.254.1.2"),
         "conflicting options: cannot specify both --link-local-ip and per-network link-local"
         " IP addresses"),
        (("--link-local-ip", "10.81.0.7"), "invalid link-local IP address: '10.81.0.7'"),
        (("--network", "host", "--link-local-ip", "169.254.1.1"),
         "the container's network is 'host': it cannot have an address or MAC of its own"),
    ]  # fmt: skip
    for args, words in bad:
        r = netd.ctl("run", "--rm", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, (args, r.returncode, r.stderr)
        if docker_clients.DOCKER is not None and "boxd" not in words:
            r = docker_in(netd, "run", "--rm", *args, "default", "true")
            assert r.returncode == 125 and words in r.stderr, (args, r.stderr)
    r = netd.ctl("network", "connect", "--driver-opt", "nokey", "m2", "multi", check=False)
    assert r.returncode == 1 and "invalid --driver-opt 'nokey': use KEY=VALUE" in r.stderr
    netd.ctl("rm", "-f", "multi", c)
    for name in ("m1", "m2"):
        netd.ctl("network", "rm", name)


@pytest.mark.root
def test_link_local_addresses(netd: Daemon) -> None:
    """``--link-local-ip`` (run, the ``--network`` field, ``network connect``; the Engine
    API's IPAMConfig.LinkLocalIPs, from the docker CLI and docker-py), which boxd refused:
    more addresses of the container's interface on that network, /16 or /64 as moby gives
    them, kept across a restart and shown by inspect."""
    netd.ctl("network", "create", "--subnet", "10.83.0.0/24", "ll")

    def addresses(ref: str, interface: str) -> list[str]:
        script = f"ip -o addr show {interface} | awk '{{print $4}}'"
        return netd.ctl("exec", ref, "sh", "-c", script).stdout.split()

    c = netd.ctl("run", "-d", "--link-local-ip", "169.254.10.1", "--link-local-ip", "fe80::a1",
                 "default", "sleep", "60").stdout.strip()  # fmt: skip
    bridge = endpoints(netd, c)["bridge"]
    own = f"{bridge['ip_address']}/{bridge['prefix_len']}"
    assert {own, "169.254.10.1/16", "fe80::a1/64"} <= set(addresses(c, "eth0"))
    netd.ctl("network", "connect", "--link-local-ip", "169.254.10.2", "ll", c)
    ll = endpoints(netd, c)["ll"]["ip_address"]
    assert {f"{ll}/24", "169.254.10.2/16"} <= set(addresses(c, "eth1"))
    netd.ctl("restart", "-t", "0", c)  # each made again by the spawn's path
    assert {own, "169.254.10.1/16", "fe80::a1/64"} <= set(addresses(c, "eth0"))
    assert {f"{ll}/24", "169.254.10.2/16"} <= set(addresses(c, "eth1"))
    nets = json.loads(netd.ctl("inspect", c).stdout)[0]["NetworkSettings"]["Networks"]
    assert nets["bridge"]["IPAMConfig"] == {"LinkLocalIPs": ["169.254.10.1", "fe80::a1"]}
    assert nets["ll"]["IPAMConfig"] == {"LinkLocalIPs": ["169.254.10.2"]}
    field = netd.ctl("run", "--rm", "--network", "name=ll,link-local-ip=169.254.10.3", "default",
                     "ip", "-o", "-4", "addr", "show", "eth0").stdout  # fmt: skip
    assert "169.254.10.3/16" in field
    r = netd.ctl("network", "connect", "--link-local-ip", "10.83.0.9", "ll", c, check=False)
    assert r.returncode == 1 and "invalid link-local IP address: '10.83.0.9'" in r.stderr
    r = netd.ctl("run", "--rm", "--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
                 "--link-local-ip", "fe80::a2", "default", "true", check=False)  # fmt: skip
    assert "invalid --link-local-ip fe80::a2: the container's IPv6 is turned off" in r.stderr
    if docker_clients.DOCKER is not None:
        r = docker_in(netd, "run", "--rm", "--network", "ll", "--link-local-ip", "169.254.10.4",
                      "default", "ip", "-o", "-4", "addr", "show", "eth0")  # fmt: skip
        assert r.returncode == 0 and "169.254.10.4/16" in r.stdout, r.stderr
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{netd.docker_socket}")
    try:
        other = client.containers.run("default", ["sleep", "60"], detach=True)
        client.networks.get("ll").connect(other, link_local_ips=["169.254.10.5"])
        other.reload()
        shown = other.attrs["NetworkSettings"]["Networks"]["ll"]["IPAMConfig"]
        assert shown == {"LinkLocalIPs": ["169.254.10.5"]}
        assert "169.254.10.5/16" in other.exec_run(["ip", "-o", "addr", "show", "eth1"])[1].decode()
        other.remove(force=True)
    finally:
        client.close()
    netd.ctl("rm", "-f", c)
    netd.ctl("network", "rm", "ll")


def _routes(daemon: Daemon, ref: str) -> tuple[str, str]:
    """The gateways of a running container's IPv4 and IPv6 default routes ("": none)."""
    script = "ip -4 route show default; ip -6 route show default"
    out = daemon.ctl("exec", ref, "sh", "-c", script).stdout.split("\n")
    gateways = [line.split()[2] for line in out if line.startswith("default via ")]
    four = next((g for g in gateways if ":" not in g), "")
    return four, next((g for g in gateways if ":" in g), "")


@pytest.mark.root
def test_gw_priority_chooses_the_network_that_routes(netd: Daemon, netns: str) -> None:
    """Docker 28's gw-priority (``--network name=N,gw-priority=P``, ``network connect
    --gw-priority P``, an endpoint's GwPriority): of the networks that are not internal,
    the one of the highest routes the container by default (each family) and holds its
    published ports; a tie keeps the first.  A connect of a higher one moves both, a
    disconnect of it moves them back (ports too, as Docker moves a sandbox's external
    connectivity); inspect shows each endpoint's priority, and a restart keeps it."""
    netd.ctl("network", "create", "--subnet", "10.77.1.0/24", "g1")
    netd.ctl("network", "create", "--ipv6", "--subnet", "10.77.2.0/24", "--subnet",
             "fd00:77:2::/64", "g2")  # fmt: skip
    netd.ctl("network", "create", "--subnet", "10.77.3.0/24", "g3")
    netd.ctl("run", "-d", "--name", "gw", "-p", "18777:80", "--network", "g1", "--network",
             "name=g2,gw-priority=5", "default", "python3", "-m", "http.server", "80")  # fmt: skip
    wait_listening(netd, "gw", 80)
    assert _routes(netd, "gw") == ("10.77.2.1", "fd00:77:2::1")
    assert fetch(netns, "tcp", "127.0.0.1", 18777) == "200"  # the relay, to its g2 address
    shown = json.loads(netd.ctl("inspect", "gw").stdout)[0]
    nets = shown["NetworkSettings"]["Networks"]
    assert (nets["g1"]["GwPriority"], nets["g2"]["GwPriority"]) == (0, 5)
    forwards = nft_rules(netns)
    assert "dnat to 10.77.2.2" in forwards and "dnat to 10.77.1." not in forwards, forwards
    netd.ctl("network", "connect", "--gw-priority", "9", "g3", "gw")
    assert _routes(netd, "gw") == ("10.77.3.1", "fd00:77:2::1")  # g3 has no IPv6
    forwards = nft_rules(netns)
    assert "dnat to 10.77.3.2" in forwards and "dnat to 10.77.2." not in forwards, forwards
    for _ in range(2):  # relayed to its g3 address now, the port bound throughout
        assert fetch(netns, "tcp", "127.0.0.1", 18777) == "200"
    netd.ctl("network", "disconnect", "g3", "gw")  # the route and the ports: back to g2
    assert _routes(netd, "gw")[0] == "10.77.2.1"
    forwards = nft_rules(netns)
    assert "dnat to 10.77.2.2" in forwards and "dnat to 10.77.3." not in forwards, forwards
    assert fetch(netns, "tcp", "127.0.0.1", 18777) == "200"
    netd.ctl("network", "connect", "g3", "gw")  # priority 0: routes nothing
    assert _routes(netd, "gw")[0] == "10.77.2.1"
    netd.ctl("restart", "-t", "1", "gw")
    assert _routes(netd, "gw")[0] == "10.77.2.1"
    netd.ctl("rm", "-f", "gw")
    for name in ("g1", "g2", "g3"):
        netd.ctl("network", "rm", name)


@pytest.mark.root
def test_auxiliary_addresses_and_attachable(netd: Daemon) -> None:
    """``--aux-address NAME=IP`` (IPAM's AuxiliaryAddresses, compose's ``aux_addresses``,
    which boxd refused): addresses of a subnet that no container is given, nor may ask for
    with ``--ip``, shown by inspect in their pool; ``--attachable`` is kept and shown (it
    was always false).  The docker CLI and docker-py get the same; each bad address is
    refused naming it, nothing made."""
    netd.ctl("network", "create", "--ipv6", "--subnet", "10.92.0.0/29", "--subnet",
             "fd00:92::/125", "--aux-address", "router=10.92.0.2", "--aux-address",
             "printer=10.92.0.3", "--aux-address", "router=fd00:92::2", "--attachable",
             "aux")  # fmt: skip
    shown = json.loads(netd.ctl("network", "inspect", "aux").stdout)[0]
    assert shown["IPAM"]["Config"] == [
        {"Subnet": "10.92.0.0/29", "Gateway": "10.92.0.1",
         "AuxiliaryAddresses": {"router": "10.92.0.2", "printer": "10.92.0.3"}},
        {"Subnet": "fd00:92::/125", "Gateway": "fd00:92::1",
         "AuxiliaryAddresses": {"router": "fd00:92::2"}},
    ]  # fmt: skip
    assert shown["Attachable"] is True
    script = "ip -o addr show eth0 scope global | awk '{print $4}'"
    out = netd.ctl("run", "--rm", "--network", "aux", "default", "sh", "-c", script).stdout
    assert out.split() == ["10.92.0.4/29", "fd00:92::3/125"]
    for flag, address in (("--ip", "10.92.0.3"), ("--ip6", "fd00:92::2")):
        r = netd.ctl("run", "--rm", "--network", "aux", flag, address, "default", "true",
                     check=False)  # fmt: skip
        assert r.returncode == 125, r.stderr
        assert f"address {address} on network aux is already in use" in r.stderr, r.stderr
    for args, words in [
        (("--subnet", "10.92.1.0/24", "--aux-address", "a=10.92.2.5"),
         "invalid aux-address a=10.92.2.5: not in the network's subnet 10.92.1.0/24"),
        (("--subnet", "10.92.1.0/24", "--aux-address", "a=10.92.1.1"),
         "invalid aux-address a=10.92.1.1: that address is the gateway"),
        (("--subnet", "10.92.1.0/24", "--aux-address", "a=10.92.1.9", "--aux-address",
          "b=10.92.1.9"), "invalid aux-address b=10.92.1.9: that address is another's"),
        (("--subnet", "10.92.1.0/24", "--aux-address", "a=10.92.1.255"),
         "invalid aux-address a=10.92.1.255: not a host address of 10.92.1.0/24"),
        (("--subnet", "10.92.1.0/24", "--aux-address", "a=fd00::5"),
         "invalid aux-address a=fd00::5: the network has no IPv6 subnet"),
        (("--aux-address", "a=nowhere"), "invalid aux-address a=nowhere: not an IP address"),
        (("--aux-address", "10.92.1.9"), "invalid --aux-address '10.92.1.9': use NAME=IP"),
        (("--aux-address", "a=10.92.1.9", "--aux-address", "a=10.92.1.10"),
         "invalid --aux-address 'a=10.92.1.10': a is given twice"),
    ]:  # fmt: skip
        r = netd.ctl("network", "create", *args, "bad", check=False)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
    assert "bad" not in netd.ctl("network", "ls", "--format", "{{.Name}}").stdout.split()
    if docker_clients.DOCKER is not None:
        r = docker_in(netd, "network", "create", "--subnet", "10.92.3.0/24", "--aux-address",
                      "gw2=10.92.3.254", "--attachable", "dk")  # fmt: skip
        assert r.returncode == 0, r.stderr
        r = docker_in(netd, "network", "inspect", "-f",
                      "{{json .IPAM.Config}} {{.Attachable}}", "dk")  # fmt: skip
        pools = '[{"Subnet":"10.92.3.0/24","Gateway":"10.92.3.1",'
        assert r.stdout == pools + '"AuxiliaryAddresses":{"gw2":"10.92.3.254"}}] true\n'
        netd.ctl("network", "rm", "dk")
    docker = pytest.importorskip("docker")
    client = docker.APIClient(base_url=f"unix://{netd.docker_socket}")
    try:
        pool = docker.types.IPAMPool(subnet="10.92.4.0/24", aux_addresses={"nas": "10.92.4.2"})
        made = client.create_network("py", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
        (config,) = client.inspect_network(made["Id"])["IPAM"]["Config"]
        assert config["AuxiliaryAddresses"] == {"nas": "10.92.4.2"}
        client.remove_network(made["Id"])
        bad = docker.types.IPAMPool(subnet="10.92.5.0/24", aux_addresses={"nas": "10.92.6.2"})
        with pytest.raises(docker.errors.APIError, match="not in the network's subnet"):
            client.create_network("py", ipam=docker.types.IPAMConfig(pool_configs=[bad]))
    finally:
        client.close()
    netd.ctl("network", "rm", "aux")


def docker_in(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """The docker CLI against ``daemon``, run in its network namespace."""
    assert docker_clients.DOCKER is not None
    return subprocess.run(
        ["nsenter", f"--net={daemon.netns}", "--", docker_clients.DOCKER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=docker_clients.docker_env(daemon),
    )


@pytest.mark.root
@docker_clients.needs_cli
def test_ipv6_as_an_option(netd: Daemon) -> None:
    """Docker's ``-o com.docker.network.enable_ipv6=true`` makes a dual-stack network (kept
    among its options, as Docker's; EnableIPv6 given wins over it); inspect shows
    ``EnableIPv4``."""
    r = docker_in(netd, "network", "create", "-o", "com.docker.network.enable_ipv6=true", "v6o")
    assert r.returncode == 0, r.stderr
    shown = json.loads(docker_in(netd, "network", "inspect", "v6o").stdout)[0]
    assert (shown["EnableIPv4"], shown["EnableIPv6"]) == (True, True)
    assert [ipaddress.ip_network(p["Subnet"]).version for p in shown["IPAM"]["Config"]] == [4, 6]
    assert shown["Options"] == {"com.docker.network.enable_ipv6": "true"}
    body = {"Name": "off", "EnableIPv6": False, "Options": {"com.docker.network.enable_ipv6": "1"}}
    status, _, answer = docker_clients.api_call(
        netd, "POST", "/networks/create", json.dumps(body).encode()
    )
    assert status == 201, answer
    shown = json.loads(netd.ctl("network", "inspect", "off").stdout)[0]
    assert (shown["EnableIPv6"], shown["Options"]) == (False, {})
    r = netd.ctl("network", "create", "-o", "com.docker.network.enable_ipv6=maybe", "x",
                 check=False)  # fmt: skip
    words = "invalid com.docker.network.enable_ipv6 'maybe': use true or false"
    assert r.returncode != 0 and words in r.stderr
    assert netd.ctl("network", "ls", "-q", "-f", "name=x").stdout == ""
    netd.ctl("network", "rm", "v6o", "off")


# Runs in a container: resolves argv[1] (either family), prints the address and what a
# connection to its port 80 answers.
DIAL6 = """
import socket, sys
address = socket.getaddrinfo(sys.argv[1], 80, type=socket.SOCK_STREAM)[0][4][0]
print(address)
print(socket.create_connection((address, 80), timeout=10).recv(100).decode())
"""


@pytest.mark.root
def test_ipv6_only_networks(netd: Daemon) -> None:
    """Docker 28's IPv6-only networks (``--ipv6 --ipv4=false``, the Engine API's
    ``EnableIPv4: false``, ``-o com.docker.network.enable_ipv4=false``): the container has
    IPv6 addresses only, its name server is the network's DNS on the IPv6 gateway, its
    published ports are forwarded to its IPv6 address (DNAT on IPv6, the relay from IPv4);
    what it cannot have is refused by name."""
    ns = netd.netns
    inside(ns, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "h0", "nodad")
    netd.ctl("network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd00:71::/64", "only6")
    shown = json.loads(netd.ctl("network", "inspect", "only6").stdout)[0]
    assert (shown["EnableIPv4"], shown["EnableIPv6"]) == (False, True)
    assert shown["IPAM"]["Config"] == [{"Subnet": "fd00:71::/64", "Gateway": "fd00:71::1"}]
    netd.ctl("run", "-d", "--name", "srv", "--network", "only6", "-p", "18210:80", "default",
             "python3", "-c", DUAL_SERVER)  # fmt: skip
    wait_listening(netd, "srv", 80)
    script = (
        "ip -4 -o addr show scope global; ip -6 -o addr show eth0 scope global | "
        "awk '{print $4}'; grep nameserver /etc/resolv.conf; python3 -c \"$0\" srv"
    )
    r = netd.ctl("run", "--rm", "--network", "only6", "default", "sh", "-c", script, DIAL6)
    assert r.stdout.splitlines() == [
        "fd00:71::3/64", "nameserver fd00:71::1", "fd00:71::2", "v6 fd00:71::3",
    ]  # fmt: skip

    def dial(host: str) -> str:
        return inside(ns, "python3", "-c", DIAL, host, "18210").stdout.strip()

    assert dial("2001:db8:1::1") == "v6 2001:db8:1::1"  # DNAT to its IPv6 address
    assert dial("::1") == "v6 fd00:71::1"  # the relay
    assert dial("127.0.0.1") == "v6 fd00:71::1"  # IPv4: relayed to its IPv6 address
    assert dial(HOST_ADDRESS) == "v6 fd00:71::1"
    settings = json.loads(netd.ctl("inspect", "-f", "{{json .NetworkSettings}}", "srv").stdout)
    ep = settings["Networks"]["only6"]
    assert (ep["IPAddress"], ep["GlobalIPv6Address"], ep["IPv6Gateway"]) == (
        "", "fd00:71::2", "fd00:71::1",
    )  # fmt: skip
    assert ep["EndpointID"] != ""
    members = json.loads(netd.ctl("network", "inspect", "only6").stdout)[0]["Containers"]
    assert [(m["IPv4Address"], m["IPv6Address"]) for m in members.values()] == [
        ("", "fd00:71::2/64")
    ]
    # The Engine API's EnableIPv4 and the option.
    body = {"Name": "api6", "EnableIPv6": True, "EnableIPv4": False}
    status, _, answer = docker_clients.api_call(
        netd, "POST", "/networks/create", json.dumps(body).encode()
    )
    assert status == 201, answer
    netd.ctl("network", "create", "--ipv6", "-o", "com.docker.network.enable_ipv4=false", "opt6")
    names = ["api6", "opt6"]
    if docker_clients.DOCKER is not None:  # the docker CLI sends it (API 1.48)
        r = docker_in(netd, "network", "create", "--ipv6", "--ipv4=false", "cli6")
        assert r.returncode == 0, r.stderr
        names.append("cli6")
    for name in names:
        pools = json.loads(netd.ctl("network", "inspect", name).stdout)[0]["IPAM"]["Config"]
        assert [ipaddress.ip_network(p["Subnet"]).version for p in pools] == [6]
    for args, words in [
        (("network", "create", "--ipv4=false", "x"),
         "invalid EnableIPv4 false (--ipv4=false): a network without IPv4 needs IPv6 (--ipv6)"),
        (("network", "create", "--ipv6", "--ipv4=false", "--subnet", "10.71.0.0/24", "x"),
         "invalid subnet '10.71.0.0/24': the network has no IPv4 (EnableIPv4 false)"),
        (("run", "--network", "only6", "--ip", "10.71.0.5", "default", "true"),
         "invalid --ip 10.71.0.5: network only6 has no IPv4 (EnableIPv4 false)"),
        (("run", "--network", "only6", "--sysctl", "net.ipv6.conf.all.disable_ipv6=1",
          "default", "true"),
         "network only6 is IPv6-only and the container's IPv6 is turned off"),
    ]:  # fmt: skip
        r = netd.ctl(*args, check=False)
        assert r.returncode != 0 and words in r.stderr, r.stderr
    # A member of its network namespace (container:srv) has its name server and address.
    r = netd.ctl("run", "--rm", "--network", "container:srv", "default", "sh", "-c",
                 "grep nameserver /etc/resolv.conf; grep fd00 /etc/hosts")  # fmt: skip
    assert r.stdout.splitlines()[0] == "nameserver fd00:71::1"
    assert r.stdout.splitlines()[1].startswith("fd00:71::2\t")
    netd.ctl("rm", "-f", "srv")
    netd.ctl("network", "rm", "only6", *names)


@pytest.mark.root
def test_ipv6_forwarding_masquerade_and_isolation(netd: Daemon) -> None:
    """An IPv6 network's containers reach beyond the host through its IPv6 forwarding
    (turned on in the daemon's namespace with the first IPv6 network, as the IPv4 one) and
    leave with the host's address (masquerade, as Docker's ip6tables rules); an internal
    one's do not, nor is anything routed between two networks over IPv6; the ip6 table
    goes with the daemon (the fixture checks)."""
    ns = netd.netns
    outer = session_name(secrets.token_hex(4))
    subprocess.run(["ip", "netns", "add", outer], check=True)
    try:
        # h0 (the daemon's side) and h1, moved out: a link to the world, in test namespaces.
        for step in (
            f"ip link set h1 netns {outer}",
            "ip addr add 2001:db8:1::1/64 dev h0 nodad",
        ):
            inside(ns, *step.split())
        for step in ("ip link set lo up", "ip addr add 2001:db8:1::2/64 dev h1 nodad",
                     "ip link set h1 up"):  # fmt: skip
            inside(f"/run/netns/{outer}", *step.split())
        with serving(f"/run/netns/{outer}", V6_PEER):
            forwarding = ("sysctl", "-n", "net.ipv6.conf.all.forwarding")
            assert inside(ns, *forwarding).stdout.strip() == "0"
            netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:11::/64", "out")
            netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:12::/64", "--internal", "in")
            netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:13::/64", "other")
            netd.ctl("run", "-d", "--name", "srv", "--network", "other", "--ip6", "fd00:13::5",
                     "default", "python3", "-c", V6_SERVER, "fd00:13::5")  # fmt: skip
            dial = ("default", "python3", "-c", V6_DIAL)
            r = netd.ctl("run", "--rm", "--network", "out", *dial, "2001:db8:1::2", "8099")
            assert r.stdout.strip() == "2001:db8:1::1"  # masqueraded: the host's address
            assert inside(ns, *forwarding).stdout.strip() == "1"
            r = netd.ctl("run", "--rm", "--network", "in", *dial, "2001:db8:1::2", "8099")
            assert r.stdout.strip() == "no"
            # Isolation: out's container does not reach other's over IPv6, other's own does.
            r = netd.ctl("run", "--rm", "--network", "out", *dial, "fd00:13::5", "80")
            assert r.stdout.strip() == "no"
            r = netd.ctl("run", "--rm", "--network", "other", *dial, "fd00:13::5", "80")
            assert r.stdout.strip().startswith("fd00:13::")
            table = next(t for t in nft_tables(ns) if t.startswith("boxd"))
            rules = inside(ns, "nft", "list", "table", "ip6", table).stdout
            assert "ip6 saddr fd00:11::/64" in rules and "ip6 saddr fd00:12::/64" not in rules
            netd.ctl("rm", "-f", "srv")
            netd.ctl("network", "rm", "out", "in", "other")
            assert [t for t in nft_tables(ns) if t.startswith("boxd")] == [table]  # ip's only
    finally:
        subprocess.run(["ip", "netns", "del", outer], check=True)


# Runs in a container: answers each TCP connection on port 80, IPv4 and IPv6 (where the
# container has IPv6), with the family it came in on and the address it came from.
DUAL_SERVER = """
import socket, threading
def serve(family, address):
    s = socket.socket(family)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, 80))
    s.listen()
    while True:
        c, peer = s.accept()
        c.sendall(f"{'v6' if family == socket.AF_INET6 else 'v4'} {peer[0]}".encode())
        c.close()
threading.Thread(target=serve, args=(socket.AF_INET, "0.0.0.0"), daemon=True).start()
try:
    serve(socket.AF_INET6, "::")
except OSError:
    threading.Event().wait()
"""

# Runs in the test's namespace: connects to [argv[1]]:argv[2], prints what it answers or
# the error.
DIAL = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print(s.recv(100).decode())
except OSError as exc:
    print("no", exc.errno)
"""


@pytest.mark.root
def test_ipv6_published_ports(netd: Daemon) -> None:
    """As Docker's: ``-p 8080:80`` publishes on 0.0.0.0 and ``::`` (``port`` and ``ps``
    show both), forwarded to the container's IPv6 address on an IPv6 network and relayed
    to its IPv4 one otherwise; ``-p [::1]:PORT:80`` on IPv6's loopback only, through the
    relay; ``[::]`` on IPv6 only."""
    ns = netd.netns
    inside(ns, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "h0", "nodad")
    netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:21::/64", "dual")
    netd.ctl("run", "-d", "--name", "d", "--network", "dual", "-p", "18090:80",
             "-p", "[::1]:18091:80", "-p", "[::]:18092:80", "default", "python3", "-c",
             DUAL_SERVER)  # fmt: skip
    netd.ctl("run", "-d", "--name", "p", "-p", "18093:80", "default", "python3", "-c",
             DUAL_SERVER)  # fmt: skip
    wait_listening(netd, "d", 80)
    wait_listening(netd, "p", 80)
    assert netd.ctl("port", "d").stdout.splitlines() == [
        "80/tcp -> 0.0.0.0:18090",
        "80/tcp -> [::]:18090",
        "80/tcp -> [::1]:18091",
        "80/tcp -> [::]:18092",
    ]
    assert netd.ctl("port", "p", "80").stdout.splitlines() == ["0.0.0.0:18093", "[::]:18093"]
    ps = netd.ctl("ps", "--format", "{{.Names}} {{.Ports}}").stdout.splitlines()
    assert "p 0.0.0.0:18093->80/tcp, [::]:18093->80/tcp" in ps

    def dial(host: str, port: int) -> str:
        return inside(ns, "python3", "-c", DIAL, host, str(port)).stdout.strip()

    gateway6 = "fd00:21::1"
    assert dial("2001:db8:1::1", 18090) == "v6 2001:db8:1::1"  # DNAT to its IPv6 address
    assert dial("::1", 18090) == f"v6 {gateway6}"  # loopback: the relay, over IPv6
    assert dial("127.0.0.1", 18090).startswith("v4 ")
    assert dial("::1", 18091) == f"v6 {gateway6}"
    assert dial("127.0.0.1", 18091).startswith("no ")  # [::1] only
    assert dial("2001:db8:1::1", 18092) == "v6 2001:db8:1::1"
    assert dial(HOST_ADDRESS, 18092).startswith("no ")  # [::] only
    # On the default bridge (IPv4 only) the IPv6 port is relayed to its IPv4 address.
    assert dial("2001:db8:1::1", 18093).startswith("v4 ")
    assert dial("::1", 18093).startswith("v4 ")
    shown = netd.ctl("inspect", "--type", "container", "-f", "{{json .NetworkSettings.Ports}}",
                     "p")  # fmt: skip
    assert json.loads(shown.stdout) == {
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "18093"},
            {"HostIp": "::", "HostPort": "18093"},
        ]
    }
    netd.ctl("rm", "-f", "d", "p")
    netd.ctl("network", "rm", "dual")


@contextlib.contextmanager
def holding(ns: str, port: int, address: str) -> Iterator[None]:
    """TCP ``port`` held on ``address`` (IPv6 only for an IPv6 one) in ``ns`` meanwhile."""
    holder = subprocess.Popen(
        ["nsenter", f"--net={ns}", "--", "python3", "-c", HOLD_PORT, str(port), address],
        stdout=subprocess.PIPE,
    )
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"listening\n"
            yield
        finally:
            holder.kill()


@pytest.mark.root
def test_published_port_free_on_both_families(netd: Daemon) -> None:
    """As Docker's port allocator: a port published on both families is one free on both,
    the next of a range (``-p 18100-18102:80``) or another ephemeral one (``-p 80``) when
    the first is taken on IPv6 alone; a range taken on one family or the other throughout
    fails, naming it."""
    ns = netd.netns
    sleep = ("default", "sleep", "60")
    with holding(ns, 18100, "::"):
        netd.ctl("run", "-d", "--name", "ranged", "-p", "18100-18102:80", *sleep)
        with holding(ns, 18102, "0.0.0.0"):
            r = netd.ctl("run", "-d", "--name", "full", "-p", "18100-18102:80", *sleep,
                         check=False)  # fmt: skip
    assert netd.ctl("port", "ranged", "80").stdout.splitlines() == [
        "0.0.0.0:18101",
        "[::]:18101",
    ]
    assert r.returncode == 125
    assert "every port of 0.0.0.0:18100-18102/tcp is in use on IPv4 or on IPv6" in r.stderr
    # Ephemeral: the kernel's range here is two ports; bind(0) takes the odd one first.
    ephemeral = "net.ipv4.ip_local_port_range"
    default = inside(ns, "sysctl", "-n", ephemeral).stdout.split()
    inside(ns, "sysctl", "-w", f"{ephemeral}=40000 40001")
    try:
        with holding(ns, 40001, "::"):
            netd.ctl("run", "-d", "--name", "eph", "-p", "80", *sleep)
    finally:
        inside(ns, "sysctl", "-w", f"{ephemeral}={' '.join(default)}")
    assert netd.ctl("port", "eph", "80").stdout.splitlines() == ["0.0.0.0:40000", "[::]:40000"]
    netd.ctl("rm", "-f", "ranged", "eph", "full")


@pytest.mark.root
def test_ipv6_across_daemon_restarts(tmp_path: Path, netns: str) -> None:
    """Live restore: the next daemon adopts a container on an IPv6 network with its IPv6
    address (kept for it: a new container gets another), its AAAA name, its IPv6 route
    and its port published on ::; the ip6 table is rebuilt, and goes with the last
    daemon."""
    with running_daemon(tmp_path / "live", netns=netns) as d:
        d.ctl("network", "create", "--ipv6", "--subnet", "fd00:31::/64", "dual")
        d.ctl("run", "-d", "--name", "srv", "--network", "dual", "-p", "18095:80", "default",
              "python3", "-c", DUAL_SERVER)  # fmt: skip
        wait_listening(d, "srv", 80)
        assert d.stop() == 0  # the container runs on
        assert [t for t in nft_tables(netns) if t.startswith("boxd")] != []
        d.start()
        (ep,) = d.inspect("srv")["state"]["network"]["endpoints"]
        assert ep["ipv6_address"] == "fd00:31::2"
        dial = inside(netns, "python3", "-c", DIAL, "::1", "18095").stdout.strip()
        assert dial == "v6 fd00:31::1"
        script = 'ip -6 -o addr show eth0 scope global; python3 -c "$0" srv'
        r = d.ctl("run", "--rm", "--network", "dual", "default", "sh", "-c", script, V6_CLIENT)
        assert "fd00:31::3/64" in r.stdout  # srv's address is still its own
        assert r.stdout.splitlines()[-1] == "fd00:31::2 v6 fd00:31::3 srv.dual"
        table = next(t for t in nft_tables(netns) if t.startswith("boxd"))
        rules = inside(netns, "nft", "list", "table", "ip6", table).stdout
        assert "dnat to [fd00:31::2]:80" in rules
        d.ctl("rm", "-f", "srv")
        d.ctl("network", "rm", "dual")
    assert links_settle(netns, ("boxd", "bx", "br-"), []) == []
    assert [t for t in nft_tables(netns) if t.startswith("boxd")] == []


@pytest.mark.root
def test_dns_forwards_to_an_ipv6_upstream(netd: Daemon) -> None:
    """A user network's name server forwards other names to an upstream resolver with an
    IPv6 address (``--dns``, or the host's resolv.conf) as to an IPv4 one: it asked it
    over an IPv4 socket, which cannot reach it, and answered SERVFAIL."""
    ns = netd.netns
    inside(ns, "ip", "addr", "add", "2001:db8:1::1/64", "dev", "h0", "nodad")
    # The stand-in upstream, on an IPv6 address of the test's namespace.
    script = UPSTREAM.replace("socket.AF_INET,", "socket.AF_INET6,")
    script = script.replace(f'"{HOST_ADDRESS}"', '"2001:db8:1::1"')
    with serving(ns, script):
        netd.ctl("network", "create", "front")
        lookup = "import socket; print(socket.gethostbyname('outside.example'))"
        r = netd.ctl("run", "--rm", "--network", "front", "--dns", "2001:db8:1::1", "default",
                     "python3", "-c", lookup)  # fmt: skip
        assert r.stdout.strip() == "198.51.100.7"
        netd.ctl("network", "rm", "front")


@pytest.mark.root
def test_the_daemons_ipv6_default_bridge(tmp_path: Path, netns: str) -> None:
    """``boxd --ipv6 --fixed-cidr-v6 CIDR`` (daemon.json's ``ipv6``, ``fixed-cidr-v6``), as
    Docker's: the default bridge is dual stack; ``--fixed-cidr-v6`` alone is refused."""
    with running_daemon(tmp_path / "d", "--ipv6", "--fixed-cidr-v6", "fd00:99::/64",
                        netns=netns) as d:  # fmt: skip
        script = "ip -6 -o addr show eth0 scope global; ip -6 route show default"
        r = d.ctl("run", "--rm", "-h", "box", "default", "sh", "-c", script + "; cat /etc/hosts")
        assert "inet6 fd00:99::2/64" in r.stdout and "default via fd00:99::1 dev eth0" in r.stdout
        assert "fd00:99::2\tbox" in r.stdout
        shown = json.loads(d.ctl("network", "inspect", "bridge").stdout)[0]
        assert shown["EnableIPv6"] is True
        assert shown["IPAM"]["Config"][1] == {"Subnet": "fd00:99::/64", "Gateway": "fd00:99::1"}
        r = d.ctl("run", "--ip6", "fd00:99::9", "default", "true", check=False)
        assert "user specified IP address is supported on user defined networks only" in r.stderr
        # docker inspect's top-level fields (its default bridge endpoint's), IPv6's too.
        d.ctl("run", "-d", "--name", "c", "default", "sleep", "60")
        top = ("GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPv6Gateway")
        settings = json.loads(d.ctl("inspect", "-f", "{{json .NetworkSettings}}", "c").stdout)
        assert [settings[k] for k in top] == ["fd00:99::2", 64, "fd00:99::1"]
        assert settings["IPAddress"] == settings["Networks"]["bridge"]["IPAddress"] != ""
        assert settings["EndpointID"] == settings["Networks"]["bridge"]["EndpointID"] != ""
        d.ctl("rm", "-f", "c")
    for flags, words in [
        (("--fixed-cidr-v6", "fd00:98::/64"), "--fixed-cidr-v6 fd00:98::/64 needs --ipv6"),
        (("--ipv6", "--fixed-cidr-v6", "nonsense"), "invalid --fixed-cidr-v6 'nonsense'"),
    ]:
        r = subprocess.run(
            ["nsenter", f"--net={netns}", "--", sys.executable, "-m", "boxd",
             "--root", str(tmp_path / "bad"), "--socket", str(tmp_path / "bad.sock"),
             "--docker-socket", "", *flags],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )  # fmt: skip
        assert r.returncode != 0 and words in r.stderr, r.stderr
    assert links_settle(netns, ("boxd", "bx", "br-"), []) == []


@pytest.mark.root
def test_ipv6_default_route_follows_connect_and_disconnect(netd: Daemon) -> None:
    """A container's IPv6 default route goes through its first network with IPv6 that is
    not internal, whichever network its IPv4 one goes through (Docker picks a gateway for
    each family): disconnected from it, the next such network takes it."""
    netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:41::/64", "a")
    netd.ctl("network", "create", "--ipv6", "--subnet", "fd00:42::/64", "b")
    netd.ctl("run", "-d", "--name", "c", "default", "sleep", "300")  # bridge: IPv4 only

    def routes() -> str:
        return netd.ctl("exec", "c", "ip", "-6", "route", "show", "default").stdout

    assert routes() == ""
    netd.ctl("network", "connect", "a", "c")
    assert routes().startswith("default via fd00:41::1 dev eth1")
    netd.ctl("network", "connect", "b", "c")
    assert routes().startswith("default via fd00:41::1 dev eth1")  # a keeps it
    netd.ctl("network", "disconnect", "a", "c")
    assert routes().startswith("default via fd00:42::1 dev eth2")
    v4 = netd.ctl("exec", "c", "ip", "-4", "route", "show", "default").stdout
    assert " dev eth0 " in v4  # IPv4's stays on the default bridge
    netd.ctl("rm", "-f", "c")
    netd.ctl("network", "rm", "a", "b")


_IF_SYSCTLS = (
    "com.docker.network.endpoint.sysctls="
    "net.ipv4.conf.IFNAME.log_martians=1,net.ipv4.conf.IFNAME.forwarding=0"
)
_READ_IF_SYSCTLS = (
    "cat /proc/sys/net/ipv4/conf/{0}/log_martians /proc/sys/net/ipv4/conf/{0}/forwarding"
)


@pytest.mark.root
def test_an_endpoints_own_sysctls(netd: Daemon) -> None:
    """Docker 28's ``com.docker.network.endpoint.sysctls`` (API 1.46): an endpoint's
    interface settings, ``IFNAME`` its interface's name, written once it is there, at the
    start (eth0, eth1, ...) and at a connect; from API 1.48 the container's own sysctls
    may not name an interface (dockerd's rule: its name is not known at create)."""
    netd.ctl("network", "create", "--subnet", "10.77.5.0/24", "es1")
    netd.ctl("network", "create", "--subnet", "10.77.6.0/24", "es2")
    spec = f'name=es1,"driver-opt={_IF_SYSCTLS}"'
    r = netd.ctl("run", "--rm", "--network", spec, "default", "sh", "-c",
                 _READ_IF_SYSCTLS.format("eth0"))  # fmt: skip
    assert r.stdout.split() == ["1", "0"], r.stderr
    # The container's own naming an interface are written once it is there too (they
    # raced its making, and lost under load), the endpoint's winning over them.
    for _ in range(3):
        r = netd.ctl("run", "--rm", "--network", spec, "--network", "es2", "--sysctl",
                     "net.ipv4.conf.eth1.log_martians=1", "--sysctl",
                     "net.ipv4.conf.eth0.log_martians=0", "default", "cat",
                     "/proc/sys/net/ipv4/conf/eth1/log_martians",
                     "/proc/sys/net/ipv4/conf/eth0/log_martians")  # fmt: skip
        assert r.stdout.split() == ["1", "1"], r.stderr
    # The second network's interface (eth1) gets its endpoint's, at a connect too.
    netd.ctl("run", "-d", "--name", "es", "--network", "es1", "default", "sleep", "1000")
    netd.ctl("network", "connect", "--driver-opt", f'"{_IF_SYSCTLS}"', "es2", "es")
    r = netd.ctl("exec", "es", "sh", "-c", _READ_IF_SYSCTLS.format("eth1"))
    assert r.stdout.split() == ["1", "0"], r.stderr
    r = netd.ctl("exec", "es", "cat", "/proc/sys/net/ipv4/conf/eth0/log_martians")
    assert r.stdout == "0\n"
    shown = json.loads(netd.ctl("inspect", "es").stdout)[0]["NetworkSettings"]["Networks"]
    assert shown["es2"]["DriverOpts"] == dict([_IF_SYSCTLS.split("=", 1)])
    # A setting the kernel has not: the connect fails naming it, the container keeps
    # its one interface; a malformed one is refused before anything is made.
    bad = "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.nosuch=1"
    netd.ctl("network", "disconnect", "es2", "es")
    r = netd.ctl("network", "connect", "--driver-opt", bad, "es2", "es", check=False)
    assert r.returncode != 0 and "net.ipv4.conf.eth1.nosuch=1: not a setting" in r.stderr
    assert netd.ctl("exec", "es", "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]
    for value in ("net.ipv4.IFNAME.x=1", "net.ipv4.conf.IFNAME.forwarding"):
        opt = f"com.docker.network.endpoint.sysctls={value}"
        r = netd.ctl("run", "--rm", "--network", f"name=es1,driver-opt={opt}", "default",
                     "true", check=False)  # fmt: skip
        assert r.returncode == 125 and "to have format net.X.Y.IFNAME.Z=VALUE" in r.stderr
    netd.ctl("rm", "-f", "es")
    # The Engine API: an interface's sysctl of the container's, refused from 1.48 in
    # dockerd's words, written as given before.
    body = {"Image": "default", "Cmd": ["cat", "/proc/sys/net/ipv4/conf/eth0/log_martians"],
            "HostConfig": {"NetworkMode": "es1",
                           "Sysctls": {"net.ipv4.conf.eth0.log_martians": "1"}}}  # fmt: skip
    raw = json.dumps(body).encode()
    status, _, data = docker_clients.api_call(netd, "POST", "/v1.48/containers/create", raw)
    assert status == 400 and b"must be supplied using driver option" in data, data
    status, _, data = docker_clients.api_call(netd, "POST", "/v1.47/containers/create", raw)
    assert status == 201, data
    cid = json.loads(data)["Id"]
    assert netd.ctl("start", "-a", cid).stdout == "1\n"
    netd.ctl("rm", cid)
    if docker_clients.DOCKER is not None:  # the docker CLI's --network driver-opt
        r = docker_in(netd, "run", "--rm", "--network", spec, "default", "sh", "-c",
                      _READ_IF_SYSCTLS.format("eth0"))  # fmt: skip
        assert r.stdout.split() == ["1", "0"], r.stderr


@pytest.mark.root
def test_an_endpoints_own_interface_name(netd: Daemon) -> None:
    """Docker 28's ``com.docker.network.endpoint.ifname``: the endpoint's interface is
    named so in the container (the others take the first free ethN, around it), at a
    start and at a connect, its sysctls' IFNAME too; a name taken or not one the kernel
    takes is refused before anything is made."""
    netd.ctl("network", "create", "--subnet", "10.77.7.0/24", "in1")
    netd.ctl("network", "create", "--subnet", "10.77.8.0/24", "in2")
    netd.ctl("network", "create", "--subnet", "10.77.9.0/24", "in3")
    ifname = "com.docker.network.endpoint.ifname"
    netd.ctl("run", "-d", "--name", "nm", "--network", "in1", "--network",
             f"name=in2,driver-opt={ifname}=eth0", "default", "sleep", "1000")  # fmt: skip
    # in2's is eth0, so in1's (asking none) is eth1: the first free.
    r = netd.ctl("exec", "nm", "ip", "-o", "-4", "addr", "show")
    shown = {line.split()[1]: line.split()[3].rsplit(".", 1)[0] for line in r.stdout.splitlines()}
    assert shown == {"lo": "127.0.0", "eth0": "10.77.8", "eth1": "10.77.7"}, r.stdout
    opt = f"{ifname}=uplink"
    netd.ctl("network", "connect", "--driver-opt", opt, "--driver-opt",
             "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1",
             "in3", "nm")  # fmt: skip
    r = netd.ctl("exec", "nm", "cat", "/proc/sys/net/ipv4/conf/uplink/log_martians")
    assert r.stdout == "1\n", r.stderr
    nets = json.loads(netd.ctl("inspect", "nm").stdout)[0]["NetworkSettings"]["Networks"]
    assert nets["in3"]["DriverOpts"][ifname] == "uplink"
    netd.ctl("network", "disconnect", "in3", "nm")
    r = netd.ctl("network", "connect", "--driver-opt", f"{ifname}=eth1", "in3", "nm",
                 check=False)  # fmt: skip
    assert r.returncode != 0 and "interface name 'eth1' is already in use" in r.stderr, r.stderr
    # A container at rest is refused the same at the connect, not at its next start.
    netd.ctl("stop", "-t", "0", "nm")
    r = netd.ctl("network", "connect", "--driver-opt", f"{ifname}=eth0", "in3", "nm",
                 check=False)  # fmt: skip
    assert r.returncode != 0 and "interface name 'eth0' is already in use" in r.stderr, r.stderr
    # Kept across a restart, and by a daemon's restart (the endpoint's record).
    netd.ctl("restart", "-t", "0", "nm")
    r = netd.ctl("exec", "nm", "ls", "/sys/class/net")
    assert r.stdout.split() == ["eth0", "eth1", "lo"], r.stderr
    netd.ctl("rm", "-f", "nm")
    for args, words in (
        (("--network", "in1", "--network", f"name=in2,driver-opt={ifname}=lo"),
         "'lo' is the container's loopback"),
        (("--network", f"name=in1,driver-opt={ifname}=x0", "--network",
          f"name=in2,driver-opt={ifname}=x0"), "interface name 'x0' is already in use"),
        (("--network", f"name=in1,driver-opt={ifname}=sixteen-letters1"),
         "invalid interface name 'sixteen-letters1'"),
    ):  # fmt: skip
        r = netd.ctl("run", "--rm", *args, "default", "true", check=False)
        assert r.returncode == 125 and words in r.stderr, (args, r.stderr)
    assert netd.ctl("ps", "-a", "-q").stdout == ""

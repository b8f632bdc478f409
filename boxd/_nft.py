"""boxd's own nftables table: masquerade, published ports and isolation between networks.

The whole table is rebuilt in one transaction (``nft -j -f -`` with a JSON batch: add the
table, flush it, add its chains and rules) whenever a network or a published port comes or
goes: a reader never sees half of it, a daemon that crashed is corrected by the next
rebuild, and nothing outside the table is ever touched.  A starting container's published
ports are the exception: their rules are added to the table as it is (:func:`add`), the
same as a rebuild would make them (a rebuild's flush makes the kernel's transaction wait
~10 ms for what it deletes).  Other tools' tables (iptables-nft's
``ip filter``/``ip nat``, firewalld's, Docker's) are left alone; a packet goes through
every table's chains on a hook, so boxd only adds verdicts of its own.

The nft command line takes JSON as its documented machine interface; libnftables' Python
binding is a Debian package for the system Python only, not something pip installs into
boxd's environment, so boxd runs ``nft``.

IPv6 has a table of the same name in the ``ip6`` family with the same rules for the
networks' IPv6 subnets, made with the first network with IPv6 and rebuilt in the same
transaction as the ``ip`` one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

import attrs
import trio

FAMILY = "ip"
FAMILIES = ("ip", "ip6")


class NftError(OSError):
    pass


@attrs.frozen
class Bridge:
    name: str
    subnet: str  # "172.17.0.0/16" ("": an IPv6-only network's)
    internal: bool = False  # no way out nor in: see boxd._network.Network.internal
    masquerade: bool = True  # what its containers send out takes the host's address
    subnet6: str = ""  # "fd00:1::/64" on a network with IPv6


@attrs.frozen
class Forward:
    """A published port: ``host_ip`` "" is any local address."""

    protocol: str
    host_ip: str
    host_port: int
    address: str
    port: int
    family: str = FAMILY  # "ip6": host_ip and address are IPv6 ("" any IPv6 address)


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(cidr: str) -> dict[str, Any]:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length)}}


LOCAL_DESTINATION = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
LOOPBACK = {"ip": "127.0.0.0/8", "ip6": "::1/128"}


def ruleset(
    table: str,
    bridges: Sequence[Bridge],
    forwards: Sequence[Forward],
    *,
    ipv6: bool = False,
    drop6: bool = False,
) -> dict[str, Any]:
    """The batch that makes ``table`` hold exactly these bridges' and ports' rules (for
    their IPv4 subnets: an IPv6-only network has none); with ``ipv6`` its ``ip6`` twin
    too, for the bridges' IPv6 subnets and the ports forwarded to IPv6 addresses
    (``drop6``: that twin removed, no longer needed)."""
    v4 = [b for b in bridges if b.subnet]  # not an IPv6-only network's
    forwards4 = [f for f in forwards if f.family == FAMILY]
    commands = _family(FAMILY, table, v4, forwards4, isolated=bridges)
    if ipv6:
        v6 = [b for b in bridges if b.subnet6]
        forwards6 = [f for f in forwards if f.family == "ip6"]
        commands += _family("ip6", table, v6, forwards6, isolated=bridges)
    elif drop6:
        commands += _removal("ip6", table)
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}


def _removal(family: str, table: str) -> list[dict[str, Any]]:
    """``table`` of ``family`` removed if it is there (add-then-delete: no error if not)."""
    return [
        {"add": {"table": {"family": family, "name": table}}},
        {"delete": {"table": {"family": family, "name": table}}},
    ]


def _family(
    family: str,
    table: str,
    bridges: Sequence[Bridge],
    forwards: Sequence[Forward],
    *,
    isolated: Sequence[Bridge] = (),
) -> list[dict[str, Any]]:
    """The commands that make ``table`` of ``family`` (``ip``: the bridges' subnets;
    ``ip6``: their IPv6 subnets) hold exactly these rules; isolation between
    ``isolated`` (default: ``bridges``)."""
    t = {"family": family, "table": table}
    commands: list[dict[str, Any]] = [
        {"add": {"table": {"family": family, "name": table}}},
        {"flush": {"table": {"family": family, "name": table}}},
    ]
    for name, kind, hook, prio in (
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
        ("postrouting", "nat", "postrouting", 100),
        ("forward", "filter", "forward", 0),
    ):
        chain = {**t, "name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept"}
        commands.append({"add": {"chain": chain}})

    def rule(chain: str, *expr: dict[str, Any]) -> None:
        commands.append({"add": {"rule": {**t, "chain": chain, "expr": list(expr)}}})

    names = [b.name for b in isolated or bridges]
    for b in bridges:
        subnet = b.subnet6 if family == "ip6" else b.subnet
        if b.internal:
            # Nothing routed out of its subnet, nor into it from elsewhere (by address: a
            # bridged packet seen here with br_netfilter stays within the subnet).
            rule(
                "forward",
                _match(_meta("iifname"), b.name),
                _match(_payload(family, "daddr"), _prefix(subnet), "!="),
                {"drop": None},
            )
            rule(
                "forward",
                _match(_meta("oifname"), b.name),
                _match(_payload(family, "saddr"), _prefix(subnet), "!="),
                {"drop": None},
            )
        elif b.masquerade:
            # Outbound: the containers' addresses are hidden behind the host's.
            rule(
                "postrouting",
                _match(_payload(family, "saddr"), _prefix(subnet)),
                _match(_meta("oifname"), b.name, "!="),
                {"masquerade": None},
            )
        # Isolation: nothing is routed from one boxd network into another.
        for other in names:
            if other != b.name:
                rule(
                    "forward",
                    _match(_meta("iifname"), b.name),
                    _match(_meta("oifname"), other),
                    {"drop": None},
                )
    return commands + _forward_rules(family, table, names, forwards)


def _forward_rules(
    family: str, table: str, names: Sequence[str], forwards: Sequence[Forward]
) -> list[dict[str, Any]]:
    """The commands that add the DNAT rules of ``forwards`` (of ``family``) to ``table``'s
    chains, not from the bridges ``names``."""
    t = {"family": family, "table": table}
    commands: list[dict[str, Any]] = []

    def rule(chain: str, *expr: dict[str, Any]) -> None:
        commands.append({"add": {"rule": {**t, "chain": chain, "expr": list(expr)}}})

    for f in forwards:
        target = {"dnat": {"addr": f.address, "port": f.port}}
        where = [_match(_payload(family, "daddr"), f.host_ip)] if f.host_ip else []
        port = _match(_payload(f.protocol, "dport"), f.host_port)
        # From elsewhere: not from a boxd bridge (containers reach published ports through
        # the userland proxy, so that the answer comes back through it: hairpin).
        if names:
            from_outside = _match(_meta("iifname"), {"set": list(names)}, "!=")
            rule("prerouting", from_outside, LOCAL_DESTINATION, *where, port, target)
        else:
            rule("prerouting", LOCAL_DESTINATION, *where, port, target)
        # From the host itself to one of its own addresses (loopback: the proxy).
        not_loopback = _match(_payload(family, "daddr"), _prefix(LOOPBACK[family]), "!=")
        rule("output", not_loopback, LOCAL_DESTINATION, *where, port, target)
    return commands


async def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    try:
        return await trio.run_process(
            ["nft", *args], stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
        )
    except FileNotFoundError:
        raise NftError("the nft command is missing: install nftables") from None


async def _nft(batch: dict[str, Any]) -> None:
    result = await _run("-j", "-f", "-", stdin=json.dumps(batch).encode())
    if result.returncode != 0:
        raise NftError(f"nft failed: {result.stderr.decode(errors='replace').strip()}")


async def apply(
    table: str,
    bridges: Sequence[Bridge],
    forwards: Sequence[Forward],
    *,
    ipv6: bool = False,
    drop6: bool = False,
) -> None:
    await _nft(ruleset(table, bridges, forwards, ipv6=ipv6, drop6=drop6))


async def add(table: str, bridges: Sequence[Bridge], forwards: Sequence[Forward]) -> None:
    """The rules of ``forwards`` added to ``table`` as :func:`ruleset` with ``bridges``
    would have them, the rest of it as it is (the table must hold the families of
    ``forwards``).  Adding takes ~3 ms; a rebuild ~16 ms, the kernel's transaction waiting
    ~10 ms for what it deletes."""
    names = [b.name for b in bridges]
    commands = []
    for family in FAMILIES:
        mine = [f for f in forwards if f.family == family]
        if mine:
            commands += _forward_rules(family, table, names, mine)
    await _nft({"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]})


async def existing(table: str) -> list[str]:
    """The families (of :data:`FAMILIES`) ``table`` is there in (read only: a daemon that
    never made one changes nothing when it looks)."""
    result = await _run("-j", "list", "tables")
    if result.returncode != 0:
        raise NftError(f"nft failed: {result.stderr.decode(errors='replace').strip()}")
    found = [item["table"] for item in json.loads(result.stdout)["nftables"] if "table" in item]
    return [t["family"] for t in found if t["name"] == table and t["family"] in FAMILIES]


async def delete(table: str, families: Sequence[str] = (FAMILY,)) -> None:
    """Remove ``table`` of each of ``families`` if it exists (one transaction)."""
    commands = [command for family in families for command in _removal(family, table)]
    await _nft({"nftables": commands})

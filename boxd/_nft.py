"""boxd's own nftables table: masquerade, published ports and isolation between networks.

The whole table is rebuilt in one transaction (``nft -j -f -`` with a JSON batch: add the
table, flush it, add its chains and rules) whenever a network or a published port comes or
goes: a reader never sees half of it, a daemon that crashed is corrected by the next
rebuild, and nothing outside the table is ever touched.  Other tools' tables (iptables-nft's
``ip filter``/``ip nat``, firewalld's, Docker's) are left alone; a packet goes through
every table's chains on a hook, so boxd only adds verdicts of its own.

The nft command line takes JSON as its documented machine interface; libnftables' Python
binding is a Debian package for the system Python only, not something pip installs into
boxd's environment, so boxd runs ``nft``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

import attrs
import trio

FAMILY = "ip"


class NftError(OSError):
    pass


@attrs.frozen
class Bridge:
    name: str
    subnet: str  # "172.17.0.0/16"
    internal: bool = False  # no way out nor in: see boxd._network.Network.internal
    masquerade: bool = True  # what its containers send out takes the host's address


@attrs.frozen
class Forward:
    """A published port: ``host_ip`` "" is any local address."""

    protocol: str
    host_ip: str
    host_port: int
    address: str
    port: int


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
NOT_LOOPBACK = _match(_payload("ip", "daddr"), _prefix("127.0.0.0/8"), "!=")


def ruleset(table: str, bridges: Sequence[Bridge], forwards: Sequence[Forward]) -> dict[str, Any]:
    """The batch that makes ``table`` hold exactly these bridges' and ports' rules."""
    t = {"family": FAMILY, "table": table}
    commands: list[dict[str, Any]] = [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"flush": {"table": {"family": FAMILY, "name": table}}},
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

    names = [b.name for b in bridges]
    for b in bridges:
        if b.internal:
            # Nothing routed out of its subnet, nor into it from elsewhere (by address: a
            # bridged packet seen here with br_netfilter stays within the subnet).
            rule(
                "forward",
                _match(_meta("iifname"), b.name),
                _match(_payload("ip", "daddr"), _prefix(b.subnet), "!="),
                {"drop": None},
            )
            rule(
                "forward",
                _match(_meta("oifname"), b.name),
                _match(_payload("ip", "saddr"), _prefix(b.subnet), "!="),
                {"drop": None},
            )
        elif b.masquerade:
            # Outbound: the containers' addresses are hidden behind the host's.
            rule(
                "postrouting",
                _match(_payload("ip", "saddr"), _prefix(b.subnet)),
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
    for f in forwards:
        target = {"dnat": {"addr": f.address, "port": f.port}}
        where = [_match(_payload("ip", "daddr"), f.host_ip)] if f.host_ip else []
        port = _match(_payload(f.protocol, "dport"), f.host_port)
        # From elsewhere: not from a boxd bridge (containers reach published ports through
        # the userland proxy, so that the answer comes back through it: hairpin).
        if names:
            from_outside = _match(_meta("iifname"), {"set": names}, "!=")
            rule("prerouting", from_outside, LOCAL_DESTINATION, *where, port, target)
        else:
            rule("prerouting", LOCAL_DESTINATION, *where, port, target)
        # From the host itself to one of its own addresses (loopback: the proxy).
        rule("output", NOT_LOOPBACK, LOCAL_DESTINATION, *where, port, target)
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]}


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


async def apply(table: str, bridges: Sequence[Bridge], forwards: Sequence[Forward]) -> None:
    await _nft(ruleset(table, bridges, forwards))


async def exists(table: str) -> bool:
    """Whether ``table`` is there (read only: a daemon that never made one changes
    nothing when it looks)."""
    result = await _run("-j", "list", "tables", FAMILY)
    if result.returncode != 0:
        raise NftError(f"nft failed: {result.stderr.decode(errors='replace').strip()}")
    found = json.loads(result.stdout)["nftables"]
    return any(item.get("table", {}).get("name") == table for item in found)


async def delete(table: str) -> None:
    """Remove ``table`` if it exists (add-then-delete: one transaction either way)."""
    await _nft(
        {
            "nftables": [
                {"add": {"table": {"family": FAMILY, "name": table}}},
                {"delete": {"table": {"family": FAMILY, "name": table}}},
            ]
        }
    )

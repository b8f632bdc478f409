"""``--add-host NAME:IP`` as Docker takes it: a line of the container's /etc/hosts.

NAME is a host name; IP an IPv4 or IPv6 address (``name:2001:db8::1`` splits at the first
colon; ``[2001:db8::1]`` and ``NAME=IP`` are also taken).  Docker's ``host-gateway`` names
the host's address as the container reaches it, known at its start: the gateway of its
(first) network's bridge, as Docker's is its docker0's address; the host's 127.0.0.1 on the
host's network.
"""

from __future__ import annotations

import ipaddress
import re

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})\Z")
HOST_GATEWAY = "host-gateway"


def parse_host(text: str) -> tuple[str, str]:
    """``db:10.0.0.5`` -> (``db``, ``10.0.0.5``), the address in its normal form."""
    sep = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)
    name, address = (text[:sep], text[sep + 1 :]) if sep >= 0 else (text, "")
    what = f"invalid --add-host {text!r}"
    if not _HOST.match(name):
        raise ValueError(f"{what}: {name!r} is not a host name (use NAME:IP)")
    if address == HOST_GATEWAY:
        return name, address
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        return name, str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"{what}: {address!r} is not an IP address (use NAME:IP)") from None


def hosts_lines(entries: tuple[str, ...], host_gateway: str) -> str:
    """The /etc/hosts lines of ``--add-host`` entries, in the order given; ``host_gateway``:
    the host's address as the container reaches it ("" with no network)."""
    lines = []
    for entry in entries:
        name, address = parse_host(entry)
        if address == HOST_GATEWAY:
            if not host_gateway:
                raise ValueError(
                    f"invalid --add-host {entry!r}: the container has no network to reach"
                    " the host on"
                )
            address = host_gateway
        lines.append(f"{address}\t{name}\n")
    return "".join(lines)

"""``--add-host NAME:IP`` as Docker takes it: a line of the container's /etc/hosts.

NAME is a host name; IP an IPv4 or IPv6 address (``name:2001:db8::1`` splits at the first
colon; ``[2001:db8::1]`` and ``NAME=IP`` are also taken).  Docker's ``host-gateway`` names
the gateway of its default bridge, which boxd does not have: it is refused.
"""

from __future__ import annotations

import ipaddress
import re

_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})\Z")


def parse_host(text: str) -> tuple[str, str]:
    """``db:10.0.0.5`` -> (``db``, ``10.0.0.5``), the address in its normal form."""
    sep = min((i for i in (text.find(":"), text.find("=")) if i >= 0), default=-1)
    name, address = (text[:sep], text[sep + 1 :]) if sep >= 0 else (text, "")
    what = f"invalid --add-host {text!r}"
    if not _HOST.match(name):
        raise ValueError(f"{what}: {name!r} is not a host name (use NAME:IP)")
    if address == "host-gateway":
        raise ValueError(f"{what}: host-gateway needs a bridge network, which boxd has not")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        return name, str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"{what}: {address!r} is not an IP address (use NAME:IP)") from None


def hosts_lines(entries: tuple[str, ...]) -> str:
    """The /etc/hosts lines of ``--add-host`` entries, in the order given."""
    return "".join("{1}\t{0}\n".format(*parse_host(entry)) for entry in entries)

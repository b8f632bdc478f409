"""A container's network counters, as ``docker stats`` shows them (NET I/O): those of each
interface in its network namespace but the loopback, read from ``/proc/PID/net/dev``,
which shows the network namespace of PID.  A container on the host's network has none of
its own (Docker reports none for it either)."""

from __future__ import annotations

import os

from ._record import frozen


@frozen
class Interface:
    """One interface's counters, as the container sees them (rx: what it received)."""

    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int

    def as_dict(self) -> dict[str, int]:
        """As the Engine API's stats name them."""
        return {name: getattr(self, name) for name in self.__match_args__}


def parse(text: str) -> dict[str, Interface]:
    """The interfaces of a ``/proc/net/dev`` text but ``lo``, in its order."""
    found = {}
    for line in text.splitlines()[2:]:  # two lines of headings
        name, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or len(fields) < 12 or name.strip() == "lo":
            continue
        rx, tx = [int(f) for f in fields[:4]], [int(f) for f in fields[8:12]]
        found[name.strip()] = Interface(*rx, *tx)
    return found


def read(pid: int) -> dict[str, Interface]:
    """The interfaces of the network namespace of process ``pid`` but ``lo``; none if it
    is this process's own (the host's network) or the process has gone."""
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            return {}
        with open(f"/proc/{pid}/net/dev") as f:
            return parse(f.read())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}

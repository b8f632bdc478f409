"""``boxctl ps``: Docker's columns, filters and ``--format`` over the daemon's list.

A row has the fields of the docker CLI's container formatter (``{{.ID}}``, ``{{.Names}}``,
``{{.Image}}``, ``{{.Command}}``, ``{{.CreatedAt}}``, ``{{.RunningFor}}``, ``{{.Ports}}``,
``{{.State}}``, ``{{.Status}}``, ``{{.Size}}``, ``{{.Labels}}``, ``{{.Label "k"}}``,
``{{.Mounts}}``, ``{{.Networks}}``, ``{{.LocalVolumes}}``), with its values as strings;
``--format json`` prints each row as one JSON object per line, as ``docker ps`` does.
"""

from __future__ import annotations

import sys
import time

from boxd import _human, _wirejson
from boxd._dockerwords import WORDS, command_line, health_suffix

from ._args import Args
from ._client import call
from ._table import aligned

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

HEADERS = {
    "ID": "CONTAINER ID",
    "Names": "NAMES",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}
# The default table's columns (Docker's), SIZE added with -s.
DEFAULT_FIELDS = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")


def state_word(c: dict[str, Any]) -> str:
    status: str = c["status"]
    return WORDS.get(status, status)  # a newer daemon's phase as it is


def status_text(c: dict[str, Any], now: float) -> str:
    """The STATUS column as Docker writes it: ``Up 2 minutes (Paused)``, ``Restarting (1)
    3 seconds ago``, ``Exited (0) 5 seconds ago``, ``Created``."""
    word = state_word(c)
    if word in ("running", "paused"):
        up = "Up " + _human.duration(now - (c["started_at"] or now))
        if word == "paused":
            return up + " (Paused)"
        health = c.get("health")
        return up + health_suffix(health) if health else up
    if word in ("exited", "restarting"):
        # No word of an OOM kill, as in Docker's: inspect's State.OOMKilled tells it.
        ago = _human.duration(now - (c["finished_at"] or now))
        return f"{word.capitalize()} ({c['exit_code'] or 0}) {ago} ago"
    return {"removing": "Removal In Progress"}.get(word, "Created")


def _image(ref: str) -> str:
    """``docker.io/library/busybox:latest`` as Docker shows it: ``busybox:latest``."""
    if ref.startswith("docker.io/library/") and ref.count("/") == 2:
        return ref.removeprefix("docker.io/library/")
    return ref.removeprefix("docker.io/")


def _ports(c: dict[str, Any]) -> str:
    """``443/tcp, 0.0.0.0:9000-9001->9000-9001/udp, 0.0.0.0:8080->80/tcp`` as docker/cli's
    DisplayablePorts shows the published and the exposed ports: ordered by container port,
    a run of ports (exposed, or published on their own number) as one range, each other
    mapping after them."""
    ports, published = [], set()
    for b in c["ports"]:
        published.add(f"{b['container_port']}/{b['protocol']}")
        ip = b["host_ip"] or "0.0.0.0"
        ports.append(
            (b["container_port"], f"[{ip}]" if ":" in ip else ip, b["host_port"], b["protocol"])
        )
    # Exposed ones only while it runs, as Docker shows them (a stopped container: none).
    exposed = c["exposed"] if state_word(c) in ("running", "paused") else ()
    for key in exposed:  # "80/tcp", or as --expose gave it: "80", "8000-8002/udp"
        numbers, _, proto = key.partition("/")
        proto = proto.lower() or "tcp"
        low, _, high = numbers.partition("-")
        for number in range(int(low), int(high or low) + 1):
            if f"{number}/{proto}" not in published:
                published.add(f"{number}/{proto}")
                ports.append((number, "", 0, proto))
    groups: dict[tuple[str, str], list[int]] = {}  # (ip, protocol): [first, last]
    shown, mappings = [], []
    for port, ip, host, proto in sorted(ports):
        if ip and host != port:
            mappings.append(f"{ip}:{host}->{port}/{proto}")
            continue
        group = groups.get((ip, proto))
        if group is not None and port == group[1] + 1:
            group[1] = port
            continue
        if group is not None:
            shown.append(_group(ip, proto, *group))
        groups[(ip, proto)] = [port, port]
    shown += [_group(ip, proto, *group) for (ip, proto), group in groups.items()]
    return ", ".join(shown + mappings)


def _ellipsis(text: str, width: int = 15) -> str:
    """docker/cli's Ellipsis: cut to ``width`` characters, the last one an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _group(ip: str, proto: str, first: int, last: int) -> str:
    ports = str(first) if first == last else f"{first}-{last}"
    return f"{ip}:{ports}->{ports}/{proto}" if ip else f"{ports}/{proto}"


def _command(c: dict[str, Any], trunc: bool) -> str:
    return shown_command(command_line(c["command"]), trunc)


def shown_command(command: str, trunc: bool) -> str:
    """docker/cli's COMMAND: cut to 20 characters (the last an ellipsis), quoted."""
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    return _wirejson.dumps(command, ensure_ascii=False)


def _labels(c: dict[str, Any]) -> dict[str, str]:
    return dict(label.partition("=")[::2] for label in c["labels"])


def _label(c: dict[str, Any]) -> Callable[[str], str]:
    labels = _labels(c)
    return lambda key: labels.get(key, "")


def _size(sizes: list[int] | None) -> str:
    """Docker's SIZE: what the container wrote, and with its image (``virtual``) when
    that is known."""
    if sizes is None:
        return "0B"
    rw, root = sizes
    return f"{_human.size(rw)} (virtual {_human.size(root)})" if root else _human.size(rw)


def _networks(c: dict[str, Any]) -> str:
    """Its networks by name (none for ``container:NAME``'s, as Docker shows them)."""
    names = c["networks"] or [c["network"]]
    return ",".join(n for n in names if n and not n.startswith("container:"))


def _local_volumes(c: dict[str, Any]) -> str:
    """How many of its mounts are volumes (the local driver's), not binds."""
    return str(sum(1 for m in c["volumes"] if not m.startswith("/")))


# Each field of a row from a ContainerBrief (with "size" when asked), the time and whether
# to shorten; a row holds only the fields its format names.
COLUMNS: dict[str, Callable[[dict[str, Any], float, bool], Any]] = {
    "ID": lambda c, now, trunc: c["id"][:12] if trunc else c["id"],
    "Names": lambda c, now, trunc: c["name"],
    "Image": lambda c, now, trunc: _image(c["image"]),
    "Command": lambda c, now, trunc: _command(c, trunc),
    "CreatedAt": lambda c, now, trunc: time.strftime(
        "%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(c["created_at"])
    ),
    "RunningFor": lambda c, now, trunc: _human.duration(now - c["created_at"]) + " ago",
    "Ports": lambda c, now, trunc: _ports(c),
    "State": lambda c, now, trunc: state_word(c),
    "Status": lambda c, now, trunc: status_text(c, now),
    "Size": lambda c, now, trunc: _size(c.get("size")),
    "Labels": lambda c, now, trunc: ",".join(f"{k}={v}" for k, v in _labels(c).items()),
    "Label": lambda c, now, trunc: _label(c),
    "Mounts": lambda c, now, trunc: ",".join(_ellipsis(m) if trunc else m for m in c["volumes"]),
    "Networks": lambda c, now, trunc: _networks(c),
    "LocalVolumes": lambda c, now, trunc: _local_volumes(c),
}


def row(
    c: dict[str, Any], now: float, *, trunc: bool, names: Iterable[str] = COLUMNS
) -> dict[str, Any]:
    """The fields ``names`` of a container's row (every one by default)."""
    return {name: COLUMNS[name](c, now, trunc) for name in names}


def cmd_list(args: Args) -> int:
    limit = 1 if args.latest else (args.last if args.last is not None else 0)
    request = {
        "type": "ListRequest",
        "all": args.all,
        "filters": args.filter or [],
        "limit": limit,
        "size": bool(args.size) and not args.quiet,
        "brief": True,
    }
    response = call(args.socket, request)
    containers = response["briefs"]
    if args.quiet:
        if args.format:  # as Docker's, on stderr
            print("WARNING: Ignoring custom format, because both --format and --quiet are set.",
                  file=sys.stderr)  # fmt: skip
        for c in containers:
            print(c["id"][:12] if not args.no_trunc else c["id"])
        return 0
    for c, size in zip(containers, response.get("sizes") or (), strict=False):
        c["size"] = size
    now, trunc = time.time(), not args.no_trunc
    if args.format == "json":
        names = [name for name in COLUMNS if name != "Label"]
        for c in containers:
            print(_wirejson.dumps(row(c, now, trunc=trunc, names=names), ensure_ascii=False))
        return 0
    if not args.format or args.format == "table":
        print(default_table(containers, now, trunc=trunc, size=bool(args.size)))
        return 0
    from ._template import Template, print_formatted

    template = Template(args.format, strict=True)
    named = template.fields()
    wanted = COLUMNS if named is None else [n for n in named if n in COLUMNS]
    rows = [row(c, now, trunc=trunc, names=wanted) for c in containers]
    print_formatted(template, rows, HEADERS)
    return 0


def default_table(containers: list[dict[str, Any]], now: float, *, trunc: bool, size: bool) -> str:
    """``ps`` without ``--format`` (or with ``table``): what ``table {{.ID}}\\t...`` of
    DEFAULT_FIELDS prints through the template, built directly (every cell of it is a
    string), so that the common ``ps`` neither imports nor parses a template (~0.7 ms)."""
    fields = (*DEFAULT_FIELDS, "Size") if size else DEFAULT_FIELDS
    lines = ["\t".join(HEADERS[f] for f in fields)]
    lines += ["\t".join(COLUMNS[f](c, now, trunc) for f in fields) for c in containers]
    return aligned(lines)

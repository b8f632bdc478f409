"""``boxctl ps``: Docker's columns, filters and ``--format`` over the daemon's list.

A row has the fields of the docker CLI's container formatter (``{{.ID}}``, ``{{.Names}}``,
``{{.Image}}``, ``{{.Command}}``, ``{{.CreatedAt}}``, ``{{.RunningFor}}``, ``{{.Ports}}``,
``{{.State}}``, ``{{.Status}}``, ``{{.Size}}``, ``{{.Labels}}``, ``{{.Label "k"}}``,
``{{.Mounts}}``, ``{{.Networks}}``, ``{{.LocalVolumes}}``), with its values as strings;
``--format json`` prints each row as one JSON object per line, as ``docker ps`` does.
"""

from __future__ import annotations

import time

from boxd import _human, _wirejson
from boxd._dockerwords import WORDS

from ._args import Args
from ._client import call

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
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
DEFAULT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)


def state_word(c: dict[str, Any]) -> str:
    status: str = c["state"]["status"]
    return WORDS.get(status, status)  # a newer daemon's phase as it is


def status_text(c: dict[str, Any], now: float) -> str:
    """The STATUS column as Docker writes it: ``Up 2 minutes (Paused)``, ``Restarting (1)
    3 seconds ago``, ``Exited (0) 5 seconds ago``, ``Created``."""
    st = c["state"]
    word = state_word(c)
    if word in ("running", "paused"):
        up = "Up " + _human.duration(now - (st["started_at"] or now))
        return up + (" (Paused)" if word == "paused" else "")
    if word in ("exited", "restarting"):
        oom = " (OOM)" if st["oom_killed"] else ""
        ago = _human.duration(now - (st["finished_at"] or now))
        return f"{word.capitalize()} ({st['exit_code'] or 0}){oom} {ago} ago"
    return {"removing": "Removal In Progress"}.get(word, "Created")


def _image(ref: str) -> str:
    """``docker.io/library/busybox:latest`` as Docker shows it: ``busybox:latest``."""
    if ref.startswith("docker.io/library/") and ref.count("/") == 2:
        return ref.removeprefix("docker.io/library/")
    return ref.removeprefix("docker.io/")


def _ports(c: dict[str, Any]) -> str:
    """``0.0.0.0:8080->80/tcp, 443/tcp``: the published ports, then the exposed ones."""
    shown, published = [], set()
    for b in c["state"].get("network", {}).get("ports", []):
        published.add(f"{b['container_port']}/{b['protocol']}")
        host = f"{b['host_ip'] or '0.0.0.0'}:{b['host_port']}"
        shown.append(f"{host}->{b['container_port']}/{b['protocol']}")
    cfg = c["config"]
    for key in (*cfg.get("exposed_ports", ()), *cfg.get("expose", ())):
        key = key if "/" in key else key + "/tcp"
        if key not in published:
            published.add(key)
            shown.append(key)
    return ", ".join(shown)


def row(c: dict[str, Any], now: float, *, trunc: bool, size: int | None) -> dict[str, Any]:
    cfg = c["config"]
    labels = dict(label.partition("=")[::2] for label in cfg.get("labels", ()))
    command = " ".join(cfg["command"])
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    endpoints = c["state"].get("network", {}).get("endpoints", [])
    networks = [e["network"] for e in endpoints] or [cfg.get("network") or ""]
    mounts = [v["host"][:15] if trunc else v["host"] for v in cfg.get("volumes", ())]
    created = c["created_at"]
    return {
        "ID": c["id"][:12] if trunc else c["id"],
        "Names": c["name"],
        "Image": _image(cfg["image"]),
        "Command": _wirejson.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "RunningFor": _human.duration(now - created) + " ago",
        "Ports": _ports(c),
        "State": state_word(c),
        "Status": status_text(c, now),
        "Size": "0B" if size is None else _human.size(size),
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(n for n in networks if n),
        "LocalVolumes": "0",
    }


def cmd_list(args: Args) -> int:
    limit = 1 if args.latest else (args.last if args.last is not None else 0)
    request = {
        "type": "ListRequest",
        "all": args.all,
        "filters": args.filter or [],
        "limit": limit,
        "size": bool(args.size) and not args.quiet,
    }
    response = call(args.socket, request)
    containers, sizes = response["containers"], response.get("sizes") or []
    if args.quiet:
        for c in containers:
            print(c["id"][:12] if not args.no_trunc else c["id"])
        return 0
    now = time.time()
    rows = [
        row(c, now, trunc=not args.no_trunc, size=sizes[i] if sizes else None)
        for i, c in enumerate(containers)
    ]
    if args.format == "json":
        for r in rows:
            r.pop("Label")
            print(_wirejson.dumps(r, ensure_ascii=False))
        return 0
    from ._template import print_formatted

    fmt = args.format or DEFAULT + ("\t{{.Size}}" if args.size else "")
    if fmt == "table":
        fmt = DEFAULT + ("\t{{.Size}}" if args.size else "")
    print_formatted(fmt, rows, HEADERS, strict=True)
    return 0

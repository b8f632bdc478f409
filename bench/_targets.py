"""The open issues' performance targets, each judged met or missed from one run's entries.

A target names entries by case key and entry name, as the cases record them (``*`` stands
for a count that a quick run makes smaller).  Times and
sizes are medians; "at most Nx" compares boxd's median with the other entry's, a share of a
rate compares the other's time with boxd's (the same bytes moved), a limit compares boxd's
median (or the sum of several entries) with a number.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._report import Case

AT_MOST = "at most"  # boxd / other <= limit (times, sizes)
AT_LEAST = "at least"  # boxd / other >= limit (rates: Gbit/s)
SHARE = "share"  # other's time / boxd's time >= limit (boxd's rate as a share of the other's)
LIMIT = "limit"  # the sum of boxd's entries <= limit, in the case's unit


@dataclass(frozen=True)
class Target:
    issue: int
    text: str
    case: str
    ours: tuple[str, ...]
    kind: str
    limit: float
    other: str = ""


TARGETS = (
    Target(17, "library start to exit at or below `crun run`", "start",
           ("library run+wait",), AT_MOST, 1.0, "crun run"),
    Target(17, "no start blocks the event loop more than 1 ms (longest step per run)", "start",
           ("library: the event loop's longest block",), LIMIT, 1.0),
    Target(17, "20 at once through the library at or below crun's 20 at once", "concurrent",
           ("library run+wait+remove",), AT_MOST, 1.0, "crun run"),
    Target(17, "no start of the 20 blocks the event loop more than 1 ms", "concurrent",
           ("library: the event loop's longest block",), LIMIT, 1.0),
    Target(17, "`boxctl run --rm` at or below `runc run`", "start",
           ("boxctl run --rm",), AT_MOST, 1.0, "runc run"),
    Target(17, "100 `boxctl run --rm` in sequence at or below runc's total", "sequential",
           ("boxctl run --rm",), AT_MOST, 1.0, "runc run"),
    Target(17, "`boxctl ps -a`, 0 containers, at most 1.5x `python -c pass`", "list",
           ("boxctl ps -a (0 containers)",), AT_MOST, 1.5, "python -c pass"),
    Target(17, "`boxctl ps -a`, 100 containers, at most 1.5x `python -c pass`", "list",
           ("boxctl ps -a (* created)",), AT_MOST, 1.5, "python -c pass"),
    Target(17, "256 MiB through `run --rm -t` at least as fast as `script`", "output",
           ("boxctl run --rm -t: through a PTY, attached",), SHARE, 1.0,
           "PTY: script -qec dd"),
    Target(17, "256 MiB through `run --rm` (attached) at least 50% of a raw pipe", "output",
           ("boxctl run --rm: one client attached",), SHARE, 0.5, "raw pipe: dd to cat"),
    Target(17, "256 MiB to the log, detached, at least 50% of a raw pipe", "output",
           ("boxctl run -d: to the log, nobody attached",), SHARE, 0.5, "raw pipe: dd to cat"),
    Target(17, "idle daemon at most 1.3x a bare Trio program (Rss)", "memory",
           ("boxd daemon, idle (Rss)",), AT_MOST, 1.3, "a bare Trio program (Rss)"),
    Target(17, "per idle container under 1 MiB, what keeps it alive included (Rss)",
           "memory", ("boxd daemon, per idle container (Rss)",
                      "boxd-shim, per container (live restore's keeper) (Rss)"), LIMIT, 1024),
    Target(14, "unpack at most 1.2x `tar -xzf` of the same layers", "image-unpack",
           ("boxd unpack",), AT_MOST, 1.2, "tar -xzf"),
    Target(14, "pull at most 1.5x `skopeo copy` to a directory", "image-pull",
           ("boxctl pull",), AT_MOST, 1.5, "skopeo copy to dir:"),
    Target(14, "`run --rm IMAGE true` within 1.1x the same on `default`", "image-run",
           ("boxctl run --rm IMAGE true",), AT_MOST, 1.1, "boxctl run --rm default true"),
    Target(15, "`run --rm` on the bridge at most 3 ms more than `--network none`",
           "network-start", ("bridge minus none (difference of medians)",), LIMIT, 3.0),
    Target(15, "container to container TCP at least 80% of a raw veth pair", "network-bridge",
           ("container to container (bridge)",), AT_LEAST, 0.8,
           "namespace to namespace (raw veth pair)"),
    Target(15, "a published port through NAT at least 80% of the same without NAT",
           "network-published", ("host address -> published port (nftables DNAT)",),
           AT_LEAST, 0.8, "host -> the container's own address (no NAT)"),
    Target(19, "`boxd-runtime` create+start+delete within 2x runc", "oci-cycle",
           ("boxd-runtime create, start, delete",), AT_MOST, 2.0, "runc create, start, delete"),
    Target(19, "`podman --runtime boxd-runtime run --rm` within 1.2x podman with runc",
           "oci-podman", ("podman --runtime boxd-runtime run --rm --rootfs",), AT_MOST, 1.2,
           "podman --runtime runc run --rm --rootfs"),
)  # fmt: skip


def judge(cases: list[Case]) -> list[dict[str, Any]]:
    """Every target of a case this run measured: its value, and met, missed or why not
    judged (an entry failed)."""
    entries = {case.key: case.entries for case in cases}
    units = {case.key: case.unit for case in cases}

    def median(key: str, name: str) -> float | None:
        found = [e for e in entries[key] if fnmatch.fnmatchcase(e.name, name)]
        return found[0].median if len(found) == 1 else None

    out = []
    for t in TARGETS:
        if t.case not in entries:
            continue
        names = (*t.ours, t.other) if t.other else t.ours
        values = [median(t.case, name) for name in names]
        row: dict[str, Any] = {"issue": t.issue, "target": t.text}
        if any(v is None for v in values) or (t.other and not values[-1]):
            row |= {"value": None, "shown": "not measured", "met": None}
            out.append(row)
            continue
        ours = sum(v for v in values[: len(t.ours)] if v is not None)
        other = values[-1] if t.other else None
        if t.kind == LIMIT:
            value, met, shown = ours, ours <= t.limit, f"{ours:.3g} {units[t.case]}"
        elif t.kind == SHARE:
            assert other is not None
            value = other / ours
            met, shown = value >= t.limit, f"{value:.0%}"
        else:
            assert other is not None
            value = ours / other
            met = value <= t.limit if t.kind == AT_MOST else value >= t.limit
            shown = f"{value:.3g}x"
        out.append(row | {"value": value, "shown": shown, "met": met})
    return out


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## The issues' targets", ""]
    lines += ["| issue | target | this run | |", "|---|---|---|---|"]
    for r in rows:
        verdict = "not judged" if r["met"] is None else "met" if r["met"] else "missed"
        lines.append(f"| #{r['issue']} | {r['target']} | {r['shown']} | {verdict} |")
    return lines

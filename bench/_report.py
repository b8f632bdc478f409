"""Results: cases of entries (ours, peers, baselines, references), ratios, and the two files.

An entry is either measured (samples) or failed (an error string): nothing is dropped.  Ratios
are ``ours / other`` of the medians, within one case and one metric, so a ratio above 1 means
boxd takes longer (or uses more memory) than the other entry.
"""

from __future__ import annotations

import json
import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _targets

# What an entry is, for the ratios: ours are divided by every other measured entry.
OURS = "boxd"
PEER = "peer"
BASELINE = "baseline"
REFERENCE = "reference"  # a documented value, not measured in this run


@dataclass
class Entry:
    name: str
    role: str
    metric: str = ""
    samples: list[float] = field(default_factory=list)
    error: str = ""
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples and not self.error else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "metric": self.metric}
        if self.error:
            out["error"] = self.error
        else:
            out |= {
                "median": self.median,
                "min": min(self.samples),
                "max": max(self.samples),
                "runs": len(self.samples),
            }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Case:
    key: str
    title: str
    unit: str
    entries: list[Entry] = field(default_factory=list)

    def measure(
        self,
        name: str,
        role: str,
        how: Callable[[], list[float]],
        *,
        metric: str = "",
        note: str = "",
    ) -> Entry:
        """Run ``how`` and keep its samples, or the reason it could not run here."""
        entry = Entry(name, role, metric, note=note)
        try:
            entry.samples = how()
            if not entry.samples:
                entry.error = "no samples"
        except Exception as exc:  # any failure of a peer or of boxd is a result
            entry.error = describe(exc)
        self.entries.append(entry)
        shown = entry.error or f"median {entry.median:.2f} {self.unit}"
        print(f"  {self.key} / {name}: {shown}", flush=True)
        return entry

    def fail(self, name: str, role: str, error: str, *, metric: str = "") -> None:
        self.entries.append(Entry(name, role, metric, error=error))
        print(f"  {self.key} / {name}: {error}", flush=True)

    def ratios(self) -> list[dict[str, Any]]:
        out = []
        for ours in self.entries:
            if ours.role != OURS or ours.median is None:
                continue
            for other in self.entries:
                if other.role == OURS or other.metric != ours.metric:
                    continue
                if other.median is None or other.median == 0:
                    continue
                out.append(
                    {
                        "ours": ours.name,
                        "other": other.name,
                        "role": other.role,
                        "metric": ours.metric,
                        "ratio": ours.median / other.median,
                    }
                )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "entries": [e.to_json() for e in self.entries],
            "ratios": self.ratios(),
        }


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or traceback.format_exception_only(exc)[-1].strip()
    return f"{type(exc).__name__}: {text}"


def _number(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def markdown(meta: dict[str, Any], tools: dict[str, dict[str, str]], cases: list[Case]) -> str:
    lines = [
        f"# boxd benchmarks, {meta['date']}{' (quick)' if meta['quick'] else ''}",
        "",
        f"{meta['host']}. Medians of each entry's runs; ratios are boxd / other (above 1:",
        "boxd is slower or bigger).",
        "",
        "| tool | version or error |",
        "|---|---|",
    ]
    for name, info in tools.items():
        lines.append(f"| {name} | {info.get('version') or 'error: ' + info.get('error', '')} |")
    for case in cases:
        lines += [
            "",
            f"## {case.title}",
            "",
            f"| entry | role | median {case.unit} | min | max | runs | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in case.entries:
            name = _cell(e.name)
            if e.error:
                lines.append(f"| {name} | {e.role} | - | - | - | - | error: {_cell(e.error)} |")
            else:
                lines.append(
                    f"| {name} | {e.role} | {_number(statistics.median(e.samples))} | "
                    f"{_number(min(e.samples))} | {_number(max(e.samples))} | "
                    f"{len(e.samples)} | {_cell(e.note)} |"
                )
        ratios = case.ratios()
        if ratios:
            lines += ["", "| boxd | other | ratio |", "|---|---|---|"]
            lines += [
                f"| {_cell(r['ours'])} | {_cell(r['other'])} | {r['ratio']:.3g}x |" for r in ratios
            ]
    lines += _targets.markdown(_targets.judge(cases))
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def write(
    out: Path, meta: dict[str, Any], tools: dict[str, dict[str, str]], cases: list[Case]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        **meta,
        "tools": tools,
        "cases": [c.to_json() for c in cases],
        "targets": _targets.judge(cases),
    }
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "results.md").write_text(markdown(meta, tools, cases))

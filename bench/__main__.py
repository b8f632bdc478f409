"""``python -m bench [--quick] [--out DIR]``: boxd against crun, runc, bubblewrap and Podman.

Every case runs in this one process's run, on the same busybox root filesystem, so the
ratios compare like with like on a noisy machine.  A peer that cannot run here is
reported with its error, never dropped.  Results: ``results.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

import boxd

REPO = Path(__file__).resolve().parent.parent
CGNS = REPO.parent / "shared" / "peers" / "cgns.sh"
PY = sys.executable


def busybox_root(dest: Path) -> Path:
    busybox = shutil.which("busybox") or "/bin/busybox"
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in ("sh", "true", "sleep", "head", "cat", "dd"):
        (dest / "bin" / applet).symlink_to("busybox")
    return dest


def timed(command: list[str], runs: int) -> list[float]:
    """Milliseconds of each run; raises with the command's stderr if it fails."""
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL)
        samples.append((time.perf_counter() - t0) * 1000)
        if r.returncode != 0:
            raise RuntimeError(
                r.stderr.decode(errors="replace").strip()[-300:] or f"exit {r.returncode}"
            )
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
    }


class Bench:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.runs = 3 if quick else 30
        self.results: dict[str, dict[str, Any]] = {}
        self.root = busybox_root(work / "rootfs")
        self.sock = work / "boxd.sock"
        self.daemon: subprocess.Popen[bytes] | None = None

    def record(self, case: str, measure: Callable[[], list[float]]) -> None:
        try:
            self.results[case] = summary(measure())
        except Exception as exc:  # a peer or case that cannot run here is reported
            self.results[case] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{case}: {self.results[case]}", flush=True)

    def boxctl(self, *args: str) -> list[str]:
        return [PY, "-m", "boxctl", "--socket", str(self.sock), *args]

    def start_daemon(self) -> None:
        self.daemon = subprocess.Popen(
            [
                PY,
                "-m",
                "boxd",
                "--root",
                str(self.work / "boxd-root"),
                "--socket",
                str(self.sock),
                "--log-level",
                "warning",
            ]
        )
        deadline = time.monotonic() + 30
        while subprocess.run(self.boxctl("version"), capture_output=True).stdout.count(b"api") == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("boxd did not start")
            time.sleep(0.05)

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.send_signal(signal.SIGTERM)
            self.daemon.wait(timeout=120)

    def oci_bundle(self, runtime: str) -> Path:
        bundle = self.work / f"bundle-{runtime}"
        bundle.mkdir()
        subprocess.run([runtime, "spec"], cwd=bundle, check=True, capture_output=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": str(self.root), "readonly": True}
        spec["process"]["args"] = ["/bin/true"]
        spec["process"]["terminal"] = False
        spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    # ---- the cases ------------------------------------------------------------------

    def start_to_exit(self) -> None:
        self.record(
            "start/boxctl run --rm",
            lambda: timed(
                self.boxctl(
                    "run",
                    "--rm",
                    "--memory",
                    "64m",
                    "--procview",
                    "off",
                    str(self.root),
                    "/bin/true",
                ),
                self.runs,
            ),
        )
        self.record("start/library", self.library_runs)
        for runtime in ("crun", "runc"):

            def run_oci(runtime: str = runtime) -> list[float]:
                if shutil.which(runtime) is None:
                    raise RuntimeError(f"{runtime} is not installed")
                bundle = self.oci_bundle(runtime)
                wrap = ["sh", str(CGNS)] if runtime == "crun" and CGNS.exists() else []
                return timed([*wrap, runtime, "run", "--bundle", str(bundle), "bench"], self.runs)

            self.record(f"start/{runtime} run", run_oci)
        self.record(
            "start/bwrap",
            lambda: timed(
                [
                    "bwrap",
                    "--unshare-all",
                    "--ro-bind",
                    str(self.root),
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "/bin/true",
                ],
                self.runs,
            ),
        )

        def podman() -> list[float]:
            if shutil.which("podman") is None:
                raise RuntimeError("podman is not installed")
            p = self.work / "podman"
            return timed(
                [
                    "sh",
                    str(CGNS),
                    "podman",
                    "--root",
                    str(p / "root"),
                    "--runroot",
                    str(p / "run"),
                    "--tmpdir",
                    str(p / "tmp"),
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--rootfs",
                    str(self.root),
                    "/bin/true",
                ],
                self.runs,
            )

        self.record("start/podman run --rm", podman)

    def library_runs(self) -> list[float]:
        samples: list[float] = []

        async def main() -> None:
            async with boxd.open_supervisor(self.work / "lib-root") as sup:
                config = boxd.ContainerConfig(
                    image=str(self.root),
                    command=("/bin/true",),
                    procview=False,
                    resources=boxd.Resources(memory=64 << 20),
                )
                for _ in range(self.runs):
                    t0 = time.perf_counter()
                    c = await sup.run(config)
                    await sup.wait(c.id)
                    samples.append((time.perf_counter() - t0) * 1000)
                    await sup.remove(c.id)

        trio.run(main)
        return samples

    def sequential_and_parallel(self) -> None:
        n, m = (10, 5) if self.quick else (100, 20)
        true = ["run", "--rm", "--procview", "off", str(self.root), "/bin/true"]
        self.record(
            f"many/{n} boxctl run one after another", lambda: [sum(timed(self.boxctl(*true), n))]
        )

        def parallel(command: list[str]) -> list[float]:
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(m)
            ]
            if any(p.wait() != 0 for p in procs):
                raise RuntimeError("a run failed")
            return [(time.perf_counter() - t0) * 1000]

        self.record(f"many/{m} boxctl run at once", lambda: parallel(self.boxctl(*true)))
        self.record(
            f"many/{m} bwrap at once",
            lambda: parallel(
                ["bwrap", "--unshare-all", "--ro-bind", str(self.root), "/", "/bin/true"]
            ),
        )

    def listing(self) -> None:
        self.record("list/python -c pass", lambda: timed([PY, "-c", "pass"], self.runs))
        self.record("list/boxctl ps (0)", lambda: timed(self.boxctl("ps", "-a"), self.runs))
        count = 10 if self.quick else 100
        for _ in range(count):
            subprocess.run(
                self.boxctl("create", str(self.root), "/bin/true"), capture_output=True, check=True
            )
        self.record(f"list/boxctl ps ({count})", lambda: timed(self.boxctl("ps", "-a"), self.runs))
        ids = subprocess.run(
            self.boxctl("ps", "-a", "-q"), capture_output=True, text=True
        ).stdout.split()
        subprocess.run(self.boxctl("rm", *ids), capture_output=True)

    def memory(self) -> None:
        assert self.daemon is not None
        pid = self.daemon.pid

        def rss_kib() -> int:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            return int(next(ln for ln in rollup.splitlines() if ln.startswith("Pss:")).split()[1])

        idle = rss_kib()
        n = 5 if self.quick else 20
        for i in range(n):
            subprocess.run(
                self.boxctl(
                    "run",
                    "-d",
                    "--name",
                    f"idle{i}",
                    "--procview",
                    "off",
                    str(self.root),
                    "/bin/sleep",
                    "1000",
                ),
                capture_output=True,
                check=True,
            )
        busy = rss_kib()
        subprocess.run(
            self.boxctl("rm", "-f", *[f"idle{i}" for i in range(n)]), capture_output=True
        )
        self.results["memory/daemon PSS idle (KiB)"] = {"median": idle}
        self.results["memory/extra PSS per idle container (KiB)"] = {
            "median": (busy - idle) / n,
            "reference": "conmon: ~2500 KiB per container "
            "(../shared/peers/README.md, not measured in this run)",
        }

    def throughput(self) -> None:
        mib = 16 if self.quick else 256
        cmd = f"head -c {mib << 20} /dev/zero"
        self.record(
            f"output/raw pipe {mib} MiB (ms)",
            lambda: timed(["sh", "-c", f"{cmd} | cat > /dev/null"], max(1, self.runs // 10)),
        )

        def detached() -> list[float]:
            runs = []
            for _ in range(max(1, self.runs // 10)):
                t0 = time.perf_counter()
                cid = subprocess.run(
                    self.boxctl("run", "-d", "--procview", "off", str(self.root), "sh", "-c", cmd),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                subprocess.run(self.boxctl("wait", cid), capture_output=True, check=True)
                runs.append((time.perf_counter() - t0) * 1000)
                subprocess.run(self.boxctl("rm", cid), capture_output=True, check=True)
            return runs

        self.record(f"output/boxctl run -d to the log {mib} MiB (ms)", detached)
        self.record(
            f"output/boxctl run attached {mib} MiB (ms)",
            lambda: timed(
                [*self.boxctl("run", "--rm", "--procview", "off", str(self.root), "sh", "-c", cmd)],
                max(1, self.runs // 10),
            ),
        )


def ratios(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, float]]:
    pairs = []
    ours = [k for k in results if k.startswith("start/") and ("boxctl" in k or "library" in k)]
    peers = [k for k in results if k.startswith("start/") and k not in ours]
    for o in ours:
        for p in peers:
            if "median" in results[o] and "median" in results[p]:
                pairs.append((o, p, results[o]["median"] / results[p]["median"]))
    if "median" in results.get("list/python -c pass", {}):
        base = results["list/python -c pass"]["median"]
        for k, v in results.items():
            if k.startswith("list/boxctl") and "median" in v:
                pairs.append((k, "list/python -c pass", v["median"] / base))
    return pairs


def write(out: Path, results: dict[str, dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| case | median | min | max | note |", "|---|---|---|---|---|"]
    for case, r in results.items():
        if "error" in r:
            rows.append(f"| {case} | - | - | - | error: {r['error']} |")
        else:
            rows.append(
                f"| {case} | {r['median']:.2f} | {r.get('min', r['median']):.2f} | "
                f"{r.get('max', r['median']):.2f} | {r.get('reference', '')} |"
            )
    rows += ["", "| ours | peer | ratio (ours / peer) |", "|---|---|---|"]
    rows += [f"| {o} | {p} | {x:.2f} |" for o, p, x in ratios(results)]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "results.md").write_text(
        f"# boxd benchmarks ({stamp}, times in ms)\n\n" + "\n".join(rows) + "\n"
    )
    (out / "results.json").write_text(
        json.dumps(
            {
                "date": stamp,
                "results": results,
                "ratios": [{"ours": o, "peer": p, "ratio": x} for o, p, x in ratios(results)],
            },
            indent=1,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a few iterations of each case")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (containers need it)")
    with tempfile.TemporaryDirectory(prefix="boxd-bench-") as tmp:
        bench = Bench(Path(tmp), args.quick)
        bench.start_daemon()
        try:
            bench.start_to_exit()
            bench.sequential_and_parallel()
            bench.listing()
            bench.memory()
            bench.throughput()
        finally:
            bench.stop_daemon()
        write(args.out, bench.results)
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

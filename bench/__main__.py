"""``python -m bench [--quick] [--out DIR]``: boxd against crun, runc, bubblewrap and Podman.

Every case runs in this one run, on the same busybox root filesystem, so the ratios compare
like with like on a noisy machine.  A tool or case that cannot run here is reported with
its error, never dropped.  Whatever happens, every container, daemon, mount and cgroup the
run made is removed before it ends.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _env
from ._cases import BOXD_RUNTIME, LIBRARY_ROOT, Bench
from ._report import Case, write

NETNS_MARK = "BOXD_BENCH_NETNS"
# The cases in the order they run: each is a method of Bench returning one Case or a list.
CASES = ("start", "many", "listing", "memory", "output", "images", "oci", "network")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few iterations of every case")
    p.add_argument(
        "--out",
        type=Path,
        default=_env.REPO / "bench" / "results",
        help="where results.md and results.json go (default: bench/results)",
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument(
        "--only",
        metavar="CASE[,CASE...]",
        help=f"run only these cases ({', '.join(CASES)}); the default is all of them",
    )
    args = p.parse_args()
    only = args.only.split(",") if args.only else list(CASES)
    unknown = [name for name in only if name not in CASES]
    if unknown:
        p.error(f"unknown case {unknown[0]!r}: the cases are {', '.join(CASES)}")
    if os.geteuid() != 0:
        sys.exit("bench: run as root (containers need namespaces, mounts and cgroups)")
    # Timed Python processes cache their bytecode, as users' interpreters do by default.
    # With PYTHONDONTWRITEBYTECODE set, every boxctl and `python -c pass` here compiled
    # setuptools' `.pth` hook module (_distutils_hack: the venv's installer left it without
    # a .pyc) again at start: ~3.5 ms of every call that no user pays after the first.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    began = time.monotonic()
    tools = _env.find_tools(install=not args.no_install)
    if os.environ.get(NETNS_MARK) != str(os.getpid()):
        # The run goes on in a network namespace of its own, loopback up (peers missing
        # were installed above, on the host's network): boxd's default bridge and rules
        # stay off the host's network, and the daemon, the loopback registry and the
        # clients still see each other.
        os.execvp(
            "unshare",
            ["unshare", "--net", "--", "sh", "-c",
             f'ip link set lo up && {NETNS_MARK}=$$ exec "$0" "$@"',
             sys.executable, "-m", "bench", *sys.argv[1:], "--no-install"],
        )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="boxd-bench-"))
    bench = Bench(work, tools, args.quick)
    cases: list[Case] = []
    problems: list[str] = []
    try:
        bench.daemon.start()
        for name in only:
            print(f"{name}:", flush=True)
            made = getattr(bench, name)()
            cases.extend(made if isinstance(made, list) else [made])
    finally:
        problems = cleanup(bench)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": args.quick,
        "host": f"Linux {platform.release()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "seconds": round(time.monotonic() - began, 1),
        "cleanup_problems": problems,
        "work": str(work),
    }
    write(args.out, meta, {name: t.to_json() for name, t in tools.items()}, cases)
    print((args.out / "results.md").read_text())
    for problem in problems:
        print(f"bench: cleanup: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cleanup(bench: Bench) -> list[str]:
    """Remove what the run made; return what could not be removed."""
    problems = []
    stopped = bench.daemon.stop()
    if stopped:
        problems.append(stopped)
    bench.podman_cleanup()
    for runtime, state, wrap in (
        ("crun", bench.crun_state, ["sh", str(_env.CGNS)]),
        ("runc", bench.runc_state, []),
        ("boxd-runtime", bench.boxd_runtime_state, []),
    ):
        path = BOXD_RUNTIME if runtime == "boxd-runtime" else bench.tools[runtime].path
        if not path or not state.exists():
            continue
        ids = subprocess.run(
            [path, "--root", str(state), "list", "-q"], capture_output=True, text=True
        ).stdout.split()
        for cid in ids:
            r = subprocess.run(
                [*wrap, path, "--root", str(state), "delete", "-f", cid], capture_output=True
            )
            if r.returncode != 0:
                problems.append(f"{runtime} delete -f {cid}: {r.stderr.decode().strip()}")
    prefixes = [bench.name("")]  # this run's own: other runs may be going on
    try:
        from boxd._oci._runtime import cgroup_location
        from boxd._oci._state import Root
        from boxd._supervisor import cgroup_name

        prefixes += [cgroup_name(bench.daemon.root), cgroup_name(bench.work / LIBRARY_ROOT)]
        # boxd-runtime's group for our --root only: other runs' may be in use.
        prefixes.append(cgroup_location(Root(str(bench.boxd_runtime_state)), "", "x", False)[1])
    except ImportError as exc:
        problems.append(f"boxd's cgroup names are unknown ({exc}): its cgroups may remain")
    problems += _env.remove_cgroups(tuple(prefixes))
    problems += [f"had to unmount {m}" for m in _env.unmount_below(bench.work)]
    shutil.rmtree(bench.work, ignore_errors=True)
    if bench.work.exists():
        problems.append(f"could not remove {bench.work}")
    return problems


if __name__ == "__main__":
    sys.exit(main())

"""The five cases.  Each lists every entry it knows, measured or with the reason it failed."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import _env, _oci
from ._boxd import PY, Daemon, wait_for_deletions
from ._measure import (
    concurrent,
    hyperfine,
    in_turn,
    run_checked,
    samples,
    sequential,
    shell_script,
)
from ._report import BASELINE, OURS, PEER, REFERENCE, Case

MEMORY_LIMIT = 64 << 20
SETTLE = 0.025  # seconds between the runs of a start pair taken in turn
LIBRARY_ROOT = "library-root"  # in the work directory: the library's supervisor's state
LIBRARY_ROUNDS = 5  # the library's single start against crun's, in turn: rounds of runs / 5
BOXD_RUNTIME = str(Path(PY).with_name("boxd-runtime"))
# conmon's cost per container as documented for this host (../shared/peers/README.md).
CONMON_DOCUMENTED_KIB = 2.5e6 / 1024


@dataclass(frozen=True)
class Sizes:
    runs: int  # runs of one start, one `ps`
    sequential: int  # containers one after another
    concurrent: int  # containers at once
    repeats: int  # repeats of the two above
    listed: int  # created containers for `ps`
    idle: int  # idle containers for the memory case
    podman_idle: int  # idle podman containers (conmon measured)
    output_mib: int
    output_runs: int
    ps_runs: int  # rounds of `ps -a` in turn with `python -c pass` (~30 ms each)

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(3, 5, 3, 1, 5, 3, 1, 16, 2, 3)
        return cls(30, 100, 20, 3, 100, 20, 5, 256, 5, 100)


class Bench:
    def __init__(self, work: Path, tools: dict[str, _env.Tool], quick: bool) -> None:
        self.work = work
        self.tools = tools
        self.sizes = Sizes.of(quick)
        self.daemon = Daemon(work)
        # What this run names outside its work directory (peers' container ids, which
        # runc and crun also name cgroups by, podman's cgroup parent) starts with this:
        # unique to the run, so that runs at once never share a cgroup, and cleanup
        # removes only this run's (:meth:`name`).
        self.tag = "bench-" + work.name.removeprefix("boxd-bench-")
        self.crun_state = work / "crun-state"
        self.runc_state = work / "runc-state"
        self.boxd_runtime_state = work / "boxd-runtime-state"
        self.podman_dir = work / "podman"
        self._library: dict[str, list[float] | Exception] = {}
        self.rootfs_error = ""
        self.bundle_error = ""
        self.rootfs = work / "rootfs"
        self.bundle = work / "bundle"
        try:
            _env.busybox_root(tools["busybox"].require(), self.rootfs)
        except Exception as exc:  # every case then reports it
            self.rootfs_error = f"no busybox root filesystem: {exc}"
        try:
            self.root()
            _env.oci_bundle(tools["runc"].require(), self.rootfs, self.bundle, memory=MEMORY_LIMIT)
        except Exception as exc:
            self.bundle_error = f"no OCI bundle: {exc}"

    def name(self, what: str) -> str:
        """A name of this run's own (a container id, a cgroup): ``bench-<run>-what``."""
        return f"{self.tag}-{what}"

    # ---- what the entries need; each raises why it is missing --------------------------

    def root(self) -> str:
        if self.rootfs_error:
            raise RuntimeError(self.rootfs_error)
        return str(self.rootfs)

    def boxctl(self, *args: str) -> list[str]:
        self.root()
        self.tools["hyperfine"].require()
        self.daemon.require()
        return self.daemon.boxctl(*args)

    def docker(self, *args: str) -> list[str]:
        """The docker CLI (client only) against the daemon's Engine API socket."""
        docker = shutil.which("docker")
        if docker is None:
            raise RuntimeError("the docker CLI is not on PATH")
        self.boxctl()
        return [
            "env",
            f"DOCKER_HOST=unix://{self.daemon.socket.with_name('docker.sock')}",
            f"DOCKER_CONFIG={self.work / 'docker-config'}",
            docker,
            *args,
        ]

    def hyperfine(
        self, argv: list[str], *, runs: int, wrap: bool = False, warmup: int = 1
    ) -> list[float]:
        self.tools["hyperfine"].require()
        cgns = ["sh", str(_env.CGNS)] if wrap else []
        try:
            return hyperfine(argv, runs=runs, work=self.work, wrap=cgns, warmup=warmup)
        finally:
            self.deletions_done()

    def deletions_done(self) -> None:
        """Wait (untimed) for the deletions boxd left for when it is quiet: the daemon's
        and the library's (see wait_for_deletions)."""
        wait_for_deletions(self.daemon.root)
        wait_for_deletions(self.work / LIBRARY_ROOT)

    def runtime_path(self, runtime: str) -> str:
        return BOXD_RUNTIME if runtime == "boxd-runtime" else self.tools[runtime].require()

    def oci_run(self, runtime: str) -> list[str]:
        """``RUNTIME --root STATE run --bundle BUNDLE`` (the container id goes last)."""
        self.root()
        if self.bundle_error:
            raise RuntimeError(self.bundle_error)
        state = {"crun": self.crun_state, "runc": self.runc_state}.get(
            runtime, self.boxd_runtime_state
        )
        return [
            self.runtime_path(runtime),
            "--root",
            str(state),
            "run",
            "--bundle",
            str(self.bundle),
        ]

    def bwrap(self, command: str = "/bin/true") -> list[str]:
        root = self.root()
        return [
            self.tools["bwrap"].require(),
            "--unshare-all",
            "--ro-bind",
            root,
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            command,
        ]

    def podman(self, *args: str, runtime: str | None = None) -> list[str]:
        self.root()
        p = self.podman_dir
        return [
            self.tools["podman"].require(),
            *(["--runtime", runtime] if runtime else []),
            "--root",
            str(p / "root"),
            "--runroot",
            str(p / "run"),
            "--tmpdir",
            str(p / "tmp"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            *args,
        ]

    def podman_run(self, *args: str, runtime: str | None = None) -> list[str]:
        # podman's --rootfs is a switch: the root directory is the first positional argument,
        # so every option goes before it.  Without explicit limits podman asks crun for more
        # open files than we may raise to (no CAP_SYS_RESOURCE here); crun also failed with
        # our own nproc limit as both values, and succeeds with the README's 32768.
        nofile = min(20000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        nproc = min(32768, resource.getrlimit(resource.RLIMIT_NPROC)[1])
        return self.podman(
            "run",
            "--network",
            "none",
            "--cgroup-parent",
            "/" + self.name("podman"),
            "--memory",
            "64m",
            "--ulimit",
            f"nofile={nofile}:{nofile}",
            "--ulimit",
            f"nproc={nproc}:{nproc}",
            *args,
            "--rootfs",
            self.root(),
            runtime=runtime,
        )

    def library(self, mode: str) -> list[float]:
        """Milliseconds of one mode of the in-process library run (``MODE_lag``: its event
        loop's longest block; ``MODE_lag_cpu``: that step's CPU; ``MODE_crun``: crun's of
        the same shape), measured when its case runs, in turn with crun's."""
        base = mode.partition("_")[0]
        if base not in self._library:
            self._library.update(self._library_in_turn(base))
        result = self._library[mode]
        if isinstance(result, Exception):
            raise result
        return result

    def _library_in_turn(self, base: str) -> dict[str, list[float] | Exception]:
        """The library's rounds of ``base`` and crun's, one of each per round, the order
        turned every round, after a first round that is not counted (as :func:`in_turn`
        takes the CLI's pairs): taken minutes apart, the machine's load between them moved
        their ratio by a tenth and more (1.01x and 1.13x in two runs of one build)."""
        s = self.sizes
        if base == "start":
            rounds, n, count = LIBRARY_ROUNDS, max(1, s.runs // LIBRARY_ROUNDS), 1
            peer = [*self.oci_run("crun"), self.name("crun")]
        else:
            shape = sequential if base == "sequential" else concurrent
            rounds, n = s.repeats, 1
            count = s.sequential if base == "sequential" else s.concurrent
            crun = shlex.join(self.oci_run("crun")) + f' "{self.name("crun")}-$i"'
            peer = shell_script(self.work, f"crun-{base}", shape(crun, count))
        keys = ("", "_lag", "_lag_cpu", "_crun")
        out: dict[str, list[float] | Exception] = {f"{base}{k}": [] for k in keys}
        errors = self.work / f"library-{base}.err"
        with errors.open("wb") as err:
            proc = subprocess.Popen(
                [PY, "-m", "bench._library", "--root", str(self.work / LIBRARY_ROOT),
                 "--image", self.root()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for i in range(rounds + 1):
                for side in ("library", "crun") if i % 2 else ("crun", "library"):
                    if side == "crun":
                        self._peer_round(out, f"{base}_crun", peer, n, counted=i > 0)
                    else:
                        self._library_round(proc, out, base, f"{base} {n} {count}", i > 0)
                        self.deletions_done()
        finally:
            proc.stdin.close()
            if proc.wait(timeout=120) != 0:
                tail = errors.read_text(errors="replace").strip()[-300:]
                failure = RuntimeError(f"bench._library exited {proc.returncode}: {tail}")
                for k in keys[:3]:
                    out[f"{base}{k}"] = failure
        return out

    def _peer_round(
        self,
        out: dict[str, list[float] | Exception],
        key: str,
        argv: list[str],
        n: int,
        *,
        counted: bool,
    ) -> None:
        got = out[key]
        if isinstance(got, Exception):
            return
        try:
            # A single start gets a warm-up run, as the library's round does (see
            # bench._library); 20 or 100 containers a round are their own.
            ms = self.hyperfine(argv, runs=n, wrap=True, warmup=1 if key == "start_crun" else 0)
        except Exception as exc:
            out[key] = exc
            return
        if counted:
            got.extend(ms)

    @staticmethod
    def _library_round(
        proc: subprocess.Popen[str],
        out: dict[str, list[float] | Exception],
        base: str,
        request: str,
        counted: bool,
    ) -> None:
        if isinstance(out[base], Exception):
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline() or '{"error": "no answer"}')
        except (OSError, ValueError) as exc:
            answer = {"error": str(exc)}
        if "error" in answer:
            for k in ("", "_lag", "_lag_cpu"):
                out[f"{base}{k}"] = RuntimeError(answer["error"])
            return
        if counted:
            for k, field in (("", "samples"), ("_lag", "lag"), ("_lag_cpu", "lag_cpu")):
                got = out[f"{base}{k}"]
                assert not isinstance(got, Exception)
                got.extend(float(x) for x in answer[field])

    def network(self) -> list[Case]:
        """10-12: the bridge's cost and throughput (see bench/_network.py)."""
        from ._network import network_cases

        return network_cases(self)

    def images(self) -> list[Case]:
        """7-9: unpack, pull, run of a pulled image (see bench/_images.py)."""
        from ._images import image_cases

        return image_cases(self.work / "images", Path(self.root()), self.boxctl(), self.sizes.runs)

    # ---- 1. start to exit -------------------------------------------------------------

    def start(self) -> Case:
        case = Case("start", "1. Start to exit of /bin/true, 64 MiB memory limit", "ms")
        runs = self.sizes.runs
        run = ("run", "--rm", "--memory", "64m")
        # The pair runs in turn (one of each per round, see in_turn), so that both
        # see the same load: run after run, runc's median moved from 42 to 78 ms within
        # half an hour here.  A pause after each run keeps what either leaves to finish
        # after it returns (boxd's cgroup and directory removal) out of the other's time.
        # The run without the /proc view is taken in the same rounds: measured apart (with
        # hyperfine, after the pair) it read 15-35 ms less than the run with the view on
        # this VM in sessions 40-41, where a trial daemon showed the view's ~2 ms.
        pair = _commands(
            {
                "boxctl run --rm": lambda: self.boxctl(*run, self.root(), "/bin/true"),
                "boxctl run --rm --procview off": lambda: self.boxctl(
                    *run, "--procview", "off", self.root(), "/bin/true"
                ),
                "runc run": lambda: [*self.oci_run("runc"), self.name("runc")],
            }
        )
        timed = in_turn(pair, runs, settle=SETTLE, after=self.deletions_done)
        case.measure(
            "boxctl run --rm",
            OURS,
            partial(samples, timed, "boxctl run --rm"),
            note="CLI -> daemon -> overlay root + cgroup -> exit code back; in turn with runc run",
        )
        case.measure(
            "boxctl run --rm --procview off",
            OURS,
            partial(samples, timed, "boxctl run --rm --procview off"),
            note="without the FUSE /proc view bind; in turn with the two runs beside it",
        )
        # The Engine API's cost: the docker CLI against boxd's Docker socket, against
        # boxctl on the same image (Docker clients cannot name a root directory).
        case.measure(
            "boxctl run --rm default",
            OURS,
            lambda: self.hyperfine(self.boxctl(*run, "default", "true"), runs=runs),
            note="the image default, for the docker CLI entry below",
        )
        case.measure(
            "docker run --rm default (Engine API)",
            OURS,
            lambda: self.hyperfine(self.docker(*run, "default", "true"), runs=runs),
            note="the docker CLI against boxd's Docker socket: create, attach, wait, start",
        )
        case.measure(
            "library run+wait",
            OURS,
            lambda: self.library("start"),
            note="open_supervisor, run, wait in one process (remove not timed); --network none;"
            " in turn with crun run",
        )
        case.measure(
            "library: the event loop's longest block",
            OURS,
            lambda: self.library("start_lag"),
            metric="loop",
            note="per run: the longest step of any Trio task (target: at most 1 ms)",
        )
        case.measure(
            "library: that longest step's CPU (information)",
            OURS,
            lambda: self.library("start_lag_cpu"),
            metric="loop-cpu",
            note="the loop thread's CPU time in the step above (the rest of it: waiting)",
        )
        case.measure(
            "crun run",
            PEER,
            lambda: self.library("start_crun"),
            note="through cgns.sh (crun 1.8 refuses hybrid cgroups); in turn with the library",
        )
        case.measure(
            "runc run",
            PEER,
            partial(samples, timed, "runc run"),
            note="in turn with boxctl run --rm",
        )
        case.measure(
            "bwrap --unshare-all",
            PEER,
            lambda: self.hyperfine(self.bwrap(), runs=runs),
            note="no cgroup: no memory limit",
        )
        case.measure(
            "podman run --rm --rootfs",
            PEER,
            lambda: self.hyperfine([*self.podman_run("--rm"), "/bin/true"], runs=runs, wrap=True),
            note="podman + crun + conmon, --network none, through cgns.sh",
        )
        return case

    # ---- 6. the OCI runtime (bench/_oci.py) ------------------------------------------

    def oci(self) -> list[Case]:
        return _oci.cases(self)

    # ---- 2. many ----------------------------------------------------------------------

    def many(self) -> list[Case]:
        s = self.sizes
        seq = Case("sequential", f"2a. {s.sequential} containers one after another (total)", "ms")
        con = Case("concurrent", f"2b. {s.concurrent} containers at once (total)", "ms")
        self._many(seq, s.sequential, sequential, note="")
        self._many(con, s.concurrent, concurrent, note="; a Trio nursery")
        return [seq, con]

    def _many(self, case: Case, count: int, shape: Callable[[str, int], str], *, note: str) -> None:
        per = f"per container: median / {count}"

        def script(command: list[str], suffix: str = "", name: str = "") -> list[str]:
            body = shape(shlex.join(command) + suffix, count)
            return shell_script(self.work, f"{case.key}-{name or len(case.entries)}", body)

        def timed(command: list[str], suffix: str = "", *, wrap: bool = False) -> list[float]:
            return self.hyperfine(script(command, suffix), runs=self.sizes.repeats, wrap=wrap)

        # boxctl's and runc's totals (the pair) are taken in turn, as in case 1.
        pair = _commands(
            {
                "boxctl run --rm": lambda: script(
                    self.boxctl("run", "--rm", "--memory", "64m", self.root(), "/bin/true"),
                    name="boxctl",
                ),
                "runc run": lambda: script(
                    self.oci_run("runc"), f' "{self.name("runc")}-$i"', "runc"
                ),
            }
        )
        turns = in_turn(pair, self.sizes.repeats, after=self.deletions_done)
        case.measure(
            "boxctl run --rm",
            OURS,
            partial(samples, turns, "boxctl run --rm"),
            note=per + "; in turn with runc run",
        )
        case.measure(
            "library run+wait+remove",
            OURS,
            lambda: self.library(case.key),
            note=per + note + "; in turn with crun run",
        )
        case.measure(
            "library: the event loop's longest block",
            OURS,
            lambda: self.library(f"{case.key}_lag"),
            metric="loop",
            note="per repeat: the longest step of any Trio task (target: at most 1 ms)",
        )
        case.measure(
            "library: that longest step's CPU (information)",
            OURS,
            lambda: self.library(f"{case.key}_lag_cpu"),
            metric="loop-cpu",
            note="the loop thread's CPU time in the step above (the rest of it: waiting)",
        )
        case.measure(
            "crun run",
            PEER,
            lambda: self.library(f"{case.key}_crun"),
            note=per + "; in turn with the library",
        )
        case.measure(
            "runc run",
            PEER,
            partial(samples, turns, "runc run"),
            note=per + "; in turn with boxctl run --rm",
        )
        case.measure("bwrap --unshare-all", PEER, lambda: timed(self.bwrap()), note=per)
        case.measure(
            "podman run --rm --rootfs",
            PEER,
            lambda: timed([*self.podman_run("--rm"), "/bin/true"], wrap=True),
            note=per + "; through cgns.sh",
        )

    # ---- 3. listing -------------------------------------------------------------------

    def listing(self) -> Case:
        s = self.sizes
        case = Case("list", "3. boxctl ps -a, CLI start-up included", "ms")
        # Each ps runs in turn with `python -c pass` (see in_turn), at each daemon state: run
        # one entry after the other, a change of load between them moved the ratio more than
        # the target's whole margin (0.70x to 2.0x in four runs within two minutes, session
        # 8); 100 rounds, as they are short.  The baseline is every run of `python -c pass`
        # of both states.
        states = {0: "boxctl ps -a (0 containers)", s.listed: f"boxctl ps -a ({s.listed} created)"}
        timed: dict[str, list[float] | Exception] = {}
        passes: list[float] = []
        for count, name in states.items():
            try:
                got = self._ps(count, name)
            except Exception as exc:
                timed[name] = exc
                continue
            timed[name] = got[name]
            baseline = got["python -c pass"]
            if isinstance(baseline, Exception):
                timed["python -c pass"] = baseline
            else:
                passes += baseline
        case.measure(
            "python -c pass",
            BASELINE,
            partial(samples, {"python -c pass": passes, **timed}, "python -c pass"),
            note="the same interpreter; in turn with each ps",
        )
        for name in states.values():
            case.measure(name, OURS, partial(samples, timed, name))
        return case

    def _ps(self, count: int, name: str) -> dict[str, list[float] | Exception]:
        """``boxctl ps -a`` with ``count`` created containers and ``python -c pass``, in turn."""
        self.daemon.remove_all()
        try:
            create = shlex.join(self.boxctl("create", "--memory", "64m", self.root(), "/bin/true"))
            if count:
                run_checked(
                    shell_script(
                        self.work, f"create-{count}", sequential(create + " >/dev/null", count)
                    )
                )
            listed = run_checked(self.boxctl("ps", "-a", "-q")).split()
            if len(listed) != count:
                raise RuntimeError(f"boxctl ps -a listed {len(listed)} containers, not {count}")
            pair: dict[str, list[str] | Exception] = {
                "python -c pass": [PY, "-c", "pass"],
                name: self.boxctl("ps", "-a"),
            }
            return in_turn(pair, self.sizes.ps_runs, after=self.deletions_done)
        finally:
            self.daemon.remove_all()

    # ---- 4. memory --------------------------------------------------------------------

    def memory(self) -> Case:
        s = self.sizes
        case = Case(
            "memory", "4. Memory: the idle daemon, and the cost of an idle container", "KiB"
        )
        idle: dict[str, float] = {}
        per: dict[str, float] = {}
        helpers: list[float] = []
        shim: dict[str, float] = {}
        try:
            self.daemon.require()
            self.daemon.remove_all()
            # Idle: a second after the last request, when the daemon's background clean-up
            # of the removed containers (their directories, then the freed heap) is done.
            time.sleep(1)
            idle = smaps(self.daemon.pid)
            run = self.boxctl("run", "-d", "--memory", "64m", self.root(), "/bin/sleep", "1000")
            for _ in range(s.idle):
                run_checked(run)
            busy = smaps(self.daemon.pid)
            per = {k: (busy[k] - idle[k]) / s.idle for k in busy}
            helpers = [len(helper_processes(self.daemon.pid)) / s.idle]
            shim = _per_process(_shims(self.daemon.root), s.idle)
            error = ""
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.daemon.remove_all()
        both = partial(_rss_and_pss, case)
        both("boxd daemon, idle", OURS, idle, error, "idle", "after the cases above, no container")
        trio_idle: dict[str, float] = {}
        trio_error = ""
        try:
            trio_idle = bare_trio()
        except Exception as exc:
            trio_error = f"{type(exc).__name__}: {exc}"
        both("a bare Trio program", BASELINE, trio_idle, trio_error, "idle")
        both(
            "boxd daemon, per idle container",
            OURS,
            per,
            error,
            "per container",
            f"(daemon with {s.idle} `sleep` containers - idle daemon) / {s.idle}",
        )
        both(
            "boxd-shim, per container (live restore's keeper)",
            OURS,
            shim,
            error,
            "per container",
            "budget: 1 MiB; it is what runs while no daemon does",
        )
        case.measure(
            "boxd processes per container besides the container's own",
            OURS,
            lambda: helpers if helpers else _value({}, "", error or "not measured"),
            metric="processes per container",
        )
        conmon, conmon_count, conmon_error = self._conmon()
        both(
            "podman's conmon, per container",
            PEER,
            conmon,
            conmon_error,
            "per container",
            f"measured here: {s.podman_idle} podman `sleep` containers",
        )
        case.measure(
            "conmon, documented (Rss)",
            REFERENCE,
            lambda: [CONMON_DOCUMENTED_KIB],
            metric="per container Rss",
            note="~2.5 MB per container (../shared/peers/README.md); not measured in this run",
        )
        case.measure(
            "podman: conmon processes per container",
            PEER,
            lambda: [conmon_count] if not conmon_error else _value({}, "", conmon_error),
            metric="processes per container",
        )
        return case

    def _conmon(self) -> tuple[dict[str, float], float, str]:
        """Rss/Pss of podman's conmon per idle container, the conmons per container, or why not."""
        n = self.sizes.podman_idle
        cgns = ["sh", str(_env.CGNS)]
        try:
            for _ in range(n):
                run_checked(cgns + self.podman_run("-d") + ["/bin/sleep", "1000"])
            pids = [
                pid
                for pid in all_pids()
                if _comm(pid) == "conmon" and str(self.podman_dir) in _cmdline(pid)
            ]
            return _per_process(pids, n), len(pids) / n, ""
        except Exception as exc:
            return {}, 0.0, f"{type(exc).__name__}: {exc}"
        finally:
            self.podman_cleanup()

    def podman_cleanup(self) -> None:
        if self.tools["podman"].path and self.podman_dir.exists():
            subprocess.run(
                ["sh", str(_env.CGNS), *self.podman("rm", "--force", "--time", "0", "--all")],
                capture_output=True,
                timeout=120,
            )

    # ---- 5. output --------------------------------------------------------------------

    def output(self) -> Case:
        s = self.sizes
        size = s.output_mib << 20
        case = Case("output", f"5. Output: a container writes {s.output_mib} MiB to stdout", "ms")
        dd = f"dd if=/dev/zero bs=64k count={s.output_mib * 16} 2>/dev/null"

        def counted(argv: Callable[[], list[str]], check: Callable[[], int] | None) -> list[str]:
            """The command, once the bytes it delivers were counted (all or an error)."""
            command = argv()
            got = check() if check else count_stdout(command)
            if got != size:
                raise RuntimeError(f"{got} of {size} bytes arrived")
            return command

        def rate(name: str, role: str, how: Callable[[], list[float]], note: str = "") -> None:
            e = case.measure(name, role, how, note=note)
            if e.median:
                e.note = f"{s.output_mib / (e.median / 1000):,.0f} MiB/s" + (
                    f"; {note}" if note else ""
                )

        host_dd = f"{self.rootfs / 'bin' / 'busybox'} {dd}"
        # The pipe entries run in turn, one of each per round, not each in a row: on this
        # 2-vCPU VM a raw pipe takes 0.1-0.2 s when dd and cat share a CPU and 0.35-0.8 s
        # when they are on two (wakeups and copies across vCPUs), and where the scheduler
        # puts them follows the machine's load; the log's page cache is fast or slow as
        # the pages it gets were freed lately or long ago.  In turn, every entry sees the
        # same conditions.  The raw pipe pinned (taskset) to one CPU and to two bounds
        # what the placement alone does; the same bytes into a new file (then removed)
        # what the page cache alone does (the detached entry writes its log so).
        cpus = sorted(os.sched_getaffinity(0))[:2]
        sink = self.work / "pipe-sink"

        def pinned(two: bool) -> list[str]:
            if two and len(cpus) < 2:
                raise RuntimeError("only one CPU may be used here")
            a, b = cpus[0], cpus[1 if two else 0]
            return ["sh", "-c", f"taskset -c {a} {host_dd} | taskset -c {b} cat >/dev/null"]

        pipes: list[tuple[str, str, Callable[[], list[str]], Callable[[], int] | None, str]] = [
            (
                "raw pipe: dd to cat",
                BASELINE,
                lambda: ["sh", "-c", f"{host_dd} | cat >/dev/null"],
                lambda: count_stdout(["sh", "-c", host_dd]),
                "in turn with the entries below",
            ),
            (
                "raw pipe: dd and cat on one CPU",
                BASELINE,
                lambda: pinned(two=False),
                lambda: count_stdout(["sh", "-c", host_dd]),
                f"taskset: both on CPU {cpus[0]}",
            ),
            (
                "raw pipe: dd and cat on two CPUs",
                BASELINE,
                lambda: pinned(two=True),
                lambda: count_stdout(["sh", "-c", host_dd]),
                f"taskset: CPU {cpus[0]} and {cpus[-1]}",
            ),
            (
                "raw pipe into a file: dd to cat > FILE, rm",
                BASELINE,
                lambda: ["sh", "-c", f"{host_dd} | cat >{sink} && rm {sink}"],
                lambda: count_stdout(["sh", "-c", host_dd]),
                "the page cache's part of the log entry: the same bytes into a new file",
            ),
            (
                "boxctl run -d: to the log, nobody attached",
                OURS,
                lambda: self._detached(dd),
                lambda: self._log_bytes(dd),
                "--log-max-size above the output; includes run -d, wait and rm (3 CLI calls)",
            ),
            (
                "boxctl run --rm: one client attached",
                OURS,
                lambda: self.boxctl("run", "--rm", self.root(), "sh", "-c", dd),
                None,
                "also written to the log",
            ),
        ]
        commands: dict[str, list[str] | Exception] = {}
        for name, _, argv, check, _ in pipes:
            try:
                commands[name] = counted(argv, check)
            except Exception as exc:
                commands[name] = exc
        timed = in_turn(commands, s.output_runs, after=self.deletions_done)
        # The two PTY entries in turn with each other, as the pipes: both are bound by the
        # wakeups per 4 KiB of a terminal, which the machine's load stretches.
        ptys: list[tuple[str, str, Callable[[], list[str]]]] = [
            (
                "PTY: script -qec dd",
                BASELINE,
                lambda: [self.tools["script"].require(), "-qec", host_dd, "/dev/null"],
            ),
            (
                "boxctl run --rm -t: through a PTY, attached",
                OURS,
                lambda: self.boxctl("run", "--rm", "-t", self.root(), "sh", "-c", dd),
            ),
        ]
        pty_commands: dict[str, list[str] | Exception] = {}
        for name, _, argv in ptys:
            try:
                pty_commands[name] = counted(argv, None)
            except Exception as exc:
                pty_commands[name] = exc
        pty_timed = in_turn(pty_commands, s.output_runs, after=self.deletions_done)
        for name, role, _, _, note in pipes[:4]:
            rate(name, role, partial(samples, timed, name), note)
        rate(ptys[0][0], ptys[0][1], partial(samples, pty_timed, ptys[0][0]), "in turn with -t")
        for name, role, _, _, note in pipes[4:]:
            rate(name, role, partial(samples, timed, name), note)
        rate(ptys[1][0], ptys[1][1], partial(samples, pty_timed, ptys[1][0]))
        return case

    def _whole_log(self) -> tuple[str, str]:
        """A log size limit above the output, so the log keeps all of it (default: 10 MiB)."""
        return ("--log-max-size", f"{2 * self.sizes.output_mib}m")

    def _detached(self, dd: str) -> list[str]:
        box = shlex.join(self.boxctl())
        run = shlex.join(self.boxctl("run", "-d", *self._whole_log(), self.root(), "sh", "-c", dd))
        return shell_script(
            self.work,
            "detached-output",
            f'cid=$({run}) || exit 1\ncode=$({box} wait "$cid") || exit 1\n'
            f'{box} rm "$cid" >/dev/null || exit 1\n[ "$code" = 0 ]',
        )

    def _log_bytes(self, dd: str) -> int:
        cid = run_checked(
            self.boxctl("run", "-d", *self._whole_log(), self.root(), "sh", "-c", dd)
        ).strip()
        try:
            run_checked(self.boxctl("wait", cid))
            return count_stdout(self.boxctl("logs", cid))
        finally:
            subprocess.run(self.boxctl("rm", "-f", cid), capture_output=True)


def _rss_and_pss(
    case: Case,
    name: str,
    role: str,
    values: dict[str, float],
    error: str,
    metric: str,
    note: str = "",
) -> None:
    """Two entries of ``case`` from one smaps reading: ``NAME (Rss)`` with metric ``METRIC
    Rss``, and the same for Pss; both carry ``error`` instead when the reading failed."""
    for key in ("Rss", "Pss"):
        case.measure(
            f"{name} ({key})",
            role,
            partial(_value, values, key, error),
            metric=f"{metric} {key}",
            note=note,
        )


def _value(values: dict[str, float], key: str, error: str) -> list[float]:
    if error:
        raise RuntimeError(error)
    return [values[key]]


def smaps(pid: int) -> dict[str, float]:
    """Rss and Pss of a process in KiB, from /proc/PID/smaps_rollup."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key] = float(rest.split()[0])
    return out


def _per_process(pids: list[int], n: int) -> dict[str, float]:
    """Rss and Pss of ``pids`` together, divided by ``n`` (the containers they serve)."""
    total = {"Rss": 0.0, "Pss": 0.0}
    for pid in pids:
        for k, v in smaps(pid).items():
            total[k] += v
    return {k: v / n for k, v in total.items()}


def _shims(root: Path) -> list[int]:
    """The boxd-shims of the daemon on ``root`` (each works in its container's directory)."""
    found = []
    for pid in all_pids():
        with contextlib.suppress(OSError):
            if _comm(pid) == "boxd-shim" and Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(
                root
            ):
                found.append(pid)
    return found


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def helper_processes(daemon: int) -> list[int]:
    """The daemon's descendants in its own PID namespace: anything but containers.

    A container's first process is the init of a new PID namespace, so it and everything
    below it are in another namespace; a monitor or shim would be in the daemon's.
    """
    parents: dict[int, int] = {}
    for pid in all_pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parents[pid] = int(stat.rpartition(")")[2].split()[1])
    ns = os.readlink(f"/proc/{daemon}/ns/pid")  # "pid:[inode]" (resolve() would not compare)

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == daemon:
                return True
        return False

    helpers = []
    for pid in parents:
        if descends(pid):
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                    helpers.append(pid)
            except OSError:
                continue
    return helpers


def bare_trio() -> dict[str, float]:
    """Rss and Pss of an idle Trio program on the same interpreter."""
    code = "import trio, sys; print('ready', flush=True); trio.run(trio.sleep_forever)"
    proc = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the Trio program exited {proc.wait()} before it was ready")
        time.sleep(0.2)
        return smaps(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _commands(makers: dict[str, Callable[[], list[str]]]) -> dict[str, list[str] | Exception]:
    """Each maker's command, or the reason it cannot run here."""
    out: dict[str, list[str] | Exception] = {}
    for name, make in makers.items():
        try:
            out[name] = make()
        except Exception as exc:
            out[name] = exc
    return out


def count_stdout(argv: list[str]) -> int:
    """Bytes ``argv`` writes to stdout (read and dropped); raises if it fails."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        total = 0
        while chunk := proc.stdout.read(1 << 20):
            total += len(chunk)
        proc.stdout.close()
        errors.seek(0)
        err = errors.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {proc.returncode}: {err[-300:]}")
    return total

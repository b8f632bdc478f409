"""Containers' cgroups on pure v2, hybrid and pure v1 hosts.

Each controller is used where the host has it: on the unified (v2) hierarchy if it is
listed in our own v2 cgroup's ``cgroup.controllers``, else on its v1 hierarchy.  A
container's cgroup is made in every hierarchy we use, below our OWN cgroup there (or a
``--cgroup-parent``): ``<own>/boxd/<container-id>``.  No root cgroup's file is ever written
and no existing process is ever moved.  The unified hierarchy is used even when it holds no
controller (a hybrid host): its ``cgroup.kill`` ends every process of a container at once.

On v2 a controller must be enabled in ``cgroup.subtree_control`` of every ancestor.  We
enable it in our own cgroup only when that is legal (the no-internal-processes rule makes
it fail with EBUSY while our cgroup holds processes); a controller that cannot be enabled
is reported as unavailable, and limits that need it are refused with a clear message.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
from pathlib import Path

import attrs
import trio

log = logging.getLogger("boxd.cgroup")

WANTED = ("memory", "cpu", "cpuacct", "pids", "cpuset", "freezer", "blkio", "io", "devices")
# The device nodes a container may open (v1 devices controller): null, zero, full, random,
# urandom, tty, ptmx and its pts; nothing else, even if CAP_MKNOD makes a node of a disk.
ALLOWED_DEVICES = (
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
)
DEFAULT_PIDS_LIMIT = 4096
CPU_PERIOD = 100_000  # microseconds
MIN_MEMORY = 6 << 20  # as Docker: below this the container cannot even start
UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX
KILL_TIMEOUT = 10.0


class CgroupError(OSError):
    pass


@attrs.frozen
class Limits:
    memory: int | None = None
    memory_swap: int | None = None  # memory + swap (Docker); -1 unlimited swap
    cpus: float | None = None
    cpu_shares: int | None = None
    pids_limit: int | None = None  # -1 or 0: unlimited; None: DEFAULT_PIDS_LIMIT
    cpuset_cpus: str | None = None


@attrs.frozen
class Stats:
    memory_usage: int
    memory_limit: int | None
    memory_peak: int | None
    cpu_user_ns: int
    cpu_system_ns: int
    cpu_total_ns: int
    pids: int
    io_read_bytes: int
    io_write_bytes: int


def parse_cpu_list(text: str) -> set[int]:
    """``0-2,5`` -> {0, 1, 2, 5}; ValueError naming the text when malformed."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"invalid CPU list {text!r}: use e.g. 0-1,3")
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ValueError(f"invalid CPU list {text!r}: {part} is backwards")
        cpus.update(range(first, last + 1))
    return cpus


def online_cpus() -> set[int]:
    return parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text())


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), linearly, as runc and crun
    convert it: 2 -> 1, 1024 -> 39, 262144 -> 10000."""
    return 1 + ((shares - 2) * 9999) // 262142


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from None


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value.split()[0])
    return out


@attrs.frozen
class Hierarchy:
    """One mounted hierarchy we create container cgroups in."""

    version: int  # 1 or 2
    controllers: frozenset[str]  # the controllers we use there
    base: Path  # <mount>/<own path>/boxd (or the parent)


class CgroupHost:
    def __init__(self, hierarchies: list[Hierarchy], mode: str) -> None:
        self.hierarchies = hierarchies
        self.mode = mode

    @classmethod
    def detect(
        cls,
        *,
        parent: str | None = None,
        mountinfo: str = "/proc/self/mountinfo",
        own_cgroup: str = "/proc/self/cgroup",
        prefix: str = "",
        name: str = "boxd",
    ) -> CgroupHost:
        """Find the hierarchies.  Containers' cgroups go below ``<own>/<name>`` (or
        ``parent``); ``mountinfo``, ``own_cgroup`` and ``prefix`` (prepended to mount
        points) let tests describe a fake host."""
        own: dict[str, str] = {}
        for line in Path(own_cgroup).read_text().splitlines():
            hier_id, controllers, path = line.split(":", 2)
            if hier_id == "0":
                own["unified"] = path
            for c in controllers.split(","):
                own[c] = path
        v1: dict[str, tuple[Path, str]] = {}
        v2: tuple[Path, str] | None = None
        for line in Path(mountinfo).read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            fstype, superopts = fields[sep + 1], fields[sep + 3]
            mount_root, mountpoint = fields[3], Path(prefix + fields[4])
            if fstype == "cgroup2":
                v2 = (mountpoint, mount_root)
            elif fstype == "cgroup":
                for opt in superopts.split(","):
                    if opt in WANTED:
                        v1[opt] = (mountpoint, mount_root)

        def below(mount: Path, mount_root: str, own_path: str) -> Path:
            rel = os.path.relpath(own_path, mount_root) if own_path.startswith(mount_root) else "."
            start = mount / rel
            if parent:
                if parent.startswith("/"):
                    return mount / parent.lstrip("/")
                return start / parent
            return start / name

        hierarchies: list[Hierarchy] = []
        used_v2: set[str] = set()
        if v2 is not None and "unified" in own:
            mount, root = v2
            own_dir = mount / os.path.relpath(own["unified"], root).lstrip("/")
            try:
                available = set(_read(own_dir / "cgroup.controllers").split())
            except OSError:
                available = set()
            used_v2 = available & set(WANTED)
            hierarchies.append(Hierarchy(2, frozenset(used_v2), below(mount, root, own["unified"])))
        seen: dict[Path, set[str]] = {}
        for controller, (mount, _root) in v1.items():
            if controller in used_v2 or controller not in own:
                continue
            seen.setdefault(mount, set()).add(controller)
        for mount, names in seen.items():
            any_c = next(iter(names))
            hierarchies.append(
                Hierarchy(1, frozenset(names), below(mount, v1[any_c][1], own[any_c]))
            )
        if not hierarchies:
            raise CgroupError(errno.ENOENT, "no cgroup hierarchy is mounted")
        has_v1 = any(h.version == 1 for h in hierarchies)
        mode = "v2" if not has_v1 else ("hybrid" if v2 is not None else "v1")
        return cls(hierarchies, mode)

    def controllers(self) -> dict[str, str]:
        return {c: f"v{h.version}" for h in self.hierarchies for c in h.controllers}

    def validate(self, limits: Limits) -> None:
        """Refuse bad values, and limits this host cannot enforce, before anything exists."""
        have = self.controllers()
        if limits.memory is not None and limits.memory < MIN_MEMORY:
            raise ValueError(f"invalid memory limit {limits.memory}: the minimum is 6m")
        if limits.memory_swap is not None and limits.memory_swap != -1:
            if limits.memory is None:
                raise ValueError("--memory-swap needs --memory")
            if limits.memory_swap < limits.memory:
                raise ValueError(
                    f"invalid --memory-swap {limits.memory_swap}: must be at least --memory"
                )
        if limits.cpus is not None:
            n = len(online_cpus())
            if not math.isfinite(limits.cpus) or not 0.01 <= limits.cpus <= n:
                raise ValueError(f"invalid --cpus {limits.cpus}: the range is 0.01 to {n}")
        if limits.cpu_shares is not None and not 2 <= limits.cpu_shares <= 262144:
            raise ValueError(f"invalid --cpu-shares {limits.cpu_shares}: use 2 to 262144")
        if limits.pids_limit is not None and limits.pids_limit < -1:
            raise ValueError(f"invalid --pids-limit {limits.pids_limit}: use -1 for no limit")
        if limits.cpuset_cpus is not None:
            wanted = parse_cpu_list(limits.cpuset_cpus)
            extra = wanted - online_cpus()
            if extra:
                raise ValueError(
                    f"invalid --cpuset-cpus {limits.cpuset_cpus!r}: CPU {min(extra)} is not online"
                )
        needs = {
            "memory": limits.memory is not None,
            "cpu": limits.cpus is not None or limits.cpu_shares is not None,
            "cpuset": limits.cpuset_cpus is not None,
        }
        for controller, needed in needs.items():
            if needed and controller not in have:
                raise ValueError(f"the {controller} controller is not available on this host")

    def _prepare_base(self, h: Hierarchy) -> None:
        h.base.mkdir(parents=True, exist_ok=True)
        if h.version == 2 and h.controllers:
            wanted = " ".join(f"+{c}" for c in sorted(h.controllers))
            with contextlib.suppress(CgroupError):
                # Our own cgroup: legal only when it has no processes (else EBUSY, and
                # the controllers were found unavailable by whoever runs us).
                _write(h.base.parent / "cgroup.subtree_control", wanted)
            _write(h.base / "cgroup.subtree_control", wanted)
        if "cpuset" in h.controllers and h.version == 1:
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(h.base / name).strip():
                    _write(h.base / name, _read(h.base.parent / name).strip())

    def create(self, name: str, limits: Limits) -> Cgroup:
        cg = self.open(name)
        try:
            for h in self.hierarchies:
                self._prepare_base(h)
                d = h.base / name
                d.mkdir()
                if "cpuset" in h.controllers and h.version == 1:
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        _write(d / f, _read(h.base / f).strip())
                if "devices" in h.controllers and h.version == 1:
                    _write(d / "devices.deny", "a")
                    for rule in ALLOWED_DEVICES:
                        _write(d / "devices.allow", rule)
            cg.update(limits)
        except BaseException:
            cg.remove_now()
            raise
        return cg

    def open(self, name: str) -> Cgroup:
        return Cgroup({h: h.base / name for h in self.hierarchies})

    def list_children(self) -> list[str]:
        names: set[str] = set()
        for h in self.hierarchies:
            with contextlib.suppress(FileNotFoundError):
                names.update(p.name for p in h.base.iterdir() if p.is_dir())
        return sorted(names)


class Cgroup:
    def __init__(self, dirs: dict[Hierarchy, Path]) -> None:
        self._dirs = dirs

    @property
    def paths(self) -> dict[str, str]:
        return {",".join(sorted(h.controllers)) or "unified": str(d) for h, d in self._dirs.items()}

    def _dir(self, controller: str) -> tuple[Path, int] | None:
        for h, d in self._dirs.items():
            if controller in h.controllers:
                return d, h.version
        return None

    def add(self, pid: int) -> None:
        for d in self._dirs.values():
            _write(d / "cgroup.procs", str(pid))

    def update(self, limits: Limits) -> None:
        mem = self._dir("memory")
        if mem is not None:
            d, v = mem
            if v == 1:
                self._v1_memory(d, limits)
            else:
                if limits.memory is not None:
                    _write(d / "memory.max", str(limits.memory))
                if limits.memory_swap is not None and (d / "memory.swap.max").exists():
                    swap = limits.memory_swap
                    value = "max" if swap == -1 else str(max(0, swap - (limits.memory or 0)))
                    _write(d / "memory.swap.max", value)
        cpu = self._dir("cpu")
        if cpu is not None:
            d, v = cpu
            if limits.cpus is not None:
                quota = int(limits.cpus * CPU_PERIOD)
                if v == 1:
                    _write(d / "cpu.cfs_period_us", str(CPU_PERIOD))
                    _write(d / "cpu.cfs_quota_us", str(quota))
                else:
                    _write(d / "cpu.max", f"{quota} {CPU_PERIOD}")
            if limits.cpu_shares is not None:
                if v == 1:
                    _write(d / "cpu.shares", str(limits.cpu_shares))
                else:
                    _write(d / "cpu.weight", str(shares_to_weight(limits.cpu_shares)))
        pids = self._dir("pids")
        if pids is not None:
            n = DEFAULT_PIDS_LIMIT if limits.pids_limit is None else limits.pids_limit
            _write(pids[0] / "pids.max", "max" if n <= 0 else str(n))
        cpuset = self._dir("cpuset")
        if cpuset is not None and limits.cpuset_cpus is not None:
            _write(cpuset[0] / "cpuset.cpus", limits.cpuset_cpus)

    @staticmethod
    def _v1_memory(d: Path, limits: Limits) -> None:
        memsw = d / "memory.memsw.limit_in_bytes"
        writes = []
        if limits.memory is not None:
            writes.append((d / "memory.limit_in_bytes", str(limits.memory)))
        if limits.memory_swap is not None and memsw.exists():
            writes.append((memsw, str(limits.memory_swap)))
        try:
            for path, value in writes:
                _write(path, value)
        except CgroupError:
            # memsw must stay >= the memory limit: when raising both, memsw goes first.
            for path, value in reversed(writes):
                _write(path, value)

    def procs(self) -> list[int]:
        for d in self._dirs.values():
            with contextlib.suppress(FileNotFoundError):
                return [int(p) for p in _read(d / "cgroup.procs").split()]
        return []

    async def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Every process in the cgroup gets ``sig`` (SIGKILL: until none is left)."""
        kill_file = next((d / "cgroup.kill" for h, d in self._dirs.items() if h.version == 2), None)
        freezer = self._dir("freezer")
        with trio.move_on_after(KILL_TIMEOUT):
            while pids := self.procs():
                if sig == signal.SIGKILL and kill_file is not None and kill_file.exists():
                    _write(kill_file, "1")
                elif freezer is not None and freezer[1] == 1:
                    # Frozen, nothing can fork between our reading the list and the kill.
                    _write(freezer[0] / "freezer.state", "FROZEN")
                    for pid in self.procs():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, sig)
                    _write(freezer[0] / "freezer.state", "THAWED")
                else:
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, sig)
                if sig != signal.SIGKILL:
                    return
                await trio.sleep(0.01)

    async def remove(self) -> None:
        """Kill what is left, then remove the directories; idempotent."""
        if self.procs():
            await self.kill_all()
        for _ in range(100):
            if self.remove_now():
                return
            await trio.sleep(0.01)
        log.warning("cgroup %s could not be removed", self.paths)

    def remove_now(self) -> bool:
        done = True
        for d in self._dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                done = False
        return done

    def stats(self) -> Stats:
        usage = limit = peak = None
        user = system = total = 0
        pids = io_r = io_w = 0
        mem = self._dir("memory")
        if mem is not None:
            d, v = mem
            if v == 1:
                usage = int(_read(d / "memory.usage_in_bytes"))
                limit = int(_read(d / "memory.limit_in_bytes"))
                peak = int(_read(d / "memory.max_usage_in_bytes"))
            else:
                usage = int(_read(d / "memory.current"))
                raw = _read(d / "memory.max").strip()
                limit = None if raw == "max" else int(raw)
                with contextlib.suppress(FileNotFoundError):
                    peak = int(_read(d / "memory.peak"))
        acct = self._dir("cpuacct")
        cpu = self._dir("cpu")
        if acct is not None and acct[1] == 1:
            ticks = _keyed(_read(acct[0] / "cpuacct.stat"))
            hz = os.sysconf("SC_CLK_TCK")
            user = ticks.get("user", 0) * 1_000_000_000 // hz
            system = ticks.get("system", 0) * 1_000_000_000 // hz
            total = int(_read(acct[0] / "cpuacct.usage"))
        else:
            v2dir = next((d for h, d in self._dirs.items() if h.version == 2), None)
            if v2dir is not None and (v2dir / "cpu.stat").exists():
                st = _keyed(_read(v2dir / "cpu.stat"))
                user = st.get("user_usec", 0) * 1000
                system = st.get("system_usec", 0) * 1000
                total = st.get("usage_usec", 0) * 1000
            elif cpu is not None:
                total = 0
        pdir = self._dir("pids")
        if pdir is not None:
            pids = int(_read(pdir[0] / "pids.current"))
        blk = self._dir("blkio") or self._dir("io")
        if blk is not None:
            d, v = blk
            with contextlib.suppress(FileNotFoundError):
                if v == 1:
                    for line in _read(d / "blkio.throttle.io_service_bytes").splitlines():
                        parts = line.split()
                        if len(parts) == 3 and parts[1] in ("Read", "Write"):
                            if parts[1] == "Read":
                                io_r += int(parts[2])
                            else:
                                io_w += int(parts[2])
                else:
                    for line in _read(d / "io.stat").splitlines():
                        kv = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
                        io_r += int(kv.get("rbytes", 0))
                        io_w += int(kv.get("wbytes", 0))
        if limit is not None and limit >= UNLIMITED:
            limit = None
        return Stats(
            memory_usage=usage or 0,
            memory_limit=limit,
            memory_peak=peak,
            cpu_user_ns=user,
            cpu_system_ns=system,
            cpu_total_ns=total,
            pids=pids,
            io_read_bytes=io_r,
            io_write_bytes=io_w,
        )

    def oom_killed(self) -> bool:
        mem = self._dir("memory")
        if mem is None:
            return False
        d, v = mem
        name = "memory.oom_control" if v == 1 else "memory.events"
        try:
            return _keyed(_read(d / name)).get("oom_kill", 0) > 0
        except FileNotFoundError:
            return False

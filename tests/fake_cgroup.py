"""A fake cgroupfs for tests: a temporary tree laid out like /sys/fs/cgroup, plus the
kernel's behaviour where boxd depends on it.

:class:`FakeCgroupFs` replaces ``_mkdir``, ``_rmdir`` and ``_write`` of ``boxd._cgroup``,
and ``boxd._devices.attach`` (a directory of a fake tree cannot take a BPF program: the
programs attached are recorded, and refused outside the v2 tree as the kernel does): a new
directory gets the interface files of the controllers its hierarchy (v1) or its
parent's ``cgroup.subtree_control`` (v2) gives it; writes to a missing file fail with
ENOENT; ``cgroup.subtree_control`` follows the v2 rules (a controller must be offered by
the parent, EBUSY in a cgroup with processes) and reaches the children; a v1 memory limit
below usage fails with EBUSY, and memsw below the memory limit with EINVAL; a new v1
cpuset cgroup has its parent's CPUs and memory nodes if the parent's
``cgroup.clone_children`` is 1, else none.  Every write
is recorded in order, with its path relative to the fake root.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from boxd import _cgroup, _devices
from boxd._cgroup import CgroupError, CgroupHost, parse_cpu_list
from boxd._devices import DeviceFilterError

ONLINE_CPUS = 4
V1_UNLIMITED = "9223372036854771712"
V2_FILES = {
    "": {
        "cgroup.procs": "",
        "cgroup.subtree_control": "",
        "cgroup.events": "populated 0\nfrozen 0\n",
        "cgroup.freeze": "0",
        "cgroup.kill": "",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    },
    "memory": {
        "memory.max": "max",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.peak": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        "memory.reclaim": "",
        "memory.low": "0",
    },
    "cpu": {"cpu.max": "max 100000", "cpu.weight": "100"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.stat": "", "io.weight": "default 100", "io.max": ""},
}
V1_FILES = {
    "": {"cgroup.procs": "", "tasks": "", "cgroup.clone_children": "0"},
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.usage_in_bytes": "0",
        "memory.max_usage_in_bytes": "0",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.failcnt": "0",
        "memory.soft_limit_in_bytes": V1_UNLIMITED,
        "memory.swappiness": "60",
    },
    "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.shares": "1024"},
    "cpuacct": {
        "cpuacct.usage": "0",
        "cpuacct.usage_user": "0",
        "cpuacct.usage_sys": "0",
        "cpuacct.stat": "user 0\nsystem 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "freezer": {"freezer.state": "THAWED"},
    "blkio": {
        "blkio.throttle.io_service_bytes_recursive": "",
        **{
            f"blkio.throttle.{n}_device": ""
            for n in ("read_bps", "write_bps", "read_iops", "write_iops")
        },
    },
    "devices": {"devices.allow": "", "devices.deny": ""},
}


def _fill(d: Path, table: dict[str, dict[str, str]], controllers: set[str]) -> None:
    for controller in ("", *sorted(controllers)):
        for name, text in table.get(controller, {}).items():
            if not (d / name).exists():
                (d / name).write_text(text)


class FakeCgroupFs:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.writes: list[tuple[str, str]] = []
        self.v2: Path | None = None
        self.v1: dict[Path, set[str]] = {}
        self.swap_accounting = True
        # Cgroup directory (relative to the fake root) -> the device program attached.
        self.device_programs: dict[str, bytes] = {}
        self.refuse_device_programs: str | None = None  # the kernel's reason, if it does
        self._mountinfo: list[str] = []
        self._own: list[str] = []
        cpu = root / "sys/devices/system/cpu"
        cpu.mkdir(parents=True)
        (cpu / "online").write_text(f"0-{ONLINE_CPUS - 1}\n")
        monkeypatch.setattr(_cgroup, "_mkdir", self.mkdir)
        monkeypatch.setattr(_cgroup, "_rmdir", self.rmdir)
        monkeypatch.setattr(_cgroup, "_write", self.write)
        monkeypatch.setattr(_cgroup, "_write_each", self.write_each)
        monkeypatch.setattr(_devices, "attach", self.attach_device_program)

    # ---- building the host ----------------------------------------------------------

    def mount_v2(
        self,
        own: str,
        controllers: str = "cpuset cpu io memory hugetlb pids",
        enabled: str | None = None,
    ) -> Path:
        """The unified hierarchy at /sys/fs/cgroup (/sys/fs/cgroup/unified when v1 is
        mounted too) offering ``controllers``; ``enabled`` (default: all) is in the
        subtree_control of the root and of each ancestor of our own cgroup ``own``, as
        systemd sets it up.  Returns the directory of our own cgroup."""
        at = "/sys/fs/cgroup/unified" if self.v1 else "/sys/fs/cgroup"
        mount = self.root / at.lstrip("/")
        mount.mkdir(parents=True)
        _fill(mount, V2_FILES, set())
        (mount / "cgroup.controllers").write_text(controllers + "\n")
        self.v2 = mount
        self._mountinfo.append(f"30 23 0:26 / {at} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate")
        self._own.append(f"0::{own}")
        d = mount
        for part in [p for p in own.split("/") if p]:
            (d / "cgroup.subtree_control").write_text(controllers if enabled is None else enabled)
            d = d / part
            self.mkdir(d)
        if d == mount:
            (d / "cgroup.subtree_control").write_text(controllers if enabled is None else enabled)
        return d

    def mount_v1(self, controllers: str, own: str, directory: str | None = None) -> Path:
        """A v1 hierarchy of ``controllers`` (e.g. "cpu,cpuacct", or a name such as
        "name=systemd") at /sys/fs/cgroup/``directory`` (default: ``controllers``);
        returns our own cgroup."""
        directory = directory or controllers
        mount = self.root / "sys/fs/cgroup" / directory
        mount.mkdir(parents=True)
        names = set(controllers.split(","))
        self.v1[mount] = names
        _fill(mount, V1_FILES, names)
        if "cpuset" in names:
            (mount / "cpuset.cpus").write_text("0-3\n")
            (mount / "cpuset.mems").write_text("0\n")
        n = len(self._mountinfo) + 31
        self._mountinfo.append(
            f"{n} 23 0:{n} / /sys/fs/cgroup/{directory} rw - cgroup cgroup rw,{controllers}"
        )
        self._own.append(f"{len(self._own) + 1}:{controllers}:{own}")
        d = mount
        for part in [p for p in own.split("/") if p]:
            d = d / part
            self.mkdir(d)
            for name in ("cpuset.cpus", "cpuset.mems") if "cpuset" in names else ():
                (d / name).write_text((d.parent / name).read_text())
        return d

    def detect(self, *, parent: str | None = None, name: str = "boxd") -> CgroupHost:
        (self.root / "mountinfo").write_text("\n".join(self._mountinfo) + "\n")
        (self.root / "cgroup").write_text("\n".join(reversed(self._own)) + "\n")
        return CgroupHost.detect(
            parent=parent,
            name=name,
            mountinfo=str(self.root / "mountinfo"),
            own_cgroup=str(self.root / "cgroup"),
            prefix=str(self.root),
        )

    def written(self, under: Path | None = None) -> list[tuple[str, str]]:
        """Recorded writes (relative to ``under``, default the fake root)."""
        base = under or self.root
        return [(str(Path(p).relative_to(base.relative_to(self.root))), v) for p, v in self.writes]

    # ---- the kernel -----------------------------------------------------------------

    def _is_v2(self, d: Path) -> bool:
        return self.v2 is not None and d.is_relative_to(self.v2)

    def _v1_controllers(self, d: Path) -> set[str]:
        return next(names for mount, names in self.v1.items() if d.is_relative_to(mount))

    def mkdir(self, path: Path | str) -> None:
        path = Path(path)
        try:
            path.mkdir()
        except OSError as exc:
            raise CgroupError(exc.errno, f"cannot create cgroup {path}: {exc.strerror}") from None
        if self._is_v2(path):
            offered = set((path.parent / "cgroup.subtree_control").read_text().split())
            (path / "cgroup.controllers").write_text(" ".join(sorted(offered)))
            _fill(path, V2_FILES, offered)
        else:
            names = self._v1_controllers(path)
            _fill(path, V1_FILES, names)
            if "cpuset" in names and (path.parent / "cgroup.clone_children").read_text() == "1":
                for name in ("cpuset.cpus", "cpuset.mems"):
                    (path / name).write_text((path.parent / name).read_text())
            if not self.swap_accounting:
                (path / "memory.memsw.limit_in_bytes").unlink(missing_ok=True)

    def rmdir(self, path: Path | str) -> None:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        if any(p.is_dir() for p in path.iterdir()) or (path / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        shutil.rmtree(path)

    def write_each(self, path: Path | str, values: Sequence[str]) -> None:
        for value in values:
            self.write(path, value)

    def write(self, path: Path | str, value: str) -> None:
        path = Path(path)
        rel = str(path.relative_to(self.root))
        self.writes.append((rel, value))
        if not path.is_file():
            self._fail(path, value, errno.ENOENT)
        d, name = path.parent, path.name
        if name == "cgroup.subtree_control":
            self._subtree_control(d, value)
        elif name == "cgroup.procs":
            pids = path.read_text().split()
            path.write_text(" ".join([*pids, value]))
        elif name == "cgroup.freeze":
            path.write_text(value)
            (d / "cgroup.events").write_text(f"populated 1\nfrozen {value}\n")
        elif name == "cgroup.kill":
            (d / "cgroup.procs").write_text("")
        elif name == "memory.limit_in_bytes":
            memsw = d / "memory.memsw.limit_in_bytes"
            if int((d / "memory.usage_in_bytes").read_text()) > int(value):
                self._fail(path, value, errno.EBUSY)
            if memsw.exists() and int(value) > int(memsw.read_text()):
                self._fail(path, value, errno.EINVAL)
            path.write_text(value)
        elif name == "memory.memsw.limit_in_bytes":
            new = V1_UNLIMITED if value == "-1" else value
            if int(new) < int((d / "memory.limit_in_bytes").read_text()):
                self._fail(path, value, errno.EINVAL)
            path.write_text(new)
        elif name == "cpuset.cpus" and value and max(parse_cpu_list(value)) >= ONLINE_CPUS:
            self._fail(path, value, errno.EINVAL)
        else:
            path.write_text(value)

    def attach_device_program(self, path: Path | str, program: bytes) -> None:
        path = Path(path)
        if self.refuse_device_programs is not None:
            raise DeviceFilterError(errno.EINVAL, self.refuse_device_programs)
        if not (self._is_v2(path) and path.is_dir()):
            raise DeviceFilterError(errno.EBADF, f"{path} is not a cgroup v2 directory")
        self.device_programs[str(path.relative_to(self.root))] = program

    @staticmethod
    def _fail(path: Path, value: str, code: int) -> None:
        raise CgroupError(code, f"cannot write {value!r} to {path}: {os.strerror(code)}")

    def _subtree_control(self, d: Path, value: str) -> None:
        path = d / "cgroup.subtree_control"
        enabled = set(path.read_text().split())
        offered = set((d / "cgroup.controllers").read_text().split())
        for word in value.split():
            op, c = word[0], word[1:]
            if op == "+":
                if c not in offered:
                    self._fail(path, value, errno.ENOENT)
                if c not in enabled and (d / "cgroup.procs").read_text().split() and d != self.v2:
                    self._fail(path, value, errno.EBUSY)
                enabled.add(c)
            else:
                enabled.discard(c)
        path.write_text(" ".join(sorted(enabled)))
        for child in (p for p in d.iterdir() if p.is_dir()):
            (child / "cgroup.controllers").write_text(" ".join(sorted(enabled)))
            _fill(child, V2_FILES, enabled)

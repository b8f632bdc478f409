"""The bench's surroundings: peer tools (installed when missing), the one busybox root every
runtime uses, the OCI bundle for crun and runc, and the cleanup of cgroups and mounts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# crun 1.8 refuses hybrid cgroups, podman needs a cgroup parent below ours: both run in the
# private mount namespace this script makes (see its comments).
CGNS = REPO / "bench" / "cgns.sh"

# tool -> (Debian package, argv that prints its version)
TOOLS: dict[str, tuple[str, list[str]]] = {
    "crun": ("crun", ["crun", "--version"]),
    "runc": ("runc", ["runc", "--version"]),
    "bwrap": ("bubblewrap", ["bwrap", "--version"]),
    "podman": ("podman", ["podman", "--version"]),
    "hyperfine": ("hyperfine", ["hyperfine", "--version"]),
    "busybox": ("busybox-static", ["busybox", "--help"]),
    "script": ("bsdutils", ["script", "--version"]),
    "iperf3": ("iperf3", ["iperf3", "--version"]),
}


@dataclass
class Tool:
    name: str
    path: str = ""
    version: str = ""
    error: str = ""

    def require(self) -> str:
        if not self.path:
            raise RuntimeError(f"{self.name} is not available: {self.error}")
        return self.path

    def to_json(self) -> dict[str, str]:
        if self.path:
            return {"path": self.path, "version": self.version}
        return {"error": self.error}


def find_tools(*, install: bool) -> dict[str, Tool]:
    """Every tool of :data:`TOOLS`; missing ones are installed with apt-get when root."""
    missing = [name for name in TOOLS if shutil.which(name) is None]
    tried = bool(missing) and install and os.geteuid() == 0
    install_error = _apt_install(sorted({TOOLS[n][0] for n in missing})) if tried else ""
    tools = {}
    for name, (package, version_argv) in TOOLS.items():
        path = shutil.which(name)
        if path is None:
            if install_error:
                why = install_error
            elif tried:
                why = f"apt-get installed it, but there is no {name} on PATH"
            elif not install:
                why = "not installed (--no-install)"
            else:
                why = "not installed (run as root to install it with apt-get)"
            tools[name] = Tool(name, error=f"package {package}: {why}")
            continue
        r = subprocess.run(version_argv, capture_output=True, text=True, timeout=60)
        first = (r.stdout or r.stderr).strip().splitlines()
        tools[name] = Tool(name, path=path, version=first[0] if first else "?")
    return tools


def _apt_install(packages: list[str]) -> str:
    """Install ``packages``; an empty string, or why it failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    print(f"installing {' '.join(packages)} with apt-get", flush=True)
    try:
        if subprocess.run(argv, env=env, capture_output=True, timeout=600).returncode == 0:
            return ""
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        return f"apt-get timed out after {exc.timeout:.0f} s"
    if r.returncode == 0:
        return ""
    return f"apt-get install failed: {r.stderr.strip()[-300:]}"


def busybox_root(busybox: str, dest: Path) -> Path:
    """A root filesystem of a static busybox and a link per applet, shared by every runtime."""
    bindir = dest / "bin"
    bindir.mkdir(parents=True)
    for d in ("proc", "sys", "dev", "tmp", "etc", "root"):
        (dest / d).mkdir()
    shutil.copy2(busybox, bindir / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (bindir / applet).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def oci_bundle(runc: str, rootfs: Path, dest: Path, *, memory: int) -> Path:
    """``runc spec``, then: our root (read-only), ``/bin/true``, no terminal, a memory limit.

    The spec's namespaces stay as generated: a new network namespace holds only a loopback
    device, which needs no bridge or firewall change on the host.
    """
    dest.mkdir()
    subprocess.run([runc, "spec"], cwd=dest, check=True, capture_output=True)
    spec = json.loads((dest / "config.json").read_text())
    spec["root"] = {"path": str(rootfs), "readonly": True}
    spec["process"]["args"] = ["/bin/true"]
    spec["process"]["terminal"] = False
    spec["linux"].setdefault("resources", {})["memory"] = {"limit": memory}
    (dest / "config.json").write_text(json.dumps(spec, indent=1))
    return dest


def own_cgroup_dirs() -> list[Path]:
    """This process's own cgroup directory in every mounted hierarchy (v1 and v2)."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = right.split(" ", 2)
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mount_root, mountpoint = left.split()[3:5]
        keys = [""] if fstype == "cgroup2" else options.split(",")
        mine = next((own[k] for k in keys if k in own), None)
        if mine is None or not mine.startswith(mount_root):
            continue
        dirs.append(Path(mountpoint, mine[len(mount_root) :].lstrip("/")))
    return dirs


def remove_cgroups(prefixes: tuple[str, ...]) -> list[str]:
    """Remove every cgroup, in every mounted hierarchy, whose name starts with one of
    ``prefixes`` (deepest first); return the ones that could not be removed, with why.

    Each prefix names this run alone (the run's tag, boxd's names derived from the run's
    own directories), so another run's cgroups are never touched; and every hierarchy is
    searched, as podman makes its cgroup parent at each hierarchy's root (as cgns.sh shows
    it), not below our own cgroup."""
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.partition(" - ")[2].split(" ", 1)[0] not in ("cgroup", "cgroup2"):
            continue
        for top, dirs, _ in os.walk(line.split()[4]):
            for name in [n for n in dirs if n.startswith(prefixes)]:
                found.extend(Path(sub) for sub, _, _ in os.walk(Path(top, name)))
                dirs.remove(name)
    left = []
    for d in sorted(set(found), key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            left.append(f"{d}: {exc.strerror}")
    return left


def unmount_below(top: Path) -> list[str]:
    """Detach every mount at or below ``top`` (deepest first); return what was unmounted."""
    prefix = str(top.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    done = []
    for point in sorted(points, key=len, reverse=True):
        if subprocess.run(["umount", "-l", point], capture_output=True).returncode == 0:
            done.append(point)
    return done

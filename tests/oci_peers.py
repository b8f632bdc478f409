"""Running Podman and containerd on this host for boxd-runtime's tests.

Without systemd both make cgroups from each hierarchy's root (Podman's
``--cgroup-parent``, containerd's ``/<namespace>/<id>``).  On a hybrid host they run in a
private mount namespace (bench/cgns.sh) where the unified hierarchy is
covered by an empty tmpfs and the memory hierarchy is our own memory cgroup bound on its
mount point: they see cgroup v1 only and memory nests below us.  :func:`remove_cgroups`
removes what they leave at the roots.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from pathlib import Path

# The bench's wrapper (it runs its peers the same way).
CGNS = Path(__file__).resolve().parent.parent / "bench" / "cgns.sh"


def own_memory_cgroup() -> str:
    """Our memory cgroup on its v1 hierarchy ("" without one: pure v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return ""


def wrapped(argv: list[str]) -> list[str]:
    """``argv`` in the private mount namespace described above (as is on pure v2)."""
    return ["sh", str(CGNS), *argv]


def cgroup_dirs(parent: str) -> list[Path]:
    """Every directory of the cgroup ``parent`` (from a hierarchy's root) as the wrapped
    programs see it: in every hierarchy, memory below our own."""
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        base = hierarchy / parent.strip("/")
        if hierarchy.name == "memory" and own_memory_cgroup():
            base = hierarchy / own_memory_cgroup().strip("/") / parent.strip("/")
        if base.is_dir():
            found.append(base)
    return found


def remove_cgroups(parent: str, *, patience: float = 10.0) -> None:
    """Remove the cgroup ``parent`` and what is below it, children first, in every
    hierarchy.  A cgroup whose last process (a conmon still exiting after ``podman rm``)
    is not gone yet is busy: it is tried again for up to ``patience`` seconds, and the
    other hierarchies are cleaned all the same before the first error is raised."""
    failed: OSError | None = None
    for base in cgroup_dirs(parent):
        dirs = sorted(base.rglob("*"), key=lambda x: len(x.parts), reverse=True)
        for d in [*(d for d in dirs if d.is_dir()), base]:
            deadline = time.monotonic() + patience
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        failed = failed or exc
                        break
                    time.sleep(0.05)
    if failed is not None:
        raise failed


def make_busybox_image(base: Path, busybox_root: Path) -> Path:
    """An OCI image layout (``<base>/layout``, tag ``busybox``) holding the busybox root
    as one layer, built with umoci."""
    layout, work = base / "layout", base / "work"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:busybox"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:busybox", str(work)], check=True)
    shutil.copytree(busybox_root, work / "rootfs", symlinks=True, dirs_exist_ok=True)
    subprocess.run(["umoci", "repack", "--image", f"{layout}:busybox", str(work)], check=True)
    shutil.rmtree(work)
    return layout

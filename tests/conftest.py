"""Shared fixtures: privilege markers, a busybox root filesystem, the static probe."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import SESSION_TAG, Daemon, running_daemon

REPO = Path(__file__).resolve().parent.parent
# The benchmark harness (bench/) is not installed: reachable for its tests, after the
# installed boxd in the search order.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
PROBE_SOURCE = REPO / "rootfs" / "probe" / "probe.c"


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, cgroups)"
    if not os.path.exists("/proc/self/ns/pid"):
        return "kernel without namespaces"
    return None


CLONE_NEWNET = 0x40000000


# What boxd names in a network namespace: bridges (boxd0, boxd<hash>), the host ends of
# veth pairs (bx<12 hex>), nftables tables (boxd, boxd-<bridge>).
_BOXD_NAMES = re.compile(r"boxd|bx[0-9a-f]{12}$")
_host_net: tuple[int, set[str]] | None = None  # the host's namespace, and its boxd objects


def _boxd_objects(netns_fd: int) -> set[str]:
    """The links and nftables tables of boxd's naming in the namespace behind ``netns_fd``,
    the named network namespaces (``ip netns add``, which tests make and remove), and the
    cgroups of boxd's naming."""

    def run(*argv: str) -> str:
        command = ["nsenter", f"--net=/proc/self/fd/{netns_fd}", *argv]
        return subprocess.run(
            command, pass_fds=(netns_fd,), capture_output=True, text=True, check=True
        ).stdout

    links = {
        line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link").splitlines()
    }
    tables = {line.split()[-1] for line in run("nft", "list", "tables").splitlines()}
    found = {f"link {n}" for n in links if _BOXD_NAMES.match(n)}
    found |= {f"nft table {t}" for t in tables if _BOXD_NAMES.match(t)}
    with contextlib.suppress(FileNotFoundError):
        found |= {f"netns {n}" for n in os.listdir("/run/netns")}
    # And the cgroups of boxd's naming (a daemon's or a library's parent, boxd-<hash>), in
    # every hierarchy: not of a network namespace, but left the same way.
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in [d for d in dirs if d.startswith("boxd-")]:
            found.add(f"cgroup {os.path.join(top, d)}")
            dirs.remove(d)
    return found


def pytest_configure(config: pytest.Config) -> None:
    """As root, the whole session runs in a network namespace of its own, made here and
    gone with the session: daemons, their bridges, rules and published ports, the test
    registry and every client share it, and none of it touches the host's network (which
    :func:`pytest_sessionfinish` checks)."""
    global _host_net
    if os.geteuid() != 0:
        return
    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _host_net = (host, _boxd_objects(host))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) for the test session")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


_basetemp: Path | None = None  # the session's temporary directory, once a test had one


@pytest.fixture(scope="session", autouse=True)
def _remember_basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _basetemp
    _basetemp = tmp_path_factory.getbasetemp()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing of boxd's naming may be left in the host's network namespace (links,
    nftables tables), among the named namespaces or the cgroups: the session fails if
    the tests left one.  What another session running at the same time makes (named
    namespaces and cgroups: another SESSION_TAG, or roots outside this session's
    temporary directory) is only listed."""
    if _host_net is None:
        return
    host, before = _host_net
    left = _boxd_objects(host) - before
    ours = _names_of_roots(_basetemp) if _basetemp is not None else set()
    mine = sorted(x for x in left if _is_ours(x, ours))
    writer = session.config.get_terminal_writer()
    if left.difference(mine):
        writer.line("another session's, left alone: " + ", ".join(sorted(left.difference(mine))))
    if mine:
        writer.line("left on the host by the tests: " + ", ".join(mine), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _names_of_roots(basetemp: Path, depth: int = 4) -> set[str]:
    """The cgroup names boxd gives the state directories that may be below ``basetemp``
    (a supervisor's ``boxd-<sha256>``, boxd-runtime's ``boxd-runtime-<crc32>``: see
    boxd._supervisor.cgroup_name and boxd._oci._runtime.cgroup_location)."""
    from boxd._oci._runtime import cgroup_location
    from boxd._oci._state import Root
    from boxd._supervisor import cgroup_name

    names: set[str] = set()
    for top, dirs, _ in os.walk(basetemp):
        if top.count(os.sep) - str(basetemp).count(os.sep) >= depth:
            dirs.clear()
        path = Path(top)
        names.add(cgroup_name(path))
        names.add(cgroup_location(Root(str(path)), "", "x", False)[1])
    return names


def _is_ours(found: str, root_names: set[str]) -> bool:
    """Whether a leftover (see _boxd_objects) is this session's."""
    kind, _, what = found.rpartition(" ")
    name = os.path.basename(what)
    if kind == "netns":  # the tests name theirs with session_name
        return name.startswith(SESSION_TAG + "-")
    if kind == "cgroup":
        if name.startswith("boxd-test-"):
            return name.startswith(SESSION_TAG + "-")
        return name in root_names or name == "boxd-runtime"
    return True  # links and tables of the host's namespace: no other session makes any


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _root_skip_reason()
    fuse_reason = None if os.path.exists("/dev/fuse") else "/dev/fuse is missing"
    for item in items:
        if reason and "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
        if fuse_reason and "fuse" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=fuse_reason))


def _busybox() -> str:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return candidate
    pytest.skip("busybox-static is not installed (apt-get install busybox-static)")


def build_busybox_root(dest: Path) -> Path:
    """A minimal root filesystem: static busybox with its applets, the probe, mount points."""
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    busybox = dest / "bin" / "busybox"
    shutil.copy2(_busybox(), busybox)
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(dest / "tmp", 0o1777)
    if PROBE_SOURCE.exists():
        subprocess.run(
            [
                "gcc",
                "-static",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-o",
                str(dest / "bin" / "probe"),
                str(PROBE_SOURCE),
            ],
            check=True,
        )
    return dest


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A read-only-by-convention busybox root shared by the session (use as a lower layer)."""
    yield build_busybox_root(tmp_path_factory.mktemp("busybox-root"))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A real boxd in a temporary root; on exit it must stop cleanly and leave no cgroup."""
    with running_daemon(tmp_path) as d:
        yield d

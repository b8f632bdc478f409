"""containerd driving boxd-runtime through its own shim (io.containerd.runc.v2, the one
Kubernetes nodes use): ``ctr run --runc-binary $(command -v boxd-runtime)`` on an image
imported with ``ctr images import``.  The test starts containerd with its own root, state
and socket (run as :mod:`oci_peers` describes); the shim keeps the runtime's state in its
fixed ``/run/containerd/runc/<namespace>``.  Slow: one containerd.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import oci_peers
import pytest

RUNTIME = str(Path(sys.executable).with_name("boxd-runtime"))

CONFIG = """\
version = 2
root = "{work}/root"
state = "{work}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{work}/containerd.sock"
[ttrpc]
  address = "{work}/containerd.sock.ttrpc"
"""


@attrs.define
class Containerd:
    work: Path
    namespace: str

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ctr", "--address", str(self.work / "containerd.sock"), "--namespace",
             self.namespace, *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {done.returncode} {done.stderr}")
        return done


@pytest.fixture
def containerd(busybox_root: Path) -> Iterator[Containerd]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.skip("containerd is not installed (apt-get install containerd)")
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (apt-get install umoci)")
    # Short: the shim's socket path must fit in a sockaddr_un.
    work = Path(tempfile.mkdtemp(prefix="boxd-ctd-", dir="/tmp"))
    (work / "config.toml").write_text(CONFIG.format(work=work))
    log = open(work / "containerd.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        oci_peers.wrapped(["containerd", "--config", str(work / "config.toml")]),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    c = Containerd(work, f"boxdtest{uuid.uuid4().hex[:8]}")
    # The shim's fixed directories (its sockets, boxd-runtime's --root): removed at the end
    # if this test made them.
    shim_dirs = [Path("/run/containerd/runc", c.namespace), Path("/run/containerd/runc"),
                 Path("/run/containerd/s"), Path("/run/containerd")]  # fmt: skip
    made = [d for d in shim_dirs if not d.exists()]
    try:
        deadline = time.monotonic() + 60
        while c.ctr("version", check=False).returncode != 0:
            assert process.poll() is None, (work / "containerd.log").read_text()
            assert time.monotonic() < deadline, "containerd did not come up"
            time.sleep(0.1)
        yield c
    finally:
        c.ctr("tasks", "kill", "--signal", "KILL", "hi", check=False)
        c.ctr("containers", "delete", "hi", check=False)
        process.terminate()
        process.wait(timeout=60)
        log.close()
        oci_peers.remove_cgroups(f"/{c.namespace}")
        for d in made:
            with contextlib.suppress(FileNotFoundError):
                d.rmdir()
        shutil.rmtree(work)


def _import_busybox(containerd: Containerd, busybox_root: Path) -> str:
    """The busybox root as an image in containerd; its name."""
    layout = oci_peers.make_busybox_image(containerd.work / "image", busybox_root)
    archive = containerd.work / "busybox.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layout, arcname=".")
    containerd.ctr("images", "import", "--base-name", "localhost/busybox", str(archive))
    return "localhost/busybox:busybox"


@pytest.mark.root
def test_ctr_run_with_the_runc_shim(containerd: Containerd, busybox_root: Path) -> None:
    image = _import_busybox(containerd, busybox_root)
    run = ["run", "--rm", "--fifo-dir", str(containerd.work / "fifo"), "--runc-binary", RUNTIME]
    done = containerd.ctr(*run, image, "hi", "echo", "hi")
    assert done.stdout == "hi\n"
    code = containerd.ctr(*run, image, "hi", "sh", "-c", "exit 4", check=False).returncode
    assert code == 4
    # A working directory the image lacks is made, as runc makes it.
    assert containerd.ctr(*run, "--cwd", "/made/here", image, "hi", "pwd").stdout == "/made/here\n"
    assert containerd.ctr("containers", "list", "--quiet").stdout == ""


@pytest.mark.root
def test_ctr_task_pause_metrics_and_kill(containerd: Containerd, busybox_root: Path) -> None:
    """A task without a pids limit has none (``ctr task metrics`` shows no limit, as under
    runc), and a paused task that gets a SIGKILL stops (its exit status 137), as under runc."""
    image = _import_busybox(containerd, busybox_root)
    containerd.ctr("run", "--detach", "--fifo-dir", str(containerd.work / "fifo"),
                   "--runc-binary", RUNTIME, image, "hi", "sleep", "1000")  # fmt: skip
    metrics = json.loads(containerd.ctr("tasks", "metrics", "--format", "json", "hi").stdout)
    assert metrics["pids"] == {"current": 1}  # a limit of 0 (none) is left out
    containerd.ctr("tasks", "pause", "hi")
    containerd.ctr("tasks", "kill", "--signal", "KILL", "hi")
    deadline = time.monotonic() + 30
    while "STOPPED" not in containerd.ctr("tasks", "list").stdout:
        assert time.monotonic() < deadline, containerd.ctr("tasks", "list").stdout
        time.sleep(0.05)
    containerd.ctr("tasks", "delete", "hi")
    containerd.ctr("containers", "delete", "hi")

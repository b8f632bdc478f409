"""A daemon whose root file system fills up, as a user meets it: a container writes until
the disk is full, a tarball does not fit, a build step fills it.  What is refused says
why in the user's words, removing things gives their room back before the next request,
and what a failed request stored is gone again.  The root is a small tmpfs of the test's
own, unmounted afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon

pytestmark = pytest.mark.root

FILL = "dd if=/dev/zero of={} bs=1M count=64 2>/dev/null; echo dd=$?"


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon on a 24 MiB tmpfs."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "boxd-small", root], check=True)
    try:
        with running_daemon(tmp_path) as daemon:
            yield daemon
    finally:
        subprocess.run(["umount", "--recursive", "--lazy", root], check=True)


def _used(daemon: Daemon) -> int:
    return shutil.disk_usage(daemon.root).used


def test_removing_gives_the_room_back_before_the_next_request(small_root: Daemon) -> None:
    """`rm` of the container that filled the disk, then `run` at once: the run used to
    fail with ENOSPC (the removed container's files were deleted at the next pause of
    the daemon), as it did after a `run --rm` that filled it, or a `volume rm`.  The
    refusal while the disk is full names the file and the reason, not Python's
    "[Errno 28]"."""
    d = small_root
    assert d.ctl("run", "--name", "filler", "default", "sh", "-c", FILL.format("/big")).stdout == (
        "dd=1\n"
    )
    refused = d.ctl("run", "--rm", "default", "true", check=False)
    assert refused.returncode == 125
    assert "No space left on device" in refused.stderr
    assert "Errno" not in refused.stderr
    d.ctl("rm", "filler")
    assert d.ctl("run", "--rm", "default", "echo", "room").stdout == "room\n"

    assert d.ctl("run", "--rm", "default", "sh", "-c", FILL.format("/big")).stdout == "dd=1\n"
    assert d.ctl("run", "--rm", "default", "echo", "room").stdout == "room\n"

    d.ctl("volume", "create", "data")
    d.ctl("run", "--rm", "-v", "data:/data", "default", "sh", "-c", FILL.format("/data/f"))
    d.ctl("volume", "rm", "data")
    assert shutil.disk_usage(d.root).free > 20 << 20


def test_a_tarball_that_does_not_fit_leaves_nothing_behind(
    small_root: Daemon, tmp_path: Path
) -> None:
    """An import stores the received tarball, its layer blob and the unpacked layer:
    10 MiB of incompressible data does not fit three times in 24 MiB.  The import
    fails naming the full disk, and its blob (12 MiB, kept for ever before: no image
    held it) is deleted; a smaller one then fits."""
    d = small_root
    before = _used(d)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(10 << 20))
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tar:
        tar.add(blob, "blob")
    refused = d.ctl("import", str(big), "big:1", check=False)
    assert refused.returncode == 1
    assert "No space left on device" in refused.stderr
    assert "Errno" not in refused.stderr
    assert "not a readable tarball" not in refused.stderr
    assert "big" not in d.ctl("images").stdout
    assert _used(d) - before < 1 << 20

    blob.write_bytes(os.urandom(2 << 20))
    small = tmp_path / "small.tar"
    with tarfile.open(small, "w") as tar:
        tar.add(blob, "blob")
    d.ctl("import", str(small), "small:1")
    assert d.ctl("run", "--rm", "small:1", "/blob", check=False).returncode == 126


def test_a_build_step_that_fills_the_disk_is_the_error_reported(
    small_root: Daemon, tmp_path: Path
) -> None:
    """The RUN step fails (its dd finds no room); the build then could not write the
    record that retires the step's image, and that ENOSPC was the build's error instead
    of Docker's line naming the step that failed."""
    d = small_root
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM default\nRUN dd if=/dev/zero of=/big bs=1M count=64\n")
    r = d.ctl("build", "-t", "filled", str(ctx), check=False)
    assert r.returncode == 1
    assert (
        "The command '/bin/sh -c dd if=/dev/zero of=/big bs=1M count=64' returned a non-zero "
        "code: 1" in r.stderr + r.stdout
    )
    assert "Errno" not in r.stderr + r.stdout

"""boxctl's verbs typed as a Docker user types them, through the real CLI and daemon: the
spellings of docker CLI 28 (``stop --timeout``, ``-c``), the values it takes and those it
refuses, its prune question and output."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from daemon_harness import Daemon

pytestmark = pytest.mark.root


def test_docker_28s_spellings_of_stop_restart_and_cpu_shares(daemon: Daemon) -> None:
    """docker 28 names stop's and restart's -t --timeout (--time is its old name); -c is
    --cpu-shares of run, create and update; on-failure:0 (and always:0) is a policy."""
    daemon.ctl("run", "-d", "--name", "s", "-c", "512", "default", "sleep", "300")
    assert daemon.inspect("s")["config"]["resources"]["cpu_shares"] == 512
    daemon.ctl("update", "-c", "256", "s")
    assert daemon.inspect("s")["config"]["resources"]["cpu_shares"] == 256
    assert daemon.ctl("restart", "--timeout", "0", "s").stdout == "s\n"
    assert daemon.ctl("stop", "--timeout=0", "s").stdout == "s\n"
    assert daemon.ctl("start", "s").stdout == "s\n"
    assert daemon.ctl("stop", "--time", "0", "s").stdout == "s\n"
    for policy, shown in (("on-failure:0", "on-failure"), ("always:0", "always")):
        daemon.ctl("create", "--name", policy[:2], "--restart", policy, "default", "true")
        assert daemon.inspect(policy[:2])["config"]["restart"]["name"] == shown
    r = daemon.ctl("create", "--restart", "always:2", "default", "true", check=False)
    assert (r.returncode, r.stderr) == (
        125,
        "boxctl: invalid --restart 'always:2': use no, on-failure[:max], always or "
        "unless-stopped\n",
    )
    daemon.ctl("rm", "-f", "s", "on", "al")


def test_an_empty_variable_name_is_refused_by_run_and_exec(daemon: Daemon) -> None:
    """Docker's ValidateEnv: ``-e ''`` and ``-e =x`` name no variable: refused (125) before
    anything runs, by run and exec alike."""
    daemon.ctl("run", "-d", "--name", "e", "default", "sleep", "300")
    for verb in (["run", "--rm"], ["exec"]):
        for value in ("", "=x"):
            target = ["default", "true"] if verb[0] == "run" else ["e", "true"]
            r = daemon.ctl(*verb, "-e", value, *target, check=False)
            assert (r.returncode, r.stderr) == (
                125,
                f"boxctl: invalid --env '{value}': use KEY=VALUE or KEY\n",
            ), (verb, value)
    assert daemon.ctl("ps", "-aq").stdout.count("\n") == 1
    daemon.ctl("rm", "-f", "e")


def test_image_prune_asks_first_and_reports_as_docker(daemon: Daemon, tmp_path: Path) -> None:
    """docker image prune: a question unless -f (no answer, or any but y, keeps every
    image), then ``Deleted Images:`` and the space reclaimed, as container prune."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "f").write_text("x" * 5000)
    tarball = tmp_path / "root.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    image_id = daemon.ctl("import", str(tarball), "pruned:1").stdout.strip()

    def stored() -> list[str]:
        return [i["Id"] for i in json.loads(daemon.ctl("image", "inspect", image_id).stdout)]

    question = (
        "WARNING! This will remove all images without at least one container associated to "
        "them.\nAre you sure you want to continue? [y/N] "
    )
    for answer in (None, b"n\n", b"yes please\n"):
        r = daemon.ctl("image", "prune", "-a", input=answer)
        assert r.stdout == question, answer
        assert stored() == [image_id]
    r = daemon.ctl("image", "prune", input=b"\n")
    assert r.stdout == (
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    )
    assert daemon.ctl("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    r = daemon.ctl("image", "prune", "-a", input=b"y\n")
    assert r.stdout.startswith(
        f"{question}Deleted Images:\nuntagged: pruned:1\ndeleted: {image_id}\n"
    )
    # The layer's files: 5000 bytes and what the file system spends on them.
    assert re.search(r"\n\nTotal reclaimed space: 5\.\d+kB\n\Z", r.stdout), r.stdout
    assert daemon.ctl("image", "inspect", image_id, check=False).returncode == 1

"""boxctl's verbs typed as a Docker user types them, through the real CLI and daemon: the
spellings of docker CLI 28 (``stop --timeout``, ``-c``), the values it takes and those it
refuses, its prune question and output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import Daemon, _env
from docker_clients import docker, needs_cli

from boxctl._images import _ago, image_rows

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


def _import(daemon: Daemon, tmp_path: Path, *refs: str) -> str:
    """A small image, tagged ``refs``: its id."""
    root = tmp_path / "import-root"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "bin" / "f").write_text("x" * 5000)
    tarball = tmp_path / "import.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    image_id = daemon.ctl("import", str(tarball), refs[0]).stdout.strip()
    for ref in refs[1:]:
        daemon.ctl("tag", refs[0], ref)
    return image_id


def test_ages_in_go_units_words() -> None:
    """images' CREATED and history's, as Docker's (they said ``0 seconds ago`` and ``1
    seconds ago``)."""
    created = "2026-01-01T00:00:00.123456789Z"
    start = 1767225600.0
    assert _ago(created, start + 0.5) == "Less than a second ago"
    assert _ago(created, start + 1.5) == "1 second ago"
    assert _ago(created, start + 90) == "About a minute ago"
    assert _ago("", start) == "N/A"


def test_images_shows_a_repository_s_digest_on_each_of_its_tags() -> None:
    """As the docker CLI's images: every tag of a repository has that repository's digest
    (the second tag of a pushed image showed <none>); a repository known by a digest alone
    has its own row."""
    image = {
        "id": "sha256:" + "ab" * 32,
        "created": "",
        "size": 0,
        "containers": 0,
        "repo_tags": ["127.0.0.1:5000/app:1.2", "127.0.0.1:5000/app:1.3", "other:1"],
        "repo_digests": ["127.0.0.1:5000/app@sha256:" + "cd" * 32, "third@sha256:" + "ef" * 32],
    }
    rows = [(r["Repository"], r["Tag"], r["Digest"]) for r in image_rows([image], 0, trunc=True)]
    assert rows == [
        ("127.0.0.1:5000/app", "1.2", "sha256:" + "cd" * 32),
        ("127.0.0.1:5000/app", "1.3", "sha256:" + "cd" * 32),
        ("other", "1", "<none>"),
        ("third", "<none>", "sha256:" + "ef" * 32),
    ]


@needs_cli
def test_images_and_history_formats_as_the_docker_cli_prints_them(
    daemon: Daemon, tmp_path: Path
) -> None:
    """images: Go templates of the docker CLI's fields (they were refused), ``-q`` a line
    per tag, the table's columns; history: templates, -q, -H=false.  The same daemon
    through the docker CLI is the reference (CreatedSince aside: a second may pass between
    the two)."""
    image_id = _import(daemon, tmp_path, "fmt:1", "other/fmt:2")
    fields = "{{.Repository}}|{{.Tag}}|{{.Digest}}|{{.ID}}|{{.CreatedAt}}|{{.Size}}"
    fields += "|{{.VirtualSize}}|{{.Containers}}|{{.SharedSize}}|{{.UniqueSize}}"
    for args in (
        ["images", "--format", fields],
        ["images", "--no-trunc", "--format", "table " + fields.replace("|", "\\t")],
        ["images", "-q"],
        ["images", "-aq", "--no-trunc"],
        ["images", "--format", "{{.Repository}}", "other/fmt"],
        ["history", "-q", "fmt:1"],
        ["history", "--format", "{{.ID}} {{.CreatedAt}} {{.Size}} {{.Comment}}", "fmt:1"],
        ["history", "-H=false", "--format", "table {{.CreatedSince}}\\t{{.Size}}", "fmt:1"],
    ):
        ours, theirs = daemon.ctl(*args), docker(daemon, *args)
        assert theirs.returncode == 0, theirs.stderr
        # The docker CLI orders an image's tags as a Go map's keys come: any order.
        assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines()), args
        if "table" in str(args):  # the same header
            assert ours.stdout.splitlines()[0] == theirs.stdout.splitlines()[0], args
    assert daemon.ctl("images", "-q").stdout.count(image_id[7:19]) == 2
    # Docker's fields as JSON; boxctl's --format json is boxd's own records (README).
    rows = [
        sorted(
            (json.loads(line) for line in r.stdout.splitlines()),
            key=lambda row: (row.pop("CreatedSince"), str(row))[1],
        )
        for r in (
            daemon.ctl("images", "--format", "{{json .}}"),
            docker(daemon, "images", "--format", "json"),
        )
    ]
    assert rows[0] == rows[1]
    table = daemon.ctl("images", "--digests", "fmt").stdout.splitlines()
    assert table[0].startswith("REPOSITORY   TAG       DIGEST    IMAGE ID       CREATED ")
    assert table[0].endswith("   SIZE")
    assert table[1].startswith(f"fmt          1         <none>    {image_id[7:19]}   ")
    r = daemon.ctl("images", "--format", "{{.Nope}}", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: template: can't evaluate field Nope\n")


@needs_cli
def test_what_is_not_there_is_named_in_dockers_words(daemon: Daemon) -> None:
    """``No such container: nope`` (it was ``no such container``), image, volume, network,
    object: the docker CLI's line on the same daemon, after its ``Error response from
    daemon:``; exit 1 from both.  ``container inspect`` looks for containers only."""
    for args in (
        ["stop", "nope"],
        ["logs", "nope"],
        ["exec", "nope", "true"],
        ["rm", "nope"],
        ["rmi", "nope"],
        ["history", "nope"],
        ["volume", "rm", "nope"],
        ["network", "rm", "nope"],
        ["inspect", "nope"],
        ["container", "inspect", "nope"],
        ["inspect", "--type", "image", "nope"],
    ):
        ours, theirs = daemon.ctl(*args, check=False), docker(daemon, *args)
        assert ours.returncode == theirs.returncode == 1, args
        assert ours.stdout == theirs.stdout, args  # inspect's []
        words = theirs.stderr.splitlines()[0].removeprefix("Error response from daemon: ")
        assert ours.stderr == f"boxctl: {words.removeprefix('Error: ')}\n", args
    # -f: what is not there is said, and no failure (docker 28's rm -f and rmi -f).
    for args in (["rm", "-f", "nope"], ["rmi", "-f", "nope"]):
        ours, theirs = daemon.ctl(*args), docker(daemon, *args)
        words = theirs.stderr.removeprefix("Error response from daemon: ")
        assert (ours.returncode, ours.stderr) == (theirs.returncode, f"boxctl: {words}"), args
    # The image it goes to pull, named as Docker names it: with its tag.
    r = daemon.ctl("create", "127.0.0.1:1/team/nope", check=False)
    assert r.returncode == 125
    assert r.stderr.startswith("Unable to find image '127.0.0.1:1/team/nope:latest' locally\n")


@needs_cli
def test_stats_all_no_trunc_and_the_newest_first(daemon: Daemon) -> None:
    """docker stats -a (the stopped ones as zeros; refused before), --no-trunc (whole ids),
    and without names the newest first, as the docker CLI shows the same daemon's."""
    for name in ("older", "newer"):
        daemon.ctl("run", "-d", "--name", name, "default", "sleep", "300")
    daemon.ctl("create", "--name", "idle", "default", "true")
    newer = daemon.inspect("newer")["id"]
    for args, expected in (
        ([], "newer 1\nolder 1\n"),
        (["-a"], "idle 0\nnewer 1\nolder 1\n"),
        (["--all"], "idle 0\nnewer 1\nolder 1\n"),
    ):
        fmt = ["--no-stream", "--format", "{{.Name}} {{.PIDs}}"]
        assert daemon.ctl("stats", *args, *fmt).stdout == expected, args
        assert docker(daemon, "stats", *args, *fmt).stdout == expected, args
    whole = ["stats", "--no-stream", "--no-trunc", "--format", "{{.ID}}", "newer"]
    assert daemon.ctl(*whole).stdout == docker(daemon, *whole).stdout == f"{newer}\n"
    daemon.ctl("rm", "-f", "older", "newer", "idle")


def test_stats_of_a_container_removed_meanwhile_goes_on_with_dashes(daemon: Daemon) -> None:
    """``stats NAME`` of a container removed while it streams keeps streaming, the
    container's counters shown as ``--``, as the docker CLI shows them (it exited 1)."""
    daemon.ctl("run", "-d", "--name", "brief", "default", "sleep", "300")
    argv = [sys.executable, "-m", "boxctl", "--socket", str(daemon.socket), "stats",
            "--format", "{{.Name}} {{.PIDs}} {{.CPUPerc}}", "brief"]  # fmt: skip
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    ) as shown:
        try:
            assert shown.stdout is not None
            assert shown.stdout.readline().startswith("brief 1 ")
            daemon.ctl("rm", "-f", "brief")
            lines = iter(shown.stdout.readline, "")  # (a frame of it stopped, maybe, first)
            assert next((line for line in lines if "--" in line), None) == "brief -- --\n"
            assert shown.stdout.readline() == "brief -- --\n" and shown.poll() is None
        finally:
            shown.kill()


@needs_cli
def test_top_aligns_its_columns_as_docker_top(daemon: Daemon) -> None:
    """docker top's table: each column but the last at least 20 wide (its widest cell and
    3 spaces); boxctl's was as narrow as its cells."""
    daemon.ctl("run", "-d", "--name", "t", "default", "sh", "-c", "sleep 301 & sleep 302")
    # ps's own columns that change between two calls (C, TIME) left out.
    for args in (["t", "-o", "pid,ppid,user,args"], ["t", "-o", "pid,comm"]):
        assert daemon.ctl("top", *args).stdout == docker(daemon, "top", *args).stdout, args
    ours, theirs = daemon.ctl("top", "t").stdout, docker(daemon, "top", "t").stdout
    assert ours.splitlines()[0] == theirs.splitlines()[0]
    assert ours.startswith("UID                 PID                 PPID                C   ")
    daemon.ctl("rm", "-f", "t")


@needs_cli
def test_version_and_info_take_dockers_format(daemon: Daemon) -> None:
    """``version --format '{{.Server.Version}}'`` and ``info --format '{{.ServerVersion}}'``
    (both refused before): Docker's field names, the docker CLI's values from the same
    daemon; ``json`` all of them; an unknown field refused naming it."""
    daemon.ctl("run", "-d", "--name", "up", "default", "sleep", "300")
    daemon.ctl("create", "--name", "down", "default", "true")
    fields = "{{.ServerVersion}} {{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}"
    fields += " {{.ContainersPaused}} {{.DockerRootDir}} {{.CgroupVersion}} {{.OSType}}"
    for args in (
        ["info", "--format", fields],
        ["system", "info", "-f", "{{.Containers}}"],
        ["version", "--format", "{{.Server.Version}}"],
    ):
        assert daemon.ctl(*args).stdout == docker(daemon, *args).stdout, args
    info = json.loads(daemon.ctl("info", "--format", "json").stdout)
    assert (info["Containers"], info["ContainersRunning"]) == (2, 1)
    version = json.loads(daemon.ctl("version", "-f", "json").stdout)
    assert version["Client"]["Version"] == version["Server"]["Version"]
    r = daemon.ctl("info", "--format", "{{.Nope}}", check=False)
    assert (r.returncode, r.stderr) == (1, "boxctl: template: can't evaluate field Nope\n")
    daemon.ctl("rm", "-f", "up", "down")


@needs_cli
def test_load_quiet_as_docker_load(daemon: Daemon, tmp_path: Path) -> None:
    """docker load -q (refused before): what was loaded, no progress."""
    _import(daemon, tmp_path, "loaded:1")
    archive = tmp_path / "saved.tar"
    daemon.ctl("save", "-o", str(archive), "loaded:1")
    ours = daemon.ctl("load", "-q", "-i", str(archive)).stdout
    assert ours == docker(daemon, "load", "--quiet", "-i", str(archive)).stdout
    assert ours == "Loaded image: loaded:1\n"


@needs_cli
def test_ps_quiet_with_a_format_warns_as_docker_ps(daemon: Daemon) -> None:
    """-q wins over --format, with docker ps's warning on stderr (it was silent)."""
    cid = daemon.ctl("create", "--name", "q", "default", "true").stdout
    args = ["ps", "-aq", "--format", "{{.Names}}"]
    ours, theirs = daemon.ctl(*args), docker(daemon, *args)
    assert (
        (ours.stdout, ours.stderr)
        == (theirs.stdout, theirs.stderr)
        == (
            cid[:12] + "\n",
            "WARNING: Ignoring custom format, because both --format and --quiet are set.\n",
        )
    )
    daemon.ctl("rm", "q")


@needs_cli
def test_system_df_rows_and_format_as_dockers(daemon: Daemon, tmp_path: Path) -> None:
    """docker system df's rows (Build Cache, no Layers), 4-digit sizes, the bytes stopped
    containers wrote as reclaimable, and templates of its fields (refused before)."""
    _import(daemon, tmp_path, "df:1")
    daemon.ctl("run", "--name", "wrote", "default", "sh", "-c", "head -c 20000 /dev/zero > /f")
    daemon.ctl("run", "-d", "--name", "runs", "default", "sleep", "300")
    for args in (
        ["system", "df"],
        ["system", "df", "--format", "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Reclaimable}}"],
        ["system", "df", "--format", "table {{.Type}}\\t{{.Size}}"],
    ):
        ours = daemon.ctl(*args).stdout
        assert ours == docker(daemon, *args).stdout, args
    containers = daemon.ctl("system", "df", "--format", "{{.Type}} {{.Reclaimable}}").stdout
    assert re.search(r"^Containers 2\d(\.\d+)?kB \(100%\)$", containers, re.M), containers
    assert json.loads(daemon.ctl("system", "df", "--format", "json").stdout)["layers"] == 1
    # -v: each image, container and volume, in docker's tables (times moved on between
    # the two calls are compared as words, the columns as cells).
    daemon.ctl("volume", "create", "kept")
    daemon.ctl("create", "--name", "mounts", "-v", "kept:/k", "-v", "/tmp:/t", "df:1", "true")
    ours, theirs = daemon.ctl("system", "df", "-v").stdout, docker(daemon, "system", "df", "-v")
    assert _cells(ours) == _cells(theirs.stdout), ours
    assert "Local Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\nkept " in ours
    r = daemon.ctl("system", "df", "-v", "--format", "json", check=False)
    assert r.returncode == 1 and "invalid --format 'json' with --verbose" in r.stderr
    daemon.ctl("rm", "-f", "wrote", "runs", "mounts")
    daemon.ctl("volume", "rm", "kept")


def _cells(table: str) -> list[list[str]]:
    """A table's lines as their cells, each time in it as ``T``."""
    when = re.compile(r"(Less than a second|About an? \w+|\d+ \w+)")
    return [
        [when.sub("T", c) for c in re.split(r" {2,}", line.strip())] for line in table.split("\n")
    ]


def test_disable_content_trust_is_taken_and_its_false_refused(daemon: Daemon) -> None:
    """CI scripts pass docker's --disable-content-trust (true: Docker's default); boxd
    verifies no signatures, so =false is refused by name (125) before anything is done."""
    assert daemon.ctl("run", "--rm", "--disable-content-trust", "default", "echo", "ok").stdout
    daemon.ctl("create", "--disable-content-trust=true", "--name", "t", "default", "true")
    refused = (
        "boxctl: invalid --disable-content-trust=false: boxd does not verify image signatures "
        "(Docker Content Trust); images are checked by their digests\n"
    )
    for args in (
        ["run", "--rm", "--disable-content-trust=false", "default", "true"],
        ["create", "--disable-content-trust=false", "default", "true"],
        ["pull", "--disable-content-trust=false", "busybox"],
        ["push", "--disable-content-trust=false", "busybox"],
        ["build", "--disable-content-trust=false", "."],
    ):
        r = daemon.ctl(*args, check=False)
        assert (r.returncode, r.stderr) == (125, refused), args
    assert daemon.ctl("ps", "-aq").stdout.count("\n") == 1
    daemon.ctl("rm", "t")


def test_volume_and_network_inspect_print_as_docker_inspect(daemon: Daemon) -> None:
    """The docker CLI's inspect JSON: four spaces and UTF-8 text.  `volume inspect` and
    `network inspect` printed two spaces and \\u escapes, unlike `boxctl inspect` (even of
    the same network)."""
    daemon.ctl("volume", "create", "--label", "équipe=café", "vi")
    daemon.ctl("network", "create", "--label", "équipe=café", "ni")
    try:
        volume = daemon.ctl("volume", "inspect", "vi").stdout
        network = daemon.ctl("network", "inspect", "ni").stdout
        for out in (volume, network):
            assert out.startswith("[\n    {\n        "), out
            assert '"équipe": "café"' in out, out
        assert network == daemon.ctl("inspect", "--type", "network", "ni").stdout
    finally:
        daemon.ctl("volume", "rm", "vi", check=False)
        daemon.ctl("network", "rm", "ni", check=False)


@needs_cli
def test_inspect_prints_what_docker_inspect_prints_of_a_container_s_networks(
    daemon: Daemon,
) -> None:
    """boxctl inspect shaped the record itself and named each endpoint's network where its
    NetworkID belongs, without DNSNames or the aliases the Engine API (1.44 on) gives: the
    docker CLI on the same daemon is the reference.  (The daemon shapes both now, with the
    Engine API's code: the CLI that did imported most of the daemon, ~150 ms a call.)"""
    daemon.ctl("network", "create", "insp")
    try:
        daemon.ctl("run", "-d", "--name", "c", "default", "sleep", "300")
        daemon.ctl("network", "connect", "--alias", "al", "insp", "c")
        inspects = (["inspect", "c"], ["container", "inspect", "c"], ["inspect", "-s", "c"])
        for args in (*inspects, ["network", "inspect", "insp", "bridge", "host"]):
            ours, theirs = daemon.ctl(*args), docker(daemon, *args)
            assert theirs.returncode == 0, theirs.stderr
            assert ours.stdout == theirs.stdout
        [shown] = json.loads(daemon.ctl("inspect", "c").stdout)
        endpoint = shown["NetworkSettings"]["Networks"]["insp"]
        network_id = daemon.ctl("network", "inspect", "-f", "{{.Id}}", "insp").stdout.strip()
        assert endpoint["NetworkID"] == network_id
        assert endpoint["DNSNames"][:2] == ["c", "al"]
    finally:
        daemon.ctl("rm", "-f", "c", check=False)
        daemon.ctl("network", "rm", "insp", check=False)


@needs_cli
def test_ps_shows_ports_networks_and_local_volumes_as_docker_ps(daemon: Daemon) -> None:
    """A stopped container showed its exposed ports and only its first network, every
    container 0 local volumes, and a --network container:NAME joiner that mode as a network;
    the Engine API gave a host or none container no network (Docker's lists that one): the
    docker CLI's ps on the same daemon is the reference (its networks in a Go map's order:
    compared as sets)."""
    fields = "{{.Names}}|{{.Ports}}|{{.Networks}}|{{.LocalVolumes}}|{{.Mounts}}"

    def rows(lines: str) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for line in lines.splitlines():
            name, ports, networks, count, mounts = line.split("|")
            found.add((name, ports, ",".join(sorted(networks.split(","))), count, mounts))
        return found

    daemon.ctl("network", "create", "psn")
    try:
        daemon.ctl("run", "-d", "--name", "p", "--network", "psn", "-p", "80", "--expose", "90",
                   "-v", "psv:/d", "-v", "/tmp:/t", "default", "sleep", "300")  # fmt: skip
        daemon.ctl("network", "connect", "bridge", "p")
        daemon.ctl(
            "run", "-d", "--name", "j", "--network", "container:p", "default", "sleep", "300"
        )
        daemon.ctl("run", "-d", "--name", "h", "--network", "host", "default", "sleep", "300")
        daemon.ctl("create", "--name", "n", "--network", "none", "default", "true")
        for stop in (False, True):
            if stop:
                daemon.ctl("stop", "-t", "0", "p", "j")
            ours = rows(daemon.ctl("ps", "-a", "--format", fields).stdout)
            theirs = docker(daemon, "ps", "-a", "--format", fields)
            assert theirs.returncode == 0, theirs.stderr
            assert ours == rows(theirs.stdout), stop
            (p,) = [r for r in ours if r[0] == "p"]
            assert p[2:] == ("bridge,psn", "1", "psv,/tmp") and ("90/tcp" in p[1]) is not stop
            assert {r[0]: r[2] for r in ours if r[0] in "hn"} == {"h": "host", "n": "none"}
    finally:
        daemon.ctl("rm", "-fv", "p", "j", "h", "n", check=False)
        daemon.ctl("network", "rm", "psn", check=False)


def test_security_opts_as_the_docker_cli_takes_them(daemon: Daemon) -> None:
    """``apparmor=unconfined`` and ``label=disable`` (guides for FUSE or Docker in Docker
    carry them) ask for what boxd does anyway: taken, as by the Engine API and by dockerd
    on a host without AppArmor or SELinux; Docker's older KEY:VALUE too.  A profile or
    label to apply is refused, named (boxctl refused all four before)."""
    opts = ("apparmor=unconfined", "label=disable", "label:disable", "seccomp:unconfined",
            "no-new-privileges:false")  # fmt: skip
    args = [word for opt in opts for word in ("--security-opt", opt)]
    out = daemon.ctl("run", "--rm", *args, "default", "grep", "-E", "^(Seccomp|NoNewPrivs):",
                     "/proc/self/status").stdout  # fmt: skip
    assert out.split() == ["NoNewPrivs:", "0", "Seccomp:", "0"]
    for opt, words in (
        ("apparmor=docker-default", "boxd has no AppArmor profiles (only apparmor=unconfined"),
        ("label=type:svirt_apache_t", "boxd has no SELinux labels (only label=disable"),
        ("bogus=1", "use no-new-privileges[=false], seccomp=unconfined|PROFILE.json"),
    ):
        r = daemon.ctl("run", "--rm", "--security-opt", opt, "default", "true", check=False)
        assert r.returncode == 125 and f"boxctl: invalid --security-opt '{opt}': {words}" in (
            r.stderr
        )

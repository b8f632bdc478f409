"""``--platform`` of run and create (boxd/_platforms.py), as Docker: a stored image of
another platform is pulled for the one asked for, or with ``--pull never`` refused in
Docker's words.  A real registry holds a two-platform index (the host's and another, the
same busybox layer under two configurations); boxctl, the docker CLI and docker-py ask."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import docker, needs_cli
from registry_harness import Registry, add_index, build_oci_image, running_registry

from boxd import _platforms
from boxd._images.pull import Platform, choose_platform
from boxd._images.registry import RegistryError

HOST = _platforms.text(_platforms.host())
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", ("linux", "amd64", "")),
        ("linux/x86_64", ("linux", "amd64", "")),
        ("Linux/AARCH64", ("linux", "arm64", "")),
        ("linux/arm64/v8", ("linux", "arm64", "")),
        ("linux/arm/v7", ("linux", "arm", "v7")),
    ],
)
def test_platforms_parse_as_containerd_normalizes_them(
    text: str, platform: tuple[str, str, str]
) -> None:
    assert _platforms.parse(text) == platform


@pytest.mark.parametrize("text", ["linux", "amd64", "linux/", "/amd64", "linux/arm/v7/x", ""])
def test_a_malformed_platform_is_named(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid platform '{text}': use os/arch"):
        _platforms.parse(text)


def test_a_mismatch_is_told_in_dockers_words() -> None:
    arm7 = _platforms.parse("linux/arm/v7")
    _platforms.check("x", _platforms.parse("linux/arm"), arm7)  # no variant asked: any
    _platforms.check("x", arm7, _platforms.of_config({"os": "linux", "architecture": "arm"}))
    with pytest.raises(_platforms.PlatformMismatch) as info:
        _platforms.check("busybox", _platforms.parse("linux/arm64"), ("linux", "amd64", ""))
    assert str(info.value) == (
        "image with reference busybox was found but does not match the specified platform: "
        "wanted linux/arm64, actual: linux/amd64"
    )
    assert _platforms.of_config({}) == _platforms.host()  # no platform named: the host's


def test_the_hosts_x86_64_level_is_read_from_its_cpu_flags(tmp_path: Path) -> None:
    v2 = "cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"
    v3 = f"{v2} abm avx avx2 bmi1 bmi2 f16c fma movbe xsave"
    for flags, level in [
        ("fpu sse sse2", 1),
        (v2, 2),
        (v3.replace(" avx2", ""), 2),
        (v3, 3),
        (f"{v3} avx512f avx512bw avx512cd avx512dq avx512vl", 4),
        (f"{v2} avx512f avx512bw avx512cd avx512dq avx512vl", 2),
    ]:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n\nprocessor\t: 1\n")
        assert _platforms.amd64_level(str(cpuinfo)) == level, flags
    assert _platforms.amd64_level(str(tmp_path / "missing")) == 1


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("linux/amd64/v3", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]),
        ("linux/amd64", ["linux/amd64", "linux/386"]),
        ("linux/arm/v7", ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        ("linux/arm64/v8", ["linux/arm64", *(f"linux/arm/v{n}" for n in (8, 7, 6, 5))]),
        (
            "linux/arm64/v8.2",
            [
                "linux/arm64/v8.2",
                "linux/arm64/v8.1",
                "linux/arm64",
                *(f"linux/arm/v{n}" for n in (8, 7, 6, 5)),
            ],
        ),
        (
            "linux/arm64/v9.1",
            [
                "linux/arm64/v9.1",
                "linux/arm64/v9",
                *(f"linux/arm64/v8.{n}" for n in range(6, 0, -1)),
                "linux/arm64",
                *(f"linux/arm/v{n}" for n in (8, 7, 6, 5)),
            ],
        ),
        ("linux/riscv64", ["linux/riscv64"]),
    ],
)
def test_what_runs_where_a_platform_runs_best_first_as_containerds_only(
    text: str, order: list[str]
) -> None:
    assert [_platforms.text(p) for p in _platforms.compatible(_platforms.parse(text))] == order


def test_an_index_entry_without_a_platform_comes_last_and_attestations_never() -> None:
    manifest = "application/vnd.oci.image.manifest.v1+json"

    def entry(n: int, **fields: object) -> dict[str, object]:
        return {"mediaType": manifest, "digest": f"sha256:{n:064x}", "size": 1, **fields}

    attestation = entry(
        1, annotations={"vnd.docker.reference.type": "attestation-manifest"}
    )  # as buildx lists it, without a platform here
    plain = entry(2)
    arm = entry(3, platform={"os": "linux", "architecture": "arm64"})
    want = Platform("linux", "arm64")
    assert choose_platform("x", {"manifests": [attestation, plain, arm]}, want) == arm["digest"]
    assert choose_platform("x", {"manifests": [attestation, plain]}, want) == plain["digest"]
    with pytest.raises(RegistryError, match="x: no image for platform linux/arm64"):
        choose_platform("x", {"manifests": [attestation]}, want)


# ---- a daemon and a registry --------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, busybox_root: Path) -> Iterator[Registry]:
    """A registry with ``multi:1``: the host's platform and OTHER."""
    base = tmp_path_factory.mktemp("platform")
    layout = base / "layout"
    build_oci_image(layout, "host", busybox_root, config={"cmd": ["/bin/true"]})
    umoci = shutil.which("umoci")
    assert umoci is not None  # build_oci_image skipped the test otherwise
    _, arch = OTHER.split("/")
    subprocess.run(
        [umoci, "config", "--image", f"{layout}:host", "--tag", "other", f"--architecture={arch}"],
        check=True,
    )
    add_index(layout, "multi", [("host", HOST), ("other", OTHER)])
    with running_registry(base) as registry:
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
             f"oci:{layout}:multi", f"docker://{registry.host}/multi:1"],
            check=True,
        )  # fmt: skip
        yield registry


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("platform-daemon")) as d:
        yield d


def _arch(daemon: Daemon, ref: str) -> str:
    return str(json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]["Architecture"])


@pytest.mark.root
def test_boxctl_pulls_the_platform_asked_for(daemon: Daemon, registry: Registry) -> None:
    ref = f"{registry.host}/multi:1"
    daemon.ctl("pull", ref)
    assert _arch(daemon, ref) == HOST.split("/")[1]
    # The stored image is the host's: used as it is.
    ran = daemon.ctl("run", "--rm", "--platform", HOST, ref, "echo", "hi")
    assert ran.stdout == "hi\n" and "Unable to find" not in ran.stderr
    # Another platform with --pull never: Docker's refusal, nothing created.
    never = daemon.ctl("run", "--rm", "--pull", "never", "--platform", OTHER, ref, "true",
                       check=False)  # fmt: skip
    assert never.returncode == 125
    assert (
        f"image with reference {ref} was found but does not match the specified platform: "
        f"wanted {OTHER}, actual: {HOST}"
    ) in never.stderr
    # Otherwise it is pulled for that platform (what the tag names from now on).
    created = daemon.ctl("create", "--name", "o", "--platform", OTHER, ref, "true")
    assert f"Unable to find image '{ref}' locally" in created.stderr
    assert _arch(daemon, ref) == OTHER.split("/")[1]
    daemon.ctl("rm", "o")
    # Malformed, or not the host's for default: refused by name.
    bad = daemon.ctl("run", "--rm", "--platform", "linux", ref, "true", check=False)
    assert bad.returncode == 125 and "invalid platform 'linux': use os/arch" in bad.stderr
    default = daemon.ctl("run", "--rm", "--platform", OTHER, "default", "true", check=False)
    assert default.returncode == 125
    assert f"wanted {OTHER}, actual: {HOST}" in default.stderr
    assert daemon.ctl("run", "--rm", "--platform", HOST, "default", "echo", "ok").stdout == "ok\n"
    assert daemon.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
@needs_cli
def test_docker_cli_and_docker_py_pull_the_platform_asked_for(
    daemon: Daemon, registry: Registry
) -> None:
    ref = f"{registry.host}/multi:1"
    daemon.ctl("pull", ref)
    never = docker(daemon, "run", "--rm", "--pull", "never", "--platform", OTHER, ref, "true")
    assert never.returncode == 125
    assert f"does not match the specified platform: wanted {OTHER}" in never.stderr
    ran = docker(daemon, "run", "--rm", "--platform", OTHER, ref, "echo", "pulled")
    assert (ran.returncode, ran.stdout) == (0, "pulled\n"), ran.stderr
    assert "Unable to find image" in ran.stderr
    assert _arch(daemon, ref) == OTHER.split("/")[1]
    bad = docker(daemon, "create", "--platform", "linux", ref, "true")
    assert bad.returncode != 0 and "linux" in bad.stderr
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=f"unix://{daemon.docker_socket}")
    try:
        # docker-py knows Docker's words: it pulls the platform asked for, and runs again.
        out = client.containers.run(ref, ["echo", "py"], remove=True, platform=HOST)
        assert out == b"py\n"
        assert _arch(daemon, ref) == HOST.split("/")[1]
    finally:
        client.close()
    assert daemon.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
@needs_cli
def test_docker_build_pulls_the_platform_asked_for(
    daemon: Daemon, registry: Registry, tmp_path: Path
) -> None:
    """``docker build --platform`` takes its FROM image for that platform, as Docker's
    builder does: a stored image of another one is pulled for it (it was built upon as it
    was, the --platform ignored)."""
    ref = f"{registry.host}/multi:1"
    daemon.ctl("pull", "--platform", HOST, ref)
    assert _arch(daemon, ref) == HOST.split("/")[1]
    (tmp_path / "Dockerfile").write_text(f"FROM {ref}\nLABEL built=1\n")
    r = docker(daemon, "build", "--platform", OTHER, "-t", "other-built", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"Pulling {ref}" in r.stdout
    assert _arch(daemon, "other-built") == _arch(daemon, ref) == OTHER.split("/")[1]
    # The platform of the stored one: used as it is, nothing pulled.
    r = docker(daemon, "build", "--platform", OTHER, "-t", "other-built", str(tmp_path))
    assert r.returncode == 0 and "Pulling" not in r.stdout, r.stdout + r.stderr
    daemon.ctl("rmi", "other-built")


@pytest.mark.root
@pytest.mark.skipif(HOST != "linux/amd64", reason="the x86-64 levels of an amd64 host")
def test_an_index_of_amd64_levels_gives_the_one_the_cpu_runs(
    daemon: Daemon, registry: Registry, tmp_path: Path, busybox_root: Path
) -> None:
    """An index whose first amd64 entry is v4 (as a build for several levels may list
    them): Docker's pull takes the highest level this CPU runs, never one above it, and
    with ``--platform linux/amd64`` the baseline one; ``--platform`` with a level takes
    that one; a platform the index lacks is refused naming it."""
    layout = tmp_path / "layout"
    build_oci_image(layout, "v1", busybox_root, config={"cmd": ["/bin/true"]})
    umoci = shutil.which("umoci")
    assert umoci is not None
    for tag in ("v2", "v3", "v4"):
        subprocess.run(
            [umoci, "config", "--image", f"{layout}:v1", "--tag", tag,
             f"--config.label=level={tag}"],
            check=True,
        )  # fmt: skip
    levels = [(f"v{n}", f"linux/amd64/v{n}") for n in (4, 2, 3)]
    add_index(layout, "levels", [levels[0], ("v1", "linux/amd64"), *levels[1:]])
    ref = f"{registry.host}/levels:1"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--all", "--dest-tls-verify=false",
         f"oci:{layout}:levels", f"docker://{ref}"],
        check=True,
    )  # fmt: skip

    def level(*platform: str) -> str:
        daemon.ctl("pull", *platform, ref)
        labels = json.loads(daemon.ctl("image", "inspect", ref).stdout)[0]["Config"].get("Labels")
        return str((labels or {}).get("level", "v1"))

    assert level() == f"v{_platforms.amd64_level()}"
    assert level("--platform", "linux/amd64") == "v1"
    assert level("--platform", "linux/amd64/v2") == "v2"
    r = daemon.ctl("pull", "--platform", "linux/arm/v7", ref, check=False)
    assert r.returncode == 1
    assert (
        f"{ref}: no image for platform linux/arm/v7 (the index has: linux/amd64, "
        "linux/amd64/v2, linux/amd64/v3, linux/amd64/v4)"
    ) in r.stderr
    daemon.ctl("rmi", ref)

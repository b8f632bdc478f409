"""Host devices in containers: ``--device`` and ``--device-cgroup-rule`` (boxd/_devicemap.py).

Parsing and refusals without the kernel; then real containers of a real daemon, through
boxctl, the docker CLI and docker-py: the node is there with the host's numbers and mode,
and the device cgroup (v1 devices.allow on this hybrid host, the v2 program on a pure v2
one) allows what was given and nothing more.  /dev/fuse (10:229) is the device: the
procview tests need it anyway, and opening it has no effect on the host.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import docker, needs_cli

from boxd._devicemap import DeviceMapping, check_all, parse, parse_cgroup_rule, resolve_all
from boxd._devices import DeviceRule

FUSE = "/dev/fuse"
needs_fuse = pytest.mark.skipif(not os.path.exists(FUSE), reason="/dev/fuse is missing")


def _numbers(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)


# ---- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mapping"),
    [
        ("/dev/fuse", DeviceMapping("/dev/fuse", "/dev/fuse", "rwm")),
        ("/dev/fuse:/dev/f", DeviceMapping("/dev/fuse", "/dev/f", "rwm")),
        ("/dev/fuse:r", DeviceMapping("/dev/fuse", "/dev/fuse", "r")),
        ("/dev/fuse:/dev/f:mw", DeviceMapping("/dev/fuse", "/dev/f", "mw")),
        ("/dev/fuse::rw", DeviceMapping("/dev/fuse", "/dev/fuse", "rw")),
    ],
)
def test_device_options_parse_as_dockers(text: str, mapping: DeviceMapping) -> None:
    assert parse(text) == mapping


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/dev/fuse:/dev/fuse:rwx", "permissions 'rwx' are not a combination of r, w and m"),
        ("/dev/fuse:/dev/fuse:rr", "permissions 'rr' are not"),
        ("/dev/fuse:dev/fuse", "the container path 'dev/fuse' is not absolute"),
        ("dev/fuse", "the host path 'dev/fuse' is not absolute"),
        ("/dev/fuse:/", "the container path cannot be /"),
        ("/a:/b:rw:x", "use HOST[:CONTAINER][:PERMISSIONS]"),
        (":/dev/fuse", "use HOST[:CONTAINER][:PERMISSIONS]"),
    ],
)
def test_bad_device_options_are_named(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"invalid --device '{text}'") as info:
        parse(text)
    assert reason in str(info.value)


def test_a_configuration_is_checked_whoever_made_it() -> None:
    fuse = DeviceMapping("/dev/fuse", "/dev/fuse")
    with pytest.raises(ValueError, match="/dev/fuse is given twice"):
        check_all([fuse, DeviceMapping("/dev/kvm", "/dev/fuse/")], [], read_only_root=False)
    with pytest.raises(ValueError, match="with --read-only a device can only be placed below"):
        check_all([DeviceMapping("/dev/fuse", "/fuse")], [], read_only_root=True)
    check_all([DeviceMapping("/dev/fuse", "/fuse")], [], read_only_root=False)
    assert parse_cgroup_rule("c 10:* rw") == DeviceRule("c", 10, None, "rw")
    with pytest.raises(ValueError, match=r"invalid --device-cgroup-rule 'c 10 rw': use TYPE"):
        parse_cgroup_rule("c 10 rw")


def test_host_paths_are_read_from_the_host(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'/nope': /nope: No such file or directory"):
        resolve_all([parse("/nope")])
    with pytest.raises(ValueError, match="/etc/passwd is not a device node"):
        resolve_all([parse("/etc/passwd")])
    with pytest.raises(ValueError, match="/dev/ptmx is boxd's own in every container"):
        resolve_all([parse("/dev/null:/dev/ptmx")])
    with pytest.raises(ValueError, match=r"/dev/null is boxd's own in every container \(1:3\)"):
        resolve_all([parse("/dev/zero:/dev/null")])
    # A link is followed to its device; a directory gives the devices below it.
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "zero").symlink_to("/dev/zero")  # a link inside: left out
    (tmp_path / "d" / "file").write_text("")
    (tmp_path / "null").symlink_to("/dev/null")
    [null] = resolve_all([parse(f"{tmp_path}/null:/dev/mine")])
    assert (null.host, null.container, null.kind, null.major, null.minor) == (
        "/dev/null",
        "/dev/mine",
        "c",
        1,
        3,
    )
    with pytest.raises(ValueError, match="not a device node, nor a directory holding one"):
        resolve_all([parse(f"{tmp_path}/d:/dev/d")])  # a link inside is left out: none


# ---- real containers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("devices")) as d:
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    yield daemon
    daemon.remove_containers()


def _run(d: Daemon, *args: str, script: str) -> tuple[int, str]:
    result = d.ctl(
        "run", "--rm", "--network", "none", *args, "default", "sh", "-c", script, check=False
    )
    return result.returncode, result.stdout + result.stderr  # its stdout first


@pytest.mark.root
@needs_fuse
def test_a_device_is_made_and_allowed(clean: Daemon) -> None:
    major, minor, mode = _numbers(FUSE)
    show = "stat -c '%F %t:%T %a' /dev/fuse; : < /dev/fuse && : > /dev/fuse && echo opened"
    code, out = _run(clean, "--device", FUSE, script=show)
    assert (code, out) == (0, f"character special file {major:x}:{minor:x} {mode:o}\nopened\n")
    # Without --device, a node made inside cannot be opened (nor made: no m).
    code, out = _run(clean, script="mknod /tmp/f c 10 229 || : < /dev/fuse")
    assert code != 0 and "Operation not permitted" in out and "opened" not in out
    # Only what the permissions say: read here, not write or mknod.
    code, out = _run(
        clean,
        "--device",
        f"{FUSE}:/dev/other/f:r",
        script=": < /dev/other/f && echo read; (: > /dev/other/f) || echo no-write",
    )
    assert (code, out.splitlines()[:2]) == (0, ["read", "no-write"])
    assert "cannot create /dev/other/f: Operation not permitted" in out
    # A rule alone: the node is the container's to make.
    code, out = _run(
        clean,
        "--device-cgroup-rule",
        f"c {major}:{minor} rwm",
        script=f"mknod /dev/f c {major} {minor} && : > /dev/f && echo made",
    )
    assert (code, out) == (0, "made\n")


@pytest.mark.root
@needs_fuse
def test_privileged_gets_the_hosts_devices_as_dockers(clean: Daemon) -> None:
    """Every device node of the host's /dev (its console and boxd's own aside), and the
    device cgroup allows all: a node made inside opens too."""
    host = sorted(
        f"{top}/{name}"[5:]
        for top, _, names in os.walk("/dev")
        if not top.startswith(("/dev/pts", "/dev/shm", "/dev/mqueue"))
        for name in names
        if stat.S_ISCHR(os.lstat(f"{top}/{name}").st_mode)
        or stat.S_ISBLK(os.lstat(f"{top}/{name}").st_mode)
    )
    script = (
        "(: > /dev/fuse) && echo opened; mknod /tmp/f c 10 229 && (: > /tmp/f) && echo made; "
        "cd /dev && find . -path ./pts -prune -o \\( -type c -o -type b \\) -print | sort"
    )
    code, out = _run(clean, "--privileged", script=script)
    lines = out.splitlines()
    assert (code, lines[:2]) == (0, ["opened", "made"]), out
    seen = [line[2:] for line in lines[2:]]
    assert sorted(set(host) - {"console", "ptmx"}) == sorted(set(seen) - {"ptmx"})


@pytest.mark.root
def test_a_directory_gives_its_devices(clean: Daemon, tmp_path: Path) -> None:
    """A directory of nodes (made here: /dev/null's and /dev/zero's numbers) arrives below
    the container path, every one allowed, with the host node's owner and group (as
    Docker copies them)."""
    host = tmp_path / "devs"
    (host / "sub").mkdir(parents=True)
    os.mknod(host / "n", 0o640 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(host / "n", 1234, 5678)
    os.mknod(host / "sub" / "z", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    code, out = _run(
        clean,
        "--device",
        f"{host}:/dev/mine",
        script="stat -c '%n %t:%T %a %u:%g' /dev/mine/n /dev/mine/sub/z; "
        "head -c 3 /dev/mine/sub/z | od -An -tx1",
    )
    assert (code, out) == (
        0,
        "/dev/mine/n 1:3 640 1234:5678\n/dev/mine/sub/z 1:5 600 0:0\n 00 00 00\n",
    )


@pytest.mark.root
def test_privileged_sys_is_writable_as_dockers(clean: Daemon) -> None:
    """sysfs read-write for --privileged (Docker mounts it so), read-only otherwise;
    nothing is written to it here: sysfs is the host's."""
    show = 'awk \'$2 == "/sys" {split($4, o, ","); print o[1]}\' /proc/self/mounts'
    assert _run(clean, "--privileged", script=show) == (0, "rw\n")
    assert _run(clean, script=show) == (0, "ro\n")


@pytest.mark.root
@needs_fuse
def test_a_user_namespace_gets_the_host_node_bound() -> None:
    major, minor, _ = _numbers(FUSE)
    top = Path(tempfile.mkdtemp(prefix="boxd-devices-"))
    try:
        os.chmod(top, 0o711)  # its root uid reaches the daemon's root
        with running_daemon(top) as userns:
            code, out = _run(
                userns,
                "--isolate-user",
                "--device",
                FUSE,
                script="stat -c '%F %t:%T' /dev/fuse; grep -c ' /dev/fuse ' /proc/self/mountinfo",
            )
    finally:
        shutil.rmtree(top)
    assert (code, out) == (0, f"character special file {major:x}:{minor:x}\n1\n")


@pytest.mark.root
def test_bad_devices_are_refused_with_125(clean: Daemon) -> None:
    for args, message in [
        (("--device", "/nope"), "invalid --device '/nope': /nope: No such file or directory"),
        (("--device", "/etc/passwd"), "/etc/passwd is not a device node"),
        # A directory without one (moby's integration-cli TestRunWithBadDevice).
        (("--device", "/etc/ssl"), '"/etc/ssl": not a device node, nor a directory holding'),
        (("--device", "/dev/null:/dev/null:rwx"), "permissions 'rwx' are not a combination"),
        (("--device", "/dev/null:dev/x"), "the container path 'dev/x' is not absolute"),
        (("--device-cgroup-rule", "c 1:3 rwx"), "invalid --device-cgroup-rule 'c 1:3 rwx'"),
    ]:
        for verb in ("run", "create"):
            result = clean.ctl(verb, *args, "default", "true", check=False)
            assert result.returncode == 125, (args, result.stderr)
            assert message in result.stderr
    assert clean.ctl("ps", "-aq").stdout == ""


@pytest.mark.root
@needs_cli
@needs_fuse
def test_docker_cli_and_docker_py(clean: Daemon) -> None:
    major, minor, _ = _numbers(FUSE)
    result = docker(
        clean,
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        f"{FUSE}:/dev/f:rw",
        "default",
        "sh",
        "-c",
        "stat -c '%t:%T' /dev/f; : > /dev/f && echo ok",
    )
    assert (result.returncode, result.stdout) == (0, f"{major:x}:{minor:x}\nok\n"), result.stderr
    docker(
        clean,
        "create",
        "--name",
        "d",
        "--device",
        FUSE,
        "--device-cgroup-rule",
        "c 1:9 r",
        "default",
        "true",
    )
    host_config = json.loads(docker(clean, "inspect", "d").stdout)[0]["HostConfig"]
    assert host_config["Devices"] == [
        {"PathOnHost": FUSE, "PathInContainer": FUSE, "CgroupPermissions": "rwm"}
    ]
    assert host_config["DeviceCgroupRules"] == ["c 1:9 r"]
    boxctl = json.loads(clean.ctl("inspect", "d").stdout)[0]["HostConfig"]
    assert boxctl["Devices"] == host_config["Devices"]
    bad = docker(clean, "run", "--rm", "--device", "/nope", "default", "true")
    assert bad.returncode == 125 and "/nope: No such file or directory" in bad.stderr
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        out = client.containers.run(
            "default",
            ["stat", "-c", "%t:%T", "/dev/g"],
            remove=True,
            network_mode="none",
            devices=[f"{FUSE}:/dev/g:rwm"],
        )
        assert out == f"{major:x}:{minor:x}\n".encode()
    finally:
        client.close()

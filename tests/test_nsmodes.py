"""Docker's namespace sharing modes (boxd/_nsmodes.py): ``--pid``, ``--ipc``, ``--uts`` host
or container:NAME, ``--cgroupns host``.  Refusals without the kernel; then real containers
of a real daemon (in the session's own network namespace), through boxctl, the docker CLI
and docker-py: the container's namespaces are the host's or the other container's, its
/proc shows their processes, ``--init`` still reaps its orphans, and inspect shows the
modes."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Daemon, running_daemon
from docker_clients import docker, needs_cli

from boxd._nsmodes import check
from boxd._procview import available
from boxd._records import ContainerConfig


@pytest.mark.parametrize(
    ("option", "mode", "choices"),
    [
        ("pid", "private", "host or container:NAME"),
        ("pid", "container:", "host or container:NAME"),
        ("ipc", "bogus", "none, private, shareable, host or container:NAME"),
        ("uts", "container:x", "use host"),
        ("cgroupns", "container:x", "use private, host"),
    ],
)
def test_bad_modes_are_named(option: str, mode: str, choices: str) -> None:
    with pytest.raises(ValueError, match=f"invalid --{option} {mode!r}: use ") as info:
        check(option, mode)
    assert choices in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uts_mode": "host", "hostname": "h"}, "conflicting options: hostname and the UTS mode"),
        ({"pid_mode": "host", "userns": True}, "--pid host cannot go with --isolate-user"),
        ({"cgroupns_mode": "host", "userns": True}, "--cgroupns host cannot go with"),
        (
            {"ipc_mode": "host", "sysctls": ("kernel.shmmax=1000",)},
            "invalid --sysctl 'kernel.shmmax=1000': with --ipc host it would change the host's",
        ),
        (
            {"uts_mode": "host", "sysctls": ("kernel.domainname=x",)},
            "with --uts host it would change the host's",
        ),
    ],
)
def test_what_cannot_go_with_a_mode(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):  # checked as it is made
        ContainerConfig(image="default", command=("true",), **fields)  # type: ignore[arg-type]


# ---- real containers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("nsmodes")) as d:
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    yield daemon
    daemon.remove_containers()


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _run(d: Daemon, *args: str) -> str:
    return d.ctl("run", "--rm", "--network", "none", *args).stdout


def _pid(d: Daemon, name: str) -> int:
    return int(d.ctl("inspect", "-f", "{{.State.Pid}}", name).stdout)


@pytest.mark.root
def test_pid_host_sees_the_hosts_processes(clean: Daemon) -> None:
    script = f"readlink /proc/self/ns/pid; test -d /proc/{os.getpid()} && echo sees-the-test"
    out = _run(clean, "--pid", "host", "default", "sh", "-c", script)
    assert out == f"{_ns('self', 'pid')}\nsees-the-test\n"
    # Without it: a pid namespace of its own, where the command is PID 1.
    assert _run(clean, "default", "sh", "-c", "readlink /proc/self/ns/pid; echo $$") != out
    assert _run(clean, "default", "sh", "-c", "echo $$") == "1\n"
    # exec in such a container is in the host's too.
    clean.ctl(
        "run", "-d", "--name", "h", "--network", "none", "--pid", "host", "default", "sleep", "300"
    )
    assert (
        clean.ctl("exec", "h", "readlink", "/proc/self/ns/pid").stdout == f"{_ns('self', 'pid')}\n"
    )


@pytest.mark.root
@pytest.mark.skipif(available() is not None, reason=f"no /proc view here: {available()}")
def test_the_proc_view_stays_the_containers_own(clean: Daemon) -> None:
    """With the host's processes in its /proc, its meminfo is still its own cgroup's (the
    view answers by the reader's cgroup, not its pid namespace); exec's too."""
    script = "awk '/^MemTotal/ {print $2}' /proc/meminfo"
    assert _run(clean, "--pid", "host", "-m", "64m", "default", "sh", "-c", script) == "65536\n"
    clean.ctl(
        "run", "-d", "--name", "donor", "--network", "none", "-m", "96m", "default", "sleep", "300"
    )
    clean.ctl(
        "run", "-d", "--name", "joiner", "--network", "none", "-m", "32m",
        "--pid", "container:donor", "default", "sleep", "300",
    )  # fmt: skip
    assert clean.ctl("exec", "joiner", "sh", "-c", script).stdout == "32768\n"


@pytest.mark.root
def test_pid_container_joins_a_running_one(clean: Daemon) -> None:
    clean.ctl("run", "-d", "--name", "donor", "--network", "none", "default", "sleep", "300")
    donor = _pid(clean, "donor")
    out = _run(
        clean, "--pid", "container:donor", "default", "sh", "-c",
        "readlink /proc/self/ns/pid; tr '\\0' ' ' < /proc/1/cmdline; echo; ps -eo pid=,args=",
    )  # fmt: skip
    ns, cmdline, *ps = out.splitlines()
    assert (ns, cmdline) == (_ns(donor, "pid"), "sleep 300 ")
    assert ps[0].split() == ["1", "sleep", "300"]  # ps in it sees the donor's processes
    # exec into a joiner is in the same namespace; its own process is not PID 1 there.
    clean.ctl(
        "run", "-d", "--name", "joiner", "--network", "none", "--pid", "container:donor",
        "default", "sleep", "300",
    )  # fmt: skip
    assert _ns(_pid(clean, "joiner"), "pid") == _ns(donor, "pid")
    execd = clean.ctl("exec", "joiner", "sh", "-c", "readlink /proc/self/ns/pid; cat /proc/1/comm")
    assert execd.stdout == f"{_ns(donor, 'pid')}\nsleep\n"
    modes = json.loads(clean.ctl("inspect", "joiner").stdout)[0]["HostConfig"]
    donor_id = json.loads(clean.ctl("inspect", "donor").stdout)[0]["Id"]
    assert (modes["PidMode"], modes["IpcMode"], modes["UTSMode"]) == (
        f"container:{donor_id}", "shareable", "",  # its id, as Docker keeps it
    )  # fmt: skip
    # The donor's end ends the namespace, and with it the joiner (as with Docker).
    clean.ctl("rm", "-f", "donor")
    assert clean.ctl("wait", "joiner").stdout == "137\n"


@pytest.mark.root
def test_a_donor_must_run(clean: Daemon) -> None:
    clean.ctl("create", "--name", "idle", "default", "true")
    cid = clean.ctl("inspect", "-f", "{{.Id}}", "idle").stdout.strip()
    bad = clean.ctl("run", "--rm", "--pid", "container:idle", "default", "true", check=False)
    assert bad.returncode == 125
    assert f"failed to join PID namespace: container {cid} is not running" in bad.stderr
    bad = clean.ctl("run", "--rm", "--pid", "container:nope", "default", "true", check=False)
    assert bad.returncode == 125 and "No such container: nope" in bad.stderr
    # A donor that does not exist is refused at create, as dockerd refuses it; one that is
    # not running only at start (it may be by then).
    for option in ("--pid", "--ipc"):
        bad = clean.ctl(
            "create", "--name", "joiner", option, "container:nope", "default", "true", check=False
        )
        assert bad.returncode != 0, option
        assert f"invalid {option} 'container:nope': No such container: nope" in bad.stderr
    assert "joiner" not in clean.ctl("ps", "-a", "--format", "{{.Names}}").stdout
    clean.ctl("create", "--name", "joiner", "--pid", "container:idle", "default", "true")
    bad = clean.ctl("run", "--rm", "--pid", "nope", "default", "true", check=False)
    assert bad.returncode == 125 and "invalid --pid 'nope'" in bad.stderr


@pytest.mark.root
def test_init_reaps_its_orphans_in_a_shared_pid_namespace(clean: Daemon) -> None:
    """boxd-init is not PID 1 here: as the subreaper of its command it still gets the
    command's orphans (the subshell has ended, so its sleep is reparented already)."""
    script = (
        "o=$( (sleep 60 >/dev/null & echo $!) ); "
        "init=$(awk '/^PPid/ {print $2}' /proc/$$/status); "
        "parent=$(awk '/^PPid/ {print $2}' /proc/$o/status); "
        'kill $o; test "$parent" = "$init" && echo reaped-by-init; cat /proc/$init/comm'
    )
    out = _run(clean, "--pid", "host", "--init", "default", "sh", "-c", script)
    assert out == "reaped-by-init\ninit\n"


@pytest.mark.root
def test_ipc_modes(clean: Daemon, tmp_path: Path) -> None:
    out = _run(clean, "--ipc", "host", "default", "readlink", "/proc/self/ns/ipc")
    assert out == f"{_ns('self', 'ipc')}\n"
    # --ipc host binds the host's /dev/shm (alone: no tmpfs of the container's below).
    mark = Path("/dev/shm") / f"boxd-test-{uuid.uuid4().hex}"
    mark.write_text("shared\n")
    script = f"cat {mark}; grep -c ' /dev/shm ' /proc/self/mountinfo"
    try:
        assert _run(clean, "--ipc", "host", "default", "sh", "-c", script) == "shared\n1\n"
    finally:
        mark.unlink()
    clean.ctl("run", "-d", "--name", "shm", "--network", "none", "default", "sleep", "300")
    out = _run(clean, "--ipc", "container:shm", "default", "readlink", "/proc/self/ns/ipc")
    assert out == f"{_ns(_pid(clean, 'shm'), 'ipc')}\n"
    clean.ctl(
        "run", "-d", "--name", "mine", "--network", "none", "--ipc", "private",
        "default", "sleep", "300",
    )  # fmt: skip
    bad = clean.ctl("run", "--rm", "--ipc", "container:mine", "default", "true", check=False)
    assert bad.returncode == 125
    assert "container mine: non-shareable IPC (hint: use IpcMode:shareable" in bad.stderr


@pytest.mark.root
def test_an_ipc_joiner_shares_the_donors_dev_shm(clean: Daemon) -> None:
    """As Docker binds the donor's shm: POSIX shared memory (shm_open, files in /dev/shm)
    is shared as System V's is, both ways, with the donor's size, mounted alone there."""
    clean.ctl(
        "run", "-d", "--name", "shm", "--network", "none", "--shm-size", "3m", "default",
        "sleep", "300",
    )  # fmt: skip
    clean.ctl("exec", "shm", "sh", "-c", "echo from-donor > /dev/shm/x")
    script = (
        "cat /dev/shm/x; echo from-joiner > /dev/shm/y; df -k /dev/shm | awk 'NR==2 {print $2}';"
        " grep -c ' /dev/shm ' /proc/self/mountinfo"
    )
    for extra in ((), ("--read-only",)):
        out = _run(clean, "--ipc", "container:shm", *extra, "default", "sh", "-c", script)
        assert out == "from-donor\n3072\n1\n"  # NAME's alone, no tmpfs of its own below
        assert clean.ctl("exec", "shm", "cat", "/dev/shm/y").stdout == "from-joiner\n"
    clean.ctl("run", "-d", "--name", "joiner", "--network", "none", "--ipc", "container:shm",
              "default", "sleep", "300")  # fmt: skip
    assert clean.ctl("exec", "joiner", "cat", "/dev/shm/x").stdout == "from-donor\n"


@pytest.mark.root
def test_uts_host(clean: Daemon) -> None:
    out = _run(clean, "--uts", "host", "default", "sh", "-c", "hostname; cat /etc/hostname")
    assert out == f"{socket.gethostname()}\n" * 2
    bad = clean.ctl(
        "run", "--rm", "--uts", "host", "--hostname", "h", "default", "true", check=False
    )
    assert bad.returncode == 125
    assert "conflicting options: hostname and the UTS mode" in bad.stderr


@pytest.mark.root
def test_cgroupns_host(clean: Daemon) -> None:
    """No cgroup namespace of its own: /proc/self/cgroup and the mounts' roots name its
    cgroups as the host's hierarchy does (an exec's too), so the host's tree bound in
    (``-v /sys/fs/cgroup:/sys/fs/cgroup``, systemd's recipe, allowed now as in Docker)
    matches them; its own /sys/fs/cgroup view is unchanged.  The default stays private."""
    host_ns = os.readlink("/proc/self/ns/cgroup")
    script = "readlink /proc/self/ns/cgroup; grep :pids: /proc/self/cgroup | cut -d: -f3"
    own, path = _run(clean, "--cgroupns", "host", "default", "sh", "-c", script).split()
    assert own == host_ns and path.count("/") >= 2, path  # below the daemon's own cgroup
    assert (Path("/sys/fs/cgroup/pids") / path.lstrip("/")).parent.is_dir()
    private = _run(clean, "default", "sh", "-c", script).split()
    assert private[0] != host_ns and private[1] == "/"
    clean.ctl("run", "-d", "--name", "cg", "--cgroupns", "host", "--pids-limit", "77",
              "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "default", "sleep", "60")  # fmt: skip
    script = "p=$(grep :pids: /proc/self/cgroup | cut -d: -f3); cat /sys/fs/cgroup/pids$p/pids.max"
    assert clean.ctl("exec", "cg", "sh", "-c", script).stdout == "77\n"
    assert clean.ctl("inspect", "-f", "{{.HostConfig.CgroupnsMode}}", "cg").stdout == "host\n"
    clean.ctl("rm", "-f", "cg")


@pytest.mark.root
@needs_cli
def test_docker_cli_and_docker_py(clean: Daemon) -> None:
    clean.ctl("run", "-d", "--name", "donor", "--network", "none", "default", "sleep", "300")
    result = docker(
        clean, "run", "--rm", "--network", "none", "--pid", "container:donor", "--ipc",
        "container:donor", "default", "sh", "-c", "cat /proc/1/comm; readlink /proc/self/ns/ipc",
    )  # fmt: skip
    donor = _pid(clean, "donor")
    assert (result.returncode, result.stdout) == (0, f"sleep\n{_ns(donor, 'ipc')}\n"), result.stderr
    docker(clean, "create", "--name", "h", "--pid", "host", "--uts", "host", "default", "true")
    host_config = json.loads(docker(clean, "inspect", "h").stdout)[0]["HostConfig"]
    assert (host_config["PidMode"], host_config["UTSMode"]) == ("host", "host")
    bad = docker(clean, "run", "--rm", "--uts", "host", "--hostname", "x", "default", "true")
    assert bad.returncode != 0 and "conflicting options: hostname and the UTS mode" in bad.stderr
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        out = client.containers.run(
            "default",
            ["readlink", "/proc/self/ns/pid"],
            remove=True,
            network_mode="none",
            pid_mode="host",
        )
        assert out == f"{_ns('self', 'pid')}\n".encode()
    finally:
        client.close()


@pytest.mark.root
def test_a_daemon_restart_keeps_host_modes_and_joiners(clean: Daemon) -> None:
    """Live restore: a --pid/--ipc/--uts host container and a container:NAME joiner run
    under their shims and are adopted by the next daemon, exec still in the host's
    namespaces or in NAME's (more in tests/test_live.py)."""
    clean.ctl(
        "run", "-d", "--name", "hosted", "--network", "none", "--pid", "host", "--ipc", "host",
        "--uts", "host", "default", "sleep", "300",
    )  # fmt: skip
    clean.ctl("run", "-d", "--name", "donor", "--network", "none", "default", "sleep", "300")
    clean.ctl(
        "run", "-d", "--name", "joiner", "--network", "none", "--pid", "container:donor",
        "default", "sleep", "300",
    )  # fmt: skip
    pids = {n: _pid(clean, n) for n in ("hosted", "donor", "joiner")}
    assert clean.stop() == 0
    clean.start()
    assert {n: _pid(clean, n) for n in pids} == pids
    execd = clean.ctl("exec", "hosted", "sh", "-c", "readlink /proc/self/ns/pid /proc/self/ns/ipc")
    assert execd.stdout == f"{_ns('self', 'pid')}\n{_ns('self', 'ipc')}\n"
    execd = clean.ctl("exec", "joiner", "sh", "-c", "readlink /proc/self/ns/pid; cat /proc/1/comm")
    assert execd.stdout == f"{_ns(pids['donor'], 'pid')}\nsleep\n"

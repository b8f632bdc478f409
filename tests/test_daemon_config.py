"""The daemon's configuration file (``--config-file``, a Docker ``daemon.json``): its keys
become the options, a key boxd does not know or one a flag also sets is refused by name,
and a daemon started with one behaves as it says."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, _end_leftovers, logged_daemon, running_daemon, until
from docker_clients import UnixHTTP, api_call

import boxd
from boxd._daemonconfig import ConfigError, flag_log_opts, options, read


def test_dockers_keys_and_boxds_own_become_options() -> None:
    config = {
        "data-root": "/srv/boxd",
        "log-level": "warn",
        "log-driver": "local",
        "log-opts": {"max-size": "5m", "max-file": "4", "compress": "false"},
        "live-restore": False,
        "insecure-registries": ["reg.lan:5000"],
        "max-download-attempts": 2,
        "hosts": ["unix:///run/my/docker.sock"],
        "bridge-subnet": "10.9.0.0/16",
        "mtu": 1400,
        "bip": "10.9.0.1/16",
        "default-address-pools": [
            {"base": "10.200.0.0/16", "size": 24},
            {"base": "fd00:77::/48", "size": 64},  # IPv6's, as Docker 27 takes them
        ],
        "ipv6": True,
        "fixed-cidr-v6": "fd00:9::/64",
        "icc": False,
    }
    assert options(config, []) == {
        "root": Path("/srv/boxd"),
        "log_level": "warning",
        "log_driver": "local",
        "log_max_size": 5_000_000,  # Docker's units
        "log_max_files": 4,
        "log_options": ("compress=false",),  # kept as given, as the containers' are
        "live_restore": False,
        "insecure_registry": ["reg.lan:5000"],
        "max_download_attempts": 2,
        "docker_socket": "/run/my/docker.sock",
        "bridge_subnet": "10.9.0.0/16",
        "mtu": 1400,
        "bip": "10.9.0.1/16",
        "address_pools": (("10.200.0.0/16", 24), ("fd00:77::/48", 64)),
        "ipv6": True,
        "fixed_cidr_v6": "fd00:9::/64",
        "icc": False,
    }
    assert options({"debug": True}, []) == {"log_level": "debug"}
    # What a daemon.json written for dockerd often says, and boxd does anyway: taken.
    same = {"storage-driver": "overlay2", "exec-opts": ["native.cgroupdriver=cgroupfs"]}
    assert options(same, []) == {}
    limits = {"nofile": {"Name": "nofile", "Soft": 2048, "Hard": 4096}, "core": {"Soft": -1,
              "Hard": -1}}  # fmt: skip
    assert options({"default-ulimits": limits}, []) == {
        "default_ulimits": (("nofile", 2048, 4096), ("core", -1, -1))
    }
    # Docker's mode and the log attributes: kept as given, for every new container.
    kept = {"mode": "non-blocking", "max-buffer-size": "4m", "labels": "team", "max-file": "2"}
    assert options({"log-opts": kept}, []) == {
        "log_options": ("mode=non-blocking", "max-buffer-size=4m", "labels=team"),
        "log_max_files": 2,
    }


@pytest.mark.parametrize(
    ("config", "given", "words"),
    [
        ({"registry-mirrors": [], "iptables": False}, [], "don't match any configuration "
         "option: iptables, registry-mirrors (boxd takes "),
        ({"storage-driver": "zfs"}, [], "invalid storage-driver 'zfs': boxd keeps images and "
         "containers with overlay2 only"),
        ({"exec-opts": ["native.cgroupdriver=systemd"]}, [], "invalid exec-opts "
         "'native.cgroupdriver=systemd': boxd makes containers' cgroups itself"),
        ({"bip": "10.9.0.0/16"}, [], "invalid bip '10.9.0.0/16': give the bridge's own address"),
        ({"bip": "10.9.0.1"}, [], "invalid bip '10.9.0.1': give the bridge's own address"),
        ({"default-address-pools": [{"base": "10.0.0.0/16", "size": 8}]}, [],
         'invalid default-address-pools entry {"base": "10.0.0.0/16", "size": 8}'),
        ({"default-address-pools": []}, [], "default-address-pools must be a list of pools"),
        ({"default-address-pools": [{"base": "fd00:77::/48", "size": 127}]}, [],
         'invalid default-address-pools entry {"base": "fd00:77::/48", "size": 127}: use '
         '{"base": CIDR, "size": LEN} with LEN from the base\'s prefix to 30 (IPv6: to 126)'),
        ({"fixed-cidr-v6": "10.9.0.0/16"}, [], "invalid fixed-cidr-v6 '10.9.0.0/16': use an "
         "IPv6 CIDR"),
        ({"log-level": "debug"}, ["--log-level", "info"], "specified both as a flag and in the "
         'configuration file: log-level (from flag: info, from file: "debug")'),
        ({"live-restore": True}, ["--no-live-restore"], "live-restore (from flag: false, from "
         "file: true)"),
        ({"debug": False}, ["-D"], "debug (from flag: true, from file: false)"),
        ({"default-ulimits": {"nofile": {"Name": "nproc", "Soft": 1, "Hard": 1}}}, [],
         'invalid default-ulimits entry {"nofile": {"Name": "nproc", "Soft": 1, "Hard": 1}}: '
         'use {"nofile": {"Name": "nofile", "Soft": N, "Hard": N}} (-1: unlimited)'),
        ({"default-ulimits": {"nofile": {"Soft": "1", "Hard": 1}}}, [],
         "invalid default-ulimits entry"),
        ({"default-ulimits": {"nofile": {"Soft": 9, "Hard": 5}}}, [],
         "invalid default-ulimits nofile: the soft limit 9 is above the hard limit 5"),
        ({"default-ulimits": {"files": {"Soft": 1, "Hard": 1}}}, [],
         "invalid default-ulimits files: unknown limit 'files'"),
        ({"default-ulimits": []}, [], "default-ulimits must be an object of limits, not []"),
        ({"labels": ["team"]}, [], "invalid labels 'team': use KEY=VALUE"),
        ({"labels": ["a=1", "a=2"]}, [], "invalid labels: a is given twice, as '1' and '2'"),
        ({"labels": "a=1"}, [], "labels must be a list of strings"),
        ({"default-ulimits": {}}, ["--default-ulimit", "core=0"], "default-ulimits (from flag: "
         "core=0, from file: {})"),
        ({"ipv6": False}, ["--ipv6"], "ipv6 (from flag: true, from file: false)"),
        ({"data-root": "/srv"}, ["--data-root", "/x"], 'data-root (from flag: /x, from file: '
         '"/srv")'),
        ({"log-opts": {"max-size": "1m"}}, ["--log-max-size=2m"], "log-opts max-size (from "
         'flag: 2m, from file: "1m")'),
        ({"log-opts": {"labels": "a"}}, ["--log-opt", "env=B"], "log-opts (from flag: env=B, "
         'from file: {"labels": "a"})'),
        ({"log-opts": {"awslogs-region": "x"}}, [], "log-opts: log option awslogs-region='x' is "
         "not supported by boxd"),
        ({"log-opts": {"mode": "x"}}, [], "log-opts: logger: logging mode not supported: x"),
        ({"log-opts": {"labels-regex": "("}}, [], "log-opts: invalid log option labels-regex"),
        ({"log-opts": {"max-file": "many"}}, [], "log-opts: invalid log option max-file 'many'"),
        ({"log-opts": {"max-size": "big"}}, [], "log-opts: invalid log option max-size 'big'"),
        ({"debug": "yes"}, [], 'debug must be true or false, not "yes"'),
        ({"mtu": "1400"}, [], 'mtu must be an MTU of 68 to 65535, not "1400"'),
        ({"mtu": 9}, [], "mtu must be an MTU of 68 to 65535, not 9"),
        ({"log-level": "loud"}, [], "invalid log-level 'loud': use debug, info, warn or error"),
        ({"hosts": ["tcp://0.0.0.0:2375"]}, [], "boxd serves the Docker API on one Unix socket"),
        ({"insecure-registries": "reg:5000"}, [], "insecure-registries must be a list of "
         "strings"),
        ({"max-download-attempts": 0}, [], "max-download-attempts must be a number of 1 or "
         "more, not 0"),
    ],
)  # fmt: skip
def test_refused_with_the_key_named(
    config: dict[str, object], given: list[str], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        options(config, given)
    assert words in str(caught.value)


def test_the_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    assert read(path, [], required=False) == {}  # the default path need not exist
    with pytest.raises(ConfigError, match=r"daemon\.json: it does not exist"):
        read(path, [], required=True)
    path.write_text("{nope")
    with pytest.raises(ConfigError, match=r"daemon\.json is not JSON"):
        read(path, [], required=True)
    path.write_text('{"nope": 1}')
    with pytest.raises(ConfigError, match=f"invalid daemon configuration {path}: the following"):
        read(path, [], required=True)


def test_dockerds_log_opt_flags_set_what_log_opts_sets() -> None:
    words = ["max-size=1k", "max-file=2", "labels=team", "mode=non-blocking"]
    assert flag_log_opts(words, []) == {
        "log_options": ("labels=team", "mode=non-blocking"),
        "log_max_size": 1000,
        "log_max_files": 2,
    }
    assert flag_log_opts([], []) == {}
    for words, given, message in [
        (["max-size"], [], "invalid --log-opt 'max-size': expected KEY=VALUE"),
        (["=1k"], [], "invalid --log-opt '=1k': expected KEY=VALUE"),
        (["max-file=none"], [], "--log-opt: invalid log option max-file 'none'"),
        (["awslogs-region=x"], [], "--log-opt: log option awslogs-region='x' is not supported"),
        (["max-size=1k"], ["--log-max-size", "2k"], "--log-opt max-size=1k and --log-max-size "
         "2k both set it: give one"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            flag_log_opts(words, given)
        assert message in str(caught.value)


@pytest.mark.root
def test_a_daemon_follows_its_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-driver": "none", "insecure-registries": ["reg.lan:5000"]}))
    with running_daemon(tmp_path, "--config-file", str(path)) as daemon:
        daemon.ctl("run", "--name", "quiet", "default", "echo", "hi")
        config = json.loads(daemon.ctl("inspect", "quiet").stdout)[0]["HostConfig"]["LogConfig"]
        assert config["Type"] == "none"  # the daemon's default, recorded on the container
        r = daemon.ctl("logs", "quiet", check=False)
        assert "configured logging driver does not support reading" in r.stderr
        daemon.ctl("run", "--name", "kept", "--log-driver", "json-file", "default", "echo", "k")
        assert daemon.ctl("logs", "kept").stdout == "k\n"
        daemon.ctl("rm", "quiet", "kept")


@pytest.mark.root
def test_the_files_log_opts_are_every_new_containers(tmp_path: Path) -> None:
    """daemon.json's log-opts mode, max-buffer-size and log attributes (Docker's, which it
    refused, the daemon not starting) go to each new container that keeps its log with
    the daemon's driver, where its own options do not name them: Docker's merge."""
    path = tmp_path / "daemon.json"
    opts = {"mode": "non-blocking", "labels": "team", "env": "FOO"}
    path.write_text(json.dumps({"log-opts": opts}))
    with running_daemon(tmp_path, "--config-file", str(path)) as daemon:
        args = ["--label", "team=a", "-e", "FOO=f", "--label", "zone=z", "default", "echo", "hi"]
        daemon.ctl("run", "--name", "merged", *args)
        daemon.ctl("run", "--name", "own", "--log-opt", "labels=zone", *args)
        daemon.ctl("run", "--name", "local", "--log-driver", "local", *args)

        def config(name: str) -> dict[str, str]:
            info = json.loads(daemon.ctl("inspect", name).stdout)[0]
            found: dict[str, str] = info["HostConfig"]["LogConfig"]["Config"]
            return found

        assert config("merged") == opts
        assert config("own") == {**opts, "labels": "zone"}
        assert config("local") == {}
        assert daemon.ctl("logs", "--details", "merged").stdout == "FOO=f,team=a hi\n"
        assert daemon.ctl("logs", "--details", "own").stdout == "FOO=f,zone=z hi\n"
        daemon.ctl("rm", "merged", "own", "local")


@pytest.mark.root
def test_the_daemons_rotation_is_recorded_on_every_new_container(tmp_path: Path) -> None:
    """dockerd's --log-opt max-size (daemon.json's, which sets the same) and
    --log-max-files go to each new container that keeps its log with the daemon's driver
    and names none, shown in its LogConfig as Docker merges them at the creation (they
    applied, but inspect showed ``{}``; boxd had no --log-opt)."""
    flags = ("--log-opt", "max-size=1k", "--log-max-files", "2")
    with running_daemon(tmp_path, *flags) as daemon:
        lines = ["default", "sh", "-c", "for i in $(seq 200); do echo line $i; done"]
        daemon.ctl("run", "--name", "merged", *lines)
        daemon.ctl("run", "--name", "own", "--log-opt", "max-file=4", "default", "true")
        daemon.ctl("run", "--name", "local", "--log-driver", "local", "default", "true")

        def inspect(name: str) -> dict[str, Any]:
            found: dict[str, Any] = json.loads(daemon.ctl("inspect", name).stdout)[0]
            return found

        merged = inspect("merged")
        assert merged["HostConfig"]["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-size": "1k", "max-file": "2"},
        }
        logs = Path(merged["LogPath"]).parent
        assert sorted(os.listdir(logs)) == ["container.log", "container.log.1"]
        assert all(file.stat().st_size <= 1024 for file in logs.iterdir())
        assert daemon.ctl("logs", "--tail", "1", "merged").stdout == "line 200\n"
        assert inspect("own")["HostConfig"]["LogConfig"]["Config"] == {
            "max-size": "1k",
            "max-file": "4",
        }
        assert inspect("local")["HostConfig"]["LogConfig"]["Config"] == {}
        daemon.ctl("rm", "merged", "own", "local")


@pytest.mark.root
def test_a_bad_file_stops_the_daemon_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-driver": "awslogs"}))
    argv = [sys.executable, "-m", "boxd", "--root", str(tmp_path / "root"),
            "--socket", str(tmp_path / "s.sock"), "--docker-socket", "",
            "--config-file", str(path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "invalid log-driver 'awslogs': use json-file, local, syslog, journald" in done.stderr
    path.write_text(json.dumps({"socket": "/x.sock"}))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "specified both as a flag and in the configuration file: socket" in done.stderr


def _info(daemon: Daemon) -> dict[str, Any]:
    status, _, body = api_call(daemon, "GET", "/info")
    assert status == 200
    found: dict[str, Any] = json.loads(body)
    return found


@pytest.mark.root
def test_sighup_reloads_the_file_and_the_daemon_serves_on(tmp_path: Path) -> None:
    """SIGHUP, as dockerd's: the file read again, what can change changes (here: the
    registries, the labels, the default log-opts of new containers), a change that needs a restart
    changes nothing; the daemon (which SIGHUP used to end, leaving its sockets and its /proc
    view's mount) serves on with its containers."""
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"insecure-registries": ["a.lan:5000"], "labels": ["zone=a"]}))
    with running_daemon(tmp_path, "--config-file", str(path)) as daemon:
        assert _info(daemon)["Labels"] == ["zone=a"]
        assert daemon.process is not None
        daemon.ctl("run", "-d", "--name", "kept", "default", "sleep", "300")
        pid = daemon.inspect("kept")["state"]["pid"]
        path.write_text(
            json.dumps(
                {
                    "insecure-registries": ["b.lan:5000"],
                    "labels": ["zone=b", "rack=7"],
                    "log-opts": {"labels": "team"},
                    "bridge-subnet": "10.77.0.0/16",  # read at the start only
                }
            )
        )
        daemon.process.send_signal(signal.SIGHUP)
        until(
            lambda: "b.lan:5000" in _info(daemon)["RegistryConfig"]["IndexConfigs"],
            "the reloaded insecure-registries in /info",
        )
        assert "a.lan:5000" not in _info(daemon)["RegistryConfig"]["IndexConfigs"]
        assert _info(daemon)["Labels"] == ["zone=b", "rack=7"]
        # dockerd's event of it, with what changes at a reload.
        query = urllib.parse.urlencode(
            {"since": "0", "until": str(int(time.time()) + 1), "filters": '{"type":["daemon"]}'}
        )
        status, _, body = api_call(daemon, "GET", f"/events?{query}")
        assert status == 200
        [event] = [json.loads(line) for line in body.splitlines()]
        assert (event["Type"], event["Action"]) == ("daemon", "reload")
        assert event["Actor"]["ID"] == _info(daemon)["ID"]
        assert event["Actor"]["Attributes"] == {
            "debug": "true",  # the harness's --log-level debug
            "insecure-registries": '["b.lan:5000"]',
            "labels": '["zone=b", "rack=7"]',
            "live-restore": "true",
            "max-download-attempts": "5",
            "name": platform.node(),
        }
        daemon.ctl("run", "--name", "new", "default", "true")
        config = json.loads(daemon.ctl("inspect", "new").stdout)[0]["HostConfig"]["LogConfig"]
        assert config["Config"] == {"labels": "team"}
        path.write_text(json.dumps({}))
        daemon.process.send_signal(signal.SIGHUP)
        until(
            lambda: "b.lan:5000" not in _info(daemon)["RegistryConfig"]["IndexConfigs"],
            "the second reload",
        )
        assert daemon.process.poll() is None
        assert daemon.inspect("kept")["state"]["pid"] == pid
        daemon.ctl("rm", "-f", "kept", "new")


def _ignores_sighup(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


@pytest.mark.root
def test_a_sighup_while_the_daemon_loads_does_not_end_it(tmp_path: Path) -> None:
    """A reload asked of a daemon just started (its modules still loading, ~0.5 s, before
    its handler takes the signal) ended it: SIGHUP is ignored from the command's first
    line until then, and the daemon comes up and serves."""
    daemon = Daemon(root=tmp_path / "root", socket=tmp_path / "boxd.sock")
    daemon.start(ready=False)
    try:
        process = daemon.process
        assert process is not None
        until(lambda: process.poll() is not None or _ignores_sighup(process.pid),
              "SIGHUP ignored while the daemon loads")  # fmt: skip
        process.send_signal(signal.SIGHUP)
        until(lambda: process.poll() is not None
              or daemon.ctl("ps", "-q", check=False).returncode == 0,
              "the daemon serving")  # fmt: skip
        assert process.poll() is None, "SIGHUP ended the loading daemon"
        assert daemon.stop() == 0
    finally:
        assert _end_leftovers(daemon) == ([], [], [])


@pytest.mark.root
def test_sighup_reloads_the_log_level_and_refuses_a_bad_file_aloud(tmp_path: Path) -> None:
    """debug from the file at SIGHUP: the daemon's log and /info's Debug follow; a file it
    cannot follow is named in the log and changes nothing."""
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"debug": False}))
    with logged_daemon(tmp_path, "--config-file", str(path)) as (daemon, log):
        assert daemon.process is not None
        assert _info(daemon)["Debug"] is False
        limits = {"nofile": {"Soft": 10, "Hard": 20}}
        path.write_text(json.dumps({"debug": True, "default-ulimits": limits}))
        daemon.process.send_signal(signal.SIGHUP)
        until(lambda: _info(daemon)["Debug"] is True, "Debug in /info after the reload")
        assert "reloaded log-level: debug (was info)" in log.read_text()
        assert "reloaded default-ulimits: [nofile=10:20] (was [])" in log.read_text()
        path.write_text(json.dumps({"debug": False, "nope": 1}))
        daemon.process.send_signal(signal.SIGHUP)
        until(lambda: "reload failed" in log.read_text(), "the failed reload in the log")
        assert "don't match any configuration option: nope" in log.read_text()
        assert _info(daemon)["Debug"] is True
        assert daemon.stop() == 0


def _boxd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "boxd", *args], capture_output=True, text=True, timeout=60
    )


def test_validate_checks_the_options_and_the_file_then_exits(tmp_path: Path) -> None:
    """dockerd's --validate, -D, -l/--log-level's words and --version: none starts a daemon
    (no root is made)."""
    root = tmp_path / "root"
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-opts": {"max-size": "5m"}, "mtu": 1400}))
    common = ("--root", str(root), "--config-file", str(path), "--validate")
    done = _boxd(*common, "-D")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "configuration OK\n")
    for level in ("warn", "fatal", "warning"):  # dockerd's words, as the file takes them
        assert _boxd(*common, "-l", level).returncode == 0
    path.write_text(json.dumps({"log-driver": "awslogs"}))  # read at the daemon's start
    done = _boxd(*common)
    assert done.returncode == 1
    assert done.stderr == (
        "boxd: invalid log-driver 'awslogs': use json-file, local, syslog, journald, gelf, "
        "fluentd, splunk or none\n"
    )
    path.write_text(json.dumps({"debug": True}))
    done = _boxd(*common, "--debug")
    assert done.returncode == 1
    assert "specified both as a flag and in the configuration file: debug" in done.stderr
    done = _boxd("--version")
    assert (done.returncode, done.stdout) == (0, f"boxd version {boxd.__version__}\n")
    assert not root.exists()


@pytest.mark.root
def test_info_names_the_host_and_counts_the_daemons_own(tmp_path: Path) -> None:
    """/info as dockerd's: the host's operating system (it said "boxd"), the storage's
    backing filesystem and the address pools (none were shown), and in debug mode
    the daemon's file descriptors, tasks and event streams (0s before)."""
    pool = "base=10.123.0.0/16,size=24"
    with logged_daemon(tmp_path, "-D", "--default-address-pool", pool) as (daemon, _):
        stream = UnixHTTP(daemon.docker_socket)
        try:
            stream.request("GET", "/events")
            assert stream.getresponse().status == 200  # its headers: the stream is open
            info = _info(daemon)
        finally:
            stream.close()
        system = platform.freedesktop_os_release()
        assert (info["OperatingSystem"], info["OSVersion"]) == (
            system["PRETTY_NAME"],
            system.get("VERSION_ID", ""),
        )
        assert info["Debug"] is True
        assert info["NFd"] > 3 and info["NGoroutines"] > 3
        assert info["NEventsListener"] == 1
        assert info["DefaultAddressPools"] == [{"Base": "10.123.0.0/16", "Size": 24}]
        fstype = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE", "-T", str(daemon.root)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert info["DriverStatus"] == [
            ["Backing Filesystem", "extfs" if fstype.startswith("ext") else fstype],
            ["Supports d_type", "true"],
        ]
        assert daemon.stop() == 0


@pytest.mark.root
def test_default_ulimits_are_every_new_containers_and_reload(tmp_path: Path) -> None:
    """Docker's default-ulimits (and --default-ulimit): each new container's where it gives
    no limit of that name, shown by inspect; SIGHUP's reload changes them for the next."""
    path = tmp_path / "daemon.json"
    limits = {"nofile": {"Name": "nofile", "Soft": 2000, "Hard": 3000}}
    path.write_text(json.dumps({"default-ulimits": limits}))
    show = ("default", "sh", "-c", "echo $(ulimit -Sn) $(ulimit -Hn) $(ulimit -Sc)")
    with running_daemon(tmp_path, "--config-file", str(path)) as daemon:
        assert daemon.process is not None
        assert daemon.ctl("run", "--name", "a", *show).stdout == "2000 3000 0\n"
        own = daemon.ctl("run", "--rm", "--ulimit", "nofile=100:200", *show).stdout
        assert own == "100 200 0\n"
        info = json.loads(daemon.ctl("inspect", "a").stdout)[0]["HostConfig"]
        assert info["Ulimits"] == [{"Name": "nofile", "Soft": 2000, "Hard": 3000}]
        limits["core"] = {"Name": "core", "Soft": -1, "Hard": -1}
        path.write_text(json.dumps({"default-ulimits": limits}))
        daemon.process.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            return daemon.ctl("run", "--rm", *show).stdout == "2000 3000 unlimited\n"

        until(reloaded, "the reloaded default-ulimits", interval=0.2)
        assert daemon.ctl("start", "-a", "a").stdout == "2000 3000 0\n"  # its own, kept
        daemon.ctl("rm", "a")
    path.write_text("{}")
    done = _boxd("--validate", "--config-file", str(path), "--default-ulimit", "nofile=9:5")
    assert done.stderr == (
        "boxd: invalid --default-ulimit 'nofile=9:5': the soft limit 9 is above the hard limit 5\n"
    )

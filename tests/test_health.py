"""Docker's health checks: configuration (boxctl, the Docker API, an image's HEALTHCHECK),
the checks run in real containers, and what ps, inspect, events, the docker CLI and
docker-py show of them.  Waits are on observable state with a deadline, never sleeps."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from daemon_harness import Daemon, running_daemon
from docker_clients import api_call, docker, needs_cli

import boxd
from boxctl._args import Args
from boxctl._client import CliError
from boxctl._health import healthcheck, parse_duration
from boxd._dockerwords import health_suffix
from boxd._healthcheck import (
    Healthcheck,
    active,
    check_healthcheck,
    from_api,
    go_duration,
    merge,
    to_api,
)

# ---- configuration, without root ------------------------------------------------------


def test_durations_as_go_reads_and_prints_them() -> None:
    assert parse_duration("100ms", "--health-interval") == pytest.approx(0.1)
    assert parse_duration("1m30s", "--health-interval") == 90
    assert parse_duration("1.5h", "--health-interval") == 5400
    assert parse_duration("0", "--health-interval") == 0
    for bad in ("5", "", "1x", "s", "-"):
        with pytest.raises(CliError, match="invalid --health-interval"):
            parse_duration(bad, "--health-interval")
    with pytest.raises(CliError, match="invalid --health-timeout '-1s': cannot be negative"):
        parse_duration("-1s", "--health-timeout")
    assert [go_duration(s) for s in (0.2, 30, 90, 3725.5)] == ["200ms", "30s", "1m30s", "1h2m5.5s"]


def _args(**given: Any) -> Args:
    args = Args()
    for name in ("cmd", "interval", "timeout", "retries", "start_period", "start_interval"):
        setattr(args, f"health_{name}", given.get(name))
    setattr(args, "no_healthcheck", given.get("off", False))  # noqa: B010
    return args


def test_run_options_make_dockers_healthcheck() -> None:
    assert healthcheck(_args()) is None
    assert healthcheck(_args(off=True)) == {"test": ["NONE"]}
    assert healthcheck(_args(cmd="curl -f x", interval="1s", retries=2)) == {
        "test": ["CMD-SHELL", "curl -f x"],
        "interval": 1.0,
        "retries": 2,
    }
    assert healthcheck(_args(timeout="5s")) == {"test": [], "timeout": 5.0}  # the image's test
    with pytest.raises(CliError, match="--no-healthcheck conflicts with --health-"):
        healthcheck(_args(off=True, cmd="true"))
    with pytest.raises(CliError, match="invalid --health-retries -1: cannot be negative"):
        healthcheck(_args(cmd="true", retries=-1))


def test_validation_names_the_bad_value() -> None:
    for test, words in [
        (("BOGUS", "x"), "starts with CMD, CMD-SHELL or NONE"),
        (("CMD",), "CMD needs a command"),
        (("CMD-SHELL", " "), "CMD-SHELL takes one command line"),
        (("NONE", "x"), "NONE takes nothing"),
    ]:
        with pytest.raises(ValueError, match=words):
            check_healthcheck(Healthcheck(test=test))
    with pytest.raises(ValueError, match=r"--health-interval \(Interval\) -1s: cannot be negative"):
        check_healthcheck(Healthcheck(("CMD", "true"), interval=-1))
    with pytest.raises(ValueError, match=r"\(StartPeriod\) 1e-06s: use 0 or at least 1ms"):
        check_healthcheck(Healthcheck(("CMD", "true"), start_period=1e-6))
    with pytest.raises(ValueError, match=r"--health-retries \(Retries\) -2"):
        check_healthcheck(Healthcheck(("CMD", "true"), retries=-2))
    with pytest.raises(ValueError, match=r"Config.Healthcheck.Interval '1s'"):
        from_api({"Test": ["CMD", "true"], "Interval": "1s"}, "Config.Healthcheck")


def test_merged_with_the_image_field_by_field_with_dockers_defaults() -> None:
    image = Healthcheck(("CMD", "check"), interval=5, retries=7)
    assert merge(None, image) == image
    assert merge(Healthcheck(("NONE",)), image) == Healthcheck(("NONE",))
    assert merge(Healthcheck(timeout=2), image) == Healthcheck(
        ("CMD", "check"), interval=5, timeout=2, retries=7
    )
    assert active(Healthcheck(("NONE",))) is None
    assert active(Healthcheck(interval=3)) is None  # nothing to run
    assert active(Healthcheck(("CMD", "x"))) == Healthcheck(
        ("CMD", "x"), interval=30, timeout=30, start_period=0, start_interval=5, retries=3
    )
    assert [health_suffix(s) for s in ("starting", "healthy")] == [
        " (health: starting)",
        " (healthy)",
    ]
    api = {"Test": ["CMD-SHELL", "x"], "Interval": 100_000_000, "Retries": 2}
    assert to_api(from_api(api, "Healthcheck")) == api


# ---- real containers ------------------------------------------------------------------

FAST = ("--health-interval", "100ms")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("health")) as d:
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    yield daemon
    daemon.remove_containers()


def _inspect(d: Daemon, ref: str) -> dict[str, Any]:
    shaped: dict[str, Any] = json.loads(d.ctl("inspect", ref).stdout)[0]
    return shaped


def _until(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    """``probe()`` once it is truthy; fails after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return found


def _health_once(d: Daemon, ref: str, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        health = _inspect(d, ref)["State"].get("Health")
        return health if health is not None and pred(health) else None

    found: dict[str, Any] = _until(f"{ref}'s health to match", probe)
    return found


pytestmark = pytest.mark.root


def test_healthy_shown_by_inspect_ps_events_and_never_in_the_log(clean: Daemon) -> None:
    d = clean
    since = str(int(time.time()) - 1)
    cid = d.ctl(
        "run", "-d", "--name", "ok", "--health-cmd", "echo probe-said-this", *FAST,
        "default", "sh", "-c", "echo from-the-container; exec sleep 60",
    ).stdout.strip()  # fmt: skip
    health = _health_once(d, "ok", lambda h: h["Status"] == "healthy")
    assert health["FailingStreak"] == 0
    assert health["Log"][0]["ExitCode"] == 0
    assert health["Log"][0]["Output"] == "probe-said-this\n"
    shaped = _inspect(d, "ok")
    assert shaped["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "echo probe-said-this"],
        "Interval": 100_000_000,
    }
    assert d.ctl("ps", "--format", "{{.Status}}").stdout.endswith("(healthy)\n")
    assert d.ctl("ps", "-q", "--filter", "health=healthy").stdout.split() == [cid[:12]]
    assert d.ctl("ps", "-q", "--filter", "health=none").stdout == ""
    # Results keep coming: at most five are kept, the newest last.
    health = _health_once(d, "ok", lambda h: len(h["Log"]) == 5)
    log = _health_once(d, "ok", lambda h: h["Log"][0]["Start"] != health["Log"][0]["Start"])["Log"]
    assert len(log) == 5 and log == sorted(log, key=lambda r: r["Start"])
    # The status changed once (starting -> healthy): one event, as Docker's.
    events = d.ctl(
        "events", "--since", since, "--until", str(int(time.time()) + 1),
        "--filter", "container=ok", "--format", "{{.Action}}",
    ).stdout.splitlines()  # fmt: skip
    assert events.count("health_status: healthy") == 1
    assert "exec_start: /bin/sh -c echo probe-said-this" in events
    assert d.ctl("logs", "ok").stdout == "from-the-container\n"


def test_unhealthy_after_retries_and_not_before(clean: Daemon) -> None:
    d = clean
    d.ctl(
        "run", "-d", "--name", "bad", *FAST,
        "--health-cmd", "head -c 5000 /dev/zero | tr '\\0' x >&2; exit 3",
        "--health-retries", "3", "default", "sleep", "60",
    )  # fmt: skip
    health = _health_once(d, "bad", lambda h: h["Status"] == "unhealthy")
    assert health["FailingStreak"] >= 3
    # Two failures in a row were not enough.
    assert [r["ExitCode"] for r in health["Log"]][:2] == [3, 3]
    # Its output (stderr too) is kept up to 4 KiB, as Docker keeps it.
    assert health["Log"][0]["Output"] == "x" * 4096 + "..."
    assert d.ctl("ps", "--format", "{{.Status}}").stdout.endswith("(unhealthy)\n")
    assert d.ctl("ps", "--format", "{{.Names}}", "--filter", "health=unhealthy").stdout == "bad\n"


def test_a_check_that_outlives_its_timeout_is_killed_and_fails(clean: Daemon) -> None:
    d = clean
    d.ctl(
        "run", "-d", "--name", "slow", "--health-cmd", "sleep 37", *FAST,
        "--health-timeout", "200ms", "--health-retries", "1", "default", "sleep", "60",
    )  # fmt: skip
    health = _health_once(d, "slow", lambda h: h["Status"] == "unhealthy")
    first = health["Log"][0]
    assert first["ExitCode"] == -1
    assert first["Output"] == "Health check exceeded timeout (200ms)"
    # Killed with what it started: every `sleep 37` left is the child of a check's shell
    # that runs right now, none an orphan of a killed one.
    rows = [
        line.split(None, 2)
        for line in d.ctl("top", "slow", "-eo", "pid,ppid,args").stdout.splitlines()[1:]
    ]
    shells = {pid for pid, _, args in rows if args == "/bin/sh -c sleep 37"}
    assert all(ppid in shells for _, ppid, args in rows if args == "sleep 37"), rows
    # What a check said before its timeout follows Docker's words for it (moby's
    # TestHealthCheckProcessKilled): it was dropped.
    d.ctl("rm", "-f", "slow")
    d.ctl(
        "run", "-d", "--name", "talky", "--health-cmd", "echo logs logs logs; sleep 37", *FAST,
        "--health-timeout", "200ms", "--health-retries", "1", "default", "sleep", "60",
    )  # fmt: skip
    health = _health_once(d, "talky", lambda h: h["Status"] == "unhealthy")
    assert health["Log"][0]["Output"] == "Health check exceeded timeout (200ms): logs logs logs\n"


def test_a_check_running_at_a_pause_is_forgotten_not_failed(clean: Daemon) -> None:
    """A pause stops the checks as Docker's monitor stops: one running then is killed
    without a result, not left frozen to time out (a failure made by the pause alone);
    after the unpause they run again.  Its timeout is longer than this test waits."""
    d = clean
    d.ctl(
        "run", "-d", "--name", "frozen", *FAST, "--health-timeout", "90s",
        "--health-retries", "1",
        "--health-cmd", "if [ -e /tmp/hold ]; then rm /tmp/hold; exec sleep 38; fi",
        "default", "sh", "-c", "touch /tmp/hold; exec sleep 300",
    )  # fmt: skip

    def checks() -> list[str]:
        rows = d.ctl("top", "frozen", "-eo", "pid,args").stdout.splitlines()[1:]
        return [row for row in rows if row.split(None, 1)[1] == "sleep 38"]

    _until("the held check to run", checks)
    d.ctl("pause", "frozen")
    d.ctl("unpause", "frozen")
    health = _health_once(d, "frozen", lambda h: h["Status"] == "healthy")
    assert [r["ExitCode"] for r in health["Log"]] == [0] * len(health["Log"])
    assert health["FailingStreak"] == 0 and not checks()


def test_failures_in_the_start_period_do_not_count(clean: Daemon) -> None:
    d = clean
    d.ctl(
        "run", "-d", "--name", "early", "--health-cmd", "exit 1", *FAST,
        "--health-start-interval", "100ms", "--health-start-period", "1h",
        "--health-retries", "1", "default", "sleep", "60",
    )  # fmt: skip
    health = _health_once(d, "early", lambda h: len(h["Log"]) >= 3)
    assert (health["Status"], health["FailingStreak"]) == ("starting", 0)
    assert d.ctl("ps", "--format", "{{.Status}}").stdout.endswith("(health: starting)\n")
    assert d.ctl("ps", "-q", "--filter", "health=starting").stdout.strip() != ""


def _load_image(d: Daemon, tmp_path: Path, busybox_root: Path, check: dict[str, Any]) -> None:
    """A Docker-format image archive whose config has ``check`` as its HEALTHCHECK."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(busybox_root, arcname=".")
    data = layer.getvalue()
    diff = hashlib.sha256(data).hexdigest()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["sleep", "60"], "Healthcheck": check},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["checked:1"], "Layers": [f"{diff}/layer.tar"]}]
    ).encode()
    archive = tmp_path / "checked.tar"
    with tarfile.open(archive, "w") as tar:
        for name, body in (
            (f"{diff}/layer.tar", data),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    d.ctl("load", "-i", str(archive))


def test_an_images_healthcheck_applies_unless_overridden_or_disabled(
    clean: Daemon, tmp_path: Path, busybox_root: Path
) -> None:
    d = clean
    _load_image(d, tmp_path, busybox_root, {"Test": ["CMD", "true"], "Interval": 100_000_000})
    d.ctl("run", "-d", "--name", "img", "checked:1")
    _health_once(d, "img", lambda h: h["Status"] == "healthy")
    assert _inspect(d, "img")["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    # --health-cmd replaces the image's test; its interval stays.
    d.ctl("run", "-d", "--name", "mine", "--health-cmd", "exit 1", "--health-retries", "1",
          "checked:1")  # fmt: skip
    _health_once(d, "mine", lambda h: h["Status"] == "unhealthy")
    assert _inspect(d, "mine")["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "exit 1"],
        "Interval": 100_000_000,
        "Retries": 1,
    }
    d.ctl("run", "-d", "--name", "off", "--no-healthcheck", "checked:1")
    off = _inspect(d, "off")
    assert off["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert "Health" not in off["State"]
    assert d.ctl("ps", "--format", "{{.Names}}", "--filter", "health=none").stdout == "off\n"


def test_bad_values_are_refused_naming_them(clean: Daemon) -> None:
    d = clean
    for args, words in [
        (("--health-interval", "-1s"), "invalid --health-interval '-1s': cannot be negative"),
        (("--health-timeout", "5"), "invalid --health-timeout '5'"),
        (("--health-retries", "-1"), "invalid --health-retries -1"),
        (("--health-start-period", "1ns"), "use 0 or at least 1ms"),
        (("--no-healthcheck",), "--no-healthcheck conflicts with --health-* options"),
        (("--health-cmd", " "), "CMD-SHELL takes one command line"),
    ]:
        extra = ("--health-cmd", "true") if args[0] != "--health-cmd" else ()
        r = d.ctl("run", "-d", *extra, *args, "default", "sleep", "60", check=False)
        assert (r.returncode, words in r.stderr) == (125, True), r.stderr
    for check, words in [
        ({"Test": ["CMD"]}, "CMD needs a command"),
        ({"Test": ["NOPE", "x"]}, "starts with CMD, CMD-SHELL or NONE"),
        ({"Test": ["CMD", "true"], "Interval": 500}, "(Interval) 5e-07s: use 0 or at least 1ms"),
        ({"Test": ["CMD", "true"], "Retries": -1}, "(Retries) -1: cannot be negative"),
        ({"Test": "true"}, "Config.Healthcheck.Test 'true'"),
    ]:
        body = {"Image": "default", "Cmd": ["sleep", "60"], "Healthcheck": check}
        status, _, reply = api_call(d, "POST", "/containers/create", json.dumps(body).encode())
        assert (status, words in json.loads(reply)["message"]) == (400, True), reply
    assert d.ctl("ps", "-a", "-q").stdout == ""
    r = d.ctl("ps", "--filter", "health=fine", check=False)
    assert r.returncode != 0 and "invalid filter 'health=fine'" in r.stderr, r.stderr


@needs_cli
def test_docker_cli_and_docker_py_show_it(clean: Daemon) -> None:
    d = clean
    r = docker(d, "run", "-d", "--name", "dk", "--health-cmd", "true", "--health-interval",
               "100ms", "default", "sleep", "60")  # fmt: skip
    assert r.returncode == 0, r.stderr
    _until("docker ps to show (healthy)", lambda: "(healthy)" in docker(d, "ps").stdout)
    r = docker(d, "inspect", "-f", "{{json .State.Health}}", "dk")
    assert json.loads(r.stdout)["Status"] == "healthy"
    assert docker(d, "ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout == "dk\n"
    since, until = str(int(time.time()) - 60), str(int(time.time()) + 1)
    r = docker(d, "events", "--since", since, "--until", until, "--filter", "container=dk",
               "--filter", "event=health_status", "--format", "{{.Action}}")  # fmt: skip
    assert r.stdout == "health_status: healthy\n", r.stderr
    dockerpy = pytest.importorskip("docker")
    client = dockerpy.DockerClient(base_url=f"unix://{d.docker_socket}")
    try:
        c = client.containers.run(
            "default", ["sleep", "60"], detach=True, name="py",
            healthcheck={"test": ["CMD", "false"], "interval": 100_000_000, "retries": 1},
        )  # fmt: skip

        def unhealthy() -> bool:
            c.reload()
            return bool(c.attrs["State"]["Health"]["Status"] == "unhealthy")

        _until("docker-py to see unhealthy", unhealthy)
        assert c.attrs["State"]["Health"]["Log"][0]["ExitCode"] == 1
    finally:
        client.close()


def test_checks_end_with_the_container_and_come_back_after_a_restart(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as d:
        d.ctl("run", "-d", "--name", "h", "--health-cmd", "true", *FAST, "default", "sleep", "60")
        _health_once(d, "h", lambda h: h["Status"] == "healthy")
        # The daemon goes and comes back (live restore): the container runs on, and the new
        # daemon's checks start again at "starting" and report it healthy again.
        d.stop()
        since = str(int(time.time()) - 1)
        d.start()
        assert _inspect(d, "h")["State"]["Running"]

        def reported() -> bool:
            events = d.ctl(
                "events", "--since", since, "--until", str(int(time.time()) + 1),
                "--format", "{{.Action}}",
            ).stdout.split("\n")  # fmt: skip
            return "health_status: healthy" in events

        _until("the new daemon's health_status event", reported)
        d.ctl("stop", "-t", "0", "h")
        assert _inspect(d, "h")["State"]["Health"]["Status"] == "unhealthy"  # Docker's rule
        d.ctl("start", "h")
        _health_once(d, "h", lambda h: h["Status"] == "healthy")
        d.ctl("rm", "-f", "h")


def test_the_library_runs_them_too(tmp_path: Path) -> None:
    async def main() -> None:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            # A command that cannot run fails the check (exit code -1, the reason as output).
            check = boxd.Healthcheck(("CMD", "/nope"), interval=0.1, retries=2)
            config = boxd.ContainerConfig(
                image="default", command=("sleep", "60"), network="none", healthcheck=check
            )
            _, events = sup.events.subscribe()
            c = await sup.run(config)
            with trio.fail_after(30):
                async for event in events:
                    if event.action == "health_status: unhealthy" and event.id == c.id:
                        break
            assert c.state.health is not None and c.state.health.status == "unhealthy"
            assert c.state.health.failing_streak >= 2
            assert [r.exit_code for r in c.state.health.log][:2] == [-1, -1]
            assert "/nope: No such file or directory" in c.state.health.log[0].output
            await sup.remove(c.id, force=True)

    trio.run(main)

"""docker-compose 1.29 against boxd.  Most tests replay, through docker-py (compose's own
client), the requests of one compose verb that boxd once answered wrongly (or, said so, a
bug found on the way); the ``real_compose`` ones run Debian's docker-compose 1.29.2
itself (``.ci/install-deps`` installs it; skipped, saying so, where it is missing).

The daemon runs in a network namespace the module makes and deletes afterwards, even on
failure (compose's projects are user networks with published ports).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import Daemon, running_daemon, session_name, until

pytestmark = pytest.mark.root

docker = pytest.importorskip("docker")

PROJECT = {"com.docker.compose.project": "proj", "com.docker.compose.version": "1.29.2"}


@pytest.fixture(scope="module")
def compose_daemon(
    tmp_path_factory: pytest.TempPathFactory, busybox_root: Path
) -> Iterator[Daemon]:
    """A daemon in a network namespace of its own, with busybox imported as
    ``busybox:latest``."""
    tmp = tmp_path_factory.mktemp("compose")
    name = session_name(secrets.token_hex(4))
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        netns = f"/run/netns/{name}"
        subprocess.run(["nsenter", f"--net={netns}", "ip", "link", "set", "lo", "up"], check=True)
        with running_daemon(tmp, netns=netns) as daemon:
            tarball = tmp / "busybox.tar"
            subprocess.run(["tar", "-C", str(busybox_root), "-cf", str(tarball), "."], check=True)
            daemon.ctl("import", "-c", 'CMD ["sh"]', str(tarball), "busybox:latest")
            yield daemon
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def client(compose_daemon: Daemon) -> Iterator[Any]:
    """docker-py's low-level client, as compose holds it."""
    api = docker.APIClient(base_url=f"unix://{compose_daemon.docker_socket}", version="1.41")
    try:
        yield api
    finally:
        api.close()


def test_project_network_shows_no_options(client: Any) -> None:
    """compose's ``up`` creates ``proj_default``, and every later ``up`` or ``run``
    inspects it and compares its Options with the ones it gave: the bridge's name, which
    boxd showed on every network, made it stop ("needs to be recreated - option
    com.docker.network.bridge.name has changed")."""
    labels = {**PROJECT, "com.docker.compose.network": "default"}
    net = client.create_network(
        "proj_default", driver=None, labels=labels, attachable=True, check_duplicate=True
    )
    try:
        shown = client.inspect_network("proj_default")
        assert (shown["Id"], shown["Labels"], shown["Options"]) == (net["Id"], labels, {})
        # The default network shows its bridge, as Docker's does.
        assert "com.docker.network.bridge.name" in client.inspect_network("bridge")["Options"]
    finally:
        client.remove_network("proj_default")
    # Driver options are refused by name, not dropped.
    with pytest.raises(docker.errors.APIError) as info:
        client.create_network("opts", options={"com.docker.network.bridge.inhibit_ipv4": "true"})
    assert info.value.status_code == 400
    assert "network option 'com.docker.network.bridge.inhibit_ipv4'" in str(info.value)
    # So are IPAM drivers and options (compose's ipam: driver, options), dropped before.
    for ipam, words in (
        ({"Driver": "dhcp"}, "IPAM driver 'dhcp' is not supported by boxd"),
        ({"Driver": "default", "Options": {"foo": "bar"}}, "IPAM option 'foo' is not supported"),
    ):
        with pytest.raises(docker.errors.APIError) as info:
            client.create_network("opts", ipam=ipam)
        assert info.value.status_code == 400 and words in str(info.value), str(info.value)
    assert [n["Name"] for n in client.networks() if n["Name"] == "opts"] == []


def test_inspect_shows_entrypoint_and_cmd_apart(client: Any) -> None:
    """``entrypoint: [sh, -c]`` with ``command: [...]``: compose's ``ps`` shows
    Config.Entrypoint + Config.Cmd, which showed ``sh -c sh -c ...`` while Cmd held both."""
    c = client.create_container("busybox", ["echo hi"], entrypoint=["sh", "-c"], name="ep")
    plain = client.create_container("busybox", name="plain")
    try:
        shown = client.inspect_container(c)
        assert shown["Config"]["Entrypoint"] == ["sh", "-c"]
        assert shown["Config"]["Cmd"] == ["echo hi"]
        assert (shown["Path"], shown["Args"]) == ("sh", ["-c", "echo hi"])
        shown = client.inspect_container(plain)
        assert (shown["Config"]["Entrypoint"], shown["Config"]["Cmd"]) == (None, ["sh"])
    finally:
        for ref in (c, plain):
            client.remove_container(ref, force=True)


def test_links_on_the_default_bridge_give_hosts_lines_and_variables(
    client: Any, compose_daemon: Daemon
) -> None:
    """compose's ``links:`` on ``network_mode: bridge`` (``docker run --link`` on the
    default network), which boxd refused: the default bridge has no name server, so the
    linking container gets Docker's /etc/hosts line and variables for the linked one
    (its init and its execs), and the linked container must run."""
    made = []
    try:
        db = client.create_container(
            "busybox", ["httpd", "-f", "-p", "8080", "-h", "/etc"], name="links_db",
            environment={"SECRET": "s3", "HOME": "/elsewhere"}, ports=[8080, 9000, 9001],
            host_config=client.create_host_config(network_mode="bridge"),
        )["Id"]  # fmt: skip
        made.append(db)
        client.start(db)
        address = client.inspect_container(db)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        web = client.create_container(
            "busybox", ["sh", "-c", "env > /tmp/init.env; exec sleep 300"], name="links_web",
            host_config=client.create_host_config(
                network_mode="bridge", links={"links_db": "db-1"}
            ),
        )  # fmt: skip
        made.append(web)
        client.start(web)
        assert client.inspect_container(web)["HostConfig"]["Links"] == ["/links_db:/links_web/db-1"]
        check = (
            "cat /etc/hosts /tmp/init.env; echo EXEC; env;"
            ' wget -qO- "http://$DB_1_PORT_8080_TCP_ADDR:8080/hostname"'
        )
        run = client.exec_create(web, ["sh", "-c", check])
        out = client.exec_start(run).decode()
        assert client.exec_inspect(run)["ExitCode"] == 0, out
        lines = out.splitlines()
        assert f"{address}\tdb-1 {db[:12]} links_db" in lines, out
        assert lines[-1] == db[:12]  # the linked container's /etc/hostname, over TCP
        init, execd = out.split("EXEC\n")
        for env in (init, execd):
            for var in (
                f"DB_1_PORT=tcp://{address}:8080",
                f"DB_1_PORT_8080_TCP=tcp://{address}:8080",
                f"DB_1_PORT_8080_TCP_ADDR={address}",
                "DB_1_PORT_8080_TCP_PORT=8080",
                "DB_1_PORT_8080_TCP_PROTO=tcp",
                f"DB_1_PORT_9000_TCP_START=tcp://{address}:9000",
                "DB_1_PORT_9000_TCP_PORT_END=9001",
                "DB_1_NAME=/links_web/db-1",
                "DB_1_ENV_SECRET=s3",
            ):
                assert var in env.splitlines(), (var, env)
            assert "DB_1_ENV_HOME" not in env
        # boxctl's --link (ALIAS defaults to NAME).
        shown = compose_daemon.ctl(
            "run",
            "--rm",
            "--link",
            "links_db",
            "busybox",
            "sh",
            "-c",
            "echo $LINKS_DB_NAME; tail -1 /etc/hosts",
        )
        assert shown.stdout.splitlines()[0].endswith("/links_db"), shown.stdout
        assert f"{address}\tlinks_db {db[:12]}" in shown.stdout
        # A link follows its container through a rename, as Docker's.
        client.rename(db, "links_db2")
        assert client.inspect_container(web)["HostConfig"]["Links"] == [
            "/links_db2:/links_web/db-1"
        ]
        client.restart(web, timeout=0)
        hosts = client.exec_start(client.exec_create(web, ["cat", "/etc/hosts"])).decode()
        assert f"{address}\tdb-1 {db[:12]} links_db2" in hosts.splitlines(), hosts
        # docker rm --link NAME/ALIAS: the link is gone (its next start makes no line);
        # a link that is not there, or no alias, is refused as Docker refuses them.
        with pytest.raises(docker.errors.NotFound, match="No such container: links_web/db"):
            client.remove_container("links_web/db", link=True)
        with pytest.raises(docker.errors.APIError, match="cannot remove the default link"):
            client.remove_container("links_web", link=True)
        client.remove_container("links_web/db-1", link=True)
        assert client.inspect_container(web)["HostConfig"]["Links"] is None
        client.restart(web, timeout=0)
        hosts = client.exec_start(client.exec_create(web, ["cat", "/etc/hosts"])).decode()
        assert "links_db2" not in hosts, hosts
        # The linked container must run at the linking one's start (Docker's words).
        client.stop(db, timeout=0)
        late = client.create_container(
            "busybox", ["true"],
            host_config=client.create_host_config(network_mode="bridge", links={"links_db2": "db"}),
        )  # fmt: skip
        made.append(late)
        with pytest.raises(docker.errors.APIError) as info:
            client.start(late)
        assert "Cannot link to a non running container: /links_db2 AS" in str(info.value)
    finally:
        for c in made:
            client.remove_container(c, force=True)


def test_one_off_links_resolve_for_their_container_alone(client: Any) -> None:
    """compose's ``run`` links its one-off container to the service's running ones
    (HostConfig.Links ``proj_client_1:client_1`` ...), which boxd refused.  On a user
    network each ALIAS resolves as NAME for the linked container only, as through
    Docker's embedded DNS."""
    client.create_network("proj_links", labels=PROJECT)
    made = []
    try:
        target = client.create_container(
            "busybox", ["sleep", "300"], name="proj_db_1",
            host_config=client.create_host_config(network_mode="proj_links"),
        )  # fmt: skip
        made.append(target)
        client.start(target)
        address = client.inspect_container(target)["NetworkSettings"]["Networks"]["proj_links"][
            "IPAddress"
        ]

        def run(
            links: dict[str, str] | None, endpoint_links: dict[str, str] | None = None
        ) -> tuple[dict[str, Any], str]:
            endpoint = client.create_endpoint_config(links=endpoint_links)
            c = client.create_container(
                "busybox", ["nslookup", "db_1"],
                host_config=client.create_host_config(network_mode="proj_links", links=links),
                networking_config=client.create_networking_config({"proj_links": endpoint}),
            )  # fmt: skip
            made.append(c)
            client.start(c)
            client.wait(c, timeout=30)
            return client.inspect_container(c), client.logs(c).decode()

        shown, out = run({"proj_db_1": "db_1", "/proj_db_1": "/proj_run_1/db"})
        assert sorted(shown["HostConfig"]["Links"]) == ["proj_db_1:db", "proj_db_1:db_1"]
        assert shown["State"]["ExitCode"] == 0 and address in out, out
        shown, out = run(None)  # not linked: the alias is nobody's name
        assert shown["State"]["ExitCode"] != 0 and address not in out, out
        # compose v2 sends them as the endpoint's (EndpointsConfig[NET].Links), which
        # boxd dropped: the same links.
        shown, out = run(None, {"proj_db_1": "db_1"})
        assert shown["HostConfig"]["Links"] == ["proj_db_1:db_1"]
        # and shown as the endpoint's, as Docker's inspect has them (docker-py reads them)
        assert shown["NetworkSettings"]["Networks"]["proj_links"]["Links"] == ["proj_db_1:db_1"]
        assert shown["State"]["ExitCode"] == 0 and address in out, out
        # docker rm --link: a running container's DNS answers the alias no more.
        linked = client.create_container(
            "busybox", ["sleep", "300"],
            host_config=client.create_host_config(
                network_mode="proj_links", links={"proj_db_1": "db_1"}
            ),
        )  # fmt: skip
        made.append(linked)
        client.start(linked)

        def lookup() -> int:
            run = client.exec_create(linked, ["nslookup", "db_1"])
            client.exec_start(run)
            return int(client.exec_inspect(run)["ExitCode"])

        assert lookup() == 0
        client.remove_container(f"{client.inspect_container(linked)['Name'][1:]}/db_1", link=True)
        assert lookup() != 0
    finally:
        for c in made:
            client.remove_container(c, force=True)
        client.remove_network("proj_links")
    # Refused: a bad link, and links where no DNS of boxd's answers them.
    for links, network, words in (
        (["a:b:c"], "bridge", "bad format for links: a:b:c"),
        ([""], "bridge", "empty string specified for links"),
        (["proj_db_1:db"], "none", "links cannot be used with --network none"),
        (["nosuch:db"], "bridge", "could not get container for nosuch"),
    ):
        with pytest.raises(docker.errors.APIError) as info:
            client.create_container(
                "busybox", ["true"],
                host_config={"NetworkMode": network, "Links": links},
            )  # fmt: skip
        assert info.value.status_code == 400 and words in str(info.value), str(info.value)


def test_links_of_another_network_and_at_connect_are_that_networks(client: Any) -> None:
    """compose 1.29 sends a service's ``links:`` with every network it connects the
    container to after the first (``network connect``'s EndpointConfig.Links), which boxd
    refused: a project with links on two networks failed at ``up``.  Such links, and those
    of another network at create (API 1.44), are that network's alone: its DNS answers the
    alias with the target's address there, for the linking container only, as moby's
    endpoint aliases."""
    client.create_network("proj_other", labels=PROJECT)
    made = []

    def busybox(**kwargs: Any) -> Any:
        c = client.create_container("busybox", ["sleep", "300"], **kwargs)
        made.append(c)
        client.start(c)
        return c

    def lookup(c: Any, name: str) -> tuple[int, str]:
        run = client.exec_create(c, ["nslookup", name])
        out = client.exec_start(run).decode()
        return int(client.exec_inspect(run)["ExitCode"]), out

    try:
        target = busybox(
            name="proj_odb_1", host_config=client.create_host_config(network_mode="proj_other")
        )
        address = client.inspect_container(target)["NetworkSettings"]["Networks"]["proj_other"][
            "IPAddress"
        ]
        at_create = busybox(
            host_config=client.create_host_config(network_mode="bridge"),
            networking_config=client.create_networking_config(
                {"proj_other": client.create_endpoint_config(links={"proj_odb_1": "odb"})}
            ),
        )  # fmt: skip
        shown = client.inspect_container(at_create)["NetworkSettings"]["Networks"]
        assert shown["proj_other"]["Links"] == ["proj_odb_1:odb"]
        assert shown["bridge"]["Links"] is None
        code, out = lookup(at_create, "odb")
        assert code == 0 and address in out, out
        at_connect = busybox(host_config=client.create_host_config(network_mode="bridge"))
        client.connect_container_to_network(at_connect, "proj_other", links={"proj_odb_1": "o2"})
        shown = client.inspect_container(at_connect)["NetworkSettings"]["Networks"]
        assert shown["proj_other"]["Links"] == ["proj_odb_1:o2"]
        code, out = lookup(at_connect, "o2")
        assert code == 0 and address in out, out
        assert lookup(at_create, "o2")[0] != 0  # the other container's link, not its own
        # The default bridge has no name server: its links are made at create only.
        with pytest.raises(docker.errors.APIError) as info:
            client.connect_container_to_network(target, "bridge", links={"proj_odb_1": "x"})
        assert info.value.status_code == 400
        assert "links at network connect are only for user-defined networks" in str(info.value)
        client.disconnect_container_from_network(at_connect, "proj_other")
        with pytest.raises(docker.errors.APIError) as info:
            client.connect_container_to_network(at_connect, "proj_other", links={"a": "b:c"})
        assert info.value.status_code == 400 and "bad format for links: a:b:c" in str(info.value)
    finally:
        for c in made:
            client.remove_container(c, force=True)
        client.remove_network("proj_other")


def test_a_scaled_services_name_answers_every_replica(client: Any) -> None:
    """``up --scale worker=2``: both replicas carry the alias ``worker`` on the project
    network, and the name must answer with both addresses (Docker's DNS round robin);
    boxd answered with the first only."""
    client.create_network("proj_scale", labels=PROJECT)
    made = []
    try:

        def create(command: list[str], aliases: list[str]) -> Any:
            c = client.create_container(
                "busybox", command,
                host_config=client.create_host_config(network_mode="proj_scale"),
                networking_config=client.create_networking_config(
                    {"proj_scale": client.create_endpoint_config(aliases=aliases)}
                ),
            )  # fmt: skip
            made.append(c)
            client.start(c)
            return c

        replicas = [create(["sleep", "300"], ["worker"]) for _ in range(2)]
        addresses = {
            client.inspect_container(r)["NetworkSettings"]["Networks"]["proj_scale"]["IPAddress"]
            for r in replicas
        }
        asker = create(["nslookup", "worker"], [])
        assert client.wait(asker, timeout=30)["StatusCode"] == 0
        out = client.logs(asker).decode()
        answered = {line.split()[-1] for line in out.splitlines() if line.startswith("Address:")}
        assert addresses <= answered and len(addresses) == 2, out
    finally:
        for c in made:
            client.remove_container(c, force=True)
        client.remove_network("proj_scale")


def test_image_inspect_has_a_container_config(client: Any) -> None:
    """compose's ``up`` recreating a changed service reads the image's
    ``ContainerConfig.Volumes`` (API 1.41 has it): boxd's inspect had no such key, and
    compose stopped with a KeyError."""
    for image in ("busybox", "default"):
        shown = client.inspect_image(image)
        assert shown["ContainerConfig"]["Volumes"] is None
        assert shown["ContainerConfig"]["Cmd"] is None


def test_recreate_keeps_an_affinity_env_entry(client: Any) -> None:
    """compose's ``up`` recreating a container with volumes sends Env
    ``affinity:container==ID`` (a Swarm hint): Docker takes any name but an empty one and
    passes it on; boxd refused every name that is not a shell identifier."""
    c = client.create_container(
        "busybox", ["env"], environment=["affinity:container==abc123", "1X=2", "A=1"]
    )
    try:
        client.start(c)
        assert client.wait(c, timeout=30)["StatusCode"] == 0
        out = client.logs(c).decode().splitlines()
        assert {"affinity:container==abc123", "1X=2", "A=1"} <= set(out), out
    finally:
        client.remove_container(c, force=True)
    with pytest.raises(docker.errors.APIError) as info:
        client.create_container("busybox", ["env"], environment=["=1"])
    assert info.value.status_code == 400 and "invalid --env '=1'" in str(info.value)


def test_a_volume_bound_to_a_host_directory(client: Any, tmp_path: Path) -> None:
    """``driver_opts: {type: none, o: bind, device: DIR}``, compose's way to keep a named
    volume's data in a directory of the project, which boxd refused (no options): the
    container sees DIR, which is never filled from the image nor removed with the volume."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "seed").write_text("from the host\n")
    opts = {"type": "none", "o": "bind", "device": str(data)}
    client.create_volume("proj_data", driver_opts=opts, labels=PROJECT)
    try:
        shown = client.inspect_volume("proj_data")
        assert (shown["Options"], shown["Mountpoint"]) == (opts, str(data))
        c = client.create_container(
            "busybox", ["sh", "-c", "cat /bin/../data/seed; echo out > /data/new; ls /data"],
            host_config=client.create_host_config(binds=["proj_data:/data"]),
        )  # fmt: skip
        try:
            client.start(c)
            assert client.wait(c, timeout=30)["StatusCode"] == 0
            assert client.logs(c).decode().split() == ["from", "the", "host", "new", "seed"]
        finally:
            client.remove_container(c, force=True)
    finally:
        client.remove_volume("proj_data")
    assert (data / "new").read_text() == "out\n" and (data / "seed").exists()
    for bad, words in (
        ({"type": "tmpfs", "o": "size=1m"}, 'missing required option: "device"'),
        ({"type": "none", "o": "bind", "device": str(tmp_path / "nope")}, "not an existing"),
        ({"foo": "bar"}, 'invalid option: "foo"'),
    ):
        with pytest.raises(docker.errors.APIError) as info:
            client.create_volume("bad", driver_opts=bad)
        assert info.value.status_code == 400 and words in str(info.value), str(info.value)


def test_oom_score_adj_reaches_the_process(client: Any) -> None:
    """``oom_score_adj: 200`` arrives as HostConfig.OomScoreAdj, which boxd's Engine API
    dropped (boxctl --oom-score-adj had it): the container ran with the daemon's score."""
    c = client.create_container(
        "busybox", ["cat", "/proc/self/oom_score_adj"],
        host_config=client.create_host_config(oom_score_adj=200),
    )  # fmt: skip
    try:
        client.start(c)
        assert client.wait(c, timeout=30)["StatusCode"] == 0
        assert client.logs(c).decode().strip() == "200"
        assert client.inspect_container(c)["HostConfig"]["OomScoreAdj"] == 200
    finally:
        client.remove_container(c, force=True)
    with pytest.raises(docker.errors.APIError) as info:
        client.create_container(
            "busybox", ["true"], host_config=client.create_host_config(oom_score_adj=2000)
        )
    assert info.value.status_code == 400 and "invalid --oom-score-adj 2000" in str(info.value)


def test_a_domainname_is_the_containers(client: Any) -> None:
    """``domainname:`` arrives as Config.Domainname, which boxd first dropped (the
    container's domain name stayed ``(none)``), then refused: it is the container's UTS
    domain name, shown back by inspect."""
    c = client.create_container(
        "busybox", ["cat", "/proc/sys/kernel/domainname"], domainname="example.test"
    )
    try:
        client.start(c)
        assert client.wait(c, timeout=30)["StatusCode"] == 0
        assert client.logs(c).decode() == "example.test\n"
        assert client.inspect_container(c)["Config"]["Domainname"] == "example.test"
    finally:
        client.remove_container(c, force=True)


def test_endpoints_name_their_networks_by_id(client: Any) -> None:
    """NetworkSettings.Networks[NAME].NetworkID is the network's id in Docker (clients
    match a container's endpoints to ``network ls`` by it); boxd gave the name."""
    net = client.create_network("proj_ids", labels=PROJECT)
    c = client.create_container(
        "busybox", ["sleep", "300"],
        host_config=client.create_host_config(network_mode="proj_ids"),
    )  # fmt: skip
    try:
        client.start(c)
        shown = client.inspect_container(c)["NetworkSettings"]["Networks"]
        assert shown["proj_ids"]["NetworkID"] == net["Id"]
        (row,) = client.containers(filters={"id": c["Id"]})
        assert row["NetworkSettings"]["Networks"]["proj_ids"]["NetworkID"] == net["Id"]
    finally:
        client.remove_container(c, force=True)
        client.remove_network("proj_ids")


def test_commit_of_a_container_that_never_ran(client: Any) -> None:
    """Found while writing these tests: committing a created container (an image with
    one more EXPOSE, say) failed with a 500, its upper directory not being there yet.
    Docker commits it with no new layer (its diff is empty: an empty_layer entry)."""
    base = client.create_container("busybox", ["true"])
    try:
        image = client.commit(base, "proj_never", "1", changes=["EXPOSE 80"])
        shown = client.inspect_image(image["Id"])
        assert shown["Config"]["ExposedPorts"] == {"80/tcp": {}}
        below = client.inspect_image("busybox")["RootFS"]["Layers"]
        assert shown["RootFS"]["Layers"] == below
    finally:
        client.remove_container(base)
    client.remove_image("proj_never:1")


def test_ports_are_listed_once_and_only_while_running(client: Any) -> None:
    """compose's ``ps`` showed ``80/tcp, 80/tcp`` for a stopped web service: its image
    EXPOSEs 80 and compose's ``ports:`` exposes it again, and boxd listed both, for a
    container that had no network at all.  Docker lists each port once, and none for a
    container that is not running."""
    base = client.create_container("busybox", ["true"])
    client.commit(base, "proj_exposed", "1", changes=["EXPOSE 80"])
    client.remove_container(base)
    c = client.create_container(
        "proj_exposed:1", ["sleep", "300"], ports=[80, 81],
        host_config=client.create_host_config(port_bindings={81: None}),
    )  # fmt: skip
    try:

        def shown() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            (row,) = client.containers(all=True, filters={"id": c["Id"]})
            return row["Ports"], client.inspect_container(c)["NetworkSettings"]["Ports"]

        assert shown() == ([], {})
        client.start(c)
        rows, ports = shown()
        # 81 published on each family (0.0.0.0 and ::, as Docker lists them), 80 once.
        listed = sorted((r["PrivatePort"], r.get("IP", "")) for r in rows)
        assert listed == [(80, ""), (81, "0.0.0.0"), (81, "::")], rows
        assert ports["80/tcp"] is None and ports["81/tcp"][0]["HostPort"], ports
        client.stop(c, timeout=1)
        assert shown() == ([], {})
    finally:
        client.remove_container(c, force=True)
        client.remove_image("proj_exposed:1")


# The real docker-compose 1.29 (Debian's package: /usr/bin/docker-compose, its own Python and
# docker-py), run against the module's daemon inside its network namespace.
COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose 1.29 is not installed (apt-get install docker-compose)"
)

APP = """\
version: "3.8"
services:
  web:
    build: ./web
    ports: ["127.0.0.1::8080"]
    environment: [FOO=one]
    env_file: app.env
    volumes: [named:/named, ./data:/bind:ro, /anon]
    networks:
      default:
      back:
        aliases: [webalias]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 30
    init: true
    labels: {tc.label: web}
  client:
    image: busybox:latest
    depends_on:
      web:
        condition: service_healthy
    command: ["sleep", "300"]
    user: "1000:1000"
    working_dir: /tmp
    networks: [back, default]
    links: ["web:site"]
    init: true
networks:
  back: {}
volumes:
  named: {}
"""


class Compose:
    """docker-compose on one project directory, in the daemon's network namespace."""

    def __init__(self, daemon: Daemon, directory: Path, name: str) -> None:
        assert COMPOSE is not None
        self.directory = directory
        self.command = ["nsenter", f"--net={daemon.netns}", COMPOSE]
        self.env = {
            "PATH": os.environ["PATH"],
            "DOCKER_HOST": f"unix://{daemon.docker_socket}",
            "COMPOSE_DOCKER_CLI_BUILD": "0",  # docker-py builds: no docker CLI needed
            "COMPOSE_PROJECT_NAME": name,
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args], cwd=self.directory, env=self.env, capture_output=True,
            text=True, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {args} exited {result.returncode}: {result}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.command, *args], cwd=self.directory, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


@contextmanager
def compose_project(daemon: Daemon, directory: Path, name: str, spec: str) -> Iterator[Compose]:
    """A compose project in ``directory`` (``web/`` holds a Dockerfile of a web server);
    everything ``down`` removes is removed afterwards, even on failure."""
    (directory / "web").mkdir()
    (directory / "web" / "Dockerfile").write_text(
        "FROM busybox:latest\n"
        "RUN mkdir /www && echo hello-from-web > /www/index.html\n"
        'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n'
    )
    (directory / "docker-compose.yml").write_text(spec)
    compose = Compose(daemon, directory, name)
    try:
        yield compose
    finally:
        compose("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1", check=False)


@needs_compose
@pytest.mark.slow
def test_real_compose_runs_a_multi_service_app(
    compose_daemon: Daemon, client: Any, tmp_path: Path
) -> None:
    """A project as users write them, through its life: a built image and busybox,
    a published port, env and env_file, named, bind and anonymous volumes, a custom network
    with an alias, a service on two networks with a link, a healthcheck that
    ``depends_on`` waits for, ``exec``, ``run --rm``, a changed service recreated alone
    (its anonymous volume kept), and ``down -v --rmi local`` leaving nothing of the project
    behind."""
    (tmp_path / "app.env").write_text("FROM_FILE=yes\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("bound\n")
    with compose_project(compose_daemon, tmp_path, "tcapp", APP) as compose:
        compose("up", "-d")
        assert "Up (healthy)" in compose("ps", "web").stdout
        address = compose("port", "web", "8080").stdout.strip()
        fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read())"
        page = subprocess.run(
            ["nsenter", f"--net={compose_daemon.netns}", sys.executable, "-c", fetch,
             f"http://{address}/"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        assert "hello-from-web" in page.stdout
        # by service name, by alias on `back`, by the link's alias (compose gives it with
        # both of the client's networks, the second at `network connect`)
        for name in ("web", "webalias", "site"):
            got = compose("exec", "-T", "client", "wget", "-q", "-O-", f"http://{name}:8080/")
            assert got.stdout == "hello-from-web\n"
        script = "echo $FOO $FROM_FILE; cat /bind/x.txt; echo kept >/anon/k; echo n >/named/n"
        assert compose("exec", "-T", "web", "sh", "-c", script).stdout == "one yes\nbound\n"
        one_off = compose("run", "--rm", "client", "sh", "-c", "id -u; pwd; exit 3", check=False)
        assert (one_off.returncode, one_off.stdout) == (3, "1000\n/tmp\n")

        anonymous = [
            m["Name"] for m in client.inspect_container("tcapp_web_1")["Mounts"]
            if m["Destination"] == "/anon"
        ]  # fmt: skip
        (tmp_path / "docker-compose.yml").write_text(APP.replace("FOO=one", "FOO=two"))
        again = compose("up", "-d").stderr
        assert "Recreating tcapp_web_1" in again
        assert "tcapp_client_1 is up-to-date" in again
        kept = compose("exec", "-T", "web", "sh", "-c", "echo $FOO; cat /anon/k /named/n")
        assert kept.stdout == "two\nkept\nn\n"

        compose("down", "-v", "--rmi", "local", "-t", "1")
        project = {"label": "com.docker.compose.project=tcapp"}
        assert client.containers(all=True, filters=project) == []
        assert client.networks(filters=project) == []
        volumes = {v["Name"] for v in client.volumes()["Volumes"] or []}
        assert volumes.isdisjoint({"tcapp_named", *anonymous})
        assert client.images(name="tcapp_web") == []


@needs_compose
def test_real_compose_up_in_the_foreground_stops_on_ctrl_c(
    compose_daemon: Daemon, client: Any, tmp_path: Path
) -> None:
    """An attached ``up`` shows every service's output, prefixed with its container, and
    Ctrl-C stops the project (compose's "Gracefully stopping...")."""
    spec = "version: '3.8'\nservices:\n" + "".join(
        f"  {s}:\n    image: busybox:latest\n    init: true\n"
        f"    command: sh -c 'echo from-{s}; exec sleep 300'\n"
        for s in ("a", "b")
    )
    with compose_project(compose_daemon, tmp_path, "tcfg", spec) as compose:
        up = compose.popen("up", "--no-color")
        assert up.stdout is not None
        lines: list[str] = []  # compose's output, read as it comes
        output = up.stdout

        def read() -> None:
            for line in output:
                lines.append(line)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            shown = {"a_1  | from-a\n", "b_1  | from-b\n"}
            until(lambda: shown <= set(lines), "both services' output from compose", timeout=60)
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
        finally:
            up.kill()
            up.wait()
            reader.join()
            output.close()
        assert "Gracefully stopping... (press Ctrl+C again to force)\n" in lines
        for name in ("tcfg_a_1", "tcfg_b_1"):
            assert client.inspect_container(name)["State"]["Status"] == "exited"

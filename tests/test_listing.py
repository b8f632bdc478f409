"""The container list: the ListResponse frame built from kept configurations, and the
status words boxctl shares with the daemon (no root needed)."""

from __future__ import annotations

import re

import attrs
import pytest

from boxd import protocol
from boxd._dockerapi._shapes import status_text
from boxd._dockerwords import STATUSES, WORDS
from boxd._listing import ContainerBrief, ListAnswers, container_filter, status_word
from boxd._messages import ListResponse, dump
from boxd._netconfig import Endpoint, NetworkJoin, NetworkSettings, PortBinding, PortSpec
from boxd._records import Container, ContainerConfig, Resources, Status, Volume, new_id


def _decoded(frame: bytes) -> object:
    decoder = protocol.FrameDecoder()
    decoder.feed(frame)
    message = decoder.next()
    assert message is not None and decoder.pending == 0
    return message


def _expected(found: list[Container], sizes: tuple[tuple[int, int], ...] = ()) -> object:
    return _decoded(protocol.encode(dump(ListResponse(containers=tuple(found), sizes=sizes))))


def _containers() -> list[Container]:
    plain = Container(
        id=new_id(),
        name="plain",
        created_at=1.25,
        config=ContainerConfig(image="default", command=("true",)),
    )
    busy = Container(
        id=new_id(),
        name="busy",
        created_at=2.5,
        config=ContainerConfig(
            image="docker.io/library/busybox:latest",
            command=("sh", "-c", 'echo "ünïcode" \\ done'),
            env=("A=1", "B=two words"),
            labels=("k=v", "empty="),
            resources=Resources(memory=64 << 20, cpus=0.5),
            tty=True,
        ),
    )
    busy.state.status = Status.RUNNING
    busy.state.pid = 4242
    busy.state.started_at = 3.0
    busy.state.network = NetworkSettings(
        endpoints=(Endpoint("bridge", "172.17.0.2", 16, "172.17.0.1", "02:42:ac:11:00:02"),),
        ports=(PortBinding(80, "tcp", "", 8080),),
    )
    return [busy, plain]


def test_the_frame_holds_the_message() -> None:
    answers = ListAnswers()
    found = _containers()
    assert _decoded(answers.frame([], [])) == _expected([])
    assert _decoded(answers.frame(found, [])) == _expected(found)
    sizes = ((10, 30), (0, 0))
    assert _decoded(answers.frame(found, sizes)) == _expected(found, sizes)


def test_a_changed_record_is_encoded_as_it_is_now() -> None:
    answers = ListAnswers()
    found = _containers()
    _decoded(answers.frame(found, []))
    busy, plain = found
    busy.state.status = Status.EXITED
    busy.state.exit_code = 137
    plain.config = attrs.evolve(plain.config, command=("sleep", "1"))  # as `update` does
    plain.name = "renamed"
    assert _decoded(answers.frame(found, [])) == _expected(found)
    assert _decoded(answers.frame(found[1:], [])) == _expected(found[1:])
    assert _decoded(answers.frame(found, [])) == _expected(found)


def test_every_phase_has_a_word_and_every_word_is_a_status_filter() -> None:
    assert set(WORDS) == {s.value for s in Status}
    assert set(WORDS.values()) <= set(STATUSES)


def test_a_start_is_shown_as_the_phase_before_it() -> None:
    """Docker shows a container it starts as it was until its process runs: a restart
    policy's start as restarting, a start by hand of one that ran as exited, not created."""
    answers = ListAnswers()
    c = _containers()[1]
    c.state.status = Status.STARTING
    shown: list[tuple[str, str, str]] = []
    for ran, restarts in ((False, 0), (True, 2), (True, 0)):
        c.state.started_at = 3.0 if ran else None
        c.state.finished_at = c.state.exit_code = 4 if ran else None
        c.state.restart_count = restarts
        message = _decoded(answers.frame([c], [], brief=True))
        assert isinstance(message, dict)
        (brief,) = message["briefs"]
        shown.append((status_word(c), status_text(c, 6.0), brief["status"]))
        assert container_filter({"status": [status_word(c)]})(c)
    assert shown == [
        ("created", "Created", "starting"),  # boxctl says created (WORDS)
        ("restarting", "Restarting (4) 2 seconds ago", "restarting"),
        ("exited", "Exited (4) 2 seconds ago", "exited"),
    ]


def test_a_brief_holds_what_ps_shows() -> None:
    answers = ListAnswers()
    busy, plain = found = _containers()
    plain.config = attrs.evolve(
        plain.config,
        exposed_ports=("443/tcp",),
        expose=("53/udp",),
        volumes=(Volume(host="/srv/data", container="/data"),),
    )
    briefs = (
        ContainerBrief(
            id=busy.id,
            name="busy",
            created_at=2.5,
            status="running",
            started_at=3.0,
            finished_at=None,
            exit_code=None,
            oom_killed=False,
            image="docker.io/library/busybox:latest",
            command=("sh", "-c", 'echo "ünïcode" \\ done'),
            labels=("k=v", "empty="),
            exposed=(),
            network="bridge",
            volumes=(),
            ports=(PortBinding(80, "tcp", "", 8080),),
            networks=("bridge",),
        ),
        ContainerBrief(
            id=plain.id,
            name="plain",
            created_at=1.25,
            status="created",
            started_at=None,
            finished_at=None,
            exit_code=None,
            oom_killed=False,
            image="default",
            command=("true",),
            labels=(),
            exposed=("443/tcp", "53/udp"),
            network="bridge",
            volumes=("/srv/data",),
            ports=(),
            networks=(),
        ),
    )
    sizes = ((7, 9), (0, 0))
    expected = protocol.encode(dump(ListResponse(containers=(), briefs=briefs, sizes=sizes)))
    assert _decoded(answers.frame(found, sizes, brief=True)) == _decoded(expected)
    # What changes is seen; what is kept is used only while the record holds it.
    busy.state.status = Status.EXITED
    busy.state.exit_code = 137
    busy.state.network = NetworkSettings()
    plain.config = attrs.evolve(plain.config, labels=("new=1",))
    message = _decoded(answers.frame(found, [], brief=True))
    assert isinstance(message, dict)
    first, second = message["briefs"]
    assert (first["status"], first["exit_code"], first["ports"], first["networks"]) == (
        "exited",
        137,
        [],
        [],
    )
    assert second["labels"] == ["new=1"] and message["containers"] == []
    assert _decoded(answers.frame(found, [], brief=True)) == message  # nothing changed
    plain.name = "renamed"
    plain.state.finished_at = 9.5
    again = _decoded(answers.frame(found, [], brief=True))
    assert isinstance(again, dict)
    assert (again["briefs"][1]["name"], again["briefs"][1]["finished_at"]) == ("renamed", 9.5)
    assert again["briefs"][0] == first


def test_network_volume_port_and_task_filters() -> None:
    """Docker's ``network`` (a network it is on, running or not), ``volume`` (a volume's
    name, a bind's host path or a destination), ``publish`` (a running container's host
    port), ``expose`` (an exposed port, published ones too) and ``is-task``."""
    web = Container(
        id=new_id(),
        name="web",
        created_at=1.0,
        config=ContainerConfig(
            image="default",
            command=("true",),
            network="n1",
            volumes=(
                Volume(host="/srv/volumes/v1/_data", container="/data", volume="v1"),
                Volume(host="/tmp/x", container="/bind"),
            ),
            ports=(PortSpec(80, host_port=8080),),
            expose=("9000/tcp",),
        ),
    )
    other = Container(
        id=new_id(),
        name="other",
        created_at=2.0,
        config=ContainerConfig(
            image="default",
            command=("true",),
            networks=(NetworkJoin("n2"), NetworkJoin("bridge")),
            exposed_ports=("53/udp",),
        ),
    )
    plain = Container(
        id=new_id(),
        name="plain",
        created_at=3.0,
        config=ContainerConfig(image="default", command=("true",)),
    )

    def shown(key: str, *values: str) -> list[str]:
        keep = container_filter({key: list(values)})
        return [c.name for c in (web, other, plain) if keep(c)]

    assert shown("network", "n1") == ["web"]
    assert shown("network", "bridge") == ["other", "plain"]
    assert shown("network", "n1", "n2") == ["web", "other"]
    assert shown("network", "nope") == []
    for value in ("v1", "/data", "/tmp/x", "/bind"):
        assert shown("volume", value) == ["web"]
    assert shown("volume", "/srv/volumes/v1/_data") == []  # a volume is named by its name
    # publish and expose (moby's list: a published port is a running container's host
    # port, see test_cli_listing): a created container's exposed ports.
    assert shown("publish", "8080") == shown("publish", "80") == []
    assert shown("expose", "9000") == shown("expose", "8990-9010/tcp") == ["web"]
    assert shown("expose", "53/udp") == shown("expose", "1-100/udp") == ["other"]
    assert shown("is-task", "false") == ["web", "other", "plain"]
    assert shown("is-task", "true") == []
    for key, value, words in (
        ("publish", "8080:80", "invalid filter 'publish=8080:80'"),
        ("expose", "http", "invalid filter 'expose=http'"),
        ("publish", "80/sctp", "invalid filter 'publish=80/sctp'"),
        ("is-task", "maybe", "invalid filter 'is-task=maybe'"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            container_filter({key: [value]})


def test_name_and_id_filters_are_regular_expressions() -> None:
    """As Docker's: ``name`` and ``id`` match exactly or as a regular expression searched
    for, the name with and without its leading ``/`` (``name=^web$`` is the usual way to
    ask for one name, ``^/web$`` the older one); an invalid expression matches nothing."""
    made = [
        Container(
            id=cid * 64,
            name=name,
            created_at=1.0,
            config=ContainerConfig(image="default", command=("true",)),
        )
        for cid, name in (("a", "web"), ("b", "web2"), ("c", "myweb"))
    ]

    def shown(key: str, value: str) -> list[str]:
        keep = container_filter({key: [value]})
        return [c.name for c in made if keep(c)]

    assert shown("name", "web") == ["web", "web2", "myweb"]
    assert shown("name", "^web$") == shown("name", "^/web$") == ["web"]
    assert shown("name", "/web") == ["web", "web2"]  # searched for in "/web", "/myweb"
    assert shown("name", "w.b2") == ["web2"]
    assert shown("name", "web[") == []
    assert shown("id", "aaaa") == shown("id", "^a+$") == ["web"]
    assert shown("id", "b" * 64) == ["web2"]

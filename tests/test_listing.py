"""The container list: the ListResponse frame built from kept configurations, and the
status words boxctl shares with the daemon (no root needed)."""

from __future__ import annotations

import attrs

from boxd import protocol
from boxd._dockerwords import STATUSES, WORDS
from boxd._listing import ContainerBrief, ListAnswers
from boxd._messages import ListResponse, dump
from boxd._netconfig import Endpoint, NetworkSettings, PortBinding
from boxd._records import Container, ContainerConfig, Resources, Status, Volume, new_id


def _decoded(frame: bytes) -> object:
    decoder = protocol.FrameDecoder()
    decoder.feed(frame)
    message = decoder.next()
    assert message is not None and decoder.pending == 0
    return message


def _expected(found: list[Container], sizes: tuple[int, ...] = ()) -> object:
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
    assert _decoded(answers.frame(found, [10, 0])) == _expected(found, (10, 0))


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
    expected = protocol.encode(dump(ListResponse(containers=(), briefs=briefs, sizes=(7, 0))))
    assert _decoded(answers.frame(found, [7, 0], brief=True)) == _decoded(expected)
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

"""Which containers a list shows: Docker's filters (``docker ps --filter``), ``--all`` and
``--last``, over the supervisor's records.  Trio-free and without Docker's JSON: the native
socket's ``ListRequest`` and the Engine API's ``GET /containers/json`` both use it.  Also
the native socket's ``ListResponse`` frame (:class:`ListAnswers`) and what ``ps`` asks for
in it (:class:`ContainerBrief`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import attrs

from . import _wirejson, protocol
from ._convert import unstructure
from ._dockerwords import STATUSES, WORDS, shown_phase
from ._healthcheck import HEALTH_FILTERS, NONE
from ._images.config import is_default
from ._images.reference import parse_reference
from ._lifecycle import NoSuchContainer
from ._mounts import clean_path
from ._netconfig import NetworkSettings, PortBinding
from ._portspecs import parse_expose
from ._records import Container, ContainerConfig

_MATCHED = (
    *("id", "name", "label", "status", "ancestor", "exited", "health"),
    *("network", "volume", "is-task"),
)
_PORTS = ("publish", "expose")


def status_word(c: Container) -> str:
    st = c.state
    return WORDS[shown_phase(st.status.value, st.started_at is not None, st.restart_count)]


def labels(c: Container) -> dict[str, str]:
    return dict(label.partition("=")[::2] for label in c.config.labels)


def container_filter(
    filters: dict[str, list[str]], every: Iterable[Container] = ()
) -> Callable[[Container], bool]:
    """A predicate for the container list (``before`` and ``since`` name one of ``every``);
    a key or value boxd does not know is refused (ValueError)."""
    for key, values in filters.items():
        if key not in (*_MATCHED, *_PORTS, "before", "since"):
            raise ValueError(f"invalid filter '{key}'")
        for v in values:
            if key == "status" and v not in STATUSES:
                raise ValueError(f"invalid filter 'status={v}'")
            if key == "exited" and not v.lstrip("-").isdigit():
                raise ValueError(f"invalid filter 'exited={v}'")
            if key == "health" and v not in HEALTH_FILTERS:
                raise ValueError(
                    f"invalid filter 'health={v}': use starting, healthy, unhealthy or none"
                )
            if key == "is-task" and v not in ("true", "false"):
                raise ValueError(f"invalid filter 'is-task={v}': use true or false")
    # Docker's: a publish (host) or an expose (container) port of the list, any one.
    publish = {k for v in filters.get("publish", []) for k in _port_keys("publish", v)}
    expose = {k for v in filters.get("expose", []) for k in _port_keys("expose", v)}
    every = list(every)
    before = [_created(every, ref) for ref in filters.get("before", [])]
    since = [_created(every, ref) for ref in filters.get("since", [])]

    def keep(c: Container) -> bool:
        if any(c.created_at >= t for t in before) or any(c.created_at <= t for t in since):
            return False
        if (publish or expose) and not (publish & _published(c) or expose & _exposed(c)):
            return False
        return all(_matches(c, k, vs) for k, vs in filters.items() if vs and k in _MATCHED)

    return keep


def _port_keys(key: str, value: str) -> tuple[str, ...]:
    """A publish or expose filter's ports, ``80``, ``80/udp`` or ``8000-8010/tcp``, as
    ``PORT/PROTO`` keys."""
    try:
        if ":" in value:
            raise ValueError("a port or a range, without ':'")
        return parse_expose(value)
    except ValueError as exc:
        raise ValueError(f"invalid filter '{key}={value}': {exc}") from None


def _published(c: Container) -> set[str]:
    return {f"{b.host_port}/{b.protocol}" for b in c.state.network.ports}


def _exposed(c: Container) -> set[str]:
    keys = {f"{b.container_port}/{b.protocol}" for b in c.state.network.ports}
    keys.update(c.config.exposed_ports)
    keys.update(k for spec in c.config.expose for k in parse_expose(spec))
    return keys


def _created(every: list[Container], ref: str) -> float:
    for c in every:
        if ref in (c.id, c.name, "/" + c.name) or (len(ref) >= 3 and c.id.startswith(ref)):
            return c.created_at
    raise NoSuchContainer(ref)


def select_containers(
    listing: Callable[..., list[Container]], filters: dict[str, list[str]], *, all: bool, limit: int
) -> list[Container]:
    """What ``docker ps`` shows, from the supervisor's ``listing`` (newest first): through
    the filters, every container if ``all``, a ``limit`` or a status filter asks for them
    (as dockerd does: an exited filter does not, so without ``all`` it finds none), else
    the running ones; the newest ``limit`` of them."""
    keep = container_filter(filters, listing(all=True))
    everything = all or limit > 0 or bool(filters.get("status"))
    found = [c for c in listing(all=everything) if keep(c)]
    return found[:limit] if limit > 0 else found


def _matches(c: Container, key: str, values: list[str]) -> bool:
    if key == "id":
        return any(docker_match(v, c.id) for v in values)
    if key == "name":
        return any(docker_match(v, c.name) or docker_match(v, "/" + c.name) for v in values)
    if key == "label":
        return all(_has_label(c, v) for v in values)
    if key == "status":
        return status_word(c) in values
    if key == "ancestor":  # a name, or an image's id (the names' and their children's added)
        return any(same_image(v, c.config.image) or v == c.config.image_id for v in values)
    if key == "health":
        return (c.state.health.status if c.state.health is not None else NONE) in values
    if key == "network":  # a name (Docker: or an id's prefix) of a network it is on
        joined = {c.config.network, *(j.network for j in c.config.networks or ())}
        joined.update(e.network for e in c.state.network.endpoints)
        return any(v in joined for v in values)
    if key == "volume":  # a volume's name, a bind's source, or where either is mounted
        names = {v.volume for v in c.config.volumes if v.volume}
        paths = {v.container for v in c.config.volumes}
        paths |= {v.host for v in c.config.volumes if v.host and not v.volume}
        return any(v in names | paths | {clean_path(p) for p in paths} for v in values)
    if key == "is-task":  # no container of boxd is a swarm service's task
        return "false" in values
    return status_word(c) == "exited" and str(c.state.exit_code or 0) in values


def docker_match(wanted: str, value: str) -> bool:
    """Docker's match of a filter's value (``name=``): the same, or a regular expression
    found in it (one that does not compile matches nothing)."""
    if wanted == value:
        return True
    try:
        return re.search(wanted, value) is not None
    except re.error:
        return False


def same_image(wanted: str, image: str) -> bool:
    """Whether the reference ``wanted`` names a container's ``image`` (Docker's
    ``ancestor`` filter)."""
    if image == "default":
        return is_default(wanted)
    try:
        return str(parse_reference(wanted)) == str(parse_reference(image))
    except ValueError:
        return False


def _has_label(c: Container, wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    have = labels(c)
    return key in have and (not eq or have[key] == value)


@attrs.frozen
class ContainerBrief:
    """What ``boxctl ps`` shows of a container (``ListRequest.brief``): a fifth of its
    record's JSON, and as much less to encode, send and decode (100 containers: ~130 KB
    of whole records).  Named after the record's fields."""

    id: str
    name: str
    created_at: float
    status: str  # state.status (a start's: the phase before it, see shown_phase)
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    oom_killed: bool
    image: str  # config.image ...
    command: tuple[str, ...]
    labels: tuple[str, ...]
    exposed: tuple[str, ...]  # config.exposed_ports, then config.expose
    network: str
    volumes: tuple[str, ...]  # each volume's name, a bind's host path (ps's Mounts)
    ports: tuple[PortBinding, ...]  # state.network.ports: the published ones
    networks: tuple[str, ...]  # state.network.endpoints, then config.networks' others
    health: str = ""  # state.health's status, "" without one


class ListAnswers:
    """``ListResponse`` frames, each container's configuration (four fifths of a record's
    JSON and of the time to unstructure and encode it) encoded once.  A configuration is
    frozen: a container whose configuration changes (``update``) holds a new object, so a
    copy is used only while the record holds the very object it was encoded from.  Kept
    for the containers of the last list only.  The JSON is the message's (keys in another
    order).  A brief is kept the same way, while its configuration and (frozen) network
    settings are the record's and the state's values it shows are equal."""

    def __init__(self) -> None:
        self._configs: dict[str, tuple[ContainerConfig, str]] = {}
        # Per container: the configuration and network settings, the JSON from them, the
        # state's values and the whole brief's JSON.
        self._briefs: dict[
            str, tuple[ContainerConfig, NetworkSettings, str, tuple[object, ...], str]
        ] = {}

    def frame(
        self, found: Sequence[Container], sizes: Sequence[tuple[int, int]], *, brief: bool = False
    ) -> bytes:
        containers = briefs = ""
        if brief:
            briefs = ",".join(self._brief_parts(found))
        else:
            containers = ",".join(self._parts(found))
        payload = (
            '{"type":"ListResponse","containers":['
            + containers
            + '],"briefs":['
            + briefs
            + '],"sizes":'
            + _wirejson.dumps([list(s) for s in sizes])
            + "}"
        )
        return protocol.frame(payload.encode())

    def _parts(self, found: Sequence[Container]) -> list[str]:
        kept, self._configs = self._configs, {}
        parts = []
        for c in found:
            config = kept.get(c.id)
            if config is None or config[0] is not c.config:
                config = (c.config, _wirejson.dumps(unstructure(c.config)))
            self._configs[c.id] = config
            rest = {name: unstructure(getattr(c, name)) for name in _FIELDS}
            parts.append('{"config":' + config[1] + "," + _wirejson.dumps(rest)[1:])
        return parts

    def _brief_parts(self, found: Sequence[Container]) -> list[str]:
        kept, self._briefs = self._briefs, {}
        parts = []
        for c in found:
            st = c.state
            now = (
                c.name,
                shown_phase(st.status.value, st.started_at is not None, st.restart_count),
                st.started_at,
                st.finished_at,
                st.exit_code,
                st.oom_killed,
                st.health.status if st.health is not None else "",
            )
            brief = kept.get(c.id)
            if brief is None or brief[0] is not c.config or brief[1] is not st.network:
                brief = (c.config, st.network, _fixed_brief(c.config, st.network), (), "")
            if brief[3] != now:  # what the state holds changed since the last list
                name, status, started_at, finished_at, exit_code, oom_killed, health = now
                changing = {
                    "id": c.id,
                    "name": name,
                    "created_at": c.created_at,
                    "status": status,
                    "started_at": started_at,
                    "finished_at": finished_at,
                    "exit_code": exit_code,
                    "oom_killed": oom_killed,
                    "health": health,
                }
                part = _wirejson.dumps(changing)[:-1] + "," + brief[2]
                brief = (*brief[:3], now, part)
            self._briefs[c.id] = brief
            parts.append(brief[4])
        return parts


def _fixed_brief(config: ContainerConfig, network: NetworkSettings) -> str:
    """The end of a brief's JSON (from ``,"image"`` on): what changes only with the
    configuration or the network settings."""
    return _wirejson.dumps(
        {
            "image": config.image,
            "command": config.command,
            "labels": config.labels,
            "exposed": (*config.exposed_ports, *config.expose),
            "network": config.network,
            "volumes": [v.volume or v.host for v in config.volumes],
            "ports": unstructure(network.ports),
            # The networks it is on, then those it joins at its next start (Docker's ps
            # lists a stopped container's networks too).
            "networks": list(
                dict.fromkeys(
                    [*(e.network for e in network.endpoints)]
                    + [j.network for j in config.networks or ()]
                )
            ),
        }
    )[1:]


_FIELDS = tuple([f.name for f in attrs.fields(Container) if f.name != "config"])

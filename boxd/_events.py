"""Events, as Docker reports them, of containers, networks, volumes and images.

* Containers: create, start, die (with exitCode), pause, unpause and destroy are changes
  of phase; kill (with signal), stop, restart, rename, update, attach, commit and
  exec_create, exec_start, exec_die (with execID, exitCode) are reported by the
  supervisor's verbs; oom by the supervisor as the OOM killer kills in the container
  (or before die, when its run's end found a kill not reported); health_status: STATUS
  by the health checks (boxd._health).
* Networks: connect and disconnect as a container's endpoints come and go (at its start
  and end, and ``network connect``/``disconnect`` while it runs; ``host`` and ``none``
  too), create and destroy by the network verbs.
* Volumes: mount and unmount of a container's volumes at its start and end, create and
  destroy by the volume store (boxd._volumes).
* Images: pull, push, tag, untag, delete, load, import and save by the image verbs.

The supervisor hands every container record it saves to :meth:`Events.observe` and every
removal to :meth:`Events.removed`; the container's events are the changes between two
saves.  Subscribers get the events from the moment they subscribe (a bounded buffer each:
a reader that falls behind misses the events that find its buffer full, and its stream goes
on, as Docker's publisher drops them; never the supervisor slowed); the last :data:`HISTORY`
events are kept for ``since``: 256, as Docker's daemon keeps.  Each event holds its
actor's attributes (a container's name, image and labels), so a longer history kept those
of long-removed containers alive (~0.2 MB at 1024), scattered through memory that a burst
of starts had filled.

:func:`message` is an event in Docker's JSON shape and :func:`event_filter` Docker's
filters of them: the Engine API's ``/events`` and ``boxctl events`` both send them so.
"""

from __future__ import annotations

import collections
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from ._images.reference import parse_reference
from ._listing import same_image
from ._records import Container

HISTORY = 256
SUBSCRIBER_BUFFER = 1024  # Docker's (daemon/events)
_ENDED = ("exited", "stopped", "restarting")
_WITH_PROCESS = ("running", "paused", "stopping")
TYPES = ("container", "image", "network", "volume", "daemon", "builder")
# Docker's other types: accepted in a filter, no event of boxd has them.
_OTHER_TYPES = ("plugin", "node", "service", "secret", "config")
FILTERS = ("container", "event", "image", "label", "network", "scope", "type", "volume")
# An event filter of these names matches the action's first word too (Docker's rule).
_PREFIXED = ("health_status", "exec_create", "exec_start")


@attrs.frozen
class Event:
    time_ns: int
    type: str  # one of TYPES
    action: str
    id: str  # the actor's: a container's, image's or network's id, a volume's name
    attributes: tuple[tuple[str, str], ...] = ()  # the actor's, as Docker gives them

    def attribute(self, key: str) -> str:
        return next((v for k, v in self.attributes if k == key), "")


def message(e: Event) -> dict[str, Any]:
    """The event in Docker's JSON shape: a container's and an image's with the fields
    older clients read (``status``, ``id``, ``from``), its attributes sorted as Go
    writes a map."""
    attributes = dict(sorted(e.attributes))
    old: dict[str, Any] = {}
    if e.type == "container":
        old = {"status": e.action, "id": e.id, "from": attributes.get("image", "")}
    elif e.type == "image":
        old = {"status": e.action, "id": e.id}
    return {
        **old,
        "Type": e.type,
        "Action": e.action,
        "Actor": {"ID": e.id, "Attributes": attributes},
        "scope": "local",
        "time": e.time_ns // 1_000_000_000,
        "timeNano": e.time_ns,
    }


def event_filter(filters: Mapping[str, Sequence[str]]) -> Callable[[Event], bool]:
    """Docker's event filters: the same key ORs its values, different keys AND.  An
    unknown key, or a type Docker does not have, is refused naming it (ValueError)."""
    for key, values in filters.items():
        if key not in FILTERS:
            raise ValueError(f"invalid filter '{key}' (use {', '.join(FILTERS)})")
        for v in values:
            if key == "type" and v not in (*TYPES, *_OTHER_TYPES):
                raise ValueError(f"invalid filter 'type={v}' (use {', '.join(TYPES)})")
    wanted = {k: list(vs) for k, vs in filters.items() if vs}
    return lambda e: all(_matches(e, key, values) for key, values in wanted.items())


def _matches(e: Event, key: str, values: list[str]) -> bool:
    if key == "type":
        return e.type in values
    if key == "scope":
        return "local" in values
    if key == "event":
        if any(v in _PREFIXED for v in values):
            return any(e.action.startswith(v) for v in values)
        return e.action in values
    if key == "label":  # every one, against the actor's attributes
        have = dict(e.attributes)
        return all(
            k in have and (not eq or have[k] == v)
            for k, eq, v in (w.partition("=") for w in values)
        )
    if key == "image":  # a container's image, an image's id or name, or its repository
        named = e.attribute("name" if e.type == "image" else "image")
        found = [e.id, named, _repository(e.id), _repository(named)]
        return any(v in found or same_image(v, named) for v in values if v)
    # container, network, volume: the start of the actor's id or name, whatever its type
    # (Docker's FuzzyMatch), so that an actor of another type is left out.
    name = e.attribute("name")
    return any(e.id.startswith(v) or (name and name.startswith(v.lstrip("/"))) for v in values)


def _repository(name: str) -> str:
    """A reference without its tag or digest, as Docker shows it (``busybox``)."""
    try:
        return parse_reference(name, default_tag=False).familiar_name
    except ValueError:
        return name


class Events:
    def __init__(self, network_ids: Callable[[str], tuple[str, str]] | None = None) -> None:
        """``network_ids``: a network's id and driver by its name (``("", "bridge")``
        when not given)."""
        self._phase: dict[str, str] = {}
        self._attached: dict[str, frozenset[str]] = {}  # a container's networks, by id
        self._oom_reported: set[str] = set()  # containers whose run has had an oom event
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self._network_ids = network_ids or (lambda name: ("", "bridge"))

    def subscribe(self) -> tuple[list[Event], trio.MemoryReceiveChannel[Event]]:
        """The events kept so far, and a channel of those to come.

        The channels of streams that have ended (their receiving side closed) are
        forgotten here too, not only at the next event: a quiet daemon polled for its
        events (``docker events --since 1m --until 0s`` every few seconds, a monitor's
        ``GET /events`` given up) held every poller's channel until something happened."""
        self._subscribers = {s for s in self._subscribers if s.statistics().open_receive_channels}
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        return list(self._history), receive

    @property
    def listeners(self) -> int:
        """The event streams open now (``/info``'s NEventsListener)."""
        return sum(1 for s in self._subscribers if s.statistics().open_receive_channels)

    def known(self, c: Container) -> None:
        """A container found as its record says (at a daemon's start): its phase and
        networks are where the next save's changes begin, nothing reported (an adopted
        container did not start again)."""
        self._phase[c.id] = c.state.status.value
        self._attached[c.id] = _networks_of(c)

    def observe(self, c: Container) -> None:
        """A container's record was saved: report its change of phase, and the networks
        and volumes its start or end joined or left (in Docker's order: the networks'
        connect and the volumes' mount before ``start``; ``die`` before the networks'
        disconnect and the volumes' unmount)."""
        phase = c.state.status.value
        before = self._phase.get(c.id)
        self._phase[c.id] = phase
        attached = _networks_of(c)
        # A container first seen (a new one) was where it is: nothing joined.
        was = self._attached.get(c.id, attached if before is None else frozenset())
        self._attached[c.id] = attached
        for name in sorted(attached - was):
            self._network_event("connect", name, container=c.id)
        if phase != before:
            self._phase_changed(c, before, phase)
        for name in sorted(was - attached):
            self._network_event("disconnect", name, container=c.id)
        if phase in _ENDED and before in _WITH_PROCESS:
            for v in (v for v in c.config.volumes if v.volume):
                self.volume("unmount", v.volume, container=c.id)

    def _phase_changed(self, c: Container, before: str | None, phase: str) -> None:
        """The events of a change of phase, its volumes' mount first at a start."""
        if before is not None and before not in _WITH_PROCESS and phase in _WITH_PROCESS:
            for v in (v for v in c.config.volumes if v.volume):
                self.volume(
                    "mount",
                    v.volume,
                    container=c.id,
                    destination=v.container,
                    propagation="",
                    **{"read/write": str(not v.read_only).lower()},
                )
        if phase == "created" and before is None:
            self._container_event("create", c)
        elif phase == "running":
            self._container_event("unpause" if before == "paused" else "start", c)
        elif phase == "paused":
            self._container_event("pause", c)
        elif phase in _ENDED and before in _WITH_PROCESS:
            if c.state.oom_killed and c.id not in self._oom_reported:
                self._container_event("oom", c)
            self._oom_reported.discard(c.id)
            self._container_event("die", c, exitCode=str(c.state.exit_code or 0))

    def report(self, action: str, c: Container, **attributes: str) -> None:
        """A container's event that is no change of phase: kill, stop, rename, ..."""
        if action == "oom":
            self._oom_reported.add(c.id)
        self._container_event(action, c, **attributes)

    def removed(self, c: Container) -> None:
        self._phase.pop(c.id, None)
        self._attached.pop(c.id, None)
        self._oom_reported.discard(c.id)
        self._container_event("destroy", c)

    def network(self, action: str, net_id: str, name: str, driver: str = "bridge") -> None:
        """A network's create or destroy."""
        self._emit("network", action, net_id, {"name": name, "type": driver})

    def volume(self, action: str, name: str, **attributes: str) -> None:
        """A volume's create, destroy, mount or unmount (boxd's one driver: local)."""
        self._emit("volume", action, name, {"driver": "local", **attributes})

    def image(
        self, action: str, actor: str, name: str, labels: Mapping[str, str] | None = None
    ) -> None:
        """An image's event: ``actor`` its id (a reference for pull and push, as Docker
        names them), ``name`` the reference it concerns (or the id), with its labels."""
        self._emit("image", action, actor, {**(labels or {}), "name": name})

    def pruned(self, kind: str, reclaimed: int) -> None:
        """A prune's end, as dockerd's (since Docker 23): of ``kind`` (container, image,
        network, volume or builder), no actor, the bytes it freed."""
        self._emit(kind, "prune", "", {"reclaimed": str(reclaimed)})

    def daemon(self, action: str, daemon_id: str, attributes: Mapping[str, str]) -> None:
        """The daemon's own event (a reload), with the host's name as dockerd's."""
        self._emit("daemon", action, daemon_id, {**attributes, "name": platform.node()})

    def _container_event(self, action: str, c: Container, **attributes: str) -> None:
        # Docker's precedence: the labels over the action's attributes, the container's
        # image and name over both.
        found = dict(attributes)
        found.update(label.partition("=")[::2] for label in c.config.labels)
        found.update(image=c.config.image, name=c.name)
        self._emit("container", action, c.id, found)

    def _network_event(self, action: str, name: str, **attributes: str) -> None:
        net_id, driver = self._network_ids(name)
        self._emit("network", action, net_id, {**attributes, "name": name, "type": driver})

    def _emit(self, kind: str, action: str, actor: str, attributes: dict[str, str]) -> None:
        event = Event(time.time_ns(), kind, action, actor, tuple(attributes.items()))
        self._history.append(event)
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                pass  # a reader SUBSCRIBER_BUFFER events behind: this one is not for it
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()


def _networks_of(c: Container) -> frozenset[str]:
    """The networks the container has an endpoint on now: those its running record lists,
    or ``host``/``none`` while its process runs there."""
    names = {e.network for e in c.state.network.endpoints}
    if c.config.network in ("host", "none") and c.state.status.value in _WITH_PROCESS:
        names.add(c.config.network)
    return frozenset(names)

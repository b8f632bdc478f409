"""The message catalogue of the boxd protocol (framing is in :mod:`boxd.protocol`).

Each message is an ``attrs`` class; on the wire it is a JSON object whose ``"type"`` is the
class name.  Requests are parsed strictly: an unknown type, an unknown field, a missing
field or a value of the wrong type is refused with a message naming it.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._convert import ConversionError, structure, unstructure
from ._listing import ContainerBrief
from ._native import check_console_size
from ._records import Container, ContainerConfig

# ---- requests -------------------------------------------------------------------------


def _console_size(_: object, __: object, value: tuple[int, int] | None) -> None:
    if value is not None:
        check_console_size(value)


@attrs.frozen
class VersionRequest:
    pass


@attrs.frozen
class InfoRequest:
    pass


@attrs.frozen
class CreateRequest:
    config: ContainerConfig
    name: str = ""


@attrs.frozen
class StartRequest:
    container: str
    # Stream the container's output (and take stdin if ``stdin``) on this connection,
    # ending with an ExitFrame: the foreground ``boxctl run`` and ``start -a``.
    attach: bool = False
    stdin: bool = False
    # False: the client's input is not a terminal, so taking it into a container's TTY is
    # refused before anything starts (Docker's "the input device is not a TTY").
    input_tty: bool = True
    # The client's terminal, (rows, columns): a TTY container's terminal has it from the
    # start (else the size given at create, else 24x80 until the first ResizeFrame).
    console_size: tuple[int, int] | None = attrs.field(default=None, validator=_console_size)


@attrs.frozen
class RunRequest:
    """Create and start in one round trip (``boxctl run``), answered with a CreateResponse
    once the process runs; with ``attach`` the conversation goes on as for StartRequest
    with attach.  A container with ``auto_remove`` is removed if it cannot start, and
    before its ExitFrame is sent when it ends."""

    config: ContainerConfig
    name: str = ""
    attach: bool = False
    stdin: bool = False


@attrs.frozen
class AttachRequest:
    container: str
    stdin: bool = True
    input_tty: bool = True  # as StartRequest's


@attrs.frozen
class StopRequest:
    container: str
    timeout: float | None = None  # None: the container's stop timeout
    signal: str | None = None  # None: the container's stop signal


@attrs.frozen
class RestartRequest:
    container: str
    timeout: float | None = None
    signal: str | None = None


@attrs.frozen
class KillRequest:
    container: str
    signal: str = "SIGKILL"


@attrs.frozen
class RemoveRequest:
    container: str  # with ``link``: the link NAME/ALIAS (a leading or trailing / aside)
    force: bool = False
    volumes: bool = False  # its anonymous volumes too (rm -v)
    link: bool = False  # the link, not the container (rm --link)


@attrs.frozen
class PauseRequest:
    container: str


@attrs.frozen
class UnpauseRequest:
    container: str


@attrs.frozen
class ListRequest:
    all: bool = False
    filters: tuple[str, ...] = ()  # KEY=VALUE, as ``ps --filter`` takes them
    limit: int = 0  # the newest N (``ps -n``), stopped ones included
    size: bool = False  # also each one's sizes, in ``sizes`` (``ps -s``: Supervisor.sizes)
    brief: bool = False  # each container as a ContainerBrief, in ``briefs``


@attrs.frozen
class InspectRequest:
    container: str
    size: bool = False  # also its sizes (``inspect -s``: Supervisor.sizes)


@attrs.frozen
class WaitRequest:
    container: str


@attrs.frozen
class LogsRequest:
    container: str
    tail: int | None = None
    since: float | None = None
    follow: bool = False
    timestamps: bool = False
    until: float | None = None  # records up to this time; a follow ends there
    details: bool = False  # each line after its log attributes and a space


@attrs.frozen
class ExecRequest:
    container: str
    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    tty: bool = False
    interactive: bool = False
    privileged: bool = False
    # Answered with an OkResponse once the process runs; no stream, the output is dropped.
    detach: bool = False
    # With tty: the terminal's size from the start, (rows, columns); None: 24x80 until
    # the first ResizeFrame.
    console_size: tuple[int, int] | None = attrs.field(default=None, validator=_console_size)


# ---- client frames during a stream ----------------------------------------------------


@attrs.frozen
class ResizeFrame:
    rows: int
    cols: int


@attrs.frozen
class SignalFrame:
    signal: str


@attrs.frozen
class DetachFrame:
    pass


# ---- responses and daemon frames ------------------------------------------------------


@attrs.frozen
class ErrorResponse:
    message: str
    # "invalid" (bad request), "not_found", "conflict", "failed" (the runtime could not do
    # it), "exec_not_found" / "exec_denied" (an exec or a run that could not start: 127 / 126).
    kind: str = "invalid"


@attrs.frozen
class OkResponse:
    pass


@attrs.frozen
class AttachResponse:
    """The answer to an attaching StartRequest and to an AttachRequest: how to drive the
    stream that follows, so that the client needs no InspectRequest first."""

    tty: bool
    stdin: bool  # input is taken: it was asked for and the container is interactive


@attrs.frozen
class VersionResponse:
    version: str
    api: int


@attrs.frozen
class InfoResponse:
    version: str
    root: str
    cgroup_mode: str
    containers: int
    running: int
    procview: str
    paused: int = 0
    stopped: int = 0
    docker_socket: str = ""  # where it serves the Docker Engine API ("": it does not)


@attrs.frozen
class CreateResponse:
    id: str
    name: str
    warnings: tuple[str, ...] = ()  # options this host ignores (see Supervisor.limit_warnings)


@attrs.frozen
class ListResponse:
    containers: tuple[Container, ...]  # empty with ``brief``
    briefs: tuple[ContainerBrief, ...] = ()  # with ``brief``, instead of the records
    # With ``size``: each one's (SizeRw, SizeRootFs), as Supervisor.sizes gives them.
    sizes: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class InspectResponse:
    container: Container
    log_path: str = ""  # Docker's LogPath: the json-file driver's file
    # Docker's ResolvConfPath, HostnamePath, HostsPath (see Supervisor.etc_paths)
    etc_paths: tuple[str, str, str] = ("", "", "")
    graph_driver: dict[str, str] | None = None  # (see Supervisor.graph_driver)
    size_rw: int | None = None  # Docker's SizeRw and SizeRootFs, when asked
    size_root_fs: int | None = None


@attrs.frozen
class DockerShapeResponse:
    """An object as the docker CLI's ``inspect`` prints it (the Engine API's JSON), made by
    the daemon, where the Engine API's code is (``boxctl inspect``: a DockerInspectRequest
    or DockerNetworkInspectRequest)."""

    shaped: dict[str, Any]


@attrs.frozen
class WaitResponse:
    exit_code: int


@attrs.frozen
class ExitFrame:
    exit_code: int


@attrs.frozen
class EndFrame:
    pass


REQUESTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        VersionRequest,
        InfoRequest,
        CreateRequest,
        StartRequest,
        RunRequest,
        AttachRequest,
        StopRequest,
        RestartRequest,
        KillRequest,
        RemoveRequest,
        PauseRequest,
        UnpauseRequest,
        ListRequest,
        InspectRequest,
        WaitRequest,
        LogsRequest,
        ExecRequest,
    )
}  # and those of the verbs in boxd._verbareas, added by the server as it loads them
CLIENT_FRAMES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (ResizeFrame, SignalFrame, DetachFrame)
}


def parse(message: dict[str, Any], catalogue: dict[str, type[Any]]) -> Any:
    """A typed message from a decoded JSON object, or ConversionError naming the problem."""
    fields = dict(message)
    kind = fields.pop("type")
    cls = catalogue.get(kind)
    if cls is None:
        raise ConversionError(f"unknown message type {kind!r}")
    try:
        return structure(fields, cls)
    except ConversionError as exc:
        if exc.refused:  # already in the words of whoever sent the value
            raise
        raise ConversionError(f"{kind}: {exc}") from None


def dump(message: object) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(message).__name__}
    data.update(unstructure(message))
    return data

"""Containers: create, list, inspect, the lifecycle verbs, wait, logs, update, stats, top,
changes, export, prune."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from typing import Any

import attrs
import trio

from .. import _lifecycle, _listing, _logattrs, _logs, _platforms, _prune, protocol
from .. import _mounts as mount_specs
from .._images.config import is_default
from .._images.store import NoSuchImage
from .._netconfig import SYSCTLS_OPT, sysctl_interface
from .._network import NetworkError, builtin_network_id
from .._records import Container, Status
from .._supervisor import Conflict, NoSuchContainer, Supervisor
from . import _shapes
from ._api import Api, Streamed, api_error, frame, mem_total, unwrap
from ._http import (
    API_VERSION,
    MULTIPLEXED,
    RAW_STREAM,
    ApiError,
    HttpConnection,
    Request,
    version_tuple,
)
from ._router import CONTAINER, route
from ._shapes import Fields

STATS_INTERVAL = 1.0


def _make_labelled(api: Api, body: object) -> None:
    """Container create: a named volume of ``HostConfig.Mounts`` with
    ``VolumeOptions.Labels`` or ``DriverConfig.Options`` is made with them (when it is
    new), as Docker does."""
    host = Fields(body, "body").object("HostConfig")
    for mount in host.objects("Mounts"):
        volume = mount.object("VolumeOptions")
        labels = volume.mapping("Labels")
        options = volume.object("DriverConfig").mapping("Options")
        name = mount.text("Source")
        if (labels or options) and name and (mount.text("Type") or "volume") == "volume":
            api.sup.volumes.create(name, labels=labels, options=options)


def _make_mountpoints(req: Request, body: object) -> list[str]:
    """A bind's missing source directory is made on the host (mode 0755), as Docker's
    daemon makes it: always for ``Binds`` (``docker run -v /host/path:/path``), for a bind
    of ``Mounts`` with API 1.42's ``BindOptions.CreateMountpoint`` (else it is refused as
    missing). Nothing is made unless every ``Binds`` entry reads; the directories made, in
    the order made (for a create refused after, to take away: Docker makes them at the
    start)."""
    host = Fields(body, "body").object("HostConfig")
    sources = []
    for spec in host.strings("Binds"):
        try:
            sources.append(str(mount_specs.parse_bind(spec)["host"]))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    if req.at_least("1.42"):
        for mount in host.objects("Mounts"):
            wanted = mount.object("BindOptions").flag("CreateMountpoint")
            if wanted and mount.text("Type") == "bind":
                sources.append(mount.text("Source"))
    made: list[str] = []
    for source in sources:
        missing = []
        path = os.path.normpath(source)
        while source.startswith("/") and not os.path.lexists(path):  # a file, a socket: bound
            missing.append(path)
            path = os.path.dirname(path)
        if missing:
            os.makedirs(source, mode=0o755, exist_ok=True)
            made += reversed(missing)
    return made


def _check_versions(req: Request, body: object) -> None:
    """What a client older than a field's API version may not send, refused in moby's
    router's words (a client of that age would see it silently ignored), or, where moby
    ignores it, taken out: several networks at create before API 1.44, a volume's
    Subpath before 1.45, an image mount before 1.48; an endpoint's GwPriority before 1.48
    (all endpoints had the same); and from 1.48 an interface's sysctl of the container's."""
    fields = Fields(body, "body")
    endpoints = fields.object("NetworkingConfig").object("EndpointsConfig")
    if not req.at_least("1.44") and len(endpoints.data) > 1:
        names = ", ".join(endpoints.data)
        raise ApiError(400, f"Container cannot be created with multiple network endpoints: {names}")
    mounts = fields.object("HostConfig").objects("Mounts")
    subpaths = any(m.object("VolumeOptions").text("Subpath") for m in mounts)
    if subpaths and not req.at_least("1.45"):
        raise ApiError(400, "VolumeOptions.Subpath needs API v1.45 or newer")
    if not req.at_least("1.48"):
        for name in endpoints.data:
            endpoint = endpoints.object(name).data  # any case, as Go's decoder reads keys
            for key in [k for k in endpoint if k.lower() == "gwpriority"]:
                del endpoint[key]
        if any(m.text("Type").lower() == "image" for m in mounts):
            raise ApiError(400, 'Mount type "Image" needs API v1.48 or newer')
    else:
        _check_interface_sysctls(fields.object("HostConfig"))


def _check_interface_sysctls(host: Fields) -> None:
    """From API 1.48 an interface's sysctl (``net.ipv4.conf.eth0.forwarding``) among the
    container's is refused, as dockerd refuses it: it is its endpoint's
    ``com.docker.network.endpoint.sysctls`` (``net.ipv4.conf.IFNAME.forwarding=1``), which
    is written once the interface is there.  (Older clients' are written as given.)"""
    network = host.text("NetworkMode")
    if network == "host" or network.startswith("container:"):
        return
    for key in host.mapping("Sysctls"):
        if sysctl_interface(key).startswith("eth"):
            raise ApiError(
                400,
                f'interface specific sysctl setting "{key}" must be supplied using driver'
                f" option '{SYSCTLS_OPT}'",
            )


def _volume_driver_warning(req: Request, host: Fields) -> list[str]:
    """API 1.48's warning (the docker CLI gave it before): ``VolumeDriver`` is not for
    the volumes of ``Mounts``, which name their own driver."""
    if not (req.at_least("1.48") and host.text("VolumeDriver")):
        return []
    for m in host.objects("Mounts"):
        driver = m.object("VolumeOptions").object("DriverConfig").text("Name")
        if (m.text("Type") or "volume").lower() == "volume" and not driver:
            return [
                "WARNING: the container-wide volume-driver configuration is ignored for"
                " volumes specified via 'mount'. Use '--mount type=volume,volume-driver=...'"
                " instead"
            ]
    return []


async def create(api: Api, conn: HttpConnection, req: Request) -> None:
    body = req.json_object()
    _check_versions(req, body)
    made = _make_mountpoints(req, body)
    try:
        config = _shapes.container_config(
            body, with_console_size=req.at_least("1.42"), recursive_ro=req.at_least("1.44")
        )
        if req.arg("platform"):
            from ._images import check_platform  # the image routes: on first use

            try:
                wanted = _platforms.parse(req.arg("platform") or "")
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            check_platform(api, config.image, str(body.get("Image")), wanted)
        _make_labelled(api, body)
        c = await api.sup.create(config, (req.arg("name") or "").lstrip("/"))
    except BaseException:
        for path in reversed(made):
            with contextlib.suppress(OSError):  # used meanwhile: left
                os.rmdir(path)
        raise
    host = Fields(body, "Config").object("HostConfig")
    warnings = _shapes.warnings(host) + _volume_driver_warning(req, host)
    warnings += api.sup.limit_warnings(config.resources)
    await conn.respond_json(201, {"Id": c.id, "Warnings": warnings})


def _with_network_ids(sup: Supervisor, settings: dict[str, Any]) -> None:
    """A container's ``NetworkSettings.Networks`` with Docker's ``NetworkID``s (the shapes
    know only the networks' names; "" for a network gone)."""
    for name, endpoint in settings["Networks"].items():
        if name in ("host", "none"):
            endpoint["NetworkID"] = builtin_network_id(name)
            continue
        try:
            endpoint["NetworkID"] = sup.networks.get(name).id
        except NetworkError:
            endpoint["NetworkID"] = ""


def _network_names(api: Api, refs: list[str]) -> list[str]:
    """A ``network`` filter's values as containers' records name networks: Docker takes
    a network's name or a prefix of its id (of any number of networks)."""
    ids = {builtin_network_id(name): name for name in ("host", "none")}
    ids.update((net.id, net.name) for net in api.sup.networks.list())
    return [*refs, *(name for ref in refs if ref for i, name in ids.items() if i.startswith(ref))]


def _images_now(api: Api, found: list[Container]) -> dict[str, str]:
    """By container id, the image ``ps`` names for a container whose image name now
    resolves to another image than the one it was made from, or to none: that image's id,
    as dockerd's list shows it.  Reads the store: not on the event loop's thread."""
    now: dict[str, str | None] = {}
    shown = {}
    for c in found:
        ref, image_id = c.config.image, c.config.image_id
        if not image_id or ref == image_id or is_default(ref) or ref.startswith("/"):
            continue
        if ref not in now:
            try:
                now[ref] = api.sup.images.lookup(ref).id
            except (NoSuchImage, ValueError):
                now[ref] = None
        if now[ref] != image_id:
            shown[c.id] = image_id
    return shown


async def containers(api: Api, conn: HttpConnection, req: Request) -> None:
    limit = req.integer("limit") or 0
    filters = _shapes.parse_filters(req.arg("filters"))
    if "network" in filters:
        filters["network"] = _network_names(api, filters["network"])
    if "ancestor" in filters:
        ancestors = filters["ancestor"]
        filters["ancestor"] = await trio.to_thread.run_sync(api.sup.images.ancestry, ancestors)
    found = _listing.select_containers(api.sup.list, filters, all=req.flag("all"), limit=limit)
    rows = await summaries(api, found, sizes=req.flag("size"))
    if not req.at_least("1.46"):  # HostConfig.Annotations came with API 1.46
        for row in rows:
            row["HostConfig"].pop("Annotations", None)
    await conn.respond_json(200, rows)


async def summaries(api: Api, found: list[Container], *, sizes: bool) -> list[dict[str, Any]]:
    """The rows of the list (and of ``system/df``) for ``found``, with their networks'
    ids, and with ``sizes`` their sizes."""
    now = time.time()
    rows = [_shapes.summary(c, now) for c in found]
    moved = await trio.to_thread.run_sync(_images_now, api, found)
    for c, row in zip(found, rows, strict=True):
        row["Image"] = moved.get(c.id, row["Image"])
        _with_network_ids(api.sup, row["NetworkSettings"])
    if sizes:
        await with_sizes(api, found, rows)
    return rows


async def with_sizes(api: Api, found: list[Container], rows: list[dict[str, Any]]) -> None:
    """Docker's ``size=1``: each row's SizeRw (what the container wrote) and SizeRootFs
    (that and its image's layers)."""
    for row, (rw, root) in zip(rows, await api.sup.sizes(found), strict=True):
        row["SizeRw"], row["SizeRootFs"] = rw, root


async def prune(api: Api, conn: HttpConnection, req: Request) -> None:
    only = _prune.parse(_shapes.parse_filters(req.arg("filters")), time.time())
    deleted, reclaimed = await api.sup.prune(only)
    await conn.respond_json(200, {"ContainersDeleted": deleted, "SpaceReclaimed": reclaimed})


async def rename(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    name = (req.arg("name") or "").lstrip("/")
    if not name:
        raise ApiError(400, "no new name given (name)")
    await api.sup.rename(ref, name)
    await conn.respond(204, content_type=None)


async def changes(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    kinds = {"C": 0, "A": 1, "D": 2}
    found = await api.sup.diff(ref)
    await conn.respond_json(
        200, [{"Path": ch.path, "Kind": kinds[ch.kind]} for ch in found] or None
    )


async def inspected(
    sup: Supervisor, c: Container, execs: list[str], version: str, *, size: bool
) -> dict[str, Any]:
    """``c`` as the Engine API's ``version`` inspects it (``docker inspect``'s JSON), with
    ``execs`` (the ids of its running execs) and with ``size`` its SizeRw and SizeRootFs."""
    shown = _shapes.inspect(c, execs, sup.log_path(c), sup.etc_paths(c), sup.graph_driver(c))
    _with_network_ids(sup, shown["NetworkSettings"])
    if version_tuple(version) >= (1, 44):
        _shapes.with_dns_names(c, shown["NetworkSettings"])
    if version_tuple(version) < (1, 45):
        _shapes.with_old_aliases(c, shown["NetworkSettings"])
    if size:
        shown["SizeRw"], shown["SizeRootFs"] = (await sup.sizes([c]))[0]
    return shown


async def inspect(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    c = api.sup.inspect(ref)
    execs = api.execs_of(c.id, ended=False)
    version = req.version or API_VERSION
    shown = await inspected(api.sup, c, execs, version, size=req.flag("size"))
    await conn.respond_json(200, shown)


async def start(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    c = api.sup.inspect(ref)
    if c.state.status is Status.PAUSED:  # dockerd's words and 409, before its 304
        raise Conflict("cannot start a paused container, try unpause instead")
    # Running, or waiting to restart (Docker's State.Running is true then too): 304.
    if api.sup.run_of(c.id) is not None or c.state.status is Status.RESTARTING:
        await conn.respond(304, content_type=None)
        return
    await api.sup.start(c.id)  # an auto_remove one that cannot start is removed
    await conn.respond(204, content_type=None)


async def stop(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    c = api.sup.inspect(ref)
    timeout = req.integer("t")  # refused before the 304, as moby's; the signal is not
    # Docker's 304 is for a container at rest; one waiting to restart has no process,
    # and its stop keeps it down.
    if not _lifecycle.can_stop(c.state.status):
        await conn.respond(304, content_type=None)
        return
    await api.sup.stop(c.id, timeout, sig=req.arg("signal") or None)
    await conn.respond(204, content_type=None)


async def pause(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    await api.sup.pause(ref)
    await conn.respond(204, content_type=None)


async def unpause(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    await api.sup.unpause(ref)
    await conn.respond(204, content_type=None)


async def restart(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    await api.sup.restart(ref, req.integer("t"), sig=req.arg("signal") or None)
    await conn.respond(204, content_type=None)


async def kill(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    """A refusal in moby's words: ``cannot kill container: REF: ...``, one of a container
    with no process naming it by its id (``container ID is not running``)."""
    try:
        await api.sup.kill(ref, req.arg("signal") or "SIGKILL")
    except Exception as exc:
        refused = api_error(unwrap(exc))
        if refused is None:
            raise
        if isinstance(unwrap(exc), _lifecycle.Conflict):
            refused.message = f"container {api.sup.inspect(ref).id} is not running"
        raise ApiError(refused.status, f"cannot kill container: {ref}: {refused.message}") from None
    await conn.respond(204, content_type=None)


async def remove(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    if req.flag("link"):  # a container's own name as a link: refused (raises), as dockerd
        await api.sup.remove_link(ref, "")
    c = api.sup.inspect(ref)
    await api.sup.remove(c.id, force=req.flag("force"), volumes=req.flag("v"))
    for exec_id in api.execs_of(c.id):
        del api.execs[exec_id]
    await conn.respond(204, content_type=None)


async def remove_link(api: Api, conn: HttpConnection, req: Request, ref: str, alias: str) -> None:
    """``docker rm --link NAME/ALIAS``: a link's name is its container's and its alias.
    Anything else at that path is not a container: 404, as for any unknown name."""
    if not req.flag("link"):
        raise NoSuchContainer(f"{ref}/{alias}")
    await api.sup.remove_link(ref, alias)
    await conn.respond(204, content_type=None)


async def wait(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    """Headers at once (``docker run`` waits for them before it starts the container),
    the exit code when the condition is met."""
    condition = req.arg("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(
            400, f"invalid condition {condition!r}: use not-running, next-exit or removed"
        )
    c = api.sup.inspect(ref)
    await conn.start_stream()
    code = c.state.exit_code or 0
    async with conn.cancelled_if_peer_closes():
        code = await _wait_for(api, c, condition)
    # No "Error" (moby's is omitted when nil): a client reads {"StatusCode": 0} as Docker's.
    await conn.send(json.dumps({"StatusCode": code}).encode() + b"\n")
    await conn.end()


async def _wait_for(api: Api, c: Container, condition: str) -> int:
    st = c.state
    if condition == "not-running":
        if st.status not in _lifecycle.LIVE:
            return st.exit_code or 0
        return await api.sup.wait(c.id)
    # What tells that a run ended since the request came: its process seen and gone,
    # or a start that failed (a new end, code or error with no process).
    before = (st.finished_at, st.exit_code, st.error)
    seen = False
    while True:
        try:
            c = api.sup.inspect(c.id)
        except NoSuchContainer:
            return st.exit_code or 0
        st = c.state
        with_process = st.status in _lifecycle.WITH_PROCESS
        seen = seen or with_process
        changed = (st.finished_at, st.exit_code, st.error) != before
        ended = (seen or changed) and not with_process and st.status is not Status.STARTING
        if condition == "next-exit" and ended:
            return st.exit_code or 0
        await api.sup.wait_changed()


async def update(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    body = Fields(req.json_object(), "body")
    policy = body.object("RestartPolicy")
    restart = None
    if policy.text("Name"):  # the CLI sends an empty one when --restart is not given
        restart = _shapes.restart_policy(policy.text("Name"), policy.integer("MaximumRetryCount"))
    changes = _shapes.resources(body)
    if not req.at_least("1.40"):  # dockerd's update took no PidsLimit before
        changes = attrs.evolve(changes, pids_limit=None)
    await api.sup.update(ref, changes, restart)
    warnings = _shapes.warnings(body) + api.sup.limit_warnings(changes)
    await conn.respond_json(200, {"Warnings": warnings})


async def logs(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    c = api.sup.inspect(ref)
    streams = {n for n in ("stdout", "stderr") if req.flag(n)}
    if not streams:
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    tail_text = req.arg("tail") or "all"
    tail: int | None = None
    if tail_text != "all":
        try:
            tail = int(tail_text)
        except ValueError:
            raise ApiError(400, f"invalid tail {tail_text!r}: a number or all") from None
        tail = None if tail < 0 else tail
    since = req.unix_ns("since") or None  # (0: from the start, as Docker's)
    until = req.unix_ns("until") or None
    follow = req.flag("follow")
    directory = api.sup.log_dir(c.id)
    details = _logattrs.details(c, _shapes.image_id(c)) if req.flag("details") else b""
    formatter = _logs.OutputFormatter(timestamps=req.flag("timestamps"), details=details)
    tty = c.config.tty

    def encode(entries: list[_logs.LogEntry]) -> bytes:
        out = bytearray()
        for stream, data in formatter.records(e for e in entries if e.stream in streams):
            out += frame(protocol.OUTPUT_STREAMS[stream], data, tty=tty)
        return bytes(out)

    def stopped() -> bool:
        try:
            return api.sup.run_of(c.id) is None
        except NoSuchContainer:
            return True

    await conn.start_stream(RAW_STREAM if tty else MULTIPLEXED)
    async with conn.cancelled_if_peer_closes():
        async for batch in _logs.batches(
            directory,
            since_ns=since,
            tail=tail,
            until_ns=until,
            until_closed=stopped if follow else None,
        ):
            data = encode(batch)
            if data:  # (an empty chunk would end the response)
                await conn.send(data)
    await conn.end()


async def export(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    from .._images.messages import ExportRequest

    answers = Streamed(conn, content_type="application/x-tar")
    await api.images.export(answers, ExportRequest(container=ref))
    await conn.end()


# ---- stats, top -------------------------------------------------------------------------


Sample = tuple[float, Any, int, dict[str, Any]]  # time, cgroup counters, system CPU, networks


def _stats_shape(c: Container, sample: Sample | None, previous: Sample | None) -> dict[str, Any]:
    def cpu(s: Sample | None) -> dict[str, Any]:
        if s is None or s[1] is None:
            return {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
        stats = s[1]
        return {
            "cpu_usage": {
                "total_usage": stats.cpu_total_ns,
                # v1's, as dockerd gives them (omitted where there are none: v2)
                **({"percpu_usage": list(stats.cpu_percpu_ns)} if stats.cpu_percpu_ns else {}),
                "usage_in_kernelmode": stats.cpu_system_ns,
                "usage_in_usermode": stats.cpu_user_ns,
            },
            "system_cpu_usage": s[2],
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }

    stats = sample[1] if sample else None
    shape = {
        "read": _shapes.rfc3339(sample[0]) if sample else _shapes.ZERO_TIME,
        "preread": _shapes.rfc3339(previous[0]) if previous else _shapes.ZERO_TIME,
        "pids_stats": {"current": stats.pids} if stats else {},
        # Its bytes read and written, on no device of their own (the counters are its
        # devices' sums); none before it did any I/O, as dockerd lists no device then.
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 0, "minor": 0, "op": "read", "value": stats.io_read_bytes},
                {"major": 0, "minor": 0, "op": "write", "value": stats.io_write_bytes},
            ]
            if stats and (stats.io_read_bytes or stats.io_write_bytes)
            else None
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(sample),
        "precpu_stats": cpu(previous),
        "memory_stats": {
            "usage": stats.memory_usage,
            "limit": stats.memory_limit or mem_total(),
            "stats": stats.memory_stat or {},
        }
        if stats
        else {},
        "name": "/" + c.name,
        "id": c.id,
    }
    if sample and sample[3]:  # omitted with none (Docker's omitempty): the host's network
        shape["networks"] = {name: n.as_dict() for name, n in sample[3].items()}
    return shape


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return sum(int(x) for x in fields[:8]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


async def stats(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    c = api.sup.inspect(ref)
    stream = req.flag("stream", True)
    one_shot = req.flag("one-shot")

    def sample() -> tuple[float, Any, int, dict[str, Any]] | None:
        found = api.sup.sample([c.id])
        if not found:
            return None
        _, counters, networks = found[0]
        return time.time(), counters, _system_cpu_ns(), networks

    await conn.start_stream()
    # A container removed ends the stream, as Docker's ends it: it was cut off unended, and
    # docker-py's stats(stream=True) raised "Connection broken" where its loop would end.
    async with conn.cancelled_if_peer_closes():
        with contextlib.suppress(NoSuchContainer):
            previous = None
            if not stream and not one_shot:  # two samples, so the CPU use is known
                previous = sample()
                await trio.sleep(STATS_INTERVAL)
            while True:
                current = sample()
                await conn.send(json.dumps(_stats_shape(c, current, previous)).encode() + b"\n")
                if not stream:
                    break
                previous = current
                await trio.sleep(STATS_INTERVAL)
    await conn.end()


async def top(api: Api, conn: HttpConnection, req: Request, ref: str) -> None:
    """The host's ``ps`` (``ps_args``, default ``-ef``), its rows of the container's
    processes (those in its cgroup), as Docker does it."""
    pids = set(api.sup.processes(ref))
    try:
        args = shlex.split(req.arg("ps_args") or "-ef")
    except ValueError as exc:
        raise ApiError(400, f"invalid ps_args: {exc}") from None
    result = await trio.run_process(
        ["ps", *args], capture_stdout=True, capture_stderr=True, check=False
    )
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip().splitlines()
        raise ApiError(400, f"ps {shlex.join(args)} failed: {error[0] if error else '?'}")
    lines = result.stdout.decode(errors="replace").splitlines()
    titles = lines[0].split() if lines else []
    if "PID" not in titles:
        raise ApiError(400, f"ps {shlex.join(args)} shows no PID column")
    column = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(fields)
    await conn.respond_json(200, {"Titles": titles, "Processes": rows})


ROUTES = [
    route("POST", r"/containers/create", create, json=True),
    route("GET", r"/containers/json", containers),
    route("POST", r"/containers/prune", prune),
    route("GET", CONTAINER + r"/json", inspect),
    route("POST", CONTAINER + r"/start", start),
    route("POST", CONTAINER + r"/stop", stop),
    route("POST", CONTAINER + r"/restart", restart),
    route("POST", CONTAINER + r"/kill", kill),
    route("POST", CONTAINER + r"/pause", pause),
    route("POST", CONTAINER + r"/unpause", unpause),
    route("POST", CONTAINER + r"/wait", wait),
    route("DELETE", CONTAINER, remove),
    route("DELETE", CONTAINER + r"/([^/]+)", remove_link),
    route("GET", CONTAINER + r"/logs", logs),
    route("POST", CONTAINER + r"/update", update, json=True),
    route("GET", CONTAINER + r"/stats", stats),
    route("GET", CONTAINER + r"/top", top),
    route("POST", CONTAINER + r"/rename", rename),
    route("GET", CONTAINER + r"/changes", changes),
    route("GET", CONTAINER + r"/export", export),
]

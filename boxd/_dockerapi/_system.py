"""System: ``/_ping``, ``/version``, ``/info``, ``/events``, ``/system/df``, ``/plugins``."""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import platform
import time
from typing import Any

import trio

from .. import __version__, _listing, _mountinfo, _tasks
from .._events import Event, event_filter, message
from .._records import RUNTIMES
from . import _shapes
from ._api import Api, arch, mem_total
from ._http import API_VERSION, MIN_API_VERSION, ApiError, HttpConnection, Request
from ._router import route


async def _image_rows(api: Api) -> list[dict[str, Any]]:
    """``/images/json``'s rows (the image area's module, with the image verbs, is imported
    by the first request that needs it: boxd._verbareas)."""
    from ._images import image_rows

    return await image_rows(api)


async def ping(api: Api, conn: HttpConnection, req: Request) -> None:
    await conn.respond(
        200,
        b"OK",
        content_type="text/plain; charset=utf-8",
        headers={
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Pragma": "no-cache",
            "Builder-Version": "1",  # the classic builder (POST /build), not BuildKit
            "Swarm": "inactive",  # API 1.42: a node in no swarm (see _swarm)
        },
    )


async def version(api: Api, conn: HttpConnection, req: Request) -> None:
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": platform.release(),
    }
    # The CLI prints a component's details as given: Docker's Engine gives Experimental.
    engine = {**details, "Experimental": "false"}
    await conn.respond_json(
        200,
        {
            "Platform": {"Name": "boxd"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": engine}],
            "Version": __version__,
            "GitCommit": "",
            "GoVersion": "",
            "BuildTime": "",
            **details,
        },
    )


async def info(api: Api, conn: HttpConnection, req: Request) -> None:
    containers = api.sup.list(all=True)
    words = collections.Counter(_listing.status_word(c) for c in containers)
    running, paused = words["running"] + words["restarting"], words["paused"]
    mode = api.sup.cgroups.mode
    root = str(api.sup.store.root)
    try:  # the host's, as dockerd names it
        system = platform.freedesktop_os_release()
    except OSError:
        system = {}
    await conn.respond_json(
        200,
        {
            "ID": api.sup.daemon_id,
            "Name": platform.node(),
            "Containers": len(containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(containers) - running - paused,
            "Images": len(await _image_rows(api)),
            "Driver": "overlay2",
            # As dockerd's overlay2 driver shows them; overlay needs d_type, or no container
            # would start.
            "DriverStatus": [
                ["Backing Filesystem", _backing(root)],
                ["Supports d_type", "true"],
            ],
            "SystemTime": _shapes.rfc3339(time.time()),
            "MemoryLimit": True,
            "SwapLimit": True,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            # v1's memory.oom_control can turn the OOM killer off; v2 has no such switch.
            "OomKillDisable": api.sup.cgroups.controllers().get("memory") == "v1",
            "IPv4Forwarding": True,
            "Debug": logging.getLogger().isEnabledFor(logging.DEBUG),  # SIGHUP may change it
            # What dockerd's debug lines show: its file descriptors, goroutines (boxd's Trio
            # tasks) and event streams.
            "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": sum(1 for _ in _tasks.tasks()),
            "NEventsListener": api.sup.events.listeners,
            "LiveRestoreEnabled": api.sup.live_restore,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "Labels": list(api.sup.labels),
            "ExperimentalBuild": False,
            "DockerRootDir": root,
            "ServerVersion": __version__,
            "OperatingSystem": system.get("PRETTY_NAME", "Linux"),
            "OSVersion": system.get("VERSION_ID", ""),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "KernelVersion": platform.release(),
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem_total(),
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2" if mode == "v2" else "1",
            "LoggingDriver": api.sup.log_driver,
            "DefaultRuntime": RUNTIMES[0],
            # Every name is boxd's own runtime: the daemon runs the containers itself.
            "Runtimes": {name: {"path": "boxd"} for name in RUNTIMES},
            # Each container's own cgroup namespace and no_new_privs, as dockerd lists its
            # defaults.
            "SecurityOptions": [
                "name=seccomp,profile=builtin",
                "name=cgroupns",
                "name=no-new-privileges",
            ],
            "Plugins": {
                "Volume": ["local"],
                "Network": ["bridge", "host", "ipvlan", "macvlan", "null"],
                "Log": ["json-file", "local", "syslog", "journald", "gelf", "fluentd", "splunk"],
            },
            "RegistryConfig": _registry_config(api.sup.insecure_registries, req),
            # The daemon's --default-address-pool ones, as dockerd lists them (none: its own).
            "DefaultAddressPools": [
                {"Base": base, "Size": size} for base, size in api.sup.networks.options.pools
            ],
            # boxd's registry client reads no proxy settings: none are in use.
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Isolation": "",
            "InitBinary": "boxd-init",
            # No containerd, runc or docker-init: boxd runs containers itself (empty
            # commits, as a dockerd built without them reports; "Expected" before 1.49).
            **{key: _commit(req) for key in ("ContainerdCommit", "RuncCommit", "InitCommit")},
            "Swarm": {"LocalNodeState": "inactive"},
            "Warnings": None,
            **_versioned_info(req),
        },
    )


def _commit(req: Request) -> dict[str, str]:
    return {"ID": ""} if req.at_least("1.49") else {"ID": "", "Expected": ""}


def _versioned_info(req: Request) -> dict[str, Any]:
    """The fields of ``/info`` that came or went with an API version: 1.24's
    ExecutionDriver, the bridge-nf fields before 1.50 (always false: boxd's rules are
    nftables' own, as the bridge's netfilter module is dockerd's only on demand now), 1.49's
    firewall backend.  No containerd (1.46's Containerd) and no CDI devices (1.50's
    DiscoveredDevices): left out, as dockerd leaves them out when empty."""
    found: dict[str, Any] = {}
    if not req.at_least("1.25"):  # as dockerd still gives it to such a client
        found["ExecutionDriver"] = "<not supported>"
    if not req.at_least("1.50"):
        found |= {"BridgeNfIptables": False, "BridgeNfIp6tables": False}
    if req.at_least("1.49"):
        found["FirewallBackend"] = {"Driver": "nftables"}
    return found


def _backing(path: str) -> str:
    """The filesystem at ``path`` by dockerd's name for it (``extfs`` for ext2/3/4)."""
    fstype = _mountinfo.filesystem(os.path.realpath(path))
    return "extfs" if fstype.startswith("ext") else fstype


def _registry_config(insecure: frozenset[str], req: Request) -> dict[str, Any]:
    """``/info``'s RegistryConfig in dockerd's shape: loopback reached insecurely, an index
    entry for Docker Hub and one for each ``--insecure-registry`` (boxd takes them by
    HOST:PORT only, no CIDRs); the non-distributable artifacts' lists (null) before API
    1.47."""
    indexes = {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}}
    for name in sorted(insecure):
        indexes[name] = {"Name": name, "Mirrors": [], "Secure": False, "Official": False}
    cidrs = ["::1/128", "127.0.0.0/8"]
    found = {"IndexConfigs": indexes, "InsecureRegistryCIDRs": cidrs, "Mirrors": None}
    if not req.at_least("1.47"):
        found |= dict.fromkeys(
            ("AllowNondistributableArtifactsCIDRs", "AllowNondistributableArtifactsHostnames")
        )
    return found


async def events(api: Api, conn: HttpConnection, req: Request) -> None:
    """Kept events from ``since`` (with ``until`` alone: from the oldest kept, as
    dockerd's), then new ones until ``until`` (or the client goes)."""
    since = req.number("since")
    until = req.number("until")
    if since is not None and until is not None and since > until:  # dockerd's words
        raise ApiError(
            400,
            f"`since` time ({req.arg('since')}) cannot be after `until` time ({req.arg('until')})",
        )
    if until is not None and since is None:
        since = 0
    keep = event_filter(_shapes.parse_filters(req.arg("filters")))
    history, channel = api.sup.events.subscribe()

    # An image's "create" (a commit's, a build's) came with API 1.46: not for older clients.
    created = req.at_least("1.46")

    def wanted(e: Event) -> bool:
        if not created and e.type == "image" and e.action == "create":
            return False
        return (until is None or e.time_ns <= until * 1e9) and keep(e)

    await conn.start_stream()
    with channel:
        async with conn.cancelled_if_peer_closes():
            for e in history:
                if since is not None and e.time_ns >= since * 1e9 and wanted(e):
                    await conn.send(json.dumps(message(e)).encode() + b"\n")
            deadline = math.inf
            if until is not None:
                deadline = trio.current_time() + until - time.time()
            with trio.move_on_at(deadline):
                async for e in channel:
                    if wanted(e):
                        await conn.send(json.dumps(message(e)).encode() + b"\n")
    await conn.end()


DF_TYPES = ("container", "image", "volume", "build-cache")  # system/df's areas, moby's names


async def df(api: Api, conn: HttpConnection, req: Request) -> None:
    from ._images import versioned

    # API 1.42's ``type`` (repeated) asks for some of the areas only; the others are null
    # (LayersSize 0 without the images), as moby's; before 1.42 it is ignored.
    wanted = set(DF_TYPES)
    if req.at_least("1.42") and "type" in req.query:
        wanted = set(req.query["type"])
        unknown = [t for t in req.query["type"] if t not in DF_TYPES]
        if unknown:
            raise ApiError(400, f"unknown object type: {unknown[0]}")
    usage = await disk_usage(api, wanted)
    if usage["Images"] is not None:
        usage["Images"] = [versioned(req, row) for row in usage["Images"]]
    await conn.respond_json(200, usage)


async def disk_usage(api: Api, wanted: set[str]) -> dict[str, Any]:
    """``/system/df``'s body (at the newest API version) for the areas ``wanted`` (of
    :data:`DF_TYPES`), the others null; ``boxctl system df -v`` prints it too."""
    from ._containers import summaries
    from ._images import image_rows
    from ._volumes import df_rows

    usage: dict[str, Any] = {"LayersSize": 0, "Images": None, "Containers": None, "Volumes": None}
    usage["BuildCache"] = [] if "build-cache" in wanted else None
    if "image" in wanted:
        # The images as the list shows them (Docker's df: not the intermediate ones).
        usage["Images"] = await image_rows(api, shared=True, all=False)
        usage["LayersSize"] = api.sup.images.layers_size()
    if "container" in wanted:
        usage["Containers"] = await summaries(api, api.sup.list(all=True), sizes=True)
    if "volume" in wanted:
        usage["Volumes"] = await df_rows(api)
    return usage


async def build_prune(api: Api, conn: HttpConnection, req: Request) -> None:
    """The build cache's entries are forgotten (``docker builder prune``, and ``docker
    system prune`` after its other prunes); their layers are the images', so no space
    is reclaimed by this alone."""
    from .._build.runner import prune_cache

    _shapes.parse_filters(req.arg("filters"))  # well-formed, at least
    # Integers, as dockerd refuses another; nothing to keep (API 1.48 renamed keep-storage
    # reserved-space and added the other two).
    for key in ("keep-storage", "reserved-space", "max-used-space", "min-free-space"):
        req.integer(key)
    deleted = prune_cache(api.sup.images)
    api.sup.events.pruned("builder", 0)
    await conn.respond_json(200, {"CachesDeleted": deleted or None, "SpaceReclaimed": 0})


async def plugins(api: Api, conn: HttpConnection, req: Request) -> None:
    """``docker plugin ls``: none; boxd's volume, network and log drivers are built in (as
    ``info`` lists them), so it has Docker's empty list of managed plugins."""
    for key in _shapes.parse_filters(req.arg("filters")):
        if key not in ("capability", "enable"):
            raise ApiError(400, f"invalid filter '{key}'")
    await conn.respond_json(200, [])


async def options(api: Api, conn: HttpConnection, req: Request) -> None:
    """Any path's OPTIONS (a browser's preflight): 200 and nothing, as dockerd answers it."""
    await conn.respond(200, content_type=None)


ROUTES = [
    route("OPTIONS", r"/.*", options),
    route("POST", r"/build/prune", build_prune),
    route("GET", r"/plugins", plugins),
    route("GET", r"/_ping", ping),
    route("HEAD", r"/_ping", ping),
    route("GET", r"/version", version),
    route("GET", r"/info", info),
    route("GET", r"/events", events),
    route("GET", r"/system/df", df),
]

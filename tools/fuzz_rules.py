"""What the Engine API fuzzer (fuzz_engine_api.py) may send and what it counts: the
request fields stripped because they reach the host, and the failures told apart from
findings (where moby's description is stricter than dockerd).  No schemathesis here: the
tests import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Fields dropped from any object of a request body, wherever it is nested: each gives a
# container more of the host (devices, capabilities, kernel settings, a runtime, a log
# driver that writes to the host's syslog or network, a cgroup outside the daemon's, a
# volume bound to a host path, weaker confinement).
HOST_FIELDS = frozenset(
    {
        "Privileged",
        "Devices",
        "DeviceRequests",
        "DeviceCgroupRules",
        "CapAdd",
        "Capabilities",
        "Sysctls",
        "SecurityOpt",
        "Runtime",
        "LogConfig",
        "CgroupParent",
        "VolumeDriver",
        "DriverOpts",
        "DriverConfig",
        "MaskedPaths",
        "ReadonlyPaths",
        "BindOptions",
    }
)

# Namespace modes dropped when they name the host's namespace.
NAMESPACE_MODES = frozenset(
    {"NetworkMode", "PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode", "Cgroup"}
)


def make_safe(value: object, scratch: Path) -> None:
    """Strip, in place and at any depth of a request body, what could reach beyond the
    daemon's scratch root: the fields of :data:`HOST_FIELDS`, host namespace modes, an
    image that is a host directory, and host paths of binds (``Binds`` and the
    ``Source`` of ``Mounts``, moved below ``scratch/host``)."""
    if isinstance(value, list):
        for item in value:
            make_safe(item, scratch)
        return
    if not isinstance(value, dict):
        return
    for key in list(value):
        item = value[key]
        host_mode = key in NAMESPACE_MODES and isinstance(item, str) and "host" in item.lower()
        if key in HOST_FIELDS or host_mode:
            del value[key]
        elif key in ("Source", "Image") and isinstance(item, str) and item.startswith("/"):
            value[key] = _below(item, scratch)
        elif key == "Binds" and isinstance(item, list):
            value[key] = [
                _bind_string(b, scratch) if isinstance(b, str) and b.startswith("/") else b
                for b in item
            ]
        else:
            make_safe(item, scratch)


def _below(path: str, scratch: Path) -> str:
    return str(scratch / "host" / path.lstrip("/"))


def _bind_string(bind: str, scratch: Path) -> str:
    source, _, rest = bind.partition(":")
    return f"{_below(source, scratch)}:{rest}"


def safe_query(query: dict[str, Any] | None) -> None:
    """The build's ``networkmode=host`` (its RUN steps in the host's namespace) dropped; a
    stop's or restart's wait ``t`` cut to 2 s, that a case does not hold the run."""
    if not isinstance(query, dict):
        return
    if "host" in str(query.get("networkmode", "")).lower():
        del query["networkmode"]
    if isinstance(query.get("t"), int) and not 0 <= query["t"] <= 2:
        query["t"] = 2  # (a negative one waits for ever)


def without_nullable(spec: object) -> Any:
    """``spec`` without ``x-nullable: true``: schemathesis makes such a schema an ``anyOf``
    of it and null, whose failure names neither the field nor what was wrong; the nulls
    are told apart afterwards (:func:`nullable`)."""
    if isinstance(spec, list):
        return [without_nullable(item) for item in spec]
    if not isinstance(spec, dict):
        return spec
    return {k: without_nullable(v) for k, v in spec.items() if (k, v) != ("x-nullable", True)}


def nullable(spec: dict[str, Any], pointer: str) -> bool:
    """Whether dockerd may write ``null`` where ``pointer`` (a JSON pointer into ``spec``,
    or into an operation's own schema when it resolves to nothing) leads: Go's encoder
    writes a nil list, map or pointer so (``"CapAdd": null``, an exec's ``"ExitCode":
    null`` before it ran), which moby's description allows only by ``x-nullable`` and
    forbids only where it says ``x-nullable: false``."""
    node: Any = spec
    for part in pointer.strip("/").split("/"):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return True
    return not (isinstance(node, dict) and node.get("x-nullable") is False)


# Where boxd answers as dockerd does and the description says otherwise, or where the
# fuzzer's namespace is why: (status or 0 for any, what the answer or the failure says,
# why).  Such failures are counted apart, not as findings.
KNOWN = (
    (501, "docker search is not supported", "boxd does not search registries (README)"),
    (500, "cannot reach registry", "no network in the fuzzer's namespace"),
    (0, 'is not one of "default", "', 'Isolation: dockerd on Linux writes "" too'),
    (0, "Schema at /definitions/Volume/properties/Labels:", "dockerd: null when made without"),
)


def known(status: int, text: str) -> str | None:
    """Why a failure (its status, the answer and the failure's message) is no finding."""
    for code, says, why in KNOWN:
        if code in (0, status) and says in text:
            return why
    return None

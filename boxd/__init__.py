"""boxd: a container runtime for Linux, usable as a Trio library and as a daemon.

    async with boxd.open_supervisor(root="/var/lib/boxd") as sup:
        c = await sup.run(boxd.ContainerConfig(image="default", command=("true",)))
        code = await sup.wait(c.id)

The public names are loaded on first use, so that ``boxctl`` (which imports only
``boxd.protocol``) does not pay for Trio, attrs and cattrs at start-up.
"""

from __future__ import annotations

import sys

# The package's version (pyproject.toml reads it from here: the one place it is written).
__version__ = "0.1.0"

TYPE_CHECKING = False  # not typing's: importing typing costs every boxctl call ~3 ms
if TYPE_CHECKING:
    from typing import Any

    from ._healthcheck import Health as Health
    from ._healthcheck import Healthcheck as Healthcheck
    from ._native import SpawnError as SpawnError
    from ._records import Container as Container
    from ._records import ContainerConfig as ContainerConfig
    from ._records import ContainerState as ContainerState
    from ._records import DeviceRate as DeviceRate
    from ._records import ImageMount as ImageMount
    from ._records import Resources as Resources
    from ._records import RestartPolicy as RestartPolicy
    from ._records import RunSummary as RunSummary
    from ._records import Security as Security
    from ._records import Status as Status
    from ._records import Volume as Volume
    from ._store import RootInUse as RootInUse
    from ._supervisor import Conflict as Conflict
    from ._supervisor import NoSuchContainer as NoSuchContainer
    from ._supervisor import StartError as StartError
    from ._supervisor import Supervisor as Supervisor
    from ._supervisor import open_supervisor as open_supervisor

_EXPORTS = {
    "Health": "_healthcheck",
    "Healthcheck": "_healthcheck",
    "SpawnError": "_native",
    "Container": "_records",
    "ContainerConfig": "_records",
    "ContainerState": "_records",
    "DeviceRate": "_records",
    "ImageMount": "_records",
    "Resources": "_records",
    "RestartPolicy": "_records",
    "RunSummary": "_records",
    "Security": "_records",
    "Status": "_records",
    "Volume": "_records",
    "RootInUse": "_store",
    "Conflict": "_supervisor",
    "NoSuchContainer": "_supervisor",
    "StartError": "_supervisor",
    "Supervisor": "_supervisor",
    "open_supervisor": "_supervisor",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'boxd' has no attribute {name!r}")
    __import__(f"boxd.{module}")  # not importlib: ~0.4 ms more for every boxctl call
    value = getattr(sys.modules[f"boxd.{module}"], name)
    globals()[name] = value
    return value

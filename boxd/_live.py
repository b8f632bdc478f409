"""Live restore: finding, checking and adopting the containers a previous daemon left running.

A daemon with live restore spawns every container through a boxd-shim (boxd/_shim.py) and,
when it stops (SIGTERM, or a crash), leaves them running.  The next one, at start-up, looks
for a shim in each container's directory.  It adopts the container only if the shim's
account agrees with the record: the record says running, the shim's pid is the record's,
and (while the process runs) the process's start time is the one recorded — so a reused
pid is never taken for the container.  Any other shim's container is killed and its status
collected; a record without an answering shim is handled as without live restore.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import attrs

from ._records import Container, Status
from ._run import start_time_of
from ._shim import ExitStatus, Hello, ShimConnection

log = logging.getLogger("boxd.live")


@attrs.frozen
class Adoption:
    """A container's shim that answered, with its greeting (whose fds the adopter owns)."""

    shim: ShimConnection
    hello: Hello


async def find_shim(directory: Path) -> Adoption | None:
    """The shim that answers in a container's directory, if any."""
    try:
        shim, hello = await ShimConnection.connect(directory)
    except OSError as exc:
        if (directory / "shim.sock").exists():
            log.info("%s: no shim answers (%s)", directory.name[:12], exc.strerror or exc)
        return None
    return Adoption(shim, hello)


def keeps_recorded(found: Adoption, container: Container) -> bool:
    """Whether the shim keeps (or kept, and reaped) the process the record names: the
    record's pid and, while it runs, the record's start time."""
    st, hello = container.state, found.hello
    return (
        st.pid > 0
        and hello.pid == st.pid
        and (hello.exited is not None or start_time_of(hello.pid) == st.pid_start_time)
    )


def why_not_adopt(found: Adoption, container: Container, *, live_restore: bool) -> str | None:
    """None if ``found`` keeps the process the record describes and may be adopted, else
    why not."""
    st = container.state
    hello = found.hello
    if not live_restore:
        return "live restore is off"
    if st.status not in (Status.RUNNING, Status.PAUSED):
        return f"the record says {st.status.value}"
    if hello.pid != st.pid:
        return f"the shim keeps pid {hello.pid}, the record says {st.pid}"
    if hello.exited is None and start_time_of(hello.pid) != st.pid_start_time:
        return f"pid {hello.pid} started at another time than recorded"
    if not hello.held:
        return "the shim holds none of its output (its daemon died while starting it)"
    return None


async def end(found: Adoption) -> ExitStatus | None:
    """Kill the shim's container (it is not adopted), collect its status, end the shim."""
    hello = found.hello
    for fd in hello.held.values():
        os.close(fd)
    try:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(hello.pidfd, signal.SIGKILL)
        status = hello.exited or await found.shim.wait_exit()
        await found.shim.done()
        return status
    finally:
        found.shim.close()
        os.close(hello.pidfd)

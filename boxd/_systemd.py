"""boxd as a systemd service: the units, ``boxd install-service``, readiness and the
socket systemd passes.

Both protocols are small enough to speak without libsystemd:

* readiness (``Type=notify``): one datagram ``READY=1`` to the ``AF_UNIX`` socket named by
  ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace), ``STOPPING=1`` when
  the daemon begins to stop, ``RELOADING=1`` (with ``MONOTONIC_USEC``) then ``READY=1``
  around a reload (SIGHUP, ``systemctl reload``);
* socket activation: the listening sockets arrive as fds 3, 4, ... with
  ``$LISTEN_FDS`` their number and ``$LISTEN_PID`` our pid (the variables are meant for us
  only when that pid is ours).

``KillMode=process`` makes ``systemctl stop`` and ``restart`` signal the daemon alone, so
the containers and their shims are the daemon's to stop or keep.  The containers' cgroups
go below ``--cgroup-parent /boxd`` (from each hierarchy's root, as Docker's cgroupfs
driver does), not below the service's own cgroup: on cgroup v2 a cgroup that holds a
process (the daemon, in ``boxd.service``) cannot hand controllers to its children, so
limits would be unavailable there.
"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("boxd.systemd")

LISTEN_FDS_START = 3
UNIT_DIR = Path("/etc/systemd/system")
GROUP = "boxd"

SERVICE_UNIT = """\
[Unit]
Description=boxd container daemon
After=network-online.target boxd.socket
Wants=network-online.target
Requires=boxd.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart={boxd} --socket {socket} --cgroup-parent {cgroup_parent}
# systemctl reload: the configuration file read again (see boxd's README for what changes).
ExecReload=/bin/kill -HUP $MAINPID
# Only the daemon gets the stop signal: with live restore its containers run on, kept by
# their shims, for the next daemon to adopt (with --no-live-restore it stops them).
KillMode=process
Delegate=yes
Restart=on-failure
RestartSec=1
TimeoutStopSec=120
LimitNOFILE=1048576
TasksMax=infinity
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
"""

SOCKET_UNIT = """\
[Unit]
Description=boxd control socket

[Socket]
ListenStream={socket}
SocketMode=0660
SocketUser=root
SocketGroup={group}
DirectoryMode=0755

[Install]
WantedBy=sockets.target
"""


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to the service
    manager; False when none listens (not started by systemd)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("cannot notify the service manager at %s: %s", address, exc)
            return False
    return True


def stderr_is_journal() -> bool:
    """Whether our stderr is the journal's stream (systemd names it in ``$JOURNAL_STREAM``
    as ``DEVICE:INODE``): not when the service's stderr goes elsewhere, nor in a program
    it started whose stderr was redirected."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return bool(stream) and stream == f"{st.st_dev}:{st.st_ino}"


def listen_fds() -> list[int]:
    """The sockets systemd passed us (socket activation), made close-on-exec; the
    environment variables are cleared so that nothing we start sees them."""
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))
    for fd in fds:
        os.set_inheritable(fd, False)
    return fds


def units(boxd: str, socket_path: Path, group: str, cgroup_parent: str) -> dict[str, str]:
    """The unit files' names and texts."""
    return {
        "boxd.service": SERVICE_UNIT.format(
            boxd=boxd, socket=socket_path, cgroup_parent=cgroup_parent
        ),
        "boxd.socket": SOCKET_UNIT.format(socket=socket_path, group=group),
    }


def _ensure_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True)
        print(f"created the system group {name}: its members may use the socket")


def install(argv: Sequence[str]) -> int:
    """``boxd install-service``: write the units, create the socket's group."""
    import argparse  # here: the daemon itself drops it once its options are read

    p = argparse.ArgumentParser(
        prog="boxd install-service",
        description="Install boxd.service and boxd.socket (systemd) and the socket's group.",
    )
    p.add_argument("--unit-dir", type=Path, default=UNIT_DIR, help="default %(default)s")
    p.add_argument("--socket", type=Path, default=Path("/run/boxd/boxd.sock"))
    p.add_argument(
        "--group", default=GROUP, help="group that may use the socket (created if missing)"
    )
    p.add_argument(
        "--boxd",
        default=shutil.which("boxd") or f"{sys.executable} -m boxd",
        help="the command that starts the daemon (default: %(default)s)",
    )
    p.add_argument(
        "--cgroup-parent",
        default="/boxd",
        help="where containers' cgroups go (default %(default)s: below each hierarchy's root)",
    )
    args = p.parse_args(argv)
    _ensure_group(args.group)
    args.unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units(args.boxd, args.socket, args.group, args.cgroup_parent).items():
        (args.unit_dir / name).write_text(text)
        print(f"wrote {args.unit_dir / name}")
    print("now: systemctl daemon-reload && systemctl enable --now boxd.socket boxd.service")
    return 0

"""The daemon's one name-service look-up (its socket's group), asked in a child process.

glibc loads the modules ``/etc/nsswitch.conf`` names (``libnss_systemd``, sssd, LDAP...)
into the process that asks and keeps them for its life: asking for the socket's group
``boxd`` where it does not exist asks every source, which left ~0.5 MB in the idle daemon.
``getent`` asks the same sources in the same order, so the answer is the same; only where
it is missing (it comes with glibc's tools) does the daemon ask itself.
"""

from __future__ import annotations

import grp
import subprocess

import trio


async def group_id(name: str) -> int | None:
    """The id of the group ``name``, or None if no source knows it."""
    try:
        done = await trio.run_process(
            ["getent", "group", name],
            capture_stdout=True,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    # NAME:PASSWORD:GID:MEMBERS; exit status 2: no such group.
    fields = done.stdout.decode(errors="replace").split("\n", 1)[0].split(":")
    if done.returncode != 0 or len(fields) < 3 or not fields[2].isdigit():
        return None
    return int(fields[2])

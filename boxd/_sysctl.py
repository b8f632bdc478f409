"""``--sysctl KEY=VALUE`` as Docker takes it: only the kernel settings that belong to the
container's own namespaces, so that none changes the host.

* IPC namespace: ``kernel.msgmax``, ``kernel.msgmnb``, ``kernel.msgmni``, ``kernel.sem``,
  ``kernel.shmall``, ``kernel.shmmax``, ``kernel.shmmni``, ``kernel.shm_rmid_forced`` and
  ``fs.mqueue.*``;
* UTS namespace: ``kernel.domainname`` (the hostname is ``--hostname``);
* network namespace: ``net.*``, only when the container has its own (not ``--network
  host``, whose settings are the host's, nor ``container:NAME``, another container's).

They are written to the container's /proc/sys before its command starts (a key the
kernel does not know, or a value it refuses, fails the start naming the file).
"""

from __future__ import annotations

import re

_IPC = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_KEY = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+\Z", re.IGNORECASE)


def parse_sysctl(text: str, *, network: str) -> tuple[str, str]:
    """``net.ipv4.ip_forward=1`` -> (key, value), refused unless namespaced; ``network``
    is the container's --network."""
    key, eq, value = text.partition("=")
    what = f"invalid --sysctl {text!r}"
    if not eq or not _KEY.match(key):
        raise ValueError(f"{what}: use KEY=VALUE (e.g. net.ipv4.ip_forward=1)")
    if "\n" in value or "\0" in value:
        raise ValueError(f"{what}: the value holds a newline or a NUL byte")
    if key == "kernel.hostname":
        raise ValueError(f"{what}: set the hostname with --hostname")
    if key.startswith("net."):
        if network == "host":
            raise ValueError(
                f"{what}: with --network host it would change the host's network; "
                "net.* needs the container's own"
            )
        if network.startswith("container:"):
            raise ValueError(
                f"{what}: with --network {network} it would change that container's network"
            )
    elif not (key in _IPC or key.startswith("fs.mqueue.") or key == "kernel.domainname"):
        raise ValueError(
            f"{what}: {key} is not namespaced (only kernel.msg*, kernel.sem, kernel.shm*, "
            "fs.mqueue.*, kernel.domainname and net.* are): it would change the host"
        )
    return key, value


def proc_path(key: str) -> str:
    """The container path of a sysctl's file: net.ipv4.ip_forward -> /proc/sys/net/ipv4/..."""
    return "/proc/sys/" + key.replace(".", "/")

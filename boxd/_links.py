"""Docker's legacy links on the default ``bridge`` network (``--link NAME:ALIAS``).

The default bridge has no name server: a link is how one container finds another there.
At each start of the linking container, for every container it links to (which must run
and be on the default bridge) it gets a line of /etc/hosts, ``ADDRESS ALIAS HOSTNAME
[NAME]``, and Docker's link variables in its environment (before its own, which win):

- ``ALIAS_NAME=/ME/ALIAS``;
- per port the linked container exposes (its image's, ``--expose``, ``-p``):
  ``ALIAS_PORT_80_TCP=tcp://ADDRESS:80`` and its ``_ADDR``, ``_PORT`` and ``_PROTO``;
  ``ALIAS_PORT`` for the lowest; for a run of consecutive ports, the run's ``_START``,
  ``_ADDR``, ``_PORT_START`` and ``_PORT_END`` under its first port;
- ``ALIAS_ENV_KEY=VALUE`` for each of the linked container's variables but HOME and PATH.

ALIAS in a variable's name is upper-cased, with ``-`` and ``.`` as ``_``.  An address on
the default bridge is kept until its container is removed, so the lines stay right across
the linked container's restarts.  On a user network a link is only a name its DNS
answers (see :func:`boxd._network.link_aliases`).
"""

from __future__ import annotations

import attrs

from ._records import Container

_NOT_PASSED = frozenset({"HOME", "PATH"})


@attrs.frozen
class Legacy:
    """What a container's links give it at a start: /etc/hosts lines, variables."""

    hosts: tuple[str, ...] = ()
    env: tuple[str, ...] = ()


def parse(link: str) -> tuple[str, str]:
    """``NAME:ALIAS`` (as stored: see ContainerConfig.links) as (NAME, ALIAS)."""
    name, _, alias = link.partition(":")
    return name, alias or name


def exposed(child: Container) -> list[tuple[int, str]]:
    """The ports ``child`` exposes, as (number, protocol), sorted as Docker (28) sorts
    them: the tcp ones first, each protocol's by number."""
    config = child.config
    keys = {*config.exposed_ports, *config.expose, *(p.key for p in config.ports)}
    ports = set()
    for key in keys:
        number, _, proto = key.partition("/")
        ports.add((int(number), proto or "tcp"))
    return sorted(ports, key=lambda p: (p[1] != "tcp", p[1], p[0]))


def hosts_line(address: str, alias: str, child: Container) -> str:
    hostname = child.config.hostname or child.short_id
    names = [alias, hostname]
    if child.name not in names:
        names.append(child.name)
    return f"{address}\t{' '.join(names)}"


def variables(parent: str, alias: str, address: str, child: Container) -> list[str]:
    """Docker's link variables of ``child`` (at ``address``) for container ``parent``."""
    prefix = alias.upper().replace("-", "_").replace(".", "_")
    ports = exposed(child)
    env = []
    if ports:
        number, proto = ports[0]
        env.append(f"{prefix}_PORT={proto}://{address}:{number}")
    for first, last, proto in _runs(ports):
        if first == last:
            continue
        key = f"{prefix}_PORT_{first}_{proto.upper()}"
        env += [
            f"{key}_START={proto}://{address}:{first}",
            f"{key}_PORT_START={first}",
            f"{key}_END={proto}://{address}:{last}",
            f"{key}_PORT_END={last}",
        ]
    for number, proto in ports:
        key = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [
            f"{key}={proto}://{address}:{number}",
            f"{key}_ADDR={address}",
            f"{key}_PORT={number}",
            f"{key}_PROTO={proto}",
        ]
    env.append(f"{prefix}_NAME=/{parent}/{alias}")
    for item in child.config.env:
        key, eq, value = item.partition("=")
        if eq and key not in _NOT_PASSED:
            env.append(f"{prefix}_ENV_{key}={value}")
    return env


def _runs(ports: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """Consecutive ports of one protocol as (first, last, protocol)."""
    runs: list[tuple[int, int, str]] = []
    for proto in dict.fromkeys(p for _, p in ports):
        numbers = [n for n, p in ports if p == proto]
        first = last = numbers[0]
        for n in numbers[1:]:
            if n != last + 1:
                runs.append((first, last, proto))
                first = n
            last = n
        runs.append((first, last, proto))
    return runs


def shown(parent: Container) -> list[str]:
    """HostConfig.Links as Docker shows a default-bridge container's: ``/NAME:/ME/ALIAS``."""
    return [f"/{name}:/{parent.name}/{alias}" for name, alias in map(parse, parent.config.links)]

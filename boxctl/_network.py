"""``boxctl network ...`` and ``boxctl port``, and the configuration of the run options that
publish ports and name servers (their table is in boxctl._runopts)."""

from __future__ import annotations

import sys

from ._args import (
    ANY,
    APPEND,
    BOOL,
    FLAG,
    INT,
    ONE,
    PRUNE_FILTER,
    REST,
    SOME,
    VALUE,
    Args,
    Command,
    Opt,
    confirm,
    filters_of,
    print_removed,
    prune_filters,
    run_subcommand,
)
from ._client import CliError, call
from ._files import label_list

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any


def published(args: Args) -> dict[str, Any]:
    """The run/create options about ports and names, as ContainerConfig fields."""
    ports: list[Any] = []
    expose: list[str] = []
    if args.publish or args.expose:
        from boxd import _portspecs  # (only then, though it imports no attrs)
    try:
        ports += [p for spec in args.publish for p in _portspecs.parse_publish(spec)]
        expose += [key for spec in args.expose for key in _portspecs.parse_expose(spec)]
    except ValueError as exc:
        raise CliError(str(exc), 125) from None
    # -P publishes what is exposed, and what -p names is exposed too (Docker).
    exposed = list(dict.fromkeys([*expose, *(p.key for p in ports)]))
    publish_all = args.publish_all
    networks = network_config(args)
    if networks["network"] == "host" and (ports or publish_all):
        # As Docker: the host's ports are the container's own, so there is nothing to publish.
        print(
            "WARNING: Published ports are discarded when using host network mode", file=sys.stderr
        )
        ports, publish_all = [], False
    return {
        **networks,
        "ports": [
            {
                "container_port": p.container_port,
                "protocol": p.protocol,
                "host_ip": p.host_ip,
                "host_port": p.host_port,
                "host_port_end": p.host_port_end,
            }
            for p in ports
        ],
        "expose": exposed,
        "publish_all": publish_all,
        "links": links(args.link),
        "dns": args.dns,
        "dns_search": args.dns_search,
        "dns_options": [*args.dns_option, *args.dns_opt],
    }


def _attachment(value: str) -> dict[str, Any]:
    """One ``--network``: a network (or mode) by name, or Docker 25's ``name=NET`` with
    ``alias=A`` (repeatable), ``ip=IP``, ``ip6=IP``, ``mac-address=MAC``, ``driver-opt=K=V``
    (repeatable), ``gw-priority=N``, ``link-local-ip=IP`` (repeatable) (comma separated,
    quoted as CSV), as a join; Docker's words for a bad one."""
    join: dict[str, Any] = {
        "network": value, "aliases": [], "ip": "", "ip6": "", "mac": "", "driver_opts": [],
        "gw_priority": 0, "link_local_ips": [],
    }  # fmt: skip
    if "=" not in value:
        return join
    import csv

    bad = f'invalid argument "{value}" for "--network" flag'
    try:
        fields = next(csv.reader([value]), [])
    except csv.Error as exc:
        raise CliError(f"{bad}: {exc}", 125) from None
    join["network"] = ""
    for field in fields:
        key, eq, val = field.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not eq or not key:
            raise CliError(f"{bad}: invalid field {field}", 125)
        if key == "name":
            join["network"] = val
        elif key == "alias":
            join["aliases"].append(val)
        elif key in ("ip", "ip6"):
            join[key] = val
        elif key == "mac-address":
            join["mac"] = val
        elif key == "driver-opt":
            opt, eq, opt_value = val.partition("=")
            if not eq or not opt.strip():
                raise CliError(f"{bad}: invalid key/value pair format in driver options", 125)
            join["driver_opts"].append(f"{opt.strip()}={opt_value.strip()}")
        elif key == "gw-priority":
            try:
                join["gw_priority"] = int(val)
            except ValueError:
                raise CliError(f"{bad}: invalid gw-priority ({val}): invalid syntax", 125) from None
        elif key == "link-local-ip":
            join["link_local_ips"].append(val)
        else:
            raise CliError(f"{bad}: invalid field key {key}", 125)
    if not join["network"]:
        raise CliError(f"{bad}: network name/id is not specified", 125)
    return join


def _own(network: str) -> bool:
    """A network the container is on with an interface and address of its own."""
    return network not in ("host", "none") and not network.startswith("container:")


def network_config(args: Args) -> dict[str, Any]:
    """``--network`` (repeatable: Docker 25's several networks at run, each a name or the
    fields above) with ``--network-alias``, ``--ip``, ``--ip6``, ``--mac-address`` and
    ``--link-local-ip`` on the first, refused where Docker refuses them: the
    configuration's network, its aliases and, with more to say than those, every join (the
    first first), as the Engine API's EndpointsConfig gives them."""
    from boxd import _netconfig

    values = ["none"] if args.isolate_network else (args.network or ["bridge"])
    joins = [_attachment(v) for v in values]
    first = joins[0]
    for flag, key, given in (
        ("--network-alias", "aliases", args.network_alias),
        ("--ip", "ip", args.ip),
        ("--ip6", "ip6", args.ip6),
        ("--mac-address", "mac", args.mac_address),
        ("--link-local-ip", "link_local_ips", args.link_local_ip),
    ):
        if not given:
            continue
        if first[key]:
            per = {
                "aliases": "alias",
                "ip": "IPv4 address",
                "ip6": "IPv6 address",
                "link_local_ips": "link-local IP addresses",
            }
            raise CliError(
                f"conflicting options: cannot specify both {flag} and per-network "
                f"{per.get(key, 'MAC address')}",
                125,
            )
        first[key] = given
    names = [j["network"] for j in joins]
    for name in names:
        if names.count(name) > 1:
            raise CliError(f'network "{name}" is specified multiple times', 125)
    if len(joins) > 1 and not all(_own(n) and n not in ("bridge", "default") for n in names):
        raise CliError(
            "conflicting options: cannot attach both user-defined and non-user-defined "
            "network-modes",
            125,
        )
    try:
        for join in joins:
            network = join["network"]
            for flag, key in (("--ip", "ip"), ("--ip6", "ip6")):
                if join[key] and (not _own(network) or network == "bridge"):
                    raise ValueError(
                        f"invalid {flag} {join[key]!r}: user specified IP address is "
                        "supported on user defined networks only"
                    )
            if join["mac"] and not _own(network):
                raise ValueError("conflicting options: mac-address and the network mode")
            if join["link_local_ips"] and not _own(network):  # the Engine API's words
                raise ValueError(
                    f"the container's network is {network!r}: it cannot have an address or "
                    "MAC of its own"
                )
            join["ip"] = join["ip"] and _netconfig.check_ipv4(join["ip"], "--ip")
            join["ip6"] = join["ip6"] and _netconfig.check_ipv6(join["ip6"], "--ip6")
            join["mac"] = join["mac"] and _netconfig.check_mac(join["mac"])
            _netconfig.check_driver_opts(join["driver_opts"])
            join["link_local_ips"] = [
                _netconfig.check_link_local(a) for a in join["link_local_ips"]
            ]
    except ValueError as exc:
        raise CliError(str(exc), 125) from None
    found: dict[str, Any] = {"network": first["network"], "network_aliases": first["aliases"]}
    extras = ("ip", "ip6", "mac", "driver_opts", "gw_priority", "link_local_ips")
    if len(joins) > 1 or any(j[key] for j in joins for key in extras):
        found["networks"] = joins
    return found


def cmd_port(args: Args) -> int:
    from boxd._portspecs import host_port_text

    found = call(args.socket, {"type": "InspectRequest", "container": args.container})
    bindings = found["container"]["state"]["network"]["ports"]
    wanted = args.port[0] if args.port else ""
    if wanted and "/" not in wanted:
        wanted += "/tcp"
    lines = []
    for b in bindings:
        key = f"{b['container_port']}/{b['protocol']}"
        if wanted and key != wanted:
            continue
        where = host_port_text(b["host_ip"], b["host_port"])
        lines.append(where if wanted else f"{key} -> {where}")
    if wanted and not lines:
        raise CliError(f"no public port {wanted!r} published for {args.container}")
    for line in lines:
        print(line)
    return 0


def _by_family(values: list[str], flag: str) -> tuple[str, str]:
    """``--subnet``, ``--gateway`` or ``--ip-range`` given for each family at most once:
    (IPv4, IPv6)."""
    found = {4: "", 6: ""}
    for value in values:
        family = 6 if ":" in value else 4
        if found[family]:
            raise CliError(
                f"invalid {flag} {value!r}: one IPv{family} {flag} per network "
                f"({found[family]!r} is given)"
            )
        found[family] = value
    return found[4], found[6]


def _aux_addresses(values: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--aux-address NAME=IP`` (repeatable): (IPv4's, IPv6's), checked by the daemon."""
    found: dict[int, dict[str, str]] = {4: {}, 6: {}}
    for value in values:
        name, eq, address = value.partition("=")
        if not eq:
            raise CliError(f"invalid --aux-address {value!r}: use NAME=IP")
        family = found[6 if ":" in address else 4]
        if name in family:
            raise CliError(f"invalid --aux-address {value!r}: {name} is given twice")
        family[name] = address
    return found[4], found[6]


def _create(args: Args) -> int:
    if args.driver not in ("bridge", "macvlan", "ipvlan"):
        raise CliError(f"invalid network driver {args.driver!r}: use bridge, macvlan or ipvlan")
    labels = dict(item.partition("=")[::2] for item in label_list([], args.label))
    subnet, subnet6 = _by_family(args.subnet, "--subnet")
    gateway, gateway6 = _by_family(args.gateway, "--gateway")
    ip_range, ip_range6 = _by_family(args.ip_range, "--ip-range")
    aux, aux6 = _aux_addresses(args.aux_address)
    request = {"type": "NetworkCreateRequest", "name": args.name, "subnet": subnet}
    opts = dict(item.partition("=")[::2] for item in args.opt)
    options = {
        "labels": labels,
        "gateway": gateway,
        "ip_range": ip_range,
        "options": opts,
        "internal": args.internal,
        "ipv6": args.ipv6,
        "subnet6": subnet6,
        "gateway6": gateway6,
        "ip_range6": ip_range6,
        "ipv4": args.ipv4,
        "aux_addresses": aux,
        "aux_addresses6": aux6,
        "attachable": args.attachable,
        "driver": args.driver,
    }
    reply = call(args.socket, {**request, **options})
    print(reply["network"]["id"])
    return 0


def _row(n: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """What ``network ls --format`` templates see (Docker's fields)."""
    import time

    labels = n["labels"]
    created = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(n["created_at"]))
    return {
        "ID": n["id"][:12] if trunc else n["id"],
        "Name": n["name"],
        "Driver": n["driver"],
        "Scope": "local",
        "IPv6": "true" if n["ipv6"] else "false",
        "Internal": "true" if n["internal"] else "false",
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Label": lambda key: labels.get(key, ""),
        "CreatedAt": created,
    }


def _natural(name: str) -> list[Any]:
    """The docker CLI's order of ``network ls``: by name, the numbers in it as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _ls(args: Args) -> int:
    filters = filters_of(args.filter, "name=, id=, label=, driver=, scope=, type=, dangling=")
    request = {"type": "NetworkListRequest", "filters": filters}
    networks = call(args.socket, request)["networks"]
    networks.sort(key=lambda n: _natural(n["name"]))
    rows = [_row(n, not args.no_trunc) for n in networks]
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    fmt = args.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    if fmt == "json":
        import json

        for r in rows:
            del r["Label"]
            print(json.dumps(r))
        return 0
    from ._template import print_formatted

    print_formatted(fmt, rows, {"ID": "NETWORK ID", "CreatedAt": "CREATED AT"}, strict=True)
    return 0


def _inspect(args: Args) -> int:
    from ._inspect import show

    return show(args, args.networks, "network")


def _rm(args: Args) -> int:
    status = 0
    for ref in args.networks:
        try:
            call(args.socket, {"type": "NetworkRemoveRequest", "network": ref})
        except CliError as exc:
            if args.force and exc.kind == "not_found":
                continue  # as Docker's network rm -f
            print(f"boxctl: {exc}", file=sys.stderr)
            status = 1
            continue
        print(ref)
    return status


def links(given: list[str]) -> list[str]:
    """``--link NAME[:ALIAS]`` values as the daemon keeps them (``NAME:ALIAS``)."""
    return [link if ":" in link else f"{link}:{link}" for link in given]


def _driver_opts(given: list[str]) -> list[str]:
    """``--driver-opt KEY=VALUE`` values: several in one comma-separated, read as CSV, as
    the docker CLI's (``"com.docker.network.endpoint.sysctls=A=1,B=0"`` in quotes is one)."""
    import csv

    try:
        return [o.strip() for row in csv.reader(given) for o in row if o.strip()]
    except csv.Error as exc:
        raise CliError(f"invalid --driver-opt {given!r}: {exc}") from None


def _connect(args: Args) -> int:
    join = {
        "network": args.network,
        "aliases": args.alias,
        "ip": args.ip,
        "ip6": args.ip6,
        "driver_opts": _driver_opts(args.driver_opt),
        "gw_priority": args.gw_priority,
        "links": links(args.link),
        "link_local_ips": args.link_local_ip,
    }
    for opt in join["driver_opts"]:
        key, eq, _ = opt.partition("=")
        if not (key and eq):
            raise CliError(f"invalid --driver-opt {opt!r}: use KEY=VALUE")
    # Before the container is looked up, as the docker CLI checks its flags.
    if join["links"] or args.link_local_ip:
        from boxd import _netconfig

        for link in join["links"]:
            try:
                _netconfig.check_link_format(link)
            except ValueError as exc:
                raise CliError(f'invalid argument "{link}" for "--link" flag: {exc}') from None
        try:
            for address in args.link_local_ip:
                _netconfig.check_link_local(address)
        except ValueError as exc:
            raise CliError(str(exc)) from None
    call(args.socket, {"type": "NetworkConnectRequest", "container": args.container, "join": join})
    return 0


def _disconnect(args: Args) -> int:
    request = {
        "type": "NetworkDisconnectRequest",
        "network": args.network,
        "container": args.container,
        "force": args.force,
    }
    call(args.socket, request)
    return 0


def _prune(args: Args) -> int:
    warning = "WARNING! This will remove all custom networks not used by at least one container."
    if not confirm(warning, args.force):
        return 0
    request = {"type": "NetworkPruneRequest", "filters": prune_filters(args.filter)}
    print_removed("Deleted Networks:", call(args.socket, request)["removed"])
    return 0


SUBCOMMANDS = (
    Command(
        "create",
        _create,
        "create a network",
        (
            Opt(
                "-d",
                "--driver",
                kind=VALUE,
                default="bridge",
                help="bridge (default), macvlan or ipvlan (-o parent=LINK)",
            ),
            Opt(
                "--subnet",
                kind=APPEND,
                help="an IPv4 CIDR (default: a free one); with --ipv6, an IPv6 one too",
            ),
            Opt("--gateway", kind=APPEND, help="the bridge's address in a subnet (each family)"),
            Opt("--ipv6", kind=FLAG, help="dual stack: IPv6 addresses too (Docker's --ipv6)"),
            Opt("--ipv4", kind=BOOL, default=True, help="IPv4 (--ipv4=false: IPv6 only)"),
            Opt("--ip-range", kind=APPEND, help="a CIDR in a subnet to pick from (each family)"),
            Opt(
                "--aux-address",
                kind=APPEND,
                metavar="NAME=IP",
                help="an address of a subnet no container is given",
            ),
            Opt("--internal", kind=FLAG, help="no way out nor in: its containers reach each other"),
            Opt("--attachable", kind=FLAG, help="kept and shown (a bridge network is, anyway)"),
            Opt("-l", "--label", kind=APPEND, metavar="KEY=VALUE", help="a label"),
            Opt(
                "-o",
                "--opt",
                kind=APPEND,
                metavar="KEY=VALUE",
                help="a driver option: com.docker.network.driver.mtu, ...bridge.name",
            ),
        ),
        (("name", ONE, "NAME"),),
    ),
    Command(
        "ls",
        _ls,
        "list networks",
        (
            Opt("-q", "--quiet", kind=FLAG, help="only ids"),
            Opt("--no-trunc", kind=FLAG, help="whole ids"),
            Opt(
                "-f",
                "--filter",
                kind=APPEND,
                metavar="KEY=VALUE",
                help="name, id, label, driver, scope, type=custom|builtin, dangling=true|false",
            ),
            Opt("--format", kind=VALUE, help="table, json, or a Go template ({{.Name}})"),
        ),
        aliases=("list",),
    ),
    Command(
        "inspect",
        _inspect,
        "show networks as docker network inspect does",
        (Opt("-f", "--format", kind=VALUE, help="a Go template ({{.IPAM.Config}})"),),
        (("networks", SOME, "NETWORK"),),
    ),
    Command(
        "rm",
        _rm,
        "remove networks",
        (Opt("-f", "--force", kind=FLAG, help="no error if a network is not there"),),
        (("networks", SOME, "NETWORK"),),
        aliases=("remove",),
    ),
    Command(
        "prune",
        _prune,
        "remove every network no container names",
        (Opt("-f", "--force", kind=FLAG, help="do not ask for confirmation"), PRUNE_FILTER),
    ),
    Command(
        "connect",
        _connect,
        "connect a container to a network (a running one at once)",
        (
            Opt("--alias", kind=APPEND, metavar="NAME", help="another name on that network"),
            Opt("--ip", kind=VALUE, default="", help="its IPv4 address there"),
            Opt("--ip6", kind=VALUE, default="", help="its IPv6 address there"),
            Opt("--driver-opt", kind=APPEND, metavar="KEY=VALUE", help="an endpoint option"),
            Opt(
                "--link",
                kind=APPEND,
                metavar="NAME[:ALIAS]",
                help="reach container NAME as ALIAS on that network",
            ),
            Opt(
                "--link-local-ip",
                kind=APPEND,
                metavar="ADDR",
                help="one more address there (169.254.0.0/16, fe80::/10)",
            ),
            Opt(
                "--gw-priority",
                kind=INT,
                default=0,
                help="the highest routes by default (Docker 28's)",
            ),
        ),
        (("network", ONE, "NETWORK"), ("container", ONE, "CONTAINER")),
    ),
    Command(
        "disconnect",
        _disconnect,
        "disconnect a container from a network",
        (Opt("-f", "--force", kind=FLAG, help="accepted, as Docker's"),),
        (("network", ONE, "NETWORK"), ("container", ONE, "CONTAINER")),
    ),
)
SUB_BY_NAME = {name: c for c in SUBCOMMANDS for name in (c.name, *c.aliases)}


def cmd_network(args: Args) -> int:
    return run_subcommand(COMMANDS[0], args, SUB_BY_NAME)


COMMANDS = (
    Command(
        "network",
        cmd_network,
        "manage networks",
        (),
        (("words", REST, "COMMAND ..."),),
        subcommands=lambda: SUB_BY_NAME.items(),
    ),
    Command(
        "port",
        cmd_port,
        "show a container's published ports",
        (),
        (("container", ONE, "CONTAINER"), ("port", ANY, "PORT[/PROTO]")),
    ),
)

"""``--platform os/arch[/variant]`` of run and create (the Engine API's ``platform``).

As Docker: an image stored for another platform than the one asked for is not used;
``run``/``create`` then pull the platform asked for (``--pull missing``, the docker CLI
after a create answered 404), or, with ``--pull never``, fail with Docker's words::

    image with reference busybox was found but does not match the specified platform:
    wanted linux/arm64, actual: linux/amd64

An image's platform is its configuration's ``os``, ``architecture`` and ``variant``
(none given: the host's, as for ``default`` and a root filesystem directory).  Names are
compared as containerd normalizes them (``x86_64`` is ``amd64``, ``aarch64`` ``arm64``,
``arm64/v8`` ``arm64``); a variant not given on either side matches any.

No imports beyond the standard library's ``platform``: boxctl uses this before it asks
the daemon anything.
"""

from __future__ import annotations

import platform as _host

_ARCH = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "armv7l": "arm",
    "i386": "386",
    "i686": "386",
}

Platform = tuple[str, str, str]  # os, architecture, variant ("": any)


class PlatformMismatch(LookupError):
    """A stored image is for another platform (Docker answers it as "not found", so a
    client pulls the platform it asked for)."""


def _normal(os_name: str, arch: str, variant: str) -> Platform:
    os_name, arch, variant = os_name.lower(), arch.lower(), variant.lower()
    arch = _ARCH.get(arch, arch)
    if arch == "arm64" and variant == "v8":
        variant = ""
    return os_name, arch, variant


def parse(text: str) -> Platform:
    """``linux/arm64``, ``linux/arm/v7``: ValueError naming the text otherwise."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(p.strip() == p and p for p in parts):
        raise ValueError(f"invalid platform {text!r}: use os/arch[/variant], e.g. linux/amd64")
    return _normal(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def of_import(text: str) -> Platform:
    """An import's platform (``docker import --platform``): ``os[/arch[/variant]]``, the
    host's architecture when none is given, as dockerd takes it; Linux only."""
    wanted = parse(text) if "/" in text else None
    if wanted is None:
        if not text or text.strip() != text:
            raise ValueError(
                f"invalid platform {text!r}: use os[/arch[/variant]], e.g. linux/amd64"
            )
        wanted = (text.lower(), *host()[1:])
    if wanted[0] != "linux":
        raise ValueError(f"invalid platform {text!r}: operating system is not supported (linux is)")
    return wanted


def host() -> Platform:
    machine = _host.machine()
    return _normal("linux", machine, "v7" if machine == "armv7l" else "")


# The x86-64 psABI's micro-architecture levels v2, v3 and v4: the CPU flags (as
# /proc/cpuinfo names them) each adds to the one below.  Docker's pull reads them with
# cpuid (go-archvariant) to choose an index's amd64 variant.
_AMD64_LEVELS = (
    frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    frozenset({"abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"}),
    frozenset({"avx512bw", "avx512cd", "avx512dq", "avx512f", "avx512vl"}),
)


def amd64_level(cpuinfo: str = "/proc/cpuinfo") -> int:
    """The host CPU's x86-64 level, 1 to 4: the highest whose features it all has."""
    flags: set[str] = set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    break
    except OSError:
        return 1
    level = 1
    for features in _AMD64_LEVELS:
        if not features <= flags:
            break
        level += 1
    return level


def default() -> Platform:
    """What a pull takes from an index when no platform is asked for: the host's, its
    x86-64 level the amd64 variant (an ``amd64/v3`` image where the CPU runs it, never a
    ``v4`` one where it does not), as Docker's pull."""
    os_name, arch, variant = host()
    if arch == "amd64":
        level = amd64_level()
        variant = f"v{level}" if level > 1 else ""
    return os_name, arch, variant


def _strict(os_name: str, arch: str, variant: str) -> Platform:
    """A platform as containerd normalizes it to compare two exactly (``amd64/v1`` is
    ``amd64``, ``arm`` ``arm/v7``, ``arm64/v8`` ``arm64``)."""
    os_name, arch, variant = _normal(os_name, arch, variant)
    if arch == "amd64" and variant == "v1":
        variant = ""
    elif arch == "arm" and variant in ("", "5", "6", "7", "8"):
        variant = "v" + (variant or "7")
    elif arch == "arm64" and variant in ("8", "v8.0"):
        variant = ""
    elif arch == "arm64" and variant in ("9", "9.0", "v9.0"):
        variant = "v9"
    return os_name, arch, variant


def compatible(wanted: Platform) -> list[Platform]:
    """The platforms whose images run where ``wanted`` runs, best first (containerd's
    ``platforms.Only``, which Docker's pull matches an index's entries with): amd64/vN
    also takes the amd64 levels below N, then 386; arm/vN arm down to v5; arm64/v8.N the
    arm64 v8 levels below it (v9.N: v9's, then v8's up to v8.N+5), then arm v8 down to
    v5."""
    os_name, arch, variant = _strict(*wanted)
    version = int(variant[1:]) if variant[:1] == "v" and variant[1:].isdigit() else 0
    if arch == "amd64" and (version or not variant):
        amd64 = [(os_name, arch, f"v{n}" if n > 1 else "") for n in range(version or 1, 0, -1)]
        return [*amd64, (os_name, "386", "")]
    if arch == "arm" and version > 5:
        return [(os_name, arch, f"v{n}") for n in range(version, 4, -1)]
    major, _, minor = (variant or "v8")[1:].partition(".")
    if arch == "arm64" and major in ("8", "9") and minor in ("", *"0123456789"):
        level = int(minor or 0)
        levels = [(9, level), (8, min(level + 5, 9))] if major == "9" else [(8, level)]
        arm64 = [
            (os_name, arch, f"v{top}.{n}" if n else ("v9" if top == 9 else ""))
            for top, highest in levels
            for n in range(highest, -1, -1)
        ]
        return [*arm64, *((os_name, "arm", f"v{n}") for n in range(8, 4, -1))]
    return [(os_name, arch, variant)]


def rank(wanted: list[Platform], entry: dict[str, object]) -> int | None:
    """Where an index entry's ``platform`` object comes in ``wanted`` (the list
    :func:`compatible` gives; an entry without one after them all, as Docker takes it);
    None: it does not run there."""
    fields = [entry.get(k) for k in ("os", "architecture", "variant")]
    if not any(fields):
        return len(wanted)
    os_name, arch, variant = (f if isinstance(f, str) else "" for f in fields)
    platform = _strict(os_name, arch, variant)
    return wanted.index(platform) if platform in wanted else None


def text(platform: Platform) -> str:
    return "/".join(p for p in platform if p)


def of_config(config: dict[str, object]) -> Platform:
    """An image configuration's platform (the host's where it names none)."""
    os_name, arch, variant = (config.get(k) for k in ("os", "architecture", "variant"))
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return host()
    return _normal(os_name, arch, variant if isinstance(variant, str) else "")


def matches(wanted: Platform, actual: Platform) -> bool:
    return wanted[:2] == actual[:2] and (not wanted[2] or not actual[2] or wanted[2] == actual[2])


def check(reference: str, wanted: Platform, actual: Platform) -> None:
    """:class:`PlatformMismatch` in Docker's words when ``actual`` is not ``wanted``."""
    if not matches(wanted, actual):
        raise PlatformMismatch(
            f"image with reference {reference} was found but does not match the specified "
            f"platform: wanted {text(wanted)}, actual: {text(actual)}"
        )

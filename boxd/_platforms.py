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


def host() -> Platform:
    machine = _host.machine()
    return _normal("linux", machine, "v7" if machine == "armv7l" else "")


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

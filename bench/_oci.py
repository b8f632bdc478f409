"""6. The OCI runtime: ``boxd-runtime`` against runc (and crun) through the command line,
and under Podman (conmon) against Podman with runc.

The cycle is what conmon and containerd's shim do for each container, as separate
processes: ``create`` (the init set up, waiting), ``start``, ``delete --force`` (of
``/bin/true``, which may still be running: delete then kills it).  Targets (issue #19):
the cycle within 2x runc, ``podman --runtime boxd-runtime run --rm`` within 1.2x
``podman --runtime runc``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from ._measure import shell_script
from ._report import OURS, PEER, Case

if TYPE_CHECKING:
    from ._cases import Bench


def cases(bench: Bench) -> list[Case]:
    runs = bench.sizes.runs
    cycle = Case("oci-cycle", "6a. OCI runtime: create + start + delete of /bin/true", "ms")
    for name, role, wrap in (
        ("boxd-runtime", OURS, False),
        ("runc", PEER, False),
        ("crun", PEER, True),
    ):
        cycle.measure(
            f"{name} create, start, delete",
            role,
            partial(_timed, bench, _cycle, name, wrap=wrap),
            note="three processes, as conmon runs them" + (" (through cgns.sh)" if wrap else ""),
        )
    cycle.measure(
        "boxd-runtime run",
        OURS,
        lambda: bench.hyperfine([*bench.oci_run("boxd-runtime"), bench.name("boxd")], runs=runs),
        note="one process: create + start + wait + delete",
    )
    cycle.measure(
        "runc run",
        PEER,
        lambda: bench.hyperfine([*bench.oci_run("runc"), bench.name("runc")], runs=runs),
    )
    podman = Case("oci-podman", "6b. Podman with each runtime: run --rm of /bin/true", "ms")
    for name, role in (("boxd-runtime", OURS), ("runc", PEER)):
        podman.measure(
            f"podman --runtime {name} run --rm --rootfs",
            role,
            partial(_timed, bench, _podman, name, wrap=True),
            note="conmon, --network none, through cgns.sh",
        )
    return [cycle, podman]


def _timed(
    bench: Bench, argv: Callable[[Bench, str], list[str]], runtime: str, *, wrap: bool
) -> list[float]:
    return bench.hyperfine(argv(bench, runtime), runs=bench.sizes.runs, wrap=wrap)


def _podman(bench: Bench, runtime: str) -> list[str]:
    return [*bench.podman_run("--rm", runtime=bench.runtime_path(runtime)), "/bin/true"]


def _cycle(bench: Bench, runtime: str) -> list[str]:
    """A script: create, start, delete --force of one container with ``runtime``."""
    base = bench.oci_run(runtime)  # RUNTIME --root STATE run --bundle BUNDLE
    program, root, bundle = shlex.quote(base[0]), shlex.quote(base[2]), shlex.quote(base[5])
    rt, cid = f"{program} --root {root}", bench.name("cycle")
    body = f"{rt} create --bundle {bundle} {cid} && {rt} start {cid} && {rt} delete --force {cid}"
    return shell_script(bench.work, f"oci-cycle-{runtime}", body)

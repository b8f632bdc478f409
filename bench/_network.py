"""10-12: networking.  What the default bridge adds to ``run --rm``; TCP throughput between
two containers on one bridge against a raw veth pair between two namespaces; a published
port through nftables DNAT against the container's own address (and through the daemon's
relay, which the host's loopback uses).

Everything here happens in the bench's own network namespace (bench/__main__.py): the
bridge, the rules, the two namespaces of the veth pair (made with ``ip netns`` and deleted
in a ``finally``) and 192.0.2.1, on a veth pair of that namespace, standing for one of the
host's own addresses (traffic to it is what nftables DNATs).
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

from ._measure import CommandFailed, run_checked
from ._report import BASELINE, OURS, REFERENCE, Case

if TYPE_CHECKING:
    from ._cases import Bench

HOST_ADDRESS = "192.0.2.1"  # TEST-NET-1, on a veth pair in the bench's namespace
IPERF_PORT = 5201
PUBLISHED_PORT = 15201


def network_cases(bench: Bench) -> list[Case]:
    return [_start_cost(bench), _bridge_throughput(bench), _published_throughput(bench)]


# ---- 10. what the bridge costs a run --------------------------------------------------


def _start_cost(bench: Bench) -> Case:
    case = Case("network-start", "10. boxctl run --rm default true: bridge against none", "ms")
    runs = bench.sizes.runs * 2
    samples: dict[str, list[float]] = {}

    def interleaved() -> None:
        """Both commands in turn, so the machine's load drifts over both alike."""
        if samples:
            return
        bridge = bench.boxctl("run", "--rm", "default", "true")
        none = bench.boxctl("run", "--rm", "--network", "none", "default", "true")
        for argv in (bridge, none):  # warm-up: the bridge made, the image prepared
            run_checked(argv)
        samples.update(bridge=[], none=[])
        for _ in range(runs):
            for key, argv in (("bridge", bridge), ("none", none)):
                began = time.perf_counter()
                run_checked(argv)
                samples[key].append((time.perf_counter() - began) * 1000)

    def of(key: str) -> Callable[[], list[float]]:
        def how() -> list[float]:
            interleaved()
            return samples[key]

        return how

    case.measure(
        "boxctl run --rm (bridge)",
        OURS,
        of("bridge"),
        note="veth pair, address, route, /etc/hosts; interleaved with the entry below",
    )
    case.measure("boxctl run --rm --network none", BASELINE, of("none"))
    case.measure(
        "bridge minus none (difference of medians)",
        REFERENCE,
        lambda: [statistics.median(samples["bridge"]) - statistics.median(samples["none"])],
        metric="difference",
        note="issue #15's target: at most 3 ms",
    )
    return case


# ---- 11, 12. throughput ------------------------------------------------------------------


def _seconds(bench: Bench) -> int:
    return 1 if bench.sizes.runs < 10 else 3


def _repeats(bench: Bench) -> int:
    return 1 if bench.sizes.runs < 10 else 4


def _iperf(client: list[str], address: str, port: int, seconds: int) -> float:
    """Gbit/s received in one ``iperf3 -c`` run (retried while the server comes up)."""
    deadline = time.monotonic() + 15
    while True:
        argv = [*client, "iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]
        try:
            report = json.loads(run_checked(argv, timeout=seconds + 30))
            if "error" not in report:
                return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9
            failure: Exception = CommandFailed(f"iperf3 to {address}:{port}: {report['error']}")
        except CommandFailed as exc:
            failure = exc
        if time.monotonic() > deadline:
            raise failure
        time.sleep(0.2)


def _box_server(bench: Bench, name: str, *publish: str) -> str:
    """A detached container serving iperf3; its address on the bridge."""
    bench.tools["iperf3"].require()
    run_checked(bench.boxctl("run", "-d", "--name", name, *publish, "default", "iperf3", "-s"))
    template = "{{.NetworkSettings.IPAddress}}"  # as with docker inspect
    return run_checked(bench.boxctl("inspect", "-f", template, name)).strip()


class _Interleaved:
    """Samples of several entries taken in turn (one of each, then again), so the load of
    a shared machine drifts over all alike; measured once, on the first entry's demand,
    and a failure is every entry's."""

    def __init__(self, measure: Callable[[_Interleaved], None]) -> None:
        self._measure = measure
        self.samples: dict[str, list[float]] = {}
        self._error: Exception | None = None

    def take(self, repeats: int, hows: dict[str, Callable[[], float]]) -> None:
        self.samples = {key: [] for key in hows}
        for _ in range(repeats):
            for key, how in hows.items():
                self.samples[key].append(how())

    def of(self, key: str) -> Callable[[], list[float]]:
        def how() -> list[float]:
            if not self.samples and self._error is None:
                try:
                    self._measure(self)
                except Exception as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            return self.samples[key]

        return how


@contextmanager
def _veth_pair() -> Iterator[tuple[str, str]]:
    """Two network namespaces joined by a veth pair (10.99.0.1 and .2); deleted after."""
    tag = secrets.token_hex(3)
    server, client = f"bench-a-{tag}", f"bench-b-{tag}"
    made = []
    try:
        for ns in (server, client):
            run_checked(["ip", "netns", "add", ns])
            made.append(ns)
        run_checked(["ip", "link", "add", "va", "netns", server, "type", "veth", "peer", "vb",
                     "netns", client])  # fmt: skip
        for ns, link, address in ((server, "va", "10.99.0.1"), (client, "vb", "10.99.0.2")):
            for step in (
                ["ip", "addr", "add", f"{address}/24", "dev", link],
                ["ip", "link", "set", link, "up"],
                ["ip", "link", "set", "lo", "up"],
            ):
                run_checked(["ip", "netns", "exec", ns, *step])
        yield server, client
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _bridge_throughput(bench: Bench) -> Case:
    case = Case("network-bridge", "11. iperf3 TCP: two containers on one bridge", "Gbit/s")
    seconds = _seconds(bench)

    def measure(into: _Interleaved) -> None:
        address = _box_server(bench, "bench-iperf")
        try:
            with _veth_pair() as (server, client):
                daemon = subprocess.Popen(
                    ["ip", "netns", "exec", server, "iperf3", "-s"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    container = bench.boxctl("run", "--rm", "default")
                    inside = ["ip", "netns", "exec", client]
                    into.take(
                        _repeats(bench),
                        {
                            "bridge": partial(_iperf, container, address, IPERF_PORT, seconds),
                            "veth": partial(_iperf, inside, "10.99.0.1", IPERF_PORT, seconds),
                        },
                    )
                finally:
                    daemon.kill()
                    daemon.wait()
        finally:
            run_checked(bench.boxctl("rm", "-f", "bench-iperf"))

    runs = _Interleaved(measure)
    case.measure(
        "container to container (bridge)",
        OURS,
        runs.of("bridge"),
        note=f"iperf3 -t {seconds}, the client a second container; higher is better",
    )
    case.measure(
        "namespace to namespace (raw veth pair)",
        BASELINE,
        runs.of("veth"),
        note="interleaved with the entry above; issue #15: at least 80%",
    )
    return case


def _published_throughput(bench: Bench) -> Case:
    case = Case("network-published", "12. iperf3 TCP from the host to a published port", "Gbit/s")
    seconds = _seconds(bench)

    def measure(into: _Interleaved) -> None:
        run_checked(["ip", "link", "add", "bench-host", "type", "veth", "peer", "bench-peer"])
        try:
            run_checked(["ip", "addr", "add", f"{HOST_ADDRESS}/32", "dev", "bench-host"])
            for link in ("bench-host", "bench-peer"):
                run_checked(["ip", "link", "set", link, "up"])
            publish = ("-p", f"{PUBLISHED_PORT}:{IPERF_PORT}")
            address = _box_server(bench, "bench-iperf-p", *publish)
            try:
                into.take(
                    _repeats(bench),
                    {
                        "nat": partial(_iperf, [], HOST_ADDRESS, PUBLISHED_PORT, seconds),
                        "direct": partial(_iperf, [], address, IPERF_PORT, seconds),
                        "relay": partial(_iperf, [], "127.0.0.1", PUBLISHED_PORT, seconds),
                    },
                )
            finally:
                run_checked(bench.boxctl("rm", "-f", "bench-iperf-p"))
        finally:
            subprocess.run(["ip", "link", "del", "bench-host"], capture_output=True)

    runs = _Interleaved(measure)
    case.measure(
        "host address -> published port (nftables DNAT)",
        OURS,
        runs.of("nat"),
        note=f"-p {PUBLISHED_PORT}:{IPERF_PORT}, to {HOST_ADDRESS}; higher is better",
    )
    case.measure(
        "host -> the container's own address (no NAT)",
        BASELINE,
        runs.of("direct"),
        note="interleaved with the others; issue #15: the DNAT path at least 80% of this",
    )
    case.measure(
        "127.0.0.1 -> published port (boxd's relay)",
        OURS,
        runs.of("relay"),
        note="loopback is not DNATed: the daemon relays it (Docker's userland proxy)",
    )
    return case

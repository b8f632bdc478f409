"""Fuzz boxd's Docker Engine API with schemathesis, against moby's description of it.

Run as root through ``nox -s fuzz`` (not part of ``tests`` nor CI), which installs
schemathesis; see the README's "schemathesis against moby's API description".  The tool
moves itself into a network namespace of its own, starts a boxd on a scratch root in it,
forwards ``127.0.0.1:2375`` there to the daemon's Docker socket (schemathesis speaks HTTP
over TCP only), and runs rounds of generated requests:

``all``        every operation, data that fits the description;
``negative``   every operation, data that does not;
``streaming``  the streaming endpoints with ``follow``/``stream`` on, each cut after its
               first bytes or a short wait, as a client that goes away;
``writes``     the creates and updates, more examples each; a container created is also
               started and removed;
``stateful``   schemathesis's state machine, which chains the operations whose answers
               name what another takes (a volume created, then inspected, ...).

Before each operation of a round the fixtures are there again (a running container, an
image, a network, a volume, an exec), and half of the cases name them in the path, so
that path parameters hit real objects.  Every request first passes :func:`fuzz_rules.make_safe`,
which strips what could touch the host.  After the rounds the daemon must answer, its
open files must be back to their count before them, and nothing may be left (containers,
volumes, networks, images, mounts, cgroups, shims, links); failures are printed grouped
by endpoint and check.  Everything is removed at the end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
import yaml
from fuzz_rules import known, make_safe, nullable, safe_query, without_nullable
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup

from boxd._mountinfo import mount_points
from boxd._supervisor import cgroup_name

MOBY_TAG = "v28.2.2"  # API 1.50, boxd's
MOBY_REPO = os.environ.get("BOXD_MOBY_REPO", "/work/.mirror/moby+moby/repo")
PORT = 2375  # Docker's plain TCP port, free in our own network namespace
BASE_URL = f"http://127.0.0.1:{PORT}"
ROUNDS = ("all", "negative", "streaming", "writes", "stateful")
DEFAULT_CHECKS = ("not_a_server_error", "response_schema_conformance", "content_type_conformance")
# The endpoints that stream, or hijack the connection: a read timeout on them is their
# nature, not a failure.
STREAMING = frozenset(
    {
        "/events",
        "/containers/{id}/logs",
        "/containers/{id}/attach",
        "/containers/{id}/attach/ws",
        "/containers/{id}/stats",
        "/containers/{id}/wait",
        "/containers/{id}/export",
        "/exec/{id}/start",
        "/build",
        "/images/create",
        "/images/load",
        "/images/get",
        "/images/{name}/get",
        "/images/{name}/push",
        "/session",
    }
)
WRITES = re.compile(r"/(create|update|tag|rename|commit|connect|disconnect|resize)$|^/volumes/")
# Where in the description a response broke it ("Schema at /definitions/Volume/...:"):
# failures of one endpoint are grouped by it.
SCHEMA_AT = re.compile(r"Schema at (\S+):")
NOTHING_TO_NEGATE = "no case to make"  # a negative round's, for an operation without input
CLONE_NEWNET = 0x40000000
MNT_DETACH = 2


def log(message: str) -> None:
    print(f"fuzz: {message}", file=sys.stderr, flush=True)


# -- the API description ---------------------------------------------------------------


def swagger_text(path: str | None, repo: str, tag: str) -> str:
    """moby's API description: the file ``path``, else ``api/swagger.yaml`` at ``tag`` of
    the moby git directory ``repo``."""
    if path is not None:
        return Path(path).read_text()
    try:
        return subprocess.run(
            ["git", "-C", repo, "show", f"{tag}:api/swagger.yaml"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise SystemExit(
            f"fuzz: no API description: {detail}\n"
            f"  give --swagger PATH, or --moby-repo (a clone of moby with the tag {tag})"
        ) from None


# -- the daemon, a client of its socket, and the TCP forwarder --------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(self.timeout)
        sock.connect(str(self.path))
        self.sock = sock


def engine(
    docker_socket: Path, method: str, path: str, body: object = None, timeout: float = 60
) -> tuple[int, Any]:
    """One request to the Engine API socket (``body`` JSON, or bytes of a tar): the status
    and the answer (JSON parsed when it is JSON)."""
    conn = _UnixConnection(docker_socket, timeout)
    try:
        if isinstance(body, bytes):
            conn.request(method, path, body, {"Content-Type": "application/x-tar"})
        elif body is not None:
            conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
        else:
            conn.request(method, path)
        answer = conn.getresponse()
        data = answer.read()
    finally:
        conn.close()
    try:
        return answer.status, json.loads(data) if data else None
    except ValueError:
        return answer.status, data


def busybox_tar() -> bytes:
    """A root filesystem of the host's static busybox (``sh``, ``sleep``, ``true``), as a
    tar to import: the fixture image."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "sleep", "true", "cat", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()


class Forwarder:
    """``127.0.0.1:PORT`` forwarded to a Unix socket, a thread pair per connection."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", PORT))
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                upstream.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self.lock:
            if source in self.open:  # the other direction ended first: both done
                self.open.discard(source)
                self.open.discard(sink)
                return
        source.close()
        sink.close()

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.open.clear()


@dataclass
class Daemon:
    """A boxd on ``scratch/root``, its sockets and log beside it."""

    scratch: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.scratch / "root"

    @property
    def docker_socket(self) -> Path:
        return self.scratch / "docker.sock"

    @property
    def log(self) -> Path:
        return self.scratch / "boxd.log"

    def start(self) -> None:
        """Start the daemon (a session of its own: a Ctrl-C is ours to handle) and wait
        until its Docker socket answers."""
        boxd = Path(sys.executable).with_name("boxd")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(boxd), "--root", str(self.root), "--socket", str(self.scratch / "boxd.sock"),
                 "--docker-socket", str(self.docker_socket), "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.scratch,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"boxd exited {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"boxd did not answer in 60 s: {self.log_tail()}")
            time.sleep(0.1)

    def answers(self) -> bool:
        """Whether the daemon runs and answers ``/_ping``."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            return engine(self.docker_socket, "GET", "/_ping", timeout=10)[0] == 200
        except OSError:
            return False

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def log_tail(self) -> str:
        return self.log_text()[-2000:] or "(no log)"

    def fds(self) -> dict[str, str]:
        """The daemon's open files: descriptor -> what it is."""
        assert self.process is not None
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        found = {}
        for entry in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                found[entry.name] = os.readlink(entry)
        return found

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        return engine(self.docker_socket, method, path, body)

    def stop(self) -> str:
        """SIGTERM (SIGKILL after 60 s); a problem, or ""."""
        if self.process is None:
            return ""
        if self.process.poll() is not None:
            return f"boxd had exited {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return "boxd ignored SIGTERM for 60 s and was killed"
        return "" if code == 0 else f"boxd exited {code} on SIGTERM"


# -- fixtures ---------------------------------------------------------------------------


@dataclass
class Fixtures:
    """Real objects for path parameters, made again when a case removed or stopped them."""

    daemon: Daemon
    container: str = ""
    exec_id: str = ""
    image = "boxd-fuzz:latest"
    network = "boxd-fuzz-net"
    volume = "boxd-fuzz-vol"

    def ensure(self) -> None:
        call = self.daemon.call
        if call("GET", f"/images/{self.image}/json")[0] != 200:
            call("POST", "/images/create?fromSrc=-&repo=boxd-fuzz&tag=latest", busybox_tar())
        if call("GET", f"/networks/{self.network}")[0] != 200:
            call("POST", "/networks/create", {"Name": self.network})
        if call("GET", f"/volumes/{self.volume}")[0] != 200:
            call("POST", "/volumes/create", {"Name": self.volume})
        status, info = call("GET", "/containers/boxd-fuzz/json")
        if status == 200 and info["State"]["Paused"]:
            call("POST", "/containers/boxd-fuzz/unpause")
        if status == 200 and not info["State"]["Running"]:
            call("DELETE", "/containers/boxd-fuzz?force=1")
            status = 404
        if status != 200:
            status, made = call(
                "POST",
                "/containers/create?name=boxd-fuzz",
                {"Image": self.image, "Cmd": ["/bin/sleep", "1000000"], "StopTimeout": 1,
                 "HostConfig": {"NetworkMode": self.network,
                                "Binds": [f"{self.volume}:/data"]}},
            )  # fmt: skip
            if status != 201:
                raise RuntimeError(f"cannot create the fixture container: {status} {made}")
            call("POST", "/containers/boxd-fuzz/start")
        status, info = call("GET", "/containers/boxd-fuzz/json")
        if status != 200 or not info["State"]["Running"]:
            raise RuntimeError(f"the fixture container does not run: {status} {info}")
        self.container = info["Id"]
        status, made = call(
            "POST", "/containers/boxd-fuzz/exec", {"Cmd": ["true"], "AttachStdout": True}
        )
        self.exec_id = made["Id"] if status == 201 else "0" * 64

    def path_parameters(self, path: str) -> dict[str, str]:
        """The fixtures a path names (``/containers/{id}/...`` the container, ...)."""
        if path.startswith("/containers/{id}"):
            return {"id": self.container}
        if path.startswith("/exec/{id}"):
            return {"id": self.exec_id}
        if path.startswith(("/images/{name}", "/distribution/{name}")):
            return {"name": self.image}
        if path.startswith("/networks/{id}"):
            return {"id": self.network}
        if path.startswith("/volumes/{name}"):
            return {"name": self.volume}
        return {}


def remove_everything(daemon: Daemon, keep_images: set[str]) -> list[str]:
    """Remove every container, network, volume and image the round made; the removals
    that failed."""
    problems = []
    call = daemon.call
    _, containers = call("GET", "/containers/json?all=1")
    for c in containers or []:
        status, why = call("DELETE", f"/containers/{c['Id']}?force=1&v=1")
        if status not in (204, 404):
            problems.append(f"container {c['Id'][:12]}: {status} {why}")
    _, networks = call("GET", "/networks")
    for n in networks or []:
        if n["Name"] not in ("bridge", "host", "none"):
            status, why = call("DELETE", f"/networks/{n['Id']}")
            if status not in (204, 404):
                problems.append(f"network {n['Name']}: {status} {why}")
    _, volumes = call("GET", "/volumes")
    for v in (volumes or {}).get("Volumes") or []:
        status, why = call("DELETE", f"/volumes/{v['Name']}?force=1")
        if status not in (204, 404):
            problems.append(f"volume {v['Name']}: {status} {why}")
    _, images = call("GET", "/images/json?all=1")
    for image in images or []:
        if image["Id"] not in keep_images:
            status, why = call("DELETE", f"/images/{image['Id']}?force=1")
            if status not in (200, 404):
                problems.append(f"image {image['Id'][:19]}: {status} {why}")
        else:  # a tag a case added to a kept image
            for tag in image.get("RepoTags") or []:
                if tag not in ("default:latest", Fixtures.image):
                    call("DELETE", f"/images/{tag}")
    return problems


# -- what the host and the daemon hold --------------------------------------------------


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def mounts_below(path: Path) -> list[str]:
    top = os.path.realpath(path)
    return [p for p in mount_points() if p == top or p.startswith(top + "/")]


def cgroups_of(root: Path) -> tuple[list[str], list[str]]:
    """The daemon's cgroup directories (one a hierarchy), and the containers' below them."""
    name = cgroup_name(root)
    parents, children = [], []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            parent = os.path.join(top, name)
            parents.append(parent)
            with contextlib.suppress(OSError):
                children += [e.path for e in os.scandir(parent) if e.is_dir()]
            dirs.remove(name)
    return parents, children


def shims(root: Path) -> list[int]:
    """The boxd-shims keeping containers of the daemon on ``root`` (by working directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text() == "boxd-shim\n":
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
                if state != "Z" and Path(os.readlink(entry / "cwd")).is_relative_to(root):
                    found.append(int(entry.name))
    return found


@dataclass
class Snapshot:
    fds: dict[str, str]
    images: set[str]
    networks: set[str]
    mounts: list[str]
    links: set[str]

    @classmethod
    def take(cls, daemon: Daemon) -> Snapshot:
        _, images = daemon.call("GET", "/images/json?all=1")
        _, networks = daemon.call("GET", "/networks")
        return cls(
            fds=daemon.fds(),
            images={i["Id"] for i in images},
            networks={n["Name"] for n in networks},
            mounts=mounts_below(daemon.scratch),
            links=links(),
        )


def leftovers(daemon: Daemon, before: Snapshot) -> list[str]:
    """What the rounds left, the daemon's open files above their count before them."""
    found = []
    deadline = time.monotonic() + 20  # removals finish in the background (trash, shims)
    while True:
        now = Snapshot.take(daemon)
        _, containers = daemon.call("GET", "/containers/json?all=1")
        _, volumes = daemon.call("GET", "/volumes")
        _, children = cgroups_of(daemon.root)
        found = [f"container {c['Id'][:12]} {c['Names']}" for c in containers]
        found += [f"volume {v['Name']}" for v in volumes.get("Volumes") or []]
        found += [f"network {n}" for n in sorted(now.networks - before.networks)]
        found += [f"image {i}" for i in sorted(now.images - before.images)]
        found += [f"mount {m}" for m in now.mounts if m not in before.mounts]
        found += [f"link {n}" for n in sorted(now.links - before.links)]
        found += [f"cgroup {c}" for c in children]
        found += [f"shim {pid}" for pid in shims(daemon.root)]
        if len(now.fds) > len(before.fds):
            extra = sorted(Counter(now.fds.values()) - Counter(before.fds.values()))
            found.append(f"{len(now.fds)} open files, {len(before.fds)} before: {extra[:20]}")
        if not found or time.monotonic() > deadline:
            log(f"the daemon's open files: {len(before.fds)} before, {len(now.fds)} after")
            return found
        time.sleep(0.5)


def clean_host(daemon: Daemon) -> list[str]:
    """After the daemon: kill what it left (shims and their containers), detach the mounts
    below the scratch directory and remove the cgroups (its own too: a daemon that ended
    removed them); what had to be done."""
    done = []
    for shim in shims(daemon.root):
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{shim}/task/{shim}/children").read_text().split()
            for pid in (shim, *map(int, children)):
                os.kill(pid, signal.SIGKILL)
        done.append(f"killed shim {shim}")
    deadline = time.monotonic() + 10
    while shims(daemon.root) and time.monotonic() < deadline:
        time.sleep(0.1)
    umount2 = ctypes.CDLL(None, use_errno=True).umount2
    for point in sorted(mounts_below(daemon.scratch), key=len, reverse=True):
        umount2(os.fsencode(point), MNT_DETACH)
        done.append(f"detached {point}")
    parents, children = cgroups_of(daemon.root)
    for cgroup in [*children, *parents]:
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
    done += [f"removed cgroup {c}" for c in [*children, *parents]]
    return done


# -- the rounds -------------------------------------------------------------------------


@dataclass
class Findings:
    """Failures grouped by endpoint and check, with a few examples each."""

    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)  # by round
    not_run: dict[str, str] = field(default_factory=dict)  # operation: why
    known: Counter[tuple[str, str]] = field(default_factory=Counter)  # see KNOWN
    statuses: Counter[int] = field(default_factory=Counter)  # of every answer

    def add(self, endpoint: str, check: str, example: str) -> None:
        key = (endpoint, check)
        self.counts[key] += 1
        examples = self.groups.setdefault(key, [])
        if len(examples) < 2:
            examples.append(example)

    def print(self) -> None:
        print(f"\nrequests sent: {dict(self.requests)} ({sum(self.requests.values())} in all)")
        print(f"answers by status: {dict(sorted(self.statuses.items()))}")
        nothing = sorted(op for op, why in self.not_run.items() if why == NOTHING_TO_NEGATE)
        if nothing:
            print(f"{len(nothing)} operations with nothing to get wrong: {', '.join(nothing)}")
        for op, why in sorted(self.not_run.items()):
            if why != NOTHING_TO_NEGATE:
                print(f"not fuzzed: {op}: {why}")
        for (op, why), count in sorted(self.known.items()):
            print(f"known, not counted: {op}: {why} (x{count})")
        if not self.groups:
            print("no failures")
            return
        print(f"\n{len(self.groups)} kinds of failure:")
        for endpoint, check in sorted(self.groups):
            print(f"\n{endpoint}  [{check}]  x{self.counts[endpoint, check]}")
            for example in self.groups[endpoint, check]:
                print("    " + example.replace("\n", "\n    "))


def _first_lines(text: str, n: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(line[:300] for line in lines[:n])


def _counts(
    spec: dict[str, Any], title: str, status: int, case: Any, response: Any, message: str
) -> bool:
    """Whether a failure schemathesis found is one: not where the description is stricter
    than dockerd, which sends no type with no body, every error as JSON whatever an
    operation says it produces, ``null`` for a nil list, map or pointer (see
    :func:`fuzz_rules.nullable`), and swarm mode's "this node is not a swarm manager" with
    the 503 it documents."""
    if not response.content and title == "Missing Content-Type header":
        return False
    json_error = response.headers.get("content-type", [""])[0].startswith("application/json")
    if status >= 400 and json_error and title == "Undocumented Content-Type":
        return False
    if title.startswith("Response violates schema") and message.startswith("null is not"):
        where = SCHEMA_AT.search(message)
        return where is not None and not nullable(spec, where[1])
    return not (status == 503 and "503" in case.operation.responses.status_codes)


@dataclass
class Fuzzer:
    """The rounds: cases made by schemathesis, sent through the forwarder, their failures
    kept in :attr:`findings`."""

    schema: Any  # schemathesis's BaseSchema
    spec: dict[str, Any]  # the description as moby wrote it
    daemon: Daemon
    fixtures: Fixtures
    findings: Findings
    checks: list[Any]
    max_examples: int
    timeout: float
    seed: int | None
    round: str = ""

    def operations(self) -> list[Any]:
        found = []
        for result in self.schema.get_all_operations():
            try:
                found.append(result.ok())
            except Exception as exc:
                self.findings.not_run[str(exc)[:80]] = "unreadable in the description"
        return found

    def call(self, case: Any, **kwargs: Any) -> Any:
        """Send ``case`` (:func:`make_safe` runs as schemathesis's before_call hook); the
        response, or None when the request failed (recorded, but a streaming endpoint's
        read timeout)."""
        self.findings.requests[self.round] += 1
        try:
            response = case.call(base_url=BASE_URL, timeout=self.timeout, **kwargs)
            self.findings.statuses[response.status_code] += 1
            return response
        except requests.Timeout:
            if case.operation.path not in STREAMING:
                self.record(case, "timeout", f"no answer in {self.timeout} s")
        except requests.RequestException as exc:
            self.record(case, "connection", f"{type(exc).__name__}: {exc}")
        return None

    def record(self, case: Any, check: str, detail: str) -> None:
        try:
            curl = case.as_curl_command(base_url=BASE_URL)
        except Exception as exc:
            curl = f"(no curl command: {exc})"
        curl = curl if len(curl) < 400 else curl[:400] + "..."
        self.findings.add(case.operation.label, check, f"{_first_lines(detail)}\n{curl}")

    def validate(self, case: Any, response: Any) -> None:
        try:
            case.validate_response(response, checks=self.checks)
        except FailureGroup as group:
            status = response.status_code
            body = response.content[:300].decode(errors="replace")
            for failure in group.exceptions:
                if not _counts(self.spec, failure.title, status, case, response, failure.message):
                    continue
                why = known(status, f"{body}\n{failure.message}")
                if why is not None:
                    self.findings.known[case.operation.label, why] += 1
                    continue
                where = SCHEMA_AT.search(failure.message)
                check = failure.title + (f" at {where[1]}" if where else "")
                self.record(case, check, f"{status}: {failure.message or body}")

    def run_case(self, case: Any) -> None:
        response = self.call(case)
        if response is None:
            return
        self.validate(case, response)
        if self.round == "writes" and case.operation.path == "/containers/create":
            self.start_created(case, response)

    def start_created(self, case: Any, response: Any) -> None:
        """A container the fuzzer created is started, then removed: a 5xx of either is a
        finding of the create's case."""
        if response.status_code != 201:
            return
        cid = json.loads(response.content)["Id"]
        after = (
            ("start", "POST", f"/containers/{cid}/start"),
            ("rm -f", "DELETE", f"/containers/{cid}?force=1&v=1"),
        )
        for what, method, path in after:
            try:
                status, why = engine(self.daemon.docker_socket, method, path, timeout=60)
            except OSError as exc:
                status, why = 599, str(exc)
            if status >= 500:
                self.record(case, f"Server error of its {what}", f"{status}: {why}")

    def fuzz(self, operation: Any, mode: Any, examples: int, query: Any = None) -> None:
        """``examples`` cases of ``operation`` (half of them on the fixtures)."""
        self.fixtures.ensure()
        fixed = self.fixtures.path_parameters(operation.path)
        extra = {} if query is None else {"query": query}
        strategy = operation.as_strategy(generation_mode=mode, **extra)
        if fixed:
            strategy = (
                operation.as_strategy(generation_mode=mode, path_parameters=fixed, **extra)
                | strategy
            )
        runner = self.run_stream if operation.path in STREAMING else self.run_case
        test = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )(given(strategy)(runner))
        if self.seed is not None:
            test = hypothesis_seed(self.seed)(test)
        try:
            test()
        except Unsatisfiable:  # negative: nothing the description lets go wrong
            self.findings.not_run[f"{operation.label} ({self.round})"] = NOTHING_TO_NEGATE
        except Exception as exc:  # generation: the description asks what cannot be made
            self.findings.not_run[f"{operation.label} ({self.round})"] = _first_lines(
                f"{type(exc).__name__}: {exc}", 1
            )

    def run_stream(self, case: Any) -> None:
        """A streaming request read until its first bytes or a second, then dropped."""
        make_safe(case.body, self.daemon.scratch)
        safe_query(case.query)
        self.findings.requests[self.round] += 1
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        try:
            with requests.request(**kwargs, stream=True, timeout=(self.timeout, 1)) as response:
                first = b""
                with contextlib.suppress(requests.RequestException):
                    first = next(response.iter_content(300), b"")
                status, body = response.status_code, first.decode(errors="replace")
                self.findings.statuses[status] += 1
                why = known(status, body)
                if status >= 500 and why is not None:
                    self.findings.known[case.operation.label, why] += 1
                elif status >= 500:
                    self.record(case, "Server error", f"{status}: {body}")
        except requests.Timeout:
            pass
        except requests.RequestException as exc:
            self.record(case, "connection", f"{type(exc).__name__}: {exc}")

    def stateful(self) -> None:
        """schemathesis's state machine over the operations that do not stream."""
        schema = self.schema.exclude(path=sorted(STREAMING))
        fuzzer = self

        class Machine(schema.as_state_machine()):  # type: ignore[misc]
            def get_call_kwargs(self, case: Any) -> dict[str, Any]:
                fuzzer.findings.requests[fuzzer.round] += 1
                return {"base_url": BASE_URL, "timeout": fuzzer.timeout}

            def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
                fuzzer.findings.statuses[response.status_code] += 1
                fuzzer.validate(case, response)

        # One scenario a run: the machine's steps depend on the daemon's answers, which
        # hypothesis, replaying a scenario, takes for a flaky strategy.
        for n in range(self.max_examples):
            if self.seed is not None:  # (hypothesis reads a state machine's seed off its class)
                hypothesis_seed(self.seed + n)(Machine)
            try:
                Machine.run(
                    settings=settings(
                        max_examples=1,
                        stateful_step_count=10,
                        deadline=None,
                        database=None,
                        phases=[Phase.generate],
                        suppress_health_check=list(HealthCheck),
                        verbosity=Verbosity.quiet,
                    )
                )
            except requests.RequestException as exc:
                self.findings.add("(state machine)", "connection", f"{type(exc).__name__}: {exc}")
            except FlakyStrategyDefinition:
                pass

    def run(self, name: str, operations: list[Any]) -> None:
        self.round = name
        positive, negative = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
        if name == "stateful":
            self.fixtures.ensure()
            self.stateful()
            return
        for operation in operations:
            if name == "all":
                self.fuzz(operation, positive, self.max_examples)
            elif name == "negative":
                self.fuzz(operation, negative, self.max_examples)
            elif name == "streaming" and operation.path in STREAMING:
                names = {p.name for p in operation.query}
                on = {k: True for k in ("follow", "stream", "stdout", "stderr") if k in names}
                self.fuzz(operation, positive, self.max_examples, on or None)
            elif (
                name == "writes"
                and operation.method.upper() in ("POST", "PUT", "DELETE")
                and operation.path not in STREAMING
                and WRITES.search(operation.path)
            ):
                self.fuzz(operation, positive, 3 * self.max_examples)


# -- main -------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nox -s fuzz --",
        description="Fuzz boxd's Docker Engine API with schemathesis (as root).",
    )
    parser.add_argument("--swagger", help="moby's api/swagger.yaml (default: from --moby-repo)")
    parser.add_argument("--moby-repo", default=MOBY_REPO, help="a git directory of moby")
    parser.add_argument("--moby-tag", default=MOBY_TAG, help="its tag to read (%(default)s)")
    parser.add_argument(
        "--rounds", default=",".join(ROUNDS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument("--max-examples", type=int, default=20, help="cases per operation")
    parser.add_argument(
        "--checks", default=",".join(DEFAULT_CHECKS), help="schemathesis checks (%(default)s)"
    )
    parser.add_argument("--operations", help="a regular expression: only the paths it finds")
    parser.add_argument("--timeout", type=float, default=10, help="seconds a request waits")
    parser.add_argument("--seed", type=int, help="hypothesis's seed, to repeat a run")
    parser.add_argument("--daemon-log", help="where to keep a copy of the daemon's log")
    parser.add_argument("--scratch", default="/var/tmp", help="where the scratch directory goes")
    args = parser.parse_args(argv)
    rounds = [r for r in args.rounds.split(",") if r]
    unknown = set(rounds) - set(ROUNDS)
    if unknown:
        parser.error(f"unknown rounds: {', '.join(sorted(unknown))}; known: {', '.join(ROUNDS)}")
    args.rounds = rounds
    return args


def _enter_network_namespace() -> None:
    """A network namespace of our own (gone with us and the daemon), loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        raise SystemExit("fuzz: run as root (the daemon makes namespaces, mounts, cgroups)")
    text = swagger_text(args.swagger, args.moby_repo, args.moby_tag)
    load_all_checks()
    known = CHECKS.get_all_names()
    unknown = [name for name in args.checks.split(",") if name not in known]
    if unknown:
        raise SystemExit(f"fuzz: unknown checks {unknown}; known: {', '.join(known)}")
    checks = CHECKS.get_by_names([name for name in args.checks.split(",") if name])
    # A Ctrl-C (also where a shell started us with SIGINT ignored) or a SIGTERM ends the
    # rounds; what was made is removed either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    _enter_network_namespace()
    scratch = Path(tempfile.mkdtemp(prefix="boxd-fuzz-", dir=args.scratch))
    daemon = Daemon(scratch)
    forwarder: Forwarder | None = None
    problems: list[str] = []
    findings = Findings()
    log(f"scratch directory {scratch}")
    try:

        def before_call(context: object, case: Any, **kwargs: object) -> None:
            make_safe(case.body, scratch)
            safe_query(case.query)

        schemathesis.hook(before_call)
        # Load's, a plugin's and an archive's tar bodies: bytes, as a file's.
        schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
        spec = yaml.safe_load(text)
        schema = schemathesis.openapi.from_dict(without_nullable(spec))
        daemon.start()
        forwarder = Forwarder(daemon.docker_socket)
        fixtures = Fixtures(daemon)
        fixtures.ensure()
        keep = Snapshot.take(daemon).images
        problems += remove_everything(daemon, keep)
        before = Snapshot.take(daemon)
        fuzzer = Fuzzer(
            schema,
            spec,
            daemon,
            fixtures,
            findings,
            checks,
            args.max_examples,
            args.timeout,
            args.seed,
        )
        operations = fuzzer.operations()
        if args.operations:
            operations = [op for op in operations if re.search(args.operations, op.path)]
        log(f"{len(operations)} operations, rounds: {', '.join(args.rounds)}")
        for name in args.rounds:
            started = time.monotonic()
            fuzzer.run(name, operations)
            alive = daemon.answers()
            took = time.monotonic() - started
            state = "alive" if alive else "DEAD"
            log(f"round {name}: {findings.requests[name]} requests in {took:.0f} s, daemon {state}")
            if not alive:
                problems.append(f"the daemon died in round {name}: {daemon.log_tail()}")
                break
            problems += remove_everything(daemon, before.images)
        if daemon.answers():
            problems += leftovers(daemon, before)
    except KeyboardInterrupt as exc:
        problems.append(f"interrupted ({str(exc) or 'Ctrl-C'})")
    except Exception:
        problems.append(f"the fuzzer failed: {traceback.format_exc()}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if forwarder is not None:
            forwarder.close()
        if daemon.answers():
            with contextlib.suppress(OSError, TypeError, KeyError):
                remove_everything(daemon, set())
        stopped = daemon.stop()
        if stopped:
            problems.append(stopped)
        problems += [f"after the daemon: {done}" for done in clean_host(daemon)]
        errors = [
            line
            for line in daemon.log_text().splitlines()
            if " ERROR " in line or "Traceback" in line
        ]
        if errors:
            problems.append(
                f"the daemon logged {len(errors)} errors, the first:\n  " + "\n  ".join(errors[:10])
            )
        if args.daemon_log:
            with contextlib.suppress(OSError):
                shutil.copy(daemon.log, args.daemon_log)
        if mounts_below(scratch):
            problems.append(f"mounts left below {scratch}: it is kept")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    findings.print()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if findings.groups or problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""A short, seeded crash fuzz of the image store: builds (cached and not, multi-stage,
failing; through boxctl and the docker CLI), commits, tags, removals, prunes, save and
load, import, push and pull against a real registry on loopback, several at once; the
daemon SIGKILLed 0-600 ms into a random operation, sometimes again right after its next
start.  Then every image listed must be whole (inspected, its history read, a container
run on it), the same builds must build again, a push and a pull go through, and once
every image is removed the store must hold nothing: no blob, layer, layer record, image
record or temporary file (what a kill left, the next start's sweep removes; what a live
daemon removes, it removes whole).  The long version (``IMAGE_CRASH_ROUNDS``,
``IMAGE_CRASH_SEED``) ran for hundreds of rounds."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import Daemon, kill_among, running_daemon
from docker_clients import api_call, docker, needs_cli
from registry_harness import Registry, running_registry

pytestmark = [pytest.mark.root, pytest.mark.slow, needs_cli]

BASE = "fz:base"
SEED = int(os.environ.get("IMAGE_CRASH_SEED", "5"))
ROUNDS = int(os.environ.get("IMAGE_CRASH_ROUNDS", "4"))

# The builds: a step with a layer, a metadata step, COPY from the context and from
# another stage; the marker is the context's file, the same or new per build (a cache hit
# or a miss).
DOCKERFILES = [
    f"FROM {BASE}\nRUN echo one > /one\nCOPY marker /marker\nENV STEP=2\nRUN cat /marker >> /one\n",
    f"FROM {BASE} AS first\nCOPY marker /m\nRUN echo made > /made\n"
    f"FROM {BASE}\nCOPY --from=first /made /m /\nLABEL fz=1\n",
    f"FROM {BASE}\nCOPY marker /marker\nRUN false\n",
    f'FROM {BASE}\nLABEL only=metadata\nCMD ["true"]\n',
]


class Workload:
    """The operations, each of which a kill may cut: their failures are expected, a
    client that hangs (past its timeout) is not."""

    def __init__(self, daemon: Daemon, rng: random.Random, work: Path, registry: Registry) -> None:
        self.d, self.rng, self.work, self.registry, self.n = daemon, rng, work, registry, 0
        self.lock = threading.Lock()
        self.killed = threading.Event()

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.d.ctl(*args, check=False, timeout=60)

    def next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n

    def pick(self) -> str | None:
        r = self.ctl("images", "--format", "{{.Repository}}:{{.Tag}}")
        refs = [r for r in r.stdout.split() if r.startswith("fz:") and r != BASE]
        return self.rng.choice(refs) if refs else None

    def context(self, which: int, fresh: bool) -> Path:
        n = self.next()
        ctx = self.work / f"ctx{n}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(DOCKERFILES[which])
        (ctx / "marker").write_text(f"{n}\n" if fresh else "same\n")
        return ctx

    def build(self) -> None:
        which = self.rng.randrange(len(DOCKERFILES))
        ctx = self.context(which, fresh=self.rng.random() < 0.5)
        self.ctl("build", "-q", "-t", f"fz:b{self.n}", str(ctx))

    def docker_build(self) -> None:
        """Through the Engine API (the context sent as a tar), or its cache pruned."""
        if self.rng.random() < 0.2:
            with contextlib.suppress(OSError):  # the daemon killed
                api_call(self.d, "POST", "/build/prune")
            return
        ctx = self.context(self.rng.randrange(len(DOCKERFILES)), fresh=self.rng.random() < 0.5)
        docker(self.d, "build", "-q", "-t", f"fz:d{self.n}", str(ctx), timeout=60)

    def commit(self) -> None:
        n = self.next()
        name = f"c{n}"
        if self.ctl("run", "-d", "--name", name, self.pick() or BASE, "sh", "-c",
                    f"echo {n} > /c; sleep 100").returncode == 0:  # fmt: skip
            self.ctl("commit", name, f"fz:c{n}")
            self.ctl("rm", "-f", name)

    def tag(self) -> None:
        ref = self.pick()
        if ref is not None:
            self.ctl("tag", ref, f"fz:t{self.next()}")

    def rmi(self) -> None:
        ref = self.pick()
        if ref is not None:
            self.ctl("rmi", *(("-f",) if self.rng.random() < 0.5 else ()), ref)

    def prune(self) -> None:
        self.ctl(*self.rng.choice([("image", "prune", "-f"), ("system", "prune", "-f")]))

    def save_load(self) -> None:
        ref = self.pick()
        if ref is None:
            return
        archive = self.work / f"save{self.next()}.tar"
        if self.ctl("save", "-o", str(archive), ref).returncode == 0:
            self.ctl("rmi", ref)
            self.ctl("load", "-i", str(archive))

    def import_(self) -> None:
        n = self.next()
        tarball = self.work / f"import{n}.tar"
        with tarfile.open(tarball, "w") as tar:
            info = tarfile.TarInfo("imported")
            data = f"{n}\n".encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            tar.add(self.work / "busybox", arcname="bin/busybox")
        self.ctl("import", str(tarball), f"fz:i{n}")

    def push_pull(self) -> None:
        ref = self.pick()
        if ref is None:
            return
        remote = f"{self.registry.host}/fz:{self.next()}"
        if (
            self.ctl("tag", ref, remote).returncode == 0
            and self.ctl("push", remote).returncode == 0
        ):
            self.ctl("rmi", ref, remote)
            self.ctl("pull", remote)

    def run_rm(self) -> None:
        self.ctl("run", "--rm", self.pick() or BASE, "true")

    def run_d(self) -> None:
        """A container that outlives the round's operations (its image removed with -f
        meanwhile is retired, and collected once the container is removed)."""
        self.ctl("run", "-d", "--name", f"r{self.next()}", self.pick() or BASE, "sleep", "1000")

    def churn(self, seed: float) -> None:
        """Operations one after another until the daemon is killed: more of them are
        under way at the kill."""
        rng = random.Random(seed)
        while not self.killed.is_set():
            rng.choice(self.ops())()

    def ops(self) -> list[Callable[[], None]]:
        return [
            self.build,
            self.build,
            self.docker_build,
            self.commit,
            self.tag,
            self.rmi,
            self.rmi,
            self.prune,
            self.save_load,
            self.import_,
            self.push_pull,
            self.run_rm,
            self.run_d,
        ]


def _store_files(root: Path) -> list[str]:
    """What the image store holds besides its empty directories and the skeleton of
    ``default``: blobs, layers, their records, image records (live and retired), gzip
    twins and temporary files."""
    store = root / "images" / "store"
    found = []
    for part in ("blobs/sha256", "l", "layers", "meta", "retired", "gzip", "tmp"):
        where = store / part
        if where.is_dir():
            found += [f"{part}/{name}" for name in os.listdir(where)]
    return found


def _check_whole(w: Workload) -> None:
    """Every image listed is inspected, its history read and a container run on it; each
    build builds again (its cached steps' images still whole); a push and pull go
    through."""
    d = w.d
    for cid in d.ctl("ps", "-q").stdout.split():  # on an image rmi -f retired, perhaps
        assert d.ctl("exec", cid, "true", check=False).returncode == 0, cid
    ids = d.ctl("images", "-a", "-q", "--no-trunc", timeout=60).stdout.split()
    for image in dict.fromkeys(ids):
        d.ctl("image", "inspect", image, timeout=60)
        d.ctl("history", image, timeout=60)
        r = d.ctl("run", "--rm", image, "/bin/busybox", "true", check=False, timeout=60)
        assert r.returncode == 0, (image, r.stderr)
    for which in (0, 1, 3):
        for fresh in (False, True):
            ctx = w.context(which, fresh)
            d.ctl("build", "-q", "-t", f"fz:again{w.n}", str(ctx), timeout=120)
            r = d.ctl("run", "--rm", f"fz:again{w.n}", "ls", "/", timeout=60)
            assert r.returncode == 0, r.stderr
    remote = f"{w.registry.host}/fz:again{w.n}"
    d.ctl("tag", f"fz:again{w.n}", remote)
    d.ctl("push", remote, timeout=120)
    d.ctl("rmi", remote, f"fz:again{w.n}")
    d.ctl("pull", remote, timeout=120)
    assert d.ctl("run", "--rm", remote, "ls", "/").returncode == 0


def _remove_all(d: Daemon) -> None:
    for cid in d.ctl("ps", "-a", "-q").stdout.split():
        d.ctl("rm", "-f", cid)
    refs = d.ctl("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    refs = [r for r in refs if r != "default:latest" and r != "<none>:<none>"]
    if refs:
        d.ctl("rmi", "-f", *refs, timeout=120)
    d.ctl("image", "prune", "-a", "-f", timeout=120)
    left = [line for line in d.ctl("images", "-a").stdout.splitlines()[1:]
            if not line.startswith("default ")]  # fmt: skip
    assert left == []


def _round(w: Workload, base: Path, big: Path) -> None:
    rng, d = w.rng, w.d
    d.start()
    w.killed.clear()
    d.ctl("import", str(base), BASE)
    d.ctl("import", str(big), "fz:big")  # a push, pull and unpack a kill can cut
    for _ in range(rng.randint(1, 3)):
        rng.choice([w.build, w.commit, w.import_])()
    kill_among(d, rng, w.ops, w.killed, lambda: [
        threading.Thread(target=w.churn, args=(rng.random(),)) for _ in range(2)
    ], 0.6)  # fmt: skip
    d.start()
    _check_whole(w)
    _remove_all(d)
    assert _store_files(d.root) == []
    assert d.stop() == 0


def test_kill_9_among_image_verbs(tmp_path: Path, busybox_root: Path) -> None:
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tar:
        tar.add(busybox_root, arcname=".")
    big = tmp_path / "big.tar"
    with tarfile.open(big, "w") as tar:
        tar.add(busybox_root, arcname=".")
        info = tarfile.TarInfo("noise")
        info.size = 8 << 20
        tar.addfile(info, io.BytesIO(random.Random(SEED).randbytes(info.size)))
    (tmp_path / "busybox").write_bytes((busybox_root / "bin" / "busybox").read_bytes())
    (tmp_path / "busybox").chmod(0o755)
    with running_registry(tmp_path) as registry, running_daemon(tmp_path) as daemon:
        assert daemon.stop() == 0
        w = Workload(daemon, random.Random(SEED), tmp_path, registry)
        for _ in range(ROUNDS):
            _round(w, base, big)
        daemon.start()

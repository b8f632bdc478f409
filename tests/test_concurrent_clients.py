"""Six docker-py clients at once, as a parallel test suite drives a daemon: each runs a
seeded mix of what such suites do (run with a published port, exec, build, a user
network with its DNS, volumes, cp of binary files, restart, logs, binary stdin through an
attach, commit, pause, rename, stats, top, kill, a prune of its own containers, tags,
save and load of the one image they all use, and the listings and disk use) for
``CLIENTS_SECONDS`` (default 30), each checking what it gets.
No request may fail: the races this found have deterministic tests (a prune or ``rm -f``
during a create, a volume removed during ``system df``: test_supervisor.py; one image's
record written by two threads at once, a layer made again by a commit while an image
with it is removed, and a container removed while ``system df`` measures it:
test_image_unpack.py)."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import tarfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import running_daemon
from docker_clients import docker_env
from test_network import netns

pytestmark = [pytest.mark.root, pytest.mark.slow]

__all__ = ["netns"]  # the fixture

IMAGE = "cc:base"
CLIENTS = 6
SECONDS = float(os.environ.get("CLIENTS_SECONDS", "30"))
SEED = int(os.environ.get("CLIENTS_SEED", "40"))


def _tar(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Client:
    """One worker: ``op_*`` methods, each a user's short sequence with its checks."""

    def __init__(self, client: Any, n: int, rnd: random.Random) -> None:
        self.c, self.n, self.rnd, self.i = client, n, rnd, 0

    def op_run(self) -> None:
        ctr = self.c.containers.run(
            IMAGE, ["sh", "-c", "echo hi; sleep 0.2; echo bye"], detach=True, ports={"80/tcp": None}
        )
        assert ctr.wait(timeout=30)["StatusCode"] == 0
        assert ctr.logs() == b"hi\nbye\n"
        ctr.remove()

    def op_exec(self) -> None:
        ctr = self.c.containers.run(IMAGE, ["sleep", "30"], detach=True)
        for _ in range(3):
            assert ctr.exec_run(["sh", "-c", "echo $((6*7))"]).output == b"42\n"
        ctr.remove(force=True)

    def op_build(self) -> None:
        tag = f"b{self.n}:{self.i}"
        text = f"FROM {IMAGE}\nRUN echo {tag} > /f\nRUN cat /f\n"
        image, _ = self.c.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True)
        assert self.c.containers.run(image.id, ["cat", "/f"], remove=True) == f"{tag}\n".encode()
        self.c.images.remove(tag)

    def op_network(self) -> None:
        net = self.c.networks.create(f"n{self.n}-{self.i}")
        peer = f"a{self.n}-{self.i}"
        ctr = self.c.containers.run(
            IMAGE, ["sleep", "30"], detach=True, network=net.name, name=peer
        )
        out = self.c.containers.run(
            IMAGE, ["ping", "-c1", "-W2", peer], network=net.name, remove=True
        )
        assert b"1 packets received" in out
        ctr.remove(force=True)
        net.remove()

    def op_volume(self) -> None:
        vol = self.c.volumes.create(f"v{self.n}-{self.i}")
        mount = {vol.name: {"bind": "/v"}}
        self.c.containers.run(IMAGE, ["sh", "-c", "echo x > /v/f"], volumes=mount, remove=True)
        assert self.c.containers.run(IMAGE, ["cat", "/v/f"], volumes=mount, remove=True) == b"x\n"
        vol.remove()

    def op_cp(self) -> None:
        payload = self.rnd.randbytes(10_000)
        ctr = self.c.containers.create(IMAGE, ["cat", "/x/f"])
        assert ctr.put_archive("/", _tar("x/f", payload))
        ctr.start()
        ctr.wait(timeout=30)
        assert ctr.logs() == payload
        ctr.remove()

    def op_restart(self) -> None:
        loop = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
        ctr = self.c.containers.run(IMAGE, ["sh", "-c", loop], detach=True)
        ctr.restart(timeout=5)
        ctr.stop(timeout=5)
        ctr.reload()
        assert ctr.status == "exited"
        ctr.remove()

    def op_logs(self) -> None:
        ctr = self.c.containers.run(IMAGE, ["seq", "1", "2000"], detach=True)
        ctr.wait(timeout=30)
        assert ctr.logs().count(b"\n") == 2000
        assert ctr.logs(tail=3) == b"1998\n1999\n2000\n"
        ctr.remove()

    def op_stdin(self) -> None:
        payload = self.rnd.randbytes(200_000)
        ctr = self.c.containers.create(IMAGE, ["md5sum"], stdin_open=True)
        attached = ctr.attach_socket(params={"stdin": 1, "stream": 1})
        raw: socket.socket = attached._sock
        try:
            ctr.start()
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
            ctr.wait(timeout=30)
        finally:
            raw.close()
            attached.close()
        assert ctr.logs().split()[0].decode() == hashlib.md5(payload).hexdigest()
        ctr.remove()

    def op_commit(self) -> None:
        # Half the commits make one same layer (the same file, content and time), which
        # other clients make and remove at once.
        mark = "same" if self.rnd.random() < 0.5 else f"{self.n}-{self.i}"
        command = f"echo {mark} > /c && touch -t 200001010000 /c"
        ctr = self.c.containers.run(IMAGE, ["sh", "-c", command], detach=True)
        ctr.wait(timeout=30)
        image = ctr.commit(repository=f"c{self.n}", tag=str(self.i))
        assert self.c.containers.run(image.id, ["cat", "/c"], remove=True) == f"{mark}\n".encode()
        ctr.remove()
        self.c.images.remove(image.id)

    def op_pause(self) -> None:
        ctr = self.c.containers.run(IMAGE, ["sleep", "30"], detach=True, name=f"p{self.n}-{self.i}")
        ctr.pause()
        ctr.reload()
        assert ctr.status == "paused"
        ctr.unpause()
        ctr.rename(f"q{self.n}-{self.i}")
        assert self.c.containers.get(f"q{self.n}-{self.i}").id == ctr.id
        assert "memory_stats" in ctr.stats(stream=False)
        assert ctr.top()["Processes"]
        ctr.kill(signal="SIGKILL")
        assert ctr.wait(timeout=30)["StatusCode"] == 137
        ctr.remove()

    def op_prune(self) -> None:
        mine = {"w": str(self.n)}
        made = self.c.containers.create(IMAGE, ["true"], labels=mine)
        running = self.c.containers.run(IMAGE, ["sleep", "30"], detach=True, labels=mine)
        pruned = self.c.containers.prune(filters={"label": f"w={self.n}"})
        assert pruned["ContainersDeleted"] == [made.id]
        running.remove(force=True)

    def op_tags(self) -> None:
        name = f"t{self.n}:{self.i}"
        base = self.c.images.get(IMAGE)
        assert base.tag(f"t{self.n}", str(self.i))
        archive = b"".join(self.c.images.get(name).save(named=name))
        self.c.images.remove(name)
        (loaded,) = self.c.images.load(archive)
        assert loaded.id == base.id and name in loaded.tags
        self.c.images.remove(name)
        assert IMAGE in self.c.images.get(IMAGE).tags

    def op_listings(self) -> None:
        self.c.info()
        self.c.df()
        self.c.api.containers(all=True)
        self.c.api.images(all=True)
        self.c.networks.list()
        self.c.volumes.list()


def _work(daemon_host: str, n: int, until: float, errors: list[str]) -> None:
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=daemon_host, timeout=60)
    rnd = random.Random(SEED * 100 + n)
    worker = Client(client, n, rnd)
    ops: list[Callable[[], None]] = [
        getattr(worker, name) for name in sorted(dir(worker)) if name.startswith("op_")
    ]
    try:
        while time.monotonic() < until:
            worker.i += 1
            op = rnd.choice(ops)
            try:
                op()
            except Exception:
                errors.append(f"client {n}, {op.__name__} #{worker.i}:\n{traceback.format_exc()}")
    finally:
        client.close()


def test_six_clients_at_once(tmp_path: Path, busybox_root: Path, netns: str) -> None:
    pytest.importorskip("docker")
    with running_daemon(tmp_path, netns=netns) as daemon:
        tarball = tmp_path / "base.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(busybox_root, arcname=".")
        daemon.ctl("import", str(tarball), IMAGE)
        errors: list[str] = []
        until = time.monotonic() + SECONDS
        host = docker_env(daemon)["DOCKER_HOST"]
        threads = [
            threading.Thread(target=_work, args=(host, n, until, errors)) for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, "\n".join(errors[:5])

"""Image builds end to end: ``boxctl build``, the docker CLI's classic builder and
docker-py's ``images.build`` against a real daemon (in the session's own network
namespace), on a busybox base imported into it."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import REPO, Daemon, running_daemon
from docker_clients import DOCKER, api_call, docker, docker_env, needs_cli
from registry_harness import build_oci_image, push, running_registry

pytestmark = pytest.mark.root

BASE = "busybox:base"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, busybox_root: Path) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("build")
    with running_daemon(work) as d:
        tarball = work / "busybox.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(busybox_root, arcname=".")
        d.ctl("import", str(tarball), BASE)
        yield d


@pytest.fixture
def clean(daemon: Daemon) -> Iterator[Daemon]:
    yield daemon
    daemon.remove_containers()


def _context(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def _image(daemon: Daemon, ref: str) -> dict[str, object]:
    images: list[dict[str, object]] = json.loads(daemon.ctl("image", "inspect", ref).stdout)
    return images[0]


def _containers(daemon: Daemon) -> list[str]:
    return daemon.ctl("ps", "-a", "-q").stdout.split()


DOCKERFILE = """\
# syntax=docker/dockerfile:1
# a comment
ARG BASE=busybox:base
FROM ${BASE} AS first
ARG WHO=world
ENV GREETING="hello ${WHO}" \\
    EMPTY=${UNSET:-fallback} PLUS=${WHO:+set}
LABEL org.example.team=build "quoted key"=v
WORKDIR /app
COPY greeting.txt sub/ ./
RUN echo "$GREETING from $(pwd) $WHO" > out.txt && \\
    # a comment inside a continued line
    cat greeting.txt >> out.txt
USER nobody
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat out.txt; cat nested.txt; echo $EMPTY $PLUS; id -u"]
"""


def test_boxctl_build_runs_every_instruction(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": DOCKERFILE,
            "greeting.txt": "from the context\n",
            "sub/nested.txt": "nested\n",
        },
    )
    r = clean.ctl(
        "build", "-t", "built:1", "-t", "other", "--build-arg", "WHO=boxd",
        "--label", "extra=yes", str(ctx),
    )  # fmt: skip
    lines = r.stdout.splitlines()
    assert lines[0].startswith("[Warning] the syntax directive")
    assert "Step 2/15 : FROM ${BASE} AS first" in lines
    assert any(line.startswith(" ---> Running in ") for line in lines)
    image_id = _image(clean, "built:1")["Id"]
    assert f"Successfully built {str(image_id)[7:19]}" in lines
    assert lines[-2:] == ["Successfully tagged built:1", "Successfully tagged other:latest"]
    out = clean.ctl("run", "--rm", "built:1").stdout
    assert out == ("hello boxd from /app boxd\nfrom the context\nnested\nfallback set\n65534\n")
    config = _image(clean, "other")["Config"]
    assert isinstance(config, dict)
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["WorkingDir"] == "/app"
    assert config["User"] == "nobody"
    assert config["Labels"] == {
        "org.example.team": "build", "quoted key": "v", "extra": "yes"
    }  # fmt: skip
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9,
                                     "Retries": 2}  # fmt: skip
    assert "GREETING=hello boxd" in config["Env"]
    history = json.loads(clean.ctl("history", "--format", "json", "built:1").stdout)
    assert len(history) == 1 + 13  # the import, then each step after FROM
    layers = [h for h in history if not h.get("empty_layer")]
    assert len(layers) == 4  # RUN, COPY, WORKDIR's directory, the import
    # Each is its layer's unpacked size, as Docker's history shows (a directory: 0); the
    # others none.
    assert [h["size"] > 0 for h in layers] == [True, True, False, True]
    assert all("size" not in h for h in history if h.get("empty_layer"))
    assert "WHO=boxd" in str(history)
    listing = clean.ctl("history", "built:1").stdout.splitlines()
    assert listing[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    # Each step's image (Docker's classic builder keeps them), from the image down to the
    # base; --label made the image a child of the last step's, with its history.
    built = _image(clean, "built:1")
    ids = [line.split()[0] for line in listing[1:]]
    assert ids[0] == str(built["Id"])[7:19] and "<missing>" not in ids
    assert ids[-1] == str(_image(clean, BASE)["Id"])[7:19]
    assert str(built["Parent"])[7:19] not in ids  # its history's top row shows the image
    steps = [
        line.split()[-1] for line in lines if line.startswith(" ---> ") and " " not in line[6:]
    ]
    assert steps[-1] == str(built["Parent"])[7:19] and len(steps) == 14  # FROM's too
    for step in steps:  # each an image that runs, as the classic builder's
        _image(clean, step)
    longest = max((h.get("created_by", "") for h in history), key=len)
    assert len(longest) > 45
    assert any(longest[:44] + "…" in line for line in listing)  # as the docker CLI cuts it
    whole = clean.ctl("history", "--no-trunc", "built:1").stdout
    assert longest in whole
    check = "HEALTHCHECK &{Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s "
    check += "StartInterval:0s Retries:2}"
    assert any(h["created_by"].endswith(check) for h in history)
    assert _containers(clean) == []


# ---- the docker CLI and docker-py -----------------------------------------------------


@needs_cli
def test_docker_cli_builds_with_the_classic_builder(clean: Daemon, tmp_path: Path) -> None:
    """Plain ``docker build`` (no buildx here: the CLI falls back to the legacy builder,
    with its deprecation notice), then ``docker run`` of the image."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nCOPY a.txt /a.txt\nCMD cat /a.txt\n", "a.txt": "A\n"},
    )
    assert api_call(clean, "GET", "/_ping")[1]["builder-version"] == "1"  # the classic one
    r = docker(clean, "build", "-t", "cli:1", str(ctx))
    assert r.returncode == 0, r.stderr
    assert "legacy builder is deprecated" in r.stderr  # the CLI's own notice
    assert "Successfully tagged cli:1" in r.stdout
    assert docker(clean, "run", "--rm", "cli:1").stdout == "A\n"
    env = {**docker_env(clean), "DOCKER_BUILDKIT": "0"}
    assert DOCKER is not None
    r = subprocess.run([DOCKER, "build", "-q", str(ctx)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _image(clean, "cli:1")["Id"]  # the cache: the same image
    bad = _context(tmp_path / "bad", {"Dockerfile": f"FROM {BASE}\nRUN exit 3\n"})
    r = docker(clean, "build", str(bad))
    assert r.returncode == 3  # the legacy builder's: the command's code (errorDetail.code)
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in r.stderr


@needs_cli
def test_docker_cli_sends_a_dockerfile_from_outside_the_context(
    clean: Daemon, tmp_path: Path
) -> None:
    """``docker build -f ../app.Dockerfile .`` and ``docker build -f- .``: the CLI adds the
    Dockerfile to the context's tar under a name of its own (and to its .dockerignore),
    and that tar ends in the Dockerfile's data, without padding or end blocks, which
    Docker's daemon takes as the end."""
    ctx = _context(tmp_path / "ctx", {"a.txt": "A\n", ".dockerignore": "*.log\n", "x.log": "x"})
    dockerfile = f"FROM {BASE}\nCOPY . /ctx/\nCMD ls -a /ctx\n"
    outside = tmp_path / "app.Dockerfile"
    outside.write_text(dockerfile)
    r = docker(clean, "build", "-q", "-t", "outside:1", "-f", str(outside), str(ctx))
    assert r.returncode == 0, r.stderr
    r = docker(clean, "build", "-q", "-t", "outside:2", "-f-", str(ctx), input=dockerfile)
    assert r.returncode == 0, r.stderr
    for tag in ("outside:1", "outside:2"):
        out = docker(clean, "run", "--rm", tag).stdout.split()
        assert out == [".", "..", ".dockerignore", "a.txt"]
    clean.ctl("rmi", "outside:1", "outside:2")


def test_docker_py_builds_from_a_fileobj_and_a_path(clean: Daemon, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=docker_env(clean)["DOCKER_HOST"])
    try:
        dockerfile = io.BytesIO(f"FROM {BASE}\nRUN echo made > /made\n".encode())
        image, logs = client.images.build(fileobj=dockerfile, tag="py:1", rm=True)
        assert "py:1" in image.tags
        assert any("Successfully built" in str(line.get("stream", "")) for line in logs)
        out = client.containers.run("py:1", "cat /made", remove=True)
        assert out == b"made\n"
        ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nCOPY . /ctx/\n", "f": "F"})
        image, _ = client.images.build(path=str(ctx), tag="py:2")
        out = client.containers.run(image.id, "cat /ctx/f", remove=True)
        assert out == b"F"
        # The query's JSON parameters: buildargs, labels, target; a Dockerfile elsewhere.
        _context(ctx, {"sub/Other": f"FROM {BASE} AS a\nARG V\nRUN echo $V > /v\nFROM a\n"})
        image, _ = client.images.build(
            path=str(ctx), dockerfile="sub/Other", buildargs={"V": "from-py"},
            labels={"via": "py"}, target="a", nocache=True, forcerm=True,
        )  # fmt: skip
        assert image.labels == {"via": "py"}
        assert client.containers.run(image.id, "cat /v", remove=True) == b"from-py\n"
        # A Dockerfile outside the context: docker-py sends its name and then its text as
        # two values of ``dockerfile`` (Docker reads the first).
        outside = _context(tmp_path / "elsewhere", {"Dockerfile": f"FROM {BASE}\nCOPY f /\n"})
        image, _ = client.images.build(path=str(ctx), dockerfile=str(outside / "Dockerfile"))
        assert client.containers.run(image.id, "cat /f", remove=True) == b"F"
        # A step's stderr comes in red, as from Docker's builder (stdout as it is).
        script = f"FROM {BASE}\nRUN echo out; sleep 0.2; echo err >&2\n".encode()
        lines = [
            line.get("stream")
            for line in client.api.build(fileobj=io.BytesIO(script), nocache=True, decode=True)
        ]
        assert "out\n" in lines and "\x1b[91merr\n\x1b[0m" in lines
        with pytest.raises(docker_py.errors.BuildError, match="returned a non-zero code: 1"):
            client.images.build(fileobj=io.BytesIO(f"FROM {BASE}\nRUN false\n".encode()))
    finally:
        client.close()


def _tags(daemon: Daemon) -> list[str]:
    images = json.loads(daemon.ctl("images", "--format", "json").stdout)
    return [t for i in images for t in i["repo_tags"]]


def test_multi_stage_copy_from_target_and_scratch(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"""\
FROM {BASE} AS builder
RUN mkdir /out && echo built > /out/app
FROM scratch AS final
ARG MODE=640
COPY --from=builder --chown=7:8 --chmod=$MODE /out/app /app
COPY --from=0 /bin/busybox /bin/
FROM {BASE} AS after
RUN echo never
"""
        },
    )
    r = clean.ctl("build", "--target", "final", "-t", "staged", str(ctx))
    assert "RUN echo never" not in r.stdout
    out = clean.ctl("run", "--rm", "staged", "/bin/busybox", "stat", "-c", "%u:%g %a", "/app")
    assert out.stdout == "7:8 640\n"
    out = clean.ctl("run", "--rm", "staged", "/bin/busybox", "cat", "/app")
    assert out.stdout == "built\n"
    layers = _image(clean, "staged")["RootFS"]
    assert isinstance(layers, dict) and len(layers["Layers"]) == 2  # scratch + two COPYs


OWNERS = f"""\
FROM {BASE} AS build
RUN mkdir -p /out/d && echo x > /out/d/f && chown -R 65534:65534 /out/d && chmod 640 /out/d/f
FROM {BASE}
COPY --from=build /out /copied
COPY --from=build /out/d/f /single
COPY --from=build --chown=0:0 /out/d/f /rooted
RUN mkdir /there
COPY --chown=nobody f.txt /there/new/deeper/
COPY --chown=nobody f.txt /made/file
"""


def test_copy_keeps_a_stages_owners_and_chown_owns_the_directories_it_makes(
    clean: Daemon, tmp_path: Path
) -> None:
    """As Docker's builders: COPY --from without --chown keeps the owners the files have in
    the stage (a directory made for the destination is root's), and --chown owns the
    directories made for a file it copies (`COPY --chown=node package.json /app/`, then
    `npm install` as that user), not those that were there."""
    ctx = _context(tmp_path / "ctx", {"f.txt": "f", "Dockerfile": OWNERS})
    (ctx / "f.txt").chmod(0o644)
    clean.ctl("build", "-q", "-t", "owners", str(ctx))
    paths = ["/copied", "/copied/d", "/copied/d/f", "/single", "/rooted", "/there"]
    paths += ["/there/new", "/there/new/deeper", "/there/new/deeper/f.txt", "/made", "/made/file"]
    r = clean.ctl("run", "--rm", "owners", "stat", "-c", "%n %u:%g %a", *paths)
    assert r.stdout.splitlines() == [
        "/copied 0:0 755",
        "/copied/d 65534:65534 755",
        "/copied/d/f 65534:65534 640",
        "/single 65534:65534 640",
        "/rooted 0:0 640",
        "/there 0:0 755",
        "/there/new 65534:65534 755",
        "/there/new/deeper 65534:65534 755",
        "/there/new/deeper/f.txt 65534:65534 644",
        "/made 65534:65534 755",
        "/made/file 65534:65534 644",
    ]
    clean.ctl("rmi", "owners")


def test_workdir_makes_its_directory_in_the_image(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's builders: WORKDIR makes its directory (root's, 0755, whatever the USER)
    as a layer of the image, so a later stage, COPY --from or an earlier WORKDIR's path
    finds it; one already there adds no layer."""
    dockerfile = f"""\
FROM scratch AS s
WORKDIR /from-scratch/d
FROM {BASE}
COPY --from=s / /s/
WORKDIR /made/deep
USER nobody
WORKDIR rel
WORKDIR /tmp
CMD ["true"]
"""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    clean.ctl("build", "-q", "-t", "workdirs", str(ctx))
    paths = ("/s/from-scratch/d", "/made/deep", "/made/deep/rel")
    r = clean.ctl("run", "--rm", "-u", "0", "workdirs", "stat", "-c", "%n %u:%g %a", *paths)
    assert r.stdout.splitlines() == [f"{p} 0:0 755" for p in paths]
    layers = _image(clean, "workdirs")["RootFS"]
    assert isinstance(layers, dict) and len(layers["Layers"]) == 4  # base, COPY, 2 WORKDIRs
    # The history as Docker's builder writes a step that writes files: one space after
    # #(nop); COPY's destination as given.
    history = clean.ctl("history", "--no-trunc", "--format", "{{.CreatedBy}}", "workdirs")
    lines = history.stdout.splitlines()
    assert lines[1] == "/bin/sh -c #(nop) WORKDIR /tmp"
    assert lines[5].startswith("/bin/sh -c #(nop) COPY dir:") and lines[5].endswith(" in /s/ ")
    clean.ctl("rmi", "workdirs")


def test_maintainer_is_the_images_author(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's builder: MAINTAINER sets the image's Author (and its steps' history
    entries'), and a built image keeps neither the base image's author nor its comment
    (the import's "Imported from ...")."""
    assert _image(clean, BASE)["Comment"]
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nMAINTAINER Jane Doe <jane@example.com>\nENV A=1\n"},
    )
    clean.ctl("build", "-q", "-t", "authored", str(ctx))
    image = _image(clean, "authored")
    assert (image["Author"], image["Comment"]) == ("Jane Doe <jane@example.com>", "")
    (ctx / "Dockerfile").write_text("FROM authored\nENV B=2\n")
    clean.ctl("build", "-q", "-t", "child", str(ctx))
    image = _image(clean, "child")
    assert (image["Author"], image["Comment"]) == ("", "")
    clean.ctl("rmi", "child", "authored")


HEREDOCS = f"""\
FROM {BASE}
ARG WHO=heredocs
RUN <<EOF
echo one > /one
# a line of the script, not a comment of the Dockerfile
echo two >> /one
EOF
RUN <<EOF
#!/bin/sh
echo "script $WHO $0" > /script.txt
EOF
RUN cat <<A > /a.txt && cat <<-'B' > /b.txt
alpha $WHO
A
\tbeta $WHO
\tB
COPY <<EOF /greeting
hello $WHO "quoted" \\$kept
EOF
USER nobody
COPY --chmod=755 <<-"RAW" <<TWO /docs/
\traw $WHO
\tRAW
two
TWO
"""


def test_heredocs_in_run_and_copy(clean: Daemon, tmp_path: Path) -> None:
    """BuildKit's heredocs, which Dockerfiles written today use: a RUN of a script through
    the shell, one run as a file (``#!``, bound at /dev/pipes and not in the layer), a
    command that reads two heredocs, COPY of heredoc files with and without expansion."""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": HEREDOCS})
    clean.ctl("build", "-q", "-t", "heredocs:1", str(ctx))
    files = "/one /script.txt /a.txt /b.txt /greeting /docs/RAW /docs/TWO"
    script = f"cat {files}; stat -c %a /greeting /docs/RAW; ls /dev/pipes"
    out = clean.ctl("run", "--rm", "heredocs:1", "sh", "-c", script, check=False)
    assert out.stdout.splitlines() == [
        "one",
        "two",
        "script heredocs /dev/pipes/EOF",
        "alpha heredocs",
        "beta $WHO",
        'hello heredocs "quoted" $kept',
        "raw $WHO",
        "two",
        "644",
        "755",
    ]
    assert "/dev/pipes" in out.stderr  # not in the image
    bad = _context(tmp_path / "bad", {"Dockerfile": f"FROM {BASE}\nCOPY <<EOF f /\nx\nEOF\n"})
    r = clean.ctl("build", str(bad), check=False)
    assert r.returncode == 1
    assert (
        "line 2: COPY <<EOF with f: give heredocs and other sources in separate COPYs" in r.stderr
    )


RUN_MOUNTS = f"""FROM {BASE} AS tools
RUN mkdir -p /opt/tool && echo from-stage > /opt/tool/id
FROM {BASE}
WORKDIR /work
RUN --mount=type=bind,source=req.txt,target=req.txt cat req.txt > /installed
RUN --mount=type=bind,target=/ctx,rw touch /ctx/scratch && ls /ctx > /listed
RUN --mount=type=bind,target=/ctx readlink /ctx/escape > /escape
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t cat /t/id > /tool-id
RUN --mount=type=cache,target=/var/cache/pkg,id=pkg,uid=1000,mode=0700 \\
    stat -c '%u %a' /var/cache/pkg > /cache-owner && \\
    echo run >> /var/cache/pkg/runs && wc -l < /var/cache/pkg/runs > /cache-runs
RUN --mount=type=tmpfs,target=/scratch,size=1m df -k /scratch | tail -1 > /tmpfs
RUN --mount=type=secret,id=token cat /run/secrets/token 2>/dev/null || echo none > /secret
RUN --network=none ip -o link | wc -l > /links
"""


def _cat(daemon: Daemon, image: str, *paths: str) -> list[str]:
    return [daemon.ctl("run", "--rm", image, "cat", p).stdout.strip() for p in paths]


def test_run_mounts_and_network(clean: Daemon, tmp_path: Path) -> None:
    """BuildKit's RUN --mount (bind from the context and from a stage, a cache kept across
    builds, a tmpfs, a secret not provided) and --network, through the classic builder;
    what is mounted is not in the layers, a bound file's change re-runs its step."""
    files = {"Dockerfile": RUN_MOUNTS, "req.txt": "pkg==1\n", ".dockerignore": "hidden\n",
             "hidden": "x"}  # fmt: skip
    ctx = _context(tmp_path / "ctx", files)
    os.symlink("/etc/shadow", ctx / "escape")  # copied as a link: the host's never read
    clean.ctl("build", "-q", "-t", "mounts:1", str(ctx))
    got = _cat(clean, "mounts:1", "/installed", "/listed", "/escape", "/tool-id",
               "/cache-owner", "/cache-runs", "/secret", "/links")  # fmt: skip
    assert got == ["pkg==1", "Dockerfile\nescape\nreq.txt\nscratch", "/etc/shadow",
                   "from-stage", "1000 700", "1", "none", "1"]  # fmt: skip
    assert _cat(clean, "mounts:1", "/tmpfs")[0].split()[:2] == ["tmpfs", "1024"]
    assert not (ctx / "scratch").exists()  # rw: the writes went nowhere
    script = "test ! -e /ctx/req.txt && test ! -e /t/id && test ! -e /var/cache/pkg/runs && echo ok"
    assert clean.ctl("run", "--rm", "mounts:1", "sh", "-c", script).stdout == "ok\n"
    # The cache mount outlives the build; a changed bound file re-runs its step on.
    (ctx / "req.txt").write_text("pkg==2\n")
    r = clean.ctl("build", "-t", "mounts:2", str(ctx))
    assert r.stdout.count("Using cache") == 2  # the stage's RUN, WORKDIR
    assert _cat(clean, "mounts:2", "/installed", "/cache-runs") == ["pkg==2", "2"]
    bad = _context(
        tmp_path / "bad", {"Dockerfile": f"FROM {BASE}\nRUN --mount=type=nfs,target=/x true\n"}
    )
    r = clean.ctl("build", str(bad), check=False)
    assert r.returncode == 1 and "unsupported mount type 'nfs'" in r.stderr
    (bad / "Dockerfile").write_text(f"FROM {BASE}\nRUN --mount=type=secret,id=k,required true\n")
    r = clean.ctl("build", str(bad), check=False)
    assert r.returncode == 1 and "secret 'k' is required but not provided" in r.stderr
    (bad / "Dockerfile").write_text(f"FROM {BASE}\nRUN --network=bridge true\n")
    r = clean.ctl("build", str(bad), check=False)
    assert r.returncode == 1 and "RUN --network=bridge: use default, none or host" in r.stderr
    mounts = clean.root / "images" / "build-mounts"
    assert [p.stat().st_uid for p in mounts.iterdir()] == [1000]
    status, _, _ = api_call(clean, "POST", "/build/prune")  # docker builder prune
    assert status == 200 and not mounts.exists()  # the cache mounts too, as BuildKit's
    clean.ctl("rmi", "mounts:1", "mounts:2")


def test_run_secret_mounts_take_boxctl_build_s_secrets(clean: Daemon, tmp_path: Path) -> None:
    """boxctl build --secret: a file's (mode 0400, its uid) and a variable's, given to RUN
    as a file and as a variable; in no layer, the history, nor the cache key."""
    dockerfile = (
        f"FROM {BASE}\n"
        "RUN --mount=type=secret,id=token,uid=1000 stat -c '%u %a %s' /run/secrets/token > /owner\n"
        "RUN --mount=type=secret,id=api,env=API_KEY sh -c 'printf %s \"$API_KEY\" | wc -c > /env'\n"
    )  # fmt: skip
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    (tmp_path / "token").write_text("t0ken-value")
    env = {**os.environ, "MYKEY": "s3cr3t"}
    args = ["--secret", f"id=token,src={tmp_path}/token", "--secret", "id=api,env=MYKEY"]
    r = subprocess.run([sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build",
                        "-q", "-t", "secrets:1", *args, str(ctx)],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = clean.ctl("run", "--rm", "secrets:1", "cat", "/owner", "/env").stdout
    assert got.split() == ["1000", "400", "11", "6"]
    script = "test ! -s /run/secrets/token && ! grep -rqs t0ken /etc /run /root && echo clean"
    assert clean.ctl("run", "--rm", "secrets:1", "sh", "-c", script).stdout == "clean\n"
    history = clean.ctl("image", "history", "--no-trunc", "secrets:1").stdout
    assert "t0ken" not in history and "s3cr3t" not in history
    # Another secret's content: the cache is used (secrets are not in the key).
    (tmp_path / "token").write_text("other")
    r = subprocess.run([sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build",
                        "-t", "secrets:1", *args, str(ctx)],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 0 and r.stdout.count("Using cache") == 2, r.stdout + r.stderr
    r = clean.ctl("build", "--secret", "id=x,src=/no/such/file", str(ctx), check=False)
    assert r.returncode != 0 and "--secret x: /no/such/file: No such file or directory" in r.stderr
    clean.ctl("rmi", "secrets:1")


def test_copy_exclude(clean: Daemon, tmp_path: Path) -> None:
    """COPY --exclude (BuildKit's, Dockerfile 1.19's): a wildcard's matches and the files
    below each source that the patterns name are left out, and the cache key knows it."""
    files = {"home.txt": "t", "homework.py": "p", "homedir/a.txt": "a", "homedir/b.py": "b",
             "docs/readme.md": "r", "docs/guide.rst": "g", "docs/sub/skip": "s",
             "docs/sub/keep": "k"}  # fmt: skip
    dockerfile = (
        f"FROM {BASE}\n"
        "COPY --exclude=*.txt hom* /mydir/\n"
        "COPY --exclude=*.md --exclude=sub/skip docs /docs\n"
    )
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile, **files})
    clean.ctl("build", "-q", "-t", "excl:1", str(ctx))
    found = clean.ctl("run", "--rm", "excl:1", "find", "/mydir", "/docs", "-type", "f").stdout
    assert sorted(found.split()) == [
        "/docs/guide.rst", "/docs/sub/keep", "/mydir/b.py", "/mydir/homework.py"
    ]  # fmt: skip
    (ctx / "Dockerfile").write_text(dockerfile.replace("--exclude=*.md ", ""))
    r = clean.ctl("build", "-t", "excl:2", str(ctx))
    assert r.stdout.count("Using cache") == 1  # the first COPY only
    listed = clean.ctl("run", "--rm", "excl:2", "ls", "/docs").stdout.split()
    assert listed == ["guide.rst", "readme.md", "sub"]
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY --exclude=* hom* /x/\n")
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1 and "--exclude left out all of hom*" in r.stderr
    clean.ctl("rmi", "excl:1", "excl:2")


def test_a_non_root_user_lists_the_root_of_a_built_image(clean: Daemon, tmp_path: Path) -> None:
    """The top layer (a COPY's: no "./" member) gives "/" its mode: 0755, as Docker's."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nCOPY f /f\nUSER nobody\n", "f": "x\n"},
    )
    clean.ctl("build", "-q", "-t", "rootmode:1", str(ctx))
    out = clean.ctl("run", "--rm", "rootmode:1", "sh", "-c", "stat -c %a /; ls /")
    assert out.stdout.split()[0] == "755" and "f" in out.stdout.split()


def test_copy_makes_its_destination_0755_as_docker(clean: Daemon, tmp_path: Path) -> None:
    """``WORKDIR /app``, ``COPY . .``, ``USER nobody``: the directory COPY makes is 0755
    (a source directory's own mode is not applied to it, only to what it holds), so the
    user can enter it."""
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE}\nWORKDIR /app\nCOPY . .\nCOPY sub /d\n"
            "COPY sub /e/f/\nUSER nobody\n"
            "RUN ls && stat -c %a /app /d /e /e/f /app/sub\n"
            "USER root\nRUN stat -c '%i %h' /app/sub/s /app/sub/t\n",
            "sub/s": "s\n",
        },
    )
    os.link(ctx / "sub" / "s", ctx / "sub" / "t")  # kept a hard link, as Docker's COPY
    os.chmod(ctx / "sub", 0o750)
    out = clean.ctl("build", "--no-cache", "-t", "copied:1", str(ctx)).stdout
    assert "Dockerfile\nsub\n755\n755\n755\n755\n750\n" in out
    inodes = out.split("/app/sub/s /app/sub/t")[1].splitlines()[2:4]
    assert inodes[0] == inodes[1] and inodes[0].endswith(" 2"), out
    clean.ctl("rmi", "copied:1")


def test_hard_links_stay_hard_links(clean: Daemon, tmp_path: Path) -> None:
    """A RUN's hard links are links in its layer (one copy of the data, as Docker's:
    git-core's hundred names of one binary), and in an export."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nRUN head -c 100000 /dev/urandom > /a && ln /a /b\n"},
    )
    clean.ctl("build", "-q", "-t", "linked:1", str(ctx))
    out = clean.ctl("run", "--name", "linked", "linked:1", "stat", "-c", "%i %h", "/a", "/b")
    first, second = out.stdout.splitlines()
    assert first == second and first.endswith(" 2")
    history = json.loads(clean.ctl("history", "--format", "json", "linked:1").stdout)
    assert history[0]["size"] == 100_000  # the data once, as Docker counts it
    exported = tmp_path / "exported.tar"
    clean.ctl("export", "-o", str(exported), "linked")
    with tarfile.open(exported) as tar:
        assert tar.getmember("b").islnk() and tar.getmember("b").linkname == "a"
    clean.ctl("rm", "linked")
    clean.ctl("rmi", "linked:1")


def test_a_steps_layer_and_a_commit_leave_out_the_resolv_conf_boxd_wrote(
    clean: Daemon, tmp_path: Path
) -> None:
    """The /etc/resolv.conf boxd writes into a container (its network's name server) is
    not the container's change, as Docker's bound one is not: a RUN step's layer and a
    commit leave it out, so the image keeps its own (none here: ``--network none`` shows
    the image's) and another runtime does not get this host's name server."""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nRUN touch /made\n"})
    clean.ctl("build", "-q", "-t", "resolv:1", str(ctx))
    clean.ctl("run", "--name", "writer", "resolv:1", "touch", "/more")
    clean.ctl("commit", "writer", "resolv:2")
    for image in ("resolv:1", "resolv:2"):
        r = clean.ctl(
            "run", "--rm", "--network", "none", image, "ls", "/etc/resolv.conf", check=False
        )
        assert r.returncode == 1 and "No such file" in r.stderr, (image, r.stdout)
    clean.ctl("rm", "writer")
    clean.ctl("rmi", "resolv:1", "resolv:2")


def test_a_commit_keeps_the_images_volumes_and_health_check(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's commit merges them into the new image's config: the image's VOLUME and
    its HEALTHCHECK under the container's own fields (here a shorter interval)."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nVOLUME /data\nHEALTHCHECK --retries=5 CMD true\n"},
    )
    clean.ctl("build", "-q", "-t", "vols:1", str(ctx))
    clean.ctl("create", "--name", "held", "--health-interval", "7s", "vols:1", "true")
    clean.ctl("commit", "held", "vols:2")
    config = _image(clean, "vols:2")["Config"]
    assert isinstance(config, dict)
    assert config["Volumes"] == {"/data": {}}
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"], "Interval": 7_000_000_000, "Retries": 5
    }  # fmt: skip
    clean.ctl("rm", "held")
    clean.ctl("rmi", "vols:1", "vols:2")


def test_a_write_into_a_replaced_directory_keeps_the_files_below(
    clean: Daemon, tmp_path: Path
) -> None:
    """A directory a step replaced (opaque in its layer, as podman's and Docker's builds
    write it) that a later step, a commit or an export only writes into keeps what that
    layer holds: its copy-up carries the layer's opaque xattrs, which in the upper of an
    overlay that does not read them are ordinary ones, not its opaque mark."""
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE}\n"
            "RUN mkdir /d && echo old > /d/old\n"
            "RUN rm -rf /d && mkdir /d && echo kept > /d/kept\n"
            "RUN echo added > /d/added\n"
        },
    )
    clean.ctl("build", "-q", "-t", "replaced:1", str(ctx))
    assert clean.ctl("run", "--rm", "replaced:1", "ls", "/d").stdout.split() == ["added", "kept"]
    clean.ctl("run", "--name", "writer", "replaced:1", "touch", "/d/more")
    clean.ctl("commit", "writer", "replaced:2")
    listed = clean.ctl("run", "--rm", "replaced:2", "ls", "/d").stdout.split()
    assert listed == ["added", "kept", "more"]
    exported = tmp_path / "exported.tar"
    clean.ctl("export", "-o", str(exported), "writer")
    with tarfile.open(exported) as tar:
        names = sorted(n for n in tar.getnames() if n.startswith("d/"))
    assert names == ["d/added", "d/kept", "d/more"]
    assert clean.ctl("diff", "writer").stdout.split() == ["C", "/d", "A", "/d/more"]
    clean.ctl("rm", "writer")
    clean.ctl("rmi", "replaced:1", "replaced:2")


DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_a_stage_without_path_gets_dockers_default(clean: Daemon, tmp_path: Path) -> None:
    """Docker's builder adds its default PATH at FROM when the base has none (an
    imported root, scratch), so ``ENV PATH=/opt/bin:$PATH`` keeps /bin."""
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"""\
FROM {BASE} AS first
ENV PATH=/opt/bin:$PATH
RUN mkdir -p /opt/bin && echo 'echo from opt' > /opt/bin/hi && chmod +x /opt/bin/hi
FROM scratch
COPY --from=first /bin/busybox /bin/
"""
        },
    )
    clean.ctl("build", "-q", "--target", "first", "-t", "withpath:1", str(ctx))
    assert _image(clean, "withpath:1")["Config"]["Env"] == [  # type: ignore[index]
        DEFAULT_PATH.replace("=", "=/opt/bin:", 1)
    ]
    assert clean.ctl("run", "--rm", "withpath:1", "sh", "-c", "hi").stdout == "from opt\n"
    clean.ctl("build", "-q", "-t", "withpath:2", str(ctx))
    assert _image(clean, "withpath:2")["Config"]["Env"] == [DEFAULT_PATH]  # type: ignore[index]


def _tar(files: dict[str, bytes]) -> bytes:
    """A tar archive of ``files`` (name: content)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def test_dockerignore_wildcards_and_add_of_an_archive(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path / "ctx",
        {
            ".dockerignore": "# logs\n*.log\n!keep.log\nsecret/\n**/tmp\n!secret/sub/kept\n",
            "a.txt": "a",
            "b.log": "b",
            "keep.log": "k",
            "secret/x": "x",
            "secret/sub/kept": "brought back by its ! line, below an excluded directory",
            "secret/sub/y": "y",
            "d/tmp": "t",
            "d/y.txt": "y",
            "Dockerfile": f"FROM {BASE}\nCOPY . /ctx/\nCOPY *.txt d/*.txt /glob/\n"
            "ADD t.tar.gz /unpacked/\nADD a.txt /added\nCOPY k*.log /one-match\n"
            "COPY --chown=nobody a.txt /by-name\nCOPY --chown=0:nogroup a.txt /by-group\n",
        },
    )
    (ctx / "t.tar.gz").write_bytes(gzip.compress(_tar({"inner/file": b"in"})))
    clean.ctl("build", "-t", "ignored", str(ctx))
    # A wildcard that finds one file copies it to a destination without a / as that file.
    paths = ("/ctx", "/glob", "/unpacked", "/added", "/one-match")
    r = clean.ctl("run", "--rm", "ignored", "find", *paths)
    found = sorted(r.stdout.split())
    assert found == sorted(
        [
            "/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/a.txt", "/ctx/keep.log",
            "/ctx/secret", "/ctx/secret/sub", "/ctx/secret/sub/kept", "/ctx/d", "/ctx/d/y.txt",
            "/ctx/t.tar.gz", "/glob", "/glob/a.txt", "/glob/y.txt",
            "/unpacked", "/unpacked/inner", "/unpacked/inner/file", "/added", "/one-match",
        ]
    )  # fmt: skip
    r = clean.ctl("run", "--rm", "ignored", "stat", "-c", "%u:%g", "/by-name", "/by-group")
    assert r.stdout == "65534:65534\n0:65534\n"  # a user alone: its uid as the gid too
    # A COPY of an excluded file is a missing one.
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY b.log /\n")
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1
    assert "stat b.log: file does not exist" in r.stderr


def _image_actions(daemon: Daemon, since: float) -> list[str]:
    """The image events' actions from ``since`` to now, through the Engine API."""
    window = f"since={since}&until={time.time()}&filters=" + urllib.parse.quote(
        json.dumps({"type": ["image"]})
    )
    lines = api_call(daemon, "GET", f"/events?{window}")[2].splitlines()
    return [json.loads(line)["Action"] for line in lines]


def test_the_layer_cache(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE}\nENV A=1\nRUN od -An -N16 -x /dev/urandom > /stamp\n"
            "COPY f /f\nRUN cat /stamp /f\n",
            "f": "one\n",
        },
    )
    since = time.time()
    first = clean.ctl("build", "-t", "cached", str(ctx)).stdout
    assert "Using cache" not in first
    image = _image(clean, "cached")["Id"]
    # An image "create" event per step committed, as dockerd's; none for a cached step.
    assert _image_actions(clean, since) == ["create"] * 4 + ["tag"]
    since = time.time()
    again = clean.ctl("build", "-t", "cached", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 4
    assert _image(clean, "cached")["Id"] == image
    assert _image_actions(clean, since) == ["tag"]
    fresh = clean.ctl("build", "--no-cache", "-t", "cached", str(ctx)).stdout
    assert "Using cache" not in fresh
    assert _image(clean, "cached")["Id"] != image
    stamp = clean.ctl("run", "--rm", "cached", "cat", "/stamp").stdout
    # A changed file: the steps before its COPY come from the cache, the rest run again.
    (ctx / "f").write_text("two\n")
    changed = clean.ctl("build", "-t", "cached", str(ctx)).stdout
    assert changed.count(" ---> Using cache") == 2
    assert "two" in changed.split("COPY f /f")[1]
    assert clean.ctl("run", "--rm", "cached", "cat", "/stamp", "/f").stdout == stamp + "two\n"
    # docker builder prune forgets the cache.
    status, _, body = api_call(clean, "POST", "/build/prune")
    assert status == 200 and json.loads(body)["CachesDeleted"]
    after = clean.ctl("build", "-t", "cached", str(ctx)).stdout
    assert "Using cache" not in after
    # The cache is the steps' images, as Docker's classic builder's: rmi of the image
    # takes them, and no step is taken from the cache then (ENV's has no layer to miss).
    clean.ctl("rmi", "cached")
    removed = clean.ctl("build", "-t", "cached", str(ctx)).stdout
    assert "Using cache" not in removed
    # A prune forgets the steps whose images went (here with the rmi before it): the
    # cache's entries do not outlive them.
    entries = clean.root / "images" / "build-cache"
    made = set(entries.glob("*.json"))
    clean.ctl("rmi", "--no-prune", "cached")
    clean.ctl("image", "prune", "-f")
    assert set(entries.glob("*.json")) & made == set()


def test_copy_from_a_stage_is_cached_by_the_files_and_their_owners(
    clean: Daemon, tmp_path: Path
) -> None:
    """As Docker's classic builder keys it (moby's TestBuildMultiStageCopyFromSyntax): a
    COPY --from is taken from the cache when the files it copies are the same, though
    the stage that made them ran again (their times differ); not when their owners
    differ (COPY --from keeps them)."""
    dockerfile = f"""\
FROM {BASE} AS src
ARG V
RUN echo x > /x && if [ "$V" = 3 ]; then chown 5:5 /x; fi
FROM {BASE}
COPY --from=src /x /x
"""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    copied = []
    for v in (1, 2, 3):
        out = clean.ctl("build", "--build-arg", f"V={v}", "-t", "from-cache", str(ctx)).stdout
        copied.append(out.split("COPY --from=src")[1])
        assert "Using cache" not in out.split("COPY --from=src")[0].split("RUN echo")[1]
    assert [" ---> Using cache" in step for step in copied] == [False, True, False]
    assert clean.ctl("run", "--rm", "from-cache", "stat", "-c", "%u", "/x").stdout == "5\n"
    clean.ctl("rmi", "from-cache")


def test_every_stage_of_a_multi_stage_build_is_cached(clean: Daemon, tmp_path: Path) -> None:
    """An earlier stage's image is kept untagged (Docker's classic builder's ``<none>``),
    so its RUN layers, which the final image does not hold, stay for the cache; removing
    it (``rmi``, ``image prune``) removes that cache."""
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"""\
FROM {BASE} AS builder
RUN od -An -N16 -x /dev/urandom > /stamp
FROM builder AS tested
RUN cat /stamp > /tested
FROM {BASE}
COPY --from=tested /stamp /tested /
"""
        },
    )
    before = set(clean.ctl("images", "-q", "-f", "dangling=true").stdout.split())
    clean.ctl("build", "-t", "staged-cache", str(ctx))
    stamp = clean.ctl("run", "--rm", "staged-cache", "cat", "/stamp").stdout
    again = clean.ctl("build", "-t", "staged-cache", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 3 and "Running in" not in again
    assert clean.ctl("run", "--rm", "staged-cache", "cat", "/tested").stdout == stamp
    kept = set(clean.ctl("images", "-q", "-f", "dangling=true").stdout.split()) - before
    assert len(kept) == 1  # "tested" (it holds builder's layer too)
    clean.ctl("rmi", *kept)
    after = clean.ctl("build", "-t", "staged-cache", str(ctx)).stdout
    assert after.count("Running in") == 2
    kept = set(clean.ctl("images", "-q", "-f", "dangling=true").stdout.split()) - before
    clean.ctl("rmi", "staged-cache", *kept)


def test_cache_from_takes_the_steps_an_images_history_holds(clean: Daemon, tmp_path: Path) -> None:
    """--cache-from (boxctl, the docker CLI's classic builder, docker-py's cache_from): the
    named images' histories are the cache, as in Docker's classic builder, also with the
    daemon's own step cache forgotten (as for an image pulled on another machine); an
    image not stored gives no hit, nor does the step cache then."""
    dockerfile = (
        f"FROM {BASE}\nENV A=1\nRUN od -An -N16 -x /dev/urandom > /stamp\n"
        "COPY f /f\nRUN cat /stamp /f\n"
    )
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile, "f": "one\n"})
    clean.ctl("build", "-t", "origin", str(ctx))
    image = _image(clean, "origin")["Id"]
    stamp = clean.ctl("run", "--rm", "origin", "cat", "/stamp").stdout

    def forget() -> None:
        assert api_call(clean, "POST", "/build/prune")[0] == 200

    forget()
    again = clean.ctl("build", "--cache-from", "origin", "-t", "again", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 4
    assert _image(clean, "again")["Id"] == image  # every step the image's own
    none = clean.ctl("build", "--cache-from", "nosuch", str(ctx)).stdout
    assert "[Warning] --cache-from nosuch: no such image, not used" in none
    assert "Using cache" not in none  # the step cache holds them all, unused
    # A changed file: the steps before its COPY come from the image, the rest run.
    (ctx / "f").write_text("two\n")
    forget()
    changed = clean.ctl("build", "--cache-from", "origin", "-t", "changed", str(ctx)).stdout
    assert changed.count(" ---> Using cache") == 2
    assert clean.ctl("run", "--rm", "changed", "cat", "/stamp", "/f").stdout == stamp + "two\n"
    (ctx / "f").write_text("one\n")
    forget()
    if DOCKER is not None:
        r = docker(clean, "build", "-q", "--cache-from", "origin", str(ctx))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == image
        forget()
    docker_py = pytest.importorskip("docker")
    client = docker_py.APIClient(base_url=f"unix://{clean.docker_socket}")
    try:
        lines = list(client.build(path=str(ctx), cache_from=["origin"], decode=True))
        assert sum("Using cache" in line.get("stream", "") for line in lines) == 4
    finally:
        client.close()
    status, _, body = api_call(clean, "POST", "/build?cachefrom=origin")
    assert status == 400 and b"invalid cachefrom: not JSON: 'origin'" in body
    # What a COPY does beyond its files' content is the instruction's too: a file copied
    # into a directory is not the same step as one copied to that name.
    into = _context(tmp_path / "into", {"Dockerfile": f"FROM {BASE}\nCOPY f /d/\n", "f": "x"})
    clean.ctl("build", "-t", "into", str(into))
    named = _context(tmp_path / "named", {"Dockerfile": f"FROM {BASE}\nCOPY f /d\n", "f": "x"})
    out = clean.ctl("build", "--cache-from", "into", "-t", "named", str(named)).stdout
    assert "Using cache" not in out
    assert clean.ctl("run", "--rm", "named", "cat", "/d").stdout == "x"


def test_proxy_build_args_reach_run_without_an_arg(clean: Daemon, tmp_path: Path) -> None:
    """Docker's predefined build arguments (HTTP_PROXY, no_proxy ...): given with
    --build-arg, every RUN sees them without an ARG, the history does not hold them, no
    "not consumed" warning names them, and another proxy does not bust the cache."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f'FROM {BASE}\nRUN echo "$HTTP_PROXY $no_proxy $https_proxy" > /p\n'},
    )
    proxy = ("--build-arg", "HTTP_PROXY=http://proxy.invalid:3128", "--build-arg", "no_proxy=x")
    r = clean.ctl("build", "--no-cache", "-t", "proxied", *proxy, str(ctx))
    assert "not consumed" not in r.stdout
    out = clean.ctl("run", "--rm", "proxied", "cat", "/p")
    assert out.stdout == "http://proxy.invalid:3128 x \n"
    history = clean.ctl("history", "--no-trunc", "--format", "{{.CreatedBy}}", "proxied")
    assert (
        history.stdout.splitlines()[0]
        == '/bin/sh -c echo "$HTTP_PROXY $no_proxy $https_proxy" > /p'
    )
    r = clean.ctl("build", "--build-arg", "HTTP_PROXY=http://other.invalid:1", str(ctx))
    assert "Using cache" in r.stdout
    clean.ctl("rmi", "proxied")


def test_arg_defaults_see_env_and_an_arg_without_one_is_unset(
    clean: Daemon, tmp_path: Path
) -> None:
    """As Docker's builder: an ARG's default is expanded with what the line sees (the
    stage's ENV too, and not the ARGs of the same line); an ARG with no value is unset,
    not empty, so neither RUN nor its history entry has it."""
    dockerfile = f"""\
ARG GLOBAL
FROM {BASE}
ENV HOME_DIR=/opt
ARG DIR=$HOME_DIR/app
ARG GLOBAL UNSET
ARG A=1 B=$A A1=x
RUN echo "$DIR ${{UNSET-unset}} ${{GLOBAL-unset}} [$B]" > /args
"""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    clean.ctl("build", "-q", "-t", "args", str(ctx))
    assert clean.ctl("run", "--rm", "args", "cat", "/args").stdout == "/opt/app unset unset []\n"
    history = clean.ctl("history", "--no-trunc", "--format", "{{.CreatedBy}}", "args")
    lines = history.stdout.splitlines()
    assert lines[0].startswith("|4 A1=x A=1 B= DIR=/opt/app /bin/sh -c ")
    # As Docker's history shows an ARG: its default expanded.
    assert lines[1:4] == [
        "/bin/sh -c #(nop)  ARG A=1 B= A1=x",
        "/bin/sh -c #(nop)  ARG GLOBAL UNSET",
        "/bin/sh -c #(nop)  ARG DIR=/opt/app",
    ]
    clean.ctl("rmi", "args")


def test_a_build_arg_without_a_value_keeps_the_default_and_is_named_unused(
    clean: Daemon, tmp_path: Path
) -> None:
    """As Docker's (moby's TestBuildBuildTimeArgEnv): ``--build-arg NAME`` with NAME not in
    the client's environment (the Engine API's null) leaves the ARG's default, and one
    that no ARG takes is named in the warning with those given a value."""
    dockerfile = f'FROM {BASE}\nARG KEPT=fromfile\nRUN [ "$KEPT" = fromfile ]\n'
    ctx = _context(tmp_path / "ctx", {"Dockerfile": dockerfile})
    args = ("--build-arg", "KEPT", "--build-arg", "NOARG", "--build-arg", "GIVEN=x")
    out = clean.ctl("build", *args, str(ctx)).stdout
    assert "[Warning] One or more build-args [GIVEN NOARG] were not consumed" in out
    query = urllib.parse.urlencode({"buildargs": json.dumps({"KEPT": None, "NOARG": None})})
    status, _, body = api_call(
        clean, "POST", f"/build?{query}", body=_tar({"Dockerfile": dockerfile.encode()})
    )
    assert status == 200 and b"errorDetail" not in body, body
    assert b"build-args [NOARG] were not consumed" in body


def test_onbuild_triggers_run_in_the_child(clean: Daemon, tmp_path: Path) -> None:
    parent = _context(
        tmp_path / "parent", {"Dockerfile": f"FROM {BASE}\nONBUILD RUN echo fired > /fired\n"}
    )
    clean.ctl("build", "-t", "parent", str(parent))
    assert _image(clean, "parent")["Config"]["OnBuild"] == ["RUN echo fired > /fired"]  # type: ignore[index]
    child = _context(tmp_path / "child", {"Dockerfile": "FROM parent\nCMD cat /fired\n"})
    r = clean.ctl("build", "-t", "child", str(child))
    assert "# Executing 1 build trigger\n" in r.stdout  # Docker's words (2: "triggers")
    assert clean.ctl("run", "--rm", "child").stdout == "fired\n"
    # Not inherited: null, as Docker's API 1.50 shows a field the image has not.
    assert _image(clean, "child")["Config"]["OnBuild"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("dockerfile", "args", "message"),
    [
        (None, ("/nope",), "unable to prepare context: path '/nope' not found"),
        ("", (), "Cannot locate specified Dockerfile: Dockerfile"),
        (" ", (), "Dockerfile parse error: file with no instructions"),
        ("# only a comment\n", (), "Dockerfile parse error: file with no instructions"),
        (f"FROM {BASE}\nFORM x\n", (), "parse error on line 2: unknown instruction: FORM"),
        ("FROM scratch\n", (), "No image was generated. Is your Dockerfile empty?"),
        ("FROM\n", (), "line 1: FROM requires either one or three arguments"),
        (f"FROM {BASE}\nENV =\n", (), "line 2: ENV names can not be blank"),
        (f"FROM {BASE}\nARG =x\n", (), "line 2: ARG names can not be blank"),
        (f"FROM {BASE}\nONBUILD\n", (), "line 2: ONBUILD requires at least one argument"),
        (f"FROM {BASE}\nVOLUME\n", (), "line 2: VOLUME requires at least one argument"),
        (f"FROM {BASE}\nVOLUME /tmp /bin/busybox\n", (), "line 2: VOLUME /bin/busybox: "
         "cannot mount volume over existing file, file exists"),
        (f"FROM {BASE}\nRUN ln -s /bin/busybox /l\nVOLUME [\"/l\"]\n", (), "line 3: VOLUME /l: "
         "cannot mount volume over existing file"),
        ("FROM default\nVOLUME /usr/bin/env\n", (), "line 2: VOLUME /usr/bin/env: cannot mount"),
        (f"FROM {BASE}\nHEALTHCHECK\n", (), "line 2: HEALTHCHECK requires an argument"),
        (f"ARG 1x=2\nFROM {BASE}\n", (), "line 1: ARG names a bad variable: '1x=2'"),
        (f"FROM {BASE}\nENV ONLYKEY\n", (), "line 2: ENV ONLYKEY: must have two arguments"),
        (f"FROM {BASE}\nCOPY nope.txt /\n", (), "COPY failed: file not found in build "
         "context or excluded by .dockerignore: stat nope.txt: file does not exist"),
        (f"FROM {BASE}\nRUN exit 7\n", ("--force-rm",),
         "The command '/bin/sh -c exit 7' returned a non-zero code: 7"),
        (f"FROM {BASE} AS a\n", ("--target", "nope"), 'target stage "nope" could not be found'),
        ("FROM 127.0.0.1:1/nope:1\n", (), "FROM 127.0.0.1:1/nope:1: cannot get the image"),
        (f"FROM {BASE}\nADD http://127.0.0.1:1/x /x\n", (), "ADD http://127.0.0.1:1/x: cannot"),
        (f"FROM {BASE}\nCOPY http://127.0.0.1:1/x /x\n", (), "COPY takes no URL"),
        (f"FROM {BASE}\nSTOPSIGNAL SIGFOO\n", (), "line 2: STOPSIGNAL: invalid signal: SIGFOO"),
        (f"FROM {BASE}\nEXPOSE\n", (), "line 2: EXPOSE requires at least one argument"),
        (f"FROM {BASE}\nFROM {BASE} AS 2nd\n", (), "line 2: invalid name for build stage: '2nd'"),
        (f"FROM {BASE} AS a\nFROM {BASE} AS A\n", (), "line 2: A stage name already used"),
        (f"FROM {BASE}\nCOPY --chown=nobodyhere Dockerfile /\n", (),
         "line 2: --chown=nobodyhere: unable to find user nobodyhere"),
        (f"FROM {BASE}\nFROM {BASE}\nCOPY --from=0 /nope /x\n", (), "COPY failed: file not found"),
        (f"FROM {BASE}\nFROM {BASE}\nCOPY --from=0 /etc /etc/passwd\n", (),
         "COPY failed: cannot copy a directory to /etc/passwd: it is a file in the image"),
        (f"FROM {BASE}\nCOPY --from=127.0.0.1:1/later /x /x\n", (), "line 2: COPY "
         "--from=127.0.0.1:1/later (no stage of that name before): cannot get the image"),
        (f"ARG S=x\nFROM {BASE}\nCOPY --from=$S /x /x\n", (), "line 3: --from=$S is empty here"),
        (f"FROM {BASE}\nMAINTAINER\n", (), "line 2: MAINTAINER requires exactly one argument"),
        (f"FROM {BASE}\nHEALTHCHECK --timeout=500us CMD true\n", (),
         "line 2: HEALTHCHECK --timeout: '500us' cannot be less than 1ms"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(
    clean: Daemon, tmp_path: Path, dockerfile: str | None, args: tuple[str, ...], message: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    if dockerfile:
        (ctx / "Dockerfile").write_text(dockerfile)
    where = () if dockerfile is None else (str(ctx),)
    r = clean.ctl("build", "-t", "bad:1", *args, *where, check=False)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "docker.io/library/bad:1" not in _tags(clean)
    assert _containers(clean) == []


@pytest.mark.parametrize("client", ["boxctl", "docker"])
def test_quiet_shows_the_output_of_a_failed_build(
    clean: Daemon, tmp_path: Path, client: str
) -> None:
    """-q shows only the image id; when the build fails, the output it held (the failed
    RUN's own words) comes before the error, on stderr, as Docker's daemon and CLI show it."""
    if client == "docker" and DOCKER is None:
        pytest.skip("no docker CLI")
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nRUN true\n"})
    if client == "boxctl":
        r = clean.ctl("build", "-q", str(ctx))
    else:
        r = docker(clean, "build", "-q", str(ctx))
    assert r.stdout.startswith("sha256:") and len(r.stdout.split()) == 1
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo $((6 * 7)) is the answer; exit 2\n")
    if client == "boxctl":
        r = clean.ctl("build", "-q", "--force-rm", str(ctx), check=False)
        assert r.returncode == 1
    else:
        r = docker(clean, "build", "-q", "--force-rm", str(ctx))
        assert r.returncode == 2
    assert r.stdout == ""
    assert "42 is the answer" in r.stderr
    assert "returned a non-zero code: 2" in r.stderr.splitlines()[-1]


def test_an_empty_dockerfile_is_named_so(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", {"Dockerfile": ""})
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1
    assert r.stderr == "boxctl: the Dockerfile (Dockerfile) cannot be empty\n"


def test_an_image_stops_with_sigrtmin_plus_3_as_systemds_do(clean: Daemon, tmp_path: Path) -> None:
    """``STOPSIGNAL SIGRTMIN+3`` (systemd's images, kind's node) as Docker reads it: the
    image builds, runs, and ``stop`` sends that signal."""
    rtmin3 = 34 + 3  # glibc's SIGRTMIN is 34
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE}\nSTOPSIGNAL SIGRTMIN+3\n"
            f"CMD trap 'exit 7' {rtmin3}; echo ready; while :; do sleep 0.1; done\n"
        },
    )
    clean.ctl("build", "-q", "-t", "rtstop:1", str(ctx))
    assert _image(clean, "rtstop:1")["Config"]["StopSignal"] == "SIGRTMIN+3"  # type: ignore[index]
    clean.ctl("run", "-d", "--name", "rtstop", "rtstop:1")
    clean.wait_for("rtstop", lambda _: "ready" in clean.ctl("logs", "rtstop").stdout)
    clean.ctl("stop", "-t", "60", "rtstop")
    assert clean.ctl("inspect", "-f", "{{.State.ExitCode}}", "rtstop").stdout == "7\n"
    clean.ctl("rm", "rtstop")
    clean.ctl("rmi", "rtstop:1")


def test_a_failed_step_keeps_its_container_without_force_rm(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's --rm: a successful step's container goes, a failed one's stays."""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nRUN true\nRUN false\n"})
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1
    assert len(_containers(clean)) == 1
    images = {i["id"] for i in json.loads(clean.ctl("images", "--format", "json").stdout)}
    clean.remove_containers()
    # The failed step's image goes with its container; only what was there stays.
    after = {i["id"] for i in json.loads(clean.ctl("images", "--format", "json").stdout)}
    assert after == images


def test_builds_running_on_one_step_image_leave_it_to_the_last(
    clean: Daemon, tmp_path: Path
) -> None:
    """Two builds of Dockerfiles that start alike run their later steps on one same step
    image (the second takes the first's cache): the build that made it ends first; both
    succeed, the step image is both images' Parent, and it goes with the last of them."""
    before = set(clean.ctl("images", "-a", "-q", "--no-trunc").stdout.split())
    started = "RUN echo a > /a\nRUN echo {}; sleep {}\n"
    procs = []
    for name, sleep in (("one", 1), ("two", 4)):
        ctx = _context(
            tmp_path / name, {"Dockerfile": f"FROM {BASE}\n" + started.format(name, sleep)}
        )
        argv = [sys.executable, "-m", "boxctl", "--socket", str(clean.socket)]
        proc = subprocess.Popen(
            [*argv, "build", "-t", f"shared:{name}", str(ctx)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:  # its last step runs (on the step image)
            if line.strip() == name:
                break
    for proc in procs:
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    assert len({_image(clean, f"shared:{name}")["Parent"] for name in ("one", "two")}) == 1
    clean.ctl("rmi", "shared:one", "shared:two")
    assert set(clean.ctl("images", "-a", "-q", "--no-trunc").stdout.split()) == before


def test_a_failed_builds_steps_are_images_that_run(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's classic builder keeps them: the id each step prints is an image, so
    the last good step of a failed build runs to look into it; it is dangling (listed,
    ``dangling=true``), and ``image prune`` removes it with the steps' images below it."""
    before = set(clean.ctl("images", "-a", "-q", "--no-trunc").stdout.split())
    dockerfile = f"FROM {BASE}\nRUN echo one > /one\nENV X=1\nRUN false\n"
    r = clean.ctl("build", str(_context(tmp_path, {"Dockerfile": dockerfile})), check=False)
    assert r.returncode == 1
    steps = [line[6:] for line in r.stdout.splitlines() if line.startswith(" ---> ")]
    last = [s for s in steps if " " not in s][-1]  # ENV's (not "Running in ...")
    out = clean.ctl("run", "--rm", last, "sh", "-c", "cat /one; echo $X").stdout
    assert out == "one\n1\n"
    dangling = clean.ctl("images", "-q", "-f", "dangling=true").stdout.split()
    assert last in dangling
    made = {_image(clean, last)["Id"], _image(clean, last)["Parent"]}  # ENV's and RUN's
    clean.remove_containers()  # the failed RUN's, kept (no --force-rm)
    clean.ctl("image", "prune", "-f")  # (and what earlier tests' failed builds left)
    after = set(clean.ctl("images", "-a", "-q", "--no-trunc").stdout.split())
    assert not made & before and after <= before and not made & after


def test_boxctl_context_on_stdin_and_a_dockerfile_outside(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", {"f.txt": "F\n"})
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text(f"FROM {BASE}\nCOPY f.txt /\nCMD cat /f.txt\n")
    # -f -: the Dockerfile from stdin, the context a directory (docker build -f- .).
    r = subprocess.run(
        [sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build", "-q", "-t",
         "piped", "-f", "-", str(ctx)],
        input=f"FROM {BASE}\nCOPY f.txt /piped\nCMD cat /piped\n".encode(),
        capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    assert clean.ctl("run", "--rm", "piped").stdout == "F\n"
    r = subprocess.run(
        [sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build", "-f", "-", "-"],
        input=b"", capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert r.returncode == 125 and b"stdin cannot be both" in r.stderr
    lower = _context(tmp_path / "lower", {"dockerfile": f"FROM {BASE}\nCMD echo lower\n"})
    clean.ctl("build", "-t", "lower", str(lower))  # the docker CLI's fallback name
    assert clean.ctl("run", "--rm", "lower").stdout == "lower\n"
    # Docker's "image build" and "image remove" are build and rmi.
    built = clean.ctl("image", "build", "-q", "-t", "lower:2", str(lower)).stdout.strip()
    assert built == _image(clean, "lower")["Id"]
    assert clean.ctl("image", "remove", "lower:2").stdout == "Untagged: lower:2\n"
    iidfile = tmp_path / "iid"
    clean.ctl("build", "-f", str(outside), "-t", "outside", "--iidfile", str(iidfile), str(ctx))
    assert clean.ctl("run", "--rm", "outside").stdout == "F\n"
    assert iidfile.read_text() == _image(clean, "outside")["Id"]  # docker build's --iidfile
    failed = clean.ctl("build", "--iidfile", str(iidfile), str(tmp_path / "nope"), check=False)
    assert failed.returncode == 1 and not iidfile.exists()  # a failed build leaves no old id
    # A tar on stdin, and a lone Dockerfile on stdin.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(ctx / "f.txt", arcname="f.txt")
        tar.add(outside, arcname="Dockerfile")
    r = subprocess.run(
        [sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build", "-q", "-"],
        input=buffer.getvalue(), capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )  # fmt: skip
    assert r.stdout.decode().strip() == _image(clean, "outside")["Id"]  # cached: the same
    lone = f"FROM {BASE}\nCMD echo lone\n".encode()
    r = subprocess.run(
        [sys.executable, "-m", "boxctl", "--socket", str(clean.socket), "build", "-q", "-"],
        input=lone, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    image_id = r.stdout.decode().strip()
    assert clean.ctl("run", "--rm", image_id).stdout == "lone\n"


def test_the_go_clients_null_buildargs_labels_and_cachefrom(clean: Daemon) -> None:
    # moby's Go client (docker/client's ImageBuild, so testcontainers-go) sends each of
    # these JSON parameters as ``null`` when its option is unset, as Go marshals a nil map
    # or slice: no build arg, no label, no cache image, as dockerd reads them.
    context = _tar({"Dockerfile": f"FROM {BASE}\nLABEL from=file\n".encode()})
    query = "t=gonull:1&buildargs=null&labels=null&cachefrom=null"
    status, _, body = api_call(clean, "POST", f"/build?{query}", body=context)
    assert status == 200, body
    assert b'"errorDetail"' not in body, body
    assert _image(clean, "gonull:1")["Config"]["Labels"] == {"from": "file"}  # type: ignore[index]


def test_engine_api_names_each_stages_image_in_an_aux_message(clean: Daemon) -> None:
    """As Docker's classic builder (moby's TestBuildMultiStageOnBuild): an ``aux`` ID as
    each stage ends, the built image's last; each an image (its last step's)."""
    dockerfile = f"FROM {BASE} AS one\nENV A=1\nFROM one\nENV B=2\nFROM {BASE}\nENV C=3\n"
    status, _, body = api_call(
        clean, "POST", "/build?t=staged-aux:1", body=_tar({"Dockerfile": dockerfile.encode()})
    )
    assert status == 200, body
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    ids = [line["aux"]["ID"] for line in lines if "aux" in line]
    assert len(ids) == 3 and ids[2] == _image(clean, "staged-aux:1")["Id"]
    assert _image(clean, ids[1])["Parent"] == ids[0]  # "FROM one" builds on stage one
    assert "B=2" in _image(clean, ids[1])["Config"]["Env"]  # type: ignore[index]
    clean.ctl("rmi", "staged-aux:1")


def test_engine_api_refuses_a_bad_dockerfile_with_its_status(clean: Daemon) -> None:
    """As dockerd (moby's TestBuildWithEmptyDockerfile): a context or Dockerfile refused
    before any output is the response's 400, not an error line of a 200 (the Go client
    reports only the status)."""
    for dockerfile, words in (
        (b"", "the Dockerfile (Dockerfile) cannot be empty"),
        (b"\n\n   \n", "file with no instructions"),
        (b"# a comment\n", "file with no instructions"),
    ):
        status, _, body = api_call(clean, "POST", "/build", body=_tar({"Dockerfile": dockerfile}))
        assert status == 400 and words in json.loads(body)["message"], body
    # A context's names are joined onto its root as dockerd's untar joins them: ../foo is
    # foo, /bar is bar (moby's TestBuildUncleanTarFilenames).
    dockerfile = f"FROM {BASE}\nCOPY foo bar /\nCMD cat /foo /bar\n".encode()
    context = _tar({"Dockerfile": dockerfile, "../foo": b"f\n", "/bar": b"b\n"})
    status, _, body = api_call(clean, "POST", "/build?t=unclean", body=context)
    assert status == 200 and b"errorDetail" not in body, body
    assert clean.ctl("run", "--rm", "unclean").stdout == "f\nb\n"
    clean.ctl("rmi", "unclean")
    # A failure after the first output stays a line of the 200, as dockerd's.
    context = _tar({"Dockerfile": f"FROM {BASE}\nRUN exit 3\n".encode()})
    status, _, body = api_call(clean, "POST", "/build", body=context)
    last = json.loads(body.splitlines()[-1])
    assert status == 200 and last["errorDetail"]["code"] == 3, body


def test_a_built_image_keeps_its_base_from_removal_by_id(clean: Daemon, tmp_path: Path) -> None:
    """As with Docker's builder, whose intermediate images are its base's children
    (moby's integration-cli TestRmiParentImageFail): each step's image is the next one's
    Parent, down to the base, which is not removed by id while they exist (by tag only
    the tag goes); ``history`` names each on its own last row, ``images`` lists only the
    built image (``-a`` the steps' too), ``ps --filter ancestor=BASE`` takes the built
    image's containers, and the built image's removal takes its steps' with it."""
    base = _image(clean, BASE)["Id"]
    # Stamped to the nanosecond, as dockerd's builder stamps it (since/before order
    # images built within a second: moby's TestImagesFilterSinceAndBefore).
    for n in (1, 2):
        made = _context(tmp_path / f"n{n}", {"Dockerfile": f"FROM {BASE}\nLABEL n={n}\n"})
        clean.ctl("build", "-q", "-t", f"stamp:{n}", str(made))
    assert "." in str(_image(clean, "stamp:1")["Created"])
    since = clean.ctl("images", "-q", "-f", "since=stamp:1", "stamp").stdout.split()
    assert since == [str(_image(clean, "stamp:2")["Id"])[7:19]]
    clean.ctl("rmi", "stamp:1", "stamp:2")
    dockerfile = f"FROM {BASE}\nRUN echo hello > /hello\nCMD cat /hello\n"
    clean.ctl("build", "-q", "-t", "kid", str(_context(tmp_path, {"Dockerfile": dockerfile})))
    step = str(_image(clean, "kid")["Parent"])  # RUN's
    assert _image(clean, step)["Parent"] == base
    r = clean.ctl("rmi", str(base), check=False)
    assert r.returncode == 1 and "image has dependent child images" in r.stderr, r.stderr
    rows = clean.ctl("history", "--no-trunc", "-q", "kid").stdout.split()
    base_rows = len(clean.ctl("history", "-q", BASE).stdout.split())
    assert rows[: len(rows) - base_rows + 1] == [_image(clean, "kid")["Id"], step, base]
    listed = clean.ctl("images", "-q", "--no-trunc").stdout.split()
    every = clean.ctl("images", "-a", "-q", "--no-trunc").stdout.split()
    assert step not in listed and step in every
    clean.ctl("run", "--name", "kidrun", "kid")
    assert clean.ctl("ps", "-aq", "--filter", f"ancestor={BASE}").stdout.split()
    clean.ctl("rm", "kidrun")
    removed = clean.ctl("rmi", "kid").stdout
    assert f"Deleted: {step}" in removed  # untagged parents go, a tagged one stays
    assert _image(clean, BASE)["Id"] == base


def test_onbuild_triggers_run_from_an_earlier_stage(clean: Daemon, tmp_path: Path) -> None:
    """As Docker's builder (moby's TestBuildMultiStageOnBuild): a stage FROM an earlier one
    runs that stage's ONBUILD triggers, each time."""
    dockerfile = (
        f"FROM {BASE} AS stage1\nONBUILD RUN echo foo > /somefile\nONBUILD ENV bar=baz\n"
        "FROM stage1\nRUN cat /somefile\n"
        "FROM stage1\nRUN cat /somefile\n"
    )
    r = clean.ctl("build", "-t", "onstage", str(_context(tmp_path, {"Dockerfile": dockerfile})))
    assert r.stdout.count("# Executing 2 build triggers\n") == 2, r.stdout
    config = _image(clean, "onstage")["Config"]
    assert "bar=baz" in config["Env"] and config["OnBuild"] is None  # type: ignore[index]
    clean.ctl("rmi", "onstage")


def test_testcontainers_docker_image(clean: Daemon, tmp_path: Path) -> None:
    pytest.importorskip("testcontainers")
    ctx = _context(
        tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nCMD echo from testcontainers; sleep 60\n"}
    )
    script = f"""
from testcontainers.core.container import DockerContainer
from testcontainers.core.image import DockerImage
from testcontainers.core.waiting_utils import wait_for_logs
with DockerImage(path={str(ctx)!r}, tag="tc:1") as image:
    with DockerContainer(str(image)) as c:
        wait_for_logs(c, "from testcontainers", timeout=60)
        print("ok")
"""
    env = {**docker_env(clean), "TESTCONTAINERS_RYUK_DISABLED": "true"}
    r = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    assert "docker.io/library/tc:1" not in _tags(clean)  # removed by it at the end


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server of ``tmp_path/www``: its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_text("fetched\n")
    os.utime(root / "file.txt", (1_500_000_000, 1_500_000_000))  # its Last-Modified
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_add_of_a_url(clean: Daemon, tmp_path: Path, web: str) -> None:
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nADD {web}/file.txt /fetched/\nADD {web}/file.txt /named\n"},
    )
    clean.ctl("build", "-t", "fetched", str(ctx))
    r = clean.ctl("run", "--rm", "fetched", "sh", "-c", "cat /fetched/file.txt; stat -c %a /named")
    assert r.stdout == "fetched\n600\n"
    # Its time is the server's Last-Modified, as Docker's builders set it.
    r = clean.ctl("run", "--rm", "fetched", "stat", "-c", "%Y", "/named")
    assert r.stdout == "1500000000\n"
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD {web}/missing /x\n")
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1
    assert f"ADD {web}/missing: the server answered 404" in r.stderr


def test_add_checksum_is_checked(clean: Daemon, tmp_path: Path, web: str) -> None:
    """ADD --checksum (BuildKit's) is a promise about the download: kept, it is checked,
    and a mismatch fails the build naming both digests; a local source or a malformed
    digest is refused."""
    good = "sha256:" + hashlib.sha256(b"fetched\n").hexdigest()
    bad = "sha256:" + "0" * 64
    ctx = _context(
        tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nADD --checksum={good} {web}/file.txt /\n"}
    )
    clean.ctl("build", "-q", "-t", "checked", str(ctx))
    assert clean.ctl("run", "--rm", "checked", "cat", "/file.txt").stdout == "fetched\n"
    clean.ctl("rmi", "checked")
    for line, message in [
        (f"--checksum={bad} {web}/file.txt /", f"{web}/file.txt: digest mismatch {bad}: {good}"),
        (f"--checksum={good} Dockerfile /", f"--checksum={good}: checksum requires an HTTP(S)"),
        (f"--checksum=md5:00 {web}/file.txt /", "--checksum=md5:00: invalid checksum digest"),
    ]:
        (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD {line}\n")
        r = clean.ctl("build", str(ctx), check=False)
        assert r.returncode == 1
        assert f"line 2: ADD {message}" in r.stderr


@pytest.mark.parametrize("client", ["boxctl", "docker"])
def test_a_client_that_goes_away_cancels_the_build(
    clean: Daemon, tmp_path: Path, client: str
) -> None:
    """Ctrl-C of the client: the running step's container is stopped and removed, and
    nothing is tagged."""
    if client == "docker" and DOCKER is None:
        pytest.skip("the docker CLI is not on PATH")
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nRUN echo started; sleep 600\n"})
    if client == "boxctl":
        argv = [sys.executable, "-m", "boxctl", "--socket", str(clean.socket)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
    else:
        argv, env = [str(DOCKER)], docker_env(clean)
    proc = subprocess.Popen(
        [*argv, "build", "-t", "gone:1", str(ctx)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "started":
                break
        assert len(_containers(clean)) == 1
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    for _ in range(600):  # the daemon notices the hang-up at once; this waits for the rm
        if not _containers(clean):
            break
        time.sleep(0.1)
    assert _containers(clean) == []
    assert "docker.io/library/gone:1" not in _tags(clean)


def test_bad_options_are_usage_errors(clean: Daemon, tmp_path: Path) -> None:
    """Refused before anything is built: exit 125, as boxctl's other usage errors."""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\n"})
    for args, words in [
        (("-t", "Bad Name"), "invalid tag 'Bad Name'"),
        (("--platform", "linux"), "invalid platform 'linux'"),
        (("--label", "=x"), "invalid --label '=x'"),
        (("--add-host", "db"), "invalid --add-host 'db': '' is not an IP address"),
        (("--no-such-option",), "unknown option '--no-such-option'"),
    ]:
        r = clean.ctl("build", *args, str(ctx), check=False)
        assert (r.returncode, len(r.stderr.splitlines())) == (125, 1), r.stderr
        assert words in r.stderr


def test_entrypoint_drops_only_the_base_images_cmd(clean: Daemon, tmp_path: Path) -> None:
    first = _context(
        tmp_path / "a", {"Dockerfile": f'FROM {BASE}\nCMD ["kept"]\nENTRYPOINT ["echo"]\n'}
    )
    clean.ctl("build", "-t", "ep:1", str(first))
    assert clean.ctl("run", "--rm", "ep:1").stdout == "kept\n"
    second = _context(tmp_path / "b", {"Dockerfile": 'FROM ep:1\nENTRYPOINT ["echo", "x"]\n'})
    clean.ctl("build", "-t", "ep:2", str(second))
    assert clean.ctl("run", "--rm", "ep:2").stdout == "x\n"


def test_platform_args(clean: Daemon, tmp_path: Path) -> None:
    """Docker's automatic ARGs: FROM --platform=$BUILDPLATFORM takes the stored image of
    the host's platform; a stage's ARG TARGETARCH gets its value."""
    ctx = _context(
        tmp_path / "ctx",
        {
            # A byte-order mark first, as some editors write it, is no part of FROM.
            "Dockerfile": f"\ufeffFROM --platform=$BUILDPLATFORM {BASE}\n"
            'ARG TARGETARCH SPACED="a  b"\nRUN echo "arch=$TARGETARCH $SPACED"\n'
        },
    )
    r = clean.ctl("build", str(ctx))
    arch = _image(clean, BASE)["Architecture"]
    assert f"arch={arch} a  b\n" in r.stdout


def test_run_network(clean: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nRUN ls /sys/class/net\n"})
    assert "eth0" in clean.ctl("build", "--no-cache", str(ctx)).stdout  # bridge, by default
    r = clean.ctl("build", "--no-cache", "--network", "none", str(ctx))
    assert "eth0" not in r.stdout and "\nlo\n" in r.stdout
    # --add-host (docker-py's extra_hosts, repeated; the docker CLI's, comma-separated).
    ctx = _context(tmp_path / "hosts", {"Dockerfile": f"FROM {BASE}\nRUN cat /etc/hosts\n"})
    r = clean.ctl("build", "--no-cache", "--add-host", "db:10.1.2.3", str(ctx))
    assert "10.1.2.3\tdb\n" in r.stdout
    docker_py = pytest.importorskip("docker")
    client = docker_py.APIClient(base_url=docker_env(clean)["DOCKER_HOST"])
    try:
        hosts = {"a.test": "10.0.0.1", "b.test": "10.0.0.2"}
        out = "".join(
            line.get("stream", "")
            for line in client.build(path=str(ctx), nocache=True, extra_hosts=hosts, decode=True)
        )
        assert "10.0.0.1\ta.test\n" in out and "10.0.0.2\tb.test\n" in out
    finally:
        client.close()


def test_run_limits(clean: Daemon, tmp_path: Path) -> None:
    """docker build's limits and /dev/shm size apply to each RUN's container, as the
    classic builder applies them (boxd dropped them); what a RUN cannot get is refused."""
    run = (
        "RUN (cat /sys/fs/cgroup/memory.max 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes) && df -k /dev/shm\n"
    )
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\n{run}"})
    r = clean.ctl("build", "--no-cache", "-m", "64m", "--shm-size", "16m", str(ctx))
    assert "67108864\n" in r.stdout and " 16384 " in r.stdout, r.stdout
    r = clean.ctl("build", "--memory", "lots", str(ctx), check=False)
    assert r.returncode == 125 and "invalid --memory 'lots'" in r.stderr, r.stderr
    docker_py = pytest.importorskip("docker")
    client = docker_py.APIClient(base_url=docker_env(clean)["DOCKER_HOST"])
    try:
        out = "".join(
            line.get("stream", "")
            for line in client.build(
                path=str(ctx),
                nocache=True,
                decode=True,
                container_limits={"memory": 96 << 20},
                shmsize=8 << 20,
            )
        )
        assert "100663296\n" in out and " 8192 " in out, out
        with pytest.raises(docker_py.errors.APIError, match="--squash is not supported"):
            list(client.build(path=str(ctx), squash=True))
    finally:
        client.close()


def test_run_ulimits_cgroup_parent_and_refused_options(clean: Daemon, tmp_path: Path) -> None:
    """docker build's --ulimit and --cgroup-parent apply to each RUN's container (boxd
    refused both); --security-opt and an --isolation other than default are refused in
    Docker's daemon's words (boxd ignored them), by boxctl, the docker CLI and docker-py,
    and --compress and --cpuset-mems are taken."""
    run = "RUN echo soft=$(ulimit -n) hard=$(ulimit -Hn)\n"
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\n{run}"})
    r = clean.ctl(
        "build", "--no-cache", "--rm=false", "--ulimit", "nofile=100:200", "--cgroup-parent",
        "builds/a", "--compress", "--cpuset-mems", "0", "--isolation", "default", str(ctx),
    )  # fmt: skip
    assert "soft=100 hard=200\n" in r.stdout, r.stdout
    kept = clean.ctl("ps", "-aq", "--no-trunc").stdout.split()
    assert len(kept) == 1  # the RUN's container, kept by --rm=false
    shown = json.loads(clean.ctl("inspect", kept[0]).stdout)[0]["HostConfig"]
    assert shown["CgroupParent"] == "builds/a", shown
    assert shown["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}], shown
    clean.ctl("rm", kept[0])
    for args, words, code in (
        (("--ulimit", "nofile=300:200"), "the soft limit 300 is above the hard limit 200", 125),
        (("--ulimit", "bogus=1"), "unknown limit 'bogus'", 125),
        (("--isolation", "hyperv"), "Invalid isolation: 'hyperv' - linux only supports", 125),
        (("--security-opt", "seccomp=unconfined"), "security options are not supported on", 1),
        (("--squash",), "--squash is not supported by boxd", 1),
    ):
        r = clean.ctl("build", *args, str(ctx), check=False)
        assert r.returncode == code and words in r.stderr, (args, r.returncode, r.stderr)
    assert clean.ctl("ps", "-aq").stdout == ""
    if DOCKER:
        r = docker(clean, "build", "--ulimit=nofile=64:128", "--compress", "--no-cache", str(ctx))
        assert "soft=64 hard=128" in r.stdout + r.stderr, r.stdout + r.stderr
        for args, words in (
            (("--security-opt", "seccomp=unconfined"), "security options are not supported on"),
            (("--isolation", "hyperv"), "Invalid isolation: 'hyperv'"),
        ):
            r = docker(clean, "build", *args, str(ctx))
            assert r.returncode == 1 and words in r.stderr, (args, r.stderr)
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        t.add(ctx / "Dockerfile", "Dockerfile")
    for query, words in (  # what the docker CLI would have refused itself
        ('[{"Name":"nofile","Soft":300,"Hard":200}]', "the soft limit 300 is above the hard"),
        ('[{"Name":"nofile","Soft":"x"}]', 'expected a list of {"Name", "Soft", "Hard"}'),
        ("[nofile", "invalid ulimits: not JSON: '[nofile'"),
    ):
        path = f"/build?ulimits={urllib.parse.quote(query)}"
        status, _, body = api_call(clean, "POST", path, tar.getvalue())
        assert status == 400 and words in json.loads(body)["message"], (query, body)
    docker_py = pytest.importorskip("docker")
    client = docker_py.APIClient(base_url=docker_env(clean)["DOCKER_HOST"])
    try:  # docker-py sends no ulimits; a gzip context and an isolation
        stream = client.build(path=str(ctx), nocache=True, rm=True, decode=True, gzip=True)
        assert "soft=1024 hard=" in "".join(line.get("stream", "") for line in stream)
        with pytest.raises(docker_py.errors.APIError, match="Invalid isolation: 'hyperv'"):
            list(client.build(path=str(ctx), isolation="hyperv"))
    finally:
        client.close()
    assert clean.ctl("ps", "-aq").stdout == ""


def test_a_layer_held_twice(clean: Daemon, tmp_path: Path) -> None:
    """Two steps that change the same make one layer twice in the image: a step on top of
    them, and a container of the image, still start (overlay refuses a lowerdir given
    twice), and see what the upper copy shows."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nRUN true\nRUN true\nRUN echo top > /top\n"},
    )
    clean.ctl("build", "--no-cache", "-t", "twice", str(ctx))
    history = json.loads(clean.ctl("history", "--format", "json", "twice").stdout)
    assert len(history) >= 4
    assert clean.ctl("run", "--rm", "twice", "cat", "/top").stdout == "top\n"


def test_volume_paths_keep_copies_not_run_changes(clean: Daemon, tmp_path: Path) -> None:
    """As Docker: COPY into a VOLUME's path is in the image; a RUN's writes there are not
    (the step's container has the volume mounted)."""
    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE}\nVOLUME /data\nCOPY f /data/f\nRUN touch /data/ran\n",
            "f": "",
        },
    )
    clean.ctl("build", "-t", "vol", str(ctx))
    assert clean.ctl("run", "--rm", "vol", "ls", "/data").stdout == "f\n"


def test_a_relative_volume_is_below_the_root(clean: Daemon, tmp_path: Path) -> None:
    """dockerd's builder keeps `VOLUME data` as written, and runc mounts a relative
    destination below the root: such an image (built here or pulled) runs, its volume at
    /data, filled from the image."""
    ctx = _context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {BASE}\nCOPY f /data/f\nVOLUME data\n", "f": "seed\n"},
    )
    clean.ctl("build", "-q", "-t", "relvol", str(ctx))
    assert _image(clean, "relvol")["Config"]["Volumes"] == {"data": {}}  # type: ignore[index]
    script = "cat /data/f; grep -c ' /data ' /proc/mounts"
    assert clean.ctl("run", "--rm", "relvol", "sh", "-c", script).stdout == "seed\n1\n"
    clean.ctl("rmi", "relvol")


def test_the_context_cannot_reach_host_files(clean: Daemon, tmp_path: Path) -> None:
    """A symlink in the context is resolved inside it (a link to /etc/hostname names the
    context's own), and an archive ADD unpacks may not climb out of the image."""
    ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {BASE}\nCOPY link /x\n"})
    (ctx / "link").symlink_to("/etc/hostname")
    r = clean.ctl("build", str(ctx), check=False)
    assert r.returncode == 1
    assert "stat link: file does not exist" in r.stderr
    (ctx / "etc").mkdir()
    (ctx / "etc" / "hostname").write_text("the context's\n")
    clean.ctl("build", "-t", "linked", str(ctx))
    assert clean.ctl("run", "--rm", "linked", "cat", "/x").stdout == "the context's\n"
    (ctx / "evil.tar").write_bytes(_tar({"../../escaped": b"x"}))
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD evil.tar /deep/\n")
    r = clean.ctl("build", "-t", "evil", str(ctx), check=False)
    assert r.returncode == 1
    assert "ADD failed: evil.tar: member '../../escaped' points outside the archive" in r.stderr


def test_add_unpacks_zstd_and_xz_and_names_a_damaged_archive(clean: Daemon, tmp_path: Path) -> None:
    """Docker's ADD unpacks a tar compressed with zstd or xz too; a damaged one is named,
    not a traceback.  COPY --from takes the build's variables, as BuildKit's does."""
    import zstandard

    ctx = _context(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {BASE} AS src\nRUN echo staged > /staged\n"
            f"FROM {BASE}\nARG FROM=src\nADD t.tar.zst /z/\nADD t.tar.xz /x/\n"
            "COPY --from=${FROM} /staged /\n"
        },
    )
    plain = _tar({"inner/file": b"inner\n"})
    (ctx / "t.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(plain))
    with tarfile.open(ctx / "t.tar.xz", mode="w:xz") as tar:
        tar.add(ctx / "Dockerfile", arcname="inner/file")
    clean.ctl("build", "-q", "-t", "compressed", str(ctx))
    r = clean.ctl("run", "--rm", "compressed", "cat", "/z/inner/file", "/staged")
    assert r.stdout == "inner\nstaged\n"
    assert clean.ctl("run", "--rm", "compressed", "ls", "/x/inner").stdout == "file\n"
    gz = gzip.compress(_tar({"big": os.urandom(1 << 20)}))
    (ctx / "cut.tar.gz").write_bytes(gz[: len(gz) // 2])
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD cut.tar.gz /cut/\n")
    r = clean.ctl("build", "-t", "cut", str(ctx), check=False)
    assert r.returncode == 1
    assert "ADD failed: cut.tar.gz: the archive is damaged" in r.stderr
    # A tar whose end blocks are cut short, as Go's tar writer makes it (no padding to a
    # record) less one byte, is refused as dockerd's (moby's TestBuildAddBrokenTar);
    # whole, or with one end block, it is taken.
    ended = _tar({"1": b"hi\n"})[: 4 * 512]
    for name, data in (("whole", ended), ("one", ended[:-512]), ("broken", ended[:-1])):
        (ctx / f"{name}.tar").write_bytes(data)
        (ctx / "Dockerfile").write_text(f"FROM {BASE}\nADD {name}.tar /{name}/\n")
        r = clean.ctl("build", "-q", "-t", "ends", str(ctx), check=False)
        assert r.returncode == (1 if name == "broken" else 0), (name, r.stderr)
    assert "broken.tar: the archive is damaged: unexpected end of data" in r.stderr
    assert clean.ctl("run", "--rm", "ends", "cat", "/one/1").stdout == "hi\n"
    clean.ctl("rmi", "ends")


def test_from_pulls_a_missing_base(clean: Daemon, tmp_path: Path, busybox_root: Path) -> None:
    """FROM an image that is not stored pulls it (from a loopback registry), as Docker's
    builder does; --pull pulls it again even though it is stored."""
    layout = tmp_path / "layout"
    build_oci_image(layout, "1", busybox_root, config={"cmd": ["sh"]})
    with running_registry(tmp_path) as registry:
        push(layout, "1", registry, "pulled/base:1")
        ref = f"{registry.host}/pulled/base:1"
        ctx = _context(tmp_path / "ctx", {"Dockerfile": f"FROM {ref}\nRUN echo on-pulled\n"})
        r = clean.ctl("build", "-t", "on-pulled", str(ctx))
        assert f"Pulling {ref}" in r.stdout and "on-pulled" in r.stdout
        assert ref in _tags(clean)
        manifests = registry.manifests()
        r = clean.ctl("build", "--pull", str(ctx))
        assert registry.manifests() > manifests
        assert "Using cache" in r.stdout  # the same base: the steps are cached


# ---- images based on default (the host's /usr) ----------------------------------------

ON_DEFAULT = """\
FROM default AS base
ENV MARK=on-default
RUN echo x > /etc/built && mkdir -p {share} && echo y > {share}/f \\
    && cp /usr/bin/tac /usr/local/bin/boxdtest-tac
RUN rm /usr/local/bin/boxdtest-tac /usr/bin/tac
FROM base
RUN cat {share}/f > {share}/g
COPY c {share}/
CMD test ! -e /usr/bin/tac && test ! -e /usr/local/bin/boxdtest-tac \\
    && cat /etc/built {share}/f {share}/g {share}/c && echo $MARK
"""


def _host_share() -> str:
    """A /usr path of the host's that no one has: a build or commit on default that
    writes there must leave the host without it."""
    if not os.path.isfile("/usr/bin/tac"):
        pytest.skip("the host has no /usr/bin/tac to hide in an image")
    return f"/usr/local/share/boxdtest-{os.getpid()}-{time.monotonic_ns()}"


def test_from_default_builds_over_the_hosts_usr(clean: Daemon, tmp_path: Path) -> None:
    """A stage FROM default gets layers over the host's /usr: changes in / and in /usr
    (RUN's, COPY's) are its layers, deletions in /usr hide the host's files, a later
    stage FROM it keeps the base, the cache serves a second build; the image never
    leaves the host (save, push, export refused in one line) and rmi removes its
    layers."""
    share = _host_share()
    ctx = _context(tmp_path / "ctx", {"Dockerfile": ON_DEFAULT.format(share=share), "c": "c\n"})
    layer_dirs = clean.root / "images" / "l"
    before = set(os.listdir(layer_dirs))
    first = clean.ctl("build", "-t", "ondefault:1", str(ctx)).stdout
    assert "Using cache" not in first
    assert clean.ctl("run", "--rm", "ondefault:1").stdout == "x\ny\ny\nc\non-default\n"
    assert not os.path.exists(share) and os.path.isfile("/usr/bin/tac")  # the host's, as was
    image = _image(clean, "ondefault:1")
    assert len(image["RootFS"]["Layers"]) == 4  # type: ignore[index]
    history = json.loads(clean.ctl("history", "--format", "json", "ondefault:1").stdout)
    assert history[-1]["created_by"].startswith("default: boxd's built-in image")
    again = clean.ctl("build", "-t", "ondefault:1", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 6  # ENV, RUN, RUN, RUN, COPY, CMD
    assert _image(clean, "ondefault:1")["Id"] == image["Id"]

    clean.ctl("tag", "ondefault:1", "127.0.0.1:1/ondefault:1")
    clean.ctl("create", "--name", "holder", "ondefault:1")
    why = "is built on default (this host's /usr): it cannot be"
    for args, message in (
        (("save", "-o", str(tmp_path / "x.tar"), "ondefault:1"), f"image ondefault:1 {why} saved"),
        (("push", "127.0.0.1:1/ondefault:1"), f"image 127.0.0.1:1/ondefault:1 {why} pushed"),
        (("export", "-o", str(tmp_path / "x.tar"), "holder"), f"{why} exported"),
    ):
        r = clean.ctl(*args, check=False)
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    status, _, body = api_call(clean, "GET", "/images/ondefault:1/get")
    assert status == 400 and f"{why} saved".encode() in body
    status, _, body = api_call(clean, "POST", "/images/127.0.0.1:1/ondefault/push?tag=1")
    assert status == 400 and f"{why} pushed".encode() in body
    clean.ctl("rm", "holder")
    clean.ctl("rmi", "ondefault:1", "127.0.0.1:1/ondefault:1")
    assert set(os.listdir(layer_dirs)) == before
    assert _containers(clean) == []


def test_commit_of_a_container_on_default(clean: Daemon, tmp_path: Path) -> None:
    """A container on default commits to an image based on it (its changes in / and in
    /usr one layer), and a container on that image again, through docker-py; a container
    on a root directory is refused in one line."""
    share = _host_share()
    write = f"echo e > /etc/committed && mkdir -p {share} && echo u > {share}/f && rm /usr/bin/tac"
    clean.ctl("run", "--name", "changer", "default", "sh", "-c", write)
    clean.ctl("commit", "changer", "committed:1")
    check = f"test ! -e /usr/bin/tac && cat /etc/committed {share}/*"
    assert clean.ctl("run", "--rm", "committed:1", "sh", "-c", check).stdout == "e\nu\n"
    assert len(_image(clean, "committed:1")["RootFS"]["Layers"]) == 1  # type: ignore[index]
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=f"unix://{clean.docker_socket}")
    try:
        c = client.containers.run("committed:1", ["sh", "-c", f"echo v > {share}/g"], detach=True)
        assert c.wait()["StatusCode"] == 0
        c.commit("committed", "2")
        out = client.containers.run("committed:2", ["sh", "-c", check], remove=True)
        assert out == b"e\nu\nv\n"
        # As Docker's: the rows named by the image and those it was committed from.
        rows = client.images.get("committed:2").history()
        assert [row["Id"] for row in rows] == [
            _image(clean, name)["Id"] for name in ("committed:2", "committed:1", "default")
        ]
        assert rows[-1]["CreatedBy"].startswith("default: boxd's built-in image")
    finally:
        client.close()
    assert not os.path.exists(share) and os.path.isfile("/usr/bin/tac")
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/true", root / "bin" / "true")
    clean.ctl("create", "--name", "rootdir", "--rootfs", str(root), "/bin/true")
    r = clean.ctl("commit", "rootdir", "nope:1", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert f"container rootdir runs on the root directory {root}, not an image" in r.stderr
    clean.remove_containers()
    clean.ctl("rmi", "committed:1", "committed:2")

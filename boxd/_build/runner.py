"""The build: a Dockerfile's steps run on the supervisor, as Docker's classic builder runs
them.

Each stage is a state (the image configuration, its layers and what they lie over:
nothing, or with ``FROM default`` the built-in image).  A metadata step changes the
configuration; RUN runs a container on the stage's image (the build's environment, user,
working directory and shell) and commits its upper directories (on default one per
overlay: /, /usr ...) as one layer with the machinery of ``commit``; COPY and ADD write
their sources into a container created on the stage's image (never started) and commit
that; WORKDIR makes its directory the same way.  The image a RUN or COPY needs is
recorded in the store for the step and removed at the end of the build (its layers stay
with the final image, and with an earlier stage's image, kept untagged as Docker keeps it
when it holds layers nothing else does).

The layer cache (``<images>/build-cache/<key>.json``): a step's key is the digest of its
parent's configuration (and base) and of what the step does (the instruction after
substitution, the build arguments a RUN sees, the content of the files a COPY takes), and
its value the resulting configuration and layers.  A hit is used only if every layer is
still stored; ``--no-cache`` skips the lookup.

With ``--cache-from`` images the cache is those images' histories instead, as in Docker's
classic builder (so a CI machine can reuse an image it pulled, whose steps it never ran):
a step is a hit when an image on the stage's base has history and layers that begin with
the stage's own and its next history entry was made by the same instruction
(``created_by``: a RUN's command and build arguments, a COPY's content digest,
destination and options, all of the step's key that a history can show).  The step then
takes that entry and its layer.  The daemon's own step cache is not consulted then, as
Docker consults only what the images hold; a named image not stored is passed over with a
warning.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import copy
import email.utils
import functools
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import trio

from .. import _platforms, _users, protocol
from .._atomic import atomic_write
from .._convert import structure, unstructure
from .._healthcheck import Healthcheck
from .._human import rfc3339_nano
from .._images.config import DEFAULT, default_base_config, is_default
from .._images.reference import Reference, parse_reference
from .._images.store import BlobRef, Hold, ImageRecord, ImageStore, NoSuchImage
from .._images.unpack import open_in_root
from .._images.verbs import image_event
from .._lifecycle import error_text
from .._plan import DEFAULT_PATH
from .._records import ContainerConfig, Resources, Ulimit, Volume
from .._rootfs import is_file_at
from . import runmounts, sources
from .dockerfile import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    expand,
    expand_heredoc,
    is_name,
    raw_words,
    words,
)
from .ignore import Excluding, Ignore
from .instructions import SCRIPTS, apply_metadata, nop, run_command
from .sources import has_glob

if TYPE_CHECKING:
    from .._images.pull import Platform
    from .._supervisor import Supervisor

__all__ = ["BuildError", "Builder", "Options", "Say", "forget_gone_steps", "prune_cache"]

log = logging.getLogger("boxd.build")

Say = Callable[[str], Awaitable[None]]

# What a stage may be named (FROM IMAGE AS NAME), as Docker's parser takes it.
_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*")

# Docker's predefined build arguments: a --build-arg of one is in every RUN's environment
# without an ARG, kept out of the history and the cache key (a proxy of the build
# machine's, not the image's), and never warned about as not consumed.
PROXY_ARGS = frozenset(
    name
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (proxy, proxy.lower())
)


class BuildError(Exception):
    """The build failed; the message is the one line Docker prints."""


@attrs.frozen
class Options:
    tags: tuple[Reference, ...] = ()
    build_args: dict[str, str] = attrs.Factory(dict)
    unset_args: tuple[str, ...] = ()  # (see BuildRequest)
    target: str = ""
    labels: dict[str, str] = attrs.Factory(dict)
    no_cache: bool = False
    pull: bool = False
    rm: bool = True
    force_rm: bool = False
    platform: Platform | None = None
    network: str = "bridge"
    extra_hosts: tuple[str, ...] = ()
    resources: Resources = attrs.Factory(Resources)  # each RUN's
    shm_size: int | None = None
    ulimits: tuple[Ulimit, ...] = ()  # each RUN's
    cgroup_parent: str = ""  # each RUN's
    cache_from: tuple[str, ...] = ()  # images whose histories are the cache (see above)
    secrets: dict[str, bytes] = attrs.Factory(dict)  # RUN --mount=type=secret's, by id


@attrs.frozen
class _CacheSource:
    """An image of ``--cache-from``, as named, with its configuration."""

    name: str
    record: ImageRecord
    config: dict[str, Any]


@attrs.define
class _Stage:
    name: str
    config: dict[str, Any]  # the whole image configuration (config, rootfs, history)
    layers: tuple[BlobRef, ...]
    args: dict[str, str] = attrs.Factory(dict)  # ARGs declared in the stage
    cmd_set: bool = False  # a CMD of this Dockerfile's stage (ENTRYPOINT keeps it then)
    maintainer: str = ""  # the stage's MAINTAINER: its steps' author
    base: str = ""  # what the layers lie over (ImageRecord.base): "" or "default"
    # The stored image of its last step (each step's is recorded, as Docker's classic
    # builder keeps them: what a step prints is an image that runs), else its FROM
    # image's ("": scratch or default): the next step's image's Parent, so the chain
    # leads to the base, which is then not removed by id while they exist.
    image: str = ""

    @property
    def inner(self) -> dict[str, Any]:
        inner: dict[str, Any] = self.config.setdefault("config", {})
        return inner

    def env(self) -> dict[str, str]:
        """What substitution sees: the stage's ARGs under its ENV."""
        found = dict(self.args)
        for item in self.inner.get("Env") or []:
            key, _, value = str(item).partition("=")
            found[key] = value
        return found


def _default_path(stage: _Stage) -> _Stage:
    """Docker's builder gives a stage whose base sets no PATH (scratch, an imported root)
    the default one (moby's ``setDefaultPath``), so ``ENV PATH=/opt/bin:$PATH`` keeps /bin
    and the image runs elsewhere as Docker's would."""
    env = stage.inner.get("Env") or []
    if not any(str(item).partition("=")[0] == "PATH" for item in env):
        stage.inner["Env"] = [*env, f"PATH={DEFAULT_PATH}"]
    return stage


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _digest(config: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_json(config)).hexdigest()


def _now() -> str:
    return rfc3339_nano(time.time_ns())  # as dockerd's builder stamps a step


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _cache_dir(store: ImageStore) -> Path:
    return store.root / "build-cache"


def _mounts_dir(store: ImageStore) -> Path:
    """Where RUN's cache mounts are kept (see boxd/_build/runmounts.py)."""
    return store.root / "build-mounts"


# A cache mount's lock (sharing=locked steps one at a time, private ones another
# directory while it is held), by its directory.
_CACHE_LOCKS: dict[Path, trio.Lock] = {}


def _make_cache_dir(where: Path, m: runmounts.RunMount) -> None:
    """A cache mount's directory, with its mode and owner when new."""
    where.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        where.mkdir()
    except FileExistsError:
        return
    os.chown(where, m.uid, m.gid)
    os.chmod(where, m.mode)


@attrs.define
class _Mounted:
    """What a RUN's mounts give its container (see ``Builder._run_mounts``)."""

    binds: list[Volume] = attrs.Factory(list)
    tmpfs: list[str] = attrs.Factory(list)
    digests: list[str] = attrs.Factory(list)
    env: list[str] = attrs.Factory(list)  # secrets given as variables (env=)


def forget_gone_steps(store: ImageStore) -> None:
    """Forget the cached steps whose image is gone (``rmi`` or a prune took it: Docker's
    classic cache is the steps' images), so that the entries do not outlive the images
    of builds long gone.  Reads every entry: in a worker thread, after a prune."""
    for path in _cache_dir(store).glob("*.json"):
        try:
            store.get(_digest(json.loads(path.read_bytes())["config"]))
        except (NoSuchImage, ValueError, KeyError, TypeError):  # gone, or unreadable
            path.unlink(missing_ok=True)
        except OSError:  # removed meanwhile (a builder prune)
            continue


def prune_cache(store: ImageStore) -> list[str]:
    """Forget every cached step (their keys, returned) and RUN's cache mounts."""
    deleted = []
    for path in sorted(_cache_dir(store).glob("*.json")):
        path.unlink(missing_ok=True)
        deleted.append(path.stem)
    shutil.rmtree(_mounts_dir(store), ignore_errors=True)
    return deleted


@attrs.define
class _StepImages:
    """The images that builds in progress of one store run a step's container on, but
    not the steps' own images (see :meth:`Builder._forget_steps`), by id: how many builds
    run on each; those a build recorded (the last build that runs on one removes it);
    those a kept container (a failed RUN's) uses (retired instead); and those being
    removed (a build that needs one again waits, then records it anew)."""

    users: collections.Counter[str] = attrs.Factory(collections.Counter)
    made: set[str] = attrs.Factory(set)
    kept: set[str] = attrs.Factory(set)
    deleting: dict[str, trio.Event] = attrs.Factory(dict)


# Per store (one per supervisor), while it lives.
_STEP_IMAGES: weakref.WeakKeyDictionary[ImageStore, _StepImages] = weakref.WeakKeyDictionary()


def _step_images(store: ImageStore) -> _StepImages:
    found = _STEP_IMAGES.get(store)
    if found is None:
        found = _STEP_IMAGES[store] = _StepImages()
    return found


class Builder:
    def __init__(
        self,
        sup: Supervisor,
        context: Path,
        options: Options,
        say: Say,
        stage_built: Say | None = None,
    ) -> None:
        """``stage_built``: told the image of each stage but the last as it ends."""
        self.sup = sup
        self.stage_built = stage_built
        self.store = sup.images
        self.context = context
        self.options = options
        self.say = say
        self.ignore = Ignore(_read_text(context, ".dockerignore") or "")
        self.cache_dir = _cache_dir(self.store)
        self.steps = _step_images(self.store)
        self.ran_on: list[str] = []  # those of them it ran a container on (counted there)
        # The layers of its stages: none is removed under it before its image is recorded.
        self.hold = Hold(self.store)
        self.stages: list[_Stage] = []
        self.escape = "\\"
        self.used_args: set[str] = set()
        self.sources: list[_CacheSource] = []  # of --cache-from, once build() found them

    # ---- the whole build ----------------------------------------------------------

    async def build(self, dockerfile: Dockerfile) -> str:
        """Run the Dockerfile; the image's id (tagged as asked)."""
        self.escape = dockerfile.escape
        for note in dockerfile.notes:
            await self.say(f"[Warning] {note}\n")
        steps = list(dockerfile.instructions)
        if not any(i.keyword == "FROM" for i in steps):
            raise BuildError("the Dockerfile has no FROM instruction")
        total = len(steps)
        meta = _platform_args(self.options.platform)
        number = 0
        while steps and steps[0].keyword == "ARG":
            number += 1
            await self.say(f"Step {number}/{total} : {steps[0].original}\n")
            self._declare(steps.pop(0), meta, meta, dict(meta))
        await self._find_sources()
        if steps[0].keyword != "FROM":
            first = steps[0]
            raise BuildError(
                f"line {first.line}: {first.keyword} before the first FROM "
                "(only ARG may come before it)"
            )
        names = []
        for i in steps:
            if i.keyword == "FROM" and " as " in f" {i.text.lower()} ":
                name = words(i.text, meta, self.escape, i.line)[-1]
                if _STAGE_NAME.fullmatch(name.lower()) is None:
                    raise BuildError(
                        f"line {i.line}: invalid name for build stage: {name!r}, name can't "
                        "start with a number or contain symbols"
                    )
                if name.lower() in names:
                    raise BuildError(f"line {i.line}: {name} stage name already used")
                names.append(name.lower())
        target = self.options.target
        if target and target.lower() not in names:
            raise BuildError(f'target stage "{target}" could not be found')
        stage: _Stage | None = None
        first_step = number + 1  # after the ARGs before the first FROM
        try:
            for number, ins in enumerate(steps, first_step):
                if ins.keyword == "FROM":
                    if stage is not None:
                        if target and stage.name == target.lower():
                            break
                        self.stages.append(stage)
                        if stage.image and self.stage_built is not None:
                            await self.stage_built(stage.image)
                    await self.say(f"Step {number}/{total} : {ins.original}\n")
                    stage = await self._from(ins, meta)
                else:
                    assert stage is not None
                    await self.say(f"Step {number}/{total} : {ins.original}\n")
                    await self._step(stage, ins, meta)
            assert stage is not None
            if not (stage.image or stage.base or self.options.labels):  # FROM scratch alone
                raise BuildError("No image was generated. Is your Dockerfile empty?")
            return await self._finish(stage)
        finally:
            self.hold.release()  # the steps' images hold their layers now
            with trio.CancelScope(shield=True):
                await self._forget_steps()

    async def _finish(self, stage: _Stage) -> str:
        if self.options.labels:
            labels = dict(stage.inner.get("Labels") or {})
            labels.update(self.options.labels)
            stage.inner["Labels"] = labels
        given = {*self.options.build_args, *self.options.unset_args}
        unused = sorted(given - self.used_args - PROXY_ARGS)
        if unused:
            await self.say(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"
            )
        image_id = _digest(stage.config)
        if image_id != stage.image:  # --label (else: the last step's image)
            image_id = self._make(stage)
            image_event(self.sup, "create", image_id)
        self.steps.made.discard(image_id)  # the image now, whichever build made it
        for ref in self.options.tags:
            self.store.tag(image_id, ref)
            image_event(self.sup, "tag", image_id, name=ref.familiar)
        return image_id

    def _make(self, stage: _Stage) -> str:
        """The stage's configuration recorded as an image, a child of its last step's
        (or FROM) image: its id (the same image again if it is the same)."""
        record = self.store.make(
            _json(stage.config), stage.layers, base=stage.base, parent=stage.image
        )
        return record.id

    async def _step_done(self, stage: _Stage) -> None:
        """A step's image recorded, and shown as Docker's classic builder shows it."""
        stage.image = self._make(stage)
        await self.say(f" ---> {_short(stage.image)}\n")

    async def _forget_steps(self) -> None:
        """Remove the images builds recorded only to run a step's container on (COPY's
        without the image's volumes, a stage's FROM image with the default PATH, another
        image's for COPY --from) that no other build in progress runs on (not the steps'
        own images, which stay; not their layers another image uses; a container kept
        after a failed step keeps its image as ``rmi -f`` does; one a user tagged or runs
        a container on meanwhile stays).  One that cannot be removed (a full disk refuses
        the retired record) stays, an untagged image ``image prune`` removes; the build's
        own outcome is what its client is told."""
        steps = self.steps
        last = []
        for image_id in self.ran_on:
            steps.users[image_id] -= 1
            if not steps.users[image_id]:
                del steps.users[image_id]
                if image_id in steps.made:
                    last.append(image_id)
        self.ran_on.clear()
        used = self.sup.images_in_use()
        for image_id in last:
            steps.made.discard(image_id)
            kept = image_id in steps.kept
            steps.kept.discard(image_id)
            try:
                record = self.store.get(image_id)
            except NoSuchImage:
                continue
            if record.repo_tags or (image_id in used and not kept):
                continue
            steps.deleting[image_id] = done = trio.Event()
            try:
                if kept:
                    async with self.sup.puller.lock:
                        self.store.retire(record)
                else:
                    await self.sup.puller.delete(record)
            except OSError as exc:
                log.warning("build: step image %s left: %s", image_id, error_text(exc))
            finally:
                del steps.deleting[image_id]
                done.set()

    async def _find_sources(self) -> None:
        for name in self.options.cache_from:
            try:
                record = self.store.lookup(name)
            except NoSuchImage:
                await self.say(f"[Warning] --cache-from {name}: no such image, not used\n")
                continue
            self.sources.append(_CacheSource(name, record, self.store.config(record)))

    # ---- ARG and FROM -------------------------------------------------------------

    def _declare(
        self, ins: Instruction, scope: dict[str, str], meta: dict[str, str], env: dict[str, str]
    ) -> str:
        """ARG NAME[=default] ...: its value (a --build-arg's, else the default expanded
        with ``env``, what the line's substitution sees, else a global ARG's of the same
        name) in ``scope``; none (unset, not empty) without one, as Docker's.  The
        instruction as Docker's history shows it (the defaults expanded)."""
        if not ins.text:
            raise BuildError(f"line {ins.line}: ARG requires at least one argument")
        shown = []
        for word in raw_words(ins.text, self.escape):
            name, eq, default = word.partition("=")
            if not name:
                raise BuildError(f"line {ins.line}: ARG names can not be blank: {word}")
            if not is_name(name):
                raise BuildError(f"line {ins.line}: ARG names a bad variable: {word!r}")
            value = expand(default, env, self.escape, ins.line) if eq else None
            shown.append(name if value is None else f"{name}={value}")
            self.used_args.add(name)
            if name in self.options.build_args:
                value = self.options.build_args[name]
            elif not eq:
                value = meta.get(name)
            if value is not None:
                scope[name] = value
        return "ARG " + " ".join(shown)

    async def _from(self, ins: Instruction, meta: dict[str, str]) -> _Stage:
        found = words(ins.text, meta, self.escape, ins.line)
        if len(found) == 3 and found[1].lower() == "as":
            base, name = found[0], found[2].lower()
        elif len(found) == 1:
            base, name = found[0], ""
        else:
            raise BuildError(  # Docker's words first
                f"line {ins.line}: FROM requires either one or three arguments: IMAGE [AS NAME],"
                f" not {ins.text!r}"
            )
        for earlier in self.stages:
            if earlier.name and earlier.name == base.lower():
                stage = _Stage(
                    name,
                    copy.deepcopy(earlier.config),
                    earlier.layers,
                    base=earlier.base,
                    image=earlier.image,
                )
                await self.say(f" ---> {_short(_digest(stage.config))}\n")
                await self._triggers(stage, meta)  # an earlier stage's ONBUILDs too
                return stage
        if base == "scratch":
            from .._images.pull import host

            config: dict[str, Any] = {
                "architecture": host().architecture,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            await self.say(" ---> \n")
            return _default_path(_Stage(name, config, ()))
        if is_default(base):
            stage = _default_path(_default_stage(name))
            await self.say(f" ---> {_short(_digest(stage.config))}\n")
            return stage
        record = await self._image(base, ins, meta)
        self.hold.add(*[layer.diff_id for layer in record.layers])
        config = copy.deepcopy(self.store.config(record))
        stage = _Stage(name, config, record.layers, base=record.base, image=record.id)
        _default_path(stage)
        await self.say(f" ---> {_short(record.id)}\n")
        await self._triggers(stage, meta)
        return stage

    async def _triggers(self, stage: _Stage, meta: dict[str, str]) -> None:
        """The ONBUILD triggers of the image (or earlier stage) a stage starts from, run
        as its first steps and dropped from its configuration, as Docker's builder does."""
        triggers = list(stage.inner.pop("OnBuild", None) or [])
        if triggers:
            plural = "s" if len(triggers) > 1 else ""
            await self.say(f"# Executing {len(triggers)} build trigger{plural}\n")
            from .dockerfile import parse

            for trigger in triggers:
                for step in parse(trigger).instructions:
                    await self.say(f" ---> Running in trigger: {step.original}\n")
                    await self._step(stage, step, meta)

    async def _image(
        self, text: str, ins: Instruction, meta: dict[str, str], what: str = ""
    ) -> Any:
        """A stored image (pulled when missing, or always with --pull), its layers
        unpacked.  ``what``: the image as errors name it (FROM's: ``FROM NAME``)."""
        what = what or f"{ins.keyword} {text}"
        try:
            ref = parse_reference(text)
        except ValueError as exc:
            raise BuildError(f"line {ins.line}: {what}: {exc}") from None
        platform_text = expand(ins.flag("platform"), meta, self.escape, ins.line)
        platform = self.options.platform
        if platform_text:
            from .._images.pull import parse_platform

            platform = parse_platform(platform_text)
        record = None
        if not self.options.pull:
            with contextlib.suppress(NoSuchImage):
                record = self.store.lookup(text)
        # Another platform's (FROM's --platform, else the build's): the one asked for is
        # pulled, as Docker's builder does with an image "not found" for it.
        if record is not None and platform is not None:
            stored = _platforms.of_config(self.store.config(record))
            if not _platforms.matches(_platforms.parse(str(platform)), stored):
                record = None
        if record is None:
            await self.say(f"Pulling {ref.familiar}\n")
            try:
                pulled = await self.sup.puller.pull(ref, platform=platform)
            except Exception as exc:
                raise BuildError(f"line {ins.line}: {what}: cannot get the image: {exc}") from None
            record = pulled.record
            image_event(self.sup, "pull", record.id, ref.familiar, ref.familiar_name)
        await self.sup.unpacks.ready(record, text)
        return record

    # ---- steps --------------------------------------------------------------------

    async def _step(self, stage: _Stage, ins: Instruction, meta: dict[str, str]) -> None:
        kw = ins.keyword
        if kw == "ARG":
            shown = self._declare(ins, stage.args, meta, stage.env())
            await self._metadata(stage, ins, nop(stage.inner, shown), None)
        elif kw == "RUN":
            await self._run(stage, ins)
        elif kw in ("COPY", "ADD"):
            await self._copy(stage, ins)
        elif kw == "WORKDIR":
            await self._workdir(stage, ins)
        else:
            inner = copy.deepcopy(stage.inner)
            try:
                created_by = apply_metadata(ins, inner, stage.env(), self.escape)
            except DockerfileError as exc:
                raise BuildError(str(exc)) from None
            if kw == "ENTRYPOINT" and stage.cmd_set and "Cmd" in stage.inner:
                inner["Cmd"] = stage.inner["Cmd"]  # only the base image's CMD is dropped
            stage.cmd_set = stage.cmd_set or kw == "CMD"
            if kw == "MAINTAINER":
                stage.maintainer = ins.text
            if kw == "VOLUME":
                await self._check_volumes(stage, ins, inner)
            await self._metadata(stage, ins, created_by, inner)

    async def _check_volumes(self, stage: _Stage, ins: Instruction, inner: dict[str, Any]) -> None:
        """A VOLUME over a file of the stage's is refused at its line, as dockerd's
        classic builder fails there (its step's container cannot mount the volume), not
        left to every run of the image to fail."""
        new = sorted(set(inner.get("Volumes") or {}) - set(stage.inner.get("Volumes") or {}))
        if not new or not (stage.image or stage.base):  # nothing new, or no files (scratch)
            return
        image = self.sup._image(stage.image or stage.base)
        nowhere = self.store.tmp / "no-container"  # no upper: the image's files alone
        for path in new:
            if await trio.to_thread.run_sync(is_file_at, image, nowhere, path):
                raise BuildError(
                    f"line {ins.line}: VOLUME {path}: cannot mount volume over existing "
                    "file, file exists"
                )

    async def _workdir(self, stage: _Stage, ins: Instruction) -> None:
        """WORKDIR: the configuration's, and the directory made where it is not there yet,
        as Docker's builders make it (root's, 0755), in a layer of its own (none when it
        was there)."""
        inner = copy.deepcopy(stage.inner)
        try:
            created_by = apply_metadata(ins, inner, stage.env(), self.escape)
        except DockerfileError as exc:
            raise BuildError(str(exc)) from None
        key = self._key(stage, ["workdir", created_by, inner])
        if await self._cached(stage, key, created_by, with_layer=True, inner=inner):
            return
        path = inner["WorkingDir"]

        def make_tar(root_fd: int, out: IO[bytes]) -> None:
            sources.write_dirs(out, _missing_dirs(root_fd, path))

        layer = await self._write_layer(stage, ins, make_tar)
        stage.config["config"] = inner
        self._add_layer(stage, layer, created_by)
        await self._stored(stage, key)

    async def _metadata(
        self, stage: _Stage, ins: Instruction, created_by: str, inner: dict[str, Any] | None
    ) -> None:
        key = self._key(stage, ["nop", created_by, inner])
        if await self._cached(stage, key, created_by, with_layer=False, inner=inner):
            return
        if inner is not None:
            stage.config["config"] = inner
        self._history(stage, created_by, empty=True)
        await self._stored(stage, key)

    def _history(self, stage: _Stage, created_by: str, *, empty: bool) -> None:
        entry: dict[str, Any] = {"created": _now(), "created_by": created_by}
        if stage.maintainer:
            entry["author"] = stage.maintainer
        if empty:
            entry["empty_layer"] = True
        _child(stage, stage.config)
        stage.config["history"] = [*(stage.config.get("history") or []), entry]
        stage.config["created"] = entry["created"]

    def _add_layer(self, stage: _Stage, layer: BlobRef | None, created_by: str) -> None:
        """A RUN's, COPY's or ADD's layer and history entry; a step that changed nothing
        makes no layer, its entry an ``empty_layer`` one, as Docker's builders."""
        if layer is None:
            self._history(stage, created_by, empty=True)
            return
        rootfs = stage.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), layer.diff_id]
        stage.layers = (*stage.layers, layer)
        self._history(stage, created_by, empty=False)

    # ---- the layer cache ----------------------------------------------------------

    def _key(self, stage: _Stage, what: object) -> str:
        # The base is the key's too (a stage over nothing keeps the key it always had).
        parent = [_digest(stage.config), *([stage.base] if stage.base else [])]
        return hashlib.sha256(_json([*parent, what])).hexdigest()

    async def _cached(
        self,
        stage: _Stage,
        key: str,
        created_by: str,
        *,
        with_layer: bool,
        inner: dict[str, Any] | None = None,
    ) -> bool:
        """Take the step's result from the cache if it has one whose image and layers
        are still stored: the step cache's entry ``key``, or with --cache-from, an image's
        next history entry if made ``created_by`` (``with_layer`` or none; ``inner``:
        a metadata step's new configuration)."""
        if self.options.no_cache:
            return False
        if self.options.cache_from:
            return await self._cached_from(stage, key, created_by, with_layer, inner)
        try:
            entry = json.loads((self.cache_dir / f"{key}.json").read_bytes())
            layers = tuple(structure(entry["layers"], tuple[BlobRef, ...]))
            config = entry["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        try:  # Docker's classic cache is the steps' images: gone with rmi of the image
            self.store.get(_digest(config))
        except NoSuchImage:
            return False
        if not self.store.present(self.hold, layers):
            return False
        stage.config, stage.layers = config, layers
        await self.say(" ---> Using cache\n")
        await self._step_done(stage)
        return True

    async def _cached_from(
        self,
        stage: _Stage,
        key: str,
        created_by: str,
        with_layer: bool,
        inner: dict[str, Any] | None,
    ) -> bool:
        history = stage.config.get("history") or []
        diff_ids = (stage.config.get("rootfs") or {}).get("diff_ids") or []
        for source in self.sources:
            if source.record.base != stage.base:
                continue
            theirs = source.config.get("history") or []
            their_ids = (source.config.get("rootfs") or {}).get("diff_ids") or []
            if len(theirs) <= len(history) or theirs[: len(history)] != history:
                continue
            if their_ids[: len(diff_ids)] != diff_ids:
                continue
            entry = theirs[len(history)]
            # A metadata step's entry has no layer; a RUN's or COPY's may have none (it
            # changed nothing).
            empty = bool(entry.get("empty_layer"))
            if entry.get("created_by") != created_by or (not empty and not with_layer):
                continue
            config = copy.deepcopy(stage.config)
            _child(stage, config)
            if inner is not None:
                config["config"] = inner
            config["history"] = [*history, entry]
            config["created"] = entry.get("created", config.get("created"))
            layers = stage.layers
            if not empty:
                index = len(diff_ids)
                if index >= len(source.record.layers):
                    continue
                found = source.record.layers[index]
                self.hold.add(found.diff_id)
                await self.sup.unpacks.ready(source.record, source.name)
                config["rootfs"] = {
                    **config.get("rootfs", {}),
                    "diff_ids": [*diff_ids, found.diff_id],
                }
                layers = (*layers, found)
            stage.config, stage.layers = config, layers
            self._remember(stage, key)
            await self.say(" ---> Using cache\n")
            await self._step_done(stage)
            return True
        return False

    def _remember(self, stage: _Stage, key: str) -> None:
        self.cache_dir.mkdir(mode=0o700, exist_ok=True)
        entry = {"config": stage.config, "layers": unstructure(stage.layers)}
        atomic_write(self.cache_dir / f"{key}.json", _json(entry), 0o600, durable=False)

    async def _stored(self, stage: _Stage, key: str) -> None:
        """A step's new image: cached, recorded, and a "create" event as Docker 26's
        for each step it commits (none for a step taken from the cache)."""
        self._remember(stage, key)
        await self._step_done(stage)
        image_event(self.sup, "create", stage.image)

    # ---- containers for steps -----------------------------------------------------

    async def _materialize(self, stage: _Stage) -> str:
        """The stage's image as a stored record (for a container to run on): its last
        step's; else (see :meth:`_forget_steps`) one recorded for it, counted as this
        build's until its end (another build's made or removed it meanwhile: then made
        again here)."""
        image_id = _digest(stage.config)
        if image_id == stage.image:
            return image_id
        while (removal := self.steps.deleting.get(image_id)) is not None:
            await removal.wait()
        try:
            self.store.get(image_id)
        except NoSuchImage:
            self.steps.made.add(self._make(stage))
        if image_id not in self.ran_on:
            self.steps.users[image_id] += 1
            self.ran_on.append(image_id)
        return image_id

    @contextlib.asynccontextmanager
    async def _container(
        self,
        stage: _Stage,
        command: list[str],
        env: list[str],
        *,
        runs: bool = False,
        volumes: bool = True,
        binds: tuple[Volume, ...] = (),
        tmpfs: tuple[str, ...] = (),
        network: str = "",
    ) -> AsyncIterator[str]:
        """A container on the stage's image; removed at the end as --rm and --force-rm
        say (with ``runs``, a RUN's that failed is kept with --rm alone, as Docker keeps
        it; one only written into or read, never started, goes with its step's failure,
        as Docker's COPY leaves none).  Without ``volumes`` the image's VOLUMEs are not
        mounted: COPY writes into the image there, and reads what the image holds there.
        ``binds``: host files bound in (a RUN's script and mounts), ``tmpfs`` its tmpfs
        mounts, ``network`` the step's (RUN --network; the build's by default)."""
        if not volumes and "Volumes" in stage.inner:
            stage = _Stage(stage.name, copy.deepcopy(stage.config), stage.layers, base=stage.base)
            del stage.inner["Volumes"]
        image_id = await self._materialize(stage)
        config = ContainerConfig(
            image=image_id,
            command=tuple(command),
            entrypoint=(),
            env=tuple(env),
            workdir="",
            healthcheck=Healthcheck(test=("NONE",)),  # the image's is not a step's
            network=network or self.options.network,
            extra_hosts=self.options.extra_hosts,
            resources=self.options.resources,
            shm_size=self.options.shm_size,
            ulimits=self.options.ulimits,
            cgroup_parent=self.options.cgroup_parent,
            volumes=binds,
            tmpfs=tmpfs,
        )
        c = await self.sup.create(config)
        remove = self.options.force_rm or not runs
        try:
            yield c.id
            remove = self.options.force_rm or self.options.rm
        except BaseException as exc:
            # A cancelled build (its client went away): nothing of it stays.
            remove = remove or not isinstance(exc, Exception)
            raise
        finally:
            if remove:
                with trio.CancelScope(shield=True):
                    await self.sup.remove(c.id, force=True, volumes=True)
            elif image_id in self.steps.made:  # retired, not removed, at the end
                self.steps.kept.add(image_id)

    async def _run(self, stage: _Stage, ins: Instruction) -> None:
        shell = list(stage.inner.get("Shell") or ["/bin/sh", "-c"])
        command, script = run_command(ins, shell)
        image_env = {str(e).partition("=")[0] for e in stage.inner.get("Env") or []}
        # Sorted as strings, as Docker's history shows them (A1=x before A=y).
        args = sorted(f"{k}={v}" for k, v in stage.args.items() if k not in image_env)
        created_by = " ".join(command)
        if args:
            created_by = f"|{len(args)} {' '.join(args)} {created_by}"
        what: list[object] = ["run", command, args]
        if script is not None:
            what.append(script.content)
        env = stage.env()
        specs = [expand(v, env, self.escape, ins.line) for k, v in ins.flags if k == "mount"]
        workdir = stage.inner.get("WorkingDir") or "/"
        mounts = [
            attrs.evolve(m, target=posixpath.normpath(posixpath.join(workdir, m.target)))
            for m in [runmounts.parse(spec, ins.line) for spec in specs]
        ]
        network = ins.flag("network", "default")
        if network not in runmounts.NETWORKS:
            raise BuildError(f"line {ins.line}: RUN --network={network}: use default, none or host")
        if mounts or network != "default":  # (the keys of steps without them unchanged)
            what += [[attrs.astuple(m) for m in mounts], network]
        async with contextlib.AsyncExitStack() as stack:
            mounted = await stack.enter_async_context(self._run_mounts(stage, ins, mounts))
            key = self._key(stage, [*what, mounted.digests] if mounts else what)
            if await self._cached(stage, key, created_by, with_layer=True):
                return
            proxies = [
                f"{k}={v}"
                for k, v in sorted(self.options.build_args.items())
                if k in PROXY_ARGS and k not in stage.args and k not in image_env
            ]
            binds = stack.enter_context(self._script(script))
            layer = await self._run_step(
                stage,
                command,
                [*args, *proxies, *mounted.env],
                (*binds, *mounted.binds),
                mounted.tmpfs,
                {"default": "", "none": "none", "host": "host"}[network],
            )
        self._add_layer(stage, layer, created_by)
        await self._stored(stage, key)

    @contextlib.asynccontextmanager
    async def _run_mounts(
        self, stage: _Stage, ins: Instruction, mounts: list[runmounts.RunMount]
    ) -> AsyncIterator[_Mounted]:
        """What a RUN's ``--mount``s bind (see boxd/_build/runmounts.py): a bind's source
        copied out of the context or its stage (read as COPY reads it, so no symlink of
        the context reaches the host) into a directory of the build's, a cache's kept
        directory, a tmpfs; and the digests of the binds' sources for the step's key."""
        found = _Mounted()
        async with contextlib.AsyncExitStack() as stack:
            for m in mounts:
                if m.kind == "bind":
                    root_fd, ignore, label = await stack.enter_async_context(
                        self._source_root(ins, m.origin, [], [], stage.env(), "")
                    )
                    try:
                        named = sources.find(root_fd, m.source or ".", ignore)
                        if len(named) != 1:
                            raise sources.SourceError(
                                f"source {m.source!r} names {len(named)} files: give one"
                            )
                        source = named[0]
                        digest = await trio.to_thread.run_sync(
                            functools.partial(
                                sources.digest, root_fd, [source], ignore, owners=label == "from"
                            )
                        )
                    except sources.SourceError as exc:
                        raise BuildError(f"line {ins.line}: RUN --mount: {exc}") from None
                    found.digests.append(f"{label}:{digest}")
                    copied = Path(tempfile.mkdtemp(dir=self.context.parent, prefix="mount-"))
                    stack.callback(shutil.rmtree, copied, ignore_errors=True)
                    await trio.to_thread.run_sync(
                        sources.materialize, root_fd, source, ignore, copied / "source"
                    )
                    bound = Volume(str(copied / "source"), m.target, read_only=m.read_only)
                    found.binds.append(bound)
                elif m.kind == "cache":
                    where = await stack.enter_async_context(self._cache_mount(m))
                    found.binds.append(Volume(str(where), m.target, read_only=m.read_only))
                elif m.kind == "tmpfs":
                    size = f",size={m.size}" if m.size is not None else ""
                    found.tmpfs.append(f"{m.target}:exec{size}")
                elif m.kind == "secret" and m.ident in self.options.secrets:
                    secret = self.options.secrets[m.ident]
                    if m.env:  # as a variable of the step's process (BuildKit's env=)
                        found.env.append(f"{m.env}={secret.decode(errors='surrogateescape')}")
                    if m.env and not m.target_given:
                        continue
                    kept = Path(tempfile.mkdtemp(dir=self.context.parent, prefix="secret-"))
                    stack.callback(shutil.rmtree, kept, ignore_errors=True)
                    (kept / "secret").write_bytes(secret)
                    os.chown(kept / "secret", m.uid, m.gid)
                    os.chmod(kept / "secret", m.mode)
                    found.binds.append(Volume(str(kept / "secret"), m.target, read_only=True))
                elif m.required:
                    raise BuildError(
                        f"line {ins.line}: RUN --mount=type={m.kind}: {m.kind} "
                        f"{m.ident or 'default'!r} is required but not provided ("
                        + ("give it with boxctl build --secret id=ID,src=FILE; the docker "
                           "CLI's classic builder carries none" if m.kind == "secret"
                           else "boxd's builds forward no SSH agent") + ")"
                    )  # fmt: skip
            yield found

    @contextlib.asynccontextmanager
    async def _cache_mount(self, m: runmounts.RunMount) -> AsyncIterator[Path]:
        """A cache mount's directory, kept across builds (made with its mode and owner):
        shared, locked (one step at a time), or private (a fresh one while another step
        has it)."""
        where = _mounts_dir(self.store) / hashlib.sha256(m.ident.encode()).hexdigest()[:32]
        lock = _CACHE_LOCKS.setdefault(where, trio.Lock())
        if m.sharing == "private" and lock.locked():
            private = Path(tempfile.mkdtemp(dir=self.context.parent, prefix="cache-"))
            try:
                _make_cache_dir(private / "cache", m)
                yield private / "cache"
            finally:
                shutil.rmtree(private, ignore_errors=True)
            return
        if m.sharing == "shared":
            _make_cache_dir(where, m)
            yield where
            return
        async with lock:
            _make_cache_dir(where, m)
            yield where

    @contextlib.contextmanager
    def _script(self, script: Heredoc | None) -> Iterator[tuple[Volume, ...]]:
        """A RUN's script heredoc as a host file, bound read-only at SCRIPTS."""
        if script is None:
            yield ()
            return
        fd, path = self.store.temp_file()
        try:
            with os.fdopen(fd, "w") as f:
                f.write(script.content)
            os.chmod(path, 0o755)
            yield (Volume(str(path), f"{SCRIPTS}/{script.name}", read_only=True),)
        finally:
            path.unlink(missing_ok=True)

    async def _run_step(
        self,
        stage: _Stage,
        command: list[str],
        args: list[str],
        binds: tuple[Volume, ...],
        tmpfs: tuple[str, ...] | list[str] = (),
        network: str = "",
    ) -> BlobRef | None:
        """RUN's container: its output said; its changes, the stage's next layer (None:
        it changed nothing)."""
        async with self._container(
            stage, command, args, runs=True, binds=binds, tmpfs=tuple(tmpfs), network=network
        ) as cid:
            await self.say(f" ---> Running in {cid[:12]}\n")
            try:
                output, _ = await self.sup.start_attached(cid)
            except Exception as exc:
                raise BuildError(f"the command {' '.join(command)!r} cannot start: {exc}") from None
            decoders = {
                sid: codecs.getincrementaldecoder("utf-8")(errors="replace")
                for sid in (protocol.STDOUT, protocol.STDERR)
            }
            with output:
                async for sid, data in output:
                    text = decoders[sid].decode(data)
                    if text and sid == protocol.STDERR:  # in red, as Docker's builder sends it
                        text = f"\x1b[91m{text}\x1b[0m"
                    if text:
                        await self.say(text)
            code = await self.sup.wait(cid)
            if code != 0:
                raise BuildError(
                    f"The command '{' '.join(command)}' returned a non-zero code: {code}"
                )
            layer = await self._commit(cid)
            if self.options.rm or self.options.force_rm:
                await self.say(f"Removing intermediate container {cid[:12]}\n")
        return layer

    async def _commit(self, cid: str) -> BlobRef | None:
        """The step container's changes, in every overlay it has (/usr ... on default);
        None when it changed nothing."""
        from .._images import archive

        uppers = self.sup.uppers(cid)
        upper = archive.container_upper(self.sup.inspect(cid).config.userns)
        layer: BlobRef | None = await trio.to_thread.run_sync(
            archive.layer_of_uppers, self.store, self.hold, uppers, upper
        )
        return layer

    # ---- COPY and ADD -------------------------------------------------------------

    async def _copy(self, stage: _Stage, ins: Instruction) -> None:
        env = stage.env()
        if ins.exec_form is not None:
            found = [expand(w, env, self.escape, ins.line) for w in ins.exec_form]
        else:
            found = words(ins.text, env, self.escape, ins.line)
        if len(found) < 2:
            raise BuildError(f"line {ins.line}: {ins.keyword} requires at least two arguments")
        *patterns, dest = found
        source = expand(ins.flag("from"), env, self.escape, ins.line)
        if ins.flag("from") and not source:
            # Not the context: a global ARG is not seen after FROM unless declared again.
            raise BuildError(
                f"line {ins.line}: --from={ins.flag('from')} is empty here (an ARG before the "
                "first FROM must be declared again in the stage: ARG NAME)"
            )
        docs = _heredoc_sources(ins, patterns, source)
        urls = [p for p in patterns if "://" in p]
        if urls and ins.keyword == "COPY":
            raise BuildError(f"line {ins.line}: COPY takes no URL ({urls[0]}): use ADD")
        if urls and (len(urls) != len(patterns) or source):
            raise BuildError(
                f"line {ins.line}: ADD {urls[0]}: give URLs and other sources in separate ADDs"
            )
        workdir = stage.inner.get("WorkingDir") or "/"
        dest_dir = dest.endswith("/") or len(patterns) > 1  # or a wildcard's several files
        absolute = posixpath.normpath(posixpath.join(workdir, dest))
        chown = expand(ins.flag("chown"), env, self.escape, ins.line)
        chmod = expand(ins.flag("chmod"), env, self.escape, ins.line)
        mode = None
        if chmod:
            try:
                mode = int(chmod, 8)
            except ValueError:
                raise BuildError(f"line {ins.line}: invalid --chmod {chmod!r}: use octal") from None
        checksum = _checksum(ins, env, self.escape, urls)
        async with self._source_root(ins, source, urls, docs, env, checksum) as (
            root_fd,
            ignore,
            label,
        ):
            if urls:
                patterns = [_url_name(u) for u in urls]
            elif docs:
                patterns = [d.name for d in docs]
            excludes = [
                expand(v, env, self.escape, ins.line) for k, v in ins.flags if k == "exclude"
            ]
            try:
                found_sources = [s for p in patterns for s in sources.find(root_fd, p, ignore)]
                if excludes:  # a wildcard's match is left out too (COPY --exclude=*.txt hom*)
                    dropped = Ignore("\n".join(excludes))
                    found_sources = [
                        s
                        for s in found_sources
                        if not (has_glob(s.name) and dropped.excluded(s.rel))
                    ]
                    if not found_sources:
                        raise sources.SourceError(
                            f"no source files were specified: --exclude left out all of "
                            f"{' '.join(patterns)}"
                        )
                    ignore = Excluding(ignore, excludes, [s.rel for s in found_sources])
                dest_dir = dest_dir or len(found_sources) > 1
                content = await trio.to_thread.run_sync(
                    functools.partial(
                        sources.digest, root_fd, found_sources, ignore, owners=label == "from"
                    )
                )
            except sources.SourceError as exc:
                raise BuildError(f"{ins.keyword} failed: {exc}") from None
            # Everything the key holds but where the files come from (their content is
            # there): what --cache-from matches a step of another image's history by.
            flags = "".join(f"--{k}={v} " for k, v in (("chown", chown), ("chmod", chmod)) if v)
            kind = "dir" if found_sources[0].is_dir else "file"
            kind = "multi" if len(found_sources) > 1 else kind
            created_by = nop(
                stage.inner, f"{ins.keyword} {flags}{kind}:{content} in {dest} ", writes=True
            )
            # "copy-owners": no entry from before COPY --from kept the owners and --chown
            # owned the directories it makes is taken.
            what = ["copy-owners", ins.keyword, label, content, absolute, dest_dir, chown, chmod]
            if excludes:  # (the keys of steps without them unchanged)
                what.append(excludes)
            key = self._key(stage, what)
            if await self._cached(stage, key, created_by, with_layer=True):
                return
            layer = await self._copy_layer(
                stage, ins, root_fd, found_sources, ignore, absolute, dest_dir, chown, mode
            )
        self._add_layer(stage, layer, created_by)
        await self._stored(stage, key)

    @contextlib.asynccontextmanager
    async def _source_root(
        self,
        ins: Instruction,
        source: str,
        urls: list[str],
        docs: list[Heredoc],
        env: dict[str, str],
        checksum: str,
    ) -> AsyncIterator[tuple[int, Ignore | None, str]]:
        """An fd of where the sources are: the context, ADD's downloads, the heredocs'
        files, or --from's stage or image (a container created on it, its files mounted
        meanwhile)."""
        if urls or docs:
            where = Path(tempfile.mkdtemp(dir=self.context.parent, prefix="sources-"))
            try:
                for url in urls:
                    await _download(url, where / _url_name(url), ins, checksum)
                for doc in docs:
                    # A file of its own (0644, as BuildKit makes it) named after its
                    # delimiter; an unquoted one's $VARIABLES are the build's.
                    text = doc.content
                    if doc.expand:
                        text = expand_heredoc(text, env, ins.line)
                    (where / doc.name).write_text(text)
                    os.chmod(where / doc.name, 0o644)
                fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    yield fd, None, "url" if urls else "heredoc"
                finally:
                    os.close(fd)
            finally:
                shutil.rmtree(where, ignore_errors=True)
            return
        if not source:
            fd = os.open(self.context, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd, self.ignore, "context"
            finally:
                os.close(fd)
            return
        stage = None
        if source.isdigit():
            if int(source) >= len(self.stages):
                raise BuildError(f"line {ins.line}: --from={source}: no stage {source} before")
            stage = self.stages[int(source)]
        else:
            stage = next((s for s in self.stages if s.name == source.lower()), None)
        if stage is None and is_default(source):
            stage = _default_stage("")
        if stage is None:
            what = f"{ins.keyword} --from={source} (no stage of that name before)"
            record = await self._image(source, ins, {}, what)
            stage = _Stage(
                "", copy.deepcopy(self.store.config(record)), record.layers, base=record.base
            )
        if not stage.layers and not stage.base:
            raise BuildError(f"line {ins.line}: --from={source} has no files (no layers)")
        async with (
            self._container(stage, ["true"], [], volumes=False) as cid,
            self.sup.open_root(cid) as (_, fd),
        ):
            yield fd, None, "from"  # (the files' owners are the key's too)

    async def _copy_layer(
        self,
        stage: _Stage,
        ins: Instruction,
        src_fd: int,
        found: list[sources.Source],
        ignore: Ignore | None,
        dest: str,
        dest_dir: bool,
        chown: str,
        mode: int | None,
    ) -> BlobRef | None:
        def target(root_fd: int) -> sources.CopyTarget:
            st = _dir_there(root_fd, dest)
            if not st and any(s.is_dir for s in found) and _there(root_fd, dest):
                # Docker's builder cannot make the directory there either; not replaced.
                raise BuildError(
                    f"{ins.keyword} failed: cannot copy a directory to {dest}: "
                    "it is a file in the image, not a directory"
                )
            owner = _owner(root_fd, chown, ins) if chown else None
            new_dirs: tuple[str, ...] = ()
            if owner is not None and not all(s.is_dir for s in found):
                new_dirs = _missing_dirs(
                    root_fd, dest if dest_dir or st else posixpath.dirname(dest)
                )
            return sources.CopyTarget(
                dest=dest,
                dest_is_dir=dest_dir or st,
                dest_exists=st,
                owner=owner,
                mode=mode,
                extract=ins.keyword == "ADD",
                keep_owners=bool(ins.flag("from")),
                new_dirs=new_dirs,
            )

        def make_tar(root_fd: int, out: IO[bytes]) -> None:
            sources.write_tar(out, src_fd, found, target(root_fd), ignore)

        return await self._write_layer(stage, ins, make_tar)

    async def _write_layer(
        self, stage: _Stage, ins: Instruction, make_tar: Callable[[int, IO[bytes]], None]
    ) -> BlobRef | None:
        """The layer of extracting into the stage's files the tar ``make_tar`` writes
        (given the files' root, to see what is there); None when that changed nothing."""
        from .. import _copy
        from .._images import archive

        def write(root_fd: int) -> None:
            fd, tar_path = self.store.temp_file()
            try:
                with os.fdopen(fd, "wb") as out:
                    make_tar(root_fd, out)
                _copy.extract_archive(
                    root_fd,
                    "/",
                    str(tar_path),
                    container="the build",
                    ids=_copy.IdMap(),
                    copy_uid_gid=True,
                )
            except (sources.SourceError, _copy.CopyError) as exc:
                raise BuildError(f"{ins.keyword} failed: {exc}") from None
            finally:
                tar_path.unlink(missing_ok=True)

        if not stage.layers and not stage.base:  # scratch: the files are the layer
            work = Path(tempfile.mkdtemp(dir=self.store.tmp, prefix="build-"))
            try:
                os.chmod(work, 0o755)
                fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    await trio.to_thread.run_sync(write, fd)
                finally:
                    os.close(fd)
                layer: BlobRef | None = await trio.to_thread.run_sync(
                    archive.layer_of_uppers, self.store, self.hold, [("/", work, ())]
                )
                return layer
            finally:
                shutil.rmtree(work, ignore_errors=True)
        async with self._container(stage, ["true"], [], volumes=False) as cid:
            async with self.sup.open_root(cid) as (_, root_fd):
                await trio.to_thread.run_sync(write, root_fd)
            return await self._commit(cid)


def _child(stage: _Stage, config: dict[str, Any]) -> None:
    """A step's image as Docker's builder makes it, a child of the one before: its author
    the stage's MAINTAINER (none without one: not the base image's), and no comment (an
    imported or committed base's is its own)."""
    if stage.maintainer:
        config["author"] = stage.maintainer
    else:
        config.pop("author", None)
    config.pop("comment", None)


def _default_stage(name: str) -> _Stage:
    """A stage on the built-in image default: its layers will lie over the host's /usr
    (see boxd/_images/config.py), it has none of its own yet."""
    return _Stage(name, default_base_config(), (), base=DEFAULT)


def _platform_args(target: Platform | None) -> dict[str, str]:
    """Docker's automatic platform ARGs (``FROM --platform=$BUILDPLATFORM``; a stage's
    ``ARG TARGETARCH`` takes its value)."""
    from .._images.pull import host

    found = {}
    for prefix, platform in (("BUILD", host()), ("TARGET", target or host())):
        found[f"{prefix}PLATFORM"] = str(platform)
        found[f"{prefix}OS"] = platform.os
        found[f"{prefix}ARCH"] = platform.architecture
        found[f"{prefix}VARIANT"] = platform.variant
    return found


def _heredoc_sources(ins: Instruction, patterns: list[str], source: str) -> list[Heredoc]:
    """The heredocs a COPY or ADD takes as its sources (``COPY <<EOF /etc/motd``), or none;
    refused when mixed with other sources or --from."""
    if not ins.heredocs:
        return []
    by_word = {words(d.marker, {})[0]: d for d in ins.heredocs}
    docs = [by_word[p] for p in patterns if p in by_word]
    if not docs:
        return []
    if len(docs) != len(patterns) or source:
        other = f"--from={source}" if source else next(p for p in patterns if p not in by_word)
        raise BuildError(
            f"line {ins.line}: {ins.keyword} {docs[0].marker} with {other}: give heredocs "
            f"and other sources in separate {ins.keyword}s"
        )
    return docs


def _url_name(url: str) -> str:
    """The file name ADD gives a download: the last part of the URL's path."""
    from urllib.parse import urlsplit

    name = posixpath.basename(urlsplit(url).path)
    return name if name not in ("", ".", "..") else "__unnamed__"


_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def _checksum(ins: Instruction, env: dict[str, str], escape: str, urls: list[str]) -> str:
    """ADD --checksum's digest (``sha256:HEX``), checked: one http or https source only,
    as BuildKit takes it."""
    checksum = expand(ins.flag("checksum"), env, escape, ins.line)
    if not checksum:
        return ""
    where = f"line {ins.line}: ADD --checksum={checksum}"
    if len(urls) > 1:
        raise BuildError(f"{where}: checksum can't be specified for multiple sources")
    if not urls:
        raise BuildError(f"{where}: checksum requires an HTTP(S) source")
    algorithm, _, hexdigest = checksum.partition(":")
    if len(hexdigest) != _DIGEST_LENGTHS.get(algorithm) or hexdigest.strip("0123456789abcdef"):
        raise BuildError(f"{where}: invalid checksum digest format (use sha256:HEX)")
    return checksum


async def _download(url: str, path: Path, ins: Instruction, checksum: str) -> None:
    """ADD's URL (http or https, certificates checked against the system's CA bundle)
    into ``path``, mode 0600 as Docker leaves a download; with ``checksum``, refused
    unless the content has that digest."""
    import httpx

    from .._images.registry import ssl_context

    if not url.startswith(("http://", "https://")):
        raise BuildError(f"line {ins.line}: ADD {url}: only http and https URLs are fetched")
    context = ssl_context()  # a few stats of the bundle's paths: not worth a thread
    try:
        async with (
            httpx.AsyncClient(verify=context, follow_redirects=True, timeout=60) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise BuildError(
                    f"line {ins.line}: ADD {url}: the server answered "
                    f"{response.status_code} {response.reason_phrase}"
                )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            digest = hashlib.new(checksum.partition(":")[0] or "sha256")
            with os.fdopen(fd, "wb") as f:
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    await trio.to_thread.run_sync(f.write, chunk)
    except httpx.HTTPError as exc:
        raise BuildError(f"line {ins.line}: ADD {url}: cannot fetch it: {exc}") from None
    got = f"{digest.name}:{digest.hexdigest()}"
    if checksum and got != checksum:
        raise BuildError(f"line {ins.line}: ADD {url}: digest mismatch {checksum}: {got}")
    # The file's time is the server's Last-Modified, as Docker's builders set it.
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        when = email.utils.parsedate_to_datetime(response.headers.get("last-modified", ""))
        os.utime(path, (when.timestamp(), when.timestamp()))


def _there(root_fd: int, path: str) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH)
    except OSError:
        return False
    os.close(fd)
    return True


def _dir_there(root_fd: int, path: str) -> bool:
    try:
        fd = open_in_root(root_fd, path, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    os.close(fd)
    return True


def _missing_dirs(root_fd: int, path: str) -> tuple[str, ...]:
    """The directories of the absolute ``path`` not there yet, top down (``/a/b``, then
    ``/a/b/c``): what a COPY makes."""
    parts = [p for p in path.split("/") if p]
    prefixes = ["/" + "/".join(parts[: n + 1]) for n in range(len(parts))]
    for n, prefix in enumerate(prefixes):
        if not _dir_there(root_fd, prefix):
            return tuple(prefixes[n:])
    return ()


def _read_in(root_fd: int, path: str) -> str | None:
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return f.read()


def _owner(root_fd: int, chown: str, ins: Instruction) -> tuple[int, int]:
    """--chown=USER[:GROUP] (names from the image's /etc/passwd and /etc/group); a user
    alone gives its uid as the gid too, as Docker does."""
    try:
        found = _users.resolve(
            chown, _read_in(root_fd, "/etc/passwd"), _read_in(root_fd, "/etc/group")
        )
    except ValueError as exc:
        raise BuildError(f"line {ins.line}: --chown={chown}: {exc}") from None
    return found.uid, (found.gid if ":" in chown else found.uid)


def _read_text(root: Path, name: str) -> str | None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _read_in(fd, name)
    finally:
        os.close(fd)

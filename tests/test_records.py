"""Records, the strict converter, the atomic store and value parsing (no root needed)."""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest

from boxd import _store
from boxd._convert import ConversionError, structure, unstructure
from boxd._network import NETWORK_FORMAT, Network, NetworkConflict, NetworkError, Networks
from boxd._records import (
    Container,
    ContainerConfig,
    ImageMount,
    Resources,
    RestartName,
    RestartPolicy,
    Status,
    Volume,
    check_name,
    new_id,
    parse_signal,
    validate_config,
)
from boxd._store import FORMAT, Store, read_record
from boxd._units import parse_cpus, parse_size
from boxd._volumes import VOLUME_FORMAT, VolumeRecord, Volumes

DATA = Path(__file__).parent / "data"


def _container(**config: object) -> Container:
    cfg = ContainerConfig(image="default", command=("sh",), **config)  # type: ignore[arg-type]
    return Container(id=new_id(), name="web", created_at=1.5, config=cfg)


def test_round_trip_through_json() -> None:
    c = _container(env=("A=1",), tty=True)
    c.state.status = Status.EXITED
    c.state.exit_code = 3
    assert structure(json.loads(json.dumps(unstructure(c))), Container) == c


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("config", "tty"), "no", "expected bool, got str @ $.config.tty"),
        (("config", "stop_timeout"), "10", "expected float, got str @ $.config.stop_timeout"),
        (("config", "resources", "memory"), True, "got a boolean @ $.config.resources.memory"),
        (("state", "status"), "zombie", "invalid value 'zombie'"),
        (("config", "env"), ["=x"], "invalid --env '=x'"),
        (("config", "workdir"), "relative", "must be absolute"),
        (("config", "user"), "bob:x:y", "invalid --user 'bob:x:y'"),
    ],
)
def test_strict_structure_names_the_bad_value(
    path: tuple[str, ...], value: object, error: str
) -> None:
    data = unstructure(_container())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ConversionError) as info:
        structure(data, Container)
    assert error in str(info.value)


def test_unknown_keys_rejected() -> None:
    data = unstructure(_container())
    data["config"]["surprise"] = 1
    with pytest.raises(ConversionError, match="surprise"):
        structure(data, Container)


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("no", RestartPolicy()),
        ("always", RestartPolicy(RestartName.ALWAYS)),
        ("unless-stopped", RestartPolicy(RestartName.UNLESS_STOPPED)),
        ("on-failure", RestartPolicy(RestartName.ON_FAILURE)),
        ("on-failure:3", RestartPolicy(RestartName.ON_FAILURE, 3)),
    ],
)
def test_restart_policy_parse(text: str, policy: RestartPolicy) -> None:
    assert RestartPolicy.parse(text) == policy
    assert str(policy) == text


@pytest.mark.parametrize("text", ["sometimes", "always:3", "on-failure:0", "on-failure:x"])
def test_restart_policy_refused(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        RestartPolicy.parse(text)


def test_restart_decisions() -> None:
    on_failure = RestartPolicy(RestartName.ON_FAILURE, 2)
    assert on_failure.wants_restart(exit_code=1, stopped=False, restarts=1)
    assert not on_failure.wants_restart(exit_code=1, stopped=False, restarts=2)
    assert not on_failure.wants_restart(exit_code=0, stopped=False, restarts=0)
    always = RestartPolicy(RestartName.ALWAYS)
    assert always.wants_restart(exit_code=0, stopped=False, restarts=99)
    assert not always.wants_restart(exit_code=0, stopped=True, restarts=0)


@pytest.mark.parametrize(
    ("name", "why"),
    [(n, r"use \[a-zA-Z0-9\]") for n in ("", "-x", "a b", "a/b", "é")]
    + [("x" * 200, "200 characters, at most 128")],
)
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"invalid container name .*: {why}"):
        check_name(name)


def test_values() -> None:
    assert parse_signal("term") == parse_signal("SIGTERM") == parse_signal("15")
    rtmin3 = signal.SIGRTMIN + 3  # systemd's stop signal, as Docker names it
    assert parse_signal("SIGRTMIN+3") == parse_signal("rtmin+3") == parse_signal(str(rtmin3))
    assert parse_signal("RTMAX-1") == signal.SIGRTMAX - 1
    for bad in ("SIGRTMIN+99", "RTMAX-99", "0", "99"):
        with pytest.raises(ValueError, match=f"invalid signal: {re.escape(bad)}\\Z"):
            parse_signal(bad)
    with pytest.raises(ValueError, match="invalid signal: SIGNOPE"):
        parse_signal("SIGNOPE")
    # Real-time signals, as Docker names them (systemd's images stop on SIGRTMIN+3).
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    assert parse_signal("SIGRTMIN+3") == parse_signal("rtmin+3") == parse_signal(str(rtmin + 3))
    assert parse_signal("SIGRTMIN+3") == rtmin + 3
    assert (parse_signal("RTMIN"), parse_signal("SIGRTMAX-1")) == (rtmin, rtmax - 1)
    for bad in ("SIGRTMIN+40", "RTMAX+1", "RTMIN-1", "RTMIN+x", "0", "65"):
        with pytest.raises(ValueError, match=f"invalid signal: {re.escape(bad)}\\Z"):
            parse_signal(bad)
    assert parse_size("256m") == 256 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("64kb") == 64 << 10
    assert parse_cpus("0.5") == 0.5


@pytest.mark.parametrize("text", ["0", "-5m", "12q", "m", "nan", "inf", ""])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid --memory {text!r}"):
        parse_size(text, what="--memory")


@pytest.mark.parametrize("text", ["nan", "0.001", "-1", "inf", "lots"])
def test_bad_cpus(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse_cpus(text)


def test_config_refuses_rm_with_restart() -> None:
    with pytest.raises(ValueError, match="--rm and --restart"):
        _container(auto_remove=True, restart=RestartPolicy(RestartName.ALWAYS))


def _resources(**values: Any) -> Resources:
    return Resources(**values)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": "ls -l"}, "invalid command 'ls -l': must be a tuple of str, not str"),
        ({"command": ("sleep", 10)}, "invalid command .*: must be a tuple of str, not int"),
        ({"env": "A=1"}, "invalid --env 'A=1': must be a tuple of str, not str"),
        ({"tty": 1}, "invalid tty '1': must be a bool, not int"),
        (
            {"resources": _resources(memory="64m")},
            "invalid --memory '64m': must be an int, not str",
        ),
        ({"resources": _resources(pids_limit=True)}, "invalid --pids-limit 'True': .* not bool"),
        ({"resources": _resources(cpus="1")}, "invalid --cpus '1': must be a number, not str"),
    ],
)
def test_a_value_of_another_type_is_refused_by_name(options: dict[str, Any], message: str) -> None:
    """A library caller's Python: a str for a tuple ran its first character, an int in the
    command or a size as docker-py takes it failed with a TypeError naming neither."""
    options.setdefault("command", ("true",))
    with pytest.raises(TypeError, match=message):
        ContainerConfig(image="default", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workdir": "/a\0b"}, r"invalid --workdir '/a\\x00b': contains a NUL byte"),
        ({"tmpfs": ("/t\0mp",)}, r"invalid --tmpfs '/t\\x00mp': contains a NUL byte"),
        ({"cgroup_parent": "a\0b"}, r"invalid --cgroup-parent 'a\\x00b': contains a NUL"),
        ({"image": "/tmp\0x"}, r"invalid image '/tmp\\x00x': contains a NUL byte"),
        ({"command": ("echo", "a\0b")}, r"invalid command 'a\\x00b': contains a NUL byte"),
        ({"env": ("A\0B=1",)}, r"invalid --env 'A\\x00B=1': contains a NUL byte"),
        (
            {"volumes": (Volume("/tmp", "/x\0"),)},
            r"invalid --volume '/tmp:/x\\x00': contains a NUL",
        ),
    ],
)
def test_a_nul_byte_is_refused_by_name(options: dict[str, Any], message: str) -> None:
    """Before: "embedded null byte" from the start, naming nothing (and one in the cgroup
    parent failed the supervisor's close)."""
    with pytest.raises(ValueError, match=message):
        ContainerConfig(**{"image": "default", "command": ("true",), **options})


def test_a_list_for_a_tuple_and_an_int_for_a_float_are_taken() -> None:
    words: Any = ["echo", "hi"]
    config = ContainerConfig(image="default", command=words, env=words[:1], stop_timeout=5)
    assert list(config.command) == ["echo", "hi"]


def test_config_runtime_names() -> None:
    """runc, Docker's default name, and boxd are boxd's own runtime; another is named."""
    assert _container().config.runtime == "runc"
    assert _container(runtime="boxd").config.runtime == "boxd"
    with pytest.raises(ValueError, match="invalid --runtime 'crun': unknown runtime name"):
        _container(runtime="crun")


def test_store_is_atomic_and_sets_aside_broken_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "root")
    assert (os.stat(tmp_path / "root").st_mode & 0o777) == 0o711
    good, bad, truncated, bad_format = _container(), _container(), _container(), _container()
    for c in (good, bad, truncated, bad_format):
        store.save(c)
    (store.container_dir(bad.id) / "container.json").write_text('{"id": 1')
    record = store.container_dir(truncated.id) / "container.json"
    record.write_bytes(record.read_bytes()[:100])
    record = store.container_dir(bad_format.id) / "container.json"
    record.write_text(record.read_text().replace(f'"format": {FORMAT}', f'"format": "{FORMAT}"'))
    (store.container_dir(good.id) / ".container.json.tmp").write_text("{")  # a save cut short
    with caplog.at_level(logging.INFO, logger="boxd.store"):
        assert store.load_all().containers == [good]
    aside = sorted(p.name for p in store.containers.iterdir() if p.name.endswith(".corrupt"))
    assert aside == sorted(f"{c.id}.corrupt" for c in (bad, truncated, bad_format))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("container.json cannot be read" in w for w in warnings)
    assert f"invalid format '{FORMAT}'" in " ".join(warnings)
    assert not list(store.container_dir(good.id).glob(".*tmp"))
    changed = attrs.evolve(good, name="other")
    store.save(changed)
    assert store.load_all().containers == [changed]


def _env(size: int, c: Container) -> Container:
    return attrs.evolve(c, config=attrs.evolve(c.config, env=(f"A={'x' * size}",)))


@pytest.mark.parametrize("exchange", [True, False])
def test_a_record_and_its_spare_trade_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """From the second save on a record and its spare swap (renameat2 RENAME_EXCHANGE):
    no inode is made or freed, and the spare holds the previous record.  Without the
    exchange (here: a flag the kernel refuses with EINVAL) a save renames, as before."""
    if not exchange:
        monkeypatch.setattr(_store, "_RENAME_EXCHANGE", 1 << 30)
    store = Store(tmp_path / "root")
    first = _container()
    store.save(first, durable=False)
    record = store.container_dir(first.id) / "container.json"
    spare = record.with_name(".container.json.tmp")
    assert not spare.exists()
    store.make_spares(first.id)  # a worker thread's, before a start: only the spare now
    assert spare.exists() and not record.with_name(".container.json.next").exists()
    long, short = _env(9000, first), _env(1, first)
    store.save(long)  # durable: fsyncs too
    store.save(short, durable=False)  # shorter: the spare's old end is cut
    assert read_record(record) == short
    if exchange:
        assert read_record(spare) == long
        inodes = {record.stat().st_ino, spare.stat().st_ino}
        store.save(long, durable=False)
        assert read_record(record) == long and read_record(spare) == short
        assert {record.stat().st_ino, spare.stat().st_ino} == inodes
    else:
        assert not spare.exists()
    assert store.load_all().containers == [read_record(record)]
    assert not spare.exists()


def test_spares_made_ahead_spare_the_saves_new_inodes(tmp_path: Path) -> None:
    """Store.make_spares (a worker thread's, before a container's first start) makes the
    two files its first two saves write into: those saves make no inode."""
    store = Store(tmp_path / "root")
    c = _container()
    store.container_dir(c.id).mkdir()
    store.make_spares(c.id)
    d = store.container_dir(c.id)
    made = {p.stat().st_ino for p in d.iterdir()}
    assert sorted(p.name for p in d.iterdir()) == [".container.json.next", ".container.json.tmp"]
    store.save(c, durable=False)
    store.save(_env(10, c), durable=False)
    assert sorted(p.name for p in d.iterdir()) == [".container.json.tmp", "container.json"]
    assert {p.stat().st_ino for p in d.iterdir()} == made
    assert read_record(d / "container.json") == _env(10, c)
    store.make_spares(c.id)  # nothing to make: the spare is there and is left as it is
    assert read_record(d / ".container.json.tmp") == c
    assert store.load_all().containers == [_env(10, c)]
    assert sorted(p.name for p in d.iterdir()) == ["container.json"]


def test_a_create_cut_short_is_listed_as_unfinished(tmp_path: Path) -> None:
    """kill -9 during create can leave the directory without its record (issue 12, 9): it
    is listed for the supervisor, which ends what its shim may keep and removes it
    (tests/test_recovery.py), with its spare files gone already."""
    store = Store(tmp_path / "root")
    unfinished = store.container_dir(new_id())
    unfinished.mkdir()
    (unfinished / ".container.json.tmp").write_text('{"id"')
    loaded = store.load_all()
    assert (loaded.containers, loaded.unfinished) == ([], (unfinished.name,))
    assert list(unfinished.iterdir()) == []


def test_a_record_of_the_first_format_loads() -> None:
    """tests/data/container-format-1.json was written by the first release's store (no
    "format" key): this boxd reads it, field by field."""
    raw = json.loads((DATA / "container-format-1.json").read_text())
    assert "format" not in raw
    c = read_record(DATA / "container-format-1.json")
    assert (c.id, c.name, c.state.status, c.state.pid) == ("0f" * 32, "web", Status.RUNNING, 4242)
    cfg = c.config
    assert (cfg.user, cfg.resources.memory, cfg.restart, cfg.volumes[0].read_only) == (
        "1000:1000",
        64 << 20,
        RestartPolicy(RestartName.ON_FAILURE, 3),
        True,
    )
    # Nothing of it lost or changed; fields added since take their defaults.
    assert _kept(raw, unstructure(c))


def _kept(old: object, new: object) -> bool:
    if isinstance(old, dict) and isinstance(new, dict):
        return all(k in new and _kept(v, new[k]) for k, v in old.items())
    if isinstance(old, list) and isinstance(new, list):  # of records, which may grow too
        return len(old) == len(new) and all(_kept(o, n) for o, n in zip(old, new, strict=True))
    return old == new


def _fields(cls: type, prefix: str = "") -> list[str]:
    """Every field path of a record class and of the record classes its fields hold."""
    found = []
    for field in attrs.fields(attrs.resolve_types(cls)):
        found.append(f"{prefix}{field.name}")
        pending = [field.type]
        while pending:
            t = pending.pop()
            if attrs.has(t):
                found += _fields(t, f"{prefix}{field.name}.")
            pending += typing.get_args(t)
    return found


# The record's fields at each format: a field added (or renamed, or retyped into another
# record) is one a reader of the last format refuses, setting the record aside as unreadable
# and killing its container; FORMAT goes up with it, and such a reader leaves the record
# alone instead.  (3: the fields added since format 2 without it, e.g. Isolation, Attach*;
# 4: IPv6; 7: a join's gw_priority; 8: a join's links; 9: its link_local_ips; 10: no new
# field, the log drivers a reader of 9 refuses; 11: the same for fluentd; 12: a bind's
# recursion, a volume's subpath, image mounts, --cgroupns host.)
_SCHEMA = {3: "f748", 4: "511f", 5: "e62d", 6: "b415", 7: "966a", 8: "854d", 9: "0e6f",
           10: "0e6f", 11: "0e6f", 12: "05fd"}  # fmt: skip


def test_a_new_field_of_the_record_comes_with_a_new_format() -> None:
    digest = hashlib.sha256("\n".join(sorted(set(_fields(Container)))).encode()).hexdigest()
    assert _SCHEMA.get(FORMAT) == digest[:4], (
        f"the container record's fields changed (digest {digest[:4]}): raise FORMAT in"
        " boxd/_store.py, so that an older boxd leaves the new records alone, and pin it here"
    )


# The network and volume records' fields at each of their formats (as _SCHEMA): 1 has no
# "format" key, so that the releases before their formats read them; network 2: IPv6, 3:
# its IPv6 ip-range and IPv6-only networks (ipv4), 4: auxiliary addresses and attachable.
_NETWORK_SCHEMA = {1: "f8e5", 2: "c5fb", 3: "f15d", 4: "e06b", 5: "50d3"}
_VOLUME_SCHEMA = {1: "2273"}


@pytest.mark.parametrize(
    ("cls", "schema", "newest", "where"),
    [
        (Network, _NETWORK_SCHEMA, NETWORK_FORMAT, "NETWORK_FORMAT in boxd/_network.py"),
        (VolumeRecord, _VOLUME_SCHEMA, VOLUME_FORMAT, "VOLUME_FORMAT in boxd/_volumes.py"),
    ],
)
def test_a_new_field_of_a_network_or_volume_record_comes_with_a_new_format(
    cls: type, schema: dict[int, str], newest: int, where: str
) -> None:
    digest = hashlib.sha256("\n".join(sorted(set(_fields(cls)))).encode()).hexdigest()
    assert schema.get(newest) == digest[:4], (
        f"the {cls.__name__} record's fields changed (digest {digest[:4]}): raise {where},"
        " write it in the record's 'format' key, and pin it here"
    )


async def test_a_network_record_of_a_newer_format_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer boxd's network (a field added, its format raised) is left alone, named in
    one warning: not listed, its record untouched, its name and subnet not taken by a new
    one, and no default network made beside a newer one (the newer boxd would keep only
    one of the two).  It was logged as unreadable and ignored, and its name made again."""
    records = tmp_path / "networks"
    records.mkdir()
    paths = []
    for name, subnet in (("future", "10.98.0.0/24"), ("bridge", "10.97.0.0/24")):
        net = Network(name, name[0] * 64, f"br-{name}", subnet, subnet[:-4] + "1", 1.0, True)
        paths.append(records / f"{net.id}.json")
        data = {"format": NETWORK_FORMAT + 1, **unstructure(net), "future_field": 1}
        paths[-1].write_text(json.dumps(data))
    before = [p.read_bytes() for p in paths]
    nets = Networks(tmp_path)
    with caplog.at_level(logging.WARNING, logger="boxd.network"):
        nets._load()
    assert nets.list() == []
    newer = f"written by a newer boxd (network record format {NETWORK_FORMAT + 1}; this one"
    assert [newer in r.getMessage() and "left alone" in r.getMessage() for r in caplog.records] == [
        True,
        True,
    ]
    with pytest.raises(NetworkConflict, match=r"future already exists \(a newer boxd's"):
        await nets.create("future")
    with pytest.raises(NetworkError, match=r"overlaps network future \(a newer boxd's\)"):
        await nets.create("other", "10.98.0.0/25")
    with pytest.raises(NetworkError, match="network bridge: its record is a newer boxd's"):
        await nets._default()
    assert [p.read_bytes() for p in paths] == before
    assert sorted(records.iterdir()) == sorted(paths)


def test_a_volume_record_of_a_newer_format_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer boxd's volume is not listed (one warning names it), used, made again over
    nor removed: each says whose it is.  It read as damaged (EIO, "unreadable record")."""
    volumes = Volumes(tmp_path / "volumes", tmp_path / "trash")
    volumes.create("kept")
    record = tmp_path / "volumes" / "kept" / "volume.json"
    data = {"format": VOLUME_FORMAT + 1, **json.loads(record.read_text()), "future_field": 1}
    record.write_text(json.dumps(data))
    before = record.read_bytes()
    words = (
        f"volume kept: written by a newer boxd (volume record format {VOLUME_FORMAT + 1}; "
        f"this one reads up to {VOLUME_FORMAT}): left alone"
    )
    with caplog.at_level(logging.WARNING, logger="boxd.volumes"):
        assert volumes.list() == []
    assert [words in r.getMessage() for r in caplog.records] == [True]
    for verb in (volumes.get, volumes.create, volumes.remove, volumes.source):
        with pytest.raises(OSError) as refused:
            verb("kept")
        assert refused.value.strerror == words
    assert record.read_bytes() == before


def test_a_record_of_a_newer_format_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "root")
    c = _container()
    store.save(c)
    record = store.container_dir(c.id) / "container.json"
    data = json.loads(record.read_text())
    data["format"] = FORMAT + 1
    data["state"]["future_field"] = 1
    record.write_text(json.dumps(data))
    before = record.read_bytes()
    with caplog.at_level(logging.WARNING, logger="boxd.store"):
        loaded = store.load_all()
    assert loaded.containers == [] and loaded.foreign == {c.id}
    assert record.read_bytes() == before
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"written by a newer boxd (record format {FORMAT + 1}" in message
    assert str(record) in message and "left alone" in message


def test_a_save_writes_the_whole_record_as_json_encodes_it(tmp_path: Path) -> None:
    """The configuration's JSON is kept per configuration object (frozen: a change is a
    new object): each save's bytes are the whole record's encoding, also after a change of
    the configuration, of the state or of the name."""
    store = Store(tmp_path / "root")
    c = _container(env=("A=1",))
    record = store.container_dir(c.id) / "container.json"

    def encoded() -> bytes:
        return json.dumps({"format": FORMAT, **unstructure(c)}, allow_nan=False).encode()

    store.save(c, durable=False)
    assert record.read_bytes() == encoded()
    c.state.status, c.state.pid, c.name = Status.RUNNING, 42, "renamed"
    store.save(c, durable=False)
    assert record.read_bytes() == encoded()
    c.config = attrs.evolve(c.config, env=("A=2",))
    store.save(c, durable=False)
    assert record.read_bytes() == encoded() and read_record(record) == c


def test_store_discards_at_once_and_empties_the_trash_later(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    c = _container()
    store.save(c, durable=False)
    (store.container_dir(c.id) / "fs").mkdir()
    store.discard(c.id)
    assert store.load_all().containers == [] and list(store.trash.iterdir()) == [store.trash / c.id]
    store.discard(c.id)  # already gone: nothing to do
    (store.trash / ".deleting" / c.id / "x").mkdir(parents=True)  # a namesake a crash left
    store.empty_trash()
    # Deleted through trash/.deleting (see Store.empty_trash), which stays.
    assert list(store.trash.iterdir()) == [store.trash / ".deleting"]
    assert list((store.trash / ".deleting").iterdir()) == []


def _remove_tree(path: Path) -> None:
    importlib.import_module("sandbox_native").remove_tree(str(path))


def test_the_trash_deletes_every_kind_of_entry_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_bytes(b"x")
    tree = tmp_path / "tree"
    deep = tree / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"data")
    (tree / "a" / "empty").mkdir()
    os.mkfifo(tree / "a" / "fifo")
    (tree / "a" / "link").symlink_to(outside)
    (tree / "a" / "dangling").symlink_to(tmp_path / "nowhere")
    for i in range(300):  # more than one readdir batch
        (tree / "a" / f"n{i:03}").write_bytes(b"")
    (tree / "a" / "b").chmod(0)  # root deletes what it cannot read as others
    _remove_tree(tree)
    assert not tree.exists() and (outside / "kept").read_bytes() == b"x"
    _remove_tree(tree)  # gone already: nothing to do
    (tmp_path / "single").write_bytes(b"")
    _remove_tree(tmp_path / "single")  # a file alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]


@pytest.mark.root
def test_the_trash_leaves_another_file_system_mounted_inside(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "loose").write_bytes(b"")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tree / "mnt")], check=True)
    try:
        (tree / "mnt" / "inside").write_bytes(b"kept")
        with pytest.raises(OSError) as caught:
            _remove_tree(tree)
        assert caught.value.errno == errno.EXDEV and caught.value.filename == str(tree)
        assert (tree / "mnt" / "inside").read_bytes() == b"kept"
        assert not (tree / "loose").exists()
    finally:
        subprocess.run(["umount", str(tree / "mnt")], check=True)
    _remove_tree(tree)
    assert not tree.exists()


def test_link_variables_sort_ports_as_docker_and_keep_names_apart() -> None:
    """Docker's link variables (boxd._links, as Docker 28's): the tcp ports first, each
    protocol's lowest first, a run of consecutive ports under its first (its start and
    end), the alias upper-cased with ``-`` and ``.`` as ``_``, HOME and PATH not passed
    on; the hosts line names the alias, the linked container's hostname and its name
    (once)."""
    from boxd import _links

    child = _container(
        exposed_ports=("53/udp", "80/tcp"), expose=("53/tcp", "81/tcp"), env=("PATH=/x", "K=v=w")
    )
    env = _links.variables("app", "my-db.1", "10.0.0.2", child)
    assert env[0] == "MY_DB_1_PORT=tcp://10.0.0.2:53"
    assert env[1:5] == [
        "MY_DB_1_PORT_80_TCP_START=tcp://10.0.0.2:80",
        "MY_DB_1_PORT_80_TCP_PORT_START=80",
        "MY_DB_1_PORT_80_TCP_END=tcp://10.0.0.2:81",
        "MY_DB_1_PORT_80_TCP_PORT_END=81",
    ]
    assert len(env) == len(set(env))
    assert [v for v in env if v.endswith("_PROTO=udp")] == ["MY_DB_1_PORT_53_UDP_PROTO=udp"]
    assert env.index("MY_DB_1_PORT_53_TCP=tcp://10.0.0.2:53") < env.index(
        "MY_DB_1_PORT_53_UDP=udp://10.0.0.2:53"
    )
    assert env[-2:] == ["MY_DB_1_NAME=/app/my-db.1", "MY_DB_1_ENV_K=v=w"]
    udp_first = _container(exposed_ports=("53/udp", "80/tcp"))
    assert _links.variables("app", "w", "10.0.0.3", udp_first)[0] == "W_PORT=tcp://10.0.0.3:80"
    assert _links.hosts_line("10.0.0.2", "web", child) == f"10.0.0.2\tweb {child.short_id}"
    named = _links.hosts_line("10.0.0.2", "db", child)
    assert named == f"10.0.0.2\tdb {child.short_id} web"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"volumes": (Volume("", "/m", volume="vv", subpath="../etc"),)}, "leaves the volume"),
        ({"volumes": (Volume("", "/m", volume="vv", subpath="/etc"),)}, "leaves the volume"),
        ({"volumes": (Volume("/srv", "/m", subpath="a"),)}, "is for named volumes"),
        ({"image_mounts": (ImageMount("busybox", "/i", subpath="a/../../x"),)}, "leaves the image"),
        (
            {"volumes": (Volume("/srv", "/m", propagation="shard"),)},
            "propagation 'shard': use one of rprivate, private, rshared, shared, rslave, slave",
        ),
    ],
)
def test_a_library_callers_subpaths_are_checked(config: dict[str, object], words: str) -> None:
    """Subpaths (and propagations) given to the library, not through a parser: refused at
    create, as the parsers refuse them, not first at the start (whose lookup stays below
    the volume)."""
    with pytest.raises(ValueError, match=words):
        validate_config(ContainerConfig(image="default", command=("true",), **config))  # type: ignore[arg-type]

"""The Engine API fuzzer's rules (tools/fuzz_rules.py; pure: no root, no schemathesis):
what it strips from a request before the daemon sees it, and which failures it counts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "tools"))

from fuzz_rules import known, make_safe, nullable, safe_query, without_nullable

SCRATCH = Path("/var/tmp/boxd-fuzz-x")


def test_a_create_body_loses_what_reaches_the_host() -> None:
    body: dict[str, Any] = {
        "Image": "/",
        "Cmd": ["sh", "-c", "/bin/true:x"],
        "Env": ["PATH=/usr/bin:/bin"],
        "HostConfig": {
            "Privileged": True,
            "CapAdd": ["SYS_ADMIN"],
            "Devices": [{"PathOnHost": "/dev/sda"}],
            "Sysctls": {"kernel.x": "1"},
            "SecurityOpt": ["seccomp=unconfined"],
            "LogConfig": {"Type": "syslog"},
            "CgroupParent": "/system.slice",
            "Runtime": "runc",
            "MaskedPaths": [],
            "NetworkMode": "host",
            "PidMode": "HOST",
            "IpcMode": "private",
            "Binds": ["/etc:/x:ro", "vol:/y", "/tmp:/z", 7],
            "Mounts": [
                {
                    "Type": "bind",
                    "Source": "/root",
                    "Target": "/r",
                    "BindOptions": {"Propagation": "rshared"},
                },
                {
                    "Type": "volume",
                    "Source": "v",
                    "Target": "/v",
                    "VolumeOptions": {"DriverConfig": {"Name": "local"}},
                },
            ],
        },
    }
    make_safe(body, SCRATCH)
    assert body == {
        "Image": "/var/tmp/boxd-fuzz-x/host",
        "Cmd": ["sh", "-c", "/bin/true:x"],  # not a bind
        "Env": ["PATH=/usr/bin:/bin"],
        "HostConfig": {
            "IpcMode": "private",
            "Binds": [
                "/var/tmp/boxd-fuzz-x/host/etc:/x:ro",
                "vol:/y",
                "/var/tmp/boxd-fuzz-x/host/tmp:/z",
                7,
            ],
            "Mounts": [
                {"Type": "bind", "Source": "/var/tmp/boxd-fuzz-x/host/root", "Target": "/r"},
                {"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {}},
            ],
        },
    }


def test_other_bodies() -> None:
    volume = {"Name": "v", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}}
    make_safe(volume, SCRATCH)
    assert volume == {"Name": "v"}
    exec_body = {"Cmd": ["true"], "Privileged": True}
    make_safe(exec_body, SCRATCH)
    assert exec_body == {"Cmd": ["true"]}
    for scalar in (None, 1, "Privileged", b"tar"):
        make_safe(scalar, SCRATCH)  # a negative case's body of another type: left as it is


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"networkmode": "host", "t": "x"}, {"t": "x"}),
        ({"networkmode": "bridge"}, {"networkmode": "bridge"}),
        ({"t": -1}, {"t": 2}),
        ({"t": 10**9}, {"t": 2}),
        ({"t": 1}, {"t": 1}),
    ],
)
def test_query(query: dict[str, Any], expected: dict[str, Any]) -> None:
    safe_query(query)
    assert query == expected


SPEC = {
    "definitions": {
        "Volume": {
            "properties": {
                "Labels": {"type": "object", "x-nullable": False},
                "Options": {"type": "object", "x-nullable": True},
                "Status": {"type": "object"},
            }
        },
        "HostConfig": {"allOf": [{"$ref": "#/x"}, {"properties": {"CapAdd": {"type": "array"}}}]},
    }
}


def test_nulls() -> None:
    assert not nullable(SPEC, "/definitions/Volume/properties/Labels")
    assert nullable(SPEC, "/definitions/Volume/properties/Options")
    assert nullable(SPEC, "/definitions/Volume/properties/Status")  # Go writes nil so
    assert nullable(SPEC, "/definitions/HostConfig/allOf/1/properties/CapAdd")
    assert nullable(SPEC, "/properties/ExitCode")  # an operation's own schema
    stripped = without_nullable(SPEC)
    assert stripped["definitions"]["Volume"]["properties"]["Options"] == {"type": "object"}
    assert stripped["definitions"]["Volume"]["properties"]["Labels"]["x-nullable"] is False


def test_known() -> None:
    assert known(500, '{"message": "cannot reach registry docker.io: ..."}')
    assert known(400, '{"message": "cannot reach registry docker.io: ..."}') is None
    assert known(500, '{"message": "cannot write to cpu.cfs_quota_us"}') is None

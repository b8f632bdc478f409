"""The socket's group is looked up in a child process (boxd/_nss.py): same answers as the
daemon asking itself, and no NSS module stays in the daemon."""

from __future__ import annotations

import grp
import subprocess
import sys

import trio

from boxd import _nss

MISSING = "boxd-test-no-such-group"


def test_group_id_answers_as_the_name_service_does() -> None:
    names = [g.gr_name for g in grp.getgrall()[:5]]
    assert trio.run(_nss.group_id, "root") == 0
    for name in names:
        assert trio.run(_nss.group_id, name) == grp.getgrnam(name).gr_gid
    assert trio.run(_nss.group_id, MISSING) is None


def test_group_id_loads_no_nss_module_here() -> None:
    code = (
        "import trio; from boxd import _nss\n"
        f"assert trio.run(_nss.group_id, {MISSING!r}) is None\n"
        "print(sum('libnss_' in line for line in open('/proc/self/maps')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"

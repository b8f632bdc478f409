"""The daemon's malloc settings (boxd/_trim.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_THREAD_ALLOCATES = """
import ctypes, sys, threading
from boxd import _trim
if sys.argv[1] == "one":
    _trim.one_heap()
def work():
    keep = [bytearray(2000) for _ in range(200)]
thread = threading.Thread(target=work)
thread.start()
thread.join()
ctypes.CDLL(None).malloc_stats()  # to stderr: one "Arena N:" block per heap
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heaps only")
def test_one_heap_keeps_a_thread_off_a_heap_of_its_own() -> None:
    def heaps(mode: str) -> int:
        err = subprocess.run(
            [sys.executable, "-c", _THREAD_ALLOCATES, mode],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        return sum(line.startswith("Arena ") for line in err.splitlines())

    assert heaps("default") == 2  # the thread made its own: what one_heap() prevents
    assert heaps("one") == 1

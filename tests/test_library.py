"""The library as a program that supervises containers itself meets it (a code runner, a
test suite's throw-away sandboxes), on real containers: what comes out of
``open_supervisor`` when its block fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import boxd

pytestmark = pytest.mark.root


def _config(root: Path, *command: str, **options: Any) -> boxd.ContainerConfig:
    return boxd.ContainerConfig(image=str(root), command=command, network="none", **options)


@pytest.mark.parametrize("error", [ValueError("the test failed"), KeyboardInterrupt()])
async def test_what_the_block_raises_comes_out_as_it_was_raised(
    tmp_path: Path, busybox_root: Path, error: BaseException
) -> None:
    """Not wrapped in an ExceptionGroup by the supervisor's nursery: ``except ValueError``
    and ``pytest.raises`` catch it, a Ctrl-C ends the program as a KeyboardInterrupt; the
    container it ran is stopped on the way out."""
    sleeper = _config(busybox_root, "sleep", "100", stop_signal="SIGKILL")
    with pytest.raises(type(error)) as raised:
        async with boxd.open_supervisor(tmp_path / "lib") as sup:
            c = await sup.run(sleeper)
            raise error
    assert raised.value is error
    async with boxd.open_supervisor(tmp_path / "lib") as sup:
        assert sup.inspect(c.id).state.status is boxd.Status.STOPPED
        await sup.remove(c.id)

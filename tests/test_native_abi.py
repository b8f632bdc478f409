"""The C and Python copies of the spawn path's numbers agree (no root needed).

sandbox_native/spawn.h lists the stages, mount kinds and sync message kinds once; the
extension exports them as compiled (``STAGES``, ``MOUNT_KINDS``, ``MESSAGES``), and
boxd/_native.py has its own enums.  A number changed on one side only would make the
parent misread what the child reports, or the child run the wrong mount step.
"""

from __future__ import annotations

import enum
import importlib
from types import ModuleType

import pytest

from boxd._native import MAX_MOUNT_FDS, SYNC_MESSAGE, Message, MountKind, Stage


@pytest.fixture
def extension() -> ModuleType:
    # By name: mypy would take the sandbox_native/ source directory for the module.
    return importlib.import_module("sandbox_native")


def _members(kind: type[enum.IntEnum]) -> dict[str, int]:
    return {member.name: member.value for member in kind}


def test_stages_agree(extension: ModuleType) -> None:
    assert _members(Stage) == extension.STAGES


def test_mount_kinds_agree(extension: ModuleType) -> None:
    assert _members(MountKind) == extension.MOUNT_KINDS


def test_messages_agree(extension: ModuleType) -> None:
    assert _members(Message) == extension.MESSAGES
    assert extension.SYNC_MSG_SIZE == SYNC_MESSAGE.size == 16


def test_limits_agree(extension: ModuleType) -> None:
    assert extension.MAX_MOUNT_FDS == MAX_MOUNT_FDS

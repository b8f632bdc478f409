"""``-u USER[:GROUP]`` resolved as Docker does, in the container's own /etc/passwd and
/etc/group (read by :func:`boxd._rootfs.read_container_file`, never the host's).

* USER is a name or a numeric uid.  A name must be in passwd; a number need not be
  (``-u 1000`` on an image without that entry runs as uid 1000, gid 0).  The entry, when
  found, gives the gid and the home directory.
* GROUP, when given, is a name (which must be in group) or a number, and replaces the
  entry's gid; no other supplementary groups are added then.
* Without GROUP, the groups that list the user's name as a member are its supplementary
  groups.
* The supplementary groups are the primary gid, those, then ``--group-add``'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

_MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to setresuid: never an id
# What may stand for a user or group: a name in passwd/group, or a number.
_NAME = re.compile(r"[^:\s\0]+\Z")


@attrs.frozen
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"


def check_user(text: str) -> None:
    """Refuse a ``--user`` that is not ``USER[:GROUP]`` (names or ids), naming it.  Either
    side of the colon may be empty, as Docker reads it: ``:50`` is root with gid 50,
    ``app:`` is ``app``."""
    user, colon, group = text.partition(":")
    for part in (user, group) if colon else (user,):
        if colon and not part:
            continue
        if not _NAME.match(part):
            raise ValueError(f"invalid --user {text!r}: use USER[:GROUP] (names or ids)")
        if part.isascii() and part.isdigit() and int(part) > _MAX_ID:
            raise ValueError(f"invalid --user {text!r}: id {part} is out of range")


def _entries(text: str | None, fields: int) -> list[list[str]]:
    """The well-formed lines of a passwd or group file."""
    rows = []
    for line in (text or "").splitlines():
        row = line.split(":")
        if len(row) >= fields and row[0] and not line.startswith("#"):
            rows.append(row)
    return rows


def _id(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and int(text) <= _MAX_ID else None


def resolve(
    text: str, passwd: str | None, group: str | None, group_add: tuple[str, ...] = ()
) -> ExecUser:
    """``USER[:GROUP]`` -> the identity to run as, given the texts of the container's
    /etc/passwd and /etc/group (None when the image has none).  An empty ``text`` is root.
    ``group_add`` (``--group-add``: names or gids) are added to the supplementary groups.
    Raises ValueError in Docker's words for a name that is in neither file."""
    user = _resolve_user(text, passwd, group)
    added: list[int] = []
    for name in group_add:
        gid = _id(name)
        if gid is None:
            gid = next((g for n, g, _ in _groups(group) if n == name and g is not None), None)
            if gid is None:
                raise ValueError(f"unable to find group {name}: no matching entries in group file")
        if gid not in added:
            added.append(gid)
    # The primary group leads the supplementary ones, as Docker sets them since 20.10.18
    # (CVE-2022-36109: a process that changes its gid keeps it, so a file's group-denying
    # mode still applies to it); Docker drops no duplicate among the three parts.
    return attrs.evolve(user, groups=(user.gid, *user.groups, *added))


def check_group(text: str) -> None:
    """Refuse a ``--group-add`` that is neither a name nor a gid, naming it."""
    if not _NAME.match(text) or (text.isascii() and text.isdigit() and int(text) > _MAX_ID):
        raise ValueError(f"invalid --group-add {text!r}: use a group name or id")


def _groups(text: str | None) -> list[tuple[str, int | None, list[str]]]:
    """(name, gid, members) of each well-formed line of a group file."""
    return [(row[0], _id(row[2]), row[3].split(",")) for row in _entries(text, 4)]


def _resolve_user(text: str, passwd: str | None, group: str | None) -> ExecUser:
    if not text:
        text = "0"
    check_user(text)
    name, _, group_name = text.partition(":")
    name = name or "0"
    uid = _id(name)
    entry = next(
        (
            row
            for row in _entries(passwd, 7)
            if row[0] == name or (uid is not None and _id(row[2]) == uid)
        ),
        None,
    )
    if entry is not None and _id(entry[2]) is not None and _id(entry[3]) is not None:
        user = ExecUser(int(entry[2]), int(entry[3]), (), entry[5] or "/")
    elif uid is not None:
        user = ExecUser(uid, 0)  # runc's HOME for a uid passwd lacks, root's too: /
    else:
        raise ValueError(f"unable to find user {name}: no matching entries in passwd file")
    groups = _groups(group)
    if group_name:
        gid = _id(group_name)
        matches = [g for n, g, _ in groups if g is not None and (n == group_name or g == gid)]
        if matches:
            gid = matches[0]
        elif gid is None:
            raise ValueError(
                f"unable to find group {group_name}: no matching entries in group file"
            )
        return attrs.evolve(user, gid=gid)
    if entry is None:
        return user
    member_of = tuple([g for _, g, members in groups if g is not None and entry[0] in members])
    return attrs.evolve(user, groups=member_of)


def resolve_in(
    text: str, read: Callable[[str], str | None], group_add: tuple[str, ...] = ()
) -> ExecUser:
    """:func:`resolve` with the files ``read`` returns for a container path (root too:
    an image may give root supplementary groups, as Docker honours)."""
    return resolve(text, read("/etc/passwd"), read("/etc/group"), group_add)

"""/proc/self/mountinfo, read one way for the cgroup detection, the /proc view's mount
point and the repair of dead mounts (no imports: ``boxd-runtime create`` reads it too)."""

from __future__ import annotations


def unescape(field: str) -> str:
    """A mountinfo field as the path it names: mountinfo writes space, tab, newline and
    backslash as octal escapes (``\\040``)."""
    head, *rest = field.split("\\")
    out = [head]
    for part in rest:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def propagation_of(path: str) -> tuple[str, list[str]]:
    """The mount point ``path`` (a resolved path) is on, and that mount's propagation
    fields (``shared:N`` when what is mounted there reaches its peers, ``master:N`` when it
    gets what its master's peers mount; none for a private mount)."""
    # The longest mount point over it; of those stacked there, the last one mounted.
    return max(
        (
            (p, f)
            for p, f in reversed(propagations())
            if path == p or path.startswith(p.rstrip("/") + "/")
        ),
        key=lambda found: len(found[0]),
    )


def filesystem(path: str) -> str:
    """The type of the filesystem the resolved ``path`` is on (``ext4``, ``xfs``, ...): of
    the longest mount point over it, the last one mounted there."""
    found = ""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        longest = -1
        for line in file:
            fields = line.split()
            point = unescape(fields[4])
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(
                point
            ) >= longest:
                longest, found = len(point), fields[fields.index("-") + 1]
    return found


def mount_points() -> list[str]:
    """Every mount point of our mount namespace, in mount order (field 5)."""
    return [point for point, _ in propagations()]


def propagations() -> list[tuple[str, list[str]]]:
    """Each mount point of our mount namespace, in mount order, with its propagation
    (the optional fields: ``shared:N``, ``master:N``; none for a private mount)."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            fields = line.split()
            found.append((unescape(fields[4]), fields[6 : fields.index("-")]))
    return found

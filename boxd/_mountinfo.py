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


def mount_points() -> list[str]:
    """Every mount point of our mount namespace, in mount order (field 5)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as file:
        return [unescape(line.split()[4]) for line in file]

""".dockerignore: which context paths COPY and ADD do not see, as Docker reads the file.

One pattern a line (``#`` lines are comments); a pattern is cleaned as a path (a leading
``/`` and ``./`` dropped); ``*`` and ``?`` do not match ``/``, ``**`` matches any number of
directories, ``[...]`` a class; a ``!`` line re-includes what an earlier line excluded;
the last matching line decides.  A path is excluded when it or a directory above it is;
an excluded directory is still walked for what a ``!`` line names below it (a pattern
that begins with the directory's path, as Docker's walk checks it).
"""

from __future__ import annotations

import posixpath
import re

__all__ = ["Excluding", "Ignore"]


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ValueError(f".dockerignore: bad pattern {pattern!r}: unclosed [")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + body.replace("!", "^", 1).replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


class Ignore:
    def __init__(self, text: str = "") -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        self._kept: list[str] = []  # the patterns of the ``!`` lines
        # A UTF-8 byte order mark (an editor's) is not part of the first pattern, as
        # Docker reads the file (moby's TestBuildWithUTF8BOMDockerignore).
        for line in text.removeprefix("\ufeff").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            line = line[1:].strip() if keep else line
            clean = posixpath.normpath(line).lstrip("/")
            if clean in ("", "."):
                continue
            self.rules.append((keep, _regex(clean)))
            if keep:
                self._kept.append(clean)

    def excluded(self, path: str) -> bool:
        """Whether the context path (relative, ``/``-separated) is left out."""
        if not self.rules:
            return False
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for keep, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not keep
        return result

    def reincludes_below(self, directory: str) -> bool:
        """Whether a ``!`` line may bring back something below the (excluded) directory."""
        below = directory.strip("/") + "/"
        return any(pattern.startswith(below) for pattern in self._kept)


class Excluding(Ignore):
    """COPY's and ADD's ``--exclude`` patterns over the context's .dockerignore
    (``base``): a path is left out when ``base`` leaves it out, or when its path below the
    source it is in (one of ``tops``, paths below the root; "" for the root) matches a
    pattern, as BuildKit's copy matches them (.dockerignore's syntax)."""

    def __init__(self, base: Ignore | None, patterns: list[str], tops: list[str]) -> None:
        super().__init__()
        self.base = base
        self.extra = Ignore("\n".join(patterns))
        self.tops = tops

    def _below(self, path: str) -> str:
        for top in self.tops:
            if not top:
                return path
            if path.startswith(top + "/"):
                return path[len(top) + 1 :]
        return ""

    def excluded(self, path: str) -> bool:
        if self.base is not None and self.base.excluded(path):
            return True
        below = self._below(path.strip("/"))
        return bool(below) and self.extra.excluded(below)

    def reincludes_below(self, directory: str) -> bool:
        if self.base is not None and self.base.reincludes_below(directory):
            return True
        below = self._below(directory.strip("/"))
        return bool(below) and self.extra.reincludes_below(below)

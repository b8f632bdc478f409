"""Detach keys (Docker's ``ctrl-p,ctrl-q``): their parser and the matcher that finds them in
typed input.  Sans-IO: ``boxctl`` watches a local terminal with it, the Engine API the
stdin of an attached or exec'd TTY (docker-py and other API clients detach by it)."""

from __future__ import annotations

DEFAULT = "ctrl-p,ctrl-q"
# What follows ``ctrl-``, as Docker takes it: ASCII, since a key is one byte.
_CONTROLLED = "abcdefghijklmnopqrstuvwxyz@[\\]^_"


def parse(text: str) -> bytes:
    """``ctrl-p,ctrl-q`` -> b"\\x10\\x11"; a plain (ASCII) character stands for itself.
    A ValueError names the bad text: a letter beyond ASCII (``ctrl-ß``, ``é``) is not a
    key's one byte, as Docker refuses it (ß ended boxctl with a traceback)."""
    keys = bytearray()
    for part in text.split(","):
        p = part.strip().lower()
        if p.startswith("ctrl-") and len(p) == 6 and p[5] in _CONTROLLED:
            keys.append(ord(p[5].upper()) & 0x1F)
        elif len(part) == 1 and part.isascii():
            keys.append(ord(part))
        else:
            raise ValueError(f"invalid detach keys {text!r}: use e.g. ctrl-p,ctrl-q")
    return bytes(keys)


class DetachMatcher:
    """Finds the detach sequence in typed input; bytes of a broken prefix pass through."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, whether the sequence was completed)."""
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes((byte,))
            if self.keys.startswith(candidate):
                self.held = candidate
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
            else:
                out += self.held
                self.held = b""
                if self.keys[:1] == bytes((byte,)):
                    self.held = bytes((byte,))
                else:
                    out.append(byte)
        return bytes(out), False

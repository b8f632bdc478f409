"""The journald log driver: each line a container writes, an entry of the host's journal
with the fields Docker's journald driver gives it (moby's daemon/logger/journald over
go-systemd's ``journal.Send``).

An entry a line (see boxd/_linesend.py), sent to journald's native socket
(:data:`SOCKET`): ``MESSAGE`` (the line without its newline), ``PRIORITY`` (6, info, for
stdout; 3, err, for stderr), ``CONTAINER_ID`` (the short id), ``CONTAINER_ID_FULL``,
``CONTAINER_NAME``, ``CONTAINER_TAG`` and ``SYSLOG_IDENTIFIER`` (the log option ``tag``,
the short id by default), ``IMAGE_NAME``, ``SYSLOG_TIMESTAMP`` (RFC 3339 with
nanoseconds, UTC), ``CONTAINER_LOG_EPOCH`` (one random id a run) and
``CONTAINER_LOG_ORDINAL`` (the entry's number in it), the labels and variables the log
options ``labels``, ``env`` (and their ``-regex``) name, their keys made journal field
names as Docker makes them (upper case, ``_`` for any other character, no leading
``_``); the pieces of a line longer than 16 KiB carry ``CONTAINER_PARTIAL_ID``,
``..._ORDINAL`` and ``..._LAST``, and each but the last ``CONTAINER_PARTIAL_MESSAGE=true``.
A value with a newline is sent in the protocol's binary form.  An entry larger than the
socket takes (large label or variable attributes can make one) goes in a sealed memfd
passed with the datagram instead, as go-systemd and sd_journal_sendv pass it.

Docker reads a journald container's ``logs`` back from the journal; boxd keeps the log as
the local driver does (20m x 5, compressed) and reads that, so ``logs`` works alike on a
host whose journal is volatile or rotated.  A host without journald (no :data:`SOCKET`)
fails the start in Docker's words.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
import struct
import time
from collections.abc import Mapping

import trio

from ._human import rfc3339_nano
from ._linesend import SocketSender, datagram, severity

SOCKET = "/run/systemd/journal/socket"


def field_name(key: str) -> str:
    """A label's or variable's name as a journal field, as Docker's driver makes it
    (``sanitizeKeyMod``): letters in upper case, any other character than a letter or a
    digit ``_``, and none of the leading ``_`` (the journal's own fields)."""
    name = "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in key)
    return name.lstrip("_")


def _field(name: str, value: bytes) -> bytes:
    if b"\n" in value:  # the native protocol's binary form
        return name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name.encode() + b"=" + value + b"\n"


class Sender(SocketSender):
    """One container's connection to journald."""

    def __init__(self, fields: Mapping[str, str], what: str) -> None:
        """``fields``: those of every entry of the run (its container's, see
        :func:`container_fields`)."""
        super().__init__(what)
        epoch = {"CONTAINER_LOG_EPOCH": secrets.token_hex(32)}
        self._fields = b"".join([_field(k, v.encode()) for k, v in {**fields, **epoch}.items()])
        self._ordinal = 0

    def where(self) -> str:
        return SOCKET

    async def _connect(self) -> None:
        try:
            self._sock = await datagram(socket.AF_UNIX, SOCKET)
        except OSError:
            raise OSError("journald is not enabled on this host") from None  # Docker's

    async def _deliver(self, data: bytes) -> None:
        try:
            await super()._deliver(data)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            await self._deliver_sealed(data)

    async def _deliver_sealed(self, data: bytes) -> None:
        """An entry too large for a datagram: in a memfd sealed against any change (which
        journald requires of one), its fd the datagram's only content."""
        sock = self._sock
        assert sock is not None
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            while True:
                try:
                    sock.sendmsg([], rights)
                    return
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
        finally:
            os.close(fd)

    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        self._ordinal += 1
        parts = [
            _field("PRIORITY", str(severity(stream)).encode()),
            _field("MESSAGE", text),
            self._fields,
            _field("SYSLOG_TIMESTAMP", rfc3339_nano(time.time_ns()).encode()),
            _field("CONTAINER_LOG_ORDINAL", str(self._ordinal).encode()),
        ]
        if (piece := self.piece(stream, partial)) is not None:
            ident, ordinal, last = piece
            parts += [
                _field("CONTAINER_PARTIAL_ID", ident.encode()),
                _field("CONTAINER_PARTIAL_ORDINAL", str(ordinal).encode()),
                _field("CONTAINER_PARTIAL_LAST", b"true" if last else b"false"),
            ]
            if not last:
                parts.append(_field("CONTAINER_PARTIAL_MESSAGE", b"true"))
        return b"".join(parts)


def container_fields(
    cid: str, name: str, image: str, tag: str, attributes: Mapping[str, str]
) -> dict[str, str]:
    """The fields of each entry of a container (``attributes``: its log attributes, the
    labels and variables its options select, see boxd/_logattrs.py; ``tag`` among them
    is not one)."""
    fields = {field_name(k): v for k, v in attributes.items() if k != "tag"}
    return fields | {
        "CONTAINER_ID": cid[:12],
        "CONTAINER_ID_FULL": cid,
        "CONTAINER_NAME": name,
        "CONTAINER_TAG": tag,
        "IMAGE_NAME": image,
        "SYSLOG_IDENTIFIER": tag,
    }

"""The splunk log driver: a container's lines posted to a Splunk HTTP Event Collector, as
Docker's splunk driver posts them (moby's daemon/logger/splunk).

Each line an event (see boxd/_linesend.py), ``splunk-format`` ``inline`` (the default:
``{"event": {"line": LINE, "source": "stdout", "tag": TAG, "attrs": {...}}, "time":
"SECONDS.MICROS", "host": HOST, "source": ..., "sourcetype": ..., "index": ...}``),
``json`` (a line that is JSON goes as that JSON) or ``raw`` (the event the line after the
tag and the attributes, ``TAG k=v LINE``; blank lines left out), posted to
``splunk-url``'s ``/services/collector/event/1.0`` with ``Authorization: Splunk TOKEN``,
in batches as Docker's driver posts them: every 5 s or each 1,000 events, at most 10,000
kept while the collector does not take them (Docker's SPLUNK_LOGGING_DRIVER_* variables of
the daemon's environment change those three); a failed post is tried again at the next
turn.  Like Docker's, the driver never holds the container: the events go through a queue
that a task of the container's run drains, emptied at the container's end.  At the start
the collector is asked (an OPTIONS request) unless ``splunk-verify-connection=false``;
one that does not answer 200 fails the start.  ``splunk-gzip`` (with
``splunk-gzip-level``) compresses the posts, ``splunk-capath`` and ``splunk-caname`` are
the authority and the name HTTPS checks the collector against, or
``splunk-insecureskipverify`` none; ``splunk-index-acknowledgment`` adds the request
channel header acknowledging collectors want.

The posts go through httpx (a dependency of boxd's), in a worker thread: one a batch.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import socket
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import attrs
import httpx
import trio

from ._linesend import LineSender, Ring
from ._units import go_duration_ns, log_switch
from .protocol import STDERR

FORMATS = ("inline", "json", "raw")
EVENT_PATH = "/services/collector/event/1.0"
POST_FREQUENCY = 5.0  # seconds between posts: Docker's defaults, and their variables
BATCH_SIZE = 1000
BUFFER_MAX = 10 * BATCH_SIZE
_ENVIRONMENT = (
    "SPLUNK_LOGGING_DRIVER_POST_MESSAGES_FREQUENCY",
    "SPLUNK_LOGGING_DRIVER_POST_MESSAGES_BATCH_SIZE",
    "SPLUNK_LOGGING_DRIVER_BUFFER_MAX",
)
POST_TIMEOUT = 30.0  # Docker's batchSendTimeout
_RESPONSE_SHOWN = 1024  # bytes of a refusal's body said


@attrs.frozen
class Settings:
    """Where and how a container's events are posted (see :func:`settings`)."""

    url: str  # the collector's event endpoint
    token: str
    source: str = ""
    sourcetype: str = ""
    index: str = ""
    capath: str = ""
    caname: str = ""
    insecure: bool = False
    format: str = "inline"
    verify: bool = True
    gzip: bool = False
    gzip_level: int = -1
    index_ack: bool = False


def settings(options: Mapping[str, str]) -> Settings:
    """The driver's settings from a container's log options, checked as Docker's driver
    checks them when it starts (ValueError in its words, naming the value)."""
    for key in ("splunk-url", "splunk-token"):
        if key not in options:
            raise ValueError(f"splunk: {key} is expected")  # Docker's
    text = options["splunk-url"]
    parts = urllib.parse.urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(  # Docker's words, and the value
            f"splunk: expected format scheme://dns_name_or_ip:port for splunk-url ({text!r})"
        )
    form = options.get("splunk-format", "inline")
    if form not in FORMATS:
        raise ValueError(
            f"unknown format specified {form}, supported formats are inline, json and raw"
        )
    level_text = options.get("splunk-gzip-level", "-1")
    if not level_text.lstrip("-").isdigit() or not -1 <= int(level_text) <= 9:
        raise ValueError(
            f"not supported level '{level_text}' for splunk-gzip-level (supported values "
            "between -1 and 9)"
        )
    if "splunk-capath" in options and not os.path.isfile(options["splunk-capath"]):
        raise ValueError(
            f"invalid log option splunk-capath {options['splunk-capath']!r}: no such file"
        )
    return Settings(
        url=urllib.parse.urlunsplit((parts.scheme, parts.netloc, EVENT_PATH, "", "")),
        token=options["splunk-token"],
        source=options.get("splunk-source", ""),
        sourcetype=options.get("splunk-sourcetype", ""),
        index=options.get("splunk-index", ""),
        capath=options.get("splunk-capath", ""),
        caname=options.get("splunk-caname", ""),
        insecure=log_switch(options, "splunk-insecureskipverify", False),
        format=form,
        verify=log_switch(options, "splunk-verify-connection", True),
        gzip=log_switch(options, "splunk-gzip", False),
        gzip_level=int(level_text),
        index_ack=log_switch(options, "splunk-index-acknowledgment", False),
    )


def _tuning() -> tuple[float, int, int]:
    """(seconds between posts, events a post, events kept) from Docker's variables in the
    daemon's environment, their defaults where unset or unreadable."""
    frequency, batch, kept = POST_FREQUENCY, BATCH_SIZE, BUFFER_MAX
    raw = [os.environ.get(name, "") for name in _ENVIRONMENT]
    with contextlib.suppress(ValueError):  # (Docker's default, as Docker's driver keeps it)
        frequency = go_duration_ns(raw[0], "duration") / 1e9 if raw[0] else frequency
    batch = int(raw[1]) if raw[1].isdigit() and int(raw[1]) > 0 else batch
    kept = int(raw[2]) if raw[2].isdigit() and int(raw[2]) > 0 else kept
    return frequency, batch, kept


class Sender(LineSender):
    """One container's events, queued and posted in batches to its collector."""

    def __init__(
        self, config: Settings, tag: str | None, attributes: Mapping[str, str], what: str
    ) -> None:
        """``tag``: the events' (None: the ``tag`` option was given empty, as Docker's
        none); ``attributes``: the container's log attributes (boxd/_logattrs.py)."""
        super().__init__(what)
        self.config = config
        self.frequency, self.batch, kept = _tuning()
        self.ring = Ring(2**63, kept)
        self.connects_at_start = config.verify
        self.retries = 2**31  # a batch waits for the collector, the queue bounded
        self.retry_delay = self.frequency
        self._client: httpx.Client | None = None
        self._ending = False
        self._host = socket.gethostname()
        self._tag = tag
        self._attributes = {k: v for k, v in attributes.items() if k != "tag"}
        prefix = f"{tag} " if tag else ""
        self._prefix = prefix + "".join(f"{k}={v} " for k, v in self._attributes.items())

    def where(self) -> str:
        return self.config.url

    def connected(self) -> bool:
        return self._client is not None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    async def _connect(self) -> None:
        self._client = await trio.to_thread.run_sync(self._new_client, abandon_on_cancel=True)

    def _new_client(self) -> httpx.Client:
        """The collector's client (a worker thread's: it asks the collector at once, with
        ``splunk-verify-connection``)."""
        c = self.config
        verify: ssl.SSLContext | bool = True
        if c.insecure:
            verify = False
        elif c.capath:
            verify = ssl.create_default_context(cafile=c.capath)
        client = httpx.Client(verify=verify, timeout=POST_TIMEOUT)
        try:
            if c.verify:
                response = client.request("OPTIONS", c.url, extensions=self._extensions())
                _check(response, "failed to verify connection")
        except httpx.HTTPError as exc:
            client.close()
            raise OSError(f"splunk: {exc}") from None
        except BaseException:
            client.close()
            raise
        return client

    def _extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self.config.caname} if self.config.caname else {}

    def _message(self, stream: int, text: bytes, partial: bool) -> bytes:
        line = text.decode(errors="replace")  # as Go's JSON writes a string
        source = "stderr" if stream == STDERR else "stdout"
        event: Any
        if self.config.format == "raw":
            if not line.strip():
                return b""  # (Docker's raw format leaves blank lines out)
            event = self._prefix + line
        else:
            value: Any = line
            if self.config.format == "json":
                try:
                    value = json.loads(text)
                except ValueError:
                    value = line
            event = {"line": value, "source": source}
            if self._tag:
                event["tag"] = self._tag
            if self._attributes:
                event["attrs"] = self._attributes
        message = {"event": event, "time": f"{time.time_ns() / 1e9:.6f}", "host": self._host}
        for key in ("source", "sourcetype", "index"):
            if value := getattr(self.config, key):
                message[key] = value
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()

    async def drain(self) -> None:
        """Post the queue's events in batches: each :attr:`batch` of them, or what is
        there every :attr:`frequency` seconds (at once at the container's end)."""
        ring = self.ring
        assert ring is not None
        while True:
            while not ring.queue:
                await ring.changed.park()
            with trio.move_on_after(self.frequency):
                while len(ring.queue) < self.batch and not self._ending:
                    await ring.changed.park()
            count = min(len(ring.queue), self.batch)
            data = b"".join([ring.queue[i][0] for i in range(count)])
            if data:
                await self._deliver_trying(data)
            for _ in range(count):
                ring.taken()

    async def sent(self, stall: float, limit: float) -> None:
        self._ending = True  # what is queued goes now, without waiting for a batch
        if self.ring is not None:
            self.ring.changed.unpark_all()
        await super().sent(stall, limit)

    async def _deliver(self, data: bytes) -> None:
        client, c = self._client, self.config
        assert client is not None
        headers = {"Authorization": f"Splunk {c.token}"}
        if c.gzip:
            data = gzip.compress(data, 6 if c.gzip_level == -1 else c.gzip_level)
            headers["Content-Encoding"] = "gzip"
        if c.index_ack:
            headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())
        try:
            response = await trio.to_thread.run_sync(
                lambda: client.post(
                    c.url, content=data, headers=headers, extensions=self._extensions()
                ),
                abandon_on_cancel=True,  # (a post cut short by the end is dropped)
            )
        except httpx.HTTPError as exc:
            raise OSError(f"splunk: {exc}") from None
        _check(response, "failed to send event")


def _check(response: httpx.Response, what: str) -> None:
    """A collector's answer other than 200, in Docker's words (OSError)."""
    if response.status_code != 200:
        body = response.content[:_RESPONSE_SHOWN].decode(errors="replace")
        raise OSError(f"splunk: {what} - {response.status_code} {response.reason_phrase} - {body}")

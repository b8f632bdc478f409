"""The terminal side of attach and of a foreground run: one poll loop, no threads.

Output frames go to our stdout/stderr as they come; stdin is forwarded in bulk (whatever one
read returns, not a message per key) and so is its end (the daemon closes the container's
stdin where Docker's StdinOnce does: see boxd._server._stream).  Only a
local terminal in TTY mode is watched for the detach sequence (Ctrl-P Ctrl-Q by default),
which ends the attachment and leaves the container running: piped input is data, every byte
of it is sent, as Docker does.  A window size is sent at start and on every SIGWINCH; with
``sig_proxy``, signals sent to boxctl are forwarded to the container.

The socket is written without blocking: a container that stops reading its stdin while it
writes output (``cat`` of a large input) must not stall the reading of that output, or
client, daemon and container would wait on each other forever.
"""

from __future__ import annotations

# The C module under `signal`: the Python layer imports enum (~1.5 ms) for its Signals and
# Handlers classes, which this loop does not need.
import _signal as signal  # type: ignore[import-not-found]  # no stubs for the C module
import os
import select
import sys
import time

from boxd import protocol
from boxd._detachkeys import DetachMatcher

from ._client import Client, CliError, terminal_size

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable
    from typing import Any

# The signals forwarded to the container: all that can be caught, real-time ones too, as
# Docker's client forwards them (SIGTSTP of a Ctrl-Z in `run -i` reaches the container and
# does not stop boxctl), but those it leaves alone (SIGCHLD, SIGPIPE, SIGURG), SIGWINCH
# (a TTY's resize; nothing to a process without one), the faults of boxctl's own code and
# SIGTTIN and SIGTTOU: those stop a boxctl in the background that uses our terminal, and
# caught (Docker's client catches them) its read or write would be tried again forever.
PROXIED_SIGNALS = signal.valid_signals() - {
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGCHLD,
    signal.SIGPIPE,
    signal.SIGURG,
    signal.SIGWINCH,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
}
# Forwarded SIGINTs and SIGTERMs after which boxctl leaves, as Docker's client does: a
# process that ignores them (a PID 1 without a handler) must not hold the user's terminal.
LEAVE_AFTER = 3
# Signals that end boxctl when they are not forwarded: caught while our terminal is raw,
# so that it is restored before boxctl ends (their default action left it raw).  All those
# forwarded otherwise whose default action ends a process: SIGTERM and SIGHUP, and
# SIGQUIT, SIGUSR1 or a real-time signal sent by another program (as to a script).  Not
# SIGCONT and SIGTSTP, which end nothing; SIGINT is Python's KeyboardInterrupt, which
# restores the terminal as it unwinds.
ENDING_SIGNALS = PROXIED_SIGNALS - {signal.SIGCONT, signal.SIGTSTP}


class _Forced(Exception):
    """LEAVE_AFTER SIGINTs or SIGTERMs were forwarded: boxctl leaves, the container runs."""


class _Ended(Exception):
    """One of ENDING_SIGNALS arrived: boxctl ends once the terminal is restored."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raw_terminal(fd: int) -> Callable[[], None]:
    """Put the terminal in raw mode; the function that restores it."""
    import contextlib  # only a local terminal needs these
    import errno
    import termios
    import tty

    def retried(change: Callable[[], None]) -> None:
        """``change`` again while a signal interrupts it: the signals watched have handlers
        (Python's, without SA_RESTART), and termios does not retry.  A boxctl started in
        the background (``run -it ... &``) is stopped by SIGTTOU as it makes our terminal
        raw, and the SIGCONT of ``fg`` interrupted that: a traceback, the container left
        running.  A SIGWINCH while the restore waits for output to drain left it raw."""
        while True:
            try:
                change()
            except termios.error as exc:
                if exc.args[0] != errno.EINTR:
                    raise
            else:
                return

    saved = termios.tcgetattr(fd)
    # At once, not setraw's default TCSAFLUSH: that discards what the user typed while
    # boxctl started, which belongs to the container (Docker's client keeps it too).
    retried(lambda: tty.setraw(fd, termios.TCSANOW))

    def restore() -> None:
        # EIO: the terminal hung up, and nothing is left to restore.
        with contextlib.suppress(termios.error):
            retried(lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved))

    return restore


def _size_frame() -> bytes:
    """A ResizeFrame with our terminal's size (nothing if stdout is not a terminal)."""
    size = terminal_size()
    if size is None:
        return b""
    return protocol.encode({"type": "ResizeFrame", "rows": size[0], "cols": size[1]})


def _larger_size_frame() -> bytes:
    """A ResizeFrame one row and column larger than our terminal (nothing if stdout is not
    a terminal): sent before our size at attach, as Docker's client sends it.  A resize to
    the size the container's terminal already has signals nothing, so a shell attached to
    again showed a blank screen until a key was typed; two changes make a shell or a
    full-screen program draw its screen again at once."""
    size = terminal_size()
    if size is None:
        return b""
    return protocol.encode({"type": "ResizeFrame", "rows": size[0] + 1, "cols": size[1] + 1})


# Our output fds by the names of Docker's client's errors.
_OUTPUT_NAMES = {1: "stdout", 2: "stderr"}


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        raise  # the reader went away (`| head`): boxctl ends quietly
    except OSError as exc:
        # EIO: our terminal hung up (its window closed) and the container's last output
        # has nowhere to go.  Docker's client ends so, with its words and exit code 1.
        raise CliError(f"write /dev/{_OUTPUT_NAMES[fd]}: {exc.strerror}") from None


def stream(
    client: Client,
    *,
    stdin: bool,
    tty_mode: bool,
    detach_keys: bytes,
    sig_proxy: bool,
    outputs: tuple[int, ...] = (protocol.STDOUT, protocol.STDERR),
    redraw: bool = False,
) -> int | None:
    """Run the attachment; the container's exit code, or None when detached.  Output of
    the streams not in ``outputs`` is dropped (``run -a stdout``); ``redraw``: a TTY's
    programs are made to draw their screen again (``attach`` to a running container)."""
    in_fd = sys.stdin.fileno() if stdin else -1
    local_tty = tty_mode and stdin and os.isatty(in_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    watched: list[int] = []
    if tty_mode:
        watched.append(signal.SIGWINCH)
    if sig_proxy:
        watched.extend(PROXIED_SIGNALS)
    elif local_tty:  # those ignored (nohup) stay ignored
        watched.extend(s for s in ENDING_SIGNALS if signal.getsignal(s) == signal.SIG_DFL)
    old_handlers = {s: signal.signal(s, lambda *_: None) for s in watched}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    restore = None
    forced = False
    try:
        if local_tty:
            restore = _raw_terminal(in_fd)
        # The terminal's size goes out with the loop's other frames: a short-lived process
        # may have ended, and the daemon closed the connection, before it could be sent.
        first = later = b""
        if tty_mode:
            first = _size_frame()
            if redraw and first:
                first, later = _larger_size_frame(), first
        keys = detach_keys if local_tty else None
        return _loop(client, in_fd, wake_r, keys, outputs, first, later, sig_proxy)
    except _Ended as ended:
        ending = ended.signum
    except _Forced:
        forced = True
    finally:
        if restore is not None:
            restore()
        signal.set_wakeup_fd(old_wakeup)
        for s, h in old_handlers.items():
            signal.signal(s, h)
        os.close(wake_r)
        os.close(wake_w)
    if forced:
        import contextlib

        # Docker's words and exit code 1, on a line of their own after the ^C the terminal
        # echoed: the newline is written once ours is restored, to start the next line at
        # its left.
        with contextlib.suppress(OSError):  # EIO: stderr hung up
            os.write(sys.stderr.fileno(), b"\n")
        raise CliError(f"got {LEAVE_AFTER} SIGTERM/SIGINTs, forcefully exiting")
    return 128 + ending  # the shell's code of a process killed by it, as 130 for Ctrl-C


# Input read ahead of what the socket has taken: reading stdin pauses above this.
MAX_PENDING = 1 << 20
# One read of the socket: the daemon sends output in frames of up to 1 MiB.
RECEIVE_SIZE = 1 << 20
# Seconds a terminal stays at the larger size of a redraw when nothing is drawn at it.
REDRAW_WAIT = 1.0


class _Incoming:
    """What the daemon sends, read into one buffer: the bytes of an output frame are written
    to their fd straight from it, even before the frame is whole, so output is copied once
    (socket to buffer) on its way out; messages are decoded as :mod:`boxd.protocol` does."""

    def __init__(self, received: bytes, out_fds: dict[int, int]) -> None:
        self.buf = bytearray(max(RECEIVE_SIZE, len(received)))
        self.view = memoryview(self.buf)
        self.view[: len(received)] = received
        self.start = 0  # unparsed bytes: buf[start:end]
        self.end = len(received)
        self.out_fds = out_fds
        self.left = 0  # bytes still to come of the output frame being written
        self.fd = -1  # where they go (-1: dropped)
        self.direct = 0  # bytes of it received at the front of the buffer, not yet written

    def receive(self, sock: _socket.socket) -> None:
        """Read what the socket has (ConnectionResetError at its end); :meth:`parse` then
        handles it."""
        if self.left:  # the rest of an output frame: at the front, all of it output
            self.start = self.end = 0
            got = sock.recv_into(self.view[: min(self.left, len(self.buf))])
            self.direct = got
        else:
            if self.start:  # keep the unparsed rest at the front
                rest = self.end - self.start
                self.view[:rest] = self.view[self.start : self.end]
                self.start, self.end = 0, rest
            got = sock.recv_into(self.view[self.end :])
            self.end += got
        if not got:
            raise ConnectionResetError

    def parse(self) -> list[dict[str, Any]]:
        """Write the output received, as far as it came; the messages of the whole frames
        buffered."""
        if self.direct:
            self.left -= self.direct
            if self.fd >= 0:
                _write_all(self.fd, self.view[: self.direct])
            self.direct = 0
            return []
        messages = []
        header = protocol.HEADER_SIZE
        while self.end - self.start > header:
            length = protocol.length_at(self.buf, self.start)
            if not length or length > protocol.MAX_FRAME:
                raise protocol.ProtocolError(f"invalid frame length {length}")
            kind = self.buf[self.start + header]
            if kind in protocol.STREAMS:
                first = self.start + header + 1
                whole = first + length - 1
                fd = self.out_fds.get(kind, -1)
                if fd >= 0:
                    _write_all(fd, self.view[first : min(whole, self.end)])
                if whole > self.end:
                    self.left, self.fd = whole - self.end, fd
                    self.start = self.end = 0
                    break
                self.start = whole
                continue
            whole = self.start + header + length
            if whole > self.end:
                if whole - self.start > len(self.buf):  # a message larger than the buffer
                    grown = bytearray(whole - self.start)
                    grown[: self.end - self.start] = self.view[self.start : self.end]
                    self.buf, self.view = grown, memoryview(grown)
                    self.start, self.end = 0, self.end - self.start
                break
            message = protocol.decode_payload(bytes(self.view[self.start + header : whole]))
            assert isinstance(message, dict)  # byte frames were handled above
            messages.append(message)
            self.start = whole
        return messages


def _loop(
    client: Client,
    in_fd: int,
    wake_r: int,
    detach_keys: bytes | None,
    outputs: tuple[int, ...],
    first: bytes,
    later: bytes,
    forwarding: bool,
) -> int | None:
    """``first`` goes to the daemon at once; ``later`` (our size after the larger one of a
    redraw) once the daemon sends something, the program's screen drawn at the larger size
    (readline draws again only if the size it reads changed: both resizes at once would
    look like none), or after REDRAW_WAIT.  ``forwarding``: the signals caught go to the
    container; otherwise one of ENDING_SIGNALS ends the loop (_Ended)."""
    later_at = time.monotonic() + REDRAW_WAIT
    matcher = DetachMatcher(detach_keys) if detach_keys else None
    sock = client.sock
    sock_fd = sock.fileno()
    sock.setblocking(False)
    pending = bytearray(first)  # frames for the daemon, in order
    detached = False
    interrupts = 0  # SIGINTs and SIGTERMs forwarded
    reading = in_fd >= 0
    polled_in = False
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    out_fds = {
        s: fd for s, fd in ((1, sys.stdout.fileno()), (2, sys.stderr.fileno())) if s in outputs
    }
    incoming = _Incoming(client.decoder.take(), out_fds)
    # The read that brought the response may have brought the frames after it too, up to
    # the ExitFrame of a short-lived process: they are handled before the socket is polled,
    # which would otherwise wait for bytes that never come.
    messages = incoming.parse()
    try:
        while True:
            for message in messages:
                if message["type"] == "ExitFrame":
                    return int(message["exit_code"])
                if message["type"] == "ErrorResponse":
                    raise CliError(str(message.get("message")))
            messages = []
            if detached and not pending:
                if interrupts >= LEAVE_AFTER:
                    raise _Forced
                return None
            poller.register(sock_fd, select.POLLIN | (select.POLLOUT if pending else 0))
            # Stdin waits while the daemon has not taken what was read before.
            if polled_in != (reading and len(pending) < MAX_PENDING):
                polled_in = not polled_in
                if polled_in:
                    poller.register(in_fd, select.POLLIN)
                else:
                    poller.unregister(in_fd)
            timeout = None
            if later:
                timeout = max(0.0, later_at - time.monotonic()) * 1000
                if not timeout:
                    pending += later
                    later = b""
                    continue
            for fd, events in poller.poll(timeout):
                if fd == wake_r:
                    for signum in os.read(wake_r, 64):
                        if signum == signal.SIGWINCH:
                            pending += _size_frame()
                        elif not forwarding:
                            raise _Ended(signum)
                        elif signum in PROXIED_SIGNALS:
                            # By number: the daemon's host is ours, and not every one has a
                            # name (SIGRTMIN+3).
                            frame = {"type": "SignalFrame", "signal": str(signum)}
                            pending += protocol.encode(frame)
                            if signum in (signal.SIGINT, signal.SIGTERM):
                                interrupts += 1
                            if interrupts == LEAVE_AFTER and not detached:
                                # The container runs on, as after the detach keys.
                                pending += protocol.encode({"type": "DetachFrame"})
                                reading = False
                                detached = True
                elif fd == in_fd:
                    data = os.read(in_fd, 65536)
                    if not data:
                        pending += protocol.encode_bytes(protocol.STDIN, b"")
                        reading = False
                        continue
                    detach = False
                    if matcher is not None:
                        data, detach = matcher.feed(data)
                    if data:
                        pending += protocol.encode_bytes(protocol.STDIN, data)
                    if detach:
                        pending += protocol.encode({"type": "DetachFrame"})
                        reading = False
                        detached = True
                elif fd == sock_fd:
                    if events & select.POLLOUT:
                        try:
                            del pending[: sock.send(pending)]
                        except OSError:  # EPIPE, ECONNRESET
                            # The daemon stopped reading: the process ended (the ExitFrame
                            # is still to be read) or the daemon went away (end of stream).
                            pending.clear()
                            reading = False
                    if events & ~select.POLLOUT:  # readable, hung up or failed
                        try:
                            incoming.receive(sock)
                        except OSError:  # ECONNRESET, end of stream before an ExitFrame
                            raise CliError("the daemon closed the connection") from None
                        messages = incoming.parse()
                        pending += later
                        later = b""
    finally:
        sock.setblocking(True)

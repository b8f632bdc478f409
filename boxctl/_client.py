"""A blocking client of the boxd socket (no Trio: the CLI must start fast)."""

from __future__ import annotations

# The C module under `socket`: the Python layer's import costs ~3 ms (enum, selectors), a
# tenth of a `boxctl ps`, and adds nothing a blocking Unix-socket client needs.
import _socket
import os
import sys

from boxd import _wirejson, protocol

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing costs ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/run/boxd/boxd.sock"

# What a failed request makes `boxctl` exit with (Docker's conventions).
EXIT_CODES = {"exec_not_found": 127, "exec_denied": 126}
USAGE = 125  # a bad option or value, refused before anything is done (Docker's code)
OPERANDS = 1  # too few or too many arguments: the docker CLI's "requires N argument(s)" code


class CliError(Exception):
    """One line for stderr, and the exit code; ``kind``: the daemon's ErrorResponse kind
    (``not_found``, ``conflict``, ...), empty for the client's own errors."""

    def __init__(self, message: str, code: int = 1, kind: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind


def socket_path(explicit: str | None) -> str:
    return explicit or os.environ.get("BOXD_SOCKET") or DEFAULT_SOCKET


class Client:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except PermissionError:
            self.sock.close()
            raise CliError(_denied(path)) from None
        except OSError as exc:
            self.sock.close()
            raise CliError(
                f"cannot connect to boxd at {path}: is the daemon running? ({exc.strerror})"
            ) from None
        self.decoder = protocol.FrameDecoder()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(protocol.encode(message))

    def send_bytes(self, stream: int, data: bytes) -> None:
        self.sock.sendall(protocol.encode_bytes(stream, data))

    def receive(self) -> protocol.Frame:
        while True:
            frame = self.decoder.next()
            if frame is not None:
                return frame
            data = self.sock.recv(65536)
            if not data:
                raise CliError("the daemon closed the connection")
            self.decoder.feed(data)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request; its response, or CliError for an ErrorResponse."""
        self.send(message)
        return self.response()

    def response(self) -> dict[str, Any]:
        """The response to the request sent, or CliError for an ErrorResponse."""
        response = self.receive()
        if not isinstance(response, dict):
            raise CliError("the daemon sent bytes where a response was expected")
        check(response)
        return response


def _denied(path: str) -> str:
    """Permission denied on the socket: who may use it, and how this user becomes one."""
    import grp  # only this error needs them
    import pwd

    try:
        st = os.stat(path)
    except OSError:
        return (
            f"permission denied: this user may not reach {path} (a directory on the way is closed)"
        )
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    if st.st_gid == 0:
        return (
            f"permission denied on {path}: the socket is there, but only root may use it; "
            "run as root, or create the group boxd (groupadd boxd), restart boxd (the socket "
            f"then belongs to that group) and add this user to it (usermod -aG boxd {user})"
        )
    return (
        f"permission denied on {path}: the socket is there, but only root and the group "
        f"{group} may use it; add this user to it (usermod -aG {group} {user}), then log in again"
    )


# The daemon's words for what is not there, which Docker's start with a capital: "No such
# container: web", as its client prints them.
NOT_THERE = tuple(f"no such {what}" for what in ("container", "image", "volume", "network"))


def check(response: dict[str, Any]) -> None:
    if response.get("type") == "ErrorResponse":
        kind = response.get("kind", "")
        message = str(response.get("message"))
        if message.startswith(NOT_THERE):
            message = "N" + message[1:]
        raise CliError(message, EXIT_CODES.get(kind, 125 if kind == "failed" else 1), kind)


def terminal_size() -> tuple[int, int] | None:
    """Our terminal's (rows, columns); None if stdout is not a terminal, or one without a
    size (0x0: a pty no one sized, as ``script`` makes without a terminal of its own),
    which given to a container's terminal would leave its programs no columns at all."""
    try:
        cols, rows = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None
    return (rows, cols) if min(rows, cols) > 0 else None


def print_json(value: object) -> None:
    """``value`` as indented JSON on stdout (``inspect``, ``--format json``), as the docker
    CLI prints inspect's: four spaces, text as it is (UTF-8, not ``\\u`` escapes)."""
    print(_wirejson.indented(value))  # not json's: it imports re and enum, ~5 ms


def call(path: str, message: dict[str, Any]) -> dict[str, Any]:
    with Client(path) as client:
        return client.request(message)

"""Where the server listens, and how long a client may take to ask.

The socket is bound before the app starts, so a bad --host or --port is one line rather than
uvicorn's traceback or log record. A connection must deliver each whole request (head and body)
within a deadline: uvicorn's own keep-alive timer runs only between requests, so a client that
sent half a request line would otherwise hold its connection for ever."""

import errno
import ipaddress
import socket

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tuneforge.errors import TuneforgeError

REQUEST_SECONDS = 10.0
"""Time a client has to send a whole request, from its first byte (or from connecting)."""
KEEP_ALIVE_SECONDS = 5
"""How long an idle connection is kept open after a response."""
MAX_HEAD_BYTES = 16 * 1024
"""Largest request line plus headers (h11's limit; a larger head gets 400)."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (port 0: a free one), or TuneforgeError naming the flag."""
    if not 0 <= port <= 65535:
        raise TuneforgeError(f"--port {port}: choose a port from 1 to 65535 (or 0 for any free port)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise TuneforgeError(f"--host {host}: cannot resolve it to an address ({e.strerror})") from None
    # IPv4 first, as uvicorn does: "localhost" often resolves to ::1 first, which 127.0.0.1 clients miss.
    family, kind, proto, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise TuneforgeError(_bind_failed(host, port, e)) from None
    return sock


def _bind_failed(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"--port {port}: {host}:{port} is already in use; stop the program using it or choose another --port"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine ({error.strerror}); try 127.0.0.1 or 0.0.0.0"
    return f"--host {host} --port {port}: cannot listen there ({error.strerror})"


def is_loopback(sock: socket.socket) -> bool:
    """Whether `sock` is bound to a loopback address (reachable from this machine only)."""
    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request is not all in after `request_seconds`.

    uvicorn takes its HTTP protocol as a class (`uvicorn.Config(http=...)`), so overriding three of
    its connection events is the one way in; the parsing and the app cycle stay uvicorn's."""

    def __init__(self, *args, request_seconds: float = REQUEST_SECONDS, **kwargs):
        super().__init__(*args, **kwargs)
        self.request_seconds = request_seconds
        self.deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_deadline()

    def data_received(self, data: bytes) -> None:
        if self.deadline is None and self.conn.their_state is h11.IDLE:  # the first byte of a next request
            self._start_deadline()
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # all in, or the connection is over
            self._stop_deadline()

    def connection_lost(self, exc) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self.deadline = self.loop.call_later(self.request_seconds, self._too_slow)

    def _stop_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()

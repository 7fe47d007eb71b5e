"""The emulator's HTTP/1.1 server: keep-alive, TCP_NODELAY, counted connections, prompt stop.

It knows nothing of Google: every request goes to one ``handle`` callable as a
:class:`Request`, which answers with a :class:`Response`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["JSON", "LoopbackHTTPServer", "Request", "RequestHandler", "Response"]

_log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
_MAX_BODY = 1 << 20


@dataclass
class Response:
    """What to answer; ``Content-Length`` is always set from ``body``."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the Google services see it."""

    method: str
    path: str
    """Path without the query string (``/`` if empty)."""
    query: dict[str, str]
    """Query parameters; the last value wins."""
    headers: Message
    body: bytes
    connection: int
    """1-based accept order of the TCP connection it arrived on."""

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` header, ``""`` if absent."""
        return str(self.headers.get("Content-Type", ""))


_ports_taken: set[tuple[str, int]] = set()
_ports_lock = threading.Lock()


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A thread per connection on ``host`` (a loopback address), ephemeral port.

    Every request goes to ``handle``, which returns ``None`` to drop the
    connection unanswered (a hang that ended with ``stopping``).

    No two servers in one process get the same port, even one after the other:
    an emulator's URLs (``token_uri``, the metadata host) are part of what
    identifies the credentials that use them, so each emulator is a different
    Google and no token cached against one can be served for another.
    """

    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads
    request_queue_size = 128

    def __init__(
        self,
        handle: Callable[[Request], Response | None],
        on_connection: Callable[[], int],
        stopping: threading.Event,
        host: str = "127.0.0.1",
    ) -> None:
        self.handle = handle
        self._on_connection = on_connection
        self._stopping = stopping
        self._sockets: dict[socket.socket, int] = {}
        self._sockets_lock = threading.Lock()
        # An IPv6 literal needs an AF_INET6 socket (bind_and_activate reads the class's).
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), RequestHandler)

    def server_bind(self) -> None:
        host = self.server_address[0]
        while True:
            super().server_bind()
            taken = (str(host), int(self.server_address[1]))
            with _ports_lock:
                if taken not in _ports_taken:
                    _ports_taken.add(taken)
                    return
            self.socket.close()
            self.socket = socket.socket(self.address_family, self.socket_type)
            self.server_address = (host, 0)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        # Small responses must not wait for the client's delayed ACK (Nagle).
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        number = self._on_connection()
        with self._sockets_lock:
            self._sockets[request] = number
        super().process_request(request, client_address)

    def connection_number(self, request: Any) -> int:
        """1-based accept order of the connection ``request`` arrived on."""
        with self._sockets_lock:
            return self._sockets.get(request, 0)

    def shutdown_request(self, request: Any) -> None:
        with self._sockets_lock:
            self._sockets.pop(request, None)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._sockets_lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self._stopping.is_set():
            _log.debug("emulator connection error", exc_info=True)


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; reads the body (length or chunked, 1 MiB at most)."""

    protocol_version = "HTTP/1.1"
    server_version = "GoogleEmulator/1"
    sys_version = ""
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > _MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(Response(413, b"request body too large", "text/plain"))
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path or "/",
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers=self.headers,
            body=body,
            connection=self.server.connection_number(self.request),
        )
        response = self.server.handle(request)
        if response is None:
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

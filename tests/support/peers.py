"""Hostile loopback peers: servers that misbehave where the emulator cannot.

The GoogleEmulator answers like Google (plus canned faults); these misbehave at
the TCP/HTTP level: accept and never answer, drip bytes, stream without end,
redirect elsewhere, fill their accept queue so that connecting hangs.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest


class LoopbackServer:
    """A TCP server on 127.0.0.1 whose every connection is handled by ``serve(sock)``."""

    def __init__(
        self, serve: Callable[[socket.socket], None], *, host: str = "127.0.0.1", backlog: int = 64
    ) -> None:
        self._serve = serve
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(backlog)
        self._listener.settimeout(0.05)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self.requests: list[bytes] = []
        self.arrivals: list[float] = []
        """``time.monotonic()`` when each of :attr:`requests` had been read."""
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._accept, name=f"hostile:{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            clients = list(self._clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        self._listener.close()

    def stopped(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True once the server is stopping."""
        return self._stop.wait(seconds)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(sock)
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._serve(sock)

    def read_request(self, sock: socket.socket) -> bytes | None:
        """One HTTP/1.1 request (head and Content-Length body), recorded."""
        sock.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        request = head + b"\r\n\r\n" + body
        with self._lock:
            self.requests.append(request)
            self.arrivals.append(time.monotonic())
        return request


def hanging_server() -> LoopbackServer:
    """Accepts, reads the request, never answers."""

    def serve(sock: socket.socket) -> None:
        server.read_request(sock)
        server.stopped(3600)

    server = LoopbackServer(serve)
    return server


def dripping_server(*, interval: float = 0.2, headers_first: bool = True) -> LoopbackServer:
    """Answers one byte every ``interval``: the body (``headers_first``) or the whole response."""
    body = json.dumps({"access_token": "ya29.drip", "expires_in": 3600}).encode() + b" " * 4096
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )

    def serve(sock: socket.socket) -> None:
        if server.read_request(sock) is None:
            return
        payload = head + body
        if headers_first:
            sock.sendall(head)
            payload = body
        for i in range(len(payload)):
            sock.sendall(payload[i : i + 1])
            if server.stopped(interval):
                return

    server = LoopbackServer(serve)
    return server


def endless_server(
    *, content_type: str = "application/json", chunked: bool = True
) -> LoopbackServer:
    """200 with a body that never ends (chunked, or no length and no close)."""

    def serve(sock: socket.socket) -> None:
        if server.read_request(sock) is None:
            return
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n"
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type.encode()
            + b"\r\n"
            + framing
            + b"\r\n"
        )
        block = b"[" * 65536
        chunk = (f"{len(block):x}\r\n".encode() + block + b"\r\n") if chunked else block
        sent = 0
        while not server._stop.is_set() and sent < 512 * 1024 * 1024:
            sock.sendall(chunk)
            sent += len(block)

    server = LoopbackServer(serve)
    return server


def canned_server(response: bytes | Callable[[bytes], bytes]) -> LoopbackServer:
    """Answers every request with the same raw bytes (or ``response(request)``), keep-alive."""

    def serve(sock: socket.socket) -> None:
        while True:
            request = server.read_request(sock)
            if request is None:
                return
            sock.sendall(response(request) if callable(response) else response)

    server = LoopbackServer(serve)
    return server


def http_response(status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A raw HTTP/1.1 response with ``Content-Length``."""
    lines = [
        f"HTTP/1.1 {status} X",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def unconnectable_port() -> Iterator[str]:
    """``127.0.0.1:PORT`` whose accept queue is full: a TCP connect to it hangs (SYNs dropped).

    Linux drops SYNs to a listener whose accept queue is full, so the client
    keeps retransmitting and ``connect`` blocks, as with a firewalled host.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):  # backlog 0 still admits one or two; fill it
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                s.connect(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        for s in fillers:
            s.close()
        listener.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6_loopback = pytest.mark.skipif(
    not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1) to bind"
)
"""Skip (saying why) where ``::1`` cannot be bound, e.g. IPv6 disabled in the kernel."""

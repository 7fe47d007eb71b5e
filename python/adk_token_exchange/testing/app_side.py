"""What the application behind a gate sees: MCP sessions opened, its own ``Authorization``.

Two ASGI middlewares the protected servers put between their gate and the app:

- :class:`McpSessionLog` counts MCP ``initialize`` requests (one per MCP
  session a client opens) and the ``mcp-session-id`` values the server hands
  out, so a test can say "one session across three token lifetimes";
- :class:`AppAuthorization` is an application that does its own auth with
  ``Authorization`` (MCP authorization, say) behind Cloud Run's or IAP's check:
  it requires its own bearer token and records the headers it received.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AppAuthorization", "AppRequest", "McpSessionLog"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]

_MAX_BODY = 1024 * 1024


async def _read_body(receive: _Receive) -> tuple[bytes, list[_Message]]:
    """The whole request body, and the messages to replay to the app."""
    messages: list[_Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body") or len(body) > _MAX_BODY:
            break
    return body, messages


def _replay(messages: list[_Message], receive: _Receive) -> _Receive:
    pending = list(messages)

    async def replayed() -> _Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _initializes(body: bytes) -> int:
    try:
        parsed = json.loads(body)
    except ValueError:
        return 0
    batch = parsed if isinstance(parsed, list) else [parsed]
    return sum(1 for m in batch if isinstance(m, dict) and m.get("method") == "initialize")


class McpSessionLog:
    """Counts the MCP sessions clients open at an MCP app; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._initializations = 0
        self._session_ids: list[str] = []

    @property
    def initializations(self) -> int:
        """``initialize`` requests received: one per MCP session a client opened."""
        with self._lock:
            return self._initializations

    @property
    def session_ids(self) -> list[str]:
        """``mcp-session-id`` values handed out (stateful servers only), in order."""
        with self._lock:
            return list(self._session_ids)

    def reset(self) -> None:
        """Forget the counts."""
        with self._lock:
            self._initializations = 0
            self._session_ids.clear()

    def wrap(self, app: _ASGIApp) -> _ASGIApp:
        """``app`` with every ``initialize`` and new session id counted here."""

        async def counted(scope: _Scope, receive: _Receive, send: _Send) -> None:
            if scope["type"] != "http" or scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            body, messages = await _read_body(receive)
            found = _initializes(body)
            if found:
                with self._lock:
                    self._initializations += found

            async def sending(message: _Message) -> None:
                if message.get("type") == "http.response.start" and found:
                    for name, value in message.get("headers", []):
                        if name.lower() == b"mcp-session-id":
                            with self._lock:
                                self._session_ids.append(value.decode("latin-1"))
                await send(message)

            await app(scope, _replay(messages, receive), sending)

        return counted


@dataclass(frozen=True)
class AppRequest:
    """The auth headers one request carried when it reached the app (after the gate)."""

    authorization: str | None
    serverless_authorization: str | None
    proxy_authorization: str | None


class AppAuthorization:
    """An app that checks its own ``Authorization: Bearer <token>`` behind the gate.

    Args:
        token: The bearer token the app accepts (its own OAuth, an API key...);
            ``None`` accepts any request and only records.
    """

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._lock = threading.Lock()
        self._seen: list[AppRequest] = []
        self.refused = 0

    @property
    def requests(self) -> list[AppRequest]:
        """What each request that reached the app carried, in order."""
        with self._lock:
            return list(self._seen)

    def wrap(self, app: _ASGIApp) -> _ASGIApp:
        """``app`` behind this check."""

        async def checked(scope: _Scope, receive: _Receive, send: _Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
            seen = AppRequest(
                headers.get(b"authorization"),
                headers.get(b"x-serverless-authorization"),
                headers.get(b"proxy-authorization"),
            )
            with self._lock:
                self._seen.append(seen)
            if self.token is None or seen.authorization == f"Bearer {self.token}":
                await app(scope, receive, send)
                return
            with self._lock:
                self.refused += 1
            body = b"the application's own Authorization is missing or wrong"
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="app"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        return checked

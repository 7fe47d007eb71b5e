"""Services protected by ``adk_token_exchange.server``, served on loopback for the tests.

Unlike :mod:`adk_token_exchange.testing.protected` (which checks tokens with
PyJWT, as Cloud Run would), these use the package's own verifier: they are
what a user of the server side builds. The app is made once the port is
bound, since a verifier's audience is the service's URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from adk_token_exchange.server import (
    CLAIMS_STATE_KEY,
    GoogleAuthMiddleware,
    GoogleTokenVerifier,
    McpTokenVerifier,
)
from adk_token_exchange.testing._mcp_compat import CALLER_STATE_KEY, build_mcp_app

__all__ = ["Served", "StatusLog", "mcp_app_behind_middleware", "mcp_app_with_verifier", "serve"]

ASGIApp = Callable[[dict[str, Any], Any, Any], Any]


class StatusLog:
    """ASGI wrapper that records the status of every HTTP response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def recording(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(message["status"])
            await send(message)

        await self.app(scope, receive, recording if scope["type"] == "http" else send)


@dataclass(frozen=True)
class Served:
    """A running service: its origin (``http://127.0.0.1:PORT``)."""

    origin: str


@contextlib.contextmanager
def serve(make_app: Callable[[str], Any]) -> Iterator[Served]:
    """Serve ``make_app(origin)`` with uvicorn on 127.0.0.1 (ephemeral port) until exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        make_app(origin), lifespan="on", log_config=None, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the service at {origin} did not start")
        time.sleep(0.005)
    try:
        yield Served(origin)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def mcp_app_with_verifier(verifier: McpTokenVerifier, resource_url: str) -> Any:
    """An MCP server (streamable HTTP at ``/mcp``) that takes callers through the mcp
    SDK's own auth settings and ``verifier``; its ``greet`` tool names the caller.

    mcp 2.x ``MCPServer`` or 1.x ``FastMCP``, whichever is installed.
    """
    from mcp.server.auth.middleware.auth_context import get_access_token

    def greet(name: str) -> str:
        """Greets someone by name, and says who asked."""
        caller = get_access_token()
        return f"Hello, {name}! (called by {caller.client_id if caller else 'nobody'})"

    auth = verifier.auth_settings(resource_url)
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError:
        from mcp.server.fastmcp import FastMCP

        legacy = FastMCP(
            "verified",
            token_verifier=verifier,
            auth=auth,
            stateless_http=True,
            json_response=True,
            host="127.0.0.1",
            log_level="WARNING",
        )
        legacy.tool()(greet)
        return legacy.streamable_http_app()
    modern = MCPServer("verified", token_verifier=verifier, auth=auth, log_level="WARNING")
    modern.tool()(greet)
    return modern.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")


def mcp_app_behind_middleware(verifier: GoogleTokenVerifier) -> Any:
    """The testing MCP app (``whoami``, ``greet``) behind :class:`GoogleAuthMiddleware`:
    the way for any ASGI server, and the only one behind Cloud Run's trusted front."""
    inner = build_mcp_app("behind-middleware", stateless=True, json_response=True)

    async def caller_from_claims(scope: dict[str, Any], receive: Any, send: Any) -> None:
        state = scope.get("state") or {}
        claims = state.get(CLAIMS_STATE_KEY)
        if claims is not None:
            scope = {**scope, "state": {**state, CALLER_STATE_KEY: claims.get("email")}}
        await inner(scope, receive, send)

    return GoogleAuthMiddleware(caller_from_claims, verifier)

"""The MCP SDK differences between mcp 1.x (``FastMCP``) and 2.x (``MCPServer``), in one place."""

# No ``from __future__ import annotations`` here: the SDKs find a tool's
# Context parameter from its evaluated annotation.

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any

__all__ = ["CALLER_STATE_KEY", "build_mcp_app", "open_mcp_session"]

CALLER_STATE_KEY = "adk_token_exchange.caller"
"""Key in the ASGI ``scope["state"]`` where the auth gate leaves the verified caller."""


def _server_classes() -> tuple[Any, Any]:
    """``(server class, Context class)`` of the installed SDK."""
    try:  # mcp 2.x; try it first, a stale 1.x path might still exist
        module = importlib.import_module("mcp.server.mcpserver")
        return module.MCPServer, module.Context
    except ImportError:
        module = importlib.import_module("mcp.server.fastmcp")
        return module.FastMCP, module.Context


def _caller(ctx: Any) -> str:
    request = ctx.request_context.request
    if request is None:
        return "anonymous"
    state = request.scope.get("state") or {}
    return str(state.get(CALLER_STATE_KEY, "anonymous"))


def build_mcp_app(name: str, *, stateless: bool, json_response: bool) -> Any:
    """A Starlette app serving MCP over streamable HTTP at ``/mcp`` with
    ``whoami`` and ``greet`` tools that report the verified caller."""
    server_cls, context_cls = _server_classes()

    def whoami(ctx: context_cls) -> str:  # type: ignore[valid-type]
        """Returns the email of the verified caller (the ID token's principal)."""
        return _caller(ctx)

    def greet(name: str, ctx: context_cls) -> str:  # type: ignore[valid-type]
        """Greets someone by name, and says who asked."""
        return f"Hello, {name}! (called by {_caller(ctx)})"

    tools: list[Callable[..., str]] = [whoami, greet]
    if server_cls.__name__ == "FastMCP":  # mcp 1.x: transport settings on the server
        server = server_cls(
            name,
            stateless_http=stateless,
            json_response=json_response,
            host="127.0.0.1",
            log_level="WARNING",
        )
        for tool in tools:
            server.tool()(tool)
        return server.streamable_http_app()
    server = server_cls(name, log_level="WARNING")
    for tool in tools:
        server.tool()(tool)
    return server.streamable_http_app(
        stateless_http=stateless, json_response=json_response, host="127.0.0.1"
    )


@contextlib.asynccontextmanager
async def open_mcp_session(
    url: str, *, token: str | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[Any]:
    """An initialized ``mcp.ClientSession`` over streamable HTTP (mcp 1.x or 2.x).

    Args:
        url: The MCP endpoint, e.g. ``ProtectedMcpServer.url``.
        token: Sent as ``Authorization: Bearer <token>``.
        headers: Any other request headers.
    """
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    # mcp 1.x builds an httpx client, 2.x an httpx2 one: let the SDK pick.
    http_client = create_mcp_http_client(headers=all_headers)
    async with (
        http_client,
        streamable_http_client(url, http_client=http_client) as streams,
        # 1.x yields (read, write, get_session_id), 2.x (read, write).
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session

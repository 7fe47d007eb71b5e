"""The server side: check that a request comes from whom it says, with a token Google signed.

The services an ADK agent calls (MCP servers, A2A agents, OpenAPI services on
Cloud Run, GKE or VMs) often must check the caller themselves. This module
does it with the package's Rust core: signature, algorithm, key id,
audience, issuer, times and, optionally, an allow-list of callers; Google's
keys cached per ``Cache-Control`` and refreshed ahead, fetched off the event
loop; a token checked once per process and then remembered by its digest.

- :class:`IdTokenVerifier`: Google-signed OIDC ID tokens (RS256), what
  Cloud Run, Pub/Sub push, Cloud Tasks and
  :func:`adk_token_exchange.id_token_credential` send;
- :class:`IapVerifier`: IAP's ``x-goog-iap-jwt-assertion`` (ES256);
- :class:`GoogleAuthMiddleware`: ASGI middleware (Starlette, FastAPI, MCP
  apps), 401/403/503 per RFC 6750, the claims in ``request.state``;
- :class:`McpTokenVerifier`: the mcp SDK's ``TokenVerifier``, for
  ``FastMCP`` (mcp 1.x) and ``MCPServer`` (mcp 2.x) auth settings.

Example::

    from adk_token_exchange.server import IdTokenVerifier

    verifier = IdTokenVerifier(
        "https://svc-xyz.a.run.app", emails=["agent@p.iam.gserviceaccount.com"]
    )
    claims = await verifier.verify_async(token)   # or verifier.verify(token)

Importing this module imports neither ADK nor the mcp SDK nor Starlette.
See ``docs/server.md``.
"""

from __future__ import annotations

from ..errors import InvalidTokenError
from ._asgi import CLAIMS_STATE_KEY, GoogleAuthMiddleware
from ._mcp import GOOGLE_ISSUER, McpTokenVerifier
from ._verifiers import (
    AUTHORIZATION,
    IAP_ASSERTION,
    SERVERLESS_AUTHORIZATION,
    GoogleTokenVerifier,
    IapVerifier,
    IdTokenVerifier,
)

__all__ = [
    "AUTHORIZATION",
    "CLAIMS_STATE_KEY",
    "GOOGLE_ISSUER",
    "IAP_ASSERTION",
    "SERVERLESS_AUTHORIZATION",
    "GoogleAuthMiddleware",
    "GoogleTokenVerifier",
    "IapVerifier",
    "IdTokenVerifier",
    "InvalidTokenError",
    "McpTokenVerifier",
]

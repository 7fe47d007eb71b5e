"""The mcp SDK's ``TokenVerifier`` over a Google verifier (mcp 1.x ``FastMCP``, 2.x ``MCPServer``).

The SDK's bearer backend reads ``Authorization: Bearer`` and asks a
``TokenVerifier`` for an ``AccessToken`` (``mcp.server.auth.provider``); both
majors define the same protocol and model. ``mcp`` is imported only when a
token is verified or settings are built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, InvalidTokenError
from ._verifiers import GoogleTokenVerifier, IdTokenVerifier

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken
    from mcp.server.auth.settings import AuthSettings

__all__ = ["GOOGLE_ISSUER", "McpTokenVerifier"]

_log = logging.getLogger("adk_token_exchange.server")

GOOGLE_ISSUER = "https://accounts.google.com"
"""Who issues the tokens: ``AuthSettings.issuer_url``."""

_access_token_class: type[AccessToken] | None = None


def _google_access_token() -> type[AccessToken]:
    """mcp's ``AccessToken`` with the token text kept out of its ``repr``."""
    global _access_token_class
    if _access_token_class is None:
        from mcp.server.auth.provider import AccessToken
        from pydantic import Field

        class GoogleAccessToken(AccessToken):
            """A verified Google ID token, as the mcp SDK wants it."""

            token: str = Field(repr=False)

        _access_token_class = GoogleAccessToken
    return _access_token_class


class McpTokenVerifier:
    """Makes an :class:`IdTokenVerifier` the mcp SDK's ``TokenVerifier``.

    Example (mcp 2.x; with 1.x, ``FastMCP`` takes the same two arguments)::

        verifier = McpTokenVerifier(IdTokenVerifier(SERVICE_URL, emails=[AGENT_SA]))
        server = MCPServer(
            "tools",
            token_verifier=verifier,
            auth=verifier.auth_settings(SERVICE_URL),
        )

    In a tool, ``get_access_token()`` (``mcp.server.auth.middleware.auth_context``)
    gives the caller: ``client_id`` is its email (else ``sub``), ``claims``
    the verified claims. Google ID tokens carry no OAuth scopes, so leave
    ``AuthSettings.required_scopes`` unset.

    Args:
      verifier: The ID token verifier. Not an :class:`IapVerifier` (IAP's
        header is not ``Authorization``) and not ``trusted_front``: the SDK
        reads ``Authorization`` only and cannot tell which header Cloud Run
        verified, so a stripped token there could be anyone's. Use
        :class:`GoogleAuthMiddleware` for both.
      scopes: Scopes to grant every verified caller (for ``required_scopes``).

    Raises:
      ConfigurationError: For the verifiers above.
    """

    def __init__(self, verifier: GoogleTokenVerifier, *, scopes: Sequence[str] = ()) -> None:
        if not isinstance(verifier, IdTokenVerifier):
            raise ConfigurationError(
                "McpTokenVerifier takes an IdTokenVerifier: the mcp SDK reads Authorization "
                "only; for IAP's x-goog-iap-jwt-assertion wrap the app in GoogleAuthMiddleware"
            )
        if verifier.trusted_front:
            raise ConfigurationError(
                "McpTokenVerifier cannot use a trusted_front verifier: the mcp SDK reads "
                "Authorization only and cannot tell which header Cloud Run verified, so a "
                "stripped token there could be anyone's. Wrap the MCP app in "
                "GoogleAuthMiddleware instead (it reads the header Cloud Run checked)"
            )
        self.verifier = verifier
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        """mcp's ``TokenVerifier.verify_token``: the caller, or ``None`` (401).

        Raises:
          TransientError: Google's signing keys could not be fetched (the
            SDK then answers 500: the server's fault, not the caller's).
        """
        try:
            claims = await self.verifier.verify_async(token)
        except InvalidTokenError as exc:
            _log.debug("refused an MCP caller: %s", exc)
            return None
        return self._access_token(token, claims)

    def _access_token(self, token: str, claims: dict[str, Any]) -> AccessToken:
        aud = claims.get("aud")
        accepted = self.verifier.audiences
        if isinstance(aud, str):
            resource: str | None = aud
        else:
            resource = next((a for a in aud or () if a in accepted), None)
        exp = claims.get("exp")
        return _google_access_token()(
            token=token,
            client_id=str(claims.get("email") or claims.get("sub") or ""),
            scopes=list(self._scopes),
            expires_at=int(exp) if isinstance(exp, (int, float)) else None,
            resource=resource,
            subject=claims.get("sub"),
            claims=claims,
        )

    def auth_settings(self, resource_server_url: str, **settings: Any) -> AuthSettings:
        """``AuthSettings`` for a resource server that takes Google ID tokens.

        ``issuer_url`` is Google's; ``validate_token_resource`` is off because
        the verifier checks ``aud`` itself (and the SDK compares whole URLs,
        while Cloud Run audiences are origins). ``settings`` go through.
        """
        from mcp.server.auth.settings import AuthSettings

        fields = AuthSettings.model_fields
        options: dict[str, Any] = {
            "issuer_url": GOOGLE_ISSUER,
            "resource_server_url": resource_server_url,
        }
        if "validate_token_resource" in fields:
            options["validate_token_resource"] = False
        options.update(settings)
        return AuthSettings(**options)

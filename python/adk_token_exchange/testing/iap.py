"""An MCP server behind an IAP-like gate (Identity-Aware Proxy, programmatic access).

IAP takes, in ``Proxy-Authorization`` (checked first; ``Authorization`` then
goes to the app untouched) or ``Authorization``
(https://cloud.google.com/iap/docs/authentication-howto):

- ``"id_token"``: a Google-signed OIDC ID token whose ``aud`` is the IAP OAuth
  client id; a token for the ``run.app`` URL is refused (IAP is not Cloud Run);
- ``"signed_jwt"``: a JWT a service account signed (with its key, or IAM
  ``signJwt``), ``iss`` = ``sub`` = the account, ``aud`` = the resource URL or
  a ``/*`` wildcard over it, living at most one hour.

The app never sees ``Proxy-Authorization`` (the proxy consumes it; Google's
front ends drop it, documented for Cloud Functions, inferred for IAP).
A valid token of a principal without "IAP-secured Web App User"
(``allowed_principals``) gets 403. Refusals carry
``X-Goog-IAP-Generated-Response: true``, as IAP's own answers do.
"""

from __future__ import annotations

from collections.abc import Iterable

import jwt

from .emulator import GOOGLE_ISSUER, GoogleEmulator, InvalidIdToken
from .protected import ProtectedMcpServer, _unverified_audience, _Verdict

__all__ = ["DEFAULT_IAP_CLIENT_ID", "IapProtectedMcpServer"]

DEFAULT_IAP_CLIENT_ID = "123456789012-iapemulated0000000000000000000.apps.googleusercontent.com"
"""The IAP OAuth client id this gate expects as an ID token's ``aud`` by default."""


class IapProtectedMcpServer(ProtectedMcpServer):
    """:class:`~.protected.ProtectedMcpServer` behind IAP instead of Cloud Run.

    Args:
        emulator: Whose keys make a token valid (Google's and the service accounts').
        oauth_client_id: The ``aud`` an ID token must carry.
        allowed_principals: Emails with IAP-secured Web App User; ``None``: everyone.
        modes: Which credentials are accepted (``"id_token"``, ``"signed_jwt"``).
        app_token: As in :class:`~.protected.ProtectedMcpServer`.
    """

    _token_headers = (b"proxy-authorization", b"authorization")
    _strip_signature = False
    _refusal_headers = ((b"x-goog-iap-generated-response", b"true"),)

    def __init__(
        self,
        emulator: GoogleEmulator,
        *,
        oauth_client_id: str = DEFAULT_IAP_CLIENT_ID,
        allowed_principals: Iterable[str] | None = None,
        modes: Iterable[str] = ("id_token", "signed_jwt"),
        app_token: str | None = None,
        stateless: bool = True,
    ) -> None:
        super().__init__(emulator, stateless=stateless, name="iap-mcp", app_token=app_token)
        self.oauth_client_id = oauth_client_id
        self.allowed_principals = None if allowed_principals is None else set(allowed_principals)
        self.modes = frozenset(modes)

    @property
    def jwt_audiences(self) -> list[str]:
        """The ``aud`` values a service-account JWT may carry here."""
        return [f"{self.origin}/*", self.url, f"{self.url}/*"]

    def _verify(self, token: str | None) -> _Verdict:
        if token is None:
            return _Verdict(False, 401, "missing bearer token")
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return _Verdict(False, 401, "not a JWT (an access token?)")
        try:
            if issuer in (GOOGLE_ISSUER, "accounts.google.com"):
                if "id_token" not in self.modes:
                    return _Verdict(False, 401, "ID tokens are not accepted here")
                claims = self.emulator.verify_id_token(token, [self.oauth_client_id])
            else:
                if "signed_jwt" not in self.modes:
                    return _Verdict(False, 401, "service account JWTs are not accepted here")
                claims = self.emulator.verify_service_account_jwt(token, self.jwt_audiences)
        except InvalidIdToken as exc:
            return _Verdict(False, 401, exc.reason, _unverified_audience(token))
        audience = str(claims["aud"])
        email = str(claims.get("email") or claims.get("sub"))
        if self.allowed_principals is not None and email not in self.allowed_principals:
            return _Verdict(False, 403, "not an IAP-secured Web App User", audience, email)
        return _Verdict(True, 200, "ok", audience, email)

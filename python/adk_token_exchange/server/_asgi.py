"""ASGI middleware: only requests carrying a valid Google-signed token reach the app.

Plain ASGI (no Starlette import), so it wraps Starlette, FastAPI, the mcp
SDK's apps and anything else ASGI. Answers follow RFC 6750 §3: 401 without
a token (``WWW-Authenticate: Bearer``) or with an invalid one
(``Bearer error="invalid_token"``), 403 for a valid caller not on the
allow-list (``error="insufficient_scope"``), and 503 when Google's signing
keys cannot be fetched (not the caller's fault). The verified claims are in
``scope["state"]`` (Starlette: ``request.state.google_claims``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from ..errors import ConfigurationError, InvalidTokenError, TransientError
from ._verifiers import (
    AUTHORIZATION,
    IAP_ASSERTION,
    SERVERLESS_AUTHORIZATION,
    GoogleTokenVerifier,
)

__all__ = ["CLAIMS_STATE_KEY", "GoogleAuthMiddleware"]

_log = logging.getLogger("adk_token_exchange.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLAIMS_STATE_KEY = "google_claims"
"""Default key of the verified claims in ``scope["state"]``."""

_PHRASES = {
    "malformed": "malformed token",
    "algorithm": "algorithm not accepted",
    "unknown_key": "unknown signing key",
    "bad_signature": "bad signature",
    "wrong_issuer": "wrong issuer",
    "wrong_audience": "wrong audience",
    "expired": "token expired",
    "not_yet_valid": "token not valid yet",
    "not_allowed": "caller not allowed",
    "signature_removed": "signature removed",
}


class _Refusal(Exception):
    def __init__(self, status: int, error: str | None, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class GoogleAuthMiddleware:
    """Lets through only requests with a token ``verifier`` accepts.

    Example (Starlette / FastAPI)::

        app.add_middleware(
            GoogleAuthMiddleware,
            verifier=IdTokenVerifier("https://svc-xyz.a.run.app"),
        )

        @app.get("/whoami")
        async def whoami(request: Request):
            return {"caller": request.state.google_claims["email"]}

    Args:
      app: The ASGI app to protect.
      verifier: An :class:`IdTokenVerifier` or :class:`IapVerifier`.
      header: Which request header carries the token: ``"Authorization"``
        (default for ID tokens), ``"X-Serverless-Authorization"``, or
        ``"x-goog-iap-jwt-assertion"`` (default for IAP; the bare JWT, no
        ``Bearer``). With a ``trusted_front`` verifier leave it unset: the
        token is read from the header Cloud Run verified
        (``X-Serverless-Authorization`` when present, else ``Authorization``),
        and a stripped token is accepted from that header only.
      public_paths: Paths served without a token (health checks).
      state_key: Where the claims go in ``scope["state"]``.

    Raises:
      ConfigurationError: ``header`` is not one of the three, or is set
        with a ``trusted_front`` verifier.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: GoogleTokenVerifier,
        *,
        header: str | None = None,
        public_paths: Iterable[str] = (),
        state_key: str = CLAIMS_STATE_KEY,
    ) -> None:
        if header is not None:
            header = header.lower()
            if header not in (AUTHORIZATION, SERVERLESS_AUTHORIZATION, IAP_ASSERTION):
                raise ConfigurationError(
                    f"header={header!r}: expected 'Authorization', 'X-Serverless-Authorization' "
                    "or 'x-goog-iap-jwt-assertion'"
                )
            if verifier.trusted_front:
                raise ConfigurationError(
                    "header=: a trusted_front verifier reads the header Cloud Run verified "
                    "(X-Serverless-Authorization when present, else Authorization); leave it unset"
                )
        self._app = app
        self._verifier = verifier
        self._header = header or verifier.header
        self._public = frozenset(public_paths)
        self._state_key = state_key

    def _token(self, scope: Scope) -> str | None:
        """The presented token, or ``None``; raises ``_Refusal`` if ambiguous."""
        values: dict[bytes, list[bytes]] = {}
        for name, value in scope.get("headers", ()):
            values.setdefault(name.lower(), []).append(value)
        header = self._header
        if self._verifier.trusted_front and SERVERLESS_AUTHORIZATION.encode() in values:
            # Cloud Run checked this one; Authorization is then the caller's own.
            header = SERVERLESS_AUTHORIZATION
        found = values.get(header.encode(), [])
        if not found:
            return None
        if len(found) > 1:
            raise _Refusal(401, "invalid_request", f"more than one {header} header")
        text = found[0].decode("latin-1").strip()
        if header == IAP_ASSERTION:
            return text or None
        scheme, _, credentials = text.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _Refusal(401, "invalid_request", f"{header} is not 'Bearer <token>'")
        return credentials.strip()

    async def _claims(self, scope: Scope) -> dict[str, Any]:
        token = self._token(scope)
        if token is None:
            raise _Refusal(401, None, "no token")
        try:
            return await self._verifier.verify_async(token)
        except InvalidTokenError as exc:
            _log.debug("refused %s %s: %s", scope.get("method", ""), scope.get("path", ""), exc)
            phrase = _PHRASES.get(exc.reason, "invalid token")
            if exc.reason == "not_allowed":
                raise _Refusal(403, "insufficient_scope", phrase) from None
            raise _Refusal(401, "invalid_token", phrase) from None
        except TransientError as exc:
            _log.warning("cannot verify callers: %s", exc)
            raise _Refusal(503, None, "signing keys unavailable") from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self._public:
            await self._app(scope, receive, send)
            return
        try:
            claims = await self._claims(scope)
        except _Refusal as refusal:
            await _refuse(scope, receive, send, refusal)
            return
        scope = dict(scope)
        scope["state"] = {**(scope.get("state") or {}), self._state_key: claims}
        await self._app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: _Refusal) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.description})
        return
    headers = [(b"content-type", b"application/json")]
    if refusal.status in (401, 403):
        challenge = "Bearer"
        if refusal.error is not None:
            challenge += f' error="{refusal.error}", error_description="{refusal.description}"'
        headers.append((b"www-authenticate", challenge.encode()))
    if refusal.status == 503:
        headers.append((b"retry-after", b"5"))
    error = refusal.error or ("unavailable" if refusal.status == 503 else "unauthorized")
    body = json.dumps({"error": error, "error_description": refusal.description}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

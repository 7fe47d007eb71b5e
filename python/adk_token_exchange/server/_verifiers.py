"""The verifiers: Google ID tokens and IAP assertions, checked by the Rust core."""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, ClassVar, Literal

from .._request import origin_of

__all__ = [
    "AUTHORIZATION",
    "IAP_ASSERTION",
    "SERVERLESS_AUTHORIZATION",
    "GoogleTokenVerifier",
    "IapVerifier",
    "IdTokenVerifier",
]

AUTHORIZATION = "authorization"
"""``Authorization: Bearer <ID token>``."""
SERVERLESS_AUTHORIZATION = "x-serverless-authorization"
"""Cloud Run's alternative to ``Authorization``: when both are sent, Cloud Run
checks this one and leaves ``Authorization`` to the service."""
IAP_ASSERTION = "x-goog-iap-jwt-assertion"
"""The header IAP adds to every request it lets through (the bare JWT)."""

_Audience = str | Sequence[str]


def _audiences(audience: _Audience) -> list[str]:
    return [audience] if isinstance(audience, str) else list(audience)


class GoogleTokenVerifier:
    """What both verifiers share; build an :class:`IdTokenVerifier` or an :class:`IapVerifier`.

    Thread-safe and cheap to share: build one per service at start-up. Keys
    are cached per process (per key-set URL) and verdicts per verifier.
    """

    header: ClassVar[str]
    """The request header the ASGI middleware reads by default."""

    def __init__(
        self, preset: Literal["google_id_token", "iap"], audiences: list[str], **options: Any
    ) -> None:
        from .. import _native

        self._native = _native.TokenVerifier(preset, audiences, **options)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once it passed every check.

        Blocks this thread only while the signing keys are fetched (the
        first call, or a new key id); use :meth:`verify_async` on an event loop.

        Raises:
          InvalidTokenError: The token was refused; ``reason`` says why.
          TransientError: Google's signing keys could not be fetched (and
            none are cached): answer 503, not 401.
        """
        return self._native.verify(token)

    def verify_async(self, token: str) -> Coroutine[Any, Any, dict[str, Any]]:
        """:meth:`verify` as a coroutine that never blocks the event loop.

        A real coroutine (``asyncio.iscoroutine`` is true): nothing runs until
        it is awaited; a remembered token finishes on its first step, without
        an asyncio future; a key fetch runs on the core's runtime.
        """
        return self._native.verify_async(token)

    @property
    def audiences(self) -> list[str]:
        """The ``aud`` values accepted."""
        return self._native.audiences

    @property
    def leeway(self) -> float:
        """Seconds of clock skew allowed on ``exp``, ``iat`` and ``nbf``."""
        return self._native.leeway

    @property
    def trusted_front(self) -> bool:
        """Whether tokens Cloud Run verified and stripped are accepted."""
        return self._native.trusted_front

    @property
    def jwks_url(self) -> str:
        """Where the signing keys come from."""
        return self._native.jwks_url

    @property
    def allowed_emails(self) -> list[str] | None:
        """The allow-list's emails (lower-cased); ``None``: any caller with a valid token."""
        return self._native.allowed_emails

    @property
    def allowed_domains(self) -> list[str] | None:
        """The allow-list's Workspace domains (``hd``), or ``None``."""
        return self._native.allowed_domains

    def cached_key_ids(self) -> list[str] | None:
        """The ids of the cached signing keys (``None`` before the first fetch); never fetches."""
        return self._native.cached_key_ids()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(audience={self.audiences!r})"


class IdTokenVerifier(GoogleTokenVerifier):
    """Checks Google-signed OIDC ID tokens (RS256) sent to this service.

    What Cloud Run, Cloud Functions, Pub/Sub push and Cloud Tasks send, and
    what an ADK agent sends through :func:`adk_token_exchange.id_token_credential`.

    Args:
      audience: This service's audience, or several. A URL such as
        ``https://svc-xyz.a.run.app/mcp`` accepts both itself and its origin
        ``https://svc-xyz.a.run.app`` (what Cloud Run and this package's
        client use); ``exact=True`` accepts only what is given. Required:
        without an audience any Google ID token for any service would pass.
      emails: Callers allowed, by ``email`` (with ``email_verified``):
        service accounts and users. Empty, with ``domains`` empty: any
        caller with a valid token.
      domains: Google Workspace / Cloud Identity domains allowed, matched
        against the token's ``hd`` claim (never the email's suffix).
      leeway: Seconds of clock skew allowed (default 10, at most 300).
      trusted_front: Accept the tokens Cloud Run forwards after verifying
        them itself (signature replaced by ``SIGNATURE_REMOVED_BY_GOOGLE``),
        checking their claims. Only for a service that requires
        authentication and that nothing but Cloud Run can reach; see
        ``docs/server.md``. Tokens with a real signature are still verified.
      exact: Accept a URL ``audience`` verbatim only.
      jwks_url: Another key set (the emulator's, a mirror); it must be
        Google's, loopback, or named in ``ADK_TOKEN_EXCHANGE_TRUSTED_HOSTS``.

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """

    header: ClassVar[str] = AUTHORIZATION

    def __init__(
        self,
        audience: _Audience,
        *,
        emails: Iterable[str] = (),
        domains: Iterable[str] = (),
        leeway: float | None = None,
        trusted_front: bool = False,
        exact: bool = False,
        jwks_url: str | None = None,
    ) -> None:
        given = _audiences(audience)
        accepted = list(given)
        if not exact:
            accepted += [origin_of(a) for a in given if origin_of(a) not in accepted]
        super().__init__(
            "google_id_token",
            accepted,
            emails=list(emails),
            domains=list(domains),
            leeway=leeway,
            trusted_front=trusted_front,
            jwks_url=jwks_url,
        )


class IapVerifier(GoogleTokenVerifier):
    """Checks IAP's signed header ``x-goog-iap-jwt-assertion`` (ES256).

    Google's advice for apps behind Identity-Aware Proxy: verify the
    assertion, so that a request that bypassed IAP (a misconfigured
    firewall, another path to the backend) is refused.

    Args:
      audience: ``/projects/NUMBER/global/backendServices/ID`` (load
        balancers, GKE) or ``/projects/NUMBER/apps/PROJECT_ID`` (App Engine),
        or several; IAP's console shows it ("Get JWT audience code").
      emails: Users allowed, by ``email``.
      domains: Workspace domains allowed, by ``hd``.
      leeway: Seconds of clock skew allowed (default 10, at most 300).
      jwks_url: Another key set (default IAP's, on www.gstatic.com).

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """

    header: ClassVar[str] = IAP_ASSERTION

    def __init__(
        self,
        audience: _Audience,
        *,
        emails: Iterable[str] = (),
        domains: Iterable[str] = (),
        leeway: float | None = None,
        jwks_url: str | None = None,
    ) -> None:
        super().__init__(
            "iap",
            _audiences(audience),
            emails=list(emails),
            domains=list(domains),
            leeway=leeway,
            jwks_url=jwks_url,
        )

"""Tokens the emulated Google issues: opaque access tokens it remembers, ID tokens
signed with its own "Google" key (which it can rotate, and verify as a protected
service would), and IAP's ES256 assertions."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import keys

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "GOOGLE_ISSUER",
    "IAP_ISSUER",
    "AccessTokenInfo",
    "InvalidIdToken",
    "Mint",
]

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The scope IAM Credentials (and most Google APIs) require."""
GOOGLE_ISSUER = "https://accounts.google.com"
"""``iss`` of every Google-signed ID token."""
IAP_ISSUER = "https://cloud.google.com/iap"
"""``iss`` of IAP's signed header ``x-goog-iap-jwt-assertion``."""


class InvalidIdToken(Exception):
    """An ID token failed :meth:`GoogleEmulator.verify_id_token`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessTokenInfo:
    """What the emulator knows about an access token it issued."""

    principal: str
    """Service account or user email the token acts as."""
    scopes: tuple[str, ...]
    issued_at: float
    """Unix time, seconds."""
    expires_at: float
    """Unix time, seconds."""
    source: str
    """How it was minted: ``jwt_bearer``, ``refresh_token``, ``metadata``,
    ``generate_access_token`` or ``direct``."""

    @property
    def expired(self) -> bool:
        """Whether ``expires_at`` has passed."""
        return time.time() >= self.expires_at

    def has_scope(self, scope: str) -> bool:
        """Whether the token was granted ``scope``."""
        return scope in self.scopes


class Mint:
    """Issues, remembers and verifies tokens; thread-safe.

    Args:
        token_lifetime: Seconds every issued token lives unless told otherwise.
    """

    def __init__(self, token_lifetime: int) -> None:
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._signing_key = keys.pooled_key(0)
        self._signing_kid = secrets.token_hex(20)
        self._signing_cert: str | None = None
        self._previous: tuple[str, rsa.RSAPrivateKey] | None = None
        self._rotations = 0
        self._access_tokens: dict[str, AccessTokenInfo] = {}
        self._iap_key: ec.EllipticCurvePrivateKey | None = None
        self._iap_kid = secrets.token_hex(8)

    # -- access tokens ---------------------------------------------------------------

    def issue_access_token(
        self,
        principal: str,
        scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
        *,
        lifetime: float | None = None,
        source: str = "direct",
    ) -> str:
        """A new opaque access token (negative ``lifetime``: already expired)."""
        now = time.time()
        token = "ya29.emulated-" + secrets.token_urlsafe(48)
        life = self.token_lifetime if lifetime is None else lifetime
        info = AccessTokenInfo(principal, tuple(scopes), now, now + life, source)
        with self._lock:
            self._access_tokens[token] = info
        return token

    def access_token_info(self, token: str) -> AccessTokenInfo | None:
        """The issued access token's principal, scopes and expiry (expired ones too)."""
        with self._lock:
            return self._access_tokens.get(token)

    # -- ID tokens -------------------------------------------------------------------

    def id_claims(
        self,
        audience: str,
        email: str | None,
        subject: str,
        *,
        lifetime: float | None = None,
        authorized_party: str | None = None,
    ) -> dict[str, Any]:
        """The claims Google puts in an ID token for ``subject`` (``email`` if given)."""
        now = int(time.time())
        life = self.token_lifetime if lifetime is None else lifetime
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": authorized_party or subject,
            "exp": int(now + life),
            "iat": now,
            "iss": GOOGLE_ISSUER,
            "sub": subject,
        }
        if email is not None:
            claims["email"] = email
            claims["email_verified"] = True
        return claims

    def sign(self, claims: Mapping[str, Any]) -> str:
        """An RS256 JWT of ``claims``, signed with the "Google" key."""
        with self._lock:
            key, kid = self._signing_key, self._signing_kid
        return jwt.encode(dict(claims), key, algorithm="RS256", headers={"kid": kid})

    # -- IAP assertions --------------------------------------------------------------

    def _iap_signing_key(self) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            if self._iap_key is None:
                self._iap_key = ec.generate_private_key(ec.SECP256R1())
            return self._iap_key

    def iap_public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """IAP's signing keys by ``kid`` (what ``/iap/verify/public_key-jwk`` publishes)."""
        return {self._iap_kid: self._iap_signing_key().public_key()}

    def sign_iap_assertion(self, claims: Mapping[str, Any]) -> str:
        """An ES256 JWT of ``claims``, signed with the "IAP" key, as IAP's header carries it."""
        return jwt.encode(
            dict(claims),
            self._iap_signing_key(),
            algorithm="ES256",
            headers={"kid": self._iap_kid, "typ": "JWT"},
        )

    @property
    def signing_key_id(self) -> str:
        """``kid`` of the signing key."""
        return self._signing_kid

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The ID token signing keys by ``kid`` (what the certs endpoints publish):
        the current one, and the one before it while it is kept."""
        with self._lock:
            published = {self._signing_kid: self._signing_key.public_key()}
            if self._previous is not None:
                published[self._previous[0]] = self._previous[1].public_key()
            return published

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on, as Google rotates its keys; returns its ``kid``.

        With ``keep_previous`` the old key stays published (Google keeps it until
        the tokens it signed have expired); without, it disappears at once.
        """
        with self._lock:
            self._rotations += 1
            old = (self._signing_kid, self._signing_key)
            self._previous = old if keep_previous else None
            self._signing_key = keys.pooled_key(self._rotations)
            self._signing_kid = secrets.token_hex(20)
            self._signing_cert = None
            return self._signing_kid

    def signing_certificate(self) -> str:
        """The signing key's self-signed X.509 certificate (PEM), made once."""
        with self._lock:
            if self._signing_cert is None:
                self._signing_cert = keys.certificate_pem(self._signing_key, "accounts.google.com")
            return self._signing_cert

    def verify_id_token(
        self, token: str, audience: str | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """See :meth:`GoogleEmulator.verify_id_token` (the public face of this check)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("not a JWT (an access token?)") from exc
        if header.get("alg") != "RS256":
            raise InvalidIdToken(f"algorithm {header.get('alg')!r} is not RS256")
        key = self.public_keys().get(str(header.get("kid")))
        if key is None:
            raise InvalidIdToken("unknown signing key id")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("invalid signature") from exc
        if claims.get("iss") not in (GOOGLE_ISSUER, "accounts.google.com"):
            raise InvalidIdToken(f"issuer {claims.get('iss')!r} is not Google")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= time.time():
            raise InvalidIdToken("expired")
        if audience is not None:
            allowed = [audience] if isinstance(audience, str) else list(audience)
            if claims.get("aud") not in allowed:
                raise InvalidIdToken(f"audience {claims.get('aud')!r} not accepted")
        return claims

"""IAM Credentials ``signBlob`` and ``signJwt``: a service account signs with its own
Google-managed key, https://cloud.google.com/iam/docs/reference/credentials/rest.

- ``signBlob {"payload": base64}`` → ``{"keyId", "signedBlob": base64}``
  (RSASSA-PKCS1-v1_5 with SHA-256, what google-auth's ``Signer`` verifies);
- ``signJwt {"payload": "<JSON claims>"}`` → ``{"keyId", "signedJwt"}``: RS256,
  ``kid`` = the key id; an ``exp`` in the past or more than 12 h ahead is
  refused, a missing one becomes ``iat``/now + 1 h, as Google documents.

The key is the account's key in the emulator (made on first use for a keyless
account); its certificate is at ``/robot/v1/metadata/x509/{email}``, where IAP
and other verifiers of service-account JWTs read it.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .records import RequestRecord
from .server import Response
from .service import GoogleState
from .wire import google_api_error, json_response

__all__ = ["MAX_JWT_LIFETIME", "serve", "verify_service_account_jwt"]

MAX_JWT_LIFETIME = 12 * 3600
"""signJwt refuses an ``exp`` further ahead than this (seconds)."""


def serve(
    state: GoogleState, method: str, target: str, body: dict[str, Any], record: RequestRecord
) -> Response:
    """Answer ``signBlob`` or ``signJwt`` for ``target`` (already authorized)."""
    account = state.accounts.with_key(target, state.project_id)
    assert account.key is not None and account.key_id is not None
    payload = body.get("payload")
    if not isinstance(payload, str) or not payload:
        raise google_api_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
    if method == "signBlob":
        try:
            blob = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise google_api_error(
                400, "Invalid value at 'payload' (TYPE_BYTES).", "INVALID_ARGUMENT"
            ) from exc
        signature = account.key.sign(blob, padding.PKCS1v15(), hashes.SHA256())
        return json_response(
            200, {"keyId": account.key_id, "signedBlob": base64.b64encode(signature).decode()}
        )
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise google_api_error(
            400, "Payload is not a valid JSON object.", "INVALID_ARGUMENT"
        ) from exc
    if not isinstance(claims, dict):
        raise google_api_error(400, "Payload is not a valid JSON object.", "INVALID_ARGUMENT")
    now = int(time.time())
    exp = claims.setdefault("exp", int(claims.get("iat", now)) + 3600)
    if not isinstance(exp, int) or exp <= now or exp > now + MAX_JWT_LIFETIME:
        raise google_api_error(
            400,
            "The exp claim must be an integer timestamp in the future, at most 12 hours ahead.",
            "INVALID_ARGUMENT",
        )
    if isinstance(claims.get("aud"), str):
        record.audience = claims["aud"]
    signed = jwt.encode(
        claims, account.key, algorithm="RS256", headers={"kid": account.key_id, "typ": "JWT"}
    )
    return json_response(200, {"keyId": account.key_id, "signedJwt": signed})


def verify_service_account_jwt(
    state: GoogleState, token: str, audiences: list[str], *, max_lifetime: int = 3600
) -> dict[str, Any]:
    """Check a JWT a service account signed itself, as IAP does; return its claims.

    Checks: RS256 with the ``kid`` of one of ``iss``'s keys (current or rotated),
    ``iss`` = ``sub`` = an existing service account, ``aud`` one of ``audiences``,
    unexpired, ``exp - iat`` at most ``max_lifetime``.

    Raises:
        InvalidIdToken: with a short ``reason``.
    """
    from .minting import InvalidIdToken

    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidIdToken("not a JWT") from exc
    if header.get("alg") != "RS256":
        raise InvalidIdToken(f"algorithm {header.get('alg')!r} is not RS256")
    issuer = unverified.get("iss")
    account = state.accounts.service_account(str(issuer))
    if account is None:
        raise InvalidIdToken(f"issuer {issuer!r} is not a service account")
    key = account.key_for(header.get("kid")) if header.get("kid") else None
    if key is None:
        raise InvalidIdToken("unknown signing key id")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key.public_key(), algorithms=["RS256"], options={"verify_aud": False}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidIdToken("expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidIdToken("invalid signature") from exc
    if claims.get("sub") != issuer:
        raise InvalidIdToken("sub is not the issuing service account")
    if claims.get("aud") not in audiences:
        raise InvalidIdToken(f"audience {claims.get('aud')!r} not accepted")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        raise InvalidIdToken("iat and exp are required")
    if exp - iat > max_lifetime:
        raise InvalidIdToken(f"lifetime {int(exp - iat)} s is longer than {max_lifetime} s")
    return claims

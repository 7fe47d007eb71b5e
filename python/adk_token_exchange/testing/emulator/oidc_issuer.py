"""An identity provider outside Google, as Workload Identity Federation sees one: a
GitHub-Actions-like OIDC issuer at ``/oidc`` on the emulator's origin.

- ``GET /oidc/.well-known/openid-configuration`` and ``/oidc/.well-known/jwks``:
  discovery and its signing key (its own, never Google's);
- ``GET /oidc/token?audience=AUD`` with ``Authorization: Bearer REQUEST_TOKEN``
  answers ``{"count": 1, "value": JWT}``, as GitHub's
  ``ACTIONS_ID_TOKEN_REQUEST_URL`` does for ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``
  (https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect);
  without the header, or with an unknown request token, 401.

Its tokens are what a ``credential_source.url`` (or a file, or an executable)
hands to STS.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from . import keys
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import json_response

__all__ = ["ISSUER_PATH", "ExternalOidcIssuer", "subject_claims"]

ISSUER_PATH = "/oidc"


def subject_claims(
    issuer: str, audience: str, subject: str, lifetime: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """The claims of one subject token, GitHub-Actions-shaped."""
    now = int(time.time())
    repository = subject.split(":")[1] if subject.startswith("repo:") else "octo-org/agent"
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "repository": repository,
        "repository_owner": repository.split("/")[0],
        "ref": "refs/heads/main",
        "workflow": "eval",
        "jti": secrets.token_hex(8),
        "iat": now,
        "nbf": now,
        "exp": int(now + lifetime),
    }
    claims.update(extra)
    return claims


class ExternalOidcIssuer(Service):
    """The external issuer's discovery, keys and (request-token gated) token endpoint."""

    kind: ClassVar[EndpointKind] = "oidc"

    def owns(self, path: str) -> bool:
        return path == ISSUER_PATH or path.startswith(ISSUER_PATH + "/")

    def issues_tokens(self, path: str) -> bool:
        return path == f"{ISSUER_PATH}/token"

    def describe(self, request: Request, record: RequestRecord) -> None:
        record.audience = request.query.get("audience")

    @property
    def issuer(self) -> str:
        return self.state.url + ISSUER_PATH

    def serve(self, request: Request, record: RequestRecord) -> Response:
        federation = self.state.federation
        if request.path == f"{ISSUER_PATH}/.well-known/openid-configuration":
            return json_response(
                200,
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/.well-known/jwks",
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
            )
        if request.path == f"{ISSUER_PATH}/.well-known/jwks":
            key = keys.jwk(federation.issuer_key.public_key(), federation.issuer_kid)
            return json_response(200, {"keys": [key]})
        if request.path == f"{ISSUER_PATH}/token" and request.method == "GET":
            scheme, _, token = str(request.headers.get("Authorization", "")).partition(" ")
            claims = federation.request_token_claims(token.strip())
            if scheme.lower() != "bearer" or claims is None:
                return json_response(401, {"message": "Bad credentials"})
            audience = request.query.get("audience") or str(claims.pop("aud", ""))
            claims.pop("aud", None)
            subject = str(claims.pop("sub"))
            lifetime = float(claims.pop("_lifetime", 300))
            payload = subject_claims(self.issuer, audience, subject, lifetime, claims)
            record.principal = subject
            return json_response(
                200, {"count": 1, "value": federation.sign_subject_token(self.issuer, payload)}
            )
        return json_response(404, {"message": "Not Found"})

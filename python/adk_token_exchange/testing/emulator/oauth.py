"""Google's OAuth 2.0 token endpoint, ``POST /token``.

Two grants:

- RFC 7523 JWT-bearer, as Google implements it for service account keys
  (https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
  a ``scope`` claim gets an access token, a ``target_audience`` claim an ID token;
- the refresh-token grant (RFC 6749 §6) of ``authorized_user`` credentials
  (https://developers.google.com/identity/protocols/oauth2/web-server#offline),
  with an ``id_token`` whose ``aud`` is the OAuth client when ``openid`` was granted.

Where it differs from Google: an assertion's ``aud`` may be this emulator's
``token_uri`` (or the URL it was reached at, e.g. through ``localhost``) as
well as Google's token URLs (google-auth always sends
``https://oauth2.googleapis.com/token``); a ``sub`` other than ``iss``
(domain-wide delegation) is refused.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar

import jwt

from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import b64url, json_response, numeric_id, oauth_error, parse_form

__all__ = [
    "ADC_LOGIN_SCOPES",
    "GCLOUD_ADC_CLIENT_ID",
    "GCLOUD_CLIENT_ID",
    "TOKEN_PATH",
    "TokenEndpoint",
]

TOKEN_PATH = "/token"
GCLOUD_CLIENT_ID = "32555940559.apps.googleusercontent.com"
"""OAuth client of the gcloud CLI: ``aud`` of ``gcloud auth print-identity-token``."""
GCLOUD_ADC_CLIENT_ID = "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"
"""OAuth client of ``gcloud auth application-default login`` (the ADC file's ``client_id``)."""
ADC_LOGIN_SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/sqlservice.login",
)
"""What ``gcloud auth application-default login`` grants."""

# Audiences Google's token endpoint accepts in a JWT-bearer assertion. google-auth
# always sends the first one, whatever the key file's token_uri says.
_GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
)
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MAX_ASSERTION_LIFETIME = 3600
_CLOCK_SKEW = 60  # Google tolerates some skew on the assertion's iat.


class TokenEndpoint(Service):
    """``POST /token``: JWT-bearer and refresh-token grants."""

    kind: ClassVar[EndpointKind] = "token"

    @property
    def token_uri(self) -> str:
        """This endpoint's URL (the ``token_uri`` of the key files the emulator hands out)."""
        return self.state.url + TOKEN_PATH

    def owns(self, path: str) -> bool:
        return path == TOKEN_PATH

    def describe(self, request: Request, record: RequestRecord) -> None:
        form = parse_form(request.content_type, request.body)
        record.grant_type = form.get("grant_type") or None
        if form.get("assertion"):
            claims = jwt.decode(form["assertion"], options={"verify_signature": False})
            record.principal = str(claims.get("iss")) or None
            if "target_audience" in claims:
                record.audience = str(claims["target_audience"])
            if "scope" in claims:
                record.scopes = tuple(str(claims["scope"]).split())
        elif form.get("scope"):
            record.scopes = tuple(form["scope"].split())

    def failure(self, status: int) -> Response:
        return json_response(
            status, {"error": "internal_failure", "error_description": "Emulated failure."}
        )

    def serve(self, request: Request, record: RequestRecord) -> Response:
        if request.method != "POST":
            return Response(405, b"Method Not Allowed", "text/plain")
        form = parse_form(request.content_type, request.body)
        grant_type = form.get("grant_type", "")
        record.grant_type = grant_type or None
        if grant_type == _JWT_BEARER:
            # The URL the client called is this endpoint too, whatever loopback name it used.
            reached = f"http://{request.headers.get('Host', '')}{TOKEN_PATH}"
            return self._jwt_bearer_grant(form, record, (self.token_uri, reached))
        if grant_type == "refresh_token":
            return self._refresh_token_grant(form, record)
        raise oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _jwt_bearer_grant(
        self, form: dict[str, str], record: RequestRecord, own_urls: tuple[str, ...]
    ) -> Response:
        """RFC 7523 §2.1 as Google implements it for service account keys.

        The assertion's ``aud`` must be this endpoint: one of ``own_urls`` or a
        URL of Google's token endpoint.
        """
        assertion = form.get("assertion")
        if not assertion:
            raise oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise oauth_error(400, "invalid_grant", "Invalid JWT: malformed token.") from exc
        issuer = str(unverified.get("iss", ""))
        record.principal = issuer or None
        record.assertion_audience = (
            str(unverified["aud"]) if isinstance(unverified.get("aud"), str) else None
        )
        if "target_audience" in unverified:
            record.audience = str(unverified["target_audience"])
        if "scope" in unverified:
            record.scopes = tuple(str(unverified["scope"]).split())
        account = self.state.accounts.service_account(issuer)
        if account is None or account.key is None:
            raise oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        key = account.key_for(header.get("kid"))
        if header.get("alg") != "RS256" or key is None:
            raise oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise oauth_error(400, "invalid_grant", "Invalid JWT Signature.") from exc
        if claims.get("aud") not in (*own_urls, *_GOOGLE_TOKEN_AUDIENCES):
            raise oauth_error(
                400,
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The right audience is {self.token_uri}",
            )
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, (int, float))
            or not isinstance(exp, (int, float))
            or exp <= now
            or iat > now + _CLOCK_SKEW
            or exp - iat > _MAX_ASSERTION_LIFETIME
        ):
            raise oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        if claims.get("sub") not in (None, issuer):  # domain-wide delegation: not emulated
            raise oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested.",
            )
        mint = self.state.mint
        target_audience = claims.get("target_audience")
        if target_audience:
            id_claims = mint.id_claims(str(target_audience), issuer, account.unique_id)
            return json_response(200, {"id_token": mint.sign(id_claims)})
        scopes = str(claims.get("scope", "")).split()
        if not scopes:
            raise oauth_error(
                400, "invalid_scope", "Invalid oauth scope or ID token audience provided."
            )
        token = mint.issue_access_token(issuer, scopes, source="jwt_bearer")
        return json_response(
            200,
            {"access_token": token, "expires_in": mint.token_lifetime, "token_type": "Bearer"},
        )

    def _refresh_token_grant(self, form: dict[str, str], record: RequestRecord) -> Response:
        """OAuth 2.0 refresh (RFC 6749 §6) for ``authorized_user`` credentials."""
        for name in ("client_id", "client_secret", "refresh_token"):
            if not form.get(name):
                raise oauth_error(400, "invalid_request", f"Missing required parameter: {name}")
        user = self.state.accounts.user(form["refresh_token"])
        if user is None:
            raise oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        record.principal = user.email
        if form["client_id"] != user.client_id or form["client_secret"] != user.client_secret:
            raise oauth_error(401, "invalid_client", "Unauthorized")
        scopes = tuple(form["scope"].split()) if form.get("scope") else user.scopes
        record.scopes = scopes
        if not set(scopes) <= set(user.scopes):
            raise oauth_error(400, "invalid_scope", "Bad Request")
        mint = self.state.mint
        token = mint.issue_access_token(user.email, scopes, source="refresh_token")
        payload: dict[str, Any] = {
            "access_token": token,
            "expires_in": mint.token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if "openid" in scopes:
            digest = hashlib.sha256(token.encode()).digest()
            claims = mint.id_claims(
                user.client_id, user.email, numeric_id(user.email), authorized_party=user.client_id
            )
            claims["at_hash"] = b64url(digest[:16])
            payload["id_token"] = mint.sign(claims)
        return json_response(200, payload)

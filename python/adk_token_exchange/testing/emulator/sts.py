"""Google's Security Token Service, ``sts.googleapis.com``: the token exchange of
Workload Identity Federation, ``POST /v1/token`` (RFC 8693,
https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token), and
the refresh of workforce logins, ``POST /v1/oauth/token``.

An exchange names a pool provider as ``audience``; the subject token is
checked against what that provider trusts (:mod:`.federation`): an OIDC
token of the emulator's external issuer (signature, ``iss``, ``aud``,
``exp``, attribute condition) or a SigV4-signed AWS ``GetCallerIdentity``
request (:mod:`.sigv4`). The answer is a federated access token for
``principal://…/subject/SUBJECT``, which IAM Credentials accepts as a caller
(impersonation) and the protected REST server as an access token. Errors
are RFC 6749 §5.2 bodies with Google's ``error`` codes.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar
from urllib.parse import unquote

from .federation import (
    AWS_SUBJECT_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    Federation,
    Provider,
)
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import GoogleState, Service
from .sigv4 import SignatureRejected, caller_arn
from .wire import json_response, oauth_error, parse_form

__all__ = ["STS_PATH", "STS_REFRESH_PATH", "TOKEN_EXCHANGE", "SecurityTokenService"]

STS_PATH = "/v1/token"
STS_REFRESH_PATH = "/v1/oauth/token"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_INVALID_TARGET = (
    'The target service indicated by the "audience" parameters is invalid. This might '
    "either be because the pool or provider is disabled or deleted or because it doesn't exist."
)


class SecurityTokenService(Service):
    """``sts.googleapis.com``'s ``token`` and ``oauth/token`` methods."""

    kind: ClassVar[EndpointKind] = "sts"

    def __init__(self, state: GoogleState) -> None:
        super().__init__(state)
        self.federation: Federation = state.federation

    def owns(self, path: str) -> bool:
        return path in (STS_PATH, STS_REFRESH_PATH)

    def describe(self, request: Request, record: RequestRecord) -> None:
        form = parse_form(request.content_type, request.body)
        record.grant_type = form.get("grant_type")
        record.audience = form.get("audience")
        record.scopes = tuple(form.get("scope", "").split())

    def serve(self, request: Request, record: RequestRecord) -> Response:
        if request.method != "POST":
            raise oauth_error(405, "invalid_request", "Only POST is allowed.")
        form = parse_form(request.content_type, request.body)
        if request.path == STS_REFRESH_PATH:
            return self._refresh(request, form, record)
        return self._exchange(request, form, record)

    def _exchange(self, request: Request, form: dict[str, str], record: RequestRecord) -> Response:
        if form.get("grant_type") != TOKEN_EXCHANGE:
            raise oauth_error(
                400, "unsupported_grant_type", f"Unsupported grant type: {form.get('grant_type')}"
            )
        for name in ("audience", "subject_token", "subject_token_type", "requested_token_type"):
            if not form.get(name):
                raise oauth_error(400, "invalid_request", f"Request must specify {name}.")
        if form["requested_token_type"] != ACCESS_TOKEN_TYPE:
            raise oauth_error(400, "invalid_request", "Unsupported requested token type.")
        scopes = tuple(form.get("scope", "").split())
        if not scopes:
            raise oauth_error(400, "invalid_scope", "Scope(s) must be provided.")
        provider = self.federation.provider(form["audience"])
        if provider is None or provider.disabled:
            raise oauth_error(400, "invalid_target", _INVALID_TARGET)
        options = _options(form.get("options"))
        client = _basic_client(request)
        if provider.workforce and client is None and not options.get("userProject"):
            raise oauth_error(
                400,
                "invalid_request",
                "The workforce pool user project must be provided in options.userProject.",
            )
        subject = self._subject(provider, form["subject_token"], form["subject_token_type"])
        principal = provider.principal(subject)
        record.principal = principal
        mint = self.state.mint
        token = mint.issue_access_token(principal, scopes, source="sts")
        return json_response(
            200,
            {
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": mint.token_lifetime,
            },
        )

    def _subject(self, provider: Provider, token: str, token_type: str) -> str:
        """``google.subject`` of a valid subject token, or the refusal."""
        if provider.kind == "aws":
            if token_type != AWS_SUBJECT_TOKEN_TYPE:
                raise _bad_type(token_type)
            try:
                arn = caller_arn(token, audience=provider.audience, keys=self.federation.aws_key)
            except SignatureRejected as exc:
                raise oauth_error(400, "invalid_grant", str(exc)) from exc
            if provider.aws_account_id and arn.split(":")[4] != provider.aws_account_id:
                raise oauth_error(
                    400, "invalid_grant", "The AWS account is not allowed by the provider."
                )
            claims: dict[str, Any] = {"arn": arn}
            subject = arn
        else:
            if token_type not in (JWT_TOKEN_TYPE, ID_TOKEN_TYPE):
                raise _bad_type(token_type)
            assert provider.issuer is not None
            try:
                claims = self.federation.verify_subject_token(token, provider.issuer)
            except ValueError as exc:
                raise oauth_error(400, "invalid_grant", str(exc)) from exc
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if not any(a in provider.allowed_audiences for a in auds):
                raise oauth_error(
                    400,
                    "invalid_grant",
                    f"The audience in ID Token [{aud}] does not match the expected audience.",
                )
            subject = str(claims.get("sub") or "")
            if not subject:
                raise oauth_error(400, "invalid_grant", "The ID Token has no sub claim.")
        if provider.condition is not None and not provider.condition(claims):
            raise oauth_error(
                400, "invalid_grant", "The given credential is rejected by the attribute condition."
            )
        return subject

    def _refresh(self, request: Request, form: dict[str, str], record: RequestRecord) -> Response:
        if form.get("grant_type") != "refresh_token":
            raise oauth_error(400, "unsupported_grant_type", "Unsupported grant type.")
        client = _basic_client(request)
        login = self.federation.login(form.get("refresh_token", ""))
        if login is None:
            raise oauth_error(400, "invalid_grant", "The refresh token is invalid or revoked.")
        if client != (login.client_id, login.client_secret):
            raise oauth_error(401, "invalid_client", "The OAuth client was not found.")
        principal = login.provider.principal(login.subject)
        record.principal = principal
        mint = self.state.mint
        token = mint.issue_access_token(principal, source="sts_refresh")
        return json_response(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": mint.token_lifetime}
        )


def _options(raw: str | None) -> dict[str, Any]:
    """``options``: JSON, URL-quoted once more by google-auth (both are accepted)."""
    if not raw:
        return {}
    for text in (raw, unquote(raw)):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise oauth_error(400, "invalid_request", "Invalid options: not a JSON object.")


def _basic_client(request: Request) -> tuple[str, str] | None:
    scheme, _, value = str(request.headers.get("Authorization", "")).partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except ValueError as exc:
        raise oauth_error(401, "invalid_client", "Malformed client authentication.") from exc
    return user, password


def _bad_type(token_type: str) -> Exception:
    return oauth_error(400, "invalid_request", f"Invalid subject token type {token_type}.")

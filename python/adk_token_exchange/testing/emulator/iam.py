"""IAM Credentials: ``generateAccessToken`` and ``generateIdToken`` (service account
impersonation), https://cloud.google.com/iam/docs/reference/credentials/rest.

``POST /v1/projects/-/serviceAccounts/{email}:{method}`` with the caller's
access token as bearer; each hop of ``[caller, *delegates, target]`` needs
the Token Creator grant (everyone has it until
:meth:`GoogleEmulator.restrict_impersonation`). ``signBlob`` and ``signJwt``
sign with the target's Google-managed key (:mod:`.signing`), whose certificate
``/robot/v1/metadata/x509/{email}`` publishes, as IAP reads it.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar
from urllib.parse import unquote

from . import signing
from .minting import CLOUD_PLATFORM_SCOPE
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import google_api_error, json_response, rfc3339

__all__ = ["IAM_PATH", "IamCredentials"]

IAM_PATH = "/v1/projects/"
_IAM_SCOPE = "https://www.googleapis.com/auth/iam"
_METHODS = ("generateAccessToken", "generateIdToken", "signBlob", "signJwt")
_PERMISSIONS = {
    "generateAccessToken": "iam.serviceAccounts.getAccessToken",
    "generateIdToken": "iam.serviceAccounts.getOpenIdToken",
    "signBlob": "iam.serviceAccounts.signBlob",
    "signJwt": "iam.serviceAccounts.signJwt",
}
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access "
    "token, login cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class IamCredentials(Service):
    """``iamcredentials.googleapis.com``'s token methods."""

    kind: ClassVar[EndpointKind] = "iam"

    def owns(self, path: str) -> bool:
        return path.startswith(IAM_PATH)

    def describe(self, request: Request, record: RequestRecord) -> None:
        if not request.body:
            return
        body = json.loads(request.body)
        if isinstance(body.get("audience"), str):
            record.audience = body["audience"]
        if isinstance(body.get("scope"), list):
            record.scopes = tuple(str(s) for s in body["scope"])

    def serve(self, request: Request, record: RequestRecord) -> Response:
        # /v1/projects/{project}/serviceAccounts/{email}:{method}
        resource = request.path[len(IAM_PATH) :]
        _project, _, rest = resource.partition("/serviceAccounts/")
        target, _, method = unquote(rest).rpartition(":")
        if request.method != "POST" or not target or "/" in target:
            raise google_api_error(404, "Not found.", "NOT_FOUND")
        if method not in _METHODS:
            raise google_api_error(404, f"Method {method} is not emulated.", "NOT_FOUND")
        record.principal = target
        caller = self._caller(request, record)
        body = self._body(request)
        delegates = [_delegate_email(d) for d in body.get("delegates") or []]
        accounts = self.state.accounts
        for email in (*delegates, target):
            if not accounts.exists(email):
                raise google_api_error(404, _gaia_not_found(email), "NOT_FOUND")
        if not accounts.may_impersonate([caller, *delegates, target]):
            raise google_api_error(
                403,
                f"Permission '{_PERMISSIONS[method]}' denied on resource (or it may not exist).",
                "PERMISSION_DENIED",
            )
        if method == "generateAccessToken":
            return self._generate_access_token(target, body, record)
        if method in ("signBlob", "signJwt"):
            return signing.serve(self.state, method, target, body, record)
        return self._generate_id_token(target, body, record)

    def _caller(self, request: Request, record: RequestRecord) -> str:
        """The principal of the bearer access token, which must allow IAM calls."""
        scheme, _, bearer = str(request.headers.get("Authorization", "")).partition(" ")
        mint = self.state.mint
        info = mint.access_token_info(bearer.strip()) if scheme.lower() == "bearer" else None
        if info is None or info.expired:
            raise google_api_error(401, _UNAUTHENTICATED, "UNAUTHENTICATED")
        record.caller = info.principal
        if not (info.has_scope(CLOUD_PLATFORM_SCOPE) or info.has_scope(_IAM_SCOPE)):
            raise google_api_error(
                403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED"
            )
        return info.principal

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise google_api_error(
                400, "Invalid JSON payload received.", "INVALID_ARGUMENT"
            ) from exc
        if not isinstance(body, dict):
            raise google_api_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        return body

    def _generate_access_token(
        self, target: str, body: dict[str, Any], record: RequestRecord
    ) -> Response:
        scopes = body.get("scope") or []
        if not isinstance(scopes, list) or not scopes:
            raise google_api_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
        record.scopes = tuple(str(s) for s in scopes)
        mint = self.state.mint
        lifetime = float(mint.token_lifetime)
        if body.get("lifetime"):
            lifetime = min(lifetime, _duration_seconds(str(body["lifetime"])))
        token = mint.issue_access_token(
            target, record.scopes, lifetime=lifetime, source="generate_access_token"
        )
        expires_at = time.time() + lifetime
        return json_response(200, {"accessToken": token, "expireTime": rfc3339(expires_at)})

    def _generate_id_token(
        self, target: str, body: dict[str, Any], record: RequestRecord
    ) -> Response:
        audience = body.get("audience")
        if not isinstance(audience, str) or not audience:
            raise google_api_error(
                400, "Invalid value for audience: must be non-empty.", "INVALID_ARGUMENT"
            )
        record.audience = audience
        account = self.state.accounts.service_account(target)
        if account is None:  # deleted since the check above
            raise google_api_error(404, _gaia_not_found(target), "NOT_FOUND")
        include_email = bool(body.get("includeEmail"))
        mint = self.state.mint
        claims = mint.id_claims(audience, target if include_email else None, account.unique_id)
        return json_response(200, {"token": mint.sign(claims)})


def _gaia_not_found(email: str) -> str:
    return f"Not found; Gaia id not found for email {email}"


def _delegate_email(delegate: Any) -> str:
    # Delegates may be "projects/-/serviceAccounts/EMAIL" or a bare email.
    return str(delegate).rpartition("/")[2]


def _duration_seconds(value: str) -> float:
    """A protobuf Duration in JSON form: ``"3600s"``, ``"1.5s"``."""
    try:
        seconds = float(value.removesuffix("s"))
    except ValueError as exc:
        raise google_api_error(
            400, f"Invalid value at 'lifetime' ({value}).", "INVALID_ARGUMENT"
        ) from exc
    if seconds <= 0 or seconds > 43200:
        raise google_api_error(
            400,
            "The lifetime must be between 1 second and 3600 seconds (or 43200 with the "
            "constraints/iam.allowServiceAccountCredentialLifetimeExtension policy).",
            "INVALID_ARGUMENT",
        )
    return seconds

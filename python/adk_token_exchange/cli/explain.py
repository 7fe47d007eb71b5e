"""Why a service accepted or refused a token, in plain words: pure functions, no I/O.

``doctor --probe`` calls :func:`~.probe.probe`, then :func:`explain_probe`
turns the status and the token's claims into a verdict, the likely cause and
the command that fixes it (google/adk-python#4458 and its relatives).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ProbeResult",
    "audience_for",
    "explain_probe",
    "grant_commands",
    "is_oauth_client_id",
]

# gcloud's and other installed-app OAuth clients: the `aud` of a user's ID token.
_OAUTH_CLIENT_ID = re.compile(r"^[0-9]+-[0-9a-z]+\.apps\.googleusercontent\.com$")
# https://SERVICE-PROJECT_NUMBER.REGION.run.app (deterministic Cloud Run URLs).
_RUN_APP_URL = re.compile(r"^(?P<service>[a-z0-9-]+?)-[0-9]+\.(?P<region>[a-z0-9-]+)\.run\.app$")
# https://SERVICE-HASH-REGIONCODE.a.run.app (older Cloud Run URLs).
_RUN_APP_LEGACY_URL = re.compile(r"^(?P<service>[a-z0-9-]+?)-[a-z0-9]{10}-[a-z]{2}\.a\.run\.app$")


def audience_for(url_or_audience: str, *, exact: bool = False) -> str:
    """The ``aud`` a service expects for a URL: its origin, unless ``exact``.

    The rule ``id_token_credential`` applies (one implementation, in the shim):
    ``https://svc-123.us-central1.run.app/mcp`` becomes
    ``https://svc-123.us-central1.run.app``, what Cloud Run checks; a value
    that is not an http(s) URL (an IAP OAuth client id, a custom audience)
    passes verbatim.
    """
    if exact:
        return url_or_audience
    from .._request import origin_of

    return origin_of(url_or_audience)


def is_oauth_client_id(aud: object) -> bool:
    """Whether ``aud`` is an OAuth client id (a user credential's ID token)."""
    return isinstance(aud, str) and bool(_OAUTH_CLIENT_ID.match(aud))


def _iam_member(principal: str | None) -> str:
    if not principal:
        return "serviceAccount:PRINCIPAL_EMAIL"
    if principal.endswith(".gserviceaccount.com"):
        return f"serviceAccount:{principal}"
    return f"user:{principal}"


def grant_commands(url: str, principal: str | None, *, iap: bool) -> list[str]:
    """The gcloud commands that let ``principal`` call the service at ``url``."""
    member = _iam_member(principal)
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    service, region = "SERVICE", "REGION"
    match = _RUN_APP_URL.match(host) or _RUN_APP_LEGACY_URL.match(host)
    if match:
        service = match.group("service")
        region = match.groupdict().get("region") or region
    if iap:
        iap_role = f"--member={member} --role=roles/iap.httpsResourceAccessor"
        return [
            "gcloud iap web add-iam-policy-binding --resource-type=cloud-run"
            f" --service={service} --region={region} {iap_role}  # IAP on Cloud Run",
            "gcloud iap web add-iam-policy-binding --resource-type=backend-services"
            f" --service=BACKEND_SERVICE {iap_role}  # IAP on a load balancer",
        ]
    if host.endswith(".cloudfunctions.net"):
        return [
            "gcloud functions add-invoker-policy-binding FUNCTION --region=REGION"
            f" --member={member}"
        ]
    return [
        f"gcloud run services add-iam-policy-binding {service} --region={region}"
        f" --member={member} --role=roles/run.invoker"
    ]


@dataclass
class ProbeResult:
    """What a service said to a request carrying the token, in plain words."""

    url: str
    status: int | None
    reason: str
    verdict: str
    """ok | authenticated | unauthenticated | forbidden | not_found | redirect |
    server_error | unreachable"""
    ok: bool
    explanation: list[str] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)
    www_authenticate: str | None = None
    iap: bool = False
    body: str | None = None


def explain_probe(
    result: ProbeResult,
    *,
    token_kind: str,
    claims: dict[str, Any],
    principal: str | None,
    source_kind: str | None,
    impersonating: str | None,
    now: float | None = None,
    federated: bool = False,
) -> ProbeResult:
    """Fill in ``verdict``, ``ok``, ``explanation`` and ``fix`` for a probe's status."""
    if result.status is None:
        return result
    now = time.time() if now is None else now
    status, url = result.status, result.url
    expected = audience_for(url)
    aud = claims.get("aud")
    who = claims.get("email") or principal
    say, fix = result.explanation, result.fix
    where = "IAP" if result.iap else "the service"
    if 200 <= status < 300:
        result.verdict, result.ok = "ok", True
        say.append(f"OK: {where} accepted the token ({status} {result.reason}).")
    elif 300 <= status < 400:
        result.verdict = "redirect"
        say.append(
            f"{status} {result.reason}: {where} redirected instead of answering. IAP sends"
            " requests without a valid token to the Google sign-in page; for a"
            " programmatic caller that means the token was not accepted."
        )
    elif status == 401:
        result.verdict = "unauthenticated"
        say.append(f"401 Unauthorized: {where} did not accept the token as proof of identity.")
        exp = claims.get("exp")
        if token_kind == "access" or not claims:
            say.append(
                "Cause: an access token was sent. Cloud Run, Cloud Functions and IAP want an"
                " OIDC ID token whose aud is the service (this is google/adk-python#4458)."
            )
            fix.append(f"adk-token-exchange id-token --audience {expected}")
            fix.append(f'In ADK: auth_credential=id_token_credential("{url}")')
        elif isinstance(exp, (int, float)) and exp <= now:
            say.append(f"Cause: the token expired {_ago(now - exp)}.")
            fix.append(f"adk-token-exchange id-token --audience {expected}  (a fresh token)")
        elif is_oauth_client_id(aud) and aud != expected:
            say.append(
                f"Cause: user credentials. The token's aud is the OAuth client id {aud} of"
                " your gcloud login, not the service. Cloud Run accepts that for development"
                " only; IAP never does."
            )
            fix.append(f"adk-token-exchange doctor --impersonate SA_EMAIL --probe {url}")
            fix.append(f'In ADK: id_token_credential("{expected}", impersonate="SA_EMAIL")')
        elif result.iap and _is_service_account_jwt(claims):
            wanted = url.rstrip("/*") + "/*"
            say.append(
                f"Cause: IAP refused the service-account JWT (aud={aud}). IAP wants iss = sub ="
                f" the service account, aud = the resource URL or a /* wildcard over it"
                f" ({wanted}), and at most one hour between iat and exp."
            )
            fix.append(f"adk-token-exchange doctor --iap-jwt --impersonate SA_EMAIL --probe {url}")
        elif result.iap:
            say.append(
                f"Cause: probably the audience. IAP expects an ID token's aud to be its OAuth"
                f" client id (not the service URL, which is Cloud Run's audience); the token"
                f" has aud={aud}. Without an OAuth client, IAP also takes a service-account JWT"
                " (IapJwtAuth, --iap-jwt)."
            )
            fix.append("adk-token-exchange doctor --exact --audience IAP_CLIENT_ID --probe " + url)
            fix.append(f"adk-token-exchange doctor --iap-jwt --impersonate SA_EMAIL --probe {url}")
        elif aud != expected:
            say.append(
                f"Cause: wrong audience. The token has aud={aud}, but a service at this URL"
                f" checks aud={expected} (the URL's origin)."
            )
            fix.append(f"adk-token-exchange id-token --audience {expected}")
            fix.append(f'In ADK: auth_credential=id_token_credential("{expected}")')
        else:
            say.append(
                f"The token's aud matches the URL's origin ({expected}). If you reach the"
                " service through a custom domain or load balancer, Cloud Run still expects"
                " its run.app URL (or a custom audience set on the service) as aud."
            )
        if impersonating is None and source_kind == "authorized_user" and not fix:
            fix.append(f"adk-token-exchange doctor --impersonate SA_EMAIL --probe {url}")
    elif status == 403:
        result.verdict = "forbidden"
        say.append(
            f"403 Forbidden: the token is valid, but {who or 'its principal'} is not allowed"
            f" to call this {'application' if result.iap else 'service'}."
        )
        if result.iap:
            say.append(
                "IAP checked the token and its audience; the principal is not on the"
                " resource's allow-list. Grant it the IAP-secured Web App User role"
                " (roles/iap.httpsResourceAccessor):"
            )
        else:
            say.append(
                "Grant it the Cloud Run Invoker role (roles/run.invoker) on the service"
                " (for Cloud Functions: the Cloud Functions Invoker role):"
            )
        if federated:
            say.append(
                "(Through Workload Identity Federation the service sees the impersonated"
                " service account, never the external identity: grant the role to it.)"
            )
        fix.extend(grant_commands(url, who if isinstance(who, str) else None, iap=result.iap))
    elif status == 404:
        result.verdict = "not_found"
        say.append(
            f"404 Not Found: nothing answers at {url}. Check the service URL, its region and"
            " the path (MCP servers usually serve /mcp)."
        )
    elif status >= 500:
        result.verdict = "server_error"
        say.append(
            f"{status} {result.reason}: the service failed. Authentication seems to have"
            " passed (Cloud Run and IAP reject tokens with 401/403); see the service's logs."
        )
    else:
        result.verdict, result.ok = "authenticated", True
        say.append(
            f"Authentication passed: Cloud Run and IAP reject tokens with 401/403, and this"
            f" {status} {result.reason} comes from the application itself (an MCP endpoint,"
            " for instance, expects a POST, not a GET)."
        )
    return result


def _is_service_account_jwt(claims: dict[str, Any]) -> bool:
    """A JWT a service account signed itself: ``iss`` = ``sub``, not Google's issuer."""
    iss = claims.get("iss")
    return (
        isinstance(iss, str)
        and iss == claims.get("sub")
        and iss not in ("https://accounts.google.com", "accounts.google.com")
    )


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes} minutes ago" if minutes else f"{int(seconds)} seconds ago"

"""``doctor``: which credential ADC found, what its token says, and (``--probe``) why a
service accepts or rejects it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .._request import CLOUD_PLATFORM
from ..errors import TokenExchangeError
from ._common import EXIT_OK, EXIT_TOKEN_ERROR, error_dict, progress
from .explain import audience_for, explain_probe, is_oauth_client_id
from .federation import federation_report, federation_steps, render_federation
from .probe import probe
from .tokens import credentials

__all__ = ["DoctorReport", "cmd_doctor"]


@dataclass
class DoctorReport:
    """Everything ``doctor`` found; rendered as text or JSON."""

    ok: bool = False
    workload: dict[str, Any] | None = None
    credentials: dict[str, Any] | None = None
    token: dict[str, Any] | None = None
    federation: dict[str, Any] | None = None
    """Workload Identity Federation: source, pool, provider, each step's outcome."""
    warnings: list[str] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    error: dict[str, str] | None = None


def cmd_doctor(args: argparse.Namespace) -> int:
    report = DoctorReport()
    try:
        _doctor(args, report)
    except TokenExchangeError as error:
        report.error = error_dict(error)
        report.ok = False
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        _render_doctor(report, sys.stdout)
    return EXIT_OK if report.ok else EXIT_TOKEN_ERROR


def _doctor(args: argparse.Namespace, report: DoctorReport) -> None:
    from .._native import clear_cache

    if not args.verbose:  # the core's warnings (e.g. user credentials) become report warnings
        logging.getLogger("adk_token_exchange").setLevel(logging.ERROR)
    clear_cache()  # explain what a fresh process would see
    _workload_findings(report)
    creds = credentials(args)
    if args.key:
        progress(f"doctor: reading {args.key} …")
    else:
        progress(
            "doctor: resolving Application Default Credentials"
            " (may probe the metadata server, up to a few seconds) …"
        )
    info = creds.resolve()
    report.credentials = {
        "kind": info.kind,
        "origin": info.origin,
        "principal": info.principal,
        "impersonating": info.impersonating,
        "quota_project_id": info.quota_project_id,
        "token_uri": info.token_uri,
        "steps": list(info.steps),
    }

    report.federation = federation_report(info)

    audience: str | None = None
    if getattr(args, "iap_jwt", False):
        from ..httpx_auth import iap_jwt_audience

        target = args.probe or args.audience
        if not target:
            raise TokenExchangeError("--iap-jwt needs --probe URL or --audience URL")
        jwt_audience = iap_jwt_audience(target, exact=args.exact)
        progress(f"doctor: signing a service-account JWT for {jwt_audience} …")
        token = creds.signed_jwt_request(jwt_audience).blocking()
        _finish(args, report, info, token, {"audience": jwt_audience}, jwt_audience)
        return
    if args.audience:
        audience = audience_for(args.audience, exact=args.exact)
    elif args.probe:
        audience = audience_for(args.probe)
    try:
        if audience is not None:
            progress(f"doctor: minting an ID token for {audience} …")
            token = creds.id_token(audience)
            requested: dict[str, Any] = {"audience": audience}
        else:
            scopes = [CLOUD_PLATFORM]
            progress("doctor: minting an access token (pass --audience URL for an ID token) …")
            token = creds.access_token(scopes)
            requested = {"scopes": scopes}
    except TokenExchangeError as error:
        if report.federation is not None:
            report.federation["steps"] = federation_steps(
                report.federation, error, wanted_id_token=audience is not None
            )
        raise
    if report.federation is not None:
        report.federation["steps"] = federation_steps(
            report.federation, None, wanted_id_token=audience is not None
        )
    _finish(args, report, info, token, requested, audience)


def _finish(
    args: argparse.Namespace,
    report: DoctorReport,
    info: Any,
    token: Any,
    requested: dict[str, Any],
    audience: str | None,
) -> None:
    now = time.time()
    claims = token.claims() or {}  # the core's one JWT reader; unverified, for display
    shown = {k: claims[k] for k in ("aud", "iss", "email", "sub", "azp", "exp") if k in claims}
    report.token = {
        "kind": token.kind,
        **requested,
        "claims": shown,
        "expires_at": token.expires_at,
        "minutes_left": round((token.expires_at - now) / 60, 1),
        "quota_project_id": token.quota_project_id,
    }
    aud = claims.get("aud")
    if token.kind == "id" and audience is not None and aud != audience:
        if is_oauth_client_id(aud) or info.kind == "authorized_user":
            report.warnings.append(
                f"The ID token's aud is the OAuth client id {aud} of your user login, not"
                f" {audience}. Cloud Run accepts such tokens for development only (and only"
                " if your account has roles/run.invoker); IAP never does. Mint one with the"
                " service's audience by impersonating a service account: --impersonate"
                " SA_EMAIL (you need roles/iam.serviceAccountTokenCreator on it)."
            )
        else:
            report.warnings.append(f"The ID token's aud is {aud}, not the requested {audience}.")
    if token.expires_at - now < 300:
        report.warnings.append("The token expires in less than 5 minutes.")
    report.ok = True

    if args.probe:
        progress(f"doctor: calling {args.probe} with the token …")
        result = probe(args.probe, token.value, timeout=args.timeout)
        explain_probe(
            result,
            token_kind=token.kind,
            claims=claims,
            principal=info.impersonating or info.principal,
            source_kind=info.kind,
            impersonating=info.impersonating,
            now=now,
            federated=report.federation is not None,
        )
        report.probe = asdict(result)
        report.ok = result.ok


def _workload_findings(report: DoctorReport) -> None:
    """Agent Identity and ADK's mTLS override: how they change the road, and what to grant."""
    from .. import _workload

    identity = _workload.agent_identity()
    invoker = _workload.invoker_service_account()
    mtls = _workload.adk_mtls_override()
    report.workload = {
        "agent_identity": identity,
        "invoker_service_account": invoker,
        "adk_mtls_override": mtls,
    }
    if identity is not None and invoker is None:
        report.warnings.append(
            f"Agent Identity detected ({identity}). Cloud Run does not accept the agent's own"
            " principal as an invoker, so its ID tokens get 401/403. Name an invoker service"
            f" account: {_workload.INVOKER_VAR}=SA_EMAIL (or impersonate='SA_EMAIL'), then grant"
            " the agent's principal roles/iam.serviceAccountTokenCreator on SA_EMAIL and"
            " SA_EMAIL roles/run.invoker on the service:\n"
            "gcloud iam service-accounts add-iam-policy-binding SA_EMAIL"
            " --member=AGENT_PRINCIPAL --role=roles/iam.serviceAccountTokenCreator\n"
            "gcloud run services add-iam-policy-binding SERVICE --region=REGION"
            " --member=serviceAccount:SA_EMAIL --role=roles/run.invoker"
        )
    elif identity is not None:
        report.warnings.append(
            f"Agent Identity detected ({identity}): ID tokens are minted as {invoker}"
            f" ({_workload.INVOKER_VAR}), with the metadata server's access token. The agent's"
            f" principal needs roles/iam.serviceAccountTokenCreator on {invoker}, and {invoker}"
            " roles/run.invoker on the service (IAP: roles/iap.httpsResourceAccessor)."
        )
    if mtls is not None:
        report.warnings.append(
            f"ADK replaces an MCP httpx_client_factory with its own mTLS transport here ({mtls}):"
            " http_client_factory(IdTokenAuth(url)) would send no token. Set"
            f" {_workload.USE_CLIENT_CERTIFICATE_VAR}=false for the agent, or use"
            " auth_credential=id_token_credential(url)."
        )


def _render_doctor(report: DoctorReport, out: Any) -> None:
    def line(text: str = "") -> None:
        print(text, file=out)

    creds = report.credentials
    line("Credentials")
    if creds is None:
        line("  not resolved")
    else:
        for number, step in enumerate(creds["steps"], 1):
            line(f"  {number}. {step}")
        line(f"  → {creds['kind']} from {creds['origin']}")
        for label, key in (
            ("principal", "principal"),
            ("impersonating", "impersonating"),
            ("quota project", "quota_project_id"),
            ("token endpoint", "token_uri"),
        ):
            if creds.get(key):
                line(f"    {label + ':':<16}{creds[key]}")
    if report.federation is not None:
        render_federation(report.federation, line)
    token = report.token
    if token is not None:
        line()
        if token["kind"] == "id":
            line(f"ID token for {token['audience']} (claims; the token itself is not shown)")
        else:
            line(f"Access token for {', '.join(token['scopes'])} (opaque: no claims to show)")
            line(
                "  (for the ID token a Cloud Run service would get: --audience URL or --probe URL)"
            )
        for key, value in token["claims"].items():
            if key == "exp":
                stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
                value = f"{stamp} ({token['minutes_left']:g} minutes left)"
            line(f"  {key:<6}{value}")
        if "exp" not in token["claims"]:
            line(f"  expires in {token['minutes_left']:g} minutes")
        if token.get("quota_project_id"):
            line(f"  quota project (x-goog-user-project): {token['quota_project_id']}")
    for warning in report.warnings:
        line()
        line(_wrap(f"warning: {warning}", "  "))
    result = report.probe
    if result is not None:
        line()
        status = f"{result['status']} {result['reason']}" if result["status"] else "no answer"
        by_iap = "  (answered by IAP)" if result["iap"] else ""
        line(f"Probe GET {result['url']} → {status}{by_iap}")
        if result["www_authenticate"]:
            line(_wrap(f"  WWW-Authenticate: {result['www_authenticate']}", "    "))
        if result["body"] and not result["ok"]:
            line(_wrap(f"  body: {result['body']}", "    "))
        for text in result["explanation"]:
            line(_wrap(f"  {text}", "  "))
        for command in result["fix"]:
            line(f"  → {command}")
    if report.error is not None:
        line()
        line(_wrap(f"error: {report.error['message']}", "  "))
    line()
    line("Result: OK" if report.ok else "Result: problem found (see above)")


def _wrap(text: str, indent: str) -> str:
    """One paragraph wrapped for a terminal; commands are never wrapped (copy-paste)."""
    import textwrap

    return f"\n{indent}".join(
        textwrap.fill(
            line,
            width=100,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for line in text.splitlines()
    )

"""The ``adk-token-exchange`` command: tokens for curl, a credential doctor, the demo.

``id-token`` and ``access-token`` print a token the way ``gcloud auth
print-identity-token`` does, but through the same Rust core and credential
chain an agent uses. ``doctor`` explains which credential Application Default
Credentials found, what the minted token says about itself, and, with
``--probe``, why a service accepts or rejects it: the questions behind
google/adk-python#4458. ``demo`` runs a real ADK agent against a local,
Cloud-Run-like MCP server, first with ADK's own exchanger, then with ours.

Exit codes: 0 ok, 1 token or credential error, 2 usage. Output never contains a
token (except the one ``id-token``/``access-token`` were asked to print), a
private key, a refresh token or a client secret.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import TokenExchangeError

if TYPE_CHECKING:
    from ._native import Credentials, Token

__all__ = ["main"]

EXIT_OK = 0
EXIT_TOKEN_ERROR = 1
EXIT_USAGE = 2

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PROBE_TIMEOUT_SECONDS = 15.0
_BODY_SNIPPET_CHARS = 300

# gcloud's and other installed-app OAuth clients: the `aud` of a user's ID token.
_OAUTH_CLIENT_ID = re.compile(r"^[0-9]+-[0-9a-z]+\.apps\.googleusercontent\.com$")
# https://SERVICE-PROJECT_NUMBER.REGION.run.app (deterministic Cloud Run URLs).
_RUN_APP_URL = re.compile(r"^(?P<service>[a-z0-9-]+?)-[0-9]+\.(?P<region>[a-z0-9-]+)\.run\.app$")
# https://SERVICE-HASH-REGIONCODE.a.run.app (older Cloud Run URLs).
_RUN_APP_LEGACY_URL = re.compile(r"^(?P<service>[a-z0-9-]+?)-[a-z0-9]{10}-[a-z]{2}\.a\.run\.app$")

# --------------------------------------------------------------------------- helpers


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
    from ._audience import origin_of

    return origin_of(url_or_audience)


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for display); ``{}`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


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


# --------------------------------------------------------------------------- probe


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it would carry the bearer token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _snippet(raw: bytes, token: str) -> str | None:
    text = raw.decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split()).replace(token, "***")
    if not text:
        return None
    if len(text) > _BODY_SNIPPET_CHARS:
        text = text[:_BODY_SNIPPET_CHARS] + "…"
    return text


def probe(url: str, token: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    """GET ``url`` with ``Authorization: Bearer <token>``; no redirects followed."""
    request = urllib.request.Request(
        url,
        method="GET",
        headers={
            "Authorization": f"Bearer {token}",
            # Not text/event-stream (nor */*): an MCP endpoint would open an
            # endless SSE stream; without it, it answers at once (406).
            "Accept": "application/json, text/plain, text/html",
            "User-Agent": "adk-token-exchange-doctor",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            # A 2xx body may be a stream that never ends: only the status matters.
            status, reason = int(response.status), str(response.reason)
            headers, raw = response.headers, b""
    except urllib.error.HTTPError as error:
        status, reason, headers = int(error.code), str(error.reason), error.headers
        try:
            raw = error.read(4096)
        except OSError:
            raw = b""
    except (urllib.error.URLError, OSError) as error:
        cause = getattr(error, "reason", error)
        return ProbeResult(
            url=url,
            status=None,
            reason=str(cause),
            verdict="unreachable",
            ok=False,
            explanation=[
                f"Could not reach {url}: {cause}. Nothing was said about the token;"
                " check the URL, DNS and network (or VPC ingress settings)."
            ],
        )
    result = ProbeResult(
        url=url,
        status=status,
        reason=reason,
        verdict="",
        ok=False,
        www_authenticate=headers.get("WWW-Authenticate") if headers else None,
        iap=bool(headers and headers.get("X-Goog-IAP-Generated-Response")),
        body=_snippet(raw, token),
    )
    return result


def explain_probe(
    result: ProbeResult,
    *,
    token_kind: str,
    claims: dict[str, Any],
    principal: str | None,
    source_kind: str | None,
    impersonating: str | None,
    now: float | None = None,
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
        elif result.iap:
            say.append(
                f"Cause: probably the audience. IAP expects aud to be its OAuth client id"
                f" (or the audience configured for IAP); the token has aud={aud}."
            )
            fix.append("adk-token-exchange id-token --exact --audience IAP_CLIENT_ID")
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
                "Grant it the IAP-secured Web App User role (roles/iap.httpsResourceAccessor):"
            )
        else:
            say.append(
                "Grant it the Cloud Run Invoker role (roles/run.invoker) on the service"
                " (for Cloud Functions: the Cloud Functions Invoker role):"
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


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes} minutes ago" if minutes else f"{int(seconds)} seconds ago"


# --------------------------------------------------------------------------- credentials


def _credentials(args: argparse.Namespace) -> Credentials:
    from ._native import Credentials

    if args.key:
        return Credentials.from_file(args.key, impersonate=args.impersonate)
    return Credentials.application_default(impersonate=args.impersonate)


def _scopes(raw: Sequence[str] | None) -> list[str]:
    scopes = [s for item in raw or () for s in item.replace(",", " ").split()]
    return scopes or [CLOUD_PLATFORM_SCOPE]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands


def _print_token(args: argparse.Namespace, token: Token, **extra: Any) -> int:
    if args.json:
        body = {"token": token.value, "kind": token.kind, "expires_at": token.expires_at}
        body.update(extra)
        print(json.dumps(body))
    else:
        print(token.value)
    return EXIT_OK


def _cmd_id_token(args: argparse.Namespace) -> int:
    audience = audience_for(args.audience, exact=args.exact)
    token = _credentials(args).id_token(audience)
    return _print_token(args, token, audience=audience)


def _cmd_access_token(args: argparse.Namespace) -> int:
    scopes = _scopes(args.scopes)
    token = _credentials(args).access_token(scopes)
    return _print_token(args, token, scopes=scopes, quota_project_id=token.quota_project_id)


@dataclass
class DoctorReport:
    """Everything ``doctor`` found; rendered as text or JSON."""

    ok: bool = False
    credentials: dict[str, Any] | None = None
    token: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    error: dict[str, str] | None = None


def _error_dict(error: BaseException) -> dict[str, str]:
    return {"type": type(error).__name__, "message": str(error)}


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = DoctorReport()
    try:
        _doctor(args, report)
    except TokenExchangeError as error:
        report.error = _error_dict(error)
        report.ok = False
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        _render_doctor(report, sys.stdout)
    return EXIT_OK if report.ok else EXIT_TOKEN_ERROR


def _doctor(args: argparse.Namespace, report: DoctorReport) -> None:
    from ._native import clear_cache

    if not args.verbose:  # the core's warnings (e.g. user credentials) become report warnings
        logging.getLogger("adk_token_exchange").setLevel(logging.ERROR)
    clear_cache()  # explain what a fresh process would see
    credentials = _credentials(args)
    if args.key:
        _progress(f"doctor: reading {args.key} …")
    else:
        _progress(
            "doctor: resolving Application Default Credentials"
            " (may probe the metadata server, up to a few seconds) …"
        )
    info = credentials.resolve()
    report.credentials = {
        "kind": info.kind,
        "origin": info.origin,
        "principal": info.principal,
        "impersonating": info.impersonating,
        "quota_project_id": info.quota_project_id,
        "token_uri": info.token_uri,
        "steps": list(info.steps),
    }

    audience: str | None = None
    if args.audience:
        audience = audience_for(args.audience, exact=args.exact)
    elif args.probe:
        audience = audience_for(args.probe)
    if audience is not None:
        _progress(f"doctor: minting an ID token for {audience} …")
        token = credentials.id_token(audience)
        requested: dict[str, Any] = {"audience": audience}
    else:
        scopes = [CLOUD_PLATFORM_SCOPE]
        _progress("doctor: minting an access token (pass --audience URL for an ID token) …")
        token = credentials.access_token(scopes)
        requested = {"scopes": scopes}

    now = time.time()
    claims = decode_jwt_claims(token.value)
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
        _progress(f"doctor: calling {args.probe} with the token …")
        result = probe(args.probe, token.value, timeout=args.timeout)
        explain_probe(
            result,
            token_kind=token.kind,
            claims=claims,
            principal=info.impersonating or info.principal,
            source_kind=info.kind,
            impersonating=info.impersonating,
            now=now,
        )
        report.probe = asdict(result)
        report.ok = result.ok


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


def _cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(verbose=args.verbose, out=sys.stdout)


# --------------------------------------------------------------------------- demo

DEMO_GOOGLE_LATENCY = 0.2
"""Seconds the emulated Google takes to issue a token: a real round trip's order."""
_DEMO_TIMEOUT = 90.0
_DEMO_PROJECT = "demo-project"
_DEMO_CALLER = f"mcp-caller@{_DEMO_PROJECT}.iam.gserviceaccount.com"
_DEMO_USER = "developer"
# Variables that could lead google-auth, gcloud or our core to real credentials.
_DEMO_UNSET = (
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "GCE_METADATA_ROOT",
    "NO_GCE_CHECK",
)


@dataclass
class DemoPhase:
    """What one agent run did, as seen by Google (emulated) and the MCP server."""

    title: str
    answer: str | None = None
    failure: str | None = None
    statuses: list[int] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    token_requests: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    max_loop_lag: float = 0.0
    seconds: float = 0.0

    @property
    def rejected(self) -> bool:
        """The server refused every request with 401 (what #4458 reports)."""
        return bool(self.statuses) and all(status == 401 for status in self.statuses)

    @property
    def succeeded(self) -> bool:
        """Every request was admitted and the agent quoted the tool's answer."""
        return (
            bool(self.statuses)
            and all(status == 200 for status in self.statuses)
            and self.answer is not None
            and "Hello" in self.answer
        )


def _tool_texts(value: Any) -> list[str]:
    """The ``text`` strings inside an MCP tool result."""
    if isinstance(value, dict):
        found = [value["text"]] if isinstance(value.get("text"), str) else []
        return found + [t for k, v in value.items() if k != "text" for t in _tool_texts(v)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _tool_texts(item)]
    return []


def _scripted_model() -> Any:
    """An ADK ``BaseLlm`` that needs no network: call ``greet``, then quote its answer."""
    from collections.abc import AsyncGenerator

    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_request import LlmRequest
    from google.adk.models.llm_response import LlmResponse
    from google.genai import types

    def reply(part: types.Part) -> LlmResponse:
        return LlmResponse(content=types.Content(role="model", parts=[part]))

    class ScriptedGreeter(BaseLlm):
        """Plays the model's part deterministically, as Gemini would for this prompt."""

        model: str = "scripted-greeter"

        async def generate_content_async(
            self, llm_request: LlmRequest, stream: bool = False
        ) -> AsyncGenerator[LlmResponse, None]:
            last = llm_request.contents[-1] if llm_request.contents else None
            for part in (last.parts or []) if last else []:
                if part.function_response is not None:
                    result = part.function_response.response or {}
                    texts = _tool_texts(result) or [json.dumps(result, default=str)]
                    yield reply(types.Part(text="Tool said: " + " ".join(texts)))
                    return
            if "greet" not in llm_request.tools_dict:
                yield reply(types.Part(text="I can't greet you: the MCP tools are unavailable."))
                return
            call = types.FunctionCall(name="greet", args={"name": _DEMO_USER})
            yield reply(types.Part(function_call=call))

    return ScriptedGreeter()


async def _warm_up() -> None:
    """Import what ADK and google-auth import lazily, so lag measures I/O, not imports."""
    import importlib

    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.runners import Runner
    from google.adk.sessions.in_memory_session_service import InMemorySessionService
    from google.genai import types

    for module in (
        "google.auth.compute_engine",
        "google.auth.transport.requests",
        "google.oauth2.id_token",
        "google.oauth2.service_account",
    ):
        importlib.import_module(module)
    agent = LlmAgent(name="warm_up", model=_scripted_model(), instruction="Say hello.")
    runner = Runner(app_name="demo", agent=agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name="demo", user_id=_DEMO_USER)
        message = types.Content(role="user", parts=[types.Part(text="Hi")])
        async for _ in runner.run_async(
            user_id=_DEMO_USER, session_id=session.id, new_message=message
        ):
            pass
    finally:
        await runner.close()


async def _run_agent(url: str, credential: Any, phase: DemoPhase) -> None:
    """Build the #4458 agent around ``credential``, run one user turn, record the outcome."""
    from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.runners import Runner
    from google.adk.sessions.in_memory_session_service import InMemorySessionService
    from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
    from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
    from google.genai import types

    scheme = OAuth2(
        flows=OAuthFlows(
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl="https://oauth2.googleapis.com/token",  # never called
                scopes={CLOUD_PLATFORM_SCOPE: "Google Cloud"},
            )
        )
    )
    agent = LlmAgent(
        name="cloud_run_agent",
        model=_scripted_model(),
        instruction="Use the available tools to greet the user.",
        tools=[
            McpToolset(
                connection_params=StreamableHTTPConnectionParams(url=url),
                auth_scheme=scheme,
                auth_credential=credential,
            )
        ],
    )
    runner = Runner(app_name="demo", agent=agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name="demo", user_id=_DEMO_USER)
        message = types.Content(role="user", parts=[types.Part(text="Hi, please greet me.")])
        async for event in runner.run_async(
            user_id=_DEMO_USER, session_id=session.id, new_message=message
        ):
            if event.error_message:
                phase.failure = event.error_message
            for part in (event.content.parts or []) if event.content else []:
                if part.text:
                    phase.answer = part.text
    except Exception as error:  # the agent's failure is the demo's subject
        text = " ".join(str(error).split())
        phase.failure = f"{type(error).__name__}: {text[:160]}"
    finally:
        await runner.close()


async def _run_phase(google: Any, server: Any, credential: Any, phase: DemoPhase) -> None:
    """Run the agent while measuring how long the event loop is ever kept from running."""
    google.reset_counts()
    server.reset_counts()
    stop = asyncio.Event()

    async def watch_loop(interval: float = 0.005) -> float:
        worst = 0.0
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(interval)
            worst = max(worst, time.perf_counter() - start - interval)
        return worst

    watcher = asyncio.create_task(watch_loop())
    await asyncio.sleep(0)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(_run_agent(server.url, credential, phase), _DEMO_TIMEOUT)
    except asyncio.TimeoutError:
        phase.failure = f"the agent did not finish within {_DEMO_TIMEOUT:g} s"
    phase.seconds = time.perf_counter() - started
    stop.set()
    phase.max_loop_lag = await watcher
    for decision in server.decisions:
        phase.statuses.append(decision.status)
        if not decision.accepted:
            phase.refusals.append(decision.reason)
    for record in google.requests:
        path = record.path.split("?")[0]
        if record.kind == "metadata" and path.endswith(("/token", "/identity")):
            where = "metadata server …/" + path.rsplit("/", 1)[1]
        elif record.kind == "iam":
            where = "IAM Credentials :" + path.rsplit(":", 1)[-1]
        elif record.kind == "token":
            where = "OAuth token endpoint"
        else:
            continue
        phase.token_requests.append(where)
        is_id = bool(record.audience) or path.endswith(("/identity", ":generateIdToken"))
        phase.tokens.append(f"ID token, aud={record.audience}" if is_id else "access token")


_STATUS_WORDS = {200: "OK", 401: "Unauthorized", 403: "Forbidden"}


def _counted(items: Sequence[Any]) -> str:
    counts: dict[Any, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return ", ".join(f"{item} ({n}x)" if n > 1 else str(item) for item, n in counts.items())


def _render_phase(number: int, phase: DemoPhase, out: Any) -> None:
    def row(label: str, text: str) -> None:
        print(f"   {label:<13}{text}", file=out)

    print(f"\n{number}. {phase.title}", file=out)
    row("token", ", ".join(dict.fromkeys(phase.tokens)) or "none minted")
    requests = phase.token_requests
    plural = "s" if len(requests) != 1 else ""
    row(
        "Google",
        f"{len(requests)} token request{plural}" + (f": {_counted(requests)}" if requests else ""),
    )
    verdict = _counted([f"{s} {_STATUS_WORDS.get(s, '')}".strip() for s in phase.statuses])
    why = "; ".join(dict.fromkeys(phase.refusals))
    row("MCP server", (verdict or "no requests") + (f": {why}" if why else ""))
    if phase.answer:
        row("agent", f'"{phase.answer}"')
    if phase.failure and not phase.succeeded:
        row("ADK", phase.failure)
    row(
        "event loop",
        f"blocked for up to {phase.max_loop_lag * 1000:.0f} ms (run took {phase.seconds:.1f} s)",
    )


def _quiet_libraries(verbose: bool) -> None:
    """ADK and the MCP SDK log the 401 with tracebacks; the demo tells it in words."""
    import warnings

    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        return
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("google_adk", "google", "mcp", "httpx", "uvicorn", "asyncio", "anyio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_demo(*, verbose: bool = False, out: Any = None) -> int:
    """The #4458 agent against a local Cloud-Run-like MCP server: ADK's exchanger, then ours.

    Returns 0 only if ADK's own exchanger got 401 and ours got the tool's answer.
    The process environment is pointed at a temporary HOME and gcloud config and
    at an emulated metadata server, so no real credential is ever read.
    """
    import os
    import tempfile

    out = out or sys.stdout
    saved = dict(os.environ)
    try:
        with tempfile.TemporaryDirectory(prefix="adk-token-exchange-demo-") as tmp:
            for name in _DEMO_UNSET:
                os.environ.pop(name, None)
            os.environ["HOME"] = os.path.join(tmp, "home")
            os.environ["CLOUDSDK_CONFIG"] = os.path.join(tmp, "gcloud")
            os.makedirs(os.environ["HOME"])
            os.makedirs(os.environ["CLOUDSDK_CONFIG"])
            no_proxy = os.environ.get("NO_PROXY", "")
            os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
                p for p in (no_proxy, "127.0.0.1", "localhost") if p
            )
            return _demo_with_emulator(verbose, out)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _demo_with_emulator(verbose: bool, out: Any) -> int:
    import os

    from .testing import GoogleEmulator, ProtectedMcpServer

    with GoogleEmulator(project_id=_DEMO_PROJECT, metadata_service_account=_DEMO_CALLER) as google:
        google.use_metadata_server(os.environ)
        # google-auth copies GCE_METADATA_HOST when first imported.
        metadata_module = sys.modules.get("google.auth.compute_engine._metadata")
        if metadata_module is not None:
            metadata_module._GCE_METADATA_HOST = google.metadata_host  # type: ignore[attr-defined]
        with ProtectedMcpServer(google) as server:
            _quiet_libraries(verbose)
            return asyncio.run(_demo(google, server, out))


async def _demo(google: Any, server: Any, out: Any) -> int:
    from google.adk.auth.auth_credential import (
        AuthCredential,
        AuthCredentialTypes,
        ServiceAccount,
    )

    import adk_token_exchange

    from ._native import Credentials, clear_cache

    clear_cache()
    info = await asyncio.to_thread(Credentials.application_default().resolve)
    await _warm_up()
    google.set_latency(DEMO_GOOGLE_LATENCY)
    print(
        'An ADK agent calls an MCP server that, like Cloud Run with "Require authentication",\n'
        "admits only Google-signed ID tokens whose aud is its URL (google/adk-python#4458).\n"
        f"All local: Google is emulated at {google.url} (a token takes"
        f" {DEMO_GOOGLE_LATENCY * 1000:.0f} ms,\nlike a real round trip); your own credentials are"
        " never read.\n",
        file=out,
    )
    print(f"   {'MCP server':<13}{server.url}  (expects aud={server.audience})", file=out)
    print(
        f"   {'credentials':<13}{info.origin} → {info.principal or _DEMO_CALLER}"
        f"  ({info.kind}, as on Cloud Run)",
        file=out,
    )

    stock = DemoPhase(
        "ADK's own exchanger, configured as in #4458:\n"
        "   ServiceAccount(use_default_credential=True, scopes=[cloud-platform])"
    )
    await _run_phase(
        google,
        server,
        AuthCredential(
            auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
            service_account=ServiceAccount(
                use_default_credential=True, scopes=[CLOUD_PLATFORM_SCOPE]
            ),
        ),
        stock,
    )
    _render_phase(1, stock, out)

    ours = DemoPhase(
        "The same agent with adk_token_exchange.install() and\n"
        "   auth_credential=id_token_credential(server.url)"
    )
    adk_token_exchange.install()
    try:
        await _run_phase(google, server, adk_token_exchange.id_token_credential(server.url), ours)
    finally:
        adk_token_exchange.uninstall()
    _render_phase(2, ours, out)

    ok = stock.rejected and ours.succeeded
    print(
        "\nResult: "
        + (
            "ADK's exchanger got 401; adk-token-exchange got 200 and the tool's answer."
            if ok
            else "unexpected outcome (see above; rerun with -v for logs)."
        ),
        file=out,
    )
    return EXIT_OK if ok else EXIT_TOKEN_ERROR


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logs of adk_token_exchange (and its Rust core) on stderr",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    creds = argparse.ArgumentParser(add_help=False)
    creds.add_argument(
        "--key",
        metavar="FILE",
        help="a credential JSON file (service_account, authorized_user,"
        " impersonated_service_account) instead of Application Default Credentials",
    )
    creds.add_argument(
        "--impersonate",
        metavar="EMAIL",
        help="mint the token as this service account (IAM Credentials API)",
    )

    parser = argparse.ArgumentParser(
        prog="adk-token-exchange",
        description="Google ID and access tokens for ADK agents calling Cloud Run, Cloud"
        " Functions and IAP (google/adk-python#4458).",
        epilog="Exit codes: 0 ok, 1 token or credential error, 2 usage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=False, help="debug logs")
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    id_token = commands.add_parser(
        "id-token",
        parents=[common, creds],
        help="print an ID token for a URL (like gcloud auth print-identity-token)",
        description="Print an OIDC ID token, e.g. for"
        ' curl -H "Authorization: Bearer $(adk-token-exchange id-token --audience URL)" URL',
    )
    id_token.add_argument(
        "--audience", required=True, metavar="URL", help="the service URL (its origin is used)"
    )
    id_token.add_argument(
        "--exact", action="store_true", help="use --audience verbatim, not the URL's origin"
    )
    id_token.set_defaults(handler=_cmd_id_token)

    access_token = commands.add_parser(
        "access-token",
        parents=[common, creds],
        help="print an OAuth2 access token (for Google APIs)",
    )
    access_token.add_argument(
        "--scopes",
        nargs="+",
        metavar="SCOPE",
        help=f"OAuth scopes (default: {CLOUD_PLATFORM_SCOPE})",
    )
    access_token.set_defaults(handler=_cmd_access_token)

    doctor = commands.add_parser(
        "doctor",
        parents=[common, creds],
        help="explain which credential is used, what its token says, and why a service"
        " accepts or rejects it",
    )
    doctor.add_argument("--audience", metavar="URL", help="mint an ID token for this audience")
    doctor.add_argument(
        "--exact", action="store_true", help="use --audience verbatim, not the URL's origin"
    )
    doctor.add_argument(
        "--probe",
        metavar="URL",
        help="call this URL with the token and explain the answer (implies --audience URL)",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=PROBE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"probe timeout (default {PROBE_TIMEOUT_SECONDS:g})",
    )
    doctor.set_defaults(handler=_cmd_doctor)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run an ADK agent against a local Cloud-Run-like MCP server:"
        " ADK's exchanger (401) vs this package (200)",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # The Rust core logs through pyo3-log under "adk_token_exchange._native…".
    logger = logging.getLogger("adk_token_exchange")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.json = getattr(args, "json", False)
    _configure_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except TokenExchangeError as error:
        return _fail(args, error)
    except OSError as error:  # e.g. an unreadable --key file
        return _fail(args, error)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: say so, without a traceback unless asked
        return _internal_error(args, error)
    except BaseException as error:  # pyo3's PanicException is a BaseException
        if type(error).__name__ != "PanicException":
            raise
        return _internal_error(args, error)


def _internal_error(args: argparse.Namespace, error: BaseException) -> int:
    if args.verbose:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    print(
        f"adk-token-exchange: internal error ({type(error).__name__}); please report it"
        " (rerun with -v for the traceback)",
        file=sys.stderr,
    )
    return EXIT_TOKEN_ERROR


def _fail(args: argparse.Namespace, error: BaseException) -> int:
    if args.json:
        print(json.dumps({"error": _error_dict(error)}))
    else:
        print(f"adk-token-exchange: error: {error}", file=sys.stderr)
    return EXIT_TOKEN_ERROR

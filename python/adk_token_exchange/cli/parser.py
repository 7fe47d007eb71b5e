"""The ``adk-token-exchange`` command line: its commands and options, nothing else."""

from __future__ import annotations

import argparse

from .._request import CLOUD_PLATFORM
from .probe import PROBE_TIMEOUT_SECONDS

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
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
        " impersonated_service_account, external_account, external_account_authorized_user)"
        " instead of Application Default Credentials",
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

    access_token = commands.add_parser(
        "access-token",
        parents=[common, creds],
        help="print an OAuth2 access token (for Google APIs)",
    )
    access_token.add_argument(
        "--scopes",
        nargs="+",
        metavar="SCOPE",
        help=f"OAuth scopes (default: {CLOUD_PLATFORM})",
    )

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
        "--iap-jwt",
        action="store_true",
        help="for IAP without an OAuth client: a service-account JWT for URL/* instead of an"
        " ID token (a key file, or --impersonate the signing account)",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=PROBE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"probe timeout (default {PROBE_TIMEOUT_SECONDS:g})",
    )

    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="check a token as a service would: verdict and claims (never the token)",
        description="Verify a Google-signed ID token (or, with --iap, an IAP assertion)"
        " against Google's published keys, as adk_token_exchange.server does in a service."
        " Exit 0 if valid, 1 if refused.",
    )
    verify.add_argument(
        "token",
        metavar="TOKEN",
        help="the token, or - to read it from stdin (an argument shows in ps and shell history)",
    )
    verify.add_argument(
        "--audience",
        required=True,
        action="append",
        metavar="AUD",
        help="the service's audience (repeatable); a URL also accepts its origin unless --exact",
    )
    verify.add_argument("--iap", action="store_true", help="an x-goog-iap-jwt-assertion (ES256)")
    verify.add_argument(
        "--email", action="append", metavar="EMAIL", help="allowed caller (repeatable)"
    )
    verify.add_argument(
        "--domain", action="append", metavar="DOMAIN", help="allowed Workspace domain, by hd"
    )
    verify.add_argument("--leeway", type=float, metavar="SECONDS", help="clock skew (default 10)")
    verify.add_argument(
        "--trusted-front",
        action="store_true",
        help="accept a token Cloud Run verified and stripped (SIGNATURE_REMOVED_BY_GOOGLE)",
    )
    verify.add_argument(
        "--exact", action="store_true", help="accept a URL --audience verbatim only"
    )
    verify.add_argument("--jwks-url", metavar="URL", help="another key set (e.g. the emulator's)")

    commands.add_parser(
        "demo",
        parents=[common],
        help="run an ADK agent against a local Cloud-Run-like MCP server:"
        " ADK's exchanger (401) vs this package (200)",
    )
    return parser

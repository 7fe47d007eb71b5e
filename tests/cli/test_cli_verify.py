"""``adk-token-exchange verify``: a token checked as a service would, verdict and claims only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from adk_token_exchange.testing import GoogleEmulator

SERVICE = "https://svc-xyz.a.run.app"
CALLER = "agent@proj.iam.gserviceaccount.com"


def verify(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adk_token_exchange", "verify", *args],
        env=dict(os.environ),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_valid_token_prints_the_verdict_and_the_claims_but_never_the_token(
    emulator: GoogleEmulator,
) -> None:
    token = emulator.issue_id_token(SERVICE, email=CALLER)

    result = verify(token, "--audience", f"{SERVICE}/mcp", "--jwks-url", emulator.jwks_url)

    assert result.returncode == 0, result.stderr
    first, _, claims = result.stdout.partition("\n")
    assert first.startswith(f"valid: Google ID token for '{SERVICE}' from {CALLER}")
    assert json.loads(claims)["email"] == CALLER
    assert token not in result.stdout + result.stderr


def test_a_token_from_stdin_that_is_refused_exits_1_saying_why(emulator: GoogleEmulator) -> None:
    token = emulator.issue_id_token(SERVICE, email=CALLER, lifetime=-600)

    result = verify("-", "--audience", SERVICE, "--jwks-url", emulator.jwks_url, stdin=token)

    assert result.returncode == 1
    assert result.stdout.startswith("refused (expired): token refused: expired")
    assert token not in result.stdout + result.stderr


def test_json_verdicts_for_an_iap_assertion_and_a_caller_not_allowed(
    emulator: GoogleEmulator,
) -> None:
    audience = "/projects/123456789012/apps/my-project"
    assertion = emulator.issue_iap_assertion(audience, email="ann@corp.example")
    common = ["--iap", "--audience", audience, "--jwks-url", emulator.iap_jwks_url, "--json"]

    ok = verify(assertion, *common)
    refused = verify(assertion, *common, "--email", "bob@corp.example")

    assert json.loads(ok.stdout)["claims"]["email"] == "ann@corp.example"
    assert (refused.returncode, json.loads(refused.stdout)["reason"]) == (1, "not_allowed")


def test_a_bad_key_set_url_is_a_usage_problem_named_not_a_traceback() -> None:
    result = verify("a.b.c", "--audience", SERVICE, "--jwks-url", "https://keys.evil.example/")

    assert result.returncode == 1
    assert "jwks_url" in result.stderr
    assert "Traceback" not in result.stderr

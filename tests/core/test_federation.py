"""Workload Identity Federation in the native core, against the emulator: what a
federated credential says it is, and how it fails — clearly, within bounded
time, and without a subject token in any output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from adk_token_exchange import _native
from adk_token_exchange.errors import (
    ConfigurationError,
    PermanentError,
    TransientError,
    UpstreamTimeoutError,
)
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.isolation import ClosedPort
from support.measure import Elapsed, bound

AUDIENCE = "https://mcp-federated-uc.a.run.app"
SA = "mcp-caller@emulated-project.iam.gserviceaccount.com"
REQUEST_TOKEN_HEADER = "Bearer ghs_SENTINEL_request_token"


@pytest.fixture
def github(emulator: GoogleEmulator) -> str:
    return emulator.add_oidc_provider()


def credentials(tmp_path: Path, info: dict[str, Any]) -> _native.Credentials:
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(info))
    return _native.Credentials.from_file(str(path))


def file_source(
    emulator: GoogleEmulator, audience: str, tmp_path: Path, **kw: Any
) -> dict[str, str]:
    path = tmp_path / "subject-token"
    path.write_text(emulator.issue_subject_token(audience, **kw))
    return {"file": str(path)}


def test_a_federated_credential_describes_source_pool_provider_and_target(
    emulator: GoogleEmulator, github: str, tmp_path: Path
) -> None:
    url, _ = emulator.github_actions_token_endpoint(github)
    source = {"url": url, "headers": {"Authorization": REQUEST_TOKEN_HEADER}}
    info = emulator.external_account_info(github, source, service_account=SA, token_lifetime=1200)

    described = credentials(tmp_path, info).resolve()

    assert described.kind == "external_account"
    assert described.impersonating == SA
    fed = described.federation
    assert fed is not None
    assert (fed.credential_source, fed.pool_kind, fed.pool_id, fed.provider_id) == (
        "url",
        "workload",
        "github",
        "my-repo",
    )
    assert fed.project_number == emulator.project_number
    assert fed.subject_from == f"{emulator.oidc_issuer}/token", "no query: it may carry secrets"
    assert fed.token_url == emulator.sts_token_url
    assert fed.token_lifetime_seconds == 1200
    shown = " ".join(repr(x) for x in (described, fed, credentials(tmp_path, info)))
    shown += " " + " ".join(str(getattr(fed, a)) for a in dir(fed) if not a.startswith("_"))
    assert "SENTINEL" not in shown and "api-version" not in shown


def test_sts_refusals_name_stss_error_and_are_not_retried(
    emulator: GoogleEmulator, github: str, tmp_path: Path
) -> None:
    creds = credentials(
        tmp_path, emulator.external_account_info(github, file_source(emulator, github, tmp_path))
    )
    emulator.fail_next(
        status=400,
        endpoint="sts",
        body={"error": "invalid_target", "error_description": "The pool is disabled."},
    )

    with pytest.raises(PermanentError) as caught:
        creds.access_token(["https://www.googleapis.com/auth/cloud-platform"])

    message = str(caught.value)
    assert "invalid_target" in message and "The pool is disabled." in message
    assert "names no enabled pool provider" in message
    assert emulator.count("sts") == 1


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'{"access_token": 5}', b'{"token_type": "Bearer"}', b"x" * 2_000_000],
    ids=["html", "wrong-type", "no-token", "huge"],
)
def test_malformed_sts_answers_are_permanent_errors(
    emulator: GoogleEmulator, github: str, tmp_path: Path, body: bytes
) -> None:
    creds = credentials(
        tmp_path, emulator.external_account_info(github, file_source(emulator, github, tmp_path))
    )
    emulator.respond_next(200, body, endpoint="sts")

    with pytest.raises(PermanentError):
        creds.access_token([])


def test_an_expired_subject_token_is_refused_and_never_shown(
    emulator: GoogleEmulator,
    github: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = file_source(emulator, github, tmp_path, lifetime=-30)
    subject = Path(source["file"]).read_text()
    creds = credentials(tmp_path, emulator.external_account_info(github, source))
    caplog.set_level(logging.DEBUG, logger="adk_token_exchange")

    with pytest.raises(PermanentError) as caught:
        creds.access_token([])

    assert "invalid_grant" in str(caught.value) and "expired" in str(caught.value)
    out, err = capfd.readouterr()
    seen = "\n".join([str(caught.value), repr(caught.value), caplog.text, out, err])
    assert subject not in seen and subject.split(".")[1] not in seen
    assert "sts" in caplog.text.lower() or "token" in caplog.text, "debug logging was on"


def test_an_unreachable_url_source_fails_quickly_as_transient(
    emulator: GoogleEmulator, github: str, tmp_path: Path
) -> None:
    with ClosedPort() as closed:
        source = {"url": f"http://{closed.authority}/token"}
        creds = credentials(tmp_path, emulator.external_account_info(github, source))
        with Elapsed() as t, pytest.raises(TransientError) as caught:
            creds.access_token([])
    assert t.seconds < bound(3.0)
    assert closed.authority in str(caught.value)
    assert emulator.count("sts") == 0


@pytest.mark.core_settings(request_timeout=1.5)
def test_a_hanging_url_source_ends_at_the_request_timeout(
    emulator: GoogleEmulator, github: str, tmp_path: Path
) -> None:
    source = emulator.github_actions_credential_source(github)
    request_token = source["headers"]["Authorization"].removeprefix("Bearer ")
    creds = credentials(tmp_path, emulator.external_account_info(github, source))
    emulator.hang_next(5, endpoint="oidc")

    with Elapsed() as t, pytest.raises(UpstreamTimeoutError) as caught:
        creds.access_token([])

    assert 1.5 <= t.seconds < bound(1.5), f"{t.seconds:.2f} s for request_timeout=1.5"
    assert request_token not in str(caught.value)


def test_missing_impersonation_refuses_id_tokens_at_once_but_serves_access_tokens(
    emulator: GoogleEmulator, github: str, tmp_path: Path
) -> None:
    creds = credentials(
        tmp_path, emulator.external_account_info(github, file_source(emulator, github, tmp_path))
    )

    with Elapsed() as t, pytest.raises(ConfigurationError) as caught:
        creds.id_token(AUDIENCE)

    assert t.seconds < 0.5 and emulator.count() == 0
    assert "service_account_impersonation_url" in str(caught.value)
    assert "--service-account=SA_EMAIL" in str(caught.value)
    token = creds.access_token([])
    info = emulator.access_token_info(token.value)
    assert info is not None and info.principal.startswith("principal://iam.googleapis.com/")


def test_a_workforce_login_refreshes_and_says_to_impersonate_for_id_tokens(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    corp = emulator.add_oidc_provider("corp", "okta", workforce=True)
    creds = credentials(tmp_path, emulator.workforce_login_info(corp, "alice@example.com"))

    token = creds.access_token([])

    info = emulator.access_token_info(token.value)
    assert info is not None and info.principal.endswith("/subject/alice@example.com")
    described = creds.resolve()
    assert described.kind == "external_account_authorized_user"
    assert described.federation is not None and described.federation.pool_kind == "workforce"
    with pytest.raises(ConfigurationError, match="impersonate"):
        creds.id_token(AUDIENCE)

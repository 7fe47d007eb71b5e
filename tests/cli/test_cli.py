"""The ``adk-token-exchange`` command, run as a user runs it: a subprocess.

Every run gets the test's isolated environment (conftest: temp HOME and gcloud
config, no key variable, metadata server at a closed port) plus whatever the
story needs: the emulator's metadata server, a key file, a gcloud login.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from adk_token_exchange.cli.explain import ProbeResult, explain_probe, grant_commands
from adk_token_exchange.testing import (
    CLOUD_PLATFORM_SCOPE,
    GCLOUD_ADC_CLIENT_ID,
    GOOGLE_ISSUER,
    GoogleEmulator,
    ProtectedMcpServer,
)

CLOUD_RUN_URL = "https://hello-mcp-123456789012.us-central1.run.app/mcp"
CLOUD_RUN_ORIGIN = "https://hello-mcp-123456789012.us-central1.run.app"
CLI_TIMEOUT = 60


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m adk_token_exchange ARGS`` with the test's environment (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "adk_token_exchange", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def metadata_env(emulator: GoogleEmulator) -> dict[str, str]:
    """The variables that make the emulator this machine's metadata server (as on Cloud Run)."""
    env: dict[str, str] = {}
    emulator.use_metadata_server(env)
    return env


def key_file(tmp_path: Path, info: dict[str, Any], name: str = "key.json") -> str:
    return str(GoogleEmulator.write_json(tmp_path, name, info))


def verified_claims(emulator: GoogleEmulator, token: str, audience: str) -> dict[str, Any]:
    """Verify like a Google-fronted service: the emulator's public key, RS256, aud, iss."""
    kid = jwt.get_unverified_header(token)["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        emulator.public_keys()[kid],
        algorithms=["RS256"],
        audience=audience,
        issuer=GOOGLE_ISSUER,
    )
    return claims


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


# -- id-token / access-token: tokens for curl ----------------------------------------


def test_id_token_on_cloud_run_is_for_the_service_origin(emulator: GoogleEmulator) -> None:
    result = cli("id-token", "--audience", CLOUD_RUN_URL, env=metadata_env(emulator))

    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = verified_claims(emulator, token, CLOUD_RUN_ORIGIN)
    assert claims["email"] == emulator.metadata_service_account
    assert result.stdout == token + "\n"


def test_id_token_from_service_account_key_file(emulator: GoogleEmulator, tmp_path: Path) -> None:
    info = emulator.service_account_info()

    result = cli("id-token", "--audience", CLOUD_RUN_URL, "--key", key_file(tmp_path, info))

    assert result.returncode == 0, result.stderr
    claims = verified_claims(emulator, result.stdout.strip(), CLOUD_RUN_ORIGIN)
    assert claims["email"] == info["client_email"]


def test_id_token_exact_keeps_the_audience_verbatim(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    path = key_file(tmp_path, emulator.service_account_info())

    result = cli("id-token", "--exact", "--audience", CLOUD_RUN_URL, "--key", path, "--json")

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["kind"] == "id"
    assert body["audience"] == CLOUD_RUN_URL
    verified_claims(emulator, body["token"], CLOUD_RUN_URL)


def test_access_token_from_key_file_has_the_requested_scopes(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    info = emulator.service_account_info()
    scope = "https://www.googleapis.com/auth/devstorage.read_only"

    result = cli("access-token", "--scopes", scope, "--key", key_file(tmp_path, info))

    assert result.returncode == 0, result.stderr
    issued = emulator.access_token_info(result.stdout.strip())
    assert issued is not None
    assert issued.principal == info["client_email"]
    assert issued.scopes == (scope,)


def test_access_token_defaults_to_cloud_platform_on_the_metadata_server(
    emulator: GoogleEmulator,
) -> None:
    result = cli("access-token", "--json", env=metadata_env(emulator))

    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    issued = emulator.access_token_info(body["token"])
    assert issued is not None and issued.has_scope(CLOUD_PLATFORM_SCOPE)
    assert body["kind"] == "access"
    assert body["scopes"] == [CLOUD_PLATFORM_SCOPE]


def test_impersonation_mints_the_target_service_accounts_id_token(
    emulator: GoogleEmulator,
) -> None:
    target = "mcp-invoker@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(target)

    env = {**metadata_env(emulator), "ADK_TOKEN_EXCHANGE_IAM_ENDPOINT": emulator.url}

    result = cli("id-token", "--audience", CLOUD_RUN_URL, "--impersonate", target, env=env)

    assert result.returncode == 0, result.stderr
    assert verified_claims(emulator, result.stdout.strip(), CLOUD_RUN_ORIGIN)["email"] == target


def test_verbose_shows_the_cores_debug_log_on_stderr_only(emulator: GoogleEmulator) -> None:
    result = cli("-v", "id-token", "--audience", CLOUD_RUN_URL, env=metadata_env(emulator))

    assert result.returncode == 0, result.stderr
    assert "DEBUG adk_token_exchange._native" in result.stderr
    assert "/identity" in result.stderr
    assert result.stdout.count("\n") == 1  # still just the token, for $(...)


# -- exit codes and errors --------------------------------------------------------------


def test_usage_errors_exit_2() -> None:
    assert cli("id-token").returncode == 2
    assert cli("no-such-command").returncode == 2
    assert cli().returncode == 2


def test_help_exits_0() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "doctor" in result.stdout and "demo" in result.stdout


def test_missing_key_file_is_a_credential_error_without_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")

    result = cli("id-token", "--audience", CLOUD_RUN_URL, "--key", missing)

    assert result.returncode == 1
    assert "nope.json" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_json_error_names_the_exception_class(tmp_path: Path) -> None:
    result = cli("access-token", "--json", "--key", str(tmp_path / "nope.json"))

    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"].endswith("Error")
    assert "nope.json" in error["message"]


def test_no_credentials_at_all_lists_what_was_tried_quickly() -> None:
    started = time.monotonic()
    result = cli("id-token", "--audience", CLOUD_RUN_URL)

    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr
    assert_no_traceback(result)


# -- doctor --------------------------------------------------------------------------


def test_doctor_explains_metadata_server_credentials_and_token_claims(
    emulator: GoogleEmulator,
) -> None:
    result = cli("doctor", "--audience", CLOUD_RUN_URL, env=metadata_env(emulator))

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "metadata" in out
    assert emulator.metadata_service_account in out
    assert f"aud   {CLOUD_RUN_ORIGIN}" in out
    assert f"iss   {GOOGLE_ISSUER}" in out
    assert "minutes left" in out
    assert "Result: OK" in out
    assert "metadata server" in result.stderr  # progress while ADC may probe it


def test_doctor_json_for_a_service_account_key_file(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    info = emulator.service_account_info()
    path = key_file(tmp_path, info)

    result = cli("doctor", "--json", "--key", path, "--audience", CLOUD_RUN_URL)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["credentials"]["kind"] == "service_account"
    assert report["credentials"]["principal"] == info["client_email"]
    assert report["token"]["kind"] == "id"
    assert report["token"]["claims"]["aud"] == CLOUD_RUN_ORIGIN
    assert report["token"]["claims"]["email"] == info["client_email"]
    assert 55 < report["token"]["minutes_left"] <= 60
    assert report["warnings"] == []


def test_doctor_warns_that_a_gcloud_login_mints_client_id_audiences(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    login = emulator.authorized_user_info()
    adc = Path(os.environ["CLOUDSDK_CONFIG"]) / "application_default_credentials.json"
    adc.write_text(json.dumps(login))

    text = cli("doctor", "--audience", CLOUD_RUN_URL)
    report = json.loads(cli("doctor", "--json", "--audience", CLOUD_RUN_URL).stdout)

    assert report["credentials"]["kind"] == "authorized_user"
    assert report["token"]["claims"]["aud"] == GCLOUD_ADC_CLIENT_ID
    [warning] = report["warnings"]
    assert "IAP never" in warning and "--impersonate" in warning
    assert "warning:" in text.stdout and "--impersonate" in text.stdout


def test_doctor_explains_a_federated_credential_step_by_step(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, tmp_path: Path
) -> None:
    github = emulator.add_oidc_provider()
    sa = "mcp-caller@emulated-project.iam.gserviceaccount.com"
    source = emulator.github_actions_credential_source(github)
    request_token = source["headers"]["Authorization"].removeprefix("Bearer ")
    path = key_file(tmp_path, emulator.external_account_info(github, source, service_account=sa))

    text = cli("-v", "doctor", "--key", path, "--probe", protected_mcp.url)
    report = json.loads(cli("doctor", "--json", "--key", path, "--audience", CLOUD_RUN_URL).stdout)

    assert text.returncode == 0, text.stdout + text.stderr
    out = text.stdout
    assert "Workload Identity Federation" in out
    assert f"url: {emulator.oidc_issuer}/token" in out
    assert "pool:           github (project 123456789012)" in out
    assert "provider:       my-repo" in out
    assert f"impersonating:  {sa}" in out
    assert f"STS exchange at {emulator.sts_token_url}: ok" in out
    assert "Result: OK" in out
    fed = report["federation"]
    assert (fed["credential_source"], fed["pool_id"], fed["impersonating"]) == ("url", "github", sa)
    assert [step.split(":")[0] for step in fed["steps"]][-1] == f"impersonation of {sa}"
    assert request_token not in text.stdout + text.stderr + json.dumps(report)


def test_doctor_says_which_federation_step_failed_and_what_to_grant(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    github = emulator.add_oidc_provider()
    subject = tmp_path / "token"
    subject.write_text(emulator.issue_subject_token(github))
    sa = "mcp-caller@emulated-project.iam.gserviceaccount.com"
    with_sa = key_file(
        tmp_path, emulator.external_account_info(github, {"file": str(subject)}, service_account=sa)
    )
    without_sa = key_file(
        tmp_path, emulator.external_account_info(github, {"file": str(subject)}), "no-sa.json"
    )
    emulator.restrict_impersonation()

    denied = json.loads(
        cli("doctor", "--json", "--key", with_sa, "--audience", CLOUD_RUN_URL).stdout
    )
    missing = cli("doctor", "--key", without_sa, "--audience", CLOUD_RUN_URL)

    assert denied["ok"] is False
    steps = denied["federation"]["steps"]
    assert steps[1].endswith(": ok")
    assert "refused" in steps[2] and "roles/iam.workloadIdentityUser" in steps[2]
    assert emulator.principal_set(github) in steps[2]
    assert missing.returncode == 1
    assert "impersonating:  none: access tokens only" in missing.stdout
    assert "--service-account=SA_EMAIL" in missing.stdout
    assert subject.read_text() not in missing.stdout + json.dumps(denied)


def test_doctor_without_any_credentials_lists_what_was_tried(tmp_path: Path) -> None:
    started = time.monotonic()
    result = cli("doctor")
    report = json.loads(cli("doctor", "--json").stdout)

    assert result.returncode == 1
    assert time.monotonic() - started < 20  # two runs; the metadata port refuses at once
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stdout
    assert "metadata" in result.stdout.lower()
    assert "Result: problem found" in result.stdout
    assert_no_traceback(result)
    assert report["ok"] is False
    assert report["error"]["type"] == "CredentialsNotFoundError"


def test_doctor_probe_with_the_right_audience_passes(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    result = cli("doctor", "--json", "--probe", protected_mcp.url, env=metadata_env(emulator))

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["token"]["claims"]["aud"] == protected_mcp.audience
    assert report["probe"]["verdict"] in ("ok", "authenticated")
    assert [d.accepted for d in protected_mcp.decisions] == [True]


def test_doctor_probe_with_a_wrong_audience_explains_the_401(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    wrong = "https://some-other-service.example.com"

    result = cli(
        "doctor", "--exact", "--audience", wrong, "--probe", protected_mcp.url,
        env=metadata_env(emulator),
    )  # fmt: skip

    assert result.returncode == 1
    out = " ".join(result.stdout.split())  # as read, not as wrapped
    assert "401 Unauthorized" in out
    assert "wrong audience" in out
    assert f"aud={wrong}" in out and f"aud={protected_mcp.audience}" in out
    assert f"--audience {protected_mcp.audience}" in out
    assert [d.reason for d in protected_mcp.decisions] == [f"audience {wrong!r} not accepted"]


def test_doctor_probe_403_names_the_role_and_the_grant_command(
    emulator: GoogleEmulator,
) -> None:
    with ProtectedMcpServer(emulator, allowed_invokers=["someone-else@example.com"]) as server:
        result = cli("doctor", "--probe", server.url, env=metadata_env(emulator))

    assert result.returncode == 1
    out = result.stdout
    assert "403 Forbidden" in out
    assert "Cloud Run Invoker role (roles/run.invoker)" in " ".join(out.split())
    assert (
        "gcloud run services add-iam-policy-binding SERVICE --region=REGION"
        f" --member=serviceAccount:{emulator.metadata_service_account} --role=roles/run.invoker"
    ) in out


def test_doctor_probe_of_an_unreachable_url_says_so(emulator: GoogleEmulator) -> None:
    closed = os.environ["GCE_METADATA_HOST"]  # conftest: a loopback port nobody listens on

    result = cli("doctor", "--json", "--probe", f"http://{closed}/mcp", env=metadata_env(emulator))

    assert result.returncode == 1
    assert json.loads(result.stdout)["probe"]["verdict"] == "unreachable"


# -- the probe's explanations, for responses only real Google gives -----------------------


def test_403_on_a_cloud_run_url_names_service_and_region() -> None:
    [command] = grant_commands(CLOUD_RUN_URL, "agent@p.iam.gserviceaccount.com", iap=False)

    assert command == (
        "gcloud run services add-iam-policy-binding hello-mcp --region=us-central1"
        " --member=serviceAccount:agent@p.iam.gserviceaccount.com --role=roles/run.invoker"
    )


def test_403_from_iap_grants_iap_secured_web_app_user_to_a_user() -> None:
    cloud_run, load_balancer = grant_commands(CLOUD_RUN_URL, "dev@example.com", iap=True)

    assert cloud_run.startswith(
        "gcloud iap web add-iam-policy-binding --resource-type=cloud-run --service=hello-mcp"
        " --region=us-central1 --member=user:dev@example.com"
        " --role=roles/iap.httpsResourceAccessor"
    )
    assert "--resource-type=backend-services" in load_balancer


def test_401_for_an_access_token_points_to_id_tokens() -> None:
    result = ProbeResult(CLOUD_RUN_URL, 401, "Unauthorized", "", ok=False)

    explain_probe(
        result, token_kind="access", claims={}, principal=None, source_kind="metadata",
        impersonating=None,
    )  # fmt: skip

    assert result.verdict == "unauthenticated"
    assert "access token" in " ".join(result.explanation)
    assert f"adk-token-exchange id-token --audience {CLOUD_RUN_ORIGIN}" in result.fix


def test_401_for_an_expired_token_says_expired() -> None:
    result = ProbeResult(CLOUD_RUN_URL, 401, "Unauthorized", "", ok=False)
    claims = {"aud": CLOUD_RUN_ORIGIN, "exp": time.time() - 600}

    explain_probe(
        result, token_kind="id", claims=claims, principal=None, source_kind="metadata",
        impersonating=None,
    )  # fmt: skip

    assert "expired 10 minutes ago" in " ".join(result.explanation)


def test_401_for_a_user_token_points_to_impersonation() -> None:
    result = ProbeResult(CLOUD_RUN_URL, 401, "Unauthorized", "", ok=False)
    claims = {"aud": GCLOUD_ADC_CLIENT_ID, "exp": time.time() + 600}

    explain_probe(
        result, token_kind="id", claims=claims, principal="dev@example.com",
        source_kind="authorized_user", impersonating=None,
    )  # fmt: skip

    text = " ".join(result.explanation)
    assert "user credentials" in text and "IAP never" in text
    assert any("--impersonate" in fix for fix in result.fix)


# -- secrets ---------------------------------------------------------------------------


def test_no_output_ever_contains_a_key_secret_or_token(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, tmp_path: Path
) -> None:
    sa = emulator.service_account_info()
    login = emulator.authorized_user_info(client_secret="SENTINEL-client-secret-5f2a")
    broken = {**sa, "private_key": sa["private_key"].replace("\n", "\nSENTINELKEY", 1)}
    secrets = [
        "SENTINEL",
        login["refresh_token"],
        *[line for line in sa["private_key"].splitlines() if "-----" not in line],
    ]
    runs = []
    for name, info in (("sa.json", sa), ("user.json", login), ("broken.json", broken)):
        path = key_file(tmp_path, info, name)
        minted = cli("id-token", "--audience", protected_mcp.url, "--key", path).stdout.strip()
        if minted:
            secrets.append(minted)
        for extra in ((), ("--json",)):
            runs.append(cli("-v", "doctor", "--key", path, "--probe", protected_mcp.url, *extra))
    runs.append(cli("id-token", "-v", "--audience", protected_mcp.url, "--key", path))
    assert runs[-1].returncode == 1  # the broken key

    output = "".join(run.stdout + run.stderr for run in runs)
    assert len(secrets) > 10
    for secret in secrets:
        assert secret not in output
    assert "Result: OK" in output  # the runs did work; they just kept the secrets

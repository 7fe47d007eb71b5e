"""``doctor`` on the roads: Agent Identity, ADK's mTLS override, IAP's 401 and 403.

Run as a user runs it, a subprocess, against the emulator's metadata server
and an IAP-like gate (``X-Goog-IAP-Generated-Response`` on its refusals).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.iap import DEFAULT_IAP_CLIENT_ID, IapProtectedMcpServer
from support.workload import client_certificate_config

INVOKER = "mcp-invoker@emulated-project.iam.gserviceaccount.com"


def doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adk_token_exchange", "doctor", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def metadata_env(emulator: GoogleEmulator, **extra: str) -> dict[str, str]:
    env: dict[str, str] = dict(extra)
    emulator.use_metadata_server(env)
    return env


def agent_identity_env(emulator: GoogleEmulator, tmp_path: Path, **extra: str) -> dict[str, str]:
    config = emulator.write_json(tmp_path, "certificate_config.json", {"cert_configs": {}})
    return metadata_env(
        emulator,
        GOOGLE_API_CERTIFICATE_CONFIG=str(config),
        ADK_TOKEN_EXCHANGE_IAM_ENDPOINT=emulator.url,
        **extra,
    )


def test_doctor_reports_agent_identity_without_an_invoker_and_what_to_grant(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    result = doctor("--json", env=agent_identity_env(emulator, tmp_path))

    report = json.loads(result.stdout)
    assert report["workload"]["agent_identity"] == "GOOGLE_API_CERTIFICATE_CONFIG is set"
    assert report["workload"]["invoker_service_account"] is None
    [warning] = [w for w in report["warnings"] if "Agent Identity" in w]
    assert "ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT=SA_EMAIL" in warning
    assert "roles/iam.serviceAccountTokenCreator" in warning
    assert "roles/run.invoker" in warning
    assert any("Agent Identity" in step for step in report["credentials"]["steps"])


def test_doctor_with_an_invoker_mints_the_id_token_as_it(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    emulator.register_service_account(INVOKER)
    env = agent_identity_env(emulator, tmp_path, ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT=INVOKER)

    result = doctor("--json", "--audience", "https://svc-123.us-central1.run.app", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["token"]["claims"]["email"] == INVOKER
    assert report["credentials"]["impersonating"] == INVOKER
    assert report["workload"]["invoker_service_account"] == INVOKER


def test_doctor_reports_adks_mtls_override_and_the_variable_to_set(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    config = client_certificate_config(tmp_path)
    env = metadata_env(emulator, GOOGLE_API_CERTIFICATE_CONFIG=str(config))

    report = json.loads(doctor("--json", env=env).stdout)

    assert report["workload"]["adk_mtls_override"] is not None
    assert any("GOOGLE_API_USE_CLIENT_CERTIFICATE=false" in w for w in report["warnings"])
    quiet = json.loads(
        doctor("--json", env={**env, "GOOGLE_API_USE_CLIENT_CERTIFICATE": "false"}).stdout
    )
    assert quiet["workload"]["adk_mtls_override"] is None


def test_doctor_probe_explains_iap_refusing_a_run_app_audience(emulator: GoogleEmulator) -> None:
    with IapProtectedMcpServer(emulator) as server:
        result = doctor("--probe", server.url, env=metadata_env(emulator))

    assert result.returncode == 1
    out = " ".join(result.stdout.split())
    assert "401 Unauthorized" in out and "(answered by IAP)" in out
    assert "OAuth client id" in out
    assert "--exact --audience IAP_CLIENT_ID" in out
    assert "--iap-jwt" in out


def test_doctor_probe_with_the_iap_client_id_passes(emulator: GoogleEmulator) -> None:
    with IapProtectedMcpServer(emulator) as server:
        result = doctor(
            "--json", "--exact", "--audience", DEFAULT_IAP_CLIENT_ID, "--probe", server.url,
            env=metadata_env(emulator),
        )  # fmt: skip

    report = json.loads(result.stdout)
    assert report["probe"]["verdict"] in ("ok", "authenticated"), report["probe"]


def test_doctor_probe_explains_iaps_403_as_the_missing_web_app_user_role(
    emulator: GoogleEmulator,
) -> None:
    with IapProtectedMcpServer(emulator, allowed_principals=["someone@example.com"]) as server:
        result = doctor(
            "--exact", "--audience", DEFAULT_IAP_CLIENT_ID, "--probe", server.url,
            env=metadata_env(emulator),
        )  # fmt: skip

    out = " ".join(result.stdout.split())
    assert "403 Forbidden" in out
    assert "allow-list" in out
    assert "IAP-secured Web App User role (roles/iap.httpsResourceAccessor)" in out
    assert f"--member=serviceAccount:{emulator.metadata_service_account}" in out


def test_doctor_iap_jwt_probe_signs_through_impersonation_and_passes(
    emulator: GoogleEmulator,
) -> None:
    signer = "iap-caller@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(signer)
    env = metadata_env(emulator, ADK_TOKEN_EXCHANGE_IAM_ENDPOINT=emulator.url)
    with IapProtectedMcpServer(emulator, allowed_principals=[signer]) as server:
        result = doctor(
            "--json", "--iap-jwt", "--impersonate", signer, "--probe", server.url, env=env
        )

    report = json.loads(result.stdout)
    assert report["token"]["claims"]["iss"] == signer
    assert report["token"]["claims"]["aud"] == f"{server.url}/*"
    assert report["probe"]["verdict"] in ("ok", "authenticated"), report["probe"]

"""The gates the road tests stand behind: Cloud Run's second header, IAP's two
modes, MCP session counting, and IAM signJwt's limits, checked with plain HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer, open_mcp_session
from adk_token_exchange.testing.iap import DEFAULT_IAP_CLIENT_ID, IapProtectedMcpServer
from adk_token_exchange.testing.protected import SIGNATURE_REMOVED, strip_signature

# Not text/event-stream: the MCP endpoint answers at once instead of opening a stream.
NO_STREAM = {"Accept": "application/json"}


def test_cloud_run_checks_x_serverless_authorization_first_and_strips_its_signature(
    emulator: GoogleEmulator,
) -> None:
    with ProtectedMcpServer(emulator, app_token="app") as server:
        token = emulator.issue_id_token(server.audience)
        reply = httpx.post(
            server.url,
            headers={
                "X-Serverless-Authorization": f"Bearer {token}",
                "Authorization": "Bearer app",
            },
        )

        assert reply.status_code != 401
        [seen] = server.app.requests
        assert seen.authorization == "Bearer app"
        assert seen.serverless_authorization == f"Bearer {strip_signature(token)}"
        assert seen.serverless_authorization.endswith(SIGNATURE_REMOVED)  # type: ignore[union-attr]
        assert server.decisions[0].header == "x-serverless-authorization"


def test_cloud_run_refuses_a_bad_second_header_even_with_a_valid_authorization(
    emulator: GoogleEmulator,
) -> None:
    with ProtectedMcpServer(emulator) as server:
        good = emulator.issue_id_token(server.audience)
        reply = httpx.post(
            server.url,
            headers={
                "X-Serverless-Authorization": "Bearer junk",
                "Authorization": f"Bearer {good}",
            },
        )

        assert reply.status_code == 401
        assert server.app.requests == []


def _service_account_jwt(emulator: GoogleEmulator, aud: str, lifetime: int = 3600) -> str:
    key = emulator.service_account_info()
    now = int(time.time())
    claims = {"iss": key["client_email"], "sub": key["client_email"], "aud": aud}
    claims.update({"iat": now, "exp": now + lifetime})
    return jwt.encode(
        claims, key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]}
    )


@pytest.mark.parametrize(
    ("token_kind", "expected"),
    [("client_id", 200), ("run_app", 401), ("jwt", 200), ("jwt_2h", 401), ("jwt_other", 401)],
)
def test_iap_gate_takes_its_client_id_or_a_service_account_jwt_for_the_url(
    emulator: GoogleEmulator, token_kind: str, expected: int
) -> None:
    with IapProtectedMcpServer(emulator) as server:
        token = {
            "client_id": lambda: emulator.issue_id_token(DEFAULT_IAP_CLIENT_ID),
            "run_app": lambda: emulator.issue_id_token(server.audience),
            "jwt": lambda: _service_account_jwt(emulator, f"{server.url}/*"),
            "jwt_2h": lambda: _service_account_jwt(emulator, f"{server.url}/*", 7200),
            "jwt_other": lambda: _service_account_jwt(emulator, "https://other.example.com/*"),
        }[token_kind]()
        reply = httpx.post(
            server.url, json={}, headers={**NO_STREAM, "Proxy-Authorization": f"Bearer {token}"}
        )

        gate = server.decisions[0]
        assert (gate.status if not gate.accepted else 200) == expected, gate.reason
        if expected != 200:
            assert reply.headers.get("x-goog-iap-generated-response") == "true"


async def test_mcp_session_log_counts_one_initialize_per_session(
    emulator: GoogleEmulator,
) -> None:
    with ProtectedMcpServer(emulator) as server:
        token = emulator.issue_id_token(server.audience)
        for _ in range(2):
            async with open_mcp_session(server.url, token=token) as session:
                await session.list_tools()
                await session.call_tool("whoami", {})

        assert server.sessions.initializations == 2


def test_sign_jwt_refuses_an_exp_more_than_twelve_hours_ahead(emulator: GoogleEmulator) -> None:
    signer = "signer@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(signer)
    caller = emulator.issue_access_token("caller@example.com")
    payload = {"iss": signer, "sub": signer, "exp": int(time.time()) + 13 * 3600}

    reply = httpx.post(
        emulator.iam_url(signer, "signJwt"),
        json={"payload": json.dumps(payload)},
        headers={"Authorization": f"Bearer {caller}"},
    )

    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_google_auths_fetch_id_token_passes_the_iap_gate_for_its_client_id(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import google.auth.transport.requests
    from google.oauth2 import id_token

    path = emulator.write_json(tmp_path, "key.json", emulator.service_account_info())
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    token = id_token.fetch_id_token(google.auth.transport.requests.Request(), DEFAULT_IAP_CLIENT_ID)
    with IapProtectedMcpServer(emulator) as server:
        httpx.post(
            server.url, json={}, headers={**NO_STREAM, "Proxy-Authorization": f"Bearer {token}"}
        )

        assert server.decisions[0].accepted, server.decisions[0].reason

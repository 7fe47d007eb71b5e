"""Impersonation reuses the source credential's access token across impersonated tokens."""

from __future__ import annotations

import pytest
from adk_token_exchange import _native
from adk_token_exchange.testing import GoogleEmulator


def test_gcloud_login_impersonating_mints_many_audiences_with_one_refresh_grant(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    emulator.write_application_default_credentials(emulator.authorized_user_info())
    target = "mcp-caller@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(target)
    creds = _native.Credentials.application_default(impersonate=target)

    audiences = [f"https://svc-{n}.example.com" for n in range(3)]
    tokens = [creds.id_token(audience) for audience in audiences]

    for audience, token in zip(audiences, tokens, strict=True):
        assert emulator.verify_id_token(token.value, audience)["email"] == target
    assert emulator.count("token") == 1, "the user's access token is fetched once, then reused"
    assert emulator.count("iam") == 3

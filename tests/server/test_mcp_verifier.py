"""McpTokenVerifier: the verifier through the mcp SDK's own auth (2.x MCPServer, 1.x FastMCP)."""

from __future__ import annotations

import httpx
import pytest
from adk_token_exchange.errors import ConfigurationError
from adk_token_exchange.server import IapVerifier, IdTokenVerifier, McpTokenVerifier
from adk_token_exchange.testing import GoogleEmulator, open_mcp_session
from support.servers import mcp_app_with_verifier, serve

SERVICE = "https://svc-xyz.a.run.app"
CALLER = "agent@proj.iam.gserviceaccount.com"


@pytest.fixture
def mcp_verifier(emulator: GoogleEmulator) -> McpTokenVerifier:
    return McpTokenVerifier(IdTokenVerifier(SERVICE, jwks_url=emulator.jwks_url))


async def test_a_valid_token_becomes_the_sdks_access_token_for_the_caller(
    emulator: GoogleEmulator, mcp_verifier: McpTokenVerifier
) -> None:
    token = emulator.issue_id_token(SERVICE, email=CALLER)

    access = await mcp_verifier.verify_token(token)

    assert access is not None
    assert (access.client_id, access.resource, access.subject) == (
        CALLER,
        SERVICE,
        access.claims["sub"] if access.claims else None,
    )
    assert access.scopes == []
    assert token not in repr(access) and token not in str(access)


async def test_an_invalid_token_is_none_for_the_sdk_to_answer_401(
    emulator: GoogleEmulator, mcp_verifier: McpTokenVerifier
) -> None:
    expired = emulator.issue_id_token(SERVICE, email=CALLER, lifetime=-600)

    assert await mcp_verifier.verify_token(expired) is None
    assert await mcp_verifier.verify_token("not-a-token") is None


def test_iap_and_trusted_front_verifiers_are_refused_with_the_alternative(
    emulator: GoogleEmulator,
) -> None:
    with pytest.raises(ConfigurationError, match="GoogleAuthMiddleware"):
        McpTokenVerifier(IapVerifier("/projects/1/apps/p"))
    front = IdTokenVerifier(SERVICE, trusted_front=True, jwks_url=emulator.jwks_url)
    with pytest.raises(ConfigurationError, match="cannot tell which header"):
        McpTokenVerifier(front)


def test_auth_settings_name_google_as_issuer_and_leave_aud_to_the_verifier(
    mcp_verifier: McpTokenVerifier,
) -> None:
    # pytest turns warnings into errors: the SDK's deprecation warning would fail this.
    settings = mcp_verifier.auth_settings(f"{SERVICE}/mcp")

    assert str(settings.issuer_url).rstrip("/") == "https://accounts.google.com"
    assert getattr(settings, "validate_token_resource", False) is False


async def test_an_mcp_server_using_the_sdks_auth_serves_verified_callers_only(
    emulator: GoogleEmulator,
) -> None:
    def make(origin: str) -> object:
        verifier = McpTokenVerifier(IdTokenVerifier(origin, jwks_url=emulator.jwks_url))
        return mcp_app_with_verifier(verifier, f"{origin}/mcp")

    with serve(make) as served:
        url = f"{served.origin}/mcp"
        token = emulator.issue_id_token(served.origin, email=CALLER)
        async with open_mcp_session(url, token=token) as session:
            result = await session.call_tool("greet", {"name": "Ada"})
        async with httpx.AsyncClient() as client:
            anonymous = await client.post(url, json={})
            for_another = await client.post(
                url,
                json={},
                headers={"Authorization": f"Bearer {emulator.issue_id_token(SERVICE)}"},
            )

    assert result.content[0].text == f"Hello, Ada! (called by {CALLER})"
    assert anonymous.status_code == 401
    assert for_another.status_code == 401

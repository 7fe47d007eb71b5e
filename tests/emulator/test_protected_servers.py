"""The protected servers let through what Cloud Run and Google APIs let through, and no more."""

from __future__ import annotations

from unittest import mock

import pytest
import requests
from adk_token_exchange.testing import (
    CLOUD_PLATFORM_SCOPE,
    GCLOUD_CLIENT_ID,
    GoogleEmulator,
    ProtectedMcpServer,
    ProtectedRestServer,
    open_mcp_session,
)
from google.auth.transport.requests import Request
from google.oauth2 import service_account

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-03-26",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_ACCEPT = "application/json, text/event-stream"


def post_initialize(server: ProtectedMcpServer, token: str | None) -> requests.Response:
    """One raw MCP request, as any streamable HTTP client sends it first."""
    headers = {"Accept": MCP_ACCEPT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(server.url, json=INITIALIZE, headers=headers, timeout=10)


def text_of(result: object) -> str:
    return "".join(getattr(block, "text", "") for block in getattr(result, "content", []))


# -- the MCP server behind "Require authentication" ------------------------------------


@pytest.mark.parametrize(
    ("stateless", "json_response"), [(True, False), (False, False), (True, True)]
)
async def test_mcp_client_with_valid_id_token_lists_and_calls_tools(
    emulator: GoogleEmulator, stateless: bool, json_response: bool
) -> None:
    caller = "agent@emulated-project.iam.gserviceaccount.com"
    with ProtectedMcpServer(emulator, stateless=stateless, json_response=json_response) as server:
        token = emulator.issue_id_token(server.audience, email=caller)

        async with open_mcp_session(server.url, token=token) as session:
            tools = await session.list_tools()
            reply = await session.call_tool("greet", {"name": "Ada"})

    assert {tool.name for tool in tools.tools} == {"whoami", "greet"}
    assert text_of(reply) == f"Hello, Ada! (called by {caller})"


async def test_mcp_tool_reports_service_account_that_google_auth_minted_for(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    info = emulator.service_account_info()
    creds = service_account.IDTokenCredentials.from_service_account_info(
        info, target_audience=protected_mcp.audience
    )
    with requests.Session() as http:
        creds.refresh(Request(http))

    async with open_mcp_session(protected_mcp.url, token=creds.token) as session:
        reply = await session.call_tool("whoami", {})

    assert text_of(reply) == info["client_email"]
    assert protected_mcp.decisions[-1].email == info["client_email"]


def test_request_without_authorization_is_401_with_bearer_challenge(
    protected_mcp: ProtectedMcpServer,
) -> None:
    response = post_initialize(protected_mcp, None)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert protected_mcp.decisions[-1].reason == "missing bearer token"


def test_access_token_is_rejected_like_cloud_run_does(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    """google/adk-python#4458: an OAuth access token gets 401 from Cloud Run."""
    access_token = emulator.issue_access_token("agent@emulated-project.iam.gserviceaccount.com")

    response = post_initialize(protected_mcp, access_token)

    assert response.status_code == 401
    assert not protected_mcp.decisions[-1].accepted


def test_id_token_for_the_mcp_path_instead_of_the_origin_is_rejected(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    token = emulator.issue_id_token(protected_mcp.url)

    response = post_initialize(protected_mcp, token)

    assert response.status_code == 401
    assert protected_mcp.decisions[-1].audience == protected_mcp.url


def test_id_token_for_another_service_is_rejected(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    token = emulator.issue_id_token("https://other-service-xyz-uc.a.run.app")

    assert post_initialize(protected_mcp, token).status_code == 401


def test_expired_id_token_is_rejected(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    token = emulator.issue_id_token(protected_mcp.audience, lifetime=-10)

    response = post_initialize(protected_mcp, token)

    assert response.status_code == 401
    assert protected_mcp.decisions[-1].reason == "expired"


def test_id_token_not_signed_by_google_is_rejected(protected_mcp: ProtectedMcpServer) -> None:
    with GoogleEmulator() as impostor:
        token = impostor.issue_id_token(protected_mcp.audience)

    assert post_initialize(protected_mcp, token).status_code == 401


def test_id_token_with_foreign_issuer_is_rejected(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    token = emulator.issue_id_token(protected_mcp.audience, claims={"iss": "https://evil.example"})

    assert post_initialize(protected_mcp, token).status_code == 401


def test_valid_id_token_passes_the_gate(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    token = emulator.issue_id_token(protected_mcp.audience)

    response = post_initialize(protected_mcp, token)

    assert response.status_code == 200
    assert protected_mcp.count(accepted=True) == 1


def test_gcloud_client_id_audience_is_accepted_when_configured(emulator: GoogleEmulator) -> None:
    with ProtectedMcpServer(emulator, extra_audiences=[GCLOUD_CLIENT_ID]) as server:
        token = emulator.issue_id_token(GCLOUD_CLIENT_ID, email="dev@example.com")

        response = post_initialize(server, token)

    assert response.status_code == 200


def test_caller_without_invoker_role_gets_403(emulator: GoogleEmulator) -> None:
    allowed = "invoker@emulated-project.iam.gserviceaccount.com"
    with ProtectedMcpServer(emulator, allowed_invokers=[allowed]) as server:
        token = emulator.issue_id_token(server.audience, email="someone@example.com")

        response = post_initialize(server, token)

    assert response.status_code == 403


async def test_mcp_client_with_access_token_fails_to_connect(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    access_token = emulator.issue_access_token("agent@emulated-project.iam.gserviceaccount.com")

    with pytest.raises(Exception):  # noqa: B017 - the SDKs raise different errors for 401
        async with open_mcp_session(protected_mcp.url, token=access_token):
            pass

    assert protected_mcp.count(accepted=True) == 0


async def test_adk_mcp_toolset_calls_tool_through_the_gate(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    """ADK's own MCP client (streamable HTTP) works against the protected server."""
    from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
    from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
    from google.adk.tools.tool_context import ToolContext

    caller = "agent@emulated-project.iam.gserviceaccount.com"
    token = emulator.issue_id_token(protected_mcp.audience, email=caller)
    toolset = McpToolset(
        connection_params=StreamableHTTPConnectionParams(
            url=protected_mcp.url, headers={"Authorization": f"Bearer {token}"}
        )
    )
    try:
        tools = {tool.name: tool for tool in await toolset.get_tools()}
        reply = await tools["greet"].run_async(
            args={"name": "Ada"}, tool_context=mock.MagicMock(spec=ToolContext)
        )
    finally:
        await toolset.close()

    assert reply["content"][0]["text"] == f"Hello, Ada! (called by {caller})"
    assert protected_mcp.count(accepted=False) == 0


# -- the REST API that takes access tokens ----------------------------------------------


def get_greeting(server: ProtectedRestServer, token: str | None) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.get(f"{server.url}/v1/projects/demo/greeting", headers=headers, timeout=10)


def test_rest_server_serves_openapi_spec_with_bearer_scheme(
    protected_rest: ProtectedRestServer,
) -> None:
    spec = requests.get(protected_rest.spec_url, timeout=10).json()

    assert spec["openapi"].startswith("3.")
    assert spec["servers"] == [{"url": protected_rest.url}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }


def test_rest_server_accepts_access_token_from_the_emulator(
    emulator: GoogleEmulator, protected_rest: ProtectedRestServer
) -> None:
    token = emulator.issue_access_token("agent@emulated-project.iam.gserviceaccount.com")

    response = get_greeting(protected_rest, token)

    assert response.status_code == 200
    assert response.json() == {
        "greeting": "Hello from demo!",
        "caller": "agent@emulated-project.iam.gserviceaccount.com",
    }


def test_rest_server_rejects_id_token(
    emulator: GoogleEmulator, protected_rest: ProtectedRestServer
) -> None:
    token = emulator.issue_id_token(protected_rest.url)

    response = get_greeting(protected_rest, token)

    assert response.status_code == 401
    assert protected_rest.decisions[-1].reason == "an ID token, not an access token"


def test_rest_server_rejects_missing_token(protected_rest: ProtectedRestServer) -> None:
    assert get_greeting(protected_rest, None).status_code == 401


def test_rest_server_rejects_expired_access_token(
    emulator: GoogleEmulator, protected_rest: ProtectedRestServer
) -> None:
    token = emulator.issue_access_token("agent@example.com", lifetime=-1)

    assert get_greeting(protected_rest, token).status_code == 401


def test_rest_server_rejects_token_without_required_scope_with_403(
    emulator: GoogleEmulator, protected_rest: ProtectedRestServer
) -> None:
    token = emulator.issue_access_token(
        "agent@example.com", ["https://www.googleapis.com/auth/userinfo.email"]
    )

    response = get_greeting(protected_rest, token)

    assert response.status_code == 403
    assert CLOUD_PLATFORM_SCOPE in response.headers["WWW-Authenticate"]
    assert protected_rest.decisions[-1].reason == "insufficient scope"

"""Agent Identity (Agent Engine, Cloud Run ``agent-identity``) calling a Cloud Run MCP server.

The agent's own principal is not accepted as a Cloud Run invoker
(GoogleCloudPlatform/cloud-networking-solutions#56). With
``ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT`` (or ``impersonate=``) the ID
token is minted as that service account through IAM Credentials, with the
metadata server's (unbound) access token as the source; without one, one
warning names the fix. Agent Identity is what the workload shows:
``GOOGLE_API_CERTIFICATE_CONFIG``, as on Agent Engine.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import adk_token_exchange
import pytest
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.agents import greeting
from support.processes import in_fresh_process
from support.roads import run_turns, toolset_agent, uninstall_after_each_test  # noqa: F401

INVOKER = "mcp-invoker@emulated-project.iam.gserviceaccount.com"
AGENT = "agent-identity@emulated-project.iam.gserviceaccount.com"


@pytest.fixture
def agent_engine(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> GoogleEmulator:
    """A workload with Agent Identity: the metadata server speaks for the agent."""
    emulator.metadata_service_account = AGENT
    emulator.use_metadata_server(monkeypatch)
    config = emulator.write_json(tmp_path, "certificate_config.json", {"cert_configs": {}})
    monkeypatch.setenv("GOOGLE_API_CERTIFICATE_CONFIG", str(config))
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")  # no mTLS probing by ADK
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    emulator.register_service_account(INVOKER)
    emulator.restrict_impersonation()
    emulator.allow_impersonation(AGENT, INVOKER)
    return emulator


def toolset(url: str, **credential: object) -> McpToolset:
    return McpToolset(
        connection_params=StreamableHTTPConnectionParams(url=url),
        auth_scheme=SCHEME,
        auth_credential=adk_token_exchange.id_token_credential(url, **credential),  # type: ignore[arg-type]
    )


async def test_agent_identity_mints_id_tokens_as_the_invoker_service_account(
    agent_engine: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT", INVOKER)
    with ProtectedMcpServer(agent_engine, allowed_invokers=[INVOKER]) as server:
        turns = await run_turns(toolset_agent(toolset(server.url)), 2)

        assert turns.answers == [greeting(INVOKER)] * 2
        assert server.count(accepted=False) == 0
    [iam] = [r for r in agent_engine.requests if r.kind == "iam"]
    assert iam.path.endswith(f"{INVOKER}:generateIdToken")
    assert iam.caller == AGENT, "the metadata server's access token authorized the call"
    metadata = [r for r in agent_engine.requests if r.kind == "metadata"]
    assert all(r.path.endswith(("/token", "/")) for r in metadata), "no ID token of the agent's own"
    assert all("bound" not in str(r.query) for r in metadata), "plain unbound GETs"


async def test_agent_identity_with_explicit_impersonation(
    agent_engine: GoogleEmulator,
) -> None:
    with ProtectedMcpServer(agent_engine, allowed_invokers=[INVOKER]) as server:
        turns = await run_turns(toolset_agent(toolset(server.url, impersonate=INVOKER)))

        assert turns.answers == [greeting(INVOKER)]


async def test_agent_identity_access_tokens_stay_the_agents_own(
    agent_engine: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Google APIs accept the agent's principal: only ID tokens go through the invoker.
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT", INVOKER)
    from adk_token_exchange import _native

    token = await _native.Credentials.application_default().access_token_async(
        ["https://www.googleapis.com/auth/cloud-platform"]
    )
    info = agent_engine.access_token_info(token.value)
    assert info is not None and info.principal == AGENT
    assert not [r for r in agent_engine.requests if r.kind == "iam"]


@in_fresh_process()  # the warning is once per process
async def test_agent_identity_without_an_invoker_warns_once_naming_the_variable(
    agent_engine: GoogleEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with ProtectedMcpServer(agent_engine, allowed_invokers=[INVOKER]) as server:
        for _ in range(2):
            # ADK 1.24.1 raises the MCP failure, 2.x answers without the tool.
            with contextlib.suppress(Exception):
                await run_turns(toolset_agent(toolset(server.url)))

        refused = [d for d in server.decisions if not d.accepted]
        assert refused and {d.status for d in refused} == {403}
        assert {d.email for d in refused} == {AGENT}
    warnings = [r.getMessage() for r in caplog.records if "Agent Identity" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT" in warnings[0]
    assert "roles/run.invoker" in warnings[0]

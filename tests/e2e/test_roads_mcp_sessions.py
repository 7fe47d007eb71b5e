"""MCP sessions that survive token rotation (google/adk-python#5959), through a real agent.

ADK pools MCP sessions by an MD5 of the merged headers, ``Authorization``
included: with ``auth_credential`` every new token opens a new MCP session
and the old one lingers until its idle timeout. With
``StreamableHTTPConnectionParams(httpx_client_factory=http_client_factory(IdTokenAuth(url)))``
the token is put on each request below the pool, so one session carries every
token. The emulator issues 3-second tokens; the agent calls the tool across
more than three of their lifetimes. Runs on ADK 2.x and 1.24.1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import adk_token_exchange
import pytest
from adk_token_exchange import IdTokenAuth, http_client_factory
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.agents import greeting
from support.roads import run_turns, toolset_agent, uninstall_after_each_test  # noqa: F401
from support.workload import client_certificate_config

LIFETIME = 3
TURNS = 10
PAUSE = 1.2  # 10 turns over ~11 s: more than three 3-second token lifetimes


def _tokens_minted(emulator: GoogleEmulator) -> int:
    return sum(1 for r in emulator.requests if r.kind == "token" and r.status == 200)


@pytest.fixture
def short_lived(emulator: GoogleEmulator, tmp_path: Path) -> tuple[str, Path]:
    """3-second tokens, and a key file for them."""
    emulator.token_lifetime = LIFETIME
    key = emulator.service_account_info()
    return key["client_email"], emulator.write_json(tmp_path, "key.json", key)


async def test_one_mcp_session_carries_every_rotated_token_with_http_client_factory(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    short_lived: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    email, path = short_lived
    auth = IdTokenAuth(protected_mcp.url, service_account_key=path)
    toolset = McpToolset(
        connection_params=StreamableHTTPConnectionParams(
            url=protected_mcp.url, httpx_client_factory=http_client_factory(auth)
        )
    )

    turns = await run_turns(toolset_agent(toolset), TURNS, pause=PAUSE)

    assert turns.answers == [greeting(email)] * TURNS
    assert protected_mcp.count(accepted=False) == 0
    minted = _tokens_minted(emulator)
    assert minted >= 3, f"only {minted} tokens in {TURNS} turns: no rotation to survive"
    assert protected_mcp.sessions.initializations == 1
    with capsys.disabled():
        print(
            f"\nhttp_client_factory: {protected_mcp.sessions.initializations} MCP session for"
            f" {minted} tokens in {TURNS} turns"
        )


async def test_auth_credential_path_opens_an_mcp_session_per_token(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    short_lived: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The other road, measured beside it: it works, a session per token.
    email, path = short_lived
    toolset = McpToolset(
        connection_params=StreamableHTTPConnectionParams(url=protected_mcp.url),
        auth_scheme=SCHEME,
        auth_credential=adk_token_exchange.id_token_credential(
            protected_mcp.url, service_account_key=str(path)
        ),
    )

    turns = await run_turns(toolset_agent(toolset), TURNS, pause=PAUSE)

    assert turns.answers == [greeting(email)] * TURNS
    minted = _tokens_minted(emulator)
    sessions = protected_mcp.sessions.initializations
    with capsys.disabled():
        print(f"\nauth_credential: {sessions} MCP sessions for {minted} tokens in {TURNS} turns")
    assert minted >= 3
    assert sessions >= minted - 1, "ADK pools by the header value: one session per token"


async def test_the_token_rotates_in_a_stateful_mcp_session_too(
    emulator: GoogleEmulator, short_lived: tuple[str, Path]
) -> None:
    # A server that hands out an Mcp-Session-Id: the one session id stays valid.
    email, path = short_lived
    with ProtectedMcpServer(emulator, stateless=False) as server:
        auth = IdTokenAuth(server.url, service_account_key=path)
        toolset = McpToolset(
            connection_params=StreamableHTTPConnectionParams(
                url=server.url, httpx_client_factory=http_client_factory(auth)
            )
        )

        turns = await run_turns(toolset_agent(toolset), 6, pause=PAUSE * 1.5)

        assert turns.answers == [greeting(email)] * 6
        assert len(server.sessions.session_ids) == 1
        assert server.sessions.initializations == 1
    assert _tokens_minted(emulator) >= 3


def test_http_client_factory_builds_the_client_flavour_the_installed_mcp_speaks(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    import importlib.metadata

    major = int(importlib.metadata.version("mcp").split(".")[0])
    path = emulator.write_json(tmp_path, "key.json", emulator.service_account_info())
    factory = http_client_factory(IdTokenAuth("https://mcp.example.com", service_account_key=path))

    client = factory(headers={"X-Extra": "1"})

    expected = "httpx2" if major >= 2 else "httpx"
    assert type(client).__module__.split(".")[0] == expected
    assert client.headers["X-Extra"] == "1"


def test_http_client_factory_warns_once_when_adk_would_replace_it_with_mtls(
    emulator: GoogleEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Agent Identity: a workload certificate google-auth finds, and
    # GOOGLE_API_USE_CLIENT_CERTIFICATE unset: ADK 2.x would swap our factory
    # for its own mTLS transport (mcp_session_manager._get_mtls_transport).
    from adk_token_exchange import _workload

    config = client_certificate_config(tmp_path)
    monkeypatch.setenv("GOOGLE_API_CERTIFICATE_CONFIG", str(config))
    monkeypatch.delenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", raising=False)
    monkeypatch.setattr(_workload, "_warned", type(_workload._warned)())
    path = emulator.write_json(tmp_path, "sa.json", emulator.service_account_info())
    caplog.set_level(logging.WARNING, logger="adk_token_exchange")
    from google.adk.tools.mcp_tool import mcp_session_manager

    # The override arrived within 2.x (ADK 1.x and 2.0 have none: docs/compatibility.md).
    adk_overrides = hasattr(mcp_session_manager.MCPSessionManager, "_get_mtls_transport")

    for _ in range(2):
        http_client_factory(IdTokenAuth("https://mcp.example.com", service_account_key=path))

    warnings = [r.getMessage() for r in caplog.records if "mTLS" in r.getMessage()]
    if not adk_overrides:
        assert warnings == [], "an ADK without the override never replaces the factory"
        return
    assert len(warnings) == 1, warnings
    assert "GOOGLE_API_USE_CLIENT_CERTIFICATE=false" in warnings[0]
    assert _workload.adk_mtls_override() is not None

    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
    assert _workload.adk_mtls_override() is None

"""End to end, both sides of this package: a real ADK agent gets an ID token through
``id_token_credential`` and calls servers that check it with ``adk_token_exchange.server``.

Real ``LlmAgent``, ``McpToolset`` and ``Runner``; the model is scripted; Google is the
local emulator (it mints the agent's token and serves the keys the servers verify with).
"""

from __future__ import annotations

import adk_token_exchange
import httpx
from adk_token_exchange.server import GoogleAuthMiddleware, IdTokenVerifier, McpTokenVerifier
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX, ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth.auth_credential import AuthCredential
from google.adk.runners import Runner
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from google.genai import types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.servers import (
    StatusLog,
    mcp_app_behind_middleware,
    mcp_app_with_verifier,
    serve,
)


def agent(url: str, credential: AuthCredential | None) -> LlmAgent:
    toolset = (
        McpToolset(
            connection_params=StreamableHTTPConnectionParams(url=url),
            auth_scheme=SCHEME,
            auth_credential=credential,
        )
        if credential is not None
        else McpToolset(connection_params=StreamableHTTPConnectionParams(url=url))
    )
    return LlmAgent(
        name="greeter",
        model=ScriptedLlm(
            tool="greet", args={"name": "Ada"}, when_tool_missing="no tools reachable"
        ),
        instruction="Use the tools to greet the user.",
        tools=[toolset],
    )


async def answer(llm_agent: LlmAgent) -> str | None:
    """The agent's final text for one user turn, or what it raised."""
    runner = Runner(app_name="e2e", agent=llm_agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name="e2e", user_id="u")
        message = types.Content(role="user", parts=[types.Part(text="Say hello")])
        texts = [
            part.text
            async for event in runner.run_async(
                user_id="u", session_id=session.id, new_message=message
            )
            for part in ((event.content.parts or []) if event.content else [])
            if part.text
        ]
        return texts[-1] if texts else None
    except Exception as exc:
        return repr(exc)
    finally:
        await runner.close()
        adk_token_exchange.uninstall()


async def test_an_adk_agent_calls_an_mcp_server_that_checks_it_through_the_mcp_sdks_auth(
    emulator: GoogleEmulator,
) -> None:
    key = emulator.service_account_info()
    log: list[StatusLog] = []

    def make(origin: str) -> object:
        verifier = IdTokenVerifier(origin, emails=[key["client_email"]], jwks_url=emulator.jwks_url)
        log.append(StatusLog(mcp_app_with_verifier(McpTokenVerifier(verifier), f"{origin}/mcp")))
        return log[0]

    with serve(make) as served:
        url = f"{served.origin}/mcp"
        credential = adk_token_exchange.id_token_credential(url, service_account_key=key)

        said = await answer(agent(url, credential))

    assert said == f"{ANSWER_PREFIX}Hello, Ada! (called by {key['client_email']})"
    assert 401 not in log[0].statuses
    assert emulator.count("certs") == 1, "the server fetched Google's keys once"


async def test_an_agent_without_a_token_gets_401_and_no_tool(emulator: GoogleEmulator) -> None:
    log: list[StatusLog] = []

    def make(origin: str) -> object:
        verifier = IdTokenVerifier(origin, jwks_url=emulator.jwks_url)
        log.append(StatusLog(mcp_app_with_verifier(McpTokenVerifier(verifier), f"{origin}/mcp")))
        return log[0]

    with serve(make) as served:
        said = await answer(agent(f"{served.origin}/mcp", None))

    assert "Hello" not in (said or "")
    assert log[0].statuses and set(log[0].statuses) == {401}


async def test_an_adk_agent_calls_an_mcp_app_behind_the_asgi_middleware(
    emulator: GoogleEmulator,
) -> None:
    key = emulator.service_account_info()
    stranger = emulator.service_account_info()

    def make(origin: str) -> object:
        verifier = IdTokenVerifier(origin, emails=[key["client_email"]], jwks_url=emulator.jwks_url)
        return mcp_app_behind_middleware(verifier)

    with serve(make) as served:
        url = f"{served.origin}/mcp"
        allowed = await answer(
            agent(url, adk_token_exchange.id_token_credential(url, service_account_key=key))
        )
        adk_token_exchange.clear_cache()
        refused = await answer(
            agent(url, adk_token_exchange.id_token_credential(url, service_account_key=stranger))
        )

    assert allowed == f"{ANSWER_PREFIX}Hello, Ada! (called by {key['client_email']})"
    assert "Hello" not in (refused or "")


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"caller": request.state.google_claims["email"]})


async def test_a_starlette_app_with_the_middleware_serves_this_packages_httpx_auth(
    emulator: GoogleEmulator,
) -> None:
    key = emulator.service_account_info()

    def make(origin: str) -> object:
        app = Starlette(routes=[Route("/whoami", whoami)])
        verifier = IdTokenVerifier(origin, jwks_url=emulator.jwks_url)
        app.add_middleware(GoogleAuthMiddleware, verifier=verifier)
        return app

    with serve(make) as served:
        url = f"{served.origin}/whoami"
        auth = adk_token_exchange.IdTokenAuth(url, service_account_key=key)
        async with httpx.AsyncClient(auth=auth) as client:
            responses = [await client.get(url) for _ in range(5)]
        async with httpx.AsyncClient() as client:
            anonymous = await client.get(url)

    assert [r.json() for r in responses] == [{"caller": key["client_email"]}] * 5
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

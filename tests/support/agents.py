"""A real ADK agent run end to end: an ``LlmAgent`` with a scripted model, its
toolsets, a ``Runner`` over in-memory sessions, and what came back (imports ADK).

Shared by the end-to-end tests; the model is
:mod:`adk_token_exchange.testing.scripted_llm`, Google the local emulator.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

import adk_token_exchange
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX, ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth.auth_credential import AuthCredential
from google.adk.events.event import Event
from google.adk.runners import Runner
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from google.adk.tools.openapi_tool.openapi_spec_parser.openapi_toolset import OpenAPIToolset
from google.genai import types

from support.adk import ISSUE_4458_SCHEME as SCHEME

__all__ = [
    "APP",
    "REQUEST_CREDENTIAL",
    "USER",
    "Run",
    "attempt",
    "greeted",
    "greeting",
    "mcp_agent",
    "private_network_ok",
    "reset_exchangers",
    "run_agent",
    "run_once",
]

APP = "e2e"
USER = "user"
REQUEST_CREDENTIAL = "adk_request_credential"


@dataclass
class Run:
    events: list[Event]

    @property
    def answer(self) -> str | None:
        for event in reversed(self.events):
            for part in (event.content.parts or []) if event.content else []:
                if part.text and part.text.startswith(ANSWER_PREFIX):
                    return part.text
        return None

    @property
    def function_calls(self) -> list[str]:
        return [call.name or "" for event in self.events for call in event.get_function_calls()]


def mcp_agent(url: str, credential: AuthCredential, llm: ScriptedLlm | None = None) -> LlmAgent:
    return LlmAgent(
        name="greeter",
        model=llm or ScriptedLlm(tool="greet", args={"name": "Ada"}),
        instruction="Use the tools to greet the user.",
        tools=[
            McpToolset(
                connection_params=StreamableHTTPConnectionParams(url=url),
                auth_scheme=SCHEME,
                auth_credential=credential,
            )
        ],
    )


async def run_agent(agent: LlmAgent, *, sessions: int = 1) -> list[Run]:
    """One user turn in each of ``sessions`` concurrent sessions."""
    runner = Runner(app_name=APP, agent=agent, session_service=InMemorySessionService())

    async def one() -> Run:
        session = await runner.session_service.create_session(app_name=APP, user_id=USER)
        message = types.Content(role="user", parts=[types.Part(text="Say hello")])
        events = [
            event
            async for event in runner.run_async(
                user_id=USER, session_id=session.id, new_message=message
            )
        ]
        return Run(events)

    try:
        return list(await asyncio.gather(*(one() for _ in range(sessions))))
    finally:
        await runner.close()


async def run_once(agent: LlmAgent) -> Run:
    return (await run_agent(agent))[0]


async def attempt(agent: LlmAgent) -> Run | Exception:
    """The run, or what it raised (ADK's failure shape differs per version)."""
    try:
        return await run_once(agent)
    except Exception as exc:
        return exc


def greeted(outcome: Run | Exception) -> bool:
    """Whether the MCP tool answered (ADK 2.x answers a failed listing with "no such tool")."""
    return isinstance(outcome, Run) and "Hello, " in (outcome.answer or "")


def greeting(caller: str, name: str = "Ada") -> str:
    return f"{ANSWER_PREFIX}Hello, {name}! (called by {caller})"


def reset_exchangers(*, uninstall: bool = True) -> None:
    """ADK's own exchanger cache empty (and, by default, ours uninstalled). Our token
    cache is kept: credentials are told apart by key material, and each emulator has
    URLs of its own."""
    if uninstall:
        adk_token_exchange.uninstall()
    _reset_stock_cache()


def _reset_stock_cache() -> None:
    from google.adk.tools.openapi_tool.auth.credential_exchangers import (
        service_account_exchanger as stock,
    )

    reset = getattr(stock, "_reset_cache", None)  # ADK >= 1.26 caches tokens
    if reset is not None:
        reset()


def private_network_ok() -> dict[str, Any]:
    if "allow_private_network_access" in inspect.signature(OpenAPIToolset).parameters:
        return {"allow_private_network_access": True}  # the API is on 127.0.0.1
    return {}

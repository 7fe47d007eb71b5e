"""Running a real ADK agent for the road tests: turns in one session, what it answered.

(One turn across many sessions, the other shape, is :mod:`support.agents`.)

The roads' end-to-end tests (``tests/e2e/test_roads_*.py``) drive a real
``Runner`` over a real agent (``LlmAgent`` with MCP tools, or a
``RemoteA2aAgent``); the model is :class:`~adk_token_exchange.testing.scripted_llm.ScriptedLlm`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX, ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.events.event import Event
from google.adk.runners import Runner
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.genai import types

from support.agents import greeting

__all__ = [
    "APP",
    "USER",
    "Turns",
    "greeting",
    "run_turns",
    "toolset_agent",
    "uninstall_after_each_test",
]

APP = "roads"
USER = "user"


@pytest.fixture(autouse=True)
def uninstall_after_each_test() -> Iterator[None]:
    """ADK as it ships after every road test (``id_token_credential`` installs), so a
    later test in the same process (check-wheel runs e2e and adk/ together) starts clean.
    Import it into a test module to apply it there."""
    yield
    adk_token_exchange.uninstall()


@dataclass
class Turns:
    """What each user turn of one session produced."""

    events: list[list[Event]]

    @property
    def answers(self) -> list[str | None]:
        """Each turn's last ``Tool said: …`` text, or ``None``."""
        found: list[str | None] = []
        for turn in self.events:
            texts = [
                part.text
                for event in turn
                for part in ((event.content.parts or []) if event.content else [])
                if part.text and part.text.startswith(ANSWER_PREFIX)
            ]
            found.append(texts[-1] if texts else None)
        return found


def toolset_agent(toolset: Any, *, tool: str = "greet") -> LlmAgent:
    """An agent that calls ``tool`` of ``toolset`` once per turn and quotes the answer."""
    return LlmAgent(
        name="greeter",
        model=ScriptedLlm(tool=tool, args={"name": "Ada"} if tool == "greet" else {}),
        instruction="Use the tools to greet the user.",
        tools=[toolset],
    )


async def run_turns(
    agent: Any, turns: int = 1, *, pause: float = 0.0, pauses: Sequence[float] = ()
) -> Turns:
    """``turns`` user turns in one session of one ``Runner``; ``pause`` seconds between."""
    import asyncio

    runner = Runner(app_name=APP, agent=agent, session_service=InMemorySessionService())
    events: list[list[Event]] = []
    try:
        session = await runner.session_service.create_session(app_name=APP, user_id=USER)
        for i in range(turns):
            if i:
                await asyncio.sleep(pauses[i - 1] if pauses else pause)
            message = types.Content(role="user", parts=[types.Part(text="Say hello")])
            events.append(
                [
                    event
                    async for event in runner.run_async(
                        user_id=USER, session_id=session.id, new_message=message
                    )
                ]
            )
    finally:
        await runner.close()
    return Turns(events)

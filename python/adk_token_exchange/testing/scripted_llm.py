"""A scripted model for offline ADK agents: calls one tool, then quotes what it returned.

No network and no Gemini: :meth:`ScriptedLlm.generate_content_async` looks at
the request. If the last turn holds a function response, it answers
``"Tool said: <text>"``; otherwise it asks for ``tool(**args)``. Set directly as
``LlmAgent(model=ScriptedLlm(...))``. The tests' agents and the demo share it.

Imports ADK (unlike the rest of :mod:`adk_token_exchange.testing`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import Field

__all__ = ["ANSWER_PREFIX", "ScriptedLlm"]

ANSWER_PREFIX = "Tool said: "
"""How every answer quoting a tool's result starts."""


def _texts(value: Any) -> list[str]:
    """Every ``text`` string inside a tool result (MCP content, REST JSON, errors)."""
    if isinstance(value, dict):
        found = [value["text"]] if isinstance(value.get("text"), str) else []
        for key, item in value.items():
            if key != "text":
                found.extend(_texts(item))
        return found
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    return []


def _reply(part: types.Part) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[part]))


class ScriptedLlm(BaseLlm):
    """Asks for ``tool(**args)`` once, then reports the tool's answer.

    Attributes:
        tool: The tool to call.
        args: Its arguments.
        when_tool_missing: If set, the answer when the agent has no such tool
            (its toolset failed to load); if not, the call is asked for anyway
            and ADK reports the missing tool.
    """

    model: str = "scripted"
    tool: str = "greet"
    args: dict[str, Any] = Field(default_factory=lambda: {"name": "Ada"})
    when_tool_missing: str | None = None

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1] if llm_request.contents else None
        responses = [
            part.function_response
            for part in (last.parts or [] if last else [])
            if part.function_response is not None
        ]
        if responses:
            result = responses[0].response or {}
            texts = _texts(result) or [json.dumps(result, default=str)]
            yield _reply(types.Part(text=ANSWER_PREFIX + " ".join(texts)))
            return
        if self.when_tool_missing is not None and self.tool not in llm_request.tools_dict:
            yield _reply(types.Part(text=self.when_tool_missing))
            return
        call = types.FunctionCall(name=self.tool, args=dict(self.args))
        yield _reply(types.Part(function_call=call))

"""A scripted model: calls one tool, then answers with what the tool returned.

No network and no Gemini: ``generate_content_async`` looks at the request. If
the last turn holds a function response, it answers ``"Tool said: <text>"``;
otherwise it asks for ``tool(**args)``. Set directly as
``LlmAgent(model=ScriptedLlm(...))``.
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

ANSWER_PREFIX = "Tool said: "


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


class ScriptedLlm(BaseLlm):
    """Asks for ``tool(**args)`` once, then reports the tool's answer."""

    model: str = "scripted"
    tool: str = "greet"
    args: dict[str, Any] = Field(default_factory=lambda: {"name": "Ada"})

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
            answer = ANSWER_PREFIX + " ".join(texts)
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=answer)]))
            return
        call = types.FunctionCall(name=self.tool, args=dict(self.args))
        yield LlmResponse(
            content=types.Content(role="model", parts=[types.Part(function_call=call)])
        )

"""``root_agent`` for ``adk api_server`` / ``adk web``: the #4458 setup, fixed.

The MCP server's URL comes from ``PROTECTED_MCP_URL``; the credential is
Application Default Credentials (on Cloud Run: the metadata server, here the
emulator through ``GCE_METADATA_HOST``).
"""

from __future__ import annotations

import os

import adk_token_exchange
from adk_token_exchange.testing.scripted_llm import ScriptedLlm
from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
from google.adk.agents.llm_agent import LlmAgent
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset

MCP_URL = os.environ["PROTECTED_MCP_URL"]

root_agent = LlmAgent(
    name="cloud_run_mcp",
    model=ScriptedLlm(tool="greet", args={"name": "adk web"}),
    instruction="Use the tools to greet the user.",
    tools=[
        McpToolset(
            connection_params=StreamableHTTPConnectionParams(url=MCP_URL),
            auth_scheme=OAuth2(
                flows=OAuthFlows(
                    clientCredentials=OAuthFlowClientCredentials(
                        tokenUrl="https://oauth2.googleapis.com/token", scopes={}
                    )
                )
            ),
            auth_credential=adk_token_exchange.id_token_credential(MCP_URL),
        )
    ],
)

"""The #4458 agent: an MCP server on Cloud Run (here: emulated), called via ``adk api_server``."""

from . import agent as agent

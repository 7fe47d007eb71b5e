"""An agent module as a user writes it against the public API; never run.

``test_typing.py`` checks that it passes ``mypy --strict`` with the package
found the way a user's mypy finds it (installed, typed by ``py.typed`` and
``_native.pyi``), so every public name has a precise type, not ``Any``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import adk_token_exchange
from adk_token_exchange import errors
from adk_token_exchange._native import Credentials, Token
from adk_token_exchange.auth_provider import (
    GoogleIdTokenAuthProvider,
    GoogleIdTokenAuthScheme,
    register,
)
from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth.auth_credential import AuthCredential
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from google.adk.tools.openapi_tool.openapi_spec_parser.openapi_toolset import OpenAPIToolset

MCP_URL = "https://weather-mcp-xyz.a.run.app/mcp"
INVOKER = "mcp-invoker@my-project.iam.gserviceaccount.com"
log = logging.getLogger(__name__)

# Path 1: install() + id_token_credential, every ADK version.
adk_token_exchange.install()
assert adk_token_exchange.is_installed()
adk_token_exchange.configure(request_timeout=10.0, max_attempts=3)

scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="https://oauth2.googleapis.com/token", scopes={}
        )
    )
)
id_credential: AuthCredential = adk_token_exchange.id_token_credential(MCP_URL, impersonate=INVOKER)
exact_credential: AuthCredential = adk_token_exchange.id_token_credential(
    "123-abc.apps.googleusercontent.com", service_account_key="/secrets/key.json", exact=True
)
api_credential: AuthCredential = adk_token_exchange.access_token_credential(
    ["https://www.googleapis.com/auth/cloud-platform"], impersonate=[INVOKER, INVOKER]
)

weather = McpToolset(
    connection_params=StreamableHTTPConnectionParams(url=MCP_URL),
    auth_scheme=scheme,
    auth_credential=id_credential,
)
billing = OpenAPIToolset(
    spec_str="{}", spec_str_type="json", auth_scheme=scheme, auth_credential=api_credential
)

# Path 2: ADK's own extension point (ADK >= 1.29), nothing of ADK replaced.
provider: GoogleIdTokenAuthProvider = register()
forecast = McpToolset(
    connection_params=StreamableHTTPConnectionParams(url=MCP_URL),
    auth_scheme=GoogleIdTokenAuthScheme(audience=MCP_URL, impersonate=INVOKER),
)
audience: str = GoogleIdTokenAuthScheme(audience=MCP_URL).token_audience

root_agent = LlmAgent(
    name="weather_agent",
    model="gemini-2.5-flash",
    instruction="Use the tools to answer.",
    tools=[weather, billing, forecast],
)


async def warm_up() -> float:
    """Fetch a token before the first request; report when it expires."""
    credentials = Credentials.application_default(impersonate=INVOKER)
    try:
        token: Token = await credentials.id_token_async("https://weather-mcp-xyz.a.run.app")
    except errors.TransientError as exc:
        log.warning("Google unreachable, the agent will retry: %s", exc)
        return 0.0
    except errors.TokenExchangeError as exc:
        raise SystemExit(f"cannot mint an ID token: {exc}") from exc
    kind: Literal["access", "id"] = token.kind
    assert kind == "id"
    cached = credentials.cached_id_token("https://weather-mcp-xyz.a.run.app")
    if cached is not None and cached.value != token.value:
        log.info("token rotated")
    return token.expires_at


def who_am_i() -> str | None:
    try:
        return Credentials.application_default().resolve().principal
    except errors.CredentialsNotFoundError:
        return None
    finally:
        adk_token_exchange.clear_cache()


if __name__ == "__main__":
    print(asyncio.run(warm_up()), who_am_i(), audience, adk_token_exchange.__version__)
    adk_token_exchange.uninstall()

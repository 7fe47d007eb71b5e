"""A remote ADK agent served over A2A (ADK's own ``to_a2a``) behind a Cloud-Run-like gate.

Everything under the service's origin is protected, the agent card at
``/.well-known/agent-card.json`` included, as on a Cloud Run service with
"Require authentication". Imports ADK and the a2a SDK
(``pip install "google-adk[a2a]"``).

Example::

    with GoogleEmulator() as google, ProtectedA2aServer(google, helper_agent) as remote:
        RemoteA2aAgent(name="helper", agent_card=remote.agent_card_url,
                       httpx_client=httpx.AsyncClient(auth=IdTokenAuth(remote.url)))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .emulator import GoogleEmulator
from .protected import ProtectedMcpServer, _ASGIApp

__all__ = ["AGENT_CARD_PATH", "ProtectedA2aServer"]

AGENT_CARD_PATH = "/.well-known/agent-card.json"
"""Where A2A publishes an agent's card."""


class ProtectedA2aServer(ProtectedMcpServer):
    """``to_a2a(agent)`` behind Cloud Run's "Require authentication" (ID tokens for its URL).

    Args:
        emulator: Whose signing key makes an ID token valid.
        agent: The ADK agent to serve (an ``LlmAgent`` with a scripted model, say).
        extra_audiences, allowed_invokers, app_token: As in
            :class:`~.protected.ProtectedMcpServer`.
    """

    def __init__(
        self,
        emulator: GoogleEmulator,
        agent: Any,
        *,
        extra_audiences: Iterable[str] = (),
        allowed_invokers: Iterable[str] | None = None,
        app_token: str | None = None,
    ) -> None:
        super().__init__(
            emulator,
            extra_audiences=extra_audiences,
            allowed_invokers=allowed_invokers,
            app_token=app_token,
            name="protected-a2a",
        )
        self.agent = agent

    @property
    def url(self) -> str:
        """The service URL (the A2A JSON-RPC endpoint is at its root)."""
        return self.origin

    @property
    def agent_card_url(self) -> str:
        """The agent card's URL."""
        return f"{self.origin}{AGENT_CARD_PATH}"

    def _inner_app(self) -> _ASGIApp:
        from google.adk.a2a.utils.agent_to_a2a import to_a2a

        app: _ASGIApp = to_a2a(self.agent, host="127.0.0.1", port=self.port)
        return app

"""``RemoteA2aAgent`` to an authenticated Cloud Run service, through real agents on both ends.

The remote agent is an ``LlmAgent`` served by ADK's own ``to_a2a`` behind a
Cloud-Run-like gate that protects everything, the agent card included. Two
roads: ``auth_scheme`` + ``auth_credential=id_token_credential(url)``
(ADK >= 2.8 resolves it through ``CredentialManager``) and
``httpx_client=httpx.AsyncClient(auth=IdTokenAuth(url))`` (any ADK with
``RemoteA2aAgent``). Needs the a2a SDK (``google-adk[a2a]``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import adk_token_exchange
import google.adk
import httpx
import pytest
from adk_token_exchange import IdTokenAuth
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX, ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.roads import run_turns, uninstall_after_each_test  # noqa: F401

pytest.importorskip("a2a", reason="the a2a SDK is not installed (pip install 'google-adk[a2a]')")

from adk_token_exchange.testing.protected_a2a import ProtectedA2aServer
from google.adk.agents.remote_a2a_agent import RemoteA2aAgent

ADK = tuple(int(p) for p in google.adk.__version__.split(".")[:2])
REMOTE_ANSWER = f'{ANSWER_PREFIX}{{"result": "Hello, Ada! (from the remote agent)"}}'

pytestmark = pytest.mark.filterwarnings("ignore:.*EXPERIMENTAL.*:UserWarning")


def greet(name: str) -> str:
    """Greets someone by name."""
    return f"Hello, {name}! (from the remote agent)"


@pytest.fixture
def remote(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProtectedA2aServer]:
    """A helper agent on a Cloud-Run-like service; the caller runs on the metadata server."""
    emulator.use_metadata_server(monkeypatch)
    helper = LlmAgent(
        name="helper", model=ScriptedLlm(tool="greet"), tools=[greet], description="Greets."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ProtectedA2aServer(emulator, helper) as server:
            yield server


def _answered(turns: object) -> list[str | None]:
    return turns.answers  # type: ignore[attr-defined,no-any-return]


async def run_remote(agent: RemoteA2aAgent, turns: int = 1) -> object:
    """``turns`` turns with ``agent`` as the root; its own HTTP client closed after."""
    try:
        return await run_turns(agent, turns)
    finally:
        await agent.cleanup()


@pytest.mark.skipif(
    ADK < (2, 8), reason="RemoteA2aAgent(auth_scheme=, auth_credential=) is ADK >= 2.8"
)
async def test_remote_a2a_agent_with_id_token_credential_reaches_a_cloud_run_agent(
    emulator: GoogleEmulator, remote: ProtectedA2aServer
) -> None:
    agent = RemoteA2aAgent(
        name="helper",
        agent_card=remote.agent_card_url,
        auth_scheme=SCHEME,
        auth_credential=adk_token_exchange.id_token_credential(remote.url),
    )

    turns = await run_remote(agent, 2)

    assert _answered(turns) == [REMOTE_ANSWER] * 2
    assert remote.count(accepted=False) == 0
    paths = {d.path for d in remote.decisions}
    assert "/.well-known/agent-card.json" in paths, "the agent card fetch carried the token"
    assert {d.email for d in remote.decisions} == {emulator.metadata_service_account}
    assert {d.audience for d in remote.decisions} == {remote.audience}
    assert len([r for r in emulator.requests if r.path.endswith("/identity")]) == 1


async def test_remote_a2a_agent_with_an_id_token_httpx_client_reaches_a_cloud_run_agent(
    emulator: GoogleEmulator, remote: ProtectedA2aServer
) -> None:
    client = httpx.AsyncClient(auth=IdTokenAuth(remote.url))
    agent = RemoteA2aAgent(name="helper", agent_card=remote.agent_card_url, httpx_client=client)

    try:
        turns = await run_remote(agent, 2)
    finally:
        await client.aclose()

    assert _answered(turns) == [REMOTE_ANSWER] * 2
    assert remote.count(accepted=False) == 0
    assert "/.well-known/agent-card.json" in {d.path for d in remote.decisions}
    assert {d.email for d in remote.decisions} == {emulator.metadata_service_account}


async def test_remote_a2a_agent_without_a_token_is_refused_at_the_agent_card(
    remote: ProtectedA2aServer,
) -> None:
    agent = RemoteA2aAgent(name="helper", agent_card=remote.agent_card_url)

    with contextlib.suppress(Exception):
        turns = await run_remote(agent)
        assert REMOTE_ANSWER not in _answered(turns)

    assert remote.count(accepted=True) == 0
    first = remote.decisions[0]
    assert (first.path, first.status) == ("/.well-known/agent-card.json", 401)

"""``adk-token-exchange demo``: google/adk-python#4458 told by a real ADK agent, offline.

The agent calls a local MCP server that, like Cloud Run with "Require
authentication", admits only Google-signed ID tokens for its URL: first with
ADK's own exchanger (401), then with this package (200). Google and the
metadata server are the :class:`~.emulator.GoogleEmulator`; the process runs
:func:`~.isolation.isolated` from real credentials while the demo lasts.

Unlike the emulator, the demo uses the package itself (and ADK), imported
when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .emulator import CLOUD_PLATFORM_SCOPE, GoogleEmulator
from .isolation import isolated
from .protected import ProtectedMcpServer

__all__ = ["DEMO_GOOGLE_LATENCY", "DemoPhase", "run_demo"]

_EXIT_OK = 0
_EXIT_FAILED = 1

DEMO_GOOGLE_LATENCY = 0.2
"""Seconds the emulated Google takes to issue a token: a real round trip's order."""
_DEMO_TIMEOUT = 90.0
_DEMO_PROJECT = "demo-project"
_DEMO_CALLER = f"mcp-caller@{_DEMO_PROJECT}.iam.gserviceaccount.com"
_DEMO_USER = "developer"


@dataclass
class DemoPhase:
    """What one agent run did, as seen by Google (emulated) and the MCP server."""

    title: str
    answer: str | None = None
    failure: str | None = None
    statuses: list[int] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    token_requests: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    max_loop_lag: float = 0.0
    seconds: float = 0.0

    @property
    def rejected(self) -> bool:
        """The server refused every request with 401 (what #4458 reports)."""
        return bool(self.statuses) and all(status == 401 for status in self.statuses)

    @property
    def succeeded(self) -> bool:
        """Every request was admitted and the agent quoted the tool's answer."""
        return (
            bool(self.statuses)
            and all(status == 200 for status in self.statuses)
            and self.answer is not None
            and "Hello" in self.answer
        )


def _scripted_model() -> Any:
    """The model's part, played as Gemini would for this prompt: call ``greet``, quote it."""
    from .scripted_llm import ScriptedLlm

    return ScriptedLlm(
        model="scripted-greeter",
        tool="greet",
        args={"name": _DEMO_USER},
        when_tool_missing="I can't greet you: the MCP tools are unavailable.",
    )


async def _warm_up() -> None:
    """Import what ADK and google-auth import lazily, so lag measures I/O, not imports."""
    import importlib

    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.runners import Runner
    from google.adk.sessions.in_memory_session_service import InMemorySessionService
    from google.genai import types

    for module in (
        "google.auth.compute_engine",
        "google.auth.transport.requests",
        "google.oauth2.id_token",
        "google.oauth2.service_account",
    ):
        importlib.import_module(module)
    agent = LlmAgent(name="warm_up", model=_scripted_model(), instruction="Say hello.")
    runner = Runner(app_name="demo", agent=agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name="demo", user_id=_DEMO_USER)
        message = types.Content(role="user", parts=[types.Part(text="Hi")])
        async for _ in runner.run_async(
            user_id=_DEMO_USER, session_id=session.id, new_message=message
        ):
            pass
    finally:
        await runner.close()


async def _run_agent(url: str, credential: Any, phase: DemoPhase) -> None:
    """Build the #4458 agent around ``credential``, run one user turn, record the outcome."""
    from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.runners import Runner
    from google.adk.sessions.in_memory_session_service import InMemorySessionService
    from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
    from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
    from google.genai import types

    scheme = OAuth2(
        flows=OAuthFlows(
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl="https://oauth2.googleapis.com/token",  # never called
                scopes={CLOUD_PLATFORM_SCOPE: "Google Cloud"},
            )
        )
    )
    agent = LlmAgent(
        name="cloud_run_agent",
        model=_scripted_model(),
        instruction="Use the available tools to greet the user.",
        tools=[
            McpToolset(
                connection_params=StreamableHTTPConnectionParams(url=url),
                auth_scheme=scheme,
                auth_credential=credential,
            )
        ],
    )
    runner = Runner(app_name="demo", agent=agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name="demo", user_id=_DEMO_USER)
        message = types.Content(role="user", parts=[types.Part(text="Hi, please greet me.")])
        async for event in runner.run_async(
            user_id=_DEMO_USER, session_id=session.id, new_message=message
        ):
            if event.error_message:
                phase.failure = event.error_message
            for part in (event.content.parts or []) if event.content else []:
                if part.text:
                    phase.answer = part.text
    except Exception as error:  # the agent's failure is the demo's subject
        text = " ".join(str(error).split())
        phase.failure = f"{type(error).__name__}: {text[:160]}"
    finally:
        await runner.close()


async def _run_phase(google: Any, server: Any, credential: Any, phase: DemoPhase) -> None:
    """Run the agent while measuring how long the event loop is ever kept from running."""
    google.reset_counts()
    server.reset_counts()
    stop = asyncio.Event()

    async def watch_loop(interval: float = 0.005) -> float:
        worst = 0.0
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(interval)
            worst = max(worst, time.perf_counter() - start - interval)
        return worst

    watcher = asyncio.create_task(watch_loop())
    await asyncio.sleep(0)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(_run_agent(server.url, credential, phase), _DEMO_TIMEOUT)
    except asyncio.TimeoutError:
        phase.failure = f"the agent did not finish within {_DEMO_TIMEOUT:g} s"
    phase.seconds = time.perf_counter() - started
    stop.set()
    phase.max_loop_lag = await watcher
    for decision in server.decisions:
        phase.statuses.append(decision.status)
        if not decision.accepted:
            phase.refusals.append(decision.reason)
    for record in google.requests:
        path = record.path.split("?")[0]
        if record.kind == "metadata" and path.endswith(("/token", "/identity")):
            where = "metadata server …/" + path.rsplit("/", 1)[1]
        elif record.kind == "iam":
            where = "IAM Credentials :" + path.rsplit(":", 1)[-1]
        elif record.kind == "token":
            where = "OAuth token endpoint"
        else:
            continue
        phase.token_requests.append(where)
        is_id = bool(record.audience) or path.endswith(("/identity", ":generateIdToken"))
        phase.tokens.append(f"ID token, aud={record.audience}" if is_id else "access token")


_STATUS_WORDS = {200: "OK", 401: "Unauthorized", 403: "Forbidden"}


def _counted(items: Sequence[Any]) -> str:
    counts: dict[Any, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return ", ".join(f"{item} ({n}x)" if n > 1 else str(item) for item, n in counts.items())


def _render_phase(number: int, phase: DemoPhase, out: Any) -> None:
    def row(label: str, text: str) -> None:
        print(f"   {label:<13}{text}", file=out)

    print(f"\n{number}. {phase.title}", file=out)
    row("token", ", ".join(dict.fromkeys(phase.tokens)) or "none minted")
    requests = phase.token_requests
    plural = "s" if len(requests) != 1 else ""
    row(
        "Google",
        f"{len(requests)} token request{plural}" + (f": {_counted(requests)}" if requests else ""),
    )
    verdict = _counted([f"{s} {_STATUS_WORDS.get(s, '')}".strip() for s in phase.statuses])
    why = "; ".join(dict.fromkeys(phase.refusals))
    row("MCP server", (verdict or "no requests") + (f": {why}" if why else ""))
    if phase.answer:
        row("agent", f'"{phase.answer}"')
    if phase.failure and not phase.succeeded:
        row("ADK", phase.failure)
    row(
        "event loop",
        f"blocked for up to {phase.max_loop_lag * 1000:.0f} ms (run took {phase.seconds:.1f} s)",
    )


def _quiet_libraries(verbose: bool) -> None:
    """ADK and the MCP SDK log the 401 with tracebacks; the demo tells it in words."""
    import warnings

    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        return
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("google_adk", "google", "mcp", "httpx", "uvicorn", "asyncio", "anyio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_demo(*, verbose: bool = False, out: Any = None) -> int:
    """The #4458 agent against a local Cloud-Run-like MCP server: ADK's exchanger, then ours.

    Returns 0 only if ADK's own exchanger got 401 and ours got the tool's answer.
    The process environment is pointed at a temporary HOME and gcloud config and
    at an emulated metadata server, so no real credential is ever read.
    """
    out = out or sys.stdout
    saved = dict(os.environ)
    try:
        with isolated(saved) as env:
            os.environ.clear()
            os.environ.update(env)
            return _demo_with_emulator(verbose, out)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _demo_with_emulator(verbose: bool, out: Any) -> int:
    with GoogleEmulator(project_id=_DEMO_PROJECT, metadata_service_account=_DEMO_CALLER) as google:
        google.use_metadata_server(os.environ)  # google-auth's module-level copy too
        with ProtectedMcpServer(google) as server:
            _quiet_libraries(verbose)
            return asyncio.run(_demo(google, server, out))


async def _demo(google: Any, server: Any, out: Any) -> int:
    from google.adk.auth.auth_credential import (
        AuthCredential,
        AuthCredentialTypes,
        ServiceAccount,
    )

    import adk_token_exchange

    from .._native import Credentials, clear_cache

    clear_cache()
    info = await asyncio.to_thread(Credentials.application_default().resolve)
    await _warm_up()
    google.set_latency(DEMO_GOOGLE_LATENCY)
    print(
        'An ADK agent calls an MCP server that, like Cloud Run with "Require authentication",\n'
        "admits only Google-signed ID tokens whose aud is its URL (google/adk-python#4458).\n"
        f"All local: Google is emulated at {google.url} (a token takes"
        f" {DEMO_GOOGLE_LATENCY * 1000:.0f} ms,\nlike a real round trip); your own credentials are"
        " never read.\n",
        file=out,
    )
    print(f"   {'MCP server':<13}{server.url}  (expects aud={server.audience})", file=out)
    print(
        f"   {'credentials':<13}{info.origin} → {info.principal or _DEMO_CALLER}"
        f"  ({info.kind}, as on Cloud Run)",
        file=out,
    )

    stock = DemoPhase(
        "ADK's own exchanger, configured as in #4458:\n"
        "   ServiceAccount(use_default_credential=True, scopes=[cloud-platform])"
    )
    await _run_phase(
        google,
        server,
        AuthCredential(
            auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
            service_account=ServiceAccount(
                use_default_credential=True, scopes=[CLOUD_PLATFORM_SCOPE]
            ),
        ),
        stock,
    )
    _render_phase(1, stock, out)

    ours = DemoPhase(
        "The same agent with adk_token_exchange.install() and\n"
        "   auth_credential=id_token_credential(server.url)"
    )
    adk_token_exchange.install()
    try:
        await _run_phase(google, server, adk_token_exchange.id_token_credential(server.url), ours)
    finally:
        adk_token_exchange.uninstall()
    _render_phase(2, ours, out)

    ok = stock.rejected and ours.succeeded
    print(
        "\nResult: "
        + (
            "ADK's exchanger got 401; adk-token-exchange got 200 and the tool's answer."
            if ok
            else "unexpected outcome (see above; rerun with -v for logs)."
        ),
        file=out,
    )
    return _EXIT_OK if ok else _EXIT_FAILED

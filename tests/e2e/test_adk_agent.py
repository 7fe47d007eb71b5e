"""End to end: a real ADK agent calls a protected MCP server / REST API.

Real ``LlmAgent``, ``McpToolset`` / ``OpenAPIToolset``, ``Runner`` and
``InMemorySessionService``, exactly as in google/adk-python#4458; the model is
scripted (:mod:`adk_token_exchange.testing.scripted_llm`) and Google is the local emulator.
The same file runs on ADK 2.x and 1.24.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adk_token_exchange
import google.adk
import pytest
from adk_token_exchange import errors
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.emulator import CLOUD_PLATFORM_SCOPE, GCLOUD_ADC_CLIENT_ID
from adk_token_exchange.testing.protected import ProtectedMcpServer, ProtectedRestServer
from adk_token_exchange.testing.scripted_llm import ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth.auth_credential import AuthCredential, AuthCredentialTypes, ServiceAccount
from google.adk.auth.exchanger.base_credential_exchanger import CredentialExchangeError
from google.adk.events.event import Event
from google.adk.runners import Runner
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.tools.openapi_tool.openapi_spec_parser.openapi_toolset import OpenAPIToolset
from google.genai import types
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.agents import (
    APP,
    REQUEST_CREDENTIAL,
    USER,
    Run,
    attempt,
    greeted,
    greeting,
    mcp_agent,
    private_network_ok,
    reset_exchangers,
    run_agent,
    run_once,
)
from support.paths import TESTS
from support.processes import in_fresh_process

ADK_VERSION = tuple(int(p) for p in google.adk.__version__.split(".")[:2])
ADK_HAS_ID_TOKEN_FIELDS = "use_id_token" in ServiceAccount.model_fields


@pytest.fixture(autouse=True)
def fresh_exchanger() -> Iterator[None]:
    """ADK's own exchanger cache empty, uninstalled after."""
    reset_exchangers(uninstall=False)
    yield
    reset_exchangers()


def identity_requests(emulator: GoogleEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.path.endswith("/identity")]


# --------------------------------------------------------------------------
# Credential sources


async def test_cloud_run_agent_calls_mcp_tool_with_id_token_from_metadata_server(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    agent = mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))

    run = await run_once(agent)

    assert run.answer == greeting(emulator.metadata_service_account)
    assert protected_mcp.count(accepted=False) == 0
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}
    assert [r.audience for r in identity_requests(emulator)] == [protected_mcp.audience]


async def test_cloud_run_agent_with_adk_own_service_account_model_uses_our_exchanger(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a user writes with ADK's own model (fields on >= 1.26; on 1.24.1
    # the same keywords become pydantic extras, which 1.24.1 users can pass).
    emulator.use_metadata_server(monkeypatch)
    adk_token_exchange.install()
    extra = {} if ADK_HAS_ID_TOKEN_FIELDS else {"scopes": []}
    credential = AuthCredential(
        auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
        service_account=ServiceAccount(
            use_default_credential=True,
            use_id_token=True,
            audience=protected_mcp.audience,
            **extra,
        ),
    )

    run = await run_once(mcp_agent(protected_mcp.url, credential))

    assert run.answer == greeting(emulator.metadata_service_account)
    assert len(identity_requests(emulator)) == 1
    from google.adk.tools.openapi_tool.auth.credential_exchangers import (
        service_account_exchanger as stock,
    )

    assert not getattr(stock, "_id_token_cache", {}), "ADK's own exchanger was used"


async def test_raw_service_account_audience_is_used_verbatim(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cloud Run custom audiences are not URLs of the service: never rewritten.
    emulator.use_metadata_server(monkeypatch)
    custom = "https://api.example.com/custom-audience/"
    with ProtectedMcpServer(emulator, extra_audiences=[custom]) as server:
        adk_token_exchange.install()
        credential = AuthCredential(
            auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
            service_account=ServiceAccount(
                use_default_credential=True,
                use_id_token=True,
                audience=custom,
                scopes=[],
            ),
        )
        run = await run_once(mcp_agent(server.url, credential))

        assert run.answer == greeting(emulator.metadata_service_account)
        assert {d.audience for d in server.decisions} == {custom}


async def test_agent_with_explicit_service_account_key_calls_mcp_tool(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    key = emulator.service_account_info()
    credential = adk_token_exchange.id_token_credential(protected_mcp.url, service_account_key=key)

    run = await run_once(mcp_agent(protected_mcp.url, credential))

    assert run.answer == greeting(key["client_email"])
    [grant] = [r for r in emulator.requests if r.kind == "token"]
    assert grant.audience == protected_mcp.audience
    assert grant.assertion_audience == emulator.token_uri


async def test_agent_with_google_application_credentials_key_file_calls_mcp_tool(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key = emulator.service_account_info()
    path = emulator.write_json(tmp_path, "agent-key.json", key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    run = await run_once(
        mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
    )

    assert run.answer == greeting(key["client_email"])


@in_fresh_process()  # the warning is once per process: an earlier test may have given it
async def test_local_adk_web_with_gcloud_login_sends_user_id_token_and_warns_once(
    emulator: GoogleEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # `gcloud auth application-default login` on a laptop: the ID token's aud is
    # the OAuth client id, which Cloud Run accepts for development only.
    import os

    user = emulator.authorized_user_info("developer@example.com")
    emulator.write_json(os.environ["CLOUDSDK_CONFIG"], "application_default_credentials.json", user)
    caplog.set_level(logging.WARNING)
    with ProtectedMcpServer(emulator, extra_audiences=[GCLOUD_ADC_CLIENT_ID]) as server:
        agent = mcp_agent(server.url, adk_token_exchange.id_token_credential(server.url))

        runs = [await run_once(agent), await run_once(agent)]

        assert [run.answer for run in runs] == [greeting("developer@example.com")] * 2
        assert {d.audience for d in server.decisions} == {GCLOUD_ADC_CLIENT_ID}
    warnings = [r.getMessage() for r in caplog.records if "gcloud login" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "impersonate" in warnings[0]


async def test_developer_impersonates_service_account_for_real_audience(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    # Where IAM Credentials is (Private Service Connect, or here: the emulator).
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    user = emulator.authorized_user_info("developer@example.com")
    emulator.write_json(os.environ["CLOUDSDK_CONFIG"], "application_default_credentials.json", user)
    target = "mcp-invoker@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(target)
    credential = adk_token_exchange.id_token_credential(protected_mcp.url, impersonate=target)

    run = await run_once(mcp_agent(protected_mcp.url, credential))

    assert run.answer == greeting(target)
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}
    [iam] = [r for r in emulator.requests if r.kind == "iam"]
    assert iam.caller == "developer@example.com"
    assert iam.path.endswith(":generateIdToken")


async def test_agent_with_impersonated_service_account_adc_file_calls_mcp_tool(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source = emulator.service_account_info()
    delegate = "delegate@emulated-project.iam.gserviceaccount.com"
    target = "mcp-invoker@emulated-project.iam.gserviceaccount.com"
    info = emulator.impersonated_info(source, target, delegates=[delegate])
    path = emulator.write_json(tmp_path, "impersonated.json", info)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    run = await run_once(
        mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
    )

    assert run.answer == greeting(target)


# --------------------------------------------------------------------------
# OpenAPI tools (the synchronous exchange_credential path)


async def test_openapi_tool_calls_rest_api_with_access_token(emulator: GoogleEmulator) -> None:
    key = emulator.service_account_info()
    with ProtectedRestServer(emulator) as rest:
        credential = adk_token_exchange.access_token_credential(
            [CLOUD_PLATFORM_SCOPE], service_account_key=key
        )
        toolset = OpenAPIToolset(
            spec_str=json.dumps(rest.openapi_spec()),
            spec_str_type="json",
            auth_scheme=SCHEME,
            auth_credential=credential,
            **private_network_ok(),
        )
        agent = LlmAgent(
            name="rest_caller",
            model=ScriptedLlm(tool="get_greeting", args={"project": "p1"}),
            tools=[toolset],
        )

        run = await run_once(agent)

        assert run.answer is not None
        assert "Hello from p1!" in run.answer
        assert key["client_email"] in run.answer
        assert rest.count(accepted=False) == 0
        assert rest.count(accepted=True) == 1


async def test_openapi_tool_reports_google_refusal_with_googles_reason(
    emulator: GoogleEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # ADK 1.24.1 resolves the toolset's auth up front: our error reaches the
    # user. ADK 2.x's OpenAPI path catches every exchanger error, logs it and
    # calls the API without a token: the log line carries Google's reason.
    key = emulator.service_account_info()
    emulator.fail_next(
        status=400,
        endpoint="token",
        body={"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )
    caplog.set_level(logging.ERROR)
    with ProtectedRestServer(emulator) as rest:
        toolset = OpenAPIToolset(
            spec_str=json.dumps(rest.openapi_spec()),
            spec_str_type="json",
            auth_scheme=SCHEME,
            auth_credential=adk_token_exchange.access_token_credential(service_account_key=key),
            **private_network_ok(),
        )
        agent = LlmAgent(
            name="rest_caller",
            model=ScriptedLlm(tool="get_greeting", args={"project": "p1"}),
            tools=[toolset],
        )

        outcome = await attempt(agent)

        assert rest.count(accepted=True) == 0
    if isinstance(outcome, Exception):
        assert isinstance(outcome, errors.PermanentError)
        assert isinstance(outcome, CredentialExchangeError)
        reported = str(outcome)
    else:
        assert "Hello from p1!" not in (outcome.answer or "")
        reported = "\n".join(
            r.getMessage() for r in caplog.records if "invalid_grant" in r.getMessage()
        )
    assert "invalid_grant" in reported and "Invalid JWT Signature." in reported


# --------------------------------------------------------------------------
# Cache


async def test_fifty_concurrent_sessions_on_cold_cache_make_one_token_request(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    key = emulator.service_account_info()
    credential = adk_token_exchange.id_token_credential(protected_mcp.url, service_account_key=key)
    emulator.set_latency(0.3, endpoint="token")  # all 50 miss the cache together

    runs = await run_agent(mcp_agent(protected_mcp.url, credential), sessions=50)

    assert [run.answer for run in runs] == [greeting(key["client_email"])] * 50
    assert emulator.count("token") == 1
    assert protected_mcp.count(accepted=False) == 0


async def test_adk_web_agent_keeps_working_after_its_id_token_expires(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `adk web` runs with a credential service. ADK 1.24.1 would reload the
    # exchanged token from it forever, past its expiry; we exchange each time
    # (from our cache) instead, on every ADK.
    from google.adk.auth.credential_service.in_memory_credential_service import (
        InMemoryCredentialService,
    )

    emulator.use_metadata_server(monkeypatch)
    emulator.token_lifetime = 2
    agent = mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
    runner = Runner(
        app_name=APP,
        agent=agent,
        session_service=InMemorySessionService(),
        credential_service=InMemoryCredentialService(),
    )
    session = await runner.session_service.create_session(app_name=APP, user_id=USER)
    answers = []
    try:
        for _ in range(2):
            message = types.Content(role="user", parts=[types.Part(text="Say hello")])
            run = Run(
                [
                    event
                    async for event in runner.run_async(
                        user_id=USER, session_id=session.id, new_message=message
                    )
                ]
            )
            answers.append(run.answer)
            await _until_expired(emulator, identity_requests(emulator)[-1])
    finally:
        await runner.close()

    assert answers == [greeting(emulator.metadata_service_account)] * 2
    assert protected_mcp.count(accepted=False) == 0
    assert len(identity_requests(emulator)) >= 2


async def _until_expired(emulator: GoogleEmulator, minted: Any) -> None:
    """Wait until the ID token of request ``minted`` has expired (it lived ``token_lifetime``)."""
    assert minted.finished is not None
    expired_at = minted.finished + emulator.token_lifetime + 0.1
    await asyncio.sleep(max(0.0, expired_at - time.monotonic()))


# --------------------------------------------------------------------------
# install / uninstall, and the bug this package fixes


async def test_issue_4458_configuration_with_stock_adk_is_refused_by_cloud_run(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report's exact setup: ADC on Cloud Run, ADK's own exchanger, an access token.
    emulator.use_metadata_server(monkeypatch)
    assert not adk_token_exchange.is_installed()
    credential = AuthCredential(
        auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
        service_account=ServiceAccount(use_default_credential=True, scopes=[CLOUD_PLATFORM_SCOPE]),
    )

    outcome = await attempt(mcp_agent(protected_mcp.url, credential))

    assert not greeted(outcome)
    refused = [d for d in protected_mcp.decisions if not d.accepted]
    assert refused and protected_mcp.count(accepted=True) == 0
    assert {d.status for d in refused} == {401}
    assert {d.reason for d in refused} == {"not a JWT (an access token?)"}


async def test_uninstall_gives_the_service_account_back_to_adk(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    credential = adk_token_exchange.id_token_credential(protected_mcp.url)
    first = await run_once(mcp_agent(protected_mcp.url, credential))
    assert first.answer == greeting(emulator.metadata_service_account)
    ours = len(identity_requests(emulator))

    adk_token_exchange.uninstall()

    if ADK_HAS_ID_TOKEN_FIELDS:
        # ADK >= 1.26 mints the ID token itself: its own requests (ours would
        # have come from our cache), same outcome. How many depends on ADK:
        # one per run on 2.8+, one per exchange on 1.26-2.5 (scripts/matrix).
        second = await run_once(mcp_agent(protected_mcp.url, credential))
        assert second.answer == greeting(emulator.metadata_service_account)
        assert len(identity_requests(emulator)) > ours
    else:
        # ADK 1.24.1 ignores use_id_token: an access token, refused (#4458).
        protected_mcp.reset_counts()
        outcome = await attempt(mcp_agent(protected_mcp.url, credential))
        assert not greeted(outcome)
        assert len(identity_requests(emulator)) == ours
        assert {d.reason for d in protected_mcp.decisions} == {"not a JWT (an access token?)"}


# --------------------------------------------------------------------------
# Errors and secrets


async def test_google_invalid_grant_reaches_the_user_instead_of_a_credential_request(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer
) -> None:
    key = emulator.service_account_info()
    credential = adk_token_exchange.id_token_credential(protected_mcp.url, service_account_key=key)
    emulator.fail_next(
        status=400,
        endpoint="token",
        body={"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )
    events: list[Event] = []

    with pytest.raises(errors.PermanentError) as caught:
        runner = Runner(
            app_name=APP,
            agent=mcp_agent(protected_mcp.url, credential),
            session_service=InMemorySessionService(),
        )
        try:
            session = await runner.session_service.create_session(app_name=APP, user_id=USER)
            message = types.Content(role="user", parts=[types.Part(text="Say hello")])
            async for event in runner.run_async(
                user_id=USER, session_id=session.id, new_message=message
            ):
                events.append(event)
        finally:
            await runner.close()

    assert isinstance(caught.value, CredentialExchangeError)
    assert not isinstance(caught.value, ValueError)
    assert "invalid_grant" in str(caught.value)
    assert "Invalid JWT Signature." in str(caught.value)
    assert REQUEST_CREDENTIAL not in Run(events).function_calls
    assert protected_mcp.count() == 0


async def test_wrong_key_error_and_logs_contain_no_secret(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    key = emulator.service_account_info()
    wrong_pem = (TESTS / "data" / "test_rsa_pkcs8.pem").read_text()
    assert wrong_pem.strip() != key["private_key"].strip()
    wrong = {**key, "private_key": wrong_pem}
    credential = adk_token_exchange.id_token_credential(
        protected_mcp.url, service_account_key=wrong
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(errors.PermanentError) as caught:
        await run_once(mcp_agent(protected_mcp.url, credential))

    out, err = capfd.readouterr()
    seen = "\n".join(
        [
            out,
            err,
            caplog.text,
            *(r.getMessage() for r in caplog.records),
            "".join(traceback.format_exception(caught.value)),
            repr(caught.value),
        ]
    )
    secret_lines = [
        line.strip()
        for pem in (wrong_pem, key["private_key"])
        for line in pem.splitlines()
        if line.strip() and "PRIVATE KEY" not in line
    ]
    assert not [line for line in secret_lines if line in seen]
    assert "PRIVATE KEY" not in seen
    assert "eyJ" not in seen  # no JWT: neither the signed assertion nor a token
    assert "ya29." not in seen
    assert "invalid_grant" in str(caught.value)

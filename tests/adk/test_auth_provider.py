"""ADK's own extension point: ``GoogleIdTokenAuthScheme`` and its provider.

A real ``LlmAgent`` (scripted model), ``McpToolset`` and ``Runner`` reach a
Cloud-Run-like MCP server with an ID token through
``CredentialManager.register_auth_provider`` alone: no ``install()``, nothing
of ADK replaced. ADK 1.24.1 has no such extension point; there the module
refuses to import and says to use ``install()``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import errors
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer
from adk_token_exchange.testing.scripted_llm import ANSWER_PREFIX, ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth import credential_manager as adk_credential_manager
from google.adk.auth.auth_credential import AuthCredentialTypes
from google.adk.runners import Runner
from google.adk.sessions.in_memory_session_service import InMemorySessionService
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from google.genai import types

CredentialManager = adk_credential_manager.CredentialManager
HAS_EXTENSION_POINT = hasattr(CredentialManager, "register_auth_provider")
needs_extension_point = pytest.mark.skipif(
    not HAS_EXTENSION_POINT,
    reason="this ADK has no CredentialManager.register_auth_provider (added in 1.29);"
    " install() is the way there",
)

if HAS_EXTENSION_POINT:
    from adk_token_exchange.auth_provider import (
        GoogleIdTokenAuthProvider,
        GoogleIdTokenAuthScheme,
        register,
    )
    from google.adk.auth.auth_schemes import CustomAuthScheme
    from google.adk.auth.auth_tool import AuthConfig
    from google.adk.auth.exchanger.base_credential_exchanger import CredentialExchangeError

APP = "provider"
USER = "user"
TARGET = "mcp-invoker@emulated-project.iam.gserviceaccount.com"


@pytest.fixture(autouse=True)
def uninstalled_after() -> Iterator[None]:
    yield
    adk_token_exchange.uninstall()


def _adk_classes_state() -> dict[str, dict[str, int]]:
    """What install() would change: the classes' own attributes, by identity."""
    from google.adk.tools.openapi_tool.auth.credential_exchangers import (
        auto_auth_credential_exchanger as auto,
    )

    classes = {"CredentialManager": CredentialManager}
    auto_cls = getattr(auto, "AutoAuthCredentialExchanger", None)
    if auto_cls is not None:
        classes["AutoAuthCredentialExchanger"] = auto_cls
    return {name: {k: id(v) for k, v in vars(cls).items()} for name, cls in classes.items()}


async def _run_agent(agent: LlmAgent) -> str | None:
    runner = Runner(app_name=APP, agent=agent, session_service=InMemorySessionService())
    try:
        session = await runner.session_service.create_session(app_name=APP, user_id=USER)
        message = types.Content(role="user", parts=[types.Part(text="Say hello")])
        answer = None
        async for event in runner.run_async(
            user_id=USER, session_id=session.id, new_message=message
        ):
            for part in (event.content.parts or []) if event.content else []:
                if part.text and part.text.startswith(ANSWER_PREFIX):
                    answer = part.text
        return answer
    finally:
        await runner.close()


def _greeter(url: str, scheme: Any) -> LlmAgent:
    return LlmAgent(
        name="greeter",
        model=ScriptedLlm(tool="greet", args={"name": "Ada"}),
        instruction="Use the tools to greet the user.",
        tools=[
            McpToolset(
                connection_params=StreamableHTTPConnectionParams(url=url),
                auth_scheme=scheme,
            )
        ],
    )


def _identity_requests(emulator: GoogleEmulator) -> list[Any]:
    return [r for r in emulator.requests if r.path.endswith("/identity")]


class _NoContext:
    """The provider never reads the callback context; ADK passes its own."""


# --------------------------------------------------------------------------
# End to end


@needs_extension_point
async def test_cloud_run_agent_calls_mcp_tool_through_adk_auth_provider_without_install(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    assert not adk_token_exchange.is_installed()
    before = _adk_classes_state()
    agent = _greeter(protected_mcp.url, GoogleIdTokenAuthScheme(audience=protected_mcp.url))

    answer = await _run_agent(agent)

    assert answer == f"{ANSWER_PREFIX}Hello, Ada! (called by {emulator.metadata_service_account})"
    assert protected_mcp.count(accepted=False) == 0
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}
    # Listing the tools and calling one: one token, minted once.
    assert [r.audience for r in _identity_requests(emulator)] == [protected_mcp.audience]
    assert not adk_token_exchange.is_installed()
    assert _adk_classes_state() == before, "ADK's classes were modified"
    assert "adk_token_exchange" not in (inspect.getsourcefile(CredentialManager.__init__) or "")


@needs_extension_point
async def test_agent_with_provider_mints_as_impersonated_service_account(
    emulator: GoogleEmulator, protected_mcp: ProtectedMcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A developer's laptop: gcloud login (no ID token with a real audience),
    # impersonating the service account that may invoke the service.
    emulator.write_application_default_credentials(emulator.authorized_user_info())
    emulator.register_service_account(TARGET)
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    scheme = GoogleIdTokenAuthScheme(audience=protected_mcp.url, impersonate=TARGET)

    answer = await _run_agent(_greeter(protected_mcp.url, scheme))

    assert answer == f"{ANSWER_PREFIX}Hello, Ada! (called by {TARGET})"
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}


# --------------------------------------------------------------------------
# The provider as ADK calls it


@needs_extension_point
async def test_provider_returns_adk_bearer_credential_for_url_origin(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    config = AuthConfig(auth_scheme=GoogleIdTokenAuthScheme(audience="https://svc.a.run.app/mcp"))

    credential = await register().get_auth_credential(config, _NoContext())

    assert credential.auth_type == AuthCredentialTypes.HTTP
    assert credential.http is not None
    assert credential.http.scheme == "bearer"
    assert credential.http.credentials.token
    assert not credential.http.additional_headers  # no quota project on an ID token
    claims = emulator.verify_id_token(credential.http.credentials.token, ["https://svc.a.run.app"])
    assert claims["email"] == emulator.metadata_service_account


@needs_extension_point
async def test_exact_audience_is_sent_verbatim(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    audience = "https://svc.a.run.app/mcp"
    config = AuthConfig(auth_scheme=GoogleIdTokenAuthScheme(audience=audience, exact=True))

    credential = await register().get_auth_credential(config, _NoContext())

    assert credential.http is not None
    emulator.verify_id_token(credential.http.credentials.token, [audience])
    assert [r.audience for r in _identity_requests(emulator)] == [audience]


@needs_extension_point
async def test_same_token_string_until_expiry_so_adk_reuses_mcp_sessions(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    config = AuthConfig(auth_scheme=GoogleIdTokenAuthScheme(audience="https://svc.a.run.app"))
    provider = register()

    first = await provider.get_auth_credential(config, _NoContext())
    second = await provider.get_auth_credential(config, _NoContext())

    assert first.http is not None and second.http is not None
    assert first.http.credentials.token == second.http.credentials.token
    assert len(_identity_requests(emulator)) == 1


@needs_extension_point
async def test_credentials_file_path_mints_as_that_service_account(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    info = emulator.service_account_info()
    key_file = emulator.write_json(tmp_path, "key.json", info)
    config = AuthConfig(
        auth_scheme=GoogleIdTokenAuthScheme(
            audience="https://svc.a.run.app", credentials_file=key_file
        )
    )

    credential = await register().get_auth_credential(config, _NoContext())

    assert credential.http is not None
    claims = emulator.verify_id_token(credential.http.credentials.token, ["https://svc.a.run.app"])
    assert claims["email"] == info["client_email"]


@needs_extension_point
async def test_no_credentials_raises_our_error_and_adks_never_value_error() -> None:
    # The autouse isolation leaves no ADC at all (metadata on a closed port).
    config = AuthConfig(auth_scheme=GoogleIdTokenAuthScheme(audience="https://svc.a.run.app"))

    with pytest.raises(errors.CredentialsNotFoundError) as caught:
        await register().get_auth_credential(config, _NoContext())

    assert isinstance(caught.value, CredentialExchangeError)
    # ADK's toolset auth turns a ValueError into a request for user credentials.
    assert not isinstance(caught.value, ValueError)


@needs_extension_point
async def test_no_credentials_fails_the_agent_run_with_the_real_cause(
    protected_mcp: ProtectedMcpServer,
) -> None:
    agent = _greeter(protected_mcp.url, GoogleIdTokenAuthScheme(audience=protected_mcp.url))

    with pytest.raises(errors.CredentialsNotFoundError):
        await _run_agent(agent)

    assert protected_mcp.count() == 0


@needs_extension_point
async def test_scheme_read_back_as_generic_custom_scheme_still_reaches_provider(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What ADK does with a scheme it has read back from storage: a plain
    # CustomAuthScheme carrying the fields, rehydrated by its `type`.
    emulator.use_metadata_server(monkeypatch)
    stored = GoogleIdTokenAuthScheme(audience="https://svc.a.run.app/mcp").model_dump(by_alias=True)
    generic = CustomAuthScheme.model_validate(stored)
    assert type(generic) is CustomAuthScheme

    credential = await CredentialManager(AuthConfig(auth_scheme=generic)).get_auth_credential(
        _NoContext()
    )

    assert credential is not None and credential.http is not None
    emulator.verify_id_token(credential.http.credentials.token, ["https://svc.a.run.app"])


# --------------------------------------------------------------------------
# The scheme holds no secret


@needs_extension_point
@pytest.mark.parametrize(
    "field", ["service_account_key", "private_key", "serviceAccountCredential"]
)
def test_scheme_refuses_an_inline_key(field: str) -> None:
    with pytest.raises(ValueError, match="credentials_file"):
        GoogleIdTokenAuthScheme(audience="https://svc.a.run.app", **{field: "-----BEGIN"})


@needs_extension_point
def test_scheme_refuses_key_json_as_credentials_file() -> None:
    with pytest.raises(ValueError, match="a path, not the key's JSON"):
        GoogleIdTokenAuthScheme(
            audience="https://svc.a.run.app", credentials_file='{"type": "service_account"}'
        )


@needs_extension_point
def test_scheme_stores_an_absolute_path_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scheme = GoogleIdTokenAuthScheme(audience="https://svc.a.run.app", credentials_file="key.json")

    assert scheme.credentials_file == str(tmp_path / "key.json")
    assert scheme.model_dump(by_alias=True) == {
        "type": "googleIdToken",
        "audience": "https://svc.a.run.app",
        "exact": False,
        "impersonate": None,
        "delegates": [],
        "credentialsFile": str(tmp_path / "key.json"),
    }


@needs_extension_point
def test_impersonation_chain_splits_into_target_and_delegates() -> None:
    scheme = GoogleIdTokenAuthScheme(
        audience="https://svc.a.run.app", impersonate=["hop@p.iam.gserviceaccount.com", TARGET]
    )

    assert (scheme.impersonate, scheme.delegates) == (TARGET, ["hop@p.iam.gserviceaccount.com"])


@needs_extension_point
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"audience": "  "}, "audience is required"),
        (
            {"audience": "https://svc.a.run.app", "delegates": ["a@b"]},
            "without a service account to impersonate",
        ),
        (
            {
                "audience": "https://svc.a.run.app",
                "impersonate": ["a@b", TARGET],
                "delegates": ["c"],
            },
            "not both",
        ),
    ],
)
def test_scheme_refuses_unusable_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GoogleIdTokenAuthScheme(**kwargs)


@needs_extension_point
@pytest.mark.parametrize(
    ("audience", "exact", "expected"),
    [
        ("https://svc-xyz.a.run.app/mcp", False, "https://svc-xyz.a.run.app"),
        ("https://svc-xyz.a.run.app/mcp", True, "https://svc-xyz.a.run.app/mcp"),
        ("http://127.0.0.1:8080/mcp/", False, "http://127.0.0.1:8080"),
        ("123-abc.apps.googleusercontent.com", False, "123-abc.apps.googleusercontent.com"),
    ],
)
def test_token_audience_follows_the_same_rule_as_id_token_credential(
    audience: str, exact: bool, expected: str
) -> None:
    scheme = GoogleIdTokenAuthScheme(audience=audience, exact=exact)
    credential = adk_token_exchange.id_token_credential(audience, exact=exact)

    assert scheme.token_audience == expected
    assert credential.service_account is not None
    assert credential.service_account.audience == expected


# --------------------------------------------------------------------------
# Registration


@needs_extension_point
def test_register_is_idempotent_and_goes_through_adk_public_api() -> None:
    first = register()
    second = register()

    assert first is second
    assert isinstance(first, GoogleIdTokenAuthProvider)
    registry = CredentialManager._auth_provider_registry
    assert registry.get_provider(GoogleIdTokenAuthScheme) is first


@needs_extension_point
def test_creating_a_scheme_registers_the_provider() -> None:
    GoogleIdTokenAuthScheme(audience="https://svc.a.run.app")

    provider = CredentialManager._auth_provider_registry.get_provider(GoogleIdTokenAuthScheme)
    assert isinstance(provider, GoogleIdTokenAuthProvider)


@needs_extension_point
def test_register_without_adk_extension_point_says_to_use_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(CredentialManager, "register_auth_provider")

    with pytest.raises(ImportError, match=r"install\(\)"):
        register()


@pytest.mark.skipif(HAS_EXTENSION_POINT, reason="this ADK has register_auth_provider")
def test_import_on_adk_without_extension_point_says_to_use_install() -> None:
    sys.modules.pop("adk_token_exchange.auth_provider", None)

    with pytest.raises(ImportError, match=r"google-adk >= 1\.29.*install\(\)"):
        importlib.import_module("adk_token_exchange.auth_provider")

"""Cloud Run's second header and IAP's two strategies, through a real agent.

- Cloud Run checks ``X-Serverless-Authorization`` when present and leaves
  ``Authorization`` to the service (an MCP server with its own OAuth); it
  forwards the checked token with its signature removed.
- IAP takes an ID token whose ``aud`` is its OAuth client id (never the
  run.app URL), or a service-account JWT for ``{url}/*``; in
  ``Proxy-Authorization`` (``Authorization`` then goes to the app) or
  ``Authorization``.

Each road: ``http_client_factory(...)`` (every ADK) and ADK's credential
path (``id_token_credential(header=...)`` needs ADK 2.x, whose MCP tools send
a credential's additional headers; ``iap_jwt_credential`` works on both).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import adk_token_exchange
import jwt
import pytest
from adk_token_exchange import IapJwtAuth, IdTokenAuth, errors, http_client_factory
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer
from adk_token_exchange.testing.iap import DEFAULT_IAP_CLIENT_ID, IapProtectedMcpServer
from adk_token_exchange.testing.protected import SIGNATURE_REMOVED
from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.agents import greeting
from support.roads import run_turns, toolset_agent, uninstall_after_each_test  # noqa: F401

APP_TOKEN = "app-own-oauth-token"


def _adk_sends_additional_headers() -> bool:
    from adk_token_exchange._adk.model import ADDITIONAL_HEADERS_SENT

    return ADDITIONAL_HEADERS_SENT


needs_additional_headers = pytest.mark.skipif(
    not _adk_sends_additional_headers(),
    reason="this ADK's MCP tools put only Authorization on a request from a credential",
)


@pytest.fixture
def key(emulator: GoogleEmulator, tmp_path: Path) -> tuple[str, Path]:
    info = emulator.service_account_info()
    return info["client_email"], emulator.write_json(tmp_path, "key.json", info)


def factory_toolset(url: str, auth: object, app_token: str | None = None) -> McpToolset:
    headers = {"Authorization": f"Bearer {app_token}"} if app_token else None
    return McpToolset(
        connection_params=StreamableHTTPConnectionParams(
            url=url,
            headers=headers,
            httpx_client_factory=http_client_factory(auth),  # type: ignore[arg-type]
        )
    )


def credential_toolset(url: str, credential: object, app_token: str | None = None) -> McpToolset:
    headers = {"Authorization": f"Bearer {app_token}"} if app_token else None
    return McpToolset(
        connection_params=StreamableHTTPConnectionParams(url=url, headers=headers),
        auth_scheme=SCHEME,
        auth_credential=credential,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------
# Cloud Run: X-Serverless-Authorization


def _assert_app_kept_its_authorization(
    server: ProtectedMcpServer, emulator: GoogleEmulator
) -> None:
    seen = server.app.requests
    assert seen and {r.authorization for r in seen} == {f"Bearer {APP_TOKEN}"}
    assert server.app.refused == 0
    forwarded = {r.serverless_authorization for r in seen}
    assert all(v and v.endswith("." + SIGNATURE_REMOVED) for v in forwarded), forwarded
    token = next(iter(forwarded)).removeprefix("Bearer ")  # type: ignore[union-attr]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == server.audience, "the service can still read who called"
    assert {d.header for d in server.decisions} == {"x-serverless-authorization"}


async def test_cloud_run_checks_x_serverless_authorization_and_the_app_keeps_its_own(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    email, path = key
    with ProtectedMcpServer(emulator, app_token=APP_TOKEN) as server:
        auth = IdTokenAuth(
            server.url, service_account_key=path, header="X-Serverless-Authorization"
        )

        turns = await run_turns(toolset_agent(factory_toolset(server.url, auth, APP_TOKEN)))

        assert turns.answers == [greeting(email)]
        _assert_app_kept_its_authorization(server, emulator)


@needs_additional_headers
async def test_cloud_run_second_header_on_adks_credential_path(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    email, path = key
    with ProtectedMcpServer(emulator, app_token=APP_TOKEN) as server:
        credential = adk_token_exchange.id_token_credential(
            server.url, service_account_key=str(path), header="X-Serverless-Authorization"
        )

        turns = await run_turns(
            toolset_agent(credential_toolset(server.url, credential, APP_TOKEN))
        )

        assert turns.answers == [greeting(email)]
        _assert_app_kept_its_authorization(server, emulator)


async def test_one_token_serves_both_header_shapes_side_by_side(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    # Same credential and audience, one tool with the token in Authorization and
    # one in X-Serverless-Authorization: each gets its own shape of ADK's result.
    if not _adk_sends_additional_headers():
        pytest.skip("needs ADK 2.x's additional headers")
    email, path = key
    with (
        ProtectedMcpServer(emulator) as plain,
        ProtectedMcpServer(emulator, app_token=APP_TOKEN) as own_auth,
    ):
        # Both servers share one audience (custom audience), as two paths of one service would.
        audience = "https://shared-audience.example.com"
        plain.extra_audiences.append(audience)
        own_auth.extra_audiences.append(audience)
        first = adk_token_exchange.id_token_credential(
            audience, service_account_key=str(path), exact=True
        )
        second = adk_token_exchange.id_token_credential(
            audience, service_account_key=str(path), exact=True, header="X-Serverless-Authorization"
        )

        a = await run_turns(toolset_agent(credential_toolset(plain.url, first)))
        b = await run_turns(toolset_agent(credential_toolset(own_auth.url, second, APP_TOKEN)))
        c = await run_turns(toolset_agent(credential_toolset(plain.url, first)))

        assert a.answers == b.answers == c.answers == [greeting(email)]
        assert {d.header for d in plain.decisions} == {"authorization"}
        assert {d.header for d in own_auth.decisions} == {"x-serverless-authorization"}
        assert emulator.count("token") == 1, "one token, two shapes"


@pytest.mark.skipif(_adk_sends_additional_headers(), reason="ADK 2.x sends additional headers")
def test_second_header_on_the_credential_path_of_adk_1_says_to_use_the_factory() -> None:
    with pytest.raises(errors.ConfigurationError, match="http_client_factory"):
        adk_token_exchange.id_token_credential(
            "https://svc.a.run.app", header="X-Serverless-Authorization"
        )


# --------------------------------------------------------------------------
# IAP: an ID token for its OAuth client id


async def test_iap_accepts_an_id_token_for_its_oauth_client_id(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    email, path = key
    with IapProtectedMcpServer(emulator) as server:
        credential = adk_token_exchange.id_token_credential(
            DEFAULT_IAP_CLIENT_ID, service_account_key=str(path)
        )

        turns = await run_turns(toolset_agent(credential_toolset(server.url, credential)))

        assert turns.answers == [greeting(email)]
        assert {d.audience for d in server.decisions} == {DEFAULT_IAP_CLIENT_ID}


async def test_iap_refuses_an_id_token_for_the_service_url(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    _, path = key
    with IapProtectedMcpServer(emulator) as server:
        credential = adk_token_exchange.id_token_credential(
            server.url, service_account_key=str(path)
        )

        try:
            turns = await run_turns(toolset_agent(credential_toolset(server.url, credential)))
            answered = turns.answers[0] or ""
        except Exception:  # ADK 1.24.1 raises where 2.x reports a missing tool
            answered = ""

        assert "Hello" not in answered
        refused = [d for d in server.decisions if not d.accepted]
        assert refused and {d.status for d in refused} == {401}
        assert all("not accepted" in d.reason for d in refused)


# --------------------------------------------------------------------------
# IAP: a service-account JWT (no OAuth client)


async def test_iap_accepts_a_service_account_jwt_signed_with_the_key(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    email, path = key
    with IapProtectedMcpServer(emulator, allowed_principals=[email]) as server:
        auth = IapJwtAuth(server.url, service_account_key=path)

        turns = await run_turns(toolset_agent(factory_toolset(server.url, auth)), 2)

        assert turns.answers == [greeting(email)] * 2
        assert {d.audience for d in server.decisions} == {f"{server.url}/*"}
        assert emulator.count() == 0, "signed locally: no request to Google"


async def test_iap_jwt_through_signjwt_on_adks_credential_path(
    emulator: GoogleEmulator, key: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    _, path = key
    signer = "iap-caller@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(signer)
    with IapProtectedMcpServer(emulator, allowed_principals=[signer]) as server:
        credential = adk_token_exchange.iap_jwt_credential(
            server.url, service_account_key=str(path), impersonate=signer
        )

        turns = await run_turns(toolset_agent(credential_toolset(server.url, credential)), 2)

        assert turns.answers == [greeting(signer)] * 2
        signs = [r for r in emulator.requests if r.kind == "iam"]
        assert [r.path.rpartition(":")[2] for r in signs] == ["signJwt"], "cached after one"


async def test_iap_proxy_authorization_leaves_the_apps_authorization(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    email, path = key
    with IapProtectedMcpServer(emulator, app_token=APP_TOKEN) as server:
        auth = IapJwtAuth(server.url, service_account_key=path, header="Proxy-Authorization")

        turns = await run_turns(toolset_agent(factory_toolset(server.url, auth, APP_TOKEN)))

        assert turns.answers == [greeting(email)]
        assert {d.header for d in server.decisions} == {"proxy-authorization"}
        assert {r.authorization for r in server.app.requests} == {f"Bearer {APP_TOKEN}"}
        assert {r.proxy_authorization for r in server.app.requests} == {None}, "IAP consumed it"


async def test_iap_refuses_a_principal_without_web_app_user(
    emulator: GoogleEmulator, key: tuple[str, Path]
) -> None:
    _, path = key
    with IapProtectedMcpServer(emulator, allowed_principals=["someone@example.com"]) as server:
        auth = IapJwtAuth(server.url, service_account_key=path)
        with contextlib.suppress(Exception):  # ADK 1.24.1 raises, 2.x answers without the tool
            await run_turns(toolset_agent(factory_toolset(server.url, auth)))

        refused = [d for d in server.decisions if not d.accepted]
        assert refused and {d.status for d in refused} == {403}

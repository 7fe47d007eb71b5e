"""End to end: ADK agents outside Google Cloud — a Kubernetes pod, a GitHub Actions
job, a helper program, an EC2 instance — call a Cloud-Run-protected MCP server
and a Google-API-like REST service through Workload Identity Federation.

A real ``LlmAgent`` + ``McpToolset`` / ``OpenAPIToolset`` + ``Runner`` with a
scripted model; Google (STS, IAM), the OIDC issuer and AWS's metadata service
are the emulator, reached only through what real users have: the
``external_account`` file gcloud writes (``token_url``,
``service_account_impersonation_url``, ``credential_source``) and the
variables ``GOOGLE_APPLICATION_CREDENTIALS``,
``GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES``. Runs on ADK 2.x and 1.24.1.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import errors
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.emulator import CLOUD_PLATFORM_SCOPE, GITHUB_SUBJECT
from adk_token_exchange.testing.protected import ProtectedMcpServer, ProtectedRestServer
from adk_token_exchange.testing.scripted_llm import ScriptedLlm
from google.adk.agents.llm_agent import LlmAgent
from google.adk.auth.auth_credential import AuthCredential, AuthCredentialTypes, ServiceAccount
from google.adk.tools.openapi_tool.openapi_spec_parser.openapi_toolset import OpenAPIToolset
from support.adk import ADK_HAS_ID_TOKEN_FIELDS
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.agents import greeting, mcp_agent, private_network_ok, reset_exchangers, run_once

SA = "mcp-caller@emulated-project.iam.gserviceaccount.com"
ALLOW_EXECUTABLES = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"


@pytest.fixture(autouse=True)
def fresh_exchanger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", ALLOW_EXECUTABLES):
        monkeypatch.delenv(name, raising=False)
    reset_exchangers(uninstall=False)
    yield
    reset_exchangers()


@pytest.fixture
def github(emulator: GoogleEmulator) -> str:
    """A workload identity pool provider that trusts the GitHub-like issuer."""
    return emulator.add_oidc_provider()


def use_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, info: dict[str, Any]) -> Path:
    """The file as ``GOOGLE_APPLICATION_CREDENTIALS``, as google-github-actions/auth sets it."""
    path = tmp_path / "wif.json"
    path.write_text(json.dumps(info, indent=2))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


def token_file(emulator: GoogleEmulator, audience: str, tmp_path: Path) -> dict[str, str]:
    """A projected service account token, as a kubelet keeps it."""
    path = tmp_path / "token"
    path.write_text(emulator.issue_subject_token(audience, "system:serviceaccount:agents:eval"))
    return {"file": str(path)}


def adk_own_model(audience: str) -> AuthCredential:
    """What a user writes with ADK's own model (extras on 1.24.1), after ``install()``."""
    adk_token_exchange.install()
    extra = {} if ADK_HAS_ID_TOKEN_FIELDS else {"scopes": []}
    return AuthCredential(
        auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
        service_account=ServiceAccount(
            use_default_credential=True, use_id_token=True, audience=audience, **extra
        ),
    )


def helper_program(tmp_path: Path, token: str, marker: Path) -> str:
    """A token helper that prints AIP-4117's response and notes each run in ``marker``:
    ``core`` for this package, ``google-auth`` for ADK's own ADC probe (google-auth
    alone sets ``GOOGLE_EXTERNAL_ACCOUNT_REVOKE``)."""
    response = json.dumps(
        {
            "version": 1,
            "success": True,
            "token_type": "urn:ietf:params:oauth:token-type:id_token",
            "id_token": token,
        }
    )
    script = tmp_path / "get-token"
    script.write_text(
        "#!/bin/sh\n"
        f'[ -n "$GOOGLE_EXTERNAL_ACCOUNT_REVOKE" ] && echo google-auth >> {marker} '
        f"|| echo core >> {marker}\n"
        f"echo '{response}'\n"
    )
    script.chmod(0o755)
    return str(script)


def ours(emulator: GoogleEmulator, kind: str) -> list[Any]:
    """This package's requests of ``kind`` (ADK's own google-auth also resolves ADC, for
    its mTLS probe on every MCP connection, and runs the federation itself)."""
    return [
        r
        for r in emulator.requests
        if r.kind == kind and (r.user_agent or "").startswith("adk-token-exchange/")
    ]


def sts_count(emulator: GoogleEmulator) -> int:
    return len(ours(emulator, "sts"))


# -- ID tokens for a Cloud Run MCP server ----------------------------------------------


async def test_kubernetes_pod_agent_calls_cloud_run_mcp_with_adks_own_service_account_model(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    info = emulator.external_account_info(
        github, token_file(emulator, github, tmp_path), service_account=SA
    )
    use_adc(monkeypatch, tmp_path, info)

    run = await run_once(mcp_agent(protected_mcp.url, adk_own_model(protected_mcp.audience)))

    assert run.answer == greeting(SA)
    assert {d.audience for d in protected_mcp.decisions} == {protected_mcp.audience}
    assert sts_count(emulator) == 1
    [iam] = ours(emulator, "iam")
    assert iam.path.endswith(":generateIdToken")
    assert iam.caller == emulator.federated_principal(github, "system:serviceaccount:agents:eval")


async def test_github_actions_agent_calls_cloud_run_mcp_through_the_request_token_url(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # What google-github-actions/auth writes from ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN.
    source = emulator.github_actions_credential_source(github)
    use_adc(
        monkeypatch, tmp_path, emulator.external_account_info(github, source, service_account=SA)
    )
    agent = mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))

    runs = [await run_once(agent), await run_once(agent)]

    assert [run.answer for run in runs] == [greeting(SA)] * 2
    assert len(ours(emulator, "oidc")) == 1, "one subject token: the tokens are cached"
    assert sts_count(emulator) == 1
    iam = ours(emulator, "iam")
    assert [r.caller for r in iam] == [emulator.federated_principal(github, GITHUB_SUBJECT)]


async def test_agent_with_an_executable_token_helper_calls_cloud_run_mcp_when_allowed(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs"
    program = helper_program(tmp_path, emulator.issue_subject_token(github, lifetime=600), marker)
    info = emulator.external_account_info(
        github, {"executable": {"command": program, "timeout_millis": 10000}}, service_account=SA
    )
    use_adc(monkeypatch, tmp_path, info)
    monkeypatch.setenv(ALLOW_EXECUTABLES, "1")
    agent = mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))

    runs = [await run_once(agent), await run_once(agent)]

    assert [run.answer for run in runs] == [greeting(SA)] * 2
    runs_by_us = marker.read_text().splitlines().count("core")
    assert runs_by_us == 1, "run once: its exchange is cached"


async def test_aws_instance_agent_calls_cloud_run_mcp_with_its_role(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    audience = emulator.add_aws_provider()
    role = emulator.aws_instance(region="eu-west-3", role="eval-runner")
    info = emulator.external_account_info(
        audience, emulator.aws_credential_source(), service_account=SA
    )
    use_adc(monkeypatch, tmp_path, info)

    run = await run_once(
        mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
    )

    assert run.answer == greeting(SA)
    [iam] = ours(emulator, "iam")
    assert iam.caller == emulator.federated_principal(audience, role.arn)
    assert ours(emulator, "aws")[0].method == "PUT"


# -- access tokens for a Google API ------------------------------------------------------


@pytest.mark.parametrize("impersonate", [False, True], ids=["federated", "impersonated"])
async def test_federated_agent_calls_a_google_api_with_an_access_token(
    emulator: GoogleEmulator,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    impersonate: bool,
) -> None:
    info = emulator.external_account_info(
        github,
        token_file(emulator, github, tmp_path),
        service_account=SA if impersonate else None,
    )
    use_adc(monkeypatch, tmp_path, info)
    expected = (
        SA
        if impersonate
        else emulator.federated_principal(github, "system:serviceaccount:agents:eval")
    )
    with ProtectedRestServer(emulator) as rest:
        toolset = OpenAPIToolset(
            spec_str=json.dumps(rest.openapi_spec()),
            spec_str_type="json",
            auth_scheme=SCHEME,
            auth_credential=adk_token_exchange.access_token_credential([CLOUD_PLATFORM_SCOPE]),
            **private_network_ok(),
        )
        agent = LlmAgent(
            name="rest_caller",
            model=ScriptedLlm(tool="get_greeting", args={"project": "p1"}),
            tools=[toolset],
        )

        run = await run_once(agent)

        assert run.answer is not None and "Hello from p1!" in run.answer
        assert [d.email for d in rest.decisions if d.accepted] == [expected]
    assert sts_count(emulator) == 1
    assert len(ours(emulator, "iam")) == (1 if impersonate else 0)


# -- what fails, and how ---------------------------------------------------------------


async def test_an_id_token_without_impersonation_fails_at_once_naming_the_field_and_flag(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    info = emulator.external_account_info(github, token_file(emulator, github, tmp_path))
    path = use_adc(monkeypatch, tmp_path, info)
    credential = adk_token_exchange.id_token_credential(protected_mcp.url)

    with pytest.raises(errors.ConfigurationError) as caught:
        await run_once(mcp_agent(protected_mcp.url, credential))

    message = str(caught.value)
    assert str(path) in message
    assert "service_account_impersonation_url" in message
    assert "--service-account=SA_EMAIL" in message
    assert sts_count(emulator) == 0 and protected_mcp.count() == 0


async def test_an_executable_is_refused_and_never_run_without_the_opt_in(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "runs"
    program = helper_program(tmp_path, emulator.issue_subject_token(github), marker)
    info = emulator.external_account_info(
        github, {"executable": {"command": program}}, service_account=SA
    )
    use_adc(monkeypatch, tmp_path, info)

    with pytest.raises(errors.ConfigurationError) as caught:
        await run_once(
            mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
        )

    assert f"{ALLOW_EXECUTABLES}=1" in str(caught.value)
    assert not marker.exists(), "the program never ran"
    assert sts_count(emulator) == 0 and protected_mcp.count() == 0


async def test_a_refused_subject_token_reaches_the_user_and_no_output_shows_it(
    emulator: GoogleEmulator,
    protected_mcp: ProtectedMcpServer,
    github: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    expired = emulator.issue_subject_token(github, lifetime=-60)
    source = emulator.github_actions_credential_source(github, lifetime=-60)
    request_token = source["headers"]["Authorization"].removeprefix("Bearer ")
    use_adc(
        monkeypatch, tmp_path, emulator.external_account_info(github, source, service_account=SA)
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(errors.PermanentError) as caught:
        await run_once(
            mcp_agent(protected_mcp.url, adk_token_exchange.id_token_credential(protected_mcp.url))
        )

    message = str(caught.value)
    assert "invalid_grant" in message and "expired" in message
    assert "attribute condition" in message, "our advice rides along"
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
    assert request_token not in seen
    assert expired.split(".")[1] not in seen
    assert "eyJ" not in seen, "no JWT: neither the subject token nor a Google token"
    assert protected_mcp.count() == 0

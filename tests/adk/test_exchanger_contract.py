"""The exchanger contract, as ADK calls it: reading ADK's model, the errors ADK's paths
expect, the bearer result and its reuse, the event loop, once-per-process warnings.

Runs on ADK 2.x and 1.24.1; Google is the local emulator.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import errors
from adk_token_exchange._adk import model
from adk_token_exchange._adk.errors import wrap_error
from adk_token_exchange.testing import GoogleEmulator
from google.adk.auth.auth_credential import (
    AuthCredential,
    AuthCredentialTypes,
    ServiceAccount,
)
from google.adk.auth.exchanger.base_credential_exchanger import (
    CredentialExchangeError,
    ExchangeResult,
)
from google.adk.tools.openapi_tool.auth.credential_exchangers.base_credential_exchanger import (
    AuthCredentialMissingError,
)
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.adk import SA, manager_exchanger

RUN_URL = "https://svc-xyz-uc.a.run.app/mcp"

pytestmark = pytest.mark.usefixtures("adk_uninstalled")


# --------------------------------------------------------------------------
# Reading ADK's model: errors ADK's paths expect


def _raw(**fields: Any) -> AuthCredential:
    # model_construct: ADK >= 1.26 validates these at construction, 1.24.1 and
    # deserialized data do not.
    return AuthCredential.model_construct(
        auth_type=SA, service_account=ServiceAccount.model_construct(**fields)
    )


@pytest.mark.parametrize(
    ("credential", "field"),
    [
        (AuthCredential(auth_type=SA), "service_account"),
        (_raw(scopes=[], use_default_credential=False), "use_default_credential"),
        (
            _raw(scopes=[], use_default_credential=True, use_id_token=True, audience=None),
            "audience",
        ),
    ],
)
async def test_missing_configuration_names_the_field_on_both_paths(
    credential: AuthCredential, field: str
) -> None:
    exchanger = adk_token_exchange.ServiceAccountExchanger()

    with pytest.raises(CredentialExchangeError, match=field) as on_exchange:
        await exchanger.exchange(credential, SCHEME)
    with pytest.raises(AuthCredentialMissingError, match=field):
        exchanger.exchange_credential(SCHEME, credential)

    assert isinstance(on_exchange.value, errors.ConfigurationError)
    assert not isinstance(on_exchange.value, ValueError)


async def test_key_refused_up_front_is_adks_error_too(emulator: GoogleEmulator) -> None:
    key = {**emulator.service_account_info(), "token_uri": "http://oauth2.example.com/token"}
    credential = adk_token_exchange.id_token_credential(RUN_URL, service_account_key=key)
    exchanger = adk_token_exchange.ServiceAccountExchanger()

    with pytest.raises(errors.ConfigurationError, match="token_uri") as caught:
        await exchanger.exchange(credential, SCHEME)

    assert isinstance(caught.value, CredentialExchangeError)
    assert key["private_key"] not in str(caught.value)
    assert emulator.count() == 0


def test_fetch_errors_are_ours_and_adks() -> None:
    for ours in (
        errors.TokenExchangeError,
        errors.ConfigurationError,
        errors.CredentialsNotFoundError,
        errors.TransientError,
        errors.UpstreamTimeoutError,
        errors.PermanentError,
    ):
        original = ours("invalid_grant: Invalid JWT Signature.")
        original.status = 400  # type: ignore[attr-defined]

        wrapped = wrap_error(original)

        assert isinstance(wrapped, ours)
        assert isinstance(wrapped, CredentialExchangeError)
        assert isinstance(wrapped, AuthCredentialMissingError)
        assert not isinstance(wrapped, ValueError)
        assert str(wrapped) == "invalid_grant: Invalid JWT Signature."
        assert wrapped.status == 400  # type: ignore[attr-defined]
        import pickle

        assert type(pickle.loads(pickle.dumps(wrapped))) is type(wrapped)


# --------------------------------------------------------------------------
# Exchanging, the way ADK calls it


async def test_exchange_returns_adk_bearer_result_and_reuses_it(
    emulator: GoogleEmulator,
) -> None:
    key = emulator.service_account_info()
    credential = adk_token_exchange.id_token_credential(
        "https://svc.example.com/mcp", service_account_key=key
    )
    exchanger = manager_exchanger(credential)

    first = await exchanger.exchange(credential.model_copy(deep=True), SCHEME)
    second = await exchanger.exchange(credential.model_copy(deep=True), SCHEME)
    sync = exchanger.exchange_credential(SCHEME, credential.model_copy(deep=True))

    assert isinstance(first, ExchangeResult) and first.was_exchanged is True
    http = first.credential.http
    assert first.credential.auth_type == AuthCredentialTypes.HTTP
    assert http is not None and http.scheme == "bearer"
    assert http.additional_headers is None  # ID tokens carry no quota project
    claims = emulator.verify_id_token(http.credentials.token or "", "https://svc.example.com")
    assert claims["email"] == key["client_email"]
    # The same token string: ADK pools MCP sessions by header value.
    assert second.credential is first.credential
    assert sync is first.credential
    assert emulator.count("token") == 1


async def test_access_token_carries_quota_project_header(
    emulator: GoogleEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = emulator.authorized_user_info(quota_project_id="billing-project")
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(emulator.write_json(tmp_path, "adc.json", user))
    )
    credential = adk_token_exchange.access_token_credential()

    result = await manager_exchanger(credential).exchange(credential, SCHEME)

    http = result.credential.http
    assert http is not None and http.scheme == "bearer"
    assert http.additional_headers == {"x-goog-user-project": "billing-project"}
    info = emulator.access_token_info(http.credentials.token or "")
    assert info is not None and info.principal == "developer@example.com"


@pytest.mark.parametrize("copy", ["deep copy", "rebuilt from JSON"])
def test_warm_exchange_reads_the_model_once_and_builds_the_result_once(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch, copy: str
) -> None:
    """ADK hands a deep copy per call; a credential read back from a session is a new
    object with new strings. Either way the request is read and ADK's result built once."""
    calls: dict[str, int] = {"read_request": 0, "build_result": 0}

    def counting(name: str) -> Any:
        original = getattr(model, name)

        def count(*args: Any) -> Any:
            calls[name] += 1
            return original(*args)

        return count

    for name in calls:
        monkeypatch.setattr(model, name, counting(name))
    credential = adk_token_exchange.id_token_credential(
        "https://svc.example.com", service_account_key=emulator.service_account_info()
    )
    exchanger = adk_token_exchange.ServiceAccountExchanger()  # takes the counting shim
    fresh = (
        (lambda: credential.model_copy(deep=True))
        if copy == "deep copy"
        else (lambda: AuthCredential.model_validate_json(credential.model_dump_json()))
    )
    first = exchanger.exchange_credential(SCHEME, fresh())

    again = [exchanger.exchange_credential(SCHEME, fresh()) for _ in range(5)]

    assert all(result is first for result in again)
    assert calls == {"read_request": 1, "build_result": 1}
    assert emulator.count("token") == 1


def test_exchange_does_not_block_the_event_loop_on_a_cold_cache(
    emulator: GoogleEmulator,
) -> None:
    credential = adk_token_exchange.id_token_credential(
        "https://svc.example.com", service_account_key=emulator.service_account_info()
    )
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    emulator.set_latency(0.5, endpoint="token")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main() -> None:
        task = asyncio.create_task(ticker())
        try:
            await exchanger.exchange(credential, SCHEME)
        finally:
            task.cancel()

    asyncio.run(main())
    assert ticks >= 20  # the loop kept running while the token was fetched


def test_gcloud_login_id_token_warns_once_per_process(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    # In a fresh process: the warning is once per process, and this one has
    # maybe already given it.
    gcloud = tmp_path / "gcloud"
    emulator.write_json(
        gcloud, "application_default_credentials.json", emulator.authorized_user_info()
    )
    script = (
        "import logging, adk_token_exchange as m\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "e = m.ServiceAccountExchanger()\n"
        "for aud in ('https://a.example.com', 'https://b.example.com', 'https://a.example.com'):\n"
        "    e.exchange_credential(None, m.id_token_credential(aud))\n"
        "print('done')\n"
    )
    env = {**os.environ, "CLOUDSDK_CONFIG": str(gcloud)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.stdout.strip() == "done", result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1, result.stderr
    assert "impersonate" in warnings[0]


async def test_warm_result_is_reused_until_the_token_is_refreshed(
    emulator: GoogleEmulator,
) -> None:
    emulator.token_lifetime = 4  # refreshed in the background in its last second
    credential = adk_token_exchange.id_token_credential(
        "https://svc.example.com", service_account_key=emulator.service_account_info()
    )
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    first = await exchanger.exchange(credential.model_copy(deep=True), SCHEME)  # fetches
    assert await exchanger.exchange(credential.model_copy(deep=True), SCHEME) is first

    deadline = time.monotonic() + 10
    latest = first
    while latest.credential is first.credential and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        latest = await exchanger.exchange(credential.model_copy(deep=True), SCHEME)

    assert latest.credential is not first.credential
    assert latest.credential.http.credentials.token != first.credential.http.credentials.token
    assert emulator.count("token") == 2

    adk_token_exchange.clear_cache()
    fresh = await exchanger.exchange(credential.model_copy(deep=True), SCHEME)
    assert fresh.credential is not latest.credential
    assert emulator.count("token") == 3

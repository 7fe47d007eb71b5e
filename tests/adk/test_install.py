"""Installing the shim: what install() touches and uninstall() gives back, the import cost,
and the credential helpers users pass to ADK (audience rule, keys, impersonation, scopes).

Runs on ADK 2.x and 1.24.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import errors
from adk_token_exchange.testing import GoogleEmulator
from google.adk.auth.auth_credential import (
    AuthCredential,
    ServiceAccountCredential,
)
from google.adk.auth.auth_tool import AuthConfig
from google.adk.auth.credential_manager import CredentialManager
from google.adk.auth.exchanger.base_credential_exchanger import (
    BaseCredentialExchanger,
)
from google.adk.tools.openapi_tool.auth.credential_exchangers import (
    AutoAuthCredentialExchanger,
    ServiceAccountCredentialExchanger,
)
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.adk import SA, extra_or_field, manager_exchanger

RUN_URL = "https://svc-xyz-uc.a.run.app/mcp"

pytestmark = pytest.mark.usefixtures("adk_uninstalled")


# --------------------------------------------------------------------------
# Import cost


def test_importing_the_package_imports_neither_adk_nor_the_core_nor_httpx() -> None:
    code = (
        "import sys, adk_token_exchange as m; "
        "print(any(n == 'google.adk' or n.startswith('google.adk.') for n in sys.modules)); "
        "print('adk_token_exchange._native' in sys.modules, 'httpx' in sys.modules); "
        "print(sorted(set(m.__all__) - set(dir(m)))); "
        "print(all(getattr(m, n) is not None for n in m.__all__))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "False False"
    # Provided lazily, on first use, and then every name resolves.
    assert out[2] == str(
        sorted(
            [
                "AccessTokenAuth",
                "IapJwtAuth",
                "IdTokenAuth",
                "ServiceAccountExchanger",
                "__version__",
                "http_client_factory",
            ]
        )
    )
    assert out[3] == "True"


def test_public_api_exports_the_helpers_the_exchanger_and_the_errors() -> None:
    assert set(adk_token_exchange.__all__) >= {
        "install",
        "uninstall",
        "is_installed",
        "id_token_credential",
        "access_token_credential",
        "ServiceAccountExchanger",
        "configure",
        "TokenExchangeError",
        "__version__",
    }
    from adk_token_exchange.exchanger import ServiceAccountExchanger

    assert adk_token_exchange.ServiceAccountExchanger is ServiceAccountExchanger


# --------------------------------------------------------------------------
# install / uninstall


def test_every_credential_manager_gets_our_exchanger_after_install() -> None:
    assert isinstance(manager_exchanger(), ServiceAccountCredentialExchanger)

    adk_token_exchange.install()

    exchangers = {id(manager_exchanger()) for _ in range(3)}
    assert len(exchangers) == 1, "one shared exchanger per process"
    ours = manager_exchanger()
    assert isinstance(ours, adk_token_exchange.ServiceAccountExchanger)
    assert isinstance(ours, BaseCredentialExchanger)
    # ADK calls its own class synchronously on the loop; ours must not be one.
    assert not isinstance(ours, ServiceAccountCredentialExchanger)


def test_authenticated_function_tool_uses_our_exchanger() -> None:
    from google.adk.tools.authenticated_function_tool import AuthenticatedFunctionTool

    adk_token_exchange.install()

    def lookup(credential: Any) -> str:
        return "ok"

    tool = AuthenticatedFunctionTool(
        func=lookup,
        auth_config=AuthConfig(
            auth_scheme=SCHEME,
            raw_auth_credential=adk_token_exchange.id_token_credential(RUN_URL),
        ),
    )
    registry = tool._credentials_manager._exchanger_registry  # type: ignore[union-attr]
    assert isinstance(registry.get_exchanger(SA), adk_token_exchange.ServiceAccountExchanger)


def test_openapi_auto_exchanger_uses_ours_but_keeps_a_custom_one() -> None:
    class Custom(ServiceAccountCredentialExchanger):
        pass

    adk_token_exchange.install()

    assert (
        AutoAuthCredentialExchanger().exchangers[SA] is adk_token_exchange.ServiceAccountExchanger
    )
    custom = AutoAuthCredentialExchanger(custom_exchangers={SA: Custom})
    assert custom.exchangers[SA] is Custom


def test_install_is_idempotent_and_thread_safe() -> None:
    adk_init = CredentialManager.__dict__["__init__"]
    barrier = threading.Barrier(16)

    def install() -> None:
        barrier.wait()
        adk_token_exchange.install()

    threads = [threading.Thread(target=install) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    adk_token_exchange.install()

    assert adk_token_exchange.is_installed()
    # Wrapped exactly once, around ADK's own __init__.
    assert CredentialManager.__dict__["__init__"].__wrapped__ is adk_init
    assert isinstance(manager_exchanger(), adk_token_exchange.ServiceAccountExchanger)


def test_uninstall_restores_adk_exactly() -> None:
    manager_init = CredentialManager.__dict__["__init__"]
    auto_init = AutoAuthCredentialExchanger.__dict__["__init__"]
    adk_token_exchange.install()
    manager = CredentialManager(
        AuthConfig(
            auth_scheme=SCHEME, raw_auth_credential=adk_token_exchange.id_token_credential(RUN_URL)
        )
    )
    auto = AutoAuthCredentialExchanger()
    assert CredentialManager.__dict__["__init__"] is not manager_init

    adk_token_exchange.uninstall()
    adk_token_exchange.uninstall()

    assert not adk_token_exchange.is_installed()
    assert CredentialManager.__dict__["__init__"] is manager_init
    assert AutoAuthCredentialExchanger.__dict__["__init__"] is auto_init
    assert isinstance(manager_exchanger(), ServiceAccountCredentialExchanger)
    # Objects configured while installed are handed back too.
    assert isinstance(
        manager._exchanger_registry.get_exchanger(SA), ServiceAccountCredentialExchanger
    )
    assert "_load_existing_credential" not in manager.__dict__
    assert auto.exchangers[SA] is ServiceAccountCredentialExchanger

    adk_token_exchange.install()
    assert isinstance(manager_exchanger(), adk_token_exchange.ServiceAccountExchanger)


def test_uninstall_leaves_a_later_wrapper_in_place() -> None:
    adk_token_exchange.install()
    ours = CredentialManager.__dict__["__init__"]
    calls: list[object] = []

    def theirs(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(self)
        ours(self, *args, **kwargs)

    CredentialManager.__init__ = theirs  # type: ignore[method-assign]
    try:
        adk_token_exchange.uninstall()
        assert CredentialManager.__dict__["__init__"] is theirs
        assert isinstance(manager_exchanger(), ServiceAccountCredentialExchanger)
        assert len(calls) == 1

        adk_token_exchange.install()
        assert isinstance(manager_exchanger(), adk_token_exchange.ServiceAccountExchanger)
    finally:
        adk_token_exchange.uninstall()
        CredentialManager.__init__ = ours  # type: ignore[method-assign]
        adk_token_exchange.install()
        adk_token_exchange.uninstall()


# --------------------------------------------------------------------------
# The credential helpers


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://svc-xyz-uc.a.run.app/mcp", "https://svc-xyz-uc.a.run.app"),
        ("https://svc-xyz-uc.a.run.app/", "https://svc-xyz-uc.a.run.app"),
        ("https://SVC-xyz.A.run.app:443/mcp?x=1#f", "https://svc-xyz.a.run.app"),
        ("http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/mcp", "http://[::1]:8080"),
        ("32555940559.apps.googleusercontent.com", "32555940559.apps.googleusercontent.com"),
        ("my-custom-audience", "my-custom-audience"),
    ],
)
def test_id_token_credential_audience_is_the_service_origin(given: str, expected: str) -> None:
    credential = adk_token_exchange.id_token_credential(given)

    sa = credential.service_account
    assert credential.auth_type == SA and sa is not None
    assert extra_or_field(sa, "audience") == expected
    assert extra_or_field(sa, "use_id_token") is True
    assert sa.use_default_credential is True
    assert adk_token_exchange.is_installed()


def test_id_token_credential_exact_keeps_the_url() -> None:
    credential = adk_token_exchange.id_token_credential(RUN_URL, exact=True)

    assert credential.service_account is not None
    assert extra_or_field(credential.service_account, "audience") == RUN_URL


async def test_credentials_survive_adk_serialization(
    emulator: GoogleEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ADK copies and (de)serializes credentials (sessions, AuthConfig keys):
    # the copy read back still mints for the same audience, as the same target.
    source = emulator.service_account_info()
    monkeypatch.setenv(
        "GOOGLE_APPLICATION_CREDENTIALS", str(emulator.write_json(tmp_path, "sa.json", source))
    )
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    delegate = emulator.service_account_info("d@p.iam.gserviceaccount.com")["client_email"]
    target = emulator.service_account_info("t@p.iam.gserviceaccount.com")["client_email"]
    credential = adk_token_exchange.id_token_credential(RUN_URL, impersonate=[delegate, target])

    again = AuthCredential.model_validate_json(credential.model_dump_json())
    result = await manager_exchanger(again).exchange(again, SCHEME)

    token = result.credential.http.credentials.token if result.credential.http else None
    claims = emulator.verify_id_token(token or "", "https://svc-xyz-uc.a.run.app")
    assert claims["email"] == target
    assert [r.principal for r in emulator.requests if r.kind == "iam"] == [target]


def test_service_account_key_as_dict_json_or_path(emulator: GoogleEmulator, tmp_path: Path) -> None:
    key = emulator.service_account_info()
    path = emulator.write_json(tmp_path, "key.json", key)

    from_dict = adk_token_exchange.id_token_credential(RUN_URL, service_account_key=key)
    from_json = adk_token_exchange.id_token_credential(RUN_URL, service_account_key=json.dumps(key))
    from_path = adk_token_exchange.id_token_credential(RUN_URL, service_account_key=path)

    for credential in (from_dict, from_json):
        sa = credential.service_account
        assert sa is not None and not sa.use_default_credential
        assert isinstance(sa.service_account_credential, ServiceAccountCredential)
        assert sa.service_account_credential.client_email == key["client_email"]
        assert sa.service_account_credential.token_uri == emulator.token_uri
    sa = from_path.service_account
    assert sa is not None and sa.service_account_credential is None
    assert (sa.model_extra or {})["credentials_file"] == str(path)
    assert key["private_key"] not in from_path.model_dump_json()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"type": "authorized_user", "refresh_token": "x"}, "path"),
        ({"type": "service_account", "client_email": "a@b"}, "private_key"),
        ("{not json", "not valid JSON"),
        (42, "must be a dict"),
    ],
)
def test_unusable_key_says_what_to_pass(key: Any, message: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=message):
        adk_token_exchange.id_token_credential(RUN_URL, service_account_key=key)


def test_impersonation_as_email_chain_or_delegates() -> None:
    target, delegate = "t@p.iam.gserviceaccount.com", "d@p.iam.gserviceaccount.com"
    forms = [
        adk_token_exchange.id_token_credential(RUN_URL, impersonate=[delegate, target]),
        adk_token_exchange.id_token_credential(RUN_URL, impersonate=target, delegates=[delegate]),
    ]
    for credential in forms:
        assert credential.service_account is not None
        assert extra_or_field(credential.service_account, "impersonate") == target
        assert extra_or_field(credential.service_account, "delegates") == [delegate]
    with pytest.raises(errors.ConfigurationError, match="not both"):
        adk_token_exchange.id_token_credential(
            RUN_URL, impersonate=[delegate, target], delegates=[delegate]
        )
    with pytest.raises(errors.ConfigurationError, match="impersonate"):
        adk_token_exchange.id_token_credential(RUN_URL, delegates=[delegate])


def test_access_token_credential_carries_scopes() -> None:
    credential = adk_token_exchange.access_token_credential(
        ["https://www.googleapis.com/auth/bigquery"]
    )

    sa = credential.service_account
    assert sa is not None
    assert sa.scopes == ["https://www.googleapis.com/auth/bigquery"]
    assert not extra_or_field(sa, "use_id_token")
    with pytest.raises(errors.ConfigurationError, match="scopes"):
        adk_token_exchange.access_token_credential([])

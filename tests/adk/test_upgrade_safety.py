"""A future ADK that changed a shape the adapter relies on: install() fails loudly, naming
the ADK version and what it expected, and leaves ADK's own exchanger untouched — never a
silent fall-back to ADK's exchanger (which would send access tokens: #4458).

Each test simulates the changed ADK by monkeypatching ADK's classes or modules.
"""

from __future__ import annotations

import sys
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import errors
from adk_token_exchange._adk import shapes
from google.adk.auth import auth_credential
from google.adk.auth.auth_tool import AuthConfig
from google.adk.auth.credential_manager import CredentialManager
from pydantic import BaseModel, ConfigDict
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.adk import SA

pytestmark = pytest.mark.usefixtures("adk_uninstalled")


def installing_fails(match: str) -> errors.ConfigurationError:
    init_before = CredentialManager.__dict__.get("__init__")
    with pytest.raises(errors.ConfigurationError, match=match) as caught:
        adk_token_exchange.install()
    assert not adk_token_exchange.is_installed()
    assert CredentialManager.__dict__.get("__init__") is init_before, "ADK was patched anyway"
    return caught.value


def test_a_credential_manager_without_register_credential_exchanger_fails_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(CredentialManager, "register_credential_exchanger")
    error = installing_fails("register_credential_exchanger")
    message = str(error)
    assert f"google-adk {shapes.adk_version()}" in message
    assert shapes.adk_version() != "unknown"
    assert "Supported: google-adk 1.24.1" in message


def test_a_service_account_model_without_scopes_fails_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ServiceAccountWithoutScopes(BaseModel):
        model_config = ConfigDict(extra="allow")
        service_account_credential: Any = None
        use_default_credential: bool | None = False

    monkeypatch.setattr(auth_credential, "ServiceAccount", ServiceAccountWithoutScopes)
    installing_fails("ServiceAccount model to have the field 'scopes'")


def test_a_service_account_model_that_forbids_extras_fails_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On ADK 1.24/1.25 use_id_token and audience (and on every version our own
    # impersonate / credentials_file) travel as pydantic extras.
    class StrictServiceAccount(auth_credential.ServiceAccount):  # type: ignore[misc]
        model_config = ConfigDict(extra="forbid")

    monkeypatch.setattr(auth_credential, "ServiceAccount", StrictServiceAccount)
    installing_fails("allow extra fields")


def test_a_moved_credential_manager_module_fails_install_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "google.adk.auth.credential_manager", None)
    installing_fails("expected the module google.adk.auth.credential_manager")


def test_a_lost_service_account_credential_type_fails_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Types:
        HTTP = auth_credential.AuthCredentialTypes.HTTP

    monkeypatch.setattr(auth_credential, "AuthCredentialTypes", Types)
    installing_fails("AuthCredentialTypes.SERVICE_ACCOUNT")


def test_a_manager_that_cannot_register_exchangers_fails_loudly_after_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A CredentialManager built after install() that cannot take our exchanger
    # would silently exchange with ADK's own: it fails instead.
    adk_token_exchange.install()
    monkeypatch.delattr(CredentialManager, "register_credential_exchanger")
    credential = adk_token_exchange.id_token_credential("https://svc-xyz-uc.a.run.app")
    config = AuthConfig(auth_scheme=SCHEME, raw_auth_credential=credential)
    with pytest.raises(errors.ConfigurationError, match="register_credential_exchanger"):
        CredentialManager(auth_config=config)


def test_the_adk_as_shipped_passes_the_shape_check() -> None:
    shapes.check()
    adk_token_exchange.install()
    assert adk_token_exchange.is_installed()
    assert SA == auth_credential.AuthCredentialTypes.SERVICE_ACCOUNT

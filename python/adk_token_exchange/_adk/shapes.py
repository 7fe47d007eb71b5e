"""What the adapter expects of ADK, checked before anything is patched.

ADK moved its auth code several times (1.26 ID tokens, 1.29 auth providers,
2.8 A2A auth, 2.9/2.10 mTLS). If a release changes a shape this adapter
relies on, :func:`check` raises :class:`~adk_token_exchange.errors.ConfigurationError`
naming the ADK version and exactly what was expected, so ``install()`` fails
loudly instead of leaving ADK's own exchanger in place (which would send
access tokens to services that want ID tokens: google/adk-python#4458).

Bottom of the adapter's one-way graph: imports nothing of ours but
:mod:`adk_token_exchange.errors`, and ADK's modules only inside functions, so
a moved module is reported here rather than as an ``ImportError`` elsewhere.
"""

from __future__ import annotations

import importlib
from typing import Any, NoReturn

from .. import errors

__all__ = ["adk_version", "check", "incompatible", "service_account_field"]

SUPPORTED = "1.24.1 to 2.x"


def adk_version() -> str:
    """The installed ADK's version, or ``"unknown"``."""
    try:
        from google.adk import version
    except ImportError:
        return "unknown"
    return str(getattr(version, "__version__", "unknown"))


def incompatible(expected: str) -> NoReturn:
    """Raise the error that says which ADK this is and what it lacks."""
    raise errors.ConfigurationError(
        f"adk-token-exchange does not support google-adk {adk_version()}: {expected}."
        f" Supported: google-adk {SUPPORTED} (docs/compatibility.md). ADK's own exchanger"
        " is left in place untouched; pin google-adk to a supported version or upgrade"
        " adk-token-exchange."
    )


def _attribute(module: str, name: str) -> Any:
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        incompatible(f"expected the module {module} ({exc})")
    value = getattr(found, name, None)
    if value is None:
        incompatible(f"expected {module}.{name}")
    return value


def service_account_field(name: str) -> Any:
    """``ServiceAccount.model_fields[name]``, or the error naming it."""
    service_account = _attribute("google.adk.auth.auth_credential", "ServiceAccount")
    fields = getattr(service_account, "model_fields", None) or {}
    if name not in fields:
        incompatible(f"expected ADK's ServiceAccount model to have the field {name!r}")
    return fields[name]


def check() -> None:
    """Everything ``install()`` and the exchanger rely on, or the error naming what is missing."""
    manager = _attribute("google.adk.auth.credential_manager", "CredentialManager")
    if not callable(getattr(manager, "register_credential_exchanger", None)):
        incompatible("expected CredentialManager.register_credential_exchanger")
    base = _attribute(
        "google.adk.auth.exchanger.base_credential_exchanger", "BaseCredentialExchanger"
    )
    if not callable(getattr(base, "exchange", None)):
        incompatible("expected BaseCredentialExchanger.exchange")
    _attribute("google.adk.auth.exchanger.base_credential_exchanger", "ExchangeResult")
    _attribute("google.adk.auth.exchanger.base_credential_exchanger", "CredentialExchangeError")
    types = _attribute("google.adk.auth.auth_credential", "AuthCredentialTypes")
    for member in ("SERVICE_ACCOUNT", "HTTP"):
        if not hasattr(types, member):
            incompatible(f"expected AuthCredentialTypes.{member}")
    for name in ("AuthCredential", "HttpAuth", "HttpCredentials", "ServiceAccountCredential"):
        _attribute("google.adk.auth.auth_credential", name)
    for field in ("scopes", "use_default_credential", "service_account_credential"):
        service_account_field(field)
    service_account = _attribute("google.adk.auth.auth_credential", "ServiceAccount")
    fields = service_account.model_fields
    # ADK >= 1.26 models use_id_token/audience; before, they (and our own
    # impersonate/credentials_file) arrive as pydantic extras.
    if getattr(service_account, "model_config", {}).get("extra") != "allow":
        incompatible("expected ADK's ServiceAccount model to allow extra fields (extra='allow')")
    if ("use_id_token" in fields) != ("audience" in fields):
        incompatible("expected ServiceAccount to model both use_id_token and audience, or neither")
    openapi = "google.adk.tools.openapi_tool.auth.credential_exchangers"
    _attribute(f"{openapi}.service_account_exchanger", "ServiceAccountCredentialExchanger")
    _attribute(f"{openapi}.base_credential_exchanger", "AuthCredentialMissingError")

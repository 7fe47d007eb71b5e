"""``id_token_credential`` / ``access_token_credential``: ADK's own model, built for the user.

They return ADK's ``AuthCredential(SERVICE_ACCOUNT, ServiceAccount(...))``,
which any ADK tool accepts, and call :func:`install` so that ADK exchanges it
through this package. A key file is passed by path (read by the core at first
use), so the key stays out of ADK's models, sessions and events; an inline
key (dict or JSON text) becomes ADK's ``ServiceAccountCredential``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.adk.auth.auth_credential import (
    AuthCredential,
    ServiceAccount,
    ServiceAccountCredential,
)

from .. import _native, errors
from .._request import AUDIENCE_REQUIRED, CLOUD_PLATFORM, origin_of
from .install import install
from .model import ADDITIONAL_HEADERS_SENT, SCOPES_REQUIRED, SERVICE_ACCOUNT

__all__ = ["access_token_credential", "iap_jwt_credential", "id_token_credential"]

HEADERS: Final = ("Authorization", "X-Serverless-Authorization", "Proxy-Authorization")


def id_token_credential(
    audience: str,
    *,
    service_account_key: Any = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
    exact: bool = False,
    header: str = "Authorization",
) -> AuthCredential:
    """See :func:`adk_token_exchange.id_token_credential`."""
    _required(
        audience,
        AUDIENCE_REQUIRED,
    )
    aud = audience if exact else origin_of(audience)
    return _identity_credential(aud, {}, header, service_account_key, impersonate, delegates)


def iap_jwt_credential(
    url: str,
    *,
    service_account_key: Any = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
    exact: bool = False,
    header: str = "Authorization",
) -> AuthCredential:
    """See :func:`adk_token_exchange.iap_jwt_credential`."""
    from ..httpx_auth import iap_jwt_audience

    _required(url, "url is required: the IAP-protected resource (e.g. 'https://app.example.com')")
    aud = iap_jwt_audience(url, exact=exact)
    signed = {"signed_jwt": True}
    return _identity_credential(aud, signed, header, service_account_key, impersonate, delegates)


def _required(value: Any, message: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise errors.ConfigurationError(message)


def _identity_credential(
    audience: str,
    extra: dict[str, Any],
    header: str,
    service_account_key: Any,
    impersonate: str | Sequence[str] | None,
    delegates: Sequence[str],
) -> AuthCredential:
    """ADK's ``ServiceAccount(use_id_token=True, audience=...)`` plus our extras; installs."""
    fields: dict[str, Any] = {
        "use_id_token": True,
        "audience": audience,
        **extra,
        **_header_field(header),
    }
    if SCOPES_REQUIRED:
        fields["scopes"] = []
    sa = _service_account(service_account_key, impersonate, delegates, fields)
    install()
    return AuthCredential(auth_type=SERVICE_ACCOUNT, service_account=sa)


def _header_field(header: str) -> dict[str, str]:
    """The ``header`` extra (absent for ``Authorization``), checked against this ADK."""
    if header not in HEADERS:
        raise errors.ConfigurationError(
            f"header must be one of {', '.join(HEADERS)}, not {header!r}: Authorization"
            " for most services, X-Serverless-Authorization for Cloud Run (it leaves"
            " Authorization to the service), Proxy-Authorization for IAP"
        )
    if header == "Authorization":
        return {}
    if not ADDITIONAL_HEADERS_SENT:
        raise errors.ConfigurationError(
            f"header={header!r} needs an ADK that sends a credential's additional headers"
            " (google-adk 2.x); this one puts only Authorization on MCP requests. Use"
            " StreamableHTTPConnectionParams(url=..., httpx_client_factory="
            f"http_client_factory(IdTokenAuth(url, header={header!r}))) instead."
        )
    return {"header": header}


def access_token_credential(
    scopes: Sequence[str] | str = (CLOUD_PLATFORM,),
    *,
    service_account_key: Any = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
) -> AuthCredential:
    """See :func:`adk_token_exchange.access_token_credential`."""
    scope_list = [scopes] if isinstance(scopes, str) else list(scopes)
    if not scope_list or not all(isinstance(s, str) and s for s in scope_list):
        raise errors.ConfigurationError(
            f"scopes must be a non-empty list of OAuth scopes, e.g. [{CLOUD_PLATFORM!r}]"
        )
    sa = _service_account(service_account_key, impersonate, delegates, {"scopes": scope_list})
    install()
    return AuthCredential(auth_type=SERVICE_ACCOUNT, service_account=sa)


def _service_account(
    service_account_key: Any,
    impersonate: str | Sequence[str] | None,
    delegates: Sequence[str],
    fields: dict[str, Any],
) -> ServiceAccount:
    values: dict[str, Any] = {}
    chain = _native.impersonation_chain(
        None if impersonate is None else _as_chain(impersonate), list(delegates)
    )
    if chain is not None:
        target, chain_delegates = chain
        values["impersonate"] = target
        if chain_delegates:
            values["delegates"] = list(chain_delegates)

    if service_account_key is None:
        values["use_default_credential"] = True
    elif isinstance(service_account_key, Mapping):
        values["service_account_credential"] = _key_model(dict(service_account_key), "the dict")
    elif isinstance(service_account_key, str) and service_account_key.lstrip().startswith("{"):
        try:
            info = json.loads(service_account_key)
        except json.JSONDecodeError as exc:
            raise errors.ConfigurationError(
                f"service_account_key is not valid JSON ({exc.msg} at line {exc.lineno}):"
                " pass the key's JSON text, a dict, or the path of the key file"
            ) from None
        if not isinstance(info, dict):
            raise errors.ConfigurationError("service_account_key JSON must be an object")
        values["service_account_credential"] = _key_model(info, "the JSON text")
    elif isinstance(service_account_key, (str, os.PathLike)):
        # Any ADC file, read by the core at first use; the key itself stays
        # out of ADK's models, sessions and events.
        values["use_default_credential"] = True
        values["credentials_file"] = os.path.abspath(os.fspath(service_account_key))
    else:
        raise errors.ConfigurationError(
            "service_account_key must be a dict, the key's JSON text, or a file path,"
            f" not {type(service_account_key).__name__}"
        )
    values.update(fields)
    return ServiceAccount(**values)


def _as_chain(impersonate: str | Sequence[str]) -> str | list[str]:
    if isinstance(impersonate, str):
        return impersonate
    chain = list(impersonate)
    if not all(isinstance(e, str) for e in chain):
        raise errors.ConfigurationError(
            "impersonate must be a service account email or a sequence"
            " [delegate..., target] of emails"
        )
    return chain


# Defaults for the non-secret fields that ADK 1.24.1's model requires and
# that older key files lack.
_KEY_DEFAULTS: Final = {
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://oauth2.googleapis.com/token",
    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    "universe_domain": "googleapis.com",
    "project_id": "",
    "client_id": "",
    "private_key_id": "",
}


def _key_model(info: dict[str, Any], what: str) -> ServiceAccountCredential:
    kind = info.get("type")
    if kind != "service_account":
        raise errors.ConfigurationError(
            f"service_account_key ({what}) has type {kind!r}; only 'service_account' keys"
            " can be given inline. Pass the path of an authorized_user,"
            " impersonated_service_account or external_account file instead."
        )
    for field in ("private_key", "client_email"):
        if not info.get(field):
            raise errors.ConfigurationError(
                f"service_account_key ({what}) has no {field!r}: use the JSON key file"
                " downloaded for the service account"
            )
    data = {k: v for k, v in info.items() if k != "type"}
    for field, default in _KEY_DEFAULTS.items():
        data.setdefault(field, default)
    data.setdefault(
        "client_x509_cert_url",
        "https://www.googleapis.com/robot/v1/metadata/x509/" + str(info["client_email"]),
    )
    data["type"] = "service_account"
    return ServiceAccountCredential.model_validate(data)

"""Reading ADK's ``ServiceAccount`` model into a core request, and building ADK's result.

The core reads :data:`REQUEST_KEY`'s fields on every exchange (ADK hands over a
deep copy of the credential each time, so only its content repeats), calls
:func:`read_request` when that key is new, and :func:`build_result` once per
token. The memo from key to request lives in the core
(``src/bindings/exchanger.rs``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Any, Final, NoReturn

from google.adk.auth.auth_credential import (
    AuthCredential,
    AuthCredentialTypes,
    HttpAuth,
    HttpCredentials,
    ServiceAccount,
    ServiceAccountCredential,
)
from google.adk.auth.exchanger.base_credential_exchanger import ExchangeResult

from .. import errors
from .._native import Credentials, ModelKey, Token, TokenRequest
from .._request import CLOUD_PLATFORM
from . import shapes
from .errors import config_error, wrap_error

__all__ = [
    "ADDITIONAL_HEADERS_SENT",
    "ID_TOKEN_FIELDS",
    "REQUEST_KEY",
    "SCOPES_REQUIRED",
    "build_result",
    "key_json",
    "read_request",
]

# ADK >= 1.26 models these; 1.24.1 keeps them in model_extra.
ID_TOKEN_FIELDS: Final = "use_id_token" in ServiceAccount.model_fields
SCOPES_REQUIRED: Final = shapes.service_account_field("scopes").is_required()
SERVICE_ACCOUNT: Final = AuthCredentialTypes.SERVICE_ACCOUNT
# ADK 2.x builds request headers in one place (auth/_auth_headers.py), which adds
# a credential's additional_headers, as its MCP tools and A2A agents do; 1.x's
# MCP tools put only Authorization on the request.
ADDITIONAL_HEADERS_SENT: Final = (
    importlib.util.find_spec("google.adk.auth._auth_headers") is not None
)

logger = logging.getLogger("adk_token_exchange")


REQUEST_KEY: Final = ModelKey(
    "service_account",
    ["use_default_credential", "use_id_token", "audience", "scopes"],
    "service_account_credential",
    ["type_", "private_key", "client_email", "private_key_id", "token_uri", "universe_domain"],
)
"""What in ADK's credential decides the request, by field name: the core reads
these (and both models' extras: ``impersonate``, ``delegates``,
``credentials_file``, ``quota_project_id``, and on ADK 1.24.1 ``use_id_token`` /
``audience``) into the key of its request memo on every exchange. Every field
that reaches the key file the core builds (``key_json``) and decides who speaks
or who pays is here; the rest (``auth_uri``, ``client_x509_cert_url``, ...)
does not change the token."""


def read_request(auth_credential: Any) -> TokenRequest | tuple[TokenRequest, str]:
    """The core request ``auth_credential`` asks for (when its key is new), and the
    header the token goes in when that is not ``Authorization``.

    Raises:
      ConfigurationError: Missing or contradictory configuration; both our
        class and ADK's ``CredentialExchangeError`` (never a ``ValueError``).
    """
    sa: ServiceAccount | None = getattr(auth_credential, "service_account", None)
    if sa is None:
        _missing_service_account(auth_credential)
    if ID_TOKEN_FIELDS:
        use_id_token = bool(sa.use_id_token)
        audience = sa.audience
    else:
        use_id_token = bool(_extra(sa, "use_id_token", "useIdToken"))
        audience = _extra(sa, "audience")
    header = _extra(sa, "header")
    try:
        credentials = _credentials_for(sa)
        if use_id_token:
            if not isinstance(audience, str) or not audience.strip():
                config_error(
                    "ServiceAccount.audience is required when use_id_token=True: set it to the"
                    " URL of the receiving service (e.g. 'https://my-service-xyz.a.run.app'),"
                    " or use adk_token_exchange.id_token_credential(<service URL>)."
                )
            if _extra(sa, "signed_jwt", "signedJwt"):
                request = credentials.signed_jwt_request(audience)
            else:
                request = credentials.id_token_request(audience)
        else:
            request = credentials.access_token_request(list(sa.scopes or ()) or [CLOUD_PLATFORM])
        if header and header != "Authorization":
            return request, str(header)
        return request
    except errors.TokenExchangeError as exc:
        # A key or file the core refuses up front (bad PEM, a foreign
        # token_uri): ADK's error family too, like every fetch error.
        raise wrap_error(exc) from exc


def _missing_service_account(auth_credential: Any) -> NoReturn:
    if auth_credential is None:
        config_error(
            "No auth_credential: pass auth_credential=AuthCredential(auth_type="
            "AuthCredentialTypes.SERVICE_ACCOUNT, service_account=ServiceAccount(...)),"
            " e.g. adk_token_exchange.id_token_credential(<service URL>)."
        )
    config_error(
        "AuthCredential.service_account is not set: set service_account="
        "ServiceAccount(use_default_credential=True, ...) or"
        " ServiceAccount(service_account_credential=<key>, ...),"
        " e.g. adk_token_exchange.id_token_credential(<service URL>)."
    )


def _extra(sa: ServiceAccount, name: str, camel: str | None = None) -> Any:
    extra = sa.__pydantic_extra__ or {}
    if name in extra:
        return extra[name]
    return extra.get(camel) if camel else None


_warned: set[str] = set()


def _credentials_for(sa: ServiceAccount) -> Credentials:
    # The core reads the chain (an email, or [delegate..., target]) and checks it.
    impersonate = _extra(sa, "impersonate")
    delegates = _extra(sa, "delegates") or []
    if isinstance(delegates, str):
        delegates = [delegates]
    key_model = sa.service_account_credential
    path = _extra(sa, "credentials_file", "credentialsFile")
    if path:
        return Credentials.from_file(
            os.fspath(path), impersonate=impersonate, delegates=list(delegates)
        )
    if sa.use_default_credential:
        if key_model is not None and "both" not in _warned:
            # ADK's own exchanger lets ADC win too; say so once.
            _warned.add("both")
            logger.warning(
                "ServiceAccount sets both use_default_credential=True and"
                " service_account_credential; using Application Default Credentials"
                " as ADK does. Drop one of them."
            )
        return Credentials.application_default(impersonate=impersonate, delegates=list(delegates))
    if key_model is None:
        config_error(
            "ServiceAccount has neither service_account_credential nor"
            " use_default_credential=True: set service_account_credential to the"
            " service account key, or use_default_credential=True for Application"
            " Default Credentials (Cloud Run, GKE, gcloud auth application-default login)."
        )
    return Credentials.from_service_account_info(
        key_json(key_model),
        origin="ServiceAccount.service_account_credential",
        impersonate=impersonate,
        delegates=list(delegates),
    )


def key_json(key_model: ServiceAccountCredential) -> str:
    """ADK's key model as the JSON key file it came from (field names, not aliases)."""
    info = key_model.model_dump()
    info["type"] = info.pop("type_", None) or "service_account"
    return json.dumps(info)


def build_result(token: Token, header: str | None = None) -> tuple[AuthCredential, ExchangeResult]:
    """ADK's bearer credential for ``token`` and the ``ExchangeResult`` around it.

    The shape ADK's own exchanger produces, with ``x-goog-user-project`` for
    access tokens when the credentials name a quota project. The core calls
    this once per token (and ``header``) and hands out the same objects until
    it expires. With ``header`` (``X-Serverless-Authorization``,
    ``Proxy-Authorization``) the token is an additional header and
    ``Authorization`` is left to the connection's own headers: ADK 2.x adds a
    credential's ``additional_headers`` to the request.
    """
    quota_project = token.quota_project_id if token.kind == "access" else None
    extra = {"x-goog-user-project": quota_project} if quota_project else {}
    if header is not None:
        extra[header] = "Bearer " + token.value
    credential = AuthCredential(
        auth_type=AuthCredentialTypes.HTTP,
        http=HttpAuth(
            scheme="bearer",
            credentials=HttpCredentials(token=None if header is not None else token.value),
            additional_headers=extra or None,
        ),
    )
    return credential, ExchangeResult(credential, True)

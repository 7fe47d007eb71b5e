"""Google ID and access tokens for ADK agents calling Cloud Run, Cloud Functions and IAP.

ADK's own service-account exchanger sends an OAuth2 access token, which a
Cloud Run service with "Require authentication" rejects with 401
(google/adk-python#4458). Cloud Run wants an OIDC ID token whose audience is
the service URL::

    import adk_token_exchange

    McpToolset(
        connection_params=StreamableHTTPConnectionParams(url=MCP_URL),
        auth_scheme=OAuth2(flows=OAuthFlows(clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="https://oauth2.googleapis.com/token", scopes={}))),
        auth_credential=adk_token_exchange.id_token_credential(MCP_URL),
    )

``id_token_credential`` installs the exchanger; with a hand-built
``ServiceAccount(use_id_token=True, audience=...)`` call :func:`install` once.
Importing this package imports neither ADK nor the Rust core; each is loaded
on first use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._request import CLOUD_PLATFORM
from .errors import (
    ConfigurationError,
    CredentialsNotFoundError,
    InvalidTokenError,
    PermanentError,
    TokenExchangeError,
    TransientError,
    UpstreamTimeoutError,
)

if TYPE_CHECKING:
    from google.adk.auth.auth_credential import AuthCredential

    from .exchanger import ServiceAccountExchanger
    from .httpx_auth import AccessTokenAuth, IapJwtAuth, IdTokenAuth, http_client_factory

    __version__: str

__all__ = [
    "AccessTokenAuth",
    "ConfigurationError",
    "CredentialsNotFoundError",
    "IapJwtAuth",
    "IdTokenAuth",
    "InvalidTokenError",
    "PermanentError",
    "ServiceAccountExchanger",
    "TokenExchangeError",
    "TransientError",
    "UpstreamTimeoutError",
    "__version__",
    "access_token_credential",
    "clear_cache",
    "configure",
    "http_client_factory",
    "iap_jwt_credential",
    "id_token_credential",
    "install",
    "is_installed",
    "uninstall",
]


def install() -> None:
    """Make ADK use this package's exchanger for service-account credentials.

    Idempotent and thread-safe. Afterwards every ADK ``CredentialManager``
    created (MCP tools and toolsets, authenticated function tools, remote A2A
    agents) and every OpenAPI tool's ``AutoAuthCredentialExchanger`` exchange
    ``AuthCredentialTypes.SERVICE_ACCOUNT`` credentials through one shared
    :class:`ServiceAccountExchanger` (one token cache per process).
    Registration goes through ADK's public ``register_credential_exchanger``.

    Call it before building tools: an ADK object created earlier keeps ADK's
    exchanger. :func:`id_token_credential` and :func:`access_token_credential`
    call it for you.
    """
    from ._adk.install import install as adk_install

    adk_install()


def uninstall() -> None:
    """Undo :func:`install`: ADK's own exchanger is used again.

    ADK objects configured while installed get ADK's exchanger back too.
    Idempotent. Cached tokens are kept (see :func:`clear_cache`).
    """
    module = sys.modules.get("adk_token_exchange._adk.install")
    if module is not None:
        module.uninstall()


def is_installed() -> bool:
    """Whether :func:`install` is in effect."""
    module = sys.modules.get("adk_token_exchange._adk.install")
    return bool(module is not None and module.is_installed())


def id_token_credential(
    audience: str,
    *,
    service_account_key: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
    exact: bool = False,
    header: str = "Authorization",
) -> AuthCredential:
    """An ADK credential that becomes an OIDC ID token for ``audience``.

    Pass it as ``McpToolset(auth_credential=...)`` (with an ``auth_scheme``),
    ``RemoteA2aAgent(auth_credential=...)`` or to an OpenAPI tool; calls
    :func:`install`. For Cloud Run and Cloud Functions targets (an MCP server,
    a remote A2A agent); a remote agent on Agent Engine takes an access token
    (:func:`access_token_credential`).

    Args:
      audience: The receiving service. A URL such as
        ``https://svc-xyz.a.run.app/mcp`` becomes its origin
        (``https://svc-xyz.a.run.app``), which is what Cloud Run checks the
        token's ``aud`` against. Anything else (an IAP OAuth client id, a
        custom audience) is used verbatim, as is a URL with ``exact=True``.
      service_account_key: A service account key as a dict or its JSON text,
        or the path of any credentials file (service_account,
        authorized_user, impersonated_service_account; read at first use).
        ``None`` uses Application Default Credentials: the metadata server
        on Cloud Run / GKE / GCE, ``GOOGLE_APPLICATION_CREDENTIALS``, or
        gcloud's ``application-default login``.
      impersonate: A service account email to mint the token as (IAM
        Credentials ``generateIdToken``), or a sequence
        ``[delegate, ..., target]`` for a delegation chain. Lets a developer's
        gcloud login mint ID tokens with the real audience.
      delegates: The delegation chain, as an alternative to passing it in
        ``impersonate``.
      exact: Use a URL ``audience`` verbatim instead of its origin.
      header: ``"Authorization"``; ``"X-Serverless-Authorization"`` for a
        Cloud Run service that does its own auth with ``Authorization``
        (set that one in the connection's ``headers``);
        ``"Proxy-Authorization"`` for IAP. Other headers need an ADK that
        puts a credential's ``additional_headers`` on the request (2.x);
        on 1.x use :func:`http_client_factory` with ``IdTokenAuth(header=...)``.

    Returns:
      ``AuthCredential(auth_type=SERVICE_ACCOUNT,
      service_account=ServiceAccount(use_id_token=True, audience=...))``.

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """
    from ._adk.credentials import id_token_credential as build

    return build(
        audience,
        service_account_key=service_account_key,
        impersonate=impersonate,
        delegates=delegates,
        exact=exact,
        header=header,
    )


def iap_jwt_credential(
    url: str,
    *,
    service_account_key: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
    exact: bool = False,
    header: str = "Authorization",
) -> AuthCredential:
    """An ADK credential that becomes a service-account JWT for an IAP-protected ``url``.

    IAP's programmatic access without an OAuth client id (see
    :class:`~adk_token_exchange.httpx_auth.IapJwtAuth` for the token): ``aud``
    is ``{url}/*``; signed locally with a key, else by IAM ``signJwt`` as
    ``impersonate``. Calls :func:`install`. Arguments as in
    :func:`id_token_credential`.

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """
    from ._adk.credentials import iap_jwt_credential as build

    return build(
        url,
        service_account_key=service_account_key,
        impersonate=impersonate,
        delegates=delegates,
        exact=exact,
        header=header,
    )


def access_token_credential(
    scopes: Sequence[str] | str = (CLOUD_PLATFORM,),
    *,
    service_account_key: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    impersonate: str | Sequence[str] | None = None,
    delegates: Sequence[str] = (),
) -> AuthCredential:
    """An ADK credential that becomes an OAuth2 access token for ``scopes``.

    For Google APIs and OpenAPI tools that take access tokens, and for a remote
    agent on Agent Engine (a Google API; a Cloud Run target wants
    :func:`id_token_credential`). Arguments as in
    :func:`id_token_credential`; calls :func:`install`. When the credential
    carries a quota project, requests also send ``x-goog-user-project``.

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """
    from ._adk.credentials import access_token_credential as build

    return build(
        scopes,
        service_account_key=service_account_key,
        impersonate=impersonate,
        delegates=delegates,
    )


def configure(
    *,
    connect_timeout: float | None = None,
    request_timeout: float | None = None,
    metadata_detect_timeout: float | None = None,
    refresh_window: float | None = None,
    max_attempts: int | None = None,
) -> None:
    """Process-wide settings (seconds); ``None`` leaves a setting unchanged.

    Args:
      connect_timeout: TCP/TLS connect timeout per attempt (default ~3 s).
      request_timeout: Whole-request timeout per attempt (default ~30 s).
      metadata_detect_timeout: How long to probe for the metadata server
        (default ~3 s).
      refresh_window: Before expiry, how early a token is refreshed in the
        background while it is still served (default 300 s; at most a quarter
        of a token's lifetime).
      max_attempts: Attempts per request on transient errors.
    """
    from . import _native

    _native.configure(
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        metadata_detect_timeout=metadata_detect_timeout,
        refresh_window=refresh_window,
        max_attempts=max_attempts,
    )


def clear_cache() -> None:
    """Forget every cached token, resolved credential and remembered request."""
    from . import _native

    _native.clear_cache()


def __getattr__(name: str) -> Any:
    # ServiceAccountExchanger subclasses ADK's BaseCredentialExchanger, so it
    # imports ADK; the auth classes import httpx; the version lives in the Rust
    # core: each only when asked for.
    if name == "ServiceAccountExchanger":
        from .exchanger import ServiceAccountExchanger

        return ServiceAccountExchanger
    if name in ("IdTokenAuth", "AccessTokenAuth", "IapJwtAuth", "http_client_factory"):
        from . import httpx_auth

        return getattr(httpx_auth, name)
    if name == "__version__":
        from . import _native

        return _native.__version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

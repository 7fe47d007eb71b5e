"""Google ID tokens through ADK's own extension point: an auth scheme and its provider.

ADK >= 1.29 lets a package add an auth scheme without touching ADK: a
``CustomAuthScheme`` subclass names what is wanted, a ``BaseAuthProvider``
registered with ``CredentialManager.register_auth_provider`` supplies the
credential. This module is that pair for Cloud Run, Cloud Functions and IAP::

    from adk_token_exchange.auth_provider import GoogleIdTokenAuthScheme

    McpToolset(
        connection_params=StreamableHTTPConnectionParams(url=MCP_URL),
        auth_scheme=GoogleIdTokenAuthScheme(audience=MCP_URL),
    )

No ``auth_credential`` and no :func:`adk_token_exchange.install`: nothing of
ADK is replaced. Creating a scheme registers the provider (:func:`register`,
idempotent). It reaches every tool that resolves auth through ADK's
``CredentialManager``: MCP toolsets and tools, authenticated function tools,
remote A2A agents. OpenAPI tools (``OpenAPIToolset`` / ``RestApiTool``) resolve
auth without it; for them, and for ADK < 1.29, use ``install()`` with
:func:`adk_token_exchange.id_token_credential` (see ``docs/auth-provider.md``).

ADK may write an auth scheme to session events (an auth request carries the
whole ``AuthConfig``) and to its credential service, so the scheme holds no
secret: Application Default Credentials, or the *path* of a credentials file.

Importing this module on an ADK without the extension point raises
``ImportError`` saying to use ``install()`` instead.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Final, Literal

from google.adk.auth import auth_schemes as _adk_auth_schemes
from google.adk.auth import credential_manager as _adk_credential_manager

_MISSING_EXTENSION_POINT: Final = (
    "adk_token_exchange.auth_provider needs ADK's auth-provider extension point"
    " (CredentialManager.register_auth_provider with CustomAuthScheme, google-adk >= 1.29);"
    " this google-adk does not have it. Use adk_token_exchange.install() with"
    " McpToolset(auth_scheme=..., auth_credential=adk_token_exchange.id_token_credential("
    "<service URL>)) instead, which works on every supported ADK, or upgrade google-adk."
)


def _has_extension_point() -> bool:
    return hasattr(_adk_auth_schemes, "CustomAuthScheme") and callable(
        getattr(_adk_credential_manager.CredentialManager, "register_auth_provider", None)
    )


if not _has_extension_point():
    raise ImportError(_MISSING_EXTENSION_POINT)

from google.adk.agents.callback_context import CallbackContext  # noqa: E402
from google.adk.auth.auth_credential import AuthCredential  # noqa: E402
from google.adk.auth.auth_schemes import CustomAuthScheme  # noqa: E402
from google.adk.auth.auth_tool import AuthConfig  # noqa: E402
from google.adk.auth.base_auth_provider import BaseAuthProvider  # noqa: E402
from pydantic import Field, field_validator, model_validator  # noqa: E402

from . import errors  # noqa: E402
from ._adk import errors as adk_errors  # noqa: E402
from ._adk.model import build_result  # noqa: E402
from ._native import Credentials, impersonation_chain  # noqa: E402
from ._request import AUDIENCE_REQUIRED, origin_of  # noqa: E402

if TYPE_CHECKING:
    from google.adk.auth.auth_schemes import AuthScheme

__all__ = [
    "GOOGLE_ID_TOKEN_SCHEME_TYPE",
    "GoogleIdTokenAuthProvider",
    "GoogleIdTokenAuthScheme",
    "register",
]

GOOGLE_ID_TOKEN_SCHEME_TYPE: Final = "googleIdToken"
"""The scheme's ``type``: how ADK recognises it again after reading it back from a session."""

# Extras that would put a key into a model ADK stores; refused with a pointer
# to credentials_file.
_SECRET_FIELDS: Final = frozenset(
    {
        "service_account_key",
        "serviceAccountKey",
        "service_account_credential",
        "serviceAccountCredential",
        "private_key",
        "privateKey",
        "refresh_token",
        "refreshToken",
        "client_secret",
        "clientSecret",
    }
)


class GoogleIdTokenAuthScheme(CustomAuthScheme):
    """An OIDC ID token for one receiving service: Cloud Run, Cloud Functions, IAP.

    Pass it as ``auth_scheme=`` to ``McpToolset`` (or any tool that takes an
    ADK auth scheme and resolves it through ``CredentialManager``); no
    ``auth_credential`` is needed. Creating one registers
    :class:`GoogleIdTokenAuthProvider` with ADK (see :func:`register`).

    Attributes:
      audience: The receiving service. A URL such as
        ``https://svc-xyz.a.run.app/mcp`` becomes its origin
        (``https://svc-xyz.a.run.app``), which is what Cloud Run checks the
        token's ``aud`` against; anything else (an IAP OAuth client id, a
        custom audience) is used verbatim, as is a URL with ``exact=True``.
      exact: Use a URL ``audience`` verbatim instead of its origin.
      impersonate: A service account email to mint the token as (IAM
        Credentials ``generateIdToken``), or a list ``[delegate, ..., target]``.
        Lets a developer's gcloud login mint tokens with the real audience.
      delegates: The delegation chain, as an alternative to listing it in
        ``impersonate``.
      credentials_file: Path of a credentials file (service_account,
        authorized_user, impersonated_service_account), read at first use.
        ``None`` uses Application Default Credentials: the metadata server on
        Cloud Run / GKE / GCE, ``GOOGLE_APPLICATION_CREDENTIALS``, or gcloud's
        ``application-default login``. A key itself is refused: ADK stores
        schemes in sessions.
    """

    type_: Literal["googleIdToken"] = Field(default=GOOGLE_ID_TOKEN_SCHEME_TYPE, alias="type")
    audience: str
    exact: bool = False
    impersonate: str | None = None
    delegates: list[str] = Field(default_factory=list)
    credentials_file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_and_one_chain(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        secret = sorted(_SECRET_FIELDS.intersection(data))
        if secret:
            raise ValueError(
                f"GoogleIdTokenAuthScheme does not take {secret[0]!r}: ADK stores auth schemes"
                " in session events, so a key must not be in one. Pass"
                " credentials_file=<path of the key file>, or leave it out to use Application"
                " Default Credentials."
            )
        if "impersonate" not in data and "delegates" not in data:
            return data
        impersonate = data.get("impersonate")
        if isinstance(impersonate, tuple):
            impersonate = list(impersonate)
        try:
            # The core's one reading of the chain, and its messages.
            chain = impersonation_chain(impersonate, list(data.get("delegates") or ()))
        except (errors.ConfigurationError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        target, delegates = chain if chain is not None else (None, [])
        return {**data, "impersonate": target, "delegates": delegates}

    @field_validator("audience")
    @classmethod
    def _audience_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(AUDIENCE_REQUIRED)
        return value

    @field_validator("credentials_file", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                raise ValueError(
                    "credentials_file is a path, not the key's JSON: ADK stores auth schemes in"
                    " session events, so write the key to a file and pass its path"
                )
            return os.path.abspath(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        _ensure_registered()

    @property
    def token_audience(self) -> str:
        """The ``aud`` the token is minted for: the origin of a URL unless ``exact``."""
        return self.audience if self.exact else origin_of(self.audience)


class GoogleIdTokenAuthProvider(BaseAuthProvider):
    """ADK auth provider that answers :class:`GoogleIdTokenAuthScheme` with an ID token.

    Returns ADK's bearer credential, ``AuthCredential(auth_type=HTTP,
    http=HttpAuth(scheme="bearer", credentials=HttpCredentials(token=...)))``,
    from the same process-wide token cache as ``install()``: a fresh token
    comes back without I/O, the same string until it nears expiry (ADK pools
    MCP sessions by header value), and concurrent callers share one request to
    Google. Nothing blocks the event loop.

    Errors are both :class:`adk_token_exchange.errors.TokenExchangeError`
    subclasses and ADK's ``CredentialExchangeError``; never ``ValueError``,
    which ADK's toolset auth would turn into a request for user credentials.
    """

    @property
    def supported_auth_schemes(self) -> tuple[type[AuthScheme], ...]:
        return (GoogleIdTokenAuthScheme,)

    async def get_auth_credential(
        self, auth_config: AuthConfig, context: CallbackContext | None = None
    ) -> AuthCredential:
        """An ID token for ``auth_config.auth_scheme`` as ADK's bearer credential.

        Raises:
          adk_token_exchange.errors.TokenExchangeError: No token could be
            obtained; the subclass and message say why and what to do.
        """
        scheme = auth_config.auth_scheme
        if not isinstance(scheme, GoogleIdTokenAuthScheme):
            raise adk_errors.ConfigurationError(
                "GoogleIdTokenAuthProvider answers GoogleIdTokenAuthScheme only, not"
                f" {type(scheme).__name__}: register another provider for that scheme"
            )
        try:
            credentials = _credentials_for(scheme)
            token = await credentials.id_token_async(scheme.token_audience)
        except errors.TokenExchangeError as exc:
            raise adk_errors.wrap_error(exc) from exc
        built, _ = build_result(token)
        return built


def _credentials_for(scheme: GoogleIdTokenAuthScheme) -> Credentials:
    # Construction does no I/O, and equal identities share one token cache in
    # the core, so there is nothing to memoize here.
    if scheme.credentials_file:
        return Credentials.from_file(
            scheme.credentials_file, impersonate=scheme.impersonate, delegates=scheme.delegates
        )
    return Credentials.application_default(
        impersonate=scheme.impersonate, delegates=scheme.delegates
    )


_lock = threading.Lock()
_provider: GoogleIdTokenAuthProvider | None = None
_registered = False


def _shared_provider() -> GoogleIdTokenAuthProvider:
    global _provider
    with _lock:
        if _provider is None:
            _provider = GoogleIdTokenAuthProvider()
        return _provider


def register() -> GoogleIdTokenAuthProvider:
    """Register the ID-token provider with ADK's ``CredentialManager``; idempotent.

    Goes through ADK's public ``CredentialManager.register_auth_provider``; ADK
    itself is not modified. Creating a :class:`GoogleIdTokenAuthScheme` calls
    this, so calling it is only needed to register early (e.g. before ADK reads
    stored schemes back from a session). If another provider was registered for
    :class:`GoogleIdTokenAuthScheme` first, ADK keeps that one and logs a warning.

    Returns:
      The process-wide :class:`GoogleIdTokenAuthProvider`.

    Raises:
      ImportError: This ADK has no ``register_auth_provider``; use
        :func:`adk_token_exchange.install` instead.
    """
    global _registered
    if not _has_extension_point():
        raise ImportError(_MISSING_EXTENSION_POINT)
    provider = _shared_provider()
    _adk_credential_manager.CredentialManager.register_auth_provider(provider)
    _registered = True
    return provider


def _ensure_registered() -> None:
    # Once per process: a provider someone registered first for our scheme
    # stays, with one warning from ADK instead of one per scheme created.
    if not _registered:
        register()

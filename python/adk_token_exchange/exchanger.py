"""``ServiceAccountExchanger``: the Rust exchanger, made an ADK credential exchanger.

The Rust class (``_native.ServiceAccountExchanger``) implements ADK's two
exchanger interfaces: ``exchange(auth_credential, auth_scheme=None)``
(``BaseCredentialExchanger``, used by every ``CredentialManager``) and the
older synchronous ``exchange_credential(auth_scheme, auth_credential)`` (used
by the OpenAPI tools' ``AutoAuthCredentialExchanger``). What depends on ADK's
version (reading its model, building its result, its error types) is in the
ADK adapter (``_adk.model``, ``_adk.errors``) and handed to the core here.

``exchange`` is a real ``async def``: ADK declares it so, and
``inspect.iscoroutinefunction`` says so. A warm call is answered by the core
from memory without awaiting anything; a miss awaits one shared fetch on the
core's runtime, off the event loop.

It deliberately does not subclass ADK's ``ServiceAccountCredentialExchanger``:
ADK calls that class synchronously, on the event loop.
"""

from __future__ import annotations

from typing import Any, cast

from google.adk.auth.exchanger.base_credential_exchanger import (
    BaseCredentialExchanger,
    ExchangeResult,
)

from . import _native
from ._adk import model
from ._adk.errors import wrap_error

__all__ = ["ServiceAccountExchanger"]

# Unbound: the warm path is measured in hundreds of nanoseconds.
_exchange_coroutine = _native.ServiceAccountExchanger.exchange
_ready_exchange = _native.ServiceAccountExchanger.ready_exchange


class ServiceAccountExchanger(_native.ServiceAccountExchanger, BaseCredentialExchanger):
    """Google ID and access tokens for ADK ``SERVICE_ACCOUNT`` credentials.

    Reads ADK's ``ServiceAccount`` model: ``use_id_token=True`` with ``audience``
    for an OIDC ID token (Cloud Run, Cloud Functions, IAP), else an access token
    for ``scopes``; ``service_account_credential`` for an explicit key or
    ``use_default_credential=True`` for Application Default Credentials.
    Tokens come from a process-wide cache: a fresh token is returned without
    I/O or awaiting, and concurrent callers share one request to Google.

    ``adk_token_exchange.install()`` registers one shared instance with every
    ADK ``CredentialManager``; to register it by hand instead::

        manager.register_credential_exchanger(
            AuthCredentialTypes.SERVICE_ACCOUNT, ServiceAccountExchanger()
        )

    Errors are both ``adk_token_exchange.errors.TokenExchangeError`` subclasses
    and ADK's ``CredentialExchangeError`` / ``AuthCredentialMissingError``.
    """

    def __new__(cls) -> ServiceAccountExchanger:
        return cast(
            ServiceAccountExchanger,
            super().__new__(
                cls, model.REQUEST_KEY, model.read_request, model.build_result, wrap_error
            ),
        )

    def __init__(self) -> None:
        # The state lives in the core; this also keeps ADK's @experimental
        # wrapper of BaseCredentialExchanger.__init__ (a warning) out of the way.
        pass

    async def exchange(self, auth_credential: Any, auth_scheme: Any = None) -> ExchangeResult:
        """ADK's ``BaseCredentialExchanger.exchange``: the bearer credential for the token.

        Raises:
          adk_token_exchange.errors.TokenExchangeError: No token could be
            obtained (also ADK's ``CredentialExchangeError``); the subclass
            and message say why and what to do.
        """
        result = _ready_exchange(self, auth_credential)
        if result is None:
            result = await _exchange_coroutine(self, auth_credential, auth_scheme)
        return cast(ExchangeResult, result)

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}()"

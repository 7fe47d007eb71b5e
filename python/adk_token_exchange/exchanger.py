"""``ServiceAccountExchanger``: the Rust exchanger, made an ADK credential exchanger.

The Rust class (``_native.ServiceAccountExchanger``) implements ADK's two
exchanger interfaces: ``async exchange(auth_credential, auth_scheme=None)``
(``BaseCredentialExchanger``, used by every ``CredentialManager``) and the older
synchronous ``exchange_credential(auth_scheme, auth_credential)`` (used by the
OpenAPI tools' ``AutoAuthCredentialExchanger``). What depends on ADK's version
— reading its model, building its result, its error types — is in ``_adk.py``
and handed to the core here. A warm call is answered by the core from memory
(the result built once per token, no await, no asyncio future); a miss is
fetched on the core's runtime, single-flight, off the event loop.

It deliberately does not subclass ADK's ``ServiceAccountCredentialExchanger``:
ADK calls that class synchronously, on the event loop.
"""

from __future__ import annotations

from typing import cast

from google.adk.auth.exchanger.base_credential_exchanger import BaseCredentialExchanger

from . import _adk, _native

__all__ = ["ServiceAccountExchanger"]


# mypy sees the native exchange() returning an Awaitable where ADK declares a
# coroutine; ADK only awaits it, which is all an Awaitable promises.
class ServiceAccountExchanger(_native.ServiceAccountExchanger, BaseCredentialExchanger):  # type: ignore[misc]
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
            super().__new__(cls, _adk.read_request, _adk.build_result, _adk.wrap_error),
        )

    def __init__(self) -> None:
        # The state lives in the core; this also keeps ADK's @experimental
        # wrapper of BaseCredentialExchanger.__init__ (a warning) out of the way.
        pass

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}()"

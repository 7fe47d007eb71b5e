"""Our exceptions, made members of ADK's exception family too.

ADK's toolset auth swallows a ``ValueError`` into a warning and then asks the
user for credentials, so the real cause would vanish. Every error that reaches
ADK from this package is both ours (``adk_token_exchange.errors``) and ADK's
``CredentialExchangeError`` / ``AuthCredentialMissingError``, never a
``ValueError``.
"""

from __future__ import annotations

from typing import Final, NoReturn

from google.adk.auth.exchanger.base_credential_exchanger import CredentialExchangeError
from google.adk.tools.openapi_tool.auth.credential_exchangers.base_credential_exchanger import (
    AuthCredentialMissingError,
)

from .. import errors

__all__ = [
    "ConfigurationError",
    "CredentialsNotFoundError",
    "PermanentError",
    "TokenExchangeError",
    "TransientError",
    "UpstreamTimeoutError",
    "config_error",
    "wrap_error",
]


def _adk_error_class(base: type[errors.TokenExchangeError]) -> type[errors.TokenExchangeError]:
    # Both ADK bases, so neither calling path sees a ValueError and `except`
    # works for ADK's own types as well as ours.
    return type(
        base.__name__,
        (base, CredentialExchangeError, AuthCredentialMissingError),
        {
            "__module__": __name__,
            "__doc__": f"{base.__doc__}\n\nAlso ADK's CredentialExchangeError and"
            " AuthCredentialMissingError.",
        },
    )


# Module-level names so that the classes pickle (multiprocessing, ADK's
# session services) as `adk_token_exchange._adk.errors.<Name>`.
ConfigurationError = _adk_error_class(errors.ConfigurationError)
CredentialsNotFoundError = _adk_error_class(errors.CredentialsNotFoundError)
PermanentError = _adk_error_class(errors.PermanentError)
TokenExchangeError = _adk_error_class(errors.TokenExchangeError)
TransientError = _adk_error_class(errors.TransientError)
UpstreamTimeoutError = _adk_error_class(errors.UpstreamTimeoutError)

_ADK_ERRORS: Final[dict[type[BaseException], type[errors.TokenExchangeError]]] = {
    errors.ConfigurationError: ConfigurationError,
    errors.CredentialsNotFoundError: CredentialsNotFoundError,
    errors.PermanentError: PermanentError,
    errors.TokenExchangeError: TokenExchangeError,
    errors.TransientError: TransientError,
    errors.UpstreamTimeoutError: UpstreamTimeoutError,
}


def wrap_error(exc: BaseException) -> BaseException:
    """Our error as an exception that is also ADK's (the core calls this).

    The message and any attributes are kept; callers set ``__cause__`` to
    ``exc``. Anything that is not one of ours is returned unchanged.
    """
    if isinstance(exc, CredentialExchangeError) or not isinstance(exc, errors.TokenExchangeError):
        return exc
    adk_class = next(
        (_ADK_ERRORS[c] for c in type(exc).__mro__ if c in _ADK_ERRORS), TokenExchangeError
    )
    wrapped = adk_class(str(exc))
    wrapped.__dict__.update(getattr(exc, "__dict__", {}))
    return wrapped


def config_error(message: str) -> NoReturn:
    """Raise a configuration error that ADK sees as its own."""
    raise ConfigurationError(message)

"""Exceptions raised by adk-token-exchange.

The Rust core raises exactly these classes (one mapping, in ``src/python.rs``),
so callers ``except`` them like any Python error. No message ever contains a
private key, refresh token, client secret or token.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "CredentialsNotFoundError",
    "InvalidTokenError",
    "PermanentError",
    "TokenExchangeError",
    "TransientError",
    "UpstreamTimeoutError",
]


class TokenExchangeError(Exception):
    """Base class: a token could not be obtained."""


class ConfigurationError(TokenExchangeError):
    """The local configuration is wrong: a key file, a field, a variable.

    The message names the file, field or environment variable and the fix.
    Retrying without changing the configuration will fail the same way.
    """


class CredentialsNotFoundError(ConfigurationError):
    """Application Default Credentials found nothing; the message lists what was tried."""


class TransientError(TokenExchangeError):
    """Google could not be reached or answered 5xx/429; a later retry may succeed."""


class UpstreamTimeoutError(TransientError):
    """A request to Google (or the metadata server) did not finish in time."""


class PermanentError(TokenExchangeError):
    """Google refused the request (4xx) or answered something unusable.

    On a 4xx the message carries Google's ``error`` and ``error_description``.
    """


class InvalidTokenError(Exception):
    """A token presented to a verifier (:mod:`adk_token_exchange.server`) was refused.

    The caller's fault, not Google's: answer 401 (403 for ``not_allowed``).
    ``reason`` is a short code: ``malformed``, ``algorithm``, ``unknown_key``,
    ``bad_signature``, ``wrong_issuer``, ``wrong_audience``, ``expired``,
    ``not_yet_valid``, ``not_allowed`` or ``signature_removed``. The message
    says why in a sentence; neither ever quotes the token.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidTokenError], tuple[str, str]]:
        return (type(self), (str(self), self.reason))

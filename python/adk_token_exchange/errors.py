"""Exceptions raised by adk-token-exchange.

The Rust core raises exactly these classes (one mapping, in ``src/python.rs``),
so callers ``except`` them like any Python error. No message ever contains a
private key, refresh token, client secret or token.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "CredentialsNotFoundError",
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

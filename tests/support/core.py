"""The native core under test: known settings, credentials."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from adk_token_exchange import _native

__all__ = ["DEFAULTS", "clean_core", "sa_credentials"]

DEFAULTS: dict[str, Any] = {
    "connect_timeout": 3.0,
    "request_timeout": 30.0,
    "metadata_detect_timeout": 3.0,
    "refresh_window": 300.0,
    "max_attempts": 3,
}
"""What ``_native.configure`` starts with (``src/config.rs``; docs/architecture.md,
"Bounded waits")."""


@contextlib.contextmanager
def clean_core(**settings: Any) -> Iterator[None]:
    """The given network bounds, defaults restored afterwards; ADC discovered afresh.

    Tokens are kept: credentials are told apart by their key material, not by a
    cache cleared between tests.
    """
    _native.reset_application_default()
    _native.configure(**{**DEFAULTS, **settings})
    try:
        yield
    finally:
        _native.configure(**DEFAULTS)
        _native.reset_application_default()


def sa_credentials(info: dict[str, Any], **overrides: Any) -> _native.Credentials:
    """Native credentials for a service account key, with fields overridden."""
    return _native.Credentials.from_service_account_info(json.dumps({**info, **overrides}))

"""The native core under test: known settings, a clean cache, credentials, awaiting."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from adk_token_exchange import _native

__all__ = ["DEFAULTS", "awaited", "clean_core", "sa_credentials"]

T = TypeVar("T")

DEFAULTS: dict[str, Any] = {
    "connect_timeout": 3.0,
    "request_timeout": 30.0,
    "metadata_detect_timeout": 3.0,
    "refresh_window": 300.0,
    "max_attempts": 3,
}
"""What ``_native.configure`` starts with (DESIGN.md "Every network wait is bounded")."""


@contextlib.contextmanager
def clean_core(**settings: Any) -> Iterator[None]:
    """A clean token cache and the given network bounds; defaults restored afterwards."""
    _native.clear_cache()
    _native.configure(**{**DEFAULTS, **settings})
    try:
        yield
    finally:
        _native.configure(**DEFAULTS)
        _native.clear_cache()


def sa_credentials(info: dict[str, Any], **overrides: Any) -> _native.Credentials:
    """Native credentials for a service account key, with fields overridden."""
    return _native.Credentials.from_service_account_info(json.dumps({**info, **overrides}))


async def awaited(method: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Call an async method of the core inside the running loop (it needs one), await it.

    ``asyncio.run(awaited(creds.id_token_async, aud))`` is how a thread without
    a loop calls the async API.
    """
    return await method(*args)

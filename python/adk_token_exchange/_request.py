"""What a caller asks for: the audience rule and the default scope.

Shared by the helpers, the httpx auth, the auth provider and the CLI; imports
neither ADK nor the core (the core's own copy of the scope is
``src/request.rs``: they are the same string, tested).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

__all__ = ["CLOUD_PLATFORM", "origin_of"]

CLOUD_PLATFORM: Final = "https://www.googleapis.com/auth/cloud-platform"

# What every ID-token entry point says when the audience is missing.
AUDIENCE_REQUIRED: Final = (
    "audience is required: the URL of the receiving service"
    " (e.g. 'https://my-service-xyz.a.run.app')"
)
"""Google's default scope: every Google API."""


def origin_of(audience: str) -> str:
    """``https://svc-xyz.a.run.app/mcp`` -> ``https://svc-xyz.a.run.app``.

    Cloud Run compares ``aud`` with the service URL; a non-URL is returned as is.
    """
    try:
        parts = urlsplit(audience.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return audience
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return audience
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"

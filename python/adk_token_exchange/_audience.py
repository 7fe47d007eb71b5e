"""The audience rule shared by the helpers, the auth provider and the CLI (no ADK import)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["origin_of"]


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

"""``doctor --probe``: one GET with the token, never following a redirect."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

from .explain import ProbeResult

__all__ = ["PROBE_TIMEOUT_SECONDS", "probe"]

PROBE_TIMEOUT_SECONDS = 15.0
_BODY_SNIPPET_CHARS = 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it would carry the bearer token to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _snippet(raw: bytes, token: str) -> str | None:
    text = raw.decode("utf-8", "replace")
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split()).replace(token, "***")
    if not text:
        return None
    if len(text) > _BODY_SNIPPET_CHARS:
        text = text[:_BODY_SNIPPET_CHARS] + "…"
    return text


def probe(url: str, token: str, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    """GET ``url`` with ``Authorization: Bearer <token>``; no redirects followed."""
    request = urllib.request.Request(
        url,
        method="GET",
        headers={
            "Authorization": f"Bearer {token}",
            # Not text/event-stream (nor */*): an MCP endpoint would open an
            # endless SSE stream; without it, it answers at once (406).
            "Accept": "application/json, text/plain, text/html",
            "User-Agent": "adk-token-exchange-doctor",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request, timeout=timeout) as response:
            # A 2xx body may be a stream that never ends: only the status matters.
            status, reason = int(response.status), str(response.reason)
            headers, raw = response.headers, b""
    except urllib.error.HTTPError as error:
        status, reason, headers = int(error.code), str(error.reason), error.headers
        try:
            raw = error.read(4096)
        except OSError:
            raw = b""
    except (urllib.error.URLError, OSError) as error:
        cause = getattr(error, "reason", error)
        return ProbeResult(
            url=url,
            status=None,
            reason=str(cause),
            verdict="unreachable",
            ok=False,
            explanation=[
                f"Could not reach {url}: {cause}. Nothing was said about the token;"
                " check the URL, DNS and network (or VPC ingress settings)."
            ],
        )
    result = ProbeResult(
        url=url,
        status=status,
        reason=reason,
        verdict="",
        ok=False,
        www_authenticate=headers.get("WWW-Authenticate") if headers else None,
        iap=bool(headers and headers.get("X-Goog-IAP-Generated-Response")),
        body=_snippet(raw, token),
    )
    return result

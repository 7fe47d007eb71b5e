"""Google's wire formats shared by the emulated services: error bodies, forms, times, ids."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from .server import JSON, Response

__all__ = [
    "METADATA_TEXT",
    "Reject",
    "b64url",
    "google_api_error",
    "json_response",
    "not_found",
    "numeric_id",
    "oauth_error",
    "parse_form",
    "rfc3339",
    "to_bytes",
]

METADATA_TEXT = "application/text"
"""The metadata server labels plain values ``application/text``, not ``text/plain``."""


class Reject(Exception):
    """Raised inside a service to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """``payload`` as a JSON response."""
    return Response(status, json.dumps(payload).encode(), JSON, headers or {})


def oauth_error(status: int, error: str, description: str) -> Reject:
    """RFC 6749 §5.2 error body, as Google's token endpoint sends it."""
    return Reject(json_response(status, {"error": error, "error_description": description}))


def google_api_error(status: int, message: str, state: str) -> Reject:
    """Google API (AIP-193) error body, as IAM Credentials sends it."""
    return Reject(
        json_response(status, {"error": {"code": status, "message": message, "status": state}})
    )


def not_found() -> Response:
    """Google's HTML-typed 404."""
    return Response(404, b"Not Found\n", "text/html; charset=UTF-8")


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """A token endpoint's parameters: a form, or (as Google also accepts) JSON."""
    if "application/json" in content_type:
        try:
            raw = json.loads(body or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def numeric_id(seed: str) -> str:
    """A stable 21-digit id, the shape of Google's service account unique ids."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "1" + str(int.from_bytes(digest[:12], "big")).zfill(20)[-20:]


def rfc3339(unix: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: IAM answers without fractional seconds, as google-auth parses."""
    return datetime.fromtimestamp(int(unix), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def to_bytes(body: str | bytes | Mapping[str, Any]) -> bytes:
    """A canned body as bytes: bytes verbatim, text encoded, a mapping as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()

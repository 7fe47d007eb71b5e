"""AWS's side of the AWS subject token: check a serialized, SigV4-signed
``GetCallerIdentity`` request the way AWS STS would before answering it, and
say who signed it.

Google's STS replays the request to AWS; here the emulated STS verifies it
itself, from the AWS documentation alone
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html):
canonical request → string to sign → HMAC chain from ``AWS4`` + secret key →
constant-time comparison. It also checks what Google checks: the URL is AWS
STS's ``GetCallerIdentity``, ``x-goog-cloud-target-resource`` is the audience,
and the request is fresh (15 minutes, as AWS allows).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .federation import AwsKey

__all__ = ["SignatureRejected", "caller_arn", "sign"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_SKEW = 15 * 60


class SignatureRejected(ValueError):
    """The signed request is not acceptable; the message says why, as AWS or Google would."""


def caller_arn(
    subject_token: str,
    *,
    audience: str,
    keys: Callable[[str], AwsKey | None],
    now: float | None = None,
) -> str:
    """The ARN that signed ``subject_token`` (Google's serialization of the request).

    Raises:
        SignatureRejected: with the reason.
    """
    try:
        request = json.loads(unquote(subject_token))
    except ValueError as exc:
        raise SignatureRejected("The AWS subject token is not a serialized request.") from exc
    if not isinstance(request, dict) or not isinstance(request.get("headers"), list):
        raise SignatureRejected("The AWS subject token is not a serialized request.")
    method = str(request.get("method", ""))
    url = urlsplit(str(request.get("url", "")))
    headers: dict[str, str] = {}
    for entry in request["headers"]:
        if not isinstance(entry, dict):
            raise SignatureRejected("Malformed header in the AWS subject token.")
        headers[str(entry.get("key", "")).lower()] = str(entry.get("value", ""))
    query = dict(parse_qsl(url.query))
    host = url.hostname or ""
    labels = host.split(".")
    # sts.REGION.amazonaws.com, or the global sts.amazonaws.com (us-east-1).
    region = labels[1] if len(labels) == 4 else "us-east-1"
    if (
        method != "POST"
        or url.scheme != "https"
        or not host.startswith("sts.")
        or not host.endswith(".amazonaws.com")
        or query.get("Action") != "GetCallerIdentity"
    ):
        raise SignatureRejected("The AWS request is not an STS GetCallerIdentity request.")
    if headers.get("x-goog-cloud-target-resource") != audience:
        raise SignatureRejected(
            "The x-goog-cloud-target-resource header does not match the audience."
        )
    credential, signed_headers, signature = _authorization(headers.get("authorization", ""))
    access_key_id, date, scope_region, service, terminal = (credential.split("/") + [""] * 5)[:5]
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise SignatureRejected("Missing or malformed x-amz-date.") from exc
    if abs((now if now is not None else time.time()) - signed_at.timestamp()) > _MAX_SKEW:
        raise SignatureRejected("Signature expired: the request is more than 15 minutes old.")
    if (
        date != amz_date[:8]
        or service != "sts"
        or terminal != "aws4_request"
        or scope_region != region
    ):
        raise SignatureRejected("The credential scope does not match the request.")
    if "host" not in signed_headers or headers.get("host") != host:
        raise SignatureRejected("The host header is not signed or does not match the URL.")
    key = keys(access_key_id)
    if key is None:
        raise SignatureRejected("The security token included in the request is invalid.")
    if key.session_token is not None and (
        "x-amz-security-token" not in signed_headers
        or not hmac.compare_digest(headers.get("x-amz-security-token", ""), key.session_token)
    ):
        raise SignatureRejected("The security token included in the request is invalid.")
    missing = [h for h in signed_headers if h not in headers]
    if missing:
        raise SignatureRejected(f"Signed header {missing[0]} is not in the request.")
    expected = _signature(
        key.secret_access_key,
        method,
        url.path or "/",
        url.query,
        [(h, headers[h]) for h in signed_headers],
        b"",
        amz_date,
        scope_region,
        service,
    )
    if not hmac.compare_digest(expected, signature):
        raise SignatureRejected(
            "The request signature we calculated does not match the signature you provided."
        )
    return key.arn


def sign(
    key: AwsKey, method: str, url: str, region: str, headers: dict[str, str], when: datetime
) -> str:
    """An ``Authorization`` header for a request (for tests that forge or replay requests)."""
    parts = urlsplit(url)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    signed = sorted((k.lower(), v) for k, v in headers.items())
    service = (parts.hostname or "").split(".")[0]
    signature = _signature(
        key.secret_access_key,
        method,
        parts.path or "/",
        parts.query,
        signed,
        b"",
        amz_date,
        region,
        service,
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    names = ";".join(k for k, _ in signed)
    return (
        f"{_ALGORITHM} Credential={key.access_key_id}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )


def _authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.partition(" ")
    if algorithm != _ALGORITHM:
        raise SignatureRejected("The Authorization header is not AWS4-HMAC-SHA256.")
    fields: dict[str, Any] = {}
    for part in rest.split(","):
        name, _, val = part.strip().partition("=")
        fields[name] = val
    if not all(fields.get(k) for k in ("Credential", "SignedHeaders", "Signature")):
        raise SignatureRejected("The Authorization header is incomplete.")
    return (
        str(fields["Credential"]),
        str(fields["SignedHeaders"]).split(";"),
        str(fields["Signature"]),
    )


def _signature(
    secret: str,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    payload: bytes,
    amz_date: str,
    region: str,
    service: str,
) -> str:
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in parse_qsl(query, keep_blank_values=True)
    )
    canonical = "\n".join(
        [
            method,
            path,
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{name}:{' '.join(value.split())}\n" for name, value in headers),
            ";".join(name for name, _ in headers),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    k = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()

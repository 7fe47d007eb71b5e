"""What the emulator received: one record per request, and the TCP connections it accepted."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

__all__ = ["EndpointKind", "RequestLog", "RequestRecord"]

EndpointKind = Literal["token", "metadata", "iam", "certs", "sts", "oidc", "aws", "other"]
"""What a request was for: the ``kind`` of the service that owns its path. Fault
filters and :meth:`GoogleEmulator.count` use it; a new service adds its kind here."""


@dataclass
class RequestRecord:
    """One HTTP request the emulator received (recorded on arrival)."""

    kind: EndpointKind
    method: str
    path: str
    """Path without the query string."""
    query: dict[str, str]
    connection: int
    """Number of the TCP connection it arrived on (1-based, in accept order)."""
    started: float
    """``time.monotonic()`` at arrival."""
    user_agent: str | None = None
    """Who asked (``adk-token-exchange/…``, or google-auth inside ADK, which resolves
    ADC for its own mTLS probe on every MCP connection)."""
    grant_type: str | None = None
    audience: str | None = None
    """Requested ID token audience (``target_audience``, ``audience``)."""
    scopes: tuple[str, ...] = ()
    principal: str | None = None
    """Whose token was asked for (service account, user, impersonation target)."""
    caller: str | None = None
    """For IAM requests, the principal of the bearer token."""
    assertion_audience: str | None = None
    """For JWT-bearer grants, the assertion's ``aud`` claim."""
    status: int | None = None
    """HTTP status sent; ``None`` while pending or when the request hung."""
    finished: float | None = None
    """``time.monotonic()`` when the response was written."""

    @property
    def duration(self) -> float | None:
        """Seconds from arrival to response, if answered."""
        return None if self.finished is None else self.finished - self.started


class RequestLog:
    """Request records in arrival order and the count of accepted connections; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._connections = 0

    def add(self, record: RequestRecord) -> None:
        """Record a request on arrival (its answer is filled in later)."""
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        """A copy of the records, in arrival order."""
        with self._lock:
            return list(self._records)

    def count(self, kind: EndpointKind | None = None) -> int:
        """Requests received (of ``kind``, if given)."""
        with self._lock:
            return sum(1 for r in self._records if kind is None or r.kind == kind)

    @property
    def connections(self) -> int:
        """TCP connections accepted."""
        with self._lock:
            return self._connections

    def connection_accepted(self) -> int:
        """Count a new connection; returns its 1-based number."""
        with self._lock:
            self._connections += 1
            return self._connections

    def reset(self) -> None:
        """Forget records and the connection count."""
        with self._lock:
            self._records.clear()
            self._connections = 0

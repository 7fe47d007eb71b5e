"""Injected faults: canned errors, arbitrary answers, hangs and latency, per endpoint."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from .records import EndpointKind

__all__ = ["Fault", "FaultPlan"]


@dataclass
class Fault:
    """What to do instead of answering, for the next ``remaining`` matching requests."""

    action: Literal["fail", "respond", "hang"]
    remaining: int
    endpoint: str | None
    """An :data:`EndpointKind`, a path substring, or ``None`` for any request."""
    status: int = 503
    body: bytes | None = None
    """``None``: the endpoint's usual error format (its service's ``failure``)."""
    content_type: str | None = None

    def matches(self, kind: EndpointKind, path: str) -> bool:
        """Whether this fault applies to a request of ``kind`` for ``path``."""
        return self.endpoint is None or self.endpoint == kind or self.endpoint in path


class FaultPlan:
    """Pending faults (first added, first served) and latency per endpoint kind; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency: dict[EndpointKind | None, float] = {}

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind those already pending."""
        with self._lock:
            self._faults.append(fault)

    def take(self, kind: EndpointKind, path: str) -> Fault | None:
        """The first pending fault for this request, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(kind, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def set_latency(self, seconds: float, endpoint: EndpointKind | None = None) -> None:
        """Delay token-issuing responses of ``endpoint`` (of every kind, with ``None``)."""
        with self._lock:
            self._latency[endpoint] = seconds

    def latency(self, kind: EndpointKind | None = None) -> float:
        """The delay for ``kind``: its own, else the one for every kind, else 0."""
        with self._lock:
            return self._latency.get(kind, self._latency.get(None, 0.0))

    def own_latency(self, kind: EndpointKind) -> float:
        """The delay set for ``kind`` by name (not the one for every kind), else 0."""
        with self._lock:
            return self._latency.get(kind, 0.0)

    def clear(self) -> None:
        """Drop pending faults and latency."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()

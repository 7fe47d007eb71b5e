"""What every emulated Google service is built from: the shared state and a base class.

A service owns some paths, says which of them issue tokens (those get the
injected latency), describes a request for its record before any fault
decides the answer, serves it, and knows its own error format for injected
failures. Adding one (IAP's keys, ``signJwt``) is a module with a
:class:`Service` subclass, listed in ``SERVICES`` in ``__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .accounts import Accounts
from .federation import Federation
from .minting import CLOUD_PLATFORM_SCOPE, Mint
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .wire import json_response

__all__ = ["GoogleState", "Service", "api_failure"]


@dataclass
class GoogleState:
    """Everything the services share: where Google is, its project, identities and tokens."""

    project_id: str
    project_number: str
    metadata_email: str
    """Identity of the metadata server."""
    accounts: Accounts
    mint: Mint
    metadata_scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)
    """Scopes the metadata server's identity has (``.../default/scopes``)."""
    federation: Federation = field(default_factory=Federation)
    """Workload Identity Federation: pools, providers, outside identities."""
    url: str = ""
    """Origin of every endpoint, ``http://HOST:PORT``; set when the server binds."""
    certs_max_age: int = 19800
    """``Cache-Control: max-age`` of the key sets (Google's is about 5.5 h)."""
    internal_errors: list[BaseException] = field(default_factory=list)


class Service:
    """One Google service on the emulator's single origin."""

    kind: ClassVar[EndpointKind]
    """What its requests count as (:meth:`GoogleEmulator.count`, fault filters)."""

    def __init__(self, state: GoogleState) -> None:
        self.state = state

    def owns(self, path: str) -> bool:
        """Whether requests for ``path`` are this service's."""
        raise NotImplementedError

    def issues_tokens(self, path: str) -> bool:
        """Whether ``path`` mints a token (only those are delayed by injected latency)."""
        return True

    def describe(self, request: Request, record: RequestRecord) -> None:
        """Fill in what was asked for (audience, scopes, principal) from the raw request.

        Runs before any fault decides the answer, so a failed request is still
        described; may raise ``ValueError``, ``TypeError`` or ``AttributeError``
        on malformed input, which are ignored.
        """

    def serve(self, request: Request, record: RequestRecord) -> Response:
        """Answer ``request``; raise :class:`~.wire.Reject` for an error answer."""
        raise NotImplementedError

    def failure(self, status: int) -> Response:
        """An injected failure in this service's error format (default: AIP-193)."""
        return api_failure(status)

    def finish(self, response: Response) -> None:
        """Last touches on every response of this service (e.g. its headers)."""


def api_failure(status: int) -> Response:
    """An injected failure as a Google API (AIP-193) error body."""
    error = {"code": status, "message": "Emulated failure.", "status": "UNAVAILABLE"}
    return json_response(status, {"error": error})

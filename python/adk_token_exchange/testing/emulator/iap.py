"""IAP's signing keys: ``/iap/verify/public_key-jwk``, the JWK set (ES256, P-256) Google
publishes at ``https://www.gstatic.com/iap/verify/public_key-jwk`` for apps that verify
``x-goog-iap-jwt-assertion`` (https://cloud.google.com/iap/docs/signed-headers-howto).

The assertions themselves are minted by :meth:`GoogleEmulator.issue_iap_assertion`
(:mod:`.minting`): IAP adds the header to requests it lets through, so there is no
endpoint that issues them.
"""

from __future__ import annotations

from typing import ClassVar

from . import keys
from .certs import cache_headers
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import json_response

__all__ = ["IAP_JWKS_PATH", "IapKeys"]

IAP_JWKS_PATH = "/iap/verify/public_key-jwk"


class IapKeys(Service):
    """IAP's key set; counted as ``certs`` (faults with ``endpoint="certs"`` hit it too)."""

    kind: ClassVar[EndpointKind] = "certs"

    def owns(self, path: str) -> bool:
        return path == IAP_JWKS_PATH

    def issues_tokens(self, path: str) -> bool:
        return False

    def serve(self, request: Request, record: RequestRecord) -> Response:
        published = self.state.mint.iap_public_keys().items()
        jwks = [keys.ec_jwk(key, kid) for kid, key in published]
        return json_response(200, {"keys": jwks}, cache_headers(self.state.certs_max_age))

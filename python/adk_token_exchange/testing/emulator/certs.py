"""Google's public signing keys: ``/oauth2/v3/certs`` (JWK set), ``/oauth2/v1/certs``
(PEM map, what ``google.oauth2.id_token.verify_token`` reads) and a service
account's ``/robot/v1/metadata/x509/{email}``."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import unquote

from . import keys
from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import json_response, not_found

__all__ = ["JWKS_PATH", "PEM_CERTS_PATH", "X509_PATH", "Certs", "cache_headers"]

JWKS_PATH = "/oauth2/v3/certs"
PEM_CERTS_PATH = "/oauth2/v1/certs"
X509_PATH = "/robot/v1/metadata/x509/"


def cache_headers(max_age: int) -> dict[str, str]:
    """What Google sends with its key sets (``max-age`` is about 5.5 h there)."""
    return {"Cache-Control": f"public, max-age={max_age}, must-revalidate, no-transform"}


class Certs(Service):
    """The certificate endpoints; they never issue tokens, so latency never applies."""

    kind: ClassVar[EndpointKind] = "certs"

    def owns(self, path: str) -> bool:
        return path in (JWKS_PATH, PEM_CERTS_PATH) or path.startswith(X509_PATH)

    def issues_tokens(self, path: str) -> bool:
        return False

    def serve(self, request: Request, record: RequestRecord) -> Response:
        mint = self.state.mint
        cache = cache_headers(self.state.certs_max_age)
        if request.path == JWKS_PATH:
            jwks = [keys.jwk(key, kid) for kid, key in mint.public_keys().items()]
            return json_response(200, {"keys": jwks}, cache)
        if request.path == PEM_CERTS_PATH:
            pems = {mint.signing_key_id: mint.signing_certificate()}
            return json_response(200, pems, cache)
        email = unquote(request.path.rpartition("/")[2])
        account = self.state.accounts.service_account(email)
        if account is None or account.key is None or account.key_id is None:
            return not_found()
        cert = keys.certificate_pem(account.key, email)
        return json_response(200, {account.key_id: cert}, cache)

"""The GCE / Cloud Run / GKE metadata server, ``/computeMetadata/v1/...``.

https://cloud.google.com/compute/docs/metadata/querying-metadata: requests
need ``Metadata-Flavor: Google`` and are refused when proxied; the default
service account's ``token`` (access token, ``?scopes=``) and ``identity``
(ID token, ``?audience=&format=full``) are minted for
:attr:`GoogleEmulator.metadata_service_account`.
"""

from __future__ import annotations

from typing import ClassVar

from .records import EndpointKind, RequestRecord
from .server import Request, Response
from .service import Service
from .wire import METADATA_TEXT, json_response, not_found, numeric_id

__all__ = ["MetadataServer"]

_ROOT = "/computeMetadata/v1/"
_SERVICE_ACCOUNTS = "instance/service-accounts/"


def _text(value: str) -> Response:
    return Response(200, value.encode(), METADATA_TEXT)


class MetadataServer(Service):
    """The metadata server, on the emulator's origin (``GCE_METADATA_HOST``)."""

    kind: ClassVar[EndpointKind] = "metadata"

    def owns(self, path: str) -> bool:
        return path == "/" or path.startswith("/computeMetadata")

    def issues_tokens(self, path: str) -> bool:
        return path.endswith(("/token", "/identity"))

    def describe(self, request: Request, record: RequestRecord) -> None:
        if "audience" in request.query:
            record.audience = request.query["audience"]
        if request.query.get("scopes"):
            record.scopes = tuple(s for s in request.query["scopes"].split(",") if s)

    def failure(self, status: int) -> Response:
        return Response(status, b"Emulated failure.", METADATA_TEXT)

    def finish(self, response: Response) -> None:
        response.headers.setdefault("Metadata-Flavor", "Google")
        response.headers.setdefault("Server", "Metadata Server for VM")

    def serve(self, request: Request, record: RequestRecord) -> Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return Response(
                403,
                b"Missing required header: Metadata-Flavor: Google",
                "text/plain; charset=utf-8",
            )
        if request.headers.get("X-Forwarded-For") is not None:
            # The metadata server refuses proxied requests (an SSRF guard).
            return Response(403, b"Request forbidden: X-Forwarded-For", "text/plain")
        path = request.path
        if path == "/":
            return Response(200, b"computeMetadata/\n", METADATA_TEXT)
        if path in ("/computeMetadata/", "/computeMetadata"):
            return Response(200, b"v1/\n", METADATA_TEXT)
        if not path.startswith(_ROOT):
            return not_found()
        rel = path[len(_ROOT) :]
        state = self.state
        simple = {
            "project/project-id": state.project_id,
            "project/numeric-project-id": state.project_number,
            "universe/universe-domain": "googleapis.com",
            "instance/zone": f"projects/{state.project_number}/zones/us-central1-1",
            _SERVICE_ACCOUNTS: f"default/\n{state.metadata_email}/\n",
            "": "instance/\noauth/\nproject/\nuniverse/\n",
        }
        if rel in simple:
            return _text(simple[rel])
        if not rel.startswith(_SERVICE_ACCOUNTS):
            return not_found()
        account, _, leaf = rel[len(_SERVICE_ACCOUNTS) :].partition("/")
        if account not in ("default", state.metadata_email):
            return not_found()
        record.principal = state.metadata_email
        return self._service_account(leaf, request.query, record)

    def _service_account(self, leaf: str, query: dict[str, str], record: RequestRecord) -> Response:
        """``instance/service-accounts/default/<leaf>``."""
        state, mint = self.state, self.state.mint
        email = state.metadata_email
        if leaf == "":
            if query.get("recursive", "").lower() == "true":
                return json_response(
                    200,
                    {"aliases": ["default"], "email": email, "scopes": list(state.metadata_scopes)},
                )
            return _text("aliases\nemail\nidentity\nscopes\ntoken\n")
        if leaf == "email":
            return _text(email)
        if leaf == "aliases":
            return _text("default\n")
        if leaf == "scopes":
            return _text("".join(s + "\n" for s in state.metadata_scopes))
        if leaf == "token":
            scopes = tuple(
                s for s in query.get("scopes", "").replace(" ", ",").split(",") if s
            ) or tuple(state.metadata_scopes)
            record.scopes = scopes
            token = mint.issue_access_token(email, scopes, source="metadata")
            return json_response(
                200,
                {"access_token": token, "expires_in": mint.token_lifetime, "token_type": "Bearer"},
            )
        if leaf == "identity":
            audience = query.get("audience", "")
            record.audience = audience or None
            if not audience:
                return Response(400, b"non-empty audience parameter required\n", METADATA_TEXT)
            claims = mint.id_claims(audience, email, numeric_id(email))
            if query.get("format") == "full":
                claims["google"] = {
                    "compute_engine": {
                        "instance_creation_timestamp": 1700000000,
                        "instance_id": numeric_id("instance:" + email),
                        "instance_name": "emulated-instance",
                        "project_id": state.project_id,
                        "project_number": int(state.project_number),
                        "zone": "us-central1-1",
                    }
                }
            return Response(200, mint.sign(claims).encode(), METADATA_TEXT)
        return not_found()

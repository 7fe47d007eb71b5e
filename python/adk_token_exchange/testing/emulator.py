"""A local Google: OAuth token endpoint, metadata server, IAM Credentials and certs.

One loopback HTTP/1.1 server on ``127.0.0.1`` (ephemeral port, background
thread) speaks the wire protocols Google documents, so unmodified clients
(google-auth, gcloud's ADC files, this package's Rust core) work against it by
pointing ``token_uri``, ``GCE_METADATA_HOST`` or an impersonation URL at it:

- ``POST /token``: RFC 7523 JWT-bearer and refresh-token grants
  (https://developers.google.com/identity/protocols/oauth2/service-account#httprest,
  https://developers.google.com/identity/protocols/oauth2/web-server#offline).
- ``/`` and ``/computeMetadata/v1/...``: the metadata server
  (https://cloud.google.com/compute/docs/metadata/querying-metadata).
- ``POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`` and
  ``:generateIdToken``: IAM Credentials
  (https://cloud.google.com/iam/docs/reference/credentials/rest).
- ``GET /oauth2/v3/certs`` (JWK set) and ``/oauth2/v1/certs`` (PEM map).

Every ID token is RS256, signed by the emulator's own "Google" key and carries
``iss = https://accounts.google.com``. Every access token is remembered, so a
protected test server can check it in-process (:meth:`GoogleEmulator.access_token_info`).
Faults (errors, arbitrary bodies, latency, hangs) can be injected per endpoint,
and every request and TCP connection is counted.

Where it differs from Google: a JWT-bearer assertion's ``aud`` may be this
emulator's ``token_uri`` as well as Google's token URLs (google-auth always
sends ``https://oauth2.googleapis.com/token``); a ``sub`` other than ``iss``
(domain-wide delegation) is refused; ``signBlob``/``signJwt``, STS and
workload identity federation are not emulated.

Example::

    with GoogleEmulator() as google:
        info = google.service_account_info()
        creds = service_account.IDTokenCredentials.from_service_account_info(
            info, target_audience="https://my-service.run.app"
        )
        creds.refresh(google.auth.transport.requests.Request())
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from . import _keys
from ._http import JSON, LoopbackHTTPServer, RequestHandler, Response

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "GCLOUD_ADC_CLIENT_ID",
    "GCLOUD_CLIENT_ID",
    "GOOGLE_ISSUER",
    "AccessTokenInfo",
    "EndpointKind",
    "GoogleEmulator",
    "InvalidIdToken",
    "RequestRecord",
]

_log = logging.getLogger(__name__)

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The scope IAM Credentials (and most Google APIs) require."""
GOOGLE_ISSUER = "https://accounts.google.com"
"""``iss`` of every Google-signed ID token."""
GCLOUD_CLIENT_ID = "32555940559.apps.googleusercontent.com"
"""OAuth client of the gcloud CLI: ``aud`` of ``gcloud auth print-identity-token``."""
GCLOUD_ADC_CLIENT_ID = "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com"
"""OAuth client of ``gcloud auth application-default login`` (the ADC file's ``client_id``)."""

EndpointKind = Literal["token", "metadata", "iam", "certs", "other"]
"""What a request was for; fault filters and :meth:`GoogleEmulator.count` use it."""

# Audiences Google's token endpoint accepts in a JWT-bearer assertion. google-auth
# always sends the first one, whatever the key file's token_uri says.
_GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
    "https://accounts.google.com/o/oauth2/token",
)
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_IAM_SCOPE = "https://www.googleapis.com/auth/iam"
_ADC_LOGIN_SCOPES = (
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    CLOUD_PLATFORM_SCOPE,
    "https://www.googleapis.com/auth/sqlservice.login",
)
_MAX_ASSERTION_LIFETIME = 3600
_CLOCK_SKEW = 60  # Google tolerates some skew on the assertion's iat.
# The metadata server labels plain values "application/text", not text/plain.
_METADATA_TEXT = "application/text"


class InvalidIdToken(Exception):
    """An ID token failed :meth:`GoogleEmulator.verify_id_token`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessTokenInfo:
    """What the emulator knows about an access token it issued."""

    principal: str
    """Service account or user email the token acts as."""
    scopes: tuple[str, ...]
    issued_at: float
    """Unix time, seconds."""
    expires_at: float
    """Unix time, seconds."""
    source: str
    """How it was minted: ``jwt_bearer``, ``refresh_token``, ``metadata``,
    ``generate_access_token`` or ``direct``."""

    @property
    def expired(self) -> bool:
        """Whether ``expires_at`` has passed."""
        return time.time() >= self.expires_at

    def has_scope(self, scope: str) -> bool:
        """Whether the token was granted ``scope``."""
        return scope in self.scopes


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


class _EnvTarget(Protocol):
    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def setattr(self, target: Any, name: str, value: Any, raising: bool = True) -> None: ...


@dataclass
class _ServiceAccount:
    email: str
    project_id: str
    unique_id: str
    key: rsa.RSAPrivateKey | None
    key_id: str | None
    client_id: str


@dataclass
class _AuthorizedUser:
    email: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]


@dataclass
class _Fault:
    action: Literal["fail", "respond", "hang"]
    remaining: int
    endpoint: str | None
    status: int = 503
    body: bytes | None = None
    content_type: str | None = None


class _Reject(Exception):
    """Raised inside a protocol handler to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), JSON, headers or {})


def _oauth_error(status: int, error: str, description: str) -> _Reject:
    """RFC 6749 §5.2 error body, as Google's token endpoint sends it."""
    return _Reject(_json_response(status, {"error": error, "error_description": description}))


def _google_api_error(status: int, message: str, state: str) -> _Reject:
    """Google API (AIP-193) error body, as IAM Credentials sends it."""
    return _Reject(
        _json_response(status, {"error": {"code": status, "message": message, "status": state}})
    )


def _numeric_id(seed: str) -> str:
    """A stable 21-digit id, the shape of Google's service account unique ids."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "1" + str(int.from_bytes(digest[:12], "big")).zfill(20)[-20:]


def _rfc3339(unix: float) -> str:
    # IAM answers without fractional seconds; google-auth parses exactly this.
    return datetime.fromtimestamp(int(unix), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class GoogleEmulator:
    """Google's token, metadata, IAM Credentials and certs endpoints on loopback.

    Thread-safe. Use as a context manager, or :meth:`start` / :meth:`stop`.

    Args:
        project_id: Project of the metadata server and of default service accounts.
        project_number: Numeric project id the metadata server reports.
        metadata_service_account: Identity of the metadata server; default is
            the project's Compute Engine default service account.
        token_lifetime: Seconds every issued token lives (Google: 3600).
    """

    def __init__(
        self,
        *,
        project_id: str = "emulated-project",
        project_number: str = "123456789012",
        metadata_service_account: str | None = None,
        token_lifetime: int = 3600,
    ) -> None:
        self.project_id = project_id
        self.project_number = project_number
        self.token_lifetime = token_lifetime
        """Seconds every issued token lives; a few seconds for rollover tests."""
        self.metadata_scopes: tuple[str, ...] = (CLOUD_PLATFORM_SCOPE,)
        """Scopes the metadata server's identity has (``.../default/scopes``)."""
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._signing_key = _keys.pooled_key(0)
        self._signing_kid = secrets.token_hex(20)
        self._signing_cert: str | None = None
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._sa_counter = itertools.count(1)
        self._users: dict[str, _AuthorizedUser] = {}
        self._access_tokens: dict[str, AccessTokenInfo] = {}
        self._impersonation_restricted = False
        self._impersonation_grants: set[tuple[str, str]] = set()
        self._faults: list[_Fault] = []
        self._latency: dict[str | None, float] = {}
        self._records: list[RequestRecord] = []
        self._connections = 0
        self.internal_errors: list[BaseException] = []
        """Unexpected exceptions inside the emulator (answered with 500); tests may assert empty."""
        metadata_email = (
            metadata_service_account or f"{project_number}-compute@developer.gserviceaccount.com"
        )
        self._metadata_email = metadata_email
        self.register_service_account(metadata_email)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> GoogleEmulator:
        """Bind ``127.0.0.1:0`` and serve in a background thread; returns ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = LoopbackHTTPServer(self._handle, self._connection_accepted, self._stopping)
            self._port = server.port
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"GoogleEmulator:{server.port}",
                daemon=True,
            )
            self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung requests are released and their connections closed."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join()

    def __enter__(self) -> GoogleEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        where = f" at {self.url}" if self._port else ""
        return f"<GoogleEmulator {state}{where}>"

    @property
    def port(self) -> int:
        """The bound port (kept after :meth:`stop`; a restart binds a new one)."""
        if not self._port:
            raise RuntimeError("GoogleEmulator was never started")
        return self._port

    @property
    def url(self) -> str:
        """Origin of every endpoint, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        """OAuth 2.0 token endpoint; the ``token_uri`` of the key files it hands out."""
        return f"{self.url}/token"

    @property
    def metadata_host(self) -> str:
        """``host:port`` for ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``."""
        return f"127.0.0.1:{self.port}"

    @property
    def certs_url(self) -> str:
        """PEM certificate map, what ``google.oauth2.id_token.verify_token`` reads."""
        return f"{self.url}/oauth2/v1/certs"

    @property
    def jwks_url(self) -> str:
        """JWK set of the ID token signing key."""
        return f"{self.url}/oauth2/v3/certs"

    def iam_url(self, email: str, method: str = "generateAccessToken") -> str:
        """IAM Credentials URL for ``email`` (``generateAccessToken`` or ``generateIdToken``)."""
        return f"{self.url}/v1/projects/-/serviceAccounts/{email}:{method}"

    # -- identities ------------------------------------------------------------------

    @property
    def metadata_service_account(self) -> str:
        """Email the metadata server acts as."""
        return self._metadata_email

    @metadata_service_account.setter
    def metadata_service_account(self, email: str) -> None:
        self.register_service_account(email)
        self._metadata_email = email

    def register_service_account(self, email: str, *, project_id: str | None = None) -> None:
        """Make ``email`` an existing service account (keyless: impersonation target only)."""
        with self._lock:
            if email in self._service_accounts:
                return
            unique_id = _numeric_id(email)
            self._service_accounts[email] = _ServiceAccount(
                email=email,
                project_id=project_id or self.project_id,
                unique_id=unique_id,
                key=None,
                key_id=None,
                client_id=unique_id,
            )

    def service_account_info(
        self, email: str | None = None, *, project_id: str | None = None
    ) -> dict[str, str]:
        """A service account key JSON as the Cloud console issues it, ``token_uri`` → here.

        The same email always gets the same key. The default email is a fresh
        ``agent-N@PROJECT.iam.gserviceaccount.com``.
        """
        project = project_id or self.project_id
        with self._lock:
            if email is None:
                email = f"agent-{next(self._sa_counter)}@{project}.iam.gserviceaccount.com"
            self.register_service_account(email, project_id=project)
            account = self._service_accounts[email]
            if account.key is None:
                account.key = _keys.pooled_key(1 + len(self._service_accounts) % 3)
                account.key_id = secrets.token_hex(20)
            assert account.key_id is not None
            return {
                "type": "service_account",
                "project_id": account.project_id,
                "private_key_id": account.key_id,
                "private_key": _keys.private_key_pem(account.key),
                "client_email": email,
                "client_id": account.client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": self.token_uri,
                "auth_provider_x509_cert_url": self.certs_url,
                "client_x509_cert_url": f"{self.url}/robot/v1/metadata/x509/{quote(email)}",
                "universe_domain": "googleapis.com",
            }

    def authorized_user_info(
        self,
        email: str = "developer@example.com",
        *,
        client_id: str = GCLOUD_ADC_CLIENT_ID,
        client_secret: str | None = None,
        quota_project_id: str | None = None,
        scopes: Sequence[str] = _ADC_LOGIN_SCOPES,
    ) -> dict[str, str]:
        """An ``authorized_user`` ADC file as ``gcloud auth application-default login`` writes it.

        ``token_uri`` points here (google-auth ignores it and always uses
        Google's; see ``Credentials.with_token_uri``). The refresh token is
        fresh on every call; ``scopes`` are what the login granted (with
        ``openid``, refreshes also return an ``id_token``).
        """
        refresh_token = "1//emulated-" + secrets.token_urlsafe(32)
        secret = client_secret or "emulated-" + secrets.token_urlsafe(12)
        with self._lock:
            self._users[refresh_token] = _AuthorizedUser(email, client_id, secret, tuple(scopes))
        info = {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": secret,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
            "account": email,
            "universe_domain": "googleapis.com",
        }
        if quota_project_id is not None:
            info["quota_project_id"] = quota_project_id
        return info

    def revoke_refresh_token(self, refresh_token: str) -> None:
        """Forget a refresh token: later grants get ``invalid_grant`` (``gcloud auth revoke``)."""
        with self._lock:
            self._users.pop(refresh_token, None)

    def delete_service_account(self, email: str) -> None:
        """Delete a service account: its key stops working and IAM answers 404 for it."""
        with self._lock:
            self._service_accounts.pop(email, None)

    def impersonated_info(
        self, source_info: Mapping[str, Any], target_email: str, delegates: Sequence[str] = ()
    ) -> dict[str, Any]:
        """An ``impersonated_service_account`` ADC file, as gcloud writes with
        ``--impersonate-service-account``.

        The target and delegates become existing service accounts here.
        """
        for email in (*delegates, target_email):
            self.register_service_account(email)
        return {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": self.iam_url(target_email),
            "delegates": list(delegates),
            "source_credentials": dict(source_info),
        }

    @staticmethod
    def write_json(directory: str | os.PathLike[str], name: str, info: Mapping[str, Any]) -> Path:
        """Write ``info`` as ``directory/name`` (directories created) and return the path."""
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=2))
        return path

    def write_application_default_credentials(
        self, info: Mapping[str, Any], config_dir: str | os.PathLike[str] | None = None
    ) -> Path:
        """Write ``info`` where gcloud keeps ADC: ``application_default_credentials.json``
        under ``config_dir``, else ``$CLOUDSDK_CONFIG``, else ``~/.config/gcloud``."""
        directory = config_dir or os.environ.get("CLOUDSDK_CONFIG")
        if not directory:
            directory = Path.home() / ".config" / "gcloud"
        return self.write_json(directory, "application_default_credentials.json", info)

    def use_metadata_server(self, target: _EnvTarget | MutableMapping[str, str]) -> None:
        """Point ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP`` at this emulator.

        ``target`` is a pytest ``MonkeyPatch`` (undone after the test) or an
        environment mapping such as ``os.environ``. google-auth reads
        ``GCE_METADATA_HOST`` once, at import; with a ``MonkeyPatch`` its
        module-level copy is patched too.
        """
        host = self.metadata_host
        if isinstance(target, MutableMapping):
            target["GCE_METADATA_HOST"] = host
            target["GCE_METADATA_IP"] = host
            return
        target.setenv("GCE_METADATA_HOST", host)
        target.setenv("GCE_METADATA_IP", host)
        import sys

        metadata_module = sys.modules.get("google.auth.compute_engine._metadata")
        if metadata_module is not None:
            target.setattr(metadata_module, "_GCE_METADATA_HOST", host)

    # -- impersonation policy --------------------------------------------------------

    def restrict_impersonation(self) -> None:
        """From now on only pairs passed to :meth:`allow_impersonation` may impersonate."""
        with self._lock:
            self._impersonation_restricted = True

    def allow_impersonation(self, principal: str, target: str) -> None:
        """Grant ``principal`` Service Account Token Creator on ``target``."""
        with self._lock:
            self._impersonation_grants.add((principal, target))

    def _may_impersonate(self, principal: str, target: str) -> bool:
        with self._lock:
            if not self._impersonation_restricted:
                return True
            return (principal, target) in self._impersonation_grants

    # -- tokens ----------------------------------------------------------------------

    def access_token_info(self, token: str) -> AccessTokenInfo | None:
        """The issued access token's principal, scopes and expiry (expired ones too)."""
        with self._lock:
            return self._access_tokens.get(token)

    def issue_access_token(
        self,
        principal: str,
        scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
        *,
        lifetime: float | None = None,
        source: str = "direct",
    ) -> str:
        """Mint an access token without a request (negative ``lifetime``: already expired)."""
        now = time.time()
        token = "ya29.emulated-" + secrets.token_urlsafe(48)
        life = self.token_lifetime if lifetime is None else lifetime
        info = AccessTokenInfo(principal, tuple(scopes), now, now + life, source)
        with self._lock:
            self._access_tokens[token] = info
        return token

    def issue_id_token(
        self,
        audience: str,
        *,
        email: str | None = None,
        lifetime: float | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint a Google-signed ID token without a request.

        Args:
            audience: ``aud`` claim.
            email: ``email`` claim (and ``sub`` derived from it); default the
                metadata service account.
            lifetime: Seconds until ``exp``; negative for an already expired token.
            claims: Extra or overriding claims (e.g. ``{"iss": "evil"}``).
        """
        subject = email or self._metadata_email
        payload = self._id_claims(audience, subject, _numeric_id(subject), lifetime=lifetime)
        payload.update(claims or {})
        return self._sign(payload)

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The ID token signing keys by ``kid`` (what the certs endpoints publish)."""
        return {self._signing_kid: self._signing_key.public_key()}

    def verify_id_token(
        self, token: str, audience: str | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Check an ID token as a Google-fronted service does; return its claims.

        Checks: a JWT, RS256, ``kid`` of this emulator's key, valid signature,
        ``iss`` Google, unexpired, and ``aud`` one of ``audience`` (unless None).

        Raises:
            InvalidIdToken: with a short ``reason``.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("not a JWT (an access token?)") from exc
        if header.get("alg") != "RS256":
            raise InvalidIdToken(f"algorithm {header.get('alg')!r} is not RS256")
        key = self.public_keys().get(str(header.get("kid")))
        if key is None:
            raise InvalidIdToken("unknown signing key id")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidIdToken("invalid signature") from exc
        if claims.get("iss") not in (GOOGLE_ISSUER, "accounts.google.com"):
            raise InvalidIdToken(f"issuer {claims.get('iss')!r} is not Google")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= time.time():
            raise InvalidIdToken("expired")
        if audience is not None:
            allowed = [audience] if isinstance(audience, str) else list(audience)
            if claims.get("aud") not in allowed:
                raise InvalidIdToken(f"audience {claims.get('aud')!r} not accepted")
        return claims

    def _id_claims(
        self,
        audience: str,
        email: str | None,
        subject: str,
        *,
        lifetime: float | None = None,
        authorized_party: str | None = None,
    ) -> dict[str, Any]:
        now = int(time.time())
        life = self.token_lifetime if lifetime is None else lifetime
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": authorized_party or subject,
            "exp": int(now + life),
            "iat": now,
            "iss": GOOGLE_ISSUER,
            "sub": subject,
        }
        if email is not None:
            claims["email"] = email
            claims["email_verified"] = True
        return claims

    def _sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self._signing_key, algorithm="RS256", headers={"kid": self._signing_kid}
        )

    def _signing_certificate(self) -> str:
        with self._lock:
            if self._signing_cert is None:
                self._signing_cert = _keys.certificate_pem(self._signing_key, "accounts.google.com")
            return self._signing_cert

    # -- fault injection -------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        endpoint: str | None = None,
        body: str | bytes | Mapping[str, Any] | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status``.

        ``endpoint`` is an :data:`EndpointKind` (``"token"``, ``"metadata"``,
        ``"iam"``, ``"certs"``) or a path substring; ``None`` matches anything.
        ``body`` defaults to an error in the endpoint's usual format.
        """
        with self._lock:
            self._faults.append(
                _Fault("fail", n, endpoint, status, None if body is None else _to_bytes(body))
            )

    def respond_next(
        self,
        status: int,
        body: str | bytes | Mapping[str, Any],
        content_type: str = JSON,
        endpoint: str | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Serve ``body`` verbatim to the next ``times`` matching requests.

        For malformed answers: non-JSON, huge, a bad JWT, a wrong content type.
        """
        with self._lock:
            self._faults.append(
                _Fault("respond", times, endpoint, status, _to_bytes(body), content_type)
            )

    def hang_next(self, n: int = 1, endpoint: str | None = None) -> None:
        """Accept the next ``n`` matching requests and never answer them until :meth:`stop`."""
        with self._lock:
            self._faults.append(_Fault("hang", n, endpoint))

    @property
    def latency(self) -> float:
        """Seconds added to every token-issuing response (all endpoint kinds)."""
        with self._lock:
            return self._latency.get(None, 0.0)

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.set_latency(seconds)

    def set_latency(self, seconds: float, *, endpoint: EndpointKind | None = None) -> None:
        """Delay token-issuing responses of one endpoint kind (or all, with ``None``)."""
        with self._lock:
            self._latency[endpoint] = seconds

    def clear_faults(self) -> None:
        """Drop pending faults and latency."""
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    # -- counting --------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request records, in arrival order."""
        with self._lock:
            return list(self._records)

    def count(self, kind: EndpointKind | None = None) -> int:
        """Requests received (of ``kind``, if given) since the last :meth:`reset_counts`."""
        with self._lock:
            return sum(1 for r in self._records if kind is None or r.kind == kind)

    @property
    def connections(self) -> int:
        """TCP connections accepted since the last :meth:`reset_counts`."""
        with self._lock:
            return self._connections

    def reset_counts(self) -> None:
        """Forget request records and the connection count."""
        with self._lock:
            self._records.clear()
            self._connections = 0

    def _connection_accepted(self) -> int:
        with self._lock:
            self._connections += 1
            return self._connections

    # -- request handling (runs on handler threads) ----------------------------------

    def _handle(self, handler: RequestHandler, body: bytes) -> Response | None:
        parts = urlsplit(handler.path)
        path = parts.path or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        kind = _endpoint_kind(path)
        record = RequestRecord(
            kind=kind,
            method=handler.command,
            path=path,
            query=query,
            connection=handler.server.connection_number(handler.request),
            started=time.monotonic(),
        )
        _describe(record, handler.headers.get("Content-Type", ""), body)
        with self._lock:
            self._records.append(record)
            fault = self._take_fault(kind, path)
        if fault is not None and fault.action == "hang":
            self._stopping.wait()
            return None
        if _issues_tokens(kind, path):
            delay = self._latency_for(kind)
            if delay > 0 and self._stopping.wait(delay):
                return None
        if fault is not None:
            response = self._fault_response(fault, kind)
        else:
            try:
                response = self._route(kind, handler, path, query, body, record)
            except _Reject as reject:
                response = reject.response
            except Exception as exc:  # an emulator bug: answer 500 and keep it for the test
                _log.exception("GoogleEmulator failed on %s %s", handler.command, path)
                with self._lock:
                    self.internal_errors.append(exc)
                response = _json_response(500, {"error": "internal", "error_description": str(exc)})
        if kind == "metadata":
            response.headers.setdefault("Metadata-Flavor", "Google")
            response.headers.setdefault("Server", "Metadata Server for VM")
        record.status = response.status
        record.finished = time.monotonic()
        return response

    def _take_fault(self, kind: EndpointKind, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and (
                fault.endpoint is None or fault.endpoint == kind or fault.endpoint in path
            ):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _latency_for(self, kind: EndpointKind) -> float:
        with self._lock:
            return self._latency.get(kind, self._latency.get(None, 0.0))

    @staticmethod
    def _fault_response(fault: _Fault, kind: EndpointKind) -> Response:
        if fault.action == "respond":
            assert fault.body is not None
            return Response(fault.status, fault.body, fault.content_type or JSON)
        if fault.body is not None:
            return Response(fault.status, fault.body, JSON)
        if kind == "token":
            payload: Any = {"error": "internal_failure", "error_description": "Emulated failure."}
        elif kind == "metadata":
            return Response(fault.status, b"Emulated failure.", _METADATA_TEXT)
        else:
            payload = {
                "error": {
                    "code": fault.status,
                    "message": "Emulated failure.",
                    "status": "UNAVAILABLE",
                }
            }
        return _json_response(fault.status, payload)

    def _route(
        self,
        kind: EndpointKind,
        handler: RequestHandler,
        path: str,
        query: dict[str, str],
        body: bytes,
        record: RequestRecord,
    ) -> Response:
        if kind == "token":
            if handler.command != "POST":
                return Response(405, b"Method Not Allowed", "text/plain")
            return self._token_endpoint(handler, body, record)
        if kind == "metadata":
            return self._metadata(handler, path, query, record)
        if kind == "iam":
            return self._iam(handler, path, body, record)
        if kind == "certs":
            return self._certs(path)
        return Response(404, b"Not Found", "text/plain")

    # -- POST /token -----------------------------------------------------------------

    def _token_endpoint(
        self, handler: RequestHandler, body: bytes, record: RequestRecord
    ) -> Response:
        form = _form(handler.headers.get("Content-Type", ""), body)
        grant_type = form.get("grant_type", "")
        record.grant_type = grant_type or None
        if grant_type == _JWT_BEARER:
            return self._jwt_bearer_grant(form, record)
        if grant_type == "refresh_token":
            return self._refresh_token_grant(form, record)
        raise _oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _jwt_bearer_grant(self, form: dict[str, str], record: RequestRecord) -> Response:
        """RFC 7523 §2.1 as Google implements it for service account keys."""
        assertion = form.get("assertion")
        if not assertion:
            raise _oauth_error(400, "invalid_request", "Missing required parameter: assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise _oauth_error(400, "invalid_grant", "Invalid JWT: malformed token.") from exc
        issuer = str(unverified.get("iss", ""))
        record.principal = issuer or None
        record.assertion_audience = (
            str(unverified["aud"]) if isinstance(unverified.get("aud"), str) else None
        )
        if "target_audience" in unverified:
            record.audience = str(unverified["target_audience"])
        if "scope" in unverified:
            record.scopes = tuple(str(unverified["scope"]).split())
        with self._lock:
            account = self._service_accounts.get(issuer)
        if account is None or account.key is None:
            raise _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256" or header.get("kid") not in (None, account.key_id):
            raise _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                account.key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise _oauth_error(400, "invalid_grant", "Invalid JWT Signature.") from exc
        if claims.get("aud") not in (self.token_uri, *_GOOGLE_TOKEN_AUDIENCES):
            raise _oauth_error(
                400,
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The right audience is {self.token_uri}",
            )
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, (int, float))
            or not isinstance(exp, (int, float))
            or exp <= now
            or iat > now + _CLOCK_SKEW
            or exp - iat > _MAX_ASSERTION_LIFETIME
        ):
            raise _oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        if claims.get("sub") not in (None, issuer):  # domain-wide delegation: not emulated
            raise _oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested.",
            )
        target_audience = claims.get("target_audience")
        if target_audience:
            id_claims = self._id_claims(str(target_audience), issuer, account.unique_id)
            return _json_response(200, {"id_token": self._sign(id_claims)})
        scopes = str(claims.get("scope", "")).split()
        if not scopes:
            raise _oauth_error(
                400, "invalid_scope", "Invalid oauth scope or ID token audience provided."
            )
        token = self.issue_access_token(issuer, scopes, source="jwt_bearer")
        return _json_response(
            200,
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    def _refresh_token_grant(self, form: dict[str, str], record: RequestRecord) -> Response:
        """OAuth 2.0 refresh (RFC 6749 §6) for ``authorized_user`` credentials."""
        for name in ("client_id", "client_secret", "refresh_token"):
            if not form.get(name):
                raise _oauth_error(400, "invalid_request", f"Missing required parameter: {name}")
        with self._lock:
            user = self._users.get(form["refresh_token"])
        if user is None:
            raise _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        record.principal = user.email
        if form["client_id"] != user.client_id or form["client_secret"] != user.client_secret:
            raise _oauth_error(401, "invalid_client", "Unauthorized")
        scopes = tuple(form["scope"].split()) if form.get("scope") else user.scopes
        record.scopes = scopes
        if not set(scopes) <= set(user.scopes):
            raise _oauth_error(400, "invalid_scope", "Bad Request")
        token = self.issue_access_token(user.email, scopes, source="refresh_token")
        payload: dict[str, Any] = {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        if "openid" in scopes:
            digest = hashlib.sha256(token.encode()).digest()
            claims = self._id_claims(
                user.client_id, user.email, _numeric_id(user.email), authorized_party=user.client_id
            )
            claims["at_hash"] = _b64url(digest[:16])
            payload["id_token"] = self._sign(claims)
        return _json_response(200, payload)

    # -- metadata server -------------------------------------------------------------

    def _metadata(
        self, handler: RequestHandler, path: str, query: dict[str, str], record: RequestRecord
    ) -> Response:
        if handler.headers.get("Metadata-Flavor") != "Google":
            return Response(
                403,
                b"Missing required header: Metadata-Flavor: Google",
                "text/plain; charset=utf-8",
            )
        if handler.headers.get("X-Forwarded-For") is not None:
            # The metadata server refuses proxied requests (an SSRF guard).
            return Response(403, b"Request forbidden: X-Forwarded-For", "text/plain")
        if path == "/":
            return Response(200, b"computeMetadata/\n", _METADATA_TEXT)
        if path in ("/computeMetadata/", "/computeMetadata"):
            return Response(200, b"v1/\n", _METADATA_TEXT)
        root = "/computeMetadata/v1/"
        if not path.startswith(root):
            return _not_found()
        rel = path[len(root) :]
        simple = {
            "project/project-id": self.project_id,
            "project/numeric-project-id": self.project_number,
            "universe/universe-domain": "googleapis.com",
            "instance/zone": f"projects/{self.project_number}/zones/us-central1-1",
            "instance/service-accounts/": f"default/\n{self._metadata_email}/\n",
            "": "instance/\noauth/\nproject/\nuniverse/\n",
        }
        if rel in simple:
            return _text(simple[rel])
        prefix = "instance/service-accounts/"
        if not rel.startswith(prefix):
            return _not_found()
        account, _, leaf = rel[len(prefix) :].partition("/")
        if account not in ("default", self._metadata_email):
            return _not_found()
        email = self._metadata_email
        record.principal = email
        if leaf == "":
            if query.get("recursive", "").lower() == "true":
                return _json_response(
                    200,
                    {"aliases": ["default"], "email": email, "scopes": list(self.metadata_scopes)},
                )
            return _text("aliases\nemail\nidentity\nscopes\ntoken\n")
        if leaf == "email":
            return _text(email)
        if leaf == "aliases":
            return _text("default\n")
        if leaf == "scopes":
            return _text("".join(s + "\n" for s in self.metadata_scopes))
        if leaf == "token":
            scopes = tuple(
                s for s in query.get("scopes", "").replace(" ", ",").split(",") if s
            ) or tuple(self.metadata_scopes)
            record.scopes = scopes
            token = self.issue_access_token(email, scopes, source="metadata")
            return _json_response(
                200,
                {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
            )
        if leaf == "identity":
            audience = query.get("audience", "")
            record.audience = audience or None
            if not audience:
                return Response(400, b"non-empty audience parameter required\n", _METADATA_TEXT)
            account_id = _numeric_id(email)
            claims = self._id_claims(audience, email, account_id)
            if query.get("format") == "full":
                claims["google"] = {
                    "compute_engine": {
                        "instance_creation_timestamp": 1700000000,
                        "instance_id": _numeric_id("instance:" + email),
                        "instance_name": "emulated-instance",
                        "project_id": self.project_id,
                        "project_number": int(self.project_number),
                        "zone": "us-central1-1",
                    }
                }
            return Response(200, self._sign(claims).encode(), _METADATA_TEXT)
        return _not_found()

    # -- IAM Credentials -------------------------------------------------------------

    def _iam(
        self, handler: RequestHandler, path: str, body: bytes, record: RequestRecord
    ) -> Response:
        # /v1/projects/{project}/serviceAccounts/{email}:{method}
        resource = path[len("/v1/projects/") :]
        _project, _, rest = resource.partition("/serviceAccounts/")
        target, _, method = unquote(rest).rpartition(":")
        if handler.command != "POST" or not target or "/" in target:
            raise _google_api_error(404, "Not found.", "NOT_FOUND")
        if method not in ("generateAccessToken", "generateIdToken"):
            raise _google_api_error(404, f"Method {method} is not emulated.", "NOT_FOUND")
        record.principal = target
        permission = (
            "iam.serviceAccounts.getAccessToken"
            if method == "generateAccessToken"
            else "iam.serviceAccounts.getOpenIdToken"
        )
        auth = handler.headers.get("Authorization", "")
        scheme, _, bearer = auth.partition(" ")
        info = self.access_token_info(bearer.strip()) if scheme.lower() == "bearer" else None
        if info is None or info.expired:
            raise _google_api_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "UNAUTHENTICATED",
            )
        record.caller = info.principal
        if not (info.has_scope(CLOUD_PLATFORM_SCOPE) or info.has_scope(_IAM_SCOPE)):
            raise _google_api_error(
                403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED"
            )
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            raise _google_api_error(
                400, "Invalid JSON payload received.", "INVALID_ARGUMENT"
            ) from exc
        if not isinstance(request, dict):
            raise _google_api_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        delegates = [_delegate_email(d) for d in request.get("delegates") or []]
        with self._lock:
            known = set(self._service_accounts)
        for email in (*delegates, target):
            if email not in known:
                raise _google_api_error(
                    404, f"Not found; Gaia id not found for email {email}", "NOT_FOUND"
                )
        chain = [info.principal, *delegates, target]
        for principal, next_hop in itertools.pairwise(chain):
            if not self._may_impersonate(principal, next_hop):
                raise _google_api_error(
                    403,
                    f"Permission '{permission}' denied on resource (or it may not exist).",
                    "PERMISSION_DENIED",
                )
        if method == "generateAccessToken":
            scopes = request.get("scope") or []
            if not isinstance(scopes, list) or not scopes:
                raise _google_api_error(
                    400, "Request contains an invalid argument.", "INVALID_ARGUMENT"
                )
            record.scopes = tuple(str(s) for s in scopes)
            lifetime = float(self.token_lifetime)
            if request.get("lifetime"):
                lifetime = min(lifetime, _duration_seconds(str(request["lifetime"])))
            token = self.issue_access_token(
                target, record.scopes, lifetime=lifetime, source="generate_access_token"
            )
            expires_at = time.time() + lifetime
            return _json_response(200, {"accessToken": token, "expireTime": _rfc3339(expires_at)})
        audience = request.get("audience")
        if not isinstance(audience, str) or not audience:
            raise _google_api_error(
                400, "Invalid value for audience: must be non-empty.", "INVALID_ARGUMENT"
            )
        record.audience = audience
        with self._lock:
            account_id = self._service_accounts[target].unique_id
        include_email = bool(request.get("includeEmail"))
        claims = self._id_claims(audience, target if include_email else None, account_id)
        return _json_response(200, {"token": self._sign(claims)})

    # -- certs -----------------------------------------------------------------------

    def _certs(self, path: str) -> Response:
        cache = {"Cache-Control": "public, max-age=19800, must-revalidate, no-transform"}
        if path == "/oauth2/v3/certs":
            keys = [_keys.jwk(k, kid) for kid, k in self.public_keys().items()]
            return _json_response(200, {"keys": keys}, cache)
        if path == "/oauth2/v1/certs":
            return _json_response(200, {self._signing_kid: self._signing_certificate()}, cache)
        email = unquote(path.rpartition("/")[2])
        with self._lock:
            account = self._service_accounts.get(email)
        if account is None or account.key is None or account.key_id is None:
            return _not_found()
        cert = _keys.certificate_pem(account.key, email)
        return _json_response(200, {account.key_id: cert}, cache)


def _endpoint_kind(path: str) -> EndpointKind:
    if path == "/token":
        return "token"
    if path == "/" or path.startswith("/computeMetadata"):
        return "metadata"
    if path.startswith("/v1/projects/"):
        return "iam"
    if path in ("/oauth2/v3/certs", "/oauth2/v1/certs") or path.startswith(
        "/robot/v1/metadata/x509/"
    ):
        return "certs"
    return "other"


def _describe(record: RequestRecord, content_type: str, body: bytes) -> None:
    """Fill in what was asked for, before any fault decides the answer."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, jwt.PyJWTError):
        if record.kind == "token":
            form = _form(content_type, body)
            record.grant_type = form.get("grant_type") or None
            if form.get("assertion"):
                claims = jwt.decode(form["assertion"], options={"verify_signature": False})
                record.principal = str(claims.get("iss")) or None
                if "target_audience" in claims:
                    record.audience = str(claims["target_audience"])
                if "scope" in claims:
                    record.scopes = tuple(str(claims["scope"]).split())
            elif form.get("scope"):
                record.scopes = tuple(form["scope"].split())
        elif record.kind == "metadata":
            if "audience" in record.query:
                record.audience = record.query["audience"]
            if record.query.get("scopes"):
                record.scopes = tuple(s for s in record.query["scopes"].split(",") if s)
        elif record.kind == "iam" and body:
            request = json.loads(body)
            if isinstance(request.get("audience"), str):
                record.audience = request["audience"]
            if isinstance(request.get("scope"), list):
                record.scopes = tuple(str(s) for s in request["scope"])


def _form(content_type: str, body: bytes) -> dict[str, str]:
    """The token endpoint's parameters: a form, or (as Google also accepts) JSON."""
    if "application/json" in content_type:
        try:
            raw = json.loads(body or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _issues_tokens(kind: EndpointKind, path: str) -> bool:
    if kind in ("token", "iam"):
        return True
    return kind == "metadata" and path.endswith(("/token", "/identity"))


def _delegate_email(delegate: Any) -> str:
    # Delegates may be "projects/-/serviceAccounts/EMAIL" or a bare email.
    return str(delegate).rpartition("/")[2]


def _duration_seconds(value: str) -> float:
    """A protobuf Duration in JSON form: ``"3600s"``, ``"1.5s"``."""
    try:
        seconds = float(value.removesuffix("s"))
    except ValueError as exc:
        raise _google_api_error(
            400, f"Invalid value at 'lifetime' ({value}).", "INVALID_ARGUMENT"
        ) from exc
    if seconds <= 0 or seconds > 43200:
        raise _google_api_error(
            400,
            "The lifetime must be between 1 second and 3600 seconds (or 43200 with the "
            "constraints/iam.allowServiceAccountCredentialLifetimeExtension policy).",
            "INVALID_ARGUMENT",
        )
    return seconds


def _text(value: str) -> Response:
    return Response(200, value.encode(), _METADATA_TEXT)


def _not_found() -> Response:
    return Response(404, b"Not Found\n", "text/html; charset=UTF-8")


def _to_bytes(body: str | bytes | Mapping[str, Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()

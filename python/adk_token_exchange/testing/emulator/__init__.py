"""A local Google: OAuth token endpoint, metadata server, IAM Credentials, certs and STS.

One loopback HTTP/1.1 server (``127.0.0.1`` or ``::1``, ephemeral port,
background thread) speaks the wire protocols Google documents, so unmodified
clients (google-auth, gcloud's ADC files, this package's Rust core) work
against it by pointing ``token_uri``, ``GCE_METADATA_HOST`` or an
impersonation URL at it. One module per Google service:

- :mod:`.oauth`: ``POST /token``, JWT-bearer and refresh-token grants;
- :mod:`.metadata`: ``/`` and ``/computeMetadata/v1/...``;
- :mod:`.iam`: IAM Credentials ``generateAccessToken`` / ``generateIdToken``,
  and ``signBlob`` / ``signJwt`` (:mod:`.signing`);
- :mod:`.certs`: ``/oauth2/v3/certs`` (JWK set) and ``/oauth2/v1/certs`` (PEM map);
- :mod:`.iap`: IAP's key set ``/iap/verify/public_key-jwk`` (ES256); the
  assertions IAP adds to requests come from :meth:`GoogleEmulator.issue_iap_assertion`;
- :mod:`.sts`: STS ``/v1/token`` (Workload Identity Federation's RFC 8693
  exchange) and ``/v1/oauth/token`` (workforce logins);

and, for federation, the outside identities STS trusts (:mod:`.federation`):
:mod:`.oidc_issuer`, a GitHub-Actions-like OIDC issuer at ``/oidc`` whose
token endpoint wants a request token, and :mod:`.aws_metadata`, an EC2
instance's IMDSv2 at ``/latest/``, whose signed ``GetCallerIdentity``
requests :mod:`.sigv4` verifies as AWS would;

on a shared core: :mod:`.server` (HTTP), :mod:`.accounts` (who exists),
:mod:`.minting` (tokens and the "Google" signing key), :mod:`.faults` and
:mod:`.records`. A new service is a :class:`~.service.Service` subclass in a
module of its own, listed in :data:`SERVICES`.

Every ID token is RS256, signed by the emulator's own "Google" key and carries
``iss = https://accounts.google.com``. Every access token is remembered, so a
protected test server can check it in-process (:meth:`GoogleEmulator.access_token_info`).
Faults (errors, arbitrary bodies, latency, hangs) can be injected per endpoint,
and every request and TCP connection is counted. ``signBlob`` is not emulated.

It never uses this package's Rust core: it is the other side of the wire.

Example::

    with GoogleEmulator() as google:
        info = google.service_account_info()
        creds = service_account.IDTokenCredentials.from_service_account_info(
            info, target_audience="https://my-service.run.app"
        )
        creds.refresh(google.auth.transport.requests.Request())
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from . import keys, signing
from .accounts import Accounts, AuthorizedUser, ServiceAccount
from .aws_metadata import AWS_METADATA_PATH, AwsInstanceMetadata
from .certs import JWKS_PATH, PEM_CERTS_PATH, X509_PATH, Certs
from .faults import Fault, FaultPlan
from .federation import (
    AWS_SUBJECT_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    AwsInstance,
    AwsKey,
    Condition,
    Provider,
    WorkforceLogin,
)
from .iam import IAM_PATH, IamCredentials
from .iap import IAP_JWKS_PATH, IapKeys
from .metadata import MetadataServer
from .minting import (
    CLOUD_PLATFORM_SCOPE,
    GOOGLE_ISSUER,
    IAP_ISSUER,
    AccessTokenInfo,
    InvalidIdToken,
    Mint,
)
from .oauth import (
    ADC_LOGIN_SCOPES,
    GCLOUD_ADC_CLIENT_ID,
    GCLOUD_CLIENT_ID,
    TOKEN_PATH,
    TokenEndpoint,
)
from .oidc_issuer import ISSUER_PATH, ExternalOidcIssuer, subject_claims
from .records import EndpointKind, RequestLog, RequestRecord
from .server import JSON, LoopbackHTTPServer, Request, Response
from .service import GoogleState, Service, api_failure
from .sts import STS_PATH, STS_REFRESH_PATH, SecurityTokenService
from .wire import Reject, json_response, numeric_id, to_bytes

__all__ = [
    "AWS_SUBJECT_TOKEN_TYPE",
    "CLOUD_PLATFORM_SCOPE",
    "GCLOUD_ADC_CLIENT_ID",
    "GCLOUD_CLIENT_ID",
    "GITHUB_SUBJECT",
    "GOOGLE_ISSUER",
    "IAP_ISSUER",
    "JWT_TOKEN_TYPE",
    "SERVICES",
    "AccessTokenInfo",
    "AwsKey",
    "EndpointKind",
    "GoogleEmulator",
    "InvalidIdToken",
    "RequestRecord",
]

_log = logging.getLogger(__name__)

SERVICES: tuple[type[Service], ...] = (
    TokenEndpoint,
    MetadataServer,
    IamCredentials,
    Certs,
    IapKeys,
    SecurityTokenService,
    ExternalOidcIssuer,
    AwsInstanceMetadata,
)
"""The emulated services, asked in this order which one owns a request's path."""

GITHUB_SUBJECT = "repo:octo-org/agent:ref:refs/heads/main"
"""The ``sub`` of the external issuer's tokens unless told otherwise (GitHub's shape)."""


class _EnvTarget(Protocol):
    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def setattr(self, target: Any, name: str, value: Any, raising: bool = True) -> None: ...


class GoogleEmulator:
    """Google's token, metadata, IAM Credentials and certs endpoints on loopback.

    Thread-safe. Use as a context manager, or :meth:`start` / :meth:`stop`.

    Args:
        project_id: Project of the metadata server and of default service accounts.
        project_number: Numeric project id the metadata server reports.
        metadata_service_account: Identity of the metadata server; default is
            the project's Compute Engine default service account.
        token_lifetime: Seconds every issued token lives (Google: 3600).
        host: Loopback address to bind: ``"127.0.0.1"`` or ``"::1"``.
    """

    def __init__(
        self,
        *,
        project_id: str = "emulated-project",
        project_number: str = "123456789012",
        metadata_service_account: str | None = None,
        token_lifetime: int = 3600,
        host: str = "127.0.0.1",
    ) -> None:
        metadata_email = (
            metadata_service_account or f"{project_number}-compute@developer.gserviceaccount.com"
        )
        self._state = GoogleState(
            project_id=project_id,
            project_number=project_number,
            metadata_email=metadata_email,
            accounts=Accounts(),
            mint=Mint(token_lifetime),
        )
        self._services = tuple(service(self._state) for service in SERVICES)
        self._host = host
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._faults = FaultPlan()
        self._log = RequestLog()
        self.register_service_account(metadata_email)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> GoogleEmulator:
        """Bind ``HOST:0`` and serve in a background thread; returns ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = LoopbackHTTPServer(
                self._handle, self._log.connection_accepted, self._stopping, self._host
            )
            self._port = server.port
            self._state.url = f"http://{self._authority(server.port)}"
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

    # -- configuration ---------------------------------------------------------------

    @property
    def project_id(self) -> str:
        """Project of the metadata server and of default service accounts."""
        return self._state.project_id

    @project_id.setter
    def project_id(self, value: str) -> None:
        self._state.project_id = value

    @property
    def project_number(self) -> str:
        """Numeric project id the metadata server reports."""
        return self._state.project_number

    @project_number.setter
    def project_number(self, value: str) -> None:
        self._state.project_number = value

    @property
    def token_lifetime(self) -> int:
        """Seconds every issued token lives; a few seconds for rollover tests."""
        return self._state.mint.token_lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: int) -> None:
        self._state.mint.token_lifetime = seconds

    @property
    def metadata_scopes(self) -> tuple[str, ...]:
        """Scopes the metadata server's identity has (``.../default/scopes``)."""
        return self._state.metadata_scopes

    @metadata_scopes.setter
    def metadata_scopes(self, scopes: tuple[str, ...]) -> None:
        self._state.metadata_scopes = tuple(scopes)

    @property
    def internal_errors(self) -> list[BaseException]:
        """Unexpected exceptions inside the emulator (answered with 500); tests may assert empty."""
        return self._state.internal_errors

    # -- addresses -------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        where = f" at {self.url}" if self._port else ""
        return f"<GoogleEmulator {state}{where}>"

    def _authority(self, port: int) -> str:
        return f"[{self._host}]:{port}" if ":" in self._host else f"{self._host}:{port}"

    @property
    def host(self) -> str:
        """The loopback address it binds (``127.0.0.1`` or ``::1``)."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (kept after :meth:`stop`; a restart binds a new one)."""
        if not self._port:
            raise RuntimeError("GoogleEmulator was never started")
        return self._port

    @property
    def url(self) -> str:
        """Origin of every endpoint, ``http://127.0.0.1:PORT`` (``http://[::1]:PORT``)."""
        return f"http://{self.metadata_host}"

    @property
    def token_uri(self) -> str:
        """OAuth 2.0 token endpoint; the ``token_uri`` of the key files it hands out."""
        return f"{self.url}{TOKEN_PATH}"

    @property
    def metadata_host(self) -> str:
        """``host:port`` for ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``."""
        return self._authority(self.port)

    @property
    def certs_url(self) -> str:
        """PEM certificate map, what ``google.oauth2.id_token.verify_token`` reads."""
        return f"{self.url}{PEM_CERTS_PATH}"

    @property
    def jwks_url(self) -> str:
        """JWK set of the ID token signing key."""
        return f"{self.url}{JWKS_PATH}"

    @property
    def iap_jwks_url(self) -> str:
        """JWK set of IAP's assertion signing key (ES256)."""
        return f"{self.url}{IAP_JWKS_PATH}"

    @property
    def certs_max_age(self) -> int:
        """``Cache-Control: max-age`` sent with every key set (default 19800, Google's)."""
        return self._state.certs_max_age

    @certs_max_age.setter
    def certs_max_age(self, seconds: int) -> None:
        self._state.certs_max_age = seconds

    def iam_url(self, email: str, method: str = "generateAccessToken") -> str:
        """IAM Credentials URL for ``email`` (``generateAccessToken``, ``generateIdToken``,
        ``signBlob`` or ``signJwt``)."""
        return f"{self.url}{IAM_PATH}-/serviceAccounts/{email}:{method}"

    # -- identities ------------------------------------------------------------------

    @property
    def metadata_service_account(self) -> str:
        """Email the metadata server acts as."""
        return self._state.metadata_email

    @metadata_service_account.setter
    def metadata_service_account(self, email: str) -> None:
        self.register_service_account(email)
        self._state.metadata_email = email

    def register_service_account(self, email: str, *, project_id: str | None = None) -> None:
        """Make ``email`` an existing service account (keyless: impersonation target only)."""
        self._state.accounts.register(email, project_id or self.project_id)

    def service_account_info(
        self, email: str | None = None, *, project_id: str | None = None
    ) -> dict[str, str]:
        """A service account key JSON as the Cloud console issues it, ``token_uri`` → here.

        The same email always gets the same key. The default email is a fresh
        ``agent-N@PROJECT.iam.gserviceaccount.com``.
        """
        account = self._state.accounts.with_key(email, project_id or self.project_id)
        return self._key_file(account)

    def rotate_key(self, email: str) -> dict[str, str]:
        """A new key file for ``email`` (new key, new key id); the old key keeps working,
        as on Google until it is deleted."""
        return self._key_file(self._state.accounts.rotate_key(email, self.project_id))

    def _key_file(self, account: ServiceAccount) -> dict[str, str]:
        assert account.key is not None and account.key_id is not None
        return {
            "type": "service_account",
            "project_id": account.project_id,
            "private_key_id": account.key_id,
            "private_key": keys.private_key_pem(account.key),
            "client_email": account.email,
            "client_id": account.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": self.certs_url,
            "client_x509_cert_url": f"{self.url}{X509_PATH}{quote(account.email)}",
            "universe_domain": "googleapis.com",
        }

    def authorized_user_info(
        self,
        email: str = "developer@example.com",
        *,
        client_id: str = GCLOUD_ADC_CLIENT_ID,
        client_secret: str | None = None,
        quota_project_id: str | None = None,
        scopes: Sequence[str] = ADC_LOGIN_SCOPES,
    ) -> dict[str, str]:
        """An ``authorized_user`` ADC file as ``gcloud auth application-default login`` writes it.

        ``token_uri`` points here (google-auth ignores it and always uses
        Google's; see ``Credentials.with_token_uri``). The refresh token is
        fresh on every call; ``scopes`` are what the login granted (with
        ``openid``, refreshes also return an ``id_token``).
        """
        refresh_token = "1//emulated-" + secrets.token_urlsafe(32)
        secret = client_secret or "emulated-" + secrets.token_urlsafe(12)
        user = AuthorizedUser(email, client_id, secret, tuple(scopes))
        self._state.accounts.add_user(refresh_token, user)
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
        self._state.accounts.revoke(refresh_token)

    def delete_service_account(self, email: str) -> None:
        """Delete a service account: its key stops working and IAM answers 404 for it."""
        self._state.accounts.delete(email)

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
        ``GCE_METADATA_HOST`` once, at import; its module-level copy is
        patched too (through the ``MonkeyPatch``, or directly when ``target``
        is ``os.environ`` itself).
        """
        host = self.metadata_host
        metadata_module = sys.modules.get("google.auth.compute_engine._metadata")
        if isinstance(target, MutableMapping):
            target["GCE_METADATA_HOST"] = host
            target["GCE_METADATA_IP"] = host
            if target is os.environ and metadata_module is not None:
                metadata_module._GCE_METADATA_HOST = host  # type: ignore[attr-defined]
            return
        target.setenv("GCE_METADATA_HOST", host)
        target.setenv("GCE_METADATA_IP", host)
        if metadata_module is not None:
            target.setattr(metadata_module, "_GCE_METADATA_HOST", host)

    # -- impersonation policy --------------------------------------------------------

    def restrict_impersonation(self) -> None:
        """From now on only pairs passed to :meth:`allow_impersonation` may impersonate."""
        self._state.accounts.restrict_impersonation()

    def allow_impersonation(self, principal: str, target: str) -> None:
        """Grant ``principal`` Service Account Token Creator on ``target``."""
        self._state.accounts.allow_impersonation(principal, target)

    # -- workload identity federation ------------------------------------------------

    @property
    def sts_token_url(self) -> str:
        """STS's token exchange endpoint: the ``token_url`` of ``external_account`` files."""
        return f"{self.url}{STS_PATH}"

    @property
    def oidc_issuer(self) -> str:
        """The external (non-Google) OIDC issuer's ``iss``."""
        return f"{self.url}{ISSUER_PATH}"

    def add_oidc_provider(
        self,
        pool: str = "github",
        provider: str = "my-repo",
        *,
        allowed_audiences: Sequence[str] | None = None,
        condition: Condition | None = None,
        workforce: bool = False,
    ) -> str:
        """A pool provider trusting :attr:`oidc_issuer`; returns its audience (resource name).

        ``allowed_audiences`` defaults to Google's default for OIDC providers,
        ``https://iam.googleapis.com/`` + the resource name. ``condition``
        gets the token's claims (an attribute condition). ``workforce`` makes
        it a workforce pool's provider.
        """
        if workforce:
            audience = (
                f"//iam.googleapis.com/locations/global/workforcePools/{pool}/providers/{provider}"
            )
        else:
            audience = (
                f"//iam.googleapis.com/projects/{self.project_number}/locations/global/"
                f"workloadIdentityPools/{pool}/providers/{provider}"
            )
        default = "https:" + audience
        self._state.federation.add_provider(
            Provider(
                audience,
                "oidc",
                issuer=self.oidc_issuer,
                allowed_audiences=tuple(allowed_audiences or (default,)),
                condition=condition,
            )
        )
        return audience

    def add_aws_provider(
        self, pool: str = "aws", provider: str = "my-account", *, account_id: str = "123456789012"
    ) -> str:
        """A pool provider trusting AWS account ``account_id``; returns its audience."""
        audience = (
            f"//iam.googleapis.com/projects/{self.project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/providers/{provider}"
        )
        self._state.federation.add_provider(Provider(audience, "aws", aws_account_id=account_id))
        return audience

    def disable_provider(self, audience: str) -> None:
        """Disable a provider: STS answers ``invalid_target`` for it."""
        federation = self._state.federation
        current = federation.provider(audience)
        if current is not None:
            federation.add_provider(dataclasses.replace(current, disabled=True))

    def federated_principal(self, audience: str, subject: str = GITHUB_SUBJECT) -> str:
        """The IAM principal STS issues tokens for: ``principal://…/subject/SUBJECT``."""
        return self._provider(audience).principal(subject)

    def principal_set(self, audience: str) -> str:
        """Every identity of the provider's pool: ``principalSet://…/*`` (for grants)."""
        return self._provider(audience).principal_set

    def _provider(self, audience: str) -> Provider:
        provider = self._state.federation.provider(audience)
        if provider is None:
            raise KeyError(f"no provider {audience}; add_oidc_provider() or add_aws_provider()")
        return provider

    def issue_subject_token(
        self,
        audience: str,
        subject: str = GITHUB_SUBJECT,
        *,
        lifetime: float = 300,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An OIDC token of the external issuer for provider ``audience`` (its ``aud``
        is the provider's first allowed audience); ``claims`` add or override."""
        provider = self._provider(audience)
        aud = provider.allowed_audiences[0] if provider.allowed_audiences else audience
        payload = subject_claims(self.oidc_issuer, aud, subject, lifetime, dict(claims or {}))
        return self._state.federation.sign_subject_token(self.oidc_issuer, payload)

    def github_actions_token_endpoint(
        self,
        audience: str,
        subject: str = GITHUB_SUBJECT,
        *,
        lifetime: float = 300,
        claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, str]:
        """``(ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN)``: a URL
        (with ``audience=`` for provider ``audience``) that answers subject tokens
        for ``subject`` to a ``Bearer`` request token, and that token."""
        provider = self._provider(audience)
        aud = provider.allowed_audiences[0] if provider.allowed_audiences else audience
        request_token = self._state.federation.add_request_token(
            {**dict(claims or {}), "sub": subject, "_lifetime": lifetime}
        )
        url = f"{self.oidc_issuer}/token?api-version=2.0&audience={quote(aud, safe='')}"
        return url, request_token

    def github_actions_credential_source(
        self,
        audience: str,
        subject: str = GITHUB_SUBJECT,
        *,
        lifetime: float = 300,
        claims: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``credential_source`` google-github-actions/auth writes: the token URL
        of :meth:`github_actions_token_endpoint`, its request token as a ``Bearer``
        header, and the JSON field ``value``."""
        url, request_token = self.github_actions_token_endpoint(
            audience, subject, lifetime=lifetime, claims=claims
        )
        return {
            "url": url,
            "headers": {"Authorization": f"Bearer {request_token}"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        }

    def aws_access_key(
        self, *, account_id: str = "123456789012", user: str = "agent", temporary: bool = False
    ) -> AwsKey:
        """AWS keys the emulated AWS STS accepts signatures of (for ``AWS_*`` variables).

        ``temporary`` adds a session token (as in Lambda or an assumed role).
        """
        suffix = secrets.token_hex(8).upper()
        session = "emulated-session-" + secrets.token_urlsafe(24) if temporary else None
        arn = (
            f"arn:aws:sts::{account_id}:assumed-role/{user}/session"
            if temporary
            else f"arn:aws:iam::{account_id}:user/{user}"
        )
        key = AwsKey(
            ("ASIA" if temporary else "AKIA") + suffix,
            "emulated-secret-" + secrets.token_urlsafe(30),
            session,
            arn,
        )
        return self._state.federation.add_aws_key(key)

    def aws_instance(
        self,
        *,
        region: str = "us-east-1",
        role: str = "agent-role",
        account_id: str = "123456789012",
        require_imdsv2: bool = True,
    ) -> AwsKey:
        """Make ``/latest/`` an EC2 instance's IMDS with ``role`` attached; returns the
        role's temporary credentials (which it serves)."""
        key = self.aws_access_key(account_id=account_id, user=role, temporary=True)
        federation = self._state.federation
        federation.aws_instance = AwsInstance(region, role, key)
        federation.require_imdsv2 = require_imdsv2
        return key

    def aws_credential_source(self, *, imdsv2: bool = True) -> dict[str, str]:
        """``credential_source`` of ``create-cred-config --aws [--enable-imdsv2]``, with
        the metadata URLs pointing here."""
        source = {
            "environment_id": "aws1",
            "region_url": f"{self.url}{AWS_METADATA_PATH}meta-data/placement/availability-zone",
            "url": f"{self.url}{AWS_METADATA_PATH}meta-data/iam/security-credentials",
            "regional_cred_verification_url": (
                "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
            ),
        }
        if imdsv2:
            source["imdsv2_session_token_url"] = f"{self.url}{AWS_METADATA_PATH}api/token"
        return source

    def external_account_info(
        self,
        audience: str,
        credential_source: Mapping[str, Any],
        *,
        service_account: str | None = None,
        token_lifetime: int | None = None,
        subject_token_type: str | None = None,
        workforce_pool_user_project: str | None = None,
    ) -> dict[str, Any]:
        """An ``external_account`` file as ``gcloud iam workload-identity-pools
        create-cred-config`` writes it, ``token_url`` (and impersonation) → here.

        ``service_account`` (``--service-account``) adds impersonation; it
        becomes an existing service account.
        """
        provider = self._provider(audience)
        default_type = AWS_SUBJECT_TOKEN_TYPE if provider.kind == "aws" else JWT_TOKEN_TYPE
        info: dict[str, Any] = {
            "universe_domain": "googleapis.com",
            "type": "external_account",
            "audience": audience,
            "subject_token_type": subject_token_type or default_type,
            "token_url": self.sts_token_url,
            "credential_source": dict(credential_source),
            "token_info_url": f"{self.url}/v1/introspect",
        }
        if service_account is not None:
            self.register_service_account(service_account)
            info["service_account_impersonation_url"] = self.iam_url(service_account)
            if token_lifetime is not None:
                info["service_account_impersonation"] = {"token_lifetime_seconds": token_lifetime}
        if workforce_pool_user_project is not None:
            info["workforce_pool_user_project"] = workforce_pool_user_project
        return info

    def workforce_login_info(
        self, audience: str, subject: str = "alice@example.com"
    ) -> dict[str, str]:
        """An ``external_account_authorized_user`` file, as ``gcloud auth login
        --cred-file`` leaves it for a workforce provider ``audience``."""
        provider = self._provider(audience)
        refresh_token = "wf-emulated-" + secrets.token_urlsafe(32)
        client_id = "wf-client-" + secrets.token_hex(6)
        client_secret = "wf-secret-" + secrets.token_urlsafe(12)
        self._state.federation.add_login(
            refresh_token, WorkforceLogin(provider, subject, client_id, client_secret)
        )
        return {
            "type": "external_account_authorized_user",
            "audience": audience,
            "refresh_token": refresh_token,
            "token_url": f"{self.url}{STS_REFRESH_PATH}",
            "token_info_url": f"{self.url}/v1/introspect",
            "revoke_url": f"{self.url}/v1/oauthtoken:revoke",
            "client_id": client_id,
            "client_secret": client_secret,
            "universe_domain": "googleapis.com",
        }

    # -- tokens ----------------------------------------------------------------------

    def access_token_info(self, token: str) -> AccessTokenInfo | None:
        """The issued access token's principal, scopes and expiry (expired ones too)."""
        return self._state.mint.access_token_info(token)

    def issue_access_token(
        self,
        principal: str,
        scopes: Sequence[str] = (CLOUD_PLATFORM_SCOPE,),
        *,
        lifetime: float | None = None,
        source: str = "direct",
    ) -> str:
        """Mint an access token without a request (negative ``lifetime``: already expired)."""
        return self._state.mint.issue_access_token(
            principal, scopes, lifetime=lifetime, source=source
        )

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
        mint = self._state.mint
        subject = email or self.metadata_service_account
        payload = mint.id_claims(audience, subject, numeric_id(subject), lifetime=lifetime)
        payload.update(claims or {})
        return mint.sign(payload)

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The ID token signing keys by ``kid`` (what the certs endpoints publish)."""
        return self._state.mint.public_keys()

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign ID tokens with a new key from now on; returns its ``kid``.

        With ``keep_previous`` the old key stays in the key sets (as Google
        keeps it while tokens it signed live); without, it is gone at once.
        """
        return self._state.mint.rotate_signing_key(keep_previous=keep_previous)

    def issue_iap_assertion(
        self,
        audience: str,
        *,
        email: str = "user@example.com",
        lifetime: float = 600,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An ``x-goog-iap-jwt-assertion`` as IAP adds it to a request it let through.

        Args:
            audience: ``/projects/NUMBER/global/backendServices/ID`` or
                ``/projects/NUMBER/apps/PROJECT_ID``.
            email: The signed-in user (``sub`` is derived from it); a
                Workspace user's domain goes in ``claims={"hd": ...}``.
            lifetime: Seconds until ``exp`` (IAP's are about 10 minutes).
            claims: Extra or overriding claims.
        """
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": audience,
            "email": email,
            "exp": int(now + lifetime),
            "iat": now,
            "iss": IAP_ISSUER,
            "sub": f"accounts.google.com:{numeric_id(email)}",
            "identity_source": "GOOGLE",
        }
        payload.update(claims or {})
        return self._state.mint.sign_iap_assertion(payload)

    def verify_id_token(
        self, token: str, audience: str | Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Check an ID token as a Google-fronted service does; return its claims.

        Checks: a JWT, RS256, ``kid`` of this emulator's key, valid signature,
        ``iss`` Google, unexpired, and ``aud`` one of ``audience`` (unless None).

        Raises:
            InvalidIdToken: with a short ``reason``.
        """
        return self._state.mint.verify_id_token(token, audience)

    def verify_service_account_jwt(
        self, token: str, audience: str | Sequence[str], *, max_lifetime: int = 3600
    ) -> dict[str, Any]:
        """Check a JWT a service account signed (with its key, or IAM ``signJwt``) as IAP
        does; return its claims. See :func:`.signing.verify_service_account_jwt`.

        Raises:
            InvalidIdToken: with a short ``reason``.
        """
        audiences = [audience] if isinstance(audience, str) else list(audience)
        return signing.verify_service_account_jwt(
            self._state, token, audiences, max_lifetime=max_lifetime
        )

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
        payload = None if body is None else to_bytes(body)
        self._faults.add(Fault("fail", n, endpoint, status, payload))

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
        self._faults.add(Fault("respond", times, endpoint, status, to_bytes(body), content_type))

    def hang_next(self, n: int = 1, endpoint: str | None = None) -> None:
        """Accept the next ``n`` matching requests and never answer them until :meth:`stop`."""
        self._faults.add(Fault("hang", n, endpoint))

    @property
    def latency(self) -> float:
        """Seconds added to every token-issuing response (all endpoint kinds)."""
        return self._faults.latency()

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.set_latency(seconds)

    def set_latency(self, seconds: float, *, endpoint: EndpointKind | None = None) -> None:
        """Delay token-issuing responses of one endpoint kind (or all, with ``None``).

        Naming ``endpoint="certs"`` delays the key sets too (a slow JWKS for
        a verifier's cold fetch); latency for all kinds never does.
        """
        self._faults.set_latency(seconds, endpoint)

    def clear_faults(self) -> None:
        """Drop pending faults and latency."""
        self._faults.clear()

    # -- counting --------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request records, in arrival order."""
        return self._log.records()

    def count(self, kind: EndpointKind | None = None) -> int:
        """Requests received (of ``kind``, if given) since the last :meth:`reset_counts`."""
        return self._log.count(kind)

    @property
    def connections(self) -> int:
        """TCP connections accepted since the last :meth:`reset_counts`."""
        return self._log.connections

    def reset_counts(self) -> None:
        """Forget request records and the connection count."""
        self._log.reset()

    # -- request handling (runs on handler threads) ----------------------------------

    def _handle(self, request: Request) -> Response | None:
        service = next((s for s in self._services if s.owns(request.path)), None)
        kind: EndpointKind = "other" if service is None else service.kind
        record = RequestRecord(
            kind=kind,
            method=request.method,
            path=request.path,
            query=request.query,
            connection=request.connection,
            started=time.monotonic(),
            user_agent=request.headers.get("User-Agent"),
        )
        if service is not None:
            # What was asked, before any fault decides the answer.
            with contextlib.suppress(ValueError, TypeError, AttributeError, jwt.PyJWTError):
                service.describe(request, record)
        self._log.add(record)
        fault = self._faults.take(kind, request.path)
        if fault is not None and fault.action == "hang":
            self._stopping.wait()
            return None
        if service is not None:
            delay = (
                self._faults.latency(kind)
                if service.issues_tokens(request.path)
                else self._faults.own_latency(kind)
            )
            if delay > 0 and self._stopping.wait(delay):
                return None
        if fault is not None:
            response = _fault_response(fault, service)
        elif service is None:
            response = Response(404, b"Not Found", "text/plain")
        else:
            response = self._serve(service, request, record)
        if service is not None:
            service.finish(response)
        record.status = response.status
        record.finished = time.monotonic()
        return response

    def _serve(self, service: Service, request: Request, record: RequestRecord) -> Response:
        try:
            return service.serve(request, record)
        except Reject as reject:
            return reject.response
        except Exception as exc:  # an emulator bug: answer 500 and keep it for the test
            _log.exception("GoogleEmulator failed on %s %s", request.method, request.path)
            self._state.internal_errors.append(exc)
            return json_response(500, {"error": "internal", "error_description": str(exc)})


def _fault_response(fault: Fault, service: Service | None) -> Response:
    if fault.action == "respond":
        assert fault.body is not None
        return Response(fault.status, fault.body, fault.content_type or JSON)
    if fault.body is not None:
        return Response(fault.status, fault.body, JSON)
    return api_failure(fault.status) if service is None else service.failure(fault.status)

"""Who Workload Identity Federation trusts at the emulated Google: pools, their
providers, and the outside identities they accept.

- A *provider* belongs to a workload identity pool
  (``//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/P``)
  or a workforce pool (``//iam.googleapis.com/locations/global/workforcePools/POOL/providers/P``),
  and trusts either an OIDC issuer or an AWS account
  (https://cloud.google.com/iam/docs/workload-identity-federation).
- The OIDC issuer here is the emulator's own, GitHub-Actions-like one
  (:mod:`.oidc_issuer`), with a signing key of its own (never Google's).
- AWS identities are access keys the emulated STS can verify SigV4 signatures
  with (:mod:`.sigv4`); an instance's role credentials are served by
  :mod:`.aws_metadata`.

A federated principal is ``principal://iam.googleapis.com/<pool>/subject/<SUBJECT>``
(the ``google.subject`` mapping: the token's ``sub``, or AWS's ARN); the pool's
``principalSet://…/<pool>/*`` names all of them, as IAM grants do.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from . import keys

__all__ = [
    "AWS_SUBJECT_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TOKEN_TYPE",
    "SAML_TOKEN_TYPE",
    "AwsKey",
    "Federation",
    "Provider",
    "WorkforceLogin",
]

JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
SAML_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:saml2"
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"

Condition = Callable[[Mapping[str, Any]], bool]
"""An attribute condition: gets the subject token's claims (AWS: ``{"arn": …}``)."""


@dataclass(frozen=True)
class Provider:
    """One pool provider: what it trusts and how it names who came in."""

    audience: str
    """Its full resource name, ``//iam.googleapis.com/…/providers/ID``: the STS audience."""
    kind: Literal["oidc", "aws"]
    issuer: str | None = None
    """OIDC: the ``iss`` it trusts."""
    allowed_audiences: tuple[str, ...] = ()
    """OIDC: ``aud`` values it accepts (Google's default: ``https:`` + the resource name)."""
    aws_account_id: str | None = None
    """AWS: the account whose callers it accepts."""
    condition: Condition | None = None
    disabled: bool = False

    @property
    def pool(self) -> str:
        """``projects/N/locations/L/workloadIdentityPools/POOL`` (or a workforce pool)."""
        return self.audience.removeprefix("//iam.googleapis.com/").rpartition("/providers/")[0]

    @property
    def workforce(self) -> bool:
        return "/workforcePools/" in self.audience

    def principal(self, subject: str) -> str:
        """The IAM principal of one identity that came in through this provider."""
        return f"principal://iam.googleapis.com/{self.pool}/subject/{subject}"

    @property
    def principal_set(self) -> str:
        """Every identity of the pool, as an IAM member."""
        return f"principalSet://iam.googleapis.com/{self.pool}/*"


@dataclass(frozen=True)
class AwsKey:
    """An AWS access key the emulated AWS STS knows (for verifying signatures)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None
    arn: str
    """Who signs with it: ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`` or an IAM user."""

    @property
    def account_id(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class WorkforceLogin:
    """An ``external_account_authorized_user`` login: its OAuth client and who it is."""

    provider: Provider
    subject: str
    client_id: str
    client_secret: str


@dataclass
class AwsInstance:
    """What an EC2 instance's metadata service reports."""

    region: str
    role: str
    key: AwsKey


class Federation:
    """Pools, providers, the OIDC issuer and AWS identities; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._providers: dict[str, Provider] = {}
        self._aws_keys: dict[str, AwsKey] = {}
        self._request_tokens: dict[str, dict[str, Any]] = {}
        self._imds_sessions: dict[str, float] = {}
        self._logins: dict[str, WorkforceLogin] = {}
        self.aws_instance: AwsInstance | None = None
        self.require_imdsv2 = True
        """Like an instance with ``HttpTokens=required``: metadata GETs need a session token."""
        # Not Google's key (pool slot 0): a subject token is never a Google token.
        self.issuer_key: rsa.RSAPrivateKey = keys.pooled_key(3)
        self.issuer_kid = "issuer-" + secrets.token_hex(8)

    # -- providers -------------------------------------------------------------------

    def add_provider(self, provider: Provider) -> Provider:
        with self._lock:
            self._providers[provider.audience] = provider
        return provider

    def provider(self, audience: str) -> Provider | None:
        with self._lock:
            return self._providers.get(audience)

    # -- the OIDC issuer -------------------------------------------------------------

    def sign_subject_token(self, issuer: str, claims: Mapping[str, Any]) -> str:
        """A JWT from the external issuer (RS256, its own key)."""
        return jwt.encode(
            dict(claims), self.issuer_key, algorithm="RS256", headers={"kid": self.issuer_kid}
        )

    def verify_subject_token(self, token: str, issuer: str) -> dict[str, Any]:
        """The claims of a token the external issuer signed; ``ValueError`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ValueError("The subject token is not a valid JWT.") from exc
        if header.get("kid") != self.issuer_kid or header.get("alg") != "RS256":
            raise ValueError("The ID Token signing key is not in the issuer's JWKS.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.issuer_key.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise ValueError("Invalid ID Token signature.") from exc
        if claims.get("iss") != issuer:
            raise ValueError(
                f"The issuer in ID Token {claims.get('iss')} does not match the expected"
                f" issuer {issuer}."
            )
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= time.time():
            raise ValueError("ID Token has expired.")
        return claims

    def add_request_token(self, claims: Mapping[str, Any]) -> str:
        """A GitHub-like request token that fetches subject tokens with ``claims``."""
        token = "ghs_emulated" + secrets.token_urlsafe(24)
        with self._lock:
            self._request_tokens[token] = dict(claims)
        return token

    def request_token_claims(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            claims = self._request_tokens.get(token)
            return None if claims is None else dict(claims)

    # -- AWS -------------------------------------------------------------------------

    def add_aws_key(self, key: AwsKey) -> AwsKey:
        with self._lock:
            self._aws_keys[key.access_key_id] = key
        return key

    def aws_key(self, access_key_id: str) -> AwsKey | None:
        with self._lock:
            return self._aws_keys.get(access_key_id)

    def new_imds_session(self, ttl: float) -> str:
        token = "imds-" + secrets.token_urlsafe(32)
        with self._lock:
            self._imds_sessions[token] = time.time() + ttl
        return token

    def imds_session_valid(self, token: str | None) -> bool:
        with self._lock:
            expires = self._imds_sessions.get(token or "")
        return expires is not None and expires > time.time()

    # -- workforce logins ------------------------------------------------------------

    def add_login(self, refresh_token: str, login: WorkforceLogin) -> None:
        with self._lock:
            self._logins[refresh_token] = login

    def login(self, refresh_token: str) -> WorkforceLogin | None:
        with self._lock:
            return self._logins.get(refresh_token)

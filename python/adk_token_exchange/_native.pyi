"""Stubs for the Rust core (``src/bindings/``). Checked by ``mypy.stubtest``."""

from collections.abc import Callable, Generator, Sequence
from collections.abc import Coroutine as _Coroutine
from typing import Any, Literal, TypeVar, final

from typing_extensions import disjoint_base

__all__ = [
    "Coroutine",
    "Credentials",
    "FederationInfo",
    "ModelKey",
    "ServiceAccountExchanger",
    "SourceInfo",
    "Token",
    "TokenRequest",
    "TokenVerifier",
    "__version__",
    "clear_cache",
    "configure",
    "flush_fetch_records",
    "impersonation_chain",
    "reset_application_default",
    "set_fetch_observer",
    "telemetry_counters",
]

__version__: str

_T_co = TypeVar("_T_co", covariant=True)

@final
class Coroutine(_Coroutine[Any, Any, _T_co]):
    """A coroutine over a core operation (``asyncio.iscoroutine`` is true).

    Nothing runs until it is awaited; a cached answer finishes on the first
    step, without an asyncio future; otherwise the running loop is woken by
    the core's runtime when the answer is there.
    """

    def __await__(self) -> Generator[Any, None, _T_co]: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any: ...
    def close(self) -> None: ...
    @property
    def __name__(self) -> str: ...
    @property
    def __qualname__(self) -> str: ...
    @property
    def cr_running(self) -> bool: ...

@final
class Token:
    """A token and its expiry. ``repr`` never shows the value; it cannot be pickled."""

    @property
    def value(self) -> str: ...
    @property
    def kind(self) -> Literal["access", "id"]: ...
    @property
    def expires_at(self) -> float:
        """Unix time in seconds."""

    @property
    def quota_project_id(self) -> str | None: ...
    def claims(self) -> dict[str, Any] | None:
        """An ID token's JWT payload, unverified; ``None`` for an access token."""

@final
class SourceInfo:
    """What a credential resolved to (for logs and ``doctor``); no secrets."""

    @property
    def kind(
        self,
    ) -> Literal[
        "service_account",
        "authorized_user",
        "impersonated_service_account",
        "metadata",
        "external_account",
        "external_account_authorized_user",
    ]: ...
    @property
    def origin(self) -> str:
        """Where it came from: a file path, a variable, the metadata server URL."""

    @property
    def principal(self) -> str | None:
        """Service account email or client id, when known without a request."""

    @property
    def impersonating(self) -> str | None: ...
    @property
    def quota_project_id(self) -> str | None: ...
    @property
    def token_uri(self) -> str | None: ...
    @property
    def steps(self) -> list[str]:
        """ADC resolution, one line per step checked (for ``doctor``)."""

    @property
    def federation(self) -> FederationInfo | None:
        """For ``external_account`` credentials: where the subject token comes from,
        which pool and provider, what STS and IAM are asked."""

@final
class FederationInfo:
    """A Workload Identity Federation credential's parts; no secrets (no header
    values, command arguments or tokens)."""

    @property
    def credential_source(
        self,
    ) -> Literal["file", "url", "executable", "aws", "refresh_token"]: ...
    @property
    def subject_from(self) -> str:
        """The file's path, the URL (no query), the program, or AWS's endpoints."""

    @property
    def audience(self) -> str:
        """The STS audience: the pool provider's resource name."""

    @property
    def pool_kind(self) -> Literal["workload", "workforce"] | None: ...
    @property
    def project_number(self) -> str | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def pool_id(self) -> str | None: ...
    @property
    def provider_id(self) -> str | None: ...
    @property
    def subject_token_type(self) -> str | None: ...
    @property
    def token_url(self) -> str:
        """Where the subject token is exchanged (STS), or the login refreshed."""

    @property
    def impersonation_url(self) -> str | None: ...
    @property
    def token_lifetime_seconds(self) -> int | None: ...
    @property
    def workforce_pool_user_project(self) -> str | None: ...

_Chain = str | Sequence[str] | None

@final
class Credentials:
    """A Google credential source; its tokens live in the process-wide cache.

    Handles on the same key material share one cache. ``from_file`` reads the
    file; Application Default Credentials are resolved on first use.
    ``impersonate`` is a service account email or ``[delegate..., target]``.
    """

    @staticmethod
    def application_default(
        *, impersonate: _Chain = None, delegates: Sequence[str] = ...
    ) -> Credentials: ...
    @staticmethod
    def from_service_account_info(
        info: str,
        *,
        origin: str = ...,
        impersonate: _Chain = None,
        delegates: Sequence[str] = ...,
    ) -> Credentials:
        """``info`` is the key's JSON text; ``origin`` names it in errors
        (default ``"service_account_credential"``, ADK's field)."""

    @staticmethod
    def from_file(
        path: str, *, impersonate: _Chain = None, delegates: Sequence[str] = ...
    ) -> Credentials:
        """Any ADC JSON file: service_account, authorized_user, impersonated_service_account,
        external_account, external_account_authorized_user."""

    @property
    def identity(self) -> str:
        """A name for logs: the principal and a short keyed digest; no secret."""

    def resolve(self) -> SourceInfo:
        """Resolve (ADC discovery, may probe the metadata server); blocks this thread."""

    def id_token_request(self, audience: str) -> TokenRequest:
        """Bind an audience (validated now) for repeated lookups."""

    def access_token_request(self, scopes: Sequence[str]) -> TokenRequest: ...
    def signed_jwt_request(self, audience: str) -> TokenRequest:
        """A service-account JWT for ``audience`` (IAP), signed with the key or by IAM
        ``signJwt``; a source without a key must impersonate."""

    def cached_id_token(self, audience: str) -> Token | None:
        """The cached token if still valid, without I/O or await; in the
        refresh window it also starts one background refresh."""

    def cached_access_token(self, scopes: Sequence[str]) -> Token | None: ...
    def id_token(self, audience: str) -> Token:
        """Blocking (GIL released); served from the cache when fresh."""

    def access_token(self, scopes: Sequence[str]) -> Token: ...
    def id_token_async(self, audience: str) -> Coroutine[Token]:
        """A coroutine; never blocks the event loop; cached: done on its first step."""

    def access_token_async(self, scopes: Sequence[str]) -> Coroutine[Token]: ...

@final
class TokenRequest:
    """Credentials bound to one validated request: the hot path's handle."""

    def cached(self) -> Token | None:
        """The cached token if fresh; never waits."""

    def blocking(self) -> Token:
        """The token; waits on this thread (GIL released) only on a miss."""

    def token(self) -> Coroutine[Token]:
        """A coroutine for the token."""

    @property
    def kind(self) -> Literal["access", "id"]: ...
    @property
    def target(self) -> str | tuple[str, ...]:
        """The audience, or the sorted scopes."""

    @property
    def credentials(self) -> Credentials: ...

@final
class ModelKey:
    """The fields of ADK's credential model that decide a request, by name."""

    def __new__(
        cls,
        attribute: str,
        fields: Sequence[str],
        nested: str,
        nested_fields: Sequence[str],
    ) -> ModelKey: ...
    def key(self, credential: Any) -> tuple[Any, ...] | None:
        """The content key of ``credential``; ``None`` without ``credential.<attribute>``."""

@disjoint_base
class ServiceAccountExchanger:
    """ADK's ``BaseCredentialExchanger`` interface, implemented in Rust.

    ``exchanger.py`` subclasses it and supplies the four ADK-version-dependent
    callables; see there and ``src/bindings/exchanger.rs``.
    """

    def __new__(
        cls,
        request_key: ModelKey,
        read_request: Callable[[Any], TokenRequest | tuple[TokenRequest, str]],
        build_result: Callable[..., tuple[Any, Any]],
        wrap_error: Callable[[BaseException], BaseException],
    ) -> ServiceAccountExchanger: ...
    def exchange(
        self, auth_credential: Any, auth_scheme: Any = None
    ) -> _Coroutine[Any, Any, Any]: ...
    def ready_exchange(self, auth_credential: Any) -> Any | None:
        """The ``ExchangeResult`` when the token is cached, else ``None``; never waits."""

    def exchange_credential(self, auth_scheme: Any, auth_credential: Any = None) -> Any: ...

def impersonation_chain(
    impersonate: _Chain, delegates: Sequence[str] = ...
) -> tuple[str, list[str]] | None:
    """``(target, delegates)`` as the core reads ``impersonate=``/``delegates=``."""

def configure(
    *,
    connect_timeout: float | None = None,
    request_timeout: float | None = None,
    metadata_detect_timeout: float | None = None,
    refresh_window: float | None = None,
    max_attempts: int | None = None,
) -> None:
    """Process-wide settings (seconds). ``None`` leaves a setting unchanged."""

def clear_cache() -> None:
    """Forget every cached token, ADC resolution and remembered request."""

def reset_application_default() -> None:
    """Forget ADC resolutions (not tokens): discovery runs again on next use."""

@final
class TokenVerifier:
    """Checks Google-signed tokens for one policy (``src/verify``); see
    ``adk_token_exchange.server`` for the documented classes built on it."""

    def __new__(
        cls,
        preset: Literal["google_id_token", "iap"],
        audience: str | Sequence[str],
        *,
        leeway: float | None = None,
        emails: Sequence[str] = ...,
        domains: Sequence[str] = ...,
        trusted_front: bool = False,
        jwks_url: str | None = None,
    ) -> TokenVerifier: ...
    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; blocks (GIL released) only while keys are fetched."""

    def verify_async(self, token: str) -> Coroutine[dict[str, Any]]:
        """A coroutine for the verified claims; never blocks the event loop."""

    def cached_key_ids(self) -> list[str] | None:
        """The cached signing keys' ids; never fetches."""

    @property
    def preset(self) -> Literal["google_id_token", "iap"]: ...
    @property
    def audiences(self) -> list[str]: ...
    @property
    def leeway(self) -> float: ...
    @property
    def trusted_front(self) -> bool: ...
    @property
    def jwks_url(self) -> str: ...
    @property
    def allowed_emails(self) -> list[str] | None: ...
    @property
    def allowed_domains(self) -> list[str] | None: ...

def telemetry_counters() -> tuple[int, int, int, int, int]:
    """``(hits, misses, refreshes, fetches_ok, fetches_failed)`` since the process started."""

def set_fetch_observer(
    observer: Callable[[tuple[int, int, int, str, str, str, str | None]], object] | None,
) -> None:
    """Call ``observer(record)`` after every upstream fetch (``None`` removes it).

    ``record`` is ``(start_ns, end_ns, attempts, outcome, source_kind, token_kind,
    audience_origin)``; it never holds a token. The core queues records (at most
    1024) and delivers them on a Python thread that holds the GIL anyway: a loop
    resuming a coroutine, a blocking call returning, ``flush_fetch_records()``.
    ``adk_token_exchange._telemetry`` installs the OpenTelemetry one.
    """

def flush_fetch_records() -> None:
    """Deliver the queued fetch records to the observer, on this thread."""

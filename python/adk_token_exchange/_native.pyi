"""Stubs for the Rust core (``src/python.rs``). Checked by ``mypy.stubtest``."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, final

from typing_extensions import disjoint_base

__all__ = [
    "Credentials",
    "ServiceAccountExchanger",
    "SourceInfo",
    "Token",
    "__version__",
    "clear_cache",
    "configure",
]

__version__: str

@final
class Token:
    """A token and its expiry. ``repr`` never shows the value."""

    @property
    def value(self) -> str: ...
    @property
    def kind(self) -> Literal["access", "id"]: ...
    @property
    def expires_at(self) -> float:
        """Unix time in seconds."""

    @property
    def quota_project_id(self) -> str | None: ...

@final
class SourceInfo:
    """What a credential resolved to (for logs and ``doctor``); no secrets."""

    @property
    def kind(
        self,
    ) -> Literal[
        "service_account", "authorized_user", "impersonated_service_account", "metadata"
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

@final
class Credentials:
    """A Google credential source plus its token cache.

    Instances with the same identity share one cache per process. Creating one
    never does I/O; Application Default Credentials are resolved on first use.
    """

    @staticmethod
    def application_default(
        *, impersonate: str | None = None, delegates: Sequence[str] = ...
    ) -> Credentials: ...
    @staticmethod
    def from_service_account_info(
        info: str,
        *,
        origin: str = ...,
        impersonate: str | None = None,
        delegates: Sequence[str] = ...,
    ) -> Credentials:
        """``info`` is the key's JSON text; ``origin`` names it in errors
        (default ``"service_account_credential"``, ADK's field)."""

    @staticmethod
    def from_file(
        path: str, *, impersonate: str | None = None, delegates: Sequence[str] = ...
    ) -> Credentials:
        """Any ADC JSON file: service_account, authorized_user, impersonated_service_account."""

    @property
    def identity(self) -> str:
        """Stable cache identity; contains no secret."""

    def resolve(self) -> SourceInfo:
        """Resolve (ADC discovery, may probe the metadata server); blocks this thread."""

    def cached_id_token(self, audience: str) -> Token | None:
        """The cached token if still valid, without I/O or await; in the
        refresh window it also starts one background refresh."""

    def cached_access_token(self, scopes: Sequence[str]) -> Token | None: ...
    def id_token(self, audience: str) -> Token:
        """Blocking (GIL released); served from the cache when fresh."""

    def access_token(self, scopes: Sequence[str]) -> Token: ...
    def id_token_async(self, audience: str) -> Awaitable[Token]:
        """Never blocks the event loop; a fresh cached token completes at once."""

    def access_token_async(self, scopes: Sequence[str]) -> Awaitable[Token]: ...

@disjoint_base
class ServiceAccountExchanger:
    """ADK's ``BaseCredentialExchanger`` interface, implemented in Rust.

    ``exchanger.py`` subclasses it and supplies the three ADK-version-dependent
    callables; see there.
    """

    def __new__(
        cls,
        read_request: Callable[[Any], tuple[Credentials, bool, str | Sequence[str]]],
        build_result: Callable[[Token, Any], tuple[Any, Any]],
        wrap_error: Callable[[BaseException], BaseException],
    ) -> ServiceAccountExchanger: ...
    def exchange(self, auth_credential: Any, auth_scheme: Any = None) -> Awaitable[Any]: ...
    def exchange_credential(self, auth_scheme: Any, auth_credential: Any = None) -> Any: ...
    def clear_results(self) -> None:
        """Drop the requests parsed and results built so far (``clear_cache`` does)."""

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
    """Forget every cached token and resolved ADC (tests, ``doctor``)."""

"""Google tokens on any httpx client: ``IdTokenAuth``, ``AccessTokenAuth``, ``http_client_factory``.

For the roads that do not go through ADK's ``CredentialManager``: a
``RemoteA2aAgent`` given its own ``httpx.AsyncClient``, an MCP connection built
with ``StreamableHTTPConnectionParams(httpx_client_factory=...)``, or any
client of your own::

    from adk_token_exchange import IdTokenAuth, http_client_factory

    RemoteA2aAgent(
        name="helper",
        agent_card=f"{URL}/.well-known/agent-card.json",
        httpx_client=httpx.AsyncClient(auth=IdTokenAuth(URL)),
    )
    McpToolset(connection_params=StreamableHTTPConnectionParams(
        url=MCP_URL, httpx_client_factory=http_client_factory(IdTokenAuth(MCP_URL))))

Tokens come from the same process-wide cache as the exchanger: a fresh token
is put on the request without I/O, a miss awaits one shared fetch without
blocking the event loop (the sync flow waits on its own thread only), and the
token rotates under a long-lived client (or a pooled MCP session).

The classes subclass both ``httpx.Auth`` and ``httpx2.Auth`` (the mcp SDK 2.x
speaks its own major of httpx), whichever are installed. They pickle (Agent
Engine pickles agents) as their configuration: a pickle never holds a token,
and never a key: with an inline key, pickling refuses and says to pass the
key file's path.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from . import _native, errors
from ._request import AUDIENCE_REQUIRED, CLOUD_PLATFORM, origin_of

__all__ = ["AccessTokenAuth", "IapJwtAuth", "IdTokenAuth", "http_client_factory"]

Header = Literal["Authorization", "X-Serverless-Authorization", "Proxy-Authorization"]
_HEADERS: Final = ("Authorization", "X-Serverless-Authorization", "Proxy-Authorization")
KeySource = Mapping[str, Any] | str | os.PathLike[str] | None


def _auth_bases() -> tuple[type, ...]:
    """``httpx.Auth`` and ``httpx2.Auth``, whichever are installed."""
    bases = []
    for name in ("httpx", "httpx2"):
        try:
            bases.append(importlib.import_module(name).Auth)
        except ImportError:
            continue
    if not bases:
        raise ImportError("adk_token_exchange.httpx_auth needs httpx (pip install httpx)")
    return tuple(bases)


if TYPE_CHECKING:
    import httpx

    _AuthBase = httpx.Auth
else:
    _AuthBase = type("_AuthBase", _auth_bases(), {"__module__": __name__})


def _credentials(
    service_account_key: KeySource,
    impersonate: str | Sequence[str] | None,
    delegates: Sequence[str],
) -> _native.Credentials:
    chain: str | list[str] | None = (
        impersonate if impersonate is None or isinstance(impersonate, str) else list(impersonate)
    )
    if service_account_key is None:
        return _native.Credentials.application_default(impersonate=chain, delegates=list(delegates))
    if isinstance(service_account_key, Mapping):
        info = json.dumps(dict(service_account_key))
    elif isinstance(service_account_key, str) and service_account_key.lstrip().startswith("{"):
        info = service_account_key
    elif isinstance(service_account_key, (str, os.PathLike)):
        return _native.Credentials.from_file(
            os.fspath(service_account_key), impersonate=chain, delegates=list(delegates)
        )
    else:
        raise errors.ConfigurationError(
            "service_account_key must be a dict, the key's JSON text, or a file path,"
            f" not {type(service_account_key).__name__}"
        )
    return _native.Credentials.from_service_account_info(
        info, origin="service_account_key", impersonate=chain, delegates=list(delegates)
    )


class _GoogleAuth(_AuthBase):
    """The flows shared by both classes: one header, the token from the core's cache."""

    _request: _native.TokenRequest
    _header: str
    _state: dict[str, Any]

    def _setup(self, header: str, state: dict[str, Any]) -> None:
        if header not in _HEADERS:
            raise errors.ConfigurationError(
                f"header must be one of {', '.join(_HEADERS)}, not {header!r}: Authorization"
                " for most services, X-Serverless-Authorization for Cloud Run (it leaves"
                " Authorization to the service), Proxy-Authorization for IAP"
            )
        self._header = header
        self._state = state
        self._request = self._token_request()

    def _token_request(self) -> _native.TokenRequest:
        raise NotImplementedError

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """httpx's synchronous flow: blocks this thread only on a cache miss."""
        token = self._request.cached() or self._request.blocking()
        request.headers[self._header] = "Bearer " + token.value
        yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """httpx's async flow: a fresh token without awaiting; a miss never blocks the loop."""
        token = self._request.cached()
        if token is None:
            token = await self._request.token()
        request.headers[self._header] = "Bearer " + token.value
        yield request

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        return self.sync_auth_flow(request)

    @property
    def header(self) -> str:
        """The header the token goes in."""
        return self._header

    def __getstate__(self) -> dict[str, Any]:
        key = self._state.get("service_account_key")
        inline = isinstance(key, Mapping) or (isinstance(key, str) and key.lstrip().startswith("{"))
        if inline:
            raise TypeError(
                f"{type(self).__name__} with an inline service_account_key cannot be pickled:"
                " the pickle would carry the private key. Pass the key file's path"
                " (service_account_key='/secrets/key.json'), or use Application Default"
                " Credentials, and it pickles as its configuration"
            )
        state = dict(self._state)
        if key is not None:
            state["service_account_key"] = os.fspath(key)
        return {"header": self._header, "state": state}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        self._setup(pickled["header"], pickled["state"])

    def __repr__(self) -> str:
        target = self._request.target
        return f"{type(self).__name__}({target!r}, header={self._header!r})"


class IdTokenAuth(_GoogleAuth):
    """An OIDC ID token for ``audience`` on every request (Cloud Run, Cloud Functions, IAP).

    For Cloud Run and Cloud Functions targets (a remote A2A agent, an MCP
    server): ``audience`` is the service URL. For IAP: the IAP OAuth client
    id (or see :class:`IapJwtAuth`). Agent Engine and other Google APIs take
    access tokens instead: :class:`AccessTokenAuth`.

    Args:
      audience: The receiving service. A URL such as
        ``https://svc-xyz.a.run.app/mcp`` becomes its origin (what Cloud Run
        checks ``aud`` against); anything else (an IAP OAuth client id, a
        custom audience) is used verbatim, as is a URL with ``exact=True``.
      service_account_key: A key as a dict or its JSON text, or the path of
        any credentials file; ``None`` for Application Default Credentials.
      impersonate: A service account email to mint the token as, or
        ``[delegate, ..., target]``.
      delegates: The delegation chain, as an alternative to listing it in
        ``impersonate``.
      exact: Use a URL ``audience`` verbatim.
      header: ``"Authorization"``; ``"X-Serverless-Authorization"`` on Cloud
        Run when the service does its own auth with ``Authorization`` (Cloud
        Run checks this one and leaves ``Authorization`` alone);
        ``"Proxy-Authorization"`` for IAP.

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """

    def __init__(
        self,
        audience: str,
        *,
        service_account_key: KeySource = None,
        impersonate: str | Sequence[str] | None = None,
        delegates: Sequence[str] = (),
        exact: bool = False,
        header: Header = "Authorization",
    ) -> None:
        if not isinstance(audience, str) or not audience.strip():
            raise errors.ConfigurationError(AUDIENCE_REQUIRED)
        self._setup(
            header,
            {
                "audience": audience,
                "exact": exact,
                "service_account_key": service_account_key,
                "impersonate": impersonate,
                "delegates": tuple(delegates),
            },
        )

    def _token_request(self) -> _native.TokenRequest:
        s = self._state
        audience = s["audience"] if s["exact"] else origin_of(s["audience"])
        credentials = _credentials(s["service_account_key"], s["impersonate"], s["delegates"])
        return credentials.id_token_request(audience)

    @property
    def audience(self) -> str:
        """The ``aud`` the token is minted for."""
        return str(self._request.target)


class AccessTokenAuth(_GoogleAuth):
    """An OAuth2 access token for ``scopes`` on every request (Google APIs, Agent Engine).

    A remote agent on Agent Engine (``…aiplatform.googleapis.com``) wants this,
    not an ID token. Arguments as :class:`IdTokenAuth`, with ``scopes``
    instead of an audience.
    """

    def __init__(
        self,
        scopes: Sequence[str] | str = (CLOUD_PLATFORM,),
        *,
        service_account_key: KeySource = None,
        impersonate: str | Sequence[str] | None = None,
        delegates: Sequence[str] = (),
        header: Header = "Authorization",
    ) -> None:
        scope_list = [scopes] if isinstance(scopes, str) else list(scopes)
        if not scope_list or not all(isinstance(s, str) and s for s in scope_list):
            raise errors.ConfigurationError(
                f"scopes must be a non-empty list of OAuth scopes, e.g. [{CLOUD_PLATFORM!r}]"
            )
        self._setup(
            header,
            {
                "scopes": tuple(scope_list),
                "service_account_key": service_account_key,
                "impersonate": impersonate,
                "delegates": tuple(delegates),
            },
        )

    def _token_request(self) -> _native.TokenRequest:
        s = self._state
        credentials = _credentials(s["service_account_key"], s["impersonate"], s["delegates"])
        return credentials.access_token_request(list(s["scopes"]))


class IapJwtAuth(_GoogleAuth):
    """A service-account JWT for an IAP-protected ``url`` on every request.

    IAP's programmatic access without an OAuth client id: a JWT the service
    account signs itself, ``iss`` = ``sub`` = its email, ``aud`` =
    ``{url}/*`` (every path under ``url``), one hour. Signed locally when the
    credentials are a service account key (no network), otherwise by IAM
    Credentials ``signJwt`` as the service account in ``impersonate`` (the
    caller needs Service Account Token Creator on it). Cached and refreshed
    ahead like every other token. The account needs "IAP-secured Web App
    User" on the resource.

    Args:
      url: The IAP-protected resource; ``aud`` becomes ``url`` without a
        trailing ``/`` or ``/*``, plus ``/*``. With ``exact=True``, ``url`` is
        the ``aud`` verbatim.
      service_account_key, impersonate, delegates, header: As in
        :class:`IdTokenAuth` (a gcloud login or the metadata server must
        ``impersonate`` the signing account).

    Raises:
      ConfigurationError: An argument is unusable (the message says which).
    """

    def __init__(
        self,
        url: str,
        *,
        service_account_key: KeySource = None,
        impersonate: str | Sequence[str] | None = None,
        delegates: Sequence[str] = (),
        exact: bool = False,
        header: Header = "Authorization",
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise errors.ConfigurationError(
                "url is required: the IAP-protected resource (e.g. 'https://app.example.com')"
            )
        self._setup(
            header,
            {
                "url": url,
                "exact": exact,
                "service_account_key": service_account_key,
                "impersonate": impersonate,
                "delegates": tuple(delegates),
            },
        )

    def _token_request(self) -> _native.TokenRequest:
        s = self._state
        credentials = _credentials(s["service_account_key"], s["impersonate"], s["delegates"])
        return credentials.signed_jwt_request(iap_jwt_audience(s["url"], exact=s["exact"]))

    @property
    def audience(self) -> str:
        """The ``aud`` the JWT is signed for."""
        return str(self._request.target)


def iap_jwt_audience(url: str, *, exact: bool = False) -> str:
    """The ``aud`` of a service-account JWT for IAP: ``{url}/*``, unless ``exact``."""
    if exact:
        return url
    base = url.strip()
    while base.endswith(("/*", "/")):
        base = base.removesuffix("/*").removesuffix("/")
    return f"{base}/*"


class _Chained(_AuthBase):
    """Ours, then the auth the MCP transport passed (its own OAuth, say)."""

    def __init__(self, first: _GoogleAuth, then: Any) -> None:
        self._first = first
        self._then = then

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        token = self._first._request.cached()
        if token is None:
            token = await self._first._request.token()
        request.headers[self._first.header] = "Bearer " + token.value
        flow = self._then.async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                response = yield outgoing
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()


def http_client_factory(auth: _GoogleAuth) -> Callable[..., Any]:
    """An mcp SDK ``McpHttpClientFactory`` whose clients authenticate with ``auth``.

    For ``StreamableHTTPConnectionParams(url=..., httpx_client_factory=...)``:
    the token rotates under one pooled MCP session, where an
    ``auth_credential`` would change the session's headers (ADK pools MCP
    sessions by a hash of them) and open a new session per token. The client
    is the flavour the installed mcp SDK uses (httpx2 for mcp 2.x, httpx for
    1.x), with the SDK's own default timeouts. An ``auth`` the transport
    passes (MCP OAuth) runs after ours.

    ADK 2.x replaces the factory with its own mTLS transport when a client
    certificate is configured (Agent Identity) and
    ``GOOGLE_API_USE_CLIENT_CERTIFICATE`` is unset or ``true``; this warns
    once when that would happen: set it to ``false``.
    """
    if not isinstance(auth, _GoogleAuth):
        raise errors.ConfigurationError(
            "http_client_factory takes an IdTokenAuth or AccessTokenAuth, not"
            f" {type(auth).__name__}"
        )
    from mcp.shared._httpx_utils import create_mcp_http_client

    from ._workload import warn_if_adk_replaces_factory

    # ADK 2.x swaps the factory for its own mTLS transport where a client
    # certificate is configured (Agent Identity): say so now, not as a 401.
    warn_if_adk_replaces_factory()
    ours = auth

    def factory(
        headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
    ) -> Any:
        used = ours if auth is None else _Chained(ours, auth)
        return create_mcp_http_client(headers=headers, timeout=timeout, auth=cast(Any, used))

    return factory

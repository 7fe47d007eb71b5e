"""Services that check Google tokens like Cloud Run does, for end-to-end agent tests.

- :class:`ProtectedMcpServer`: an MCP server (streamable HTTP at ``/mcp``)
  behind Cloud Run's "Require authentication": only an ID token signed by
  Google (here: the :class:`~.GoogleEmulator`) whose ``aud`` is the service
  URL gets through
  (https://cloud.google.com/run/docs/authenticating/service-to-service).
- :class:`ProtectedRestServer`: an OpenAPI 3 REST API that, like Google APIs,
  takes only OAuth 2.0 access tokens.

Both run uvicorn on ``127.0.0.1`` (ephemeral port) in a background thread and
record every authorization decision.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from ._mcp_compat import CALLER_STATE_KEY, build_mcp_app
from .app_side import AppAuthorization, McpSessionLog
from .emulator import CLOUD_PLATFORM_SCOPE, GoogleEmulator, InvalidIdToken

__all__ = [
    "SIGNATURE_REMOVED",
    "AuthDecision",
    "ProtectedMcpServer",
    "ProtectedRestServer",
    "strip_signature",
]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
_ServerT = TypeVar("_ServerT", bound="_ProtectedServer")


@dataclass(frozen=True)
class AuthDecision:
    """One request's authorization outcome at a protected server."""

    accepted: bool
    status: int
    """HTTP status the gate answered with (200 when passed on to the app)."""
    reason: str
    """``"ok"``, or why it was refused (``"missing bearer token"``, ``"expired"``, …)."""
    method: str
    path: str
    audience: str | None
    """``aud`` of the presented ID token, when it had one."""
    email: str | None
    """Verified principal (ID token ``email``/``sub``, or access token principal)."""
    time: float
    """``time.time()`` of the decision."""
    header: str | None = None
    """The header the checked token came in (``authorization``,
    ``x-serverless-authorization``, ``proxy-authorization``), if any."""


@dataclass(frozen=True)
class _Verdict:
    accepted: bool
    status: int
    reason: str
    audience: str | None = None
    email: str | None = None
    challenge: str | None = None
    """``WWW-Authenticate`` for a refusal (RFC 6750 §3); 401s get ``invalid_token``."""


class _BearerGate:
    """ASGI middleware: authorize every HTTP request, record it, refuse with 401/403."""

    def __init__(
        self,
        app: _ASGIApp,
        verify: Callable[[str | None], _Verdict],
        record: Callable[[AuthDecision], None],
        public_paths: Iterable[str] = (),
        *,
        token_headers: tuple[bytes, ...] = (b"authorization",),
        strip_signature: bool = False,
        refusal_headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self._app = app
        self._verify = verify
        self._record = record
        self._public = frozenset(public_paths)
        # The first of these headers present carries the token (Cloud Run:
        # X-Serverless-Authorization, then Authorization; IAP: Proxy-Authorization
        # first); the others pass to the app untouched.
        self._token_headers = token_headers
        self._strip_signature = strip_signature
        self._refusal_headers = refusal_headers

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._public:
            await self._app(scope, receive, send)
            return
        present = {
            name.lower(): value
            for name, value in scope.get("headers", [])
            if name.lower() in self._token_headers
        }
        token = header = None
        for name in self._token_headers:
            if name in present:
                header = name
                auth_scheme, _, credentials = present[name].decode("latin-1").partition(" ")
                if auth_scheme.lower() == "bearer" and credentials.strip():
                    token = credentials.strip()
                break
        verdict = self._verify(token)
        self._record(
            AuthDecision(
                accepted=verdict.accepted,
                status=200 if verdict.accepted else verdict.status,
                reason=verdict.reason,
                method=str(scope.get("method", "")),
                path=str(scope.get("path", "")),
                audience=verdict.audience,
                email=verdict.email,
                time=time.time(),
                header=None if header is None else header.decode("latin-1"),
            )
        )
        if verdict.accepted:
            scope = dict(scope)
            scope["state"] = {**(scope.get("state") or {}), CALLER_STATE_KEY: verdict.email}
            if self._strip_signature and header is not None and token is not None:
                # Cloud Run forwards the token it checked without its signature.
                forwarded = f"Bearer {strip_signature(token)}".encode("latin-1")
                scope["headers"] = [
                    (name, forwarded if name.lower() == header else value)
                    for name, value in scope.get("headers", [])
                ]
            if header == b"proxy-authorization":
                # The proxy consumed it: Google's front ends drop Proxy-Authorization
                # (documented for Cloud Functions; inferred for IAP).
                scope["headers"] = [
                    (name, value)
                    for name, value in scope.get("headers", [])
                    if name.lower() != header
                ]
            await self._app(scope, receive, send)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *self._refusal_headers]
        challenge = verdict.challenge
        if challenge is None and verdict.status == 401:
            challenge = f'Bearer error="invalid_token", error_description="{verdict.reason}"'
        if challenge is not None:
            headers.append((b"www-authenticate", challenge.encode()))
        body = b"Unauthorized" if verdict.status == 401 else b"Forbidden"
        headers.append((b"content-length", str(len(body)).encode()))
        # Drain the request body so the client's keep-alive connection stays usable.
        message = await receive() if scope.get("method") in ("POST", "PUT", "PATCH") else {}
        while message.get("more_body"):
            message = await receive()
        await send(
            {
                "type": "http.response.start",
                "status": verdict.status,
                "headers": headers,
            }
        )
        await send({"type": "http.response.body", "body": body})


class _UvicornThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1:0 from a background thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        return self._server is not None

    def bind(self) -> int:
        """Bind ``127.0.0.1:0`` now (an app that names its own URL needs the port)."""
        if self._socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self._socket = sock
            self.port = sock.getsockname()[1]
        return self.port

    def start(self, app: _ASGIApp) -> None:
        import uvicorn

        self.bind()
        sock = self._socket
        assert sock is not None
        config = uvicorn.Config(
            app,
            loop="asyncio",
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"{self._name}:{self.port}",
            daemon=True,
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} failed to start")
            time.sleep(0.005)

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(10)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(5)
        if sock is not None:
            sock.close()


class _ProtectedServer:
    """Shared lifecycle and decision records."""

    _kind = "server"

    def __init__(self, emulator: GoogleEmulator) -> None:
        self.emulator = emulator
        self._runner = _UvicornThread(type(self).__name__)
        self._decisions: list[AuthDecision] = []
        self._lock = threading.Lock()

    def _build_app(self) -> _ASGIApp:
        raise NotImplementedError

    def start(self: _ServerT) -> _ServerT:
        """Serve on ``127.0.0.1`` (ephemeral port) in a background thread; returns ``self``."""
        if not self._runner.running:
            self._runner.bind()
            self._runner.start(self._build_app())
        return self

    def __enter__(self: _ServerT) -> _ServerT:
        return self.start()

    def stop(self) -> None:
        """Stop serving (open streams get a short grace period)."""
        self._runner.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if not self._runner.port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._runner.port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def decisions(self) -> list[AuthDecision]:
        """A copy of every authorization decision, in order."""
        with self._lock:
            return list(self._decisions)

    def count(self, accepted: bool | None = None) -> int:
        """Requests seen (only accepted or only refused ones, if given)."""
        with self._lock:
            return sum(1 for d in self._decisions if accepted is None or d.accepted == accepted)

    def reset_counts(self) -> None:
        """Forget recorded decisions."""
        with self._lock:
            self._decisions.clear()

    def _record(self, decision: AuthDecision) -> None:
        with self._lock:
            self._decisions.append(decision)


class ProtectedMcpServer(_ProtectedServer):
    """An MCP server behind Cloud Run's "Require authentication", for mcp 1.x and 2.x.

    Tools: ``whoami()`` returns the verified caller's email; ``greet(name)``
    greets and names the caller. Requests without ``Authorization: Bearer
    <Google-signed ID token>`` whose ``aud`` is :attr:`audience` (or one of
    ``extra_audiences``) get 401 with ``WWW-Authenticate: Bearer``; an access
    token is refused the same way. With ``allowed_invokers``, a valid token of
    anyone else gets 403, as without ``roles/run.invoker``.

    As on Cloud Run, the token may come in ``X-Serverless-Authorization``
    instead; when it does, that one is checked and ``Authorization`` is left
    to the app (see ``app_token``). The checked header is forwarded with its
    signature replaced by ``SIGNATURE_REMOVED_BY_GOOGLE``. :attr:`sessions`
    counts the MCP sessions clients open; :attr:`app` records what reached
    the app.

    Args:
        emulator: Whose signing key makes an ID token valid.
        extra_audiences: Also accepted ``aud`` values: Cloud Run custom
            audiences, or an OAuth client id such as
            :data:`~.emulator.GCLOUD_CLIENT_ID` for developer tokens.
        allowed_invokers: Emails allowed to call; ``None`` allows every
            verified caller.
        stateless: Serve MCP statelessly (no session id), as on a
            multi-instance Cloud Run service.
        json_response: Answer POSTs with JSON instead of an SSE stream.
        app_token: The app does its own auth too: behind the gate it requires
            ``Authorization: Bearer <app_token>`` (as an MCP server with its
            own OAuth would), so the Google token must come in
            ``X-Serverless-Authorization``.
    """

    _token_headers: tuple[bytes, ...] = (b"x-serverless-authorization", b"authorization")
    _strip_signature = True
    _refusal_headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(
        self,
        emulator: GoogleEmulator,
        *,
        extra_audiences: Iterable[str] = (),
        allowed_invokers: Iterable[str] | None = None,
        stateless: bool = True,
        json_response: bool = False,
        name: str = "protected-mcp",
        app_token: str | None = None,
    ) -> None:
        super().__init__(emulator)
        self.extra_audiences = list(extra_audiences)
        self.allowed_invokers = None if allowed_invokers is None else set(allowed_invokers)
        self._stateless = stateless
        self._json_response = json_response
        self._name = name
        self.sessions = McpSessionLog()
        """MCP sessions opened at the app (``initialize`` requests)."""
        self.app = AppAuthorization(app_token)
        """What reached the app behind the gate, and its own auth check."""

    @property
    def url(self) -> str:
        """The MCP endpoint, ``http://127.0.0.1:PORT/mcp``."""
        return f"{self.origin}/mcp"

    @property
    def audience(self) -> str:
        """The ``aud`` Cloud Run expects: the service URL's origin."""
        return self.origin

    def _inner_app(self) -> _ASGIApp:
        """The service behind the gate: the MCP app, its sessions counted."""
        app = build_mcp_app(
            self._name, stateless=self._stateless, json_response=self._json_response
        )
        return self.sessions.wrap(app)

    def _build_app(self) -> _ASGIApp:
        return _BearerGate(
            self.app.wrap(self._inner_app()),
            self._verify,
            self._record,
            token_headers=self._token_headers,
            strip_signature=self._strip_signature,
            refusal_headers=self._refusal_headers,
        )

    def _verify(self, token: str | None) -> _Verdict:
        if token is None:
            return _Verdict(False, 401, "missing bearer token")
        try:
            claims = self.emulator.verify_id_token(token, [self.audience, *self.extra_audiences])
        except InvalidIdToken as exc:
            return _Verdict(False, 401, exc.reason, _unverified_audience(token))
        audience = str(claims["aud"])
        email = str(claims.get("email") or claims.get("sub"))
        if self.allowed_invokers is not None and email not in self.allowed_invokers:
            return _Verdict(False, 403, "caller is not an invoker", audience, email)
        return _Verdict(True, 200, "ok", audience, email)


class ProtectedRestServer(_ProtectedServer):
    """A small OpenAPI 3 REST service that, like Google APIs, takes access tokens only.

    ``GET /openapi.json`` (public) serves the spec, with an HTTP bearer security
    scheme and :attr:`origin` as its server. ``GET /v1/projects/{project}/greeting``
    needs ``Authorization: Bearer <access token issued by the emulator>``,
    unexpired and carrying ``required_scope``: else 401 (403 for a missing
    scope). ID tokens are refused.
    """

    def __init__(
        self, emulator: GoogleEmulator, *, required_scope: str = CLOUD_PLATFORM_SCOPE
    ) -> None:
        super().__init__(emulator)
        self.required_scope = required_scope

    @property
    def url(self) -> str:
        """The API's base URL (its origin)."""
        return self.origin

    @property
    def spec_url(self) -> str:
        """Where the OpenAPI document is served."""
        return f"{self.origin}/openapi.json"

    def openapi_spec(self) -> dict[str, Any]:
        """The OpenAPI 3 document (the server must be started: it names its URL)."""
        return {
            "openapi": "3.0.3",
            "info": {"title": "Greeting API", "version": "1.0.0"},
            "servers": [{"url": self.origin}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
            "paths": {
                "/v1/projects/{project}/greeting": {
                    "get": {
                        "operationId": "getGreeting",
                        "summary": "Greets the caller on behalf of a project.",
                        "parameters": [
                            {
                                "name": "project",
                                "in": "path",
                                "required": True,
                                "description": "Project id.",
                                "schema": {"type": "string"},
                            }
                        ],
                        "responses": {
                            "200": {
                                "description": "The greeting and who asked.",
                                "content": {
                                    "application/json": {
                                        "schema": {
                                            "type": "object",
                                            "properties": {
                                                "greeting": {"type": "string"},
                                                "caller": {"type": "string"},
                                            },
                                        }
                                    }
                                },
                            },
                            "401": {"description": "Missing or invalid access token."},
                            "403": {"description": "Token lacks the required scope."},
                        },
                    }
                }
            },
        }

    def _build_app(self) -> _ASGIApp:
        return _BearerGate(self._app, self._verify, self._record, public_paths=["/openapi.json"])

    async def _app(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = str(scope["path"])
        parts = path.strip("/").split("/")
        if scope["method"] == "GET" and path == "/openapi.json":
            await _send_json(send, 200, self.openapi_spec())
        elif (
            scope["method"] == "GET"
            and len(parts) == 4
            and parts[0] == "v1"
            and parts[1] == "projects"
            and parts[3] == "greeting"
        ):
            caller = (scope.get("state") or {}).get(CALLER_STATE_KEY)
            greeting = {"greeting": f"Hello from {parts[2]}!", "caller": caller}
            await _send_json(send, 200, greeting)
        else:
            await _send_json(send, 404, {"error": {"code": 404, "message": "Not found."}})

    def _verify(self, token: str | None) -> _Verdict:
        if token is None:
            return _Verdict(False, 401, "missing bearer token")
        info = self.emulator.access_token_info(token)
        if info is None:
            audience = _unverified_audience(token)
            reason = "an ID token, not an access token" if audience else "unknown access token"
            return _Verdict(False, 401, reason, audience)
        if info.expired:
            return _Verdict(False, 401, "expired", email=info.principal)
        if not info.has_scope(self.required_scope):
            challenge = f'Bearer error="insufficient_scope", scope="{self.required_scope}"'
            return _Verdict(
                False, 403, "insufficient scope", email=info.principal, challenge=challenge
            )
        return _Verdict(True, 200, "ok", email=info.principal)


async def _send_json(send: _Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
"""What Cloud Run puts in place of the signature of a token it verified and forwards."""


def strip_signature(token: str) -> str:
    """``header.payload.SIGNATURE_REMOVED_BY_GOOGLE``: the token as Cloud Run forwards it,
    readable by the service but never valid again."""
    head, _, rest = token.partition(".")
    payload = rest.partition(".")[0]
    return f"{head}.{payload}.{SIGNATURE_REMOVED}"


def _unverified_audience(token: str) -> str | None:
    """The ``aud`` a JWT claims, for the record (never for a decision)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    audience = claims.get("aud")
    return audience if isinstance(audience, str) else None

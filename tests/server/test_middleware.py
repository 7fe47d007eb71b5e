"""GoogleAuthMiddleware in a Starlette app: who gets through, and what the others are told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from adk_token_exchange.errors import ConfigurationError
from adk_token_exchange.server import GoogleAuthMiddleware, IapVerifier, IdTokenVerifier
from adk_token_exchange.testing import GoogleEmulator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

SERVICE = "https://svc-xyz.a.run.app"
CALLER = "agent@proj.iam.gserviceaccount.com"
IAP_AUDIENCE = "/projects/123456789012/apps/my-project"


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"caller": request.state.google_claims["email"]})


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.scope["state"]["google_claims"]["email"])
    await websocket.close()


def app(verifier: IdTokenVerifier | IapVerifier, **options: Any) -> Starlette:
    routes = [Route("/whoami", whoami), Route("/healthz", healthz), WebSocketRoute("/ws", echo)]
    application = Starlette(routes=routes)
    application.add_middleware(
        GoogleAuthMiddleware, verifier=verifier, public_paths=["/healthz"], **options
    )
    return application


@pytest.fixture
async def client(emulator: GoogleEmulator) -> AsyncIterator[httpx.AsyncClient]:
    verifier = IdTokenVerifier(SERVICE, emails=[CALLER], jwks_url=emulator.jwks_url)
    transport = httpx.ASGITransport(app=app(verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_caller_with_a_valid_token_reaches_the_app_with_its_claims(
    emulator: GoogleEmulator, client: httpx.AsyncClient
) -> None:
    token = emulator.issue_id_token(SERVICE, email=CALLER)

    response = await client.get("/whoami", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {"caller": CALLER}


async def test_a_request_without_a_token_gets_401_with_a_bare_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/whoami")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"  # RFC 6750 §3.1: no error code


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"exp": 1}, "token expired"),
        ({"aud": "https://other.a.run.app"}, "wrong audience"),
    ],
)
async def test_an_invalid_token_gets_401_invalid_token_saying_why_but_not_more(
    emulator: GoogleEmulator,
    client: httpx.AsyncClient,
    claims: dict[str, Any],
    description: str,
) -> None:
    aud = claims.pop("aud", SERVICE)
    token = emulator.issue_id_token(aud, email=CALLER, claims=claims)

    response = await client.get("/whoami", headers=bearer(token))

    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge == f'Bearer error="invalid_token", error_description="{description}"'
    assert SERVICE not in response.text, "the expected audience is not disclosed"


async def test_a_valid_caller_not_on_the_allow_list_gets_403(
    emulator: GoogleEmulator, client: httpx.AsyncClient
) -> None:
    token = emulator.issue_id_token(SERVICE, email="mallory@proj.iam.gserviceaccount.com")

    response = await client.get("/whoami", headers=bearer(token))

    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_public_paths_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"


async def test_unreachable_signing_keys_are_503_not_the_callers_fault(
    emulator: GoogleEmulator, client: httpx.AsyncClient
) -> None:
    emulator.fail_next(100, status=503, endpoint="certs")
    token = emulator.issue_id_token(SERVICE, email=CALLER)

    response = await client.get("/whoami", headers=bearer(token))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
    ],
    ids=["not-bearer", "two-headers"],
)
async def test_a_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, headers: list[tuple[str, str]]
) -> None:
    response = await client.get("/whoami", headers=httpx.Headers(headers))

    assert response.status_code == 401


async def test_x_serverless_authorization_can_carry_the_token(emulator: GoogleEmulator) -> None:
    verifier = IdTokenVerifier(SERVICE, jwks_url=emulator.jwks_url)
    transport = httpx.ASGITransport(app=app(verifier, header="X-Serverless-Authorization"))
    token = emulator.issue_id_token(SERVICE, email=CALLER)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        ok = await c.get("/whoami", headers={"X-Serverless-Authorization": f"Bearer {token}"})
        wrong_header = await c.get("/whoami", headers=bearer(token))

    assert ok.json() == {"caller": CALLER}
    assert wrong_header.status_code == 401


async def test_behind_iap_the_signed_header_is_verified(emulator: GoogleEmulator) -> None:
    verifier = IapVerifier(IAP_AUDIENCE, jwks_url=emulator.iap_jwks_url)
    transport = httpx.ASGITransport(app=app(verifier))
    assertion = emulator.issue_iap_assertion(IAP_AUDIENCE, email="ann@corp.example")
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        ok = await c.get("/whoami", headers={"x-goog-iap-jwt-assertion": assertion})
        bypassed = await c.get("/whoami")

    assert ok.json() == {"caller": "ann@corp.example"}
    assert bypassed.status_code == 401, "a request that did not come through IAP"


def stripped(token: str) -> str:
    return token.rsplit(".", 1)[0] + ".SIGNATURE_REMOVED_BY_GOOGLE"


async def test_behind_cloud_run_a_stripped_token_is_trusted_only_from_the_header_it_checked(
    emulator: GoogleEmulator,
) -> None:
    verifier = IdTokenVerifier(SERVICE, trusted_front=True, jwks_url=emulator.jwks_url)
    transport = httpx.ASGITransport(app=app(verifier))
    caller = stripped(emulator.issue_id_token(SERVICE, email=CALLER))
    forged = stripped(emulator.issue_id_token(SERVICE, email="admin@corp.example"))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        # Cloud Run verified Authorization (no X-Serverless-Authorization sent).
        plain = await c.get("/whoami", headers=bearer(caller))
        # Cloud Run verified X-Serverless-Authorization; Authorization is the caller's own
        # text, here a forged stripped token: it must not be what the app sees.
        both = await c.get(
            "/whoami",
            headers={"X-Serverless-Authorization": f"Bearer {caller}", **bearer(forged)},
        )

    assert plain.json() == {"caller": CALLER}
    assert both.json() == {"caller": CALLER}


def test_a_header_with_a_trusted_front_or_an_unknown_header_is_a_configuration_error(
    emulator: GoogleEmulator,
) -> None:
    front = IdTokenVerifier(SERVICE, trusted_front=True, jwks_url=emulator.jwks_url)
    with pytest.raises(ConfigurationError, match="leave it unset"):
        GoogleAuthMiddleware(healthz, front, header="Authorization")  # type: ignore[arg-type]
    plain = IdTokenVerifier(SERVICE, jwks_url=emulator.jwks_url)
    with pytest.raises(ConfigurationError, match="expected"):
        GoogleAuthMiddleware(healthz, plain, header="X-Api-Key")  # type: ignore[arg-type]


def test_websockets_are_checked_too(emulator: GoogleEmulator) -> None:
    verifier = IdTokenVerifier(SERVICE, jwks_url=emulator.jwks_url)
    token = emulator.issue_id_token(SERVICE, email=CALLER)
    with TestClient(app(verifier)) as client:
        with client.websocket_connect("/ws", headers=bearer(token)) as ws:
            assert ws.receive_text() == CALLER
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
            pass

    assert refused.value.code == 1008

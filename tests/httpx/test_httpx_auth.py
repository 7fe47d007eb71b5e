"""``IdTokenAuth`` / ``AccessTokenAuth`` / ``IapJwtAuth`` on httpx (and httpx2) clients.

A client with our auth is what a ``RemoteA2aAgent(httpx_client=...)`` or an
MCP ``httpx_client_factory`` holds: tokens come from the core's cache (no I/O
when warm, one shared fetch when cold), a miss never blocks the event loop,
and the auth pickles as its configuration (Agent Engine pickles agents).
Requests go to an ``httpx.MockTransport`` that records what it was sent; the
tokens come from the emulator and are checked as the receiving service would.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from adk_token_exchange import AccessTokenAuth, IapJwtAuth, IdTokenAuth, errors
from adk_token_exchange.testing import GoogleEmulator
from support.measure import join_all

SERVICE = "https://mcp-abc123-uc.a.run.app"


class Recorder:
    """A transport that answers 200 and keeps each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: Any) -> Any:
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        module = importlib.import_module(type(request).__module__.split(".")[0])
        return module.Response(200, json={"ok": True})

    def bearer(self, index: int = -1, header: str = "authorization") -> str:
        scheme, _, token = self.headers[index][header].partition(" ")
        assert scheme == "Bearer"
        return token


def _flavours() -> list[Any]:
    found = [pytest.param(httpx, id="httpx")]
    try:
        found.append(pytest.param(importlib.import_module("httpx2"), id="httpx2"))
    except ImportError:
        found.append(
            pytest.param(None, id="httpx2", marks=pytest.mark.skip(reason="httpx2 not installed"))
        )
    return found


FLAVOURS = _flavours()


def key_file(emulator: GoogleEmulator, tmp_path: Path) -> tuple[dict[str, str], Path]:
    key = emulator.service_account_info()
    return key, emulator.write_json(tmp_path, "key.json", key)


# --------------------------------------------------------------------------
# Sync and async flows, both httpx majors


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sync_client_sends_an_id_token_for_the_service_origin(
    emulator: GoogleEmulator, tmp_path: Path, flavour: Any
) -> None:
    key, path = key_file(emulator, tmp_path)
    recorder = Recorder()
    with flavour.Client(transport=flavour.MockTransport(recorder)) as client:
        client.get(f"{SERVICE}/mcp", auth=IdTokenAuth(f"{SERVICE}/mcp", service_account_key=path))

    claims = emulator.verify_id_token(recorder.bearer(), SERVICE)
    assert claims["email"] == key["client_email"]


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_async_client_sends_an_id_token_for_the_service_origin(
    emulator: GoogleEmulator, tmp_path: Path, flavour: Any
) -> None:
    key, path = key_file(emulator, tmp_path)
    recorder = Recorder()
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    async with flavour.AsyncClient(auth=auth, transport=flavour.MockTransport(recorder)) as client:
        await client.get(f"{SERVICE}/mcp")
        await client.post(f"{SERVICE}/mcp", json={})

    assert recorder.bearer(0) == recorder.bearer(1), "the same token until near expiry"
    assert emulator.verify_id_token(recorder.bearer(), SERVICE)["email"] == key["client_email"]
    assert emulator.count("token") == 1


async def test_access_token_auth_sends_an_access_token_for_its_scopes(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    key, path = key_file(emulator, tmp_path)
    recorder = Recorder()
    auth = AccessTokenAuth(service_account_key=path)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(recorder)) as client:
        await client.get("https://europe-west1-aiplatform.googleapis.com/v1/x")

    info = emulator.access_token_info(recorder.bearer())
    assert info is not None and info.principal == key["client_email"]


@pytest.mark.parametrize(
    "header", ["X-Serverless-Authorization", "Proxy-Authorization", "Authorization"]
)
async def test_header_choice_puts_the_token_there_and_leaves_the_apps_authorization(
    emulator: GoogleEmulator, tmp_path: Path, header: str
) -> None:
    _, path = key_file(emulator, tmp_path)
    recorder = Recorder()
    auth = IdTokenAuth(SERVICE, service_account_key=path, header=header)  # type: ignore[arg-type]
    app_headers = {} if header == "Authorization" else {"Authorization": "Bearer app-own-token"}
    async with httpx.AsyncClient(
        auth=auth, headers=app_headers, transport=httpx.MockTransport(recorder)
    ) as client:
        await client.get(SERVICE)

    emulator.verify_id_token(recorder.bearer(header=header.lower()), SERVICE)
    if header != "Authorization":
        assert recorder.headers[0]["authorization"] == "Bearer app-own-token"


def test_an_unknown_header_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigurationError, match="X-Serverless-Authorization"):
        IdTokenAuth(SERVICE, header="X-Custom")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# The cache: shared, warm without I/O, cold without blocking the loop


def test_threads_and_loops_on_a_cold_cache_share_one_token_request(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    _, path = key_file(emulator, tmp_path)
    emulator.set_latency(0.3, endpoint="token")  # everyone misses together
    tokens: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def sync_caller() -> None:
        recorder = Recorder()
        with httpx.Client(transport=httpx.MockTransport(recorder)) as client:
            barrier.wait()
            client.get(SERVICE, auth=IdTokenAuth(SERVICE, service_account_key=path))
        with lock:
            tokens.append(recorder.bearer())

    def loop_caller() -> None:
        async def main() -> str:
            recorder = Recorder()
            auth = IdTokenAuth(SERVICE, service_account_key=path)
            async with httpx.AsyncClient(
                auth=auth, transport=httpx.MockTransport(recorder)
            ) as client:
                barrier.wait()
                await asyncio.gather(*(client.get(SERVICE) for _ in range(20)))
            return recorder.bearer()

        token = asyncio.run(main())
        with lock:
            tokens.append(token)

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                with lock:
                    failures.append(exc)

        return run

    threads = [
        threading.Thread(target=guarded(sync_caller if i % 2 else loop_caller)) for i in range(12)
    ]
    for thread in threads:
        thread.start()
    join_all(threads, 30)

    assert not failures, failures
    assert len(set(tokens)) == 1 and len(tokens) == 12
    assert emulator.count("token") == 1


async def test_warm_requests_do_no_token_io(emulator: GoogleEmulator, tmp_path: Path) -> None:
    _, path = key_file(emulator, tmp_path)
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(Recorder())) as client:
        await client.get(SERVICE)
        emulator.reset_counts()
        for _ in range(500):
            await client.get(SERVICE)

    assert emulator.count() == 0
    assert emulator.connections == 0


class ConstantAuth(httpx.Auth):
    """What any httpx auth costs: httpx's auth machinery around a fixed header."""

    def __init__(self, value: str) -> None:
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self.value
        yield request


def _best_per_request_us(clients: dict[str, httpx.Client], n: int, rounds: int) -> dict[str, float]:
    """Best per-request time of each client, rounds interleaved (a busy machine's
    noise falls on all of them alike)."""
    best = dict.fromkeys(clients, float("inf"))
    for _ in range(rounds):
        for name, client in clients.items():
            start = time.perf_counter()
            for _ in range(n):
                client.get(SERVICE)
            best[name] = min(best[name], (time.perf_counter() - start) / n * 1e6)
    return best


def test_warm_auth_adds_microseconds_per_request(
    emulator: GoogleEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The figure for the README and the benchmarks: a MockTransport client with
    # no auth, with a constant-header httpx.Auth (httpx's own auth cost) and
    # with ours, warm; and our part alone (the cache lookup and the header).
    _, path = key_file(emulator, tmp_path)
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    recorder = Recorder()
    with httpx.Client(auth=auth, transport=httpx.MockTransport(recorder)) as warm:
        warm.get(SERVICE)
    header = "Bearer " + recorder.bearer()
    clients = {
        "none": httpx.Client(transport=httpx.MockTransport(h200)),
        "constant": httpx.Client(auth=ConstantAuth(header), transport=httpx.MockTransport(h200)),
        "ours": httpx.Client(auth=auth, transport=httpx.MockTransport(h200)),
    }
    try:
        best = _best_per_request_us(clients, 500, 7)
    finally:
        for client in clients.values():
            client.close()
    request = auth._request
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        _ = "Bearer " + (request.cached() or request.blocking()).value
    ours_alone_us = (time.perf_counter() - start) / n * 1e6

    with capsys.disabled():
        print(
            f"\nhttpx warm request (MockTransport), best of 7x500: no auth {best['none']:.1f} µs,"
            f" constant-header httpx.Auth {best['constant']:.1f} µs, IdTokenAuth"
            f" {best['ours']:.1f} µs (+{best['ours'] - best['none']:.1f} µs vs no auth,"
            f" {best['ours'] - best['constant']:+.1f} µs vs httpx's own auth flow);"
            f" the token lookup alone {ours_alone_us:.2f} µs"
        )
    assert emulator.count("token") == 1, "warm requests fetched a token"
    assert ours_alone_us < 5, f"{ours_alone_us:.2f} µs to put a cached token on a request"


def h200(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


async def test_a_cold_miss_never_blocks_the_event_loop(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    _, path = key_file(emulator, tmp_path)
    emulator.set_latency(0.8, endpoint="token")
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    tick = asyncio.create_task(ticker())
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(Recorder())) as client:
        start = time.monotonic()
        await client.get(SERVICE)
        waited = time.monotonic() - start
    stop.set()
    await tick

    assert waited >= 0.7, "the token endpoint's latency was not felt: no miss?"
    assert len(lags) >= 30, "the loop did not run while the token was fetched"
    assert max(lags) < 0.2, f"the loop stalled for {max(lags):.3f} s during a cache miss"


# --------------------------------------------------------------------------
# Pickling (Agent Engine pickles agents: google/adk-python#3004)


def test_auth_pickles_as_configuration_and_fetches_again_after_unpickling(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    key, path = key_file(emulator, tmp_path)
    auth = IdTokenAuth(SERVICE, service_account_key=path, header="X-Serverless-Authorization")
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder)) as client:
        client.get(SERVICE, auth=auth)
    token = recorder.bearer(header="x-serverless-authorization")

    data = pickle.dumps(auth)
    copy = pickle.loads(data)

    assert token.encode() not in data
    assert token.split(".")[1].encode() not in data
    for line in key["private_key"].splitlines():
        if line.strip() and "PRIVATE KEY" not in line:
            assert line.encode() not in data
    assert copy.header == "X-Serverless-Authorization"
    assert copy.audience == SERVICE
    with httpx.Client(transport=httpx.MockTransport(recorder)) as client:
        client.get(SERVICE, auth=copy)
    assert recorder.bearer(header="x-serverless-authorization") == token, "same cache"


def test_an_async_client_does_not_pickle_but_its_auth_does(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    # #3004's "cannot pickle '_thread.RLock'" is the client's own state; keep
    # the auth (or an ADK credential) in what gets pickled, build the client late.
    _, path = key_file(emulator, tmp_path)
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    client = httpx.AsyncClient(auth=auth)
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(client)
    assert isinstance(pickle.loads(pickle.dumps(auth)), IdTokenAuth)


def test_an_inline_key_refuses_to_pickle_and_says_to_pass_the_path(
    emulator: GoogleEmulator,
) -> None:
    auth = IdTokenAuth(SERVICE, service_account_key=emulator.service_account_info())
    with pytest.raises(TypeError, match="key file's path") as caught:
        pickle.dumps(auth)
    assert "PRIVATE KEY" not in str(caught.value)


def test_repr_names_the_audience_and_never_a_token(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    _, path = key_file(emulator, tmp_path)
    auth = IdTokenAuth(SERVICE, service_account_key=path)
    recorder = Recorder()
    with httpx.Client(transport=httpx.MockTransport(recorder)) as client:
        client.get(SERVICE, auth=auth)
    assert SERVICE in repr(auth)
    assert recorder.bearer() not in repr(auth)
    assert "eyJ" not in repr(auth)


# --------------------------------------------------------------------------
# IAP's service-account JWT


async def test_iap_jwt_from_a_key_is_signed_locally_for_the_url_wildcard(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    key, path = key_file(emulator, tmp_path)
    recorder = Recorder()
    auth = IapJwtAuth("https://app.example.com/", service_account_key=path)
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(recorder)) as client:
        await client.get("https://app.example.com/mcp")
        await client.get("https://app.example.com/other")

    assert emulator.count() == 0, "a key signs without the network"
    claims = emulator.verify_service_account_jwt(recorder.bearer(), "https://app.example.com/*")
    assert claims["iss"] == claims["sub"] == key["client_email"]
    assert claims["exp"] - claims["iat"] == 3600
    assert recorder.bearer(0) == recorder.bearer(1)


async def test_iap_jwt_through_impersonation_is_signed_by_iam_sign_jwt(
    emulator: GoogleEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", emulator.url)
    _, path = key_file(emulator, tmp_path)
    signer = "iap-caller@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(signer)
    recorder = Recorder()
    auth = IapJwtAuth(
        "https://app.example.com", service_account_key=path, impersonate=signer, exact=False
    )
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(recorder)) as client:
        for _ in range(3):
            await client.get("https://app.example.com/")

    [sign] = [r for r in emulator.requests if r.kind == "iam"]
    assert sign.path.endswith(f"{signer}:signJwt")
    claims = emulator.verify_service_account_jwt(recorder.bearer(), "https://app.example.com/*")
    assert claims["iss"] == claims["sub"] == signer


def test_iap_jwt_from_the_metadata_server_says_to_impersonate(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    with (
        httpx.Client(transport=httpx.MockTransport(Recorder())) as client,
        pytest.raises(errors.ConfigurationError, match="impersonate="),
    ):
        client.get("https://app.example.com/", auth=IapJwtAuth("https://app.example.com"))


def test_emulator_sign_blob_and_sign_jwt_answer_google_auth(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's IAM signing speaks what google-auth speaks.
    import google.auth.transport.requests
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from google.auth import iam, impersonated_credentials
    from google.oauth2 import service_account

    source = service_account.Credentials.from_service_account_info(
        emulator.service_account_info(), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    signer = "signer@emulated-project.iam.gserviceaccount.com"
    emulator.register_service_account(signer)
    monkeypatch.setattr(
        iam, "_IAM_SIGN_ENDPOINT", emulator.url + "/v1/projects/-/serviceAccounts/{}:signBlob"
    )
    creds = impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=signer,
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )

    signature = creds.sign_bytes(b"hello")

    account = emulator._state.accounts.service_account(signer)
    assert account is not None and account.key is not None
    account.key.public_key().verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())

    # signJwt, as the IAM Credentials REST reference (and iam-federation-tools) call it.
    session = google.auth.transport.requests.AuthorizedSession(source)
    now = int(time.time())
    payload = {"iss": signer, "sub": signer, "aud": "https://app.example.com/*", "iat": now}
    reply = session.post(emulator.iam_url(signer, "signJwt"), json={"payload": json.dumps(payload)})
    assert reply.status_code == 200, reply.text
    claims = emulator.verify_service_account_jwt(
        reply.json()["signedJwt"], "https://app.example.com/*"
    )
    assert claims["iss"] == signer
    assert claims["exp"] == now + 3600, "a missing exp becomes iat + 1 h"

"""One benchmark scenario, one implementation, one fresh process.

``worker.py SCENARIO IMPL [--quick] [--trace]`` with IMPL

- ``stock``: ADK's own ``ServiceAccountCredentialExchanger``, as the
  interpreter's ADK registers it (``.venv``: ADK 2.x);
- ``adk1``: the same code run by ``.venv-adk1`` (ADK 1.24.1, the version of
  google/adk-python#4458), which sends access tokens where an ID token is asked
  for: its ID-token scenarios fail by design, and that is recorded as a finding;
- ``ours``: ``adk_token_exchange.install()`` before the managers are built;
- ``gauth``: google-auth used directly, without ADK's exchanger: one
  ``IDTokenCredentials`` per tool (``google.oauth2.service_account`` for a key,
  ``google.auth.compute_engine`` for the metadata server, which is what
  ``google.oauth2.id_token.fetch_id_token`` builds), refreshed synchronously
  when not ``valid`` (google-auth's API is blocking).

It starts the Google emulator in a child process (``emulator_server.py``),
points the metadata variables at it *before* google-auth is imported, runs the
scenario and prints one line ``BENCH-RESULT <json>``. ``runner.py`` starts it
with an isolated environment (temporary HOME and CLOUDSDK_CONFIG, no
GOOGLE_APPLICATION_CREDENTIALS) and, where it can, in a network namespace that
has nothing but loopback.

Every ADK scenario goes through ``CredentialManager.get_auth_credential``, as
ADK's tools call it, with a real context (session, invocation) so both
exchangers pay the same ADK overhead. Every result records which exchanger
class each manager actually held (``exchangers``) and whether
``adk_token_exchange`` was loaded at all (``ours_loaded``): the runner refuses
to compare a stock run with a stock run.

``BENCH_BREAK`` (comma-separated) breaks the ``ours`` runs on purpose, to show
that the judge fails closed (``bench/README.md``, "Failing closed"):
``noop-install`` (``ours`` skips ``install()``: ADK's stock exchanger stays),
``hang:SCENARIO`` (the scenario never finishes), ``error:SCENARIO`` (it
raises), ``wrong-audience:SCENARIO`` (tokens are asked for another audience
than the one checked).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import faulthandler
import gc
import inspect
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
INJECTED_LATENCY = 0.100  # seconds, targets 2-4
MANY_AUDIENCES_LATENCY = 0.020  # seconds, target 5
# Tokens "expire every few seconds"; BENCH_ROLLOVER_LIFETIME overrides it (diagnosis).
ROLLOVER_TOKEN_LIFETIME = int(os.environ.get("BENCH_ROLLOVER_LIFETIME", "4"))
ROLLOVER_SECONDS = float(os.environ.get("BENCH_ROLLOVER_SECONDS", "15"))
QUICK = "--quick" in sys.argv
TRACE = "--trace" in sys.argv
BREAK = {b.strip() for b in os.environ.get("BENCH_BREAK", "").split(",") if b.strip()}
IMPLS = ("stock", "adk1", "ours", "gauth")


def broken(what: str, scenario: str | None = None) -> bool:
    """Whether ``BENCH_BREAK`` breaks this (ours only: the implementation under test)."""
    return IMPL == "ours" and (what if scenario is None else f"{what}:{scenario}") in BREAK


def ours_under_test() -> bool:
    """Whether a scenario without ``install()`` builds ours: ``noop-install`` makes the
    ``ours`` run build the comparison's thing instead, as a silent fallback would."""
    return IMPL == "ours" and not broken("noop-install")


class EmulatorProcess:
    """The emulator process and its control channel."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "emulator_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        info = self.call("info")
        self.metadata_host: str = info["metadata_host"]
        self.token_uri: str = info["token_uri"]
        self._lock = threading.Lock()

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self._process.stdin.flush()
        reply: dict[str, Any] = json.loads(self._process.stdout.readline())
        if not reply.pop("ok"):
            raise RuntimeError(f"emulator {op}: {reply['error']}")
        return reply

    def counts(self) -> dict[str, Any]:
        return self.call("counts")

    def stop(self) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write('{"op": "stop"}\n')
            self._process.stdin.close()
        except OSError:
            pass
        self._process.wait(timeout=10)


def jwt_claims(token: str) -> dict[str, Any] | None:
    """A JWT's payload, unverified; ``None`` when the token is not a JWT (an access token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1]
        claims: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
    except ValueError:
        return None
    return claims


def is_wrong(token: str, audience: str) -> bool:
    """Not an ID token for ``audience`` (an access token, or another audience)."""
    claims = jwt_claims(token)
    return claims is None or claims.get("aud") != audience


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _run_delay_reader() -> Callable[[], int]:
    """Nanoseconds the calling thread has spent runnable but not running (0 if unknown).

    The second field of ``/proc/thread-self/schedstat``: time on the run queue,
    i.e. preempted by other processes, not time spent waiting for the GIL (a
    thread blocked on a lock is not runnable).
    """
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: 0

    def read() -> int:
        return int(os.pread(fd, 128, 0).split()[1])

    return read


class Ticker:
    """Measures event loop lag: a task that sleeps 1 ms and records each tick.

    Each tick also records how long the loop thread sat on the OS run queue
    during it (other processes running on a busy machine), so lag can be
    reported both raw and with that removed: what remains is the loop thread
    running code or waiting for the GIL, i.e. what the process itself did.
    """

    PERIOD = 0.001

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float, float]] = []  # start, end, run-queue wait
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        run_delay = _run_delay_reader()  # opened on the loop thread, for the loop thread
        while not self._stop:
            start, waited = time.perf_counter(), run_delay()
            await asyncio.sleep(self.PERIOD)
            self.ticks.append((start, time.perf_counter(), (run_delay() - waited) / 1e9))

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await asyncio.sleep(0.01)
        self._stop = True
        assert self._task is not None
        await self._task

    def max_lag(self, start: float, end: float, *, own: bool = False) -> float:
        """Worst overshoot (seconds) of the ticks that overlapped ``[start, end]``.

        ``own``: minus the time the loop thread waited on the OS run queue.
        """
        lags = [
            max(0.0, t1 - t0 - self.PERIOD - (queued if own else 0.0))
            for t0, t1, queued in self.ticks
            if t0 < end and t1 > start
        ]
        return max(lags, default=0.0)

    def baseline_lag(self, windows: list[tuple[float, float]]) -> float:
        """Worst overshoot of the ticks outside every window (the box's own jitter)."""
        lags = [
            t1 - t0 - self.PERIOD
            for t0, t1, _ in self.ticks
            if all(t1 <= a or t0 >= b for a, b in windows)
        ]
        return max(lags, default=0.0)

    def worst(self) -> float:
        """Worst overshoot of any tick, seconds (raw)."""
        return max((t1 - t0 - self.PERIOD for t0, t1, _ in self.ticks), default=0.0)


class DirectIdToken:
    """google-auth used directly by a tool, without ADK's exchanger.

    One credentials object per tool, built with the tool (key parsing is not
    in the request path), refreshed synchronously when not ``valid``: what a
    tool or a published sample auth provider does with google-auth's blocking
    API. ``get_auth_credential`` has the manager's shape so the scenarios can
    drive both alike.
    """

    def __init__(self, audience: str, path: str, info: dict[str, Any]) -> None:
        from google.auth.transport.requests import Request

        self.audience = audience
        self._request = Request()
        self.credentials: Any
        if path == "key":
            from google.oauth2 import service_account

            self.credentials = service_account.IDTokenCredentials.from_service_account_info(
                info, target_audience=audience
            )
        else:
            from google.auth import compute_engine

            self.credentials = compute_engine.IDTokenCredentials(
                self._request, target_audience=audience, use_metadata_identity_endpoint=True
            )

    async def get_auth_credential(self, context: Any) -> Any:
        if not self.credentials.valid:
            self.credentials.refresh(self._request)
        token = self.credentials.token
        return SimpleNamespace(http=SimpleNamespace(credentials=SimpleNamespace(token=token)))


class AdkAuth:
    """ADK's auth objects (scheme, credentials, managers, contexts) wired to one implementation."""

    def __init__(self, impl: str, emulator: EmulatorProcess) -> None:
        self.impl = impl
        self.emulator = emulator
        warnings.simplefilter("ignore")
        from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
        from google.adk.agents.invocation_context import InvocationContext
        from google.adk.auth import auth_credential
        from google.adk.auth.auth_tool import AuthConfig
        from google.adk.auth.credential_manager import CredentialManager
        from google.adk.sessions import InMemorySessionService, Session

        try:  # ADK 2.x
            from google.adk.agents.context import Context
        except ImportError:  # ADK 1.x
            from google.adk.agents.callback_context import CallbackContext as Context

        self._ac = auth_credential
        self._AuthConfig = AuthConfig
        self._CredentialManager = CredentialManager
        self._Context = Context
        self._InvocationContext = InvocationContext
        self._Session = Session
        self._session_service = InMemorySessionService()
        self._agent: Any = None
        if "agent" in InvocationContext.model_fields and (
            InvocationContext.model_fields["agent"].is_required()
        ):
            from google.adk.agents import LlmAgent

            self._agent = LlmAgent(name="bench")
        self.scheme = OAuth2(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(
                    tokenUrl="https://oauth2.googleapis.com/token", scopes={}
                )
            )
        )
        self._clear: Callable[[], None] = lambda: None
        if impl == "ours":
            import adk_token_exchange

            if not broken("noop-install"):
                adk_token_exchange.install()
            self._clear = adk_token_exchange.clear_cache
        elif impl in ("stock", "adk1"):
            from google.adk.tools.openapi_tool.auth.credential_exchangers import (
                service_account_exchanger,
            )

            self._clear = getattr(service_account_exchanger, "_reset_cache", lambda: None)
        self._key: Any = None
        self._info: dict[str, Any] | None = None
        self.managers: list[Any] = []  # every manager built, for provenance

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.emulator.call("service_account_info", email=None)["info"]
        return self._info

    def key(self) -> Any:
        if self._key is None:
            self._key = self._ac.ServiceAccountCredential.model_validate(self.info())
        return self._key

    def credential(self, audience: str, path: str) -> Any:
        ac = self._ac
        if path == "key":
            sa = ac.ServiceAccount(
                service_account_credential=self.key(),
                use_id_token=True,
                audience=audience,
                scopes=[],
            )
        else:
            # ADK 1.x requires ``scopes``; the key path passes none either.
            sa = ac.ServiceAccount(
                use_default_credential=True, use_id_token=True, audience=audience, scopes=[]
            )
        return ac.AuthCredential(
            auth_type=ac.AuthCredentialTypes.SERVICE_ACCOUNT, service_account=sa
        )

    def manager(self, audience: str, path: str = "key") -> Any:
        """What a tool holds: a CredentialManager (or, for ``gauth``, google-auth credentials)."""
        asked = (
            audience.replace("-adk.", "-other-adk.")
            if broken("wrong-audience", SCENARIO)
            else audience
        )
        if self.impl == "gauth":
            manager: Any = DirectIdToken(asked, path, self.info())
        else:
            config = self._AuthConfig(
                auth_scheme=self.scheme, raw_auth_credential=self.credential(asked, path)
            )
            manager = self._CredentialManager(config)
        self.managers.append(manager)
        return manager

    def exchanger(self, manager: Any) -> Any:
        return manager._exchanger_registry.get_exchanger(
            self._ac.AuthCredentialTypes.SERVICE_ACCOUNT
        )

    def context(self, user: str = "user-0") -> Any:
        session = self._Session(id=f"session-{user}", app_name="bench", user_id=user)
        fields: dict[str, Any] = {
            "session_service": self._session_service,
            "invocation_id": f"invocation-{user}",
            "session": session,
        }
        if self._agent is not None:
            fields["agent"] = self._agent
        return self._Context(self._InvocationContext(**fields))

    def clear(self) -> None:
        self._clear()

    def provenance(self) -> dict[str, Any]:
        """Which class really answered, for every tool built in this run."""
        classes = set()
        for manager in self.managers:
            held = manager.credentials if self.impl == "gauth" else self.exchanger(manager)
            classes.add(f"{type(held).__module__}.{type(held).__qualname__}")
        import google.adk

        return {
            "exchangers": sorted(classes),
            "ours_loaded": "adk_token_exchange" in sys.modules,
            "adk_version": google.adk.__version__,
            "tools": len(self.managers),
        }


def token_of(credential: Any) -> str:
    token: str = credential.http.credentials.token
    return token


def audience(name: str) -> str:
    return f"https://{name}-adk.a.run.app"


SCENARIO = IMPL = ""  # set by main(); read by the BENCH_BREAK hooks


# -- scenarios ------------------------------------------------------------------------


async def warm(adk: AdkAuth) -> dict[str, Any]:
    """Target 1: warm exchange through CredentialManager, and the exchanger call alone.

    Two ways a call's credential can arrive: as ADK's tools pass it (the
    manager deep-copies the tool's credential: the copies share their string
    objects with it) and rebuilt from JSON before each call (distinct string
    objects, equal content: a tool or credential built per request, or
    unpickled). A memo keyed on string identity is fast in the first and pays
    full hashing in the second; both are reported.
    """
    manager = adk.manager(audience("warm"))
    context = adk.context()
    await manager.get_auth_credential(context)
    batches, per_batch = (5, 300) if QUICK else (20, 1000)
    ex_batches, copies = (5, 300) if QUICK else (10, 2000)
    for _ in range(per_batch * 2):  # warm-up
        await manager.get_auth_credential(context)

    config = manager._auth_config
    raw = config.raw_auth_credential
    as_json = raw.model_dump_json()
    rebuilt_check = type(raw).model_validate_json(as_json)
    assert rebuilt_check == raw, "a credential rebuilt from JSON must equal the original"
    assert rebuilt_check.service_account.audience is not raw.service_account.audience
    fresh: list[Any] = []

    def deep_copies(n: int) -> None:
        # The previous batch's copies stay alive while the next are made, so no address repeats.
        fresh[:] = [raw.model_copy(deep=True) for _ in range(n)]

    def from_json(n: int) -> None:
        fresh[:] = [type(raw).model_validate_json(as_json) for _ in range(n)]

    def the_original(n: int) -> None:
        fresh[:] = [raw] * n

    # Through the manager. Both variants store the call's credential into the
    # tool's AuthConfig before each call (a dict store, the same cost for both),
    # and the manager deep-copies it as always.
    async def through_manager(n: int) -> None:
        store = config.__dict__
        for credential in fresh[:n]:
            store["raw_auth_credential"] = credential
            await manager.get_auth_credential(context)
        store["raw_auth_credential"] = raw

    # The exchanger alone, called as CredentialManager calls it: stock
    # synchronously (exchange_credential), ours awaited (exchange), each call
    # with its own credential object (made before the batch, outside the timing).
    exchanger = adk.exchanger(manager)
    scheme = adk.scheme

    async def exchanger_alone(n: int) -> None:
        if adk.impl == "ours":
            for credential in fresh[:n]:
                await exchanger.exchange(credential, scheme)
        else:
            for credential in fresh[:n]:
                exchanger.exchange_credential(scheme, credential)

    async def exchanger_sync(n: int) -> None:
        for credential in fresh[:n]:
            exchanger.exchange_credential(scheme, credential)

    figures: dict[str, Any] = {}
    plan: list[tuple[str, Callable[[int], Awaitable[None]], int, int, Callable[[int], None]]] = [
        ("manager", through_manager, batches, per_batch, the_original),
        ("manager_json", through_manager, batches, per_batch, from_json),
        ("exchanger", exchanger_alone, ex_batches, copies, deep_copies),
        ("exchanger_json", exchanger_alone, ex_batches, copies, from_json),
        ("exchanger_same", exchanger_alone, ex_batches, copies, the_original),
        ("exchanger_sync", exchanger_sync, ex_batches, copies, deep_copies),
    ]
    for name, body, rounds, n, prepare in plan:
        wall, cpu = [], []
        for _ in range(rounds):
            prepare(n)
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            await body(n)
            cpu.append((time.thread_time_ns() - start_cpu) / n / 1000)
            wall.append((time.perf_counter_ns() - start) / n / 1000)
        figures[f"{name}_us"] = statistics.median(wall)
        figures[f"{name}_min_us"] = min(wall)
        figures[f"{name}_cpu_us"] = statistics.median(cpu)
    fresh.clear()
    token = token_of(await manager.get_auth_credential(context))
    figures["wrong_audience"] = int(is_wrong(token, audience("warm")))
    figures["token_requests"] = adk.emulator.counts()["token_requests"]
    return figures


class Batches:
    """Per-call µs of timed batches on three clocks: wall, the calling thread's CPU, the
    process's CPU (which would show work handed to another thread of the worker)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timing(self, name: str, calls: int) -> Iterator[None]:
        wall, cpu, process = time.perf_counter_ns, time.thread_time_ns, time.process_time_ns
        t0, c0, p0 = wall(), cpu(), process()
        yield
        c1, p1, t1 = cpu(), process(), wall()
        for clock, took in (("", t1 - t0), ("_cpu", c1 - c0), ("_process", p1 - p0)):
            self.samples.setdefault(f"{name}{clock}_us", []).append(took / calls / 1000)

    def figures(self) -> dict[str, float]:
        """``{name}[_cpu|_process]_us``: the median batch; ``…_min_us``: the fastest."""
        out = {}
        for key, values in self.samples.items():
            out[key] = statistics.median(values)
            out[key.replace("_us", "_min_us")] = min(values)
        return out


async def coroutine(adk: AdkAuth) -> dict[str, Any]:
    """Target 1: ``await exchanger.exchange(credential, scheme)`` alone, warm: µs per await.

    No CredentialManager: the exchanger the manager holds, called with the
    tool's own credential object every time (what a tool holding its
    credential passes), in a tight loop of awaits in one running loop. Ours
    awaits its ``async def exchange``; stock has no coroutine, so it is
    awaited as CredentialManager awaits it: a coroutine that calls the sync
    ``exchange_credential`` (its warm path: a dict lookup keyed on the
    service account and a clock read). Batches of exchanges and of awaits of
    an empty ``async def`` (Python's floor for one await) alternate, so both
    see the same machine.
    """
    manager = adk.manager(audience("coroutine"))
    exchanger = adk.exchanger(manager)
    credential = manager._auth_config.raw_auth_credential
    scheme = adk.scheme
    if adk.impl == "ours":
        exchange = exchanger.exchange
    else:
        sync_exchange = exchanger.exchange_credential

        async def exchange(auth_credential: Any, auth_scheme: Any) -> Any:
            # CredentialManager._exchange_credential's branch for this class.
            return sync_exchange(auth_scheme, auth_credential)

    async def empty(auth_credential: Any, auth_scheme: Any) -> Any:
        return auth_credential

    start = time.perf_counter()
    first = await exchange(credential, scheme)
    first_ms = (time.perf_counter() - start) * 1000
    batches, n = (5, 2_000) if QUICK else (20, 10_000)
    for _ in range(n):  # warm-up: the loop, the cache, the branch predictors
        await exchange(credential, scheme)

    async def awaits(call: Any, count: int) -> Any:
        result = None
        for _ in range(count):
            result = await call(credential, scheme)
        return result

    timed = Batches()
    for _ in range(batches):
        for name, call in (("exchange", exchange), ("empty", empty)):
            with timed.timing(name, n):
                last = await awaits(call, n)
            if name == "exchange":
                result = last
    figures = timed.figures()
    tokens = [token_of(r.credential if adk.impl == "ours" else r) for r in (first, result)]
    figures.update(
        {
            "first_exchange_ms": first_ms,
            "calls": batches * n,
            "awaited": "exchange" if adk.impl == "ours" else "exchange_credential in a coroutine",
            "wrong_audience": sum(1 for t in tokens if is_wrong(t, audience("coroutine"))),
            "token_requests": adk.emulator.counts()["token_requests"],
        }
    )
    if adk.impl == "ours":
        # Ours' claim: exchange is a real coroutine function (ADK declares it async).
        figures["coroutine_function"] = int(inspect.iscoroutinefunction(type(exchanger).exchange))
    return figures


async def _cold(adk: AdkAuth, path: str) -> dict[str, Any]:
    """Target 2: loop lag during cold exchanges (the first of the process, then others)."""
    adk.emulator.call("set", latency=INJECTED_LATENCY)
    exchanges = 3 if QUICK else 5
    audiences = [audience(f"cold-{i}") for i in range(exchanges)]
    managers = [adk.manager(a, path) for a in audiences]
    context = adk.context()
    ticker = Ticker()
    await ticker.start()
    windows = []
    tokens: list[str] = []
    failures: list[str] = []
    for manager in managers:
        start = time.perf_counter()
        try:
            credential = await manager.get_auth_credential(context)
        except Exception as exc:
            if adk.impl != "adk1":
                raise
            # ADK 1.24 has no ID tokens: a failure is the finding, not a harness error.
            failures.append(f"{type(exc).__name__}: {exc}"[:300])
            credential = None
        windows.append((start, time.perf_counter()))
        tokens.append("" if credential is None else token_of(credential))
        await asyncio.sleep(0.03)
    await ticker.stop()
    lags = [ticker.max_lag(a, b) for a, b in windows]
    own_lags = [ticker.max_lag(a, b, own=True) for a, b in windows]
    counts = adk.emulator.counts()
    return {
        "first_lag_ms": lags[0] * 1000,
        "later_lag_ms": max(lags[1:]) * 1000,
        "first_own_lag_ms": own_lags[0] * 1000,
        "later_own_lag_ms": max(own_lags[1:]) * 1000,
        "first_exchange_ms": (windows[0][1] - windows[0][0]) * 1000,
        "later_exchange_ms": statistics.median(b - a for a, b in windows[1:]) * 1000,
        "baseline_lag_ms": ticker.baseline_lag(windows) * 1000,
        "callers": len(tokens),
        "wrong_audience": sum(1 for t, a in zip(tokens, audiences, strict=True) if is_wrong(t, a)),
        "failed_exchanges": len(failures),
        "failure": failures[0] if failures else None,
        "token_kind": _kind(tokens),
        "token_requests": counts["token_requests"],
        "requests": counts["requests"],
    }


def _kind(tokens: list[str]) -> str:
    """What was handed out: ``id`` (JWTs), ``access`` (opaque), ``none`` or ``mixed``."""
    kinds = {"none" if not t else "id" if jwt_claims(t) else "access" for t in tokens}
    return kinds.pop() if len(kinds) == 1 else "mixed"


async def cold_key(adk: AdkAuth) -> dict[str, Any]:
    return await _cold(adk, "key")


async def cold_metadata(adk: AdkAuth) -> dict[str, Any]:
    return await _cold(adk, "metadata")


CALLERS = 100
THREADS = 8


async def _get(adk: AdkAuth, manager: Any, context: Any, failures: list[str]) -> str:
    try:
        return token_of(await manager.get_auth_credential(context))
    except Exception as exc:
        if adk.impl != "adk1":
            raise
        failures.append(f"{type(exc).__name__}: {exc}"[:300])
        return ""


async def _single_request(adk: AdkAuth, failures: list[str]) -> float:
    """Wall time of one cold exchange (process already warmed up)."""
    manager = adk.manager(audience("single"))
    start = time.perf_counter()
    await _get(adk, manager, adk.context(), failures)
    return time.perf_counter() - start


async def _burst(
    adk: AdkAuth, manager: Any, users: list[str], failures: list[str]
) -> tuple[float, float, list[str]]:
    contexts = [adk.context(user) for user in users]
    start = time.perf_counter()
    tokens = await asyncio.gather(*(_get(adk, manager, c, failures) for c in contexts))
    return start, time.perf_counter(), list(tokens)


async def _burst_setup(adk: AdkAuth, failures: list[str]) -> float:
    adk.emulator.call("set", latency=INJECTED_LATENCY)
    await _get(adk, adk.manager(audience("warmup")), adk.context(), failures)
    single = await _single_request(adk, failures)
    adk.emulator.call("reset")
    return single


def _burst_result(
    adk: AdkAuth, single: float, spans: list[tuple[float, float, list[str]]], failures: list[str]
) -> dict[str, Any]:
    counts = adk.emulator.counts()
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    tokens = [t for _, _, batch in spans for t in batch]
    return {
        "callers": len(tokens),
        "token_requests": counts["token_requests"],
        "connections": counts["connections"],
        "distinct_tokens": len(set(tokens)),
        "wrong_audience": sum(1 for t in tokens if is_wrong(t, audience("burst"))),
        "failed_exchanges": len(failures),
        "failure": failures[0] if failures else None,
        "token_kind": _kind(tokens),
        "wall_ms": wall * 1000,
        "single_ms": single * 1000,
        "wall_over_single": wall / single,
    }


async def burst_loop(adk: AdkAuth) -> dict[str, Any]:
    """Target 3: 100 concurrent cold callers (distinct users) for one audience, one loop."""
    failures: list[str] = []
    single = await _burst_setup(adk, failures)
    manager = adk.manager(audience("burst"))
    span = await _burst(adk, manager, [f"user-{i}" for i in range(CALLERS)], failures)
    return _burst_result(adk, single, [span], failures)


def burst_threads(adk: AdkAuth) -> dict[str, Any]:
    """Target 3: the same 100 callers from 8 threads, each with its own event loop."""
    failures: list[str] = []
    single = asyncio.run(_burst_setup(adk, failures))
    barrier = threading.Barrier(THREADS)
    spans: list[tuple[float, float, list[str]]] = []
    lock = threading.Lock()
    users = [f"user-{i}" for i in range(CALLERS)]
    shares = [users[i::THREADS] for i in range(THREADS)]
    managers = [adk.manager(audience("burst")) for _ in shares]  # each thread its own tool
    errors: list[BaseException] = []

    def thread_main(manager: Any, share: list[str]) -> None:
        async def run() -> tuple[float, float, list[str]]:
            barrier.wait()
            return await _burst(adk, manager, share, failures)

        try:
            span = asyncio.run(run())
        except BaseException as exc:  # surfaced below: a lost thread must not look like success
            errors.append(exc)
            return
        with lock:
            spans.append(span)

    threads = [
        threading.Thread(target=thread_main, args=(m, s))
        for m, s in zip(managers, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return _burst_result(adk, single, spans, failures)


class CallerGroup:
    """Callers that exchange in a loop, each with a 2 ms pause, recording every hand-out."""

    def __init__(self, adk: AdkAuth, name: str, callers: int = 4) -> None:
        self.name = name
        self.audience = audience(name)
        self.managers = [adk.manager(self.audience) for _ in range(callers)]
        self.contexts = [adk.context(f"{name}-user-{i}") for i in range(callers)]
        self.latencies: list[float] = []
        self.expired = 0
        self.wrong_audience = 0
        self.min_remaining = float("inf")
        self.exp_of: dict[str, int] = {}
        self.order: dict[str, int] = {}  # token -> its number, in order of first hand-out
        self.trace: list[tuple[float, float, int, int, float]] = []

    async def prime(self) -> None:
        for manager, context in zip(self.managers, self.contexts, strict=True):
            await manager.get_auth_credential(context)

    def run(self, deadline: float) -> list[Coroutine[Any, Any, None]]:
        """One coroutine per caller (interleave groups: the first task after a wake-up is
        slower, its caches are cold)."""

        async def caller(index: int, manager: Any, context: Any) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                credential = await manager.get_auth_credential(context)
                took = time.perf_counter() - start
                self.latencies.append(took)
                now = time.time()
                token = token_of(credential)
                exp = self.exp_of.get(token)
                if exp is None:
                    claims = jwt_claims(token) or {}
                    exp = self.exp_of[token] = int(claims.get("exp", 0))
                    self.order[token] = len(self.order)
                    if claims.get("aud") != self.audience:
                        self.wrong_audience += 1
                if exp <= now:
                    self.expired += 1
                self.min_remaining = min(self.min_remaining, exp - now)
                if TRACE:
                    # perf_counter is CLOCK_MONOTONIC on Linux: the emulator's clock too.
                    self.trace.append((start, took, index, self.order[token], exp - now))
                await asyncio.sleep(0.002)

        return [
            caller(i, m, c)
            for i, (m, c) in enumerate(zip(self.managers, self.contexts, strict=True))
        ]

    def stats(self, upstream: dict[str, int]) -> dict[str, Any]:
        lat = self.latencies
        return {
            "calls": len(lat),
            "p50_us": percentile(lat, 0.50) * 1e6,
            "p99_us": percentile(lat, 0.99) * 1e6,
            "p999_us": percentile(lat, 0.999) * 1e6,
            "max_ms": max(lat) * 1000,
            "waited": sum(1 for x in lat if x >= INJECTED_LATENCY),
            "expired": self.expired,
            "wrong_audience": self.wrong_audience,
            "min_remaining_s": self.min_remaining,
            "distinct_tokens": len(self.exp_of),
            "token_requests": upstream.get(self.audience, 0),
        }


class GcPauses:
    """Records every garbage collection: (start, seconds, generation), on perf_counter."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float, int]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            now = time.perf_counter()
            self.events.append((self._started, now - self._started, int(info["generation"])))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)


class LogRecorder(logging.Handler):
    """Keeps the core's log records (refresh started, fetched) with CLOCK_MONOTONIC times."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), record.threadName or "", record.getMessage()))


def _rollover_fault(adk: AdkAuth) -> None:
    """Diagnosis only (``BENCH_ROLLOVER_FAULT``): what the refreshes of the run meet upstream.

    ``latency:S`` every refresh takes S seconds; ``fail:N`` the next N token
    requests answer 503; ``hang:N`` the next N are never answered.
    """
    fault = os.environ.get("BENCH_ROLLOVER_FAULT", "")
    if not fault:
        return
    kind, _, value = fault.partition(":")
    if kind == "latency":
        adk.emulator.call("set", latency=float(value))
    elif kind in ("fail", "hang"):
        adk.emulator.call("fault", kind=kind, n=int(value), endpoint="token")
    else:
        raise SystemExit(f"BENCH_ROLLOVER_FAULT={fault!r}: expected latency:S, fail:N or hang:N")


async def rollover(adk: AdkAuth) -> dict[str, Any]:
    """Target 4: callers for ~15 s while tokens expire every few seconds, 100 ms latency.

    Two groups of four callers run at the same time in one loop, so that both
    see the same machine: the control group's audience got a 1-hour token, the
    rollover group's tokens live ROLLOVER_TOKEN_LIFETIME seconds (the emulator
    issues every later token with that lifetime; the control never needs one).
    A loop-lag ticker runs alongside, so a slow call can be told apart from a
    stalled loop.
    """
    seconds = 5.0 if QUICK else ROLLOVER_SECONDS
    adk.emulator.call("set", latency=INJECTED_LATENCY, token_lifetime=3600)
    control = CallerGroup(adk, "control")
    await control.prime()
    adk.emulator.call("set", token_lifetime=ROLLOVER_TOKEN_LIFETIME)
    rolling = CallerGroup(adk, "rollover")
    await rolling.prime()
    adk.emulator.call("reset")
    _rollover_fault(adk)
    ticker = Ticker()
    await ticker.start()
    offset_before = time.time() - time.perf_counter()
    began = time.perf_counter()
    deadline = began + seconds
    pairs = zip(control.run(deadline), rolling.run(deadline), strict=True)
    with GcPauses() as pauses:
        await asyncio.gather(*(c for pair in pairs for c in pair))
    await ticker.stop()
    upstream = adk.emulator.counts()["token_requests_by_audience"]
    result = rolling.stats(upstream)
    result.update({f"control_{k}": v for k, v in control.stats(upstream).items()})
    result["p99_over_control"] = result["p99_us"] / result["control_p99_us"]
    result["callers"] = len(rolling.managers) + len(control.managers)
    result["token_lifetime_s"] = ROLLOVER_TOKEN_LIFETIME
    result["seconds"] = seconds
    result["worst_loop_lag_ms"] = ticker.worst() * 1000
    # A full collection inside a call is a slow call that awaited nothing.
    result["gc_worst_ms"] = max((d for _, d, _ in pauses.events), default=0.0) * 1000
    result["gc_full_collections"] = sum(1 for _, _, g in pauses.events if g == 2)
    if TRACE:
        records = adk.emulator.call("records")["records"]
        result["trace"] = {
            "began": began,
            # time.time() - time.perf_counter() before and after: a change is a clock step.
            "wall_minus_mono": [offset_before, time.time() - time.perf_counter()],
            "calls": rolling.trace,
            "exp": {str(n): rolling.exp_of[t] for t, n in rolling.order.items()},
            "upstream": [r for r in records if r["audience"] == rolling.audience],
            "log": LOG.records if LOG is not None else [],
            "ticks_over_2ms": [(a, b - a, q) for a, b, q in ticker.ticks if b - a > 0.003],
            "gc": [e for e in pauses.events if e[1] > 0.001 or e[2] == 2],
        }
    return result


async def _audiences(adk: AdkAuth, path: str) -> dict[str, Any]:
    """Target 5: 50 distinct audiences, sequentially, 20 ms latency."""
    adk.emulator.call("set", latency=MANY_AUDIENCES_LATENCY)
    context = adk.context()
    await adk.manager(audience("warmup"), path).get_auth_credential(context)
    names = [audience(f"aud-{i}") for i in range(50)]
    managers = [adk.manager(a, path) for a in names]
    adk.emulator.call("reset")
    tokens = []
    start = time.perf_counter()
    for manager in managers:
        tokens.append(token_of(await manager.get_auth_credential(context)))
    wall = time.perf_counter() - start
    counts = adk.emulator.counts()
    return {
        "wall_ms": wall * 1000,
        "per_exchange_ms": wall * 1000 / len(managers),
        "callers": len(tokens),
        "wrong_audience": sum(1 for t, a in zip(tokens, names, strict=True) if is_wrong(t, a)),
        "connections": counts["connections"],
        "token_requests": counts["token_requests"],
        "requests": counts["requests"],
    }


async def audiences_key(adk: AdkAuth) -> dict[str, Any]:
    return await _audiences(adk, "key")


async def audiences_metadata(adk: AdkAuth) -> dict[str, Any]:
    return await _audiences(adk, "metadata")


async def rss(adk: AdkAuth) -> dict[str, Any]:
    """Target 6: RSS after 100 000 warm exchanges through CredentialManager."""
    manager = adk.manager(audience("rss"))
    context = adk.context()
    total = 20_000 if QUICK else 100_000
    marks = {1_000, 10_000, total // 4, total // 2, 3 * total // 4, total}
    readings: dict[int, int] = {}
    token = ""
    for i in range(1, total + 1):
        token = token_of(await manager.get_auth_credential(context))
        if i in marks:
            gc.collect()
            readings[i] = rss_kib()
    return {
        "exchanges": total,
        "rss_kib": readings,
        "rss_final_mib": readings[total] / 1024,
        "growth_kib": readings[total] - readings[10_000],
        "wrong_audience": int(is_wrong(token, audience("rss"))),
    }


def import_cost(impl: str) -> dict[str, Any]:
    """Target 6: ``import adk_token_exchange`` (and ``install()``) beyond ADK's own import."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    import google.adk.agents
    import google.adk.auth.credential_manager
    import google.adk.tools.mcp_tool

    adk_done = time.perf_counter()
    rss_adk = rss_kib()
    result: dict[str, Any] = {"adk_import_ms": (adk_done - start) * 1000}
    if impl == "ours":
        import adk_token_exchange

        imported = time.perf_counter()
        if not broken("noop-install"):
            adk_token_exchange.install()
        installed = time.perf_counter()
        result.update(
            {
                "import_ms": (imported - adk_done) * 1000,
                "install_ms": (installed - imported) * 1000,
                "import_install_ms": (installed - adk_done) * 1000,
                "rss_import_kib": rss_kib() - rss_adk,
            }
        )
    # Provenance, after the measurements: what a manager built now would hold.
    from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
    from google.adk.auth.auth_credential import (
        AuthCredential,
        AuthCredentialTypes,
        ServiceAccount,
    )
    from google.adk.auth.auth_tool import AuthConfig

    manager = google.adk.auth.credential_manager.CredentialManager(
        AuthConfig(
            auth_scheme=OAuth2(
                flows=OAuthFlows(
                    clientCredentials=OAuthFlowClientCredentials(
                        tokenUrl="https://oauth2.googleapis.com/token", scopes={}
                    )
                )
            ),
            raw_auth_credential=AuthCredential(
                auth_type=AuthCredentialTypes.SERVICE_ACCOUNT,
                service_account=ServiceAccount(use_default_credential=True, scopes=[]),
            ),
        )
    )
    held = manager._exchanger_registry.get_exchanger(AuthCredentialTypes.SERVICE_ACCOUNT)
    result.update(
        {
            "exchangers": [f"{type(held).__module__}.{type(held).__qualname__}"],
            "ours_loaded": "adk_token_exchange" in sys.modules,
            "adk_version": google.adk.__version__,
        }
    )
    return result


def _held(thing: Any) -> str:
    """The dotted name of a class, of a function, or of an object's class."""
    kind = thing if isinstance(thing, (type, types.FunctionType)) else type(thing)
    return f"{kind.__module__}.{kind.__qualname__}"


def _plain_provenance(held: list[str]) -> dict[str, Any]:
    """Provenance of a scenario without ADK: what ran, and whether our package was loaded."""
    return {"exchangers": sorted(set(held)), "ours_loaded": "adk_token_exchange" in sys.modules}


def google_auth_httpx(audience: str, info: dict[str, Any]) -> Any:
    """google-auth's way on an httpx client, as Google's samples do it.

    An ``httpx.Auth`` over one ``IDTokenCredentials`` (the key path, as ours
    here), refreshed synchronously when not ``valid`` (google-auth is
    blocking), its token put in ``Authorization``.
    """
    import httpx
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    class GoogleAuthIdToken(httpx.Auth):
        def __init__(self) -> None:
            self.credentials = service_account.IDTokenCredentials.from_service_account_info(
                info, target_audience=audience
            )
            self.request = Request()

        def auth_flow(self, request: Any) -> Any:
            if not self.credentials.valid:
                self.credentials.refresh(self.request)
            request.headers["Authorization"] = "Bearer " + self.credentials.token
            yield request

    return GoogleAuthIdToken()


def constant_header_auth(value: str) -> Any:
    """The floor for any auth that sends this token: an ``httpx.Auth`` that sets a constant."""
    import httpx

    class ConstantHeader(httpx.Auth):
        async def async_auth_flow(self, request: Any) -> Any:
            request.headers["Authorization"] = value
            yield request

    return ConstantHeader()


async def httpx_auth(emulator: EmulatorProcess) -> dict[str, Any]:
    """Target 7: per-request overhead of the auth on an ``httpx.AsyncClient``, warm.

    One client, built as documented with the implementation's auth (ours:
    ``IdTokenAuth``; ``gauth``: the google-auth ``httpx.Auth`` above; both
    the key path), against a loopback server in the emulator's process that
    answers every request 200. Its requests rotate, in a shuffled order per
    round, between the client's auth, no auth (``auth=None`` on the request)
    and a constant-header ``httpx.Auth`` carrying the same token: the same
    client and keep-alive connection for all three, so only the auth
    differs. Each request is timed alone; an overhead is a median latency
    minus the median without auth.
    """
    import httpx

    info = emulator.call("service_account_info", email=None)["info"]
    url = emulator.call("ok_server")["url"]
    wanted = audience("httpx")
    asked = wanted.replace("-adk.", "-other-adk.") if broken("wrong-audience", SCENARIO) else wanted
    if ours_under_test():
        from adk_token_exchange import IdTokenAuth

        auth: Any = IdTokenAuth(asked, service_account_key=info)
    else:
        auth = google_auth_httpx(asked, info)
    rounds, warmup = (400, 100) if QUICK else (1_500, 200)
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    shuffle = random.Random(4458).shuffle
    samples: dict[str, list[float]] = {}
    not_ok = wrong = 0
    async with httpx.AsyncClient(auth=auth) as client:
        start = time.perf_counter()
        first = await client.get(url)
        first_ms = (time.perf_counter() - start) * 1000
        bearer = first.request.headers.get("Authorization", "")
        kinds: list[tuple[str, Any]] = [
            ("auth", httpx.USE_CLIENT_DEFAULT),
            ("plain", None),
            ("constant", constant_header_auth(bearer)),
        ]
        for _ in range(warmup):
            for _, kind in kinds:
                await client.get(url, auth=kind)
        for i in range(rounds):
            shuffle(kinds)
            for name, kind in kinds:
                t0, c0 = wall(), cpu()
                response = await client.get(url, auth=kind)
                c1, t1 = cpu(), wall()
                samples.setdefault(name, []).append((t1 - t0) / 1000)
                samples.setdefault(f"{name}_cpu", []).append((c1 - c0) / 1000)
                not_ok += response.status_code != 200
                if i % 100 == 0:
                    sent = response.request.headers.get("Authorization")
                    if name == "plain":
                        wrong += sent is not None
                    else:
                        wrong += is_wrong((sent or "").removeprefix("Bearer "), wanted)
        # What put the token on: our class, or google-auth's credentials under the adapter.
        used = client.auth
        held = [_held(getattr(used, "credentials", used))]
    served = emulator.call("ok_server")["requests"]
    med = {k: statistics.median(v) for k, v in samples.items()}
    result: dict[str, Any] = {f"{k}_us": v for k, v in med.items()}
    for clock in ("", "_cpu"):
        for name in ("auth", "constant"):
            result[f"{name}_overhead{clock}_us"] = med[f"{name}{clock}"] - med[f"plain{clock}"]
        # What the implementation adds beyond httpx's own auth flow (the floor).
        result[f"auth_over_floor{clock}_us"] = med[f"auth{clock}"] - med[f"constant{clock}"]
    result.update(
        {
            "first_request_ms": first_ms,
            "requests": 1 + len(kinds) * (warmup + rounds),
            "requests_served": served,
            "not_ok": not_ok + (first.status_code != 200),
            "wrong_audience": wrong + is_wrong(bearer.removeprefix("Bearer "), wanted),
            "token_requests": emulator.counts()["token_requests"],
        }
    )
    return result | _plain_provenance(held)


VERIFY_AUDIENCE = "https://svc-bench-123456789012.us-central1.run.app"


def cached_certs_request() -> Any:
    """A google-auth ``Request`` that answers a GET it has answered before from memory.

    What a caching session (``cachecontrol``, as google-auth's docs suggest)
    does on a hit, without its lookup cost: google-auth at its best.
    """
    import google.auth.transport.requests as transport

    class CachedCertsRequest(transport.Request):
        def __init__(self) -> None:
            super().__init__()
            self.memo: dict[str, Any] = {}

        def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
            if method == "GET" and url in self.memo:
                return self.memo[url]
            response = super().__call__(url, method=method, **kwargs)
            if method == "GET" and response.status == 200:
                self.memo[url] = response
            return response

    return CachedCertsRequest()


async def verify(emulator: EmulatorProcess) -> dict[str, Any]:
    """Target 7: server-side ID-token verification, ours vs google-auth, warm and fresh.

    The emulator signs the tokens (RS256) before anything is timed; both sides
    fetch its keys (ours the JWK set, google-auth the PEM map
    ``verify_oauth2_token`` reads). Warm: the token a caller presents on every
    request; fresh: a new token each call (signature checked). Ours:
    ``IdTokenVerifier.verify`` and ``await verify_async``. google-auth:
    ``verify_oauth2_token(token, Request(), audience)`` as documented (a new
    ``Request`` per call: the certs are fetched every call), and with
    ``cached_certs_request()`` (certs from memory after the first fetch; the PEM
    is still parsed every call, which google-auth's API has no way to avoid).
    """
    n_fresh = (200 if QUICK else 1_000) if IMPL == "ours" else (100 if QUICK else 500)
    email = "agent@bench.iam.gserviceaccount.com"
    tokens = emulator.call("issue_id_tokens", audience=VERIFY_AUDIENCE, email=email, n=1 + n_fresh)[
        "tokens"
    ]
    token, fresh = tokens[0], tokens[1:]
    info = emulator.call("info")
    emulator.call("reset")
    timed = Batches()
    result: dict[str, Any] = {}
    checked: list[dict[str, Any]] = []
    chunks = [fresh[i : i + 100] for i in range(0, len(fresh), 100)]
    start = time.perf_counter()
    if ours_under_test():
        from adk_token_exchange.server import IdTokenVerifier

        verifier = IdTokenVerifier(VERIFY_AUDIENCE, jwks_url=info["jwks_url"])
        checked.append(verifier.verify(token))
        first_ms = (time.perf_counter() - start) * 1000
        sync_verify, async_verify = verifier.verify, verifier.verify_async
        batches, n = (5, 2_000) if QUICK else (20, 10_000)
        for _ in range(n):
            sync_verify(token)
            await async_verify(token)
        for _ in range(batches):
            with timed.timing("warm", n):
                for _ in range(n):
                    claims = sync_verify(token)
            checked.append(claims)
            with timed.timing("warm_async", n):
                for _ in range(n):
                    claims = await async_verify(token)
            checked.append(claims)
        for chunk in chunks:
            with timed.timing("fresh", len(chunk)):
                for one in chunk:
                    claims = sync_verify(one)
            checked.append(claims)
        held = [_held(verifier)]
    else:
        import google.auth.transport.requests as transport
        from google.oauth2 import id_token

        # What verify_oauth2_token reads; patched, the certs come from the emulator.
        id_token._GOOGLE_OAUTH2_CERTS_URL = info["certs_url"]
        ga_verify = id_token.verify_oauth2_token
        checked.append(ga_verify(token, transport.Request(), VERIFY_AUDIENCE))
        first_ms = (time.perf_counter() - start) * 1000
        default_batches, default_n = (2, 10) if QUICK else (5, 20)
        for _ in range(default_batches):
            with timed.timing("default", default_n):
                for _ in range(default_n):
                    claims = ga_verify(token, transport.Request(), VERIFY_AUDIENCE)
            checked.append(claims)
        default_calls = 1 + default_batches * default_n
        result["default_calls"] = default_calls
        cached = cached_certs_request()
        batches, n = (3, 200) if QUICK else (10, 500)
        for _ in range(n):
            ga_verify(token, cached, VERIFY_AUDIENCE)
        for _ in range(batches):
            with timed.timing("cached", n):
                for _ in range(n):
                    claims = ga_verify(token, cached, VERIFY_AUDIENCE)
            checked.append(claims)
        for chunk in chunks:
            with timed.timing("cached_fresh", len(chunk)):
                for one in chunk:
                    claims = ga_verify(one, cached, VERIFY_AUDIENCE)
            checked.append(claims)
        held = [_held(ga_verify)]
    counts = emulator.counts()
    result.update(timed.figures())
    result.update(
        {
            "first_verification_ms": first_ms,
            "certs_fetches": counts["by_kind"].get("certs", 0),
            "wrong_audience": sum(1 for c in checked if c.get("aud") != VERIFY_AUDIENCE),
            "fresh_tokens": len(fresh),
        }
    )
    return result | _plain_provenance(held)


MCP_TOKEN_LIFETIME = int(os.environ.get("BENCH_MCP_LIFETIME", "3"))  # seconds
MCP_ROTATIONS = 5  # token rotations the MCP sessions are counted across
MCP_DEADLINE = 25.0  # seconds; a run that has not seen them by then misses


def _scripted_model() -> Any:
    """A model for an offline ADK agent: asks for ``greet(name="Ada")``, then quotes it.

    The worker's own (the testing package has one, but importing it would load
    ``adk_token_exchange`` into the stock run).
    """
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_response import LlmResponse
    from google.genai import types as genai

    class ScriptedModel(BaseLlm):
        model: str = "scripted"

        async def generate_content_async(self, llm_request: Any, stream: bool = False) -> Any:
            last = llm_request.contents[-1] if llm_request.contents else None
            answers = [p.function_response for p in (last.parts or []) if p.function_response]
            if answers:
                text = json.dumps(answers[0].response, default=str)
                part = genai.Part(text=f"Tool said: {text}")
            else:
                part = genai.Part(
                    function_call=genai.FunctionCall(name="greet", args={"name": "Ada"})
                )
            yield LlmResponse(content=genai.Content(role="model", parts=[part]))

    return ScriptedModel()


async def mcp_rotation(emulator: EmulatorProcess) -> dict[str, Any]:
    """Target 7: MCP sessions a real ADK agent opens while its ID token rotates.

    The emulator issues MCP_TOKEN_LIFETIME-second tokens; an ``LlmAgent``
    (scripted model) with one ``McpToolset`` runs turns in one ``Runner``
    session, 0.25 s apart, each a ``greet`` call on the testing package's
    ``ProtectedMcpServer`` (Cloud Run's ID-token check; it counts MCP
    ``initialize`` requests and the distinct tokens it let through), until
    the server has seen MCP_ROTATIONS token rotations.
    ``ours``: ``StreamableHTTPConnectionParams(httpx_client_factory=
    http_client_factory(IdTokenAuth(url)))``, no ``auth_credential``;
    ``stock``: ADK's way, ``auth_scheme`` + a service-account
    ``auth_credential`` exchanged by ADK's own exchanger, the token in the
    session's headers.
    """
    warnings.simplefilter("ignore")
    import google.adk
    from google.adk.agents.llm_agent import LlmAgent
    from google.adk.auth import auth_credential as ac
    from google.adk.runners import Runner
    from google.adk.sessions.in_memory_session_service import InMemorySessionService
    from google.adk.tools.mcp_tool.mcp_session_manager import StreamableHTTPConnectionParams
    from google.adk.tools.mcp_tool.mcp_toolset import McpToolset
    from google.genai import types as genai

    emulator.call("set", token_lifetime=MCP_TOKEN_LIFETIME)
    server = emulator.call("mcp_start")
    url, server_audience = server["url"], server["audience"]
    info = emulator.call("service_account_info", email=None)["info"]
    held: list[str] = []
    if ours_under_test():
        from adk_token_exchange import IdTokenAuth, http_client_factory

        factory = http_client_factory(IdTokenAuth(url, service_account_key=info))

        def recording_factory(
            headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
        ) -> Any:
            client = factory(headers=headers, timeout=timeout, auth=auth)
            held.append(_held(client.auth))
            return client

        params = StreamableHTTPConnectionParams(url=url, httpx_client_factory=recording_factory)
        toolset = McpToolset(connection_params=params)
    else:
        from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows

        scheme = OAuth2(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(
                    tokenUrl="https://oauth2.googleapis.com/token", scopes={}
                )
            )
        )
        credential = ac.AuthCredential(
            auth_type=ac.AuthCredentialTypes.SERVICE_ACCOUNT,
            service_account=ac.ServiceAccount(
                service_account_credential=ac.ServiceAccountCredential.model_validate(info),
                use_id_token=True,
                audience=server_audience,
                scopes=[],
            ),
        )
        toolset = McpToolset(
            connection_params=StreamableHTTPConnectionParams(url=url),
            auth_scheme=scheme,
            auth_credential=credential,
        )
    tool_calls = 0

    def before_tool(tool: Any, args: Any, tool_context: Any) -> None:
        # The tool that really runs: a credential manager means the header road.
        nonlocal tool_calls
        tool_calls += 1
        manager = getattr(tool, "_credentials_manager", None)
        if manager is not None:
            held.append(
                _held(
                    manager._exchanger_registry.get_exchanger(
                        ac.AuthCredentialTypes.SERVICE_ACCOUNT
                    )
                )
            )

    agent = LlmAgent(
        name="bench",
        model=_scripted_model(),
        instruction="Use the tools to greet the user.",
        tools=[toolset],
        before_tool_callback=before_tool,
    )
    runner = Runner(app_name="bench", agent=agent, session_service=InMemorySessionService())
    # Turns until the server has seen MCP_ROTATIONS rotations (for both sides: the
    # sessions are counted across the same number of tokens), at most MCP_DEADLINE s.
    # With 3-second tokens ours refreshes every 1.5-2.25 s (3/4 of the 2-3 s it
    # sees): 5 rotations take 7.5-11.25 s; stock asks for a new token every call.
    rotations, deadline, pause = (1, 8.0, 0.25) if QUICK else (MCP_ROTATIONS, MCP_DEADLINE, 0.25)
    expected = f"Hello, Ada! (called by {info['client_email']})"
    turns = answered = 0
    started = time.perf_counter()
    try:
        session = await runner.session_service.create_session(app_name="bench", user_id="user")
        message = genai.Content(role="user", parts=[genai.Part(text="Say hello")])
        while time.perf_counter() - started < deadline:
            if turns:
                if emulator.call("mcp_counts")["distinct_tokens"] > rotations:
                    break
                await asyncio.sleep(pause)
            turns += 1
            texts = [
                part.text
                async for event in runner.run_async(
                    user_id="user", session_id=session.id, new_message=message
                )
                for part in ((event.content.parts or []) if event.content else [])
                if part.text
            ]
            answered += any(expected in t for t in texts)
    finally:
        await runner.close()
    seconds = time.perf_counter() - started
    counts = emulator.call("mcp_counts")
    return {
        "turns": turns,
        "answered": answered,
        "tool_calls": tool_calls,
        "seconds": seconds,
        "token_lifetime_s": MCP_TOKEN_LIFETIME,
        "sessions": counts["initializations"],
        "distinct_tokens": counts["distinct_tokens"],
        "rotations": max(0, counts["distinct_tokens"] - 1),
        "mcp_requests": counts["accepted"] + counts["refused"],
        "refused": counts["refused"],
        "refusals": counts["refusals"],
        "wrong_audience": counts["wrong_audience"],
        "token_requests": emulator.counts()["token_requests"],
        "adk_version": google.adk.__version__,
    } | _plain_provenance(held)


ASYNC_SCENARIOS: dict[str, Callable[[AdkAuth], Awaitable[dict[str, Any]]]] = {
    "warm": warm,
    "coroutine": coroutine,
    "cold_key": cold_key,
    "cold_metadata": cold_metadata,
    "burst_loop": burst_loop,
    "rollover": rollover,
    "audiences_key": audiences_key,
    "audiences_metadata": audiences_metadata,
    "rss": rss,
}
SYNC_SCENARIOS: dict[str, Callable[[AdkAuth], dict[str, Any]]] = {"burst_threads": burst_threads}
# No ADK auth objects (and no install()): they build what they measure, provenance included.
EMULATOR_SCENARIOS: dict[str, Callable[[EmulatorProcess], Awaitable[dict[str, Any]]]] = {
    "httpx_auth": httpx_auth,
    "mcp_rotation": mcp_rotation,
    "verify": verify,
}
SCENARIOS = [*ASYNC_SCENARIOS, *SYNC_SCENARIOS, *EMULATOR_SCENARIOS, "import"]
LOG: LogRecorder | None = None


def _break(scenario: str) -> None:
    if broken("hang", scenario):
        print(f"BENCH_BREAK: {scenario} hangs on purpose", file=sys.stderr, flush=True)
        threading.Event().wait()
    if broken("error", scenario):
        raise RuntimeError(f"BENCH_BREAK: {scenario} fails on purpose")


def _adk_scenario(scenario: str, impl: str, emulator: EmulatorProcess) -> dict[str, Any]:
    adk = AdkAuth(impl, emulator)
    if scenario in ASYNC_SCENARIOS:
        result = asyncio.run(ASYNC_SCENARIOS[scenario](adk))
    elif scenario in SYNC_SCENARIOS:
        result = SYNC_SCENARIOS[scenario](adk)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    result.update(adk.provenance())
    return result


def main() -> None:
    global SCENARIO, IMPL, LOG
    scenario, impl = sys.argv[1], sys.argv[2]
    SCENARIO, IMPL = scenario, impl
    # A hung worker dumps every thread's Python stack to stderr before the
    # runner's timeout (which then adds the native stacks with gdb).
    timeout = float(os.environ.get("BENCH_WORKER_TIMEOUT", "180"))
    faulthandler.dump_traceback_later(max(5.0, timeout - 20), exit=False)
    if impl not in IMPLS:
        raise SystemExit(f"unknown implementation {impl!r}")
    if TRACE:
        LOG = LogRecorder()
        logging.getLogger("adk_token_exchange").addHandler(LOG)
        logging.getLogger("adk_token_exchange").setLevel(logging.DEBUG)
    _break(scenario)
    if scenario == "import":
        result = import_cost(impl)
    else:
        emulator = EmulatorProcess()
        try:
            # google-auth reads these once, at import: set them before any import.
            os.environ["GCE_METADATA_HOST"] = emulator.metadata_host
            os.environ["GCE_METADATA_IP"] = emulator.metadata_host
            if scenario in EMULATOR_SCENARIOS:
                result = asyncio.run(EMULATOR_SCENARIOS[scenario](emulator))
            else:
                result = _adk_scenario(scenario, impl, emulator)
            counts = emulator.counts()
            result["emulator_internal_errors"] = counts["internal_errors"]
        finally:
            emulator.stop()
    result["loadavg_1m"] = os.getloadavg()[0]
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

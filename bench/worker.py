"""One benchmark scenario, one exchanger, one fresh process.

``worker.py SCENARIO IMPL [--quick]`` with IMPL ``stock`` (ADK's own
``ServiceAccountCredentialExchanger``) or ``ours`` (``adk_token_exchange.install()``).
It starts the Google emulator in a child process (``emulator_server.py``),
points the metadata variables at it *before* google-auth is imported, runs the
scenario and prints one line ``BENCH-RESULT <json>``. ``runner.py`` starts it
with an isolated environment (temporary HOME and CLOUDSDK_CONFIG, no
GOOGLE_APPLICATION_CREDENTIALS) and, where it can, in a network namespace that
has nothing but loopback.

Every scenario goes through ADK's ``CredentialManager.get_auth_credential``,
as ADK's tools call it, with a real ``Context`` (session, invocation) so both
exchangers pay the same ADK overhead.
"""

from __future__ import annotations

import asyncio
import base64
import faulthandler
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INJECTED_LATENCY = 0.100  # seconds, targets 2-4
MANY_AUDIENCES_LATENCY = 0.020  # seconds, target 5
ROLLOVER_TOKEN_LIFETIME = 4  # seconds: tokens "expire every few seconds"
QUICK = "--quick" in sys.argv


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


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, unverified (only ``exp`` and ``aud`` are read)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


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


class AdkAuth:
    """ADK's auth objects (scheme, credentials, managers, contexts) wired to one exchanger."""

    def __init__(self, impl: str, emulator: EmulatorProcess) -> None:
        self.impl = impl
        self.emulator = emulator
        warnings.simplefilter("ignore")
        from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
        from google.adk.agents.context import Context
        from google.adk.agents.invocation_context import InvocationContext
        from google.adk.auth import auth_credential
        from google.adk.auth.auth_tool import AuthConfig
        from google.adk.auth.credential_manager import CredentialManager
        from google.adk.sessions import InMemorySessionService, Session

        self._ac = auth_credential
        self._AuthConfig = AuthConfig
        self._CredentialManager = CredentialManager
        self._Context = Context
        self._InvocationContext = InvocationContext
        self._Session = Session
        self._session_service = InMemorySessionService()
        self.scheme = OAuth2(
            flows=OAuthFlows(
                clientCredentials=OAuthFlowClientCredentials(
                    tokenUrl="https://oauth2.googleapis.com/token", scopes={}
                )
            )
        )
        if impl == "ours":
            import adk_token_exchange

            adk_token_exchange.install()
            self._clear: Callable[[], None] = adk_token_exchange.clear_cache
        else:
            from google.adk.tools.openapi_tool.auth.credential_exchangers import (
                service_account_exchanger,
            )

            self._clear = service_account_exchanger._reset_cache
        self._key: Any = None

    def key(self) -> Any:
        if self._key is None:
            info = self.emulator.call("service_account_info", email=None)["info"]
            self._key = self._ac.ServiceAccountCredential.model_validate(info)
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
            sa = ac.ServiceAccount(
                use_default_credential=True, use_id_token=True, audience=audience
            )
        return ac.AuthCredential(
            auth_type=ac.AuthCredentialTypes.SERVICE_ACCOUNT, service_account=sa
        )

    def manager(self, audience: str, path: str = "key") -> Any:
        config = self._AuthConfig(
            auth_scheme=self.scheme, raw_auth_credential=self.credential(audience, path)
        )
        return self._CredentialManager(config)

    def exchanger(self, manager: Any) -> Any:
        return manager._exchanger_registry.get_exchanger(
            self._ac.AuthCredentialTypes.SERVICE_ACCOUNT
        )

    def context(self, user: str = "user-0") -> Any:
        session = self._Session(id=f"session-{user}", app_name="bench", user_id=user)
        invocation = self._InvocationContext(
            session_service=self._session_service,
            invocation_id=f"invocation-{user}",
            session=session,
        )
        return self._Context(invocation)

    def clear(self) -> None:
        self._clear()

    def provenance(self, manager: Any) -> str:
        exchanger = self.exchanger(manager)
        return f"{type(exchanger).__module__}.{type(exchanger).__qualname__}"


def token_of(credential: Any) -> str:
    token: str = credential.http.credentials.token
    return token


def audience(name: str) -> str:
    return f"https://{name}-adk.a.run.app"


# -- scenarios ------------------------------------------------------------------------


async def warm(adk: AdkAuth) -> dict[str, Any]:
    """Target 1: warm exchange through CredentialManager, and the exchanger call alone."""
    manager = adk.manager(audience("warm"))
    context = adk.context()
    await manager.get_auth_credential(context)
    batches, per_batch = (5, 300) if QUICK else (40, 1000)
    for _ in range(per_batch * 2):  # warm-up
        await manager.get_auth_credential(context)

    async def through_manager(n: int) -> None:
        for _ in range(n):
            await manager.get_auth_credential(context)

    # The exchanger alone, called as CredentialManager calls it: stock
    # synchronously (exchange_credential), ours awaited (exchange), each call
    # with its own deep copy of the tool's credential, as the manager hands it
    # over (made before the batch, outside the timing; the previous batch's
    # copies stay alive while the next are made, so no address repeats).
    # Also reported: the same credential object on every call (hot caches).
    exchanger = adk.exchanger(manager)
    raw = manager._auth_config.raw_auth_credential
    same = raw.model_copy(deep=True)
    scheme = adk.scheme
    copies = 300 if QUICK else 2000
    fresh: list[Any] = []

    def new_copies() -> None:
        fresh[:] = [raw.model_copy(deep=True) for _ in range(copies)]

    async def exchanger_alone(credentials: list[Any]) -> None:
        if adk.impl == "ours":
            for credential in credentials:
                await exchanger.exchange(credential, scheme)
        else:
            for credential in credentials:
                exchanger.exchange_credential(scheme, credential)

    async def exchanger_sync(credentials: list[Any]) -> None:
        for credential in credentials:
            exchanger.exchange_credential(scheme, credential)

    async def exchanger_fresh(_: int) -> None:
        await exchanger_alone(fresh)

    async def exchanger_same(n: int) -> None:
        await exchanger_alone([same] * n)

    async def exchanger_sync_fresh(_: int) -> None:
        await exchanger_sync(fresh)

    figures: dict[str, Any] = {"exchanger": adk.provenance(manager)}
    for name, body, n, prepare in (
        ("manager", through_manager, per_batch, None),
        ("exchanger", exchanger_fresh, copies, new_copies),
        ("exchanger_same", exchanger_same, copies, None),
        ("exchanger_sync", exchanger_sync_fresh, copies, new_copies),
    ):
        wall, cpu = [], []
        for _ in range(batches):
            if prepare is not None:
                prepare()
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            await body(n)
            cpu.append((time.thread_time_ns() - start_cpu) / n / 1000)
            wall.append((time.perf_counter_ns() - start) / n / 1000)
        figures[f"{name}_us"] = statistics.median(wall)
        figures[f"{name}_min_us"] = min(wall)
        figures[f"{name}_cpu_us"] = statistics.median(cpu)
    figures["token_requests"] = adk.emulator.counts()["token_requests"]
    return figures


async def _cold(adk: AdkAuth, path: str) -> dict[str, Any]:
    """Target 2: loop lag during cold exchanges (the first of the process, then others)."""
    adk.emulator.call("set", latency=INJECTED_LATENCY)
    exchanges = 3 if QUICK else 5
    managers = [adk.manager(audience(f"cold-{i}"), path) for i in range(exchanges)]
    context = adk.context()
    ticker = Ticker()
    await ticker.start()
    windows = []
    tokens = []
    for manager in managers:
        start = time.perf_counter()
        credential = await manager.get_auth_credential(context)
        windows.append((start, time.perf_counter()))
        tokens.append(token_of(credential))
        await asyncio.sleep(0.03)
    await ticker.stop()
    lags = [ticker.max_lag(a, b) for a, b in windows]
    own_lags = [ticker.max_lag(a, b, own=True) for a, b in windows]
    wrong_audience = sum(
        1
        for token, manager in zip(tokens, managers, strict=True)
        if jwt_claims(token)["aud"]
        != manager._auth_config.raw_auth_credential.service_account.audience
    )
    counts = adk.emulator.counts()
    return {
        "exchanger": adk.provenance(managers[0]),
        "first_lag_ms": lags[0] * 1000,
        "later_lag_ms": max(lags[1:]) * 1000,
        "first_own_lag_ms": own_lags[0] * 1000,
        "later_own_lag_ms": max(own_lags[1:]) * 1000,
        "first_exchange_ms": (windows[0][1] - windows[0][0]) * 1000,
        "later_exchange_ms": statistics.median(b - a for a, b in windows[1:]) * 1000,
        "baseline_lag_ms": ticker.baseline_lag(windows) * 1000,
        "wrong_audience": wrong_audience,
        "token_requests": counts["token_requests"],
        "requests": counts["requests"],
    }


async def cold_key(adk: AdkAuth) -> dict[str, Any]:
    return await _cold(adk, "key")


async def cold_metadata(adk: AdkAuth) -> dict[str, Any]:
    return await _cold(adk, "metadata")


CALLERS = 100
THREADS = 8


async def _single_request(adk: AdkAuth) -> float:
    """Wall time of one cold exchange (process already warmed up)."""
    manager = adk.manager(audience("single"))
    start = time.perf_counter()
    await manager.get_auth_credential(adk.context())
    return time.perf_counter() - start


async def _burst(adk: AdkAuth, manager: Any, users: list[str]) -> tuple[float, float, list[str]]:
    contexts = [adk.context(user) for user in users]
    start = time.perf_counter()
    credentials = await asyncio.gather(*(manager.get_auth_credential(c) for c in contexts))
    return start, time.perf_counter(), [token_of(c) for c in credentials]


async def _burst_setup(adk: AdkAuth) -> float:
    adk.emulator.call("set", latency=INJECTED_LATENCY)
    await adk.manager(audience("warmup")).get_auth_credential(adk.context())
    single = await _single_request(adk)
    adk.emulator.call("reset")
    return single


def _burst_result(
    adk: AdkAuth, manager: Any, single: float, spans: list[tuple[float, float, list[str]]]
) -> dict[str, Any]:
    counts = adk.emulator.counts()
    wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    tokens = [t for _, _, batch in spans for t in batch]
    return {
        "exchanger": adk.provenance(manager),
        "callers": len(tokens),
        "token_requests": counts["token_requests"],
        "connections": counts["connections"],
        "distinct_tokens": len(set(tokens)),
        "wall_ms": wall * 1000,
        "single_ms": single * 1000,
        "wall_over_single": wall / single,
    }


async def burst_loop(adk: AdkAuth) -> dict[str, Any]:
    """Target 3: 100 concurrent cold callers (distinct users) for one audience, one loop."""
    single = await _burst_setup(adk)
    manager = adk.manager(audience("burst"))
    span = await _burst(adk, manager, [f"user-{i}" for i in range(CALLERS)])
    return _burst_result(adk, manager, single, [span])


def burst_threads(adk: AdkAuth) -> dict[str, Any]:
    """Target 3: the same 100 callers from 8 threads, each with its own event loop."""
    single = asyncio.run(_burst_setup(adk))
    barrier = threading.Barrier(THREADS)
    spans: list[tuple[float, float, list[str]]] = []
    managers = []
    lock = threading.Lock()
    users = [f"user-{i}" for i in range(CALLERS)]
    shares = [users[i::THREADS] for i in range(THREADS)]

    def thread_main(share: list[str]) -> None:
        manager = adk.manager(audience("burst"))  # each thread its own tool

        async def run() -> tuple[float, float, list[str]]:
            barrier.wait()
            return await _burst(adk, manager, share)

        span = asyncio.run(run())
        with lock:
            spans.append(span)
            managers.append(manager)

    threads = [threading.Thread(target=thread_main, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _burst_result(adk, managers[0], single, spans)


class CallerGroup:
    """CallerGroup that exchange in a loop, each with a 2 ms pause, recording every hand-out."""

    def __init__(self, adk: AdkAuth, name: str, callers: int = 4) -> None:
        self.audience = audience(name)
        self.managers = [adk.manager(self.audience) for _ in range(callers)]
        self.contexts = [adk.context(f"{name}-user-{i}") for i in range(callers)]
        self.latencies: list[float] = []
        self.expired = 0
        self.min_remaining = float("inf")
        self.exp_of: dict[str, int] = {}

    async def prime(self) -> None:
        for manager, context in zip(self.managers, self.contexts, strict=True):
            await manager.get_auth_credential(context)

    def run(self, deadline: float) -> list[Coroutine[Any, Any, None]]:
        """One coroutine per caller (interleave groups: the first task after a wake-up is
        slower, its caches are cold)."""

        async def caller(manager: Any, context: Any) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                credential = await manager.get_auth_credential(context)
                self.latencies.append(time.perf_counter() - start)
                now = time.time()
                token = token_of(credential)
                exp = self.exp_of.get(token)
                if exp is None:
                    exp = self.exp_of[token] = int(jwt_claims(token)["exp"])
                if exp <= now:
                    self.expired += 1
                self.min_remaining = min(self.min_remaining, exp - now)
                await asyncio.sleep(0.002)

        return [caller(m, c) for m, c in zip(self.managers, self.contexts, strict=True)]

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
            "min_remaining_s": self.min_remaining,
            "distinct_tokens": len(self.exp_of),
            "token_requests": upstream.get(self.audience, 0),
        }


async def rollover(adk: AdkAuth) -> dict[str, Any]:
    """Target 4: callers for ~20 s while tokens expire every few seconds, 100 ms latency.

    Two groups of four callers run at the same time in one loop, so that both
    see the same machine: the control group's audience got a 1-hour token, the
    rollover group's tokens live ROLLOVER_TOKEN_LIFETIME seconds (the emulator
    issues every later token with that lifetime; the control never needs one).
    """
    seconds = 5.0 if QUICK else 20.0
    adk.emulator.call("set", latency=INJECTED_LATENCY, token_lifetime=3600)
    control = CallerGroup(adk, "control")
    await control.prime()
    adk.emulator.call("set", token_lifetime=ROLLOVER_TOKEN_LIFETIME)
    rolling = CallerGroup(adk, "rollover")
    await rolling.prime()
    adk.emulator.call("reset")
    deadline = time.perf_counter() + seconds
    pairs = zip(control.run(deadline), rolling.run(deadline), strict=True)
    await asyncio.gather(*(c for pair in pairs for c in pair))
    upstream = adk.emulator.counts()["token_requests_by_audience"]
    result = rolling.stats(upstream)
    result.update({f"control_{k}": v for k, v in control.stats(upstream).items()})
    result["p99_over_control"] = result["p99_us"] / result["control_p99_us"]
    result["token_lifetime_s"] = ROLLOVER_TOKEN_LIFETIME
    result["seconds"] = seconds
    result["exchanger"] = adk.provenance(rolling.managers[0])
    return result


async def _audiences(adk: AdkAuth, path: str) -> dict[str, Any]:
    """Target 5: 50 distinct audiences, sequentially, 20 ms latency."""
    adk.emulator.call("set", latency=MANY_AUDIENCES_LATENCY)
    context = adk.context()
    await adk.manager(audience("warmup"), path).get_auth_credential(context)
    managers = [adk.manager(audience(f"aud-{i}"), path) for i in range(50)]
    adk.emulator.call("reset")
    start = time.perf_counter()
    for manager in managers:
        await manager.get_auth_credential(context)
    wall = time.perf_counter() - start
    counts = adk.emulator.counts()
    return {
        "exchanger": adk.provenance(managers[0]),
        "wall_ms": wall * 1000,
        "per_exchange_ms": wall * 1000 / len(managers),
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
    for i in range(1, total + 1):
        await manager.get_auth_credential(context)
        if i in marks:
            gc.collect()
            readings[i] = rss_kib()
    return {
        "exchanger": adk.provenance(manager),
        "exchanges": total,
        "rss_kib": readings,
        "rss_final_mib": readings[total] / 1024,
        "growth_kib": readings[total] - readings[10_000],
    }


def import_cost(impl: str) -> dict[str, Any]:
    """Target 6: ``import adk_token_exchange`` (and ``install()``) beyond ADK's own import."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    import google.adk.agents
    import google.adk.auth.credential_manager
    import google.adk.tools.mcp_tool  # noqa: F401

    adk_done = time.perf_counter()
    rss_adk = rss_kib()
    result: dict[str, Any] = {"adk_import_ms": (adk_done - start) * 1000}
    if impl == "ours":
        import adk_token_exchange

        imported = time.perf_counter()
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
    return result


ASYNC_SCENARIOS: dict[str, Callable[[AdkAuth], Awaitable[dict[str, Any]]]] = {
    "warm": warm,
    "cold_key": cold_key,
    "cold_metadata": cold_metadata,
    "burst_loop": burst_loop,
    "rollover": rollover,
    "audiences_key": audiences_key,
    "audiences_metadata": audiences_metadata,
    "rss": rss,
}
SYNC_SCENARIOS: dict[str, Callable[[AdkAuth], dict[str, Any]]] = {"burst_threads": burst_threads}
SCENARIOS = [*ASYNC_SCENARIOS, *SYNC_SCENARIOS, "import"]


def main() -> None:
    scenario, impl = sys.argv[1], sys.argv[2]
    # A hung worker dumps every thread's Python stack to stderr before the
    # runner's timeout (which then adds the native stacks with gdb).
    timeout = float(os.environ.get("BENCH_WORKER_TIMEOUT", "180"))
    faulthandler.dump_traceback_later(max(5.0, timeout - 20), exit=False)
    if impl not in ("stock", "ours"):
        raise SystemExit(f"unknown implementation {impl!r}")
    if scenario == "import":
        result = import_cost(impl)
    else:
        emulator = EmulatorProcess()
        try:
            # google-auth reads these once, at import: set them before any import.
            os.environ["GCE_METADATA_HOST"] = emulator.metadata_host
            os.environ["GCE_METADATA_IP"] = emulator.metadata_host
            adk = AdkAuth(impl, emulator)
            if scenario in ASYNC_SCENARIOS:
                result = asyncio.run(ASYNC_SCENARIOS[scenario](adk))
            elif scenario in SYNC_SCENARIOS:
                result = SYNC_SCENARIOS[scenario](adk)
            else:
                raise SystemExit(f"unknown scenario {scenario!r}")
            counts = emulator.counts()
            if counts["internal_errors"]:
                result["emulator_internal_errors"] = counts["internal_errors"]
        finally:
            emulator.stop()
    result["loadavg_1m"] = os.getloadavg()[0]
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

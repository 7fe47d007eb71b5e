"""Threads, event loops and single-flight under load (project issue 5, item 7).

16 threads, each with its own event loop or none, share one process-wide token
cache: no deadlock, no error, and one upstream request per key per refresh.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import defaultdict

import pytest
from adk_token_exchange import _native
from adk_token_exchange.errors import TokenExchangeError
from adk_token_exchange.testing import GoogleEmulator
from support.core import sa_credentials
from support.measure import join_all, wait_until
from support.processes import watchdog

AUDIENCES = ["https://mcp-a-uc.a.run.app", "https://mcp-b-uc.a.run.app"]
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _key(record) -> str:  # type: ignore[no-untyped-def]
    return record.audience or " ".join(sorted(record.scopes))


@watchdog(90)
def test_sixteen_threads_with_their_own_loops_make_16000_exchanges_across_refreshes(
    emulator: GoogleEmulator,
) -> None:
    """Even threads await, odd threads block; 4-second tokens roll over ~3 times per key."""
    emulator.token_lifetime = 4
    creds = sa_credentials(emulator.service_account_info())
    threads_n, per_thread, duration = 16, 1000, 9.0
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads_n)
    start = 0.0

    def ask(i: int) -> tuple[str, str]:
        slot = i % 3
        return ("access", "") if slot == 2 else ("id", AUDIENCES[slot])

    def check(token, kind: str) -> None:  # type: ignore[no-untyped-def]
        assert token.kind == kind
        assert token.expires_at > time.time(), "an expired token was handed out"

    def sync_thread() -> None:
        barrier.wait()
        for i in range(per_thread):
            delay = start + duration * i / per_thread - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kind, audience = ask(i)
            try:
                check(
                    creds.id_token(audience) if kind == "id" else creds.access_token(SCOPES), kind
                )
            except BaseException as e:
                with lock:
                    errors.append(e)

    def async_thread() -> None:
        async def run() -> None:
            for i in range(per_thread):
                delay = start + duration * i / per_thread - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind, audience = ask(i)
                try:
                    token = await (
                        creds.id_token_async(audience)
                        if kind == "id"
                        else creds.access_token_async(SCOPES)
                    )
                    check(token, kind)
                except BaseException as e:
                    with lock:
                        errors.append(e)

        loop = asyncio.new_event_loop()
        try:
            barrier.wait()
            loop.run_until_complete(run())
        finally:
            loop.close()

    start = time.monotonic() + 0.2
    threads = [
        threading.Thread(target=async_thread if n % 2 == 0 else sync_thread)
        for n in range(threads_n)
    ]
    for th in threads:
        th.start()
    join_all(threads, duration + 60)
    elapsed = time.monotonic() - start
    assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"

    by_key: dict[str, list[float]] = defaultdict(list)
    for record in emulator.requests:
        if record.kind == "token":
            by_key[_key(record)].append(record.started)
    assert set(by_key) == {*AUDIENCES, SCOPES[0]}
    print(
        f"\n16 threads: {threads_n * per_thread} exchanges in {elapsed:.1f} s, fetches per key: "
        + ", ".join(f"{len(s)}" for s in by_key.values())
    )
    for key, starts in by_key.items():
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # ID tokens live 3-4 s (exp is whole seconds), refreshed in their last quarter.
        assert all(g > 1.5 for g in gaps), (
            f"{key}: fetches {gaps} s apart: more than one per refresh"
        )
        assert 2 <= len(starts) <= elapsed / 2.2 + 2, (
            f"{key}: {len(starts)} fetches in {elapsed:.1f} s"
        )


@watchdog(15)
def test_python_threads_polling_the_cache_while_fetches_complete_never_deadlock(
    emulator: GoogleEmulator,
) -> None:
    """Lock order: Python threads take the cache lock holding the GIL (``peek``); a fetch
    finishing on a tokio thread must never wait for the GIL (a log record) holding that lock.

    Deadlocked every run before 1704c04 ("cache: never log while holding the slot lock").
    """
    creds = sa_credentials(emulator.service_account_info())
    creds.id_token(AUDIENCES[0])
    stop = time.monotonic() + 3.0
    fetched = 0

    def poll() -> None:
        while time.monotonic() < stop:
            assert creds.cached_id_token(AUDIENCES[0]) is not None

    def fetch() -> None:
        nonlocal fetched
        i = 0
        while time.monotonic() < stop:
            i += 1
            creds.id_token(f"{AUDIENCES[1]}/{threading.get_ident()}/{i}")
            fetched += 1

    threads = [threading.Thread(target=poll) for _ in range(4)]
    threads += [threading.Thread(target=fetch) for _ in range(2)]
    for th in threads:
        th.start()
    join_all(threads, 30)
    assert fetched >= 3, "fetches completed while the cache was being polled"


@watchdog(90)
def test_a_cold_herd_of_sync_and_async_callers_shares_one_request_per_key(
    emulator: GoogleEmulator,
) -> None:
    creds = sa_credentials(emulator.service_account_info())
    emulator.set_latency(0.3, endpoint="token")
    barrier = threading.Barrier(16)
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        audience = AUDIENCES[n % 2]
        barrier.wait()
        try:
            if n % 4 < 2:
                value = creds.id_token(audience).value
            else:
                value = asyncio.run(creds.id_token_async(audience)).value
            with lock:
                results.append(value)
        except BaseException as e:
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for th in threads:
        th.start()
    join_all(threads, 15)
    assert not errors, errors
    assert len(results) == 16 and len(set(results)) == 2
    assert emulator.count("token") == 2


async def test_a_thousand_coroutines_on_one_loop_share_one_request(
    emulator: GoogleEmulator,
) -> None:
    creds = sa_credentials(emulator.service_account_info())
    emulator.set_latency(0.2, endpoint="token")
    tokens = await asyncio.gather(*(creds.id_token_async(AUDIENCES[0]) for _ in range(1000)))
    assert len({t.value for t in tokens}) == 1
    assert emulator.count("token") == 1


def test_a_blocking_cache_miss_releases_the_gil(emulator: GoogleEmulator) -> None:
    creds = sa_credentials(emulator.service_account_info())
    emulator.set_latency(1.0, endpoint="token")
    counter = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal counter
        while not done.is_set():
            counter += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        before = counter
        creds.id_token(AUDIENCES[0])
        during = counter - before
    finally:
        done.set()
        spinner.join()
    assert during > 10_000, f"another Python thread ran only {during} iterations during a 1 s fetch"


async def test_a_cancelled_await_does_not_cancel_the_shared_fetch(emulator: GoogleEmulator) -> None:
    creds = sa_credentials(emulator.service_account_info())
    emulator.set_latency(0.5, endpoint="token")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(creds.id_token_async(AUDIENCES[0]), 0.1)
    token = await creds.id_token_async(AUDIENCES[0])
    assert token.value
    assert emulator.count("token") == 1


def test_a_loop_closed_while_its_fetch_runs_leaves_the_process_healthy(
    emulator: GoogleEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """The fetch finishes after its caller's loop is gone: no panic, the token is still cached."""
    creds = sa_credentials(emulator.service_account_info())
    emulator.set_latency(0.4, endpoint="token")

    async def impatient() -> None:
        await asyncio.wait_for(creds.id_token_async(AUDIENCES[0]), 0.05)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(impatient())
    # The fetch completes and tries to resolve a future of a closed loop.
    assert wait_until(lambda: creds.cached_id_token(AUDIENCES[0]) is not None, 10.0)
    assert asyncio.run(creds.id_token_async(AUDIENCES[0])).value
    assert emulator.count("token") == 1
    err = capfd.readouterr().err
    assert "panicked" not in err, err


@watchdog(90)
def test_exchanges_survive_concurrent_clear_cache_and_configure(emulator: GoogleEmulator) -> None:
    """Settings changes rebuild the HTTP client and clear_cache drops every entry, mid-traffic."""
    emulator.set_latency(0.01, endpoint="token")
    info = emulator.service_account_info()
    stop = time.monotonic() + 2.0
    errors: list[BaseException] = []
    calls = 0
    lock = threading.Lock()

    def exchanger(n: int) -> None:
        nonlocal calls
        creds = sa_credentials(info)
        while time.monotonic() < stop:
            try:
                if n % 2:
                    creds.id_token(AUDIENCES[n % 2])
                else:
                    asyncio.run(creds.access_token_async(SCOPES))
                with lock:
                    calls += 1
            except BaseException as e:
                with lock:
                    errors.append(e)

    def chaos() -> None:
        i = 0
        while time.monotonic() < stop:
            i += 1
            _native.clear_cache()
            _native.configure(request_timeout=20.0 + i % 3, refresh_window=300.0)
            time.sleep(0.005)

    threads = [threading.Thread(target=exchanger, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=chaos))
    for th in threads:
        th.start()
    join_all(threads, 30)
    assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"
    assert calls > 100


@watchdog(60)
def test_errors_raised_across_threads_are_python_exceptions(emulator: GoogleEmulator) -> None:
    """Every failure reaches every thread as a TokenExchangeError (never a panic or abort)."""
    creds = sa_credentials(emulator.service_account_info())
    emulator.fail_next(10_000, 400, "token")
    caught: list[BaseException] = []
    lock = threading.Lock()

    def call() -> None:
        for _ in range(20):
            try:
                creds.id_token(AUDIENCES[0])
            except BaseException as e:
                with lock:
                    caught.append(e)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for th in threads:
        th.start()
    join_all(threads, 30)
    assert len(caught) == 320
    assert all(isinstance(e, TokenExchangeError) for e in caught), {type(e) for e in caught}

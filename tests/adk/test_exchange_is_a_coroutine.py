"""``exchange()`` is what ADK declares: ``async def``, a coroutine that runs wherever one can.

ADK's ``BaseCredentialExchanger.exchange`` is a coroutine function. Python
promises what that means: calling it does nothing and returns a coroutine
(``asyncio.iscoroutine``), which every way of running one accepts, from any
thread, whether the token is cached or must be fetched. A loop closed while a
fetch is in flight must drop its waiter quietly, and the next loop must work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import inspect
import json
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import _native
from adk_token_exchange.testing import GoogleEmulator
from google.adk.auth.auth_credential import AuthCredential
from google.adk.auth.exchanger.base_credential_exchanger import ExchangeResult
from support.adk import ISSUE_4458_SCHEME as SCHEME
from support.measure import join_all

AUDIENCE = "https://svc-coroutine-uc.a.run.app"

Runner = Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]


def _await_in_main(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        return await make()

    return asyncio.run(main())


def _asyncio_run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(make())


def _create_task(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        return await asyncio.create_task(make())

    return asyncio.run(main())


def _gather(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        first, second = await asyncio.gather(make(), make())
        if isinstance(first, ExchangeResult):
            assert first is second, "two concurrent exchanges, one result"
        else:
            assert first.value == second.value, "two concurrent fetches, one token"
        return first

    return asyncio.run(main())


def _wait_for(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(make(), timeout=20)

    return asyncio.run(main())


def _run_until_complete(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        loop.close()


def _run_coroutine_threadsafe(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """The coroutine is made here, in a thread without a loop, and runs on another's."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        return asyncio.run_coroutine_threadsafe(make(), loop).result(timeout=20)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        join_all([runner], timeout=10)
        loop.close()


RUNNERS: dict[str, Runner] = {
    "await": _await_in_main,
    "asyncio.run": _asyncio_run,
    "create_task": _create_task,
    "gather": _gather,
    "wait_for": _wait_for,
    "loop.run_until_complete": _run_until_complete,
    "run_coroutine_threadsafe": _run_coroutine_threadsafe,
}


def _in_a_thread_without_a_loop(call: Callable[[], Any]) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=60)


def _credential(emulator: GoogleEmulator) -> AuthCredential:
    return adk_token_exchange.id_token_credential(
        AUDIENCE, service_account_key=emulator.service_account_info()
    )


def test_exchange_is_a_coroutine_function_returning_a_coroutine(emulator: GoogleEmulator) -> None:
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    credential = _credential(emulator)

    assert inspect.iscoroutinefunction(exchanger.exchange)
    assert asyncio.iscoroutinefunction(exchanger.exchange)
    coroutine = exchanger.exchange(credential, SCHEME)
    native = _native.ServiceAccountExchanger.exchange(exchanger, credential, SCHEME)
    try:
        assert asyncio.iscoroutine(coroutine)
        assert asyncio.iscoroutine(native)
        assert emulator.count() == 0, "nothing runs until it is awaited"
    finally:
        coroutine.close()
        native.close()
    assert emulator.count() == 0


@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_every_way_of_running_a_coroutine_runs_exchange_from_a_thread_without_a_loop(
    emulator: GoogleEmulator, runner: str, cache: str
) -> None:
    credential = _credential(emulator)
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    if cache == "warm":
        warm = asyncio.run(exchanger.exchange(credential, SCHEME))
        assert isinstance(warm, ExchangeResult)
    before = emulator.count("token")

    result = _in_a_thread_without_a_loop(
        lambda: RUNNERS[runner](lambda: exchanger.exchange(credential.model_copy(deep=True)))
    )

    assert isinstance(result, ExchangeResult)
    token = result.credential.http.credentials.token if result.credential.http else ""
    emulator.verify_id_token(token or "", AUDIENCE)
    assert emulator.count("token") == (before if cache == "warm" else 1)


@pytest.mark.parametrize("cache", ["cold", "warm"])
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_the_cores_async_methods_are_coroutines_for_every_runner(
    emulator: GoogleEmulator, runner: str, cache: str
) -> None:
    credentials = _native.Credentials.from_service_account_info(
        json.dumps(emulator.service_account_info())
    )
    request = credentials.id_token_request(AUDIENCE)
    if cache == "warm":
        request.blocking()
    makers: list[Callable[[], Coroutine[Any, Any, Any]]] = [
        lambda: credentials.id_token_async(AUDIENCE),
        lambda: request.token(),
        lambda: credentials.access_token_async(["https://www.googleapis.com/auth/cloud-platform"]),
    ]
    for make in makers:
        coroutine = make()
        assert asyncio.iscoroutine(coroutine)
        coroutine.close()
        token = _in_a_thread_without_a_loop(lambda make=make: RUNNERS[runner](make))
        assert isinstance(token, _native.Token) and token.value


def test_an_async_call_checks_its_arguments_when_awaited_like_any_coroutine(
    emulator: GoogleEmulator,
) -> None:
    credentials = _native.Credentials.application_default()
    coroutine = credentials.id_token_async("")  # no error yet: nothing has run

    with pytest.raises(adk_token_exchange.ConfigurationError, match="audience"):
        asyncio.run(coroutine)


async def test_a_cancelled_exchange_leaves_the_shared_fetch_to_the_others(
    emulator: GoogleEmulator,
) -> None:
    credential = _credential(emulator)
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    emulator.set_latency(0.5, endpoint="token")

    cancelled = asyncio.create_task(exchanger.exchange(credential, SCHEME))
    waiting = asyncio.create_task(exchanger.exchange(credential.model_copy(deep=True), SCHEME))
    await asyncio.sleep(0.1)
    cancelled.cancel()

    with pytest.raises(asyncio.CancelledError):
        await cancelled
    result = await waiting
    assert result.credential.http is not None
    assert emulator.count("token") == 1


def test_a_loop_closed_mid_fetch_drops_its_waiter_quietly_and_the_next_loop_works(
    emulator: GoogleEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    credential = _credential(emulator)
    exchanger = adk_token_exchange.ServiceAccountExchanger()
    emulator.set_latency(0.6, endpoint="token")
    unraisable: list[Any] = []
    hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        # asyncio.run cancels the task still waiting for the fetch and closes the loop;
        # the fetch completes afterwards and must not try to wake the closed loop.
        async def leave_early() -> None:
            asyncio.get_running_loop().create_task(exchanger.exchange(credential, SCHEME))
            await asyncio.sleep(0.1)

        asyncio.run(leave_early())
        # A loop closed by hand with the exchange still pending (not even cancelled).
        loop = asyncio.new_event_loop()
        pending = loop.create_task(exchanger.exchange(credential.model_copy(deep=True), SCHEME))
        loop.run_until_complete(asyncio.sleep(0.1))
        loop.close()
        emulator.set_latency(0.0, endpoint="token")
        # The next loop gets the token the interrupted fetch brought back.
        result = asyncio.run(exchanger.exchange(credential.model_copy(deep=True), SCHEME))
        assert result.credential.http is not None
        # (asyncio itself logs that the abandoned task was destroyed pending.)
        del pending, loop
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert emulator.count("token") == 1
    assert unraisable == [], [u.exc_value for u in unraisable]
    err = capfd.readouterr().err
    assert "Event loop is closed" not in err, err
    assert "Traceback" not in err, err

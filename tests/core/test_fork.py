"""``os.fork()`` as gunicorn and multiprocessing('fork') do it (project issue 5, item 8).

A forked child inherits the parent's runtime object, HTTP client and cache but
none of their threads. It must rebuild what it needs and exchange tokens
normally, sync and async, and the parent must carry on undisturbed.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from adk_token_exchange.testing import GoogleEmulator
from support.core import sa_credentials
from support.measure import join_all, wait_until
from support.processes import watchdog

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")

AUDIENCE = "https://mcp-fork-uc.a.run.app"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def run_in_child(body: Callable[[], Any], *, timeout: float = 15.0) -> Any:
    """Fork; run ``body`` in the child; return its JSON result or raise what it raised.

    A child that does not finish within ``timeout`` is killed and reported as
    deadlocked: that is the failure fork bugs produce.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_fd)
        try:
            payload = {"ok": body()}
        except BaseException as e:
            payload = {
                "error": f"{type(e).__module__}.{type(e).__qualname__}: {e}",
                "tb": traceback.format_exc(),
            }
        try:
            os.write(write_fd, json.dumps(payload, default=str).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"forked child still running after {timeout} s: deadlocked")
            ready, _, _ = select.select([read_fd], [], [], left)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child died: status {status:#x}"
    result = json.loads(b"".join(chunks) or b"{}")
    if "error" in result:
        raise AssertionError(f"in the child: {result['error']}\n{result['tb']}")
    return result["ok"]


def test_child_exchanges_after_fork_and_parent_carries_on(emulator: GoogleEmulator) -> None:
    creds = sa_credentials(emulator.service_account_info())
    warm = creds.id_token(AUDIENCE).value  # runtime, HTTP client and cache now exist

    def child() -> dict[str, Any]:
        return {
            "cached": creds.id_token(AUDIENCE).value,
            "fresh_sync": creds.id_token(AUDIENCE + "/child").value,
            "fresh_async": asyncio.run(creds.access_token_async(SCOPES)).value,
        }

    got = run_in_child(child)
    # The child starts with caches of its own (the parent's locks and tasks are not
    # its own): a token for the same audience, fetched anew.
    emulator.verify_id_token(got["cached"], AUDIENCE)
    assert warm
    emulator.verify_id_token(got["fresh_sync"], AUDIENCE + "/child")
    assert emulator.access_token_info(got["fresh_async"]) is not None
    assert creds.id_token(AUDIENCE + "/parent").value
    assert asyncio.run(creds.id_token_async(AUDIENCE + "/parent-async")).value


def test_gunicorn_style_prefork_workers_each_exchange(emulator: GoogleEmulator) -> None:
    """A master warms up (sync and async), then forks 4 workers that serve 50 exchanges each."""
    creds = sa_credentials(emulator.service_account_info())
    creds.id_token(AUDIENCE)
    asyncio.run(creds.access_token_async(SCOPES))

    def worker() -> int:
        async def serve() -> int:
            n = 0
            for i in range(50):
                audience = f"{AUDIENCE}/worker-{os.getpid()}/{i % 5}"
                token = await creds.id_token_async(audience) if i % 2 else creds.id_token(audience)
                n += bool(token.value)
            return n

        return asyncio.run(serve())

    pids_results = [run_in_child(worker) for _ in range(4)]
    assert pids_results == [50] * 4
    assert emulator.count("token") == 2 + 4 * 5, "each worker fetched each of its 5 audiences once"


@watchdog(60)
def test_child_forked_during_a_parent_fetch_does_not_wait_for_it(emulator: GoogleEmulator) -> None:
    """The parent's in-flight fetch has no task in the child: the child must fetch itself."""
    creds = sa_credentials(emulator.service_account_info())
    creds.access_token(SCOPES)  # runtime up
    emulator.set_latency(1.0, endpoint="token")
    parent_call = threading.Thread(target=creds.id_token, args=(AUDIENCE,))
    parent_call.start()
    # The parent's fetch is in flight: it reached Google, which takes 1 s to answer.
    assert wait_until(lambda: emulator.count("token") == 2, 5.0)

    def child() -> str:
        return creds.id_token(AUDIENCE).value

    value = run_in_child(child, timeout=10)
    join_all([parent_call], 10)
    emulator.verify_id_token(value, AUDIENCE)


@watchdog(90)
def test_fork_while_threads_exchange_never_deadlocks_the_child(emulator: GoogleEmulator) -> None:
    """Locks other threads hold at fork time (cache, registry, runtime) must not hang the child."""
    info = emulator.service_account_info()
    emulator.set_latency(0.002, endpoint="token")
    stop = threading.Event()
    errors: list[BaseException] = []

    def busy(n: int) -> None:
        creds = sa_credentials(info)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                # New audiences keep the fetch path (slots, store, spawn) busy.
                if n % 2:
                    creds.id_token(f"{AUDIENCE}/busy/{n}/{i}")
                else:
                    asyncio.run(creds.access_token_async([f"scope-{n}-{i % 50}"]))
            except BaseException as e:
                errors.append(e)
                return

    threads = [threading.Thread(target=busy, args=(n,), daemon=True) for n in range(4)]
    for th in threads:
        th.start()
    try:
        for round_ in range(12):
            time.sleep(0.05)

            def child(round_: int = round_) -> str:
                return sa_credentials(info).id_token(f"{AUDIENCE}/child/{round_}").value

            assert run_in_child(child, timeout=10)
    finally:
        stop.set()
        join_all(threads, 10)
    assert not errors, errors[0]


def test_multiprocessing_fork_pool_exchanges(emulator: GoogleEmulator) -> None:
    import multiprocessing

    info = emulator.service_account_info()
    sa_credentials(info).id_token(AUDIENCE)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        values = pool.map(
            _pool_exchange,
            [(json.dumps(info), f"{AUDIENCE}/pool/{i}") for i in range(6)],
            chunksize=1,
        )
    for i, value in enumerate(values):
        emulator.verify_id_token(value, f"{AUDIENCE}/pool/{i}")


def _pool_exchange(args: tuple[str, str]) -> str:
    from adk_token_exchange import _native

    info, audience = args
    return _native.Credentials.from_service_account_info(info).id_token(audience).value


if sys.platform == "darwin":  # pragma: no cover - fork after threads is unsupported there
    pytestmark = pytest.mark.skip(reason="fork with threads is unsafe on macOS")

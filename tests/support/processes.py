"""Running one test in a child pytest process: a deadlock watchdog, and a fresh process."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["in_fresh_process", "watchdog"]

_CHILD_ENV = "ADK_TX_CHILD_TEST"


def _run_child(test: Callable[..., Any], timeout: float, what: str) -> None:
    node = f"{inspect.getfile(test)}::{test.__name__}"
    env = {**os.environ, _CHILD_ENV: test.__name__, "PYTHONFAULTHANDLER": "1"}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "--runxfail",  # the outcome is judged here, where the marks apply
        node,
    ]
    child = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        try:
            out, _ = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
        pytest.fail(f"{what}: {test.__name__} still running after {timeout} s\n{out[-12000:]}")
    print(out[-3000:])
    assert child.returncode == 0, out[-8000:]


def _in_child(timeout: float, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(test):

            @functools.wraps(test)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                if os.environ.get(_CHILD_ENV) == test.__name__:
                    return await test(*args, **kwargs)
                await asyncio.to_thread(_run_child, test, timeout, what)

            return run_async

        @functools.wraps(test)
        def run(*args: Any, **kwargs: Any) -> Any:
            if os.environ.get(_CHILD_ENV) == test.__name__:
                return test(*args, **kwargs)
            _run_child(test, timeout, what)

        return run

    return decorate


def watchdog(timeout: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run this test in a child pytest process, which fails the test if it outlives ``timeout``.

    A deadlock between the GIL and a lock in the Rust core freezes every
    Python thread of the process, pytest-timeout's included, and the CI run
    with it. In a child, it is a failed test with every thread's Python stack
    (faulthandler, on SIGABRT) in the report.
    """
    return _in_child(timeout, "deadlock")


def in_fresh_process(timeout: float = 120) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run this test in a child pytest process of its own: for once-per-process behaviour
    (a warning given once) that an earlier test in the same process may have used up."""
    return _in_child(timeout, "timed out")

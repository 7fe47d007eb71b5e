"""Measuring without guessing: elapsed time, waiting for an event, threads that finished.

Bounds on a 2-core machine shared with other work are written as the
configured value times :data:`SLACK_RATIO` plus :data:`SLACK_SECONDS`
(:func:`bound`), never as a bare constant, and waits are for an event with a
deadline (:func:`wait_until`), never a fixed sleep.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

__all__ = [
    "SLACK_RATIO",
    "SLACK_SECONDS",
    "Elapsed",
    "bound",
    "join_all",
    "rss_bytes",
    "wait_until",
]

SLACK_RATIO = 1.5
"""How much longer than configured a bounded wait may take on a loaded machine."""
SLACK_SECONDS = 0.5
"""Plus this much: scheduling, process start, the GIL."""


class Elapsed:
    """``with Elapsed() as t: ...`` then ``t.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Elapsed:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start


def bound(seconds: float) -> float:
    """The most a wait configured as ``seconds`` may take here."""
    return seconds * SLACK_RATIO + SLACK_SECONDS


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def join_all(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Join every thread within ``timeout`` in all; fail naming those still running."""
    threads = list(threads)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [thread.name for thread in threads if thread.is_alive()]
    assert not alive, f"still running after {timeout} s (deadlock?): {alive}"


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

"""Every cache is bounded: caller-chosen audiences cannot grow memory without end.

An audience is chosen by whoever configures a tool, sometimes from input; each
distinct one is a token request and a cache slot. The core keeps at most a few
hundred per credential (expired ones go first, then the least recently used),
and refuses what no Google endpoint could serve before it reaches a slot.
"""

from __future__ import annotations

import gc

import google.adk
import pytest
from adk_token_exchange import errors
from adk_token_exchange.testing import GoogleEmulator
from support.core import sa_credentials
from support.measure import Elapsed, rss_bytes

MIB = 1024 * 1024


@pytest.mark.skipif(
    google.adk.__version__.startswith("1."),
    reason="the core alone, no ADK involved: run once, under the ADK 2.x venv",
)
@pytest.mark.timeout(300)
def test_memory_stays_flat_under_ten_thousand_distinct_audiences(
    emulator: GoogleEmulator,
) -> None:
    credentials = sa_credentials(emulator.service_account_info())
    samples: dict[int, int] = {}
    for i in range(10_000):
        token = credentials.id_token(f"https://svc-{i}.example.com")
        assert token.value
        if i % 1000 == 999:
            emulator.reset_counts()  # the emulator's own records are not ours to count
            gc.collect()
            samples[i + 1] = rss_bytes()

    # Beyond the cap the cache only replaces slots: from 2 000 to 10 000 audiences
    # (8 000 more tokens of ~1 KiB each if nothing were dropped) memory is flat.
    growth = samples[10_000] - samples[2_000]
    assert growth < 4 * MIB, {k: round(v / MIB, 1) for k, v in samples.items()}
    # The most recent audiences are still served from memory.
    assert credentials.cached_id_token("https://svc-9999.example.com") is not None
    assert credentials.cached_id_token("https://svc-0.example.com") is None


def test_an_audience_no_endpoint_could_serve_never_reaches_a_cache_slot(
    emulator: GoogleEmulator,
) -> None:
    credentials = sa_credentials(emulator.service_account_info())
    huge = "https://svc.example.com/" + "a" * (10 * MIB)

    with Elapsed() as took:
        for _ in range(50):
            with pytest.raises(errors.ConfigurationError, match="bytes long"):
                credentials.id_token(huge)
            with pytest.raises(errors.ConfigurationError, match="bytes long"):
                credentials.cached_id_token(huge)

    assert took.seconds < 5
    assert emulator.count() == 0

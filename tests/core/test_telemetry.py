"""OpenTelemetry: a span per upstream fetch and cache counters, never a token in them.

Each scenario runs in a fresh interpreter, because OpenTelemetry's global
providers can be set only once per process: there an SDK ``TracerProvider``
with the in-memory exporter and a ``MeterProvider`` with the in-memory reader
are configured (as ``adk web --trace_to_cloud`` or Agent Engine would configure
theirs), the core fetches from the emulator, and the spans and metrics come
back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from adk_token_exchange import _native
from adk_token_exchange.testing import GoogleEmulator

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is not installed")

AUDIENCE = "https://mcp-telemetry-uc.a.run.app"

SCENARIO = r"""
import json, os, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

configured = os.environ["SCENARIO_SDK"] == "1"
if configured:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

from adk_token_exchange import _native, errors

info = os.environ["SCENARIO_KEY"]
audience = os.environ["SCENARIO_AUDIENCE"]
creds = _native.Credentials.from_service_account_info(info)
tokens = [creds.id_token(audience + "/mcp?tool=1").value for _ in range(3)]
tokens.append(creds.access_token(["https://www.googleapis.com/auth/cloud-platform"]).value)
broken = _native.Credentials.from_service_account_info(os.environ["SCENARIO_BROKEN_KEY"])
try:
    broken.id_token(audience)
except errors.TokenExchangeError:
    pass
out = {"tokens": tokens, "counters": list(_native.telemetry_counters())}
if configured:
    # Spans are recorded after the waiters got their answer: wait (bounded) for all 3.
    import time
    deadline = time.monotonic() + 10
    while len(exporter.get_finished_spans()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    out["spans"] = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "start": s.start_time,
            "end": s.end_time,
            "status": s.status.status_code.name,
            "parent": s.parent is not None,
            "attributes": dict(s.attributes),
        }
        for s in exporter.get_finished_spans()
    ]
    points = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    key = m.name + json.dumps(dict(p.attributes), sort_keys=True)
                    points[key] = p.value
    out["metrics"] = points
json.dump(out, sys.stdout)
"""


def run_scenario(emulator: GoogleEmulator, *, sdk: bool) -> dict[str, Any]:
    info = emulator.service_account_info()
    # The first fetch needs three attempts (two 503s); the emulator, like Google,
    # refuses a key it does not know (invalid_grant: a permanent error).
    emulator.fail_next(2, 503, "token")
    broken = {**info, "client_email": "nobody@telemetry.iam.gserviceaccount.com"}
    env = {
        **os.environ,
        "SCENARIO_SDK": "1" if sdk else "0",
        "SCENARIO_KEY": json.dumps(info),
        "SCENARIO_BROKEN_KEY": json.dumps(broken),
        "SCENARIO_AUDIENCE": AUDIENCE,
    }
    return run_script(SCENARIO, env)


def run_script(script: str, env: dict[str, str]) -> dict[str, Any]:
    """Runs ``script`` in a fresh interpreter; what it printed, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_each_upstream_fetch_is_one_span_with_what_happened_and_no_token(
    emulator: GoogleEmulator,
) -> None:
    result = run_scenario(emulator, sdk=True)
    spans = result["spans"]
    fetches = [s for s in spans if s["name"] == "adk_token_exchange fetch"]
    by_kind = {(s["attributes"]["adk_token_exchange.token.kind"], s["status"]): s for s in fetches}
    assert len(fetches) == 3, spans  # one ID token (3 attempts), one access token, one failure

    id_span = by_kind[("id", "UNSET")]
    assert id_span["kind"] == "CLIENT"
    assert id_span["parent"] is False, "a shared fetch is nobody's child"
    assert id_span["end"] > id_span["start"] > 0
    assert id_span["attributes"] == {
        "adk_token_exchange.source.kind": "service_account",
        "adk_token_exchange.token.kind": "id",
        "adk_token_exchange.audience.origin": AUDIENCE,
        "adk_token_exchange.fetch.attempts": 3,
        "adk_token_exchange.fetch.outcome": "ok",
    }
    access = by_kind[("access", "UNSET")]["attributes"]
    assert "adk_token_exchange.audience.origin" not in access
    assert access["adk_token_exchange.fetch.attempts"] == 1

    failed = by_kind[("id", "ERROR")]["attributes"]
    assert failed["adk_token_exchange.fetch.outcome"] == "permanent"
    assert failed["error.type"] == "permanent"

    rendered = json.dumps(spans)
    for token in result["tokens"]:
        assert token not in rendered
    assert "/mcp?tool=1" not in rendered and "tool=1" not in rendered, "no audience path"


def test_cache_hits_misses_and_fetches_are_counted_for_the_meter(
    emulator: GoogleEmulator,
) -> None:
    m = run_scenario(emulator, sdk=True)["metrics"]
    # 3 ID token calls: 1 miss then 2 hits; 1 access-token miss; 1 failed miss.
    assert m["adk_token_exchange.cache.hits{}"] == 2
    assert m["adk_token_exchange.cache.misses{}"] == 3
    assert m["adk_token_exchange.cache.refreshes{}"] == 0
    assert m['adk_token_exchange.fetches{"adk_token_exchange.fetch.outcome": "ok"}'] == 2
    assert m['adk_token_exchange.fetches{"adk_token_exchange.fetch.outcome": "failed"}'] == 1


def test_without_an_sdk_nothing_is_exported_and_tokens_still_flow(
    emulator: GoogleEmulator,
) -> None:
    result = run_scenario(emulator, sdk=False)
    assert len(result["tokens"]) == 4 and all(result["tokens"])
    hits, misses, _refreshes, ok, failed = result["counters"]
    assert (hits, misses, ok, failed) == (2, 3, 2, 1)


def test_counters_only_grow_in_this_process() -> None:
    before = _native.telemetry_counters()
    after = _native.telemetry_counters()
    assert all(b <= a for b, a in zip(before, after, strict=True))


ASYNC_SCENARIO = r"""
import asyncio, json, os, sys, threading
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

on_main_thread = []

class Where(SpanProcessor):
    def on_end(self, span):
        on_main_thread.append(threading.current_thread() is threading.main_thread())

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
provider.add_span_processor(Where())
trace.set_tracer_provider(provider)

from adk_token_exchange import _native

creds = _native.Credentials.from_service_account_info(os.environ["SCENARIO_KEY"])

async def main():
    await creds.id_token_async(os.environ["SCENARIO_AUDIENCE"])
    return len(exporter.get_finished_spans())

seen = asyncio.run(main())
json.dump({"spans_when_the_await_returned": seen, "on_main_thread": on_main_thread}, sys.stdout)
"""


def test_a_fetch_span_is_recorded_on_the_awaiting_loop_never_on_a_core_thread(
    emulator: GoogleEmulator,
) -> None:
    # A core thread taking the GIL for telemetry made a running loop wait for
    # it up to the switch interval (bench "2 cold (metadata)"): the core only
    # queues the record, and the loop that resumes the coroutine delivers it.
    env = {
        **os.environ,
        "SCENARIO_KEY": json.dumps(emulator.service_account_info()),
        "SCENARIO_AUDIENCE": AUDIENCE,
    }
    result = run_script(ASYNC_SCENARIO, env)
    assert result == {"spans_when_the_await_returned": 1, "on_main_thread": [True]}

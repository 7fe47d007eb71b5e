"""OpenTelemetry for the core: one span per upstream fetch, counters for the cache.

ADK depends on ``opentelemetry-api``, so a process that configures an
OpenTelemetry SDK for its agent (``adk web --trace_to_cloud``, Agent Engine,
its own ``TracerProvider`` / ``MeterProvider``) gets, from this package:

* a ``CLIENT`` span ``adk_token_exchange fetch`` per upstream token fetch,
  with its real start and end times and the attributes
  ``adk_token_exchange.source.kind`` (``service_account``, ``authorized_user``,
  ``impersonated_service_account``, ``metadata``),
  ``adk_token_exchange.token.kind`` (``id`` / ``access``),
  ``adk_token_exchange.audience.origin`` (ID tokens: the audience's origin,
  never its path), ``adk_token_exchange.fetch.attempts`` (HTTP attempts,
  retries included) and ``adk_token_exchange.fetch.outcome`` (``ok`` or the
  error class; an error also sets the span status and ``error.type``). A
  span never carries a token, key, scope or credential. The fetch is shared by
  every caller waiting for it (single-flight) and may be a background refresh,
  so its span is a root span rather than any one caller's child;
* observable counters ``adk_token_exchange.cache.hits``,
  ``adk_token_exchange.cache.misses`` (callers that waited for a fetch),
  ``adk_token_exchange.cache.refreshes`` (background refreshes started) and
  ``adk_token_exchange.fetches`` (by ``adk_token_exchange.fetch.outcome``:
  ``ok`` / ``failed``), read from the core's atomic counters only when the
  SDK collects.

Cost: nothing on the warm path (a cache hit increments one relaxed atomic
counter, as it does without OpenTelemetry). The core queues one record
per upstream fetch without taking the GIL, and a Python thread that holds it
anyway delivers them (the loop resuming the awaiting coroutine, a blocking call
returning, the meter collecting, the process exiting); while no SDK tracer
provider is set the observer returns at once. Without
``opentelemetry`` importable, nothing is installed at all.

Installed by the core when ``_native`` is first imported (``install`` gets
the two native functions, so this module never imports ``_native`` itself).
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["install"]

logger = logging.getLogger("adk_token_exchange")

_SCOPE = "adk_token_exchange"
_SPAN_NAME = "adk_token_exchange fetch"
Record = tuple[int, int, int, str, str, str, "str | None"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("adk-token-exchange")
    except Exception:  # not installed as a distribution (a source checkout)
        return "0"


class _FetchSpans:
    """The core's fetch observer: a span per record, when an SDK tracer provider is set."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._unset = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self._provider: Any = None
        self._tracer: Any = None
        self._version = _version()

    def __call__(self, record: Record) -> None:
        try:
            self._span(record)
        except Exception:  # an exporter's bug must never break a token fetch
            logger.debug("could not record the token fetch span", exc_info=True)

    def _span(self, record: Record) -> None:
        provider = self._trace.get_tracer_provider()
        if isinstance(provider, self._unset):
            return
        if provider is not self._provider:
            self._tracer = provider.get_tracer(_SCOPE, self._version)
            self._provider = provider
        start_ns, end_ns, attempts, outcome, source_kind, token_kind, origin = record
        attributes: dict[str, Any] = {
            "adk_token_exchange.source.kind": source_kind,
            "adk_token_exchange.token.kind": token_kind,
            "adk_token_exchange.fetch.attempts": attempts,
            "adk_token_exchange.fetch.outcome": outcome,
        }
        if origin is not None:
            attributes["adk_token_exchange.audience.origin"] = origin
        if outcome != "ok":
            attributes["error.type"] = outcome
        span = self._tracer.start_span(
            _SPAN_NAME,
            kind=self._trace.SpanKind.CLIENT,
            start_time=start_ns,
            attributes=attributes,
        )
        if outcome != "ok":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome))
        span.end(end_time=end_ns)


def _register_counters(
    counters: Callable[[], tuple[int, int, int, int, int]], flush: Callable[[], None]
) -> None:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation

    # The global meter is a proxy until an SDK MeterProvider is set; its
    # instruments then report through the real one.
    meter = metrics.get_meter(_SCOPE, _version())

    def reading(index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(counters()[index])]

        return observe

    def fetches(_options: CallbackOptions) -> Iterable[Observation]:
        flush()  # the meter's collection is a Python thread too: spans of idle refreshes
        values = counters()
        return [
            Observation(values[3], {"adk_token_exchange.fetch.outcome": "ok"}),
            Observation(values[4], {"adk_token_exchange.fetch.outcome": "failed"}),
        ]

    cache_counters = (  # (name, unit, description), by index in counters()
        (
            "adk_token_exchange.cache.hits",
            "{token}",
            "Tokens served from the cache without waiting",
        ),
        (
            "adk_token_exchange.cache.misses",
            "{request}",
            "Requests that waited for an upstream fetch",
        ),
        (
            "adk_token_exchange.cache.refreshes",
            "{refresh}",
            "Background refreshes started ahead of expiry",
        ),
    )
    for index, (name, unit, description) in enumerate(cache_counters):
        meter.create_observable_counter(name, [reading(index)], unit=unit, description=description)
    meter.create_observable_counter(
        "adk_token_exchange.fetches",
        [fetches],
        unit="{fetch}",
        description="Upstream token fetches, by outcome",
    )


_installed = False


def install(
    set_fetch_observer: Callable[[Callable[[Record], None] | None], None],
    counters: Callable[[], tuple[int, int, int, int, int]],
    flush: Callable[[], None],
) -> None:
    """Connect the core to OpenTelemetry, once; a no-op without ``opentelemetry``."""
    global _installed
    if _installed:
        return
    try:
        spans = _FetchSpans()
        _register_counters(counters, flush)
    except ImportError:
        return
    _installed = True
    set_fetch_observer(spans)
    # Core threads may outlive the interpreter's finalization: stop calling in.
    atexit.register(set_fetch_observer, None)
    atexit.register(flush)  # runs first: atexit is last-in, first-out

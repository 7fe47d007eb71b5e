//! The core's telemetry (`telemetry.rs`) for Python: the counters, and the
//! fetch observer that `adk_token_exchange/_telemetry.py` installs to turn
//! each upstream fetch into an OpenTelemetry span.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

use crate::telemetry::{self, FetchRecord};

/// `(hits, misses, refreshes, fetches_ok, fetches_failed)` since the process started.
#[pyfunction]
pub fn telemetry_counters() -> (u64, u64, u64, u64, u64) {
    let c = telemetry::counters();
    (
        c.hits,
        c.misses,
        c.refreshes,
        c.fetches_ok,
        c.fetches_failed,
    )
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One fetch as Python sees it: `(start_ns, end_ns, attempts, outcome,
/// source_kind, token_kind, audience_origin)`; never a token.
type Record = (
    u64,
    u64,
    u32,
    &'static str,
    &'static str,
    &'static str,
    Option<String>,
);

/// Records the core finished but Python has not seen yet, at most this many
/// (the oldest is dropped beyond it: telemetry never grows without bound).
const MAX_PENDING: usize = 1024;

/// The Python observer and the records waiting for it.
///
/// A core thread never takes the GIL for telemetry: it only queues the
/// record. Taking the GIL from a core thread while an event loop runs Python
/// made the loop wait for it up to the interpreter's switch interval (5 ms
/// against our 5 ms goal; bench "2 cold (metadata)" missed in 2 of 10 runs,
/// and in 0 of 20 without the observer). A Python thread that already holds
/// the GIL delivers the records ([`flush`]): the loop resuming a coroutine,
/// a blocking call returning, the meter collecting, the process exiting.
struct Pending {
    observer: Option<Py<PyAny>>,
    records: VecDeque<Record>,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    observer: None,
    records: VecDeque::new(),
});

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs `observer(record)` for every finished upstream fetch, or removes
/// it with `None`. `record` is `(start_ns, end_ns, attempts, outcome,
/// source_kind, token_kind, audience_origin)`, times in nanoseconds since the
/// Unix epoch; it never holds a token. Called on a Python thread that holds
/// the GIL anyway (see [`flush`]), never on a core thread; an exception it
/// raises is reported as unraisable.
#[pyfunction]
#[pyo3(signature = (observer))]
pub fn set_fetch_observer(observer: Option<Py<PyAny>>) {
    let installed = observer.is_some();
    let replaced = {
        let mut p = pending();
        p.records.clear();
        std::mem::replace(&mut p.observer, observer)
    };
    // Dropped after the lock is released: its finalizer may call into the core.
    drop(replaced);
    if !installed {
        telemetry::set_observer(None);
        return;
    }
    telemetry::set_observer(Some(Arc::new(|r: &FetchRecord| {
        let record = (
            unix_nanos(r.started),
            unix_nanos(r.ended),
            r.attempts,
            r.outcome,
            r.source_kind,
            r.token_kind,
            r.audience_origin.clone(),
        );
        let mut p = pending();
        if p.records.len() >= MAX_PENDING {
            p.records.pop_front();
        }
        p.records.push_back(record);
    })));
}

/// Delivers the queued fetch records to the observer, on this Python thread.
#[pyfunction]
pub fn flush_fetch_records(py: Python<'_>) {
    flush(py);
}

/// Delivers the queued records; cheap (one atomic load) when nothing observes.
pub(crate) fn flush(py: Python<'_>) {
    if !telemetry::observing() {
        return;
    }
    let (observer, records) = {
        let mut p = pending();
        if p.records.is_empty() {
            return;
        }
        let Some(observer) = p.observer.as_ref().map(|o| o.clone_ref(py)) else {
            return;
        };
        (observer, std::mem::take(&mut p.records))
    };
    // The lock is released: the observer may call back into the core.
    for record in records {
        if let Err(error) = observer.call1(py, (record,)) {
            error.write_unraisable(py, None);
        }
    }
}

/// Hands the three functions above to `adk_token_exchange._telemetry`, which
/// connects them to OpenTelemetry if it is importable (a no-op otherwise).
pub fn init(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let observer = m.getattr("set_fetch_observer")?;
    let counters = m.getattr("telemetry_counters")?;
    let flush = m.getattr("flush_fetch_records")?;
    m.py()
        .import("adk_token_exchange._telemetry")?
        .call_method1("install", (observer, counters, flush))?;
    Ok(())
}

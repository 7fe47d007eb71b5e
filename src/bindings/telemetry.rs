//! The core's telemetry (`telemetry.rs`) for Python: the counters, and the
//! fetch observer that `adk_token_exchange/_telemetry.py` installs to turn
//! each upstream fetch into an OpenTelemetry span.

use std::sync::Arc;
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

/// Installs `observer(record)` for every finished upstream fetch, or removes
/// it with `None`. `record` is `(start_ns, end_ns, attempts, outcome,
/// source_kind, token_kind, audience_origin)`, times in nanoseconds since the
/// Unix epoch; it never holds a token. Called on a core thread, with the GIL;
/// an exception it raises is reported as unraisable.
#[pyfunction]
#[pyo3(signature = (observer))]
pub fn set_fetch_observer(observer: Option<Py<PyAny>>) {
    let Some(observer) = observer else {
        telemetry::set_observer(None);
        return;
    };
    telemetry::set_observer(Some(Arc::new(move |r: &FetchRecord| {
        Python::attach(|py| {
            let record = (
                unix_nanos(r.started),
                unix_nanos(r.ended),
                r.attempts,
                r.outcome,
                r.source_kind,
                r.token_kind,
                r.audience_origin.as_deref(),
            );
            if let Err(error) = observer.call1(py, (record,)) {
                error.write_unraisable(py, None);
            }
        });
    })));
}

/// Hands the two functions above to `adk_token_exchange._telemetry`, which
/// connects them to OpenTelemetry if it is importable (a no-op otherwise).
pub fn init(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    let observer = m.getattr("set_fetch_observer")?;
    let counters = m.getattr("telemetry_counters")?;
    m.py()
        .import("adk_token_exchange._telemetry")?
        .call_method1("install", (observer, counters))?;
    Ok(())
}

//! The PyO3 layer: the core as Python objects, the one error mapping, and
//! process-level functions. The only Rust that knows Python.
//!
//! - [`awaitable`]: `Coroutine`, a real coroutine over core operations;
//! - [`credentials`]: `Credentials`, `TokenRequest`, `Token`, `SourceInfo`;
//! - [`exchanger`]: `ServiceAccountExchanger`, ADK's exchanger interface;
//! - [`verifier`]: `TokenVerifier`, the server side (checking Google's tokens).
//!
//! Rules kept here: a cached token is returned without an asyncio future or
//! a trip through the runtime; every blocking wait releases the GIL; every
//! error becomes one of the classes in `adk_token_exchange/errors.py`.

pub mod awaitable;
pub mod credentials;
pub mod exchanger;
pub mod telemetry;
pub mod verifier;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::config;
use crate::credentials as core_credentials;
use crate::error::{Error, ErrorClass};
use crate::process;

pyo3::import_exception!(adk_token_exchange.errors, ConfigurationError);
pyo3::import_exception!(adk_token_exchange.errors, CredentialsNotFoundError);
pyo3::import_exception!(adk_token_exchange.errors, TransientError);
pyo3::import_exception!(adk_token_exchange.errors, UpstreamTimeoutError);
pyo3::import_exception!(adk_token_exchange.errors, PermanentError);
pyo3::import_exception!(adk_token_exchange.errors, InvalidTokenError);

/// The one mapping from the core's errors to Python exception classes.
impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        let message = error.to_string();
        match error.class() {
            ErrorClass::Configuration => ConfigurationError::new_err(message),
            ErrorClass::CredentialsNotFound => CredentialsNotFoundError::new_err(message),
            ErrorClass::Transient => TransientError::new_err(message),
            ErrorClass::Timeout => UpstreamTimeoutError::new_err(message),
            ErrorClass::Permanent => PermanentError::new_err(message),
            ErrorClass::InvalidToken => {
                InvalidTokenError::new_err((message, error.rejection().unwrap_or("invalid")))
            }
        }
    }
}

/// Process-wide settings, in seconds; `None` leaves a setting unchanged.
/// All or nothing: a bad value changes nothing (`ValueError`).
#[pyfunction]
#[pyo3(signature = (*, connect_timeout=None, request_timeout=None, metadata_detect_timeout=None, refresh_window=None, max_attempts=None))]
pub fn configure(
    connect_timeout: Option<f64>,
    request_timeout: Option<f64>,
    metadata_detect_timeout: Option<f64>,
    refresh_window: Option<f64>,
    max_attempts: Option<u32>,
) -> PyResult<()> {
    config::configure(&config::Changes {
        connect_timeout,
        request_timeout,
        metadata_detect_timeout,
        max_attempts,
        refresh_window,
    })
    .map(drop)
    .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Forgets every cached token, ADC resolution and remembered request in this process.
#[pyfunction]
pub fn clear_cache(py: Python<'_>) {
    exchanger::clear_memo(py);
    py.detach(core_credentials::clear_all);
}

/// Forgets this process's ADC resolutions (not its tokens): the next use
/// runs discovery again, for an environment that changed (tests do).
#[pyfunction]
pub fn reset_application_default(py: Python<'_>) {
    py.detach(core_credentials::reset_application_default);
}

/// Routes the core's `log` records into Python `logging` under `adk_token_exchange`.
fn init_logging(py: Python<'_>) -> PyResult<()> {
    let logger = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?
        .set_prefix("adk_token_exchange")
        .filter(log::LevelFilter::Warn)
        .filter_target("_native".to_owned(), log::LevelFilter::Debug);
    // Another extension may have installed a logger first; ours then stays quiet.
    let _ = logger.install();
    Ok(())
}

/// Module setup beyond the exported items: logging, version, the fork hook.
pub fn init_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    init_logging(py)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // A forked child starts afresh: runtime, HTTP clients, caches (process.rs).
    let after_fork = pyo3::types::PyCFunction::new_closure(py, None, None, |_, _| {
        process::forked();
    })?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", after_fork)?;
    py.import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    telemetry::init(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_error_variant_maps_to_its_python_class() {
        Python::initialize();
        Python::attach(|py| {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/python");
            py.import("sys")
                .and_then(|sys| sys.getattr("path"))
                .and_then(|p| p.call_method1("insert", (0, path)))
                .expect("sys.path");
            let cases: Vec<(Error, &str)> = vec![
                (Error::Config("x".into()), "ConfigurationError"),
                (
                    Error::NoCredentials { tried: vec![] },
                    "CredentialsNotFoundError",
                ),
                (
                    Error::Unavailable {
                        endpoint: "e".into(),
                        detail: "d".into(),
                    },
                    "TransientError",
                ),
                (
                    Error::Timeout {
                        endpoint: "e".into(),
                        what: "request",
                        after: Duration::from_secs(1),
                    },
                    "UpstreamTimeoutError",
                ),
                (
                    Error::InvalidResponse {
                        endpoint: "e".into(),
                        detail: "d".into(),
                    },
                    "PermanentError",
                ),
                (
                    Error::InvalidToken {
                        reason: "expired",
                        detail: "expired 5 s ago".into(),
                    },
                    "InvalidTokenError",
                ),
            ];
            for (error, class) in cases {
                let err = PyErr::from(error);
                let name: String = err
                    .get_type(py)
                    .name()
                    .and_then(|n| n.extract())
                    .unwrap_or_default();
                assert_eq!(name, class);
            }
        });
    }
}

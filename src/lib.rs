//! adk-token-exchange: Google ID and access tokens for ADK agents.
//!
//! Layers, top to bottom (each uses only those below it):
//! `bindings` (Python) → `credentials` → `adc`, `cache` → `sources` → `http`
//! → `config`, `process`, `identity`, `request`, `token`, `error`.
//! The server side, `verify` (checking tokens Google signed), sits beside
//! `credentials` and uses `http`, `process`, `config`, `token` and `error`.
//! Everything but `bindings` is plain Rust, testable with `cargo test`.

pub mod adc;
pub mod bindings;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod error;
pub mod http;
pub mod identity;
pub mod process;
pub mod request;
pub mod sources;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod token;
pub mod verify;

use pyo3::prelude::*;

/// The Rust core of adk-token-exchange (see `adk_token_exchange._native.pyi`).
///
/// `gil_used = true`, truthfully: the request memo (`bindings/exchanger.rs`)
/// evicts with a check-then-delete sequence that only the GIL makes atomic.
/// The released wheels are abi3, which free-threaded CPython cannot load
/// anyway; this matters for a source build on a free-threaded interpreter,
/// which then runs with the GIL enabled (and says so) instead of racing.
#[pymodule(gil_used = true)]
mod _native {
    #[pymodule_export]
    use crate::bindings::awaitable::Coroutine;
    #[pymodule_export]
    use crate::bindings::credentials::{
        impersonation_chain, Credentials, FederationInfo, PyToken, PyTokenRequest, SourceInfo,
    };
    #[pymodule_export]
    use crate::bindings::exchanger::{ModelKey, ServiceAccountExchanger};
    #[pymodule_export]
    use crate::bindings::telemetry::{flush_fetch_records, set_fetch_observer, telemetry_counters};
    #[pymodule_export]
    use crate::bindings::verifier::PyTokenVerifier;
    #[pymodule_export]
    use crate::bindings::{clear_cache, configure, reset_application_default};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        crate::bindings::init_module(m)
    }
}

//! adk-token-exchange: Google ID and access tokens for ADK agents.
//!
//! Module wiring only; the Python-facing layer is `python.rs`.

pub mod adc;
pub mod cache;
pub mod credentials;
pub mod error;
pub mod http;
pub mod python;
pub mod request;
pub mod runtime;
pub mod sources;
pub mod token;

use pyo3::prelude::*;

#[pymodule]
mod _native {
    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        crate::python::init_module(m)
    }
}

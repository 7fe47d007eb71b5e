//! placeholder, being written
use pyo3::prelude::*;
pub fn init_module(m: &Bound<'_, pyo3::types::PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))
}

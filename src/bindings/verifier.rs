//! `TokenVerifier`: the core's verifier (`crate::verify`) as a Python object.
//!
//! `verify` answers a remembered or key-cached token on the calling thread
//! (the signature check with the GIL released); only a cold key set makes
//! it wait, on the core's runtime with the GIL released. `verify_async` is
//! a [`Coroutine`]: warm, it finishes on its first step with no asyncio
//! future; cold, the key fetch runs on the core's runtime and the event
//! loop is woken when it is done, so it is never blocked by I/O.
//!
//! Claims come back as a new `dict` per call (the caller may change it).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString};
use serde_json::Value;

use super::awaitable::{Begin, Coroutine, Operation, Output};
use crate::error::{Error, Result};
use crate::process;
use crate::token::Secret;
use crate::verify::{Now, Policy, PolicyRequest, Preset, Verified, Verifier};

/// `audience=` as callers pass it: one string or several.
#[derive(FromPyObject)]
pub enum Audiences {
    One(String),
    Many(Vec<String>),
}

/// Checks Google-signed tokens for one policy (see `crate::verify`).
#[pyclass(frozen, name = "TokenVerifier", module = "adk_token_exchange._native")]
pub struct PyTokenVerifier {
    inner: Arc<Verifier>,
}

type Answer = Result<Arc<Verified>>;

impl PyTokenVerifier {
    /// The answer, computed on this thread: `None` if keys must be fetched.
    fn now(&self, py: Python<'_>, token: &str) -> Option<Answer> {
        // A remembered verdict costs a digest and a lookup: not worth
        // releasing the GIL for. A signature check (~20 µs) is.
        if let Some(answer) = self.inner.recall(token) {
            return Some(answer);
        }
        match py.detach(|| self.inner.verify_now(token)) {
            Now::Done(answer) => Some(answer),
            Now::NeedsKeys => None,
        }
    }
}

#[pymethods]
impl PyTokenVerifier {
    #[new]
    #[pyo3(signature = (preset, audience, *, leeway=None, emails=Vec::new(), domains=Vec::new(), trusted_front=false, jwks_url=None))]
    fn new(
        preset: &str,
        audience: Audiences,
        leeway: Option<f64>,
        emails: Vec<String>,
        domains: Vec<String>,
        trusted_front: bool,
        jwks_url: Option<String>,
    ) -> PyResult<Self> {
        let audiences = match audience {
            Audiences::One(a) => vec![a],
            Audiences::Many(many) => many,
        };
        let policy = Policy::new(
            Preset::parse(preset)?,
            PolicyRequest {
                audiences,
                leeway,
                emails,
                domains,
                trusted_front,
                jwks_url,
            },
        )?;
        Ok(Self {
            inner: Arc::new(Verifier::new(policy)),
        })
    }

    /// The verified claims; raises `InvalidTokenError` (why) or, when the
    /// keys cannot be fetched, `TransientError`/`UpstreamTimeoutError`.
    fn verify<'py>(&self, py: Python<'py>, token: &str) -> PyResult<Bound<'py, PyDict>> {
        let answer = match self.now(py, token) {
            Some(answer) => answer,
            None => {
                let inner = Arc::clone(&self.inner);
                py.detach(|| process::runtime().block_on(inner.verify(token)))
            }
        };
        claims_dict(py, &*answer?)
    }

    /// A coroutine for the verified claims; never blocks the event loop.
    fn verify_async(&self, token: String) -> Coroutine {
        Coroutine::new(
            "TokenVerifier.verify_async",
            Verify {
                verifier: Arc::clone(&self.inner),
                token: Some(Secret::new(token)),
            },
        )
    }

    /// The ids of the cached signing keys, without fetching (`None` if none are cached).
    fn cached_key_ids(&self) -> Option<Vec<String>> {
        let set = self.inner.key_cache().peek(process::runtime_handle)?;
        Some(set.kids().map(str::to_owned).collect())
    }

    #[getter]
    fn preset(&self) -> &'static str {
        self.inner.policy().preset.as_str()
    }

    #[getter]
    fn audiences(&self) -> Vec<String> {
        self.inner.policy().audiences.clone()
    }

    #[getter]
    fn leeway(&self) -> f64 {
        self.inner.policy().leeway.as_secs_f64()
    }

    #[getter]
    fn trusted_front(&self) -> bool {
        self.inner.policy().trusted_front
    }

    #[getter]
    fn jwks_url(&self) -> String {
        self.inner.policy().jwks_url.to_string()
    }

    #[getter]
    fn allowed_emails(&self) -> Option<Vec<String>> {
        let callers = self.inner.policy().callers.as_ref()?;
        let mut emails: Vec<String> = callers.emails.iter().cloned().collect();
        emails.sort();
        Some(emails)
    }

    #[getter]
    fn allowed_domains(&self) -> Option<Vec<String>> {
        let callers = self.inner.policy().callers.as_ref()?;
        let mut domains: Vec<String> = callers.domains.iter().cloned().collect();
        domains.sort();
        Some(domains)
    }

    fn __repr__(&self) -> String {
        let p = self.inner.policy();
        format!(
            "TokenVerifier(preset={:?}, audience={:?}, trusted_front={})",
            p.preset.as_str(),
            p.audiences,
            if p.trusted_front { "True" } else { "False" }
        )
    }
}

/// One `verify_async` call, as a coroutine's operation.
struct Verify {
    verifier: Arc<Verifier>,
    /// The caller's token: zeroized when the operation ends.
    token: Option<Secret>,
}

impl Operation for Verify {
    fn begin(&mut self, py: Python<'_>) -> PyResult<Begin> {
        let token = self
            .token
            .take()
            .ok_or_else(|| Error::Internal("verify_async began twice".into()))?;
        let verifier = Arc::clone(&self.verifier);
        let now = {
            if let Some(answer) = verifier.recall(token.expose()) {
                Some(answer)
            } else {
                match py.detach(|| verifier.verify_now(token.expose())) {
                    Now::Done(answer) => Some(answer),
                    Now::NeedsKeys => None,
                }
            }
        };
        if let Some(answer) = now {
            return Ok(Begin::Ready(
                claims_dict(py, &*answer?)?.into_any().unbind(),
            ));
        }
        Ok(Begin::Wait(Box::pin(async move {
            Box::new(verifier.verify(token.expose()).await) as Output
        })))
    }

    fn finish(&mut self, py: Python<'_>, output: Output) -> PyResult<Py<PyAny>> {
        let answer = output
            .downcast::<Answer>()
            .map_err(|_| Error::Internal("unexpected verification output".into()))?;
        Ok(claims_dict(py, &*(*answer)?)?.into_any().unbind())
    }
}

/// The claims as a new Python dict.
fn claims_dict<'py>(py: Python<'py>, verified: &Verified) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in &verified.claims {
        dict.set_item(PyString::new(py, k), to_py(py, v)?)?;
    }
    Ok(dict)
}

/// A JSON value as the Python object `json.loads` would make (serde_json
/// bounds the nesting at 128 levels while parsing, so this recursion is bounded).
fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| to_py(py, v))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(PyString::new(py, k), to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

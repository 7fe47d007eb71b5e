//! `ServiceAccountExchanger`: ADK's credential-exchanger interface over the
//! core. What depends on ADK (reading its model, building its result, its
//! error types) is supplied by the shim as four callables; the flow is one
//! way, ADK → shim → here → cache, with a callback into the shim only on a
//! miss:
//!
//! 1. The content key ([`ModelKey`]): the fields of ADK's model that decide
//!    the request, read here by the names the shim gives (ADK deep-copies the
//!    credential for every call, so object identity never repeats; content
//!    does). ADK's knowledge stays in the shim as data; reading it here costs
//!    a few dictionary lookups instead of a Python call.
//! 2. The request memo (here): key → `TokenRequest` (credentials + audience
//!    or scopes), made by `read_request(auth_credential)` (shim) on a miss.
//!    It is the only memo on the warm path; see [`REQUEST_MEMO`].
//! 3. The token cache (core): the fresh token, or one shared fetch.
//! 4. `build_result(token)` (shim): ADK's `AuthCredential` and
//!    `ExchangeResult`, built once per token and kept on the token itself,
//!    so a warm call returns the very same objects (ADK pools MCP sessions
//!    by the header value) and they go when the token goes. A credential
//!    that wants the token in another header (`X-Serverless-Authorization`,
//!    `Proxy-Authorization`) has `read_request` answer `(request, header)`;
//!    its result, `build_result(token, header)`, is kept beside the default.
//!
//! Errors from the core reach ADK through `wrap_error` (shim): ours, and
//! ADK's `CredentialExchangeError` too, never a `ValueError`.

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use super::awaitable::{Begin, Coroutine, Operation, Output};
use super::credentials::{PyToken, PyTokenRequest};
use crate::credentials::Issued;
use crate::error::Error;

/// The request memo: content key (see [`ModelKey`]) → `TokenRequest`.
///
/// Invariants: the key is everything in ADK's model that decides the
/// request (which key material, which audience or scopes, impersonation), so
/// two credentials with one key ask for the same thing; one memo per process,
/// shared by every exchanger (ADK's OpenAPI tools build a new exchanger per
/// call), all built with the same shim; at most [`MAX_REQUESTS`] entries
/// (beyond, the oldest quarter goes); emptied by `clear_cache()`. It holds
/// no token: tokens live only in the core's cache.
static REQUEST_MEMO: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// Entries in the request memo.
pub const MAX_REQUESTS: usize = 1024;

fn memo(py: Python<'_>) -> &Bound<'_, PyDict> {
    REQUEST_MEMO
        .get_or_init(py, || PyDict::new(py).unbind())
        .bind(py)
}

/// Empties the request memo.
pub fn clear_memo(py: Python<'_>) {
    memo(py).clear();
}

/// Which fields of ADK's credential model decide the request, by name (the
/// shim knows ADK's model; this only reads it): `credential.<attribute>`'s
/// `fields`, the `nested` model's `nested_fields`, and both models' pydantic
/// extras. The key is the tuple of their values, lists and dicts frozen into
/// tuples, so equal content gives equal keys whatever the objects.
#[pyclass(frozen, module = "adk_token_exchange._native")]
pub struct ModelKey {
    attribute: Py<PyString>,
    fields: Vec<Py<PyString>>,
    nested: Py<PyString>,
    nested_fields: Vec<Py<PyString>>,
}

/// Deepest extras value frozen (deeper is unhashable and skips the memo).
const MAX_FREEZE_DEPTH: usize = 8;

#[pymethods]
impl ModelKey {
    #[new]
    fn new(
        attribute: Bound<'_, PyString>,
        fields: Vec<Bound<'_, PyString>>,
        nested: Bound<'_, PyString>,
        nested_fields: Vec<Bound<'_, PyString>>,
    ) -> Self {
        let intern =
            |s: Bound<'_, PyString>| PyString::intern(s.py(), &s.to_string_lossy()).unbind();
        Self {
            attribute: intern(attribute),
            fields: fields.into_iter().map(intern).collect(),
            nested: intern(nested),
            nested_fields: nested_fields.into_iter().map(intern).collect(),
        }
    }

    /// The key of `credential`, or `None` when it has no such model (the
    /// shim's `read_request` then says what is missing).
    fn key<'py>(&self, credential: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let py = credential.py();
        let model = match credential.getattr(self.attribute.bind(py)) {
            Ok(model) if !model.is_none() => model,
            _ => return Ok(None),
        };
        let mut values: Vec<Bound<'py, PyAny>> =
            Vec::with_capacity(self.fields.len() + self.nested_fields.len() + 3);
        let fields = model
            .getattr(intern!(py, "__dict__"))?
            .cast_into::<PyDict>()?;
        for name in &self.fields {
            values.push(freeze(field(&fields, name.bind(py))?, 0)?);
        }
        let nested = field(&fields, self.nested.bind(py))?;
        if nested.is_none() {
            values.push(nested);
        } else {
            let inner = nested
                .getattr(intern!(py, "__dict__"))?
                .cast_into::<PyDict>()?;
            for name in &self.nested_fields {
                values.push(freeze(field(&inner, name.bind(py))?, 0)?);
            }
            values.push(extras(&nested)?);
        }
        values.push(extras(&model)?);
        PyTuple::new(py, values).map(Some)
    }
}

fn field<'py>(
    dict: &Bound<'py, PyDict>,
    name: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(dict
        .get_item(name)?
        .unwrap_or_else(|| dict.py().None().into_bound(dict.py())))
}

/// A pydantic model's extras, frozen (`None` when empty).
fn extras<'py>(model: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = model.py();
    let extra = model.getattr(intern!(py, "__pydantic_extra__"))?;
    match extra.cast::<PyDict>() {
        Ok(dict) if !dict.is_empty() => freeze(extra, 0),
        _ => Ok(py.None().into_bound(py)),
    }
}

/// Lists and dicts as tuples (dicts as `(key, value)` pairs in order), recursively.
fn freeze(value: Bound<'_, PyAny>, depth: usize) -> PyResult<Bound<'_, PyAny>> {
    let py = value.py();
    if depth > MAX_FREEZE_DEPTH {
        return Ok(value);
    }
    if let Ok(list) = value.cast::<PyList>() {
        let items: PyResult<Vec<_>> = list.iter().map(|v| freeze(v, depth + 1)).collect();
        return Ok(PyTuple::new(py, items?)?.into_any());
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let items: PyResult<Vec<_>> = dict
            .iter()
            .map(|(k, v)| Ok(PyTuple::new(py, [k, freeze(v, depth + 1)?])?.into_any()))
            .collect();
        return Ok(PyTuple::new(py, items?)?.into_any());
    }
    Ok(value)
}

/// ADK's result for one token, built once.
struct Built {
    /// ADK's `AuthCredential` (what `exchange_credential` returns).
    credential: Py<PyAny>,
    /// ADK's `ExchangeResult` around it (what `exchange` returns).
    exchange_result: Py<PyAny>,
    /// Results for the token in another header: header → `(credential,
    /// exchange_result)`, built on first use (guarded by the GIL).
    in_header: Py<PyDict>,
}

/// A memoized request: the token request, and the header it goes in when not
/// `Authorization`.
type Memoized = (Py<PyTokenRequest>, Option<Py<PyAny>>);

/// Which of ADK's two answers a caller wants.
#[derive(Clone, Copy)]
enum Answer {
    Credential,
    ExchangeResult,
}

/// ADK's `BaseCredentialExchanger` interface; `exchanger.py` supplies the
/// ADK-version-dependent callables and makes ADK accept it.
#[pyclass(frozen, subclass, module = "adk_token_exchange._native")]
pub struct ServiceAccountExchanger {
    request_key: Py<ModelKey>,
    read_request: Py<PyAny>,
    build_result: Py<PyAny>,
    wrap_error: Py<PyAny>,
}

impl ServiceAccountExchanger {
    /// The request for `auth_credential`, from the memo or the shim.
    fn request(&self, py: Python<'_>, auth_credential: &Bound<'_, PyAny>) -> PyResult<Memoized> {
        let Some(key) = self.request_key.get().key(auth_credential)? else {
            return self.read(py, auth_credential);
        };
        let memo = memo(py);
        let found = match memo.get_item(&key) {
            Ok(found) => found,
            // Unhashable content (odd extras): no memo for this one.
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) => {
                return self.read(py, auth_credential);
            }
            Err(e) => return Err(e),
        };
        if let Some(found) = found {
            return memoized(found);
        }
        let read = self
            .read_request
            .call1(py, (auth_credential,))?
            .into_bound(py);
        let request = memoized(read.clone())?;
        if memo.len() >= MAX_REQUESTS {
            let oldest: Vec<Bound<'_, PyAny>> = memo.keys().iter().take(MAX_REQUESTS / 4).collect();
            for k in oldest {
                memo.del_item(k)?;
            }
        }
        memo.set_item(key, read)?;
        Ok(request)
    }

    fn read(&self, py: Python<'_>, auth_credential: &Bound<'_, PyAny>) -> PyResult<Memoized> {
        memoized(
            self.read_request
                .call1(py, (auth_credential,))?
                .into_bound(py),
        )
    }

    /// ADK's answer for `token` (in `header`, if not `Authorization`), built
    /// by the shim once per token.
    fn answer(
        &self,
        py: Python<'_>,
        issued: Issued,
        header: Option<&Py<PyAny>>,
        which: Answer,
    ) -> PyResult<Py<PyAny>> {
        let token = Arc::clone(&issued.token);
        let built = match token.derived.get::<Built>() {
            Some(built) => built,
            None => {
                let (credential, exchange_result): (Py<PyAny>, Py<PyAny>) = self
                    .build_result
                    .call1(py, (PyToken::new(issued.clone()),))?
                    .extract(py)?;
                // Another thread may have built one meanwhile: the first stays.
                token
                    .derived
                    .set(Built {
                        credential,
                        exchange_result,
                        in_header: PyDict::new(py).unbind(),
                    })
                    .ok_or_else(|| Error::Internal("token result memo".into()))?
            }
        };
        let (credential, exchange_result) = match header {
            None => (
                built.credential.clone_ref(py),
                built.exchange_result.clone_ref(py),
            ),
            Some(header) => {
                let shaped = built.in_header.bind(py);
                let pair = match shaped.get_item(header)? {
                    Some(pair) => pair,
                    None => {
                        let pair = self
                            .build_result
                            .call1(py, (PyToken::new(issued), header))?
                            .into_bound(py);
                        shaped.set_item(header, &pair)?;
                        pair
                    }
                };
                pair.extract()?
            }
        };
        Ok(match which {
            Answer::Credential => credential,
            Answer::ExchangeResult => exchange_result,
        })
    }

    /// The answer from the cache, if the token is fresh.
    fn ready(
        &self,
        py: Python<'_>,
        auth_credential: &Bound<'_, PyAny>,
        which: Answer,
    ) -> PyResult<(Memoized, Option<Py<PyAny>>)> {
        let request = self.request(py, auth_credential)?;
        let cached = request.0.get().cached_token();
        let answer = match cached {
            Some(issued) => Some(self.answer(py, issued, request.1.as_ref(), which)?),
            None => None,
        };
        Ok((request, answer))
    }
}

/// What `read_request` answered: a `TokenRequest`, or `(TokenRequest, header)`.
fn memoized(read: Bound<'_, PyAny>) -> PyResult<Memoized> {
    if let Ok(request) = read.cast::<PyTokenRequest>() {
        return Ok((request.clone().unbind(), None));
    }
    let (request, header): (Bound<'_, PyTokenRequest>, Bound<'_, PyAny>) = read.extract()?;
    Ok((request.unbind(), Some(header.unbind())))
}

/// Raises `wrap_error(exc)` with `exc` as its cause.
fn wrapped(py: Python<'_>, wrap_error: &Py<PyAny>, error: Error) -> PyErr {
    let cause = PyErr::from(error);
    match wrap_error.call1(py, (cause.value(py),)) {
        Ok(wrapper) => {
            let err = PyErr::from_value(wrapper.into_bound(py));
            err.set_cause(py, Some(cause));
            err
        }
        Err(shim_failure) => {
            shim_failure.set_cause(py, Some(cause));
            shim_failure
        }
    }
}

#[pymethods]
impl ServiceAccountExchanger {
    #[new]
    fn new(
        request_key: Py<ModelKey>,
        read_request: Py<PyAny>,
        build_result: Py<PyAny>,
        wrap_error: Py<PyAny>,
    ) -> Self {
        Self {
            request_key,
            read_request,
            build_result,
            wrap_error,
        }
    }

    /// ADK's `async exchange(auth_credential, auth_scheme=None) -> ExchangeResult`:
    /// a coroutine, finished on its first step when the token is cached.
    #[pyo3(signature = (auth_credential, auth_scheme=None))]
    fn exchange(
        slf: &Bound<'_, Self>,
        auth_credential: Bound<'_, PyAny>,
        auth_scheme: Option<Bound<'_, PyAny>>,
    ) -> Coroutine {
        let _ = auth_scheme;
        Coroutine::new(
            "ServiceAccountExchanger.exchange",
            Exchange {
                exchanger: slf.clone().unbind(),
                auth_credential: auth_credential.unbind(),
                header: None,
            },
        )
    }

    /// The warm half of `exchange`: the `ExchangeResult` if the token is
    /// cached, else `None` (then await `exchange`). No I/O, no await.
    fn ready_exchange(
        &self,
        py: Python<'_>,
        auth_credential: Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.ready(py, &auth_credential, Answer::ExchangeResult)?.1)
    }

    /// The older synchronous `exchange_credential(auth_scheme, auth_credential)
    /// -> AuthCredential` of ADK's OpenAPI tools; blocks this thread (GIL
    /// released) only on a cache miss.
    #[pyo3(signature = (auth_scheme, auth_credential=None))]
    fn exchange_credential(
        &self,
        py: Python<'_>,
        auth_scheme: Bound<'_, PyAny>,
        auth_credential: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = auth_scheme;
        let auth_credential = auth_credential.unwrap_or_else(|| py.None().into_bound(py));
        let ((request, header), answer) = self.ready(py, &auth_credential, Answer::Credential)?;
        if let Some(answer) = answer {
            return Ok(answer);
        }
        let request = request.get();
        let (credential, wanted) = (
            Arc::clone(&request.credential),
            Arc::clone(&request.request),
        );
        let issued = py.detach(|| crate::process::runtime().block_on(credential.token(&wanted)));
        super::telemetry::flush(py);
        let issued = issued.map_err(|e| wrapped(py, &self.wrap_error, e))?;
        self.answer(py, issued, header.as_ref(), Answer::Credential)
    }
}

/// One `exchange` call, as a coroutine's operation.
struct Exchange {
    exchanger: Py<ServiceAccountExchanger>,
    auth_credential: Py<PyAny>,
    /// The header of the memoized request, once `begin` read it.
    header: Option<Py<PyAny>>,
}

type Fetched = crate::error::Result<Issued>;

impl Operation for Exchange {
    fn begin(&mut self, py: Python<'_>) -> PyResult<Begin> {
        let exchanger = self.exchanger.get();
        let ((request, header), answer) =
            exchanger.ready(py, self.auth_credential.bind(py), Answer::ExchangeResult)?;
        if let Some(answer) = answer {
            return Ok(Begin::Ready(answer));
        }
        self.header = header;
        let request = request.get();
        let (credential, wanted) = (
            Arc::clone(&request.credential),
            Arc::clone(&request.request),
        );
        Ok(Begin::Wait(Box::pin(async move {
            Box::new(credential.token(&wanted).await) as Output
        })))
    }

    fn finish(&mut self, py: Python<'_>, output: Output) -> PyResult<Py<PyAny>> {
        let exchanger = self.exchanger.get();
        let fetched = output
            .downcast::<Fetched>()
            .map_err(|_| Error::Internal("unexpected fetch output".into()))?;
        match *fetched {
            Ok(issued) => {
                exchanger.answer(py, issued, self.header.as_ref(), Answer::ExchangeResult)
            }
            Err(error) => Err(wrapped(py, &exchanger.wrap_error, error)),
        }
    }
}

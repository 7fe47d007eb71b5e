//! The PyO3 layer: Python classes over the core, the one error mapping, and
//! the bridge from tokio futures to asyncio.
//!
//! Rules kept here: a cached token is returned without creating an asyncio
//! future or touching the runtime; every blocking wait releases the GIL; every
//! error becomes one of the classes in `adk_token_exchange/errors.py`.

use std::cell::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyString};
use pyo3_async_runtimes::generic::{self, ContextExt};
use pyo3_async_runtimes::TaskLocals;

use crate::adc;
use crate::cache;
use crate::credentials::{self, Credential};
use crate::error::{Error, ErrorClass};
use crate::http;
use crate::request::TokenRequest;
use crate::runtime;
use crate::sources::impersonated::Impersonation;
use crate::sources::SourceDescription;
use crate::token::Token;

pyo3::import_exception!(adk_token_exchange.errors, ConfigurationError);
pyo3::import_exception!(adk_token_exchange.errors, CredentialsNotFoundError);
pyo3::import_exception!(adk_token_exchange.errors, TransientError);
pyo3::import_exception!(adk_token_exchange.errors, UpstreamTimeoutError);
pyo3::import_exception!(adk_token_exchange.errors, PermanentError);

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
        }
    }
}

/// pyo3-async-runtimes over our fork-aware runtime (its own tokio runtime is a
/// process-wide static that cannot be rebuilt in a forked child).
struct ForkSafeTokio;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl generic::Runtime for ForkSafeTokio {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime::handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime::handle().spawn_blocking(f)
    }
}

impl ContextExt for ForkSafeTokio {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// An awaitable that is already complete: `await` returns its value at once,
/// without an asyncio future or a trip through the event loop.
#[pyclass(module = "adk_token_exchange._native")]
struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    fn send(&mut self, py: Python<'_>, _value: Bound<'_, PyAny>) -> PyResult<()> {
        self.__next__(py)
    }

    #[pyo3(signature = (exc, _value=None, _traceback=None))]
    fn throw(
        &mut self,
        exc: Bound<'_, PyAny>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.value = None;
        Err(PyErr::from_value(exc))
    }

    fn close(&mut self) {
        self.value = None;
    }
}

fn ready(py: Python<'_>, value: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    Ok(Bound::new(py, Ready { value: Some(value) })?.into_any())
}

/// A token and its expiry; `repr` never shows the value.
#[pyclass(frozen, name = "Token", module = "adk_token_exchange._native")]
pub struct PyToken {
    token: Arc<Token>,
    quota_project_id: Option<Arc<str>>,
}

impl PyToken {
    fn new(token: Arc<Token>, credential: &Credential) -> Self {
        Self {
            token,
            quota_project_id: credential.quota_project_id(),
        }
    }
}

#[pymethods]
impl PyToken {
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.token.value.expose())
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.token.kind.as_str()
    }

    #[getter]
    fn expires_at(&self) -> f64 {
        self.token.expires_at_unix()
    }

    #[getter]
    fn quota_project_id(&self) -> Option<&str> {
        self.quota_project_id.as_deref()
    }

    fn __repr__(&self) -> String {
        format!(
            "Token(kind={:?}, expires_at={:.0}, value=***)",
            self.token.kind.as_str(),
            self.token.expires_at_unix()
        )
    }
}

/// What a credential resolved to; no secrets.
#[pyclass(frozen, get_all, module = "adk_token_exchange._native")]
pub struct SourceInfo {
    kind: &'static str,
    origin: String,
    principal: Option<String>,
    impersonating: Option<String>,
    quota_project_id: Option<String>,
    token_uri: Option<String>,
    steps: Vec<String>,
}

impl SourceInfo {
    fn new(d: SourceDescription, steps: Vec<String>) -> Self {
        Self {
            kind: d.kind.as_str(),
            origin: d.origin,
            principal: d.principal,
            impersonating: d.impersonating,
            quota_project_id: d.quota_project_id,
            token_uri: d.token_uri,
            steps,
        }
    }
}

#[pymethods]
impl SourceInfo {
    fn __repr__(&self) -> String {
        let py_repr = |o: &Option<String>| o.as_deref().map_or("None".into(), |s| format!("{s:?}"));
        format!(
            "SourceInfo(kind={:?}, origin={:?}, principal={}, impersonating={})",
            self.kind,
            self.origin,
            py_repr(&self.principal),
            py_repr(&self.impersonating)
        )
    }
}

fn impersonation(
    target: Option<String>,
    delegates: Vec<String>,
) -> PyResult<Option<Impersonation>> {
    match target {
        Some(target) if !target.trim().is_empty() => Ok(Some(Impersonation {
            target: target.trim().to_owned(),
            delegates,
        })),
        _ if !delegates.is_empty() => Err(Error::Config(
            "delegates were given without a service account to impersonate: pass impersonate=EMAIL too".into(),
        )
        .into()),
        _ => Ok(None),
    }
}

/// A Google credential source plus its (process-wide, per identity) token cache.
#[pyclass(frozen, module = "adk_token_exchange._native")]
pub struct Credentials {
    inner: Arc<Credential>,
}

impl Credentials {
    fn peek(&self, request: &TokenRequest) -> Option<PyToken> {
        self.inner
            .cache()
            .peek(request, runtime::handle)
            .map(|t| PyToken::new(t, &self.inner))
    }

    fn blocking(&self, py: Python<'_>, request: TokenRequest) -> PyResult<PyToken> {
        if let Some(token) = self.peek(&request) {
            return Ok(token);
        }
        let cache = Arc::clone(self.inner.cache());
        let token = py.detach(|| {
            let rt = runtime::runtime();
            rt.block_on(cache.get(&request, rt.handle()))
        })?;
        Ok(PyToken::new(token, &self.inner))
    }

    fn awaitable<'py>(
        &self,
        py: Python<'py>,
        request: TokenRequest,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(token) = self.peek(&request) {
            return ready(py, Py::new(py, token)?.into_any());
        }
        let credential = Arc::clone(&self.inner);
        generic::future_into_py::<ForkSafeTokio, _, PyToken>(py, async move {
            let token = credential.cache().get(&request, &runtime::handle()).await?;
            Ok(PyToken::new(token, &credential))
        })
    }
}

#[pymethods]
impl Credentials {
    #[staticmethod]
    #[pyo3(signature = (*, impersonate=None, delegates=Vec::new()))]
    fn application_default(impersonate: Option<String>, delegates: Vec<String>) -> PyResult<Self> {
        Ok(Self {
            inner: credentials::application_default(impersonation(impersonate, delegates)?),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (info, *, origin="service_account_credential".to_owned(), impersonate=None, delegates=Vec::new()))]
    fn from_service_account_info(
        info: &str,
        origin: String,
        impersonate: Option<String>,
        delegates: Vec<String>,
    ) -> PyResult<Self> {
        let source = adc::from_json(info, &origin, impersonation(impersonate, delegates)?)?;
        Ok(Self {
            inner: credentials::from_source(source),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (path, *, impersonate=None, delegates=Vec::new()))]
    fn from_file(
        py: Python<'_>,
        path: std::path::PathBuf,
        impersonate: Option<String>,
        delegates: Vec<String>,
    ) -> PyResult<Self> {
        let imp = impersonation(impersonate, delegates)?;
        let source = py.detach(|| adc::from_file(&path, imp))?;
        Ok(Self {
            inner: credentials::from_source(source),
        })
    }

    #[getter]
    fn identity(&self) -> &str {
        self.inner.identity()
    }

    fn resolve(&self, py: Python<'_>) -> PyResult<SourceInfo> {
        let credential = Arc::clone(&self.inner);
        let (description, steps) =
            py.detach(|| runtime::runtime().block_on(credential.resolve()))?;
        Ok(SourceInfo::new(description, steps))
    }

    fn cached_id_token(&self, audience: &str) -> Option<PyToken> {
        self.peek(&TokenRequest::id(audience))
    }

    fn cached_access_token(&self, scopes: Vec<String>) -> Option<PyToken> {
        self.peek(&TokenRequest::access(scopes))
    }

    fn id_token(&self, py: Python<'_>, audience: &str) -> PyResult<PyToken> {
        self.blocking(py, id_request(audience)?)
    }

    fn access_token(&self, py: Python<'_>, scopes: Vec<String>) -> PyResult<PyToken> {
        self.blocking(py, TokenRequest::access(scopes))
    }

    fn id_token_async<'py>(&self, py: Python<'py>, audience: &str) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, id_request(audience)?)
    }

    fn access_token_async<'py>(
        &self,
        py: Python<'py>,
        scopes: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.awaitable(py, TokenRequest::access(scopes))
    }

    fn __repr__(&self) -> String {
        format!("Credentials({:?})", self.inner.identity())
    }
}

fn id_request(audience: &str) -> PyResult<TokenRequest> {
    if audience.trim().is_empty() {
        return Err(Error::Config(
            "an ID token needs an audience: set ServiceAccount(audience=...) to the URL of the service \
             (for Cloud Run, its https://… service URL)"
                .into(),
        )
        .into());
    }
    Ok(TokenRequest::id(audience))
}

/// `read_request`'s answer (kept alive) and what it was parsed into.
type Parsed = (Py<PyAny>, Arc<Credential>, Arc<TokenRequest>);

/// ADK's `BaseCredentialExchanger` interface; `exchanger.py` supplies the
/// ADK-version-dependent callables and makes ADK accept it.
#[pyclass(frozen, subclass, module = "adk_token_exchange._native")]
pub struct ServiceAccountExchanger {
    read_request: Py<PyAny>,
    build_result: Py<PyAny>,
    wrap_error: Py<PyAny>,
    results: Mutex<HashMap<usize, Built>>,
    parsed: Mutex<HashMap<usize, Parsed>>,
}

/// Results built for a cached token, so a warm exchange calls `build_result`
/// once per token rather than per call and returns the same objects, as ADK's
/// own exchanger returns its cached credential (ADK only reads them, and MCP
/// session pooling keys on the header value). Keyed by the token's address;
/// each entry holds its `Arc`, so an address cannot be reused while cached.
struct Built {
    _token: Arc<Token>,
    /// ADK's `AuthCredential` (what `exchange_credential` returns).
    credential: Py<PyAny>,
    /// ADK's `ExchangeResult` around that same credential (what `exchange` returns).
    exchange_result: Py<PyAny>,
}

impl Built {
    fn get(&self, py: Python<'_>, as_exchange_result: bool) -> Py<PyAny> {
        if as_exchange_result {
            self.exchange_result.clone_ref(py)
        } else {
            self.credential.clone_ref(py)
        }
    }
}

/// Entries kept before the memo starts over (one per key and token generation).
const MAX_BUILT_RESULTS: usize = 256;

impl ServiceAccountExchanger {
    /// Asks the shim what `auth_credential` wants: (Credentials, is_id, audience | scopes).
    fn read(
        &self,
        py: Python<'_>,
        auth_credential: &Bound<'_, PyAny>,
    ) -> PyResult<(Arc<Credential>, Arc<TokenRequest>)> {
        let answer = self.read_request.call1(py, (auth_credential,))?;
        // The shim memoizes its answer per credential content, so a warm call
        // hands back the very same tuple: parse it once. The entry keeps the
        // tuple alive, so its address cannot be reused by another object.
        let key = answer.as_ptr() as usize;
        if let Some((_, credential, request)) = self.parsed().get(&key) {
            return Ok((Arc::clone(credential), Arc::clone(request)));
        }
        let (credentials, is_id, target): (Bound<'_, Credentials>, bool, Bound<'_, PyAny>) =
            answer.extract(py)?;
        let request = Arc::new(if is_id {
            id_request(&target.extract::<String>()?)?
        } else {
            TokenRequest::access(target.extract::<Vec<String>>()?)
        });
        let credential = Arc::clone(&credentials.get().inner);
        let evicted = {
            let mut parsed = self.parsed();
            let evicted = if parsed.len() >= MAX_BUILT_RESULTS {
                std::mem::take(&mut *parsed)
            } else {
                HashMap::new()
            };
            parsed.insert(key, (answer, Arc::clone(&credential), Arc::clone(&request)));
            evicted
        };
        drop(evicted); // after the lock: a decref may run Python code
        Ok((credential, request))
    }

    fn parsed(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Parsed>> {
        self.parsed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn built_results(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Built>> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The result for `token`: `build_result(token, auth_credential)` runs once per token.
    fn result(
        &self,
        py: Python<'_>,
        token: Arc<Token>,
        credential: &Credential,
        auth_credential: Bound<'_, PyAny>,
        as_exchange_result: bool,
    ) -> PyResult<Py<PyAny>> {
        let key = Arc::as_ptr(&token) as usize;
        if let Some(built) = self.built_results().get(&key) {
            return Ok(built.get(py, as_exchange_result));
        }
        let pytoken = PyToken::new(Arc::clone(&token), credential);
        let (adk_credential, exchange_result): (Py<PyAny>, Py<PyAny>) = self
            .build_result
            .call1(py, (pytoken, auth_credential))?
            .extract(py)?;
        let built = Built {
            _token: token,
            credential: adk_credential,
            exchange_result,
        };
        let (evicted, kept, unused) = {
            let mut memo = self.built_results();
            let evicted = if memo.len() >= MAX_BUILT_RESULTS {
                std::mem::take(&mut *memo)
            } else {
                HashMap::new()
            };
            // build_result may have let another thread build for the same
            // token meanwhile: keep the first, so every caller gets the same objects.
            match memo.entry(key) {
                Entry::Occupied(first) => (
                    evicted,
                    first.get().get(py, as_exchange_result),
                    Some(built),
                ),
                Entry::Vacant(slot) => (
                    evicted,
                    slot.insert(built).get(py, as_exchange_result),
                    None,
                ),
            }
        };
        // Dropped after the lock is released: a decref may run Python code.
        drop((evicted, unused));
        Ok(kept)
    }

    fn forget_results(&self) {
        let evicted = (
            std::mem::take(&mut *self.built_results()),
            std::mem::take(&mut *self.parsed()),
        );
        drop(evicted);
    }
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
    fn new(read_request: Py<PyAny>, build_result: Py<PyAny>, wrap_error: Py<PyAny>) -> Self {
        Self {
            read_request,
            build_result,
            wrap_error,
            results: Mutex::default(),
            parsed: Mutex::default(),
        }
    }

    #[pyo3(signature = (auth_credential, auth_scheme=None))]
    fn exchange<'py>(
        slf: &Bound<'py, Self>,
        auth_credential: Bound<'py, PyAny>,
        auth_scheme: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = auth_scheme;
        let py = slf.py();
        let this = slf.get();
        let (credential, request) = this.read(py, &auth_credential)?;
        if let Some(token) = credential.cache().peek(&request, runtime::handle) {
            let result = this.result(py, token, &credential, auth_credential, true)?;
            return ready(py, result);
        }
        let exchanger = slf.clone().unbind();
        let auth_credential = auth_credential.unbind();
        generic::future_into_py::<ForkSafeTokio, _, Py<PyAny>>(py, async move {
            let fetched = credential.cache().get(&request, &runtime::handle()).await;
            Python::attach(|py| {
                let this = exchanger.get();
                match fetched {
                    Ok(token) => {
                        this.result(py, token, &credential, auth_credential.into_bound(py), true)
                    }
                    Err(error) => Err(wrapped(py, &this.wrap_error, error)),
                }
            })
        })
    }

    #[pyo3(signature = (auth_scheme, auth_credential=None))]
    fn exchange_credential(
        &self,
        py: Python<'_>,
        auth_scheme: Bound<'_, PyAny>,
        auth_credential: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = auth_scheme;
        let auth_credential = auth_credential.unwrap_or_else(|| py.None().into_bound(py));
        let (credential, request) = self.read(py, &auth_credential)?;
        let token = match credential.cache().peek(&request, runtime::handle) {
            Some(token) => token,
            None => {
                let cache = Arc::clone(credential.cache());
                py.detach(|| {
                    let rt = runtime::runtime();
                    rt.block_on(cache.get(&request, rt.handle()))
                })
                .map_err(|e| wrapped(py, &self.wrap_error, e))?
            }
        };
        self.result(py, token, &credential, auth_credential, false)
    }

    /// Drops the requests parsed and results built so far (with `clear_cache`).
    fn clear_results(&self) {
        self.forget_results();
    }
}

fn seconds(name: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 && v < 86_400.0 => Ok(Some(Duration::from_secs_f64(v))),
        Some(v) => Err(PyValueError::new_err(format!(
            "configure({name}={v}): expected a number of seconds between 0 and 86400"
        ))),
    }
}

/// Process-wide settings, in seconds; `None` leaves a setting unchanged.
#[pyfunction]
#[pyo3(signature = (*, connect_timeout=None, request_timeout=None, metadata_detect_timeout=None, refresh_window=None, max_attempts=None))]
fn configure(
    connect_timeout: Option<f64>,
    request_timeout: Option<f64>,
    metadata_detect_timeout: Option<f64>,
    refresh_window: Option<f64>,
    max_attempts: Option<u32>,
) -> PyResult<()> {
    let mut settings = http::settings();
    if let Some(d) = seconds("connect_timeout", connect_timeout)? {
        settings.connect_timeout = d;
    }
    if let Some(d) = seconds("request_timeout", request_timeout)? {
        settings.request_timeout = d;
    }
    if let Some(d) = seconds("metadata_detect_timeout", metadata_detect_timeout)? {
        settings.metadata_detect_timeout = d;
    }
    if let Some(n) = max_attempts {
        if !(1..=10).contains(&n) {
            return Err(PyValueError::new_err(format!(
                "configure(max_attempts={n}): expected 1 to 10"
            )));
        }
        settings.max_attempts = n;
    }
    // Everything is validated before anything is applied: all or nothing.
    let refresh_window = seconds("refresh_window", refresh_window)?;
    http::configure(settings);
    if let Some(d) = refresh_window {
        cache::set_refresh_window(d);
    }
    Ok(())
}

/// Forgets every cached token and resolved ADC in this process.
#[pyfunction]
fn clear_cache() {
    credentials::clear_all();
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

pub fn init_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    init_logging(py)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyToken>()?;
    m.add_class::<SourceInfo>()?;
    m.add_class::<Credentials>()?;
    m.add_class::<ServiceAccountExchanger>()?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(clear_cache, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

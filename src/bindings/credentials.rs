//! `Credentials`, `TokenRequest`, `Token` and `SourceInfo`: the core's
//! credentials as Python objects.
//!
//! A `Credentials` is a handle (which source, or ADC); its tokens live in the
//! core's per-process cache. A `TokenRequest` binds one to what is asked (an
//! audience or scopes), validated once, so the hot paths (the exchanger, the
//! httpx auth classes) only look the token up.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::awaitable::{Begin, Coroutine, Operation, Output};
use crate::adc;
use crate::credentials::{Credential, Issued};
use crate::error::{Error, Result};
use crate::process;
use crate::request::TokenRequest;
use crate::sources::impersonated::Impersonation;
use crate::sources::SourceDescription;
use crate::token::{jwt_claims, Token};

/// A token and its expiry; `repr` never shows the value.
#[pyclass(frozen, name = "Token", module = "adk_token_exchange._native")]
pub struct PyToken {
    pub(crate) token: Arc<Token>,
    quota_project_id: Option<Arc<str>>,
}

impl PyToken {
    pub(crate) fn new(issued: Issued) -> Self {
        Self {
            token: issued.token,
            quota_project_id: issued.quota_project_id,
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

    /// The claims of an ID token (its JWT payload), unverified; `None` for
    /// an opaque access token. For showing who a token speaks for.
    fn claims<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(claims) =
            jwt_claims::<serde_json::Map<String, serde_json::Value>>(self.token.value.expose())
        else {
            return Ok(None);
        };
        let json = serde_json::to_string(&claims).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Some(py.import("json")?.call_method1("loads", (json,))?))
    }

    fn __repr__(&self) -> String {
        format!(
            "Token(kind={:?}, expires_at={:.0}, value=***)",
            self.token.kind.as_str(),
            self.token.expires_at_unix()
        )
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(Error::Config(
            "a Token cannot be pickled: it would carry the token itself. Pickle the \
             credentials or auth object instead; it fetches its own token"
                .into(),
        )
        .into())
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
    /// Workload Identity Federation: source, pool, provider, STS, impersonation.
    federation: Option<FederationInfo>,
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
            federation: d.federation.map(FederationInfo::from),
        }
    }
}

/// What a federated credential is made of (for `doctor`); no secrets.
#[pyclass(frozen, get_all, module = "adk_token_exchange._native")]
#[derive(Clone)]
pub struct FederationInfo {
    credential_source: &'static str,
    subject_from: String,
    audience: String,
    pool_kind: Option<&'static str>,
    project_number: Option<String>,
    location: Option<String>,
    pool_id: Option<String>,
    provider_id: Option<String>,
    subject_token_type: Option<String>,
    token_url: String,
    impersonation_url: Option<String>,
    token_lifetime_seconds: Option<u64>,
    workforce_pool_user_project: Option<String>,
}

impl From<crate::sources::Federation> for FederationInfo {
    fn from(f: crate::sources::Federation) -> Self {
        Self {
            credential_source: f.credential_source,
            subject_from: f.subject_from,
            audience: f.audience,
            pool_kind: f.pool_kind,
            project_number: f.project_number,
            location: f.location,
            pool_id: f.pool_id,
            provider_id: f.provider_id,
            subject_token_type: f.subject_token_type,
            token_url: f.token_url,
            impersonation_url: f.impersonation_url,
            token_lifetime_seconds: f.token_lifetime_seconds,
            workforce_pool_user_project: f.workforce_pool_user_project,
        }
    }
}

#[pymethods]
impl FederationInfo {
    fn __repr__(&self) -> String {
        let py_repr = |o: &Option<String>| o.as_deref().map_or("None".into(), |s| format!("{s:?}"));
        format!(
            "FederationInfo(credential_source={:?}, pool_id={}, provider_id={})",
            self.credential_source,
            py_repr(&self.pool_id),
            py_repr(&self.provider_id)
        )
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

/// `impersonate=` as callers pass it: an email, a `[delegate…, target]`
/// sequence, or nothing; read by the core's one parser.
#[derive(FromPyObject)]
pub enum Chain {
    One(String),
    Many(Vec<String>),
}

pub(crate) fn impersonation(
    impersonate: Option<Chain>,
    delegates: Vec<String>,
) -> Result<Option<Impersonation>> {
    let chain = match impersonate {
        None => Vec::new(),
        Some(Chain::One(target)) if target.trim().is_empty() => Vec::new(),
        Some(Chain::One(target)) => vec![target],
        Some(Chain::Many(chain)) => chain,
    };
    Impersonation::parse(chain, delegates)
}

/// The core's reading of `impersonate=` / `delegates=`: `(target, delegates)`,
/// or `None` without impersonation. Raises `ConfigurationError` naming the
/// problem; every caller (the helpers, the auth scheme) validates with it.
#[pyfunction]
#[pyo3(signature = (impersonate, delegates=Vec::new()))]
pub fn impersonation_chain(
    impersonate: Option<Chain>,
    delegates: Vec<String>,
) -> PyResult<Option<(String, Vec<String>)>> {
    Ok(impersonation(impersonate, delegates)?.map(|imp| (imp.target, imp.delegates)))
}

/// A Google credential source; its tokens come from the process-wide cache.
#[pyclass(frozen, module = "adk_token_exchange._native")]
pub struct Credentials {
    pub(crate) inner: Arc<Credential>,
}

#[pymethods]
impl Credentials {
    #[staticmethod]
    #[pyo3(signature = (*, impersonate=None, delegates=Vec::new()))]
    fn application_default(impersonate: Option<Chain>, delegates: Vec<String>) -> PyResult<Self> {
        Ok(Self {
            inner: Credential::application_default(impersonation(impersonate, delegates)?),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (info, *, origin="service_account_credential".to_owned(), impersonate=None, delegates=Vec::new()))]
    fn from_service_account_info(
        info: &str,
        origin: String,
        impersonate: Option<Chain>,
        delegates: Vec<String>,
    ) -> PyResult<Self> {
        let source = adc::from_json(info, &origin, impersonation(impersonate, delegates)?)?;
        Ok(Self {
            inner: Credential::explicit(source),
        })
    }

    #[staticmethod]
    #[pyo3(signature = (path, *, impersonate=None, delegates=Vec::new()))]
    fn from_file(
        py: Python<'_>,
        path: std::path::PathBuf,
        impersonate: Option<Chain>,
        delegates: Vec<String>,
    ) -> PyResult<Self> {
        let imp = impersonation(impersonate, delegates)?;
        let source = py.detach(|| adc::from_file(&path, imp))?;
        Ok(Self {
            inner: Credential::explicit(source),
        })
    }

    /// A name for logs: principal and a short digest; no secret.
    #[getter]
    fn identity(&self) -> String {
        self.inner.label()
    }

    fn resolve(&self, py: Python<'_>) -> PyResult<SourceInfo> {
        let credential = Arc::clone(&self.inner);
        let (description, steps) =
            py.detach(|| process::runtime().block_on(credential.resolve()))?;
        Ok(SourceInfo::new(description, steps))
    }

    fn id_token_request(&self, audience: String) -> PyResult<PyTokenRequest> {
        PyTokenRequest::new(&self.inner, TokenRequest::id(audience)?)
    }

    fn access_token_request(&self, scopes: Vec<String>) -> PyResult<PyTokenRequest> {
        PyTokenRequest::new(&self.inner, TokenRequest::access(scopes)?)
    }

    /// A service-account JWT for `audience` (IAP), signed with the key or by IAM `signJwt`.
    fn signed_jwt_request(&self, audience: String) -> PyResult<PyTokenRequest> {
        PyTokenRequest::new(&self.inner, TokenRequest::signed_jwt(audience)?)
    }

    fn cached_id_token(&self, audience: String) -> PyResult<Option<PyToken>> {
        Ok(self.id_token_request(audience)?.cached())
    }

    fn cached_access_token(&self, scopes: Vec<String>) -> PyResult<Option<PyToken>> {
        Ok(self.access_token_request(scopes)?.cached())
    }

    fn id_token(&self, py: Python<'_>, audience: String) -> PyResult<PyToken> {
        self.id_token_request(audience)?.blocking(py)
    }

    fn access_token(&self, py: Python<'_>, scopes: Vec<String>) -> PyResult<PyToken> {
        self.access_token_request(scopes)?.blocking(py)
    }

    /// A coroutine; the audience is checked when it is awaited, like any async call.
    fn id_token_async(&self, audience: String) -> Coroutine {
        let credential = Arc::clone(&self.inner);
        Coroutine::new(
            "Credentials.id_token_async",
            Fetch::later(credential, move || TokenRequest::id(audience)),
        )
    }

    fn access_token_async(&self, scopes: Vec<String>) -> Coroutine {
        let credential = Arc::clone(&self.inner);
        Coroutine::new(
            "Credentials.access_token_async",
            Fetch::later(credential, move || TokenRequest::access(scopes)),
        )
    }

    fn __repr__(&self) -> String {
        format!("Credentials({:?})", self.inner.label())
    }
}

/// Credentials bound to one validated request: the hot path's handle.
#[pyclass(frozen, name = "TokenRequest", module = "adk_token_exchange._native")]
pub struct PyTokenRequest {
    pub(crate) credential: Arc<Credential>,
    pub(crate) request: Arc<TokenRequest>,
}

impl PyTokenRequest {
    fn new(credential: &Arc<Credential>, request: TokenRequest) -> PyResult<Self> {
        Ok(Self {
            credential: Arc::clone(credential),
            request: Arc::new(request),
        })
    }

    /// The cached token, if fresh (no I/O; in the refresh window one
    /// background refresh starts).
    pub(crate) fn cached_token(&self) -> Option<Issued> {
        self.credential.cached(&self.request)
    }
}

#[pymethods]
impl PyTokenRequest {
    /// The cached token if fresh, else `None`; never waits.
    pub(crate) fn cached(&self) -> Option<PyToken> {
        self.cached_token().map(PyToken::new)
    }

    /// The token, waiting on this thread (GIL released) only on a miss.
    pub(crate) fn blocking(&self, py: Python<'_>) -> PyResult<PyToken> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let (credential, request) = (Arc::clone(&self.credential), Arc::clone(&self.request));
        let issued = py.detach(|| process::runtime().block_on(credential.token(&request)));
        super::telemetry::flush(py);
        Ok(PyToken::new(issued?))
    }

    /// A coroutine for the token: finished on its first step when cached.
    fn token(&self) -> Coroutine {
        Coroutine::new(
            "TokenRequest.token",
            Fetch::now(Arc::clone(&self.credential), Arc::clone(&self.request)),
        )
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.request.kind().as_str()
    }

    /// The audience (ID tokens) or the sorted scopes (access tokens).
    #[getter]
    fn target<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match &*self.request {
            TokenRequest::Id { audience } | TokenRequest::SignedJwt { audience } => {
                PyString::new(py, audience).into_any()
            }
            TokenRequest::Access { scopes } => {
                pyo3::types::PyTuple::new(py, scopes.iter().map(String::as_str))?.into_any()
            }
        })
    }

    #[getter]
    fn credentials(&self) -> Credentials {
        Credentials {
            inner: Arc::clone(&self.credential),
        }
    }

    fn __repr__(&self) -> String {
        let what = match &*self.request {
            TokenRequest::Id { audience } => format!("id token for {audience:?}"),
            TokenRequest::SignedJwt { audience } => format!("signed JWT for {audience:?}"),
            TokenRequest::Access { scopes } => format!("access token for {scopes:?}"),
        };
        format!("TokenRequest({what}, {})", self.credential.label())
    }
}

/// Fetching one token: at once if cached, else from the shared fetch.
struct Fetch {
    credential: Arc<Credential>,
    request:
        std::result::Result<Arc<TokenRequest>, Box<dyn FnOnce() -> Result<TokenRequest> + Send>>,
}

impl Fetch {
    fn now(credential: Arc<Credential>, request: Arc<TokenRequest>) -> Self {
        Self {
            credential,
            request: Ok(request),
        }
    }

    fn later(
        credential: Arc<Credential>,
        request: impl FnOnce() -> Result<TokenRequest> + Send + 'static,
    ) -> Self {
        Self {
            credential,
            request: Err(Box::new(request)),
        }
    }
}

type Fetched = Result<Issued>;

impl Operation for Fetch {
    fn begin(&mut self, py: Python<'_>) -> PyResult<Begin> {
        let request = match std::mem::replace(&mut self.request, Err(Box::new(|| unreachable!()))) {
            Ok(request) => request,
            Err(make) => Arc::new(make()?),
        };
        if let Some(issued) = self.credential.cached(&request) {
            return Ok(Begin::Ready(Py::new(py, PyToken::new(issued))?.into_any()));
        }
        let credential = Arc::clone(&self.credential);
        Ok(Begin::Wait(Box::pin(async move {
            Box::new(credential.token(&request).await) as Output
        })))
    }

    fn finish(&mut self, py: Python<'_>, output: Output) -> PyResult<Py<PyAny>> {
        let fetched = output
            .downcast::<Fetched>()
            .map_err(|_| Error::Internal("unexpected fetch output".into()))?;
        Ok(Py::new(py, PyToken::new((*fetched)?))?.into_any())
    }
}

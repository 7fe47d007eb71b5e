//! `ServiceAccountExchanger`: ADK's credential-exchanger interface over the
//! core. What depends on ADK (reading its model, building its result, its
//! error types) is supplied by the shim as four callables; the flow is one
//! way, ADK → shim → here → cache, with a callback into the shim only on a
//! miss:
//!
//! 1. `request_key(auth_credential)` (shim): a hashable summary of what in
//!    ADK's model decides the request (ADK deep-copies the credential for
//!    every call, so object identity never repeats; content does).
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

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use super::awaitable::{Begin, Coroutine, Operation, Output};
use super::credentials::{PyToken, PyTokenRequest};
use crate::credentials::Issued;
use crate::error::Error;

/// The request memo: `request_key(auth_credential)` → `TokenRequest`.
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
    request_key: Py<PyAny>,
    read_request: Py<PyAny>,
    build_result: Py<PyAny>,
    wrap_error: Py<PyAny>,
}

impl ServiceAccountExchanger {
    /// The request for `auth_credential`, from the memo or the shim.
    fn request(&self, py: Python<'_>, auth_credential: &Bound<'_, PyAny>) -> PyResult<Memoized> {
        let key = self.request_key.call1(py, (auth_credential,))?;
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
        request_key: Py<PyAny>,
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
        let issued = py
            .detach(|| crate::process::runtime().block_on(credential.token(&wanted)))
            .map_err(|e| wrapped(py, &self.wrap_error, e))?;
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

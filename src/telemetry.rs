//! What the core tells an observability stack: counters for the cache and a
//! record of each upstream fetch, at no cost on the warm path when nobody
//! listens.
//!
//! * **Counters** (relaxed atomics, process-wide, never reset): cache hits,
//!   misses (a caller waited for a fetch), background refreshes started, and
//!   fetches by outcome. Read with [`counters`]; the bindings expose them to
//!   OpenTelemetry as observable counters, read only at collection time.
//! * **Fetch records**: one [`FetchRecord`] per upstream fetch (start and end
//!   wall-clock times, HTTP attempts, outcome, source kind, token kind, the
//!   audience's origin), handed to the [observer](set_observer) if one is
//!   installed; the bindings turn each into an OpenTelemetry span with
//!   explicit start and end times. A record never carries a token, a key, a
//!   scope list or an audience's path: only what is in [`FetchRecord`].
//!
//! Attempts are counted by `http::send_with` inside [`count_attempts`], a
//! task-local counter around one fetch (a fetch may make several HTTP calls:
//! impersonation fetches a source token, then calls IAM).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::error::ErrorClass;
use crate::request::TokenRequest;

/// Process-wide counters, in the order [`counters`] returns them.
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    refreshes: AtomicU64,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
}

static COUNTERS: Counters = Counters {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    refreshes: AtomicU64::new(0),
    fetches_ok: AtomicU64::new(0),
    fetches_failed: AtomicU64::new(0),
};

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Tokens served from memory (fresh or in the refresh window).
    pub hits: u64,
    /// Callers that had to wait for a fetch (absent or expired token).
    pub misses: u64,
    /// Background refreshes started ahead of expiry.
    pub refreshes: u64,
    pub fetches_ok: u64,
    pub fetches_failed: u64,
}

/// The counters now.
pub fn counters() -> CounterSnapshot {
    let c = &COUNTERS;
    CounterSnapshot {
        hits: c.hits.load(Ordering::Relaxed),
        misses: c.misses.load(Ordering::Relaxed),
        refreshes: c.refreshes.load(Ordering::Relaxed),
        fetches_ok: c.fetches_ok.load(Ordering::Relaxed),
        fetches_failed: c.fetches_failed.load(Ordering::Relaxed),
    }
}

pub(crate) fn hit() {
    COUNTERS.hits.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn miss() {
    COUNTERS.misses.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn refresh() {
    COUNTERS.refreshes.fetch_add(1, Ordering::Relaxed);
}

/// One upstream fetch, as an observer sees it. No secret and no path: the
/// audience is reduced to its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRecord {
    pub started: SystemTime,
    pub ended: SystemTime,
    /// HTTP attempts made, retries included, over every call of the fetch.
    pub attempts: u32,
    /// `ok`, or the error's class: `configuration`, `credentials_not_found`,
    /// `transient`, `timeout`, `permanent`.
    pub outcome: &'static str,
    /// `service_account`, `authorized_user`, `impersonated_service_account`, `metadata`.
    pub source_kind: &'static str,
    /// `id` or `access`.
    pub token_kind: &'static str,
    /// `scheme://host[:port]` of an ID token's audience if it is a URL,
    /// `(not a URL)` for another audience (an OAuth client id), `None` for
    /// access tokens.
    pub audience_origin: Option<String>,
}

/// Receives each [`FetchRecord`], on the runtime thread that finished the fetch.
pub type Observer = Arc<dyn Fn(&FetchRecord) + Send + Sync>;

static OBSERVING: AtomicBool = AtomicBool::new(false);
static OBSERVER: RwLock<Option<Observer>> = RwLock::new(None);

/// Installs (or with `None` removes) the one fetch observer.
pub fn set_observer(observer: Option<Observer>) {
    let mut slot = OBSERVER.write().unwrap_or_else(|p| p.into_inner());
    OBSERVING.store(observer.is_some(), Ordering::Release);
    *slot = observer;
}

/// Whether an observer is installed (one atomic load).
pub fn observing() -> bool {
    OBSERVING.load(Ordering::Acquire)
}

/// Counts a finished fetch (before its waiters are woken, so a caller that
/// got its answer sees the count).
pub(crate) fn fetch_counted(outcome: Result<(), ErrorClass>) {
    let counter = match outcome {
        Ok(()) => &COUNTERS.fetches_ok,
        Err(_) => &COUNTERS.fetches_failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Hands a finished fetch's record to the observer, if any; `source_kind` is
/// only called then. Call with no lock held. The observer must be quick and
/// must not take the GIL (the Python one only queues the record).
pub(crate) fn fetch_observed(
    outcome: Result<(), ErrorClass>,
    request: &TokenRequest,
    started: SystemTime,
    attempts: u32,
    source_kind: impl FnOnce() -> &'static str,
) {
    if !observing() {
        return;
    }
    let observer = OBSERVER
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(Arc::clone);
    let Some(observer) = observer else { return };
    let record = FetchRecord {
        started,
        ended: SystemTime::now(),
        attempts,
        outcome: outcome.err().map_or("ok", class_name),
        source_kind: source_kind(),
        token_kind: request.kind().as_str(),
        audience_origin: audience_origin(request),
    };
    observer(&record);
}

fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Configuration => "configuration",
        ErrorClass::CredentialsNotFound => "credentials_not_found",
        ErrorClass::Transient => "transient",
        ErrorClass::Timeout => "timeout",
        ErrorClass::Permanent => "permanent",
        ErrorClass::InvalidToken => "invalid_token",
    }
}

/// An ID token audience's origin: what Cloud Run checks, and no path or query.
fn audience_origin(request: &TokenRequest) -> Option<String> {
    let TokenRequest::Id { audience } = request else {
        return None;
    };
    match reqwest::Url::parse(audience) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(url.origin().ascii_serialization())
        }
        _ => Some("(not a URL)".to_owned()),
    }
}

tokio::task_local! {
    static ATTEMPTS: Cell<u32>;
}

/// Runs `fetch`, counting the HTTP attempts made inside it.
pub(crate) async fn count_attempts<F: Future>(fetch: F) -> (F::Output, u32) {
    ATTEMPTS
        .scope(Cell::new(0), async move {
            let output = fetch.await;
            (output, ATTEMPTS.with(Cell::get))
        })
        .await
}

/// One HTTP attempt (from `http::send_with`); nothing outside [`count_attempts`].
pub(crate) fn attempted() {
    let _ = ATTEMPTS.try_with(|n| n.set(n.get() + 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn audiences_are_reduced_to_their_origin() {
        let id = |a: &str| audience_origin(&TokenRequest::id(a).unwrap());
        assert_eq!(
            id("https://svc-xyz-uc.a.run.app/mcp?x=1#f").as_deref(),
            Some("https://svc-xyz-uc.a.run.app")
        );
        assert_eq!(
            id("http://127.0.0.1:8080/path").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            id("123-abc.apps.googleusercontent.com").as_deref(),
            Some("(not a URL)")
        );
        assert_eq!(audience_origin(&TokenRequest::cloud_platform()), None);
    }

    #[tokio::test]
    async fn attempts_are_counted_per_fetch_and_not_outside_one() {
        attempted(); // outside any fetch: ignored
        let ((), n) = count_attempts(async {
            attempted();
            tokio::task::yield_now().await;
            attempted();
        })
        .await;
        assert_eq!(n, 2);
        let ((), n) = count_attempts(async {}).await;
        assert_eq!(n, 0);
    }

    #[test]
    fn records_reach_the_observer_only_while_one_is_installed() {
        // One test touches the process-wide observer, so nothing races it.
        let seen: Arc<Mutex<Vec<FetchRecord>>> = Arc::default();
        let sink = Arc::clone(&seen);
        let request = TokenRequest::id("https://svc-xyz-uc.a.run.app/mcp").unwrap();
        let before = counters();
        fetch_counted(Ok(()));
        fetch_observed(Ok(()), &request, SystemTime::now(), 1, || {
            panic!("describe must not run without an observer")
        });
        set_observer(Some(Arc::new(move |r: &FetchRecord| {
            sink.lock().unwrap().push(r.clone())
        })));
        fetch_counted(Err(ErrorClass::Timeout));
        fetch_observed(
            Err(ErrorClass::Timeout),
            &request,
            SystemTime::now(),
            3,
            || "service_account",
        );
        set_observer(None);
        fetch_observed(Ok(()), &request, SystemTime::now(), 1, || "metadata");
        // Other tests' fetches may land while the observer is in: look for ours.
        let records = seen.lock().unwrap();
        let ours: Vec<&FetchRecord> = records.iter().filter(|r| r.attempts == 3).collect();
        assert_eq!(ours.len(), 1, "{records:?}");
        let r = ours[0];
        assert_eq!(
            (r.outcome, r.attempts, r.source_kind, r.token_kind),
            ("timeout", 3, "service_account", "id")
        );
        assert_eq!(
            r.audience_origin.as_deref(),
            Some("https://svc-xyz-uc.a.run.app")
        );
        assert!(r.ended >= r.started);
        let after = counters();
        assert!(after.fetches_ok > before.fetches_ok);
        assert!(after.fetches_failed > before.fetches_failed);
    }
}

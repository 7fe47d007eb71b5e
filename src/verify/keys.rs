//! Signing keys, cached per key-set URL: the token cache's rules
//! (`cache.rs`) applied to a JWKS.
//!
//! * **fresh**: served from memory under a short `std` mutex, no await;
//! * **in the refresh window** (the last quarter of the key set's lifetime,
//!   which is the response's `Cache-Control: max-age` less its `Age`,
//!   RFC 9111 §4.2.1): the cached keys are served and one background fetch
//!   starts;
//! * **expired or absent**: callers wait, and concurrent callers share one
//!   fetch, run as its own task on the core's runtime (never on the
//!   caller's event loop).
//!
//! A failed refresh keeps serving the cached keys until they expire (a
//! JWKS outage costs nothing while they last); the next refresh waits a
//! little ([`REFRESH_RETRY`]). Once they have expired, the fetch error
//! reaches the callers, and for [`COLD_RETRY`] every caller gets that same
//! error at once instead of starting another fetch.
//!
//! A token whose `kid` is not in the set may be signed with a key Google
//! published since the last fetch, or forged: it starts at most one refetch
//! per [`UNKNOWN_KID_INTERVAL`] per key set, so forged tokens cannot make
//! this process hammer Google. The verifier only gets here for a token that
//! already carries this service's audience and a valid time.
//!
//! Bounded: lifetimes are clamped to [`MIN_TTL`]..[`MAX_TTL`], each fetch to
//! [`MAX_FETCH_TIME`] (and the HTTP layer's 1 MiB body cap and retries),
//! the registry to [`MAX_KEY_SETS`] URLs.
//!
//! Locks: held for state updates only, never across an await or while
//! logging (a log record needs the GIL).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::header::{HeaderMap, AGE, CACHE_CONTROL};
use reqwest::Url;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use super::jwks::KeySet;
use super::Algorithm;
use crate::config;
use crate::error::{Error, Result};
use crate::http::{self, endpoint_label, Call};
use crate::process::PerProcess;

/// Shortest lifetime honoured: a key set served with `max-age=0` is still
/// kept this long, so verification traffic cannot turn into fetch traffic.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lifetime honoured.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of a key set served without `max-age` (Google sends one).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// At most one refetch for unknown key ids per this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed background refresh, wait this long (at most) before the next.
pub const REFRESH_RETRY: Duration = Duration::from_secs(30);
/// After a failed fetch with no usable keys, callers get that error for this long.
pub const COLD_RETRY: Duration = Duration::from_secs(1);
/// One key-set fetch, all attempts included (less if `request_timeout` is less).
pub const MAX_FETCH_TIME: Duration = Duration::from_secs(10);
/// Key-set URLs remembered per process.
pub const MAX_KEY_SETS: usize = 32;

type Outcome = Option<Result<Arc<KeySet>>>;

struct Usable {
    keys: Arc<KeySet>,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Usable>,
    inflight: Option<watch::Receiver<Outcome>>,
    /// No new fetch before this, after a failed one.
    retry_not_before: Option<Instant>,
    /// The failed cold fetch's error, served until `retry_not_before`.
    last_error: Option<Error>,
    last_unknown_kid_fetch: Option<Instant>,
}

impl State {
    fn fetching(&self) -> bool {
        self.inflight
            .as_ref()
            .is_some_and(|rx| rx.has_changed().is_ok())
    }

    fn usable(&self, now: Instant) -> Option<&Usable> {
        self.current.as_ref().filter(|u| now < u.expires_at)
    }

    fn may_fetch(&self, now: Instant) -> bool {
        !self.fetching() && self.retry_not_before.is_none_or(|t| now >= t)
    }
}

/// The signing keys published at one URL, for one algorithm.
pub struct KeyCache {
    url: Url,
    algorithm: Algorithm,
    unknown_kid_interval: Duration,
    state: Mutex<State>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("url", &endpoint_label(&self.url))
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub fn new(url: Url, algorithm: Algorithm) -> Arc<Self> {
        Self::with_interval(url, algorithm, UNKNOWN_KID_INTERVAL)
    }

    fn with_interval(url: Url, algorithm: Algorithm, unknown_kid_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            url,
            algorithm,
            unknown_kid_interval,
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Fetches started so far (tests, stats).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a single assignment: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The usable keys without waiting; in the refresh window this also
    /// starts one background fetch on the runtime `rt` returns.
    pub fn peek(self: &Arc<Self>, rt: impl FnOnce() -> Handle) -> Option<Arc<KeySet>> {
        let now = Instant::now();
        let mut st = self.state();
        let usable = st.usable(now)?;
        let keys = Arc::clone(&usable.keys);
        if now >= usable.refresh_at && st.may_fetch(now) {
            drop(self.start_fetch(&mut st, &rt()));
        }
        Some(keys)
    }

    /// The usable keys, or the one shared fetch's.
    pub async fn get(self: &Arc<Self>, rt: &Handle) -> Result<Arc<KeySet>> {
        let rx = {
            let now = Instant::now();
            let mut st = self.state();
            if let Some(usable) = st.usable(now) {
                let keys = Arc::clone(&usable.keys);
                if now >= usable.refresh_at && st.may_fetch(now) {
                    drop(self.start_fetch(&mut st, rt));
                }
                return Ok(keys);
            }
            match (&st.inflight, &st.last_error, st.retry_not_before) {
                (Some(rx), _, _) if st.fetching() => rx.clone(),
                (_, Some(e), Some(t)) if now < t => return Err(e.clone()),
                _ => self.start_fetch(&mut st, rt),
            }
        };
        wait(rx).await
    }

    /// For a token whose key id `seen` lacks: a newer set if there is one
    /// (fetched meanwhile, or now, at most once per interval), else `None`.
    pub async fn refetch_for_unknown_kid(
        self: &Arc<Self>,
        seen: &Arc<KeySet>,
        rt: &Handle,
    ) -> Result<Option<Arc<KeySet>>> {
        let rx = {
            let now = Instant::now();
            let mut st = self.state();
            if let Some(usable) = st.usable(now) {
                if !Arc::ptr_eq(&usable.keys, seen) {
                    return Ok(Some(Arc::clone(&usable.keys)));
                }
            }
            match &st.inflight {
                Some(rx) if st.fetching() => rx.clone(),
                _ => {
                    let recent = st
                        .last_unknown_kid_fetch
                        .is_some_and(|t| now < t + self.unknown_kid_interval);
                    if recent {
                        return Ok(None);
                    }
                    st.last_unknown_kid_fetch = Some(now);
                    self.start_fetch(&mut st, rt)
                }
            }
        };
        let keys = wait(rx).await?;
        Ok((!Arc::ptr_eq(&keys, seen)).then_some(keys))
    }

    /// Starts the one fetch; the caller holds the lock.
    fn start_fetch(self: &Arc<Self>, st: &mut State, rt: &Handle) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        st.inflight = Some(rx.clone());
        let cache = Arc::clone(self);
        let fetch_rt = rt.clone();
        rt.spawn(async move {
            let started = std::time::Instant::now();
            let fetcher = Arc::clone(&cache);
            // Its own task, so that a panic becomes an error for the waiters.
            let fetched = match fetch_rt.spawn(async move { fetcher.fetch().await }).await {
                Ok(result) => result,
                Err(e) if e.is_panic() => Err(Error::Internal(
                    "a panic occurred while fetching signing keys (a bug: please report it)".into(),
                )),
                Err(_) => Err(Error::Internal(
                    "the signing key fetch was cancelled".into(),
                )),
            };
            let outcome = cache.store(fetched, started.elapsed());
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn fetch(&self) -> Result<(KeySet, Duration)> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let s = config::settings();
        let call = Call::get(self.url.clone(), "signing key request");
        let reply = http::send_with(&call, &s, s.request_timeout.min(MAX_FETCH_TIME)).await?;
        let keys = KeySet::parse(&reply.body, self.algorithm).map_err(|detail| {
            Error::InvalidResponse {
                endpoint: endpoint_label(&self.url),
                detail,
            }
        })?;
        Ok((keys, freshness(&reply.headers)))
    }

    /// Records a fetch's outcome; logs after the lock is released.
    fn store(&self, fetched: Result<(KeySet, Duration)>, took: Duration) -> Result<Arc<KeySet>> {
        let now = Instant::now();
        let label = endpoint_label(&self.url);
        let (outcome, still_serving) = {
            let mut st = self.state();
            st.inflight = None;
            match fetched {
                Ok((keys, ttl)) => {
                    let keys = Arc::new(keys);
                    st.current = Some(Usable {
                        keys: Arc::clone(&keys),
                        refresh_at: now + ttl.mul_f64(0.75),
                        expires_at: now + ttl,
                    });
                    st.retry_not_before = None;
                    st.last_error = None;
                    (Ok((keys, ttl)), None)
                }
                Err(error) => {
                    let left = st.usable(now).map(|u| u.expires_at - now);
                    match left {
                        Some(left) => {
                            st.retry_not_before = Some(now + REFRESH_RETRY.min(left / 4));
                        }
                        None => {
                            st.retry_not_before = Some(now + COLD_RETRY);
                            st.last_error = Some(error.clone());
                        }
                    }
                    (Err(error), left)
                }
            }
        };
        match (&outcome, still_serving) {
            (Ok((keys, ttl)), _) => {
                log::debug!(
                    "fetched {} signing keys from {label} in {} ms, kept {} s{}",
                    self.algorithm.as_str(),
                    took.as_millis(),
                    ttl.as_secs(),
                    if keys.skipped > 0 {
                        format!(" ({} unusable keys skipped)", keys.skipped)
                    } else {
                        String::new()
                    }
                );
            }
            (Err(error), Some(left)) => log::warn!(
                "refreshing the signing keys from {label} failed; still using the cached ones \
                 ({} s left): {error}",
                left.as_secs()
            ),
            (Err(error), None) => {
                log::warn!("fetching the signing keys from {label} failed: {error}")
            }
        }
        outcome.map(|(keys, _)| keys)
    }
}

async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<Arc<KeySet>> {
    match rx.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or_else(|| {
            Err(Error::Internal(
                "key fetch finished without a result".into(),
            ))
        }),
        Err(_) => Err(Error::Internal(
            "the signing key fetch ended without a result (runtime shut down?)".into(),
        )),
    }
}

/// How long a key-set response may be used: `max-age` less `Age`
/// (RFC 9111 §4.2.1), `no-cache`/`no-store` as zero, clamped to
/// [`MIN_TTL`]..[`MAX_TTL`]; [`DEFAULT_TTL`] without `max-age`.
pub fn freshness(headers: &HeaderMap) -> Duration {
    let directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    let uncacheable = directives
        .iter()
        .any(|d| d == "no-cache" || d == "no-store");
    let max_age = directives.iter().find_map(|d| {
        d.strip_prefix("max-age=")
            .and_then(|v| v.trim_matches('"').parse::<u64>().ok())
    });
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let ttl = match (uncacheable, max_age) {
        (true, _) => Duration::ZERO,
        (false, Some(max_age)) => Duration::from_secs(max_age.saturating_sub(age)),
        (false, None) => DEFAULT_TTL,
    };
    ttl.clamp(MIN_TTL, MAX_TTL)
}

// ---- One cache per key-set URL and algorithm, per process.

type Registry = HashMap<(Algorithm, String), (Arc<KeyCache>, u64)>;

static REGISTRY: PerProcess<Mutex<(Registry, u64)>> = PerProcess::new();

/// This process's cache for `url`: every verifier of one key set shares
/// its keys (and its fetches); a forked child starts with none.
pub fn shared(url: &Url, algorithm: Algorithm) -> Arc<KeyCache> {
    let mut guard = REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let (map, uses) = &mut *guard;
    *uses += 1;
    let key = (algorithm, url.as_str().to_owned());
    if let Some((cache, used)) = map.get_mut(&key) {
        *used = *uses;
        return Arc::clone(cache);
    }
    if map.len() >= MAX_KEY_SETS {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let cache = KeyCache::new(url.clone(), algorithm);
    map.insert(key, (Arc::clone(&cache), *uses));
    cache
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{Answer, Server};
    use reqwest::header::HeaderValue;

    /// A JWKS with one RSA key of id `kid` (the key itself does not matter here).
    pub(crate) fn jwks(kid: &str) -> String {
        let n = format!("{}w", "z".repeat(341)); // 2048 bits of base64url
        format!(
            r#"{{"keys":[{{"kty":"RSA","alg":"RS256","use":"sig","kid":"{kid}","n":"{n}","e":"AQAB"}}]}}"#
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn freshness_follows_max_age_less_age_within_bounds() {
        let ttl = |pairs: &[(&'static str, &str)]| freshness(&headers(pairs)).as_secs();
        assert_eq!(
            ttl(&[("cache-control", "public, max-age=19800, must-revalidate")]),
            19800
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=600"), ("age", "100")]),
            500
        );
        assert_eq!(ttl(&[("cache-control", "max-age=0")]), MIN_TTL.as_secs());
        assert_eq!(ttl(&[("cache-control", "no-store")]), MIN_TTL.as_secs());
        assert_eq!(
            ttl(&[("cache-control", "max-age=999999999")]),
            MAX_TTL.as_secs()
        );
        assert_eq!(ttl(&[]), DEFAULT_TTL.as_secs());
    }

    fn url(server: &Server) -> Url {
        Url::parse(&format!("{}/certs", server.base)).unwrap()
    }

    #[tokio::test]
    async fn concurrent_cold_verifiers_share_one_fetch() {
        let server = Server::start(|_, _| {
            Answer::json(200, jwks("k1")).with_header("Cache-Control", "max-age=3600")
        })
        .await;
        let cache = KeyCache::new(url(&server), Algorithm::Rs256);
        let rt = Handle::current();
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let (cache, rt) = (Arc::clone(&cache), rt.clone());
                tokio::spawn(async move { cache.get(&rt).await.map(|k| k.contains("k1")) })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().unwrap());
        }
        assert_eq!(server.seen().len(), 1);
        assert!(cache.peek(|| rt.clone()).is_some());
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn unknown_key_ids_refetch_at_most_once_per_interval() {
        let server = Server::start(|n, _| {
            Answer::json(200, jwks(if n == 0 { "old" } else { "new" }))
                .with_header("Cache-Control", "max-age=3600")
        })
        .await;
        let cache =
            KeyCache::with_interval(url(&server), Algorithm::Rs256, Duration::from_millis(300));
        let rt = Handle::current();
        let first = cache.get(&rt).await.unwrap();
        let newer = cache
            .refetch_for_unknown_kid(&first, &rt)
            .await
            .unwrap()
            .expect("a new set");
        assert!(newer.contains("new"));
        // A forged kid: the set is the newest; no fetch within the interval.
        for _ in 0..20 {
            assert!(cache
                .refetch_for_unknown_kid(&newer, &rt)
                .await
                .unwrap()
                .is_none());
        }
        assert_eq!(server.seen().len(), 2);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let _ = cache.refetch_for_unknown_kid(&newer, &rt).await.unwrap();
        assert_eq!(server.seen().len(), 3, "one more after the interval");
    }

    #[tokio::test]
    async fn an_outage_keeps_serving_cached_keys_until_they_expire_then_says_why() {
        let server = Server::start(|n, _| {
            if n == 0 {
                Answer::json(200, jwks("k1")).with_header("Cache-Control", "max-age=4")
            } else {
                Answer::text(503, "down")
            }
        })
        .await;
        let cache = KeyCache::new(url(&server), Algorithm::Rs256);
        let rt = Handle::current();
        cache.get(&rt).await.unwrap();
        // In the refresh window (after 3 s): served, one refresh fails, still served.
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert!(cache.peek(|| rt.clone()).is_some());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(cache.peek(|| rt.clone()).is_some());
        assert_eq!(
            cache.fetches(),
            2,
            "one background refresh, backing off after its failure"
        );
        // Past max-age: the outage surfaces, naming the endpoint.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let e = cache.get(&rt).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("/certs"), "{e}");
        // Within COLD_RETRY the same error comes back without another fetch.
        let before = cache.fetches();
        assert!(cache.get(&rt).await.is_err());
        assert_eq!(cache.fetches(), before);
    }

    #[tokio::test]
    async fn a_key_set_that_is_not_one_is_an_invalid_response() {
        let server = Server::start(|_, _| Answer::text(200, "<html>captive portal</html>")).await;
        let cache = KeyCache::new(url(&server), Algorithm::Rs256);
        let e = cache.get(&Handle::current()).await.unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{e:?}");
    }
}

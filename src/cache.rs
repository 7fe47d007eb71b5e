//! Per-credential token cache: single-flight fetches, refresh-ahead, bounded.
//!
//! One `TokenCache` per credential identity (in this process's registry,
//! `credentials.rs`), one slot per `TokenRequest` (kind + audience or sorted
//! scopes). The rules (docs/architecture.md, "Cache states"):
//!
//! * **fresh**: served from memory; a short `std` mutex, no await, no I/O;
//! * **in the refresh window** (the last `refresh_window`, at most a quarter
//!   of the token's lifetime so a 60-second token is still reused): the caller
//!   gets the valid token and one background refresh starts;
//! * **expired or absent**: callers wait, and concurrent callers share one
//!   upstream request, which runs as its own task so a cancelled caller does
//!   not cancel it for the others.
//!
//! A failed background refresh keeps serving the still-valid token (and logs);
//! only a caller that needs a new token sees the error, and the next call tries
//! again: no error is ever stored.
//!
//! Bounded: at most [`MAX_SLOTS`] requests per credential. Making room drops
//! slots whose token has expired first, then the least recently used. A
//! request only reaches a slot once it is valid (`TokenRequest`'s
//! constructors check it), so junk never occupies memory.
//!
//! Locks: the slot map's mutex is held for map updates only, never across an
//! await, never while logging (a log record needs the GIL, which a Python
//! thread waiting for this lock may hold).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::process::PerProcess;
use crate::request::TokenRequest;
use crate::sources::{BoxFuture, SourceDescription, TokenSource};
use crate::telemetry;
use crate::token::Token;

/// Requests remembered per credential.
pub const MAX_SLOTS: usize = 256;
/// Never hand out a token with less than this left (at most 1/20 of its lifetime).
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// After a failed background refresh, wait this long (at most) before the next one.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// A refresh starts at least this many of its last fetch's durations before the
/// hand-out deadline, so an upstream several times slower than last time still
/// answers before callers would have to wait (bounded by half the lifetime).
const FETCH_HEADROOM: u32 = 8;

/// When a token of the given lifetime should be refreshed, and until when it
/// may be handed out. `fetch_took` is how long the fetch that got it took: the
/// refresh starts early enough for one [`FETCH_HEADROOM`] times slower to land
/// before the deadline (bench: a short-lived token whose refresh took 2.3 s
/// made callers wait at every rollover).
fn schedule(
    now: Instant,
    lifetime: Duration,
    window: Duration,
    fetch_took: Duration,
) -> (Instant, Instant) {
    let margin = MAX_EXPIRY_MARGIN.min(lifetime / 20);
    let lead = (margin + fetch_took.saturating_mul(FETCH_HEADROOM)).min(lifetime / 2);
    let window = window.min(lifetime / 4).max(margin).max(lead);
    (
        now + lifetime.saturating_sub(window),
        now + lifetime - margin,
    )
}

type Outcome = Option<Result<Arc<Token>>>;

struct Cached {
    token: Arc<Token>,
    refresh_at: Instant,
    usable_until: Instant,
}

#[derive(Default)]
struct Slot {
    cached: Option<Cached>,
    /// The fetch in progress, if any; waiters watch its outcome.
    inflight: Option<watch::Receiver<Outcome>>,
    /// Set after a failed background refresh: no new one before this.
    retry_not_before: Option<Instant>,
    /// For least-recently-used eviction: the map's use counter at last use.
    last_used: u64,
}

impl Slot {
    fn fetching(&self) -> bool {
        // `has_changed` errs once the sender is gone (task finished or died).
        self.inflight
            .as_ref()
            .is_some_and(|rx| rx.has_changed().is_ok())
    }
}

#[derive(Default)]
struct Slots {
    map: HashMap<TokenRequest, Slot>,
    uses: u64,
}

impl Slots {
    /// The slot for `request`, marked used; made (room permitting) if absent.
    fn slot(&mut self, request: &TokenRequest) -> &mut Slot {
        self.uses += 1;
        if !self.map.contains_key(request) {
            self.make_room(Instant::now());
        }
        let uses = self.uses;
        let slot = self.map.entry(request.clone()).or_default();
        slot.last_used = uses;
        slot
    }

    /// Drops slots until one more fits: expired ones first, then the least recently used.
    fn make_room(&mut self, now: Instant) {
        if self.map.len() < MAX_SLOTS {
            return;
        }
        self.map
            .retain(|_, s| s.fetching() || s.cached.as_ref().is_some_and(|c| now < c.usable_until));
        while self.map.len() >= MAX_SLOTS {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(r, _)| r.clone())
            else {
                break;
            };
            // A waiter of an evicted slot still gets its outcome (it holds the receiver).
            self.map.remove(&oldest);
        }
    }
}

/// The token cache of one credential.
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    slots: Mutex<Slots>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.source.identity())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub fn new(source: Arc<dyn TokenSource>) -> Arc<Self> {
        Arc::new(Self {
            source,
            slots: Mutex::new(Slots::default()),
        })
    }

    pub fn source(&self) -> &Arc<dyn TokenSource> {
        &self.source
    }

    /// How many requests have a slot (tests, bounds).
    pub fn len(&self) -> usize {
        self.slots().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding this lock cannot leave a slot half-written
        // (every update is a single assignment), so poisoning is ignored.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached token if it may still be handed out, without waiting.
    ///
    /// In the refresh window this also starts one background refresh on the
    /// runtime `rt` returns (only called then, keeping the hot path free of it).
    pub fn peek(
        self: &Arc<Self>,
        request: &TokenRequest,
        rt: impl FnOnce() -> Handle,
    ) -> Option<Arc<Token>> {
        let now = Instant::now();
        let mut slots = self.slots();
        slots.uses += 1;
        let uses = slots.uses;
        let slot = slots.map.get_mut(request)?;
        let cached = slot.cached.as_ref()?;
        if now >= cached.usable_until {
            return None;
        }
        slot.last_used = uses;
        let token = Arc::clone(&cached.token);
        let refreshing =
            now >= cached.refresh_at && self.refresh_in_background(slot, request, now, &rt());
        drop(slots);
        telemetry::hit();
        if refreshing {
            self.log_refresh(request);
        }
        Some(token)
    }

    /// A usable token: from the cache, or from the one shared upstream fetch.
    pub async fn get(self: &Arc<Self>, request: &TokenRequest, rt: &Handle) -> Result<Arc<Token>> {
        let mut outcome = {
            let now = Instant::now();
            let mut slots = self.slots();
            let slot = slots.slot(request);
            if let Some(cached) = &slot.cached {
                if now < cached.usable_until {
                    let token = Arc::clone(&cached.token);
                    let refreshing = now >= cached.refresh_at
                        && self.refresh_in_background(slot, request, now, rt);
                    drop(slots);
                    telemetry::hit();
                    if refreshing {
                        self.log_refresh(request);
                    }
                    return Ok(token);
                }
            }
            telemetry::miss();
            match &slot.inflight {
                Some(rx) if slot.fetching() => rx.clone(),
                _ => self.start_fetch(slot, request, rt),
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(|| {
                Err(Error::Internal(
                    "token fetch finished without a result".into(),
                ))
            }),
            Err(_) => Err(Error::Internal(
                "the token fetch task ended without a result (runtime shut down?)".into(),
            )),
        };
        result
    }

    fn log_refresh(&self, request: &TokenRequest) {
        log::debug!(
            "refreshing {} token for {} ahead of expiry",
            request.kind().as_str(),
            self.source.identity()
        );
    }

    /// Forgets every token (and in-flight fetch bookkeeping).
    pub fn clear(&self) {
        self.slots().map.clear();
    }

    /// Starts a background refresh unless one runs or a failed one is backing off.
    /// Returns whether it started (the caller logs after releasing the lock).
    fn refresh_in_background(
        self: &Arc<Self>,
        slot: &mut Slot,
        request: &TokenRequest,
        now: Instant,
        rt: &Handle,
    ) -> bool {
        let backing_off = slot.retry_not_before.is_some_and(|t| now < t);
        if slot.fetching() || backing_off {
            return false;
        }
        drop(self.start_fetch(slot, request, rt));
        telemetry::refresh();
        true
    }

    /// Starts the one upstream fetch for `request`; the caller holds the lock.
    fn start_fetch(
        self: &Arc<Self>,
        slot: &mut Slot,
        request: &TokenRequest,
        rt: &Handle,
    ) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        slot.inflight = Some(rx.clone());
        let cache = Arc::clone(self);
        let request = request.clone();
        let fetch_rt = rt.clone();
        rt.spawn(async move {
            let source = Arc::clone(&cache.source);
            let req = request.clone();
            let started = std::time::Instant::now();
            let started_at = SystemTime::now();
            // The fetch runs as its own task so that a panic in it becomes an
            // error for the waiters instead of a silently dropped sender.
            let (fetched, attempts) = match fetch_rt
                .spawn(async move { telemetry::count_attempts(source.fetch(&req)).await })
                .await
            {
                Ok(counted) => counted,
                Err(e) if e.is_panic() => (
                    Err(Error::Internal(
                        "a panic occurred while fetching a token (a bug: please report it)".into(),
                    )),
                    0,
                ),
                Err(_) => (
                    Err(Error::Internal("the token fetch was cancelled".into())),
                    0,
                ),
            };
            let outcome = cache.store(&request, fetched, started.elapsed());
            let class = outcome.as_ref().map(drop).map_err(Error::class);
            telemetry::fetch_counted(class);
            // Before the waiters wake, so that the one that resumes first can
            // deliver it; only queued (no GIL), so it never delays a token.
            telemetry::fetch_observed(class, &request, started_at, attempts, || {
                cache.source.describe().kind.as_str()
            });
            // Nobody waiting is fine: a background refresh has no waiters.
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// Records a fetch's outcome in the slot and returns what waiters get.
    ///
    /// Logs only after the lock is released: a log record goes to Python
    /// through pyo3-log and needs the GIL, while a Python thread holding the
    /// GIL may be waiting for this very lock in `peek`.
    fn store(
        &self,
        request: &TokenRequest,
        fetched: Result<Token>,
        took: Duration,
    ) -> Result<Arc<Token>> {
        let now = Instant::now();
        let kind = request.kind().as_str();
        let (outcome, still_serving) = {
            let mut slots = self.slots();
            let slot = slots.slot(request);
            slot.inflight = None;
            match fetched {
                Ok(token) => {
                    let lifetime = token.remaining(SystemTime::now());
                    let (refresh_at, usable_until) =
                        schedule(now, lifetime, config::settings().refresh_window, took);
                    let token = Arc::new(token);
                    slot.cached = Some(Cached {
                        token: Arc::clone(&token),
                        refresh_at,
                        usable_until,
                    });
                    slot.retry_not_before = None;
                    (Ok(token), None)
                }
                Err(error) => {
                    let left = slot
                        .cached
                        .as_ref()
                        .filter(|c| now < c.usable_until)
                        .map(|c| c.usable_until - now);
                    if let Some(left) = left {
                        slot.retry_not_before = Some(now + MAX_RETRY_BACKOFF.min(left / 4));
                    }
                    (Err(error), left)
                }
            }
        };
        let identity = self.source.identity();
        match (&outcome, still_serving) {
            (Ok(token), _) => log::debug!(
                "fetched {kind} token for {identity} in {} ms, valid for {} s",
                took.as_millis(),
                token.remaining(SystemTime::now()).as_secs()
            ),
            (Err(error), Some(left)) => log::warn!(
                "background refresh of the {kind} token for {identity} failed; still serving \
                 the cached token ({} s left): {error}",
                left.as_secs()
            ),
            (Err(error), None) => {
                log::warn!("fetching a {kind} token for {identity} failed: {error}")
            }
        }
        outcome
    }
}

// ---- The registry: one cache per identity per process.

/// Credentials kept per process by the registry itself; beyond this the
/// least recently used one is let go (it lives on while a handle holds it).
pub const MAX_CREDENTIALS: usize = 128;

/// One cache per identity: the `MAX_CREDENTIALS` most recently used held
/// here, and every cache some handle still holds found through `alive`, so
/// an identity never has two caches at once (two caches would mean two
/// upstream requests where one should be shared).
#[derive(Default)]
struct Registry {
    map: HashMap<Identity, (Arc<TokenCache>, u64)>,
    alive: HashMap<Identity, std::sync::Weak<TokenCache>>,
    uses: u64,
}

static REGISTRY: PerProcess<Mutex<Registry>> = PerProcess::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// This process's cache for `source`: one per identity, so every handle on
/// the same key material shares its tokens, and no other source ever does.
pub fn shared(source: &Arc<dyn TokenSource>) -> Arc<TokenCache> {
    registry().cache_for(source)
}

impl Registry {
    fn cache_for(&mut self, source: &Arc<dyn TokenSource>) -> Arc<TokenCache> {
        let identity = source.identity();
        self.uses += 1;
        let uses = self.uses;
        if let Some((cache, last_used)) = self.map.get_mut(identity) {
            *last_used = uses;
            debug_assert!(
                same_principal(&cache.source.describe(), &source.describe()),
                "two different sources map to one identity {identity}: {:?} and {:?}",
                cache.source.describe(),
                source.describe(),
            );
            return Arc::clone(cache);
        }
        let cache = match self.alive.get(identity).and_then(std::sync::Weak::upgrade) {
            Some(held) => held,
            None => {
                let fresh = TokenCache::new(Arc::clone(source));
                if self.alive.len() >= 2 * MAX_CREDENTIALS {
                    self.alive.retain(|_, weak| weak.strong_count() > 0);
                }
                self.alive.insert(identity.clone(), Arc::downgrade(&fresh));
                fresh
            }
        };
        if self.map.len() >= MAX_CREDENTIALS {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map
            .insert(identity.clone(), (Arc::clone(&cache), uses));
        cache
    }

    /// Every cache of this process, held here or by a handle.
    fn caches(&self) -> Vec<Arc<TokenCache>> {
        self.alive
            .values()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }
}

/// Whether two descriptions name the same principal, endpoint and payer
/// (where a source was loaded from may differ).
fn same_principal(a: &SourceDescription, b: &SourceDescription) -> bool {
    (
        a.kind,
        &a.principal,
        &a.impersonating,
        &a.quota_project_id,
        &a.token_uri,
    ) == (
        b.kind,
        &b.principal,
        &b.impersonating,
        &b.quota_project_id,
        &b.token_uri,
    )
}

/// How many credentials this process's registry holds.
pub fn registry_len() -> usize {
    registry().map.len()
}

/// Forgets every cached token of this process, including those of caches
/// handles still hold.
pub fn clear_all() {
    let caches = {
        let mut registry = registry();
        let caches = registry.caches();
        registry.map.clear();
        caches
    };
    for cache in caches {
        cache.clear();
    }
}

/// A source whose tokens come through this process's cache for it: the
/// source credential under impersonation, whose access token authenticates
/// every IAM call and would otherwise be fetched anew for each impersonated
/// token.
#[derive(Debug)]
pub struct CachedSource(Arc<dyn TokenSource>);

impl CachedSource {
    pub fn wrap(source: Arc<dyn TokenSource>) -> Arc<dyn TokenSource> {
        Arc::new(CachedSource(source))
    }
}

impl TokenSource for CachedSource {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(async move {
            let token = shared(&self.0).get(request, &Handle::current()).await?;
            Ok(Token::clone(&token))
        })
    }

    fn identity(&self) -> &Identity {
        self.0.identity()
    }

    fn describe(&self) -> SourceDescription {
        self.0.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::SourceKind;
    use crate::token::{Secret, TokenKind};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex as StdMutex;

    /// A scripted source: counts fetches, takes `latency` (tokio time), and
    /// answers from a queue of lifetimes (`None` = fail).
    #[derive(Debug)]
    struct Scripted {
        identity: Identity,
        fetches: AtomicUsize,
        latency: Duration,
        answers: StdMutex<Vec<Option<Duration>>>,
        default: Option<Duration>,
    }

    impl Scripted {
        fn new(latency: Duration, default: Option<Duration>) -> Arc<Self> {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed).to_string();
            Arc::new(Self {
                identity: Identity::builder("scripted")
                    .part(n.as_bytes())
                    .finish("scripted"),
                fetches: AtomicUsize::new(0),
                latency,
                answers: StdMutex::new(Vec::new()),
                default,
            })
        }
        fn then(self: &Arc<Self>, answer: Option<Duration>) -> &Arc<Self> {
            self.answers.lock().unwrap().insert(0, answer);
            self
        }
        fn count(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl TokenSource for Scripted {
        fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
            Box::pin(async move {
                let n = self.fetches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.latency).await;
                let answer = self.answers.lock().unwrap().pop().unwrap_or(self.default);
                match answer {
                    // Paused tokio time does not move SystemTime: derive expiry
                    // from the lifetime at the moment of the answer.
                    Some(lifetime) => Ok(Token::new(
                        Secret::new(format!("token-{n}")),
                        request.kind(),
                        SystemTime::now() + lifetime,
                    )),
                    None => Err(Error::Unavailable {
                        endpoint: "scripted".into(),
                        detail: "HTTP 503".into(),
                    }),
                }
            })
        }
        fn identity(&self) -> &Identity {
            &self.identity
        }
        fn describe(&self) -> SourceDescription {
            SourceDescription {
                kind: SourceKind::Metadata,
                origin: "test".into(),
                principal: None,
                impersonating: None,
                quota_project_id: None,
                token_uri: None,
                federation: None,
            }
        }
    }

    fn id() -> TokenRequest {
        TokenRequest::id("https://svc.example").unwrap()
    }

    /// Lets spawned tasks run to completion under paused time.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn schedule_keeps_short_tokens_reusable() {
        let now = Instant::now();
        let window = config::Settings::DEFAULT.refresh_window;
        let fast = Duration::from_millis(100);
        let (refresh, usable) = schedule(now, Duration::from_secs(3600), window, fast);
        assert_eq!(refresh - now, Duration::from_secs(3300));
        assert_eq!(usable - now, Duration::from_secs(3590));
        let (refresh, usable) = schedule(now, Duration::from_secs(60), window, fast);
        assert_eq!(refresh - now, Duration::from_secs(45));
        assert_eq!(usable - now, Duration::from_secs(57));
    }

    #[test]
    fn schedule_refreshes_earlier_after_a_slow_fetch() {
        // A 10 s token whose fetch took 2.3 s: the usual window (the last 2.5 s,
        // 2 s before the 0.5 s margin) would leave callers waiting; refresh at
        // half the lifetime instead.
        let now = Instant::now();
        let window = config::Settings::DEFAULT.refresh_window;
        let slow = Duration::from_millis(2300);
        let (refresh, usable) = schedule(now, Duration::from_secs(10), window, slow);
        assert_eq!(refresh - now, Duration::from_secs(5));
        assert_eq!(usable - now, Duration::from_millis(9500));
        let fast = Duration::from_millis(100);
        let (refresh, _) = schedule(now, Duration::from_secs(10), window, fast);
        assert_eq!(refresh - now, Duration::from_millis(7500));
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_token_is_served_without_a_fetch() {
        let src = Scripted::new(Duration::from_millis(100), Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        let first = cache.get(&id(), &rt).await.unwrap();
        for _ in 0..10 {
            let again = cache.peek(&id(), || rt.clone()).expect("cached");
            assert_eq!(again.value.expose(), first.value.expose());
        }
        assert_eq!(src.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_cold_callers_share_one_fetch() {
        let src = Scripted::new(Duration::from_millis(100), Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let rt = rt.clone();
                tokio::spawn(async move { cache.get(&id(), &rt).await.map(|t| t.value.clone()) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap().expose(), "token-0");
        }
        assert_eq!(src.count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn token_in_refresh_window_is_served_while_one_refresh_runs() {
        let src = Scripted::new(Duration::from_millis(100), Some(Duration::from_secs(60)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        cache.get(&id(), &rt).await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await; // window starts at 45 s
        for _ in 0..5 {
            let t = cache.peek(&id(), || rt.clone()).expect("still valid");
            assert_eq!(t.value.expose(), "token-0");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        settle().await;
        assert_eq!(src.count(), 2, "exactly one background refresh");
        assert_eq!(
            cache.peek(&id(), || rt.clone()).unwrap().value.expose(),
            "token-1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_background_refresh_keeps_serving_then_error_surfaces_after_expiry() {
        let src = Scripted::new(Duration::from_millis(10), None);
        src.then(Some(Duration::from_secs(60)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        cache.get(&id(), &rt).await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(cache.peek(&id(), || rt.clone()).is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
        settle().await;
        assert_eq!(src.count(), 2);
        // Still served after the failure, and no refresh storm during the backoff.
        assert_eq!(
            cache.peek(&id(), || rt.clone()).unwrap().value.expose(),
            "token-0"
        );
        assert_eq!(src.count(), 2);
        tokio::time::advance(Duration::from_secs(10)).await; // past usable_until (57 s)
        assert!(cache.peek(&id(), || rt.clone()).is_none());
        let err = cache.get(&id(), &rt).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_not_cached_the_next_call_fetches_again() {
        let src = Scripted::new(Duration::from_millis(10), Some(Duration::from_secs(3600)));
        src.then(None);
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        assert!(cache.get(&id(), &rt).await.is_err());
        assert_eq!(
            cache.get(&id(), &rt).await.unwrap().value.expose(),
            "token-1"
        );
        assert_eq!(src.count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn kinds_audiences_and_scopes_are_separate_entries() {
        let src = Scripted::new(Duration::ZERO, Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        cache
            .get(&TokenRequest::id("a").unwrap(), &rt)
            .await
            .unwrap();
        cache
            .get(&TokenRequest::id("b").unwrap(), &rt)
            .await
            .unwrap();
        cache
            .get(&TokenRequest::access(["x", "y"]).unwrap(), &rt)
            .await
            .unwrap();
        cache
            .get(&TokenRequest::access(["y", "x"]).unwrap(), &rt)
            .await
            .unwrap();
        assert_eq!(src.count(), 3);
        assert_eq!(
            cache
                .peek(&TokenRequest::id("a").unwrap(), || rt.clone())
                .unwrap()
                .kind,
            TokenKind::Id
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_does_not_cancel_the_shared_fetch() {
        let src = Scripted::new(Duration::from_millis(100), Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        let first = {
            let cache = Arc::clone(&cache);
            let rt = rt.clone();
            tokio::spawn(async move { cache.get(&id(), &rt).await.map(drop) })
        };
        settle().await;
        first.abort();
        assert!(cache.get(&id(), &rt).await.is_ok());
        assert_eq!(src.count(), 1);
    }
    #[tokio::test(start_paused = true)]
    async fn ten_thousand_audiences_keep_the_cache_bounded() {
        let src = Scripted::new(Duration::ZERO, Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        for i in 0..10_000 {
            let request = TokenRequest::id(format!("https://svc-{i}.example")).unwrap();
            cache.get(&request, &rt).await.unwrap();
            assert!(cache.len() <= MAX_SLOTS, "{} slots after {i}", cache.len());
        }
        // The most recent ones are still served from memory.
        let last = TokenRequest::id("https://svc-9999.example").unwrap();
        assert!(cache.peek(&last, || rt.clone()).is_some());
        assert_eq!(src.count(), 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn making_room_drops_expired_tokens_before_recently_used_ones() {
        let src = Scripted::new(Duration::ZERO, Some(Duration::from_secs(3600)));
        let cache = TokenCache::new(src.clone());
        let rt = Handle::current();
        let keep = TokenRequest::id("https://keep.example").unwrap();
        cache.get(&keep, &rt).await.unwrap();
        for i in 0..(MAX_SLOTS * 3) {
            let request = TokenRequest::id(format!("https://svc-{i}.example")).unwrap();
            cache.get(&request, &rt).await.unwrap();
            // Used all along, so never the least recently used.
            assert!(
                cache.peek(&keep, || rt.clone()).is_some(),
                "evicted after {i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_registry_is_one_cache_per_identity_and_bounded() {
        // A registry of its own: filling the process's would evict other tests' caches.
        let mut registry = Registry::default();
        let a: Arc<dyn TokenSource> = Scripted::new(Duration::ZERO, None);
        let b: Arc<dyn TokenSource> = Scripted::new(Duration::ZERO, None);
        assert!(Arc::ptr_eq(
            &registry.cache_for(&a),
            &registry.cache_for(&a)
        ));
        assert!(!Arc::ptr_eq(
            &registry.cache_for(&a),
            &registry.cache_for(&b)
        ));
        for _ in 0..(MAX_CREDENTIALS * 2) {
            let s: Arc<dyn TokenSource> = Scripted::new(Duration::ZERO, None);
            registry.cache_for(&s);
            registry.cache_for(&a); // in use all along
            assert!(registry.map.len() <= MAX_CREDENTIALS);
        }
        assert!(
            registry.map.contains_key(a.identity()),
            "the one in use was evicted"
        );
    }
}

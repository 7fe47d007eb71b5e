//! The HTTP layer every source uses: one shared `reqwest` client with explicit
//! timeouts, bounded retries and a body cap, and Google's error bodies turned
//! into [`Error`]s.
//!
//! Why each rule exists:
//! - reqwest has no request timeout by default; a token endpoint that stops
//!   answering would hang an agent forever. Every call here is bounded by
//!   [`Settings::request_timeout`] *in total*, retries included.
//! - Retries follow Google's guidance for its OAuth2 and IAM endpoints
//!   (<https://cloud.google.com/storage/docs/retry-strategy>, the same policy
//!   google-auth and google-cloud-rust apply): retry connection errors,
//!   timeouts, 408, 429 and 5xx with exponential backoff and jitter; never
//!   retry other 4xx, which are answers, not accidents.
//! - Redirects are not followed: a token endpoint that redirects is
//!   misconfigured, and following it would send an assertion or refresh
//!   token to a host nobody named.
//! - Bodies are capped at [`MAX_BODY`] (1 MiB); a token response is < 4 KiB.
//! - The metadata server and loopback endpoints are reached without a proxy
//!   (a proxy cannot reach them, and must not see their tokens); everything
//!   else honours `HTTPS_PROXY`/`NO_PROXY` as usual.
//! - Logs (debug) carry endpoint, status, duration and attempt, never a
//!   body, a header or a token.
//! - Request and response bodies we own are zeroized on drop; the copy of a
//!   request body handed to reqwest for each attempt is freed by reqwest
//!   without zeroizing (a limit of the HTTP stack, not a choice).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Url};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::token::Secret;

/// Longest wait any setting or budget may ask for (`Instant` arithmetic
/// must not overflow, whatever a caller configures).
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Largest response body accepted from any endpoint.
pub const MAX_BODY: usize = 1024 * 1024;

const USER_AGENT: &str = concat!("adk-token-exchange/", env!("CARGO_PKG_VERSION"));

/// Network bounds, process-wide (see [`configure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// TCP + TLS connect, per attempt.
    pub connect_timeout: Duration,
    /// One token fetch in total, all attempts and backoff included.
    pub request_timeout: Duration,
    /// Metadata-server detection during ADC discovery, in total.
    pub metadata_detect_timeout: Duration,
    /// Attempts per fetch (1 = no retry).
    pub max_attempts: u32,
}

impl Settings {
    const DEFAULT: Settings = Settings {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(30),
        metadata_detect_timeout: Duration::from_secs(3),
        max_attempts: 3,
    };
}

impl Default for Settings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

static SETTINGS: RwLock<Settings> = RwLock::new(Settings::DEFAULT);
static CLIENTS: Mutex<Option<Clients>> = Mutex::new(None);

struct Clients {
    pid: u32,
    settings: Settings,
    /// Honours the usual proxy variables.
    proxied: Client,
    /// Never uses a proxy: metadata server and loopback.
    direct: Client,
}

/// The current settings.
pub fn settings() -> Settings {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Replaces the process-wide settings; the shared client is rebuilt on next use.
/// Zero durations and `max_attempts == 0` are raised to the smallest sane value.
pub fn configure(s: Settings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = s.sanitized();
}

impl Settings {
    /// Durations are kept within [1 ms, 1 day] and attempts within [1, 100].
    fn sanitized(self) -> Settings {
        let bound = |d: Duration| d.clamp(Duration::from_millis(1), MAX_WAIT);
        Settings {
            connect_timeout: bound(self.connect_timeout),
            request_timeout: bound(self.request_timeout),
            metadata_detect_timeout: bound(self.metadata_detect_timeout),
            max_attempts: self.max_attempts.clamp(1, 100),
        }
    }
}

/// The shared client (proxy-aware). Rebuilt after `fork()` (its pooled
/// connections and their tasks belong to the parent) or when settings change.
pub fn client() -> Client {
    clients().0
}

/// The shared client that never uses a proxy (metadata server, loopback).
pub fn direct_client() -> Client {
    clients().1
}

fn clients() -> (Client, Client) {
    let settings = settings();
    let pid = std::process::id();
    let mut guard = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = guard.as_ref() {
        if c.pid == pid && c.settings == settings {
            return (c.proxied.clone(), c.direct.clone());
        }
    }
    let proxied = build_client(&settings, true);
    let direct = build_client(&settings, false);
    *guard = Some(Clients {
        pid,
        settings,
        proxied: proxied.clone(),
        direct: direct.clone(),
    });
    (proxied, direct)
}

fn build_client(s: &Settings, proxies: bool) -> Client {
    let mut b = Client::builder()
        .connect_timeout(s.connect_timeout)
        .timeout(s.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60));
    if !proxies {
        b = b.no_proxy();
    }
    // Building fails only if the TLS backend cannot initialise (no root
    // store at all); fall back to defaults so the error surfaces per request.
    b.build().unwrap_or_else(|e| {
        log::warn!("adk-token-exchange: could not build the HTTP client ({e}); using defaults");
        Client::new()
    })
}

/// True when `url`'s host is loopback: 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            // Exactly `localhost`: `*.localhost` may still go to DNS.
            host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        }
    }
}

/// Parses an endpoint URL from configuration and refuses anything but https,
/// or http to a loopback host (local emulators). `what` names the setting in
/// the error, e.g. `key.json: field \`token_uri\``.
pub fn secure_endpoint(raw: &str, what: &str) -> Result<Url> {
    let parsed = Url::parse(raw.trim());
    // Never repeat a user name or password written into the URL.
    let shown: String = match &parsed {
        Ok(url) => endpoint_label(url),
        Err(_) => raw.chars().take(200).collect(),
    };
    let refuse = |why: String| {
        Error::Config(format!(
            "{what}: {shown:?} is refused: {why}; credentials are only sent to https URLs \
             (plain http is allowed for loopback hosts only: 127.0.0.1, ::1, localhost)"
        ))
    };
    let url = parsed.map_err(|e| refuse(format!("not a valid absolute URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Google's endpoints take no URL credentials; refusing them keeps any
        // secret written there out of identities, descriptions and logs.
        return Err(refuse("it carries a user name or password".into()));
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(refuse("plain http to a host that is not loopback".into())),
        other => Err(refuse(format!("scheme {other:?}"))),
    }
}

/// `scheme://host[:port]/path` of a URL: what errors and logs name (no query).
pub fn endpoint_label(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// An HTTP method this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One logical request (retried as a whole). Holds no secret except in
/// `bearer` and `body`, which are zeroized on drop.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub url: Url,
    /// Extra non-secret headers, e.g. `Metadata-Flavor: Google`.
    pub headers: Vec<(&'static str, String)>,
    pub bearer: Option<Secret>,
    /// Content type and bytes.
    pub body: Option<(&'static str, Zeroizing<Vec<u8>>)>,
    /// What the request is for, in timeout errors: "token request", ...
    pub what: &'static str,
    /// Skip any proxy (metadata server); loopback URLs always skip it.
    pub direct: bool,
}

impl Call {
    pub fn get(url: Url, what: &'static str) -> Self {
        Call {
            method: Method::Get,
            url,
            headers: Vec::new(),
            bearer: None,
            body: None,
            what,
            direct: false,
        }
    }

    /// A POST with an `application/x-www-form-urlencoded` body.
    pub fn post_form(url: Url, form: &[(&str, &str)], what: &'static str) -> Self {
        Call {
            method: Method::Post,
            body: Some((
                "application/x-www-form-urlencoded",
                Zeroizing::new(form_urlencode(form).into_bytes()),
            )),
            ..Call::get(url, what)
        }
    }

    /// A POST with a JSON body (already serialized).
    pub fn post_json(url: Url, json: Vec<u8>, what: &'static str) -> Self {
        Call {
            method: Method::Post,
            body: Some(("application/json", Zeroizing::new(json))),
            ..Call::get(url, what)
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(mut self, token: Secret) -> Self {
        self.bearer = Some(token);
        self
    }

    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }
}

/// A 2xx response; the body is zeroized on drop since it carries tokens.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Wall-clock time the successful attempt was sent: a relative
    /// `expires_in` counts from here (earlier than receipt, so conservative).
    pub sent_at: SystemTime,
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
}

/// Sends `call` with the process settings, retrying transient failures, and
/// returns the 2xx reply. 4xx/3xx → [`Error::Rejected`]; 5xx/408/429 and
/// connection errors after the last attempt → [`Error::Unavailable`]; out of
/// time → [`Error::Timeout`].
pub async fn send(call: &Call) -> Result<Reply> {
    let s = settings();
    let budget = s.request_timeout;
    send_with(call, &s, budget).await
}

/// [`send`] with explicit settings and a total time budget.
pub async fn send_with(call: &Call, s: &Settings, budget: Duration) -> Result<Reply> {
    let endpoint = endpoint_label(&call.url);
    let client = if call.direct || is_loopback(&call.url) {
        direct_client()
    } else {
        client()
    };
    let max_attempts = s.max_attempts.max(1);
    let budget = budget.min(MAX_WAIT);
    let start = Instant::now();
    let deadline = start + budget;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout {
                endpoint,
                what: call.what,
                after: start.elapsed(),
            });
        }
        // Each attempt but the last gets its share of what is left (at least
        // a second), so one stalled request cannot use up the whole budget and
        // leave nothing to retry with: 30 s and 3 attempts give 10 s each.
        let attempt_budget = if attempt >= max_attempts {
            remaining
        } else {
            let share = remaining / (max_attempts - attempt + 1);
            remaining.min(share.max(Duration::from_secs(1)))
        };
        let began = Instant::now();
        let outcome = attempt_once(&client, call, attempt_budget).await;
        let took = began.elapsed().as_millis();
        let method = match call.method {
            Method::Get => "GET",
            Method::Post => "POST",
        };
        let (err, retry_after) = match outcome {
            Ok(reply) => {
                log::debug!(
                    "{method} {endpoint} -> HTTP {} in {took} ms (attempt {attempt}/{max_attempts})",
                    reply.status
                );
                if (200..300).contains(&reply.status) {
                    return Ok(reply);
                }
                if !is_retryable_status(reply.status) {
                    return Err(rejected(&endpoint, &reply));
                }
                let retry_after = retry_after(&reply.headers);
                (unavailable(&endpoint, &reply, attempt), retry_after)
            }
            Err(Failure::Fatal(e)) => {
                log::debug!("{method} {endpoint} -> failed in {took} ms (attempt {attempt}/{max_attempts}): {e}");
                return Err(e);
            }
            Err(Failure::Timeout(connect)) => {
                log::debug!(
                    "{method} {endpoint} -> {} timed out after {took} ms (attempt {attempt}/{max_attempts})",
                    if connect { "connect" } else { "request" }
                );
                let e = Error::Timeout {
                    endpoint: endpoint.clone(),
                    what: if connect { "connect" } else { call.what },
                    after: if connect {
                        s.connect_timeout.min(remaining)
                    } else {
                        start.elapsed()
                    },
                };
                (e, None)
            }
            Err(Failure::Transport(detail)) => {
                log::debug!("{method} {endpoint} -> {detail} after {took} ms (attempt {attempt}/{max_attempts})");
                let e = Error::Unavailable {
                    endpoint: endpoint.clone(),
                    detail: format!("{detail} (attempt {attempt} of {max_attempts})"),
                };
                (e, None)
            }
        };
        if attempt >= max_attempts {
            return Err(err);
        }
        let delay = retry_after.unwrap_or_else(|| backoff(attempt));
        if Instant::now() + delay >= deadline {
            return Err(err);
        }
        tokio::time::sleep(delay).await;
    }
}

enum Failure {
    /// Not retried (e.g. body too large).
    Fatal(Error),
    /// `true` when the connect phase timed out.
    Timeout(bool),
    Transport(String),
}

async fn attempt_once(
    client: &Client,
    call: &Call,
    remaining: Duration,
) -> std::result::Result<Reply, Failure> {
    let endpoint = || endpoint_label(&call.url);
    let mut rb = match call.method {
        Method::Get => client.get(call.url.clone()),
        Method::Post => client.post(call.url.clone()),
    }
    .timeout(remaining);
    let sent_at = SystemTime::now();
    for (name, value) in &call.headers {
        rb = rb.header(*name, value.as_str());
    }
    if let Some(token) = &call.bearer {
        let text = Zeroizing::new(format!("Bearer {}", token.expose()));
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            Failure::Fatal(Error::Internal("token is not a valid header value".into()))
        })?;
        v.set_sensitive(true);
        rb = rb.header(AUTHORIZATION, v);
    }
    if let Some((content_type, bytes)) = &call.body {
        rb = rb.header(CONTENT_TYPE, *content_type).body(bytes.to_vec());
    }
    let mut resp = rb.send().await.map_err(|e| classify(&e, &endpoint()))?;
    let status = resp.status().as_u16();
    let headers = std::mem::take(resp.headers_mut());
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(Failure::Fatal(too_large(endpoint())));
    }
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e, &endpoint()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Failure::Fatal(too_large(endpoint())));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        sent_at,
        headers,
        body,
    })
}

fn too_large(endpoint: String) -> Error {
    Error::InvalidResponse {
        endpoint,
        detail: format!("response body exceeds {} KiB", MAX_BODY / 1024),
    }
}

fn classify(e: &reqwest::Error, endpoint: &str) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout(e.is_connect());
    }
    // The root cause ("Connection refused (os error 111)") says more than
    // reqwest's wrapper; URLs never carry secrets here but are dropped anyway.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if e.is_connect() && detail.to_ascii_lowercase().contains("certificate") {
        // Not transient: retrying an untrusted certificate changes nothing.
        return Failure::Fatal(Error::Unavailable {
            endpoint: endpoint.to_owned(),
            detail: format!(
                "TLS handshake failed: {detail}. If a corporate proxy re-signs TLS, \
                 set SSL_CERT_FILE to its root certificate (PEM)"
            ),
        });
    }
    let what = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Failure::Transport(format!("{what}: {detail}"))
}

fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// Exponential backoff with jitter: ~100 ms, 200 ms, 400 ms… capped at 3 s,
/// each scaled by a random factor in [0.5, 1.0).
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let base = base.min(Duration::from_secs(3));
    let r = RandomState::new().build_hasher().finish();
    let factor = 0.5 + (r % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

/// `Retry-After` in seconds (the form Google uses), capped at 10 s.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(10)))
}

/// Google's own error fields from a response body: OAuth2's
/// `{"error": "...", "error_description": "..."}` (RFC 6749 §5.2) or the API
/// style `{"error": {"code", "message", "status"}}` used by IAM
/// (<https://cloud.google.com/apis/design/errors>).
pub fn google_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<ErrorField>,
        error_description: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Code(String),
        Status {
            message: Option<String>,
            status: Option<String>,
        },
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    match parsed.error {
        Some(ErrorField::Code(code)) => (
            Some(clean(&code)),
            parsed.error_description.map(|d| clean(&d)),
        ),
        Some(ErrorField::Status { message, status }) => {
            (status.map(|s| clean(&s)), message.map(|m| clean(&m)))
        }
        None => (None, parsed.error_description.map(|d| clean(&d))),
    }
}

/// One line, printable, at most 500 characters.
fn clean(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    one_line.trim().to_owned()
}

fn rejected(endpoint: &str, reply: &Reply) -> Error {
    let (error, description) = google_error(&reply.body);
    let hint = match reply.status {
        300..=399 => Some(
            "redirects are not followed for credential requests; configure the final URL"
                .to_owned(),
        ),
        _ => None,
    };
    Error::Rejected {
        endpoint: endpoint.to_owned(),
        status: reply.status,
        error,
        description,
        hint,
    }
}

fn unavailable(endpoint: &str, reply: &Reply, attempt: u32) -> Error {
    let (error, description) = google_error(&reply.body);
    let mut detail = format!("HTTP {}", reply.status);
    if let Some(e) = error {
        detail.push_str(&format!(", error={e:?}"));
    }
    if let Some(d) = description {
        detail.push_str(&format!(": {d}"));
    }
    detail.push_str(&format!(
        " (after {attempt} attempt{})",
        if attempt == 1 { "" } else { "s" }
    ));
    Error::Unavailable {
        endpoint: endpoint.to_owned(),
        detail,
    }
}

/// Adds `hint` to a [`Error::Rejected`] whose status is `status` (any status
/// if `None`); other errors pass through unchanged.
pub fn with_hint(
    e: Error,
    status: Option<u16>,
    hint: impl FnOnce(Option<&str>) -> String,
) -> Error {
    match e {
        Error::Rejected {
            endpoint,
            status: s,
            error,
            description,
            hint: old,
        } if status.is_none_or(|want| want == s) => {
            let new = hint(error.as_deref());
            Error::Rejected {
                endpoint,
                status: s,
                error,
                description,
                hint: Some(match old {
                    Some(o) => format!("{new}; {o}"),
                    None => new,
                }),
            }
        }
        other => other,
    }
}

/// `application/x-www-form-urlencoded` serialization (WHATWG URL §5.2).
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    fn push(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push(&mut out, k);
        out.push('=');
        push(&mut out, v);
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! A tiny HTTP/1.1 responder on loopback that records what it receives.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One request as the server saw it.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub method: String,
        pub target: String,
        /// Lower-cased names.
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == &name.to_ascii_lowercase())
                .map(|(_, v)| v.as_str())
        }

        /// A form field of an `x-www-form-urlencoded` body.
        pub fn form(&self, key: &str) -> Option<String> {
            self.body.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == key).then(|| percent_decode(v))
            })
        }
    }

    pub fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'+', _) => out.push(b' '),
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 2;
                }
                (b, _) => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A canned answer.
    #[derive(Clone, Debug)]
    pub enum Answer {
        Respond {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
        },
        /// Accept the connection and never answer.
        Hang,
    }

    impl Answer {
        pub fn json(status: u16, body: impl Into<String>) -> Self {
            Answer::Respond {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.into(),
            }
        }

        pub fn text(status: u16, body: impl Into<String>) -> Self {
            Answer::Respond {
                status,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: body.into(),
            }
        }

        pub fn with_header(mut self, name: &str, value: &str) -> Self {
            if let Answer::Respond { headers, .. } = &mut self {
                headers.push((name.into(), value.into()));
            }
            self
        }
    }

    type Responder = dyn Fn(usize, &Seen) -> Answer + Send + Sync;

    /// A loopback server; `seen()` lists requests in arrival order.
    pub struct Server {
        pub base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        /// Answers the n-th request (0-based) with `respond(n, &request)`.
        pub async fn start(
            respond: impl Fn(usize, &Seen) -> Answer + Send + Sync + 'static,
        ) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let addr = listener.local_addr().expect("local addr");
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
            let respond: Arc<Responder> = Arc::new(respond);
            let seen2 = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    let seen = seen2.clone();
                    let respond = respond.clone();
                    tokio::spawn(async move {
                        loop {
                            let Some(req) = read_request(&mut sock).await else {
                                return;
                            };
                            let n = {
                                let mut s = seen.lock().unwrap();
                                s.push(req.clone());
                                s.len() - 1
                            };
                            match respond(n, &req) {
                                Answer::Hang => {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                    return;
                                }
                                Answer::Respond {
                                    status,
                                    headers,
                                    body,
                                } => {
                                    let mut head = format!(
                                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n",
                                        body.len()
                                    );
                                    for (k, v) in headers {
                                        head.push_str(&format!("{k}: {v}\r\n"));
                                    }
                                    head.push_str("\r\n");
                                    if sock.write_all(head.as_bytes()).await.is_err()
                                        || sock.write_all(body.as_bytes()).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            });
            Server {
                base: format!("http://{addr}"),
                seen,
            }
        }

        /// Always gives the same answer.
        pub async fn always(answer: Answer) -> Server {
            Server::start(move |_, _| answer.clone()).await
        }

        /// Answers in sequence; the last answer repeats.
        pub async fn sequence(answers: Vec<Answer>) -> Server {
            Server::start(move |n, _| answers[n.min(answers.len() - 1)].clone()).await
        }

        pub fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        /// `host:port`.
        pub fn authority(&self) -> &str {
            self.base.trim_start_matches("http://")
        }
    }

    async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = sock.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let method = first.next()?.to_owned();
        let target = first.next()?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let n = sock.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        Some(Seen {
            method,
            target,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Answer, Server};
    use super::*;

    fn fast(max_attempts: u32) -> Settings {
        Settings {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            metadata_detect_timeout: Duration::from_millis(500),
            max_attempts,
        }
    }

    fn url(server: &Server, path: &str) -> Url {
        Url::parse(&format!("{}{path}", server.base)).unwrap()
    }

    #[tokio::test]
    async fn transient_503s_are_retried_until_success() {
        let server = Server::sequence(vec![
            Answer::json(503, r#"{"error":"backend_error"}"#),
            Answer::json(503, "{}"),
            Answer::json(200, r#"{"ok":true}"#),
        ])
        .await;
        let s = fast(3);
        let reply = send_with(
            &Call::get(url(&server, "/token"), "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(server.seen().len(), 3);
    }

    #[tokio::test]
    async fn persistent_503_gives_up_after_max_attempts_as_unavailable() {
        let server = Server::always(Answer::json(503, r#"{"error":"backend_error"}"#)).await;
        let s = fast(2);
        let err = send_with(
            &Call::get(url(&server, "/t"), "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(server.seen().len(), 2);
    }

    #[tokio::test]
    async fn invalid_grant_is_rejected_with_googles_fields_and_not_retried() {
        let server = Server::always(Answer::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ))
        .await;
        let s = fast(3);
        let err = send_with(
            &Call::post_form(url(&server, "/token"), &[("a", "b")], "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap_err();
        match &err {
            Error::Rejected {
                status,
                error,
                description,
                ..
            } => {
                assert_eq!(*status, 400);
                assert_eq!(error.as_deref(), Some("invalid_grant"));
                assert_eq!(description.as_deref(), Some("Invalid JWT Signature."));
            }
            other => panic!("expected Rejected, got {other:?}"),
        }
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_within_the_bound() {
        let server = Server::always(Answer::Hang).await;
        let s = Settings {
            request_timeout: Duration::from_millis(300),
            ..fast(3)
        };
        let started = Instant::now();
        let err = send_with(
            &Call::get(url(&server, "/t"), "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    what: "token request",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_absurd_budget_does_not_overflow() {
        let server = Server::always(Answer::json(200, "{}")).await;
        let s = fast(3);
        let reply = send_with(
            &Call::get(url(&server, "/t"), "token request"),
            &s,
            Duration::MAX,
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let server =
            Server::always(Answer::text(302, "").with_header("Location", "https://evil.example/"))
                .await;
        let s = fast(3);
        let err = send_with(
            &Call::get(url(&server, "/t"), "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::Rejected { status: 302, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn bodies_over_one_mib_are_refused() {
        let server = Server::always(Answer::text(200, "x".repeat(MAX_BODY + 1))).await;
        let s = fast(3);
        let err = send_with(
            &Call::get(url(&server, "/t"), "token request"),
            &s,
            s.request_timeout,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = fast(2);
        let u = Url::parse(&format!("http://127.0.0.1:{port}/t")).unwrap();
        let err = send_with(&Call::get(u, "token request"), &s, s.request_timeout)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    }

    #[test]
    fn google_error_reads_oauth_and_iam_shapes() {
        assert_eq!(
            google_error(br#"{"error":"invalid_grant","error_description":"Bad Request"}"#),
            (Some("invalid_grant".into()), Some("Bad Request".into()))
        );
        assert_eq!(
            google_error(br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#),
            (
                Some("PERMISSION_DENIED".into()),
                Some("Permission 'iam.serviceAccounts.getAccessToken' denied".into())
            )
        );
        assert_eq!(google_error(b"<html>nope</html>"), (None, None));
    }

    #[test]
    fn only_https_or_loopback_http_endpoints_are_accepted() {
        assert!(secure_endpoint("https://oauth2.googleapis.com/token", "f").is_ok());
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://localhost/t",
            "http://[::1]:9/t",
            "http://127.8.9.1/t",
        ] {
            assert!(secure_endpoint(ok, "f").is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.attacker.example/t",
            "http://127.0.0.1.nip.io/t",
            "file:///etc/passwd",
            "//oauth2.googleapis.com/token",
            "http://oauth2.googleapis.com/token",
            "http://10.0.0.1/t",
            "ftp://localhost/t",
            "not a url",
        ] {
            let e = secure_endpoint(bad, "key.json: field `token_uri`").unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("key.json: field `token_uri`") && text.contains("https"),
                "{text}"
            );
        }
    }

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_urlencode(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("a b", "x+y/z")
            ]),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&a+b=x%2By%2Fz"
        );
    }

    #[test]
    fn endpoint_label_drops_the_query() {
        let u = Url::parse("http://h:1/a/b?audience=x&format=full").unwrap();
        assert_eq!(endpoint_label(&u), "http://h:1/a/b");
    }

    #[test]
    fn settings_default_to_the_documented_bounds_and_refuse_zero() {
        let d = Settings::default();
        assert_eq!(d.connect_timeout, Duration::from_secs(3));
        assert_eq!(d.request_timeout, Duration::from_secs(30));
        assert_eq!(d.metadata_detect_timeout, Duration::from_secs(3));
        assert_eq!(d.max_attempts, 3);
        let z = Settings {
            connect_timeout: Duration::ZERO,
            request_timeout: Duration::ZERO,
            metadata_detect_timeout: Duration::ZERO,
            max_attempts: 0,
        }
        .sanitized();
        assert!(!z.request_timeout.is_zero() && z.max_attempts == 1);
        let huge = Settings {
            connect_timeout: Duration::MAX,
            request_timeout: Duration::MAX,
            metadata_detect_timeout: Duration::MAX,
            max_attempts: u32::MAX,
        }
        .sanitized();
        assert!(huge.request_timeout <= Duration::from_secs(86_400) && huge.max_attempts <= 100);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) <= Duration::from_millis(100));
        assert!(backoff(3) >= Duration::from_millis(200));
        assert!(backoff(30) <= Duration::from_secs(3));
    }
}

//! The HTTP layer every source uses: one shared `reqwest` client per
//! process with explicit timeouts, bounded retries and a body cap.
//!
//! Why each rule exists:
//! - reqwest has no request timeout by default; a token endpoint that stops
//!   answering would hang an agent forever. Every call here is bounded by
//!   [`Settings::request_timeout`] *in total*, retries included.
//! - Retries follow Google's guidance ([`retry`]).
//! - Redirects are not followed: a token endpoint that redirects is
//!   misconfigured, and following it would send an assertion or refresh
//!   token to a host nobody named. Which hosts may receive credentials at
//!   all is decided when a credential is built ([`endpoint`]).
//! - Bodies are capped at [`MAX_BODY`] (1 MiB); a token response is < 4 KiB.
//! - The metadata server and loopback endpoints are reached without a proxy
//!   (a proxy cannot reach them, and must not see their tokens); everything
//!   else honours `HTTPS_PROXY`/`NO_PROXY` as usual.
//! - Logs (debug) carry endpoint, status, duration and attempt, never a
//!   body, a header or a token.
//! - Request and response bodies we own are zeroized on drop; the copy of a
//!   request body handed to reqwest for each attempt is freed by reqwest
//!   without zeroizing (a limit of the HTTP stack, not a choice).

pub mod endpoint;
pub mod retry;

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Url};
use zeroize::Zeroizing;

pub use self::endpoint::{credential_endpoint, endpoint_label, is_loopback, secure_endpoint};
use crate::config::{self, Settings};
use crate::error::{self, Error, Result};
use crate::process::PerProcess;
use crate::token::Secret;

/// Largest response body accepted from any endpoint.
pub const MAX_BODY: usize = 1024 * 1024;

const USER_AGENT: &str = concat!("adk-token-exchange/", env!("CARGO_PKG_VERSION"));

/// This process's clients, for the settings they were built with. Rebuilt
/// after `fork()` (pooled connections and their tasks belong to the parent)
/// or when the settings change.
static CLIENTS: PerProcess<Mutex<Option<Clients>>> = PerProcess::new();

struct Clients {
    settings: Settings,
    /// Honours the usual proxy variables.
    proxied: std::result::Result<Client, String>,
    /// Never uses a proxy: metadata server and loopback.
    direct: std::result::Result<Client, String>,
}

/// The shared client: `direct` for one that never uses a proxy.
fn client(settings: &Settings, direct: bool) -> Result<Client> {
    let mut guard = CLIENTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|c| &c.settings != settings) {
        *guard = Some(Clients {
            settings: settings.clone(),
            proxied: build_client(settings, true),
            direct: build_client(settings, false),
        });
    }
    let clients = guard.as_ref().expect("just built");
    let built = if direct {
        &clients.direct
    } else {
        &clients.proxied
    };
    built.clone().map_err(|why| {
        Error::Config(format!(
            "cannot set up HTTPS ({why}); check SSL_CERT_FILE or the system's root certificates"
        ))
    })
}

fn build_client(s: &Settings, proxies: bool) -> std::result::Result<Client, String> {
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
    // Building fails only if the TLS backend cannot initialise. There is no
    // fallback to an unconfigured client (no timeouts, redirects followed):
    // every request reports the failure instead.
    b.build().map_err(|e| e.to_string())
}

/// An HTTP method this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    /// AWS IMDSv2's session token request.
    Put,
}

/// One logical request (retried as a whole). Holds no secret except in
/// `bearer`, `secret_headers` and `body`, which are zeroized on drop.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub url: Url,
    /// Extra non-secret headers, e.g. `Metadata-Flavor: Google`.
    pub headers: Vec<(&'static str, String)>,
    pub bearer: Option<Secret>,
    /// Headers whose values are secrets (a subject-token endpoint's request
    /// token, Basic client authentication, an IMDSv2 session token): sent
    /// marked sensitive, never logged. Names are checked when sent.
    pub secret_headers: Vec<(String, Secret)>,
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
            secret_headers: Vec::new(),
            body: None,
            what,
            direct: false,
        }
    }

    /// A PUT without a body.
    pub fn put(url: Url, what: &'static str) -> Self {
        Call {
            method: Method::Put,
            ..Call::get(url, what)
        }
    }

    /// A POST with an `application/x-www-form-urlencoded` body.
    pub fn post_form(url: Url, form: &[(&str, &str)], what: &'static str) -> Self {
        Call {
            method: Method::Post,
            body: Some((
                "application/x-www-form-urlencoded",
                Zeroizing::new(std::mem::take(&mut *form_urlencode(form)).into_bytes()),
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

    /// A header whose value is a secret (see [`Call::secret_headers`]).
    pub fn secret_header(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.secret_headers.push((name.into(), value));
        self
    }

    /// HTTP Basic client authentication, `base64(client_id:client_secret)`,
    /// as google-auth sends it to Google's STS (raw, not form-encoded first
    /// as RFC 6749 §2.3.1 would have it: Google reads it that way).
    pub fn basic_auth(self, client_id: &str, client_secret: &Secret) -> Self {
        use base64::Engine as _;
        let secret = client_secret.expose();
        let mut pair = Zeroizing::new(String::with_capacity(client_id.len() + 1 + secret.len()));
        pair.push_str(client_id);
        pair.push(':');
        pair.push_str(secret);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut value =
            String::with_capacity(6 + base64::encoded_len(pair.len(), true).unwrap_or(0));
        value.push_str("Basic ");
        b64.encode_string(pair.as_bytes(), &mut value);
        self.secret_header("authorization", Secret::new(value))
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
    let s = config::settings();
    let budget = s.request_timeout;
    send_with(call, &s, budget).await
}

/// [`send`] with explicit settings and a total time budget.
pub async fn send_with(call: &Call, s: &Settings, budget: Duration) -> Result<Reply> {
    let endpoint = endpoint_label(&call.url);
    let client = client(s, call.direct || is_loopback(&call.url))?;
    let max_attempts = s.max_attempts.max(1);
    let budget = budget.min(Settings::MAX_DURATION);
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
        let attempt_budget = retry::attempt_budget(attempt, max_attempts, remaining);
        crate::telemetry::attempted();
        let began = Instant::now();
        let outcome = attempt_once(&client, call, attempt_budget).await;
        let took = began.elapsed().as_millis();
        let method = match call.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
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
                if !retry::is_retryable_status(reply.status) {
                    return Err(error::rejected(&endpoint, reply.status, &reply.body));
                }
                let retry_after = retry::retry_after(&reply.headers);
                (
                    error::unavailable(&endpoint, reply.status, &reply.body, attempt),
                    retry_after,
                )
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
        let delay = retry_after.unwrap_or_else(|| retry::backoff(attempt));
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
        Method::Put => client.put(call.url.clone()),
    }
    .timeout(remaining);
    let sent_at = SystemTime::now();
    for (name, value) in &call.headers {
        rb = rb.header(*name, value.as_str());
    }
    if let Some(token) = &call.bearer {
        // Sized once: a growing String would free partial copies unzeroized.
        let mut text = Zeroizing::new(String::with_capacity(7 + token.expose().len()));
        text.push_str("Bearer ");
        text.push_str(token.expose());
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            Failure::Fatal(Error::Internal("token is not a valid header value".into()))
        })?;
        v.set_sensitive(true);
        rb = rb.header(AUTHORIZATION, v);
    }
    for (name, value) in &call.secret_headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Failure::Fatal(Error::Config(format!(
                "{}: {name:?} is not a valid HTTP header name",
                endpoint()
            )))
        })?;
        let mut v = HeaderValue::from_str(value.expose()).map_err(|_| {
            Failure::Fatal(Error::Config(format!(
                "{}: the value of header {name:?} is not a valid header value \
                 (a line break or control character?); it is not shown",
                endpoint()
            )))
        })?;
        v.set_sensitive(true);
        rb = rb.header(name, v);
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

/// `application/x-www-form-urlencoded` serialization (WHATWG URL §5.2).
///
/// The form carries secrets (an assertion, a refresh token), so it is
/// written into one buffer of exactly the final size: a growing `String`
/// would free copies of what it held so far without zeroizing them.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    fn keeps(b: u8) -> bool {
        matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' | b' ')
    }
    fn len(s: &str) -> usize {
        s.bytes().map(|b| if keeps(b) { 1 } else { 3 }).sum()
    }
    fn push(out: &mut String, s: &str) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for b in s.bytes() {
            match b {
                b' ' => out.push('+'),
                b if keeps(b) => out.push(b as char),
                b => {
                    out.push('%');
                    out.push(HEX[usize::from(b >> 4)] as char);
                    out.push(HEX[usize::from(b & 15)] as char);
                }
            }
        }
    }
    let total = pairs
        .iter()
        .map(|(k, v)| len(k) + 1 + len(v))
        .sum::<usize>()
        + pairs.len().saturating_sub(1);
    let mut out = Zeroizing::new(String::with_capacity(total));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push(&mut out, k);
        out.push('=');
        push(&mut out, v);
    }
    debug_assert_eq!(out.len(), total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, Server};

    fn fast(max_attempts: u32) -> Settings {
        Settings {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(5),
            metadata_detect_timeout: Duration::from_millis(500),
            max_attempts,
            ..Settings::DEFAULT
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
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(
            form_urlencode(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("a b", "x+y/z")
            ])
            .as_str(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&a+b=x%2By%2Fz"
        );
        assert_eq!(
            form_urlencode(&[("k", "é\u{0}~")]).as_str(),
            "k=%C3%A9%00%7E"
        );
    }

    #[test]
    fn endpoint_label_drops_the_query() {
        let u = Url::parse("http://h:1/a/b?audience=x&format=full").unwrap();
        assert_eq!(endpoint_label(&u), "http://h:1/a/b");
    }
}

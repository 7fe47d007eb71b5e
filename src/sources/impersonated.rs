//! Service account impersonation: any credential (a gcloud user login, a
//! key, the metadata server) asks IAM for a short-lived token of a *target*
//! service account. This is how a developer's laptop login mints ID tokens
//! with the real audience, which `authorized_user` alone cannot.
//!
//! Protocol: IAM Service Account Credentials API
//! (<https://cloud.google.com/iam/docs/reference/credentials/rest>), called
//! with the source credential's cloud-platform access token:
//! - `POST {iam}/v1/projects/-/serviceAccounts/{target}:generateAccessToken`
//!   `{"scope": [...], "delegates": [...], "lifetime": "3600s"}` →
//!   `{"accessToken", "expireTime"}` (RFC 3339);
//! - `POST {iam}/v1/projects/-/serviceAccounts/{target}:generateIdToken`
//!   `{"audience", "includeEmail": true, "delegates": [...]}` → `{"token"}`.
//!
//! `delegates` is the chain caller → `delegates[0]` → … → target; each link
//! needs `roles/iam.serviceAccountTokenCreator` on the next
//! (<https://cloud.google.com/iam/docs/create-short-lived-credentials-delegated>).
//!
//! Where `{iam}` comes from:
//! - an `impersonated_service_account` file (what `gcloud auth
//!   application-default login --impersonate-service-account` writes): the
//!   origin of its `service_account_impersonation_url`;
//! - explicit impersonation ([`Impersonation`]):
//!   `https://iamcredentials.googleapis.com`, or the user-facing setting
//!   `ADK_TOKEN_EXCHANGE_IAM_ENDPOINT` (like google-auth's
//!   `iam_endpoint_override`: for Private Service Connect endpoints, or a
//!   local emulator). It must be https, or http to a loopback host.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{adc, request::TokenRequest, sources::impersonated::Impersonation};
//! let target = Impersonation { target: "mcp-caller@proj.iam.gserviceaccount.com".into(), delegates: vec![] };
//! let source = adc::application_default(Some(target)).await?.source;
//! let id = source.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;

use super::{
    access_token_until, id_token_from_json, invalid, optional, required, signed_jwt, universe_of,
    BoxFuture, CredentialFile, ResponseFields, SourceDescription, SourceKind, TokenSource,
};
use crate::error::{self, Error, Result};
use crate::http::endpoint::GOOGLE_UNIVERSE;
use crate::http::{self, Call};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::Token;

/// Google's IAM Service Account Credentials endpoint.
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// User-facing override of [`DEFAULT_IAM_ENDPOINT`] for explicit impersonation.
pub const IAM_ENDPOINT_VAR: &str = "ADK_TOKEN_EXCHANGE_IAM_ENDPOINT";

/// Requested lifetime of impersonated access tokens (IAM's default and the
/// longest allowed without an org-policy exception).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The lifetimes IAM grants at all (the upper end needs the org policy
/// `constraints/iam.allowServiceAccountCredentialLifetimeExtension`).
pub const LIFETIMES: std::ops::RangeInclusive<u64> = 600..=43_200;

/// Which service account to impersonate, through which delegation chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Impersonation {
    /// Target service account email.
    pub target: String,
    /// Intermediate service accounts (emails or `projects/-/serviceAccounts/…`).
    pub delegates: Vec<String>,
}

impl Impersonation {
    pub fn new(target: impl Into<String>) -> Self {
        Impersonation {
            target: target.into(),
            delegates: Vec::new(),
        }
    }

    /// The one reading of what callers pass as `impersonate=` and
    /// `delegates=`: `chain` is empty (no impersonation), `[target]`, or
    /// `[delegate…, target]`; `delegates` is the alternative way to give the
    /// delegates. Entries are service account emails (or
    /// `projects/-/serviceAccounts/EMAIL`).
    pub fn parse(chain: Vec<String>, delegates: Vec<String>) -> Result<Option<Self>> {
        let chain: Vec<String> = chain.into_iter().map(|e| e.trim().to_owned()).collect();
        let delegates: Vec<String> = delegates.into_iter().map(|e| e.trim().to_owned()).collect();
        if chain.iter().chain(&delegates).any(String::is_empty) {
            return Err(Error::Config(
                "impersonate must be a service account email or a list [delegate..., target] of \
                 emails, and delegates a list of emails; an entry is empty"
                    .into(),
            ));
        }
        let Some((target, leading)) = chain.split_last() else {
            if delegates.is_empty() {
                return Ok(None);
            }
            return Err(Error::Config(
                "delegates were given without a service account to impersonate: pass \
                 impersonate=<target service account email> too"
                    .into(),
            ));
        };
        if !leading.is_empty() && !delegates.is_empty() {
            return Err(Error::Config(
                "give delegates either as delegates= or as the leading entries of \
                 impersonate=[delegate..., target], not both"
                    .into(),
            ));
        }
        Ok(Some(Impersonation {
            target: target.clone(),
            delegates: if leading.is_empty() {
                delegates
            } else {
                leading.to_vec()
            },
        }))
    }
}

/// A source that impersonates `target` using `inner`'s access token.
pub struct ImpersonatedServiceAccount {
    inner: Arc<dyn TokenSource>,
    target: String,
    /// As IAM wants them: `projects/-/serviceAccounts/EMAIL`.
    delegates: Vec<String>,
    iam: Url,
    /// Asked of `generateAccessToken` (ID tokens always live an hour).
    lifetime: Duration,
    quota_project_id: Option<String>,
    origin: String,
    /// The source's identity plus the whole chain and the IAM endpoint.
    identity: Identity,
}

impl ImpersonatedServiceAccount {
    /// Impersonation on top of `inner`, at the IAM endpoint from
    /// `$ADK_TOKEN_EXCHANGE_IAM_ENDPOINT` or Google's.
    pub fn new(inner: Arc<dyn TokenSource>, imp: Impersonation) -> Result<Self> {
        let (endpoint, what) = match std::env::var(IAM_ENDPOINT_VAR) {
            Ok(v) if !v.trim().is_empty() => (v, IAM_ENDPOINT_VAR.to_owned()),
            _ => (DEFAULT_IAM_ENDPOINT.to_owned(), "IAM endpoint".to_owned()),
        };
        let iam = iam_origin(&endpoint, &what, GOOGLE_UNIVERSE)?;
        let origin = format!(
            "{} impersonating {}",
            inner.describe().origin,
            imp.target.trim()
        );
        Self::build(inner, imp, iam, None, origin, &what, DEFAULT_LIFETIME)
    }

    /// An `impersonated_service_account` credential file; `source` builds
    /// the nested `source_credentials`. `origin` names the file in errors.
    pub fn from_file(
        f: CredentialFile,
        origin: &str,
        source: impl FnOnce(CredentialFile, &str) -> Result<Arc<dyn TokenSource>>,
    ) -> Result<Self> {
        let kind = SourceKind::ImpersonatedServiceAccount;
        let universe = universe_of(&f);
        let url_field = format!("{origin}: field `service_account_impersonation_url`");
        let url = required(
            f.service_account_impersonation_url,
            origin,
            kind,
            "service_account_impersonation_url",
        )?;
        let (iam, target) = parse_impersonation_url(&url, &url_field, &universe)?;
        let inner_file = *f.source_credentials.ok_or_else(|| {
            Error::Config(format!(
                "{origin}: field `source_credentials` is missing (required for type \"{}\")",
                kind.as_str()
            ))
        })?;
        let inner = source(inner_file, &format!("{origin}: source_credentials"))?;
        let imp = Impersonation {
            target,
            delegates: f.delegates.unwrap_or_default(),
        };
        Self::build(
            inner,
            imp,
            iam,
            optional(f.quota_project_id),
            origin.to_owned(),
            &url_field,
            DEFAULT_LIFETIME,
        )
    }

    /// The impersonation a federated credential file asks for
    /// (`service_account_impersonation_url`, `…token_lifetime_seconds`),
    /// on top of `inner` (its STS token). `what` names the URL field in
    /// errors; the URL must be a Google host of `universe`, or loopback.
    pub fn from_url(
        inner: Arc<dyn TokenSource>,
        url: &str,
        what: &str,
        universe: &str,
        lifetime: Duration,
        quota_project_id: Option<String>,
        origin: String,
    ) -> Result<Self> {
        let (iam, target) = parse_impersonation_url(url, what, universe)?;
        if !LIFETIMES.contains(&lifetime.as_secs()) {
            return Err(Error::Config(format!(
                "{origin}: the impersonated token lifetime is {} s; IAM grants {} to {} s",
                lifetime.as_secs(),
                LIFETIMES.start(),
                LIFETIMES.end()
            )));
        }
        Self::build(
            inner,
            Impersonation::new(target),
            iam,
            quota_project_id,
            origin,
            what,
            lifetime,
        )
    }

    fn build(
        inner: Arc<dyn TokenSource>,
        imp: Impersonation,
        iam: Url,
        quota_project_id: Option<String>,
        origin: String,
        what: &str,
        lifetime: Duration,
    ) -> Result<Self> {
        let target = check_email(&imp.target, &format!("{what}: target service account"))?;
        let delegates = imp
            .delegates
            .iter()
            .map(|d| {
                let d = d.trim();
                let email = d.strip_prefix("projects/-/serviceAccounts/").unwrap_or(d);
                check_email(email, &format!("{what}: delegate"))
                    .map(|e| format!("projects/-/serviceAccounts/{e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut id = Identity::builder("impersonated_service_account");
        id.nested(inner.identity())
            .part(target.as_bytes())
            .part(iam.as_str().as_bytes())
            .part(&lifetime.as_secs().to_be_bytes())
            .optional(quota_project_id.as_deref());
        for d in &delegates {
            id.part(d.as_bytes());
        }
        let identity = id.finish(format_args!("{}>{}", inner.identity().label(), target));
        Ok(ImpersonatedServiceAccount {
            inner,
            target,
            delegates,
            iam,
            lifetime,
            quota_project_id,
            origin,
            identity,
        })
    }

    /// What `generateAccessToken` is asked for.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// The source whose token authenticates the IAM calls.
    pub fn inner(&self) -> &Arc<dyn TokenSource> {
        &self.inner
    }

    fn method_url(&self, method: &str) -> Url {
        let mut u = self.iam.clone();
        u.set_path(&format!(
            "/v1/projects/-/serviceAccounts/{}:{method}",
            self.target
        ));
        u
    }

    async fn fetch_token(&self, request: &TokenRequest) -> Result<Token> {
        let caller = self.inner.fetch(&TokenRequest::cloud_platform()).await?;
        let (url, body) = match request {
            TokenRequest::Access { scopes } => (
                self.method_url("generateAccessToken"),
                serde_json::json!({"scope": scopes, "delegates": self.delegates, "lifetime": format!("{}s", self.lifetime.as_secs())}),
            ),
            TokenRequest::Id { audience } => (
                self.method_url("generateIdToken"),
                serde_json::json!({"audience": audience, "includeEmail": true, "delegates": self.delegates}),
            ),
            TokenRequest::SignedJwt { audience } => {
                let claims = signed_jwt::Claims::new(&self.target, audience, SystemTime::now());
                (
                    self.method_url("signJwt"),
                    serde_json::json!({"payload": claims.to_json()?, "delegates": self.delegates}),
                )
            }
        };
        let endpoint = http::endpoint_label(&url);
        let json =
            serde_json::to_vec(&body).map_err(|e| Error::Internal(format!("request body: {e}")))?;
        let call = Call::post_json(url, json, "token request").bearer(caller.value.clone());
        drop(caller);
        let reply = http::send(&call).await.map_err(|e| self.explain(e))?;
        match request {
            TokenRequest::Access { .. } => {
                let mut r = ResponseFields::parse(&endpoint, &reply.body)?;
                let value = r
                    .secret("accessToken")?
                    .ok_or_else(|| invalid(&endpoint, "no `accessToken` in the response".into()))?;
                let expire_time = r
                    .string("expireTime")?
                    .ok_or_else(|| invalid(&endpoint, "no `expireTime` in the response".into()))?;
                let expires_at = parse_rfc3339(&expire_time).ok_or_else(|| {
                    invalid(
                        &endpoint,
                        "`expireTime` is not an RFC 3339 timestamp".into(),
                    )
                })?;
                access_token_until(&endpoint, value, expires_at)
            }
            TokenRequest::Id { .. } => id_token_from_json(
                &endpoint,
                &reply.body,
                "token",
                "no `token` in the response",
            ),
            TokenRequest::SignedJwt { .. } => id_token_from_json(
                &endpoint,
                &reply.body,
                "signedJwt",
                "no `signedJwt` in the response",
            ),
        }
    }

    /// Who IAM saw as the caller, as an IAM member string.
    fn caller_member(&self) -> String {
        let d = self.inner.describe();
        if d.impersonating.is_none() {
            if let Some(f) = &d.federation {
                return federated_member(f);
            }
        }
        match (d.kind, d.principal, d.impersonating) {
            (SourceKind::AuthorizedUser, _, _) => {
                "user:YOUR_EMAIL (the account of `gcloud auth application-default login`)"
                    .to_owned()
            }
            (_, _, Some(target)) => format!("serviceAccount:{target}"),
            (_, Some(email), None) => format!("serviceAccount:{email}"),
            (_, None, None) => {
                "serviceAccount:ATTACHED_SA (the workload's service account)".to_owned()
            }
        }
    }

    fn explain(&self, e: Error) -> Error {
        let target = self.target.clone();
        let member = self.caller_member();
        // Federated principals are granted the Workload Identity User role
        // (<https://cloud.google.com/iam/docs/workload-identity-federation-with-other-providers#impersonation>).
        let federated = member.starts_with("principal");
        let role = if federated {
            "roles/iam.workloadIdentityUser"
        } else {
            "roles/iam.serviceAccountTokenCreator"
        };
        let e = error::with_hint(e, Some(403), |_| {
            format!(
                "grant {role} on {target} to {member}: \
                 `gcloud iam service-accounts add-iam-policy-binding {target} \
                 --member=\"{member}\" --role={role}` \
                 (and enable iamcredentials.googleapis.com in the caller's project)"
            )
        });
        let target = self.target.clone();
        error::with_hint(e, Some(404), |_| {
            format!("service account {target} does not exist; check the email")
        })
    }
}

/// The IAM member that stands for every identity of a federated pool
/// (narrow it to `/subject/…` or `/attribute.NAME/…` as the pool maps them).
fn federated_member(f: &super::Federation) -> String {
    match (f.pool_kind, &f.project_number, &f.location, &f.pool_id) {
        (Some("workload"), Some(n), Some(l), Some(p)) => {
            format!("principalSet://iam.googleapis.com/projects/{n}/locations/{l}/workloadIdentityPools/{p}/*")
        }
        (Some("workforce"), _, Some(l), Some(p)) => {
            format!("principalSet://iam.googleapis.com/locations/{l}/workforcePools/{p}/*")
        }
        _ => "principalSet://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL_ID/*".to_owned(),
    }
}

impl fmt::Debug for ImpersonatedServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpersonatedServiceAccount")
            .field("inner", &self.inner)
            .field("target", &self.target)
            .field("delegates", &self.delegates)
            .field("iam", &self.iam.as_str())
            .finish()
    }
}

impl TokenSource for ImpersonatedServiceAccount {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(self.fetch_token(request))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        let inner = self.inner.describe();
        SourceDescription {
            kind: SourceKind::ImpersonatedServiceAccount,
            origin: self.origin.clone(),
            principal: inner.impersonating.or(inner.principal),
            impersonating: Some(self.target.clone()),
            quota_project_id: self.quota_project_id.clone().or(inner.quota_project_id),
            token_uri: Some(self.iam.as_str().trim_end_matches('/').to_owned()),
            federation: inner.federation,
        }
    }
}

/// The scheme://host[:port] of an IAM endpoint setting: a Google host
/// (of `universe`) or loopback, since it receives the source's access token.
fn iam_origin(raw: &str, what: &str, universe: &str) -> Result<Url> {
    let url = http::credential_endpoint(raw, what, universe)?;
    let mut origin = url.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    Ok(origin)
}

/// `https://host/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken` →
/// (origin, EMAIL).
fn parse_impersonation_url(raw: &str, what: &str, universe: &str) -> Result<(Url, String)> {
    let origin = iam_origin(raw, what, universe)?;
    let bad = || {
        Error::Config(format!(
            "{what}: the URL is not of the form \
             https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken"
        ))
    };
    let url = Url::parse(raw.trim()).map_err(|_| bad())?;
    let path = url.path();
    let rest = path
        .rsplit_once("/serviceAccounts/")
        .map(|(_, r)| r)
        .ok_or_else(bad)?;
    let (email, _method) = rest.rsplit_once(':').ok_or_else(bad)?;
    let email = percent_decode(email).ok_or_else(bad)?;
    let email = check_email(&email, what)?;
    Ok((origin, email))
}

/// A plausible service account email or unique id (goes into a URL path).
fn check_email(email: &str, what: &str) -> Result<String> {
    let email = email.trim();
    let ok = !email.is_empty()
        && email.len() <= 320
        && email
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+'));
    if ok {
        Ok(email.to_owned())
    } else {
        Err(Error::Config(format!(
            "{what}: {email:?} is not a service account email"
        )))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 3339 timestamps as IAM writes them (`2026-01-01T00:00:00Z`, optional
/// fraction, `Z` or `±hh:mm`). `None` for anything else.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = s.get(from..to)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 9)];
        nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && sep(i + 3, b":") => {
            let sign = match tz.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec.min(59) - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the inverse of `days_from_civil`).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{env_lock, jwt_expiring_in, rfc3339_in, Answer, EnvVars, Server};
    use crate::token::{Secret, TokenKind};

    /// A fixed inner source, so the tests count only IAM's requests.
    #[derive(Debug)]
    struct Fixed(&'static str, Option<&'static str>, Identity);

    #[allow(non_snake_case)]
    fn FixedToken(value: &'static str, principal: Option<&'static str>) -> Fixed {
        let id = Identity::builder("fixed")
            .part(value.as_bytes())
            .finish("fixed");
        Fixed(value, principal, id)
    }

    impl TokenSource for Fixed {
        fn fetch<'a>(&'a self, _: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
            Box::pin(async move {
                Ok(Token::new(
                    Secret::new(self.0),
                    TokenKind::Access,
                    SystemTime::now() + Duration::from_secs(3600),
                ))
            })
        }
        fn identity(&self) -> &Identity {
            &self.2
        }
        fn describe(&self) -> SourceDescription {
            SourceDescription {
                kind: SourceKind::ServiceAccount,
                origin: "test".into(),
                principal: self.1.map(str::to_owned),
                impersonating: None,
                quota_project_id: Some("inner-quota".into()),
                token_uri: None,
                federation: None,
            }
        }
    }

    fn impersonating(
        server: &Server,
        target: &str,
        delegates: &[&str],
    ) -> ImpersonatedServiceAccount {
        let imp = Impersonation {
            target: target.into(),
            delegates: delegates.iter().map(|d| d.to_string()).collect(),
        };
        let iam = iam_origin(&server.base, "test", GOOGLE_UNIVERSE).unwrap();
        ImpersonatedServiceAccount::build(
            Arc::new(FixedToken(
                "ya29.caller",
                Some("caller@p.iam.gserviceaccount.com"),
            )),
            imp,
            iam,
            None,
            "test".into(),
            "test",
            DEFAULT_LIFETIME,
        )
        .unwrap()
    }

    #[test]
    fn rfc3339_parses_iams_expire_time() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2014-10-02T15:01:23.045123456Z"),
            Some(UNIX_EPOCH + Duration::new(1_412_262_083, 45_123_456))
        );
        assert_eq!(
            parse_rfc3339("2014-10-02T17:01:23+02:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_412_262_083))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_782_400))
        );
        for bad in [
            "",
            "soon",
            "2014-10-02",
            "2014-13-02T00:00:00Z",
            "2014-10-02T00:00:00",
            "2014-10-02T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_file_url_gives_target_and_iam_origin() {
        let (origin, email) = parse_impersonation_url(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/mcp%40p.iam.gserviceaccount.com:generateAccessToken",
            "f",
            GOOGLE_UNIVERSE,
        )
        .unwrap();
        assert_eq!(origin.as_str(), "https://iamcredentials.googleapis.com/");
        assert_eq!(email, "mcp@p.iam.gserviceaccount.com");
        assert!(parse_impersonation_url(
            "http://iam.example/v1/projects/-/serviceAccounts/a@b:generateAccessToken",
            "f",
            GOOGLE_UNIVERSE
        )
        .is_err());
        assert!(parse_impersonation_url(
            "https://iamcredentials.googleapis.com/v1/nothing",
            "f",
            GOOGLE_UNIVERSE
        )
        .is_err());
    }

    #[tokio::test]
    async fn generate_access_token_is_called_with_the_callers_token_and_scopes() {
        let expire = rfc3339_in(3600);
        let server = Server::always(Answer::json(
            200,
            format!(r#"{{"accessToken":"ya29.imp","expireTime":"{expire}"}}"#),
        ))
        .await;
        let src = impersonating(
            &server,
            "target@p.iam.gserviceaccount.com",
            &["mid@p.iam.gserviceaccount.com"],
        );
        let t = src
            .fetch(&TokenRequest::access(["s1"]).unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.imp");
        assert!(t.remaining(SystemTime::now()) > Duration::from_secs(3500));
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].target,
            "/v1/projects/-/serviceAccounts/target@p.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(seen[0].header("authorization"), Some("Bearer ya29.caller"));
        let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"scope": ["s1"], "delegates": ["projects/-/serviceAccounts/mid@p.iam.gserviceaccount.com"], "lifetime": "3600s"})
        );
    }

    #[tokio::test]
    async fn generate_id_token_asks_for_the_audience_with_email() {
        let jwt = jwt_expiring_in(3600);
        let server = Server::always(Answer::json(200, format!(r#"{{"token":"{jwt}"}}"#))).await;
        let src = impersonating(&server, "target@p.iam.gserviceaccount.com", &[]);
        let t = src
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(t.kind, TokenKind::Id);
        assert_eq!(t.value.expose(), jwt);
        let seen = server.seen();
        assert!(seen[0].target.ends_with(":generateIdToken"));
        let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"audience": "https://svc.run.app", "includeEmail": true, "delegates": []})
        );
    }

    #[tokio::test]
    async fn signed_jwt_asks_iam_sign_jwt_for_the_targets_claims() {
        let jwt = jwt_expiring_in(3600);
        let server = Server::always(Answer::json(
            200,
            format!(r#"{{"keyId":"k","signedJwt":"{jwt}"}}"#),
        ))
        .await;
        let src = impersonating(&server, "target@p.iam.gserviceaccount.com", &[]);
        let t = src
            .fetch(&TokenRequest::signed_jwt("https://iap.example.com/*").unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), jwt);
        let seen = server.seen();
        assert!(seen[0]
            .target
            .ends_with("target@p.iam.gserviceaccount.com:signJwt"));
        assert_eq!(seen[0].header("authorization"), Some("Bearer ya29.caller"));
        let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
        let claims: signed_jwt::Claims =
            serde_json::from_str(body["payload"].as_str().unwrap()).unwrap();
        assert_eq!(claims.iss, "target@p.iam.gserviceaccount.com");
        assert_eq!(claims.sub, claims.iss);
        assert_eq!(claims.aud, "https://iap.example.com/*");
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[tokio::test]
    async fn permission_denied_says_which_role_to_grant_to_whom() {
        let server = Server::always(Answer::json(
            403,
            r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#,
        ))
        .await;
        let src = impersonating(&server, "target@p.iam.gserviceaccount.com", &[]);
        let e = src
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Rejected { status: 403, .. }), "{e:?}");
        assert!(
            text.contains("grant roles/iam.serviceAccountTokenCreator on target@p.iam.gserviceaccount.com to serviceAccount:caller@p.iam.gserviceaccount.com"),
            "{text}"
        );
        assert!(text.contains("PERMISSION_DENIED"), "{text}");
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn an_unparseable_expire_time_is_an_invalid_response() {
        let server = Server::always(Answer::json(
            200,
            r#"{"accessToken":"ya29.imp","expireTime":"tomorrow"}"#,
        ))
        .await;
        let src = impersonating(&server, "target@p.iam.gserviceaccount.com", &[]);
        let e = src
            .fetch(&TokenRequest::access(["s"]).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{e:?}");
    }

    #[test]
    fn identity_chains_inner_delegates_and_target() {
        let _lock = env_lock();
        let _env = EnvVars::set(&[(IAM_ENDPOINT_VAR, None)]);
        let src = ImpersonatedServiceAccount::new(
            Arc::new(FixedToken("t", None)),
            Impersonation {
                target: "t@p.iam.gserviceaccount.com".into(),
                delegates: vec!["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com".into()],
            },
        )
        .unwrap();
        assert!(
            src.identity().label().starts_with("fixed#")
                && src
                    .identity()
                    .label()
                    .contains(">t@p.iam.gserviceaccount.com#"),
            "{}",
            src.identity()
        );
        let without_delegate = ImpersonatedServiceAccount::new(
            Arc::new(FixedToken("t", None)),
            Impersonation::new("t@p.iam.gserviceaccount.com"),
        )
        .unwrap();
        assert_ne!(
            src.identity(),
            without_delegate.identity(),
            "the chain is part of it"
        );
        let other_source = ImpersonatedServiceAccount::new(
            Arc::new(FixedToken("u", None)),
            Impersonation::new("t@p.iam.gserviceaccount.com"),
        )
        .unwrap();
        assert_ne!(without_delegate.identity(), other_source.identity());
        let d = src.describe();
        assert_eq!(
            d.impersonating.as_deref(),
            Some("t@p.iam.gserviceaccount.com")
        );
        assert_eq!(d.quota_project_id.as_deref(), Some("inner-quota"));
    }

    #[test]
    fn iam_endpoint_setting_must_be_google_or_loopback() {
        let _lock = env_lock();
        let _env = EnvVars::set(&[(IAM_ENDPOINT_VAR, Some("http://iam.example.com"))]);
        let imp = || {
            ImpersonatedServiceAccount::new(
                Arc::new(FixedToken("t", None)),
                Impersonation::new("t@p.iam.gserviceaccount.com"),
            )
        };
        let e = imp().unwrap_err();
        assert!(e.to_string().contains(IAM_ENDPOINT_VAR), "{e}");
        std::env::set_var(IAM_ENDPOINT_VAR, "https://iam.attacker.example");
        let e = imp().unwrap_err().to_string();
        assert!(
            e.contains(IAM_ENDPOINT_VAR) && e.contains("not a Google endpoint"),
            "{e}"
        );
        std::env::set_var(
            IAM_ENDPOINT_VAR,
            "https://iamcredentials-x.p.googleapis.com",
        );
        assert!(imp().is_ok());
        std::env::set_var(IAM_ENDPOINT_VAR, "http://127.0.0.1:8123");
        let local = imp().unwrap();
        std::env::remove_var(IAM_ENDPOINT_VAR);
        assert_ne!(
            local.identity(),
            imp().unwrap().identity(),
            "the endpoint is part of it"
        );
    }

    #[test]
    fn the_chain_is_read_one_way_whatever_the_caller() {
        let s = |v: &[&str]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(Impersonation::parse(vec![], vec![]).unwrap(), None);
        let one = Impersonation::parse(s(&["t@p"]), vec![]).unwrap().unwrap();
        assert_eq!((one.target.as_str(), one.delegates.len()), ("t@p", 0));
        let chain = Impersonation::parse(s(&["d@p", "t@p"]), vec![])
            .unwrap()
            .unwrap();
        assert_eq!(chain.delegates, s(&["d@p"]));
        let split = Impersonation::parse(s(&["t@p"]), s(&["d@p"]))
            .unwrap()
            .unwrap();
        assert_eq!(split, chain);
        for (c, d) in [
            (vec![], s(&["d@p"])),
            (s(&["d@p", "t@p"]), s(&["e@p"])),
            (s(&[""]), vec![]),
        ] {
            assert!(matches!(Impersonation::parse(c, d), Err(Error::Config(_))));
        }
    }

    #[test]
    fn a_file_pointing_impersonation_elsewhere_is_refused_without_quoting_the_url() {
        let f = CredentialFile::parse(
            r#"{"type":"impersonated_service_account",
                "service_account_impersonation_url":"https://iam.attacker.example/v1/projects/-/serviceAccounts/t@p.iam.gserviceaccount.com:generateAccessToken?k=SECRETQ",
                "source_credentials":{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}}"#,
            "imp.json",
        )
        .unwrap();
        let e = ImpersonatedServiceAccount::from_file(f, "imp.json", |_, _| {
            Ok(Arc::new(FixedToken("t", None)) as Arc<dyn TokenSource>)
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("imp.json: field `service_account_impersonation_url`"),
            "{e}"
        );
        assert!(
            e.contains("not a Google endpoint") && !e.contains("SECRETQ"),
            "{e}"
        );
    }

    #[test]
    fn a_target_that_is_not_an_email_is_refused() {
        let _lock = env_lock();
        let _env = EnvVars::set(&[(IAM_ENDPOINT_VAR, None)]);
        let e = ImpersonatedServiceAccount::new(
            Arc::new(FixedToken("t", None)),
            Impersonation::new("a/b:evil"),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
    }
}

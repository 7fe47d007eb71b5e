//! What a verifier accepts: one preset (which tokens, signed how, by whom),
//! the audiences, the clock leeway and, optionally, an allow-list of callers.
//! Checked once, when the verifier is built, so a verification never meets
//! a half-valid policy.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Url;

use super::Algorithm;
use crate::error::{Error, Result};
use crate::http::endpoint::key_set_endpoint;

/// Google's ID token keys (JWKS), <https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken>.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// IAP's assertion keys, <https://cloud.google.com/iap/docs/signed-headers-howto>.
pub const IAP_JWKS_URL: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";

/// Largest leeway accepted: past a few minutes, a clock needs fixing.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Default leeway (google-cloud-rust's `idtoken` verifier uses the same).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(10);
/// Audiences per verifier, and emails and domains in an allow-list.
pub const MAX_ENTRIES: usize = 1024;
/// Longest audience, email or domain accepted.
pub const MAX_ENTRY_LEN: usize = 2048;

/// Which tokens a verifier checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Google-signed OIDC ID tokens (RS256): Cloud Run, Cloud Functions,
    /// Pub/Sub push, Cloud Tasks, Scheduler, service-to-service calls.
    GoogleIdToken,
    /// IAP's signed header `x-goog-iap-jwt-assertion` (ES256).
    Iap,
}

impl Preset {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "google_id_token" => Ok(Preset::GoogleIdToken),
            "iap" => Ok(Preset::Iap),
            other => Err(Error::Config(format!(
                "unknown verifier preset {:?}: expected \"google_id_token\" or \"iap\"",
                crate::error::clean_to(other, 40)
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::GoogleIdToken => "google_id_token",
            Preset::Iap => "iap",
        }
    }

    /// The one algorithm a preset's tokens are signed with.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Preset::GoogleIdToken => Algorithm::Rs256,
            Preset::Iap => Algorithm::Es256,
        }
    }

    /// Accepted `iss` values. Google's ID tokens use both spellings
    /// (<https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken>).
    pub fn issuers(self) -> &'static [&'static str] {
        match self {
            Preset::GoogleIdToken => &["https://accounts.google.com", "accounts.google.com"],
            Preset::Iap => &["https://cloud.google.com/iap"],
        }
    }

    pub fn default_jwks_url(self) -> &'static str {
        match self {
            Preset::GoogleIdToken => GOOGLE_JWKS_URL,
            Preset::Iap => IAP_JWKS_URL,
        }
    }

    /// Whether an allow-list needs `email_verified: true`. Google's ID tokens
    /// carry it; IAP's assertions do not (IAP itself authenticated the user).
    pub fn needs_email_verified(self) -> bool {
        self == Preset::GoogleIdToken
    }
}

/// Who may call, when not everyone with a valid token may.
#[derive(Clone, Debug, Default)]
pub struct Callers {
    /// Exact emails (lower-cased): service accounts and users.
    pub emails: HashSet<String>,
    /// Google Workspace / Cloud Identity domains, matched against the `hd`
    /// claim (lower-cased). Not the email's suffix: `hd` is what Google
    /// asserts about the account's organisation.
    pub domains: HashSet<String>,
}

/// A verifier's whole policy.
#[derive(Clone, Debug)]
pub struct Policy {
    pub preset: Preset,
    /// `aud` must be one of these (exact strings, RFC 7519 §4.1.3).
    pub audiences: Vec<String>,
    pub leeway: Duration,
    pub callers: Option<Callers>,
    /// Cloud Run verified the token and removed its signature (see the module docs).
    pub trusted_front: bool,
    pub jwks_url: Url,
}

/// What a caller asks for; [`Policy::new`] checks it.
#[derive(Clone, Debug, Default)]
pub struct PolicyRequest {
    pub audiences: Vec<String>,
    pub leeway: Option<f64>,
    pub emails: Vec<String>,
    pub domains: Vec<String>,
    pub trusted_front: bool,
    pub jwks_url: Option<String>,
}

impl Policy {
    /// Checks `request` for `preset`; a configuration error names the argument.
    pub fn new(preset: Preset, request: PolicyRequest) -> Result<Policy> {
        let audiences = entries("audience", request.audiences)?;
        if audiences.is_empty() {
            // google-auth lets `audience=None` through, and then any Google
            // ID token for any service passes: the one mistake never allowed here.
            return Err(Error::Config(
                "audience: at least one is required: the service's URL (Cloud Run checks the \
                 origin, e.g. https://svc-xyz.a.run.app), its custom audience, or for IAP \
                 /projects/NUMBER/global/backendServices/ID or /projects/NUMBER/apps/PROJECT_ID"
                    .into(),
            ));
        }
        if preset == Preset::Iap {
            if let Some(bad) = audiences.iter().find(|a| !is_iap_audience(a)) {
                return Err(Error::Config(format!(
                    "audience {:?} is not an IAP audience: IAP signs /projects/NUMBER/global/backendServices/ID \
                     (load balancers, GKE) or /projects/NUMBER/apps/PROJECT_ID (App Engine); find it in the \
                     IAP page's \"Get JWT audience code\"",
                    crate::error::clean_to(bad, 100)
                )));
            }
        }
        if request.trusted_front && preset != Preset::GoogleIdToken {
            return Err(Error::Config(
                "trusted_front applies to Cloud Run's forwarded ID tokens only; IAP assertions are \
                 always signed and always verified"
                    .into(),
            ));
        }
        let leeway = match request.leeway {
            None => DEFAULT_LEEWAY,
            Some(s) if s.is_finite() && (0.0..=MAX_LEEWAY.as_secs_f64()).contains(&s) => {
                Duration::from_secs_f64(s)
            }
            Some(s) => {
                return Err(Error::Config(format!(
                    "leeway={s}: expected 0 to {} seconds",
                    MAX_LEEWAY.as_secs()
                )))
            }
        };
        let emails = entries("allowed email", request.emails)?;
        let domains = entries("allowed domain", request.domains)?;
        if let Some(bad) = emails.iter().find(|e| !e.contains('@')) {
            return Err(Error::Config(format!(
                "allowed email {:?} has no @; put domains in `domains` (matched against the `hd` claim)",
                crate::error::clean_to(bad, 100)
            )));
        }
        let callers = (!emails.is_empty() || !domains.is_empty()).then(|| Callers {
            emails: emails.into_iter().map(|e| e.to_ascii_lowercase()).collect(),
            domains: domains
                .into_iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
        });
        let jwks_url = match &request.jwks_url {
            Some(raw) => key_set_endpoint(raw, "jwks_url")?,
            None => Url::parse(preset.default_jwks_url()).expect("a valid constant"),
        };
        Ok(Policy {
            preset,
            audiences,
            leeway,
            callers,
            trusted_front: request.trusted_front,
            jwks_url,
        })
    }
}

fn entries(what: &str, values: Vec<String>) -> Result<Vec<String>> {
    if values.len() > MAX_ENTRIES {
        return Err(Error::Config(format!(
            "{what}: at most {MAX_ENTRIES} values"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().to_owned();
        if v.is_empty() || v.len() > MAX_ENTRY_LEN || v.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "{what}: each value must be 1 to {MAX_ENTRY_LEN} printable characters"
            )));
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// `/projects/NUMBER/global/backendServices/ID` or `/projects/NUMBER/apps/PROJECT_ID`
/// (<https://cloud.google.com/iap/docs/signed-headers-howto#verifying_the_jwt_payload>).
fn is_iap_audience(aud: &str) -> bool {
    let parts: Vec<&str> = aud.split('/').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        ["", "projects", n, "global", "backendServices", id] => number(n) && number(id),
        ["", "projects", n, "apps", project] => number(n) && !project.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(audiences: &[&str]) -> PolicyRequest {
        PolicyRequest {
            audiences: audiences.iter().map(|s| s.to_string()).collect(),
            ..PolicyRequest::default()
        }
    }

    #[test]
    fn a_verifier_without_an_audience_is_refused() {
        let e = Policy::new(Preset::GoogleIdToken, request(&[])).unwrap_err();
        assert!(e.to_string().contains("at least one is required"), "{e}");
    }

    #[test]
    fn iap_audiences_have_googles_shape() {
        for ok in [
            "/projects/123/global/backendServices/456",
            "/projects/123/apps/my-project",
        ] {
            assert!(Policy::new(Preset::Iap, request(&[ok])).is_ok(), "{ok}");
        }
        for bad in [
            "https://app.example.com",
            "/projects/abc/global/backendServices/456",
            "/projects/123/apps/",
        ] {
            let e = Policy::new(Preset::Iap, request(&[bad])).unwrap_err();
            assert!(e.to_string().contains("not an IAP audience"), "{e}");
        }
    }

    #[test]
    fn leeway_is_bounded_and_the_jwks_override_obeys_the_host_rule() {
        let mut r = request(&["https://svc.example"]);
        r.leeway = Some(3600.0);
        assert!(Policy::new(Preset::GoogleIdToken, r.clone()).is_err());
        r.leeway = Some(5.0);
        r.jwks_url = Some("https://keys.attacker.example/certs".into());
        assert!(Policy::new(Preset::GoogleIdToken, r.clone()).is_err());
        r.jwks_url = Some("http://127.0.0.1:1/oauth2/v3/certs".into());
        assert_eq!(
            Policy::new(Preset::GoogleIdToken, r).unwrap().leeway,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn trusted_front_is_for_cloud_run_id_tokens_only() {
        let mut r = request(&["/projects/1/apps/p"]);
        r.trusted_front = true;
        assert!(Policy::new(Preset::Iap, r).is_err());
    }
}

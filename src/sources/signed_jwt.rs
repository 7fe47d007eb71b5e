//! Service-account JWTs ([`TokenRequest::SignedJwt`]): a token a service
//! account signs itself, for IAP's programmatic access without an OAuth
//! client.
//!
//! Format (<https://cloud.google.com/iap/docs/authentication-howto#authenticate_with_a_service_account_jwt>):
//! RS256, `iss` = `sub` = the service account's email, `aud` = the resource
//! URL (a trailing `/*` wildcard allowed), `iat`, and `exp` at most one hour
//! later. Two ways to sign it:
//! - locally with the service account's key (no network; `service_account.rs`);
//! - by IAM Credentials `signJwt`
//!   (<https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signJwt>)
//!   with the Google-managed key of the impersonated account
//!   (`impersonated.rs`): `POST {iam}/v1/projects/-/serviceAccounts/{sa}:signJwt
//!   {"payload": "<claims JSON>", "delegates": [...]}` → `{"keyId", "signedJwt"}`.
//!
//! A user login or the metadata server holds no key and cannot call
//! `signJwt` as itself meaningfully, so they refuse the request and say to
//! impersonate a service account.
//!
//! Security: the JWT is a bearer credential for every URL its `aud` covers;
//! `aud` is exactly what was asked for, never widened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Lifetime of every signed JWT: IAP accepts at most one hour.
pub const LIFETIME: Duration = Duration::from_secs(3600);

/// The claims of a service-account JWT.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    /// `email`'s claims for `audience`, issued at `now`.
    pub fn new(email: &str, audience: &str, now: SystemTime) -> Self {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Claims {
            iss: email.to_owned(),
            sub: email.to_owned(),
            aud: audience.to_owned(),
            iat,
            exp: iat + LIFETIME.as_secs(),
        }
    }

    /// The claims as the JSON text IAM `signJwt` takes as `payload`.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("JWT claims: {e}")))
    }
}

/// The error of a source that cannot sign: `what` names it ("a gcloud user
/// login", "the metadata server").
pub fn cannot_sign(what: &str) -> Error {
    Error::Config(format!(
        "{what} cannot sign a service-account JWT (IAP's signed-JWT access): it holds no \
         service account key. Impersonate the service account that should sign \
         (impersonate=\"SA_EMAIL\", signed by IAM signJwt; needs \
         roles/iam.serviceAccountTokenCreator on it), or use its key file"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_name_the_account_as_issuer_and_subject_for_one_hour() {
        let c = Claims::new(
            "sa@p.iam.gserviceaccount.com",
            "https://iap.example.com/*",
            SystemTime::now(),
        );
        assert_eq!(c.iss, c.sub);
        assert_eq!(c.aud, "https://iap.example.com/*");
        assert_eq!(c.exp - c.iat, 3600);
        let json: serde_json::Value = serde_json::from_str(&c.to_json().unwrap()).unwrap();
        assert_eq!(json["iss"], "sa@p.iam.gserviceaccount.com");
    }

    #[test]
    fn a_source_without_a_key_says_to_impersonate() {
        let e = cannot_sign("the metadata server");
        assert!(matches!(e, Error::Config(_)));
        assert!(e.to_string().contains("impersonate="), "{e}");
    }
}

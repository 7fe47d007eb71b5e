//! What a caller asks for: an access token for scopes, or an ID token for an audience.
//!
//! A `TokenRequest` is validated when it is made, so nothing that no Google
//! endpoint could serve (an empty or 10 MB audience, control characters,
//! malformed scopes) ever reaches a cache slot or the network.

use crate::error::{Error, Result};
use crate::token::TokenKind;

/// Google's default scope when none is given.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Longest audience accepted: an audience is a URL or an OAuth client id.
pub const MAX_AUDIENCE: usize = 2048;
/// Longest scope list accepted, in bytes.
const MAX_SCOPES: usize = 16 * 1024;

/// A token request; also the per-credential half of the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenRequest {
    /// OAuth2 access token; scopes are kept sorted and de-duplicated.
    Access { scopes: Vec<String> },
    /// OIDC ID token whose `aud` claim is `audience`.
    Id { audience: String },
    /// A JWT the service account signs itself (`iss` = `sub` = its email,
    /// `aud` = `audience`, one hour): IAP's programmatic access without an
    /// OAuth client (<https://cloud.google.com/iap/docs/authentication-howto#authenticate_with_a_service_account_jwt>).
    /// Signed locally with a key, or by IAM `signJwt` through impersonation.
    SignedJwt { audience: String },
}

impl TokenRequest {
    /// An access-token request; empty scopes mean cloud-platform. Scopes must
    /// be RFC 6749 scope tokens.
    pub fn access<I, S>(scopes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut scopes: Vec<String> = scopes
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let valid = |s: &str| {
            s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        };
        if let Some(bad) = scopes.iter().find(|s| !valid(s)) {
            let shown: String = bad.chars().take(80).collect();
            return Err(Error::Config(format!(
                "scope {shown:?} is not a valid OAuth2 scope (no spaces, quotes, backslashes or control characters)"
            )));
        }
        let total: usize = scopes.iter().map(|s| s.len() + 1).sum();
        if total > MAX_SCOPES {
            return Err(Error::Config(format!(
                "{} scopes ({total} bytes) are more than a token request can carry (at most {MAX_SCOPES} bytes)",
                scopes.len()
            )));
        }
        if scopes.is_empty() {
            scopes.push(CLOUD_PLATFORM.to_owned());
        }
        scopes.sort();
        scopes.dedup();
        Ok(TokenRequest::Access { scopes })
    }

    /// An ID-token request for `audience` (a URL or an OAuth client id).
    pub fn id(audience: impl Into<String>) -> Result<Self> {
        Ok(TokenRequest::Id {
            audience: checked_audience(audience.into())?,
        })
    }

    /// A service-account JWT for `audience` (for IAP: the resource URL, a
    /// trailing `/*` allowed).
    pub fn signed_jwt(audience: impl Into<String>) -> Result<Self> {
        Ok(TokenRequest::SignedJwt {
            audience: checked_audience(audience.into())?,
        })
    }

    pub fn kind(&self) -> TokenKind {
        match self {
            TokenRequest::Access { .. } => TokenKind::Access,
            // A signed JWT is an identity token too: a JWT whose `exp` is its expiry.
            TokenRequest::Id { .. } | TokenRequest::SignedJwt { .. } => TokenKind::Id,
        }
    }

    /// Scopes joined by spaces, as the OAuth2 `scope` parameter wants them.
    pub fn scope_param(&self) -> Option<String> {
        match self {
            TokenRequest::Access { scopes } => Some(scopes.join(" ")),
            TokenRequest::Id { .. } | TokenRequest::SignedJwt { .. } => None,
        }
    }

    /// The cloud-platform access token every IAM Credentials call is made with.
    pub fn cloud_platform() -> Self {
        TokenRequest::Access {
            scopes: vec![CLOUD_PLATFORM.to_owned()],
        }
    }
}

/// An audience any endpoint could take: non-empty, bounded, no control characters.
fn checked_audience(audience: String) -> Result<String> {
    if audience.trim().is_empty() {
        return Err(Error::Config(
            "an ID token needs an audience: set ServiceAccount(audience=...) to the URL of the \
                 receiving service (for Cloud Run, its https://… service URL)"
                .into(),
        ));
    }
    if audience.len() > MAX_AUDIENCE {
        return Err(Error::Config(format!(
                "the audience is {} bytes long; an audience is a URL or client id (at most {MAX_AUDIENCE} bytes)",
                audience.len()
            )));
    }
    if audience.chars().any(char::is_control) {
        return Err(Error::Config(
            "the audience contains control characters; an audience is a URL or client id".into(),
        ));
    }
    Ok(audience)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sorted_deduplicated_and_default_to_cloud_platform() {
        assert_eq!(
            TokenRequest::access(["b", "a", "b"]).unwrap(),
            TokenRequest::Access {
                scopes: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            TokenRequest::access(Vec::<String>::new())
                .unwrap()
                .scope_param()
                .unwrap(),
            CLOUD_PLATFORM
        );
        assert_eq!(
            TokenRequest::cloud_platform(),
            TokenRequest::access([CLOUD_PLATFORM]).unwrap()
        );
    }

    #[test]
    fn requests_no_endpoint_could_serve_are_refused_when_made() {
        for bad in [
            TokenRequest::id(""),
            TokenRequest::id("https://x.run.app\r\nX-Evil: 1"),
            TokenRequest::id("https://x.run.app/\0"),
            TokenRequest::id(format!("https://x.run.app/{}", "a".repeat(MAX_AUDIENCE))),
            TokenRequest::id("x".repeat(10 * 1024 * 1024)),
            TokenRequest::access(["a\r\nb"]),
            TokenRequest::access(["with\"quote"]),
            TokenRequest::access((0..50_000).map(|i| format!("s{i}"))),
        ] {
            let e = bad.unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{e:?}");
        }
        assert!(TokenRequest::id("https://x.run.app").is_ok());
        let e = TokenRequest::signed_jwt("https://iap.example.com/\r\n").unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
    }

    #[test]
    fn a_signed_jwt_is_an_identity_token_apart_from_an_id_token() {
        let jwt = TokenRequest::signed_jwt("https://iap.example.com/*").unwrap();
        assert_eq!(jwt.kind(), TokenKind::Id);
        assert_eq!(jwt.scope_param(), None);
        assert_ne!(jwt, TokenRequest::id("https://iap.example.com/*").unwrap());
    }
}

//! Tokens and the secret strings that carry them.
//!
//! `Secret` is the only type that holds key material or token text: its
//! `Debug`/`Display` print `***` and its bytes are zeroized on drop.

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use zeroize::Zeroize;

/// A secret string (private key, refresh token, client secret, token).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret text; callers must not log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Which kind of token: an OAuth2 access token or an OIDC ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Id,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Id => "id",
        }
    }
}

/// A token with its expiry, as wall-clock time (what Google reports).
#[derive(Debug)]
pub struct Token {
    pub value: Secret,
    pub kind: TokenKind,
    /// When the token stops being valid.
    pub expires_at: SystemTime,
    /// What a caller derived from this token once (the bindings keep ADK's
    /// result here), so it lives and dies with the cached token.
    pub derived: Derived,
}

impl Clone for Token {
    fn clone(&self) -> Self {
        Token::new(self.value.clone(), self.kind, self.expires_at)
    }
}

/// A value computed once per token by a layer above the core; empty on a
/// clone. The core never looks inside.
#[derive(Default)]
pub struct Derived(OnceLock<Box<dyn Any + Send + Sync>>);

impl Derived {
    /// The value, computing it with `make` the first time.
    pub fn get_or_init<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Option<&T> {
        self.0.get_or_init(|| Box::new(make())).downcast_ref()
    }

    /// The value, if already computed.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.get()?.downcast_ref()
    }

    /// Stores `value` unless one is there already; returns the one kept.
    pub fn set<T: Any + Send + Sync>(&self, value: T) -> Option<&T> {
        let _ = self.0.set(Box::new(value));
        self.get()
    }
}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Derived(..)"
        } else {
            "Derived(-)"
        })
    }
}

impl Token {
    pub fn new(value: Secret, kind: TokenKind, expires_at: SystemTime) -> Self {
        Token {
            value,
            kind,
            expires_at,
            derived: Derived::default(),
        }
    }

    /// Seconds since the Unix epoch at which the token expires.
    pub fn expires_at_unix(&self) -> f64 {
        self.expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Time left before expiry (zero if already expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

/// Largest JWT part decoded (an ID token is ~1 KiB).
pub const MAX_JWT_PART: usize = 64 * 1024;

/// The three parts of a compact JWS (`header.payload.signature`), base64url
/// decoded (header, payload) and as written (signature), or `None` if the
/// text is not one. Nothing is verified: this is the one JWT reader, used
/// where we are the token's bearer and by the verifier before it checks.
pub fn jwt_parts(jwt: &str) -> Option<(Vec<u8>, Vec<u8>, &str)> {
    let mut parts = jwt.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.len() > MAX_JWT_PART || payload.len() > MAX_JWT_PART {
        return None;
    }
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .ok()
    };
    Some((decode(header)?, decode(payload)?, signature))
}

/// The claims of a JWT, unverified (see [`jwt_parts`]).
pub fn jwt_claims<T: serde::de::DeserializeOwned>(jwt: &str) -> Option<T> {
    let (_, payload, _) = jwt_parts(jwt)?;
    serde_json::from_slice(&payload).ok()
}

/// Reads the `exp` claim of a JWT without verifying its signature: we are its
/// bearer, not its audience, and only need to know when to refresh it.
///
/// Returns `None` when the text is not a JWT or has no numeric `exp`.
pub fn jwt_expiry(jwt: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
    }
    let claims: Claims = jwt_claims(jwt)?;
    let exp = claims.exp?.as_f64()?;
    if !(0.0..=1e11).contains(&exp) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with(payload: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(payload))
    }

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("ya29.sentinel");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn jwt_expiry_reads_exp_claim() {
        let t = jwt_expiry(&jwt_with(r#"{"exp":1700000000,"aud":"x"}"#)).unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn jwt_expiry_rejects_non_jwts_and_bad_exp() {
        assert!(jwt_expiry("ya29.not-a-jwt").is_none());
        assert!(jwt_expiry(&jwt_with(r#"{"aud":"x"}"#)).is_none());
        assert!(jwt_expiry(&jwt_with(r#"{"exp":"soon"}"#)).is_none());
        assert!(jwt_expiry(&jwt_with(r#"{"exp":-5}"#)).is_none());
        assert!(jwt_expiry("a.b.c.d").is_none());
    }
}

//! The server side: checking that a request comes from whom it says,
//! with a token Google signed.
//!
//! Two presets ([`Preset`]):
//!
//! - **Google ID tokens** (OIDC, RS256), what Cloud Run, Cloud Functions,
//!   Pub/Sub push, Cloud Tasks and this package's own client side send:
//!   `iss` is `https://accounts.google.com` or `accounts.google.com`, keys
//!   at <https://www.googleapis.com/oauth2/v3/certs>
//!   (<https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken>,
//!   <https://cloud.google.com/run/docs/authenticating/service-to-service>).
//! - **IAP assertions** (ES256), the `x-goog-iap-jwt-assertion` header IAP
//!   adds to every request it lets through: `iss` is
//!   `https://cloud.google.com/iap`, `aud` is
//!   `/projects/NUMBER/global/backendServices/ID` or
//!   `/projects/NUMBER/apps/PROJECT_ID`, keys at
//!   <https://www.gstatic.com/iap/verify/public_key-jwk>
//!   (<https://cloud.google.com/iap/docs/signed-headers-howto>).
//!
//! A token is a JWS in compact form (RFC 7515 §7.1) carrying JWT claims
//! (RFC 7519), read by the crate's one JWT reader ([`crate::token::jwt_parts`]).
//! Checks, cheapest first, each refusal a [`Rejection`] that says why and
//! never quotes the token:
//!
//! 1. at most [`MAX_TOKEN`] bytes, three base64url parts, JSON header and claims;
//! 2. `alg` is the preset's, exactly: never `none`, never HS* (a token
//!    cannot choose how it is checked, RFC 8725 §2.1, §3.1); no `crit`
//!    (RFC 7515 §4.1.11); a `kid`. `jku`, `x5u` and `jwk` are ignored: keys
//!    come only from the configured key set;
//! 3. `iss` is the preset's; `aud` is one of the verifier's audiences;
//! 4. `exp` is in the future and `iat` / `nbf` are not, within the leeway;
//! 5. the signature, with the key `kid` names ([`keys`], [`jwks`]);
//! 6. if an allow-list is set: the caller's `email` (with `email_verified`
//!    for ID tokens) or its Workspace domain (`hd`).
//!
//! Steps 1–4 run before any key is looked up, so a forged token must carry
//! this service's audience and a valid time even to start the (rate
//! limited) refetch an unknown `kid` causes.
//!
//! **Trusted front** (off by default): Cloud Run, when a service requires
//! authentication, verifies the caller's ID token itself and forwards it
//! with its signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`
//! (<https://cloud.google.com/run/docs/troubleshooting#signature-removed>),
//! in the header it verified (`X-Serverless-Authorization` when present,
//! else `Authorization`). Such a token cannot be verified again. With
//! `trusted_front` a verifier accepts it on the strength of Cloud Run's
//! check, still checking steps 1–4 and 6, so a service can authorize per
//! tool by caller email; a token with any other signature is verified in
//! full, and refused if that fails. It is safe only where nothing but
//! Cloud Run can reach the service and Cloud Run requires authentication
//! (no `allUsers` invoker): anyone else can write that marker.
//!
//! Fast: a verdict is remembered per token digest ([`memo`]), so the
//! token a caller presents on every request is checked once; keys are
//! cached per `Cache-Control` and refreshed ahead ([`keys`]). Only a cold
//! key set (or an unknown `kid`) waits, on the core's runtime.

pub mod jwks;
pub mod keys;
pub mod memo;
pub mod policy;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value};
use tokio::runtime::Handle;

pub use self::policy::{Policy, PolicyRequest, Preset};
use crate::error::{clean_to, Error, Result};
use crate::process;
use crate::token::jwt_parts;

/// Longest token accepted (a Google ID token is about 1 KiB).
pub const MAX_TOKEN: usize = 16 * 1024;
/// The signature Cloud Run writes in a token it verified and forwards.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
/// Longest `aud` array read.
const MAX_AUDIENCES: usize = 16;

/// A signature algorithm a preset pins (RFC 7518 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// Not a compact JWS with JSON header and claims, or too large.
    Malformed(&'static str),
    /// `alg` is not the preset's.
    Algorithm {
        found: String,
        expected: Algorithm,
    },
    /// The header has a `crit` parameter (RFC 7515 §4.1.11).
    Critical,
    MissingKeyId,
    /// No key with this id in the key set, even after a refetch.
    UnknownKey {
        kid: String,
    },
    BadSignature,
    MissingClaim(&'static str),
    /// A registered claim has the wrong type (RFC 7519 §4.1).
    BadClaim(&'static str),
    WrongIssuer {
        found: String,
    },
    WrongAudience {
        found: String,
    },
    Expired {
        seconds_ago: u64,
    },
    NotYetValid {
        claim: &'static str,
        seconds_ahead: u64,
    },
    /// A valid token whose caller is not on the allow-list.
    NotAllowed {
        why: String,
    },
    /// Cloud Run removed the signature and the verifier does not trust a front.
    SignatureRemoved,
}

impl Rejection {
    /// The short code Python sees as `InvalidTokenError.reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) | Rejection::MissingClaim(_) | Rejection::BadClaim(_) => {
                "malformed"
            }
            Rejection::Algorithm { .. } | Rejection::Critical => "algorithm",
            Rejection::MissingKeyId | Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongIssuer { .. } => "wrong_issuer",
            Rejection::WrongAudience { .. } => "wrong_audience",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid { .. } => "not_yet_valid",
            Rejection::NotAllowed { .. } => "not_allowed",
            Rejection::SignatureRemoved => "signature_removed",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Malformed(what) => write!(f, "not a signed JWT: {what}"),
            Rejection::Algorithm { found, expected } => write!(
                f,
                "algorithm {found:?} is not accepted: these tokens are signed with {} only",
                expected.as_str()
            ),
            Rejection::Critical => f.write_str("the header has critical extensions (crit), which are not supported"),
            Rejection::MissingKeyId => f.write_str("the header names no signing key (kid)"),
            Rejection::UnknownKey { kid } => write!(
                f,
                "signing key {kid:?} is not among the published keys (forged, from another issuer, or long retired)"
            ),
            Rejection::BadSignature => f.write_str("the signature does not verify"),
            Rejection::MissingClaim(claim) => write!(f, "the token has no {claim} claim"),
            Rejection::BadClaim(claim) => write!(f, "the {claim} claim has the wrong type"),
            Rejection::WrongIssuer { found } => write!(f, "issuer {found:?} is not the expected one"),
            Rejection::WrongAudience { found } => write!(
                f,
                "audience {found:?} is not this service's (a token for another service, or the \
                 verifier's audience is not the URL callers use)"
            ),
            Rejection::Expired { seconds_ago } => write!(f, "expired {seconds_ago} s ago"),
            Rejection::NotYetValid {
                claim,
                seconds_ahead,
            } => write!(f, "not valid yet: {claim} is {seconds_ahead} s in the future"),
            Rejection::NotAllowed { why } => write!(f, "not allowed: {why}"),
            Rejection::SignatureRemoved => write!(
                f,
                "Cloud Run verified this token and removed its signature ({SIGNATURE_REMOVED}), \
                 so it cannot be verified here. If the service requires authentication and only \
                 Cloud Run can reach it, turn on trusted_front; otherwise the caller must send a \
                 signed token (e.g. in Authorization while Cloud Run checks X-Serverless-Authorization)"
            ),
        }
    }
}

impl From<Rejection> for Error {
    fn from(r: Rejection) -> Error {
        Error::InvalidToken {
            reason: r.code(),
            detail: r.to_string(),
        }
    }
}

/// A token that passed: its claims, and when they stop being valid.
#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    /// The signing key, when the signature was checked.
    pub kid: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: f64,
    /// The later of `iat` and `nbf`, Unix seconds.
    pub valid_from: f64,
    /// False for a token accepted through the trusted front.
    pub signature_verified: bool,
}

/// A token taken apart and checked as far as possible without keys.
struct Prepared<'t> {
    verified: Verified,
    kid: String,
    /// What the signature covers: `header.payload` as sent.
    signing_input: &'t [u8],
    signature: Vec<u8>,
}

/// The outcome of [`Verifier::verify_now`].
pub enum Now {
    Done(Result<Arc<Verified>>),
    /// Needs keys that are not cached: `verify` (async) fetches them.
    NeedsKeys,
}

/// Verifies tokens for one policy; cheap to share (`Arc`).
pub struct Verifier {
    policy: Policy,
    memo: memo::Memo,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("preset", &self.policy.preset)
            .field("audiences", &self.policy.audiences)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Verifier {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            memo: memo::Memo::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// This process's key cache for the policy's key set (looked up each
    /// time, so a forked child uses its own).
    pub fn key_cache(&self) -> Arc<keys::KeyCache> {
        keys::shared(&self.policy.jwks_url, self.policy.preset.algorithm())
    }

    /// Verdicts remembered (tests, bounds).
    pub fn remembered(&self) -> usize {
        self.memo.len()
    }

    /// Everything that needs no I/O: the answer, or [`Now::NeedsKeys`].
    /// Never waits; in the keys' refresh window it starts one background fetch.
    pub fn verify_now(&self, token: &str) -> Now {
        self.verify_now_at(token, unix_now())
    }

    /// A verdict reached before for this very token, re-checked against
    /// the clock and the key set; `None` when there is none (or its key is
    /// no longer published, or the keys are not cached).
    pub fn recall(&self, token: &str) -> Option<Result<Arc<Verified>>> {
        let token = token.trim();
        if token.len() > MAX_TOKEN {
            return None;
        }
        self.recall_at(&memo::digest(token), unix_now())
    }

    fn recall_at(&self, digest: &memo::TokenDigest, now: f64) -> Option<Result<Arc<Verified>>> {
        let known = self.memo.get(digest)?;
        let kid = known.kid.as_deref()?;
        let set = self.key_cache().peek(process::runtime_handle)?;
        if !set.contains(kid) {
            return None;
        }
        Some(self.check_time(&known, now).map(|()| known))
    }

    fn verify_now_at(&self, token: &str, now: f64) -> Now {
        let token = token.trim();
        if token.len() > MAX_TOKEN {
            return Now::Done(Err(Rejection::Malformed("larger than 16 KiB").into()));
        }
        let digest = memo::digest(token);
        if let Some(answer) = self.recall_at(&digest, now) {
            return Now::Done(answer);
        }
        let cache = self.key_cache();
        let prepared = match self.prepare(token, now) {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(front_verified)) => return Now::Done(self.admit(front_verified).map(Arc::new)),
            Err(rejection) => return Now::Done(Err(rejection.into())),
        };
        let Some(set) = cache.peek(process::runtime_handle) else {
            return Now::NeedsKeys;
        };
        match set.check(&prepared.kid, prepared.signing_input, &prepared.signature) {
            None => Now::NeedsKeys,
            Some(valid) => Now::Done(self.conclude(prepared, valid, digest, now)),
        }
    }

    /// The full verification: [`verify_now`](Self::verify_now), then, if
    /// keys are needed, the shared fetch (and for an unknown `kid` the
    /// rate-limited refetch). Runs on the core's runtime.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>> {
        if let Now::Done(answer) = self.verify_now(token) {
            return answer;
        }
        let token = token.trim();
        let now = unix_now();
        let prepared = match self.prepare(token, now) {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(front_verified)) => return self.admit(front_verified).map(Arc::new),
            Err(rejection) => return Err(rejection.into()),
        };
        let cache = self.key_cache();
        let rt = Handle::current();
        let set = cache.get(&rt).await?;
        let valid = match set.check(&prepared.kid, prepared.signing_input, &prepared.signature) {
            Some(valid) => valid,
            None => {
                let newer = cache.refetch_for_unknown_kid(&set, &rt).await?;
                newer
                    .and_then(|set| {
                        set.check(&prepared.kid, prepared.signing_input, &prepared.signature)
                    })
                    .ok_or_else(|| Rejection::UnknownKey {
                        kid: clean_to(&prepared.kid, 64),
                    })?
            }
        };
        self.conclude(prepared, valid, memo::digest(token), unix_now())
    }

    /// A verification against keys the caller holds: no key cache, no
    /// memo, no I/O (fuzzing, offline checks). An unknown `kid` is refused.
    pub fn verify_with(&self, token: &str, keys: &jwks::KeySet) -> Result<Verified> {
        let token = token.trim();
        if token.len() > MAX_TOKEN {
            return Err(Rejection::Malformed("larger than 16 KiB").into());
        }
        let prepared = match self.prepare(token, unix_now()) {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(front_verified)) => return self.admit(front_verified),
            Err(rejection) => return Err(rejection.into()),
        };
        match keys.check(&prepared.kid, prepared.signing_input, &prepared.signature) {
            None => Err(Rejection::UnknownKey {
                kid: clean_to(&prepared.kid, 64),
            }
            .into()),
            Some(false) => Err(Rejection::BadSignature.into()),
            Some(true) => {
                let mut verified = prepared.verified;
                verified.kid = Some(prepared.kid);
                verified.signature_verified = true;
                self.admit(verified)
            }
        }
    }

    fn conclude(
        &self,
        prepared: Prepared<'_>,
        valid: bool,
        digest: memo::TokenDigest,
        now: f64,
    ) -> Result<Arc<Verified>> {
        if !valid {
            return Err(Rejection::BadSignature.into());
        }
        let mut verified = prepared.verified;
        verified.kid = Some(prepared.kid);
        verified.signature_verified = true;
        let verified = Arc::new(self.admit(verified)?);
        self.memo.insert(digest, Arc::clone(&verified), now);
        Ok(verified)
    }

    /// Steps 1–4 of the module docs. `Ok(Err(v))` is a token accepted
    /// through the trusted front (no signature to check).
    #[allow(clippy::type_complexity)]
    fn prepare<'t>(
        &self,
        token: &'t str,
        now: f64,
    ) -> std::result::Result<std::result::Result<Prepared<'t>, Verified>, Rejection> {
        let (header, payload, signature) =
            jwt_parts(token).ok_or(Rejection::Malformed("expected three base64url parts"))?;
        let header: Map<String, Value> = serde_json::from_slice(&header)
            .map_err(|_| Rejection::Malformed("the header is not a JSON object"))?;
        let expected = self.policy.preset.algorithm();
        match header.get("alg") {
            Some(Value::String(alg)) if alg == expected.as_str() => {}
            other => {
                return Err(Rejection::Algorithm {
                    found: match other {
                        Some(Value::String(s)) => clean_to(s, 20),
                        Some(_) => "(not a string)".into(),
                        None => "(none given)".into(),
                    },
                    expected,
                })
            }
        }
        if header.contains_key("crit") {
            return Err(Rejection::Critical);
        }
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| Rejection::Malformed("the claims are not a JSON object"))?;
        let verified = self.check_claims(claims, now)?;
        if signature == SIGNATURE_REMOVED {
            return if self.policy.trusted_front {
                Ok(Err(verified))
            } else {
                Err(Rejection::SignatureRemoved)
            };
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= jwks::MAX_KID => {
                kid.clone()
            }
            _ => return Err(Rejection::MissingKeyId),
        };
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .ok()
            .filter(|s| (1..=1024).contains(&s.len()))
            .ok_or(Rejection::Malformed("the signature is not base64url"))?;
        // jwt_parts found exactly two dots: the input ends at the last one.
        let signing_input = &token.as_bytes()[..token.rfind('.').unwrap_or(0)];
        Ok(Ok(Prepared {
            verified,
            kid,
            signing_input,
            signature,
        }))
    }

    /// `iss`, `aud`, `exp`/`iat`/`nbf` (RFC 7519 §4.1).
    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: f64,
    ) -> std::result::Result<Verified, Rejection> {
        let issuers = self.policy.preset.issuers();
        match claims.get("iss") {
            Some(Value::String(iss)) if issuers.contains(&iss.as_str()) => {}
            Some(Value::String(iss)) => {
                return Err(Rejection::WrongIssuer {
                    found: clean_to(iss, 100),
                })
            }
            Some(_) => return Err(Rejection::BadClaim("iss")),
            None => return Err(Rejection::MissingClaim("iss")),
        }
        let accepted = |a: &str| self.policy.audiences.iter().any(|want| want == a);
        match claims.get("aud") {
            Some(Value::String(aud)) if accepted(aud) => {}
            Some(Value::String(aud)) => {
                return Err(Rejection::WrongAudience {
                    found: clean_to(aud, 100),
                })
            }
            Some(Value::Array(auds)) if auds.len() <= MAX_AUDIENCES => {
                let strings: Option<Vec<&str>> = auds.iter().map(Value::as_str).collect();
                let strings = strings.ok_or(Rejection::BadClaim("aud"))?;
                if !strings.iter().any(|a| accepted(a)) {
                    return Err(Rejection::WrongAudience {
                        found: clean_to(&strings.join(", "), 100),
                    });
                }
            }
            Some(_) => return Err(Rejection::BadClaim("aud")),
            None => return Err(Rejection::MissingClaim("aud")),
        }
        let time = |name: &'static str| -> std::result::Result<Option<f64>, Rejection> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|t| t.is_finite() && (0.0..=1e11).contains(t))
                    .map(Some)
                    .ok_or(Rejection::BadClaim(name)),
            }
        };
        let exp = time("exp")?.ok_or(Rejection::MissingClaim("exp"))?;
        let iat = time("iat")?.ok_or(Rejection::MissingClaim("iat"))?;
        let nbf = time("nbf")?;
        let verified = Verified {
            expires_at: exp,
            valid_from: nbf.map_or(iat, |nbf| nbf.max(iat)),
            claims,
            kid: None,
            signature_verified: false,
        };
        self.check_time(&verified, now)
            .map_err(|_| self.time_rejection(&verified, iat, nbf, now))?;
        Ok(verified)
    }

    fn check_time(&self, v: &Verified, now: f64) -> Result<()> {
        let leeway = self.policy.leeway.as_secs_f64();
        if now > v.expires_at + leeway {
            return Err(Rejection::Expired {
                seconds_ago: (now - v.expires_at) as u64,
            }
            .into());
        }
        if v.valid_from > now + leeway {
            return Err(Rejection::NotYetValid {
                claim: "iat/nbf",
                seconds_ahead: (v.valid_from - now) as u64,
            }
            .into());
        }
        Ok(())
    }

    fn time_rejection(&self, v: &Verified, iat: f64, nbf: Option<f64>, now: f64) -> Rejection {
        let leeway = self.policy.leeway.as_secs_f64();
        if now > v.expires_at + leeway {
            return Rejection::Expired {
                seconds_ago: (now - v.expires_at) as u64,
            };
        }
        let (claim, at) = match nbf {
            Some(nbf) if nbf > now + leeway => ("nbf", nbf),
            _ => ("iat", iat),
        };
        Rejection::NotYetValid {
            claim,
            seconds_ahead: (at - now).max(0.0) as u64,
        }
    }

    /// Step 6: the allow-list, on a token already known to be valid.
    fn admit(&self, verified: Verified) -> Result<Verified> {
        let Some(callers) = &self.policy.callers else {
            return Ok(verified);
        };
        let claims = &verified.claims;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(b)) => *b,
            // Some Google tokens spelled it as a string.
            Some(Value::String(s)) => s == "true",
            _ => false,
        };
        let trusted_email =
            email.filter(|_| email_verified || !self.policy.preset.needs_email_verified());
        let domain = claims
            .get("hd")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let by_email = trusted_email
            .as_deref()
            .is_some_and(|e| callers.emails.contains(e));
        let by_domain = domain
            .as_deref()
            .is_some_and(|d| callers.domains.contains(d));
        if by_email || by_domain {
            return Ok(verified);
        }
        let shown = |s: &str| clean_to(s, 100);
        let why = match (claims.get("email").and_then(Value::as_str), &trusted_email) {
            (None, _) => "the token carries no email (the caller must ask for one: \
                          generateIdToken includeEmail, or the metadata server's format=full)"
                .to_owned(),
            (Some(e), None) => format!("the email {:?} is not verified", shown(e)),
            (Some(e), Some(_)) => match &domain {
                Some(d) => format!(
                    "caller {:?} (domain {:?}) is not on the allow-list",
                    shown(e),
                    shown(d)
                ),
                None => format!("caller {:?} is not on the allow-list", shown(e)),
            },
        };
        Err(Rejection::NotAllowed { why }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, Server, PKCS8_PEM};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const EC_PEM: &str = include_str!("../../tests/data/test_ec_p256.pem");
    const JWKS: &str = include_str!("../../tests/data/test_keys.jwks.json");
    const AUD: &str = "https://svc-xyz.a.run.app";

    fn sign_rs(claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(PKCS8_PEM.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn sign_es(claims: &Value) -> String {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("test-ec".into());
        encode(
            &header,
            claims,
            &EncodingKey::from_ec_pem(EC_PEM.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn claims(extra: Value) -> Value {
        let now = unix_now() as u64;
        let mut c = json!({
            "iss": "https://accounts.google.com", "aud": AUD, "sub": "1234",
            "email": "caller@proj.iam.gserviceaccount.com", "email_verified": true,
            "iat": now, "exp": now + 3600,
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    async fn keys_server() -> Server {
        Server::start(|_, _| Answer::json(200, JWKS).with_header("Cache-Control", "max-age=3600"))
            .await
    }

    fn verifier(
        server: &Server,
        preset: Preset,
        tweak: impl FnOnce(&mut PolicyRequest),
    ) -> Verifier {
        let mut request = PolicyRequest {
            audiences: vec![AUD.into()],
            jwks_url: Some(format!("{}/certs", server.base)),
            ..PolicyRequest::default()
        };
        if preset == Preset::Iap {
            request.audiences = vec!["/projects/123/global/backendServices/456".into()];
        }
        tweak(&mut request);
        Verifier::new(Policy::new(preset, request).unwrap())
    }

    async fn reason(v: &Verifier, token: &str) -> &'static str {
        v.verify(token)
            .await
            .unwrap_err()
            .rejection()
            .expect("an InvalidToken")
    }

    #[tokio::test]
    async fn a_google_signed_id_token_for_this_service_passes_once_checked() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        let token = sign_rs(&claims(json!({})), Some("test-rsa"));
        assert!(matches!(v.verify_now(&token), Now::NeedsKeys));
        let verified = v.verify(&token).await.unwrap();
        assert_eq!(
            verified.claims["email"],
            "caller@proj.iam.gserviceaccount.com"
        );
        assert!(verified.signature_verified);
        // Warm: answered without waiting, from the memo.
        assert!(matches!(v.verify_now(&token), Now::Done(Ok(_))));
        assert_eq!(v.remembered(), 1);
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn each_wrong_claim_is_refused_with_its_reason() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        let now = unix_now() as u64;
        for (extra, want) in [
            (json!({"exp": now - 60}), "expired"),
            (
                json!({"iat": now + 600, "exp": now + 4000}),
                "not_yet_valid",
            ),
            (json!({"nbf": now + 600}), "not_yet_valid"),
            (json!({"aud": "https://other.a.run.app"}), "wrong_audience"),
            (json!({"aud": ["https://a", "https://b"]}), "wrong_audience"),
            (json!({"iss": "https://evil.example"}), "wrong_issuer"),
            (json!({"exp": "tomorrow"}), "malformed"),
        ] {
            let token = sign_rs(&claims(extra.clone()), Some("test-rsa"));
            assert_eq!(reason(&v, &token).await, want, "{extra}");
        }
        // Within the leeway (10 s) a just-expired token still passes.
        let token = sign_rs(&claims(json!({"exp": now - 3})), Some("test-rsa"));
        assert!(v.verify(&token).await.is_ok());
        // None of them needed more than the first key fetch.
        assert!(server.seen().len() <= 1);
    }

    #[tokio::test]
    async fn alg_none_hs256_and_foreign_algorithms_never_pass() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        let body = b64(&claims(json!({})));
        let none = format!(
            "{}.{body}.",
            b64(&json!({"alg": "none", "kid": "test-rsa"}))
        );
        assert_eq!(reason(&v, &none).await, "algorithm");
        // HS256 keyed with the public key's own JWK text: the classic confusion.
        let hs = encode(
            &{
                let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("test-rsa".into());
                h
            },
            &claims(json!({})),
            &EncodingKey::from_secret(JWKS.as_bytes()),
        )
        .unwrap();
        assert_eq!(reason(&v, &hs).await, "algorithm");
        let es = sign_es(&claims(json!({})));
        assert_eq!(reason(&v, &es).await, "algorithm");
        let crit = format!(
            "{}.{body}.c2ln",
            b64(&json!({"alg": "RS256", "kid": "test-rsa", "crit": ["exp"]}))
        );
        assert_eq!(reason(&v, &crit).await, "algorithm");
    }

    #[tokio::test]
    async fn a_tampered_token_fails_its_signature() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        let token = sign_rs(&claims(json!({})), Some("test-rsa"));
        let (head, rest) = token.split_once('.').unwrap();
        let sig = rest.rsplit('.').next().unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            b64(&claims(json!({"email": "admin@corp.example"})))
        );
        assert_eq!(reason(&v, &forged).await, "bad_signature");
        let no_kid = sign_rs(&claims(json!({})), None);
        assert_eq!(reason(&v, &no_kid).await, "unknown_key");
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_then_is_refused() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        v.verify(&sign_rs(&claims(json!({})), Some("test-rsa")))
            .await
            .unwrap();
        for i in 0..10 {
            let forged = sign_rs(&claims(json!({})), Some(&format!("forged-{i}")));
            assert_eq!(reason(&v, &forged).await, "unknown_key");
        }
        assert_eq!(server.seen().len(), 2, "one refetch for ten forged kids");
    }

    #[tokio::test]
    async fn garbage_and_oversized_tokens_are_malformed_without_a_fetch() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |_| {});
        let huge = format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
        for junk in [
            "",
            "ya29.access-token",
            "a.b.c",
            "...",
            &huge,
            "\u{0}.\u{1}.\u{2}",
        ] {
            assert_eq!(reason(&v, junk).await, "malformed", "{junk:.20}");
        }
        // `{}.{}.`: JSON, but it names no algorithm.
        assert_eq!(reason(&v, "e30.e30.").await, "algorithm");
        assert!(server.seen().is_empty());
    }

    #[tokio::test]
    async fn the_allow_list_admits_listed_emails_and_domains_only() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |r| {
            r.emails = vec!["Caller@proj.iam.gserviceaccount.com".into()];
            r.domains = vec!["corp.example".into()];
        });
        let ok = sign_rs(&claims(json!({})), Some("test-rsa"));
        assert!(v.verify(&ok).await.is_ok());
        let user = sign_rs(
            &claims(json!({"email": "ann@corp.example", "hd": "corp.example"})),
            Some("test-rsa"),
        );
        assert!(v.verify(&user).await.is_ok());
        for extra in [
            json!({"email": "other@proj.iam.gserviceaccount.com"}),
            json!({"email_verified": false}),
            json!({"email": "bob@corp.example"}), // the suffix is not `hd`
        ] {
            let token = sign_rs(&claims(extra.clone()), Some("test-rsa"));
            let e = v.verify(&token).await.unwrap_err();
            assert_eq!(e.rejection(), Some("not_allowed"), "{extra}");
        }
        let mut no_email = claims(json!({}));
        no_email.as_object_mut().unwrap().remove("email");
        let e = v
            .verify(&sign_rs(&no_email, Some("test-rsa")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("includeEmail"), "{e}");
    }

    #[tokio::test]
    async fn a_stripped_token_passes_only_behind_a_trusted_front() {
        let server = keys_server().await;
        let token = sign_rs(&claims(json!({})), Some("test-rsa"));
        let stripped = format!("{}.{SIGNATURE_REMOVED}", token.rsplit_once('.').unwrap().0);
        let plain = verifier(&server, Preset::GoogleIdToken, |_| {});
        assert_eq!(reason(&plain, &stripped).await, "signature_removed");
        let front = verifier(&server, Preset::GoogleIdToken, |r| r.trusted_front = true);
        let v = front.verify(&stripped).await.unwrap();
        assert!(!v.signature_verified);
        // Its claims are still checked...
        let other = sign_rs(&claims(json!({"aud": "https://other"})), Some("test-rsa"));
        let other = format!("{}.{SIGNATURE_REMOVED}", other.rsplit_once('.').unwrap().0);
        assert_eq!(reason(&front, &other).await, "wrong_audience");
        // ...and a real signature that fails is refused, front or not.
        let forged = format!("{}.AAAA", token.rsplit_once('.').unwrap().0);
        assert_eq!(reason(&front, &forged).await, "bad_signature");
    }

    #[tokio::test]
    async fn an_iap_assertion_is_checked_with_es256_and_iaps_issuer() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::Iap, |r| {
            r.emails = vec!["ann@corp.example".into()]
        });
        let iap = |extra: Value| {
            let now = unix_now() as u64;
            let mut c = json!({
                "iss": "https://cloud.google.com/iap",
                "aud": "/projects/123/global/backendServices/456",
                "sub": "accounts.google.com:42", "email": "ann@corp.example",
                "iat": now, "exp": now + 600,
            });
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            sign_es(&c)
        };
        // No email_verified in IAP's assertions: IAP authenticated the user.
        let verified = v.verify(&iap(json!({}))).await.unwrap();
        assert_eq!(verified.claims["sub"], "accounts.google.com:42");
        assert_eq!(
            reason(&v, &iap(json!({"iss": "https://accounts.google.com"}))).await,
            "wrong_issuer"
        );
        assert_eq!(
            reason(&v, &sign_rs(&claims(json!({})), Some("test-rsa"))).await,
            "algorithm"
        );
    }

    #[tokio::test]
    async fn no_refusal_quotes_the_token() {
        let server = keys_server().await;
        let v = verifier(&server, Preset::GoogleIdToken, |r| {
            r.emails = vec!["x@y.z".into()]
        });
        let now = unix_now() as u64;
        for extra in [
            json!({}),
            json!({"exp": now - 600}),
            json!({"aud": "https://x"}),
        ] {
            let token = sign_rs(&claims(extra), Some("test-rsa"));
            let text = v.verify(&token).await.unwrap_err().to_string();
            for part in token.split('.') {
                assert!(!text.contains(part), "{text}");
            }
        }
    }
}

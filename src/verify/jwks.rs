//! A JSON Web Key Set (RFC 7517 §5) read into keys ready to check
//! signatures (RFC 7518 §3.3 RS256, §3.4 ES256).
//!
//! Google publishes its ID token keys at
//! <https://www.googleapis.com/oauth2/v3/certs> (RSA, `alg: RS256`) and
//! IAP its assertion keys at <https://www.gstatic.com/iap/verify/public_key-jwk>
//! (EC P-256, `alg: ES256`). A set is read for one algorithm: a key of
//! another type or algorithm is skipped, never used, so no token can choose
//! how it is checked (the `alg` confusion of RFC 8725 §2.1).
//!
//! Bounded: at most [`MAX_KEYS`] keys, key ids of at most [`MAX_KID`] bytes,
//! RSA moduli of 2048 to 8192 bits (what ring accepts for RS256).
//!
//! Signatures are checked with ring (already in the tree through rustls):
//! about 22 µs for RS256-2048 here, against about 300 µs through
//! jsonwebtoken's pure-Rust RSA backend.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use super::Algorithm;

/// Keys kept from one set; Google serves two or three.
pub const MAX_KEYS: usize = 64;
/// Longest key id accepted (Google's are 40 hex digits).
pub const MAX_KID: usize = 256;

/// A public key for one algorithm.
enum PublicKey {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// An uncompressed SEC1 point (`04 || x || y`).
    P256(UnparsedPublicKey<Vec<u8>>),
}

struct Key {
    kid: String,
    key: PublicKey,
}

/// The usable keys of one JWKS, for one algorithm.
pub struct KeySet {
    algorithm: Algorithm,
    keys: Vec<Key>,
    /// Keys present but not usable for `algorithm` (logged once, when read).
    pub skipped: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("algorithm", &self.algorithm)
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

impl KeySet {
    /// Reads a JWKS document, keeping the keys usable for `algorithm`.
    /// Errs (with a short reason) when the document is not a JWKS or holds
    /// no usable key.
    pub fn parse(body: &[u8], algorithm: Algorithm) -> Result<KeySet, String> {
        let doc: Document =
            serde_json::from_slice(body).map_err(|_| "not a JWK set (RFC 7517 §5)".to_owned())?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for value in doc.keys {
            match serde_json::from_value::<Jwk>(value)
                .ok()
                .and_then(|jwk| read_key(jwk, algorithm))
            {
                Some(key) if keys.len() < MAX_KEYS => keys.push(key),
                _ => skipped += 1,
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "no usable {} key among {skipped} (each needs a kid, and kty/alg/crv for {})",
                algorithm.as_str(),
                algorithm.as_str()
            ));
        }
        Ok(KeySet {
            algorithm,
            keys,
            skipped,
        })
    }

    /// Whether a key with this id is in the set.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The key ids, in the order served.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Checks `signature` (decoded) over `message` with key `kid`:
    /// `None` if the set has no such key.
    pub fn check(&self, kid: &str, message: &[u8], signature: &[u8]) -> Option<bool> {
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        Some(match &key.key {
            PublicKey::Rsa(rsa) => rsa
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            // JWS ES256 signatures are r || s, 64 bytes (RFC 7518 §3.4): ring's FIXED form.
            PublicKey::P256(ec) => ec.verify(message, signature).is_ok(),
        })
    }
}

fn read_key(jwk: Jwk, algorithm: Algorithm) -> Option<Key> {
    let kid = jwk.kid.filter(|k| !k.is_empty() && k.len() <= MAX_KID)?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    // A key that names its algorithm must name ours; one that does not is
    // used only with the algorithm its type implies.
    if jwk.alg.as_deref().is_some_and(|a| a != algorithm.as_str()) {
        return None;
    }
    let key = match algorithm {
        Algorithm::Rs256 => {
            if jwk.kty != "RSA" {
                return None;
            }
            let mut n = b64(jwk.n.as_deref()?)?;
            let e = b64(jwk.e.as_deref()?)?;
            // Leading zero octets are not part of the modulus (RFC 7518 §6.3.1.1
            // forbids them, but some encoders add one); ring wants them gone.
            let zeros = n.iter().take_while(|b| **b == 0).count();
            n.drain(..zeros);
            let bits = n.len() * 8;
            if !(2048..=8192).contains(&bits) || e.is_empty() || e.len() > 8 {
                return None;
            }
            PublicKey::Rsa(RsaPublicKeyComponents { n, e })
        }
        Algorithm::Es256 => {
            if jwk.kty != "EC" || jwk.crv.as_deref() != Some("P-256") {
                return None;
            }
            let (x, y) = (b64(jwk.x.as_deref()?)?, b64(jwk.y.as_deref()?)?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                point,
            ))
        }
    };
    Some(Key { kid, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_another_type_or_algorithm_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"h","k":"c2VjcmV0","alg":"HS256"},
            {"kty":"RSA","kid":"r","alg":"RS512","n":"AQAB","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
            {"kty":"EC","kid":"e","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        ]}"#;
        let set = KeySet::parse(doc, Algorithm::Es256).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["e"]);
        assert_eq!(set.skipped, 3);
        let e = KeySet::parse(doc, Algorithm::Rs256).unwrap_err();
        assert!(e.contains("no usable RS256 key"), "{e}");
    }

    #[test]
    fn a_short_rsa_modulus_is_not_a_key() {
        let n = "AQAB".repeat(10); // 240 bits
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","kid":"k","n":"{n}","e":"AQAB"}}]}}"#);
        assert!(KeySet::parse(doc.as_bytes(), Algorithm::Rs256).is_err());
    }

    #[test]
    fn junk_is_not_a_key_set() {
        for junk in [&b"<html>"[..], b"{}", b"{\"keys\":3}", b"[]", b""] {
            assert!(KeySet::parse(junk, Algorithm::Rs256).is_err());
        }
    }
}

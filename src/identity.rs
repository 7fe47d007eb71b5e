//! Who speaks and who pays: the identity of a credential, the half of every
//! cache key that says whose token it is.
//!
//! An identity is a keyed digest (HMAC-SHA256 under a random per-process
//! key) of *everything* that decides which principal a source speaks as and
//! which project pays: for a service account key, the SHA-256 fingerprint of
//! its private key with the email, `token_uri` and quota project; for a
//! gcloud user login, the client id, client secret and refresh token; for
//! impersonation, the whole chain. Two keys for one email are two identities
//! (an email and a key id are public: they are in every ID token and in
//! Google's published certificates, so they cannot be what decides).
//!
//! The digest never leaves the process in full and is keyed, so nothing
//! printed (a `repr`, a log line) lets anyone test a guessed secret offline.
//! What is printed is the [`Identity::label`]: the principal and endpoint, no
//! secret, plus the first 8 hex digits of the digest to tell two keys apart.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The identity of a credential source; equal iff the digest is.
#[derive(Clone)]
pub struct Identity {
    digest: [u8; 32],
    label: Arc<str>,
}

impl Identity {
    /// Starts an identity of the given kind (`"service_account"`, …).
    pub fn builder(kind: &str) -> IdentityBuilder {
        let mut mac = Hmac::<Sha256>::new_from_slice(process_key()).expect("HMAC takes any key");
        mac.update(b"adk-token-exchange identity v1\0");
        let mut b = IdentityBuilder { mac };
        b.part(kind.as_bytes());
        b
    }

    /// A short, non-secret name: principal and endpoint plus `#` and 8 hex digits.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The keyed digest (for nesting one identity in another).
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Identity {}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.label)
    }
}

/// Feeds the parts of an identity; each part is length-prefixed, so no two
/// different sequences of parts can produce the same input.
pub struct IdentityBuilder {
    mac: Hmac<Sha256>,
}

impl IdentityBuilder {
    /// Adds one part (a field's bytes, or a fingerprint).
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.mac.update(&(bytes.len() as u64).to_be_bytes());
        self.mac.update(bytes);
        self
    }

    /// Adds an optional part; `None` and `Some("")` differ.
    pub fn optional(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => self.part(b"\0none"),
            Some(v) => self.part(b"\0some").part(v.as_bytes()),
        }
    }

    /// Adds the SHA-256 of a secret (so the MAC never sees it raw twice).
    pub fn fingerprint(&mut self, secret: &[u8]) -> &mut Self {
        let fp: [u8; 32] = Sha256::digest(secret).into();
        self.part(&fp)
    }

    /// Adds another identity (impersonation's source, say).
    pub fn nested(&mut self, inner: &Identity) -> &mut Self {
        self.part(&inner.digest)
    }

    /// The identity, printed as `label#xxxxxxxx`.
    pub fn finish(&mut self, label: impl fmt::Display) -> Identity {
        let digest: [u8; 32] = self.mac.clone().finalize().into_bytes().into();
        let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Identity {
            digest,
            label: Arc::from(format!("{label}#{short}")),
        }
    }
}

/// 32 random bytes drawn once per process (a forked child keeps its
/// parent's: identities stay comparable, and nothing crosses processes).
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).expect("the OS random number generator is unavailable");
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(email: &str, key: &[u8]) -> Identity {
        Identity::builder("service_account")
            .part(email.as_bytes())
            .fingerprint(key)
            .finish(format_args!("sa:{email}"))
    }

    #[test]
    fn the_same_material_is_the_same_identity() {
        assert_eq!(sa("a@p", b"key-1"), sa("a@p", b"key-1"));
    }

    #[test]
    fn two_keys_for_one_email_are_two_identities() {
        assert_ne!(sa("a@p", b"key-1"), sa("a@p", b"key-2"));
    }

    #[test]
    fn parts_are_length_prefixed_so_boundaries_matter() {
        let ab_c = Identity::builder("k").part(b"ab").part(b"c").finish("x");
        let a_bc = Identity::builder("k").part(b"a").part(b"bc").finish("x");
        assert_ne!(ab_c, a_bc);
        let none = Identity::builder("k").optional(None).finish("x");
        let empty = Identity::builder("k").optional(Some("")).finish("x");
        assert_ne!(none, empty);
    }

    #[test]
    fn the_label_names_the_principal_and_never_the_material() {
        let id = sa("a@p", b"SECRET-KEY-MATERIAL");
        assert!(id.label().starts_with("sa:a@p#"), "{id}");
        assert_eq!(id.label().len(), "sa:a@p#".len() + 8);
        assert!(!format!("{id} {id:?}").contains("SECRET"));
    }
}

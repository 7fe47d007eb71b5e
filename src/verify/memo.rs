//! Verdicts already reached, per verifier: a caller presents the same ID
//! token on every request until it nears expiry (ADK hands out one token
//! per hour and audience), so its signature need not be checked again.
//!
//! Keyed by the SHA-256 digest of the token text: the token itself is
//! never stored. Only a token that passed every check (signature included)
//! is remembered, so a forger cannot fill this; a hit is re-checked
//! against the clock and against the key set (its key must still be
//! published), by the verifier.
//!
//! Bounded to [`MAX_VERDICTS`]; making room drops expired verdicts first,
//! then an arbitrary quarter (a dropped one only costs a signature check).
//! Reached only through `try_lock`: a verifier never waits for it, and a
//! lock inherited held across `fork()` only turns the memo off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, TryLockError};

use sha2::{Digest, Sha256};

use super::Verified;

/// Verdicts remembered per verifier.
pub const MAX_VERDICTS: usize = 4096;

pub type TokenDigest = [u8; 32];

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Default)]
pub struct Memo {
    map: Mutex<HashMap<TokenDigest, Arc<Verified>>>,
}

impl Memo {
    fn try_map(&self) -> Option<std::sync::MutexGuard<'_, HashMap<TokenDigest, Arc<Verified>>>> {
        match self.map.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<Verified>> {
        self.try_map()?.get(digest).cloned()
    }

    /// Remembers `verified`; `now` (Unix seconds) decides what has expired.
    pub fn insert(&self, digest: TokenDigest, verified: Arc<Verified>, now: f64) {
        let Some(mut map) = self.try_map() else {
            return;
        };
        if map.len() >= MAX_VERDICTS {
            map.retain(|_, v| v.expires_at > now);
        }
        if map.len() >= MAX_VERDICTS {
            let drop: Vec<TokenDigest> = map.keys().take(MAX_VERDICTS / 4).copied().collect();
            for d in drop {
                map.remove(&d);
            }
        }
        map.insert(digest, verified);
    }

    pub fn len(&self) -> usize {
        self.try_map().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! `verify::jwks::KeySet::parse`: a JWK set from the network (Google's, or
//! whatever answers at the configured URL). Oracle: no panic; a set read is
//! non-empty and within its bounds; checking a signature with any of its
//! keys never panics.
#![no_main]

use _native::verify::jwks::{KeySet, MAX_KEYS, MAX_KID};
use _native::verify::Algorithm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for algorithm in [Algorithm::Rs256, Algorithm::Es256] {
        let Ok(set) = KeySet::parse(data, algorithm) else {
            continue;
        };
        let kids: Vec<&str> = set.kids().collect();
        assert!(!kids.is_empty() && kids.len() <= MAX_KEYS);
        for kid in kids {
            assert!(!kid.is_empty() && kid.len() <= MAX_KID);
            assert_eq!(set.check(kid, b"message", &[0u8; 64]), Some(false));
        }
    }
});

//! `token::jwt_expiry`: the `exp` of an ID token we are handed (never verified:
//! we are its bearer, not its audience).
//!
//! Half the inputs are used raw; the other half become the payload of a
//! well-formed `header.payload.signature` so the fuzzer reaches the JSON and
//! number handling. Oracle: no panic; an expiry, when found, is within the
//! range the function promises (0 ..= 1e11 s after the epoch).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use _native::token::jwt_expiry;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let jwt = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2ln",
            b64.encode(br#"{"alg":"RS256"}"#),
            b64.encode(rest)
        )
    };
    if let Some(t) = jwt_expiry(&jwt) {
        let secs = t.duration_since(UNIX_EPOCH).expect("after the epoch");
        assert!(secs <= Duration::from_secs(100_000_000_000), "{secs:?}");
    }
});

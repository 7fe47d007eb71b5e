//! `http::google_error`: Google's error fields from any 4xx/5xx body (OAuth2
//! `{"error","error_description"}` or AIP-193 `{"error":{"status","message"}}`).
//! These strings reach exception messages, so they must be one printable line
//! of bounded length. Oracle: no panic, each field ≤ 500 chars, no control chars.
#![no_main]

use _native::error::google_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (error, description) = google_error(data);
    for field in [error, description].into_iter().flatten() {
        assert!(
            field.chars().count() <= 500,
            "{} chars",
            field.chars().count()
        );
        assert!(!field.chars().any(char::is_control), "{field:?}");
    }
});

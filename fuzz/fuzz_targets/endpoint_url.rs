//! `http::secure_endpoint`: `token_uri` and impersonation URLs from credential
//! files. Oracle: no panic; whatever is accepted is https, or http to a
//! loopback host.
#![no_main]

use _native::http::{is_loopback, secure_endpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = secure_endpoint(raw, "fuzz") {
        match url.scheme() {
            "https" => {}
            "http" => assert!(
                is_loopback(&url),
                "plain http to a non-loopback host accepted: {url}"
            ),
            other => panic!("scheme {other} accepted: {url}"),
        }
    }
});

//! Credential JSON (service_account, authorized_user, impersonated_service_account)
//! through `adc::from_json`, the parser behind `GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's ADC file and `service_account_credential`.
//!
//! Oracle: no panic; an error names its origin; and an error never quotes a
//! secret field's value. The last is checked differentially: the same
//! document with every secret field's value altered must not change whether
//! the message contains the original value (a secret that happens to equal
//! fixed message text, or was copied into a non-secret field, is not a leak).
#![no_main]

use _native::adc;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET_FIELDS: [&str; 3] = ["private_key", "refresh_token", "client_secret"];

/// Each ASCII letter or digit moved one place on (z → a), everything else kept.
fn shifted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            'a'..='y' | 'A'..='Y' | '0'..='8' => (c as u8 + 1) as char,
            c => c,
        })
        .collect()
}

/// Alters every secret field's string value in place; returns the originals.
fn alter_secrets(v: &mut Value, originals: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if SECRET_FIELDS.contains(&k.as_str()) => {
                        if s.len() >= 12 && !s.contains("PRIVATE KEY") {
                            originals.push(s.clone());
                            *s = shifted(s);
                        }
                    }
                    other => alter_secrets(other, originals),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| alter_secrets(v, originals)),
        _ => {}
    }
}

fn error_text(json: &str) -> Option<String> {
    adc::from_json(json, "fuzz.json", None)
        .err()
        .map(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(message) = error_text(text) else {
        return;
    };
    assert!(
        message.contains("fuzz.json"),
        "error does not name the origin: {message}"
    );
    let Ok(mut doc) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let mut secrets = Vec::new();
    alter_secrets(&mut doc, &mut secrets);
    if secrets.is_empty() {
        return;
    }
    let altered = error_text(&doc.to_string()).unwrap_or_default();
    for s in &secrets {
        assert!(
            !(message.contains(s.as_str()) && !altered.contains(s.as_str())),
            "error quotes a secret field: {message}"
        );
    }
});

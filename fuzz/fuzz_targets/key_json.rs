//! Credential JSON (service_account, authorized_user, impersonated_service_account)
//! through `adc::from_json`, the parser behind `GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's ADC file and `service_account_credential`.
//!
//! Oracle: no panic, and an error never quotes a secret field's value.
#![no_main]

use _native::adc;
use libfuzzer_sys::fuzz_target;

const SECRET_FIELDS: [&str; 3] = ["private_key", "refresh_token", "client_secret"];

/// String values of secret fields, anywhere in the document, long enough to be telling.
fn secrets(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if let (true, Some(s)) = (SECRET_FIELDS.contains(&k.as_str()), v.as_str()) {
                    if s.len() >= 12 && !s.contains("PRIVATE KEY") {
                        out.push(s.to_owned());
                    }
                }
                secrets(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secrets(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = adc::from_json(text, "fuzz.json", None) {
        let message = e.to_string();
        assert!(
            message.contains("fuzz.json"),
            "error does not name the origin: {message}"
        );
        let mut planted = Vec::new();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
            secrets(&v, &mut planted);
        }
        for s in planted {
            assert!(
                !message.contains(&s),
                "error quotes a secret field: {message}"
            );
        }
    }
});

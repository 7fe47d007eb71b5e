//! `verify::Verifier`: a token a stranger sends to a service, checked
//! against the test key set (`tests/data/test_keys.jwks.json`), for both
//! presets, with the trusted front on and off.
//!
//! The first byte picks how the rest becomes a token: raw text; the payload
//! of a well-formed RS256 header with a fuzzed signature (reaches ring);
//! the payload of a token Cloud Run stripped (reaches every claim check);
//! or three fuzzed parts base64url-encoded. Oracle: no panic, and any token
//! accepted carries one of the verifier's audiences, the preset's issuer
//! and an unexpired `exp`; one accepted with a checked signature must have
//! come from a seed (the fuzzer cannot forge RS256/ES256).
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use _native::verify::jwks::KeySet;
use _native::verify::{Algorithm, Policy, PolicyRequest, Preset, Verifier};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

const JWKS: &[u8] = include_bytes!("../../tests/data/test_keys.jwks.json");
const AUDIENCE: &str = "https://svc-xyz.a.run.app";
const IAP_AUDIENCE: &str = "/projects/123/global/backendServices/456";

struct World {
    verifiers: Vec<Verifier>,
    rsa: KeySet,
    ec: KeySet,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let policy = |preset, audience: &str, trusted_front| {
            let request = PolicyRequest {
                audiences: vec![audience.to_owned()],
                trusted_front,
                emails: if trusted_front {
                    vec!["a@b.example".into()]
                } else {
                    vec![]
                },
                ..PolicyRequest::default()
            };
            Verifier::new(Policy::new(preset, request).expect("a valid policy"))
        };
        World {
            verifiers: vec![
                policy(Preset::GoogleIdToken, AUDIENCE, false),
                policy(Preset::GoogleIdToken, AUDIENCE, true),
                policy(Preset::Iap, IAP_AUDIENCE, false),
            ],
            rsa: KeySet::parse(JWKS, Algorithm::Rs256).expect("RSA test key"),
            ec: KeySet::parse(JWKS, Algorithm::Es256).expect("EC test key"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","kid":"test-rsa"}"#);
    let token = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => {
            let (payload, sig) = rest.split_at(rest.len() / 2);
            format!("{header}.{}.{}", b64.encode(payload), b64.encode(sig))
        }
        2 => format!("{header}.{}.SIGNATURE_REMOVED_BY_GOOGLE", b64.encode(rest)),
        _ => {
            let mut parts = rest.splitn(3, |b| *b == b'.');
            let mut next = || b64.encode(parts.next().unwrap_or_default());
            format!("{}.{}.{}", next(), next(), next())
        }
    };
    let w = world();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (i, verifier) in w.verifiers.iter().enumerate() {
        let keys = if i == 2 { &w.ec } else { &w.rsa };
        let Ok(verified) = verifier.verify_with(&token, keys) else {
            continue;
        };
        let policy = verifier.policy();
        let aud = verified.claims.get("aud");
        let ours = |a: &serde_json::Value| {
            policy
                .audiences
                .iter()
                .any(|p| Some(p.as_str()) == a.as_str())
        };
        assert!(
            aud.is_some_and(|a| ours(a) || a.as_array().is_some_and(|v| v.iter().any(ours))),
            "accepted a token for another audience: {aud:?}"
        );
        let iss = verified
            .claims
            .get("iss")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        assert!(policy.preset.issuers().contains(&iss), "issuer {iss:?}");
        assert!(
            verified.expires_at + policy.leeway.as_secs_f64() >= now,
            "expired"
        );
        assert!(
            verified.signature_verified || policy.trusted_front,
            "accepted an unsigned token without a trusted front"
        );
    }
});

//! Where credentials may go: Google, or loopback.
//!
//! A credential file names the endpoints its secrets are sent to
//! (`token_uri`, `token_url`, `service_account_impersonation_url`), and so do
//! a few variables. Anyone who can edit such a file could otherwise point a
//! signed assertion, a refresh token and client secret, or a source's
//! cloud-platform access token at their own server. So every such URL is
//! checked here, when the credential is built and before any connection:
//!
//! - https only, or http to a loopback host (local emulators and brokers);
//! - no user name or password in the URL;
//! - the host must be Google's: `oauth2.googleapis.com`,
//!   `accounts.google.com`, any `*.googleapis.com` (Private Service Connect
//!   endpoints are `*.p.googleapis.com`), or, for a credential of another
//!   universe (`universe_domain`), that domain and its subdomains; loopback
//!   hosts are always allowed;
//! - a private endpoint (a proxy or a PSC endpoint under a custom DNS name)
//!   must be named explicitly in [`TRUSTED_HOSTS_VAR`]
//!   (`ADK_TOKEN_EXCHANGE_TRUSTED_HOSTS=token.corp.example,*.psc.example`).
//!
//! A refusal is a configuration error naming the field and the file, and it
//! never quotes the URL's user name or password.
//!
//! Key sets (the verifier's JWKS URLs, [`key_set_endpoint`]) follow the same
//! rule with one more Google host, `www.gstatic.com`, where IAP publishes its
//! keys. Nothing secret goes there, but whoever serves the keys decides
//! which tokens pass, so an override may name only Google, loopback (the
//! emulator) or a host trusted through the variable.

use std::net::IpAddr;

use reqwest::Url;

use crate::error::{Error, Result};

/// Google's default universe.
pub const GOOGLE_UNIVERSE: &str = "googleapis.com";
/// The opt-in for private endpoints: comma-separated hosts, `*.suffix` for subdomains.
pub const TRUSTED_HOSTS_VAR: &str = "ADK_TOKEN_EXCHANGE_TRUSTED_HOSTS";

/// Google hosts outside `googleapis.com` that receive credentials.
const GOOGLE_HOSTS: &[&str] = &["accounts.google.com"];

/// Google hosts outside `googleapis.com` that serve token signing keys:
/// IAP's (<https://cloud.google.com/iap/docs/signed-headers-howto>). Kept
/// apart from [`GOOGLE_HOSTS`]: a static-content host has no business
/// receiving credentials.
const KEY_SET_HOSTS: &[&str] = &["www.gstatic.com"];

/// True when `url`'s host is loopback: 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host_is_loopback(host)
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // Exactly `localhost`: `*.localhost` may still go to DNS.
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// Parses a URL from configuration: https, or http to a loopback host, and
/// no user name or password. `what` names the setting in errors (e.g.
/// `key.json: field \`token_uri\``). Does not check the host (see
/// [`credential_endpoint`]).
pub fn secure_endpoint(raw: &str, what: &str) -> Result<Url> {
    let refuse = |shown: &str, why: String| {
        Error::Config(format!(
            "{what}: {shown} is refused: {why}; credentials are only sent to https URLs \
             (plain http is allowed for loopback hosts only: 127.0.0.1, ::1, localhost)"
        ))
    };
    let url = Url::parse(raw.trim()).map_err(|e| {
        // The text may carry a password (user:SECRET@host:99999): never quote it.
        refuse("the URL", format!("not a valid absolute URL ({e})"))
    })?;
    let shown = format!("{:?}", endpoint_label(&url));
    if !url.username().is_empty() || url.password().is_some() {
        // Google's endpoints take no URL credentials; refusing them keeps any
        // secret written there out of identities, descriptions and logs.
        return Err(refuse(&shown, "it carries a user name or password".into()));
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(refuse(
            &shown,
            "plain http to a host that is not loopback".into(),
        )),
        other => Err(refuse(&shown, format!("scheme {other:?}"))),
    }
}

/// [`secure_endpoint`] plus the host rule: Google (of `universe_domain`),
/// loopback, or a host trusted through [`TRUSTED_HOSTS_VAR`].
pub fn credential_endpoint(raw: &str, what: &str, universe_domain: &str) -> Result<Url> {
    let url = secure_endpoint(raw, what)?;
    let host = url.host_str().unwrap_or_default();
    if host_is_loopback(host) || is_google_host(host, universe_domain) || trusted_by_variable(host)
    {
        return Ok(url);
    }
    let universe = if universe_domain.eq_ignore_ascii_case(GOOGLE_UNIVERSE) {
        String::new()
    } else {
        format!(", *.{universe_domain} (the credential's universe_domain)")
    };
    Err(Error::Config(format!(
        "{what}: host {host:?} is not a Google endpoint, so no credential is sent to it. \
         Credentials go only to Google (oauth2.googleapis.com, accounts.google.com, \
         *.googleapis.com{universe}) or to loopback. If {host:?} is your own private endpoint \
         (a proxy, a Private Service Connect name), add it to {TRUSTED_HOSTS_VAR} \
         (comma-separated, `*.example.com` for subdomains); otherwise fix the file"
    )))
}

/// A URL that publishes token signing keys (a JWKS): https (http for
/// loopback), and Google's (`*.googleapis.com`, `accounts.google.com`,
/// `www.gstatic.com`), loopback, or trusted through [`TRUSTED_HOSTS_VAR`].
pub fn key_set_endpoint(raw: &str, what: &str) -> Result<Url> {
    let url = secure_endpoint(raw, what)?;
    let host = normalize(url.host_str().unwrap_or_default());
    if KEY_SET_HOSTS.contains(&host.as_str()) {
        return Ok(url);
    }
    credential_endpoint(raw, what, GOOGLE_UNIVERSE).map_err(|_| {
        Error::Config(format!(
            "{what}: host {host:?} is not Google's, so its keys would decide which tokens pass. \
             Signing keys are read only from Google (www.googleapis.com, www.gstatic.com, \
             accounts.google.com) or loopback. For your own mirror, add the host to \
             {TRUSTED_HOSTS_VAR} (comma-separated, `*.example.com` for subdomains)"
        ))
    })
}

/// Google's own hosts for credentials, in `universe_domain`.
pub fn is_google_host(host: &str, universe_domain: &str) -> bool {
    let host = normalize(host);
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return false;
    }
    let universe = normalize(universe_domain);
    GOOGLE_HOSTS.contains(&host.as_str())
        || is_within(&host, GOOGLE_UNIVERSE)
        || (!universe.is_empty() && is_within(&host, &universe))
}

/// `host` is `domain` or one of its subdomains (on a label boundary).
fn is_within(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn trusted_by_variable(host: &str) -> bool {
    let Ok(list) = std::env::var(TRUSTED_HOSTS_VAR) else {
        return false;
    };
    let host = normalize(host);
    list.split(',').map(normalize).any(|pattern| {
        if let Some(domain) = pattern.strip_prefix("*.") {
            !domain.is_empty() && host.len() > domain.len() && is_within(&host, domain)
        } else {
            !pattern.is_empty() && pattern == host
        }
    })
}

/// `scheme://host[:port]/path` of a URL: what errors and logs name (no query,
/// no user name or password).
pub fn endpoint_label(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn googles_hosts_and_loopback_receive_credentials() {
        for ok in [
            "https://oauth2.googleapis.com/token",
            "https://accounts.google.com/o/oauth2/token",
            "https://sts.googleapis.com/v1/token",
            "https://iamcredentials.googleapis.com",
            "https://oauth2-myendpoint.p.googleapis.com/token",
            "https://OAUTH2.GOOGLEAPIS.COM./token",
            "http://127.0.0.1:8080/token",
            "http://[::1]:8080/token",
            "http://localhost/token",
        ] {
            assert!(
                credential_endpoint(ok, "f", GOOGLE_UNIVERSE).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn any_other_host_is_refused_naming_the_field_and_the_way_out() {
        for bad in [
            "https://attacker.example/token",
            "https://googleapis.com.attacker.example/token",
            "https://evilgoogleapis.com/token",
            "https://google.com/token",
            "https://accounts.google.com.evil/token",
            "https://10.0.0.1/token",
            "https://oauth2.example-universe.com/token",
        ] {
            let e = credential_endpoint(bad, "key.json: field `token_uri`", GOOGLE_UNIVERSE)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("key.json: field `token_uri`"), "{e}");
            assert!(e.contains(TRUSTED_HOSTS_VAR), "{e}");
        }
    }

    #[test]
    fn a_credentials_universe_domain_is_google_for_that_credential() {
        let other = "example-universe.com";
        assert!(
            credential_endpoint("https://oauth2.example-universe.com/token", "f", other).is_ok()
        );
        assert!(credential_endpoint("https://oauth2.googleapis.com/token", "f", other).is_ok());
        assert!(credential_endpoint("https://example-universe.com.evil/t", "f", other).is_err());
    }

    #[test]
    fn key_sets_come_from_google_gstatic_or_loopback_only() {
        for ok in [
            "https://www.googleapis.com/oauth2/v3/certs",
            "https://www.gstatic.com/iap/verify/public_key-jwk",
            "http://127.0.0.1:8080/oauth2/v3/certs",
        ] {
            assert!(key_set_endpoint(ok, "jwks_url").is_ok(), "{ok}");
        }
        for bad in [
            "https://keys.attacker.example/jwks",
            "https://www.gstatic.com.evil/jwks",
            "http://www.gstatic.com/iap/verify/public_key-jwk",
        ] {
            let e = key_set_endpoint(bad, "jwks_url").unwrap_err().to_string();
            assert!(e.starts_with("jwks_url"), "{e}");
        }
        // gstatic serves keys; it never receives a credential.
        assert!(credential_endpoint("https://www.gstatic.com/t", "f", GOOGLE_UNIVERSE).is_err());
    }

    #[test]
    fn a_malformed_url_is_refused_without_quoting_its_password() {
        let e = secure_endpoint("https://user:SECRET-PW@host:99999/token", "f")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET-PW"), "{e}");
        let e = secure_endpoint("https://user:SECRET-PW@host/token", "f")
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("SECRET-PW") && e.contains("user name or password"),
            "{e}"
        );
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(secure_endpoint("http://oauth2.googleapis.com/token", "f").is_err());
        assert!(secure_endpoint("ftp://127.0.0.1/token", "f").is_err());
        assert!(secure_endpoint("http://127.0.0.1/token", "f").is_ok());
    }

    #[test]
    fn the_trusted_hosts_variable_is_exact_or_a_subdomain_pattern() {
        let _lock = crate::testing::env_lock();
        let _env = crate::testing::EnvVars::set(&[(
            TRUSTED_HOSTS_VAR,
            Some("token.corp.example, *.psc.example"),
        )]);
        assert!(credential_endpoint("https://token.corp.example/t", "f", GOOGLE_UNIVERSE).is_ok());
        assert!(credential_endpoint("https://a.psc.example/t", "f", GOOGLE_UNIVERSE).is_ok());
        assert!(credential_endpoint("https://psc.example/t", "f", GOOGLE_UNIVERSE).is_err());
        assert!(
            credential_endpoint("https://x.token.corp.example/t", "f", GOOGLE_UNIVERSE).is_err()
        );
        // Trust does not lift the https rule.
        assert!(credential_endpoint("http://token.corp.example/t", "f", GOOGLE_UNIVERSE).is_err());
    }
}

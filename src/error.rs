//! The one error type of the core. `Display` never contains a secret: no
//! variant holds token text, a private key, a refresh token or a client
//! secret, only names of files, fields, variables and Google's error codes.

use std::time::Duration;

/// Everything that can go wrong while obtaining a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Local configuration is wrong; the message names the file/field/variable and the fix.
    #[error("{0}")]
    Config(String),

    /// Application Default Credentials found nothing.
    #[error(
        "no Google credentials found. Tried, in order:\n{}\nFix: run `gcloud auth application-default login` on a \
         workstation, set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on Google Cloud \
         (Cloud Run, GKE, GCE, Agent Engine) where the metadata server provides credentials.",
        tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NoCredentials { tried: Vec<String> },

    /// Google answered 4xx: not retried. `error`/`description` are Google's own fields.
    #[error("{endpoint} refused the request (HTTP {status}{}){}{}",
        error.as_deref().map(|e| format!(", error={e:?}")).unwrap_or_default(),
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default(),
        hint.as_deref().map(|h| format!(". {h}")).unwrap_or_default())]
    Rejected {
        endpoint: String,
        status: u16,
        error: Option<String>,
        description: Option<String>,
        hint: Option<String>,
    },

    /// 5xx, 429 or a connection failure, after the allowed attempts.
    #[error("{endpoint} is unavailable: {detail}")]
    Unavailable { endpoint: String, detail: String },

    /// A request did not complete within its bound.
    #[error("{endpoint} did not answer within {:.1} s ({what}); check network access to it, or raise the timeout with adk_token_exchange.configure()", after.as_secs_f64())]
    Timeout {
        endpoint: String,
        what: &'static str,
        after: Duration,
    },

    /// Google answered 2xx with something we cannot use.
    #[error("{endpoint} returned an unusable response: {detail}")]
    InvalidResponse { endpoint: String, detail: String },

    /// A bug or a panic inside the core; never expected.
    #[error("internal error in adk-token-exchange: {0}")]
    Internal(String),

    /// A token presented to a verifier was refused: `reason` is a short
    /// code (`expired`, `wrong_audience`, `unknown_key`, `not_allowed`, …),
    /// `detail` says why in a sentence. Neither quotes the token.
    #[error("token refused: {detail}")]
    InvalidToken {
        reason: &'static str,
        detail: String,
    },
}

/// Which Python exception class an error becomes (mapped in `python.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Configuration,
    CredentialsNotFound,
    Transient,
    Timeout,
    Permanent,
    /// A presented token failed verification (the caller's fault, not Google's).
    InvalidToken,
}

impl Error {
    /// Worth retrying later: connection errors, 5xx, 408, 429, timeouts.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Timeout { .. })
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::Configuration,
            Error::NoCredentials { .. } => ErrorClass::CredentialsNotFound,
            Error::Unavailable { .. } => ErrorClass::Transient,
            Error::Timeout { .. } => ErrorClass::Timeout,
            Error::Rejected { .. } | Error::InvalidResponse { .. } | Error::Internal(_) => {
                ErrorClass::Permanent
            }
            Error::InvalidToken { .. } => ErrorClass::InvalidToken,
        }
    }

    /// The short reason code of an [`Error::InvalidToken`].
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Error::InvalidToken { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---- Google's error bodies

/// Google's own error fields from a response body: OAuth2's
/// `{"error": "...", "error_description": "..."}` (RFC 6749 §5.2) or the API
/// style `{"error": {"code", "message", "status"}}` used by IAM
/// (<https://cloud.google.com/apis/design/errors>).
pub fn google_error(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<ErrorField>,
        error_description: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Code(String),
        Status {
            message: Option<String>,
            status: Option<String>,
        },
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(body) else {
        return (None, None);
    };
    match parsed.error {
        Some(ErrorField::Code(code)) => (
            Some(clean(&code)),
            parsed.error_description.map(|d| clean(&d)),
        ),
        Some(ErrorField::Status { message, status }) => {
            (status.map(|s| clean(&s)), message.map(|m| clean(&m)))
        }
        None => (None, parsed.error_description.map(|d| clean(&d))),
    }
}

/// One line, printable, at most 500 characters.
fn clean(s: &str) -> String {
    clean_to(s, 500)
}

/// One line, printable, at most `max` characters: how text that someone
/// else wrote (Google's fields, a presented token's claims) enters a message.
pub(crate) fn clean_to(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    one_line.trim().to_owned()
}

/// A 3xx/4xx answer as an error, with Google's own fields.
pub fn rejected(endpoint: &str, status: u16, body: &[u8]) -> Error {
    let (error, description) = google_error(body);
    let hint = match status {
        300..=399 => Some(
            "redirects are not followed for credential requests; configure the final URL"
                .to_owned(),
        ),
        _ => None,
    };
    Error::Rejected {
        endpoint: endpoint.to_owned(),
        status,
        error,
        description,
        hint,
    }
}

/// A 5xx/408/429 answer, after `attempt` attempts, as an error.
pub fn unavailable(endpoint: &str, status: u16, body: &[u8], attempt: u32) -> Error {
    let (error, description) = google_error(body);
    let mut detail = format!("HTTP {status}");
    if let Some(e) = error {
        detail.push_str(&format!(", error={e:?}"));
    }
    if let Some(d) = description {
        detail.push_str(&format!(": {d}"));
    }
    detail.push_str(&format!(
        " (after {attempt} attempt{})",
        if attempt == 1 { "" } else { "s" }
    ));
    Error::Unavailable {
        endpoint: endpoint.to_owned(),
        detail,
    }
}

/// Adds `hint` to a [`Error::Rejected`] whose status is `status` (any status
/// if `None`); other errors pass through unchanged.
pub fn with_hint(
    e: Error,
    status: Option<u16>,
    hint: impl FnOnce(Option<&str>) -> String,
) -> Error {
    match e {
        Error::Rejected {
            endpoint,
            status: s,
            error,
            description,
            hint: old,
        } if status.is_none_or(|want| want == s) => {
            let new = hint(error.as_deref());
            Error::Rejected {
                endpoint,
                status: s,
                error,
                description,
                hint: Some(match old {
                    Some(o) => format!("{new}; {o}"),
                    None => new,
                }),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_carries_googles_error_fields_and_hint() {
        let e = Error::Rejected {
            endpoint: "https://oauth2.googleapis.com/token".into(),
            status: 400,
            error: Some("invalid_grant".into()),
            description: Some("Invalid JWT Signature.".into()),
            hint: Some("the key may have been deleted".into()),
        };
        let text = e.to_string();
        assert!(text.contains("HTTP 400"), "{text}");
        assert!(text.contains("invalid_grant"), "{text}");
        assert!(text.contains("Invalid JWT Signature."), "{text}");
        assert!(!e.is_transient());
        assert_eq!(e.class(), ErrorClass::Permanent);
    }

    #[test]
    fn no_credentials_lists_every_step_and_the_fix() {
        let e = Error::NoCredentials {
            tried: vec!["GOOGLE_APPLICATION_CREDENTIALS: not set".into()],
        };
        let text = e.to_string();
        assert!(text.contains("  - GOOGLE_APPLICATION_CREDENTIALS: not set"));
        assert!(text.contains("gcloud auth application-default login"));
        assert_eq!(e.class(), ErrorClass::CredentialsNotFound);
    }

    #[test]
    fn google_error_reads_oauth_and_iam_shapes() {
        assert_eq!(
            google_error(br#"{"error":"invalid_grant","error_description":"Bad Request"}"#),
            (Some("invalid_grant".into()), Some("Bad Request".into()))
        );
        assert_eq!(
            google_error(br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#),
            (
                Some("PERMISSION_DENIED".into()),
                Some("Permission 'iam.serviceAccounts.getAccessToken' denied".into())
            )
        );
        assert_eq!(google_error(b"<html>nope</html>"), (None, None));
    }
}

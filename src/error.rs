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
}

/// Which Python exception class an error becomes (mapped in `python.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Configuration,
    CredentialsNotFound,
    Transient,
    Timeout,
    Permanent,
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
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
}

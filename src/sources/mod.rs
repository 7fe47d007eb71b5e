//! Credential sources: each fetches fresh tokens from upstream, nothing more.
//! Caching lives in `cache.rs`; discovery of which source to use in `adc.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::Result;
use crate::request::TokenRequest;
use crate::token::Token;

pub mod authorized_user;
pub mod impersonated;
pub mod metadata;
pub mod service_account;

/// A boxed, sendable future (sources are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The credential kinds, as named in ADC JSON `type` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    ServiceAccount,
    AuthorizedUser,
    ImpersonatedServiceAccount,
    Metadata,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ServiceAccount => "service_account",
            SourceKind::AuthorizedUser => "authorized_user",
            SourceKind::ImpersonatedServiceAccount => "impersonated_service_account",
            SourceKind::Metadata => "metadata",
        }
    }
}

/// What a source is, for logs, cache identity and `doctor`; never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDescription {
    pub kind: SourceKind,
    /// Where it came from: `GOOGLE_APPLICATION_CREDENTIALS=/p/key.json`, the
    /// well-known file's path, `metadata server http://…`, `service_account_credential`.
    pub origin: String,
    /// Service account email or OAuth client id, if known without a request.
    pub principal: Option<String>,
    /// Target service account when this source impersonates one.
    pub impersonating: Option<String>,
    pub quota_project_id: Option<String>,
    pub token_uri: Option<String>,
}

/// A credential source: turns a `TokenRequest` into a fresh `Token` upstream.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Fetches a new token. Never consults or fills a cache.
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>>;

    /// Stable cache identity: which principal, via which endpoint; no secret.
    fn identity(&self) -> String;

    fn describe(&self) -> SourceDescription;
}

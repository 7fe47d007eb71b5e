//! Agent Identity (Agent Engine, Cloud Run with `agent-identity`): the
//! metadata server speaks for the agent's own principal, which Google APIs
//! accept but a Cloud Run service does not take as an invoker today
//! (GoogleCloudPlatform/cloud-networking-solutions#56). Google's own ADK
//! provider (iam-federation-tools `adk/cloudrun_auth.py`) impersonates a
//! designated service account when `GOOGLE_API_CERTIFICATE_CONFIG` is set.
//!
//! Detected, as google-auth does, from `GOOGLE_API_CERTIFICATE_CONFIG` or the
//! workload certificate bundle at [`WORKLOAD_CERTIFICATES`]. Then:
//! - access tokens: the metadata server, as everywhere;
//! - ID tokens and signed JWTs: minted as the invoker service account named by
//!   [`INVOKER_VAR`] (IAM Credentials `generateIdToken` / `signJwt`, called
//!   with the metadata server's access token); without one, the metadata
//!   server's own ID token, and one warning naming the variable.
//!
//! Why a variable and not only `impersonate=`: the agent's code is the same
//! on a laptop (a gcloud login, no Agent Identity) and on Agent Engine; the
//! deployment, which knows the invoker account, sets it. An explicit
//! `impersonate=` still wins (`adc.rs` never wraps then).
//!
//! Security: tokens are plain unbound GETs to the metadata server; nothing
//! here asks for a certificate-bound token (those fail outside mTLS). The
//! invoker needs `roles/run.invoker` on the service; the agent's principal
//! needs `roles/iam.serviceAccountTokenCreator` on the invoker.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! // GOOGLE_API_CERTIFICATE_CONFIG=/var/run/secrets/workload-spiffe-credentials/certificate_config.json
//! // ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT=mcp-invoker@proj.iam.gserviceaccount.com
//! use _native::{adc, request::TokenRequest};
//! let source = adc::application_default(None).await?.source;
//! let id = source.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::impersonated::{ImpersonatedServiceAccount, Impersonation};
use super::{BoxFuture, SourceDescription, TokenSource};
use crate::error::Result;
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::Token;

/// The variable naming the service account that mints ID tokens on Agent Identity.
pub const INVOKER_VAR: &str = "ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT";
/// google-auth's variable naming the workload certificate configuration.
pub const CERTIFICATE_CONFIG_VAR: &str = "GOOGLE_API_CERTIFICATE_CONFIG";
/// Where Cloud Run and Agent Engine put the workload certificates.
pub const WORKLOAD_CERTIFICATES: &str =
    "/var/run/secrets/workload-spiffe-credentials/certificates.pem";

static WARNED: AtomicBool = AtomicBool::new(false);

/// Why this workload has an Agent Identity, if it has one.
pub fn detected() -> Option<String> {
    match std::env::var(CERTIFICATE_CONFIG_VAR) {
        Ok(v) if !v.trim().is_empty() => return Some(format!("{CERTIFICATE_CONFIG_VAR} is set")),
        _ => {}
    }
    std::fs::metadata(WORKLOAD_CERTIFICATES)
        .ok()
        .filter(|m| m.is_file() && m.len() > 0)
        .map(|_| format!("workload certificates at {WORKLOAD_CERTIFICATES}"))
}

/// The invoker service account from [`INVOKER_VAR`], if set.
pub fn invoker_from_env() -> Option<String> {
    std::env::var(INVOKER_VAR)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The metadata server of a workload with Agent Identity.
pub struct AgentIdentity {
    metadata: Arc<dyn TokenSource>,
    invoker: Option<ImpersonatedServiceAccount>,
    why: String,
    identity: Identity,
}

impl AgentIdentity {
    /// `metadata` on a workload detected (`why`) to have Agent Identity;
    /// ID tokens as `invoker` when given. The caller passes `metadata` with
    /// its tokens cached (`adc.rs` wraps it in `cache::CachedSource`): its
    /// access token authenticates every IAM call.
    pub fn new(
        metadata: Arc<dyn TokenSource>,
        invoker: Option<String>,
        why: String,
    ) -> Result<Self> {
        let invoker = invoker
            .map(|email| {
                ImpersonatedServiceAccount::new(Arc::clone(&metadata), Impersonation::new(email))
            })
            .transpose()?;
        let mut id = Identity::builder("agent_identity");
        id.nested(metadata.identity());
        if let Some(inv) = &invoker {
            id.nested(inv.identity());
        }
        let label = match &invoker {
            Some(inv) => format!("{}>{}", metadata.identity().label(), inv.target()),
            None => metadata.identity().label().to_owned(),
        };
        let identity = id.finish(format_args!("{label}"));
        Ok(AgentIdentity {
            metadata,
            invoker,
            why,
            identity,
        })
    }

    /// One line for ADC's steps (and `doctor`).
    pub fn step(&self) -> String {
        match &self.invoker {
            Some(inv) => format!(
                "Agent Identity ({}): ID tokens minted as {} ({INVOKER_VAR})",
                self.why,
                inv.target()
            ),
            None => format!(
                "Agent Identity ({}): no invoker service account ({INVOKER_VAR} unset); \
                 Cloud Run does not accept the agent's own ID tokens",
                self.why
            ),
        }
    }

    fn warn_once(&self) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "Agent Identity detected ({}): Cloud Run does not accept the agent's own \
                 principal as an invoker, so its ID tokens will likely be refused (401/403). \
                 Set {INVOKER_VAR}=SA_EMAIL (a service account with roles/run.invoker on the \
                 service, on which the agent's principal has roles/iam.serviceAccountTokenCreator), \
                 or pass impersonate=\"SA_EMAIL\"",
                self.why
            );
        }
    }

    async fn fetch_token(&self, request: &TokenRequest) -> Result<Token> {
        match (request, &self.invoker) {
            (TokenRequest::Access { .. }, _) => self.metadata.fetch(request).await,
            (_, Some(invoker)) => invoker.fetch(request).await,
            (_, None) => {
                self.warn_once();
                self.metadata.fetch(request).await
            }
        }
    }
}

impl fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("metadata", &self.metadata)
            .field("invoker", &self.invoker.as_ref().map(|i| i.target()))
            .finish()
    }
}

impl TokenSource for AgentIdentity {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(self.fetch_token(request))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        let mut d = self.metadata.describe();
        d.origin = format!("{} (Agent Identity: {})", d.origin, self.why);
        d.impersonating = self.invoker.as_ref().map(|i| i.target().to_owned());
        d
    }
}

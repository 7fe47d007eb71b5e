//! A credential as callers see it: a source plus its token cache, one per
//! identity per process, so every exchanger and helper shares the same tokens.
//!
//! Application Default Credentials are resolved on first use, inside the fetch
//! task (discovery may probe the metadata server for seconds), never when the
//! credential is created.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;

use crate::adc::{self, Resolved};
use crate::cache::TokenCache;
use crate::error::Result;
use crate::request::TokenRequest;
use crate::sources::impersonated::Impersonation;
use crate::sources::{BoxFuture, SourceDescription, SourceKind, TokenSource};
use crate::token::Token;

/// ADC, resolved once on first fetch (again after `reset`).
pub struct ApplicationDefault {
    impersonation: Option<Impersonation>,
    identity: String,
    resolved: Mutex<Arc<OnceCell<Adc>>>,
}

/// What ADC resolved to, with the quota project read once (the token hot
/// path asks for it on every cached token).
struct Adc {
    resolved: Arc<Resolved>,
    quota_project_id: Option<Arc<str>>,
}

impl fmt::Debug for ApplicationDefault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationDefault")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ApplicationDefault {
    fn new(impersonation: Option<Impersonation>) -> Self {
        Self {
            identity: adc::application_default_identity(impersonation.as_ref()),
            impersonation,
            resolved: Mutex::new(Arc::new(OnceCell::new())),
        }
    }

    fn cell(&self) -> Arc<OnceCell<Adc>> {
        Arc::clone(&self.resolved.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs ADC discovery once; a failure is not remembered.
    pub async fn resolve(&self) -> Result<Arc<Resolved>> {
        let cell = self.cell();
        let resolved = cell
            .get_or_try_init(|| async {
                let resolved = adc::application_default(self.impersonation.clone()).await?;
                let d = resolved.source.describe();
                log::info!(
                    "application default credentials: {} from {}{}",
                    d.kind.as_str(),
                    d.origin,
                    d.principal.map(|p| format!(" ({p})")).unwrap_or_default()
                );
                let quota_project_id = resolved.source.describe().quota_project_id.map(Arc::from);
                Ok::<_, crate::error::Error>(Adc {
                    resolved: Arc::new(resolved),
                    quota_project_id,
                })
            })
            .await?;
        Ok(Arc::clone(&resolved.resolved))
    }

    /// What ADC resolved to, if it has been resolved.
    pub fn current(&self) -> Option<Arc<Resolved>> {
        self.cell().get().map(|adc| Arc::clone(&adc.resolved))
    }

    /// The resolved source's quota project, without describing it again.
    fn quota_project_id(&self) -> Option<Arc<str>> {
        self.cell()
            .get()
            .and_then(|adc| adc.quota_project_id.clone())
    }

    fn reset(&self) {
        *self.resolved.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(OnceCell::new());
    }
}

impl TokenSource for ApplicationDefault {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(async move { self.resolve().await?.source.fetch(request).await })
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn describe(&self) -> SourceDescription {
        match self.current() {
            Some(resolved) => resolved.source.describe(),
            None => SourceDescription {
                kind: SourceKind::Metadata,
                origin: "application default credentials (not resolved yet)".into(),
                principal: None,
                impersonating: self.impersonation.as_ref().map(|i| i.target.clone()),
                quota_project_id: None,
                token_uri: None,
            },
        }
    }
}

/// One credential identity's source and token cache.
pub struct Credential {
    identity: String,
    cache: Arc<TokenCache>,
    adc: Option<Arc<ApplicationDefault>>,
    /// Known up front for explicit sources; read from the resolution for ADC.
    fixed_quota_project: Option<Arc<str>>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// The ADC resolver, when this credential is Application Default Credentials.
    pub fn application_default(&self) -> Option<&Arc<ApplicationDefault>> {
        self.adc.as_ref()
    }

    /// The project to bill (`x-goog-user-project`), when the source names one.
    pub fn quota_project_id(&self) -> Option<Arc<str>> {
        match &self.adc {
            None => self.fixed_quota_project.clone(),
            Some(adc) => adc.quota_project_id(),
        }
    }

    /// Resolves ADC if needed and describes the source; plus the ADC steps taken.
    pub async fn resolve(&self) -> Result<(SourceDescription, Vec<String>)> {
        match &self.adc {
            Some(adc) => {
                let resolved = adc.resolve().await?;
                Ok((resolved.source.describe(), resolved.steps.clone()))
            }
            None => Ok((self.cache.source().describe(), Vec::new())),
        }
    }

    fn clear(&self) {
        self.cache.clear();
        if let Some(adc) = &self.adc {
            adc.reset();
        }
    }
}

fn registry() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Credential>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<Credential>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The process's credential for Application Default Credentials (optionally impersonating).
pub fn application_default(impersonation: Option<Impersonation>) -> Arc<Credential> {
    let identity = adc::application_default_identity(impersonation.as_ref());
    let mut registry = registry();
    if let Some(existing) = registry.get(&identity) {
        return Arc::clone(existing);
    }
    let adc = Arc::new(ApplicationDefault::new(impersonation));
    let credential = Arc::new(Credential {
        identity: identity.clone(),
        cache: TokenCache::new(adc.clone()),
        adc: Some(adc),
        fixed_quota_project: None,
    });
    registry.insert(identity, Arc::clone(&credential));
    credential
}

/// The process's credential for an explicit source; same identity, same cache.
pub fn from_source(source: Arc<dyn TokenSource>) -> Arc<Credential> {
    let identity = source.identity();
    let mut registry = registry();
    if let Some(existing) = registry.get(&identity) {
        return Arc::clone(existing);
    }
    let credential = Arc::new(Credential {
        identity: identity.clone(),
        fixed_quota_project: source.describe().quota_project_id.map(Arc::from),
        cache: TokenCache::new(source),
        adc: None,
    });
    registry.insert(identity, Arc::clone(&credential));
    credential
}

/// Forgets every cached token and ADC resolution in the process.
pub fn clear_all() {
    let mut registry = registry();
    for credential in registry.values() {
        credential.clear();
    }
    registry.clear();
}

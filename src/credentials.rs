//! A credential as callers hold it: which source, and where its tokens are.
//!
//! A [`Credential`] holds no state of its own: an explicit source's tokens
//! live in this process's cache for its identity (`cache::shared`), so every
//! handle on the same key material shares them and a forked child starts
//! afresh. Application Default Credentials are an alias: resolved on first
//! use, inside the fetch (discovery may probe the metadata server for
//! seconds), once per process, and their tokens live in the cache of the
//! source they resolved to, keyed by its own key material like any other.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::OnceCell;

use crate::adc;
use crate::cache::{self, TokenCache};
use crate::error::Result;
use crate::process::{self, PerProcess};
use crate::request::TokenRequest;
use crate::sources::impersonated::Impersonation;
use crate::sources::{SourceDescription, TokenSource};
use crate::token::Token;

/// Where a credential's tokens come from.
pub enum Credential {
    /// A source named by the caller (a key, a file), ready now.
    Explicit {
        source: Arc<dyn TokenSource>,
        quota_project_id: Option<Arc<str>>,
        /// This source's cache, found once per process generation: the warm
        /// path then takes no process-wide lock (the registry's).
        cache: OnceLock<(u64, Arc<TokenCache>)>,
    },
    /// Whatever Application Default Credentials find, impersonating as asked.
    ApplicationDefault(ApplicationDefault),
}

/// The ADC alias: the chain to impersonate, and its per-process resolution.
pub struct ApplicationDefault {
    impersonation: Option<Impersonation>,
    /// `adc`, or `adc>DELEGATE>…>TARGET`: what resolutions are keyed by.
    key: String,
}

/// A token as handed out, with the project to bill for it (`x-goog-user-project`).
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: Arc<Token>,
    pub quota_project_id: Option<Arc<str>>,
}

/// What ADC resolved to in this process.
pub struct Resolved {
    pub source: Arc<dyn TokenSource>,
    /// One human line per step checked, in order, for `doctor`.
    pub steps: Vec<String>,
    /// Read once here: the hot path asks for it with every token.
    pub quota_project_id: Option<Arc<str>>,
}

type Resolutions = HashMap<String, Arc<OnceCell<Arc<Resolved>>>>;

static RESOLUTIONS: PerProcess<Mutex<Resolutions>> = PerProcess::new();

fn resolutions() -> MutexGuard<'static, Resolutions> {
    RESOLUTIONS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

impl ApplicationDefault {
    fn cell(&self) -> Arc<OnceCell<Arc<Resolved>>> {
        Arc::clone(resolutions().entry(self.key.clone()).or_default())
    }

    /// The resolution, if made in this process.
    pub fn current(&self) -> Option<Arc<Resolved>> {
        resolutions().get(&self.key)?.get().cloned()
    }

    /// Runs ADC discovery once per process; a failure is not remembered.
    pub async fn resolve(&self) -> Result<Arc<Resolved>> {
        let cell = self.cell();
        let resolved = cell
            .get_or_try_init(|| async {
                let found = adc::application_default(self.impersonation.clone()).await?;
                let d = found.source.describe();
                log::info!(
                    "application default credentials: {} from {}{}",
                    d.kind.as_str(),
                    d.origin,
                    d.principal
                        .as_deref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                );
                Ok::<_, crate::error::Error>(Arc::new(Resolved {
                    quota_project_id: d.quota_project_id.map(Arc::from),
                    source: found.source,
                    steps: found.steps,
                }))
            })
            .await?;
        Ok(Arc::clone(resolved))
    }
}

/// Forgets every ADC resolution of this process: the next use discovers
/// again (after the environment that ADC reads has changed, as in tests).
/// Tokens are kept, keyed by the key material they came from.
pub fn reset_application_default() {
    let dropped = std::mem::take(&mut *resolutions());
    drop(dropped);
}

impl Credential {
    /// An explicit source.
    pub fn explicit(source: Arc<dyn TokenSource>) -> Arc<Self> {
        let quota_project_id = source.describe().quota_project_id.map(Arc::from);
        Arc::new(Credential::Explicit {
            source,
            quota_project_id,
            cache: OnceLock::new(),
        })
    }

    /// Application Default Credentials, optionally impersonating.
    pub fn application_default(impersonation: Option<Impersonation>) -> Arc<Self> {
        let key = adc::application_default_key(impersonation.as_ref());
        Arc::new(Credential::ApplicationDefault(ApplicationDefault {
            impersonation,
            key,
        }))
    }

    /// The cache and billing project now, if known (ADC: once resolved in this process).
    fn cache_now(&self) -> Option<(Arc<TokenCache>, Option<Arc<str>>)> {
        match self {
            Credential::Explicit {
                source,
                quota_project_id,
                cache,
            } => Some((
                Self::explicit_cache(source, cache),
                quota_project_id.clone(),
            )),
            Credential::ApplicationDefault(adc) => adc
                .current()
                .map(|r| (cache::shared(&r.source), r.quota_project_id.clone())),
        }
    }

    /// An explicit source's cache: remembered for this process generation
    /// (a forked child finds its own through the registry). If the registry
    /// later evicts it, this handle keeps the one it has: still this
    /// identity's tokens, never another's.
    fn explicit_cache(
        source: &Arc<dyn TokenSource>,
        cache: &OnceLock<(u64, Arc<TokenCache>)>,
    ) -> Arc<TokenCache> {
        let generation = process::generation();
        match cache.get() {
            Some((g, found)) if *g == generation => Arc::clone(found),
            _ => {
                let found = cache::shared(source);
                let _ = cache.set((generation, Arc::clone(&found)));
                found
            }
        }
    }

    /// A fresh cached token, without waiting (see `TokenCache::peek`), and
    /// the project to bill.
    pub fn cached(&self, request: &TokenRequest) -> Option<Issued> {
        let (cache, quota_project_id) = self.cache_now()?;
        let token = cache.peek(request, process::runtime_handle)?;
        Some(Issued {
            token,
            quota_project_id,
        })
    }

    /// A usable token, from the cache or the one shared fetch, and the project to bill.
    pub async fn token(&self, request: &TokenRequest) -> Result<Issued> {
        let (cache, quota_project_id) = match self {
            Credential::ApplicationDefault(adc) => {
                let r = adc.resolve().await?;
                (cache::shared(&r.source), r.quota_project_id.clone())
            }
            explicit => explicit
                .cache_now()
                .expect("an explicit source is always known"),
        };
        let token = cache.get(request, &process::runtime_handle()).await?;
        Ok(Issued {
            token,
            quota_project_id,
        })
    }

    /// Resolves ADC if needed and describes the source; plus the ADC steps taken.
    pub async fn resolve(&self) -> Result<(SourceDescription, Vec<String>)> {
        match self {
            Credential::Explicit { source, .. } => Ok((source.describe(), Vec::new())),
            Credential::ApplicationDefault(adc) => {
                let r = adc.resolve().await?;
                Ok((r.source.describe(), r.steps.clone()))
            }
        }
    }

    /// A name for reprs and logs: the source's identity label, or the ADC chain.
    pub fn label(&self) -> String {
        match self {
            Credential::Explicit { source, .. } => source.identity().label().to_owned(),
            Credential::ApplicationDefault(adc) => adc.key.clone(),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({})", self.label())
    }
}

/// Forgets every cached token and ADC resolution in this process.
pub fn clear_all() {
    cache::clear_all();
    reset_application_default();
}

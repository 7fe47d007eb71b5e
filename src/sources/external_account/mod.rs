//! Workload Identity Federation: the `"type": "external_account"` file that
//! `gcloud iam workload-identity-pools create-cred-config` (and
//! `gcloud iam workforce-pools create-cred-config`) writes, for agents that
//! run outside Google Cloud — GitHub Actions, AWS, Azure, on-prem
//! Kubernetes — with no service account key anywhere.
//!
//! Protocol (Google AIP-4117, <https://google.aip.dev/auth/4117>;
//! <https://cloud.google.com/iam/docs/workload-identity-federation>):
//! 1. a *subject token* is read from the file's `credential_source`: a file
//!    (a Kubernetes projected token), a URL (GitHub Actions' and Azure's
//!    token endpoints), an executable, or AWS (a SigV4-signed
//!    `GetCallerIdentity` request; see [`aws`]);
//! 2. it is exchanged at `token_url` (Google's STS) for a federated access
//!    token, by the OAuth 2.0 token exchange (RFC 8693,
//!    <https://www.rfc-editor.org/rfc/rfc8693>) with the file's `audience`
//!    (the pool provider), `subject_token_type` and the requested scopes;
//! 3. with `service_account_impersonation_url`, that token impersonates the
//!    service account (IAM Credentials `generateAccessToken` /
//!    `generateIdToken`, see [`super::impersonated`]).
//!
//! ID tokens need step 3: STS issues access tokens only, so an ID-token
//! request for a file without `service_account_impersonation_url` fails at
//! once, naming the field and the gcloud flag that adds it
//! (`--service-account=SA_EMAIL`). (google-auth's `fetch_id_token` refuses
//! external accounts outright; here they mint ID tokens through
//! impersonation, as Go's `idtoken` does.)
//!
//! Security:
//! - the subject token, the STS token, any AWS secret and any header value
//!   of `credential_source.url` are [`Secret`]s: never in an error, a log
//!   line, a `Debug` or a description;
//! - `token_url` and `service_account_impersonation_url` receive secrets,
//!   so they must be Google hosts (of the file's `universe_domain`) or
//!   loopback, like every credential endpoint (`http::endpoint`);
//! - `credential_source.url` (and AWS's metadata URLs) may be https, or
//!   plain http only to loopback or the cloud metadata addresses
//!   169.254.169.254 and `[fd00:ec2::254]`: its headers may carry a secret
//!   (GitHub's request token), which must not travel in clear;
//! - an executable runs only when `GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`
//!   (AIP-4117), within its `timeout_millis` (then it is killed), and its
//!   output is capped;
//! - every subject token read is capped at [`MAX_SUBJECT_TOKEN`] bytes.
//!
//! Tokens are cached, single-flight and refreshed ahead by the cache like
//! any other source's; the STS token under impersonation goes through the
//! cache too (the `cache` argument of [`ExternalAccount::from_file`]).
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{request::TokenRequest, sources::TokenSource};
//! // gcloud iam workload-identity-pools create-cred-config \
//! //   projects/123/locations/global/workloadIdentityPools/github/providers/my-repo \
//! //   --service-account=mcp-caller@proj.iam.gserviceaccount.com \
//! //   --credential-source-file=/var/run/token --output-file=wif.json
//! let source = _native::adc::from_file(std::path::Path::new("wif.json"), None)?;
//! let id = source.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

pub mod aws;
mod credential_source;
pub mod executable;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;

pub use self::credential_source::{CredentialSource, SubjectContext, MAX_SUBJECT_TOKEN};
use super::impersonated::{ImpersonatedServiceAccount, DEFAULT_LIFETIME};
use super::{
    access_token_expiring_in, invalid, optional, required, universe_of, BoxFuture, CredentialFile,
    Federation, JsonObject, ResponseFields, SourceDescription, SourceKind, TokenSource,
};
use crate::error::{self, Error, Result};
use crate::http::{self, Call};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::{Secret, Token};

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// What STS is asked for (always an access token, AIP-4117).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A Workload (or workforce) Identity Federation credential.
pub struct ExternalAccount {
    sts: Arc<StsExchange>,
    /// `service_account_impersonation_url`, over the cached STS token.
    impersonated: Option<ImpersonatedServiceAccount>,
}

impl ExternalAccount {
    /// Builds from a parsed credential file; `origin` names it in errors.
    /// `cache` makes the STS token come through the process cache when it
    /// only feeds impersonation (sources know nothing of caching).
    pub fn from_file(
        f: CredentialFile,
        origin: &str,
        cache: impl FnOnce(Arc<dyn TokenSource>) -> Arc<dyn TokenSource>,
    ) -> Result<Self> {
        let kind = SourceKind::ExternalAccount;
        let universe = universe_of(&f);
        let audience = required(f.audience, origin, kind, "audience")?
            .trim()
            .to_owned();
        let subject_token_type =
            required(f.subject_token_type, origin, kind, "subject_token_type")?
                .trim()
                .to_owned();
        let token_url =
            optional(f.token_url).unwrap_or_else(|| format!("https://sts.{universe}/v1/token"));
        let token_url = http::credential_endpoint(
            &token_url,
            &format!("{origin}: field `token_url`"),
            &universe,
        )?;
        let pool = Pool::parse(&audience);
        let workforce_pool_user_project = optional(f.workforce_pool_user_project);
        if workforce_pool_user_project.is_some() && pool.kind != Some("workforce") {
            // As google-auth: the option only means something to workforce pools.
            return Err(Error::Config(format!(
                "{origin}: field `workforce_pool_user_project` is set, but `audience` is not a \
                 workforce pool provider (//iam.googleapis.com/locations/LOCATION/workforcePools/POOL/providers/PROVIDER); \
                 remove the field"
            )));
        }
        let client = match (optional(f.client_id), f.client_secret) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (Some(id), None) => Some((id, Secret::new(""))),
            (None, Some(_)) => {
                return Err(Error::Config(format!(
                    "{origin}: field `client_secret` is set without `client_id`"
                )))
            }
            (None, None) => None,
        };
        let source_object = f.credential_source.ok_or_else(|| {
            Error::Config(format!(
                "{origin}: field `credential_source` is missing (required for type \"external_account\"); \
                 recreate the file with `gcloud iam workload-identity-pools create-cred-config`"
            ))
        })?;
        let source = CredentialSource::parse(source_object, origin)?;
        let impersonation_url = optional(f.service_account_impersonation_url);
        let lifetime = lifetime(f.service_account_impersonation, origin)?;
        let quota_project_id = optional(f.quota_project_id);

        let (credential_source, subject_from) = source.describe();
        let federation = Federation {
            credential_source,
            subject_from,
            audience: audience.clone(),
            pool_kind: pool.kind,
            project_number: pool.project_number.clone(),
            location: pool.location.clone(),
            pool_id: pool.pool_id.clone(),
            provider_id: pool.provider_id.clone(),
            subject_token_type: Some(subject_token_type.clone()),
            token_url: http::endpoint_label(&token_url),
            impersonation_url: impersonation_url.clone(),
            token_lifetime_seconds: impersonation_url
                .as_ref()
                .map(|_| lifetime.unwrap_or(DEFAULT_LIFETIME).as_secs()),
            workforce_pool_user_project: workforce_pool_user_project.clone(),
        };

        let mut id = Identity::builder("external_account");
        id.part(audience.as_bytes())
            .part(subject_token_type.as_bytes())
            .part(token_url.as_str().as_bytes())
            .optional(workforce_pool_user_project.as_deref())
            .optional(quota_project_id.as_deref())
            .part(universe.as_bytes());
        match &client {
            Some((client_id, secret)) => id
                .part(b"client")
                .part(client_id.as_bytes())
                .fingerprint(secret.expose().as_bytes()),
            None => id.part(b"no client"),
        };
        source.identify(&mut id);
        let identity = id.finish(format_args!("wif:{}", pool.label()));

        let sts = Arc::new(StsExchange {
            audience,
            subject_token_type,
            token_url,
            client,
            workforce_pool_user_project,
            source,
            quota_project_id: quota_project_id.clone(),
            federation,
            origin: origin.to_owned(),
            identity,
            impersonated_email: OnceLock::new(),
        });
        let impersonated = match impersonation_url {
            None => {
                if lifetime.is_some() {
                    log::warn!(
                        "{origin}: `service_account_impersonation.token_lifetime_seconds` is ignored \
                         without `service_account_impersonation_url`"
                    );
                }
                None
            }
            Some(url) => Some(ImpersonatedServiceAccount::from_url(
                cache(Arc::clone(&sts) as Arc<dyn TokenSource>),
                &url,
                &format!("{origin}: field `service_account_impersonation_url`"),
                &universe,
                lifetime.unwrap_or(DEFAULT_LIFETIME),
                quota_project_id,
                origin.to_owned(),
            )?),
        };
        if let Some(imp) = &impersonated {
            let _ = sts.impersonated_email.set(imp.target().to_owned());
        }
        Ok(ExternalAccount { sts, impersonated })
    }

    /// The service account impersonated, if the file names one.
    pub fn impersonating(&self) -> Option<&str> {
        self.impersonated.as_ref().map(|i| i.target())
    }
}

/// `service_account_impersonation.token_lifetime_seconds`, if given.
fn lifetime(options: Option<JsonObject>, origin: &str) -> Result<Option<Duration>> {
    let Some(mut options) = options else {
        return Ok(None);
    };
    let field = "service_account_impersonation.token_lifetime_seconds";
    let range = &super::impersonated::LIFETIMES;
    match options.take("token_lifetime_seconds") {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(secs) if range.contains(&secs) => Ok(Some(Duration::from_secs(secs))),
            _ => Err(Error::Config(format!(
                "{origin}: field `{field}` is {n}; IAM grants {} to {} seconds",
                range.start(),
                range.end()
            ))),
        },
        Some(_) => Err(Error::Config(format!(
            "{origin}: field `{field}` must be a whole number of seconds"
        ))),
    }
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccount")
            .field("sts", &self.sts)
            .field("impersonating", &self.impersonating())
            .finish()
    }
}

impl TokenSource for ExternalAccount {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        match &self.impersonated {
            Some(imp) => imp.fetch(request),
            None => self.sts.fetch(request),
        }
    }

    fn identity(&self) -> &Identity {
        match &self.impersonated {
            Some(imp) => imp.identity(),
            None => &self.sts.identity,
        }
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            impersonating: self.impersonating().map(str::to_owned),
            ..self.sts.describe()
        }
    }
}

/// The RFC 8693 exchange of a subject token for a federated access token.
struct StsExchange {
    audience: String,
    subject_token_type: String,
    token_url: Url,
    /// OAuth client authentication (workforce pools), sent as HTTP Basic.
    client: Option<(String, Secret)>,
    workforce_pool_user_project: Option<String>,
    source: CredentialSource,
    quota_project_id: Option<String>,
    federation: Federation,
    origin: String,
    identity: Identity,
    /// The service account impersonated with this STS token (an
    /// executable is told, AIP-4117); set once, after impersonation is built.
    impersonated_email: OnceLock<String>,
}

impl StsExchange {
    async fn exchange(&self, scopes: &[String]) -> Result<Token> {
        let ctx = SubjectContext {
            audience: &self.audience,
            subject_token_type: &self.subject_token_type,
            impersonated_email: self.impersonated_email.get().map(String::as_str),
            origin: &self.origin,
        };
        let subject = self.source.subject_token(&ctx).await?;
        let scope = scopes.join(" ");
        // google-auth sends `userProject` only without client authentication:
        // the OAuth client already names the project.
        let options = match (&self.workforce_pool_user_project, &self.client) {
            (Some(project), None) => {
                Some(serde_json::json!({ "userProject": project }).to_string())
            }
            _ => None,
        };
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("audience", self.audience.as_str()),
            ("scope", scope.as_str()),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token", subject.expose()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let Some(options) = &options {
            form.push(("options", options));
        }
        let mut call = Call::post_form(self.token_url.clone(), &form, "token exchange");
        drop(form);
        drop(subject);
        if let Some((client_id, secret)) = &self.client {
            call = call.basic_auth(client_id, secret);
        }
        let endpoint = http::endpoint_label(&self.token_url);
        let reply = http::send(&call).await.map_err(|e| self.explain(e))?;
        sts_access_token(&endpoint, &reply.body, reply.sent_at)
    }

    fn explain(&self, e: Error) -> Error {
        let origin = self.origin.clone();
        let from = format!(
            "the {} subject token ({})",
            self.federation.credential_source, self.federation.subject_from
        );
        error::with_hint(e, None, move |code| {
            match code {
            Some("invalid_grant") => format!(
                "STS refused {from}: check that the pool provider's issuer, allowed audiences and \
                 attribute condition accept it, and that it has not expired"
            ),
            Some("invalid_target") => format!(
                "`audience` in {origin} names no enabled pool provider: check that the pool and \
                 provider exist and are enabled (`gcloud iam workload-identity-pools providers describe`)"
            ),
            Some("invalid_request") => format!(
                "STS could not read the request: check `subject_token_type` in {origin} against \
                 what the credential source yields (jwt, id_token, saml2, aws4_request)"
            ),
            Some("invalid_client") | Some("unauthorized_client") => format!(
                "the OAuth client (`client_id`/`client_secret`) in {origin} is unknown or not allowed"
            ),
            Some("invalid_scope") => "STS refused the requested scopes".to_owned(),
            _ => format!(
                "the token exchange for {from} was refused; `adk-token-exchange doctor` explains the credential"
            ),
        }
        })
    }
}

/// STS's answer: RFC 8693 §2.2.1 `{"access_token", "issued_token_type",
/// "token_type", "expires_in"}`. `expires_in` may be a numeric string
/// (google-auth accepts both).
fn sts_access_token(
    endpoint: &str,
    body: &[u8],
    issued_at: std::time::SystemTime,
) -> Result<Token> {
    let mut r = ResponseFields::parse(endpoint, body)?;
    let value = r
        .secret("access_token")?
        .ok_or_else(|| invalid(endpoint, "no `access_token` in the response".into()))?;
    let secs = match r.number("expires_in") {
        Ok(Some(n)) => n,
        Ok(None) => return Err(invalid(endpoint, "no `expires_in` in the response".into())),
        Err(_) => r
            .string("expires_in")?
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| invalid(endpoint, "`expires_in` is not a number".into()))?,
    };
    access_token_expiring_in(endpoint, value, secs, issued_at)
}

impl fmt::Debug for StsExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsExchange")
            .field("audience", &self.audience)
            .field("subject_token_type", &self.subject_token_type)
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client.as_ref().map(|(id, _)| id))
            .field("source", &self.source)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TokenSource for StsExchange {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(async move {
            match request {
                TokenRequest::Access { scopes } => self.exchange(scopes).await,
                TokenRequest::Id { .. } => {
                    Err(missing_impersonation(&self.origin, &self.federation))
                }
                TokenRequest::SignedJwt { .. } => Err(super::signed_jwt::cannot_sign(
                    "a workload identity federation credential",
                )),
            }
        })
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            kind: SourceKind::ExternalAccount,
            origin: self.origin.clone(),
            principal: None,
            impersonating: None,
            quota_project_id: self.quota_project_id.clone(),
            token_uri: Some(http::endpoint_label(&self.token_url)),
            federation: Some(self.federation.clone()),
        }
    }
}

/// The error for an ID token from a federated credential without
/// impersonation: Google's STS issues access tokens only.
fn missing_impersonation(origin: &str, f: &Federation) -> Error {
    let (command, target) = match (f.pool_kind, &f.location, &f.pool_id, &f.provider_id) {
        (Some("workforce"), Some(l), Some(p), Some(v)) => (
            "workforce-pools",
            format!("locations/{l}/workforcePools/{p}/providers/{v}"),
        ),
        (Some("workload"), Some(l), Some(p), Some(v)) => (
            "workload-identity-pools",
            format!(
                "projects/{}/locations/{l}/workloadIdentityPools/{p}/providers/{v}",
                f.project_number.as_deref().unwrap_or("PROJECT_NUMBER")
            ),
        ),
        _ => (
            "workload-identity-pools",
            "PROVIDER_RESOURCE_NAME".to_owned(),
        ),
    };
    Error::Config(format!(
        "{origin}: an ID token from Workload Identity Federation needs service account \
         impersonation, and this external_account file has no `service_account_impersonation_url` \
         (Google's STS issues access tokens only). Recreate it with the service account that \
         should call the service: `gcloud iam {command} create-cred-config {target} \
         --service-account=SA_EMAIL ...` (grant that account roles/run.invoker on the service, and \
         the pool's principals roles/iam.workloadIdentityUser on it), or pass impersonate=\"SA_EMAIL\""
    ))
}

/// The pool and provider an `audience` names:
/// `//iam.googleapis.com/projects/N/locations/L/workloadIdentityPools/POOL/providers/PROVIDER`
/// or `//iam.googleapis.com/locations/L/workforcePools/POOL/providers/PROVIDER`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pool {
    pub kind: Option<&'static str>,
    pub project_number: Option<String>,
    pub location: Option<String>,
    pub pool_id: Option<String>,
    pub provider_id: Option<String>,
}

impl Pool {
    pub fn parse(audience: &str) -> Self {
        let Some(rest) = audience.trim().strip_prefix("//") else {
            return Pool::default();
        };
        let mut parts = rest.split('/');
        let _host = parts.next();
        let parts: Vec<&str> = parts.collect();
        let ok = |s: &&str| !s.is_empty();
        match parts.as_slice() {
            ["projects", n, "locations", l, "workloadIdentityPools", p, "providers", v]
                if [n, l, p, v].iter().all(|s| ok(s)) =>
            {
                Pool {
                    kind: Some("workload"),
                    project_number: Some((*n).to_owned()),
                    location: Some((*l).to_owned()),
                    pool_id: Some((*p).to_owned()),
                    provider_id: Some((*v).to_owned()),
                }
            }
            ["locations", l, "workforcePools", p, "providers", v]
                if [l, p, v].iter().all(|s| ok(s)) =>
            {
                Pool {
                    kind: Some("workforce"),
                    project_number: None,
                    location: Some((*l).to_owned()),
                    pool_id: Some((*p).to_owned()),
                    provider_id: Some((*v).to_owned()),
                }
            }
            _ => Pool::default(),
        }
    }

    /// `POOL/PROVIDER`, or `?` when the audience is not a provider name.
    fn label(&self) -> String {
        match (&self.pool_id, &self.provider_id) {
            (Some(p), Some(v)) => format!("{p}/{v}"),
            _ => "?".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;

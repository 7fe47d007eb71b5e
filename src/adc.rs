//! Application Default Credentials: which credential to use when the caller
//! names none, in the order google-auth and gcloud use
//! (<https://google.aip.dev/auth/4110>,
//! <https://cloud.google.com/docs/authentication/application-default-credentials>):
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS`: a credential file. Set but empty
//!    counts as unset; set to a path that does not exist is an error naming
//!    the variable, not a silent fall-through (as google-auth does).
//! 2. gcloud's well-known file `application_default_credentials.json` in
//!    `$CLOUDSDK_CONFIG`, else `~/.config/gcloud` (`%APPDATA%\gcloud` on
//!    Windows), written by `gcloud auth application-default login`.
//! 3. The metadata server, if one answers the detection ping at
//!    `http://$GCE_METADATA_IP/` (default `169.254.169.254`) with
//!    `Metadata-Flavor: Google` within `metadata_detect_timeout` (3 s).
//!
//! Credential files may be `service_account`, `authorized_user`,
//! `impersonated_service_account`, `external_account` (Workload Identity
//! Federation) or `external_account_authorized_user` (a workforce login);
//! anything else is refused with the list of supported types. Files are
//! read with a 1 MiB cap and their contents never appear in errors.
//!
//! Any credential can be combined with [`Impersonation`], so a developer's
//! gcloud login mints tokens as (and with the audience of) a service account.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{adc, request::TokenRequest};
//! let resolved = adc::application_default(None).await?;
//! for step in &resolved.steps {
//!     println!("{step}");
//! }
//! let token = resolved.source.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::cache::CachedSource;
use crate::error::{Error, Result};
use crate::http::{self, Call};
use crate::sources::agent_identity::{self, AgentIdentity};
use crate::sources::authorized_user::AuthorizedUser;
use crate::sources::external_account::ExternalAccount;
use crate::sources::external_account_authorized_user::ExternalAccountAuthorizedUser;
use crate::sources::impersonated::{ImpersonatedServiceAccount, Impersonation};
use crate::sources::metadata::{self, MetadataServer};
use crate::sources::service_account::ServiceAccountKey;
use crate::sources::{CredentialFile, SourceDescription, SourceKind, TokenSource};

/// The variable naming a credential file.
pub const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The variable naming gcloud's configuration directory.
pub const CLOUDSDK_CONFIG_VAR: &str = "CLOUDSDK_CONFIG";
/// The variable naming the metadata server address for the detection ping.
pub const METADATA_IP_VAR: &str = "GCE_METADATA_IP";
pub const DEFAULT_METADATA_IP: &str = "169.254.169.254";
/// gcloud's ADC file name.
pub const WELL_KNOWN_FILE: &str = "application_default_credentials.json";
/// Largest credential file read; real ones are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

const SUPPORTED: &str = "service_account, authorized_user, impersonated_service_account, \
                         external_account, external_account_authorized_user";

/// The outcome of ADC discovery.
pub struct Found {
    pub source: Arc<dyn TokenSource>,
    /// One human line per step checked, in order, for `doctor`.
    pub steps: Vec<String>,
}

impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Found")
            .field("source", &self.source)
            .field("steps", &self.steps)
            .finish()
    }
}

/// Runs the ADC chain; may ping the metadata server (bounded by
/// `metadata_detect_timeout`). Nothing found → [`Error::NoCredentials`];
/// a broken file on the way → [`Error::Config`].
pub async fn application_default(impersonation: Option<Impersonation>) -> Result<Found> {
    let mut steps = Vec::new();

    match std::env::var_os(CREDENTIALS_VAR) {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            let origin = format!("{CREDENTIALS_VAR}={}", path.display());
            let source = load_file(&path, &origin, impersonation)?;
            steps.push(format!("{origin}: {}", summary(&source.describe())));
            return Ok(Found { source, steps });
        }
        _ => steps.push(format!("{CREDENTIALS_VAR}: not set")),
    }

    match well_known_file() {
        Some(path) if path.exists() => {
            let origin = path.display().to_string();
            let source = load_file(&path, &origin, impersonation)?;
            steps.push(format!("gcloud credentials {origin}: {}", summary(&source.describe())));
            return Ok(Found { source, steps });
        }
        Some(path) => steps.push(format!(
            "gcloud credentials {}: not found (created by `gcloud auth application-default login`)",
            path.display()
        )),
        None => steps.push(format!(
            "gcloud credentials: no configuration directory ({CLOUDSDK_CONFIG_VAR}, HOME and APPDATA unset)"
        )),
    }

    let (ip, detected) = detect_metadata_server().await;
    match detected {
        Ok(()) => {
            let md = MetadataServer::from_env()?;
            steps.push(format!(
                "metadata server at {ip}: found; tokens from {}",
                md.base_url()
            ));
            let source: Arc<dyn TokenSource> = match (impersonation, agent_identity::detected()) {
                // Agent Identity: ID tokens as the invoker account (an explicit
                // impersonation wins); see sources/agent_identity.rs.
                (None, Some(why)) => {
                    let ai = AgentIdentity::new(
                        CachedSource::wrap(Arc::new(md)),
                        agent_identity::invoker_from_env(),
                        why,
                    )?;
                    steps.push(ai.step());
                    Arc::new(ai)
                }
                (impersonation, _) => with_impersonation(Arc::new(md), impersonation)?,
            };
            Ok(Found { source, steps })
        }
        Err(why) => {
            steps.push(format!("metadata server at {ip}: {why}"));
            Err(Error::NoCredentials { tried: steps })
        }
    }
}

/// A source from credential JSON (no I/O). `origin` names it in errors,
/// e.g. `service_account_credential` or a path.
pub fn from_json(
    json: &str,
    origin: &str,
    impersonation: Option<Impersonation>,
) -> Result<Arc<dyn TokenSource>> {
    let file = CredentialFile::parse(json, origin)?;
    let source = from_credential_file(file, origin)?;
    with_impersonation(source, impersonation)
}

/// A source from a credential file (at most 1 MiB).
pub fn from_file(
    path: &Path,
    impersonation: Option<Impersonation>,
) -> Result<Arc<dyn TokenSource>> {
    load_file(path, &path.display().to_string(), impersonation)
}

/// What "whatever ADC resolves to" is remembered by, before resolving:
/// `adc`, or `adc>DELEGATE>…>TARGET` with impersonation. Not a cache
/// identity: tokens are cached under the resolved source's.
pub fn application_default_key(impersonation: Option<&Impersonation>) -> String {
    let mut id = "adc".to_owned();
    if let Some(imp) = impersonation {
        for d in &imp.delegates {
            id.push('>');
            id.push_str(d.trim().trim_start_matches("projects/-/serviceAccounts/"));
        }
        id.push('>');
        id.push_str(imp.target.trim());
    }
    id
}

/// gcloud's ADC file path: `$CLOUDSDK_CONFIG/…`, else `~/.config/gcloud/…`
/// (`%APPDATA%\gcloud\…` on Windows). `None` without any of those variables.
pub fn well_known_file() -> Option<PathBuf> {
    let platform = if cfg!(windows) {
        Platform::Windows
    } else {
        Platform::Unix
    };
    well_known_file_on(platform, |var| std::env::var_os(var))
}

/// The operating-system families whose gcloud configuration directory differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Unix,
    Windows,
}

/// [`well_known_file`] for `platform`, reading variables through `var`: a
/// pure function, so each platform's choice is tested on any host. Empty
/// variables count as unset, as gcloud does.
pub fn well_known_file_on(
    platform: Platform,
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let non_empty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = match non_empty(CLOUDSDK_CONFIG_VAR) {
        Some(dir) => dir,
        None if platform == Platform::Windows => non_empty("APPDATA")?.join("gcloud"),
        None => non_empty("HOME")?.join(".config").join("gcloud"),
    };
    Some(dir.join(WELL_KNOWN_FILE))
}

/// Pings the metadata server as google-auth does: `GET http://$GCE_METADATA_IP/`
/// with `Metadata-Flavor: Google`; found only if a 200 carries the same
/// header back. Returns the address pinged and why it was not found.
pub async fn detect_metadata_server() -> (String, std::result::Result<(), String>) {
    let ip = std::env::var(METADATA_IP_VAR)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_METADATA_IP.to_owned());
    let Ok(url) = reqwest::Url::parse(&format!("http://{ip}/")) else {
        return (
            ip.clone(),
            Err(format!("{METADATA_IP_VAR}={ip:?} is not a host[:port]")),
        );
    };
    let settings = crate::config::settings();
    let budget = settings.metadata_detect_timeout;
    let call = Call::get(url, "metadata server detection")
        .header(metadata::FLAVOR_HEADER, metadata::FLAVOR_VALUE)
        .direct();
    let outcome = match http::send_with(&call, &settings, budget).await {
        Ok(reply) => {
            let flavor = reply
                .headers
                .get(metadata::FLAVOR_HEADER)
                .and_then(|v| v.to_str().ok());
            if reply.status == 200 && flavor == Some(metadata::FLAVOR_VALUE) {
                Ok(())
            } else {
                Err(
                    "answered without `Metadata-Flavor: Google`, so it is not a metadata server"
                        .to_owned(),
                )
            }
        }
        Err(Error::Timeout { .. }) => Err(format!(
            "no answer within {:.1} s (not running on Google Cloud)",
            budget.as_secs_f64()
        )),
        Err(Error::Rejected { status, .. }) => Err(format!(
            "answered HTTP {status}, so it is not a metadata server"
        )),
        Err(e) => Err(format!("not reachable (not running on Google Cloud): {e}")),
    };
    (ip, outcome)
}

fn load_file(
    path: &Path,
    origin: &str,
    impersonation: Option<Impersonation>,
) -> Result<Arc<dyn TokenSource>> {
    let bytes = read_credential_file(path, origin)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Error::Config(format!(
            "{origin}: the file is not UTF-8 text, so not a credential JSON file"
        ))
    })?;
    let file = CredentialFile::parse(text, origin)?;
    let source = from_credential_file(file, origin)?;
    with_impersonation(source, impersonation)
}

/// Why a credential file could not be read, as the user fixes it. A function
/// of the error alone, so every platform's answer (a Windows ACL, a Unix mode,
/// which root never sees) is tested on any host.
fn file_read_error(origin: &str, e: &std::io::Error) -> Error {
    Error::Config(match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{origin}: the file does not exist; fix the path or unset it")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{origin}: the file cannot be read (permission denied)")
        }
        _ => format!("{origin}: the file cannot be read ({e})"),
    })
}

fn read_credential_file(path: &Path, origin: &str) -> Result<Zeroizing<Vec<u8>>> {
    let io_error = |e: std::io::Error| file_read_error(origin, &e);
    let meta = std::fs::metadata(path).map_err(io_error)?;
    if meta.is_dir() {
        return Err(Error::Config(format!(
            "{origin}: is a directory; expected a credential JSON file"
        )));
    }
    if !meta.is_file() {
        // A FIFO would block the open; a device like /dev/zero never ends.
        return Err(Error::Config(format!(
            "{origin}: is not a regular file (a device, FIFO or socket); expected a credential JSON file"
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::Config(format!(
            "{origin}: the file is {} bytes; a credential file is a few KiB (limit 1 MiB)",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::Config(format!(
            "{origin}: the file is larger than 1 MiB; a credential file is a few KiB"
        )));
    }
    Ok(bytes)
}

/// The source a parsed credential file describes.
pub fn from_credential_file(file: CredentialFile, origin: &str) -> Result<Arc<dyn TokenSource>> {
    let mut kind = file.kind.as_deref().map(str::trim).unwrap_or("");
    // google-auth's service-account loader (which ADK's own exchanger uses)
    // never reads `type`; an ADK model with it left empty still means a key.
    if kind.is_empty() && file.private_key.is_some() && file.client_email.is_some() {
        kind = "service_account";
    }
    Ok(match kind {
        "service_account" => Arc::new(ServiceAccountKey::from_file(file, origin)?),
        "authorized_user" => Arc::new(AuthorizedUser::from_file(file, origin)?),
        "impersonated_service_account" => Arc::new(ImpersonatedServiceAccount::from_file(
            file,
            origin,
            |inner, origin| from_credential_file(inner, origin).map(CachedSource::wrap),
        )?),
        "external_account" => Arc::new(ExternalAccount::from_file(
            file,
            origin,
            CachedSource::wrap,
        )?),
        "external_account_authorized_user" => {
            Arc::new(ExternalAccountAuthorizedUser::from_file(file, origin)?)
        }
        "" => {
            return Err(Error::Config(format!(
                "{origin}: field `type` is missing; supported types: {SUPPORTED}"
            )))
        }
        other => {
            // Quote it only if it looks like a type name: a misplaced secret
            // in `type` must not reach an error message.
            let looks_like_a_type = other.len() <= 40
                && other.starts_with(|c: char| c.is_ascii_lowercase())
                && other
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let shown = if looks_like_a_type {
                format!("{other:?}")
            } else {
                "(not shown: not a type name)".to_owned()
            };
            return Err(Error::Config(format!(
                "{origin}: credential type {shown} is not supported; supported types: {SUPPORTED}"
            )));
        }
    })
}

fn with_impersonation(
    source: Arc<dyn TokenSource>,
    imp: Option<Impersonation>,
) -> Result<Arc<dyn TokenSource>> {
    match imp {
        Some(imp) => Ok(Arc::new(ImpersonatedServiceAccount::new(
            CachedSource::wrap(source),
            imp,
        )?)),
        None => Ok(source),
    }
}

/// One line saying what a source is, for ADC steps.
fn summary(d: &SourceDescription) -> String {
    let principal = d.principal.as_deref().unwrap_or("?");
    let base = match d.kind {
        SourceKind::ServiceAccount => format!("service account key for {principal}"),
        SourceKind::AuthorizedUser => format!("gcloud user login (OAuth client {principal})"),
        SourceKind::ImpersonatedServiceAccount => format!("credentials of {principal}"),
        SourceKind::Metadata => "metadata server".to_owned(),
        SourceKind::ExternalAccount | SourceKind::ExternalAccountAuthorizedUser => {
            match &d.federation {
                Some(f) => federation_summary(d.kind, f),
                None => d.kind.as_str().to_owned(),
            }
        }
    };
    match &d.impersonating {
        Some(target) => format!("{base}, impersonating {target}"),
        None => base,
    }
}

/// "workload identity federation (url subject token, pool P, provider V)".
fn federation_summary(kind: SourceKind, f: &crate::sources::Federation) -> String {
    let what = match (kind, f.pool_kind) {
        (SourceKind::ExternalAccountAuthorizedUser, _) => "workforce identity login",
        (_, Some("workforce")) => "workforce identity federation",
        _ => "workload identity federation",
    };
    let mut out = format!("{what} ({} subject token", f.credential_source);
    if let (Some(pool), Some(provider)) = (&f.pool_id, &f.provider_id) {
        out.push_str(&format!(", pool {pool}, provider {provider}"));
    }
    out.push(')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::TokenRequest;
    use crate::sources::impersonated::IAM_ENDPOINT_VAR;
    use crate::testing::{
        env_lock, jwt_expiring_in, key_json, user_json, EnvVars, TempDir, ENV_LOCK, PKCS8_PEM,
    };
    use crate::testing::{Answer, Server};

    const SA: &str = "agent@proj.iam.gserviceaccount.com";

    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    }

    /// A clean ADC environment: nothing set, metadata ping to a closed port.
    fn clean_env(home: &TempDir, metadata_ip: &str) -> EnvVars {
        EnvVars::set(&[
            (CREDENTIALS_VAR, None),
            (CLOUDSDK_CONFIG_VAR, None),
            ("HOME", Some(home.0.to_str().unwrap())),
            ("APPDATA", Some(home.0.to_str().unwrap())),
            (METADATA_IP_VAR, Some(metadata_ip)),
            (metadata::HOST_VAR, None),
            (metadata::LEGACY_HOST_VAR, None),
            (IAM_ENDPOINT_VAR, None),
        ])
    }

    fn sa_json() -> String {
        key_json(SA, PKCS8_PEM, "https://oauth2.googleapis.com/token")
    }

    #[tokio::test]
    async fn credentials_variable_pointing_nowhere_is_an_error_naming_it() {
        let _lock = ENV_LOCK.lock().await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        std::env::set_var(CREDENTIALS_VAR, "/nonexistent/key.json");
        let e = application_default(None).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(
            text.contains("GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json"),
            "{text}"
        );
        assert!(text.contains("does not exist"), "{text}");
    }

    #[tokio::test]
    async fn credentials_variable_wins_over_gclouds_file() {
        let _lock = ENV_LOCK.lock().await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        home.write(
            ".config/gcloud/application_default_credentials.json",
            &user_json(None),
        );
        let key = home.write("key.json", &sa_json());
        std::env::set_var(CREDENTIALS_VAR, &key);
        let r = application_default(None).await.unwrap();
        let d = r.source.describe();
        assert_eq!(d.kind, SourceKind::ServiceAccount);
        assert_eq!(
            d.origin,
            format!("GOOGLE_APPLICATION_CREDENTIALS={}", key.display())
        );
        assert_eq!(r.steps.len(), 1);
        assert!(r.steps[0].contains(SA), "{:?}", r.steps);
    }

    #[tokio::test]
    async fn empty_credentials_variable_counts_as_unset_and_gclouds_file_is_used() {
        let _lock = ENV_LOCK.lock().await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        std::env::set_var(CREDENTIALS_VAR, "");
        let path = home.write(
            ".config/gcloud/application_default_credentials.json",
            &user_json(None),
        );
        let r = application_default(None).await.unwrap();
        assert_eq!(r.source.describe().kind, SourceKind::AuthorizedUser);
        assert_eq!(r.source.describe().origin, path.display().to_string());
        assert_eq!(r.steps[0], "GOOGLE_APPLICATION_CREDENTIALS: not set");
        assert!(r.steps[1].contains("gcloud user login"), "{:?}", r.steps);
    }

    #[tokio::test]
    async fn cloudsdk_config_overrides_the_home_directory() {
        let _lock = ENV_LOCK.lock().await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        home.write(
            ".config/gcloud/application_default_credentials.json",
            &user_json(None),
        );
        let cfg = TempDir::new();
        cfg.write(WELL_KNOWN_FILE, &sa_json());
        std::env::set_var(CLOUDSDK_CONFIG_VAR, &cfg.0);
        let r = application_default(None).await.unwrap();
        assert_eq!(r.source.describe().kind, SourceKind::ServiceAccount);
    }

    #[tokio::test]
    async fn nothing_anywhere_lists_every_step_tried() {
        let _lock = ENV_LOCK.lock().await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        let e = application_default(None).await.unwrap_err();
        match &e {
            Error::NoCredentials { tried } => {
                assert_eq!(tried.len(), 3, "{tried:?}");
                assert!(tried[0].starts_with("GOOGLE_APPLICATION_CREDENTIALS: not set"));
                assert!(
                    tried[1].contains("application_default_credentials.json: not found"),
                    "{tried:?}"
                );
                assert!(
                    tried[2].starts_with("metadata server at 127.0.0.1:"),
                    "{tried:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn metadata_server_is_used_when_it_answers_the_ping_with_its_flavor() {
        let _lock = ENV_LOCK.lock().await;
        let server = Server::start(|_, req| {
            if req.target == "/" {
                Answer::text(200, "").with_header("Metadata-Flavor", "Google")
            } else {
                Answer::json(
                    200,
                    r#"{"access_token":"ya29.md","expires_in":3599,"token_type":"Bearer"}"#,
                )
                .with_header("Metadata-Flavor", "Google")
            }
        })
        .await;
        let home = TempDir::new();
        let _env = clean_env(&home, server.authority());
        std::env::set_var(metadata::HOST_VAR, server.authority());
        let r = application_default(None).await.unwrap();
        assert_eq!(r.source.describe().kind, SourceKind::Metadata);
        assert!(r
            .source
            .identity()
            .label()
            .starts_with(&format!("metadata:http://{}#", server.authority())));
        let t = r
            .source
            .fetch(&TokenRequest::access(Vec::<String>::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.md");
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .all(|s| s.header("metadata-flavor") == Some("Google")));
    }

    #[tokio::test]
    async fn agent_identity_mints_id_tokens_as_the_invoker_with_the_metadata_token() {
        let _lock = ENV_LOCK.lock().await;
        let jwt = jwt_expiring_in(3600);
        let server = Server::start(move |_, req| {
            if req.target.ends_with(":generateIdToken") {
                Answer::json(200, format!(r#"{{"token":"{jwt}"}}"#))
            } else if req.target == "/" {
                Answer::text(200, "").with_header("Metadata-Flavor", "Google")
            } else {
                Answer::json(200, r#"{"access_token":"ya29.md","expires_in":3599}"#)
                    .with_header("Metadata-Flavor", "Google")
            }
        })
        .await;
        let home = TempDir::new();
        let _env = clean_env(&home, server.authority());
        let _ai = EnvVars::set(&[
            (metadata::HOST_VAR, Some(server.authority())),
            (
                agent_identity::CERTIFICATE_CONFIG_VAR,
                Some("/run/certificate_config.json"),
            ),
            (
                agent_identity::INVOKER_VAR,
                Some("invoker@p.iam.gserviceaccount.com"),
            ),
            (IAM_ENDPOINT_VAR, Some(&server.base)),
        ]);
        let r = application_default(None).await.unwrap();
        assert!(
            r.steps.iter().any(|s| s.contains("Agent Identity")),
            "{:?}",
            r.steps
        );
        let d = r.source.describe();
        assert_eq!(
            d.impersonating.as_deref(),
            Some("invoker@p.iam.gserviceaccount.com")
        );
        let id = r
            .source
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(id.kind, crate::token::TokenKind::Id);
        let access = r
            .source
            .fetch(&TokenRequest::access(Vec::<String>::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            access.value.expose(),
            "ya29.md",
            "access tokens stay the agent's own"
        );
        let seen = server.seen();
        let iam: Vec<_> = seen
            .iter()
            .filter(|s| s.target.contains("serviceAccounts"))
            .collect();
        assert_eq!(iam.len(), 1);
        assert!(iam[0]
            .target
            .ends_with("invoker@p.iam.gserviceaccount.com:generateIdToken"));
        assert_eq!(iam[0].header("authorization"), Some("Bearer ya29.md"));
        assert!(!seen.iter().any(|s| s.target.contains("/identity")));
    }

    #[tokio::test]
    async fn a_ping_answer_without_the_flavor_header_is_not_a_metadata_server() {
        let _lock = ENV_LOCK.lock().await;
        let server = Server::always(Answer::text(200, "hello")).await;
        let home = TempDir::new();
        let _env = clean_env(&home, server.authority());
        let e = application_default(None).await.unwrap_err();
        assert!(matches!(e, Error::NoCredentials { .. }), "{e:?}");
        assert!(e.to_string().contains("not a metadata server"), "{e}");
    }

    #[test]
    fn unknown_type_lists_the_supported_ones() {
        let e = from_json(
            r#"{"type":"gdch_service_account","audience":"x"}"#,
            "wif.json",
            None,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("wif.json") && text.contains("\"gdch_service_account\""),
            "{text}"
        );
        assert!(text.contains(SUPPORTED), "{text}");
        let e = from_json(
            r#"{"type":"1//SENTINEL-refresh","refresh_token":"1//SENTINEL-refresh"}"#,
            "x.json",
            None,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
        let e = from_json(r#"{"client_email":"a@b"}"#, "x.json", None).unwrap_err();
        assert!(
            e.to_string().contains("x.json: field `type` is missing"),
            "{e}"
        );
    }

    #[test]
    fn adk_model_dumps_are_read_in_either_spelling() {
        let v: serde_json::Value = serde_json::from_str(&sa_json()).unwrap();
        let by_name = serde_json::json!({
            "type_": "service_account",
            "private_key": v["private_key"],
            "client_email": SA,
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let by_alias = serde_json::json!({
            "type": "service_account",
            "privateKey": v["private_key"],
            "clientEmail": SA,
            "privateKeyId": "k",
            "tokenUri": "https://oauth2.googleapis.com/token",
        });
        let untyped = serde_json::json!({"private_key": v["private_key"], "client_email": SA});
        for json in [by_name, by_alias, untyped] {
            let src = from_json(&json.to_string(), "service_account_credential", None).unwrap();
            assert_eq!(src.describe().principal.as_deref(), Some(SA));
        }
    }

    #[test]
    fn broken_json_is_described_without_quoting_it() {
        let e = from_json(
            r#"{"type":"authorized_user","refresh_token":"1//SENTINEL"#,
            "adc.json",
            None,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("adc.json: "), "{text}");
        assert!(!text.contains("SENTINEL"), "{text}");
        let e = from_json(
            r#"{"type":"service_account","delegates":"1//SENTINEL"}"#,
            "k.json",
            None,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
    }

    #[test]
    fn directories_huge_files_and_missing_paths_are_clear_config_errors() {
        let dir = TempDir::new();
        let e = from_file(&dir.0, None).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let big = dir.write("big.json", &" ".repeat(MAX_FILE_BYTES as usize + 1));
        let e = from_file(&big, None).unwrap_err();
        assert!(e.to_string().contains("limit 1 MiB"), "{e}");
        let e = from_file(&dir.0.join("nope.json"), None).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn gclouds_file_is_under_appdata_on_windows_and_home_elsewhere() {
        let env = vars(&[
            ("HOME", "/home/dev"),
            ("APPDATA", r"C:\Users\dev\AppData\Roaming"),
        ]);
        let windows = well_known_file_on(Platform::Windows, &env).unwrap();
        assert!(
            windows.starts_with(r"C:\Users\dev\AppData\Roaming"),
            "{windows:?}"
        );
        assert!(
            windows.ends_with(Path::new("gcloud").join(WELL_KNOWN_FILE)),
            "{windows:?}"
        );
        let unix = well_known_file_on(Platform::Unix, &env).unwrap();
        assert_eq!(
            unix,
            Path::new("/home/dev/.config/gcloud").join(WELL_KNOWN_FILE)
        );
    }

    #[test]
    fn cloudsdk_config_wins_on_every_platform() {
        let env = vars(&[
            ("HOME", "/home/dev"),
            ("APPDATA", r"C:\Users\dev\AppData\Roaming"),
            (CLOUDSDK_CONFIG_VAR, "/etc/gcloud-config"),
        ]);
        for platform in [Platform::Unix, Platform::Windows] {
            assert_eq!(
                well_known_file_on(platform, &env).unwrap(),
                Path::new("/etc/gcloud-config").join(WELL_KNOWN_FILE),
                "{platform:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_credential_file_says_permission_denied_on_any_platform() {
        // Tests run as root on CI, where chmod 000 changes nothing: simulate
        // the error a Windows ACL or a Unix mode gives.
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = file_read_error("GOOGLE_APPLICATION_CREDENTIALS=C:\\keys\\k.json", &denied);
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("k.json: the file cannot be read (permission denied)"),
            "{e}"
        );
        let other = std::io::Error::other("sharing violation");
        assert!(file_read_error("k.json", &other)
            .to_string()
            .contains("cannot be read (sharing violation)"));
    }

    #[test]
    fn windows_ignores_home_and_empty_variables_count_as_unset() {
        // gcloud on Windows never looks at HOME (set by Git Bash and MSYS).
        let only_home = vars(&[("HOME", "/c/Users/dev"), ("APPDATA", "")]);
        assert_eq!(well_known_file_on(Platform::Windows, &only_home), None);
        let empty = vars(&[(CLOUDSDK_CONFIG_VAR, ""), ("HOME", "")]);
        assert_eq!(well_known_file_on(Platform::Unix, &empty), None);
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_refused_without_reading_them() {
        let e = from_file(Path::new("/dev/zero"), None).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn files_that_are_not_json_objects_are_named() {
        let dir = TempDir::new();
        for (name, content) in [
            ("empty.json", ""),
            ("array.json", "[1, 2]"),
            ("text.json", "not json"),
            ("truncated.json", r#"{"type": "service_account","#),
        ] {
            let path = dir.write(name, content);
            let e = from_file(&path, None).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{name}: {e:?}");
            assert!(
                e.to_string().contains(&path.display().to_string()),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn a_field_of_the_wrong_json_type_is_named() {
        for (json, field) in [
            (r#"{"type": 5}"#, "type"),
            (
                r#"{"type": "service_account", "client_email": 5}"#,
                "client_email",
            ),
            (
                r#"{"type": "service_account", "private_key": ["x"]}"#,
                "private_key",
            ),
            (
                r#"{"type": "impersonated_service_account", "delegates": "d"}"#,
                "delegates",
            ),
        ] {
            let e = from_json(json, "k.json", None).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("k.json: field `{field}` must be")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_utf8_bom_is_ignored() {
        let src = from_json(&format!("\u{feff}{}", sa_json()), "bom.json", None).unwrap();
        assert_eq!(src.describe().principal.as_deref(), Some(SA));
    }

    #[test]
    fn an_impersonated_file_targets_the_urls_service_account() {
        let json = serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url":
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/mcp@p.iam.gserviceaccount.com:generateAccessToken",
            "delegates": [],
            "quota_project_id": "qp",
            "source_credentials": serde_json::from_str::<serde_json::Value>(&user_json(None)).unwrap(),
        })
        .to_string();
        let src = from_json(&json, "adc.json", None).unwrap();
        let d = src.describe();
        assert_eq!(d.kind, SourceKind::ImpersonatedServiceAccount);
        assert_eq!(
            d.impersonating.as_deref(),
            Some("mcp@p.iam.gserviceaccount.com")
        );
        assert_eq!(d.quota_project_id.as_deref(), Some("qp"));
        let label = src.identity().label();
        assert!(
            label.starts_with("user:764086051850-test.apps.googleusercontent.com#")
                && label.contains(">mcp@p.iam.gserviceaccount.com#"),
            "{label}"
        );
    }

    #[test]
    fn nested_source_credential_errors_name_where_they_are() {
        let json = serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url":
                "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/mcp@p.iam.gserviceaccount.com:generateAccessToken",
            "source_credentials": {"type": "authorized_user", "client_id": "c"},
        })
        .to_string();
        let e = from_json(&json, "adc.json", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("adc.json: source_credentials: field `client_secret`"),
            "{e}"
        );
    }

    #[test]
    fn explicit_impersonation_wraps_any_source() {
        let _lock = env_lock();
        let _env = EnvVars::set(&[(IAM_ENDPOINT_VAR, None)]);
        let imp = Impersonation::new("mcp@p.iam.gserviceaccount.com");
        let src = from_json(&sa_json(), "service_account_credential", Some(imp.clone())).unwrap();
        assert!(src.identity().label().contains(&format!("sa:{SA}#")));
        assert_eq!(src.describe().principal.as_deref(), Some(SA));
        assert_eq!(application_default_key(None), "adc");
        assert_eq!(
            application_default_key(Some(&imp)),
            "adc>mcp@p.iam.gserviceaccount.com"
        );
    }

    #[tokio::test]
    async fn gcloud_login_impersonating_a_service_account_mints_an_id_token_with_the_real_audience()
    {
        let _lock = ENV_LOCK.lock().await;
        let jwt = jwt_expiring_in(3600);
        let jwt2 = jwt.clone();
        let google = Server::start(move |_, req| {
            if req.target == "/token" {
                Answer::json(200, r#"{"access_token":"ya29.user","expires_in":3599}"#)
            } else {
                Answer::json(200, format!(r#"{{"token":"{jwt2}"}}"#))
            }
        })
        .await;
        let home = TempDir::new();
        let _env = clean_env(&home, &closed_port());
        std::env::set_var(IAM_ENDPOINT_VAR, &google.base);
        home.write(
            ".config/gcloud/application_default_credentials.json",
            &user_json(Some(&format!("{}/token", google.base))),
        );
        let r = application_default(Some(Impersonation::new("mcp@p.iam.gserviceaccount.com")))
            .await
            .unwrap();
        assert!(
            r.steps[1].contains("impersonating mcp@p.iam.gserviceaccount.com"),
            "{:?}",
            r.steps
        );
        let t = r
            .source
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), jwt);
        let seen = google.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].target, "/token");
        assert_eq!(
            seen[1].target,
            "/v1/projects/-/serviceAccounts/mcp@p.iam.gserviceaccount.com:generateIdToken"
        );
        assert_eq!(seen[1].header("authorization"), Some("Bearer ya29.user"));
    }
}

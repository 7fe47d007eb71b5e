//! Where a federated credential's subject token comes from: the
//! `credential_source` object of an `external_account` file (AIP-4117,
//! <https://google.aip.dev/auth/4117>): a `file`, a `url` (with `headers`),
//! an `executable`, or AWS (`environment_id: "aws1"`); the first two in
//! `format` `text` (the whole content) or `json` (one field of it).
//!
//! Every read is capped at [`MAX_SUBJECT_TOKEN`] bytes and bounded in time;
//! nothing read is ever quoted in an error.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use reqwest::Url;
use zeroize::Zeroizing;

use super::aws::Aws;
use super::executable::Executable;
use crate::error::{Error, Result};
use crate::http::{self, Call};
use crate::identity::IdentityBuilder;
use crate::sources::{json_problem, JsonObject};
use crate::token::Secret;

/// Largest subject token (or executable answer) read. An OIDC token is
/// ~1 KiB, a signed SAML response tens of KiB.
pub const MAX_SUBJECT_TOKEN: usize = 256 * 1024;

/// What the credential source is asked for, from the credential file.
pub struct SubjectContext<'a> {
    pub audience: &'a str,
    pub subject_token_type: &'a str,
    /// The service account the STS token will impersonate, if any.
    pub impersonated_email: Option<&'a str>,
    /// The credential file, for errors.
    pub origin: &'a str,
}

/// A parsed `credential_source`.
pub enum CredentialSource {
    File {
        path: PathBuf,
        format: Format,
    },
    Url {
        url: Url,
        /// Names as written; values may be secrets (a request token).
        headers: Vec<(String, Secret)>,
        format: Format,
    },
    Executable(Executable),
    Aws(Aws),
}

/// `credential_source.format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The whole content, trimmed.
    Text,
    /// The string field `subject_token_field_name` of a JSON object.
    Json { field: String },
}

impl CredentialSource {
    /// Reads `credential_source` field by field; errors name `origin` and
    /// the field (`credential_source.url`, …), never a value.
    pub(crate) fn parse(object: JsonObject, origin: &str) -> Result<Self> {
        let mut f = Fields::new(object, origin, "credential_source");
        if f.has("certificate") {
            return Err(Error::Config(format!(
                "{}: X.509 certificate-sourced federation (mTLS) is not supported; use a file, \
                 url, executable or aws credential source",
                f.name("certificate")
            )));
        }
        if f.has("environment_id") {
            return Ok(CredentialSource::Aws(Aws::parse(f)?));
        }
        if let Some(exe) = f.object("executable")? {
            return Ok(CredentialSource::Executable(Executable::parse(exe)?));
        }
        let file = f.string("file")?;
        let url = f.string("url")?;
        let format = match f.object("format")? {
            None => Format::Text,
            Some(mut fmt) => {
                let kind = fmt.string("type")?.unwrap_or_else(|| "text".into());
                match kind.trim() {
                    "text" => Format::Text,
                    "json" => Format::Json {
                        field: fmt.string("subject_token_field_name")?.ok_or_else(|| {
                            Error::Config(format!(
                                "{} is missing (required with format type \"json\")",
                                fmt.name("subject_token_field_name")
                            ))
                        })?,
                    },
                    _ => {
                        return Err(Error::Config(format!(
                            "{} must be \"text\" or \"json\"",
                            fmt.name("type")
                        )))
                    }
                }
            }
        };
        match (file, url) {
            (Some(path), None) => Ok(CredentialSource::File {
                path: PathBuf::from(path),
                format,
            }),
            (None, Some(raw)) => {
                let url = subject_endpoint(&raw, &f.name("url"))?;
                let headers = f.secret_map("headers")?;
                Ok(CredentialSource::Url {
                    url,
                    headers,
                    format,
                })
            }
            (Some(_), Some(_)) => Err(Error::Config(format!(
                "{}: has both `file` and `url`; keep one",
                f.prefix()
            ))),
            (None, None) => Err(Error::Config(format!(
                "{}: names no subject token source; expected one of `file`, `url`, \
                 `executable` or `environment_id` (aws)",
                f.prefix()
            ))),
        }
    }

    /// The kind (`file`, `url`, `executable`, `aws`) and where from, for
    /// `doctor`: no header value, no command argument.
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            CredentialSource::File { path, .. } => ("file", path.display().to_string()),
            CredentialSource::Url { url, .. } => ("url", http::endpoint_label(url)),
            CredentialSource::Executable(e) => ("executable", e.program().to_owned()),
            CredentialSource::Aws(a) => ("aws", a.describe()),
        }
    }

    /// Feeds everything that decides which token is read into an identity.
    pub(crate) fn identify(&self, id: &mut IdentityBuilder) {
        match self {
            CredentialSource::File { path, format } => {
                id.part(b"file").part(path.as_os_str().as_encoded_bytes());
                identify_format(id, format);
            }
            CredentialSource::Url {
                url,
                headers,
                format,
            } => {
                id.part(b"url").part(url.as_str().as_bytes());
                for (name, value) in headers {
                    id.part(name.to_ascii_lowercase().as_bytes())
                        .fingerprint(value.expose().as_bytes());
                }
                identify_format(id, format);
            }
            CredentialSource::Executable(e) => {
                id.part(b"executable");
                e.identify(id);
            }
            CredentialSource::Aws(a) => {
                id.part(b"aws");
                a.identify(id);
            }
        }
    }

    /// A fresh subject token.
    pub async fn subject_token(&self, ctx: &SubjectContext<'_>) -> Result<Secret> {
        match self {
            CredentialSource::File { path, format } => {
                let what = format!("{}: credential_source.file {}", ctx.origin, path.display());
                let bytes = read_file_bounded(path.clone(), what.clone()).await?;
                token_from(&bytes, format).map_err(|why| Error::Config(format!("{what}: {why}")))
            }
            CredentialSource::Url {
                url,
                headers,
                format,
            } => {
                let endpoint = http::endpoint_label(url);
                let mut call = Call::get(url.clone(), "subject token request");
                for (name, value) in headers {
                    call = call.secret_header(name.clone(), value.clone());
                }
                if is_metadata_address(url) {
                    call = call.direct();
                }
                let reply = http::send(&call).await.map_err(|e| {
                    crate::error::with_hint(e, None, |_| {
                        format!(
                            "the subject token source `credential_source.url` of {} refused the \
                             request; check its `headers` (an expired request token?)",
                            ctx.origin
                        )
                    })
                })?;
                if reply.body.len() > MAX_SUBJECT_TOKEN {
                    return Err(super::super::invalid(
                        &endpoint,
                        format!("the subject token exceeds {} KiB", MAX_SUBJECT_TOKEN / 1024),
                    ));
                }
                token_from(&reply.body, format).map_err(|why| super::super::invalid(&endpoint, why))
            }
            CredentialSource::Executable(e) => e.subject_token(ctx).await,
            CredentialSource::Aws(a) => a.subject_token(ctx).await,
        }
    }
}

fn identify_format(id: &mut IdentityBuilder, format: &Format) {
    match format {
        Format::Text => id.part(b"text"),
        Format::Json { field } => id.part(b"json").part(field.as_bytes()),
    };
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::File { path, format } => f
                .debug_struct("File")
                .field("path", path)
                .field("format", format)
                .finish(),
            CredentialSource::Url {
                url,
                headers,
                format,
            } => f
                .debug_struct("Url")
                .field("url", &http::endpoint_label(url))
                .field(
                    "headers",
                    &headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                )
                .field("format", format)
                .finish(),
            CredentialSource::Executable(e) => e.fmt(f),
            CredentialSource::Aws(a) => a.fmt(f),
        }
    }
}

/// The subject token in `content`, per `format`; the error says why not,
/// without quoting anything.
pub(crate) fn token_from(content: &[u8], format: &Format) -> std::result::Result<Secret, String> {
    match format {
        Format::Text => {
            let text = std::str::from_utf8(content).map_err(|_| "is not UTF-8 text".to_owned())?;
            let text = text.trim();
            if text.is_empty() {
                return Err("is empty: no subject token".into());
            }
            Ok(Secret::new(text))
        }
        Format::Json { field } => {
            let mut value: serde_json::Value = serde_json::from_slice(content)
                .map_err(|e| json_problem(&e, "the subject token source's content"))?;
            let found = match &mut value {
                serde_json::Value::Object(map) => {
                    match map.remove(field) {
                        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                            Ok(Secret::new(s.trim()))
                        }
                        Some(mut other) => {
                            scrub(&mut other);
                            Err(format!("field `{field}` (subject_token_field_name) is not a non-empty string"))
                        }
                        None => Err(format!("has no field `{field}` (subject_token_field_name)")),
                    }
                }
                _ => Err("is not a JSON object".into()),
            };
            scrub(&mut value);
            found
        }
    }
}

fn scrub(v: &mut serde_json::Value) {
    // A JsonObject scrubs what it holds on drop.
    if let serde_json::Value::Object(map) = std::mem::take(v) {
        drop(JsonObject(map));
    } else if let serde_json::Value::String(mut s) = std::mem::take(v) {
        zeroize::Zeroize::zeroize(&mut s);
    }
}

/// A URL a subject token (or AWS credentials) is fetched from: https, or
/// plain http only to loopback or the cloud metadata addresses; no user
/// name or password. `what` names the field in errors.
pub(crate) fn subject_endpoint(raw: &str, what: &str) -> Result<Url> {
    let refuse = |shown: &str, why: &str| {
        Error::Config(format!(
            "{what}: {shown} is refused: {why}; a subject token source must be https, or plain \
             http to loopback or the metadata addresses 169.254.169.254 and [fd00:ec2::254] only \
             (its request headers may carry a secret)"
        ))
    };
    let url = Url::parse(raw.trim()).map_err(|_| refuse("the URL", "not a valid absolute URL"))?;
    let shown = format!("{:?}", http::endpoint_label(&url));
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(&shown, "it carries a user name or password"));
    }
    match url.scheme() {
        "https" if url.host_str().is_some() => Ok(url),
        "http" if http::is_loopback(&url) || is_metadata_address(&url) => Ok(url),
        "http" => Err(refuse(
            &shown,
            "plain http to a host that is neither loopback nor a metadata address",
        )),
        _ => Err(refuse(&shown, "not http(s)")),
    }
}

/// AWS's and Azure's instance metadata addresses (link-local, never proxied).
pub(crate) fn is_metadata_address(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(IpAddr::V4(ip)) => ip == Ipv4Addr::new(169, 254, 169, 254),
        Ok(IpAddr::V6(ip)) => ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        Err(_) => false,
    }
}

/// Reads a small regular file off the runtime's threads, within the request timeout.
pub(crate) async fn read_file_bounded(path: PathBuf, what: String) -> Result<Zeroizing<Vec<u8>>> {
    let budget = crate::config::settings().request_timeout;
    let what2 = what.clone();
    let task = tokio::task::spawn_blocking(move || read_capped(&path, &what2, MAX_SUBJECT_TOKEN));
    match tokio::time::timeout(budget, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(Error::Internal(format!("{what}: the read was cancelled"))),
        Err(_) => Err(Error::Config(format!(
            "{what}: reading it took longer than {:.1} s",
            budget.as_secs_f64()
        ))),
    }
}

/// A regular file of at most `cap` bytes (a FIFO or device is refused before opening).
pub(crate) fn read_capped(path: &Path, what: &str, cap: usize) -> Result<Zeroizing<Vec<u8>>> {
    let io = |e: std::io::Error| {
        Error::Config(match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what}: does not exist"),
            std::io::ErrorKind::PermissionDenied => {
                format!("{what}: cannot be read (permission denied)")
            }
            _ => format!("{what}: cannot be read ({e})"),
        })
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{what}: is not a regular file (a directory, device, FIFO or socket)"
        )));
    }
    let too_big = || Error::Config(format!("{what}: is larger than {} KiB", cap / 1024));
    if meta.len() > cap as u64 {
        return Err(too_big());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    std::fs::File::open(path)
        .map_err(io)?
        .take(cap as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > cap {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Reads the fields of a nested object of a credential file; errors name
/// `origin: field \`prefix.name\``.
pub(crate) struct Fields {
    object: JsonObject,
    origin: String,
    prefix: String,
}

impl Fields {
    pub(crate) fn new(object: JsonObject, origin: &str, prefix: &str) -> Self {
        Fields {
            object,
            origin: origin.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// `origin: field \`prefix.name\``.
    pub(crate) fn name(&self, field: &str) -> String {
        format!("{}: field `{}.{field}`", self.origin, self.prefix)
    }

    /// `origin: field \`prefix\``.
    pub(crate) fn prefix(&self) -> String {
        format!("{}: field `{}`", self.origin, self.prefix)
    }

    pub(crate) fn has(&self, field: &str) -> bool {
        self.object.keys().any(|k| k == field)
    }

    fn wrong(&self, field: &str, want: &str) -> Error {
        Error::Config(format!("{} must be {want}", self.name(field)))
    }

    /// A string field, trimmed; blank counts as absent.
    pub(crate) fn string(&mut self, field: &str) -> Result<Option<String>> {
        match self.object.take(field) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => {
                Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
            }
            Some(mut other) => {
                scrub(&mut other);
                Err(self.wrong(field, "a string"))
            }
        }
    }

    /// A non-negative whole number.
    pub(crate) fn whole_number(&mut self, field: &str) -> Result<Option<u64>> {
        match self.object.take(field) {
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a whole number")),
            Some(mut other) => {
                scrub(&mut other);
                Err(self.wrong(field, "a whole number"))
            }
        }
    }

    pub(crate) fn object(&mut self, field: &str) -> Result<Option<Fields>> {
        match self.object.take(field) {
            None => Ok(None),
            Some(serde_json::Value::Object(map)) => Ok(Some(Fields {
                object: JsonObject(map),
                origin: self.origin.clone(),
                prefix: format!("{}.{field}", self.prefix),
            })),
            Some(mut other) => {
                scrub(&mut other);
                Err(self.wrong(field, "a JSON object"))
            }
        }
    }

    /// An object of string values (HTTP headers): names checked as header
    /// names, values moved into [`Secret`]s and checked as header values
    /// (never quoted).
    pub(crate) fn secret_map(&mut self, field: &str) -> Result<Vec<(String, Secret)>> {
        let Some(mut obj) = self.object(field)? else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = obj.object.keys().map(str::to_owned).collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let value = match obj.object.take(&name) {
                Some(serde_json::Value::String(s)) => Secret::new(s),
                None => continue,
                Some(mut other) => {
                    scrub(&mut other);
                    return Err(Error::Config(format!(
                        "{}: the value of header {name:?} must be a string",
                        obj.prefix()
                    )));
                }
            };
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::Config(format!(
                    "{}: {name:?} is not a valid HTTP header name",
                    obj.prefix()
                )));
            }
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(Error::Config(format!(
                    "{}: the value of header {name:?} is not a valid header value (a line break \
                     or control character?); it is not shown",
                    obj.prefix()
                )));
            }
            out.push((name, value));
        }
        Ok(out)
    }
}

//! AWS as a Workload Identity Federation source: the subject token is a
//! serialized, SigV4-signed AWS STS `GetCallerIdentity` request, which
//! Google's STS replays to AWS to learn the caller's ARN
//! (<https://cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds>,
//! AIP-4117 "AWS"). Nothing is sent to AWS from here except to the
//! instance metadata service.
//!
//! Where the pieces come from, in google-auth's order:
//! - region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the
//!   availability zone at `credential_source.region_url` minus its letter;
//! - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+
//!   `AWS_SESSION_TOKEN`), else the role at `credential_source.url` and
//!   that role's credentials at `url/ROLE`;
//! - with `imdsv2_session_token_url`, metadata requests carry an IMDSv2
//!   session token (`PUT`, `X-aws-ec2-metadata-token-ttl-seconds: 300`),
//!   fetched only when metadata is needed at all.
//!
//! The request is signed with AWS Signature Version 4
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html>),
//! implemented here with `sha2`/`hmac`, and serialized as google-auth does:
//! the URL-quoted JSON `{"headers": [{"key", "value"}…], "method": "POST",
//! "url": …}` with `x-goog-cloud-target-resource` = the pool provider.
//!
//! The credential's identity is its configuration (the URLs), not the keys
//! read at each exchange: those rotate, the role they belong to does not.
//!
//! Security: the secret access key, session tokens and the signed request
//! are [`Secret`]s; the signing keys are zeroized. The metadata URLs must be
//! https, loopback or the link-local metadata addresses (169.254.169.254,
//! `[fd00:ec2::254]`), which are reached without a proxy.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::credential_source::{is_metadata_address, subject_endpoint, Fields, SubjectContext};
use crate::error::{Error, Result};
use crate::http::{self, Call};
use crate::identity::IdentityBuilder;
use crate::sources::{invalid, ResponseFields};
use crate::token::Secret;

/// The only `environment_id` version defined.
pub const ENVIRONMENT_ID: &str = "aws1";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SESSION_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const SESSION_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";

/// `credential_source` with `environment_id: "aws1"`.
pub struct Aws {
    region_url: Option<Url>,
    credentials_url: Option<Url>,
    imdsv2_url: Option<Url>,
    /// `regional_cred_verification_url`, with `{region}` still in it.
    verification_url: String,
    /// `origin: field \`credential_source\``, for errors.
    what: String,
}

/// AWS credentials: from the environment or the instance's role.
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

impl Aws {
    pub(crate) fn parse(mut f: Fields) -> Result<Self> {
        let what = f.prefix();
        let env = f.string("environment_id")?.unwrap_or_default();
        match env.strip_prefix("aws") {
            Some("1") => {}
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(Error::Config(format!(
                    "{}: AWS environment version {v} is not supported (only {ENVIRONMENT_ID})",
                    f.name("environment_id")
                )))
            }
            _ => {
                return Err(Error::Config(format!(
                    "{}: unknown environment; only {ENVIRONMENT_ID:?} (AWS) is defined",
                    f.name("environment_id")
                )))
            }
        }
        let verify_field = f.name("regional_cred_verification_url");
        let verification_url = f.string("regional_cred_verification_url")?.ok_or_else(|| {
            Error::Config(format!(
                "{verify_field} is missing (required for AWS); recreate the file with \
                 `gcloud iam workload-identity-pools create-cred-config … --aws`"
            ))
        })?;
        // Google's STS, not this process, calls it; it must still be https
        // (and what Google is told to call is checked by Google).
        let probe = verification_url.replace("{region}", "us-east-1");
        match Url::parse(&probe) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            _ => {
                return Err(Error::Config(format!(
                    "{verify_field} must be an https URL (AWS STS GetCallerIdentity)"
                )))
            }
        }
        let mut url = |name: &str| -> Result<Option<Url>> {
            let field = f.name(name);
            f.string(name)?
                .map(|raw| subject_endpoint(&raw, &field))
                .transpose()
        };
        Ok(Aws {
            region_url: url("region_url")?,
            credentials_url: url("url")?,
            imdsv2_url: url("imdsv2_session_token_url")?,
            verification_url,
            what,
        })
    }

    /// Where region and credentials come from, for `doctor`.
    pub fn describe(&self) -> String {
        let label = |u: &Option<Url>| {
            u.as_ref()
                .map(http::endpoint_label)
                .unwrap_or_else(|| "(not configured)".into())
        };
        format!(
            "region from AWS_REGION/AWS_DEFAULT_REGION or {}; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or {}{}",
            label(&self.region_url),
            label(&self.credentials_url),
            if self.imdsv2_url.is_some() { " (IMDSv2)" } else { "" }
        )
    }

    pub(crate) fn identify(&self, id: &mut IdentityBuilder) {
        let s = |u: &Option<Url>| u.as_ref().map(|u| u.as_str().to_owned());
        id.optional(s(&self.region_url).as_deref())
            .optional(s(&self.credentials_url).as_deref())
            .optional(s(&self.imdsv2_url).as_deref())
            .part(self.verification_url.as_bytes());
    }

    pub(crate) async fn subject_token(&self, ctx: &SubjectContext<'_>) -> Result<Secret> {
        let mut metadata = Metadata {
            aws: self,
            session: None,
        };
        let region = match env_var("AWS_REGION").or_else(|| env_var("AWS_DEFAULT_REGION")) {
            Some(r) => r,
            None => metadata.region().await?,
        };
        if !valid_region(&region) {
            return Err(Error::Config(format!(
                "{}: the AWS region is not a region name (letters, digits and dashes)",
                self.what
            )));
        }
        let creds = match (
            env_var("AWS_ACCESS_KEY_ID"),
            env_var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => AwsCredentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: env_var("AWS_SESSION_TOKEN").map(Secret::new),
            },
            _ => metadata.credentials().await?,
        };
        let url = self.verification_url.replace("{region}", &region);
        let token = caller_identity_token(&url, &region, &creds, ctx.audience, SystemTime::now())
            .ok_or_else(|| {
            Error::Config(format!(
                "{}: `regional_cred_verification_url` is not a URL AWS requests can be signed for",
                self.what
            ))
        })?;
        Ok(token)
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn valid_region(r: &str) -> bool {
    !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl fmt::Debug for Aws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aws")
            .field("region_url", &self.region_url.as_ref().map(Url::as_str))
            .field("url", &self.credentials_url.as_ref().map(Url::as_str))
            .field(
                "imdsv2_session_token_url",
                &self.imdsv2_url.as_ref().map(Url::as_str),
            )
            .field("regional_cred_verification_url", &self.verification_url)
            .finish()
    }
}

/// The instance metadata service, with the IMDSv2 session token once fetched.
struct Metadata<'a> {
    aws: &'a Aws,
    session: Option<Secret>,
}

impl Metadata<'_> {
    fn url<'u>(&self, url: &'u Option<Url>, field: &str, why: &str) -> Result<&'u Url> {
        url.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "{}: {why}, and `credential_source.{field}` is not set to ask the metadata service",
                self.aws.what
            ))
        })
    }

    async fn get(&mut self, url: Url, what: &'static str) -> Result<http::Reply> {
        let mut call = Call::get(url.clone(), what);
        if let Some(session) = self.session_token().await? {
            call = call.secret_header(SESSION_TOKEN_HEADER, session);
        }
        if is_metadata_address(&url) {
            call = call.direct();
        }
        http::send(&call).await
    }

    async fn session_token(&mut self) -> Result<Option<Secret>> {
        if let Some(s) = &self.session {
            return Ok(Some(s.clone()));
        }
        let Some(url) = &self.aws.imdsv2_url else {
            return Ok(None);
        };
        let mut call = Call::put(url.clone(), "IMDSv2 session token request")
            .header(SESSION_TTL_HEADER, "300");
        if is_metadata_address(url) {
            call = call.direct();
        }
        let reply = http::send(&call).await?;
        let token = std::str::from_utf8(&reply.body)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                invalid(
                    &http::endpoint_label(url),
                    "no IMDSv2 session token in the response".into(),
                )
            })?;
        let token = Secret::new(token);
        self.session = Some(token.clone());
        Ok(Some(token))
    }

    /// The region: the availability zone (`us-east-1a`) without its letter.
    async fn region(&mut self) -> Result<String> {
        let url = self
            .url(
                &self.aws.region_url,
                "region_url",
                "AWS_REGION and AWS_DEFAULT_REGION are unset",
            )?
            .clone();
        let endpoint = http::endpoint_label(&url);
        let reply = self.get(url, "AWS region request").await?;
        let zone = std::str::from_utf8(&reply.body).unwrap_or("").trim();
        let mut chars = zone.chars();
        chars.next_back();
        let region = chars.as_str();
        if !valid_region(region) {
            return Err(invalid(
                &endpoint,
                "the availability zone is not a zone name".into(),
            ));
        }
        Ok(region.to_owned())
    }

    async fn credentials(&mut self) -> Result<AwsCredentials> {
        let base = self
            .url(
                &self.aws.credentials_url,
                "url",
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are unset",
            )?
            .clone();
        let endpoint = http::endpoint_label(&base);
        let reply = self.get(base.clone(), "AWS role name request").await?;
        let role = std::str::from_utf8(&reply.body)
            .unwrap_or("")
            .trim()
            .to_owned();
        // IAM role names: letters, digits and `+=,.@_-` (no `/`: it goes into the path).
        let role_ok = !role.is_empty()
            && role.len() <= 128
            && role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        if !role_ok {
            return Err(invalid(
                &endpoint,
                "no IAM role name in the response (is a role attached to the instance?)".into(),
            ));
        }
        let url = Url::parse(&format!("{}/{role}", base.as_str().trim_end_matches('/')))
            .map_err(|_| invalid(&endpoint, "the role name does not make a URL".into()))?;
        let endpoint = http::endpoint_label(&url);
        let reply = self.get(url, "AWS credentials request").await?;
        let mut r = ResponseFields::parse(&endpoint, &reply.body)?;
        let missing = |f: &str| invalid(&endpoint, format!("no `{f}` in the response"));
        Ok(AwsCredentials {
            access_key_id: r
                .string("AccessKeyId")?
                .ok_or_else(|| missing("AccessKeyId"))?,
            secret_access_key: r
                .secret("SecretAccessKey")?
                .ok_or_else(|| missing("SecretAccessKey"))?,
            session_token: r.secret("Token")?,
        })
    }
}

// ---- AWS Signature Version 4

/// The signature headers of one request: `Authorization` and `x-amz-date`.
pub struct Signature {
    pub authorization: String,
    pub amz_date: String,
}

/// Signs `method url` with `headers` (lower-case names; `host`,
/// `x-amz-date` and `x-amz-security-token` are added) and `payload`, for
/// the service named by the host's first label (`sts`). `None` if the URL
/// has no host.
pub fn sign(
    method: &str,
    url: &Url,
    region: &str,
    creds: &AwsCredentials,
    headers: &[(&str, &str)],
    payload: &[u8],
    now: SystemTime,
) -> Option<Signature> {
    let host = url.host_str()?.to_ascii_lowercase();
    let first = host.split('.').next().unwrap_or_default();
    let service = first.strip_suffix("-fips").unwrap_or(first);
    let (amz_date, date) = amz_dates(now);
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    all.push(("host".into(), host.clone()));
    all.push(("x-amz-date".into(), amz_date.clone()));
    if let Some(t) = &creds.session_token {
        all.push(("x-amz-security-token".into(), t.expose().to_owned()));
    }
    all.sort();
    let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_headers = all
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = Zeroizing::new(format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        if url.path().is_empty() {
            "/"
        } else {
            url.path()
        },
        canonical_query(url),
        hex(&Sha256::digest(payload))
    ));
    drop(Zeroizing::new(canonical_headers));
    for (_, v) in &mut all {
        zeroize::Zeroize::zeroize(v);
    }
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k_secret = Zeroizing::new(String::with_capacity(
        4 + creds.secret_access_key.expose().len(),
    ));
    k_secret.push_str("AWS4");
    k_secret.push_str(creds.secret_access_key.expose());
    let k_date = hmac(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac(&*k_date, region.as_bytes());
    let k_service = hmac(&*k_region, service.as_bytes());
    let k_signing = hmac(&*k_service, b"aws4_request");
    let signature = hex(&*hmac(&*k_signing, to_sign.as_bytes()));
    Some(Signature {
        authorization: format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            creds.access_key_id
        ),
        amz_date,
    })
}

/// The subject token for `GetCallerIdentity` at `url`, as google-auth serializes it.
pub fn caller_identity_token(
    url: &str,
    region: &str,
    creds: &AwsCredentials,
    target_resource: &str,
    now: SystemTime,
) -> Option<Secret> {
    let parsed = Url::parse(url).ok()?;
    if parsed.scheme() != "https" {
        return None;
    }
    let sig = sign("POST", &parsed, region, creds, &[], b"", now)?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Authorization", &sig.authorization),
        ("host", &host),
        ("x-amz-date", &sig.amz_date),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t.expose()));
    }
    headers.push(("x-goog-cloud-target-resource", target_resource));
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut json = Zeroizing::new(String::from("{\"headers\":["));
    for (i, (k, v)) in headers.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let value = Zeroizing::new(q(v));
        json.push_str(&format!("{{\"key\":{},\"value\":{}}}", q(k), *value));
    }
    json.push_str(&format!("],\"method\":\"POST\",\"url\":{}}}", q(url)));
    Some(Secret::new(quote(&json)))
}

/// Python's `urllib.parse.quote(s)` (keeps letters, digits, `_.-~` and `/`).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SigV4's canonical query string: each name and value URI-encoded, sorted.
fn canonical_query(url: &Url) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let mut pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (enc(&k), enc(&v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], msg: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` in UTC.
fn amz_dates(t: SystemTime) -> (String, String) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::sources::impersonated::civil_from_days(days as i64);
    let date = format!("{y:04}{m:02}{d:02}");
    (
        format!(
            "{date}T{:02}{:02}{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        ),
        date,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn example_creds(session: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: session.map(Secret::new),
        }
    }

    #[test]
    fn sigv4_matches_awss_published_example() {
        // AWS's documented example: IAM ListUsers, 2015-08-30T12:36:00Z.
        let url =
            Url::parse("https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08").unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let sig = sign(
            "GET",
            &url,
            "us-east-1",
            &example_creds(None),
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            b"",
            at,
        )
        .unwrap();
        assert_eq!(sig.amz_date, "20150830T123600Z");
        assert_eq!(
            sig.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn the_subject_token_is_googles_serialization_of_the_signed_request() {
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let token = caller_identity_token(
            "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "eu-west-1",
            &example_creds(Some("SESSION")),
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/aws",
            at,
        )
        .unwrap();
        let json = crate::testing::percent_decode(token.expose());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(
            v["url"],
            "https://sts.eu-west-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        );
        let keys: Vec<&str> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "Authorization",
                "host",
                "x-amz-date",
                "x-amz-security-token",
                "x-goog-cloud-target-resource"
            ]
        );
        let auth = v["headers"][0]["value"].as_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/sts/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature="),
            "{auth}"
        );
        assert_eq!(v["headers"][1]["value"], "sts.eu-west-1.amazonaws.com");
        // Sorted keys, no spaces: byte for byte what google-auth sends.
        assert!(
            json.starts_with("{\"headers\":[{\"key\":\"Authorization\",\"value\":"),
            "{json}"
        );
        assert!(!token.expose().contains(' ') && !token.expose().contains('{'));
    }

    #[test]
    fn canonical_query_is_encoded_and_sorted() {
        let url = Url::parse("https://h/?b=2&a=x%20y&a=1&c=~").unwrap();
        assert_eq!(canonical_query(&url), "a=1&a=x%20y&b=2&c=~");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(UNIX_EPOCH).0, "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(
            amz_dates(leap),
            ("20000229T010101Z".into(), "20000229".into())
        );
    }
}

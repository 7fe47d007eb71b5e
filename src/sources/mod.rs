//! Credential sources: each fetches fresh tokens from upstream, nothing more.
//! Caching lives in `cache.rs`; discovery of which source to use in `adc.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::{jwt_expiry, Secret, Token, TokenKind};

pub mod agent_identity;
pub mod authorized_user;
pub mod external_account;
pub mod external_account_authorized_user;
pub mod impersonated;
pub mod metadata;
pub mod service_account;
pub mod signed_jwt;

/// A boxed, sendable future (sources are used as trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The credential kinds, as named in ADC JSON `type` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    ServiceAccount,
    AuthorizedUser,
    ImpersonatedServiceAccount,
    Metadata,
    /// Workload (or workforce) Identity Federation: an external subject
    /// token exchanged at Google's STS (AIP-4117).
    ExternalAccount,
    /// A workforce identity user login (`gcloud auth login --cred-file`).
    ExternalAccountAuthorizedUser,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ServiceAccount => "service_account",
            SourceKind::AuthorizedUser => "authorized_user",
            SourceKind::ImpersonatedServiceAccount => "impersonated_service_account",
            SourceKind::Metadata => "metadata",
            SourceKind::ExternalAccount => "external_account",
            SourceKind::ExternalAccountAuthorizedUser => "external_account_authorized_user",
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
    /// For federated credentials: where the subject token comes from, which
    /// pool and provider, what STS and IAM are asked.
    pub federation: Option<Federation>,
}

/// What `doctor` says about a federated credential; never a secret (header
/// values, commands' arguments and subject tokens are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Federation {
    /// `file`, `url`, `executable`, `aws`, or `refresh_token` (a workforce login).
    pub credential_source: &'static str,
    /// Where the subject token comes from: the file's path, the URL's
    /// endpoint (no query), the program run, the AWS region and credentials
    /// endpoints.
    pub subject_from: String,
    /// The STS audience: the pool provider's full resource name.
    pub audience: String,
    /// `workload` or `workforce`, when the audience parses as either.
    pub pool_kind: Option<&'static str>,
    /// The project number of a workload identity pool.
    pub project_number: Option<String>,
    pub location: Option<String>,
    pub pool_id: Option<String>,
    pub provider_id: Option<String>,
    pub subject_token_type: Option<String>,
    /// Where the subject token is exchanged (STS) or the login refreshed.
    pub token_url: String,
    pub impersonation_url: Option<String>,
    /// `service_account_impersonation.token_lifetime_seconds`.
    pub token_lifetime_seconds: Option<u64>,
    pub workforce_pool_user_project: Option<String>,
}

/// A credential source: turns a `TokenRequest` into a fresh `Token` upstream.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Fetches a new token. Never consults or fills a cache.
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>>;

    /// Who speaks and who pays: a digest of all the key material (see
    /// `identity.rs`); two sources with equal identities are interchangeable.
    fn identity(&self) -> &Identity;

    fn describe(&self) -> SourceDescription;
}

/// The JSON credential file format shared by gcloud, google-auth and
/// `GOOGLE_APPLICATION_CREDENTIALS` (<https://google.aip.dev/auth/4112>,
/// 4113, 4114): every field of every supported `type`, all optional, so
/// missing ones are reported by name. Secret strings are moved straight
/// into [`Secret`].
///
/// ADK's `ServiceAccountCredential` model dumps as `type_` (by field name) or
/// camelCase (`by_alias=True`); both spellings are accepted.
#[derive(Default)]
pub struct CredentialFile {
    pub kind: Option<String>,
    pub client_email: Option<String>,
    pub private_key: Option<Secret>,
    pub private_key_id: Option<String>,
    pub token_uri: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub quota_project_id: Option<String>,
    /// The Google universe the credential belongs to (default googleapis.com).
    pub universe_domain: Option<String>,
    pub service_account_impersonation_url: Option<String>,
    pub delegates: Option<Vec<String>>,
    pub source_credentials: Option<Box<CredentialFile>>,
    // external_account and external_account_authorized_user (AIP-4117):
    pub audience: Option<String>,
    pub subject_token_type: Option<String>,
    pub token_url: Option<String>,
    pub token_info_url: Option<String>,
    pub revoke_url: Option<String>,
    pub workforce_pool_user_project: Option<String>,
    /// Read field by field by `external_account` (its header values may be secrets).
    pub credential_source: Option<JsonObject>,
    /// `{"token_lifetime_seconds": N}`.
    pub service_account_impersonation: Option<JsonObject>,
}

/// A nested JSON object of a credential file, read later field by field;
/// every string left in it is zeroized on drop, and `Debug` shows only its keys.
#[derive(Default)]
pub struct JsonObject(pub(crate) serde_json::Map<String, serde_json::Value>);

impl JsonObject {
    /// Removes and returns a field; null counts as absent.
    pub(crate) fn take(&mut self, key: &str) -> Option<serde_json::Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl Drop for JsonObject {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            scrub(v);
        }
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl CredentialFile {
    /// Parses credential JSON text (a leading UTF-8 BOM is ignored). Errors
    /// name `origin` and the field, and never quote the input.
    pub fn parse(json: &str, origin: &str) -> Result<Self> {
        let text = json.strip_prefix('\u{feff}').unwrap_or(json);
        if text.trim().is_empty() {
            return Err(Error::Config(format!(
                "{origin}: is empty; expected a credential JSON object"
            )));
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{origin}: {}",
                json_problem(&e, "the credential JSON")
            ))
        })?;
        Self::from_value(value, origin)
    }

    /// Reads the fields out of a parsed JSON object.
    pub fn from_value(value: serde_json::Value, origin: &str) -> Result<Self> {
        use serde_json::Value;
        let Value::Object(mut map) = value else {
            return Err(Error::Config(format!(
                "{origin}: is {}, not a JSON object; expected a credential JSON object",
                json_kind(&value)
            )));
        };
        let mut take = |names: &[&str]| -> Option<(String, Value)> {
            names.iter().find_map(|n| {
                map.remove(*n)
                    .filter(|v| !v.is_null())
                    .map(|v| ((*n).to_owned(), v))
            })
        };
        let wrong = |field: &str, want: &str, got: &Value| {
            Error::Config(format!(
                "{origin}: field `{field}` must be {want}, not {}",
                json_kind(got)
            ))
        };
        let mut string = |names: &[&str]| -> Result<Option<String>> {
            match take(names) {
                None => Ok(None),
                Some((_, Value::String(s))) => Ok(Some(s)),
                Some((field, other)) => Err(wrong(&field, "a string", &other)),
            }
        };
        let kind = string(&["type", "type_"])?;
        let client_email = string(&["client_email", "clientEmail"])?;
        let private_key = string(&["private_key", "privateKey"])?.map(Secret::new);
        let private_key_id = string(&["private_key_id", "privateKeyId"])?;
        let token_uri = string(&["token_uri", "tokenUri"])?;
        let client_id = string(&["client_id", "clientId"])?;
        let client_secret = string(&["client_secret", "clientSecret"])?.map(Secret::new);
        let refresh_token = string(&["refresh_token", "refreshToken"])?.map(Secret::new);
        let quota_project_id = string(&["quota_project_id", "quotaProjectId"])?;
        let universe_domain = string(&["universe_domain", "universeDomain"])?;
        let service_account_impersonation_url = string(&[
            "service_account_impersonation_url",
            "serviceAccountImpersonationUrl",
        ])?;
        let audience = string(&["audience"])?;
        let subject_token_type = string(&["subject_token_type", "subjectTokenType"])?;
        let token_url = string(&["token_url", "tokenUrl"])?;
        let token_info_url = string(&["token_info_url", "tokenInfoUrl"])?;
        let revoke_url = string(&["revoke_url", "revokeUrl"])?;
        let workforce_pool_user_project =
            string(&["workforce_pool_user_project", "workforcePoolUserProject"])?;
        let delegates = match take(&["delegates"]) {
            None => None,
            Some((field, Value::Array(items))) => Some(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        other => Err(wrong(&field, "a list of strings", &other)),
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Some((field, other)) => return Err(wrong(&field, "a list of strings", &other)),
        };
        let mut object = |names: &[&str]| -> Result<Option<JsonObject>> {
            match take(names) {
                None => Ok(None),
                Some((_, Value::Object(map))) => Ok(Some(JsonObject(map))),
                Some((field, mut other)) => {
                    let e = wrong(&field, "a JSON object", &other);
                    scrub(&mut other);
                    Err(e)
                }
            }
        };
        let credential_source = object(&["credential_source", "credentialSource"])?;
        let service_account_impersonation = object(&[
            "service_account_impersonation",
            "serviceAccountImpersonation",
        ])?;
        let source_credentials = match take(&["source_credentials", "sourceCredentials"]) {
            None => None,
            Some((field, v @ Value::Object(_))) => Some(Box::new(Self::from_value(
                v,
                &format!("{origin}: {field}"),
            )?)),
            Some((field, other)) => return Err(wrong(&field, "a JSON object", &other)),
        };
        Ok(CredentialFile {
            kind,
            client_email,
            private_key,
            private_key_id,
            token_uri,
            client_id,
            client_secret,
            refresh_token,
            quota_project_id,
            universe_domain,
            service_account_impersonation_url,
            delegates,
            source_credentials,
            audience,
            subject_token_type,
            token_url,
            token_info_url,
            revoke_url,
            workforce_pool_user_project,
            credential_source,
            service_account_impersonation,
        })
    }
}

/// Deserializing a `CredentialFile` directly (e.g. `serde_json::from_str`)
/// applies the same checks as [`CredentialFile::parse`].
impl<'de> serde::Deserialize<'de> for CredentialFile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        CredentialFile::from_value(value, "credential JSON").map_err(serde::de::Error::custom)
    }
}

/// "a number", "an array", … for error messages (never the value itself).
fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialFile")
            .field("type", &self.kind)
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .field("token_uri", &self.token_uri)
            .field("audience", &self.audience)
            .field("token_url", &self.token_url)
            .field("credential_source", &self.credential_source)
            .finish_non_exhaustive()
    }
}

/// A non-empty string field or a Config error naming `origin` and `field`.
pub(crate) fn required<T: NonEmpty>(
    value: Option<T>,
    origin: &str,
    kind: SourceKind,
    field: &str,
) -> Result<T> {
    match value {
        Some(v) if !v.is_blank() => Ok(v),
        _ => Err(Error::Config(format!(
            "{origin}: field `{field}` is missing or empty (required for type \"{}\")",
            kind.as_str()
        ))),
    }
}

/// Values `required` can check for emptiness.
pub(crate) trait NonEmpty {
    fn is_blank(&self) -> bool;
}

impl NonEmpty for String {
    fn is_blank(&self) -> bool {
        self.trim().is_empty()
    }
}

impl NonEmpty for Secret {
    fn is_blank(&self) -> bool {
        self.expose().trim().is_empty()
    }
}

/// An optional string field; blank counts as absent.
pub(crate) fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Google's OAuth2 token endpoint, used when a file names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The universe a credential file names (`universe_domain`), else Google's.
pub(crate) fn universe_of(f: &CredentialFile) -> String {
    optional(f.universe_domain.clone())
        .unwrap_or_else(|| crate::http::endpoint::GOOGLE_UNIVERSE.to_owned())
}

/// Longest token lifetime believed; anything longer is a broken response.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A JSON object response, read field by field so every problem names its
/// field. String values left unread (a refresh token, the access token of
/// an ID-token response) are zeroized on drop.
pub(crate) struct ResponseFields<'a> {
    endpoint: &'a str,
    map: serde_json::Map<String, serde_json::Value>,
}

impl<'a> ResponseFields<'a> {
    pub(crate) fn parse(endpoint: &'a str, body: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| invalid(endpoint, json_problem(&e, "the response")))?;
        match value {
            serde_json::Value::Object(map) => Ok(ResponseFields { endpoint, map }),
            mut other => {
                let kind = json_kind(&other);
                scrub(&mut other);
                Err(invalid(
                    endpoint,
                    format!("the response is {kind}, not a JSON object"),
                ))
            }
        }
    }

    /// A string field as a [`Secret`]; `Ok(None)` when absent or null.
    pub(crate) fn secret(&mut self, field: &str) -> Result<Option<Secret>> {
        Ok(self.string(field)?.map(Secret::new))
    }

    /// A non-empty string field; `Ok(None)` when absent or null.
    pub(crate) fn string(&mut self, field: &str) -> Result<Option<String>> {
        match self.map.remove(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                Err(invalid(self.endpoint, format!("`{field}` is empty")))
            }
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(mut other) => {
                let kind = json_kind(&other);
                scrub(&mut other);
                Err(invalid(
                    self.endpoint,
                    format!("`{field}` is {kind}, not a string"),
                ))
            }
        }
    }

    /// A numeric field; `Ok(None)` when absent or null.
    pub(crate) fn number(&mut self, field: &str) -> Result<Option<f64>> {
        match self.map.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(invalid(
                self.endpoint,
                format!("`{field}` is {}, not a number", json_kind(other)),
            )),
        }
    }
}

impl Drop for ResponseFields<'_> {
    fn drop(&mut self) {
        for v in self.map.values_mut() {
            scrub(v);
        }
    }
}

/// Zeroizes every string inside a JSON value.
fn scrub(v: &mut serde_json::Value) {
    use zeroize::Zeroize;
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub),
        serde_json::Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// An access token from an OAuth2 token response (RFC 6749 §5.1):
/// `{"access_token", "expires_in", ...}`. The metadata server answers in the
/// same shape. `expires_in` counts from `issued_at`.
pub(crate) fn access_token_from_json(
    endpoint: &str,
    body: &[u8],
    issued_at: SystemTime,
) -> Result<Token> {
    let mut r = ResponseFields::parse(endpoint, body)?;
    let value = r
        .secret("access_token")?
        .ok_or_else(|| invalid(endpoint, "no `access_token` in the response".into()))?;
    let secs = r
        .number("expires_in")?
        .ok_or_else(|| invalid(endpoint, "no `expires_in` in the response".into()))?;
    access_token_expiring_in(endpoint, value, secs, issued_at)
}

/// An access token living `secs` from `issued_at`, the lifetime checked for sanity.
pub(crate) fn access_token_expiring_in(
    endpoint: &str,
    value: Secret,
    secs: f64,
    issued_at: SystemTime,
) -> Result<Token> {
    if !(secs > 0.0 && secs <= MAX_LIFETIME.as_secs_f64()) {
        return Err(invalid(
            endpoint,
            format!(
                "`expires_in` is {secs}, outside (0, {}] seconds",
                MAX_LIFETIME.as_secs()
            ),
        ));
    }
    Ok(Token::new(
        value,
        TokenKind::Access,
        issued_at + Duration::from_secs_f64(secs),
    ))
}

/// The ID token in field `field` of a JSON response; `missing` explains its absence.
pub(crate) fn id_token_from_json(
    endpoint: &str,
    body: &[u8],
    field: &str,
    missing: &str,
) -> Result<Token> {
    let mut r = ResponseFields::parse(endpoint, body)?;
    let jwt = r
        .secret(field)?
        .ok_or_else(|| invalid(endpoint, missing.to_owned()))?;
    id_token_from_jwt(endpoint, jwt)
}

/// An access token with an absolute expiry, checked for sanity.
pub(crate) fn access_token_until(
    endpoint: &str,
    value: Secret,
    expires_at: SystemTime,
) -> Result<Token> {
    check_expiry(endpoint, expires_at)?;
    Ok(Token::new(value, TokenKind::Access, expires_at))
}

/// An ID token (a JWT) whose expiry is its `exp` claim.
pub(crate) fn id_token_from_jwt(endpoint: &str, jwt: Secret) -> Result<Token> {
    let expires_at = jwt_expiry(jwt.expose().trim()).ok_or_else(|| {
        invalid(
            endpoint,
            "the ID token is not a JWT with a numeric `exp` claim".into(),
        )
    })?;
    check_expiry(endpoint, expires_at)?;
    let value = if jwt.expose().trim().len() == jwt.expose().len() {
        jwt
    } else {
        Secret::new(jwt.expose().trim())
    };
    Ok(Token::new(value, TokenKind::Id, expires_at))
}

fn check_expiry(endpoint: &str, expires_at: SystemTime) -> Result<()> {
    let now = SystemTime::now();
    if expires_at <= now {
        return Err(invalid(
            endpoint,
            "the token is already expired; if this repeats, check the system clock".into(),
        ));
    }
    if expires_at > now + MAX_LIFETIME + Duration::from_secs(300) {
        return Err(invalid(
            endpoint,
            "the token claims to live longer than a day".into(),
        ));
    }
    Ok(())
}

pub(crate) fn invalid(endpoint: &str, detail: String) -> Error {
    Error::InvalidResponse {
        endpoint: endpoint.to_owned(),
        detail,
    }
}

/// Describes a serde_json error without quoting the input (which may hold a
/// secret): category and position only.
pub(crate) fn json_problem(e: &serde_json::Error, what: &str) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Data => "has a field of the wrong type",
        Category::Eof => "is truncated JSON",
    };
    format!("{what} {kind} (line {}, column {})", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::jwt_expiring_in;

    #[test]
    fn access_token_response_with_sane_lifetime_is_accepted() {
        let t = access_token_from_json(
            "e",
            br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(t.value.expose(), "ya29.x");
        assert_eq!(t.kind, TokenKind::Access);
        let left = t.remaining(SystemTime::now()).as_secs();
        assert!((3590..=3599).contains(&left), "{left}");
    }

    #[test]
    fn absurd_expires_in_is_an_invalid_response() {
        for body in [
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","expires_in":86401}"#,
            r#"{"access_token":"a","expires_in":"3600"}"#,
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"","expires_in":3600}"#,
            r#"{"expires_in":3600}"#,
            r#"not json"#,
        ] {
            let e = access_token_from_json("https://t", body.as_bytes(), SystemTime::now())
                .unwrap_err();
            assert!(matches!(e, Error::InvalidResponse { .. }), "{body}: {e:?}");
        }
    }

    #[test]
    fn a_bad_expires_in_is_named_whatever_its_json_type() {
        for v in [
            "\"3600\"",
            "true",
            "[3600]",
            "null",
            "1e308",
            "1000000000000",
        ] {
            let body = format!(r#"{{"access_token":"a","expires_in":{v}}}"#);
            let e = access_token_from_json("e", body.as_bytes(), SystemTime::now()).unwrap_err();
            assert!(e.to_string().contains("expires_in"), "{v}: {e}");
        }
    }

    #[test]
    fn malformed_id_token_responses_are_invalid_and_name_the_field() {
        for body in [
            "",
            "null",
            "[]",
            "42",
            "\"ya29\"",
            "{",
            r#"{"id_token": 5}"#,
            r#"{"id_token": null}"#,
        ] {
            let e =
                id_token_from_json("e", body.as_bytes(), "id_token", "no `id_token`").unwrap_err();
            assert!(matches!(e, Error::InvalidResponse { .. }), "{body}: {e:?}");
        }
        let e = id_token_from_json("e", br#"{"id_token": 5}"#, "id_token", "-").unwrap_err();
        assert!(e.to_string().contains("`id_token` is a number"), "{e}");
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(id_token_from_json("e", deep.as_bytes(), "id_token", "-").is_err());
        let deep = format!(
            "{}1{}",
            r#"{"id_token":"#.repeat(50_000),
            "}".repeat(50_000)
        );
        assert!(id_token_from_json("e", deep.as_bytes(), "id_token", "-").is_err());
    }

    #[test]
    fn invalid_response_errors_never_quote_the_body() {
        let e = access_token_from_json(
            "e",
            br#"{"access_token":"ya29.SENTINEL","expires_in":"ya29.SENTINEL"}"#,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
    }

    #[test]
    fn id_token_expiry_comes_from_its_exp_claim() {
        let t = id_token_from_jwt("e", Secret::new(jwt_expiring_in(3600))).unwrap();
        assert_eq!(t.kind, TokenKind::Id);
        assert!(t.remaining(SystemTime::now()) > Duration::from_secs(3590));
    }

    #[test]
    fn non_jwt_or_expired_id_tokens_are_invalid_responses() {
        for jwt in [
            "ya29.opaque",
            "",
            &jwt_expiring_in(-10),
            &jwt_expiring_in(3 * 86400),
        ] {
            let e = id_token_from_jwt("e", Secret::new(jwt)).unwrap_err();
            assert!(matches!(e, Error::InvalidResponse { .. }), "{jwt}: {e:?}");
        }
    }

    #[test]
    fn credential_file_deserializes_with_the_same_field_checks() {
        let f: CredentialFile =
            serde_json::from_str(r#"{"type_":"authorized_user","refreshToken":"r"}"#).unwrap();
        assert_eq!(f.kind.as_deref(), Some("authorized_user"));
        assert!(f.refresh_token.is_some());
        let e = serde_json::from_str::<CredentialFile>(r#"{"type": 5}"#).unwrap_err();
        assert!(
            e.to_string().contains("field `type` must be a string"),
            "{e}"
        );
    }

    #[test]
    fn credential_file_debug_hides_secrets() {
        let f = CredentialFile::parse(
            r#"{"type":"authorized_user","client_secret":"S3CRET","refresh_token":"1//R3FRESH"}"#,
            "f",
        )
        .unwrap();
        let text = format!("{f:?}");
        assert!(
            !text.contains("S3CRET") && !text.contains("R3FRESH"),
            "{text}"
        );
    }
}

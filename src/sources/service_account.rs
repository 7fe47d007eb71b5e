//! Service account keys: the JSON file `gcloud iam service-accounts keys
//! create` writes (`"type": "service_account"`).
//!
//! Tokens come from the OAuth2 JWT-bearer grant (RFC 7523 §2.1), as
//! Google documents it for server-to-server use
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>):
//! an RS256-signed assertion with `iss` = the account's email, `aud` = the
//! key file's `token_uri`, a one-hour `exp`, and either
//! - `scope` (space-separated) → the endpoint returns an access token, or
//! - `target_audience` → it returns an OIDC ID token whose `aud` is that
//!   audience (what Cloud Run, Cloud Functions and IAP verify).
//!
//! Security: a key file is a long-lived secret. Prefer attached service
//! accounts (metadata server) or impersonation where you can. The PEM is
//! parsed once, when the source is built; neither it nor the assertion ever
//! appears in an error or a log. `token_uri` must be https (or http to a
//! loopback emulator), so an edited key file cannot ship assertions in clear.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{request::TokenRequest, sources::TokenSource};
//! let json = std::fs::read_to_string("key.json").unwrap();
//! let source = _native::adc::from_json(&json, "key.json", None)?;
//! let id = source.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;

use super::{
    access_token_from_json, id_token_from_json, optional, required, signed_jwt, universe_of,
    BoxFuture, CredentialFile, SourceDescription, SourceKind, TokenSource, DEFAULT_TOKEN_URI,
};
use crate::error::{self, Error, Result};
use crate::http::{self, Call};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::{Secret, Token};

/// RFC 7523's grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Assertion lifetime; Google accepts at most one hour.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// A parsed service account key, ready to sign assertions.
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: Option<String>,
    /// jsonwebtoken keeps the DER in a plain `Vec`, so it is not zeroized on
    /// drop; it never leaves this struct and `Debug` hides it.
    key: EncodingKey,
    token_uri: Url,
    /// `token_uri` as written: the assertion's `aud` must match it exactly,
    /// and URL normalization (a trailing `/`, case) could change it.
    audience: String,
    quota_project_id: Option<String>,
    origin: String,
    identity: Identity,
}

/// The claims of the JWT-bearer assertion.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_audience: Option<String>,
}

impl ServiceAccountKey {
    /// Builds from a parsed key file; `origin` names the file in errors.
    pub fn from_file(f: CredentialFile, origin: &str) -> Result<Self> {
        let kind = SourceKind::ServiceAccount;
        let universe = universe_of(&f);
        let client_email = required(f.client_email, origin, kind, "client_email")?
            .trim()
            .to_owned();
        let pem = required(f.private_key, origin, kind, "private_key")?;
        let key = EncodingKey::from_rsa_pem(pem.expose().as_bytes()).map_err(|_| {
            Error::Config(format!(
                "{origin}: field `private_key` is not a PEM-encoded RSA private key \
                 (expected \"-----BEGIN PRIVATE KEY-----\" as in a key downloaded from the Cloud console \
                 or `gcloud iam service-accounts keys create`)"
            ))
        })?;
        let token_uri = optional(f.token_uri).unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let audience = token_uri.clone();
        let token_uri = http::credential_endpoint(
            &token_uri,
            &format!("{origin}: field `token_uri`"),
            &universe,
        )?;
        let quota_project_id = optional(f.quota_project_id);
        // Everything that decides who speaks and who pays; the email and key
        // id are public, so the private key itself must be part of it.
        let identity = Identity::builder("service_account")
            .part(client_email.as_bytes())
            .fingerprint(pem.expose().as_bytes())
            .part(audience.as_bytes())
            .optional(quota_project_id.as_deref())
            .finish(format_args!("sa:{client_email}"));
        Ok(ServiceAccountKey {
            client_email,
            private_key_id: optional(f.private_key_id),
            key,
            token_uri,
            audience,
            quota_project_id,
            origin: origin.to_owned(),
            identity,
        })
    }

    /// Parses key JSON; `origin` names it in errors.
    pub fn from_json(json: &str, origin: &str) -> Result<Self> {
        let f = CredentialFile::parse(json, origin)?;
        Self::from_file(f, origin)
    }

    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    pub fn quota_project_id(&self) -> Option<&str> {
        self.quota_project_id.as_deref()
    }

    /// The claims for `request`, issued at `now`.
    pub fn claims(&self, request: &TokenRequest, now: SystemTime) -> AssertionClaims {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (scope, target_audience) = match request {
            TokenRequest::Access { .. } => (request.scope_param(), None),
            TokenRequest::Id { audience } | TokenRequest::SignedJwt { audience } => {
                (None, Some(audience.clone()))
            }
        };
        AssertionClaims {
            iss: self.client_email.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + ASSERTION_LIFETIME.as_secs(),
            scope,
            target_audience,
        }
    }

    /// The signed assertion for `request` (RS256, `kid` = `private_key_id`).
    pub fn assertion(&self, request: &TokenRequest, now: SystemTime) -> Result<Secret> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let jwt = jsonwebtoken::encode(&header, &self.claims(request, now), &self.key).map_err(|e| {
            Error::Config(format!(
                "{}: could not sign with field `private_key` ({:?}); the key may be corrupt, download a new one",
                self.origin,
                e.kind()
            ))
        })?;
        Ok(Secret::new(jwt))
    }

    /// A service-account JWT for `audience`, signed here with the key (no network).
    pub fn signed_jwt(&self, audience: &str, now: SystemTime) -> Result<Token> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = signed_jwt::Claims::new(&self.client_email, audience, now);
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            Error::Config(format!(
                "{}: could not sign with field `private_key` ({:?}); the key may be corrupt, download a new one",
                self.origin,
                e.kind()
            ))
        })?;
        super::id_token_from_jwt("service account key", Secret::new(jwt))
    }

    async fn fetch_token(&self, request: &TokenRequest) -> Result<Token> {
        if let TokenRequest::SignedJwt { audience } = request {
            return self.signed_jwt(audience, SystemTime::now());
        }
        let assertion = self.assertion(request, SystemTime::now())?;
        let call = Call::post_form(
            self.token_uri.clone(),
            &[
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", assertion.expose()),
            ],
            "token request",
        );
        drop(assertion);
        let endpoint = http::endpoint_label(&self.token_uri);
        let reply = http::send(&call).await.map_err(|e| self.explain(e))?;
        match request {
            TokenRequest::Access { .. } => {
                access_token_from_json(&endpoint, &reply.body, reply.sent_at)
            }
            TokenRequest::Id { .. } | TokenRequest::SignedJwt { .. } => id_token_from_json(
                &endpoint,
                &reply.body,
                "id_token",
                "no `id_token` in the response",
            ),
        }
    }

    /// Adds what to do for the rejections people actually hit.
    fn explain(&self, e: Error) -> Error {
        let email = self.client_email.clone();
        error::with_hint(e, Some(400), move |error| match error {
            Some("invalid_grant") => format!(
                "the key may have been deleted or disabled, or the system clock is off; \
                 check `gcloud iam service-accounts keys list --iam-account {email}`"
            ),
            Some("invalid_scope") => "check the requested scopes".to_owned(),
            _ => format!("check the key file for {email}"),
        })
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"***")
            .field("token_uri", &self.token_uri.as_str())
            .field("origin", &self.origin)
            .finish()
    }
}

impl TokenSource for ServiceAccountKey {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(self.fetch_token(request))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            kind: SourceKind::ServiceAccount,
            origin: self.origin.clone(),
            principal: Some(self.client_email.clone()),
            impersonating: None,
            quota_project_id: self.quota_project_id.clone(),
            token_uri: Some(self.token_uri.to_string()),
            federation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        jwt_expiring_in, key_json, Answer, Server, PKCS1_PEM, PKCS1_PUB_PEM, PKCS8_PEM,
    };
    use crate::token::TokenKind;

    fn key(token_uri: &str) -> ServiceAccountKey {
        ServiceAccountKey::from_json(
            &key_json("agent@proj.iam.gserviceaccount.com", PKCS8_PEM, token_uri),
            "key.json",
        )
        .unwrap()
    }

    fn decode(jwt: &str) -> (jsonwebtoken::Header, AssertionClaims) {
        let dk = jsonwebtoken::DecodingKey::from_rsa_pem(PKCS1_PUB_PEM.as_bytes()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["https://oauth2.googleapis.com/token"]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<AssertionClaims>(jwt, &dk, &v).unwrap();
        (data.header, data.claims)
    }

    #[test]
    fn access_assertion_is_signed_with_the_key_and_names_scopes() {
        let k = ServiceAccountKey::from_json(
            &key_json(
                "agent@proj.iam.gserviceaccount.com",
                PKCS1_PEM,
                "https://oauth2.googleapis.com/token",
            ),
            "key.json",
        )
        .unwrap();
        let now = SystemTime::now();
        let jwt = k
            .assertion(
                &TokenRequest::access([
                    "https://www.googleapis.com/auth/b",
                    "https://www.googleapis.com/auth/a",
                ])
                .unwrap(),
                now,
            )
            .unwrap();
        let (header, claims) = decode(jwt.expose());
        assert_eq!(header.kid.as_deref(), Some("test-key-id"));
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(claims.iss, "agent@proj.iam.gserviceaccount.com");
        assert_eq!(claims.aud, "https://oauth2.googleapis.com/token");
        assert_eq!(
            claims.scope.as_deref(),
            Some("https://www.googleapis.com/auth/a https://www.googleapis.com/auth/b")
        );
        assert_eq!(claims.target_audience, None);
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[test]
    fn id_assertion_carries_target_audience_and_no_scope() {
        let k = key("https://oauth2.googleapis.com/token");
        let claims = k.claims(
            &TokenRequest::id("https://svc-abc.a.run.app").unwrap(),
            SystemTime::now(),
        );
        assert_eq!(
            claims.target_audience.as_deref(),
            Some("https://svc-abc.a.run.app")
        );
        assert_eq!(claims.scope, None);
    }

    #[tokio::test]
    async fn a_signed_jwt_is_signed_with_the_key_without_any_request() {
        // A token_uri nobody listens on: signing must not call it.
        let k = ServiceAccountKey::from_json(
            &key_json(
                "agent@proj.iam.gserviceaccount.com",
                PKCS1_PEM,
                "http://127.0.0.1:9/token",
            ),
            "key.json",
        )
        .unwrap();
        let t = k
            .fetch(&TokenRequest::signed_jwt("https://iap.example.com/*").unwrap())
            .await
            .unwrap();
        let dk = jsonwebtoken::DecodingKey::from_rsa_pem(PKCS1_PUB_PEM.as_bytes()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["https://iap.example.com/*"]);
        let data = jsonwebtoken::decode::<signed_jwt::Claims>(t.value.expose(), &dk, &v).unwrap();
        assert_eq!(data.claims.iss, "agent@proj.iam.gserviceaccount.com");
        assert_eq!(data.claims.sub, data.claims.iss);
        assert_eq!(data.header.kid.as_deref(), Some("test-key-id"));
        assert_eq!(t.kind, TokenKind::Id);
        assert!(t.remaining(SystemTime::now()) > Duration::from_secs(3590));
    }

    #[test]
    fn assertion_audience_is_the_files_token_uri() {
        let k = key("http://127.0.0.1:9999/token");
        let claims = k.claims(&TokenRequest::id("a").unwrap(), SystemTime::now());
        assert_eq!(claims.aud, "http://127.0.0.1:9999/token");
    }

    #[test]
    fn bad_pem_is_a_config_error_naming_the_field_but_not_the_key() {
        let json = key_json(
            "a@b.c",
            "-----BEGIN PRIVATE KEY-----\nSENTINELnotbase64\n-----END PRIVATE KEY-----\n",
            "https://oauth2.googleapis.com/token",
        );
        let e = ServiceAccountKey::from_json(&json, "/keys/sa.json").unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Config(_)));
        assert!(
            text.contains("/keys/sa.json") && text.contains("`private_key`"),
            "{text}"
        );
        assert!(!text.contains("SENTINEL"), "{text}");
    }

    #[test]
    fn missing_fields_are_named() {
        for field in ["client_email", "private_key"] {
            let mut v: serde_json::Value = serde_json::from_str(&key_json(
                "a@b.c",
                PKCS8_PEM,
                "https://oauth2.googleapis.com/token",
            ))
            .unwrap();
            v.as_object_mut().unwrap().remove(field);
            let e = ServiceAccountKey::from_json(&v.to_string(), "sa.json").unwrap_err();
            assert!(
                e.to_string().contains(&format!("sa.json: field `{field}`")),
                "{e}"
            );
        }
    }

    #[test]
    fn missing_token_uri_means_googles_endpoint() {
        let mut v: serde_json::Value = serde_json::from_str(&key_json(
            "a@b.c",
            PKCS8_PEM,
            "https://oauth2.googleapis.com/token",
        ))
        .unwrap();
        v.as_object_mut().unwrap().remove("token_uri");
        let k = ServiceAccountKey::from_json(&v.to_string(), "sa.json").unwrap();
        assert_eq!(k.describe().token_uri.as_deref(), Some(DEFAULT_TOKEN_URI));
    }

    #[test]
    fn plain_http_token_uri_is_refused_unless_loopback() {
        let e = ServiceAccountKey::from_json(
            &key_json("a@b.c", PKCS8_PEM, "http://oauth2.example/token"),
            "sa.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("sa.json: field `token_uri`"), "{e}");
        assert!(ServiceAccountKey::from_json(
            &key_json("a@b.c", PKCS8_PEM, "http://localhost:8080/token"),
            "sa.json"
        )
        .is_ok());
    }

    #[test]
    fn two_keys_for_one_email_and_key_id_are_two_identities() {
        let one = key("https://oauth2.googleapis.com/token");
        let other = ServiceAccountKey::from_json(
            &key_json(
                "agent@proj.iam.gserviceaccount.com",
                PKCS1_PEM,
                "https://oauth2.googleapis.com/token",
            ),
            "forged.json",
        )
        .unwrap();
        assert_ne!(one.identity(), other.identity());
        assert_eq!(
            one.identity(),
            key("https://oauth2.googleapis.com/token").identity()
        );
        assert!(one
            .identity()
            .label()
            .starts_with("sa:agent@proj.iam.gserviceaccount.com#"));
        let debug = format!("{one:?} {}", one.identity());
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn token_uri_and_quota_project_are_part_of_the_identity() {
        let base = serde_json::from_str::<serde_json::Value>(&key_json(
            "a@b.iam.gserviceaccount.com",
            PKCS8_PEM,
            "https://oauth2.googleapis.com/token",
        ))
        .unwrap();
        let with = |field: &str, value: &str| {
            let mut v = base.clone();
            v[field] = value.into();
            ServiceAccountKey::from_json(&v.to_string(), "k")
                .unwrap()
                .identity()
                .clone()
        };
        let plain = ServiceAccountKey::from_json(&base.to_string(), "k")
            .unwrap()
            .identity()
            .clone();
        assert_ne!(plain, with("quota_project_id", "payer"));
        assert_ne!(
            plain,
            with("token_uri", "https://oauth2-x.p.googleapis.com/token")
        );
        assert_eq!(plain, with("private_key_id", "another-public-key-id"));
    }

    #[test]
    fn a_token_uri_outside_google_is_refused_before_any_connection() {
        let e = ServiceAccountKey::from_json(
            &key_json("a@b.c", PKCS8_PEM, "https://attacker.example/token"),
            "/keys/sa.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/keys/sa.json: field `token_uri`"), "{e}");
        assert!(e.contains("not a Google endpoint"), "{e}");
    }

    #[tokio::test]
    async fn fetches_an_access_token_with_the_jwt_bearer_grant() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.sa","expires_in":3599,"token_type":"Bearer"}"#,
        ))
        .await;
        let k = key(&format!("{}/token", server.base));
        let t = k
            .fetch(&TokenRequest::access(Vec::<String>::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.sa");
        assert_eq!(t.kind, TokenKind::Access);
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].target, "/token");
        assert_eq!(
            seen[0].form("grant_type").as_deref(),
            Some(JWT_BEARER_GRANT)
        );
        let assertion = seen[0].form("assertion").unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(&assertion)
            .unwrap()
            .claims;
        assert_eq!(claims.aud, format!("{}/token", server.base));
        assert_eq!(
            claims.scope.as_deref(),
            Some(crate::request::CLOUD_PLATFORM)
        );
    }

    #[tokio::test]
    async fn fetches_an_id_token_whose_expiry_is_its_exp() {
        let jwt = jwt_expiring_in(3600);
        let server = Server::always(Answer::json(200, format!(r#"{{"id_token":"{jwt}"}}"#))).await;
        let k = key(&format!("{}/token", server.base));
        let t = k
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), jwt);
        assert_eq!(t.kind, TokenKind::Id);
        let assertion = server.seen()[0].form("assertion").unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(&assertion)
            .unwrap()
            .claims;
        assert_eq!(
            claims.target_audience.as_deref(),
            Some("https://svc.run.app")
        );
    }

    #[tokio::test]
    async fn invalid_grant_is_rejected_once_with_a_hint() {
        let server = Server::always(Answer::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ))
        .await;
        let k = key(&format!("{}/token", server.base));
        let e = k
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap_err();
        match &e {
            Error::Rejected {
                error,
                description,
                hint,
                ..
            } => {
                assert_eq!(error.as_deref(), Some("invalid_grant"));
                assert_eq!(description.as_deref(), Some("Invalid JWT Signature."));
                assert!(hint.as_deref().unwrap_or("").contains("keys list"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn two_503s_then_success_yields_a_token_after_three_requests() {
        let server = Server::sequence(vec![
            Answer::json(503, r#"{"error":"backend_error"}"#),
            Answer::json(503, r#"{"error":"backend_error"}"#),
            Answer::json(
                200,
                r#"{"access_token":"ya29.third","expires_in":3599,"token_type":"Bearer"}"#,
            ),
        ])
        .await;
        let k = key(&format!("{}/token", server.base));
        let t = k
            .fetch(&TokenRequest::access(["s"]).unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.third");
        assert_eq!(server.seen().len(), 3);
    }

    #[tokio::test]
    async fn an_id_response_without_id_token_is_invalid() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.x","expires_in":3600}"#,
        ))
        .await;
        let k = key(&format!("{}/token", server.base));
        let e = k
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{e:?}");
    }
}

//! A user's own credentials: the `"type": "authorized_user"` file that
//! `gcloud auth application-default login` writes to the well-known ADC path.
//!
//! Tokens come from the OAuth2 refresh-token grant (RFC 6749 §6, as Google
//! documents it: <https://developers.google.com/identity/protocols/oauth2/web-server#offline>):
//! `POST token_uri` with `grant_type=refresh_token`, `client_id`,
//! `client_secret`, `refresh_token`.
//! - Access tokens: no `scope` is sent, as google-auth does when none is
//!   configured, so the token carries the scopes granted at login (gcloud's
//!   default includes cloud-platform); requested scopes cannot widen them.
//! - ID tokens: the same grant's `id_token`. Its `aud` is the OAuth client
//!   id, **not** the requested audience — exactly what
//!   `gcloud auth print-identity-token` prints. Cloud Run accepts such
//!   tokens from a project member for development; IAP never does. For a
//!   token with the real audience, impersonate a service account
//!   (`impersonate=` / `--impersonate-service-account`): see
//!   [`super::impersonated`]. A warning says so once per process.
//!
//! Security: the refresh token and client secret are long-lived secrets;
//! they only ever travel to `token_uri`, which must be https (or http to a
//! loopback emulator). `token_uri` is honoured when present (google-auth
//! ignores it for this type); absent, it is Google's endpoint.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{request::TokenRequest, sources::TokenSource};
//! let path = std::path::Path::new("/home/me/.config/gcloud/application_default_credentials.json");
//! let source = _native::adc::from_file(path, None)?;
//! let token = source.fetch(&TokenRequest::access(Vec::<String>::new())).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Once;

use reqwest::Url;

use super::{
    access_token_from_json, check_request, id_token_from_json, optional, required, BoxFuture,
    CredentialFile, SourceDescription, SourceKind, TokenSource, DEFAULT_TOKEN_URI,
};
use crate::error::{Error, Result};
use crate::http::{self, Call};
use crate::request::TokenRequest;
use crate::token::{Secret, Token};

static ID_TOKEN_AUDIENCE_WARNING: Once = Once::new();

/// A gcloud user login: OAuth client plus refresh token.
pub struct AuthorizedUser {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    token_uri: Url,
    quota_project_id: Option<String>,
    origin: String,
    /// Tells two users of the same OAuth client (gcloud's) apart in cache
    /// keys without revealing anything: a 64-bit hash of the refresh token.
    fingerprint: u64,
}

impl AuthorizedUser {
    /// Builds from a parsed credential file; `origin` names it in errors.
    pub fn from_file(f: CredentialFile, origin: &str) -> Result<Self> {
        let kind = SourceKind::AuthorizedUser;
        let client_id = required(f.client_id, origin, kind, "client_id")?
            .trim()
            .to_owned();
        let client_secret = required(f.client_secret, origin, kind, "client_secret")?;
        let refresh_token = required(f.refresh_token, origin, kind, "refresh_token")?;
        let token_uri = optional(f.token_uri).unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let token_uri = http::secure_endpoint(&token_uri, &format!("{origin}: field `token_uri`"))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        refresh_token.expose().hash(&mut h);
        Ok(AuthorizedUser {
            client_id,
            client_secret,
            refresh_token,
            token_uri,
            quota_project_id: optional(f.quota_project_id),
            origin: origin.to_owned(),
            fingerprint: h.finish(),
        })
    }

    /// Parses credential JSON; `origin` names it in errors.
    pub fn from_json(json: &str, origin: &str) -> Result<Self> {
        let f = CredentialFile::parse(json, origin)?;
        Self::from_file(f, origin)
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn quota_project_id(&self) -> Option<&str> {
        self.quota_project_id.as_deref()
    }

    async fn fetch_token(&self, request: &TokenRequest) -> Result<Token> {
        check_request(request)?;
        if let TokenRequest::Id { .. } = request {
            warn_about_id_token_audience();
        }
        let call = Call::post_form(
            self.token_uri.clone(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose()),
                ("refresh_token", self.refresh_token.expose()),
            ],
            "token request",
        );
        let endpoint = http::endpoint_label(&self.token_uri);
        let reply = http::send(&call).await.map_err(explain)?;
        match request {
            TokenRequest::Access { .. } => {
                access_token_from_json(&endpoint, &reply.body, reply.sent_at)
            }
            TokenRequest::Id { .. } => id_token_from_json(
                &endpoint,
                &reply.body,
                "id_token",
                "no `id_token` in the refresh response: the login was made without the `openid` scope; \
                 re-run `gcloud auth application-default login`",
            ),
        }
    }
}

fn explain(e: Error) -> Error {
    http::with_hint(e, None, |error| {
        match error {
        Some("invalid_grant") | Some("invalid_rapt") => {
            "the gcloud login has expired or was revoked; re-run `gcloud auth application-default login`".to_owned()
        }
        Some("invalid_client") | Some("unauthorized_client") => {
            "the OAuth client in the credential file is unknown or disabled; \
             re-run `gcloud auth application-default login`"
                .to_owned()
        }
        _ => "re-run `gcloud auth application-default login` if this persists".to_owned(),
    }
    })
}

fn warn_about_id_token_audience() {
    ID_TOKEN_AUDIENCE_WARNING.call_once(|| {
        log::warn!(
            "adk-token-exchange: ID token from user credentials (gcloud login): its `aud` is the OAuth client id, \
             not the requested audience. Cloud Run accepts such tokens from project members for development only, \
             and IAP never does. For a token with the real audience, impersonate a service account: \
             `impersonate=\"SA_EMAIL\"` in id_token_credential(), or \
             `gcloud auth application-default login --impersonate-service-account SA_EMAIL`."
        );
    });
}

impl fmt::Debug for AuthorizedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizedUser")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &self.refresh_token)
            .field("token_uri", &self.token_uri.as_str())
            .field("origin", &self.origin)
            .finish()
    }
}

impl TokenSource for AuthorizedUser {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(self.fetch_token(request))
    }

    fn identity(&self) -> String {
        format!(
            "user:{}@{}#{:016x}",
            self.client_id, self.token_uri, self.fingerprint
        )
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            kind: SourceKind::AuthorizedUser,
            origin: self.origin.clone(),
            principal: Some(self.client_id.clone()),
            impersonating: None,
            quota_project_id: self.quota_project_id.clone(),
            token_uri: Some(self.token_uri.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing::{Answer, Server};
    use crate::sources::testing::{jwt_expiring_in, user_json};
    use crate::token::TokenKind;

    fn user(server: &Server) -> AuthorizedUser {
        AuthorizedUser::from_json(
            &user_json(Some(&format!("{}/token", server.base))),
            "adc.json",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn refresh_grant_yields_an_access_token_without_sending_scope() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.user","expires_in":3599,"scope":"openid"}"#,
        ))
        .await;
        let t = user(&server)
            .fetch(&TokenRequest::access(["x"]))
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.user");
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].form("grant_type").as_deref(), Some("refresh_token"));
        assert_eq!(
            seen[0].form("refresh_token").as_deref(),
            Some("1//TEST-REFRESH")
        );
        assert_eq!(
            seen[0].form("client_secret").as_deref(),
            Some("d-TEST-SECRET")
        );
        assert_eq!(seen[0].form("scope"), None);
    }

    #[tokio::test]
    async fn id_request_returns_the_grants_id_token() {
        let jwt = jwt_expiring_in(3600);
        let server = Server::always(Answer::json(
            200,
            format!(r#"{{"access_token":"ya29.u","expires_in":3599,"id_token":"{jwt}"}}"#),
        ))
        .await;
        let t = user(&server)
            .fetch(&TokenRequest::id("https://svc.run.app"))
            .await
            .unwrap();
        assert_eq!(t.kind, TokenKind::Id);
        assert_eq!(t.value.expose(), jwt);
    }

    #[tokio::test]
    async fn missing_id_token_says_to_log_in_again() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.u","expires_in":3599}"#,
        ))
        .await;
        let e = user(&server)
            .fetch(&TokenRequest::id("https://svc.run.app"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("gcloud auth application-default login"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn revoked_login_is_rejected_with_the_fix_and_no_secret() {
        let server = Server::always(Answer::json(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ))
        .await;
        let e = user(&server)
            .fetch(&TokenRequest::access(Vec::<String>::new()))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("invalid_grant") && text.contains("application-default login"),
            "{text}"
        );
        assert!(
            !text.contains("TEST-REFRESH") && !text.contains("TEST-SECRET"),
            "{text}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn missing_refresh_token_is_named() {
        let mut v: serde_json::Value = serde_json::from_str(&user_json(None)).unwrap();
        v.as_object_mut().unwrap().remove("refresh_token");
        let e = AuthorizedUser::from_json(&v.to_string(), "adc.json").unwrap_err();
        assert!(
            e.to_string().contains("adc.json: field `refresh_token`"),
            "{e}"
        );
    }

    #[test]
    fn identity_tells_users_apart_without_revealing_the_token() {
        let a = AuthorizedUser::from_json(&user_json(None), "a").unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&user_json(None)).unwrap();
        v["refresh_token"] = "1//OTHER-USER".into();
        let b = AuthorizedUser::from_json(&v.to_string(), "b").unwrap();
        assert!(a.identity().starts_with("user:764086051850-test.apps.googleusercontent.com@https://oauth2.googleapis.com/token#"));
        assert_ne!(a.identity(), b.identity());
        assert!(!a.identity().contains("TEST-REFRESH"));
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("TEST-REFRESH") && !debug.contains("TEST-SECRET"),
            "{debug}"
        );
        assert_eq!(a.describe().quota_project_id.as_deref(), Some("quota-proj"));
    }
}

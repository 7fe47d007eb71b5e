//! A user's own credentials: the `"type": "authorized_user"` file that
//! `gcloud auth application-default login` writes to the well-known ADC path.
//!
//! Tokens come from the OAuth2 refresh-token grant (RFC 6749 §6, as Google
//! documents it: <https://developers.google.com/identity/protocols/oauth2/web-server#offline>):
//! `POST token_uri` with `grant_type=refresh_token`, `client_id`,
//! `client_secret`, `refresh_token`.
//! - Access tokens: the requested scopes are sent as `scope`, so the token
//!   carries exactly those (least privilege: a read-only request gets a
//!   read-only token, not the login's full cloud-platform grant); Google
//!   refuses scopes the login was not granted (`invalid_scope`).
//! - ID tokens: the same grant's `id_token`. Its `aud` is the OAuth client
//!   id, **not** the requested audience — exactly what
//!   `gcloud auth print-identity-token` prints. Cloud Run accepts such
//!   tokens from a project member for development; IAP never does. For a
//!   token with the real audience, impersonate a service account
//!   (`impersonate=` / `--impersonate-service-account`): see
//!   [`super::impersonated`]. A warning says so once per process.
//!
//! Security: the refresh token and client secret are long-lived secrets;
//! they only ever travel to `token_uri`, which must be a Google host over
//! https (or loopback, for emulators; see `http::endpoint`). `token_uri` is
//! honoured when present (google-auth ignores it for this type); absent, it
//! is Google's endpoint.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{request::TokenRequest, sources::TokenSource};
//! let path = std::path::Path::new("/home/me/.config/gcloud/application_default_credentials.json");
//! let source = _native::adc::from_file(path, None)?;
//! let token = source.fetch(&TokenRequest::access(Vec::<String>::new())?).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Once;

use reqwest::Url;

use super::signed_jwt::cannot_sign;
use super::{
    access_token_from_json, id_token_from_json, optional, required, BoxFuture, CredentialFile,
    SourceDescription, SourceKind, TokenSource, DEFAULT_TOKEN_URI,
};
use crate::error::{self, Error, Result};
use crate::http::endpoint::GOOGLE_UNIVERSE;
use crate::http::{self, Call};
use crate::identity::Identity;
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
    /// Client id, client secret and refresh token (keyed: see `identity.rs`).
    identity: Identity,
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
        let token_uri = http::credential_endpoint(
            &token_uri,
            &format!("{origin}: field `token_uri`"),
            GOOGLE_UNIVERSE,
        )?;
        let quota_project_id = optional(f.quota_project_id);
        let identity = Identity::builder("authorized_user")
            .part(client_id.as_bytes())
            .fingerprint(client_secret.expose().as_bytes())
            .fingerprint(refresh_token.expose().as_bytes())
            .part(token_uri.as_str().as_bytes())
            .optional(quota_project_id.as_deref())
            .finish(format_args!("user:{client_id}"));
        Ok(AuthorizedUser {
            client_id,
            client_secret,
            refresh_token,
            token_uri,
            quota_project_id,
            origin: origin.to_owned(),
            identity,
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
        match request {
            TokenRequest::Id { .. } => warn_about_id_token_audience(),
            TokenRequest::SignedJwt { .. } => return Err(cannot_sign("a gcloud user login")),
            TokenRequest::Access { .. } => {}
        }
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        // Scopes asked are scopes requested (RFC 6749 §6): the token is
        // narrowed to them. An ID token keeps the login's own grant.
        let scope = request.scope_param();
        if let Some(scope) = &scope {
            form.push(("scope", scope));
        }
        let call = Call::post_form(self.token_uri.clone(), &form, "token request");
        let endpoint = http::endpoint_label(&self.token_uri);
        let reply = http::send(&call).await.map_err(explain)?;
        match request {
            TokenRequest::Access { .. } => {
                access_token_from_json(&endpoint, &reply.body, reply.sent_at)
            }
            TokenRequest::Id { .. } | TokenRequest::SignedJwt { .. } => id_token_from_json(
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
    error::with_hint(e, None, |error| {
        match error {
        Some("invalid_grant") | Some("invalid_rapt") => {
            "the gcloud login has expired or was revoked; re-run `gcloud auth application-default login`".to_owned()
        }
        Some("invalid_scope") => {
            "the gcloud login was not granted the requested scopes (a token is only ever \
             narrowed to what was asked, never widened); re-run `gcloud auth application-default \
             login --scopes=SCOPES` with them, or ask for cloud-platform"
                .to_owned()
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

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            kind: SourceKind::AuthorizedUser,
            origin: self.origin.clone(),
            principal: Some(self.client_id.clone()),
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
    use crate::testing::{jwt_expiring_in, user_json, Answer, Server};
    use crate::token::TokenKind;

    fn user(server: &Server) -> AuthorizedUser {
        AuthorizedUser::from_json(
            &user_json(Some(&format!("{}/token", server.base))),
            "adc.json",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn refresh_grant_yields_an_access_token_for_exactly_the_requested_scopes() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.user","expires_in":3599,"scope":"openid"}"#,
        ))
        .await;
        let t = user(&server)
            .fetch(
                &TokenRequest::access(["https://www.googleapis.com/auth/devstorage.read_only"])
                    .unwrap(),
            )
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
        assert_eq!(
            seen[0].form("scope").as_deref(),
            Some("https://www.googleapis.com/auth/devstorage.read_only")
        );
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
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(t.kind, TokenKind::Id);
        assert_eq!(t.value.expose(), jwt);
        assert_eq!(server.seen()[0].form("scope"), None);
    }

    #[tokio::test]
    async fn missing_id_token_says_to_log_in_again() {
        let server = Server::always(Answer::json(
            200,
            r#"{"access_token":"ya29.u","expires_in":3599}"#,
        ))
        .await;
        let e = user(&server)
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
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
            .fetch(&TokenRequest::access(Vec::<String>::new()).unwrap())
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
        let mut v: serde_json::Value = serde_json::from_str(&user_json(None)).unwrap();
        v["client_secret"] = "d-OTHER-SECRET".into();
        let c = AuthorizedUser::from_json(&v.to_string(), "c").unwrap();
        let label = a.identity().label();
        assert!(
            label.starts_with("user:764086051850-test.apps.googleusercontent.com#"),
            "{label}"
        );
        assert_ne!(a.identity(), b.identity());
        assert_ne!(
            a.identity(),
            c.identity(),
            "the client secret is part of the identity"
        );
        assert_eq!(
            a.identity(),
            AuthorizedUser::from_json(&user_json(None), "again")
                .unwrap()
                .identity()
        );
        assert!(!label.contains("TEST-REFRESH"));
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("TEST-REFRESH") && !debug.contains("TEST-SECRET"),
            "{debug}"
        );
        assert_eq!(a.describe().quota_project_id.as_deref(), Some("quota-proj"));
    }

    #[test]
    fn a_token_uri_outside_google_never_receives_the_refresh_token() {
        let e = AuthorizedUser::from_json(
            &user_json(Some("https://collector.example/token")),
            "adc.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("adc.json: field `token_uri`") && e.contains("not a Google endpoint"),
            "{e}"
        );
        assert!(
            !e.contains("TEST-REFRESH") && !e.contains("TEST-SECRET"),
            "{e}"
        );
    }
}

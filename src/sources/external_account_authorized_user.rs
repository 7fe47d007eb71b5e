//! A workforce identity user login: the `"type":
//! "external_account_authorized_user"` file that `gcloud auth login
//! --cred-file=…` (Workforce Identity Federation, browser sign-in) leaves
//! behind, as `gcloud auth application-default login` does for Google
//! accounts.
//!
//! Tokens come from the OAuth 2.0 refresh-token grant at the file's
//! `token_url` (Google's STS, `https://sts.googleapis.com/v1/oauth/token`),
//! with the file's OAuth client as HTTP Basic authentication, as google-auth
//! does (<https://cloud.google.com/iam/docs/workforce-obtaining-short-lived-credentials>).
//! `revoke_url` and `token_info_url` are kept as data only (for `doctor`);
//! nothing is revoked or introspected. The scopes of the login are those it
//! was granted: like google-auth, no `scope` is sent with the refresh.
//! When STS rotates the refresh token, the new one is used from then on (in
//! this process; the file is not rewritten).
//!
//! ID tokens: a workforce login has none; impersonate a service account
//! (`impersonate="SA_EMAIL"`), which the error says.
//!
//! Security: the refresh token and client secret are long-lived secrets and
//! go only to `token_url`, which must be a Google host (of the file's
//! `universe_domain`) or loopback.

use std::fmt;
use std::sync::Mutex;

use reqwest::Url;

use super::{
    access_token_from_json, optional, required, universe_of, BoxFuture, CredentialFile, Federation,
    ResponseFields, SourceDescription, SourceKind, TokenSource,
};
use crate::error::{self, Error, Result};
use crate::http::{self, Call};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::{Secret, Token};

/// A workforce identity federation user login.
pub struct ExternalAccountAuthorizedUser {
    client_id: String,
    client_secret: Secret,
    /// The current refresh token (STS may rotate it).
    refresh_token: Mutex<Secret>,
    token_url: Url,
    audience: Option<String>,
    revoke_url: Option<String>,
    token_info_url: Option<String>,
    quota_project_id: Option<String>,
    origin: String,
    /// Client, the refresh token first read, token URL, quota project.
    identity: Identity,
}

impl ExternalAccountAuthorizedUser {
    /// Builds from a parsed credential file; `origin` names it in errors.
    pub fn from_file(f: CredentialFile, origin: &str) -> Result<Self> {
        let kind = SourceKind::ExternalAccountAuthorizedUser;
        let universe = universe_of(&f);
        let refresh_token = required(f.refresh_token, origin, kind, "refresh_token")?;
        let client_id = required(f.client_id, origin, kind, "client_id")?
            .trim()
            .to_owned();
        let client_secret = required(f.client_secret, origin, kind, "client_secret")?;
        let token_url = required(f.token_url, origin, kind, "token_url")?;
        let token_url = http::credential_endpoint(
            &token_url,
            &format!("{origin}: field `token_url`"),
            &universe,
        )?;
        let audience = optional(f.audience);
        let quota_project_id = optional(f.quota_project_id);
        let pool = audience
            .as_deref()
            .map(super::external_account::Pool::parse)
            .unwrap_or_default();
        let identity = Identity::builder("external_account_authorized_user")
            .part(client_id.as_bytes())
            .fingerprint(client_secret.expose().as_bytes())
            .fingerprint(refresh_token.expose().as_bytes())
            .part(token_url.as_str().as_bytes())
            .optional(audience.as_deref())
            .optional(quota_project_id.as_deref())
            .finish(format_args!(
                "workforce-user:{}",
                pool.pool_id.as_deref().unwrap_or(&client_id)
            ));
        Ok(ExternalAccountAuthorizedUser {
            client_id,
            client_secret,
            refresh_token: Mutex::new(refresh_token),
            token_url,
            audience,
            revoke_url: optional(f.revoke_url),
            token_info_url: optional(f.token_info_url),
            quota_project_id,
            origin: origin.to_owned(),
            identity,
        })
    }

    fn current_refresh_token(&self) -> Secret {
        self.refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn refresh(&self) -> Result<Token> {
        let refresh_token = self.current_refresh_token();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let call = Call::post_form(self.token_url.clone(), &form, "token request")
            .basic_auth(&self.client_id, &self.client_secret);
        drop(refresh_token);
        let endpoint = http::endpoint_label(&self.token_url);
        let reply = http::send(&call).await.map_err(explain)?;
        let token = access_token_from_json(&endpoint, &reply.body, reply.sent_at)?;
        if let Some(rotated) =
            ResponseFields::parse(&endpoint, &reply.body)?.secret("refresh_token")?
        {
            *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = rotated;
        }
        Ok(token)
    }
}

fn explain(e: Error) -> Error {
    error::with_hint(e, None, |code| match code {
        Some("invalid_grant") => {
            "the workforce login has expired or was revoked; sign in again with \
             `gcloud auth login --cred-file=LOGIN_CONFIG` and re-create the ADC file"
                .to_owned()
        }
        Some("invalid_client") | Some("unauthorized_client") => {
            "the OAuth client in the credential file is unknown or disabled".to_owned()
        }
        _ => "sign in again with `gcloud auth login --cred-file=LOGIN_CONFIG` if this persists"
            .to_owned(),
    })
}

impl fmt::Debug for ExternalAccountAuthorizedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountAuthorizedUser")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &"***")
            .field("token_url", &self.token_url.as_str())
            .field("revoke_url", &self.revoke_url)
            .field("token_info_url", &self.token_info_url)
            .field("origin", &self.origin)
            .finish()
    }
}

impl TokenSource for ExternalAccountAuthorizedUser {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(async move {
            match request {
                TokenRequest::Access { .. } => self.refresh().await,
                TokenRequest::Id { .. } => Err(Error::Config(format!(
                    "{}: a workforce identity login (external_account_authorized_user) has no ID \
                     token; impersonate a service account that may call the service: \
                     impersonate=\"SA_EMAIL\" (your workforce principal needs \
                     roles/iam.serviceAccountTokenCreator on it)",
                    self.origin
                ))),
                TokenRequest::SignedJwt { .. } => Err(super::signed_jwt::cannot_sign(
                    "a workforce identity login (external_account_authorized_user)",
                )),
            }
        })
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        let pool = self
            .audience
            .as_deref()
            .map(super::external_account::Pool::parse)
            .unwrap_or_default();
        SourceDescription {
            kind: SourceKind::ExternalAccountAuthorizedUser,
            origin: self.origin.clone(),
            principal: Some(self.client_id.clone()),
            impersonating: None,
            quota_project_id: self.quota_project_id.clone(),
            token_uri: Some(http::endpoint_label(&self.token_url)),
            federation: Some(Federation {
                credential_source: "refresh_token",
                subject_from: "a workforce login (gcloud auth login --cred-file)".into(),
                audience: self.audience.clone().unwrap_or_default(),
                pool_kind: pool.kind,
                project_number: pool.project_number,
                location: pool.location,
                pool_id: pool.pool_id,
                provider_id: pool.provider_id,
                subject_token_type: None,
                token_url: http::endpoint_label(&self.token_url),
                impersonation_url: None,
                token_lifetime_seconds: None,
                workforce_pool_user_project: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Answer, Server};

    fn login(token_url: &str) -> String {
        serde_json::json!({
            "type": "external_account_authorized_user",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/corp/providers/okta",
            "refresh_token": "WF-REFRESH-1",
            "token_url": token_url,
            "token_info_url": "https://sts.googleapis.com/v1/introspect",
            "revoke_url": "https://sts.googleapis.com/v1/oauthtoken:revoke",
            "client_id": "wf-client",
            "client_secret": "WF-CLIENT-SECRET",
            "quota_project_id": "billing",
        })
        .to_string()
    }

    fn source(json: &str) -> Result<ExternalAccountAuthorizedUser> {
        ExternalAccountAuthorizedUser::from_file(CredentialFile::parse(json, "wf.json")?, "wf.json")
    }

    #[tokio::test]
    async fn refreshes_at_token_url_with_basic_client_auth_and_rotates_the_refresh_token() {
        let server = Server::sequence(vec![
            Answer::json(
                200,
                r#"{"access_token":"ya29.wf1","expires_in":3600,"refresh_token":"WF-REFRESH-2"}"#,
            ),
            Answer::json(200, r#"{"access_token":"ya29.wf2","expires_in":3600}"#),
        ])
        .await;
        let src = source(&login(&format!("{}/v1/oauth/token", server.base))).unwrap();
        let req = TokenRequest::access(["https://www.googleapis.com/auth/cloud-platform"]).unwrap();
        assert_eq!(src.fetch(&req).await.unwrap().value.expose(), "ya29.wf1");
        assert_eq!(src.fetch(&req).await.unwrap().value.expose(), "ya29.wf2");
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].target, "/v1/oauth/token");
        assert_eq!(seen[0].form("grant_type").as_deref(), Some("refresh_token"));
        assert_eq!(
            seen[0].form("refresh_token").as_deref(),
            Some("WF-REFRESH-1")
        );
        assert_eq!(
            seen[1].form("refresh_token").as_deref(),
            Some("WF-REFRESH-2")
        );
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("wf-client:WF-CLIENT-SECRET");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Basic {basic}").as_str())
        );
        let d = src.describe();
        assert_eq!(d.kind, SourceKind::ExternalAccountAuthorizedUser);
        assert_eq!(d.quota_project_id.as_deref(), Some("billing"));
        let f = d.federation.unwrap();
        assert_eq!(
            (f.pool_kind, f.pool_id.as_deref()),
            (Some("workforce"), Some("corp"))
        );
    }

    #[tokio::test]
    async fn an_id_token_request_says_to_impersonate() {
        let src = source(&login("https://sts.googleapis.com/v1/oauth/token")).unwrap();
        let e = src
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains("impersonate=\"SA_EMAIL\""), "{e}");
    }

    #[test]
    fn token_url_must_be_google_and_secrets_stay_out_of_debug_and_errors() {
        let e = source(&login("https://sts.attacker.example/v1/oauth/token"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wf.json: field `token_url`") && e.contains("not a Google endpoint"),
            "{e}"
        );
        let src = source(&login("https://sts.googleapis.com/v1/oauth/token")).unwrap();
        let text = format!("{src:?} {}", src.identity());
        assert!(
            !text.contains("WF-REFRESH") && !text.contains("WF-CLIENT-SECRET"),
            "{text}"
        );
        for field in ["refresh_token", "client_id", "client_secret", "token_url"] {
            let mut v: serde_json::Value =
                serde_json::from_str(&login("https://sts.googleapis.com/t")).unwrap();
            v.as_object_mut().unwrap().remove(field);
            let e = source(&v.to_string()).unwrap_err().to_string();
            assert!(e.contains(&format!("field `{field}`")), "{e}");
        }
    }

    #[tokio::test]
    async fn an_expired_login_says_to_sign_in_again() {
        let server = Server::always(Answer::json(
            400,
            r#"{"error":"invalid_grant","error_description":"The refresh token has expired."}"#,
        ))
        .await;
        let src = source(&login(&format!("{}/v1/oauth/token", server.base))).unwrap();
        let e = src
            .fetch(&TokenRequest::cloud_platform())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid_grant") && e.contains("gcloud auth login --cred-file"),
            "{e}"
        );
        assert!(!e.contains("WF-REFRESH"), "{e}");
    }
}

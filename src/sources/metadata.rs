//! The metadata server of Cloud Run, Cloud Functions, GKE (Workload
//! Identity), Compute Engine and Agent Engine: tokens for the service account
//! attached to the workload, with no key anywhere.
//!
//! Protocol (<https://cloud.google.com/compute/docs/metadata/querying-metadata>,
//! <https://cloud.google.com/run/docs/securing/service-identity#fetching_identity_and_access_tokens_using_the_metadata_server>):
//! every request carries `Metadata-Flavor: Google` (the server refuses
//! requests without it, which stops SSRF through naive proxies);
//! - access: `GET /computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b`
//!   → `{"access_token", "expires_in", "token_type"}`;
//! - ID: `GET .../service-accounts/default/identity?audience=AUD&format=full`
//!   → the JWT as the body.
//!
//! The host is `$GCE_METADATA_HOST` (or its old name `$GCE_METADATA_ROOT`;
//! default `metadata.google.internal`), as google-auth reads it. Requests are plain, unbound GETs: google-auth
//! binds Agent Engine tokens to a client certificate by default, and such
//! tokens fail anywhere outside mTLS; these do not. Requests never go
//! through a proxy.
//!
//! ```no_run
//! # async fn run() -> _native::error::Result<()> {
//! use _native::{request::TokenRequest, sources::{metadata::MetadataServer, TokenSource}};
//! let server = MetadataServer::from_env()?;
//! let id = server.fetch(&TokenRequest::id("https://my-mcp-abc123-uc.a.run.app")?).await?;
//! # Ok(()) }
//! ```

use reqwest::Url;

use super::signed_jwt::cannot_sign;
use super::{
    access_token_from_json, id_token_from_jwt, invalid, BoxFuture, SourceDescription, SourceKind,
    TokenSource,
};
use crate::error::{self, Error, Result};
use crate::http::{self, Call};
use crate::identity::Identity;
use crate::request::TokenRequest;
use crate::token::{Secret, Token};

/// Variable naming the metadata server host (and optional port).
pub const HOST_VAR: &str = "GCE_METADATA_HOST";
/// The old name of [`HOST_VAR`], read when it is unset.
pub const LEGACY_HOST_VAR: &str = "GCE_METADATA_ROOT";
/// The metadata server's DNS name on Google Cloud.
pub const DEFAULT_HOST: &str = "metadata.google.internal";
/// The header every metadata request and response carries.
pub const FLAVOR_HEADER: &str = "Metadata-Flavor";
pub const FLAVOR_VALUE: &str = "Google";

const ACCOUNT_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default";

/// The metadata server at one host.
#[derive(Clone, Debug)]
pub struct MetadataServer {
    base: Url,
    /// The server's address: it decides whose tokens these are.
    identity: Identity,
}

impl MetadataServer {
    /// The server named by `$GCE_METADATA_HOST` (or its old name
    /// `$GCE_METADATA_ROOT`, as google-auth reads it), else
    /// `metadata.google.internal`.
    pub fn from_env() -> Result<Self> {
        for var in [HOST_VAR, LEGACY_HOST_VAR] {
            match std::env::var(var) {
                Ok(h) if !h.trim().is_empty() => {
                    return Self::new(h.trim()).map_err(|_| {
                        Error::Config(format!(
                            "{var}={h:?} is not a host[:port]; unset it or fix it"
                        ))
                    })
                }
                _ => {}
            }
        }
        Self::new(DEFAULT_HOST)
    }

    /// The server at `host` (`name` or `name:port`).
    pub fn new(host: &str) -> Result<Self> {
        let base = Url::parse(&format!("http://{host}"))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| {
                Error::Config(format!("{host:?} is not a metadata server host[:port]"))
            })?;
        let identity = Identity::builder("metadata")
            .part(base.as_str().as_bytes())
            .finish(format_args!(
                "metadata:{}",
                base.as_str().trim_end_matches('/')
            ));
        Ok(MetadataServer { base, identity })
    }

    /// `http://host[:port]`.
    pub fn base_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    fn call(&self, url: Url, what: &'static str) -> Call {
        Call::get(url, what)
            .header(FLAVOR_HEADER, FLAVOR_VALUE)
            .direct()
    }

    /// The attached service account's email (one cheap GET; for `doctor`).
    pub async fn email(&self) -> Result<String> {
        let url = self.url(&format!("{ACCOUNT_PATH}/email"));
        let endpoint = http::endpoint_label(&url);
        let reply = http::send(&self.call(url, "service account email request"))
            .await
            .map_err(explain)?;
        let email = std::str::from_utf8(&reply.body)
            .ok()
            .map(str::trim)
            .filter(|e| !e.is_empty() && e.len() < 320 && !e.contains(char::is_whitespace))
            .ok_or_else(|| invalid(&endpoint, "the email is not a single line of text".into()))?;
        Ok(email.to_owned())
    }

    async fn fetch_token(&self, request: &TokenRequest) -> Result<Token> {
        let url = match request {
            TokenRequest::SignedJwt { .. } => return Err(cannot_sign("the metadata server")),
            TokenRequest::Access { scopes } => {
                let mut u = self.url(&format!("{ACCOUNT_PATH}/token"));
                u.query_pairs_mut().append_pair("scopes", &scopes.join(","));
                u
            }
            TokenRequest::Id { audience } => {
                let mut u = self.url(&format!("{ACCOUNT_PATH}/identity"));
                u.query_pairs_mut()
                    .append_pair("audience", audience)
                    .append_pair("format", "full");
                u
            }
        };
        let endpoint = http::endpoint_label(&url);
        let reply = http::send(&self.call(url, "token request"))
            .await
            .map_err(explain)?;
        match request {
            TokenRequest::Access { .. } => {
                access_token_from_json(&endpoint, &reply.body, reply.sent_at)
            }
            TokenRequest::Id { .. } | TokenRequest::SignedJwt { .. } => {
                let text = std::str::from_utf8(&reply.body)
                    .map_err(|_| invalid(&endpoint, "the ID token is not text".into()))?;
                id_token_from_jwt(&endpoint, Secret::new(text.trim()))
            }
        }
    }
}

/// The metadata server's 404 means "no service account attached".
fn explain(e: Error) -> Error {
    error::with_hint(e, Some(404), |_| {
        "this workload has no service account attached (or, on GKE, Workload Identity is not \
         configured for its Kubernetes service account)"
            .to_owned()
    })
}

impl TokenSource for MetadataServer {
    fn fetch<'a>(&'a self, request: &'a TokenRequest) -> BoxFuture<'a, Result<Token>> {
        Box::pin(self.fetch_token(request))
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn describe(&self) -> SourceDescription {
        SourceDescription {
            kind: SourceKind::Metadata,
            origin: format!("metadata server {}", self.base_url()),
            principal: None,
            impersonating: None,
            quota_project_id: None,
            token_uri: Some(self.base_url()),
            federation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{jwt_expiring_in, Answer, Server};
    use crate::token::TokenKind;

    #[tokio::test]
    async fn a_signed_jwt_is_refused_without_a_request_and_says_to_impersonate() {
        let server = Server::always(metadata_answer("unused")).await;
        let md = MetadataServer::new(server.base.trim_start_matches("http://")).unwrap();
        let e = md
            .fetch(&TokenRequest::signed_jwt("https://iap.example.com/*").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains("impersonate="), "{e}");
        assert!(server.seen().is_empty());
    }

    fn metadata_answer(body: impl Into<String>) -> Answer {
        Answer::json(200, body).with_header(FLAVOR_HEADER, FLAVOR_VALUE)
    }

    #[tokio::test]
    async fn access_token_request_sends_the_flavor_header_and_scopes() {
        let server = Server::always(metadata_answer(
            r#"{"access_token":"ya29.md","expires_in":3000,"token_type":"Bearer"}"#,
        ))
        .await;
        let md = MetadataServer::new(server.authority()).unwrap();
        let t = md
            .fetch(&TokenRequest::access(["s2", "s1"]).unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), "ya29.md");
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("metadata-flavor"), Some("Google"));
        assert_eq!(
            seen[0].target,
            "/computeMetadata/v1/instance/service-accounts/default/token?scopes=s1%2Cs2"
        );
    }

    #[tokio::test]
    async fn id_token_request_asks_for_the_full_format_and_reads_the_body() {
        let jwt = jwt_expiring_in(3600);
        let server = Server::always(Answer::text(200, format!("{jwt}\n"))).await;
        let md = MetadataServer::new(server.authority()).unwrap();
        let t = md
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap();
        assert_eq!(t.value.expose(), jwt);
        assert_eq!(t.kind, TokenKind::Id);
        let seen = server.seen();
        assert_eq!(seen[0].header("metadata-flavor"), Some("Google"));
        assert_eq!(
            seen[0].target,
            "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Fsvc.run.app&format=full"
        );
    }

    #[tokio::test]
    async fn a_non_jwt_identity_body_is_an_invalid_response() {
        let server = Server::always(Answer::text(200, "<html>captive portal</html>")).await;
        let md = MetadataServer::new(server.authority()).unwrap();
        let e = md
            .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn no_attached_service_account_is_explained() {
        let server = Server::always(Answer::text(404, "Not Found")).await;
        let md = MetadataServer::new(server.authority()).unwrap();
        let e = md
            .fetch(&TokenRequest::access(Vec::<String>::new()).unwrap())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no service account attached"), "{e}");
        assert_eq!(server.seen().len(), 1);
    }

    #[tokio::test]
    async fn email_is_read_as_text() {
        let server = Server::always(Answer::text(200, "sa@proj.iam.gserviceaccount.com")).await;
        let md = MetadataServer::new(server.authority()).unwrap();
        assert_eq!(md.email().await.unwrap(), "sa@proj.iam.gserviceaccount.com");
        assert!(server.seen()[0]
            .target
            .ends_with("/service-accounts/default/email"));
    }

    #[test]
    fn identity_names_the_host() {
        let md = MetadataServer::new("metadata.google.internal").unwrap();
        assert!(
            md.identity()
                .label()
                .starts_with("metadata:http://metadata.google.internal#"),
            "{}",
            md.identity()
        );
        assert_ne!(
            md.identity(),
            MetadataServer::new("127.0.0.1:8080").unwrap().identity()
        );
        assert_eq!(
            md.describe().origin,
            "metadata server http://metadata.google.internal"
        );
        assert!(MetadataServer::new("bad host/x").is_err());
    }
}

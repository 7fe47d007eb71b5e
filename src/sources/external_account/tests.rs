//! Tests of Workload Identity Federation, each against loopback servers
//! standing in for STS, IAM, the subject token endpoints and AWS's
//! instance metadata service.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::executable::{self, parse_response, split_command, Response, ALLOW_VAR};
use super::*;
use crate::adc;
use crate::testing::{
    jwt_expiring_in, percent_decode, rfc3339_in, Answer, EnvVars, Seen, Server, TempDir, ENV_LOCK,
};
use crate::token::TokenKind;

const WORKLOAD: &str =
    "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/github/providers/my-repo";
const WORKFORCE: &str = "//iam.googleapis.com/locations/global/workforcePools/corp/providers/okta";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const SA: &str = "mcp-caller@proj.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// An `external_account` file as create-cred-config writes it, with `extra` merged in.
fn wif(token_url: &str, source: Value, extra: Value) -> String {
    let mut v = json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": WORKLOAD,
        "subject_token_type": JWT_TYPE,
        "token_url": token_url,
        "credential_source": source,
        "token_info_url": "https://sts.googleapis.com/v1/introspect",
    });
    if let Value::Object(extra) = extra {
        for (k, val) in extra {
            v[k] = val;
        }
    }
    v.to_string()
}

/// STS's token endpoint on `server`.
fn sts(server: &Server) -> String {
    format!("{}/v1/token", server.base)
}

fn load(json: &str) -> Result<Arc<dyn TokenSource>> {
    adc::from_json(json, "wif.json", None)
}

fn impersonation_url(base: &str) -> String {
    format!("{base}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
}

/// STS at `/v1/token`, IAM under `/v1/projects/`, and `/subject` answering `subject`.
async fn google(subject: Answer) -> Server {
    let id_token = jwt_expiring_in(3600);
    let expire = rfc3339_in(3600);
    Server::start(move |_, req: &Seen| {
        let path = req.target.split('?').next().unwrap_or_default();
        if path == "/v1/token" {
            Answer::json(
                200,
                r#"{"access_token":"ya29.federated","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3599}"#,
            )
        } else if path.ends_with(":generateAccessToken") {
            Answer::json(200, format!(r#"{{"accessToken":"ya29.sa","expireTime":"{expire}"}}"#))
        } else if path.ends_with(":generateIdToken") {
            Answer::json(200, format!(r#"{{"token":"{id_token}"}}"#))
        } else if path == "/subject" {
            subject.clone()
        } else {
            Answer::json(404, "{}")
        }
    })
    .await
}

fn sts_requests(server: &Server) -> Vec<Seen> {
    server
        .seen()
        .into_iter()
        .filter(|s| s.target == "/v1/token")
        .collect()
}

#[tokio::test]
async fn a_file_subject_token_is_exchanged_at_sts_as_rfc_8693_says() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.k8s-projected.token\n");
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({}),
    );
    let src = load(&json).unwrap();
    let t = src
        .fetch(
            &TokenRequest::access(["https://www.googleapis.com/auth/devstorage.read_only"])
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(t.value.expose(), "ya29.federated");
    assert!(t.remaining(SystemTime::now()) > Duration::from_secs(3500));
    let seen = sts_requests(&server);
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.form("grant_type").as_deref(), Some(TOKEN_EXCHANGE_GRANT));
    assert_eq!(s.form("audience").as_deref(), Some(WORKLOAD));
    assert_eq!(
        s.form("scope").as_deref(),
        Some("https://www.googleapis.com/auth/devstorage.read_only")
    );
    assert_eq!(
        s.form("requested_token_type").as_deref(),
        Some(ACCESS_TOKEN_TYPE)
    );
    assert_eq!(
        s.form("subject_token").as_deref(),
        Some("eyJ.k8s-projected.token")
    );
    assert_eq!(s.form("subject_token_type").as_deref(), Some(JWT_TYPE));
    assert_eq!(s.form("options"), None);
    assert_eq!(s.header("authorization"), None);
    let d = src.describe();
    assert_eq!(d.kind, SourceKind::ExternalAccount);
    assert_eq!(d.impersonating, None);
}

#[tokio::test]
async fn a_json_file_gives_the_named_field() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let path = dir.write("token.json", r#"{"id_token":"eyJ.from-json","other":"x"}"#);
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap(), "format": {"type": "json", "subject_token_field_name": "id_token"}}),
        json!({}),
    );
    load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap();
    assert_eq!(
        sts_requests(&server)[0].form("subject_token").as_deref(),
        Some("eyJ.from-json")
    );
    let wrong_field = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap(), "format": {"type": "json", "subject_token_field_name": "value"}}),
        json!({}),
    );
    let e = load(&wrong_field)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(e.to_string().contains("has no field `value`"), "{e}");
    assert!(!e.to_string().contains("from-json"), "{e}");
}

#[tokio::test]
async fn a_url_subject_token_is_fetched_with_its_headers_like_github_actions() {
    // GitHub Actions: ACTIONS_ID_TOKEN_REQUEST_URL with the request token as a bearer header.
    let server = google(Answer::json(
        200,
        r#"{"count":1,"value":"eyJ.github-oidc"}"#,
    ))
    .await;
    let json = wif(
        &sts(&server),
        json!({
            "url": format!("{}/subject?api-version=2.0&audience=https://iam.googleapis.com/x", server.base),
            "headers": {"Authorization": "Bearer GH-REQUEST-TOKEN", "X-Extra": "1"},
            "format": {"type": "json", "subject_token_field_name": "value"},
        }),
        json!({}),
    );
    let src = load(&json).unwrap();
    src.fetch(&TokenRequest::cloud_platform()).await.unwrap();
    let seen = server.seen();
    let subject = seen
        .iter()
        .find(|s| s.target.starts_with("/subject"))
        .unwrap();
    assert_eq!(subject.method, "GET");
    assert!(
        subject.target.contains("api-version=2.0"),
        "{}",
        subject.target
    );
    assert_eq!(
        subject.header("authorization"),
        Some("Bearer GH-REQUEST-TOKEN")
    );
    assert_eq!(subject.header("x-extra"), Some("1"));
    assert_eq!(
        sts_requests(&server)[0].form("subject_token").as_deref(),
        Some("eyJ.github-oidc")
    );
    let shown = format!("{src:?} {:?} {}", src.describe(), src.identity());
    assert!(
        !shown.contains("GH-REQUEST-TOKEN") && !shown.contains("api-version"),
        "{shown}"
    );
    assert_eq!(src.describe().federation.unwrap().credential_source, "url");
}

#[tokio::test]
async fn a_refusing_or_unreachable_url_source_is_a_clear_error_that_names_no_secret() {
    let server = google(Answer::json(401, r#"{"message":"Bad credentials"}"#)).await;
    let json = wif(
        &sts(&server),
        json!({"url": format!("{}/subject", server.base), "headers": {"Authorization": "Bearer GH-REQUEST-TOKEN"}}),
        json!({}),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Rejected { status: 401, .. }), "{e:?}");
    assert!(
        text.contains("credential_source.url") && !text.contains("GH-REQUEST-TOKEN"),
        "{text}"
    );
    assert!(
        sts_requests(&server).is_empty(),
        "no exchange without a subject token"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let json = wif(
        &sts(&server),
        json!({"url": format!("http://127.0.0.1:{port}/subject")}),
        json!({}),
    );
    let started = Instant::now();
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_impersonating_file_mints_id_and_access_tokens_as_the_service_account() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.subject");
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({
            "service_account_impersonation_url": impersonation_url(&server.base),
            "service_account_impersonation": {"token_lifetime_seconds": 1800},
        }),
    );
    let src = load(&json).unwrap();
    let id = src
        .fetch(&TokenRequest::id("https://mcp-abc-uc.a.run.app").unwrap())
        .await
        .unwrap();
    assert_eq!(id.kind, TokenKind::Id);
    let access = src
        .fetch(&TokenRequest::access(["s1"]).unwrap())
        .await
        .unwrap();
    assert_eq!(access.value.expose(), "ya29.sa");

    let seen = server.seen();
    let sts = sts_requests(&server);
    assert_eq!(
        sts.len(),
        1,
        "the federated token is cached between the two: {seen:?}"
    );
    assert_eq!(sts[0].form("scope").as_deref(), Some(CLOUD_PLATFORM));
    let idt = seen
        .iter()
        .find(|s| s.target.ends_with(":generateIdToken"))
        .unwrap();
    assert_eq!(
        idt.target,
        format!("/v1/projects/-/serviceAccounts/{SA}:generateIdToken")
    );
    assert_eq!(idt.header("authorization"), Some("Bearer ya29.federated"));
    let body: Value = serde_json::from_str(&idt.body).unwrap();
    assert_eq!(
        body,
        json!({"audience": "https://mcp-abc-uc.a.run.app", "includeEmail": true, "delegates": []})
    );
    let at = seen
        .iter()
        .find(|s| s.target.ends_with(":generateAccessToken"))
        .unwrap();
    let body: Value = serde_json::from_str(&at.body).unwrap();
    assert_eq!(body["lifetime"], "1800s");
    assert_eq!(body["scope"], json!(["s1"]));

    let d = src.describe();
    assert_eq!(d.kind, SourceKind::ExternalAccount);
    assert_eq!(d.impersonating.as_deref(), Some(SA));
    let f = d.federation.unwrap();
    assert_eq!(f.token_lifetime_seconds, Some(1800));
    assert_eq!(
        (
            f.pool_kind,
            f.project_number.as_deref(),
            f.pool_id.as_deref(),
            f.provider_id.as_deref()
        ),
        (
            Some("workload"),
            Some("123456"),
            Some("github"),
            Some("my-repo")
        )
    );
    assert!(
        src.identity().label().starts_with("wif:github/my-repo#"),
        "{}",
        src.identity()
    );
    assert!(
        src.identity().label().contains(&format!(">{SA}#")),
        "{}",
        src.identity()
    );
}

#[tokio::test]
async fn an_id_token_without_impersonation_fails_at_once_naming_the_field_and_the_flag() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.subject");
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({}),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::id("https://mcp-abc-uc.a.run.app").unwrap())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(text.starts_with("wif.json: "), "{text}");
    assert!(text.contains("service_account_impersonation_url"), "{text}");
    assert!(text.contains("--service-account=SA_EMAIL"), "{text}");
    assert!(
        text.contains("gcloud iam workload-identity-pools create-cred-config projects/123456/locations/global/workloadIdentityPools/github/providers/my-repo"),
        "{text}"
    );
    assert!(server.seen().is_empty(), "nothing is asked upstream");
}

#[tokio::test]
async fn workforce_pools_send_the_user_project_unless_an_oauth_client_names_it() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.subject");
    let base = json!({"audience": WORKFORCE, "workforce_pool_user_project": "billing-123"});
    let json = wif(&sts(&server), json!({"file": path.to_str().unwrap()}), base);
    load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap();
    let options = sts_requests(&server)[0].form("options").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&options).unwrap(),
        json!({"userProject": "billing-123"})
    );

    let server = google(Answer::json(404, "{}")).await;
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({"audience": WORKFORCE, "workforce_pool_user_project": "billing-123",
               "client_id": "wf-client", "client_secret": "WF-SECRET"}),
    );
    let src = load(&json).unwrap();
    src.fetch(&TokenRequest::cloud_platform()).await.unwrap();
    let s = &sts_requests(&server)[0];
    assert_eq!(s.form("options"), None);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("wf-client:WF-SECRET");
    assert_eq!(
        s.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert!(!format!("{src:?}").contains("WF-SECRET"));
    let f = src.describe().federation.unwrap();
    assert_eq!(
        (f.pool_kind, f.pool_id.as_deref(), f.provider_id.as_deref()),
        (Some("workforce"), Some("corp"), Some("okta"))
    );

    let e = load(&wif(
        "https://sts.googleapis.com/v1/token",
        json!({"file": "/t"}),
        json!({"workforce_pool_user_project": "billing-123"}),
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("`workforce_pool_user_project`"),
        "{e}"
    );
}

#[tokio::test]
async fn sts_refusals_carry_stss_error_and_advice_but_never_the_subject_token() {
    let server = Server::always(Answer::json(
        400,
        r#"{"error":"invalid_grant","error_description":"The audience in ID Token [x] does not match the expected audience."}"#,
    ))
    .await;
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.SUBJECT-SENTINEL");
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({}),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    let text = e.to_string();
    match &e {
        Error::Rejected {
            status,
            error,
            description,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error.as_deref(), Some("invalid_grant"));
            assert!(description
                .as_deref()
                .unwrap()
                .contains("does not match the expected audience"));
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("attribute condition"), "{text}");
    assert!(
        !text.contains("SUBJECT-SENTINEL") && !format!("{e:?}").contains("SUBJECT-SENTINEL"),
        "{text}"
    );
}

#[tokio::test]
async fn malformed_sts_answers_are_invalid_responses() {
    let dir = TempDir::new();
    let path = dir.write("token", "eyJ.subject");
    for body in [
        "not json",
        "[]",
        r#"{"expires_in":3600}"#,
        r#"{"access_token":"ya29.x"}"#,
        r#"{"access_token":"ya29.x","expires_in":"soon"}"#,
        r#"{"access_token":"ya29.x","expires_in":999999}"#,
        r#"{"access_token":"","expires_in":3600}"#,
    ] {
        let server = Server::always(Answer::json(200, body)).await;
        let json = wif(
            &sts(&server),
            json!({"file": path.to_str().unwrap()}),
            json!({}),
        );
        let e = load(&json)
            .unwrap()
            .fetch(&TokenRequest::cloud_platform())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidResponse { .. }), "{body}: {e:?}");
    }
    // Some services send expires_in as a string; google-auth accepts it.
    let server = Server::always(Answer::json(
        200,
        r#"{"access_token":"ya29.s","expires_in":"3600"}"#,
    ))
    .await;
    let json = wif(
        &sts(&server),
        json!({"file": path.to_str().unwrap()}),
        json!({}),
    );
    let t = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap();
    assert_eq!(t.value.expose(), "ya29.s");
}

#[test]
fn hostile_hosts_in_every_url_field_are_refused_before_any_connection() {
    let file = json!({"file": "/t"});
    let cases: Vec<(String, &str)> = vec![
        (
            wif(
                "https://sts.attacker.example/v1/token",
                file.clone(),
                json!({}),
            ),
            "`token_url`",
        ),
        (
            wif(
                "http://sts.googleapis.com/v1/token",
                file.clone(),
                json!({}),
            ),
            "`token_url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                file.clone(),
                json!({
                    "service_account_impersonation_url": format!("https://iam.attacker.example/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
                }),
            ),
            "`service_account_impersonation_url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"url": "http://token.attacker.example/t"}),
                json!({}),
            ),
            "`credential_source.url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"url": "http://10.0.0.7/t"}),
                json!({}),
            ),
            "`credential_source.url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"url": "file:///etc/passwd"}),
                json!({}),
            ),
            "`credential_source.url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"url": "https://user:PW-SENTINEL@h.example/t"}),
                json!({}),
            ),
            "`credential_source.url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"environment_id": "aws1", "url": "http://169.254.169.254.attacker.example/x",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}),
                json!({}),
            ),
            "`credential_source.url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"environment_id": "aws1", "region_url": "http://192.168.1.1/zone",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}),
                json!({}),
            ),
            "`credential_source.region_url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"environment_id": "aws1", "imdsv2_session_token_url": "http://metadata.attacker.example/t",
                "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}),
                json!({}),
            ),
            "`credential_source.imdsv2_session_token_url`",
        ),
        (
            wif(
                "https://sts.googleapis.com/v1/token",
                json!({"environment_id": "aws1",
                "regional_cred_verification_url": "http://sts.{region}.amazonaws.com?Action=GetCallerIdentity"}),
                json!({}),
            ),
            "`credential_source.regional_cred_verification_url`",
        ),
    ];
    for (json, field) in cases {
        let e = load(&json).unwrap_err().to_string();
        assert!(
            e.contains(&format!("wif.json: field {field}")),
            "{field}: {e}"
        );
        assert!(!e.contains("PW-SENTINEL"), "{e}");
    }
    // What is allowed: https anywhere, plain http to loopback and the metadata addresses.
    for ok in [
        "https://token.actions.githubusercontent.example/t",
        "http://127.0.0.1:9/t",
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01",
        "http://[fd00:ec2::254]/latest",
    ] {
        load(&wif(
            "https://sts.googleapis.com/v1/token",
            json!({"url": ok}),
            json!({}),
        ))
        .unwrap();
    }
    // Another universe's STS is Google for a credential of that universe.
    load(&wif(
        "https://sts.example-universe.com/v1/token",
        file,
        json!({"universe_domain": "example-universe.com"}),
    ))
    .unwrap();
}

#[test]
fn broken_files_are_named_field_by_field() {
    let t = "https://sts.googleapis.com/v1/token";
    for (json, expect) in [
        (
            wif(t, json!({}), json!({})),
            "`credential_source`: names no subject token source",
        ),
        (
            wif(t, json!({"file": "/a", "url": "https://h/t"}), json!({})),
            "has both `file` and `url`",
        ),
        (
            wif(t, json!({"file": 5}), json!({})),
            "`credential_source.file` must be a string",
        ),
        (
            wif(
                t,
                json!({"url": "https://h/t", "headers": {"A": 5}}),
                json!({}),
            ),
            "header \"A\" must be a string",
        ),
        (
            wif(
                t,
                json!({"url": "https://h/t", "headers": {"A": "x\r\nInjected: SENTINEL"}}),
                json!({}),
            ),
            "not a valid header value",
        ),
        (
            wif(
                t,
                json!({"url": "https://h/t", "headers": {"Bad Name": "x"}}),
                json!({}),
            ),
            "not a valid HTTP header name",
        ),
        (
            wif(
                t,
                json!({"file": "/a", "format": {"type": "xml"}}),
                json!({}),
            ),
            "`credential_source.format.type` must be",
        ),
        (
            wif(
                t,
                json!({"file": "/a", "format": {"type": "json"}}),
                json!({}),
            ),
            "subject_token_field_name` is missing",
        ),
        (
            wif(
                t,
                json!({"certificate": {"use_default_certificate_config": true}}),
                json!({}),
            ),
            "not supported",
        ),
        (
            wif(
                t,
                json!({"environment_id": "aws2", "regional_cred_verification_url": "https://x"}),
                json!({}),
            ),
            "version 2 is not supported",
        ),
        (
            wif(t, json!({"environment_id": "azure1"}), json!({})),
            "unknown environment",
        ),
        (
            wif(t, json!({"environment_id": "aws1"}), json!({})),
            "`credential_source.regional_cred_verification_url` is missing",
        ),
        (
            wif(t, json!({"executable": {"command": ""}}), json!({})),
            "`credential_source.executable.command` is missing",
        ),
        (
            wif(
                t,
                json!({"executable": {"command": "/bin/x 'open"}}),
                json!({}),
            ),
            "unterminated quote",
        ),
        (
            wif(
                t,
                json!({"executable": {"command": "/bin/x", "timeout_millis": 1000}}),
                json!({}),
            ),
            "5000 to 120000",
        ),
        (
            wif(
                t,
                json!({"file": "/a"}),
                json!({"service_account_impersonation": {"token_lifetime_seconds": 60}}),
            ),
            "600 to 43200",
        ),
        (
            wif(
                t,
                json!({"file": "/a"}),
                json!({"service_account_impersonation": {"token_lifetime_seconds": "1h"}}),
            ),
            "whole number",
        ),
        (
            wif(
                t,
                json!({"file": "/a"}),
                json!({"credential_source": "file"}),
            ),
            "field `credential_source` must be a JSON object",
        ),
        (
            wif(t, json!({"file": "/a"}), json!({"audience": ""})),
            "field `audience` is missing",
        ),
        (
            wif(
                t,
                json!({"file": "/a"}),
                json!({"subject_token_type": null}),
            ),
            "field `subject_token_type` is missing",
        ),
    ] {
        let e = load(&json).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{expect}: {e:?}");
        let text = e.to_string();
        assert!(
            text.contains("wif.json") && text.contains(expect),
            "{expect}: {text}"
        );
        assert!(!text.contains("SENTINEL"), "{text}");
    }
}

#[tokio::test]
async fn oversized_missing_or_special_subject_token_files_are_refused() {
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let big = dir.write("big", &"x".repeat(MAX_SUBJECT_TOKEN + 1));
    let empty = dir.write("empty", "  \n");
    let missing = dir.0.join("missing");
    let mut cases = vec![
        (big, "larger than"),
        (empty, "is empty"),
        (missing, "does not exist"),
        (dir.0.clone(), "not a regular file"),
    ];
    #[cfg(unix)]
    {
        let fifo = dir.0.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        cases.push((fifo, "not a regular file"));
    }
    for (path, expect) in cases {
        let json = wif(
            &sts(&server),
            json!({"file": path.to_str().unwrap()}),
            json!({}),
        );
        let e = load(&json)
            .unwrap()
            .fetch(&TokenRequest::cloud_platform())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{expect}: {e}");
        assert!(e.to_string().contains("credential_source.file"), "{e}");
    }
    assert!(sts_requests(&server).is_empty());
}

#[test]
fn the_identity_covers_everything_that_decides_who_speaks() {
    let t = "https://sts.googleapis.com/v1/token";
    let url = |h: &str| json!({"url": "https://h.example/t", "headers": {"Authorization": h}});
    let id = |json: String| load(&json).unwrap().identity().clone();
    let base = id(wif(t, url("Bearer A"), json!({})));
    assert_eq!(base, id(wif(t, url("Bearer A"), json!({}))));
    for other in [
        wif(t, url("Bearer B"), json!({})),
        wif(
            t,
            url("Bearer A"),
            json!({"audience": WORKLOAD.replace("my-repo", "other")}),
        ),
        wif(
            t,
            url("Bearer A"),
            json!({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
        ),
        wif(
            "https://sts.p.googleapis.com/v1/token",
            url("Bearer A"),
            json!({}),
        ),
        wif(
            t,
            json!({"url": "https://h.example/u", "headers": {"Authorization": "Bearer A"}}),
            json!({}),
        ),
        wif(
            t,
            json!({"url": "https://h.example/t", "headers": {"Authorization": "Bearer A"}, "format": {"type": "json", "subject_token_field_name": "v"}}),
            json!({}),
        ),
        wif(t, url("Bearer A"), json!({"quota_project_id": "q"})),
        wif(
            t,
            url("Bearer A"),
            json!({"client_id": "c", "client_secret": "s"}),
        ),
        wif(
            t,
            url("Bearer A"),
            json!({"service_account_impersonation_url": format!("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")}),
        ),
    ] {
        assert_ne!(base, id(other.clone()), "{other}");
    }
    let imp = |secs: u64| {
        id(wif(
            t,
            url("Bearer A"),
            json!({
                "service_account_impersonation_url": format!("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"),
                "service_account_impersonation": {"token_lifetime_seconds": secs},
            }),
        ))
    };
    assert_ne!(imp(3600), imp(1200), "the lifetime is part of it");
    assert!(!format!("{base} {base:?}").contains("Bearer"), "{base}");
}

#[test]
fn the_audience_names_the_pool_and_provider() {
    assert_eq!(
        Pool::parse(WORKLOAD),
        Pool {
            kind: Some("workload"),
            project_number: Some("123456".into()),
            location: Some("global".into()),
            pool_id: Some("github".into()),
            provider_id: Some("my-repo".into()),
        }
    );
    let wf = Pool::parse(WORKFORCE);
    assert_eq!(
        (wf.kind, wf.pool_id.as_deref(), wf.provider_id.as_deref()),
        (Some("workforce"), Some("corp"), Some("okta"))
    );
    for other in [
        "",
        "https://x",
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools//providers/p",
        "//iam.googleapis.com/x",
    ] {
        assert_eq!(Pool::parse(other), Pool::default(), "{other}");
    }
}

#[tokio::test]
async fn adc_finds_a_federated_file_and_says_what_it_is() {
    let _lock = ENV_LOCK.lock().await;
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let token = dir.write("token", "eyJ.subject");
    let file = dir.write(
        "wif.json",
        &wif(
            &sts(&server),
            json!({"file": token.to_str().unwrap()}),
            json!({
                "service_account_impersonation_url": impersonation_url(&server.base),
            }),
        ),
    );
    let _env = EnvVars::set(&[(adc::CREDENTIALS_VAR, Some(file.to_str().unwrap()))]);
    let found = adc::application_default(None).await.unwrap();
    assert!(
        found.steps[0].contains(&format!(
            "workload identity federation (file subject token, pool github, provider my-repo), impersonating {SA}"
        )),
        "{:?}",
        found.steps
    );
    let t = found
        .source
        .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
        .await
        .unwrap();
    assert_eq!(t.kind, TokenKind::Id);
}

#[tokio::test]
async fn a_missing_impersonation_grant_names_the_pools_principal_set_and_role() {
    let server = Server::start(|_, req: &Seen| {
        if req.target == "/v1/token" {
            Answer::json(200, r#"{"access_token":"ya29.federated","expires_in":3599}"#)
        } else {
            Answer::json(403, r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getOpenIdToken' denied","status":"PERMISSION_DENIED"}}"#)
        }
    })
    .await;
    let dir = TempDir::new();
    let token = dir.write("token", "eyJ.subject");
    let json = wif(
        &sts(&server),
        json!({"file": token.to_str().unwrap()}),
        json!({
            "service_account_impersonation_url": impersonation_url(&server.base),
        }),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::id("https://svc.run.app").unwrap())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("grant roles/iam.workloadIdentityUser on mcp-caller@proj.iam.gserviceaccount.com to principalSet://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/github/*"),
        "{text}"
    );
}

// ---- executables

fn script(dir: &TempDir, name: &str, body: &str) -> String {
    let path = dir.write(name, &format!("#!/bin/sh\n{body}\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path.to_str().unwrap().to_owned()
}

fn oidc_response(token: &str, expires_in: i64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + expires_in;
    json!({"version": 1, "success": true, "token_type": "urn:ietf:params:oauth:token-type:id_token",
           "id_token": token, "expiration_time": exp})
    .to_string()
}

#[cfg(unix)]
#[tokio::test]
async fn an_executable_never_runs_without_the_opt_in() {
    let _lock = ENV_LOCK.lock().await;
    let _env = EnvVars::set(&[(ALLOW_VAR, None)]);
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let marker = dir.0.join("ran");
    let exe = script(
        &dir,
        "helper",
        &format!(
            "touch {}\necho '{}'",
            marker.display(),
            oidc_response("eyJ.exe", 600)
        ),
    );
    let json = wif(
        &sts(&server),
        json!({"executable": {"command": format!("{exe} --secret-arg=ARG-SENTINEL")}}),
        json!({}),
    );
    let src = load(&json).unwrap();
    for value in [None, Some("0"), Some("true")] {
        match value {
            Some(v) => std::env::set_var(ALLOW_VAR, v),
            None => std::env::remove_var(ALLOW_VAR),
        }
        let e = src
            .fetch(&TokenRequest::cloud_platform())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(
            text.contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1"),
            "{text}"
        );
        assert!(
            text.contains("wif.json: field `credential_source.executable.command`"),
            "{text}"
        );
        assert!(!text.contains("ARG-SENTINEL"), "{text}");
    }
    assert!(!marker.exists(), "the program was never run");
    assert!(server.seen().is_empty());
}

#[cfg(unix)]
#[tokio::test]
async fn an_allowed_executable_is_told_the_audience_and_its_token_is_exchanged() {
    let _lock = ENV_LOCK.lock().await;
    let _env = EnvVars::set(&[(ALLOW_VAR, Some("1"))]);
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let env_dump = dir.0.join("env");
    let exe = script(
        &dir,
        "helper",
        &format!(
            "echo \"$GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE|$GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE|$GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE|$GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL|$1\" > {}\necho '{}'",
            env_dump.display(),
            oidc_response("eyJ.exe-token", 600)
        ),
    );
    let json = wif(
        &sts(&server),
        json!({"executable": {"command": format!("{exe} 'one arg'"), "timeout_millis": 5000}}),
        json!({"service_account_impersonation_url": impersonation_url(&server.base)}),
    );
    let src = load(&json).unwrap();
    src.fetch(&TokenRequest::id("https://svc.run.app").unwrap())
        .await
        .unwrap();
    assert_eq!(
        sts_requests(&server)[0].form("subject_token").as_deref(),
        Some("eyJ.exe-token")
    );
    assert_eq!(
        std::fs::read_to_string(&env_dump).unwrap().trim(),
        format!("{WORKLOAD}|{JWT_TYPE}|0|{SA}|one arg")
    );
    let f = src.describe().federation.unwrap();
    assert_eq!(
        (f.credential_source, f.subject_from.as_str()),
        ("executable", exe.as_str())
    );
}

#[cfg(unix)]
#[tokio::test]
async fn an_unexpired_output_file_is_used_instead_of_running_the_program() {
    let _lock = ENV_LOCK.lock().await;
    let _env = EnvVars::set(&[(ALLOW_VAR, Some("1"))]);
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let marker = dir.0.join("ran");
    let output = dir.write("out.json", &oidc_response("eyJ.cached", 600));
    let exe = script(
        &dir,
        "helper",
        &format!(
            "touch {}\necho '{}'",
            marker.display(),
            oidc_response("eyJ.fresh", 600)
        ),
    );
    let json = wif(
        &sts(&server),
        json!({"executable": {"command": exe, "output_file": output.to_str().unwrap()}}),
        json!({}),
    );
    let src = load(&json).unwrap();
    src.fetch(&TokenRequest::access(["a"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        sts_requests(&server)[0].form("subject_token").as_deref(),
        Some("eyJ.cached")
    );
    assert!(!marker.exists());
    // Expired: the program runs.
    std::fs::write(&output, oidc_response("eyJ.cached", -5)).unwrap();
    src.fetch(&TokenRequest::access(["b"]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        sts_requests(&server)[1].form("subject_token").as_deref(),
        Some("eyJ.fresh")
    );
    assert!(marker.exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_hanging_executable_is_killed_with_its_children_at_its_timeout() {
    let _lock = ENV_LOCK.lock().await;
    let _env = EnvVars::set(&[(ALLOW_VAR, Some("1"))]);
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let marker = dir.0.join("grandchild-survived");
    let exe = script(
        &dir,
        "hang",
        &format!("(sleep 7; touch {}) &\nsleep 60", marker.display()),
    );
    let json = wif(
        &sts(&server),
        json!({"executable": {"command": exe, "timeout_millis": 5000}}),
        json!({}),
    );
    let started = Instant::now();
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("timeout_millis"), "{e}");
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!marker.exists(), "the whole process group was killed");
}

#[cfg(unix)]
#[tokio::test]
async fn bad_executables_are_clear_errors_that_quote_nothing_they_printed() {
    let _lock = ENV_LOCK.lock().await;
    let _env = EnvVars::set(&[(ALLOW_VAR, Some("1"))]);
    let server = google(Answer::json(404, "{}")).await;
    let dir = TempDir::new();
    let cases = [
        ("echo OUTPUT-SENTINEL; exit 3", "exited with"),
        ("echo 'OUTPUT-SENTINEL not json'", "is not valid JSON"),
        ("true", "printed nothing"),
        (
            "echo '{\"version\":1,\"success\":false,\"code\":\"401\",\"message\":\"Login required\"}'",
            "code \"401\": Login required",
        ),
        ("echo '{\"version\":2,\"success\":true}'", "version 2"),
        ("head -c 300000 /dev/zero | tr '\\0' x", "exceeds 256 KiB"),
        (&format!("echo '{}'", oidc_response("eyJ.OUTPUT-SENTINEL", -10)), "has expired"),
    ];
    for (i, (body, expect)) in cases.iter().enumerate() {
        let exe = script(&dir, &format!("bad{i}"), body);
        let json = wif(
            &sts(&server),
            json!({"executable": {"command": exe}}),
            json!({}),
        );
        let e = load(&json)
            .unwrap()
            .fetch(&TokenRequest::cloud_platform())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains(expect), "{body}: {text}");
        assert!(!text.contains("OUTPUT-SENTINEL"), "{text}");
    }
    let json = wif(
        &sts(&server),
        json!({"executable": {"command": "/nonexistent/helper"}}),
        json!({}),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot be started (not found)"),
        "{e}"
    );
    assert!(sts_requests(&server).is_empty());
}

#[test]
fn executable_responses_are_read_as_aip_4117_defines_them() {
    let now = SystemTime::now();
    let ok = |s: &str| parse_response(s.as_bytes(), now);
    match ok(r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:saml2","saml_response":"PHNhbWw+"}"#).unwrap() {
        Response::Token { token, expires } => {
            assert_eq!(token.expose(), "PHNhbWw+");
            assert!(expires.is_none());
        }
        other => panic!("{other:?}"),
    }
    match ok(r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"eyJ"}"#).unwrap() {
        Response::Token { token, .. } => assert_eq!(token.expose(), "eyJ"),
        other => panic!("{other:?}"),
    }
    for bad in [
        r#"{"success":true}"#,
        r#"{"version":1}"#,
        r#"{"version":1,"success":true}"#,
        r#"{"version":1,"success":true,"token_type":"urn:x","id_token":"a"}"#,
        r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt"}"#,
        r#"{"version":1,"success":false}"#,
        r#"{"version":1,"success":"yes"}"#,
        r#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:jwt","id_token":"a","expiration_time":"soon"}"#,
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
}

#[test]
fn commands_split_like_shell_words_without_a_shell() {
    let s = |l: &str| split_command(l).unwrap();
    assert_eq!(s("/bin/tool --a=1 b"), ["/bin/tool", "--a=1", "b"]);
    assert_eq!(
        s(r#"tool 'a b' "c \"d\"" e\ f"#),
        ["tool", "a b", "c \"d\"", "e f"]
    );
    assert_eq!(
        s("tool $(rm -rf /) ; x"),
        ["tool", "$(rm", "-rf", "/)", ";", "x"]
    );
    assert_eq!(s("tool ''"), ["tool", ""]);
    assert!(split_command("tool 'open").is_none());
    assert!(split_command("tool \\").is_none());
    assert_eq!(executable::DEFAULT_TIMEOUT, Duration::from_secs(30));
}

// ---- AWS

const AWS_VERIFY: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const AWS_AUDIENCE: &str =
    "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/aws/providers/ec2";
const AWS_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";

fn aws_file(token_url: &str, metadata: &str) -> String {
    wif(
        token_url,
        json!({
            "environment_id": "aws1",
            "region_url": format!("{metadata}/latest/meta-data/placement/availability-zone"),
            "url": format!("{metadata}/latest/meta-data/iam/security-credentials"),
            "imdsv2_session_token_url": format!("{metadata}/latest/api/token"),
            "regional_cred_verification_url": AWS_VERIFY,
        }),
        json!({"audience": AWS_AUDIENCE, "subject_token_type": AWS_TYPE}),
    )
}

fn aws_vars(values: [Option<&str>; 5]) -> EnvVars {
    let names = [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    let pairs: Vec<(&'static str, Option<&str>)> = names.iter().copied().zip(values).collect();
    EnvVars::set(&pairs)
}

fn signed_request(sts: &Seen) -> Value {
    let token = sts.form("subject_token").unwrap();
    serde_json::from_str(&percent_decode(&token)).unwrap()
}

fn header<'a>(req: &'a Value, name: &str) -> Option<&'a str> {
    req["headers"]
        .as_array()?
        .iter()
        .find(|h| h["key"] == name)?["value"]
        .as_str()
}

#[tokio::test]
async fn aws_credentials_from_the_environment_sign_get_caller_identity() {
    let _lock = ENV_LOCK.lock().await;
    let _env = aws_vars([
        Some("eu-west-3"),
        None,
        Some("AKIAENV"),
        Some("ENV-SECRET-KEY"),
        Some("ENV-SESSION"),
    ]);
    let google = google(Answer::json(404, "{}")).await;
    let metadata = Server::always(Answer::text(500, "must not be asked")).await;
    let src = load(&aws_file(&sts(&google), &metadata.base)).unwrap();
    src.fetch(&TokenRequest::cloud_platform()).await.unwrap();
    assert!(
        metadata.seen().is_empty(),
        "the environment suffices: {:?}",
        metadata.seen()
    );
    let sts = &sts_requests(&google)[0];
    assert_eq!(sts.form("subject_token_type").as_deref(), Some(AWS_TYPE));
    let req = signed_request(sts);
    assert_eq!(
        req["url"],
        "https://sts.eu-west-3.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    );
    assert_eq!(req["method"], "POST");
    assert_eq!(header(&req, "x-amz-security-token"), Some("ENV-SESSION"));
    assert_eq!(
        header(&req, "x-goog-cloud-target-resource"),
        Some(AWS_AUDIENCE)
    );
    assert!(
        header(&req, "Authorization")
            .unwrap()
            .contains("Credential=AKIAENV/"),
        "{req}"
    );
    let shown = format!("{src:?} {:?}", src.describe());
    assert!(
        !shown.contains("ENV-SECRET-KEY") && !shown.contains("ENV-SESSION"),
        "{shown}"
    );
}

#[tokio::test]
async fn aws_metadata_gives_region_and_role_credentials_under_an_imdsv2_session() {
    let _lock = ENV_LOCK.lock().await;
    let _env = aws_vars([None, None, None, None, None]);
    let google = google(Answer::json(404, "{}")).await;
    let metadata = Server::start(|_, req: &Seen| {
        let session = req.header("x-aws-ec2-metadata-token") == Some("IMDS-SESSION");
        match (req.method.as_str(), req.target.as_str()) {
            ("PUT", "/latest/api/token") if req.header("x-aws-ec2-metadata-token-ttl-seconds") == Some("300") => {
                Answer::text(200, "IMDS-SESSION")
            }
            (_, _) if !session => Answer::text(401, ""),
            ("GET", "/latest/meta-data/placement/availability-zone") => Answer::text(200, "us-east-2b"),
            ("GET", "/latest/meta-data/iam/security-credentials") => Answer::text(200, "agent-role"),
            ("GET", "/latest/meta-data/iam/security-credentials/agent-role") => Answer::json(
                200,
                r#"{"Code":"Success","AccessKeyId":"ASIAROLE","SecretAccessKey":"ROLE-SECRET","Token":"ROLE-SESSION","Expiration":"2030-01-01T00:00:00Z"}"#,
            ),
            _ => Answer::text(404, ""),
        }
    })
    .await;
    let src = load(&aws_file(&sts(&google), &metadata.base)).unwrap();
    src.fetch(&TokenRequest::cloud_platform()).await.unwrap();
    let seen = metadata.seen();
    assert_eq!(seen[0].method, "PUT", "the session comes first: {seen:?}");
    assert_eq!(
        seen.iter().filter(|s| s.method == "PUT").count(),
        1,
        "one session per subject token"
    );
    let req = signed_request(&sts_requests(&google)[0]);
    assert_eq!(
        req["url"],
        "https://sts.us-east-2.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    );
    assert_eq!(header(&req, "x-amz-security-token"), Some("ROLE-SESSION"));
    let auth = header(&req, "Authorization").unwrap();
    assert!(
        auth.contains("Credential=ASIAROLE/") && auth.contains("/us-east-2/sts/aws4_request"),
        "{auth}"
    );
    let f = src.describe().federation.unwrap();
    assert_eq!(
        (
            f.credential_source,
            f.pool_id.as_deref(),
            f.provider_id.as_deref()
        ),
        ("aws", Some("aws"), Some("ec2"))
    );
}

#[tokio::test]
async fn aws_without_credentials_anywhere_says_what_to_set() {
    let _lock = ENV_LOCK.lock().await;
    let _env = aws_vars([Some("us-east-1"), None, None, None, None]);
    let json = wif(
        "https://sts.googleapis.com/v1/token",
        json!({"environment_id": "aws1", "regional_cred_verification_url": AWS_VERIFY}),
        json!({"audience": AWS_AUDIENCE, "subject_token_type": AWS_TYPE}),
    );
    let e = load(&json)
        .unwrap()
        .fetch(&TokenRequest::cloud_platform())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are unset"),
        "{e}"
    );
}

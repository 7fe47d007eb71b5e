"""The emulated STS, OIDC issuer and AWS metadata speak Workload Identity Federation's
protocols: proven with google-auth's own ``identity_pool``, ``aws`` and
``external_account_authorized_user`` credentials, and refused where Google
(or AWS) would refuse."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.emulator import CLOUD_PLATFORM_SCOPE, GITHUB_SUBJECT, AwsKey, sigv4
from google.auth import aws, external_account_authorized_user, identity_pool
from google.auth.exceptions import OAuthError, RefreshError
from google.auth.transport.requests import Request

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SA = "mcp-caller@emulated-project.iam.gserviceaccount.com"
AWS_VARIABLES = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


@pytest.fixture
def google_request() -> Iterator[Request]:
    with requests.Session() as session:
        yield Request(session)


@pytest.fixture(autouse=True)
def no_aws_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def github(emulator: GoogleEmulator) -> str:
    """A workload identity pool provider trusting the emulator's GitHub-like issuer."""
    return emulator.add_oidc_provider()


def token_file(tmp_path: Path, token: str) -> dict[str, str]:
    path = tmp_path / "subject-token"
    path.write_text(token)
    return {"file": str(path)}


def exchange(
    emulator: GoogleEmulator, audience: str, token: str, **extra: str
) -> requests.Response:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "audience": audience,
        "subject_token": token,
        "subject_token_type": JWT_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "scope": CLOUD_PLATFORM_SCOPE,
        **extra,
    }
    return requests.post(emulator.sts_token_url, data=form, timeout=10)


def refused(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


# -- google-auth against it ----------------------------------------------------------


def test_google_auths_file_sourced_identity_pool_credentials_get_a_federated_token(
    emulator: GoogleEmulator, github: str, tmp_path: Path, google_request: Request
) -> None:
    info = emulator.external_account_info(
        github, token_file(tmp_path, emulator.issue_subject_token(github))
    )
    creds = identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM_SCOPE])

    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == emulator.federated_principal(github, GITHUB_SUBJECT)
    assert token_info.principal.startswith(
        "principal://iam.googleapis.com/projects/123456789012/locations/global/"
        "workloadIdentityPools/github/subject/repo:octo-org/agent"
    )
    assert token_info.source == "sts"
    [sts] = [r for r in emulator.requests if r.kind == "sts"]
    assert (sts.grant_type, sts.audience, sts.scopes) == (
        TOKEN_EXCHANGE,
        github,
        (CLOUD_PLATFORM_SCOPE,),
    )


def test_a_github_like_url_source_needs_its_request_token_header(
    emulator: GoogleEmulator, github: str, google_request: Request
) -> None:
    source = emulator.github_actions_credential_source(github)
    creds = identity_pool.Credentials.from_info(
        emulator.external_account_info(github, source), scopes=[CLOUD_PLATFORM_SCOPE]
    )
    creds.refresh(google_request)
    assert emulator.access_token_info(creds.token) is not None

    anonymous = identity_pool.Credentials.from_info(
        emulator.external_account_info(github, {**source, "headers": {}}),
        scopes=[CLOUD_PLATFORM_SCOPE],
    )
    with pytest.raises(RefreshError):
        anonymous.refresh(google_request)
    assert requests.get(source["url"], timeout=10).status_code == 401


def test_the_issuer_publishes_discovery_and_its_own_key(
    emulator: GoogleEmulator, github: str
) -> None:
    import jwt

    config = requests.get(
        f"{emulator.oidc_issuer}/.well-known/openid-configuration", timeout=10
    ).json()
    assert config["issuer"] == emulator.oidc_issuer
    jwks = jwt.PyJWKSet.from_dict(requests.get(config["jwks_uri"], timeout=10).json())
    token = emulator.issue_subject_token(github)
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(token, jwks[kid].key, algorithms=["RS256"], audience="https:" + github)
    assert claims["iss"] == emulator.oidc_issuer
    assert kid not in emulator.public_keys(), "not Google's signing key"


def test_impersonation_from_a_federated_token_needs_the_pools_grant(
    emulator: GoogleEmulator, github: str, tmp_path: Path, google_request: Request
) -> None:
    info = emulator.external_account_info(
        github,
        token_file(tmp_path, emulator.issue_subject_token(github)),
        service_account=SA,
        token_lifetime=1800,
    )
    emulator.restrict_impersonation()
    creds = identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
    with pytest.raises(RefreshError, match=r"PERMISSION_DENIED|getAccessToken"):
        creds.refresh(google_request)

    emulator.allow_impersonation(emulator.principal_set(github), SA)
    creds = identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None and token_info.principal == SA
    assert token_info.expires_at - token_info.issued_at == pytest.approx(1800, abs=5)
    iam = [r for r in emulator.requests if r.kind == "iam" and r.status == 200]
    assert iam[-1].caller == emulator.federated_principal(github)


def test_google_auths_aws_credentials_sign_with_imdsv2_role_credentials(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    audience = emulator.add_aws_provider()
    role = emulator.aws_instance(region="eu-west-3", role="agent-role")
    creds = aws.Credentials.from_info(
        emulator.external_account_info(audience, emulator.aws_credential_source()),
        scopes=[CLOUD_PLATFORM_SCOPE],
    )

    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == emulator.federated_principal(audience, role.arn)
    aws_requests = [(r.method, r.path) for r in emulator.requests if r.kind == "aws"]
    assert aws_requests[0] == ("PUT", "/latest/api/token")


def test_google_auths_aws_credentials_sign_with_environment_keys(
    emulator: GoogleEmulator, google_request: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    audience = emulator.add_aws_provider()
    key = emulator.aws_access_key(temporary=True)
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key.secret_access_key)
    monkeypatch.setenv("AWS_SESSION_TOKEN", key.session_token or "")
    creds = aws.Credentials.from_info(
        emulator.external_account_info(audience, emulator.aws_credential_source()),
        scopes=[CLOUD_PLATFORM_SCOPE],
    )

    creds.refresh(google_request)

    assert emulator.count("aws") == 0, "the environment suffices"
    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None and key.arn in token_info.principal


def test_workforce_pools_want_a_user_project_and_logins_refresh(
    emulator: GoogleEmulator, tmp_path: Path, google_request: Request
) -> None:
    corp = emulator.add_oidc_provider("corp", "okta", workforce=True)
    token = emulator.issue_subject_token(corp, "alice@example.com")
    status, error, _ = refused(exchange(emulator, corp, token))
    assert (status, error) == (400, "invalid_request")

    info = emulator.external_account_info(
        corp, token_file(tmp_path, token), workforce_pool_user_project="billing-123"
    )
    creds = identity_pool.Credentials.from_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
    creds.refresh(google_request)
    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == (
        "principal://iam.googleapis.com/locations/global/workforcePools/corp/subject/alice@example.com"
    )

    login = external_account_authorized_user.Credentials.from_info(
        emulator.workforce_login_info(corp)
    )
    login.refresh(google_request)
    assert emulator.access_token_info(login.token) is not None
    wrong_client = external_account_authorized_user.Credentials.from_info(
        {**emulator.workforce_login_info(corp), "client_secret": "nope"}
    )
    with pytest.raises((RefreshError, OAuthError), match="invalid_client"):
        wrong_client.refresh(google_request)


# -- what it refuses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_token", "description"),
    [
        (lambda e, a: e.issue_subject_token(a, lifetime=-10), "expired"),
        (
            lambda e, a: e.issue_subject_token(a, claims={"aud": "https://elsewhere"}),
            "does not match the expected audience",
        ),
        (
            lambda e, a: e.issue_subject_token(a, claims={"iss": "https://evil.example"}),
            "does not match the expected issuer",
        ),
        (lambda e, a: e.issue_id_token("https:" + a), "signing key"),
        (lambda e, a: "not-a-jwt", "not a valid JWT"),
        (
            lambda e, a: e.issue_subject_token(a)[:-6] + "AAAAAA",
            "signature",
        ),
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "google-signed", "garbage", "tampered"],
)
def test_bad_oidc_subject_tokens_get_invalid_grant(
    emulator: GoogleEmulator, github: str, make_token: Any, description: str
) -> None:
    status, error, text = refused(exchange(emulator, github, make_token(emulator, github)))
    assert (status, error) == (400, "invalid_grant")
    assert description in text


def test_unknown_disabled_or_conditioned_providers_refuse(
    emulator: GoogleEmulator, github: str
) -> None:
    token = emulator.issue_subject_token(github)
    unknown = github.replace("my-repo", "other")
    assert refused(exchange(emulator, unknown, token))[:2] == (400, "invalid_target")

    strict = emulator.add_oidc_provider(
        "github", "main-only", condition=lambda c: c.get("ref") == "refs/heads/release"
    )
    status, error, text = refused(exchange(emulator, strict, emulator.issue_subject_token(strict)))
    assert (status, error) == (400, "invalid_grant") and "attribute condition" in text

    emulator.disable_provider(github)
    assert refused(exchange(emulator, github, token))[:2] == (400, "invalid_target")


def test_malformed_exchanges_are_named(emulator: GoogleEmulator, github: str) -> None:
    token = emulator.issue_subject_token(github)
    cases = [
        ({"grant_type": "refresh_token"}, "unsupported_grant_type"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"}, "invalid_request"),
        ({"scope": ""}, "invalid_scope"),
        ({"subject_token": ""}, "invalid_request"),
    ]
    for overrides, error in cases:
        assert refused(exchange(emulator, github, token, **overrides))[:2] == (400, error)


def _signed_aws_request(
    emulator: GoogleEmulator, key: AwsKey, audience: str, when: datetime
) -> str:
    """A GetCallerIdentity request serialized as google-auth does, signed at ``when``."""
    url = "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    headers = {"host": "sts.us-east-1.amazonaws.com", "x-amz-date": when.strftime("%Y%m%dT%H%M%SZ")}
    if key.session_token:
        headers["x-amz-security-token"] = key.session_token
    authorization = sigv4.sign(key, "POST", url, "us-east-1", headers, when)
    entries = [{"key": "Authorization", "value": authorization}]
    entries += [{"key": k, "value": v} for k, v in headers.items()]
    entries.append({"key": "x-goog-cloud-target-resource", "value": audience})
    return quote(json.dumps({"headers": entries, "method": "POST", "url": url}, sort_keys=True))


def test_aws_signatures_are_checked_as_aws_would(emulator: GoogleEmulator) -> None:
    audience = emulator.add_aws_provider()
    key = emulator.aws_access_key()
    now = datetime.now(timezone.utc)
    aws_type = {"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"}

    good = _signed_aws_request(emulator, key, audience, now)
    assert exchange(emulator, audience, good, **aws_type).status_code == 200

    forged = AwsKey(key.access_key_id, "not-the-secret", None, key.arn)
    for token, reason in [
        (_signed_aws_request(emulator, forged, audience, now), "does not match the signature"),
        (
            _signed_aws_request(emulator, key, audience, now - timedelta(minutes=20)),
            "Signature expired",
        ),
        (_signed_aws_request(emulator, key, audience + "x", now), "x-goog-cloud-target-resource"),
        (
            _signed_aws_request(emulator, AwsKey("AKIAUNKNOWN", "s", None, key.arn), audience, now),
            "security token included in the request is invalid",
        ),
        (good.replace("GetCallerIdentity", "AssumeRole"), "not an STS GetCallerIdentity"),
    ]:
        status, error, text = refused(exchange(emulator, audience, token, **aws_type))
        assert (status, error) == (400, "invalid_grant"), text
        assert reason in text

    other_account = emulator.add_aws_provider("aws", "other", account_id="999999999999")
    token = _signed_aws_request(emulator, key, other_account, now)
    assert "AWS account" in refused(exchange(emulator, other_account, token, **aws_type))[2]


def test_the_sigv4_check_reproduces_awss_published_example() -> None:
    # docs.aws.amazon.com, "Create a signed AWS API request": IAM ListUsers.
    signature = sigv4._signature(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "GET",
        "/",
        "Action=ListUsers&Version=2010-05-08",
        [
            ("content-type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ],
        b"",
        "20150830T123600Z",
        "us-east-1",
        "iam",
    )
    assert signature == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


def test_imdsv2_wants_a_session_token(emulator: GoogleEmulator) -> None:
    emulator.aws_instance(role="agent-role")
    base = f"{emulator.url}/latest"
    assert requests.get(f"{base}/meta-data/iam/security-credentials", timeout=10).status_code == 401
    assert requests.put(f"{base}/api/token", timeout=10).status_code == 400
    session = requests.put(
        f"{base}/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        timeout=10,
    ).text
    headers = {"X-aws-ec2-metadata-token": session}
    role = requests.get(f"{base}/meta-data/iam/security-credentials", headers=headers, timeout=10)
    assert role.text == "agent-role"
    creds = requests.get(
        f"{base}/meta-data/iam/security-credentials/agent-role", headers=headers, timeout=10
    ).json()
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("ASIA")
    assert unquote(creds["Token"]).startswith("emulated-session-")
    assert time.time() > 0

"""The emulator speaks Google's protocols: proven with Google's own client, google-auth."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth
import jwt
import pytest
import requests
from adk_token_exchange.testing import (
    CLOUD_PLATFORM_SCOPE,
    GCLOUD_ADC_CLIENT_ID,
    GOOGLE_ISSUER,
    GoogleEmulator,
    InvalidIdToken,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from google.auth import compute_engine, iam, impersonated_credentials
from google.auth.compute_engine import _metadata
from google.auth.exceptions import DefaultCredentialsError, RefreshError
from google.auth.transport.requests import Request
from google.oauth2 import id_token, service_account

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCE = "https://my-mcp-server-abc123-uc.a.run.app"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def google_request(http: requests.Session) -> Request:
    """google-auth's transport, on a session the test closes."""
    return Request(http)


@functools.cache
def private_key(pem: str) -> PrivateKeyTypes:
    # Loading validates the RSA key, which takes tens of milliseconds: once per key.
    return serialization.load_pem_private_key(pem.encode(), None)


def sign_assertion(info: dict[str, str], **overrides: Any) -> str:
    """A JWT-bearer assertion as google-auth builds it, with claims overridden."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": info["client_email"],
        "aud": info["token_uri"],
        "iat": now,
        "exp": now + 3600,
        "scope": CLOUD_PLATFORM_SCOPE,
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(
        claims,
        private_key(info["private_key"]),
        algorithm="RS256",
        headers={"kid": info["private_key_id"]},
    )


def post_assertion(
    http: requests.Session, emulator: GoogleEmulator, assertion: str
) -> requests.Response:
    return http.post(emulator.token_uri, data={"grant_type": JWT_BEARER, "assertion": assertion})


# -- service account keys: the JWT-bearer grant -------------------------------------


def test_google_auth_verifies_emulator_id_token_for_service_account(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    info = emulator.service_account_info()
    creds = service_account.IDTokenCredentials.from_service_account_info(
        info, target_audience=AUDIENCE
    )

    creds.refresh(google_request)

    claims = id_token.verify_token(
        creds.token, google_request, audience=AUDIENCE, certs_url=emulator.certs_url
    )
    assert claims["email"] == info["client_email"]
    assert claims["iss"] == GOOGLE_ISSUER


def test_google_auth_verifies_emulator_id_token_against_jwk_set(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    creds = service_account.IDTokenCredentials.from_service_account_info(
        emulator.service_account_info(), target_audience=AUDIENCE
    )
    creds.refresh(google_request)

    claims = id_token.verify_token(
        creds.token, google_request, audience=AUDIENCE, certs_url=emulator.jwks_url
    )

    assert claims["aud"] == AUDIENCE


def test_google_auth_gets_access_token_for_service_account_with_scopes(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    info = emulator.service_account_info()
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=[CLOUD_PLATFORM_SCOPE]
    )

    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == info["client_email"]
    assert token_info.scopes == (CLOUD_PLATFORM_SCOPE,)
    assert not token_info.expired


def test_assertion_audience_may_be_the_token_uri_itself(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()

    response = post_assertion(http, emulator, sign_assertion(info, aud=emulator.token_uri))

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert emulator.requests[-1].assertion_audience == emulator.token_uri


def test_target_audience_claim_yields_id_token_with_that_audience(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()

    assertion = sign_assertion(info, scope=None, target_audience=AUDIENCE)
    response = post_assertion(http, emulator, assertion)

    token = response.json()["id_token"]
    assert emulator.verify_id_token(token, AUDIENCE)["email"] == info["client_email"]
    assert emulator.requests[-1].audience == AUDIENCE


def test_tampered_assertion_is_invalid_jwt_signature(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()
    header, _, signature = sign_assertion(info).split(".")
    forged = sign_assertion(info, scope="https://www.googleapis.com/auth/admin")
    forged_payload = forged.split(".")[1]

    response = post_assertion(http, emulator, f"{header}.{forged_payload}.{signature}")

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid JWT Signature.",
    }


def test_assertion_for_another_audience_is_invalid_grant(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()

    response = post_assertion(http, emulator, sign_assertion(info, aud="https://example.com/token"))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "audience" in response.json()["error_description"]


def test_expired_assertion_is_invalid_grant(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()
    now = int(time.time())

    response = post_assertion(http, emulator, sign_assertion(info, iat=now - 7200, exp=now - 3600))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "iat and exp" in response.json()["error_description"]


def test_assertion_living_longer_than_an_hour_is_invalid_grant(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()
    now = int(time.time())

    response = post_assertion(http, emulator, sign_assertion(info, iat=now, exp=now + 7200))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_assertion_from_unknown_service_account_is_invalid_grant(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()

    assertion = sign_assertion(info, iss="deleted@emulated-project.iam.gserviceaccount.com")
    response = post_assertion(http, emulator, assertion)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_deleted_service_account_key_stops_working(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()
    emulator.delete_service_account(info["client_email"])

    response = post_assertion(http, emulator, sign_assertion(info))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_assertion_without_scope_or_target_audience_is_invalid_scope(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()

    response = post_assertion(http, emulator, sign_assertion(info, scope=None))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_google_auth_refresh_surfaces_emulated_invalid_grant(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    info = emulator.service_account_info()
    info["client_email"] = "unknown@emulated-project.iam.gserviceaccount.com"
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=[CLOUD_PLATFORM_SCOPE]
    )

    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(google_request)


# -- the metadata server -------------------------------------------------------------


@pytest.fixture
def on_gce(emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch) -> GoogleEmulator:
    """google-auth believes it runs on Google Cloud, with the emulator as metadata server."""
    emulator.use_metadata_server(monkeypatch)
    return emulator


def test_google_auth_detects_emulator_as_metadata_server(
    on_gce: GoogleEmulator, google_request: Request
) -> None:
    assert _metadata.ping(google_request)
    assert _metadata.is_on_gce(google_request)
    assert on_gce.requests[0].path == "/"


def test_compute_engine_credentials_get_access_token_from_metadata_server(
    on_gce: GoogleEmulator, google_request: Request
) -> None:
    creds = compute_engine.Credentials()

    creds.refresh(google_request)

    token_info = on_gce.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == on_gce.metadata_service_account
    assert creds.service_account_email == on_gce.metadata_service_account


def test_compute_engine_id_token_credentials_get_verifiable_id_token(
    on_gce: GoogleEmulator, google_request: Request
) -> None:
    creds = compute_engine.IDTokenCredentials(
        google_request, target_audience=AUDIENCE, use_metadata_identity_endpoint=True
    )

    creds.refresh(google_request)

    claims = id_token.verify_token(
        creds.token, google_request, audience=AUDIENCE, certs_url=on_gce.certs_url
    )
    assert claims["email"] == on_gce.metadata_service_account
    identity = [r for r in on_gce.requests if r.path.endswith("/identity")]
    assert identity[0].query["format"] == "full"


def test_google_auth_default_uses_metadata_server_when_nothing_else_is_configured(
    on_gce: GoogleEmulator, google_request: Request
) -> None:
    creds, project = google.auth.default()

    creds.refresh(google_request)

    assert project == on_gce.project_id
    assert on_gce.access_token_info(creds.token) is not None


def test_metadata_token_carries_the_requested_scopes(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/token"
    scopes = f"{CLOUD_PLATFORM_SCOPE},https://www.googleapis.com/auth/userinfo.email"

    response = http.get(
        emulator.url + path, params={"scopes": scopes}, headers={"Metadata-Flavor": "Google"}
    )

    token_info = emulator.access_token_info(response.json()["access_token"])
    assert token_info is not None
    assert token_info.scopes == tuple(scopes.split(","))
    assert response.headers["Metadata-Flavor"] == "Google"


def test_use_metadata_server_sets_both_variables_in_an_environment_mapping(
    emulator: GoogleEmulator,
) -> None:
    env: dict[str, str] = {}

    emulator.use_metadata_server(env)

    assert env == {
        "GCE_METADATA_HOST": emulator.metadata_host,
        "GCE_METADATA_IP": emulator.metadata_host,
    }


def test_metadata_request_without_flavor_header_is_forbidden(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/token"

    response = http.get(emulator.url + path)

    assert response.status_code == 403
    assert response.headers["Metadata-Flavor"] == "Google"


def test_metadata_server_refuses_proxied_requests(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    headers = {"Metadata-Flavor": "Google", "X-Forwarded-For": "203.0.113.7"}

    response = http.get(emulator.url + "/computeMetadata/v1/project/project-id", headers=headers)

    assert response.status_code == 403


def test_metadata_identity_without_audience_is_bad_request(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    path = "/computeMetadata/v1/instance/service-accounts/default/identity"

    response = http.get(emulator.url + path, headers={"Metadata-Flavor": "Google"})

    assert response.status_code == 400


def test_metadata_server_identity_is_configurable(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.metadata_service_account = "runtime@emulated-project.iam.gserviceaccount.com"
    path = "/computeMetadata/v1/instance/service-accounts/default/email"

    response = http.get(emulator.url + path, headers={"Metadata-Flavor": "Google"})

    assert response.text == "runtime@emulated-project.iam.gserviceaccount.com"


# -- gcloud user credentials: the refresh-token grant ----------------------------------


def test_google_auth_default_finds_gcloud_adc_file_and_refreshes(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    info = emulator.authorized_user_info("dev@example.com", quota_project_id="my-quota")
    emulator.write_application_default_credentials(info)

    creds, _ = google.auth.default()
    # google-auth ignores token_uri in authorized_user files and always calls Google.
    creds = creds.with_token_uri(emulator.token_uri)
    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == "dev@example.com"


def test_refresh_grant_returns_id_token_for_the_oauth_client(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.authorized_user_info("dev@example.com")

    response = http.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "refresh_token": info["refresh_token"],
        },
    )

    claims = emulator.verify_id_token(response.json()["id_token"], GCLOUD_ADC_CLIENT_ID)
    assert claims["email"] == "dev@example.com"
    assert CLOUD_PLATFORM_SCOPE in response.json()["scope"].split()


def test_revoked_refresh_token_is_invalid_grant(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.authorized_user_info()
    emulator.revoke_refresh_token(info["refresh_token"])

    response = http.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "refresh_token": info["refresh_token"],
        },
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }


# -- impersonation: IAM Credentials -----------------------------------------------------

TARGET = "mcp-invoker@emulated-project.iam.gserviceaccount.com"


def impersonated(
    emulator: GoogleEmulator, target: str = TARGET
) -> impersonated_credentials.Credentials:
    source = service_account.Credentials.from_service_account_info(
        emulator.service_account_info("developer-sa@emulated-project.iam.gserviceaccount.com")
    )
    emulator.register_service_account(target)
    return impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=target,
        target_scopes=[CLOUD_PLATFORM_SCOPE],
        iam_endpoint_override=emulator.iam_url(target),
    )


def test_impersonated_credentials_get_access_token_from_emulator_iam(
    emulator: GoogleEmulator, google_request: Request
) -> None:
    creds = impersonated(emulator)

    creds.refresh(google_request)

    token_info = emulator.access_token_info(creds.token)
    assert token_info is not None
    assert token_info.principal == TARGET
    assert emulator.requests[-1].caller == "developer-sa@emulated-project.iam.gserviceaccount.com"


def test_impersonated_id_token_credentials_get_id_token_for_target(
    emulator: GoogleEmulator, google_request: Request, monkeypatch: pytest.MonkeyPatch
) -> None:
    # google-auth has no endpoint override for generateIdToken.
    endpoint = emulator.url + "/v1/projects/-/serviceAccounts/{}:generateIdToken"
    monkeypatch.setattr(iam, "_IAM_IDTOKEN_ENDPOINT", endpoint)
    creds = impersonated_credentials.IDTokenCredentials(
        impersonated(emulator), target_audience=AUDIENCE, include_email=True
    )

    creds.refresh(google_request)

    claims = emulator.verify_id_token(creds.token, AUDIENCE)
    assert claims["email"] == TARGET


def test_google_auth_parses_impersonated_adc_file(emulator: GoogleEmulator, tmp_path: Path) -> None:
    source = emulator.authorized_user_info("dev@example.com", quota_project_id="q")
    path = emulator.write_json(tmp_path, "adc.json", emulator.impersonated_info(source, TARGET))

    creds, _ = google.auth.load_credentials_from_file(str(path))

    assert isinstance(creds, impersonated_credentials.Credentials)
    assert creds.signer_email == TARGET
    assert json.loads(path.read_text())["service_account_impersonation_url"].startswith(
        emulator.url
    )


def test_impersonation_denied_is_403_permission_denied(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.register_service_account(TARGET)
    emulator.restrict_impersonation()
    caller = emulator.issue_access_token("dev@example.com")

    response = http.post(
        emulator.iam_url(TARGET, "generateIdToken"),
        json={"audience": AUDIENCE, "includeEmail": True},
        headers={"Authorization": f"Bearer {caller}"},
    )

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert "iam.serviceAccounts.getOpenIdToken" in error["message"]


def test_allowed_impersonation_passes_when_restricted(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.register_service_account(TARGET)
    emulator.restrict_impersonation()
    emulator.allow_impersonation("dev@example.com", TARGET)
    caller = emulator.issue_access_token("dev@example.com")

    response = http.post(
        emulator.iam_url(TARGET, "generateIdToken"),
        json={"audience": AUDIENCE, "includeEmail": True},
        headers={"Authorization": f"Bearer {caller}"},
    )

    assert response.status_code == 200
    assert emulator.verify_id_token(response.json()["token"], AUDIENCE)["email"] == TARGET


def test_impersonation_through_delegate_needs_every_hop(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    delegate = "hop@emulated-project.iam.gserviceaccount.com"
    for email in (TARGET, delegate):
        emulator.register_service_account(email)
    emulator.restrict_impersonation()
    emulator.allow_impersonation("dev@example.com", delegate)
    caller = emulator.issue_access_token("dev@example.com")

    response = http.post(
        emulator.iam_url(TARGET),
        json={
            "scope": [CLOUD_PLATFORM_SCOPE],
            "delegates": [f"projects/-/serviceAccounts/{delegate}"],
        },
        headers={"Authorization": f"Bearer {caller}"},
    )

    assert response.status_code == 403


def test_iam_rejects_a_bearer_token_it_never_issued(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.register_service_account(TARGET)

    response = http.post(
        emulator.iam_url(TARGET),
        json={"scope": [CLOUD_PLATFORM_SCOPE]},
        headers={"Authorization": "Bearer ya29.forged"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_iam_rejects_an_expired_access_token(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.register_service_account(TARGET)
    caller = emulator.issue_access_token("dev@example.com", lifetime=-1)

    response = http.post(
        emulator.iam_url(TARGET),
        json={"scope": [CLOUD_PLATFORM_SCOPE]},
        headers={"Authorization": f"Bearer {caller}"},
    )

    assert response.status_code == 401


def test_generate_access_token_answers_expire_time_in_rfc3339(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.register_service_account(TARGET)
    caller = emulator.issue_access_token("dev@example.com")

    response = http.post(
        emulator.iam_url(TARGET),
        json={"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": "600s"},
        headers={"Authorization": f"Bearer {caller}"},
    )

    body = response.json()
    expires = time.mktime(time.strptime(body["expireTime"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 590 <= expires - time.time() <= 601
    assert emulator.access_token_info(body["accessToken"]) is not None


# -- tokens, lifetimes, certs -----------------------------------------------------------


def test_token_lifetime_applies_to_access_and_id_tokens(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.token_lifetime = 5
    info = emulator.service_account_info()

    access = post_assertion(http, emulator, sign_assertion(info)).json()
    identity = post_assertion(
        http, emulator, sign_assertion(info, scope=None, target_audience=AUDIENCE)
    ).json()

    assert access["expires_in"] == 5
    claims = jwt.decode(identity["id_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 5


def test_id_token_of_another_emulator_does_not_verify(emulator: GoogleEmulator) -> None:
    with GoogleEmulator() as other:
        foreign = other.issue_id_token(AUDIENCE)

    with pytest.raises(InvalidIdToken, match="unknown signing key"):
        emulator.verify_id_token(foreign, AUDIENCE)


def test_certs_endpoints_publish_the_signing_key_id(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    kid = jwt.get_unverified_header(emulator.issue_id_token(AUDIENCE))["kid"]

    pem_map = http.get(emulator.certs_url).json()
    jwk_set = http.get(emulator.jwks_url).json()

    assert list(pem_map) == [kid]
    assert pem_map[kid].startswith("-----BEGIN CERTIFICATE-----")
    assert [key["kid"] for key in jwk_set["keys"]] == [kid]


# -- fault injection and counting --------------------------------------------------------


def test_fail_next_serves_errors_then_recovers(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    info = emulator.service_account_info()
    emulator.fail_next(2, status=503, endpoint="token")

    statuses = [post_assertion(http, emulator, sign_assertion(info)).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert [r.grant_type for r in emulator.requests] == [JWT_BEARER] * 3


def test_fail_next_only_hits_the_matching_endpoint(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.fail_next(1, status=500, endpoint="iam")

    certs = http.get(emulator.certs_url)
    metadata = http.get(emulator.url + "/", headers={"Metadata-Flavor": "Google"})

    assert (certs.status_code, metadata.status_code) == (200, 200)


def test_fail_next_matches_a_path_substring(
    on_gce: GoogleEmulator, google_request: Request
) -> None:
    on_gce.fail_next(1, status=500, endpoint="/identity")
    creds = compute_engine.IDTokenCredentials(
        google_request, target_audience=AUDIENCE, use_metadata_identity_endpoint=True
    )

    creds.refresh(google_request)  # google-auth retries a metadata 500

    assert on_gce.verify_id_token(creds.token, AUDIENCE)
    assert [r.status for r in on_gce.requests if r.path.endswith("/identity")] == [500, 200]


def test_respond_next_serves_an_arbitrary_body(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    emulator.respond_next(200, "<html>captive portal</html>", "text/html", endpoint="token")
    info = emulator.service_account_info()

    response = post_assertion(http, emulator, sign_assertion(info))

    assert response.text == "<html>captive portal</html>"
    assert response.headers["Content-Type"] == "text/html"


def test_latency_delays_token_responses(emulator: GoogleEmulator, http: requests.Session) -> None:
    info = emulator.service_account_info()
    emulator.set_latency(0.3, endpoint="token")

    started = time.monotonic()
    post_assertion(http, emulator, sign_assertion(info))
    elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert emulator.requests[-1].duration is not None
    assert emulator.requests[-1].duration >= 0.3


def test_latency_does_not_delay_certs(emulator: GoogleEmulator, http: requests.Session) -> None:
    emulator.latency = 1.0

    started = time.monotonic()
    http.get(emulator.certs_url)

    assert time.monotonic() - started < 0.5


def test_hung_request_is_released_by_stop() -> None:
    emulator = GoogleEmulator().start()
    emulator.hang_next(1, endpoint="token")
    outcome: dict[str, BaseException | int] = {}

    def call() -> None:
        try:
            outcome["status"] = requests.post(emulator.token_uri, data={}, timeout=10).status_code
        except requests.RequestException as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while emulator.count("token") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert caller.is_alive(), "a hung request must not be answered"

    emulator.stop()
    caller.join(5)

    assert not caller.is_alive()
    assert "error" in outcome
    assert emulator.requests[0].status is None


def test_stop_returns_promptly_while_a_client_keeps_a_connection_open() -> None:
    emulator = GoogleEmulator().start()
    with requests.Session() as idle:
        idle.get(emulator.certs_url)

        started = time.monotonic()
        emulator.stop()

        assert time.monotonic() - started < 2


def test_concurrent_token_requests_are_all_answered(emulator: GoogleEmulator) -> None:
    info = emulator.service_account_info()
    statuses: list[int] = []

    def fetch() -> None:
        with requests.Session() as http:
            for _ in range(5):
                statuses.append(post_assertion(http, emulator, sign_assertion(info)).status_code)

    threads = [threading.Thread(target=fetch) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert statuses == [200] * 50
    assert emulator.connections == 10
    assert emulator.internal_errors == []


def test_keep_alive_requests_share_one_connection(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    for _ in range(3):
        http.get(emulator.certs_url)
    with requests.Session() as second:
        second.get(emulator.certs_url)

    assert emulator.count() == 4
    assert emulator.connections == 2
    assert [r.connection for r in emulator.requests] == [1, 1, 1, 2]


def test_reset_counts_forgets_requests_and_connections(
    emulator: GoogleEmulator, http: requests.Session
) -> None:
    http.get(emulator.certs_url)

    emulator.reset_counts()

    assert (emulator.count(), emulator.connections, emulator.requests) == (0, 0, [])


# -- the test environment itself -----------------------------------------------------------


def test_tests_cannot_reach_real_google_credentials(google_request: Request) -> None:
    with pytest.raises(DefaultCredentialsError):
        google.auth.default()


def test_key_file_written_for_tests_is_google_format(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    path = emulator.write_json(tmp_path / "keys", "sa.json", emulator.service_account_info())

    info = json.loads(path.read_text())
    creds = service_account.Credentials.from_service_account_file(str(path))

    assert info["type"] == "service_account"
    assert info["token_uri"] == emulator.token_uri
    assert creds.service_account_email == info["client_email"]

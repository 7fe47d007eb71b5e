"""Secrets go only to Google or loopback, and scopes asked are scopes requested.

Anyone who can edit a credential file could otherwise point a signed
assertion (``token_uri`` of a key), a refresh token and client secret
(``token_uri`` of a gcloud login) or a source's cloud-platform access token
(``service_account_impersonation_url``, ``ADK_TOKEN_EXCHANGE_IAM_ENDPOINT``) at
a server of their own. Each such field is checked when the credential is
built, before any connection, with an error that names the field and the file
and the way to opt a private endpoint in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adk_token_exchange import _native, errors
from adk_token_exchange.testing import GoogleEmulator
from support.core import sa_credentials

AUDIENCE = "https://svc-hosts-uc.a.run.app"
FOREIGN = ["https://collector.example/token", "https://oauth2.googleapis.com.collector.example/t"]


@pytest.mark.parametrize("token_uri", FOREIGN)
def test_a_key_whose_token_uri_is_not_google_is_refused_naming_field_and_file(
    emulator: GoogleEmulator, tmp_path: Path, token_uri: str
) -> None:
    path = emulator.write_json(
        tmp_path, "key.json", {**emulator.service_account_info(), "token_uri": token_uri}
    )

    with pytest.raises(errors.ConfigurationError) as caught:
        _native.Credentials.from_file(str(path))

    message = str(caught.value)
    assert f"{path}: field `token_uri`" in message
    assert "not a Google endpoint" in message
    assert "ADK_TOKEN_EXCHANGE_TRUSTED_HOSTS" in message
    assert emulator.count() == 0


def test_a_gcloud_login_whose_token_uri_is_not_google_never_sends_its_refresh_token(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    user = {**emulator.authorized_user_info(), "token_uri": FOREIGN[0]}
    path = emulator.write_json(tmp_path, "adc.json", user)

    with pytest.raises(errors.ConfigurationError) as caught:
        _native.Credentials.from_file(str(path))

    message = str(caught.value)
    assert "field `token_uri`" in message
    assert user["refresh_token"] not in message and user["client_secret"] not in message


def test_an_impersonation_url_that_is_not_google_never_gets_the_source_token(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    info = emulator.impersonated_info(
        emulator.service_account_info(), "target@emulated-project.iam.gserviceaccount.com"
    )
    info["service_account_impersonation_url"] = (
        "https://iam.collector.example/v1/projects/-/serviceAccounts/"
        "target@emulated-project.iam.gserviceaccount.com:generateAccessToken"
    )
    path = emulator.write_json(tmp_path, "impersonated.json", info)

    with pytest.raises(errors.ConfigurationError, match="service_account_impersonation_url"):
        _native.Credentials.from_file(str(path))
    assert emulator.count() == 0


@pytest.mark.parametrize("endpoint", ["https://iam.collector.example", "http://iam.example.com"])
def test_an_iam_endpoint_variable_that_is_not_google_is_refused(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", endpoint)

    with pytest.raises(errors.ConfigurationError, match="ADK_TOKEN_EXCHANGE_IAM_ENDPOINT"):
        _native.Credentials.from_service_account_info(
            json.dumps(emulator.service_account_info()),
            impersonate="target@emulated-project.iam.gserviceaccount.com",
        )


def test_a_private_endpoint_is_allowed_only_when_named_in_the_opt_in(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = {**emulator.service_account_info(), "token_uri": "https://token.corp.example/token"}
    with pytest.raises(errors.ConfigurationError):
        sa_credentials(info)

    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_TRUSTED_HOSTS", "other.example, *.corp.example")

    assert sa_credentials(info).identity.startswith("sa:")


def test_a_credentials_own_universe_is_google_for_it(emulator: GoogleEmulator) -> None:
    universe = {
        **emulator.service_account_info(),
        "universe_domain": "example-universe.com",
        "token_uri": "https://oauth2.example-universe.com/token",
    }
    assert sa_credentials(universe).identity.startswith("sa:")
    with pytest.raises(errors.ConfigurationError):
        sa_credentials({**universe, "universe_domain": "googleapis.com"})


def test_a_url_with_a_password_is_refused_without_repeating_it(emulator: GoogleEmulator) -> None:
    for token_uri in (
        "https://u:SECRET-PW@oauth2.googleapis.com/token",
        "https://u:SECRET-PW@oauth2.googleapis.com:99999/token",
    ):
        with pytest.raises(errors.ConfigurationError) as caught:
            sa_credentials(emulator.service_account_info(), token_uri=token_uri)
        assert "SECRET-PW" not in str(caught.value)


def test_a_user_access_token_carries_exactly_the_scopes_asked_for(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    read_only = "https://www.googleapis.com/auth/devstorage.read_only"
    user = emulator.authorized_user_info(
        scopes=("openid", "https://www.googleapis.com/auth/cloud-platform", read_only)
    )
    credentials = _native.Credentials.from_file(str(emulator.write_json(tmp_path, "u.json", user)))

    token = credentials.access_token([read_only])

    info = emulator.access_token_info(token.value)
    assert info is not None and info.scopes == (read_only,)
    grant = next(r for r in emulator.requests if r.grant_type == "refresh_token")
    assert grant.scopes == (read_only,)


def test_a_scope_the_login_was_not_granted_says_how_to_get_it(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    user = emulator.authorized_user_info()
    credentials = _native.Credentials.from_file(str(emulator.write_json(tmp_path, "u.json", user)))

    with pytest.raises(errors.PermanentError) as caught:
        credentials.access_token(["https://www.googleapis.com/auth/devstorage.read_only"])

    assert "invalid_scope" in str(caught.value)
    assert "application-default login --scopes" in str(caught.value)

"""A credential's identity is all its key material: who speaks and who pays.

An email and a key id are public (they are in every ID token and in Google's
published certificates), so they cannot be what decides whose cached token a
caller gets. A forged key file with someone else's ``client_email`` and
``private_key_id`` must never be handed that account's token, nor have its
fetch signed with the real key; a rotated key is a new identity; the quota
project that pays is part of it; a gcloud login is its client id, client
secret and refresh token. No cache is cleared between these steps: the
separation must come from the identity itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adk_token_exchange import _native, errors
from adk_token_exchange.testing import GoogleEmulator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support.core import sa_credentials

AUDIENCE = "https://svc-identity-uc.a.run.app"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _forged(info: dict[str, str]) -> dict[str, str]:
    """The same public fields (email, key id, token_uri), a private key of the forger's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {**info, "private_key": pem}


def test_a_forged_key_never_gets_the_accounts_cached_token(emulator: GoogleEmulator) -> None:
    real = emulator.service_account_info()
    token = sa_credentials(real).id_token(AUDIENCE)

    forged = sa_credentials(_forged(real))

    assert forged.cached_id_token(AUDIENCE) is None
    with pytest.raises(errors.PermanentError, match="invalid_grant"):
        forged.id_token(AUDIENCE)
    assert forged.identity != sa_credentials(real).identity
    # The real one is untouched.
    assert sa_credentials(real).id_token(AUDIENCE).value == token.value
    assert emulator.count("token") == 2  # the real fetch, then the forger's refused one


def test_a_forged_key_first_does_not_poison_the_real_one(emulator: GoogleEmulator) -> None:
    real = emulator.service_account_info()

    with pytest.raises(errors.PermanentError, match="invalid_grant"):
        sa_credentials(_forged(real)).id_token(AUDIENCE)
    token = sa_credentials(real).id_token(AUDIENCE)

    claims = emulator.verify_id_token(token.value, AUDIENCE)
    assert claims["email"] == real["client_email"]


@pytest.mark.parametrize("first", ["old key", "new key"])
def test_a_rotated_key_is_a_new_identity_whichever_is_used_first(
    emulator: GoogleEmulator, first: str
) -> None:
    old = emulator.service_account_info()
    new = emulator.rotate_key(old["client_email"])
    assert new["private_key_id"] != old["private_key_id"]
    keys = [old, new] if first == "old key" else [new, old]

    tokens = [sa_credentials(key).access_token(SCOPES).value for key in keys]

    assert tokens[0] != tokens[1]
    assert emulator.count("token") == 2, "each key signed its own request"
    for key, token in zip(keys, tokens, strict=True):
        assert sa_credentials(key).cached_access_token(SCOPES).value == token  # type: ignore[union-attr]


def test_the_project_that_pays_is_part_of_the_identity(emulator: GoogleEmulator) -> None:
    info = emulator.service_account_info()
    plain = sa_credentials(info).access_token(SCOPES)
    billed = sa_credentials(info, quota_project_id="billing-project").access_token(SCOPES)

    assert plain.quota_project_id is None
    assert billed.quota_project_id == "billing-project"
    assert plain.value != billed.value
    assert emulator.count("token") == 2


def test_user_logins_are_told_apart_by_every_secret(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    user = emulator.authorized_user_info()
    same_user_other_secret = {**user, "client_secret": user["client_secret"] + "-other"}
    paths = [
        emulator.write_json(tmp_path, "a.json", user),
        emulator.write_json(tmp_path, "b.json", same_user_other_secret),
    ]
    identities = {_native.Credentials.from_file(str(p)).identity for p in paths}
    assert len(identities) == 2

    token = _native.Credentials.from_file(str(paths[0])).access_token(SCOPES)
    assert _native.Credentials.from_file(str(paths[1])).cached_access_token(SCOPES) is None
    with pytest.raises(errors.PermanentError):  # the emulator knows the real secret only
        _native.Credentials.from_file(str(paths[1])).access_token(SCOPES)
    assert _native.Credentials.from_file(str(paths[0])).access_token(SCOPES).value == token.value


def test_the_same_key_from_anywhere_shares_one_cache(
    emulator: GoogleEmulator, tmp_path: Path
) -> None:
    info = emulator.service_account_info()
    path = emulator.write_json(tmp_path, "key.json", info)

    first = sa_credentials(info).id_token(AUDIENCE)
    from_file = _native.Credentials.from_file(str(path)).id_token(AUDIENCE)
    from_json = _native.Credentials.from_service_account_info(json.dumps(info)).id_token(AUDIENCE)

    assert first.value == from_file.value == from_json.value
    assert emulator.count("token") == 1


def test_an_identity_names_the_principal_and_never_the_key(emulator: GoogleEmulator) -> None:
    info = emulator.service_account_info()
    credentials = sa_credentials(info)

    shown = f"{credentials.identity} {credentials!r}"

    assert info["client_email"] in shown
    body = info["private_key"].split("-----")[2].replace("\n", "")
    for fragment in (body[:24], body[100:124], info["private_key_id"]):
        assert fragment not in shown

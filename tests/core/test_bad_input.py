"""Bad input from every side: key files, token responses, the metadata server, Python callers.

Project issue 5, item 3 (and the "never an abort" half of item 7). Each bad
input ends in a clear ``TokenExchangeError`` that names what is wrong (file,
field, endpoint), quickly, with no panic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from adk_token_exchange import _native
from adk_token_exchange.errors import (
    ConfigurationError,
    CredentialsNotFoundError,
    PermanentError,
    TokenExchangeError,
)
from adk_token_exchange.testing import GoogleEmulator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.core import sa_credentials
from support.measure import Elapsed
from support.peers import canned_server, endless_server, http_response

AUDIENCE = "https://mcp-bad-input-uc.a.run.app"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


# -- token responses -----------------------------------------------------------------


def _id_fails(
    emulator: GoogleEmulator, body: Any, content_type: str = "application/json", creds: Any = None
) -> PermanentError:
    creds = creds or sa_credentials(emulator.service_account_info())
    emulator.respond_next(200, body, content_type, endpoint="token")
    with Elapsed() as t, pytest.raises(PermanentError) as caught:
        creds.id_token(AUDIENCE)
    assert t.seconds < 2.0
    assert emulator.token_uri in str(caught.value), "the error names the endpoint"
    return caught.value


def _access_fails(
    emulator: GoogleEmulator, body: Any, content_type: str = "application/json"
) -> PermanentError:
    creds = sa_credentials(emulator.service_account_info())
    emulator.respond_next(200, body, content_type, endpoint="token")
    with Elapsed() as t, pytest.raises(PermanentError) as caught:
        creds.access_token(SCOPES)
    assert t.seconds < 2.0
    assert emulator.token_uri in str(caught.value)
    return caught.value


def test_response_body_over_one_mib_is_refused(emulator: GoogleEmulator) -> None:
    body = json.dumps({"access_token": "ya29.x", "expires_in": 3600, "pad": "x" * (1 << 20)})
    assert "1024 KiB" in str(_access_fails(emulator, body))


def test_endless_chunked_body_is_cut_at_the_cap(emulator: GoogleEmulator) -> None:
    with endless_server() as endless:
        creds = sa_credentials(emulator.service_account_info(), token_uri=f"{endless.url}/token")
        with Elapsed() as t, pytest.raises(PermanentError) as caught:
            creds.access_token(SCOPES)
    assert "1024 KiB" in str(caught.value)
    assert t.seconds < 2.0


def test_endless_unframed_body_is_cut_at_the_cap(emulator: GoogleEmulator) -> None:
    with endless_server(chunked=False) as endless:
        creds = sa_credentials(emulator.service_account_info(), token_uri=f"{endless.url}/token")
        with pytest.raises(PermanentError) as caught:
            creds.id_token(AUDIENCE)
    assert "1024 KiB" in str(caught.value)


def test_html_instead_of_json_is_an_unusable_response(emulator: GoogleEmulator) -> None:
    e = _id_fails(emulator, "<html><body>Sign in to Wi-Fi</body></html>", "text/html")
    assert "not valid JSON" in str(e)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        "42",
        '"ya29.string"',
        "\xff\xfe",
        "{",
        '{"id_token": 5}',
        '{"id_token": null}',
    ],
    ids=[
        "empty",
        "null",
        "array",
        "number",
        "string",
        "not-utf8",
        "truncated",
        "number-token",
        "null-token",
    ],
)
def test_malformed_id_token_responses_are_permanent_errors(
    emulator: GoogleEmulator, body: str
) -> None:
    _id_fails(emulator, body.encode("latin-1"))


def test_response_without_id_token_names_the_field(emulator: GoogleEmulator) -> None:
    e = _id_fails(emulator, {"access_token": "ya29.only-access", "expires_in": 3600})
    assert "id_token" in str(e)


def test_response_without_access_token_names_the_field(emulator: GoogleEmulator) -> None:
    e = _access_fails(emulator, {"expires_in": 3600, "token_type": "Bearer"})
    assert "access_token" in str(e)


@pytest.mark.parametrize("value", ["ya29.opaque", "a.b.c", "a.b", "....", "eyJ.eyJ.sig", ""])
def test_id_token_that_is_not_a_jwt_is_refused(emulator: GoogleEmulator, value: str) -> None:
    e = _id_fails(emulator, {"id_token": value})
    assert "JWT" in str(e) or "id_token" in str(e)


@pytest.mark.parametrize(
    "expires_in",
    [-5, 0, 10**12, 1e308, "3600", None, [3600], True],
    ids=["negative", "zero", "huge", "float-max", "string", "null", "array", "bool"],
)
def test_absurd_expires_in_is_refused(emulator: GoogleEmulator, expires_in: Any) -> None:
    e = _access_fails(emulator, {"access_token": "ya29.x", "expires_in": expires_in})
    assert "expires_in" in str(e)


def test_already_expired_id_token_is_refused(emulator: GoogleEmulator) -> None:
    expired = emulator.issue_id_token(AUDIENCE, lifetime=-60)
    assert "expired" in str(_id_fails(emulator, {"id_token": expired}))


def test_id_token_claiming_to_live_ten_days_is_refused(emulator: GoogleEmulator) -> None:
    forever = emulator.issue_id_token(AUDIENCE, lifetime=10 * 86400)
    _id_fails(emulator, {"id_token": forever})


@pytest.mark.parametrize("exp", ["soon", -1, 1e300, None, 1.5e10 * 1000])
def test_id_token_with_a_broken_exp_claim_is_refused(emulator: GoogleEmulator, exp: Any) -> None:
    token = emulator.issue_id_token(AUDIENCE, claims={"exp": exp})
    _id_fails(emulator, {"id_token": token})


def test_deeply_nested_json_is_refused_without_a_stack_overflow(emulator: GoogleEmulator) -> None:
    _id_fails(emulator, "[" * 200_000 + "]" * 200_000)
    _id_fails(emulator, '{"id_token":' * 50_000 + "1" + "}" * 50_000)


def test_a_later_good_response_still_works(emulator: GoogleEmulator) -> None:
    """A bad answer is not remembered: the next exchange fetches a good one."""
    creds = sa_credentials(emulator.service_account_info())
    _id_fails(emulator, "garbage", creds=creds)
    emulator.verify_id_token(creds.id_token(AUDIENCE).value, AUDIENCE)


# -- metadata server -----------------------------------------------------------------


def test_a_captive_portal_at_the_metadata_address_is_not_google_cloud(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 without ``Metadata-Flavor`` (hotel Wi-Fi, hijacked DNS) is no metadata server."""
    portal = http_response(200, b"<html>Welcome</html>", [("Content-Type", "text/html")])
    with canned_server(portal) as fake:
        monkeypatch.setenv("GCE_METADATA_HOST", fake.authority)
        monkeypatch.setenv("GCE_METADATA_IP", fake.authority)
        with pytest.raises(CredentialsNotFoundError):
            _native.Credentials.application_default().id_token(AUDIENCE)


def test_garbage_from_the_metadata_identity_endpoint_is_a_permanent_error(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    emulator.respond_next(200, "not-a-jwt", "application/text", endpoint="/identity")
    with pytest.raises(PermanentError) as caught:
        _native.Credentials.application_default().id_token(AUDIENCE)
    assert "JWT" in str(caught.value)


def test_huge_metadata_token_response_is_refused(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    emulator.respond_next(200, "x" * (2 << 20), "application/text", endpoint="/identity")
    with pytest.raises(PermanentError) as caught:
        _native.Credentials.application_default().id_token(AUDIENCE)
    assert "1024 KiB" in str(caught.value)


# -- key files -----------------------------------------------------------------------


def _from_file_fails(path: Path | str, *fragments: str) -> ConfigurationError:
    """Whether reading is eager or at first use, the error names the file and the fragments."""
    with Elapsed() as t, pytest.raises(ConfigurationError) as caught:
        _native.Credentials.from_file(str(path)).id_token(AUDIENCE)
    message = str(caught.value)
    assert str(path) in message, f"the error does not name the file: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert t.seconds < 2.0
    return caught.value


def _info_fails(info: dict[str, Any] | str, *fragments: str) -> ConfigurationError:
    text = info if isinstance(info, str) else json.dumps(info)
    with pytest.raises(ConfigurationError) as caught:
        _native.Credentials.from_service_account_info(text).id_token(AUDIENCE)
    for fragment in fragments:
        assert fragment in str(caught.value), f"{fragment!r} missing from: {caught.value}"
    return caught.value


def _write(tmp_path: Path, info: Any, name: str = "key.json") -> Path:
    path = tmp_path / name
    path.write_text(info if isinstance(info, str) else json.dumps(info))
    return path


def test_pkcs8_and_pkcs1_private_keys_both_sign(emulator: GoogleEmulator) -> None:
    info = emulator.service_account_info()
    pkcs8 = info["private_key"]
    key = serialization.load_pem_private_key(pkcs8.encode(), None)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert "BEGIN RSA PRIVATE KEY" in pkcs1
    for pem in (pkcs8, pkcs1):
        token = sa_credentials(info, private_key=pem).id_token(AUDIENCE)
        emulator.verify_id_token(token.value, AUDIENCE)
    # Two encodings, two key texts: each signed its own assertion.
    assert emulator.count("token") == 2


@pytest.mark.parametrize(
    "pem",
    [
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!!! not base64 !!!!\n-----END PRIVATE KEY-----\n",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n"
        "-----END ENCRYPTED PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n",
    ],
    ids=["truncated-der", "not-base64", "no-armour", "encrypted", "certificate"],
)
def test_bad_pem_is_a_configuration_error_naming_the_file_and_field(
    tmp_path: Path, pem: str
) -> None:
    info = {
        "type": "service_account",
        "client_email": "a@p.iam.gserviceaccount.com",
        "private_key": pem,
    }
    _from_file_fails(_write(tmp_path, info), "private_key")


def test_an_ec_key_is_refused_naming_the_field(tmp_path: Path) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    info = {
        "type": "service_account",
        "client_email": "a@p.iam.gserviceaccount.com",
        "private_key": pem,
    }
    _from_file_fails(_write(tmp_path, info), "private_key")


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("external_account", "external_account"),
        ("service_acount", "service_acount"),
        (None, "type"),
        (5, "type"),
    ],
    ids=["unsupported", "typo", "missing", "number"],
)
def test_wrong_type_names_the_file_and_the_type(
    emulator: GoogleEmulator, tmp_path: Path, kind: Any, fragment: str
) -> None:
    info: dict[str, Any] = emulator.service_account_info()
    if kind is None:  # a key without `type` still counts as one (as google-auth's loader)
        del info["type"], info["private_key"]
    else:
        info["type"] = kind
    _from_file_fails(_write(tmp_path, info), fragment)


@pytest.mark.parametrize("field", ["client_email", "private_key"])
@pytest.mark.parametrize("how", ["missing", "empty", "null"])
def test_service_account_without_a_required_field_names_it(
    emulator: GoogleEmulator, tmp_path: Path, field: str, how: str
) -> None:
    info: dict[str, Any] = emulator.service_account_info()
    if how == "missing":
        del info[field]
    else:
        info[field] = "" if how == "empty" else None
    _from_file_fails(_write(tmp_path, info), field)
    _info_fails(info, field)


@pytest.mark.parametrize("field", ["client_id", "client_secret", "refresh_token"])
def test_authorized_user_without_a_required_field_names_it(
    emulator: GoogleEmulator, tmp_path: Path, field: str
) -> None:
    info: dict[str, Any] = emulator.authorized_user_info()
    del info[field]
    _from_file_fails(_write(tmp_path, info), field)


@pytest.mark.parametrize("field", ["service_account_impersonation_url", "source_credentials"])
def test_impersonated_file_without_a_required_field_names_it(
    emulator: GoogleEmulator, tmp_path: Path, field: str
) -> None:
    info: dict[str, Any] = emulator.impersonated_info(
        emulator.authorized_user_info(), "target@emulated-project.iam.gserviceaccount.com"
    )
    del info[field]
    _from_file_fails(_write(tmp_path, info), field)


@pytest.mark.parametrize(
    "field_value",
    [
        {"client_email": 5},
        {"private_key": ["x"]},
        {"token_uri": {"a": 1}},
        {"delegates": "not-a-list"},
    ],
    ids=["email-number", "key-array", "uri-object", "delegates-string"],
)
def test_a_field_of_the_wrong_json_type_is_a_configuration_error(
    emulator: GoogleEmulator, tmp_path: Path, field_value: dict[str, Any]
) -> None:
    info = {**emulator.service_account_info(), **field_value}
    _from_file_fails(_write(tmp_path, info))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    _from_file_fails(tmp_path / "nowhere" / "key.json")


def test_a_directory_is_named(tmp_path: Path) -> None:
    _from_file_fails(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   \n",
        b"\xff\xfe{\x00",
        b"[1, 2]",
        b"not json at all",
        b'{"type": "service_account",',
    ],
    ids=["empty", "blank", "utf16-bytes", "array", "text", "truncated"],
)
def test_a_file_that_is_not_a_json_object_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.json"
    path.write_bytes(content)
    _from_file_fails(path)


def test_a_huge_key_file_is_refused_quickly(emulator: GoogleEmulator, tmp_path: Path) -> None:
    info = {**emulator.service_account_info(), "padding": "x" * (20 << 20)}
    e = _from_file_fails(_write(tmp_path, info))
    print(f"\nhuge key file (20 MiB): {e}")


def test_a_utf8_bom_does_not_crash(emulator: GoogleEmulator, tmp_path: Path) -> None:
    """Windows editors add a BOM; accept it or say so, never crash."""
    path = tmp_path / "key.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(emulator.service_account_info()).encode())
    try:
        _native.Credentials.from_file(str(path)).id_token(AUDIENCE)
    except ConfigurationError as e:
        assert str(path) in str(e)


def test_google_application_credentials_errors_name_the_variable_and_file(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, {"type": "service_account", "client_email": "a@b.c"})
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    with pytest.raises(ConfigurationError) as caught:
        _native.Credentials.application_default().id_token(AUDIENCE)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(caught.value) and str(path) in str(caught.value)
    assert "private_key" in str(caught.value)


def test_google_application_credentials_pointing_nowhere_is_named(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "gone.json"))
    with pytest.raises(ConfigurationError) as caught:
        _native.Credentials.application_default().id_token(AUDIENCE)
    assert str(tmp_path / "gone.json") in str(caught.value)


# -- files that never end or never open: run in a child with a hard time and memory limit


_CHILD_READ = textwrap.dedent(
    """
    import json, os, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from adk_token_exchange import _native
    from adk_token_exchange.errors import TokenExchangeError
    path, via_env = sys.argv[1], sys.argv[2] == "env"
    start = time.monotonic()
    try:
        if via_env:
            os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = path
            _native.Credentials.application_default().id_token("https://x.run.app")
        else:
            _native.Credentials.from_file(path).id_token("https://x.run.app")
        out = {"error": None}
    except BaseException as e:
        ours = isinstance(e, TokenExchangeError)
        out = {"error": type(e).__name__, "message": str(e), "ours": ours}
    out["seconds"] = time.monotonic() - start
    print(json.dumps(out))
    """
)


def _read_in_child(path: str, via: str) -> dict[str, Any]:
    env = {**os.environ, "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD_READ, path, via],
            capture_output=True,
            text=True,
            timeout=20,
            env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path} hung for 20 s")
    assert done.returncode == 0, f"the interpreter died ({done.returncode}): {done.stderr[-2000:]}"
    assert "panicked" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("via", ["from_file", "env"])
def test_dev_zero_as_key_file_fails_fast_without_eating_memory(via: str) -> None:
    out = _read_in_child("/dev/zero", via)
    assert out["ours"] and out["error"] == "ConfigurationError", out
    assert out["seconds"] < 3, out


@pytest.mark.parametrize("via", ["from_file", "env"])
def test_a_fifo_as_key_file_fails_instead_of_blocking(tmp_path: Path, via: str) -> None:
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    out = _read_in_child(str(fifo), via)
    assert out["ours"] and out["error"] == "ConfigurationError", out


# -- hostile Python arguments: exceptions, never a panic or an abort -----------------

_CHILD_ARGS = textwrap.dedent(
    """
    import asyncio, json, sys
    from adk_token_exchange import _native
    info = json.loads(sys.argv[1])
    creds = _native.Credentials.from_service_account_info(json.dumps(info))
    N = float("nan")
    cases = {
        "configure nan": lambda: _native.configure(request_timeout=N),
        "configure inf": lambda: _native.configure(request_timeout=float("inf")),
        "configure negative": lambda: _native.configure(connect_timeout=-1.0),
        "configure 1e300": lambda: _native.configure(metadata_detect_timeout=1e300),
        "configure huge window": lambda: _native.configure(refresh_window=1e20),
        "configure negative window": lambda: _native.configure(refresh_window=-5.0),
        "configure nan window": lambda: _native.configure(refresh_window=N),
        "configure attempts -1": lambda: _native.configure(max_attempts=-1),
        "configure attempts 2**40": lambda: _native.configure(max_attempts=2**40),
        "configure string": lambda: _native.configure(request_timeout="5"),
        "audience nul": lambda: creds.id_token("https://x.run.app/\\x00"),
        "audience empty": lambda: creds.id_token(""),
        "audience surrogate": lambda: creds.id_token("https://x.run.app/\\udc80"),
        "audience newline": lambda: creds.id_token("https://x.run.app\\r\\nX-Evil: 1"),
        "audience 2 MiB": lambda: creds.id_token("https://x.run.app/" + "a" * (2 << 20)),
        "audience none": lambda: creds.id_token(None),
        "scopes string": lambda: creds.access_token("https://www.googleapis.com/auth/cloud-platform"),
        "scopes ints": lambda: creds.access_token([1, 2]),
        "scopes 50k": lambda: creds.access_token([f"s{i}" for i in range(50_000)]),
        "scopes header injection": lambda: creds.access_token(["a\\r\\nb"]),
        "async audience none": lambda: asyncio.run(creds.id_token_async(None)),
        "info not str": lambda: _native.Credentials.from_service_account_info({"type": "x"}),
        "info nul": lambda: _native.Credentials.from_service_account_info("\\x00").id_token("a"),
        "file nul": lambda: _native.Credentials.from_file("/tmp/\\x00key").id_token("a"),
        "file empty path": lambda: _native.Credentials.from_file("").id_token("a"),
        "impersonate empty": lambda: _native.Credentials.from_service_account_info(
            json.dumps(info), impersonate="").id_token("a"),
        "impersonate garbage": lambda: _native.Credentials.from_service_account_info(
            json.dumps(info), impersonate="../../x?y#z").id_token("a"),
        "delegates ints": lambda: _native.Credentials.application_default(
            impersonate="a@b", delegates=[1]),
        "cached none": lambda: creds.cached_id_token(None),
    }
    results = {}
    for name, case in cases.items():
        try:
            case()
            results[name] = "ok"
        except Exception as e:
            results[name] = type(e).__module__ + "." + type(e).__qualname__
        except BaseException as e:
            cls = type(e).__module__ + "." + type(e).__qualname__
            results[name] = "BASE " + cls + ": " + str(e)[:200]
    _native.configure(connect_timeout=3.0, request_timeout=30.0, metadata_detect_timeout=3.0,
                      refresh_window=300.0, max_attempts=3)
    results["after all that, a token"] = bool(creds.id_token("https://x.run.app").value)
    print(json.dumps(results))
    """
)


def test_hostile_python_arguments_raise_exceptions_never_panic_or_abort(
    emulator: GoogleEmulator,
) -> None:
    info = emulator.service_account_info()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD_ARGS, json.dumps(info)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"the interpreter died ({done.returncode}): {done.stderr[-3000:]}"
    results = json.loads(done.stdout.strip().splitlines()[-1])
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in results.items()))
    panics = {k: v for k, v in results.items() if isinstance(v, str) and v.startswith("BASE")}
    assert not panics, f"panics or BaseExceptions escaped: {panics}"
    assert "panicked" not in done.stderr, done.stderr[-3000:]
    assert results["after all that, a token"] is True
    # Errors from a token request are ours (never ValueError: ADK swallows those).
    for name in ("audience empty", "audience nul", "audience newline", "scopes header injection"):
        assert results[name] == "ok" or results[name].startswith("adk_token_exchange.errors."), (
            name,
            results[name],
        )


def test_exchange_errors_are_never_value_errors(emulator: GoogleEmulator, tmp_path: Path) -> None:
    """ADK's toolset auth swallows ValueError into a warning: none of ours may be one."""
    for cls in (ConfigurationError, PermanentError, TokenExchangeError):
        assert not issubclass(cls, ValueError), cls
    with pytest.raises(TokenExchangeError) as caught:
        _native.Credentials.from_file(str(tmp_path / "missing.json")).id_token(AUDIENCE)
    assert not isinstance(caught.value, ValueError)

"""Secrets never leak, and never travel in clear or to a host nobody named.

Project issue 5, items 5 and 6. Every scenario below plants known secret
values (private key, refresh token, client secret, the tokens themselves, the
signed assertion) and then scans everything a user could see: exception
str/repr/args/cause chain/traceback, every log record at every level (Rust
logs arrive through pyo3-log), stderr, and the repr of every public object.

Zeroization on drop is a Rust property, tested by the ``secret_zeroize`` cargo
test (``tests/rust/secret_zeroize.rs``): the ``Secret`` type's buffer is all zeros by
the time the allocator gets it back.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import re
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from adk_token_exchange import _native
from adk_token_exchange.errors import (
    ConfigurationError,
    PermanentError,
    TokenExchangeError,
    UpstreamTimeoutError,
)
from adk_token_exchange.testing import GoogleEmulator
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.core import sa_credentials
from support.leaks import chain, exception_text
from support.measure import Elapsed, bound
from support.peers import (
    LoopbackServer,
    canned_server,
    hanging_server,
    http_response,
    needs_ipv6_loopback,
)

AUDIENCE = "https://mcp-secrets-uc.a.run.app"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
CLIENT_SECRET = "GOCSPX-SENTINEL-client-secret-7c1f"
TOKEN_SENTINEL = "ya29.SENTINEL-token-in-a-bad-response-9d2e"
KEY_SENTINEL = "SENTINELPRIVATEKEYMATERIAL0123456789abcdefABCDEF"
REFRESH_SENTINEL = "1//SENTINEL-refresh-token-4b8a"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


pytestmark = pytest.mark.core_settings(request_timeout=1.0)


@dataclass
class Exposure:
    """What a user can see, and the secret values that must not be in it."""

    secrets: set[str] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)

    def plant_key(self, pem: str) -> None:
        """Every base64 line of a PEM body is a secret fragment."""
        self.secrets.update(
            line for line in pem.splitlines() if len(line) >= 40 and "-----" not in line
        )

    def plant(self, *values: str) -> None:
        self.secrets.update(v for v in values if v)

    def token(self, token: Any) -> None:
        self.plant(token.value)
        self.see(token, str(token), f"{token!r}", format(token, ""))

    def see(self, *objects: Any) -> None:
        for o in objects:
            self.texts.append(
                exception_text(o) if isinstance(o, BaseException) else f"{o!s}\n{o!r}"
            )

    def fails(
        self, call: Callable[[], Any], cls: type[BaseException] = TokenExchangeError
    ) -> BaseException:
        with pytest.raises(cls) as caught:
            call()
        self.see(caught.value)
        return caught.value


@pytest.fixture
def exposure(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Exposure]:
    caplog.set_level(logging.DEBUG)
    for name in ("adk_token_exchange", "_native"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    seen = Exposure()
    yield seen
    captured = capfd.readouterr()
    records = [
        f"{r.levelname} {r.name}: {r.getMessage()} {r.exc_text or ''} {r.args!r}"
        for r in caplog.records
    ]
    haystack = "\n".join([*seen.texts, *records, captured.out, captured.err])
    leaks = sorted(s for s in seen.secrets if s in haystack)
    assert not leaks, (
        f"secrets leaked: {[s[:24] + '…' for s in leaks]}\n{_context(haystack, leaks[0])}"
    )
    jwts = JWT.findall(haystack)
    assert not jwts, f"a JWT (assertion or ID token) leaked:\n{_context(haystack, jwts[0])}"
    assert "ya29.emulated" not in haystack, _context(haystack, "ya29.emulated")
    assert "panicked" not in captured.err


def _context(haystack: str, needle: str) -> str:
    i = haystack.find(needle)
    return haystack[max(0, i - 300) : i + 100]


def _rust_debug_logs_arrive(caplog: pytest.LogCaptureFixture) -> None:
    """The scan is only worth something if the Rust side's DEBUG records reach Python."""
    rust = [
        r
        for r in caplog.records
        if r.name.startswith(("adk_token_exchange", "_native")) and r.levelno == logging.DEBUG
    ]
    assert rust, (
        f"no DEBUG record from the Rust core reached logging: {[r.name for r in caplog.records]}"
    )


# -- successful exchanges ------------------------------------------------------------


def test_service_account_exchanges_leak_nothing(
    emulator: GoogleEmulator, exposure: Exposure, caplog: pytest.LogCaptureFixture
) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    creds = sa_credentials(info)
    exposure.token(creds.id_token(AUDIENCE))
    exposure.token(creds.access_token(SCOPES))
    exposure.token(asyncio.run(creds.id_token_async(AUDIENCE + "/async")))
    exposure.token(creds.cached_id_token(AUDIENCE))
    exposure.see(creds, creds.identity, creds.resolve(), *_props(creds.resolve()))
    _rust_debug_logs_arrive(caplog)


def test_gcloud_login_exchanges_leak_neither_refresh_token_nor_client_secret(
    emulator: GoogleEmulator, exposure: Exposure, tmp_path: Path
) -> None:
    info = emulator.authorized_user_info(client_secret=CLIENT_SECRET)
    exposure.plant(info["refresh_token"], CLIENT_SECRET)
    path = emulator.write_json(tmp_path, "adc.json", info)
    creds = _native.Credentials.from_file(str(path))
    exposure.token(creds.access_token(SCOPES))
    exposure.token(creds.id_token(AUDIENCE))
    exposure.see(creds, creds.resolve())


def test_impersonation_exchanges_leak_nothing(
    emulator: GoogleEmulator, exposure: Exposure, tmp_path: Path
) -> None:
    user = emulator.authorized_user_info(client_secret=CLIENT_SECRET)
    exposure.plant(user["refresh_token"], CLIENT_SECRET)
    info = emulator.impersonated_info(user, "runner@emulated-project.iam.gserviceaccount.com")
    creds = _native.Credentials.from_file(str(emulator.write_json(tmp_path, "imp.json", info)))
    exposure.token(creds.id_token(AUDIENCE))
    exposure.token(creds.access_token(SCOPES))
    exposure.see(creds, creds.resolve())


def test_metadata_server_exchanges_leak_nothing(
    emulator: GoogleEmulator, exposure: Exposure, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.use_metadata_server(monkeypatch)
    creds = _native.Credentials.application_default()
    exposure.token(creds.id_token(AUDIENCE))
    exposure.token(creds.access_token(SCOPES))
    exposure.see(creds, creds.resolve())


# -- failures carrying secrets nearby ------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": TOKEN_SENTINEL, "expires_in": -1},
        {"access_token": TOKEN_SENTINEL, "expires_in": TOKEN_SENTINEL},
        {"access_token": TOKEN_SENTINEL},
        {"id_token": TOKEN_SENTINEL},
        f"<html>{TOKEN_SENTINEL}</html>",
        '{"access_token": "' + TOKEN_SENTINEL + '", "expires_in": 3600',
        TOKEN_SENTINEL + " " * (1 << 20),
    ],
    ids=[
        "negative-expiry",
        "string-expiry",
        "no-expiry",
        "id-not-jwt",
        "html",
        "truncated",
        "huge",
    ],
)
def test_unusable_responses_do_not_quote_the_token(
    emulator: GoogleEmulator, exposure: Exposure, body: Any
) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    exposure.plant(TOKEN_SENTINEL)
    creds = sa_credentials(info)
    emulator.respond_next(200, body, endpoint="token", times=2)
    exposure.fails(lambda: creds.access_token(SCOPES), PermanentError)
    exposure.fails(lambda: creds.id_token(AUDIENCE), PermanentError)


def test_an_expired_id_token_response_is_not_quoted(
    emulator: GoogleEmulator, exposure: Exposure
) -> None:
    expired = emulator.issue_id_token(AUDIENCE, lifetime=-60)
    exposure.plant(expired, expired.split(".")[2])
    creds = sa_credentials(emulator.service_account_info())
    emulator.respond_next(200, {"id_token": expired}, endpoint="token")
    exposure.fails(lambda: creds.id_token(AUDIENCE), PermanentError)


def test_rejections_retries_and_timeouts_leak_nothing(
    emulator: GoogleEmulator, exposure: Exposure
) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    creds = sa_credentials(info)
    emulator.fail_next(1, 400, "token")
    exposure.fails(lambda: creds.id_token(AUDIENCE))
    emulator.fail_next(3, 503, "token")
    exposure.fails(lambda: creds.id_token(AUDIENCE))
    emulator.hang_next(3, "token")
    exposure.fails(lambda: creds.id_token(AUDIENCE))


def test_a_revoked_refresh_token_error_does_not_quote_it(
    emulator: GoogleEmulator, exposure: Exposure, tmp_path: Path
) -> None:
    info = emulator.authorized_user_info(client_secret=CLIENT_SECRET)
    exposure.plant(info["refresh_token"], CLIENT_SECRET)
    emulator.revoke_refresh_token(info["refresh_token"])
    creds = _native.Credentials.from_file(str(emulator.write_json(tmp_path, "adc.json", info)))
    exposure.fails(lambda: creds.access_token(SCOPES), PermanentError)


_SA = '{"type": "service_account", "client_email": "a@b.c", '
_USER = '{"type": "authorized_user", '
_PEM = f"-----BEGIN PRIVATE KEY-----\\n{KEY_SENTINEL}\\n-----END PRIVATE KEY-----\\n"
_BROKEN_JSON = {
    "bad-pem": f'{_SA}"private_key": "{_PEM}"}}',
    "no-armour": f'{_SA}"private_key": "{KEY_SENTINEL}"}}',
    "syntax-after-key": f'{_SA}"private_key": "{KEY_SENTINEL}", }}',
    "truncated-in-key": f'{_SA}"private_key": "{KEY_SENTINEL}',
    "key-wrong-type": f'{_SA}"private_key": ["{KEY_SENTINEL}"]}}',
    "missing-refresh-token": f'{_USER}"client_id": "c", "client_secret": "{CLIENT_SECRET}"}}',
    "secret-wrong-type": f'{_USER}"refresh_token": "{REFRESH_SENTINEL}", "client_secret": 7}}',
    "refresh-token-wrong-type": f'{_USER}"refresh_token": {{"v": "{REFRESH_SENTINEL}"}}}}',
    "nested-source-missing-fields": '{"type": "impersonated_service_account", '
    f'"source_credentials": {_USER}"refresh_token": "{REFRESH_SENTINEL}", '
    f'"client_secret": "{CLIENT_SECRET}"}}}}',
    "not-json": KEY_SENTINEL,
    "trailing-garbage": f'{{"private_key": "{KEY_SENTINEL}"}} trailing {REFRESH_SENTINEL}',
}


@pytest.mark.parametrize("text", list(_BROKEN_JSON.values()), ids=list(_BROKEN_JSON))
def test_broken_credential_json_never_quotes_a_secret(
    exposure: Exposure, tmp_path: Path, text: str
) -> None:
    exposure.plant(KEY_SENTINEL, CLIENT_SECRET, REFRESH_SENTINEL)
    path = tmp_path / "key.json"
    path.write_text(text)
    exposure.fails(
        lambda: _native.Credentials.from_service_account_info(text).id_token(AUDIENCE),
        ConfigurationError,
    )
    exposure.fails(
        lambda: _native.Credentials.from_file(str(path)).id_token(AUDIENCE), ConfigurationError
    )


def test_adk_exchanger_errors_and_reprs_leak_nothing(
    emulator: GoogleEmulator, exposure: Exposure
) -> None:
    import adk_token_exchange
    from adk_token_exchange.exchanger import ServiceAccountExchanger

    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    exchanger = ServiceAccountExchanger()
    exposure.see(exchanger)
    credential = adk_token_exchange.id_token_credential(AUDIENCE, service_account_key=info)
    emulator.fail_next(1, 400, "token")
    with pytest.raises(Exception) as caught:
        asyncio.run(exchanger.exchange(credential, None))
    exposure.see(caught.value)
    with pytest.raises(Exception) as caught_sync:
        emulator.fail_next(1, 400, "token")
        exchanger.exchange_credential(None, credential)
    exposure.see(caught_sync.value)


def test_every_exception_class_keeps_the_message_secret_free_when_chained(
    emulator: GoogleEmulator, exposure: Exposure
) -> None:
    """``raise ... from`` chains built by the PyO3 layer (ADK wrapping) still carry no secret:
    every exception in the chain, by message, repr and args, is free of the key."""
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    error = exposure.fails(
        lambda: sa_credentials(info, token_uri="http://oauth2.googleapis.com/token").id_token(
            AUDIENCE
        ),
        ConfigurationError,
    )
    links = chain(error)
    texts = [text for e in links for text in (str(e), repr(e), *map(repr, e.args))]
    leaks = [s for s in exposure.secrets for text in texts if s in text]
    assert not leaks, f"a key fragment in the chain {[type(e).__name__ for e in links]}"
    assert "token_uri" in str(error), "the chain's head still says what is wrong"


def test_credentials_embedded_in_a_token_uri_are_refused_and_never_repeated(
    emulator: GoogleEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A password in ``token_uri`` (``https://user:pass@host/…``) is refused up front, and
    the refusal names the field without repeating the password."""
    caplog.set_level(logging.DEBUG)
    info = emulator.service_account_info()
    password = "SENTINEL-url-password-5e3a"
    seen: list[str] = []
    for token_uri in (
        f"http://u:{password}@127.0.0.1:{emulator.port}/token",
        f"https://u:{password}@oauth2.googleapis.com/token",
    ):
        with pytest.raises(ConfigurationError) as refused:
            sa_credentials(info, token_uri=token_uri)
        assert "token_uri" in str(refused.value)
        assert "user name or password" in str(refused.value)
        seen.append(exception_text(refused.value))
    seen += [r.getMessage() for r in caplog.records]
    leaks = [text for text in seen if password in text]
    assert not leaks, leaks[0]
    assert emulator.count() == 0


def _props(obj: Any) -> list[Any]:
    return [getattr(obj, n) for n in dir(obj) if not n.startswith("_")]


# -- 6. transport security -----------------------------------------------------------


@pytest.mark.parametrize(
    "token_uri",
    [
        "http://oauth2.googleapis.com/token",
        "http://10.0.0.1/token",
        "http://169.254.169.254/token",
        "http://127.0.0.1.nip.io/token",
        "http://localhost.attacker.example/token",
        "ftp://127.0.0.1/token",
        "file:///etc/passwd",
        "//oauth2.googleapis.com/token",
    ],
)
def test_token_uri_must_be_https_unless_loopback(
    emulator: GoogleEmulator, exposure: Exposure, token_uri: str
) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    error = exposure.fails(
        lambda: sa_credentials(info, token_uri=token_uri).id_token(AUDIENCE), ConfigurationError
    )
    assert "https" in str(error) and "token_uri" in str(error)
    assert emulator.count() == 0


def test_loopback_http_token_uri_by_name_is_allowed(emulator: GoogleEmulator) -> None:
    info = emulator.service_account_info()
    uri = f"http://localhost:{emulator.port}/token"

    token = sa_credentials(info, token_uri=uri).id_token(AUDIENCE)

    emulator.verify_id_token(token.value, AUDIENCE)
    assert emulator.count("token") == 1


@needs_ipv6_loopback
def test_loopback_http_token_uri_over_ipv6_is_allowed() -> None:
    with GoogleEmulator(host="::1") as google:
        info = google.service_account_info()
        assert info["token_uri"] == f"http://[::1]:{google.port}/token"

        token = sa_credentials(info).id_token(AUDIENCE)

        google.verify_id_token(token.value, AUDIENCE)
        assert google.count("token") == 1, "the grant arrived over [::1]"


def test_impersonation_url_must_be_https_unless_loopback(
    emulator: GoogleEmulator, exposure: Exposure, tmp_path: Path
) -> None:
    user = emulator.authorized_user_info(client_secret=CLIENT_SECRET)
    exposure.plant(user["refresh_token"], CLIENT_SECRET)
    info = emulator.impersonated_info(user, "runner@emulated-project.iam.gserviceaccount.com")
    info["service_account_impersonation_url"] = info["service_account_impersonation_url"].replace(
        emulator.url, "http://iamcredentials.googleapis.com"
    )
    path = emulator.write_json(tmp_path, "imp.json", info)
    error = exposure.fails(
        lambda: _native.Credentials.from_file(str(path)).id_token(AUDIENCE), ConfigurationError
    )
    assert "https" in str(error)
    assert emulator.count() == 0, "not even the refresh-token grant ran"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_to_another_host(
    emulator: GoogleEmulator, exposure: Exposure, status: int
) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    with canned_server(http_response(200, b"{}")) as elsewhere:
        target = f"http://127.0.0.2:{elsewhere.port}/token"
        with canned_server(http_response(status, b"", [("Location", target)])) as redirector:
            creds = sa_credentials(info, token_uri=f"{redirector.url}/token")
            error = exposure.fails(lambda: creds.id_token(AUDIENCE), PermanentError)
            assert len(redirector.requests) == 1, "not retried either"
        assert elsewhere.connections == 0, "the assertion went to a host nobody named"
    assert "redirect" in str(error)


def test_the_assertion_is_posted_in_the_body_never_in_the_url(emulator: GoogleEmulator) -> None:
    with canned_server(http_response(400, b'{"error":"invalid_grant"}')) as recorder:
        creds = sa_credentials(emulator.service_account_info(), token_uri=f"{recorder.url}/token")
        with pytest.raises(PermanentError):
            creds.id_token(AUDIENCE)
    request_line = recorder.requests[0].split(b"\r\n", 1)[0]
    assert request_line.startswith(b"POST /token ") and b"assertion" not in request_line


# -- TLS: verification is on, and SSL_CERT_FILE adds a corporate root ---------------


def _pki(tmp: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corporate Proxy Root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, leaf_pem, key_pem = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, leaf_pem, key_pem


def _tls_token_server(leaf: Path, key: Path) -> LoopbackServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    body = json.dumps({"access_token": "ya29.x-over-tls", "expires_in": 3600}).encode()

    def serve(sock: Any) -> None:
        try:
            tls = context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with tls:
            while server.read_request(tls) is not None:
                tls.sendall(http_response(200, body, [("Content-Type", "application/json")]))

    server = LoopbackServer(serve)
    return server


def test_tls_with_an_unknown_root_is_refused(emulator: GoogleEmulator, exposure: Exposure) -> None:
    info = emulator.service_account_info()
    exposure.plant_key(info["private_key"])
    with tempfile.TemporaryDirectory() as tmp:
        _, leaf, key = _pki(Path(tmp))
        with _tls_token_server(leaf, key) as tls:
            creds = sa_credentials(info, token_uri=f"https://127.0.0.1:{tls.port}/token")
            error = exposure.fails(lambda: creds.access_token(SCOPES))
    assert "certificate" in str(error).lower() or "UnknownIssuer" in str(error), error


def test_ssl_cert_file_trusts_a_corporate_root(
    emulator: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rustls-native-certs reads SSL_CERT_FILE when the HTTP client is built."""
    info = emulator.service_account_info()
    with tempfile.TemporaryDirectory() as tmp:
        ca, leaf, key = _pki(Path(tmp))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        _native.configure(
            request_timeout=1.5
        )  # new settings: the client is rebuilt and reads the roots
        with _tls_token_server(leaf, key) as tls:
            creds = sa_credentials(info, token_uri=f"https://127.0.0.1:{tls.port}/token")
            assert creds.access_token(SCOPES).value == "ya29.x-over-tls"
    monkeypatch.delenv("SSL_CERT_FILE")
    _native.configure(request_timeout=1.0)


def test_a_hanging_tls_handshake_times_out(emulator: GoogleEmulator) -> None:
    """The module runs with ``request_timeout=1``: the handshake is bounded by it."""
    with hanging_server() as silent:  # accepts TCP, never speaks TLS
        creds = sa_credentials(
            emulator.service_account_info(), token_uri=f"https://127.0.0.1:{silent.port}/token"
        )
        with Elapsed() as t, pytest.raises(UpstreamTimeoutError):
            creds.access_token(SCOPES)
    assert t.seconds < bound(1.0), f"{t.seconds:.2f} s for request_timeout=1"

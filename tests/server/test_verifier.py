"""The server side's verifiers against the emulator's key sets.

The emulator signs with PyJWT and publishes its keys as Google does; the
verifier is the package's Rust core: the two sides share no code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import multiprocessing
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from adk_token_exchange.errors import ConfigurationError, InvalidTokenError, TransientError
from adk_token_exchange.server import IapVerifier, IdTokenVerifier
from adk_token_exchange.testing import GoogleEmulator
from adk_token_exchange.testing.emulator import keys
from cryptography.hazmat.primitives.asymmetric import rsa
from support.leaks import exception_text

SERVICE = "https://svc-xyz.a.run.app"
CALLER = "agent@proj.iam.gserviceaccount.com"
IAP_AUDIENCE = "/projects/123456789012/global/backendServices/4242"


@pytest.fixture(scope="module")
def forger_key() -> rsa.RSAPrivateKey:
    """A key Google never published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier(emulator: GoogleEmulator) -> IdTokenVerifier:
    return IdTokenVerifier(SERVICE, jwks_url=emulator.jwks_url)


def id_token(emulator: GoogleEmulator, **claims: Any) -> str:
    audience = claims.pop("aud", SERVICE)
    return emulator.issue_id_token(audience, email=CALLER, claims=claims)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(verifier: IdTokenVerifier | IapVerifier, token: str) -> InvalidTokenError:
    with pytest.raises(InvalidTokenError) as caught:
        verifier.verify(token)
    return caught.value


# --------------------------------------------------------------------------
# What passes


def test_a_google_signed_id_token_for_this_service_returns_its_claims(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    claims = verifier.verify(id_token(emulator))

    assert claims["email"] == CALLER
    assert claims["aud"] == SERVICE
    assert claims["iss"] == "https://accounts.google.com"


def test_keys_are_fetched_once_and_a_token_is_checked_once_per_process(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    tokens = [id_token(emulator, n=i) for i in range(20)]
    for _ in range(50):
        for token in tokens:
            verifier.verify(token)

    assert emulator.count("certs") == 1
    assert verifier.cached_key_ids() == list(emulator.public_keys())


def test_each_call_gets_its_own_claims_dict(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    token = id_token(emulator)
    first = verifier.verify(token)
    first["email"] = "mallory@example.com"

    assert verifier.verify(token)["email"] == CALLER


def test_a_url_audience_also_accepts_its_origin_unless_exact(emulator: GoogleEmulator) -> None:
    # This package's client (and Cloud Run) use the origin; google-auth callers
    # often send the full URL.
    loose = IdTokenVerifier(f"{SERVICE}/mcp", jwks_url=emulator.jwks_url)
    exact = IdTokenVerifier(f"{SERVICE}/mcp", exact=True, jwks_url=emulator.jwks_url)

    assert loose.audiences == [f"{SERVICE}/mcp", SERVICE]
    assert loose.verify(id_token(emulator))["aud"] == SERVICE
    assert loose.verify(id_token(emulator, aud=f"{SERVICE}/mcp"))
    assert refused(exact, id_token(emulator)).reason == "wrong_audience"


async def test_verify_async_is_a_real_coroutine_and_shares_the_verdict(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    token = id_token(emulator)
    pending = verifier.verify_async(token)
    assert asyncio.iscoroutine(pending)
    assert emulator.count("certs") == 0, "nothing runs before it is awaited"

    claims = await pending
    again = await asyncio.gather(*(verifier.verify_async(token) for _ in range(20)))

    assert claims["email"] == CALLER
    assert all(c == claims for c in again)
    assert emulator.count("certs") == 1


def test_concurrent_cold_threads_share_one_key_fetch(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    emulator.set_latency(0.2, endpoint="certs")
    tokens = [id_token(emulator, n=i) for i in range(8)]
    results: list[str] = []

    def call(token: str) -> None:
        results.append(verifier.verify(token)["email"])

    threads = [threading.Thread(target=call, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert results == [CALLER] * 8
    assert emulator.count("certs") == 1


async def test_a_cold_key_fetch_does_not_block_the_event_loop(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    emulator.set_latency(0.3, endpoint="certs")
    token = id_token(emulator)
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    ticking = asyncio.create_task(ticker())
    claims = await verifier.verify_async(token)
    done.set()
    await ticking

    assert claims["email"] == CALLER
    assert len(lags) > 50, "the loop kept running during the 300 ms fetch"
    assert max(lags) < 0.05, f"the loop stalled {max(lags) * 1000:.0f} ms"


# --------------------------------------------------------------------------
# What is refused, and why


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"iat": int(time.time()) + 600, "exp": int(time.time()) + 4000}, "not_yet_valid"),
        ({"nbf": int(time.time()) + 600}, "not_yet_valid"),
        ({"aud": "https://other-svc.a.run.app"}, "wrong_audience"),
        ({"iss": "https://evil.example"}, "wrong_issuer"),
        ({"aud": 42}, "malformed"),
    ],
    ids=["expired", "issued-in-the-future", "not-before", "wrong-aud", "wrong-iss", "aud-type"],
)
def test_a_token_with_a_wrong_claim_is_refused_saying_which(
    emulator: GoogleEmulator, verifier: IdTokenVerifier, claims: dict[str, Any], reason: str
) -> None:
    error = refused(verifier, id_token(emulator, **claims))

    assert error.reason == reason
    assert emulator.count("certs") == 0, "claims are checked before any key is fetched"


def test_the_leeway_forgives_small_clock_skew_only(emulator: GoogleEmulator) -> None:
    strict = IdTokenVerifier(SERVICE, leeway=0, jwks_url=emulator.jwks_url)
    lenient = IdTokenVerifier(SERVICE, leeway=60, jwks_url=emulator.jwks_url)
    token = id_token(emulator, exp=int(time.time()) - 30)

    assert refused(strict, token).reason == "expired"
    assert lenient.verify(token)["email"] == CALLER


def test_alg_none_is_refused(emulator: GoogleEmulator, verifier: IdTokenVerifier) -> None:
    header = b64(json.dumps({"alg": "none", "kid": next(iter(emulator.public_keys()))}).encode())
    body = b64(
        json.dumps(jwt.decode(id_token(emulator), options={"verify_signature": False})).encode()
    )

    assert refused(verifier, f"{header}.{body}.").reason == "algorithm"


def test_hs256_keyed_with_googles_public_key_is_refused(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    # The classic confusion: HMAC with the RSA public key (PEM or JWK text) as secret.
    kid, public = next(iter(emulator.public_keys().items()))
    claims = jwt.decode(id_token(emulator), options={"verify_signature": False})
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    for secret in (
        keys.public_key_pem(public).encode(),
        json.dumps(keys.jwk(public, kid)).encode(),
    ):
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()

        assert refused(verifier, f"{header}.{body}.{b64(mac)}").reason == "algorithm"


def test_a_tampered_claim_breaks_the_signature(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    header, _, signature = id_token(emulator).split(".")
    claims = jwt.decode(id_token(emulator), options={"verify_signature": False})
    claims["email"] = "admin@corp.example"
    forged = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"

    assert refused(verifier, forged).reason == "bad_signature"


def test_an_unknown_kid_refetches_the_keys_once_then_is_refused(
    emulator: GoogleEmulator, verifier: IdTokenVerifier, forger_key: rsa.RSAPrivateKey
) -> None:
    verifier.verify(id_token(emulator))
    claims = jwt.decode(id_token(emulator), options={"verify_signature": False})
    forged = [
        jwt.encode(claims, forger_key, algorithm="RS256", headers={"kid": f"forged-{i}"})
        for i in range(25)
    ]

    reasons = {refused(verifier, token).reason for token in forged}

    assert reasons == {"unknown_key"}
    assert emulator.count("certs") == 2, "one refetch for 25 forged key ids"


def test_a_token_signed_with_a_newly_rotated_key_is_accepted_after_one_refetch(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    verifier.verify(id_token(emulator))
    new_kid = emulator.rotate_signing_key()

    claims = verifier.verify(id_token(emulator))

    assert claims["email"] == CALLER
    assert new_kid in (verifier.cached_key_ids() or [])
    assert emulator.count("certs") == 2


def test_after_max_age_the_new_key_set_is_used_and_a_retired_key_is_refused(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    emulator.certs_max_age = 1
    old = id_token(emulator)
    verifier.verify(old)
    emulator.rotate_signing_key(keep_previous=False)
    new = id_token(emulator)
    time.sleep(1.2)

    assert verifier.verify(new)["email"] == CALLER
    fetches = emulator.count("certs")
    assert refused(verifier, old).reason == "unknown_key"
    assert fetches == 2, "the expired set was fetched again once, not for each token"


def test_a_key_set_outage_keeps_cached_keys_then_says_so(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    emulator.certs_max_age = 2
    verifier.verify(id_token(emulator, n=0))
    emulator.fail_next(1000, status=503, endpoint="certs")
    time.sleep(1.6)  # in the refresh window: one background refresh fails

    assert verifier.verify(id_token(emulator, n=1))["email"] == CALLER
    time.sleep(0.8)  # past max-age
    with pytest.raises(TransientError) as caught:
        verifier.verify(id_token(emulator, n=2))

    assert "/oauth2/v3/certs" in str(caught.value)
    assert not isinstance(caught.value, InvalidTokenError), "the caller is not at fault"


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "ya29.an-access-token",
        "a.b.c",
        "x" * 1_000_000,
        ".".join(["A" * 40_000] * 3),
        "\x00\x01.\x02.\x03",
        b64(b'{"alg":"RS256","kid":"k"}') + "." + b64(b"[" * 100_000) + ".c2ln",
        b64(b'{"alg":"RS256"}') + "." + b64(b'{"iss": ' + b'"a"' * 5000 + b"}") + ".",
    ],
    ids=[
        "empty",
        "access-token",
        "garbage",
        "1MB",
        "huge-parts",
        "control",
        "deep-json",
        "bad-json",
    ],
)
def test_oversized_and_malformed_tokens_are_refused_quickly_without_a_fetch(
    emulator: GoogleEmulator, verifier: IdTokenVerifier, junk: str
) -> None:
    start = time.perf_counter()
    error = refused(verifier, junk)

    assert error.reason in ("malformed", "algorithm")
    assert time.perf_counter() - start < 0.05
    assert emulator.count("certs") == 0


def test_no_refusal_or_repr_ever_shows_the_token(
    emulator: GoogleEmulator, forger_key: rsa.RSAPrivateKey
) -> None:
    verifier = IdTokenVerifier(
        SERVICE, emails=["someone-else@x.example"], jwks_url=emulator.jwks_url
    )
    claims = jwt.decode(id_token(emulator), options={"verify_signature": False})
    tokens = [
        id_token(emulator),
        id_token(emulator, exp=int(time.time()) - 600),
        id_token(emulator, aud="https://other.example"),
        jwt.encode(claims, forger_key, algorithm="RS256", headers={"kid": "forged"}),
    ]
    for token in tokens:
        text = exception_text(refused(verifier, token))
        for part in token.split("."):
            assert part not in text
    assert "eyJ" not in repr(verifier)


def test_a_refusal_pickles_with_its_reason(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    error = refused(verifier, id_token(emulator, exp=int(time.time()) - 600))
    copy = pickle.loads(pickle.dumps(error))

    assert (copy.reason, str(copy)) == ("expired", str(error))


# --------------------------------------------------------------------------
# Who may call


def test_the_allow_list_admits_listed_service_accounts_users_and_domains_only(
    emulator: GoogleEmulator,
) -> None:
    verifier = IdTokenVerifier(
        SERVICE, emails=[CALLER.upper()], domains=["corp.example"], jwks_url=emulator.jwks_url
    )

    assert verifier.verify(id_token(emulator))["email"] == CALLER
    user = emulator.issue_id_token(SERVICE, email="ann@corp.example", claims={"hd": "corp.example"})
    assert verifier.verify(user)["hd"] == "corp.example"
    for email, extra in [
        ("other@proj.iam.gserviceaccount.com", {}),
        ("bob@corp.example", {}),  # the email's suffix is not the hd claim
        (CALLER, {"email_verified": False}),
    ]:
        token = emulator.issue_id_token(SERVICE, email=email, claims=extra)
        assert refused(verifier, token).reason == "not_allowed"


def test_a_token_without_email_is_not_allowed_and_the_message_says_how_to_get_one(
    emulator: GoogleEmulator,
) -> None:
    verifier = IdTokenVerifier(SERVICE, emails=[CALLER], jwks_url=emulator.jwks_url)
    claims = jwt.decode(id_token(emulator), options={"verify_signature": False})
    del claims["email"], claims["email_verified"]
    token = emulator._state.mint.sign(claims)

    error = refused(verifier, token)

    assert error.reason == "not_allowed"
    assert "includeEmail" in str(error)


# --------------------------------------------------------------------------
# Behind Cloud Run


def stripped(token: str) -> str:
    """What Cloud Run forwards after verifying a token itself."""
    return token.rsplit(".", 1)[0] + ".SIGNATURE_REMOVED_BY_GOOGLE"


def test_a_token_cloud_run_stripped_is_refused_by_default_with_the_way_out(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    error = refused(verifier, stripped(id_token(emulator)))

    assert error.reason == "signature_removed"
    assert "trusted_front" in str(error)


def test_behind_a_trusted_front_stripped_tokens_pass_on_their_claims_only(
    emulator: GoogleEmulator,
) -> None:
    verifier = IdTokenVerifier(
        SERVICE, emails=[CALLER], trusted_front=True, jwks_url=emulator.jwks_url
    )

    assert verifier.verify(stripped(id_token(emulator)))["email"] == CALLER
    assert refused(verifier, stripped(id_token(emulator, aud="https://x"))).reason == (
        "wrong_audience"
    )
    other = emulator.issue_id_token(SERVICE, email="mallory@example.com")
    assert refused(verifier, stripped(other)).reason == "not_allowed"
    # A real signature is still verified, and refused when it is wrong.
    header, body, _ = id_token(emulator).split(".")
    assert refused(verifier, f"{header}.{body}.AAAA").reason == "bad_signature"


# --------------------------------------------------------------------------
# IAP


@pytest.fixture
def iap(emulator: GoogleEmulator) -> IapVerifier:
    return IapVerifier(IAP_AUDIENCE, jwks_url=emulator.iap_jwks_url)


def test_an_iap_assertion_is_verified_with_iaps_es256_keys(
    emulator: GoogleEmulator, iap: IapVerifier
) -> None:
    claims = iap.verify(emulator.issue_iap_assertion(IAP_AUDIENCE, email="ann@corp.example"))

    assert claims["email"] == "ann@corp.example"
    assert claims["iss"] == "https://cloud.google.com/iap"
    assert emulator.count("certs") == 1


def test_iap_refuses_other_audiences_issuers_and_google_id_tokens(
    emulator: GoogleEmulator, iap: IapVerifier
) -> None:
    other = "/projects/123456789012/apps/another-project"
    assert refused(iap, emulator.issue_iap_assertion(other)).reason == "wrong_audience"
    wrong_iss = emulator.issue_iap_assertion(
        IAP_AUDIENCE, claims={"iss": "https://accounts.google.com"}
    )
    assert refused(iap, wrong_iss).reason == "wrong_issuer"
    assert refused(iap, emulator.issue_id_token(IAP_AUDIENCE)).reason == "algorithm"


def test_iap_allow_lists_users_without_email_verified(emulator: GoogleEmulator) -> None:
    # IAP's assertions carry no email_verified: IAP signed the user in itself.
    iap = IapVerifier(IAP_AUDIENCE, emails=["ann@corp.example"], jwks_url=emulator.iap_jwks_url)

    assert iap.verify(emulator.issue_iap_assertion(IAP_AUDIENCE, email="ann@corp.example"))
    bob = emulator.issue_iap_assertion(IAP_AUDIENCE, email="bob@corp.example")
    assert refused(iap, bob).reason == "not_allowed"


# --------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: IdTokenVerifier([]), "at least one is required"),
        (
            lambda: IdTokenVerifier(SERVICE, jwks_url="https://keys.attacker.example/certs"),
            "not Google's",
        ),
        (
            lambda: IdTokenVerifier(SERVICE, jwks_url="http://www.googleapis.com/oauth2/v3/certs"),
            "https",
        ),
        (lambda: IdTokenVerifier(SERVICE, leeway=3600), "leeway"),
        (lambda: IdTokenVerifier(SERVICE, emails=["corp.example"]), "has no @"),
        (lambda: IapVerifier("https://app.example.com"), "not an IAP audience"),
    ],
    ids=["no-audience", "foreign-jwks", "http-jwks", "leeway", "domain-as-email", "iap-aud"],
)
def test_a_verifier_that_would_be_unsafe_or_useless_is_refused_at_construction(
    build: Any, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        build()


def test_googles_own_key_sets_are_the_defaults() -> None:
    assert IdTokenVerifier(SERVICE).jwks_url == "https://www.googleapis.com/oauth2/v3/certs"
    assert IapVerifier(IAP_AUDIENCE).jwks_url == "https://www.gstatic.com/iap/verify/public_key-jwk"


# --------------------------------------------------------------------------
# Processes


def _verify_in_child(jwks_url: str, token: str, answer: Any) -> None:
    try:
        answer.put(IdTokenVerifier(SERVICE, jwks_url=jwks_url).verify(token)["email"])
    except Exception as exc:  # pragma: no cover - reported to the parent
        answer.put(repr(exc))


def test_a_forked_child_verifies_with_keys_of_its_own(
    emulator: GoogleEmulator, verifier: IdTokenVerifier
) -> None:
    token = id_token(emulator)
    verifier.verify(token)
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    child = context.Process(target=_verify_in_child, args=(emulator.jwks_url, token, answer))
    child.start()
    child.join(20)

    assert answer.get(timeout=5) == CALLER
    assert emulator.count("certs") == 2, "the child fetched its own keys"


@pytest.fixture(autouse=True)
def no_emulator_errors(emulator: GoogleEmulator) -> Iterator[None]:
    yield
    assert emulator.internal_errors == []

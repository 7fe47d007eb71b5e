"""Keys for the emulator: RSA from a small per-process pool (2048-bit generation is
slow), and the JWK forms of RSA and P-256 public keys."""

from __future__ import annotations

import base64
import datetime
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "certificate_pem",
    "ec_jwk",
    "fresh_key",
    "jwk",
    "pooled_key",
    "private_key_pem",
    "public_key_pem",
]

# Key material is shared between emulators and service accounts of one process;
# what keeps them apart is the key id, which is fresh for every registration.
_POOL_SIZE = 4
_pool: dict[int, rsa.RSAPrivateKey] = {}
_pool_lock = threading.Lock()


def pooled_key(index: int) -> rsa.RSAPrivateKey:
    """The pool's key number ``index`` (modulo the pool size), generated on first use."""
    slot = index % _POOL_SIZE
    with _pool_lock:
        key = _pool.get(slot)
        if key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _pool[slot] = key
        return key


def fresh_key() -> rsa.RSAPrivateKey:
    """A key of its own (slow: RSA generation), for rotations and forgeries."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, the ``private_key`` format of a Google service account key file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def certificate_pem(key: rsa.RSAPrivateKey, common_name: str) -> str:
    """A self-signed X.509 certificate, as Google publishes at ``/oauth2/v1/certs``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=14))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk(key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    """RFC 7517 JSON Web Key, the entry format of ``/oauth2/v3/certs``."""
    numbers = key.public_numbers()
    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def ec_jwk(key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """RFC 7517 JSON Web Key of a P-256 key, the entry format of IAP's ``public_key-jwk``."""
    numbers = key.public_numbers()

    def coordinate(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode("ascii")

    return {
        "kty": "EC",
        "alg": "ES256",
        "use": "sig",
        "crv": "P-256",
        "kid": kid,
        "x": coordinate(numbers.x),
        "y": coordinate(numbers.y),
    }

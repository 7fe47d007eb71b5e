"""End-to-end fuzzer for token responses, through the public Python API.

The Rust parsers of token responses (`sources::access_token_from_json`,
`sources::id_token_from_jwt`) are crate-private, so cargo-fuzz cannot call
them; this drives them the way Google would: the emulator answers each
exchange with a generated or mutated body. Oracle for every body: the call
returns a usable token (non-empty, unexpired, at most a day and 5 minutes
ahead) or raises ``PermanentError``; nothing else, no panic, no abort.

    python fuzz/token_responses.py SECONDS [SEED]
"""

from __future__ import annotations

import base64
import json
import logging
import random
import sys
import time
from typing import Any

from adk_token_exchange import _native
from adk_token_exchange.errors import PermanentError
from adk_token_exchange.testing import GoogleEmulator

NUMBERS: list[Any] = [
    0,
    -1,
    1,
    59,
    3599,
    3600,
    86400,
    86401,
    1e308,
    -1e308,
    2**63,
    2**64 + 1,
    0.5,
    1e-9,
    10**30,
]
JUNK: list[Any] = [
    None,
    True,
    False,
    "",
    "3600",
    [],
    {},
    [3600],
    {"a": 1},
    "ya29.x",
    "\u0000",
    "\udcff",
]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def value(rng: random.Random) -> Any:
    return rng.choice(
        [rng.choice(NUMBERS), rng.choice(JUNK), rng.random() * 10 ** rng.randint(0, 12)]
    )


def jwt(rng: random.Random, now: float) -> str:
    claims: dict[str, Any] = {"aud": "https://x.run.app", "iss": "https://accounts.google.com"}
    roll = rng.random()
    if roll < 0.5:
        claims["exp"] = now + rng.choice([-3600, -1, 1, 30, 3600, 86400, 86700, 10**9, 10**12])
    elif roll < 0.8:
        claims["exp"] = value(rng)
    parts = [
        b64(b'{"alg":"RS256","kid":"k"}'),
        b64(json.dumps(claims).encode()),
        b64(rng.randbytes(rng.randint(0, 64))),
    ]
    if rng.random() < 0.2:
        parts = parts[: rng.randint(0, 3)] + ["x" * rng.randint(0, 3)] * rng.randint(0, 2)
    return ".".join(parts)


def body(rng: random.Random, kind: str, now: float) -> bytes:
    doc: dict[str, Any] = {}
    if kind == "access" or rng.random() < 0.2:
        doc["access_token"] = rng.choice(
            ["ya29.ok", "", " ", "ya29.\n", value(rng), "a" * rng.randint(1, 5000)]
        )
        doc["expires_in"] = value(rng) if rng.random() < 0.7 else rng.randint(-5, 90000)
    if kind == "id" or rng.random() < 0.2:
        doc["id_token"] = jwt(rng, now) if rng.random() < 0.8 else value(rng)
    for _ in range(rng.randint(0, 3)):
        doc[rng.choice(["token_type", "scope", "error", "expires_in", "id_token", "x"])] = value(
            rng
        )
    if rng.random() < 0.1:
        keys = list(doc)
        rng.shuffle(keys)
        for k in keys[: rng.randint(0, len(keys))]:
            del doc[k]
    try:
        raw = bytearray(json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        raw = bytearray(b"{}")
    for _ in range(rng.choice([0, 0, 0, 1, 2, 8])):  # byte-level mutations
        op = rng.random()
        pos = rng.randint(0, max(0, len(raw) - 1))
        if op < 0.4 and raw:
            raw[pos] = rng.randint(0, 255)
        elif op < 0.7:
            raw[pos:pos] = bytes([rng.choice(b'{}[]",:0123456789.-eE\\ ')])
        elif raw:
            del raw[pos : pos + rng.randint(1, 8)]
    if rng.random() < 0.02:
        raw = bytearray(b"[" * rng.randint(100, 100_000))
    return bytes(raw)


def main() -> int:
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    rng = random.Random(seed)
    logging.disable(logging.CRITICAL)  # thousands of expected warnings; the oracle is the result
    _native.configure(max_attempts=1, request_timeout=10.0)
    executions = tokens = refused = 0
    failures: list[str] = []
    with GoogleEmulator() as google:
        creds = _native.Credentials.from_service_account_info(
            json.dumps(google.service_account_info())
        )
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            kind = "id" if rng.random() < 0.5 else "access"
            now = time.time()
            payload = body(rng, kind, now)
            google.respond_next(200, payload, endpoint="token")
            executions += 1
            try:
                if kind == "id":
                    token = creds.id_token(f"https://x.run.app/{executions}")
                else:
                    token = creds.access_token([f"scope-{executions}"])
                ok = (
                    bool(token.value.strip())
                    and now < token.expires_at <= time.time() + 86400 + 300
                )
                if not ok:
                    failures.append(
                        f"unusable token from {payload[:300]!r}: expires_at={token.expires_at}"
                    )
                tokens += 1
            except PermanentError:
                refused += 1
            except BaseException as e:
                failures.append(f"{type(e).__name__}: {e} for body {payload[:300]!r}")
            if executions % 2000 == 0:
                _native.clear_cache()
            if len(failures) >= 20:
                break
        google.clear_faults()
    print(
        f"token_responses: seed {seed}, {executions} executions in {budget:.0f} s, "
        f"{tokens} tokens accepted, {refused} refused, {len(failures)} failures"
    )
    for f in failures:
        print("  FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``verify``: check a token as a service would (``adk_token_exchange.server``), print the verdict.

The token is read from the argument or, with ``-``, from stdin (an argument
shows in ``ps`` and in shell history). Output is the verdict and the claims,
never the token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import InvalidTokenError
from ._common import EXIT_OK, EXIT_TOKEN_ERROR

__all__ = ["cmd_verify"]


def _token(raw: str) -> str:
    return sys.stdin.read().strip() if raw == "-" else raw.strip()


def _verifier(args: argparse.Namespace) -> Any:
    from ..server import IapVerifier, IdTokenVerifier

    options: dict[str, Any] = {
        "emails": args.email or (),
        "domains": args.domain or (),
        "leeway": args.leeway,
        "jwks_url": args.jwks_url,
    }
    if args.iap:
        return IapVerifier(args.audience, **options)
    return IdTokenVerifier(
        args.audience, trusted_front=args.trusted_front, exact=args.exact, **options
    )


def _summary(claims: dict[str, Any], kind: str) -> str:
    who = claims.get("email") or claims.get("sub") or "an unnamed caller"
    left = claims.get("exp", 0) - time.time()
    when = f"expires in {left:.0f} s" if left >= 0 else f"expired {-left:.0f} s ago (within leeway)"
    return f"valid: {kind} for {claims.get('aud')!r} from {who} ({when})"


def cmd_verify(args: argparse.Namespace) -> int:
    verifier = _verifier(args)
    kind = "IAP assertion" if args.iap else "Google ID token"
    try:
        claims = verifier.verify(_token(args.token))
    except InvalidTokenError as refused:
        if args.json:
            print(json.dumps({"valid": False, "reason": refused.reason, "message": str(refused)}))
        else:
            print(f"refused ({refused.reason}): {refused}")
        return EXIT_TOKEN_ERROR
    if args.json:
        print(json.dumps({"valid": True, "kind": kind, "claims": claims}))
    else:
        print(_summary(claims, kind))
        print(json.dumps(claims, indent=2, sort_keys=True))
    return EXIT_OK

"""``id-token`` and ``access-token``: print a token the way gcloud's print commands do."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._request import CLOUD_PLATFORM
from ._common import EXIT_OK
from .explain import audience_for

if TYPE_CHECKING:
    from .._native import Credentials, Token

__all__ = ["cmd_access_token", "cmd_id_token", "credentials"]


def credentials(args: argparse.Namespace) -> Credentials:
    from .._native import Credentials

    if args.key:
        return Credentials.from_file(args.key, impersonate=args.impersonate)
    return Credentials.application_default(impersonate=args.impersonate)


def scopes_from(raw: Sequence[str] | None) -> list[str]:
    scopes = [s for item in raw or () for s in item.replace(",", " ").split()]
    return scopes or [CLOUD_PLATFORM]


def print_token(args: argparse.Namespace, token: Token, **extra: Any) -> int:
    if args.json:
        body = {"token": token.value, "kind": token.kind, "expires_at": token.expires_at}
        body.update(extra)
        print(json.dumps(body))
    else:
        print(token.value)
    return EXIT_OK


def cmd_id_token(args: argparse.Namespace) -> int:
    audience = audience_for(args.audience, exact=args.exact)
    token = credentials(args).id_token(audience)
    return print_token(args, token, audience=audience)


def cmd_access_token(args: argparse.Namespace) -> int:
    scopes = scopes_from(args.scopes)
    token = credentials(args).access_token(scopes)
    return print_token(args, token, scopes=scopes, quota_project_id=token.quota_project_id)

"""What every command shares: exit codes, the default scope, how errors and progress print."""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_OK",
    "EXIT_TOKEN_ERROR",
    "EXIT_USAGE",
    "error_dict",
    "progress",
]

EXIT_OK = 0
EXIT_TOKEN_ERROR = 1
EXIT_USAGE = 2


def error_dict(error: BaseException) -> dict[str, str]:
    """An error for ``--json`` output: its class name and message (never a secret)."""
    return {"type": type(error).__name__, "message": str(error)}


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays the answer."""
    print(message, file=sys.stderr, flush=True)

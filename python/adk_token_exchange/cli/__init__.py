"""The ``adk-token-exchange`` command: tokens for curl, a credential doctor, the demo.

``id-token`` and ``access-token`` print a token the way ``gcloud auth
print-identity-token`` does, but through the same Rust core and credential
chain an agent uses. ``doctor`` explains which credential Application Default
Credentials found, what the minted token says about itself, and, with
``--probe``, why a service accepts or rejects it: the questions behind
google/adk-python#4458. ``verify`` checks a token as a service would
(:mod:`adk_token_exchange.server`) and prints the verdict and the claims.
``demo`` runs a real ADK agent against a local, Cloud-Run-like MCP server,
first with ADK's own exchanger, then with ours.

Exit codes: 0 ok, 1 token or credential error (or a refused token), 2 usage.
Output never contains a token (except the one ``id-token``/``access-token``
were asked to print), a
private key, a refresh token or a client secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from ..errors import TokenExchangeError
from ._common import EXIT_OK, EXIT_TOKEN_ERROR, EXIT_USAGE, error_dict
from .doctor import cmd_doctor
from .parser import build_parser
from .tokens import cmd_access_token, cmd_id_token
from .verify import cmd_verify

__all__ = ["EXIT_OK", "EXIT_TOKEN_ERROR", "EXIT_USAGE", "main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    # ADK is imported only here: the other commands start without it.
    from ..testing.demo import run_demo

    return run_demo(verbose=args.verbose, out=sys.stdout)


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "id-token": cmd_id_token,
    "access-token": cmd_access_token,
    "doctor": cmd_doctor,
    "verify": cmd_verify,
    "demo": _cmd_demo,
}


def _configure_logging(verbose: bool) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # The Rust core logs through pyo3-log under "adk_token_exchange._native…".
    logger = logging.getLogger("adk_token_exchange")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.json = getattr(args, "json", False)
    _configure_logging(args.verbose)
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except TokenExchangeError as error:
        return _fail(args, error)
    except OSError as error:  # e.g. an unreadable --key file
        return _fail(args, error)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a bug: say so, without a traceback unless asked
        return _internal_error(args, error)
    except BaseException as error:  # pyo3's PanicException is a BaseException
        if type(error).__name__ != "PanicException":
            raise
        return _internal_error(args, error)


def _internal_error(args: argparse.Namespace, error: BaseException) -> int:
    if args.verbose:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    print(
        f"adk-token-exchange: internal error ({type(error).__name__}); please report it"
        " (rerun with -v for the traceback)",
        file=sys.stderr,
    )
    return EXIT_TOKEN_ERROR


def _fail(args: argparse.Namespace, error: BaseException) -> int:
    if args.json:
        print(json.dumps({"error": error_dict(error)}))
    else:
        print(f"adk-token-exchange: error: {error}", file=sys.stderr)
    return EXIT_TOKEN_ERROR

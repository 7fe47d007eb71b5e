"""``python -m adk_token_exchange``: the ``adk-token-exchange`` command."""

from adk_token_exchange.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

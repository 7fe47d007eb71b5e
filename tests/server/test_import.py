"""Importing the server side costs a service nothing it does not use."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_server_module_imports_neither_adk_nor_mcp_nor_starlette_nor_the_core() -> (
    None
):
    probe = (
        "import sys, adk_token_exchange.server\n"
        "heavy = ('google.adk', 'mcp', 'starlette', 'adk_token_exchange._native')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert out.strip() == "[]"

"""``adk-token-exchange demo``: the #4458 story end to end, as a user first sees it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_shows_stock_exchanger_401_and_ours_200(tmp_path: Path) -> None:
    # The demo starts its own emulator and protected MCP server and points its
    # process at them. A developer's key variable must not leak in: this one
    # points nowhere, which would fail any credential lookup that read it.
    developer_key = tmp_path / "developer-key.json"
    result = subprocess.run(
        [sys.executable, "-m", "adk_token_exchange", "demo"],
        env={**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": str(developer_key)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    stock, ours = out.split("\n1. ", 1)[1].split("\nResult:", 1)[0].split("\n2. ", 1)
    assert "401 Unauthorized" in stock and "200 OK" not in stock
    assert "access token" in stock
    # Not a bare "401": the servers' random ports (127.0.0.1:40129) may contain it.
    assert "200 OK" in ours and "401 Unauthorized" not in ours
    assert "ID token, aud=http://127.0.0.1:" in ours
    assert "Tool said: Hello, developer! (called by mcp-caller@demo-project." in ours
    assert "Traceback" not in out + result.stderr

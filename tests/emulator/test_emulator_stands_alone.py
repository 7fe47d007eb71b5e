"""The emulator is the other side of the wire: it never needs this package's Rust core,
and it binds the loopback address it is asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import requests
from adk_token_exchange.testing import GoogleEmulator
from support.peers import needs_ipv6_loopback


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_testing_and_run_an_emulator_without_loading_the_native_core() -> None:
    result = _python(
        """
        import sys
        import adk_token_exchange.testing as testing

        with testing.GoogleEmulator() as google:
            google.service_account_info()
        loaded = sorted(m for m in sys.modules if m.startswith("adk_token_exchange._native"))
        print("native:", loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "native: []" in result.stdout, result.stdout


@needs_ipv6_loopback
def test_emulator_serves_on_ipv6_loopback_when_asked() -> None:
    with GoogleEmulator(host="::1") as google, requests.Session() as http:
        assert google.url == f"http://[::1]:{google.port}"
        assert google.metadata_host == f"[::1]:{google.port}"

        keys = http.get(google.jwks_url, timeout=10).json()["keys"]

        assert [k["kid"] for k in keys] == list(google.public_keys())
        assert google.count("certs") == 1

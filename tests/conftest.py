"""Every test runs cut off from real Google credentials, with a local Google at hand."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

# google-auth reads this once, at import. Its default (3 tries with backoff) makes
# every refused metadata probe cost ~3 s, and ADK probes ADC on each MCP connection.
os.environ["GCE_METADATA_DETECT_RETRIES"] = "1"

import adk_token_exchange
import pytest
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer, ProtectedRestServer


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CLOSED_PORT = _closed_loopback_port()
CLOSED_METADATA_HOST = f"127.0.0.1:{_CLOSED_PORT}"


@pytest.fixture(autouse=True)
def isolated_from_google(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """No ADC file, key variable, gcloud, metadata server or IAM endpoint of the machine
    is reachable, and no token or resolved credential outlives the test."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.mktemp("gcloud")))
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "CLOUDSDK_CORE_PROJECT",
        "GCE_METADATA_ROOT",
        "NO_GCE_CHECK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GCE_METADATA_HOST", CLOSED_METADATA_HOST)
    monkeypatch.setenv("GCE_METADATA_IP", CLOSED_METADATA_HOST)
    # Explicit impersonation calls IAM Credentials here; a test that wants it
    # points this at its emulator.
    monkeypatch.setenv("ADK_TOKEN_EXCHANGE_IAM_ENDPOINT", f"http://{CLOSED_METADATA_HOST}")
    # google-auth copies GCE_METADATA_HOST at import time.
    metadata_module = sys.modules.get("google.auth.compute_engine._metadata")
    if metadata_module is not None:
        monkeypatch.setattr(metadata_module, "_GCE_METADATA_HOST", CLOSED_METADATA_HOST)
    path = os.environ.get("PATH", "").split(os.pathsep)
    without_gcloud = [d for d in path if d and not (Path(d) / "gcloud").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(without_gcloud))
    adk_token_exchange.clear_cache()
    yield
    # Emulators reuse service account names and may reuse ports: a token
    # cached for one test must never serve the next.
    adk_token_exchange.clear_cache()


@pytest.fixture
def emulator() -> Iterator[GoogleEmulator]:
    """A fresh local Google (token, metadata, IAM Credentials, certs endpoints)."""
    with GoogleEmulator() as google:
        yield google


@pytest.fixture
def protected_mcp(emulator: GoogleEmulator) -> Iterator[ProtectedMcpServer]:
    """An MCP server that, like Cloud Run, takes only ID tokens for its own URL."""
    with ProtectedMcpServer(emulator) as server:
        yield server


@pytest.fixture
def protected_rest(emulator: GoogleEmulator) -> Iterator[ProtectedRestServer]:
    """An OpenAPI REST service that, like Google APIs, takes only access tokens."""
    with ProtectedRestServer(emulator) as server:
        yield server

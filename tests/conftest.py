"""Every test runs cut off from real Google credentials, with a local Google at hand.

The isolation is :mod:`adk_token_exchange.testing.isolation`, the same
definition ``scripts/isolated`` applies to whole commands (scripts/test runs
pytest under it too); here it is applied to each test with ``monkeypatch``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

# google-auth reads this once, at import. Its default (3 tries with backoff) makes
# every refused metadata probe cost ~3 s, and ADK probes ADC on each MCP connection.
os.environ["GCE_METADATA_DETECT_RETRIES"] = "1"

import pytest
from adk_token_exchange import _native
from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer, ProtectedRestServer
from adk_token_exchange.testing.isolation import (
    UNSET_VARIABLES,
    ClosedPort,
    gcloud_stand_in,
    isolated_environ,
)


@pytest.fixture(scope="session")
def closed_metadata_port() -> Iterator[ClosedPort]:
    """The loopback port the metadata variables point at: bound, never listening."""
    with ClosedPort() as port:
        yield port


@pytest.fixture(scope="session")
def gcloud_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory whose ``gcloud`` fails like a missing one."""
    return str(gcloud_stand_in(tmp_path_factory.mktemp("bin")))


@pytest.fixture(autouse=True)
def isolated_from_google(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    closed_metadata_port: ClosedPort,
    gcloud_bin: str,
) -> Iterator[None]:
    """No ADC file, key variable, gcloud, metadata server or IAM endpoint of the machine
    is reachable, and Application Default Credentials are discovered afresh.

    Tokens are not cleared between tests: the suite runs as one long-lived
    process would, with many credentials side by side, so a token that leaked
    from one credential to another would show. Every emulator has URLs of its
    own (see ``LoopbackHTTPServer``), so its credentials are new identities.
    """
    env = isolated_environ(
        os.environ,
        home=tmp_path_factory.mktemp("home"),
        cloudsdk_config=tmp_path_factory.mktemp("gcloud"),
        closed_authority=closed_metadata_port.authority,
        bin_dir=gcloud_bin,
    )
    for name in UNSET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    # google-auth copies GCE_METADATA_HOST at import time.
    metadata_module = sys.modules.get("google.auth.compute_engine._metadata")
    if metadata_module is not None:
        monkeypatch.setattr(metadata_module, "_GCE_METADATA_HOST", closed_metadata_port.authority)
    # The environment ADC reads changed; a process's would not.
    _native.reset_application_default()
    yield
    _native.reset_application_default()


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

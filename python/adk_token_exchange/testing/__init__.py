"""Test Google ADK agents offline: a local Google and Cloud-Run-like protected services.

:class:`GoogleEmulator` serves Google's OAuth token endpoint, metadata server,
IAM Credentials API, signing certificates and STS (Workload Identity
Federation, with a GitHub-Actions-like OIDC issuer and an EC2-like IMDSv2 to
federate from) on loopback, speaking the documented protocols, so real
clients (google-auth, gcloud's ADC files, this package) work against it
through the files and variables users already have: ``token_uri`` in a key
file, ``GCE_METADATA_HOST``, an impersonation URL, an ``external_account``
file's ``token_url`` and ``credential_source``.
:class:`ProtectedMcpServer` checks ID tokens as Cloud Run does;
:class:`ProtectedRestServer` checks access tokens as Google APIs do.

Example::

    from adk_token_exchange.testing import GoogleEmulator, ProtectedMcpServer

    with GoogleEmulator() as google, ProtectedMcpServer(google) as mcp_server:
        key = google.service_account_info()
        ...  # an agent with McpToolset(url=mcp_server.url, auth_credential=...)

Beside them, imported on their own: :mod:`.isolation` (cut a process off
from real Google credentials; ``scripts/isolated`` in the repository),
:mod:`.scripted_llm` (a model for offline ADK agents; imports ADK) and
:mod:`.demo` (``adk-token-exchange demo``).

This package never uses the package's Rust core; it needs PyJWT,
cryptography, uvicorn and the ``mcp`` SDK (1.x or 2.x):
``pip install "adk-token-exchange[testing]"``.
"""

from ._mcp_compat import open_mcp_session
from .emulator import (
    CLOUD_PLATFORM_SCOPE,
    GCLOUD_ADC_CLIENT_ID,
    GCLOUD_CLIENT_ID,
    GOOGLE_ISSUER,
    AccessTokenInfo,
    EndpointKind,
    GoogleEmulator,
    InvalidIdToken,
    RequestRecord,
)
from .protected import AuthDecision, ProtectedMcpServer, ProtectedRestServer

__all__ = [
    "CLOUD_PLATFORM_SCOPE",
    "GCLOUD_ADC_CLIENT_ID",
    "GCLOUD_CLIENT_ID",
    "GOOGLE_ISSUER",
    "AccessTokenInfo",
    "AuthDecision",
    "EndpointKind",
    "GoogleEmulator",
    "InvalidIdToken",
    "ProtectedMcpServer",
    "ProtectedRestServer",
    "RequestRecord",
    "open_mcp_session",
]

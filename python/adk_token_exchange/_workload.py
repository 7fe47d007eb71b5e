"""What this workload is that changes how tokens reach a service: Agent Identity, and
ADK's mTLS transport replacing an ``httpx_client_factory``. Pure checks; no ADK import.

Both are read the way their owners read them: Agent Identity from
``GOOGLE_API_CERTIFICATE_CONFIG`` or the workload certificates (google-auth,
and the core's ``src/sources/agent_identity.rs``); the mTLS override from
ADK 2.x's ``MCPSessionManager._get_mtls_transport`` (``GOOGLE_API_USE_CLIENT_CERTIFICATE``
unset or ``true``) and google-auth's client-certificate discovery.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Final

__all__ = [
    "CERTIFICATE_CONFIG_VAR",
    "INVOKER_VAR",
    "USE_CLIENT_CERTIFICATE_VAR",
    "WORKLOAD_CERTIFICATES",
    "adk_mtls_override",
    "agent_identity",
    "invoker_service_account",
    "warn_if_adk_replaces_factory",
]

INVOKER_VAR: Final = "ADK_TOKEN_EXCHANGE_INVOKER_SERVICE_ACCOUNT"
CERTIFICATE_CONFIG_VAR: Final = "GOOGLE_API_CERTIFICATE_CONFIG"
USE_CLIENT_CERTIFICATE_VAR: Final = "GOOGLE_API_USE_CLIENT_CERTIFICATE"
WORKLOAD_CERTIFICATES: Final = "/var/run/secrets/workload-spiffe-credentials/certificates.pem"

logger = logging.getLogger("adk_token_exchange")
_warned = threading.Event()


def agent_identity() -> str | None:
    """Why this workload has an Agent Identity (Agent Engine, Cloud Run), or ``None``."""
    if os.environ.get(CERTIFICATE_CONFIG_VAR, "").strip():
        return f"{CERTIFICATE_CONFIG_VAR} is set"
    try:
        if os.path.getsize(WORKLOAD_CERTIFICATES) > 0:
            return f"workload certificates at {WORKLOAD_CERTIFICATES}"
    except OSError:
        pass
    return None


def invoker_service_account() -> str | None:
    """The service account ID tokens are minted as on Agent Identity, if configured."""
    return os.environ.get(INVOKER_VAR, "").strip() or None


def adk_mtls_override() -> str | None:
    """Why ADK would swap an MCP ``httpx_client_factory`` for its own mTLS transport.

    ADK 2.x does so when ``GOOGLE_API_USE_CLIENT_CERTIFICATE`` is unset or
    ``true`` and google-auth finds a client certificate (Agent Identity's
    workload certificate, a gcloud ``certificate_config.json``); the factory,
    and the auth it carries, is then never called. ``None`` when it would not.
    """
    if os.environ.get(USE_CLIENT_CERTIFICATE_VAR, "true").lower() != "true":
        return None
    manager = sys.modules.get("google.adk.tools.mcp_tool.mcp_session_manager")
    if manager is not None and not hasattr(
        getattr(manager, "MCPSessionManager", None), "_get_mtls_transport"
    ):
        return None  # an ADK without the override (1.x)
    try:
        from google.auth.transport import _mtls_helper, mtls
    except ImportError:
        return None
    try:
        use = bool(_mtls_helper.check_use_client_cert())  # type: ignore[no-untyped-call]
        has_cert = bool(mtls.has_default_client_cert_source())  # type: ignore[no-untyped-call]
    except Exception:  # google-auth's discovery failing is not ours to report
        return None
    if not (use and has_cert):
        return None
    where = agent_identity() or "a client certificate google-auth finds"
    return (
        f"{where} and {USE_CLIENT_CERTIFICATE_VAR} is "
        f"{os.environ.get(USE_CLIENT_CERTIFICATE_VAR) or 'unset'}"
    )


def warn_if_adk_replaces_factory() -> bool:
    """Warn once per process if ADK would drop an ``httpx_client_factory``; True if so."""
    why = adk_mtls_override()
    if why is None:
        return False
    if not _warned.is_set():
        _warned.set()
        logger.warning(
            "ADK will not use this httpx_client_factory: with %s, ADK's MCPSessionManager"
            " replaces it with its own mTLS transport, and the MCP server gets no token"
            " (401). Set %s=false in this workload (the mTLS channel is for Google APIs;"
            " a Cloud Run or IAP service does not need it), or use"
            " auth_credential=id_token_credential(url) instead.",
            why,
            USE_CLIENT_CERTIFICATE_VAR,
        )
    return True

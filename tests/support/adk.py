"""ADK setups the shim's and the end-to-end tests share (imports ADK)."""

from __future__ import annotations

from typing import Any

from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows
from google.adk.auth.auth_credential import AuthCredential, AuthCredentialTypes, ServiceAccount
from google.adk.auth.auth_tool import AuthConfig
from google.adk.auth.credential_manager import CredentialManager

__all__ = [
    "ADK_HAS_ID_TOKEN_FIELDS",
    "ISSUE_4458_SCHEME",
    "SA",
    "extra_or_field",
    "manager_exchanger",
]

SA = AuthCredentialTypes.SERVICE_ACCOUNT
ADK_HAS_ID_TOKEN_FIELDS = "use_id_token" in ServiceAccount.model_fields
"""ADK >= 1.26 models ``use_id_token``/``audience``; before, they arrive as pydantic extras."""

ISSUE_4458_SCHEME = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="https://oauth2.googleapis.com/token", scopes={}
        )
    )
)
"""The auth scheme of google/adk-python#4458: the client-credentials flow makes ADK
exchange the raw service-account credential; ``tokenUrl`` is never called."""


def manager_exchanger(credential: AuthCredential | None = None) -> Any:
    """The exchanger a fresh ``CredentialManager`` would use for a service account."""
    manager = CredentialManager(
        AuthConfig(auth_scheme=ISSUE_4458_SCHEME, raw_auth_credential=credential)
    )
    return manager._exchanger_registry.get_exchanger(SA)


def extra_or_field(sa: ServiceAccount, name: str) -> Any:
    """A ``ServiceAccount`` value whether this ADK models it or keeps it as an extra."""
    if name in type(sa).model_fields:
        return getattr(sa, name)
    return (sa.model_extra or {}).get(name)

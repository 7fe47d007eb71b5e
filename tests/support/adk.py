"""ADK setups the shim's and the end-to-end tests share (imports ADK)."""

from __future__ import annotations

from fastapi.openapi.models import OAuth2, OAuthFlowClientCredentials, OAuthFlows

__all__ = ["ISSUE_4458_SCHEME"]

ISSUE_4458_SCHEME = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl="https://oauth2.googleapis.com/token", scopes={}
        )
    )
)
"""The auth scheme of google/adk-python#4458: the client-credentials flow makes ADK
exchange the raw service-account credential; ``tokenUrl`` is never called."""

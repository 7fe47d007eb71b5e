"""The shim's tests start and end with ADK as ADK ships it."""

from __future__ import annotations

from collections.abc import Iterator

import adk_token_exchange
import pytest


@pytest.fixture
def adk_uninstalled() -> Iterator[None]:
    """ADK's own exchangers in place before and after the test."""
    adk_token_exchange.uninstall()
    yield
    adk_token_exchange.uninstall()

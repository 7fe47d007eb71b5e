"""Every test of the native core starts from a clean cache and known network bounds.

A module or test that needs other bounds says so with
``@pytest.mark.core_settings(request_timeout=1.0)`` (or ``pytestmark``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.core import clean_core


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "core_settings(**bounds): _native.configure() bounds for this test"
    )


@pytest.fixture(autouse=True)
def core_with_known_bounds(request: pytest.FixtureRequest) -> Iterator[None]:
    """``clean_core`` with the bounds of the nearest ``core_settings`` mark."""
    marker = request.node.get_closest_marker("core_settings")
    with clean_core(**(marker.kwargs if marker else {})):
        yield

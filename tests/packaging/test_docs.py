"""What the docs promise points at something real: every test docs/reliability.md
names exists, so the index cannot silently go stale when a test is renamed."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO, TESTS

RELIABILITY = REPO / "docs" / "reliability.md"


@pytest.mark.skipif(not RELIABILITY.exists(), reason="no docs/ beside tests/ (installed wheel)")
def test_every_test_the_reliability_index_names_exists() -> None:
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", RELIABILITY.read_text()))
    defined = {
        match
        for path in TESTS.rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)\(", path.read_text(), re.M)
    }

    assert named, "the index names no test"
    assert sorted(named - defined) == []


OUTBOUND = REPO / "docs" / "outbound.md"


@pytest.mark.skipif(not OUTBOUND.exists(), reason="no docs/ beside tests/ (installed wheel)")
def test_every_test_the_outbound_roads_page_names_exists() -> None:
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", OUTBOUND.read_text()))
    defined = {
        match
        for path in TESTS.rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)\(", path.read_text(), re.M)
    }

    assert named, "the page names no test"
    assert sorted(named - defined) == []

"""What the docs promise points at something real: every test docs/reliability.md
and docs/outbound.md name exists, so they cannot silently go stale when a test is
renamed."""

from __future__ import annotations

import re

import pytest
from support.paths import REPO, TESTS

DOCS = REPO / "docs"


@pytest.mark.skipif(not DOCS.exists(), reason="no docs/ beside tests/ (installed wheel)")
@pytest.mark.parametrize("page", ["reliability.md", "outbound.md"])
def test_every_test_a_docs_page_names_exists(page: str) -> None:
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b(?!\.py)", (DOCS / page).read_text()))
    defined = {
        match
        for path in TESTS.rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)\(", path.read_text(), re.M)
    }

    assert named, f"{page} names no test"
    assert sorted(named - defined) == []

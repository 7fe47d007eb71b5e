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


ARCHITECTURE = REPO / "docs" / "architecture.md"
SOURCES = REPO / "src"


@pytest.mark.skipif(not SOURCES.exists(), reason="no src/ beside tests/ (installed wheel)")
def test_the_architecture_map_names_every_module_of_the_tree() -> None:
    """docs/architecture.md is the map a maintainer reads first: a module it does not
    name is a room nobody was told about."""
    text = ARCHITECTURE.read_text()
    rust = {p.relative_to(SOURCES).as_posix() for p in SOURCES.rglob("*.rs")}
    package = REPO / "python" / "adk_token_exchange"
    python = {
        p.name
        for p in package.iterdir()
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
        and p.name not in ("__main__.py",)
    }
    # A file is named by its path below src/ (`sources/metadata.rs`) or, inside a
    # directory the map lists, by its own name.
    missing_rust = sorted(
        path for path in rust if path not in text and path.rsplit("/", 1)[-1] not in text
    )
    missing_python = sorted(name for name in python if name not in text)
    assert missing_rust == [] and missing_python == []


@pytest.mark.skipif(not (REPO / "README.md").exists(), reason="no README beside tests/")
def test_the_readme_opens_with_the_demo_and_test_commands_and_they_exist() -> None:
    first_block = (REPO / "README.md").read_text().split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:]]
    commands = [c for c in commands if c]
    assert commands == ["scripts/demo", "scripts/test"]
    for command in commands:
        assert (REPO / command).stat().st_mode & 0o111, f"{command} is not executable"

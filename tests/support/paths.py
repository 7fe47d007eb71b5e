"""Where things are: the repository, the tests, the package sources."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PACKAGE", "REPO", "TESTS"]

TESTS = Path(__file__).resolve().parent.parent
"""``tests/``."""
REPO = TESTS.parent
"""The repository root (in scripts/check-wheel: a work directory with only tests/ and
pyproject.toml)."""
PACKAGE = REPO / "python" / "adk_token_exchange"
"""The package's sources (absent where the installed wheel is tested)."""

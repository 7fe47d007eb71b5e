"""Packaging facts that need no build: one version, abi3, the files a wheel must carry.

The wheel itself is built, installed into a fresh venv without Rust and run
end to end by ``scripts/check-wheel`` (too slow for pytest); it also checks
what only an installed wheel can show (its platform tag, the distribution's
version, the console script).
"""

from __future__ import annotations

import re
from typing import Any

import adk_token_exchange
import pytest
from adk_token_exchange import _native
from support.paths import PACKAGE, REPO

tomllib = pytest.importorskip("tomllib")

ROOT = REPO


def _toml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / name).read_text())
    return data


def test_version_lives_in_cargo_toml_only() -> None:
    cargo_version = _toml("Cargo.toml")["package"]["version"]
    project = _toml("pyproject.toml")["project"]

    assert "version" not in project
    assert "version" in project["dynamic"]
    assert adk_token_exchange.__version__ == _native.__version__ == cargo_version
    # No hand-written copy anywhere in the Python sources.
    copies = [
        path
        for path in PACKAGE.rglob("*.py")
        if re.search(r"__version__\s*(:\s*str\s*)?=\s*['\"]", path.read_text())
    ]
    assert copies == []


def test_changelog_has_an_entry_for_the_version() -> None:
    version = _toml("Cargo.toml")["package"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()

    assert re.search(rf"^## \[{re.escape(version)}\]", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no '## [{version}]' section"
    )


def test_one_abi3_wheel_serves_every_supported_python() -> None:
    pyo3 = _toml("Cargo.toml")["dependencies"]["pyo3"]
    requires = _toml("pyproject.toml")["project"]["requires-python"]

    [abi3] = [f for f in pyo3["features"] if f.startswith("abi3-py")]
    minimum = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert minimum is not None, requires
    # abi3-py310 <-> requires-python >= 3.10: the wheel's tag is the floor.
    assert abi3 == f"abi3-py3{minimum.group(1)}"
    # maturin sets extension-module itself; with it, `cargo test` cannot link.
    assert "extension-module" not in pyo3["features"]


def test_wheel_layout_is_configured_as_designed() -> None:
    maturin = _toml("pyproject.toml")["tool"]["maturin"]
    lib = _toml("Cargo.toml")["lib"]

    assert maturin["python-source"] == "python"
    assert maturin["module-name"] == "adk_token_exchange._native"
    assert lib["name"] == "_native"
    assert "cdylib" in lib["crate-type"]
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_native.pyi").is_file()

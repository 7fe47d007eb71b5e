"""The public API is typed for users: their code passes ``mypy --strict``, mistakes don't.

mypy finds the package as a user's mypy does, as an installed distribution
(here through the venv's ``.pth``), which it analyses only because of
``py.typed``; the Rust module's types come from ``_native.pyi``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

ROOT = REPO
USER_SCRIPT = Path(__file__).resolve().parent / "typing_user_script.py"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mypy") is None,
        reason="mypy is not installed in this venv (only .venv has it)",
    ),
    pytest.mark.timeout(300),
]

MISTAKES_SCRIPT = Path(__file__).resolve().parent / "typing_mistakes_script.py"


def _expected_errors() -> dict[int, str]:
    """Line number -> error code, from the ``# expect: <code>`` markers."""
    expected = {}
    for number, line in enumerate(MISTAKES_SCRIPT.read_text().splitlines(), start=1):
        marker = re.search(r"  # expect: ([a-z-]+)$", line)
        if marker:
            expected[number] = f"[{marker.group(1)}]"
    return expected


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    # From the repo root, so pyproject's [tool.mypy] applies and the cache is
    # the project's own (.mypy_cache, warm after `make lint`).
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-color-output", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def test_user_script_with_public_api_passes_mypy_strict_and_mistakes_are_reported() -> None:
    expected = _expected_errors()

    result = _mypy(USER_SCRIPT, MISTAKES_SCRIPT)

    lines = result.stdout.splitlines()
    user_script = f"{USER_SCRIPT.relative_to(ROOT)}:"
    assert [line for line in lines if line.startswith(user_script)] == [], result.stdout
    mistakes = f"{MISTAKES_SCRIPT.relative_to(ROOT)}:"
    errors_at = {
        int(line.split(":")[1]): line
        for line in lines
        if line.startswith(mistakes) and ": error: " in line
    }
    assert set(errors_at) == set(expected), result.stdout + result.stderr
    for line_number, code in expected.items():
        assert errors_at[line_number].endswith(code), errors_at[line_number]
    # A precise signature, not Any (which an untyped package would give).
    [revealed] = [line for line in lines if ": note: Revealed type is" in line]
    assert "(audience: str, *" in revealed and revealed.endswith('AuthCredential"'), revealed
    assert result.returncode == 1  # errors only in the wrong script


def test_package_ships_py_typed_and_native_stub() -> None:
    package = ROOT / "python" / "adk_token_exchange"

    assert (package / "py.typed").is_file()
    assert (package / "_native.pyi").is_file()

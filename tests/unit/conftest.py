"""Fixtures of the pure unit tests: the shared benchmark data and one warm math verifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soar_orl.tasks.verify import MathVerifier, VerifyParams


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data beside the repository root (/work/shared/data here, and in CI)."""
    path = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.fail(f"shared benchmark data not found at {path}")
    return path


@pytest.fixture(scope="session")
def verifier() -> Iterator[MathVerifier]:
    """One worker for the whole session: starting it costs about half a second."""
    with MathVerifier(VerifyParams(timeout_s=10.0)) as shared:
        yield shared

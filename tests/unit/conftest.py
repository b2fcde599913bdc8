"""Fixtures of the pure unit tests: the benchmark files in data/ and one warm math verifier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from soar_orl.tasks.verify import MathVerifier, VerifyParams


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's data/ folder: the benchmark files that ship with it (data/README.md)."""
    return Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="session")
def verifier() -> Iterator[MathVerifier]:
    """One worker for the whole session: starting it costs about half a second."""
    with MathVerifier(VerifyParams(timeout_s=10.0)) as shared:
        yield shared

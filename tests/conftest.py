"""Shared fixtures: the real-data directory and small synthetic exposures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def data_path(*parts: str) -> Path:
    """Path below ../shared/data, skipping the test with a reason when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} is absent")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)

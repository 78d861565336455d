"""Shared fixtures: the data folder beside the checkout (``../shared/data``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bitfold  # noqa: F401  (sets MKL_CBWR before torch runs any kernel)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = SHARED_DATA / "mnist"
    if not path.is_dir():
        pytest.skip(f"{path} not present (CI has ../shared beside the checkout)")
    return path

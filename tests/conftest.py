"""Shared fixtures: the data folder beside the checkout (``../shared/data``)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import bitfold  # noqa: F401  (sets MKL_CBWR before torch runs any kernel)

# A shell runs a background job (`make test &`, nohup, CI runners) with SIGINT ignored, and
# an ignored signal stays ignored in every child: the tests that interrupt a stage with
# SIGINT would then wait on a child that never sees it. Take SIGINT back, for the children too.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = SHARED_DATA / "mnist"
    if not path.is_dir():
        pytest.skip(f"{path} not present (CI has ../shared beside the checkout)")
    return path

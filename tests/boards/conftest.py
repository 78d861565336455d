"""Board tests elaborate with Amaranth's builtin Yosys; toolchain builds are marked slow."""

from __future__ import annotations

import os

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def pytest_configure(config) -> None:
    # constructor-refusal tests leave half-built components behind
    config.addinivalue_line("filterwarnings", "ignore:.*created but never used")

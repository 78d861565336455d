"""Hardware tests emit Verilog with Amaranth's builtin Yosys (reproducible bytes)."""

from __future__ import annotations

import os

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def pytest_configure(config) -> None:
    # constructor-refusal tests leave half-built components behind; amaranth warns when
    # they are garbage collected, at an arbitrary later test
    config.addinivalue_line("filterwarnings", "ignore:.*created but never used")

"""Hardware tests emit Verilog with Amaranth's builtin Yosys (reproducible bytes)."""

from __future__ import annotations

import os

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

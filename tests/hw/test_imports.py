"""The hardware generator never imports torch (docs/architecture.md, section 2)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_generator_does_not_import_torch() -> None:
    code = ("import sys; import bitfold.hw.generate, bitfold.hw.top, bitfold.hw.simulate, "
            "bitfold.hw.plan, bitfold.hw.mvu, bitfold.hw.swu, bitfold.hw.pool, bitfold.hw.score, "
            "bitfold.hw.streams, bitfold.hw.names; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_plan_is_plain_data_without_amaranth() -> None:
    code = ("import sys; import bitfold.hw.plan, bitfold.hw.stages; "
            "print(any(m.split('.')[0] == 'amaranth' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

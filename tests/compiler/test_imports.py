"""The compiler never imports torch, so hardware work needs no trainer (docs/architecture.md, 2)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_compiler_does_not_import_torch() -> None:
    code = ("import sys; import bitfold.compiler, bitfold.compiler.ir, bitfold.compiler.passes, "
            "bitfold.compiler.golden, bitfold.compiler.packed, bitfold.compiler.serialize, "
            "bitfold.compiler.folding, bitfold.compiler.cost, bitfold.compiler.evaluate; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

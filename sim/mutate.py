"""Mutations of generated Verilog, to show that the testbench catches a wrong design.

:func:`flip_weight_bit` copies ``BUILD/rtl`` and flips one bit of one MVU's
weight memory in the core (where the memory is initialized), and records the
mutated core's SHA-256 in the copy's manifest, so that ``simulate`` takes the copy
for a whole generated folder and its testbench has to find the wrong bit.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = ["flip_weight_bit"]


def flip_weight_bit(rtl: str | Path, out: str | Path, stage: str, address: int = 0,
                    bit: int = 0) -> Path:
    """Copy ``rtl`` to ``out`` with bit ``bit`` of word ``address`` of ``stage``'s weights flipped.

    ``stage`` is an MVU stage name from ``manifest.json`` (e.g. ``mvu_fc0``).
    Returns ``out``.
    """
    rtl, out = Path(rtl), Path(out)
    from bitfold.hw.generate import check_rtl

    manifest = check_rtl(rtl)
    mvus = [s["name"] for s in manifest["stages"] if s["kind"] == "mvu"]
    if stage not in mvus:
        raise ValueError(f"no MVU stage {stage!r}; the design has {', '.join(mvus)}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(rtl, out)
    core = out / f"{manifest['core']}.v"
    text = core.read_text()
    head = f"module \\{manifest['core']}.{stage} ("
    start = text.find(head)
    if start < 0:
        raise ValueError(f"{core}: no module for stage {stage!r}")
    end = text.find("\nendmodule", start)
    pat = re.compile(rf"(\n\s*weights\[{address}\] = (\d+)'h)([0-9a-fA-F]+);")
    m = pat.search(text, start, end)
    if m is None:
        raise ValueError(f"{core}: stage {stage!r} has no initialized weights word {address}")
    width = int(m.group(2))
    if not 0 <= bit < width:
        raise ValueError(f"bit must lie in 0..{width - 1}, not {bit}")
    word = int(m.group(3), 16) ^ (1 << bit)
    digits = len(m.group(3))
    core.write_text(text[:m.start(3)] + f"{word:0{digits}x}" + text[m.end(3):])
    from bitfold.artifacts import sha256_file, write_json

    manifest["sha256"][core.name] = sha256_file(core)
    write_json(out / "manifest.json", manifest)
    return out

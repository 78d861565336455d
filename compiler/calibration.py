"""Coefficients of the cost model (``compiler/cost.py``), per FPGA family and component kind.

``PRIOR`` holds first-principles values (a LUT4 per sum bit, a logic cell per
flip-flop nextpnr cannot pair with a LUT, ...): the fit's starting point and
the fallback for a kind no calibration build had. ``COEFFICIENTS`` (and ``FIT``,
how they were fitted) are read from ``calibration.json`` beside this file,
which ``benchmarks/cost_fit.py fit`` writes from the calibration builds (its
``report`` says, per family and kind, how many components each fit had); do not
edit it by hand, re-run the fit (BENCHMARKS.md, "The cost model against real
builds").
"""

from __future__ import annotations

import json
from pathlib import Path

_LUTS = {"one": 10.0, "cnt": 2.0, "tree_logic": 1.0, "tree_carry": 1.0, "post": 1.0,
         "gates": 1.0, "mux": 1.0, "gather": 1.0, "gather_index": 0.7, "gearbox": 0.35, "lutrom": 1.0,
         "ram_bits": 1.0, "lutram_mux": 0.5, "bram_port": 1.0, "extra": 1.0}
_FFS = {"one": 2.0, "ff_pack": 1.0, "ff_copy": 1.0, "ff_ctrl": 1.0, "bram_port": 1.0}
_FAMILY = {
    # iCE40: a logic cell is a LUT4 + carry + FF; a flip-flop no single LUT drives takes a
    # cell of its own, and a carry chain a feed-in cell
    "ice40": {"chains": 0.5, "rom_luts": 1.0, "rom_mux": 0.5, "lutram": 0.0, "ff_pack": 0.1,
              "ff_copy": 1.0, "ff_ctrl": 0.5},
    # ECP5: TRELLIS_COMB counts LUT4s, two per carry cell, four more per carry chain and six
    # per distributed-RAM cell; flip-flops sit beside the LUTs
    "ecp5": {"chains": 4.0, "rom_luts": 1.0, "rom_mux": 0.1, "lutram": 6.0, "ff_pack": 0.0,
             "ff_copy": 0.0, "ff_ctrl": 0.0},
}
_KINDS = ("mvu", "swu", "pool", "score", "skid", "conv", "fifo", "top", "stream")
_ONE = {"top": 250.0, "score": 60.0, "skid": 2.0, "conv": 4.0}

PRIOR = {
    family: {kind: {"luts": {**_LUTS, **extra, "one": _ONE.get(kind, _LUTS["one"])},
                    "ffs": dict(_FFS)}
             for kind in _KINDS}
    for family, extra in _FAMILY.items()
}

DATA = Path(__file__).with_name("calibration.json")
_DOC = json.loads(DATA.read_text())
FIT: dict = _DOC["fit"]
COEFFICIENTS: dict[str, dict[str, dict[str, dict[str, float]]]] = _DOC["coefficients"]

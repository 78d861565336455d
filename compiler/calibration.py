"""Coefficients of the cost model (``compiler/cost.py``), per FPGA family and component kind.

``PRIOR`` holds first-principles values (a LUT4 per sum bit, a logic cell per
flip-flop nextpnr cannot pair with a LUT, ...): the fit's starting point and
the fallback for a kind no calibration build had. ``COEFFICIENTS`` is written
by ``benchmarks/cost_fit.py fit`` from the calibration builds; do not edit it
by hand, re-run the fit (BENCHMARKS.md, "The cost model against real builds").
"""

from __future__ import annotations

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
_KINDS = ("mvu", "swu", "pool", "score", "skid", "conv", "fifo", "top")
_ONE = {"top": 250.0, "score": 60.0, "skid": 2.0, "conv": 4.0}

PRIOR = {
    family: {kind: {"luts": {**_LUTS, **extra, "one": _ONE.get(kind, _LUTS["one"])},
                    "ffs": dict(_FFS)}
             for kind in _KINDS}
    for family, extra in _FAMILY.items()
}

# Written by benchmarks/cost_fit.py from 51 synthesized designs:
#   ecp5: the flattened synthesis shares 1.45 of the first-level LUTs equal weights allow
#   ecp5 conv: 104 components; flattened over modules 0.721 (cells), 0.998 (flip-flops)
#   ecp5 fifo: 6 components; flattened over modules 1.048 (cells), 0.998 (flip-flops)
#   ecp5 mvu: 105 components; flattened over modules 0.967 (cells), 0.998 (flip-flops)
#   ecp5 pool: 14 components; flattened over modules 1.011 (cells), 0.998 (flip-flops)
#   ecp5 score: 27 components; flattened over modules 0.635 (cells), 0.998 (flip-flops)
#   ecp5 skid: 131 components; flattened over modules 0.546 (cells), 0.998 (flip-flops)
#   ecp5 swu: 18 components; flattened over modules 0.989 (cells), 0.998 (flip-flops)
#   ecp5 top: 27 components; flattened over modules 0.881 (cells), 0.998 (flip-flops)
#   ice40: the flattened synthesis shares 1.00 of the first-level LUTs equal weights allow
#   ice40 conv: 94 components; flattened over modules 0.974 (cells), 1.002 (flip-flops)
#   ice40 fifo: 6 components; flattened over modules 1.096 (cells), 1.002 (flip-flops)
#   ice40 mvu: 93 components; flattened over modules 1.000 (cells), 1.002 (flip-flops)
#   ice40 pool: 10 components; flattened over modules 0.998 (cells), 1.002 (flip-flops)
#   ice40 score: 24 components; flattened over modules 0.960 (cells), 1.002 (flip-flops)
#   ice40 skid: 109 components; flattened over modules 0.958 (cells), 1.002 (flip-flops)
#   ice40 swu: 12 components; flattened over modules 1.001 (cells), 1.002 (flip-flops)
#   ice40 top: 24 components; flattened over modules 0.944 (cells), 1.002 (flip-flops)
FIT = {'designs': 51,
 'holdout': False,
 'hw': ['dde7cc84d33df7ba'],
 'prior_weight': 0.005,
 'weight_power': 0.5}
COEFFICIENTS: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "ecp5": {
        "conv": {
            "ffs": {
                "bram_port": 0.9984,
                "ff_copy": 0.9982,
                "ff_ctrl": 0.9917,
                "ff_pack": 0.9864,
                "mux": 0.0114,
                "one": 0.0488
            },
            "luts": {
                "bram_port": 0.7212,
                "chains": 2.8848,
                "cnt": 2.2661,
                "extra": 0.7212,
                "ff_ctrl": 0.8237,
                "ff_pack": 2.7216,
                "gates": 0.7212,
                "gather": 0.7212,
                "gather_index": 0.5048,
                "gearbox": 0.2266,
                "lutram": 4.3272,
                "lutram_mux": 0.3606,
                "lutrom": 0.7212,
                "post": 0.7212,
                "ram_bits": 0.7212,
                "rom_luts": 0.7212,
                "rom_mux": 0.0721,
                "tree_carry": 0.7212,
                "tree_logic": 0.7212
            }
        },
        "fifo": {
            "ffs": {
                "bram_port": 0.9984,
                "ff_copy": 0.9984,
                "ff_ctrl": 0.8109,
                "ff_pack": 0.4893,
                "lutram_mux": 0.3521
            },
            "luts": {
                "bram_port": 1.0483,
                "chains": 4.193,
                "cnt": 2.4968,
                "extra": 1.0483,
                "ff_ctrl": 0.3022,
                "gates": 1.0483,
                "gather": 1.0483,
                "gather_index": 0.7338,
                "gearbox": 0.3669,
                "lutram": 4.8254,
                "lutram_mux": 3.8591,
                "lutrom": 1.0483,
                "mux": 1.0483,
                "one": 11.4991,
                "post": 1.0483,
                "ram_bits": 1.0483,
                "rom_luts": 1.0483,
                "rom_mux": 0.1048,
                "tree_carry": 1.0483,
                "tree_logic": 1.0483
            }
        },
        "mvu": {
            "ffs": {
                "bram_port": 0.9984,
                "extra": 0.267,
                "ff_copy": 1.1017,
                "ff_ctrl": 0.5998,
                "ff_pack": 0.8413,
                "gather": 0.0967,
                "gather_index": 0.0011,
                "lutram": 0.4002,
                "mux": 0.3111,
                "rom_luts": 0.0223,
                "tree_carry": 0.0527
            },
            "luts": {
                "bram_port": 0.9673,
                "chains": 2.5489,
                "cnt": 2.3984,
                "extra": 0.2078,
                "ff_copy": 0.405,
                "ff_pack": 0.0697,
                "gates": 1.7369,
                "gather_index": 1.8526,
                "gearbox": 0.3385,
                "lutram": 8.8401,
                "lutram_mux": 1.1942,
                "lutrom": 1.3601,
                "mux": 0.2254,
                "post": 0.803,
                "rom_luts": 1.2019,
                "tree_carry": 0.2413,
                "tree_logic": 1.2899,
                "tree_shared": -1.4486
            }
        },
        "pool": {
            "ffs": {
                "bram_port": 0.9984,
                "cnt": 0.2788,
                "ff_copy": 0.9984,
                "ff_ctrl": 1.1408,
                "ff_pack": 0.9981,
                "one": 3.6184
            },
            "luts": {
                "bram_port": 1.0115,
                "chains": 4.0459,
                "cnt": 5.8067,
                "extra": 1.0115,
                "ff_ctrl": 2.106,
                "ff_pack": 0.0724,
                "gates": 1.8805,
                "gather": 1.0115,
                "gather_index": 0.708,
                "gearbox": 0.354,
                "lutram": 6.5033,
                "lutram_mux": 0.5057,
                "lutrom": 1.0115,
                "mux": 1.1201,
                "one": 45.68,
                "post": 1.0115,
                "ram_bits": 1.0115,
                "rom_luts": 1.0115,
                "rom_mux": 0.1011,
                "tree_carry": 1.0115,
                "tree_logic": 1.0115
            }
        },
        "score": {
            "ffs": {
                "bram_port": 0.9984,
                "ff_copy": 0.6953,
                "ff_ctrl": 0.4562,
                "ff_pack": 0.6974,
                "lutrom": 1.7579
            },
            "luts": {
                "bram_port": 0.635,
                "extra": 0.635,
                "gates": 0.635,
                "gather": 0.635,
                "gather_index": 0.4445,
                "gearbox": 0.2223,
                "lutram": 3.8102,
                "lutram_mux": 0.3175,
                "lutrom": 1.0634,
                "mux": 0.1835,
                "one": 15.4144,
                "post": 0.4652,
                "ram_bits": 0.635,
                "rom_luts": 0.635,
                "rom_mux": 0.0635,
                "tree_carry": 0.635,
                "tree_logic": 0.635
            }
        },
        "skid": {
            "ffs": {
                "bram_port": 0.9984,
                "ff_copy": 0.9983,
                "ff_ctrl": 0.5009,
                "ff_pack": 0.9983,
                "one": 1.0017
            },
            "luts": {
                "bram_port": 0.546,
                "chains": 2.1839,
                "cnt": 1.092,
                "extra": 0.546,
                "ff_copy": 0.0001,
                "ff_ctrl": 0.5441,
                "ff_pack": 0.0001,
                "gates": 0.546,
                "gather": 0.546,
                "gather_index": 0.3822,
                "gearbox": 0.1911,
                "lutram": 3.2759,
                "lutram_mux": 0.273,
                "lutrom": 0.546,
                "mux": 0.546,
                "one": 2.1802,
                "post": 0.546,
                "ram_bits": 0.546,
                "rom_luts": 0.546,
                "rom_mux": 0.0546,
                "tree_carry": 0.546,
                "tree_logic": 0.546
            }
        },
        "swu": {
            "ffs": {
                "bram_port": 0.9984,
                "cnt": 0.0238,
                "ff_copy": 0.1027,
                "ff_ctrl": 0.8386,
                "ff_pack": 0.9192,
                "lutram": 0.6746,
                "one": 11.99
            },
            "luts": {
                "bram_port": 0.9886,
                "chains": 3.9545,
                "cnt": 3.7516,
                "extra": 0.9886,
                "ff_copy": 0.2004,
                "ff_ctrl": 1.4611,
                "ff_pack": 0.1504,
                "gates": 0.9886,
                "gather": 0.9886,
                "gather_index": 0.692,
                "gearbox": 0.346,
                "lutram": 7.2455,
                "lutram_mux": 0.4943,
                "lutrom": 0.9886,
                "mux": 1.164,
                "one": 56.7959,
                "post": 0.9886,
                "ram_bits": 1.189,
                "rom_luts": 0.9886,
                "rom_mux": 0.0989,
                "tree_carry": 0.9886,
                "tree_logic": 0.9886
            }
        },
        "top": {
            "ffs": {
                "bram_port": 1.044,
                "cnt": 0.0585,
                "ff_copy": 1.0284,
                "ff_ctrl": 1.156,
                "ff_pack": 1.287,
                "mux": 0.2967,
                "one": 27.1266
            },
            "luts": {
                "chains": 3.5247,
                "extra": 0.8812,
                "ff_copy": 0.0286,
                "ff_pack": 1.1656,
                "gates": 0.8812,
                "gather": 0.8812,
                "gather_index": 0.6168,
                "gearbox": 0.3084,
                "lutrom": 0.8812,
                "mux": 3.4839,
                "one": 158.279,
                "post": 0.8812,
                "ram_bits": 0.8812,
                "rom_luts": 0.8812,
                "rom_mux": 0.0881,
                "tree_carry": 0.8812,
                "tree_logic": 0.8812
            }
        }
    },
    "ice40": {
        "conv": {
            "ffs": {
                "bram_port": 1.0021,
                "ff_copy": 1.0036,
                "ff_ctrl": 0.9713,
                "ff_pack": 1.0022,
                "mux": 0.0001,
                "one": 0.0878
            },
            "luts": {
                "bram_port": 0.9744,
                "chains": 0.4872,
                "cnt": 1.1819,
                "extra": 0.9744,
                "ff_copy": 0.9573,
                "ff_pack": 0.0939,
                "gates": 0.9744,
                "gather": 0.9744,
                "gather_index": 0.6821,
                "gearbox": 0.341,
                "lutram_mux": 0.4872,
                "lutrom": 0.9744,
                "mux": 0.9709,
                "one": 4.2611,
                "post": 0.9744,
                "ram_bits": 0.9744,
                "rom_luts": 0.9744,
                "rom_mux": 0.4872,
                "tree_carry": 0.9744,
                "tree_logic": 0.9744
            }
        },
        "fifo": {
            "ffs": {
                "bram_port": 0.9703,
                "cnt": 0.1281,
                "ff_copy": 1.0021,
                "ff_ctrl": 1.1102,
                "ff_pack": 0.9703,
                "one": 2.8702
            },
            "luts": {
                "bram_port": 2.0808,
                "chains": 0.5479,
                "cnt": 2.1273,
                "extra": 1.0958,
                "ff_copy": 1.0958,
                "ff_ctrl": 0.5086,
                "ff_pack": 1.0946,
                "gates": 1.0958,
                "gather": 1.0958,
                "gather_index": 0.7671,
                "gearbox": 0.3835,
                "lutram_mux": 0.5479,
                "lutrom": 1.0958,
                "mux": 1.0958,
                "one": 13.3386,
                "post": 1.0958,
                "ram_bits": 1.0958,
                "rom_luts": 1.0958,
                "rom_mux": 0.5479,
                "tree_carry": 1.0958,
                "tree_logic": 1.0958
            }
        },
        "mvu": {
            "ffs": {
                "bram_port": 2.4528,
                "extra": 0.1367,
                "ff_copy": 0.973,
                "ff_ctrl": 0.9195,
                "ff_pack": 0.4224,
                "gather": 0.7983,
                "lutrom": 0.608,
                "mux": 1.2681,
                "one": 1.7972,
                "post": 0.4831,
                "ram_bits": 0.235,
                "rom_luts": 0.2949,
                "tree_logic": 0.2638
            },
            "luts": {
                "bram_port": 4.9985,
                "chains": 1.7498,
                "cnt": 2.1776,
                "extra": 0.3001,
                "ff_copy": 2.1635,
                "ff_pack": 0.1679,
                "gates": 0.2719,
                "gather": 0.3683,
                "gather_index": 1.4388,
                "gearbox": 0.35,
                "lutram_mux": 0.5,
                "lutrom": 0.9613,
                "mux": 2.1282,
                "post": 1.9435,
                "rom_luts": 1.1484,
                "rom_mux": 1.4386,
                "tree_carry": 0.2994,
                "tree_logic": 0.6022,
                "tree_shared": -1.0
            }
        },
        "pool": {
            "ffs": {
                "bram_port": 1.0021,
                "cnt": 0.1959,
                "ff_copy": 1.0033,
                "ff_ctrl": 1.1032,
                "ff_pack": 0.997,
                "one": 3.2498,
                "ram_bits": 0.0011
            },
            "luts": {
                "bram_port": 0.998,
                "chains": 0.499,
                "cnt": 4.5226,
                "extra": 0.998,
                "ff_copy": 1.0076,
                "ff_ctrl": 1.5669,
                "gather": 0.998,
                "gather_index": 0.6986,
                "gearbox": 0.3493,
                "lutram_mux": 0.499,
                "lutrom": 0.998,
                "mux": 0.556,
                "one": 8.8126,
                "post": 0.998,
                "ram_bits": 1.0076,
                "rom_luts": 0.998,
                "rom_mux": 0.499,
                "tree_carry": 0.998,
                "tree_logic": 0.998
            }
        },
        "score": {
            "ffs": {
                "bram_port": 1.0021,
                "ff_copy": 0.5439,
                "ff_ctrl": 0.9254,
                "ff_pack": 0.6959,
                "one": 0.3926
            },
            "luts": {
                "bram_port": 0.9602,
                "cnt": 0.276,
                "extra": 0.9602,
                "ff_copy": 0.9571,
                "ff_pack": 0.0492,
                "gates": 0.9602,
                "gather": 0.9602,
                "gather_index": 0.6721,
                "gearbox": 0.3361,
                "lutram_mux": 0.4801,
                "lutrom": 1.0615,
                "mux": 0.7511,
                "one": 31.301,
                "post": 0.9329,
                "ram_bits": 0.9602,
                "rom_luts": 0.9602,
                "rom_mux": 0.4801,
                "tree_carry": 0.9602,
                "tree_logic": 0.9602
            }
        },
        "skid": {
            "ffs": {
                "bram_port": 1.0021,
                "ff_copy": 1.002,
                "ff_ctrl": 0.5027,
                "ff_pack": 1.002,
                "one": 1.0055
            },
            "luts": {
                "bram_port": 0.9581,
                "chains": 0.479,
                "cnt": 1.9161,
                "extra": 0.9581,
                "ff_copy": 0.9264,
                "ff_ctrl": 1.6723,
                "ff_pack": 0.0641,
                "gates": 0.9581,
                "gather": 0.9581,
                "gather_index": 0.6706,
                "gearbox": 0.3353,
                "lutram_mux": 0.479,
                "lutrom": 0.9581,
                "mux": 0.9264,
                "one": 4.3027,
                "post": 0.9581,
                "ram_bits": 0.9581,
                "rom_luts": 0.9581,
                "rom_mux": 0.479,
                "tree_carry": 0.9581,
                "tree_logic": 0.9581
            }
        },
        "swu": {
            "ffs": {
                "bram_port": 0.587,
                "cnt": 0.2183,
                "ff_copy": 1.0011,
                "ff_ctrl": 1.187,
                "ff_pack": 1.0061,
                "one": 3.4516
            },
            "luts": {
                "chains": 0.5007,
                "cnt": 7.8546,
                "extra": 1.0015,
                "ff_copy": 0.3226,
                "ff_ctrl": 3.2695,
                "ff_pack": 2.6243,
                "gates": 1.0015,
                "gather": 1.0015,
                "gather_index": 0.701,
                "gearbox": 0.3505,
                "lutram_mux": 0.5007,
                "lutrom": 1.0015,
                "mux": 1.1341,
                "post": 1.0015,
                "ram_bits": 0.3226,
                "rom_luts": 1.0015,
                "rom_mux": 0.5007,
                "tree_carry": 1.0015,
                "tree_logic": 1.0015
            }
        },
        "top": {
            "ffs": {
                "bram_port": 3.4288,
                "cnt": 0.1387,
                "ff_copy": 1.0557,
                "ff_ctrl": 1.1996,
                "ff_pack": 1.2753,
                "mux": 0.2911,
                "one": 21.4169
            },
            "luts": {
                "chains": 0.4719,
                "extra": 0.9439,
                "ff_copy": 1.0186,
                "gates": 0.9439,
                "gather": 0.9439,
                "gather_index": 0.6607,
                "gearbox": 0.3304,
                "lutram_mux": 0.4719,
                "lutrom": 0.9439,
                "mux": 1.0259,
                "one": 166.6839,
                "post": 0.9439,
                "ram_bits": 0.9439,
                "rom_luts": 0.9439,
                "rom_mux": 0.4719,
                "tree_carry": 0.9439,
                "tree_logic": 0.9439
            }
        }
    }
}

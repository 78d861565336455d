"""Sparse binary layers in the cost model: weight memory and LUTs against sparsity, per layout.

The sfc shape (784 8-bit inputs -> 256 -> 256 -> 256 -> 10), every layer sparse
with every row keeping ``fan_in - round(S * fan_in)`` inputs (as the trainer's
``--quantizer sparse --sparsity S``). For each sparsity, each weight layout of
``bitfold.compiler.cost`` (``mask``: one bit per weight; ``index``: the kept
inputs' positions, gathered) and the folding's own choice per layer (``auto``):
the weight memory bits, and at each cycles-per-frame budget the cheapest
folding's estimated LUTs, flip-flops and block RAMs (ECP5). Sparsity 0 is the
binary network (the mask all ones). ``group`` rows are the same sparsity with N:G
structure (``--sparse-group G``, the ``G`` of 2, 4, 8, 16 that stores it
smallest) in the group layout. Estimates only; ``benchmarks/quantizer_table.py``
builds the trained networks.

    .venv/bin/python -m benchmarks.sparse_cost --budgets 256 1024 4096
"""

from __future__ import annotations

import argparse

from bitfold.compiler.cost import (
    DEVICES,
    GROUP_SIZES,
    LayerShape,
    columns,
    group_slot_bits,
    layer_cost,
    layouts,
)

SFC = [("fc0", 784, 256, 8), ("fc1", 256, 256, 1), ("fc2", 256, 256, 1), ("fc3", 256, 10, 1)]


def nm_group(sparsity: float) -> tuple[int, int]:
    """``(G, N)`` of the smallest N:G structure at ``sparsity`` (``(0, 0)`` if none beats the mask)."""
    best, best_bits = (0, 0), 1.0
    for g in GROUP_SIZES:
        n = (1 - sparsity) * g
        if abs(n - round(n)) < 1e-9 and round(n) >= 1:
            bits = round(n) * group_slot_bits(g, False) / g
            if bits < best_bits:
                best, best_bits = (g, round(n)), bits
    return best


def layers(sparsity: float, structured: bool = False) -> list[LayerShape]:
    g, n = nm_group(sparsity) if structured else (0, 0)
    out = []
    for name, fan_in, rows, bits in SFC:
        nnz = fan_in - round(sparsity * fan_in)
        top = (1 << bits) - 1
        acc_bits = nnz.bit_length() if bits == 1 else (nnz * top).bit_length() + 1
        out.append(LayerShape(name, False, rows, fan_in, 1, bits, acc_bits, fan_in, "sparse", 1,
                              nnz / fan_in, nnz, False, g, n, False))
    return out


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def cheapest(layer: LayerShape, budget: int, allowed: tuple[str, ...]):
    model = DEVICES["ecp5"]
    best = None
    for layout in allowed:
        for pe in divisors(layer.mh):
            for simd in divisors(columns(layer, layout)):
                c = layer_cost(layer, pe, simd, model, layout)
                if c.cycles <= budget and (best is None or (c.luts, c.brams) < (best.luts,
                                                                                 best.brams)):
                    best = c
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.5, 0.75, 0.9, 0.95])
    ap.add_argument("--budgets", type=int, nargs="+", default=[256, 1024, 4096],
                    help="cycles per frame")
    args = ap.parse_args()
    print("| sparsity | layout | weight bits | " +
          " | ".join(f"{b} cyc: LUTs / FFs / BRAMs" for b in args.budgets) + " |")
    print("|---" * (3 + len(args.budgets)) + "|")
    for s in args.sparsity:
        g, n = nm_group(s)
        rows = [("mask", ("mask",), False), ("index", ("index",), False), ("auto", None, False)]
        if g:
            rows += [(f"group {n}:{g}", ("group",), True), (f"auto {n}:{g}", None, True)]
        for name, allowed, structured in rows:
            ls = layers(s, structured)
            cells = []
            bits = 0
            for budget in args.budgets:
                picks = [cheapest(layer, budget, allowed or layouts(layer)) for layer in ls]
                if any(p is None for p in picks):
                    cells.append("-")
                    continue
                bits = sum(p.weight_bits for p in picks)
                tag = "" if allowed else " (" + ",".join(p.layout[0] for p in picks) + ")"
                cells.append(f"{sum(p.luts for p in picks)} / {sum(p.ffs for p in picks)} / "
                             f"{sum(p.brams for p in picks)}{tag}")
            if allowed:  # the layout's memory does not depend on the folding
                bits = sum(layer_cost(layer, 1, 1, DEVICES["ecp5"], allowed[0]).weight_bits
                           for layer in ls)
            else:
                bits = "per budget"
            print(f"| {s:.0%} | {name} | {bits} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

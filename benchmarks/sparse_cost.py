"""Sparse binary layers in the cost model: weight memory and LUTs against sparsity, per layout.

The sfc shape (784 8-bit inputs -> 256 -> 256 -> 256 -> 10), every layer sparse
with every row keeping ``fan_in - round(S * fan_in)`` inputs (as the trainer's
``--quantizer sparse --sparsity S``). For each sparsity, each weight layout of
``bitfold.compiler.cost`` (``mask``: one bit per weight; ``index``: the kept
inputs' positions, gathered) and the folding's own choice per layer (``auto``):
the weight memory bits, and at each cycles-per-frame budget the cheapest
folding's estimated LUTs, flip-flops and block RAMs (ECP5). Sparsity 0 is the
binary network (the mask all ones). Estimates only: no board build calibrates
them yet.

    .venv/bin/python -m benchmarks.sparse_cost --budgets 256 1024 4096
"""

from __future__ import annotations

import argparse

from bitfold.compiler.cost import DEVICES, LayerShape, columns, layer_cost, layouts

SFC = [("fc0", 784, 256, 8), ("fc1", 256, 256, 1), ("fc2", 256, 256, 1), ("fc3", 256, 10, 1)]


def layers(sparsity: float) -> list[LayerShape]:
    out = []
    for name, fan_in, rows, bits in SFC:
        nnz = fan_in - round(sparsity * fan_in)
        top = (1 << bits) - 1
        acc_bits = nnz.bit_length() if bits == 1 else (nnz * top).bit_length() + 1
        out.append(LayerShape(name, False, rows, fan_in, 1, bits, acc_bits, fan_in, "sparse", 1,
                              nnz / fan_in, nnz, False))
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
        ls = layers(s)
        for name, allowed in (("mask", ("mask",)), ("index", ("index",)), ("auto", None)):
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

"""Folding: PE and SIMD per layer, chosen for a frame rate or a resource budget.

Rules. For a layer with ``MH`` outputs and ``MW`` inputs per output, ``PE``
must divide ``MH`` and ``SIMD`` must divide ``MW`` (no idle lanes); with
``allow_padding`` any ``1 <= PE <= MH``, ``1 <= SIMD <= MW`` is legal and the
last fold is padded (``NF = ceil(MH / PE)``, ``SF = ceil(MW / SIMD)``).

The optimizers pick, for every layer on its own (stages run concurrently, so
only the slowest one sets the frame rate), the cheapest legal ``(PE, SIMD)``
(fewest LUTs, then block RAMs) whose cycles fit a per-frame cycle budget:

* :func:`fold_for_fps`: the budget is ``clock / target_fps``;
* :func:`fold_for_budget`: the smallest budget whose cheapest folding fits
  ``max_luts`` and ``max_brams`` (the fastest design that fits).

Each layer is priced alone (its MVU and a convolution's sliding window); the
totals also count the pools, the score unit and what joins the stages (skid
buffers, FIFOs, width converters: ``Folding.streams``), so a budget is checked
against the whole core (the board top comes on top: ``cost.board_top_cost``).

``BUILD/folding.json`` holds the choice with its cycles and estimates; a user
may write one by hand (``{"schema": 1, "layers": [{"name", "pe", "simd"}]}``)
and :func:`read_folding` checks it against the graph.

A sparse layer has two weight layouts (``bitfold.compiler.cost``): ``"mask"``
(``SIMD`` inputs per cycle, ``SIMD`` divides ``MW``) and ``"index"`` (``SIMD``
kept inputs gathered per cycle, ``SIMD`` divides the most non-zeros in a row,
``K``), and when its mask has N:G structure ``"group"`` (``SIMD`` groups of
``G`` inputs per cycle, ``SIMD`` divides ``MW / G``; never padded). A layer
entry may name one (``"layout": "index"``; default ``"mask"``); the optimizers
price them all and take the cheapest.

Weights deeper than a LUT ROM are read synchronously and Yosys decides where
they go; wide, shallow ones it builds from LUTs. Given a block-RAM budget
(``max_brams``), the optimizers hand the blocks the design leaves over to such
weights (:func:`fill_block_ram`): a layer's first ``block_pes`` PEs then have
their weights in a block RAM of their own, most LUTs saved per block first.

With ``two_frame``, a dense layer may also compute two frames a pass (``"frames": 2``,
``hw/frames.py``): each weight word read once for both, twice the lanes, ``NF * SF / 2``
cycles a frame; what a frame rate needs when the weights' reads outrun the block RAMs.

A composite layer (``K`` binary planes) has two: ``"dense"`` (the default; the
planes as ``K`` parallel lanes, ``NF * SF`` cycles per vector) and ``"serial"``
(one set of lanes taking the planes one a cycle, ``NF * SF * K`` cycles, about
``1 / K`` of the adder trees); binary layers have only ``"dense"``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import replace
from pathlib import Path

from bitfold.artifacts import ArtifactError, read_json, write_json

from .cost import (
    LayerCost,
    LayerShape,
    ResourceModel,
    block_ram_pes,
    columns,
    layer_cost,
    layouts,
    mvu_layers,
    other_stages,
    two_frames,
)
from .errors import FoldingError
from .folding_eval import (
    FOLDING_SCHEMA,
    Folding,
    check_clock,
    check_layer,
    device_model,
    evaluate_folding,
    legal_values,
)
from .ir import Graph

__all__ = [
    "FOLDING_SCHEMA",
    "Folding",
    "check_layer",
    "evaluate_folding",
    "fill_block_ram",
    "folding_choice",
    "fold_for_budget",
    "trade_off",
    "fold_for_fps",
    "folding_table",
    "legal_values",
    "read_folding",
    "write_folding",
]

FOLDING_FILE = "folding.json"


class _Options:
    """A layer's legal foldings sorted by cycles, with the cheapest one up to each cycle count."""

    def __init__(self, layer: LayerShape, model: ResourceModel, allow_padding: bool,
                 two_frame: bool = False) -> None:
        costs = [layer_cost(layer, pe, simd, model, layout, frames=frames)
                 for layout in layouts(layer)
                 for pe in legal_values(layer.mh, allow_padding)
                 for simd in legal_values(columns(layer, layout),
                                          allow_padding and layout != "group")
                 for frames in ((1, 2) if two_frame else (1,))
                 if frames == 1 or two_frames(layer, pe, simd, layout)]
        costs.sort(key=lambda c: c.cycles)
        self.cycles = [c.cycles for c in costs]
        self.best: list[LayerCost] = []
        for c in costs:
            if self.best:
                prev = self.best[-1]
                c = c if _rank(c) < _rank(prev) else prev
            self.best.append(c)

    def cheapest(self, budget: int) -> LayerCost | None:
        i = bisect.bisect_right(self.cycles, budget)
        return self.best[i - 1] if i else None


def _rank(c: LayerCost) -> tuple[int, ...]:
    """The cheaper of two foldings at a cycle budget: fewer LUTs, block RAMs, lanes, PEs,
    and one frame a pass before two."""
    return (c.luts, c.brams, c.pe * c.simd * c.frames, c.pe, c.frames)


def _pick(c: LayerCost) -> tuple:
    """A layer's entry of :func:`evaluate_folding`'s ``choice``."""
    return (c.pe, c.simd, c.layout, c.block_pes, c.frames)


def folding_choice(folding: Folding) -> dict[str, tuple]:
    """``folding``'s choice per layer, as :func:`evaluate_folding` takes it (to re-cost it)."""
    return {c.name: _pick(c) for c in folding.layers}


def _fold_at(graph, options, budget, max_brams: int | None = None, **kw) -> Folding | None:
    picks = {}
    for name, opt in options.items():
        c = opt.cheapest(budget)
        if c is None:
            return None
        picks[name] = _pick(c)
    folding = evaluate_folding(graph, picks, **kw)
    return folding if max_brams is None else fill_block_ram(graph, folding, max_brams)


def fill_block_ram(graph: Graph, folding: Folding, max_brams: int) -> Folding:
    """``folding`` with block RAM left over under ``max_brams`` given to weights that Yosys
    would build from LUTs (``block_pes``, :func:`~.cost.block_ram_pes`): layer by layer, most
    LUTs saved per block first, as many PEs of each as the spare blocks hold."""
    model = device_model(folding.device)
    shapes = {layer.name: layer for layer in mvu_layers(graph)}
    picks = folding_choice(folding)

    def saving(c: LayerCost, k: int) -> tuple[int, int]:  # (LUTs saved, blocks added) at k PEs
        new = layer_cost(shapes[c.name], c.pe, c.simd, model, c.layout, k, c.frames)
        return c.luts - new.luts, new.brams - c.brams

    gains = []
    for c in folding.layers:
        if c.block_pes == 0 and block_ram_pes(shapes[c.name], c.pe, c.simd, c.layout, model):
            luts, blocks = saving(c, c.pe)
            if luts > 0 and blocks > 0:
                gains.append((luts / blocks, c))
    spare = max_brams - folding.total("brams")
    for _, c in sorted(gains, key=lambda g: -g[0]):
        lo, hi = 0, c.pe  # the most PEs whose blocks fit the spare ones
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if saving(c, mid)[1] <= spare else (lo, mid - 1)
        luts, blocks = saving(c, lo) if lo else (0, 0)
        if luts > 0:
            picks[c.name] = _pick(replace(c, block_pes=lo))
            spare -= blocks
    if all(picks[c.name][3] == c.block_pes for c in folding.layers):
        return folding
    return evaluate_folding(graph, picks, folding.clock_mhz, folding.device,
                            folding.allow_padding, folding.objective)


def fold_for_fps(graph: Graph, target_fps: float, clock_mhz: float = 100.0,
                 device: str = "ecp5", allow_padding: bool = False,
                 max_brams: int | None = None, two_frame: bool = False) -> Folding:
    """The cheapest folding reaching ``target_fps`` frames/s at ``clock_mhz``; with
    ``max_brams``, the blocks it leaves hold weights Yosys would build from LUTs
    (:func:`fill_block_ram`), and a folding needing more blocks is refused."""
    check_clock(clock_mhz)
    if not (isinstance(target_fps, int | float) and target_fps > 0):
        raise FoldingError(f"target fps must be positive, not {target_fps!r}")
    model = device_model(device)
    budget = math.floor(clock_mhz * 1e6 / target_fps)
    objective = {"kind": "fps", "target_fps": float(target_fps), "cycle_budget": budget}
    for stage in other_stages(graph, model):
        if stage.cycles > budget:
            raise FoldingError(f"{target_fps:g} fps at {clock_mhz:g} MHz allows {budget} cycles "
                               f"per frame, but stage {stage.name!r} needs {stage.cycles}; at most "
                               f"{clock_mhz * 1e6 / stage.cycles:.6g} fps")
    options = {}
    for layer in mvu_layers(graph):
        opt = _Options(layer, model, allow_padding, two_frame)
        if opt.cycles[0] > budget:
            raise FoldingError(
                f"{target_fps:g} fps at {clock_mhz:g} MHz allows {budget} cycles per frame, but "
                f"layer {layer.name!r} needs at least {opt.cycles[0]} even fully parallel; at most "
                f"{clock_mhz * 1e6 / opt.cycles[0]:.6g} fps at this clock")
        options[layer.name] = opt
    folding = _fold_at(graph, options, budget, max_brams, clock_mhz=clock_mhz, device=device,
                       allow_padding=allow_padding, objective=objective)
    if folding is None:  # every layer has an option within the budget (checked above)
        raise FoldingError(f"no folding reaches {target_fps:g} fps at {clock_mhz:g} MHz")
    if max_brams is not None and folding.total("brams") > max_brams:
        raise FoldingError(f"{target_fps:g} fps at {clock_mhz:g} MHz: the cheapest folding needs "
                           f"{folding.total('brams')} block RAMs, more than {max_brams}; give a "
                           f"lower --target-fps or fold for a budget (--max-luts/--max-brams)")
    return folding


def fold_for_budget(graph: Graph, max_luts: int | None = None, max_brams: int | None = None,
                    clock_mhz: float = 100.0, device: str = "ecp5",
                    allow_padding: bool = False, two_frame: bool = False) -> Folding:
    """The fastest folding (smallest cycles per frame) whose estimate fits the budget."""
    if max_luts is None and max_brams is None:
        raise FoldingError("give a budget: max_luts and/or max_brams")
    model = device_model(device)
    options = {layer.name: _Options(layer, model, allow_padding, two_frame)
               for layer in mvu_layers(graph)}
    floor = max([s.cycles for s in other_stages(graph, model)] +
                [o.cycles[0] for o in options.values()])
    candidates = sorted({c for o in options.values() for c in o.cycles if c >= floor} | {floor})
    objective = {"kind": "budget", "max_luts": max_luts, "max_brams": max_brams}
    smallest = None
    for budget in candidates:
        folding = _fold_at(graph, options, budget, max_brams, clock_mhz=clock_mhz,
                           device=device, allow_padding=allow_padding, objective=objective)
        if folding is None:
            continue
        fits = (max_luts is None or folding.total("luts") <= max_luts) and \
               (max_brams is None or folding.total("brams") <= max_brams)
        if fits:
            return folding
        smallest = folding
    limits = " and ".join(f"{v} {unit}" for v, unit in ((max_luts, "LUTs"),
                                                       (max_brams, "block RAMs")) if v is not None)
    if smallest is None:  # every candidate budget reaches the slowest stage (floor)
        raise FoldingError(f"no folding fits {limits}")
    raise FoldingError(f"no folding fits {limits}; the most folded one needs "
                       f"{smallest.total('luts')} LUTs and {smallest.total('brams')} block RAMs")


def trade_off(graph: Graph, clock_mhz: float = 100.0, device: str = "ecp5",
              allow_padding: bool = False, two_frame: bool = False) -> list[Folding]:
    """The cheapest folding at every reachable cycles-per-frame budget, fastest first.

    The same search as :func:`fold_for_budget` without a budget: one folding per
    distinct cycle count (consecutive budgets that pick the same folding give it once).
    """
    check_clock(clock_mhz)
    model = device_model(device)
    options = {layer.name: _Options(layer, model, allow_padding, two_frame)
               for layer in mvu_layers(graph)}
    floor = max([s.cycles for s in other_stages(graph, model)] +
                [o.cycles[0] for o in options.values()])
    budgets = sorted({c for o in options.values() for c in o.cycles if c >= floor} | {floor})
    out: list[Folding] = []
    seen: set[tuple] = set()
    for budget in budgets:
        folding = _fold_at(graph, options, budget, clock_mhz=clock_mhz, device=device,
                           allow_padding=allow_padding,
                           objective={"kind": "trade-off", "cycle_budget": budget})
        if folding is None:
            continue
        key = tuple(_pick(c) for c in folding.layers)
        if key not in seen:
            seen.add(key)
            out.append(folding)
    return out


def write_folding(build: str | Path, folding: Folding) -> Path:
    """Write ``BUILD/folding.json`` atomically."""
    return write_json(Path(build) / FOLDING_FILE, folding.to_json())


def read_folding(path: str | Path, graph: Graph) -> Folding:
    """Read a folding (written by bitfold or by hand) and check it against ``graph``.

    Only ``layers[*].name/pe/simd`` (and a sparse or composite layer's optional ``layout``,
    ``block_pes``: how many of its PEs have their weights forced into block RAM, and
    ``frames``: 1, or 2 frames a pass) and the
    optional ``clock_mhz``, ``device``, ``allow_padding`` are read; cycles and estimates
    are recomputed.
    """
    path = Path(path)
    try:
        doc = read_json(path, FOLDING_SCHEMA)
    except ArtifactError as exc:
        raise FoldingError(str(exc)) from None
    layers = doc.get("layers")
    if not isinstance(layers, list) or not all(
            isinstance(e, dict) and {"name", "pe", "simd"} <= set(e) for e in layers):
        raise FoldingError(f'{path}: "layers" must be a list of {{"name", "pe", "simd"}} objects')
    names = [e["name"] for e in layers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FoldingError(f"{path}: layer {', '.join(map(repr, twice))} is given more than "
                           f"once; give each layer one entry")
    choice = {e["name"]: (e["pe"], e["simd"], e["layout"] if e.get("layout") not in (None, "dense")
                          else None, e.get("block_pes", 0), e.get("frames", 1)) for e in layers}
    try:
        return evaluate_folding(graph, choice, doc.get("clock_mhz", 100.0),
                                doc.get("device", "ecp5"), bool(doc.get("allow_padding", False)))
    except FoldingError as exc:
        raise FoldingError(f"{path}: {exc}") from None


def _where(c: LayerCost) -> str:
    if c.block_pes == 0:
        return c.weight_memory
    if c.block_pes == c.pe:
        return "bram (forced)"
    return f"bram (forced, {c.block_pes} of {c.pe} PEs), the rest by Yosys"


def folding_table(folding: Folding) -> str:
    """A plain-text table of a folding: one row per stage, then the totals."""
    rows = [f"{'layer':<14}{'pe':>6}{'simd':>6}{'nf':>6}{'sf':>6}{'cycles':>10}{'luts':>8}"
            f"{'brams':>7}  weights"]
    for c in folding.layers:
        rows.append(f"{c.name:<14}{c.pe:>6}{c.simd:>6}{c.nf:>6}{c.sf:>6}{c.cycles:>10}{c.luts:>8}"
                    f"{c.brams:>7}  {c.weight_bits} bits in {_where(c)}"
                + (f" ({c.layout} layout)" if c.layout != "dense" else "")
                + (f", {c.frames} frames a pass" if c.frames > 1 else ""))
    for s in folding.stages:
        rows.append(f"{s.name:<14}{'':>24}{s.cycles:>10}{s.luts:>8}{s.brams:>7}  {s.kind}")
    if folding.streams:
        kinds = sorted({s.kind for s in folding.streams})
        rows.append(f"{'streams':<14}{'':>34}{sum(s.luts for s in folding.streams):>8}"
                    f"{sum(s.brams for s in folding.streams):>7}  {', '.join(kinds)} "
                    f"between the stages")
    rows.append(f"{folding.cycles_per_frame} cycles/frame (bottleneck {folding.bottleneck}): "
                f"{folding.fps:,.0f} fps at {folding.clock_mhz:g} MHz; estimate "
                f"{folding.total('luts')} LUTs, {folding.total('ffs')} FFs, "
                f"{folding.total('brams')} block RAMs ({folding.device})")
    return "\n".join(rows) + "\n"

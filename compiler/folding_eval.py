"""A folding checked against its graph and costed: :class:`Folding` and
:func:`evaluate_folding` (the rules are in :mod:`.folding`, which also holds the optimizers
and the folding file)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .cost import (
    DEVICES,
    LayerCost,
    LayerShape,
    ResourceModel,
    StageCost,
    block_ram_pes,
    columns,
    layer_cost,
    layouts,
    mvu_layers,
    other_stages,
    stream_costs,
    two_frames,
)
from .errors import FoldingError
from .ir import MVU_KINDS, Graph
from .residual import residual_units

__all__ = ["FOLDING_SCHEMA", "Folding", "check_clock", "check_layer", "device_model", "evaluate_folding",
           "legal_values"]

FOLDING_SCHEMA = 1


def legal_values(n: int, allow_padding: bool) -> list[int]:
    """Legal PE (SIMD) values for ``n`` outputs (inputs): divisors, or every useful value."""
    if allow_padding:  # only the smallest value giving each fold count is worth having
        return sorted({math.ceil(n / f) for f in range(1, n + 1)})
    return [d for d in range(1, n + 1) if n % d == 0]


def _summary(values: list[int]) -> str:
    return ", ".join(map(str, values)) if len(values) <= 16 else \
        f"{', '.join(map(str, values[:8]))}, ..., {', '.join(map(str, values[-4:]))}"


def check_layer(layer: LayerShape, pe: Any, simd: Any, allow_padding: bool,
                layout: Any = None) -> None:
    """Raise :class:`FoldingError` naming the layer and legal values if ``(pe, simd)`` or
    ``layout`` (``"serial"`` only for composite layers) is not."""
    if layout is None:
        layout = layouts(layer)[0]
    if layout not in layouts(layer):
        hint = " ('serial' is for composite layers)" if layout == "serial" else ""
        raise FoldingError(f"layer {layer.name!r}: layout={layout!r} is illegal; a "
                           f"{layer.scheme} layer has {' or '.join(map(repr, layouts(layer)))}"
                           f"{hint}")
    inputs = ("kept inputs per output (non-zeros of the fullest row)" if layout == "index"
              else f"groups of {layer.group} inputs per output" if layout == "group"
              else "inputs per output")
    if layout == "group":
        allow_padding = False
    for what, value, n, role in (("pe", pe, layer.mh, "output channels"),
                                 ("simd", simd, columns(layer, layout), inputs)):
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= n and \
            (allow_padding or n % value == 0)
        if not ok:
            rule = f"be 1..{n}" if allow_padding else f"divide the {n} {role}"
            raise FoldingError(f"layer {layer.name!r}: {what}={value!r} is illegal; {what} must "
                               f"{rule}; legal values: "
                               f"{_summary(legal_values(n, allow_padding))}")


@dataclass(frozen=True)
class Folding:
    """A complete folding of a graph with its cycle model and resource estimate."""

    graph: str
    clock_mhz: float
    device: str
    allow_padding: bool
    objective: dict[str, Any]
    layers: tuple[LayerCost, ...]
    stages: tuple[StageCost, ...]
    fifos: tuple[dict[str, Any], ...]
    streams: tuple[StageCost, ...] = ()  # skid buffers, FIFOs, width converters between stages

    def _units(self) -> tuple[LayerCost | StageCost, ...]:
        """The MVUs and the fixed-rate stages: what sets the frame rate."""
        return (*self.layers, *self.stages)

    @property
    def cycles_per_frame(self) -> int:
        return max(s.cycles for s in self._units())

    @property
    def bottleneck(self) -> str:
        return max(self._units(), key=lambda s: s.cycles).name

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.cycles_per_frame

    def total(self, what: str) -> int:
        """``luts``, ``ffs`` or ``brams`` of the core: every unit and what joins them."""
        parts: tuple[LayerCost | StageCost, ...] = (*self.layers, *self.stages, *self.streams)
        return sum(getattr(s, what) for s in parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": FOLDING_SCHEMA,
            "graph": self.graph,
            "clock_mhz": self.clock_mhz,
            "device": self.device,
            "allow_padding": self.allow_padding,
            "objective": self.objective,
            "layers": [asdict(c) for c in self.layers],
            "stages": [asdict(s) for s in self.stages],
            "fifos": list(self.fifos),
            "streams": [asdict(s) for s in self.streams],
            "totals": {
                "cycles_per_frame": self.cycles_per_frame,
                "bottleneck": self.bottleneck,
                "fps": self.fps,
                # a two-frame unit's frame waits a whole pass (two frames' cycles)
                "latency_cycles_estimate": sum(s.cycles * getattr(s, "frames", 1)
                                               for s in self._units()),
                "luts": self.total("luts"),
                "ffs": self.total("ffs"),
                "brams": self.total("brams"),
                "weight_bits": sum(c.weight_bits for c in self.layers),
            },
        }


def _fifos(graph: Graph, costs: dict[str, LayerCost], model: ResourceModel) -> tuple[dict, ...]:
    """One FIFO after every stage that feeds another: producer word width, fixed depth."""
    out = []
    for node in graph.nodes[:-1]:
        if isinstance(node, MVU_KINDS):
            continue  # the MVU's threshold or score unit streams on (sparse, composite too)
        t = graph.types[node.name]
        producer = costs.get(node.inputs[0]) if node.inputs else None
        lanes = producer.pe if producer is not None else (t.shape[-1] if t.shape else 1)
        out.append({"after": node.name, "width": lanes * t.bits, "depth": model.fifo_depth})
    return tuple(out)


def device_model(device: str) -> ResourceModel:
    if device not in DEVICES:
        raise FoldingError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return DEVICES[device]


def check_clock(clock_mhz: float) -> None:
    if not (isinstance(clock_mhz, int | float) and clock_mhz > 0):
        raise FoldingError(f"clock_mhz must be a positive number, not {clock_mhz!r}")


def evaluate_folding(graph: Graph, choice: dict[str, tuple], clock_mhz: float = 100.0,
                     device: str = "ecp5", allow_padding: bool = False,
                     objective: dict[str, Any] | None = None) -> Folding:
    """Check ``{layer: (pe, simd)}`` (or ``(pe, simd, layout[, block_pes[, frames]])``) against
    ``graph`` and cost it."""
    residual_units(graph)  # a residual stream outside the units the hardware builds: refused
    check_clock(clock_mhz)
    model = device_model(device)
    layers = mvu_layers(graph)
    names = [layer.name for layer in layers]
    missing, unknown = [n for n in names if n not in choice], sorted(set(choice) - set(names))
    if missing or unknown:
        raise FoldingError(f"folding must give pe and simd for exactly the layers {names}; "
                           f"missing {missing}, unknown {unknown}")
    costs = {}
    for layer in layers:
        pe, simd, *rest = choice[layer.name]
        layout = rest[0] if rest else None
        block_pes = rest[1] if len(rest) > 1 else 0
        frames = rest[2] if len(rest) > 2 else 1
        check_layer(layer, pe, simd, allow_padding, layout)
        layout = layout or layouts(layer)[0]
        if frames != 1 and not (frames == 2 and two_frames(layer, pe, simd, layout)):
            raise FoldingError(f"layer {layer.name!r}: frames={frames!r} is illegal; it is 1, "
                               f"or 2 for a dense layer whose pe and simd leave two folds or "
                               f"more each way and an even number of cycles (NF * SF)")
        if not (isinstance(block_pes, int) and not isinstance(block_pes, bool) and
                (block_pes == 0 or (0 < block_pes <= pe and
                                    block_ram_pes(layer, pe, simd, layout, model)))):
            raise FoldingError(f"layer {layer.name!r}: block_pes={block_pes!r} is illegal; it "
                               f"counts PEs (0..{pe}) whose weights go to block RAM, for a binary "
                               f"or mask layer whose weight memory is deeper than "
                               f"{model.lutrom_max_depth} words")
        costs[layer.name] = layer_cost(layer, pe, simd, model, layout, block_pes, frames)
    return Folding(graph.name, float(clock_mhz), model.name, allow_padding,
                   objective or {"kind": "manual"}, tuple(costs.values()),
                   tuple(other_stages(graph, model)), _fifos(graph, costs, model),
                   stream_costs(graph, costs, model))



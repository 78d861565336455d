"""Random networks for the RTL differential: drawn, folded at random, generated, with golden vectors.

Used by ``benchmarks/rtl_differential.py`` and ``tests/sim/test_multi.py``. Graphs
come from ``tests/compiler/randgraphs.py`` (every encoding); each gets a random
legal folding (a random layout per layer among those it has, random PE and
SIMD, block-RAM PEs where allowed, the ECP5 or the iCE40 model), random frames,
the golden model's class and scores of each, and random idle-input and
backpressure patterns. :func:`prepare` writes it as a build folder
(``graph.json``, ``tensors.npz``, ``rtl/``, ``folding.json``, ``vectors.npz``,
``net.json``) and returns a :class:`Network` whose ``design`` goes to
:func:`bitfold.sim.multi.simulate_many`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

__all__ = ["Network", "covering", "draw_graphs", "graph_key", "draw_network", "draw_stalls", "features",
           "load_network", "prepare", "random_folding", "structure_sparse", "verdict"]

STALLS = (0.0, 0.1, 0.3, 0.5, 0.8)  # pause fractions drawn for each side
BURSTS = (1.0, 1.0, 4.0, 16.0)  # mean pause run lengths (1: independent cycles)


def graph_key(graph) -> str:
    """A digest of everything in ``graph`` but its name (equal for equal graphs)."""
    import hashlib

    from bitfold.compiler.serialize import graph_to_json

    doc, arrays = graph_to_json(graph)
    doc.pop("name", None)
    h = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k} {a.dtype} {a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def draw_graphs(count: int, seed: int, max_layers: int = 3) -> list[tuple[Any, int]]:
    """``count`` distinct random lowered graphs (every encoding, ternary too; the score layer
    any but ternary) and a seed each, from hypothesis.

    Hypothesis draws some graphs more than once (about 1 in 8 of 1,000 are repeats, small
    ones mostly); a repeat is skipped, so every graph of the list differs from the others."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from bitfold.compiler.encodings import ENCODINGS

    from ..compiler.randgraphs import SCHEMES, lowered_graphs

    # every encoding; a ternary layer must feed a threshold, so the score layer is another
    schemes = tuple(dict.fromkeys([*SCHEMES, *(e for e in ENCODINGS if e != "binary")]))
    last = tuple(e for e in schemes if e != "ternary")
    out: list[tuple[Any, int]] = []
    seen: set[str] = set()

    @settings(max_examples=3 * count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @hseed(seed)
    @given(lowered_graphs(max_layers=max_layers, schemes=schemes, last=last),
           st.integers(0, 2**31 - 1))
    def collect(graph, s) -> None:
        if len(out) < count:
            key = graph_key(graph)
            if key not in seen:
                seen.add(key)
                out.append((graph, s))

    collect()
    if len(out) < count:
        raise ValueError(f"hypothesis drew only {len(out)} distinct graphs in {3 * count} tries")
    return out


def random_folding(graph, rng: np.random.Generator):
    """A random legal folding: layout, PE, SIMD, block-RAM PEs and device, all drawn."""
    from bitfold.compiler.cost import DEVICES, block_ram_pes, columns, layouts, mvu_layers
    from bitfold.compiler.folding import evaluate_folding, legal_values

    device = str(rng.choice(["ecp5", "ice40"]))
    choice = {}
    for layer in mvu_layers(graph):
        options = layouts(layer)  # the group layout, rarely offered, half the times it is
        layout = "group" if "group" in options and rng.random() < 0.5 else str(rng.choice(options))
        pe = int(rng.choice(legal_values(layer.mh, False)))
        simd = int(rng.choice(legal_values(columns(layer, layout), False)))
        block = 0
        if block_ram_pes(layer, pe, simd, layout, DEVICES[device]) and rng.random() < 0.5:
            block = int(rng.integers(1, pe + 1))
        choice[layer.name] = (pe, simd, layout, block)
    return evaluate_folding(graph, choice, device=device)


def features(graph, folding) -> list[str]:
    """What a network exercises: node kinds, layouts, inputs, low-rank pairs, paired inputs."""
    from bitfold.compiler.cost import PAIR_MIN_PE, mvu_layers
    from bitfold.compiler.ir import Layer, Threshold

    feats = {n.kind for n in graph.nodes if n.kind not in ("Input", "ScoreAffine", "ArgMax")}
    t = graph.types[graph.inputs[0]]
    feats.add("input bipolar" if t.bipolar else "input multi-bit")
    shapes = {s.name: s for s in mvu_layers(graph)}
    for c in folding.layers:
        feats.add(f"{shapes[c.name].scheme} {c.layout}")
        feats.add(f"weights {c.weight_memory}")
        if c.block_pes:
            feats.add("block-RAM PEs")
    feats.add(f"device {folding.device}")
    for n in graph.nodes:
        if not isinstance(n, Layer):
            continue
        src = graph.node(n.input)
        if isinstance(src, Layer):
            feats.add("low-rank pair")
        users = graph.consumers(n.name)
        c = next(c for c in folding.layers if c.name == n.name)
        tin = graph.types[n.input]
        if (not tin.bipolar and shapes[n.name].scheme == "binary" and c.layout == "dense" and
                users and isinstance(users[0], Threshold) and c.pe >= PAIR_MIN_PE and c.simd >= 2):
            feats.add("paired inputs")
    return sorted(feats)


def draw_stalls(rng: np.random.Generator) -> dict[str, float]:
    """Idle-input and backpressure patterns; at least one side pauses."""
    while True:
        p_idle, p_stall = (float(rng.choice(STALLS)) for _ in range(2))
        if p_idle or p_stall:
            break
    return {"p_idle": p_idle, "p_stall": p_stall, "idle_burst": float(rng.choice(BURSTS)),
            "stall_burst": float(rng.choice(BURSTS))}


@dataclass
class Network:
    """A drawn network, generated into ``folder``, with its frames and expectations."""

    index: int
    name: str
    seed: int
    folder: Path
    features: list[str]
    cycles_per_frame: int
    stalls: dict[str, float]
    frames: int
    design: Any = None
    error: str | None = None
    gen_s: float = 0.0


def structure_sparse(graph, rng: np.random.Generator, p: float = 0.8):
    """``graph`` with each sparse layer's mask, with probability ``p``, redrawn N:G structured
    (``N`` of every ``G`` consecutive inputs kept, some groups fewer when ragged), as
    ``--sparse-group`` trains: random masks rarely have the structure of the group layout."""
    from bitfold.compiler.encodings import Sparse
    from bitfold.compiler.ir import Layer
    from bitfold.compiler.verify import build_graph

    from ..hw.helpers import group_mask

    nodes, changed = [], False
    for n in graph.nodes:
        if isinstance(n, Layer) and n.encoding.scheme == "sparse" and rng.random() < p:
            rows = len(n.encoding.mask)
            fan_in = n.encoding.mask.size // rows
            sizes = [g for g in (2, 4, 8, 16) if fan_in % g == 0]
            if sizes:
                g = int(rng.choice(sizes))
                # N of G at most G/4 (G = 2: 1): fewer bits than the mask, so that the
                # group layout is offered (compiler.cost.group_structure)
                mask = group_mask(rng, rows, fan_in, g, int(rng.integers(1, max(1, g // 4) + 1)),
                                  ragged=bool(rng.random() < 0.3))
                n = dataclasses.replace(n, encoding=Sparse(mask, n.encoding.polarity))
                changed = True
        nodes.append(n)
    return build_graph(graph.name, nodes, list(graph.outputs)) if changed else graph


def draw_network(graph, s: int, index: int) -> tuple[Any, Any, dict[str, float]]:
    """The hardware graph (named ``rdINDEX_S``), its random folding and stalls, from seed ``s``.

    Most sparse layers get an N:G structured mask first (:func:`structure_sparse`)."""
    from bitfold.compiler.passes import fold

    rng = np.random.default_rng(s)
    stalls = draw_stalls(rng)
    graph = structure_sparse(graph, np.random.default_rng([s, 1]))
    hw = fold(dataclasses.replace(graph, name=f"rd{index}_{s}"))
    return hw, random_folding(hw, rng), stalls


def covering(graphs: list[tuple[Any, int]], k: int) -> list[int]:
    """Indices of at most ``k`` of ``graphs`` chosen greedily to cover the most features."""
    feats = []
    for i, (g, s) in enumerate(graphs):
        try:
            hw, folding, _ = draw_network(g, s, i)
            feats.append(set(features(hw, folding)))
        except Exception:  # prepare records why; here it is just not chosen
            feats.append(set())
    chosen: list[int] = []
    seen: set[str] = set()
    while len(chosen) < k:
        best = max((i for i in range(len(graphs)) if i not in chosen),
                   key=lambda i: (len(feats[i] - seen), -i), default=None)
        if best is None or not feats[best] - seen:
            break
        chosen.append(best)
        seen |= feats[best]
    return sorted(chosen)


def prepare(graph, s: int, index: int, frames: int, folder: Path) -> Network:
    """Fold ``graph``, draw its folding and stalls, generate its RTL and golden vectors."""
    from bitfold.compiler.golden import run_reference
    from bitfold.compiler.ir import ScoreAffine
    from bitfold.compiler.serialize import save_graph
    from bitfold.hw.generate import generate
    from bitfold.sim.frames import Vectors
    from bitfold.sim.multi import Design

    from ..compiler.randgraphs import random_inputs

    t0 = time.perf_counter()
    name = f"rd{index}_{s}"
    net = Network(index, name, s, folder, [], 0, {}, frames)
    try:
        hw, folding, net.stalls = draw_network(graph, s, index)
        net.features = features(hw, folding)
        net.cycles_per_frame = folding.cycles_per_frame
        if folder.exists():
            shutil.rmtree(folder)
        save_graph(hw, folder)
        generate(folder, hw, folding)
        x = random_inputs(hw, frames, s)
        ref = run_reference(hw, x)
        score = next(n.name for n in hw.nodes if isinstance(n, ScoreAffine))
        vectors = Vectors(x.reshape(len(x), -1).astype(np.int64),
                          ref[hw.outputs[0]].astype(np.int64), ref[score].astype(np.int64))
        vectors.save(folder / "vectors.npz")
        (folder / "net.json").write_text(json.dumps(
            {"name": name, "index": index, "seed": s, "stalls": net.stalls,
             "features": net.features}, indent=2) + "\n")
        net.design = Design(name, folder / "rtl", vectors, seed=s, **net.stalls)
    except Exception:  # recorded and counted; the run goes on
        net.error = traceback.format_exc()
    net.gen_s = time.perf_counter() - t0
    return net


def load_network(folder: Path):
    """A kept network folder back as a :class:`bitfold.sim.multi.Design`."""
    from bitfold.sim.frames import Vectors
    from bitfold.sim.multi import Design

    info = json.loads((folder / "net.json").read_text())
    return info, Design(info["name"], folder / "rtl", Vectors.load(folder / "vectors.npz"),
                        seed=info["seed"], **info["stalls"])


def verdict(rec: dict[str, Any]) -> str:
    """``exact``, or what went wrong first: ``mismatch``, ``lost`` (timed out) or ``extra``."""
    if rec["mismatches"]:
        return "mismatch"
    if rec["timed_out"]:
        return "lost"
    if rec["extra_beats"] or rec["partial_beats"]:
        return "extra"
    return "exact"

"""The calibration set of the cost model: its designs, their networks and their elaboration.

Each :class:`Design` is a network (``NETS``: trained here on the embedded digits
in seconds, a given MNIST ``sfc`` run, or ``cnn8``'s random weights), a board
and a fixed folding, so the set stays the same when the cost model changes
(``DESIGNS``; :func:`random_designs` draws extra foldings for the fit only).
:func:`prepare` elaborates one with its board's UART-bridge top, keeping the old
folder, its synthesis and its build when the netlist is unchanged but for
source locations. ``benchmarks.cost_vs_built`` synthesizes and builds them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from bitfold.cli import main as bitfold

__all__ = ["CLOCK_MHZ", "DESIGNS", "NETS", "ROOT", "Design", "design_folding", "hw_version",
           "net_build", "prepare", "random_designs"]

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ("--dataset", "digits", "--epochs", "3", "--quiet")
NETS = {
    "mlp": ("--model", "mlp-digits"),
    "cnn": ("--model", "cnn-digits"),
    "sparse50": ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.5"),
    "composite2": ("--model", "mlp-digits", "--quantizer", "composite", "--bases", "2"),
    "sparse75g4": ("--model", "mlp-digits", "--quantizer", "sparse", "--sparsity", "0.75",
                   "--sparse-group", "4"),
    "sfc": (),  # an MNIST sfc run given by --sfc-run
    "cnn8": (),  # a small CNN with random weights (no training: resources only), _small_cnn
}
CLOCK_MHZ = {"ice40": 30.0, "ecp5": 60.0}  # one build each, at a clock the designs meet


@dataclass(frozen=True)
class Design:
    """One calibration design: a network, a board and a folding ``{layer: (pe, simd[, layout])}``."""

    name: str
    net: str
    board: str
    folding: tuple[tuple[str, tuple], ...]

    @property
    def choice(self) -> dict[str, tuple]:
        return dict(self.folding)


def _d(name: str, net: str, board: str, **layers: tuple) -> Design:
    return Design(name, net, board, tuple(layers.items()))


DESIGNS = (
    _d("mlp-ice40-small", "mlp", "icebreaker", fc0=(1, 4), fc1=(1, 8), fc2=(1, 8), fc3=(1, 2)),
    _d("mlp-ice40-large", "mlp", "icebreaker", fc0=(1, 32), fc1=(1, 64), fc2=(1, 64),
       fc3=(1, 8)),
    _d("cnn-ice40", "cnn8", "icebreaker", conv0=(1, 9), conv1=(2, 8), fc0=(1, 4)),
    _d("sparse-ice40", "sparse50", "icebreaker", fc0=(1, 8), fc1=(1, 32, "mask"),
       fc2=(1, 32, "mask"), fc3=(1, 4, "mask")),
    _d("mlp-ecp5-small", "mlp", "ulx3s-85f", fc0=(1, 16), fc1=(1, 32), fc2=(1, 32), fc3=(1, 4)),
    _d("mlp-ecp5-large", "mlp", "ulx3s-85f", fc0=(8, 64), fc1=(4, 128), fc2=(4, 128),
       fc3=(1, 32)),
    _d("cnn-ecp5", "cnn", "ulx3s-85f", conv0=(8, 9), conv1=(8, 288), conv2=(2, 288), fc0=(1, 8)),
    _d("composite-ecp5", "composite2", "ulx3s-85f", fc0=(2, 16), fc1=(1, 64, "dense"),
       fc2=(1, 64, "serial"), fc3=(1, 16, "dense")),
    _d("sparse-ecp5", "sparse75g4", "ulx3s-85f", fc0=(4, 16), fc1=(1, 16, "group"),
       fc2=(1, 32, "group"), fc3=(1, 8, "group")),
    _d("sfc-ecp5-mid", "sfc", "ulx3s-85f", fc0=(1, 112), fc1=(1, 64), fc2=(1, 64), fc3=(1, 2)),
    _d("sfc-ecp5-large", "sfc", "ulx3s-85f", fc0=(8, 112), fc1=(2, 256), fc2=(2, 256),
       fc3=(1, 16)),
)


def _step(argv: list[str]) -> None:
    print("$ bitfold " + " ".join(argv), flush=True)
    code = bitfold(argv)
    if code:
        raise SystemExit(f"cost_vs_built: `bitfold {' '.join(argv)}` failed with exit {code}")


def _small_cnn(build: Path) -> None:
    """cnn-digits at a quarter of its channels (8 and 16; random weights and thresholds in
    the accumulators' ranges): the CNN that fits the iCEBreaker (cnn-digits' windows do not)."""
    import numpy as np

    from bitfold.compiler.encodings import Binary
    from bitfold.compiler.ir import (
        ArgMax,
        Input,
        Layer,
        MaxPool2d,
        ScoreAffine,
        Threshold,
        Window,
    )
    from bitfold.compiler.serialize import save_graph
    from bitfold.compiler.verify import build_graph

    rng = np.random.default_rng(0)
    nodes = [Input("input", (8, 8, 1), 5),
             Layer("conv0", "input", Binary(rng.integers(0, 2, (8, 3, 3, 1))), Window(3, 1, 1, 0)),
             Threshold("conv0_act", "conv0", rng.integers(-60, 60, 8)),
             MaxPool2d("pool0", "conv0_act", 2, 2),
             Layer("conv1", "pool0", Binary(rng.integers(0, 2, (16, 3, 3, 8))),
                   Window(3, 1, 1, -1)),
             Threshold("conv1_act", "conv1", rng.integers(28, 44, 16)),
             MaxPool2d("pool1", "conv1_act", 2, 2),
             Layer("fc0", "pool1", Binary(rng.integers(0, 2, (10, 64)))),
             ScoreAffine("class_scores", "fc0", rng.integers(1, 40, 10), rng.integers(-900, 900, 10)),
             ArgMax("class", "class_scores")]
    save_graph(build_graph("cnn8", nodes, ["class"]), build)


def net_build(net: str, out: Path, sfc_run: Path | None) -> Path:
    """The compiled network ``net`` (trained here unless it is the given sfc run)."""
    run = out / "nets" / net
    if net == "cnn8":
        build = run / "build"
        if not (build / "graph.json").is_file():
            _small_cnn(build)
        return build
    if net == "sfc":
        if sfc_run is None:
            raise SystemExit("cost_vs_built: the sfc designs need a trained sfc run (--sfc-run RUN)")
        run = Path(sfc_run)
    elif not (run / "checkpoint.pt").is_file():
        _step(["train", *NETS[net], *TRAIN, "--out", str(run)])
    build = out / "nets" / net / "build"
    if not (build / "graph.json").is_file():
        _step(["compile", str(run), "--out", str(build)])
    return build


def design_folding(design: Design, graph, board):
    """``design``'s folding of ``graph``, costed for ``board``'s family at its calibration clock."""
    from bitfold.compiler.folding import evaluate_folding

    return evaluate_folding(graph, design.choice, CLOCK_MHZ[board.family], board.family)


def prepare(design: Design, out: Path, sfc_run: Path | None, force: bool = False):
    """Elaborate ``design`` into ``OUT/NAME/boards/BOARD``; return (graph, folding, board, dir)."""
    from bitfold.boards.flow import board_clock
    from bitfold.boards.flow import prepare as elaborate
    from bitfold.boards.targets import get_board
    from bitfold.compiler.serialize import load_graph

    board = get_board(design.board)
    graph = load_graph(net_build(design.net, out, sfc_run))
    folding = design_folding(design, graph, board)
    where = out / design.name / "boards" / board.name
    stamp = where / "design.json"
    key = {"net": design.net, "folding": [list(map(str, v)) for v in design.choice.values()]}
    old = json.loads(stamp.read_text()) if stamp.is_file() else {}
    same = (where / "top.il").is_file() and {k: old.get(k) for k in key} == key
    hw = hw_version()
    if force or not same or old.get("hw") != hw:
        # elaborate beside the old folder; keep the old one (and its synthesis and build)
        # when the netlist is the same but for source locations (a refactor of hw/)
        fresh = where.parent / (where.name + ".next")
        shutil.rmtree(fresh, ignore_errors=True)
        elaborate(fresh, graph, folding, board, 1, None,
                  board_clock(board, CLOCK_MHZ[board.family]))
        il = _il_hash(fresh / "top.il")
        before = old.get("il") or (_il_hash(where / "top.il") if same else None)
        if not force and same and before == il:
            shutil.rmtree(fresh)
        else:
            where.mkdir(parents=True, exist_ok=True)
            for f in fresh.iterdir():
                os.replace(f, where / f.name)
            fresh.rmdir()
        stamp.write_text(json.dumps({**key, "hw": hw, "il": il}) + "\n")
    return graph, folding, board, where


def _il_hash(path: Path) -> str:
    """A hash of an RTLIL netlist without its source locations."""
    import hashlib

    h = hashlib.sha256()
    for line in path.read_text().splitlines():
        if "attribute \\src " not in line:
            h.update(line.encode())
    return h.hexdigest()[:16]


def hw_version() -> str:
    """The hardware generator's version: a hash of hw/ and boards/ as they are now."""
    import hashlib

    h = hashlib.sha256()
    for d in ("hw", "boards"):
        for p in sorted((ROOT / d).glob("*.py")):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def random_designs(n: int, seed: int = 0) -> list[Design]:
    """``n`` extra foldings of the digits networks for the fit only (Yosys, never built)."""
    from bitfold.compiler.cost import layouts, mvu_layers
    from bitfold.compiler.folding import legal_values
    from bitfold.compiler.serialize import load_graph

    rng = random.Random(seed)
    out = []
    nets = ["mlp", "cnn8", "mlp", "cnn", "sparse50", "composite2", "sparse75g4", "mlp"]
    for i in range(n):
        net = nets[i % len(nets)]
        board = "icebreaker" if (i + seed) % 2 == 0 else "ulx3s-85f"
        graph = load_graph(ROOT / "runs" / "cost_vs_built" / "nets" / net / "build")
        layers = {}
        for layer in mvu_layers(graph):
            layout = rng.choice(layouts(layer))
            from bitfold.compiler.cost import columns

            pes = legal_values(layer.mh, False)
            simds = legal_values(columns(layer, layout), False)
            small = board == "icebreaker"
            pe = rng.choice(pes[:3] if small else pes[:5])
            simd = rng.choice(simds[1:6] if small else simds[2:])
            layers[layer.name] = (pe, simd, layout)
        out.append(Design(f"fit-{seed}-{i}-{net}-{board}", net, board, tuple(layers.items())))
    return out

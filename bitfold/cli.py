"""The ``bitfold`` command line: one verb per pipeline stage (DESIGN.md §1).

Stage modules are imported lazily inside each verb, so ``bitfold --help`` is
instant and a verb only pays for what it uses. Expected failures (bad input,
missing or broken artifacts) end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _train_options(p: argparse.ArgumentParser) -> None:
    from bitfold.train.data import DATASETS
    from bitfold.train.models import MODELS

    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="mlp-digits", choices=list(MODELS))
    g.add_argument("--dataset", default="digits", choices=list(DATASETS),
                   help="digits is embedded; mnist, fashion-mnist and cifar10 read --data-dir")
    g.add_argument("--data-dir", help="folder holding the dataset's files")
    g.add_argument("--dropout", type=float, default=0.0)
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop"])
    g.add_argument("--lr", type=float, default=1e-2)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", default="cosine", choices=["cosine", "step", "none"])
    g.add_argument("--step-size", type=int, default=10, help="epochs between LR drops (step)")
    g.add_argument("--gamma", type=float, default=0.1, help="LR factor per drop (step)")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--batch-size", type=int, default=64, help="global batch size (all processes)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--augment", action="store_true", help="random shifts (and flips on cifar10)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def _param_options(p: argparse.ArgumentParser, grid: bool = False) -> None:
    g = p.add_argument_group("binary weights")
    if not grid:
        g.add_argument("--param", default="holistic-tucker",
                       choices=["dense", "svd", "tucker", "holistic-tucker", "cp"],
                       help="factorization of the latent weights (default: holistic-tucker)")
        g.add_argument("--alpha", default="learned", choices=["none", "analytic", "learned"],
                       help="per-channel weight scale (default: learned)")
    g.add_argument("--rank", type=float,
                   help="fraction of each mode kept (svd/tucker/holistic-tucker) or the CP rank; "
                        "full rank when omitted")
    g.add_argument("--init-from", metavar="CKPT",
                   help="start from the real weights of a checkpoint or a --param dense run")


def _config(args: argparse.Namespace, **overrides):
    from bitfold.train.trainer import TrainConfig

    fields = dict(
        model=args.model, dataset=args.dataset,
        # Absolute, so later stages find the data from any working directory.
        data_dir=str(Path(args.data_dir).resolve()) if args.data_dir else None,
        param=getattr(args, "param", "dense"), alpha=getattr(args, "alpha", "analytic"),
        rank=args.rank, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        schedule=args.schedule, step_size=args.step_size, gamma=args.gamma, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, augment=args.augment, dropout=args.dropout,
        init_from=args.init_from, device=args.device,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def cmd_train(args: argparse.Namespace) -> int:
    from bitfold.train.trainer import train

    out = args.out or f"runs/{args.model}-{args.dataset}"
    metrics = train(_config(args), out, resume=args.resume, progress=not args.quiet)
    if metrics:
        name = metrics.get("metric", "acc")
        print(f"{out}: test {name} {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
              f"in {metrics['wall_s']:.1f}s")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from bitfold.train.ablate import ablate

    out = args.out or f"runs/ablate-{args.model}-{args.dataset}"
    result = ablate(_config(args), out, seeds=args.seeds, params=args.params.split(","),
                    alphas=args.alphas.split(","), progress=not args.quiet)
    from bitfold.train.ablate import _table

    print(_table(result), end="")
    print(f"written: {out}/ablation.md, ablation.json, ablation.png")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.artifacts import write_json
    from bitfold.compiler.passes import fold
    from bitfold.compiler.serialize import save_graph
    from bitfold.train.to_ir import lower_run

    build = Path(args.out or f"build/{Path(args.run).name}")
    lowered, provenance = lower_run(args.run)
    graph = fold(lowered, args.score_bits)
    save_graph(graph, build)
    write_json(build / "compile.json", {
        "schema": 1, **provenance, "score_bits": args.score_bits,
        "passes": ["fold_signs_into_thresholds", "fold_scores_into_integers"]})
    layers = [n for n in graph.nodes if n.kind in ("BinaryDense", "BinaryConv2d")]
    bits = sum(n.weight.size for n in layers)
    print(f"{build}: {graph.name}, {len(layers)} binary layers, {bits} weight bits "
          f"(graph.json, tensors.npz, compile.json)")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.artifacts import ArtifactError, write_json
    from bitfold.compiler.evaluate import evaluate_golden, write_dump
    from bitfold.compiler.packed import PackedExecutor
    from bitfold.compiler.serialize import load_graph
    from bitfold.train.to_ir import (
        build_test_set,
        explain_disagreements,
        nchw_to_ir,
        read_provenance,
        torch_predictions,
    )

    build = Path(args.build)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, not {args.limit}")
    graph = load_graph(build)
    prov = read_provenance(build)
    run = args.run or prov.get("run")
    model = None
    if not args.no_torch:
        if run is None:
            raise ArtifactError(f"{build}: no compile.json names the run; pass --run RUN "
                                "(or --no-torch for accuracy only)")
        from bitfold.train.trainer import load_run

        model, config, data = load_run(run)
    name = args.dataset or prov.get("dataset") or (config.dataset if model else None)
    if model is None or name != config.dataset or args.data_dir:
        data = build_test_set(build, name, args.data_dir, prov)
    n = len(data.x_test) if args.limit is None else min(args.limit, len(data.x_test))
    x_torch, labels = data.x_test[:n], data.y_test[:n].numpy()
    x = nchw_to_ir(x_torch.numpy())
    torch_pred = None if model is None else torch_predictions(model, x_torch, data.input_scale)
    report, _ = evaluate_golden(graph, x, labels, torch_pred, args.reference_frames)
    report.update(dataset=data.name, split="test", run=run)
    if model is not None and report["disagreements"] and "sources" in prov:
        idx = report["disagreements"][:100]  # explained; the count covers them all
        values = PackedExecutor(graph).run(x[idx])
        notes = explain_disagreements(model, graph, prov["sources"], x_torch[idx],
                                      data.input_scale, values)
        report["disagreements"] = [{"index": i, "label": int(labels[i]), **e}
                                   for i, e in zip(idx, notes, strict=True)]
    write_json(build / "golden.json", report)
    line = f"{build}/golden.json: golden accuracy {report['accuracy']:.4f}"
    if model is not None:
        line += (f", torch {report['torch_accuracy']:.4f}, agreement {report['agreement']:.4f} "
                 f"({report['disagreement_count']} of {n} differ)")
    print(f"{line} on {n} {data.name} test frames")
    if args.dump:
        path = write_dump(build / "golden_dump.npz", graph, x[:args.dump])
        print(f"{path}: every tensor of the first {min(args.dump, n)} frames")
    return 0


def cmd_fold(args: argparse.Namespace) -> int:
    from bitfold.compiler.folding import (
        fold_for_budget,
        fold_for_fps,
        folding_table,
        read_folding,
        write_folding,
    )
    from bitfold.compiler.serialize import load_graph

    graph = load_graph(args.build)
    chosen = [bool(args.folding), args.target_fps is not None,
              args.max_luts is not None or args.max_brams is not None]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of --target-fps F, --max-luts/--max-brams N, "
                         "or --folding FILE")
    clock = 100.0 if args.clock_mhz is None else args.clock_mhz
    common = dict(clock_mhz=clock, device=args.device, allow_padding=args.allow_padding)
    if args.folding:
        if args.clock_mhz is not None:
            raise ValueError("--clock-mhz goes with --target-fps or a budget; a folding file has "
                             "its own clock")
        folding = read_folding(args.folding, graph)
    elif args.target_fps is not None:
        folding = fold_for_fps(graph, args.target_fps, **common)
    else:
        folding = fold_for_budget(graph, args.max_luts, args.max_brams, **common)
    path = write_folding(args.build, folding)
    print(folding_table(folding), end="")
    print(f"written: {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.compiler.folding import fold_for_fps, folding_table, read_folding
    from bitfold.compiler.serialize import load_graph
    from bitfold.hw.generate import generate

    build = Path(args.build)
    graph = load_graph(build)
    if bool(args.folding) == (args.target_fps is not None):
        raise ValueError("give exactly one of --target-fps F (with --clock-mhz M) or "
                         "--folding FILE")
    if args.folding:
        if args.clock_mhz is not None:
            raise ValueError("--clock-mhz goes with --target-fps; a folding file has its own clock")
        folding = read_folding(args.folding, graph)
    else:
        clock = 100.0 if args.clock_mhz is None else args.clock_mhz
        folding = fold_for_fps(graph, args.target_fps, clock_mhz=clock, device=args.device)
    doc = generate(build, graph, folding)
    print(folding_table(folding), end="")
    print(f"written: {build}/rtl/ ({', '.join(doc['files'])}, manifest.json), {build}/folding.json")
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    from bitfold.boards.targets import BOARDS

    for board in BOARDS.values():
        print(board.summary())
    return 0


def _selftest_frames(build, dataset: str | None, data_dir: str | None, n: int):
    """The first ``n`` test frames (IR layout) and their golden classes."""
    from bitfold.compiler.golden import run_reference
    from bitfold.compiler.serialize import load_graph
    from bitfold.train.to_ir import build_test_set, nchw_to_ir

    graph = load_graph(build)
    data = build_test_set(build, dataset, data_dir)
    x = nchw_to_ir(data.x_test[:n].numpy())
    return x, run_reference(graph, x)[graph.outputs[0]]


def cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.boards.flow import build_board
    from bitfold.boards.targets import get_board

    board = get_board(args.board)
    build = Path(args.build)
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    selftest = (_selftest_frames(build, args.dataset, args.data_dir, args.frames)
                if args.selftest else None)
    report = build_board(build, board, folding_path=args.folding, selftest=selftest,
                         seed=args.seed, do_build=not args.no_build, progress=not args.quiet)
    out = build / "boards" / (board.name + ("-selftest" if args.selftest else ""))
    if args.no_build:
        print(f"{out}/: elaborated ({report['top']} top); run {out}/build.sh to build")
        return 0
    print(f"{out}/{report['bitstream']}: {report['luts']} LUTs, {report['ffs']} FFs, "
          f"{report['brams']} block RAMs, Fmax {report['fmax_mhz']:g} MHz "
          f"(target {report['target_mhz']:g}), built in {report['build_s']:.0f}s")
    if not report["timing_met"]:
        print(f"bitfold build: warning: timing NOT met on {board.name}: Fmax "
              f"{report['fmax_mhz']:g} MHz < the board clock {report['target_mhz']:g} MHz; "
              f"the bitstream may not work (fold less, or pipeline)", file=sys.stderr)
        return 3
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from bitfold.boards.host import BridgeFormat, infer_serial, read_selftest

    build = Path(args.build)
    if args.selftest:
        from bitfold.boards.flow import BAUD
        from bitfold.boards.targets import get_board

        if not args.board:
            raise ValueError("--selftest needs --board NAME (for its clock)")
        board = get_board(args.board)
        rec = read_selftest(args.port, BAUD, board.clock_mhz * 1e6, timeout=args.timeout)
        print(f"{args.port}: self-test {'PASS' if rec['passed'] else 'FAIL'}: "
              f"{rec['mismatches']} of {rec['frames']} frames differ; {rec['cycles']} cycles, "
              f"{rec['fps']:,.0f} frames/s measured at {board.clock_mhz:g} MHz")
        return 0 if rec["passed"] else 1
    boards = sorted(p.parent.name for p in (build / "boards").glob("*/bridge.json"))
    name = args.board or (boards[0] if len(boards) == 1 else None)
    if name is None:
        raise ValueError(f"{build}: pass --board (built: {', '.join(boards) or 'none'})")
    fmt = BridgeFormat.read(build / "boards" / name / "bridge.json")
    x, golden = _selftest_frames(build, args.dataset, args.data_dir, args.limit)
    results = infer_serial(fmt, args.port, x, timeout=args.timeout)
    classes = np.array([c for c, _ in results])
    agree = int((classes == golden).sum())
    print(f"{args.port}: {len(results)} frames, {agree} agree with the golden model "
          f"({agree / len(results):.4f})")
    return 0 if agree == len(results) else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.sim.runner import dataset_frames, simulate

    build = Path(args.build)
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    frames, _, name = dataset_frames(build, args.frames, args.dataset, args.data_dir)
    n = len(frames)
    report = simulate(build, frames, simulator=args.simulator, stalls=args.stalls, seed=args.seed)
    cpf = report["cycles_per_frame"]
    print(f"{build}/sim/report.json: {report['frames']} {name} test frames through "
          f"{report['top']} on {args.simulator}{' with random stalls' if args.stalls else ''}: "
          f"{report['mismatches']} mismatches; "
          f"{'n/a' if cpf is None else f'{cpf:.1f}'} cycles/frame "
          f"(analytic {report['analytic_cycles_per_frame']}), latency {report['latency_cycles']} "
          f"cycles; {report['wall_s']:.1f}s")
    if report["timed_out"]:
        print(f"bitfold simulate: no progress after {report['cycles']} cycles "
              f"({report['frames']} of {n} results)", file=sys.stderr)
        return 1
    if report["mismatches"]:
        first = report["first_mismatch"]
        print(f"bitfold simulate: MISMATCH in {report['mismatches']} of {n} frames; first frame "
              f"{first['frame']}: expected {first['expected']}, got {first['got']}; "
              f"{first['hint']}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitfold",
        description="Binary neural networks from factorized training to a verified FPGA accelerator.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("train", help="train a binary network into a run folder",
                       description="Train a binary network whose binary weights are parametrized "
                                   "by real-valued factorizations (Bulat et al.).")
    _train_options(p)
    _param_options(p)
    p.add_argument("--out", metavar="RUN", help="run folder (default: runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ablate", help="the paper's ablation grid over several seeds",
                       description="Train parametrization x alpha over N seeds; write a table "
                                   "(mean +- std) and a plot.")
    _train_options(p)
    _param_options(p, grid=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--params", default="dense,svd,tucker,holistic-tucker")
    p.add_argument("--alphas", default="analytic,learned")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/ablate-MODEL-DATASET)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("compile", help="a trained run -> the integer IR (BUILD/graph.json)",
                       description="Export a trained run, fold alpha, batch norm and sign into "
                                   "integer thresholds and the last layer into integer scores, "
                                   "and write BUILD/graph.json, tensors.npz and compile.json.")
    p.add_argument("run", metavar="RUN", help="run folder written by bitfold train")
    p.add_argument("--out", metavar="BUILD", help="build folder (default: build/RUN-NAME)")
    p.add_argument("--score-bits", type=int, default=32,
                   help="signed width of the integer class scores (default: 32)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("golden", help="golden-model accuracy and torch agreement",
                       description="Run the golden model (packed executor, cross-checked with the "
                                   "reference interpreter) on a test set; compare with the torch "
                                   "model in eval mode; write BUILD/golden.json.")
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--dataset", help="test set (default: the run's)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--run", metavar="RUN", help="run folder (default: the one in compile.json)")
    p.add_argument("--no-torch", action="store_true", help="golden accuracy only, no agreement")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test frames")
    p.add_argument("--reference-frames", type=int, default=256, metavar="N",
                   help="frames also run through the reference interpreter (default: 256)")
    p.add_argument("--dump", type=int, nargs="?", const=8, default=0, metavar="N",
                   help="write every tensor of the first N frames to BUILD/golden_dump.npz "
                        "(default N: 8)")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser("fold", help="choose PE/SIMD per layer: BUILD/folding.json",
                       description="Pick a folding for a target frame rate or the fastest one "
                                   "within a LUT/block-RAM budget, or check a hand-written one; "
                                   "write BUILD/folding.json with cycles and estimates.")
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--target-fps", type=float, metavar="F", help="frames per second to reach")
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="clock (default: 100, or the one in --folding FILE)")
    p.add_argument("--max-luts", type=int, metavar="N", help="LUT budget (fastest that fits)")
    p.add_argument("--max-brams", type=int, metavar="N", help="block RAM budget")
    p.add_argument("--folding", metavar="FILE", help="check and cost a hand-written folding")
    p.add_argument("--device", default="ecp5", choices=["ecp5", "ice40"],
                   help="resource model (default: ecp5)")
    p.add_argument("--allow-padding", action="store_true",
                   help="allow PE/SIMD that do not divide the layer (padded last fold)")
    p.set_defaults(func=cmd_fold)

    p = sub.add_parser("generate", help="IR + folding -> Verilog accelerator: BUILD/rtl/",
                       description="Build the streaming XNOR-popcount dataflow accelerator of "
                                   "BUILD's graph at a folding chosen for a frame rate or read "
                                   "from a file; write BUILD/rtl/ (Verilog core and AXI-Stream "
                                   "wrapper, memory files, manifest.json) and BUILD/folding.json.")
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--target-fps", type=float, metavar="F", help="frames per second to reach")
    p.add_argument("--clock-mhz", type=float, metavar="M", help="clock for --target-fps "
                   "(default: 100)")
    p.add_argument("--folding", metavar="FILE", help="a folding.json (written by bitfold fold "
                   "or by hand)")
    p.add_argument("--device", default="ecp5", choices=["ecp5", "ice40"],
                   help="resource model for --target-fps (default: ecp5)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("simulate", help="RTL simulation vs the golden model: BUILD/sim/report.json",
                       description="Stream test frames through BUILD/rtl/ in an HDL simulator "
                                   "(cocotb), compare every result with the golden model and "
                                   "measure cycles per frame and latency; write "
                                   "BUILD/sim/report.json. Exit status 1 on a mismatch.")
    p.add_argument("build", metavar="BUILD", help="build folder with rtl/ (bitfold generate)")
    p.add_argument("--frames", type=int, metavar="N", help="the first N test frames (default: all)")
    p.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"],
                   help="HDL simulator (default: icarus; verilator is much faster for many frames)")
    p.add_argument("--stalls", action="store_true",
                   help="random idle input cycles and output backpressure (30%% each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stall pattern")
    p.add_argument("--dataset", help="test set (default: the one in compile.json)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("boards", help="list the FPGA boards bitfold builds for",
                       description="List board targets: device, package, clock and capacity.")
    p.set_defaults(func=cmd_boards)

    p = sub.add_parser("build", help="bitstream for a board: BUILD/boards/NAME/",
                       description="Check the folding fits the board (cost model), elaborate the "
                                   "UART-bridge (or self-test) top and run the YoWASP toolchain; "
                                   "write the bitstream, build.sh and report.json.")
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--board", required=True, help="board name (see bitfold boards)")
    p.add_argument("--folding", metavar="FILE", help="folding (default: BUILD/folding.json)")
    p.add_argument("--selftest", action="store_true",
                   help="self-test top: test frames and golden classes in ROM, LEDs pass/fail")
    p.add_argument("--frames", type=int, default=16, help="self-test frames (default: 16)")
    p.add_argument("--dataset", help="self-test data set (default: the run's)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default: 1)")
    p.add_argument("--no-build", action="store_true",
                   help="fit check, elaboration and build.sh only (no FPGA tools)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("infer", help="classify test frames on a board over its UART",
                       description="Send test frames to a board running the UART-bridge "
                                   "bitstream; compare its classes with the golden model.")
    p.add_argument("build", metavar="BUILD", help="build folder with BUILD/boards/NAME/")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    p.add_argument("--board", help="board name (default: the only one built)")
    p.add_argument("--dataset", help="test set (default: the run's)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--limit", type=int, default=100, help="frames to send (default: 100)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per result")
    p.add_argument("--selftest", action="store_true",
                   help="read the self-test bitstream's record: pass/fail and measured frames/s")
    p.set_defaults(func=cmd_infer)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from bitfold.artifacts import ArtifactError

    try:
        return args.func(args)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        print(f"bitfold {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bitfold {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``bitfold`` command line: one verb per pipeline stage (docs/architecture.md, section 1).

Stage modules are imported lazily inside each verb, so ``bitfold --help`` is
instant and a verb only pays for what it uses. Expected failures (bad input,
missing or broken artifacts) end in one line on stderr and exit status 2.

This module is the composition root: ``bitfold run``'s pipeline
(:mod:`bitfold.pipeline`) does not import it, but is handed one callable per
stage verb (:func:`stage_verbs`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from bitfold import __version__, verbs
from bitfold.options import (
    family_option,
    folding_options,
    frames_option,
    param_options,
    score_bits_option,
    train_options,
)

if TYPE_CHECKING:  # what add_subparsers returns: its add_parser makes one verb's parser
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["STAGE_VERBS", "Terminated", "build_parser", "main", "stage_verbs"]

# The verbs bitfold run runs as its stages.
STAGE_VERBS = ("train", "import", "compile", "golden", "generate", "simulate", "build", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every verb; each verb's options are its own function below (``_VERBS``)."""
    parser = argparse.ArgumentParser(
        prog="bitfold",
        description="Binary neural networks from factorized training to a verified FPGA accelerator.",
    )
    parser.add_argument("--version", action="version", version=f"bitfold {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add_verb in _VERBS:
        add_verb(sub)
    return parser


def _train_verb(sub: Subparsers) -> None:
    p = sub.add_parser("train", help="train a binary network into a run folder",
                       description="Train a binary network whose binary weights are parametrized "
                                   "by real-valued factorizations (Bulat et al.).")
    train_options(p)
    param_options(p)
    p.add_argument("--out", metavar="RUN", help="run folder (default: runs/MODEL-DATASET)")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN/checkpoint.pt with the run's options; --epochs may "
                        "change (the cosine schedule is re-planned from the epoch reached)")
    p.add_argument("--force", action="store_true",
                   help="train afresh into RUN even if it holds a run with other options")
    p.set_defaults(func=verbs.cmd_train)


def _run_verb(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="everything, end to end: train ... bench, and a report",
                       description="Train, compile, check the golden model, fold for the board, "
                                   "generate the RTL, simulate every test frame against the "
                                   "golden model, build the bitstream (in parallel with the "
                                   "simulation), benchmark against the CPU and write "
                                   "OUT/report.md with plots. A stage whose inputs are unchanged "
                                   "is reused. Defaults: the embedded digits data set, mlp-digits, "
                                   "holistic Tucker with learned alpha, icebreaker.")
    train_options(p, run=True)
    param_options(p)
    p.add_argument("--out", metavar="OUT", help="run folder (default: runs/run-MODEL-DATASET)")
    g = p.add_argument_group("hardware")
    g.add_argument("--board", default="icebreaker", help="board to fold for and build "
                   "(default: icebreaker; see bitfold boards)")
    g.add_argument("--no-bitstream", action="store_true",
                   help="skip the board build (hardware frames/s at the board clock)")
    g.add_argument("--target-fps", type=float, metavar="F",
                   help="fold for F frames/s at the board clock instead of a LUT budget")
    g.add_argument("--max-luts", type=int, metavar="N",
                   help="LUT budget of the folding (cost-model estimate; default: 75%% of the "
                        "board's LUTs less the board top's, as generate --board)")
    g.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"],
                   help="HDL simulator (default: icarus; verilator is faster for many frames)")
    g.add_argument("--frames", type=int, metavar="N",
                   help="simulate the first N test frames (default: all)")
    g = p.add_argument_group("bring your own network")
    g.add_argument("--import", dest="import_model", metavar="MODEL.onnx",
                   help="import a QONNX / FINN-ONNX binary network instead of training one "
                        "(bitfold import; --dataset and --data-dir name its test set)")
    g.add_argument("--input-scale", default="1/255", metavar="S",
                   help="with --import: the model's input is pixel * S (default: 1/255; "
                        "--input-bits B: pixels are 0 .. 2**B - 1, default 8)")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.set_defaults(func=_cmd_run)


def _ablate_verb(sub: Subparsers) -> None:
    p = sub.add_parser("ablate", help="the paper's ablation grid over several seeds",
                       description="Train parametrization x alpha over N seeds; write a table "
                                   "(mean +- std) and a plot.")
    train_options(p)
    param_options(p, grid=True)
    p.add_argument("--seeds", type=int, default=3, help="seeds per grid cell (default: 3)")
    p.add_argument("--params", default="dense,svd,tucker,holistic-tucker",
                   help="comma-separated parametrizations (default: %(default)s)")
    p.add_argument("--alphas", default="analytic,learned",
                   help="comma-separated alpha modes (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/ablate-MODEL-DATASET)")
    p.set_defaults(func=verbs.cmd_ablate)


def _compile_verb(sub: Subparsers) -> None:
    p = sub.add_parser("compile", help="a trained run -> the integer IR (BUILD/graph.json)",
                       description="Export a trained run, fold alpha, batch norm and sign into "
                                   "integer thresholds and the last layer into integer scores, "
                                   "and write BUILD/graph.json, tensors.npz and compile.json.")
    p.add_argument("run", metavar="RUN", help="run folder written by bitfold train")
    p.add_argument("--out", metavar="BUILD", help="build folder (default: build/RUN-NAME)")
    score_bits_option(p)
    p.set_defaults(func=verbs.cmd_compile)


def _import_verb(sub: Subparsers) -> None:
    p = sub.add_parser("import", help="a QONNX / FINN-ONNX binary network -> the IR (BUILD/)",
                       description="Lower a QONNX or FINN-ONNX binary network (W1A1, binary or "
                                   "multi-bit input, dense and conv) into the integer IR: "
                                   "thresholds settled by the model's own float32 arithmetic, "
                                   "class scores as in compile. With --dataset, report the "
                                   "golden model against qonnx's execution frame by frame "
                                   "(BUILD/golden.json). An unsupported node is a one-line "
                                   "error and nothing is written.")
    p.add_argument("model", metavar="MODEL.onnx", help="QONNX or FINN-ONNX model file")
    p.add_argument("--out", metavar="BUILD", help="build folder (default: build/MODEL-NAME)")
    p.add_argument("--dataset", help="test set to compare golden and qonnx on (as in train; npz "
                   "needs only test.npz)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--input-scale", default="1/255", metavar="S",
                   help="the model's input is pixel * S, in float32 (default: 1/255, as "
                        "torchvision's ToTensor)")
    p.add_argument("--input-bits", type=int, default=8, metavar="B",
                   help="pixels are 0 .. 2**B - 1 (default: 8)")
    frames_option(p)
    score_bits_option(p)
    p.set_defaults(func=verbs.cmd_import)


def _export_verb(sub: Subparsers) -> None:
    p = sub.add_parser("export", help="a RUN or BUILD -> a QONNX model",
                       description="Write a build's integer network (or a run's, compiled first) "
                                   "as a QONNX model (BipolarQuant, MatMul/Conv, integer "
                                   "thresholds, int64 class scores) whose qonnx execution equals "
                                   "the golden model; with --dataset, check that on every test "
                                   "frame.")
    p.add_argument("source", metavar="RUN|BUILD", help="a run (bitfold train) or build folder")
    p.add_argument("--out", metavar="MODEL.onnx", required=True, help="the QONNX file to write")
    p.add_argument("--dataset", help="test set to check qonnx against golden on (default: the "
                   "build's; none: skip)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    frames_option(p)
    p.add_argument("--no-check", action="store_true", help="write the model only")
    p.set_defaults(func=verbs.cmd_export)


def _golden_verb(sub: Subparsers) -> None:
    p = sub.add_parser("golden", help="golden-model accuracy and torch agreement",
                       description="Run the golden model (packed executor, cross-checked with the "
                                   "reference interpreter) on a test set; compare with the torch "
                                   "model in eval mode; write BUILD/golden.json.")
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--dataset", help="test set (default: the run's)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    p.add_argument("--run", metavar="RUN", help="run folder (default: the one in compile.json)")
    p.add_argument("--no-torch", action="store_true", help="golden accuracy only, no agreement")
    frames_option(p)
    p.add_argument("--reference-frames", type=int, default=256, metavar="N",
                   help="frames also run through the reference interpreter (default: 256)")
    p.add_argument("--dump", type=int, nargs="?", const=8, default=0, metavar="N",
                   help="write every tensor of the first N frames to BUILD/golden_dump.npz "
                        "(default N: 8)")
    p.set_defaults(func=verbs.cmd_golden)


def _fold_verb(sub: Subparsers) -> None:
    p = sub.add_parser("fold", help="choose PE/SIMD per layer: BUILD/folding.json",
                       description="Pick a folding for a target frame rate or the fastest one "
                                   "within a LUT/block-RAM budget, or check a hand-written one; "
                                   "write BUILD/folding.json with cycles and estimates.")
    folding_options(p)
    p.add_argument("--allow-padding", action="store_true",
                   help="allow PE/SIMD that do not divide the layer (padded last fold)")
    p.set_defaults(func=verbs.cmd_fold)


def _generate_verb(sub: Subparsers) -> None:
    p = sub.add_parser("generate", help="IR + folding -> Verilog accelerator: BUILD/rtl/",
                       description="Build the streaming XNOR-popcount dataflow accelerator of "
                                   "BUILD's graph at a folding chosen for a frame rate or a "
                                   "LUT/block-RAM budget, or read from a file; write BUILD/rtl/ "
                                   "(Verilog core and AXI-Stream "
                                   "wrapper, memory files, manifest.json) and BUILD/folding.json.")
    folding_options(p)
    p.set_defaults(func=verbs.cmd_generate)


def _simulate_verb(sub: Subparsers) -> None:
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
    p.set_defaults(func=verbs.cmd_simulate)


def _bench_verb(sub: Subparsers) -> None:
    p = sub.add_parser("bench", help="accelerator frames/s vs CPU baselines: BUILD/bench.json",
                       description="Hardware frames/s (the clock the board's bitstream runs "
                                   "at, with nextpnr's Fmax beside it, or --clock-mhz, over the "
                                   "simulated cycles per frame) against torch float, torch binary "
                                   "and the packed golden executor on this machine's cores, at "
                                   "batch 1 and at each one's best batch; write BUILD/bench.json, "
                                   "bench.md and bench.png. --sweep also costs every folding on "
                                   "the trade-off curve (BUILD/sweep.json, sweep.png).")
    p.add_argument("build", metavar="BUILD", help="build folder with folding.json "
                   "(bitfold generate; simulate and build for measured figures)")
    p.add_argument("--board", help="board whose bitstream gives the clock and Fmax (default: "
                   "the one built)")
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="state the clock instead of a bitstream's")
    p.add_argument("--frames", type=int, default=512, help="test frames for the CPU runs "
                   "(default: 512)")
    p.add_argument("--sweep", action="store_true",
                   help="also frames/s against LUTs and block RAMs over all foldings (estimates)")
    family_option(p, "resource model of the sweep (default: folding.json's)")
    p.add_argument("--quiet", action="store_true", help="no line per measurement")
    p.set_defaults(func=verbs.cmd_bench)


def _boards_verb(sub: Subparsers) -> None:
    p = sub.add_parser("boards", help="list the FPGA boards bitfold builds for",
                       description="List board targets: device, package, clock and capacity.")
    p.set_defaults(func=verbs.cmd_boards)


def _build_verb(sub: Subparsers) -> None:
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
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="run at the fastest clock the board's PLL makes at or below M (default: "
                        "a first target for the FPGA family, then once more below nextpnr's "
                        "Fmax if timing is missed)")
    p.add_argument("--no-build", action="store_true",
                   help="fit check, elaboration and build.sh only (no FPGA tools)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=verbs.cmd_build)


def _infer_verb(sub: Subparsers) -> None:
    p = sub.add_parser("infer", help="classify test frames on a board over its UART",
                       description="Send test frames to a board running the UART-bridge "
                                   "bitstream; compare its classes with the golden model.")
    p.add_argument("build", metavar="BUILD", help="build folder with BUILD/boards/NAME/")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    p.add_argument("--board", help="board name (default: the only one built)")
    p.add_argument("--dataset", help="test set (default: the run's)")
    p.add_argument("--data-dir", help="folder holding the dataset's files")
    frames_option(p, "frames to send (default: 100)", default=100)
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per result")
    p.add_argument("--selftest", action="store_true",
                   help="read the self-test bitstream's record: pass/fail and measured frames/s")
    p.set_defaults(func=verbs.cmd_infer)


# ``bitfold --help`` lists the verbs in this order.
_VERBS: tuple[Callable[[Subparsers], None], ...] = (
    _train_verb,
    _run_verb,
    _ablate_verb,
    _compile_verb,
    _import_verb,
    _export_verb,
    _golden_verb,
    _fold_verb,
    _generate_verb,
    _simulate_verb,
    _bench_verb,
    _boards_verb,
    _build_verb,
    _infer_verb,
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the verb is, so that it ends its child processes and removes its
    temporary files as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _dispatch(args: argparse.Namespace) -> int:
    """Run the verb ``args`` names; an expected failure is one line on stderr and exit status 2."""
    from bitfold.artifacts import ArtifactError

    try:
        return args.func(args)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        print(f"bitfold {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"bitfold {args.verb}: interrupted ({'SIGTERM' if term else 'SIGINT'})",
              file=sys.stderr)
        return 143 if term else 130


def stage_verbs() -> dict[str, Callable[[Sequence[str]], int]]:
    """One callable per stage verb: it takes that verb's arguments and returns its exit status.

    ``stage_verbs()["golden"](["build/a"])`` is ``bitfold golden build/a``, in this process.
    """
    parser = build_parser()

    def runner(verb: str) -> Callable[[Sequence[str]], int]:
        def run(arguments: Sequence[str]) -> int:
            return _dispatch(parser.parse_args([verb, *arguments]))
        return run

    return {verb: runner(verb) for verb in STAGE_VERBS}


def _cmd_run(args: argparse.Namespace) -> int:
    """``bitfold run``: the pipeline, with the stage verbs it runs."""
    from bitfold.pipeline import run_pipeline
    from bitfold.train.catalog import GOLDEN_ONLY_MODELS, MODEL_NAMES, SOFTWARE_ONLY_MODELS

    unbuilt = SOFTWARE_ONLY_MODELS + GOLDEN_ONLY_MODELS
    built = ", ".join(m for m in MODEL_NAMES if m not in unbuilt)
    if args.model in GOLDEN_ONLY_MODELS and not args.import_model:  # refused before training
        raise ValueError(f"--model {args.model} compiles and runs in the golden model, but its "
                         "upsampling joins have no hardware yet; use bitfold train, compile and "
                         f"golden, or run a model bitfold builds: {built}")
    if args.model in SOFTWARE_ONLY_MODELS and not args.import_model:
        raise ValueError(f"--model {args.model} trains but cannot be lowered to hardware (real-"
                         "valued layers and shortcuts); train it with bitfold train, or run a "
                         f"model bitfold builds: {built}")
    run_pipeline(args, stage_verbs(), say=lambda line: print(line, flush=True))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is not threading.main_thread():
        return _dispatch(build_parser().parse_args(argv))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(build_parser().parse_args(argv))
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())

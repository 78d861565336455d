"""The ``bitfold`` command line: one verb per pipeline stage (docs/architecture.md, section 1).

Stage modules are imported lazily inside each verb, so ``bitfold --help`` is
instant and a verb only pays for what it uses. Expected failures (bad input,
missing or broken artifacts) end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bitfold import verbs

__all__ = ["main"]


def _score_bits_option(p: argparse.ArgumentParser) -> None:
    """``--score-bits``, for every verb that folds class scores into integers."""
    p.add_argument("--score-bits", type=int, default=32,
                   help="signed width of the integer class scores (default: 32)")


def _train_options(p: argparse.ArgumentParser, run: bool = False) -> None:
    from bitfold.train.catalog import DATASETS, MODEL_NAMES, OPTIMIZERS, SCHEDULES

    g = p.add_argument_group("model and data")
    g.add_argument("--model", default="mlp-digits", choices=MODEL_NAMES)
    g.add_argument("--dataset", default="digits", choices=DATASETS,
                   help="digits is embedded; mnist, fashion-mnist, cifar10 and npz (your own: "
                        "train.npz and test.npz with uint8 x and class indices y) read --data-dir")
    g.add_argument("--data-dir", help="folder holding the dataset's files")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--input-bits", type=int, metavar="B",
                   help="1: binarize the input inside the network (+1 where pixel >= "
                        "--input-threshold, else -1; FINN's SFC/LFC), so the first layer is an "
                        "XNOR-popcount layer too; default: the data set's multi-bit pixels"
                        + ("; with --import: the pixels are 0 .. 2**B - 1 (default: 8)"
                           if run else ""))
    g.add_argument("--input-threshold", type=int, metavar="T",
                   help="with --input-bits 1: the smallest pixel that becomes +1 (default: half "
                        "the data set's full scale, rounded up: 128 for 8-bit images, 8 for the "
                        "digits' 0..16)")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    g.add_argument("--lr", type=float, default=1e-2)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", default="cosine", choices=SCHEDULES)
    g.add_argument("--step-size", type=int, default=10, help="epochs between LR drops (step)")
    g.add_argument("--gamma", type=float, default=0.1, help="LR factor per drop (step)")
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--batch-size", type=int, default=64, help="global batch size (all processes)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--augment", action="store_true", help="random shifts (and flips on cifar10)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def _param_options(p: argparse.ArgumentParser, grid: bool = False) -> None:
    from bitfold.train.catalog import ALPHA_MODES, PARAMS, QUANTIZERS

    g = p.add_argument_group("binary weights")
    if not grid:
        g.add_argument("--param", default="holistic-tucker", choices=PARAMS,
                       help="factorization of the latent weights (default: holistic-tucker)")
        g.add_argument("--alpha", default="learned", choices=ALPHA_MODES,
                       help="per-channel weight scale (default: learned)")
    g.add_argument("--rank", type=float,
                   help="fraction of each mode kept (svd/tucker/holistic-tucker) or the CP rank; "
                        "full rank when omitted")
    g.add_argument("--init-from", metavar="CKPT",
                   help="start from the real weights of a checkpoint or a --param dense run")
    g.add_argument("--quantizer", default="binary", choices=QUANTIZERS,
                   help="binary: alpha*sign(W) (default); sparse: {0, b} per channel at "
                        "--sparsity; composite: --bases K binary planes; domain: {a, b} per "
                        "channel (every layer; an offset plus a scaled binary weight); float: "
                        "real weights and hard-tanh activations, a baseline to compare "
                        "accuracy with; it cannot be compiled")
    g.add_argument("--sparsity", type=float, metavar="S",
                   help="fraction of zero weights per output channel (sparse)")
    g.add_argument("--sparse-group", type=int, metavar="G",
                   help="sparse: keep exactly (1-S)*G of every G consecutive inputs (N:G "
                        "structured sparsity, e.g. --sparsity 0.75 --sparse-group 4 is 1:4), so "
                        "the hardware stores and computes only the kept ones")
    g.add_argument("--sparse-first-layer", action="store_true",
                   help="sparse: sparsify the first layer too; by default it stays binary, "
                        "since {0, b} weights on unsigned pixels can only add them up (no "
                        "contrast) and the network learns far worse")
    g.add_argument("--bases", type=int, metavar="K", help="binary planes per weight (composite)")
    g.add_argument("--low-rank", type=int, metavar="R",
                   help="composite: hidden dense layers become two binary matrices of rank R")


def _folding_options(p: argparse.ArgumentParser) -> None:
    """BUILD and the ways to choose a folding, shared by ``fold`` and ``generate``."""
    p.add_argument("build", metavar="BUILD", help="build folder written by bitfold compile")
    p.add_argument("--target-fps", type=float, metavar="F", help="frames per second to reach")
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="clock for --target-fps or a budget (default: 100; a --folding FILE "
                        "has its own)")
    p.add_argument("--max-luts", type=int, metavar="N",
                   help="LUT budget: the fastest folding whose estimate fits")
    p.add_argument("--max-brams", type=int, metavar="N", help="block RAM budget")
    p.add_argument("--folding", metavar="FILE",
                   help="a folding.json (written by bitfold fold or by hand), checked and costed")
    p.add_argument("--device", default="ecp5", choices=["ecp5", "ice40"],
                   help="resource model (default: ecp5)")


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
    p.set_defaults(func=verbs.cmd_train)

    p = sub.add_parser("run", help="everything, end to end: train ... bench, and a report",
                       description="Train, compile, check the golden model, fold for the board, "
                                   "generate the RTL, simulate every test frame against the "
                                   "golden model, build the bitstream (in parallel with the "
                                   "simulation), benchmark against the CPU and write "
                                   "OUT/report.md with plots. A stage whose inputs are unchanged "
                                   "is reused. Defaults: the embedded digits data set, mlp-digits, "
                                   "holistic Tucker with learned alpha, icebreaker.")
    _train_options(p, run=True)
    _param_options(p)
    p.add_argument("--out", metavar="OUT", help="run folder (default: runs/run-MODEL-DATASET)")
    g = p.add_argument_group("hardware")
    g.add_argument("--board", default="icebreaker", help="board to fold for and build "
                   "(default: icebreaker; see bitfold boards)")
    g.add_argument("--no-bitstream", action="store_true",
                   help="skip the board build (hardware frames/s at the board clock)")
    g.add_argument("--target-fps", type=float, metavar="F",
                   help="fold for F frames/s at the board clock instead of a LUT budget")
    g.add_argument("--max-luts", type=int, metavar="N",
                   help="LUT budget of the folding (cost-model estimate; default: 20%% of an "
                        "iCE40's LUTs, 25%% of an ECP5's, since builds measure 2.5-4.5x the "
                        "estimate)")
    g.add_argument("--simulator", default="icarus", choices=["icarus", "verilator"])
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
    p.set_defaults(func=verbs.cmd_run)

    p = sub.add_parser("ablate", help="the paper's ablation grid over several seeds",
                       description="Train parametrization x alpha over N seeds; write a table "
                                   "(mean +- std) and a plot.")
    _train_options(p)
    _param_options(p, grid=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--params", default="dense,svd,tucker,holistic-tucker")
    p.add_argument("--alphas", default="analytic,learned")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/ablate-MODEL-DATASET)")
    p.set_defaults(func=verbs.cmd_ablate)

    p = sub.add_parser("compile", help="a trained run -> the integer IR (BUILD/graph.json)",
                       description="Export a trained run, fold alpha, batch norm and sign into "
                                   "integer thresholds and the last layer into integer scores, "
                                   "and write BUILD/graph.json, tensors.npz and compile.json.")
    p.add_argument("run", metavar="RUN", help="run folder written by bitfold train")
    p.add_argument("--out", metavar="BUILD", help="build folder (default: build/RUN-NAME)")
    _score_bits_option(p)
    p.set_defaults(func=verbs.cmd_compile)

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
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test frames")
    _score_bits_option(p)
    p.set_defaults(func=verbs.cmd_import)

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
    p.add_argument("--limit", type=int, metavar="N", help="only the first N test frames")
    p.add_argument("--no-check", action="store_true", help="write the model only")
    p.set_defaults(func=verbs.cmd_export)

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
    p.set_defaults(func=verbs.cmd_golden)

    p = sub.add_parser("fold", help="choose PE/SIMD per layer: BUILD/folding.json",
                       description="Pick a folding for a target frame rate or the fastest one "
                                   "within a LUT/block-RAM budget, or check a hand-written one; "
                                   "write BUILD/folding.json with cycles and estimates.")
    _folding_options(p)
    p.add_argument("--allow-padding", action="store_true",
                   help="allow PE/SIMD that do not divide the layer (padded last fold)")
    p.set_defaults(func=verbs.cmd_fold)

    p = sub.add_parser("generate", help="IR + folding -> Verilog accelerator: BUILD/rtl/",
                       description="Build the streaming XNOR-popcount dataflow accelerator of "
                                   "BUILD's graph at a folding chosen for a frame rate or a "
                                   "LUT/block-RAM budget, or read from a file; write BUILD/rtl/ "
                                   "(Verilog core and AXI-Stream "
                                   "wrapper, memory files, manifest.json) and BUILD/folding.json.")
    _folding_options(p)
    p.set_defaults(func=verbs.cmd_generate)

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

    p = sub.add_parser("bench", help="accelerator frames/s vs CPU baselines: BUILD/bench.json",
                       description="Hardware frames/s (board Fmax, or --clock-mhz, over the "
                                   "simulated cycles per frame) against torch float, torch binary "
                                   "and the packed golden executor on this machine's cores, at "
                                   "batch 1 and at each one's best batch; write BUILD/bench.json, "
                                   "bench.md and bench.png. --sweep also costs every folding on "
                                   "the trade-off curve (BUILD/sweep.json, sweep.png).")
    p.add_argument("build", metavar="BUILD", help="build folder with folding.json "
                   "(bitfold generate; simulate and build for measured figures)")
    p.add_argument("--board", help="board whose report gives Fmax (default: the one built)")
    p.add_argument("--clock-mhz", type=float, metavar="M",
                   help="state the clock instead of a board's Fmax")
    p.add_argument("--frames", type=int, default=512, help="test frames for the CPU runs "
                   "(default: 512)")
    p.add_argument("--sweep", action="store_true",
                   help="also frames/s against LUTs and block RAMs over all foldings (estimates)")
    p.add_argument("--device", choices=["ecp5", "ice40"],
                   help="resource model of the sweep (default: folding.json's)")
    p.add_argument("--quiet", action="store_true", help="no line per measurement")
    p.set_defaults(func=verbs.cmd_bench)

    p = sub.add_parser("boards", help="list the FPGA boards bitfold builds for",
                       description="List board targets: device, package, clock and capacity.")
    p.set_defaults(func=verbs.cmd_boards)

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
    p.set_defaults(func=verbs.cmd_infer)
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

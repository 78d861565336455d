"""The verbs that choose and build hardware: ``fold``, ``generate``, ``boards``, ``build``,
``infer``; the parser is in ``bitfold.cli`` (``bitfold.verbs`` has the others and re-exports
these).

Stage modules are imported inside each verb, so a verb only pays for what it uses.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["cmd_boards", "cmd_build", "cmd_fold", "cmd_generate", "cmd_infer"]


def _choose_folding(args: argparse.Namespace, graph):
    """The folding ``fold`` and ``generate`` ask for: a file, a frame rate, or a LUT/BRAM budget.

    With ``--board``, its family and clock, its capacity as the budget when none is
    given (as ``bitfold run`` folds), and the folding checked to fit it as ``build`` checks.
    """
    from bitfold.compiler.folding import fold_for_budget, fold_for_fps, read_folding

    board = None
    if args.board is not None:
        from bitfold.boards.targets import get_board

        board = get_board(args.board)
        if args.family is not None and args.family != board.family:
            raise ValueError(f"--board {board.name} is an {board.family} board, not "
                             f"{args.family}; drop --family")
    max_luts, max_brams = args.max_luts, args.max_brams
    if board is not None and not args.folding:
        if args.target_fps is None and max_luts is None and max_brams is None:
            from bitfold.boards.flow import default_budget

            max_luts, max_brams = default_budget(board)
        elif max_brams is None:
            max_brams = board.brams
    budget = max_luts is not None or (max_brams is not None and args.target_fps is None)
    chosen = [bool(args.folding), args.target_fps is not None, budget]
    if args.folding and getattr(args, "two_frames", False):
        raise ValueError("--two-frames goes with --target-fps or a budget; a folding file says "
                         'each layer\'s "frames" itself')
    if sum(chosen) != 1 or (args.folding and max_brams is not None):
        raise ValueError("give exactly one of --target-fps F (with an optional --max-brams N), "
                         "--max-luts/--max-brams N, or --folding FILE"
                         + (", or --board NAME alone" if board is not None else ""))
    if args.folding:
        if args.clock_mhz is not None:
            raise ValueError("--clock-mhz goes with --target-fps or a budget; a folding file has "
                             "its own clock")
        folding = read_folding(args.folding, graph)
        family = board.family if board is not None else args.family
        if family is not None and folding.device != family:
            raise ValueError(f"{args.folding} is folded for {folding.device}, not "
                             f"{family}; fold it again for {family} (--board or --family with "
                             f"a budget or --target-fps)")
    else:
        clock = args.clock_mhz if args.clock_mhz is not None else \
            board.clock_mhz if board is not None else 100.0
        common = dict(clock_mhz=clock, device=board.family if board is not None else
                      args.family or "ecp5", allow_padding=getattr(args, "allow_padding", False),
                      two_frame=getattr(args, "two_frames", False))
        if args.target_fps is not None:
            folding = fold_for_fps(graph, args.target_fps, max_brams=max_brams, **common)
        else:
            folding = fold_for_budget(graph, max_luts, max_brams, **common)
    if board is not None:
        from bitfold.boards.flow import check_fits

        check_fits(graph, folding, board)  # refused now, not after generate, before the build
    return folding


def cmd_fold(args: argparse.Namespace) -> int:
    from bitfold.compiler.folding import folding_table, write_folding
    from bitfold.compiler.serialize import load_graph

    folding = _choose_folding(args, load_graph(args.build))
    path = write_folding(args.build, folding)
    print(folding_table(folding), end="")
    print(f"written: {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.compiler.folding import folding_table
    from bitfold.compiler.serialize import load_graph
    from bitfold.hw.generate import generate

    build = Path(args.build)
    graph = load_graph(build)
    folding = _choose_folding(args, graph)
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

    from bitfold.boards.flow import board_clock, build_board
    from bitfold.boards.targets import get_board

    board = get_board(args.board)
    build = Path(args.build)
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    board_clock(board, args.clock_mhz)  # a clock the board cannot make: refused before any work
    selftest = (_selftest_frames(build, args.dataset, args.data_dir, args.frames)
                if args.selftest else None)
    report = build_board(build, board, folding_path=args.folding, selftest=selftest,
                         seed=args.seed, do_build=not args.no_build, progress=not args.quiet,
                         clock_mhz=args.clock_mhz)
    out = build / "boards" / (board.name + ("-selftest" if args.selftest else ""))
    if args.no_build:
        print(f"{out}/: elaborated ({report['top']} top, {report['clock_mhz']:g} MHz); run "
              f"{out}/build.sh to build")
        return 0
    source = (f"PLL from the {report['oscillator_mhz']:g} MHz oscillator" if report["pll"]
              else "the oscillator")
    print(f"{out}/{report['bitstream']}: {report['luts']} LUTs, {report['ffs']} FFs, "
          f"{report['brams']} block RAMs, clock {report['clock_mhz']:g} MHz ({source}), Fmax "
          f"{report['fmax_mhz']:g} MHz, built in {report['build_s']:.0f}s")
    if not report["timing_met"]:
        print(f"bitfold build: warning: timing NOT met on {board.name}: Fmax "
              f"{report['fmax_mhz']:g} MHz < the clock {report['clock_mhz']:g} MHz; "
              f"the bitstream may not work (fold less, or pass a lower --clock-mhz)",
              file=sys.stderr)
        return 3
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from bitfold.artifacts import read_json
    from bitfold.boards.host import BridgeFormat, infer_serial, read_selftest

    build = Path(args.build)
    if args.selftest:
        from bitfold.boards.flow import BAUD
        from bitfold.boards.targets import get_board

        if not args.board:
            raise ValueError("--selftest needs --board NAME (for its clock)")
        board = get_board(args.board)
        built = build / "boards" / f"{board.name}-selftest" / "clock.json"
        mhz = read_json(built)["clock_mhz"] if built.is_file() else board.clock_mhz
        rec = read_selftest(args.port, BAUD, mhz * 1e6, timeout=args.timeout)
        print(f"{args.port}: self-test {'PASS' if rec['passed'] else 'FAIL'}: "
              f"{rec['mismatches']} of {rec['frames']} frames differ; {rec['cycles']} cycles, "
              f"{rec['fps']:,.0f} frames/s measured at {mhz:g} MHz")
        return 0 if rec["passed"] else 1
    from bitfold.boards.targets import BOARDS

    boards = sorted(p.parent.name for p in (build / "boards").glob("*/bridge.json")
                    if p.parent.name in BOARDS)  # not a NAME.failed build's
    name = args.board or (boards[0] if len(boards) == 1 else None)
    if name is None:
        raise ValueError(f"{build}: pass --board (built: {', '.join(boards) or 'none'})")
    fmt = BridgeFormat.read(build / "boards" / name / "bridge.json")
    x, golden = _selftest_frames(build, args.dataset, args.data_dir, args.frames)
    results = infer_serial(fmt, args.port, x, timeout=args.timeout)
    classes = np.array([c for c, _ in results])
    agree = int((classes == golden).sum())
    print(f"{args.port}: {len(results)} frames, {agree} agree with the golden model "
          f"({agree / len(results):.4f})")
    return 0 if agree == len(results) else 1

"""What each ``bitfold`` verb does; the parser, the error handling and ``run`` are in ``bitfold.cli``.

The hardware verbs (fold, generate, boards, build, infer) are in ``bitfold.board_verbs``,
re-exported here. Stage modules are imported inside each verb, so a verb only pays for what
it uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitfold.board_verbs import cmd_boards, cmd_build, cmd_fold, cmd_generate, cmd_infer

__all__ = [
    "cmd_ablate", "cmd_bench", "cmd_boards", "cmd_build", "cmd_compile", "cmd_export", "cmd_fold",
    "cmd_generate", "cmd_golden", "cmd_import", "cmd_infer", "cmd_simulate", "cmd_train",
]


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
        quantizer=getattr(args, "quantizer", "binary"), sparsity=getattr(args, "sparsity", None),
        bases=getattr(args, "bases", None), low_rank=getattr(args, "low_rank", None),
        sparse_group=getattr(args, "sparse_group", None),
        sparse_first=getattr(args, "sparse_first_layer", False),
        input_bits=getattr(args, "input_bits", None),
        input_threshold=getattr(args, "input_threshold", None),
        train_subset=getattr(args, "train_subset", None),
        **{name: getattr(args, name, None)  # unset: the recipe's (bitfold.train.recipes)
           for name in ("input_dropout", "loss", "clip", "alpha_lr", "bn_lr", "warmup",
                        "latent_penalty", "dense_start", "factor_dtype")},
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def cmd_train(args: argparse.Namespace) -> int:
    from bitfold.train.trainer import train

    out = args.out or f"runs/{args.model}-{args.dataset}"
    metrics = train(_config(args), out, resume=args.resume, progress=not args.quiet,
                    force=args.force)
    if metrics:
        name = metrics.get("metric", "acc")
        print(f"{out}: test {name} {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
              f"in {metrics['wall_s']:.1f}s"
              + (f" (after a dense phase: {metrics['dense_phase']['epochs']} epochs, test "
                 f"{name} {metrics['dense_phase']['test_accuracy']:.4f}, "
                 f"{metrics['dense_phase']['wall_s']:.1f}s)" if "dense_phase" in metrics else ""))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from bitfold.train.ablate import ablate

    out = args.out or f"runs/ablate-{args.model}-{args.dataset}"
    result = ablate(_config(args), out, seeds=args.seeds, params=args.params.split(","),
                    alphas=args.alphas.split(","), progress=not args.quiet)
    from bitfold.train.ablate import _table

    print(_table(result), end="")
    print(f"written: {out}/ablation.md, ablation.json, ablation.png, ablation-weights.png, "
          "ablation-scales.png")
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
    from bitfold.compiler.ir import MVU_KINDS, mvu_matrix

    layers = [n for n in graph.nodes if isinstance(n, MVU_KINDS)]
    bits = sum(mvu_matrix(n).size for n in layers)
    print(f"{build}: {graph.name}, {len(layers)} binary layers, {bits} weight bits "
          f"(graph.json, tensors.npz, compile.json)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from bitfold.interop.verbs import cmd_import as run

    return run(args)


def cmd_export(args: argparse.Namespace) -> int:
    from bitfold.interop.verbs import cmd_export as run

    return run(args)


def _golden_pose(build, graph, model, data, frames: int | None) -> int:
    from bitfold.artifacts import write_json
    from bitfold.train.hourglass_hw import HourglassHW
    from bitfold.train.torch_eval import golden_pose

    if not isinstance(model, HourglassHW):
        raise ValueError(f"{build}: a pose build of a {type(model).__name__}; golden runs the "
                         "hourglass-hw model's heatmaps only")
    n = len(data.x_test) if frames is None else min(frames, len(data.x_test))
    report = golden_pose(model, graph, data, n)
    write_json(build / "golden.json", report)
    print(f"{build}/golden.json: golden PCKh {report['pckh']:.4f}, torch {report['torch_pckh']:.4f}"
          f", heatmaps differ on {report['heatmaps_differ']} of {n} {data.name} test images")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.artifacts import ArtifactError, write_json
    from bitfold.compiler.evaluate import evaluate_golden, write_dump
    from bitfold.compiler.serialize import load_graph
    from bitfold.train.to_ir import (
        build_test_set,
        encode_frames,
        nchw_to_ir,
        read_provenance,
        torch_predictions,
    )

    build = Path(args.build)
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    graph = load_graph(build)
    prov = read_provenance(build)
    if prov.get("source") == "onnx":  # imported: golden against qonnx's execution, not torch
        from bitfold.interop.verbs import golden_imported

        return golden_imported(args, build, prov)
    run = args.run or prov.get("run")
    model = None
    if not args.no_torch:
        if run is None:
            raise ArtifactError(f"{build}: no compile.json names the run; pass --run RUN "
                                "(or --no-torch for accuracy only)")
        from bitfold.train.trainer import load_run

        model, config, data = load_run(run)
        if data.task == "pose":  # heatmaps, not classes: PCKh of both, and the heatmaps compared
            return _golden_pose(build, graph, model, data, args.frames)
    name = args.dataset or prov.get("dataset") or (config.dataset if model else None)
    if model is None or name != config.dataset or args.data_dir:
        data = build_test_set(build, name, args.data_dir, prov, encoded=False)
    n = len(data.x_test) if args.frames is None else min(args.frames, len(data.x_test))
    x_torch, labels = data.x_test[:n], data.y_test[:n].numpy()
    x = encode_frames(prov, nchw_to_ir(x_torch.numpy()))  # torch binarizes its own input
    torch_pred = None if model is None else torch_predictions(model, x_torch, data.input_scale)
    report, _ = evaluate_golden(graph, x, labels, torch_pred, args.reference_frames)
    report.update(dataset=data.name, split="test", run=run)
    if model is not None and report["disagreements"] and "sources" in prov:
        report["disagreements"] = _explained(report["disagreements"][:100], model, graph,
                                             prov, x, x_torch, labels, data.input_scale)
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


def _explained(idx: list[int], model, graph, prov: dict, x, x_torch, labels,
               input_scale: float) -> list[dict]:
    """Each disagreement of ``idx`` (at most 100 are explained; the count covers them all) with
    its label and where torch and the golden model part (``explain_disagreements``)."""
    from bitfold.compiler.packed import PackedExecutor
    from bitfold.train.to_ir import explain_disagreements

    values = PackedExecutor(graph).run(x[idx])
    notes = explain_disagreements(model, graph, prov["sources"], x_torch[idx], input_scale, values)
    return [{"index": i, "label": int(labels[i]), **e} for i, e in zip(idx, notes, strict=True)]


def cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.sim.runner import dataset_frames, simulate

    build = Path(args.build)
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    frames, labels, name = dataset_frames(build, args.frames, args.dataset, args.data_dir)
    n = len(frames)
    report = simulate(build, frames, simulator=args.simulator, stalls=args.stalls, seed=args.seed,
                      labels=labels)
    cpf = report["cycles_per_frame"]
    acc = report["rtl_accuracy"]
    print(f"{build}/sim/report.json: {report['frames']} {name} test frames through "
          f"{report['top']} on {args.simulator}{' with random stalls' if args.stalls else ''}: "
          f"{report['mismatches']} mismatches, RTL accuracy "
          f"{'n/a' if acc is None else f'{acc:.4f}'}; "
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


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bitfold.artifacts import read_json
    from bitfold.bench import bench, bench_table, sweep

    build = Path(args.build)
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    if not (build / "folding.json").is_file():
        raise FileNotFoundError(f"{build}/folding.json: no folding yet; run `bitfold generate "
                                f"{build} --target-fps F` (and `bitfold simulate {build}`) first")
    progress = None if args.quiet else (lambda line: print(f"  {line}", flush=True))
    doc = bench(build, board=args.board, clock_mhz=args.clock_mhz, frames=args.frames,
                progress=progress)
    print(bench_table(doc), end="")
    print(f"written: {build}/bench.json, bench.md, bench.png")
    if args.sweep:
        folding = read_json(build / "folding.json")
        hw = doc["hardware"]
        device = args.family or folding["device"]
        clock = args.clock_mhz or hw.get("board_clock_mhz") or folding["clock_mhz"]
        result = sweep(build, device=device, clock_mhz=clock)
        front = [d for d in result["designs"] if d["pareto"]]
        print(f"sweep: {len(result['designs'])} foldings costed ({device}, {clock:g} MHz), "
              f"{len(front)} on the Pareto front, from {front[0]['fps']:,.0f} fps at "
              f"{front[0]['luts']} LUTs to {front[-1]['fps']:,.0f} fps at {front[-1]['luts']} "
              f"LUTs (estimates)")
        print(f"written: {build}/sweep.json, sweep.png")
    return 0

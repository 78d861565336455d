"""``bitfold import``, ``bitfold export`` and ``bitfold golden`` on an imported build.

``bitfold.verbs`` calls these; the parser is in ``bitfold.cli``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["cmd_export", "cmd_import", "golden_imported", "write_build_atomically"]


def write_build_atomically(build: Path, fill: Any) -> None:
    """Call ``fill(tmp)`` on a fresh folder beside ``build``, then put it in ``build``'s place.

    A failure leaves ``build`` as it was (absent, or the previous build).
    """
    build.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{build.name}.", suffix=".tmp", dir=build.parent))
    old = None
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; a build folder gets the usual mode
        fill(tmp)
        if build.exists():
            old = build.with_name(f".{build.name}.old-{os.getpid()}")
            os.replace(build, old)
        os.replace(tmp, build)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not build.exists():
            os.replace(old, build)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _graph_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path.stem.lower())
    return name if re.match(r"[A-Za-z_]", name) else f"net_{name}"


def cmd_import(args: argparse.Namespace) -> int:
    from bitfold.artifacts import write_json
    from bitfold.compiler.ir import MVU_KINDS
    from bitfold.compiler.serialize import save_graph

    from .check import ONNX_FILE, onnx_agreement, test_pixels
    from .encoding import InputScale
    from .importer import import_model
    from .onnx_model import fold_weight_quantizers, load_model

    source = Path(args.model)
    build = Path(args.out or f"build/{_graph_name(source)}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    if not 1 <= args.input_bits <= 16:
        raise ValueError(f"--input-bits must be 1..16, not {args.input_bits}")
    scale = InputScale.parse(args.input_scale)
    model = load_model(source)
    net = import_model(fold_weight_quantizers(model), _graph_name(source), scale,
                       args.input_bits, args.score_bits)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    report = None
    if args.dataset:
        pixels, labels = test_pixels(args.dataset, data_dir)
        n = len(pixels) if args.frames is None else min(args.frames, len(pixels))
        report = onnx_agreement(net.graph, model, net.encoding, net.score_tensor,
                                pixels[:n], labels[:n])
        report.update(dataset=args.dataset, split="test", run=None)
    prov = {"schema": 1, "source": "onnx", "onnx": str(source.resolve()), "model": ONNX_FILE,
            "dataset": args.dataset, "data_dir": data_dir, "input_encoding": net.encoding,
            "score_tensor": net.score_tensor, "score_bits": args.score_bits,
            "passes": ["import_qonnx", "fold_signs_into_thresholds", "fold_scores_into_integers"],
            "sources": net.sources}

    def fill(tmp: Path) -> None:
        save_graph(net.graph, tmp)
        model.save(str(tmp / ONNX_FILE))
        write_json(tmp / "compile.json", prov)
        if report is not None:
            write_json(tmp / "golden.json", report)

    write_build_atomically(build, fill)
    layers = [n for n in net.graph.nodes if isinstance(n, MVU_KINDS)]
    print(f"{build}: {net.graph.name} from {source.name} ({net.onnx_nodes} ONNX nodes), "
          f"{len(layers)} binary layers; input {net.encoding['summary']} "
          f"(graph.json, tensors.npz, compile.json, {ONNX_FILE})")
    if report is not None:
        _print_agreement(build, report)
    return 0


def _print_agreement(build: Path, report: dict[str, Any]) -> None:
    print(f"{build}/golden.json: golden accuracy {report['accuracy']:.4f}, qonnx "
          f"{report['onnx_accuracy']:.4f}, agreement {report['onnx_agreement']:.4f} "
          f"({report['onnx_disagreement_count']} of {report['frames']} differ) on "
          f"{report['frames']} {report['dataset']} test frames")


def golden_imported(args: argparse.Namespace, build: Path, prov: dict[str, Any]) -> int:
    """``bitfold golden`` on an imported build: golden against qonnx's execution of the model."""
    from bitfold.artifacts import ArtifactError, write_json
    from bitfold.compiler.evaluate import write_dump
    from bitfold.compiler.serialize import load_graph

    from .check import ONNX_FILE, _frames, onnx_agreement, test_pixels
    from .onnx_model import load_model

    if args.run:
        raise ValueError(f"{build} was imported from ONNX; it has no trained run (drop --run)")
    name = args.dataset or prov.get("dataset")
    if name is None:
        raise ArtifactError(f"{build}: the import named no data set; pass --dataset (and "
                            "--data-dir)")
    same = name == prov.get("dataset")
    pixels, labels = test_pixels(name, args.data_dir or (prov.get("data_dir") if same else None))
    n = len(pixels) if args.frames is None else min(args.frames, len(pixels))
    graph = load_graph(build)
    if args.no_torch:
        from bitfold.compiler.evaluate import evaluate_golden

        x = _frames(prov["input_encoding"], pixels[:n], graph.types[graph.inputs[0]].shape)
        report, _ = evaluate_golden(graph, x, labels[:n], None, args.reference_frames)
    else:
        model = load_model(build / ONNX_FILE)
        report = onnx_agreement(graph, model, prov["input_encoding"], prov["score_tensor"],
                                pixels[:n], labels[:n], args.reference_frames)
    report.update(dataset=name, split="test", run=None)
    write_json(build / "golden.json", report)
    if args.no_torch:
        print(f"{build}/golden.json: golden accuracy {report['accuracy']:.4f} on {n} {name} "
              "test frames")
    else:
        _print_agreement(build, report)
    if args.dump:
        x = _frames(prov["input_encoding"], pixels[:args.dump], graph.types[graph.inputs[0]].shape)
        path = write_dump(build / "golden_dump.npz", graph, x)
        print(f"{path}: every tensor of the first {len(x)} frames")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export_check import export_path

    return export_path(args)

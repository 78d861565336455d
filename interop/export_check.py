"""``bitfold export``: what it reads (a run or a build, and its test frames), writes and checks.

The QONNX graph itself is :mod:`.export`'s; this module drives the verb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bitfold.compiler.ir import Graph, ScoreAffine

from .errors import InteropError
from .export import export_graph, onnx_input, onnx_shape

__all__ = ["check_export", "export_path", "load_source", "save_model"]


def load_source(path: Path, args: Any) -> tuple[Graph, np.ndarray | None, np.ndarray | None, str]:
    """The folded graph of a RUN (compiled in memory) or BUILD, and its test frames (IR layout).

    Frames are ``None`` with ``--no-check``; ``--dataset``/``--data-dir`` override the
    recorded test set and ``--frames`` keeps the first frames.
    """
    from bitfold.train.to_ir import build_test_set, nchw_to_ir

    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    if (path / "checkpoint.pt").is_file():
        from bitfold.compiler.passes import fold
        from bitfold.train.to_ir import lower_run

        lowered, prov = lower_run(path)
        graph = fold(lowered)  # the run's test set as a build's (a binarized input encoded)
        data = None if args.no_check else build_test_set(path, args.dataset, args.data_dir, prov)
    elif (path / "graph.json").is_file():
        from bitfold.compiler.serialize import load_graph

        graph = load_graph(path)
        data = None if args.no_check else build_test_set(path, args.dataset, args.data_dir)
    else:
        raise InteropError(f"{path}: neither a run (checkpoint.pt) nor a build (graph.json); "
                           "give a folder written by bitfold train, compile or import")
    if data is None:
        return graph, None, None, ""
    n = len(data.x_test) if args.frames is None else min(args.frames, len(data.x_test))
    return graph, nchw_to_ir(data.x_test[:n].numpy()), data.y_test[:n].numpy(), data.name


def save_model(model: Any, out: Path) -> None:
    """Write the model atomically (a failed write leaves no file)."""
    from bitfold.artifacts import atomic_write

    if out.suffix != ".onnx":
        raise InteropError(f"--out {out}: name the model file MODEL.onnx")
    atomic_write(out, lambda tmp: model.save(str(tmp)))


def check_export(graph: Graph, model: Any, frames: np.ndarray) -> tuple[int, int, int]:
    """``(frames with the same class, frames with identical scores, frames)``: qonnx vs golden."""
    from bitfold.compiler.packed import PackedExecutor

    from .onnx_model import execute_frames

    score = next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))
    out = graph.outputs[0]
    golden = PackedExecutor(graph).run(frames, keep=[score, out])
    scores = execute_frames(model, onnx_input(graph, frames)).reshape(len(frames), -1)
    same_scores = int((scores == golden[score]).all(axis=1).sum())
    same_class = int((scores.argmax(axis=1) == golden[out]).sum())
    return same_class, same_scores, len(frames)


def export_path(args: Any) -> int:
    """``bitfold export RUN|BUILD --out MODEL.onnx``: write, then check against golden."""
    graph, frames, labels, name = load_source(Path(args.source), args)
    model = export_graph(graph)
    out = Path(args.out)
    save_model(model, out)
    dims = ", ".join(str(d) for d in onnx_shape(graph.types[graph.inputs[0]].shape))
    print(f"{out}: {graph.name} as QONNX ({len(model.graph.node)} nodes; input "
          f"{model.get_tensor_datatype('input').name} (1, {dims}), output int64 class scores)")
    if frames is None:
        return 0
    same_class, same_scores, n = check_export(graph, model, frames)
    print(f"{out}: qonnx execute_onnx == golden on {same_class} of {n} {name} test frames "
          f"(classes), {same_scores} of {n} (scores, exactly)")
    return 0 if same_class == same_scores == n else 1

"""``bitfold golden``, numpy side: accuracy, torch agreement, executor cross-check, dumps.

The packed executor produces the golden predictions; the first
``reference_frames`` frames also run through the reference interpreter and
every tensor must be identical (a mismatch is a compiler bug and an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bitfold.artifacts import atomic_write

from .errors import CompilerError
from .golden import run_reference
from .ir import Graph
from .packed import PackedExecutor
from .serialize import npz_bytes

__all__ = ["GOLDEN_SCHEMA", "evaluate_golden", "write_dump"]

GOLDEN_SCHEMA = 1


def _cross_check(graph: Graph, executor: PackedExecutor, x: np.ndarray) -> None:
    ref = run_reference(graph, x)
    fast = executor.run(x)
    for node in graph.nodes:
        a, b = ref[node.name], fast[node.name]
        if a.shape != b.shape or not np.array_equal(a, b):
            frame = int(np.argmax((a != b).reshape(len(a), -1).any(axis=1))) \
                if a.shape == b.shape else 0
            raise CompilerError(f"packed and reference executors differ at {node.name!r} on frame "
                                f"{frame}; this is a bitfold bug, please report it")


def evaluate_golden(graph: Graph, x: np.ndarray, labels: np.ndarray | None = None,
                    torch_pred: np.ndarray | None = None,
                    reference_frames: int = 256) -> tuple[dict[str, Any], np.ndarray]:
    """Golden predictions on frames ``x`` and the report for ``golden.json``.

    Returns ``(report, predictions)``. ``report`` has ``frames``, ``accuracy``
    (against ``labels``), ``agreement`` (fraction of frames where ``torch_pred``
    equals the golden prediction), ``disagreement_count``, ``disagreements``
    (their frame indices) and
    ``reference_check`` (frames compared tensor by tensor with the reference).
    """
    executor = PackedExecutor(graph)
    out = graph.outputs[0]
    pred = executor.run(x, keep=[out])[out]
    k = min(reference_frames, len(x))
    if k:
        _cross_check(graph, executor, x[:k])
    report: dict[str, Any] = {"schema": GOLDEN_SCHEMA, "graph": graph.name, "frames": len(x),
                              "executor": "packed",
                              "reference_check": {"frames": k, "identical": True}}
    if labels is not None:
        report["accuracy"] = float(np.mean(pred == labels)) if len(x) else None
    if torch_pred is not None:
        same = pred == torch_pred
        report["torch_accuracy"] = float(np.mean(torch_pred == labels)) \
            if labels is not None and len(x) else None
        report["agreement"] = float(np.mean(same)) if len(x) else None
        report["disagreement_count"] = int(np.sum(~same))
        report["disagreements"] = [int(i) for i in np.flatnonzero(~same)]
    return report, pred


def write_dump(path: str | Path, graph: Graph, x: np.ndarray) -> Path:
    """Every tensor's values on frames ``x`` (IR layout, bipolar as bits) as a deterministic npz."""
    values = PackedExecutor(graph).run(x)
    return atomic_write(Path(path), lambda tmp: tmp.write_bytes(npz_bytes(values)))
